//! Live fan-out of log hints to each account's WebSocket connections.
//!
//! The store announces every commit that appended events ([`LogAdvanced`]) on a broadcast
//! channel; [`PushHub::run`] turns that into one `tokio::sync::watch` per account that has a
//! live connection (made by the first subscriber, removed with the last), so a connection
//! wakes only for its own account, and a burst of events coalesces into the newest seq.
//!
//! Invariants:
//! - a hint never goes backwards: the watch holds the highest seq seen;
//! - no hint is silently lost: when the broadcast lags (this hub fell behind and missed
//!   announcements), every watch's `resync` counter moves, and each connection re-reads its
//!   account's `last_seq` from the store before its next hint;
//! - a connection subscribes *before* it reads `last_seq` for its first hint, so a commit
//!   between the two is announced, never missed;
//! - signing devices out ([`PushHub::signed_out`]) wakes the account's connections on this
//!   node, which re-check their tokens and close if theirs died.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use airtext_api::AccountId;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::store::LogAdvanced;

/// What a connection watches for its account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hint {
    /// The highest seq announced for the account.
    pub seq: i64,
    /// Moves when announcements may have been missed: re-read `last_seq` from the store.
    pub resync: u64,
    /// Moves when devices of the account were signed out (a password change or reset, a
    /// deleted account): re-check the token now rather than at the next keep-alive.
    pub sign_out: u64,
}

#[derive(Debug)]
struct Entry {
    tx: watch::Sender<Hint>,
    subscribers: usize,
}

/// How often streams ping their device and re-check its token, unless set otherwise.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct PushHub {
    accounts: Arc<Mutex<HashMap<AccountId, Entry>>>,
    /// The streams' keep-alive interval, in milliseconds (see [`PushHub::keepalive`]).
    keepalive_ms: Arc<AtomicU64>,
}

impl Default for PushHub {
    fn default() -> Self {
        PushHub {
            accounts: Arc::default(),
            keepalive_ms: Arc::new(AtomicU64::new(
                u64::try_from(DEFAULT_KEEPALIVE.as_millis()).unwrap_or(30_000),
            )),
        }
    }
}

/// One connection's view of its account's hints; unsubscribes when dropped.
#[derive(Debug)]
pub struct Subscription {
    hub: PushHub,
    account: AccountId,
    rx: watch::Receiver<Hint>,
}

impl Subscription {
    /// Waits until the account's hint changes; `None` if the hub has gone.
    pub async fn changed(&mut self) -> Option<Hint> {
        self.rx.changed().await.ok()?;
        Some(*self.rx.borrow_and_update())
    }

    /// The latest hint, marking it seen.
    pub fn current(&mut self) -> Hint {
        *self.rx.borrow_and_update()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut accounts = self.hub.lock();
        if let Some(entry) = accounts.get_mut(&self.account) {
            entry.subscribers = entry.subscribers.saturating_sub(1);
            if entry.subscribers == 0 {
                accounts.remove(&self.account);
            }
        }
    }
}

impl PushHub {
    pub fn new() -> Self {
        PushHub::default()
    }

    /// How often a stream pings its device and re-checks the device's token (so a revoked
    /// device's stream closes within one interval).
    pub fn keepalive(&self) -> Duration {
        Duration::from_millis(self.keepalive_ms.load(Ordering::Relaxed).max(10))
    }

    /// Changes the keep-alive interval of streams opened from now on (tests shorten it).
    pub fn set_keepalive(&self, interval: Duration) {
        let ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        self.keepalive_ms.store(ms, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<AccountId, Entry>> {
        // The map stays consistent under every operation here (none can panic half-way), so a
        // poisoned lock is safe to keep using.
        self.accounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts watching `account`'s log.
    pub fn subscribe(&self, account: AccountId) -> Subscription {
        let mut accounts = self.lock();
        let entry = accounts.entry(account).or_insert_with(|| Entry {
            tx: watch::Sender::new(Hint::default()),
            subscribers: 0,
        });
        entry.subscribers = entry.subscribers.saturating_add(1);
        let rx = entry.tx.subscribe();
        Subscription {
            hub: self.clone(),
            account,
            rx,
        }
    }

    /// Accounts with at least one live connection.
    pub fn subscribed_accounts(&self) -> usize {
        self.lock().len()
    }

    /// Announces that `account`'s log reached `seq` (ignored if not newer).
    pub fn advance(&self, account: AccountId, seq: i64) {
        if let Some(entry) = self.lock().get(&account) {
            entry.tx.send_if_modified(|hint| {
                let newer = seq > hint.seq;
                if newer {
                    hint.seq = seq;
                }
                newer
            });
        }
    }

    /// Tells `account`'s connections on this node to re-check their tokens at once (devices
    /// were signed out). Connections on other nodes find out at their next keep-alive.
    pub fn signed_out(&self, account: AccountId) {
        if let Some(entry) = self.lock().get(&account) {
            entry
                .tx
                .send_modify(|hint| hint.sign_out = hint.sign_out.wrapping_add(1));
        }
    }

    /// Tells every connection to re-read its account's `last_seq`.
    pub fn resync_all(&self) {
        for entry in self.lock().values() {
            entry
                .tx
                .send_modify(|hint| hint.resync = hint.resync.wrapping_add(1));
        }
    }

    /// Feeds the watches from the store's announcements until shutdown.
    pub async fn run(self, mut log: broadcast::Receiver<LogAdvanced>, shutdown: CancellationToken) {
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                received = log.recv() => received,
            };
            match received {
                Ok(advanced) => self.advance(advanced.account_id, advanced.seq),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "push hub fell behind the log; resyncing every stream"
                    );
                    self.resync_all();
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

impl PushHub {
    /// Resyncs every stream each time the store says announcements may have been lost
    /// ([`crate::store::Store::resyncs`]), until shutdown.
    pub async fn follow_resyncs(
        self,
        mut resyncs: watch::Receiver<u64>,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = resyncs.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    tracing::info!("the store may have missed announcements; resyncing every stream");
                    self.resync_all();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn hints_coalesce_and_never_go_backwards() {
        let hub = PushHub::new();
        let account = AccountId::new();
        let mut sub = hub.subscribe(account);
        hub.advance(account, 3);
        hub.advance(account, 7);
        hub.advance(account, 5);
        assert_eq!(sub.changed().await.unwrap().seq, 7);
        hub.advance(AccountId::new(), 100);
        hub.advance(account, 7);
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(20), sub.changed()).await;
        assert!(
            waited.is_err(),
            "no new hint for an old seq or another account"
        );
    }

    #[tokio::test]
    async fn entries_go_with_their_last_subscriber() {
        let hub = PushHub::new();
        let account = AccountId::new();
        let a = hub.subscribe(account);
        let b = hub.subscribe(account);
        assert_eq!(hub.subscribed_accounts(), 1);
        drop(a);
        assert_eq!(hub.subscribed_accounts(), 1);
        drop(b);
        assert_eq!(hub.subscribed_accounts(), 0);
    }

    #[tokio::test]
    async fn a_lagging_hub_asks_every_stream_to_resync() {
        let hub = PushHub::new();
        let account = AccountId::new();
        let mut sub = hub.subscribe(account);
        let (tx, rx) = broadcast::channel(2);
        for seq in 1..=10 {
            tx.send(LogAdvanced {
                account_id: account,
                seq,
            })
            .unwrap();
        }
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(hub.clone().run(rx, shutdown.clone()));
        let mut hint = sub.changed().await.unwrap();
        while hint.seq < 10 {
            hint = sub.changed().await.unwrap();
        }
        assert!(hint.resync > 0, "the lag was announced");
        shutdown.cancel();
        task.await.unwrap();
    }
}
