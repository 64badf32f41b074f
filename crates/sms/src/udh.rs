//! The User Data Header (3GPP TS 23.040 §9.2.3.24) and its concatenation elements:
//! 8-bit reference (IEI 0x00, §9.2.3.24.1) and 16-bit reference (IEI 0x08, §9.2.3.24.8).

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// IEI of "Concatenated short messages, 8-bit reference number", 3GPP TS 23.040 §9.2.3.24.1.
pub const IEI_CONCAT_8: u8 = 0x00;
/// IEI of "Concatenated short messages, 16-bit reference number", 3GPP TS 23.040 §9.2.3.24.8.
pub const IEI_CONCAT_16: u8 = 0x08;

/// Octets of a UDH holding only an 8-bit concatenation element, its UDHL octet included:
/// `05 00 03 ref total seq`.
pub const CONCAT_8_UDH_LEN: usize = 6;

/// Where one part sits in a concatenated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Concat {
    /// The reference shared by all parts of one message (8 or 16 bits on the air).
    #[serde(rename = "ref")]
    pub reference: u16,
    /// How many parts the message has (1–255).
    pub total: u8,
    /// This part's number, from 1.
    pub seq: u8,
}

impl Concat {
    /// Whether the element is meaningful. 3GPP TS 23.040 §9.2.3.24.1: a total of zero, a
    /// sequence number of zero, or one above the total means the receiver ignores the element.
    pub fn is_valid(&self) -> bool {
        self.total != 0 && self.seq != 0 && self.seq <= self.total
    }
}

/// One information element of a UDH.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InformationElement {
    /// The Information Element Identifier.
    pub iei: u8,
    /// Its data, without IEI and length.
    pub data: Vec<u8>,
}

/// A parsed User Data Header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Udh {
    /// The elements, in order.
    pub elements: Vec<InformationElement>,
}

/// Why a UDH could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum UdhError {
    /// The header is longer than the user data holding it.
    #[error("the user data header says {udhl} octets but only {available} follow")]
    Truncated {
        /// The UDHL octet.
        udhl: usize,
        /// Octets actually available.
        available: usize,
    },
    /// An element runs past the end of the header.
    #[error("an information element runs past the end of the user data header")]
    BadElement,
}

impl Udh {
    /// Parses a UDH that starts with its UDHL octet. Returns it and the octets it took
    /// (UDHL + 1).
    pub fn parse(bytes: &[u8]) -> Result<(Udh, usize), UdhError> {
        let (&udhl, rest) = bytes.split_first().ok_or(UdhError::Truncated {
            udhl: 0,
            available: 0,
        })?;
        let udhl = usize::from(udhl);
        let mut body = rest.get(..udhl).ok_or(UdhError::Truncated {
            udhl,
            available: rest.len(),
        })?;
        let mut elements = Vec::new();
        while let [iei, len, tail @ ..] = body {
            let len = usize::from(*len);
            let data = tail.get(..len).ok_or(UdhError::BadElement)?;
            elements.push(InformationElement {
                iei: *iei,
                data: data.to_vec(),
            });
            body = tail.get(len..).unwrap_or_default();
        }
        if !body.is_empty() {
            return Err(UdhError::BadElement);
        }
        Ok((Udh { elements }, udhl.saturating_add(1)))
    }

    /// The first concatenation element (8- or 16-bit reference), if any and valid.
    pub fn concat(&self) -> Option<Concat> {
        self.elements.iter().find_map(|ie| {
            let c = match (ie.iei, ie.data.as_slice()) {
                (IEI_CONCAT_8, [r, t, s]) => Concat {
                    reference: u16::from(*r),
                    total: *t,
                    seq: *s,
                },
                (IEI_CONCAT_16, [r1, r2, t, s]) => Concat {
                    reference: u16::from_be_bytes([*r1, *r2]),
                    total: *t,
                    seq: *s,
                },
                _ => return None,
            };
            c.is_valid().then_some(c)
        })
    }

    /// The header as octets, starting with UDHL. `None` if it would exceed 255 octets.
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        let mut out = vec![0u8];
        for ie in &self.elements {
            out.push(ie.iei);
            out.push(u8::try_from(ie.data.len()).ok()?);
            out.extend_from_slice(&ie.data);
        }
        let udhl = u8::try_from(out.len().checked_sub(1)?).ok()?;
        if let Some(first) = out.first_mut() {
            *first = udhl;
        }
        Some(out)
    }
}

/// The 6-octet UDH `05 00 03 ref total seq` with an 8-bit concatenation reference,
/// 3GPP TS 23.040 §9.2.3.24.1.
pub fn concat_8(reference: u8, total: u8, seq: u8) -> [u8; CONCAT_8_UDH_LEN] {
    [0x05, IEI_CONCAT_8, 0x03, reference, total, seq]
}

/// The 7-octet UDH `06 08 04 refhi reflo total seq` with a 16-bit concatenation reference,
/// 3GPP TS 23.040 §9.2.3.24.8.
pub fn concat_16(reference: u16, total: u8, seq: u8) -> [u8; 7] {
    let [hi, lo] = reference.to_be_bytes();
    [0x06, IEI_CONCAT_16, 0x04, hi, lo, total, seq]
}

/// Fill bits needed after a UDH of `udh_octets` octets (UDHL included) so that GSM-7 text
/// starts on a septet boundary, 3GPP TS 23.040 §9.2.3.24.
pub fn fill_bits(udh_octets: usize) -> u8 {
    let rem = (udh_octets % 7) * 8 % 7;
    // rem is 0..=6; (7 - rem) % 7 is therefore 0..=6 too.
    ((7 - rem) % 7) as u8
}

/// Septets a UDH of `udh_octets` octets occupies, fill bits included (what UDL counts).
pub fn septets_for(udh_octets: usize) -> usize {
    udh_octets.saturating_mul(8).div_ceil(7)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn parses_8_and_16_bit_concat() {
        let (udh, used) = Udh::parse(&concat_8(0x2A, 3, 2)).unwrap();
        assert_eq!(used, 6);
        assert_eq!(
            udh.concat(),
            Some(Concat {
                reference: 0x2A,
                total: 3,
                seq: 2
            })
        );
        let (udh, used) = Udh::parse(&concat_16(0x1234, 2, 1)).unwrap();
        assert_eq!(used, 7);
        assert_eq!(
            udh.concat(),
            Some(Concat {
                reference: 0x1234,
                total: 2,
                seq: 1
            })
        );
    }

    #[test]
    fn ignores_invalid_concat_and_skips_other_elements() {
        // Port addressing (0x05) before a concat whose seq exceeds total.
        let bytes = [
            0x0B, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0x00, 0x03, 0x01, 0x02, 0x03,
        ];
        let (udh, _) = Udh::parse(&bytes).unwrap();
        assert_eq!(udh.elements.len(), 2);
        assert_eq!(udh.concat(), None);
        assert_eq!(udh.to_bytes().unwrap(), bytes);
    }

    #[test]
    fn refuses_truncated_headers() {
        assert!(Udh::parse(&[]).is_err());
        assert!(Udh::parse(&[0x05, 0x00, 0x03]).is_err());
        assert!(Udh::parse(&[0x02, 0x00, 0x03]).is_err());
        assert!(Udh::parse(&[0x01, 0x00]).is_err());
        assert_eq!(Udh::parse(&[0x00]).unwrap().1, 1);
    }

    #[test]
    fn fill_bits_match_the_spec() {
        // 6-octet UDH: 48 bits, next septet boundary at 49 → 1 fill bit, 7 septets.
        assert_eq!(fill_bits(6), 1);
        assert_eq!(septets_for(6), 7);
        // 7-octet UDH (16-bit concat): 56 bits = 8 septets exactly.
        assert_eq!(fill_bits(7), 0);
        assert_eq!(septets_for(7), 8);
        for n in 0..300 {
            assert_eq!(usize::from(fill_bits(n)) + n * 8, septets_for(n) * 7, "{n}");
        }
    }
}
