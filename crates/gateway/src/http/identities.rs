//! Identities: proving that an account owns a phone number or an e-mail address.
//!
//! `POST /v1/identities` sends a 6-digit code (by SMS through the carrier path, or by e-mail);
//! `POST /v1/identities/{id}/verify` takes it back; `DELETE /v1/identities/{id}` removes one.
//! Only verified identities route messages.
//!
//! Invariants:
//! - the value is normalised before anything else (E.164 / lower-case e-mail), so one number
//!   typed two ways is one identity;
//! - a code is 6 digits from the OS generator and is stored only as a salted SHA-256. Codes
//!   are low-entropy, so the hash alone protects little; what protects them is that each code
//!   works for `verification.code_ttl_secs` (10 minutes) and `verification.max_attempts` (5)
//!   wrong tries, that new codes are rate limited per account and per value, and that checks
//!   are rate limited per account. The salt is the account, kind and value (known before the
//!   store assigns or finds the identity's id, so a code can never be hashed with the wrong
//!   salt when two requests race);
//! - a try is counted *before* the code is compared (the store increments atomically), so
//!   concurrent guesses cannot slip past the limit; the comparison is constant-time;
//! - asking for a new code replaces the old one and resets the tries;
//! - a value another account has verified is refused before any code is sent, and at
//!   verification if another account got there first: the verified owner keeps it
//!   (`store::rules::may_claim_identity`). Unverified claims block nobody.

use airtext_api::identities::{
    AddIdentity, IdentityKind, IdentityPending, IdentityStatus, IdentityVerified, VerifyIdentity,
};
use airtext_api::{AccountId, ErrorBody, ErrorCode, IdentityId};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use rand::rngs::OsRng;
use rand::Rng;
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{not_found_as, ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, AuthDevice};
use crate::http::numbers::parse_phone;
use crate::http::AppState;
use crate::mail::MailError;
use crate::rate_limit::RateKind;
use crate::routing::send_system_sms;
use crate::store::NewIdentityCode;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(add_identity))
        .routes(routes!(verify_identity))
        .routes(routes!(remove_identity))
}

/// Removes one of the caller's identities (pending or verified). A phone number or e-mail
/// address it had verified stops routing texts to this account and may be verified by another.
#[utoipa::path(
    delete,
    path = "/v1/identities/{id}",
    tag = "identities",
    operation_id = "remove_identity",
    security(("device_token" = [])),
    params(("id" = IdentityId, Path, description = "The identity's id (`GET /v1/me` lists them)")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "`bad_request`: the id is not a UUID", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such identity in this account", body = ErrorBody),
    )
)]
async fn remove_identity(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiPath(id): ApiPath<IdentityId>,
) -> ApiResult<StatusCode> {
    state
        .store
        .remove_identity(auth.account_id, id)
        .await
        .map_err(not_found_as("identity"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a verification code to a phone number (SMS) or e-mail address.
#[utoipa::path(
    post,
    path = "/v1/identities",
    tag = "identities",
    operation_id = "add_identity",
    security(("device_token" = [])),
    request_body = AddIdentity,
    responses(
        (status = 202, description = "A code is on its way; send it to `/v1/identities/{id}/verify`", body = IdentityPending),
        (status = 400, description = "Malformed JSON (`bad_request`) or a value that is not a phone number / e-mail address (`invalid_address`)", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
        (status = 409, description = "`already_verified`: this account has verified it already; `email_taken` / `number_taken`: another account has verified it", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many codes for this account or this number/address; see Retry-After", body = ErrorBody),
        (status = 503, description = "`unavailable`: the code could not be sent (no carrier or mail server took it)", body = ErrorBody),
    )
)]
async fn add_identity(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiJson(request): ApiJson<AddIdentity>,
) -> ApiResult<(StatusCode, Json<IdentityPending>)> {
    let value = match request.kind {
        IdentityKind::Phone => parse_phone(&state, &request.value)?,
        IdentityKind::Email => airtext_sms::address::parse_email(&request.value).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidAddress,
                e.to_string(),
            )
        })?,
    };
    let existing = state.store.identities(auth.account_id).await?;
    if existing
        .iter()
        .any(|i| i.kind == request.kind && i.value == value && i.status == IdentityStatus::Verified)
    {
        return Err(ApiError::conflict(
            ErrorCode::AlreadyVerified,
            format!("{value} is already verified for this account"),
        ));
    }
    // Per account: one account cannot spray codes. Per value: many accounts cannot flood one
    // phone or mailbox.
    state
        .rate_limits
        .check(
            RateKind::VerificationCode,
            &format!("account:{}", auth.account_id),
        )
        .await?;
    state
        .rate_limits
        .check(
            RateKind::VerificationCode,
            &format!("{}:{value}", request.kind.as_str()),
        )
        .await?;

    let code = new_code();
    let now = chrono::Utc::now();
    let identity_id = state
        .store
        .put_identity_code(NewIdentityCode {
            id: IdentityId::new(),
            account_id: auth.account_id,
            kind: request.kind,
            value: value.clone(),
            code_hash: code_hash(auth.account_id, request.kind, &value, &code),
            expires_at: now + state.config.code_ttl(),
            now,
        })
        .await?;

    let text = format!(
        "Your Airtext code is {code}. It expires in {}.",
        describe_ttl(state.config.verification.code_ttl_secs)
    );
    match request.kind {
        IdentityKind::Phone => send_system_sms(&state, auth.account_id, &value, &text).await?,
        IdentityKind::Email => state
            .mailer
            .send(
                auth.account_id,
                &value,
                "Your Airtext verification code",
                &text,
            )
            .await
            .map_err(mail_error)?,
    }
    tracing::info!(account = %auth.account_id, identity = %identity_id, kind = request.kind.as_str(), "verification code sent");
    Ok((
        StatusCode::ACCEPTED,
        Json(IdentityPending {
            identity_id,
            status: IdentityStatus::Pending,
        }),
    ))
}

/// Checks a code; the identity becomes verified when it is right.
#[utoipa::path(
    post,
    path = "/v1/identities/{id}/verify",
    tag = "identities",
    operation_id = "verify_identity",
    security(("device_token" = [])),
    params(("id" = IdentityId, Path, description = "The `identity_id` from `POST /v1/identities`")),
    request_body = VerifyIdentity,
    responses(
        (status = 200, description = "Verified (also when it already was)", body = IdentityVerified),
        (status = 400, description = "`wrong_code` (the message says how many tries are left), `code_expired` (ask for a new code), `invalid_field` (not 6 digits) or `bad_request`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such identity in this account", body = ErrorBody),
        (status = 409, description = "`email_taken` / `number_taken`: another account verified it first", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: this code is dead, ask for a new one; or `rate_limited` (see Retry-After)", body = ErrorBody),
    )
)]
async fn verify_identity(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiPath(id): ApiPath<IdentityId>,
    ApiJson(request): ApiJson<VerifyIdentity>,
) -> ApiResult<Json<IdentityVerified>> {
    // People type "123 456" or "123-456"; both are the code.
    let code: String = request
        .code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    if code.len() != 6 || !code.chars().all(|c| c.is_ascii_digit()) {
        return Err(ApiError::invalid_field(
            "code: give the 6 digits that were sent to you",
        ));
    }
    state
        .rate_limits
        .check(RateKind::VerificationCheck, &auth.account_id.to_string())
        .await?;

    let identity = state
        .store
        .identity(auth.account_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("identity"))?;
    if identity.status == IdentityStatus::Verified {
        return Ok(Json(IdentityVerified {
            status: IdentityStatus::Verified,
        }));
    }
    let max = state.config.verification.max_attempts;
    let now = chrono::Utc::now();
    let (Some(stored), Some(expires_at)) = (&identity.code_hash, identity.code_expires_at) else {
        return Err(code_expired());
    };
    if identity.attempts >= max {
        return Err(too_many_attempts(max));
    }
    if expires_at <= now {
        return Err(code_expired());
    }
    // Count first, compare second: concurrent guesses each use up a try.
    let tries = state
        .store
        .count_failed_attempt(auth.account_id, id)
        .await?;
    if tries > max {
        return Err(too_many_attempts(max));
    }
    let given = code_hash(auth.account_id, identity.kind, &identity.value, &code);
    if constant_time_eq(given.as_bytes(), stored.as_bytes()) {
        state.store.mark_verified(auth.account_id, id, now).await?;
        tracing::info!(account = %auth.account_id, identity = %id, "identity verified");
        return Ok(Json(IdentityVerified {
            status: IdentityStatus::Verified,
        }));
    }
    if tries >= max {
        return Err(too_many_attempts(max));
    }
    let left = max - tries;
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::WrongCode,
        format!(
            "that code is wrong: {left} {} left before it stops working",
            if left == 1 { "try" } else { "tries" }
        ),
    ))
}

fn code_expired() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::CodeExpired,
        "that code has expired: ask for a new one (POST /v1/identities)",
    )
}

fn too_many_attempts(max: u32) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::TooManyAttempts,
        format!(
            "{max} wrong codes: this code no longer works; ask for a new one (POST /v1/identities)"
        ),
    )
}

pub(crate) fn mail_error(error: MailError) -> ApiError {
    match error {
        MailError::NotConfigured => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "this gateway cannot send e-mail (it has no SMTP server configured): verify a phone number instead",
        ),
        MailError::BadRecipient(to) => ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidAddress,
            format!("{to:?} cannot receive e-mail: check the address"),
        ),
        MailError::Transport(detail) => ApiError::Unavailable(format!("mail: {detail}")),
    }
}

/// A uniformly random 6-digit code (leading zeros kept).
pub(crate) fn new_code() -> String {
    format!("{:06}", OsRng.gen_range(0..1_000_000u32))
}

/// `sha256:` + hex of the code salted with its account, kind and value.
fn code_hash(account: AccountId, kind: IdentityKind, value: &str, code: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"airtext identity code v1\0");
    hasher.update(account.as_uuid().as_bytes());
    hasher.update(kind.as_str().as_bytes());
    hasher.update(b"\0");
    hasher.update(value.as_bytes());
    hasher.update(b"\0");
    hasher.update(code.as_bytes());
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// Compares without stopping at the first difference, so timing reveals nothing.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

pub(crate) fn describe_ttl(secs: u64) -> String {
    match secs {
        s if s % 60 == 0 && s / 60 == 1 => "1 minute".to_owned(),
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        1 => "1 second".to_owned(),
        s => format!("{s} seconds"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..1000 {
            let code = new_code();
            assert_eq!(code.len(), 6);
            assert!(code.chars().all(|c| c.is_ascii_digit()));
        }
    }

    #[test]
    fn hashes_depend_on_every_input() {
        let a = AccountId::new();
        let b = AccountId::new();
        let base = code_hash(a, IdentityKind::Phone, "+14155550100", "123456");
        assert!(base.starts_with("sha256:"));
        assert_eq!(
            base,
            code_hash(a, IdentityKind::Phone, "+14155550100", "123456")
        );
        assert_ne!(
            base,
            code_hash(b, IdentityKind::Phone, "+14155550100", "123456")
        );
        assert_ne!(
            base,
            code_hash(a, IdentityKind::Email, "+14155550100", "123456")
        );
        assert_ne!(
            base,
            code_hash(a, IdentityKind::Phone, "+14155550101", "123456")
        );
        assert_ne!(
            base,
            code_hash(a, IdentityKind::Phone, "+14155550100", "123457")
        );
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn ttl_in_words() {
        assert_eq!(describe_ttl(600), "10 minutes");
        assert_eq!(describe_ttl(60), "1 minute");
        assert_eq!(describe_ttl(90), "90 seconds");
        assert_eq!(describe_ttl(1), "1 second");
    }
}
