//! The gateway killed with SIGKILL while texts are in flight to an SMSC, then started again on
//! the same database: no accepted text is lost, and none that the gateway had recorded as
//! taken by the SMSC is sent again.
//!
//! The gateway runs as a child process (the real binary, `--config`), with an SMPP carrier
//! bound to an SMSC in this test: the `smpp34` crate's server, counting `submit_sm` by text
//! and answering each after a short delay so that many are in flight at the kill.
//!
//! What can and cannot be promised (docs/decisions.md): a submit the SMSC acknowledged but
//! whose acknowledgement the gateway had not yet committed when it died is unknowable to the
//! restarted gateway, which sends it again. So delivery is at-least-once; the duplicates are
//! bounded by what was in flight, and only texts without a recorded carrier id can repeat.
//! This test checks exactly that split.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::counting_smsc::CountingSmsc;
use common::{free_port, wait_healthy};
use serde_json::{json, Value};
use sqlx::Connection;

const OUR_DID: &str = "+14155550100";
const MESSAGES: usize = 400;

struct Gateway {
    child: Child,
    url: String,
}

fn start_gateway(config: &std::path::Path, port: u16, log: &std::path::Path) -> Gateway {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_airtext-gateway"))
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the gateway binary starts");
    Gateway {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn post(http: &reqwest::Client, url: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut r = http.post(url).json(&body);
    if let Some(token) = token {
        r = r.bearer_auth(token);
    }
    let response = r.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// One send with a fixed `client_id`; `None` when the gateway did not answer (killed).
async fn send(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    text: &str,
    client_id: uuid::Uuid,
) -> Option<u16> {
    let response = http
        .post(format!("{url}/v1/messages"))
        .bearer_auth(token)
        .json(&json!({"to": format!("+1202555{:04}", 1000 + text.len()), "body": text, "client_id": client_id}))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    response.bytes().await.ok()?;
    Some(status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_flight_loses_nothing_and_repeats_nothing_recorded() {
    let (smsc, mut server, smsc_port) = CountingSmsc::start().await;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gateway.db");
    let port = free_port();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
listen = "127.0.0.1:{port}"
database_url = "sqlite://{db}"
[rate_limits.send]
per_minute = 1000000
burst = 100000
[queue]
send_timeout_secs = 2
lease_secs = 3
[[carriers]]
name = "smsc1"
kind = "smpp"
host = "127.0.0.1"
port = {smsc_port}
system_id = "airtext"
password = "secret"
window = 32
delivery_receipts = false
numbers = ["{OUR_DID}"]
rates = [ {{ prefix = "+1", cost_per_segment = 0.004 }} ]
"#,
            db = db.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("gateway.log");
    let http = reqwest::Client::new();

    let mut gw = start_gateway(&config, port, &log);
    wait_healthy(&http, &gw.url).await;
    let (status, body) = post(
        &http,
        &format!("{}/v1/accounts", gw.url),
        None,
        json!({"username": "alice", "password": "correct horse battery"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post(
        &http,
        &format!("{}/v1/sessions", gw.url),
        None,
        json!({"username": "alice", "password": "correct horse battery", "device_name": "t"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let (status, body) = post(
        &http,
        &format!("{}/v1/numbers", gw.url),
        Some(&token),
        json!({"number": OUR_DID}),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // Load: 8 clients, each sending its share in order; the kill lands in the middle.
    let texts: Vec<(String, uuid::Uuid)> = (0..MESSAGES)
        .map(|i| (format!("crash{i:04}"), uuid::Uuid::new_v4()))
        .collect();
    let answered: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut clients = tokio::task::JoinSet::new();
    for chunk in texts.chunks(MESSAGES / 8) {
        let chunk = chunk.to_vec();
        let (http, url, token, answered) = (
            http.clone(),
            gw.url.clone(),
            token.clone(),
            answered.clone(),
        );
        clients.spawn(async move {
            for (text, client_id) in chunk {
                match send(&http, &url, &token, &text, client_id).await {
                    Some(201) => {
                        answered.lock().unwrap().insert(text);
                    }
                    Some(other) => panic!("send {text}: {other}"),
                    None => break,
                }
            }
        });
    }
    // Kill once a third has reached the SMSC: requests, queue and window are all busy.
    for _ in 0..2_000 {
        if smsc.accepted() >= (MESSAGES / 3) as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    gw.child.kill().unwrap(); // SIGKILL on Unix
    gw.child.wait().unwrap();
    while clients.join_next().await.is_some() {}
    let at_kill = smsc.counts();
    let accepted_before = answered.lock().unwrap().clone();
    assert!(!accepted_before.is_empty());
    assert!(
        accepted_before.len() < MESSAGES,
        "the kill came after every request; nothing was in flight"
    );

    // What the dead gateway had recorded as taken by the SMSC (committed before the kill).
    let recorded: HashSet<String> = {
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT body FROM messages WHERE carrier_message_id IS NOT NULL")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        conn.close().await.unwrap();
        rows.into_iter().collect()
    };

    // Start again on the same database; the client retries what got no answer, with the same
    // client_id (idempotent: what was stored before the kill is not stored twice).
    let mut gw = start_gateway(&config, port, &log);
    wait_healthy(&http, &gw.url).await;
    for (text, client_id) in &texts {
        if !accepted_before.contains(text) {
            let status = send(&http, &gw.url, &token, text, *client_id).await;
            assert!(matches!(status, Some(200 | 201)), "{text}: {status:?}");
        }
    }

    // Every text reaches the SMSC.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let counts = smsc.counts();
        if texts.iter().all(|(t, _)| counts.contains_key(t)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing at the SMSC: {:?}",
            texts
                .iter()
                .filter(|(t, _)| !counts.contains_key(t))
                .map(|(t, _)| t)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And the queue settles: nothing left to send.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let counts = smsc.counts();
    let _ = gw.child.kill();
    let _ = gw.child.wait();
    server.stop().await;

    let twice: Vec<&String> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(t, _)| t)
        .collect();
    for text in &twice {
        assert!(
            !recorded.contains(*text),
            "{text} was recorded as taken by the SMSC before the kill, yet sent again"
        );
        // Not asserted: that the first copy had reached the SMSC when `at_kill` was taken. A
        // submit the gateway wrote just before SIGKILL can still be in the socket buffers and
        // arrive after the snapshot, so that check would race; what must hold is above (never
        // resent once recorded) and below (at most one repeat).
        assert_eq!(counts[*text], 2, "{text} sent more than twice");
    }
    for text in &recorded {
        assert_eq!(counts.get(text), Some(&1), "{text}");
    }
    let std_err = std::fs::read_to_string(&log).unwrap_or_default();
    // Reported, not asserted: how many acknowledgements the kill lost.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "crash_recovery: {} texts, {} accepted before the kill, {} at the SMSC at the kill, {} recorded sent, {} sent twice (acknowledged but not yet recorded when killed); log {} bytes",
        MESSAGES,
        accepted_before.len(),
        at_kill.len(),
        recorded.len(),
        twice.len(),
        std_err.len()
    );
}
