//! Messages. Each account holds its own copy of a message, with its own id, in its own
//! conversation: an in-network text is one row for the sender and one for the recipient.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{ClientId, ConversationId, MessageId, SendStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Outbound,
    Inbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "outbound" => Some(Direction::Outbound),
            "inbound" => Some(Direction::Inbound),
            _ => None,
        }
    }
}

/// Which path a message took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// Between two Airtext accounts; it never left the gateway.
    InNetwork,
    /// Through a carrier (SMPP, Twilio, the simulator).
    Carrier,
    /// Through the sending device's own cellular modem, recorded to the gateway afterwards.
    Cellular,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::InNetwork => "in_network",
            Route::Carrier => "carrier",
            Route::Cellular => "cellular",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "in_network" => Some(Route::InNetwork),
            "carrier" => Some(Route::Carrier),
            "cellular" => Some(Route::Cellular),
            _ => None,
        }
    }
}

/// How the body goes on the air (decided by `airtext-sms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "gsm7" => Some(Encoding::Gsm7),
            "ucs2" => Some(Encoding::Ucs2),
            _ => None,
        }
    }
}

/// `POST /v1/messages`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// A phone number, `@username` or e-mail address.
    pub to: String,
    /// 1–1,600 characters (the gateway's configured limit).
    pub body: String,
    /// A UUID the device chose; repeating it returns the first result.
    pub client_id: ClientId,
}

/// One account's copy of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub direction: Direction,
    pub from: String,
    pub to: String,
    pub body: String,
    pub status: SendStatus,
    pub route: Route,
    /// The sender's `client_id`, on the sender's own copy; `null` on received copies.
    pub client_id: Option<ClientId>,
    pub encoding: Encoding,
    pub segments: u32,
    /// Why a failed message failed, in words a person can act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct MessagePage {
    /// Newest first.
    pub messages: Vec<Message>,
}

/// `GET /v1/lookup?address=`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct LookupQuery {
    pub address: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Lookup {
    /// The normalised address.
    pub address: String,
    pub in_network: bool,
}

/// `POST /v1/messages/record`: a text the device sent or received over its own cellular
/// modem, recorded so every device of the account shows the whole thread.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct RecordCellular {
    pub direction: Direction,
    /// The other party: the recipient of an outbound text, the sender of an inbound one.
    pub peer: String,
    pub body: String,
    /// Chosen by the device; recording twice with it stores one message.
    pub client_id: ClientId,
    /// When the modem sent or received it.
    pub at: DateTime<Utc>,
}

/// `GET /v1/search?q=&limit=&before=`: the account's messages whose text has every word of
/// `q`, the last word as a prefix ("lunch meet" finds "meeting for lunch"), newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// The words to find (letters and digits; everything else separates words).
    pub q: String,
    /// Results per page, 1–100 [default: 50].
    #[serde(default)]
    pub limit: Option<u32>,
    /// The last message of the previous page: the page holds older matches.
    #[serde(default)]
    pub before: Option<MessageId>,
}

/// The answer to `GET /v1/search`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SearchPage {
    /// Newest first.
    pub messages: Vec<Message>,
    /// Whether older matches remain: pass the last message's id as `before`.
    pub more: bool,
}
