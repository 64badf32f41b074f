//! Replication: the per-account event log a device mirrors.
//!
//! `seq` is strictly increasing per account and becomes visible in order, so a device that
//! stores the `next` it was given and passes it back as `after` never skips an event. Applying
//! an event twice changes nothing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::contacts::Contact;
use crate::conversations::Conversation;
use crate::messages::Message;
use crate::{ConversationId, MessageId, SendStatus};

/// `GET /v1/sync?after=&limit=`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct SyncQuery {
    /// The last seq this device has applied; 0 for a new device.
    #[serde(default)]
    pub after: Option<i64>,
    /// 1–1,000, default 500.
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SyncPage {
    /// Oldest first.
    pub events: Vec<SyncEvent>,
    /// The seq of the last event returned (`after` when none): pass it back as `after`.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub next: i64,
    /// Whether more events follow `next`.
    pub more: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SyncEvent {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub seq: i64,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened. Serialised with its `type` beside `seq`: `{"seq": 7, "type": "message.created", "message": {…}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "type")]
pub enum EventKind {
    #[serde(rename = "message.created")]
    MessageCreated { message: Message },
    #[serde(rename = "message.status")]
    MessageStatus {
        message_id: MessageId,
        conversation_id: ConversationId,
        status: SendStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failure_reason: Option<String>,
        updated_at: DateTime<Utc>,
    },
    #[serde(rename = "message.deleted")]
    MessageDeleted {
        message_id: MessageId,
        conversation_id: ConversationId,
    },
    #[serde(rename = "conversation.read")]
    ConversationRead {
        conversation_id: ConversationId,
        up_to: MessageId,
        unread: u32,
    },
    #[serde(rename = "contact.updated")]
    ContactUpdated { contact: Contact },
    /// The account deleted the conversation and every message in it (on every device).
    #[serde(rename = "conversation.deleted")]
    ConversationDeleted { conversation_id: ConversationId },
    /// The conversation's name, archived flag or mute changed; it carries the whole of it.
    #[serde(rename = "conversation.updated")]
    ConversationUpdated { conversation: Conversation },
    /// The account deleted its setting for this (normalised) address; its conversation stays.
    #[serde(rename = "contact.deleted")]
    ContactDeleted { address: String },
    /// An event type this client does not know (a newer gateway); skip it.
    #[serde(other)]
    #[cfg_attr(feature = "ts", ts(skip))]
    Unknown,
}

impl EventKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::MessageCreated { .. } => "message.created",
            EventKind::MessageStatus { .. } => "message.status",
            EventKind::MessageDeleted { .. } => "message.deleted",
            EventKind::ConversationRead { .. } => "conversation.read",
            EventKind::ContactUpdated { .. } => "contact.updated",
            EventKind::ConversationDeleted { .. } => "conversation.deleted",
            EventKind::ConversationUpdated { .. } => "conversation.updated",
            EventKind::ContactDeleted { .. } => "contact.deleted",
            EventKind::Unknown => "unknown",
        }
    }
}

/// What `/v1/stream` sends: the account's log has reached `seq`; pull to catch up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct StreamHint {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub seq: i64,
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_their_type_beside_seq() {
        let event = SyncEvent {
            seq: 7,
            at: chrono::DateTime::UNIX_EPOCH,
            kind: EventKind::MessageDeleted {
                message_id: MessageId(uuid::Uuid::nil()),
                conversation_id: ConversationId(uuid::Uuid::nil()),
            },
        };
        let json = serde_json::to_value(&event).unwrap_or_default();
        assert_eq!(json["seq"], 7);
        assert_eq!(json["type"], "message.deleted");
        let back: Result<SyncEvent, _> = serde_json::from_value(json);
        assert_eq!(back.ok(), Some(event));
    }

    #[test]
    fn unknown_event_types_parse_as_unknown() {
        let json = r#"{"seq": 3, "at": "2026-01-01T00:00:00Z", "type": "call.started", "x": 1}"#;
        let event: Result<SyncEvent, _> = serde_json::from_str(json);
        assert_eq!(event.map(|e| e.kind).ok(), Some(EventKind::Unknown));
    }
}
