//! Numbers (DIDs): search the carriers' inventory, claim one, release it.
//!
//! Invariants:
//! - numbers are compared and stored in E.164 only: whatever the caller types is normalised
//!   with the gateway's default region first (400 `invalid_address` when it is not a phone
//!   number), and a path's URL-encoded `+` (`%2B`) decodes like any other character;
//! - an account holds at most one number; a number has at most one owner (the store decides,
//!   atomically: 409 `number_taken` / `already_has_number`);
//! - a released number is unclaimable until `now + number_quarantine_days`, so texts meant
//!   for its old owner do not reach a new one the next day;
//! - query parameters that do not parse or name an unknown country are a 400, never an empty
//!   list;
//! - with a Twilio carrier that provisions (`provision = true`), a search also lists what
//!   Twilio would sell, and claiming a number that is not in the inventory buys it first
//!   (`carriers::twilio::numbers`). It is bought only for an account holding no number, and
//!   when Twilio fails the caller hears why and holds nothing; a purchase whose claim then
//!   fails is given straight back.

use airtext_api::numbers::{AvailableNumbers, AvailableNumbersQuery, ClaimNumber, ClaimedNumber};
use airtext_api::{ErrorBody, ErrorCode};
use airtext_sms::address::Address;
use airtext_sms::Region;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::carriers::twilio::numbers::{self as twilio_numbers, BuyError, NumberProviderError};
use crate::carriers::twilio::TwilioCarrier;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery, AuthDevice};
use crate::http::AppState;
use crate::store::{NumberSearch, StoreError};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(available))
        .routes(routes!(claim))
        .routes(routes!(release))
}

pub const DEFAULT_SEARCH_LIMIT: u32 = 20;
pub const MAX_SEARCH_LIMIT: u32 = 100;
/// Longest area code (or national prefix) a search takes, in digits.
const MAX_AREA_CODE_DIGITS: usize = 8;

/// Numbers free to claim, in number order.
#[utoipa::path(
    get,
    path = "/v1/numbers/available",
    tag = "numbers",
    operation_id = "available_numbers",
    security(("device_token" = [])),
    params(
        ("country" = Option<String>, Query, description = "ISO 3166 two-letter country code, e.g. `US` or `GB`; default: the gateway's region (`US` unless configured)", example = "US"),
        ("area_code" = Option<String>, Query, description = "National area code (digits), e.g. `415`", example = "415"),
        ("limit" = Option<u32>, Query, description = "1–100, default 20", minimum = 1, maximum = 100),
    ),
    responses(
        (status = 200, description = "Numbers that can be claimed now", body = AvailableNumbers),
        (status = 400, description = "A parameter that does not parse (`bad_request`), an unknown country (`unknown_country`), or a value out of range (`invalid_field`)", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
        (status = 502, description = "`unavailable`: the number provider (Twilio) refused the gateway's search", body = ErrorBody),
        (status = 503, description = "`unavailable`: the number provider (Twilio) did not answer; search again later", body = ErrorBody),
    )
)]
async fn available(
    State(state): State<AppState>,
    _auth: AuthDevice,
    ApiQuery(query): ApiQuery<AvailableNumbersQuery>,
) -> ApiResult<Json<AvailableNumbers>> {
    let region = match query.country.as_deref().map(str::trim) {
        None | Some("") => state.addresses.region(),
        Some(country) => country
            .parse::<Region>()
            .map_err(|_| unknown_country(country))?,
    };
    let calling_code = region
        .calling_code()
        .ok_or_else(|| unknown_country(region.code()))?;
    let area_code = match query.area_code.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(area) => {
            if area.len() > MAX_AREA_CODE_DIGITS || !area.chars().all(|c| c.is_ascii_digit()) {
                return Err(ApiError::invalid_field(format!(
                    "area_code: give up to {MAX_AREA_CODE_DIGITS} digits, such as 415"
                )));
            }
            Some(area)
        }
    };
    let prefix = area_code.map(|area| format!("+{calling_code}{area}"));
    let limit = query.limit.unwrap_or(DEFAULT_SEARCH_LIMIT);
    if !(1..=MAX_SEARCH_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_field(format!(
            "limit: give 1 to {MAX_SEARCH_LIMIT}"
        )));
    }
    let mut numbers = state
        .store
        .available_numbers(NumberSearch {
            country: region.code().to_owned(),
            prefix,
            limit,
            now: chrono::Utc::now(),
        })
        .await?;
    let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
    for carrier in provisioning(&state) {
        if numbers.len() >= wanted {
            break;
        }
        let more = carrier
            .search_numbers(region.code(), calling_code, area_code, limit)
            .await
            .map_err(|e| provider_error(&e, false))?;
        numbers.extend(more);
    }
    numbers.sort();
    numbers.dedup();
    numbers.truncate(wanted);
    Ok(Json(AvailableNumbers { numbers }))
}

/// The Twilio carriers that sell numbers, in name order (searches and purchases try them so).
fn provisioning(state: &AppState) -> Vec<&TwilioCarrier> {
    let mut carriers: Vec<&TwilioCarrier> = state
        .twilio
        .values()
        .map(AsRef::as_ref)
        .filter(|c| c.provisions())
        .collect();
    carriers.sort_by_key(|c| crate::carriers::Carrier::name(*c).to_owned());
    carriers
}

/// What the caller hears when Twilio fails during a search or (`claiming`) a purchase.
fn provider_error(error: &NumberProviderError, claiming: bool) -> ApiError {
    let outcome = if claiming {
        "nothing was claimed; try again in a minute"
    } else {
        "search again in a minute"
    };
    match error {
        NumberProviderError::NotForSale { number, .. } => ApiError::conflict(
            ErrorCode::NumberTaken,
            format!("{number} is no longer for sale: search again and pick another"),
        ),
        NumberProviderError::Unavailable(detail) => {
            tracing::warn!(detail, "the number provider is unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                format!("the number provider (Twilio) did not answer: {outcome}"),
            )
        }
        // Logged by the carrier as the operator's to fix; its words stay out of the answer.
        NumberProviderError::Refused(_) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            ErrorCode::Unavailable,
            format!(
                "the number provider (Twilio) refused this gateway's request{}; the gateway's \
                 operator must check its Twilio account (the gateway's log says why)",
                if claiming {
                    ", so nothing was claimed"
                } else {
                    ""
                }
            ),
        ),
    }
}

fn unknown_country(country: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::UnknownCountry,
        format!("country {country:?} is not known: use a two-letter code such as US or GB"),
    )
}

/// Normalises a phone number to E.164 with the gateway's region, or says what is wrong.
pub fn parse_phone(state: &AppState, input: &str) -> ApiResult<String> {
    match state.addresses.parse(input) {
        Ok(Address::Phone(e164)) => Ok(e164),
        Ok(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidAddress,
            format!(
                "{input:?} is not a phone number: use international format such as +14155550100"
            ),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidAddress,
            e.to_string(),
        )),
    }
}

/// Claims a number from the inventory as this account's own.
#[utoipa::path(
    post,
    path = "/v1/numbers",
    tag = "numbers",
    operation_id = "claim_number",
    security(("device_token" = [])),
    request_body = ClaimNumber,
    responses(
        (status = 201, description = "The number is this account's", body = ClaimedNumber),
        (status = 400, description = "Malformed JSON (`bad_request`) or not a phone number (`invalid_address`)", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
        (status = 404, description = "`not_found`: no carrier offers that number", body = ErrorBody),
        (status = 409, description = "`number_taken` (owned, in quarantine, or no longer for sale) or `already_has_number`", body = ErrorBody),
        (status = 502, description = "`unavailable`: the number provider (Twilio) refused the purchase; nothing was claimed", body = ErrorBody),
        (status = 503, description = "`unavailable`: the number provider (Twilio) did not answer; nothing was claimed", body = ErrorBody),
    )
)]
async fn claim(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiJson(request): ApiJson<ClaimNumber>,
) -> ApiResult<(StatusCode, Json<ClaimedNumber>)> {
    let number = parse_phone(&state, &request.number)?;
    let mut claimed = state
        .store
        .claim_number(auth.account_id, &number, chrono::Utc::now())
        .await;
    let sellers = provisioning(&state);
    if matches!(claimed, Err(StoreError::NotFound)) && !sellers.is_empty() {
        let seller = buy(&state, &sellers, auth.account_id, &number).await?;
        claimed = state
            .store
            .claim_number(auth.account_id, &number, chrono::Utc::now())
            .await;
        if claimed.is_err() {
            // Bought for nobody: it is unowned and due, so it goes back now (or on the next
            // pass of the give-back task).
            let _ = twilio_numbers::give_back_due(seller, &state.store, chrono::Utc::now()).await;
        }
    }
    match claimed {
        Ok(()) => {
            tracing::info!(account = %auth.account_id, %number, "number claimed");
            Ok((StatusCode::CREATED, Json(ClaimedNumber { number })))
        }
        Err(StoreError::NotFound) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!(
                "{number} is not offered by any carrier: pick one from GET /v1/numbers/available"
            ),
        )),
        Err(other) => Err(other.into()),
    }
}

/// Buys `number` (not in the inventory) from the first carrier that sells it, into the
/// inventory; returns that carrier.
async fn buy<'a>(
    state: &AppState,
    sellers: &[&'a TwilioCarrier],
    account: airtext_api::AccountId,
    number: &str,
) -> ApiResult<&'a TwilioCarrier> {
    // A purchase costs money: refuse first what the claim would refuse after it.
    let holds = state.store.account(account).await?.and_then(|a| a.number);
    if holds.is_some() {
        return Err(StoreError::Conflict(crate::store::Conflict::AlreadyHasNumber).into());
    }
    match twilio_numbers::buy_into_inventory(sellers, &state.store, number).await {
        Ok(bought) => sellers
            .iter()
            .find(|c| crate::carriers::Carrier::name(**c) == bought.carrier)
            .copied()
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("the seller of {number} vanished"))),
        Err(BuyError::Store(e)) => Err(e.into()),
        Err(BuyError::Provider(e)) => Err(provider_error(&e, true)),
    }
}

/// Gives the account's number back. Nobody can claim it during the quarantine.
#[utoipa::path(
    delete,
    path = "/v1/numbers/{number}",
    tag = "numbers",
    operation_id = "release_number",
    security(("device_token" = [])),
    params(("number" = String, Path, description = "The account's number, E.164 with `+` URL-encoded as `%2B`", example = "%2B14155550100")),
    responses(
        (status = 204, description = "Released"),
        (status = 400, description = "`invalid_address`: not a phone number", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
        (status = 404, description = "`not_found`: this account does not own that number", body = ErrorBody),
    )
)]
async fn release(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiPath(number): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let number = parse_phone(&state, &number)?;
    let available_at = chrono::Utc::now() + state.config.quarantine();
    match state
        .store
        .release_number(auth.account_id, &number, available_at)
        .await
    {
        Ok(()) => {
            tracing::info!(account = %auth.account_id, %number, %available_at, "number released");
            Ok(StatusCode::NO_CONTENT)
        }
        Err(StoreError::NotFound) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("{number} is not this account's number"),
        )),
        Err(other) => Err(other.into()),
    }
}
