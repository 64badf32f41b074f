//! The task that follows ModemManager: which modem is in use and its state, texts that
//! arrive, and status reports. It owns nothing on the modem but the SMS objects it takes:
//! each received text is handed over, then deleted; each status report is matched, then
//! deleted.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use zbus::message::Type as MessageType;
use zbus::zvariant::OwnedObjectPath;
use zbus::{MatchRule, Message, MessageStream};

use super::api::{self, ModemFacts, PduType, Properties};
use super::link::{Link, SmsFacts};
use super::Shared;
use crate::cellular::delivery::{DeliveryReport, SegmentReport};
use crate::cellular::{CellularError, CellularStatus, IncomingSms};

/// How many handed-over SMS paths are remembered, so one whose deletion failed is not handed
/// over twice.
const REMEMBERED: usize = 256;

/// The signals the task needs, subscribed to before anything is read so nothing falls
/// between.
pub struct Signals {
    /// Everything ModemManager's objects emit (`PropertiesChanged`, `Messaging.Added`,
    /// `InterfacesAdded`/`Removed`).
    objects: MessageStream,
    /// ModemManager coming and going on the bus.
    owner: MessageStream,
}

impl Signals {
    pub async fn subscribe(link: &Link) -> Result<Signals, CellularError> {
        let error = |e: zbus::Error| CellularError::Io(format!("D-Bus subscription: {e}"));
        let objects = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .path_namespace(api::ROOT)
            .map_err(error)?
            .build();
        let owner = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .interface("org.freedesktop.DBus")
            .map_err(error)?
            .member("NameOwnerChanged")
            .map_err(error)?
            .arg(0, api::SERVICE)
            .map_err(error)?
            .build();
        Ok(Signals {
            objects: MessageStream::for_match_rule(objects, &link.conn, Some(1024))
                .await
                .map_err(error)?,
            owner: MessageStream::for_match_rule(owner, &link.conn, Some(16))
                .await
                .map_err(error)?,
        })
    }
}

/// Where the task's results go.
pub struct Outputs {
    pub status: watch::Sender<CellularStatus>,
    pub incoming: mpsc::Sender<IncomingSms>,
    pub deliveries: mpsc::Sender<DeliveryReport>,
}

pub struct Watcher {
    link: Link,
    /// The modem the setting names (`None`: the first one listed).
    wanted: Option<String>,
    pin: Option<String>,
    shared: Arc<Mutex<Shared>>,
    out: Outputs,
    /// Received texts whose parts are still coming in (`State` receiving).
    receiving: HashSet<String>,
    /// SMS paths already handed over or matched, newest last.
    taken: VecDeque<String>,
    /// Modems the configured PIN was sent to (never twice: the SIM blocks after three).
    pin_sent: HashSet<String>,
}

impl Watcher {
    pub fn new(
        link: Link,
        wanted: Option<String>,
        pin: Option<String>,
        shared: Arc<Mutex<Shared>>,
        out: Outputs,
    ) -> Self {
        Watcher {
            link,
            wanted,
            pin,
            shared,
            out,
            receiving: HashSet::new(),
            taken: VecDeque::new(),
            pin_sent: HashSet::new(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Shared) -> T) -> T {
        super::with(&self.shared, f)
    }

    /// Follows ModemManager until the backend is dropped (the task is then aborted) or the
    /// bus connection ends.
    pub async fn run(mut self, mut signals: Signals) {
        loop {
            tokio::select! {
                message = signals.objects.next() => match message {
                    Some(Ok(message)) => self.on_signal(&message).await,
                    Some(Err(error)) => tracing::debug!(%error, "an unreadable D-Bus message"),
                    None => break,
                },
                message = signals.owner.next() => match message {
                    Some(Ok(message)) => self.on_owner_change(&message).await,
                    Some(Err(_)) => {}
                    None => break,
                },
            }
        }
        self.use_modem(None, "the D-Bus connection closed".to_owned());
    }

    /// Picks the modem to use (the one the setting names, or the first listed), reads its
    /// state, and takes the texts and reports it already holds.
    pub async fn select(&mut self) {
        let modems = match self.link.modems().await {
            Ok(modems) => modems,
            Err(error) => {
                self.use_modem(
                    None,
                    format!("ModemManager cannot list its modems: {error}"),
                );
                return;
            }
        };
        let chosen = modems.into_iter().find(|(path, facts)| match &self.wanted {
            Some(id) => facts.is(path, id),
            None => true,
        });
        let Some((path, _)) = chosen else {
            let why = match &self.wanted {
                Some(id) => format!("ModemManager does not list the modem {id} (unplugged?)"),
                None => "ModemManager lists no modem".to_owned(),
            };
            self.use_modem(None, why);
            return;
        };
        let already = self.with(|s| s.modem.as_deref() == Some(path.as_str()));
        if !already {
            tracing::info!(modem = %path, "using the ModemManager modem");
            self.with(|s| s.modem = Some(path.clone()));
        }
        self.refresh().await;
        match self.link.list_sms(&path).await {
            Ok(stored) => {
                for sms in stored {
                    self.inspect(&sms).await;
                }
            }
            Err(error) => tracing::debug!(%error, "Messaging.List failed"),
        }
    }

    /// No modem in use, for `why`.
    fn use_modem(&mut self, path: Option<String>, why: String) {
        self.with(|s| {
            s.modem = path;
            s.facts = None;
            s.reason = Some(why.clone());
        });
        self.receiving.clear();
        self.publish(None, Some(why));
    }

    /// Reads the modem's state again and publishes it; sends the configured PIN once when
    /// the SIM asks for it.
    async fn refresh(&mut self) {
        let Some(path) = self.with(|s| s.modem.clone()) else {
            return;
        };
        let facts = match self.link.modem(&path).await {
            Ok(facts) => facts,
            Err(error) => {
                let why = format!("ModemManager did not give the modem's state: {error}");
                self.with(|s| s.reason = Some(why.clone()));
                self.publish(None, Some(why));
                return;
            }
        };
        if facts.lock == api::LOCK_SIM_PIN {
            if let (Some(pin), Some(sim)) = (self.pin.clone(), facts.sim.clone()) {
                if self.pin_sent.insert(path.clone()) {
                    match self.link.send_pin(&sim, &pin).await {
                        // The modem announces the unlock with a property change.
                        Ok(()) => tracing::info!("the SIM took the configured PIN"),
                        Err(error) => {
                            tracing::warn!(%error, "the SIM refused the configured PIN");
                            let why = format!(
                                "the SIM refused the configured PIN ({error}); check it before trying again, the SIM blocks after 3 wrong PINs"
                            );
                            self.with(|s| {
                                s.facts = Some(facts.clone());
                                s.reason = Some(why.clone());
                            });
                            self.publish(Some(&facts), Some(why));
                            return;
                        }
                    }
                }
            }
        }
        let why = facts.unavailable_reason();
        self.with(|s| {
            s.facts = Some(facts.clone());
            s.reason = why.clone();
        });
        self.publish(Some(&facts), why);
    }

    fn publish(&self, facts: Option<&ModemFacts>, why: Option<String>) {
        let status = match facts {
            Some(facts) => {
                let mut name = format!("ModemManager: {}", facts.label());
                if let Some(operator) = &facts.operator {
                    name.push_str(&format!(" ({operator})"));
                }
                CellularStatus {
                    available: why.is_none() && facts.available(),
                    roaming: facts.roaming(),
                    name,
                }
            }
            None => CellularStatus {
                available: false,
                roaming: false,
                name: format!("ModemManager: {}", why.as_deref().unwrap_or("no modem")),
            },
        };
        self.out.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }

    async fn on_owner_change(&mut self, message: &Message) {
        let Ok((_, _, new_owner)) = message.body().deserialize::<(String, String, String)>() else {
            return;
        };
        if new_owner.is_empty() {
            self.use_modem(None, "ModemManager stopped".to_owned());
        } else {
            self.select().await;
        }
    }

    async fn on_signal(&mut self, message: &Message) {
        let header = message.header();
        let (Some(interface), Some(member), Some(path)) =
            (header.interface(), header.member(), header.path())
        else {
            return;
        };
        let path = path.as_str().to_owned();
        let current = self.with(|s| s.modem.clone());
        match (interface.as_str(), member.as_str()) {
            // A modem appeared while none was in use.
            (api::OBJECT_MANAGER, "InterfacesAdded") if current.is_none() => {
                self.select().await;
            }
            (api::OBJECT_MANAGER, "InterfacesRemoved") => {
                let Ok((gone, interfaces)) = message
                    .body()
                    .deserialize::<(OwnedObjectPath, Vec<String>)>()
                else {
                    return;
                };
                if current.as_deref() == Some(gone.as_str())
                    && interfaces.iter().any(|i| i == api::MODEM)
                {
                    self.with(|s| s.modem = None);
                    self.select().await;
                }
            }
            (api::MESSAGING, "Added") if current.as_deref() == Some(path.as_str()) => {
                if let Ok((sms, true)) = message.body().deserialize::<(OwnedObjectPath, bool)>() {
                    self.inspect(sms.as_str()).await;
                }
            }
            (api::PROPERTIES, "PropertiesChanged") => {
                let Ok((changed_interface, changed, _)) =
                    message
                        .body()
                        .deserialize::<(String, Properties, Vec<String>)>()
                else {
                    return;
                };
                if current.as_deref() == Some(path.as_str()) {
                    if changed_interface == api::MODEM || changed_interface == api::MODEM_3GPP {
                        self.refresh().await;
                    }
                } else if changed_interface == api::SMS {
                    self.on_sms_change(&path, &changed).await;
                }
            }
            _ => {}
        }
    }

    /// An SMS object changed: a text finished arriving, or a sent one got its delivery state.
    async fn on_sms_change(&mut self, path: &str, changed: &Properties) {
        if self.receiving.contains(path) && api::u32_of(changed, "State") == Some(api::SMS_RECEIVED)
        {
            self.inspect(path).await;
            return;
        }
        let sent = self.with(|s| s.sent_sms.iter().any(|(p, _)| p == path));
        if sent && changed.contains_key("DeliveryState") {
            if let Ok(sms) = self.link.sms(path).await {
                self.take_delivery_state(&sms);
            }
        }
    }

    /// Looks at one SMS object the modem holds and takes it if it is ours to take.
    async fn inspect(&mut self, path: &str) {
        if self.taken.iter().any(|p| p == path) {
            return;
        }
        let sms = match self.link.sms(path).await {
            Ok(sms) => sms,
            // Deleted meanwhile (by another program), or not an SMS.
            Err(_) => return,
        };
        match sms.pdu_type {
            PduType::Deliver if sms.state == api::SMS_RECEIVING => {
                self.receiving.insert(path.to_owned());
            }
            PduType::Deliver if sms.state == api::SMS_RECEIVED => {
                self.receiving.remove(path);
                // Binary messages (MMS notifications, …) are left for whoever reads them.
                if sms.text.is_empty() && sms.data_len > 0 {
                    return;
                }
                let received_at = api::timestamp(&sms.timestamp).unwrap_or_else(chrono::Utc::now);
                let handed = self
                    .out
                    .incoming
                    .send(IncomingSms {
                        from: sms.number.clone(),
                        body: sms.text.clone(),
                        received_at,
                    })
                    .await;
                if handed.is_ok() {
                    self.remember(path);
                    self.delete(path).await;
                }
            }
            PduType::StatusReport => {
                self.take_delivery_state(&sms);
                self.remember(path);
                self.delete(path).await;
            }
            PduType::Deliver | PduType::Submit | PduType::Other => {}
        }
    }

    /// Reads a delivery state (of a status report, or of a sent SMS ModemManager updated) and
    /// hands over the text's report when it settles the text.
    fn take_delivery_state(&mut self, sms: &SmsFacts) {
        let Some((class, detail)) = api::delivery_state(sms.delivery_state) else {
            return;
        };
        let segment = SegmentReport {
            // TP-MR is one octet; ModemManager carries it in a `u`.
            reference: (sms.message_reference & 0xFF) as u8,
            recipient: sms.number.clone(),
            class,
            detail,
        };
        let Some(report) = self.with(|s| s.sent.report(segment)) else {
            return;
        };
        super::settle(&self.link, &self.shared, &self.out.deliveries, report);
    }

    fn remember(&mut self, path: &str) {
        if self.taken.len() >= REMEMBERED {
            self.taken.pop_front();
        }
        self.taken.push_back(path.to_owned());
    }

    async fn delete(&self, sms: &str) {
        let Some(modem) = self.with(|s| s.modem.clone()) else {
            return;
        };
        if let Err(error) = self.link.delete_sms(&modem, sms).await {
            tracing::debug!(%error, sms, "could not delete an SMS from the modem");
        }
    }
}
