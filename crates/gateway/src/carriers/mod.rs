//! Carriers: the gateway's paths to phones outside Airtext.
//!
//! A [`Carrier`] sends one text and answers with the carrier's id for it, or with a classified
//! failure: [`CarrierError::Retryable`] (try later or elsewhere) or [`CarrierError::Permanent`]
//! (it can never go, e.g. an invalid destination). What carriers report back (texts from
//! outside phones, delivery receipts) arrives as [`CarrierReport`]s on the [`reports`] channel
//! each carrier is given; [`ingest`] stores them like any message, and only then does the
//! carrier acknowledge them to its network.

pub mod config;
pub mod ingest;
pub mod registry;
pub mod reports;
pub mod simulator;
pub mod smpp;
pub mod twilio;

use std::fmt;

use airtext_api::AccountId;
use async_trait::async_trait;

use crate::store::InventoryNumber;

/// One SMS leaving through a carrier. `body` is UTF-8; the carrier encodes and segments it
/// (through `airtext-sms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundSms {
    /// The account the text is sent for: its sender, or the account that asked for a
    /// verification code. Carriers send nothing of it; the simulator shows each account only
    /// its own texts.
    pub account: Option<AccountId>,
    /// The sender: one of our DIDs (E.164).
    pub from: String,
    /// The outside phone (E.164 or short code).
    pub to: String,
    pub body: String,
}

/// What a carrier answers to a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierAccepted {
    pub carrier_message_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarrierError {
    /// Worth trying again later or through another carrier (timeouts, throttling, outages).
    #[error("temporary carrier failure: {0}")]
    Retryable(String),
    /// Will never succeed as it is (invalid or unreachable destination, rejected content).
    #[error("the carrier refused the message: {0}")]
    Permanent(String),
}

/// A carrier's status for one of its message ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptStatus {
    /// Accepted by the carrier's network, on its way.
    Sent,
    Delivered,
    /// Undeliverable, expired or rejected.
    Failed,
}

/// What a carrier reports into the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CarrierReport {
    /// An outside phone texted one of our DIDs.
    Inbound {
        carrier: String,
        from: String,
        to: String,
        body: String,
    },
    /// A delivery receipt for a message the carrier accepted earlier.
    Receipt {
        carrier: String,
        carrier_message_id: String,
        status: ReceiptStatus,
        /// The carrier's words for a failure.
        reason: Option<String>,
    },
}

#[async_trait]
pub trait Carrier: Send + Sync + fmt::Debug {
    /// The configured name (also the `carrier` recorded on messages).
    fn name(&self) -> &str;

    /// The numbers this carrier brings into the gateway's inventory.
    fn inventory(&self) -> Vec<InventoryNumber>;

    /// Whether another gateway node holds every link this carrier allows (an SMSC's bind
    /// limit), so texts for it are that node's to send and this node should leave them.
    fn bound_elsewhere(&self) -> bool {
        false
    }

    async fn send(&self, sms: OutboundSms) -> Result<CarrierAccepted, CarrierError>;
}
