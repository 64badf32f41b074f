//! Any bytes, with or without the SMSC field, decode to a TPDU or an error; never a panic.
//! Whatever decodes re-encodes and decodes to the same value.
#![no_main]

use airtext_sms::tpdu::{self, Tpdu};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = tpdu::decode_with_smsc(data) {
        let _ = d.tpdu.kind();
        let bytes = match &d.tpdu {
            Tpdu::Deliver(m) => {
                let _ = (m.text(), m.concat(), m.timestamp.to_rfc3339());
                m.to_bytes()
            }
            Tpdu::Submit(m) => {
                let _ = m.text();
                m.to_bytes()
            }
            Tpdu::StatusReport(m) => {
                let _ = (m.class(), m.user_data.as_ref().map(|u| u.text()));
                m.to_bytes()
            }
        };
        if let Ok(bytes) = bytes {
            let again = Tpdu::decode(&bytes).expect("re-encoded TPDU decodes");
            assert_eq!(again.kind(), d.tpdu.kind());
        }
    }
    let _ = Tpdu::decode(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tpdu::decode_hex_with_smsc(text);
    }
});
