//! The bad-input suite: every kind of wrong request against the account endpoints (and the
//! generic cases against the messaging endpoints), each answered with the right 4xx and a JSON
//! `{code, message}` body — never a 500, never a plain-text reply, never a changed account.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use airtext_gateway::config::{Config, Rate};
use common::{urlencode, Device, TestGateway};
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";

/// What a test request carries as its body.
enum Body {
    None,
    /// Serialised and sent as `application/json`.
    Json(Value),
    /// Sent as is, with this Content-Type (`None`: no Content-Type header at all).
    Raw(Option<&'static str>, Vec<u8>),
}

/// How the request authenticates.
enum Auth<'a> {
    None,
    Token(&'a str),
    /// The whole `Authorization` header value, as bytes (may be garbage).
    Header(&'a [u8]),
}

async fn send(
    gw: &TestGateway,
    method: Method,
    path: &str,
    auth: Auth<'_>,
    body: Body,
) -> (u16, Value) {
    let mut request = gw
        .http
        .request(method.clone(), format!("{}{}", gw.url, path));
    match auth {
        Auth::None => {}
        Auth::Token(token) => request = request.bearer_auth(token),
        Auth::Header(value) => {
            request = request.header(
                "authorization",
                reqwest::header::HeaderValue::from_bytes(value).unwrap(),
            )
        }
    }
    match body {
        Body::None => {}
        Body::Json(value) => request = request.json(&value),
        Body::Raw(content_type, bytes) => {
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            request = request.body(bytes);
        }
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.unwrap_or_default();
    assert!(status < 500, "{method} {path}: {status} {text}");
    if status >= 400 {
        assert!(
            content_type.starts_with("application/json"),
            "{method} {path}: {status} with content-type {content_type:?}: {text}"
        );
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: {status} body is not JSON ({e}): {text}"));
        let object = value.as_object().unwrap();
        assert!(
            object["code"].as_str().is_some_and(|c| !c.is_empty()),
            "{method} {path}: {value}"
        );
        assert!(
            object["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{method} {path}: {value}"
        );
        return (status, value);
    }
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}

/// Asserts one refused request: its status and its code.
async fn refused(
    gw: &TestGateway,
    method: Method,
    path: &str,
    auth: Auth<'_>,
    body: Body,
    want_status: u16,
    want_code: &str,
) -> Value {
    let (status, value) = send(gw, method.clone(), path, auth, body).await;
    assert_eq!(
        (status, value["code"].as_str().unwrap_or("")),
        (want_status, want_code),
        "{method} {path}: {value}"
    );
    value
}

fn json_body(value: Value) -> Body {
    Body::Json(value)
}

fn raw_json(text: &str) -> Body {
    Body::Raw(Some("application/json"), text.as_bytes().to_vec())
}

/// A gateway whose rate limits stay out of the way (they have their own tests).
async fn gateway() -> TestGateway {
    TestGateway::start_with(generous).await
}

fn generous(config: &mut Config) {
    let lots = Rate {
        per_minute: 1_000_000,
        burst: 1_000_000,
    };
    config.rate_limits.sign_in = lots;
    config.rate_limits.sign_up = lots;
    config.rate_limits.verification_codes = lots;
    config.rate_limits.verification_checks = lots;
}

/// The request shapes every JSON-taking endpoint must refuse, with their expected reply.
fn malformed_bodies() -> Vec<(&'static str, Body, u16, &'static str)> {
    vec![
        (
            "truncated JSON",
            raw_json(r#"{"username": "#),
            400,
            "bad_request",
        ),
        (
            "not JSON at all",
            raw_json("username=alice"),
            400,
            "bad_request",
        ),
        ("empty body", raw_json(""), 400, "bad_request"),
        ("JSON null", raw_json("null"), 400, "bad_request"),
        ("JSON array", raw_json("[1, 2]"), 400, "bad_request"),
        ("JSON string", raw_json(r#""hello""#), 400, "bad_request"),
        ("trailing garbage", raw_json(r#"{} {}"#), 400, "bad_request"),
        (
            "invalid UTF-8",
            Body::Raw(
                Some("application/json"),
                vec![b'{', b'"', 0xff, 0xfe, b'"', b'}'],
            ),
            400,
            "bad_request",
        ),
        (
            "no content type",
            Body::Raw(None, br#"{"a": 1}"#.to_vec()),
            415,
            "unsupported_media_type",
        ),
        (
            "text/plain",
            Body::Raw(Some("text/plain"), br#"{"a": 1}"#.to_vec()),
            415,
            "unsupported_media_type",
        ),
        (
            "form encoded",
            Body::Raw(Some("application/x-www-form-urlencoded"), b"a=1".to_vec()),
            415,
            "unsupported_media_type",
        ),
        (
            "huge body",
            Body::Raw(Some("application/json"), huge_json(70 * 1024)),
            413,
            "payload_too_large",
        ),
        (
            "deeply nested",
            raw_json(&format!("{}{}", "[".repeat(10_000), "]".repeat(10_000))),
            400,
            "bad_request",
        ),
    ]
}

/// A syntactically valid JSON object of about `bytes` bytes.
fn huge_json(bytes: usize) -> Vec<u8> {
    format!(
        r#"{{"username": "{}", "password": "x"}}"#,
        "a".repeat(bytes)
    )
    .into_bytes()
}

struct World {
    gw: TestGateway,
    alice: Device,
    bob: Device,
    /// A token that was valid and has been revoked.
    revoked: String,
    bob_identity: String,
}

async fn world() -> World {
    let gw = gateway().await;
    let alice = gw.sign_up("alice").await;
    let bob = gw.sign_up("bob").await;
    let old = gw.sign_in("alice", "old tablet").await;
    let (status, _) = gw
        .call(
            Method::DELETE,
            "/v1/sessions/current",
            Some(&old.token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = gw
        .post(
            "/v1/identities",
            Some(&bob.token),
            json!({"kind": "phone", "value": "+12125550140"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    World {
        alice,
        bob,
        revoked: old.token,
        bob_identity: body["identity_id"].as_str().unwrap().to_owned(),
        gw,
    }
}

#[tokio::test]
async fn malformed_bodies_are_refused_by_every_json_endpoint() {
    let w = world().await;
    let id = &w.bob_identity;
    let verify = format!("/v1/identities/{id}/verify");
    let endpoints: Vec<(&str, Option<&str>)> = vec![
        ("/v1/accounts", None),
        ("/v1/sessions", None),
        ("/v1/numbers", Some(&w.bob.token)),
        ("/v1/identities", Some(&w.bob.token)),
        (&verify, Some(&w.bob.token)),
        ("/v1/messages", Some(&w.bob.token)),
    ];
    for (path, token) in endpoints {
        for (what, body, status, code) in malformed_bodies() {
            let auth = token.map_or(Auth::None, Auth::Token);
            let (got, value) = send(&w.gw, Method::POST, path, auth, body).await;
            assert_eq!(
                (got, value["code"].as_str().unwrap_or("")),
                (status, code),
                "POST {path} with {what}: {value}"
            );
        }
    }
    // The huge body's message says what the limit is.
    let value = refused(
        &w.gw,
        Method::POST,
        "/v1/accounts",
        Auth::None,
        Body::Raw(Some("application/json"), huge_json(1024 * 1024)),
        413,
        "payload_too_large",
    )
    .await;
    assert!(
        value["message"].as_str().unwrap().contains("64 KiB"),
        "{value}"
    );
}

#[tokio::test]
async fn wrong_types_unknown_and_missing_fields() {
    let w = world().await;
    let gw = &w.gw;
    let t = w.bob.token.as_str();
    let verify = format!("/v1/identities/{}/verify", w.bob_identity);
    let cases: Vec<(&str, Option<&str>, Value)> = vec![
        (
            "/v1/accounts",
            None,
            json!({"username": 5, "password": PASSWORD}),
        ),
        (
            "/v1/accounts",
            None,
            json!({"username": "carol", "password": ["a"]}),
        ),
        (
            "/v1/accounts",
            None,
            json!({"username": "carol", "password": PASSWORD, "email": false}),
        ),
        (
            "/v1/accounts",
            None,
            json!({"username": "carol", "password": PASSWORD, "admin": true}),
        ),
        ("/v1/accounts", None, json!({"username": "carol"})),
        ("/v1/accounts", None, json!({})),
        (
            "/v1/sessions",
            None,
            json!({"username": "alice", "password": PASSWORD}),
        ),
        (
            "/v1/sessions",
            None,
            json!({"username": "alice", "password": PASSWORD, "device_name": "x", "has_cellular": "yes"}),
        ),
        (
            "/v1/sessions",
            None,
            json!({"username": "alice", "password": PASSWORD, "device_name": "x", "remember": true}),
        ),
        ("/v1/numbers", Some(t), json!({"number": 14155550100u64})),
        (
            "/v1/numbers",
            Some(t),
            json!({"number": "+14155550100", "area_code": "415"}),
        ),
        ("/v1/numbers", Some(t), json!({})),
        (
            "/v1/identities",
            Some(t),
            json!({"kind": "fax", "value": "+14155550100"}),
        ),
        (
            "/v1/identities",
            Some(t),
            json!({"kind": "PHONE", "value": "+14155550100"}),
        ),
        ("/v1/identities", Some(t), json!({"kind": "phone"})),
        (
            "/v1/identities",
            Some(t),
            json!({"kind": "phone", "value": "+14155550100", "code": "1"}),
        ),
        (&verify, Some(t), json!({"code": 123456})),
        (&verify, Some(t), json!({"code": "123456", "id": "x"})),
        (&verify, Some(t), json!({})),
        (
            "/v1/messages",
            Some(t),
            json!({"to": "@alice", "body": "hi", "client_id": "not-a-uuid"}),
        ),
        (
            "/v1/messages",
            Some(t),
            json!({"to": "@alice", "body": "hi", "client_id": uuid::Uuid::new_v4(), "priority": 1}),
        ),
        (
            "/v1/messages",
            Some(t),
            json!({"to": 5, "body": "hi", "client_id": uuid::Uuid::new_v4()}),
        ),
        (
            "/v1/messages",
            Some(t),
            json!({"to": "@alice", "client_id": uuid::Uuid::new_v4()}),
        ),
    ];
    for (path, token, body) in cases {
        let auth = token.map_or(Auth::None, Auth::Token);
        let value = refused(
            gw,
            Method::POST,
            path,
            auth,
            json_body(body.clone()),
            400,
            "bad_request",
        )
        .await;
        let _ = value;
    }
    // Nothing was created by any of it.
    let (status, body) = gw
        .post(
            "/v1/sessions",
            None,
            json!({"username": "carol", "password": PASSWORD, "device_name": "x"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("bad_credentials"))
    );
}

#[tokio::test]
async fn invalid_account_values() {
    let w = world().await;
    let gw = &w.gw;
    let sign_up = |username: &str, password: &str, email: Option<&str>| json!({"username": username, "password": password, "email": email});
    let long_password = "p".repeat(1025);
    let cases = vec![
        (sign_up("ab", PASSWORD, None), "invalid_field"),
        (sign_up(&"a".repeat(33), PASSWORD, None), "invalid_field"),
        (sign_up("bad name", PASSWORD, None), "invalid_field"),
        (sign_up("_leading", PASSWORD, None), "invalid_field"),
        (sign_up("émile", PASSWORD, None), "invalid_field"),
        (sign_up("nul\u{0}byte", PASSWORD, None), "invalid_field"),
        (sign_up("rtl\u{202e}name", PASSWORD, None), "invalid_field"),
        (sign_up("@", PASSWORD, None), "invalid_field"),
        (sign_up("", PASSWORD, None), "invalid_field"),
        (sign_up("carol", "short", None), "invalid_field"),
        (sign_up("carol", "", None), "invalid_field"),
        (sign_up("carol", &long_password, None), "invalid_field"),
        (
            sign_up("carol", PASSWORD, Some("not-an-email")),
            "invalid_address",
        ),
        (sign_up("carol", PASSWORD, Some("a@b")), "invalid_address"),
        (
            sign_up("carol", PASSWORD, Some("a b@example.org")),
            "invalid_address",
        ),
        (
            sign_up("carol", PASSWORD, Some("@example.org")),
            "invalid_address",
        ),
    ];
    for (body, code) in cases {
        refused(
            gw,
            Method::POST,
            "/v1/accounts",
            Auth::None,
            json_body(body),
            400,
            code,
        )
        .await;
    }
    // A username that is taken, spelt differently.
    refused(
        gw,
        Method::POST,
        "/v1/accounts",
        Auth::None,
        json_body(sign_up("@ALICE", PASSWORD, None)),
        409,
        "username_taken",
    )
    .await;

    // Sign-in: unknown users, impossible usernames and wrong passwords are all the same 401.
    let sign_in = |username: &str, password: &str| json!({"username": username, "password": password, "device_name": "tablet"});
    for body in [
        sign_in("nobody", PASSWORD),
        sign_in("alice", "wrong password"),
        sign_in("ALICE", "wrong password"),
        sign_in("a", PASSWORD),
        sign_in("", ""),
        sign_in("alice", &long_password),
        sign_in("alice'; DROP TABLE accounts; --", PASSWORD),
    ] {
        refused(
            gw,
            Method::POST,
            "/v1/sessions",
            Auth::None,
            json_body(body),
            401,
            "bad_credentials",
        )
        .await;
    }
    for name in ["", "   ", &"n".repeat(65), "tab\tname"] {
        let body = json!({"username": "alice", "password": PASSWORD, "device_name": name});
        refused(
            gw,
            Method::POST,
            "/v1/sessions",
            Auth::None,
            json_body(body),
            400,
            "invalid_field",
        )
        .await;
    }
    // And the account still signs in.
    gw.sign_in("alice", "still works").await;
}

#[tokio::test]
async fn missing_wrong_revoked_and_garbage_tokens() {
    let w = world().await;
    let gw = &w.gw;
    let id = &w.bob_identity;
    let authenticated: Vec<(Method, String, Body)> = vec![
        (Method::GET, "/v1/me".into(), Body::None),
        (Method::DELETE, "/v1/sessions/current".into(), Body::None),
        (
            Method::DELETE,
            format!("/v1/devices/{}", w.alice.device_id),
            Body::None,
        ),
        (
            Method::GET,
            "/v1/numbers/available?country=US".into(),
            Body::None,
        ),
        (
            Method::POST,
            "/v1/numbers".into(),
            json_body(json!({"number": "+14155550100"})),
        ),
        (
            Method::DELETE,
            "/v1/numbers/%2B14155550100".into(),
            Body::None,
        ),
        (
            Method::POST,
            "/v1/identities".into(),
            json_body(json!({"kind": "phone", "value": "+14155550100"})),
        ),
        (
            Method::POST,
            format!("/v1/identities/{id}/verify"),
            json_body(json!({"code": "123456"})),
        ),
        (
            Method::POST,
            "/v1/messages".into(),
            json_body(json!({"to": "@alice", "body": "hi", "client_id": uuid::Uuid::new_v4()})),
        ),
        (Method::GET, "/v1/sync?after=0".into(), Body::None),
        (Method::GET, "/v1/conversations".into(), Body::None),
    ];
    let long_token = format!("Bearer {}", "A".repeat(8 * 1024));
    let garbage: Vec<&[u8]> = vec![
        b"",
        b"Bearer",
        b"Bearer ",
        b"Bearer     ",
        b"bearer not-a-real-token",
        b"Basic YWxpY2U6cGFzc3dvcmQ=",
        b"Token abc",
        b"Bearer \xff\xfe\xfd",
        b"Bearer a b c",
        long_token.as_bytes(),
    ];
    for (method, path, _) in &authenticated {
        refused(
            gw,
            method.clone(),
            path,
            Auth::None,
            Body::None,
            401,
            "unauthorized",
        )
        .await;
        refused(
            gw,
            method.clone(),
            path,
            Auth::Token(&w.revoked),
            Body::None,
            401,
            "unauthorized",
        )
        .await;
        refused(
            gw,
            method.clone(),
            path,
            Auth::Token("made-up-token-0123456789abcdefghijklmnopq"),
            Body::None,
            401,
            "unauthorized",
        )
        .await;
        for header in &garbage {
            refused(
                gw,
                method.clone(),
                path,
                Auth::Header(header),
                Body::None,
                401,
                "unauthorized",
            )
            .await;
        }
    }
    // Authentication comes before the body is judged: a bad token with a valid body is 401.
    for (method, path, body) in authenticated {
        refused(
            gw,
            method,
            &path,
            Auth::Token(&w.revoked),
            body,
            401,
            "unauthorized",
        )
        .await;
    }
    // Nothing above signed anyone out.
    let (status, _) = gw.get("/v1/me", &w.alice.token).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn another_accounts_ids_are_not_found() {
    let w = world().await;
    let gw = &w.gw;
    let alice = w.alice.token.as_str();
    // Bob's identity and device, as seen by Alice.
    let verify = format!("/v1/identities/{}/verify", w.bob_identity);
    refused(
        gw,
        Method::POST,
        &verify,
        Auth::Token(alice),
        json_body(json!({"code": "123456"})),
        404,
        "not_found",
    )
    .await;
    refused(
        gw,
        Method::DELETE,
        &format!("/v1/devices/{}", w.bob.device_id),
        Auth::Token(alice),
        Body::None,
        404,
        "not_found",
    )
    .await;
    // Ids that exist nowhere look the same.
    let nowhere = uuid::Uuid::now_v7();
    refused(
        gw,
        Method::POST,
        &format!("/v1/identities/{nowhere}/verify"),
        Auth::Token(alice),
        json_body(json!({"code": "123456"})),
        404,
        "not_found",
    )
    .await;
    refused(
        gw,
        Method::DELETE,
        &format!("/v1/devices/{nowhere}"),
        Auth::Token(alice),
        Body::None,
        404,
        "not_found",
    )
    .await;
    // Bob's number cannot be released by Alice.
    let number = gw.claim_number(&w.bob, "312").await;
    refused(
        gw,
        Method::DELETE,
        &format!("/v1/numbers/{}", urlencode(&number)),
        Auth::Token(alice),
        Body::None,
        404,
        "not_found",
    )
    .await;
    let (_, me) = gw.get("/v1/me", &w.bob.token).await;
    assert_eq!(me["number"], number.as_str());
    assert_eq!(me["devices"].as_array().unwrap().len(), 1);
    // Malformed ids are a 400, not a 404 or a 500.
    for bad in [
        "not-a-uuid",
        "1",
        "%00",
        "00000000-0000-0000-0000-00000000000g",
    ] {
        refused(
            gw,
            Method::POST,
            &format!("/v1/identities/{bad}/verify"),
            Auth::Token(alice),
            json_body(json!({"code": "123456"})),
            400,
            "bad_request",
        )
        .await;
        refused(
            gw,
            Method::DELETE,
            &format!("/v1/devices/{bad}"),
            Auth::Token(alice),
            Body::None,
            400,
            "bad_request",
        )
        .await;
    }
}

#[tokio::test]
async fn invalid_numbers_and_bad_query_parameters() {
    let w = world().await;
    let gw = &w.gw;
    let t = w.alice.token.as_str();
    let search = |query: &str| format!("/v1/numbers/available?{query}");
    let cases = [
        ("limit=abc", 400, "bad_request"),
        ("limit=-1", 400, "bad_request"),
        ("limit=1.5", 400, "bad_request"),
        ("limit=99999999999999999999", 400, "bad_request"),
        ("limit=0", 400, "invalid_field"),
        ("limit=101", 400, "invalid_field"),
        ("country=XX", 400, "unknown_country"),
        ("country=usa", 400, "unknown_country"),
        ("country=%00", 400, "unknown_country"),
        ("country=U", 400, "unknown_country"),
        ("area_code=41a", 400, "invalid_field"),
        ("area_code=-415", 400, "invalid_field"),
        ("area_code=415415415415", 400, "invalid_field"),
        ("area_code=%2B1415", 400, "invalid_field"),
        ("colour=blue", 400, "bad_request"),
        ("limit=5&limit=6", 400, "bad_request"),
    ];
    for (query, status, code) in cases {
        refused(
            gw,
            Method::GET,
            &search(query),
            Auth::Token(t),
            Body::None,
            status,
            code,
        )
        .await;
    }
    // Valid searches with nothing to show are an empty list, not an error.
    let (status, body) = gw.get(&search("country=FR"), t).await;
    assert_eq!((status, body["numbers"].clone()), (200, json!([])));

    for number in [
        "hello",
        "",
        "   ",
        "@alice",
        "alice@example.org",
        "+1415555010",
        "+14abc",
        "12345",
        "+999999999999",
        &"9".repeat(40),
        "+1 (415) 555-01\u{0}0",
    ] {
        refused(
            gw,
            Method::POST,
            "/v1/numbers",
            Auth::Token(t),
            json_body(json!({"number": number})),
            400,
            "invalid_address",
        )
        .await;
    }
    // A valid number no carrier offers.
    refused(
        gw,
        Method::POST,
        "/v1/numbers",
        Auth::Token(t),
        json_body(json!({"number": "+14155550199"})),
        404,
        "not_found",
    )
    .await;
    for path in ["hello", "%40alice", "12345", "%2B1415555010", "+"] {
        refused(
            gw,
            Method::DELETE,
            &format!("/v1/numbers/{path}"),
            Auth::Token(t),
            Body::None,
            400,
            "invalid_address",
        )
        .await;
    }
    // Not Alice's number (she has none).
    refused(
        gw,
        Method::DELETE,
        "/v1/numbers/%2B14155550100",
        Auth::Token(t),
        Body::None,
        404,
        "not_found",
    )
    .await;

    // Identities: values that are not what the kind says.
    for (kind, value) in [
        ("phone", "hello"),
        ("phone", "alice@example.org"),
        ("phone", "@alice"),
        ("phone", "12345"),
        ("phone", ""),
        ("email", "nope"),
        ("email", "+14155550100"),
        ("email", "a@b"),
        ("email", ""),
    ] {
        refused(
            gw,
            Method::POST,
            "/v1/identities",
            Auth::Token(t),
            json_body(json!({"kind": kind, "value": value})),
            400,
            "invalid_address",
        )
        .await;
    }
    // A destination the carrier refuses for good is the caller's problem, not a 500.
    refused(
        gw,
        Method::POST,
        "/v1/identities",
        Auth::Token(t),
        json_body(json!({"kind": "phone", "value": "+15005550001"})),
        400,
        "invalid_address",
    )
    .await;

    // Codes that are not six digits are refused without using up a try.
    let (status, body) = gw
        .post(
            "/v1/identities",
            Some(t),
            json!({"kind": "phone", "value": "+12125550141"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["identity_id"].as_str().unwrap().to_owned();
    let verify = format!("/v1/identities/{id}/verify");
    for code in [
        "",
        "12345",
        "1234567",
        "abcdef",
        "12345x",
        "１２３４５６",
        "12-34-5",
    ] {
        refused(
            gw,
            Method::POST,
            &verify,
            Auth::Token(t),
            json_body(json!({"code": code})),
            400,
            "invalid_field",
        )
        .await;
    }
    let value = refused(
        gw,
        Method::POST,
        &verify,
        Auth::Token(t),
        json_body(json!({"code": "000000"})),
        400,
        "wrong_code",
    )
    .await;
    assert!(
        value["message"].as_str().unwrap().contains("4 tries left"),
        "{value}"
    );
}

#[tokio::test]
async fn code_brute_force_stops_after_five_tries() {
    let w = world().await;
    let gw = &w.gw;
    let t = w.bob.token.as_str();
    let verify = format!("/v1/identities/{}/verify", w.bob_identity);
    // Walk the code space from the start, as a brute-forcer would.
    let mut outcomes = Vec::new();
    for n in 0..20u32 {
        let (status, value) = send(
            gw,
            Method::POST,
            &verify,
            Auth::Token(t),
            json_body(json!({"code": format!("{n:06}")})),
        )
        .await;
        outcomes.push((status, value["code"].as_str().unwrap_or("").to_owned()));
        if status == 200 {
            // One in 50,000: the code was among the first guesses. Nothing to show then.
            return;
        }
    }
    let wrong = outcomes.iter().filter(|(_, c)| c == "wrong_code").count();
    assert_eq!(wrong, 4, "{outcomes:?}");
    assert!(
        outcomes[4..]
            .iter()
            .all(|(s, c)| *s == 429 && c == "too_many_attempts"),
        "{outcomes:?}"
    );
    // The real code is dead too.
    let outbox = gw.outbox(&w.bob, "+12125550140").await;
    let body = outbox.last().unwrap()["body"].as_str().unwrap().to_owned();
    let code: String = body.chars().filter(char::is_ascii_digit).take(6).collect();
    refused(
        gw,
        Method::POST,
        &verify,
        Auth::Token(t),
        json_body(json!({"code": code})),
        429,
        "too_many_attempts",
    )
    .await;
    let (_, me) = gw.get("/v1/me", t).await;
    assert_eq!(me["identities"][0]["status"], "pending");
}

#[tokio::test]
async fn messaging_endpoints_refuse_bad_input_too() {
    let w = world().await;
    let gw = &w.gw;
    let t = w.alice.token.as_str();
    refused(
        gw,
        Method::POST,
        "/v1/messages",
        Auth::None,
        json_body(json!({"to": "@bob", "body": "hi", "client_id": uuid::Uuid::new_v4()})),
        401,
        "unauthorized",
    )
    .await;
    refused(
        gw,
        Method::POST,
        "/v1/messages",
        Auth::Token(t),
        json_body(json!({"to": "@nobody", "body": "hi", "client_id": uuid::Uuid::new_v4()})),
        404,
        "unknown_recipient",
    )
    .await;
    refused(
        gw,
        Method::POST,
        "/v1/messages",
        Auth::Token(t),
        json_body(json!({"to": "not a number", "body": "hi", "client_id": uuid::Uuid::new_v4()})),
        400,
        "invalid_address",
    )
    .await;
    refused(
        gw,
        Method::POST,
        "/v1/messages",
        Auth::Token(t),
        json_body(json!({"to": "@bob", "body": "", "client_id": uuid::Uuid::new_v4()})),
        400,
        "invalid_body",
    )
    .await;
    refused(
        gw,
        Method::POST,
        "/v1/messages",
        Auth::Token(t),
        json_body(
            json!({"to": "@bob", "body": "x".repeat(1601), "client_id": uuid::Uuid::new_v4()}),
        ),
        400,
        "invalid_body",
    )
    .await;
    for query in ["after=abc", "after=-1", "limit=abc", "limit=0", "after=1e3"] {
        let (status, value) = send(
            gw,
            Method::GET,
            &format!("/v1/sync?{query}"),
            Auth::Token(t),
            Body::None,
        )
        .await;
        assert_eq!(status, 400, "/v1/sync?{query}: {value}");
    }
    refused(
        gw,
        Method::GET,
        "/v1/sync?after=abc",
        Auth::Token(t),
        Body::None,
        400,
        "bad_request",
    )
    .await;
    refused(
        gw,
        Method::DELETE,
        "/v1/messages/not-a-uuid",
        Auth::Token(t),
        Body::None,
        400,
        "bad_request",
    )
    .await;
    refused(
        gw,
        Method::DELETE,
        &format!("/v1/messages/{}", uuid::Uuid::now_v7()),
        Auth::Token(t),
        Body::None,
        404,
        "not_found",
    )
    .await;
    refused(
        gw,
        Method::GET,
        "/v1/conversations?limit=abc",
        Auth::Token(t),
        Body::None,
        400,
        "bad_request",
    )
    .await;
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_answer_json() {
    let w = world().await;
    let gw = &w.gw;
    let t = w.alice.token.as_str();
    refused(
        gw,
        Method::GET,
        "/v1/nothing-here",
        Auth::Token(t),
        Body::None,
        404,
        "not_found",
    )
    .await;
    // `GET /` is the web portal (tests/portal.rs); anything else there is the API's 404.
    refused(
        gw,
        Method::POST,
        "/",
        Auth::None,
        Body::None,
        404,
        "not_found",
    )
    .await;
    refused(
        gw,
        Method::GET,
        "/v1",
        Auth::None,
        Body::None,
        404,
        "not_found",
    )
    .await;
    refused(
        gw,
        Method::GET,
        "/v1/accounts",
        Auth::None,
        Body::None,
        405,
        "method_not_allowed",
    )
    .await;
    refused(
        gw,
        Method::PUT,
        "/v1/sessions",
        Auth::None,
        Body::None,
        405,
        "method_not_allowed",
    )
    .await;
    refused(
        gw,
        Method::POST,
        "/healthz",
        Auth::None,
        Body::None,
        405,
        "method_not_allowed",
    )
    .await;
    refused(
        gw,
        Method::POST,
        "/v1/me",
        Auth::Token(t),
        Body::None,
        405,
        "method_not_allowed",
    )
    .await;
    refused(
        gw,
        Method::PATCH,
        "/v1/numbers",
        Auth::Token(t),
        Body::None,
        405,
        "method_not_allowed",
    )
    .await;
}

// ----- a NUL in every string of every route, on both engines -----

/// The codes a string with a character it may not hold is refused with (by its field).
const REFUSALS: [&str; 4] = [
    "invalid_field",
    "invalid_address",
    "invalid_body",
    "unknown_country",
];

/// Resolves `$ref` against the document's components.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap();
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// A value that fits `schema`, and the paths of its plain string fields (no format, no
/// enum): those a NUL must be refused in by name.
fn example(doc: &Value, schema: &Value, path: &str, strings: &mut Vec<String>) -> Value {
    let schema = resolve(doc, schema);
    for alternatives in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = schema[alternatives].as_array() {
            let option = options
                .iter()
                .find(|o| o["type"] != "null")
                .unwrap_or(&options[0]);
            return example(doc, option, path, strings);
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        return values[0].clone();
    }
    let kind = match &schema["type"] {
        Value::Array(kinds) => kinds
            .iter()
            .find(|k| *k != "null")
            .cloned()
            .unwrap_or(Value::Null),
        kind => kind.clone(),
    };
    match kind.as_str().unwrap_or("object") {
        "string" => match schema["format"].as_str() {
            Some("uuid") => json!(uuid::Uuid::now_v7()),
            Some("date-time") => json!("2026-01-01T00:00:00Z"),
            _ => {
                strings.push(path.to_owned());
                json!("x")
            }
        },
        "integer" | "number" => json!(1),
        "boolean" => json!(false),
        "array" => json!([example(
            doc,
            &schema["items"],
            &format!("{path}[0]"),
            strings
        )]),
        _ => {
            let mut object = serde_json::Map::new();
            if let Some(properties) = schema["properties"].as_object() {
                for (key, property) in properties {
                    let path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    object.insert(key.clone(), example(doc, property, &path, strings));
                }
            }
            Value::Object(object)
        }
    }
}

/// `value` with the string at `path` (as [`example`] names it) replaced by `with`.
fn replace(value: &mut Value, path: &str, with: &str) {
    let mut at = value;
    for part in path.split('.') {
        let (key, index) = match part.split_once('[') {
            Some((key, rest)) => (key, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        at = &mut at[key];
        if let Some(index) = index {
            at = &mut at[index];
        }
    }
    *at = json!(with);
}

/// Every route of the OpenAPI document (carrier webhooks aside: carriers post forms, and
/// their strings are cleaned where reports are ingested) gets a NUL in each of its strings:
/// every JSON body field, every path and query parameter. None may answer 5xx, and each plain
/// string is refused with a 400 naming it.
async fn a_nul_in_any_string_is_refused(gw: &TestGateway) {
    let alice = gw.sign_up("alice").await;
    let (status, doc) = gw.get("/v1/openapi.json", &alice.token).await;
    assert_eq!(status, 200);
    let mut tried = 0;
    for (path, operations) in doc["paths"].as_object().unwrap() {
        if path.starts_with("/v1/carriers/") {
            continue;
        }
        for (method, operation) in operations.as_object().unwrap() {
            let Ok(method) = Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            // Parameters: valid values first, then a NUL in each string one in turn.
            let parameters: Vec<(String, String, Value)> = operation["parameters"]
                .as_array()
                .map(|all| {
                    all.iter()
                        .map(|p| {
                            (
                                p["name"].as_str().unwrap().to_owned(),
                                p["in"].as_str().unwrap().to_owned(),
                                resolve(&doc, &p["schema"]).clone(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let fill = |nul_in: Option<&str>| {
                let mut url = path.clone();
                let mut query = Vec::new();
                for (name, place, schema) in &parameters {
                    let value = if nul_in == Some(name.as_str()) {
                        "a%00b".to_owned()
                    } else {
                        let mut ignored = Vec::new();
                        match example(&doc, schema, name, &mut ignored) {
                            Value::String(s) => urlencode(&s),
                            other => other.to_string(),
                        }
                    };
                    if place == "path" {
                        url = url.replace(&format!("{{{name}}}"), &value);
                    } else if place == "query" {
                        query.push(format!("{name}={value}"));
                    }
                }
                if query.is_empty() {
                    url
                } else {
                    format!("{url}?{}", query.join("&"))
                }
            };
            let mut body_strings = Vec::new();
            let body = operation["requestBody"]["content"]["application/json"]["schema"]
                .as_object()
                .map(|schema| example(&doc, &Value::Object(schema.clone()), "", &mut body_strings));
            for (name, _, schema) in &parameters {
                let url = fill(Some(name));
                let request = body.clone().map_or(Body::None, Body::Json);
                let (status, value) =
                    send(gw, method.clone(), &url, Auth::Token(&alice.token), request).await;
                tried += 1;
                let plain = schema["type"] == "string"
                    && schema["format"].is_null()
                    && schema["enum"].is_null();
                if plain && path != "/v1/stream" {
                    assert_eq!(status, 400, "{method} {url}: {value}");
                    assert!(
                        REFUSALS.contains(&value["code"].as_str().unwrap_or("")),
                        "{method} {url}: {value}"
                    );
                    let message = value["message"].as_str().unwrap();
                    assert!(message.starts_with(&format!("{name}:")), "{message}");
                }
            }
            if let Some(body) = &body {
                let url = fill(None);
                for field in &body_strings {
                    let mut with_nul = body.clone();
                    replace(&mut with_nul, field, "a\u{0}b");
                    let (status, value) = send(
                        gw,
                        method.clone(),
                        &url,
                        Auth::Token(&alice.token),
                        Body::Json(with_nul.clone()),
                    )
                    .await;
                    tried += 1;
                    assert_eq!(status, 400, "{method} {url} with {with_nul}: {value}");
                    assert!(
                        REFUSALS.contains(&value["code"].as_str().unwrap_or("")),
                        "{method} {url} with {with_nul}: {value}"
                    );
                    let message = value["message"].as_str().unwrap();
                    assert!(message.starts_with(&format!("{field}:")), "{message}");
                }
            }
        }
    }
    assert!(
        tried > 20,
        "only {tried} strings tried: the document has lost routes"
    );
    // Sign-in and sign-up before any account exists (the reported 500s), named.
    for (path, field, body, code) in [
        (
            "/v1/sessions",
            "username",
            json!({"username": "al\u{0}ice", "password": PASSWORD, "device_name": "d"}),
            "invalid_field",
        ),
        (
            "/v1/accounts",
            "username",
            json!({"username": "x\u{0}", "password": PASSWORD}),
            "invalid_field",
        ),
        (
            "/v1/accounts",
            "email",
            json!({"username": "carol", "password": PASSWORD, "email": "c\u{0}@example.org"}),
            "invalid_address",
        ),
    ] {
        let value = refused(
            gw,
            Method::POST,
            path,
            Auth::None,
            Body::Json(body),
            400,
            code,
        )
        .await;
        assert!(
            value["message"].as_str().unwrap().starts_with(field),
            "{value}"
        );
    }
    // A message body may hold line breaks and tabs, an identifier may not.
    let bob = gw.sign_up("bob").await;
    let sent = gw.send(&alice, "@bob", "two\nlines\tand a tab").await;
    assert_eq!(sent["body"], "two\nlines\tand a tab");
    let value = refused(
        gw,
        Method::POST,
        "/v1/sessions",
        Auth::None,
        Body::Json(json!({"username": "bob", "password": PASSWORD, "device_name": "a\nb"})),
        400,
        "invalid_field",
    )
    .await;
    assert!(
        value["message"].as_str().unwrap().contains("U+000A"),
        "{value}"
    );
    let _ = bob;
}

#[tokio::test]
async fn a_nul_in_any_string_is_refused_on_sqlite() {
    let gw = gateway().await;
    a_nul_in_any_string_is_refused(&gw).await;
    gw.stop().await;
}

#[tokio::test]
async fn a_nul_in_any_string_is_refused_on_postgres() {
    let Some(pg) = common::postgres_schema("bad_input::a_nul_in_any_string_is_refused").await
    else {
        return;
    };
    let url = pg.url.clone();
    let gw = TestGateway::start_with(move |config: &mut Config| {
        generous(config);
        config.database_url = url;
    })
    .await;
    a_nul_in_any_string_is_refused(&gw).await;
    gw.stop().await;
    pg.drop_schema().await;
}
