//! The outbox: a text is written locally first and sent when a path is available.
//!
//! [`Session::queue_text`] writes the message (status `queued`, a fresh `client_id`) and its
//! outbox row in one transaction and returns at once, so the text shows in the thread before
//! any network is involved. [`Session::flush_outbox`] then works through the rows that are due:
//! it picks the path ([`crate::path`]), sends, and on failure either uses the other path (the
//! contact allows fallback), or schedules a retry with jittered back-off (persisted, so it
//! survives restarts), or fails the text when nothing can help.
//!
//! Never duplicated: a cloud send carries the `client_id`, so a retry after a lost reply gets
//! the first message back; the server copy (from the reply or from sync, whichever is first)
//! completes the same local row. A cellular send is claimed (`cellular_in_flight`) in a commit
//! before the modem is asked, so a crash mid-send cannot lead to a second SMS.

use std::time::Duration;

use airtext_api::contacts::PathChoice;
use airtext_api::messages::{Direction, Message, Route, SendMessage};
use airtext_api::{ClientId, ErrorCode, SendStatus};
use chrono::Utc;
use serde::Serialize;

use crate::cache::messages::{self, CachedMessage, LocalMessageId, NewLocal};
use crate::cache::outbox::{self, OutboxEntry, Stage};
use crate::cache::{contacts, conversations, lookups};
use crate::cellular::{DeliveryOutcome, DeliveryReport, IncomingSms, SentTextId};
use crate::cloud::backoff::Backoff;
use crate::cloud::RecordCellular;
use crate::error::{Error, Result};
use crate::events::ClientEvent;
use crate::path::{self, Decision, Facts, FailureAction, SendPath};
use crate::session::Session;

/// Longest body, in characters (the gateway's default limit).
pub const MAX_BODY_CHARS: usize = 1600;
/// Retry waits: from 2 s, doubling, up to 10 minutes.
const RETRY_BASE: Duration = Duration::from_secs(2);
const RETRY_CAP: Duration = Duration::from_secs(600);
/// How long a cellular send may stay claimed before it counts as abandoned.
const IN_FLIGHT_LIMIT: Duration = Duration::from_secs(300);

/// What one flush did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxReport {
    pub sent: u32,
    pub failed: u32,
    /// Still waiting (for a path to come back, or for the gateway to record a cellular text).
    pub waiting: u32,
}

/// How one attempt ended.
enum Attempt {
    Done,
    Failed { error: Error, transient: bool },
}

impl Session {
    /// Writes a text locally (queued, visible at once) and schedules it for sending.
    pub async fn queue_text(
        &self,
        to: &str,
        body: &str,
        via: Option<PathChoice>,
    ) -> Result<CachedMessage> {
        let chars = body.chars().count();
        if body.trim().is_empty() || chars > MAX_BODY_CHARS {
            return Err(Error::invalid(
                ErrorCode::InvalidBody,
                format!("a text must have 1 to {MAX_BODY_CHARS} characters; this one has {chars}"),
            ));
        }
        let peer = self.normalise(to)?.as_str().to_owned();
        let from = self.profile.own_address();
        let body = body.to_owned();
        let message = self
            .cache
            .call(move |c| {
                let tx = c.transaction()?;
                let now = Utc::now();
                let id = messages::insert_local(
                    &tx,
                    &NewLocal {
                        direction: Direction::Outbound,
                        peer: &peer,
                        from: &from,
                        to: &peer,
                        body: &body,
                        client_id: ClientId::new(),
                        status: SendStatus::Queued,
                        path: None,
                        route: None,
                        at: now,
                    },
                )?;
                outbox::enqueue(&tx, id, via, Stage::Send, now)?;
                let message = messages::get(&tx, id)?;
                tx.commit()?;
                message.ok_or(crate::cache::CacheError::Closed)
            })
            .await?;
        self.emit(ClientEvent::MessageAdded {
            message: message.clone(),
        });
        self.emit_conversation(&message.peer).await;
        self.outbox_wake.notify_one();
        Ok(message)
    }

    /// Stores a text that arrived over cellular and schedules recording it at the gateway.
    pub async fn receive_cellular(&self, sms: IncomingSms) -> Result<CachedMessage> {
        let peer = self
            .normalise(&sms.from)
            .map(|a| a.as_str().to_owned())
            .unwrap_or_else(|_| sms.from.clone());
        let me = self.profile.own_address();
        let message = self
            .cache
            .call(move |c| {
                let tx = c.transaction()?;
                let id = messages::insert_local(
                    &tx,
                    &NewLocal {
                        direction: Direction::Inbound,
                        peer: &peer,
                        from: &peer,
                        to: &me,
                        body: &sms.body,
                        client_id: ClientId::new(),
                        status: SendStatus::Delivered,
                        path: Some(SendPath::Cellular),
                        route: Some(Route::Cellular),
                        at: sms.received_at,
                    },
                )?;
                outbox::enqueue(&tx, id, None, Stage::Record, Utc::now())?;
                let message = messages::get(&tx, id)?;
                tx.commit()?;
                message.ok_or(crate::cache::CacheError::Closed)
            })
            .await?;
        self.emit(ClientEvent::MessageAdded {
            message: message.clone(),
        });
        self.emit_conversation(&message.peer).await;
        self.outbox_wake.notify_one();
        Ok(message)
    }

    /// Sends a waiting text by `via` now (the person took the offered other path).
    pub async fn resend_via(&self, message: LocalMessageId, via: PathChoice) -> Result<bool> {
        let moved = self
            .cache
            .call(move |c| outbox::redirect(c, message, via, Utc::now()))
            .await?;
        self.outbox_wake.notify_one();
        Ok(moved)
    }

    /// Makes every waiting row due now (the connection just came back).
    pub async fn wake_outbox(&self) -> Result<()> {
        self.cache.call(|c| outbox::wake_all(c, Utc::now())).await?;
        self.outbox_wake.notify_one();
        Ok(())
    }

    /// Works through every outbox row that is due.
    pub async fn flush_outbox(&self) -> Result<OutboxReport> {
        let _one_at_a_time = self.outbox_lock.lock().await;
        let due = self.cache.call(|c| outbox::due(c, Utc::now())).await?;
        let mut report = OutboxReport::default();
        for entry in due {
            let outcome = match entry.stage {
                Stage::Send => self.send_entry(&entry).await?,
                Stage::Record => self.record_entry(&entry).await?,
                Stage::CellularInFlight => self.abandon_in_flight(&entry).await?,
            };
            match outcome {
                Outcome::Sent => report.sent += 1,
                Outcome::Failed => report.failed += 1,
                Outcome::Waiting => report.waiting += 1,
            }
        }
        Ok(report)
    }

    /// Every text still waiting, oldest first.
    pub async fn outbox(&self) -> Result<Vec<OutboxEntry>> {
        Ok(self.cache.call(|c| outbox::all(c)).await?)
    }

    async fn facts(&self, entry: &OutboxEntry) -> Result<Facts> {
        let peer = entry.peer.clone();
        let contact = self.cache.call(move |c| contacts::get(c, &peer)).await?;
        let peer_is_phone = self
            .normalise(&entry.peer)
            .map(|a| a.is_phone_like())
            .unwrap_or(false);
        let choice = entry
            .via
            .or(contact.as_ref().map(|c| c.path))
            .unwrap_or_default();
        let cellular = self.cellular.status();
        // Ask the gateway only when the answer can change the decision.
        let in_network = if choice == PathChoice::Auto
            && peer_is_phone
            && cellular.available
            && !cellular.roaming
        {
            self.in_network(&entry.peer).await
        } else {
            None
        };
        Ok(Facts {
            choice,
            fallback: contact.map(|c| c.fallback).unwrap_or(false),
            peer_is_phone,
            in_network,
            cellular,
        })
    }

    /// Whether `address` is an Airtext account: the cached answer while fresh, else the
    /// gateway's (cached), else a stale cached answer, else unknown.
    pub async fn in_network(&self, address: &str) -> Option<bool> {
        let key = address.to_owned();
        let cached = self
            .cache
            .call(move |c| lookups::get(c, &key))
            .await
            .ok()
            .flatten();
        if let Some((in_network, at)) = cached {
            let age = Utc::now()
                .signed_duration_since(at)
                .to_std()
                .unwrap_or_default();
            if age < path::LOOKUP_TTL {
                return Some(in_network);
            }
        }
        match self.cloud.lookup(address).await {
            Ok(lookup) => {
                let key = address.to_owned();
                let _ = self
                    .cache
                    .call(move |c| lookups::put(c, &key, lookup.in_network, Utc::now()))
                    .await;
                Some(lookup.in_network)
            }
            // An unknown username is not in-network for texting purposes, but it is not a
            // phone either, so this only matters for phones: treat as "outside".
            Err(Error::Api { status: 404, .. }) => Some(false),
            Err(_) => cached.map(|(in_network, _)| in_network),
        }
    }

    async fn send_entry(&self, entry: &OutboxEntry) -> Result<Outcome> {
        let facts = self.facts(entry).await?;
        let decision = path::decide(&facts);
        let first = self.attempt(entry, decision.path).await?;
        let Attempt::Failed { error, transient } = first else {
            return Ok(Outcome::Sent);
        };
        match path::on_failure(&decision, transient, &facts) {
            FailureAction::UseOther(other) => {
                tracing::info!(%error, path = other.as_str(), "trying the other path");
                match self.attempt(entry, other).await? {
                    Attempt::Done => Ok(Outcome::Sent),
                    Attempt::Failed { error, transient } => {
                        self.retry_or_fail(entry, &decision, error, transient, None)
                            .await
                    }
                }
            }
            FailureAction::RetryAndOffer(other) => {
                self.retry_or_fail(entry, &decision, error, true, Some(other))
                    .await
            }
            FailureAction::Retry => {
                self.retry_or_fail(entry, &decision, error, true, None)
                    .await
            }
            FailureAction::Fail => {
                self.retry_or_fail(entry, &decision, error, false, None)
                    .await
            }
        }
    }

    async fn retry_or_fail(
        &self,
        entry: &OutboxEntry,
        _decision: &Decision,
        error: Error,
        transient: bool,
        offer: Option<SendPath>,
    ) -> Result<Outcome> {
        let message = entry.message;
        if transient {
            let wait = Backoff::delay(RETRY_BASE, RETRY_CAP, entry.attempts.saturating_add(1));
            let at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
            let text = match offer {
                Some(other) => {
                    format!("{error} (will retry; it can also go by {})", other.as_str())
                }
                None => format!("{error} (will retry)"),
            };
            self.cache
                .call(move |c| outbox::retry_at(c, message, at, &text))
                .await?;
            Ok(Outcome::Waiting)
        } else {
            let reason = error.to_string();
            let changed = self
                .cache
                .call(move |c| {
                    let tx = c.transaction()?;
                    let changed = messages::apply_local_status(
                        &tx,
                        message,
                        SendStatus::Failed,
                        Some(&reason),
                    )?;
                    outbox::remove(&tx, message)?;
                    tx.commit()?;
                    Ok(changed)
                })
                .await?;
            if changed {
                self.emit_message(message).await;
            }
            Ok(Outcome::Failed)
        }
    }

    async fn attempt(&self, entry: &OutboxEntry, path: SendPath) -> Result<Attempt> {
        match path {
            SendPath::Cloud => {
                let request = SendMessage {
                    to: entry.peer.clone(),
                    body: entry.body.clone(),
                    client_id: entry.client_id,
                };
                match self.cloud.send_message(&request).await {
                    Ok(server) => {
                        let local = entry.message;
                        self.cache
                            .call(move |c| {
                                let tx = c.transaction()?;
                                messages::store_server_copy(&tx, &server)?;
                                messages::set_path(&tx, local, SendPath::Cloud, None)?;
                                outbox::remove(&tx, local)?;
                                tx.commit()?;
                                Ok(())
                            })
                            .await?;
                        self.emit_message(entry.message).await;
                        Ok(Attempt::Done)
                    }
                    Err(error) => {
                        let transient = error.is_transient();
                        Ok(Attempt::Failed { error, transient })
                    }
                }
            }
            SendPath::Cellular => {
                let local = entry.message;
                let claim_until =
                    Utc::now() + chrono::Duration::from_std(IN_FLIGHT_LIMIT).unwrap_or_default();
                let claimed = self
                    .cache
                    .call(move |c| {
                        outbox::move_stage(
                            c,
                            local,
                            Stage::Send,
                            Stage::CellularInFlight,
                            claim_until,
                        )
                    })
                    .await?;
                if !claimed {
                    // Another process has it.
                    return Ok(Attempt::Done);
                }
                match self.cellular.send(&entry.peer, &entry.body).await {
                    Ok(receipt) => {
                        // Before anything else: its report may come while the row is written.
                        if let Some(text) = receipt.text {
                            self.await_delivery(text, local);
                        }
                        self.cache
                            .call(move |c| {
                                let tx = c.transaction()?;
                                messages::apply_local_status(&tx, local, SendStatus::Sent, None)?;
                                messages::set_path(
                                    &tx,
                                    local,
                                    SendPath::Cellular,
                                    Some(Route::Cellular),
                                )?;
                                outbox::move_stage(
                                    &tx,
                                    local,
                                    Stage::CellularInFlight,
                                    Stage::Record,
                                    Utc::now(),
                                )?;
                                tx.commit()?;
                                Ok(())
                            })
                            .await?;
                        tracing::debug!(segments = receipt.segments, "sent over cellular");
                        self.emit_message(local).await;
                        // Best effort now; the outbox retries the recording later.
                        let _ = self.record_entry(entry).await;
                        Ok(Attempt::Done)
                    }
                    Err(error) => {
                        let transient = error.is_path_unavailable();
                        self.cache
                            .call(move |c| {
                                outbox::move_stage(
                                    c,
                                    local,
                                    Stage::CellularInFlight,
                                    Stage::Send,
                                    Utc::now(),
                                )
                            })
                            .await?;
                        Ok(Attempt::Failed {
                            error: error.into(),
                            transient,
                        })
                    }
                }
            }
        }
    }

    fn await_delivery(&self, text: SentTextId, local: LocalMessageId) {
        let mut awaiting = match self.awaiting_delivery.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        // The modem forgets texts it waited on too long; so does this, past the same bound.
        if awaiting.len() >= crate::cellular::delivery::MAX_TRACKED {
            if let Some(oldest) = awaiting.keys().min().copied() {
                awaiting.remove(&oldest);
            }
        }
        awaiting.insert(text, local);
    }

    /// Applies the modem's delivery report to the text it is about: `delivered`, or `failed`
    /// with the network's reason (status only moves forward, so a late report changes
    /// nothing). The gateway's copy keeps `sent`: API v1 has no call for a device to report a
    /// cellular text's delivery (docs/decisions.md).
    pub async fn apply_delivery_report(&self, report: DeliveryReport) -> Result<()> {
        let local = {
            let mut awaiting = match self.awaiting_delivery.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            awaiting.remove(&report.text)
        };
        let Some(local) = local else {
            tracing::debug!(
                ?report,
                "a delivery report for a text this process did not send through the modem"
            );
            return Ok(());
        };
        let (status, reason) = match report.outcome {
            DeliveryOutcome::Delivered => (SendStatus::Delivered, None),
            DeliveryOutcome::Failed { reason } => (SendStatus::Failed, Some(reason)),
        };
        let changed = self
            .cache
            .call(move |c| messages::apply_local_status(c, local, status, reason.as_deref()))
            .await?;
        if changed {
            self.emit_message(local).await;
        }
        Ok(())
    }

    /// Records a cellular text at the gateway (the proposed `POST /v1/messages/record`).
    async fn record_entry(&self, entry: &OutboxEntry) -> Result<Outcome> {
        let request = RecordCellular {
            direction: entry.direction,
            peer: entry.peer.clone(),
            body: entry.body.clone(),
            client_id: entry.client_id,
            at: entry.created_at,
        };
        let local = entry.message;
        match self.cloud.record_cellular_message(&request).await {
            Ok(server) => {
                self.store_recorded(local, server).await?;
                Ok(Outcome::Sent)
            }
            Err(error)
                if error.is_transient()
                    || matches!(
                        error.code(),
                        ErrorCode::NotFound | ErrorCode::MethodNotAllowed
                    ) =>
            {
                // Not reachable, or a gateway without the endpoint yet: keep it and retry
                // slowly; the text itself has gone.
                let wait = Backoff::delay(
                    Duration::from_secs(30),
                    Duration::from_secs(3600),
                    entry.attempts.saturating_add(1),
                );
                let at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                let text = format!("not yet recorded at the gateway: {error}");
                self.cache
                    .call(move |c| outbox::retry_at(c, local, at, &text))
                    .await?;
                Ok(Outcome::Waiting)
            }
            Err(error) => {
                tracing::warn!(%error, "the gateway refused to record a cellular text");
                self.cache.call(move |c| outbox::remove(c, local)).await?;
                Ok(Outcome::Sent)
            }
        }
    }

    async fn store_recorded(&self, local: LocalMessageId, server: Message) -> Result<()> {
        self.cache
            .call(move |c| {
                let tx = c.transaction()?;
                messages::store_server_copy(&tx, &server)?;
                outbox::remove(&tx, local)?;
                tx.commit()?;
                Ok(())
            })
            .await?;
        self.emit_message(local).await;
        Ok(())
    }

    /// A cellular send claimed long ago and never finished (the app stopped mid-send): whether
    /// the SMS left is unknown, so it is failed with that reason rather than sent twice.
    async fn abandon_in_flight(&self, entry: &OutboxEntry) -> Result<Outcome> {
        let local = entry.message;
        let changed = self
            .cache
            .call(move |c| {
                let tx = c.transaction()?;
                let changed = messages::apply_local_status(
                    &tx,
                    local,
                    SendStatus::Failed,
                    Some("Airtext stopped while the modem was sending this text; it may not have been sent"),
                )?;
                outbox::remove(&tx, local)?;
                tx.commit()?;
                Ok(changed)
            })
            .await?;
        if changed {
            self.emit_message(local).await;
        }
        Ok(Outcome::Failed)
    }

    async fn emit_message(&self, id: LocalMessageId) {
        if let Ok(Some(message)) = self.cache.call(move |c| messages::get(c, id)).await {
            let peer = message.peer.clone();
            self.emit(ClientEvent::MessageUpdated { message });
            self.emit_conversation(&peer).await;
        }
    }

    pub(crate) async fn emit_conversation(&self, peer: &str) {
        let peer = peer.to_owned();
        let found = self
            .cache
            .call(move |c| match conversations::by_peer(c, &peer)? {
                Some(id) => conversations::get(c, id),
                None => Ok(None),
            })
            .await;
        if let Ok(Some(conversation)) = found {
            self.emit(ClientEvent::ConversationChanged { conversation });
        }
    }
}

enum Outcome {
    Sent,
    Failed,
    Waiting,
}
