//! Opt-outs through the whole gateway with the simulator as the carrier: an outside phone's
//! STOP / START / HELP (any case, surrounding whitespace) to one of our DIDs, the automatic
//! replies, `403 recipient_opted_out` at send time, and the queue's second check for a STOP
//! that arrives while a text waits.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use airtext_api::{AccountId, MessageId, SendStatus};
use common::{eventually, Device, TestGateway};
use serde_json::{json, Value};

const PHONE: &str = "+12025550143";
const OTHER_PHONE: &str = "+12025550144";
const WAIT: Duration = Duration::from_secs(10);

async fn text_in(gw: &TestGateway, device: &Device, from: &str, to: &str, body: &str) {
    let (status, reply) = gw
        .post(
            "/v1/simulator/inbound",
            Some(&device.token),
            json!({"from": from, "to": to, "body": body}),
        )
        .await;
    assert_eq!(status, 204, "{reply}");
}

async fn try_send(gw: &TestGateway, device: &Device, to: &str, body: &str) -> (u16, Value) {
    gw.post(
        "/v1/messages",
        Some(&device.token),
        json!({"to": to, "body": body, "client_id": uuid::Uuid::new_v4()}),
    )
    .await
}

/// Waits until the outside phone got a text whose body contains `needle`, from `from`.
async fn received(gw: &TestGateway, device: &Device, phone: &str, from: &str, needle: &str) {
    eventually(WAIT, || async {
        gw.outbox(device, phone)
            .await
            .iter()
            .any(|m| m["from"] == from && m["body"].as_str().unwrap_or("").contains(needle))
            .then_some(())
    })
    .await;
}

async fn inbound_bodies(gw: &TestGateway, device: &Device) -> Vec<String> {
    let (events, _) = gw.sync_all(device, 0).await;
    events
        .iter()
        .filter(|e| e["type"] == "message.created")
        .filter(|e| e["message"]["direction"] == "inbound")
        .map(|e| e["message"]["body"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_blocks_start_unblocks_help_answers_in_any_case() {
    let gw = TestGateway::start_with(|c| {
        c.opt_outs.help_reply = "Acme support via Airtext. Reply STOP to opt out.".into();
    })
    .await;
    let alice = gw.sign_up("alice").await;
    let did = gw.claim_number(&alice, "415").await;
    gw.send(&alice, PHONE, "hello").await;

    // Not keywords: ordinary texts, nothing changes.
    for body in ["please stop", "STOP!", "stop it"] {
        text_in(&gw, &alice, PHONE, &did, body).await;
    }
    let (status, reply) = try_send(&gw, &alice, PHONE, "still fine").await;
    assert_eq!(status, 201, "{reply}");

    // STOP, lower case with whitespace: recorded, confirmed, and shown in the thread.
    text_in(&gw, &alice, PHONE, &did, "  stop \r\n").await;
    received(&gw, &alice, PHONE, &did, "unsubscribed").await;
    assert!(inbound_bodies(&gw, &alice)
        .await
        .contains(&"  stop \r\n".to_owned()));
    let (status, reply) = try_send(&gw, &alice, PHONE, "are you there?").await;
    assert_eq!(
        (status, reply["code"].as_str()),
        (403, Some("recipient_opted_out")),
        "{reply}"
    );
    let words = reply["message"].as_str().unwrap();
    assert!(words.contains("STOP") && words.contains(PHONE), "{words}");
    // Only that pair: another phone is still reachable.
    let (status, _) = try_send(&gw, &alice, OTHER_PHONE, "hi").await;
    assert_eq!(status, 201);

    // Other STOP words count too, and repeating is harmless.
    text_in(&gw, &alice, PHONE, &did, "Unsubscribe").await;
    let (status, _) = try_send(&gw, &alice, PHONE, "?").await;
    assert_eq!(status, 403);

    // HELP (and INFO) get the configured answer, opted out or not.
    text_in(&gw, &alice, PHONE, &did, "\tHeLp").await;
    received(&gw, &alice, PHONE, &did, "Acme support via Airtext").await;

    // START clears it, with a confirmation.
    text_in(&gw, &alice, PHONE, &did, " Start ").await;
    received(&gw, &alice, PHONE, &did, "resubscribed").await;
    let (status, reply) = try_send(&gw, &alice, PHONE, "welcome back").await;
    assert_eq!(status, 201, "{reply}");
    received(&gw, &alice, PHONE, &did, "welcome back").await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_arrives_while_a_text_waits_fails_that_text() {
    let gw = TestGateway::start().await;
    let alice = gw.sign_up("alice").await;
    let did = gw.claim_number(&alice, "415").await;

    // No carrier for a while: the text waits in the queue.
    let gw = gw.restart_with(|c| c.simulator.enabled = false).await;
    let (status, sent) = try_send(&gw, &alice, PHONE, "waiting").await;
    assert_eq!(status, 201, "{sent}");
    // The STOP reaches us meanwhile (through another node, or a carrier webhook).
    gw.state()
        .store
        .set_opt_out(&did, PHONE, true, chrono::Utc::now())
        .await
        .unwrap();

    let gw = gw.restart_with(|c| c.simulator.enabled = true).await;
    let account: AccountId = alice.account_id.parse().unwrap();
    let id: MessageId = sent["id"].as_str().unwrap().parse().unwrap();
    let failed = eventually(WAIT, || async {
        let m = gw
            .state()
            .store
            .message(account, id)
            .await
            .unwrap()
            .unwrap();
        (m.status == SendStatus::Failed).then_some(m)
    })
    .await;
    let reason = failed.failure_reason.unwrap();
    assert!(reason.contains("replied STOP"), "{reason}");
    assert!(
        gw.outbox(&alice, PHONE)
            .await
            .iter()
            .all(|m| m["body"] != "waiting"),
        "an opted-out text never leaves"
    );
    gw.stop().await;
}
