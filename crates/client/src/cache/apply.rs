//! Applying a page of the account's event log to the cache.
//!
//! One page and the cursor it moves to are written in one transaction: either both land or
//! neither does, so a crash (or a dropped transaction) never skips or double-applies an event.
//! Events at or below the stored cursor are skipped, and each event is idempotent on its own
//! (messages matched by server id or `client_id`, status through the reducer, contacts and
//! read markers compared before writing), so applying a page twice changes nothing.
//!
//! Cost (a new device pulls its whole history through here): per message one lookup and one
//! insert, nothing read back (the change event is built from the decoded message); per page
//! one FTS5 insert of all its bodies ([`messages::index_bodies`]: FTS5 writes a segment per
//! statement), and one update per conversation ([`conversations::Batch`]).

use airtext_api::contacts::{Contact, PathChoice};
use airtext_api::messages::Direction;
use airtext_api::sync::{EventKind, SyncEvent};
use rusqlite::Connection;

use super::conversations::{self, Batch, LocalConversationId};
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
    let mut batch = Batch::default();
    let mut unindexed = Vec::new();
    let mut page = Page {
        changes: &mut out.changes,
        touched: &mut touched,
        batch: &mut batch,
        unindexed: &mut unindexed,
        want_changes,
    };
    for (i, event) in events.iter().filter(|e| e.seq > cursor).enumerate() {
        if fail_after.0 == Some(i) {
            return Err(CacheError::Corrupt(format!(
                "injected failure after {i} events"
            )));
        }
        apply_one(&tx, event, &mut page)?;
        out.applied += 1;
    }
    batch.flush(&tx)?;
    messages::index_bodies(&tx, &unindexed)?;
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

/// What applying one event of a page adds to.
struct Page<'a> {
    changes: &'a mut Vec<ClientEvent>,
    touched: &'a mut Vec<LocalConversationId>,
    batch: &'a mut Batch,
    /// Messages inserted by this page, indexed together ([`messages::index_bodies`]).
    unindexed: &'a mut Vec<messages::LocalMessageId>,
    want_changes: bool,
}

fn apply_one(tx: &Connection, event: &SyncEvent, page: &mut Page<'_>) -> Result<(), CacheError> {
    let Page {
        changes,
        touched,
        batch,
        unindexed,
        want_changes,
    } = page;
    let want_changes = *want_changes;
    match &event.kind {
        EventKind::MessageCreated { message } => {
            let (stored, conversation) = messages::store_in_batch(tx, message, batch)?;
            if let Stored::Inserted(id) = stored {
                unindexed.push(id);
                if message.direction == Direction::Inbound {
                    conversations::unarchive(tx, conversation)?;
                }
            }
            if matches!(stored, Stored::Unchanged(_)) || !want_changes {
                return Ok(());
            }
            touched.push(conversation);
            match stored {
                Stored::Inserted(id) => changes.push(ClientEvent::MessageAdded {
                    message: messages::inserted(message, id),
                }),
                _ => {
                    if let Some(cached) = messages::get(tx, stored.id())? {
                        changes.push(ClientEvent::MessageUpdated { message: cached });
                    }
                }
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
            // The delete trigger takes the row out of the index: it must be in it.
            messages::index_bodies(tx, unindexed)?;
            unindexed.clear();
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
            // The marker sets `unread`: the page's deferred touches go first.
            batch.flush(tx)?;
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
        EventKind::ContactDeleted { address } => {
            if contacts::delete(tx, address)? {
                // The app is told as for any change: no row is the default setting.
                changes.push(ClientEvent::ContactChanged {
                    contact: Contact {
                        address: address.clone(),
                        path: PathChoice::default(),
                        fallback: false,
                        name: None,
                        blocked: false,
                        updated_at: event.at,
                    },
                });
            }
        }
        EventKind::ConversationDeleted { conversation_id } => {
            // The delete trigger takes the rows out of the index: they must be in it; the
            // page's deferred touches may name the conversation, so they go first.
            messages::index_bodies(tx, unindexed)?;
            unindexed.clear();
            batch.flush(tx)?;
            batch.forget(*conversation_id);
            if let Some(deleted) = conversations::delete(tx, *conversation_id)? {
                changes.extend(
                    deleted
                        .into_iter()
                        .map(|id| ClientEvent::MessageDeleted { id }),
                );
            }
        }
        EventKind::ConversationUpdated { conversation } => {
            if let Some(local) = conversations::set_state(tx, conversation)? {
                touched.push(local);
            }
        }
        EventKind::Unknown => {}
    }
    Ok(())
}
