//! Log hints between nodes: NOTIFY in each committing transaction, LISTEN on a dedicated
//! connection.
//!
//! Each transaction that appended events sends `pg_notify('airtext_log', '<account>:<seq>')`
//! (delivered at commit, to every node), and after commit publishes [`LogAdvanced`] on this
//! node's broadcast ([`Publisher`]). A listener task ([`run_listener`]) holds a dedicated
//! connection that `LISTEN`s on [`NOTIFY_CHANNEL`] and republishes every node's
//! notifications on the same broadcast (this node's own commits are heard again, and are
//! dropped unless newer than what this node already published for the account). A channel is
//! database-wide, so a store in a schema other than `public` uses its own channel,
//! `airtext_log.<schema>` ([`notify_channel`]). When that connection is lost, the task
//! reconnects with back-off and, once listening again, moves the `Store::resyncs` counter:
//! notifications sent while it was away are gone, so every stream re-reads its account's
//! `last_seq`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airtext_api::AccountId;
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::super::LogAdvanced;

/// The channel other nodes LISTEN on for log hints (in the `public` schema; see
/// [`notify_channel`]).
pub const NOTIFY_CHANNEL: &str = "airtext_log";

/// How many accounts' last published seqs a node remembers (to drop its own notifications
/// heard back); past this the memory is cleared, which only lets a harmless duplicate through.
const PUBLISHED_MEMORY: usize = 100_000;

/// The notification channel of a store whose tables live in `schema`.
pub fn notify_channel(schema: &str) -> String {
    if schema == "public" {
        NOTIFY_CHANNEL.to_owned()
    } else {
        format!("{NOTIFY_CHANNEL}.{schema}")
    }
}

/// Publishes [`LogAdvanced`] on this node's broadcast, dropping what is not newer than what
/// was already published for the account (a node hears its own NOTIFYs back).
#[derive(Debug, Clone)]
pub(super) struct Publisher {
    pub(super) log: broadcast::Sender<LogAdvanced>,
    pub(super) published: Arc<Mutex<HashMap<AccountId, i64>>>,
}

impl Publisher {
    /// Whichever comes first, this node's own publish after commit or its NOTIFY heard back
    /// (both come after the commit), announces; the other is dropped.
    pub(super) fn publish(&self, advanced: LogAdvanced) {
        let newer = {
            let mut published = self
                .published
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if published.len() >= PUBLISHED_MEMORY {
                published.clear();
            }
            let last = published.entry(advanced.account_id).or_insert(0);
            let newer = advanced.seq > *last;
            *last = (*last).max(advanced.seq);
            newer
        };
        if newer {
            let _ = self.log.send(advanced);
        }
    }
}

/// The listener connection's `application_name` (operators and tests find it by this).
pub const LISTENER_APPLICATION_NAME: &str = "airtext-listener";

/// Reconnection back-off of the listener: first and longest wait.
const LISTENER_BACKOFF_MIN: Duration = Duration::from_millis(100);

const LISTENER_BACKOFF_MAX: Duration = Duration::from_secs(5);

pub(super) async fn listen(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // A lost connection is ours to re-establish (with back-off, then a resync).
    listener.eager_reconnect(false);
    listener.listen(channel).await?;
    Ok(listener)
}

/// Parses a `'<account uuid>:<seq>'` notification payload.
fn parse_notification(payload: &str) -> Option<LogAdvanced> {
    let (account, seq) = payload.split_once(':')?;
    let account_id = AccountId(Uuid::parse_str(account).ok()?);
    let seq = seq.parse::<i64>().ok()?;
    Some(LogAdvanced { account_id, seq })
}

/// Republishes notifications until `stop`; re-listens after a lost connection and then asks
/// every stream to resync.
pub(super) async fn run_listener(
    first: PgListener,
    pool: PgPool,
    channel: String,
    publisher: Publisher,
    resyncs: watch::Sender<u64>,
    stop: CancellationToken,
) {
    let mut listener = Some(first);
    let mut backoff = LISTENER_BACKOFF_MIN;
    loop {
        let mut current = match listener.take() {
            Some(current) => current,
            None => {
                let connected = tokio::select! {
                    _ = stop.cancelled() => return,
                    connected = listen(&pool, &channel) => connected,
                };
                match connected {
                    Ok(current) => {
                        tracing::info!("log listener reconnected; every stream resyncs");
                        backoff = LISTENER_BACKOFF_MIN;
                        resyncs.send_modify(|n| *n = n.wrapping_add(1));
                        current
                    }
                    Err(error) => {
                        tracing::warn!(%error, ?backoff, "log listener cannot reconnect yet");
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = backoff.saturating_mul(2).min(LISTENER_BACKOFF_MAX);
                        continue;
                    }
                }
            }
        };
        loop {
            let received = tokio::select! {
                _ = stop.cancelled() => return,
                received = current.try_recv() => received,
            };
            match received {
                Ok(Some(notification)) => match parse_notification(notification.payload()) {
                    Some(advanced) => publisher.publish(advanced),
                    None => tracing::warn!(
                        payload = notification.payload(),
                        "ignoring a malformed log notification"
                    ),
                },
                Ok(None) => {
                    tracing::warn!("log listener lost its connection; reconnecting");
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "log listener failed; reconnecting");
                    break;
                }
            }
        }
        drop(current);
        // A short pause even on the first retry, so a flapping server is not hammered.
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(LISTENER_BACKOFF_MIN) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn notification_payloads_parse_or_are_skipped() {
        let account = AccountId::new();
        assert_eq!(
            parse_notification(&format!("{account}:42")),
            Some(LogAdvanced {
                account_id: account,
                seq: 42
            })
        );
        for bad in [
            "",
            ":",
            "x:1",
            &format!("{account}"),
            &format!("{account}:"),
            &format!("{account}:1x"),
            "1:2:3",
        ] {
            assert_eq!(parse_notification(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn channels_are_per_schema() {
        assert_eq!(notify_channel("public"), "airtext_log");
        assert_eq!(notify_channel("t_1"), "airtext_log.t_1");
    }

    #[test]
    fn a_node_drops_its_own_notifications_heard_back() {
        let (log, mut rx) = broadcast::channel(8);
        let publisher = Publisher {
            log,
            published: Arc::default(),
        };
        let account = AccountId::new();
        let at = |seq| LogAdvanced {
            account_id: account,
            seq,
        };
        publisher.publish(at(2));
        publisher.publish(at(2));
        publisher.publish(at(1));
        publisher.publish(at(3));
        assert_eq!(rx.try_recv().unwrap(), at(2));
        assert_eq!(rx.try_recv().unwrap(), at(3));
        assert!(rx.try_recv().is_err());
    }
}
