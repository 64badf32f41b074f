//! Conversations and message history: `GET /v1/conversations`,
//! `GET /v1/conversations/{id}/messages`, `POST /v1/conversations/{id}/read`,
//! `PATCH /v1/conversations/{id}` (name, archive, mute) and `DELETE /v1/conversations/{id}`.
//!
//! Paging is by keyset, never by offset, so pages stay stable while messages arrive:
//! conversations page by `updated_at` (most recent first, `before` an RFC 3339 time),
//! messages by id (UUIDv7, so by time; newest first, `before` a message id). Another
//! account's conversation is simply not found (404), never an empty page.

use airtext_api::conversations::{
    Conversation, ConversationPage, MarkRead, PageQuery, PatchConversation, NAME_MAX_CHARS,
};
use airtext_api::messages::MessagePage;
use airtext_api::{ConversationId, ErrorBody, MessageId};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery, AuthDevice};
use crate::http::AppState;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_conversations))
        .routes(routes!(list_messages))
        .routes(routes!(mark_read))
        .routes(routes!(update_conversation, delete_conversation))
}

fn page_limit(limit: Option<u32>) -> ApiResult<u32> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::invalid_field(format!(
            "limit must be 1 to {MAX_LIMIT}; got {limit}"
        )))
    }
}

fn before_time(before: Option<&str>) -> ApiResult<Option<DateTime<Utc>>> {
    before
        .map(|text| {
            // An unencoded `+01:00` arrives as ` 01:00` (a `+` in a query string is a space).
            DateTime::parse_from_rfc3339(text)
                .or_else(|e| DateTime::parse_from_rfc3339(&text.replace(' ', "+")).map_err(|_| e))
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::bad_request(format!(
                        "before must be an RFC 3339 time such as 2026-01-31T12:00:00Z (a conversation's updated_at); got {text:?}"
                    ))
                })
        })
        .transpose()
}

fn before_message(before: Option<&str>) -> ApiResult<Option<MessageId>> {
    before
        .map(|text| {
            text.parse::<MessageId>().map_err(|_| {
                ApiError::bad_request(format!(
                    "before must be a message id (a UUID) from the previous page; got {text:?}"
                ))
            })
        })
        .transpose()
}

/// This account's conversations, most recently updated first.
#[utoipa::path(
    get,
    path = "/v1/conversations",
    tag = "conversations",
    operation_id = "list_conversations",
    security(("device_token" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of conversations; pass the last one's `updated_at` as `before` for the next", body = ConversationPage),
        (status = 400, description = "`bad_request` (`before` is not RFC 3339) or `invalid_field` (`limit` outside 1–200)", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
    )
)]
async fn list_conversations(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<ConversationPage>> {
    let limit = page_limit(query.limit)?;
    let before = before_time(query.before.as_deref())?;
    let conversations = state
        .store
        .conversations(auth.account_id, limit, before)
        .await?;
    Ok(Json(ConversationPage { conversations }))
}

/// One conversation's messages, newest first.
#[utoipa::path(
    get,
    path = "/v1/conversations/{id}/messages",
    tag = "conversations",
    operation_id = "list_messages",
    security(("device_token" = [])),
    params(("id" = ConversationId, Path, description = "The conversation"), PageQuery),
    responses(
        (status = 200, description = "A page of messages; pass the last one's `id` as `before` for the next", body = MessagePage),
        (status = 400, description = "`bad_request` (a malformed id) or `invalid_field` (`limit` outside 1–200)", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such conversation in this account", body = ErrorBody),
    )
)]
async fn list_messages(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiPath(id): ApiPath<ConversationId>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<MessagePage>> {
    let limit = page_limit(query.limit)?;
    let before = before_message(query.before.as_deref())?;
    state
        .store
        .conversation(auth.account_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    let messages = state
        .store
        .messages(auth.account_id, id, limit, before)
        .await?;
    Ok(Json(MessagePage { messages }))
}

/// Moves the read marker forward to `up_to` (never back), on every device of the account.
#[utoipa::path(
    post,
    path = "/v1/conversations/{id}/read",
    tag = "conversations",
    operation_id = "mark_read",
    security(("device_token" = [])),
    params(("id" = ConversationId, Path, description = "The conversation")),
    request_body = MarkRead,
    responses(
        (status = 204, description = "Marked; a `conversation.read` event tells the other devices"),
        (status = 400, description = "`bad_request`: malformed id or JSON", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such conversation, or no such message in it", body = ErrorBody),
    )
)]
async fn mark_read(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiPath(id): ApiPath<ConversationId>,
    ApiJson(request): ApiJson<MarkRead>,
) -> ApiResult<StatusCode> {
    state
        .store
        .mark_read(auth.account_id, id, request.up_to, Utc::now())
        .await
        .map_err(crate::error::not_found_as("conversation or message"))?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_cursors_are_checked() {
        assert_eq!(page_limit(None).ok(), Some(50));
        assert!(page_limit(Some(0)).is_err());
        assert!(page_limit(Some(201)).is_err());
        assert!(before_time(Some("yesterday")).is_err());
        assert!(before_time(Some("2026-01-31T12:00:00+01:00"))
            .ok()
            .flatten()
            .is_some());
        assert_eq!(
            before_time(Some("2026-01-31T12:00:00 01:00")).ok(),
            before_time(Some("2026-01-31T11:00:00Z")).ok()
        );
        assert!(before_message(Some("nope")).is_err());
        assert_eq!(before_message(None).ok(), Some(None));
    }
}

/// Deletes the conversation and every message in it, on every device of the account (the
/// other party keeps theirs; the contact stays). The log keeps no body of those messages.
#[utoipa::path(
    delete,
    path = "/v1/conversations/{id}",
    tag = "conversations",
    operation_id = "delete_conversation",
    security(("device_token" = [])),
    params(("id" = ConversationId, Path, description = "The conversation")),
    responses(
        (status = 204, description = "Deleted; a `conversation.deleted` event tells the other devices"),
        (status = 400, description = "`bad_request`: the id is not a UUID", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such conversation in this account", body = ErrorBody),
    )
)]
async fn delete_conversation(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiPath(id): ApiPath<ConversationId>,
) -> ApiResult<StatusCode> {
    state
        .store
        .delete_conversation(auth.account_id, id, Utc::now())
        .await
        .map_err(crate::error::not_found_as("conversation"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Names, archives or mutes the conversation for every device of the account; the other
/// party sees none of it. The name is checked here (length) and at the edge (characters).
#[utoipa::path(
    patch,
    path = "/v1/conversations/{id}",
    tag = "conversations",
    operation_id = "update_conversation",
    security(("device_token" = [])),
    params(("id" = ConversationId, Path, description = "The conversation")),
    request_body = PatchConversation,
    responses(
        (status = 200, description = "The conversation as it now is; a `conversation.updated` event tells the other devices", body = Conversation),
        (status = 400, description = "`invalid_field`: the name is longer than 100 characters or holds a control character; `bad_request`: the id is not a UUID or the body is not a patch", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such conversation in this account", body = ErrorBody),
    )
)]
async fn update_conversation(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiPath(id): ApiPath<ConversationId>,
    ApiJson(patch): ApiJson<PatchConversation>,
) -> ApiResult<Json<Conversation>> {
    if let Some(Some(name)) = &patch.name {
        if name.chars().count() > NAME_MAX_CHARS {
            return Err(ApiError::invalid_field(format!(
                "name: at most {NAME_MAX_CHARS} characters, this one has {}",
                name.chars().count()
            )));
        }
    }
    let conversation = state
        .store
        .update_conversation(auth.account_id, id, patch, Utc::now())
        .await
        .map_err(crate::error::not_found_as("conversation"))?;
    Ok(Json(conversation))
}
