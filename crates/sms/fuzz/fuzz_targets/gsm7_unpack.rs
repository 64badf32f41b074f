//! The GSM-7 unpacker and decoder on any bytes, septet count and fill bits: a value or an
//! error, never a panic; unpacking what was packed gives it back.
#![no_main]

use airtext_sms::{gsm7, udh::Udh};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else { return };
    let fill = head & 0x07;
    let count = usize::from(head >> 3) * 8;
    if let Ok(septets) = gsm7::unpack(rest, count, fill) {
        let _ = gsm7::decode(&septets);
        let repacked = gsm7::pack(&septets, fill);
        assert_eq!(gsm7::unpack(&repacked, count, fill).ok(), Some(septets));
    }
    let all = rest.len() * 8 / 7;
    let _ = gsm7::unpack(rest, all, 0).map(|s| gsm7::decode(&s));
    let _ = gsm7::unpack(rest, usize::MAX, fill);
    let _ = Udh::parse(rest).map(|(h, _)| (h.concat(), h.to_bytes()));
});
