//! Notifications for texts that arrive while the window is unfocused: the sender as the title,
//! the text as the body unless the "hide text" setting is on. Clicking one opens its thread
//! (`airtext://open-thread`) and brings the window forward.
//!
//! Desktop raises them with notify-rust (freedesktop Notifications over D-Bus on Linux, where
//! the click arrives as the "default" action, waited for on a blocking thread so the async
//! runtime never stalls); mobile uses tauri-plugin-notification.

use serde::Serialize;
use tauri::{AppHandle, Emitter, Manager, Runtime};

pub const OPEN_THREAD: &str = "airtext://open-thread";

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct OpenThread {
    pub peer: String,
}

/// What a notification shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub title: String,
    pub body: String,
}

/// The notification for a text from `sender` (a contact's name or the address).
pub fn content(sender: &str, text: &str, hide_text: bool) -> Shown {
    Shown {
        title: sender.to_owned(),
        body: if hide_text {
            "New message".to_owned()
        } else {
            text.chars().take(300).collect()
        },
    }
}

fn open_thread<R: Runtime>(app: &AppHandle<R>, peer: String) {
    if let Some(window) = app.get_webview_window("main") {
        let _ = window.unminimize();
        let _ = window.show();
        let _ = window.set_focus();
    }
    let _ = app.emit(OPEN_THREAD, OpenThread { peer });
}

#[cfg(not(mobile))]
pub fn raise<R: Runtime>(app: &AppHandle<R>, peer: String, shown: Shown) {
    let app = app.clone();
    // notify-rust's D-Bus calls block: keep them off the async workers.
    tauri::async_runtime::spawn_blocking(move || {
        let mut notification = notify_rust::Notification::new();
        notification
            .appname("Airtext")
            .summary(&shown.title)
            .body(&shown.body)
            .icon("mail-message-new");
        #[cfg(all(unix, not(target_os = "macos")))]
        {
            notification.action("default", "Open");
            match notification.show() {
                Ok(handle) => handle.wait_for_action(|action| {
                    if action == "default" {
                        open_thread(&app, peer.clone());
                    }
                }),
                Err(error) => tracing::warn!(%error, "could not raise a notification"),
            }
        }
        #[cfg(not(all(unix, not(target_os = "macos"))))]
        {
            let _ = &peer;
            if let Err(error) = notification.show() {
                tracing::warn!(%error, "could not raise a notification");
            }
        }
    });
}

/// A notice from the app itself (no thread to open), e.g. that it keeps running when its
/// window is closed.
#[cfg(not(mobile))]
pub fn tell<R: Runtime>(app: &AppHandle<R>, title: &str, body: &str) {
    let _ = app;
    let (title, body) = (title.to_owned(), body.to_owned());
    tauri::async_runtime::spawn_blocking(move || {
        if let Err(error) = notify_rust::Notification::new()
            .appname("Airtext")
            .summary(&title)
            .body(&body)
            .icon("mail-message-new")
            .show()
        {
            tracing::warn!(%error, "could not raise a notification");
        }
    });
}

#[cfg(mobile)]
pub fn raise<R: Runtime>(app: &AppHandle<R>, peer: String, shown: Shown) {
    use tauri_plugin_notification::NotificationExt;
    let _ = &peer;
    if let Err(error) = app
        .notification()
        .builder()
        .title(&shown.title)
        .body(&shown.body)
        .show()
    {
        tracing::warn!(%error, "could not raise a notification");
    }
}

/// Mobile: a tapped notification opens the app; the UI then shows its last thread.
#[allow(dead_code)]
pub fn opened_from_notification<R: Runtime>(app: &AppHandle<R>, peer: String) {
    open_thread(app, peer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hide_text_shows_only_the_sender() {
        let shown = content("Alice", "the code is 1234", true);
        assert_eq!(shown.title, "Alice");
        assert!(!shown.body.contains("1234"));
        let shown = content("+14155550100", "hello", false);
        assert_eq!(shown.body, "hello");
    }
}
