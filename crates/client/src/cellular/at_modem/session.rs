//! The task that owns the serial port: it runs one command at a time, keeps the unsolicited
//! codes that arrive meanwhile, and reads new messages when the line is free.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout_at, Instant};

use airtext_sms::tpdu::{
    decode_hex_with_smsc, encode_submit, Deliver, StatusReport, SubmitOptions, Timestamp, Tpdu,
};
use airtext_sms::{GivenUp, Push, Reassembler};

use super::codec::{Frame, LineCodec};
use super::response::{self, Final, Registration, SimState, Urc};
use super::{AtModemConfig, IncomingSms, Job, ModemError, ModemState, StatusReportEvent};
use crate::cellular::delivery::{
    status_text, DeliveryReport, SegmentReport, SentTextId, SentTexts,
};

/// Ctrl-Z ends the PDU after the `> ` prompt; ESC abandons it (3GPP TS 27.005 §3.5.1).
const CTRL_Z: u8 = 0x1A;
const ESC: u8 = 0x1B;

/// Where the session hands its results.
pub(super) struct Outputs {
    pub incoming: mpsc::Sender<IncomingSms>,
    pub reports: mpsc::Sender<StatusReportEvent>,
    pub deliveries: mpsc::Sender<DeliveryReport>,
    pub state: watch::Sender<ModemState>,
}

/// Work found in unsolicited codes, done when no command is running.
#[derive(Debug)]
enum Work {
    /// A stored message or status report to read and delete.
    Read { storage: String, index: u32 },
    /// A PDU the modem gave directly (`+CMT`, `+CDS`).
    Pdu(String),
    /// The registration changed.
    Refresh,
}

pub(super) struct Session<P> {
    reader: ReadHalf<P>,
    writer: WriteHalf<P>,
    codec: LineCodec,
    frames: VecDeque<Frame>,
    /// The next line is the PDU of a `+CMT`/`+CDS`.
    pdu_follows: bool,
    work: VecDeque<Work>,
    /// The storage `AT+CMGR` reads from, once set with `AT+CPMS`.
    read_storage: Option<String>,
    config: AtModemConfig,
    out: Outputs,
    reassembler: Reassembler,
    /// Earliest service-centre time of each message being reassembled.
    first_seen: HashMap<(String, u16), DateTime<Utc>>,
    started: Instant,
    next_concat: u8,
    alive: bool,
    /// Texts sent with TP-SRR, waiting for their status reports.
    sent: SentTexts,
}

impl<P> Session<P>
where
    P: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    pub(super) fn new(port: P, config: AtModemConfig, out: Outputs) -> Self {
        let (reader, writer) = tokio::io::split(port);
        let next_concat = config
            .first_concat_reference
            .unwrap_or_else(rand::random::<u8>);
        Session {
            reader,
            writer,
            codec: LineCodec::new(),
            frames: VecDeque::new(),
            pdu_follows: false,
            work: VecDeque::new(),
            read_storage: None,
            reassembler: Reassembler::new(config.reassembly_timeout),
            config,
            out,
            first_seen: HashMap::new(),
            started: Instant::now(),
            next_concat,
            alive: true,
            sent: SentTexts::new(),
        }
    }

    /// Brings the modem up: echo off, verbose errors, SIM unlocked, PDU mode, indications on.
    pub(super) async fn initialise(&mut self) -> Result<(), ModemError> {
        self.synchronise().await?;
        self.command("ATE0", "").await?;
        // Verbose errors are a nicety: numeric codes are read as well.
        let _ = self.command("AT+CMEE=2", "").await;
        self.unlock_sim().await?;
        self.command("AT+CMGF=0", "").await?;
        self.route_indications().await?;
        self.refresh_state().await?;
        self.read_stored().await;
        Ok(())
    }

    /// `AT+CNMI`: new messages stored and announced (`+CMTI`); status reports, when asked
    /// for, routed straight to us (`+CDS`, `<ds>`=1) or, on modems that refuse that, stored
    /// and announced (`+CDSI`, `<ds>`=2). Some modems refuse `<mode>`=2; 1 buffers less but
    /// still announces.
    async fn route_indications(&mut self) -> Result<(), ModemError> {
        let report_routes: &[u8] = if self.config.status_report_request {
            &[1, 2]
        } else {
            &[0]
        };
        let mut last = None;
        for ds in report_routes {
            for mode in [2, 1] {
                match self
                    .command(&format!("AT+CNMI={mode},1,0,{ds},0"), "")
                    .await
                {
                    Ok(_) => return Ok(()),
                    Err(e @ (ModemError::Io(_) | ModemError::Stopped)) => return Err(e),
                    Err(e) => last = Some(e),
                }
            }
        }
        Err(last.unwrap_or(ModemError::Stopped))
    }

    /// `AT` until an `OK`, discarding whatever the port held before.
    async fn synchronise(&mut self) -> Result<(), ModemError> {
        let mut last = None;
        for _ in 0..3 {
            match self.command("AT", "").await {
                Ok(_) => return Ok(()),
                Err(e @ (ModemError::Io(_) | ModemError::Stopped)) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(ModemError::Stopped))
    }

    async fn unlock_sim(&mut self) -> Result<(), ModemError> {
        let mut pin_sent = false;
        for _ in 0..20 {
            let lines = match self.command("AT+CPIN?", "+CPIN:").await {
                Ok(lines) => lines,
                // SIM busy right after the PIN: ask again.
                Err(ModemError::Cme { error, .. }) if error.code == Some(14) => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Err(ModemError::Cme { error, .. }) => {
                    return Err(ModemError::SimNotReady(error.to_string()))
                }
                Err(e) => return Err(e),
            };
            match response::sim_state(&lines) {
                Some(SimState::Ready) => return Ok(()),
                Some(SimState::NeedsPin) if pin_sent => {
                    return Err(ModemError::WrongPin(
                        "the SIM still asks for its PIN".into(),
                    ))
                }
                Some(SimState::NeedsPin) => {
                    let Some(pin) = self.config.pin.clone() else {
                        return Err(ModemError::SimPinRequired);
                    };
                    if pin.is_empty() || !pin.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(ModemError::WrongPin("a SIM PIN is digits only".into()));
                    }
                    match self.command(&format!("AT+CPIN=\"{pin}\""), "").await {
                        Ok(_) => pin_sent = true,
                        Err(ModemError::Cme { error, .. }) => {
                            return Err(ModemError::WrongPin(error.to_string()))
                        }
                        Err(ModemError::CommandFailed { .. }) => {
                            return Err(ModemError::WrongPin("the modem answered ERROR".into()))
                        }
                        Err(e) => return Err(e),
                    }
                }
                Some(SimState::NeedsPuk) => return Err(ModemError::SimPukRequired),
                Some(SimState::Other(code)) => return Err(ModemError::SimNotReady(code)),
                None => {
                    return Err(ModemError::Protocol {
                        command: "AT+CPIN?".into(),
                        detail: "no +CPIN line".into(),
                    })
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(ModemError::SimNotReady(
            "it did not become ready after the PIN".into(),
        ))
    }

    /// Serves jobs and unsolicited codes until every handle is dropped or the port fails.
    pub(super) async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut tick = tokio::time::interval(self.config.status_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.reset();
        let mut buf = [0u8; 512];
        loop {
            while self.alive {
                let Some(work) = self.next_work() else {
                    break;
                };
                self.do_work(work).await;
            }
            tokio::select! {
                job = jobs.recv() => match job {
                    None => break,
                    Some(job) => self.do_job(job).await,
                },
                read = self.reader.read(&mut buf), if self.alive => match read {
                    Ok(0) | Err(_) => self.port_failed(),
                    Ok(n) => {
                        let bytes = buf.get(..n).unwrap_or_default();
                        let frames = self.codec.feed(bytes);
                        for frame in frames {
                            self.idle_frame(frame);
                        }
                    }
                },
                _ = tick.tick(), if self.alive => {
                    let _ = self.refresh_state().await;
                    self.expire_parts().await;
                }
            }
        }
    }

    fn next_work(&mut self) -> Option<Work> {
        // Frames read while a command ran but not consumed by it.
        while let Some(frame) = self.frames.pop_front() {
            self.idle_frame(frame);
        }
        self.work.pop_front()
    }

    fn port_failed(&mut self) {
        self.alive = false;
        self.out.state.send_modify(|s| s.alive = false);
    }

    async fn do_job(&mut self, job: Job) {
        match job {
            Job::Send { to, body, reply } => {
                let result = if self.alive {
                    self.send_text(&to, &body).await
                } else {
                    Err(ModemError::Stopped)
                };
                let result = match result {
                    Ok(references) => {
                        let text = self.track(&to, &references).await;
                        Ok((references, text))
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            Job::Refresh { reply } => {
                let result = if self.alive {
                    self.refresh_state().await
                } else {
                    Err(ModemError::Stopped)
                };
                let _ = reply.send(result);
            }
        }
    }

    // ---------------------------------------------------------------- sending

    async fn send_text(&mut self, to: &str, body: &str) -> Result<Vec<u8>, ModemError> {
        let reference = self.next_concat;
        let opts = SubmitOptions {
            message_reference: reference,
            concat_reference: reference,
            status_report_request: self.config.status_report_request,
            validity: self.config.validity,
            reject_duplicates: false,
            smsc: None,
        };
        let pdus = encode_submit(to, body, &opts)?;
        if pdus.len() > 1 {
            self.next_concat = self.next_concat.wrapping_add(1);
        }
        let total = pdus.len();
        let mut references = Vec::with_capacity(total);
        for pdu in pdus {
            match self.send_pdu(pdu.tpdu_length, &pdu.hex()).await {
                Ok(mr) => references.push(mr),
                Err(e) if references.is_empty() => return Err(e),
                Err(e) => {
                    return Err(ModemError::PartiallySent {
                        sent: references.len(),
                        total,
                        error: Box::new(e),
                    })
                }
            }
        }
        Ok(references)
    }

    /// `AT+CMGS=<length>`, the prompt, `<hex><Ctrl-Z>`, `+CMGS: <mr>` (TS 27.005 §3.5.1).
    async fn send_pdu(&mut self, tpdu_length: usize, hex: &str) -> Result<u8, ModemError> {
        let command = format!("AT+CMGS={tpdu_length}");
        self.write(format!("{command}\r").as_bytes()).await?;
        let deadline = Instant::now() + self.config.command_timeout;
        loop {
            match self.next_frame(deadline).await {
                Ok(Frame::Prompt) => break,
                Ok(Frame::Line(line)) => {
                    if let Some(fin) = response::final_result(&line) {
                        return Err(failure(&command, fin).unwrap_or(ModemError::Protocol {
                            command,
                            detail: "OK without the > prompt".into(),
                        }));
                    }
                    self.unsolicited(&line, None);
                }
                Ok(Frame::Overlong) => {}
                Err(ModemError::Timeout { .. }) => {
                    // Leave the modem out of PDU entry if it got there late.
                    let _ = self.write(&[ESC]).await;
                    self.codec.reset();
                    return Err(ModemError::Timeout {
                        command: format!("{command} (waiting for the > prompt)"),
                        after: self.config.command_timeout,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        let mut payload = hex.as_bytes().to_vec();
        payload.push(CTRL_Z);
        self.write(&payload).await?;
        let lines = self
            .finish(&command, "+CMGS:", self.config.send_timeout)
            .await?;
        response::message_reference(&lines).ok_or(ModemError::Protocol {
            command,
            detail: "OK without +CMGS: <mr>".into(),
        })
    }

    // ---------------------------------------------------------------- receiving

    /// Reads and deletes the messages the storage already holds (`AT+CMGL=4`, all).
    async fn read_stored(&mut self) {
        let Ok(lines) = self.command("AT+CMGL=4", "+CMGL:").await else {
            return;
        };
        for (index, hex) in response::list_pdus(&lines) {
            self.take_pdu(&hex).await;
            let _ = self.command(&format!("AT+CMGD={index}"), "").await;
        }
    }

    async fn do_work(&mut self, work: Work) {
        match work {
            Work::Read { storage, index } => self.read_and_delete(&storage, index).await,
            Work::Pdu(hex) => {
                self.take_pdu(&hex).await;
                // Acknowledge where the modem expects it; most accept it, those that don't
                // need no acknowledgement.
                let _ = self.command("AT+CNMA", "").await;
            }
            Work::Refresh => {
                let _ = self.refresh_state().await;
            }
        }
    }

    async fn read_and_delete(&mut self, storage: &str, index: u32) {
        if !storage.is_empty()
            && self.read_storage.as_deref() != Some(storage)
            && self
                .command(&format!("AT+CPMS=\"{storage}\""), "+CPMS:")
                .await
                .is_ok()
        {
            self.read_storage = Some(storage.to_owned());
        }
        let lines = match self.command(&format!("AT+CMGR={index}"), "+CMGR:").await {
            Ok(lines) => lines,
            Err(_) => return,
        };
        if let Some(hex) = response::read_pdu(&lines) {
            self.take_pdu(&hex).await;
        }
        let _ = self.command(&format!("AT+CMGD={index}"), "").await;
    }

    /// Decodes a PDU from the modem and hands on what it holds. Undecodable PDUs are dropped
    /// (they would otherwise fill the SIM).
    async fn take_pdu(&mut self, hex: &str) {
        match decode_hex_with_smsc(hex).map(|d| d.tpdu) {
            Ok(Tpdu::Deliver(d)) => self.take_deliver(&d).await,
            Ok(Tpdu::StatusReport(r)) => self.take_report(&r),
            // A stored outgoing message, or garbage: nothing to deliver.
            Ok(Tpdu::Submit(_)) | Err(_) => {}
        }
    }

    async fn take_deliver(&mut self, d: &Deliver) {
        let now = self.started.elapsed();
        let at = to_utc(&d.timestamp);
        if let Some(c) = d.concat() {
            let key = (d.originator.to_string(), c.reference);
            let first = self.first_seen.entry(key).or_insert(at);
            if at < *first {
                *first = at;
            }
        }
        match self.reassembler.push_deliver(d, now) {
            Push::Complete(m) => {
                let received_at = m
                    .reference
                    .and_then(|r| self.first_seen.remove(&(m.sender.clone(), r)))
                    .unwrap_or(at);
                let _ = self
                    .out
                    .incoming
                    .send(IncomingSms {
                        from: m.sender,
                        body: m.text,
                        received_at,
                    })
                    .await;
            }
            Push::Pending { .. } | Push::Duplicate => {}
        }
    }

    /// Waits for the status reports of a text just sent, when they were asked for. Done
    /// before the send is answered, so a report that comes at once finds its text.
    async fn track(&mut self, to: &str, references: &[u8]) -> Option<SentTextId> {
        if !self.config.status_report_request {
            return None;
        }
        let (id, settled) = self.sent.register(to, references);
        if let Some(report) = settled {
            self.hand_delivery(report);
        }
        Some(id)
    }

    fn take_report(&mut self, r: &StatusReport) {
        let event = StatusReportEvent {
            message_reference: r.message_reference,
            recipient: r.recipient.to_string(),
            status: r.status,
            class: r.class(),
        };
        let segment = SegmentReport {
            reference: event.message_reference,
            recipient: event.recipient.clone(),
            class: event.class,
            detail: status_text(event.status),
        };
        // Not awaited: a receiver nobody reads must not stall the port.
        if self.out.reports.try_send(event).is_err() {
            tracing::debug!("a status report was not taken (nobody reads them)");
        }
        if let Some(report) = self.sent.report(segment) {
            self.hand_delivery(report);
        }
    }

    fn hand_delivery(&self, report: DeliveryReport) {
        if self.out.deliveries.try_send(report).is_err() {
            tracing::warn!("a delivery report was dropped: nobody reads them");
        }
    }

    /// Hands over, with what arrived, messages whose missing parts never came.
    async fn expire_parts(&mut self) {
        let given_up: Vec<GivenUp> = self.reassembler.expire(self.started.elapsed());
        for g in given_up {
            let received_at = self
                .first_seen
                .remove(&(g.sender.clone(), g.reference))
                .unwrap_or_else(Utc::now);
            let _ = self
                .out
                .incoming
                .send(IncomingSms {
                    from: g.sender,
                    body: g.partial_text,
                    received_at,
                })
                .await;
        }
    }

    // ---------------------------------------------------------------- status

    async fn refresh_state(&mut self) -> Result<ModemState, ModemError> {
        let mut best: Option<Registration> = None;
        for (command, prefix) in [
            ("AT+CREG?", "+CREG:"),
            ("AT+CGREG?", "+CGREG:"),
            ("AT+CEREG?", "+CEREG:"),
        ] {
            match self.command(command, prefix).await {
                Ok(lines) => {
                    if let Some(r) = response::registration(&lines, prefix) {
                        if best.is_none_or(|b| r.rank() > b.rank()) {
                            best = Some(r);
                        }
                    }
                }
                // Not every modem knows every technology.
                Err(
                    ModemError::CommandFailed { .. }
                    | ModemError::Cme { .. }
                    | ModemError::Cms { .. },
                ) => {}
                Err(e) => return Err(e),
            }
        }
        let operator = match self.command("AT+COPS?", "+COPS:").await {
            Ok(lines) => response::operator(&lines),
            Err(_) => None,
        };
        let state = ModemState {
            alive: self.alive,
            registration: best.unwrap_or(Registration::Unknown),
            operator,
        };
        self.out.state.send_replace(state.clone());
        Ok(state)
    }

    // ---------------------------------------------------------------- the line

    /// Runs one command and returns its information lines; unsolicited codes that arrive
    /// meanwhile are queued. `expect` is the prefix of the command's own information lines
    /// (so `+CREG: 0,5` answering `AT+CREG?` is not taken for an unsolicited `+CREG`).
    async fn command(&mut self, command: &str, expect: &str) -> Result<Vec<String>, ModemError> {
        if !self.alive {
            return Err(ModemError::Stopped);
        }
        self.write(format!("{command}\r").as_bytes()).await?;
        self.finish(command, expect, self.config.command_timeout)
            .await
    }

    /// Reads up to the final result of `command`.
    async fn finish(
        &mut self,
        command: &str,
        expect: &str,
        within: Duration,
    ) -> Result<Vec<String>, ModemError> {
        let deadline = Instant::now() + within;
        let mut info = Vec::new();
        loop {
            let frame = match self.next_frame(deadline).await {
                Ok(frame) => frame,
                Err(ModemError::Timeout { .. }) => {
                    self.codec.reset();
                    return Err(ModemError::Timeout {
                        command: command.to_owned(),
                        after: within,
                    });
                }
                Err(e) => return Err(e),
            };
            let Frame::Line(line) = frame else {
                continue;
            };
            if let Some(fin) = response::final_result(&line) {
                return match failure(command, fin) {
                    None => Ok(info),
                    Some(e) => Err(e),
                };
            }
            if !self.unsolicited(&line, Some(expect)) {
                info.push(line);
            }
        }
    }

    /// A frame that arrived with no command running.
    fn idle_frame(&mut self, frame: Frame) {
        if let Frame::Line(line) = frame {
            self.unsolicited(&line, None);
        }
    }

    /// Takes `line` as an unsolicited code if it is one (or the PDU line that follows one);
    /// returns whether it did.
    fn unsolicited(&mut self, line: &str, expect: Option<&str>) -> bool {
        if self.pdu_follows {
            self.pdu_follows = false;
            if response::is_hex(line) {
                self.work.push_back(Work::Pdu(line.to_owned()));
                return true;
            }
        }
        let Some(urc) = response::urc(line, expect) else {
            return false;
        };
        match urc {
            Urc::NewMessage { storage, index } | Urc::NewStatusReport { storage, index } => {
                self.work.push_back(Work::Read { storage, index });
            }
            Urc::MessagePdu | Urc::StatusReportPdu => self.pdu_follows = true,
            Urc::Other(text) => {
                let reg = ["+CREG:", "+CGREG:", "+CEREG:"];
                if reg.iter().any(|p| {
                    text.get(..p.len())
                        .is_some_and(|h| h.eq_ignore_ascii_case(p))
                }) && !self.work.iter().any(|w| matches!(w, Work::Refresh))
                {
                    self.work.push_back(Work::Refresh);
                }
            }
        }
        true
    }

    async fn next_frame(&mut self, deadline: Instant) -> Result<Frame, ModemError> {
        let mut buf = [0u8; 512];
        loop {
            if let Some(frame) = self.frames.pop_front() {
                return Ok(frame);
            }
            let read = timeout_at(deadline, self.reader.read(&mut buf)).await;
            match read {
                Err(_) => {
                    return Err(ModemError::Timeout {
                        command: String::new(),
                        after: Duration::ZERO,
                    })
                }
                Ok(Ok(0)) => {
                    self.port_failed();
                    return Err(ModemError::Io("the port closed".into()));
                }
                Ok(Err(e)) => {
                    self.port_failed();
                    return Err(ModemError::Io(e.to_string()));
                }
                Ok(Ok(n)) => {
                    let frames = self.codec.feed(buf.get(..n).unwrap_or_default());
                    self.frames.extend(frames);
                }
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ModemError> {
        let result = async {
            self.writer.write_all(bytes).await?;
            self.writer.flush().await
        }
        .await;
        result.map_err(|e| {
            self.port_failed();
            ModemError::Io(e.to_string())
        })
    }
}

/// The error a final result code means, or `None` for `OK`.
fn failure(command: &str, fin: Final) -> Option<ModemError> {
    let command = command.to_owned();
    match fin {
        Final::Ok => None,
        Final::Error => Some(ModemError::CommandFailed { command }),
        Final::Cme(error) => Some(ModemError::Cme { command, error }),
        Final::Cms(error) => Some(ModemError::Cms { command, error }),
    }
}

fn to_utc(t: &Timestamp) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&t.to_rfc3339())
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now())
}
