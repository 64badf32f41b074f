//! An AT-command modem on a serial port, in SMS PDU mode.
//!
//! Standards: 3GPP TS 27.005 (SMS commands: `+CMGF`, `+CNMI`, `+CMGS`, `+CMGR`, `+CMGD`,
//! `+CMGL`, `+CMTI`, `+CDS`, `+CMS ERROR`), 3GPP TS 27.007 (`+CMEE`, `+CPIN`, `+CREG`,
//! `+CGREG`, `+CEREG`, `+COPS`, `+CME ERROR`) and ITU-T V.250 (command line and result codes).
//! The PDUs themselves (SMS-SUBMIT, SMS-DELIVER, SMS-STATUS-REPORT, concatenation) are built and
//! read by `airtext-sms` (3GPP TS 23.040), the same code the gateway uses.
//!
//! What happens:
//! - **Start** ([`AtModem::open`]): `AT` until the modem answers, `ATE0`, `AT+CMEE=2`,
//!   `AT+CPIN?` (on `SIM PIN`, `AT+CPIN="…"` with the configured PIN, or the clear error
//!   [`ModemError::SimPinRequired`]), `AT+CMGF=0`, `AT+CNMI=2,1,0,1,0` (new messages stored
//!   and announced with `+CMTI`, status reports routed with `+CDS`; lesser routes where the
//!   modem refuses), the registration (`AT+CREG?`, `AT+CGREG?`, `AT+CEREG?`, `AT+COPS?`) and
//!   `AT+CMGL=4` to pick up messages that arrived while nobody listened.
//! - **Send** ([`AtModem::send_text`]): one `AT+CMGS=<tpdu length>`, `> `, `<hex><Ctrl-Z>`,
//!   `+CMGS: <mr>`, `OK` per segment; `+CMS ERROR`s become [`ModemError::Cms`] with the
//!   reason in words and [`ModemError::is_retryable`] telling a busy network from a refusal.
//! - **Receive**: `+CMTI: <mem>,<index>` → `AT+CMGR=<index>` → decode → `AT+CMGD=<index>`;
//!   concatenated parts are joined by `airtext_sms::Reassembler` and each whole text is sent on
//!   the channel of [`Cellular::take_incoming`]. Status reports (`+CDS`, or `+CDSI` on
//!   modems that only store them) go to [`AtModem::take_status_reports`] and are matched by
//!   TP-MR to the text they are about: once every segment of a text is delivered (or one
//!   failed), its [`DeliveryReport`] goes to [`Cellular::take_delivery_reports`]. A part is deleted from the SIM once held in memory; a
//!   message whose other parts never come is handed over with what arrived after
//!   [`AtModemConfig::reassembly_timeout`].
//! - **Status**: registration is polled every [`AtModemConfig::status_interval`] and whenever
//!   the modem volunteers a registration change; [`Cellular::status`] returns the last value
//!   without touching the port. Stat 5 (roaming) sets `roaming`, which the path policy uses.
//!
//! One task owns the port ([`session`]); every command has a timeout; unsolicited codes that
//! arrive in the middle of another command's answer are kept and handled after it; garbage,
//! overlong lines and unknown codes from the port are skipped, never a panic.

pub mod codec;
pub mod response;
mod session;

use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch, Mutex as AsyncMutex};

use airtext_sms::tpdu::{EncodeError, StatusClass, Validity};

pub use response::{ErrorCode, Registration};

use super::{
    Cellular, CellularError, CellularReceipt, CellularStatus, DeliveryReport, IncomingSms,
    SentTextId,
};

/// How to reach and drive the modem.
#[derive(Debug, Clone)]
pub struct AtModemConfig {
    /// The serial device, e.g. `/dev/ttyUSB2`.
    pub path: String,
    /// Line speed; USB modems ignore it.
    pub baud_rate: u32,
    /// The SIM PIN, sent when the SIM asks for it.
    pub pin: Option<String>,
    /// How long an ordinary command may take.
    pub command_timeout: Duration,
    /// How long the network may take to accept one segment after `AT+CMGS` (TS 27.005 allows
    /// minutes on a bad network).
    pub send_timeout: Duration,
    /// How often the registration is polled.
    pub status_interval: Duration,
    /// How long parts of a concatenated message are held waiting for the rest.
    pub reassembly_timeout: Duration,
    /// Ask for delivery receipts (TP-SRR, on by default): each segment's arrives on
    /// [`AtModem::take_status_reports`], each text's on [`Cellular::take_delivery_reports`].
    pub status_report_request: bool,
    /// TP-VP of sent messages.
    pub validity: Option<Validity>,
    /// The concatenation reference of the first multi-part message (then +1 per message);
    /// `None` picks a random one so references differ across restarts.
    pub first_concat_reference: Option<u8>,
}

impl AtModemConfig {
    /// Defaults for the modem at `path`.
    pub fn new(path: impl Into<String>) -> Self {
        AtModemConfig {
            path: path.into(),
            baud_rate: 115_200,
            pin: None,
            command_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(120),
            status_interval: Duration::from_secs(30),
            reassembly_timeout: Duration::from_secs(24 * 60 * 60),
            status_report_request: true,
            validity: None,
            first_concat_reference: None,
        }
    }
}

/// Why the modem could not do something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModemError {
    /// The serial port could not be opened.
    #[error("cannot open the modem at {path}: {reason}")]
    Open {
        /// The device path.
        path: String,
        /// What the OS said.
        reason: String,
    },
    /// Reading or writing the port failed, or the port closed.
    #[error("the modem's serial line failed: {0}")]
    Io(String),
    /// The modem task has stopped (its port failed earlier).
    #[error("the modem is no longer running")]
    Stopped,
    /// No final result within the time allowed.
    #[error("the modem did not answer {command} within {after:?}")]
    Timeout {
        /// The command, e.g. `AT+CMGS=22`.
        command: String,
        /// The time allowed.
        after: Duration,
    },
    /// A plain `ERROR`.
    #[error("the modem answered ERROR to {command}")]
    CommandFailed {
        /// The command.
        command: String,
    },
    /// `+CME ERROR` (3GPP TS 27.007 §9.2).
    #[error("the modem refused {command}: {error}")]
    Cme {
        /// The command.
        command: String,
        /// The code and its meaning.
        error: ErrorCode,
    },
    /// `+CMS ERROR` (3GPP TS 27.005 §3.2.5): the network, SIM or modem refused an SMS command.
    #[error("{error} (+CMS ERROR on {command})")]
    Cms {
        /// The command.
        command: String,
        /// The code and its meaning.
        error: ErrorCode,
    },
    /// The SIM asks for its PIN and none is configured.
    #[error("the SIM needs its PIN: set the modem's SIM PIN in the settings")]
    SimPinRequired,
    /// The SIM refused the configured PIN.
    #[error("the SIM refused the configured PIN ({0}); check it before trying again, the SIM blocks after 3 wrong PINs")]
    WrongPin(String),
    /// The SIM is blocked.
    #[error("the SIM is blocked and needs its PUK: unlock it in a phone")]
    SimPukRequired,
    /// No SIM, or it asks for something else (`PH-SIM PIN`, …).
    #[error("the SIM is not ready: {0}")]
    SimNotReady(String),
    /// The text cannot be made into SMS PDUs.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Some segments of a multi-part text went out, then one failed.
    #[error("{sent} of {total} parts were sent, then: {error}")]
    PartiallySent {
        /// Segments accepted by the network.
        sent: usize,
        /// Segments the text has.
        total: usize,
        /// Why the next one failed.
        error: Box<ModemError>,
    },
    /// The modem answered something this backend cannot read.
    #[error("the modem gave an unexpected answer to {command}: {detail}")]
    Protocol {
        /// The command.
        command: String,
        /// What was wrong.
        detail: String,
    },
}

impl ModemError {
    /// Whether the same request may succeed later without anyone changing anything (a busy or
    /// unreachable network, a busy SIM, a modem that did not answer in time).
    pub fn is_retryable(&self) -> bool {
        match self {
            ModemError::Io(_) | ModemError::Timeout { .. } | ModemError::Stopped => true,
            ModemError::Cms { error, .. } => error.code.is_some_and(response::cms_retryable),
            ModemError::Cme { error, .. } => error.code.is_some_and(response::cme_retryable),
            ModemError::PartiallySent { error, .. } => error.is_retryable(),
            ModemError::Open { .. }
            | ModemError::CommandFailed { .. }
            | ModemError::SimPinRequired
            | ModemError::WrongPin(_)
            | ModemError::SimPukRequired
            | ModemError::SimNotReady(_)
            | ModemError::Encode(_)
            | ModemError::Protocol { .. } => false,
        }
    }
}

impl From<ModemError> for CellularError {
    fn from(e: ModemError) -> Self {
        let message = e.to_string();
        match e {
            ModemError::Cms { error, .. } => CellularError::Rejected {
                code: error.code,
                message,
            },
            ModemError::PartiallySent { ref error, .. } => match error.as_ref() {
                ModemError::Cms { error, .. } => CellularError::Rejected {
                    code: error.code,
                    message,
                },
                _ => CellularError::Io(message),
            },
            ModemError::CommandFailed { .. } => CellularError::Rejected {
                code: None,
                message,
            },
            ModemError::Encode(EncodeError::InvalidDestination(to)) => {
                CellularError::InvalidRecipient(to)
            }
            ModemError::Encode(_) => CellularError::Rejected {
                code: None,
                message,
            },
            ModemError::SimPinRequired
            | ModemError::WrongPin(_)
            | ModemError::SimPukRequired
            | ModemError::SimNotReady(_)
            | ModemError::Cme { .. } => CellularError::Unavailable(message),
            ModemError::Open { .. }
            | ModemError::Io(_)
            | ModemError::Stopped
            | ModemError::Timeout { .. }
            | ModemError::Protocol { .. } => CellularError::Io(message),
        }
    }
}

/// What the modem last said about the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModemState {
    /// The port still works.
    pub alive: bool,
    /// The best of circuit-switched, GPRS and EPS registration.
    pub registration: Registration,
    /// The operator name from `AT+COPS?`.
    pub operator: Option<String>,
}

/// A delivery receipt (SMS-STATUS-REPORT, 3GPP TS 23.040 §9.2.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReportEvent {
    /// The TP-MR of the message it is about (as `+CMGS: <mr>` gave it).
    pub message_reference: u8,
    /// The recipient.
    pub recipient: String,
    /// TP-ST.
    pub status: u8,
    /// What TP-ST means.
    pub class: StatusClass,
}

/// What a send job answers: each segment's TP-MR, and the text's id in delivery reports.
type SentText = (Vec<u8>, Option<SentTextId>);

enum Job {
    Send {
        to: String,
        body: String,
        reply: oneshot::Sender<Result<SentText, ModemError>>,
    },
    Refresh {
        reply: oneshot::Sender<Result<ModemState, ModemError>>,
    },
}

/// An AT modem: a handle to the task that owns the serial port. Dropping every handle stops
/// the task and closes the port.
#[derive(Debug)]
pub struct AtModem {
    name: String,
    jobs: mpsc::Sender<Job>,
    state: watch::Receiver<ModemState>,
    incoming: std::sync::Mutex<Option<mpsc::Receiver<IncomingSms>>>,
    reports: std::sync::Mutex<Option<mpsc::Receiver<StatusReportEvent>>>,
    deliveries: std::sync::Mutex<Option<mpsc::Receiver<DeliveryReport>>>,
    /// Serialises sends so the segments of two texts never interleave in the job queue order.
    send_lock: AsyncMutex<()>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Send { to, .. } => write!(f, "Send to {to}"),
            Job::Refresh { .. } => f.write_str("Refresh"),
        }
    }
}

impl AtModem {
    /// Opens the serial port of `config.path` and brings the modem up (see the module docs).
    /// Fails when the port cannot be opened, the modem does not answer, or the SIM is locked;
    /// succeeds without network registration ([`Cellular::status`] then says unavailable).
    pub async fn open(config: AtModemConfig) -> Result<AtModem, ModemError> {
        let port = open_serial(&config)?;
        let name = format!("AT modem on {}", config.path);
        Self::start(port, name, config).await
    }

    /// Like [`AtModem::open`] over an already open byte stream (a serial port opened another
    /// way, a TCP bridge to a modem, a test double).
    pub async fn start<P>(
        port: P,
        name: String,
        config: AtModemConfig,
    ) -> Result<AtModem, ModemError>
    where
        P: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (jobs_tx, jobs_rx) = mpsc::channel(16);
        let (incoming_tx, incoming_rx) = mpsc::channel(64);
        let (reports_tx, reports_rx) = mpsc::channel(64);
        let (deliveries_tx, deliveries_rx) = mpsc::channel(256);
        let (state_tx, state_rx) = watch::channel(ModemState {
            alive: true,
            registration: Registration::Unknown,
            operator: None,
        });
        let mut session = session::Session::new(
            port,
            config,
            session::Outputs {
                incoming: incoming_tx,
                reports: reports_tx,
                deliveries: deliveries_tx,
                state: state_tx,
            },
        );
        session.initialise().await?;
        tokio::spawn(session.run(jobs_rx));
        Ok(AtModem {
            name,
            jobs: jobs_tx,
            state: state_rx,
            incoming: std::sync::Mutex::new(Some(incoming_rx)),
            reports: std::sync::Mutex::new(Some(reports_rx)),
            deliveries: std::sync::Mutex::new(Some(deliveries_rx)),
            send_lock: AsyncMutex::new(()),
        })
    }

    /// Sends `body` to `to` (`+digits` or `digits`), one `AT+CMGS` per segment; returns the
    /// TP-MR the network gave each segment.
    pub async fn send_text(&self, to: &str, body: &str) -> Result<Vec<u8>, ModemError> {
        self.send_tracked(to, body)
            .await
            .map(|(references, _)| references)
    }

    /// [`AtModem::send_text`], with the text's id in delivery reports when they were asked
    /// for.
    async fn send_tracked(&self, to: &str, body: &str) -> Result<SentText, ModemError> {
        let _one_at_a_time = self.send_lock.lock().await;
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Send {
                to: to.to_owned(),
                body: body.to_owned(),
                reply,
            })
            .await
            .map_err(|_| ModemError::Stopped)?;
        answer.await.map_err(|_| ModemError::Stopped)?
    }

    /// Asks the modem for its registration now (rather than the last polled value).
    pub async fn refresh(&self) -> Result<ModemState, ModemError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Refresh { reply })
            .await
            .map_err(|_| ModemError::Stopped)?;
        answer.await.map_err(|_| ModemError::Stopped)?
    }

    /// The last known state, without touching the port.
    pub fn state(&self) -> ModemState {
        self.state.borrow().clone()
    }

    /// Delivery receipts for texts sent with [`AtModemConfig::status_report_request`]; handed
    /// out once.
    pub fn take_status_reports(&self) -> Option<mpsc::Receiver<StatusReportEvent>> {
        take_once(&self.reports)
    }
}

fn take_once<T>(slot: &std::sync::Mutex<Option<T>>) -> Option<T> {
    match slot.lock() {
        Ok(mut guard) => guard.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    }
}

fn open_serial(config: &AtModemConfig) -> Result<tokio_serial::SerialStream, ModemError> {
    use tokio_serial::SerialPortBuilderExt;
    tokio_serial::new(&config.path, config.baud_rate)
        .data_bits(tokio_serial::DataBits::Eight)
        .parity(tokio_serial::Parity::None)
        .stop_bits(tokio_serial::StopBits::One)
        .flow_control(tokio_serial::FlowControl::None)
        .open_native_async()
        .map_err(|e| ModemError::Open {
            path: config.path.clone(),
            reason: e.to_string(),
        })
}

#[async_trait]
impl Cellular for AtModem {
    fn status(&self) -> CellularStatus {
        let s = self.state();
        let name = match &s.operator {
            Some(op) => format!("{} ({op})", self.name),
            None => self.name.clone(),
        };
        CellularStatus {
            available: s.alive && s.registration.is_registered(),
            roaming: s.registration == Registration::Roaming,
            name,
        }
    }

    async fn send(&self, to: &str, body: &str) -> Result<CellularReceipt, CellularError> {
        let (references, text) = self.send_tracked(to, body).await?;
        Ok(CellularReceipt {
            segments: u32::try_from(references.len()).unwrap_or(u32::MAX),
            references,
            text,
        })
    }

    fn take_incoming(&self) -> Option<mpsc::Receiver<IncomingSms>> {
        take_once(&self.incoming)
    }

    fn take_delivery_reports(&self) -> Option<mpsc::Receiver<DeliveryReport>> {
        take_once(&self.deliveries)
    }
}
