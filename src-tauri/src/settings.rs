//! This device's app settings (`settings.json` in the data directory): the proxy and modem the
//! client core is opened with, how notifications look, where the sign-in is kept when the OS
//! keyring does not answer, and (desktop) the tray and start at login. They are this device's own facts,
//! so they are not synced. A missing or unreadable file means the defaults.

use std::path::Path;

use airtext_client::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(default)]
pub struct Settings {
    /// `socks5h://127.0.0.1:9050` (Tor) or any SOCKS5 proxy; empty for a direct connection.
    pub proxy_url: String,
    /// The cellular modem's serial port; empty for none.
    pub modem_port: String,
    pub notifications: bool,
    /// Show only the sender in notifications, never the text.
    pub hide_text: bool,
    /// Without an OS keyring, keep the sign-in in a private file (0600) in the data directory
    /// instead of in memory for the session.
    pub token_in_file: bool,
    /// Closing the window keeps Airtext running (in the tray where there is one), so texts
    /// still arrive and notify.
    pub close_to_tray: bool,
    /// Start Airtext when the user logs in.
    pub autostart: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            proxy_url: String::new(),
            modem_port: String::new(),
            notifications: true,
            hide_text: false,
            token_in_file: false,
            close_to_tray: true,
            autostart: false,
        }
    }
}

const FILE: &str = "settings.json";

impl Settings {
    pub fn load(data_dir: &Path) -> Settings {
        std::fs::read(data_dir.join(FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Writes the file atomically (temporary file, then rename).
    pub fn save(&self, data_dir: &Path) -> Result<()> {
        let fail = |e: std::io::Error| Error::Config(format!("cannot save the settings: {e}"));
        std::fs::create_dir_all(data_dir).map_err(fail)?;
        let tmp = data_dir.join(format!(".{FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Config(e.to_string()))?;
        std::fs::write(&tmp, bytes).map_err(fail)?;
        std::fs::rename(&tmp, data_dir.join(FILE)).map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn round_trips_and_defaults_when_missing_or_broken() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Settings::load(dir.path()), Settings::default());
        let s = Settings {
            hide_text: true,
            proxy_url: "socks5h://127.0.0.1:9050".into(),
            ..Settings::default()
        };
        s.save(dir.path()).unwrap();
        assert_eq!(Settings::load(dir.path()), s);
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        assert_eq!(Settings::load(dir.path()), Settings::default());
    }
}
