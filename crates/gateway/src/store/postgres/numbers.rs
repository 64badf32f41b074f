//! The number inventory on PostgreSQL.

use airtext_api::AccountId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::super::rows::{self, Cols};
use super::super::rules;
use super::super::{
    BoughtNumber, Conflict, InventoryNumber, NumberSearch, NumberStore, StoreError, StoreResult,
};
use super::{closed_or, PostgresStore};

#[async_trait]
impl NumberStore for PostgresStore {
    async fn add_inventory(&self, numbers: &[InventoryNumber]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for n in numbers {
            sqlx::query(
                "INSERT INTO numbers (number, carrier, country) VALUES ($1, $2, $3) \
                 ON CONFLICT (number) DO NOTHING",
            )
            .bind(&n.number)
            .bind(&n.carrier)
            .bind(&n.country)
            .execute(tx.conn())
            .await?;
        }
        self.commit(tx).await
    }

    async fn available_numbers(&self, search: NumberSearch) -> StoreResult<Vec<String>> {
        let prefix = search.prefix.unwrap_or_default();
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT number FROM numbers \
             WHERE country = $1 AND owner IS NULL AND available_at <= $2 \
               AND left(number, length($3)) = $3 \
             ORDER BY number LIMIT $4",
        )
        .bind(&search.country)
        .bind(search.now)
        .bind(&prefix)
        .bind(i64::from(search.limit))
        .fetch_all(self.pool()?)
        .await
        .map_err(closed_or)?;
        Ok(found)
    }

    async fn claim_number(
        &self,
        account: AccountId,
        number: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "SELECT owner, available_at > $2 AS quarantined FROM numbers WHERE number = $1 \
             FOR UPDATE",
        )
        .bind(number)
        .bind(now)
        .fetch_optional(tx.conn())
        .await?
        .ok_or(StoreError::NotFound)?;
        let owner = row.opt_uuid("owner")?.map(AccountId);
        rules::may_claim_number(account, owner, row.boolean("quarantined")?)?;
        // The unique owner column settles two claims by one account racing.
        sqlx::query("UPDATE numbers SET owner = $1 WHERE number = $2")
            .bind(account.0)
            .bind(number)
            .execute(tx.conn())
            .await
            .map_err(|e| match rows::unique_violation(&e) {
                Some(_) => StoreError::Conflict(Conflict::AlreadyHasNumber),
                None => e.into(),
            })?;
        self.commit(tx).await
    }

    async fn release_number(
        &self,
        account: AccountId,
        number: &str,
        available_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE numbers SET owner = NULL, available_at = $3 WHERE number = $1 AND owner = $2",
        )
        .bind(number)
        .bind(account.0)
        .bind(available_at)
        .execute(self.pool()?)
        .await
        .map_err(closed_or)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn number_owner(&self, number: &str) -> StoreResult<Option<AccountId>> {
        let owner: Option<Option<Uuid>> =
            sqlx::query_scalar("SELECT owner FROM numbers WHERE number = $1")
                .bind(number)
                .fetch_optional(self.pool()?)
                .await
                .map_err(closed_or)?;
        Ok(owner.flatten().map(Into::into))
    }

    async fn number_carrier(&self, number: &str) -> StoreResult<Option<String>> {
        let carrier: Option<String> =
            sqlx::query_scalar("SELECT carrier FROM numbers WHERE number = $1")
                .bind(number)
                .fetch_optional(self.pool()?)
                .await
                .map_err(closed_or)?;
        Ok(carrier)
    }

    async fn add_bought_number(
        &self,
        number: &InventoryNumber,
        carrier_sid: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO numbers (number, carrier, country, carrier_sid) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (number) DO UPDATE SET carrier = excluded.carrier, \
               carrier_sid = excluded.carrier_sid",
        )
        .bind(&number.number)
        .bind(&number.carrier)
        .bind(&number.country)
        .bind(carrier_sid)
        .execute(self.pool()?)
        .await
        .map_err(closed_or)?;
        Ok(())
    }

    async fn hold_numbers_to_give_back(
        &self,
        carrier: &str,
        now: DateTime<Utc>,
        hold_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<BoughtNumber>> {
        // SKIP LOCKED: another node's pass takes other numbers instead of waiting for these.
        let held: Vec<(String, String)> = sqlx::query_as(
            "UPDATE numbers SET available_at = $3 WHERE number IN ( \
                 SELECT number FROM numbers \
                 WHERE carrier = $1 AND carrier_sid IS NOT NULL AND owner IS NULL \
                   AND available_at <= $2 \
                 ORDER BY available_at, number LIMIT $4 FOR UPDATE SKIP LOCKED) \
             RETURNING number, carrier_sid",
        )
        .bind(carrier)
        .bind(now)
        .bind(hold_until)
        .bind(i64::from(limit))
        .fetch_all(self.pool()?)
        .await
        .map_err(closed_or)?;
        let mut held: Vec<BoughtNumber> = held
            .into_iter()
            .map(|(number, carrier_sid)| BoughtNumber {
                number,
                carrier_sid,
            })
            .collect();
        held.sort_by(|a, b| a.number.cmp(&b.number));
        Ok(held)
    }

    async fn forget_given_back_number(&self, number: &str, carrier_sid: &str) -> StoreResult<bool> {
        let gone = sqlx::query(
            "DELETE FROM numbers WHERE number = $1 AND carrier_sid = $2 AND owner IS NULL",
        )
        .bind(number)
        .bind(carrier_sid)
        .execute(self.pool()?)
        .await
        .map_err(closed_or)?;
        Ok(gone.rows_affected() > 0)
    }
}
