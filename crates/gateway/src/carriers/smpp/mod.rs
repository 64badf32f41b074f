//! The SMPP carrier: this gateway as an ESME bound to a carrier's SMSC over SMPP 3.4.
//!
//! One transceiver bind (SMPP 3.4 §2.2, §4.1.5) carries both directions: `submit_sm` (§4.4)
//! for our texts, `deliver_sm` (§4.6) for receipts and for texts from phones. The session
//! machinery (windowing, keep-alive, reconnect, unbind) is in `session`, run on a thread of
//! its own; receipts are read by [`receipts`], mobile-originated texts by [`mo`]; what a
//! `command_status` means for a message is in [`status`].
//!
//! Sending ([`Carrier::send`]):
//! - The body is encoded and cut by airtext-sms: `data_coding` 0 carries GSM 03.38 as unpacked
//!   septets (one per octet, escapes as `ESC` pairs), 8 carries UCS-2/UTF-16BE (§5.2.19).
//! - A text longer than one SMS goes as UDH-concatenated parts: `esm_class` 0x40 (UDHI,
//!   §5.2.12) and `05 00 03 ref total seq` at the head of each `short_message`, one 8-bit
//!   reference per message, taken from a rolling counter. With `use_message_payload` it goes
//!   whole in the `message_payload` TLV (§5.3.2.32) instead and the SMSC cuts it.
//! - Addresses: E.164 `+digits` go as TON 1 / NPI 1 without the `+` (§5.2.5–6); a short code
//!   (≤ 8 digits) as TON 3 / NPI 0; other digit strings as TON 0 / NPI 1; an alphanumeric
//!   sender (≤ 11 characters) as TON 5 / NPI 0.
//! - `registered_delivery` = 1 (SMSC receipt on final outcome, §5.2.17) when
//!   `delivery_receipts` is on.
//! - The answer is the SMSC `message_id` of the first part. Every part takes a window permit
//!   and a slot of the `max_per_second` pace (a GCRA token bucket: SMSCs count `submit_sm`,
//!   so the cap is on PDUs, not texts). A part refused permanently makes the whole message
//!   permanent; otherwise any retryable failure (throttling, queue full, system error, no
//!   response in time, a dropped connection) makes it retryable and the gateway's queue sends
//!   the whole message again; a part the SMSC had acknowledged may then go twice, but under a
//!   new concatenation reference, so a phone never mixes parts of the two attempts.
//! - After ESME_RTHROTTLED or ESME_RMSGQFUL every new submit waits `throttle_pause`: the SMSC
//!   asked us to slow down, and the rest of the window would only earn more refusals.
//! - A submit the SMSC acknowledged returned `Ok` before any drop, and the gateway never resends
//!   a message it got an id for; one outstanding when the connection dropped returns
//!   `Retryable`. So, across a reconnect, a message is accepted once — except when the SMSC
//!   committed it and the connection died before its `submit_sm_resp` came back, which SMPP
//!   cannot tell apart from a submit that never arrived (at-least-once).
//!
//! Receipts of multi-part messages are joined by [`receipts::PartTracker`] (part id → first
//! part id, bounded and time-expiring): `Delivered` when every part is, `Failed` as soon as one
//! part fails.
//!
//! PDU codec: the `rusmpp` crate (0.4, SMPP 5.0 types, of which 3.4 is a subset; we bind with
//! `interface_version` 0x34). It was chosen over `smpp34` because it is a pure codec with a
//! `tokio_util` `Framed` codec, typed PDUs and TLVs with an `Other` fallback for unknown ones,
//! and decode errors as values (checked lengths, ASCII C-strings), so the session owns its
//! socket, window and timers. `smpp34`'s client owns the connection and its own timers, and
//! its SMSC side is the third-party peer in the tests, which keeps the two ends independent.
//!
//! Binds: at most one transceiver per gateway node, and with several nodes on one PostgreSQL
//! at most `max_binds` in all: a node binds only while it holds one of the carrier's bind
//! slots ([`bind_slots`]). A node without a slot does not bind and says its carrier is
//! [bound elsewhere](Carrier::bound_elsewhere), so its queue leaves this carrier's texts to a
//! node that holds a bind.

pub mod bind_slots;
pub mod mo;
pub mod receipts;
mod session;
pub mod status;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use airtext_sms::{Push, Reassembler};
use anyhow::Context;
use async_trait::async_trait;
use rusmpp::pdus::{BindTransceiver, SubmitSm};
use rusmpp::tlvs::MessageSubmissionRequestTlvValue;
use rusmpp::types::{AnyOctetString, COctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, InterfaceVersion, MessagePayload, Npi, RegisteredDelivery, ServiceType,
    Ton,
};
use rusmpp::Pdu;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use self::bind_slots::BindSlots;
use self::mo::MoPart;
use self::receipts::{PartTracker, Receipt};
use self::session::{RequestError, Session};
use self::status::StatusClass;
use crate::carriers::config::{CarrierConfig, SmppCarrierConfig};
use crate::carriers::reports::{NotStored, ReportSink};
use crate::carriers::{Carrier, CarrierAccepted, CarrierError, CarrierReport, OutboundSms};
use crate::store::InventoryNumber;

/// Timings and limits that the configuration file does not expose (tests shorten them).
#[derive(Debug, Clone)]
pub struct SmppTuning {
    /// Connecting plus `bind_transceiver_resp`.
    pub bind_timeout: Duration,
    /// Waiting for a `submit_sm_resp`.
    pub response_timeout: Duration,
    /// Waiting for an `enquire_link_resp` before the link is called dead.
    pub enquire_link_timeout: Duration,
    /// First reconnect delay; it doubles per failure up to `reconnect_max` (with jitter).
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// How long `send` waits for a bind before answering retryable.
    pub bind_wait: Duration,
    /// On shutdown, how long outstanding submits may take before `unbind`.
    pub shutdown_grace: Duration,
    pub unbind_timeout: Duration,
    /// An incomplete concatenated inbound text is given up (and delivered as far as it got)
    /// this long after its first part.
    pub reassembly_timeout: Duration,
    /// Multi-part messages whose receipts are joined, and for how long.
    pub receipt_tracking: usize,
    pub receipt_tracking_ttl: Duration,
    /// After ESME_RTHROTTLED or ESME_RMSGQFUL, new submits wait this long (the SMSC asked us
    /// to slow down; hammering it with the rest of the window would only earn more refusals).
    pub throttle_pause: Duration,
    /// While every bind slot is held by other nodes, how often to look for a free one.
    pub slot_retry: Duration,
    /// After taking a shared bind slot, how long to wait before binding: longer than a
    /// previous holder that lost the slot's connection needs to notice and unbind
    /// (`bind_slots::KEEPALIVE` + `bind_slots::PING_TIMEOUT` + `unbind_timeout`).
    pub slot_settle: Duration,
}

impl Default for SmppTuning {
    fn default() -> Self {
        SmppTuning {
            bind_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(30),
            enquire_link_timeout: Duration::from_secs(10),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            bind_wait: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(5),
            unbind_timeout: Duration::from_secs(2),
            reassembly_timeout: Duration::from_secs(600),
            receipt_tracking: 200_000,
            receipt_tracking_ttl: Duration::from_secs(72 * 3600),
            throttle_pause: Duration::from_secs(1),
            slot_retry: Duration::from_secs(2),
            slot_settle: Duration::from_secs(6),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A GCRA token bucket (virtual scheduling): `rate` per second, bursts of `burst`.
#[derive(Debug)]
pub struct Pace {
    interval: Duration,
    tolerance: Duration,
    tat: Mutex<Option<Instant>>,
}

impl Pace {
    pub fn new(rate: u32, burst: u32) -> Self {
        let interval = Duration::from_secs(1) / rate.max(1);
        Pace {
            interval,
            tolerance: interval.saturating_mul(burst.max(1).saturating_sub(1)),
            tat: Mutex::new(None),
        }
    }

    /// Reserves the next slot at `now`; returns how long to wait before using it.
    pub fn reserve_at(&self, now: Instant) -> Duration {
        let mut tat = lock(&self.tat);
        let at = tat.map_or(now, |t| t.max(now));
        *tat = Some(at + self.interval);
        at.saturating_duration_since(now)
            .saturating_sub(self.tolerance)
    }

    async fn wait(&self) {
        let wait = self.reserve_at(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// What the carrier and its session manager share.
pub(crate) struct Inner {
    name: String,
    config: SmppCarrierConfig,
    tuning: SmppTuning,
    bind: BindTransceiver,
    reports: ReportSink,
    /// The bound session, when there is one.
    current: watch::Sender<Option<Arc<Session>>>,
    last_error: Mutex<Option<String>>,
    tracker: Mutex<PartTracker>,
    reassembler: Mutex<Reassembler>,
    epoch: Instant,
    next_reference: AtomicU8,
    pace: Option<Pace>,
    /// No submit before this instant (set by throttling answers).
    paused_until: Mutex<Option<tokio::time::Instant>>,
    /// Where this node's right to bind comes from.
    slots: BindSlots,
    /// Every bind slot is held by another node (so that node sends for this carrier).
    elsewhere: AtomicBool,
    /// Concatenated texts that were whole but could not be stored, by text (see
    /// [`Inner::keep_unstored`]).
    unstored: Mutex<HashMap<TextKey, (CarrierReport, Instant)>>,
}

/// One concatenated inbound text: its sender (phone and DID) and concatenation reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TextKey {
    sender: String,
    reference: u16,
    total: u8,
}

/// Whole-but-unstored texts kept at most (beyond it the SMSC's resend starts the text over).
const MAX_UNSTORED: usize = 4096;

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmppCarrier")
            .field("name", &self.name)
            .field("host", &self.config.host)
            .field("port", &self.config.port)
            .field("system_id", &self.config.system_id)
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Holds new submits for `throttle_pause`.
    fn pause(&self) {
        let until = tokio::time::Instant::now() + self.tuning.throttle_pause;
        let mut paused = lock(&self.paused_until);
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }

    async fn wait_if_paused(&self) {
        let until = *lock(&self.paused_until);
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
    }

    fn set_error(&self, error: String) {
        *lock(&self.last_error) = Some(error);
    }

    fn clear_error(&self) {
        *lock(&self.last_error) = None;
    }

    fn resolve_receipt(&self, receipt: Receipt) -> Option<CarrierReport> {
        let receipt = lock(&self.tracker).resolve(receipt, Instant::now())?;
        Some(CarrierReport::Receipt {
            carrier: self.name.clone(),
            carrier_message_id: receipt.message_id,
            status: receipt.status,
            reason: receipt.reason,
        })
    }

    /// The whole text this part completes, if it does, with its key when it came in parts.
    fn reassemble(&self, part: MoPart) -> Option<(CarrierReport, Option<TextKey>)> {
        let key = part.part.concat.filter(|c| c.is_valid()).map(|c| TextKey {
            sender: part.part.sender.clone(),
            reference: c.reference,
            total: c.total,
        });
        if let Some(key) = &key {
            if let Some((report, _)) = lock(&self.unstored).remove(key) {
                return Some((report, Some(key.clone())));
            }
        }
        let now = self.epoch.elapsed();
        match lock(&self.reassembler).push(part.part, now) {
            Push::Complete(message) => Some((
                CarrierReport::Inbound {
                    carrier: self.name.clone(),
                    from: part.from,
                    to: part.to,
                    body: message.text,
                },
                key,
            )),
            Push::Pending { .. } | Push::Duplicate => None,
        }
    }

    /// A concatenated text was whole but could not be stored: the SMSC will resend only the
    /// part we refused (the others were acknowledged), so keep the text until that part comes
    /// back, for as long as an incomplete text would wait.
    pub(crate) fn keep_unstored(&self, key: TextKey, report: CarrierReport) {
        let now = Instant::now();
        let mut unstored = lock(&self.unstored);
        let timeout = self.tuning.reassembly_timeout;
        unstored.retain(|_, (_, at)| now.saturating_duration_since(*at) < timeout);
        if unstored.len() >= MAX_UNSTORED {
            warn!(carrier = %self.name, "too many unstored texts held; this one starts over");
            return;
        }
        unstored.insert(key, (report, now));
    }

    /// Incomplete inbound texts past their time, delivered as far as they got.
    fn expired_texts(&self) -> Vec<CarrierReport> {
        let now = self.epoch.elapsed();
        lock(&self.reassembler)
            .expire(now)
            .into_iter()
            .map(|given_up| {
                warn!(
                    carrier = %self.name,
                    missing = ?given_up.missing,
                    total = given_up.total,
                    "a concatenated inbound text never completed; delivering what arrived"
                );
                let (from, to) = mo::split_group_key(&given_up.sender);
                CarrierReport::Inbound {
                    carrier: self.name.clone(),
                    from,
                    to,
                    body: given_up.partial_text,
                }
            })
            .collect()
    }

    /// The bound session, waiting up to `bind_wait` for one.
    async fn session(&self) -> Result<Arc<Session>, CarrierError> {
        let mut rx = self.current.subscribe();
        let found = tokio::time::timeout(self.tuning.bind_wait, async {
            loop {
                if let Some(s) = rx.borrow_and_update().as_ref() {
                    if !s.is_closed() {
                        return Some(s.clone());
                    }
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await
        .ok()
        .flatten();
        found.ok_or_else(|| {
            let why = lock(&self.last_error)
                .clone()
                .unwrap_or_else(|| "not bound yet".to_owned());
            CarrierError::Retryable(format!("SMPP carrier {:?} is not bound: {why}", self.name))
        })
    }

    /// The `submit_sm` PDUs for one text, in part order.
    fn submits(&self, sms: &OutboundSms) -> Result<Vec<SubmitSm>, CarrierError> {
        let (src_ton, src_npi, source) = submit_address(&sms.from, true)
            .map_err(|e| CarrierError::Permanent(format!("invalid source address: {e}")))?;
        let (dst_ton, dst_npi, destination) = submit_address(&sms.to, false)
            .map_err(|e| CarrierError::Permanent(format!("invalid destination: {e}")))?;
        let source = COctetString::<1, 21>::from_string(source)
            .map_err(|e| CarrierError::Permanent(format!("invalid source address: {e}")))?;
        let destination = COctetString::<1, 21>::from_string(destination)
            .map_err(|e| CarrierError::Permanent(format!("invalid destination: {e}")))?;
        let plan = airtext_sms::plan(&sms.body);
        let data_coding = plan.encoding.data_coding();
        let registered = u8::from(self.config.delivery_receipts);
        let base = |esm_class: u8| {
            SubmitSm::builder()
                .service_type(ServiceType::default())
                .source_addr_ton(Ton::from(src_ton))
                .source_addr_npi(Npi::from(src_npi))
                .source_addr(source.clone())
                .dest_addr_ton(Ton::from(dst_ton))
                .dest_addr_npi(Npi::from(dst_npi))
                .destination_addr(destination.clone())
                .esm_class(EsmClass::from(esm_class))
                .registered_delivery(RegisteredDelivery::from(registered))
                .data_coding(DataCoding::from(data_coding))
        };
        if self.config.use_message_payload && plan.is_multipart() {
            let payload = plan
                .encoding
                .encode(&sms.body)
                .unwrap_or_else(|_| airtext_sms::ucs2::encode(&sms.body));
            if payload.len() > usize::from(u16::MAX) {
                return Err(CarrierError::Permanent(format!(
                    "the text is {} octets; message_payload carries at most 65535",
                    payload.len()
                )));
            }
            let tlv = MessageSubmissionRequestTlvValue::MessagePayload(MessagePayload::new(
                AnyOctetString::from_vec(payload),
            ));
            return Ok(vec![base(0).push_tlv(tlv).build()]);
        }
        let reference = if plan.is_multipart() {
            self.next_reference.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        };
        let segments = plan
            .encode(reference)
            .map_err(|e| CarrierError::Permanent(e.to_string()))?;
        segments
            .iter()
            .map(|segment| {
                let esm_class = if segment.has_udh() { mo::ESM_UDHI } else { 0 };
                let short_message = OctetString::<0, 255>::from_vec(segment.short_message())
                    .map_err(|e| CarrierError::Permanent(format!("segment too long: {e}")))?;
                Ok(base(esm_class).short_message(short_message).build())
            })
            .collect()
    }
}

/// An address SMPP cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum AddressError {
    #[error("{0:?} is not +digits (at most 20)")]
    NotE164(String),
    #[error("{0:?} is not a phone number or short code")]
    NotAnAddress(String),
}

/// TON, NPI and digits for a `submit_sm` address (see the module doc).
fn submit_address(address: &str, is_source: bool) -> Result<(u8, u8, String), AddressError> {
    let a = address.trim();
    let digits_ok = |d: &str| (1..=20).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit());
    if let Some(digits) = a.strip_prefix('+') {
        return if digits_ok(digits) {
            Ok((1, 1, digits.to_owned()))
        } else {
            Err(AddressError::NotE164(a.to_owned()))
        };
    }
    if digits_ok(a) {
        return Ok(if a.len() <= 8 {
            (3, 0, a.to_owned())
        } else {
            (0, 1, a.to_owned())
        });
    }
    if is_source
        && (1..=11).contains(&a.len())
        && a.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Ok((5, 0, a.to_owned()));
    }
    Err(AddressError::NotAnAddress(a.to_owned()))
}

/// ISO 3166 alpha-2 of an E.164 number (`ZZ` when unknown).
fn country_of(number: &str) -> String {
    let Ok(parsed) = phonenumber::parse(None, number) else {
        return "ZZ".to_owned();
    };
    if let Some(id) = parsed.country().id() {
        return id.as_ref().to_owned();
    }
    // Numbers outside any allocated range (e.g. fictional 555-01xx) still have a calling
    // code; take its main country.
    phonenumber::metadata::DATABASE
        .region(&parsed.country().code())
        .and_then(|ids| ids.first().map(|id| id.to_string()))
        .unwrap_or_else(|| "ZZ".to_owned())
}

/// An SMPP 3.4 SMSC reached through one transceiver bind.
#[derive(Debug)]
pub struct SmppCarrier {
    inner: Arc<Inner>,
    inventory: Vec<InventoryNumber>,
    /// Resolves once the link's thread has finished.
    stopped: tokio::sync::Mutex<Option<oneshot::Receiver<()>>>,
}

impl SmppCarrier {
    /// Starts binding in the background (the first bind does not block start-up).
    pub fn start(
        config: SmppCarrierConfig,
        reports: ReportSink,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<SmppCarrier>> {
        Self::start_with(config, SmppTuning::default(), reports, shutdown)
    }

    /// [`SmppCarrier::start`] for one of several gateway nodes: binds only while it holds
    /// one of `slots`.
    pub fn start_shared(
        config: SmppCarrierConfig,
        tuning: SmppTuning,
        slots: BindSlots,
        reports: ReportSink,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<SmppCarrier>> {
        Self::start_inner(config, tuning, slots, reports, shutdown)
    }

    /// [`SmppCarrier::start`] with explicit timings.
    pub fn start_with(
        config: SmppCarrierConfig,
        tuning: SmppTuning,
        reports: ReportSink,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<SmppCarrier>> {
        Self::start_inner(config, tuning, BindSlots::OnlyNode, reports, shutdown)
    }

    fn start_inner(
        config: SmppCarrierConfig,
        tuning: SmppTuning,
        slots: BindSlots,
        reports: ReportSink,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<SmppCarrier>> {
        let env = CarrierConfig::Smpp(config.clone()).secret_env("PASSWORD");
        let password = match &config.password {
            Some(p) => p.clone(),
            None => std::env::var(&env).with_context(|| {
                format!("password: give it in the configuration or in the environment as {env}")
            })?,
        };
        let c_string = |key: &str, value: &str, max: usize| {
            if value.len() > max || !value.is_ascii() {
                anyhow::bail!("{key}: SMPP 3.4 allows at most {max} ASCII characters");
            }
            Ok(value.to_owned())
        };
        let bind = BindTransceiver::builder()
            .system_id(
                COctetString::from_string(c_string("system_id", &config.system_id, 15)?)
                    .map_err(|e| anyhow::anyhow!("system_id: {e}"))?,
            )
            .password(
                COctetString::from_string(c_string("password", &password, 8)?)
                    .map_err(|e| anyhow::anyhow!("password: {e}"))?,
            )
            .system_type(
                COctetString::from_string(c_string(
                    "system_type",
                    config.system_type.as_deref().unwrap_or_default(),
                    12,
                )?)
                .map_err(|e| anyhow::anyhow!("system_type: {e}"))?,
            )
            .interface_version(InterfaceVersion::Smpp3_4)
            .addr_ton(Ton::Unknown)
            .addr_npi(Npi::Unknown)
            .address_range(COctetString::empty())
            .build();
        let inventory = config
            .numbers
            .iter()
            .map(|number| InventoryNumber {
                number: number.clone(),
                carrier: config.name.clone(),
                country: country_of(number),
            })
            .collect();
        let pace = config
            .max_per_second
            .map(|rate| Pace::new(rate, (rate / 20).max(1)));
        let (current, _) = watch::channel(None);
        let inner = Arc::new(Inner {
            name: config.name.clone(),
            tracker: Mutex::new(PartTracker::new(
                tuning.receipt_tracking,
                tuning.receipt_tracking_ttl,
            )),
            reassembler: Mutex::new(Reassembler::new(tuning.reassembly_timeout)),
            config,
            tuning,
            bind,
            reports,
            current,
            last_error: Mutex::new(None),
            epoch: Instant::now(),
            next_reference: AtomicU8::new(rand::random()),
            pace,
            paused_until: Mutex::new(None),
            slots,
            elsewhere: AtomicBool::new(false),
            unstored: Mutex::new(HashMap::new()),
        });
        let stopped = spawn_link(inner.clone(), shutdown.clone())?;
        tokio::spawn(expire_texts(inner.clone(), shutdown));
        Ok(Arc::new(SmppCarrier {
            inner,
            inventory,
            stopped: tokio::sync::Mutex::new(Some(stopped)),
        }))
    }

    /// Whether a bind is up now.
    pub fn is_bound(&self) -> bool {
        self.inner
            .current
            .borrow()
            .as_ref()
            .is_some_and(|s| !s.is_closed())
    }

    /// Waits up to `within` for a bind; whether one is up.
    pub async fn wait_bound(&self, within: Duration) -> bool {
        let mut rx = self.inner.current.subscribe();
        tokio::time::timeout(within, async {
            loop {
                if rx
                    .borrow_and_update()
                    .as_ref()
                    .is_some_and(|s| !s.is_closed())
                {
                    return;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await
        .is_ok()
    }

    /// Why the last bind attempt or session failed, while not bound.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.inner.last_error).clone()
    }

    /// After the shutdown token fired: waits until the session has unbound and closed.
    pub async fn stopped(&self) {
        if let Some(stopped) = self.stopped.lock().await.take() {
            let _ = stopped.await;
        }
    }
}

/// Runs the session (the link to the SMSC, [`session::run`]) on a thread of its own.
///
/// Why: at window 1 each `submit_sm` waits for the previous response, so the link's turn
/// from a response to the next write sets the pace. On the gateway's runtime that turn waits
/// behind whatever HTTP work is queued (measured: ~6,500 texts/s at the SMSC while requests
/// came in, ~11,500 once they stopped). On its own thread the OS schedules it beside that
/// work instead of after it, as Kannel's bearerbox runs each SMSC link on a thread.
///
/// The link stops when `shutdown` is cancelled, and also when the runtime that started it
/// shuts down: a test's runtime, say, whose SMSC is gone with it.
fn spawn_link(
    inner: Arc<Inner>,
    shutdown: CancellationToken,
) -> anyhow::Result<oneshot::Receiver<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the SMPP link's runtime")?;
    let link_shutdown = shutdown.child_token();
    let with_starter = link_shutdown.clone().drop_guard();
    tokio::spawn(async move {
        let _with_starter = with_starter;
        shutdown.cancelled().await;
    });
    let (done, stopped) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("smpp-{}", inner.name))
        .spawn(move || {
            runtime.block_on(session::run(inner, link_shutdown));
            let _ = done.send(());
        })
        .context("cannot start the SMPP link's thread")?;
    Ok(stopped)
}

/// Gives up inbound texts whose parts stopped coming.
async fn expire_texts(inner: Arc<Inner>, shutdown: CancellationToken) {
    let period = (inner.tuning.reassembly_timeout / 4).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        // The SMSC had these parts acknowledged long ago (a part is answered when it is
        // buffered), so this partial text cannot be refused back to it; store it as it is.
        for report in inner.expired_texts() {
            if inner.reports.deliver(report).await == Err(NotStored::Closed) {
                return;
            }
        }
    }
}

#[async_trait]
impl Carrier for SmppCarrier {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn inventory(&self) -> Vec<InventoryNumber> {
        self.inventory.clone()
    }

    fn bound_elsewhere(&self) -> bool {
        self.inner.elsewhere.load(Ordering::Acquire)
    }

    async fn send(&self, sms: OutboundSms) -> Result<CarrierAccepted, CarrierError> {
        let submits = self.inner.submits(&sms)?;
        let total = submits.len();
        let session = self.inner.session().await?;
        let inner = &self.inner;
        let results = futures::future::join_all(submits.into_iter().map(|sm| {
            let session = &session;
            async move {
                inner.wait_if_paused().await;
                if let Some(pace) = &inner.pace {
                    pace.wait().await;
                }
                session.submit(sm).await
            }
        }))
        .await;
        let mut ids = Vec::with_capacity(total);
        let mut permanent = None;
        let mut retryable = None;
        for (index, result) in results.into_iter().enumerate() {
            let part = if total > 1 {
                format!("part {} of {total}: ", index.saturating_add(1))
            } else {
                String::new()
            };
            match result {
                Ok(reply) => match (status::classify(reply.status), reply.pdu) {
                    (StatusClass::Ok, Some(Pdu::SubmitSmResp(resp))) if !reply.nack => {
                        ids.push(resp.message_id().as_str().to_owned());
                    }
                    (StatusClass::Ok, _) => {
                        retryable
                            .get_or_insert(format!("{part}the SMSC answered without a message_id"));
                    }
                    (StatusClass::Permanent, _) => {
                        permanent.get_or_insert(format!(
                            "{part}the SMSC refused it: {}",
                            status::describe(reply.status)
                        ));
                    }
                    (StatusClass::Retryable, _) => {
                        if matches!(
                            reply.status,
                            status::ESME_RTHROTTLED | status::ESME_RMSGQFUL
                        ) {
                            self.inner.pause();
                        }
                        retryable.get_or_insert(format!(
                            "{part}the SMSC deferred it: {}",
                            status::describe(reply.status)
                        ));
                    }
                },
                Err(RequestError::Closed(reason)) => {
                    retryable.get_or_insert(format!(
                        "{part}the SMPP session ended before the SMSC answered: {reason}"
                    ));
                }
                Err(RequestError::Timeout(wait)) => {
                    retryable.get_or_insert(format!("{part}no submit_sm_resp within {wait:?}"));
                }
            }
        }
        if let Some(reason) = permanent {
            return Err(CarrierError::Permanent(reason));
        }
        if let Some(reason) = retryable {
            return Err(CarrierError::Retryable(reason));
        }
        if ids.len() > 1 {
            lock(&self.inner.tracker).track(ids.clone(), Instant::now());
        }
        let carrier_message_id = ids
            .into_iter()
            .next()
            .ok_or_else(|| CarrierError::Retryable("the SMSC returned no message id".to_owned()))?;
        Ok(CarrierAccepted { carrier_message_id })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn submit_addresses() {
        assert_eq!(
            submit_address("+14155550100", false),
            Ok((1, 1, "14155550100".into()))
        );
        assert_eq!(submit_address("12345", false), Ok((3, 0, "12345".into())));
        assert_eq!(
            submit_address("4155550100", false),
            Ok((0, 1, "4155550100".into()))
        );
        assert_eq!(
            submit_address("AIRTEXT", true),
            Ok((5, 0, "AIRTEXT".into()))
        );
        assert!(submit_address("AIRTEXT", false).is_err());
        assert!(submit_address("+1415abc", false).is_err());
        assert!(submit_address("+", false).is_err());
        assert!(submit_address("+123456789012345678901", false).is_err());
    }

    #[test]
    fn countries() {
        assert_eq!(country_of("+14155550100"), "US");
        assert_eq!(country_of("+442079460000"), "GB");
        assert_eq!(country_of("nonsense"), "ZZ");
    }

    #[test]
    fn the_pace_holds_the_rate_after_a_burst() {
        let pace = Pace::new(100, 5); // 10 ms apart, bursts of 5
        let t0 = Instant::now();
        let waits: Vec<Duration> = (0..8).map(|_| pace.reserve_at(t0)).collect();
        assert!(waits[..5].iter().all(Duration::is_zero), "{waits:?}");
        assert_eq!(waits[5], Duration::from_millis(10));
        assert_eq!(waits[7], Duration::from_millis(30));
        // after a quiet second, the burst is available again
        let later = t0 + Duration::from_secs(1);
        assert!(pace.reserve_at(later).is_zero());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let tuning = SmppTuning {
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(2),
            ..SmppTuning::default()
        };
        for _ in 0..20 {
            let first = session::backoff(&tuning, 0);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = session::backoff(&tuning, 3);
            assert!(third >= Duration::from_millis(400) && third <= Duration::from_millis(800));
            assert!(session::backoff(&tuning, 30) <= Duration::from_secs(2));
        }
    }
}
