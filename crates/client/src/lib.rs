//! The Airtext client core: everything the app does except drawing it. The CLI (`airtext`)
//! and the Tauri app are thin layers over [`Client`].
//!
//! - [`app`]: what the app's window needs beyond the CLI (paging, search hits, retry, import).
//! - [`cache`]: the local SQLite cache (one file per signed-in profile, FTS5 search).
//! - [`cloud`]: API v1 over HTTP and the `/v1/stream` WebSocket, through an optional proxy.
//! - [`sync`]: mirrors the account's event log into the cache, crash-safe and idempotent.
//! - [`outbox`]: texts written locally first, sent when a path is available, never twice.
//! - [`path`]: the per-contact path policy (cloud or cellular).
//! - [`cellular`]: the device's own SMS path (the [`cellular::Cellular`] trait and backends).
//! - [`secrets`]: the device token's store ([`secrets::TokenStore`]).
//! - [`private`]: the data directory and cache files, readable by their owner only.
//! - [`events`]: typed change notifications for the UI.
//! - `cli` (feature `cli`, on by default): the `airtext` command line.

pub mod app;
pub mod cache;
pub mod cellular;
#[cfg(feature = "cli")]
pub mod cli;
pub mod cloud;
pub mod error;
pub mod events;
pub mod outbox;
pub mod path;
pub mod private;
pub mod secrets;
pub mod session;
pub mod sync;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use airtext_api::accounts::{Me, SignIn, SignUp};
use airtext_api::contacts::{Contact, PathChoice, PutContact};
use airtext_api::identities::{
    AddIdentity, Identity, IdentityKind, IdentityPending, IdentityStatus,
};
use airtext_api::{ErrorCode, IdentityId};
use tokio::sync::{broadcast, mpsc, watch, Mutex, Notify, RwLock};
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};

use crate::cache::conversations::{self, CachedConversation};
use crate::cache::messages::{self, CachedMessage};
use crate::cache::profile::{self, Profile};
use crate::cache::{contacts, Cache};
use crate::cellular::{Cellular, NoCellular};
use crate::cloud::stream::{self, StreamSignal};
use crate::cloud::{Cloud, ProxyUrl};
use crate::events::ClientEvent;
use crate::outbox::OutboxReport;
use crate::secrets::{DeviceFile, TokenStore};
use crate::session::Session;
use crate::sync::SyncReport;

/// How long the live loop goes without looking at the outbox: another process on this
/// profile (an `airtext send` that exited 3, the app beside the CLI) may have queued a text,
/// and nothing else would tell this one.
const OUTBOX_LOOK: std::time::Duration = std::time::Duration::from_secs(10);

/// How a [`Client`] is set up.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// One directory = one device: its sign-in record and its cache files.
    pub data_dir: PathBuf,
    /// The gateway to use; when `None`, the one this device signed in to.
    pub gateway: Option<String>,
    /// Every connection goes through it when set (never directly if it is down).
    pub proxy: Option<ProxyUrl>,
    pub cellular: Arc<dyn Cellular>,
    pub tokens: Arc<dyn TokenStore>,
    /// Region for reading national phone numbers (e.g. `US`).
    pub region: airtext_sms::Region,
}

impl ClientOptions {
    /// Options for `data_dir` with no cellular, the token in the data directory's config file,
    /// and region US.
    pub fn new(data_dir: impl Into<PathBuf>) -> Result<Self> {
        let data_dir = data_dir.into();
        Ok(ClientOptions {
            tokens: Arc::new(secrets::ConfigFileTokenStore::new(&data_dir)),
            data_dir,
            gateway: None,
            proxy: None,
            cellular: Arc::new(NoCellular),
            region: "US"
                .parse()
                .map_err(|e| Error::Config(format!("region: {e}")))?,
        })
    }

    /// The platform's data directory for Airtext (e.g. `~/.local/share/airtext`).
    pub fn default_data_dir() -> Result<PathBuf> {
        directories::ProjectDirs::from("org", "Airtext", "airtext")
            .map(|dirs| dirs.data_dir().to_path_buf())
            .ok_or_else(|| Error::Config("no home directory: pass --data-dir DIR".to_owned()))
    }
}

/// The result of signing in.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SignedIn {
    pub profile: Profile,
}

/// The client core. Cheap to clone; all clones share one device.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: ClientOptions,
    events: broadcast::Sender<ClientEvent>,
    session: RwLock<Option<Arc<Session>>>,
    /// Counts replacements of `session` (sign-in, sign-out, a claimed number): [`Client::run`]
    /// follows it, so the live loop always works for the current session.
    session_changes: watch::Sender<u64>,
}

fn cache_path(data_dir: &Path, profile: &Profile) -> PathBuf {
    data_dir
        .join("profiles")
        .join(format!("{}.sqlite3", profile.account_id))
}

impl Client {
    /// Opens the device in `options.data_dir`: signed in (cache open) if it was.
    pub async fn open(options: ClientOptions) -> Result<Client> {
        let (events, _) = broadcast::channel(4096);
        let client = Client {
            inner: Arc::new(Inner {
                options,
                events,
                session: RwLock::new(None),
                session_changes: watch::Sender::new(0),
            }),
        };
        let options = &client.inner.options;
        let device = DeviceFile::load(&options.data_dir)?;
        let token = options.tokens.load()?;
        if let (Some(account_id), Some(username), Some(device_id), Some(gateway), Some(token)) = (
            device.account_id,
            device.username,
            device.device_id,
            device.gateway_url.clone(),
            token,
        ) {
            let gateway = options.gateway.clone().unwrap_or(gateway);
            let mut profile = Profile {
                gateway_url: gateway,
                account_id,
                username,
                device_id,
                number: None,
            };
            let path = cache_path(&options.data_dir, &profile);
            let cache = Cache::open(&path).await?;
            if let Some(stored) = cache.call(|c| profile::load(c)).await? {
                profile.number = stored.number;
            }
            client.start_session(profile, cache, &token).await?;
        }
        Ok(client)
    }

    async fn start_session(&self, profile: Profile, cache: Cache, token: &str) -> Result<()> {
        let options = &self.inner.options;
        let cloud = Cloud::new(&profile.gateway_url, options.proxy.clone())?.with_token(token);
        let session = Session {
            profile,
            cache,
            cloud,
            cellular: options.cellular.clone(),
            events: self.inner.events.clone(),
            region: options.region,
            sync_lock: Mutex::new(()),
            outbox_lock: Mutex::new(()),
            outbox_wake: Notify::new(),
            known_head: AtomicI64::new(0),
            awaiting_delivery: Default::default(),
        };
        *self.inner.session.write().await = Some(Arc::new(session));
        self.inner.session_changes.send_modify(|n| *n += 1);
        Ok(())
    }

    /// The signed-in session, or [`Error::SignedOut`].
    pub async fn session(&self) -> Result<Arc<Session>> {
        self.inner
            .session
            .read()
            .await
            .clone()
            .ok_or(Error::SignedOut)
    }

    pub async fn profile(&self) -> Option<Profile> {
        self.inner
            .session
            .read()
            .await
            .as_ref()
            .map(|s| s.profile.clone())
    }

    /// Change notifications (messages, conversations, contacts, sync progress, connection).
    pub fn subscribe(&self) -> broadcast::Receiver<ClientEvent> {
        self.inner.events.subscribe()
    }

    fn gateway(&self) -> Result<String> {
        let options = &self.inner.options;
        if let Some(gateway) = &options.gateway {
            return Ok(gateway.clone());
        }
        DeviceFile::load(&options.data_dir)?
            .gateway_url
            .ok_or_else(|| {
                Error::Config("no gateway: pass --gateway URL or set AIRTEXT_GATEWAY".to_owned())
            })
    }

    fn anonymous_cloud(&self) -> Result<Cloud> {
        Cloud::new(&self.gateway()?, self.inner.options.proxy.clone())
    }

    /// Creates an account and signs this device in to it.
    pub async fn sign_up(
        &self,
        username: &str,
        password: &str,
        email: Option<&str>,
        device_name: &str,
    ) -> Result<SignedIn> {
        let cloud = self.anonymous_cloud()?;
        cloud
            .sign_up(&SignUp {
                username: username.to_owned(),
                password: password.to_owned(),
                email: email.map(str::to_owned),
            })
            .await?;
        self.sign_in(username, password, device_name).await
    }

    /// Signs this device in (replacing any earlier sign-in of this data directory).
    pub async fn sign_in(
        &self,
        username: &str,
        password: &str,
        device_name: &str,
    ) -> Result<SignedIn> {
        let gateway = self.gateway()?;
        let cloud = self.anonymous_cloud()?;
        let options = &self.inner.options;
        let session = cloud
            .sign_in(&SignIn {
                username: username.to_owned(),
                password: password.to_owned(),
                device_name: device_name.to_owned(),
                has_cellular: options.cellular.status().available,
            })
            .await?;
        let me = cloud.with_token(&session.token).me().await?;
        let profile = Profile {
            gateway_url: gateway.clone(),
            account_id: session.account_id,
            username: me.username.clone(),
            device_id: session.device_id,
            number: me.number.clone(),
        };
        let cache = Cache::open(&cache_path(&options.data_dir, &profile)).await?;
        let stored = profile.clone();
        cache.call(move |c| profile::save(c, &stored)).await?;
        options.tokens.save(&session.token)?;
        let mut device = DeviceFile::load(&options.data_dir)?;
        device.gateway_url = Some(gateway);
        device.account_id = Some(profile.account_id);
        device.username = Some(profile.username.clone());
        device.device_id = Some(profile.device_id);
        device.save(&options.data_dir)?;
        self.start_session(profile.clone(), cache, &session.token)
            .await?;
        Ok(SignedIn { profile })
    }

    /// Signs this device out: the token stops working at the gateway, is forgotten here, and
    /// the profile's cache file is deleted.
    pub async fn sign_out(&self) -> Result<()> {
        self.end_session(SessionEnd::SignOut).await
    }

    /// Changes the account's password; this device stays signed in, the others are signed out
    /// unless `sign_out_other_devices` is false.
    pub async fn change_password(
        &self,
        current_password: &str,
        new_password: &str,
        sign_out_other_devices: bool,
    ) -> Result<()> {
        let request = airtext_api::accounts::ChangePassword {
            current_password: current_password.to_owned(),
            new_password: new_password.to_owned(),
            sign_out_other_devices: Some(sign_out_other_devices),
        };
        self.session().await?.cloud.change_password(&request).await
    }

    /// Deletes the account at the gateway (every message, conversation, contact, identity and
    /// device of it), then forgets it here as a sign-out does. A wrong password deletes nothing.
    pub async fn delete_account(&self, password: &str) -> Result<()> {
        // Not signed in is the usual error, not a silent success.
        self.session().await?;
        self.end_session(SessionEnd::DeleteAccount(
            airtext_api::accounts::DeleteAccount {
                password: password.to_owned(),
            },
        ))
        .await
    }

    async fn end_session(&self, end: SessionEnd) -> Result<()> {
        let session = self.inner.session.write().await.take();
        let options = &self.inner.options;
        if let Some(session) = session {
            // The live loop lets go of the session before its token stops working.
            self.inner.session_changes.send_modify(|n| *n += 1);
            let ended = match &end {
                SessionEnd::SignOut => match session.cloud.sign_out().await {
                    Ok(()) | Err(Error::Api { status: 401, .. }) => Ok(()),
                    Err(e) => Err(e),
                },
                SessionEnd::DeleteAccount(request) => session.cloud.delete_account(request).await,
            };
            if let Err(e) = ended {
                // Keep the session: ending it must not leave a live token unknown here.
                *self.inner.session.write().await = Some(session);
                self.inner.session_changes.send_modify(|n| *n += 1);
                return Err(e);
            }
            let path = session.cache.path().to_path_buf();
            drop(session);
            for suffix in ["", "-wal", "-shm"] {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(PathBuf::from(p));
            }
        }
        options.tokens.clear()?;
        let mut device = DeviceFile::load(&options.data_dir)?;
        device.account_id = None;
        device.username = None;
        device.device_id = None;
        device.save(&options.data_dir)?;
        Ok(())
    }

    pub async fn me(&self) -> Result<Me> {
        self.session().await?.cloud.me().await
    }

    pub async fn search_numbers(
        &self,
        country: Option<&str>,
        area_code: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<String>> {
        let session = self.session().await?;
        Ok(session
            .cloud
            .available_numbers(country, area_code, limit)
            .await?
            .numbers)
    }

    /// Claims a number; the profile records it as this account's own address.
    pub async fn claim_number(&self, number: &str) -> Result<String> {
        let session = self.session().await?;
        let claimed = session.cloud.claim_number(number).await?;
        let mut profile = session.profile.clone();
        profile.number = Some(claimed.number.clone());
        let stored = profile.clone();
        session
            .cache
            .call(move |c| profile::save(c, &stored))
            .await?;
        let token = session.cloud.token().unwrap_or_default().to_owned();
        let cache = session.cache.clone();
        self.start_session(profile, cache, &token).await?;
        Ok(claimed.number)
    }

    /// Gives a number back: `number`, or the account's own when `None`. The profile forgets
    /// it; nobody can claim it during the gateway's quarantine.
    pub async fn release_number(&self, number: Option<&str>) -> Result<String> {
        let session = self.session().await?;
        let number = match number {
            Some(number) => session.normalise(number)?.as_str().to_owned(),
            None => session.cloud.me().await?.number.ok_or_else(|| {
                Error::invalid(ErrorCode::NotFound, "this account has no number to release")
            })?,
        };
        session.cloud.release_number(&number).await?;
        if session.profile.number.as_deref() == Some(number.as_str()) {
            let mut profile = session.profile.clone();
            profile.number = None;
            let stored = profile.clone();
            session
                .cache
                .call(move |c| profile::save(c, &stored))
                .await?;
            let token = session.cloud.token().unwrap_or_default().to_owned();
            let cache = session.cache.clone();
            self.start_session(profile, cache, &token).await?;
        }
        Ok(number)
    }

    /// Starts verifying a phone number or e-mail address (the gateway sends a code).
    pub async fn start_verification(
        &self,
        kind: IdentityKind,
        value: &str,
    ) -> Result<IdentityPending> {
        let session = self.session().await?;
        session
            .cloud
            .add_identity(&AddIdentity {
                kind,
                value: value.to_owned(),
            })
            .await
    }

    /// Removes one of the account's identities, named by its id or its value (a phone number
    /// as typed, or an e-mail address); returns it as it was.
    pub async fn remove_identity(&self, id_or_value: &str) -> Result<Identity> {
        let session = self.session().await?;
        let wanted = id_or_value.trim();
        let phone = session
            .normalise(wanted)
            .ok()
            .map(|a| a.as_str().to_owned());
        let email = wanted.to_lowercase();
        let me = session.cloud.me().await?;
        let identity = me
            .identities
            .into_iter()
            .find(|i| {
                i.id.to_string() == wanted
                    || i.value == email
                    || phone.as_deref() == Some(i.value.as_str())
            })
            .ok_or_else(|| {
                Error::invalid(
                    ErrorCode::NotFound,
                    format!("no identity {wanted:?} in this account (see `airtext identities`)"),
                )
            })?;
        session.cloud.remove_identity(identity.id).await?;
        Ok(identity)
    }

    /// The pending identity of this kind and value (normalised as the gateway does).
    pub async fn pending_identity(&self, kind: IdentityKind, value: &str) -> Result<IdentityId> {
        let session = self.session().await?;
        let wanted = match kind {
            IdentityKind::Phone => session.normalise(value)?.as_str().to_owned(),
            IdentityKind::Email => value.trim().to_lowercase(),
        };
        let me = session.cloud.me().await?;
        me.identities
            .iter()
            .find(|i| i.kind == kind && i.value == wanted && i.status == IdentityStatus::Pending)
            .map(|i| i.id)
            .ok_or_else(|| {
                Error::invalid(
                    ErrorCode::NotFound,
                    format!("no pending verification of {wanted}: start one without --code"),
                )
            })
    }

    pub async fn verify(&self, identity: IdentityId, code: &str) -> Result<IdentityStatus> {
        let session = self.session().await?;
        Ok(session.cloud.verify_identity(identity, code).await?.status)
    }

    /// Writes a text locally (queued, shown at once) and tries to send it now. A text that
    /// cannot go now stays queued and is retried.
    ///
    /// Fails only when the text could not be written here. Once it is written, it is returned
    /// whatever the first attempt did: status `queued` means it is still in the outbox and
    /// will be sent (a caller that sends it again would send it twice).
    pub async fn send(
        &self,
        to: &str,
        body: &str,
        via: Option<PathChoice>,
    ) -> Result<CachedMessage> {
        let session = self.session().await?;
        let queued = session.queue_text(to, body, via).await?;
        if let Err(error) = session.flush_outbox().await {
            tracing::warn!(%error, "the text is queued; sending it now failed");
        }
        let id = queued.local_id;
        // Unreadable now: it was written, so "queued" is the safe answer (never "send again").
        match session.cache.call(move |c| messages::get(c, id)).await {
            Ok(Some(message)) => Ok(message),
            Ok(None) | Err(_) => Ok(queued),
        }
    }

    pub async fn flush_outbox(&self) -> Result<OutboxReport> {
        self.session().await?.flush_outbox().await
    }

    /// Pulls everything new from the account's log.
    pub async fn sync(&self) -> Result<SyncReport> {
        self.session().await?.sync().await
    }

    /// Most recently updated first.
    pub async fn conversations(&self, limit: u32) -> Result<Vec<CachedConversation>> {
        let session = self.session().await?;
        Ok(session
            .cache
            .call(move |c| conversations::list(c, limit))
            .await?)
    }

    /// The newest `limit` messages with `peer`, newest first.
    pub async fn messages(&self, peer: &str, limit: u32) -> Result<Vec<CachedMessage>> {
        let session = self.session().await?;
        let peer = session.normalise(peer)?.as_str().to_owned();
        let shown = peer.clone();
        let found = session
            .cache
            .call(move |c| match conversations::by_peer(c, &peer)? {
                Some(id) => Ok(Some(messages::list(c, id, limit, None)?)),
                None => Ok(None),
            })
            .await?;
        found.ok_or_else(|| {
            Error::invalid(
                ErrorCode::NotFound,
                format!("no conversation with {shown} (see `airtext conversations`)"),
            )
        })
    }

    /// Messages whose text or peer match every word of `query`, newest first.
    pub async fn search(&self, query: &str, limit: u32) -> Result<Vec<CachedMessage>> {
        let session = self.session().await?;
        let query = query.to_owned();
        Ok(session
            .cache
            .call(move |c| messages::search(c, &query, limit))
            .await?)
    }

    /// Sets how to text `peer` (synced to the account's other devices). `fallback` and `name`
    /// keep their current values when `None`.
    pub async fn set_path(
        &self,
        peer: &str,
        path: PathChoice,
        fallback: Option<bool>,
        name: Option<String>,
    ) -> Result<Contact> {
        let session = self.session().await?;
        let (address, current) = Self::contact_of(&session, peer).await?;
        let request = PutContact {
            path,
            fallback: fallback
                .or(current.as_ref().map(|c| c.fallback))
                .unwrap_or(false),
            name: name.or(current.and_then(|c| c.name)),
            blocked: None,
        };
        Self::put_contact(&session, &address, &request).await
    }

    /// Names the contact `peer`, or removes its name (`None`); its path and fallback stay.
    pub async fn name_contact(&self, peer: &str, name: Option<String>) -> Result<Contact> {
        let session = self.session().await?;
        let (address, current) = Self::contact_of(&session, peer).await?;
        let request = PutContact {
            path: current.as_ref().map(|c| c.path).unwrap_or_default(),
            fallback: current.as_ref().is_some_and(|c| c.fallback),
            name,
            blocked: None,
        };
        Self::put_contact(&session, &address, &request).await
    }

    /// Blocks `peer` (their texts reach no device of this account; they are not told) or
    /// unblocks them; the contact's path, fallback and name stay.
    pub async fn block_contact(&self, peer: &str, blocked: bool) -> Result<Contact> {
        let session = self.session().await?;
        let (address, current) = Self::contact_of(&session, peer).await?;
        let request = PutContact {
            path: current.as_ref().map(|c| c.path).unwrap_or_default(),
            fallback: current.as_ref().is_some_and(|c| c.fallback),
            name: current.and_then(|c| c.name),
            blocked: Some(blocked),
        };
        Self::put_contact(&session, &address, &request).await
    }

    /// Deletes the contact `peer` (its name, path and block; the conversation stays), at the
    /// gateway, then here. Returns the normalised address.
    pub async fn delete_contact(&self, peer: &str) -> Result<String> {
        let session = self.session().await?;
        let (address, _) = Self::contact_of(&session, peer).await?;
        session.cloud.delete_contact(&address).await?;
        let key = address.clone();
        if session
            .cache
            .call(move |c| contacts::delete(c, &key))
            .await?
        {
            session.emit(ClientEvent::ContactChanged {
                contact: Contact {
                    address: address.clone(),
                    path: PathChoice::default(),
                    fallback: false,
                    name: None,
                    blocked: false,
                    updated_at: chrono::Utc::now(),
                },
            });
        }
        Ok(address)
    }

    /// `peer` normalised, and its contact settings here (if any).
    async fn contact_of(session: &Session, peer: &str) -> Result<(String, Option<Contact>)> {
        let address = session.normalise(peer)?.as_str().to_owned();
        let key = address.clone();
        let current = session.cache.call(move |c| contacts::get(c, &key)).await?;
        Ok((address, current))
    }

    /// Writes a contact at the gateway, then here (the other devices get it by sync).
    async fn put_contact(
        session: &Session,
        address: &str,
        request: &PutContact,
    ) -> Result<Contact> {
        let contact = session.cloud.put_contact(address, request).await?;
        let stored = contact.clone();
        if session
            .cache
            .call(move |c| contacts::put(c, &stored))
            .await?
        {
            session.emit(ClientEvent::ContactChanged {
                contact: contact.clone(),
            });
        }
        Ok(contact)
    }

    /// When this device last had everything the gateway had (`None`: never).
    pub async fn synced_at(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        let session = self.session().await?;
        Ok(session
            .cache
            .call(|c| cache::sync_state::synced_at(c))
            .await?)
    }

    /// The message whose server id is `id` or ends with it (as `airtext messages` shows).
    pub async fn message_by_id(&self, id: &str) -> Result<CachedMessage> {
        let session = self.session().await?;
        let wanted = id.to_owned();
        let mut found = session
            .cache
            .call(move |c| messages::with_id_ending(c, &wanted, 2))
            .await?;
        match (found.pop(), found.is_empty()) {
            (Some(message), true) => Ok(message),
            (Some(_), false) => Err(Error::invalid(
                ErrorCode::BadRequest,
                format!("more than one message id ends with {id:?}: give more of it"),
            )),
            (None, _) => Err(Error::invalid(
                ErrorCode::NotFound,
                format!(
                    "no message with id {id:?} on this device (ids are shown by `airtext messages PEER`)"
                ),
            )),
        }
    }

    /// Marks the whole thread with `peer` read, here and (through the gateway) on the
    /// account's other devices. Returns the newest message it covers, `None` when the thread
    /// holds nothing the gateway has.
    pub async fn read_thread(&self, peer: &str) -> Result<Option<CachedMessage>> {
        let session = self.session().await?;
        let key = session.normalise(peer)?.as_str().to_owned();
        let shown = key.clone();
        let newest = session
            .cache
            .call(move |c| match conversations::by_peer(c, &key)? {
                Some(id) => Ok(Some(messages::latest_at_gateway(c, id)?)),
                None => Ok(None),
            })
            .await?
            .ok_or_else(|| {
                Error::invalid(
                    ErrorCode::NotFound,
                    format!("no conversation with {shown} (see `airtext conversations`)"),
                )
            })?;
        if let Some(message) = &newest {
            self.mark_read(&message.peer, message.local_id).await?;
        }
        Ok(newest)
    }

    /// Runs the live connection until `shutdown`: the stream (reconnecting with back-off),
    /// sync on connect and on every hint, the outbox (on its schedule, when a text is queued
    /// or the connection returns, and at least every 10 s (`OUTBOX_LOOK`) for texts another
    /// process queued), and texts arriving over cellular. Returns
    /// [`Error::SignedOut`] if this device is signed out when it starts, or if the gateway
    /// rejects the device's token.
    ///
    /// It follows the client's session: after a sign-out it waits (texts arriving over
    /// cellular wait in the modem's queue), and a sign-in or a claimed number (a new session)
    /// moves the stream, sync and outbox over to the new session without a restart.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<()> {
        let result = self.follow_sessions(&shutdown).await;
        // Whoever watches the token sees the loop has ended, whatever the reason.
        shutdown.cancel();
        result
    }

    async fn follow_sessions(&self, shutdown: &CancellationToken) -> Result<()> {
        let mut changes = self.inner.session_changes.subscribe();
        changes.borrow_and_update();
        let mut session = self.session().await?;
        let mut incoming = self.inner.options.cellular.take_incoming();
        let mut deliveries = self.inner.options.cellular.take_delivery_reports();
        loop {
            match self
                .run_session(
                    &session,
                    shutdown,
                    &mut changes,
                    &mut incoming,
                    &mut deliveries,
                )
                .await
            {
                Ended::Shutdown => return Ok(()),
                Ended::Unauthorized => return Err(Error::SignedOut),
                Ended::SessionChanged => {}
            }
            // The session that replaced it, or the next sign-in.
            session = loop {
                changes.borrow_and_update();
                if let Some(current) = self.inner.session.read().await.clone() {
                    break current;
                }
                let _ = self.inner.events.send(ClientEvent::ConnectionChanged {
                    online: false,
                    error: None,
                });
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    changed = changes.changed() => if changed.is_err() {
                        return Ok(());
                    },
                }
            };
        }
    }

    /// The live loop of one session, until shutdown, a session change, or the gateway
    /// refusing the token.
    async fn run_session(
        &self,
        session: &Session,
        shutdown: &CancellationToken,
        changes: &mut watch::Receiver<u64>,
        incoming: &mut Option<mpsc::Receiver<cellular::IncomingSms>>,
        deliveries: &mut Option<mpsc::Receiver<cellular::DeliveryReport>>,
    ) -> Ended {
        let stop_stream = shutdown.child_token();
        let (signals_tx, mut signals) = mpsc::channel(64);
        let stream_task = tokio::spawn(stream::run(
            session.cloud.clone(),
            signals_tx,
            stop_stream.clone(),
        ));
        let ended = loop {
            let next_due = session
                .cache
                .call(|c| cache::outbox::next_due(c))
                .await
                .ok()
                .flatten();
            let wait = next_due
                .map(|at| {
                    at.signed_duration_since(chrono::Utc::now())
                        .to_std()
                        .unwrap_or_default()
                })
                .unwrap_or(OUTBOX_LOOK)
                .min(OUTBOX_LOOK);
            // Biased: a session change is seen before work that is ready at the same time
            // (a text that arrives just after a number is claimed belongs to the new one).
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break Ended::Shutdown,
                changed = changes.changed() => break match changed {
                    Ok(()) => Ended::SessionChanged,
                    Err(_) => Ended::Shutdown,
                },
                signal = signals.recv() => match signal {
                    Some(StreamSignal::Connected) => {
                        session.emit(ClientEvent::ConnectionChanged { online: true, error: None });
                        self.log(session.wake_outbox().await);
                        self.log(session.sync().await.map(drop));
                        self.log(session.flush_outbox().await.map(drop));
                    }
                    Some(StreamSignal::Hint(seq)) => {
                        session.note_head(seq);
                        self.log(session.sync().await.map(drop));
                    }
                    Some(StreamSignal::Disconnected { error }) => {
                        session.emit(ClientEvent::ConnectionChanged { online: false, error: Some(error) });
                    }
                    Some(StreamSignal::Unauthorized) => {
                        let current = self.inner.session.read().await.clone();
                        if !current.is_some_and(|c| std::ptr::eq(&*c, session)) {
                            // The token of a session that was replaced (signed out here).
                            break Ended::SessionChanged;
                        }
                        session.emit(ClientEvent::ConnectionChanged {
                            online: false,
                            error: Some("the gateway no longer accepts this device: sign in again".to_owned()),
                        });
                        break Ended::Unauthorized;
                    }
                    None => break Ended::Shutdown,
                },
                () = session.outbox_wake.notified() => {
                    self.log(session.flush_outbox().await.map(drop));
                }
                () = tokio::time::sleep(wait) => {
                    self.log(session.flush_outbox().await.map(drop));
                }
                sms = recv(incoming) => match sms {
                    Some(sms) => self.log(session.receive_cellular(sms).await.map(drop)),
                    None => *incoming = None,
                },
                report = recv(deliveries) => match report {
                    Some(report) => self.log(session.apply_delivery_report(report).await),
                    None => *deliveries = None,
                },
            }
        };
        stop_stream.cancel();
        let _ = stream_task.await;
        ended
    }

    fn log(&self, result: Result<()>) {
        if let Err(error) = result {
            tracing::warn!(%error, "background work failed; it will be retried");
        }
    }
}

/// Why [`Client::run_session`] returned.
enum Ended {
    Shutdown,
    SessionChanged,
    Unauthorized,
}

async fn recv<T>(incoming: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match incoming {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// How a session ends: this device signs out, or the whole account is deleted.
enum SessionEnd {
    SignOut,
    DeleteAccount(airtext_api::accounts::DeleteAccount),
}
