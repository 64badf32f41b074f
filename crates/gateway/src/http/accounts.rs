//! `POST /v1/accounts`: sign-up; `DELETE /v1/accounts/me`: deleting the account.
//!
//! Invariants:
//! - usernames are stored lower case without the `@` (`airtext_sms::address::parse_username`),
//!   e-mail addresses lower case (`parse_email`); uniqueness is the store's (409 on a clash);
//! - passwords are kept only as argon2id PHC strings, hashed on a blocking thread (argon2 is
//!   deliberately CPU- and memory-hungry and must not stall the async workers);
//! - sign-ups are rate limited per client address (per /64 for IPv6, where one host holds a
//!   whole prefix), after the cheap validation so typos do not use up the budget.
//!
//! - deleting an account needs its password and removes every row of it in one transaction
//!   (the store's `delete_account`); its tokens stop working with that commit and its open
//!   streams on this node close at once; its number goes to quarantine like a released one.
//!
//! Also home to what sign-up and sign-in share: password hashing and [`ClientIp`].

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use airtext_api::accounts::{AccountCreated, DeleteAccount, SignUp};
use airtext_api::{AccountId, ErrorBody};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use rand::rngs::OsRng;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, AuthDevice};
use crate::http::AppState;
use crate::rate_limit::RateKind;
use crate::store::NewAccount;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_account))
        .routes(routes!(delete_account))
}

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted, in bytes: long enough for any passphrase, short enough that a
/// request cannot make the server hash megabytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Creates an account. Sign in afterwards (`POST /v1/sessions`) to get a device token.
#[utoipa::path(
    post,
    path = "/v1/accounts",
    tag = "accounts",
    operation_id = "create_account",
    request_body = SignUp,
    responses(
        (status = 201, description = "The account exists; sign in next", body = AccountCreated),
        (status = 400, description = "Malformed JSON, or a username, password or e-mail address that is not acceptable (`bad_request`, `invalid_field`, `invalid_address`)", body = ErrorBody),
        (status = 409, description = "`username_taken` or `email_taken`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: send JSON", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many sign-ups from this address; see Retry-After", body = ErrorBody),
    )
)]
async fn create_account(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(request): ApiJson<SignUp>,
) -> ApiResult<(StatusCode, Json<AccountCreated>)> {
    let username = normalise_username(&request.username)
        .map_err(|e| ApiError::invalid_field(format!("username: {e}")))?;
    check_new_password(&request.password)?;
    let email = match request.email.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(email) => Some(airtext_sms::address::parse_email(email).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                airtext_api::ErrorCode::InvalidAddress,
                format!("email: {e}"),
            )
        })?),
    };
    state
        .rate_limits
        .check(RateKind::SignUp, &rate_key_for_ip(ip))
        .await?;

    let password_hash = hash_password(request.password).await?;
    let id = AccountId::new();
    state
        .store
        .create_account(NewAccount {
            id,
            username: username.clone(),
            email,
            password_hash,
            created_at: chrono::Utc::now(),
        })
        .await?;
    tracing::info!(account = %id, "account created");
    Ok((
        StatusCode::CREATED,
        Json(AccountCreated {
            account_id: id,
            username,
        }),
    ))
}

/// Deletes the account and everything in it; the password is required.
#[utoipa::path(
    delete,
    path = "/v1/accounts/me",
    tag = "accounts",
    operation_id = "delete_account",
    security(("device_token" = [])),
    request_body = DeleteAccount,
    responses(
        (status = 204, description = "Deleted: its messages, conversations, contacts, identities and devices are gone, every token of it stops working, and its number goes to quarantine"),
        (status = 400, description = "`bad_request`: malformed JSON", body = ErrorBody),
        (status = 401, description = "`bad_credentials`: the password is wrong; `unauthorized`: no valid device token", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many password checks for this account; see Retry-After", body = ErrorBody),
    )
)]
async fn delete_account(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiJson(request): ApiJson<DeleteAccount>,
) -> ApiResult<StatusCode> {
    crate::http::passwords::check_current_password(&state, auth.account_id, request.password)
        .await?;
    let number_available_at = chrono::Utc::now() + state.config.quarantine();
    state
        .store
        .delete_account(auth.account_id, number_available_at)
        .await?;
    state.push.signed_out(auth.account_id);
    tracing::info!(account = %auth.account_id, "account deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// A username as stored: lower case, without the `@` (which people may type, as they see
/// usernames written `@alice`).
pub fn normalise_username(input: &str) -> Result<String, airtext_sms::AddressError> {
    let trimmed = input.trim();
    let bare = trimmed.strip_prefix('@').unwrap_or(trimmed);
    let parsed = airtext_sms::address::parse_username(bare)?;
    Ok(parsed.trim_start_matches('@').to_owned())
}

/// Refuses a password that is too short or too long, saying which.
pub fn check_new_password(password: &str) -> ApiResult<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::invalid_field(format!(
            "password: use at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::invalid_field(format!(
            "password: use at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// argon2id (the crate's defaults: 19 MiB, 2 passes) as a PHC string, off the async workers.
pub async fn hash_password(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| ApiError::internal(anyhow::anyhow!("argon2 hashing failed: {e}")))
    })
    .await
    .map_err(ApiError::internal)?
}

/// Checks `password` against a stored PHC string, or — when there is no account — against a
/// dummy hash with the same parameters, so that both cases cost the same time and the reply
/// cannot tell an attacker which usernames exist.
pub async fn verify_password(password: String, stored: Option<String>) -> ApiResult<bool> {
    tokio::task::spawn_blocking(move || {
        let argon2 = Argon2::default();
        match stored {
            Some(stored) => match PasswordHash::new(&stored) {
                Ok(hash) => Ok(argon2.verify_password(password.as_bytes(), &hash).is_ok()),
                Err(e) => Err(ApiError::internal(anyhow::anyhow!(
                    "a stored password hash does not parse: {e}"
                ))),
            },
            None => {
                if let Some(hash) = dummy_hash().and_then(|h| PasswordHash::new(h).ok()) {
                    let _ = argon2.verify_password(password.as_bytes(), &hash);
                }
                Ok(false)
            }
        }
    })
    .await
    .map_err(ApiError::internal)?
}

/// A hash of a random password, made once, with the same parameters as real ones.
fn dummy_hash() -> Option<&'static str> {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    DUMMY
        .get_or_init(|| {
            let salt = SaltString::generate(&mut OsRng);
            let password = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_str().as_bytes(), &salt)
                .map(|h| h.to_string())
                .ok()
        })
        .as_deref()
}

/// The client's IP address, from the connection (`ConnectInfo`). When the service is driven
/// without connection info (in-process tests through `tower::ServiceExt::oneshot`), it is the
/// unspecified address, so rate limits still apply, to one shared bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        Ok(ClientIp(ip))
    }
}

/// The rate-limit key of a client address: the address for IPv4, its /64 for IPv6 (one
/// subscriber usually holds a whole /64, so per-address limits would not limit anyone).
pub fn rate_key_for_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!(
                    "{:x}:{:x}:{:x}:{:x}::/64",
                    s.first().copied().unwrap_or(0),
                    s.get(1).copied().unwrap_or(0),
                    s.get(2).copied().unwrap_or(0),
                    s.get(3).copied().unwrap_or(0)
                )
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_limited_per_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap_or(IpAddr::from([0; 4]));
        let b: IpAddr = "2001:db8:1:2:ffff::9"
            .parse()
            .unwrap_or(IpAddr::from([0; 4]));
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap_or(IpAddr::from([0; 4]));
        assert_eq!(rate_key_for_ip(a), rate_key_for_ip(b));
        assert_ne!(rate_key_for_ip(a), rate_key_for_ip(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap_or(IpAddr::from([0; 4]));
        assert_eq!(rate_key_for_ip(mapped), "192.0.2.7");
    }

    #[test]
    fn password_bounds() {
        assert!(check_new_password("short").is_err());
        assert!(check_new_password("long enough").is_ok());
        assert!(check_new_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
        // Characters, not bytes, for the minimum: eight emoji are fine.
        assert!(check_new_password(&"🙂".repeat(8)).is_ok());
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let hash = hash_password("correct horse".into()).await.ok();
        let hash = hash.unwrap_or_default();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert_eq!(
            verify_password("correct horse".into(), Some(hash.clone()))
                .await
                .ok(),
            Some(true)
        );
        assert_eq!(
            verify_password("wrong horse".into(), Some(hash)).await.ok(),
            Some(false)
        );
        assert_eq!(
            verify_password("anything".into(), None).await.ok(),
            Some(false)
        );
    }
}
