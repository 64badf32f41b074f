//! All client traffic (HTTP and the WebSocket) goes through a real SOCKS5 proxy (Debian's
//! `microsocks`, started here on 127.0.0.1), and with the proxy down the client fails rather
//! than connecting directly.
//!
//! Needs `microsocks` on PATH (`apt-get install microsocks`); without it the test says so and
//! passes vacuously, unless AIRTEXT_REQUIRE_MICROSOCKS=1 (CI) makes that a failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airtext_client::events::ClientEvent;
use airtext_client::{Client, Error};
use common::{wait_for, TestGateway};
use tokio_util::sync::CancellationToken;

struct Socks {
    child: std::process::Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Socks {
    fn start() -> Option<Socks> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = match Command::new("microsocks")
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                assert!(
                    std::env::var("AIRTEXT_REQUIRE_MICROSOCKS").as_deref() != Ok("1"),
                    "microsocks is required: {e}"
                );
                eprintln!("SKIPPED: microsocks is not installed ({e})");
                return None;
            }
        };
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while std::time::Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Socks { child, port, log });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("microsocks did not start");
    }

    /// How many connections the proxy made to `port`.
    fn connections_to(&self, port: u16) -> usize {
        let needle = format!("connected to 127.0.0.1:{port}");
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(&needle))
            .count()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Socks {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_websocket_go_through_socks5_and_fail_without_it() {
    let Some(mut socks) = Socks::start() else {
        return;
    };
    let gw = TestGateway::start().await;
    let gw_port = gw.addr.port();
    let temp = tempfile::tempdir().unwrap();
    let mut options = common::options(temp.path(), &gw.url);
    options.proxy = Some(
        format!("socks5h://127.0.0.1:{}", socks.port)
            .parse()
            .unwrap(),
    );
    let client = Client::open(options).await.unwrap();

    client
        .sign_up("alice", common::PASSWORD, None, "via proxy")
        .await
        .unwrap();
    let http_connections = socks.connections_to(gw_port);
    assert!(http_connections >= 1, "HTTP went through the proxy");

    let mut events = client.subscribe();
    let shutdown = CancellationToken::new();
    let runner = {
        let client = client.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { client.run(shutdown).await })
    };
    wait_for(&mut events, Duration::from_secs(120), |e| {
        matches!(e, ClientEvent::ConnectionChanged { online: true, .. }).then_some(())
    })
    .await;
    // microsocks logs each connection from its own thread: poll for the line, never race it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while socks.connections_to(gw_port) <= http_connections && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        socks.connections_to(gw_port) > http_connections,
        "the WebSocket went through the proxy too: {:?}",
        socks.log.lock().unwrap()
    );
    let sent = client.send("@alice", "note to self", None).await.unwrap();
    assert!(sent.id.is_some());

    // The proxy goes away: everything fails, nothing goes direct (the gateway is still up).
    socks.stop();
    // A new connection finds no proxy (`Proxy`); a pooled tunnel through the dead proxy breaks
    // mid-request (`Network`). Either way the request failed although the gateway is up: it did
    // not go direct.
    let error = client.sync().await.unwrap_err();
    assert!(
        matches!(error, Error::Proxy { .. } | Error::Network { .. }),
        "{error:?}"
    );
    let queued = client.send("@alice", "must wait", None).await.unwrap();
    assert_eq!(queued.status, airtext_api::SendStatus::Queued);
    let offline = wait_for(&mut events, Duration::from_secs(120), |e| match e {
        ClientEvent::ConnectionChanged {
            online: false,
            error: Some(error),
        } => Some(error.clone()),
        _ => None,
    })
    .await;
    assert!(!offline.is_empty());
    // Reconnect attempts fail at the proxy.
    let retry = wait_for(&mut events, Duration::from_secs(120), |e| match e {
        ClientEvent::ConnectionChanged {
            online: false,
            error: Some(error),
        } if error.contains("proxy") => Some(error.clone()),
        _ => None,
    })
    .await;
    assert!(retry.contains("127.0.0.1"), "{retry}");

    // A new device behind the dead proxy cannot even sign in.
    let temp2 = tempfile::tempdir().unwrap();
    let mut options = common::options(temp2.path(), &gw.url);
    options.proxy = Some(
        format!("socks5h://127.0.0.1:{}", socks.port)
            .parse()
            .unwrap(),
    );
    let other = Client::open(options).await.unwrap();
    let error = other
        .sign_in("alice", common::PASSWORD, "x")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Proxy { .. }), "{error:?}");

    shutdown.cancel();
    let _ = runner.await;
}
