//! The number inventory on SQLite.

use airtext_api::AccountId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

use super::super::rows::{micros, Cols};
use super::super::rules;
use super::super::{
    BoughtNumber, Conflict, InventoryNumber, NumberSearch, NumberStore, StoreError, StoreResult,
};
use super::conn::{all, blob, first_opt_uuid, one, run};
use super::writer::{self, Effects, Out};
use super::{unexpected, SqliteStore};

/// The writes of the number inventory the writer runs.
#[derive(Debug)]
pub(super) enum Op {
    AddInventory(Vec<InventoryNumber>),
    ClaimNumber {
        account: AccountId,
        number: String,
        now: DateTime<Utc>,
    },
    ReleaseNumber {
        account: AccountId,
        number: String,
        available_at: DateTime<Utc>,
    },
    AddBoughtNumber {
        number: InventoryNumber,
        carrier_sid: String,
    },
    /// Holds one number found due for giving back (answers `Count(0)` when it no longer is).
    HoldToGiveBack {
        number: BoughtNumber,
        now: DateTime<Utc>,
        hold_until: DateTime<Utc>,
    },
    ForgetGivenBack(BoughtNumber),
}

impl Op {
    /// See [`writer::Op::changes_accounts`]: no catch-all arm.
    pub(super) fn changes_accounts(&self) -> bool {
        match self {
            Op::AddInventory(_)
            | Op::ClaimNumber { .. }
            | Op::ReleaseNumber { .. }
            | Op::AddBoughtNumber { .. }
            | Op::HoldToGiveBack { .. }
            | Op::ForgetGivenBack(_) => true,
        }
    }
}

impl From<Op> for writer::Op {
    fn from(op: Op) -> Self {
        writer::Op::Numbers(op)
    }
}

/// Runs one write in the writer's open transaction.
pub(super) fn execute(conn: &Connection, op: &Op, _fx: &mut Effects<'_>) -> StoreResult<Out> {
    match *op {
        Op::AddInventory(ref numbers) => add_inventory(conn, numbers),
        Op::ClaimNumber {
            account,
            ref number,
            now,
        } => claim_number(conn, account, number, now),
        Op::ReleaseNumber {
            account,
            ref number,
            available_at,
        } => release_number(conn, account, number, available_at),
        Op::AddBoughtNumber {
            ref number,
            ref carrier_sid,
        } => {
            run(
                conn,
                "INSERT INTO numbers (number, carrier, country, owner, available_at, carrier_sid) \
                 VALUES (?1, ?2, ?3, NULL, 0, ?4) \
                 ON CONFLICT (number) DO UPDATE SET carrier = excluded.carrier, \
                   carrier_sid = excluded.carrier_sid",
                params![number.number, number.carrier, number.country, carrier_sid],
            )?;
            Ok(Out::Done)
        }
        Op::HoldToGiveBack {
            ref number,
            now,
            hold_until,
        } => {
            let held = run(
                conn,
                "UPDATE numbers SET available_at = ?4 \
                 WHERE number = ?1 AND carrier_sid = ?2 AND owner IS NULL AND available_at <= ?3",
                params![
                    number.number,
                    number.carrier_sid,
                    micros(now),
                    micros(hold_until)
                ],
            )?;
            Ok(Out::Count(u32::try_from(held).unwrap_or(u32::MAX)))
        }
        Op::ForgetGivenBack(ref number) => {
            let gone = run(
                conn,
                "DELETE FROM numbers WHERE number = ?1 AND carrier_sid = ?2 AND owner IS NULL",
                params![number.number, number.carrier_sid],
            )?;
            Ok(Out::Count(u32::try_from(gone).unwrap_or(u32::MAX)))
        }
    }
}

fn add_inventory(conn: &Connection, numbers: &[InventoryNumber]) -> StoreResult<Out> {
    for n in numbers {
        run(
            conn,
            "INSERT INTO numbers (number, carrier, country, owner, available_at) \
             VALUES (?1, ?2, ?3, NULL, 0) ON CONFLICT (number) DO NOTHING",
            params![n.number, n.carrier, n.country],
        )?;
    }
    Ok(Out::Done)
}

fn claim_number(
    conn: &Connection,
    account: AccountId,
    number: &str,
    now: DateTime<Utc>,
) -> StoreResult<Out> {
    let (owner, available_at) = one(
        conn,
        "SELECT owner, available_at FROM numbers WHERE number = ?1",
        params![number],
        |row| Ok((row.opt_uuid("owner")?, row.int("available_at")?)),
    )?
    .ok_or(StoreError::NotFound)?;
    rules::may_claim_number(account, owner.map(AccountId), available_at > micros(now))?;
    let has = one(
        conn,
        "SELECT 1 FROM numbers WHERE owner = ?1",
        params![blob(&account.0)],
        |_| Ok(()),
    )?;
    if has.is_some() {
        return Err(StoreError::Conflict(Conflict::AlreadyHasNumber));
    }
    run(
        conn,
        "UPDATE numbers SET owner = ?1 WHERE number = ?2 AND owner IS NULL",
        params![blob(&account.0), number],
    )?;
    Ok(Out::Done)
}

fn release_number(
    conn: &Connection,
    account: AccountId,
    number: &str,
    available_at: DateTime<Utc>,
) -> StoreResult<Out> {
    let released = run(
        conn,
        "UPDATE numbers SET owner = NULL, available_at = ?3 WHERE number = ?1 AND owner = ?2",
        params![number, blob(&account.0), micros(available_at)],
    )?;
    if released == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(Out::Done)
}

pub(super) const NUMBER_OWNER: &str = "SELECT owner FROM numbers WHERE number = ?1";

#[async_trait]
impl NumberStore for SqliteStore {
    async fn add_inventory(&self, numbers: &[InventoryNumber]) -> StoreResult<()> {
        self.write_done(Op::AddInventory(numbers.to_vec())).await
    }

    async fn available_numbers(&self, search: NumberSearch) -> StoreResult<Vec<String>> {
        self.scan(move |conn| {
            let prefix = search.prefix.unwrap_or_default();
            all(
                conn,
                "SELECT number FROM numbers \
                 WHERE country = ?1 AND owner IS NULL AND available_at <= ?2 \
                   AND substr(number, 1, length(?3)) = ?3 \
                 ORDER BY number LIMIT ?4",
                params![
                    search.country,
                    micros(search.now),
                    prefix,
                    i64::from(search.limit)
                ],
                |row| row.text("number"),
            )
        })
        .await
    }

    async fn claim_number(
        &self,
        account: AccountId,
        number: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.write_done(Op::ClaimNumber {
            account,
            number: number.to_owned(),
            now,
        })
        .await
    }

    async fn release_number(
        &self,
        account: AccountId,
        number: &str,
        available_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.write_done(Op::ReleaseNumber {
            account,
            number: number.to_owned(),
            available_at,
        })
        .await
    }

    async fn number_owner(&self, number: &str) -> StoreResult<Option<AccountId>> {
        let number = number.to_owned();
        let owner = self
            .lookup(move |conn| one(conn, NUMBER_OWNER, params![number], first_opt_uuid))
            .await?;
        Ok(owner.flatten().map(Into::into))
    }

    async fn number_carrier(&self, number: &str) -> StoreResult<Option<String>> {
        let number = number.to_owned();
        self.lookup(move |conn| {
            one(
                conn,
                "SELECT carrier FROM numbers WHERE number = ?1",
                params![number],
                |row| row.text("carrier"),
            )
        })
        .await
    }

    async fn add_bought_number(
        &self,
        number: &InventoryNumber,
        carrier_sid: &str,
    ) -> StoreResult<()> {
        self.write_done(Op::AddBoughtNumber {
            number: number.clone(),
            carrier_sid: carrier_sid.to_owned(),
        })
        .await
    }

    async fn hold_numbers_to_give_back(
        &self,
        carrier: &str,
        now: DateTime<Utc>,
        hold_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<BoughtNumber>> {
        let carrier = carrier.to_owned();
        // Found on a reader, then each held by the one writer only if it is still due.
        let due = self
            .scan(move |conn| {
                all(
                    conn,
                    "SELECT number, carrier_sid FROM numbers \
                     WHERE carrier = ?1 AND carrier_sid IS NOT NULL AND owner IS NULL \
                       AND available_at <= ?2 \
                     ORDER BY available_at, number LIMIT ?3",
                    params![carrier, micros(now), i64::from(limit)],
                    |row| {
                        Ok(BoughtNumber {
                            number: row.text("number")?,
                            carrier_sid: row.text("carrier_sid")?,
                        })
                    },
                )
            })
            .await?;
        let mut held = Vec::with_capacity(due.len());
        for number in due {
            let op = Op::HoldToGiveBack {
                number: number.clone(),
                now,
                hold_until,
            };
            match self.write(op).await? {
                Out::Count(0) => {}
                Out::Count(_) => held.push(number),
                other => return Err(unexpected(&other)),
            }
        }
        Ok(held)
    }

    async fn forget_given_back_number(&self, number: &str, carrier_sid: &str) -> StoreResult<bool> {
        let op = Op::ForgetGivenBack(BoughtNumber {
            number: number.to_owned(),
            carrier_sid: carrier_sid.to_owned(),
        });
        match self.write(op).await? {
            Out::Count(n) => Ok(n > 0),
            other => Err(unexpected(&other)),
        }
    }
}
