//! The sync engine: mirrors the account's event log into the cache.
//!
//! On start, on every stream hint and whenever asked, [`Session::sync`] pulls `/v1/sync` pages
//! from the stored cursor and applies each page together with its new cursor in one local
//! transaction ([`crate::cache::apply`]), so a crash at any point resumes exactly where the
//! last commit left off: no event skipped, none applied twice. The next page is fetched while
//! the current one is applied. Progress and every change go out as [`ClientEvent`]s.

use std::sync::atomic::Ordering;

use airtext_api::sync::SyncPage;
use serde::Serialize;

use crate::cache::apply::{self, FailAfter};
use crate::cache::sync_state;
use crate::error::Result;
use crate::events::ClientEvent;
use crate::session::Session;

/// Events per page (the gateway's maximum).
pub const PAGE: u32 = 1000;

/// What one sync run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Events applied in this run.
    pub applied: u64,
    /// The cursor afterwards.
    pub cursor: i64,
}

impl Session {
    /// Pulls and applies everything after the stored cursor.
    pub async fn sync(&self) -> Result<SyncReport> {
        self.sync_with(FailAfter::default()).await
    }

    /// [`Session::sync`] with a fault injected into the apply transaction (tests only).
    #[doc(hidden)]
    pub async fn sync_with(&self, fail_after: FailAfter) -> Result<SyncReport> {
        let _one_at_a_time = self.sync_lock.lock().await;
        let mut cursor = self.cache.call(|c| sync_state::cursor(c)).await?;
        let mut report = SyncReport { applied: 0, cursor };
        let fetch = |after: i64| {
            let cloud = self.cloud.clone();
            tokio::spawn(async move { cloud.sync(after, PAGE).await })
        };
        let mut pending = fetch(cursor);
        loop {
            let page: SyncPage = match pending.await {
                Ok(page) => page?,
                Err(e) => return Err(crate::Error::Protocol(format!("sync task: {e}"))),
            };
            // Fetch the next page while this one is written.
            let next_fetch = page.more.then(|| fetch(page.next));
            let next = page.next;
            let events = page.events;
            let want_changes = self.events.receiver_count() > 0;
            let applied = self
                .cache
                .call(move |c| apply::apply_page(c, &events, next, fail_after, want_changes))
                .await;
            let applied = match applied {
                Ok(applied) => applied,
                Err(e) => {
                    if let Some(task) = next_fetch {
                        task.abort();
                    }
                    return Err(e.into());
                }
            };
            cursor = applied.cursor;
            report.applied += applied.applied;
            report.cursor = cursor;
            for change in applied.changes {
                self.emit(change);
            }
            let head = self.known_head.load(Ordering::Relaxed);
            self.emit(ClientEvent::SyncProgress {
                applied: report.applied,
                remaining: (head > 0).then(|| u64::try_from(head - cursor).unwrap_or(0)),
                cursor,
            });
            match next_fetch {
                Some(task) => pending = task,
                None => {
                    self.cache
                        .call(|c| sync_state::set_synced_at(c, chrono::Utc::now()))
                        .await?;
                    return Ok(report);
                }
            }
        }
    }

    /// Notes that the log has reached `seq` (a stream hint).
    pub(crate) fn note_head(&self, seq: i64) {
        self.known_head.fetch_max(seq, Ordering::Relaxed);
    }
}
