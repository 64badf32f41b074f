//! SMS knowledge with no I/O.
//!
//! Everything that decides how a text looks on the air lives here, so the gateway, the
//! client's modem backend and the composer preview agree byte for byte:
//! - [`address`]: E.164 phone numbers, short codes, `@usernames` and e-mail addresses, normalised.

pub mod address;

pub use address::{Address, AddressError, Region};
