//! Properties of airtext-sms over arbitrary text and bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use airtext_sms::reassembly::{Part, Push, Reassembler};
use airtext_sms::tpdu::{self, Alphabet, SubmitOptions, Tpdu};
use airtext_sms::udh::Concat;
use airtext_sms::{gsm7, plan, ucs2, Encoding};
use proptest::prelude::*;

/// Text biased towards the interesting places: GSM basic, extension, non-GSM BMP, astral.
fn sms_text() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        4 => prop::sample::select("abcXYZ019 @£$¥èéΔ_ΦÆß!?\n\r§¿äöñüà".chars().collect::<Vec<_>>()),
        2 => prop::sample::select("^{}\\[~]|€\u{0C}".chars().collect::<Vec<_>>()),
        1 => prop::sample::select("çжЖ中`ÿ\u{0303}\u{1B}".chars().collect::<Vec<_>>()),
        1 => prop::sample::select("😀👍🏽🎉𝄞".chars().collect::<Vec<_>>()),
        1 => any::<char>(),
    ];
    prop::collection::vec(ch, 0..700).prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_decode_is_identity(text in sms_text()) {
        let p = plan(&text);
        let payload = p.encoding.encode(&text).unwrap();
        prop_assert_eq!(p.encoding.decode(&payload), text.clone());
        if p.encoding == Encoding::Gsm7 {
            let packed = gsm7::pack(&payload, 0);
            prop_assert_eq!(gsm7::decode(&gsm7::unpack(&packed, payload.len(), 0).unwrap()), text.clone());
        } else {
            prop_assert_eq!(ucs2::decode(&ucs2::encode(&text)), text.clone());
        }
    }

    #[test]
    fn segments_fit_and_concatenate_back(text in sms_text()) {
        let p = plan(&text);
        prop_assert_eq!(p.segments.concat(), text.clone());
        let limit = p.segment_limit();
        let mut last = 0;
        for s in &p.segments {
            prop_assert!(!s.is_empty());
            let units: usize = s.chars().map(|c| p.encoding.units_of(c).unwrap()).sum();
            prop_assert!(units <= limit, "{} > {}", units, limit);
            // Each segment decodes alone: no split escape or surrogate pair.
            let payload = p.encoding.encode(s).unwrap();
            prop_assert_eq!(p.encoding.decode(&payload), s.clone());
            last = units;
        }
        prop_assert_eq!(p.chars_left, limit - last);
        if p.segments.len() > 1 {
            // Greedy: the first character of each next segment did not fit.
            for w in p.segments.windows(2) {
                let used: usize = w[0].chars().map(|c| p.encoding.units_of(c).unwrap()).sum();
                let next = w[1].chars().next().unwrap();
                prop_assert!(used + p.encoding.units_of(next).unwrap() > limit);
            }
        }
    }

    #[test]
    fn submit_pdus_decode_back_to_the_text(text in sms_text(), reference in any::<u8>()) {
        let opts = SubmitOptions { concat_reference: reference, ..SubmitOptions::default() };
        let pdus = tpdu::encode_submit("+14155550100", &text, &opts).unwrap();
        let mut joined = String::new();
        for p in &pdus {
            prop_assert!(p.tpdu_length <= 164);
            let d = tpdu::decode_with_smsc(&p.bytes).unwrap();
            let Tpdu::Submit(s) = d.tpdu else { panic!("not a submit") };
            joined.push_str(&s.text());
        }
        prop_assert_eq!(joined, text);
    }

    #[test]
    fn reassembly_in_any_order_with_duplicates(text in sms_text(), seed in any::<u64>()) {
        let p = plan(&text);
        let enc = p.encode(7).unwrap();
        let alphabet = if p.encoding == Encoding::Gsm7 { Alphabet::Gsm7 } else { Alphabet::Ucs2 };
        let total = u8::try_from(enc.len()).unwrap();
        let mut parts: Vec<Part> = enc.into_iter().enumerate().map(|(i, e)| Part {
            sender: "s".into(),
            concat: (total > 1).then(|| Concat { reference: 7, total, seq: u8::try_from(i + 1).unwrap() }),
            alphabet,
            payload: e.payload,
        }).collect();
        // A deterministic shuffle plus a duplicate.
        let mut s = seed;
        for i in (1..parts.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            parts.swap(i, usize::try_from(s >> 33).unwrap() % (i + 1));
        }
        if parts.len() > 1 { parts.insert(1, parts[0].clone()); }
        let mut r = Reassembler::new(Duration::from_secs(60));
        let mut done = None;
        for part in parts {
            if let Push::Complete(m) = r.push(part, Duration::ZERO) { done = Some(m.text); }
        }
        prop_assert_eq!(done, Some(text));
    }

    #[test]
    fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), n in 0usize..400, fill in 0u8..10) {
        let _ = tpdu::decode_with_smsc(&bytes);
        let _ = tpdu::Tpdu::decode(&bytes);
        let _ = gsm7::unpack(&bytes, n, fill).map(|s| gsm7::decode(&s));
        let _ = ucs2::decode(&bytes);
        let _ = airtext_sms::udh::Udh::parse(&bytes);
    }
}
