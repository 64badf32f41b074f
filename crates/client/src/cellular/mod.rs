//! The device's own cellular path: one [`Cellular`] trait, several backends.
//!
//! - [`NoCellular`]: a device without a modem (a Wi-Fi tablet, a desktop). Always unavailable,
//!   so the path policy always picks the cloud.
//! - `at_modem`: an AT-command modem on a serial port, PDU mode through `airtext-sms`.
//! - `modem_manager` (Linux): a modem that ModemManager drives, over D-Bus.
//!
//! [`setting`] picks one from the device's modem setting and lists the modems to choose from.
//! - [`ScriptedCellular`]: an in-memory modem for tests and demos; records what it sent and
//!   can be told to fail or to "receive" a text.
//!
//! Invariants every backend keeps:
//! - [`Cellular::status`] is cheap and never blocks (it returns the last known state); the path
//!   policy calls it for every send.
//! - [`Cellular::send`] resolves only once the network accepted every segment (`Ok`) or the
//!   backend knows it did not (`Err`); a text is never reported sent when only some of its
//!   segments went out.
//! - Incoming texts are delivered whole (multi-part texts reassembled) on the channel that
//!   [`Cellular::take_incoming`] hands out once; the client core records each one at the
//!   gateway so every device of the account shows it.
//! - A text sent with a delivery report requested carries a [`SentTextId`] in its receipt and
//!   gets at most one [`DeliveryReport`] on [`Cellular::take_delivery_reports`] ([`delivery`]).

pub mod at_modem;
pub mod delivery;
#[cfg(target_os = "linux")]
pub mod modem_manager;
pub mod setting;

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use delivery::{DeliveryOutcome, DeliveryReport, SentTextId};
pub use setting::{list_modems, open, ModemInfo, ModemSetting, MODEM_MANAGER_SETTING};

/// What the path policy needs to know about the cellular path right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellularStatus {
    /// Whether a text could be sent now (a modem is present, registered on a network, SIM
    /// unlocked).
    pub available: bool,
    /// Registered on a visited network (texts may be expensive): `auto` then prefers the cloud.
    pub roaming: bool,
    /// A name for people: the backend and, where known, the operator ("none", "AT modem on
    /// /dev/ttyUSB2 (Vodafone)").
    pub name: String,
}

/// What the network said when it accepted a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellularReceipt {
    /// The network's message reference of each segment, in order (`+CMGS: <mr>`).
    pub references: Vec<u8>,
    /// How many SMS segments the text took.
    pub segments: u32,
    /// The text's id in delivery reports; `None` when none will come (none was asked for).
    pub text: Option<SentTextId>,
}

/// A whole text that arrived over the cellular path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingSms {
    /// The sender, as the network gave it (E.164 with `+` where the number is international).
    pub from: String,
    pub body: String,
    /// The service centre time stamp, in UTC.
    pub received_at: DateTime<Utc>,
}

/// Why the cellular path could not send. [`CellularError::is_path_unavailable`] tells the path
/// policy whether trying the cloud instead makes sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CellularError {
    /// No modem, no network registration, no SIM, a locked SIM: the path is not there now.
    #[error("the cellular path is not available: {0}")]
    Unavailable(String),
    /// The network or SIM refused this text (`+CMS ERROR: <code>`), with the reason in words.
    #[error("the cellular network refused the text: {message}")]
    Rejected { code: Option<u16>, message: String },
    /// The recipient cannot be texted over cellular (a username or e-mail address, a bad
    /// number).
    #[error("cannot text {0} over cellular")]
    InvalidRecipient(String),
    /// The modem stopped answering or the serial line failed.
    #[error("the modem did not answer: {0}")]
    Io(String),
}

impl CellularError {
    /// Whether the failure is about the path rather than the text, so the other path may
    /// succeed where this one failed.
    pub fn is_path_unavailable(&self) -> bool {
        matches!(
            self,
            CellularError::Unavailable(_) | CellularError::Io(_) | CellularError::Rejected { .. }
        )
    }
}

/// A cellular backend. Object-safe: the client holds an `Arc<dyn Cellular>`.
#[async_trait]
pub trait Cellular: Send + Sync + Debug {
    /// The last known state; cheap, never blocks.
    fn status(&self) -> CellularStatus;

    /// Sends `body` to `to` (an E.164 number or a short code), segmenting as `airtext-sms`
    /// decides.
    async fn send(&self, to: &str, body: &str) -> Result<CellularReceipt, CellularError>;

    /// The stream of incoming texts. Handed out once (the client core takes it at start);
    /// later calls, and backends that never receive, return `None`.
    fn take_incoming(&self) -> Option<mpsc::Receiver<IncomingSms>>;

    /// The stream of delivery reports for texts whose receipt named a [`SentTextId`]. Handed
    /// out once; backends that never report return `None`.
    fn take_delivery_reports(&self) -> Option<mpsc::Receiver<DeliveryReport>> {
        None
    }
}

/// The backend of a device without cellular.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCellular;

#[async_trait]
impl Cellular for NoCellular {
    fn status(&self) -> CellularStatus {
        CellularStatus {
            available: false,
            roaming: false,
            name: "none".to_owned(),
        }
    }

    async fn send(&self, _to: &str, _body: &str) -> Result<CellularReceipt, CellularError> {
        Err(CellularError::Unavailable(
            "this device has no cellular modem".to_owned(),
        ))
    }

    fn take_incoming(&self) -> Option<mpsc::Receiver<IncomingSms>> {
        None
    }
}

/// One text a [`ScriptedCellular`] sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentSms {
    pub to: String,
    pub body: String,
    /// Its id in delivery reports ([`ScriptedCellular::report_delivery`]).
    pub text: SentTextId,
}

#[derive(Debug)]
struct Script {
    status: CellularStatus,
    /// Returned by the next sends, in order, instead of succeeding.
    failures: Vec<CellularError>,
    sent: Vec<SentSms>,
    incoming_rx: Option<mpsc::Receiver<IncomingSms>>,
    reports_rx: Option<mpsc::Receiver<DeliveryReport>>,
}

/// An in-memory modem for tests and demos: it "sends" by recording, can be told to fail, and
/// can be made to "receive" a text or a delivery report. Clones share one modem.
#[derive(Debug, Clone)]
pub struct ScriptedCellular {
    script: Arc<Mutex<Script>>,
    incoming_tx: mpsc::Sender<IncomingSms>,
    reports_tx: mpsc::Sender<DeliveryReport>,
}

impl ScriptedCellular {
    /// An available, not roaming modem.
    pub fn new() -> Self {
        let (incoming_tx, incoming_rx) = mpsc::channel(64);
        let (reports_tx, reports_rx) = mpsc::channel(64);
        ScriptedCellular {
            script: Arc::new(Mutex::new(Script {
                status: CellularStatus {
                    available: true,
                    roaming: false,
                    name: "scripted".to_owned(),
                },
                failures: Vec::new(),
                sent: Vec::new(),
                incoming_rx: Some(incoming_rx),
                reports_rx: Some(reports_rx),
            })),
            incoming_tx,
            reports_tx,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Script) -> T) -> T {
        // A poisoned lock only means a test panicked while holding it; the data is still fine.
        let mut guard = match self.script.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    pub fn set_available(&self, available: bool) {
        self.with(|s| s.status.available = available);
    }

    pub fn set_roaming(&self, roaming: bool) {
        self.with(|s| s.status.roaming = roaming);
    }

    /// The next send fails with `error` (queued: several calls fail several sends).
    pub fn fail_next(&self, error: CellularError) {
        self.with(|s| s.failures.push(error));
    }

    /// Everything sent so far, oldest first.
    pub fn sent(&self) -> Vec<SentSms> {
        self.with(|s| s.sent.clone())
    }

    /// Delivers `body` from `from` as if the network had.
    pub async fn receive(&self, from: &str, body: &str) {
        let sms = IncomingSms {
            from: from.to_owned(),
            body: body.to_owned(),
            received_at: Utc::now(),
        };
        // Nobody listening is fine for a test double.
        let _ = self.incoming_tx.send(sms).await;
    }

    /// Reports what became of the sent text `text`, as the network would.
    pub async fn report_delivery(&self, text: SentTextId, outcome: DeliveryOutcome) {
        let _ = self.reports_tx.send(DeliveryReport { text, outcome }).await;
    }
}

impl Default for ScriptedCellular {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Cellular for ScriptedCellular {
    fn status(&self) -> CellularStatus {
        self.with(|s| s.status.clone())
    }

    async fn send(&self, to: &str, body: &str) -> Result<CellularReceipt, CellularError> {
        self.with(|s| {
            if !s.status.available {
                return Err(CellularError::Unavailable("no network".to_owned()));
            }
            if !s.failures.is_empty() {
                return Err(s.failures.remove(0));
            }
            let text = SentTextId(u64::try_from(s.sent.len()).unwrap_or(u64::MAX));
            s.sent.push(SentSms {
                to: to.to_owned(),
                body: body.to_owned(),
                text,
            });
            let segments = airtext_sms::plan(body).segment_count();
            let segments = u32::try_from(segments).unwrap_or(u32::MAX);
            Ok(CellularReceipt {
                references: (0..segments).map(|i| (i % 256) as u8).collect(),
                segments,
                text: Some(text),
            })
        })
    }

    fn take_incoming(&self) -> Option<mpsc::Receiver<IncomingSms>> {
        self.with(|s| s.incoming_rx.take())
    }

    fn take_delivery_reports(&self) -> Option<mpsc::Receiver<DeliveryReport>> {
        self.with(|s| s.reports_rx.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_cellular_is_never_available() {
        let none = NoCellular;
        assert!(!none.status().available);
        let error = none.send("+14155550100", "hi").await;
        assert!(matches!(error, Err(CellularError::Unavailable(_))));
        assert!(none.take_incoming().is_none());
    }

    #[tokio::test]
    async fn scripted_records_fails_and_receives() {
        let modem = ScriptedCellular::new();
        modem.fail_next(CellularError::Io("gone".into()));
        assert!(modem.send("+1", "a").await.is_err());
        let receipt = modem.send("+1", "b").await;
        assert_eq!(receipt.map(|r| r.segments).ok(), Some(1));
        assert_eq!(modem.sent().len(), 1);
        let mut rx = modem.take_incoming();
        assert!(modem.take_incoming().is_none());
        modem.receive("+2", "hello").await;
        let got = match rx.as_mut() {
            Some(rx) => rx.recv().await,
            None => None,
        };
        assert_eq!(got.map(|m| m.body), Some("hello".to_owned()));
    }
}
