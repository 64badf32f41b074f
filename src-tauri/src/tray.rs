//! Always there on the desktop: a tray icon with the unread count (tooltip and menu), "Open"
//! and "Quit"; the window's close button hides the window instead of quitting while the
//! `close_to_tray` setting is on, so the live loop keeps syncing and notifying.
//!
//! Invariants:
//! - Only "Quit" (or the setting being off) ends the app from the window or the tray.
//! - Where no tray can be shown (no StatusNotifier host, no appindicator library) closing still
//!   hides the window; launching Airtext again (single instance) or clicking a notification
//!   brings it back.
//! - The first hide on a device says so once, as a notification (a marker file in the data
//!   directory remembers it).

use std::path::Path;
use std::sync::atomic::Ordering;

use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager, Runtime, WindowEvent};

use crate::state::AppState;

pub const ID: &str = "airtext";
const OPEN: &str = "open";
const QUIT: &str = "quit";
/// Present once the "still running" notice has been shown on this device.
const CLOSE_NOTICE_MARKER: &str = ".close-to-tray-noticed";

/// The tooltip and the menu's first line for `unread` texts.
pub fn unread_label(unread: u64) -> String {
    match unread {
        0 => "Airtext: no unread messages".to_owned(),
        1 => "Airtext: 1 unread message".to_owned(),
        n => format!("Airtext: {n} unread messages"),
    }
}

fn menu<R: Runtime>(app: &AppHandle<R>, unread: u64) -> tauri::Result<Menu<R>> {
    let count = MenuItem::with_id(app, "unread", unread_label(unread), false, None::<&str>)?;
    let open = MenuItem::with_id(app, OPEN, "Open Airtext", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, QUIT, "Quit", true, None::<&str>)?;
    let line = PredefinedMenuItem::separator(app)?;
    Menu::with_items(app, &[&count, &line, &open, &quit])
}

/// Shows the main window and gives it the focus.
pub fn show_window<R: Runtime>(app: &AppHandle<R>) {
    if let Some(window) = app.get_webview_window("main") {
        let _ = window.unminimize();
        let _ = window.show();
        let _ = window.set_focus();
    }
}

/// Adds the tray icon; `false` when the platform cannot show one (the app runs on without).
pub fn create<R: Runtime>(app: &AppHandle<R>) -> bool {
    // Linux loads the appindicator library on first use and panics when it is missing: a
    // desktop without it still gets the app, only without a tray.
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut builder = TrayIconBuilder::with_id(ID)
            .tooltip(unread_label(0))
            .menu(&menu(app, 0)?)
            .show_menu_on_left_click(false)
            .on_menu_event(|app, event| match event.id().as_ref() {
                OPEN => show_window(app),
                QUIT => app.exit(0),
                _ => {}
            })
            .on_tray_icon_event(|tray, event| {
                if let TrayIconEvent::Click {
                    button: MouseButton::Left,
                    button_state: MouseButtonState::Up,
                    ..
                } = event
                {
                    show_window(tray.app_handle());
                }
            });
        if let Some(icon) = app.default_window_icon() {
            builder = builder.icon(icon.clone());
        }
        builder.build(app)
    }));
    match built {
        Ok(Ok(_)) => true,
        Ok(Err(error)) => {
            tracing::warn!(%error, "no tray icon");
            false
        }
        Err(_) => {
            tracing::warn!("no tray icon: the platform's tray library is missing");
            false
        }
    }
}

/// Shows the unread count in the tray (tooltip and menu) and on the taskbar/dock where the
/// platform has a badge.
pub fn show_unread<R: Runtime>(app: &AppHandle<R>, unread: u64) {
    if let Some(tray) = app.tray_by_id(ID) {
        let _ = tray.set_tooltip(Some(unread_label(unread)));
        match menu(app, unread) {
            Ok(menu) => {
                let _ = tray.set_menu(Some(menu));
            }
            Err(error) => tracing::warn!(%error, "cannot update the tray menu"),
        }
    }
    if let Some(window) = app.get_webview_window("main") {
        let badge = i64::try_from(unread).ok().filter(|n| *n > 0);
        // Platforms without a badge say so with an error; the tray shows the count anyway.
        let _ = window.set_badge_count(badge);
    }
}

/// Whether this close is the first on this device (and remembers that it happened).
fn first_close(data_dir: &Path) -> bool {
    let marker = data_dir.join(CLOSE_NOTICE_MARKER);
    if marker.exists() {
        return false;
    }
    let written = std::fs::create_dir_all(data_dir).and_then(|()| std::fs::write(&marker, b""));
    if let Err(error) = written {
        tracing::warn!(%error, "cannot remember the close notice");
    }
    true
}

/// Makes the window's close button hide the window while `close_to_tray` is on.
pub fn keep_running_on_close<R: Runtime>(window: &tauri::WebviewWindow<R>, has_tray: bool) {
    let app = window.app_handle().clone();
    let hidden = window.clone();
    window.on_window_event(move |event| {
        let WindowEvent::CloseRequested { api, .. } = event else {
            return;
        };
        let Some(state) = app.try_state::<AppState>() else {
            return;
        };
        if !state.settings().close_to_tray {
            return;
        }
        api.prevent_close();
        let _ = hidden.hide();
        // A hidden window may never get Focused(false) (no window manager): texts notify now.
        state.focused.store(false, Ordering::Relaxed);
        if first_close(&state.data_dir) {
            let body = if has_tray {
                "Airtext keeps running in the tray, so texts still arrive. Quit from the tray icon's menu."
            } else {
                "Airtext keeps running, so texts still arrive. Open it again from the app menu."
            };
            crate::notify::tell(&app, "Airtext is still running", body);
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_label_counts_unread_texts() {
        assert_eq!(unread_label(0), "Airtext: no unread messages");
        assert_eq!(unread_label(1), "Airtext: 1 unread message");
        assert_eq!(unread_label(12), "Airtext: 12 unread messages");
    }

    #[test]
    fn the_close_notice_is_shown_once_per_device() {
        let dir = tempfile::tempdir().unwrap();
        assert!(first_close(dir.path()));
        assert!(!first_close(dir.path()));
        assert!(!first_close(dir.path()));
    }
}
