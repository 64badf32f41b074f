//! TP-UDL and TP-UD with an optional User Data Header, 3GPP TS 23.040 §9.2.3.16 and
//! §9.2.3.24; GSM-7 text after a UDH starts at the next septet boundary (fill bits).

use serde::{Deserialize, Serialize};

use super::{Alphabet, DecodeError, EncodeError, Reader};
use crate::udh::{self, Concat, Udh};
use crate::{gsm7, ucs2};

/// Most octets of user data in one TPDU, 3GPP TS 23.040 §9.2.3.24.
pub const MAX_OCTETS: usize = 140;
/// Most septets of user data in one TPDU.
pub const MAX_SEPTETS: usize = 160;

/// Decoded user data: header, alphabet and the payload in its natural unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserData {
    /// The User Data Header, when TP-UDHI is set.
    pub header: Option<Udh>,
    /// The alphabet from TP-DCS.
    pub alphabet: Alphabet,
    /// The text payload after the header: *unpacked* septets (one per octet) for GSM-7,
    /// the raw octets for 8-bit and UCS-2. Kept raw so that concatenated parts can be joined
    /// before decoding (an escape or surrogate pair split by a careless sender then survives).
    pub payload: Vec<u8>,
}

impl UserData {
    /// User data carrying `text` in `alphabet` (8-bit takes the text's UTF-8 octets).
    pub fn from_text(
        text: &str,
        alphabet: Alphabet,
        header: Option<Udh>,
    ) -> Result<Self, EncodeError> {
        let payload = match alphabet {
            Alphabet::Gsm7 => gsm7::encode(text).map_err(EncodeError::NotGsm7)?,
            Alphabet::Ucs2 => ucs2::encode(text),
            Alphabet::EightBit => text.as_bytes().to_vec(),
        };
        Ok(UserData {
            header,
            alphabet,
            payload,
        })
    }

    /// The text. 8-bit data is shown as ISO 8859-1, one character per octet.
    pub fn text(&self) -> String {
        decode_payload(self.alphabet, &self.payload)
    }

    /// The concatenation element of the header, if any and valid.
    pub fn concat(&self) -> Option<Concat> {
        self.header.as_ref().and_then(Udh::concat)
    }

    /// Reads TP-UDL and TP-UD.
    pub(super) fn decode(
        r: &mut Reader<'_>,
        udhi: bool,
        alphabet: Alphabet,
    ) -> Result<Self, DecodeError> {
        let udl = usize::from(r.u8("TP-UDL")?);
        let octets = match alphabet {
            Alphabet::Gsm7 => udl.saturating_mul(7).div_ceil(8),
            _ => udl,
        };
        let ud = r.take(octets, "TP-UD")?;
        let (header, header_len) = if udhi {
            let (h, n) = Udh::parse(ud)?;
            (Some(h), n)
        } else {
            (None, 0)
        };
        let body = ud.get(header_len..).unwrap_or_default();
        let payload = match alphabet {
            Alphabet::Gsm7 => {
                let header_septets = if udhi {
                    udh::septets_for(header_len)
                } else {
                    0
                };
                let count = udl
                    .checked_sub(header_septets)
                    .ok_or(DecodeError::UserData("the header is longer than TP-UDL"))?;
                let fill = if udhi { udh::fill_bits(header_len) } else { 0 };
                gsm7::unpack(body, count, fill).map_err(|_| DecodeError::Truncated("TP-UD"))?
            }
            _ => body.to_vec(),
        };
        Ok(UserData {
            header,
            alphabet,
            payload,
        })
    }

    /// Writes TP-UDL and TP-UD. Refuses more than 160 septets / 140 octets.
    pub(super) fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let header = match &self.header {
            Some(h) => h.to_bytes().ok_or(EncodeError::UserDataTooLong)?,
            None => Vec::new(),
        };
        let (udl, max, body) = match self.alphabet {
            Alphabet::Gsm7 => {
                let fill = if header.is_empty() {
                    0
                } else {
                    udh::fill_bits(header.len())
                };
                let udl = udh::septets_for(header.len()).saturating_add(self.payload.len());
                (udl, MAX_SEPTETS, gsm7::pack(&self.payload, fill))
            }
            _ => (
                header.len().saturating_add(self.payload.len()),
                MAX_OCTETS,
                self.payload.clone(),
            ),
        };
        if udl > max {
            return Err(EncodeError::UserDataTooLong);
        }
        out.push(u8::try_from(udl).map_err(|_| EncodeError::UserDataTooLong)?);
        out.extend_from_slice(&header);
        out.extend_from_slice(&body);
        Ok(())
    }
}

/// Decodes a payload in the form [`UserData::payload`] holds.
pub fn decode_payload(alphabet: Alphabet, payload: &[u8]) -> String {
    match alphabet {
        Alphabet::Gsm7 => gsm7::decode(payload),
        Alphabet::Ucs2 => ucs2::decode(payload),
        Alphabet::EightBit => payload.iter().map(|&b| char::from(b)).collect(),
    }
}
