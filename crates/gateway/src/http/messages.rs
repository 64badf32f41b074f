//! `POST /v1/messages` (send) and `DELETE /v1/messages/{id}`.
//!
//! Sending is idempotent by `(account, client_id)`: the first send answers 201 with the new
//! message, every repeat answers 200 with that same message and stores nothing. Routing
//! (in-network or through a carrier) is [`crate::routing`]'s; a 201 goes out only after the
//! message, its events and (out-of-network) its queue entry are committed.

use airtext_api::messages::{Message, SendMessage};
use airtext_api::{ErrorBody, MessageId};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::http::extract::{ApiJson, ApiPath, AuthDevice};
use crate::http::AppState;
use crate::rate_limit::RateKind;
use crate::routing;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(send_message))
        .routes(routes!(delete_message))
}

/// Sends a text to a phone number, `@username` or e-mail address.
#[utoipa::path(
    post,
    path = "/v1/messages",
    tag = "messages",
    operation_id = "send_message",
    security(("device_token" = [])),
    request_body = SendMessage,
    responses(
        (status = 201, description = "Stored: delivered in-network, or queued for a carrier", body = Message),
        (status = 200, description = "This `client_id` was sent before: the first message, unchanged", body = Message),
        (status = 400, description = "`bad_request` (malformed JSON), `invalid_address`, `invalid_body` (empty, too long, or holding NUL), or `emergency_number` (911, 112 and the like: call or text emergency services from a phone)", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
        (status = 403, description = "`recipient_opted_out`: the outside phone replied STOP to your number", body = ErrorBody),
        (status = 404, description = "`unknown_recipient`: a username or e-mail address that matches no account", body = ErrorBody),
        (status = 409, description = "`no_number`: texting a phone outside Airtext needs a number of your own", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: see Retry-After", body = ErrorBody),
    )
)]
async fn send_message(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiJson(request): ApiJson<SendMessage>,
) -> ApiResult<(StatusCode, Json<Message>)> {
    state
        .rate_limits
        .check(RateKind::Send, &auth.account_id.to_string())
        .await?;
    let (message, created) = routing::send_message(&state, auth.account_id, request).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(message)))
}

/// Deletes this account's copy of a message, on every device of the account (the other
/// party keeps theirs).
#[utoipa::path(
    delete,
    path = "/v1/messages/{id}",
    tag = "messages",
    operation_id = "delete_message",
    security(("device_token" = [])),
    params(("id" = MessageId, Path, description = "The message")),
    responses(
        (status = 204, description = "Deleted; a `message.deleted` event tells the other devices"),
        (status = 400, description = "`bad_request`: the id is not a UUID", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such message in this account", body = ErrorBody),
    )
)]
async fn delete_message(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiPath(id): ApiPath<MessageId>,
) -> ApiResult<StatusCode> {
    state
        .store
        .delete_message(auth.account_id, id, chrono::Utc::now())
        .await
        .map_err(crate::error::not_found_as("message"))?;
    Ok(StatusCode::NO_CONTENT)
}
