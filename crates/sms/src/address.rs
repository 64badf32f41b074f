//! Addresses: what a user may type in the "to" field, normalised to one canonical form.
//!
//! Invariants:
//! - a phone number is stored and compared only in E.164 (`+14155550100`);
//! - a short code (3–8 digits, no `+`) stays as typed digits; it is national and never gets a
//!   country code glued on;
//! - a username is stored as `@` + lower case; an e-mail address is stored lower case.
//!
//! Phone numbers are parsed by the `phonenumber` crate (Google's libphonenumber metadata), with
//! the caller's default region for national formats. Without a region, only international
//! (`+…`) input is accepted, because a bare `5551234` could belong to any country.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// A two-letter ISO 3166 region code, such as `US` or `GB`, used to read national numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region(phonenumber::country::Id);

impl Region {
    /// The ISO 3166-1 alpha-2 code, upper case.
    pub fn code(&self) -> &str {
        self.0.as_ref()
    }

    /// The country calling code, e.g. `1` for `US`.
    pub fn calling_code(self) -> Option<u16> {
        phonenumber::metadata::DATABASE
            .by_id(self.0.as_ref())
            .map(|meta| meta.country_code())
    }
}

impl FromStr for Region {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        phonenumber::country::Id::from_str(&upper)
            .map(Region)
            .map_err(|_| AddressError::UnknownRegion(s.to_owned()))
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A normalised address. `Display` gives the canonical text that is stored and compared.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A phone number in E.164, with its leading `+`.
    Phone(String),
    /// A carrier short code: 3 to 8 digits, national.
    ShortCode(String),
    /// An account's username, with its leading `@`, lower case.
    Username(String),
    /// An e-mail address, lower case.
    Email(String),
}

impl Address {
    /// Parses and normalises what a user typed.
    ///
    /// `@name` is a username; anything with an `@` after the first character is an e-mail
    /// address; the rest must be a phone number or a short code.
    pub fn parse(input: &str, default_region: Option<Region>) -> Result<Self, AddressError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(AddressError::Empty);
        }
        if let Some(name) = trimmed.strip_prefix('@') {
            return parse_username(name).map(Address::Username);
        }
        if trimmed.contains('@') {
            return parse_email(trimmed).map(Address::Email);
        }
        parse_phone(trimmed, default_region)
    }

    /// The canonical text of the address, as stored.
    pub fn as_str(&self) -> &str {
        match self {
            Address::Phone(s)
            | Address::ShortCode(s)
            | Address::Username(s)
            | Address::Email(s) => s,
        }
    }

    /// The username without its `@`, for a username address.
    pub fn username(&self) -> Option<&str> {
        match self {
            Address::Username(s) => s.strip_prefix('@'),
            _ => None,
        }
    }

    /// Whether this address names a phone (E.164 number or short code): something a carrier can reach.
    pub fn is_phone_like(&self) -> bool {
        matches!(self, Address::Phone(_) | Address::ShortCode(_))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an address was refused. Each message says what to type instead.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddressError {
    #[error("the address is empty: give a phone number, @username or e-mail address")]
    Empty,
    #[error("{0:?} is not a known country: use a two-letter code such as US or GB")]
    UnknownRegion(String),
    #[error("{0:?} is not a phone number: use international format such as +14155550100")]
    NotAPhoneNumber(String),
    #[error(
        "{0:?} has no country code: start it with + and the country code, such as +1 for the US"
    )]
    NeedsCountryCode(String),
    #[error("{0:?} is not a valid number in its country's numbering plan")]
    InvalidNumber(String),
    #[error("{0:?} is not a valid username: use 3 to 32 letters, digits, '_' or '.'")]
    InvalidUsername(String),
    #[error("{0:?} is not a valid e-mail address")]
    InvalidEmail(String),
}

/// Usernames: 3–32 of `[a-z0-9_.]`, starting with a letter or digit, case-insensitive.
pub fn parse_username(name: &str) -> Result<String, AddressError> {
    let lower = name.trim().to_ascii_lowercase();
    let valid_len = (3..=32).contains(&lower.len());
    let valid_chars = lower
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
    let valid_start = lower
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if valid_len && valid_chars && valid_start {
        Ok(format!("@{lower}"))
    } else {
        Err(AddressError::InvalidUsername(name.to_owned()))
    }
}

/// E-mail addresses: one `@`, a non-empty local part, a dotted domain, no spaces; lower-cased
/// whole (providers that treat the local part case-sensitively are vanishingly rare, and two
/// spellings of one mailbox must not become two conversations).
pub fn parse_email(input: &str) -> Result<String, AddressError> {
    let lower = input.trim().to_lowercase();
    let bad = || AddressError::InvalidEmail(input.to_owned());
    let (local, domain) = lower.split_once('@').ok_or_else(bad)?;
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.contains(char::is_whitespace)
        && !local.contains('@');
    if domain_ok && local_ok && lower.len() <= 254 {
        Ok(lower)
    } else {
        Err(bad())
    }
}

const PHONE_PUNCTUATION: &[char] = &[' ', '-', '.', '(', ')', '/', '\u{a0}'];

fn parse_phone(input: &str, default_region: Option<Region>) -> Result<Address, AddressError> {
    let international = input.starts_with('+');
    let digits: String = input
        .chars()
        .filter(|c| !PHONE_PUNCTUATION.contains(c) && *c != '+')
        .collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) || digits.len() > 17 {
        return Err(AddressError::NotAPhoneNumber(input.to_owned()));
    }
    // Short codes are national and have no `+`: keep them as the digits. Seven or more bare
    // digits are a subscriber number (`5551234`), which needs a region to mean anything.
    if !international && (3..=6).contains(&digits.len()) && !input.contains(PHONE_PUNCTUATION) {
        return Ok(Address::ShortCode(digits));
    }
    if !international && default_region.is_none() {
        return Err(AddressError::NeedsCountryCode(input.to_owned()));
    }
    let region = if international {
        None
    } else {
        default_region.map(|r| r.0)
    };
    let number = phonenumber::parse(region, input)
        .map_err(|_| AddressError::NotAPhoneNumber(input.to_owned()))?;
    if !phonenumber::is_valid(&number) {
        return Err(AddressError::InvalidNumber(input.to_owned()));
    }
    Ok(Address::Phone(
        number.format().mode(phonenumber::Mode::E164).to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us() -> Option<Region> {
        Some("US".parse().ok()).flatten()
    }

    #[test]
    fn national_number_with_region_becomes_e164() {
        assert_eq!(
            Address::parse("(415) 555-0100", us()),
            Ok(Address::Phone("+14155550100".into()))
        );
    }

    #[test]
    fn national_number_without_region_is_refused() {
        assert_eq!(
            Address::parse("5551234", None),
            Err(AddressError::NeedsCountryCode("5551234".into()))
        );
    }

    #[test]
    fn international_number_needs_no_region() {
        assert_eq!(
            Address::parse("+1 415 555 0100", None),
            Ok(Address::Phone("+14155550100".into()))
        );
        assert_eq!(
            Address::parse("+44 7911 123456", None),
            Ok(Address::Phone("+447911123456".into()))
        );
    }

    #[test]
    fn invalid_numbers_are_refused() {
        assert!(matches!(
            Address::parse("+1415555010", None),
            Err(AddressError::InvalidNumber(_))
        ));
        assert!(matches!(
            Address::parse("+14abc", None),
            Err(AddressError::NotAPhoneNumber(_))
        ));
    }

    #[test]
    fn short_codes_are_recognised() {
        assert_eq!(
            Address::parse("12345", us()),
            Ok(Address::ShortCode("12345".into()))
        );
        assert_eq!(
            Address::parse("898287", None),
            Ok(Address::ShortCode("898287".into()))
        );
    }

    #[test]
    fn usernames_and_emails_are_lower_cased() {
        assert_eq!(
            Address::parse(" @Alice ", None),
            Ok(Address::Username("@alice".into()))
        );
        assert_eq!(
            Address::parse("Bob@Example.ORG", None),
            Ok(Address::Email("bob@example.org".into()))
        );
        assert!(Address::parse("@a", None).is_err());
        assert!(Address::parse("bob@localhost", None).is_err());
        assert!(Address::parse("", None).is_err());
    }

    #[test]
    fn regions_parse_case_insensitively() {
        assert_eq!(
            "us".parse::<Region>().map(|r| r.code().to_owned()),
            Ok("US".to_owned())
        );
        assert!("XX".parse::<Region>().is_err());
        assert_eq!(
            "GB".parse::<Region>().ok().and_then(Region::calling_code),
            Some(44)
        );
    }
}
