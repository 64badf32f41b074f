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

impl TextPlan {
    /// The plan of `text`, as `airtext-sms` decides it: what the gateway's
    /// `POST /v1/messages/plan` answers and what the app's composer shows offline.
    pub fn of(text: &str) -> TextPlan {
        use airtext_sms::plan::Encoding as SmsEncoding;
        let plan = airtext_sms::plan(text);
        let mut ucs2_characters: Vec<String> = Vec::new();
        if plan.encoding == SmsEncoding::Ucs2 {
            for c in text.chars() {
                let name = c.to_string();
                if SmsEncoding::Gsm7.units_of(c).is_none() && !ucs2_characters.contains(&name) {
                    ucs2_characters.push(name);
                }
            }
        }
        TextPlan {
            encoding: match plan.encoding {
                SmsEncoding::Gsm7 => Encoding::Gsm7,
                SmsEncoding::Ucs2 => Encoding::Ucs2,
            },
            segments: u32::try_from(plan.segment_count()).unwrap_or(u32::MAX),
            chars_left: u32::try_from(plan.chars_left).unwrap_or(u32::MAX),
            parts: plan.segments,
            ucs2_characters,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_characters_that_force_ucs2_once_each() {
        let plan = TextPlan::of("Hello 😀 and ü and 😀");
        assert_eq!(plan.encoding, Encoding::Ucs2);
        // ü is in the GSM default alphabet; only the emoji forces UCS-2.
        assert_eq!(plan.ucs2_characters, vec!["😀".to_owned()]);
        let plan = TextPlan::of("Plain text");
        assert_eq!(plan.encoding, Encoding::Gsm7);
        assert!(plan.ucs2_characters.is_empty());
        assert_eq!(plan.segments, 1);
        assert_eq!(plan.chars_left, 150);
        assert_eq!(plan.parts, vec!["Plain text".to_owned()]);
        let empty = TextPlan::of("");
        assert_eq!(empty.segments, 0);
    }
}
