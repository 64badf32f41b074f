//! One bind to the SMSC, and the loop that keeps one up.
//!
//! A [`Session`] is one TCP connection bound as a transceiver (SMPP 3.4 §4.1.5): a writer
//! task owns the socket's sending half and takes PDUs from a channel, the manager's read loop
//! owns the receiving half. Requests we send are matched to their responses by
//! `sequence_number` (§3.2, 1 to 0x7FFFFFFF, wrapping) through a table of waiting callers.
//!
//! Invariants:
//! - At most `window` `submit_sm` are outstanding (written, no response yet): a caller takes a
//!   window permit before writing and gives it back when the response arrives, the wait times
//!   out or the session ends (§2.9 "windowing").
//! - When the session ends, every caller still waiting (outstanding, or not yet written) gets
//!   [`RequestError::Closed`] at once: its message may or may not have reached the SMSC, and
//!   the carrier reports it retryable. A response that did arrive was delivered to its caller
//!   before the table was drained, so an acknowledged submit is never also failed.
//! - Every `deliver_sm` is answered with a `deliver_sm_resp` (§4.6.2) — one that completes a
//!   receipt or a text only after the gateway has stored it (ESME_RX_T_APPN if it could not,
//!   so the SMSC resends it); every `enquire_link`
//!   with an `enquire_link_resp` (§4.11.2), an `unbind` with `unbind_resp` (§4.2.2); other
//!   requests get `generic_nack` with ESME_RINVCMDID (§4.3).
//! - We send `enquire_link` every `enquire_link_secs`; no answer within the tuning's
//!   `enquire_link_timeout` means the link is dead: the session closes and a new one is bound.
//! - A PDU the codec cannot read closes the session (logged); nothing panics on any bytes.
//! - On shutdown: no new submits, outstanding ones get up to `shutdown_grace` to be answered,
//!   then `unbind` (§4.2), then the socket closes.
//!
//! [`run`] keeps a session up: connect, `bind_transceiver` (§4.1.5; a refusal such as
//! ESME_RINVPASWD is logged with its code and retried), run, and after any end reconnect with
//! exponential back-off and jitter (so many gateways do not rebind in lock-step).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use rand::Rng;
use rusmpp::pdus::{DeliverSm, DeliverSmResp, SubmitSm};
use rusmpp::tlvs::TlvValue;
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::bind_slots::{HeldSlot, SlotLook};
use super::mo::{self, MoFields};
use super::receipts::{self, ReceiptFields};
use super::{status, Inner, SmppTuning, TextKey};
use crate::carriers::CarrierReport;

/// The largest PDU we accept. `message_payload` may carry up to 64 KiB (§5.3.2.32).
const MAX_PDU: usize = 70 * 1024;
/// `sequence_number` of the bind request; the session's own numbering starts after it.
const BIND_SEQUENCE: u32 = 1;

type Transport = Framed<TcpStream, CommandCodec>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A response to one of our requests.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u32,
    pub pdu: Option<Pdu>,
    /// The SMSC answered with `generic_nack` (it could not read our PDU).
    pub nack: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestError {
    /// The session ended first; the request may or may not have reached the SMSC.
    Closed(String),
    /// No response within this long.
    Timeout(Duration),
}

/// One bound connection.
#[derive(Debug)]
pub(crate) struct Session {
    tx: mpsc::Sender<Command>,
    pending: Mutex<HashMap<u32, Waiting>>,
    seq: AtomicU32,
    window: Arc<Semaphore>,
    closed: CancellationToken,
    close_reason: Mutex<Option<String>>,
    draining: AtomicBool,
    enquiring: AtomicBool,
    response_timeout: Duration,
}

/// A request written and not yet answered.
#[derive(Debug)]
struct Waiting {
    reply: oneshot::Sender<Reply>,
    /// A submit's window permit. It leaves the table with the entry (answered, timed out or
    /// drained at the end), so the reader frees the window the moment the response arrives:
    /// at window 1 the next submit starts then, not once the caller has run again.
    _window: Option<OwnedSemaphorePermit>,
}

impl Session {
    fn new(tx: mpsc::Sender<Command>, window: usize, response_timeout: Duration) -> Self {
        Session {
            tx,
            pending: Mutex::new(HashMap::new()),
            seq: AtomicU32::new(BIND_SEQUENCE),
            window: Arc::new(Semaphore::new(window.max(1))),
            closed: CancellationToken::new(),
            close_reason: Mutex::new(None),
            draining: AtomicBool::new(false),
            enquiring: AtomicBool::new(false),
            response_timeout,
        }
    }

    /// 1 to 0x7FFFFFFF, wrapping (SMPP 3.4 §3.2: the top bit is never set in a request).
    fn next_seq(&self) -> u32 {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        (n % 0x7FFF_FFFF).saturating_add(1)
    }

    /// Ends the session: later requests fail, waiting callers get `Closed(reason)`.
    pub(crate) fn close(&self, reason: &str) {
        {
            let mut r = lock(&self.close_reason);
            if r.is_none() {
                *r = Some(reason.to_owned());
            }
        }
        self.closed.cancel();
        // Dropping the senders wakes every waiting caller with an error.
        lock(&self.pending).clear();
    }

    fn reason(&self) -> String {
        lock(&self.close_reason)
            .clone()
            .unwrap_or_else(|| "the session closed".to_owned())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Requests written and not yet answered.
    pub(crate) fn outstanding(&self) -> usize {
        lock(&self.pending).len()
    }

    /// Submits within the window; waits for a permit first.
    pub(crate) async fn submit(&self, sm: SubmitSm) -> Result<Reply, RequestError> {
        if self.draining.load(Ordering::Acquire) {
            return Err(RequestError::Closed(
                "the carrier is shutting down".to_owned(),
            ));
        }
        let permit = tokio::select! {
            permit = self.window.clone().acquire_owned() => {
                permit.map_err(|_| RequestError::Closed(self.reason()))?
            }
            _ = self.closed.cancelled() => return Err(RequestError::Closed(self.reason())),
        };
        self.request_within(Pdu::SubmitSm(sm), self.response_timeout, Some(permit))
            .await
    }

    /// Writes a request and waits up to `wait` for its response.
    pub(crate) async fn request(&self, pdu: Pdu, wait: Duration) -> Result<Reply, RequestError> {
        self.request_within(pdu, wait, None).await
    }

    /// [`Session::request`], holding `window` until the request leaves the table.
    async fn request_within(
        &self,
        pdu: Pdu,
        wait: Duration,
        window: Option<OwnedSemaphorePermit>,
    ) -> Result<Reply, RequestError> {
        if self.is_closed() {
            return Err(RequestError::Closed(self.reason()));
        }
        let seq = self.next_seq();
        let (reply_tx, mut reply_rx) = oneshot::channel();
        lock(&self.pending).insert(
            seq,
            Waiting {
                reply: reply_tx,
                _window: window,
            },
        );
        // `close` cancels before it drains under the same lock: either the drain saw our
        // entry, or we see the cancellation here.
        if self.is_closed() {
            lock(&self.pending).remove(&seq);
            return Err(RequestError::Closed(self.reason()));
        }
        let command = Command::new(CommandStatus::EsmeRok, seq, pdu);
        let written = tokio::select! {
            sent = self.tx.send(command) => sent.is_ok(),
            _ = self.closed.cancelled() => false,
        };
        if !written {
            lock(&self.pending).remove(&seq);
            return Err(RequestError::Closed(self.reason()));
        }
        tokio::select! {
            biased;
            reply = &mut reply_rx => reply.map_err(|_| RequestError::Closed(self.reason())),
            _ = tokio::time::sleep(wait) => {
                lock(&self.pending).remove(&seq);
                // It may have arrived between the timer and the removal.
                reply_rx.try_recv().map_err(|_| RequestError::Timeout(wait))
            }
        }
    }

    /// Hands a response to the caller waiting for `seq` (if any: it may have timed out).
    fn complete(&self, seq: u32, reply: Reply) {
        let waiting = lock(&self.pending).remove(&seq);
        match waiting {
            Some(waiting) => {
                let _ = waiting.reply.send(reply);
            }
            None => debug!(
                seq,
                "a response nobody waits for (timed out, or never asked)"
            ),
        }
    }

    /// Queues a PDU of ours that needs no answer (responses to the SMSC's requests).
    async fn respond(&self, command: Command) -> Result<(), SessionEnd> {
        self.tx
            .send(command)
            .await
            .map_err(|_| SessionEnd::WriterStopped)
    }
}

/// `deliver_sm` waiting for their report to be stored before they are answered.
const MAX_STORING: usize = 1024;

/// Connects and binds, then runs sessions until `shutdown`, reconnecting after every end.
pub(crate) async fn run(inner: Arc<Inner>, shutdown: CancellationToken) {
    let mut failures: u32 = 0;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        // A slot first: binding without one could exceed the SMSC's bind limit.
        let slot = tokio::select! {
            slot = take_slot(&inner) => slot,
            _ = shutdown.cancelled() => break,
        };
        let attempt = tokio::select! {
            attempt = connect_and_bind(&inner) => attempt,
            _ = shutdown.cancelled() => break,
        };
        match attempt {
            Ok(transport) => {
                let started = tokio::time::Instant::now();
                let reason = run_session(&inner, transport, &shutdown, &slot).await;
                if shutdown.is_cancelled() {
                    info!(carrier = %inner.name, "SMPP session closed on shutdown: {reason}");
                    break;
                }
                warn!(carrier = %inner.name, "SMPP session ended: {reason}; binding again");
                inner.set_error(format!("the SMPP session ended: {reason}"));
                // A session that lasted a while was healthy: start the back-off over.
                failures = if started.elapsed() >= Duration::from_secs(30) {
                    0
                } else {
                    failures.saturating_add(1)
                };
            }
            Err(e) => {
                error!(carrier = %inner.name, "SMPP bind failed: {e}");
                inner.set_error(e.to_string());
                failures = failures.saturating_add(1);
            }
        }
        // Free the slot while backing off: another node may bind meanwhile.
        drop(slot);
        let delay = backoff(&inner.tuning, failures);
        debug!(carrier = %inner.name, ?delay, "reconnecting after back-off");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    inner.current.send_replace(None);
}

/// Waits until this node holds a bind slot; meanwhile says whether the carrier is bound on
/// another node.
async fn take_slot(inner: &Inner) -> HeldSlot {
    loop {
        match inner.slots.take().await {
            Ok(SlotLook::Held(slot)) => {
                let Some(number) = slot.slot else {
                    inner.elsewhere.store(false, Ordering::Release);
                    return slot;
                };
                // The slot may have been freed by a lost connection whose node is still
                // bound until its keep-alive notices; give that bind time to go.
                info!(carrier = %inner.name, slot = number, "took a bind slot; settling");
                tokio::select! {
                    _ = tokio::time::sleep(inner.tuning.slot_settle) => {}
                    _ = slot.lost() => continue,
                }
                inner.elsewhere.store(false, Ordering::Release);
                return slot;
            }
            Ok(SlotLook::AllTaken { slots }) => {
                if !inner.elsewhere.swap(true, Ordering::AcqRel) {
                    info!(carrier = %inner.name, slots, "every bind slot is held by another node; waiting");
                }
                inner.set_error(format!(
                    "all {slots} binds this carrier allows (max_binds) are held by other gateway nodes"
                ));
            }
            Err(e) => {
                // Unknown: better to try our own texts (and fail over) than to leave them.
                inner.elsewhere.store(false, Ordering::Release);
                warn!(carrier = %inner.name, "{e}");
                inner.set_error(e.to_string());
            }
        }
        let jitter = rand::thread_rng().gen_range(0.75..=1.25);
        tokio::time::sleep(inner.tuning.slot_retry.mul_f64(jitter)).await;
    }
}

/// `reconnect_min × 2^failures`, at most `reconnect_max`, times a random 50–100 %.
pub(crate) fn backoff(tuning: &SmppTuning, failures: u32) -> Duration {
    let base = tuning
        .reconnect_min
        .saturating_mul(1u32 << failures.min(16))
        .min(tuning.reconnect_max);
    base.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

/// Why a bind attempt failed (logged, kept as the carrier's last error, then retried).
#[derive(Debug, thiserror::Error)]
pub(crate) enum BindError {
    #[error("connecting to {addr} took longer than {wait:?}")]
    ConnectTimeout { addr: String, wait: Duration },
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot write to {addr}: {source}")]
    Write {
        addr: String,
        source: rusmpp::tokio_codec::EncodeError,
    },
    #[error("no bind_transceiver_resp from {addr} within {wait:?}")]
    NoAnswer { addr: String, wait: Duration },
    #[error("{addr} closed the connection instead of answering bind_transceiver")]
    Closed { addr: String },
    #[error("unreadable PDU from {addr} during bind: {source}")]
    Unreadable {
        addr: String,
        source: rusmpp::tokio_codec::DecodeError,
    },
    #[error("the SMSC at {addr} refused bind_transceiver as system_id {system_id:?}: {status}")]
    Refused {
        addr: String,
        system_id: String,
        status: String,
    },
}

/// Why a bound session ended early, from the handling of one PDU.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionEnd {
    #[error("the writer has stopped")]
    WriterStopped,
    #[error("the session is closing")]
    Closing,
    #[error("the SMSC unbound the session")]
    UnboundBySmsc,
}

async fn connect_and_bind(inner: &Inner) -> Result<Transport, BindError> {
    let (host, port) = (inner.config.host.as_str(), inner.config.port);
    let addr = || format!("{host}:{port}");
    let wait = inner.tuning.bind_timeout;
    let stream = tokio::time::timeout(wait, TcpStream::connect((host, port)))
        .await
        .map_err(|_| BindError::ConnectTimeout { addr: addr(), wait })?
        .map_err(|source| BindError::Connect {
            addr: addr(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    let mut transport = Framed::new(stream, CommandCodec::new().with_max_length(MAX_PDU));
    transport
        .send(Command::new(
            CommandStatus::EsmeRok,
            BIND_SEQUENCE,
            inner.bind.clone(),
        ))
        .await
        .map_err(|source| BindError::Write {
            addr: addr(),
            source,
        })?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let next = tokio::time::timeout_at(deadline, transport.next())
            .await
            .map_err(|_| BindError::NoAnswer { addr: addr(), wait })?;
        let command = match next {
            None => return Err(BindError::Closed { addr: addr() }),
            Some(Err(source)) => {
                return Err(BindError::Unreadable {
                    addr: addr(),
                    source,
                })
            }
            Some(Ok(command)) => command,
        };
        match command.id() {
            CommandId::BindTransceiverResp | CommandId::GenericNack
                if command.sequence_number() == BIND_SEQUENCE =>
            {
                let code = u32::from(command.status());
                if code == 0 && command.id() == CommandId::BindTransceiverResp {
                    return Ok(transport);
                }
                return Err(BindError::Refused {
                    addr: addr(),
                    system_id: inner.config.system_id.clone(),
                    status: status::describe(code),
                });
            }
            CommandId::EnquireLink => {
                let answer = Command::new(
                    CommandStatus::EsmeRok,
                    command.sequence_number(),
                    Pdu::EnquireLinkResp,
                );
                transport
                    .send(answer)
                    .await
                    .map_err(|source| BindError::Write {
                        addr: addr(),
                        source,
                    })?;
            }
            other => debug!(?other, "ignored before the bind completed"),
        }
    }
}

/// Runs one bound session until it ends; returns why it ended.
async fn run_session(
    inner: &Arc<Inner>,
    transport: Transport,
    shutdown: &CancellationToken,
    slot: &HeldSlot,
) -> String {
    let (sink, mut stream) = transport.split();
    let window = usize::try_from(inner.config.window).unwrap_or(1);
    // Room for a full window of submits plus the responses we owe the SMSC.
    let (tx, rx) = mpsc::channel(window.saturating_mul(2).saturating_add(64));
    let session = Arc::new(Session::new(tx, window, inner.tuning.response_timeout));
    let writer = tokio::spawn(write_loop(sink, rx, session.clone()));
    let storing = Arc::new(Semaphore::new(MAX_STORING));
    inner.clear_error();
    inner.current.send_replace(Some(session.clone()));
    info!(
        carrier = %inner.name,
        host = %inner.config.host,
        port = inner.config.port,
        "SMPP bound as transceiver"
    );
    let period = Duration::from_secs(inner.config.enquire_link_secs.max(1));
    let mut enquire = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    enquire.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unbinding = false;
    let reason = loop {
        tokio::select! {
            frame = stream.next() => match frame {
                None => break "the SMSC closed the connection".to_owned(),
                Some(Err(e)) => break format!("unreadable PDU from the SMSC: {e}"),
                Some(Ok(command)) => {
                    if let Err(end) = handle(inner, &session, &storing, command).await {
                        break end.to_string();
                    }
                }
            },
            _ = enquire.tick() => enquire_link(&session, inner.tuning.enquire_link_timeout),
            _ = shutdown.cancelled(), if !unbinding => {
                unbinding = true;
                tokio::spawn(unbind(session.clone(), inner.tuning.clone()));
            }
            _ = session.closed.cancelled() => break session.reason(),
            // Another node may take the slot now: stop at once rather than exceed the limit.
            _ = slot.lost(), if !unbinding => {
                unbinding = true;
                inner.set_error("lost the bind slot (its database connection closed)".to_owned());
                // No grace for outstanding submits: the slot's next holder binds once its
                // settle time is over, and this bind must be gone by then.
                let hurry = SmppTuning {
                    shutdown_grace: Duration::ZERO,
                    ..inner.tuning.clone()
                };
                tokio::spawn(unbind(session.clone(), hurry));
            }
        }
    };
    // Unpublish first so new sends wait for the next bind instead of failing on this one.
    inner.current.send_if_modified(|current| {
        if current.as_ref().is_some_and(|s| Arc::ptr_eq(s, &session)) {
            *current = None;
            true
        } else {
            false
        }
    });
    session.close(&reason);
    if tokio::time::timeout(Duration::from_secs(2), writer)
        .await
        .is_err()
    {
        debug!("the writer did not stop in time");
    }
    reason
}

/// Writes queued PDUs, batching what is already waiting into one flush.
async fn write_loop(
    mut sink: SplitSink<Transport, Command>,
    mut rx: mpsc::Receiver<Command>,
    session: Arc<Session>,
) {
    loop {
        let first = tokio::select! {
            biased;
            command = rx.recv() => command,
            _ = session.closed.cancelled() => None,
        };
        let Some(first) = first else { break };
        let result = async {
            sink.feed(first).await?;
            let mut batch = 1;
            while batch < 256 {
                match rx.try_recv() {
                    Ok(more) => sink.feed(more).await?,
                    Err(_) => break,
                }
                batch += 1;
            }
            sink.flush().await
        }
        .await;
        if let Err(e) = result {
            session.close(&format!("cannot write to the SMSC: {e}"));
            return;
        }
    }
    // What was queued just before the end (an unbind_resp we owe) still goes out.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(command) = rx.try_recv() {
            sink.feed(command).await?;
        }
        sink.flush().await?;
        sink.close().await
    })
    .await;
}

/// Sends one `enquire_link` unless one is still unanswered; no answer in time closes the session.
fn enquire_link(session: &Arc<Session>, timeout: Duration) {
    if session.enquiring.swap(true, Ordering::AcqRel) {
        return;
    }
    let session = session.clone();
    tokio::spawn(async move {
        match session.request(Pdu::EnquireLink, timeout).await {
            Ok(reply) if reply.status != 0 => {
                warn!(
                    "enquire_link answered with {}",
                    status::describe(reply.status)
                );
            }
            Ok(_) | Err(RequestError::Closed(_)) => {}
            Err(RequestError::Timeout(wait)) => {
                session.close(&format!(
                    "no enquire_link_resp within {wait:?}: the link is dead"
                ));
            }
        }
        session.enquiring.store(false, Ordering::Release);
    });
}

/// Shutdown: stop submitting, give outstanding submits a grace period, `unbind`, close.
async fn unbind(session: Arc<Session>, tuning: SmppTuning) {
    session.draining.store(true, Ordering::Release);
    let deadline = tokio::time::Instant::now() + tuning.shutdown_grace;
    while session.outstanding() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    match session.request(Pdu::Unbind, tuning.unbind_timeout).await {
        Ok(reply) => info!("unbound (unbind_resp {})", status::describe(reply.status)),
        Err(e) => warn!("no unbind_resp: {e:?}"),
    }
    session.close("unbound on shutdown");
}

/// Handles one PDU from the SMSC. `Err` ends the session.
async fn handle(
    inner: &Arc<Inner>,
    session: &Arc<Session>,
    storing: &Arc<Semaphore>,
    command: Command,
) -> Result<(), SessionEnd> {
    let seq = command.sequence_number();
    let id = command.id();
    if id.is_response() {
        session.complete(
            seq,
            Reply {
                status: u32::from(command.status()),
                nack: id == CommandId::GenericNack,
                pdu: command.pdu().cloned(),
            },
        );
        return Ok(());
    }
    match (id, command.pdu()) {
        (CommandId::DeliverSm, Some(Pdu::DeliverSm(deliver))) => match deliver_sm(inner, deliver) {
            // A part of a longer text (buffered until the rest comes), or bytes that resending
            // would not make readable: nothing to store, answer at once.
            None => {
                session
                    .respond(Command::new(
                        CommandStatus::EsmeRok,
                        seq,
                        DeliverSmResp::default(),
                    ))
                    .await
            }
            // Answered once it is stored, without holding up the PDUs behind it; the permits
            // bound how many wait (the SMSC's own window normally bounds them first).
            Some((report, text)) => {
                let permit = storing
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| SessionEnd::Closing)?;
                let session = session.clone();
                let inner = inner.clone();
                tokio::spawn(async move {
                    let answer = match inner.reports.deliver(report.clone()).await {
                        Ok(()) => CommandStatus::EsmeRok,
                        Err(why) => {
                            warn!(carrier = %inner.name, "deliver_sm not stored ({why}); the SMSC will retry");
                            if let Some(text) = text {
                                inner.keep_unstored(text, report);
                            }
                            CommandStatus::EsmeRxTAppn
                        }
                    };
                    let _ = session
                        .respond(Command::new(answer, seq, DeliverSmResp::default()))
                        .await;
                    drop(permit);
                });
                Ok(())
            }
        },
        (CommandId::EnquireLink, _) => {
            session
                .respond(Command::new(
                    CommandStatus::EsmeRok,
                    seq,
                    Pdu::EnquireLinkResp,
                ))
                .await
        }
        (CommandId::Unbind, _) => {
            session
                .respond(Command::new(CommandStatus::EsmeRok, seq, Pdu::UnbindResp))
                .await?;
            Err(SessionEnd::UnboundBySmsc)
        }
        // alert_notification has no response (§4.12).
        (CommandId::AlertNotification, _) => Ok(()),
        (other, _) => {
            warn!(
                ?other,
                seq, "unsupported request from the SMSC; generic_nack"
            );
            session
                .respond(Command::new(
                    CommandStatus::EsmeRinvcmdid,
                    seq,
                    Pdu::GenericNack,
                ))
                .await
        }
    }
}

/// A receipt or a complete mobile-originated text to store, if this `deliver_sm` makes one
/// (with the text's key when it came in parts).
fn deliver_sm(inner: &Inner, deliver: &DeliverSm) -> Option<(CarrierReport, Option<TextKey>)> {
    let mut receipted_message_id = None;
    let mut message_state = None;
    let mut network_error_code = None;
    let mut message_payload = None;
    let (mut sar_ref, mut sar_total, mut sar_seq) = (None, None, None);
    for tlv in deliver.tlvs() {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(id)) => receipted_message_id = Some(id.as_str()),
            Some(TlvValue::MessageState(state)) => message_state = Some(u8::from(*state)),
            Some(TlvValue::NetworkErrorCode(code)) => {
                let [hi, lo] = code.error_code.to_be_bytes();
                network_error_code = Some([u8::from(code.network_type), hi, lo]);
            }
            Some(TlvValue::MessagePayload(payload)) => {
                message_payload = Some(payload.value.as_ref())
            }
            Some(TlvValue::SarMsgRefNum(n)) => sar_ref = Some(*n),
            Some(TlvValue::SarTotalSegments(n)) => sar_total = Some(*n),
            Some(TlvValue::SarSegmentSeqnum(n)) => sar_seq = Some(*n),
            _ => {}
        }
    }
    let esm_class = u8::from(deliver.esm_class);
    let short_message: &[u8] = deliver.short_message().as_ref();
    let fields = ReceiptFields {
        esm_class,
        short_message,
        receipted_message_id,
        message_state,
        network_error_code: network_error_code.as_ref().map(|c| &c[..]),
    };
    if fields.is_receipt() {
        match receipts::parse(&fields) {
            Ok(receipt) => inner.resolve_receipt(receipt).map(|report| (report, None)),
            Err(e) => {
                // Asking the SMSC to resend would bring the same bytes again.
                warn!(carrier = %inner.name, "unreadable delivery receipt ({e}): {:?}",
                    String::from_utf8_lossy(short_message));
                None
            }
        }
    } else {
        let fields = MoFields {
            source_addr_ton: u8::from(deliver.source_addr_ton),
            source_addr: deliver.source_addr.as_str(),
            dest_addr_ton: u8::from(deliver.dest_addr_ton),
            destination_addr: deliver.destination_addr.as_str(),
            esm_class,
            data_coding: u8::from(deliver.data_coding),
            short_message,
            message_payload,
            sar: match (sar_ref, sar_total, sar_seq) {
                (Some(r), Some(t), Some(s)) => Some((r, t, s)),
                _ => None,
            },
        };
        match mo::decode(&fields) {
            Ok(part) => inner.reassemble(part),
            Err(e) => {
                warn!(carrier = %inner.name, "unreadable mobile-originated deliver_sm: {e}");
                None
            }
        }
    }
}
