//! Contacts on PostgreSQL.

use airtext_api::contacts::Contact;
use airtext_api::sync::EventKind;
use airtext_api::AccountId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::super::rows;
use super::super::{ContactStore, StoreError, StoreResult};
use super::{closed_or, PostgresStore};

#[async_trait]
impl ContactStore for PostgresStore {
    async fn put_contact(&self, account: AccountId, contact: Contact) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO contacts (account_id, address, path, fallback, name, blocked, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (account_id, address) DO UPDATE SET path = excluded.path, \
                 fallback = excluded.fallback, name = excluded.name, \
                 blocked = excluded.blocked, updated_at = excluded.updated_at",
        )
        .bind(account.0)
        .bind(&contact.address)
        .bind(contact.path.as_str())
        .bind(contact.fallback)
        .bind(&contact.name)
        .bind(contact.blocked)
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
            "SELECT address, path, fallback, name, blocked, updated_at FROM contacts \
             WHERE account_id = $1 ORDER BY address",
        )
        .bind(account.0)
        .fetch_all(self.pool()?)
        .await
        .map_err(closed_or)?;
        found.iter().map(rows::contact).collect()
    }

    async fn delete_contact(
        &self,
        account: AccountId,
        address: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let removed = sqlx::query("DELETE FROM contacts WHERE account_id = $1 AND address = $2")
            .bind(account.0)
            .bind(address)
            .execute(tx.conn())
            .await?;
        if removed.rows_affected() == 0 {
            tx.tx.rollback().await?;
            return Err(StoreError::NotFound);
        }
        let event = EventKind::ContactDeleted {
            address: address.to_owned(),
        };
        tx.append(account, at, &event).await?;
        self.commit(tx).await
    }
}
