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
//! of every JSON body, query string and path, so no handler can forget it; the routing
//! applies it to what carriers and handlers pass on. The answer is a 400 that names the
//! field and the character, with the code the field's other mistakes carry
//! (`invalid_address` for addresses, `unknown_country` for a country, `invalid_body` for a
//! message's text, `invalid_field` for the rest).

use airtext_api::ErrorCode;
use axum::http::StatusCode;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// What a field holds, which decides the characters it may contain and the code a refusal
/// carries (the one the field's other mistakes carry too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A name, id or code: no control character; `invalid_field`.
    Identifier,
    /// A phone number, username or e-mail address: no control character; `invalid_address`.
    Address,
    /// A country code: no control character; `unknown_country`.
    Country,
    /// A message's text: anything but NUL; `invalid_body`.
    Body,
    /// A password: anything but NUL (it is hashed, never shown); `invalid_field`.
    Secret,
}

impl FieldKind {
    /// The kind of the JSON field, query or path parameter named `key`.
    pub fn of_key(key: &str) -> FieldKind {
        match key {
            "body" | "text" => FieldKind::Body,
            "password" => FieldKind::Secret,
            "to" | "from" | "peer" | "address" | "value" | "number" | "email" => FieldKind::Address,
            "country" => FieldKind::Country,
            _ => FieldKind::Identifier,
        }
    }

    fn refuses(self, c: char) -> bool {
        match self {
            FieldKind::Identifier | FieldKind::Address | FieldKind::Country => c.is_control(),
            FieldKind::Body | FieldKind::Secret => c == '\0',
        }
    }

    fn code(self) -> ErrorCode {
        match self {
            FieldKind::Identifier | FieldKind::Secret => ErrorCode::InvalidField,
            FieldKind::Address => ErrorCode::InvalidAddress,
            FieldKind::Country => ErrorCode::UnknownCountry,
            FieldKind::Body => ErrorCode::InvalidBody,
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
        FieldKind::Identifier | FieldKind::Address | FieldKind::Country => {
            "it cannot contain control characters (line breaks, tabs, escapes, NUL)"
        }
        FieldKind::Body | FieldKind::Secret => "it cannot contain NUL characters",
    };
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        kind.code(),
        format!(
            "{field}: {allowed}; found U+{:04X}: remove it",
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

/// Checks name/value pairs (a query string or a path's parameters), each by its name.
pub fn check_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> ApiResult<()> {
    pairs.into_iter().try_for_each(|(name, value)| {
        check("a parameter name", name, FieldKind::Identifier)?;
        check(name, value, FieldKind::of_key(name))
    })
}

/// Whether JSON text can hold a control character in a string: only as an escape (a raw
/// C0 character is not JSON) or as a raw C1 character (UTF-8 `C2 80`–`C2 9F`).
fn may_hold_control(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .zip(bytes.iter().skip(1))
        .any(|(&first, &second)| {
            first == b'\\' || (first == 0xC2 && (0x80..=0x9F).contains(&second))
        })
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
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn refused(json: &str) -> String {
        refused_as(json).1
    }

    fn refused_as(json: &str) -> (ErrorCode, String) {
        match check_json(json.as_bytes()) {
            Err(ApiError::Client { message, code, .. }) => (code, message),
            other => panic!("{json}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn each_field_keeps_its_own_code() {
        let code = |json: &str| refused_as(json).0;
        assert_eq!(code(r#"{"device_name":"\u0000"}"#), ErrorCode::InvalidField);
        assert_eq!(code(r#"{"to":"\u0000"}"#), ErrorCode::InvalidAddress);
        assert_eq!(
            code(r#"{"value":"a\u0000@b.org"}"#),
            ErrorCode::InvalidAddress
        );
        assert_eq!(code(r#"{"body":"\u0000"}"#), ErrorCode::InvalidBody);
        assert_eq!(code(r#"{"password":"\u0000"}"#), ErrorCode::InvalidField);
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
        assert!(check_pairs([("before", "\u{1b}")]).is_err());
    }
}
