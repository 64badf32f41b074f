//! Test harness: a real gateway in-process (SQLite file in a temp dir, simulator carrier) and
//! client devices, each with its own data directory.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::field_reassign_with_default
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use airtext_client::events::ClientEvent;
use airtext_client::{Client, ClientOptions};
use airtext_gateway::config::{Config, Rate};
use airtext_gateway::{Gateway, RunningGateway};

pub const PASSWORD: &str = "correct horse battery";

/// A gateway whose database file outlives it, so a new gateway can take over the same file
/// and port (an outage and a restart).
pub struct TestGateway {
    pub gateway: Option<RunningGateway>,
    pub addr: SocketAddr,
    pub url: String,
    pub dir: tempfile::TempDir,
}

pub fn config(db: &Path, listen: SocketAddr) -> Config {
    let mut config = Config::default();
    config.listen = listen;
    config.database_url = format!("sqlite://{}", db.display());
    config.simulator.enabled = true;
    config.simulator.receipt_delay_ms = 50;
    let lots = Rate {
        per_minute: 10_000_000,
        burst: 1_000_000,
    };
    config.rate_limits.send = lots;
    config.rate_limits.sign_in = lots;
    config.rate_limits.sign_up = lots;
    config.rate_limits.lookup = lots;
    config
}

impl TestGateway {
    pub async fn start() -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        let gateway = Gateway::start(config(
            &dir.path().join("gateway.db"),
            "127.0.0.1:0".parse().unwrap(),
        ))
        .await
        .expect("gateway starts");
        let addr = gateway.addr;
        TestGateway {
            url: gateway.url(),
            gateway: Some(gateway),
            addr,
            dir,
        }
    }

    /// Stops the gateway (the database file stays).
    pub async fn stop(&mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.shutdown().await.expect("clean shutdown");
        }
    }

    /// Starts a new gateway on the same database file and port.
    pub async fn restart(&mut self) {
        assert!(self.gateway.is_none(), "stop it first");
        let config = config(&self.dir.path().join("gateway.db"), self.addr);
        let mut last = None;
        for _ in 0..50 {
            match Gateway::start(config.clone()).await {
                Ok(gateway) => {
                    self.gateway = Some(gateway);
                    return;
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        panic!("gateway did not restart: {last:?}");
    }
}

/// One device: a data directory and the client opened on it.
pub struct Device {
    pub dir: PathBuf,
    pub client: Client,
    _temp: Option<tempfile::TempDir>,
}

pub fn options(dir: &Path, gateway: &str) -> ClientOptions {
    let mut options = ClientOptions::new(dir).unwrap();
    options.gateway = Some(gateway.to_owned());
    options
}

impl Device {
    pub async fn new(gateway: &str) -> Device {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        let client = Client::open(options(&dir, gateway)).await.unwrap();
        Device {
            dir,
            client,
            _temp: Some(temp),
        }
    }

    pub async fn sign_up(gateway: &str, username: &str) -> Device {
        let device = Device::new(gateway).await;
        device
            .client
            .sign_up(username, PASSWORD, None, "first")
            .await
            .expect("sign up");
        device
    }

    pub async fn sign_in(gateway: &str, username: &str, name: &str) -> Device {
        let device = Device::new(gateway).await;
        device
            .client
            .sign_in(username, PASSWORD, name)
            .await
            .expect("sign in");
        device
    }

    /// Reopens the same data directory (an app restart).
    pub async fn reopen(&mut self, gateway: &str) {
        self.client = Client::open(options(&self.dir, gateway)).await.unwrap();
    }

    pub async fn message_count(&self) -> i64 {
        let session = self.client.session().await.unwrap();
        session
            .cache
            .call(|c| airtext_client::cache::messages::count(c))
            .await
            .unwrap()
    }

    pub async fn cursor(&self) -> i64 {
        let session = self.client.session().await.unwrap();
        session
            .cache
            .call(|c| airtext_client::cache::sync_state::cursor(c))
            .await
            .unwrap()
    }
}

/// Waits for an event matching `pick`, for at most `timeout`.
pub async fn wait_for<T>(
    events: &mut tokio::sync::broadcast::Receiver<ClientEvent>,
    timeout: Duration,
    mut pick: impl FnMut(&ClientEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(timeout, async {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Some(found) = pick(&event) {
                        return found;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("events closed: {e}"),
            }
        }
    })
    .await
    .expect("the event came in time")
}

/// Sends `n` texts from `device` to `to` straight through the API (not the outbox), `width`
/// at a time; for building a long log quickly.
pub async fn flood(device: &Device, to: &str, n: usize, width: usize) {
    use futures::StreamExt;
    let session = device.client.session().await.unwrap();
    let cloud = session.cloud.clone();
    futures::stream::iter(0..n)
        .map(|i| {
            let cloud = cloud.clone();
            let to = to.to_owned();
            async move {
                cloud
                    .send_message(&airtext_api::messages::SendMessage {
                        to,
                        body: format!("flood {i} lorem ipsum dolor sit amet"),
                        client_id: airtext_api::ClientId::new(),
                    })
                    .await
                    .expect("send")
            }
        })
        .buffer_unordered(width)
        .collect::<Vec<_>>()
        .await;
}
