//! A fake AT modem on the master side of a pseudo-terminal, for driving the AT modem backend
//! through a real serial port (the pty slave, opened with tokio-serial).
//!
//! It answers the 3GPP TS 27.005 / 27.007 commands the backend uses, records every command
//! line and every PDU given after `AT+CMGS`, holds a message store for `AT+CMGR`/`AT+CMGD`/
//! `AT+CMGL`, and can be scripted: a SIM PIN, registration, `+CMS ERROR`s, silence, URCs in
//! the middle of an answer, garbage. Like a network, it answers each accepted SMS-SUBMIT that
//! asks for one (TP-SRR) with an SMS-STATUS-REPORT, routed the way `AT+CNMI`'s `<ds>` says:
//! `+CDS` with the PDU (`<ds>`=1), or stored and announced with `+CDSI` (`<ds>`=2).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airtext_sms::tpdu::{decode_hex_with_smsc, to_hex, StatusReport, Timestamp, Tpdu};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_serial::{SerialPort, SerialStream};

/// What the fake does with the next `AT+CMGS`.
#[derive(Debug, Clone)]
pub enum CmgsScript {
    /// Prompt, take the PDU, answer `+CMGS: <mr>` and `OK`.
    Accept,
    /// Prompt, take the PDU, then answer this line (e.g. `+CMS ERROR: 330`).
    FailAfterPdu(String),
    /// Answer this line instead of the prompt.
    FailInsteadOfPrompt(String),
    /// Say nothing at all.
    Silent,
    /// Prompt, take the PDU, emit this URC line, then `+CMGS: <mr>` and `OK`.
    UrcBeforeResult(String),
}

#[derive(Debug)]
pub struct State {
    /// Every command line received, in order.
    pub commands: Vec<String>,
    /// `(length given to AT+CMGS, PDU hex)` of each PDU received.
    pub submitted: Vec<(usize, String)>,
    /// The SIM's PIN; while `Some` and not yet given, `AT+CPIN?` answers `SIM PIN`.
    pub pin: Option<String>,
    pub unlocked: bool,
    /// `<stat>` for `+CREG`, `+CGREG`; `+CEREG` is answered with ERROR (a 2G/3G modem).
    pub creg: u8,
    pub operator: String,
    /// The message store: index → PDU hex (SMSC field first), with `<stat>`.
    pub storage: BTreeMap<u32, String>,
    pub deleted: Vec<u32>,
    pub next_mr: u8,
    pub cmgs: VecDeque<CmgsScript>,
    /// ESC bytes received (an abandoned `AT+CMGS`).
    pub escapes: usize,
    /// Garbage written before every answer.
    pub garbage: bool,
    /// `<ds>` of the last accepted `AT+CNMI` (0: status reports not routed to the TE).
    pub cnmi_ds: u8,
    /// Refuse `AT+CNMI` with `<ds>`=1 (a modem that only stores status reports).
    pub refuse_cds: bool,
    /// The TP-ST of the status report for each accepted SMS-SUBMIT with TP-SRR, in order;
    /// when empty, [`State::report_status`].
    pub report_statuses: VecDeque<u8>,
    /// The TP-ST reported when `report_statuses` is empty; `None`: the network sends none.
    pub report_status: Option<u8>,
    /// `(TP-MR, TP-ST)` of every status report emitted.
    pub reports_sent: Vec<(u8, u8)>,
}

impl Default for State {
    fn default() -> Self {
        State {
            commands: Vec::new(),
            submitted: Vec::new(),
            pin: None,
            unlocked: false,
            creg: 1,
            operator: "Test Mobile".into(),
            storage: BTreeMap::new(),
            deleted: Vec::new(),
            next_mr: 1,
            cmgs: VecDeque::new(),
            escapes: 0,
            garbage: false,
            cnmi_ds: 0,
            refuse_cds: false,
            report_statuses: VecDeque::new(),
            report_status: Some(0x00),
            reports_sent: Vec::new(),
        }
    }
}

/// Handle to a running fake modem.
#[derive(Debug, Clone)]
pub struct FakeModem {
    pub state: Arc<Mutex<State>>,
    /// The pty slave path for the backend to open.
    pub path: String,
    inject: mpsc::UnboundedSender<Vec<u8>>,
}

impl FakeModem {
    /// Opens a pty pair and starts answering on its master side.
    pub fn start(state: State) -> FakeModem {
        let (master, slave) = SerialStream::pair().expect("a pseudo-terminal");
        let path = slave.name().expect("the pty slave has a path");
        // Closed so the backend can open the path (tokio-serial locks it exclusively); until
        // it does, reading the master fails with EIO and `serve` waits.
        drop(slave);
        let state = Arc::new(Mutex::new(state));
        let (inject, injected) = mpsc::unbounded_channel();
        tokio::spawn(serve(master, state.clone(), injected));
        FakeModem {
            state,
            path,
            inject,
        }
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Writes raw bytes to the line (URCs, garbage).
    pub fn emit(&self, bytes: &[u8]) {
        self.inject.send(bytes.to_vec()).unwrap();
    }

    /// Stores `pdu_hex` at `index` and announces it with `+CMTI`.
    pub fn deliver(&self, index: u32, pdu_hex: &str) {
        self.with(|s| s.storage.insert(index, pdu_hex.to_owned()));
        self.emit(format!("\r\n+CMTI: \"SM\",{index}\r\n").as_bytes());
    }

    /// Waits until `f` holds, or panics after a generous deadline (a busy machine only makes
    /// this slower).
    pub async fn wait_for(&self, what: &str, f: impl Fn(&State) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while std::time::Instant::now() < deadline {
            if self.with(|s| f(s)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "the fake modem never saw {what}: {:#?}",
            self.state.lock().unwrap()
        );
    }
}

enum Mode {
    Command,
    Pdu { length: usize, script: CmgsScript },
}

async fn serve(
    mut master: SerialStream,
    state: Arc<Mutex<State>>,
    mut injected: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let mut line = Vec::new();
    let mut mode = Mode::Command;
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            bytes = injected.recv() => match bytes {
                Some(b) => {
                    if master.write_all(&b).await.is_err() {
                        return;
                    }
                }
                None => return,
            },
            read = master.read(&mut buf) => {
                let n = match read {
                    Ok(0) | Err(_) => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    Ok(n) => n,
                };
                for &b in &buf[..n] {
                    let out = step(&state, &mut mode, &mut line, b);
                    if !out.is_empty() && master.write_all(&out).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// One byte from the backend; returns what to answer.
fn step(state: &Arc<Mutex<State>>, mode: &mut Mode, line: &mut Vec<u8>, b: u8) -> Vec<u8> {
    let mut s = state.lock().unwrap();
    match mode {
        Mode::Pdu { length, script } => match b {
            0x1A => {
                let hex = String::from_utf8_lossy(line).into_owned();
                line.clear();
                s.submitted.push((*length, hex.clone()));
                let script = script.clone();
                *mode = Mode::Command;
                let mr = s.next_mr;
                s.next_mr = s.next_mr.wrapping_add(1);
                let mut out = garbage(&s);
                match script {
                    CmgsScript::Accept => {
                        out.extend(format!("\r\n+CMGS: {mr}\r\n\r\nOK\r\n").bytes());
                        out.extend(status_report(&mut s, &hex, mr));
                    }
                    CmgsScript::FailAfterPdu(l) => out.extend(format!("\r\n{l}\r\n").bytes()),
                    CmgsScript::UrcBeforeResult(u) => {
                        out.extend(format!("\r\n{u}\r\n\r\n+CMGS: {mr}\r\n\r\nOK\r\n").bytes())
                    }
                    CmgsScript::FailInsteadOfPrompt(_) | CmgsScript::Silent => {}
                }
                out
            }
            0x1B => {
                line.clear();
                s.escapes += 1;
                *mode = Mode::Command;
                Vec::new()
            }
            _ => {
                line.push(b);
                Vec::new()
            }
        },
        Mode::Command => match b {
            b'\r' => {
                let cmd = String::from_utf8_lossy(line).trim().to_owned();
                line.clear();
                if cmd.is_empty() {
                    return Vec::new();
                }
                s.commands.push(cmd.clone());
                let (out, next) = answer(&mut s, &cmd);
                if let Some(next) = next {
                    *mode = next;
                }
                out
            }
            0x1B => {
                s.escapes += 1;
                line.clear();
                Vec::new()
            }
            b'\n' | 0x1A => Vec::new(),
            _ => {
                line.push(b);
                Vec::new()
            }
        },
    }
}

fn garbage(s: &State) -> Vec<u8> {
    if !s.garbage {
        return Vec::new();
    }
    let mut g = b"\r\n\x00\xff\xfe#$%garbage\x07\r\n+CMTI: nonsense\r\n^RSSI:17\r\n".to_vec();
    g.extend(std::iter::repeat_n(b'Z', 3000));
    g.extend(b"\r\n");
    g
}

fn answer(s: &mut State, cmd: &str) -> (Vec<u8>, Option<Mode>) {
    let ok = |body: &str| format!("{body}\r\nOK\r\n");
    let upper = cmd.to_ascii_uppercase();
    let mut out = garbage(s);
    let text: String = match upper.as_str() {
        "AT" | "ATE0" | "AT+CMEE=2" | "AT+CMGF=0" => ok(""),
        c if c.starts_with("AT+CNMI=") => {
            let ds = c.split(',').nth(3).and_then(|d| d.parse::<u8>().ok());
            match ds {
                Some(1) if s.refuse_cds => "\r\n+CMS ERROR: 303\r\n".to_owned(),
                Some(ds) => {
                    s.cnmi_ds = ds;
                    ok("")
                }
                None => "\r\nERROR\r\n".to_owned(),
            }
        }
        "AT+CPIN?" => {
            if s.pin.is_some() && !s.unlocked {
                ok("\r\n+CPIN: SIM PIN\r\n")
            } else {
                ok("\r\n+CPIN: READY\r\n")
            }
        }
        c if c.starts_with("AT+CPIN=") => {
            let given = cmd["AT+CPIN=".len()..].trim_matches('"');
            if s.pin.as_deref() == Some(given) {
                s.unlocked = true;
                ok("")
            } else {
                "\r\n+CME ERROR: incorrect password\r\n".to_owned()
            }
        }
        "AT+CREG?" => ok(&format!("\r\n+CREG: 0,{}\r\n", s.creg)),
        "AT+CGREG?" => ok(&format!("\r\n+CGREG: 0,{}\r\n", s.creg)),
        "AT+CEREG?" => "\r\nERROR\r\n".to_owned(),
        "AT+COPS?" => ok(&format!("\r\n+COPS: 0,0,\"{}\",2\r\n", s.operator)),
        c if c.starts_with("AT+CPMS=") => ok("\r\n+CPMS: 1,30,1,30,1,30\r\n"),
        "AT+CMGL=4" => {
            let mut body = String::new();
            for (i, pdu) in &s.storage {
                body.push_str(&format!("\r\n+CMGL: {i},0,,{}\r\n{pdu}", pdu.len() / 2 - 1));
            }
            ok(&body)
        }
        c if c.starts_with("AT+CMGR=") => match c["AT+CMGR=".len()..].parse::<u32>() {
            Ok(i) => match s.storage.get(&i) {
                Some(pdu) => ok(&format!("\r\n+CMGR: 0,,{}\r\n{pdu}\r\n", pdu.len() / 2 - 1)),
                None => "\r\n+CMS ERROR: 321\r\n".to_owned(),
            },
            Err(_) => "\r\nERROR\r\n".to_owned(),
        },
        c if c.starts_with("AT+CMGD=") => match c["AT+CMGD=".len()..].parse::<u32>() {
            Ok(i) if s.storage.remove(&i).is_some() => {
                s.deleted.push(i);
                ok("")
            }
            _ => "\r\n+CMS ERROR: 321\r\n".to_owned(),
        },
        c if c.starts_with("AT+CMGS=") => {
            let Ok(length) = c["AT+CMGS=".len()..].parse::<usize>() else {
                return (b"\r\n+CMS ERROR: 304\r\n".to_vec(), None);
            };
            let script = s.cmgs.pop_front().unwrap_or(CmgsScript::Accept);
            return match script {
                CmgsScript::Silent => (Vec::new(), None),
                CmgsScript::FailInsteadOfPrompt(l) => {
                    out.extend(format!("\r\n{l}\r\n").bytes());
                    (out, None)
                }
                script => {
                    out.extend(b"\r\n> ");
                    (out, Some(Mode::Pdu { length, script }))
                }
            };
        }
        _ => "\r\nERROR\r\n".to_owned(),
    };
    out.extend(text.bytes());
    (out, None)
}

/// The network's status report on the SMS-SUBMIT `hex` just accepted as `mr`, routed as
/// `AT+CNMI` asked; nothing when the submit asked for none or none is routed.
fn status_report(s: &mut State, hex: &str, mr: u8) -> Vec<u8> {
    let Ok(Tpdu::Submit(submit)) = decode_hex_with_smsc(hex).map(|d| d.tpdu) else {
        return Vec::new();
    };
    if !submit.status_report_request || s.cnmi_ds == 0 {
        return Vec::new();
    }
    let Some(status) = s.report_statuses.pop_front().or(s.report_status) else {
        return Vec::new();
    };
    let t = Timestamp {
        year: 2025,
        month: 3,
        day: 5,
        hour: 14,
        minute: 30,
        second: 0,
        offset_quarters: 0,
    };
    let report = StatusReport {
        more_messages_to_send: false,
        loop_prevention: false,
        status_report_qualifier: false,
        message_reference: mr,
        recipient: submit.destination.clone(),
        sc_timestamp: t,
        discharge_time: t,
        status,
        protocol_id: None,
        dcs: None,
        user_data: None,
    };
    let tpdu = report.to_bytes().unwrap();
    let pdu = format!("00{}", to_hex(&tpdu));
    s.reports_sent.push((mr, status));
    if s.cnmi_ds == 1 {
        format!("\r\n+CDS: {}\r\n{pdu}\r\n", tpdu.len()).into_bytes()
    } else {
        let index = s.storage.keys().next_back().map_or(1, |i| i + 1);
        s.storage.insert(index, pdu);
        format!("\r\n+CDSI: \"SR\",{index}\r\n").into_bytes()
    }
}
