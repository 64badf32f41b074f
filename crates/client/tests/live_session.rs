//! The live loop (`Client::run`) follows the client's session: a sign-out and sign-in, or a
//! claimed number, take effect in the running loop without restarting it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use airtext_client::cellular::ScriptedCellular;
use airtext_client::events::ClientEvent;
use common::{wait_for, Device, TestGateway};
use tokio_util::sync::CancellationToken;

async fn online(events: &mut tokio::sync::broadcast::Receiver<ClientEvent>) {
    wait_for(events, Duration::from_secs(120), |e| {
        matches!(e, ClientEvent::ConnectionChanged { online: true, .. }).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_loop_follows_a_sign_out_and_a_sign_in_to_another_account() {
    let gw = TestGateway::start().await;
    let device = Device::sign_up(&gw.url, "alice").await;
    device
        .client
        .create_account("carol", common::PASSWORD, None)
        .await
        .unwrap();
    let bob = Device::sign_up(&gw.url, "bob").await;

    let shutdown = CancellationToken::new();
    let mut events = device.client.subscribe();
    let runner = {
        let client = device.client.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { client.run(shutdown).await })
    };
    online(&mut events).await;

    device.client.sign_out().await.unwrap();
    device
        .client
        .sign_in("carol", common::PASSWORD, "laptop")
        .await
        .unwrap();
    // The same loop connects as carol and shows her texts live.
    online(&mut events).await;
    bob.client.send("@carol", "hi carol", None).await.unwrap();
    let shown = wait_for(&mut events, Duration::from_secs(120), |e| match e {
        ClientEvent::MessageAdded { message } if message.body == "hi carol" => {
            Some(message.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(shown.peer, "@bob");
    assert!(!runner.is_finished(), "the loop kept running");

    shutdown.cancel();
    runner.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_number_is_used_by_the_running_loop_at_once() {
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
    online(&mut events).await;

    let numbers = phone
        .search_numbers(Some("US"), Some("415"), Some(1))
        .await
        .unwrap();
    let number = phone.claim_number(&numbers[0]).await.unwrap();
    // A text over the air after the claim is addressed to the claimed number, not @alice.
    modem.receive("+14155550123", "over the air").await;
    let received = wait_for(&mut events, Duration::from_secs(120), |e| match e {
        ClientEvent::MessageAdded { message } if message.body == "over the air" => {
            Some(message.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(received.to, number);

    shutdown.cancel();
    runner.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_started_signed_out_reports_it() {
    let gw = TestGateway::start().await;
    let device = Device::new(&gw.url).await;
    let result = device.client.run(CancellationToken::new()).await;
    assert!(
        matches!(result, Err(airtext_client::Error::SignedOut)),
        "{result:?}"
    );
}

/// A text another process queued on the same profile (an `airtext send` that exited 3 because
/// the gateway did not take it at once) is sent by the running loop, with no other nudge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_loop_sends_what_another_process_queued() {
    let gw = TestGateway::start().await;
    let device = Device::sign_up(&gw.url, "alice").await;
    let bob = Device::sign_up(&gw.url, "bob").await;
    let shutdown = CancellationToken::new();
    let mut events = device.client.subscribe();
    let runner = {
        let client = device.client.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { client.run(shutdown).await })
    };
    online(&mut events).await;
    // A text from Bob, shown live: the loop has synced and gone back to waiting.
    bob.client
        .send("@alice", "are you there?", None)
        .await
        .unwrap();
    wait_for(&mut events, Duration::from_secs(120), |e| match e {
        ClientEvent::MessageAdded { message } if message.body == "are you there?" => Some(()),
        _ => None,
    })
    .await;

    // The other process: its own client on the same data directory queues a text and quits.
    {
        let other = airtext_client::Client::open(common::options(&device.dir, &gw.url))
            .await
            .unwrap();
        let session = other.session().await.unwrap();
        session
            .queue_text("@bob", "queued by another process", None)
            .await
            .unwrap();
    }

    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        bob.client.sync().await.unwrap();
        if bob.message_count().await == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the running loop never sent the text"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    runner.await.unwrap().unwrap();
}
