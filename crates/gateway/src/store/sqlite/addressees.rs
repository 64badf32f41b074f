//! Addressees on SQLite: the trait's composition of point reads, in one snapshot.

use airtext_api::identities::IdentityKind;
use airtext_api::AccountId;
use airtext_sms::Address;
use async_trait::async_trait;
use rusqlite::{params, Connection};

use super::super::addressees::owner_gone;
use super::super::rows;
use super::super::{AccountRecord, AddresseeStore, StoreResult};
use super::accounts::{account_in, ACCOUNT_BY_USERNAME};
use super::conn::{first_opt_uuid, first_uuid, in_snapshot, one};
use super::identities::VERIFIED_OWNER;
use super::numbers::NUMBER_OWNER;
use super::SqliteStore;

/// [`AddresseeStore::addressee`] on one connection: the same reads as the trait's definition.
fn addressee_in(conn: &Connection, address: &Address) -> StoreResult<Option<AccountRecord>> {
    let verified = |kind: IdentityKind, value: &str| {
        one(
            conn,
            VERIFIED_OWNER,
            params![kind.as_str(), value],
            first_uuid,
        )
    };
    let owner = match address {
        Address::Phone(number) => {
            let did = one(conn, NUMBER_OWNER, params![number], first_opt_uuid)?.flatten();
            match did {
                Some(owner) => Some(owner),
                None => verified(IdentityKind::Phone, number)?,
            }
        }
        Address::ShortCode(_) => None,
        Address::Username(_) => {
            let name = address.username().unwrap_or_default();
            return one(conn, &ACCOUNT_BY_USERNAME, params![name], |row| {
                rows::account(row)
            });
        }
        Address::Email(email) => verified(IdentityKind::Email, email)?,
    };
    let Some(owner) = owner else {
        return Ok(None);
    };
    let owner = AccountId::from(owner);
    account_in(conn, owner)?
        .map(Some)
        .ok_or_else(|| owner_gone(address, owner))
}

#[async_trait]
impl AddresseeStore for SqliteStore {
    async fn addressee(&self, address: &Address) -> StoreResult<Option<AccountRecord>> {
        let address = address.clone();
        self.lookup(move |conn| in_snapshot(conn, |conn| addressee_in(conn, &address)))
            .await
    }

    async fn sender_and_addressee(
        &self,
        sender: AccountId,
        to: &Address,
    ) -> StoreResult<(Option<AccountRecord>, Option<AccountRecord>)> {
        // As every read: a closed store answers nothing, cached or not.
        self.check_open()?;
        if let Some(found) = self.caches.sender_and_addressee(sender, to) {
            return Ok(found);
        }
        let generation = (
            self.caches.senders.generation(),
            self.caches.addressees.generation(),
        );
        let address = to.clone();
        let (from, to_account) = self
            .lookup(move |conn| {
                in_snapshot(conn, |conn| {
                    Ok((account_in(conn, sender)?, addressee_in(conn, &address)?))
                })
            })
            .await?;
        let caches = &self.caches;
        caches.senders.put(sender, from.clone(), generation.0);
        caches
            .addressees
            .put(to.clone(), to_account.clone(), generation.1);
        Ok((from, to_account))
    }
}
