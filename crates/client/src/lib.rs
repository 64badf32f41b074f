//! The Airtext client core: everything the app does except drawing it.
//!
//! - [`cache`]: the local SQLite cache (one file per signed-in profile, FTS5 search).
//! - [`cellular`]: the device's own SMS path (the [`cellular::Cellular`] trait and backends).
//! - [`events`]: typed change notifications for the UI.
//! - [`path`]: the per-contact path policy (cloud or cellular).
//! - [`cli`]: the `airtext` command line.

pub mod cache;
pub mod cellular;
pub mod cli;
pub mod cloud;
pub mod error;
pub mod events;
pub mod path;

pub use error::{Error, Result};
