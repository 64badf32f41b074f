//! The error vocabulary: every failure crosses the wire (HTTP, and the app's IPC) as
//! `{"code": "snake_case", "message": "what to fix"}`. Clients branch on `code`, people read
//! `message`.

use serde::{Deserialize, Serialize};

/// Every error code the gateway or the client core can return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request is malformed: bad JSON, a wrong type, an unknown field, a bad query parameter.
    BadRequest,
    /// A field has a value outside what is allowed (length, range, format).
    InvalidField,
    /// An address (phone number, username, e-mail) could not be read.
    InvalidAddress,
    /// A country code that is not known.
    UnknownCountry,
    /// The body of a message is empty or too long.
    InvalidBody,
    /// No valid `Authorization: Bearer` device token.
    Unauthorized,
    /// Wrong username or password.
    BadCredentials,
    /// The thing does not exist, or belongs to another account.
    NotFound,
    /// A username or e-mail address that matches nobody.
    UnknownRecipient,
    UsernameTaken,
    EmailTaken,
    NumberTaken,
    AlreadyHasNumber,
    /// Sending to a phone outside Airtext needs a number of your own.
    NoNumber,
    /// The identity is already verified.
    AlreadyVerified,
    WrongCode,
    CodeExpired,
    TooManyAttempts,
    /// Too many requests; see `Retry-After`.
    RateLimited,
    PayloadTooLarge,
    UnsupportedMediaType,
    MethodNotAllowed,
    /// The recipient texted STOP to this number.
    RecipientOptedOut,
    /// The gateway could not do it now; try again later.
    Unavailable,
    /// Something broke on the gateway; details are in its log, not here.
    Internal,
    /// The recipient is an emergency number: call or text emergency services from a phone.
    EmergencyNumber,
    /// A code this client does not know (a newer gateway). Stays last (`serde(other)`).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::InvalidAddress => "invalid_address",
            ErrorCode::UnknownCountry => "unknown_country",
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::BadCredentials => "bad_credentials",
            ErrorCode::NotFound => "not_found",
            ErrorCode::UnknownRecipient => "unknown_recipient",
            ErrorCode::UsernameTaken => "username_taken",
            ErrorCode::EmailTaken => "email_taken",
            ErrorCode::NumberTaken => "number_taken",
            ErrorCode::AlreadyHasNumber => "already_has_number",
            ErrorCode::NoNumber => "no_number",
            ErrorCode::AlreadyVerified => "already_verified",
            ErrorCode::WrongCode => "wrong_code",
            ErrorCode::CodeExpired => "code_expired",
            ErrorCode::TooManyAttempts => "too_many_attempts",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::RecipientOptedOut => "recipient_opted_out",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::EmergencyNumber => "emergency_number",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_names() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::InvalidAddress,
            ErrorCode::UsernameTaken,
            ErrorCode::TooManyAttempts,
            ErrorCode::RecipientOptedOut,
            ErrorCode::EmergencyNumber,
        ] {
            let json = serde_json::to_value(code).unwrap_or_default();
            assert_eq!(json, serde_json::Value::String(code.as_str().into()));
        }
    }

    #[test]
    fn unknown_codes_from_a_newer_gateway_still_parse() {
        let body: Result<ErrorBody, _> =
            serde_json::from_str(r#"{"code":"brand_new","message":"x"}"#);
        assert_eq!(body.map(|b| b.code).ok(), Some(ErrorCode::Unknown));
    }
}
