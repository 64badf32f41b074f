//! Scale-out: several gateway nodes on one PostgreSQL. Live push crosses nodes through
//! `LISTEN/NOTIFY` (and survives a lost listener connection), and the outbound queue is shared:
//! every text reaches the carrier exactly once, whichever node accepted it.
//!
//! Runs only with `AIRTEXT_TEST_DATABASE_URL`; otherwise each test prints a loud `SKIPPED` line.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airtext_api::SendStatus;
use airtext_gateway::carriers::{Carrier, CarrierAccepted, CarrierError, OutboundSms};
use airtext_gateway::config::{Config, Rate};
use airtext_gateway::lcr::RoutedCarrier;
use airtext_gateway::store::postgres::LISTENER_APPLICATION_NAME;
use airtext_gateway::store::InventoryNumber;
use async_trait::async_trait;
use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);
const OUR_DID: &str = "+14155550100";
const OUTSIDE: &str = "+12025550143";

fn node_config(c: &mut Config, url: &str) {
    c.database_url = url.to_owned();
    c.rate_limits.send = Rate {
        per_minute: 1_000_000,
        burst: 100_000,
    };
}

async fn node(url: &str) -> TestGateway {
    TestGateway::start_with(|c| node_config(c, url)).await
}

/// Follows `stream` (pulling `/v1/sync` on `gw` after each hint) until a message with `body`
/// is among the events; returns the new cursor.
async fn receives(
    gw: &TestGateway,
    device: &Device,
    stream: &mut HintStream,
    cursor: i64,
    body: &str,
) -> i64 {
    let (_, cursor) = gw
        .follow(device, stream, cursor, WAIT, |events| {
            bodies(events).iter().any(|b| b == body)
        })
        .await;
    cursor
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sends_through_either_node_reach_every_device_live() {
    let Some(db) =
        postgres_schema("scale_out::sends_through_either_node_reach_every_device_live").await
    else {
        return;
    };
    let n1 = node(&db.url).await;
    let n2 = node(&db.url).await;

    let a1 = n1.sign_up("alice").await;
    let a2 = n2.sign_in("alice", "second").await;
    let b = n2.sign_up("bob").await;

    let mut s_a1 = n1.stream(&a1).await;
    let mut s_a2 = n2.stream(&a2).await;
    let mut s_b = n2.stream(&b).await;
    let (mut c_a1, mut c_a2, mut c_b) = (0, 0, 0);

    // Through node 1: A1's stream is on node 1, A2's and B's on node 2.
    n1.send(&a1, "@bob", "from node 1").await;
    c_b = receives(&n2, &b, &mut s_b, c_b, "from node 1").await;
    c_a2 = receives(&n2, &a2, &mut s_a2, c_a2, "from node 1").await;
    c_a1 = receives(&n1, &a1, &mut s_a1, c_a1, "from node 1").await;

    // Through node 2, to the account whose streams are on both nodes.
    n2.send(&b, "@alice", "from node 2").await;
    c_a1 = receives(&n1, &a1, &mut s_a1, c_a1, "from node 2").await;
    c_a2 = receives(&n2, &a2, &mut s_a2, c_a2, "from node 2").await;
    c_b = receives(&n2, &b, &mut s_b, c_b, "from node 2").await;

    // A2 writes on node 2 and syncs on node 1: the same log, whichever node answers.
    n2.send(&a2, "@bob", "a2 via node 2").await;
    c_a1 = receives(&n1, &a1, &mut s_a1, c_a1, "a2 via node 2").await;
    let _ = receives(&n2, &b, &mut s_b, c_b, "a2 via node 2").await;
    let (_, on_node_1) = n1.sync_all(&a2, 0).await;
    let (_, on_node_2) = n2.sync_all(&a2, 0).await;
    assert_eq!(on_node_1, on_node_2, "both nodes serve one log");
    assert!(c_a1 <= on_node_1 && c_a2 <= on_node_1);

    s_a1.close().await;
    s_a2.close().await;
    s_b.close().await;
    n1.stop().await;
    n2.stop().await;
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_listener_reconnects_and_streams_pull_again() {
    let Some(db) =
        postgres_schema("scale_out::a_lost_listener_reconnects_and_streams_pull_again").await
    else {
        return;
    };
    let n1 = node(&db.url).await;
    let n2 = node(&db.url).await;
    let a1 = n1.sign_up("alice").await;
    let b = n2.sign_up("bob").await;
    let mut s_a1 = n1.stream(&a1).await;
    let mut cursor = 0;
    n2.send(&b, "@alice", "before").await;
    cursor = receives(&n1, &a1, &mut s_a1, cursor, "before").await;

    let mut resyncs = n1
        .state()
        .store
        .resyncs()
        .expect("PostgreSQL announces resyncs");
    let seen = *resyncs.borrow_and_update();
    // Cut every gateway listener connection (other tests' nodes just resync too).
    let cut = db
        .exec_base(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = '{LISTENER_APPLICATION_NAME}'"
        ))
        .await;
    assert!(cut >= 2, "both nodes' listeners were found ({cut})");
    // A text while node 1 may not be listening: its NOTIFY can be lost; the resync after
    // the reconnection makes node 1's streams pull anyway.
    n2.send(&b, "@alice", "during").await;
    tokio::time::timeout(WAIT, resyncs.changed())
        .await
        .expect("the listener reconnected and asked for a resync")
        .unwrap();
    assert!(*resyncs.borrow() > seen);
    cursor = receives(&n1, &a1, &mut s_a1, cursor, "during").await;

    // And the new listener carries live hints again.
    n2.send(&b, "@alice", "after").await;
    let _ = receives(&n1, &a1, &mut s_a1, cursor, "after").await;

    s_a1.close().await;
    n1.stop().await;
    n2.stop().await;
    db.drop_schema().await;
}

/// A carrier shared by two in-process nodes; remembers which node submitted each body.
#[derive(Debug)]
struct Counting {
    node: usize,
    submits: Arc<Mutex<Vec<(usize, String)>>>,
}

#[async_trait]
impl Carrier for Counting {
    fn name(&self) -> &str {
        "shared"
    }

    fn inventory(&self) -> Vec<InventoryNumber> {
        vec![InventoryNumber {
            number: OUR_DID.to_owned(),
            carrier: "shared".to_owned(),
            country: "US".to_owned(),
        }]
    }

    async fn send(&self, sms: OutboundSms) -> Result<CarrierAccepted, CarrierError> {
        // Slow enough that both workers have work in hand at once.
        tokio::time::sleep(Duration::from_millis(3)).await;
        let mut submits = self.submits.lock().unwrap();
        submits.push((self.node, sms.body.clone()));
        Ok(CarrierAccepted {
            carrier_message_id: format!("shared-{}", submits.len()),
        })
    }
}

async fn carrier_node(
    url: &str,
    node: usize,
    submits: &Arc<Mutex<Vec<(usize, String)>>>,
) -> TestGateway {
    let carrier = Arc::new(Counting {
        node,
        submits: submits.clone(),
    });
    TestGateway::start_with_carriers(
        |c| {
            node_config(c, url);
            c.simulator.enabled = false;
        },
        vec![RoutedCarrier {
            carrier,
            any_sender: false,
            rates: vec![airtext_gateway::carriers::config::RateEntry {
                prefix: "+".to_owned(),
                cost_per_segment: 0.01,
            }],
        }],
    )
    .await
}

/// Sends as a client does: a 503 (a node too busy to take it now) is sent again with the same
/// `client_id` until it is taken, so a loaded machine slows the test down instead of failing
/// it, and a text accepted twice would still be stored once.
async fn send_until_taken(gw: &TestGateway, device: &Device, to: &str, body: &str) -> Value {
    let request = serde_json::json!({"to": to, "body": body, "client_id": uuid::Uuid::new_v4()});
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (status, reply) = gw
            .post("/v1/messages", Some(&device.token), request.clone())
            .await;
        match status {
            201 | 200 => return reply,
            503 if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => panic!("send to {to}: {status} {reply}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_the_queue_and_submit_each_text_once() {
    let Some(db) =
        postgres_schema("scale_out::two_nodes_share_the_queue_and_submit_each_text_once").await
    else {
        return;
    };
    let submits = Arc::new(Mutex::new(Vec::new()));
    let n1 = carrier_node(&db.url, 1, &submits).await;
    let n2 = carrier_node(&db.url, 2, &submits).await;
    let alice = n1.sign_up("alice").await;
    assert_eq!(n1.claim_number(&alice, "415").await, OUR_DID);

    const TEXTS: usize = 200;
    let sends = (0..TEXTS).map(|i| {
        let (n1, n2, alice) = (&n1, &n2, &alice);
        async move {
            let gw = if i % 2 == 0 { n1 } else { n2 };
            send_until_taken(gw, alice, OUTSIDE, &format!("text {i}")).await
        }
    });
    let sent: Vec<Value> = futures::future::join_all(sends).await;
    assert_eq!(sent.len(), TEXTS);

    // Every text reaches the carrier, once.
    eventually(WAIT * 2, || async {
        (submits.lock().unwrap().len() >= TEXTS).then_some(())
    })
    .await;
    // Give a duplicate the chance to show up before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let submits = submits.lock().unwrap().clone();
    let mut per_body: HashMap<&str, usize> = HashMap::new();
    let mut per_node = [0usize; 3];
    for (node, body) in &submits {
        *per_body.entry(body.as_str()).or_default() += 1;
        per_node[*node] += 1;
    }
    assert_eq!(submits.len(), TEXTS, "no text submitted twice");
    assert_eq!(per_body.len(), TEXTS);
    assert!(per_body.values().all(|&n| n == 1));
    println!(
        "submits by node 1: {}, by node 2: {}",
        per_node[1], per_node[2]
    );

    // And every text is recorded as sent, as seen from either node.
    let account: airtext_api::AccountId = alice.account_id.parse().unwrap();
    for (i, message) in sent.iter().enumerate() {
        let id: airtext_api::MessageId = message["id"].as_str().unwrap().parse().unwrap();
        let gw = if i % 2 == 0 { &n2 } else { &n1 };
        let stored = eventually(WAIT, || async {
            let m = gw.state().store.message(account, id).await.unwrap()?;
            (m.status != SendStatus::Queued).then_some(m)
        })
        .await;
        assert_eq!(stored.status, SendStatus::Sent, "{stored:?}");
    }

    n1.stop().await;
    n2.stop().await;
    db.drop_schema().await;
}
