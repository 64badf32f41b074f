//! `GET /v1/stream`: a WebSocket of hints, `{"seq": N}`, telling a device its account's log
//! has reached `N` so it should pull `/v1/sync`.
//!
//! The stream carries no events itself: backlog and live updates take the same path (pull),
//! which keeps a device correct whatever it missed while disconnected. Invariants:
//! - authentication happens before the upgrade: a bad token is a 401 JSON reply, not a socket
//!   (the token comes in `Authorization: Bearer` or, for browsers, `?token=`);
//! - on connect the account's current seq is sent at once, so a device catches up on
//!   whatever happened while it was away;
//! - hints coalesce (a burst of events may produce fewer hints) but never go backwards, and
//!   the last hint always carries the latest seq;
//! - every keep-alive interval ([`crate::push::DEFAULT_KEEPALIVE`], 30 s) the server pings and
//!   re-checks the token, so a revoked device's stream closes (code 1008), and a peer silent
//!   for [`SILENT_INTERVALS`] intervals is dropped; when the account's devices are signed out
//!   on this node (password change or reset, account deletion) the token is re-checked at once;
//! - on gateway shutdown the stream closes cleanly (code 1001).

use airtext_api::sync::StreamHint;
use airtext_api::ErrorBody;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::Response;
use serde::Deserialize;
use tokio::time::Instant;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::http::extract::{bearer_token, ApiQuery, AuthDevice};
use crate::http::AppState;

/// A peer that sent nothing (not even a pong) for this many keep-alive intervals is gone.
pub const SILENT_INTERVALS: u32 = 3;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stream))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// The device token, for clients that cannot set headers on a WebSocket (browsers).
    #[serde(default)]
    pub token: Option<String>,
}

/// The signed-in device of a stream, with the token to re-check it by.
#[derive(Debug)]
struct StreamAuth {
    auth: AuthDevice,
    token: String,
}

impl FromRequestParts<AppState> for StreamAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ApiQuery(query) = ApiQuery::<StreamQuery>::from_request_parts(parts, state).await?;
        let token = bearer_token(parts)
            .map(str::to_owned)
            .or(query.token)
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "send your device token as Authorization: Bearer <token> or ?token=<token>",
                )
            })?;
        let auth = AuthDevice::from_token(state, &token).await?;
        Ok(StreamAuth { auth, token })
    }
}

/// Opens the hint stream.
#[utoipa::path(
    get,
    path = "/v1/stream",
    tag = "sync",
    operation_id = "stream",
    security(("device_token" = [])),
    params(StreamQuery),
    responses(
        (status = 101, description = "A WebSocket; the server sends `{\"seq\": N}` text frames (StreamHint) at once and whenever the log moves", body = airtext_api::sync::StreamHint),
        (status = 400, description = "`bad_request`: not a WebSocket upgrade request", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
    )
)]
async fn stream(
    State(state): State<AppState>,
    StreamAuth { auth, token }: StreamAuth,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let upgrade = upgrade.map_err(|e| {
        ApiError::bad_request(format!(
            "/v1/stream is a WebSocket: connect with a WebSocket client ({})",
            e.body_text()
        ))
    })?;
    Ok(upgrade.on_upgrade(move |socket| serve(socket, state, auth, token)))
}

fn hint(seq: i64) -> Message {
    let text = serde_json::to_string(&StreamHint { seq }).unwrap_or_default();
    Message::Text(text.into())
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

async fn serve(mut socket: WebSocket, state: AppState, auth: AuthDevice, token: String) {
    let _live = super::metrics::LiveStream::start();
    let account = auth.account_id;
    // Subscribe before reading the seq: a commit in between is announced, not missed.
    let mut subscription = state.push.subscribe(account);
    let mut seen = subscription.current();
    let Ok(mut sent) = state.store.last_seq(account).await else {
        let _ = socket
            .send(close(close_code::AGAIN, "the gateway is busy; reconnect"))
            .await;
        return;
    };
    if socket.send(hint(sent)).await.is_err() {
        return;
    }
    let keepalive = state.push.keepalive();
    let silence_limit = keepalive.saturating_mul(SILENT_INTERVALS);
    let mut ping = tokio::time::interval_at(Instant::now() + keepalive, keepalive);
    // After a stall, one ping, not a burst of them.
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard_at = Instant::now();
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => {
                let _ = socket.send(close(close_code::AWAY, "the gateway is shutting down")).await;
                return;
            }
            changed = subscription.changed() => {
                let Some(now) = changed else { return };
                if now.sign_out != seen.sign_out && signed_out(&state, &token).await {
                    let _ = socket.send(close(close_code::POLICY, "this device was signed out")).await;
                    return;
                }
                let mut seq = now.seq;
                if now.resync != seen.resync {
                    // The hub missed announcements: the store knows the truth.
                    if let Ok(stored) = state.store.last_seq(account).await {
                        seq = seq.max(stored);
                    }
                }
                seen = now;
                if seq > sent {
                    sent = seq;
                    if socket.send(hint(seq)).await.is_err() {
                        return;
                    }
                }
            }
            _ = ping.tick() => {
                if heard_at.elapsed() > silence_limit {
                    return;
                }
                if signed_out(&state, &token).await {
                    let _ = socket.send(close(close_code::POLICY, "this device was signed out")).await;
                    return;
                }
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
            received = socket.recv() => match received {
                // Pongs, pings (answered by the socket itself) and anything a client says
                // only show it is alive: the stream is one-way.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => heard_at = Instant::now(),
            },
        }
    }
}

/// Whether the token no longer authenticates (a store outage is not a sign-out).
async fn signed_out(state: &AppState, token: &str) -> bool {
    matches!(
        AuthDevice::from_token(state, token).await,
        Err(ApiError::Client { .. })
    )
}
