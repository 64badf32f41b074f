//! The TP-Data-Coding-Scheme octet, 3GPP TS 23.038 §4 ("SMS Data Coding Scheme").

use serde::{Deserialize, Serialize};

/// The alphabet the user data is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Alphabet {
    /// GSM 7-bit default alphabet (packed septets on the air).
    #[serde(rename = "gsm7")]
    Gsm7,
    /// 8-bit data (or compressed data, which this crate does not expand).
    #[serde(rename = "8bit")]
    EightBit,
    /// UCS-2 / UTF-16BE.
    #[serde(rename = "ucs2")]
    Ucs2,
}

/// A TP-DCS octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dcs(pub u8);

impl Dcs {
    /// GSM-7, no message class.
    pub const GSM7: Dcs = Dcs(0x00);
    /// 8-bit data, no message class.
    pub const EIGHT_BIT: Dcs = Dcs(0x04);
    /// UCS-2, no message class.
    pub const UCS2: Dcs = Dcs(0x08);

    /// Whether the text is compressed (general coding groups with bit 5 set).
    pub fn is_compressed(self) -> bool {
        self.0 & 0x80 == 0 && self.0 & 0x20 != 0
    }

    /// The alphabet, by coding group (3GPP TS 23.038 §4):
    /// - `00xx` general and `01xx` automatic deletion: bits 3–2 (`00` GSM-7, `01` 8-bit,
    ///   `10` UCS-2, `11` reserved: read as GSM-7). Compressed text is reported as 8-bit.
    /// - `1000`–`1011` reserved: GSM-7.
    /// - `1100`, `1101` message waiting: GSM-7; `1110` message waiting: UCS-2.
    /// - `1111` data coding/message class: bit 2 (`0` GSM-7, `1` 8-bit).
    pub fn alphabet(self) -> Alphabet {
        let b = self.0;
        match b >> 4 {
            0x0..=0x7 => {
                if self.is_compressed() {
                    return Alphabet::EightBit;
                }
                match (b >> 2) & 0x03 {
                    1 => Alphabet::EightBit,
                    2 => Alphabet::Ucs2,
                    _ => Alphabet::Gsm7,
                }
            }
            0xE => Alphabet::Ucs2,
            0xF if b & 0x04 != 0 => Alphabet::EightBit,
            _ => Alphabet::Gsm7,
        }
    }

    /// The message class 0–3 when the octet gives one.
    pub fn message_class(self) -> Option<u8> {
        let b = self.0;
        match b >> 4 {
            0x0..=0x7 if b & 0x10 != 0 => Some(b & 0x03),
            0xF => Some(b & 0x03),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coding_groups() {
        assert_eq!(Dcs(0x00).alphabet(), Alphabet::Gsm7);
        assert_eq!(Dcs(0x04).alphabet(), Alphabet::EightBit);
        assert_eq!(Dcs(0x08).alphabet(), Alphabet::Ucs2);
        assert_eq!(Dcs(0x0C).alphabet(), Alphabet::Gsm7);
        assert_eq!(Dcs(0x10).message_class(), Some(0));
        assert_eq!(Dcs(0x18).alphabet(), Alphabet::Ucs2);
        assert_eq!(Dcs(0x20).alphabet(), Alphabet::EightBit); // compressed
        assert_eq!(Dcs(0x48).alphabet(), Alphabet::Ucs2);
        assert_eq!(Dcs(0x88).alphabet(), Alphabet::Gsm7);
        assert_eq!(Dcs(0xC8).alphabet(), Alphabet::Gsm7);
        assert_eq!(Dcs(0xD0).alphabet(), Alphabet::Gsm7);
        assert_eq!(Dcs(0xE0).alphabet(), Alphabet::Ucs2);
        assert_eq!(Dcs(0xF0).alphabet(), Alphabet::Gsm7);
        assert_eq!(Dcs(0xF4).alphabet(), Alphabet::EightBit);
        assert_eq!(Dcs(0xF1).message_class(), Some(1));
        assert_eq!(Dcs(0x00).message_class(), None);
    }
}
