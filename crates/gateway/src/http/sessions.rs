//! Sessions: signing a device in (a device token) and out (revoking it).
//!
//! Invariants:
//! - a device token is 256 random bits from the OS, sent once, base64url without padding; the
//!   store keeps only its SHA-256 (`extract::token_hash`), so a database leak yields no tokens;
//! - a wrong password and an unknown username get the same 401 `bad_credentials`, after the
//!   same argon2 work (a dummy hash stands in for the missing account), so neither the reply
//!   nor its timing tells which usernames exist;
//! - sign-in is rate limited per username (guessing one account's password) and per client
//!   address (trying many accounts), before any password is checked;
//! - revoking a device deletes its token row, and every request authenticates against the
//!   store, so a revoked token fails on the very next request, from any device.

use airtext_api::accounts::{Session, SignIn};
use airtext_api::{DeviceId, ErrorBody, ErrorCode};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::http::accounts::{
    normalise_username, rate_key_for_ip, verify_password, ClientIp, MAX_PASSWORD_BYTES,
};
use crate::http::extract::{token_hash, ApiJson, ApiPath, AuthDevice};
use crate::http::AppState;
use crate::rate_limit::RateKind;
use crate::store::{NewDevice, StoreError};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_in))
        .routes(routes!(sign_out))
        .routes(routes!(revoke_device))
}

/// Longest device name, in characters.
pub const MAX_DEVICE_NAME_CHARS: usize = 64;

/// Signs a device in: checks the password and returns a new device token.
#[utoipa::path(
    post,
    path = "/v1/sessions",
    tag = "sessions",
    operation_id = "sign_in",
    request_body = SignIn,
    responses(
        (status = 201, description = "Signed in: keep the token, it is shown only once", body = Session),
        (status = 400, description = "Malformed JSON or a bad `device_name` (`bad_request`, `invalid_field`)", body = ErrorBody),
        (status = 401, description = "`bad_credentials`: wrong username or password", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: send JSON", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many attempts for this username or from this address; see Retry-After", body = ErrorBody),
    )
)]
async fn sign_in(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(request): ApiJson<SignIn>,
) -> ApiResult<(StatusCode, Json<Session>)> {
    let device_name = request.device_name.trim();
    let name_chars = device_name.chars().count();
    if name_chars == 0
        || name_chars > MAX_DEVICE_NAME_CHARS
        || device_name.contains(char::is_control)
    {
        return Err(ApiError::invalid_field(format!(
            "device_name: give 1 to {MAX_DEVICE_NAME_CHARS} characters naming this device, such as \"Kitchen tablet\""
        )));
    }
    // A username that cannot exist is treated like one that does not: the same 401.
    let username = normalise_username(&request.username).ok();

    let limits = &state.rate_limits;
    limits
        .check(RateKind::SignIn, &format!("ip:{}", rate_key_for_ip(ip)))
        .await?;
    let user_key = username
        .clone()
        .unwrap_or_else(|| request.username.trim().to_lowercase());
    limits
        .check(RateKind::SignIn, &format!("user:{user_key}"))
        .await?;

    let account = match &username {
        Some(username) => state.store.account_by_username(username).await?,
        None => None,
    };
    let password_ok = if request.password.len() > MAX_PASSWORD_BYTES {
        // No account has such a password; skip the hashing it would cost.
        false
    } else {
        verify_password(
            request.password,
            account.as_ref().map(|a| a.password_hash.clone()),
        )
        .await?
    };
    let account = match account {
        Some(account) if password_ok => account,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::BadCredentials,
                "wrong username or password",
            ))
        }
    };

    let token = new_token();
    let device_id = DeviceId::new();
    state
        .store
        .create_device(NewDevice {
            id: device_id,
            account_id: account.id,
            name: device_name.to_owned(),
            has_cellular: request.has_cellular,
            token_hash: token_hash(&token),
            created_at: chrono::Utc::now(),
        })
        .await?;
    tracing::info!(account = %account.id, device = %device_id, "device signed in");
    Ok((
        StatusCode::CREATED,
        Json(Session {
            token,
            device_id,
            account_id: account.id,
        }),
    ))
}

/// 256 bits from the operating system's generator, base64url without padding (43 characters).
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs this device out: its token stops working at once.
#[utoipa::path(
    delete,
    path = "/v1/sessions/current",
    tag = "sessions",
    operation_id = "sign_out",
    security(("device_token" = [])),
    responses(
        (status = 204, description = "Signed out; the token no longer works"),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
    )
)]
async fn sign_out(State(state): State<AppState>, auth: AuthDevice) -> ApiResult<StatusCode> {
    revoke(&state, auth, auth.device_id).await
}

/// Signs another device of this account out (a lost or sold tablet).
#[utoipa::path(
    delete,
    path = "/v1/devices/{id}",
    tag = "sessions",
    operation_id = "revoke_device",
    security(("device_token" = [])),
    params(("id" = DeviceId, Path, description = "The device, from `GET /v1/me`")),
    responses(
        (status = 204, description = "Signed out; that device's token no longer works"),
        (status = 400, description = "`bad_request`: the id is not a UUID", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such device in this account", body = ErrorBody),
    )
)]
async fn revoke_device(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiPath(id): ApiPath<DeviceId>,
) -> ApiResult<StatusCode> {
    revoke(&state, auth, id).await
}

async fn revoke(state: &AppState, auth: AuthDevice, device: DeviceId) -> ApiResult<StatusCode> {
    match state.store.revoke_device(auth.account_id, device).await {
        Ok(()) => {
            tracing::info!(account = %auth.account_id, %device, by = %auth.device_id, "device signed out");
            Ok(StatusCode::NO_CONTENT)
        }
        Err(StoreError::NotFound) => Err(ApiError::not_found("device")),
        Err(other) => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_256_bits_and_distinct() {
        let a = super::new_token();
        let b = super::new_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }
}
