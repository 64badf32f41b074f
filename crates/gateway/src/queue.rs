//! The outbound queue worker: hands out-of-network messages to carriers.
//!
//! The queue itself is durable (rows in the store, written in the same transaction as the
//! message); this worker only leases due rows, sends them, and records the outcome:
//! - leases last [`LEASE`]; a job leased by a worker that crashed is claimed again once its
//!   lease ends, so nothing accepted is ever lost (a crash between a carrier's acceptance and
//!   the record of it can send a text twice: at-least-once, as every SMS gateway);
//! - carriers are tried in configuration order; a retryable failure tries the next one, and
//!   when all fail the job is rescheduled with exponential back-off (1 s doubling, at most
//!   5 min) until the message is [`GIVE_UP_AFTER`] old, then it fails with the last reason;
//! - a permanent failure fails the message at once with the carrier's reason;
//! - at most [`MAX_IN_FLIGHT`] sends run at once;
//! - on shutdown it stops claiming and lets in-flight sends finish for at most
//!   [`DRAIN_TIMEOUT`]; what is still leased then simply waits for its lease to end.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::carriers::{CarrierError, OutboundSms};
use crate::http::AppState;
use crate::routing::SEND_TIMEOUT;
use crate::store::{OutboundJob, OutboundOutcome};

/// How long a claimed job is this worker's before another may take it. Longer than
/// [`SEND_TIMEOUT`], so a slow carrier never leads to two workers sending one job.
pub const LEASE: Duration = Duration::from_secs(60);
/// How often the worker looks for due jobs (retries come due without anyone waking it).
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Sends running at once.
pub const MAX_IN_FLIGHT: usize = 64;
/// A message no carrier took within this time fails.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(4 * 60 * 60);
/// How long shutdown waits for in-flight sends.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(5 * 60);

/// Wakes the worker when a message is queued. A wake with no worker waiting is remembered,
/// so one sent between two claims is never missed.
#[derive(Debug, Clone, Default)]
pub struct QueueWaker(Arc<Notify>);

impl QueueWaker {
    pub fn new() -> Self {
        QueueWaker::default()
    }

    pub fn wake(&self) {
        self.0.notify_one();
    }

    async fn woken(&self) {
        self.0.notified().await;
    }
}

/// The delay before try number `attempts + 1`: 1 s doubling, capped at 5 min.
pub fn backoff(attempts: u32) -> Duration {
    let factor = 1u32.checked_shl(attempts.min(31)).unwrap_or(u32::MAX);
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// Runs until `shutdown` is cancelled, then drains in-flight sends (bounded).
pub async fn run_worker(state: AppState, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut in_flight = JoinSet::new();
    while !shutdown.is_cancelled() {
        while in_flight.try_join_next().is_some() {}
        let free = permits.available_permits();
        let mut claimed_all = false;
        if free > 0 {
            let now = Utc::now();
            let lease_until = now + chrono::Duration::from_std(LEASE).unwrap_or_default();
            let limit = u32::try_from(free).unwrap_or(u32::MAX);
            match state.store.claim_outbound(limit, now, lease_until).await {
                Ok(jobs) => {
                    claimed_all = jobs.len() >= free;
                    for job in jobs {
                        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                            break;
                        };
                        let state = state.clone();
                        in_flight.spawn(async move {
                            process(&state, job).await;
                            drop(permit);
                        });
                    }
                }
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "cannot claim outbound jobs");
                }
            }
        }
        if claimed_all && permits.available_permits() > 0 {
            // A full batch: more may be due right now.
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = state.queue.woken() => {}
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            // Saturated: a finished send frees room for the next claim.
            Some(_) = in_flight.join_next(), if permits.available_permits() == 0 => {}
        }
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

/// Sends one job and records how it ended.
async fn process(state: &AppState, job: OutboundJob) {
    let outcome = send_through_carriers(state, &job).await;
    let outcome = match outcome {
        Attempt::Sent(outcome) => outcome,
        Attempt::Permanent(reason) => OutboundOutcome::Failed { reason },
        Attempt::AllRetryable(reason) => retry_or_give_up(&job, reason, Utc::now()),
    };
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
    Sent(OutboundOutcome),
    Permanent(String),
    AllRetryable(String),
}

async fn send_through_carriers(state: &AppState, job: &OutboundJob) -> Attempt {
    let mut last = "no carrier is configured".to_owned();
    for carrier in state.carriers.iter() {
        let sms = OutboundSms {
            from: job.from.clone(),
            to: job.to.clone(),
            body: job.body.clone(),
        };
        match tokio::time::timeout(SEND_TIMEOUT, carrier.send(sms)).await {
            Ok(Ok(accepted)) => {
                return Attempt::Sent(OutboundOutcome::Sent {
                    carrier: carrier.name().to_owned(),
                    carrier_message_id: accepted.carrier_message_id,
                })
            }
            Ok(Err(CarrierError::Permanent(reason))) => return Attempt::Permanent(reason),
            Ok(Err(CarrierError::Retryable(reason))) => {
                tracing::info!(
                    carrier = carrier.name(),
                    message_id = %job.message_id,
                    reason,
                    "carrier failed; trying the next"
                );
                last = format!("{}: {reason}", carrier.name());
            }
            Err(_) => last = format!("{}: no answer within {SEND_TIMEOUT:?}", carrier.name()),
        }
    }
    Attempt::AllRetryable(last)
}

fn retry_or_give_up(job: &OutboundJob, reason: String, now: DateTime<Utc>) -> OutboundOutcome {
    let give_up_at = job.created_at + chrono::Duration::from_std(GIVE_UP_AFTER).unwrap_or_default();
    if now >= give_up_at {
        return OutboundOutcome::Failed {
            reason: format!("no carrier could take it within 4 hours (last: {reason})"),
        };
    }
    let delay = chrono::Duration::from_std(backoff(job.attempts)).unwrap_or_default();
    OutboundOutcome::Retry {
        not_before: (now + delay).min(give_up_at),
        reason,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use airtext_api::{AccountId, MessageId};

    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_five_minutes() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(8), Duration::from_secs(256));
        assert_eq!(backoff(9), Duration::from_secs(300));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
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
    fn retries_until_four_hours_then_fails() {
        let (young, now) = job(chrono::Duration::minutes(1), 2);
        match retry_or_give_up(&young, "busy".into(), now) {
            OutboundOutcome::Retry { not_before, .. } => {
                assert_eq!(not_before - now, chrono::Duration::seconds(4));
            }
            other => panic!("expected a retry, got {other:?}"),
        }
        let (old, now) = job(chrono::Duration::hours(4), 20);
        match retry_or_give_up(&old, "busy".into(), now) {
            OutboundOutcome::Failed { reason } => assert!(reason.contains("busy"), "{reason}"),
            other => panic!("expected a failure, got {other:?}"),
        }
    }
}
