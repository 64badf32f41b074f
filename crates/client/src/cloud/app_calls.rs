//! The calls the app needs beyond the CLI's: the gateway's health check (when a person types a
//! gateway address), revoking another device, the read marker and deleting a message.

use airtext_api::conversations::{Conversation, MarkRead, PatchConversation};
use airtext_api::{ConversationId, DeviceId, MessageId};
use reqwest::Method;

use super::Cloud;
use crate::error::Result;

impl Cloud {
    /// `GET /healthz`: succeeds when the gateway answers and its store works.
    pub async fn healthz(&self) -> Result<()> {
        self.send(Method::GET, self.url(&["healthz"])?, None)
            .await
            .map(drop)
    }

    /// `DELETE /v1/devices/{id}`: that device's token stops working at once.
    pub async fn revoke_device(&self, id: DeviceId) -> Result<()> {
        let id = id.to_string();
        self.send(Method::DELETE, self.url(&["v1", "devices", &id])?, None)
            .await
            .map(drop)
    }

    /// `POST /v1/conversations/{id}/read`: read up to and including `up_to`.
    pub async fn mark_read(&self, conversation: ConversationId, up_to: MessageId) -> Result<()> {
        let id = conversation.to_string();
        self.send(
            Method::POST,
            self.url(&["v1", "conversations", &id, "read"])?,
            Some(&MarkRead { up_to }),
        )
        .await
        .map(drop)
    }

    /// `DELETE /v1/messages/{id}`: deleted on every device of the account (by sync).
    pub async fn delete_message(&self, id: MessageId) -> Result<()> {
        let id = id.to_string();
        self.send(Method::DELETE, self.url(&["v1", "messages", &id])?, None)
            .await
            .map(drop)
    }

    pub async fn delete_conversation(&self, id: ConversationId) -> Result<()> {
        let id = id.to_string();
        self.send(
            Method::DELETE,
            self.url(&["v1", "conversations", &id])?,
            None,
        )
        .await
        .map(drop)
    }

    /// `PATCH /v1/conversations/{id}`: name, archive or mute, for every device (by sync).
    pub async fn update_conversation(
        &self,
        id: ConversationId,
        patch: &PatchConversation,
    ) -> Result<Conversation> {
        let id = id.to_string();
        self.json(
            Method::PATCH,
            self.url(&["v1", "conversations", &id])?,
            Some(patch),
        )
        .await
    }
}
