//! The AT modem backend against a fake modem on a pseudo-terminal: the backend opens the pty
//! slave with tokio-serial as it would `/dev/ttyUSB2`; `support/fake_modem.rs` answers on the
//! master. Sent PDUs are checked against the airtext-sms fixtures made by independent Python
//! implementations (python-gsmmodem-new, pdusmsconverter).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support {
    pub mod fake_modem;
}

use std::time::Duration;

use airtext_client::cellular::at_modem::{AtModem, AtModemConfig, ModemError};
use airtext_client::cellular::{
    Cellular, CellularError, DeliveryOutcome, DeliveryReport, IncomingSms,
};
use airtext_sms::tpdu::{
    decode_hex_with_smsc, encode_submit, to_hex, Dcs, Deliver, StatusClass, StatusReport,
    SubmitOptions, Timestamp, TpAddress, Tpdu, Validity,
};
use serde_json::Value;
use support::fake_modem::{CmgsScript, FakeModem, State};

fn config(fake: &FakeModem) -> AtModemConfig {
    let mut c = AtModemConfig::new(fake.path.clone());
    // Generous: the fake modem answers every command, so no test waits for these unless it
    // means to (that one sets its own).
    c.command_timeout = Duration::from_secs(60);
    c.send_timeout = Duration::from_secs(60);
    c.first_concat_reference = Some(42);
    c
}

async fn open(fake: &FakeModem) -> AtModem {
    AtModem::open(config(fake)).await.expect("modem opens")
}

async fn next(rx: &mut tokio::sync::mpsc::Receiver<IncomingSms>) -> IncomingSms {
    tokio::time::timeout(Duration::from_secs(120), rx.recv())
        .await
        .expect("a message within 120 s")
        .expect("channel open")
}

fn fixtures() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sms/tests/fixtures/submit.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("airtext-sms fixtures")).unwrap()
}

/// An SMS-DELIVER (with `00` SMSC) carrying the user data an SMS-SUBMIT of `text` would.
fn deliver_pdus(from: &str, text: &str, reference: u8) -> Vec<String> {
    let opts = SubmitOptions {
        concat_reference: reference,
        ..SubmitOptions::default()
    };
    encode_submit("+10000", text, &opts)
        .unwrap()
        .iter()
        .map(|p| {
            let Tpdu::Submit(s) = decode_hex_with_smsc(&p.hex()).unwrap().tpdu else {
                panic!()
            };
            let d = Deliver {
                more_messages_to_send: false,
                loop_prevention: false,
                status_report_indication: false,
                reply_path: false,
                originator: TpAddress::phone(from).unwrap(),
                protocol_id: 0,
                dcs: Dcs(s.dcs.0),
                timestamp: Timestamp {
                    year: 2025,
                    month: 3,
                    day: 5,
                    hour: 14,
                    minute: 30,
                    second: 0,
                    offset_quarters: 4,
                },
                user_data: s.user_data,
            };
            format!("00{}", to_hex(&d.to_bytes().unwrap()))
        })
        .collect()
}

#[tokio::test]
async fn initialises_in_pdu_mode_and_reports_registration() {
    let fake = FakeModem::start(State::default());
    let modem = open(&fake).await;
    let commands = fake.with(|s| s.commands.clone());
    for expected in [
        "ATE0",
        "AT+CMEE=2",
        "AT+CPIN?",
        "AT+CMGF=0",
        // Status reports asked for by default, and routed to us as +CDS.
        "AT+CNMI=2,1,0,1,0",
        "AT+CREG?",
    ] {
        assert!(
            commands.iter().any(|c| c == expected),
            "{expected} in {commands:?}"
        );
    }
    let status = modem.status();
    assert!(status.available && !status.roaming, "{status:?}");
    assert!(status.name.contains(&fake.path) && status.name.contains("Test Mobile"));

    // Roaming (stat 5), announced unsolicited: the backend asks again and says so.
    fake.with(|s| s.creg = 5);
    fake.emit(b"\r\n+CREG: 5\r\n");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        if modem.status().roaming {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = modem.status();
    assert!(status.available && status.roaming, "{status:?}");

    fake.with(|s| s.creg = 2);
    modem.refresh().await.unwrap();
    assert!(!modem.status().available);
}

#[tokio::test]
async fn sent_pdus_match_the_independent_implementation() {
    let fx = fixtures();
    let cases = fx["cases"].as_array().unwrap();
    let (mut singles, mut multis) = (0, 0);
    for case in cases {
        let fake = FakeModem::start(State::default());
        let mut c = config(&fake);
        c.first_concat_reference = Some(u8::try_from(case["reference"].as_u64().unwrap()).unwrap());
        c.status_report_request = case["status_report"].as_bool().unwrap();
        c.validity = case["validity_minutes"]
            .as_u64()
            .map(|m| Validity::from_minutes(u32::try_from(m).unwrap()));
        let modem = AtModem::open(c).await.unwrap();
        let to = case["to"].as_str().unwrap();
        let text = case["text"].as_str().unwrap();
        let receipt = modem.send(to, text).await.unwrap();
        let expected: Vec<(usize, String)> = case["pdus"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    usize::try_from(p["tpdu_length"].as_u64().unwrap()).unwrap(),
                    p["hex"].as_str().unwrap().to_ascii_uppercase(),
                )
            })
            .collect();
        let got = fake.with(|s| s.submitted.clone());
        assert_eq!(got, expected, "{to} {text:?}");
        assert_eq!(receipt.segments as usize, expected.len());
        assert_eq!(
            receipt.references,
            (1..=expected.len() as u8).collect::<Vec<_>>()
        );
        if expected.len() == 1 {
            singles += 1;
        } else {
            multis += 1;
        }
    }
    assert!(
        singles >= 40 && multis >= 100,
        "{singles} single, {multis} multi"
    );
}

#[tokio::test]
async fn receives_a_single_part_message_and_deletes_it() {
    let fake = FakeModem::start(State::default());
    let modem = open(&fake).await;
    let mut rx = modem.take_incoming().unwrap();
    assert!(modem.take_incoming().is_none());
    // The textbook SMS-DELIVER: SMSC +31624000000, from +31641600986, "How are you?",
    // sent 2002-08-26 19:37:41 with time-zone octet 0x08 (-0 quarters).
    fake.deliver(
        3,
        "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07",
    );
    let sms = next(&mut rx).await;
    assert_eq!(sms.from, "+31641600986");
    assert_eq!(sms.body, "How are you?");
    assert_eq!(sms.received_at.to_rfc3339(), "2002-08-26T19:37:41+00:00");
    fake.wait_for("AT+CMGD=3", |s| s.deleted == [3]).await;
    assert!(fake.with(|s| s.commands.iter().any(|c| c == "AT+CMGR=3")));
}

#[tokio::test]
async fn receives_multi_part_messages_in_any_order() {
    let fake = FakeModem::start(State::default());
    let modem = open(&fake).await;
    let mut rx = modem.take_incoming().unwrap();
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(8);
    let parts = deliver_pdus("+447911123456", &long, 7);
    assert_eq!(parts.len(), 3);
    let emoji = format!("{}😀 done", "ж".repeat(80));
    let uparts = deliver_pdus("+14155550100", &emoji, 8);
    assert_eq!(uparts.len(), 2);
    fake.deliver(10, &parts[2]);
    fake.deliver(11, &uparts[1]);
    fake.deliver(12, &parts[0]);
    fake.deliver(13, &uparts[0]);
    fake.deliver(14, &parts[1]);
    let a = next(&mut rx).await;
    assert_eq!(
        (a.from.as_str(), a.body.as_str()),
        ("+14155550100", emoji.as_str())
    );
    let b = next(&mut rx).await;
    assert_eq!(
        (b.from.as_str(), b.body.as_str()),
        ("+447911123456", long.as_str())
    );
    assert_eq!(b.received_at.to_rfc3339(), "2025-03-05T13:30:00+00:00");
    fake.wait_for("every part deleted", |s| {
        s.storage.is_empty() && s.deleted.len() == 5
    })
    .await;
}

#[tokio::test]
async fn messages_stored_before_start_are_read() {
    let mut state = State::default();
    state.storage.insert(
        1,
        "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07".into(),
    );
    let fake = FakeModem::start(state);
    let modem = open(&fake).await;
    let mut rx = modem.take_incoming().unwrap();
    assert_eq!(next(&mut rx).await.body, "How are you?");
    assert_eq!(fake.with(|s| s.deleted.clone()), [1]);
}

#[tokio::test]
async fn sim_pin_prompt() {
    let locked = || {
        FakeModem::start(State {
            pin: Some("1234".into()),
            ..State::default()
        })
    };
    let fake = locked();
    let err = AtModem::open(config(&fake)).await.unwrap_err();
    assert_eq!(err, ModemError::SimPinRequired);
    assert!(err.to_string().contains("the SIM needs its PIN"), "{err}");
    assert!(!fake.with(|s| s.commands.iter().any(|c| c.starts_with("AT+CPIN="))));

    let fake = locked();
    let mut c = config(&fake);
    c.pin = Some("1234".into());
    let modem = AtModem::open(c).await.unwrap();
    assert!(fake.with(|s| s.commands.iter().any(|c| c == "AT+CPIN=\"1234\"")));
    assert!(modem.status().available);

    let fake = locked();
    let mut c = config(&fake);
    c.pin = Some("0000".into());
    let err = AtModem::open(c).await.unwrap_err();
    assert!(matches!(err, ModemError::WrongPin(_)), "{err}");
    assert!(err.to_string().contains("incorrect password"), "{err}");
}

#[tokio::test]
async fn cms_errors_become_clear_messages() {
    let fake = FakeModem::start(State::default());
    let modem = open(&fake).await;
    fake.with(|s| {
        s.cmgs.extend([
            CmgsScript::FailAfterPdu("+CMS ERROR: 330".into()),
            CmgsScript::FailAfterPdu("+CMS ERROR: network out of order".into()),
            CmgsScript::FailInsteadOfPrompt("+CMS ERROR: 304".into()),
            CmgsScript::FailAfterPdu("+CMS ERROR: 500".into()),
            // A three-part text whose second part fails.
            CmgsScript::Accept,
            CmgsScript::FailAfterPdu("+CMS ERROR: 331".into()),
        ])
    });
    let e = modem.send_text("+14155550100", "hi").await.unwrap_err();
    assert!(e.to_string().contains("SMSC address unknown"), "{e}");
    assert!(!e.is_retryable());
    let ModemError::Cms { error, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(error.code, Some(330));
    assert_eq!(
        CellularError::from(e),
        CellularError::Rejected {
            code: Some(330),
            message: "SMSC address unknown (error 330) (+CMS ERROR on AT+CMGS=15)".into()
        }
    );

    let e = modem.send_text("+14155550100", "hi").await.unwrap_err();
    assert!(e.to_string().contains("network out of order"), "{e}");
    assert!(e.is_retryable(), "38 is temporary");

    let e = modem.send_text("+14155550100", "hi").await.unwrap_err();
    assert!(e.to_string().contains("invalid PDU mode parameter"), "{e}");
    assert!(!e.is_retryable());

    let e = modem.send_text("+14155550100", "hi").await.unwrap_err();
    assert!(e.to_string().contains("unknown error"), "{e}");
    assert!(e.is_retryable());

    let e = modem
        .send_text("+14155550100", &"x".repeat(400))
        .await
        .unwrap_err();
    let ModemError::PartiallySent { sent, total, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!((*sent, *total), (1, 3));
    assert!(e.to_string().contains("no network service"), "{e}");
    assert!(e.is_retryable());

    // Not a phone number: refused before the modem is asked.
    let e = modem.send("alice", "hi").await.unwrap_err();
    assert_eq!(e, CellularError::InvalidRecipient("alice".into()));
    // The modem is still fine.
    assert!(modem.send_text("+14155550100", "ok now").await.is_ok());
}

#[tokio::test]
async fn a_urc_in_the_middle_of_a_command_is_kept() {
    let fake = FakeModem::start(State::default());
    let modem = open(&fake).await;
    let mut rx = modem.take_incoming().unwrap();
    fake.with(|s| {
        s.storage.insert(
            5,
            "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07".into(),
        );
        s.cmgs
            .push_back(CmgsScript::UrcBeforeResult("+CMTI: \"SM\",5".into()));
    });
    let refs = modem.send_text("+447911123456", "hello").await.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(next(&mut rx).await.body, "How are you?");
    fake.wait_for("AT+CMGD=5", |s| s.deleted == [5]).await;
}

#[tokio::test]
async fn a_silent_modem_times_out_and_recovers() {
    let fake = FakeModem::start(State::default());
    let mut c = config(&fake);
    // Short: this test waits for them to run out.
    c.command_timeout = Duration::from_millis(800);
    c.send_timeout = Duration::from_millis(800);
    let modem = AtModem::open(c).await.unwrap();
    fake.with(|s| s.cmgs.push_back(CmgsScript::Silent));
    let e = modem.send_text("+14155550100", "hi").await.unwrap_err();
    assert!(matches!(e, ModemError::Timeout { .. }), "{e:?}");
    assert!(e.is_retryable());
    fake.wait_for("ESC abandoning the PDU entry", |s| s.escapes >= 1)
        .await;
    assert_eq!(
        modem.send_text("+14155550100", "hi").await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn garbage_on_the_line_is_ignored() {
    let fake = FakeModem::start(State {
        garbage: true,
        ..State::default()
    });
    fake.emit(b"\xff\xfe\x00 noise before anything\r\n");
    let modem = open(&fake).await;
    let mut rx = modem.take_incoming().unwrap();
    // Stray codes while idle, even final result codes, are dropped (they come before the next
    // command is written; a stale one after it would be indistinguishable from its answer).
    fake.emit(b"\r\n+CMTI: \"SM\",notanumber\r\n\x1b\x1a>>>\r\n+CMS ERROR: 500\r\nOK\r\n");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refs = modem
        .send_text("+14155550100", &"y".repeat(200))
        .await
        .unwrap();
    assert_eq!(refs.len(), 2);
    fake.deliver(
        9,
        "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07",
    );
    assert_eq!(next(&mut rx).await.body, "How are you?");
    // A PDU that is not one: read, dropped, deleted; nothing delivered, nothing panics.
    fake.deliver(10, "00FFFF");
    fake.wait_for("AT+CMGD=10", |s| s.deleted.contains(&10))
        .await;
    assert!(modem.status().available);
}

fn status_report_pdu(mr: u8, status: u8) -> String {
    let t = Timestamp {
        year: 2025,
        month: 3,
        day: 5,
        hour: 14,
        minute: 30,
        second: 0,
        offset_quarters: 0,
    };
    let r = StatusReport {
        more_messages_to_send: false,
        loop_prevention: false,
        status_report_qualifier: false,
        message_reference: mr,
        recipient: TpAddress::phone("+14155550100").unwrap(),
        sc_timestamp: t,
        discharge_time: t,
        status,
        protocol_id: None,
        dcs: None,
        user_data: None,
    };
    format!("00{}", to_hex(&r.to_bytes().unwrap()))
}

#[tokio::test]
async fn delivery_receipts_stored_or_routed() {
    // A network that sends no report of its own: the test emits them.
    let fake = FakeModem::start(State {
        report_status: None,
        ..State::default()
    });
    let mut c = config(&fake);
    c.status_report_request = true;
    let modem = AtModem::open(c).await.unwrap();
    assert!(fake.with(|s| s.commands.iter().any(|c| c == "AT+CNMI=2,1,0,1,0")));
    let mut reports = modem.take_status_reports().unwrap();
    let mr = modem
        .send_text("+14155550100", "receipt please")
        .await
        .unwrap()[0];
    // TP-SRR is set in what went out.
    let (_, hex) = fake.with(|s| s.submitted[0].clone());
    let Tpdu::Submit(s) = decode_hex_with_smsc(&hex).unwrap().tpdu else {
        panic!()
    };
    assert!(s.status_report_request);

    // Stored (+CDSI) and read from the status-report storage.
    fake.with(|s| s.storage.insert(4, status_report_pdu(mr, 0x00)));
    fake.emit(b"\r\n+CDSI: \"SR\",4\r\n");
    let r = tokio::time::timeout(Duration::from_secs(120), reports.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.message_reference, r.class), (mr, StatusClass::Delivered));
    assert_eq!(r.recipient, "+14155550100");
    assert!(fake.with(|s| s.commands.iter().any(|c| c == "AT+CPMS=\"SR\"")));
    fake.wait_for("AT+CMGD=4", |s| s.deleted == [4]).await;

    // Routed straight to us (+CDS: <length> and the PDU on the next line).
    let pdu = status_report_pdu(mr, 0x41);
    fake.emit(format!("\r\n+CDS: {}\r\n{pdu}\r\n", pdu.len() / 2 - 1).as_bytes());
    let r = tokio::time::timeout(Duration::from_secs(120), reports.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.status, r.class), (0x41, StatusClass::Failed));
}

#[tokio::test]
async fn received_pdus_of_the_independent_implementation_decode_whole() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sms/tests/fixtures/deliver.json"
    );
    let fx: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let fake = FakeModem::start(State::default());
    let modem = open(&fake).await;
    let mut rx = modem.take_incoming().unwrap();
    let mut index = 0;
    let cases = fx["cases"].as_array().unwrap();
    for case in cases {
        // Parts last to first, so reassembly has work to do.
        for part in case["pdus"].as_array().unwrap().iter().rev() {
            index += 1;
            fake.deliver(index, part["hex"].as_str().unwrap());
        }
        let sms = next(&mut rx).await;
        assert_eq!(sms.from, case["from"].as_str().unwrap());
        assert_eq!(sms.body, case["text"].as_str().unwrap());
        assert_eq!(
            sms.received_at.to_rfc3339(),
            case["timestamp"].as_str().unwrap()
        );
    }
    fake.wait_for("every PDU deleted", |s| {
        s.storage.is_empty() && s.deleted.len() == index as usize
    })
    .await;
    assert!(cases.len() >= 80);
}

async fn next_report(rx: &mut tokio::sync::mpsc::Receiver<DeliveryReport>) -> DeliveryReport {
    tokio::time::timeout(Duration::from_secs(120), rx.recv())
        .await
        .expect("a delivery report within 120 s")
        .expect("channel open")
}

#[tokio::test]
async fn cds_status_reports_settle_each_text_by_its_references() {
    let fake = FakeModem::start(State::default());
    let modem = open(&fake).await;
    let mut deliveries = modem.take_delivery_reports().unwrap();
    assert!(modem.take_delivery_reports().is_none(), "handed out once");

    // Three segments, each reported delivered by +CDS: one report for the text.
    let long = "a text long enough to need three segments on the air. ".repeat(6);
    let receipt = modem.send("+14155550100", &long).await.unwrap();
    assert_eq!(receipt.segments, 3);
    let text = receipt.text.expect("reports were asked for");
    let report = next_report(&mut deliveries).await;
    assert_eq!(
        report,
        DeliveryReport {
            text,
            outcome: DeliveryOutcome::Delivered
        }
    );
    let reported: Vec<u8> = fake.with(|s| s.reports_sent.iter().map(|r| r.0).collect());
    assert_eq!(reported, receipt.references);

    // A two-part text whose second part expired: failed, with the network's reason.
    fake.with(|s| s.report_statuses.extend([0x00, 0x46]));
    let receipt = modem
        .send(
            "+14155550100",
            &"two parts, the second one is lost. ".repeat(5),
        )
        .await
        .unwrap();
    assert_eq!(receipt.segments, 2);
    let report = next_report(&mut deliveries).await;
    assert_eq!(Some(report.text), receipt.text);
    let DeliveryOutcome::Failed { reason } = report.outcome else {
        panic!("{report:?}");
    };
    assert!(
        reason.contains("expired") && reason.contains("0x46"),
        "{reason}"
    );

    // "Still trying" settles nothing; the final word does.
    fake.with(|s| s.report_statuses.extend([0x21]));
    let first = modem.send("+14155550100", "busy phone").await.unwrap();
    let second = modem.send("+14155550100", "second").await.unwrap();
    let report = next_report(&mut deliveries).await;
    assert_eq!(Some(report.text), second.text, "the first is still pending");
    let mr = first.references[0];
    let pdu = status_report_pdu(mr, 0x00);
    fake.emit(format!("\r\n+CDS: {}\r\n{pdu}\r\n", pdu.len() / 2 - 1).as_bytes());
    let report = next_report(&mut deliveries).await;
    assert_eq!(
        (Some(report.text), report.outcome),
        (first.text, DeliveryOutcome::Delivered)
    );
}

#[tokio::test]
async fn status_reports_are_read_from_storage_where_the_modem_will_not_route_them() {
    let fake = FakeModem::start(State {
        refuse_cds: true,
        ..State::default()
    });
    let modem = open(&fake).await;
    let commands = fake.with(|s| s.commands.clone());
    assert!(
        commands.iter().any(|c| c == "AT+CNMI=2,1,0,2,0"),
        "{commands:?}"
    );
    let mut deliveries = modem.take_delivery_reports().unwrap();
    let receipt = modem.send("+14155550100", "stored receipt").await.unwrap();
    let report = next_report(&mut deliveries).await;
    assert_eq!(
        (Some(report.text), report.outcome),
        (receipt.text, DeliveryOutcome::Delivered)
    );
    // Read and deleted from the status-report storage.
    fake.wait_for("the report deleted", |s| {
        s.storage.is_empty() && !s.deleted.is_empty()
    })
    .await;
}

#[tokio::test]
async fn no_reports_are_asked_for_when_turned_off() {
    let fake = FakeModem::start(State::default());
    let mut c = config(&fake);
    c.status_report_request = false;
    let modem = AtModem::open(c).await.unwrap();
    assert!(fake.with(|s| s.commands.iter().any(|c| c == "AT+CNMI=2,1,0,0,0")));
    let receipt = modem.send("+14155550100", "no receipt").await.unwrap();
    assert_eq!(receipt.text, None);
    assert!(fake.with(|s| s.reports_sent.is_empty()));
}
