//! What a `command_status` (SMPP 3.4 §5.1.3, table 5-2) in a `submit_sm_resp` or
//! `generic_nack` means for the message: accepted, worth another try, or never going.
//!
//! | status | name | class | why |
//! |---|---|---|---|
//! | 0x00 | ESME_ROK | accepted | |
//! | 0x04, 0x05 | ESME_RINVBNDSTS, ESME_RALYBND | retryable | a session-state problem; a new bind fixes it |
//! | 0x08 | ESME_RSYSERR | retryable | the SMSC is (partly) down |
//! | 0x0D–0x0F | bind failures | retryable | only meaningful at bind time; the message itself is fine |
//! | 0x14 | ESME_RMSGQFUL | retryable | the SMSC's queue is full |
//! | 0x58 | ESME_RTHROTTLED | retryable | we exceeded the SMSC's rate; later is fine |
//! | 0x64 | ESME_RX_T_APPN | retryable | "temporary application error" by definition |
//! | 0xFE, 0xFF | delivery failure, ESME_RUNKNOWNERR | retryable | nothing says it is final |
//! | 0x0400–0x04FF | vendor specific | retryable | unknown meaning: retrying until the validity runs out loses nothing, calling it final could drop a good message |
//! | any other unlisted code | — | retryable | same reasoning |
//! | 0x01–0x03, 0x06, 0x07 | invalid length / command / priority / registered_delivery | permanent | the same PDU is refused again |
//! | 0x0A | ESME_RINVSRCADR | permanent | invalid source address |
//! | 0x0B | ESME_RINVDSTADR | permanent | invalid destination |
//! | 0x0C, 0x11, 0x13, 0x15 | message id / cancel / replace / service type | permanent | |
//! | 0x33, 0x34, 0x40, 0x42–0x44 | multi-destination and esm_class errors | permanent | |
//! | 0x45 | ESME_RSUBMITFAIL | permanent | the SMSC refused this message |
//! | 0x48–0x51, 0x53–0x55 | TON / NPI / system_type / replace / number-of-messages errors | permanent | |
//! | 0x61–0x63 | schedule / expiry / default message id | permanent | |
//! | 0x65, 0x66 | ESME_RX_P_APPN, ESME_RX_R_APPN | permanent | "permanent application error", "reject message" |
//! | 0xC0–0xC4 | TLV errors | permanent | |

/// "Throttling error": the ESME exceeded the SMSC's allowed message rate.
pub const ESME_RTHROTTLED: u32 = 0x58;
/// "Message queue full".
pub const ESME_RMSGQFUL: u32 = 0x14;

/// The class of a response status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    Ok,
    Retryable,
    Permanent,
}

/// Classifies a `command_status` (see the module table).
pub fn classify(status: u32) -> StatusClass {
    match status {
        0x00 => StatusClass::Ok,
        0x01..=0x03
        | 0x06
        | 0x07
        | 0x0A
        | 0x0B
        | 0x0C
        | 0x11
        | 0x13
        | 0x15
        | 0x33
        | 0x34
        | 0x40
        | 0x42..=0x45
        | 0x48..=0x51
        | 0x53..=0x55
        | 0x61..=0x63
        | 0x65
        | 0x66
        | 0xC0..=0xC4 => StatusClass::Permanent,
        _ => StatusClass::Retryable,
    }
}

/// The SMPP 3.4 name of a status, for logs and error texts.
pub fn name(status: u32) -> &'static str {
    match status {
        0x00 => "ESME_ROK",
        0x01 => "ESME_RINVMSGLEN (message length invalid)",
        0x02 => "ESME_RINVCMDLEN (command length invalid)",
        0x03 => "ESME_RINVCMDID (invalid command id)",
        0x04 => "ESME_RINVBNDSTS (incorrect bind status)",
        0x05 => "ESME_RALYBND (already bound)",
        0x06 => "ESME_RINVPRTFLG (invalid priority flag)",
        0x07 => "ESME_RINVREGDLVFLG (invalid registered_delivery)",
        0x08 => "ESME_RSYSERR (system error)",
        0x0A => "ESME_RINVSRCADR (invalid source address)",
        0x0B => "ESME_RINVDSTADR (invalid destination address)",
        0x0C => "ESME_RINVMSGID (invalid message id)",
        0x0D => "ESME_RBINDFAIL (bind failed)",
        0x0E => "ESME_RINVPASWD (invalid password)",
        0x0F => "ESME_RINVSYSID (invalid system_id)",
        0x11 => "ESME_RCANCELFAIL",
        0x13 => "ESME_RREPLACEFAIL",
        0x14 => "ESME_RMSGQFUL (message queue full)",
        0x15 => "ESME_RINVSERTYP (invalid service_type)",
        0x33 => "ESME_RINVNUMDESTS",
        0x34 => "ESME_RINVDLNAME",
        0x40 => "ESME_RINVDESTFLAG",
        0x42 => "ESME_RINVSUBREP",
        0x43 => "ESME_RINVESMCLASS (invalid esm_class)",
        0x44 => "ESME_RCNTSUBDL",
        0x45 => "ESME_RSUBMITFAIL (submit failed)",
        0x48 => "ESME_RINVSRCTON",
        0x49 => "ESME_RINVSRCNPI",
        0x50 => "ESME_RINVDSTTON",
        0x51 => "ESME_RINVDSTNPI",
        0x53 => "ESME_RINVSYSTYP (invalid system_type)",
        0x54 => "ESME_RINVREPFLAG",
        0x55 => "ESME_RINVNUMMSGS",
        0x58 => "ESME_RTHROTTLED (throttled)",
        0x61 => "ESME_RINVSCHED",
        0x62 => "ESME_RINVEXPIRY",
        0x63 => "ESME_RINVDFTMSGID",
        0x64 => "ESME_RX_T_APPN (temporary application error)",
        0x65 => "ESME_RX_P_APPN (permanent application error)",
        0x66 => "ESME_RX_R_APPN (message rejected)",
        0x67 => "ESME_RQUERYFAIL",
        0xC0 => "ESME_RINVOPTPARSTREAM",
        0xC1 => "ESME_ROPTPARNOTALLWD",
        0xC2 => "ESME_RINVPARLEN",
        0xC3 => "ESME_RMISSINGOPTPARAM",
        0xC4 => "ESME_RINVOPTPARAMVAL",
        0xFE => "ESME_RDELIVERYFAILURE",
        0xFF => "ESME_RUNKNOWNERR",
        0x0400..=0x04FF => "vendor-specific error",
        _ => "reserved error code",
    }
}

/// `"ESME_RTHROTTLED (throttled), command_status 0x00000058"`.
pub fn describe(status: u32) -> String {
    format!("{}, command_status {status:#010x}", name(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_classes() {
        assert_eq!(classify(0), StatusClass::Ok);
        for retryable in [
            0x04, 0x08, 0x0E, 0x14, 0x58, 0x64, 0xFE, 0xFF, 0x0400, 0x12345,
        ] {
            assert_eq!(
                classify(retryable),
                StatusClass::Retryable,
                "{retryable:#x}"
            );
        }
        for permanent in [
            0x01, 0x0A, 0x0B, 0x43, 0x45, 0x48, 0x51, 0x62, 0x65, 0x66, 0xC2,
        ] {
            assert_eq!(
                classify(permanent),
                StatusClass::Permanent,
                "{permanent:#x}"
            );
        }
    }

    #[test]
    fn descriptions_name_the_code() {
        assert_eq!(
            describe(0x58),
            "ESME_RTHROTTLED (throttled), command_status 0x00000058"
        );
        assert!(describe(0x0B).contains("invalid destination"));
        assert!(describe(0x0E).contains("password"));
    }
}
