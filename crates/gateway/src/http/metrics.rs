//! `/metrics` in Prometheus' text format, served only on `metrics_listen` (never on the API's
//! listener: the figures describe every account's traffic together).
//!
//! Invariants:
//! - requests are labelled by route template (`/v1/messages/{id}`), never the raw path, so the
//!   number of series is bounded by the API, not by what clients send; requests that match no
//!   route share `route="unmatched"`;
//! - one recorder per process (the `metrics` facade is global): several gateways in one
//!   process (tests) add to the same series;
//! - values read at scrape time (breakers, the queue's backlog) are set just before rendering.
//!
//! Series:
//! - `airtext_http_requests_total{method,route,status}`, `airtext_http_request_duration_seconds`;
//! - `airtext_connections_open`, `airtext_connections_accepted_total`,
//!   `airtext_connection_limit_reached_total`, `airtext_connections_timed_out_total{phase}`;
//! - `airtext_carrier_sends_total{carrier,outcome}`, `airtext_carrier_send_duration_seconds`,
//!   `airtext_carrier_breaker_open{carrier}`;
//! - `airtext_outbound_finished_total{outcome}` (the queue's texts: sent, retry, failed);
//! - `airtext_outbound_queue_jobs`, `airtext_outbound_queue_oldest_seconds` (read at scrape
//!   time from the store: every node's queue);
//! - `airtext_websocket_streams` (live `/v1/stream` connections);
//! - `airtext_store_commit_seconds{engine}` (recorded by the engines).

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::AppState;

/// Upper bounds of the latency buckets, in seconds: 1 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's recorder, installed on first use; `None` if another recorder was installed
/// first (then `/metrics` says so).
pub fn recorder() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let built = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .and_then(|builder| builder.install_recorder());
            match built {
                Ok(handle) => Some(handle),
                Err(error) => {
                    tracing::warn!(%error, "cannot install the metrics recorder; /metrics stays empty");
                    None
                }
            }
        })
        .as_ref()
}

/// One answered request.
pub fn record_request(method: &Method, route: &str, status: StatusCode, took: Duration) {
    let method = method_label(method);
    metrics::counter!(
        "airtext_http_requests_total",
        "method" => method,
        "route" => route.to_owned(),
        "status" => status.as_str().to_owned()
    )
    .increment(1);
    metrics::histogram!(
        "airtext_http_request_duration_seconds",
        "method" => method,
        "route" => route.to_owned()
    )
    .record(took.as_secs_f64());
}

/// Known methods by name, anything else as one label (clients choose methods).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: hands the matched route template to whoever answers the connection (the
/// request's extensions are gone by the time the response is written).
pub async fn carry_route(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(request).await;
    if let Some(route) = route {
        response.extensions_mut().insert(route);
    }
    response
}

/// A live `/v1/stream` connection, counted while it lives.
#[derive(Debug)]
pub struct LiveStream(());

impl LiveStream {
    pub fn start() -> LiveStream {
        metrics::gauge!("airtext_websocket_streams").increment(1.0);
        LiveStream(())
    }
}

impl Drop for LiveStream {
    fn drop(&mut self) {
        metrics::gauge!("airtext_websocket_streams").decrement(1.0);
    }
}

/// The metrics service: `GET /metrics` and nothing else.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(render))
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, state: AppState, shutdown: CancellationToken) {
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(error) = served {
        tracing::warn!(%error, "the metrics listener failed");
    }
}

async fn render(State(state): State<AppState>) -> Response {
    let Some(handle) = recorder() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "another metrics recorder was installed in this process\n",
        )
            .into_response();
    };
    for carrier in state.lcr.carriers() {
        let open = if state.lcr.is_open(carrier.name()) {
            1.0
        } else {
            0.0
        };
        metrics::gauge!("airtext_carrier_breaker_open", "carrier" => carrier.name().to_owned())
            .set(open);
    }
    match state.store.outbound_backlog().await {
        Ok(backlog) => {
            let age = backlog.oldest.map_or(0.0, |oldest| {
                (chrono::Utc::now() - oldest)
                    .to_std()
                    .map_or(0.0, |age| age.as_secs_f64())
            });
            metrics::gauge!("airtext_outbound_queue_jobs").set(backlog.jobs as f64);
            metrics::gauge!("airtext_outbound_queue_oldest_seconds").set(age);
        }
        Err(error) => tracing::warn!(%error, "metrics: cannot read the outbound queue's backlog"),
    }
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}
