//! The SMPP carrier against an SMSC this project did not write: the `smpp34` crate's server
//! (1.5.1), started in each test on 127.0.0.1, playing the carrier. Between the two sits a
//! small tap (a TCP relay that reads the PDU framing) so tests can see every command on the
//! wire and cut the connection at a chosen moment.
//!
//! Each test drives `SmppCarrier` through the `Carrier` trait only, as the gateway does.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airtext_gateway::carriers::config::SmppCarrierConfig;
use airtext_gateway::carriers::reports::{report_channel, NotStored, PendingReport, ReportSource};
use airtext_gateway::carriers::smpp::bind_slots::BindSlots;
use airtext_gateway::carriers::smpp::{SmppCarrier, SmppTuning};
use airtext_gateway::carriers::{Carrier, CarrierError, CarrierReport, OutboundSms, ReceiptStatus};
use async_trait::async_trait;
use smpp34::server::ESME;
use smpp34::{
    bind_transceiver, bind_transceiver_resp, submit_sm, submit_sm_resp, unbind, unbind_resp,
    SmppConnectionInformation, SmppError, SmppServer, SmppServerListener, TlvTag,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const OUR_DID: &str = "+14155550100";
const PHONE: &str = "+447700900123";
/// The SMSC refuses submits to this number with ESME_RINVDSTADR.
const INVALID: &str = "+15005550001";
/// The SMSC refuses submits to this number with ESME_RTHROTTLED.
const THROTTLED: &str = "+15005550002";

const BIND_TRANSCEIVER: u32 = 0x0000_0009;
const SUBMIT_SM: u32 = 0x0000_0004;
const UNBIND: u32 = 0x0000_0006;
const UNBIND_RESP: u32 = 0x8000_0006;
const ENQUIRE_LINK: u32 = 0x0000_0015;
const ENQUIRE_LINK_RESP: u32 = 0x8000_0015;

// ---------------------------------------------------------------------------------------------
// The SMSC: smpp34's server with a listener that records what it accepted.
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Smsc {
    password: String,
    binds: AtomicU32,
    refused_binds: AtomicU32,
    unbinds: AtomicU32,
    bind_requests: Mutex<Vec<bind_transceiver>>,
    /// Every submit_sm this SMSC acknowledged with ESME_ROK, with the id it gave.
    accepted: Mutex<Vec<(String, submit_sm)>>,
    esme: Mutex<Option<Arc<ESME>>>,
    next_id: AtomicU64,
    /// Milliseconds to wait before answering each submit.
    delay_ms: AtomicU64,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// submit_sm received so far.
    received: AtomicI64,
    /// From this many received submits on, hold them outstanding until `gate` opens and then
    /// refuse them. Negative: answer everything.
    hold_from: AtomicI64,
    held: AtomicUsize,
    gate: Mutex<Option<watch::Receiver<bool>>>,
}

impl Smsc {
    fn new(password: &str) -> Arc<Smsc> {
        Arc::new(Smsc {
            password: password.to_owned(),
            hold_from: AtomicI64::new(-1),
            next_id: AtomicU64::new(1000),
            ..Smsc::default()
        })
    }

    fn accepted(&self) -> Vec<(String, submit_sm)> {
        self.accepted.lock().unwrap().clone()
    }

    fn esme(&self) -> Arc<ESME> {
        self.esme.lock().unwrap().clone().expect("a bound ESME")
    }

    async fn deliver(&self, esm_class: u8, data_coding: u8, short_message: Vec<u8>) {
        let status = self
            .deliver_answer(esm_class, data_coding, short_message)
            .await;
        assert_eq!(status, 0, "deliver_sm_resp {status:#x}");
    }

    /// Sends a `deliver_sm`; returns the `command_status` of its `deliver_sm_resp`.
    async fn deliver_answer(&self, esm_class: u8, data_coding: u8, short_message: Vec<u8>) -> u32 {
        let resp = self
            .esme()
            .deliver_sm()
            .source_addr_ton(1)
            .source_addr_npi(1)
            .source_addr(PHONE.trim_start_matches('+'))
            .dest_addr_ton(1)
            .dest_addr_npi(1)
            .destination_addr(OUR_DID.trim_start_matches('+'))
            .esm_class(esm_class)
            .data_coding(data_coding)
            .short_message(short_message)
            .send()
            .await
            .expect("deliver_sm_resp");
        resp.command_status()
    }
}

#[async_trait]
impl SmppServerListener for Smsc {
    async fn on_bind_transceiver(
        &self,
        req: bind_transceiver,
        _c: &SmppConnectionInformation,
        _s: &String,
    ) -> bind_transceiver_resp {
        self.bind_requests.lock().unwrap().push(req.clone());
        if req.system_id != "airtext" || req.password != self.password {
            self.refused_binds.fetch_add(1, Ordering::SeqCst);
            return req.reject(SmppError::ESME_RINVPASWD);
        }
        self.binds.fetch_add(1, Ordering::SeqCst);
        req.accept("SMSC".to_owned(), Some(0x34))
    }

    async fn on_unbind(
        &self,
        req: unbind,
        _c: &SmppConnectionInformation,
        _s: &String,
    ) -> unbind_resp {
        self.unbinds.fetch_add(1, Ordering::SeqCst);
        req.accept()
    }

    async fn on_esme_bound(&self, esme: ESME, _s: &String) {
        *self.esme.lock().unwrap() = Some(Arc::new(esme));
    }

    async fn on_esme_unbound(&self, _s: &String) {
        // smpp34 1.5.1 aborts the session writer right after this hook; without a pause the
        // unbind_resp is often never written (PLATFORM.md).
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    async fn on_submit_sm(
        &self,
        req: submit_sm,
        _c: &SmppConnectionInformation,
        _s: &String,
    ) -> submit_sm_resp {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let n = self.received.fetch_add(1, Ordering::SeqCst);
        let hold_from = self.hold_from.load(Ordering::SeqCst);
        if hold_from >= 0 && n >= hold_from {
            // Left outstanding until the test opens the gate, then refused: by then the
            // connection it came on is gone, so the refusal reaches nobody.
            self.held.fetch_add(1, Ordering::SeqCst);
            let gate = self.gate.lock().unwrap().clone();
            if let Some(mut gate) = gate {
                let _ = gate.wait_for(|open| *open).await;
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return req.reject(SmppError::ESME_RSYSERR);
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let response = match req.destination_addr.as_str() {
            d if d == INVALID.trim_start_matches('+') => req.reject(SmppError::ESME_RINVDSTADR),
            d if d == THROTTLED.trim_start_matches('+') => req.reject(SmppError::ESME_RTHROTTLED),
            _ => {
                let id = format!("M{}", self.next_id.fetch_add(1, Ordering::SeqCst));
                self.accepted
                    .lock()
                    .unwrap()
                    .push((id.clone(), req.clone()));
                return req.accept(id);
            }
        };
        response
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Starts the smpp34 server; `enquire_link_ms` is how often it probes us.
async fn start_smsc(smsc: Arc<Smsc>, enquire_link_ms: u64) -> (SmppServer, u16) {
    let port = free_port();
    let mut server = SmppServer::new_with_default_timers(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        port,
        smsc,
        5_000,
        enquire_link_ms,
        300_000,
        30_000,
        64 * 1024,
    );
    server.start().await;
    assert!(server.is_alive(), "the SMSC could not listen on {port}");
    (server, port)
}

// ---------------------------------------------------------------------------------------------
// The tap: a relay that logs each PDU's command_id and can cut every connection at once.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    ToSmsc,
    ToEsme,
}

struct Tap {
    port: u16,
    log: Arc<Mutex<Vec<(Dir, u32)>>>,
    cut: Arc<Mutex<CancellationToken>>,
    connections: Arc<AtomicUsize>,
}

impl Tap {
    async fn start(upstream: u16) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let cut = Arc::new(Mutex::new(CancellationToken::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (l, c, n) = (log.clone(), cut.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                n.fetch_add(1, Ordering::SeqCst);
                let token = c.lock().unwrap().clone();
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, Dir::ToSmsc, l.clone(), token.clone()));
                tokio::spawn(pump(sr, cw, Dir::ToEsme, l.clone(), token));
            }
        });
        Tap {
            port,
            log,
            cut,
            connections,
        }
    }

    /// Drops every open connection, both ways, without unbinding.
    fn cut(&self) {
        let mut token = self.cut.lock().unwrap();
        token.cancel();
        *token = CancellationToken::new();
    }

    fn count(&self, dir: Dir, command_id: u32) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(d, c)| *d == dir && *c == command_id)
            .count()
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    dir: Dir,
    log: Arc<Mutex<Vec<(Dir, u32)>>>,
    cut: CancellationToken,
) {
    loop {
        let frame = tokio::select! {
            frame = read_frame(&mut from) => frame,
            _ = cut.cancelled() => break,
        };
        let Ok(frame) = frame else { break };
        let command_id = u32::from_be_bytes(frame[4..8].try_into().unwrap());
        log.lock().unwrap().push((dir, command_id));
        if to.write_all(&frame).await.is_err() {
            break;
        }
    }
}

async fn read_frame(r: &mut (impl AsyncReadExt + Unpin)) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let n = u32::from_be_bytes(len) as usize;
    if !(16..=1 << 20).contains(&n) {
        return Err(std::io::Error::other("bad length"));
    }
    let mut frame = vec![0u8; n];
    frame[..4].copy_from_slice(&len);
    r.read_exact(&mut frame[4..]).await?;
    Ok(frame)
}

// ---------------------------------------------------------------------------------------------
// The carrier under test.
// ---------------------------------------------------------------------------------------------

fn config(port: u16) -> SmppCarrierConfig {
    SmppCarrierConfig {
        name: "smsc1".to_owned(),
        host: "127.0.0.1".to_owned(),
        port,
        system_id: "airtext".to_owned(),
        password: Some("secret".to_owned()),
        system_type: None,
        window: 8,
        max_per_second: None,
        any_sender: false,
        numbers: vec![OUR_DID.to_owned()],
        rates: vec![],
        use_message_payload: false,
        delivery_receipts: true,
        enquire_link_secs: 30,
        max_binds: 1,
    }
}

fn tuning() -> SmppTuning {
    SmppTuning {
        bind_timeout: Duration::from_secs(3),
        response_timeout: Duration::from_secs(5),
        enquire_link_timeout: Duration::from_secs(2),
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(400),
        bind_wait: Duration::from_secs(3),
        shutdown_grace: Duration::from_secs(1),
        unbind_timeout: Duration::from_secs(2),
        throttle_pause: Duration::from_millis(300),
        ..SmppTuning::default()
    }
}

struct World {
    smsc: Arc<Smsc>,
    _server: SmppServer,
    tap: Tap,
    carrier: Arc<SmppCarrier>,
    reports: mpsc::Receiver<CarrierReport>,
    shutdown: CancellationToken,
}

async fn world_with(
    smsc: Arc<Smsc>,
    enquire_link_ms: u64,
    edit: impl FnOnce(&mut SmppCarrierConfig),
) -> World {
    world_tuned(smsc, enquire_link_ms, edit, tuning()).await
}

async fn world_tuned(
    smsc: Arc<Smsc>,
    enquire_link_ms: u64,
    edit: impl FnOnce(&mut SmppCarrierConfig),
    tuning: SmppTuning,
) -> World {
    let (server, port) = start_smsc(smsc.clone(), enquire_link_ms).await;
    let tap = Tap::start(port).await;
    let mut cfg = config(tap.port);
    edit(&mut cfg);
    let (sink, source) = report_channel(64);
    let reports = store_every_report(source);
    let shutdown = CancellationToken::new();
    let carrier = SmppCarrier::start_with(cfg, tuning, sink, shutdown.clone()).unwrap();
    World {
        smsc,
        _server: server,
        tap,
        carrier,
        reports,
        shutdown,
    }
}

async fn bound_world(edit: impl FnOnce(&mut SmppCarrierConfig)) -> World {
    let w = world_with(Smsc::new("secret"), 30_000, edit).await;
    assert!(
        w.carrier.wait_bound(Duration::from_secs(5)).await,
        "not bound: {:?}",
        w.carrier.last_error()
    );
    w
}

fn sms(to: &str, body: &str) -> OutboundSms {
    OutboundSms {
        account: None,
        from: OUR_DID.to_owned(),
        to: to.to_owned(),
        body: body.to_owned(),
    }
}

/// Plays the gateway's router: answers every report "stored" and hands it to the test.
fn store_every_report(mut source: ReportSource) -> mpsc::Receiver<CarrierReport> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        while let Some(pending) = source.recv().await {
            let report = pending.report.clone();
            pending.stored();
            if tx.send(report).await.is_err() {
                break;
            }
        }
    });
    rx
}

async fn next_report(reports: &mut mpsc::Receiver<CarrierReport>) -> CarrierReport {
    tokio::time::timeout(Duration::from_secs(5), reports.recv())
        .await
        .expect("a report within 5 s")
        .expect("the channel is open")
}

/// GSM 03.38 unpacked septets of a text, as an independent oracle for the basic characters
/// and the escapes used here.
fn gsm7(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for c in text.chars() {
        match c {
            '€' => out.extend([0x1B, 0x65]),
            '[' => out.extend([0x1B, 0x3C]),
            ']' => out.extend([0x1B, 0x3E]),
            '{' => out.extend([0x1B, 0x28]),
            '}' => out.extend([0x1B, 0x29]),
            '@' => out.push(0x00),
            c if c.is_ascii_alphanumeric() || " .,!?".contains(c) => out.push(c as u8),
            other => panic!("no oracle for {other:?}"),
        }
    }
    out
}

fn utf16be(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn binds_as_a_transceiver_with_its_credentials() {
    let w = bound_world(|_| {}).await;
    let binds = w.smsc.bind_requests.lock().unwrap().clone();
    assert_eq!(binds.len(), 1);
    assert_eq!(binds[0].system_id, "airtext");
    assert_eq!(binds[0].password, "secret");
    assert_eq!(binds[0].interface_version, 0x34);
    assert_eq!(w.tap.count(Dir::ToSmsc, BIND_TRANSCEIVER), 1);
    assert_eq!(w.carrier.name(), "smsc1");
    let inventory = w.carrier.inventory();
    assert_eq!(inventory.len(), 1);
    assert_eq!(inventory[0].number, OUR_DID);
    assert_eq!(inventory[0].country, "US");
    assert_eq!(inventory[0].carrier, "smsc1");
}

#[tokio::test]
async fn a_wrong_password_fails_the_bind_clearly_and_is_retried() {
    let w = world_with(Smsc::new("other"), 30_000, |_| {}).await;
    assert!(!w.carrier.wait_bound(Duration::from_millis(700)).await);
    let error = w.carrier.last_error().unwrap_or_default();
    assert!(error.contains("ESME_RINVPASWD"), "{error}");
    assert!(error.contains("airtext"), "{error}");
    match w.carrier.send(sms(PHONE, "hello")).await {
        Err(CarrierError::Retryable(reason)) => {
            assert!(reason.contains("not bound"), "{reason}");
            assert!(reason.contains("ESME_RINVPASWD"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // it keeps trying, with back-off
    assert!(
        w.smsc.refused_binds.load(Ordering::SeqCst) >= 2,
        "{} attempts",
        w.smsc.refused_binds.load(Ordering::SeqCst)
    );
    assert_eq!(w.smsc.binds.load(Ordering::SeqCst), 0);
    assert!(w.smsc.accepted().is_empty());
}

#[tokio::test]
async fn a_single_gsm7_text_with_escape_characters() {
    let w = bound_world(|_| {}).await;
    let body = "Price 5€ [a] {b} @home";
    let accepted = w.carrier.send(sms(PHONE, body)).await.unwrap();
    let got = w.smsc.accepted();
    assert_eq!(got.len(), 1);
    let (id, sm) = &got[0];
    assert_eq!(&accepted.carrier_message_id, id);
    assert_eq!(sm.data_coding, 0);
    assert_eq!(sm.esm_class, 0);
    assert_eq!(sm.registered_delivery, 1);
    assert_eq!(
        (sm.source_addr_ton, sm.source_addr_npi),
        (1, 1),
        "international"
    );
    assert_eq!(sm.source_addr, "14155550100");
    assert_eq!((sm.dest_addr_ton, sm.dest_addr_npi), (1, 1));
    assert_eq!(sm.destination_addr, "447700900123");
    assert_eq!(sm.short_message, gsm7(body));
    // each of €[]{} is an ESC pair
    assert_eq!(sm.short_message.iter().filter(|&&b| b == 0x1B).count(), 5);
}

#[tokio::test]
async fn a_single_ucs2_text_with_an_emoji() {
    let w = bound_world(|_| {}).await;
    let body = "On my way 🚲 ok";
    w.carrier.send(sms(PHONE, body)).await.unwrap();
    let got = w.smsc.accepted();
    let sm = &got[0].1;
    assert_eq!(sm.data_coding, 8);
    assert_eq!(sm.esm_class, 0);
    assert_eq!(sm.short_message, utf16be(body));
}

/// Checks the parts of one concatenated message; returns its reference.
fn check_parts(parts: &[&submit_sm], data_coding: u8, joined_payload: &[u8]) -> u8 {
    let total = parts.len() as u8;
    let reference = parts[0].short_message[3];
    let mut payload = Vec::new();
    for (i, sm) in parts.iter().enumerate() {
        assert_eq!(sm.esm_class, 0x40, "UDHI");
        assert_eq!(sm.data_coding, data_coding);
        assert_eq!(
            &sm.short_message[..6],
            &[0x05, 0x00, 0x03, reference, total, i as u8 + 1],
            "UDH of part {}",
            i + 1
        );
        payload.extend_from_slice(&sm.short_message[6..]);
    }
    assert_eq!(payload, joined_payload);
    reference
}

#[tokio::test]
async fn long_texts_go_as_concatenated_parts() {
    let w = bound_world(|_| {}).await;
    // 300 GSM-7 characters: 153 + 147
    let gsm_body: String = (0..300).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let first = w.carrier.send(sms(PHONE, &gsm_body)).await.unwrap();
    let got = w.smsc.accepted();
    assert_eq!(got.len(), 2);
    let mut by_seq: Vec<&(String, submit_sm)> = got.iter().collect();
    by_seq.sort_by_key(|(_, sm)| sm.short_message[5]);
    // the id returned is the first part's
    assert_eq!(first.carrier_message_id, by_seq[0].0);
    let parts: Vec<&submit_sm> = by_seq.iter().map(|(_, sm)| sm).collect();
    assert_eq!(parts[0].short_message.len(), 6 + 153);
    assert_eq!(parts[1].short_message.len(), 6 + 147);
    let ref1 = check_parts(&parts, 0, &gsm7(&gsm_body));

    // UCS-2: 150 units → 67 + 67 + 16
    let ucs_body: String = "Привет мир! "
        .repeat(13)
        .chars()
        .take(148)
        .chain(['😀'])
        .collect();
    assert_eq!(ucs_body.encode_utf16().count(), 150);
    w.carrier.send(sms(PHONE, &ucs_body)).await.unwrap();
    let got = w.smsc.accepted();
    let mut ucs: Vec<&submit_sm> = got[2..].iter().map(|(_, sm)| sm).collect();
    ucs.sort_by_key(|sm| sm.short_message[5]);
    assert_eq!(ucs.len(), 3);
    let ref2 = check_parts(&ucs, 8, &utf16be(&ucs_body));
    // one reference per message, rolling
    assert_ne!(ref1, ref2);
    // every part asked for a receipt
    assert!(got.iter().all(|(_, sm)| sm.registered_delivery == 1));
}

#[tokio::test]
async fn message_payload_mode_sends_long_texts_whole() {
    let w = bound_world(|c| {
        c.use_message_payload = true;
        c.delivery_receipts = false;
    })
    .await;
    let body: String = "Long text with € in it. ".repeat(15);
    w.carrier.send(sms(PHONE, &body)).await.unwrap();
    let got = w.smsc.accepted();
    assert_eq!(got.len(), 1, "one submit_sm");
    let sm = &got[0].1;
    assert_eq!(sm.esm_class, 0);
    assert_eq!(sm.registered_delivery, 0);
    assert!(sm.short_message.is_empty());
    let payload = sm
        .tlvs
        .iter()
        .find(|t| t.tag == TlvTag::MessagePayload as u16)
        .expect("message_payload TLV");
    assert_eq!(payload.value, gsm7(&body));
    // a short text still goes in short_message
    w.carrier.send(sms(PHONE, "short")).await.unwrap();
    assert_eq!(w.smsc.accepted()[1].1.short_message, b"short");
}

#[tokio::test]
async fn receipts_in_text_and_tlv_form() {
    let mut w = bound_world(|_| {}).await;
    let a = w
        .carrier
        .send(sms(PHONE, "one"))
        .await
        .unwrap()
        .carrier_message_id;
    let b = w
        .carrier
        .send(sms(PHONE, "two"))
        .await
        .unwrap()
        .carrier_message_id;

    // Appendix B text only
    let text = format!(
        "id:{a} sub:001 dlvrd:001 submit date:2511291530 done date:2511291531 stat:DELIVRD err:000 text:one"
    );
    w.smsc.deliver(0x04, 0, text.into_bytes()).await;
    assert_eq!(
        next_report(&mut w.reports).await,
        CarrierReport::Receipt {
            carrier: "smsc1".into(),
            carrier_message_id: a.clone(),
            status: ReceiptStatus::Delivered,
            reason: None,
        }
    );

    // TLVs only: receipted_message_id + message_state UNDELIVERABLE
    let mut id = b.clone().into_bytes();
    id.push(0);
    let resp = w
        .smsc
        .esme()
        .deliver_sm()
        .source_addr_ton(1)
        .source_addr_npi(1)
        .source_addr("447700900123")
        .destination_addr("14155550100")
        .esm_class(0x04)
        .tlv(TlvTag::ReceiptedMessageId, id)
        .tlv(TlvTag::MessageStateTlv, vec![5u8])
        .send()
        .await
        .unwrap();
    assert!(resp.is_success());
    match next_report(&mut w.reports).await {
        CarrierReport::Receipt {
            carrier_message_id,
            status,
            reason,
            ..
        } => {
            assert_eq!(carrier_message_id, b);
            assert_eq!(status, ReceiptStatus::Failed);
            assert_eq!(reason.as_deref(), Some("UNDELIV"));
        }
        other => panic!("{other:?}"),
    }

    // intermediate state, and an id nobody knows: reported as they are
    w.smsc
        .deliver(0x04, 0, b"id:nobody stat:ENROUTE err:000 text:".to_vec())
        .await;
    match next_report(&mut w.reports).await {
        CarrierReport::Receipt {
            carrier_message_id,
            status,
            ..
        } => {
            assert_eq!(carrier_message_id, "nobody");
            assert_eq!(status, ReceiptStatus::Sent);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn receipts_of_every_part_make_one_delivered_report() {
    let mut w = bound_world(|_| {}).await;
    let body: String = "x".repeat(200);
    let first = w
        .carrier
        .send(sms(PHONE, &body))
        .await
        .unwrap()
        .carrier_message_id;
    let ids: Vec<String> = w.smsc.accepted().into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), 2);
    let other = ids.iter().find(|id| **id != first).unwrap().clone();
    // the second part's receipt alone reports nothing yet
    w.smsc
        .deliver(
            0x04,
            0,
            format!("id:{other} stat:DELIVRD err:000").into_bytes(),
        )
        .await;
    w.smsc
        .deliver(
            0x04,
            0,
            format!("id:{first} stat:DELIVRD err:000").into_bytes(),
        )
        .await;
    assert_eq!(
        next_report(&mut w.reports).await,
        CarrierReport::Receipt {
            carrier: "smsc1".into(),
            carrier_message_id: first,
            status: ReceiptStatus::Delivered,
            reason: None,
        }
    );
    assert!(w.reports.try_recv().is_err(), "exactly one report");
}

#[tokio::test]
async fn mobile_originated_texts_single_and_concatenated_out_of_order() {
    let mut w = bound_world(|_| {}).await;
    // single, GSM-7 with escapes
    w.smsc.deliver(0, 0, gsm7("Hi there [ok] 5€")).await;
    assert_eq!(
        next_report(&mut w.reports).await,
        CarrierReport::Inbound {
            carrier: "smsc1".into(),
            from: PHONE.into(),
            to: OUR_DID.into(),
            body: "Hi there [ok] 5€".into(),
        }
    );
    // single UCS-2
    w.smsc.deliver(0, 8, utf16be("Ça va? 😀")).await;
    match next_report(&mut w.reports).await {
        CarrierReport::Inbound { body, .. } => assert_eq!(body, "Ça va? 😀"),
        other => panic!("{other:?}"),
    }
    // three UCS-2 parts, arriving 3, 1, 2 (a surrogate pair split across parts 1 and 2)
    let full = "First part, then 😀 second, and the third.";
    let bytes = utf16be(full);
    let cut1 = 2 * 18 + 2; // inside the emoji's surrogate pair
    let cut2 = 2 * 30;
    let chunks = [&bytes[..cut1], &bytes[cut1..cut2], &bytes[cut2..]];
    for seq in [3u8, 1, 2] {
        let mut sm = vec![0x05, 0x00, 0x03, 0x7A, 0x03, seq];
        sm.extend_from_slice(chunks[usize::from(seq) - 1]);
        w.smsc.deliver(0x40, 8, sm).await;
    }
    assert_eq!(
        next_report(&mut w.reports).await,
        CarrierReport::Inbound {
            carrier: "smsc1".into(),
            from: PHONE.into(),
            to: OUR_DID.into(),
            body: full.into(),
        }
    );
    // two GSM-7 parts with a 16-bit reference, 2 then 1
    let one = [
        &[0x06, 0x08, 0x04, 0x12, 0x34, 0x02, 0x01][..],
        &gsm7("Hello, "),
    ]
    .concat();
    let two = [
        &[0x06, 0x08, 0x04, 0x12, 0x34, 0x02, 0x02][..],
        &gsm7("world {x}"),
    ]
    .concat();
    w.smsc.deliver(0x40, 0, two).await;
    w.smsc.deliver(0x40, 0, one).await;
    match next_report(&mut w.reports).await {
        CarrierReport::Inbound { body, .. } => assert_eq!(body, "Hello, world {x}"),
        other => panic!("{other:?}"),
    }
    assert!(w.reports.try_recv().is_err());
}

#[tokio::test]
async fn enquire_link_is_answered_and_sent() {
    // the SMSC probes every 300 ms; we probe every second
    let w = world_with(Smsc::new("secret"), 300, |c| c.enquire_link_secs = 1).await;
    assert!(w.carrier.wait_bound(Duration::from_secs(5)).await);
    // Polled, not slept: a slow machine takes longer to get there, never a different answer.
    // Three of the SMSC's probes answered, and one of ours answered by it.
    tokio::time::timeout(Duration::from_secs(30), async {
        while w.tap.count(Dir::ToSmsc, ENQUIRE_LINK_RESP) < 3
            || w.tap.count(Dir::ToEsme, ENQUIRE_LINK_RESP) < 1
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("probes both ways, answered");
    // Nothing answers a probe that was not sent (answers counted first: more probes may come).
    let answers = w.tap.count(Dir::ToSmsc, ENQUIRE_LINK_RESP);
    let probes = w.tap.count(Dir::ToEsme, ENQUIRE_LINK);
    assert!(answers <= probes, "{probes} probes, {answers} answers");
    assert!(w.tap.count(Dir::ToSmsc, ENQUIRE_LINK) >= 1);
    assert!(w.carrier.is_bound());
    assert_eq!(w.tap.connections.load(Ordering::SeqCst), 1, "never rebound");
}

#[tokio::test]
async fn throttling_is_retryable_and_an_invalid_destination_permanent() {
    let w = bound_world(|_| {}).await;
    match w.carrier.send(sms(THROTTLED, "hi")).await {
        Err(CarrierError::Retryable(reason)) => {
            assert!(reason.contains("ESME_RTHROTTLED"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // after a throttling answer the carrier holds new submits for `throttle_pause`
    let started = std::time::Instant::now();
    match w.carrier.send(sms(INVALID, "hi")).await {
        Err(CarrierError::Permanent(reason)) => {
            assert!(reason.contains("ESME_RINVDSTADR"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    // an address that is not a number never reaches the SMSC
    assert!(matches!(
        w.carrier.send(sms("not a number", "hi")).await,
        Err(CarrierError::Permanent(_))
    ));
    assert!(w.smsc.accepted().is_empty());
    assert_eq!(w.tap.count(Dir::ToSmsc, SUBMIT_SM), 2);
    // the session is still fine
    w.carrier.send(sms(PHONE, "hi")).await.unwrap();
}

#[tokio::test]
async fn the_window_bounds_outstanding_submits() {
    let w = bound_world(|c| c.window = 4).await;
    w.smsc.delay_ms.store(80, Ordering::SeqCst);
    let sends = (0..16).map(|i| {
        let carrier = w.carrier.clone();
        tokio::spawn(async move { carrier.send(sms(PHONE, &format!("window {i}"))).await })
    });
    for r in futures::future::join_all(sends).await {
        r.unwrap().unwrap();
    }
    let max = w.smsc.max_in_flight.load(Ordering::SeqCst);
    assert!(max <= 4, "{max} outstanding at once");
    assert!(max >= 3, "the window is used ({max} at once)");
    assert_eq!(w.smsc.accepted().len(), 16);
}

/// A world at window 1 whose SMSC has 300 ms to answer each submit.
async fn impatient_world() -> World {
    let tuning = SmppTuning {
        response_timeout: Duration::from_millis(300),
        ..tuning()
    };
    let w = world_tuned(Smsc::new("secret"), 30_000, |c| c.window = 1, tuning).await;
    assert!(w.carrier.wait_bound(Duration::from_secs(5)).await);
    w
}

#[tokio::test]
async fn an_unanswered_submit_times_out_and_gives_back_its_place_in_the_window() {
    let w = impatient_world().await;
    let (open_gate, gate) = watch::channel(false);
    *w.smsc.gate.lock().unwrap() = Some(gate);
    w.smsc.hold_from.store(0, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let unanswered = w.carrier.send(sms(PHONE, "never answered")).await;
    let took = started.elapsed();
    match unanswered {
        Err(CarrierError::Retryable(why)) => {
            assert!(why.contains("no submit_sm_resp within 300ms"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    assert!(took >= Duration::from_millis(300), "{took:?}");
    // A bound on a hang, not on speed: no machine turns a 300 ms timeout into 20 s.
    assert!(took < Duration::from_secs(20), "{took:?}");
    // Window 1: the next submit goes out only if the late one gave its place back.
    w.smsc.hold_from.store(-1, Ordering::SeqCst);
    tokio::time::timeout(
        Duration::from_secs(3),
        w.carrier.send(sms(PHONE, "answered")),
    )
    .await
    .expect("the window has room again")
    .unwrap();
    // The refusal that finally comes for the first reaches nobody and ends nothing.
    let _ = open_gate.send(true);
    w.carrier
        .send(sms(PHONE, "after the late answer"))
        .await
        .unwrap();
    assert_eq!(w.tap.connections.load(Ordering::SeqCst), 1, "one session");
}

#[tokio::test]
async fn time_queued_behind_a_full_window_is_not_counted_against_the_smsc() {
    // Each answer takes 500 ms of the 1.5 s allowed (a margin no machine eats), so the fifth
    // text waits 2 s in the queue before it is written: counted from the write, it is in time.
    let tuning = SmppTuning {
        response_timeout: Duration::from_millis(1_500),
        ..tuning()
    };
    let w = world_tuned(Smsc::new("secret"), 30_000, |c| c.window = 1, tuning).await;
    assert!(w.carrier.wait_bound(Duration::from_secs(5)).await);
    w.smsc.delay_ms.store(500, Ordering::SeqCst);
    let sends = (0..5).map(|i| {
        let carrier = w.carrier.clone();
        tokio::spawn(async move { carrier.send(sms(PHONE, &format!("queued {i}"))).await })
    });
    for r in futures::future::join_all(sends).await {
        r.unwrap().unwrap();
    }
    assert_eq!(w.smsc.max_in_flight.load(Ordering::SeqCst), 1);
    assert_eq!(w.smsc.accepted().len(), 5);
}

#[tokio::test]
async fn max_per_second_paces_submit_sm() {
    // 50 per second with bursts of 2: 12 single-part texts take at least 10 × 20 ms
    let w = bound_world(|c| c.max_per_second = Some(50)).await;
    let started = std::time::Instant::now();
    let sends = (0..12).map(|i| {
        let carrier = w.carrier.clone();
        tokio::spawn(async move { carrier.send(sms(PHONE, &format!("paced {i}"))).await })
    });
    for r in futures::future::join_all(sends).await {
        r.unwrap().unwrap();
    }
    // Pacing only slows sends down: a lower bound, which no machine's speed can break.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(190), "{took:?}");
    assert_eq!(w.smsc.accepted().len(), 12);
}

#[tokio::test]
async fn a_dropped_connection_mid_window_loses_and_doubles_nothing() {
    let w = bound_world(|c| c.window = 8).await;
    let (open_gate, gate) = watch::channel(false);
    *w.smsc.gate.lock().unwrap() = Some(gate);
    // the SMSC acknowledges 5 submits, then leaves the next ones unanswered
    w.smsc.hold_from.store(5, Ordering::SeqCst);
    let texts: Vec<String> = (0..20).map(|i| format!("drop test {i:02}")).collect();
    let sends: Vec<_> = texts
        .iter()
        .map(|text| {
            let carrier = w.carrier.clone();
            let text = text.clone();
            tokio::spawn(async move { (text.clone(), carrier.send(sms(PHONE, &text)).await) })
        })
        .collect();
    // wait for a full window outstanding at the SMSC, then cut the connection
    tokio::time::timeout(Duration::from_secs(5), async {
        while w.smsc.held.load(Ordering::SeqCst) < 8 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("8 submits outstanding");
    w.tap.cut();
    w.smsc.hold_from.store(-1, Ordering::SeqCst);
    let _ = open_gate.send(true);
    let mut first_round = HashMap::new();
    for s in sends {
        let (text, result) = s.await.unwrap();
        first_round.insert(text, result);
    }
    let ok = first_round.values().filter(|r| r.is_ok()).count();
    let retryable = first_round
        .values()
        .filter(|r| matches!(r, Err(CarrierError::Retryable(_))))
        .count();
    assert_eq!((ok, retryable), (5, 15), "{first_round:?}");
    // the caller (the gateway's queue) retries what was retryable; the carrier rebinds
    for (text, result) in &first_round {
        if result.is_ok() {
            continue;
        }
        let mut tries = 0;
        loop {
            tries += 1;
            match w.carrier.send(sms(PHONE, text)).await {
                Ok(_) => break,
                Err(CarrierError::Retryable(_)) if tries < 50 => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }
    assert!(w.tap.connections.load(Ordering::SeqCst) >= 2, "rebound");
    let mut counts: HashMap<String, usize> = HashMap::new();
    for (_, sm) in w.smsc.accepted() {
        *counts
            .entry(String::from_utf8(sm.short_message).unwrap())
            .or_default() += 1;
    }
    for text in &texts {
        assert_eq!(
            counts.get(text),
            Some(&1),
            "{text} accepted once: {counts:?}"
        );
    }
    assert_eq!(counts.len(), 20);
}

/// The link runs on a thread of its own; it must not outlive the runtime that started it
/// (a test's, say) when nobody cancels its shutdown.
#[test]
fn the_link_unbinds_when_the_runtime_that_started_it_stops() {
    let smsc_runtime = tokio::runtime::Runtime::new().unwrap();
    let smsc = Smsc::new("secret");
    let (_server, tap) = smsc_runtime.block_on(async {
        let (server, port) = start_smsc(smsc.clone(), 30_000).await;
        (server, Tap::start(port).await)
    });
    let carrier_runtime = tokio::runtime::Runtime::new().unwrap();
    let shutdown = CancellationToken::new();
    carrier_runtime.block_on(async {
        let (sink, source) = report_channel(64);
        let _reports = store_every_report(source);
        let carrier =
            SmppCarrier::start_with(config(tap.port), tuning(), sink, shutdown.clone()).unwrap();
        assert!(carrier.wait_bound(Duration::from_secs(5)).await);
    });
    drop(carrier_runtime);
    smsc_runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), async {
            while tap.count(Dir::ToSmsc, UNBIND) == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the link unbound");
    });
    assert!(!shutdown.is_cancelled());
    assert_eq!(tap.connections.load(Ordering::SeqCst), 1, "no rebind");
}

#[tokio::test]
async fn shutdown_unbinds_cleanly() {
    let w = bound_world(|_| {}).await;
    w.carrier.send(sms(PHONE, "before shutdown")).await.unwrap();
    w.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), w.carrier.stopped())
        .await
        .expect("stopped within 5 s");
    assert_eq!(w.tap.count(Dir::ToSmsc, UNBIND), 1);
    assert_eq!(w.tap.count(Dir::ToEsme, UNBIND_RESP), 1);
    assert_eq!(w.smsc.unbinds.load(Ordering::SeqCst), 1);
    assert!(!w.carrier.is_bound());
    assert!(matches!(
        w.carrier.send(sms(PHONE, "after")).await,
        Err(CarrierError::Retryable(_))
    ));
    assert_eq!(w.tap.connections.load(Ordering::SeqCst), 1, "no rebind");
}

// ---------------------------------------------------------------------------------------------
// Garbage from the SMSC: a raw socket that binds, then sends bytes no SMSC should.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn garbage_from_the_smsc_closes_the_session_and_rebinds() {
    // shown when the test fails (or with --nocapture): why each session ended
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("airtext_gateway=info")
        .try_init();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let n = connections.clone();
    let garbage: Vec<Vec<u8>> = vec![
        // a header whose command_length is below the 16-octet header itself
        vec![0, 0, 0, 5, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 9],
        // a deliver_sm whose sm_length runs past the end of the PDU
        {
            let mut body = vec![0u8]; // service_type
            body.extend([1, 1]);
            body.extend(b"447700900123\0");
            body.extend([1, 1]);
            body.extend(b"14155550100\0");
            body.extend([0, 0, 0, 0, 0, 0, 0, 0, 0]); // esm..sm_default_msg_id, empty times
            body.push(200); // sm_length
            body.extend(b"abc");
            pdu(0x0000_0005, 0, 7, &body)
        },
        // a submit_sm_resp for nothing with a non-ASCII message_id, then an unknown command
        [
            pdu(0x8000_0004, 0, 999, b"\xFF\xFE\0"),
            pdu(0x0000_7777, 0, 8, b"??"),
        ]
        .concat(),
        // a huge command_length
        vec![0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1],
    ];
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let i = n.fetch_add(1, Ordering::SeqCst);
            let bytes = garbage.get(i).cloned();
            tokio::spawn(async move {
                let Ok(bind) = read_frame(&mut s).await else {
                    return;
                };
                let seq = u32::from_be_bytes(bind[12..16].try_into().unwrap());
                let _ = s.write_all(&pdu(0x8000_0009, 0, seq, b"RAW\0")).await;
                if let Some(bytes) = bytes {
                    let _ = s.write_all(&bytes).await;
                }
                // keep the socket open; the carrier must be the one to close it
                let mut sink = [0u8; 1024];
                while let Ok(n) = s.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    let (tx, _reports) = report_channel(16);
    let shutdown = CancellationToken::new();
    let carrier = SmppCarrier::start_with(config(port), tuning(), tx, shutdown.clone()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while connections.load(Ordering::SeqCst) < 5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "a new bind after each malformed PDU; {} connections, last error {:?}",
            connections.load(Ordering::SeqCst),
            carrier.last_error()
        )
    });
    // the fifth connection is well-behaved and stays bound
    assert!(carrier.wait_bound(Duration::from_secs(3)).await);
    shutdown.cancel();
    carrier.stopped().await;
}

fn pdu(command_id: u32, status: u32, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend(((16 + body.len()) as u32).to_be_bytes());
    out.extend(command_id.to_be_bytes());
    out.extend(status.to_be_bytes());
    out.extend(seq.to_be_bytes());
    out.extend(body);
    out
}

/// A bound carrier whose reports the test answers itself (stored or not), through `source`.
async fn bound_with_raw_reports() -> (
    Arc<Smsc>,
    SmppServer,
    Arc<SmppCarrier>,
    ReportSource,
    CancellationToken,
) {
    let smsc = Smsc::new("secret");
    let (server, port) = start_smsc(smsc.clone(), 30_000).await;
    let (sink, source) = report_channel(16);
    let shutdown = CancellationToken::new();
    let carrier = SmppCarrier::start_with(config(port), tuning(), sink, shutdown.clone()).unwrap();
    assert!(carrier.wait_bound(Duration::from_secs(5)).await);
    (smsc, server, carrier, source, shutdown)
}

/// Has the SMSC send a text from `PHONE`; returns its pending answer (the `command_status` of
/// the `deliver_sm_resp`) and the report, after checking the answer waits for the store.
async fn text_awaiting_store(
    smsc: &Arc<Smsc>,
    source: &mut ReportSource,
    body: &'static str,
) -> (tokio::task::JoinHandle<u32>, PendingReport) {
    let answer = tokio::spawn({
        let smsc = smsc.clone();
        async move { smsc.deliver_answer(0, 0, body.as_bytes().to_vec()).await }
    });
    let pending = tokio::time::timeout(Duration::from_secs(5), source.recv())
        .await
        .expect("a report within 5 s")
        .expect("the channel is open");
    match &pending.report {
        CarrierReport::Inbound {
            body: got, from, ..
        } => {
            assert_eq!(got, body);
            assert_eq!(from, PHONE);
        }
        other => panic!("expected an inbound text, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !answer.is_finished(),
        "answered before the report was stored"
    );
    (answer, pending)
}

/// A text from a phone is acknowledged to the SMSC only once the gateway has stored it; if it
/// could not be stored the SMSC hears ESME_RX_T_APPN and keeps the text to send again.
#[tokio::test]
async fn deliver_sm_is_answered_only_after_its_report_is_stored() {
    let (smsc, _server, carrier, mut source, shutdown) = bound_with_raw_reports().await;

    // The store fails: the SMSC is told to try again.
    let (answer, pending) = text_awaiting_store(&smsc, &mut source, "first try").await;
    pending.not_stored(NotStored::Failed("disk full".to_owned()));
    assert_eq!(answer.await.unwrap(), 0x64, "ESME_RX_T_APPN");

    // The SMSC resends; this time it is stored, and only then acknowledged.
    let (answer, pending) = text_awaiting_store(&smsc, &mut source, "first try").await;
    pending.stored();
    assert_eq!(answer.await.unwrap(), 0, "ESME_ROK");

    // Storing one report does not hold up the PDUs behind it: the first part of a longer
    // text (buffered, nothing to store yet) is answered while a text still waits.
    let waiting = tokio::spawn({
        let smsc = smsc.clone();
        async move { smsc.deliver_answer(0, 0, b"slow store".to_vec()).await }
    });
    let slow = tokio::time::timeout(Duration::from_secs(5), source.recv())
        .await
        .unwrap()
        .unwrap();
    let enquire = tokio::time::timeout(
        Duration::from_secs(5),
        smsc.deliver_answer(
            0x40,
            0,
            [
                &[0x05, 0x00, 0x03, 0x77, 0x02, 0x01][..],
                &gsm7("part one "),
            ]
            .concat(),
        ),
    )
    .await
    .expect("answered while another deliver_sm waits for the store");
    assert_eq!(enquire, 0);
    assert!(!waiting.is_finished());
    slow.stored();
    assert_eq!(waiting.await.unwrap(), 0);

    shutdown.cancel();
    carrier.stopped().await;
}

/// `max_binds` holds across gateway nodes on one PostgreSQL: with one bind allowed, only one
/// of two nodes binds and the other says the carrier is bound elsewhere; when the holder
/// stops, or loses the database connection that holds its slot, the other takes over.
#[tokio::test]
async fn max_binds_holds_across_nodes_sharing_postgres() {
    let Some(pg) = common::postgres_schema("max_binds_holds_across_nodes_sharing_postgres").await
    else {
        return;
    };
    let smsc = Smsc::new("secret");
    let (_server, port) = start_smsc(smsc.clone(), 30_000).await;
    let slots = BindSlots::for_database(&pg.url, "smsc1", 1).unwrap();
    let fast = SmppTuning {
        slot_retry: Duration::from_millis(200),
        ..tuning()
    };
    let node = |shutdown: &CancellationToken| {
        let (sink, source) = report_channel(16);
        let _reports = store_every_report(source);
        SmppCarrier::start_shared(
            config(port),
            fast.clone(),
            slots.clone(),
            sink,
            shutdown.clone(),
        )
        .unwrap()
    };
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let a = node(&stop_a);
    let b = node(&stop_b);

    // Exactly one binds; the other waits and says so.
    let one_bound = |a: &SmppCarrier, b: &SmppCarrier| a.is_bound() ^ b.is_bound();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !(one_bound(&a, &b) && (a.bound_elsewhere() || b.bound_elsewhere())) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("one node bound, the other waiting");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        one_bound(&a, &b),
        "still exactly one bind after several slot retries"
    );
    assert_eq!(smsc.binds.load(Ordering::SeqCst), 1);
    let (holder, holder_stop, waiter, waiter_stop) = if a.is_bound() {
        (a, stop_a, b, stop_b)
    } else {
        (b, stop_b, a, stop_a)
    };
    assert!(!holder.bound_elsewhere());
    assert!(waiter.bound_elsewhere());
    assert!(waiter.last_error().unwrap().contains("max_binds"));
    holder.send(sms(PHONE, "through the holder")).await.unwrap();

    // The holder stops (unbinds, frees its slot): the waiter binds.
    holder_stop.cancel();
    holder.stopped().await;
    assert!(
        waiter.wait_bound(Duration::from_secs(10)).await,
        "the waiter takes over"
    );
    assert!(!waiter.bound_elsewhere());
    assert_eq!(smsc.binds.load(Ordering::SeqCst), 2);
    assert_eq!(
        smsc.unbinds.load(Ordering::SeqCst),
        1,
        "the first bind ended before"
    );
    waiter
        .send(sms(PHONE, "through the new holder"))
        .await
        .unwrap();

    // A third node arrives, then the holder loses the connection that holds its slot: it
    // unbinds at once, and one node (never two) binds again.
    let stop_c = CancellationToken::new();
    let c = node(&stop_c);
    tokio::time::timeout(Duration::from_secs(10), async {
        while !c.bound_elsewhere() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the newcomer waits for a slot");
    let killed = pg
        .exec_base(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'airtext-gateway smpp bind slot' AND pid <> pg_backend_pid()",
        )
        .await;
    assert!(killed >= 1, "the slot's connection was found");
    // Sampled all through the hand-over: never two binds open at the SMSC at once.
    let open = || smsc.binds.load(Ordering::SeqCst) - smsc.unbinds.load(Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(30), async {
        while smsc.binds.load(Ordering::SeqCst) < 3 || !(waiter.is_bound() || c.is_bound()) {
            assert!(open() <= 1, "{} binds open at once", open());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a node binds again after the slot was lost");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        waiter.is_bound() ^ c.is_bound(),
        "one bind after the hand-over, not two"
    );
    assert_eq!(open(), 1, "binds open at the SMSC");

    waiter_stop.cancel();
    stop_c.cancel();
    for carrier in [&waiter, &c] {
        carrier.stopped().await;
    }
    pg.drop_schema().await;
}

/// A long text whose last part completes it but cannot be stored: the SMSC resends only that
/// part (it had the others acknowledged), and the resend completes the whole text again.
#[tokio::test]
async fn a_long_text_refused_at_its_last_part_is_whole_when_that_part_comes_again() {
    let (smsc, _server, carrier, mut source, shutdown) = bound_with_raw_reports().await;
    let part =
        |seq: u8, text: &str| [&[0x05, 0x00, 0x03, 0x42, 0x02, seq][..], &gsm7(text)].concat();
    assert_eq!(smsc.deliver_answer(0x40, 0, part(1, "Hello, ")).await, 0);

    let last = || {
        let smsc = smsc.clone();
        let bytes = part(2, "world");
        tokio::spawn(async move { smsc.deliver_answer(0x40, 0, bytes).await })
    };
    let body_of = |pending: &PendingReport| match &pending.report {
        CarrierReport::Inbound { body, .. } => body.clone(),
        other => panic!("expected an inbound text, got {other:?}"),
    };
    let answer = last();
    let pending = tokio::time::timeout(Duration::from_secs(5), source.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body_of(&pending), "Hello, world");
    pending.not_stored(NotStored::Failed("disk full".to_owned()));
    assert_eq!(answer.await.unwrap(), 0x64, "ESME_RX_T_APPN");

    // Only the refused part comes again.
    let answer = last();
    let pending = tokio::time::timeout(Duration::from_secs(5), source.recv())
        .await
        .expect("the resent part completes the text")
        .unwrap();
    assert_eq!(body_of(&pending), "Hello, world");
    pending.stored();
    assert_eq!(answer.await.unwrap(), 0);

    shutdown.cancel();
    carrier.stopped().await;
}
