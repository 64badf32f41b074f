//! The gateway's connections under clients that misbehave or leave: idle and half-sent
//! connections are closed, the connection cap holds new connections back while existing ones
//! keep working, shutdown ends within its deadline whatever is open, and a request refused
//! before its body was read never leaves a keep-alive client writing into a closed socket.
//!
//! Deadlines below bound waiting for something that must happen; none measures how fast.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::raw_http::RawConn;
use common::*;
use serde_json::json;

/// Longer than any timeout configured here, by far.
const GENEROUS: Duration = Duration::from_secs(30);

fn addr(gw: &TestGateway) -> std::net::SocketAddr {
    gw.gateway.as_ref().unwrap().addr
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let gw = TestGateway::start_with(|c| {
        c.connections.idle_timeout_secs = 1;
        c.connections.header_read_timeout_secs = 600;
    })
    .await;
    // Never sends anything.
    let mut silent = RawConn::connect(addr(&gw)).await;
    // Sends one request, then nothing: idle after its response.
    let mut kept = RawConn::connect(addr(&gw)).await;
    kept.get("/healthz").await.unwrap();
    let response = kept.response(GENEROUS).await.expect("a response");
    assert_eq!(response.status, 200);
    assert!(!response.closes(), "{}", response.head);

    assert!(
        silent.closed_within(GENEROUS).await,
        "a silent connection stays open"
    );
    assert!(
        kept.closed_within(GENEROUS).await,
        "an idle keep-alive connection stays open"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_request_head_that_never_ends_is_closed_after_the_header_read_timeout() {
    let gw = TestGateway::start_with(|c| {
        c.connections.header_read_timeout_secs = 1;
        // Only the header-read timeout can close it within the test.
        c.connections.idle_timeout_secs = 3600;
    })
    .await;
    let mut slow = RawConn::connect(addr(&gw)).await;
    slow.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Trickles a header line now and then, as slowloris does, until closed.
    let closed = tokio::time::timeout(GENEROUS, async {
        loop {
            if slow.closed_within(Duration::from_millis(200)).await {
                return;
            }
            if slow.send(b"X-a: b\r\n").await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a never-ending request head keeps its connection"
    );

    // A connection that is merely idle is not closed by the header-read timeout.
    let mut idle = RawConn::connect(addr(&gw)).await;
    idle.get("/healthz").await.unwrap();
    assert_eq!(idle.response(GENEROUS).await.unwrap().status, 200);
    // Two header-read timeouts later it still answers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    idle.get("/healthz").await.unwrap();
    assert_eq!(idle.response(GENEROUS).await.unwrap().status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn past_the_connection_cap_new_connections_wait_and_open_ones_still_work() {
    let gw = TestGateway::start_with(|c| {
        c.connections.max = 2;
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let metrics_url = format!(
        "http://{}/metrics",
        gw.gateway.as_ref().unwrap().metrics_addr.unwrap()
    );
    let mut first = RawConn::connect(addr(&gw)).await;
    let mut second = RawConn::connect(addr(&gw)).await;
    for conn in [&mut first, &mut second] {
        conn.get("/healthz").await.unwrap();
        assert_eq!(conn.response(GENEROUS).await.unwrap().status, 200);
    }
    // The third connects (the kernel's backlog takes it) but is not served...
    let mut third = RawConn::connect(addr(&gw)).await;
    third.get("/healthz").await.unwrap();
    // ...while the first is, and the limit is on record.
    first.get("/healthz").await.unwrap();
    assert_eq!(first.response(GENEROUS).await.unwrap().status, 200);
    let reached = eventually(GENEROUS, || async {
        let text = reqwest::get(&metrics_url).await.ok()?.text().await.ok()?;
        let line = text
            .lines()
            .find(|l| l.starts_with("airtext_connection_limit_reached_total"))?
            .to_owned();
        Some(line)
    })
    .await;
    assert!(!reached.ends_with(" 0"), "{reached}");
    assert!(
        !third.has_pending_bytes(),
        "the connection past the cap was served"
    );

    // A slot frees: the waiting connection is served.
    drop(second);
    let response = third
        .response(GENEROUS)
        .await
        .expect("served once a slot freed");
    assert_eq!(response.status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn shutdown_ends_within_its_deadline_despite_a_half_sent_request() {
    let gw = TestGateway::start_with(|c| {
        c.shutdown_timeout_secs = 1;
        // Neither connection timeout may be what closes it.
        c.connections.header_read_timeout_secs = 3600;
        c.connections.idle_timeout_secs = 3600;
    })
    .await;
    let alice = gw.sign_up("alice").await;
    gw.sign_up("bob").await;
    gw.send(&alice, "@bob", "accepted before shutdown").await;

    let mut half = RawConn::connect(addr(&gw)).await;
    half.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut idle = RawConn::connect(addr(&gw)).await;
    idle.get("/healthz").await.unwrap();
    assert_eq!(idle.response(GENEROUS).await.unwrap().status, 200);

    let gw = tokio::time::timeout(GENEROUS, gw.restart_with(|_| {}))
        .await
        .expect("shutdown waits for ever on a half-sent request");
    assert!(half.closed_within(GENEROUS).await);
    assert!(idle.closed_within(GENEROUS).await);

    // What was accepted is there after the restart.
    let (events, _) = gw.sync_all(&alice, 0).await;
    assert!(
        bodies(&events).contains(&"accepted before shutdown".to_owned()),
        "{events:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_request_refused_before_its_body_never_strands_a_keep_alive_client() {
    let gw = TestGateway::start().await;
    let signup = json!({"username": "x", "password": "correct horse battery"}).to_string();
    let too_large = format!("\"{}\"", "x".repeat(100 * 1024));
    let mut conn = RawConn::connect(addr(&gw)).await;
    let (mut refused, mut reconnects) = (0, 0);
    for i in 0..1_000 {
        let request = match i % 4 {
            // 415: not JSON, refused on its Content-Type; the body follows the head.
            0 => format!(
                "POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{signup}",
                signup.len()
            ),
            // 415 again, the body not sent yet when the answer comes.
            1 => "POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 40\r\n\r\n".to_owned(),
            // 413: larger than the gateway takes (64 KiB); refused once the limit is read,
            // the rest of the body unread.
            2 => format!(
                "POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{too_large}",
                too_large.len()
            ),
            // And a request that works, on whatever connection is open.
            _ => "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        };
        // The server may stop reading a body it refused and close: a write cut short by
        // that is no failure; the answer must still be there.
        let _ = conn.send(request.as_bytes()).await;
        let response = conn
            .response(GENEROUS)
            .await
            .unwrap_or_else(|| panic!("request {i}: the connection closed without an answer"));
        if i % 4 == 3 {
            assert_eq!(response.status, 200, "request {i}");
        } else {
            assert!(
                matches!(response.status, 413 | 415),
                "request {i}: {}",
                response.head
            );
            refused += 1;
        }
        if response.closes() {
            assert!(
                conn.closed_within(GENEROUS).await,
                "request {i}: said close, stayed open"
            );
            conn = RawConn::connect(addr(&gw)).await;
            reconnects += 1;
        }
    }
    assert_eq!(refused, 750);
    assert!(reconnects <= refused);
    gw.stop().await;
}

#[tokio::test]
async fn a_websocket_stream_is_not_an_idle_connection() {
    let gw = TestGateway::start_with(|c| {
        c.connections.idle_timeout_secs = 1;
        c.connections.header_read_timeout_secs = 1;
    })
    .await;
    // No pings within the test: only the connection timeouts could end the stream.
    gw.state().push.set_keepalive(Duration::from_secs(3600));
    let alice = gw.sign_up("alice").await;
    gw.sign_up("bob").await;
    let mut stream = gw.stream(&alice).await;
    let first = stream.hint(GENEROUS).await;
    // Several idle and header-read timeouts pass in silence...
    tokio::time::sleep(Duration::from_secs(3)).await;
    // ...and the stream still carries news.
    gw.send(&alice, "@bob", "still there").await;
    assert!(stream.until(first + 1, GENEROUS).await > first);
    stream.close().await;
    gw.stop().await;
}

#[tokio::test]
async fn a_request_head_over_the_limit_is_refused() {
    let gw = TestGateway::start_with(|c| c.connections.max_header_bytes = 8192).await;
    let mut conn = RawConn::connect(addr(&gw)).await;
    let huge = "a".repeat(20_000);
    let _ = conn
        .send(format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {huge}\r\n\r\n").as_bytes())
        .await;
    let response = conn.response(GENEROUS).await.expect("an answer");
    assert_eq!(response.status, 431, "{}", response.head);
    // A head within the limit works.
    let mut fine = RawConn::connect(addr(&gw)).await;
    fine.send(
        format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            &huge[..4000]
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(fine.response(GENEROUS).await.unwrap().status, 200);
    gw.stop().await;
}

/// The reproduction from the field, on the real binary: SIGTERM with a half-sent request open.
#[tokio::test]
async fn the_binary_exits_on_sigterm_within_its_deadline_despite_a_half_sent_request() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_airtext-gateway"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args([
                "--database-url",
                &format!("sqlite://{}", dir.path().join("gw.db").display()),
            ])
            .args(["--shutdown-timeout", "1"])
            .env("AIRTEXT_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    wait_healthy(&reqwest::Client::new(), &url).await;
    let mut half = RawConn::connect(format!("127.0.0.1:{port}").parse().unwrap()).await;
    half.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = eventually(GENEROUS, || {
        let polled = child.0.try_wait().unwrap();
        async move { polled }
    })
    .await;
    assert!(exited.success(), "{exited:?}");
    assert!(half.closed_within(GENEROUS).await);
}

/// The other field reproduction: more idle connections than the process has descriptors.
/// `/healthz` is answered all the same: connections past the cap wait, and the idle ones
/// are closed in time to make room.
#[tokio::test]
async fn idle_connections_beyond_the_descriptor_limit_do_not_starve_health_checks() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("gw.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase_url = \"sqlite://{}\"\n[connections]\nidle_timeout_secs = 2\n",
            dir.path().join("gw.db").display()
        ),
    )
    .unwrap();
    // 256 descriptors, soft and hard: the default cap is then 192 connections.
    let _child = KillOnDrop(
        std::process::Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 256 && exec \"$0\" --config \"$1\"")
            .arg(env!("CARGO_BIN_EXE_airtext-gateway"))
            .arg(&config)
            .env("AIRTEXT_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    wait_healthy(&reqwest::Client::new(), &url).await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(RawConn::connect(addr).await);
    }
    let mut health = RawConn::connect(addr).await;
    health.get("/healthz").await.unwrap();
    let response = health
        .response(GENEROUS)
        .await
        .expect("/healthz answered while idle connections hold every descriptor");
    assert_eq!(response.status, 200);
}

/// A child process killed if the test ends before it exits.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
