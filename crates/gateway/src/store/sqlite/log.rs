//! Reading the replication log on SQLite (the writer appends: `writer::append`). Neither
//! read serves a seq that is not yet on disk (see `durability`).

use airtext_api::sync::SyncEvent;
use airtext_api::AccountId;
use async_trait::async_trait;
use rusqlite::params;

use super::super::rows;
use super::super::rules;
use super::super::{LogStore, StoreResult};
use super::conn::{all, blob, first_int, one};
use super::SqliteStore;

#[async_trait]
impl LogStore for SqliteStore {
    async fn events_after(
        &self,
        account: AccountId,
        after: i64,
        limit: u32,
    ) -> StoreResult<(Vec<SyncEvent>, bool)> {
        let (mut found, mut more) = self
            .scan_unsettled(move |conn| {
                // One extra row tells whether more remain.
                let found = all(
                    conn,
                    "SELECT seq, at, payload FROM events WHERE account_id = ?1 AND seq > ?2 \
                     ORDER BY seq LIMIT ?3",
                    params![blob(&account.0), after, i64::from(limit) + 1],
                    |row| rows::event(row),
                )?;
                Ok(rules::page(found, limit))
            })
            .await?;
        // Seqs not yet on disk are not served (see `durability`); their hint follows the flush.
        if let Some(first_unflushed) = self.first_unflushed_seq(account) {
            if found
                .last()
                .is_some_and(|event| event.seq >= first_unflushed)
            {
                found.retain(|event| event.seq < first_unflushed);
                more = false;
            }
        }
        Ok((found, more))
    }

    async fn last_seq(&self, account: AccountId) -> StoreResult<i64> {
        let seq = self
            .lookup(move |conn| {
                one(
                    conn,
                    "SELECT last_seq FROM account_log WHERE account_id = ?1",
                    params![blob(&account.0)],
                    first_int,
                )
            })
            .await?
            .unwrap_or(0);
        // As for `events_after`: never a seq that is not yet on disk.
        Ok(match self.first_unflushed_seq(account) {
            Some(first_unflushed) => seq.min(first_unflushed - 1),
            None => seq,
        })
    }
}
