//! The one error type of the client core. Every variant maps to an [`ErrorCode`] of the API's
//! vocabulary ([`Error::code`]), so the CLI, the app's IPC and the gateway speak one language:
//! callers branch on the code, people read the message.

use airtext_api::{ErrorBody, ErrorCode};

use crate::cellular::CellularError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gateway answered with an error body.
    #[error("{}", .body.message)]
    Api { status: u16, body: ErrorBody },
    /// The gateway could not be reached (no route, refused, timed out, TLS).
    #[error("cannot reach the gateway at {url}: {detail}")]
    Network { url: String, detail: String },
    /// The proxy could not be reached or refused the connection. Never followed by a direct
    /// connection.
    #[error("cannot connect through the proxy {proxy}: {detail}")]
    Proxy { proxy: String, detail: String },
    /// The gateway sent something this client cannot read.
    #[error("the gateway's reply could not be read: {0}")]
    Protocol(String),
    /// This device is not signed in.
    #[error("not signed in: run `airtext login USERNAME` (or `airtext signup USERNAME`) first")]
    SignedOut,
    /// Something the caller gave that cannot be used, with what to fix.
    #[error("{message}")]
    Invalid { code: ErrorCode, message: String },
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    #[error(transparent)]
    Cellular(#[from] CellularError),
    /// The device configuration (data directory, token store) could not be read or written.
    #[error("{0}")]
    Config(String),
}

impl Error {
    pub fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Invalid {
            code,
            message: message.into(),
        }
    }

    /// The code of the API vocabulary that describes this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Api { body, .. } => body.code,
            Error::Network { .. } | Error::Proxy { .. } | Error::Cellular(_) => {
                ErrorCode::Unavailable
            }
            Error::Protocol(_) | Error::Cache(_) | Error::Config(_) => ErrorCode::Internal,
            Error::SignedOut => ErrorCode::Unauthorized,
            Error::Invalid { code, .. } => *code,
        }
    }

    /// The `{code, message}` form, for IPC and `--json` errors.
    pub fn to_body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code(),
            message: self.to_string(),
        }
    }

    /// Whether trying again later may succeed (the network, the proxy, a busy or failing
    /// gateway), as opposed to a request the gateway refused for good.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Network { .. } | Error::Proxy { .. } => true,
            Error::Api { status, body } => {
                *status >= 500
                    || *status == 429
                    || *status == 408
                    || body.code == ErrorCode::Unavailable
                    || body.code == ErrorCode::RateLimited
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_keep_the_gateway_code_and_message() {
        let e = Error::Api {
            status: 409,
            body: ErrorBody {
                code: ErrorCode::UsernameTaken,
                message: "pick another".into(),
            },
        };
        assert_eq!(e.code(), ErrorCode::UsernameTaken);
        assert_eq!(e.to_string(), "pick another");
        assert!(!e.is_transient());
        let busy = Error::Api {
            status: 503,
            body: ErrorBody {
                code: ErrorCode::Unavailable,
                message: "later".into(),
            },
        };
        assert!(busy.is_transient());
        assert_eq!(Error::SignedOut.code(), ErrorCode::Unauthorized);
    }
}
