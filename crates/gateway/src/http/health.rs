//! `GET /healthz`: 200 `{"status":"ok"}` when the store answers and can write within a couple
//! of seconds, 503 (`unavailable`, JSON like every error) with the reason when it cannot —
//! what a load balancer or an orchestrator needs to take a node out of rotation, and what its
//! operator needs to know why (`the store cannot write (commit failed: database or disk is
//! full …)`). No authentication; the reason names the failure, never a secret.

use std::time::Duration;

use airtext_api::{ErrorBody, ErrorCode};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::http::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz))
}

/// How long the store may take to answer before the node counts as unhealthy.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` (an unhealthy node answers 503 with an error body).
    pub status: String,
}

/// Whether this gateway node and its store are up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    operation_id = "healthz",
    responses(
        (status = 200, description = "The gateway and its store answer", body = Health),
        (status = 503, description = "`unavailable`: the store does not answer, or cannot write (a full disk, a read-only database); the message says which", body = ErrorBody),
    )
)]
async fn healthz(State(state): State<AppState>) -> ApiResult<Json<Health>> {
    match tokio::time::timeout(PING_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(Health {
            status: "ok".to_owned(),
        })),
        Ok(Err(error)) => Err(unhealthy(&error.to_string())),
        Err(_) => Err(unhealthy(&format!(
            "the store did not answer within {PING_TIMEOUT:?}"
        ))),
    }
}

/// A 503 that says why: the store's own words, cut short.
fn unhealthy(reason: &str) -> ApiError {
    tracing::warn!(reason, "health check failed");
    let reason: String = reason.chars().take(300).collect();
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable,
        format!("this node cannot serve: {reason}"),
    )
}
