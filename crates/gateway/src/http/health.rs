//! `GET /healthz`: 200 `{"status":"ok"}` when the store answers within a couple of seconds,
//! 503 (`unavailable`, JSON like every error) when it does not — what a load balancer or an
//! orchestrator needs to take a node out of rotation. No authentication, no details.

use std::time::Duration;

use airtext_api::ErrorBody;
use axum::extract::State;
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
        (status = 503, description = "`unavailable`: the store does not answer", body = ErrorBody),
    )
)]
async fn healthz(State(state): State<AppState>) -> ApiResult<Json<Health>> {
    match tokio::time::timeout(PING_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(Health {
            status: "ok".to_owned(),
        })),
        Ok(Err(error)) => Err(ApiError::Unavailable(format!("health check: {error}"))),
        Err(_) => Err(ApiError::Unavailable(format!(
            "health check: the store did not answer within {PING_TIMEOUT:?}"
        ))),
    }
}
