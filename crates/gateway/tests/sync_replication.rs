//! Replication across devices: the event log through `/v1/sync`, hints through `/v1/stream`,
//! and everything a device mirrors (conversations, read markers, deletes, contacts).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use airtext_gateway::config::Rate;
use common::*;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

async fn unlimited_gateway() -> TestGateway {
    TestGateway::start_with(|c| {
        c.rate_limits.send = Rate {
            per_minute: 1_000_000,
            burst: 100_000,
        };
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_offline_during_a_thousand_messages_catches_up_exactly() {
    let gw = unlimited_gateway().await;
    let alice = gw.sign_up("alice").await;
    let bob = gw.sign_up("bob").await;
    let bob_offline = gw.sign_in("bob", "drawer").await;
    let mut bob_stream = gw.stream(&bob).await;
    assert_eq!(
        bob_stream.hint(WAIT).await,
        0,
        "a new account's log is empty"
    );

    stream::iter(0..1000)
        .for_each_concurrent(25, |i| {
            let gw = &gw;
            let alice = &alice;
            async move {
                gw.send(alice, "@bob", &format!("message {i}")).await;
            }
        })
        .await;
    // The online device was told the log reached 1000 (hints coalesce, the last is exact).
    assert_eq!(bob_stream.until(1000, WAIT).await, 1000);

    // The offline device pages from 0 in small pages.
    let mut after = 0;
    let mut seqs = Vec::new();
    let mut bodies = BTreeSet::new();
    loop {
        let (status, page) = gw
            .get(
                &format!("/v1/sync?after={after}&limit=97"),
                &bob_offline.token,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= 97);
        for event in events {
            seqs.push(event["seq"].as_i64().unwrap());
            assert_eq!(event["type"], "message.created");
            assert!(bodies.insert(event["message"]["body"].as_str().unwrap().to_owned()));
        }
        let next = page["next"].as_i64().unwrap();
        assert_eq!(next, seqs.last().copied().unwrap_or(after));
        after = next;
        if !page["more"].as_bool().unwrap() {
            break;
        }
    }
    assert_eq!(
        seqs,
        (1..=1000).collect::<Vec<i64>>(),
        "every event once, in order"
    );
    let expected: BTreeSet<String> = (0..1000).map(|i| format!("message {i}")).collect();
    assert_eq!(bodies, expected);

    // Caught up: nothing more, and the cursor stays put.
    let (status, page) = gw
        .get(&format!("/v1/sync?after={after}"), &bob_offline.token)
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["events"], json!([]));
    assert_eq!(page["next"], after);
    assert_eq!(page["more"], false);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_parameters_are_checked() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    for query in [
        "after=-1",
        "after=x",
        "limit=0",
        "limit=1001",
        "limit=-5",
        "after=1&bogus=2",
    ] {
        let (status, body) = gw.get(&format!("/v1/sync?{query}"), &alice.token).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["code"].is_string());
    }
    let (status, body) = gw.get("/v1/sync", &alice.token).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"events": [], "next": 0, "more": false}));
    let (status, _) = gw.get("/v1/sync", "bogus").await;
    assert_eq!(status, 401);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_authenticate_hint_at_once_coalesce_and_close_on_shutdown() {
    let gw = unlimited_gateway().await;
    let alice = gw.sign_up("alice").await;
    let _bob = gw.sign_up("bob").await;
    for i in 0..3 {
        gw.send(&alice, "@bob", &format!("before {i}")).await;
    }

    // A bad token is refused before the upgrade, with a JSON body.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            gw.ws_url("/v1/stream"),
        )
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", "Bearer nope".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401);
            let body: Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
            assert_eq!(body["code"], "unauthorized");
        }
        other => panic!("expected a 401, got {other:?}"),
    }
    // Not a WebSocket request: a JSON 400, not a hang.
    let (status, body) = gw.get("/v1/stream", &alice.token).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")));

    // On connect: the current seq at once, by header or by query token.
    let mut by_header = gw.stream(&alice).await;
    let mut by_query = gw.stream_with_query_token(&alice).await;
    assert_eq!(by_header.hint(WAIT).await, 3);
    assert_eq!(by_query.hint(WAIT).await, 3);

    // A burst: hints may coalesce, never go backwards, and the last is the latest seq.
    stream::iter(0..100)
        .for_each_concurrent(10, |i| {
            let gw = &gw;
            let alice = &alice;
            async move {
                gw.send(alice, "@bob", &format!("burst {i}")).await;
            }
        })
        .await;
    let mut last = 3;
    let mut hints = 0;
    while last < 103 {
        let seq = by_header.hint(WAIT).await;
        assert!(seq > last, "hints move forward: {seq} after {last}");
        last = seq;
        hints += 1;
    }
    assert_eq!(last, 103);
    assert!(hints <= 100);
    assert_eq!(by_query.until(103, WAIT).await, 103);
    assert_eq!(
        by_header.next(Duration::from_millis(300)).await,
        None,
        "no stray hints"
    );

    // Gateway shutdown closes streams cleanly ("going away").
    let stopping = tokio::spawn(gw.stop());
    assert_eq!(
        by_header.next(WAIT).await,
        Some(StreamNews::Closed(Some(1001)))
    );
    stopping.await.unwrap();
}

async fn conversation_with(gw: &TestGateway, device: &Device, peer: &str) -> Value {
    let (status, page) = gw.get("/v1/conversations?limit=200", &device.token).await;
    assert_eq!(status, 200, "{page}");
    page["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["peer"] == peer)
        .cloned()
        .unwrap_or_else(|| panic!("no conversation with {peer}: {page}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_page_and_read_markers_sync() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    let alice2 = gw.sign_in("alice", "tablet").await;
    let bob = gw.sign_up("bob").await;
    for name in ["carol", "dave"] {
        gw.sign_up(name).await;
    }
    for to in ["@carol", "@dave"] {
        gw.send(&alice, to, "hello").await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut from_bob = Vec::new();
    for i in 0..5 {
        from_bob.push(gw.send(&bob, "@alice", &format!("bob {i}")).await);
    }

    // Conversations: most recently updated first, paged by updated_at.
    let (status, page) = gw.get("/v1/conversations?limit=2", &alice.token).await;
    assert_eq!(status, 200, "{page}");
    let first = page["conversations"].as_array().unwrap().clone();
    let peers: Vec<&str> = first.iter().map(|c| c["peer"].as_str().unwrap()).collect();
    assert_eq!(peers, ["@bob", "@dave"]);
    assert_eq!(first[0]["unread"], 5);
    assert_eq!(first[0]["last_message"]["body"], "bob 4");
    let before = first[1]["updated_at"].as_str().unwrap();
    let (status, page) = gw
        .get(
            &format!("/v1/conversations?limit=2&before={}", urlencode(before)),
            &alice.token,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let peers: Vec<&str> = page["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["peer"].as_str().unwrap())
        .collect();
    assert_eq!(peers, ["@carol"]);
    for query in ["before=yesterday", "limit=0", "limit=201", "limit=x"] {
        let (status, body) = gw
            .get(&format!("/v1/conversations?{query}"), &alice.token)
            .await;
        assert_eq!(status, 400, "{query}: {body}");
    }

    // Messages: newest first, paged by id.
    let conversation = first[0]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/conversations/{conversation}/messages");
    let mut bodies = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let query = before
            .as_ref()
            .map(|b| format!("?limit=2&before={b}"))
            .unwrap_or_else(|| "?limit=2".into());
        let (status, page) = gw.get(&format!("{path}{query}"), &alice.token).await;
        assert_eq!(status, 200, "{page}");
        let messages = page["messages"].as_array().unwrap();
        if messages.is_empty() {
            break;
        }
        bodies.extend(
            messages
                .iter()
                .map(|m| m["body"].as_str().unwrap().to_owned()),
        );
        before = Some(messages.last().unwrap()["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(bodies, ["bob 4", "bob 3", "bob 2", "bob 1", "bob 0"]);
    let (status, _) = gw.get(&format!("{path}?before=nope"), &alice.token).await;
    assert_eq!(status, 400);

    // Read markers move forward only, and the other device hears of them.
    let mut alice2_stream = gw.stream(&alice2).await;
    let cursor = alice2_stream.hint(WAIT).await;
    let inbox = gw.get(&format!("{path}?limit=200"), &alice.token).await.1["messages"]
        .as_array()
        .unwrap()
        .clone();
    let third = inbox[2]["id"].as_str().unwrap(); // "bob 2"
    let (status, body) = gw
        .post(
            &format!("/v1/conversations/{conversation}/read"),
            Some(&alice.token),
            json!({"up_to": third}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (events, _) = gw
        .follow(&alice2, &mut alice2_stream, cursor, WAIT, |e| {
            e.iter().any(|e| e["type"] == "conversation.read")
        })
        .await;
    let read = events
        .iter()
        .find(|e| e["type"] == "conversation.read")
        .unwrap();
    assert_eq!(read["conversation_id"], conversation.as_str());
    assert_eq!(read["up_to"], third);
    assert_eq!(read["unread"], 2);
    assert_eq!(conversation_with(&gw, &alice, "@bob").await["unread"], 2);
    let oldest = inbox[4]["id"].as_str().unwrap();
    let (status, _) = gw
        .post(
            &format!("/v1/conversations/{conversation}/read"),
            Some(&alice.token),
            json!({"up_to": oldest}),
        )
        .await;
    assert!(
        status == 204,
        "an older marker is accepted and ignored: {status}"
    );
    assert_eq!(conversation_with(&gw, &alice, "@bob").await["unread"], 2);

    // A message of another conversation, another account's conversation, bad ids.
    let carol_conversation = conversation_with(&gw, &alice, "@carol").await;
    let carol_message = carol_conversation["last_message"]["id"].as_str().unwrap();
    let (status, _) = gw
        .post(
            &format!("/v1/conversations/{conversation}/read"),
            Some(&alice.token),
            json!({"up_to": carol_message}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = gw.get(&path, &bob.token).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (status, _) = gw
        .post(
            &format!("/v1/conversations/{conversation}/read"),
            Some(&bob.token),
            json!({"up_to": third}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = gw
        .get("/v1/conversations/not-a-uuid/messages", &alice.token)
        .await;
    assert_eq!(status, 400);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_are_per_account_and_reach_every_device() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    let alice2 = gw.sign_in("alice", "tablet").await;
    let bob = gw.sign_up("bob").await;
    let sent = gw.send(&alice, "@bob", "regrettable").await;
    let id = sent["id"].as_str().unwrap();
    let mut alice2_stream = gw.stream(&alice2).await;
    let cursor = alice2_stream.hint(WAIT).await;

    // Bob cannot delete Alice's copy; Alice can.
    let (status, _) = gw
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/messages/{id}"),
            Some(&bob.token),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = gw
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/messages/{id}"),
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (events, _) = gw
        .follow(&alice2, &mut alice2_stream, cursor, WAIT, |e| {
            e.iter().any(|e| e["type"] == "message.deleted")
        })
        .await;
    let deleted = events
        .iter()
        .find(|e| e["type"] == "message.deleted")
        .unwrap();
    assert_eq!(deleted["message_id"], id);
    let (status, _) = gw
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/messages/{id}"),
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(status, 404, "already gone");
    let (status, _) = gw
        .call(
            reqwest::Method::DELETE,
            "/v1/messages/nope",
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(status, 400);

    // Bob keeps his copy.
    let conversation = conversation_with(&gw, &bob, "@alice").await;
    assert_eq!(conversation["last_message"]["body"], "regrettable");
    let alice_conversation = sent["conversation_id"].as_str().unwrap();
    let (status, page) = gw
        .get(
            &format!("/v1/conversations/{alice_conversation}/messages"),
            &alice.token,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["messages"], json!([]));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_settings_are_normalised_and_synced() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    let alice2 = gw.sign_in("alice", "tablet").await;
    let mut alice2_stream = gw.stream(&alice2).await;
    let cursor = alice2_stream.hint(WAIT).await;

    let put = |address: &str, body: Value| {
        let path = format!(
            "/v1/contacts/{}",
            urlencode(address)
                .replace(' ', "%20")
                .replace('(', "%28")
                .replace(')', "%29")
        );
        let gw = &gw;
        let token = alice.token.clone();
        async move {
            gw.call(reqwest::Method::PUT, &path, Some(&token), Some(body))
                .await
        }
    };
    let (status, contact) = put(
        "(415) 555-0177",
        json!({"path": "cellular", "fallback": true, "name": "Mum"}),
    )
    .await;
    assert_eq!(status, 200, "{contact}");
    assert_eq!(contact["address"], "+14155550177");
    assert_eq!(contact["path"], "cellular");
    assert_eq!(contact["fallback"], true);
    assert_eq!(contact["name"], "Mum");
    let (events, _) = gw
        .follow(&alice2, &mut alice2_stream, cursor, WAIT, |e| !e.is_empty())
        .await;
    assert_eq!(event_types(&events), ["contact.updated"]);
    assert_eq!(events[0]["contact"]["address"], "+14155550177");

    let (status, contact) = put("+14155550177", json!({"path": "auto", "fallback": false})).await;
    assert_eq!(status, 200, "{contact}");
    let (status, list) = gw.get("/v1/contacts", &alice.token).await;
    assert_eq!(status, 200);
    let contacts = list["contacts"].as_array().unwrap();
    assert_eq!(
        contacts.len(),
        1,
        "one contact per normalised address: {list}"
    );
    assert_eq!(contacts[0]["path"], "auto");

    for (address, body, code) in [
        (
            "@Bob",
            json!({"path": "sideways", "fallback": false}),
            "bad_request",
        ),
        (
            "@Bob",
            json!({"path": "auto", "fallback": false, "name": "x".repeat(101)}),
            "invalid_field",
        ),
        (
            "@Bob",
            json!({"path": "auto", "fallback": false, "name": "a\u{0}b"}),
            "invalid_field",
        ),
        (
            "not a phone",
            json!({"path": "auto", "fallback": false}),
            "invalid_address",
        ),
        ("@Bob", json!({"path": "auto"}), "bad_request"),
    ] {
        let (status, reply) = put(address, body).await;
        assert_eq!(
            (status, reply["code"].as_str()),
            (400, Some(code)),
            "{address}: {reply}"
        );
    }
    let (status, contact) = put(
        "@Bob",
        json!({"path": "cloud", "fallback": false, "name": "é".repeat(100)}),
    )
    .await;
    assert_eq!(status, 200, "100 characters are fine: {contact}");
    assert_eq!(contact["address"], "@bob");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_out_device_loses_its_stream() {
    let gw = TestGateway::start().await;
    let state = &gw.gateway.as_ref().unwrap().state;
    state.push.set_keepalive(Duration::from_millis(150));
    let alice = gw.sign_up("alice").await;
    let alice2 = gw.sign_in("alice", "tablet").await;
    let mut stream = gw.stream(&alice).await;
    let mut other = gw.stream(&alice2).await;
    assert_eq!(stream.hint(WAIT).await, 0);
    assert_eq!(other.hint(WAIT).await, 0);
    // Pings come and are answered (both streams read, as live clients do): they stay open.
    let quiet = Duration::from_millis(600);
    assert_eq!(
        tokio::join!(stream.next(quiet), other.next(quiet)),
        (None, None)
    );

    // Both streams go on reading while the sign-out runs, as live clients do: however long it
    // takes, neither falls silent for lack of a reader.
    let mut closed = None;
    let (status, body) = {
        let delete = gw.call(
            reqwest::Method::DELETE,
            "/v1/sessions/current",
            Some(&alice.token),
            None,
        );
        tokio::pin!(delete);
        loop {
            tokio::select! {
                done = &mut delete => break done,
                news = stream.next(WAIT), if closed.is_none() => closed = Some(news),
                news = other.next(WAIT) => panic!("the other device's stream said {news:?}"),
            }
        }
    };
    assert_eq!(status, 204, "{body}");
    // The signed-out device's stream closes at its next keep-alive; the other device's stays.
    let (closed, other_news) = match closed {
        Some(closed) => (closed, other.next(quiet).await),
        None => tokio::join!(stream.next(WAIT), other.next(quiet)),
    };
    assert_eq!(
        (closed, other_news),
        (Some(StreamNews::Closed(Some(1008))), None)
    );
    gw.stop().await;
}

/// A deleted message is gone from the log too: a device that signs in afterwards and pulls
/// from 0 gets its deletion where its creation and status changes were, never its body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_syncing_from_zero_never_sees_a_deleted_body() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    let bob = gw.sign_up("bob").await;
    // A number, so that a text can go to a phone outside.
    gw.claim_number(&alice, "415").await;
    let secret = gw.send(&alice, "@bob", "the secret alice regrets").await;
    let kept = gw.send(&alice, "@bob", "the text alice keeps").await;
    let outside = gw
        .send(&alice, "+12065550123", "the secret to a phone")
        .await;
    // The carrier's receipts add status events for the outside text first.
    common::eventually(Duration::from_secs(20), || async {
        let (events, _) = gw.sync_all(&alice, 0).await;
        events
            .iter()
            .any(|e| e["type"] == "message.status" && e["status"] == "delivered")
            .then_some(())
    })
    .await;
    let (before, _) = gw.sync_all(&alice, 0).await;

    for message in [&secret, &outside] {
        let id = message["id"].as_str().unwrap();
        let (status, body) = gw
            .call(
                reqwest::Method::DELETE,
                &format!("/v1/messages/{id}"),
                Some(&alice.token),
                None,
            )
            .await;
        assert_eq!(status, 204, "{body}");
    }

    let laptop = gw.sign_in("alice", "new laptop").await;
    let (events, next) = gw.sync_all(&laptop, 0).await;
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains("secret"), "{text}");
    assert!(text.contains("the text alice keeps"));
    assert_eq!(
        events.len(),
        before.len() + 2,
        "same seqs, plus the two deletions"
    );
    assert_eq!(next, events.last().unwrap()["seq"].as_i64().unwrap());
    let deleted: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "message.deleted")
        .map(|e| e["message_id"].as_str().unwrap())
        .collect();
    assert!(deleted.contains(&secret["id"].as_str().unwrap()));
    assert!(deleted.contains(&outside["id"].as_str().unwrap()));
    assert!(!deleted.contains(&kept["id"].as_str().unwrap()));
    // Bob's copy is his own.
    let (bobs, _) = gw.sync_all(&bob, 0).await;
    assert!(serde_json::to_string(&bobs)
        .unwrap()
        .contains("the secret alice regrets"));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_conversation_is_gone_for_every_device_and_from_the_log() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    let bob = gw.sign_up("bob").await;
    let eve = gw.sign_up("eve").await;
    gw.send(&alice, "@bob", "the secret alice regrets").await;
    gw.send(&bob, "@alice", "the secret bob answers").await;
    gw.send(&alice, "@eve", "the text alice keeps").await;
    let conversation = conversation_with(&gw, &alice, "@bob").await;
    let id = conversation["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/conversations/{id}");

    // Another account's conversation, an unknown one and a malformed id are refused.
    let (status, body) = gw
        .call(reqwest::Method::DELETE, &path, Some(&eve.token), None)
        .await;
    assert_eq!(status, 404, "{body}");
    let unknown = format!("/v1/conversations/{}", uuid::Uuid::now_v7());
    let (status, body) = gw
        .call(reqwest::Method::DELETE, &unknown, Some(&alice.token), None)
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = gw
        .call(
            reqwest::Method::DELETE,
            "/v1/conversations/not-an-id",
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = gw
        .call(reqwest::Method::DELETE, &path, Some(&alice.token), None)
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = gw
        .call(reqwest::Method::DELETE, &path, Some(&alice.token), None)
        .await;
    assert_eq!(status, 404, "deleting twice: {body}");
    let (status, body) = gw.get(&format!("{path}/messages"), &alice.token).await;
    assert_eq!(status, 404, "{body}");
    let (status, page) = gw.get("/v1/conversations", &alice.token).await;
    assert_eq!(status, 200, "{page}");
    let peers: Vec<&str> = page["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["peer"].as_str().unwrap())
        .collect();
    assert_eq!(peers, vec!["@eve"]);

    // A second device syncing from 0 learns of the deletion and never sees a body of it.
    let laptop = gw.sign_in("alice", "new laptop").await;
    let (events, _) = gw.sync_all(&laptop, 0).await;
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains("secret"), "{text}");
    assert!(text.contains("the text alice keeps"));
    let last = events.last().unwrap();
    assert_eq!(last["type"], "conversation.deleted", "{last}");
    assert_eq!(last["conversation_id"], id.as_str());
    // Bob's copy is his own.
    let (bobs, _) = gw.sync_all(&bob, 0).await;
    let bobs = serde_json::to_string(&bobs).unwrap();
    assert!(bobs.contains("the secret alice regrets"));
    assert!(bobs.contains("the secret bob answers"));
    conversation_with(&gw, &bob, "@alice").await;
    // Bob writing again starts a new conversation for alice, holding only the new text.
    gw.send(&bob, "@alice", "a fresh start").await;
    let again = conversation_with(&gw, &alice, "@bob").await;
    assert_ne!(again["id"], id.as_str());
    assert_eq!(again["last_message"]["body"], "a fresh start", "{again}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversations_name_archive_and_mute_reach_every_device() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    let tablet = gw.sign_in("alice", "tablet").await;
    let bob = gw.sign_up("bob").await;
    let eve = gw.sign_up("eve").await;
    gw.send(&bob, "@alice", "hello alice").await;
    let conversation = conversation_with(&gw, &alice, "@bob").await;
    let id = conversation["id"].as_str().unwrap().to_owned();
    assert_eq!(conversation["archived"], false, "{conversation}");
    assert_eq!(conversation["name"], Value::Null, "{conversation}");
    let path = format!("/v1/conversations/{id}");
    let patch = |body: Value| {
        gw.call(
            reqwest::Method::PATCH,
            path.as_str(),
            Some(alice.token.as_str()),
            Some(body),
        )
    };

    // Another account's conversation is not found; bad names and shapes are refused.
    let (status, body) = gw
        .call(
            reqwest::Method::PATCH,
            &path,
            Some(&eve.token),
            Some(json!({"archived": true})),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = patch(json!({"name": "x".repeat(101)})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_field", "{body}");
    let (status, body) = patch(json!({"name": "Bob\nfrom work"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = patch(json!({"mute": "always"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = patch(json!({"muted_until": "soon"})).await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = patch(json!({
        "name": "x".repeat(100),
        "archived": true,
        "muted_until": "9999-12-31T23:59:59Z",
    }))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "x".repeat(100), "{body}");
    assert_eq!(body["archived"], true, "{body}");
    assert_eq!(body["muted_until"], "9999-12-31T23:59:59Z", "{body}");
    let (status, body) = patch(json!({"name": "Bob", "muted_until": null})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["archived"], true, "an absent field stays: {body}");
    assert_eq!(body["muted_until"], Value::Null, "{body}");

    // The other device sees it in the list and in the log.
    let listed = conversation_with(&gw, &tablet, "@bob").await;
    assert_eq!(listed["name"], "Bob", "{listed}");
    assert_eq!(listed["archived"], true, "{listed}");
    let (events, _) = gw.sync_all(&tablet, 0).await;
    let last = events.last().unwrap();
    assert_eq!(last["type"], "conversation.updated", "{last}");
    assert_eq!(last["conversation"]["name"], "Bob", "{last}");
    // Bob's copy is his own.
    let bobs = conversation_with(&gw, &bob, "@alice").await;
    assert_eq!(bobs["name"], Value::Null, "{bobs}");
    assert_eq!(bobs["archived"], false, "{bobs}");

    // Bob writing again brings the conversation back from the archive.
    gw.send(&bob, "@alice", "are you there?").await;
    let back = conversation_with(&gw, &alice, "@bob").await;
    assert_eq!(back["archived"], false, "{back}");
    assert_eq!(back["name"], "Bob", "{back}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_senders_texts_reach_no_device_until_unblocked() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    let alice2 = gw.sign_in("alice", "tablet").await;
    let bob = gw.sign_up("bob").await;
    let alice_number = gw.claim_number(&alice, "415").await;
    let outside = "+12025550188";
    let put = |address: &str, body: Value| {
        let path = format!("/v1/contacts/{}", urlencode(address));
        let gw = &gw;
        let token = alice.token.clone();
        async move {
            gw.call(reqwest::Method::PUT, &path, Some(&token), Some(body))
                .await
        }
    };
    for address in ["@bob", outside] {
        let (status, contact) = put(
            address,
            json!({"path": "auto", "fallback": false, "blocked": true}),
        )
        .await;
        assert_eq!(status, 200, "{contact}");
        assert_eq!(contact["blocked"], true);
    }
    // A change that leaves `blocked` out keeps the block.
    let (status, contact) = put("@bob", json!({"path": "cloud", "fallback": false})).await;
    assert_eq!(status, 200, "{contact}");
    assert_eq!(contact["blocked"], true);
    let (_, start) = gw.sync_all(&alice2, 0).await;

    // Bob's side sees a normal delivery; the text from outside is taken as usual.
    let sent = gw.send(&bob, "@alice", "blocked one").await;
    assert_eq!(sent["status"], "delivered");
    let (status, reply) = gw
        .post(
            "/v1/simulator/inbound",
            Some(&alice.token),
            json!({"from": outside, "to": alice_number, "body": "blocked two"}),
        )
        .await;
    assert_eq!(status, 204, "{reply}");
    for device in [&alice, &alice2] {
        let (events, _) = gw.sync_all(device, start).await;
        assert!(created_messages(&events).is_empty(), "{events:?}");
    }
    let (status, page) = gw.get("/v1/conversations", &alice.token).await;
    assert_eq!(status, 200);
    assert_eq!(page["conversations"], json!([]), "{page}");

    // Unblocked: the next text reaches every device.
    let (status, contact) = put(
        "@bob",
        json!({"path": "auto", "fallback": false, "blocked": false}),
    )
    .await;
    assert_eq!(status, 200, "{contact}");
    gw.send(&bob, "@alice", "unblocked").await;
    for device in [&alice, &alice2] {
        let (events, _) = gw.sync_all(device, start).await;
        assert_eq!(bodies(&events), ["unblocked"]);
    }

    // Deleting a contact: 204 and a `contact.deleted` event, then 404.
    let path = format!("/v1/contacts/{}", urlencode(outside));
    let (status, body) = gw
        .call(reqwest::Method::DELETE, &path, Some(&alice.token), None)
        .await;
    assert_eq!(status, 204, "{body}");
    let (events, _) = gw.sync_all(&alice2, start).await;
    assert_eq!(
        event_types(&events).last().map(String::as_str),
        Some("contact.deleted")
    );
    assert_eq!(events.last().unwrap()["address"], outside);
    let (status, body) = gw
        .call(reqwest::Method::DELETE, &path, Some(&alice.token), None)
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "not_found", "{body}");
    gw.stop().await;
}
