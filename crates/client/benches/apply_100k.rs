//! The local half of `sync_100k` alone: 100,000 `message.created` events applied to a new
//! cache in pages of 1,000, change events included, without a gateway (quick to repeat while
//! working on the apply path). Run: `cargo bench -p airtext-client --bench apply_100k`
//! (AIRTEXT_BENCH_MESSAGES=N for another size).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use airtext_api::messages::{Direction, Encoding, Message, Route};
use airtext_api::sync::{EventKind, SyncEvent};
use airtext_api::{ClientId, ConversationId, MessageId, SendStatus};
use airtext_client::cache::apply::{apply_page, FailAfter};
use airtext_client::cache::{messages, Cache};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    let n: i64 = std::env::var("AIRTEXT_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("apply.sqlite3"))
        .await
        .unwrap();
    let conversation = ConversationId(uuid::Uuid::now_v7());
    let start = chrono::Utc::now();
    let pages: Vec<Vec<SyncEvent>> = (0..n)
        .map(|i| {
            let at = start + chrono::Duration::milliseconds(i);
            SyncEvent {
                seq: i + 1,
                at,
                kind: EventKind::MessageCreated {
                    message: Message {
                        id: MessageId(uuid::Uuid::now_v7()),
                        conversation_id: conversation,
                        direction: Direction::Outbound,
                        from: "@alice".to_owned(),
                        to: "@bob".to_owned(),
                        body: format!("message {i}: see you at the station at {} o'clock", i % 12),
                        status: SendStatus::Delivered,
                        route: Route::InNetwork,
                        client_id: Some(ClientId::new()),
                        encoding: Encoding::Gsm7,
                        segments: 1,
                        failure_reason: None,
                        created_at: at,
                        updated_at: at,
                    },
                },
            }
        })
        .collect::<Vec<_>>()
        .chunks(1000)
        .map(<[SyncEvent]>::to_vec)
        .collect();
    let started = Instant::now();
    let mut changes = 0;
    for page in pages {
        let next = page.last().map_or(0, |e| e.seq);
        let applied = cache
            .call(move |c| apply_page(c, &page, next, FailAfter::default(), true))
            .await
            .unwrap();
        changes += applied.changes.len();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let count = cache.call(|c| messages::count(c)).await.unwrap();
    assert_eq!(count, n);
    println!(
        "apply_100k: {n} messages applied in {elapsed:.2} s ({:.1} µs/message, {changes} change events)",
        elapsed * 1e6 / n as f64
    );
}
