//! UCS-2, as phones really use it: UTF-16 big-endian code units (3GPP TS 23.038 §6.2.3 names
//! ISO/IEC 10646 UCS-2; in practice every handset and SMSC carries UTF-16, so a character
//! outside the Basic Multilingual Plane travels as a surrogate pair and counts 2 units).

/// UTF-16 code units `c` takes: 1 in the BMP, 2 outside it.
pub fn units_of(c: char) -> usize {
    c.len_utf16()
}

/// UTF-16 code units `text` takes.
pub fn unit_count(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Encodes `text` as UTF-16 big-endian octets (2 per unit).
pub fn encode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len().saturating_mul(2));
    for unit in text.encode_utf16() {
        out.extend_from_slice(&unit.to_be_bytes());
    }
    out
}

/// Decodes UTF-16 big-endian octets. Never fails: a lone surrogate or a trailing odd octet
/// becomes U+FFFD REPLACEMENT CHARACTER.
pub fn decode(octets: &[u8]) -> String {
    let chunks = octets.chunks_exact(2);
    let odd = !chunks.remainder().is_empty();
    let units = chunks.map(|p| match p {
        [hi, lo] => u16::from_be_bytes([*hi, *lo]),
        _ => 0xFFFD,
    });
    let mut out: String = char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    if odd {
        out.push(char::REPLACEMENT_CHARACTER);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn bmp_and_astral_characters() {
        assert_eq!(encode("é"), [0x00, 0xE9]);
        assert_eq!(encode("😀"), [0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(unit_count("a😀"), 3);
        assert_eq!(units_of('😀'), 2);
        assert_eq!(decode(&encode("héllo 😀 мир")), "héllo 😀 мир");
    }

    #[test]
    fn broken_input_decodes_to_replacement_characters() {
        assert_eq!(decode(&[0xD8, 0x3D]), "\u{FFFD}");
        assert_eq!(decode(&[0x00, 0x41, 0x00]), "A\u{FFFD}");
        assert_eq!(decode(&[]), "");
    }
}
