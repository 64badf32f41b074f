//! Typed change notifications: what the app turns into UI updates and desktop notifications,
//! and what `airtext watch` prints. Sent on a `tokio::sync::broadcast` channel by
//! [`crate::Client::subscribe`]; a slow listener that lags loses old notifications, never the
//! data (the cache has it all).

use airtext_api::contacts::Contact;
use airtext_api::MessageId;
use serde::{Deserialize, Serialize};

use crate::cache::conversations::CachedConversation;
use crate::cache::messages::CachedMessage;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientEvent {
    /// A message this device did not have (received, or sent from another device or here).
    MessageAdded {
        message: CachedMessage,
    },
    /// A message changed: its status moved, or the server copy completed a local one.
    MessageUpdated {
        message: CachedMessage,
    },
    MessageDeleted {
        id: MessageId,
    },
    /// A conversation's last message, unread count or order changed.
    ConversationChanged {
        conversation: CachedConversation,
    },
    ContactChanged {
        contact: Contact,
    },
    /// Sync progress: events applied so far in this run, and how many remain when known (from
    /// the stream's hint).
    SyncProgress {
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        applied: u64,
        #[cfg_attr(feature = "ts", ts(type = "number | null"))]
        remaining: Option<u64>,
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        cursor: i64,
    },
    /// The live connection to the gateway came up or went down.
    ConnectionChanged {
        online: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}
