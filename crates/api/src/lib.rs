//! The wire contract of API v1, shared by the gateway and every client.
//!
//! Only data and pure rules live here (serde types, the error-code vocabulary, the send-status
//! reducer), so the gateway, the client core, the CLI and the app's TypeScript bindings agree on
//! one definition. Field names are the contract: extend freely, rename never (that is `/v2`).
//!
//! Requests are strict (`deny_unknown_fields`: a misspelt field is an error, not a silent
//! default); replies and events are lenient, so an older client keeps working when the gateway
//! adds a field or an event type.

pub mod accounts;
pub mod compose;
pub mod contacts;
pub mod conversations;
pub mod error;
pub mod identities;
pub mod ids;
pub mod messages;
pub mod numbers;
pub mod simulator;
pub mod status;
pub mod sync;

pub use error::{ErrorBody, ErrorCode};
pub use ids::{AccountId, ClientId, ConversationId, DeviceId, IdentityId, MessageId};
pub use status::SendStatus;

/// Timestamps cross the wire as RFC 3339 UTC.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
