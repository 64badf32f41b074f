//! The `/v1/stream` WebSocket: the gateway's hints (`{"seq": N}`) that the account's log has
//! moved, which make the sync engine pull.
//!
//! [`run`] keeps one connection open for as long as it is asked to: it reconnects with
//! jittered exponential back-off after any failure, pings to notice a dead connection (a
//! laptop waking from sleep, a Wi-Fi change), and reports each state change as a
//! [`StreamSignal`]. A rejected token (401) ends it: that device is signed out.

use std::time::{Duration, Instant};

use airtext_api::sync::StreamHint;
use airtext_api::{ErrorBody, ErrorCode};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::{Cloud, Io};
use crate::error::{Error, Result};

/// How often to ping, and how long silence may last before the connection counts as dead.
const PING_EVERY: Duration = Duration::from_secs(20);
const DEAD_AFTER: Duration = Duration::from_secs(50);

/// What the stream tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamSignal {
    /// Connected (again): pull now, anything may have happened while away.
    Connected,
    /// The log reached `seq`.
    Hint(i64),
    /// The connection failed or dropped; the next try follows after back-off.
    Disconnected { error: String },
    /// The gateway refused the device token: signed out; the stream stopped.
    Unauthorized,
}

pub type Socket = WebSocketStream<MaybeTlsStream<Box<dyn Io>>>;

/// Opens the stream (through the proxy when one is configured).
pub async fn connect(cloud: &Cloud) -> Result<Socket> {
    let token = cloud.token().ok_or(Error::SignedOut)?;
    let mut url = cloud.url(&["v1", "stream"])?;
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    url.set_scheme(scheme)
        .map_err(|()| Error::Config(format!("cannot make a WebSocket URL of {url}")))?;
    let host = url
        .host_str()
        .ok_or_else(|| Error::Config(format!("gateway URL {url} has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let network = |detail: String| Error::Network {
        url: url.to_string(),
        detail,
    };
    let tcp: Box<dyn Io> = match cloud.proxy() {
        Some(proxy) => proxy.connect(&host, port).await?,
        None => Box::new(
            TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| network(e.to_string()))?,
        ),
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| network(e.to_string()))?;
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| Error::Config("the device token is not a valid header".to_owned()))?;
    request
        .headers_mut()
        .insert(tungstenite::http::header::AUTHORIZATION, value);
    match tokio_tungstenite::client_async_tls_with_config(request, tcp, None, None).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice::<ErrorBody>(b).ok())
                .unwrap_or_else(|| ErrorBody {
                    code: if status == 401 {
                        ErrorCode::Unauthorized
                    } else {
                        ErrorCode::Unavailable
                    },
                    message: format!("the gateway refused the stream ({status})"),
                });
            Err(Error::Api { status, body })
        }
        Err(e) => Err(network(e.to_string())),
    }
}

/// Keeps the stream open until `shutdown`, reporting on `signals`.
pub async fn run(cloud: Cloud, signals: mpsc::Sender<StreamSignal>, shutdown: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    loop {
        let connected = tokio::select! {
            () = shutdown.cancelled() => return,
            connected = connect(&cloud) => connected,
        };
        let error = match connected {
            Ok(socket) => {
                backoff.reset();
                if signals.send(StreamSignal::Connected).await.is_err() {
                    return;
                }
                match serve(socket, &signals, &shutdown).await {
                    Some(error) => error,
                    None => return,
                }
            }
            Err(Error::Api { status: 401, .. }) => {
                let _ = signals.send(StreamSignal::Unauthorized).await;
                return;
            }
            Err(e) => e.to_string(),
        };
        if signals
            .send(StreamSignal::Disconnected { error })
            .await
            .is_err()
        {
            return;
        }
        let wait = backoff.next_delay();
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Reads hints until the connection ends (returns why) or shutdown/owner gone (`None`).
async fn serve(
    mut socket: Socket,
    signals: &mpsc::Sender<StreamSignal>,
    shutdown: &CancellationToken,
) -> Option<String> {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                let _ = socket.close(None).await;
                return None;
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > DEAD_AFTER {
                    return Some("the gateway stopped answering".to_owned());
                }
                if let Err(e) = socket.send(Message::Ping(Vec::new().into())).await {
                    return Some(e.to_string());
                }
            }
            message = socket.next() => {
                last_heard = Instant::now();
                match message {
                    Some(Ok(Message::Text(text))) => {
                        if let Ok(hint) = serde_json::from_str::<StreamHint>(text.as_str()) {
                            if signals.send(StreamSignal::Hint(hint.seq)).await.is_err() {
                                return None;
                            }
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => {
                        return Some("the gateway closed the stream".to_owned());
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Some(e.to_string()),
                }
            }
        }
    }
}
