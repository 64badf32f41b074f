//! `GET /v1/lookup?address=`: whether an address is an Airtext account (the client's path
//! policy asks this to choose cloud or cellular).
//!
//! It answers with the normalised address only, never the account behind it, and is
//! rate-limited per account so it cannot be used to enumerate who is on Airtext.

use airtext_api::messages::{Lookup, LookupQuery};
use airtext_api::ErrorBody;
use axum::extract::State;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::http::extract::{ApiQuery, AuthDevice};
use crate::http::AppState;
use crate::rate_limit::RateKind;
use crate::routing;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(lookup))
}

/// Is this address in-network?
#[utoipa::path(
    get,
    path = "/v1/lookup",
    tag = "messages",
    operation_id = "lookup",
    security(("device_token" = [])),
    params(LookupQuery),
    responses(
        (status = 200, description = "The normalised address and whether it reaches an Airtext account", body = Lookup),
        (status = 400, description = "`invalid_address`: not a phone number, @username or e-mail address", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
        (status = 404, description = "`unknown_recipient`: a username or e-mail address that matches no account", body = ErrorBody),
        (status = 429, description = "`rate_limited`: see Retry-After", body = ErrorBody),
    )
)]
async fn lookup(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiQuery(query): ApiQuery<LookupQuery>,
) -> ApiResult<Json<Lookup>> {
    state
        .rate_limits
        .check(RateKind::Lookup, &auth.account_id.to_string())
        .await?;
    let address = routing::parse_address(&state, &query.address)?;
    let target = routing::resolve(&state, &address).await?;
    Ok(Json(Lookup {
        address: address.as_str().to_owned(),
        in_network: target.in_network(),
    }))
}
