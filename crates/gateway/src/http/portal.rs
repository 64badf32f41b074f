//! The web portal: the Svelte UI (`ui/`) served at `/`, on the same origin as `/v1`, so the
//! browser needs no CORS and the UI's default gateway (the page's own origin) is this one.
//!
//! The files come from the binary (`ui/dist` embedded at build time, see `build.rs`) or, with
//! `ui_dir` / `--ui-dir`, from a folder read at each request (a UI rebuilt without rebuilding
//! the gateway).
//!
//! Invariants:
//! - API paths (`/v1…`, `/healthz`, `/metrics`, `/2010-04-01…`) never fall back to the UI: an
//!   unknown one is the JSON 404 every API client expects;
//! - any other `GET`/`HEAD` path without a file extension is one of the app's routes and gets
//!   `index.html`; a missing file (`/assets/gone.js`) is a 404, never `index.html` served as
//!   a script;
//! - `index.html` (and every file outside `assets/`) is `no-cache`, so a new build is picked
//!   up at the next load; files under `assets/`, whose names carry Vite's content hash, are
//!   cached for a year as immutable;
//! - every portal answer carries a strict Content-Security-Policy: scripts, styles and
//!   connections only from this origin (plus its WebSocket), nothing inline, no frames.

use std::path::{Path, PathBuf};

use airtext_api::ErrorCode;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::error::ApiError;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/portal_files.rs"));
}

/// Path prefixes that belong to the API, not to the app (a prefix matches itself, or itself
/// followed by `/`).
const API_PREFIXES: &[&str] = &["/v1", "/healthz", "/metrics", "/2010-04-01"];

const INDEX: &str = "index.html";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const NO_CACHE: &str = "no-cache";

/// Whether the binary carries a built UI (`ui/dist` was there when it was compiled).
pub fn is_embedded() -> bool {
    embedded::FILES.iter().any(|(name, _)| *name == INDEX)
}

/// Whether `path` is the API's, so it must never be answered with the app.
pub fn is_api_path(path: &str) -> bool {
    API_PREFIXES.iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Everything no route matched: the portal for `GET`/`HEAD` outside the API, a JSON 404
/// otherwise.
pub async fn fallback(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path();
    if is_api_path(path) || !(method == Method::GET || method == Method::HEAD) {
        return super::not_found().await.into_response();
    }
    let mut response = match serve(state.config.ui_dir.as_deref(), path).await {
        Ok(response) => response,
        Err(error) => return error.into_response(),
    };
    secure(response.headers_mut(), &headers);
    if method == Method::HEAD {
        *response.body_mut() = Body::empty();
    }
    response
}

/// The file `path` names, or `index.html` for an app route.
async fn serve(folder: Option<&Path>, path: &str) -> Result<Response, ApiError> {
    let Some(name) = file_name(path) else {
        return Err(not_found(path));
    };
    if !name.is_empty() {
        if let Some(bytes) = read(folder, name).await? {
            return Ok(file_response(name, bytes));
        }
        let last = name.rsplit('/').next().unwrap_or(name);
        if last.contains('.') {
            return Err(not_found(path));
        }
    }
    match read(folder, INDEX).await? {
        Some(bytes) => Ok(file_response(INDEX, bytes)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            match folder {
                Some(dir) => format!(
                    "the web portal is not in {}: build it there (cd ui && npm run build) or fix ui_dir",
                    dir.display()
                ),
                None => "the web portal is not built into this gateway: build the UI first \
                         (cd ui && npm run build), then the gateway, or pass --ui-dir"
                    .to_owned(),
            },
        )),
    }
}

/// The file's path below the UI's root, `""` for the root itself; `None` for a path that
/// could leave the folder or names nothing a build makes (`..`, `.`, empty segments,
/// backslashes, NUL). Percent escapes are left as they are: no built file has one, so an
/// escaped `..` names nothing.
fn file_name(path: &str) -> Option<&str> {
    let name = path.strip_prefix('/')?;
    if name.is_empty() {
        return Some(name);
    }
    let safe = name.split('/').all(|segment| {
        !segment.is_empty() && segment != "." && segment != ".." && !segment.contains(['\\', '\0'])
    });
    safe.then_some(name)
}

async fn read(folder: Option<&Path>, name: &str) -> Result<Option<Vec<u8>>, ApiError> {
    match folder {
        None => Ok(embedded::FILES
            .iter()
            .find(|(file, _)| *file == name)
            .map(|(_, bytes)| bytes.to_vec())),
        Some(dir) => {
            let path: PathBuf = dir.join(name);
            match tokio::fs::read(&path).await {
                Ok(bytes) => Ok(Some(bytes)),
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::NotFound
                            | std::io::ErrorKind::NotADirectory
                            | std::io::ErrorKind::IsADirectory
                    ) =>
                {
                    Ok(None)
                }
                // A folder read as a file fails differently on some systems: nothing to serve.
                Err(_) if path.is_dir() => Ok(None),
                Err(error) => Err(ApiError::internal(anyhow::anyhow!(
                    "cannot read the portal file {}: {error}",
                    path.display()
                ))),
            }
        }
    }
}

fn file_response(name: &str, bytes: Vec<u8>) -> Response {
    let cache = if name.starts_with("assets/") {
        IMMUTABLE
    } else {
        NO_CACHE
    };
    (
        [
            (header::CONTENT_TYPE, content_type(name)),
            (header::CACHE_CONTROL, cache),
        ],
        bytes,
    )
        .into_response()
}

fn not_found(path: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        format!("no such file in the web portal: {path}"),
    )
}

/// The media type by extension, for what a Vite build makes.
fn content_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map_or("", |(_, ext)| ext);
    match extension.to_ascii_lowercase().as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// The Content-Security-Policy and its companions. `connect-src` names this host's
/// WebSocket explicitly (`'self'` covers `ws:` only in newer browsers), taken from the `Host`
/// the browser used when it is a plain host name.
fn secure(response: &mut HeaderMap, request: &HeaderMap) {
    let host = request
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        });
    let sockets = host.map_or(String::new(), |h| format!(" ws://{h} wss://{h}"));
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
         media-src 'self' blob:; font-src 'self'; manifest-src 'self'; connect-src 'self'{sockets}; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
    );
    if let Ok(value) = HeaderValue::from_str(&policy) {
        response.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_are_never_the_app() {
        for path in [
            "/v1",
            "/v1/",
            "/v1/nope",
            "/healthz",
            "/metrics",
            "/2010-04-01/Accounts",
        ] {
            assert!(is_api_path(path), "{path}");
        }
        for path in ["/", "/v1x", "/settings", "/assets/index.js", "/healthzz"] {
            assert!(!is_api_path(path), "{path}");
        }
    }

    #[test]
    fn paths_cannot_leave_the_folder() {
        assert_eq!(file_name("/"), Some(""));
        assert_eq!(file_name("/assets/a.js"), Some("assets/a.js"));
        for path in [
            "/../etc/passwd",
            "/assets/../../x",
            "/a//b",
            "/./a",
            "/a\\..\\b",
            "/a/",
        ] {
            assert_eq!(file_name(path), None, "{path}");
        }
    }

    #[test]
    fn types_follow_the_extension() {
        assert!(content_type("index.html").starts_with("text/html"));
        assert!(content_type("assets/index-3f2a.js").starts_with("text/javascript"));
        assert!(content_type("assets/x.CSS").starts_with("text/css"));
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
    }
}
