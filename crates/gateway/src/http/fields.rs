//! What a request's strings may hold, checked once at the edge for every route.
//!
//! Identifiers (usernames, phone numbers, e-mail addresses, device and contact names, ids,
//! codes, query and path parameters) hold no control character at all: a NUL, an escape or
//! a line break in a username is never meant, PostgreSQL cannot store a NUL in `text`, and
//! a control character in a name reaches other people's terminals. Free text (a message's
//! `body`, the `text` to plan, a `password`) may hold line breaks and tabs and anything
//! else, except a NUL, which no store keeps.
//!
//! [`check`] is the one rule. The extractors in [`super::extract`] apply it to every string
//! of every JSON body, query string and path, so no handler can forget it, and the answer
//! is a 400 `invalid_field` that names the field and the character.

use airtext_api::ErrorCode;
use axum::http::StatusCode;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// JSON keys whose strings are free text rather than identifiers.
const FREE_TEXT: [&str; 3] = ["body", "text", "password"];

/// What a field holds, which decides the characters it may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A name, address, id or code: no control character.
    Identifier,
    /// Free text: anything but NUL.
    Text,
}

impl FieldKind {
    /// The kind of the JSON field named `key`.
    pub fn of_key(key: &str) -> FieldKind {
        if FREE_TEXT.contains(&key) {
            FieldKind::Text
        } else {
            FieldKind::Identifier
        }
    }

    fn refuses(self, c: char) -> bool {
        match self {
            FieldKind::Identifier => c.is_control(),
            FieldKind::Text => c == '\0',
        }
    }
}

/// The one rule: `value` of `field` may hold no character its kind refuses. The 400 names
/// the field and the character (as `U+XXXX`, since it does not print).
pub fn check(field: &str, value: &str, kind: FieldKind) -> ApiResult<()> {
    let Some(bad) = value.chars().find(|&c| kind.refuses(c)) else {
        return Ok(());
    };
    let allowed = match kind {
        FieldKind::Identifier => "it cannot contain control characters",
        FieldKind::Text => "it cannot contain NUL characters",
    };
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidField,
        format!(
            "{field}: {allowed} (found U+{:04X}); remove it",
            u32::from(bad)
        ),
    ))
}

/// Checks every string of a JSON body (keys name the fields; array items are `field[i]`).
/// The bytes are the body as sent; most bodies hold neither an escape nor a C1 character,
/// and those are passed without parsing them a second time.
pub fn check_json(bytes: &[u8]) -> ApiResult<()> {
    if !may_hold_control(bytes) {
        return Ok(());
    }
    // The body already parsed as the route's type, so it is JSON.
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return Ok(());
    };
    walk(&value, "", FieldKind::Identifier)
}

/// Checks name/value pairs (a query string or a path's parameters): all identifiers.
pub fn check_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> ApiResult<()> {
    pairs
        .into_iter()
        .try_for_each(|(name, value)| check(name, value, FieldKind::Identifier))
}

/// Whether JSON text can hold a control character in a string: only as an escape (a raw
/// C0 character is not JSON) or as a raw C1 character (UTF-8 `C2 80`–`C2 9F`).
fn may_hold_control(bytes: &[u8]) -> bool {
    bytes
        .windows(2)
        .any(|pair| pair[0] == b'\\' || (pair[0] == 0xC2 && (0x80..=0x9F).contains(&pair[1])))
}

fn walk(value: &Value, path: &str, kind: FieldKind) -> ApiResult<()> {
    match value {
        Value::String(s) => check(if path.is_empty() { "body" } else { path }, s, kind),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| walk(item, &format!("{path}[{i}]"), kind)),
        Value::Object(fields) => fields.iter().try_for_each(|(key, item)| {
            check("a field name", key, FieldKind::Identifier)?;
            let path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            walk(item, &path, FieldKind::of_key(key))
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn refused(json: &str) -> String {
        match check_json(json.as_bytes()) {
            Err(ApiError::Client { message, code, .. }) => {
                assert_eq!(code, ErrorCode::InvalidField);
                message
            }
            other => panic!("{json}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn identifiers_hold_no_control_character() {
        assert!(refused(r#"{"username":"al\u0000ice"}"#).starts_with("username: "));
        assert!(refused(r#"{"username":"al\u0000ice"}"#).contains("U+0000"));
        assert!(refused(r#"{"device_name":"a\nb"}"#).contains("U+000A"));
        assert!(refused(r#"{"value":"x\u001b[31m"}"#).contains("U+001B"));
        assert!(refused("{\"name\":\"a\u{85}b\"}").contains("U+0085"));
        assert!(refused(r#"{"contacts":[{"name":"ok"},{"name":"\t"}]}"#)
            .starts_with("contacts[1].name: "));
        assert!(check_json(r#"{"username":"alice","to":"+1 (415) 555-0100"}"#.as_bytes()).is_ok());
        assert!(check_json(r#"{"name":"Zoë \"Z\" 🎉"}"#.as_bytes()).is_ok());
    }

    #[test]
    fn free_text_refuses_only_nul() {
        assert!(check_json(r#"{"body":"line one\nline two\ttab\u001b"}"#.as_bytes()).is_ok());
        assert!(check_json(r#"{"password":"a\tb"}"#.as_bytes()).is_ok());
        assert!(refused(r#"{"body":"a\u0000b"}"#).starts_with("body: "));
        assert!(refused(r#"{"text":"\u0000"}"#).starts_with("text: "));
        assert!(refused(r#"{"password":"\u0000"}"#).starts_with("password: "));
    }

    #[test]
    fn pairs_are_identifiers() {
        assert!(check_pairs([("to", "+14155550100")]).is_ok());
        assert!(check_pairs([("to", "a\0")]).is_err());
    }
}
