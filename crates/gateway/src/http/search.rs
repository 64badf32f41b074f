//! `GET /v1/search?q=`: full-text search over the signed-in account's messages (SQLite FTS5,
//! PostgreSQL full-text search; see the store's `search_messages`).
//!
//! Invariants: only the asking account's messages are searched; `q` is reduced to its words
//! (letters and digits, [`crate::store::rules::search_words`]) before any engine sees it, so
//! nothing typed is ever query syntax; every word must match, the last one as a prefix (the
//! search runs as one types); pages are newest first and go on with `before` (the last message of a page).

use airtext_api::messages::{SearchPage, SearchQuery};
use airtext_api::ErrorBody;
use axum::extract::State;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiQuery, AuthDevice};
use crate::http::AppState;
use crate::store::{rules, StoreError};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(search))
}

/// Results per page unless asked otherwise, and the most a page holds.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 100;
/// The longest `q` read, in bytes.
const MAX_QUERY_BYTES: usize = 1024;

/// Searches the account's messages.
#[utoipa::path(
    get,
    path = "/v1/search",
    tag = "messages",
    operation_id = "search_messages",
    security(("device_token" = [])),
    params(SearchQuery),
    responses(
        (status = 200, description = "Matching messages, newest first; `more` says whether older ones remain", body = SearchPage),
        (status = 400, description = "`invalid_field`: `q` has no letter or digit, is longer than 1024 bytes, or `limit` is not 1–100; `bad_request`: a parameter that does not parse", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
        (status = 404, description = "`not_found`: `before` is no message of this account", body = ErrorBody),
    )
)]
async fn search(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> ApiResult<Json<SearchPage>> {
    if query.q.len() > MAX_QUERY_BYTES {
        return Err(ApiError::invalid_field(format!(
            "q: search for at most {MAX_QUERY_BYTES} bytes of text"
        )));
    }
    let words = rules::search_words(&query.q);
    if words.is_empty() {
        return Err(ApiError::invalid_field(
            "q: give at least one word (letters or digits) to search for",
        ));
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_field(format!(
            "limit: give 1 to {MAX_LIMIT}"
        )));
    }
    // One more than asked says whether another page follows.
    let found = state
        .store
        .search_messages(auth.account_id, &words, limit + 1, query.before)
        .await
        .map_err(|error| match error {
            StoreError::NotFound => ApiError::not_found("message (before)"),
            other => other.into(),
        })?;
    let (messages, more) = rules::page(found, limit);
    Ok(Json(SearchPage { messages, more }))
}
