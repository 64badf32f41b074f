//! `ApiError`: the one error type of every handler.
//!
//! Its body is always `{"code", "message"}`. 4xx errors carry a message that says what to fix;
//! a 5xx is logged here with its detail and returned without it, so nothing internal leaks.

use std::time::Duration;

use airtext_api::identities::IdentityKind;
use airtext_api::{ErrorBody, ErrorCode};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::store::{Conflict, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The caller's mistake (4xx): `message` says what to fix.
    #[error("{message}")]
    Client {
        status: StatusCode,
        code: ErrorCode,
        message: String,
    },
    /// Too many requests; retry after the given time.
    #[error("too many requests; retry in {}s", retry_after.as_secs().max(1))]
    RateLimited { retry_after: Duration },
    /// Our mistake or an outage (5xx): logged with detail, returned without.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
    /// The store is shutting down or unreachable.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::Client {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    pub fn invalid_field(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidField, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no such {what} in this account"),
        )
    }

    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(error.into())
    }

    /// The code this error crosses the wire with.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Client { code, .. } => *code,
            ApiError::RateLimited { .. } => ErrorCode::RateLimited,
            ApiError::Internal(_) => ErrorCode::Internal,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
        }
    }
}

/// Maps a store error, naming `what` when it was not found (`no such message in this account`).
pub fn not_found_as(what: &'static str) -> impl FnOnce(StoreError) -> ApiError {
    move |error| match error {
        StoreError::NotFound => ApiError::not_found(what),
        other => other.into(),
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => ApiError::not_found("item"),
            StoreError::Conflict(Conflict::Username) => ApiError::conflict(
                ErrorCode::UsernameTaken,
                "that username is taken: choose another",
            ),
            StoreError::Conflict(Conflict::Email) => ApiError::conflict(
                ErrorCode::EmailTaken,
                "that e-mail address belongs to another account: sign in to it, or use another address",
            ),
            StoreError::Conflict(Conflict::NumberTaken) => ApiError::conflict(
                ErrorCode::NumberTaken,
                "that number is no longer available: search again and pick another",
            ),
            StoreError::Conflict(Conflict::AlreadyHasNumber) => ApiError::conflict(
                ErrorCode::AlreadyHasNumber,
                "this account already has a number: release it first to take another",
            ),
            StoreError::Conflict(Conflict::IdentityTaken(kind)) => {
                let (code, what) = match kind {
                    IdentityKind::Phone => (ErrorCode::NumberTaken, "phone number"),
                    IdentityKind::Email => (ErrorCode::EmailTaken, "e-mail address"),
                };
                ApiError::conflict(
                    code,
                    format!("another account has verified that {what}: use one of your own"),
                )
            }
            StoreError::OptedOut => ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::RecipientOptedOut,
                "the recipient replied STOP to your number: you cannot text them until they reply START",
            ),
            StoreError::Unavailable(detail) => ApiError::Unavailable(detail),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            ApiError::Client {
                status, message, ..
            } => (*status, message.clone()),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, self.to_string()),
            ApiError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "something went wrong on the gateway; it has been logged. Try again later"
                        .to_owned(),
                )
            }
            ApiError::Unavailable(detail) => {
                tracing::warn!(detail, "store unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the gateway cannot take this right now; try again shortly".to_owned(),
                )
            }
        };
        let mut response = (
            status,
            Json(ErrorBody {
                code: self.code(),
                message,
            }),
        )
            .into_response();
        if let ApiError::RateLimited { retry_after } = &self {
            let secs = retry_after.as_secs().max(1).to_string();
            if let Ok(value) = HeaderValue::from_str(&secs) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
