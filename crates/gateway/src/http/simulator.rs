//! The simulator carrier's demo and test surface (404 when the simulator is off):
//! `POST /v1/simulator/inbound` (an outside phone texts one of our numbers) and
//! `GET /v1/simulator/outbox?to=` (what outside phones and mailboxes received, including
//! verification codes). Any signed-in device may call them: the simulator's phones are
//! fictional, it runs only when the configuration asks for it, and the outbox shows each
//! account only what was sent for it (its texts to outside phones, the codes it asked for).

use std::sync::Arc;

use airtext_api::simulator::{OutboxQuery, SimulatedInbound, SimulatedOutbox};
use airtext_api::{ErrorBody, ErrorCode};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::carriers::ingest;
use crate::carriers::simulator::Simulator;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiQuery, AuthDevice};
use crate::http::AppState;
use crate::routing;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(inbound))
        .routes(routes!(outbox))
}

fn simulator(state: &AppState) -> ApiResult<&Arc<Simulator>> {
    state.simulator.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "the simulator carrier is not running on this gateway",
        )
    })
}

/// An outside phone texts one of our numbers.
#[utoipa::path(
    post,
    path = "/v1/simulator/inbound",
    tag = "simulator",
    operation_id = "simulate_inbound",
    security(("device_token" = [])),
    request_body = SimulatedInbound,
    responses(
        (status = 204, description = "Delivered to the number's owner"),
        (status = 400, description = "`bad_request`, `invalid_address` or `invalid_body`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
        (status = 404, description = "`not_found`: the simulator is off, or `to` is no account's number", body = ErrorBody),
    )
)]
async fn inbound(
    State(state): State<AppState>,
    _auth: AuthDevice,
    ApiJson(request): ApiJson<SimulatedInbound>,
) -> ApiResult<StatusCode> {
    simulator(&state)?;
    routing::check_body(&state, &request.body)?;
    let from = routing::parse_address(&state, &request.from)?;
    if !from.is_phone_like() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidAddress,
            format!("from must be a phone number or short code; got {from}"),
        ));
    }
    ingest::receive_inbound(&state, from.as_str(), &request.to, &request.body).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What outside phones and mailboxes received for the caller's account (its texts, the codes
/// it asked for), oldest first.
#[utoipa::path(
    get,
    path = "/v1/simulator/outbox",
    tag = "simulator",
    operation_id = "simulator_outbox",
    security(("device_token" = [])),
    params(OutboxQuery),
    responses(
        (status = 200, description = "Texts and e-mail this account sent or asked for, as the simulator's outside phones and mailboxes received them (of the newest 10,000 deliveries)", body = SimulatedOutbox),
        (status = 400, description = "`invalid_address`: `to` is not a phone number or e-mail address", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
        (status = 404, description = "`not_found`: the simulator is off", body = ErrorBody),
    )
)]
async fn outbox(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiQuery(query): ApiQuery<OutboxQuery>,
) -> ApiResult<Json<SimulatedOutbox>> {
    let simulator = simulator(&state)?;
    let to = query
        .to
        .as_deref()
        .map(|to| routing::parse_address(&state, to))
        .transpose()?;
    let messages = simulator.outbox(auth.account_id, to.as_ref().map(|a| a.as_str()));
    Ok(Json(SimulatedOutbox { messages }))
}
