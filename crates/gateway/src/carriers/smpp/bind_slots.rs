//! Bind slots: how many gateway nodes may be bound to one SMSC at once.
//!
//! An SMSC allows an account a fixed number of binds (`max_binds`). One node holds at most one
//! bind per carrier; with several nodes on one PostgreSQL, a node binds only while it holds one
//! of the carrier's `max_binds` slots: a session-level advisory lock
//! (`pg_try_advisory_lock(key, slot)`) on a connection of its own. So:
//! - at most `max_binds` nodes are bound at any moment, however many run;
//! - a node that dies (or loses its database connection) loses its lock with its connection,
//!   and a waiting node takes the slot and binds within one retry interval;
//! - a node that finds every slot taken does not bind; its carrier reports itself *bound
//!   elsewhere*, so the queue leaves texts for that carrier to a node that holds a bind
//!   instead of failing over to a dearer carrier.
//!
//! The holder checks its lock connection every [`KEEPALIVE`]; when it is gone the lock is
//! gone too, and the session unbinds at once. Another node may take the freed slot before the
//! holder notices, so a node that takes a slot waits `SmppTuning::slot_settle` (longer than
//! noticing plus unbinding) before it binds: the limit holds through a hand-over too.
//!
//! The key is the carrier's name and the database schema (so test schemas, or two
//! deployments sharing a server, never meet); slots are numbered 0..max_binds.
//!
//! On SQLite one process owns the database, so it is the only node: its one bind is always
//! within any `max_binds` ≥ 1 and no slot is taken.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio_util::sync::CancellationToken;

/// How often a holder checks that its lock connection still lives.
pub const KEEPALIVE: Duration = Duration::from_secs(1);
/// How long that check may take before the slot counts as lost.
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a database call of the slots may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a node's right to bind comes from.
#[derive(Debug, Clone)]
pub enum BindSlots {
    /// This node is the only one (SQLite): it may always hold its one bind.
    OnlyNode,
    /// Nodes share `slots` binds through advisory locks in PostgreSQL.
    Shared {
        options: Box<PgConnectOptions>,
        carrier: String,
        slots: u32,
    },
}

/// Why a slot could not be looked for.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("cannot reach the database to take a bind slot: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the database did not answer within {0:?}")]
    Timeout(Duration),
}

/// What a look for a slot found.
#[derive(Debug)]
pub enum SlotLook {
    Held(HeldSlot),
    /// Every slot is held by other nodes.
    AllTaken {
        slots: u32,
    },
}

impl BindSlots {
    /// The slots of `carrier` for a gateway on `database_url`.
    pub fn for_database(
        database_url: &str,
        carrier: &str,
        max_binds: u32,
    ) -> Result<Self, sqlx::Error> {
        if crate::store::is_postgres(database_url) {
            let options = PgConnectOptions::from_str(database_url)?
                .application_name("airtext-gateway smpp bind slot");
            Ok(BindSlots::Shared {
                options: Box::new(options),
                carrier: carrier.to_owned(),
                slots: max_binds.max(1),
            })
        } else {
            Ok(BindSlots::OnlyNode)
        }
    }

    /// Takes a free slot if there is one.
    pub async fn take(&self) -> Result<SlotLook, SlotError> {
        let BindSlots::Shared {
            options,
            carrier,
            slots,
        } = self
        else {
            return Ok(SlotLook::Held(HeldSlot::unconditional()));
        };
        let look = async {
            let mut conn = options.connect().await?;
            let schema: String = sqlx::query_scalar("SELECT current_schema()")
                .fetch_one(&mut conn)
                .await?;
            let key = format!("airtext smpp bind {schema} {carrier}");
            for slot in 0..*slots {
                let slot = i32::try_from(slot).unwrap_or(i32::MAX);
                let taken: bool =
                    sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1), $2)")
                        .bind(&key)
                        .bind(slot)
                        .fetch_one(&mut conn)
                        .await?;
                if taken {
                    return Ok(SlotLook::Held(HeldSlot::keep(conn, slot)));
                }
            }
            conn.close().await?;
            Ok(SlotLook::AllTaken { slots: *slots })
        };
        tokio::time::timeout(CALL_TIMEOUT, look)
            .await
            .map_err(|_| SlotError::Timeout(CALL_TIMEOUT))?
    }
}

/// A slot this node holds; released when dropped.
#[derive(Debug)]
pub struct HeldSlot {
    /// Which slot (0-based), when it is a shared one.
    pub slot: Option<i32>,
    /// Cancelled when the lock is lost (its connection died).
    lost: CancellationToken,
    /// Cancelled to release the lock (on drop).
    release: CancellationToken,
}

impl HeldSlot {
    fn unconditional() -> Self {
        HeldSlot {
            slot: None,
            lost: CancellationToken::new(),
            release: CancellationToken::new(),
        }
    }

    /// Keeps `conn` (and so its lock) alive until released, watching that it still lives.
    fn keep(mut conn: PgConnection, slot: i32) -> Self {
        let lost = CancellationToken::new();
        let release = CancellationToken::new();
        let (lost_tx, release_rx) = (lost.clone(), release.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(KEEPALIVE);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = release_rx.cancelled() => {
                        // Closing the connection releases its session locks.
                        let _ = tokio::time::timeout(CALL_TIMEOUT, conn.close()).await;
                        return;
                    }
                    _ = every.tick() => {}
                }
                let alive = tokio::time::timeout(PING_TIMEOUT, conn.ping()).await;
                if !matches!(alive, Ok(Ok(()))) {
                    lost_tx.cancel();
                    return;
                }
            }
        });
        HeldSlot {
            slot: Some(slot),
            lost,
            release,
        }
    }

    /// Resolves when the slot has been lost (the session must end at once).
    pub async fn lost(&self) {
        self.lost.cancelled().await;
    }

    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }
}

impl Drop for HeldSlot {
    fn drop(&mut self) {
        self.release.cancel();
    }
}
