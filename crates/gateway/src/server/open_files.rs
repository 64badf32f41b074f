//! The open-file limit: every connection is a descriptor, and a soft limit of 1,024 (the usual
//! default) runs out long before the machine does, after which `accept` fails for everyone.
//! The gateway raises its soft limit to the hard limit at start; an operator who wants less
//! sets the hard limit (`LimitNOFILE=` in systemd, `ulimit -Hn`).

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit in force after
/// (`None`: unlimited, or unknown on this platform).
#[cfg(unix)]
pub fn raise_to_hard_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return limit.current;
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::debug!(
                from = ?limit.current,
                to = ?limit.maximum,
                "raised the open-file limit to the hard limit"
            );
            limit.maximum
        }
        Err(error) => {
            // macOS refuses values above OPEN_MAX; keep what we have.
            tracing::warn!(%error, soft = ?limit.current, "cannot raise the open-file limit");
            limit.current
        }
    }
}

#[cfg(not(unix))]
pub fn raise_to_hard_limit() -> Option<u64> {
    None
}

#[cfg(all(test, unix))]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let after = super::raise_to_hard_limit();
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(limit.current, limit.maximum);
        assert_eq!(after, limit.current);
    }
}
