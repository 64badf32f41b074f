//! Contacts on SQLite.

use airtext_api::contacts::Contact;
use airtext_api::sync::EventKind;
use airtext_api::AccountId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

use super::super::rows::{self, micros};
use super::super::{ContactStore, StoreError, StoreResult};
use super::conn::{all, blob, run};
use super::writer::{self, append, Effects, Out};
use super::SqliteStore;

/// The writes of contacts the writer runs.
#[derive(Debug)]
pub(super) enum Op {
    PutContact {
        account: AccountId,
        contact: Contact,
    },
    DeleteContact {
        account: AccountId,
        address: String,
        at: DateTime<Utc>,
    },
}

impl Op {
    /// See [`writer::Op::changes_accounts`]: no catch-all arm.
    pub(super) fn changes_accounts(&self) -> bool {
        match self {
            Op::PutContact { .. } | Op::DeleteContact { .. } => false,
        }
    }
}

impl From<Op> for writer::Op {
    fn from(op: Op) -> Self {
        writer::Op::Contacts(op)
    }
}

/// Runs one write in the writer's open transaction.
pub(super) fn execute(conn: &Connection, op: &Op, fx: &mut Effects<'_>) -> StoreResult<Out> {
    match *op {
        Op::PutContact {
            account,
            ref contact,
        } => put_contact(conn, fx, account, contact),
        Op::DeleteContact {
            account,
            ref address,
            at,
        } => delete_contact(conn, fx, account, address, at),
    }
}

fn put_contact(
    conn: &Connection,
    fx: &mut Effects<'_>,
    account: AccountId,
    contact: &Contact,
) -> StoreResult<Out> {
    run(
        conn,
        "INSERT INTO contacts (account_id, address, path, fallback, name, blocked, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (account_id, address) DO UPDATE SET path = excluded.path, \
             fallback = excluded.fallback, name = excluded.name, \
             blocked = excluded.blocked, updated_at = excluded.updated_at",
        params![
            blob(&account.0),
            contact.address,
            contact.path.as_str(),
            contact.fallback,
            contact.name,
            contact.blocked,
            micros(contact.updated_at)
        ],
    )?;
    let at = contact.updated_at;
    append(
        conn,
        fx,
        account,
        at,
        &EventKind::ContactUpdated {
            contact: contact.clone(),
        },
    )?;
    Ok(Out::Done)
}

fn delete_contact(
    conn: &Connection,
    fx: &mut Effects<'_>,
    account: AccountId,
    address: &str,
    at: DateTime<Utc>,
) -> StoreResult<Out> {
    let removed = run(
        conn,
        "DELETE FROM contacts WHERE account_id = ?1 AND address = ?2",
        params![blob(&account.0), address],
    )?;
    if removed == 0 {
        return Err(StoreError::NotFound);
    }
    append(
        conn,
        fx,
        account,
        at,
        &EventKind::ContactDeleted {
            address: address.to_owned(),
        },
    )?;
    Ok(Out::Done)
}

#[async_trait]
impl ContactStore for SqliteStore {
    async fn put_contact(&self, account: AccountId, contact: Contact) -> StoreResult<()> {
        self.write_done(Op::PutContact { account, contact }).await
    }

    async fn contacts(&self, account: AccountId) -> StoreResult<Vec<Contact>> {
        self.scan(move |conn| {
            all(
                conn,
                "SELECT address, path, fallback, name, blocked, updated_at FROM contacts \
                 WHERE account_id = ?1 ORDER BY address",
                params![blob(&account.0)],
                |row| rows::contact(row),
            )
        })
        .await
    }

    async fn delete_contact(
        &self,
        account: AccountId,
        address: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.write_done(Op::DeleteContact {
            account,
            address: address.to_owned(),
            at,
        })
        .await
    }
}
