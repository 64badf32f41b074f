//! Emergency numbers: what a text must never be sent to.
//!
//! Airtext texts through carriers and other people's phones, with no location and no
//! guarantee of delivery time, so a text to emergency services could be lost when it matters
//! most. Sends to these numbers are refused, with a message telling the user to call or text
//! emergency services from a phone.
//!
//! The list is libphonenumber's: every emergency number of 5 digits or fewer that its
//! short-number metadata (`ShortNumberMetadata.xml`, shipped with the `phonenumber` crate,
//! release 9.0.33) gives for any country or territory. The crate reads only the general
//! numbering plans at run time, so the numbers are expanded from the metadata's patterns
//! into [`EMERGENCY_NUMBERS`], with the numbers every GSM phone treats as emergency numbers
//! (3GPP TS 22.101: `112` and `911` always; `000`, `08`, `110`, `999`, `118` and `119`
//! without a SIM), of which only `08` is not in the metadata. Left out: `211`, `311` and `511` (Barbados's police, fire and
//! ambulance, but community, city and traffic information lines in the rest of the North
//! American plan) and Gabon's `1300`–`1399` (a pattern wider than the numbers it serves).
//!
//! A number is matched on its digits as typed (`9-1-1`, `9 1 1` and `(911)` are `911`),
//! without a `+`: a number written internationally is never an emergency short number. The
//! whole list applies whatever the gateway's region, since one gateway serves numbers in
//! several countries, and none of these is anyone's phone.

/// Emergency numbers by their digits, sorted (see the module's documentation for the source).
pub const EMERGENCY_NUMBERS: &[&str] = &[
    "000", "001", "002", "003", "01", "011", "019", "02", "022", "03", "033", "050", "060", "065",
    "066", "068", "08", "080", "085", "088", "100", "101", "10111", "10177", "102", "103", "104",
    "105", "106", "107", "108", "110", "111", "112", "1122", "113", "114", "115", "116", "117",
    "118", "119", "120", "122", "1220", "123", "124", "125", "127", "128", "129", "1298", "13",
    "130", "131", "132", "133", "14", "140", "144", "1444", "15", "150", "151", "152", "153",
    "154", "155", "156", "157", "158", "159", "16", "160", "166", "1669", "17", "170", "171",
    "172", "1730", "175", "177", "18", "180", "188", "19", "190", "191", "192", "193", "194",
    "195", "197", "198", "199", "2611", "333", "355", "555", "666", "819", "888", "90", "90000",
    "901", "902", "903", "91", "911", "912", "913", "917", "919", "92", "922", "93", "933", "939",
    "94", "955", "977", "990", "991", "992", "993", "994", "995", "996", "997", "998", "999",
    "9999",
];

/// Punctuation people put in a number (as the address parser skips it).
const PUNCTUATION: &[char] = &[' ', '-', '.', '(', ')', '/', '\u{a0}'];

/// Whether `input`, as typed, is an emergency number: its digits, punctuation aside, are one
/// of [`EMERGENCY_NUMBERS`]. Anything with a `+`, a letter or other characters is not.
pub fn is_emergency_number(input: &str) -> bool {
    let trimmed = input.trim();
    if trimmed.is_empty() || trimmed.len() > 32 {
        return false;
    }
    let mut digits = String::with_capacity(8);
    for c in trimmed.chars() {
        match c {
            '0'..='9' => digits.push(c),
            c if PUNCTUATION.contains(&c) => {}
            _ => return false,
        }
    }
    EMERGENCY_NUMBERS.binary_search(&digits.as_str()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emergency_numbers_are_recognised_however_typed() {
        for input in [
            "911", "112", "999", "000", "110", "119", "118", "08", "100", "101", "102", "108",
            "15", "17", "18", "190", "191", "192", "193", "9-1-1", "9 1 1", " (911) ", "1.1.2",
            "10111",
        ] {
            assert!(is_emergency_number(input), "{input:?}");
        }
    }

    #[test]
    fn other_numbers_and_addresses_are_not() {
        for input in [
            "+1911",
            "+44 999",
            "9110",
            "12345",
            "898287",
            "+14155550100",
            "311",
            "(415) 555-0100",
            "@alice",
            "911@example.org",
            "",
            "9",
            "91a1",
        ] {
            assert!(!is_emergency_number(input), "{input:?}");
        }
    }

    #[test]
    fn the_list_is_sorted_digits() {
        assert!(EMERGENCY_NUMBERS
            .iter()
            .zip(EMERGENCY_NUMBERS.iter().skip(1))
            .all(|(a, b)| a < b));
        for number in EMERGENCY_NUMBERS {
            assert!(
                !number.is_empty() && number.chars().all(|c| c.is_ascii_digit()),
                "{number:?}"
            );
        }
    }
}
