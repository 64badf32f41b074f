//! Search latency (`MessageStore::search_messages`, what `GET /v1/search` runs) on a store
//! filled with many messages: prints the fill rate, then p50/p95/p99 of searches for one and
//! two words (common, rare and prefixes) in one account's messages. The target is p95 ≤ 50 ms
//! with 1M messages.
//!
//! `cargo bench -p airtext-gateway --bench search` (SQLite). Environment:
//! `AIRTEXT_BENCH_MESSAGES` (default 1,000,000), `AIRTEXT_BENCH_ACCOUNTS` (how many accounts
//! share them, default 10), `AIRTEXT_BENCH_SEARCHES` (default 2,000), and
//! `AIRTEXT_TEST_DATABASE_URL` to run on PostgreSQL too (a fresh schema, dropped afterwards).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Instant;

use airtext_api::messages::{Direction, Encoding, Route};
use airtext_api::{AccountId, MessageId, SendStatus};
use airtext_gateway::store::{self, rules, Delivery, NewAccount, NewMessage, SharedStore};
use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::Connection;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A vocabulary whose words are drawn with a Zipf-like skew, as in real text: a few words in
/// most messages, most words in few.
struct Words {
    words: Vec<String>,
}

impl Words {
    fn new(rng: &mut StdRng) -> Words {
        let syllables = [
            "ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "pe", "da", "zu", "ri",
        ];
        let mut words = Vec::new();
        while words.len() < 20_000 {
            let n = rng.gen_range(1..=4);
            let word: String = (0..n)
                .map(|_| syllables[rng.gen_range(0..syllables.len())])
                .collect();
            if !words.contains(&word) {
                words.push(word);
            }
        }
        Words { words }
    }

    /// Rank drawn ~ 1/r.
    fn pick(&self, rng: &mut StdRng) -> &str {
        let max = self.words.len() as f64;
        let rank = (max.powf(rng.gen::<f64>()) - 1.0) as usize;
        &self.words[rank.min(self.words.len() - 1)]
    }

    fn body(&self, rng: &mut StdRng) -> String {
        let n = rng.gen_range(4..=16);
        (0..n).map(|_| self.pick(rng)).collect::<Vec<_>>().join(" ")
    }
}

fn text(to: AccountId, body: String) -> Delivery {
    Delivery {
        sender: None,
        recipient: Some(NewMessage {
            id: MessageId::new(),
            account_id: to,
            peer: "+12065550111".into(),
            direction: Direction::Inbound,
            from: "+12065550111".into(),
            to: "me".into(),
            body,
            status: SendStatus::Delivered,
            route: Route::Carrier,
            client_id: None,
            encoding: Encoding::Gsm7,
            segments: 1,
            created_at: Utc::now(),
        }),
        enqueue: None,
    }
}

async fn run(label: &str, store: SharedStore) {
    let messages = env("AIRTEXT_BENCH_MESSAGES", 1_000_000);
    let accounts_n = env("AIRTEXT_BENCH_ACCOUNTS", 10).max(1);
    let searches = env("AIRTEXT_BENCH_SEARCHES", 2_000);
    let mut rng = StdRng::seed_from_u64(7);
    let words = std::sync::Arc::new(Words::new(&mut rng));
    let mut accounts = Vec::new();
    for i in 0..accounts_n {
        let id = AccountId::new();
        store
            .create_account(NewAccount {
                id,
                username: format!("{label}u{i}"),
                email: None,
                password_hash: "x".into(),
                created_at: Utc::now(),
            })
            .await
            .unwrap();
        accounts.push(id);
    }

    let started = Instant::now();
    let writers = 256;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let accounts = accounts.clone();
        let words = words.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(w as u64);
            let mut n = w;
            while n < messages {
                let to = accounts[n % accounts.len()];
                store.deliver(text(to, words.body(&mut rng))).await.unwrap();
                n += writers;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let filled = started.elapsed().as_secs_f64();
    println!(
        "{label:8} filled {messages} messages in {accounts_n} accounts in {filled:.0} s ({:.0}/s)",
        messages as f64 / filled
    );

    let account = accounts[0];
    for (kind, query) in [("1 word", 1usize), ("2 words", 2), ("prefix", 0)] {
        let mut histogram = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        let mut found = 0usize;
        for _ in 0..searches {
            let q = match query {
                0 => {
                    let w = words.pick(&mut rng);
                    w.chars().take(3).collect::<String>()
                }
                n => (0..n)
                    .map(|_| words.pick(&mut rng))
                    .collect::<Vec<_>>()
                    .join(" "),
            };
            let terms = rules::search_words(&q);
            let t = Instant::now();
            let page = store
                .search_messages(account, &terms, 51, None)
                .await
                .unwrap();
            histogram.record(t.elapsed().as_micros() as u64).unwrap();
            found += page.len();
        }
        println!(
            "{label:8} search {kind:8} p50={:6.2} ms  p95={:6.2} ms  p99={:6.2} ms  max={:6.2} ms  ({:.1} hits/search)",
            histogram.value_at_quantile(0.5) as f64 / 1000.0,
            histogram.value_at_quantile(0.95) as f64 / 1000.0,
            histogram.value_at_quantile(0.99) as f64 / 1000.0,
            histogram.max() as f64 / 1000.0,
            found as f64 / searches as f64,
        );
    }
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = store::open(&url).await.unwrap();
    run("sqlite", store.clone()).await;
    store.close().await;

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
        run("postgres", store.clone()).await;
        store.close().await;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}
