//! The outbound queue on PostgreSQL: claims skip rows another node holds locked.

use airtext_api::{MessageId, SendStatus};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::super::rows;
use super::super::rules;
use super::super::{
    OutboundBacklog, OutboundJob, OutboundOutcome, OutboundStore, StoreError, StoreResult,
};
use super::carriers::{apply_early_receipts, lock_receipts, receipt_lock};
use super::messages::apply_status;
use super::{closed_or, PostgresStore};

#[async_trait]
impl OutboundStore for PostgresStore {
    async fn outbound_backlog(&self) -> StoreResult<OutboundBacklog> {
        let (jobs, oldest): (i64, Option<DateTime<Utc>>) =
            sqlx::query_as("SELECT count(*), min(created_at) FROM outbound")
                .fetch_one(self.pool()?)
                .await
                .map_err(closed_or)?;
        Ok(OutboundBacklog {
            jobs: u64::try_from(jobs).unwrap_or(0),
            oldest,
        })
    }

    async fn claim_outbound(
        &self,
        limit: u32,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Vec<OutboundJob>> {
        let found = sqlx::query(
            "UPDATE outbound SET lease_until = $2 \
             WHERE message_id IN ( \
                 SELECT message_id FROM outbound \
                 WHERE not_before <= $1 AND (lease_until IS NULL OR lease_until <= $1) \
                 ORDER BY not_before, created_at LIMIT $3 \
                 FOR UPDATE SKIP LOCKED) \
             RETURNING message_id, account_id, from_addr, to_addr, body, attempts, created_at",
        )
        .bind(now)
        .bind(lease_until)
        .bind(i64::from(limit))
        .fetch_all(self.pool()?)
        .await
        .map_err(closed_or)?;
        let mut jobs = found
            .iter()
            .map(rows::outbound_job)
            .collect::<StoreResult<Vec<_>>>()?;
        rules::oldest_first(&mut jobs);
        Ok(jobs)
    }

    async fn finish_outbound(
        &self,
        message_id: MessageId,
        outcome: OutboundOutcome,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        match outcome {
            OutboundOutcome::Sent {
                carrier,
                carrier_message_id,
                cost,
            } => {
                // Before the message row, as `apply_receipts` takes them (lock order).
                lock_receipts(&mut tx, &[receipt_lock(&carrier, &carrier_message_id)]).await?;
                let job = sqlx::query("DELETE FROM outbound WHERE message_id = $1")
                    .bind(message_id.0)
                    .execute(tx.conn())
                    .await?;
                let recorded = sqlx::query(
                    "UPDATE messages SET carrier = $2, carrier_message_id = $3, cost = $4 \
                     WHERE id = $1",
                )
                .bind(message_id.0)
                .bind(&carrier)
                .bind(&carrier_message_id)
                .bind(cost)
                .execute(tx.conn())
                .await?;
                if job.rows_affected() == 0 && recorded.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                // A receipt may already have moved it past `sent`; advance decides.
                apply_status(&mut tx, message_id, SendStatus::Sent, None, at).await?;
                apply_early_receipts(&mut tx, message_id, &carrier, &carrier_message_id, at)
                    .await?;
            }
            OutboundOutcome::Retry {
                ref not_before,
                ref reason,
            }
            | OutboundOutcome::Defer {
                ref not_before,
                ref reason,
            } => {
                let attempt = i64::from(rules::counts_attempt(&outcome));
                let done = sqlx::query(
                    "UPDATE outbound SET attempts = attempts + $4, not_before = $2, \
                         lease_until = NULL, last_error = $3 \
                     WHERE message_id = $1",
                )
                .bind(message_id.0)
                .bind(not_before)
                .bind(reason)
                .bind(attempt)
                .execute(tx.conn())
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
            }
            OutboundOutcome::Failed { reason } => {
                let job = sqlx::query("DELETE FROM outbound WHERE message_id = $1")
                    .bind(message_id.0)
                    .execute(tx.conn())
                    .await?;
                let status =
                    apply_status(&mut tx, message_id, SendStatus::Failed, Some(reason), at).await?;
                if job.rows_affected() == 0 && status.is_none() {
                    return Err(StoreError::NotFound);
                }
            }
        }
        self.commit(tx).await
    }
}
