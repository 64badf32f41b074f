//! The web portal served by the gateway itself: a built UI from a folder (`ui_dir`), the
//! app's routes falling back to `index.html`, API paths never doing so, the caching rules and
//! the Content-Security-Policy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::TestGateway;
use reqwest::header;
use serde_json::Value;

const INDEX: &str = "<!doctype html><html><head><script type=\"module\" src=\"./assets/index-3f2a1b.js\"></script></head><body><div id=\"app\"></div></body></html>";
const SCRIPT: &str = "console.log('airtext');";
const SECRET: &str = "the content of a file outside the portal";

/// A built UI in `<temp>/dist`, and beside it a file that must never be reachable.
fn built_ui() -> (tempfile::TempDir, std::path::PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dist = root.path().join("dist");
    std::fs::create_dir_all(dist.join("assets")).unwrap();
    std::fs::write(dist.join("index.html"), INDEX).unwrap();
    std::fs::write(dist.join("assets/index-3f2a1b.js"), SCRIPT).unwrap();
    std::fs::write(dist.join("favicon.svg"), "<svg/>").unwrap();
    std::fs::write(root.path().join("airtext-portal-secret.txt"), SECRET).unwrap();
    (root, dist)
}

async fn get(gw: &TestGateway, path: &str) -> reqwest::Response {
    gw.http
        .get(format!("{}{path}", gw.url))
        .send()
        .await
        .unwrap()
}

fn header_of(response: &reqwest::Response, name: header::HeaderName) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn the_gateway_serves_the_portal_beside_the_api() {
    let (_root, dist) = built_ui();
    let dir = dist.clone();
    let gw = TestGateway::start_with(move |config| config.ui_dir = Some(dir)).await;

    // The root: index.html, never cached without asking again, under a strict CSP that lets
    // the page reach this origin's API and WebSocket and nothing else.
    let root = get(&gw, "/").await;
    assert_eq!(root.status(), 200);
    assert!(header_of(&root, header::CONTENT_TYPE).starts_with("text/html"));
    assert_eq!(header_of(&root, header::CACHE_CONTROL), "no-cache");
    let csp = header_of(&root, header::CONTENT_SECURITY_POLICY);
    let host = gw.url.trim_start_matches("http://");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        &format!("connect-src 'self' ws://{host} wss://{host}"),
        "frame-ancestors 'none'",
        "object-src 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(header_of(&root, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert_eq!(root.text().await.unwrap(), INDEX);

    // A hashed asset: its type, cached for good.
    let script = get(&gw, "/assets/index-3f2a1b.js").await;
    assert_eq!(script.status(), 200);
    assert!(header_of(&script, header::CONTENT_TYPE).starts_with("text/javascript"));
    assert!(header_of(&script, header::CACHE_CONTROL).contains("immutable"));
    assert_eq!(script.text().await.unwrap(), SCRIPT);

    // An unhashed file outside assets/ is revalidated.
    let icon = get(&gw, "/favicon.svg").await;
    assert_eq!(icon.status(), 200);
    assert_eq!(header_of(&icon, header::CONTENT_TYPE), "image/svg+xml");
    assert_eq!(header_of(&icon, header::CACHE_CONTROL), "no-cache");

    // The app's routes get index.html; a missing file does not (no HTML served as a script).
    for route in ["/conversations", "/settings/password", "/c/0193a0b2"] {
        let page = get(&gw, route).await;
        assert_eq!(page.status(), 200, "{route}");
        assert_eq!(page.text().await.unwrap(), INDEX, "{route}");
    }
    let missing = get(&gw, "/assets/index-gone.js").await;
    assert_eq!(missing.status(), 404);
    assert!(!header_of(&missing, header::CONTENT_TYPE).starts_with("text/html"));

    // API paths never fall back to the app: they stay JSON 404s.
    for path in [
        "/v1",
        "/v1/",
        "/v1/no-such-thing",
        "/v1/conversations/x/y/z",
        "/metrics/x",
    ] {
        let (status, body) = gw.call(reqwest::Method::GET, path, None, None).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["code"], "not_found", "{path}: {body}");
    }
    // Nor do other methods.
    let (status, body) = gw
        .call(reqwest::Method::POST, "/settings", None, Some(Value::Null))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "not_found");

    // The API itself is untouched.
    let health = get(&gw, "/healthz").await;
    assert_eq!(health.status(), 200);
    let (status, _) = gw.call(reqwest::Method::GET, "/v1/me", None, None).await;
    assert_eq!(status, 401);

    // HEAD: the headers without the body.
    let head = gw.http.head(format!("{}/", gw.url)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(header_of(&head, header::CONTENT_SECURITY_POLICY).contains("default-src"));
    assert!(head.bytes().await.unwrap().is_empty());

    // Nothing outside the folder, however the path is spelled.
    for path in [
        "/../airtext-portal-secret.txt",
        "/assets/%2e%2e/%2e%2e/airtext-portal-secret.txt",
        "/assets/..%2f..%2fairtext-portal-secret.txt",
        "/assets//index-3f2a1b.js",
    ] {
        let response = get(&gw, path).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(!text.contains(SECRET), "{path}: {status} {text}");
        assert_ne!(text, SCRIPT, "{path}");
    }

    gw.stop().await;
}

#[tokio::test]
async fn a_rebuilt_ui_is_served_without_restarting() {
    let (_root, dist) = built_ui();
    let dir = dist.clone();
    let gw = TestGateway::start_with(move |config| config.ui_dir = Some(dir)).await;
    std::fs::write(dist.join("index.html"), "<!doctype html><p>new build</p>").unwrap();
    let page = get(&gw, "/").await;
    assert_eq!(
        page.text().await.unwrap(),
        "<!doctype html><p>new build</p>"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_ui_dir_without_a_build_is_refused_at_start() {
    let empty = tempfile::tempdir().unwrap();
    let config = airtext_gateway::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}", empty.path().join("gateway.db").display()),
        ui_dir: Some(empty.path().to_owned()),
        ..airtext_gateway::Config::default()
    };
    let error = airtext_gateway::Gateway::start(config)
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(
        error.contains("ui_dir") && error.contains("index.html"),
        "{error}"
    );
}

#[tokio::test]
async fn without_a_folder_the_portal_is_the_built_in_one() {
    let gw = TestGateway::start().await;
    let root = get(&gw, "/").await;
    if airtext_gateway::http::portal::is_embedded() {
        assert_eq!(root.status(), 200);
        assert!(header_of(&root, header::CONTENT_TYPE).starts_with("text/html"));
        assert!(header_of(&root, header::CONTENT_SECURITY_POLICY).contains("script-src 'self'"));
    } else {
        // A build made without ui/dist says how to get the portal.
        assert_eq!(root.status(), 404);
        let body: Value = root.json().await.unwrap();
        assert!(
            body["message"].as_str().unwrap().contains("npm run build"),
            "{body}"
        );
    }
    let (status, body) = gw.call(reqwest::Method::GET, "/v1/nope", None, None).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "not_found");
    gw.stop().await;
}
