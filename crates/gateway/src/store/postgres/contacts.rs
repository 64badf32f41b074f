//! Contacts on PostgreSQL.

use airtext_api::contacts::Contact;
use airtext_api::sync::EventKind;
use airtext_api::AccountId;
use async_trait::async_trait;

use super::super::rows;
use super::super::{ContactStore, StoreResult};
use super::{closed_or, PostgresStore};

#[async_trait]
impl ContactStore for PostgresStore {
    async fn put_contact(&self, account: AccountId, contact: Contact) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO contacts (account_id, address, path, fallback, name, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (account_id, address) DO UPDATE SET path = excluded.path, \
                 fallback = excluded.fallback, name = excluded.name, \
                 updated_at = excluded.updated_at",
        )
        .bind(account.0)
        .bind(&contact.address)
        .bind(contact.path.as_str())
        .bind(contact.fallback)
        .bind(&contact.name)
        .bind(contact.updated_at)
        .execute(tx.conn())
        .await?;
        let at = contact.updated_at;
        tx.append(account, at, &EventKind::ContactUpdated { contact })
            .await?;
        self.commit(tx).await
    }

    async fn contacts(&self, account: AccountId) -> StoreResult<Vec<Contact>> {
        let found = sqlx::query(
            "SELECT address, path, fallback, name, updated_at FROM contacts \
             WHERE account_id = $1 ORDER BY address",
        )
        .bind(account.0)
        .fetch_all(self.pool()?)
        .await
        .map_err(closed_or)?;
        found.iter().map(rows::contact).collect()
    }
}
