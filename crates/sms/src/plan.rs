//! Choosing the encoding and cutting a text into segments.
//!
//! - Encoding (3GPP TS 23.038 §4 and §6.2): GSM-7 when every character is in the default
//!   alphabet or its extension table; otherwise UCS-2 (UTF-16) for the whole message.
//! - Capacity (3GPP TS 23.040 §9.2.3.16 and §9.2.3.24): a lone SMS carries 140 octets of user
//!   data = 160 septets or 70 UTF-16 units. Each part of a concatenated message gives 6 octets
//!   to the UDH `05 00 03 ref total seq` (§9.2.3.24.1), leaving 153 septets (134 octets = 7
//!   header septets incl. 1 fill bit) or 67 units.
//! - Cutting: greedy, never inside an escape pair (ESC + extension code, 3GPP TS 23.038
//!   §6.2.1.1) nor inside a UTF-16 surrogate pair, so every part decodes alone.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{gsm7, ucs2, udh};

/// The alphabet a message goes out in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The GSM 7-bit default alphabet with its extension table; `"gsm7"` in JSON.
    Gsm7,
    /// UTF-16 big-endian; `"ucs2"` in JSON.
    Ucs2,
}

impl Encoding {
    /// The encoding `text` needs: GSM-7 if every character fits, else UCS-2.
    pub fn for_text(text: &str) -> Encoding {
        if gsm7::is_gsm7(text) {
            Encoding::Gsm7
        } else {
            Encoding::Ucs2
        }
    }

    /// Units (septets or UTF-16 units) a message that fits in one SMS may hold: 160 / 70.
    pub const fn single_limit(self) -> usize {
        match self {
            Encoding::Gsm7 => 160,
            Encoding::Ucs2 => 70,
        }
    }

    /// Units each part of a concatenated message may hold: 153 / 67.
    pub const fn part_limit(self) -> usize {
        match self {
            Encoding::Gsm7 => 153,
            Encoding::Ucs2 => 67,
        }
    }

    /// The TP-DCS octet (3GPP TS 23.038 §4, general data coding, no class) and the SMPP 3.4
    /// `data_coding` value for this encoding: `0x00` and `0x08`.
    pub const fn data_coding(self) -> u8 {
        match self {
            Encoding::Gsm7 => 0x00,
            Encoding::Ucs2 => 0x08,
        }
    }

    /// Units `c` costs in this encoding: septets (1 or 2) for GSM-7, UTF-16 units (1 or 2)
    /// for UCS-2. `None` if `c` is not GSM-7 and the encoding is GSM-7.
    pub fn units_of(self, c: char) -> Option<usize> {
        match self {
            Encoding::Gsm7 => gsm7::septets_of(c),
            Encoding::Ucs2 => Some(ucs2::units_of(c)),
        }
    }

    /// The encoded payload of `text`: unpacked septets (one per octet) for GSM-7,
    /// UTF-16BE octets for UCS-2. Characters GSM-7 cannot carry make this fail.
    pub fn encode(self, text: &str) -> Result<Vec<u8>, gsm7::NotGsm7> {
        match self {
            Encoding::Gsm7 => gsm7::encode(text),
            Encoding::Ucs2 => Ok(ucs2::encode(text)),
        }
    }

    /// Decodes a payload made by [`Encoding::encode`]. Never fails.
    pub fn decode(self, payload: &[u8]) -> String {
        match self {
            Encoding::Gsm7 => gsm7::decode(payload),
            Encoding::Ucs2 => ucs2::decode(payload),
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        })
    }
}

/// How a text goes out: encoding, segments, and what the composer shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// GSM-7 or UCS-2, for the whole message.
    pub encoding: Encoding,
    /// The exact text of each segment, in order; they concatenate back to the input.
    /// Empty for an empty text.
    pub segments: Vec<String>,
    /// Units the whole text takes (septets for GSM-7, UTF-16 units for UCS-2).
    pub units: usize,
    /// Units still free in the current (last) segment before another segment is needed:
    /// against 160/70 while the text fits in one SMS, against 153/67 once it is split.
    pub chars_left: usize,
}

/// One segment's bytes, ready for SMPP `submit_sm` or for a TPDU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodedSegment {
    /// The UDH octets, UDHL first (empty for a message that fits in one SMS). Set SMPP
    /// `esm_class` bit 0x40 (UDHI) when it is not empty.
    pub udh: Vec<u8>,
    /// Unpacked septets, one per octet (SMPP `data_coding` 0 carries GSM-7 like this), or
    /// UTF-16BE octets (`data_coding` 8).
    pub payload: Vec<u8>,
    /// The SMPP `data_coding` / TP-DCS value: 0x00 or 0x08.
    pub data_coding: u8,
}

impl EncodedSegment {
    /// SMPP `short_message`: the UDH followed by the payload.
    pub fn short_message(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.udh.len().saturating_add(self.payload.len()));
        out.extend_from_slice(&self.udh);
        out.extend_from_slice(&self.payload);
        out
    }

    /// Whether SMPP `esm_class` must carry UDHI (0x40).
    pub fn has_udh(&self) -> bool {
        !self.udh.is_empty()
    }
}

/// Why a plan cannot be put on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PlanError {
    /// An 8-bit concatenation element counts at most 255 parts (3GPP TS 23.040 §9.2.3.24.1).
    #[error("the message needs {0} segments; at most 255 can be concatenated")]
    TooManySegments(usize),
}

impl Plan {
    /// Number of segments (SMS) the text costs; 0 for an empty text.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Whether the text needs a concatenated message.
    pub fn is_multipart(&self) -> bool {
        self.segments.len() > 1
    }

    /// The capacity of each segment in this plan: 160/70 for one, 153/67 for several.
    pub fn segment_limit(&self) -> usize {
        if self.is_multipart() {
            self.encoding.part_limit()
        } else {
            self.encoding.single_limit()
        }
    }

    /// The payload of each segment, with the 8-bit concatenation UDH `05 00 03 reference total
    /// seq` on every part when there is more than one (3GPP TS 23.040 §9.2.3.24.1). An empty
    /// text gives one empty segment, so that an empty message can still be sent.
    pub fn encode(&self, reference: u8) -> Result<Vec<EncodedSegment>, PlanError> {
        let data_coding = self.encoding.data_coding();
        if self.segments.is_empty() {
            return Ok(vec![EncodedSegment {
                udh: Vec::new(),
                payload: Vec::new(),
                data_coding,
            }]);
        }
        let total = u8::try_from(self.segments.len())
            .map_err(|_| PlanError::TooManySegments(self.segments.len()))?;
        let mut out = Vec::with_capacity(self.segments.len());
        for (seq, text) in (1..=total).zip(&self.segments) {
            // The plan only holds texts its own encoding carries; a failure here would mean a
            // hand-built Plan, and the lossless fallback is UCS-2 of the same text.
            let payload = self
                .encoding
                .encode(text)
                .unwrap_or_else(|_| ucs2::encode(text));
            let udh = if total > 1 {
                udh::concat_8(reference, total, seq).to_vec()
            } else {
                Vec::new()
            };
            out.push(EncodedSegment {
                udh,
                payload,
                data_coding,
            });
        }
        Ok(out)
    }
}

/// Plans `text`: its encoding, its segments and what is left in the current one.
///
/// ```
/// let p = airtext_sms::plan("Hello €");
/// assert_eq!(p.encoding, airtext_sms::Encoding::Gsm7);
/// assert_eq!(p.segment_count(), 1);
/// assert_eq!(p.chars_left, 160 - 8);
/// ```
pub fn plan(text: &str) -> Plan {
    let encoding = Encoding::for_text(text);
    // The cost of a character in the chosen encoding: always defined, since the encoding
    // was chosen to carry every character.
    let cost = |c: char| encoding.units_of(c).unwrap_or(2);
    let units: usize = text.chars().map(cost).fold(0, usize::saturating_add);

    if units <= encoding.single_limit() {
        let segments = if text.is_empty() {
            Vec::new()
        } else {
            vec![text.to_owned()]
        };
        return Plan {
            encoding,
            segments,
            units,
            chars_left: encoding.single_limit().saturating_sub(units),
        };
    }

    let limit = encoding.part_limit();
    let mut segments = Vec::with_capacity(units.div_ceil(limit).saturating_add(1));
    let mut start = 0usize;
    let mut used = 0usize;
    for (at, c) in text.char_indices() {
        let n = cost(c);
        if used.saturating_add(n) > limit {
            segments.push(text.get(start..at).unwrap_or_default().to_owned());
            start = at;
            used = 0;
        }
        used = used.saturating_add(n);
    }
    segments.push(text.get(start..).unwrap_or_default().to_owned());
    Plan {
        encoding,
        segments,
        units,
        chars_left: limit.saturating_sub(used),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn lens(p: &Plan) -> Vec<usize> {
        p.segments
            .iter()
            .map(|s| {
                s.chars()
                    .map(|c| p.encoding.units_of(c).unwrap())
                    .sum::<usize>()
            })
            .collect()
    }

    #[test]
    fn empty_text() {
        let p = plan("");
        assert_eq!(p.encoding, Encoding::Gsm7);
        assert_eq!(p.segment_count(), 0);
        assert_eq!(p.chars_left, 160);
        let enc = p.encode(1).unwrap();
        assert_eq!(enc.len(), 1);
        assert!(enc[0].payload.is_empty() && enc[0].udh.is_empty());
    }

    #[test]
    fn gsm7_160_is_one_segment_161_is_two() {
        let p = plan(&"a".repeat(160));
        assert_eq!((p.segment_count(), p.chars_left), (1, 0));
        let p = plan(&"a".repeat(161));
        assert_eq!(p.segment_count(), 2);
        assert_eq!(lens(&p), [153, 8]);
        assert_eq!(p.chars_left, 145);
        assert_eq!(p.segments.concat(), "a".repeat(161));
    }

    #[test]
    fn escape_at_the_153_boundary_moves_whole_to_next_segment() {
        // 152 septets then '€' (2 septets): 154 would split the escape pair.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(10));
        let p = plan(&text);
        assert_eq!(p.encoding, Encoding::Gsm7);
        assert_eq!(p.segments[0], "a".repeat(152));
        assert!(p.segments[1].starts_with('€'));
        assert_eq!(lens(&p), [152, 12]);
        // 151 + '€' fills exactly 153.
        let text = format!("{}€{}", "a".repeat(151), "b".repeat(10));
        let p = plan(&text);
        assert_eq!(lens(&p), [153, 10]);
        assert!(p.segments[0].ends_with('€'));
    }

    #[test]
    fn escapes_count_two_against_160() {
        let p = plan(&"€".repeat(80));
        assert_eq!((p.segment_count(), p.chars_left, p.units), (1, 0, 160));
        let p = plan(&format!("{}a", "€".repeat(80)));
        assert_eq!(p.segment_count(), 2);
        assert_eq!(lens(&p), [152, 9]);
    }

    #[test]
    fn lone_euro() {
        let p = plan("€");
        assert_eq!(p.encoding, Encoding::Gsm7);
        assert_eq!((p.segment_count(), p.units, p.chars_left), (1, 2, 158));
        let enc = p.encode(0).unwrap();
        assert_eq!(enc[0].payload, [0x1B, 0x65]);
    }

    #[test]
    fn ucs2_70_is_one_segment_71_is_two() {
        let p = plan(&"ж".repeat(70));
        assert_eq!(p.encoding, Encoding::Ucs2);
        assert_eq!((p.segment_count(), p.chars_left), (1, 0));
        let p = plan(&"ж".repeat(71));
        assert_eq!(lens(&p), [67, 4]);
        assert_eq!(p.chars_left, 63);
    }

    #[test]
    fn one_non_gsm_character_switches_everything() {
        let p = plan(&format!("{}ç", "a".repeat(100)));
        assert_eq!(p.encoding, Encoding::Ucs2);
        assert_eq!(lens(&p), [67, 34]);
    }

    #[test]
    fn emoji_at_the_boundary_is_not_split() {
        // 66 units, then a 2-unit emoji would end at 68 > 67: it moves to segment 2.
        let text = format!("{}😀{}", "a".repeat(66), "b".repeat(5));
        let p = plan(&text);
        assert_eq!(lens(&p), [66, 7]);
        assert_eq!(p.segments[1], format!("😀{}", "b".repeat(5)));
        // 35 emoji = 70 units: one segment exactly; 36 = 72: two.
        assert_eq!(plan(&"😀".repeat(35)).segment_count(), 1);
        let p = plan(&"😀".repeat(36));
        assert_eq!(lens(&p), [66, 6]);
    }

    #[test]
    fn encoded_segments_carry_concat_udh() {
        let p = plan(&"x".repeat(400));
        let enc = p.encode(0x42).unwrap();
        assert_eq!(enc.len(), 3);
        for (i, e) in enc.iter().enumerate() {
            assert_eq!(e.udh, [5, 0, 3, 0x42, 3, i as u8 + 1]);
            assert_eq!(e.data_coding, 0);
            assert!(e.has_udh());
            assert_eq!(e.short_message()[6..], e.payload[..]);
        }
        let p = plan("héllo ж");
        let enc = p.encode(0).unwrap();
        assert_eq!(enc[0].data_coding, 8);
        assert!(enc[0].udh.is_empty());
    }

    #[test]
    fn more_than_255_segments_cannot_be_encoded() {
        let p = plan(&"a".repeat(153 * 256));
        assert_eq!(p.segment_count(), 256);
        assert_eq!(p.encode(0), Err(PlanError::TooManySegments(256)));
    }
}
