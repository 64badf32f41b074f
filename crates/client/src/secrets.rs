//! Where the device token and the device's sign-in record live.
//!
//! The token is the only secret: whoever holds it *is* this device. A [`TokenStore`] keeps it:
//! the CLI's [`ConfigFileTokenStore`] puts it in the data directory's `airtext.json`, written
//! atomically with 0600 permissions; the app implements the trait over the OS keyring (a
//! missing entry is "signed out", not an error).
//!
//! [`DeviceFile`] is the non-secret rest: which gateway and which account this data directory
//! is signed in to (and so which cache file to open).

use std::fmt::Debug;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use airtext_api::{AccountId, DeviceId};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Keeps one device token.
pub trait TokenStore: Send + Sync + Debug {
    /// The token, or `None` when signed out.
    fn load(&self) -> Result<Option<String>>;
    fn save(&self, token: &str) -> Result<()>;
    /// Forgets the token (signing out); forgetting a missing token is fine.
    fn clear(&self) -> Result<()>;
}

/// The data directory's record of who this device is signed in as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceFile {
    pub gateway_url: Option<String>,
    pub account_id: Option<AccountId>,
    pub username: Option<String>,
    pub device_id: Option<DeviceId>,
    /// Only with [`ConfigFileTokenStore`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

pub const DEVICE_FILE: &str = "airtext.json";

impl DeviceFile {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(DEVICE_FILE)
    }

    pub fn load(data_dir: &Path) -> Result<DeviceFile> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Config(format!("{} is not valid: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DeviceFile::default()),
            Err(e) => Err(Error::Config(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// Writes the file atomically (temporary file, then rename), readable by its owner only.
    pub fn save(&self, data_dir: &Path) -> Result<()> {
        let path = Self::path(data_dir);
        let fail =
            |e: std::io::Error| Error::Config(format!("cannot write {}: {e}", path.display()));
        crate::private::create_dir(data_dir).map_err(fail)?;
        let tmp = data_dir.join(format!(".{DEVICE_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Config(e.to_string()))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(fail)?;
        #[cfg(unix)]
        {
            // `mode` only applies when the file is created; an older file keeps its bits.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(fail)?;
        }
        file.write_all(&bytes).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, &path).map_err(fail)?;
        Ok(())
    }
}

/// The CLI's token store: the `token` field of `airtext.json` in the data directory (0600).
#[derive(Debug)]
pub struct ConfigFileTokenStore {
    data_dir: PathBuf,
    // One writer at a time within this process (the file is read-modify-written).
    lock: Mutex<()>,
}

impl ConfigFileTokenStore {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ConfigFileTokenStore {
            data_dir: data_dir.into(),
            lock: Mutex::new(()),
        }
    }

    fn update(&self, token: Option<&str>) -> Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut file = DeviceFile::load(&self.data_dir)?;
        file.token = token.map(str::to_owned);
        file.save(&self.data_dir)
    }
}

impl TokenStore for ConfigFileTokenStore {
    fn load(&self) -> Result<Option<String>> {
        Ok(DeviceFile::load(&self.data_dir)?.token)
    }

    fn save(&self, token: &str) -> Result<()> {
        self.update(Some(token))
    }

    fn clear(&self) -> Result<()> {
        self.update(None)
    }
}

/// A token kept in memory only (tests, and embedders that persist it themselves).
#[derive(Debug, Default)]
pub struct MemoryTokenStore(Mutex<Option<String>>);

impl TokenStore for MemoryTokenStore {
    fn load(&self) -> Result<Option<String>> {
        Ok(self.0.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn save(&self, token: &str) -> Result<()> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.to_owned());
        Ok(())
    }

    fn clear(&self) -> Result<()> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_config_file_keeps_the_token_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = ConfigFileTokenStore::new(dir.path());
        assert_eq!(store.load().unwrap(), None);
        let file = DeviceFile {
            gateway_url: Some("http://127.0.0.1:1".into()),
            ..DeviceFile::default()
        };
        file.save(dir.path()).unwrap();
        store.save("secret-token").unwrap();
        assert_eq!(store.load().unwrap().as_deref(), Some("secret-token"));
        // The rest of the file survives the token's writes.
        assert_eq!(
            DeviceFile::load(dir.path()).unwrap().gateway_url.as_deref(),
            Some("http://127.0.0.1:1")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(DeviceFile::path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        store.clear().unwrap();
        assert_eq!(store.load().unwrap(), None);
    }
}
