//! Joining the parts of a concatenated message (3GPP TS 23.040 §9.2.3.24.1 and §9.2.3.24.8).
//!
//! Parts may arrive in any order and more than once; one may never arrive. Parts are grouped
//! by (sender, reference, total). A group is complete when every sequence number 1…total is
//! there; a duplicate keeps the first copy; a group still incomplete `timeout` after its first
//! part is given up and handed back with what did arrive, so nothing is dropped silently.
//!
//! No clocks here: the caller passes `now` as a [`Duration`] since any fixed epoch of its
//! choosing (e.g. the UNIX epoch) and calls [`Reassembler::expire`] when it likes.
//!
//! Payloads are joined *before* decoding, so an escape or surrogate pair that a careless
//! sender split across two parts still decodes to the right character.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::tpdu::{decode_payload, Alphabet, Deliver};
use crate::udh::Concat;

/// One received part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// Who sent it, as text (normalised by the caller).
    pub sender: String,
    /// Its place in the message; `None` for a message that is not concatenated.
    pub concat: Option<Concat>,
    /// Its alphabet.
    pub alphabet: Alphabet,
    /// Its payload: unpacked septets for GSM-7 (as SMPP `data_coding` 0 carries them and
    /// [`crate::tpdu::UserData::payload`] holds them), raw octets otherwise. No UDH.
    pub payload: Vec<u8>,
}

impl Part {
    /// The part an SMS-DELIVER carries.
    pub fn from_deliver(d: &Deliver) -> Part {
        Part {
            sender: d.originator.to_string(),
            concat: d.concat(),
            alphabet: d.user_data.alphabet,
            payload: d.user_data.payload.clone(),
        }
    }
}

/// A whole message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sender.
    pub sender: String,
    /// The full text.
    pub text: String,
    /// How many parts it came in.
    pub parts: u8,
    /// The concatenation reference, if it was concatenated.
    pub reference: Option<u16>,
}

/// What [`Reassembler::push`] made of a part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Push {
    /// The message is whole.
    Complete(Message),
    /// Kept; the message still lacks parts.
    Pending {
        /// Distinct parts held so far.
        received: u8,
        /// Parts the message has.
        total: u8,
    },
    /// That part was already held; the copy was dropped.
    Duplicate,
}

/// A message given up on because a part never came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GivenUp {
    /// The sender.
    pub sender: String,
    /// The concatenation reference.
    pub reference: u16,
    /// Parts the message should have had.
    pub total: u8,
    /// Sequence numbers that never arrived.
    pub missing: Vec<u8>,
    /// The parts that did arrive, in order, joined.
    pub partial_text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    sender: String,
    reference: u16,
    total: u8,
}

#[derive(Debug)]
struct Group {
    first_seen: Duration,
    /// Index `seq - 1`.
    parts: Vec<Option<(Alphabet, Vec<u8>)>>,
}

impl Group {
    fn received(&self) -> u8 {
        u8::try_from(self.parts.iter().filter(|p| p.is_some()).count()).unwrap_or(u8::MAX)
    }

    fn text(&self) -> String {
        let held: Vec<&(Alphabet, Vec<u8>)> = self.parts.iter().flatten().collect();
        let first = held.first().map(|(a, _)| *a);
        if held.iter().all(|(a, _)| Some(*a) == first) {
            let joined: Vec<u8> = held.iter().flat_map(|(_, p)| p.iter().copied()).collect();
            decode_payload(first.unwrap_or(Alphabet::Gsm7), &joined)
        } else {
            held.iter().map(|(a, p)| decode_payload(*a, p)).collect()
        }
    }

    fn missing(&self) -> Vec<u8> {
        (1..=u8::MAX)
            .zip(&self.parts)
            .filter(|(_, p)| p.is_none())
            .map(|(seq, _)| seq)
            .collect()
    }
}

/// Holds incomplete concatenated messages until they are whole or given up.
#[derive(Debug)]
pub struct Reassembler {
    timeout: Duration,
    max_pending: usize,
    groups: HashMap<Key, Group>,
    evicted: Vec<GivenUp>,
}

impl Reassembler {
    /// Default limit on messages held at once.
    pub const DEFAULT_MAX_PENDING: usize = 10_000;

    /// A reassembler that gives a message up `timeout` after its first part.
    pub fn new(timeout: Duration) -> Self {
        Self::with_max_pending(timeout, Self::DEFAULT_MAX_PENDING)
    }

    /// Like [`Self::new`], holding at most `max_pending` incomplete messages: when a new one
    /// would exceed it, the oldest is given up (and reported by the next [`Self::expire`]).
    pub fn with_max_pending(timeout: Duration, max_pending: usize) -> Self {
        Reassembler {
            timeout,
            max_pending: max_pending.max(1),
            groups: HashMap::new(),
            evicted: Vec::new(),
        }
    }

    /// Incomplete messages held.
    pub fn pending(&self) -> usize {
        self.groups.len()
    }

    /// When the oldest held message will be given up, if any.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.groups
            .values()
            .map(|g| g.first_seen.saturating_add(self.timeout))
            .min()
    }

    /// Takes a part received at `now`.
    pub fn push(&mut self, part: Part, now: Duration) -> Push {
        let Some(concat) = part.concat.filter(Concat::is_valid) else {
            return Push::Complete(Message {
                text: decode_payload(part.alphabet, &part.payload),
                sender: part.sender,
                parts: 1,
                reference: None,
            });
        };
        let key = Key {
            sender: part.sender,
            reference: concat.reference,
            total: concat.total,
        };
        if !self.groups.contains_key(&key) && self.groups.len() >= self.max_pending {
            self.evict_oldest();
        }
        let group = self.groups.entry(key.clone()).or_insert_with(|| Group {
            first_seen: now,
            parts: vec![None; usize::from(concat.total)],
        });
        let Some(slot) = group
            .parts
            .get_mut(usize::from(concat.seq).saturating_sub(1))
        else {
            return Push::Duplicate;
        };
        if slot.is_some() {
            return Push::Duplicate;
        }
        *slot = Some((part.alphabet, part.payload));
        let received = group.received();
        if received < concat.total {
            return Push::Pending {
                received,
                total: concat.total,
            };
        }
        let text = group.text();
        self.groups.remove(&key);
        Push::Complete(Message {
            sender: key.sender,
            text,
            parts: concat.total,
            reference: Some(concat.reference),
        })
    }

    /// Takes the message of an SMS-DELIVER received at `now`.
    pub fn push_deliver(&mut self, deliver: &Deliver, now: Duration) -> Push {
        self.push(Part::from_deliver(deliver), now)
    }

    /// Gives up every message whose first part came `timeout` or longer before `now`, and
    /// returns them with any evicted for lack of room.
    pub fn expire(&mut self, now: Duration) -> Vec<GivenUp> {
        let timeout = self.timeout;
        let expired: Vec<Key> = self
            .groups
            .iter()
            .filter(|(_, g)| now.saturating_sub(g.first_seen) >= timeout)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = std::mem::take(&mut self.evicted);
        for key in expired {
            if let Some(g) = self.groups.remove(&key) {
                out.push(given_up(key, &g));
            }
        }
        out.sort_by(|a, b| (&a.sender, a.reference).cmp(&(&b.sender, b.reference)));
        out
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .groups
            .iter()
            .min_by_key(|(_, g)| g.first_seen)
            .map(|(k, _)| k.clone());
        if let Some(key) = oldest {
            if let Some(g) = self.groups.remove(&key) {
                self.evicted.push(given_up(key, &g));
            }
        }
    }
}

fn given_up(key: Key, g: &Group) -> GivenUp {
    GivenUp {
        missing: g.missing(),
        partial_text: g.text(),
        sender: key.sender,
        reference: key.reference,
        total: key.total,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::plan;

    fn parts(text: &str, reference: u16) -> Vec<Part> {
        let p = plan(text);
        let enc = p.encode(u8::try_from(reference).unwrap()).unwrap();
        let alphabet = match p.encoding {
            crate::Encoding::Gsm7 => Alphabet::Gsm7,
            crate::Encoding::Ucs2 => Alphabet::Ucs2,
        };
        let total = u8::try_from(enc.len()).unwrap();
        enc.into_iter()
            .enumerate()
            .map(|(i, e)| Part {
                sender: "+15550001".into(),
                concat: Some(Concat {
                    reference,
                    total,
                    seq: u8::try_from(i + 1).unwrap(),
                }),
                alphabet,
                payload: e.payload,
            })
            .collect()
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn any_order_with_duplicates() {
        let text = "z".repeat(400);
        let ps = parts(&text, 7);
        let mut r = Reassembler::new(60 * S);
        assert_eq!(
            r.push(ps[2].clone(), S),
            Push::Pending {
                received: 1,
                total: 3
            }
        );
        assert_eq!(r.push(ps[2].clone(), S), Push::Duplicate);
        assert_eq!(
            r.push(ps[0].clone(), 2 * S),
            Push::Pending {
                received: 2,
                total: 3
            }
        );
        match r.push(ps[1].clone(), 3 * S) {
            Push::Complete(m) => {
                assert_eq!(m.text, text);
                assert_eq!(m.parts, 3);
                assert_eq!(m.reference, Some(7));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.pending(), 0);
        // A late duplicate after completion starts a new group that later expires.
        assert!(matches!(r.push(ps[0].clone(), 4 * S), Push::Pending { .. }));
        assert_eq!(r.expire(100 * S).len(), 1);
    }

    #[test]
    fn missing_part_is_held_then_given_up() {
        let text = format!("{}😀{}", "ж".repeat(100), "q".repeat(50));
        let ps = parts(&text, 1);
        assert_eq!(ps.len(), 3);
        let mut r = Reassembler::new(60 * S);
        r.push(ps[0].clone(), 10 * S);
        r.push(ps[2].clone(), 20 * S);
        assert_eq!(r.next_deadline(), Some(70 * S));
        assert!(r.expire(69 * S).is_empty());
        let gone = r.expire(70 * S);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].missing, [2]);
        assert_eq!(gone[0].total, 3);
        assert!(gone[0].partial_text.starts_with(&"ж".repeat(67)));
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn groups_are_kept_apart_by_sender_and_reference() {
        let a = parts(&"a".repeat(200), 5);
        let mut b = parts(&"b".repeat(200), 5);
        for p in &mut b {
            p.sender = "+15550002".into();
        }
        let mut r = Reassembler::new(60 * S);
        r.push(a[0].clone(), S);
        r.push(b[1].clone(), S);
        let Push::Complete(m) = r.push(b[0].clone(), S) else {
            panic!()
        };
        assert_eq!(m.text, "b".repeat(200));
        let Push::Complete(m) = r.push(a[1].clone(), S) else {
            panic!()
        };
        assert_eq!(m.text, "a".repeat(200));
    }

    #[test]
    fn split_escape_from_a_careless_sender_still_decodes() {
        let mut r = Reassembler::new(60 * S);
        let mk = |seq, payload: Vec<u8>| Part {
            sender: "x".into(),
            concat: Some(Concat {
                reference: 1,
                total: 2,
                seq,
            }),
            alphabet: Alphabet::Gsm7,
            payload,
        };
        r.push(mk(1, vec![0x41, 0x1B]), S);
        let Push::Complete(m) = r.push(mk(2, vec![0x65]), S) else {
            panic!()
        };
        assert_eq!(m.text, "A€");
    }

    #[test]
    fn single_and_invalid_concat_pass_straight_through() {
        let mut r = Reassembler::new(60 * S);
        let p = Part {
            sender: "x".into(),
            concat: Some(Concat {
                reference: 1,
                total: 2,
                seq: 3,
            }),
            alphabet: Alphabet::Ucs2,
            payload: vec![0, 0x41],
        };
        assert!(matches!(
            r.push(p, S),
            Push::Complete(Message { parts: 1, .. })
        ));
    }

    #[test]
    fn room_is_bounded() {
        let mut r = Reassembler::with_max_pending(60 * S, 2);
        for reference in 0..3u16 {
            r.push(
                parts(&"a".repeat(200), reference)[0].clone(),
                S * u32::from(reference),
            );
        }
        assert_eq!(r.pending(), 2);
        let gone = r.expire(S * 5);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].reference, 0);
    }
}
