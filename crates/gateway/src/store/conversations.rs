//! Conversations: one per `(account, peer)`, with its newest message and read marker.

use airtext_api::conversations::{Conversation, PatchConversation};
use airtext_api::{AccountId, ConversationId, MessageId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;

/// Conversations.
#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// Most recently updated first; `before` is an exclusive `updated_at` bound.
    async fn conversations(
        &self,
        account: AccountId,
        limit: u32,
        before: Option<DateTime<Utc>>,
    ) -> StoreResult<Vec<Conversation>>;
    async fn conversation(
        &self,
        account: AccountId,
        id: ConversationId,
    ) -> StoreResult<Option<Conversation>>;
    /// Moves the read marker forward to `up_to` (never back: [`super::rules::read_marker`])
    /// and appends `conversation.read` ([`super::rules::read_event`]). `NotFound` if the
    /// conversation or the message (in it) is not this account's.
    async fn mark_read(
        &self,
        account: AccountId,
        conversation: ConversationId,
        up_to: MessageId,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Deletes the conversation and every message in it, this account's copies only (the
    /// peer keeps theirs; contacts stay). Every logged event of those messages becomes a
    /// tombstone ([`super::rules::tombstone`]) and `conversation.deleted` is appended.
    /// `NotFound` if the conversation is not this account's.
    async fn delete_conversation(
        &self,
        account: AccountId,
        conversation: ConversationId,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Applies `patch` (name, archived, mute; see [`super::rules::patched_conversation`]) and
    /// appends `conversation.updated` carrying the whole conversation, which it returns.
    /// `NotFound` if the conversation is not this account's.
    async fn update_conversation(
        &self,
        account: AccountId,
        conversation: ConversationId,
        patch: PatchConversation,
        at: DateTime<Utc>,
    ) -> StoreResult<Conversation>;
}
