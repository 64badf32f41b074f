//! Least-cost routing with failover, circuit breakers, back-off, validity and permanent
//! refusals, through the whole gateway (HTTP → store → queue → carriers), with carriers
//! written here so each test decides who fails and how.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airtext_api::messages::Message;
use airtext_api::{AccountId, MessageId, SendStatus};
use airtext_gateway::carriers::config::RateEntry;
use airtext_gateway::carriers::{Carrier, CarrierAccepted, CarrierError, OutboundSms};
use airtext_gateway::lcr::RoutedCarrier;
use airtext_gateway::store::InventoryNumber;
use async_trait::async_trait;
use common::{eventually, Device, TestGateway};
use serde_json::Value;

const OUR_DID: &str = "+14155550100";
const US_PHONE: &str = "+12025550143";
const UK_PHONE: &str = "+447911123456";
const FR_PHONE: &str = "+33612345678";
const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Accept,
    Retryable,
    Permanent,
}

/// A carrier that does what the test says and remembers what it was asked.
#[derive(Debug)]
struct Fake {
    name: &'static str,
    numbers: Vec<&'static str>,
    mode: Mutex<Mode>,
    calls: AtomicUsize,
    sent: Mutex<Vec<OutboundSms>>,
    /// Plays an SMPP carrier whose every bind slot another node holds.
    elsewhere: AtomicBool,
}

impl Fake {
    fn new(name: &'static str, numbers: Vec<&'static str>) -> Arc<Fake> {
        Arc::new(Fake {
            name,
            numbers,
            mode: Mutex::new(Mode::Accept),
            calls: AtomicUsize::new(0),
            sent: Mutex::new(Vec::new()),
            elsewhere: AtomicBool::new(false),
        })
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn sent(&self) -> Vec<OutboundSms> {
        self.sent.lock().unwrap().clone()
    }

    fn routed(self: &Arc<Self>, any_sender: bool, rates: &[(&str, f64)]) -> RoutedCarrier {
        RoutedCarrier {
            carrier: self.clone(),
            any_sender,
            rates: rates
                .iter()
                .map(|(prefix, cost)| RateEntry {
                    prefix: (*prefix).to_owned(),
                    cost_per_segment: *cost,
                })
                .collect(),
        }
    }
}

#[async_trait]
impl Carrier for Fake {
    fn name(&self) -> &str {
        self.name
    }

    fn inventory(&self) -> Vec<InventoryNumber> {
        self.numbers
            .iter()
            .map(|n| InventoryNumber {
                number: (*n).to_owned(),
                carrier: self.name.to_owned(),
                country: "US".to_owned(),
            })
            .collect()
    }

    fn bound_elsewhere(&self) -> bool {
        self.elsewhere.load(Ordering::SeqCst)
    }

    async fn send(&self, sms: OutboundSms) -> Result<CarrierAccepted, CarrierError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Accept => {
                self.sent.lock().unwrap().push(sms);
                Ok(CarrierAccepted {
                    carrier_message_id: format!("{}-{n}", self.name),
                })
            }
            Mode::Retryable => Err(CarrierError::Retryable("busy".into())),
            Mode::Permanent => Err(CarrierError::Permanent("invalid destination".into())),
        }
    }
}

/// The simulator is off: only the test's carriers run.
async fn gateway(
    adjust: impl FnOnce(&mut airtext_gateway::Config),
    carriers: Vec<RoutedCarrier>,
) -> (TestGateway, Device) {
    let gw = TestGateway::start_with_carriers(
        |c| {
            c.simulator.enabled = false;
            adjust(c);
        },
        carriers,
    )
    .await;
    let alice = gw.sign_up("alice").await;
    let number = gw.claim_number(&alice, "415").await;
    assert_eq!(number, OUR_DID);
    (gw, alice)
}

async fn stored(gw: &TestGateway, device: &Device, sent: &Value) -> Message {
    let account: AccountId = device.account_id.parse().unwrap();
    let id: MessageId = sent["id"].as_str().unwrap().parse().unwrap();
    gw.state()
        .store
        .message(account, id)
        .await
        .unwrap()
        .expect("the message is stored")
}

async fn settled(gw: &TestGateway, device: &Device, sent: &Value, timeout: Duration) -> Message {
    eventually(timeout, || async {
        let m = stored(gw, device, sent).await;
        (m.status != SendStatus::Queued).then_some(m)
    })
    .await
}

fn message_id(sent: &Value) -> MessageId {
    sent["id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cheapest_carrier_that_may_send_takes_it_and_its_cost_is_recorded() {
    // home owns our DID; the others may send from any DID. Longest prefix wins per carrier.
    let home = Fake::new("home", vec![OUR_DID]);
    let dear = Fake::new("dear", vec![]);
    let cheap = Fake::new("cheap", vec![]);
    let narrow = Fake::new("narrow", vec!["+14155550101"]);
    let (gw, alice) = gateway(
        |_| {},
        vec![
            home.routed(false, &[("+", 0.010)]),
            dear.routed(true, &[("+1", 0.020), ("+44", 0.030)]),
            cheap.routed(true, &[("+1", 0.008), ("+1202", 0.001)]),
            // Cheapest of all, but not allowed to send from our DID.
            narrow.routed(false, &[("+", 0.0)]),
        ],
    )
    .await;

    // Two segments to +1202…: cheap at 0.001 × 2.
    let long = "x".repeat(200);
    let sent = gw.send(&alice, US_PHONE, &long).await;
    let m = settled(&gw, &alice, &sent, WAIT).await;
    assert_eq!(m.status, SendStatus::Sent, "{m:?}");
    let record = gw
        .state()
        .store
        .carrier_record(message_id(&sent))
        .await
        .unwrap()
        .expect("carrier recorded");
    assert_eq!(record.carrier, "cheap");
    assert_eq!(record.carrier_message_id, "cheap-0");
    assert!((record.cost.unwrap() - 0.002).abs() < 1e-12, "{record:?}");
    assert_eq!(cheap.sent()[0].from, OUR_DID);

    // To the UK: cheap has no price; home (0.010, catch-all) beats dear (0.030).
    let sent = gw.send(&alice, UK_PHONE, "hello").await;
    settled(&gw, &alice, &sent, WAIT).await;
    let record = gw
        .state()
        .store
        .carrier_record(message_id(&sent))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (record.carrier.as_str(), record.cost),
        ("home", Some(0.010))
    );
    assert_eq!(narrow.calls(), 0, "narrow may not send from our DID");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_carrier_for_the_destination_fails_at_once_saying_why() {
    let only_us = Fake::new("only-us", vec![OUR_DID]);
    let (gw, alice) = gateway(|_| {}, vec![only_us.routed(false, &[("+1", 0.01)])]).await;
    let sent = gw.send(&alice, FR_PHONE, "bonjour").await;
    let m = settled(&gw, &alice, &sent, WAIT).await;
    assert_eq!(m.status, SendStatus::Failed);
    let reason = m.failure_reason.unwrap();
    assert!(
        reason.contains(&format!("no carrier can send from {OUR_DID} to {FR_PHONE}")),
        "{reason}"
    );
    assert_eq!(only_us.calls(), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_carrier_is_routed_around_and_its_breaker_opens_and_closes() {
    let cheap = Fake::new("cheap", vec![OUR_DID]);
    let dear = Fake::new("dear", vec![]);
    let (gw, alice) = gateway(
        |c| {
            c.queue.breaker_failures = 2;
            c.queue.breaker_cooldown_secs = 1;
        },
        vec![
            cheap.routed(false, &[("+", 0.001)]),
            dear.routed(true, &[("+", 0.01)]),
        ],
    )
    .await;
    cheap.set(Mode::Retryable);

    // Failover: the cheapest fails, the next takes it at once (no back-off).
    for (i, expected_cheap_calls) in [(0, 1), (1, 2)] {
        let sent = gw.send(&alice, US_PHONE, &format!("failover {i}")).await;
        let m = settled(&gw, &alice, &sent, WAIT).await;
        assert_eq!(m.status, SendStatus::Sent);
        let record = gw
            .state()
            .store
            .carrier_record(m.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.carrier, "dear");
        assert_eq!(cheap.calls(), expected_cheap_calls);
    }
    // Two failures in a row: the breaker is open and cheap is not even tried.
    assert!(gw.state().lcr.is_open("cheap"));
    let sent = gw.send(&alice, US_PHONE, "while open").await;
    settled(&gw, &alice, &sent, WAIT).await;
    assert_eq!(cheap.calls(), 2, "an open breaker skips its carrier");
    assert_eq!(dear.sent().len(), 3);

    // Cheap recovers; after the cool-down one trial goes to it and closes the breaker.
    cheap.set(Mode::Accept);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let sent = gw.send(&alice, US_PHONE, "trial").await;
    let m = settled(&gw, &alice, &sent, WAIT).await;
    let record = gw
        .state()
        .store
        .carrier_record(m.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.carrier, "cheap");
    assert!(!gw.state().lcr.is_open("cheap"));
    let sent = gw.send(&alice, US_PHONE, "closed again").await;
    let m = settled(&gw, &alice, &sent, WAIT).await;
    let record = gw
        .state()
        .store
        .carrier_record(m.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.carrier, "cheap");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_until_the_validity_runs_out_then_fail_with_the_last_reason() {
    let a = Fake::new("a", vec![OUR_DID]);
    let b = Fake::new("b", vec![]);
    let (gw, alice) = gateway(
        |c| {
            c.queue.validity_secs = 4;
            c.queue.first_backoff_secs = 1;
            c.queue.max_backoff_secs = 2;
            c.queue.breaker_failures = 1_000;
        },
        vec![
            a.routed(false, &[("+", 0.0)]),
            b.routed(true, &[("+", 0.1)]),
        ],
    )
    .await;
    a.set(Mode::Retryable);
    b.set(Mode::Retryable);
    let started = std::time::Instant::now();
    let sent = gw.send(&alice, US_PHONE, "never").await;

    // Each round tries both; the next round waits for the back-off (1 s, then 2 s). Only
    // lower bounds on time are asserted: a slow machine can make rounds late, never early.
    eventually(WAIT, || async {
        (a.calls() >= 1 && b.calls() >= 1).then_some(())
    })
    .await;
    eventually(WAIT, || async { (a.calls() >= 2).then_some(()) }).await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the second round waited for the back-off: {:?}",
        started.elapsed()
    );

    let m = settled(&gw, &alice, &sent, Duration::from_secs(60)).await;
    let elapsed = started.elapsed();
    assert_eq!(m.status, SendStatus::Failed);
    let reason = m.failure_reason.unwrap();
    assert!(
        reason.contains("no carrier took it within 4 seconds"),
        "{reason}"
    );
    assert!(
        reason.contains("b: busy"),
        "the last attempt's reason: {reason}"
    );
    // Tries at 0, +1 s, +2 s (1 doubled), +4 s capped by validity: at most 4 rounds (fewer
    // when a slow machine makes them late), each trying both carriers.
    assert!((2..=4).contains(&a.calls()), "rounds: {}", a.calls());
    assert!(elapsed >= Duration::from_secs(4), "{elapsed:?}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_fails_at_once_without_trying_others() {
    let cheap = Fake::new("cheap", vec![OUR_DID]);
    let dear = Fake::new("dear", vec![]);
    let (gw, alice) = gateway(
        |_| {},
        vec![
            cheap.routed(false, &[("+", 0.001)]),
            dear.routed(true, &[("+", 0.01)]),
        ],
    )
    .await;
    cheap.set(Mode::Permanent);
    let sent = gw.send(&alice, US_PHONE, "to nowhere").await;
    let m = settled(&gw, &alice, &sent, WAIT).await;
    assert_eq!(m.status, SendStatus::Failed);
    let reason = m.failure_reason.unwrap();
    assert!(reason.contains("invalid destination"), "{reason}");
    assert_eq!((cheap.calls(), dear.calls()), (1, 0));
    // A refusal is an answer: it does not count against the carrier's breaker.
    assert!(!gw.state().lcr.is_open("cheap"));
    gw.stop().await;
}

/// A text whose cheapest carrier is bound on another node (its SMSC's bind limit is taken
/// there) is left for that node: it waits in the queue, never goes through a dearer carrier
/// and never fails for it; once this node holds the bind it goes through the cheap carrier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_bound_on_another_node_is_left_to_that_node_not_failed_over() {
    let smsc = Fake::new("smsc", vec![OUR_DID]);
    let dear = Fake::new("dear", vec![]);
    smsc.elsewhere.store(true, Ordering::SeqCst);
    let (gw, alice) = gateway(
        |_| {},
        vec![
            smsc.routed(true, &[("+", 0.001)]),
            dear.routed(true, &[("+", 0.050)]),
        ],
    )
    .await;
    let sent = gw.send(&alice, US_PHONE, "left for the bound node").await;
    // Several offers go by (one every 0.5 s); none of them sends or fails it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smsc.calls(), 0);
    assert_eq!(dear.calls(), 0, "no failover to the dearer carrier");
    assert_eq!(stored(&gw, &alice, &sent).await.status, SendStatus::Queued);

    smsc.elsewhere.store(false, Ordering::SeqCst);
    let m = settled(&gw, &alice, &sent, WAIT).await;
    assert_eq!(m.status, SendStatus::Sent, "{m:?}");
    assert_eq!(smsc.calls(), 1);
    assert_eq!(dear.calls(), 0);
    gw.stop().await;
}

/// Verification codes go by least-cost routing too: the cheapest carrier with a price for
/// the number sends it, whichever numbers it brings, and a carrier that fails is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_codes_take_the_cheapest_carrier_for_the_number() {
    let home = Fake::new("home", vec![OUR_DID]);
    let cheap_us = Fake::new("cheap_us", vec![]);
    let uk_only = Fake::new("uk_only", vec![]);
    let (gw, alice) = gateway(
        |_| {},
        vec![
            home.routed(false, &[("+", 0.010)]),
            // Cheapest for +1, though it owns none of our numbers and is not any_sender:
            // a code comes from the gateway's own sender, not from a DID.
            cheap_us.routed(false, &[("+1", 0.002)]),
            uk_only.routed(false, &[("+44", 0.001)]),
        ],
    )
    .await;
    let ask = |phone: &'static str| {
        let gw = &gw;
        let alice = &alice;
        async move {
            gw.post(
                "/v1/identities",
                Some(&alice.token),
                serde_json::json!({"kind": "phone", "value": phone}),
            )
            .await
        }
    };
    let (status, body) = ask(US_PHONE).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(cheap_us.sent().len(), 1);
    assert_eq!(cheap_us.sent()[0].to, US_PHONE);
    assert!(cheap_us.sent()[0].body.contains("Airtext code"));
    assert_eq!(home.calls(), 0);

    // The cheapest one is busy: the next cheapest sends it.
    cheap_us.set(Mode::Retryable);
    let (status, body) = ask("+12025550144").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(home.sent().len(), 1);

    // The UK number goes through the UK carrier; France has no price anywhere but home's.
    let (status, body) = ask(UK_PHONE).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(uk_only.sent().len(), 1);
    assert_eq!(home.sent().len(), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_code_to_a_number_no_carrier_prices_is_refused_saying_why() {
    let home = Fake::new("home", vec![OUR_DID]);
    let (gw, alice) = gateway(|_| {}, vec![home.routed(false, &[("+1", 0.010)])]).await;
    let (status, body) = gw
        .post(
            "/v1/identities",
            Some(&alice.token),
            serde_json::json!({"kind": "phone", "value": FR_PHONE}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_address");
    assert!(
        body["message"].as_str().unwrap().contains("no rate table"),
        "{body}"
    );
    assert_eq!(home.calls(), 0);
    gw.stop().await;
}
