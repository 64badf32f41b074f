//! The send status of a message and the one reducer that may change it.
//!
//! Status only moves forward: `queued → sending → sent → delivered`, and `failed` may follow
//! `queued`, `sending` or `sent`. Receipts arrive late, twice, or out of order (a carrier's
//! "delivered" can overtake its own submit response), so every writer asks [`SendStatus::advance`]
//! and ignores a transition it refuses. The gateway and the UI use this same function.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum SendStatus {
    /// Accepted and stored; waiting for a path out.
    Queued,
    /// Handed to a carrier or modem, no answer yet.
    Sending,
    /// Accepted by the next hop (carrier, or the recipient's account in-network).
    Sent,
    /// The recipient's handset or device has it.
    Delivered,
    /// It will not arrive; `failure_reason` says why.
    Failed,
}

impl SendStatus {
    /// The progress rank along `queued → sending → sent → delivered`; `failed` has none.
    fn rank(self) -> Option<u8> {
        match self {
            SendStatus::Queued => Some(0),
            SendStatus::Sending => Some(1),
            SendStatus::Sent => Some(2),
            SendStatus::Delivered => Some(3),
            SendStatus::Failed => None,
        }
    }

    /// The status after `incoming` is reported for a message now in `self`, or `None` when the
    /// report must be ignored (it would move backwards, repeats the current status, or comes
    /// after a final status).
    pub fn advance(self, incoming: SendStatus) -> Option<SendStatus> {
        match (self.rank(), incoming.rank()) {
            (Some(current), Some(next)) if next > current => Some(incoming),
            // A failure report ends any message that has not yet been delivered.
            (Some(current), None) if current < 3 => Some(SendStatus::Failed),
            _ => None,
        }
    }

    /// Whether no report can change this status any more.
    pub fn is_final(self) -> bool {
        matches!(self, SendStatus::Delivered | SendStatus::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SendStatus::Queued => "queued",
            SendStatus::Sending => "sending",
            SendStatus::Sent => "sent",
            SendStatus::Delivered => "delivered",
            SendStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<SendStatus> {
        Some(match s {
            "queued" => SendStatus::Queued,
            "sending" => SendStatus::Sending,
            "sent" => SendStatus::Sent,
            "delivered" => SendStatus::Delivered,
            "failed" => SendStatus::Failed,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::SendStatus::{self, *};

    const ALL: [SendStatus; 5] = [Queued, Sending, Sent, Delivered, Failed];

    #[test]
    fn moves_forward_along_the_happy_path() {
        assert_eq!(Queued.advance(Sending), Some(Sending));
        assert_eq!(Sending.advance(Sent), Some(Sent));
        assert_eq!(Sent.advance(Delivered), Some(Delivered));
        // A receipt that overtakes the submit response skips steps.
        assert_eq!(Queued.advance(Delivered), Some(Delivered));
    }

    #[test]
    fn never_moves_backwards_or_repeats() {
        for (i, from) in [Queued, Sending, Sent, Delivered].iter().enumerate() {
            for to in [Queued, Sending, Sent, Delivered].iter().take(i + 1) {
                assert_eq!(from.advance(*to), None, "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn failed_follows_anything_but_delivered_and_is_final() {
        assert_eq!(Queued.advance(Failed), Some(Failed));
        assert_eq!(Sending.advance(Failed), Some(Failed));
        assert_eq!(Sent.advance(Failed), Some(Failed));
        assert_eq!(Delivered.advance(Failed), None);
        for to in ALL {
            assert_eq!(Failed.advance(to), None);
        }
    }

    #[test]
    fn any_sequence_of_reports_is_monotonic() {
        // Exhaustive over all sequences of three reports: the status never returns to an
        // earlier rank and is final once delivered or failed.
        for a in ALL {
            for b in ALL {
                for c in ALL {
                    let mut status = Queued;
                    let mut seen = vec![status];
                    for report in [a, b, c] {
                        if let Some(next) = status.advance(report) {
                            assert!(!status.is_final());
                            status = next;
                            assert!(!seen.contains(&status));
                            seen.push(status);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for s in ALL {
            assert_eq!(SendStatus::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
    }
}
