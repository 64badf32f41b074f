//! The simulator carrier: an in-process phone network for the embedded default, demos and
//! tests.
//!
//! Outside phones are virtual. What they receive (texts through [`Carrier::send`], and the
//! gateway's e-mail through [`Simulator::record_email`]) lands in a bounded in-memory
//! *outbox* (the newest [`OUTBOX_CAPACITY`] deliveries; older ones fall off), which
//! `GET /v1/simulator/outbox` shows: each delivery only to the account it was sent for (its
//! sender, or the account that asked for a code), so no account reads another's texts or
//! codes. After `receipt_delay_ms` each accepted text gets a
//! `Delivered` receipt on the carrier-report channel, and, when `auto_reply` is set, the
//! virtual phone answers with an inbound text.
//!
//! Numbers the simulator sells: US `+1AAA55501NN` for area codes 415, 212, 312, 206 and 646,
//! and GB `+4479111234NN`, with `NN` from 00 to 49 (the 555-01xx block is reserved for
//! fiction, so no real phone is ever texted by a demo).
//!
//! Reserved test destinations (Twilio's magic-number style, in the 500 NPA no demo uses):
//! - [`INVALID_DESTINATION`] `+15005550001`: every send fails permanently ("invalid destination");
//! - [`UNREACHABLE_DESTINATION`] `+15005550002`: every send fails retryably (carrier busy);
//! - [`FLAKY_DESTINATION`] `+15005550003`: the first send of each body fails retryably and the
//!   next one succeeds, so the retry path can be watched end to end.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use airtext_api::simulator::SimulatedDelivery;
use airtext_api::AccountId;
use async_trait::async_trait;
use chrono::Utc;

use crate::carriers::reports::ReportSink;
use crate::carriers::{
    Carrier, CarrierAccepted, CarrierError, CarrierReport, OutboundSms, ReceiptStatus,
};
use crate::config::SimulatorConfig;
use crate::store::InventoryNumber;

/// The carrier name recorded on messages the simulator carried.
pub const NAME: &str = "simulator";
/// How many deliveries the outbox keeps (oldest dropped first).
pub const OUTBOX_CAPACITY: usize = 10_000;
/// Sends to this number fail permanently.
pub const INVALID_DESTINATION: &str = "+15005550001";
/// Sends to this number always fail retryably.
pub const UNREACHABLE_DESTINATION: &str = "+15005550002";
/// The first send of each body to this number fails retryably; the retry succeeds.
pub const FLAKY_DESTINATION: &str = "+15005550003";
/// US area codes the simulator has numbers in.
pub const US_AREA_CODES: [&str; 5] = ["415", "212", "312", "206", "646"];

/// A delivery in the outbox, with the account it was sent for.
#[derive(Debug)]
struct Recorded {
    account: Option<AccountId>,
    delivery: SimulatedDelivery,
}

#[derive(Debug)]
pub struct Simulator {
    config: SimulatorConfig,
    reports: ReportSink,
    outbox: Mutex<VecDeque<Recorded>>,
    /// Bodies already refused once by [`FLAKY_DESTINATION`] (bounded like the outbox).
    flaky_seen: Mutex<HashSet<String>>,
}

/// A poisoned lock only means another thread panicked while holding it; the data (a list of
/// deliveries) is still usable, so carry on rather than fail every later call.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Simulator {
    pub fn new(config: SimulatorConfig, reports: ReportSink) -> Self {
        Simulator {
            config,
            reports,
            outbox: Mutex::new(VecDeque::new()),
            flaky_seen: Mutex::new(HashSet::new()),
        }
    }

    /// An e-mail the gateway sent for `account` (verification codes): lands in the outbox,
    /// channel `email`.
    pub fn record_email(&self, account: AccountId, to: &str, from: &str, body: &str) {
        self.record(
            Some(account),
            SimulatedDelivery {
                from: from.to_owned(),
                to: to.trim().to_lowercase(),
                body: body.to_owned(),
                channel: "email".to_owned(),
                carrier_message_id: new_id(),
                received_at: Utc::now(),
            },
        );
    }

    /// What outside phones and mailboxes received for `account`, oldest first; only `to`'s
    /// when given (compared with the normalised address the gateway sent to).
    pub fn outbox(&self, account: AccountId, to: Option<&str>) -> Vec<SimulatedDelivery> {
        lock(&self.outbox)
            .iter()
            .filter(|r| r.account == Some(account))
            .map(|r| &r.delivery)
            .filter(|d| to.is_none_or(|to| d.to == to))
            .cloned()
            .collect()
    }

    fn record(&self, account: Option<AccountId>, delivery: SimulatedDelivery) {
        let mut outbox = lock(&self.outbox);
        while outbox.len() >= OUTBOX_CAPACITY {
            outbox.pop_front();
        }
        outbox.push_back(Recorded { account, delivery });
    }

    /// After the configured delay: the receipt, then (when configured) the virtual phone's
    /// answer. A closed channel means the gateway is shutting down; nothing to do then.
    fn report_later(&self, sms: &OutboundSms, carrier_message_id: String) {
        let reports = self.reports.clone();
        let delay = Duration::from_millis(self.config.receipt_delay_ms);
        let reply = self
            .config
            .auto_reply
            .clone()
            .map(|body| CarrierReport::Inbound {
                carrier: NAME.to_owned(),
                from: sms.to.clone(),
                to: sms.from.clone(),
                body,
            });
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let receipt = CarrierReport::Receipt {
                carrier: NAME.to_owned(),
                carrier_message_id,
                status: ReceiptStatus::Delivered,
                reason: None,
            };
            if reports.hand_over(receipt).await.is_err() {
                return;
            }
            if let Some(reply) = reply {
                let _ = reports.hand_over(reply).await;
            }
        });
    }
}

fn new_id() -> String {
    format!("SM{}", uuid::Uuid::now_v7().simple())
}

#[async_trait]
impl Carrier for Simulator {
    fn name(&self) -> &str {
        NAME
    }

    fn inventory(&self) -> Vec<InventoryNumber> {
        let us = US_AREA_CODES.iter().flat_map(|area| {
            (0..50).map(move |n| InventoryNumber {
                number: format!("+1{area}55501{n:02}"),
                carrier: NAME.to_owned(),
                country: "US".to_owned(),
            })
        });
        let gb = (0..50).map(|n| InventoryNumber {
            number: format!("+4479111234{n:02}"),
            carrier: NAME.to_owned(),
            country: "GB".to_owned(),
        });
        us.chain(gb).collect()
    }

    async fn send(&self, sms: OutboundSms) -> Result<CarrierAccepted, CarrierError> {
        match sms.to.as_str() {
            INVALID_DESTINATION => {
                return Err(CarrierError::Permanent(format!(
                    "invalid destination: {} cannot receive texts",
                    sms.to
                )))
            }
            UNREACHABLE_DESTINATION => {
                return Err(CarrierError::Retryable(
                    "the destination network is busy".to_owned(),
                ))
            }
            FLAKY_DESTINATION => {
                let mut seen = lock(&self.flaky_seen);
                if seen.len() >= OUTBOX_CAPACITY {
                    seen.clear();
                }
                if seen.insert(sms.body.clone()) {
                    return Err(CarrierError::Retryable(
                        "the destination network timed out".to_owned(),
                    ));
                }
            }
            _ => {}
        }
        let carrier_message_id = new_id();
        self.record(
            sms.account,
            SimulatedDelivery {
                from: sms.from.clone(),
                to: sms.to.clone(),
                body: sms.body.clone(),
                channel: "sms".to_owned(),
                carrier_message_id: carrier_message_id.clone(),
                received_at: Utc::now(),
            },
        );
        self.report_later(&sms, carrier_message_id.clone());
        Ok(CarrierAccepted { carrier_message_id })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

    use super::*;
    use crate::carriers::reports::ReportSource;

    const ACCOUNT: AccountId = AccountId(uuid::Uuid::from_u128(1));

    fn simulator(auto_reply: Option<&str>) -> (Simulator, ReportSource) {
        let (tx, rx) = crate::carriers::reports::report_channel(16);
        let config = SimulatorConfig {
            enabled: true,
            receipt_delay_ms: 1,
            auto_reply: auto_reply.map(str::to_owned),
        };
        (Simulator::new(config, tx), rx)
    }

    fn sms(to: &str, body: &str) -> OutboundSms {
        OutboundSms {
            account: Some(ACCOUNT),
            from: "+14155550100".into(),
            to: to.into(),
            body: body.into(),
        }
    }

    #[test]
    fn inventory_has_fifty_numbers_per_area_code_and_gb() {
        let (sim, _rx) = simulator(None);
        let numbers = sim.inventory();
        assert_eq!(numbers.len(), 300);
        assert!(numbers
            .iter()
            .any(|n| n.number == "+14155550100" && n.country == "US"));
        assert!(numbers
            .iter()
            .any(|n| n.number == "+16465550149" && n.country == "US"));
        assert!(numbers
            .iter()
            .any(|n| n.number == "+447911123449" && n.country == "GB"));
        assert!(!numbers.iter().any(|n| n.number == "+14155550150"));
        for n in &numbers {
            let parsed = airtext_sms::Address::parse(&n.number, None);
            assert_eq!(
                parsed,
                Ok(airtext_sms::Address::Phone(n.number.clone())),
                "{} must be a valid E.164 number",
                n.number
            );
        }
    }

    #[test]
    fn reserved_destinations_are_valid_numbers() {
        for number in [
            INVALID_DESTINATION,
            UNREACHABLE_DESTINATION,
            FLAKY_DESTINATION,
        ] {
            assert_eq!(
                airtext_sms::Address::parse(number, None),
                Ok(airtext_sms::Address::Phone(number.into()))
            );
        }
    }

    #[tokio::test]
    async fn a_send_lands_in_the_outbox_and_is_receipted_then_answered() {
        let (sim, mut rx) = simulator(Some("ok!"));
        let accepted = sim.send(sms("+12025550143", "hi")).await.unwrap();
        let outbox = sim.outbox(ACCOUNT, Some("+12025550143"));
        assert_eq!(outbox.len(), 1);
        assert_eq!(outbox[0].channel, "sms");
        assert_eq!(outbox[0].carrier_message_id, accepted.carrier_message_id);
        assert!(sim.outbox(ACCOUNT, Some("+12025550144")).is_empty());
        let other = AccountId(uuid::Uuid::from_u128(2));
        assert!(
            sim.outbox(other, None).is_empty(),
            "another account sees nothing"
        );
        match rx.recv().await.unwrap().report {
            CarrierReport::Receipt {
                carrier_message_id,
                status,
                ..
            } => {
                assert_eq!(carrier_message_id, accepted.carrier_message_id);
                assert_eq!(status, ReceiptStatus::Delivered);
            }
            other => panic!("expected a receipt, got {other:?}"),
        }
        match rx.recv().await.unwrap().report {
            CarrierReport::Inbound { from, to, body, .. } => {
                assert_eq!(from, "+12025550143");
                assert_eq!(to, "+14155550100");
                assert_eq!(body, "ok!");
            }
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn reserved_numbers_fail_as_documented() {
        let (sim, _rx) = simulator(None);
        assert!(matches!(
            sim.send(sms(INVALID_DESTINATION, "x")).await,
            Err(CarrierError::Permanent(_))
        ));
        assert!(matches!(
            sim.send(sms(UNREACHABLE_DESTINATION, "x")).await,
            Err(CarrierError::Retryable(_))
        ));
        assert!(matches!(
            sim.send(sms(FLAKY_DESTINATION, "x")).await,
            Err(CarrierError::Retryable(_))
        ));
        assert!(sim.send(sms(FLAKY_DESTINATION, "x")).await.is_ok());
        assert!(sim.outbox(ACCOUNT, Some(INVALID_DESTINATION)).is_empty());
    }

    #[test]
    fn e_mail_is_recorded_and_the_outbox_is_bounded() {
        let (sim, _rx) = simulator(None);
        sim.record_email(
            ACCOUNT,
            "Bob@Example.org",
            "Airtext <no-reply@x>",
            "code 123456",
        );
        let mail = sim.outbox(ACCOUNT, Some("bob@example.org"));
        assert_eq!(mail.len(), 1);
        assert_eq!(mail[0].channel, "email");
        for i in 0..OUTBOX_CAPACITY {
            sim.record_email(ACCOUNT, "a@b.org", "x", &i.to_string());
        }
        assert_eq!(sim.outbox(ACCOUNT, None).len(), OUTBOX_CAPACITY);
        assert!(sim.outbox(ACCOUNT, Some("bob@example.org")).is_empty());
    }
}
