//! The shell's state: one [`Client`] (re-opened when the proxy or modem setting changes), the
//! live sync loop while signed in, and the forwarding of the client's events to the window.
//!
//! Invariants: the live loop ([`Client::run`]) runs exactly while a session exists (started
//! after sign-in or a restored session, stopped before sign-out); exactly one forwarder runs,
//! for the current client.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use airtext_api::messages::Direction;
use airtext_client::events::ClientEvent;
use airtext_client::{Client, ClientOptions};
use tauri::{AppHandle, Emitter, Runtime};
use tokio::sync::{broadcast, Mutex, Notify, RwLock};
use tokio_util::sync::CancellationToken;

use crate::notify;
use crate::settings::Settings;
use crate::token_store::FallbackTokenStore;

pub const EVENT: &str = "airtext://event";
pub const SIGNED_OUT: &str = "airtext://signed-out";

/// Texts older than this when they reach the device (a backlog being synced) raise no
/// notification: only what arrives "now" should ring.
const FRESH_SECS: i64 = 300;

#[derive(Debug)]
pub struct AppState {
    pub data_dir: PathBuf,
    client: RwLock<Client>,
    live: Mutex<Option<CancellationToken>>,
    forwarder: StdMutex<Option<CancellationToken>>,
    pub settings: StdMutex<Settings>,
    /// Whether the main window has the focus (notifications only when it has not).
    pub focused: Arc<AtomicBool>,
    /// Where the token is kept (keyring, file or memory); shared by every client opened.
    pub tokens: Arc<FallbackTokenStore>,
    /// Woken when the unread count may have changed (the tray and badge re-read it).
    pub unread_changed: Arc<Notify>,
}

pub async fn client_options(
    data_dir: &std::path::Path,
    settings: &Settings,
    tokens: Arc<FallbackTokenStore>,
) -> airtext_client::Result<ClientOptions> {
    let mut options = ClientOptions::new(data_dir)?;
    options.tokens = tokens;
    options.proxy = airtext_client::app::parse_proxy(&settings.proxy_url)?;
    options.cellular = airtext_client::app::open_modem(&settings.modem_port).await?;
    Ok(options)
}

impl AppState {
    pub fn new(
        data_dir: PathBuf,
        client: Client,
        settings: Settings,
        tokens: Arc<FallbackTokenStore>,
    ) -> Self {
        AppState {
            data_dir,
            client: RwLock::new(client),
            live: Mutex::new(None),
            forwarder: StdMutex::new(None),
            settings: StdMutex::new(settings),
            focused: Arc::new(AtomicBool::new(true)),
            tokens,
            unread_changed: Arc::new(Notify::new()),
        }
    }

    pub async fn client(&self) -> Client {
        self.client.read().await.clone()
    }

    pub fn settings(&self) -> Settings {
        self.settings.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Swaps in a client opened with new options (proxy, modem), keeping the live loop's state.
    pub async fn replace_client<R: Runtime>(&self, app: &AppHandle<R>, client: Client) {
        let was_live = self.stop_live().await;
        *self.client.write().await = client;
        self.forward_events(app).await;
        if was_live {
            self.start_live(app).await;
        }
    }

    /// Forwards the current client's events to the window (and raises notifications).
    pub async fn forward_events<R: Runtime>(&self, app: &AppHandle<R>) {
        let stop = CancellationToken::new();
        if let Ok(mut slot) = self.forwarder.lock() {
            if let Some(old) = slot.replace(stop.clone()) {
                old.cancel();
            }
        }
        let mut events = self.client().await.subscribe();
        let app = app.clone();
        let focused = self.focused.clone();
        let unread_changed = self.unread_changed.clone();
        tauri::async_runtime::spawn(async move {
            loop {
                let event = tokio::select! {
                    () = stop.cancelled() => break,
                    event = events.recv() => event,
                };
                match event {
                    Ok(event) => {
                        if matches!(
                            event,
                            ClientEvent::MessageAdded { .. }
                                | ClientEvent::MessageDeleted { .. }
                                | ClientEvent::ConversationChanged { .. }
                        ) {
                            unread_changed.notify_one();
                        }
                        if !focused.load(Ordering::Relaxed) {
                            notify_if_inbound(&app, &event);
                        }
                        let _ = app.emit(EVENT, &event);
                    }
                    // A lagging window lost some notices, not data: it re-reads on the next.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
    }

    /// Starts the live loop (stream, sync, outbox) if it is not running.
    pub async fn start_live<R: Runtime>(&self, app: &AppHandle<R>) {
        let mut live = self.live.lock().await;
        if live.as_ref().is_some_and(|t| !t.is_cancelled()) {
            return;
        }
        let shutdown = CancellationToken::new();
        *live = Some(shutdown.clone());
        let client = self.client().await;
        let app = app.clone();
        tauri::async_runtime::spawn(async move {
            match client.run(shutdown).await {
                Ok(()) => {}
                Err(airtext_client::Error::SignedOut) => {
                    // The token was revoked elsewhere: forget it here too, then tell the UI.
                    if let Err(error) = client.sign_out().await {
                        tracing::warn!(%error, "could not clear the revoked sign-in");
                    }
                    let _ = app.emit(SIGNED_OUT, ());
                }
                Err(error) => tracing::warn!(%error, "the live connection stopped"),
            }
        });
    }

    /// Stops the live loop; returns whether it was running.
    pub async fn stop_live(&self) -> bool {
        match self.live.lock().await.take() {
            Some(token) => {
                let was = !token.is_cancelled();
                token.cancel();
                was
            }
            None => false,
        }
    }
}

fn notify_if_inbound<R: Runtime>(app: &AppHandle<R>, event: &ClientEvent) {
    let ClientEvent::MessageAdded { message } = event else {
        return;
    };
    if message.direction != Direction::Inbound {
        return;
    }
    let age = chrono::Utc::now().signed_duration_since(message.created_at);
    if age.num_seconds() > FRESH_SECS {
        return;
    }
    let settings = tauri::Manager::try_state::<AppState>(app)
        .map(|s| s.settings())
        .unwrap_or_default();
    if !settings.notifications {
        return;
    }
    let shown = notify::content(&message.from, &message.body, settings.hide_text);
    notify::raise(app, message.peer.clone(), shown);
}
