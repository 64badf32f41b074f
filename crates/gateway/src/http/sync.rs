//! `GET /v1/sync?after=&limit=`: pull the account's event log.
//!
//! Events come oldest first with `seq > after`; `next` is the seq of the last event returned
//! (or `after` when none), to be passed back as `after`. Seqs of one account become visible
//! strictly in order (the store's invariant), so a device that follows `next` never skips an
//! event, however its pulls interleave with writes.

use airtext_api::sync::{SyncPage, SyncQuery};
use airtext_api::ErrorBody;
use axum::extract::State;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiQuery, AuthDevice};
use crate::http::AppState;

pub const DEFAULT_LIMIT: u32 = 500;
pub const MAX_LIMIT: u32 = 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(sync))
}

/// Events after `after`, oldest first.
#[utoipa::path(
    get,
    path = "/v1/sync",
    tag = "sync",
    operation_id = "sync",
    security(("device_token" = [])),
    params(SyncQuery),
    responses(
        (status = 200, description = "A page of events; pass `next` back as `after` while `more` is true", body = SyncPage),
        (status = 400, description = "`bad_request` (a parameter that is not a number) or `invalid_field` (`after` < 0, `limit` outside 1–1000)", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
    )
)]
async fn sync(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiQuery(query): ApiQuery<SyncQuery>,
) -> ApiResult<Json<SyncPage>> {
    let after = query.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::invalid_field(format!(
            "after must be 0 or a seq from a previous page; got {after}"
        )));
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_field(format!(
            "limit must be 1 to {MAX_LIMIT}; got {limit}"
        )));
    }
    let (events, more) = state
        .store
        .events_after(auth.account_id, after, limit)
        .await?;
    let next = events.last().map_or(after, |event| event.seq);
    Ok(Json(SyncPage { events, next, more }))
}
