//! The device token in the OS keyring: service `airtext`, user = the data directory's profile
//! name (one entry per profile, so two profiles on one machine never share a token).
//! A missing entry means "signed out", never an error; a keyring that cannot be reached (no
//! Secret Service, locked) is an error with what to fix, not a silent sign-out.
//!
//! Desktop uses keyring's v1 stores (Secret Service on Linux, Keychain on macOS, Credential
//! Manager on Windows). On iOS and Android the platform store is set as keyring-core's default
//! store at start-up (see `docs/mobile.md`).

use airtext_client::secrets::TokenStore;
use airtext_client::{Error, Result};

pub const SERVICE: &str = "airtext";

#[derive(Debug, Clone)]
pub struct KeyringTokenStore {
    user: String,
}

impl KeyringTokenStore {
    pub fn new(user: impl Into<String>) -> Self {
        KeyringTokenStore { user: user.into() }
    }

    #[cfg(not(mobile))]
    fn entry(&self) -> Result<keyring::Entry> {
        keyring::Entry::new(SERVICE, &self.user).map_err(unavailable)
    }

    #[cfg(mobile)]
    fn entry(&self) -> Result<keyring_core::Entry> {
        keyring_core::Entry::new(SERVICE, &self.user).map_err(unavailable)
    }
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::Config(format!(
        "the system keyring is not available ({e}): unlock it or start a Secret Service (e.g. gnome-keyring)"
    ))
}

#[cfg(not(mobile))]
use keyring::Error as KeyringError;
#[cfg(mobile)]
use keyring_core::Error as KeyringError;

impl TokenStore for KeyringTokenStore {
    fn load(&self) -> Result<Option<String>> {
        match self.entry()?.get_password() {
            Ok(token) => Ok(Some(token)),
            Err(KeyringError::NoEntry) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn save(&self, token: &str) -> Result<()> {
        self.entry()?.set_password(token).map_err(unavailable)
    }

    fn clear(&self) -> Result<()> {
        match self.entry()?.delete_credential() {
            Ok(()) | Err(KeyringError::NoEntry) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// Sets the platform's credential store as keyring-core's default (mobile only: desktop's
/// keyring v1 does this itself).
#[cfg(mobile)]
pub fn init_platform_store() -> Result<()> {
    #[cfg(target_os = "ios")]
    {
        let store = apple_native_keyring_store::protected::Store::new_with_configuration(
            &Default::default(),
        )
        .map_err(unavailable)?;
        keyring_core::set_default_store(store);
    }
    #[cfg(target_os = "android")]
    {
        let store =
            android_native_keyring_store::Store::new_with_configuration(&Default::default())
                .map_err(unavailable)?;
        keyring_core::set_default_store(store);
    }
    Ok(())
}
