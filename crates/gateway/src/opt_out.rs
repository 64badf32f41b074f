//! Opt-outs: the keywords carriers require every sender to honour (CTIA / 10DLC rules).
//!
//! An outside phone texting one of our DIDs a whole-body keyword ([`airtext_sms::classify`]:
//! case and surrounding whitespace ignored) changes what that DID may send it:
//! - STOP-class: records an opt-out for `(DID, phone)`. From then on a send on that pair is
//!   refused at `POST /v1/messages` (`403 recipient_opted_out`), and the queue checks again
//!   before each submit (STOP can arrive while a text waits). A confirmation goes back.
//! - START-class: clears it, with a confirmation.
//! - HELP-class: an automatic reply (`opt_outs.help_reply`).
//!
//! The keyword text itself is stored in the owner's thread like any text, so the user sees
//! that the person opted out. The opt-out is written *before* the text is stored: if the
//! write fails the carrier's report fails and is delivered again, so a STOP the user can see
//! is always a STOP the gateway honours.
//!
//! Automatic replies leave from the DID that was texted, through least-cost routing, straight
//! to a carrier (not through the durable queue: the queue refuses opted-out pairs by design,
//! and a lost confirmation is re-sent by the person's next keyword). They are not stored as
//! conversation messages.

use airtext_api::AccountId;
use airtext_sms::Keyword;
use chrono::Utc;

use crate::carriers::{CarrierError, OutboundSms};
use crate::http::AppState;
use crate::store::StoreResult;

/// Applies a keyword from `remote` to our `did`; returns the automatic reply to send, if any.
/// `remote` is the sender as normalised by routing (E.164, or a short code as received).
pub async fn apply_keyword(
    state: &AppState,
    did: &str,
    remote: &str,
    body: &str,
) -> StoreResult<Option<String>> {
    let replies = &state.config.opt_outs;
    Ok(match airtext_sms::classify(body) {
        Keyword::Stop => {
            state
                .store
                .set_opt_out(did, remote, true, Utc::now())
                .await?;
            tracing::info!(did, remote, "opt-out recorded (STOP)");
            Some(replies.stop_reply.clone())
        }
        Keyword::Start => {
            state
                .store
                .set_opt_out(did, remote, false, Utc::now())
                .await?;
            tracing::info!(did, remote, "opt-out cleared (START)");
            Some(replies.start_reply.clone())
        }
        Keyword::Help => Some(replies.help_reply.clone()),
        Keyword::None => None,
    })
}

/// Sends an automatic reply from `did` (`owner`'s number) to `remote` in the background, through the cheapest
/// carrier that takes it. Failures are logged: nobody waits for this text.
pub fn send_auto_reply(state: &AppState, owner: AccountId, did: &str, remote: &str, body: String) {
    let state = state.clone();
    let sms = OutboundSms {
        account: Some(owner),
        from: did.to_owned(),
        to: remote.to_owned(),
        body,
    };
    tokio::spawn(async move {
        let (_, segments) = crate::routing::encoding_of(&sms.body);
        state.lcr.learn_sender(&state.store, &sms.from).await;
        let candidates = match state.lcr.candidates(&sms.from, &sms.to, segments) {
            Ok(candidates) => candidates,
            Err(no_route) => {
                tracing::warn!(reason = no_route.0, "automatic reply not sent");
                return;
            }
        };
        let timeout = state.config.queue.send_timeout();
        for candidate in candidates {
            if !state.lcr.admit(candidate.index) {
                continue;
            }
            match tokio::time::timeout(timeout, candidate.carrier.send(sms.clone())).await {
                Ok(Ok(_)) => {
                    state.lcr.succeeded(candidate.index);
                    return;
                }
                Ok(Err(CarrierError::Permanent(reason))) => {
                    state.lcr.succeeded(candidate.index);
                    tracing::warn!(to = sms.to, reason, "automatic reply refused");
                    return;
                }
                Ok(Err(CarrierError::Retryable(_))) | Err(_) => state.lcr.failed(candidate.index),
            }
        }
        tracing::warn!(to = sms.to, "no carrier took the automatic reply");
    });
}
