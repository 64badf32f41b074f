//! Texts to and from phones outside Airtext, through the simulator carrier: the outbound
//! queue, receipts that only move status forward, failures with reasons, retries, inbound
//! texts and the simulator's own endpoints.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use airtext_gateway::carriers::ingest;
use airtext_gateway::carriers::simulator::{FLAKY_DESTINATION, INVALID_DESTINATION};
use airtext_gateway::carriers::{CarrierReport, ReceiptStatus};
use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);
const OUTSIDE: &str = "+12025550143";

/// The statuses the `message.status` events gave one message, in order.
fn statuses(events: &[Value], id: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "message.status" && e["message_id"] == id)
        .map(|e| e["status"].as_str().unwrap().to_owned())
        .collect()
}

async fn message(gw: &TestGateway, device: &Device, sent: &Value) -> Value {
    let conversation = sent["conversation_id"].as_str().unwrap();
    let (status, page) = gw
        .get(
            &format!("/v1/conversations/{conversation}/messages?limit=200"),
            &device.token,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == sent["id"])
        .cloned()
        .expect("the message is in its conversation")
}

async fn wait_for_status(gw: &TestGateway, device: &Device, sent: &Value, status: &str) -> Value {
    eventually(WAIT, || async {
        let m = message(gw, device, sent).await;
        (m["status"] == status).then_some(m)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_to_an_outside_phone_is_carried_and_receipted_forward_only() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    let alice2 = gw.sign_in("alice", "tablet").await;
    let number = gw.claim_number(&alice, "646").await;
    let mut alice2_stream = gw.stream(&alice2).await;
    let cursor = alice2_stream.hint(WAIT).await;

    let sent = gw.send(&alice, "(202) 555-0143", "hello outside").await;
    assert_eq!(sent["status"], "queued");
    assert_eq!(sent["route"], "carrier");
    assert_eq!(sent["from"], number.as_str());
    assert_eq!(sent["to"], OUTSIDE);
    let id = sent["id"].as_str().unwrap().to_owned();

    // The other device follows it through queued → sent → delivered.
    let (events, cursor) = gw
        .follow(&alice2, &mut alice2_stream, cursor, WAIT, |e| {
            statuses(e, &id).last().map(String::as_str) == Some("delivered")
        })
        .await;
    assert_eq!(created_messages(&events)[0]["status"], "queued");
    assert_eq!(statuses(&events, &id), ["sent", "delivered"]);

    let outbox = gw.outbox(&alice, OUTSIDE).await;
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    assert_eq!(outbox[0]["from"], number.as_str());
    assert_eq!(outbox[0]["body"], "hello outside");
    assert_eq!(outbox[0]["channel"], "sms");

    // Stale and repeated receipts change nothing and append nothing.
    let state = &gw.gateway.as_ref().unwrap().state;
    let carrier_id = outbox[0]["carrier_message_id"].as_str().unwrap().to_owned();
    for status in [
        ReceiptStatus::Sent,
        ReceiptStatus::Delivered,
        ReceiptStatus::Failed,
    ] {
        ingest::handle_carrier_report(
            state,
            CarrierReport::Receipt {
                carrier: "simulator".into(),
                carrier_message_id: carrier_id.clone(),
                status,
                reason: Some("late".into()),
            },
        )
        .await
        .unwrap();
    }
    ingest::handle_carrier_report(
        state,
        CarrierReport::Receipt {
            carrier: "simulator".into(),
            carrier_message_id: "SMunknown".into(),
            status: ReceiptStatus::Delivered,
            reason: None,
        },
    )
    .await
    .unwrap();
    let m = message(&gw, &alice, &sent).await;
    assert_eq!(m["status"], "delivered");
    assert_eq!(m["failure_reason"], Value::Null);
    let (later, _) = gw.sync_all(&alice, cursor).await;
    assert!(statuses(&later, &id).is_empty(), "{later:?}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_destination_fails_with_the_carriers_reason() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    gw.claim_number(&alice, "415").await;
    let sent = gw.send(&alice, INVALID_DESTINATION, "nobody home").await;
    let failed = wait_for_status(&gw, &alice, &sent, "failed").await;
    let reason = failed["failure_reason"].as_str().unwrap();
    assert!(reason.contains("invalid destination"), "{reason}");
    let (events, _) = gw.sync_all(&alice, 0).await;
    let id = sent["id"].as_str().unwrap();
    assert_eq!(statuses(&events, id), ["failed"]);
    let event = events
        .iter()
        .find(|e| e["type"] == "message.status")
        .unwrap();
    assert!(event["failure_reason"]
        .as_str()
        .unwrap()
        .contains("invalid destination"));
    assert!(gw.outbox(&alice, INVALID_DESTINATION).await.is_empty());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_failure_is_retried_until_it_goes() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    gw.claim_number(&alice, "415").await;
    let sent = gw
        .send(&alice, FLAKY_DESTINATION, "second time lucky")
        .await;
    wait_for_status(&gw, &alice, &sent, "delivered").await;
    assert_eq!(gw.outbox(&alice, FLAKY_DESTINATION).await.len(), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_phones_text_in_and_short_codes_are_reached() {
    let gw =
        TestGateway::start_with(|c| c.simulator.auto_reply = Some("auto: got it".into())).await;
    let alice = gw.sign_up("alice").await;
    let bob = gw.sign_up("bob").await;
    let number = gw.claim_number(&alice, "415").await;

    let inbound = |from: &str, to: &str, body: &str| json!({"from": from, "to": to, "body": body});
    let (status, body) = gw
        .post(
            "/v1/simulator/inbound",
            Some(&bob.token),
            inbound("(202) 555-0143", &number, "hi from outside"),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (events, _) = gw.sync_all(&alice, 0).await;
    let received = created_messages(&events);
    assert_eq!(received.len(), 1, "{events:?}");
    assert_eq!(received[0]["direction"], "inbound");
    assert_eq!(received[0]["from"], OUTSIDE);
    assert_eq!(received[0]["to"], number.as_str());
    assert_eq!(received[0]["route"], "carrier");
    assert_eq!(received[0]["body"], "hi from outside");

    // Alice answers: same thread; the virtual phone's auto-reply comes back into it.
    let reply = gw.send(&alice, OUTSIDE, "hi back").await;
    assert_eq!(reply["conversation_id"], received[0]["conversation_id"]);
    let answer = eventually(WAIT, || async {
        let (events, _) = gw.sync_all(&alice, 0).await;
        created_messages(&events)
            .into_iter()
            .find(|m| m["body"] == "auto: got it")
    })
    .await;
    assert_eq!(answer["conversation_id"], received[0]["conversation_id"]);
    assert_eq!(answer["from"], OUTSIDE);

    // A short code is an outside address like any other.
    gw.send(&alice, "12345", "STOP").await;
    eventually(WAIT, || async {
        (gw.outbox(&alice, "12345").await.len() == 1).then_some(())
    })
    .await;

    // Refusals.
    for (request, status, code) in [
        (inbound(OUTSIDE, "+12025550199", "x"), 404, "not_found"),
        (inbound(OUTSIDE, "@alice", "x"), 404, "not_found"),
        (inbound("nonsense", &number, "x"), 400, "invalid_address"),
        (inbound("@bob", &number, "x"), 400, "invalid_address"),
        (inbound(OUTSIDE, &number, ""), 400, "invalid_body"),
    ] {
        let (got, body) = gw
            .post("/v1/simulator/inbound", Some(&bob.token), request.clone())
            .await;
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{request}: {body}"
        );
    }
    let (status, _) = gw
        .post(
            "/v1/simulator/inbound",
            None,
            inbound(OUTSIDE, &number, "x"),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = gw
        .get("/v1/simulator/outbox?to=garbage!", &alice.token)
        .await;
    assert_eq!(status, 400);

    // A carrier's inbound text for a number nobody owns is dropped without error.
    let state = &gw.gateway.as_ref().unwrap().state;
    ingest::handle_carrier_report(
        state,
        CarrierReport::Inbound {
            carrier: "simulator".into(),
            from: OUTSIDE.into(),
            to: "+12025550199".into(),
            body: "lost".into(),
        },
    )
    .await
    .unwrap();
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_simulator_its_endpoints_are_not_found() {
    let gw = TestGateway::start_with(|c| c.simulator.enabled = false).await;
    let alice = gw.sign_up("alice").await;
    let (status, body) = gw.get("/v1/simulator/outbox", &alice.token).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (status, _) = gw
        .post(
            "/v1/simulator/inbound",
            Some(&alice.token),
            json!({"from": OUTSIDE, "to": "+14155550100", "body": "x"}),
        )
        .await;
    assert_eq!(status, 404);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_text_survives_a_restart_and_goes_when_a_carrier_is_back() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    let number = gw.claim_number(&alice, "415").await;

    // No carrier: the text is accepted and waits in the queue.
    let gw = gw.restart_with(|c| c.simulator.enabled = false).await;
    let sent = gw.send(&alice, OUTSIDE, "patience").await;
    assert_eq!(sent["status"], "queued");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(message(&gw, &alice, &sent).await["status"], "queued");

    // The carrier is back after a restart: the text goes out, exactly once.
    let gw = gw.restart_with(|c| c.simulator.enabled = true).await;
    wait_for_status(&gw, &alice, &sent, "delivered").await;
    let outbox = gw.outbox(&alice, OUTSIDE).await;
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    assert_eq!(outbox[0]["from"], number.as_str());
    assert_eq!(outbox[0]["body"], "patience");
    gw.stop().await;
}

/// Until the worker's first claim has found the store caught up, texts are stored for a claim
/// (a restart may have left texts that they must not overtake); after it, they are handed to
/// the worker in memory, and still go out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_are_handed_over_once_the_first_claim_finds_the_store_caught_up() {
    let gw = TestGateway::start().await;
    let queue = gw.gateway.as_ref().unwrap().state.queue.clone();
    eventually(WAIT, || async { queue.hands_over().then_some(()) }).await;
    let alice = gw.sign_up("alice").await;
    gw.claim_number(&alice, "646").await;
    let sent = gw.send(&alice, OUTSIDE, "handed over").await;
    assert_eq!(sent["status"], "queued");
    wait_for_status(&gw, &alice, &sent, "delivered").await;
    assert!(queue.hands_over());
    gw.stop().await;
}

/// 911, 112 and the other emergency numbers are refused, however typed, with a message that
/// sends the user to a phone: nothing is stored, nothing reaches a carrier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_numbers_are_refused_with_a_pointer_to_a_phone() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    let newcomer = gw.sign_up("newcomer").await;
    gw.claim_number(&alice, "415").await;
    for (device, to) in [
        (&alice, "911"),
        (&alice, "112"),
        (&alice, "9-1-1"),
        (&alice, " 999 "),
        (&alice, "000"),
        (&alice, "(1 1 0)"),
        (&alice, "17"),
        // Without a number of its own, the account hears about the emergency number first.
        (&newcomer, "911"),
    ] {
        let (status, body) = gw
            .post(
                "/v1/messages",
                Some(&device.token),
                json!({"to": to, "body": "help", "client_id": uuid::Uuid::new_v4()}),
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("emergency_number")),
            "{to}: {body}"
        );
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("call or text them from a phone"),
            "{message}"
        );
    }
    // A verification code is not texted there either.
    let (status, body) = gw
        .post(
            "/v1/identities",
            Some(&alice.token),
            json!({"kind": "phone", "value": "112"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, outbox) = gw.get("/v1/simulator/outbox", &alice.token).await;
    assert_eq!(status, 200);
    assert_eq!(outbox["messages"], json!([]), "nothing reached a carrier");
    let (_, conversations) = gw.get("/v1/conversations", &alice.token).await;
    assert_eq!(conversations["conversations"], json!([]), "nothing stored");
    // A short code that is no emergency number still goes.
    gw.send(&alice, "12345", "hi").await;
    gw.stop().await;
}
