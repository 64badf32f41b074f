//! Conversations on SQLite.

use airtext_api::conversations::{Conversation, PatchConversation};
use airtext_api::sync::EventKind;
use airtext_api::{AccountId, ConversationId, MessageId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

use super::super::rows::{self, micros};
use super::super::rules;
use super::super::{ConversationStore, StoreError, StoreResult};
use super::conn::{all, blob, first_int, first_opt_uuid, first_uuid, one, run};
use super::writer::{self, append, Effects, Out};
use super::SqliteStore;

/// The writes of conversations the writer runs.
#[derive(Debug)]
pub(super) enum Op {
    MarkRead {
        account: AccountId,
        conversation: ConversationId,
        up_to: MessageId,
        at: DateTime<Utc>,
    },
    DeleteConversation {
        account: AccountId,
        conversation: ConversationId,
        at: DateTime<Utc>,
    },
    UpdateConversation {
        account: AccountId,
        conversation: ConversationId,
        patch: PatchConversation,
        at: DateTime<Utc>,
    },
}

impl Op {
    /// See [`writer::Op::changes_accounts`]: no catch-all arm.
    pub(super) fn changes_accounts(&self) -> bool {
        match self {
            Op::MarkRead { .. } | Op::DeleteConversation { .. } | Op::UpdateConversation { .. } => {
                false
            }
        }
    }
}

impl From<Op> for writer::Op {
    fn from(op: Op) -> Self {
        writer::Op::Conversations(op)
    }
}

/// Runs one write in the writer's open transaction.
pub(super) fn execute(conn: &Connection, op: &Op, fx: &mut Effects<'_>) -> StoreResult<Out> {
    match *op {
        Op::MarkRead {
            account,
            conversation,
            up_to,
            at,
        } => mark_read(conn, fx, account, conversation, up_to, at),
        Op::DeleteConversation {
            account,
            conversation,
            at,
        } => delete_conversation(conn, fx, account, conversation, at),
        Op::UpdateConversation {
            account,
            conversation,
            ref patch,
            at,
        } => update_conversation(conn, fx, account, conversation, patch, at),
    }
}

fn update_conversation(
    conn: &Connection,
    fx: &mut Effects<'_>,
    account: AccountId,
    conversation: ConversationId,
    patch: &PatchConversation,
    at: DateTime<Utc>,
) -> StoreResult<Out> {
    let current = one(
        conn,
        &format!(
            "SELECT {} FROM conversations c \
             LEFT JOIN messages m ON m.id = c.last_message_id \
             WHERE c.id = ?1 AND c.account_id = ?2",
            rows::CONVERSATION_COLUMNS
        ),
        params![blob(&conversation.0), blob(&account.0)],
        |row| rows::conversation(row),
    )?
    .ok_or(StoreError::NotFound)?;
    let updated = rules::patched_conversation(current, patch);
    run(
        conn,
        "UPDATE conversations SET name = ?2, archived = ?3, muted_until = ?4 WHERE id = ?1",
        params![
            blob(&conversation.0),
            updated.name,
            updated.archived,
            updated.muted_until.map(micros)
        ],
    )?;
    let event = EventKind::ConversationUpdated {
        conversation: updated.clone(),
    };
    append(conn, fx, account, at, &event)?;
    Ok(Out::Conversation(Box::new(updated)))
}

fn delete_conversation(
    conn: &Connection,
    fx: &mut Effects<'_>,
    account: AccountId,
    conversation: ConversationId,
    at: DateTime<Utc>,
) -> StoreResult<Out> {
    one(
        conn,
        "SELECT 1 FROM conversations WHERE id = ?1 AND account_id = ?2",
        params![blob(&conversation.0), blob(&account.0)],
        |_| Ok(()),
    )?
    .ok_or(StoreError::NotFound)?;
    let messages = all(
        conn,
        "SELECT id FROM messages WHERE conversation_id = ?1 AND account_id = ?2",
        params![blob(&conversation.0), blob(&account.0)],
        first_uuid,
    )?;
    // The log forgets every message too: what it logged of each becomes a tombstone.
    for id in messages {
        let tombstone = rules::tombstone(MessageId::from(id), conversation);
        run(
            conn,
            "UPDATE events SET type = ?3, payload = ?4 WHERE account_id = ?1 AND message_id = ?2",
            params![
                blob(&account.0),
                blob(&id),
                tombstone.type_name(),
                rows::event_payload(&tombstone)?
            ],
        )?;
    }
    run(
        conn,
        "DELETE FROM messages WHERE conversation_id = ?1 AND account_id = ?2",
        params![blob(&conversation.0), blob(&account.0)],
    )?;
    run(
        conn,
        "DELETE FROM conversations WHERE id = ?1 AND account_id = ?2",
        params![blob(&conversation.0), blob(&account.0)],
    )?;
    let event = EventKind::ConversationDeleted {
        conversation_id: conversation,
    };
    append(conn, fx, account, at, &event)?;
    Ok(Out::Done)
}

fn mark_read(
    conn: &Connection,
    fx: &mut Effects<'_>,
    account: AccountId,
    conversation: ConversationId,
    up_to: MessageId,
    at: DateTime<Utc>,
) -> StoreResult<Out> {
    let current = one(
        conn,
        "SELECT read_up_to FROM conversations WHERE id = ?1 AND account_id = ?2",
        params![blob(&conversation.0), blob(&account.0)],
        first_opt_uuid,
    )?
    .ok_or(StoreError::NotFound)?
    .map(MessageId::from);
    let in_conversation = one(
        conn,
        "SELECT 1 FROM messages WHERE id = ?1 AND account_id = ?2 AND conversation_id = ?3",
        params![blob(&up_to.0), blob(&account.0), blob(&conversation.0)],
        |_| Ok(()),
    )?;
    if in_conversation.is_none() {
        return Err(StoreError::NotFound);
    }
    // Ids are UUIDv7: byte order is time order, the same order SQLite compares blobs in.
    let marker = rules::read_marker(current, up_to);
    let unread = one(
        conn,
        // SET expressions see the row's old values, so the count uses the new marker (?2).
        "UPDATE conversations SET read_up_to = ?2, \
             unread = (SELECT count(*) FROM messages \
                       WHERE conversation_id = ?1 AND direction = 'inbound' AND id > ?2) \
         WHERE id = ?1 RETURNING unread",
        params![blob(&conversation.0), blob(&marker.0)],
        first_int,
    )?
    .ok_or(StoreError::NotFound)?;
    let event = rules::read_event(conversation, marker, rows::to_u32(unread, "unread")?);
    append(conn, fx, account, at, &event)?;
    Ok(Out::Done)
}

#[async_trait]
impl ConversationStore for SqliteStore {
    async fn conversations(
        &self,
        account: AccountId,
        limit: u32,
        before: Option<DateTime<Utc>>,
    ) -> StoreResult<Vec<Conversation>> {
        self.scan(move |conn| {
            all(
                conn,
                &format!(
                    "SELECT {} FROM conversations c \
                     LEFT JOIN messages m ON m.id = c.last_message_id \
                     WHERE c.account_id = ?1 AND (?2 IS NULL OR c.updated_at < ?2) \
                     ORDER BY c.updated_at DESC, c.id DESC LIMIT ?3",
                    rows::CONVERSATION_COLUMNS
                ),
                params![blob(&account.0), before.map(micros), i64::from(limit)],
                |row| rows::conversation(row),
            )
        })
        .await
    }

    async fn conversation(
        &self,
        account: AccountId,
        id: ConversationId,
    ) -> StoreResult<Option<Conversation>> {
        self.read(move |conn| {
            one(
                conn,
                &format!(
                    "SELECT {} FROM conversations c \
                     LEFT JOIN messages m ON m.id = c.last_message_id \
                     WHERE c.id = ?1 AND c.account_id = ?2",
                    rows::CONVERSATION_COLUMNS
                ),
                params![blob(&id.0), blob(&account.0)],
                |row| rows::conversation(row),
            )
        })
        .await
    }

    async fn mark_read(
        &self,
        account: AccountId,
        conversation: ConversationId,
        up_to: MessageId,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.write_done(Op::MarkRead {
            account,
            conversation,
            up_to,
            at,
        })
        .await
    }

    async fn delete_conversation(
        &self,
        account: AccountId,
        conversation: ConversationId,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.write_done(Op::DeleteConversation {
            account,
            conversation,
            at,
        })
        .await
    }

    async fn update_conversation(
        &self,
        account: AccountId,
        conversation: ConversationId,
        patch: PatchConversation,
        at: DateTime<Utc>,
    ) -> StoreResult<Conversation> {
        let op = Op::UpdateConversation {
            account,
            conversation,
            patch,
            at,
        };
        match self.write(op).await? {
            Out::Conversation(updated) => Ok(*updated),
            other => Err(super::unexpected(&other)),
        }
    }
}
