//! Reading the replication log on PostgreSQL (appends are `Tx::append`).

use airtext_api::sync::SyncEvent;
use airtext_api::AccountId;
use async_trait::async_trait;

use super::super::rows;
use super::super::rules;
use super::super::{LogStore, StoreResult};
use super::{closed_or, PostgresStore};

#[async_trait]
impl LogStore for PostgresStore {
    async fn events_after(
        &self,
        account: AccountId,
        after: i64,
        limit: u32,
    ) -> StoreResult<(Vec<SyncEvent>, bool)> {
        let found = sqlx::query(
            "SELECT seq, at, payload FROM events WHERE account_id = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3",
        )
        .bind(account.0)
        .bind(after)
        .bind(i64::from(limit) + 1)
        .fetch_all(self.pool()?)
        .await
        .map_err(closed_or)?;
        let (found, more) = rules::page(found, limit);
        let events = found
            .iter()
            .map(rows::event)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((events, more))
    }

    async fn last_seq(&self, account: AccountId) -> StoreResult<i64> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT last_seq FROM account_log WHERE account_id = $1")
                .bind(account.0)
                .fetch_optional(self.pool()?)
                .await
                .map_err(closed_or)?;
        Ok(seq.unwrap_or(0))
    }
}
