//! The outbound queue on SQLite.

use airtext_api::{MessageId, SendStatus};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

use super::super::rows::{self, micros};
use super::super::rules;
use super::super::{
    OutboundBacklog, OutboundJob, OutboundOutcome, OutboundStore, StoreError, StoreResult,
};
use super::carriers::apply_early_receipts;
use super::conn::{all, blob, one, run};
use super::messages::{advance_status, apply_status, SentThrough};
use super::writer::{self, Effects, Out};
use super::{unexpected, SqliteStore};

/// The writes of the outbound queue the writer runs.
#[derive(Debug)]
pub(super) enum Op {
    ClaimOutbound {
        limit: u32,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    },
    FinishOutbound {
        message_id: MessageId,
        outcome: OutboundOutcome,
        at: DateTime<Utc>,
    },
}

impl Op {
    /// See [`writer::Op::changes_accounts`]: no catch-all arm.
    pub(super) fn changes_accounts(&self) -> bool {
        match self {
            Op::ClaimOutbound { .. } | Op::FinishOutbound { .. } => false,
        }
    }
}

impl From<Op> for writer::Op {
    fn from(op: Op) -> Self {
        writer::Op::Outbound(op)
    }
}

/// Runs one write in the writer's open transaction.
pub(super) fn execute(conn: &Connection, op: &Op, fx: &mut Effects<'_>) -> StoreResult<Out> {
    match *op {
        Op::ClaimOutbound {
            limit,
            now,
            lease_until,
        } => claim_outbound(conn, limit, now, lease_until),
        Op::FinishOutbound {
            message_id,
            ref outcome,
            at,
        } => finish_outbound(conn, fx, message_id, outcome, at),
    }
}

fn claim_outbound(
    conn: &Connection,
    limit: u32,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> StoreResult<Out> {
    let mut jobs = all(
        conn,
        "UPDATE outbound SET lease_until = ?2 \
         WHERE message_id IN ( \
             SELECT message_id FROM outbound \
             WHERE not_before <= ?1 AND (lease_until IS NULL OR lease_until <= ?1) \
             ORDER BY not_before, created_at LIMIT ?3) \
         RETURNING message_id, account_id, from_addr, to_addr, body, attempts, created_at",
        params![micros(now), micros(lease_until), i64::from(limit)],
        |row| rows::outbound_job(row),
    )?;
    // RETURNING has no order.
    rules::oldest_first(&mut jobs);
    Ok(Out::Jobs(jobs))
}

fn finish_outbound(
    conn: &Connection,
    fx: &mut Effects<'_>,
    message_id: MessageId,
    outcome: &OutboundOutcome,
    at: DateTime<Utc>,
) -> StoreResult<Out> {
    match outcome {
        OutboundOutcome::Sent {
            carrier,
            carrier_message_id,
            cost,
        } => {
            let job = run(
                conn,
                "DELETE FROM outbound WHERE message_id = ?1",
                params![blob(&message_id.0)],
            )?;
            // A receipt may already have moved it past `sent`; advance decides. The carrier's
            // record is written either way, in the same statement as the status if it moves.
            let sent_through = SentThrough {
                carrier,
                carrier_message_id,
                cost: *cost,
            };
            let recorded = advance_status(
                conn,
                fx,
                message_id,
                SendStatus::Sent,
                None,
                at,
                Some(&sent_through),
            )?;
            if job == 0 && recorded.is_none() {
                return Err(StoreError::NotFound);
            }
            // Receipts that overtook this record were held for it; this thread is the only
            // writer, so none can arrive between the record and this.
            apply_early_receipts(conn, fx, message_id, carrier, carrier_message_id, at)?;
        }
        OutboundOutcome::Retry { not_before, reason }
        | OutboundOutcome::Defer { not_before, reason } => {
            let attempt = i64::from(rules::counts_attempt(outcome));
            let retried = run(
                conn,
                "UPDATE outbound SET attempts = attempts + ?4, not_before = ?2, \
                     lease_until = NULL, last_error = ?3 \
                 WHERE message_id = ?1",
                params![blob(&message_id.0), micros(*not_before), reason, attempt],
            )?;
            if retried == 0 {
                return Err(StoreError::NotFound);
            }
        }
        OutboundOutcome::Failed { reason } => {
            let job = run(
                conn,
                "DELETE FROM outbound WHERE message_id = ?1",
                params![blob(&message_id.0)],
            )?;
            let status = apply_status(
                conn,
                fx,
                message_id,
                SendStatus::Failed,
                Some(reason.clone()),
                at,
            )?;
            if job == 0 && status.is_none() {
                return Err(StoreError::NotFound);
            }
        }
    }
    Ok(Out::Done)
}

#[async_trait]
impl OutboundStore for SqliteStore {
    async fn claim_outbound(
        &self,
        limit: u32,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Vec<OutboundJob>> {
        match self
            .write(Op::ClaimOutbound {
                limit,
                now,
                lease_until,
            })
            .await?
        {
            Out::Jobs(jobs) => Ok(jobs),
            other => Err(unexpected(&other)),
        }
    }

    async fn finish_outbound(
        &self,
        message_id: MessageId,
        outcome: OutboundOutcome,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.write_done(Op::FinishOutbound {
            message_id,
            outcome,
            at,
        })
        .await
    }

    async fn outbound_backlog(&self) -> StoreResult<OutboundBacklog> {
        // A figure for monitoring, not a reply's content: no need to wait for the disk.
        self.lookup(|conn| {
            one(
                conn,
                "SELECT count(*), min(created_at) FROM outbound",
                [],
                |row| {
                    let jobs: i64 = row.get(0)?;
                    let oldest: Option<i64> = row.get(1)?;
                    Ok(OutboundBacklog {
                        jobs: u64::try_from(jobs).unwrap_or(0),
                        oldest: oldest.map(rows::from_micros).transpose()?,
                    })
                },
            )
            .map(Option::unwrap_or_default)
        })
        .await
    }
}
