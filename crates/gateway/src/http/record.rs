//! `POST /v1/messages/record`: a text a device sent or received over its own cellular modem.
//!
//! The gateway did not carry it, so nothing is routed or queued: the account gets one copy
//! with route `cellular` (outbound `sent`, inbound `delivered`) and a `message.created` event,
//! so every device shows the whole thread. Idempotent by `(account, client_id)` like a send.

use airtext_api::messages::{Direction, Message, RecordCellular, Route};
use airtext_api::{ErrorBody, ErrorCode, MessageId, SendStatus};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, AuthDevice};
use crate::http::AppState;
use crate::rate_limit::RateKind;
use crate::routing;
use crate::store::{Delivery, NewMessage};

/// How far ahead of the gateway's clock a device's `at` may be (clock skew).
const MAX_CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(record_cellular))
}

/// Records a text sent or received over the device's own cellular modem.
#[utoipa::path(
    post,
    path = "/v1/messages/record",
    tag = "messages",
    security(("device_token" = [])),
    request_body = RecordCellular,
    responses(
        (status = 201, description = "Recorded", body = Message),
        (status = 200, description = "This `client_id` was recorded before: that message, unchanged", body = Message),
        (status = 400, description = "`bad_request`, `invalid_address` (the peer must be a phone number or short code), `invalid_body`, or `invalid_field` (`at` in the future)", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
        (status = 429, description = "`rate_limited`: see Retry-After", body = ErrorBody),
    )
)]
async fn record_cellular(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiJson(request): ApiJson<RecordCellular>,
) -> ApiResult<(StatusCode, Json<Message>)> {
    state
        .rate_limits
        .check(RateKind::Send, &auth.account_id.to_string())
        .await?;
    routing::check_body(&state, &request.body)?;
    let peer = routing::parse_address(&state, &request.peer)?;
    if !peer.is_phone_like() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidAddress,
            "a text carried by a cellular modem is to or from a phone number or short code",
        ));
    }
    let now = Utc::now();
    if request.at > now + MAX_CLOCK_SKEW {
        return Err(ApiError::invalid_field(
            "`at` is in the future: send when the modem sent or received the text (RFC 3339, UTC)",
        ));
    }
    let account = state
        .store
        .account(auth.account_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("this device's account no longer exists"))?;
    let own = routing::canonical_address(&account);
    let peer = peer.to_string();
    let (from, to, status) = match request.direction {
        Direction::Outbound => (own, peer.clone(), SendStatus::Sent),
        Direction::Inbound => (peer.clone(), own, SendStatus::Delivered),
    };
    let (encoding, segments) = routing::encoding_of(&request.body);
    let copy = NewMessage {
        id: MessageId::new(),
        account_id: auth.account_id,
        peer,
        direction: request.direction,
        from,
        to,
        body: request.body,
        status,
        route: Route::Cellular,
        client_id: Some(request.client_id),
        encoding,
        segments,
        created_at: request.at,
    };
    let delivered = state
        .store
        .deliver(Delivery {
            sender: Some(copy),
            recipient: None,
            enqueue: None,
        })
        .await?;
    let message = delivered.sender.ok_or_else(|| {
        ApiError::internal(anyhow::anyhow!(
            "the store returned no copy for a recorded text"
        ))
    })?;
    let status = if delivered.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(message)))
}
