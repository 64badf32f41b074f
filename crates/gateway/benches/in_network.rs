//! In-network messaging benchmark: a real gateway (own runtime, like a separate process) and a
//! load generator driving it over HTTP and WebSocket on loopback.
//!
//! Senders `POST /v1/messages` to recipients by `@username`; every recipient has two devices on
//! `/v1/stream` that pull `/v1/sync` on each hint. Reported: messages/s accepted (201s over the
//! load's wall time), HTTP accept latency, and latency from the start of the send to the
//! message's arrival on each device (p50/p99/max).
//!
//! Two modes: `--rate 0` (closed loop: each sender sends as fast as replies come back — the
//! throughput ceiling), or `--rate R` (open loop at R messages/s in total; latencies are taken
//! from each message's scheduled start, so a stalled gateway cannot hide its queueing).
//!
//! cargo bench -p airtext-gateway --bench in_network -- [--db sqlite|postgres] [--senders 64]
//!     [--recipients 32] [--messages 50000] [--rate 0]
//!
//! `--db postgres` uses AIRTEXT_TEST_DATABASE_URL (or postgres://postgres@127.0.0.1:5432/test)
//! in a fresh schema. `--nodes 2` (PostgreSQL only) starts two gateways on that schema, each on
//! its own runtime; senders and devices alternate between them, so hints cross nodes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airtext_gateway::config::{Config, Rate};
use airtext_gateway::Gateway;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[derive(Debug, Clone)]
struct Options {
    db: String,
    senders: usize,
    recipients: usize,
    messages: usize,
    rate: u64,
    gateway_threads: usize,
    nodes: usize,
}

fn options() -> Options {
    let mut o = Options {
        db: "sqlite".into(),
        senders: 64,
        recipients: 32,
        messages: 50_000,
        rate: 0,
        gateway_threads: 2,
        nodes: 1,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = || args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--db" => o.db = value(),
            "--senders" => o.senders = value().parse().expect("--senders N"),
            "--recipients" => o.recipients = value().parse().expect("--recipients N"),
            "--messages" => o.messages = value().parse().expect("--messages N"),
            "--rate" => o.rate = value().parse().expect("--rate N"),
            "--nodes" => o.nodes = value().parse().expect("--nodes N"),
            "--gateway-threads" => {
                o.gateway_threads = value().parse().expect("--gateway-threads N")
            }
            "--bench" => {
                i += 1;
                continue;
            }
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    o
}

/// Send start times by message number, and arrival latencies on devices.
#[derive(Default)]
struct Clock {
    started: Mutex<HashMap<u64, Instant>>,
    arrival: Mutex<Option<Histogram<u64>>>,
    arrivals: AtomicU64,
}

fn main() {
    let o = options();
    let dir = tempfile::tempdir().unwrap();
    let database_url = match o.db.as_str() {
        "sqlite" => format!("sqlite://{}", dir.path().join("bench.db").display()),
        "postgres" => postgres_schema_url(),
        other => panic!("--db {other}: use sqlite or postgres"),
    };

    assert!(
        o.nodes == 1 || o.db == "postgres",
        "--nodes above 1 needs --db postgres"
    );
    let mut urls = Vec::new();
    let mut stops = Vec::new();
    let mut gateway_threads_joined = Vec::new();
    for _ in 0..o.nodes.max(1) {
        let database_url = database_url.clone();
        // The gateway gets its own runtime, as if it were another process on the same 2 cores.
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let gateway_threads = o.gateway_threads;
        let gateway_thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(gateway_threads)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let mut config = Config {
                    listen: "127.0.0.1:0".parse().unwrap(),
                    database_url,
                    ..Config::default()
                };
                let unlimited = Rate {
                    per_minute: 100_000_000,
                    burst: 1_000_000,
                };
                config.rate_limits.send = unlimited;
                config.rate_limits.sign_in = unlimited;
                config.rate_limits.sign_up = unlimited;
                let gateway = Gateway::start(config).await.unwrap();
                let stop = gateway.shutdown_token();
                addr_tx.send((gateway.url(), stop)).unwrap();
                gateway.wait().await.unwrap();
            });
        });
        let (url, stop) = addr_rx.recv().unwrap();
        urls.push(url);
        stops.push(stop);
        gateway_threads_joined.push(gateway_thread);
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&o, &urls));
    for stop in stops {
        stop.cancel();
    }
    for gateway_thread in gateway_threads_joined {
        gateway_thread.join().unwrap();
    }
}

async fn run(o: &Options, urls: &[String]) {
    let url = urls[0].as_str();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(o.senders + 2 * o.recipients + 8)
        .build()
        .unwrap();
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();

    // Accounts: recipients with two devices each on the stream, senders with one device.
    let mut recipients = Vec::new();
    for r in 0..o.recipients {
        let name = format!("r{r}_{run_id}");
        sign_up(&http, url, &name).await;
        let devices = [
            sign_in(&http, url, &name, "tablet").await,
            sign_in(&http, url, &name, "laptop").await,
        ];
        recipients.push((name, devices));
    }
    let mut senders = Vec::new();
    for s in 0..o.senders {
        let name = format!("s{s}_{run_id}");
        sign_up(&http, url, &name).await;
        senders.push(sign_in(&http, url, &name, "phone").await);
    }

    let clock = Arc::new(Clock::default());
    *clock.arrival.lock().unwrap() = Some(Histogram::new_with_bounds(1, 60_000_000, 3).unwrap());
    let expected_arrivals = (o.messages * 2) as u64;
    let mut device_tasks = Vec::new();
    for (_, devices) in &recipients {
        for (d, token) in devices.iter().enumerate() {
            device_tasks.push(tokio::spawn(device(
                http.clone(),
                urls[d % urls.len()].clone(),
                token.clone(),
                clock.clone(),
            )));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let accept = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
    ));
    let next = Arc::new(AtomicU64::new(0));
    let total = o.messages as u64;
    let started = Instant::now();
    let mut sender_tasks = Vec::new();
    for (s, token) in senders.iter().enumerate() {
        let http = http.clone();
        let url = urls[s % urls.len()].clone();
        let token = token.clone();
        let clock = clock.clone();
        let accept = accept.clone();
        let next = next.clone();
        let recipient_names: Vec<String> = recipients.iter().map(|(n, _)| n.clone()).collect();
        let rate = o.rate;
        sender_tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return;
                }
                // Open loop: message n is due at n / rate seconds; latency counts from then.
                let due = match (n * 1_000_000_000).checked_div(rate) {
                    Some(offset) => {
                        let due = started + Duration::from_nanos(offset);
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => Instant::now(),
                };
                clock.started.lock().unwrap().insert(n, due);
                let to = &recipient_names[(n as usize + s) % recipient_names.len()];
                let response = http
                    .post(format!("{url}/v1/messages"))
                    .bearer_auth(&token)
                    .json(&json!({"to": format!("@{to}"), "body": format!("bench {n}"), "client_id": uuid::Uuid::new_v4()}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status().as_u16(), 201, "{:?}", response.text().await);
                accept.lock().unwrap().record(due.elapsed().as_micros() as u64).unwrap();
            }
        }));
    }
    for task in sender_tasks {
        task.await.unwrap();
    }
    let accepted_in = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    while clock.arrivals.load(Ordering::Relaxed) < expected_arrivals && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let all_arrived_in = started.elapsed();
    for task in device_tasks {
        task.abort();
    }

    let accept = accept.lock().unwrap();
    let arrival = clock.arrival.lock().unwrap();
    let arrival = arrival.as_ref().unwrap();
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "db={} nodes={} senders={} recipients={} (x2 devices) messages={} rate={}",
        o.db,
        urls.len(),
        o.senders,
        o.recipients,
        o.messages,
        if o.rate == 0 {
            "max".to_owned()
        } else {
            o.rate.to_string()
        }
    );
    println!(
        "accepted: {:.0} msg/s ({} in {:.2} s)",
        o.messages as f64 / accepted_in.as_secs_f64(),
        o.messages,
        accepted_in.as_secs_f64()
    );
    println!(
        "accept latency ms: p50 {:.2}  p99 {:.2}  max {:.2}",
        ms(accept.value_at_quantile(0.5)),
        ms(accept.value_at_quantile(0.99)),
        ms(accept.max())
    );
    println!(
        "arrival on every device: {} of {} in {:.2} s",
        clock.arrivals.load(Ordering::Relaxed),
        expected_arrivals,
        all_arrived_in.as_secs_f64()
    );
    println!(
        "send → device latency ms: p50 {:.2}  p99 {:.2}  max {:.2}",
        ms(arrival.value_at_quantile(0.5)),
        ms(arrival.value_at_quantile(0.99)),
        ms(arrival.max())
    );
}

/// One device: waits for hints on the stream and pulls `/v1/sync` after each.
async fn device(http: reqwest::Client, url: String, token: String, clock: Arc<Clock>) {
    let mut request = format!("{}/v1/stream", url.replacen("http://", "ws://", 1))
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut cursor = 0i64;
    while let Some(frame) = ws.next().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(_) => return,
        };
        if frame.is_ping() {
            let _ = ws
                .send(tokio_tungstenite::tungstenite::Message::Pong(
                    frame.into_data(),
                ))
                .await;
            continue;
        }
        let Ok(text) = frame.into_text() else {
            continue;
        };
        let Ok(hint) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let target = hint["seq"].as_i64().unwrap_or(0);
        while cursor < target {
            let page: Value = http
                .get(format!("{url}/v1/sync?after={cursor}&limit=1000"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let now = Instant::now();
            for event in page["events"].as_array().unwrap() {
                if event["type"] == "message.created" {
                    let body = event["message"]["body"].as_str().unwrap_or("");
                    if let Some(n) = body
                        .strip_prefix("bench ")
                        .and_then(|n| n.parse::<u64>().ok())
                    {
                        let started = clock.started.lock().unwrap().get(&n).copied();
                        if let Some(started) = started {
                            let micros = now.duration_since(started).as_micros() as u64;
                            if let Some(h) = clock.arrival.lock().unwrap().as_mut() {
                                h.record(micros.max(1)).unwrap();
                            }
                            clock.arrivals.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            cursor = page["next"].as_i64().unwrap();
            if !page["more"].as_bool().unwrap() && cursor >= target {
                break;
            }
        }
    }
}

async fn sign_up(http: &reqwest::Client, url: &str, name: &str) {
    let response = http
        .post(format!("{url}/v1/accounts"))
        .json(&json!({"username": name, "password": "benchmark password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        201,
        "{:?}",
        response.text().await
    );
}

async fn sign_in(http: &reqwest::Client, url: &str, name: &str, device: &str) -> String {
    let response: Value = http
        .post(format!("{url}/v1/sessions"))
        .json(&json!({"username": name, "password": "benchmark password", "device_name": device}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    response["token"].as_str().unwrap().to_owned()
}

/// A fresh schema on the test PostgreSQL, so runs never see each other's data.
fn postgres_schema_url() -> String {
    let base = std::env::var("AIRTEXT_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let status = std::process::Command::new("psql")
        .args([base.as_str(), "-qc", &format!("create schema {schema}")])
        .status()
        .expect("psql runs");
    assert!(status.success(), "cannot create schema {schema}");
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}
