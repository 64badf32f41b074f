//! Contacts: an account's settings per address (name, path, fallback, blocked).
//!
//! A blocked address's texts reach no device of the account: [`super::MessageStore::deliver`]
//! drops the account's copy in the same write, so a block stored before a text is never missed.

use airtext_api::contacts::Contact;
use airtext_api::AccountId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;

/// Contacts.
#[async_trait]
pub trait ContactStore: Send + Sync {
    /// Creates or replaces the setting and appends `contact.updated`.
    async fn put_contact(&self, account: AccountId, contact: Contact) -> StoreResult<()>;
    async fn contacts(&self, account: AccountId) -> StoreResult<Vec<Contact>>;
    /// Deletes the setting (its conversation stays) and appends `contact.deleted`;
    /// `NotFound` when the account has none for `address`.
    async fn delete_contact(
        &self,
        account: AccountId,
        address: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
}
