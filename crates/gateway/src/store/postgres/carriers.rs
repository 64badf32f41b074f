//! Carrier records, receipts and opt-outs on PostgreSQL.
//!
//! A receipt and the finish recording its carrier id both take the transaction-level
//! advisory lock of that id ([`receipt_lock`]) before they look for each other.

use std::collections::HashMap;

use airtext_api::{AccountId, MessageId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::super::rows::{corrupt, Cols};
use super::super::rules;
use super::super::{CarrierReceipt, CarrierRecord, CarrierStore, ReceiptOutcome, StoreResult};
use super::messages::apply_status;
use super::{closed_or, PostgresStore, Tx};

/// The advisory lock that orders a receipt against the finish recording its carrier id.
pub(super) fn receipt_lock(carrier: &str, carrier_message_id: &str) -> String {
    format!("receipt:{carrier}:{carrier_message_id}")
}

/// Takes the transaction-level advisory locks of `keys`, in the order of the lock keys
/// themselves, so transactions taking several always take them in one order. (Volatile
/// functions in the select list run after the ORDER BY sort.)
pub(super) async fn lock_receipts(tx: &mut Tx, keys: &[String]) -> StoreResult<()> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(k) \
         FROM (SELECT DISTINCT hashtextextended(x, 0) AS k FROM unnest($1::text[]) AS x) AS keys \
         ORDER BY k",
    )
    .bind(keys)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Applies (and removes) the receipts held for `(carrier, carrier_message_id)` to the message
/// just recorded with that id, oldest first. The caller holds the id's advisory lock.
pub(super) async fn apply_early_receipts(
    tx: &mut Tx,
    message_id: MessageId,
    carrier: &str,
    carrier_message_id: &str,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    let found = sqlx::query(
        "DELETE FROM early_receipts WHERE carrier = $1 AND carrier_message_id = $2 \
         RETURNING status, reason, received_at",
    )
    .bind(carrier)
    .bind(carrier_message_id)
    .fetch_all(tx.conn())
    .await?;
    let mut held = Vec::with_capacity(found.len());
    for row in &found {
        held.push((
            row.time("received_at")?,
            row.text("status")?,
            row.opt_text("reason")?,
        ));
    }
    for receipt in rules::held_receipts(carrier, carrier_message_id, held, at) {
        apply_status(
            tx,
            message_id,
            receipt.status,
            receipt.failure_reason,
            receipt.at,
        )
        .await?;
    }
    Ok(())
}

#[async_trait]
impl CarrierStore for PostgresStore {
    async fn message_by_carrier_id(
        &self,
        carrier: &str,
        carrier_message_id: &str,
    ) -> StoreResult<Option<MessageId>> {
        let id: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM messages WHERE carrier = $1 AND carrier_message_id = $2 \
             ORDER BY id LIMIT 1",
        )
        .bind(carrier)
        .bind(carrier_message_id)
        .fetch_optional(self.pool()?)
        .await
        .map_err(closed_or)?;
        Ok(id.map(Into::into))
    }

    async fn carrier_record(&self, message_id: MessageId) -> StoreResult<Option<CarrierRecord>> {
        let row = sqlx::query(
            "SELECT carrier, carrier_message_id, cost FROM messages \
             WHERE id = $1 AND carrier IS NOT NULL AND carrier_message_id IS NOT NULL",
        )
        .bind(message_id.0)
        .fetch_optional(self.pool()?)
        .await
        .map_err(closed_or)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(CarrierRecord {
            carrier: row.try_get("carrier").map_err(corrupt)?,
            carrier_message_id: row.try_get("carrier_message_id").map_err(corrupt)?,
            cost: row.try_get::<Option<f64>, _>("cost").map_err(corrupt)?,
        }))
    }

    async fn set_opt_out(
        &self,
        did: &str,
        remote: &str,
        opted_out: bool,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let query = if opted_out {
            sqlx::query(
                "INSERT INTO opt_outs (did, remote, at) VALUES ($1, $2, $3) \
                 ON CONFLICT (did, remote) DO NOTHING",
            )
            .bind(did)
            .bind(remote)
            .bind(at)
        } else {
            sqlx::query("DELETE FROM opt_outs WHERE did = $1 AND remote = $2")
                .bind(did)
                .bind(remote)
        };
        query.execute(self.pool()?).await.map_err(closed_or)?;
        Ok(())
    }

    async fn opted_out(&self, did: &str, remote: &str) -> StoreResult<bool> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM opt_outs WHERE did = $1 AND remote = $2")
                .bind(did)
                .bind(remote)
                .fetch_optional(self.pool()?)
                .await
                .map_err(closed_or)?;
        Ok(found.is_some())
    }

    async fn apply_receipts(
        &self,
        receipts: &[CarrierReceipt],
    ) -> StoreResult<Vec<ReceiptOutcome>> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let keys: Vec<String> = receipts
            .iter()
            .map(|r| receipt_lock(&r.carrier, &r.carrier_message_id))
            .collect();
        lock_receipts(&mut tx, &keys).await?;

        // The message of each id (the first by id, as `message_by_carrier_id` answers).
        let carriers: Vec<&str> = receipts.iter().map(|r| r.carrier.as_str()).collect();
        let ids: Vec<&str> = receipts
            .iter()
            .map(|r| r.carrier_message_id.as_str())
            .collect();
        let found = sqlx::query(
            "SELECT DISTINCT ON (r.carrier, r.cid) r.carrier, r.cid, m.id, m.account_id \
             FROM unnest($1::text[], $2::text[]) AS r(carrier, cid) \
             JOIN messages m ON m.carrier = r.carrier AND m.carrier_message_id = r.cid \
             ORDER BY r.carrier, r.cid, m.id",
        )
        .bind(&carriers)
        .bind(&ids)
        .fetch_all(tx.conn())
        .await?;
        let mut owners: HashMap<(String, String), (MessageId, AccountId)> = HashMap::new();
        for row in &found {
            owners.insert(
                (row.text("carrier")?, row.text("cid")?),
                (row.uuid("id")?.into(), row.uuid("account_id")?.into()),
            );
        }
        // Message rows in id order before any log row (see the lock order above).
        let mut locked: Vec<Uuid> = owners.values().map(|(id, _)| id.0).collect();
        locked.sort_unstable();
        locked.dedup();
        sqlx::query("SELECT id FROM messages WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&locked)
            .execute(tx.conn())
            .await?;

        let mut outcomes = vec![ReceiptOutcome::Held; receipts.len()];
        // Log rows in account order; one message's receipts keep their arrival order.
        let mut applying: Vec<(AccountId, MessageId, usize)> = Vec::new();
        let mut held: Vec<&CarrierReceipt> = Vec::new();
        for (index, receipt) in receipts.iter().enumerate() {
            let key = (receipt.carrier.clone(), receipt.carrier_message_id.clone());
            match owners.get(&key) {
                Some(&(message_id, account)) => applying.push((account, message_id, index)),
                None => held.push(receipt),
            }
        }
        applying.sort_by_key(|&(account, message_id, index)| (account.0, message_id.0, index));
        for (_, message_id, index) in applying {
            let Some(receipt) = receipts.get(index) else {
                continue;
            };
            let applied = apply_status(
                &mut tx,
                message_id,
                receipt.status,
                receipt.failure_reason.clone(),
                receipt.received_at,
            )
            .await?;
            if let Some(outcome) = outcomes.get_mut(index) {
                *outcome = ReceiptOutcome::Applied {
                    message_id,
                    changed: applied.is_some_and(|applied| applied.changed),
                };
            }
        }
        if !held.is_empty() {
            let carriers: Vec<&str> = held.iter().map(|r| r.carrier.as_str()).collect();
            let ids: Vec<&str> = held.iter().map(|r| r.carrier_message_id.as_str()).collect();
            let statuses: Vec<&str> = held.iter().map(|r| r.status.as_str()).collect();
            let reasons: Vec<Option<String>> =
                held.iter().map(|r| r.failure_reason.clone()).collect();
            let at: Vec<DateTime<Utc>> = held.iter().map(|r| r.received_at).collect();
            sqlx::query(
                "INSERT INTO early_receipts \
                     (carrier, carrier_message_id, status, reason, received_at) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
                                      $5::timestamptz[]) \
                 ON CONFLICT (carrier, carrier_message_id, status) DO NOTHING",
            )
            .bind(&carriers)
            .bind(&ids)
            .bind(&statuses)
            .bind(&reasons)
            .bind(&at)
            .execute(tx.conn())
            .await?;
        }
        self.commit(tx).await?;
        Ok(outcomes)
    }

    async fn expire_early_receipts(&self, received_before: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM early_receipts WHERE received_at < $1")
            .bind(received_before)
            .execute(self.pool()?)
            .await
            .map_err(closed_or)?;
        Ok(done.rows_affected())
    }
}
