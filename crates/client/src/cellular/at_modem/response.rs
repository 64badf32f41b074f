//! Reading what a modem answers: final result codes, unsolicited result codes and the
//! information lines of the commands the modem backend uses.
//!
//! - Final results: `OK`, `ERROR` (ITU-T V.250 §5.7.1), `+CME ERROR: <err>` (3GPP TS 27.007
//!   §9.2) and `+CMS ERROR: <err>` (3GPP TS 27.005 §3.2.5), numeric or verbose (`AT+CMEE=2`).
//! - Unsolicited: `+CMTI`, `+CDSI`, `+CMT`, `+CDS` (TS 27.005 §3.4.1), `RING`, registration
//!   changes.
//! - Information lines: `+CPIN`, `+CREG`/`+CGREG`/`+CEREG`, `+COPS`, `+CMGS`, `+CMGR`,
//!   `+CMGL`.
//!
//! Every parser takes arbitrary text and returns `None` (or skips) what it cannot read.

use std::fmt;

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Final {
    /// `OK`.
    Ok,
    /// `ERROR`, or another V.250 failure (`NO CARRIER`, `COMMAND NOT SUPPORT`).
    Error,
    /// `+CME ERROR: …`.
    Cme(ErrorCode),
    /// `+CMS ERROR: …`.
    Cms(ErrorCode),
}

/// A `+CME ERROR` / `+CMS ERROR` value: the number, the text, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCode {
    /// The numeric code, given or looked up from the verbose text.
    pub code: Option<u16>,
    /// What it means, in words.
    pub message: String,
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(c) => write!(f, "{} (error {c})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The final result code a line is, if any.
pub fn final_result(line: &str) -> Option<Final> {
    match line {
        "OK" => return Some(Final::Ok),
        "ERROR" | "NO CARRIER" | "COMMAND NOT SUPPORT" | "TOO MANY PARAMETERS" => {
            return Some(Final::Error)
        }
        _ => {}
    }
    if let Some(rest) = strip_prefix_ci(line, "+CMS ERROR:") {
        return Some(Final::Cms(error_code(rest, cms_text)));
    }
    if let Some(rest) = strip_prefix_ci(line, "+CME ERROR:") {
        return Some(Final::Cme(error_code(rest, cme_text)));
    }
    None
}

fn error_code(rest: &str, table: fn(u16) -> Option<&'static str>) -> ErrorCode {
    let rest = rest.trim().trim_matches('"').trim();
    if let Ok(code) = rest.parse::<u16>() {
        let message = table(code)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("error {code} (not listed in 3GPP TS 27.005/27.007)"));
        return ErrorCode {
            code: Some(code),
            message,
        };
    }
    // Verbose form: find the number for the text so retry decisions still work.
    let code = (0..=u16::from(u8::MAX))
        .chain(300..=520)
        .find(|c| table(*c).is_some_and(|t| t.eq_ignore_ascii_case(rest)));
    ErrorCode {
        code,
        message: if rest.is_empty() {
            "unspecified error".to_owned()
        } else {
            rest.to_owned()
        },
    }
}

/// The meaning of a `+CMS ERROR` code: 0–127 are RP causes (3GPP TS 24.011 Annex E-2),
/// 128–255 TP-Failure-Cause values (3GPP TS 23.040 §9.2.3.22), 300–500 TS 27.005 §3.2.5.
pub fn cms_text(code: u16) -> Option<&'static str> {
    Some(match code {
        1 => "unassigned (unallocated) number",
        8 => "operator determined barring",
        10 => "call barred",
        21 => "short message transfer rejected",
        27 => "destination out of service",
        28 => "unidentified subscriber",
        29 => "facility rejected",
        30 => "unknown subscriber",
        38 => "network out of order",
        41 => "temporary failure",
        42 => "congestion",
        47 => "resources unavailable, unspecified",
        50 => "requested facility not subscribed",
        69 => "requested facility not implemented",
        81 => "invalid short message transfer reference value",
        95 => "invalid message, unspecified",
        96 => "invalid mandatory information",
        97 => "message type non-existent or not implemented",
        98 => "message not compatible with short message protocol state",
        99 => "information element non-existent or not implemented",
        111 => "protocol error, unspecified",
        127 => "interworking, unspecified",
        128 => "telematic interworking not supported",
        129 => "short message type 0 not supported",
        130 => "cannot replace short message",
        143 => "unspecified TP-PID error",
        144 => "data coding scheme (alphabet) not supported",
        145 => "message class not supported",
        159 => "unspecified TP-DCS error",
        160 => "command cannot be actioned",
        161 => "command unsupported",
        175 => "unspecified TP-Command error",
        176 => "TPDU not supported",
        192 => "SC busy",
        193 => "no SC subscription",
        194 => "SC system failure",
        195 => "invalid SME address",
        196 => "destination SME barred",
        197 => "SM rejected: duplicate SM",
        198 => "TP-VPF not supported",
        199 => "TP-VP not supported",
        208 => "SIM SMS storage full",
        209 => "no SMS storage capability in SIM",
        210 => "error in MS",
        211 => "memory capacity exceeded",
        212 => "SIM application toolkit busy",
        213 => "SIM data download error",
        255 => "unspecified error cause",
        300 => "ME failure",
        301 => "SMS service of ME reserved",
        302 => "operation not allowed",
        303 => "operation not supported",
        304 => "invalid PDU mode parameter",
        305 => "invalid text mode parameter",
        310 => "SIM not inserted",
        311 => "SIM PIN required",
        312 => "PH-SIM PIN required",
        313 => "SIM failure",
        314 => "SIM busy",
        315 => "SIM wrong",
        316 => "SIM PUK required",
        317 => "SIM PIN2 required",
        318 => "SIM PUK2 required",
        320 => "memory failure",
        321 => "invalid memory index",
        322 => "memory full",
        330 => "SMSC address unknown",
        331 => "no network service",
        332 => "network timeout",
        340 => "no +CNMA acknowledgement expected",
        500 => "unknown error",
        _ => return None,
    })
}

/// Whether sending again later may succeed after this `+CMS ERROR` code: the network or SIM
/// was busy or unreachable, rather than the message or subscription being refused.
pub fn cms_retryable(code: u16) -> bool {
    matches!(
        code,
        27 | 38 | 41 | 42 | 47 | 111 | 127 | 192 | 194 | 210 | 212 | 300 | 314 | 331 | 332 | 500
    )
}

/// The meaning of a `+CME ERROR` code (3GPP TS 27.007 §9.2.1).
pub fn cme_text(code: u16) -> Option<&'static str> {
    Some(match code {
        0 => "phone failure",
        1 => "no connection to phone",
        2 => "phone-adaptor link reserved",
        3 => "operation not allowed",
        4 => "operation not supported",
        5 => "PH-SIM PIN required",
        10 => "SIM not inserted",
        11 => "SIM PIN required",
        12 => "SIM PUK required",
        13 => "SIM failure",
        14 => "SIM busy",
        15 => "SIM wrong",
        16 => "incorrect password",
        17 => "SIM PIN2 required",
        18 => "SIM PUK2 required",
        20 => "memory full",
        21 => "invalid index",
        22 => "not found",
        23 => "memory failure",
        24 => "text string too long",
        25 => "invalid characters in text string",
        26 => "dial string too long",
        27 => "invalid characters in dial string",
        30 => "no network service",
        31 => "network timeout",
        32 => "network not allowed - emergency calls only",
        100 => "unknown",
        _ => return None,
    })
}

/// Whether a `+CME ERROR` code may go away by itself.
pub fn cme_retryable(code: u16) -> bool {
    matches!(code, 0 | 1 | 2 | 14 | 30 | 31 | 100)
}

/// An unsolicited result code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Urc {
    /// `+CMTI: <mem>,<index>`: a message was stored.
    NewMessage {
        /// The storage (`"SM"`, `"ME"`, `"MT"`…).
        storage: String,
        /// Its index there.
        index: u32,
    },
    /// `+CDSI: <mem>,<index>`: a status report was stored.
    NewStatusReport {
        /// The storage.
        storage: String,
        /// Its index there.
        index: u32,
    },
    /// `+CMT: [<alpha>],<length>`: a message routed straight to us; its PDU is the next line.
    MessagePdu,
    /// `+CDS: <length>`: a status report routed straight to us; its PDU is the next line.
    StatusReportPdu,
    /// Something else the modem volunteers (`RING`, `+CREG: 5`, vendor codes).
    Other(String),
}

/// Line prefixes that only ever come unsolicited, or that a command did not ask for.
const URC_PREFIXES: &[&str] = &[
    "+CMTI:", "+CDSI:", "+CMT:", "+CDS:", "RING", "+CREG:", "+CGREG:", "+CEREG:", "+CRING:",
    "+CIEV:", "+CUSD:", "+CBM:", "^", "+PBREADY", "+QIND:", "+CPIN:", "+CGEV:",
];

/// The URC a line is, unless it starts with `expected` (the prefix of the information
/// lines of the command in flight, which then owns it).
pub fn urc(line: &str, expected: Option<&str>) -> Option<Urc> {
    if expected.is_some_and(|p| !p.is_empty() && starts_with_ci(line, p)) {
        return None;
    }
    if let Some(rest) = strip_prefix_ci(line, "+CMTI:") {
        return storage_index(rest).map(|(storage, index)| Urc::NewMessage { storage, index });
    }
    if let Some(rest) = strip_prefix_ci(line, "+CDSI:") {
        return storage_index(rest).map(|(storage, index)| Urc::NewStatusReport { storage, index });
    }
    if starts_with_ci(line, "+CMT:") {
        return Some(Urc::MessagePdu);
    }
    if starts_with_ci(line, "+CDS:") {
        return Some(Urc::StatusReportPdu);
    }
    URC_PREFIXES
        .iter()
        .any(|p| starts_with_ci(line, p))
        .then(|| Urc::Other(line.to_owned()))
}

fn storage_index(rest: &str) -> Option<(String, u32)> {
    let f = fields(rest);
    let storage = f.first()?.clone();
    let index = f.get(1)?.parse().ok()?;
    Some((storage, index))
}

/// Splits the parameters of an information line on commas, honouring double quotes and
/// removing them.
pub fn fields(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_owned()),
            _ => cur.push(c),
        }
    }
    out.push(cur.trim().to_owned());
    out
}

/// The parameters after `prefix` in the first line that has it.
pub fn info_fields(lines: &[String], prefix: &str) -> Option<Vec<String>> {
    lines
        .iter()
        .find_map(|l| strip_prefix_ci(l, prefix))
        .map(fields)
}

/// The SIM state from `+CPIN: <code>` (3GPP TS 27.007 §8.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimState {
    /// `READY`.
    Ready,
    /// `SIM PIN`.
    NeedsPin,
    /// `SIM PUK`.
    NeedsPuk,
    /// Another code (`PH-SIM PIN`, `SIM PIN2`…).
    Other(String),
}

/// Reads the answer to `AT+CPIN?`.
pub fn sim_state(lines: &[String]) -> Option<SimState> {
    let f = info_fields(lines, "+CPIN:")?;
    let code = f.first()?.to_ascii_uppercase();
    Some(match code.as_str() {
        "READY" => SimState::Ready,
        "SIM PIN" => SimState::NeedsPin,
        "SIM PUK" => SimState::NeedsPuk,
        _ => SimState::Other(code),
    })
}

/// Network registration (`<stat>` of 3GPP TS 27.007 §7.2, §10.1.20, §10.1.22).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Registration {
    /// 0: not registered, not searching.
    NotRegistered,
    /// 1: registered on the home network.
    Home,
    /// 2: searching.
    Searching,
    /// 3: registration denied.
    Denied,
    /// 4: unknown (e.g. out of coverage).
    Unknown,
    /// 5: registered, roaming.
    Roaming,
    /// 6–10: registered for SMS only, emergency only, and other variants; 6/7 home and
    /// roaming for "SMS only" are folded into [`Registration::Home`]/[`Registration::Roaming`].
    Other(u8),
}

impl Registration {
    /// From `<stat>`.
    pub fn from_stat(stat: u8) -> Registration {
        match stat {
            0 => Registration::NotRegistered,
            1 | 6 => Registration::Home,
            2 => Registration::Searching,
            3 => Registration::Denied,
            4 => Registration::Unknown,
            5 | 7 => Registration::Roaming,
            n => Registration::Other(n),
        }
    }

    /// Registered, at home or roaming.
    pub fn is_registered(self) -> bool {
        matches!(self, Registration::Home | Registration::Roaming)
    }

    /// How good the registration is, to pick the best of CS, GPRS and EPS.
    pub(crate) fn rank(self) -> u8 {
        match self {
            Registration::Home => 5,
            Registration::Roaming => 4,
            Registration::Searching => 3,
            Registration::Denied => 2,
            Registration::Other(_) => 1,
            Registration::NotRegistered | Registration::Unknown => 0,
        }
    }
}

/// Reads the answer to `AT+CREG?` / `AT+CGREG?` / `AT+CEREG?`: `<prefix> <n>,<stat>[,…]`.
pub fn registration(lines: &[String], prefix: &str) -> Option<Registration> {
    let f = info_fields(lines, prefix)?;
    let stat = f.get(1)?.parse::<u8>().ok()?;
    Some(Registration::from_stat(stat))
}

/// Reads the operator name from `+COPS: <mode>[,<format>,<oper>[,<AcT>]]` (TS 27.007 §7.3).
pub fn operator(lines: &[String]) -> Option<String> {
    let f = info_fields(lines, "+COPS:")?;
    f.get(2).filter(|s| !s.is_empty()).cloned()
}

/// The TP-MR from `+CMGS: <mr>[,<scts>]` (TS 27.005 §3.5.1).
pub fn message_reference(lines: &[String]) -> Option<u8> {
    let f = info_fields(lines, "+CMGS:")?;
    f.first()?.parse::<u8>().ok()
}

/// The PDU (hex, SMSC field first) from `+CMGR: <stat>,[<alpha>],<length>` and the line
/// after it (TS 27.005 §3.4.3). Lines between that are not hex (stray vendor codes) are
/// skipped.
pub fn read_pdu(lines: &[String]) -> Option<String> {
    let start = lines.iter().position(|l| starts_with_ci(l, "+CMGR:"))?;
    lines
        .iter()
        .skip(start.saturating_add(1))
        .find(|l| is_hex(l))
        .cloned()
}

/// `(index, pdu hex)` of each message in the answer to `AT+CMGL=4` (TS 27.005 §3.4.2).
pub fn list_pdus(lines: &[String]) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let mut pending: Option<u32> = None;
    for l in lines {
        if let Some(rest) = strip_prefix_ci(l, "+CMGL:") {
            pending = fields(rest).first().and_then(|i| i.parse().ok());
        } else if is_hex(l) {
            if let Some(index) = pending.take() {
                out.push((index, l.clone()));
            }
        }
    }
    out
}

/// Whether a line is an even number of hex digits.
pub fn is_hex(line: &str) -> bool {
    !line.is_empty() && line.len() % 2 == 0 && line.bytes().all(|b| b.is_ascii_hexdigit())
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if starts_with_ci(s, prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn v(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn final_results() {
        assert_eq!(final_result("OK"), Some(Final::Ok));
        assert_eq!(final_result("ERROR"), Some(Final::Error));
        assert_eq!(final_result("+CMGS: 3"), None);
        let Some(Final::Cms(e)) = final_result("+CMS ERROR: 330") else {
            panic!()
        };
        assert_eq!(e.code, Some(330));
        assert_eq!(e.message, "SMSC address unknown");
        assert_eq!(e.to_string(), "SMSC address unknown (error 330)");
        let Some(Final::Cms(e)) = final_result("+CMS ERROR: no network service") else {
            panic!()
        };
        assert_eq!(e.code, Some(331));
        let Some(Final::Cme(e)) = final_result("+CME ERROR: SIM PIN required") else {
            panic!()
        };
        assert_eq!(e.code, Some(11));
        let Some(Final::Cme(e)) = final_result("+CME ERROR: 9999") else {
            panic!()
        };
        assert_eq!(e.code, Some(9999));
        let Some(Final::Cms(e)) = final_result("+CMS ERROR: vendor says no") else {
            panic!()
        };
        assert_eq!((e.code, e.message.as_str()), (None, "vendor says no"));
        assert_eq!(
            final_result("+CMS ERROR:"),
            Some(Final::Cms(ErrorCode {
                code: None,
                message: "unspecified error".into()
            }))
        );
    }

    #[test]
    fn retry_classes() {
        for c in [38, 41, 42, 331, 332, 500] {
            assert!(cms_retryable(c), "{c}");
        }
        for c in [1, 21, 96, 304, 330, 195] {
            assert!(!cms_retryable(c), "{c}");
        }
        assert!(cme_retryable(30) && !cme_retryable(16));
    }

    #[test]
    fn urcs_and_expected_prefixes() {
        assert_eq!(
            urc("+CMTI: \"SM\",3", None),
            Some(Urc::NewMessage {
                storage: "SM".into(),
                index: 3
            })
        );
        assert_eq!(
            urc("+CDSI: \"SR\",12", None),
            Some(Urc::NewStatusReport {
                storage: "SR".into(),
                index: 12
            })
        );
        assert_eq!(urc("+CDS: 25", None), Some(Urc::StatusReportPdu));
        assert_eq!(urc("+CMT: ,24", None), Some(Urc::MessagePdu));
        assert_eq!(urc("+CREG: 5", None), Some(Urc::Other("+CREG: 5".into())));
        assert_eq!(urc("+CREG: 0,5", Some("+CREG:")), None);
        assert_eq!(urc("+CMGR: 0,,23", Some("+CMGR:")), None);
        assert_eq!(urc("07911326040000F0", None), None);
        assert_eq!(urc("+CMTI: garbage", None), None);
        assert_eq!(urc("+CMTI: \"SM\",-1", None), None);
    }

    #[test]
    fn fields_with_quotes() {
        assert_eq!(fields("0,0,\"Op, Inc\",7"), ["0", "0", "Op, Inc", "7"]);
        assert_eq!(fields(""), [""]);
    }

    #[test]
    fn sim_and_registration() {
        assert_eq!(sim_state(&v(&["+CPIN: READY"])), Some(SimState::Ready));
        assert_eq!(sim_state(&v(&["+CPIN: SIM PIN"])), Some(SimState::NeedsPin));
        assert_eq!(sim_state(&v(&["+CPIN: SIM PUK"])), Some(SimState::NeedsPuk));
        assert_eq!(sim_state(&v(&["junk"])), None);
        assert_eq!(
            registration(&v(&["+CREG: 0,5"]), "+CREG:"),
            Some(Registration::Roaming)
        );
        assert_eq!(
            registration(&v(&["+CGREG: 2,1,\"00C3\",\"0000A1B2\",7"]), "+CGREG:"),
            Some(Registration::Home)
        );
        assert_eq!(registration(&v(&["+CREG: x"]), "+CREG:"), None);
        assert_eq!(
            operator(&v(&["+COPS: 0,0,\"T-Mobile\",7"])),
            Some("T-Mobile".into())
        );
        assert_eq!(operator(&v(&["+COPS: 0"])), None);
    }

    #[test]
    fn cmgs_cmgr_cmgl() {
        assert_eq!(message_reference(&v(&["+CMGS: 255"])), Some(255));
        assert_eq!(message_reference(&v(&["+CMGS: 256"])), None);
        assert_eq!(
            read_pdu(&v(&["+CMGR: 0,,23", "^RSSI:5", "07911326"])),
            Some("07911326".into())
        );
        assert_eq!(read_pdu(&v(&["+CMGR: 0,,23"])), None);
        assert_eq!(read_pdu(&v(&["0791"])), None);
        assert_eq!(
            list_pdus(&v(&[
                "+CMGL: 1,0,,23",
                "00AA",
                "+CMGL: 2,1,,5",
                "xx",
                "+CMGL: 4,0,,1",
                "00BB"
            ])),
            vec![(1, "00AA".to_owned()), (4, "00BB".to_owned())]
        );
        assert!(!is_hex("0") && !is_hex("zz") && is_hex("0aF1"));
    }
}
