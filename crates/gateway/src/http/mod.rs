//! API v1 over HTTP: one module per resource, each contributing its routes (with their
//! OpenAPI descriptions) through [`router`].
//!
//! Cross-cutting layers, applied once in [`router`]: a request id on every request and in every
//! log line of it, a body limit (64 KiB by default), a timeout, and JSON errors for everything
//! axum itself would answer in plain text (unknown path, wrong method). What no API route
//! matches goes to [`portal`], the web app, which answers API paths with that JSON 404.

pub mod accounts;
pub mod carriers;
pub mod compose;
pub mod contacts;
pub mod conversations;
pub mod extract;
pub mod fields;
pub mod health;
pub mod identities;
pub mod lookup;
pub mod me;
pub mod messages;
pub mod metrics;
pub mod numbers;
pub mod openapi;
pub mod passwords;
pub mod portal;
pub mod record;
pub mod search;
pub mod sessions;
pub mod simulator;
pub mod stream;
pub mod sync;

use std::sync::Arc;

use airtext_api::ErrorCode;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request, StatusCode};
use axum::Router;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

use crate::carriers::simulator::Simulator;
use crate::carriers::Carrier;
use crate::config::Config;
use crate::error::ApiError;
use crate::mail::Mailer;
use crate::push::PushHub;
use crate::queue::QueueInlet;
use crate::rate_limit::RateLimiter;
use crate::store::SharedStore;

/// What every handler can reach: the gateway's [`Services`] behind one `Arc`.
///
/// Axum clones the state for every request (more than once), and so does the queue for every
/// text it sends: one reference count to bump, where cloning `Services` itself bumped one per
/// field, each a cache line both cores fight over (4% of the runtime's CPU under load,
/// docs/benchmarks.md).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The parts of a running gateway that handlers and background tasks share.
#[derive(Debug)]
pub struct Services {
    pub store: SharedStore,
    pub config: Arc<Config>,
    /// Reads addresses in the region of `default_region`, each spelling once.
    pub addresses: Arc<crate::addresses::AddressReader>,
    /// The carriers, in configuration order (the simulator among them when it runs).
    pub carriers: Arc<[Arc<dyn Carrier>]>,
    /// Least-cost routing over those carriers, with their circuit breakers.
    pub lcr: Arc<crate::lcr::Lcr>,
    /// The simulator carrier, when it runs (its demo endpoints 404 otherwise).
    pub simulator: Option<Arc<Simulator>>,
    /// The Twilio carriers by name, for their signed webhooks.
    pub twilio: Arc<std::collections::HashMap<String, Arc<crate::carriers::twilio::TwilioCarrier>>>,
    pub mailer: Arc<dyn Mailer>,
    pub push: PushHub,
    pub rate_limits: Arc<RateLimiter>,
    /// How queued texts reach the outbound worker (handed over, or a wake to claim them).
    pub queue: QueueInlet,
    /// Cancelled when the gateway shuts down (ends WebSocket streams).
    pub shutdown: CancellationToken,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every route of API v1 with its OpenAPI description.
pub fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .merge(health::router())
        .merge(accounts::router())
        .merge(passwords::router())
        .merge(sessions::router())
        .merge(me::router())
        .merge(numbers::router())
        .merge(identities::router())
        .merge(messages::router())
        .merge(compose::router())
        .merge(record::router())
        .merge(conversations::router())
        .merge(search::router())
        .merge(lookup::router())
        .merge(contacts::router())
        .merge(sync::router())
        .merge(stream::router())
        .merge(simulator::router())
        .merge(carriers::router())
}

/// The whole HTTP service.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = api_router().split_for_parts();
    let openapi = Arc::new(openapi);
    let max_request_bytes = state.config.limits.max_request_bytes;
    let timeout = state.config.request_timeout();
    api.route(
        "/v1/openapi.json",
        axum::routing::get(move || {
            let openapi = Arc::clone(&openapi);
            async move { axum::Json(openapi.as_ref().clone()) }
        }),
    )
    .fallback(portal::fallback)
    .method_not_allowed_fallback(method_not_allowed)
    .with_state(state)
    .layer(DefaultBodyLimit::max(max_request_bytes))
    .layer(tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::SERVICE_UNAVAILABLE,
        timeout,
    ))
    .layer(PropagateRequestIdLayer::new(REQUEST_ID))
    .layer(
        TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let id = request
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            // The client as resolved through trusted proxies (see `server::client_addr`).
            let client = request
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map_or_else(|| "-".to_owned(), |info| info.0.ip().to_string());
            tracing::info_span!("request", id, client, method = %request.method(), path = %request.uri().path())
        }),
    )
    .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such endpoint: see /v1/openapi.json for the API",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "this endpoint does not take that method: see /v1/openapi.json",
    )
}
