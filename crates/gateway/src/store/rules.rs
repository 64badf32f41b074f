//! The store's domain rules, once: pure functions both engines call inside their writes.
//!
//! An engine decides how to read and write rows (statements, locks, round trips); what the
//! rows become is decided here, so SQLite and PostgreSQL cannot drift apart. Each rule takes
//! what the engine read in its transaction and answers what to write, what to refuse, and
//! which event the account's log gets. None of them touches a database, so each is tested
//! here on its own; the conformance suite (`tests/store_conformance.rs`) checks that both
//! engines apply them.

use airtext_api::conversations::{Conversation, PatchConversation};
use airtext_api::identities::IdentityKind;
use airtext_api::messages::Direction;
use airtext_api::sync::EventKind;
use airtext_api::{AccountId, ConversationId, MessageId, SendStatus};
use chrono::{DateTime, Duration, Utc};

use super::{
    Conflict, Delivery, NewMessage, OutboundJob, OutboundOutcome, StoreError, StoreResult,
};

// ----- conversations -----

/// Whether an archived conversation stays archived when a message of `direction` is stored
/// in it: a new inbound text brings it back to the list (as other messengers do); the
/// account's own outbound copies leave it where it is.
pub fn stays_archived(direction: Direction) -> bool {
    direction != Direction::Inbound
}

/// The conversation after `patch`: each field given replaces the stored one, an empty name
/// clears it. The patch's name was checked at the edge (length, characters).
pub fn patched_conversation(
    mut conversation: Conversation,
    patch: &PatchConversation,
) -> Conversation {
    if let Some(name) = &patch.name {
        conversation.name = name.clone().filter(|name| !name.trim().is_empty());
    }
    if let Some(archived) = patch.archived {
        conversation.archived = archived;
    }
    if let Some(muted_until) = patch.muted_until {
        conversation.muted_until = muted_until;
    }
    conversation
}

// ----- messages -----

/// The account a recipient copy is for, and the addresses that, blocked by that account
/// (`contacts.blocked`), keep the copy from being stored: the conversation's peer (an
/// in-network sender's canonical address, or a phone shown as the account that verified it)
/// and the sender's address as it came. A blocked sender's text reaches no device of the
/// account and is not stored; its sender's copy is stored and reported as usual, so the
/// sender is not told.
pub fn blocked_by(copy: &NewMessage) -> (AccountId, [&str; 2]) {
    (copy.account_id, [copy.peer.as_str(), copy.from.as_str()])
}

/// The message an event carries content of (its body, its status), if any: the log keeps it
/// beside the event so that deleting the message can turn those events into tombstones.
pub fn event_message(kind: &EventKind) -> Option<MessageId> {
    match kind {
        EventKind::MessageCreated { message } => Some(message.id),
        EventKind::MessageStatus { message_id, .. } => Some(*message_id),
        EventKind::MessageDeleted { .. }
        | EventKind::ConversationRead { .. }
        | EventKind::ContactUpdated { .. }
        | EventKind::ConversationDeleted { .. }
        | EventKind::ConversationUpdated { .. }
        | EventKind::ContactDeleted { .. }
        | EventKind::Unknown => None,
    }
}

/// What every logged event of a deleted message becomes: the deletion itself, at the same
/// seq. A device replaying the log applies a deletion of a message it never had, which
/// changes nothing; the body and status are gone from the log for good.
pub fn tombstone(message_id: MessageId, conversation_id: ConversationId) -> EventKind {
    EventKind::MessageDeleted {
        message_id,
        conversation_id,
    }
}

/// The most words a search looks for, and the longest word it keeps (in characters).
pub const SEARCH_WORDS: usize = 8;
pub const SEARCH_WORD_CHARS: usize = 64;

/// The words of a search as both engines' indexes hold them: runs of letters and digits,
/// lower case, each once, at most [`SEARCH_WORDS`] of them, each cut to
/// [`SEARCH_WORD_CHARS`]. Everything else separates words (and so can never reach an index's
/// query syntax). Empty when `query` has no letter or digit.
pub fn search_words(query: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for word in query.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        let word: String = word
            .to_lowercase()
            .chars()
            .take(SEARCH_WORD_CHARS)
            .collect();
        if !words.contains(&word) {
            words.push(word);
        }
        if words.len() == SEARCH_WORDS {
            break;
        }
    }
    words
}

/// How a status report moves a message (see [`status_change`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// The message's new status.
    pub status: SendStatus,
    /// The message's failure reason after the change: the report's own, kept only when the
    /// message becomes `failed`; otherwise the one it had.
    pub failure_reason: Option<String>,
}

impl StatusChange {
    /// The `message.status` event the change appends, made at `at`.
    pub fn into_event(
        self,
        message_id: MessageId,
        conversation_id: ConversationId,
        at: DateTime<Utc>,
    ) -> EventKind {
        EventKind::MessageStatus {
            message_id,
            conversation_id,
            status: self.status,
            failure_reason: self.failure_reason,
            updated_at: at,
        }
    }
}

/// Where a status report (`incoming`, with the reporter's `failure_reason`) moves a message
/// that is `current` with `current_reason`: through [`SendStatus::advance`], so a status only
/// moves forward. `None`: the report changes nothing and appends no event.
pub fn status_change(
    current: SendStatus,
    current_reason: Option<String>,
    incoming: SendStatus,
    failure_reason: Option<String>,
) -> Option<StatusChange> {
    let status = current.advance(incoming)?;
    let reported = if status == SendStatus::Failed {
        failure_reason
    } else {
        None
    };
    Some(StatusChange {
        status,
        failure_reason: reported.or(current_reason),
    })
}

/// The opt-out a delivery must be checked against inside its write: `(did, remote)` when it
/// puts its sender's copy on the outbound queue (a carrier would text `remote` from our DID
/// `did`); `None` for anything that does not leave through a carrier. A row for the pair in
/// `opt_outs` refuses the whole delivery with [`StoreError::OptedOut`].
pub fn opt_out_to_check(delivery: &Delivery) -> Option<(&str, &str)> {
    match (&delivery.enqueue, &delivery.sender) {
        (Some(_), Some(sender)) => Some((sender.from.as_str(), sender.to.as_str())),
        _ => None,
    }
}

// ----- conversations -----

/// Where a conversation's read marker goes when its owner has read `up_to`: forward, never
/// back (ids are UUIDv7, so id order is time order).
pub fn read_marker(current: Option<MessageId>, up_to: MessageId) -> MessageId {
    match current {
        Some(current) if current.0 > up_to.0 => current,
        _ => up_to,
    }
}

/// The `conversation.read` event: the marker where it now is, and the inbound messages after
/// it (what the conversation still counts unread).
pub fn read_event(conversation_id: ConversationId, marker: MessageId, unread: u32) -> EventKind {
    EventKind::ConversationRead {
        conversation_id,
        up_to: marker,
        unread,
    }
}

// ----- outbound queue and carriers -----

/// What a send costs: the carrier's price per segment for the destination, times its
/// segments (a body always takes at least one).
pub fn send_cost(cost_per_segment: f64, segments: u32) -> f64 {
    cost_per_segment * f64::from(segments.max(1))
}

/// Whether an outcome counts as a try against the job's attempts: a retry does; a deferral
/// (left for another node, never tried) does not.
pub fn counts_attempt(outcome: &OutboundOutcome) -> bool {
    matches!(outcome, OutboundOutcome::Retry { .. })
}

/// Claimed jobs in the order a worker takes them: the oldest first.
pub fn oldest_first(jobs: &mut [OutboundJob]) {
    jobs.sort_by_key(|job| (job.created_at, job.message_id));
}

/// A receipt held for a carrier id, ready to apply (see [`held_receipts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldReceipt {
    pub status: SendStatus,
    pub failure_reason: Option<String>,
    /// When its status change happens.
    pub at: DateTime<Utc>,
}

/// The receipts held for one carrier id, as stored (`received_at`, status name, reason), in
/// the order they apply when the send recording that id commits at `at`: oldest first, each
/// changing the status at `at` or later (a status never moves back in time either). Only the
/// gateway writes held receipts; one whose status this version cannot read must not keep the
/// send's outcome from being recorded (the job would be sent again), so it is dropped with a
/// warning.
pub fn held_receipts(
    carrier: &str,
    carrier_message_id: &str,
    mut held: Vec<(DateTime<Utc>, String, Option<String>)>,
    at: DateTime<Utc>,
) -> Vec<HeldReceipt> {
    held.sort();
    held.into_iter()
        .filter_map(
            |(received_at, status, reason)| match SendStatus::parse(&status) {
                Some(status) => Some(HeldReceipt {
                    status,
                    failure_reason: reason,
                    at: at.max(received_at),
                }),
                None => {
                    tracing::warn!(
                        carrier,
                        carrier_message_id,
                        status,
                        "unreadable held receipt dropped"
                    );
                    None
                }
            },
        )
        .collect()
}

// ----- accounts, devices, numbers -----

/// Which uniqueness rule an account insert broke, from the name of the constraint (or the
/// engine's message naming the column); `None` for any other.
pub fn account_conflict(violated: &str) -> Option<Conflict> {
    if violated.contains("username") {
        Some(Conflict::Username)
    } else if violated.contains("email") {
        Some(Conflict::Email)
    } else {
        None
    }
}

/// Authentication refreshes a device's `last_seen_at` only when it is older than this, so
/// most authenticated reads never become writes.
pub const LAST_SEEN_GRANULARITY: Duration = Duration::minutes(5);

/// Whether a device seen last at `last_seen_at` gets `now` recorded.
pub fn last_seen_is_stale(last_seen_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    last_seen_at < last_seen_cutoff(now)
}

/// A `last_seen_at` before this is stale at `now`.
pub fn last_seen_cutoff(now: DateTime<Utc>) -> DateTime<Utc> {
    now - LAST_SEEN_GRANULARITY
}

/// Whether `account` may claim a number that `owner` holds (or nobody does), and that is in
/// quarantine or not. An account that already holds another number is refused too, which
/// the engine checks after this (`Conflict::AlreadyHasNumber`).
pub fn may_claim_number(
    account: AccountId,
    owner: Option<AccountId>,
    quarantined: bool,
) -> StoreResult<()> {
    if owner == Some(account) {
        return Err(StoreError::Conflict(Conflict::AlreadyHasNumber));
    }
    if owner.is_some() || quarantined {
        return Err(StoreError::Conflict(Conflict::NumberTaken));
    }
    Ok(())
}

// ----- identities -----

/// Whether `account` may claim `(kind, value)` (ask for a code, or prove one) when `owner`
/// is the account that has verified it (`None`: nobody has). A verified identity stays with
/// its owner: another account's claim is refused, never a reason to demote the owner, so
/// nobody takes over an account's messages by getting hold of one code. Unverified claims
/// block nobody: any number of accounts may be pending on one value.
pub fn may_claim_identity(
    account: AccountId,
    kind: IdentityKind,
    owner: Option<AccountId>,
) -> StoreResult<()> {
    match owner {
        Some(owner) if owner != account => Err(StoreError::Conflict(Conflict::IdentityTaken(kind))),
        _ => Ok(()),
    }
}

// ----- replication log -----

/// A page of at most `limit` from rows read with one extra (`limit + 1`), and whether more
/// remain past it.
pub fn page<T>(mut found: Vec<T>, limit: u32) -> (Vec<T>, bool) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = found.len() > limit;
    found.truncate(limit);
    (found, more)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use airtext_api::SendStatus::{Delivered, Failed, Queued, Sending, Sent};

    fn reason(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn only_an_inbound_text_unarchives() {
        assert!(!stays_archived(Direction::Inbound));
        assert!(stays_archived(Direction::Outbound));
    }

    #[test]
    fn a_patch_replaces_what_it_gives_and_a_blank_name_clears() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let before = Conversation {
            id: ConversationId::new(),
            peer: "@bob".into(),
            last_message: None,
            unread: 2,
            updated_at: at,
            name: Some("Bob".into()),
            archived: false,
            muted_until: Some(at),
        };
        let kept = patched_conversation(before.clone(), &PatchConversation::default());
        assert_eq!(kept, before);
        let changed = patched_conversation(
            before.clone(),
            &PatchConversation {
                name: Some(Some("  ".into())),
                archived: Some(true),
                muted_until: Some(None),
            },
        );
        assert_eq!(changed.name, None);
        assert!(changed.archived);
        assert_eq!(changed.muted_until, None);
        assert_eq!((changed.unread, changed.updated_at), (2, at));
        let renamed = patched_conversation(
            before,
            &PatchConversation {
                name: Some(Some("Bob from work".into())),
                ..PatchConversation::default()
            },
        );
        assert_eq!(renamed.name.as_deref(), Some("Bob from work"));
        assert_eq!(renamed.muted_until, Some(at));
    }

    #[test]
    fn a_verified_identity_stays_with_its_owner() {
        let (owner, other) = (AccountId::new(), AccountId::new());
        assert!(may_claim_identity(other, IdentityKind::Email, None).is_ok());
        assert!(may_claim_identity(owner, IdentityKind::Email, Some(owner)).is_ok());
        assert!(matches!(
            may_claim_identity(other, IdentityKind::Phone, Some(owner)),
            Err(StoreError::Conflict(Conflict::IdentityTaken(
                IdentityKind::Phone
            )))
        ));
    }

    #[test]
    fn a_status_moves_forward_only() {
        let change = status_change(Queued, None, Sent, None).unwrap();
        assert_eq!(change.status, Sent);
        assert_eq!(change.failure_reason, None);
        assert_eq!(status_change(Delivered, None, Sent, None), None);
        assert_eq!(status_change(Sent, None, Sent, None), None);
        assert_eq!(status_change(Delivered, None, Failed, reason("late")), None);
        assert_eq!(
            status_change(Sending, None, Delivered, None)
                .unwrap()
                .status,
            Delivered
        );
    }

    #[test]
    fn a_failure_reason_is_kept_only_with_a_failure() {
        let failed = status_change(Sent, None, Failed, reason("no route")).unwrap();
        assert_eq!(failed.status, Failed);
        assert_eq!(failed.failure_reason, reason("no route"));
        // A reason sent along with any other status is dropped...
        let sent = status_change(Queued, None, Sent, reason("noise")).unwrap();
        assert_eq!(sent.failure_reason, None);
        // ...and one the message already had stays.
        let kept = status_change(Queued, reason("earlier"), Sending, None).unwrap();
        assert_eq!(kept.failure_reason, reason("earlier"));
    }

    #[test]
    fn the_status_event_says_what_changed() {
        let (message, conversation, at) = (MessageId::new(), ConversationId::new(), Utc::now());
        let event = status_change(Sent, None, Failed, reason("expired"))
            .unwrap()
            .into_event(message, conversation, at);
        assert_eq!(
            event,
            EventKind::MessageStatus {
                message_id: message,
                conversation_id: conversation,
                status: Failed,
                failure_reason: reason("expired"),
                updated_at: at,
            }
        );
    }

    #[test]
    fn a_read_marker_never_moves_back() {
        let older = MessageId::new();
        let newer = MessageId::new();
        assert_eq!(read_marker(None, older), older);
        assert_eq!(read_marker(Some(older), newer), newer);
        assert_eq!(read_marker(Some(newer), older), newer);
        assert_eq!(read_marker(Some(newer), newer), newer);
        let conversation = ConversationId::new();
        assert_eq!(
            read_event(conversation, newer, 2),
            EventKind::ConversationRead {
                conversation_id: conversation,
                up_to: newer,
                unread: 2
            }
        );
    }

    #[test]
    fn only_an_enqueued_send_is_checked_for_an_opt_out() {
        use super::super::{Enqueue, NewMessage};
        use airtext_api::messages::{Direction, Encoding, Route};
        let copy = NewMessage {
            id: MessageId::new(),
            account_id: AccountId::new(),
            peer: "+15550000002".into(),
            direction: Direction::Outbound,
            from: "+15550000001".into(),
            to: "+15550000002".into(),
            body: "hi".into(),
            status: Queued,
            route: Route::Carrier,
            client_id: None,
            encoding: Encoding::Gsm7,
            segments: 1,
            created_at: Utc::now(),
        };
        let mut delivery = Delivery {
            sender: Some(copy.clone()),
            recipient: None,
            enqueue: Some(Enqueue::default()),
        };
        assert_eq!(
            opt_out_to_check(&delivery),
            Some(("+15550000001", "+15550000002"))
        );
        delivery.enqueue = None;
        assert_eq!(opt_out_to_check(&delivery), None);
        let inbound = Delivery {
            sender: None,
            recipient: Some(copy),
            enqueue: None,
        };
        assert_eq!(opt_out_to_check(&inbound), None);
    }

    #[test]
    fn a_send_costs_its_price_per_segment_times_its_segments() {
        assert!((send_cost(0.01, 4) - 0.04).abs() < 1e-12);
        assert!((send_cost(0.0079, 1) - 0.0079).abs() < 1e-12);
        // A body always takes a segment.
        assert!((send_cost(0.5, 0) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn a_retry_counts_an_attempt_and_a_deferral_does_not() {
        let at = Utc::now();
        assert!(counts_attempt(&OutboundOutcome::Retry {
            not_before: at,
            reason: "busy".into()
        }));
        assert!(!counts_attempt(&OutboundOutcome::Defer {
            not_before: at,
            reason: "bound elsewhere".into()
        }));
    }

    #[test]
    fn held_receipts_apply_oldest_first_and_never_back_in_time() {
        let recorded = Utc::now();
        let early = recorded - Duration::seconds(5);
        let late = recorded + Duration::seconds(5);
        let held = vec![
            (late, "delivered".to_owned(), None),
            (early, "sent".to_owned(), None),
            (recorded, "bogus".to_owned(), None),
        ];
        assert_eq!(
            held_receipts("c", "1", held, recorded),
            vec![
                HeldReceipt {
                    status: Sent,
                    failure_reason: None,
                    at: recorded
                },
                HeldReceipt {
                    status: Delivered,
                    failure_reason: None,
                    at: late
                },
            ]
        );
    }

    #[test]
    fn account_conflicts_are_told_apart_by_column() {
        assert_eq!(
            account_conflict("accounts_username_key"),
            Some(Conflict::Username)
        );
        assert_eq!(
            account_conflict("UNIQUE constraint failed: accounts.email"),
            Some(Conflict::Email)
        );
        assert_eq!(account_conflict("accounts_pkey"), None);
    }

    #[test]
    fn last_seen_is_refreshed_only_when_older_than_the_granularity() {
        let now = Utc::now();
        assert!(!last_seen_is_stale(now - Duration::minutes(4), now));
        assert!(last_seen_is_stale(now - Duration::minutes(6), now));
    }

    #[test]
    fn numbers_are_claimed_only_when_free_and_out_of_quarantine() {
        let (me, other) = (AccountId::new(), AccountId::new());
        assert!(may_claim_number(me, None, false).is_ok());
        assert!(matches!(
            may_claim_number(me, Some(me), false),
            Err(StoreError::Conflict(Conflict::AlreadyHasNumber))
        ));
        assert!(matches!(
            may_claim_number(me, Some(other), false),
            Err(StoreError::Conflict(Conflict::NumberTaken))
        ));
        assert!(matches!(
            may_claim_number(me, None, true),
            Err(StoreError::Conflict(Conflict::NumberTaken))
        ));
    }

    #[test]
    fn a_page_says_whether_more_remain() {
        assert_eq!(page(vec![1, 2, 3], 2), (vec![1, 2], true));
        assert_eq!(page(vec![1, 2], 2), (vec![1, 2], false));
        assert_eq!(page(Vec::<i32>::new(), 0), (vec![], false));
        assert_eq!(page(vec![1], 0), (vec![], true));
    }

    #[test]
    fn search_words_are_letters_and_digits_only() {
        assert_eq!(
            search_words("Meet me @ 5pm, \"NOW\" now!"),
            vec!["meet", "me", "5pm", "now"]
        );
        assert_eq!(search_words("Café* OR x:y"), vec!["café", "or", "x", "y"]);
        assert!(search_words(" -*\"() ").is_empty());
        assert_eq!(search_words("a b c d e f g h i j").len(), SEARCH_WORDS);
        assert_eq!(
            search_words(&"x".repeat(100)),
            vec!["x".repeat(SEARCH_WORD_CHARS)]
        );
    }
}
