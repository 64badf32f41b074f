//! Store-level throughput of in-network delivers (no HTTP): N concurrent senders, each
//! `deliver` writing two copies, two conversation upserts and two events, durable before it
//! returns. Prints messages/s and p50/p99 latency per engine.
//!
//! `cargo bench -p airtext-gateway --bench store_deliver` (PostgreSQL too when
//! `AIRTEXT_TEST_DATABASE_URL` is set; it runs in a fresh schema that is dropped afterwards).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use airtext_api::messages::{Direction, Encoding, Route};
use airtext_api::{AccountId, ClientId, MessageId, SendStatus};
use airtext_gateway::store::{self, Delivery, NewAccount, NewMessage, SharedStore};
use chrono::Utc;
use sqlx::Connection;

const ACCOUNTS: usize = 200;
const RUN: Duration = Duration::from_secs(5);

fn copy(account: AccountId, peer: String, direction: Direction) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        account_id: account,
        peer,
        direction,
        from: "a".into(),
        to: "b".into(),
        body: "hello, this is a benchmark message".into(),
        status: SendStatus::Delivered,
        route: Route::InNetwork,
        client_id: (direction == Direction::Outbound).then(ClientId::new),
        encoding: Encoding::Gsm7,
        segments: 1,
        created_at: Utc::now(),
    }
}

async fn run(label: &str, store: SharedStore, senders: usize) {
    let mut accounts = Vec::new();
    for i in 0..ACCOUNTS {
        let id = AccountId::new();
        store
            .create_account(NewAccount {
                id,
                username: format!("{label}{senders}u{i}"),
                email: None,
                password_hash: "x".into(),
                created_at: Utc::now(),
            })
            .await
            .unwrap();
        accounts.push(id);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..senders {
        let store = store.clone();
        let accounts = accounts.clone();
        tasks.push(tokio::spawn(async move {
            let mut histogram = hdrhistogram::Histogram::<u64>::new(3).unwrap();
            let mut n = 0usize;
            while started.elapsed() < RUN {
                let from = accounts[(s + n) % ACCOUNTS];
                let to = accounts[(s * 7 + n * 13 + 1) % ACCOUNTS];
                let delivery = Delivery {
                    sender: Some(copy(from, format!("@{to}"), Direction::Outbound)),
                    recipient: Some(copy(to, format!("@{from}"), Direction::Inbound)),
                    enqueue: None,
                };
                let t = Instant::now();
                store.deliver(delivery).await.unwrap();
                histogram.record(t.elapsed().as_micros() as u64).unwrap();
                n += 1;
            }
            histogram
        }));
    }
    let mut total = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for task in tasks {
        total.add(task.await.unwrap()).unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{label:8} senders={senders:4}  {:8.0} messages/s  p50={:6.2} ms  p99={:6.2} ms",
        total.len() as f64 / elapsed,
        total.value_at_quantile(0.5) as f64 / 1000.0,
        total.value_at_quantile(0.99) as f64 / 1000.0,
    );
}

#[tokio::main]
async fn main() {
    for senders in [16, 64, 256, 1024] {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let store = store::open(&url).await.unwrap();
        run("sqlite", store.clone(), senders).await;
        store.close().await;
    }
    if let Ok(base) = std::env::var("AIRTEXT_TEST_DATABASE_URL") {
        let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
        let store = store::open(&url).await.unwrap();
        for senders in [16, 64, 256] {
            run("postgres", store.clone(), senders).await;
        }
        store.close().await;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}
