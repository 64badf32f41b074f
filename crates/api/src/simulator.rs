//! The simulator carrier's demo and test surface: outside phones that text in, and what they
//! received.

use serde::{Deserialize, Serialize};

use chrono::{DateTime, Utc};

/// `POST /v1/simulator/inbound`: an outside phone texts a number.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct SimulatedInbound {
    /// The outside phone, E.164.
    pub from: String,
    /// An Airtext number (DID).
    pub to: String,
    pub body: String,
}

/// `GET /v1/simulator/outbox?to=`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct OutboxQuery {
    /// Only what this phone number or e-mail address received.
    #[serde(default)]
    pub to: Option<String>,
}

/// Something an outside phone or mailbox received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SimulatedDelivery {
    pub from: String,
    pub to: String,
    pub body: String,
    /// `sms` or `email`.
    pub channel: String,
    /// The simulator's message id (what a carrier would return).
    pub carrier_message_id: String,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SimulatedOutbox {
    pub messages: Vec<SimulatedDelivery>,
}
