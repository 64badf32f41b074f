//! SMS-SUBMIT, 3GPP TS 23.040 §9.2.2.2.

use serde::{Deserialize, Serialize};

use super::{
    to_hex, Alphabet, Dcs, DecodeError, EncodeError, Reader, Timestamp, TpAddress, UserData,
};
use crate::plan::{plan, PlanError};
use crate::udh::Udh;

/// TP-Validity-Period, 3GPP TS 23.040 §9.2.3.12.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Validity {
    /// The relative format (TP-VPF `10`), one octet; see [`Validity::relative_minutes`].
    Relative(u8),
    /// The absolute format (TP-VPF `11`): a time stamp.
    Absolute(Timestamp),
    /// The enhanced format (TP-VPF `01`), kept as its 7 raw octets (§9.2.3.12.3).
    Enhanced([u8; 7]),
}

impl Validity {
    /// The shortest relative validity period of at least `minutes` (3GPP TS 23.040
    /// §9.2.3.12.1): 5-minute steps to 12 h, 30-minute steps to 24 h, days to 30 days,
    /// weeks to 63 weeks (the maximum, also for anything longer).
    pub fn from_minutes(minutes: u32) -> Validity {
        const DAY: u32 = 24 * 60;
        let v: u32 = if minutes <= 12 * 60 {
            minutes.div_ceil(5).saturating_sub(1)
        } else if minutes <= DAY {
            143 + (minutes - 12 * 60).div_ceil(30)
        } else if minutes <= 30 * DAY {
            166 + minutes.div_ceil(DAY)
        } else {
            (192 + minutes.div_ceil(7 * DAY)).min(255)
        };
        Validity::Relative(u8::try_from(v).unwrap_or(u8::MAX))
    }

    /// For the relative format, the period in minutes (3GPP TS 23.040 §9.2.3.12.1).
    pub fn relative_minutes(&self) -> Option<u32> {
        let Validity::Relative(v) = *self else {
            return None;
        };
        let v = u32::from(v);
        Some(match v {
            0..=143 => (v + 1) * 5,
            144..=167 => 12 * 60 + (v - 143) * 30,
            168..=196 => (v - 166) * 24 * 60,
            _ => (v - 192) * 7 * 24 * 60,
        })
    }

    fn vpf(&self) -> u8 {
        match self {
            Validity::Relative(_) => 0b10,
            Validity::Enhanced(_) => 0b01,
            Validity::Absolute(_) => 0b11,
        }
    }
}

/// An SMS-SUBMIT TPDU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submit {
    /// TP-RD: the SC may reject a duplicate of an earlier message (same TP-MR and TP-DA).
    pub reject_duplicates: bool,
    /// TP-RP: a reply path is set.
    pub reply_path: bool,
    /// TP-SRR: a status report (delivery receipt) is requested.
    pub status_report_request: bool,
    /// TP-MR. A modem replaces it with its own counter on `AT+CMGS`.
    pub message_reference: u8,
    /// TP-DA.
    pub destination: TpAddress,
    /// TP-PID; 0 for ordinary text.
    pub protocol_id: u8,
    /// TP-DCS.
    pub dcs: Dcs,
    /// TP-VP, with TP-VPF saying which format.
    pub validity: Option<Validity>,
    /// TP-UDL/TP-UD; TP-UDHI is set when it has a header.
    pub user_data: UserData,
}

impl Submit {
    pub(super) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let first = r.u8("the first octet")?;
        let message_reference = r.u8("TP-MR")?;
        let destination = TpAddress::decode_tp(r, "TP-DA")?;
        let protocol_id = r.u8("TP-PID")?;
        let dcs = Dcs(r.u8("TP-DCS")?);
        let validity = match (first >> 3) & 0x03 {
            0b10 => Some(Validity::Relative(r.u8("TP-VP")?)),
            0b11 => Some(Validity::Absolute(Timestamp::decode(r.array("TP-VP")?)?)),
            0b01 => Some(Validity::Enhanced(r.array("TP-VP")?)),
            _ => None,
        };
        let user_data = UserData::decode(r, first & 0x40 != 0, dcs.alphabet())?;
        Ok(Submit {
            reject_duplicates: first & 0x04 != 0,
            reply_path: first & 0x80 != 0,
            status_report_request: first & 0x20 != 0,
            message_reference,
            destination,
            protocol_id,
            dcs,
            validity,
            user_data,
        })
    }

    /// The TPDU octets (no SMSC field).
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut first = 0x01u8;
        if self.reject_duplicates {
            first |= 0x04;
        }
        if let Some(v) = &self.validity {
            first |= v.vpf() << 3;
        }
        if self.status_report_request {
            first |= 0x20;
        }
        if self.user_data.header.is_some() {
            first |= 0x40;
        }
        if self.reply_path {
            first |= 0x80;
        }
        let mut out = vec![first, self.message_reference];
        self.destination.encode_tp(&mut out)?;
        out.push(self.protocol_id);
        out.push(self.dcs.0);
        match &self.validity {
            Some(Validity::Relative(v)) => out.push(*v),
            Some(Validity::Absolute(t)) => out.extend_from_slice(&t.encode()),
            Some(Validity::Enhanced(e)) => out.extend_from_slice(e),
            None => {}
        }
        self.user_data.encode(&mut out)?;
        Ok(out)
    }

    /// The text of the user data.
    pub fn text(&self) -> String {
        self.user_data.text()
    }
}

/// Choices for [`encode_submit`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmitOptions {
    /// TP-MR of every part (a modem assigns its own on `AT+CMGS`).
    pub message_reference: u8,
    /// The reference in the concatenation UDH; the same for all parts of one message and
    /// different between messages to the same recipient.
    pub concat_reference: u8,
    /// Ask for a delivery receipt (TP-SRR).
    pub status_report_request: bool,
    /// TP-VP, if any.
    pub validity: Option<Validity>,
    /// TP-RD.
    pub reject_duplicates: bool,
    /// The SMSC address to put in front; `None` writes `00` (the modem's own SMSC).
    pub smsc: Option<TpAddress>,
}

/// One SMS-SUBMIT ready for `AT+CMGS=<tpdu_length>` in PDU mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitPdu {
    /// SMSC field followed by the TPDU.
    pub bytes: Vec<u8>,
    /// Octets of the TPDU alone (without the SMSC field).
    pub tpdu_length: usize,
}

impl SubmitPdu {
    /// The bytes as upper-case hex, SMSC field first.
    pub fn hex(&self) -> String {
        to_hex(&self.bytes)
    }
}

/// Encodes `text` to `to` as one SMS-SUBMIT per segment of [`plan`]`(text)`, each part with
/// the 8-bit concatenation UDH when there are several (3GPP TS 23.040 §9.2.3.24.1). An empty
/// text gives one SMS-SUBMIT with no user data.
pub fn encode_submit(
    to: &str,
    text: &str,
    opts: &SubmitOptions,
) -> Result<Vec<SubmitPdu>, EncodeError> {
    let destination = TpAddress::phone(to)?;
    let p = plan(text);
    let segments = p.encode(opts.concat_reference).map_err(|e| match e {
        PlanError::TooManySegments(n) => EncodeError::TooManySegments(n),
    })?;
    let alphabet = match p.encoding {
        crate::Encoding::Gsm7 => Alphabet::Gsm7,
        crate::Encoding::Ucs2 => Alphabet::Ucs2,
    };
    let mut out = Vec::with_capacity(segments.len());
    for seg in segments {
        let header = if seg.udh.is_empty() {
            None
        } else {
            Some(
                Udh::parse(&seg.udh)
                    .map_err(|_| EncodeError::UserDataTooLong)?
                    .0,
            )
        };
        let submit = Submit {
            reject_duplicates: opts.reject_duplicates,
            reply_path: false,
            status_report_request: opts.status_report_request,
            message_reference: opts.message_reference,
            destination: destination.clone(),
            protocol_id: 0,
            dcs: Dcs(seg.data_coding),
            validity: opts.validity,
            user_data: UserData {
                header,
                alphabet,
                payload: seg.payload,
            },
        };
        let tpdu = submit.to_bytes()?;
        let mut bytes = Vec::with_capacity(tpdu.len().saturating_add(12));
        TpAddress::encode_smsc(opts.smsc.as_ref(), &mut bytes)?;
        bytes.extend_from_slice(&tpdu);
        out.push(SubmitPdu {
            bytes,
            tpdu_length: tpdu.len(),
        });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::tpdu::{decode_with_smsc, Tpdu};

    #[test]
    fn single_gsm7_submit_matches_the_textbook() {
        // The classic "hellohello" to +14155550100, no SRR, no VP.
        let pdus = encode_submit("+14155550100", "hellohello", &SubmitOptions::default()).unwrap();
        assert_eq!(pdus.len(), 1);
        assert_eq!(
            pdus[0].hex(),
            "0001000B914151550501F000000AE8329BFD4697D9EC37"
        );
        assert_eq!(pdus[0].tpdu_length, 22);
    }

    #[test]
    fn options_set_their_bits() {
        let opts = SubmitOptions {
            status_report_request: true,
            reject_duplicates: true,
            validity: Some(Validity::from_minutes(24 * 60)),
            message_reference: 7,
            ..SubmitOptions::default()
        };
        let pdus = encode_submit("12345", "hi", &opts).unwrap();
        let d = decode_with_smsc(&pdus[0].bytes).unwrap();
        let Tpdu::Submit(s) = d.tpdu else { panic!() };
        assert!(s.status_report_request && s.reject_duplicates);
        assert_eq!(s.validity, Some(Validity::Relative(167)));
        assert_eq!(s.message_reference, 7);
        assert_eq!(s.destination.to_string(), "12345");
        assert_eq!(s.text(), "hi");
        assert_eq!(pdus[0].bytes[1], 0x01 | 0x04 | 0x10 | 0x20);
    }

    #[test]
    fn multipart_gsm7_has_udh_and_fill_bit() {
        let text = "x".repeat(200);
        let pdus = encode_submit(
            "+4477",
            &text,
            &SubmitOptions {
                concat_reference: 9,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(pdus.len(), 2);
        for (i, p) in pdus.iter().enumerate() {
            let d = decode_with_smsc(&p.bytes).unwrap();
            let Tpdu::Submit(s) = d.tpdu else { panic!() };
            let c = s.user_data.concat().unwrap();
            assert_eq!((c.reference, c.total, usize::from(c.seq)), (9, 2, i + 1));
            assert_eq!(p.bytes[1] & 0x40, 0x40);
        }
        // UDL of part 1: 7 header septets + 153.
        let d = decode_with_smsc(&pdus[0].bytes).unwrap();
        let Tpdu::Submit(s) = d.tpdu else { panic!() };
        assert_eq!(s.user_data.payload.len(), 153);
        assert_eq!(pdus[0].tpdu_length, 1 + 1 + 4 + 1 + 1 + 1 + 140);
    }

    #[test]
    fn ucs2_multipart_with_emoji() {
        let text = format!("{}😀end", "ж".repeat(66));
        let pdus = encode_submit("+4477", &text, &SubmitOptions::default()).unwrap();
        let texts: Vec<String> = pdus
            .iter()
            .map(|p| match decode_with_smsc(&p.bytes).unwrap().tpdu {
                Tpdu::Submit(s) => s.text(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(texts, ["ж".repeat(66), "😀end".to_owned()]);
    }

    #[test]
    fn validity_periods() {
        assert_eq!(Validity::from_minutes(0), Validity::Relative(0));
        assert_eq!(Validity::from_minutes(5), Validity::Relative(0));
        assert_eq!(Validity::from_minutes(6), Validity::Relative(1));
        assert_eq!(Validity::from_minutes(60), Validity::Relative(11));
        assert_eq!(Validity::from_minutes(720), Validity::Relative(143));
        assert_eq!(Validity::from_minutes(750), Validity::Relative(144));
        assert_eq!(Validity::from_minutes(1441), Validity::Relative(168));
        assert_eq!(Validity::from_minutes(30 * 1440), Validity::Relative(196));
        assert_eq!(
            Validity::from_minutes(30 * 1440 + 1),
            Validity::Relative(197)
        );
        assert_eq!(Validity::from_minutes(u32::MAX), Validity::Relative(255));
        for v in 0..=255u8 {
            let m = Validity::Relative(v).relative_minutes().unwrap();
            assert_eq!(Validity::from_minutes(m), Validity::Relative(v), "{v}");
        }
    }

    #[test]
    fn bad_destinations_are_refused() {
        assert!(encode_submit("alice", "hi", &SubmitOptions::default()).is_err());
        assert!(encode_submit("", "hi", &SubmitOptions::default()).is_err());
    }
}
