//! The story of issue 2, end to end over HTTP and WebSocket on a real gateway: two people,
//! four devices, texts by number, by username and by verified phone, and every device of
//! both accounts mirroring them through `/v1/stream` hints and `/v1/sync`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::*;
use futures::future::join_all;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

fn inbound_bodies(events: &[Value]) -> Vec<String> {
    created_messages(events)
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_four_devices_one_thread_each() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    let alice2 = gw.sign_in("alice", "tablet").await;
    let bob = gw.sign_up("bob").await;
    let bob2 = gw.sign_in("bob", "laptop").await;
    let alice_number = gw.claim_number(&alice, "415").await;
    let bob_number = gw.claim_number(&bob, "212").await;
    let alice_phone = "+12025550177";
    verify_phone(&gw, &alice, alice_phone).await;

    // Every device but the senders' first listens.
    let mut bob_stream = gw.stream(&bob).await;
    let mut bob2_stream = gw.stream(&bob2).await;
    let mut alice2_stream = gw.stream(&alice2).await;
    let bob_start = bob_stream.hint(WAIT).await;
    assert_eq!(bob2_stream.hint(WAIT).await, bob_start);
    let alice2_start = alice2_stream.hint(WAIT).await;

    // Alice texts Bob by his number, then by his username: one thread, shown by his number.
    let by_number = gw.send(&alice, &bob_number, "hi by number").await;
    assert_eq!(by_number["route"], "in_network");
    assert_eq!(by_number["status"], "delivered");
    assert_eq!(by_number["direction"], "outbound");
    assert_eq!(by_number["to"], bob_number.as_str());
    assert_eq!(by_number["from"], alice_number.as_str());
    assert_eq!(by_number["encoding"], "gsm7");
    assert_eq!(by_number["segments"], 1);
    let by_username = gw.send(&alice, "@Bob", "hi by username").await;
    assert_eq!(by_username["to"], bob_number.as_str());
    assert_eq!(by_username["conversation_id"], by_number["conversation_id"]);

    let two = |events: &[Value]| created_messages(events).len() >= 2;
    for (device, stream) in [(&bob, &mut bob_stream), (&bob2, &mut bob2_stream)] {
        let (events, _) = gw.follow(device, stream, bob_start, WAIT, two).await;
        let messages = created_messages(&events);
        assert_eq!(
            inbound_bodies(&events),
            ["hi by number", "hi by username"],
            "{events:?}"
        );
        for m in &messages {
            assert_eq!(m["direction"], "inbound");
            assert_eq!(m["from"], alice_number.as_str());
            assert_eq!(m["route"], "in_network");
            assert_eq!(m["client_id"], Value::Null);
            assert_eq!(m["conversation_id"], messages[0]["conversation_id"]);
        }
        assert_ne!(
            messages[0]["id"], by_number["id"],
            "each account has its own copy"
        );
    }
    let (events, alice2_cursor) = gw
        .follow(&alice2, &mut alice2_stream, alice2_start, WAIT, two)
        .await;
    let mirrored = created_messages(&events);
    assert_eq!(mirrored[0]["id"], by_number["id"]);
    assert_eq!(mirrored[1]["id"], by_username["id"]);

    // Bob answers Alice through the phone she verified: it reaches her account, in the
    // thread with his number, and both her devices see it.
    let reply = gw.send(&bob, alice_phone, "hi by verified phone").await;
    assert_eq!(reply["route"], "in_network");
    assert_eq!(
        reply["to"],
        alice_number.as_str(),
        "shown by her canonical address"
    );
    let (events, _) = gw
        .follow(&alice2, &mut alice2_stream, alice2_cursor, WAIT, |e| {
            !created_messages(e).is_empty()
        })
        .await;
    let got = &created_messages(&events)[0];
    assert_eq!(got["body"], "hi by verified phone");
    assert_eq!(got["direction"], "inbound");
    assert_eq!(got["from"], bob_number.as_str());
    assert_eq!(got["conversation_id"], by_number["conversation_id"]);

    // The thread, newest first, on Alice's side.
    let conversation = by_number["conversation_id"].as_str().unwrap();
    let (status, page) = gw
        .get(
            &format!("/v1/conversations/{conversation}/messages"),
            &alice.token,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let bodies: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies,
        ["hi by verified phone", "hi by username", "hi by number"]
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_client_id_makes_exactly_one_message() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    let bob = gw.sign_up("bob").await;
    let client_id = uuid::Uuid::new_v4();
    let request = json!({"to": "@bob", "body": "only once", "client_id": client_id});
    let replies =
        join_all((0..50).map(|_| gw.post("/v1/messages", Some(&alice.token), request.clone())))
            .await;
    let created = replies.iter().filter(|(s, _)| *s == 201).count();
    let repeated = replies.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!((created, repeated), (1, 49), "{replies:?}");
    let id = &replies[0].1["id"];
    assert!(replies.iter().all(|(_, m)| &m["id"] == id));
    assert!(replies
        .iter()
        .all(|(_, m)| m["client_id"] == client_id.to_string()));

    let (events, _) = gw.sync_all(&bob, 0).await;
    assert_eq!(inbound_bodies(&events), ["only once"]);
    let (events, _) = gw.sync_all(&alice, 0).await;
    assert_eq!(created_messages(&events).len(), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_to_self_is_one_copy() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    let note = gw.send(&alice, "@alice", "milk, eggs").await;
    assert_eq!(note["to"], "@alice");
    assert_eq!(note["from"], "@alice");
    assert_eq!(note["status"], "delivered");
    let number = gw.claim_number(&alice, "312").await;
    let note = gw.send(&alice, &number, "bread").await;
    assert_eq!(note["to"], number.as_str());
    let (events, _) = gw.sync_all(&alice, 0).await;
    assert_eq!(created_messages(&events).len(), 2, "{events:?}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_are_checked_and_refusals_say_what_to_fix() {
    let gw = TestGateway::start_with(|c| c.limits.max_body_chars = 10).await;
    let alice = gw.sign_up("alice").await;
    let _bob = gw.sign_up("bob").await;
    let send =
        |to: &str, body: &str| json!({"to": to, "body": body, "client_id": uuid::Uuid::new_v4()});
    let cases = [
        (send("@bob", ""), 400, "invalid_body"),
        (send("@bob", "12345678901"), 400, "invalid_body"),
        (send("@bob", "nul\u{0}"), 400, "invalid_body"),
        (send("@nobody", "hi"), 404, "unknown_recipient"),
        (send("nobody@example.org", "hi"), 404, "unknown_recipient"),
        (send("not a number", "hi"), 400, "invalid_address"),
        (send("a\u{0}b@example.org", "hi"), 400, "invalid_address"),
        (send("+1415555010", "hi"), 400, "invalid_address"),
        (send("+12025550143", "hi"), 409, "no_number"),
        (json!({"to": "@bob", "body": "hi"}), 400, "bad_request"),
        (
            json!({"to": "@bob", "body": "hi", "client_id": "nope"}),
            400,
            "bad_request",
        ),
        (
            json!({"to": "@bob", "body": "hi", "client_id": uuid::Uuid::new_v4(), "x": 1}),
            400,
            "bad_request",
        ),
    ];
    for (request, status, code) in cases {
        let (got, body) = gw
            .post("/v1/messages", Some(&alice.token), request.clone())
            .await;
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{request} → {body}"
        );
        assert!(!body["message"].as_str().unwrap().is_empty());
    }
    // Ten characters are allowed even when they are ten multi-byte ones.
    let (status, body) = gw
        .post(
            "/v1/messages",
            Some(&alice.token),
            send("@bob", "ééééééééé😀"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["encoding"], "ucs2");
    let (status, body) = gw.post("/v1/messages", None, send("@bob", "hi")).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    let (status, body) = gw
        .post("/v1/messages", Some("not-a-token"), send("@bob", "hi"))
        .await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_tells_in_network_from_outside() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    let bob = gw.sign_up("bob").await;
    let bob_number = gw.claim_number(&bob, "206").await;
    let national = bob_number.trim_start_matches("+1");
    let cases = [
        (national.to_owned(), 200, Some((bob_number.as_str(), true))),
        ("@BOB".to_owned(), 200, Some(("@bob", true))),
        (
            "+12025550143".to_owned(),
            200,
            Some(("+12025550143", false)),
        ),
        ("12345".to_owned(), 200, Some(("12345", false))),
        ("@nobody".to_owned(), 404, None),
        ("garbage!".to_owned(), 400, None),
    ];
    for (address, status, expected) in cases {
        let (got, body) = gw
            .get(
                &format!("/v1/lookup?address={}", urlencode(&address)),
                &alice.token,
            )
            .await;
        assert_eq!(got, status, "{address}: {body}");
        if let Some((normalised, in_network)) = expected {
            assert_eq!(body["address"], normalised);
            assert_eq!(body["in_network"], in_network);
        }
    }
    let (status, _) = gw.get("/v1/lookup", &alice.token).await;
    assert_eq!(status, 400);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_bodies_and_huge_requests() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    gw.sign_up("bob").await;
    let send =
        |body: String| json!({"to": "@bob", "body": body, "client_id": uuid::Uuid::new_v4()});

    // 1,600 characters, whatever their size in bytes.
    let (status, m) = gw
        .post("/v1/messages", Some(&alice.token), send("😀".repeat(1600)))
        .await;
    assert_eq!(status, 201, "{m}");
    assert_eq!(m["encoding"], "ucs2");
    // 33 emoji per 67-unit part: a surrogate pair is never split.
    assert_eq!(m["segments"], 49);
    let (status, m) = gw
        .post("/v1/messages", Some(&alice.token), send("a".repeat(1601)))
        .await;
    assert_eq!((status, m["code"].as_str()), (400, Some("invalid_body")));
    let (status, m) = gw
        .post(
            "/v1/messages",
            Some(&alice.token),
            send("a".repeat(70 * 1024)),
        )
        .await;
    assert_eq!(
        (status, m["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_messaging_and_sync() {
    let gw = TestGateway::start().await;
    let (status, doc) = gw
        .call(reqwest::Method::GET, "/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, 200);
    for (path, method) in [
        ("/v1/messages", "post"),
        ("/v1/messages/{id}", "delete"),
        ("/v1/conversations", "get"),
        ("/v1/conversations/{id}/messages", "get"),
        ("/v1/conversations/{id}/read", "post"),
        ("/v1/lookup", "get"),
        ("/v1/contacts/{address}", "put"),
        ("/v1/contacts", "get"),
        ("/v1/sync", "get"),
        ("/v1/stream", "get"),
        ("/v1/simulator/inbound", "post"),
        ("/v1/simulator/outbox", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is not in the OpenAPI document"
        );
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_phone_can_be_verified_by_another_account() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    let bob = gw.sign_up("bob").await;
    let phone = "+12025550166";
    let identity = verify_phone(&gw, &alice, phone).await;
    let path = format!("/v1/identities/{identity}");
    // Not bob's to remove.
    let (status, body) = gw
        .call(reqwest::Method::DELETE, &path, Some(&bob.token), None)
        .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (status, body) = gw
        .call(reqwest::Method::DELETE, &path, Some(&alice.token), None)
        .await;
    assert_eq!(status, 204, "{body}");
    let (_, me) = gw.get("/v1/me", &alice.token).await;
    assert_eq!(me["identities"], json!([]), "{me}");
    let (status, _) = gw
        .call(reqwest::Method::DELETE, &path, Some(&alice.token), None)
        .await;
    assert_eq!(status, 404);
    // Free for bob now; texts to it reach him.
    verify_phone(&gw, &bob, phone).await;
    let sent = gw.send(&alice, phone, "hi bob").await;
    assert_eq!(sent["route"], "in_network");
    assert_eq!(sent["to"], "@bob");
    gw.stop().await;
}
