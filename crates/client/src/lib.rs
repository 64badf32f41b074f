//! The Airtext client core. Today it holds the command-line front of `airtext-sms`; the local
//! cache, sync engine, outbox and path policy join it next (see DESIGN.md).

pub mod cli;
