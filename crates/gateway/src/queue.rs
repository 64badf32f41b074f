//! The outbound queue worker: hands out-of-network messages to carriers.
//!
//! The queue itself is durable (rows in the store, written in the same transaction as the
//! message); this worker only leases due rows, sends them, and records the outcome:
//! - a text accepted while the worker has room skips the claim: its row is written already
//!   leased to this node and the job handed to the worker in memory ([`QueueInlet`]), which
//!   saves a write per text. Its opt-out was checked inside that write a moment before, so
//!   the worker does not read it again; a job claimed from the store (a retry, or one left
//!   by a stopped node) is checked again, since STOP may have come while it waited;
//! - leases last `queue.lease_secs` (60); a job leased by a worker that crashed is claimed
//!   again once its lease ends, so nothing accepted is ever lost. A crash between a carrier's
//!   acceptance and the record of it sends that text again: delivery is at-least-once, as in
//!   every SMS gateway (docs/decisions.md explains why exactly-once is out of reach);
//! - the carriers come from least-cost routing ([`crate::lcr`]): cheapest first, carriers
//!   whose circuit breaker is open skipped; a retryable failure tries the next, and when none
//!   takes it the job is rescheduled with exponential back-off (`queue.first_backoff_secs`
//!   doubling, at most `queue.max_backoff_secs`) until the message is `queue.validity_secs`
//!   old, then it fails with the last reason;
//! - a permanent failure, a text no carrier can route, or a recipient who replied STOP fails
//!   the message at once (the opt-out is checked again here: STOP may have arrived after the
//!   text was accepted);
//! - the carrier, its message id and the cost are recorded on the message;
//! - a text whose cheapest usable carrier is bound on another node (an SMSC's `max_binds`
//!   taken there) is left for that node: offered again after [`ELSEWHERE_DELAY`], to
//!   whichever node claims it, rather than sent through a dearer carrier;
//! - at most [`MAX_IN_FLIGHT`] sends run at once;
//! - texts start in the order they were accepted, give or take those being stored at the
//!   moment the worker catches up: once a text finds the worker full, later texts are stored
//!   unleased behind it too, and nothing is handed over again until a claim has found no more
//!   due than it took. (Before, each place a finished send freed went to whichever came first,
//!   a new text or the claim, so under sustained load new texts kept overtaking stored ones.)
//!   While it catches up the worker claims in batches of at least [`CLAIM_BATCH`] (fewer only
//!   when nearly idle): a place freed by one finished send is not worth a write of its own;
//! - on shutdown it stops claiming and lets in-flight sends finish for at most
//!   [`DRAIN_TIMEOUT`]; what is still leased then simply waits for its lease to end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::carriers::{CarrierError, OutboundSms};
use crate::config::QueueConfig;
use crate::http::AppState;
use crate::store::{OutboundJob, OutboundOutcome};

/// How often the worker looks for due jobs (retries come due without anyone waking it).
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Sends running at once.
pub const MAX_IN_FLIGHT: usize = 256;
/// How long shutdown waits for in-flight sends.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How soon a text left for another node is offered again (to whichever node claims it).
pub const ELSEWHERE_DELAY: Duration = Duration::from_millis(500);
/// Free places the worker waits for before it claims, unless it has fewer sends than this
/// in flight.
pub const CLAIM_BATCH: usize = 32;

/// How accepted texts reach the worker: handed over in memory when it has room for them
/// ([`QueueInlet::reserve`]), otherwise by a wake to claim them from the store. A wake with no
/// worker waiting is remembered, so one sent between two claims is never missed.
#[derive(Debug, Clone)]
pub struct QueueInlet {
    wake: Arc<Notify>,
    /// The worker's sends in flight: a handed-over job holds one from before it is stored.
    room: Arc<Semaphore>,
    /// Texts wait in the store, due, for the worker to claim them: later texts queue behind
    /// them instead of being handed over. Set from the start until the worker's first claim,
    /// since a restart may find texts left from before it.
    behind: Arc<AtomicBool>,
    handed: mpsc::UnboundedSender<Handover>,
    /// Taken by the one worker.
    taken: Arc<std::sync::Mutex<Option<mpsc::UnboundedReceiver<Handover>>>>,
}

/// A job given to the worker directly, with its place among the sends in flight.
#[derive(Debug)]
struct Handover {
    job: OutboundJob,
    room: OwnedSemaphorePermit,
}

/// A place in the worker, held while the text it is for is stored.
#[derive(Debug)]
pub struct Reservation {
    room: OwnedSemaphorePermit,
    handed: mpsc::UnboundedSender<Handover>,
}

impl Reservation {
    /// Gives the stored job to the worker; if the worker has stopped (the gateway is shutting
    /// down), gives the job back, whose lease the caller should then release
    /// ([`release_lease`]) so that the next start sends it at once.
    pub fn hand_over(self, job: OutboundJob) -> Result<(), OutboundJob> {
        self.handed
            .send(Handover {
                job,
                room: self.room,
            })
            .map_err(|refused| refused.0.job)
    }
}

/// Frees the lease of a job stored leased whose worker stopped before it got it. Best
/// effort: if the store is already closing, the job is claimed when its lease ends instead.
pub async fn release_lease(state: &AppState, job: &OutboundJob) {
    let outcome = OutboundOutcome::Defer {
        not_before: Utc::now(),
        reason: "the gateway stopped before sending it".to_owned(),
    };
    if let Err(error) = state
        .store
        .finish_outbound(job.message_id, outcome, Utc::now())
        .await
    {
        tracing::info!(
            %error,
            message_id = %job.message_id,
            "a text accepted during shutdown stays leased until its lease ends"
        );
    }
}

impl Default for QueueInlet {
    fn default() -> Self {
        let (handed, taken) = mpsc::unbounded_channel();
        QueueInlet {
            wake: Arc::new(Notify::new()),
            room: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            behind: Arc::new(AtomicBool::new(true)),
            handed,
            taken: Arc::new(std::sync::Mutex::new(Some(taken))),
        }
    }
}

impl QueueInlet {
    pub fn new() -> Self {
        QueueInlet::default()
    }

    /// Asks the worker to claim what is due now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A place in the worker for a text about to be stored, if it has one free and no text
    /// waits in the store before it (none once it has stopped): store the job leased
    /// ([`crate::store::Enqueue::leased_until`]), then [`Reservation::hand_over`] it.
    /// Dropping the reservation frees the place.
    pub fn reserve(&self) -> Option<Reservation> {
        if self.behind.load(Ordering::Acquire) {
            return None;
        }
        let Ok(room) = Arc::clone(&self.room).try_acquire_owned() else {
            // This text goes to the store unleased; the ones after it must not overtake it.
            self.behind.store(true, Ordering::Release);
            return None;
        };
        Some(Reservation {
            room,
            handed: self.handed.clone(),
        })
    }

    async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Whether a text accepted now would be handed over: the worker has room and no text
    /// waits in the store before it.
    pub fn hands_over(&self) -> bool {
        !self.behind.load(Ordering::Acquire) && self.room.available_permits() > 0
    }

    /// A claim found no more due texts than it took: texts may be handed over again.
    fn caught_up(&self) {
        self.behind.store(false, Ordering::Release);
    }
}

/// The delay before try number `attempts + 1`: the first back-off doubling, capped.
pub fn backoff(queue: &QueueConfig, attempts: u32) -> Duration {
    let factor = 1u32.checked_shl(attempts.min(31)).unwrap_or(u32::MAX);
    Duration::from_secs(queue.first_backoff_secs)
        .saturating_mul(factor)
        .min(Duration::from_secs(queue.max_backoff_secs))
}

/// Runs until `shutdown` is cancelled, then drains in-flight sends (bounded).
pub async fn run_worker(state: AppState, shutdown: CancellationToken) {
    let taken = state
        .queue
        .taken
        .lock()
        .ok()
        .and_then(|mut taken| taken.take());
    let Some(mut handed) = taken else {
        tracing::error!("a second outbound worker was started on one queue; it does nothing");
        return;
    };
    let permits = Arc::clone(&state.queue.room);
    let mut in_flight = JoinSet::new();
    let start = |in_flight: &mut JoinSet<()>, handover: Handover| {
        let state = state.clone();
        in_flight.spawn(async move {
            process(&state, handover.job, OptOut::Checked).await;
            drop(handover.room);
        });
    };
    // Claims are for what was not handed over: retries come due, a stopped node's leases
    // end, a text accepted while the worker was full. So a claim is wanted at start, when
    // woken, and on every poll tick, and runs once there is room.
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut claim_wanted = true;
    while !shutdown.is_cancelled() {
        while in_flight.try_join_next().is_some() {}
        let free = permits.available_permits();
        let batch = free >= CLAIM_BATCH || in_flight.len() < CLAIM_BATCH;
        if claim_wanted && free > 0 && batch {
            claim_wanted = false;
            let now = Utc::now();
            let lease = chrono::Duration::from_std(state.config.queue.lease()).unwrap_or_default();
            let lease_until = now + lease;
            let limit = u32::try_from(free).unwrap_or(u32::MAX);
            match state.store.claim_outbound(limit, now, lease_until).await {
                Ok(jobs) => {
                    // A full batch: more may be due right now.
                    claim_wanted = jobs.len() >= free;
                    if !claim_wanted {
                        state.queue.caught_up();
                    }
                    for job in jobs {
                        // Sends accepted during the claim may have reserved some of the
                        // places it counted. A job without one waits for it in its own task,
                        // never in this loop: the place may be one that only a handed-over
                        // job, which this loop starts, would free.
                        let place = Arc::clone(&permits).try_acquire_owned().ok();
                        let (state, permits) = (state.clone(), Arc::clone(&permits));
                        in_flight.spawn(async move {
                            let place = match place {
                                Some(place) => place,
                                None => match permits.acquire_owned().await {
                                    Ok(place) => place,
                                    // Shutting down: the job waits for its lease to end.
                                    Err(_) => return,
                                },
                            };
                            process(&state, job, OptOut::Unchecked).await;
                            drop(place);
                        });
                    }
                }
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "cannot claim outbound jobs");
                }
            }
            if claim_wanted && permits.available_permits() > 0 {
                continue;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(handover) = handed.recv() => {
                start(&mut in_flight, handover);
                // Others handed over meanwhile start now, in one pass.
                while let Ok(handover) = handed.try_recv() {
                    start(&mut in_flight, handover);
                }
            }
            _ = state.queue.woken() => claim_wanted = true,
            _ = poll.tick() => claim_wanted = true,
            // A claim waiting for room: finished sends make it.
            Some(_) = in_flight.join_next(), if claim_wanted => {}
        }
    }
    // No new places; jobs handed over already are stored and leased to us: send them too.
    permits.close();
    while let Ok(handover) = handed.try_recv() {
        start(&mut in_flight, handover);
    }
    let drain = async { while in_flight.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        tracing::warn!(
            left = in_flight.len(),
            "outbound sends still running at shutdown; their jobs stay queued until their lease ends"
        );
        in_flight.abort_all();
    }
}

/// Whether a job's opt-out still needs a look before it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OptOut {
    /// Checked inside the write that stored it, a moment ago.
    Checked,
    /// It waited in the store: STOP may have come since.
    Unchecked,
}

/// Sends one job and records how it ended.
async fn process(state: &AppState, job: OutboundJob, opt_out: OptOut) {
    let outcome = match send_through_carriers(state, &job, opt_out).await {
        Attempt::Sent(outcome) => outcome,
        Attempt::Permanent(reason) => OutboundOutcome::Failed { reason },
        Attempt::Retryable(reason) => {
            retry_or_give_up(&state.config.queue, &job, reason, Utc::now())
        }
        Attempt::Elsewhere(carrier) => OutboundOutcome::Defer {
            not_before: Utc::now()
                + chrono::Duration::from_std(ELSEWHERE_DELAY).unwrap_or_default(),
            reason: format!("left for the gateway node bound to {carrier}"),
        },
    };
    let finished = match &outcome {
        OutboundOutcome::Sent { .. } => "sent",
        OutboundOutcome::Retry { .. } => "retry",
        OutboundOutcome::Defer { .. } => "deferred",
        OutboundOutcome::Failed { .. } => "failed",
    };
    metrics::counter!("airtext_outbound_finished_total", "outcome" => finished).increment(1);
    if let Err(error) = state
        .store
        .finish_outbound(job.message_id, outcome, Utc::now())
        .await
    {
        // The lease runs out and the job is claimed again: delayed, not lost.
        tracing::warn!(
            error = format!("{error:#}"),
            message_id = %job.message_id,
            "outbound outcome not recorded"
        );
    }
}

enum Attempt {
    /// Taken (the outcome carries its cost).
    Sent(OutboundOutcome),
    /// It can never go as it is.
    Permanent(String),
    /// Nobody took it now; the last reason.
    Retryable(String),
    /// The best carrier is bound on another node (its bind limit is taken there): leave the
    /// text to that node rather than pay a dearer carrier.
    Elsewhere(String),
}

async fn send_through_carriers(state: &AppState, job: &OutboundJob, opt_out: OptOut) -> Attempt {
    let stopped = match opt_out {
        OptOut::Checked => Ok(false),
        OptOut::Unchecked => state.store.opted_out(&job.from, &job.to).await,
    };
    match stopped {
        Ok(false) => {}
        Ok(true) => {
            return Attempt::Permanent(format!(
                "{} replied STOP to {}: texts to them are blocked until they reply START",
                job.to, job.from
            ))
        }
        Err(error) => {
            return Attempt::Retryable(format!("cannot check opt-outs: {error}"));
        }
    }
    let (_, segments) = crate::routing::encoding_of(&job.body);
    state.lcr.learn_sender(&state.store, &job.from).await;
    let candidates = match state.lcr.candidates(&job.from, &job.to, segments) {
        Ok(candidates) => candidates,
        Err(no_route) if no_route.waits() => return Attempt::Retryable(no_route.0),
        Err(no_route) => return Attempt::Permanent(no_route.0),
    };
    let timeout = state.config.queue.send_timeout();
    let mut last: Option<String> = None;
    let mut resting = Vec::new();
    for candidate in candidates {
        let name = candidate.carrier.name();
        if candidate.carrier.bound_elsewhere() {
            return Attempt::Elsewhere(name.to_owned());
        }
        if !state.lcr.admit(candidate.index) {
            resting.push(name.to_owned());
            continue;
        }
        let sms = OutboundSms {
            account: Some(job.account_id),
            from: job.from.clone(),
            to: job.to.clone(),
            body: job.body.clone(),
        };
        let started = std::time::Instant::now();
        let sent = tokio::time::timeout(timeout, candidate.carrier.send(sms)).await;
        count_send(name, &sent, started.elapsed());
        match sent {
            Ok(Ok(accepted)) => {
                state.lcr.succeeded(candidate.index);
                return Attempt::Sent(OutboundOutcome::Sent {
                    carrier: name.to_owned(),
                    carrier_message_id: accepted.carrier_message_id,
                    cost: Some(candidate.cost),
                });
            }
            Ok(Err(CarrierError::Permanent(reason))) => {
                state.lcr.succeeded(candidate.index);
                return Attempt::Permanent(format!("{name}: {reason}"));
            }
            Ok(Err(CarrierError::Retryable(reason))) => {
                state.lcr.failed(candidate.index);
                tracing::info!(
                    carrier = name,
                    message_id = %job.message_id,
                    reason,
                    "carrier failed; trying the next"
                );
                last = Some(format!("{name}: {reason}"));
            }
            Err(_) => {
                state.lcr.failed(candidate.index);
                last = Some(format!("{name}: no answer within {timeout:?}"));
            }
        }
    }
    let reason = match (last, resting.is_empty()) {
        (Some(last), true) => last,
        (Some(last), false) => format!(
            "{last}; paused after repeated failures: {}",
            resting.join(", ")
        ),
        (None, _) => format!(
            "every carrier that can take it is paused after repeated failures: {}",
            resting.join(", ")
        ),
    };
    Attempt::Retryable(reason)
}

/// `airtext_carrier_sends_total` and `airtext_carrier_send_duration_seconds` (see
/// [`crate::http::metrics`]).
fn count_send<T>(
    carrier: &str,
    sent: &Result<Result<T, CarrierError>, tokio::time::error::Elapsed>,
    took: Duration,
) {
    let outcome = match sent {
        Ok(Ok(_)) => "accepted",
        Ok(Err(CarrierError::Permanent(_))) => "refused",
        Ok(Err(CarrierError::Retryable(_))) => "retryable",
        Err(_) => "timeout",
    };
    metrics::counter!(
        "airtext_carrier_sends_total",
        "carrier" => carrier.to_owned(),
        "outcome" => outcome
    )
    .increment(1);
    metrics::histogram!("airtext_carrier_send_duration_seconds", "carrier" => carrier.to_owned())
        .record(took.as_secs_f64());
}

fn retry_or_give_up(
    queue: &QueueConfig,
    job: &OutboundJob,
    reason: String,
    now: DateTime<Utc>,
) -> OutboundOutcome {
    let validity = chrono::Duration::from_std(queue.validity()).unwrap_or_default();
    let give_up_at = job.created_at + validity;
    if now >= give_up_at {
        return OutboundOutcome::Failed {
            reason: format!(
                "no carrier took it within {} (last: {reason})",
                human(queue.validity())
            ),
        };
    }
    let delay = chrono::Duration::from_std(backoff(queue, job.attempts)).unwrap_or_default();
    OutboundOutcome::Retry {
        not_before: (now + delay).min(give_up_at),
        reason,
    }
}

/// `4 hours`, `90 seconds`: for failure reasons people read.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s % 3600 == 0 && s >= 3600 => {
            format!("{} hour{}", s / 3600, if s == 3600 { "" } else { "s" })
        }
        s if s % 60 == 0 && s >= 60 => {
            format!("{} minute{}", s / 60, if s == 60 { "" } else { "s" })
        }
        s => format!("{s} second{}", if s == 1 { "" } else { "s" }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use airtext_api::{AccountId, MessageId};

    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_five_minutes() {
        let q = QueueConfig::default();
        assert_eq!(backoff(&q, 0), Duration::from_secs(1));
        assert_eq!(backoff(&q, 1), Duration::from_secs(2));
        assert_eq!(backoff(&q, 5), Duration::from_secs(32));
        assert_eq!(backoff(&q, 8), Duration::from_secs(256));
        assert_eq!(backoff(&q, 9), Duration::from_secs(300));
        assert_eq!(backoff(&q, u32::MAX), Duration::from_secs(300));
    }

    fn job(age: chrono::Duration, attempts: u32) -> (OutboundJob, DateTime<Utc>) {
        let now = Utc::now();
        (
            OutboundJob {
                message_id: MessageId::new(),
                account_id: AccountId::new(),
                from: "+14155550100".into(),
                to: "+12025550143".into(),
                body: "hi".into(),
                attempts,
                created_at: now - age,
            },
            now,
        )
    }

    #[test]
    fn a_hand_over_reaches_the_worker_or_comes_back() {
        let inlet = QueueInlet::new();
        inlet.caught_up();
        let mut worker = inlet.taken.lock().unwrap().take().unwrap();
        let (sent, _) = job(chrono::Duration::zero(), 0);
        let reservation = inlet.reserve().unwrap();
        assert_eq!(inlet.room.available_permits(), MAX_IN_FLIGHT - 1);
        reservation.hand_over(sent.clone()).unwrap();
        let handover = worker.try_recv().unwrap();
        assert_eq!(handover.job.message_id, sent.message_id);
        // The place is the worker's until the send ends.
        assert_eq!(inlet.room.available_permits(), MAX_IN_FLIGHT - 1);
        drop(handover);
        assert_eq!(inlet.room.available_permits(), MAX_IN_FLIGHT);

        // A worker that has stopped: the job comes back (its lease is then released).
        let reservation = inlet.reserve().unwrap();
        drop(worker);
        let back = reservation.hand_over(sent.clone()).unwrap_err();
        assert_eq!(back.message_id, sent.message_id);
        assert_eq!(inlet.room.available_permits(), MAX_IN_FLIGHT);
        // Once the worker closes its room, nothing more is reserved: texts are claimed.
        inlet.room.close();
        assert!(inlet.reserve().is_none());
    }

    #[test]
    fn a_full_worker_reserves_nothing_until_a_claim_has_caught_up() {
        let inlet = QueueInlet::new();
        // At start texts may wait in the store from before.
        assert!(inlet.reserve().is_none());
        inlet.caught_up();
        let places: Vec<_> = (0..MAX_IN_FLIGHT)
            .map(|_| inlet.reserve().unwrap())
            .collect();
        assert!(inlet.reserve().is_none());
        // Room again, but the text refused above waits in the store: nothing overtakes it.
        drop(places);
        assert!(inlet.reserve().is_none());
        inlet.caught_up();
        assert!(inlet.reserve().is_some());
    }

    #[test]
    fn retries_until_four_hours_then_fails() {
        let (young, now) = job(chrono::Duration::minutes(1), 2);
        let q = QueueConfig::default();
        match retry_or_give_up(&q, &young, "busy".into(), now) {
            OutboundOutcome::Retry { not_before, .. } => {
                assert_eq!(not_before - now, chrono::Duration::seconds(4));
            }
            other => panic!("expected a retry, got {other:?}"),
        }
        let (old, now) = job(chrono::Duration::hours(4), 20);
        match retry_or_give_up(&q, &old, "busy".into(), now) {
            OutboundOutcome::Failed { reason } => {
                assert!(reason.contains("busy"), "{reason}");
                assert!(reason.contains("within 4 hours"), "{reason}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }
}
