//! Addresses inside a TPDU (TP-OA, TP-DA, TP-RA: 3GPP TS 23.040 §9.1.2.5) and the SMSC address
//! in front of it (the RP address of 3GPP TS 24.011 §8.2.5.2, as `AT+CMGS`/`AT+CMGR` in PDU
//! mode put it: 3GPP TS 27.005 §3.1).

use serde::{Deserialize, Serialize};

use super::{DecodeError, EncodeError, Reader};
use crate::gsm7;

/// Type of number, bits 6–4 of the type-of-address octet (3GPP TS 23.040 §9.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TypeOfNumber {
    /// 000
    Unknown,
    /// 001: shown with a leading `+`.
    International,
    /// 010
    National,
    /// 011
    NetworkSpecific,
    /// 100
    Subscriber,
    /// 101: GSM-7 text, such as a sender name.
    Alphanumeric,
    /// 110
    Abbreviated,
    /// 111
    Reserved,
}

impl TypeOfNumber {
    fn from_bits(toa: u8) -> Self {
        match (toa >> 4) & 0x07 {
            0 => Self::Unknown,
            1 => Self::International,
            2 => Self::National,
            3 => Self::NetworkSpecific,
            4 => Self::Subscriber,
            5 => Self::Alphanumeric,
            6 => Self::Abbreviated,
            _ => Self::Reserved,
        }
    }

    fn bits(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::International => 1,
            Self::National => 2,
            Self::NetworkSpecific => 3,
            Self::Subscriber => 4,
            Self::Alphanumeric => 5,
            Self::Abbreviated => 6,
            Self::Reserved => 7,
        }
    }
}

/// An address as carried in a TPDU.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TpAddress {
    /// Type of number.
    pub type_of_number: TypeOfNumber,
    /// Numbering-plan identification, bits 3–0 of the type-of-address octet (1 = ISDN/E.164).
    pub numbering_plan: u8,
    /// Digits (`0-9 * # a b c`) or, for an alphanumeric address, its text; no `+`.
    pub value: String,
}

impl std::fmt::Display for TpAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.type_of_number == TypeOfNumber::International {
            f.write_str("+")?;
        }
        f.write_str(&self.value)
    }
}

/// Longest TP address value: 10 octets = 20 semi-octets (3GPP TS 23.040 §9.1.2.5).
const MAX_DIGITS: usize = 20;

fn digit(nibble: u8) -> Option<char> {
    // 3GPP TS 23.040 §9.1.2.3: 1010 '*', 1011 '#', 1100–1110 'a'–'c', 1111 filler.
    Some(match nibble {
        0..=9 => char::from(b'0'.wrapping_add(nibble)),
        0x0A => '*',
        0x0B => '#',
        0x0C => 'a',
        0x0D => 'b',
        0x0E => 'c',
        _ => return None,
    })
}

fn nibble(c: char) -> Option<u8> {
    Some(match c {
        '0'..='9' => (c as u8).wrapping_sub(b'0'),
        '*' => 0x0A,
        '#' => 0x0B,
        'a' => 0x0C,
        'b' => 0x0D,
        'c' => 0x0E,
        _ => return None,
    })
}

/// Semi-octets, low nibble first (3GPP TS 23.040 §9.1.2.3), up to `count` digits; a filler
/// (0xF) ends the number early.
fn bcd_digits(octets: &[u8], count: usize) -> String {
    octets
        .iter()
        .flat_map(|b| [b & 0x0F, b >> 4])
        .take(count)
        .map_while(digit)
        .collect()
}

fn bcd_encode(digits: &str) -> Option<Vec<u8>> {
    let nibbles: Vec<u8> = digits.chars().map(nibble).collect::<Option<_>>()?;
    Some(
        nibbles
            .chunks(2)
            .map(|p| match p {
                [lo, hi] => lo | (hi << 4),
                [lo] => lo | 0xF0,
                _ => 0xFF,
            })
            .collect(),
    )
}

impl TpAddress {
    /// A phone number for TP-DA: `+digits` becomes international/E.164 (TOA 0x91),
    /// bare digits unknown/E.164 (TOA 0x81), as a short code needs.
    pub fn phone(number: &str) -> Result<Self, EncodeError> {
        let (type_of_number, digits) = match number.strip_prefix('+') {
            Some(d) => (TypeOfNumber::International, d),
            None => (TypeOfNumber::Unknown, number),
        };
        let valid = !digits.is_empty()
            && digits.len() <= MAX_DIGITS
            && digits.bytes().all(|b| b.is_ascii_digit());
        if !valid {
            return Err(EncodeError::InvalidDestination(number.to_owned()));
        }
        Ok(TpAddress {
            type_of_number,
            numbering_plan: 1,
            value: digits.to_owned(),
        })
    }

    fn toa(&self) -> u8 {
        0x80 | (self.type_of_number.bits() << 4) | (self.numbering_plan & 0x0F)
    }

    /// Reads a TP address field (3GPP TS 23.040 §9.1.2.5).
    pub(super) fn decode_tp(r: &mut Reader<'_>, what: &'static str) -> Result<Self, DecodeError> {
        let len = usize::from(r.u8(what)?);
        let toa = r.u8(what)?;
        if len > MAX_DIGITS {
            return Err(DecodeError::Address(what));
        }
        let octets = r.take(len.div_ceil(2), what)?;
        let type_of_number = TypeOfNumber::from_bits(toa);
        let value = if type_of_number == TypeOfNumber::Alphanumeric {
            // Length counts semi-octets of packed septets (3GPP TS 23.040 §9.1.2.5).
            let septets = len.saturating_mul(4) / 7;
            let unpacked =
                gsm7::unpack(octets, septets, 0).map_err(|_| DecodeError::Address(what))?;
            gsm7::decode(&unpacked)
        } else {
            bcd_digits(octets, len)
        };
        Ok(TpAddress {
            type_of_number,
            numbering_plan: toa & 0x0F,
            value,
        })
    }

    /// Writes a TP address field. Alphanumeric addresses are packed GSM-7.
    pub(super) fn encode_tp(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let bad = || EncodeError::InvalidDestination(self.to_string());
        let (len, octets) = if self.type_of_number == TypeOfNumber::Alphanumeric {
            let septets = gsm7::encode(&self.value).map_err(|_| bad())?;
            let octets = gsm7::pack(&septets, 0);
            (septets.len().saturating_mul(7).div_ceil(4), octets)
        } else {
            (
                self.value.chars().count(),
                bcd_encode(&self.value).ok_or_else(bad)?,
            )
        };
        if len > MAX_DIGITS {
            return Err(bad());
        }
        out.push(u8::try_from(len).map_err(|_| bad())?);
        out.push(self.toa());
        out.extend_from_slice(&octets);
        Ok(())
    }

    /// Reads the SMSC address in front of a TPDU: a length in octets (0 = the default SMSC),
    /// then type of address and semi-octets (3GPP TS 24.011 §8.2.5.2).
    pub(super) fn decode_smsc(r: &mut Reader<'_>) -> Result<Option<Self>, DecodeError> {
        const WHAT: &str = "the SMSC address";
        let len = usize::from(r.u8(WHAT)?);
        if len == 0 {
            return Ok(None);
        }
        if len > 11 {
            return Err(DecodeError::Address(WHAT));
        }
        let toa = r.u8(WHAT)?;
        let octets = r.take(len.saturating_sub(1), WHAT)?;
        Ok(Some(TpAddress {
            type_of_number: TypeOfNumber::from_bits(toa),
            numbering_plan: toa & 0x0F,
            value: bcd_digits(octets, octets.len().saturating_mul(2)),
        }))
    }

    /// Writes an SMSC address field; `None` writes `00` (use the SMSC configured in the modem).
    pub(super) fn encode_smsc(smsc: Option<&Self>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let Some(a) = smsc else {
            out.push(0);
            return Ok(());
        };
        let octets = bcd_encode(&a.value)
            .filter(|o| o.len() <= 10)
            .ok_or_else(|| EncodeError::InvalidDestination(a.to_string()))?;
        out.push(u8::try_from(octets.len().saturating_add(1)).unwrap_or(0));
        out.push(a.toa());
        out.extend_from_slice(&octets);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn round_trip(a: &TpAddress) -> TpAddress {
        let mut out = Vec::new();
        a.encode_tp(&mut out).unwrap();
        let mut r = Reader::new(&out);
        let back = TpAddress::decode_tp(&mut r, "test").unwrap();
        assert!(r.is_empty());
        back
    }

    #[test]
    fn international_and_short_numbers() {
        let a = TpAddress::phone("+14155550100").unwrap();
        let mut out = Vec::new();
        a.encode_tp(&mut out).unwrap();
        assert_eq!(out, [0x0B, 0x91, 0x41, 0x51, 0x55, 0x05, 0x01, 0xF0]);
        assert_eq!(round_trip(&a).to_string(), "+14155550100");
        let s = TpAddress::phone("12345").unwrap();
        assert_eq!(round_trip(&s).to_string(), "12345");
        assert!(TpAddress::phone("+").is_err());
        assert!(TpAddress::phone("12a").is_err());
        assert!(TpAddress::phone(&"1".repeat(21)).is_err());
    }

    #[test]
    fn alphanumeric_sender() {
        // "Design@Home" style example: sender "InfoText".
        let a = TpAddress {
            type_of_number: TypeOfNumber::Alphanumeric,
            numbering_plan: 0,
            value: "InfoText".into(),
        };
        assert_eq!(round_trip(&a), a);
    }

    #[test]
    fn smsc_field() {
        let mut r = Reader::new(&[0x07, 0x91, 0x44, 0x77, 0x58, 0x10, 0x06, 0x50]);
        let smsc = TpAddress::decode_smsc(&mut r).unwrap().unwrap();
        assert_eq!(smsc.to_string(), "+447785016005");
        let mut out = Vec::new();
        TpAddress::encode_smsc(Some(&smsc), &mut out).unwrap();
        assert_eq!(out, [0x07, 0x91, 0x44, 0x77, 0x58, 0x10, 0x06, 0x50]);
        assert_eq!(
            TpAddress::decode_smsc(&mut Reader::new(&[0])).unwrap(),
            None
        );
        assert!(TpAddress::decode_smsc(&mut Reader::new(&[12])).is_err());
    }
}
