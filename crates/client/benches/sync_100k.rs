//! A new device syncing 100,000 messages from a real gateway (in-process, SQLite).
//! Target: ≤ 3 s. Run: `cargo bench -p airtext-client --bench sync_100k`
//! (AIRTEXT_BENCH_MESSAGES=N for another size).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::field_reassign_with_default
)]

use std::time::Instant;

use airtext_client::{Client, ClientOptions};
use airtext_gateway::config::{Config, Rate};
use airtext_gateway::Gateway;
use futures::StreamExt;

const PASSWORD: &str = "correct horse battery";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

async fn device(url: &str) -> (Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut options = ClientOptions::new(dir.path()).unwrap();
    options.gateway = Some(url.to_owned());
    (Client::open(options).await.unwrap(), dir)
}

async fn bench() {
    let n: usize = std::env::var("AIRTEXT_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.database_url = format!("sqlite://{}", dir.path().join("gateway.db").display());
    let lots = Rate {
        per_minute: 100_000_000,
        burst: 10_000_000,
    };
    config.rate_limits.send = lots;
    config.rate_limits.sign_in = lots;
    let gateway = Gateway::start(config).await.unwrap();
    let url = gateway.url();

    let (alice, _a) = device(&url).await;
    alice.sign_up("alice", PASSWORD, None, "a1").await.unwrap();
    let (bob, _b) = device(&url).await;
    bob.sign_up("bob", PASSWORD, None, "b").await.unwrap();

    let started = Instant::now();
    let cloud = alice.session().await.unwrap().cloud.clone();
    futures::stream::iter(0..n)
        .map(|i| {
            let cloud = cloud.clone();
            async move {
                cloud
                    .send_message(&airtext_api::messages::SendMessage {
                        to: "@bob".into(),
                        body: format!("message {i}: see you at the station at {} o'clock", i % 12),
                        client_id: airtext_api::ClientId::new(),
                    })
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    eprintln!(
        "setup: {n} messages sent in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let (fresh, _c) = device(&url).await;
    fresh
        .sign_in("alice", PASSWORD, "new device")
        .await
        .unwrap();
    // How much of it is the gateway and the wire: the same pages fetched and decoded only.
    let cloud = fresh.session().await.unwrap().cloud.clone();
    let started = Instant::now();
    let mut after = 0;
    loop {
        let page = cloud.sync(after, airtext_client::sync::PAGE).await.unwrap();
        after = page.next;
        if !page.more {
            break;
        }
    }
    let fetch_only = started.elapsed().as_secs_f64();
    println!("sync_100k: fetching and decoding the pages alone takes {fetch_only:.2} s");
    // A listening UI (the app always has one) makes the engine report every change.
    let mut events = fresh.subscribe();
    tokio::spawn(async move { while events.recv().await.is_ok() {} });
    let started = Instant::now();
    let report = fresh.sync().await.unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(report.applied, n as u64);
    let rate = n as f64 / elapsed;
    println!(
        "sync_100k: a new device synced {n} messages in {elapsed:.2} s ({rate:.0} messages/s); target ≤ 3 s: {}",
        if elapsed <= 3.0 { "met" } else { "MISSED" }
    );
    gateway.shutdown().await.unwrap();
}
