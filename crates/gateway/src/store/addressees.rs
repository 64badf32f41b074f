//! Where an address leads in-network: the account behind a DID, a verified phone or e-mail
//! address, or a username. Composed of the point reads of [`AccountStore`], [`NumberStore`]
//! and [`IdentityStore`]; an engine may answer in one go, but must agree with the
//! definitions here.

use airtext_api::identities::IdentityKind;
use airtext_api::AccountId;
use airtext_sms::Address;
use async_trait::async_trait;

use super::{AccountRecord, AccountStore, IdentityStore, NumberStore, StoreError, StoreResult};

/// Addressees of sends.
#[async_trait]
pub trait AddresseeStore: AccountStore + NumberStore + IdentityStore {
    /// The account an address leads to in-network, if any: for a phone number the owner of
    /// that DID, else the account that verified it; for `@username` that account; for an
    /// e-mail address the account that verified it; for a short code none. A lookup (on
    /// SQLite it does not wait for the disk), as [`AccountStore::account`].
    ///
    /// Engines may read it in one go; this composition of the point reads above is the
    /// definition every engine must agree with.
    async fn addressee(&self, address: &Address) -> StoreResult<Option<AccountRecord>> {
        let owner = match address {
            Address::Phone(number) => match self.number_owner(number).await? {
                Some(owner) => Some(owner),
                None => self.verified_owner(IdentityKind::Phone, number).await?,
            },
            Address::ShortCode(_) => None,
            Address::Username(_) => {
                let name = address.username().unwrap_or_default();
                return self.account_by_username(name).await;
            }
            Address::Email(email) => self.verified_owner(IdentityKind::Email, email).await?,
        };
        match owner {
            None => Ok(None),
            Some(owner) => self
                .account(owner)
                .await?
                .map(Some)
                .ok_or_else(|| owner_gone(address, owner)),
        }
    }

    /// What a send reads before it writes: the sender's account and
    /// [`AddresseeStore::addressee`] of `to`, together (SQLite reads both in one snapshot, so
    /// a send costs one read transaction instead of three or four).
    async fn sender_and_addressee(
        &self,
        sender: AccountId,
        to: &Address,
    ) -> StoreResult<(Option<AccountRecord>, Option<AccountRecord>)> {
        Ok((self.account(sender).await?, self.addressee(to).await?))
    }
}

/// An address whose DID or verified identity names an account that no longer exists.
/// Accounts are never deleted while they hold either, so this is the store's inconsistency.
pub(crate) fn owner_gone(address: &Address, owner: AccountId) -> StoreError {
    StoreError::Corrupt(format!(
        "{address} belongs to account {owner}, which is gone"
    ))
}
