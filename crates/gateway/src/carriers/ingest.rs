//! Ingestion: what carriers report (texts from outside phones, delivery receipts) becoming
//! stored messages and statuses.
//!
//! Reports come off the channel of [`super::reports`] in batches ([`store_report_batch`]).
//!
//! Invariants:
//! - a carrier's report is answered "stored" only once it is in the store: a receipt that
//!   overtook the record of its send is held there (not in memory) and applied when that
//!   record commits;
//! - a text from an outside phone lands in the thread of the DID's owner with the account
//!   that verified the sending phone, if any (one person, one thread), and is stored whatever
//!   it holds except NUL (which no store keeps); STOP / START / HELP are recorded before it is
//!   stored ([`crate::opt_out`]);
//! - a sender a carrier spells in a way no parser reads is kept as it came, trimmed and
//!   bounded, so a text is never lost over its sender's spelling.

use airtext_api::identities::IdentityKind;
use airtext_api::messages::{Direction, Message, Route};
use airtext_api::{ErrorCode, MessageId, SendStatus};
use airtext_sms::Address;
use anyhow::Context;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};

use crate::carriers::reports::{NotStored, PendingReport};
use crate::carriers::{CarrierReport, ReceiptStatus};
use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::routing::{canonical_address, encoding_of, parse_address};
use crate::store::{CarrierReceipt, Delivery, NewMessage, ReceiptOutcome, StoreError};

/// Stores a text an outside phone sent to one of our DIDs, as an inbound message of the DID's
/// owner. `NotFound` when no account owns `to`. `None` when the owner blocked the sender:
/// nothing is stored and the carrier is answered as for any text.
pub async fn receive_inbound(
    state: &AppState,
    from: &str,
    to: &str,
    body: &str,
) -> ApiResult<Option<Message>> {
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
    let reply_to = from_text.clone();
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
    let stored = state.store.deliver(delivery).await?.recipient;
    // STOP / START / HELP are answered even from a blocked sender: the carrier rules ask it.
    if let Some(reply) = auto_reply {
        crate::opt_out::send_auto_reply(state, owner, to.as_str(), &reply_to, reply);
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
    fn unparseable_senders_are_kept_bounded() {
        assert_eq!(from_raw("  Airtext "), "Airtext");
        assert_eq!(from_raw(""), "unknown");
        assert_eq!(from_raw("\0"), "unknown");
        assert_eq!(from_raw("AB\0C"), "ABC");
        assert_eq!(from_raw(&"x".repeat(500)).len(), 64);
    }
}
