//! Mobile-originated texts: a `deliver_sm` (SMPP 3.4 §4.6.1) that is not a receipt.
//!
//! - Text: the `message_payload` TLV (§5.3.2.32) when present, else `short_message`.
//! - `data_coding` (§5.2.19): 0 the SMSC default alphabet, taken as GSM 03.38 *unpacked*
//!   septets, one per octet (how SMPP carries GSM-7, and what airtext-sms decodes, escapes
//!   included); 1 IA5/ASCII and 3 Latin-1 decode as ISO-8859-1; 8 UCS-2 as UTF-16BE
//!   (surrogate pairs joined); 2 and 4 (octet unspecified) show their octets as Latin-1 rather
//!   than being dropped; values from 0x10 up follow the GSM TP-DCS groups (3GPP TS 23.038 §4).
//! - Concatenation: with `esm_class` UDHI (0x40, §5.2.12) the text starts with a User Data
//!   Header whose 8- or 16-bit concatenation element (3GPP TS 23.040 §9.2.3.24.1/.8) places the
//!   part; without a UDH, the `sar_msg_ref_num` / `sar_total_segments` / `sar_segment_seqnum`
//!   TLVs (§5.3.2.22–24) do the same. Parts are joined by airtext-sms's `Reassembler` before
//!   decoding, so an escape or surrogate pair split across parts still decodes.
//! - Addresses: TON 1 (international) becomes E.164 with `+`; other TONs keep their digits, and
//!   a TON 0 (unknown) number that parses as a valid international number gets its `+`.
//!
//! Nothing here panics on any bytes.

use airtext_sms::tpdu::{Alphabet, Dcs};
use airtext_sms::udh::{Concat, Udh};
use airtext_sms::Part;

/// esm_class bit 6: the short message starts with a UDH (SMPP 3.4 §5.2.12).
pub const ESM_UDHI: u8 = 0x40;

/// SMPP 3.4 TON "international" (§5.2.5).
pub const TON_INTERNATIONAL: u8 = 1;

/// The fields of a mobile-originated `deliver_sm` that matter here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MoFields<'a> {
    pub source_addr_ton: u8,
    pub source_addr: &'a str,
    pub dest_addr_ton: u8,
    pub destination_addr: &'a str,
    pub esm_class: u8,
    pub data_coding: u8,
    pub short_message: &'a [u8],
    pub message_payload: Option<&'a [u8]>,
    /// `sar_msg_ref_num`, `sar_total_segments`, `sar_segment_seqnum`.
    pub sar: Option<(u16, u8, u8)>,
}

/// One received part, ready for the reassembler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoPart {
    /// The outside phone.
    pub from: String,
    /// Our DID.
    pub to: String,
    /// The part; its `sender` is [`group_key`]`(from, to)` so that parts sent by one phone to
    /// two of our numbers are never joined.
    pub part: Part,
}

/// Why a `deliver_sm` could not be read as a text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoError {
    #[error("UDHI is set but the user data header is malformed: {0}")]
    BadUdh(String),
    #[error("the deliver_sm has no source address")]
    NoSender,
}

/// The reassembly group of a (sender, recipient) pair; split back by [`split_group_key`].
pub fn group_key(from: &str, to: &str) -> String {
    format!("{from}\n{to}")
}

/// The (sender, recipient) of a [`group_key`].
pub fn split_group_key(key: &str) -> (String, String) {
    match key.split_once('\n') {
        Some((from, to)) => (from.to_owned(), to.to_owned()),
        None => (key.to_owned(), String::new()),
    }
}

/// The alphabet of an SMPP `data_coding` value.
pub fn alphabet_of(data_coding: u8) -> Alphabet {
    match data_coding {
        0x00 => Alphabet::Gsm7,
        // IA5 (ASCII) is a subset of Latin-1; 2 and 4 are "octet unspecified".
        0x01..=0x07 => Alphabet::EightBit,
        0x08 => Alphabet::Ucs2,
        // 0x09–0x0F are other national character sets; Latin-1 shows their octets.
        0x09..=0x0F => Alphabet::EightBit,
        other => Dcs(other).alphabet(),
    }
}

/// An address as text: `+digits` for TON international, else as given (trimmed).
pub fn address(ton: u8, addr: &str) -> String {
    let addr = addr.trim();
    let digits = addr.trim_start_matches('+');
    let all_digits = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    if ton == TON_INTERNATIONAL && all_digits {
        return format!("+{digits}");
    }
    if ton == 0 && all_digits && digits.len() > 8 {
        let e164 = format!("+{digits}");
        if let Ok(airtext_sms::Address::Phone(p)) = airtext_sms::Address::parse(&e164, None) {
            return p;
        }
    }
    addr.to_owned()
}

/// Reads one mobile-originated part.
pub fn decode(fields: &MoFields<'_>) -> Result<MoPart, MoError> {
    let from = address(fields.source_addr_ton, fields.source_addr);
    if from.is_empty() {
        return Err(MoError::NoSender);
    }
    let to = address(fields.dest_addr_ton, fields.destination_addr);
    let data = fields.message_payload.unwrap_or(fields.short_message);
    let (concat, payload) = if fields.esm_class & ESM_UDHI != 0 {
        let (udh, used) = Udh::parse(data).map_err(|e| MoError::BadUdh(e.to_string()))?;
        (udh.concat(), data.get(used..).unwrap_or_default())
    } else {
        let sar = fields
            .sar
            .map(|(reference, total, seq)| Concat {
                reference,
                total,
                seq,
            })
            .filter(Concat::is_valid);
        (sar, data)
    };
    Ok(MoPart {
        part: Part {
            sender: group_key(&from, &to),
            concat,
            alphabet: alphabet_of(fields.data_coding),
            payload: payload.to_vec(),
        },
        from,
        to,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use std::time::Duration;

    use airtext_sms::{Push, Reassembler};

    use super::*;

    fn fields<'a>(data_coding: u8, sm: &'a [u8]) -> MoFields<'a> {
        MoFields {
            source_addr_ton: 1,
            source_addr: "447700900123",
            dest_addr_ton: 1,
            destination_addr: "14155550100",
            esm_class: 0,
            data_coding,
            short_message: sm,
            message_payload: None,
            sar: None,
        }
    }

    fn text(part: MoPart) -> String {
        match Reassembler::new(Duration::from_secs(60)).push(part.part, Duration::ZERO) {
            Push::Complete(m) => m.text,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn gsm7_unpacked_septets_with_escapes() {
        // "Hi €[" : H i space, ESC 0x65 (€), ESC 0x3C ([)
        let sm = [0x48, 0x69, 0x20, 0x1B, 0x65, 0x1B, 0x3C];
        let p = decode(&fields(0, &sm)).unwrap();
        assert_eq!(p.from, "+447700900123");
        assert_eq!(p.to, "+14155550100");
        assert_eq!(text(p), "Hi €[");
    }

    #[test]
    fn latin1_ascii_and_ucs2() {
        assert_eq!(text(decode(&fields(3, b"caf\xE9")).unwrap()), "café");
        assert_eq!(text(decode(&fields(1, b"plain")).unwrap()), "plain");
        let ucs2: Vec<u8> = "Hi 😀".encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(text(decode(&fields(8, &ucs2)).unwrap()), "Hi 😀");
        // a trailing odd octet is shown as a replacement character, not a panic
        assert_eq!(
            text(decode(&fields(8, &[0, 0x41, 0])).unwrap()),
            "A\u{FFFD}"
        );
    }

    #[test]
    fn message_payload_wins_over_short_message() {
        let mut f = fields(0, b"");
        f.message_payload = Some(b"from the payload");
        assert_eq!(text(decode(&f).unwrap()), "from the payload");
    }

    #[test]
    fn concatenated_parts_out_of_order() {
        let one = [&[0x05, 0x00, 0x03, 0x2A, 0x02, 0x01][..], b"Hello, "].concat();
        let two = [&[0x05, 0x00, 0x03, 0x2A, 0x02, 0x02][..], b"world"].concat();
        let mut r = Reassembler::new(Duration::from_secs(60));
        let mut f2 = fields(0, &two);
        f2.esm_class = ESM_UDHI;
        let mut f1 = fields(0, &one);
        f1.esm_class = ESM_UDHI;
        let p2 = decode(&f2).unwrap();
        assert_eq!(
            p2.part.concat,
            Some(Concat {
                reference: 0x2A,
                total: 2,
                seq: 2
            })
        );
        assert!(matches!(
            r.push(p2.part, Duration::ZERO),
            Push::Pending { .. }
        ));
        match r.push(decode(&f1).unwrap().part, Duration::ZERO) {
            Push::Complete(m) => {
                assert_eq!(m.text, "Hello, world");
                assert_eq!(
                    split_group_key(&m.sender),
                    ("+447700900123".into(), "+14155550100".into())
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sar_tlvs_place_a_part() {
        let mut f = fields(0, b"abc");
        f.sar = Some((7, 3, 2));
        let p = decode(&f).unwrap();
        assert_eq!(
            p.part.concat,
            Some(Concat {
                reference: 7,
                total: 3,
                seq: 2
            })
        );
        f.sar = Some((7, 3, 0)); // invalid: treated as a whole message
        assert_eq!(decode(&f).unwrap().part.concat, None);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let mut f = fields(0, &[0x09, 0x00, 0x03]);
        f.esm_class = ESM_UDHI;
        assert!(matches!(decode(&f), Err(MoError::BadUdh(_))));
        f.short_message = &[];
        assert!(matches!(decode(&f), Err(MoError::BadUdh(_))));
        let mut f = fields(0, b"x");
        f.source_addr = "";
        assert_eq!(decode(&f), Err(MoError::NoSender));
        for dc in 0..=255u8 {
            let _ = decode(&fields(dc, &[0xFF, 0x00, 0xD8, 0x3D]));
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(address(1, "14155550100"), "+14155550100");
        assert_eq!(address(1, "+14155550100"), "+14155550100");
        assert_eq!(address(0, "14155550100"), "+14155550100");
        assert_eq!(address(3, "12345"), "12345");
        assert_eq!(address(5, "AIRTEXT"), "AIRTEXT");
        assert_eq!(address(0, "12345"), "12345");
    }

    #[test]
    fn alphabets() {
        assert_eq!(alphabet_of(0), Alphabet::Gsm7);
        assert_eq!(alphabet_of(3), Alphabet::EightBit);
        assert_eq!(alphabet_of(8), Alphabet::Ucs2);
        assert_eq!(alphabet_of(0xF0), Alphabet::Gsm7);
        assert_eq!(alphabet_of(0xF4), Alphabet::EightBit);
        assert_eq!(alphabet_of(0x18), Alphabet::Ucs2);
    }
}
