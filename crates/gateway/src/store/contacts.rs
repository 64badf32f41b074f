//! Contacts: an account's settings per address (name, path, fallback).

use airtext_api::contacts::Contact;
use airtext_api::AccountId;
use async_trait::async_trait;

use super::StoreResult;

/// Contacts.
#[async_trait]
pub trait ContactStore: Send + Sync {
    /// Creates or replaces the setting and appends `contact.updated`.
    async fn put_contact(&self, account: AccountId, contact: Contact) -> StoreResult<()>;
    async fn contacts(&self, account: AccountId) -> StoreResult<Vec<Contact>>;
}
