//! The UI's TypeScript types are generated from these Rust types (ts-rs) and committed in
//! `ui/src/lib/bindings/`. This test regenerates them and fails when the committed copies
//! drift; `UPDATE_BINDINGS=1 cargo test -p airtext-api --features ts --test typescript_bindings`
//! rewrites them.
#![cfg(feature = "ts")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use airtext_api::*;
use ts_rs::TS;

fn export_all(dir: &Path) {
    let config = ts_rs::Config::new().with_out_dir(dir);
    macro_rules! export {
        ($($t:ty),* $(,)?) => { $( <$t>::export_all(&config).unwrap(); )* };
    }
    export!(
        ErrorBody,
        accounts::SignUp,
        accounts::AccountCreated,
        accounts::SignIn,
        accounts::Session,
        accounts::Me,
        accounts::ChangePassword,
        accounts::RequestPasswordReset,
        accounts::ConfirmPasswordReset,
        accounts::DeleteAccount,
        identities::AddIdentity,
        identities::IdentityPending,
        identities::VerifyIdentity,
        identities::IdentityVerified,
        numbers::AvailableNumbers,
        numbers::ClaimNumber,
        numbers::ClaimedNumber,
        messages::SendMessage,
        messages::RecordCellular,
        messages::MessagePage,
        messages::SearchPage,
        messages::Lookup,
        conversations::ConversationPage,
        conversations::MarkRead,
        conversations::PatchConversation,
        compose::PlanText,
        compose::TextPlan,
        contacts::PutContact,
        contacts::Contact,
        sync::SyncPage,
        sync::StreamHint,
        simulator::SimulatedInbound,
        simulator::SimulatedOutbox,
    );
}

fn read_dir(dir: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "ts") {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                files.insert(name, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn committed_bindings_match_the_rust_types() {
    let committed_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../ui/src/lib/bindings");
    let fresh = tempfile_dir();
    export_all(&fresh);
    let generated = read_dir(&fresh);
    assert!(
        generated.len() > 20,
        "only {} bindings generated",
        generated.len()
    );

    if std::env::var_os("UPDATE_BINDINGS").is_some() {
        std::fs::create_dir_all(&committed_dir).unwrap();
        for old in read_dir(&committed_dir).keys() {
            std::fs::remove_file(committed_dir.join(old)).unwrap();
        }
        for (name, text) in &generated {
            std::fs::write(committed_dir.join(name), text).unwrap();
        }
        return;
    }
    let committed = read_dir(&committed_dir);
    let missing: Vec<_> = generated
        .keys()
        .filter(|k| !committed.contains_key(*k))
        .collect();
    let stale: Vec<_> = committed
        .keys()
        .filter(|k| !generated.contains_key(*k))
        .collect();
    let changed: Vec<_> = generated
        .iter()
        .filter(|(k, v)| committed.get(*k).is_some_and(|c| c != *v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        missing.is_empty() && stale.is_empty() && changed.is_empty(),
        "ui/src/lib/bindings drifted from airtext-api (missing {missing:?}, stale {stale:?}, changed {changed:?}); \
         run UPDATE_BINDINGS=1 cargo test -p airtext-api --features ts --test typescript_bindings"
    );
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("airtext-bindings-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
