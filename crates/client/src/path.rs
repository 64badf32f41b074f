//! The path policy: which way a text leaves this device, per contact.
//!
//! A contact's setting is `auto` (the default), `cloud` or `cellular`, synced across the
//! account's devices; whether *this* device has cellular (and is roaming) is its own fact.
//! `auto` picks the cloud when the peer is in-network, when this device has no cellular, or
//! when it is roaming; otherwise cellular. Only phone numbers can be texted over cellular, so
//! a username or e-mail address always goes by the cloud. When the chosen path fails, the other
//! path is used at once if the contact allows fallback, and offered otherwise.
//!
//! Everything here is pure: [`decide`] and [`on_failure`] take facts and return decisions, so
//! the rules are tested without a network or a modem.

use std::time::Duration;

use airtext_api::contacts::PathChoice;
use serde::{Deserialize, Serialize};

use crate::cellular::CellularStatus;

/// How long a `GET /v1/lookup` answer is trusted.
pub const LOOKUP_TTL: Duration = Duration::from_secs(6 * 60 * 60);

/// The way a text actually goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum SendPath {
    /// Through the gateway (in-network, or out through a carrier).
    Cloud,
    /// Through this device's own modem.
    Cellular,
}

impl SendPath {
    pub fn as_str(self) -> &'static str {
        match self {
            SendPath::Cloud => "cloud",
            SendPath::Cellular => "cellular",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cloud" => Some(SendPath::Cloud),
            "cellular" => Some(SendPath::Cellular),
            _ => None,
        }
    }

    pub fn other(self) -> Self {
        match self {
            SendPath::Cloud => SendPath::Cellular,
            SendPath::Cellular => SendPath::Cloud,
        }
    }
}

/// The facts a decision rests on.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The contact's setting (or the one given for this send).
    pub choice: PathChoice,
    /// Whether the contact allows using the other path without asking.
    pub fallback: bool,
    /// Whether the peer is a phone number (only those can be texted over cellular).
    pub peer_is_phone: bool,
    /// Whether the peer is an Airtext account; `None` when the gateway could not be asked.
    pub in_network: Option<bool>,
    pub cellular: CellularStatus,
}

/// Which path to try first, and which may follow a failure without asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub path: SendPath,
    /// The path to use at once if `path` fails (the contact allows fallback and it can work).
    pub fallback: Option<SendPath>,
    /// Why, in words (shown in the thread's details).
    pub reason: &'static str,
}

/// Decides the path for one text.
pub fn decide(facts: &Facts) -> Decision {
    let cellular_usable = facts.peer_is_phone && facts.cellular.available;
    let (path, reason) = match facts.choice {
        PathChoice::Cloud => (SendPath::Cloud, "the contact is set to cloud"),
        PathChoice::Cellular if !facts.peer_is_phone => (
            SendPath::Cloud,
            "only phone numbers can be texted over cellular",
        ),
        PathChoice::Cellular => (SendPath::Cellular, "the contact is set to cellular"),
        PathChoice::Auto if !facts.peer_is_phone => (
            SendPath::Cloud,
            "usernames and e-mail addresses are in-network",
        ),
        PathChoice::Auto if !facts.cellular.available => {
            (SendPath::Cloud, "this device has no cellular service")
        }
        PathChoice::Auto if facts.cellular.roaming => (SendPath::Cloud, "this device is roaming"),
        PathChoice::Auto if facts.in_network == Some(true) => {
            (SendPath::Cloud, "the peer is on Airtext")
        }
        PathChoice::Auto => (SendPath::Cellular, "the peer is outside Airtext"),
    };
    let other_usable = match path.other() {
        SendPath::Cellular => cellular_usable,
        SendPath::Cloud => true,
    };
    Decision {
        path,
        fallback: (facts.fallback && other_usable).then_some(path.other()),
        reason,
    }
}

/// What to do after the chosen path failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureAction {
    /// Use the other path now (the contact allows fallback).
    UseOther(SendPath),
    /// Keep the text queued and retry this path later; the app offers the other path.
    RetryAndOffer(SendPath),
    /// Keep the text queued and retry later; no other path can work.
    Retry,
    /// The text cannot be sent this way and nothing else can help: fail it.
    Fail,
}

/// Decides what follows a failure on `decision.path`. `transient` says whether the failure is
/// about the path (network down, modem gone) rather than the text (refused for good).
pub fn on_failure(decision: &Decision, transient: bool, facts: &Facts) -> FailureAction {
    let other = decision.path.other();
    let other_usable = match other {
        SendPath::Cellular => facts.peer_is_phone && facts.cellular.available,
        SendPath::Cloud => true,
    };
    match (decision.fallback, transient, other_usable) {
        (Some(other), _, _) => FailureAction::UseOther(other),
        (None, true, true) => FailureAction::RetryAndOffer(other),
        (None, true, false) => FailureAction::Retry,
        (None, false, true) if decision.path == SendPath::Cellular => {
            FailureAction::RetryAndOffer(other)
        }
        (None, false, _) => FailureAction::Fail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(choice: PathChoice) -> Facts {
        Facts {
            choice,
            fallback: false,
            peer_is_phone: true,
            in_network: Some(false),
            cellular: CellularStatus {
                available: true,
                roaming: false,
                name: "test".into(),
            },
        }
    }

    #[test]
    fn auto_prefers_cellular_only_for_outside_phones_at_home() {
        assert_eq!(decide(&facts(PathChoice::Auto)).path, SendPath::Cellular);

        let mut f = facts(PathChoice::Auto);
        f.in_network = Some(true);
        assert_eq!(decide(&f).path, SendPath::Cloud);

        let mut f = facts(PathChoice::Auto);
        f.cellular.available = false;
        assert_eq!(decide(&f).path, SendPath::Cloud);

        let mut f = facts(PathChoice::Auto);
        f.cellular.roaming = true;
        assert_eq!(decide(&f).path, SendPath::Cloud);

        let mut f = facts(PathChoice::Auto);
        f.peer_is_phone = false;
        assert_eq!(decide(&f).path, SendPath::Cloud);

        // The gateway could not be asked: a device with cellular uses it.
        let mut f = facts(PathChoice::Auto);
        f.in_network = None;
        assert_eq!(decide(&f).path, SendPath::Cellular);
    }

    #[test]
    fn explicit_choices_are_obeyed_where_possible() {
        let mut f = facts(PathChoice::Cloud);
        f.in_network = Some(false);
        assert_eq!(decide(&f).path, SendPath::Cloud);

        let mut f = facts(PathChoice::Cellular);
        f.in_network = Some(true);
        f.cellular.roaming = true;
        assert_eq!(decide(&f).path, SendPath::Cellular);

        let mut f = facts(PathChoice::Cellular);
        f.peer_is_phone = false;
        assert_eq!(decide(&f).path, SendPath::Cloud);
    }

    #[test]
    fn fallback_is_offered_only_when_the_other_path_can_work() {
        let mut f = facts(PathChoice::Cloud);
        f.fallback = true;
        assert_eq!(decide(&f).fallback, Some(SendPath::Cellular));
        f.cellular.available = false;
        assert_eq!(decide(&f).fallback, None);

        let mut f = facts(PathChoice::Cellular);
        f.fallback = true;
        assert_eq!(decide(&f).fallback, Some(SendPath::Cloud));
        f.fallback = false;
        assert_eq!(decide(&f).fallback, None);
    }

    #[test]
    fn failures_use_offer_retry_or_fail() {
        let mut f = facts(PathChoice::Cellular);
        f.fallback = true;
        let d = decide(&f);
        assert_eq!(
            on_failure(&d, true, &f),
            FailureAction::UseOther(SendPath::Cloud)
        );

        let f = facts(PathChoice::Cellular);
        let d = decide(&f);
        assert_eq!(
            on_failure(&d, true, &f),
            FailureAction::RetryAndOffer(SendPath::Cloud)
        );
        assert_eq!(
            on_failure(&d, false, &f),
            FailureAction::RetryAndOffer(SendPath::Cloud)
        );

        let mut f = facts(PathChoice::Cloud);
        f.cellular.available = false;
        let d = decide(&f);
        assert_eq!(on_failure(&d, true, &f), FailureAction::Retry);
        // The gateway refused the text for good (unknown recipient): nothing else helps.
        assert_eq!(on_failure(&d, false, &f), FailureAction::Fail);

        let f = facts(PathChoice::Cloud);
        let d = decide(&f);
        assert_eq!(
            on_failure(&d, true, &f),
            FailureAction::RetryAndOffer(SendPath::Cellular)
        );
    }
}
