//! Where this device's token is kept: the OS keyring when it answers, otherwise (a desktop
//! with no Secret Service, a locked or absent wallet, no D-Bus session at all) in memory for
//! the session or, when the user chooses so in Settings, in a file readable by its owner only
//! (`token`, mode 0600, in the data directory). The app starts and signs in either way, and
//! [`TokenStorage`] tells the window which of the three holds the token and why.
//!
//! Invariants:
//! - The order is fixed: keyring, then the file (only when chosen), then memory. A keyring that
//!   fails while saving sends the token down the same order instead of failing the sign-in.
//! - One token at a time: when the keyring answers again, a token left in the file moves into
//!   it and the file is deleted; switching the file choice off moves the token into memory and
//!   deletes the file.
//! - A missing entry or file means "signed out", never an error.
//!
//! The keyring is one entry per profile: service `airtext`, user = the data directory (so two
//! profiles on one machine never share a token). Desktop reaches the platform store through
//! keyring's v1 set-up (Secret Service on Linux, Keychain on macOS, Credential Manager on
//! Windows); on iOS and Android the platform store is set at start-up (see `docs/mobile.md`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use airtext_client::secrets::{MemoryTokenStore, TokenStore};
use airtext_client::{Error, Result};
use keyring_core::{CredentialStore, Error as KeyringError};
use serde::Serialize;

pub const SERVICE: &str = "airtext";
/// The token file's name in the data directory (only when the user chose the file).
pub const TOKEN_FILE: &str = "token";

/// Which store holds the token now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum TokenPlace {
    Keyring,
    File,
    Memory,
}

/// What the window shows about the token's store (Settings, and the notice after sign-in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct TokenStorage {
    pub place: TokenPlace,
    /// Why the OS keyring is not used (the platform's own words); `None` while it holds the
    /// token.
    pub keyring_problem: Option<String>,
    /// The file the token is kept in when the user chooses it.
    pub file: String,
}

/// The OS keyring's entry for one profile.
#[derive(Clone)]
pub struct KeyringTokenStore {
    store: Arc<CredentialStore>,
    user: String,
}

impl std::fmt::Debug for KeyringTokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyringTokenStore")
            .field("store", &self.store.vendor())
            .field("user", &self.user)
            .finish()
    }
}

impl KeyringTokenStore {
    pub fn new(store: Arc<CredentialStore>, user: impl Into<String>) -> Self {
        KeyringTokenStore {
            store,
            user: user.into(),
        }
    }

    fn entry(&self) -> Result<keyring_core::Entry> {
        keyring_core::Entry::new_in_store(&self.store, SERVICE, &self.user).map_err(unavailable)
    }

    /// Why the keyring cannot hold the token, or `None` when it answers (a read that finds
    /// no entry counts).
    fn problem(&self) -> Option<String> {
        let entry = keyring_core::Entry::new_in_store(&self.store, SERVICE, &self.user);
        match entry.and_then(|e| e.get_password()) {
            Ok(_) | Err(KeyringError::NoEntry) => None,
            Err(e) => Some(e.to_string()),
        }
    }
}

/// Why the OS keyring cannot keep the token (no Secret Service, no D-Bus session, no platform
/// store): a state the window shows, never a reason not to start. keyring's own error is
/// neither `Clone` nor owned where its set-up reports it, so its words are kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyringUnavailable(String);

impl KeyringUnavailable {
    fn no_store() -> Self {
        KeyringUnavailable("the platform has no credential store".to_owned())
    }
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::Config(format!(
        "the system keyring is not available ({e}): unlock it or start a Secret Service (e.g. gnome-keyring)"
    ))
}

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

/// The platform's credential store, or why there is none (no D-Bus session, no Secret
/// Service): keyring v1 sets it up once per process.
#[cfg(not(mobile))]
pub fn platform_store() -> std::result::Result<Arc<CredentialStore>, KeyringUnavailable> {
    match keyring::Entry::store_status() {
        Ok(()) => keyring_core::get_default_store().ok_or_else(KeyringUnavailable::no_store),
        Err(e) => Err(KeyringUnavailable(e.to_string())),
    }
}

/// The platform's credential store (iOS Keychain, Android Keystore), set as keyring-core's
/// default, or why there is none.
#[cfg(mobile)]
pub fn platform_store() -> std::result::Result<Arc<CredentialStore>, KeyringUnavailable> {
    init_platform_store().map_err(|e| KeyringUnavailable(e.to_string()))?;
    keyring_core::get_default_store().ok_or_else(KeyringUnavailable::no_store)
}

#[cfg(mobile)]
fn init_platform_store() -> Result<()> {
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

/// The token in a file of its own, readable by its owner only (0600), written atomically.
#[derive(Debug, Clone)]
pub struct FileTokenStore {
    path: PathBuf,
}

impl FileTokenStore {
    pub fn new(data_dir: &Path) -> Self {
        FileTokenStore {
            path: data_dir.join(TOKEN_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&self, e: std::io::Error) -> Error {
        Error::Config(format!(
            "cannot keep the sign-in in {}: {e}",
            self.path.display()
        ))
    }
}

impl TokenStore for FileTokenStore {
    fn load(&self) -> Result<Option<String>> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok(Some(text.trim().to_owned()).filter(|t| !t.is_empty())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn save(&self, token: &str) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| self.fail(e))?;
        let tmp = dir.join(format!(".{TOKEN_FILE}.tmp"));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(|e| self.fail(e))?;
        #[cfg(unix)]
        {
            // `mode` applies only when the file is created; a leftover keeps its own bits.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| self.fail(e))?;
        }
        file.write_all(token.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| self.fail(e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.fail(e))
    }

    fn clear(&self) -> Result<()> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }
}

#[derive(Debug)]
struct Choice {
    place: TokenPlace,
    keyring_problem: Option<String>,
    /// The user's choice for when the keyring does not answer.
    in_file: bool,
}

/// The app's token store: the keyring, else the file (when chosen), else memory.
#[derive(Debug)]
pub struct FallbackTokenStore {
    keyring: std::result::Result<KeyringTokenStore, KeyringUnavailable>,
    file: FileTokenStore,
    memory: MemoryTokenStore,
    choice: Mutex<Choice>,
}

fn without_keyring(in_file: bool) -> TokenPlace {
    if in_file {
        TokenPlace::File
    } else {
        TokenPlace::Memory
    }
}

impl FallbackTokenStore {
    /// Chooses where the token lives: the keyring when it answers (a read that finds no entry
    /// counts), otherwise the file when `in_file`, otherwise memory.
    pub fn open(
        keyring: std::result::Result<KeyringTokenStore, KeyringUnavailable>,
        data_dir: &Path,
        in_file: bool,
    ) -> Self {
        let problem = match &keyring {
            Ok(store) => store.problem(),
            Err(why) => Some(why.to_string()),
        };
        let place = match problem {
            None => TokenPlace::Keyring,
            Some(_) => without_keyring(in_file),
        };
        let store = FallbackTokenStore {
            keyring,
            file: FileTokenStore::new(data_dir),
            memory: MemoryTokenStore::default(),
            choice: Mutex::new(Choice {
                place,
                keyring_problem: problem,
                in_file,
            }),
        };
        if place == TokenPlace::Keyring {
            store.adopt_file_token();
        }
        store
    }

    fn choice(&self) -> std::sync::MutexGuard<'_, Choice> {
        self.choice.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A token kept in the file while the keyring did not answer is the newest sign-in: it
    /// moves into the keyring, and the file goes once the keyring holds it.
    fn adopt_file_token(&self) {
        let Ok(keyring) = &self.keyring else { return };
        match self.file.load() {
            Ok(Some(token)) => match keyring.save(&token) {
                Ok(()) => {
                    if let Err(error) = self.file.clear() {
                        tracing::warn!(%error, "the token is in the keyring; its file stays");
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "the keyring refused the token; it stays in its file");
                    let mut choice = self.choice();
                    choice.place = TokenPlace::File;
                    choice.keyring_problem = Some(error.to_string());
                }
            },
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "cannot read the token file"),
        }
    }

    pub fn storage(&self) -> TokenStorage {
        let choice = self.choice();
        TokenStorage {
            place: choice.place,
            keyring_problem: choice.keyring_problem.clone(),
            file: self.file.path().display().to_string(),
        }
    }

    /// Applies the user's choice for when the keyring does not answer. With the keyring in
    /// use nothing moves; otherwise the token moves between memory and the file at once.
    pub fn set_in_file(&self, in_file: bool) -> Result<()> {
        let mut choice = self.choice();
        choice.in_file = in_file;
        match (choice.place, in_file) {
            (TokenPlace::Memory, true) => {
                if let Some(token) = self.memory.load()? {
                    self.file.save(&token)?;
                }
                self.memory.clear()?;
                choice.place = TokenPlace::File;
            }
            (TokenPlace::File, false) => {
                if let Some(token) = self.file.load()? {
                    self.memory.save(&token)?;
                }
                self.file.clear()?;
                choice.place = TokenPlace::Memory;
            }
            _ => {}
        }
        Ok(())
    }

    fn store(&self, place: TokenPlace) -> &dyn TokenStore {
        match (place, &self.keyring) {
            (TokenPlace::Keyring, Ok(keyring)) => keyring,
            (TokenPlace::File, _) => &self.file,
            // The keyring is chosen only when it exists.
            (TokenPlace::Keyring | TokenPlace::Memory, _) => &self.memory,
        }
    }
}

impl TokenStore for FallbackTokenStore {
    fn load(&self) -> Result<Option<String>> {
        let place = self.choice().place;
        self.store(place).load()
    }

    fn save(&self, token: &str) -> Result<()> {
        let mut choice = self.choice();
        match self.store(choice.place).save(token) {
            Ok(()) => Ok(()),
            Err(error) if choice.place == TokenPlace::Keyring => {
                // A keyring that answered at start but refuses now (locked, its service gone):
                // the sign-in still succeeds, kept where the keyring's absence puts it.
                tracing::warn!(%error, "the keyring refused the token");
                choice.place = without_keyring(choice.in_file);
                choice.keyring_problem = Some(error.to_string());
                self.store(choice.place).save(token)
            }
            Err(error) => Err(error),
        }
    }

    fn clear(&self) -> Result<()> {
        let place = self.choice().place;
        self.memory.clear()?;
        if place == TokenPlace::File || self.file.path().exists() {
            self.file.clear()?;
        }
        self.store(place).clear()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// keyring-core's own in-process store: a keyring that answers.
    fn answering_keyring(user: &str) -> std::result::Result<KeyringTokenStore, KeyringUnavailable> {
        let store: Arc<CredentialStore> = keyring_core::sample::Store::new().unwrap();
        Ok(KeyringTokenStore::new(store, user))
    }

    /// What keyring's set-up reports with no D-Bus session.
    fn absent_keyring() -> std::result::Result<KeyringTokenStore, KeyringUnavailable> {
        Err(KeyringUnavailable(KeyringError::NoDefaultStore.to_string()))
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_keyring_comes_first_when_it_answers() {
        let dir = tempfile::tempdir().unwrap();
        let store = FallbackTokenStore::open(answering_keyring("p1"), dir.path(), true);
        let storage = store.storage();
        assert_eq!(storage.place, TokenPlace::Keyring);
        assert_eq!(storage.keyring_problem, None);
        assert_eq!(
            store.load().unwrap(),
            None,
            "an empty keyring is signed out"
        );
        store.save("tok-1").unwrap();
        assert_eq!(store.load().unwrap().as_deref(), Some("tok-1"));
        assert!(
            !dir.path().join(TOKEN_FILE).exists(),
            "no file beside the keyring"
        );
        store.clear().unwrap();
        assert_eq!(store.load().unwrap(), None);
    }

    #[test]
    fn without_a_keyring_the_token_stays_in_memory_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let store = FallbackTokenStore::open(absent_keyring(), dir.path(), false);
        let storage = store.storage();
        assert_eq!(storage.place, TokenPlace::Memory);
        let problem = storage.keyring_problem.unwrap();
        assert_eq!(problem, KeyringError::NoDefaultStore.to_string());
        store.save("tok-2").unwrap();
        assert_eq!(store.load().unwrap().as_deref(), Some("tok-2"));
        assert!(!dir.path().join(TOKEN_FILE).exists(), "nothing on disk");
        // A new process (the next start) has nothing: memory lasts as long as the process.
        let next = FallbackTokenStore::open(absent_keyring(), dir.path(), false);
        assert_eq!(next.load().unwrap(), None);
    }

    #[test]
    fn without_a_keyring_the_chosen_file_is_private_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = FallbackTokenStore::open(absent_keyring(), dir.path(), true);
        assert_eq!(store.storage().place, TokenPlace::File);
        store.save("tok-3").unwrap();
        let file = dir.path().join(TOKEN_FILE);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "tok-3");
        #[cfg(unix)]
        assert_eq!(mode(&file), 0o600);
        let next = FallbackTokenStore::open(absent_keyring(), dir.path(), true);
        assert_eq!(next.load().unwrap().as_deref(), Some("tok-3"));
        next.clear().unwrap();
        assert!(!file.exists(), "signing out deletes the file");
    }

    #[test]
    fn a_leftover_file_with_loose_permissions_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join(format!(".{TOKEN_FILE}.tmp"));
        std::fs::write(&tmp, "old").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let file = FileTokenStore::new(dir.path());
        file.save("tok-4").unwrap();
        #[cfg(unix)]
        assert_eq!(mode(file.path()), 0o600);
        assert_eq!(file.load().unwrap().as_deref(), Some("tok-4"));
    }

    #[test]
    fn choosing_the_file_moves_the_token_and_unchoosing_deletes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = FallbackTokenStore::open(absent_keyring(), dir.path(), false);
        store.save("tok-5").unwrap();
        store.set_in_file(true).unwrap();
        assert_eq!(store.storage().place, TokenPlace::File);
        let file = dir.path().join(TOKEN_FILE);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "tok-5");
        store.set_in_file(false).unwrap();
        assert_eq!(store.storage().place, TokenPlace::Memory);
        assert!(!file.exists());
        assert_eq!(
            store.load().unwrap().as_deref(),
            Some("tok-5"),
            "still signed in"
        );
    }

    #[test]
    fn the_file_choice_does_not_move_a_token_the_keyring_holds() {
        let dir = tempfile::tempdir().unwrap();
        let store = FallbackTokenStore::open(answering_keyring("p6"), dir.path(), false);
        store.save("tok-6").unwrap();
        store.set_in_file(true).unwrap();
        assert_eq!(store.storage().place, TokenPlace::Keyring);
        assert!(!dir.path().join(TOKEN_FILE).exists());
    }

    #[test]
    fn a_token_kept_in_the_file_moves_into_the_keyring_when_it_answers_again() {
        let dir = tempfile::tempdir().unwrap();
        FileTokenStore::new(dir.path()).save("tok-7").unwrap();
        let keyring = answering_keyring("p7");
        let store = FallbackTokenStore::open(keyring.clone(), dir.path(), true);
        assert_eq!(store.storage().place, TokenPlace::Keyring);
        assert_eq!(store.load().unwrap().as_deref(), Some("tok-7"));
        assert_eq!(keyring.unwrap().load().unwrap().as_deref(), Some("tok-7"));
        assert!(!dir.path().join(TOKEN_FILE).exists(), "one token at a time");
    }
}
