//! Accounts and devices on SQLite: their reads, and their writes in the writer thread.

use std::sync::LazyLock;

use airtext_api::{AccountId, DeviceId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

use super::super::rows::{self, micros};
use super::super::rules;
use super::super::{
    AccountRecord, AccountStore, DeviceRecord, NewAccount, NewDevice, ResetCodeRecord, SignOut,
    StoreError, StoreResult, TokenHash,
};
use super::conn::{self, all, blob, one, run};
use super::writer::{self, Effects, Out};
use super::SqliteStore;

/// The writes of accounts and devices the writer runs.
#[derive(Debug)]
pub(super) enum Op {
    CreateAccount(NewAccount),
    CreateDevice(NewDevice),
    TouchDevice {
        id: DeviceId,
        now: DateTime<Utc>,
    },
    RevokeDevice {
        account: AccountId,
        device: DeviceId,
    },
    SetPassword {
        account: AccountId,
        password_hash: String,
        sign_out: SignOut,
    },
    PutResetCode(ResetCodeRecord),
    CountFailedReset(AccountId),
    DeleteAccount {
        account: AccountId,
        number_available_at: DateTime<Utc>,
    },
}

impl Op {
    /// See [`writer::Op::changes_accounts`]: no catch-all arm.
    pub(super) fn changes_accounts(&self) -> bool {
        match self {
            Op::CreateAccount(_) | Op::DeleteAccount { .. } => true,
            Op::CreateDevice(_)
            | Op::TouchDevice { .. }
            | Op::RevokeDevice { .. }
            | Op::SetPassword { .. }
            | Op::PutResetCode(_)
            | Op::CountFailedReset(_) => false,
        }
    }

    /// The account whose devices this write signs out (more than one, so the cache forgets
    /// every cached token of the account).
    pub(super) fn signs_out_account(&self) -> Option<AccountId> {
        match self {
            Op::SetPassword { account, .. } | Op::DeleteAccount { account, .. } => Some(*account),
            Op::CreateAccount(_)
            | Op::CreateDevice(_)
            | Op::TouchDevice { .. }
            | Op::RevokeDevice { .. }
            | Op::PutResetCode(_)
            | Op::CountFailedReset(_) => None,
        }
    }
}

impl From<Op> for writer::Op {
    fn from(op: Op) -> Self {
        writer::Op::Accounts(op)
    }
}

/// Runs one write in the writer's open transaction.
pub(super) fn execute(conn: &Connection, op: &Op, fx: &mut Effects<'_>) -> StoreResult<Out> {
    match *op {
        Op::CreateAccount(ref account) => create_account(conn, account),
        Op::CreateDevice(ref device) => create_device(conn, device),
        Op::TouchDevice { id, now } => touch_device(conn, id, now),
        Op::RevokeDevice { account, device } => revoke_device(conn, account, device),
        Op::SetPassword {
            account,
            ref password_hash,
            sign_out,
        } => set_password(conn, account, password_hash, sign_out),
        Op::PutResetCode(ref code) => put_reset_code(conn, code),
        Op::CountFailedReset(account) => count_failed_reset(conn, account),
        Op::DeleteAccount {
            account,
            number_available_at,
        } => delete_account(conn, fx, account, number_available_at),
    }
}

fn account_conflict(error: StoreError) -> StoreError {
    match conn::unique_violation(&error).and_then(rules::account_conflict) {
        Some(conflict) => StoreError::Conflict(conflict),
        None => error,
    }
}

fn create_account(conn: &Connection, account: &NewAccount) -> StoreResult<Out> {
    run(
        conn,
        "INSERT INTO accounts (id, username, email, password_hash, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            blob(&account.id.0),
            account.username,
            account.email,
            account.password_hash,
            micros(account.created_at)
        ],
    )
    .map_err(account_conflict)?;
    run(
        conn,
        "INSERT INTO account_log (account_id, last_seq) VALUES (?1, 0)",
        params![blob(&account.id.0)],
    )?;
    Ok(Out::Done)
}

fn create_device(conn: &Connection, device: &NewDevice) -> StoreResult<Out> {
    run(
        conn,
        "INSERT INTO devices (id, account_id, name, has_cellular, token_hash, created_at, \
                              last_seen_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![
            blob(&device.id.0),
            blob(&device.account_id.0),
            device.name,
            device.has_cellular,
            &device.token_hash.0[..],
            micros(device.created_at)
        ],
    )?;
    Ok(Out::Done)
}

fn touch_device(conn: &Connection, id: DeviceId, now: DateTime<Utc>) -> StoreResult<Out> {
    run(
        conn,
        "UPDATE devices SET last_seen_at = ?2 WHERE id = ?1 AND last_seen_at < ?3",
        params![
            blob(&id.0),
            micros(now),
            micros(rules::last_seen_cutoff(now))
        ],
    )?;
    Ok(Out::Done)
}

fn revoke_device(conn: &Connection, account: AccountId, device: DeviceId) -> StoreResult<Out> {
    let deleted = run(
        conn,
        "DELETE FROM devices WHERE id = ?1 AND account_id = ?2",
        params![blob(&device.0), blob(&account.0)],
    )?;
    if deleted == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(Out::Done)
}

fn set_password(
    conn: &Connection,
    account: AccountId,
    password_hash: &str,
    sign_out: SignOut,
) -> StoreResult<Out> {
    let changed = run(
        conn,
        "UPDATE accounts SET password_hash = ?2 WHERE id = ?1",
        params![blob(&account.0), password_hash],
    )?;
    if changed == 0 {
        return Err(StoreError::NotFound);
    }
    match sign_out {
        SignOut::Everyone => run(
            conn,
            "DELETE FROM devices WHERE account_id = ?1",
            params![blob(&account.0)],
        )?,
        SignOut::AllBut(keep) => run(
            conn,
            "DELETE FROM devices WHERE account_id = ?1 AND id <> ?2",
            params![blob(&account.0), blob(&keep.0)],
        )?,
        SignOut::Nobody => 0,
    };
    run(
        conn,
        "DELETE FROM password_resets WHERE account_id = ?1",
        params![blob(&account.0)],
    )?;
    Ok(Out::Done)
}

fn put_reset_code(conn: &Connection, code: &ResetCodeRecord) -> StoreResult<Out> {
    run(
        conn,
        "INSERT INTO password_resets (account_id, code_hash, expires_at, attempts) \
         VALUES (?1, ?2, ?3, 0) \
         ON CONFLICT (account_id) DO UPDATE SET \
             code_hash = excluded.code_hash, expires_at = excluded.expires_at, attempts = 0",
        params![
            blob(&code.account_id.0),
            code.code_hash,
            micros(code.expires_at)
        ],
    )?;
    Ok(Out::Done)
}

fn count_failed_reset(conn: &Connection, account: AccountId) -> StoreResult<Out> {
    let attempts = one(
        conn,
        "UPDATE password_resets SET attempts = attempts + 1 WHERE account_id = ?1 \
         RETURNING attempts",
        params![blob(&account.0)],
        conn::first_int,
    )?
    .ok_or(StoreError::NotFound)?;
    Ok(Out::Count(rows::to_u32(attempts, "attempts")?))
}

fn delete_account(
    conn: &Connection,
    fx: &mut Effects<'_>,
    account: AccountId,
    number_available_at: DateTime<Utc>,
) -> StoreResult<Out> {
    if account_in(conn, account)?.is_none() {
        return Err(StoreError::NotFound);
    }
    for table in super::super::accounts::ACCOUNT_TABLES {
        run(
            conn,
            &format!("DELETE FROM {table} WHERE account_id = ?1"),
            params![blob(&account.0)],
        )?;
    }
    run(
        conn,
        "UPDATE numbers SET owner = NULL, available_at = ?2 WHERE owner = ?1",
        params![blob(&account.0), micros(number_available_at)],
    )?;
    run(
        conn,
        "DELETE FROM accounts WHERE id = ?1",
        params![blob(&account.0)],
    )?;
    writer::forget_log(fx, account);
    Ok(Out::Done)
}

static ACCOUNT_BY_ID: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM accounts a LEFT JOIN numbers n ON n.owner = a.id WHERE a.id = ?1",
        rows::ACCOUNT_COLUMNS
    )
});

pub(super) fn account_in(conn: &Connection, id: AccountId) -> StoreResult<Option<AccountRecord>> {
    one(conn, &ACCOUNT_BY_ID, params![blob(&id.0)], |row| {
        rows::account(row)
    })
}

pub(super) static ACCOUNT_BY_USERNAME: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM accounts a LEFT JOIN numbers n ON n.owner = a.id WHERE a.username = ?1",
        rows::ACCOUNT_COLUMNS
    )
});

const DEVICE_BY_TOKEN: &str = "SELECT id, account_id, name, has_cellular, created_at, \
     last_seen_at FROM devices WHERE token_hash = ?1";

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_account(&self, account: NewAccount) -> StoreResult<()> {
        self.write_done(Op::CreateAccount(account)).await
    }

    async fn account(&self, id: AccountId) -> StoreResult<Option<AccountRecord>> {
        self.lookup(move |conn| account_in(conn, id)).await
    }

    async fn account_by_username(&self, username: &str) -> StoreResult<Option<AccountRecord>> {
        let username = username.to_owned();
        self.lookup(move |conn| {
            one(conn, &ACCOUNT_BY_USERNAME, params![username], |row| {
                rows::account(row)
            })
        })
        .await
    }

    async fn create_device(&self, device: NewDevice) -> StoreResult<()> {
        self.write_done(Op::CreateDevice(device)).await
    }

    async fn device_by_token(
        &self,
        token: &TokenHash,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<DeviceRecord>> {
        self.check_open()?;
        let generation = self.caches.devices.generation();
        let device = match self.caches.device(token) {
            Some(device) => device,
            None => {
                let hash = token.0;
                let found = self
                    .lookup(move |conn| {
                        one(conn, DEVICE_BY_TOKEN, params![&hash[..]], |row| {
                            rows::device(row)
                        })
                    })
                    .await?;
                let Some(device) = found else {
                    return Ok(None);
                };
                self.caches.devices.put(token.0, device.clone(), generation);
                device
            }
        };
        if rules::last_seen_is_stale(device.last_seen_at, now) {
            self.write_done(Op::TouchDevice { id: device.id, now })
                .await?;
            let device = DeviceRecord {
                last_seen_at: now,
                ..device
            };
            self.caches.devices.put(token.0, device.clone(), generation);
            return Ok(Some(device));
        }
        Ok(Some(device))
    }

    async fn devices(&self, account: AccountId) -> StoreResult<Vec<DeviceRecord>> {
        self.scan(move |conn| {
            all(
                conn,
                "SELECT id, account_id, name, has_cellular, created_at, last_seen_at \
                 FROM devices WHERE account_id = ?1 ORDER BY created_at, id",
                params![blob(&account.0)],
                |row| rows::device(row),
            )
        })
        .await
    }

    async fn revoke_device(&self, account: AccountId, device: DeviceId) -> StoreResult<()> {
        // The writer evicts the device's cached tokens right after the COMMIT.
        self.write_done(Op::RevokeDevice { account, device }).await
    }

    async fn set_password(
        &self,
        account: AccountId,
        password_hash: String,
        sign_out: SignOut,
    ) -> StoreResult<()> {
        self.write_done(Op::SetPassword {
            account,
            password_hash,
            sign_out,
        })
        .await
    }

    async fn put_reset_code(&self, code: ResetCodeRecord) -> StoreResult<()> {
        self.write_done(Op::PutResetCode(code)).await
    }

    async fn reset_code(&self, account: AccountId) -> StoreResult<Option<ResetCodeRecord>> {
        self.read(move |conn| {
            one(
                conn,
                "SELECT account_id, code_hash, expires_at, attempts FROM password_resets \
                 WHERE account_id = ?1",
                params![blob(&account.0)],
                |row| rows::reset_code(row),
            )
        })
        .await
    }

    async fn count_failed_reset(&self, account: AccountId) -> StoreResult<u32> {
        match self.write(Op::CountFailedReset(account)).await? {
            Out::Count(n) => Ok(n),
            other => Err(super::unexpected(&other)),
        }
    }

    async fn delete_account(
        &self,
        account: AccountId,
        number_available_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.write_done(Op::DeleteAccount {
            account,
            number_available_at,
        })
        .await
    }
}
