//! The router's handling of what carriers report: receipts taken off the channel in batches
//! and stored in one store call, each carrier answered on its own; a receipt that cannot be
//! stored fails alone; texts from phones in the same batch are stored beside them. On SQLite,
//! and on PostgreSQL when `AIRTEXT_TEST_DATABASE_URL` is set (otherwise that half says loudly
//! that it skipped).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use airtext_gateway::carriers::config::RateEntry;
use airtext_gateway::carriers::ingest;
use airtext_gateway::carriers::reports::{report_channel, NotStored};
use airtext_gateway::carriers::{
    Carrier, CarrierAccepted, CarrierError, CarrierReport, OutboundSms, ReceiptStatus,
};
use airtext_gateway::http::AppState;
use airtext_gateway::lcr::RoutedCarrier;
use airtext_gateway::store::InventoryNumber;
use async_trait::async_trait;
use common::*;
use sqlx::Connection;

const WAIT: Duration = Duration::from_secs(10);
const OUTSIDE: &str = "+12025550143";
const PHONE: &str = "+12025550199";

fn receipt(carrier_message_id: &str) -> CarrierReport {
    CarrierReport::Receipt {
        carrier: "simulator".into(),
        carrier_message_id: carrier_message_id.into(),
        status: ReceiptStatus::Delivered,
        reason: None,
    }
}

/// Runs a statement on the gateway's database beside it (to plant what it never writes).
async fn exec(url: &str, sql: &str) {
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query(sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }
}

/// Reads the first column of the first row `sql` returns from the gateway's database.
async fn scalar(url: &str, sql: &str) -> i64 {
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        let value: i64 = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        value
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        let value: i64 = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        value
    }
}

async fn one_bad_receipt_fails_alone(url: String) {
    let gw = TestGateway::start_with(|c| c.database_url = url.clone()).await;
    let alice = gw.sign_up("alice").await;
    let number = gw.claim_number(&alice, "646").await;
    for body in ["one", "two", "three"] {
        gw.send(&alice, OUTSIDE, body).await;
    }
    // The simulator takes them and its own receipts deliver them.
    let outbox = eventually(WAIT, || async {
        let outbox = gw.outbox(&alice, OUTSIDE).await;
        (outbox.len() == 3).then_some(outbox)
    })
    .await;
    let ids: Vec<String> = outbox
        .iter()
        .map(|m| m["carrier_message_id"].as_str().unwrap().to_owned())
        .collect();
    eventually(WAIT, || async {
        let delivered = scalar(
            &url,
            "SELECT count(*) FROM messages WHERE status = 'delivered' AND carrier IS NOT NULL",
        )
        .await;
        (delivered == 3).then_some(())
    })
    .await;
    // A message this version cannot read: applying a receipt to it fails.
    exec(
        &url,
        &format!(
            "UPDATE messages SET status = 'teleported' WHERE carrier_message_id = '{}'",
            ids[1]
        ),
    )
    .await;

    // One batch, as the router takes it off the channel: receipts and a text from a phone.
    let (sink, mut source) = report_channel(16);
    let reports = [
        receipt(&ids[0]),
        receipt(&ids[1]),
        receipt("SMunknown"),
        CarrierReport::Inbound {
            carrier: "simulator".into(),
            from: PHONE.into(),
            to: number.clone(),
            body: "hello from a phone".into(),
        },
        receipt(&ids[2]),
    ];
    let mut answers = Vec::new();
    for report in reports {
        let sink = sink.clone();
        answers.push(tokio::spawn(async move { sink.deliver(report).await }));
        // In this order on the channel.
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut batch = Vec::new();
    while batch.len() < 5 {
        let got = tokio::time::timeout(WAIT, source.recv_many(&mut batch, 16))
            .await
            .expect("the reports arrive");
        assert!(got > 0, "the channel closed");
    }
    ingest::store_report_batch(gw.state(), batch).await;
    let mut results = Vec::new();
    for answer in answers {
        results.push(answer.await.unwrap());
    }
    assert_eq!(results[0], Ok(()));
    assert!(
        matches!(&results[1], Err(NotStored::Failed(_))),
        "{:?}",
        results[1]
    );
    assert_eq!(results[2], Ok(()), "an unknown id is held, not refused");
    assert_eq!(results[3], Ok(()));
    assert_eq!(results[4], Ok(()));
    assert_eq!(
        scalar(
            &url,
            "SELECT count(*) FROM early_receipts WHERE carrier_message_id = 'SMunknown'"
        )
        .await,
        1
    );
    let (events, _) = gw.sync_all(&alice, 0).await;
    assert!(
        bodies(&events).iter().any(|b| b == "hello from a phone"),
        "{events:?}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_receipt_fails_alone_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
    one_bad_receipt_fails_alone(url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_receipt_fails_alone_on_postgres() {
    let Some(pg) =
        postgres_schema("carrier_reports::one_bad_receipt_fails_alone_on_postgres").await
    else {
        return;
    };
    one_bad_receipt_fails_alone(pg.url.clone()).await;
    pg.drop_schema().await;
}

// ----- a receipt that overtakes the record of its send -----

const OUR_DID: &str = "+14155550100";

/// A carrier whose network reports "delivered" before it answers the submit: each send hands
/// the router a receipt for the id it is about to return, and returns only once the router
/// has answered that the receipt is stored.
#[derive(Debug)]
struct Overtaking {
    gateway: Arc<OnceLock<AppState>>,
    next: AtomicU32,
}

#[async_trait]
impl Carrier for Overtaking {
    fn name(&self) -> &str {
        "overtaking"
    }

    fn inventory(&self) -> Vec<InventoryNumber> {
        vec![InventoryNumber {
            number: OUR_DID.to_owned(),
            carrier: "overtaking".to_owned(),
            country: "US".to_owned(),
        }]
    }

    async fn send(&self, _sms: OutboundSms) -> Result<CarrierAccepted, CarrierError> {
        let id = format!("OV{}", self.next.fetch_add(1, Ordering::SeqCst));
        let state = self
            .gateway
            .get()
            .ok_or_else(|| CarrierError::Retryable("not wired yet".into()))?;
        ingest::handle_carrier_report(
            state,
            CarrierReport::Receipt {
                carrier: "overtaking".into(),
                carrier_message_id: id.clone(),
                status: ReceiptStatus::Delivered,
                reason: None,
            },
        )
        .await
        .map_err(|e| CarrierError::Retryable(format!("{e:#}")))?;
        Ok(CarrierAccepted {
            carrier_message_id: id,
        })
    }
}

async fn a_receipt_before_the_submit_response_is_applied(url: String) {
    let wired = Arc::new(OnceLock::new());
    let carrier = Arc::new(Overtaking {
        gateway: wired.clone(),
        next: AtomicU32::new(1),
    });
    let gw = TestGateway::start_with_carriers(
        |c| {
            c.database_url = url.clone();
            c.simulator.enabled = false;
        },
        vec![RoutedCarrier {
            carrier,
            any_sender: false,
            rates: vec![RateEntry {
                prefix: "+".to_owned(),
                cost_per_segment: 0.01,
            }],
        }],
    )
    .await;
    wired.set(gw.state().clone()).unwrap();
    let alice = gw.sign_up("alice").await;
    assert_eq!(gw.claim_number(&alice, "415").await, OUR_DID);
    let sent = gw.send(&alice, OUTSIDE, "overtaken").await;
    let id = sent["id"].as_str().unwrap().to_owned();
    let statuses = eventually(WAIT, || async {
        let (events, _) = gw.sync_all(&alice, 0).await;
        let statuses: Vec<String> = events
            .iter()
            .filter(|e| e["type"] == "message.status" && e["message_id"] == id.as_str())
            .map(|e| e["status"].as_str().unwrap().to_owned())
            .collect();
        statuses
            .contains(&"delivered".to_owned())
            .then_some(statuses)
    })
    .await;
    assert_eq!(statuses, ["sent", "delivered"]);
    assert_eq!(scalar(&url, "SELECT count(*) FROM early_receipts").await, 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_before_the_submit_response_is_applied_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
    a_receipt_before_the_submit_response_is_applied(url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_before_the_submit_response_is_applied_on_postgres() {
    let Some(pg) = postgres_schema(
        "carrier_reports::a_receipt_before_the_submit_response_is_applied_on_postgres",
    )
    .await
    else {
        return;
    };
    a_receipt_before_the_submit_response_is_applied(pg.url.clone()).await;
    pg.drop_schema().await;
}
