//! Conversations on PostgreSQL.

use airtext_api::conversations::{Conversation, PatchConversation};
use airtext_api::sync::EventKind;
use airtext_api::{AccountId, ConversationId, MessageId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::super::rows;
use super::super::rules;
use super::super::{ConversationStore, StoreError, StoreResult};
use super::{closed_or, PostgresStore};

#[async_trait]
impl ConversationStore for PostgresStore {
    async fn conversations(
        &self,
        account: AccountId,
        limit: u32,
        before: Option<DateTime<Utc>>,
    ) -> StoreResult<Vec<Conversation>> {
        let found = sqlx::query(&format!(
            "SELECT {} FROM conversations c LEFT JOIN messages m ON m.id = c.last_message_id \
             WHERE c.account_id = $1 AND ($2::timestamptz IS NULL OR c.updated_at < $2) \
             ORDER BY c.updated_at DESC, c.id DESC LIMIT $3",
            rows::CONVERSATION_COLUMNS
        ))
        .bind(account.0)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(self.pool()?)
        .await
        .map_err(closed_or)?;
        found.iter().map(rows::conversation).collect()
    }

    async fn conversation(
        &self,
        account: AccountId,
        id: ConversationId,
    ) -> StoreResult<Option<Conversation>> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM conversations c LEFT JOIN messages m ON m.id = c.last_message_id \
             WHERE c.id = $1 AND c.account_id = $2",
            rows::CONVERSATION_COLUMNS
        ))
        .bind(id.0)
        .bind(account.0)
        .fetch_optional(self.pool()?)
        .await
        .map_err(closed_or)?;
        row.as_ref().map(rows::conversation).transpose()
    }

    async fn mark_read(
        &self,
        account: AccountId,
        conversation: ConversationId,
        up_to: MessageId,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let in_conversation: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM messages WHERE id = $1 AND account_id = $2 AND conversation_id = $3",
        )
        .bind(up_to.0)
        .bind(account.0)
        .bind(conversation.0)
        .fetch_optional(tx.conn())
        .await?;
        if in_conversation.is_none() {
            return Err(StoreError::NotFound);
        }
        let current: Option<Uuid> = sqlx::query_scalar(
            "SELECT read_up_to FROM conversations WHERE id = $1 AND account_id = $2 FOR UPDATE",
        )
        .bind(conversation.0)
        .bind(account.0)
        .fetch_optional(tx.conn())
        .await?
        .ok_or(StoreError::NotFound)?;
        let marker = rules::read_marker(current.map(MessageId), up_to);
        // The count uses the new marker ($2), since SET expressions see the row's old values.
        let unread: i64 = sqlx::query_scalar(
            "UPDATE conversations SET read_up_to = $2, \
                 unread = (SELECT count(*) FROM messages m WHERE m.conversation_id = $1 \
                           AND m.direction = 'inbound' AND m.id > $2) \
             WHERE id = $1 RETURNING unread",
        )
        .bind(conversation.0)
        .bind(marker.0)
        .fetch_one(tx.conn())
        .await?;
        let event = rules::read_event(conversation, marker, rows::to_u32(unread, "unread")?);
        tx.append(account, at, &event).await?;
        self.commit(tx).await
    }

    async fn delete_conversation(
        &self,
        account: AccountId,
        conversation: ConversationId,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        // Locks the row, so a delivery into this conversation waits for the deletion.
        let found: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM conversations WHERE id = $1 AND account_id = $2 FOR UPDATE",
        )
        .bind(conversation.0)
        .bind(account.0)
        .fetch_optional(tx.conn())
        .await?;
        if found.is_none() {
            return Err(StoreError::NotFound);
        }
        let messages: Vec<Uuid> = sqlx::query_scalar(
            "DELETE FROM messages WHERE conversation_id = $1 AND account_id = $2 RETURNING id",
        )
        .bind(conversation.0)
        .bind(account.0)
        .fetch_all(tx.conn())
        .await?;
        // The log forgets every message too: what it logged of each becomes a tombstone.
        for id in messages {
            let tombstone = rules::tombstone(MessageId::from(id), conversation);
            sqlx::query(
                "UPDATE events SET type = $3, payload = $4 \
                 WHERE account_id = $1 AND message_id = $2",
            )
            .bind(account.0)
            .bind(id)
            .bind(tombstone.type_name())
            .bind(rows::event_payload(&tombstone)?)
            .execute(tx.conn())
            .await?;
        }
        sqlx::query("DELETE FROM conversations WHERE id = $1 AND account_id = $2")
            .bind(conversation.0)
            .bind(account.0)
            .execute(tx.conn())
            .await?;
        let event = EventKind::ConversationDeleted {
            conversation_id: conversation,
        };
        tx.append(account, at, &event).await?;
        self.commit(tx).await
    }

    async fn update_conversation(
        &self,
        account: AccountId,
        conversation: ConversationId,
        patch: PatchConversation,
        at: DateTime<Utc>,
    ) -> StoreResult<Conversation> {
        let mut tx = self.begin().await?;
        // Locks the row, so two patches apply one after the other.
        let row = sqlx::query(&format!(
            "SELECT {} FROM conversations c LEFT JOIN messages m ON m.id = c.last_message_id \
             WHERE c.id = $1 AND c.account_id = $2 FOR UPDATE OF c",
            rows::CONVERSATION_COLUMNS
        ))
        .bind(conversation.0)
        .bind(account.0)
        .fetch_optional(tx.conn())
        .await?
        .ok_or(StoreError::NotFound)?;
        let updated = rules::patched_conversation(rows::conversation(&row)?, &patch);
        sqlx::query(
            "UPDATE conversations SET name = $2, archived = $3, muted_until = $4 WHERE id = $1",
        )
        .bind(conversation.0)
        .bind(&updated.name)
        .bind(updated.archived)
        .bind(updated.muted_until)
        .execute(tx.conn())
        .await?;
        let event = EventKind::ConversationUpdated {
            conversation: updated.clone(),
        };
        tx.append(account, at, &event).await?;
        self.commit(tx).await?;
        Ok(updated)
    }
}
