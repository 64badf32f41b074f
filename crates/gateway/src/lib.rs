//! The Airtext gateway.
//!
//! A map of the crate (DESIGN.md has the reasons):
//! - [`config`]: defaults → TOML file → environment and flags;
//! - [`store`]: the [`store::Store`] trait with its SQLite and PostgreSQL engines;
//! - [`http`]: API v1, one module per resource, and the OpenAPI document;
//! - [`routing`]: where a message goes (DID → verified phone → username/e-mail → carrier);
//! - [`queue`]: the worker that hands out-of-network messages to carriers;
//! - [`carriers`]: the `Carrier` trait and its implementations (the simulator today);
//! - [`push`]: live fan-out of log hints to each account's WebSocket connections;
//! - [`mail`]: e-mail for verification codes (SMTP, or the simulator's outbox);
//! - [`server`]: wiring it all together, serving, and shutting down gracefully.

pub mod carriers;
pub mod config;
pub mod error;
pub mod http;
pub mod mail;
pub mod push;
pub mod queue;
pub mod rate_limit;
pub mod routing;
pub mod server;
pub mod store;

pub use config::Config;
pub use error::{ApiError, ApiResult};
pub use server::{Gateway, RunningGateway};
