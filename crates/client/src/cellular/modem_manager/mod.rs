//! A modem that ModemManager drives, over D-Bus (Linux).
//!
//! On a Linux desktop ModemManager owns the modem's ports, so the AT backend cannot open
//! them; this backend asks ModemManager instead, through its published D-Bus API
//! (`org.freedesktop.ModemManager1`):
//! - **Modems**: the ObjectManager on `/org/freedesktop/ModemManager1` lists them
//!   ([`list_modems`], for Settings); the backend uses the one the setting names (IMEI,
//!   ModemManager's device id, or object path) or else the first, and follows modems coming
//!   and going (`InterfacesAdded`/`Removed`) and ModemManager restarting.
//! - **State**: `Modem` `State`, `UnlockRequired`, `Manufacturer`/`Model`, `OwnNumbers`, and
//!   `Modem.Modem3gpp` `RegistrationState`/`OperatorName`, re-read on every
//!   `PropertiesChanged`; [`Cellular::status`] returns the last reading (roaming when the
//!   registration is a roaming one, which `auto` answers with the cloud). A SIM that asks for
//!   its PIN is sent the configured one once (`Sim.SendPin`), never again.
//! - **Send**: `Messaging.Create` with `number`, `text` and `delivery-report-request`, then
//!   `Sms.Send`, which returns once the network took every part (ModemManager splits long
//!   texts itself; the receipt counts the segments as `airtext-sms` plans them, like the AT
//!   backend, and carries the last part's `MessageReference`, the one ModemManager keeps).
//! - **Receive**: `Messaging.Added(path, received = true)` (and `Messaging.List` at start for
//!   texts that came while nobody listened) → the `Sms` object's `Number`, `Text`,
//!   `Timestamp` → [`Cellular::take_incoming`] → `Messaging.Delete`. A multi-part text is
//!   announced at its first part (`State` receiving) and taken once `State` is received.
//! - **Delivery reports**: a status-report SMS (`PduType` 3) matched to the sent text by its
//!   `MessageReference` and `Number`, or a sent SMS whose `DeliveryState` changes, settle the
//!   text ([`crate::cellular::delivery`]); both SMS objects are then deleted.
//!
//! One task follows the signals (`watch`); sends run on the caller's task. Every call has a
//! time limit; a value ModemManager sends that this backend cannot read is skipped.

mod api;
mod link;
mod watch;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch as watch_channel};
use tokio::task::JoinHandle;

use super::delivery::{DeliveryReport, SentTexts};
use super::{
    Cellular, CellularError, CellularReceipt, CellularStatus, IncomingSms, ModemInfo, SentTextId,
};
use api::ModemFacts;
use link::Link;

/// How many sent SMS objects are kept on ModemManager for their delivery state at most; the
/// oldest is deleted first.
const KEPT_SENT: usize = 256;

/// Which D-Bus to find ModemManager on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bus {
    /// The system bus, where ModemManager runs.
    System,
    /// A bus at this address (`unix:path=…`), e.g. a test's private bus.
    Address(String),
}

/// How to reach and drive the modem.
#[derive(Debug, Clone)]
pub struct ModemManagerConfig {
    pub bus: Bus,
    /// The modem to use (IMEI, ModemManager's device id or object path); `None`: the first
    /// listed.
    pub modem: Option<String>,
    /// The SIM PIN, sent once when the SIM asks for it.
    pub pin: Option<String>,
    /// Ask the network for delivery reports.
    pub delivery_reports: bool,
    /// How long `Sms.Send` may take (the network may take minutes).
    pub send_timeout: Duration,
    /// How long any other call may take.
    pub call_timeout: Duration,
}

impl ModemManagerConfig {
    /// Defaults: the system bus, the first modem, delivery reports on.
    pub fn new() -> Self {
        ModemManagerConfig {
            bus: Bus::System,
            modem: None,
            pin: None,
            delivery_reports: true,
            send_timeout: Duration::from_secs(120),
            call_timeout: Duration::from_secs(25),
        }
    }
}

impl Default for ModemManagerConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// What the task and the senders share.
#[derive(Debug, Default)]
struct Shared {
    /// The object path of the modem in use.
    modem: Option<String>,
    facts: Option<ModemFacts>,
    /// Why a text cannot go now; `None` when it can.
    reason: Option<String>,
    sent: SentTexts,
    /// Sent SMS objects kept for their delivery state, oldest first.
    sent_sms: VecDeque<(String, SentTextId)>,
}

fn with<T>(shared: &Mutex<Shared>, f: impl FnOnce(&mut Shared) -> T) -> T {
    let mut guard = match shared.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    f(&mut guard)
}

/// Hands over a settled text's report and deletes its sent SMS object from ModemManager.
fn settle(
    link: &Link,
    shared: &Arc<Mutex<Shared>>,
    deliveries: &mpsc::Sender<DeliveryReport>,
    report: DeliveryReport,
) {
    let (modem, kept) = with(shared, |s| {
        let kept = s
            .sent_sms
            .iter()
            .position(|(_, id)| *id == report.text)
            .and_then(|i| s.sent_sms.remove(i));
        (s.modem.clone(), kept)
    });
    if deliveries.try_send(report).is_err() {
        tracing::warn!("a delivery report was dropped: nobody reads them");
    }
    if let (Some(modem), Some((sms, _))) = (modem, kept) {
        let link = link.clone();
        tokio::spawn(async move {
            let _ = link.delete_sms(&modem, &sms).await;
        });
    }
}

/// Aborts the task when the backend goes.
#[derive(Debug)]
struct TaskGuard(JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A modem driven by ModemManager (see the module docs).
#[derive(Debug)]
pub struct ModemManagerModem {
    link: Link,
    config: ModemManagerConfig,
    shared: Arc<Mutex<Shared>>,
    status: watch_channel::Receiver<CellularStatus>,
    deliveries_tx: mpsc::Sender<DeliveryReport>,
    incoming: Mutex<Option<mpsc::Receiver<IncomingSms>>>,
    deliveries: Mutex<Option<mpsc::Receiver<DeliveryReport>>>,
    _task: TaskGuard,
}

impl ModemManagerModem {
    /// Connects to ModemManager and starts following it. Fails when the bus cannot be reached
    /// or ModemManager is not on it; succeeds with no modem (or a locked or unregistered one):
    /// [`Cellular::status`] then says why nothing can be sent, and a modem plugged in later
    /// is picked up.
    pub async fn connect(config: ModemManagerConfig) -> Result<ModemManagerModem, CellularError> {
        let link = Link::connect(&config.bus, config.call_timeout).await?;
        if !link.service_running().await {
            return Err(CellularError::Unavailable(format!(
                "ModemManager is not running on the {}",
                config.bus
            )));
        }
        let signals = watch::Signals::subscribe(&link).await?;
        let (status_tx, status) = watch_channel::channel(CellularStatus {
            available: false,
            roaming: false,
            name: "ModemManager".to_owned(),
        });
        let (incoming_tx, incoming) = mpsc::channel(64);
        let (deliveries_tx, deliveries) = mpsc::channel(256);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let mut watcher = watch::Watcher::new(
            link.clone(),
            config.modem.clone(),
            config.pin.clone(),
            shared.clone(),
            watch::Outputs {
                status: status_tx,
                incoming: incoming_tx,
                deliveries: deliveries_tx.clone(),
            },
        );
        watcher.select().await;
        let task = tokio::spawn(watcher.run(signals));
        Ok(ModemManagerModem {
            link,
            config,
            shared,
            status,
            deliveries_tx,
            incoming: Mutex::new(Some(incoming)),
            deliveries: Mutex::new(Some(deliveries)),
            _task: TaskGuard(task),
        })
    }

    /// The object path of the modem in use, if any.
    pub fn modem_path(&self) -> Option<String> {
        with(&self.shared, |s| s.modem.clone())
    }

    /// Creates and sends the SMS; returns its `MessageReference` (when ModemManager gave it)
    /// and its id in delivery reports. The SMS object is kept for its report, or deleted when
    /// none will come.
    async fn send_text(
        &self,
        to: &str,
        body: &str,
    ) -> Result<(Vec<u8>, Option<SentTextId>), CellularError> {
        airtext_sms::tpdu::TpAddress::phone(to)
            .map_err(|_| CellularError::InvalidRecipient(to.to_owned()))?;
        let (modem, reason) = with(&self.shared, |s| (s.modem.clone(), s.reason.clone()));
        let Some(modem) = modem else {
            return Err(CellularError::Unavailable(
                reason.unwrap_or_else(|| "ModemManager lists no modem".to_owned()),
            ));
        };
        if let Some(reason) = reason {
            return Err(CellularError::Unavailable(reason));
        }
        let reports = self.config.delivery_reports;
        let sms = self.link.create_sms(&modem, to, body, reports).await?;
        if let Err(error) = self.link.send_sms(&sms, self.config.send_timeout).await {
            let _ = self.link.delete_sms(&modem, &sms).await;
            return Err(error);
        }
        // TP-MR is one octet; ModemManager carries it in a `u`.
        let reference = match self.link.sms(&sms).await {
            Ok(facts) => Some((facts.message_reference & 0xFF) as u8),
            Err(_) => None,
        };
        let (true, Some(reference)) = (reports, reference) else {
            let _ = self.link.delete_sms(&modem, &sms).await;
            return Ok((reference.into_iter().collect(), None));
        };
        let (id, settled, dropped) = with(&self.shared, |s| {
            let (id, settled) = s.sent.register(to, &[reference]);
            let dropped = if s.sent_sms.len() >= KEPT_SENT {
                s.sent_sms.pop_front()
            } else {
                None
            };
            s.sent_sms.push_back((sms.clone(), id));
            (id, settled, dropped)
        });
        if let Some((old, old_id)) = dropped {
            with(&self.shared, |s| s.sent.forget(old_id));
            let _ = self.link.delete_sms(&modem, &old).await;
        }
        if let Some(report) = settled {
            settle(&self.link, &self.shared, &self.deliveries_tx, report);
        }
        Ok((vec![reference], Some(id)))
    }
}

fn take_once<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    match slot.lock() {
        Ok(mut guard) => guard.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    }
}

#[async_trait]
impl Cellular for ModemManagerModem {
    fn status(&self) -> CellularStatus {
        self.status.borrow().clone()
    }

    async fn send(&self, to: &str, body: &str) -> Result<CellularReceipt, CellularError> {
        let (references, text) = self.send_text(to, body).await?;
        let segments = u32::try_from(airtext_sms::plan(body).segment_count()).unwrap_or(u32::MAX);
        Ok(CellularReceipt {
            references,
            segments,
            text,
        })
    }

    fn take_incoming(&self) -> Option<mpsc::Receiver<IncomingSms>> {
        take_once(&self.incoming)
    }

    fn take_delivery_reports(&self) -> Option<mpsc::Receiver<DeliveryReport>> {
        take_once(&self.deliveries)
    }
}

/// The modems ModemManager on `bus` lists, for Settings. Empty when ModemManager is not
/// running; an error only when the bus itself cannot be reached.
pub async fn list_modems(bus: &Bus) -> Result<Vec<ModemInfo>, CellularError> {
    let link = Link::connect(bus, Duration::from_secs(10)).await?;
    if !link.service_running().await {
        return Ok(Vec::new());
    }
    Ok(link
        .modems()
        .await?
        .into_iter()
        .map(|(path, facts)| ModemInfo {
            setting: format!(
                "{}{}",
                super::MODEM_MANAGER_SETTING,
                facts.setting_id(&path)
            ),
            label: facts.label(),
            path,
            manufacturer: facts.manufacturer.clone(),
            model: facts.model.clone(),
            own_numbers: facts.own_numbers.clone(),
            operator: facts.operator.clone(),
            state: facts.state_text().to_owned(),
            sim_lock: facts.lock_text().map(str::to_owned),
            available: facts.available(),
            roaming: facts.roaming(),
            unavailable_reason: facts.unavailable_reason(),
        })
        .collect())
}
