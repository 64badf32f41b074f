//! airtext-sms against independent implementations.
//!
//! The fixtures in `tests/fixtures/` come from `tests/oracle/make_fixtures.py` (the Python
//! packages `gsm0338`, `python-gsmmodem-new`, `pdusmsconverter`); `tests/oracle/regenerate.sh`
//! rebuilds them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use airtext_sms::reassembly::{Push, Reassembler};
use airtext_sms::tpdu::{self, SubmitOptions, Tpdu, Validity};
use airtext_sms::{gsm7, plan};
use serde::Deserialize;

fn load<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[derive(Deserialize)]
struct Alphabet {
    range_end: u32,
    excluded: Vec<u32>,
    chars: Vec<(u32, String)>,
}

#[test]
fn alphabet_matches_gsm0338() {
    let a: Alphabet = load("alphabet.json");
    let expected: std::collections::HashMap<u32, String> = a.chars.into_iter().collect();
    let mut checked = 0;
    for cp in 0..a.range_end {
        let Some(c) = char::from_u32(cp) else {
            continue;
        };
        if a.excluded.contains(&cp) {
            continue;
        }
        let ours = gsm7::encode(&c.to_string())
            .ok()
            .map(|b| tpdu::to_hex(&b).to_lowercase());
        assert_eq!(ours.as_ref(), expected.get(&cp), "U+{cp:04X} {c:?}");
        if let Some(hex) = expected.get(&cp) {
            assert_eq!(gsm7::decode(&tpdu::from_hex(hex).unwrap()), c.to_string());
            checked += 1;
        }
    }
    assert_eq!(checked, 137, "128 - ESC + 10 extension characters");
    assert!(gsm7::encode("\u{1B}").is_err());
}

#[derive(Deserialize)]
struct SubmitFixtures {
    cases: Vec<SubmitCase>,
    astral_decode_only: Vec<AstralCase>,
}

#[derive(Deserialize)]
struct SubmitCase {
    to: String,
    text: String,
    reference: u8,
    status_report: bool,
    validity_minutes: Option<u32>,
    pdus: Vec<PduHex>,
}

#[derive(Deserialize)]
struct PduHex {
    hex: String,
    tpdu_length: usize,
}

#[derive(Deserialize)]
struct AstralCase {
    to: String,
    text: String,
    hex: String,
}

#[test]
fn submit_encoding_matches_gsmmodem_byte_for_byte() {
    let f: SubmitFixtures = load("submit.json");
    assert!(f.cases.len() > 100);
    for case in &f.cases {
        let opts = SubmitOptions {
            message_reference: case.reference,
            concat_reference: case.reference,
            status_report_request: case.status_report,
            validity: case.validity_minutes.map(Validity::from_minutes),
            ..SubmitOptions::default()
        };
        let ours = tpdu::encode_submit(&case.to, &case.text, &opts).unwrap();
        let ours: Vec<(String, usize)> = ours.iter().map(|p| (p.hex(), p.tpdu_length)).collect();
        let theirs: Vec<(String, usize)> = case
            .pdus
            .iter()
            .map(|p| (p.hex.clone(), p.tpdu_length))
            .collect();
        assert_eq!(ours, theirs, "text {:?}", case.text);

        // Our decoder reads theirs back to the text, and our plan cuts where they cut.
        let mut joined = String::new();
        let mut parts = Vec::new();
        for p in &case.pdus {
            let d = tpdu::decode_hex_with_smsc(&p.hex).unwrap();
            assert_eq!(d.tpdu_length, p.tpdu_length);
            let Tpdu::Submit(s) = d.tpdu else {
                panic!("not a submit")
            };
            assert_eq!(s.destination.to_string(), case.to);
            assert_eq!(s.status_report_request, case.status_report);
            joined.push_str(&s.text());
            parts.push(s.text());
        }
        assert_eq!(joined, case.text);
        if !case.text.is_empty() {
            assert_eq!(plan(&case.text).segments, parts, "text {:?}", case.text);
        }
    }
    for case in &f.astral_decode_only {
        let d = tpdu::decode_hex_with_smsc(&case.hex).unwrap();
        let Tpdu::Submit(s) = d.tpdu else {
            panic!("not a submit")
        };
        assert_eq!(s.text(), case.text);
        assert_eq!(s.destination.to_string(), case.to);
    }
}

#[derive(Deserialize)]
struct DeliverFixtures {
    cases: Vec<DeliverCase>,
}

#[derive(Deserialize)]
struct DeliverCase {
    from: String,
    text: String,
    timestamp: String,
    encoding: String,
    pdus: Vec<DeliverPdu>,
}

#[derive(Deserialize)]
struct DeliverPdu {
    hex: String,
    text: String,
    concat: Option<Concat>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Concat {
    #[serde(rename = "ref")]
    reference: u16,
    total: u8,
    seq: u8,
}

#[test]
fn deliver_decoding_and_reassembly_match_smspdu_and_gsmmodem() {
    let f: DeliverFixtures = load("deliver.json");
    assert!(f.cases.len() >= 80);
    let mut multipart = 0;
    for case in &f.cases {
        let mut delivers = Vec::new();
        for p in &case.pdus {
            let d = tpdu::decode_hex_with_smsc(&p.hex).unwrap();
            let Tpdu::Deliver(d) = d.tpdu else {
                panic!("not a deliver")
            };
            assert_eq!(d.originator.to_string(), case.from);
            assert_eq!(d.text(), p.text, "{}", p.hex);
            assert_eq!(d.timestamp.to_rfc3339(), case.timestamp);
            let c = d.concat().map(|c| Concat {
                reference: c.reference,
                total: c.total,
                seq: c.seq,
            });
            assert_eq!(c, p.concat, "{}", p.hex);
            delivers.push(d);
        }
        // Our plan cuts where the oracle cut, in the same encoding.
        let ours = plan(&case.text);
        assert_eq!(ours.encoding.to_string(), case.encoding);
        let theirs: Vec<&str> = case.pdus.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(ours.segments, theirs);

        // Reassembly in reverse order with a duplicate of the last part.
        let mut r = Reassembler::new(Duration::from_secs(60));
        let mut done = None;
        let mut order: Vec<_> = delivers.iter().rev().collect();
        if order.len() > 1 {
            multipart += 1;
            order.insert(1, order[0]);
        }
        for d in order {
            match r.push_deliver(d, Duration::ZERO) {
                Push::Complete(m) => done = Some(m),
                Push::Pending { .. } | Push::Duplicate => {}
            }
        }
        let m = done.expect("complete");
        assert_eq!(m.text, case.text);
        assert_eq!(m.sender, case.from);
        assert_eq!(r.pending(), 0);
    }
    assert!(multipart > 20);
}

#[derive(Deserialize)]
struct ReportFixtures {
    cases: Vec<ReportCase>,
}

#[derive(Deserialize)]
struct ReportCase {
    hex: String,
    to: String,
    reference: u8,
    status: u8,
    timestamp: String,
    discharge_time: String,
}

#[test]
fn status_reports_match_gsmmodem() {
    let f: ReportFixtures = load("status_report.json");
    for case in &f.cases {
        let d = tpdu::decode_hex_with_smsc(&case.hex).unwrap();
        let Tpdu::StatusReport(s) = d.tpdu else {
            panic!("not a status report")
        };
        assert_eq!(s.recipient.to_string(), case.to);
        assert_eq!(s.message_reference, case.reference);
        assert_eq!(s.status, case.status);
        assert_eq!(s.sc_timestamp.to_rfc3339(), case.timestamp, "{}", case.hex);
        assert_eq!(
            s.discharge_time.to_rfc3339(),
            case.discharge_time,
            "{}",
            case.hex
        );
    }
}
