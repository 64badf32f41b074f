//! Routing: where a message goes. (What carriers report becomes stored messages in
//! [`crate::carriers::ingest`].)
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
//!   nothing new (and wakes no worker).

use std::time::Duration;

use airtext_api::messages::{Direction, Encoding, Message, Route, SendMessage};
use airtext_api::{AccountId, ErrorCode, MessageId, SendStatus};
use airtext_sms::Address;
use axum::http::StatusCode;
use chrono::Utc;

use crate::carriers::{CarrierError, OutboundSms};
use crate::error::{ApiError, ApiResult};
use crate::http::fields::{self, FieldKind};
use crate::http::AppState;
use crate::store::{AccountRecord, Delivery, Enqueue, NewMessage, OutboundJob, StoreError};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_follows_the_sms_plan() {
        assert_eq!(encoding_of("hello"), (Encoding::Gsm7, 1));
        assert_eq!(encoding_of("héllo 😀"), (Encoding::Ucs2, 1));
        assert_eq!(encoding_of(&"a".repeat(161)), (Encoding::Gsm7, 2));
    }
}
