//! `POST /v1/messages/record`: texts a device carried over its own modem reach every device.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::TestGateway;
use serde_json::json;

#[tokio::test]
async fn recorded_cellular_texts_reach_every_device_once() {
    let gw = TestGateway::start().await;
    let phone = gw.sign_up("carol").await;
    let tablet = gw.sign_in("carol", "tablet").await;
    let client_id = uuid::Uuid::new_v4();
    let record = json!({
        "direction": "outbound",
        "peer": "(415) 555-0142",
        "body": "Sent over my SIM",
        "client_id": client_id,
        "at": "2026-11-29T06:00:00Z",
    });
    let (status, first) = gw
        .post("/v1/messages/record", Some(&phone.token), record.clone())
        .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["route"], "cellular");
    assert_eq!(first["status"], "sent");
    assert_eq!(first["to"], "+14155550142");
    assert_eq!(first["created_at"], "2026-11-29T06:00:00Z");
    // A retry after a lost reply stores nothing new.
    let (status, again) = gw
        .post("/v1/messages/record", Some(&phone.token), record)
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], first["id"]);

    let (status, inbound) = gw
        .post(
            "/v1/messages/record",
            Some(&phone.token),
            json!({
                "direction": "inbound",
                "peer": "+14155550142",
                "body": "Got it over cellular",
                "client_id": uuid::Uuid::new_v4(),
                "at": "2026-11-29T06:01:00Z",
            }),
        )
        .await;
    assert_eq!(status, 201, "{inbound}");
    assert_eq!(inbound["direction"], "inbound");
    assert_eq!(inbound["status"], "delivered");
    assert_eq!(inbound["conversation_id"], first["conversation_id"]);

    // The other device sees both, once each, in one thread with one unread.
    let (events, _) = gw.sync_all(&tablet, 0).await;
    let created: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "message.created")
        .collect();
    assert_eq!(created.len(), 2);
    let (status, page) = gw.get("/v1/conversations", &tablet.token).await;
    assert_eq!(status, 200);
    assert_eq!(page["conversations"][0]["peer"], "+14155550142");
    assert_eq!(page["conversations"][0]["unread"], 1);
    gw.stop().await;
}

#[tokio::test]
async fn recorded_texts_are_checked() {
    let gw = TestGateway::start().await;
    let phone = gw.sign_up("dave").await;
    let base = json!({
        "direction": "outbound",
        "peer": "+14155550142",
        "body": "hi",
        "client_id": uuid::Uuid::new_v4(),
        "at": "2026-11-29T06:00:00Z",
    });
    let with = |key: &str, value: serde_json::Value| {
        let mut body = base.clone();
        body[key] = value;
        body
    };
    for (body, code) in [
        (with("peer", json!("@someone")), "invalid_address"),
        (with("peer", json!("not a number")), "invalid_address"),
        (with("body", json!("")), "invalid_body"),
        (with("at", json!("2999-01-01T00:00:00Z")), "invalid_field"),
        (with("direction", json!("sideways")), "bad_request"),
        (with("extra", json!(1)), "bad_request"),
    ] {
        let (status, reply) = gw
            .post("/v1/messages/record", Some(&phone.token), body)
            .await;
        assert_eq!(status, 400, "{reply}");
        assert_eq!(reply["code"], code, "{reply}");
    }
    let (status, reply) = gw.post("/v1/messages/record", None, base).await;
    assert_eq!(status, 401, "{reply}");
    gw.stop().await;
}
