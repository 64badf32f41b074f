//! Applying a page of the account's event log to the cache.
//!
//! One page and the cursor it moves to are written in one transaction: either both land or
//! neither does, so a crash (or a dropped transaction) never skips or double-applies an event.
//! Events at or below the stored cursor are skipped, and each event is idempotent on its own
//! (messages matched by server id or `client_id`, status through the reducer, contacts and
//! read markers compared before writing), so applying a page twice changes nothing.

use airtext_api::sync::{EventKind, SyncEvent};
use rusqlite::Connection;

use super::conversations::{self, LocalConversationId};
use super::messages::{self, Stored};
use super::{contacts, sync_state, CacheError};
use crate::events::ClientEvent;

/// What applying a page did.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// Events newly applied (skipped ones, at or below the cursor, are not counted).
    pub applied: u64,
    /// The cursor after the page.
    pub cursor: i64,
    /// What changed, for the app.
    pub changes: Vec<ClientEvent>,
}

/// Test hook: fail after applying this many events of a page, inside its transaction.
#[derive(Debug, Clone, Copy, Default)]
pub struct FailAfter(pub Option<usize>);

/// Applies `events` and moves the cursor to `next`, in one transaction. `want_changes`
/// asks for the [`ClientEvent`]s (nobody listening saves reading every row back).
pub fn apply_page(
    conn: &mut Connection,
    events: &[SyncEvent],
    next: i64,
    fail_after: FailAfter,
    want_changes: bool,
) -> Result<Applied, CacheError> {
    let tx = conn.transaction()?;
    let cursor = sync_state::cursor(&tx)?;
    let mut out = Applied {
        cursor,
        ..Applied::default()
    };
    let mut touched: Vec<LocalConversationId> = Vec::new();
    for (i, event) in events.iter().filter(|e| e.seq > cursor).enumerate() {
        if fail_after.0 == Some(i) {
            return Err(CacheError::Corrupt(format!(
                "injected failure after {i} events"
            )));
        }
        apply_one(&tx, event, &mut out.changes, &mut touched, want_changes)?;
        out.applied += 1;
    }
    if next > cursor {
        sync_state::set_cursor(&tx, next)?;
        out.cursor = next;
    }
    if !want_changes {
        out.changes.clear();
        touched.clear();
    }
    touched.sort();
    touched.dedup();
    for id in touched {
        if let Some(conversation) = conversations::get(&tx, id)? {
            out.changes
                .push(ClientEvent::ConversationChanged { conversation });
        }
    }
    tx.commit()?;
    Ok(out)
}

fn apply_one(
    tx: &Connection,
    event: &SyncEvent,
    changes: &mut Vec<ClientEvent>,
    touched: &mut Vec<LocalConversationId>,
    want_changes: bool,
) -> Result<(), CacheError> {
    match &event.kind {
        EventKind::MessageCreated { message } => {
            let stored = messages::store_server_copy(tx, message)?;
            if matches!(stored, Stored::Unchanged(_)) || !want_changes {
                return Ok(());
            }
            if let Some(cached) = messages::get(tx, stored.id())? {
                if let Some(conversation) = conversations::by_peer(tx, &cached.peer)? {
                    touched.push(conversation);
                }
                changes.push(match stored {
                    Stored::Inserted(_) => ClientEvent::MessageAdded { message: cached },
                    _ => ClientEvent::MessageUpdated { message: cached },
                });
            }
        }
        EventKind::MessageStatus {
            message_id,
            status,
            failure_reason,
            updated_at,
            ..
        } => {
            if let Some(local) = messages::apply_status(
                tx,
                *message_id,
                *status,
                failure_reason.as_deref(),
                *updated_at,
            )? {
                if let Some(cached) = messages::get(tx, local)? {
                    changes.push(ClientEvent::MessageUpdated { message: cached });
                }
            }
        }
        EventKind::MessageDeleted { message_id, .. } => {
            if let Some(conversation) = messages::delete(tx, *message_id)? {
                touched.push(conversation);
                changes.push(ClientEvent::MessageDeleted { id: *message_id });
            }
        }
        EventKind::ConversationRead {
            conversation_id,
            up_to,
            unread,
        } => {
            if let Some(local) =
                conversations::mark_read(tx, *conversation_id, &up_to.to_string(), *unread)?
            {
                touched.push(local);
            }
        }
        EventKind::ContactUpdated { contact } => {
            if contacts::put(tx, contact)? {
                changes.push(ClientEvent::ContactChanged {
                    contact: contact.clone(),
                });
            }
        }
        EventKind::Unknown => {}
    }
    Ok(())
}
