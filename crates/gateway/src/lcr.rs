//! Least-cost routing: which carriers may take a text, in which order, and which are resting.
//!
//! For a text from one of our DIDs to an outside number, the *candidates* are the carriers
//! that
//! 1. may send from that DID: the carrier that brought the number into the inventory, or any
//!    carrier configured with `any_sender`; and
//! 2. have a price for the destination: the longest prefix of their rate table that the
//!    number starts with (`+` alone matches every number).
//!
//! Candidates are ordered by what the send costs ([`send_cost`]), ties in configuration order. A
//! text with no candidate can never go and fails at once, saying why.
//!
//! Each carrier has a *circuit breaker*: `queue.breaker_failures` retryable failures in a row
//! open it, and for `queue.breaker_cooldown_secs` routing skips that carrier (so one dead link
//! does not cost every text a timeout). Then it is half-open: exactly one text is let through
//! as a trial; success closes the breaker, failure opens it for another cool-down. A
//! permanent refusal (bad destination) is the text's fault, not the carrier's: it counts as
//! an answer and closes the breaker. Breakers are per gateway process (each node learns on
//! its own; nothing about a carrier's health needs to survive a restart).
//!
//! Which carrier owns a DID comes from the carriers' configured `numbers` (the same lists
//! that fill the inventory), so it follows the configuration currently running. A number a
//! carrier sold the gateway later (Twilio's `provision`) is in no list: its carrier is learnt
//! from the inventory the first time a text goes from it ([`Lcr::learn_sender`]), on whichever
//! node sends it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::carriers::config::{CarrierConfig, RateEntry};
use crate::carriers::Carrier;
use crate::config::QueueConfig;
use crate::store::rules::send_cost;
use crate::store::SharedStore;

/// A carrier with what routing needs to know about it.
#[derive(Debug, Clone)]
pub struct RoutedCarrier {
    pub carrier: Arc<dyn Carrier>,
    /// May send from any of our DIDs, not only the numbers it brings.
    pub any_sender: bool,
    pub rates: Vec<RateEntry>,
}

impl RoutedCarrier {
    /// The routing facts of a built carrier: from its `[[carriers]]` entry when it has one
    /// (matched by name); a carrier without one (the default simulator) may send from any
    /// DID to anywhere, for free.
    pub fn from_config(carrier: Arc<dyn Carrier>, configs: &[CarrierConfig]) -> RoutedCarrier {
        match configs.iter().find(|c| c.name() == carrier.name()) {
            Some(config) => RoutedCarrier {
                any_sender: config.any_sender(),
                rates: config.rates().to_vec(),
                carrier,
            },
            None => RoutedCarrier {
                carrier,
                any_sender: true,
                rates: vec![RateEntry {
                    prefix: "+".to_owned(),
                    cost_per_segment: 0.0,
                }],
            },
        }
    }

    /// The price per segment to `to`: the longest matching prefix wins. A short code (no
    /// `+`) is priced only by a catch-all `+`.
    pub fn price(&self, to: &str) -> Option<f64> {
        self.rates
            .iter()
            .filter(|rate| rate.prefix == "+" || to.starts_with(&rate.prefix))
            .max_by_key(|rate| rate.prefix.len())
            .map(|rate| rate.cost_per_segment)
    }
}

/// One carrier that may take a text, and what it would cost.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub index: usize,
    pub carrier: Arc<dyn Carrier>,
    pub cost: f64,
}

/// The routing table and the breakers.
#[derive(Debug)]
pub struct Lcr {
    routes: Vec<RoutedCarrier>,
    breakers: Vec<Mutex<Breaker>>,
    /// DID → index of the carrier that brought it.
    owners: HashMap<String, usize>,
    /// Bought numbers (in no configured list) → index of the carrier that sold them.
    bought: Mutex<HashMap<String, usize>>,
    threshold: u32,
    cooldown: Duration,
}

/// Why a text has no candidate: `.0` says it in words. With no carrier running at all (a
/// gateway started without carriers, or all of them left out of the configuration for a
/// while) texts wait in the queue instead of failing: [`NoRoute::waits`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoRoute(pub String);

impl NoRoute {
    const NO_CARRIER: &'static str = "no carrier is configured";

    /// Whether the text should wait (no carrier at all) rather than fail.
    pub fn waits(&self) -> bool {
        self.0 == NoRoute::NO_CARRIER
    }
}

impl Lcr {
    pub fn new(routes: Vec<RoutedCarrier>, queue: &QueueConfig) -> Lcr {
        let mut owners = HashMap::new();
        for (index, route) in routes.iter().enumerate() {
            for number in route.carrier.inventory() {
                // Configuration order decides if two carriers list the same number.
                owners.entry(number.number).or_insert(index);
            }
        }
        Lcr {
            breakers: routes
                .iter()
                .map(|_| Mutex::new(Breaker::default()))
                .collect(),
            routes,
            owners,
            bought: Mutex::new(HashMap::new()),
            threshold: queue.breaker_failures.max(1),
            cooldown: queue.breaker_cooldown(),
        }
    }

    fn owner_of(&self, did: &str) -> Option<usize> {
        self.owners.get(did).copied().or_else(|| {
            self.bought
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(did)
                .copied()
        })
    }

    /// Before routing a text from `from`: a number no configured list names may have been
    /// bought from a carrier; the inventory says which, and routing remembers it.
    pub async fn learn_sender(&self, store: &SharedStore, from: &str) {
        if self.owner_of(from).is_some() {
            return;
        }
        match store.number_carrier(from).await {
            Ok(Some(name)) => {
                if let Some(index) = self.routes.iter().position(|r| r.carrier.name() == name) {
                    self.bought
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(from.to_owned(), index);
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(from, %error, "cannot look up which carrier a number came from");
            }
        }
    }

    pub fn carriers(&self) -> impl Iterator<Item = &Arc<dyn Carrier>> {
        self.routes.iter().map(|route| &route.carrier)
    }

    /// The carriers for a system text (a verification code, sent from the gateway's own
    /// alphanumeric sender, not from a DID): every carrier with a price for `to`, whichever
    /// numbers it brings, cheapest first (ties in configuration order), breakers not
    /// consulted.
    pub fn system_candidates(&self, to: &str, segments: u32) -> Result<Vec<Candidate>, NoRoute> {
        let mut found: Vec<Candidate> = self
            .routes
            .iter()
            .enumerate()
            .filter_map(|(index, route)| {
                route.price(to).map(|price| Candidate {
                    index,
                    carrier: Arc::clone(&route.carrier),
                    cost: send_cost(price, segments),
                })
            })
            .collect();
        if found.is_empty() {
            return Err(NoRoute(if self.routes.is_empty() {
                NoRoute::NO_CARRIER.to_owned()
            } else {
                format!("no carrier can text {to}: no rate table has a prefix for it")
            }));
        }
        found.sort_by(|a, b| a.cost.total_cmp(&b.cost));
        Ok(found)
    }

    /// The carriers that may send `segments` segments from `from` to `to`, cheapest first
    /// (ties in configuration order), breakers not consulted.
    pub fn candidates(
        &self,
        from: &str,
        to: &str,
        segments: u32,
    ) -> Result<Vec<Candidate>, NoRoute> {
        let owner = self.owner_of(from);
        let mut found: Vec<Candidate> = Vec::new();
        let mut may_send = false;
        for (index, route) in self.routes.iter().enumerate() {
            if !(route.any_sender || owner == Some(index)) {
                continue;
            }
            may_send = true;
            if let Some(price) = route.price(to) {
                found.push(Candidate {
                    index,
                    carrier: Arc::clone(&route.carrier),
                    cost: send_cost(price, segments),
                });
            }
        }
        if found.is_empty() {
            let why = if self.routes.is_empty() {
                NoRoute::NO_CARRIER.to_owned()
            } else if !may_send {
                format!("no carrier can send from {from} to {to}: {from} belongs to no configured carrier and none has any_sender")
            } else {
                format!(
                    "no carrier can send from {from} to {to}: no rate table has a prefix for it"
                )
            };
            return Err(NoRoute(why));
        }
        // Stable sort: equal costs keep configuration order.
        found.sort_by(|a, b| a.cost.total_cmp(&b.cost));
        Ok(found)
    }

    /// Whether the candidate may be tried now. A `true` from a half-open breaker is its one
    /// trial, and must be followed by [`Lcr::succeeded`] or [`Lcr::failed`].
    pub fn admit(&self, index: usize) -> bool {
        self.with_breaker(index, |b| b.admit(Instant::now()))
            .unwrap_or(false)
    }

    /// The carrier answered (took the text, or refused it for good).
    pub fn succeeded(&self, index: usize) {
        self.with_breaker(index, Breaker::close);
    }

    /// A retryable failure or a timeout.
    pub fn failed(&self, index: usize) {
        let (threshold, cooldown) = (self.threshold, self.cooldown);
        let opened = self.with_breaker(index, |b| b.fail(Instant::now(), threshold, cooldown));
        if opened == Some(true) {
            if let Some(route) = self.routes.get(index) {
                tracing::warn!(
                    carrier = route.carrier.name(),
                    cooldown_secs = cooldown.as_secs(),
                    "carrier circuit breaker open: routing around it"
                );
            }
        }
    }

    /// Whether the carrier's breaker is open now (for tests and health).
    pub fn is_open(&self, name: &str) -> bool {
        self.routes
            .iter()
            .position(|route| route.carrier.name() == name)
            .and_then(|index| self.with_breaker(index, |b| b.open_until.is_some()))
            .unwrap_or(false)
    }

    fn with_breaker<T>(&self, index: usize, f: impl FnOnce(&mut Breaker) -> T) -> Option<T> {
        let breaker = self.breakers.get(index)?;
        // A poisoned lock only means another thread panicked mid-update of plain counters.
        let mut guard = breaker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Some(f(&mut guard))
    }
}

/// One carrier's breaker: closed (`open_until` none), open (until then), or half-open (past
/// `open_until`, one trial at a time).
#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    trial: bool,
}

impl Breaker {
    fn admit(&mut self, now: Instant) -> bool {
        match self.open_until {
            None => true,
            Some(until) if now < until => false,
            Some(_) if self.trial => false,
            Some(_) => {
                self.trial = true;
                true
            }
        }
    }

    fn close(&mut self) {
        *self = Breaker::default();
    }

    /// Returns whether this failure opened the breaker.
    fn fail(&mut self, now: Instant, threshold: u32, cooldown: Duration) -> bool {
        self.failures = self.failures.saturating_add(1);
        if self.trial || (self.open_until.is_none() && self.failures >= threshold) {
            self.trial = false;
            self.open_until = Some(now + cooldown);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]

    use async_trait::async_trait;

    use super::*;
    use crate::carriers::{CarrierAccepted, CarrierError, OutboundSms};
    use crate::store::InventoryNumber;

    #[derive(Debug)]
    struct Named(&'static str, Vec<&'static str>);

    #[async_trait]
    impl Carrier for Named {
        fn name(&self) -> &str {
            self.0
        }
        fn inventory(&self) -> Vec<InventoryNumber> {
            self.1
                .iter()
                .map(|n| InventoryNumber {
                    number: (*n).to_owned(),
                    carrier: self.0.to_owned(),
                    country: "US".to_owned(),
                })
                .collect()
        }
        async fn send(&self, _: OutboundSms) -> Result<CarrierAccepted, CarrierError> {
            Err(CarrierError::Retryable("test".into()))
        }
    }

    fn route(
        name: &'static str,
        numbers: Vec<&'static str>,
        any: bool,
        rates: &[(&str, f64)],
    ) -> RoutedCarrier {
        RoutedCarrier {
            carrier: Arc::new(Named(name, numbers)),
            any_sender: any,
            rates: rates
                .iter()
                .map(|(p, c)| RateEntry {
                    prefix: (*p).to_owned(),
                    cost_per_segment: *c,
                })
                .collect(),
        }
    }

    fn names(c: &[Candidate]) -> Vec<&str> {
        c.iter().map(|c| c.carrier.name()).collect()
    }

    #[test]
    fn longest_prefix_and_cost_times_segments_decide() {
        let lcr = Lcr::new(
            vec![
                route(
                    "a",
                    vec!["+14155550100"],
                    false,
                    &[("+", 0.01), ("+44", 0.05)],
                ),
                route("b", vec![], true, &[("+1", 0.02), ("+44", 0.03)]),
                route("c", vec![], true, &[("+1", 0.01)]),
            ],
            &QueueConfig::default(),
        );
        let us = lcr.candidates("+14155550100", "+12025550143", 2).unwrap();
        assert_eq!(names(&us), ["a", "c", "b"]);
        assert!((us[2].cost - 0.04).abs() < 1e-12);
        let uk = lcr.candidates("+14155550100", "+447911123456", 1).unwrap();
        assert_eq!(names(&uk), ["b", "a"]);
        // Not a's number: only the any_sender carriers.
        let other = lcr.candidates("+12125550100", "+12025550143", 1).unwrap();
        assert_eq!(names(&other), ["c", "b"]);
        let none = lcr
            .candidates("+12125550100", "+33612345678", 1)
            .unwrap_err();
        assert!(none.0.contains("+33612345678"), "{none:?}");
    }

    #[test]
    fn a_number_only_its_carrier_may_send_from() {
        let lcr = Lcr::new(
            vec![route("a", vec!["+14155550100"], false, &[("+", 0.01)])],
            &QueueConfig::default(),
        );
        let none = lcr
            .candidates("+12125550100", "+12025550143", 1)
            .unwrap_err();
        assert!(none.0.contains("from +12125550100"), "{none:?}");
    }

    #[test]
    fn the_breaker_opens_rests_and_lets_one_trial_through() {
        let mut b = Breaker::default();
        let now = Instant::now();
        let cool = Duration::from_secs(10);
        assert!(!b.fail(now, 3, cool));
        assert!(!b.fail(now, 3, cool));
        assert!(b.admit(now));
        assert!(b.fail(now, 3, cool));
        assert!(!b.admit(now + Duration::from_secs(5)));
        let later = now + Duration::from_secs(11);
        assert!(b.admit(later), "half-open lets a trial through");
        assert!(!b.admit(later), "only one trial at a time");
        assert!(b.fail(later, 3, cool), "a failed trial opens it again");
        assert!(!b.admit(later + Duration::from_secs(1)));
        let again = later + Duration::from_secs(11);
        assert!(b.admit(again));
        b.close();
        assert!(b.admit(again) && b.admit(again));
    }
}
