//! A small HTTP load generator for smsbench's airtext target, in place of `hey`.
//!
//! `hey` repeats one request body, and `POST /v1/messages` is idempotent by `client_id`: every
//! repeat would be the first message again. This sends `-n` requests over `-c` keep-alive
//! connections, each body with a fresh `client_id` made as airtext-client makes it (a UUIDv7,
//! time-ordered), and prints its summary in `hey`'s format
//! (the lines smsbench's `lib.sh` reads: `Total:`, `50% in`, `99% in`, `[code] N responses`).
//!
//! cargo run --release -p airtext-gateway --example smsbench_load -- \
//!     -n 20000 -c 32 -t 60 --token TOKEN --to +12025550143 --body 'Hello from smsbench' URL
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

#[derive(Debug, Default)]
struct Options {
    n: usize,
    c: usize,
    timeout_s: u64,
    token: String,
    to: String,
    body: String,
    url: String,
}

fn options() -> Options {
    let mut o = Options {
        n: 200,
        c: 50,
        timeout_s: 20,
        ..Options::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "-n" => o.n = value().parse().unwrap(),
            "-c" => o.c = value().parse().unwrap(),
            "-t" => o.timeout_s = value().parse().unwrap(),
            "--token" => o.token = value(),
            "--to" => o.to = value(),
            "--body" => o.body = value(),
            url if !url.starts_with('-') => o.url = url.to_owned(),
            other => panic!("unknown option {other}"),
        }
    }
    assert!(
        !o.url.is_empty() && !o.token.is_empty(),
        "give URL and --token"
    );
    o
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let o = options();
    let per_worker = o.n / o.c.max(1);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(o.timeout_s))
        .pool_max_idle_per_host(o.c)
        .build()
        .unwrap();
    let statuses: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let latencies = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).unwrap(),
    ));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..o.c {
        let (http, statuses, latencies) = (http.clone(), statuses.clone(), latencies.clone());
        let (url, token, to, body) = (o.url.clone(), o.token.clone(), o.to.clone(), o.body.clone());
        workers.spawn(async move {
            let mut local = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).unwrap();
            let mut codes: BTreeMap<String, u64> = BTreeMap::new();
            for _ in 0..per_worker {
                let request = serde_json::json!({
                    "to": to,
                    "body": body,
                    // What airtext-client sends: a time-ordered id (UUIDv7).
                    "client_id": airtext_api::ClientId::new(),
                });
                let t = Instant::now();
                let outcome = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&request)
                    .send()
                    .await;
                let key = match outcome {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        status.to_string()
                    }
                    Err(error) if error.is_timeout() => "timeout".to_owned(),
                    Err(_) => "error".to_owned(),
                };
                local.saturating_record(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                *codes.entry(key).or_default() += 1;
            }
            latencies.lock().unwrap().add(&local).unwrap();
            let mut all = statuses.lock().unwrap();
            for (code, n) in codes {
                *all.entry(code).or_default() += n;
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let total = started.elapsed().as_secs_f64();
    let h = latencies.lock().unwrap();
    let secs = |us: u64| us as f64 / 1e6;
    println!("\nSummary:");
    println!("  Total:\t{total:.4} secs");
    println!("  Slowest:\t{:.4} secs", secs(h.max()));
    println!("  Fastest:\t{:.4} secs", secs(h.min()));
    println!("  Average:\t{:.4} secs", h.mean() / 1e6);
    println!("  Requests/sec:\t{:.4}", (per_worker * o.c) as f64 / total);
    println!("\nLatency distribution:");
    for q in [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0] {
        println!("  {q}% in {:.4} secs", secs(h.value_at_quantile(q / 100.0)));
    }
    println!("\nStatus code distribution:");
    for (code, n) in statuses.lock().unwrap().iter() {
        match code.parse::<u16>() {
            Ok(_) => println!("  [{code}]\t{n} responses"),
            Err(_) => println!("  {code}\t{n} requests"),
        }
    }
}
