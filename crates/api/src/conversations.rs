//! Conversations: one account's thread with one peer address.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::messages::Message;
use crate::{ConversationId, MessageId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Conversation {
    pub id: ConversationId,
    /// The normalised peer address.
    pub peer: String,
    pub last_message: Option<Message>,
    /// Inbound messages after the read marker.
    pub unread: u32,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ConversationPage {
    /// Most recently updated first.
    pub conversations: Vec<Conversation>,
}

/// `GET /v1/conversations` and `GET /v1/conversations/{id}/messages`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// 1–200, default 50.
    #[serde(default)]
    pub limit: Option<u32>,
    /// For conversations: an RFC 3339 `updated_at` to page before; for messages: a message id.
    #[serde(default)]
    pub before: Option<String>,
}

/// `POST /v1/conversations/{id}/read`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct MarkRead {
    pub up_to: MessageId,
}
