//! Accounts and devices on PostgreSQL.

use airtext_api::{AccountId, DeviceId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::super::rows;
use super::super::rules;
use super::super::{
    AccountRecord, AccountStore, DeviceRecord, NewAccount, NewDevice, ResetCodeRecord, SignOut,
    StoreError, StoreResult, TokenHash,
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

    async fn set_password(
        &self,
        account: AccountId,
        password_hash: String,
        sign_out: SignOut,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let changed = sqlx::query("UPDATE accounts SET password_hash = $2 WHERE id = $1")
            .bind(account.0)
            .bind(&password_hash)
            .execute(tx.conn())
            .await?;
        if changed.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let signed_out = match sign_out {
            SignOut::Everyone => {
                Some(sqlx::query("DELETE FROM devices WHERE account_id = $1").bind(account.0))
            }
            SignOut::AllBut(keep) => Some(
                sqlx::query("DELETE FROM devices WHERE account_id = $1 AND id <> $2")
                    .bind(account.0)
                    .bind(keep.0),
            ),
            SignOut::Nobody => None,
        };
        if let Some(query) = signed_out {
            query.execute(tx.conn()).await?;
        }
        sqlx::query("DELETE FROM password_resets WHERE account_id = $1")
            .bind(account.0)
            .execute(tx.conn())
            .await?;
        self.commit(tx).await
    }

    async fn put_reset_code(&self, code: ResetCodeRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO password_resets (account_id, code_hash, expires_at, attempts) \
             VALUES ($1, $2, $3, 0) \
             ON CONFLICT (account_id) DO UPDATE SET \
                 code_hash = excluded.code_hash, expires_at = excluded.expires_at, attempts = 0",
        )
        .bind(code.account_id.0)
        .bind(&code.code_hash)
        .bind(code.expires_at)
        .execute(self.pool()?)
        .await
        .map_err(closed_or)?;
        Ok(())
    }

    async fn reset_code(&self, account: AccountId) -> StoreResult<Option<ResetCodeRecord>> {
        let row = sqlx::query(
            "SELECT account_id, code_hash, expires_at, attempts FROM password_resets \
             WHERE account_id = $1",
        )
        .bind(account.0)
        .fetch_optional(self.pool()?)
        .await
        .map_err(closed_or)?;
        row.as_ref().map(rows::reset_code).transpose()
    }

    async fn count_failed_reset(&self, account: AccountId) -> StoreResult<u32> {
        let attempts: i64 = sqlx::query_scalar(
            "UPDATE password_resets SET attempts = attempts + 1 WHERE account_id = $1 \
             RETURNING attempts",
        )
        .bind(account.0)
        .fetch_optional(self.pool()?)
        .await
        .map_err(closed_or)?
        .ok_or(StoreError::NotFound)?;
        rows::to_u32(attempts, "attempts")
    }

    async fn delete_account(
        &self,
        account: AccountId,
        number_available_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        // Locks the account's log row first: a concurrent write appending to this log waits,
        // then finds no row and fails, instead of leaving an event behind.
        let locked: Option<i64> =
            sqlx::query_scalar("SELECT last_seq FROM account_log WHERE account_id = $1 FOR UPDATE")
                .bind(account.0)
                .fetch_optional(tx.conn())
                .await?;
        if locked.is_none() {
            return Err(StoreError::NotFound);
        }
        for table in super::super::accounts::ACCOUNT_TABLES {
            sqlx::query(&format!("DELETE FROM {table} WHERE account_id = $1"))
                .bind(account.0)
                .execute(tx.conn())
                .await?;
        }
        sqlx::query("UPDATE numbers SET owner = NULL, available_at = $2 WHERE owner = $1")
            .bind(account.0)
            .bind(number_available_at)
            .execute(tx.conn())
            .await?;
        sqlx::query("DELETE FROM accounts WHERE id = $1")
            .bind(account.0)
            .execute(tx.conn())
            .await?;
        self.commit(tx).await
    }
}
