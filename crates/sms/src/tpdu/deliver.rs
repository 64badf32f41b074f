//! SMS-DELIVER, 3GPP TS 23.040 §9.2.2.1.

use serde::{Deserialize, Serialize};

use super::{Dcs, DecodeError, EncodeError, Reader, Timestamp, TpAddress, UserData};
use crate::udh::Concat;

/// An SMS-DELIVER TPDU: a message arriving at the phone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deliver {
    /// TP-MMS read the natural way round: `true` when more messages wait at the SC
    /// (the bit is 0 then).
    pub more_messages_to_send: bool,
    /// TP-LP: loop prevention.
    pub loop_prevention: bool,
    /// TP-SRI: the sender asked for a status report.
    pub status_report_indication: bool,
    /// TP-RP: a reply path is set.
    pub reply_path: bool,
    /// TP-OA: the sender.
    pub originator: TpAddress,
    /// TP-PID.
    pub protocol_id: u8,
    /// TP-DCS.
    pub dcs: Dcs,
    /// TP-SCTS: when the SC received it.
    pub timestamp: Timestamp,
    /// TP-UDL/TP-UD; TP-UDHI is set when it has a header.
    pub user_data: UserData,
}

impl Deliver {
    pub(super) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let first = r.u8("the first octet")?;
        let originator = TpAddress::decode_tp(r, "TP-OA")?;
        let protocol_id = r.u8("TP-PID")?;
        let dcs = Dcs(r.u8("TP-DCS")?);
        let timestamp = Timestamp::decode(r.array("TP-SCTS")?)?;
        let user_data = UserData::decode(r, first & 0x40 != 0, dcs.alphabet())?;
        Ok(Deliver {
            more_messages_to_send: first & 0x04 == 0,
            loop_prevention: first & 0x08 != 0,
            status_report_indication: first & 0x20 != 0,
            reply_path: first & 0x80 != 0,
            originator,
            protocol_id,
            dcs,
            timestamp,
            user_data,
        })
    }

    /// The TPDU octets (no SMSC field): for simulators and tests.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut first = 0x00u8;
        if !self.more_messages_to_send {
            first |= 0x04;
        }
        if self.loop_prevention {
            first |= 0x08;
        }
        if self.status_report_indication {
            first |= 0x20;
        }
        if self.user_data.header.is_some() {
            first |= 0x40;
        }
        if self.reply_path {
            first |= 0x80;
        }
        let mut out = vec![first];
        self.originator.encode_tp(&mut out)?;
        out.push(self.protocol_id);
        out.push(self.dcs.0);
        out.extend_from_slice(&self.timestamp.encode());
        self.user_data.encode(&mut out)?;
        Ok(out)
    }

    /// The text of the user data.
    pub fn text(&self) -> String {
        self.user_data.text()
    }

    /// The concatenation element, when this is one part of a longer message.
    pub fn concat(&self) -> Option<Concat> {
        self.user_data.concat()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use crate::tpdu::{decode_hex_with_smsc, Alphabet, Tpdu};

    fn deliver(hex: &str) -> super::Deliver {
        match decode_hex_with_smsc(hex).unwrap().tpdu {
            Tpdu::Deliver(d) => d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn gsm7_deliver_with_smsc() {
        // A widely copied example: SMSC +312600000000, from +31641600986, "How are you?".
        // Its time zone octet 0x08 is "minus zero" quarters (python-gsmmodem agrees).
        let d =
            deliver("0791136200000000040B911346610089F60000208062917314080CC8F71D14969741F977FD07");
        assert_eq!(d.originator.to_string(), "+31641600986");
        assert_eq!(d.text(), "How are you?");
        assert_eq!(d.timestamp.to_rfc3339(), "2002-08-26T19:37:41+00:00");
        assert!(!d.more_messages_to_send); // first octet 0x04: TP-MMS set, nothing more waits
        assert_eq!(d.concat(), None);
    }

    #[test]
    fn ucs2_deliver() {
        let d = deliver("00040B911346610089F60008208062917314080A04180432043804420021");
        assert_eq!(d.user_data.alphabet, Alphabet::Ucs2);
        assert_eq!(d.text(), "Ивит!");
    }

    #[test]
    fn eight_bit_deliver() {
        let d = deliver("00040B911346610089F6000420806291731408030102FF");
        assert_eq!(d.user_data.alphabet, Alphabet::EightBit);
        assert_eq!(d.user_data.payload, [1, 2, 0xFF]);
    }

    #[test]
    fn concatenated_gsm7_deliver_with_16_bit_reference() {
        // UDH 06 08 04 1234 02 01: 7 octets = 8 septets, no fill bits; then "Hi" (C834).
        let d = deliver("00440B911346610089F60000208062917314080A06080412340201C834");
        let c = d.concat().unwrap();
        assert_eq!((c.reference, c.total, c.seq), (0x1234, 2, 1));
        assert_eq!(d.text(), "Hi");
    }

    #[test]
    fn alphanumeric_sender() {
        let d =
            deliver("0791448720003023240DD0E474D81C0EBB010000111011315214000BE474D81C0EBB5DE3771B");
        assert_eq!(d.originator.to_string(), "diafaan");
        assert_eq!(d.text(), "diafaan.com");
        assert_eq!(d.timestamp.to_rfc3339(), "2011-01-11T13:25:41+00:00");
    }

    #[test]
    fn round_trips_through_to_bytes() {
        let d =
            deliver("0791136200000000040B911346610089F60000208062917314080CC8F71D14969741F977FD07");
        let bytes = d.to_bytes().unwrap();
        assert_eq!(crate::tpdu::Tpdu::decode(&bytes).unwrap(), Tpdu::Deliver(d));
    }

    #[test]
    fn truncated_or_inconsistent_user_data_is_an_error() {
        // UDL says 12 septets, only 10 octets follow.
        assert!(
            decode_hex_with_smsc("00040B911346610089F60000208062917314080CC8F71D14969741F977")
                .is_err()
        );
        // UDHI set with a header longer than UDL.
        assert!(decode_hex_with_smsc("00440B911346610089F6000020806291731408020500").is_err());
    }
}
