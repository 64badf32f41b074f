//! The GSM 7-bit default alphabet and its extension table (3GPP TS 23.038 §6.2.1 and
//! §6.2.1.1), and the packing of septets into octets (3GPP TS 23.038 §6.1.2.1.1).
//!
//! Text is handled here as *unpacked* septets: one septet (0x00–0x7F) per byte. That is
//! the form SMPP carries with `data_coding = 0` by default, and the form the segmenter and the
//! reassembler count in. [`pack`] and [`unpack`] turn it into, and back from, the packed form
//! that goes on the air inside a TPDU (3GPP TS 23.040 §9.2.3.24, fill bits after a UDH).
//!
//! Encoding is strict: a character is GSM-7 only if it is in the default alphabet or the
//! default extension table. No lookalike mapping (`ç` is *not* folded to `Ç`), so decoding what
//! was encoded always gives back the input. National language shift tables (§6.2.1.2) are not
//! used.

use thiserror::Error;

/// The escape to the extension table, 3GPP TS 23.038 §6.2.1 (code 0x1B of the default alphabet).
pub const ESC: u8 = 0x1B;

/// The default alphabet, 3GPP TS 23.038 §6.2.1, indexed by septet. Position 0x1B is the
/// escape; it never decodes to a character by itself (see [`decode`]).
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', ' ', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// How one character is written in GSM-7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gsm7Char {
    /// One septet of the default alphabet.
    Basic(u8),
    /// [`ESC`] followed by this septet of the extension table: two septets on the air.
    Extended(u8),
}

impl Gsm7Char {
    /// Septets this character occupies: 1, or 2 for an extension-table character.
    pub const fn septets(self) -> usize {
        match self {
            Gsm7Char::Basic(_) => 1,
            Gsm7Char::Extended(_) => 2,
        }
    }
}

/// The GSM-7 code of `c`, or `None` when `c` is not in the default alphabet or its extension
/// table (then the whole message has to go as UCS-2).
pub fn lookup(c: char) -> Option<Gsm7Char> {
    use Gsm7Char::{Basic, Extended};
    Some(match c {
        // ASCII letters and digits share their code points with the default alphabet.
        'A'..='Z' | 'a'..='z' | '0'..='9' => Basic(c as u8),
        ' ' | '!' | '"' | '#' | '%' | '&' | '\'' | '(' | ')' | '*' | '+' | ',' | '-' | '.'
        | '/' | ':' | ';' | '<' | '=' | '>' | '?' => Basic(c as u8),
        '@' => Basic(0x00),
        '£' => Basic(0x01),
        '$' => Basic(0x02),
        '¥' => Basic(0x03),
        'è' => Basic(0x04),
        'é' => Basic(0x05),
        'ù' => Basic(0x06),
        'ì' => Basic(0x07),
        'ò' => Basic(0x08),
        'Ç' => Basic(0x09),
        '\n' => Basic(0x0A),
        'Ø' => Basic(0x0B),
        'ø' => Basic(0x0C),
        '\r' => Basic(0x0D),
        'Å' => Basic(0x0E),
        'å' => Basic(0x0F),
        'Δ' => Basic(0x10),
        '_' => Basic(0x11),
        'Φ' => Basic(0x12),
        'Γ' => Basic(0x13),
        'Λ' => Basic(0x14),
        'Ω' => Basic(0x15),
        'Π' => Basic(0x16),
        'Ψ' => Basic(0x17),
        'Σ' => Basic(0x18),
        'Θ' => Basic(0x19),
        'Ξ' => Basic(0x1A),
        'Æ' => Basic(0x1C),
        'æ' => Basic(0x1D),
        'ß' => Basic(0x1E),
        'É' => Basic(0x1F),
        '¤' => Basic(0x24),
        '¡' => Basic(0x40),
        'Ä' => Basic(0x5B),
        'Ö' => Basic(0x5C),
        'Ñ' => Basic(0x5D),
        'Ü' => Basic(0x5E),
        '§' => Basic(0x5F),
        '¿' => Basic(0x60),
        'ä' => Basic(0x7B),
        'ö' => Basic(0x7C),
        'ñ' => Basic(0x7D),
        'ü' => Basic(0x7E),
        'à' => Basic(0x7F),
        // The extension table, 3GPP TS 23.038 §6.2.1.1.
        '\u{0C}' => Extended(0x0A),
        '^' => Extended(0x14),
        '{' => Extended(0x28),
        '}' => Extended(0x29),
        '\\' => Extended(0x2F),
        '[' => Extended(0x3C),
        '~' => Extended(0x3D),
        ']' => Extended(0x3E),
        '|' => Extended(0x40),
        '€' => Extended(0x65),
        _ => return None,
    })
}

/// Septets `c` occupies in GSM-7 (1 or 2), or `None` if it is not a GSM-7 character.
pub fn septets_of(c: char) -> Option<usize> {
    lookup(c).map(Gsm7Char::septets)
}

/// Whether every character of `text` is GSM-7.
pub fn is_gsm7(text: &str) -> bool {
    text.chars().all(|c| lookup(c).is_some())
}

/// Septets `text` occupies in GSM-7, or `None` if some character is not GSM-7.
pub fn septet_count(text: &str) -> Option<usize> {
    text.chars()
        .try_fold(0usize, |n, c| n.checked_add(septets_of(c)?))
}

/// The first character of `text` that GSM-7 cannot carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("{ch:?} (at character {index}) is not in the GSM 03.38 default alphabet")]
pub struct NotGsm7 {
    /// The character.
    pub ch: char,
    /// Its position, counted in characters.
    pub index: usize,
}

/// Encodes `text` as unpacked septets (one per byte, escapes included).
pub fn encode(text: &str) -> Result<Vec<u8>, NotGsm7> {
    let mut out = Vec::with_capacity(text.len());
    for (index, ch) in text.chars().enumerate() {
        match lookup(ch).ok_or(NotGsm7 { ch, index })? {
            Gsm7Char::Basic(s) => out.push(s),
            Gsm7Char::Extended(s) => {
                out.push(ESC);
                out.push(s);
            }
        }
    }
    Ok(out)
}

/// The extension-table character for `septet`, 3GPP TS 23.038 §6.2.1.1.
fn extended(septet: u8) -> Option<char> {
    Some(match septet {
        0x0A => '\u{0C}',
        0x14 => '^',
        0x28 => '{',
        0x29 => '}',
        0x2F => '\\',
        0x3C => '[',
        0x3D => '~',
        0x3E => ']',
        0x40 => '|',
        0x65 => '€',
        _ => return None,
    })
}

fn basic(septet: u8) -> char {
    BASIC
        .get(usize::from(septet & 0x7F))
        .copied()
        .unwrap_or(' ')
}

/// Decodes unpacked septets. Never fails:
/// - the high bit of each byte is ignored;
/// - `ESC` + a code the extension table does not define shows that code from the default
///   alphabet, as 3GPP TS 23.038 §6.2.1.1 requires of a receiver;
/// - `ESC ESC` (reserved for a further extension table) shows a space, per the same section;
/// - a trailing lone `ESC` is dropped.
pub fn decode(septets: &[u8]) -> String {
    let mut out = String::with_capacity(septets.len());
    let mut iter = septets.iter().map(|s| s & 0x7F);
    while let Some(s) = iter.next() {
        if s != ESC {
            out.push(basic(s));
            continue;
        }
        match iter.next() {
            None => {}
            Some(ESC) => out.push(' '),
            Some(e) => out.push(extended(e).unwrap_or_else(|| basic(e))),
        }
    }
    out
}

/// Packs unpacked septets into octets, least significant bit first, after `fill_bits` zero
/// bits (3GPP TS 23.038 §6.1.2.1.1; fill bits after a UDH: 3GPP TS 23.040 §9.2.3.24).
///
/// `fill_bits` is taken modulo 8. Spare bits at the end are zero. Bits above the seventh of
/// each input byte are ignored.
pub fn pack(septets: &[u8], fill_bits: u8) -> Vec<u8> {
    let fill = usize::from(fill_bits % 8);
    let total_bits = septets.len().saturating_mul(7).saturating_add(fill);
    let mut out = vec![0u8; total_bits.div_ceil(8)];
    let mut bit = fill;
    for &s in septets {
        let s = u16::from(s & 0x7F) << (bit % 8);
        let byte = bit / 8;
        let [lo, hi] = s.to_le_bytes();
        if let Some(b) = out.get_mut(byte) {
            *b |= lo;
        }
        if hi != 0 {
            if let Some(b) = out.get_mut(byte.saturating_add(1)) {
                *b |= hi;
            }
        }
        bit = bit.saturating_add(7);
    }
    out
}

/// The packed input is too short for the number of septets asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("{septets} septets after {fill_bits} fill bits need more than the {octets} octets given")]
pub struct Truncated {
    /// Septets asked for.
    pub septets: usize,
    /// Fill bits asked for.
    pub fill_bits: u8,
    /// Octets given.
    pub octets: usize,
}

/// Unpacks `count` septets from packed `octets`, skipping `fill_bits` leading bits
/// (3GPP TS 23.038 §6.1.2.1.1; 3GPP TS 23.040 §9.2.3.24 for the fill bits after a UDH).
///
/// Fails, without panicking, when `octets` holds fewer than `fill_bits + 7 × count` bits or
/// when `fill_bits` is 8 or more.
pub fn unpack(octets: &[u8], count: usize, fill_bits: u8) -> Result<Vec<u8>, Truncated> {
    let err = Truncated {
        septets: count,
        fill_bits,
        octets: octets.len(),
    };
    if fill_bits >= 8 {
        return Err(err);
    }
    let fill = usize::from(fill_bits);
    let needed = count
        .checked_mul(7)
        .and_then(|b| b.checked_add(fill))
        .ok_or(err)?;
    if needed > octets.len().saturating_mul(8) {
        return Err(err);
    }
    let mut out = Vec::with_capacity(count);
    let mut bit = fill;
    for _ in 0..count {
        let byte = bit / 8;
        let lo = octets.get(byte).copied().unwrap_or(0);
        let hi = octets.get(byte.saturating_add(1)).copied().unwrap_or(0);
        let word = u16::from_le_bytes([lo, hi]);
        // The mask keeps the value within 7 bits, so the narrowing cannot lose data.
        out.push(((word >> (bit % 8)) & 0x7F) as u8);
        bit = bit.saturating_add(7);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn table_round_trips_every_septet() {
        for s in 0u8..0x80 {
            if s == ESC {
                continue;
            }
            let c = BASIC[usize::from(s)];
            assert_eq!(lookup(c), Some(Gsm7Char::Basic(s)), "septet {s:#04x} {c:?}");
        }
        for e in 0u8..0x80 {
            if let Some(c) = extended(e) {
                assert_eq!(lookup(c), Some(Gsm7Char::Extended(e)));
            }
        }
    }

    #[test]
    fn extension_characters_cost_two_septets() {
        for c in ['^', '{', '}', '\\', '[', '~', ']', '|', '€', '\u{0C}'] {
            assert_eq!(septets_of(c), Some(2), "{c:?}");
        }
        assert_eq!(septet_count("a€b"), Some(4));
        assert_eq!(encode("€").unwrap(), vec![0x1B, 0x65]);
        assert_eq!(decode(&[0x1B, 0x65]), "€");
    }

    #[test]
    fn non_gsm_characters_are_refused_strictly() {
        assert_eq!(lookup('ç'), None);
        assert_eq!(lookup('`'), None);
        assert_eq!(lookup('😀'), None);
        assert_eq!(
            encode("ab😀").unwrap_err(),
            NotGsm7 {
                ch: '😀', index: 2
            }
        );
    }

    #[test]
    fn decoder_follows_the_receiver_rules() {
        // Undefined extension code: show the default-alphabet character.
        assert_eq!(decode(&[0x1B, 0x41]), "A");
        // ESC ESC: a space.
        assert_eq!(decode(&[0x1B, 0x1B, 0x41]), " A");
        // Trailing ESC: dropped.
        assert_eq!(decode(&[0x41, 0x1B]), "A");
        // High bit ignored.
        assert_eq!(decode(&[0xC1]), "A");
    }

    #[test]
    fn packs_the_classic_example() {
        // "hellohello", 3GPP TS 23.038 §6.1.2.1.1 style example: E8329BFD4697D9EC37
        let packed = pack(&encode("hellohello").unwrap(), 0);
        assert_eq!(
            packed,
            [0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37]
        );
        assert_eq!(
            unpack(&packed, 10, 0).unwrap(),
            encode("hellohello").unwrap()
        );
    }

    #[test]
    fn packs_with_fill_bits() {
        // One fill bit, as after a 6-octet concatenation UDH: "A" (0x41) shifted left by one.
        assert_eq!(pack(&[0x41], 1), [0x82]);
        assert_eq!(unpack(&[0x82], 1, 1).unwrap(), [0x41]);
        for fill in 0..7u8 {
            let septets: Vec<u8> = (0u8..100).map(|i| i.wrapping_mul(37) & 0x7F).collect();
            let packed = pack(&septets, fill);
            assert_eq!(packed.len(), (usize::from(fill) + 700).div_ceil(8));
            assert_eq!(unpack(&packed, 100, fill).unwrap(), septets, "fill {fill}");
        }
    }

    #[test]
    fn unpack_refuses_short_input() {
        assert!(unpack(&[0xFF; 7], 8, 0).is_ok());
        assert!(unpack(&[0xFF; 7], 9, 0).is_err());
        assert!(unpack(&[0xFF; 7], 8, 1).is_err());
        assert!(unpack(&[], usize::MAX, 6).is_err());
        assert!(unpack(&[0xFF], 1, 8).is_err());
        assert_eq!(unpack(&[], 0, 0).unwrap(), Vec::<u8>::new());
    }
}
