//! The account half of API v1, driven over real HTTP against a gateway on port 0: sign-up,
//! sign-in, `/v1/me`, device revocation, numbers (search, claim, release, quarantine),
//! identities (phone and e-mail codes, expiry, tries) and rate limits.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::IpAddr;
use std::time::Instant;

use airtext_gateway::config::{Config, Rate};
use common::{urlencode, Device, TestGateway};
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";

/// A request with full control, returning status, `Retry-After` and the JSON body.
async fn raw(
    gw: &TestGateway,
    client: &reqwest::Client,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Option<u64>, Value) {
    let mut request = client.request(method, format!("{}{}", gw.url, path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let text = response.text().await.unwrap_or_default();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, retry_after, value)
}

/// A client whose connections come from `ip` (any 127.x.y.z is this host on Linux).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().ok())
        .build()
        .unwrap()
}

async fn delete(gw: &TestGateway, path: &str, token: &str) -> (u16, Value) {
    gw.call(Method::DELETE, path, Some(token), None).await
}

async fn sign_in_as(gw: &TestGateway, username: &str, password: &str) -> (u16, Value) {
    gw.post(
        "/v1/sessions",
        None,
        json!({"username": username, "password": password, "device_name": "laptop"}),
    )
    .await
}

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

fn generous_limits(config: &mut Config) {
    let lots = Rate {
        per_minute: 100_000,
        burst: 100_000,
    };
    config.rate_limits.sign_in = lots;
    config.rate_limits.sign_up = lots;
    config.rate_limits.verification_codes = lots;
    config.rate_limits.verification_checks = lots;
}

#[tokio::test]
async fn sign_up_sign_in_me_and_revoke() {
    let gw = TestGateway::start().await;

    let (status, body) = gw
        .post(
            "/v1/accounts",
            None,
            json!({"username": "Alice", "password": PASSWORD, "email": " Alice@Example.ORG "}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["username"], "alice");
    let account_id = body["account_id"].as_str().unwrap().to_owned();

    // Usernames and e-mail addresses are unique, whatever their case.
    let (status, body) = gw
        .post(
            "/v1/accounts",
            None,
            json!({"username": "ALICE", "password": PASSWORD}),
        )
        .await;
    assert_error(status, &body, 409, "username_taken");
    let (status, body) = gw
        .post(
            "/v1/accounts",
            None,
            json!({"username": "alice2", "password": PASSWORD, "email": "alice@example.org"}),
        )
        .await;
    assert_error(status, &body, 409, "email_taken");

    // Two devices; the reply carries the token, the device and the account.
    let laptop = gw.sign_in("Alice", "laptop").await;
    let (status, body) = gw
        .post(
            "/v1/sessions",
            None,
            json!({"username": "alice", "password": PASSWORD, "device_name": "phone", "has_cellular": true}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let phone = Device {
        token: body["token"].as_str().unwrap().to_owned(),
        device_id: body["device_id"].as_str().unwrap().to_owned(),
        account_id: body["account_id"].as_str().unwrap().to_owned(),
    };
    assert_eq!(laptop.account_id, account_id);
    assert_eq!(phone.account_id, account_id);
    assert_eq!(phone.token.len(), 43, "256 bits, base64url without padding");
    assert_ne!(phone.token, laptop.token);

    let (status, me) = gw.get("/v1/me", &laptop.token).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["account_id"], account_id.as_str());
    assert_eq!(me["username"], "alice");
    assert_eq!(me["email"], "alice@example.org");
    assert_eq!(me["number"], Value::Null);
    assert_eq!(me["identities"], json!([]));
    let devices = me["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    let current: Vec<&Value> = devices.iter().filter(|d| d["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], laptop.device_id.as_str());
    assert_eq!(current[0]["name"], "laptop");
    let other = devices.iter().find(|d| d["current"] == false).unwrap();
    assert_eq!(other["has_cellular"], true);
    let (_, me) = gw.get("/v1/me", &phone.token).await;
    let current = me["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["current"] == true)
        .unwrap()
        .clone();
    assert_eq!(current["id"], phone.device_id.as_str());

    // Wrong password and unknown user: the same reply.
    let (status, wrong) = sign_in_as(&gw, "alice", "not the password").await;
    assert_error(status, &wrong, 401, "bad_credentials");
    let (status, unknown) = sign_in_as(&gw, "nobody_here", "not the password").await;
    assert_error(status, &unknown, 401, "bad_credentials");
    assert_eq!(wrong, unknown);

    // Another account cannot revoke Alice's devices: to it they do not exist.
    let bob = gw.sign_up("bob").await;
    let (status, body) = delete(&gw, &format!("/v1/devices/{}", phone.device_id), &bob.token).await;
    assert_error(status, &body, 404, "not_found");
    let (status, _) = gw.get("/v1/me", &phone.token).await;
    assert_eq!(status, 200);

    // The laptop signs the phone out: the phone's very next request fails.
    let (status, body) = delete(
        &gw,
        &format!("/v1/devices/{}", phone.device_id),
        &laptop.token,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = gw.get("/v1/me", &phone.token).await;
    assert_error(status, &body, 401, "unauthorized");
    // From another connection and address too: nothing about a token is cached per client.
    let elsewhere = client_from("127.0.0.7");
    let (status, _, body) = raw(
        &gw,
        &elsewhere,
        Method::GET,
        "/v1/me",
        Some(&phone.token),
        None,
    )
    .await;
    assert_error(status, &body, 401, "unauthorized");
    let (status, body) = delete(
        &gw,
        &format!("/v1/devices/{}", phone.device_id),
        &laptop.token,
    )
    .await;
    assert_error(status, &body, 404, "not_found");
    let (_, me) = gw.get("/v1/me", &laptop.token).await;
    assert_eq!(me["devices"].as_array().unwrap().len(), 1);

    // Signing out kills the token at once, and only that token.
    let desktop = gw.sign_in("alice", "desktop").await;
    let (status, _) = delete(&gw, "/v1/sessions/current", &laptop.token).await;
    assert_eq!(status, 204);
    let (status, body) = gw.get("/v1/me", &laptop.token).await;
    assert_error(status, &body, 401, "unauthorized");
    let (status, body) = delete(&gw, "/v1/sessions/current", &laptop.token).await;
    assert_error(status, &body, 401, "unauthorized");
    let (status, _) = gw.get("/v1/me", &desktop.token).await;
    assert_eq!(status, 200);
    // A revoked token is dead for every endpoint, not just /v1/me.
    let (status, body) = gw
        .get(
            "/v1/numbers/available?country=US&area_code=415",
            &phone.token,
        )
        .await;
    assert_error(status, &body, 401, "unauthorized");

    gw.stop().await;
}

#[tokio::test]
async fn unknown_users_cost_the_same_time_as_wrong_passwords() {
    let gw = TestGateway::start_with(generous_limits).await;
    gw.sign_up("timing").await;
    // Warm up (the dummy hash is made on first use).
    sign_in_as(&gw, "nobody_at_all", "wrong password").await;
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..5 {
        let started = Instant::now();
        let (status, _) = sign_in_as(&gw, "timing", "wrong password").await;
        assert_eq!(status, 401);
        known.push(started.elapsed());
        let started = Instant::now();
        let (status, _) = sign_in_as(&gw, &format!("ghost{i}"), "wrong password").await;
        assert_eq!(status, 401);
        unknown.push(started.elapsed());
    }
    known.sort();
    unknown.sort();
    let (k, u) = (known[2].as_secs_f64(), unknown[2].as_secs_f64());
    // Both pay for one argon2 verification; without the dummy hash the unknown user would
    // answer orders of magnitude (~1000x) faster. The bound is wide so that a loaded machine
    // running other tests at once cannot make it flaky.
    assert!(
        u > k / 20.0 && u < k * 20.0,
        "median wrong-password {k:.4}s vs unknown-user {u:.4}s"
    );
    gw.stop().await;
}

#[tokio::test]
async fn numbers_search_claim_release_and_quarantine() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    let bob = gw.sign_up("bob").await;

    let (status, body) = gw
        .get(
            "/v1/numbers/available?country=US&area_code=415",
            &alice.token,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let numbers: Vec<String> = serde_json::from_value(body["numbers"].clone()).unwrap();
    assert_eq!(numbers.len(), 20, "the default limit");
    assert!(
        numbers.iter().all(|n| n.starts_with("+1415")),
        "{numbers:?}"
    );
    let mut sorted = numbers.clone();
    sorted.sort();
    assert_eq!(numbers, sorted, "in number order");

    let (_, body) = gw
        .get(
            "/v1/numbers/available?country=us&area_code=212&limit=5",
            &alice.token,
        )
        .await;
    assert_eq!(body["numbers"].as_array().unwrap().len(), 5);
    assert!(body["numbers"][0].as_str().unwrap().starts_with("+1212"));
    let (_, body) = gw
        .get("/v1/numbers/available?country=GB&limit=100", &alice.token)
        .await;
    let gb = body["numbers"].as_array().unwrap();
    assert_eq!(gb.len(), 50, "{body}");
    assert!(gb.iter().all(|n| n.as_str().unwrap().starts_with("+44")));
    let (_, body) = gw
        .get("/v1/numbers/available?area_code=999", &alice.token)
        .await;
    assert_eq!(body["numbers"], json!([]), "a valid search with no results");

    // Claim, in national format: stored and returned in E.164.
    let first = numbers[0].clone();
    let national = format!("({}) {}-{}", &first[2..5], &first[5..8], &first[8..12]);
    let (status, body) = gw
        .post(
            "/v1/numbers",
            Some(&alice.token),
            json!({"number": national}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["number"], first.as_str());
    let (_, me) = gw.get("/v1/me", &alice.token).await;
    assert_eq!(me["number"], first.as_str());

    let (_, body) = gw
        .get(
            "/v1/numbers/available?country=US&area_code=415&limit=100",
            &bob.token,
        )
        .await;
    let left = body["numbers"].as_array().unwrap();
    assert_eq!(left.len(), 49);
    assert!(!left.contains(&json!(first)));

    let (status, body) = gw
        .post("/v1/numbers", Some(&bob.token), json!({"number": first}))
        .await;
    assert_error(status, &body, 409, "number_taken");
    let (status, body) = gw
        .post(
            "/v1/numbers",
            Some(&alice.token),
            json!({"number": numbers[1]}),
        )
        .await;
    assert_error(status, &body, 409, "already_has_number");
    let (status, body) = gw
        .post(
            "/v1/numbers",
            Some(&bob.token),
            json!({"number": "+14155550199"}),
        )
        .await;
    assert_error(status, &body, 404, "not_found");

    // Only the owner can release it; the `+` may come URL-encoded.
    let path = format!("/v1/numbers/{}", urlencode(&first));
    let (status, body) = delete(&gw, &path, &bob.token).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = delete(&gw, &path, &alice.token).await;
    assert_eq!(status, 204, "{body}");
    let (_, me) = gw.get("/v1/me", &alice.token).await;
    assert_eq!(me["number"], Value::Null);
    let (status, body) = delete(&gw, &path, &alice.token).await;
    assert_error(status, &body, 404, "not_found");

    // Quarantined (45 days by default): not offered, not claimable, not even by its old owner.
    let (_, body) = gw
        .get(
            "/v1/numbers/available?country=US&area_code=415&limit=100",
            &bob.token,
        )
        .await;
    assert!(!body["numbers"].as_array().unwrap().contains(&json!(first)));
    for who in [&bob, &alice] {
        let (status, body) = gw
            .post("/v1/numbers", Some(&who.token), json!({"number": first}))
            .await;
        assert_error(status, &body, 409, "number_taken");
    }
    // Alice may take another number now that she has none.
    let (status, body) = gw
        .post(
            "/v1/numbers",
            Some(&alice.token),
            json!({"number": numbers[2]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    gw.stop().await;
}

#[tokio::test]
async fn with_no_quarantine_a_released_number_is_reclaimable_at_once() {
    let gw = TestGateway::start_with(|c| c.number_quarantine_days = 0).await;
    let alice = gw.sign_up("alice").await;
    let bob = gw.sign_up("bob").await;
    let number = gw.claim_number(&alice, "646").await;
    // A literal `+` in the path works too.
    let (status, body) = delete(&gw, &format!("/v1/numbers/{number}"), &alice.token).await;
    assert_eq!(status, 204, "{body}");
    let (_, body) = gw
        .get(
            "/v1/numbers/available?country=US&area_code=646&limit=1",
            &bob.token,
        )
        .await;
    assert_eq!(body["numbers"], json!([number]));
    let (status, body) = gw
        .post("/v1/numbers", Some(&bob.token), json!({"number": number}))
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, me) = gw.get("/v1/me", &bob.token).await;
    assert_eq!(me["number"], number.as_str());
    gw.stop().await;
}

/// The 6-digit code in the newest delivery to `to`.
async fn latest_code(gw: &TestGateway, device: &Device, to: &str) -> String {
    let outbox = gw.outbox(device, to).await;
    let last = outbox
        .last()
        .unwrap_or_else(|| panic!("nothing sent to {to}"));
    let body = last["body"].as_str().unwrap();
    let digits: Vec<&str> = body
        .split(|c: char| !c.is_ascii_digit())
        .filter(|run| run.len() == 6)
        .collect();
    assert_eq!(digits.len(), 1, "one 6-digit code in {body:?}");
    digits[0].to_owned()
}

fn another_code(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

async fn verify(gw: &TestGateway, device: &Device, id: &str, code: &str) -> (u16, Value) {
    gw.post(
        &format!("/v1/identities/{id}/verify"),
        Some(&device.token),
        json!({"code": code}),
    )
    .await
}

#[tokio::test]
async fn a_phone_is_verified_by_a_code_sent_as_a_text() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;

    let (status, body) = gw
        .post(
            "/v1/identities",
            Some(&alice.token),
            json!({"kind": "phone", "value": "(312) 555-0177"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "pending");
    let id = body["identity_id"].as_str().unwrap().to_owned();

    let outbox = gw.outbox(&alice, "+13125550177").await;
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    assert_eq!(outbox[0]["channel"], "sms");
    let text = outbox[0]["body"].as_str().unwrap();
    assert!(
        text.starts_with("Your Airtext code is ") && text.ends_with(". It expires in 10 minutes."),
        "{text}"
    );
    let code = latest_code(&gw, &alice, "+13125550177").await;

    let (_, me) = gw.get("/v1/me", &alice.token).await;
    assert_eq!(me["identities"][0]["value"], "+13125550177");
    assert_eq!(me["identities"][0]["kind"], "phone");
    assert_eq!(me["identities"][0]["status"], "pending");

    // A wrong code says how many tries are left.
    let (status, body) = verify(&gw, &alice, &id, &another_code(&code)).await;
    assert_error(status, &body, 400, "wrong_code");
    assert!(
        body["message"].as_str().unwrap().contains("4 tries left"),
        "{body}"
    );

    // Another account cannot even see the identity.
    let bob = gw.sign_up("bob").await;
    let (status, body) = verify(&gw, &bob, &id, &code).await;
    assert_error(status, &body, 404, "not_found");

    // Spaces as people type them are fine.
    let spaced = format!("{} {}", &code[..3], &code[3..]);
    let (status, body) = verify(&gw, &alice, &id, &spaced).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "verified");
    let (_, me) = gw.get("/v1/me", &alice.token).await;
    assert_eq!(me["identities"][0]["status"], "verified");
    assert!(me["identities"][0]["verified_at"].is_string());

    // Verifying again is harmless; asking for a code again is a conflict.
    let (status, _) = verify(&gw, &alice, &id, &code).await;
    assert_eq!(status, 200);
    let (status, body) = gw
        .post(
            "/v1/identities",
            Some(&alice.token),
            json!({"kind": "phone", "value": "+1 312 555 0177"}),
        )
        .await;
    assert_error(status, &body, 409, "already_verified");
    gw.stop().await;
}

#[tokio::test]
async fn an_email_address_is_verified_by_a_code_sent_by_mail() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    let (status, body) = gw
        .post(
            "/v1/identities",
            Some(&alice.token),
            json!({"kind": "email", "value": "Alice@Example.ORG"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["identity_id"].as_str().unwrap().to_owned();
    let outbox = gw.outbox(&alice, "alice@example.org").await;
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0]["channel"], "email");
    let code = latest_code(&gw, &alice, "alice@example.org").await;

    // A new code replaces the old one.
    let (status, body) = gw
        .post(
            "/v1/identities",
            Some(&alice.token),
            json!({"kind": "email", "value": "alice@example.org"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["identity_id"], id.as_str(), "the same identity");
    let new_code = latest_code(&gw, &alice, "alice@example.org").await;
    if new_code != code {
        let (status, body) = verify(&gw, &alice, &id, &code).await;
        assert_error(status, &body, 400, "wrong_code");
    }
    let (status, body) = verify(&gw, &alice, &id, &new_code).await;
    assert_eq!(status, 200, "{body}");
    let (_, me) = gw.get("/v1/me", &alice.token).await;
    let identities = me["identities"].as_array().unwrap();
    assert_eq!(identities.len(), 1);
    assert_eq!(identities[0]["value"], "alice@example.org");
    assert_eq!(identities[0]["status"], "verified");
    gw.stop().await;
}

/// Asks for a code to `value`; returns status and body.
async fn claim(gw: &TestGateway, device: &Device, kind: &str, value: &str) -> (u16, Value) {
    gw.post(
        "/v1/identities",
        Some(&device.token),
        json!({"kind": kind, "value": value}),
    )
    .await
}

/// Whether `device`'s account received a text whose body is `body`.
async fn received(gw: &TestGateway, device: &Device, body: &str) -> bool {
    let (events, _) = gw.sync_all(device, 0).await;
    common::bodies(&events).iter().any(|b| b == body)
}

/// The attack: account A asks to verify B's verified e-mail, reads the code, and takes B's
/// messages. A verified identity stays with its owner; A gets no code and no messages.
#[tokio::test]
async fn a_verified_identity_cannot_be_claimed_by_another_account() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    let bob = gw.sign_up("bob").await;
    let carol = gw.sign_up("carol").await;

    // Alice claims bob's address before he has verified it: an unverified claim blocks
    // nobody, so both are pending with their own codes.
    let (status, body) = claim(&gw, &alice, "email", "bob@example.org").await;
    assert_eq!(status, 202, "{body}");
    let alices = body["identity_id"].as_str().unwrap().to_owned();
    let (status, body) = claim(&gw, &bob, "email", "bob@example.org").await;
    assert_eq!(status, 202, "an unverified claim blocks nobody: {body}");
    let bobs = body["identity_id"].as_str().unwrap().to_owned();
    let bobs_code = latest_code(&gw, &bob, "bob@example.org").await;
    let (status, body) = verify(&gw, &bob, &bobs, &bobs_code).await;
    assert_eq!(status, 200, "{body}");
    gw.send(&carol, "bob@example.org", "for bob, one").await;
    assert!(received(&gw, &bob, "for bob, one").await);

    // Alice's pending code no longer verifies: bob got there first.
    let alices_code = latest_code(&gw, &alice, "bob@example.org").await;
    let (status, body) = verify(&gw, &alice, &alices, &alices_code).await;
    assert_error(status, &body, 409, "email_taken");
    // Asking for a new code is refused before any code is sent.
    let (status, body) = claim(&gw, &alice, "email", "Bob@Example.org").await;
    assert_error(status, &body, 409, "email_taken");
    assert_eq!(gw.outbox(&alice, "bob@example.org").await.len(), 1);

    // Bob keeps his address and his messages; alice gets none of them.
    let (_, me) = gw.get("/v1/me", &bob.token).await;
    assert_eq!(me["identities"][0]["status"], "verified", "{me}");
    gw.send(&carol, "bob@example.org", "for bob, two").await;
    assert!(received(&gw, &bob, "for bob, two").await);
    assert!(!received(&gw, &alice, "for bob, one").await);
    assert!(!received(&gw, &alice, "for bob, two").await);

    // The same for a phone number.
    common::verify_phone(&gw, &bob, "+13125550188").await;
    let (status, body) = claim(&gw, &alice, "phone", "(312) 555-0188").await;
    assert_error(status, &body, 409, "number_taken");
    gw.stop().await;
}

/// The simulator's outbox shows each account what was sent for it, and nothing else.
#[tokio::test]
async fn the_simulator_outbox_shows_only_the_callers_own_deliveries() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    let bob = gw.sign_up("bob").await;
    gw.claim_number(&alice, "415").await;
    gw.send(&alice, "+12025550143", "alice's text").await;
    let (status, _) = claim(&gw, &alice, "email", "alice@example.org").await;
    assert_eq!(status, 202);
    let (status, _) = claim(&gw, &bob, "phone", "+12025550144").await;
    assert_eq!(status, 202);

    let all = |device: &Device| {
        let token = device.token.clone();
        let gw = &gw;
        async move {
            let (status, body) = gw.get("/v1/simulator/outbox", &token).await;
            assert_eq!(status, 200, "{body}");
            body["messages"].as_array().cloned().unwrap()
        }
    };
    let to = |list: &[Value]| -> Vec<String> {
        list.iter()
            .map(|m| m["to"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        to(&all(&alice).await),
        ["+12025550143", "alice@example.org"]
    );
    assert_eq!(to(&all(&bob).await), ["+12025550144"]);
    assert!(gw.outbox(&bob, "+12025550143").await.is_empty());
    assert!(gw.outbox(&bob, "alice@example.org").await.is_empty());
    assert!(gw.outbox(&alice, "+12025550144").await.is_empty());
    gw.stop().await;
}

/// Moves an identity's code expiry to `at` in the gateway's database, as time passing would:
/// the test does not wait for a code to expire, so no machine is too slow for it.
async fn expire_code_at(gw: &TestGateway, identity: &str, at: chrono::DateTime<chrono::Utc>) {
    use sqlx::Connection;
    let url = gw.state().config.database_url.clone();
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let id = uuid::Uuid::parse_str(identity).unwrap();
    let done = sqlx::query("UPDATE identities SET code_expires_at = ?1 WHERE id = ?2")
        .bind(at.timestamp_micros())
        .bind(id.as_bytes().as_slice())
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn codes_expire() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    let (status, body) = gw
        .post(
            "/v1/identities",
            Some(&alice.token),
            json!({"kind": "phone", "value": "+14155550142"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["identity_id"].as_str().unwrap().to_owned();
    let code = latest_code(&gw, &alice, "+14155550142").await;
    assert!(gw.outbox(&alice, "+14155550142").await[0]["body"]
        .as_str()
        .unwrap()
        .contains("10 minutes"));
    expire_code_at(&gw, &id, chrono::Utc::now() - chrono::Duration::seconds(1)).await;
    let (status, body) = verify(&gw, &alice, &id, &code).await;
    assert_error(status, &body, 400, "code_expired");
    // A new code works.
    gw.post(
        "/v1/identities",
        Some(&alice.token),
        json!({"kind": "phone", "value": "+14155550142"}),
    )
    .await;
    let code = latest_code(&gw, &alice, "+14155550142").await;
    let (status, body) = verify(&gw, &alice, &id, &code).await;
    assert_eq!(status, 200, "{body}");
    gw.stop().await;
}

#[tokio::test]
async fn five_wrong_codes_kill_the_code() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    let (_, body) = gw
        .post(
            "/v1/identities",
            Some(&alice.token),
            json!({"kind": "phone", "value": "+12065550111"}),
        )
        .await;
    let id = body["identity_id"].as_str().unwrap().to_owned();
    let code = latest_code(&gw, &alice, "+12065550111").await;
    let wrong = another_code(&code);
    for left in [4, 3, 2, 1] {
        let (status, body) = verify(&gw, &alice, &id, &wrong).await;
        assert_error(status, &body, 400, "wrong_code");
        let message = body["message"].as_str().unwrap();
        let want = if left == 1 {
            "1 try left".to_owned()
        } else {
            format!("{left} tries left")
        };
        assert!(message.contains(&want), "{message}");
    }
    let (status, body) = verify(&gw, &alice, &id, &wrong).await;
    assert_error(status, &body, 429, "too_many_attempts");
    // Now even the right code is refused: the code is dead.
    let (status, body) = verify(&gw, &alice, &id, &code).await;
    assert_error(status, &body, 429, "too_many_attempts");
    // A fresh code resets the tries.
    let (status, _) = gw
        .post(
            "/v1/identities",
            Some(&alice.token),
            json!({"kind": "phone", "value": "+12065550111"}),
        )
        .await;
    assert_eq!(status, 202);
    let code = latest_code(&gw, &alice, "+12065550111").await;
    let (status, body) = verify(&gw, &alice, &id, &code).await;
    assert_eq!(status, 200, "{body}");
    gw.stop().await;
}

#[tokio::test]
async fn concurrent_guesses_cannot_exceed_five_tries() {
    let gw = TestGateway::start_with(generous_limits).await;
    let alice = gw.sign_up("alice").await;
    let (_, body) = gw
        .post(
            "/v1/identities",
            Some(&alice.token),
            json!({"kind": "phone", "value": "+12065550112"}),
        )
        .await;
    let id = body["identity_id"].as_str().unwrap().to_owned();
    let code = latest_code(&gw, &alice, "+12065550112").await;
    // 30 different wrong codes at once, then the right one: at most five were ever compared.
    let guesses = (1..=30u32).map(|k| {
        let n: u32 = code.parse().unwrap();
        format!("{:06}", (n + k) % 1_000_000)
    });
    let replies = futures::future::join_all(guesses.map(|g| {
        let gw = &gw;
        let alice = &alice;
        let id = &id;
        async move { verify(gw, alice, id, &g).await }
    }))
    .await;
    let wrong = replies.iter().filter(|(s, _)| *s == 400).count();
    let refused = replies.iter().filter(|(s, _)| *s == 429).count();
    assert_eq!(wrong + refused, 30);
    assert!(wrong <= 4, "{wrong} guesses were answered wrong_code");
    let (status, body) = verify(&gw, &alice, &id, &code).await;
    assert_error(status, &body, 429, "too_many_attempts");
    gw.stop().await;
}

#[tokio::test]
async fn sign_in_is_rate_limited_per_username_and_per_address() {
    let gw = TestGateway::start_with(|c| {
        generous_limits(c);
        c.rate_limits.sign_in = Rate {
            per_minute: 1,
            burst: 3,
        };
    })
    .await;
    gw.sign_up("alice").await; // one sign-in from 127.0.0.1
    let a = client_from("127.0.0.2");
    let b = client_from("127.0.0.3");
    let c = client_from("127.0.0.4");
    let attempt = |client: &reqwest::Client, username: &str, password: &str| {
        let client = client.clone();
        let body = json!({"username": username, "password": password, "device_name": "x"});
        let gw = &gw;
        async move { raw(gw, &client, Method::POST, "/v1/sessions", None, Some(body)).await }
    };

    // Per username: two more guesses at alice (one sign-in already used a token), from
    // anywhere, then 429 — even from a fresh address, even with the right password.
    assert_eq!(attempt(&a, "alice", "guess one").await.0, 401);
    assert_eq!(attempt(&b, "alice", "guess two").await.0, 401);
    let (status, retry_after, body) = attempt(&c, "alice", PASSWORD).await;
    assert_error(status, &body, 429, "rate_limited");
    let retry_after = retry_after.expect("Retry-After");
    assert!((1..=60).contains(&retry_after), "{retry_after}");

    // Per address: three usernames from one address, then 429 for any fourth.
    let d = client_from("127.0.0.5");
    for name in ["user_one", "user_two", "user_three"] {
        assert_eq!(attempt(&d, name, "whatever1").await.0, 401);
    }
    let (status, retry_after, body) = attempt(&d, "user_four", "whatever1").await;
    assert_error(status, &body, 429, "rate_limited");
    assert!(retry_after.is_some());
    // Another address is not affected.
    assert_eq!(attempt(&c, "user_four", "whatever1").await.0, 401);
    gw.stop().await;
}

#[tokio::test]
async fn sign_up_is_rate_limited_per_address() {
    let gw = TestGateway::start_with(|c| {
        generous_limits(c);
        c.rate_limits.sign_up = Rate {
            per_minute: 1,
            burst: 2,
        };
    })
    .await;
    let client = client_from("127.0.0.9");
    let sign_up = |name: &str| {
        let body = json!({"username": name, "password": PASSWORD});
        let client = client.clone();
        let gw = &gw;
        async move { raw(gw, &client, Method::POST, "/v1/accounts", None, Some(body)).await }
    };
    // Invalid input is refused before it counts.
    let (status, _, body) = sign_up("x").await;
    assert_error(status, &body, 400, "invalid_field");
    assert_eq!(sign_up("first_one").await.0, 201);
    assert_eq!(sign_up("second_one").await.0, 201);
    let (status, retry_after, body) = sign_up("third_one").await;
    assert_error(status, &body, 429, "rate_limited");
    assert!(retry_after.unwrap_or(0) >= 1);
    // Other addresses are not affected.
    let (status, _, _) = raw(
        &gw,
        &client_from("127.0.0.10"),
        Method::POST,
        "/v1/accounts",
        None,
        Some(json!({"username": "third_one", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 201);
    gw.stop().await;
}

#[tokio::test]
async fn verification_codes_are_rate_limited_per_account_and_per_value() {
    let gw = TestGateway::start_with(|c| {
        generous_limits(c);
        c.rate_limits.verification_codes = Rate {
            per_minute: 1,
            burst: 2,
        };
        c.rate_limits.verification_checks = Rate {
            per_minute: 1,
            burst: 3,
        };
    })
    .await;
    let alice = gw.sign_up("alice").await;
    let bob = gw.sign_up("bob").await;
    let ask = |device: &Device, phone: &str| {
        let token = device.token.clone();
        let body = json!({"kind": "phone", "value": phone});
        let gw = &gw;
        async move {
            raw(
                gw,
                &gw.http,
                Method::POST,
                "/v1/identities",
                Some(&token),
                Some(body),
            )
            .await
        }
    };
    let (status, _, body) = ask(&alice, "+14155550130").await;
    assert_eq!(status, 202, "{body}");
    let id = body["identity_id"].as_str().unwrap().to_owned();
    assert_eq!(ask(&alice, "+14155550130").await.0, 202);
    // Alice has used her codes.
    let (status, retry_after, body) = ask(&alice, "+14155550131").await;
    assert_error(status, &body, 429, "rate_limited");
    assert!(retry_after.unwrap_or(0) >= 1);
    // The number has had its codes, whoever asks.
    let (status, _, body) = ask(&bob, "+14155550130").await;
    assert_error(status, &body, 429, "rate_limited");
    assert_eq!(ask(&bob, "+14155550131").await.0, 202);
    // Only two texts reached the number.
    assert_eq!(gw.outbox(&alice, "+14155550130").await.len(), 2);

    // Checks are limited per account too (3 here), before the 5-try limit.
    for _ in 0..3 {
        let (status, _) = verify(&gw, &alice, &id, "000000").await;
        assert!(status == 400 || status == 200, "{status}");
    }
    let (status, retry_after, body) = raw(
        &gw,
        &gw.http,
        Method::POST,
        &format!("/v1/identities/{id}/verify"),
        Some(&alice.token),
        Some(json!({"code": "000000"})),
    )
    .await;
    assert_error(status, &body, 429, "rate_limited");
    assert!(retry_after.unwrap_or(0) >= 1);
    gw.stop().await;
}

#[tokio::test]
async fn health() {
    let gw = TestGateway::start().await;
    let response = gw
        .http
        .get(format!("{}/healthz", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"status": "ok"}));
    // A store that no longer answers makes the node unhealthy.
    gw.gateway.as_ref().unwrap().state.store.close().await;
    let response = gw
        .http
        .get(format!("{}/healthz", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "unavailable");
}
