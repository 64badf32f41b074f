//! Stories against the real gateway in-process: account A with two devices and account B.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use airtext_api::messages::Direction;
use airtext_api::SendStatus;
use airtext_client::cache::apply::FailAfter;
use airtext_client::events::ClientEvent;
use common::{wait_for, Device, TestGateway};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_from_one_device_shows_live_on_the_other_device_and_the_peer() {
    let gw = TestGateway::start().await;
    let a1 = Device::sign_up(&gw.url, "alice").await;
    let a2 = Device::sign_in(&gw.url, "alice", "tablet").await;
    let b = Device::sign_up(&gw.url, "bob").await;

    let shutdown = CancellationToken::new();
    let mut a2_events = a2.client.subscribe();
    let mut b_events = b.client.subscribe();
    for device in [&a2, &b] {
        let client = device.client.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { client.run(shutdown).await });
    }
    for events in [&mut a2_events, &mut b_events] {
        wait_for(events, Duration::from_secs(120), |e| {
            matches!(e, ClientEvent::ConnectionChanged { online: true, .. }).then_some(())
        })
        .await;
    }

    let sent = a1.client.send("@bob", "hello bob", None).await.unwrap();
    assert_eq!(sent.peer, "@bob");
    assert!(sent.id.is_some(), "sent at once: {sent:?}");
    assert_eq!(sent.path.map(|p| p.as_str()), Some("cloud"));

    let on_a2 = wait_for(&mut a2_events, Duration::from_secs(120), |e| match e {
        ClientEvent::MessageAdded { message } if message.body == "hello bob" => {
            Some(message.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(on_a2.direction, Direction::Outbound);
    assert_eq!(on_a2.client_id, sent.client_id);
    let on_b = wait_for(&mut b_events, Duration::from_secs(120), |e| match e {
        ClientEvent::MessageAdded { message } if message.body == "hello bob" => {
            Some(message.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(on_b.direction, Direction::Inbound);
    assert_eq!(on_b.peer, "@alice");

    // Bob answers; the conversation on B shows unread 0 for his own text, and A1, syncing,
    // holds one copy of its own text (reconciled by client_id) and the answer.
    b.client.send("@alice", "hi alice", None).await.unwrap();
    a1.client.sync().await.unwrap();
    let thread = a1.client.messages("@bob", 10).await.unwrap();
    assert_eq!(
        thread.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["hi alice", "hello bob"]
    );
    assert_eq!(a1.message_count().await, 2);
    let conversations = a1.client.conversations(10).await.unwrap();
    assert_eq!(conversations.len(), 1);
    assert_eq!(conversations[0].unread, 1);
    let found = a1.client.search("hell", 10).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        a1.client.search("bob", 10).await.unwrap().len(),
        2,
        "peers are searchable"
    );

    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_device_catches_up_on_5000_events_and_a_broken_sync_resumes_exactly() {
    let gw = TestGateway::start().await;
    let a1 = Device::sign_up(&gw.url, "alice").await;
    let a2 = Device::sign_in(&gw.url, "alice", "tablet").await;
    let _b = Device::sign_up(&gw.url, "bob").await;

    common::flood(&a1, "@bob", 5000, 32).await;

    // A transaction that breaks halfway through a page leaves nothing behind.
    let broken = a2
        .client
        .session()
        .await
        .unwrap()
        .sync_with(FailAfter(Some(400)))
        .await;
    assert!(broken.is_err());
    assert_eq!(a2.cursor().await, 0);
    assert_eq!(a2.message_count().await, 0);

    let report = a2.client.sync().await.unwrap();
    assert_eq!(report.applied, 5000);
    assert_eq!(a2.message_count().await, 5000);
    // Again: nothing new, nothing changes.
    let again = a2.client.sync().await.unwrap();
    assert_eq!(again.applied, 0);
    assert_eq!(again.cursor, report.cursor);
    assert_eq!(a2.message_count().await, 5000);

    // Applying the same pages again by hand (a cursor lost, say) changes nothing either.
    let session = a2.client.session().await.unwrap();
    let page = session.cloud.sync(0, 1000).await.unwrap();
    let events = page.events.clone();
    let applied = session
        .cache
        .call(move |c| {
            c.execute("UPDATE sync_state SET cursor = 0", [])?;
            airtext_client::cache::apply::apply_page(c, &events, page.next, FailAfter(None), true)
        })
        .await
        .unwrap();
    assert_eq!(applied.applied, 1000);
    assert!(applied
        .changes
        .iter()
        .all(|c| !matches!(c, ClientEvent::MessageAdded { .. })));
    assert_eq!(a2.message_count().await, 5000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_survives_a_restart_and_a_gateway_outage_and_sends_each_text_once() {
    let mut gw = TestGateway::start().await;
    let url = gw.url.clone();
    let mut a1 = Device::sign_up(&url, "alice").await;
    let b = Device::sign_up(&url, "bob").await;

    gw.stop().await;
    for i in 0..3 {
        let queued = a1
            .client
            .send("@bob", &format!("while down {i}"), None)
            .await
            .unwrap();
        assert_eq!(queued.status, SendStatus::Queued);
        assert!(queued.id.is_none());
    }
    let waiting = a1.client.session().await.unwrap().outbox().await.unwrap();
    assert_eq!(waiting.len(), 3);
    assert!(waiting
        .iter()
        .all(|e| e.attempts == 1 && e.last_error.is_some()));
    // Shown at once in the conversation.
    assert_eq!(a1.client.messages("@bob", 10).await.unwrap().len(), 3);

    // The app restarts while the gateway is still down, then the gateway comes back on the
    // same database and port.
    a1.reopen(&url).await;
    assert_eq!(
        a1.client
            .session()
            .await
            .unwrap()
            .outbox()
            .await
            .unwrap()
            .len(),
        3
    );
    gw.restart().await;
    a1.client
        .session()
        .await
        .unwrap()
        .wake_outbox()
        .await
        .unwrap();
    let report = a1.client.flush_outbox().await.unwrap();
    assert_eq!(report.sent, 3, "{report:?}");
    assert_eq!(a1.client.flush_outbox().await.unwrap().sent, 0);

    b.client.sync().await.unwrap();
    let at_b = b.client.messages("@alice", 10).await.unwrap();
    assert_eq!(at_b.len(), 3, "each text exactly once: {at_b:?}");
    a1.client.sync().await.unwrap();
    let at_a = a1.client.messages("@bob", 10).await.unwrap();
    assert_eq!(at_a.len(), 3, "reconciled with the server copies: {at_a:?}");
    assert!(at_a
        .iter()
        .all(|m| m.id.is_some() && m.status == SendStatus::Delivered));

    // A send whose reply was lost is retried with the same client_id: still one message.
    let session = a1.client.session().await.unwrap();
    let first = &at_a[0];
    let again = session
        .cloud
        .send_message(&airtext_api::messages::SendMessage {
            to: "@bob".into(),
            body: first.body.clone(),
            client_id: first.client_id.unwrap(),
        })
        .await
        .unwrap();
    assert_eq!(Some(again.id), first.id);
    b.client.sync().await.unwrap();
    assert_eq!(b.client.messages("@alice", 10).await.unwrap().len(), 3);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_paths_sync_and_cellular_texts_follow_the_policy() {
    use airtext_api::contacts::PathChoice;
    use airtext_client::cellular::{CellularError, ScriptedCellular};
    use std::sync::Arc;

    let gw = TestGateway::start().await;
    let a1 = Device::sign_up(&gw.url, "alice").await;
    // Texting outside phones through the cloud needs a number of one's own.
    let numbers = a1
        .client
        .search_numbers(Some("US"), Some("415"), Some(1))
        .await
        .unwrap();
    a1.client.claim_number(&numbers[0]).await.unwrap();
    // A phone with a modem.
    let modem = ScriptedCellular::new();
    let temp = tempfile::tempdir().unwrap();
    let mut options = common::options(temp.path(), &gw.url);
    options.cellular = Arc::new(modem.clone());
    let phone = airtext_client::Client::open(options).await.unwrap();
    phone
        .sign_in("alice", common::PASSWORD, "phone")
        .await
        .unwrap();

    // An outside number: auto picks the modem.
    let outside = "+14155550199";
    let m = phone.send(outside, "over the air", None).await.unwrap();
    assert_eq!(m.path.map(|p| p.as_str()), Some("cellular"));
    assert_eq!(m.status, SendStatus::Sent);
    assert_eq!(modem.sent().len(), 1);
    // It is recorded at the gateway (`POST /v1/messages/record`) and leaves the outbox, so
    // the account's other devices show it too; the modem is never asked twice.
    phone.flush_outbox().await.unwrap();
    let waiting = phone.session().await.unwrap().outbox().await.unwrap();
    assert!(waiting.is_empty(), "{waiting:?}");
    a1.client.sync().await.unwrap();
    let seen = a1.client.messages(outside, 10).await.unwrap();
    assert!(
        seen.iter()
            .any(|m| m.body == "over the air" && m.route.map(|r| r.as_str()) == Some("cellular")),
        "{seen:?}"
    );
    assert_eq!(modem.sent().len(), 1);

    // The contact set to cloud on one device reaches the other through sync.
    a1.client
        .set_path(outside, PathChoice::Cloud, Some(true), None)
        .await
        .unwrap();
    let report = phone.sync().await.unwrap();
    let session = phone.session().await.unwrap();
    let contact = session
        .cache
        .call(move |c| airtext_client::cache::contacts::get(c, outside))
        .await
        .unwrap();
    assert_eq!(
        contact.map(|c| c.path),
        Some(PathChoice::Cloud),
        "synced: {report:?}"
    );
    let m = phone
        .send(outside, "through the cloud", None)
        .await
        .unwrap();
    assert_eq!(m.path.map(|p| p.as_str()), Some("cloud"));
    assert_eq!(modem.sent().len(), 1);

    // Cellular, failing, with fallback allowed: the cloud takes it.
    a1.client
        .set_path(outside, PathChoice::Cellular, Some(true), None)
        .await
        .unwrap();
    phone.sync().await.unwrap();
    modem.fail_next(CellularError::Unavailable("no signal".into()));
    let m = phone.send(outside, "fell back", None).await.unwrap();
    assert_eq!(m.path.map(|p| p.as_str()), Some("cloud"));
    assert!(m.id.is_some());
}

/// A block and a deletion made on one device reach the account's other device by sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_and_a_contact_deletion_sync_to_the_other_device() {
    let gw = TestGateway::start().await;
    let a1 = Device::sign_up(&gw.url, "alice").await;
    let a2 = Device::sign_in(&gw.url, "alice", "tablet").await;
    let _b = Device::sign_up(&gw.url, "bob").await;

    let blocked = a1.client.block_contact("@Bob", true).await.unwrap();
    assert_eq!(blocked.address, "@bob");
    assert!(blocked.blocked);
    a2.client.sync().await.unwrap();
    let contacts = a2.client.contacts().await.unwrap();
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    assert!(contacts[0].blocked);

    let mut a2_events = a2.client.subscribe();
    assert_eq!(a1.client.delete_contact("@bob").await.unwrap(), "@bob");
    assert!(a1.client.contacts().await.unwrap().is_empty());
    a2.client.sync().await.unwrap();
    assert!(a2.client.contacts().await.unwrap().is_empty());
    // The app hears of it as a change back to the defaults.
    let contact = wait_for(&mut a2_events, Duration::from_secs(10), |e| match e {
        ClientEvent::ContactChanged { contact } if contact.address == "@bob" => {
            Some(contact.clone())
        }
        _ => None,
    })
    .await;
    assert!(!contact.blocked);
    assert_eq!(contact.name, None);
}
