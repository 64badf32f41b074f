//! SMS-STATUS-REPORT, 3GPP TS 23.040 §9.2.2.3, with TP-ST values from §9.2.3.15.

use serde::{Deserialize, Serialize};

use super::{Dcs, DecodeError, EncodeError, Reader, Timestamp, TpAddress, UserData};

/// What a TP-Status value means for the message (3GPP TS 23.040 §9.2.3.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusClass {
    /// `0x00–0x1F` "short message transaction completed": received by the recipient
    /// (0x00), forwarded but unconfirmed (0x01), replaced (0x02) or an SC-specific success.
    Delivered,
    /// `0x20–0x3F` "temporary error, SC still trying".
    Pending,
    /// `0x40–0x7F` permanent error, or temporary error with the SC no longer trying;
    /// reserved values above 0x7F are read as failure too.
    Failed,
}

impl StatusClass {
    /// Classifies a TP-ST octet.
    pub fn of(status: u8) -> Self {
        match status {
            0x00..=0x1F => StatusClass::Delivered,
            0x20..=0x3F => StatusClass::Pending,
            _ => StatusClass::Failed,
        }
    }
}

/// An SMS-STATUS-REPORT TPDU: the delivery receipt for an earlier SMS-SUBMIT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// `true` when more messages wait at the SC (TP-MMS bit 0).
    pub more_messages_to_send: bool,
    /// TP-LP.
    pub loop_prevention: bool,
    /// TP-SRQ: `false` reports on an SMS-SUBMIT, `true` on an SMS-COMMAND.
    pub status_report_qualifier: bool,
    /// TP-MR of the message reported on.
    pub message_reference: u8,
    /// TP-RA: the recipient of that message.
    pub recipient: TpAddress,
    /// TP-SCTS: when the SC received the original message.
    pub sc_timestamp: Timestamp,
    /// TP-DT: when the SC delivered it, or last tried, or gave up.
    pub discharge_time: Timestamp,
    /// TP-ST.
    pub status: u8,
    /// TP-PID, when TP-PI says it is present.
    pub protocol_id: Option<u8>,
    /// TP-DCS, when TP-PI says it is present.
    pub dcs: Option<Dcs>,
    /// TP-UDL/TP-UD, when TP-PI says they are present.
    pub user_data: Option<UserData>,
}

impl StatusReport {
    /// What [`Self::status`] means.
    pub fn class(&self) -> StatusClass {
        StatusClass::of(self.status)
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let first = r.u8("the first octet")?;
        let message_reference = r.u8("TP-MR")?;
        let recipient = TpAddress::decode_tp(r, "TP-RA")?;
        let sc_timestamp = Timestamp::decode(r.array("TP-SCTS")?)?;
        let discharge_time = Timestamp::decode(r.array("TP-DT")?)?;
        let status = r.u8("TP-ST")?;
        let mut report = StatusReport {
            more_messages_to_send: first & 0x04 == 0,
            loop_prevention: first & 0x08 != 0,
            status_report_qualifier: first & 0x20 != 0,
            message_reference,
            recipient,
            sc_timestamp,
            discharge_time,
            status,
            protocol_id: None,
            dcs: None,
            user_data: None,
        };
        // The optional tail (TP-PI and what it announces, §9.2.3.27). Many SCs pad here; a
        // tail that does not parse is ignored rather than losing the receipt.
        let _ = report.read_optional(r, first & 0x40 != 0);
        Ok(report)
    }

    fn read_optional(&mut self, r: &mut Reader<'_>, udhi: bool) -> Result<(), DecodeError> {
        if r.remaining() == 0 {
            return Ok(());
        }
        let pi = r.u8("TP-PI")?;
        let mut ext = pi;
        while ext & 0x80 != 0 {
            ext = r.u8("TP-PI")?;
        }
        if pi & 0x01 != 0 {
            self.protocol_id = Some(r.u8("TP-PID")?);
        }
        if pi & 0x02 != 0 {
            self.dcs = Some(Dcs(r.u8("TP-DCS")?));
        }
        if pi & 0x04 != 0 {
            let alphabet = self.dcs.unwrap_or(Dcs::GSM7).alphabet();
            self.user_data = Some(UserData::decode(r, udhi, alphabet)?);
        }
        Ok(())
    }

    /// The TPDU octets (no SMSC field): for simulators and tests.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut first = 0x02u8;
        if !self.more_messages_to_send {
            first |= 0x04;
        }
        if self.loop_prevention {
            first |= 0x08;
        }
        if self.status_report_qualifier {
            first |= 0x20;
        }
        if self.user_data.as_ref().is_some_and(|u| u.header.is_some()) {
            first |= 0x40;
        }
        let mut out = vec![first, self.message_reference];
        self.recipient.encode_tp(&mut out)?;
        out.extend_from_slice(&self.sc_timestamp.encode());
        out.extend_from_slice(&self.discharge_time.encode());
        out.push(self.status);
        let pi = u8::from(self.protocol_id.is_some())
            | u8::from(self.dcs.is_some()) << 1
            | u8::from(self.user_data.is_some()) << 2;
        if pi != 0 {
            out.push(pi);
            if let Some(p) = self.protocol_id {
                out.push(p);
            }
            if let Some(d) = self.dcs {
                out.push(d.0);
            }
            if let Some(u) = &self.user_data {
                u.encode(&mut out)?;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::tpdu::{decode_hex_with_smsc, Tpdu};

    fn report(hex: &str) -> StatusReport {
        match decode_hex_with_smsc(hex).unwrap().tpdu {
            Tpdu::StatusReport(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn delivered_receipt() {
        // MR 0x2A to +14155550100, received 2024-03-05 14:30:59 +01:00, delivered 14:31:05.
        let s = report("00062A0B914151550501F0423050410395404230504113504000");
        assert_eq!(s.message_reference, 0x2A);
        assert_eq!(s.recipient.to_string(), "+14155550100");
        assert_eq!(s.sc_timestamp.to_rfc3339(), "2024-03-05T14:30:59+01:00");
        assert_eq!(s.discharge_time.to_rfc3339(), "2024-03-05T14:31:05+01:00");
        assert_eq!(s.class(), StatusClass::Delivered);
        assert_eq!(
            StatusReport::read(&mut Reader::new(&s.to_bytes().unwrap())).unwrap(),
            s
        );
    }

    #[test]
    fn status_classes() {
        assert_eq!(StatusClass::of(0x00), StatusClass::Delivered);
        assert_eq!(StatusClass::of(0x02), StatusClass::Delivered);
        assert_eq!(StatusClass::of(0x20), StatusClass::Pending);
        assert_eq!(StatusClass::of(0x41), StatusClass::Failed);
        assert_eq!(StatusClass::of(0x60), StatusClass::Failed);
        assert_eq!(StatusClass::of(0xFF), StatusClass::Failed);
    }

    #[test]
    fn optional_tail_is_read_or_ignored() {
        let base = "00062A0B914151550501F04230504103954042305041135040";
        // ST 0x40, then PI 07: PID 00, DCS 08 (UCS-2), UDL 2, "é".
        let s = report(&format!("{base}400700080200E9"));
        assert_eq!(s.status, 0x40);
        assert_eq!(s.class(), StatusClass::Failed);
        assert_eq!(s.protocol_id, Some(0));
        assert_eq!(s.user_data.unwrap().text(), "é");
        // A garbage tail does not lose the receipt.
        let s = report(&format!("{base}00FF"));
        assert_eq!(s.status, 0);
        assert_eq!(s.user_data, None);
    }
}
