//! A cellular text's delivery report reaches the thread: the running loop takes the modem's
//! reports and moves the text to `delivered`, or to `failed` with the network's reason.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use airtext_api::SendStatus;
use airtext_client::cellular::{DeliveryOutcome, ScriptedCellular};
use airtext_client::events::ClientEvent;
use common::{wait_for, TestGateway};
use tokio_util::sync::CancellationToken;

async fn status_of(
    events: &mut tokio::sync::broadcast::Receiver<ClientEvent>,
    body: &str,
    status: SendStatus,
) -> airtext_client::cache::messages::CachedMessage {
    wait_for(events, Duration::from_secs(120), |e| match e {
        ClientEvent::MessageUpdated { message }
            if message.body == body && message.status == status =>
        {
            Some(message.clone())
        }
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_reports_move_cellular_texts_to_delivered_or_failed() {
    let gw = TestGateway::start().await;
    let modem = ScriptedCellular::new();
    let temp = tempfile::tempdir().unwrap();
    let mut options = common::options(temp.path(), &gw.url);
    options.cellular = Arc::new(modem.clone());
    let phone = airtext_client::Client::open(options).await.unwrap();
    phone
        .sign_up("alice", common::PASSWORD, None, "phone")
        .await
        .unwrap();

    let shutdown = CancellationToken::new();
    let mut events = phone.subscribe();
    let runner = {
        let client = phone.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { client.run(shutdown).await })
    };

    let outside = "+14155550199";
    let sent = phone.send(outside, "did it arrive?", None).await.unwrap();
    assert_eq!(sent.status, SendStatus::Sent);
    assert_eq!(sent.path.map(|p| p.as_str()), Some("cellular"));
    let text = modem.sent()[0].text;
    modem
        .report_delivery(text, DeliveryOutcome::Delivered)
        .await;
    let delivered = status_of(&mut events, "did it arrive?", SendStatus::Delivered).await;
    assert_eq!(delivered.local_id, sent.local_id);

    // A later, contradicting report for the same text changes nothing (one report per text,
    // and status never moves back).
    modem
        .report_delivery(
            text,
            DeliveryOutcome::Failed {
                reason: "late".into(),
            },
        )
        .await;

    phone.send(outside, "and this one?", None).await.unwrap();
    let text = modem.sent()[1].text;
    modem
        .report_delivery(
            text,
            DeliveryOutcome::Failed {
                reason: "the network could not deliver it: not obtainable (status 0x43)".into(),
            },
        )
        .await;
    let failed = status_of(&mut events, "and this one?", SendStatus::Failed).await;
    assert!(
        failed
            .failure_reason
            .as_deref()
            .is_some_and(|r| r.contains("not obtainable")),
        "{failed:?}"
    );

    let thread = phone.messages(outside, 10).await.unwrap();
    let first = thread.iter().find(|m| m.body == "did it arrive?").unwrap();
    assert_eq!(first.status, SendStatus::Delivered);

    shutdown.cancel();
    runner.await.unwrap().unwrap();
}
