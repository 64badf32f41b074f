//! One bind to the SMSC, and the loop that keeps one up.
//!
//! A [`Session`] is one TCP connection bound as a transceiver (SMPP 3.4 §4.1.5). One task,
//! the link, owns the socket, both halves: it writes what callers queue and reads what the
//! SMSC sends. Requests we send are matched to their responses by `sequence_number` (§3.2,
//! 1 to 0x7FFFFFFF, wrapping) through the link's table of waiting callers.
//!
//! Why one task: at window 1 every `submit_sm` waits for the previous one's response, so the
//! time from a response to the next write is the link's speed. The link writes the next queued
//! submit in the same turn that read the response, with no task woken in between; the caller
//! learns its answer beside that, off the link's path. The link runs on a thread and runtime
//! of its own (`spawn_link` in the parent module), so that turn never waits behind the
//! gateway's HTTP work: the two together took window 1 from ~8,500 to ~10,000 texts/s and
//! window 32 from ~11,000 to ~12,000 on the smsbench run (docs/benchmarks.md). The one task
//! alone, on the shared runtime, gained nothing; and the thread needs it, since with a reader
//! and a writer task each response still waited for a caller's task on the shared runtime.
//!
//! Invariants:
//! - At most `window` `submit_sm` are outstanding (written, no response yet): the link takes
//!   a queued submit only while it has fewer outstanding (§2.9 "windowing"). A submit whose
//!   caller has gone is dropped unwritten.
//! - A request's wait for its response starts when it is written: time spent queued behind a
//!   full window is not counted against the SMSC. No answer within the wait answers the caller
//!   [`RequestError::Timeout`] and frees its place in the window.
//! - When the session ends, every caller still waiting (outstanding, or queued unwritten) gets
//!   [`RequestError::Closed`] at once: its message may or may not have reached the SMSC, and
//!   the carrier reports it retryable. A response that did arrive was handed to its caller
//!   before the table was dropped, so an acknowledged submit is never also failed.
//! - What the link writes is flushed once nothing else is ready (so a burst of responses
//!   goes out in one write), and at the latest every `MAX_UNFLUSHED` PDUs. A flush the SMSC
//!   does not read waits without stopping the reading; a write still blocked after the
//!   response timeout (the SMSC left our buffers full) ends the session.
//! - Every `deliver_sm` is answered with a `deliver_sm_resp` (§4.6.2) — one that completes a
//!   receipt or a text only after the gateway has stored it (ESME_RX_T_APPN if it could not,
//!   so the SMSC resends it); every `enquire_link`
//!   with an `enquire_link_resp` (§4.11.2), an `unbind` with `unbind_resp` (§4.2.2); other
//!   requests get `generic_nack` with ESME_RINVCMDID (§4.3).
//! - We send `enquire_link` every `enquire_link_secs`; no answer within the tuning's
//!   `enquire_link_timeout` means the link is dead: the session closes and a new one is bound.
//! - A PDU the codec cannot read closes the session (logged); nothing panics on any bytes.
//! - On shutdown: no new submits (queued ones are answered `Closed` unwritten), outstanding
//!   ones get up to `shutdown_grace` to be answered, then `unbind` (§4.2), then the socket
//!   closes.
//!
//! [`run`] keeps a session up: connect, `bind_transceiver` (§4.1.5; a refusal such as
//! ESME_RINVPASWD is logged with its code and retried), run, and after any end reconnect with
//! exponential back-off and jitter (so many gateways do not rebind in lock-step).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use rand::Rng;
use rusmpp::pdus::{DeliverSm, DeliverSmResp, SubmitSm};
use rusmpp::tlvs::TlvValue;
use rusmpp::tokio_codec::{CommandCodec, EncodeError};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;
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
/// PDUs the link writes before it flushes even though more work is ready.
const MAX_UNFLUSHED: usize = 64;

type Transport = Framed<TcpStream, CommandCodec>;
type Writer = SplitSink<Transport, Command>;

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

type Answer = oneshot::Sender<Result<Reply, RequestError>>;

/// A request of ours, queued for the link.
#[derive(Debug)]
struct Request {
    pdu: Pdu,
    /// How long the SMSC has to answer, from the write.
    wait: Duration,
    answer: Answer,
}

/// What the link writes besides submits: requests outside the window and our responses.
#[derive(Debug)]
enum Outgoing {
    Request(Request),
    Response(Command),
}

/// One bound connection, as its callers see it.
#[derive(Debug)]
pub(crate) struct Session {
    /// `submit_sm`, taken by the link only while the window has room.
    submits: mpsc::Sender<Request>,
    /// Everything else, taken at once. Unbounded so that a task answering a stored
    /// `deliver_sm` never waits on the link; the storing permits bound what it holds.
    outbox: mpsc::UnboundedSender<Outgoing>,
    closed: CancellationToken,
    close_reason: Mutex<Option<String>>,
    draining: AtomicBool,
    enquiring: AtomicBool,
    /// Requests written and not yet answered (kept by the link).
    outstanding: AtomicUsize,
    response_timeout: Duration,
}

/// The link's ends of a session's queues.
struct Queues {
    submits: mpsc::Receiver<Request>,
    outbox: mpsc::UnboundedReceiver<Outgoing>,
}

impl Session {
    fn new(window: usize, response_timeout: Duration) -> (Self, Queues) {
        // Queued submits beyond the window wait unwritten; room for one more window keeps
        // the next submit at hand when a response frees a place.
        let (submits, submits_rx) = mpsc::channel(window.max(1).saturating_mul(2).max(16));
        let (outbox, outbox_rx) = mpsc::unbounded_channel();
        let session = Session {
            submits,
            outbox,
            closed: CancellationToken::new(),
            close_reason: Mutex::new(None),
            draining: AtomicBool::new(false),
            enquiring: AtomicBool::new(false),
            outstanding: AtomicUsize::new(0),
            response_timeout,
        };
        let queues = Queues {
            submits: submits_rx,
            outbox: outbox_rx,
        };
        (session, queues)
    }

    /// Ends the session: later requests fail, and once the link has stopped every waiting
    /// caller gets `Closed(reason)`.
    pub(crate) fn close(&self, reason: &str) {
        {
            let mut r = lock(&self.close_reason);
            if r.is_none() {
                *r = Some(reason.to_owned());
            }
        }
        self.closed.cancel();
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
        self.outstanding.load(Ordering::Acquire)
    }

    /// Submits within the window: queued until the window has room, then written.
    pub(crate) async fn submit(&self, sm: SubmitSm) -> Result<Reply, RequestError> {
        if self.draining.load(Ordering::Acquire) {
            return Err(RequestError::Closed(
                "the carrier is shutting down".to_owned(),
            ));
        }
        if self.is_closed() {
            return Err(RequestError::Closed(self.reason()));
        }
        let (answer, answered) = oneshot::channel();
        let request = Request {
            pdu: Pdu::SubmitSm(sm),
            wait: self.response_timeout,
            answer,
        };
        let queued = tokio::select! {
            queued = self.submits.send(request) => queued.is_ok(),
            _ = self.closed.cancelled() => false,
        };
        if !queued {
            return Err(RequestError::Closed(self.reason()));
        }
        self.answer(answered).await
    }

    /// Writes a request outside the window and waits up to `wait` for its response.
    pub(crate) async fn request(&self, pdu: Pdu, wait: Duration) -> Result<Reply, RequestError> {
        if self.is_closed() {
            return Err(RequestError::Closed(self.reason()));
        }
        let (answer, answered) = oneshot::channel();
        let request = Request { pdu, wait, answer };
        if self.outbox.send(Outgoing::Request(request)).is_err() {
            return Err(RequestError::Closed(self.reason()));
        }
        self.answer(answered).await
    }

    /// The link answers every request it took; one it dropped unanswered ended with the session.
    async fn answer(
        &self,
        answered: oneshot::Receiver<Result<Reply, RequestError>>,
    ) -> Result<Reply, RequestError> {
        answered
            .await
            .unwrap_or_else(|_| Err(RequestError::Closed(self.reason())))
    }

    /// Queues a response to the SMSC from outside the link (a `deliver_sm` stored later).
    fn respond(&self, command: Command) {
        // The link has stopped: the SMSC gets no answer and resends, as after any drop.
        let _ = self.outbox.send(Outgoing::Response(command));
    }
}

/// A request written and not yet answered.
#[derive(Debug)]
struct Waiting {
    answer: Answer,
    /// When the SMSC's time to answer runs out.
    deadline: Instant,
    wait: Duration,
    /// A `submit_sm`, holding a place in the window.
    submit: bool,
}

/// The link's own state: what it wrote and waits for, and what it has not flushed.
struct Link {
    session: Arc<Session>,
    pending: HashMap<u32, Waiting>,
    window: usize,
    /// `submit_sm` among `pending`.
    submits_out: usize,
    seq: u32,
    unflushed: usize,
    write_wait: Duration,
}

impl Link {
    fn new(session: Arc<Session>, window: usize, write_wait: Duration) -> Self {
        Link {
            session,
            pending: HashMap::new(),
            window: window.max(1),
            submits_out: 0,
            seq: BIND_SEQUENCE,
            unflushed: 0,
            write_wait,
        }
    }

    fn has_room(&self) -> bool {
        self.submits_out < self.window
    }

    /// Writes a submit, or answers it `Closed` unwritten once the session is draining.
    async fn submit(&mut self, writer: &mut Writer, request: Request) -> Result<(), SessionEnd> {
        if self.session.draining.load(Ordering::Acquire) {
            let _ = request.answer.send(Err(RequestError::Closed(
                "the carrier is shutting down".to_owned(),
            )));
            return Ok(());
        }
        self.write_request(writer, request, true).await
    }

    /// Writes the submits already queued while the window has room: after a response, the
    /// next submit goes out in the same turn.
    async fn fill_window(
        &mut self,
        writer: &mut Writer,
        submits: &mut mpsc::Receiver<Request>,
    ) -> Result<(), SessionEnd> {
        while self.has_room() {
            let Ok(request) = submits.try_recv() else {
                break;
            };
            self.submit(writer, request).await?;
        }
        Ok(())
    }

    /// 1 to 0x7FFFFFFF, wrapping (SMPP 3.4 §3.2: the top bit is never set in a request).
    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq % 0x7FFF_FFFF + 1;
        self.seq
    }

    fn counted(&mut self) {
        self.session
            .outstanding
            .store(self.pending.len(), Ordering::Release);
    }

    /// Writes a request and remembers its caller. A caller that has gone is not written for.
    async fn write_request(
        &mut self,
        writer: &mut Writer,
        request: Request,
        submit: bool,
    ) -> Result<(), SessionEnd> {
        if request.answer.is_closed() {
            return Ok(());
        }
        let seq = self.next_seq();
        self.pending.insert(
            seq,
            Waiting {
                answer: request.answer,
                deadline: Instant::now() + request.wait,
                wait: request.wait,
                submit,
            },
        );
        if submit {
            self.submits_out = self.submits_out.saturating_add(1);
        }
        self.counted();
        self.write(
            writer,
            Command::new(CommandStatus::EsmeRok, seq, request.pdu),
        )
        .await
    }

    /// Writes one PDU. A write still blocked after `write_wait` (the SMSC stopped reading,
    /// and the link's buffers are full) ends the session: the link cannot read or time out
    /// requests while it waits here.
    async fn write(&mut self, writer: &mut Writer, command: Command) -> Result<(), SessionEnd> {
        let wait = self.write_wait;
        let written = async {
            writer.feed(command).await?;
            self.unflushed = self.unflushed.saturating_add(1);
            if self.unflushed >= MAX_UNFLUSHED {
                writer.flush().await?;
                self.unflushed = 0;
            }
            Ok(())
        };
        tokio::time::timeout(wait, written)
            .await
            .map_err(|_| SessionEnd::Stalled(wait))?
            .map_err(SessionEnd::Write)
    }

    fn flushed(&mut self, result: Result<(), EncodeError>) -> Result<(), SessionEnd> {
        result.map_err(SessionEnd::Write)?;
        self.unflushed = 0;
        Ok(())
    }

    fn take(&mut self, seq: u32) -> Option<Waiting> {
        let waiting = self.pending.remove(&seq)?;
        if waiting.submit {
            self.submits_out = self.submits_out.saturating_sub(1);
        }
        self.counted();
        Some(waiting)
    }

    /// Hands a response to the caller waiting for `seq` (if any: it may have timed out).
    fn complete(&mut self, seq: u32, reply: Reply) {
        match self.take(seq) {
            Some(waiting) => {
                let _ = waiting.answer.send(Ok(reply));
            }
            None => debug!(
                seq,
                "a response nobody waits for (timed out, or never asked)"
            ),
        }
    }

    /// Answers `Timeout` to every request whose time to be answered has run out.
    fn expire(&mut self, now: Instant) {
        let late: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, waiting)| waiting.deadline <= now)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in late {
            if let Some(waiting) = self.take(seq) {
                let _ = waiting
                    .answer
                    .send(Err(RequestError::Timeout(waiting.wait)));
            }
        }
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
    #[error("cannot write to the SMSC: {0}")]
    Write(EncodeError),
    #[error("the SMSC has read nothing we wrote for {0:?}")]
    Stalled(Duration),
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
    let window = usize::try_from(inner.config.window).unwrap_or(1);
    let (session, mut queues) = Session::new(window, inner.tuning.response_timeout);
    let session = Arc::new(session);
    let (mut writer, mut reader) = transport.split();
    let mut link = Link::new(session.clone(), window, inner.tuning.response_timeout);
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
    let mut enquire = tokio::time::interval_at(Instant::now() + period, period);
    enquire.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Late answers are found by a sweep: a timer per request would cost more than the
    // precision is worth.
    let sweep_period = (inner
        .tuning
        .response_timeout
        .min(inner.tuning.enquire_link_timeout)
        / 8)
    .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut sweep = tokio::time::interval(sweep_period);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Waiting on a cancellation registers with its token: these wait across turns instead
    // of registering anew in each.
    let shutting_down = shutdown.cancelled();
    let closed = session.closed.cancelled();
    let slot_lost = slot.lost();
    tokio::pin!(shutting_down, closed, slot_lost);
    let mut unbinding = false;
    let reason = loop {
        // Reading first, then what callers queued, then the flush: everything ready is
        // handled before the write goes out, so a turn's PDUs share one write.
        let ended: Result<(), SessionEnd> = tokio::select! {
            biased;
            frame = reader.next() => match frame {
                None => break "the SMSC closed the connection".to_owned(),
                Some(Err(e)) => break format!("unreadable PDU from the SMSC: {e}"),
                Some(Ok(command)) => handle(inner, &mut link, &mut writer, &storing, command).await,
            },
            Some(outgoing) = queues.outbox.recv() => match outgoing {
                Outgoing::Request(request) => link.write_request(&mut writer, request, false).await,
                Outgoing::Response(command) => link.write(&mut writer, command).await,
            },
            Some(request) = queues.submits.recv(), if link.has_room() => {
                link.submit(&mut writer, request).await
            }
            flushed = writer.flush(), if link.unflushed > 0 => {
                link.flushed(flushed)
            }
            _ = sweep.tick(), if !link.pending.is_empty() => {
                link.expire(Instant::now());
                Ok(())
            }
            _ = enquire.tick() => {
                enquire_link(&session, inner.tuning.enquire_link_timeout);
                Ok(())
            }
            _ = &mut shutting_down, if !unbinding => {
                unbinding = true;
                tokio::spawn(unbind(session.clone(), inner.tuning.clone()));
                Ok(())
            }
            _ = &mut closed => break session.reason(),
            // Another node may take the slot now: stop at once rather than exceed the limit.
            _ = &mut slot_lost, if !unbinding => {
                unbinding = true;
                inner.set_error("lost the bind slot (its database connection closed)".to_owned());
                // No grace for outstanding submits: the slot's next holder binds once its
                // settle time is over, and this bind must be gone by then.
                let hurry = SmppTuning {
                    shutdown_grace: Duration::ZERO,
                    ..inner.tuning.clone()
                };
                tokio::spawn(unbind(session.clone(), hurry));
                Ok(())
            }
        };
        let ended = match ended {
            Ok(()) => link.fill_window(&mut writer, &mut queues.submits).await,
            Err(end) => Err(end),
        };
        if let Err(end) = ended {
            break end.to_string();
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
    // Every caller still waiting learns the reason now: the table and the queues go.
    drop(link);
    queues.submits.close();
    while queues.submits.try_recv().is_ok() {}
    // Responses we owe (an unbind_resp, a stored deliver_sm's) still go out.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        queues.outbox.close();
        while let Ok(outgoing) = queues.outbox.try_recv() {
            if let Outgoing::Response(command) = outgoing {
                writer.feed(command).await?;
            }
        }
        writer.flush().await?;
        writer.close().await
    })
    .await;
    reason
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
    let deadline = Instant::now() + tuning.shutdown_grace;
    while session.outstanding() > 0 && Instant::now() < deadline {
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
    link: &mut Link,
    writer: &mut Writer,
    storing: &Arc<Semaphore>,
    command: Command,
) -> Result<(), SessionEnd> {
    let seq = command.sequence_number();
    let id = command.id();
    if id.is_response() {
        link.complete(
            seq,
            Reply {
                status: u32::from(command.status()),
                nack: id == CommandId::GenericNack,
                pdu: command.pdu().cloned(),
            },
        );
        return Ok(());
    }
    let answer = |status, pdu: Pdu| Command::new(status, seq, pdu);
    match (id, command.pdu()) {
        (CommandId::DeliverSm, Some(Pdu::DeliverSm(deliver))) => match deliver_sm(inner, deliver) {
            // A part of a longer text (buffered until the rest comes), or bytes that resending
            // would not make readable: nothing to store, answer at once.
            None => {
                let resp = answer(CommandStatus::EsmeRok, DeliverSmResp::default().into());
                link.write(writer, resp).await
            }
            // Answered once it is stored, without holding up the PDUs behind it; the permits
            // bound how many wait (the SMSC's own window normally bounds them first).
            Some((report, text)) => {
                let permit = storing
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| SessionEnd::Closing)?;
                let session = link.session.clone();
                let inner = inner.clone();
                tokio::spawn(async move {
                    let status = match inner.reports.deliver(report.clone()).await {
                        Ok(()) => CommandStatus::EsmeRok,
                        Err(why) => {
                            warn!(carrier = %inner.name, "deliver_sm not stored ({why}); the SMSC will retry");
                            if let Some(text) = text {
                                inner.keep_unstored(text, report);
                            }
                            CommandStatus::EsmeRxTAppn
                        }
                    };
                    session.respond(Command::new(status, seq, DeliverSmResp::default()));
                    drop(permit);
                });
                Ok(())
            }
        },
        (CommandId::EnquireLink, _) => {
            let resp = answer(CommandStatus::EsmeRok, Pdu::EnquireLinkResp);
            link.write(writer, resp).await
        }
        (CommandId::Unbind, _) => {
            let resp = answer(CommandStatus::EsmeRok, Pdu::UnbindResp);
            link.write(writer, resp).await?;
            Err(SessionEnd::UnboundBySmsc)
        }
        // alert_notification has no response (§4.12).
        (CommandId::AlertNotification, _) => Ok(()),
        (other, _) => {
            warn!(
                ?other,
                seq, "unsupported request from the SMSC; generic_nack"
            );
            let resp = answer(CommandStatus::EsmeRinvcmdid, Pdu::GenericNack);
            link.write(writer, resp).await
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
