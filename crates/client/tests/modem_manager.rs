//! The ModemManager backend against python-dbusmock's ModemManager on a private bus
//! (`support/dbusmock.rs`): modems listed, home/roaming and a locked SIM reflected, texts sent
//! (`Messaging.Create` + `Sms.Send`) and received (`Messaging.Added`), delivery reports (a
//! status-report SMS, or a sent SMS's `DeliveryState`), and a whole client whose thread shows
//! them. Prints SKIPPED where dbus-daemon or python-dbusmock is missing (fails instead with
//! `AIRTEXT_TEST_REQUIRE_DBUSMOCK=1`).
#![cfg(target_os = "linux")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
mod support {
    pub mod dbusmock;
}

use std::sync::Arc;
use std::time::Duration;

use airtext_api::SendStatus;
use airtext_client::cellular::modem_manager::{
    list_modems, Bus, ModemManagerConfig, ModemManagerModem,
};
use airtext_client::cellular::{
    Cellular, CellularError, DeliveryOutcome, DeliveryReport, IncomingSms,
};
use airtext_client::events::ClientEvent;
use support::dbusmock::{MockModemManager, IMEI, MODEM_3GPP, OWN_NUMBER, SMS};
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;
use zbus::zvariant::Value;

fn config(mm: &MockModemManager) -> ModemManagerConfig {
    let mut config = ModemManagerConfig::new();
    config.bus = Bus::Address(mm.address.clone());
    config.send_timeout = Duration::from_secs(10);
    config.call_timeout = Duration::from_secs(10);
    config
}

async fn connect(mm: &MockModemManager) -> ModemManagerModem {
    ModemManagerModem::connect(config(mm)).await.unwrap()
}

async fn next<T>(rx: &mut Receiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), rx.recv())
        .await
        .expect("within 120 s")
        .expect("channel open")
}

/// Polls the backend's status until `f` holds.
async fn status_until(modem: &ModemManagerModem, what: &str, f: impl Fn(bool, bool) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        let s = modem.status();
        if f(s.available, s.roaming) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the status never became {what}: {:?}", modem.status());
}

#[tokio::test]
async fn modems_home_roaming_and_a_locked_sim() {
    let Some(mm) = MockModemManager::start().await else {
        return;
    };
    let modems = list_modems(&Bus::Address(mm.address.clone()))
        .await
        .unwrap();
    assert_eq!(modems.len(), 1, "{modems:?}");
    let listed = &modems[0];
    assert_eq!(listed.setting, format!("modemmanager:{IMEI}"));
    assert_eq!(listed.label, "Airtext Test E1750");
    assert_eq!(listed.path, mm.modem);
    assert_eq!(listed.own_numbers, [OWN_NUMBER]);
    assert_eq!(listed.operator.as_deref(), Some("TheOperator"));
    assert_eq!(listed.state, "registered");
    assert!(listed.available && !listed.roaming && listed.sim_lock.is_none());

    // The modem the setting names, by IMEI.
    let mut c = config(&mm);
    c.modem = Some(IMEI.to_owned());
    let modem = ModemManagerModem::connect(c).await.unwrap();
    assert_eq!(modem.modem_path().as_deref(), Some(mm.modem.as_str()));
    let status = modem.status();
    assert!(status.available && !status.roaming, "{status:?}");
    assert!(
        status.name.contains("Airtext Test E1750") && status.name.contains("TheOperator"),
        "{status:?}"
    );

    // Roaming (MMModem3gppRegistrationState 5) and home again, as ModemManager announces
    // them with PropertiesChanged.
    mm.update(MODEM_3GPP, &[("RegistrationState", Value::U32(5))])
        .await;
    status_until(&modem, "roaming", |available, roaming| available && roaming).await;
    mm.update(MODEM_3GPP, &[("RegistrationState", Value::U32(1))])
        .await;
    status_until(&modem, "home", |available, roaming| available && !roaming).await;

    // A locked SIM: unavailable, and a send says why.
    mm.set_sim_pin("1234").await;
    status_until(&modem, "locked", |available, _| !available).await;
    let refused = modem.send("+14155550199", "hello").await;
    assert!(
        matches!(&refused, Err(CellularError::Unavailable(why)) if why.contains("PIN")),
        "{refused:?}"
    );
    let listed = list_modems(&Bus::Address(mm.address.clone()))
        .await
        .unwrap();
    assert_eq!(listed[0].sim_lock.as_deref(), Some("SIM PIN"));
    assert!(!listed[0].available);

    // A wrong configured PIN is sent once and reported, never retried.
    let mut wrong = config(&mm);
    wrong.pin = Some("0000".into());
    let wrong = ModemManagerModem::connect(wrong).await.unwrap();
    assert!(!wrong.status().available);
    let refused = wrong.send("+14155550199", "hello").await;
    assert!(
        matches!(&refused, Err(CellularError::Unavailable(why)) if why.contains("refused the configured PIN")),
        "{refused:?}"
    );

    // The right one unlocks it (Sim.SendPin); every backend sees the SIM ready.
    let mut right = config(&mm);
    right.pin = Some("1234".into());
    let right = ModemManagerModem::connect(right).await.unwrap();
    status_until(&right, "unlocked", |available, _| available).await;
    status_until(&modem, "unlocked", |available, _| available).await;

    // Unplugged: nothing to send with, and the reason says so.
    mm.unplug().await;
    status_until(&modem, "unplugged", |available, _| !available).await;
    assert!(modem.modem_path().is_none());
    let refused = modem.send("+14155550199", "hello").await;
    assert!(
        matches!(&refused, Err(CellularError::Unavailable(why)) if why.contains("does not list the modem")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn texts_go_out_and_come_in() {
    let Some(mm) = MockModemManager::start().await else {
        return;
    };
    // A text that arrived before anyone listened is picked up at start.
    mm.receive_sms(
        "+14155550123",
        "waiting for you",
        "2025-03-05T14:30:00+01:00",
    )
    .await;
    let modem = connect(&mm).await;
    let mut incoming = modem.take_incoming().unwrap();
    assert!(modem.take_incoming().is_none(), "handed out once");
    let early: IncomingSms = next(&mut incoming).await;
    assert_eq!(early.from, "+14155550123");
    assert_eq!(early.body, "waiting for you");
    assert_eq!(early.received_at.to_rfc3339(), "2025-03-05T13:30:00+00:00");
    mm.wait_for_sms_paths("the text taken is deleted", &[])
        .await;

    // Sending: Messaging.Create (number, text, delivery-report-request) and Sms.Send.
    let receipt = modem
        .send("+14155550199", "hello over the air")
        .await
        .unwrap();
    assert_eq!(receipt.segments, 1);
    assert!(receipt.text.is_some());
    let long = "a text long enough to need three segments on the air. ".repeat(6);
    let receipt = modem.send("+14155550199", &long).await.unwrap();
    assert_eq!(receipt.segments, 3, "segments as airtext-sms plans them");
    let sent = mm.sent().await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(
        (sent[0].0.as_str(), sent[0].1.as_str(), sent[0].2),
        ("+14155550199", "hello over the air", true)
    );
    assert_eq!(sent[1].1, long);
    assert_eq!(receipt.references, [u8::try_from(sent[1].3).unwrap()]);

    // The network refuses one: a clear error, and the SMS object is not left behind.
    let kept = mm.sms_paths().await;
    mm.fail_next_send(
        "org.freedesktop.ModemManager1.Error.MessageError.NetworkTimeout",
        "Network timeout",
    )
    .await;
    let refused = modem.send("+14155550199", "lost").await;
    assert!(
        matches!(&refused, Err(CellularError::Rejected { message, .. }) if message.contains("Network timeout")),
        "{refused:?}"
    );
    mm.wait_for_sms_paths("the refused SMS is deleted", &kept)
        .await;
    // Only phone numbers go over the air.
    let refused = modem.send("@bob", "hi").await;
    assert!(
        matches!(refused, Err(CellularError::InvalidRecipient(_))),
        "{refused:?}"
    );

    // A text arrives (Messaging.Added(path, true)): handed over whole, then deleted.
    let arrived = mm
        .receive_sms("+14155550123", "hi from outside", "2025-03-05T14:31:00Z")
        .await;
    let got = next(&mut incoming).await;
    assert_eq!(
        (got.from.as_str(), got.body.as_str()),
        ("+14155550123", "hi from outside")
    );
    let left = mm.sms_paths().await;
    assert!(!left.contains(&arrived), "{left:?}");

    // A multi-part text is announced at its first part and taken once whole.
    let whole = "the first half of a long text, and then the second half of it";
    let parts = mm
        .receive_sms_in_parts("+14155550124", whole, "2025-03-05T14:32:00Z")
        .await;
    mm.finish_receiving(&parts).await;
    let got = next(&mut incoming).await;
    assert_eq!(got.body, whole, "never the half that came first");
}

#[tokio::test]
async fn delivery_reports_settle_sent_texts() {
    let Some(mm) = MockModemManager::start().await else {
        return;
    };
    let modem = connect(&mm).await;
    let mut reports = modem.take_delivery_reports().unwrap();

    // A status-report SMS with the sent text's MessageReference: delivered. Both SMS objects
    // are then deleted from the modem.
    let receipt = modem.send("+14155550199", "did it arrive?").await.unwrap();
    let reference = mm.sent().await[0].3;
    mm.receive_status_report(reference, "+14155550199", 0x00)
        .await;
    let report: DeliveryReport = next(&mut reports).await;
    assert_eq!(Some(report.text), receipt.text);
    assert_eq!(report.outcome, DeliveryOutcome::Delivered);
    mm.wait_for_sms_paths("the report and the sent text deleted", &[])
        .await;

    // A report that the network gave up: failed, with the reason in words.
    let receipt = modem.send("+14155550199", "too late").await.unwrap();
    let reference = mm.sent().await[1].3;
    mm.receive_status_report(reference, "14155550199", 0x46)
        .await;
    let report = next(&mut reports).await;
    assert_eq!(Some(report.text), receipt.text);
    let DeliveryOutcome::Failed { reason } = report.outcome else {
        panic!("{report:?}");
    };
    assert!(reason.contains("expired"), "{reason}");

    // A report for a text this backend never sent settles nothing (and is cleaned up).
    mm.receive_status_report(200, "+33612345678", 0x00).await;
    mm.wait_for_sms_paths("the stray report deleted", &[]).await;

    // ModemManager updating the sent SMS's own DeliveryState works too.
    let receipt = modem.send("+14155550199", "third").await.unwrap();
    let kept = mm.sms_paths().await;
    assert_eq!(
        kept.len(),
        1,
        "the sent SMS is kept for its report: {kept:?}"
    );
    mm.update_at(&kept[0], SMS, &[("DeliveryState", Value::U32(0x00))])
        .await;
    let report = next(&mut reports).await;
    assert_eq!(
        (Some(report.text), report.outcome),
        (receipt.text, DeliveryOutcome::Delivered)
    );
    mm.wait_for_sms_paths("the settled text deleted", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_texts_through_modem_manager() {
    let Some(mm) = MockModemManager::start().await else {
        return;
    };
    let gw = common::TestGateway::start().await;
    let temp = tempfile::tempdir().unwrap();
    let mut options = common::options(temp.path(), &gw.url);
    let modem = Arc::new(connect(&mm).await);
    options.cellular = modem.clone();
    let phone = airtext_client::Client::open(options).await.unwrap();
    phone
        .sign_up("alice", common::PASSWORD, None, "laptop")
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let mut events = phone.subscribe();
    let runner = {
        let client = phone.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { client.run(shutdown).await })
    };

    // Out through ModemManager (auto: an outside number, a modem at home), then delivered.
    let outside = "+14155550199";
    let sent = phone
        .send(outside, "sent by the laptop's modem", None)
        .await
        .unwrap();
    assert_eq!(sent.path.map(|p| p.as_str()), Some("cellular"));
    assert_eq!(sent.status, SendStatus::Sent);
    let on_air = mm.sent().await;
    assert_eq!(on_air[0].1, "sent by the laptop's modem");
    mm.receive_status_report(on_air[0].3, outside, 0x00).await;
    common::wait_for(&mut events, Duration::from_secs(120), |e| match e {
        ClientEvent::MessageUpdated { message }
            if message.local_id == sent.local_id && message.status == SendStatus::Delivered =>
        {
            Some(())
        }
        _ => None,
    })
    .await;

    // In through ModemManager, into the thread.
    mm.receive_sms(outside, "got it, thanks", "2025-03-05T14:35:00Z")
        .await;
    let received = common::wait_for(&mut events, Duration::from_secs(120), |e| match e {
        ClientEvent::MessageAdded { message } if message.body == "got it, thanks" => {
            Some(message.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(received.peer, outside);

    // Roaming feeds the path policy: `auto` now picks the cloud for an outside number.
    assert_eq!(
        phone.decide_path(outside).await.unwrap().path.as_str(),
        "cellular"
    );
    mm.update(MODEM_3GPP, &[("RegistrationState", Value::U32(5))])
        .await;
    status_until(&modem, "roaming", |_, roaming| roaming).await;
    let decision = phone.decide_path(outside).await.unwrap();
    assert_eq!(decision.path.as_str(), "cloud", "{decision:?}");
    assert!(decision.reason.contains("roaming"), "{decision:?}");

    shutdown.cancel();
    runner.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_modem_setting_chooses_modem_manager_where_it_lists_a_modem() {
    use airtext_client::cellular::{list_modems as system_modems, open, ModemSetting};
    let Some(mm) = MockModemManager::start().await else {
        return;
    };
    // The "system bus" is the private one (no other test of this file reads the variable).
    std::env::set_var("DBUS_SYSTEM_BUS_ADDRESS", &mm.address);

    let listed = system_modems().await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let automatic = open(&ModemSetting::parse(""), None).await.unwrap();
    let status = automatic.status();
    assert!(
        status.available && status.name.starts_with("ModemManager"),
        "{status:?}"
    );
    let chosen = open(&ModemSetting::parse(&listed[0].setting), None)
        .await
        .unwrap();
    assert!(chosen.status().available);
    let off = open(&ModemSetting::parse("none"), None).await.unwrap();
    assert_eq!(off.status().name, "none");

    // A serial port that will not open, where ModemManager drives a modem: the error says
    // which setting to choose instead.
    let serial = open(&ModemSetting::parse("/dev/airtext-no-such-tty"), None).await;
    let Err(CellularError::Unavailable(why)) = serial.map(|_| ()) else {
        panic!("a serial port that does not exist cannot be used");
    };
    assert!(
        why.contains("ModemManager") && why.contains(&listed[0].setting),
        "{why}"
    );
}
