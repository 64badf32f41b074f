//! Passwords: changing one (`POST /v1/accounts/me/password`, the current password required)
//! and resetting a forgotten one (`POST /v1/password-resets`, then
//! `POST /v1/password-resets/confirm` with the code sent to a verified e-mail or phone).
//!
//! Invariants:
//! - a change keeps the device that made it signed in and, unless asked otherwise
//!   (`sign_out_other_devices: false`), signs every other device out, as the big providers do:
//!   whoever learnt the old password loses their sessions; a reset signs every device out;
//!   either way the store does it in the transaction that replaces the hash, and open streams
//!   on this node close at once ([`crate::push::PushHub::signed_out`]);
//! - nothing a reset answers tells whether the username exists: asking always gets 202 (the
//!   code is sent by a task of its own, so the reply does not wait for a mail server either),
//!   and a confirmation gets the same `wrong_code` for a missing account, a missing, wrong,
//!   expired or used-up code; the rate limits key on the username as typed, so they bite
//!   alike for accounts that exist and names that do not;
//! - reset codes are kept and limited like verification codes: 6 digits, a salted SHA-256,
//!   `verification.code_ttl_secs`, `verification.max_attempts` wrong tries counted before the
//!   comparison, new codes limited per username and per e-mail address or phone number.

use airtext_api::accounts::{ChangePassword, ConfirmPasswordReset, RequestPasswordReset};
use airtext_api::identities::{IdentityKind, IdentityStatus};
use airtext_api::{AccountId, ErrorBody, ErrorCode};
use axum::extract::State;
use axum::http::StatusCode;
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::http::accounts::{
    check_new_password, hash_password, normalise_username, verify_password, MAX_PASSWORD_BYTES,
};
use crate::http::extract::{ApiJson, AuthDevice};
use crate::http::identities::{constant_time_eq, describe_ttl, new_code};
use crate::http::AppState;
use crate::rate_limit::RateKind;
use crate::routing::send_system_sms;
use crate::store::{ResetCodeRecord, SignOut};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(change_password))
        .routes(routes!(request_reset))
        .routes(routes!(confirm_reset))
}

/// Changes the password; the current one is required.
#[utoipa::path(
    post,
    path = "/v1/accounts/me/password",
    tag = "accounts",
    operation_id = "change_password",
    security(("device_token" = [])),
    request_body = ChangePassword,
    responses(
        (status = 204, description = "Changed. This device stays signed in; the others are signed out unless `sign_out_other_devices` is false"),
        (status = 400, description = "`invalid_field`: the new password is too short or too long; `bad_request`: malformed JSON", body = ErrorBody),
        (status = 401, description = "`bad_credentials`: the current password is wrong; `unauthorized`: no valid device token", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many password checks for this account; see Retry-After", body = ErrorBody),
    )
)]
async fn change_password(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiJson(request): ApiJson<ChangePassword>,
) -> ApiResult<StatusCode> {
    check_new_password(&request.new_password)?;
    check_current_password(&state, auth.account_id, request.current_password).await?;
    let sign_out = if request.sign_out_other_devices.unwrap_or(true) {
        SignOut::AllBut(auth.device_id)
    } else {
        SignOut::Nobody
    };
    let hash = hash_password(request.new_password).await?;
    state
        .store
        .set_password(auth.account_id, hash, sign_out)
        .await?;
    state.push.signed_out(auth.account_id);
    tracing::info!(account = %auth.account_id, device = %auth.device_id, ?sign_out, "password changed");
    Ok(StatusCode::NO_CONTENT)
}

/// Checks the signed-in account's password (before a change or a deletion): 401
/// `bad_credentials` when wrong. Limited per account like sign-in, so a stolen token cannot
/// be used to guess the password.
pub async fn check_current_password(
    state: &AppState,
    account: AccountId,
    password: String,
) -> ApiResult<()> {
    state
        .rate_limits
        .check(RateKind::SignIn, &format!("password:{account}"))
        .await?;
    let stored =
        state.store.account(account).await?.ok_or_else(|| {
            ApiError::unauthorized("this account no longer exists: sign in again")
        })?;
    let ok = password.len() <= MAX_PASSWORD_BYTES
        && verify_password(password, Some(stored.password_hash)).await?;
    if !ok {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::BadCredentials,
            "the password is wrong",
        ));
    }
    Ok(())
}

/// Sends a reset code to the account's verified e-mail addresses and phone numbers.
#[utoipa::path(
    post,
    path = "/v1/password-resets",
    tag = "accounts",
    operation_id = "request_password_reset",
    request_body = RequestPasswordReset,
    responses(
        (status = 202, description = "If the account exists and has a verified e-mail or phone, a code is on its way to them. The same answer either way"),
        (status = 400, description = "`invalid_field`: not a possible username; `bad_request`: malformed JSON", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many codes asked for this username; see Retry-After", body = ErrorBody),
    )
)]
async fn request_reset(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<RequestPasswordReset>,
) -> ApiResult<StatusCode> {
    let username = normalise_username(&request.username)
        .map_err(|e| ApiError::invalid_field(format!("username: {e}")))?;
    state
        .rate_limits
        .check(RateKind::VerificationCode, &format!("reset:{username}"))
        .await?;
    let task = state.clone();
    tokio::spawn(async move {
        if let Err(error) = send_reset_code(&task, &username).await {
            tracing::warn!(%error, "a password-reset code was not sent");
        }
    });
    Ok(StatusCode::ACCEPTED)
}

/// Makes, stores and sends a code, when the account exists and has somewhere to send it.
async fn send_reset_code(state: &AppState, username: &str) -> ApiResult<()> {
    let Some(account) = state.store.account_by_username(username).await? else {
        return Ok(());
    };
    let mut addresses = Vec::new();
    for identity in state.store.identities(account.id).await? {
        if identity.status != IdentityStatus::Verified {
            continue;
        }
        // Many requests must not flood one mailbox or phone: past the limit it is skipped.
        let key = format!("reset:{}:{}", identity.kind.as_str(), identity.value);
        if state
            .rate_limits
            .check(RateKind::VerificationCode, &key)
            .await
            .is_ok()
        {
            addresses.push((identity.kind, identity.value));
        }
    }
    if addresses.is_empty() {
        tracing::info!(account = %account.id, "password reset asked; no verified address to send a code to");
        return Ok(());
    }
    let code = new_code();
    let now = chrono::Utc::now();
    state
        .store
        .put_reset_code(ResetCodeRecord {
            account_id: account.id,
            code_hash: reset_code_hash(account.id, &code),
            expires_at: now + state.config.code_ttl(),
            attempts: 0,
        })
        .await?;
    let text = format!(
        "Your Airtext password reset code is {code}. It expires in {}. If you did not ask for it, ignore this message: your password stays as it is.",
        describe_ttl(state.config.verification.code_ttl_secs)
    );
    for (kind, value) in addresses {
        let sent = match kind {
            IdentityKind::Phone => send_system_sms(state, account.id, &value, &text).await,
            IdentityKind::Email => state
                .mailer
                .send(
                    account.id,
                    &value,
                    "Your Airtext password reset code",
                    &text,
                )
                .await
                .map_err(crate::http::identities::mail_error),
        };
        if let Err(error) = sent {
            tracing::warn!(account = %account.id, kind = kind.as_str(), %error, "a password-reset code could not be sent");
        }
    }
    tracing::info!(account = %account.id, "password-reset code sent");
    Ok(())
}

/// Sets a new password with the code that was sent; every device is signed out.
#[utoipa::path(
    post,
    path = "/v1/password-resets/confirm",
    tag = "accounts",
    operation_id = "confirm_password_reset",
    request_body = ConfirmPasswordReset,
    responses(
        (status = 204, description = "The password is changed and every device signed out: sign in with the new one"),
        (status = 400, description = "`wrong_code`: the code is wrong, expired or used up (or there is no such reset); `invalid_field`: not 6 digits, or a new password too short or too long", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: too many codes tried for this username; wait (see Retry-After) and ask for a new code", body = ErrorBody),
    )
)]
async fn confirm_reset(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<ConfirmPasswordReset>,
) -> ApiResult<StatusCode> {
    let username = normalise_username(&request.username)
        .map_err(|e| ApiError::invalid_field(format!("username: {e}")))?;
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
    check_new_password(&request.new_password)?;
    state
        .rate_limits
        .check(RateKind::VerificationCheck, &format!("reset:{username}"))
        .await
        .map_err(|error| match error {
            ApiError::RateLimited { retry_after } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyAttempts,
                format!(
                    "too many codes tried for this username: wait {} s, then ask for a new code",
                    retry_after.as_secs().max(1)
                ),
            ),
            other => other,
        })?;

    let Some(account) = state.store.account_by_username(&username).await? else {
        return Err(wrong_code());
    };
    let Some(pending) = state.store.reset_code(account.id).await? else {
        return Err(wrong_code());
    };
    let max = state.config.verification.max_attempts;
    if pending.attempts >= max || pending.expires_at <= chrono::Utc::now() {
        return Err(wrong_code());
    }
    let tries = match state.store.count_failed_reset(account.id).await {
        Ok(tries) => tries,
        // Used by a concurrent confirmation in between.
        Err(crate::store::StoreError::NotFound) => return Err(wrong_code()),
        Err(error) => return Err(error.into()),
    };
    let given = reset_code_hash(account.id, &code);
    if tries > max || !constant_time_eq(given.as_bytes(), pending.code_hash.as_bytes()) {
        return Err(wrong_code());
    }
    let hash = hash_password(request.new_password).await?;
    state
        .store
        .set_password(account.id, hash, SignOut::Everyone)
        .await?;
    state.push.signed_out(account.id);
    tracing::info!(account = %account.id, "password reset; every device signed out");
    Ok(StatusCode::NO_CONTENT)
}

fn wrong_code() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::WrongCode,
        "that code is wrong, has expired or was used up: check it, or ask for a new one (POST /v1/password-resets)",
    )
}

/// `sha256:` + hex of the code salted with its account and purpose.
fn reset_code_hash(account: AccountId, code: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"airtext password reset code v1\0");
    hasher.update(account.as_uuid().as_bytes());
    hasher.update(b"\0");
    hasher.update(code.as_bytes());
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_hashes_depend_on_account_and_code() {
        let a = AccountId::new();
        let b = AccountId::new();
        let base = reset_code_hash(a, "123456");
        assert_eq!(base, reset_code_hash(a, "123456"));
        assert_ne!(base, reset_code_hash(b, "123456"));
        assert_ne!(base, reset_code_hash(a, "123457"));
    }
}
