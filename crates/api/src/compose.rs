//! What the composer shows while a person types: how the text will go on the air.

use serde::{Deserialize, Serialize};

use crate::messages::Encoding;

/// `POST /v1/messages/plan`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct PlanText {
    pub text: String,
}

/// How a text will be sent as SMS (decided by `airtext-sms`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct TextPlan {
    pub encoding: Encoding,
    /// Number of SMS segments (0 for an empty text).
    pub segments: u32,
    /// The exact text of each segment.
    pub parts: Vec<String>,
    /// Characters (septets or UTF-16 units) left in the current segment.
    pub chars_left: u32,
    /// The characters that force UCS-2 (empty for GSM-7), each once, in order of appearance.
    pub ucs2_characters: Vec<String>,
}
