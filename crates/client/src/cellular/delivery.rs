//! Delivery reports: telling a text that left over cellular has reached the phone it was for.
//!
//! A backend that asked the network for status reports (TP-SRR, 3GPP TS 23.040 §9.2.3.5)
//! hands each sent text a [`SentTextId`] in its [`super::CellularReceipt`], and later one
//! [`DeliveryReport`] per text on [`super::Cellular::take_delivery_reports`]. [`SentTexts`]
//! is the bookkeeping both backends share: the network reports on each SMS segment by its
//! message reference (TP-MR, one octet, so references repeat after 256 sends); a text is
//! delivered once every one of its segments is, and failed as soon as one segment failed for
//! good. Reports that are still "trying" (TP-ST 0x20–0x3F) change nothing.
//!
//! Invariants:
//! - One report per text at most: a text leaves the book when it is reported.
//! - Memory is bounded: at most [`MAX_TRACKED`] texts wait for reports (the oldest is given
//!   up first) and at most [`MAX_UNMATCHED`] reports wait for a text.
//! - A report that arrives before the text it is about is registered (the network can be
//!   quicker than the D-Bus reply carrying the reference) is kept and matched at
//!   registration, for the next [`EARLY_REPORT_WAIT`] registrations only: a stray report (for
//!   a text sent before a restart) must not settle a later text that reuses its reference.

use std::collections::VecDeque;

use airtext_sms::tpdu::StatusClass;
use serde::{Deserialize, Serialize};

/// How many sent texts wait for their reports at most.
pub const MAX_TRACKED: usize = 1024;
/// How many reports wait for a text to match at most.
pub const MAX_UNMATCHED: usize = 64;
/// For how many registrations a report that matched no text is kept.
pub const EARLY_REPORT_WAIT: u8 = 4;

/// One text a backend sent, as its delivery report names it. Unique within one backend
/// instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SentTextId(pub u64);

/// What became of a sent text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryOutcome {
    /// Every segment reached the recipient's phone.
    Delivered,
    /// The network gave up on it, with the reason in words.
    Failed { reason: String },
}

/// The network's word on one sent text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryReport {
    pub text: SentTextId,
    pub outcome: DeliveryOutcome,
}

/// The meaning of a TP-Status octet (3GPP TS 23.040 §9.2.3.15), for people.
pub fn status_text(status: u8) -> String {
    let meaning = match status {
        0x00 => "received by the recipient",
        0x01 => "forwarded, delivery unconfirmed",
        0x02 => "replaced by the service centre",
        0x20 => "congestion, still trying",
        0x21 => "the recipient's phone is busy, still trying",
        0x22 => "no response from the recipient's phone, still trying",
        0x23 => "service rejected, still trying",
        0x24 => "quality of service not available, still trying",
        0x25 => "error in the recipient's phone, still trying",
        0x40 => "remote procedure error",
        0x41 => "incompatible destination",
        0x42 => "connection rejected by the recipient's phone",
        0x43 => "not obtainable",
        0x44 | 0x64 => "quality of service not available",
        0x45 => "no interworking available",
        0x46 => "the text expired before it could be delivered",
        0x47 => "deleted by the sender",
        0x48 => "deleted by the service centre",
        0x49 => "the text does not exist at the service centre",
        0x60 => "congestion",
        0x61 => "the recipient's phone is busy",
        0x62 => "no response from the recipient's phone",
        0x63 => "service rejected",
        0x65 => "error in the recipient's phone",
        _ => match StatusClass::of(status) {
            StatusClass::Delivered => "delivered",
            StatusClass::Pending => "temporary error, still trying",
            StatusClass::Failed => "not delivered",
        },
    };
    format!("{meaning} (status 0x{status:02X})")
}

/// One segment's report, as a backend read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentReport {
    /// TP-MR of the segment it is about.
    pub reference: u8,
    /// The recipient the report names (TP-RA); empty when the backend does not know it.
    pub recipient: String,
    pub class: StatusClass,
    /// What the status means, for a failure's reason.
    pub detail: String,
}

#[derive(Debug)]
struct Tracked {
    id: SentTextId,
    to: String,
    /// References of the segments not yet reported delivered.
    waiting: Vec<u8>,
}

/// The texts waiting for reports, and reports waiting for texts (see the module docs).
#[derive(Debug, Default)]
pub struct SentTexts {
    next_id: u64,
    /// Oldest first.
    texts: VecDeque<Tracked>,
    /// Reports that matched no text, with how many registrations they have waited.
    unmatched: VecDeque<(SegmentReport, u8)>,
}

impl SentTexts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts waiting for the reports on a text sent to `to` as segments with `references`.
    /// Returns its id, and its report when reports that arrived early already settle it.
    pub fn register(
        &mut self,
        to: &str,
        references: &[u8],
    ) -> (SentTextId, Option<DeliveryReport>) {
        self.next_id = self.next_id.wrapping_add(1);
        let id = SentTextId(self.next_id);
        if self.texts.len() >= MAX_TRACKED {
            self.texts.pop_front();
        }
        self.texts.push_back(Tracked {
            id,
            to: to.to_owned(),
            waiting: references.to_vec(),
        });
        // Texts registered before a report arrived matched it then: only this one can now.
        let early: Vec<(SegmentReport, u8)> = self.unmatched.drain(..).collect();
        let mut settled = None;
        for (report, waited) in early {
            if references.contains(&report.reference) && same_number(to, &report.recipient) {
                if let Some(done) = self.report(report) {
                    settled = Some(done);
                }
            } else if waited + 1 < EARLY_REPORT_WAIT {
                self.unmatched.push_back((report, waited + 1));
            }
        }
        (id, settled)
    }

    /// Takes one segment's report; returns the text's report when it settles the text.
    pub fn report(&mut self, report: SegmentReport) -> Option<DeliveryReport> {
        // The newest text with that reference: references repeat, the newest is the one the
        // network just handled.
        let found = self.texts.iter().rposition(|t| {
            t.waiting.contains(&report.reference) && same_number(&t.to, &report.recipient)
        });
        let Some(index) = found else {
            if report.class != StatusClass::Pending {
                if self.unmatched.len() >= MAX_UNMATCHED {
                    self.unmatched.pop_front();
                }
                self.unmatched.push_back((report, 0));
            }
            return None;
        };
        let text = self.texts.get_mut(index)?;
        let outcome = match report.class {
            StatusClass::Pending => return None,
            StatusClass::Failed => DeliveryOutcome::Failed {
                reason: format!("the network could not deliver it: {}", report.detail),
            },
            StatusClass::Delivered => {
                text.waiting.retain(|r| *r != report.reference);
                if !text.waiting.is_empty() {
                    return None;
                }
                DeliveryOutcome::Delivered
            }
        };
        let text = self.texts.remove(index)?;
        Some(DeliveryReport {
            text: text.id,
            outcome,
        })
    }

    /// Stops waiting for a text's reports (the backend gave it up).
    pub fn forget(&mut self, id: SentTextId) {
        self.texts.retain(|t| t.id != id);
    }

    /// How many texts wait for reports.
    pub fn waiting(&self) -> usize {
        self.texts.len()
    }
}

/// Whether two renderings of a phone number name the same phone: the digits of one end with
/// the digits of the other (a status report may give `4155550100` for `+14155550100`). An
/// unknown side matches anything.
fn same_number(a: &str, b: &str) -> bool {
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    let (a, b) = (digits(a), digits(b));
    if a.is_empty() || b.is_empty() {
        return true;
    }
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short.len() >= 6.min(long.len()) && long.ends_with(&short)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(reference: u8, recipient: &str, status: u8) -> SegmentReport {
        SegmentReport {
            reference,
            recipient: recipient.to_owned(),
            class: StatusClass::of(status),
            detail: status_text(status),
        }
    }

    #[test]
    fn a_text_is_delivered_once_every_segment_is() {
        let mut book = SentTexts::new();
        let (id, early) = book.register("+14155550100", &[7, 8, 9]);
        assert!(early.is_none());
        assert_eq!(book.report(seg(8, "+14155550100", 0x00)), None);
        assert_eq!(
            book.report(seg(7, "4155550100", 0x21)),
            None,
            "still trying"
        );
        assert_eq!(book.report(seg(7, "4155550100", 0x00)), None);
        assert_eq!(
            book.report(seg(9, "", 0x01)),
            Some(DeliveryReport {
                text: id,
                outcome: DeliveryOutcome::Delivered
            })
        );
        assert_eq!(book.waiting(), 0);
        // A repeated report changes nothing.
        assert_eq!(book.report(seg(9, "", 0x00)), None);
    }

    #[test]
    fn one_failed_segment_fails_the_text() {
        let mut book = SentTexts::new();
        let (id, _) = book.register("+14155550100", &[1, 2]);
        let report = book.report(seg(2, "+14155550100", 0x46));
        assert_eq!(report.as_ref().map(|r| r.text), Some(id));
        let reason = match report.map(|r| r.outcome) {
            Some(DeliveryOutcome::Failed { reason }) => reason,
            other => format!("not a failure: {other:?}"),
        };
        assert!(reason.contains("expired"), "{reason}");
        assert_eq!(book.waiting(), 0);
    }

    #[test]
    fn references_repeat_and_the_newest_text_with_one_is_meant() {
        let mut book = SentTexts::new();
        let (old, _) = book.register("+14155550100", &[5]);
        let (_other, _) = book.register("+447700900123", &[5]);
        let (new, _) = book.register("+14155550100", &[5]);
        let r = book.report(seg(5, "+14155550100", 0x00));
        assert_eq!(r.map(|r| r.text), Some(new));
        let r = book.report(seg(5, "+14155550100", 0x00));
        assert_eq!(r.map(|r| r.text), Some(old));
    }

    #[test]
    fn a_report_before_its_text_is_matched_at_registration() {
        let mut book = SentTexts::new();
        assert_eq!(book.report(seg(3, "+14155550100", 0x00)), None);
        let (id, early) = book.register("+14155550100", &[3]);
        assert_eq!(
            early,
            Some(DeliveryReport {
                text: id,
                outcome: DeliveryOutcome::Delivered
            })
        );
        // A report for someone else stays unmatched.
        assert_eq!(book.report(seg(4, "+33612345678", 0x00)), None);
        let (_, early) = book.register("+14155550100", &[4]);
        assert_eq!(early, None);
    }

    #[test]
    fn a_stray_report_does_not_settle_a_much_later_text() {
        let mut book = SentTexts::new();
        // A report for a text sent before a restart.
        assert_eq!(book.report(seg(9, "+14155550100", 0x00)), None);
        for reference in 0..EARLY_REPORT_WAIT {
            let (_, early) = book.register("+14155550100", &[reference]);
            assert_eq!(early, None);
        }
        let (_, early) = book.register("+14155550100", &[9]);
        assert_eq!(early, None, "the stray report was dropped");
    }

    #[test]
    fn memory_is_bounded() {
        let mut book = SentTexts::new();
        for i in 0..(MAX_TRACKED + 10) {
            book.register("+14155550100", &[(i % 256) as u8]);
        }
        assert_eq!(book.waiting(), MAX_TRACKED);
        for i in 0..(MAX_UNMATCHED + 10) {
            book.report(seg((i % 256) as u8, "+33612345678", 0x00));
        }
        assert_eq!(book.unmatched.len(), MAX_UNMATCHED);
    }

    #[test]
    fn numbers_compare_by_their_digits() {
        assert!(same_number("+14155550100", "14155550100"));
        assert!(same_number("+14155550100", "4155550100"));
        assert!(same_number("+14155550100", ""));
        assert!(!same_number("+14155550100", "+14155550101"));
        assert!(!same_number("+14155550100", "100"));
        assert!(same_number("12345", "12345"));
    }
}
