//! Accounts and devices on PostgreSQL.

use airtext_api::{AccountId, DeviceId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::super::rows;
use super::super::rules;
use super::super::{
    AccountRecord, AccountStore, DeviceRecord, NewAccount, NewDevice, StoreError, StoreResult,
    TokenHash,
};
use super::{closed_or, PostgresStore};

fn account_conflict(error: sqlx::Error) -> StoreError {
    match rows::unique_violation(&error).and_then(|which| rules::account_conflict(&which)) {
        Some(conflict) => StoreError::Conflict(conflict),
        None => closed_or(error),
    }
}

#[async_trait]
impl AccountStore for PostgresStore {
    async fn create_account(&self, account: NewAccount) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO accounts (id, username, email, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(account.id.0)
        .bind(&account.username)
        .bind(&account.email)
        .bind(&account.password_hash)
        .bind(account.created_at)
        .execute(tx.conn())
        .await
        .map_err(account_conflict)?;
        sqlx::query("INSERT INTO account_log (account_id, last_seq) VALUES ($1, 0)")
            .bind(account.id.0)
            .execute(tx.conn())
            .await?;
        self.commit(tx).await
    }

    async fn account(&self, id: AccountId) -> StoreResult<Option<AccountRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM accounts a LEFT JOIN numbers n ON n.owner = a.id WHERE a.id = $1",
            rows::ACCOUNT_COLUMNS
        ))
        .bind(id.0)
        .fetch_optional(self.pool()?)
        .await
        .map_err(closed_or)?;
        row.as_ref().map(rows::account).transpose()
    }

    async fn account_by_username(&self, username: &str) -> StoreResult<Option<AccountRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM accounts a LEFT JOIN numbers n ON n.owner = a.id \
             WHERE a.username = $1",
            rows::ACCOUNT_COLUMNS
        ))
        .bind(username)
        .fetch_optional(self.pool()?)
        .await
        .map_err(closed_or)?;
        row.as_ref().map(rows::account).transpose()
    }

    async fn create_device(&self, device: NewDevice) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO devices (id, account_id, name, has_cellular, token_hash, created_at, \
                                  last_seen_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(device.id.0)
        .bind(device.account_id.0)
        .bind(&device.name)
        .bind(device.has_cellular)
        .bind(&device.token_hash.0[..])
        .bind(device.created_at)
        .execute(self.pool()?)
        .await
        .map_err(closed_or)?;
        Ok(())
    }

    async fn device_by_token(
        &self,
        token: &TokenHash,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<DeviceRecord>> {
        let row = sqlx::query(
            "SELECT id, account_id, name, has_cellular, created_at, last_seen_at \
             FROM devices WHERE token_hash = $1",
        )
        .bind(&token.0[..])
        .fetch_optional(self.pool()?)
        .await
        .map_err(closed_or)?;
        let Some(device) = row.as_ref().map(rows::device).transpose()? else {
            return Ok(None);
        };
        if rules::last_seen_is_stale(device.last_seen_at, now) {
            sqlx::query("UPDATE devices SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2")
                .bind(device.id.0)
                .bind(now)
                .execute(self.pool()?)
                .await
                .map_err(closed_or)?;
            return Ok(Some(DeviceRecord {
                last_seen_at: now,
                ..device
            }));
        }
        Ok(Some(device))
    }

    async fn devices(&self, account: AccountId) -> StoreResult<Vec<DeviceRecord>> {
        let found = sqlx::query(
            "SELECT id, account_id, name, has_cellular, created_at, last_seen_at \
             FROM devices WHERE account_id = $1 ORDER BY created_at, id",
        )
        .bind(account.0)
        .fetch_all(self.pool()?)
        .await
        .map_err(closed_or)?;
        found.iter().map(rows::device).collect()
    }

    async fn revoke_device(&self, account: AccountId, device: DeviceId) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM devices WHERE id = $1 AND account_id = $2")
            .bind(device.0)
            .bind(account.0)
            .execute(self.pool()?)
            .await
            .map_err(closed_or)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}
