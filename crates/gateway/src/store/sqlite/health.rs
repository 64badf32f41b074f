//! Whether the SQLite store can write, for `/healthz`.
//!
//! A database that answers reads but cannot commit (a full disk, a file the OS no longer lets
//! grow) must take the node out of rotation, or a load balancer keeps sending it writes that
//! all answer 503. The writer records why its last commit failed ([`WriteHealth`]) and forgets
//! it at the next commit that succeeds. While a failure stands, the health check commits a
//! probe ([`Op::Probe`]: one row with a 64 KiB padding, so it needs room as a write does):
//! its outcome is the answer, and its success clears the failure once the disk has room
//! again, even when no other write comes (a node out of rotation gets none).

use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

use super::super::rows::micros;
use super::super::StoreResult;
use super::conn::run;
use super::writer::{self, Effects, Out};

/// The padding a probe writes: room for a few ordinary writes.
const PROBE_BYTES: i64 = 64 * 1024;

/// Why the last commit failed, until one succeeds.
#[derive(Debug, Default)]
pub(super) struct WriteHealth {
    failure: Mutex<Option<String>>,
}

impl WriteHealth {
    /// A commit failed: writes answer errors until one succeeds.
    pub(super) fn failed(&self, reason: &str) {
        *self.lock() = Some(reason.to_owned());
    }

    /// A commit succeeded.
    pub(super) fn succeeded(&self) {
        let mut failure = self.lock();
        if failure.is_some() {
            tracing::info!("the SQLite store commits again");
            *failure = None;
        }
    }

    /// Why the last commit failed, if no commit has succeeded since.
    pub(super) fn failure(&self) -> Option<String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.failure.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The health check's write.
#[derive(Debug)]
pub(super) enum Op {
    Probe { at: DateTime<Utc> },
}

impl Op {
    /// See [`writer::Op::changes_accounts`]: no catch-all arm.
    pub(super) fn changes_accounts(&self) -> bool {
        match self {
            Op::Probe { .. } => false,
        }
    }
}

impl From<Op> for writer::Op {
    fn from(op: Op) -> Self {
        writer::Op::Health(op)
    }
}

/// Runs the probe in the writer's open transaction.
pub(super) fn execute(conn: &Connection, op: &Op, _fx: &mut Effects<'_>) -> StoreResult<Out> {
    match *op {
        Op::Probe { at } => {
            run(
                conn,
                "INSERT INTO health_probes (id, probed_at, padding) VALUES (1, ?1, zeroblob(?2)) \
                 ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at, \
                     padding = excluded.padding",
                params![micros(at), PROBE_BYTES],
            )?;
            Ok(Out::Done)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_success_clears_the_failure() {
        let health = WriteHealth::default();
        assert_eq!(health.failure(), None);
        health.failed("commit failed: database or disk is full");
        health.failed("commit failed: disk I/O error");
        assert_eq!(
            health.failure().as_deref(),
            Some("commit failed: disk I/O error")
        );
        health.succeeded();
        assert_eq!(health.failure(), None);
    }
}
