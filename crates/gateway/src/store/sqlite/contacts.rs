//! Contacts on SQLite.

use airtext_api::contacts::Contact;
use airtext_api::sync::EventKind;
use airtext_api::AccountId;
use async_trait::async_trait;
use rusqlite::{params, Connection};

use super::super::rows::{self, micros};
use super::super::{ContactStore, StoreResult};
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
}

impl Op {
    /// See [`writer::Op::changes_accounts`]: no catch-all arm.
    pub(super) fn changes_accounts(&self) -> bool {
        match self {
            Op::PutContact { .. } => false,
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
        "INSERT INTO contacts (account_id, address, path, fallback, name, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (account_id, address) DO UPDATE SET path = excluded.path, \
             fallback = excluded.fallback, name = excluded.name, \
             updated_at = excluded.updated_at",
        params![
            blob(&account.0),
            contact.address,
            contact.path.as_str(),
            contact.fallback,
            contact.name,
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

#[async_trait]
impl ContactStore for SqliteStore {
    async fn put_contact(&self, account: AccountId, contact: Contact) -> StoreResult<()> {
        self.write_done(Op::PutContact { account, contact }).await
    }

    async fn contacts(&self, account: AccountId) -> StoreResult<Vec<Contact>> {
        self.scan(move |conn| {
            all(
                conn,
                "SELECT address, path, fallback, name, updated_at FROM contacts \
                 WHERE account_id = ?1 ORDER BY address",
                params![blob(&account.0)],
                |row| rows::contact(row),
            )
        })
        .await
    }
}
