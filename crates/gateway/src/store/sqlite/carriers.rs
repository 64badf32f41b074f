//! Carrier records, receipts and opt-outs on SQLite.

use airtext_api::MessageId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

use super::super::rows::{micros, Cols};
use super::super::rules;
use super::super::{CarrierReceipt, CarrierRecord, CarrierStore, ReceiptOutcome, StoreResult};
use super::conn::{self, all, blob, first_uuid, one, run};
use super::messages::apply_status;
use super::writer::{self, Effects, Out};
use super::{unexpected, SqliteStore};

/// The writes of carrier receipts and opt-outs the writer runs.
#[derive(Debug)]
pub(super) enum Op {
    SetOptOut {
        did: String,
        remote: String,
        opted_out: bool,
        at: DateTime<Utc>,
    },
    ApplyReceipts(Vec<CarrierReceipt>),
    ExpireEarlyReceipts {
        received_before: DateTime<Utc>,
    },
}

impl Op {
    /// See [`writer::Op::changes_accounts`]: no catch-all arm.
    pub(super) fn changes_accounts(&self) -> bool {
        match self {
            Op::SetOptOut { .. } | Op::ApplyReceipts(_) | Op::ExpireEarlyReceipts { .. } => false,
        }
    }
}

impl From<Op> for writer::Op {
    fn from(op: Op) -> Self {
        writer::Op::Carriers(op)
    }
}

/// Runs one write in the writer's open transaction.
pub(super) fn execute(conn: &Connection, op: &Op, fx: &mut Effects<'_>) -> StoreResult<Out> {
    match *op {
        Op::SetOptOut {
            ref did,
            ref remote,
            opted_out,
            at,
        } => set_opt_out(conn, did, remote, opted_out, at),
        Op::ApplyReceipts(ref receipts) => apply_receipts(conn, fx, receipts),
        Op::ExpireEarlyReceipts { received_before } => {
            let removed = run(
                conn,
                "DELETE FROM early_receipts WHERE received_at < ?1",
                params![micros(received_before)],
            )?;
            Ok(Out::Removed(u64::try_from(removed).unwrap_or(u64::MAX)))
        }
    }
}

/// A row when `?2` opted out of texts from our DID `?1` (read by the queue, and by the writer
/// inside each enqueued delivery).
pub(super) const OPTED_OUT: &str = "SELECT 1 FROM opt_outs WHERE did = ?1 AND remote = ?2";

fn set_opt_out(
    conn: &Connection,
    did: &str,
    remote: &str,
    opted_out: bool,
    at: DateTime<Utc>,
) -> StoreResult<Out> {
    if opted_out {
        run(
            conn,
            "INSERT INTO opt_outs (did, remote, at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (did, remote) DO NOTHING",
            params![did, remote, micros(at)],
        )?;
    } else {
        run(
            conn,
            "DELETE FROM opt_outs WHERE did = ?1 AND remote = ?2",
            params![did, remote],
        )?;
    }
    Ok(Out::Done)
}

/// The message a carrier knows by this id: the first by id, as
/// [`CarrierStore::message_by_carrier_id`] answers.
const MESSAGE_BY_CARRIER_ID: &str = "SELECT id FROM messages \
     WHERE carrier = ?1 AND carrier_message_id = ?2 ORDER BY id LIMIT 1";

/// Applies receipts in order, each to the message carrying its carrier id, or holds it in
/// `early_receipts` when none does yet (see `CarrierStore::apply_receipts`).
fn apply_receipts(
    conn: &Connection,
    fx: &mut Effects<'_>,
    receipts: &[CarrierReceipt],
) -> StoreResult<Out> {
    let mut outcomes = Vec::with_capacity(receipts.len());
    for receipt in receipts {
        let found = one(
            conn,
            MESSAGE_BY_CARRIER_ID,
            params![receipt.carrier, receipt.carrier_message_id],
            first_uuid,
        )?;
        let outcome = match found {
            Some(id) => {
                let message_id = MessageId::from(id);
                let applied = apply_status(
                    conn,
                    fx,
                    message_id,
                    receipt.status,
                    receipt.failure_reason.clone(),
                    receipt.received_at,
                )?;
                ReceiptOutcome::Applied {
                    message_id,
                    changed: applied == Some(true),
                }
            }
            None => {
                run(
                    conn,
                    "INSERT INTO early_receipts \
                         (carrier, carrier_message_id, status, reason, received_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (carrier, carrier_message_id, status) DO NOTHING",
                    params![
                        receipt.carrier,
                        receipt.carrier_message_id,
                        receipt.status.as_str(),
                        receipt.failure_reason,
                        micros(receipt.received_at)
                    ],
                )?;
                ReceiptOutcome::Held
            }
        };
        outcomes.push(outcome);
    }
    Ok(Out::Receipts(outcomes))
}

/// Applies (and removes) the receipts held for `(carrier, carrier_message_id)` to the message
/// that was just recorded with that id, oldest first.
pub(super) fn apply_early_receipts(
    conn: &Connection,
    fx: &mut Effects<'_>,
    message_id: MessageId,
    carrier: &str,
    carrier_message_id: &str,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    // A SELECT, then a DELETE only when something is held: nearly always nothing is, and
    // SQLite builds a temporary table for every RETURNING, which cost more than the lookup.
    let held = all(
        conn,
        "SELECT status, reason, received_at FROM early_receipts \
         WHERE carrier = ?1 AND carrier_message_id = ?2",
        params![carrier, carrier_message_id],
        |row| {
            Ok((
                row.time("received_at")?,
                row.text("status")?,
                row.opt_text("reason")?,
            ))
        },
    )?;
    if held.is_empty() {
        return Ok(());
    }
    run(
        conn,
        "DELETE FROM early_receipts WHERE carrier = ?1 AND carrier_message_id = ?2",
        params![carrier, carrier_message_id],
    )?;
    for receipt in rules::held_receipts(carrier, carrier_message_id, held, at) {
        apply_status(
            conn,
            fx,
            message_id,
            receipt.status,
            receipt.failure_reason,
            receipt.at,
        )?;
    }
    Ok(())
}

#[async_trait]
impl CarrierStore for SqliteStore {
    async fn message_by_carrier_id(
        &self,
        carrier: &str,
        carrier_message_id: &str,
    ) -> StoreResult<Option<MessageId>> {
        let carrier = carrier.to_owned();
        let carrier_message_id = carrier_message_id.to_owned();
        let id = self
            .lookup(move |conn| {
                one(
                    conn,
                    "SELECT id FROM messages WHERE carrier = ?1 AND carrier_message_id = ?2 \
                     ORDER BY id LIMIT 1",
                    params![carrier, carrier_message_id],
                    first_uuid,
                )
            })
            .await?;
        Ok(id.map(Into::into))
    }

    async fn carrier_record(&self, message_id: MessageId) -> StoreResult<Option<CarrierRecord>> {
        self.read(move |conn| {
            one(
                conn,
                "SELECT carrier, carrier_message_id, cost FROM messages \
                 WHERE id = ?1 AND carrier IS NOT NULL AND carrier_message_id IS NOT NULL",
                params![blob(&message_id.0)],
                |row| {
                    Ok(CarrierRecord {
                        carrier: row.text("carrier")?,
                        carrier_message_id: row.text("carrier_message_id")?,
                        cost: conn::opt_real(row, "cost")?,
                    })
                },
            )
        })
        .await
    }

    async fn set_opt_out(
        &self,
        did: &str,
        remote: &str,
        opted_out: bool,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.write_done(Op::SetOptOut {
            did: did.to_owned(),
            remote: remote.to_owned(),
            opted_out,
            at,
        })
        .await
    }

    async fn opted_out(&self, did: &str, remote: &str) -> StoreResult<bool> {
        let did = did.to_owned();
        let remote = remote.to_owned();
        let found = self
            .lookup(move |conn| one(conn, OPTED_OUT, params![did, remote], |_| Ok(())))
            .await?;
        Ok(found.is_some())
    }

    async fn apply_receipts(
        &self,
        receipts: &[CarrierReceipt],
    ) -> StoreResult<Vec<ReceiptOutcome>> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        // One command: the whole batch is one write of the group commit.
        match self.write(Op::ApplyReceipts(receipts.to_vec())).await? {
            Out::Receipts(outcomes) => Ok(outcomes),
            other => Err(unexpected(&other)),
        }
    }

    async fn expire_early_receipts(&self, received_before: DateTime<Utc>) -> StoreResult<u64> {
        match self
            .write(Op::ExpireEarlyReceipts { received_before })
            .await?
        {
            Out::Removed(n) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }
}
