//! The Airtext app: a thin Tauri 2 shell over `airtext-client`. It holds no business logic:
//! every command ([`commands`]) is one call into the client core plus the mapping of its error
//! to the shared `{code, message}` vocabulary ([`error`]). Around the commands the shell adds
//! only what needs the platform: the device token in the OS keyring, or where the platform has
//! none in memory or a private file ([`token_store`]), notifications ([`notify`]), the window
//! (single instance, remembered size and position), the tray icon, closing to it and start at
//! login on the desktop ([`tray`]), and forwarding the client's events to the window ([`state`]).
//!
//! Configuration (environment): `AIRTEXT_DATA_DIR` (default: the platform's data directory),
//! `AIRTEXT_GATEWAY` (the gateway onboarding suggests, e.g. from `scripts/run.sh`) and, on
//! Linux, `AIRTEXT_GPU` (`on`, `off` or `auto`: whether the window uses GL; see [`gpu`]).

pub mod commands;
pub mod error;
#[cfg(all(target_os = "linux", not(mobile)))]
pub mod gpu;
pub mod notify;
pub mod settings;
pub mod state;
pub mod token_store;
#[cfg(not(mobile))]
pub mod tray;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use airtext_client::{Client, ClientOptions};
use tauri::{Manager, WindowEvent};

use crate::settings::Settings;
use crate::state::{client_options, AppState};
use crate::token_store::{FallbackTokenStore, KeyringTokenStore};

fn data_dir<R: tauri::Runtime>(app: &tauri::App<R>) -> airtext_client::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("AIRTEXT_DATA_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    // Mobile apps can only write inside their sandbox; desktop shares the CLI's directory
    // layout so `airtext --data-dir` can inspect it.
    if cfg!(mobile) {
        app.path().app_data_dir().map_err(|e| {
            airtext_client::Error::Config(format!(
                "the platform gives this app no data directory ({e}); set AIRTEXT_DATA_DIR"
            ))
        })
    } else {
        ClientOptions::default_data_dir()
    }
}

/// Opens the client: with the saved proxy and modem, or, if those fail (modem unplugged),
/// without them so the app still starts and the settings screen can fix them.
async fn open_client(
    dir: &std::path::Path,
    settings: &Settings,
    tokens: &Arc<FallbackTokenStore>,
) -> airtext_client::Result<Client> {
    match client_options(dir, settings, tokens.clone()).await {
        Ok(options) => Client::open(options).await,
        Err(error) => {
            tracing::warn!(%error, "opening without the saved proxy/modem");
            let plain = Settings {
                proxy_url: String::new(),
                modem_port: String::new(),
                ..settings.clone()
            };
            Client::open(client_options(dir, &plain, tokens.clone()).await?).await
        }
    }
}

fn setup<R: tauri::Runtime>(app: &mut tauri::App<R>) -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(mobile)]
    app.handle().plugin(tauri_plugin_notification::init())?;
    let dir = data_dir(app)?;
    let settings = Settings::load(&dir);
    let suggested = std::env::var("AIRTEXT_GATEWAY")
        .ok()
        .filter(|g| !g.is_empty());
    // No keyring (no Secret Service, no D-Bus session) is a state the window shows, never a
    // reason not to start.
    let keyring = token_store::platform_store()
        .map(|store| KeyringTokenStore::new(store, dir.display().to_string()));
    let tokens = Arc::new(FallbackTokenStore::open(
        keyring,
        &dir,
        settings.token_in_file,
    ));
    if let Some(problem) = tokens.storage().keyring_problem {
        tracing::warn!(%problem, place = ?tokens.storage().place, "the sign-in is not kept in the OS keyring");
    }
    let client = tauri::async_runtime::block_on(open_client(&dir, &settings, &tokens))?;
    if let Some(url) = &suggested {
        client.suggest_gateway_url(url)?;
    }
    let state = AppState::new(dir, client, settings, tokens);
    let focused = state.focused.clone();
    #[cfg(not(mobile))]
    let unread_changed = state.unread_changed.clone();
    app.manage(state);
    let handle = app.handle().clone();
    tauri::async_runtime::block_on(async {
        if let Some(state) = handle.try_state::<AppState>() {
            state.forward_events(&handle).await;
        }
    });
    if let Some(window) = app.get_webview_window("main") {
        // Start from the real focus: a window opened behind another one never gets a
        // Focused(false) event.
        focused.store(window.is_focused().unwrap_or(true), Ordering::Relaxed);
        window.on_window_event(move |event| {
            if let WindowEvent::Focused(now) = event {
                focused.store(*now, Ordering::Relaxed);
            }
        });
        #[cfg(not(mobile))]
        {
            let has_tray = tray::create(app.handle());
            tray::keep_running_on_close(&window, has_tray);
        }
    }
    #[cfg(not(mobile))]
    follow_unread(app.handle().clone(), unread_changed);
    Ok(())
}

/// Keeps the tray's and the badge's unread count in step with the cache: re-read after every
/// change that may move it, at most a few times a second while a backlog syncs.
#[cfg(not(mobile))]
fn follow_unread<R: tauri::Runtime>(app: tauri::AppHandle<R>, changed: Arc<tokio::sync::Notify>) {
    changed.notify_one();
    tauri::async_runtime::spawn(async move {
        loop {
            changed.notified().await;
            let Some(state) = app.try_state::<AppState>() else {
                return;
            };
            let client = state.client().await;
            let unread = if client.profile().await.is_some() {
                client.unread_total().await.unwrap_or_default()
            } else {
                0
            };
            tray::show_unread(&app, unread);
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    });
}

/// The entry point on every platform: `main.rs` calls it on desktop, the mobile shells through
/// the `start_app` symbol `tauri::mobile_entry_point` generates. (`airtext_mobile_check` is
/// set only by the Linux compile check of the mobile code, where tauri has no mobile entry
/// point to expand; see docs/mobile.md.)
#[cfg_attr(all(mobile, not(airtext_mobile_check)), tauri::mobile_entry_point)]
pub fn run() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AIRTEXT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    // Start-up figures for docs/benchmarks.md: the process start as a wall-clock time (the
    // page's `performance.timeOrigin` is one too), and the page load after it.
    let started = std::time::Instant::now();
    let started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    tracing::info!(started_ms, "startup: process started");
    // Before GTK starts (the builder's run) and while this is the only thread: it may set
    // variables GTK and WebKit read once.
    #[cfg(all(target_os = "linux", not(mobile)))]
    gpu::prepare();
    let builder = tauri::Builder::default().on_page_load(move |_webview, payload| {
        if matches!(payload.event(), tauri::webview::PageLoadEvent::Finished) {
            let ms = started.elapsed().as_millis();
            tracing::info!(ms, "startup: page loaded");
        }
    });
    #[cfg(not(mobile))]
    let builder = builder
        // A second launch focuses the running window instead of opening a second device.
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            if let Some(window) = app.get_webview_window("main") {
                let _ = window.unminimize();
                let _ = window.show();
                let _ = window.set_focus();
            }
        }))
        // Not the visibility: a window hidden to the tray when the app quit opens shown.
        .plugin(
            tauri_plugin_window_state::Builder::default()
                .with_state_flags(
                    tauri_plugin_window_state::StateFlags::all()
                        - tauri_plugin_window_state::StateFlags::VISIBLE,
                )
                .build(),
        )
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            None,
        ));
    let result = builder
        .setup(setup)
        .invoke_handler(tauri::generate_handler![
            commands::gateway_url,
            commands::set_gateway_url,
            commands::restore,
            commands::sign_up,
            commands::sign_in,
            commands::sign_out,
            commands::me,
            commands::revoke_device,
            commands::available_numbers,
            commands::claim_number,
            commands::add_identity,
            commands::verify_identity,
            commands::conversations,
            commands::unread_total,
            commands::search,
            commands::lookup,
            commands::messages,
            commands::send,
            commands::retry,
            commands::mark_read,
            commands::delete_message,
            commands::contacts,
            commands::set_contact,
            commands::import_contacts,
            commands::decide_path,
            commands::plan,
            commands::settings,
            commands::save_settings,
            commands::serial_ports,
            commands::capabilities,
            commands::token_storage,
        ])
        .run(tauri::generate_context!());
    if let Err(error) = result {
        eprintln!("airtext: the app could not start: {error}");
        std::process::exit(1);
    }
}
