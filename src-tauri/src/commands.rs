//! The IPC commands: the contract in `ui/src/lib/backend/tauri.ts`. Each is one call into
//! airtext-client plus the error mapping ([`IpcError`]); arguments arrive camelCase from JS.

use airtext_api::accounts::{Device, Me};
use airtext_api::compose::TextPlan;
use airtext_api::contacts::{Contact, PathChoice};
use airtext_api::identities::{IdentityKind, IdentityPending, IdentityStatus, IdentityVerified};
use airtext_api::{DeviceId, ErrorCode, IdentityId};
use airtext_client::app::{
    ContactInput, ConversationCursor, ImportResult, PathDecision, SearchHit,
};
use airtext_client::cache::conversations::CachedConversation;
use airtext_client::cache::messages::{CachedMessage, LocalMessageId};
use airtext_client::Client;
use serde::Serialize;
use tauri::{AppHandle, Runtime, State};

use crate::error::{IpcError, IpcResult};
use crate::settings::Settings;
use crate::state::{client_options, AppState};
use crate::token_store::TokenStorage;

/// What this platform's shell can do.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Capabilities {
    pub proxy: bool,
    pub modem: bool,
    pub notifications: bool,
    /// Closing the window can keep the app running (tray), and it can start at login.
    pub background: bool,
}

const SEARCH_LIMIT: u32 = 200;

#[tauri::command]
pub async fn gateway_url(state: State<'_, AppState>) -> IpcResult<Option<String>> {
    Ok(state.client().await.gateway_url()?)
}

#[tauri::command]
pub async fn set_gateway_url(state: State<'_, AppState>, url: String) -> IpcResult<()> {
    Ok(state.client().await.set_gateway_url(&url).await?)
}

/// The signed-in account, or null. Offline, the account as this device last knew it.
#[tauri::command]
pub async fn restore<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
) -> IpcResult<Option<Me>> {
    let client = state.client().await;
    let Some(profile) = client.profile().await else {
        return Ok(None);
    };
    match client.me().await {
        Ok(me) => {
            state.start_live(&app).await;
            Ok(Some(me))
        }
        Err(airtext_client::Error::Api { status: 401, .. }) => {
            let _ = client.sign_out().await;
            Ok(None)
        }
        Err(e) if e.is_transient() => {
            // Offline start: show the cache; the live loop connects when the network returns.
            state.start_live(&app).await;
            Ok(Some(Me {
                account_id: profile.account_id,
                username: profile.username,
                email: None,
                number: profile.number,
                identities: Vec::new(),
                devices: Vec::<Device>::new(),
            }))
        }
        Err(e) => Err(e.into()),
    }
}

#[tauri::command]
pub async fn sign_up(
    state: State<'_, AppState>,
    username: String,
    password: String,
    email: Option<String>,
) -> IpcResult<()> {
    let email = email.filter(|e| !e.trim().is_empty());
    Ok(state
        .client()
        .await
        .create_account(&username, &password, email.as_deref())
        .await?)
}

#[tauri::command]
pub async fn sign_in<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    username: String,
    password: String,
    device_name: String,
) -> IpcResult<Me> {
    let client = state.client().await;
    state.stop_live().await;
    client.sign_in(&username, &password, &device_name).await?;
    let me = client.me().await?;
    state.start_live(&app).await;
    state.unread_changed.notify_one();
    Ok(me)
}

#[tauri::command]
pub async fn sign_out(state: State<'_, AppState>) -> IpcResult<()> {
    state.stop_live().await;
    state.client().await.sign_out().await?;
    state.unread_changed.notify_one();
    Ok(())
}

#[tauri::command]
pub async fn me(state: State<'_, AppState>) -> IpcResult<Me> {
    Ok(state.client().await.me().await?)
}

#[tauri::command]
pub async fn revoke_device(state: State<'_, AppState>, id: DeviceId) -> IpcResult<()> {
    Ok(state.client().await.revoke_device(id).await?)
}

#[tauri::command]
pub async fn available_numbers(
    state: State<'_, AppState>,
    area_code: Option<String>,
) -> IpcResult<Vec<String>> {
    let area_code = area_code.filter(|a| !a.trim().is_empty());
    Ok(state
        .client()
        .await
        .search_numbers(Some("US"), area_code.as_deref(), None)
        .await?)
}

/// Claims a number. The running live loop follows the client's session, so it sends from the
/// new number at once (no restart).
#[tauri::command]
pub async fn claim_number(state: State<'_, AppState>, number: String) -> IpcResult<String> {
    Ok(state.client().await.claim_number(&number).await?)
}

#[tauri::command]
pub async fn add_identity(
    state: State<'_, AppState>,
    kind: IdentityKind,
    value: String,
) -> IpcResult<IdentityPending> {
    Ok(state
        .client()
        .await
        .start_verification(kind, &value)
        .await?)
}

#[tauri::command]
pub async fn verify_identity(
    state: State<'_, AppState>,
    id: IdentityId,
    code: String,
) -> IpcResult<IdentityVerified> {
    let status: IdentityStatus = state.client().await.verify(id, &code).await?;
    Ok(IdentityVerified { status })
}

/// The most conversations one `conversations` call returns (the window asks for a screenful
/// or two at a time; a list of 10,000 in one reply cost seconds and a gigabyte in WebKit).
pub const CONVERSATION_PAGE_MAX: u32 = 500;
/// The page size when the window names none.
pub const CONVERSATION_PAGE_DEFAULT: u32 = 100;

/// A page of the conversation list, most recently updated first, after `before` (the last
/// conversation the window has: its `updated_at` and `local_id`) when given. `limit` is kept
/// within 1..=[`CONVERSATION_PAGE_MAX`].
#[tauri::command]
pub async fn conversations(
    state: State<'_, AppState>,
    before: Option<ConversationCursor>,
    limit: Option<u32>,
) -> IpcResult<Vec<CachedConversation>> {
    let limit = limit
        .unwrap_or(CONVERSATION_PAGE_DEFAULT)
        .clamp(1, CONVERSATION_PAGE_MAX);
    Ok(state
        .client()
        .await
        .conversations_page(before, limit)
        .await?)
}

/// Unread texts in every cached conversation, not only the pages the window has loaded.
#[tauri::command]
pub async fn unread_total(state: State<'_, AppState>) -> IpcResult<u64> {
    Ok(state.client().await.unread_total().await?)
}

#[tauri::command]
pub async fn search(state: State<'_, AppState>, query: String) -> IpcResult<Vec<SearchHit>> {
    Ok(state
        .client()
        .await
        .search_hits(&query, SEARCH_LIMIT)
        .await?)
}

#[tauri::command]
pub async fn lookup(
    state: State<'_, AppState>,
    address: String,
) -> IpcResult<airtext_api::messages::Lookup> {
    let session = state.client().await.session().await?;
    Ok(session.cloud.lookup(&address).await?)
}

#[tauri::command]
pub async fn messages(
    state: State<'_, AppState>,
    peer: String,
    before: Option<i64>,
    limit: u32,
) -> IpcResult<Vec<CachedMessage>> {
    Ok(state
        .client()
        .await
        .page(&peer, before.map(LocalMessageId), limit)
        .await?)
}

#[tauri::command]
pub async fn send(
    state: State<'_, AppState>,
    to: String,
    body: String,
) -> IpcResult<CachedMessage> {
    Ok(state.client().await.queue(&to, &body).await?)
}

#[tauri::command]
pub async fn retry(state: State<'_, AppState>, local_id: i64) -> IpcResult<CachedMessage> {
    Ok(state.client().await.retry(LocalMessageId(local_id)).await?)
}

#[tauri::command]
pub async fn mark_read(state: State<'_, AppState>, peer: String, up_to: i64) -> IpcResult<()> {
    Ok(state
        .client()
        .await
        .mark_read(&peer, LocalMessageId(up_to))
        .await?)
}

#[tauri::command]
pub async fn delete_message(state: State<'_, AppState>, local_id: i64) -> IpcResult<()> {
    Ok(state
        .client()
        .await
        .delete_message(LocalMessageId(local_id))
        .await?)
}

#[tauri::command]
pub async fn contacts(state: State<'_, AppState>) -> IpcResult<Vec<Contact>> {
    Ok(state.client().await.contacts().await?)
}

#[tauri::command]
pub async fn set_contact(
    state: State<'_, AppState>,
    address: String,
    path: PathChoice,
    fallback: bool,
    name: Option<String>,
) -> IpcResult<Contact> {
    Ok(state
        .client()
        .await
        .set_path(&address, path, Some(fallback), name)
        .await?)
}

#[tauri::command]
pub async fn import_contacts(
    state: State<'_, AppState>,
    contacts: Vec<ContactInput>,
) -> IpcResult<ImportResult> {
    Ok(state.client().await.import_contacts(contacts).await?)
}

#[tauri::command]
pub async fn decide_path(state: State<'_, AppState>, peer: String) -> IpcResult<PathDecision> {
    Ok(state.client().await.decide_path(&peer).await?)
}

#[tauri::command]
pub fn plan(text: String) -> IpcResult<TextPlan> {
    Ok(airtext_client::app::text_plan(&text))
}

/// The settings; "start at login" as the platform has it (the user may change it outside).
#[tauri::command]
pub fn settings<R: Runtime>(app: AppHandle<R>, state: State<'_, AppState>) -> IpcResult<Settings> {
    let mut settings = state.settings();
    if let Some(enabled) = autostart_enabled(&app) {
        settings.autostart = enabled;
    }
    Ok(settings)
}

#[cfg(not(mobile))]
fn autostart_enabled<R: Runtime>(app: &AppHandle<R>) -> Option<bool> {
    use tauri_plugin_autostart::ManagerExt;
    app.autolaunch().is_enabled().ok()
}

#[cfg(mobile)]
fn autostart_enabled<R: Runtime>(_app: &AppHandle<R>) -> Option<bool> {
    None
}

#[cfg(not(mobile))]
fn set_autostart<R: Runtime>(app: &AppHandle<R>, on: bool) -> IpcResult<()> {
    use tauri_plugin_autostart::ManagerExt;
    let launcher = app.autolaunch();
    let done = if on {
        launcher.enable()
    } else {
        launcher.disable()
    };
    done.map_err(|e| {
        IpcError::new(
            ErrorCode::Internal,
            format!("cannot change starting at login: {e}"),
        )
    })
}

#[cfg(mobile)]
fn set_autostart<R: Runtime>(_app: &AppHandle<R>, _on: bool) -> IpcResult<()> {
    Ok(())
}

/// Where the sign-in is kept (OS keyring, private file or memory) and why not the keyring.
#[tauri::command]
pub fn token_storage(state: State<'_, AppState>) -> IpcResult<TokenStorage> {
    Ok(state.tokens.storage())
}

/// Saves the settings; a new proxy or modem takes effect at once (the client is re-opened
/// with it), as do the sign-in's place without a keyring and starting at login. A proxy that
/// does not parse or a modem that does not answer is refused and nothing changes.
#[tauri::command]
pub async fn save_settings<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    settings: Settings,
) -> IpcResult<()> {
    let old = state.settings();
    if settings.proxy_url != old.proxy_url || settings.modem_port != old.modem_port {
        let options = client_options(&state.data_dir, &settings, state.tokens.clone()).await?;
        let client = Client::open(options).await?;
        state.replace_client(&app, client).await;
    }
    if settings.token_in_file != old.token_in_file {
        state.tokens.set_in_file(settings.token_in_file)?;
    }
    if autostart_enabled(&app) != Some(settings.autostart) {
        set_autostart(&app, settings.autostart)?;
    }
    settings.save(&state.data_dir)?;
    let mut current = state
        .settings
        .lock()
        .map_err(|_| IpcError::new(ErrorCode::Internal, "settings are unavailable"))?;
    *current = settings;
    Ok(())
}

#[tauri::command]
pub fn serial_ports() -> IpcResult<Vec<String>> {
    Ok(airtext_client::app::serial_ports())
}

#[tauri::command]
pub fn capabilities() -> IpcResult<Capabilities> {
    Ok(Capabilities {
        proxy: true,
        // Tablets have no serial modem to drive; their own SMS app is the cellular path.
        modem: cfg!(not(mobile)),
        notifications: true,
        background: cfg!(not(mobile)),
    })
}
