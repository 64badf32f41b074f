//! Identities on SQLite.

use airtext_api::identities::IdentityKind;
use airtext_api::{AccountId, IdentityId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

use super::super::rows::{self, micros, Cols};
use super::super::rules;
use super::super::{IdentityRecord, IdentityStore, NewIdentityCode, StoreError, StoreResult};
use super::conn::{all, blob, first_int, first_uuid, one, run};
use super::writer::{self, Effects, Out};
use super::{unexpected, SqliteStore};

/// The writes of identities the writer runs.
#[derive(Debug)]
pub(super) enum Op {
    PutIdentityCode(NewIdentityCode),
    CountFailedAttempt {
        account: AccountId,
        id: IdentityId,
    },
    MarkVerified {
        account: AccountId,
        id: IdentityId,
        at: DateTime<Utc>,
    },
    RemoveIdentity {
        account: AccountId,
        id: IdentityId,
    },
}

impl Op {
    /// See [`writer::Op::changes_accounts`]: no catch-all arm.
    pub(super) fn changes_accounts(&self) -> bool {
        match self {
            Op::PutIdentityCode(_)
            | Op::CountFailedAttempt { .. }
            | Op::MarkVerified { .. }
            | Op::RemoveIdentity { .. } => true,
        }
    }
}

impl From<Op> for writer::Op {
    fn from(op: Op) -> Self {
        writer::Op::Identities(op)
    }
}

/// Runs one write in the writer's open transaction.
pub(super) fn execute(conn: &Connection, op: &Op, _fx: &mut Effects<'_>) -> StoreResult<Out> {
    match *op {
        Op::PutIdentityCode(ref code) => put_identity_code(conn, code),
        Op::CountFailedAttempt { account, id } => count_failed_attempt(conn, account, id),
        Op::MarkVerified { account, id, at } => mark_verified(conn, account, id, at),
        Op::RemoveIdentity { account, id } => {
            let removed = run(
                conn,
                "DELETE FROM identities WHERE id = ?1 AND account_id = ?2",
                params![blob(&id.0), blob(&account.0)],
            )?;
            if removed == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(Out::Done)
        }
    }
}

/// The account that has verified `(kind, value)`, read in the writer's transaction.
fn owner_of(conn: &Connection, kind: &str, value: &str) -> StoreResult<Option<AccountId>> {
    Ok(one(conn, VERIFIED_OWNER, params![kind, value], first_uuid)?.map(Into::into))
}

fn put_identity_code(conn: &Connection, code: &NewIdentityCode) -> StoreResult<Out> {
    let owner = owner_of(conn, code.kind.as_str(), &code.value)?;
    rules::may_claim_identity(code.account_id, code.kind, owner)?;
    let id = one(
        conn,
        "INSERT INTO identities (id, account_id, kind, value, status, code_hash, \
                                 code_expires_at, attempts, created_at) \
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, 0, ?7) \
         ON CONFLICT (account_id, kind, value) DO UPDATE SET \
             code_hash = excluded.code_hash, code_expires_at = excluded.code_expires_at, \
             attempts = 0 \
         RETURNING id",
        params![
            blob(&code.id.0),
            blob(&code.account_id.0),
            code.kind.as_str(),
            code.value,
            code.code_hash,
            micros(code.expires_at),
            micros(code.now)
        ],
        first_uuid,
    )?
    .ok_or_else(|| rows::corrupt("the identity upsert returned no id"))?;
    Ok(Out::Identity(id.into()))
}

fn count_failed_attempt(conn: &Connection, account: AccountId, id: IdentityId) -> StoreResult<Out> {
    let attempts = one(
        conn,
        "UPDATE identities SET attempts = attempts + 1 WHERE id = ?1 AND account_id = ?2 \
         RETURNING attempts",
        params![blob(&id.0), blob(&account.0)],
        first_int,
    )?
    .ok_or(StoreError::NotFound)?;
    Ok(Out::Count(rows::to_u32(attempts, "attempts")?))
}

fn mark_verified(
    conn: &Connection,
    account: AccountId,
    id: IdentityId,
    at: DateTime<Utc>,
) -> StoreResult<Out> {
    let (kind, value) = one(
        conn,
        "SELECT kind, value FROM identities WHERE id = ?1 AND account_id = ?2",
        params![blob(&id.0), blob(&account.0)],
        |row| Ok((row.text("kind")?, row.text("value")?)),
    )?
    .ok_or(StoreError::NotFound)?;
    let parsed = IdentityKind::parse(&kind)
        .ok_or_else(|| rows::corrupt(format!("identity kind {kind:?}")))?;
    rules::may_claim_identity(account, parsed, owner_of(conn, &kind, &value)?)?;
    run(
        conn,
        "UPDATE identities SET status = 'verified', code_hash = NULL, code_expires_at = NULL, \
             attempts = 0, verified_at = ?2 \
         WHERE id = ?1",
        params![blob(&id.0), micros(at)],
    )?;
    Ok(Out::Done)
}

pub(super) const VERIFIED_OWNER: &str = "SELECT account_id FROM identities \
     WHERE kind = ?1 AND value = ?2 AND status = 'verified'";

#[async_trait]
impl IdentityStore for SqliteStore {
    async fn put_identity_code(&self, code: NewIdentityCode) -> StoreResult<IdentityId> {
        match self.write(Op::PutIdentityCode(code)).await? {
            Out::Identity(id) => Ok(id),
            other => Err(unexpected(&other)),
        }
    }

    async fn identity(
        &self,
        account: AccountId,
        id: IdentityId,
    ) -> StoreResult<Option<IdentityRecord>> {
        self.read(move |conn| {
            one(
                conn,
                "SELECT * FROM identities WHERE id = ?1 AND account_id = ?2",
                params![blob(&id.0), blob(&account.0)],
                |row| rows::identity(row),
            )
        })
        .await
    }

    async fn identities(&self, account: AccountId) -> StoreResult<Vec<IdentityRecord>> {
        self.scan(move |conn| {
            all(
                conn,
                "SELECT * FROM identities WHERE account_id = ?1 ORDER BY created_at, id",
                params![blob(&account.0)],
                |row| rows::identity(row),
            )
        })
        .await
    }

    async fn count_failed_attempt(&self, account: AccountId, id: IdentityId) -> StoreResult<u32> {
        match self.write(Op::CountFailedAttempt { account, id }).await? {
            Out::Count(n) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }

    async fn mark_verified(
        &self,
        account: AccountId,
        id: IdentityId,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.write_done(Op::MarkVerified { account, id, at }).await
    }

    async fn remove_identity(&self, account: AccountId, id: IdentityId) -> StoreResult<()> {
        self.write_done(Op::RemoveIdentity { account, id }).await
    }

    async fn verified_owner(
        &self,
        kind: IdentityKind,
        value: &str,
    ) -> StoreResult<Option<AccountId>> {
        let value = value.to_owned();
        let owner = self
            .lookup(move |conn| {
                one(
                    conn,
                    VERIFIED_OWNER,
                    params![kind.as_str(), value],
                    first_uuid,
                )
            })
            .await?;
        Ok(owner.map(Into::into))
    }
}
