//! Messages on PostgreSQL: deliveries (each copy one statement), statuses, deletion.

use airtext_api::messages::{Direction, Message};
use airtext_api::sync::EventKind;
use airtext_api::{AccountId, ConversationId, MessageId, SendStatus};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnection;
use uuid::Uuid;

use super::super::rows::{self, corrupt, Cols};
use super::super::rules;
use super::super::{
    Delivered, Delivery, MessageStore, NewMessage, StatusOutcome, StatusUpdate, StoreError,
    StoreResult,
};
use super::{closed_or, PostgresStore, Tx};

/// Stores one copy of a message, finding or creating its `(account, peer)` conversation and
/// recording the copy as its newest message, in one statement (one round trip; the
/// conversation row stays locked until commit). The conversation's id, or `None` when the
/// copy's `(account, client_id)` already exists (the caller then rolls the transaction back,
/// conversation update included).
async fn store_copy(conn: &mut PgConnection, copy: &NewMessage) -> StoreResult<Option<Uuid>> {
    let unread = i64::from(copy.direction == Direction::Inbound);
    let conversation: Option<Uuid> = sqlx::query_scalar(
        "WITH c AS ( \
             INSERT INTO conversations (id, account_id, peer, last_message_id, updated_at, \
                                        unread) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (account_id, peer) DO UPDATE SET \
                 last_message_id = excluded.last_message_id, \
                 updated_at = greatest(conversations.updated_at, excluded.updated_at), \
                 unread = conversations.unread + excluded.unread, \
                 archived = conversations.archived AND $16 \
             RETURNING id) \
         INSERT INTO messages (id, account_id, conversation_id, direction, from_addr, to_addr, \
                               body, status, route, client_id, encoding, segments, \
                               created_at, updated_at) \
         SELECT $4, $2, c.id, $7, $8, $9, $10, $11, $12, $13, $14, $15, $5, $5 FROM c \
         ON CONFLICT (account_id, client_id) DO NOTHING \
         RETURNING conversation_id",
    )
    .bind(ConversationId::new().0)
    .bind(copy.account_id.0)
    .bind(&copy.peer)
    .bind(copy.id.0)
    .bind(copy.created_at)
    .bind(unread)
    .bind(copy.direction.as_str())
    .bind(&copy.from)
    .bind(&copy.to)
    .bind(&copy.body)
    .bind(copy.status.as_str())
    .bind(copy.route.as_str())
    .bind(copy.client_id.map(|c| c.0))
    .bind(copy.encoding.as_str())
    .bind(i64::from(copy.segments))
    .bind(rules::stays_archived(copy.direction))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(conversation)
}

async fn message_by_client_id(
    conn: &mut PgConnection,
    copy: &NewMessage,
) -> StoreResult<Option<Message>> {
    let Some(client_id) = copy.client_id else {
        return Ok(None);
    };
    let row = sqlx::query(&format!(
        "SELECT {} FROM messages m WHERE m.account_id = $1 AND m.client_id = $2",
        rows::MESSAGE_COLUMNS
    ))
    .bind(copy.account_id.0)
    .bind(client_id.0)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(rows::message).transpose()
}

/// Applies a status report through `SendStatus::advance` (locking the message row). `None`
/// when the message does not exist.
pub(super) async fn apply_status(
    tx: &mut Tx,
    id: MessageId,
    incoming: SendStatus,
    failure_reason: Option<String>,
    at: DateTime<Utc>,
) -> StoreResult<Option<StatusOutcome>> {
    let Some(row) = sqlx::query(&format!(
        "SELECT m.account_id AS owner, {} FROM messages m WHERE m.id = $1 FOR UPDATE",
        rows::MESSAGE_COLUMNS
    ))
    .bind(id.0)
    .fetch_optional(tx.conn())
    .await?
    else {
        return Ok(None);
    };
    let account: AccountId = row.uuid("owner")?.into();
    let mut message = rows::message(&row)?;
    let Some(change) = rules::status_change(
        message.status,
        message.failure_reason.clone(),
        incoming,
        failure_reason,
    ) else {
        return Ok(Some(StatusOutcome {
            message,
            changed: false,
        }));
    };
    sqlx::query(
        "UPDATE messages SET status = $2, failure_reason = $3, updated_at = $4 WHERE id = $1",
    )
    .bind(id.0)
    .bind(change.status.as_str())
    .bind(&change.failure_reason)
    .bind(at)
    .execute(tx.conn())
    .await?;
    message.status = change.status;
    message.failure_reason.clone_from(&change.failure_reason);
    message.updated_at = at;
    let event = change.into_event(message.id, message.conversation_id, at);
    tx.append(account, at, &event).await?;
    Ok(Some(StatusOutcome {
        message,
        changed: true,
    }))
}

#[async_trait]
impl MessageStore for PostgresStore {
    async fn deliver(&self, delivery: Delivery) -> StoreResult<Delivered> {
        // No read for an earlier send first: a repeat is rare, and the unique index finds it
        // (committed, or committing beside us) in the same statement that stores the copy.
        let mut tx = self.begin().await?;
        // Copies (each locking its conversation row) in a fixed order, so two texts crossing
        // between the same accounts never lock each other's rows in opposite orders.
        let mut copies: Vec<(bool, &NewMessage)> = Vec::with_capacity(2);
        if let Some(copy) = &delivery.sender {
            copies.push((true, copy));
        }
        // Checked inside the write (a block stored before this text is never missed).
        let mut recipient_copy = None;
        if let Some(copy) = &delivery.recipient {
            let (account, addresses) = rules::blocked_by(copy);
            let blocked: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM contacts \
                 WHERE account_id = $1 AND address IN ($2, $3) AND blocked",
            )
            .bind(account.0)
            .bind(addresses[0])
            .bind(addresses[1])
            .fetch_optional(tx.conn())
            .await?;
            if blocked.is_none() {
                copies.push((false, copy));
                recipient_copy = Some(copy);
            }
        }
        copies.sort_by(|a, b| (a.1.account_id, &a.1.peer).cmp(&(b.1.account_id, &b.1.peer)));
        let mut sender = None;
        let mut recipient = None;
        for (is_sender, copy) in copies {
            let Some(conversation) = store_copy(tx.conn(), copy).await? else {
                if !is_sender {
                    return Err(corrupt("recipient copy repeats a client_id"));
                }
                // A repeat: drop our work and answer with the first send's message.
                tx.tx.rollback().await?;
                let mut conn = self.pool()?.acquire().await.map_err(closed_or)?;
                let first = message_by_client_id(&mut conn, copy)
                    .await?
                    .ok_or_else(|| corrupt("client_id conflict without a message"))?;
                return Ok(Delivered {
                    sender: Some(first),
                    recipient: None,
                    created: false,
                });
            };
            let stored = Some(rows::stored_message(copy, conversation.into()));
            if is_sender {
                sender = stored;
            } else {
                recipient = stored;
            }
        }
        let opt_out = rules::opt_out_to_check(&delivery);
        if let (Some(enqueue), Some(copy)) = (&delivery.enqueue, &delivery.sender) {
            // The opt-out check rides on the insert: no round trip of its own.
            let queued = sqlx::query(
                "INSERT INTO outbound (message_id, account_id, from_addr, to_addr, body, \
                                       attempts, not_before, lease_until, created_at) \
                 SELECT $1, $2, $3, $4, $5, 0, $6, $7, $6 \
                 WHERE NOT EXISTS (SELECT 1 FROM opt_outs WHERE did = $8 AND remote = $9)",
            )
            .bind(copy.id.0)
            .bind(copy.account_id.0)
            .bind(&copy.from)
            .bind(&copy.to)
            .bind(&copy.body)
            .bind(copy.created_at)
            .bind(enqueue.leased_until)
            .bind(opt_out.map(|(did, _)| did))
            .bind(opt_out.map(|(_, remote)| remote))
            .execute(tx.conn())
            .await?;
            if queued.rows_affected() == 0 {
                tx.tx.rollback().await?;
                return Err(StoreError::OptedOut);
            }
        }
        // Log rows last and in account order (see the module doc); within one account the
        // sender's copy first.
        let mut appends: Vec<(AccountId, u8, &NewMessage, &Message)> = Vec::with_capacity(2);
        if let (Some(copy), Some(message)) = (&delivery.sender, &sender) {
            appends.push((copy.account_id, 0, copy, message));
        }
        if let (Some(copy), Some(message)) = (recipient_copy, &recipient) {
            appends.push((copy.account_id, 1, copy, message));
        }
        appends.sort_by_key(|(account, order, _, _)| (*account, *order));
        for (account, _, copy, message) in appends {
            tx.append(
                account,
                copy.created_at,
                &EventKind::MessageCreated {
                    message: message.clone(),
                },
            )
            .await?;
        }
        self.commit(tx).await?;
        Ok(Delivered {
            sender,
            recipient,
            created: true,
        })
    }

    async fn message(&self, account: AccountId, id: MessageId) -> StoreResult<Option<Message>> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM messages m WHERE m.id = $1 AND m.account_id = $2",
            rows::MESSAGE_COLUMNS
        ))
        .bind(id.0)
        .bind(account.0)
        .fetch_optional(self.pool()?)
        .await
        .map_err(closed_or)?;
        row.as_ref().map(rows::message).transpose()
    }

    async fn update_status(&self, update: StatusUpdate) -> StoreResult<StatusOutcome> {
        let mut tx = self.begin().await?;
        let outcome = apply_status(
            &mut tx,
            update.message_id,
            update.status,
            update.failure_reason,
            update.at,
        )
        .await?
        .ok_or(StoreError::NotFound)?;
        self.commit(tx).await?;
        Ok(outcome)
    }

    async fn messages(
        &self,
        account: AccountId,
        conversation: ConversationId,
        limit: u32,
        before: Option<MessageId>,
    ) -> StoreResult<Vec<Message>> {
        let found = sqlx::query(&format!(
            "SELECT {} FROM messages m \
             WHERE m.conversation_id = $1 AND m.account_id = $2 \
               AND ($3::uuid IS NULL OR m.id < $3) \
             ORDER BY m.id DESC LIMIT $4",
            rows::MESSAGE_COLUMNS
        ))
        .bind(conversation.0)
        .bind(account.0)
        .bind(before.map(|b| b.0))
        .bind(i64::from(limit))
        .fetch_all(self.pool()?)
        .await
        .map_err(closed_or)?;
        found.iter().map(rows::message).collect()
    }

    async fn search_messages(
        &self,
        account: AccountId,
        words: &[String],
        limit: u32,
        before: Option<MessageId>,
    ) -> StoreResult<Vec<Message>> {
        if let Some(before) = before {
            let known: Option<Uuid> =
                sqlx::query_scalar("SELECT id FROM messages WHERE id = $1 AND account_id = $2")
                    .bind(before.0)
                    .bind(account.0)
                    .fetch_optional(self.pool()?)
                    .await
                    .map_err(closed_or)?;
            if known.is_none() {
                return Err(StoreError::NotFound);
            }
        }
        // Letters and digits only (rules::search_words): nothing here is tsquery syntax.
        let query = words
            .iter()
            .enumerate()
            .map(|(i, word)| {
                if i + 1 == words.len() {
                    format!("{word}:*")
                } else {
                    word.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" & ");
        let found = sqlx::query(&format!(
            "SELECT {} FROM messages m \
             WHERE m.account_id = $1 AND m.search @@ to_tsquery('simple', $2) \
               AND ($3::uuid IS NULL OR m.id < $3) \
             ORDER BY m.id DESC LIMIT $4",
            rows::MESSAGE_COLUMNS
        ))
        .bind(account.0)
        .bind(query)
        .bind(before.map(|b| b.0))
        .bind(i64::from(limit))
        .fetch_all(self.pool()?)
        .await
        .map_err(closed_or)?;
        found.iter().map(rows::message).collect()
    }

    async fn delete_message(
        &self,
        account: AccountId,
        id: MessageId,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let conversation: Uuid = sqlx::query_scalar(
            "DELETE FROM messages WHERE id = $1 AND account_id = $2 RETURNING conversation_id",
        )
        .bind(id.0)
        .bind(account.0)
        .fetch_optional(tx.conn())
        .await?
        .ok_or(StoreError::NotFound)?;
        sqlx::query(
            "UPDATE conversations c SET \
                 last_message_id = (SELECT m.id FROM messages m WHERE m.conversation_id = $1 \
                                    ORDER BY m.id DESC LIMIT 1), \
                 unread = (SELECT count(*) FROM messages m WHERE m.conversation_id = $1 \
                           AND m.direction = 'inbound' \
                           AND (c.read_up_to IS NULL OR m.id > c.read_up_to)) \
             WHERE c.id = $1",
        )
        .bind(conversation)
        .execute(tx.conn())
        .await?;
        // The log forgets the message too: what it logged of it becomes a tombstone.
        let tombstone = rules::tombstone(id, conversation.into());
        sqlx::query(
            "UPDATE events SET type = $3, payload = $4 WHERE account_id = $1 AND message_id = $2",
        )
        .bind(account.0)
        .bind(id.0)
        .bind(tombstone.type_name())
        .bind(rows::event_payload(&tombstone)?)
        .execute(tx.conn())
        .await?;
        tx.append(account, at, &tombstone).await?;
        self.commit(tx).await
    }
}
