//! Identities on PostgreSQL.

use airtext_api::identities::IdentityKind;
use airtext_api::{AccountId, IdentityId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::super::rows::{self, Cols};
use super::super::rules;
use super::super::{IdentityRecord, IdentityStore, NewIdentityCode, StoreError, StoreResult};
use super::{closed_or, PostgresStore};

#[async_trait]
impl IdentityStore for PostgresStore {
    async fn put_identity_code(&self, code: NewIdentityCode) -> StoreResult<IdentityId> {
        // A verification racing this claim is checked again by `mark_verified`.
        let owner = self.verified_owner(code.kind, &code.value).await?;
        rules::may_claim_identity(code.account_id, code.kind, owner)?;
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO identities (id, account_id, kind, value, status, code_hash, \
                                     code_expires_at, attempts, created_at) \
             VALUES ($1, $2, $3, $4, 'pending', $5, $6, 0, $7) \
             ON CONFLICT (account_id, kind, value) DO UPDATE SET \
                 code_hash = excluded.code_hash, code_expires_at = excluded.code_expires_at, \
                 attempts = 0 \
             RETURNING id",
        )
        .bind(code.id.0)
        .bind(code.account_id.0)
        .bind(code.kind.as_str())
        .bind(&code.value)
        .bind(&code.code_hash)
        .bind(code.expires_at)
        .bind(code.now)
        .fetch_one(self.pool()?)
        .await
        .map_err(closed_or)?;
        Ok(id.into())
    }

    async fn identity(
        &self,
        account: AccountId,
        id: IdentityId,
    ) -> StoreResult<Option<IdentityRecord>> {
        let row = sqlx::query("SELECT * FROM identities WHERE id = $1 AND account_id = $2")
            .bind(id.0)
            .bind(account.0)
            .fetch_optional(self.pool()?)
            .await
            .map_err(closed_or)?;
        row.as_ref().map(rows::identity).transpose()
    }

    async fn identities(&self, account: AccountId) -> StoreResult<Vec<IdentityRecord>> {
        let found =
            sqlx::query("SELECT * FROM identities WHERE account_id = $1 ORDER BY created_at, id")
                .bind(account.0)
                .fetch_all(self.pool()?)
                .await
                .map_err(closed_or)?;
        found.iter().map(rows::identity).collect()
    }

    async fn count_failed_attempt(&self, account: AccountId, id: IdentityId) -> StoreResult<u32> {
        let attempts: Option<i64> = sqlx::query_scalar(
            "UPDATE identities SET attempts = attempts + 1 WHERE id = $1 AND account_id = $2 \
             RETURNING attempts",
        )
        .bind(id.0)
        .bind(account.0)
        .fetch_optional(self.pool()?)
        .await
        .map_err(closed_or)?;
        rows::to_u32(attempts.ok_or(StoreError::NotFound)?, "attempts")
    }

    async fn mark_verified(
        &self,
        account: AccountId,
        id: IdentityId,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let row =
            sqlx::query("SELECT kind, value FROM identities WHERE id = $1 AND account_id = $2")
                .bind(id.0)
                .bind(account.0)
                .fetch_optional(tx.conn())
                .await?
                .ok_or(StoreError::NotFound)?;
        let kind = row.text("kind")?;
        let value = row.text("value")?;
        let parsed = IdentityKind::parse(&kind)
            .ok_or_else(|| rows::corrupt(format!("identity kind {kind:?}")))?;
        // Verifications of one value take turns, so the second sees the first's owner.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("identity:{kind}:{value}"))
            .execute(tx.conn())
            .await?;
        let owner: Option<Uuid> = sqlx::query_scalar(
            "SELECT account_id FROM identities \
             WHERE kind = $1 AND value = $2 AND status = 'verified'",
        )
        .bind(&kind)
        .bind(&value)
        .fetch_optional(tx.conn())
        .await?;
        rules::may_claim_identity(account, parsed, owner.map(Into::into))?;
        sqlx::query(
            "UPDATE identities SET status = 'verified', code_hash = NULL, \
                 code_expires_at = NULL, attempts = 0, verified_at = $2 \
             WHERE id = $1",
        )
        .bind(id.0)
        .bind(at)
        .execute(tx.conn())
        .await?;
        self.commit(tx).await
    }

    async fn remove_identity(&self, account: AccountId, id: IdentityId) -> StoreResult<()> {
        let removed = sqlx::query("DELETE FROM identities WHERE id = $1 AND account_id = $2")
            .bind(id.0)
            .bind(account.0)
            .execute(self.pool()?)
            .await
            .map_err(closed_or)?;
        if removed.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn verified_owner(
        &self,
        kind: IdentityKind,
        value: &str,
    ) -> StoreResult<Option<AccountId>> {
        let owner: Option<Uuid> = sqlx::query_scalar(
            "SELECT account_id FROM identities \
             WHERE kind = $1 AND value = $2 AND status = 'verified'",
        )
        .bind(kind.as_str())
        .bind(value)
        .fetch_optional(self.pool()?)
        .await
        .map_err(closed_or)?;
        Ok(owner.map(Into::into))
    }
}
