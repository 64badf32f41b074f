//! Transfer-layer PDUs (3GPP TS 23.040 §9.2): SMS-SUBMIT (encode and decode), SMS-DELIVER and
//! SMS-STATUS-REPORT (decode, and encode for tests and simulators).
//!
//! Bytes "with SMSC" start with the SMSC address field (`00` for the SMSC configured in the
//! modem), as `AT+CMGS` and `AT+CMGR` in PDU mode use them (3GPP TS 27.005 §3.1, §3.4.1).
//! The TP-MTI of a PDU read from a modem is read as the MS sees it: `00` SMS-DELIVER,
//! `01` SMS-SUBMIT (a stored outgoing message), `10` SMS-STATUS-REPORT (§9.2.3.1).
//!
//! Decoding never panics: any input gives a value or a [`DecodeError`].

mod address;
mod dcs;
mod deliver;
mod status_report;
mod submit;
mod timestamp;
mod user_data;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use address::{TpAddress, TypeOfNumber};
pub use dcs::{Alphabet, Dcs};
pub use deliver::Deliver;
pub use status_report::{StatusClass, StatusReport};
pub use submit::{encode_submit, Submit, SubmitOptions, SubmitPdu, Validity};
pub use timestamp::Timestamp;
pub use user_data::{decode_payload, UserData, MAX_OCTETS, MAX_SEPTETS};

use crate::gsm7::NotGsm7;
use crate::udh::UdhError;

/// Why bytes are not a TPDU this crate can read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The text given is not hexadecimal octets.
    #[error("not a hexadecimal PDU: {0}")]
    Hex(&'static str),
    /// The bytes end inside a field.
    #[error("the PDU ends inside {0}")]
    Truncated(&'static str),
    /// TP-MTI 11 is reserved (3GPP TS 23.040 §9.2.3.1).
    #[error("TP-MTI 3 is a reserved message type")]
    ReservedType,
    /// An address field is malformed.
    #[error("{0} is malformed")]
    Address(&'static str),
    /// A time stamp holds digits above 9 or an impossible date or time.
    #[error("a time stamp is not a valid date and time")]
    Timestamp,
    /// The User Data Header is malformed.
    #[error(transparent)]
    Udh(#[from] UdhError),
    /// The user data is inconsistent.
    #[error("the user data is malformed: {0}")]
    UserData(&'static str),
}

/// Why a TPDU cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The destination is not `+digits` or `digits` (1–20 digits).
    #[error("{0:?} is not a phone number a TPDU can carry: use +digits or digits")]
    InvalidDestination(String),
    /// More than 160 septets or 140 octets of user data.
    #[error("the user data does not fit in one TPDU")]
    UserDataTooLong,
    /// The text has characters outside GSM-7 and GSM-7 was asked for.
    #[error(transparent)]
    NotGsm7(#[from] NotGsm7),
    /// The text needs more than 255 parts.
    #[error("the message needs {0} parts; at most 255 can be concatenated")]
    TooManySegments(usize),
}

/// A decoded TPDU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Tpdu {
    /// SMS-DELIVER: a message to the phone.
    Deliver(Deliver),
    /// SMS-SUBMIT: a message from the phone.
    Submit(Submit),
    /// SMS-STATUS-REPORT: a delivery receipt.
    StatusReport(StatusReport),
}

impl Tpdu {
    /// `"deliver"`, `"submit"` or `"status-report"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Tpdu::Deliver(_) => "deliver",
            Tpdu::Submit(_) => "submit",
            Tpdu::StatusReport(_) => "status-report",
        }
    }

    /// Decodes a TPDU without SMSC field.
    pub fn decode(tpdu: &[u8]) -> Result<Tpdu, DecodeError> {
        let mut r = Reader::new(tpdu);
        Self::read(&mut r)
    }

    fn read(r: &mut Reader<'_>) -> Result<Tpdu, DecodeError> {
        let first = r.peek("the first octet")?;
        match first & 0x03 {
            0 => Deliver::read(r).map(Tpdu::Deliver),
            1 => Submit::read(r).map(Tpdu::Submit),
            2 => StatusReport::read(r).map(Tpdu::StatusReport),
            _ => Err(DecodeError::ReservedType),
        }
    }
}

/// A PDU as a modem hands it over: SMSC address and TPDU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decoded {
    /// The SMSC address, or `None` for `00` (the modem's default SMSC).
    pub smsc: Option<TpAddress>,
    /// The TPDU.
    pub tpdu: Tpdu,
    /// Length of the TPDU in octets (what `AT+CMGS=` takes).
    pub tpdu_length: usize,
}

/// Decodes PDU bytes that start with the SMSC address field.
pub fn decode_with_smsc(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(bytes);
    let smsc = TpAddress::decode_smsc(&mut r)?;
    let tpdu_length = r.remaining();
    let tpdu = Tpdu::read(&mut r)?;
    Ok(Decoded {
        smsc,
        tpdu,
        tpdu_length,
    })
}

/// Decodes a hexadecimal PDU that starts with the SMSC address field (`00…` or `07 91…`).
/// ASCII whitespace is ignored.
pub fn decode_hex_with_smsc(hex: &str) -> Result<Decoded, DecodeError> {
    decode_with_smsc(&from_hex(hex)?)
}

/// Hexadecimal text to octets; ASCII whitespace ignored.
pub fn from_hex(hex: &str) -> Result<Vec<u8>, DecodeError> {
    let digits: Vec<u8> = hex
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| match b {
            b'0'..=b'9' => Ok(b.wrapping_sub(b'0')),
            b'a'..=b'f' => Ok(b.wrapping_sub(b'a').wrapping_add(10)),
            b'A'..=b'F' => Ok(b.wrapping_sub(b'A').wrapping_add(10)),
            _ => Err(DecodeError::Hex(
                "it contains a character other than 0-9 and A-F",
            )),
        })
        .collect::<Result<_, _>>()?;
    let pairs = digits.chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return Err(DecodeError::Hex("it has an odd number of digits"));
    }
    Ok(pairs
        .map(|p| match p {
            [hi, lo] => (hi << 4) | lo,
            _ => 0,
        })
        .collect())
}

/// Octets to upper-case hexadecimal, as modems print PDUs.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len().saturating_mul(2));
    for b in bytes {
        for n in [b >> 4, b & 0x0F] {
            s.push(char::from(
                DIGITS.get(usize::from(n)).copied().unwrap_or(b'0'),
            ));
        }
    }
    s
}

/// A cursor over input octets that reports which field ran out.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub(crate) fn peek(&self, what: &'static str) -> Result<u8, DecodeError> {
        self.rest
            .first()
            .copied()
            .ok_or(DecodeError::Truncated(what))
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let (&b, rest) = self
            .rest
            .split_first()
            .ok_or(DecodeError::Truncated(what))?;
        self.rest = rest;
        Ok(b)
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.rest.len() {
            return Err(DecodeError::Truncated(what));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let s = self.take(N, what)?;
        <[u8; N]>::try_from(s).map_err(|_| DecodeError::Truncated(what))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        assert_eq!(from_hex("00 0aFf").unwrap(), [0x00, 0x0A, 0xFF]);
        assert!(from_hex("0").is_err());
        assert!(from_hex("zz").is_err());
        assert_eq!(to_hex(&[0x00, 0x0A, 0xFF]), "000AFF");
    }

    #[test]
    fn reserved_and_empty_inputs_are_errors() {
        assert_eq!(
            decode_with_smsc(&[]),
            Err(DecodeError::Truncated("the SMSC address"))
        );
        assert_eq!(
            decode_with_smsc(&[0x00]),
            Err(DecodeError::Truncated("the first octet"))
        );
        assert_eq!(
            decode_with_smsc(&[0x00, 0x03]),
            Err(DecodeError::ReservedType)
        );
    }
}
