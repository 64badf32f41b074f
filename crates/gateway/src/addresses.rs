//! Addresses as people and carriers type them, each distinct spelling read once.
//!
//! Reading a phone number through libphonenumber's metadata (the `phonenumber` crate) runs
//! several regular expressions: on the out-of-network benchmark it was 8.5% of the gateway's
//! CPU, more than every store read of a send together (docs/benchmarks.md). People text the
//! same few numbers again and again, and carriers report the same senders, so the reading of
//! each spelling is kept in a bounded cache.
//!
//! Invariants:
//! - a cached answer is exactly what [`Address::parse`] gives for that input and this
//!   gateway's region: parsing is a pure function of the two, and the region is fixed for the
//!   life of the process;
//! - only phone numbers and short codes are kept (usernames and e-mail addresses cost a few
//!   string operations), and only successful readings: a refusal is an error path, and
//!   caching what anyone can type wrong would let them fill the cache;
//! - the cache is bounded by entries and by the length of what it keeps, so no input can grow
//!   it without limit.

use airtext_sms::{Address, AddressError, Region};
use quick_cache::sync::Cache;

/// Distinct spellings kept. A spelling and its reading take ~100 bytes: ~2 MiB at most.
pub const CAPACITY: usize = 20_000;
/// Longer inputs are read every time: no phone number written with punctuation is this long.
const LONGEST_KEPT: usize = 40;

/// Reads addresses for one region, remembering phone numbers already read.
#[derive(Debug)]
pub struct AddressReader {
    region: Region,
    read: Cache<String, Address>,
}

impl AddressReader {
    pub fn new(region: Region) -> Self {
        AddressReader {
            region,
            read: Cache::new(CAPACITY),
        }
    }

    /// The region national numbers are read in (`default_region`).
    pub fn region(&self) -> Region {
        self.region
    }

    /// [`Address::parse`] in this gateway's region.
    pub fn parse(&self, input: &str) -> Result<Address, AddressError> {
        if let Some(address) = self.read.get(input) {
            return Ok(address);
        }
        let address = Address::parse(input, Some(self.region))?;
        if address.is_phone_like() && input.len() <= LONGEST_KEPT {
            self.read.insert(input.to_owned(), address.clone());
        }
        Ok(address)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn reader() -> AddressReader {
        AddressReader::new("US".parse().expect("a region"))
    }

    #[test]
    fn a_remembered_reading_equals_a_fresh_one() {
        let reader = reader();
        for input in [
            "+14155550100",
            "(415) 555-0100",
            "415.555.0100",
            "+44 20 7946 0958",
            "12345",
            "@Alice",
            "Bob@Example.org",
        ] {
            let fresh = Address::parse(input, Some(reader.region()));
            assert_eq!(reader.parse(input), fresh, "first reading of {input:?}");
            assert_eq!(
                reader.parse(input),
                fresh,
                "remembered reading of {input:?}"
            );
        }
    }

    #[test]
    fn refusals_are_not_remembered_and_stay_refusals() {
        let reader = reader();
        for _ in 0..2 {
            assert!(reader.parse("+1 555").is_err());
        }
        assert_eq!(reader.read.len(), 0);
    }

    #[test]
    fn only_phone_like_short_inputs_are_kept() {
        let reader = reader();
        reader.parse("@alice").unwrap();
        reader.parse("alice@example.org").unwrap();
        assert_eq!(reader.read.len(), 0);
        reader.parse("+14155550100").unwrap();
        assert_eq!(reader.read.len(), 1);
        let padded = format!("+1415555{}0100", " ".repeat(LONGEST_KEPT));
        assert_eq!(reader.parse(&padded).unwrap().as_str(), "+14155550100");
        assert_eq!(reader.read.len(), 1);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let reader = reader();
        let mut read = 0;
        for area in ["212", "415", "646"] {
            for line in 0..10_000 {
                read += usize::from(reader.parse(&format!("+1{area}555{line:04}")).is_ok());
            }
        }
        assert!(
            read > CAPACITY,
            "only {read} numbers read: the test needs more than it keeps"
        );
        let kept = reader.read.len();
        assert!(kept <= CAPACITY && kept > CAPACITY / 2, "{kept} kept");
    }
}
