//! Accounts for real use, over HTTP: changing the password (other devices signed out),
//! resetting a forgotten one with a code sent to a verified e-mail or phone (answers that
//! never tell whether the account exists), and deleting the account (its tokens and streams
//! die at once, its number goes to quarantine).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::{eventually, Device, StreamNews, TestGateway};
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";
const WAIT: Duration = Duration::from_secs(20);

async fn me(gw: &TestGateway, device: &Device) -> u16 {
    gw.get("/v1/me", &device.token).await.0
}

async fn sign_in_with(gw: &TestGateway, username: &str, password: &str) -> (u16, Value) {
    gw.post(
        "/v1/sessions",
        None,
        json!({"username": username, "password": password, "device_name": "laptop"}),
    )
    .await
}

/// Verifies an e-mail address or phone number through the simulator's outbox.
async fn verify(gw: &TestGateway, device: &Device, kind: &str, value: &str) {
    let (status, body) = gw
        .post(
            "/v1/identities",
            Some(&device.token),
            json!({"kind": kind, "value": value}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let identity = body["identity_id"].as_str().unwrap().to_owned();
    let code = last_code(gw, device, value).await;
    let (status, body) = gw
        .post(
            &format!("/v1/identities/{identity}/verify"),
            Some(&device.token),
            json!({"code": code}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// The 6-digit code in the newest thing the simulator delivered to `to`.
fn code_in(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .map(str::to_owned)
}

async fn last_code(gw: &TestGateway, device: &Device, to: &str) -> String {
    let delivered = gw.outbox(device, to).await;
    code_in(
        delivered.last().expect("something was delivered")["body"]
            .as_str()
            .unwrap(),
    )
    .expect("a 6-digit code")
}

/// Waits until a delivery to `to` mentions a password reset; returns its code.
async fn reset_code(gw: &TestGateway, device: &Device, to: &str, seen: usize) -> String {
    eventually(WAIT, || async {
        let delivered = gw.outbox(device, to).await;
        let resets: Vec<&Value> = delivered
            .iter()
            .filter(|m| m["body"].as_str().unwrap_or("").contains("password reset"))
            .collect();
        (resets.len() > seen).then(|| code_in(resets.last()?["body"].as_str()?))?
    })
    .await
}

#[tokio::test]
async fn a_password_change_keeps_this_device_and_signs_out_the_others() {
    let gw = TestGateway::start().await;
    let phone = gw.sign_up("alice").await;
    let laptop = gw.sign_in("alice", "laptop").await;
    let tablet = gw.sign_in("alice", "tablet").await;

    // The current password is required, and the new one must be acceptable.
    let (status, body) = gw
        .post(
            "/v1/accounts/me/password",
            Some(&phone.token),
            json!({"current_password": "not it at all", "new_password": "a new passphrase"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("bad_credentials")),
        "{body}"
    );
    let (status, body) = gw
        .post(
            "/v1/accounts/me/password",
            Some(&phone.token),
            json!({"current_password": PASSWORD, "new_password": "short"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_field")),
        "{body}"
    );
    let (status, body) = gw
        .post(
            "/v1/accounts/me/password",
            None,
            json!({"current_password": PASSWORD, "new_password": "a new passphrase"}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(me(&gw, &laptop).await, 200, "nothing changed yet");

    // Keeping the other devices is a choice.
    let (status, body) = gw
        .post(
            "/v1/accounts/me/password",
            Some(&phone.token),
            json!({"current_password": PASSWORD, "new_password": "a new passphrase", "sign_out_other_devices": false}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(me(&gw, &laptop).await, 200);

    // The default signs out every other device, at once, streams included.
    gw.gateway
        .as_ref()
        .unwrap()
        .state
        .push
        .set_keepalive(Duration::from_secs(3600));
    let mut laptop_stream = gw.stream(&laptop).await;
    laptop_stream.hint(WAIT).await;
    let (status, body) = gw
        .post(
            "/v1/accounts/me/password",
            Some(&phone.token),
            json!({"current_password": "a new passphrase", "new_password": "another passphrase"}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        me(&gw, &phone).await,
        200,
        "the device that changed it stays"
    );
    assert_eq!(me(&gw, &laptop).await, 401);
    assert_eq!(me(&gw, &tablet).await, 401);
    assert_eq!(
        laptop_stream.next(WAIT).await,
        Some(StreamNews::Closed(Some(1008))),
        "the signed-out device's stream closes without waiting for a keep-alive"
    );

    assert_eq!(sign_in_with(&gw, "alice", PASSWORD).await.0, 401);
    assert_eq!(sign_in_with(&gw, "alice", "a new passphrase").await.0, 401);
    assert_eq!(
        sign_in_with(&gw, "alice", "another passphrase").await.0,
        201
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_forgotten_password_is_reset_by_a_code_to_a_verified_address() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    let other = gw.sign_in("alice", "tablet").await;
    verify(&gw, &alice, "email", "alice@example.com").await;
    verify(&gw, &alice, "phone", "+12065550142").await;
    // An address that was never verified gets nothing.
    let (status, _) = gw
        .post(
            "/v1/identities",
            Some(&alice.token),
            json!({"kind": "email", "value": "old-alice@example.com"}),
        )
        .await;
    assert_eq!(status, 202);

    // The answer is the same whether or not the account exists.
    let (status, for_alice) = gw
        .post("/v1/password-resets", None, json!({"username": "alice"}))
        .await;
    assert_eq!(status, 202, "{for_alice}");
    let (status, for_nobody) = gw
        .post("/v1/password-resets", None, json!({"username": "nobody"}))
        .await;
    assert_eq!(status, 202, "{for_nobody}");
    assert_eq!(for_alice, for_nobody);
    let (status, body) = gw
        .post(
            "/v1/password-resets",
            None,
            json!({"username": "not a name!"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_field")),
        "{body}"
    );

    // One code, to the verified e-mail and the verified phone.
    let by_mail = reset_code(&gw, &alice, "alice@example.com", 0).await;
    let by_text = reset_code(&gw, &alice, "+12065550142", 0).await;
    assert_eq!(by_mail, by_text);
    let unverified = gw.outbox(&alice, "old-alice@example.com").await;
    assert!(
        unverified
            .iter()
            .all(|m| !m["body"].as_str().unwrap().contains("password reset")),
        "{unverified:?}"
    );

    // A wrong code, and a code for an account that does not exist, get the same answer.
    let wrong = if by_mail == "000000" {
        "000001"
    } else {
        "000000"
    };
    let (status, wrong_for_alice) = gw
        .post(
            "/v1/password-resets/confirm",
            None,
            json!({"username": "alice", "code": wrong, "new_password": "a new passphrase"}),
        )
        .await;
    assert_eq!(status, 400, "{wrong_for_alice}");
    assert_eq!(wrong_for_alice["code"], "wrong_code");
    let (status, wrong_for_nobody) = gw
        .post(
            "/v1/password-resets/confirm",
            None,
            json!({"username": "nobody", "code": by_mail, "new_password": "a new passphrase"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(wrong_for_alice, wrong_for_nobody);
    for bad in [
        json!({"username": "alice", "code": "12345", "new_password": "a new passphrase"}),
        json!({"username": "alice", "code": by_mail, "new_password": "short"}),
    ] {
        let (status, body) = gw.post("/v1/password-resets/confirm", None, bad).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_field")),
            "{body}"
        );
    }

    // The right code: the new password works, the old does not, every device is out.
    let (status, body) = gw
        .post(
            "/v1/password-resets/confirm",
            None,
            json!({"username": "@Alice", "code": by_mail, "new_password": "a new passphrase"}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(me(&gw, &alice).await, 401);
    assert_eq!(me(&gw, &other).await, 401);
    assert_eq!(sign_in_with(&gw, "alice", PASSWORD).await.0, 401);
    let (status, _) = sign_in_with(&gw, "alice", "a new passphrase").await;
    assert_eq!(status, 201);

    // A code works once.
    let (status, body) = gw
        .post(
            "/v1/password-resets/confirm",
            None,
            json!({"username": "alice", "code": by_mail, "new_password": "yet another one"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("wrong_code")),
        "{body}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn reset_codes_die_after_the_allowed_tries_and_are_rate_limited() {
    let gw = TestGateway::start_with(|config| {
        config.verification.max_attempts = 2;
        config.rate_limits.verification_checks.burst = 4;
        config.rate_limits.verification_checks.per_minute = 1;
    })
    .await;
    let alice = gw.sign_up("alice").await;
    verify(&gw, &alice, "phone", "+12065550143").await;
    let (status, _) = gw
        .post("/v1/password-resets", None, json!({"username": "alice"}))
        .await;
    assert_eq!(status, 202);
    let code = reset_code(&gw, &alice, "+12065550143", 0).await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    for _ in 0..2 {
        let (status, _) = gw
            .post(
                "/v1/password-resets/confirm",
                None,
                json!({"username": "alice", "code": wrong, "new_password": "a new passphrase"}),
            )
            .await;
        assert_eq!(status, 400);
    }
    // The tries are used up: even the right code no longer works.
    let (status, body) = gw
        .post(
            "/v1/password-resets/confirm",
            None,
            json!({"username": "alice", "code": code, "new_password": "a new passphrase"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("wrong_code")),
        "{body}"
    );
    // Past the per-username limit: 429, for existing and unknown usernames alike.
    for username in ["alice", "nobody"] {
        let mut last = (0, Value::Null);
        for _ in 0..5 {
            last = gw
                .post(
                    "/v1/password-resets/confirm",
                    None,
                    json!({"username": username, "code": wrong, "new_password": "a new passphrase"}),
                )
                .await;
        }
        assert_eq!(last.0, 429, "{username}: {}", last.1);
        assert_eq!(last.1["code"], "too_many_attempts");
    }
    assert_eq!(sign_in_with(&gw, "alice", PASSWORD).await.0, 201);
    gw.stop().await;
}

#[tokio::test]
async fn a_deleted_account_is_gone_with_its_tokens_streams_and_number() {
    let gw = TestGateway::start_with(|config| config.number_quarantine_days = 30).await;
    let alice = gw.sign_up("alice").await;
    let alice_laptop = gw.sign_in("alice", "laptop").await;
    let bob = gw.sign_up("bob").await;
    let number = gw.claim_number(&alice, "415").await;
    gw.send(&alice, "@bob", "a text bob keeps").await;
    gw.send(&bob, "@alice", "a text alice loses").await;

    gw.gateway
        .as_ref()
        .unwrap()
        .state
        .push
        .set_keepalive(Duration::from_secs(3600));
    let mut stream = gw.stream(&alice_laptop).await;
    stream.hint(WAIT).await;

    let (status, body) = gw
        .call(
            Method::DELETE,
            "/v1/accounts/me",
            Some(&alice.token),
            Some(json!({"password": "not the password"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("bad_credentials")),
        "{body}"
    );
    let (status, body) = gw
        .call(
            Method::DELETE,
            "/v1/accounts/me",
            Some(&alice.token),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(me(&gw, &alice).await, 200);

    let (status, body) = gw
        .call(
            Method::DELETE,
            "/v1/accounts/me",
            Some(&alice.token),
            Some(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 204, "{body}");

    // Every token dies at once, and the open stream closes without waiting for a keep-alive.
    assert_eq!(me(&gw, &alice).await, 401);
    assert_eq!(me(&gw, &alice_laptop).await, 401);
    assert_eq!(
        stream.next(WAIT).await,
        Some(StreamNews::Closed(Some(1008)))
    );
    assert_eq!(sign_in_with(&gw, "alice", PASSWORD).await.0, 401);

    // Bob keeps his copy; @alice no longer answers; her number is in quarantine.
    let (events, _) = gw.sync_all(&bob, 0).await;
    let bodies = common::bodies(&events);
    assert!(
        bodies.contains(&"a text bob keeps".to_owned()),
        "{bodies:?}"
    );
    let (status, body) = gw
        .post(
            "/v1/messages",
            Some(&bob.token),
            json!({"to": "@alice", "body": "still there?", "client_id": uuid::Uuid::new_v4()}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = gw
        .post("/v1/numbers", Some(&bob.token), json!({"number": number}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("number_taken")),
        "{body}"
    );

    // The username is free again for someone new.
    let (status, body) = gw
        .post(
            "/v1/accounts",
            None,
            json!({"username": "alice", "password": "a different person"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    gw.stop().await;
}

#[tokio::test]
async fn search_finds_only_the_accounts_own_messages_and_refuses_bad_queries() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    let bob = gw.sign_up("bob").await;
    gw.send(&alice, "@bob", "Shall we meet for lunch?").await;
    gw.send(&bob, "@alice", "Lunch at noon works").await;
    gw.send(&alice, "@alice", "note to self: buy milk").await;

    let (status, page) = search(&gw, &alice, "LUNCH").await;
    assert_eq!(status, 200, "{page}");
    let bodies: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies,
        vec!["Lunch at noon works", "Shall we meet for lunch?"]
    );
    assert_eq!(page["more"], false);
    let (_, page) = search(&gw, &alice, "milk").await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
    let (_, page) = search(&gw, &bob, "milk").await;
    assert!(page["messages"].as_array().unwrap().is_empty(), "{page}");
    // Query syntax is just text.
    let (status, page) = search(&gw, &alice, "lunch\" OR owner:* NEAR(").await;
    assert_eq!(status, 200, "{page}");

    let (status, page) = gw.get("/v1/search?q=lunch&limit=1", &alice.token).await;
    assert_eq!(status, 200);
    assert_eq!(page["more"], true);
    let last = page["messages"][0]["id"].as_str().unwrap().to_owned();
    let (status, page) = gw
        .get(
            &format!("/v1/search?q=lunch&limit=1&before={last}"),
            &alice.token,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["messages"][0]["body"], "Shall we meet for lunch?");
    let (status, _) = gw
        .get(&format!("/v1/search?q=lunch&before={last}"), &bob.token)
        .await;
    assert_eq!(status, 404, "another account's message is no cursor");

    for (path, code) in [
        ("/v1/search?q=%20*%22", "invalid_field"),
        ("/v1/search", "bad_request"),
        ("/v1/search?q=x&limit=0", "invalid_field"),
        ("/v1/search?q=x&limit=101", "invalid_field"),
        ("/v1/search?q=x&before=nope", "bad_request"),
        ("/v1/search?q=x&surprise=1", "bad_request"),
    ] {
        let (status, body) = gw.get(path, &alice.token).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some(code)),
            "{path}: {body}"
        );
    }
    let long = "a".repeat(1025);
    let (status, _) = gw.get(&format!("/v1/search?q={long}"), &alice.token).await;
    assert_eq!(status, 400);
    let (status, _) = gw.call(Method::GET, "/v1/search?q=lunch", None, None).await;
    assert_eq!(status, 401);
    gw.stop().await;
}

async fn search(gw: &TestGateway, device: &Device, query: &str) -> (u16, Value) {
    let path = format!(
        "/v1/search?{}",
        serde_urlencoded::to_string([("q", query)]).unwrap()
    );
    gw.get(&path, &device.token).await
}
