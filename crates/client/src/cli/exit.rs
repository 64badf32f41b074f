//! The exit codes of `airtext`: documented (docs/cli.md) and stable, so scripts can branch
//! on them. An error prints one line on standard error; the code says what kind it was.

/// Done.
pub const DONE: u8 = 0;
/// Refused or failed; the line on standard error says why and what to fix.
pub const REFUSED: u8 = 1;
/// The command line itself is wrong (clap's message and usage on standard error).
pub const USAGE: u8 = 2;
/// The text is safely in this device's outbox and will be sent (by the next `airtext sync`,
/// a running `airtext watch` or the app): sending it again would send it twice.
pub const QUEUED: u8 = 3;
/// The gateway (or the proxy) could not be reached, or answered that it cannot serve now;
/// nothing was changed there. Trying again later may work.
pub const UNREACHABLE: u8 = 4;

/// What a command wrote waits in the outbox ([`QUEUED`]); the text says why it has not gone.
#[derive(Debug, thiserror::Error)]
#[error("queued, will be sent: {0}")]
pub struct Queued(pub String);

/// The exit code for an error a command returned.
pub fn code_for(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<Queued>().is_some() {
        return QUEUED;
    }
    let unreachable = error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<crate::Error>(),
            Some(
                crate::Error::Network { .. }
                    | crate::Error::Proxy { .. }
                    | crate::Error::Api {
                        status: 502..=504,
                        ..
                    }
            )
        )
    });
    if unreachable {
        UNREACHABLE
    } else {
        REFUSED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_error_has_its_code() {
        let queued = anyhow::Error::new(Queued("no network".into()));
        assert_eq!(code_for(&queued), QUEUED);
        let network = anyhow::Error::new(crate::Error::Network {
            url: "http://127.0.0.1:9".into(),
            detail: "refused".into(),
        })
        .context("syncing");
        assert_eq!(code_for(&network), UNREACHABLE);
        let refused = anyhow::Error::new(crate::Error::Api {
            status: 409,
            body: airtext_api::ErrorBody {
                code: airtext_api::ErrorCode::UsernameTaken,
                message: "pick another".into(),
            },
        });
        assert_eq!(code_for(&refused), REFUSED);
        assert_eq!(code_for(&anyhow::anyhow!("bad input")), REFUSED);
    }
}
