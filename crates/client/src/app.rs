//! What the app's window asks of the client core beyond the CLI's needs: choosing the gateway
//! before signing in, paging a thread, search hits with their conversation, the read marker,
//! deleting, retrying, the contact list and import, and the composer's path and SMS plan.
//!
//! These live here, not in the Tauri shell, so the shell stays a one-call-per-command layer
//! and the rules (which message a retry re-queues, what an import keeps) are tested without a
//! window.

use airtext_api::compose::TextPlan;
use airtext_api::contacts::{Contact, PathChoice};
use airtext_api::conversations::{Conversation, PatchConversation};
use airtext_api::messages::Direction;
use airtext_api::{ConversationId, DeviceId, ErrorBody, ErrorCode, SendStatus};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::cache::contacts;
use crate::cache::conversations::{self, CachedConversation};
use crate::cache::messages::{self, CachedMessage, LocalMessageId};
use crate::cloud::Cloud;
use crate::events::ClientEvent;
use crate::path::{self, Facts, SendPath};
use crate::secrets::DeviceFile;
use crate::{Client, Error, Result};

/// One search result: the conversation, and the message that matched (none when the peer or
/// the contact's name matched).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SearchHit {
    pub conversation: CachedConversation,
    pub message: Option<CachedMessage>,
}

/// Which path the next text to a peer takes, and why (what the composer shows).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PathDecision {
    pub path: SendPath,
    /// The path used at once if `path` fails (the contact allows fallback).
    pub fallback: Option<SendPath>,
    pub reason: String,
    /// Whether the peer is an Airtext account; `None` when unknown.
    pub in_network: Option<bool>,
    /// The contact's setting.
    pub choice: PathChoice,
}

/// A contact to import (from a vCard): a name and the addresses written in the source.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ContactInput {
    pub name: Option<String>,
    pub addresses: Vec<String>,
}

/// An address an import could not use, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SkippedContact {
    pub address: String,
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ImportResult {
    pub imported: Vec<Contact>,
    pub skipped: Vec<SkippedContact>,
}

/// How a text will go on the air (encoding, segments, characters left), from `airtext-sms`
/// (the same plan the gateway's `POST /v1/messages/plan` answers).
pub fn text_plan(text: &str) -> TextPlan {
    TextPlan::of(text)
}

/// Serial ports that may be a cellular modem (empty where none can be listed).
pub fn serial_ports() -> Vec<String> {
    tokio_serial::available_ports()
        .map(|ports| ports.into_iter().map(|p| p.port_name).collect())
        .unwrap_or_default()
}

/// Reads a proxy setting: empty means a direct connection.
pub fn parse_proxy(url: &str) -> Result<Option<crate::cloud::ProxyUrl>> {
    let url = url.trim();
    if url.is_empty() {
        return Ok(None);
    }
    url.parse().map(Some).map_err(|e| {
        Error::invalid(
            ErrorCode::InvalidField,
            format!("proxy {url:?}: {e} (use socks5h://HOST:PORT, e.g. socks5h://127.0.0.1:9050 for Tor)"),
        )
    })
}

/// Opens the cellular backend the modem setting names ([`crate::cellular::setting`]): empty
/// or `auto` is ModemManager's modem where ModemManager lists one (else none),
/// `modemmanager:ID` one of [`modems`], `none` none, anything else an AT modem's serial port.
pub async fn open_modem(setting: &str) -> Result<std::sync::Arc<dyn crate::cellular::Cellular>> {
    let setting = crate::cellular::ModemSetting::parse(setting);
    crate::cellular::open(&setting, None)
        .await
        .map_err(|e| Error::invalid(ErrorCode::Unavailable, e.to_string()))
}

/// The modems ModemManager sees, for Settings (empty where there is no ModemManager).
pub async fn modems() -> Vec<crate::cellular::ModemInfo> {
    crate::cellular::list_modems().await
}

impl Client {
    /// The gateway this device uses (or will sign in to), if one is known.
    pub fn gateway_url(&self) -> Result<Option<String>> {
        if let Some(gateway) = &self.inner.options.gateway {
            return Ok(Some(gateway.clone()));
        }
        Ok(DeviceFile::load(&self.inner.options.data_dir)?.gateway_url)
    }

    /// Checks that `url` is an Airtext gateway that answers (`/healthz`), then remembers it as
    /// the gateway to sign in to.
    pub async fn set_gateway_url(&self, url: &str) -> Result<()> {
        let url = url.trim();
        let cloud = Cloud::new(url, self.inner.options.proxy.clone())?;
        cloud.healthz().await?;
        let data_dir = &self.inner.options.data_dir;
        let mut device = DeviceFile::load(data_dir)?;
        device.gateway_url = Some(cloud.base().to_string().trim_end_matches('/').to_owned());
        device.save(data_dir)
    }

    /// Makes `url` the gateway to sign in to when this device has none yet (a launcher's
    /// suggestion, e.g. `scripts/run.sh` starting a local gateway); a chosen one is kept.
    pub fn suggest_gateway_url(&self, url: &str) -> Result<()> {
        let data_dir = &self.inner.options.data_dir;
        let mut device = DeviceFile::load(data_dir)?;
        if device.gateway_url.is_none() {
            device.gateway_url = Some(url.trim().trim_end_matches('/').to_owned());
            device.save(data_dir)?;
        }
        Ok(())
    }

    /// Creates an account without signing in (the app signs in as a separate step).
    pub async fn create_account(
        &self,
        username: &str,
        password: &str,
        email: Option<&str>,
    ) -> Result<()> {
        self.anonymous_cloud()?
            .sign_up(&airtext_api::accounts::SignUp {
                username: username.to_owned(),
                password: password.to_owned(),
                email: email.map(str::to_owned),
            })
            .await
            .map(drop)
    }

    pub async fn revoke_device(&self, id: DeviceId) -> Result<()> {
        self.session().await?.cloud.revoke_device(id).await
    }

    /// Every conversation, most recently updated first.
    pub async fn all_conversations(&self) -> Result<Vec<CachedConversation>> {
        self.conversations(u32::MAX).await
    }

    /// A page of the thread with `peer`, newest first, older than `before` when given. A peer
    /// with no conversation yet has an empty thread (a new conversation), not an error.
    pub async fn page(
        &self,
        peer: &str,
        before: Option<LocalMessageId>,
        limit: u32,
    ) -> Result<Vec<CachedMessage>> {
        let session = self.session().await?;
        let peer = session.normalise(peer)?.as_str().to_owned();
        Ok(session
            .cache
            .call(move |c| match conversations::by_peer(c, &peer)? {
                Some(id) => messages::list(c, id, limit, before),
                None => Ok(Vec::new()),
            })
            .await?)
    }

    /// Conversations whose peer or contact name contain `query`, then messages matching every
    /// word of it (newest first), each with its conversation.
    pub async fn search_hits(&self, query: &str, limit: u32) -> Result<Vec<SearchHit>> {
        let session = self.session().await?;
        let query = query.trim().to_owned();
        if query.is_empty() {
            return Ok(Vec::new());
        }
        Ok(session
            .cache
            .call(move |c| {
                let mut hits: Vec<SearchHit> = conversations::matching(c, &query, limit)?
                    .into_iter()
                    .map(|conversation| SearchHit {
                        conversation,
                        message: None,
                    })
                    .collect();
                for message in messages::search(c, &query, limit)? {
                    let Some(id) = conversations::by_peer(c, &message.peer)? else {
                        continue;
                    };
                    if let Some(conversation) = conversations::get(c, id)? {
                        hits.push(SearchHit {
                            conversation,
                            message: Some(message),
                        });
                    }
                }
                Ok(hits)
            })
            .await?)
    }

    /// Writes a text locally and returns it at once (queued); the live loop ([`Client::run`])
    /// sends it.
    pub async fn queue(&self, to: &str, body: &str) -> Result<CachedMessage> {
        self.session().await?.queue_text(to, body, None).await
    }

    /// Tries a text again now: a waiting one is made due at once; a failed one is queued again
    /// as a new text (with a new `client_id`, since the gateway refused the first one).
    pub async fn retry(&self, id: LocalMessageId) -> Result<CachedMessage> {
        let session = self.session().await?;
        let message = session
            .cache
            .call(move |c| messages::get(c, id))
            .await?
            .ok_or_else(|| Error::invalid(ErrorCode::NotFound, "no such message on this device"))?;
        if message.direction != Direction::Outbound {
            return Err(Error::invalid(
                ErrorCode::BadRequest,
                "only texts sent from here can be retried",
            ));
        }
        if message.status == SendStatus::Failed {
            return session.queue_text(&message.peer, &message.body, None).await;
        }
        session
            .cache
            .call(move |c| {
                Ok(c.execute(
                    "UPDATE outbox SET next_attempt_at = ?1 WHERE message = ?2",
                    rusqlite::params![crate::cache::to_ms(Utc::now()), id.0],
                )?)
            })
            .await?;
        session.outbox_wake.notify_one();
        Ok(message)
    }

    /// Marks the thread with `peer` read up to the message `up_to` (here at once, then at the
    /// gateway, which tells the account's other devices).
    pub async fn mark_read(&self, peer: &str, up_to: LocalMessageId) -> Result<()> {
        let session = self.session().await?;
        let message = session.cache.call(move |c| messages::get(c, up_to)).await?;
        let Some(message) = message else {
            return Ok(());
        };
        let (Some(conversation), Some(id)) = (message.conversation_id, message.id) else {
            // Not at the gateway yet: nothing unread can precede a text of our own.
            return Ok(());
        };
        let changed = session
            .cache
            .call(move |c| conversations::mark_read(c, conversation, &id.to_string(), 0))
            .await?;
        if changed.is_some() {
            session.emit_conversation(peer).await;
        }
        session.cloud.mark_read(conversation, id).await
    }

    /// Deletes a message on every device of the account. A text the gateway does not have yet
    /// cannot be deleted (it may be on its way): wait until it is sent or has failed.
    pub async fn delete_message(&self, id: LocalMessageId) -> Result<()> {
        let session = self.session().await?;
        let message = session
            .cache
            .call(move |c| messages::get(c, id))
            .await?
            .ok_or_else(|| Error::invalid(ErrorCode::NotFound, "no such message on this device"))?;
        let Some(server_id) = message.id else {
            return Err(Error::invalid(
                ErrorCode::BadRequest,
                "this text is still being sent: delete it once it is sent or has failed",
            ));
        };
        session.cloud.delete_message(server_id).await?;
        let deleted = session
            .cache
            .call(move |c| messages::delete(c, server_id))
            .await?;
        if deleted.is_some() {
            session.emit(ClientEvent::MessageDeleted { id: server_id });
            session.emit_conversation(&message.peer).await;
        }
        Ok(())
    }

    /// Deletes the thread with `peer` and every message in it, on every device of the
    /// account (the peer keeps theirs; the contact stays). Answers the conversation's id.
    pub async fn delete_conversation(&self, peer: &str) -> Result<ConversationId> {
        let session = self.session().await?;
        let (server_id, _) = gateway_conversation(&session, peer, "delete").await?;
        session.cloud.delete_conversation(server_id).await?;
        let deleted = session
            .cache
            .call(move |c| conversations::delete(c, server_id))
            .await?;
        for id in deleted.into_iter().flatten() {
            session.emit(ClientEvent::MessageDeleted { id });
        }
        Ok(server_id)
    }

    /// Names, archives or mutes the thread with `peer` on every device of the account (the
    /// peer sees none of it). Answers the conversation as the gateway now has it.
    pub async fn update_conversation(
        &self,
        peer: &str,
        patch: PatchConversation,
    ) -> Result<Conversation> {
        let session = self.session().await?;
        let (server_id, conversation) = gateway_conversation(&session, peer, "change").await?;
        let updated = session.cloud.update_conversation(server_id, &patch).await?;
        let stored = updated.clone();
        let local = session
            .cache
            .call(move |c| {
                conversations::set_state(c, &stored)?;
                conversations::get(c, conversation.local_id)
            })
            .await?;
        if let Some(conversation) = local {
            session.emit(ClientEvent::ConversationChanged { conversation });
        }
        Ok(updated)
    }

    pub async fn contacts(&self) -> Result<Vec<Contact>> {
        Ok(self
            .session()
            .await?
            .cache
            .call(|c| contacts::list(c))
            .await?)
    }

    /// Imports contacts: each address gets the name; an existing contact keeps its path and
    /// fallback. Addresses that cannot be used are reported, not fatal.
    pub async fn import_contacts(&self, input: Vec<ContactInput>) -> Result<ImportResult> {
        let mut result = ImportResult::default();
        for contact in input {
            for address in contact.addresses {
                let current = {
                    let session = self.session().await?;
                    match session.normalise(&address) {
                        Ok(a) => {
                            let key = a.as_str().to_owned();
                            session.cache.call(move |c| contacts::get(c, &key)).await?
                        }
                        Err(error) => {
                            result.skipped.push(SkippedContact {
                                address,
                                error: error.to_body(),
                            });
                            continue;
                        }
                    }
                };
                let path = current.map(|c| c.path).unwrap_or_default();
                match self
                    .set_path(&address, path, None, contact.name.clone())
                    .await
                {
                    Ok(saved) => result.imported.push(saved),
                    Err(Error::SignedOut) => return Err(Error::SignedOut),
                    Err(error) => result.skipped.push(SkippedContact {
                        address,
                        error: error.to_body(),
                    }),
                }
            }
        }
        Ok(result)
    }

    /// The path the next text to `peer` would take, and why.
    pub async fn decide_path(&self, peer: &str) -> Result<PathDecision> {
        let session = self.session().await?;
        let address = session.normalise(peer)?;
        let key = address.as_str().to_owned();
        let contact = session.cache.call(move |c| contacts::get(c, &key)).await?;
        let choice = contact.as_ref().map(|c| c.path).unwrap_or_default();
        let peer_is_phone = address.is_phone_like();
        let in_network = if peer_is_phone {
            session.in_network(address.as_str()).await
        } else {
            Some(true)
        };
        let decision = path::decide(&Facts {
            choice,
            fallback: contact.map(|c| c.fallback).unwrap_or(false),
            peer_is_phone,
            in_network,
            cellular: session.cellular.status(),
        });
        Ok(PathDecision {
            path: decision.path,
            fallback: decision.fallback,
            reason: decision.reason.to_owned(),
            in_network,
            choice,
        })
    }
}

/// Where a page of the conversation list continues: the last conversation of the previous
/// page (the list is ordered by `(updated_at, local_id)`, newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ConversationCursor {
    pub updated_at: chrono::DateTime<Utc>,
    pub local_id: conversations::LocalConversationId,
}

impl From<&CachedConversation> for ConversationCursor {
    fn from(c: &CachedConversation) -> Self {
        ConversationCursor {
            updated_at: c.updated_at,
            local_id: c.local_id,
        }
    }
}

/// Up to `limit` conversations, most recently updated first, strictly after `before` in that
/// order when given: a keyset page over the `(updated_at DESC, id DESC)` index, so the cost
/// of a page does not grow with the length of the list.
pub fn conversations_page_in(
    conn: &rusqlite::Connection,
    before: Option<ConversationCursor>,
    limit: u32,
) -> std::result::Result<Vec<CachedConversation>, crate::cache::CacheError> {
    let ids: Vec<i64> = match before {
        Some(b) => {
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM conversations WHERE (updated_at, id) < (?1, ?2)
                 ORDER BY updated_at DESC, id DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(
                rusqlite::params![crate::cache::to_ms(b.updated_at), b.local_id.0, limit],
                |row| row.get(0),
            )?;
            rows.collect::<rusqlite::Result<_>>()?
        }
        None => {
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM conversations ORDER BY updated_at DESC, id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit], |row| row.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        }
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(c) = conversations::get(conn, conversations::LocalConversationId(id))? {
            out.push(c);
        }
    }
    Ok(out)
}

impl Client {
    /// A page of the conversation list (most recently updated first), after `before` when
    /// given: what the app's window shows and scrolls through, one page at a time.
    pub async fn conversations_page(
        &self,
        before: Option<ConversationCursor>,
        limit: u32,
    ) -> Result<Vec<CachedConversation>> {
        let session = self.session().await?;
        Ok(session
            .cache
            .call(move |c| conversations_page_in(c, before, limit))
            .await?)
    }

    /// Unread texts in every conversation of the cache, not only the pages the window has
    /// loaded (what a screen reader announces for the list).
    pub async fn unread_total(&self) -> Result<u64> {
        let session = self.session().await?;
        Ok(session
            .cache
            .call(|c| conversations::unread_total(c))
            .await?)
    }
}

/// This device's conversation with `peer` and the gateway's id of it, for an action (`verb`)
/// that the gateway carries out on it.
async fn gateway_conversation(
    session: &crate::session::Session,
    peer: &str,
    verb: &str,
) -> Result<(ConversationId, CachedConversation)> {
    let address = session.normalise(peer)?.as_str().to_owned();
    let conversation = session
        .cache
        .call(move |c| match conversations::by_peer(c, &address)? {
            Some(id) => conversations::get(c, id),
            None => Ok(None),
        })
        .await?
        .ok_or_else(|| {
            Error::invalid(
                ErrorCode::NotFound,
                format!("no conversation with {peer} on this device"),
            )
        })?;
    let server_id = conversation.id.ok_or_else(|| {
        Error::invalid(
            ErrorCode::BadRequest,
            format!(
                "the first text of this conversation is still being sent: {verb} it once it is \
                 sent or has failed"
            ),
        )
    })?;
    Ok((server_id, conversation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    #[allow(clippy::unwrap_used, clippy::indexing_slicing)]
    async fn pages_the_conversation_list_by_update_time_and_id() {
        let dir = tempfile::tempdir().unwrap();
        let cache = crate::cache::Cache::open(&dir.path().join("c.sqlite3"))
            .await
            .unwrap();
        let all = cache
            .call(|c| {
                let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
                for i in 0..7i64 {
                    // Two conversations per instant: the id breaks the tie.
                    let t = at + chrono::Duration::seconds(i / 2);
                    conversations::ensure(c, None, &format!("+1206555{i:04}"), t)?;
                }
                conversations_page_in(c, None, u32::MAX)
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 7);
        let mut paged = Vec::new();
        let mut before = None;
        loop {
            let page = cache
                .call(move |c| conversations_page_in(c, before, 3))
                .await
                .unwrap();
            let done = page.len() < 3;
            before = page.last().map(ConversationCursor::from);
            paged.extend(page);
            if done {
                break;
            }
        }
        let peers = |l: &[CachedConversation]| l.iter().map(|c| c.peer.clone()).collect::<Vec<_>>();
        assert_eq!(peers(&paged), peers(&all));
        assert_eq!(all[0].peer, "+12065550006");
        assert_eq!(all[1].peer, "+12065550005");
        assert_eq!(all[2].peer, "+12065550004");
    }
}
