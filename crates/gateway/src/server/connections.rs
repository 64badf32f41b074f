//! The accept loop: every TCP (or TLS) connection the gateway serves, with bounds on how many
//! there are and on how long each may do nothing useful, and shutdown with a deadline.
//!
//! Invariants:
//! - at most `connections.max` connections are open at once (a WebSocket counts until its
//!   socket closes: the slot travels with the socket); further ones wait in the kernel's listen
//!   backlog, and the gateway says so in its log and in `airtext_connection_limit_reached_total`;
//! - a connection waiting for a request is closed after `idle_timeout`; one whose request
//!   head has started arriving but is incomplete after `header_read_timeout` is closed
//!   (slowloris); while a request is being answered, or after a WebSocket upgrade, neither
//!   applies (the request timeout and the stream's own keep-alive do);
//! - a request whose body the handler did not read to its end (refused early: 413, 415, 400)
//!   is answered with `Connection: close`, so the client never sends its next request on a
//!   connection the server is about to close;
//! - on shutdown the listener closes at once, idle connections close, requests in flight
//!   finish; whatever is still open after `shutdown_timeout` is closed. A request cut there
//!   was never answered, so nothing the gateway acknowledged is lost (each 201 waited for its
//!   commit);
//! - `ConnectInfo<SocketAddr>` on each request holds the client's address as
//!   [`TrustedProxies::client`] resolves it (the peer's port kept), so rate limits and logs
//!   see the client, not the proxy.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath};
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::client_addr::{ForwardedHeader, TrustedProxies};
use super::tls::TlsAcceptor;
use crate::config::Config;

/// What the accept loop needs from the configuration, resolved once.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub shutdown_timeout: Duration,
    pub trusted_proxies: TrustedProxies,
    pub forwarded_header: ForwardedHeader,
}

impl EdgeSettings {
    /// `open_files`: the process's open-file limit, which sizes the default connection cap.
    pub fn from_config(config: &Config, open_files: Option<u64>) -> EdgeSettings {
        let max_connections = match config.connections.max {
            0 => default_max_connections(open_files),
            n => n,
        }
        .min(Semaphore::MAX_PERMITS);
        EdgeSettings {
            max_connections,
            header_read_timeout: config.connections.header_read_timeout(),
            idle_timeout: config.connections.idle_timeout(),
            max_header_bytes: config.connections.max_header_bytes,
            shutdown_timeout: config.shutdown_timeout(),
            trusted_proxies: config.trusted_proxies.clone(),
            forwarded_header: config.forwarded_header,
        }
    }
}

/// Three quarters of the open-file limit (each connection is one descriptor; the rest is for
/// the database, carriers, logs and accepting), at least 64; 10,000 when the limit is unknown.
fn default_max_connections(open_files: Option<u64>) -> usize {
    match open_files {
        Some(limit) => usize::try_from(limit / 4 * 3).unwrap_or(usize::MAX).max(64),
        None => 10_000,
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then drains within the deadline.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    settings: EdgeSettings,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let settings = Arc::new(settings);
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let force = CancellationToken::new();
    let mut connections = JoinSet::new();
    let mut last_limit_log: Option<Instant> = None;
    let mut last_accept_error_log: Option<Instant> = None;
    loop {
        while connections.try_join_next().is_some() {}
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                metrics::counter!("airtext_connection_limit_reached_total").increment(1);
                if last_limit_log.is_none_or(|at| at.elapsed() >= LOG_AT_MOST_EVERY) {
                    tracing::warn!(
                        max = settings.max_connections,
                        "connection limit reached: {} connections open; new connections wait in the listen backlog until one closes (connections.max)",
                        settings.max_connections
                    );
                    last_limit_log = Some(Instant::now());
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    _ = shutdown.cancelled() => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors (EMFILE) or a connection reset before accept: wait a
                    // little rather than spin; connections closing free descriptors.
                    if last_accept_error_log.is_none_or(|at| at.elapsed() >= LOG_AT_MOST_EVERY) {
                        tracing::warn!(%error, "accept failed; retrying");
                        last_accept_error_log = Some(Instant::now());
                    }
                    drop(slot);
                    tokio::select! {
                        _ = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        metrics::counter!("airtext_connections_accepted_total").increment(1);
        connections.spawn(serve_connection(
            stream,
            peer,
            slot,
            tls.clone(),
            app.clone(),
            settings.clone(),
            shutdown.clone(),
            force.clone(),
        ));
    }
    drop(listener);
    let open = connections.len();
    if open > 0 {
        tracing::info!(
            open,
            "no longer accepting; waiting up to {} s for open requests",
            settings.shutdown_timeout.as_secs()
        );
    }
    let drained = tokio::time::timeout(settings.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "shutdown deadline ({} s) passed: closing the connections still open",
            settings.shutdown_timeout.as_secs()
        );
        force.cancel();
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
    Ok(())
}

const LOG_AT_MOST_EVERY: Duration = Duration::from_secs(10);
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
    tls: Option<TlsAcceptor>,
    app: Router,
    settings: Arc<EdgeSettings>,
    shutdown: CancellationToken,
    force: CancellationToken,
) {
    let activity = Arc::new(Activity::new());
    let io = Watched {
        inner: stream,
        activity: activity.clone(),
        _slot: slot,
        _open: OpenGauge::new(),
    };
    match tls {
        None => serve_http(io, peer, app, settings, activity, shutdown, force).await,
        Some(tls) => {
            // The handshake is part of getting a request's head in: same bound.
            activity.bytes_arrived();
            let handshake = tokio::select! {
                done = tokio::time::timeout(settings.header_read_timeout, tls.accept(io)) => done,
                _ = force.cancelled() => return,
            };
            match handshake {
                Ok(Ok(io)) => {
                    activity.became_idle();
                    serve_http(io, peer, app, settings, activity, shutdown, force).await;
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => {
                    metrics::counter!("airtext_connections_timed_out_total", "phase" => "tls_handshake")
                        .increment(1);
                    tracing::debug!(%peer, "TLS handshake timed out");
                }
            }
        }
    }
}

async fn serve_http<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    settings: Arc<EdgeSettings>,
    activity: Arc<Activity>,
    shutdown: CancellationToken,
    force: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let (activity, settings) = (activity.clone(), settings.clone());
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let (app, activity, settings) = (app.clone(), activity.clone(), settings.clone());
            async move { Ok::<_, Infallible>(answer(app, request, peer, activity, &settings).await) }
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.keep_alive(true)
        // The idle and header-read bounds are this module's (see `Activity`), which tells
        // an idle connection from a slow request head; hyper's own timer would measure both
        // as one.
        .header_read_timeout(None::<Duration>)
        .max_buf_size(settings.max_header_bytes.max(8192));
    let connection = http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        let deadline = activity.deadline(&settings);
        let expiry = async {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            _ = activity.changed.notified() => {}
            _ = expiry => {
                if let Some((at, phase)) = activity.deadline(&settings) {
                    if at <= Instant::now() {
                        metrics::counter!("airtext_connections_timed_out_total", "phase" => phase.name())
                            .increment(1);
                        tracing::debug!(%peer, phase = phase.name(), "closing the connection");
                        return;
                    }
                }
            }
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = force.cancelled() => return,
        }
    }
}

/// One request through the router: the client's address in, `Connection: close` out when
/// the body was left unread, and the request counted by route and status.
async fn answer(
    app: Router,
    request: Request<Incoming>,
    peer: SocketAddr,
    activity: Arc<Activity>,
    settings: &EdgeSettings,
) -> Response<Body> {
    let started = std::time::Instant::now();
    let in_flight = activity.request_started();
    let client =
        settings
            .trusted_proxies
            .client(peer.ip(), request.headers(), settings.forwarded_header);
    let method = request.method().clone();
    let body_read = Arc::new(AtomicBool::new(false));
    let had_body = !http_body::Body::is_end_stream(request.body());
    let mut request = request.map(|body| {
        Body::new(ReadToEnd {
            inner: body,
            done: body_read.clone(),
        })
    });
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(client, peer.port())));
    let mut response = match app.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if had_body && !body_read.load(Ordering::Acquire) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        activity.upgraded();
    }
    let route = response
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    crate::http::metrics::record_request(&method, &route, response.status(), started.elapsed());
    response.map(|body| {
        Body::new(Finished {
            inner: body,
            _in_flight: in_flight,
        })
    })
}

/// What a connection is doing, for its idle and header-read deadlines.
#[derive(Debug)]
struct Activity {
    state: Mutex<ActivityState>,
    /// Woken when a deadline may have moved earlier or appeared.
    changed: Notify,
}

#[derive(Debug)]
struct ActivityState {
    in_flight: u32,
    upgraded: bool,
    /// When the connection last became idle (accepted, or its last response finished).
    idle_since: Instant,
    /// When the first byte after `idle_since` arrived: a request head is on its way.
    head_started: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Idle,
    HeaderRead,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::HeaderRead => "header_read",
        }
    }
}

impl Activity {
    fn new() -> Activity {
        Activity {
            state: Mutex::new(ActivityState {
                in_flight: 0,
                upgraded: false,
                idle_since: Instant::now(),
                head_started: None,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ActivityState> {
        // The state is a few plain fields, consistent after any panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn deadline(&self, settings: &EdgeSettings) -> Option<(Instant, Phase)> {
        let state = self.lock();
        if state.upgraded || state.in_flight > 0 {
            return None;
        }
        Some(match state.head_started {
            Some(at) => (at + settings.header_read_timeout, Phase::HeaderRead),
            None => (state.idle_since + settings.idle_timeout, Phase::Idle),
        })
    }

    fn bytes_arrived(&self) {
        let mut state = self.lock();
        if state.in_flight == 0 && state.head_started.is_none() {
            state.head_started = Some(Instant::now());
            drop(state);
            self.changed.notify_one();
        }
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        let mut state = self.lock();
        state.in_flight += 1;
        state.head_started = None;
        InFlight(self.clone())
    }

    fn request_finished(&self) {
        {
            let mut state = self.lock();
            state.in_flight = state.in_flight.saturating_sub(1);
        }
        self.became_idle();
    }

    /// Waiting for a request from now on (when none is in flight).
    fn became_idle(&self) {
        let mut state = self.lock();
        state.idle_since = Instant::now();
        state.head_started = None;
        drop(state);
        self.changed.notify_one();
    }

    fn upgraded(&self) {
        self.lock().upgraded = true;
        self.changed.notify_one();
    }
}

/// A request being answered: ends when its response body is written (or dropped).
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// Open connections, for `/metrics`.
#[derive(Debug)]
struct OpenGauge;

impl OpenGauge {
    fn new() -> OpenGauge {
        metrics::gauge!("airtext_connections_open").increment(1.0);
        OpenGauge
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        metrics::gauge!("airtext_connections_open").decrement(1.0);
    }
}

/// The socket, noting arriving bytes in its [`Activity`] and holding the connection's slot
/// (and its place in `airtext_connections_open`) for as long as it lives, through a
/// WebSocket upgrade too.
#[derive(Debug)]
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
    _slot: OwnedSemaphorePermit,
    _open: OpenGauge,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.bytes_arrived();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A request body that notes when it was read to its end.
#[derive(Debug)]
struct ReadToEnd {
    inner: Incoming,
    done: Arc<AtomicBool>,
}

impl http_body::Body for ReadToEnd {
    type Data = axum::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.done.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that ends its request's [`InFlight`] when written or dropped.
#[derive(Debug)]
struct Finished {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Finished {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_cap_leaves_descriptors_for_the_rest() {
        assert_eq!(super::default_max_connections(Some(1024)), 768);
        assert_eq!(super::default_max_connections(Some(20)), 64);
        assert_eq!(super::default_max_connections(None), 10_000);
        let config = crate::config::Config {
            connections: crate::config::ConnectionLimits {
                max: usize::MAX,
                ..Default::default()
            },
            ..Default::default()
        };
        let settings = super::EdgeSettings::from_config(&config, Some(1024));
        assert_eq!(
            settings.max_connections,
            tokio::sync::Semaphore::MAX_PERMITS
        );
    }
}
