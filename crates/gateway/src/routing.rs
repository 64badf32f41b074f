//! Routing: where a message goes, and how what carriers report becomes stored messages.
//!
//! A message's `to` is normalised ([`airtext_sms::Address`]) and resolved, in order:
//! 1. a DID owned by an account → in-network;
//! 2. a phone number some account has verified → in-network;
//! 3. `@username`, or an e-mail address some account has verified → in-network;
//! 4. any other phone number or short code → out-of-network, through a carrier.
//!
//! A username or e-mail address that matches nobody is `404 unknown_recipient`: a message is
//! never silently dropped.
//!
//! Invariants:
//! - **one person, one thread**: an in-network account is always shown by its *canonical
//!   address* (its DID when it has one, else `@username`), however the sender typed it, so
//!   texting Bob by number, by username and by verified phone lands in one conversation;
//! - in-network messages never leave the gateway: the sender's and the recipient's copies are
//!   stored in one transaction, both `delivered`;
//! - out-of-network messages need the sender's own DID (it is the `From` the outside phone
//!   sees), are stored `queued` with their queue entry in the same transaction, and only then
//!   is the queue worker woken, so a crash can delay a text but never lose an accepted one;
//! - idempotency is the store's: a repeated `client_id` returns the first message and stores
//!   nothing new (and wakes no worker);
//! - a carrier's report is answered "stored" only once it is in the store: a receipt that
//!   overtook the record of its send is held there (not in memory) and applied when that
//!   record commits ([`store_report_batch`]).

use std::time::Duration;

use airtext_api::identities::IdentityKind;
use airtext_api::messages::{Direction, Encoding, Message, Route, SendMessage};
use airtext_api::{AccountId, ErrorCode, MessageId, SendStatus};
use airtext_sms::Address;
use anyhow::Context;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};

use crate::carriers::reports::{NotStored, PendingReport};
use crate::carriers::{CarrierError, CarrierReport, OutboundSms, ReceiptStatus};
use crate::error::{ApiError, ApiResult};
use crate::http::fields::{self, FieldKind};
use crate::http::AppState;
use crate::store::{
    AccountRecord, CarrierReceipt, Delivery, Enqueue, NewMessage, OutboundJob, ReceiptOutcome,
    StoreError,
};

/// The sender shown on system texts (verification codes) where a carrier allows an
/// alphanumeric sender.
pub const SYSTEM_SENDER: &str = "Airtext";

/// Where a resolved address leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An Airtext account, shown by its canonical address.
    InNetwork {
        account: AccountId,
        canonical: String,
    },
    /// A phone outside Airtext (E.164 or short code), reached through a carrier.
    OutOfNetwork { address: String },
}

impl Target {
    pub fn in_network(&self) -> bool {
        matches!(self, Target::InNetwork { .. })
    }
}

/// The address that stands for an account in every thread: its DID, else `@username`.
pub fn canonical_address(account: &AccountRecord) -> String {
    account
        .number
        .clone()
        .unwrap_or_else(|| format!("@{}", account.username))
}

/// Reads what a user typed, or a 400 `invalid_address` that says what to type instead.
pub fn parse_address(state: &AppState, input: &str) -> ApiResult<Address> {
    // No address holds control characters, whoever passes it on (a handler, a carrier): NUL
    // and friends stay out of every lookup and conversation key, whatever the parser lets
    // through.
    fields::check("address", input, FieldKind::Address)?;
    state.addresses.parse(input).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidAddress,
            e.to_string(),
        )
    })
}

/// Texts never go to emergency services (`airtext_sms::emergency`): a text there could be
/// lost when it matters most, so the sender is told to call or text them from a phone.
pub fn refuse_emergency(to: &str) -> ApiResult<()> {
    if airtext_sms::is_emergency_number(to) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::EmergencyNumber,
            format!(
                "{} is an emergency number, and Airtext cannot reach emergency services: \
                 call or text them from a phone",
                to.trim()
            ),
        ));
    }
    Ok(())
}

/// Maps a store error, naming `what` when it was not found (`no such message in this account`).
pub fn not_found_as(what: &'static str) -> impl FnOnce(StoreError) -> ApiError {
    move |error| match error {
        StoreError::NotFound => ApiError::not_found(what),
        other => other.into(),
    }
}

fn unknown_recipient(address: &Address) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::UnknownRecipient,
        format!("no Airtext account is {address}: check the spelling, or text a phone number"),
    )
}

/// Resolves a normalised address, in the order the module documentation gives.
pub async fn resolve(state: &AppState, address: &Address) -> ApiResult<Target> {
    let account = state.store.addressee(address).await?;
    target(address, account)
}

/// Where an address leads, given the account it belongs to ([`crate::store::Store::addressee`]).
fn target(address: &Address, account: Option<AccountRecord>) -> ApiResult<Target> {
    match (account, address) {
        (Some(account), _) => Ok(Target::InNetwork {
            canonical: canonical_address(&account),
            account: account.id,
        }),
        (None, Address::Phone(number) | Address::ShortCode(number)) => Ok(Target::OutOfNetwork {
            address: number.clone(),
        }),
        (None, Address::Username(_) | Address::Email(_)) => Err(unknown_recipient(address)),
    }
}

/// Encoding and segment count of a body, as `airtext-sms` would put it on the air. An
/// in-network text never goes on the air, but the thread shows what it would cost.
pub fn encoding_of(body: &str) -> (Encoding, u32) {
    let plan = airtext_sms::plan(body);
    let encoding = match plan.encoding {
        airtext_sms::Encoding::Gsm7 => Encoding::Gsm7,
        airtext_sms::Encoding::Ucs2 => Encoding::Ucs2,
    };
    let segments = u32::try_from(plan.segment_count())
        .unwrap_or(u32::MAX)
        .max(1);
    (encoding, segments)
}

/// A body of 1 to `max_body_chars` characters (Unicode scalar values, not bytes).
pub fn check_body(state: &AppState, body: &str) -> ApiResult<()> {
    let max = state.config.limits.max_body_chars;
    let chars = body.chars().count();
    if chars == 0 || chars > max {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidBody,
            format!("a message body must be 1 to {max} characters; this one has {chars}"),
        ));
    }
    // No text store (nor PostgreSQL's `text`) keeps NUL, and no phone shows it.
    fields::check("body", body, FieldKind::Body)
}

/// `POST /v1/messages`: routes and stores one send. Returns the sender's copy and whether it
/// is new (`false` for a repeated `client_id`).
pub async fn send_message(
    state: &AppState,
    sender_id: AccountId,
    request: SendMessage,
) -> ApiResult<(Message, bool)> {
    check_body(state, &request.body)?;
    refuse_emergency(&request.to)?;
    let to = parse_address(state, &request.to)?;
    let (sender, addressee) = state.store.sender_and_addressee(sender_id, &to).await?;
    let sender = sender
        .ok_or_else(|| ApiError::unauthorized("this account no longer exists: sign in again"))?;
    let me = canonical_address(&sender);
    let (encoding, segments) = encoding_of(&request.body);
    let now = Utc::now();
    let copy = |account_id: AccountId,
                peer: &str,
                direction: Direction,
                from: &str,
                to: &str,
                status: SendStatus,
                route: Route| NewMessage {
        id: MessageId::new(),
        account_id,
        peer: peer.to_owned(),
        direction,
        from: from.to_owned(),
        to: to.to_owned(),
        body: request.body.clone(),
        status,
        route,
        client_id: (direction == Direction::Outbound).then_some(request.client_id),
        encoding,
        segments,
        created_at: now,
    };

    let mut delivery = match target(&to, addressee)? {
        // A note to self: one copy, in the thread with oneself.
        Target::InNetwork { account, .. } if account == sender.id => Delivery {
            sender: Some(copy(
                sender.id,
                &me,
                Direction::Outbound,
                &me,
                &me,
                SendStatus::Delivered,
                Route::InNetwork,
            )),
            recipient: None,
            enqueue: None,
        },
        Target::InNetwork { account, canonical } => Delivery {
            sender: Some(copy(
                sender.id,
                &canonical,
                Direction::Outbound,
                &me,
                &canonical,
                SendStatus::Delivered,
                Route::InNetwork,
            )),
            recipient: Some(copy(
                account,
                &me,
                Direction::Inbound,
                &me,
                &canonical,
                SendStatus::Delivered,
                Route::InNetwork,
            )),
            enqueue: None,
        },
        Target::OutOfNetwork { address } => {
            let did = sender.number.as_deref().ok_or_else(|| {
                ApiError::conflict(
                    ErrorCode::NoNumber,
                    "claim a number to text phones outside Airtext; you can still text Airtext users by @username",
                )
            })?;
            // The store refuses it if the recipient replied STOP (the sender learns now, not
            // from a failed message later; the queue checks again what waited).
            Delivery {
                sender: Some(copy(
                    sender.id,
                    &address,
                    Direction::Outbound,
                    did,
                    &address,
                    SendStatus::Queued,
                    Route::Carrier,
                )),
                recipient: None,
                enqueue: Some(Enqueue::default()),
            }
        }
    };
    // With room in the worker, the job is stored leased to it and handed over: no claim.
    let reservation = delivery.enqueue.and_then(|_| state.queue.reserve());
    if let (Some(enqueue), Some(_)) = (&mut delivery.enqueue, &reservation) {
        let lease = chrono::Duration::from_std(state.config.queue.lease()).unwrap_or_default();
        enqueue.leased_until = Some(now + lease);
    }
    let enqueued = delivery.enqueue.is_some();
    let stored = state.store.deliver(delivery).await;
    let delivered = match stored {
        Err(StoreError::OptedOut) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::RecipientOptedOut,
                format!("{to} replied STOP to your number {me}: you cannot text them until they reply START"),
            ))
        }
        other => other?,
    };
    let message = delivered
        .sender
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("the store returned no sender copy")))?;
    if enqueued && delivered.created {
        match reservation {
            Some(reservation) => {
                let job = OutboundJob {
                    message_id: message.id,
                    account_id: sender_id,
                    from: message.from.clone(),
                    to: message.to.clone(),
                    body: message.body.clone(),
                    attempts: 0,
                    created_at: message.created_at,
                };
                if let Err(job) = reservation.hand_over(job) {
                    crate::queue::release_lease(state, &job).await;
                }
            }
            None => state.queue.wake(),
        }
    }
    Ok((message, delivered.created))
}

/// Sends a system text (a verification code `account` asked for) at once through the cheapest carrier that takes
/// it (least-cost routing over every carrier with a price for the number, breakers
/// respected, carriers bound on another node skipped: there is no queue to leave it in). It
/// is not a conversation message: nothing is stored, nothing is queued, and a failure is the
/// caller's to report.
pub async fn send_system_sms(
    state: &AppState,
    account: AccountId,
    to: &str,
    body: &str,
) -> ApiResult<()> {
    refuse_emergency(to)?;
    let address = parse_address(state, to)?;
    if !address.is_phone_like() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidAddress,
            format!("{address} is not a phone number: texts go to phone numbers only"),
        ));
    }
    let (_, segments) = encoding_of(body);
    let candidates = state
        .lcr
        .system_candidates(address.as_str(), segments)
        .map_err(|no_route| {
            if no_route.waits() {
                ApiError::Unavailable(no_route.0)
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidAddress,
                    format!(
                        "{} (use a number in a country this gateway serves)",
                        no_route.0
                    ),
                )
            }
        })?;
    let mut last_error = "every carrier that can take it is resting after failures".to_owned();
    for candidate in candidates {
        let carrier = &candidate.carrier;
        if carrier.bound_elsewhere() || !state.lcr.admit(candidate.index) {
            continue;
        }
        let sms = OutboundSms {
            account: Some(account),
            from: SYSTEM_SENDER.to_owned(),
            to: address.as_str().to_owned(),
            body: body.to_owned(),
        };
        match tokio::time::timeout(SEND_TIMEOUT, carrier.send(sms)).await {
            Ok(Ok(_)) => {
                state.lcr.succeeded(candidate.index);
                return Ok(());
            }
            Ok(Err(CarrierError::Permanent(reason))) => {
                state.lcr.succeeded(candidate.index);
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidAddress,
                    format!("{address} cannot receive texts ({reason}): use another number"),
                ));
            }
            Ok(Err(CarrierError::Retryable(reason))) => {
                state.lcr.failed(candidate.index);
                tracing::warn!(carrier = carrier.name(), reason, "system text not taken");
                last_error = reason;
            }
            Err(_) => {
                state.lcr.failed(candidate.index);
                tracing::warn!(carrier = carrier.name(), "system text timed out");
                last_error = "the carrier did not answer in time".to_owned();
            }
        }
    }
    Err(ApiError::Unavailable(format!(
        "no carrier took the system text: {last_error}"
    )))
}

/// How long one carrier may take to answer a send before it counts as a retryable failure.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Stores a text an outside phone sent to one of our DIDs, as an inbound message of the DID's
/// owner. `NotFound` when no account owns `to`.
pub async fn receive_inbound(
    state: &AppState,
    from: &str,
    to: &str,
    body: &str,
) -> ApiResult<Message> {
    let to = parse_address(state, to)?;
    let owner = match &to {
        Address::Phone(number) => state.store.number_owner(number).await?,
        _ => None,
    }
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("{to} is not an Airtext number"),
        )
    })?;
    // Carriers send E.164 numbers, short codes or alphanumeric sender ids; keep what cannot
    // be normalised as it came, so the text is never lost over its sender's spelling.
    let from_input = from;
    let from = state.addresses.parse(from_input);
    let from_text = from
        .as_ref()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_else(|_| from_raw(from_input));
    // One person, one thread: a phone an account verified is shown as that account.
    let peer = match &from {
        Ok(Address::Phone(number)) => {
            let owner = match state.store.number_owner(number).await? {
                Some(owner) => Some(owner),
                None => {
                    state
                        .store
                        .verified_owner(IdentityKind::Phone, number)
                        .await?
                }
            };
            match owner {
                Some(account) => match state.store.account(account).await? {
                    Some(record) => canonical_address(&record),
                    None => from_text.clone(),
                },
                None => from_text.clone(),
            }
        }
        _ => from_text.clone(),
    };
    // A carrier's text is stored whatever it holds, except what no store can keep.
    let body = body.replace('\0', "");
    // STOP / START / HELP: recorded before the text is stored (see `opt_out`).
    let auto_reply = crate::opt_out::apply_keyword(state, to.as_str(), &from_text, &body).await?;
    let (encoding, segments) = encoding_of(&body);
    let delivery = Delivery {
        sender: None,
        recipient: Some(NewMessage {
            id: MessageId::new(),
            account_id: owner,
            peer,
            direction: Direction::Inbound,
            from: from_text,
            to: to.as_str().to_owned(),
            body,
            status: SendStatus::Delivered,
            route: Route::Carrier,
            client_id: None,
            encoding,
            segments,
            created_at: Utc::now(),
        }),
        enqueue: None,
    };
    let stored = state
        .store
        .deliver(delivery)
        .await?
        .recipient
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("the store returned no inbound copy")))?;
    if let Some(reply) = auto_reply {
        crate::opt_out::send_auto_reply(state, owner, to.as_str(), &stored.from, reply);
    }
    Ok(stored)
}

/// An unparseable sender, trimmed and bounded so a hostile carrier payload cannot make a
/// conversation key of any size.
fn from_raw(raw: &str) -> String {
    let trimmed: String = raw
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    if trimmed.is_empty() {
        "unknown".to_owned()
    } else {
        trimmed
    }
}

/// Reports taken off the channel and stored together at most. The receipts among them are
/// one store call (one commit), so a backlog of receipts costs a commit per batch, not per
/// receipt; the bound keeps the first carrier of a batch from waiting long for the rest.
pub const REPORT_BATCH: usize = 256;

/// The failure reason a message gets from a failed receipt that gives none of its own.
const UNSPECIFIED_FAILURE: &str = "the carrier could not deliver it";

/// Stores a batch of carrier reports and answers each carrier, stored or not, on its own.
///
/// - Receipts go to the store in one [`crate::store::Store::apply_receipts`] call: each moves
///   its message forward (late, repeated and backward receipts change nothing and append no
///   event), or, when it overtook the record of its send, is held in the store until that
///   record commits — never in memory, since the carrier is told it is stored.
/// - If that call fails, the receipts are stored again one by one, so one bad receipt does
///   not fail its neighbours; but not while the store is unavailable (each try would wait
///   for a connection in vain), when they are all answered "not stored" and the carriers'
///   networks send them again.
/// - Texts from phones are stored one at a time in arrival order (two texts from one phone
///   keep their order), beside the receipts' call.
pub async fn store_report_batch(state: &AppState, batch: Vec<PendingReport>) {
    let received_at = Utc::now();
    let mut receipts = Vec::new();
    let mut texts = Vec::new();
    for pending in batch {
        match receipt_of(&pending.report, received_at) {
            Some(receipt) => receipts.push((pending, receipt)),
            None => texts.push(pending),
        }
    }
    let texts = async {
        for pending in texts {
            let stored = handle_carrier_report(state, pending.report.clone()).await;
            answer(pending, stored);
        }
    };
    tokio::join!(store_receipts(state, receipts), texts);
}

/// Stores one report: a receipt (as a batch of one) or a text from a phone.
pub async fn handle_carrier_report(state: &AppState, report: CarrierReport) -> anyhow::Result<()> {
    if let Some(receipt) = receipt_of(&report, Utc::now()) {
        state
            .store
            .apply_receipts(std::slice::from_ref(&receipt))
            .await
            .context("applying a receipt")?;
        return Ok(());
    }
    let CarrierReport::Inbound {
        carrier,
        from,
        to,
        body,
    } = report
    else {
        return Ok(());
    };
    match receive_inbound(state, &from, &to, &body).await {
        Ok(_) => Ok(()),
        Err(ApiError::Client { message, .. }) => {
            tracing::warn!(carrier, to, reason = message, "inbound text dropped");
            Ok(())
        }
        Err(error) => Err(anyhow::Error::new(error).context("inbound text not stored")),
    }
}

/// The store's form of a receipt; `None` for a text.
fn receipt_of(report: &CarrierReport, received_at: DateTime<Utc>) -> Option<CarrierReceipt> {
    let CarrierReport::Receipt {
        carrier,
        carrier_message_id,
        status,
        reason,
    } = report
    else {
        return None;
    };
    let status = match status {
        ReceiptStatus::Sent => SendStatus::Sent,
        ReceiptStatus::Delivered => SendStatus::Delivered,
        ReceiptStatus::Failed => SendStatus::Failed,
    };
    let failure_reason = (status == SendStatus::Failed).then(|| {
        reason
            .clone()
            .unwrap_or_else(|| UNSPECIFIED_FAILURE.to_owned())
    });
    Some(CarrierReceipt {
        carrier: carrier.clone(),
        carrier_message_id: carrier_message_id.clone(),
        status,
        failure_reason,
        received_at,
    })
}

/// Applies a batch of receipts in one store call (see [`store_report_batch`]).
async fn store_receipts(state: &AppState, batch: Vec<(PendingReport, CarrierReceipt)>) {
    if batch.is_empty() {
        return;
    }
    let (pending, receipts): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    let error = match state.store.apply_receipts(&receipts).await {
        Ok(outcomes) => {
            let held = outcomes
                .iter()
                .filter(|outcome| matches!(outcome, ReceiptOutcome::Held))
                .count();
            if held > 0 {
                tracing::debug!(held, "receipts held until their sends are recorded");
            }
            pending.into_iter().for_each(PendingReport::stored);
            return;
        }
        Err(error) => error,
    };
    let many = receipts.len() > 1;
    if !many || matches!(error, StoreError::Unavailable(_)) {
        let why = format!(
            "{:#}",
            anyhow::Error::new(error).context("applying receipts")
        );
        tracing::error!(error = why, count = receipts.len(), "receipts not stored");
        for pending in pending {
            pending.not_stored(NotStored::Failed(why.clone()));
        }
        return;
    }
    tracing::warn!(
        error = format!("{error:#}"),
        count = receipts.len(),
        "a batch of receipts was not stored; storing them one by one"
    );
    let mut unavailable: Option<String> = None;
    for (pending, receipt) in pending.into_iter().zip(receipts) {
        if let Some(why) = &unavailable {
            pending.not_stored(NotStored::Failed(why.clone()));
            continue;
        }
        match state
            .store
            .apply_receipts(std::slice::from_ref(&receipt))
            .await
        {
            Ok(_) => pending.stored(),
            Err(error) => {
                let gone = matches!(error, StoreError::Unavailable(_));
                let why = format!(
                    "{:#}",
                    anyhow::Error::new(error).context("applying a receipt")
                );
                tracing::error!(
                    error = why,
                    carrier = receipt.carrier,
                    carrier_message_id = receipt.carrier_message_id,
                    "receipt not stored"
                );
                if gone {
                    unavailable = Some(why.clone());
                }
                pending.not_stored(NotStored::Failed(why));
            }
        }
    }
}

/// Tells the carrier whether its report is stored.
fn answer(pending: PendingReport, stored: anyhow::Result<()>) {
    match stored {
        Ok(()) => pending.stored(),
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "carrier report not stored");
            pending.not_stored(NotStored::Failed(format!("{error:#}")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_follows_the_sms_plan() {
        assert_eq!(encoding_of("hello"), (Encoding::Gsm7, 1));
        assert_eq!(encoding_of("héllo 😀"), (Encoding::Ucs2, 1));
        assert_eq!(encoding_of(&"a".repeat(161)), (Encoding::Gsm7, 2));
    }

    #[test]
    fn unparseable_senders_are_kept_bounded() {
        assert_eq!(from_raw("  Airtext "), "Airtext");
        assert_eq!(from_raw(""), "unknown");
        assert_eq!(from_raw("\0"), "unknown");
        assert_eq!(from_raw("AB\0C"), "ABC");
        assert_eq!(from_raw(&"x".repeat(500)).len(), 64);
    }
}
