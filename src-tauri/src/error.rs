//! The error every command returns: the shared `{code, message}` vocabulary (airtext-api's
//! [`ErrorCode`]), so the window handles the shell's errors exactly like the gateway's.
//! Never a bare string: the UI branches on `code`.

use airtext_api::ErrorCode;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct IpcError {
    pub code: ErrorCode,
    pub message: String,
}

impl IpcError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        IpcError {
            code,
            message: message.into(),
        }
    }
}

impl From<airtext_client::Error> for IpcError {
    fn from(error: airtext_client::Error) -> Self {
        let body = error.to_body();
        IpcError {
            code: body.code,
            message: body.message,
        }
    }
}

impl std::fmt::Display for IpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

pub type IpcResult<T> = Result<T, IpcError>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn keeps_the_client_code_and_serialises_as_error_body() {
        let e: IpcError = airtext_client::Error::SignedOut.into();
        assert_eq!(e.code, ErrorCode::Unauthorized);
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["code"], "unauthorized");
        assert!(json["message"].as_str().unwrap().contains("not signed in"));
    }
}
