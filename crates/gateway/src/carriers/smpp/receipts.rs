//! Delivery receipts: a `deliver_sm` the SMSC sends about a message we submitted.
//!
//! SMPP 3.4 carries a receipt two ways, often both at once:
//! - the `short_message` text of Appendix B, `id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm
//!   done date:YYMMDDhhmm stat:DDDDDDD err:E text:…` (the format is "vendor specific" there, so
//!   keys are matched case-insensitively, in any order, and missing ones are tolerated);
//! - the TLVs `receipted_message_id` (§5.3.2.12) and `message_state` (§5.3.2.35, values in
//!   §5.2.28), plus `network_error_code` (§5.3.2.31) for failures.
//!
//! A `deliver_sm` is a receipt when its `esm_class` message type (§5.2.12, bits 5–2) is "SMSC
//! delivery receipt" (0x04) or "intermediate delivery notification" (0x20), or when it carries
//! `receipted_message_id`. The TLVs win over the text when both are present: they are typed,
//! the text is free-form.
//!
//! States: DELIVRD → delivered; ENROUTE / ACCEPTD / SCHEDULED → sent (still on its way);
//! UNDELIV / EXPIRED / REJECTD / DELETED / UNKNOWN / SKIPPED → failed, with the state and error
//! code as the reason. An unrecognised `stat:` word gives no status (the receipt is logged and
//! acknowledged, nothing is reported).
//!
//! [`PartTracker`] joins the receipts of a multi-part message: every part has its own SMSC id,
//! and the gateway only knows the first part's. A part's receipt resolves to the first part's
//! id; the message is reported `Delivered` once every part is delivered, `Failed` as soon as
//! one part fails, and `Sent` whenever a part reports progress. Receipts for ids it does not
//! know (single-part messages, receipts that overtook the `submit_sm_resp`, or messages from
//! before a restart) are reported as they are: the router ignores ids it does not know and
//! statuses that would move a message backwards.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::carriers::ReceiptStatus;

/// esm_class message type (SMPP 3.4 §5.2.12, bits 5–2) of an SMSC delivery receipt.
pub const ESM_SMSC_DELIVERY_RECEIPT: u8 = 0x04;
/// esm_class message type of an intermediate delivery notification.
pub const ESM_INTERMEDIATE_NOTIFICATION: u8 = 0x20;
/// The message-type bits of esm_class.
pub const ESM_MESSAGE_TYPE_MASK: u8 = 0x3C;

/// What a receipt says, before multi-part resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The SMSC's id of the submitted message (part).
    pub message_id: String,
    pub status: ReceiptStatus,
    /// For failures: the state and error codes, e.g. `UNDELIV err:005`.
    pub reason: Option<String>,
}

/// The receipt-related fields of a `deliver_sm`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiptFields<'a> {
    pub esm_class: u8,
    pub short_message: &'a [u8],
    pub receipted_message_id: Option<&'a str>,
    pub message_state: Option<u8>,
    /// `network_error_code` TLV: network type, then a 2-octet error code.
    pub network_error_code: Option<&'a [u8]>,
}

impl ReceiptFields<'_> {
    /// Whether this `deliver_sm` is a receipt rather than a mobile-originated message.
    pub fn is_receipt(&self) -> bool {
        let kind = self.esm_class & ESM_MESSAGE_TYPE_MASK;
        kind == ESM_SMSC_DELIVERY_RECEIPT
            || kind == ESM_INTERMEDIATE_NOTIFICATION
            || self.receipted_message_id.is_some()
    }
}

/// Why a receipt could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("the receipt names no message id (no receipted_message_id TLV, no id: in its text)")]
    NoId,
    #[error("the receipt gives no state (no message_state TLV, no stat: in its text)")]
    NoState,
    #[error("unrecognised receipt state {0:?}")]
    UnknownState(String),
}

/// The keys of the Appendix B text, in their usual order. `text:` comes last and may hold
/// anything, so it ends the search for other keys.
const KEYS: [&str; 7] = [
    "id:",
    "sub:",
    "dlvrd:",
    "submit date:",
    "done date:",
    "stat:",
    "err:",
];

/// The fields of the Appendix B receipt text (values trimmed; absent keys are `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextReceipt {
    pub id: Option<String>,
    pub sub: Option<String>,
    pub dlvrd: Option<String>,
    pub submit_date: Option<String>,
    pub done_date: Option<String>,
    pub stat: Option<String>,
    pub err: Option<String>,
    pub text: Option<String>,
}

/// Reads the Appendix B text. Keys are found only at the start or after whitespace, so a
/// `text:` that quotes "id:" does not confuse it. Never fails; absent keys are `None`.
pub fn parse_text(text: &str) -> TextReceipt {
    // ASCII lower-casing keeps byte offsets, so positions found in `lower` index `text`.
    let lower = text.to_ascii_lowercase();
    let at_boundary = |pos: usize| {
        pos == 0
            || lower
                .get(..pos)
                .and_then(|before| before.chars().last())
                .is_some_and(char::is_whitespace)
    };
    let find = |key: &str, limit: usize| {
        lower
            .match_indices(key)
            .map(|(pos, _)| pos)
            .find(|&pos| pos < limit && at_boundary(pos))
    };
    let text_at = find("text:", lower.len());
    let limit = text_at.unwrap_or(lower.len());
    let mut found: Vec<(usize, usize, usize)> = KEYS
        .iter()
        .enumerate()
        .filter_map(|(k, key)| find(key, limit).map(|pos| (pos, k, key.len())))
        .collect();
    if let Some(pos) = text_at {
        found.push((pos, KEYS.len(), "text:".len()));
    }
    found.sort_unstable();
    let mut out = TextReceipt::default();
    for (i, &(pos, k, key_len)) in found.iter().enumerate() {
        let end = found
            .get(i.saturating_add(1))
            .map_or(text.len(), |next| next.0);
        let value = text
            .get(pos.saturating_add(key_len)..end)
            .unwrap_or_default()
            .trim()
            .to_owned();
        let slot = match k {
            0 => &mut out.id,
            1 => &mut out.sub,
            2 => &mut out.dlvrd,
            3 => &mut out.submit_date,
            4 => &mut out.done_date,
            5 => &mut out.stat,
            6 => &mut out.err,
            _ => &mut out.text,
        };
        *slot = Some(value);
    }
    out
}

/// Maps a `stat:` word (Appendix B; the 7-letter forms and common long spellings).
pub fn status_of_stat(stat: &str) -> Option<ReceiptStatus> {
    let upper = stat.trim().to_ascii_uppercase();
    Some(match upper.as_str() {
        "DELIVRD" | "DELIVERED" => ReceiptStatus::Delivered,
        "ENROUTE" | "ACCEPTD" | "ACCEPTED" | "SCHEDULED" | "BUFFRED" | "BUFFERED" => {
            ReceiptStatus::Sent
        }
        "UNDELIV" | "UNDELIVERABLE" | "EXPIRED" | "REJECTD" | "REJECTED" | "DELETED"
        | "UNKNOWN" | "SKIPPED" | "FAILED" => ReceiptStatus::Failed,
        _ => return None,
    })
}

/// Maps a `message_state` value (SMPP 3.4 §5.2.28; 9 SKIPPED is SMPP 5.0's) and its name.
pub fn status_of_state(state: u8) -> Option<(ReceiptStatus, &'static str)> {
    Some(match state {
        0 => (ReceiptStatus::Sent, "SCHEDULED"),
        1 => (ReceiptStatus::Sent, "ENROUTE"),
        2 => (ReceiptStatus::Delivered, "DELIVRD"),
        3 => (ReceiptStatus::Failed, "EXPIRED"),
        4 => (ReceiptStatus::Failed, "DELETED"),
        5 => (ReceiptStatus::Failed, "UNDELIV"),
        6 => (ReceiptStatus::Sent, "ACCEPTD"),
        7 => (ReceiptStatus::Failed, "UNKNOWN"),
        8 => (ReceiptStatus::Failed, "REJECTD"),
        9 => (ReceiptStatus::Failed, "SKIPPED"),
        _ => return None,
    })
}

/// Reads a receipt from its `deliver_sm` fields (TLVs first, then the text).
pub fn parse(fields: &ReceiptFields<'_>) -> Result<Receipt, ReceiptError> {
    // The text is ASCII by convention; anything else is shown, not trusted.
    let text = String::from_utf8_lossy(fields.short_message);
    let parsed = parse_text(&text);
    let message_id = fields
        .receipted_message_id
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .or_else(|| parsed.id.clone().filter(|id| !id.is_empty()))
        .ok_or(ReceiptError::NoId)?;
    let (status, stat_name) = match fields.message_state.and_then(status_of_state) {
        Some((status, name)) => (status, name.to_owned()),
        None => {
            let stat = parsed.stat.clone().ok_or(ReceiptError::NoState)?;
            let status =
                status_of_stat(&stat).ok_or_else(|| ReceiptError::UnknownState(stat.clone()))?;
            (status, stat.to_ascii_uppercase())
        }
    };
    let reason = (status == ReceiptStatus::Failed).then(|| {
        let mut reason = stat_name;
        if let Some(err) = parsed.err.as_deref().filter(|e| !e.is_empty()) {
            reason.push_str(" err:");
            reason.push_str(err);
        }
        if let Some([network_type, hi, lo]) = fields.network_error_code {
            let code = u16::from_be_bytes([*hi, *lo]);
            reason.push_str(&format!(" network_error_code:{network_type}/{code}"));
        }
        reason
    });
    Ok(Receipt {
        message_id,
        status,
        reason,
    })
}

/// Other spellings of an SMSC message id: some SMSCs answer `submit_sm_resp` with a hex id and
/// write the same number in decimal in the receipt (or the other way round).
fn id_variants(id: &str) -> Vec<String> {
    let mut out = Vec::new();
    if !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = id.parse::<u64>() {
            out.push(format!("{n:x}"));
            out.push(format!("{n:X}"));
        }
    }
    if !id.is_empty() && id.len() <= 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        if let Ok(n) = u64::from_str_radix(id, 16) {
            out.push(n.to_string());
        }
    }
    out
}

#[derive(Debug)]
struct Tracked {
    created: Instant,
    /// Delivered flag per part.
    delivered: Vec<bool>,
    /// Delivered or failed has been reported; later receipts are dropped.
    done: bool,
}

/// Joins the receipts of multi-part messages; bounded in size and age.
#[derive(Debug)]
pub struct PartTracker {
    capacity: usize,
    ttl: Duration,
    /// Part id → (first part's id, part index).
    parts: HashMap<String, (Arc<str>, usize)>,
    messages: HashMap<Arc<str>, Tracked>,
    /// First-part ids, oldest first, with every part id, for expiry.
    order: VecDeque<(Arc<str>, Vec<String>)>,
}

impl PartTracker {
    /// Keeps at most `capacity` messages, each for at most `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        PartTracker {
            capacity: capacity.max(1),
            ttl,
            parts: HashMap::new(),
            messages: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Remembers a message of several parts, ids in part order (the first is the message's id).
    pub fn track(&mut self, part_ids: Vec<String>, now: Instant) {
        let Some(first) = part_ids.first() else {
            return;
        };
        self.expire(now);
        while self.messages.len() >= self.capacity {
            if !self.pop_oldest() {
                break;
            }
        }
        let first: Arc<str> = Arc::from(first.as_str());
        for (index, id) in part_ids.iter().enumerate() {
            self.parts.insert(id.clone(), (first.clone(), index));
        }
        self.messages.insert(
            first.clone(),
            Tracked {
                created: now,
                delivered: vec![false; part_ids.len()],
                done: false,
            },
        );
        self.order.push_back((first, part_ids));
    }

    fn pop_oldest(&mut self) -> bool {
        let Some((first, ids)) = self.order.pop_front() else {
            return false;
        };
        self.messages.remove(&first);
        for id in ids {
            if self.parts.get(&id).is_some_and(|(f, _)| *f == first) {
                self.parts.remove(&id);
            }
        }
        true
    }

    fn expire(&mut self, now: Instant) {
        while let Some((first, _)) = self.order.front() {
            let old = self
                .messages
                .get(first)
                .is_none_or(|m| now.saturating_duration_since(m.created) >= self.ttl);
            if !old {
                break;
            }
            self.pop_oldest();
        }
    }

    /// What to report for a receipt: `Some` receipt (possibly re-addressed to the first
    /// part's id), or `None` when it adds nothing (a part delivered while others are not yet).
    pub fn resolve(&mut self, receipt: Receipt, now: Instant) -> Option<Receipt> {
        self.expire(now);
        let hit = std::iter::once(receipt.message_id.clone())
            .chain(id_variants(&receipt.message_id))
            .find_map(|id| self.parts.get(&id).cloned());
        let Some((first, index)) = hit else {
            return Some(receipt);
        };
        let message = self.messages.get_mut(&first)?;
        let total = message.delivered.len();
        if message.done {
            return None;
        }
        let status = match receipt.status {
            ReceiptStatus::Sent => ReceiptStatus::Sent,
            ReceiptStatus::Failed => {
                message.done = true;
                ReceiptStatus::Failed
            }
            ReceiptStatus::Delivered => {
                if let Some(flag) = message.delivered.get_mut(index) {
                    *flag = true;
                }
                if !message.delivered.iter().all(|d| *d) {
                    return None;
                }
                message.done = true;
                ReceiptStatus::Delivered
            }
        };
        let reason = receipt.reason.map(|r| {
            format!(
                "part {} of {total}: {r}",
                index.saturating_add(1),
                total = total
            )
        });
        Some(Receipt {
            message_id: first.to_string(),
            status,
            reason,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const SAMPLE: &str = "id:0123456789 sub:001 dlvrd:001 submit date:2511291530 done date:2511291531 stat:DELIVRD err:000 text:Hello id:x stat:UNDELIV";

    #[test]
    fn the_appendix_b_text() {
        let r = parse_text(SAMPLE);
        assert_eq!(r.id.as_deref(), Some("0123456789"));
        assert_eq!(r.sub.as_deref(), Some("001"));
        assert_eq!(r.dlvrd.as_deref(), Some("001"));
        assert_eq!(r.submit_date.as_deref(), Some("2511291530"));
        assert_eq!(r.done_date.as_deref(), Some("2511291531"));
        assert_eq!(r.stat.as_deref(), Some("DELIVRD"));
        assert_eq!(r.err.as_deref(), Some("000"));
        // the quoted text may contain key-like words; they are not keys
        assert_eq!(r.text.as_deref(), Some("Hello id:x stat:UNDELIV"));
    }

    #[test]
    fn upper_case_keys_other_order_and_missing_keys() {
        let r = parse_text("ID:abc STAT:undeliv ERR:005 Submit Date:2511291530");
        assert_eq!(r.id.as_deref(), Some("abc"));
        assert_eq!(r.stat.as_deref(), Some("undeliv"));
        assert_eq!(r.err.as_deref(), Some("005"));
        assert_eq!(r.submit_date.as_deref(), Some("2511291530"));
        assert_eq!(r.done_date, None);
        assert_eq!(parse_text(""), TextReceipt::default());
        assert_eq!(parse_text("garbage: é ü 😀"), TextReceipt::default());
    }

    fn fields(text: &str) -> ReceiptFields<'_> {
        ReceiptFields {
            esm_class: 0x04,
            short_message: text.as_bytes(),
            ..ReceiptFields::default()
        }
    }

    #[test]
    fn text_receipts_map_every_state() {
        for (stat, status) in [
            ("DELIVRD", ReceiptStatus::Delivered),
            ("ENROUTE", ReceiptStatus::Sent),
            ("ACCEPTD", ReceiptStatus::Sent),
            ("UNDELIV", ReceiptStatus::Failed),
            ("EXPIRED", ReceiptStatus::Failed),
            ("REJECTD", ReceiptStatus::Failed),
            ("DELETED", ReceiptStatus::Failed),
            ("UNKNOWN", ReceiptStatus::Failed),
        ] {
            let text = format!("id:42 sub:001 dlvrd:000 stat:{stat} err:007 text:");
            let r = parse(&fields(&text)).unwrap();
            assert_eq!(r.message_id, "42");
            assert_eq!(r.status, status, "{stat}");
            if status == ReceiptStatus::Failed {
                assert_eq!(
                    r.reason.as_deref(),
                    Some(format!("{stat} err:007").as_str())
                );
            } else {
                assert_eq!(r.reason, None);
            }
        }
        assert_eq!(
            parse(&fields("id:1 stat:WHATEVER")),
            Err(ReceiptError::UnknownState("WHATEVER".into()))
        );
        assert_eq!(parse(&fields("stat:DELIVRD")), Err(ReceiptError::NoId));
        assert_eq!(parse(&fields("id:1")), Err(ReceiptError::NoState));
    }

    #[test]
    fn tlvs_win_over_the_text() {
        let f = ReceiptFields {
            esm_class: 0x04,
            short_message: b"id:wrong stat:DELIVRD",
            receipted_message_id: Some("right"),
            message_state: Some(5),
            network_error_code: Some(&[3, 0, 27]),
        };
        let r = parse(&f).unwrap();
        assert_eq!(r.message_id, "right");
        assert_eq!(r.status, ReceiptStatus::Failed);
        assert_eq!(r.reason.as_deref(), Some("UNDELIV network_error_code:3/27"));
        // TLVs alone, no text at all
        let f = ReceiptFields {
            esm_class: 0,
            short_message: b"",
            receipted_message_id: Some("m1"),
            message_state: Some(2),
            network_error_code: None,
        };
        assert!(f.is_receipt());
        assert_eq!(parse(&f).unwrap().status, ReceiptStatus::Delivered);
    }

    #[test]
    fn what_counts_as_a_receipt() {
        assert!(fields("").is_receipt());
        let mut f = fields("");
        f.esm_class = 0x20;
        assert!(f.is_receipt());
        f.esm_class = 0x40; // UDHI, a mobile-originated part
        assert!(!f.is_receipt());
        f.esm_class = 0x00;
        assert!(!f.is_receipt());
    }

    fn receipt(id: &str, status: ReceiptStatus) -> Receipt {
        Receipt {
            message_id: id.into(),
            status,
            reason: (status == ReceiptStatus::Failed).then(|| "UNDELIV".into()),
        }
    }

    #[test]
    fn multi_part_receipts_resolve_to_the_first_part() {
        let now = Instant::now();
        let mut t = PartTracker::new(10, Duration::from_secs(60));
        t.track(vec!["a1".into(), "a2".into(), "a3".into()], now);
        // progress reports go through under the first id
        let r = t.resolve(receipt("a2", ReceiptStatus::Sent), now).unwrap();
        assert_eq!(
            (r.message_id.as_str(), r.status),
            ("a1", ReceiptStatus::Sent)
        );
        // delivered only when every part is
        assert_eq!(
            t.resolve(receipt("a3", ReceiptStatus::Delivered), now),
            None
        );
        assert_eq!(
            t.resolve(receipt("a1", ReceiptStatus::Delivered), now),
            None
        );
        assert_eq!(
            t.resolve(receipt("a1", ReceiptStatus::Delivered), now),
            None
        );
        let r = t
            .resolve(receipt("a2", ReceiptStatus::Delivered), now)
            .unwrap();
        assert_eq!(
            (r.message_id.as_str(), r.status),
            ("a1", ReceiptStatus::Delivered)
        );
        // once final, later receipts add nothing
        assert_eq!(t.resolve(receipt("a2", ReceiptStatus::Failed), now), None);

        // one failed part fails the message at once, with the part named
        t.track(vec!["b1".into(), "b2".into()], now);
        let r = t
            .resolve(receipt("b2", ReceiptStatus::Failed), now)
            .unwrap();
        assert_eq!(r.message_id, "b1");
        assert_eq!(r.status, ReceiptStatus::Failed);
        assert_eq!(r.reason.as_deref(), Some("part 2 of 2: UNDELIV"));

        // unknown ids pass through untouched
        let unknown = receipt("zzz", ReceiptStatus::Delivered);
        assert_eq!(t.resolve(unknown.clone(), now), Some(unknown));
    }

    #[test]
    fn decimal_and_hex_spellings_of_an_id_match() {
        let now = Instant::now();
        let mut t = PartTracker::new(10, Duration::from_secs(60));
        t.track(vec!["ff".into(), "100".into()], now);
        // 255 is ff in decimal; 256 is 0x100
        assert_eq!(
            t.resolve(receipt("255", ReceiptStatus::Delivered), now),
            None
        );
        let r = t
            .resolve(receipt("256", ReceiptStatus::Delivered), now)
            .unwrap();
        assert_eq!(r.message_id, "ff");
    }

    #[test]
    fn the_tracker_is_bounded_in_size_and_age() {
        let now = Instant::now();
        let mut t = PartTracker::new(2, Duration::from_secs(60));
        t.track(vec!["a1".into(), "a2".into()], now);
        t.track(vec!["b1".into(), "b2".into()], now);
        t.track(vec!["c1".into(), "c2".into()], now);
        assert_eq!(t.len(), 2);
        // a was evicted: its part receipt passes through unresolved
        let r = t.resolve(receipt("a2", ReceiptStatus::Sent), now).unwrap();
        assert_eq!(r.message_id, "a2");
        let later = now + Duration::from_secs(61);
        let r = t
            .resolve(receipt("b2", ReceiptStatus::Sent), later)
            .unwrap();
        assert_eq!(r.message_id, "b2");
        assert!(t.is_empty());
    }
}
