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
    /// The account's own name for the conversation; without one, the peer is shown.
    #[serde(default)]
    pub name: Option<String>,
    /// Hidden from the list until un-archived; a new inbound message un-archives it.
    #[serde(default)]
    pub archived: bool,
    /// No notification before this time; 9999-12-31T23:59:59Z ([`muted_always`]) mutes for good.
    #[serde(default)]
    pub muted_until: Option<DateTime<Utc>>,
}

/// The `muted_until` that means "muted until unmuted": 9999-12-31T23:59:59Z.
pub fn muted_always() -> DateTime<Utc> {
    DateTime::from_timestamp(253_402_300_799, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The longest conversation name, in characters.
pub const NAME_MAX_CHARS: usize = 100;

impl Conversation {
    /// Whether a notification for a message arriving at `now` stays silent.
    pub fn is_muted(&self, now: DateTime<Utc>) -> bool {
        self.muted_until.is_some_and(|until| until > now)
    }
}

/// `PATCH /v1/conversations/{id}`: each field given replaces the stored one; an absent field
/// stays. `name: ""` or `name: null` clears the name, `muted_until: null` unmutes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct PatchConversation {
    /// At most 100 characters, no control characters; `""` or `null` clears it.
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "ts", ts(optional, type = "string | null"))]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub name: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub archived: Option<bool>,
    /// RFC 3339; `9999-12-31T23:59:59Z` mutes for good; `null` unmutes.
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "ts", ts(optional, type = "string | null"))]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<DateTime<Utc>>))]
    pub muted_until: Option<Option<DateTime<Utc>>>,
}

/// An absent field is `None`, an explicit `null` is `Some(None)`.
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        value: &Option<Option<T>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(inner) => inner.serialize(serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(deserializer).map(Some)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn muted_always_is_the_last_second_of_9999() {
        assert_eq!(muted_always().to_rfc3339(), "9999-12-31T23:59:59+00:00");
    }

    #[test]
    fn a_patch_tells_absent_from_null() -> Result<(), serde_json::Error> {
        let patch: PatchConversation = serde_json::from_str(r#"{"name":null}"#)?;
        assert_eq!(patch.name, Some(None));
        assert_eq!(patch.muted_until, None);
        let patch: PatchConversation = serde_json::from_str(r#"{"archived":true}"#)?;
        assert_eq!(patch.name, None);
        assert_eq!(patch.archived, Some(true));
        assert!(serde_json::from_str::<PatchConversation>(r#"{"mute":1}"#).is_err());
        Ok(())
    }

    #[test]
    fn an_older_peers_conversation_parses() -> Result<(), serde_json::Error> {
        let old = r#"{"id":"0190f5c2-0000-7000-8000-000000000000","peer":"@bob",
            "last_message":null,"unread":0,"updated_at":"2026-01-01T00:00:00Z"}"#;
        let conversation: Conversation = serde_json::from_str(old)?;
        assert!(!conversation.archived);
        assert_eq!(conversation.name, None);
        assert_eq!(conversation.muted_until, None);
        Ok(())
    }
}
