//! The Airtext client core: everything the app does except drawing it.
//!
//! - [`cellular`]: the device's own SMS path (the [`cellular::Cellular`] trait and backends).
//! - [`cli`]: the `airtext` command line.

pub mod cellular;
pub mod cli;
