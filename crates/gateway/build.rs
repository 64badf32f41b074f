//! Two things cargo cannot see by itself:
//!
//! - `sqlx::migrate!` embeds the migrations at compile time, and cargo does not know it read
//!   them: without the `rerun-if-changed` below, a new migration file alone (no Rust change)
//!   builds a gateway without it.
//! - The web portal (the built Svelte UI, `ui/dist`, or the folder `AIRTEXT_UI_DIST` names) is
//!   embedded into the binary: this writes `$OUT_DIR/portal_files.rs`, one `include_bytes!`
//!   per file. A build without `ui/dist` still succeeds (debug builds and the Rust-only
//!   tests need no Node.js) and its portal says how to build the UI; a release build without
//!   it warns. `scripts/run.sh` builds the UI before the release gateway (docs/deploy.md).

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-env-changed=AIRTEXT_UI_DIST");
    if let Err(error) = embed_portal() {
        // A build script that panics gives a worse message than this.
        println!("cargo:warning=cannot embed the web portal: {error}");
        std::process::exit(1);
    }
}

fn embed_portal() -> std::io::Result<()> {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let ui = manifest_dir.join("../../ui");
    let dist = match std::env::var_os("AIRTEXT_UI_DIST") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => ui.join("dist"),
    };
    let mut files = Vec::new();
    if dist.join("index.html").is_file() {
        // A directory is scanned whole for changes: a new `npm run build` re-embeds.
        println!("cargo:rerun-if-changed={}", dist.display());
        collect(&dist, &dist, &mut files)?;
        files.sort();
    } else {
        // A path that does not exist would rerun this script on every build; the folder
        // `dist` appears in does exist, and changes when it appears.
        if ui.is_dir() {
            println!("cargo:rerun-if-changed={}", ui.display());
        }
        if std::env::var("PROFILE").as_deref() == Ok("release") {
            println!(
                "cargo:warning=the web portal is not embedded: {} has no index.html (build it first: cd ui && npm run build)",
                dist.display()
            );
        }
    }
    let mut code = String::from(
        "/// The built UI: each file's path below `dist/` (with `/`) and its bytes.\n\
         pub static FILES: &[(&str, &[u8])] = &[\n",
    );
    for (name, path) in &files {
        code.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("portal_files.rs"), code)
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            let name = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let absolute = std::fs::canonicalize(&path)?;
            files.push((name, absolute));
        }
    }
    Ok(())
}
