//! The Airtext gateway.
//!
//! A map of the crate (DESIGN.md has the reasons):
//! - [`addresses`]: phone numbers, usernames and e-mail addresses as typed, read once;
//! - [`config`]: defaults → TOML file → environment and flags;
//! - [`store`]: the [`store::Store`] trait with its SQLite and PostgreSQL engines, and the
//!   domain rules both engines apply ([`store::rules`]);
//! - [`http`]: API v1, one module per resource, the OpenAPI document, and what every request's
//!   strings may hold ([`http::fields`]);
//! - [`error`]: [`ApiError`], the one error of every handler, and how store errors map to it;
//! - [`routing`]: where a message goes (DID → verified phone → username/e-mail → carrier);
//! - [`queue`]: the worker that hands out-of-network messages to carriers;
//! - [`lcr`]: least-cost routing over the carriers, with a circuit breaker per carrier;
//! - [`opt_out`]: STOP / START / HELP from outside phones, and their automatic replies;
//! - [`carriers`]: the `Carrier` trait and its implementations (the simulator, SMPP and
//!   Twilio), the channel their reports come back on, and the ingestion that stores those
//!   reports ([`carriers::ingest`]);
//! - [`rate_limit`]: token buckets per kind and key, in memory or shared on PostgreSQL;
//! - [`push`]: live fan-out of log hints to each account's WebSocket connections;
//! - [`mail`]: e-mail for verification codes (SMTP, or the simulator's outbox);
//! - [`server`]: wiring it all together, serving, and shutting down gracefully; its
//!   connections (caps, timeouts, TLS, the client's address behind proxies);
//! - [`http::metrics`]: `/metrics` for Prometheus, on its own listener.

pub mod addresses;
pub mod carriers;
pub mod config;
pub mod error;
pub mod http;
pub mod lcr;
pub mod mail;
pub mod opt_out;
pub mod push;
pub mod queue;
pub mod rate_limit;
pub mod routing;
pub mod server;
pub mod store;

pub use config::Config;
pub use error::{ApiError, ApiResult};
pub use server::{Gateway, RunningGateway};
