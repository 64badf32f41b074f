//! Durability off the writer's path: the writer commits without waiting for the disk, and a
//! second thread, the syncer, makes the WAL durable before anyone hears of the commit.
//!
//! The writer connection runs with `synchronous=NORMAL`, so its COMMIT writes the group's WAL
//! frames and returns without an fsync. It then hands the group's answers to the syncer and
//! starts on the next group while the syncer `fdatasync`s the `-wal` file (one call covers
//! every group committed so far), then answers those groups, in commit order, and publishes
//! their [`LogAdvanced`] hints. The disk's flush time (0.1–3 ms on the disks measured) and
//! the writer's work now overlap instead of adding up, and a slow flush gathers more groups
//! into the next one.
//!
//! Invariants:
//! - **No reply and no hint before its group is on disk**: only the syncer answers a
//!   committed group, and only after an `fdatasync` that began after that group's COMMIT
//!   returned (its frames were in the page cache by then; the call flushes them).
//! - **Groups become durable in commit order**: one file, flushed whole; so a group that is
//!   durable implies every earlier group is too. A read that only decides what a later write
//!   does may therefore see a group still in flight: the write's own durability covers it.
//! - **No reply built from a read carries data that is not durable**: a commit's rows are
//!   visible to readers as soon as COMMIT returns, so a read that answers a client notes the
//!   newest group that may be visible (the writer announces a group *before* its COMMIT) and
//!   waits until that group is durable ([`Durability::settled`]). That is at most one flush.
//! - **The replication log never serves a seq that is not durable**, without waiting: the
//!   writer also announces, before COMMIT, the first seq each log takes in the group, and a
//!   read of a log cuts its answer there ([`Durability::first_unflushed_seq`]) until the
//!   syncer has flushed the group. A device that synced an event a power loss then took back
//!   would skip the different event that reuses its seq; this rules that out, and a device
//!   catching up on a busy log is not held back by the next group's flush (the hint for the
//!   rest follows the flush).
//! - **Fail-stop**: if an `fdatasync` fails, the kernel may already have dropped the dirty
//!   pages, so nothing after it can be trusted. Every group in flight is answered with an
//!   error, the store refuses all further writes and waiting reads, and health checks fail so
//!   the operator restarts it; SQLite's recovery then keeps exactly what reached the disk.
//!   (This is PostgreSQL's answer to the same problem.)
//!
//! A crash of the process alone loses nothing that was committed: the frames are in the
//! kernel's page cache and reach the disk anyway. Only a power loss or kernel crash can take
//! back groups that were never answered.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use airtext_api::AccountId;
use tokio::sync::{broadcast, oneshot, watch};

use super::super::{LogAdvanced, StoreError, StoreResult};

/// A write's answer channel.
pub(super) type Reply<T> = oneshot::Sender<StoreResult<T>>;

/// How far the writer and the disk have got, shared by the writer, the syncer and readers.
#[derive(Debug)]
pub(super) struct Durability {
    /// The newest group the writer has begun to commit: its rows may already be visible.
    visible: AtomicU64,
    /// The newest group known to be on disk, or why the disk can no longer be trusted.
    durable: watch::Sender<Flushed>,
    /// Logs that groups not yet on disk advanced: the first seq those groups took, and the
    /// newest such group.
    unflushed_logs: Mutex<HashMap<AccountId, UnflushedLog>>,
}

#[derive(Debug, Clone, Copy)]
struct UnflushedLog {
    first_seq: i64,
    newest_group: u64,
}

/// What the syncer last established.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Flushed {
    Through(u64),
    Failed(String),
}

impl Durability {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Durability {
            visible: AtomicU64::new(0),
            durable: watch::Sender::new(Flushed::Through(0)),
            unflushed_logs: Mutex::new(HashMap::new()),
        })
    }

    /// Announces the next group, before its COMMIT can make anything visible, with the first
    /// seq it gives each log it advances; returns its number. Only the writer calls this.
    pub(super) fn begin_group(&self, logs: impl IntoIterator<Item = (AccountId, i64)>) -> u64 {
        // SeqCst: a reader that sees this group's rows must also see its number.
        let group = self.visible.fetch_add(1, Ordering::SeqCst) + 1;
        let mut unflushed = self
            .unflushed_logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (account, first_seq) in logs {
            unflushed
                .entry(account)
                .and_modify(|log| log.newest_group = group)
                .or_insert(UnflushedLog {
                    first_seq,
                    newest_group: group,
                });
        }
        group
    }

    /// The first seq of `account`'s log that may not be on disk yet, if any. Ask after the
    /// read whose rows it cuts: a log announced since cannot be in those rows.
    pub(super) fn first_unflushed_seq(&self, account: AccountId) -> Option<i64> {
        self.unflushed_logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&account)
            .map(|log| log.first_seq)
    }

    /// Why the store refuses writes, if the disk failed it.
    pub(super) fn failure(&self) -> Option<String> {
        match &*self.durable.borrow() {
            Flushed::Through(_) => None,
            Flushed::Failed(reason) => Some(reason.clone()),
        }
    }

    /// Waits until everything a read that has just finished could have seen is durable.
    /// Call it after the read: the group it waits for is the newest that had begun by then.
    pub(super) async fn settled(&self) -> StoreResult<()> {
        let target = self.visible.load(Ordering::SeqCst);
        let mut durable = self.durable.subscribe();
        let flushed = durable
            .wait_for(|flushed| match flushed {
                Flushed::Through(group) => *group >= target,
                Flushed::Failed(_) => true,
            })
            .await
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        match &*flushed {
            Flushed::Through(_) => Ok(()),
            Flushed::Failed(reason) => Err(StoreError::Unavailable(reason.clone())),
        }
    }

    fn flushed_through(&self, group: u64) {
        // Logs first: once a reader hears the group is durable, its seqs are served.
        self.unflushed_logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, log| log.newest_group > group);
        self.durable.send_if_modified(|flushed| match flushed {
            Flushed::Through(durable) if *durable < group => {
                *durable = group;
                true
            }
            _ => false,
        });
    }

    fn fail(&self, reason: String) {
        self.durable.send_replace(Flushed::Failed(reason));
    }
}

/// A committed group waiting for the disk: the answers it owes and the logs it advanced.
pub(super) struct Committed<T> {
    pub(super) group: u64,
    pub(super) answers: Vec<(Reply<T>, StoreResult<T>)>,
    pub(super) advanced: Vec<LogAdvanced>,
}

/// The syncer thread and the way to it.
pub(super) struct Syncer<T> {
    groups: std_mpsc::Sender<Committed<T>>,
    thread: JoinHandle<()>,
}

impl<T: Send + 'static> Syncer<T> {
    /// Opens the database's WAL file (which the writer connection has already created) and
    /// starts the thread that flushes it.
    pub(super) fn spawn(
        database: &Path,
        durability: Arc<Durability>,
        log: broadcast::Sender<LogAdvanced>,
    ) -> StoreResult<Self> {
        let mut wal = database.as_os_str().to_owned();
        wal.push("-wal");
        // Read access is enough to flush: fdatasync acts on the file, not on this handle.
        let wal = File::open(&wal).map_err(|error| {
            StoreError::Unavailable(format!(
                "cannot open the write-ahead log {} to flush it: {error}",
                Path::new(&wal).display()
            ))
        })?;
        let (groups, pending) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sqlite-sync".into())
            .spawn(move || sync_groups(|| wal.sync_data(), pending, &durability, &log))
            .map_err(|e| StoreError::Unavailable(format!("cannot start a thread: {e}")))?;
        Ok(Syncer { groups, thread })
    }

    /// Hands over a committed group. If the syncer is gone (it never stops first), the
    /// answers are dropped and their callers hear that the writer stopped.
    pub(super) fn hand_over(&self, committed: Committed<T>) {
        let _ = self.groups.send(committed);
    }

    /// Waits until every group handed over has been flushed and answered.
    pub(super) fn finish(self) {
        drop(self.groups);
        if self.thread.join().is_err() {
            tracing::error!("the SQLite syncer stopped abnormally");
        }
    }
}

/// The syncer's loop: takes every group handed over so far, flushes once, answers them.
fn sync_groups<T>(
    mut flush: impl FnMut() -> std::io::Result<()>,
    pending: std_mpsc::Receiver<Committed<T>>,
    durability: &Durability,
    log: &broadcast::Sender<LogAdvanced>,
) {
    let mut failed: Option<String> = None;
    let mut batch = Vec::new();
    while let Ok(first) = pending.recv() {
        batch.push(first);
        batch.extend(pending.try_iter());
        if failed.is_none() {
            if let Err(error) = flush() {
                let reason = format!(
                    "the disk failed to store the write-ahead log ({error}); nothing more is \
                     accepted: restart the gateway"
                );
                tracing::error!(%error, "SQLite WAL flush failed: the store stops");
                durability.fail(reason.clone());
                failed = Some(reason);
            }
        }
        let newest = batch.last().map_or(0, |committed| committed.group);
        match &failed {
            None => {
                durability.flushed_through(newest);
                answer(batch.drain(..), log);
            }
            Some(reason) => {
                for committed in batch.drain(..) {
                    for (reply, _) in committed.answers {
                        let _ = reply.send(Err(StoreError::Unavailable(reason.clone())));
                    }
                }
            }
        }
    }
}

/// Answers durable groups and publishes the newest seq each advanced log reached.
pub(super) fn answer<T>(
    groups: impl IntoIterator<Item = Committed<T>>,
    log: &broadcast::Sender<LogAdvanced>,
) {
    let mut advanced: HashMap<AccountId, i64> = HashMap::new();
    for committed in groups {
        for (reply, result) in committed.answers {
            let _ = reply.send(result);
        }
        for hint in committed.advanced {
            let seq = advanced.entry(hint.account_id).or_insert(hint.seq);
            *seq = (*seq).max(hint.seq);
        }
    }
    for (account_id, seq) in advanced {
        // No receivers is fine: nobody is listening right now.
        let _ = log.send(LogAdvanced { account_id, seq });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn account(n: u8) -> AccountId {
        AccountId::from(uuid::Uuid::from_bytes([n; 16]))
    }

    /// A syncer thread over `flush`, with the ends a test drives it by.
    fn start(
        flush: impl FnMut() -> std::io::Result<()> + Send + 'static,
    ) -> (
        Arc<Durability>,
        std_mpsc::Sender<Committed<u32>>,
        JoinHandle<()>,
        broadcast::Receiver<LogAdvanced>,
    ) {
        let durability = Durability::new();
        let (log, hints) = broadcast::channel(16);
        let (groups, pending) = std_mpsc::channel();
        let shared = Arc::clone(&durability);
        let thread = std::thread::spawn(move || sync_groups(flush, pending, &shared, &log));
        (durability, groups, thread, hints)
    }

    #[tokio::test]
    async fn a_read_waits_for_the_group_it_could_have_seen() {
        let durability = Durability::new();
        // Nothing committed yet: nothing to wait for.
        durability.settled().await.unwrap();

        let group = durability.begin_group([]);
        let waiting = tokio::spawn({
            let durability = Arc::clone(&durability);
            async move { durability.settled().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "settled before the group was flushed"
        );

        durability.flushed_through(group);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("settled after the flush")
            .unwrap()
            .unwrap();
        // A later flush of an older group never moves the mark back.
        durability.flushed_through(group - 1);
        durability.settled().await.unwrap();
    }

    #[test]
    fn a_log_is_cut_at_its_first_seq_not_on_disk_until_every_group_advancing_it_is() {
        let durability = Durability::new();
        assert_eq!(durability.first_unflushed_seq(account(1)), None);

        let first = durability.begin_group([(account(1), 5), (account(2), 1)]);
        assert_eq!(durability.first_unflushed_seq(account(1)), Some(5));
        // A later group does not move the cut forward: seq 5 is still not on disk.
        let second = durability.begin_group([(account(1), 9)]);
        assert_eq!(durability.first_unflushed_seq(account(1)), Some(5));

        durability.flushed_through(first);
        assert_eq!(durability.first_unflushed_seq(account(2)), None);
        assert_eq!(durability.first_unflushed_seq(account(1)), Some(5));
        durability.flushed_through(second);
        assert_eq!(durability.first_unflushed_seq(account(1)), None);
    }

    #[tokio::test]
    async fn groups_are_answered_after_the_flush_in_order_with_one_hint_per_log() {
        let flushes = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&flushes);
        let (durability, groups, thread, mut hints) = start(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        let mut answers = Vec::new();
        for value in 0..3u32 {
            let group = durability.begin_group([]);
            let (reply, answer) = oneshot::channel();
            answers.push(answer);
            groups
                .send(Committed {
                    group,
                    answers: vec![(reply, Ok(value))],
                    advanced: vec![
                        LogAdvanced {
                            account_id: account(1),
                            seq: i64::from(value) + 10,
                        },
                        LogAdvanced {
                            account_id: account(2),
                            seq: 5,
                        },
                    ],
                })
                .unwrap();
        }
        for (value, answer) in (0..3u32).zip(answers) {
            assert_eq!(answer.await.unwrap().unwrap(), value);
        }
        drop(groups);
        thread.join().unwrap();

        assert!(flushes.load(Ordering::SeqCst) >= 1);
        durability.settled().await.unwrap();
        let mut newest = HashMap::new();
        while let Ok(hint) = hints.try_recv() {
            let seq = newest.entry(hint.account_id).or_insert(hint.seq);
            *seq = (*seq).max(hint.seq);
        }
        assert_eq!(newest.get(&account(1)), Some(&12));
        assert_eq!(newest.get(&account(2)), Some(&5));
    }

    #[tokio::test]
    async fn a_failed_flush_answers_errors_and_stops_the_store() {
        let (durability, groups, thread, mut hints) =
            start(|| Err(std::io::Error::other("injected EIO")));
        let group = durability.begin_group([]);
        let (reply, answer) = oneshot::channel();
        groups
            .send(Committed {
                group,
                answers: vec![(reply, Ok(7u32))],
                advanced: vec![LogAdvanced {
                    account_id: account(1),
                    seq: 1,
                }],
            })
            .unwrap();

        let error = answer.await.unwrap().unwrap_err();
        assert!(
            matches!(&error, StoreError::Unavailable(reason) if reason.contains("restart")),
            "{error:?}"
        );
        assert!(durability.failure().is_some());
        assert!(matches!(
            durability.settled().await,
            Err(StoreError::Unavailable(_))
        ));
        // No hint for a group that never reached the disk.
        assert!(hints.try_recv().is_err());

        // Later groups are refused too, even if the disk would now flush.
        let group = durability.begin_group([]);
        let (reply, answer) = oneshot::channel();
        groups
            .send(Committed {
                group,
                answers: vec![(reply, Ok(8u32))],
                advanced: Vec::new(),
            })
            .unwrap();
        assert!(answer.await.unwrap().is_err());
        drop(groups);
        thread.join().unwrap();
    }
}
