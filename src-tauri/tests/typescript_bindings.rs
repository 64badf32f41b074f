//! The TypeScript types of what the app's window receives over IPC (the client cache's
//! messages, conversations and events, the shell's settings and errors) are generated from
//! the Rust types with ts-rs and committed in `ui/src/lib/bindings/app/`. This test regenerates
//! them and fails on drift; `UPDATE_BINDINGS=1 cargo test -p airtext-app --features ts --test
//! typescript_bindings` rewrites them.
//!
//! Types of airtext-api that these refer to are not copied: they live one directory up
//! (`ui/src/lib/bindings/`, airtext-api's own drift test), and imports are pointed there.
#![cfg(feature = "ts")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ts_rs::TS;

fn export_all(dir: &Path) {
    let config = ts_rs::Config::new().with_out_dir(dir);
    macro_rules! export {
        ($($t:ty),* $(,)?) => { $( <$t>::export_all(&config).unwrap(); )* };
    }
    export!(
        airtext_client::cache::messages::CachedMessage,
        airtext_client::cache::conversations::CachedConversation,
        airtext_client::events::ClientEvent,
        airtext_client::app::SearchHit,
        airtext_client::app::ConversationCursor,
        airtext_client::app::PathDecision,
        airtext_client::app::ContactInput,
        airtext_client::app::ImportResult,
        airtext_app_lib::settings::Settings,
        airtext_app_lib::error::IpcError,
        airtext_app_lib::commands::Capabilities,
        airtext_app_lib::notify::OpenThread,
        airtext_app_lib::token_store::TokenStorage,
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

/// The app's own bindings: everything generated except airtext-api's types, with imports of
/// those pointed at the parent directory.
fn app_bindings(
    generated: BTreeMap<String, String>,
    api: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    generated
        .into_iter()
        .filter(|(name, _)| !api.contains_key(name))
        .map(|(name, text)| {
            let mut text = text;
            for api_name in api.keys() {
                let stem = api_name.trim_end_matches(".ts");
                text = text.replace(
                    &format!("from \"./{stem}\""),
                    &format!("from \"../{stem}\""),
                );
            }
            (name, text)
        })
        .collect()
}

#[test]
fn committed_app_bindings_match_the_rust_types() {
    let bindings = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ui/src/lib/bindings");
    let committed_dir = bindings.join("app");
    let fresh = std::env::temp_dir().join(format!("airtext-app-bindings-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&fresh);
    std::fs::create_dir_all(&fresh).unwrap();
    export_all(&fresh);
    let api = read_dir(&bindings);
    assert!(
        api.contains_key("Message.ts"),
        "airtext-api's bindings are missing"
    );
    let generated = app_bindings(read_dir(&fresh), &api);
    let _ = std::fs::remove_dir_all(&fresh);
    assert!(generated.contains_key("CachedMessage.ts") && generated.contains_key("ClientEvent.ts"));

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
        "ui/src/lib/bindings/app drifted from the Rust types (missing {missing:?}, stale {stale:?}, changed {changed:?}); \
         run UPDATE_BINDINGS=1 cargo test -p airtext-app --features ts --test typescript_bindings"
    );
}
