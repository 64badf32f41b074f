//! The store conformance suite: one set of behaviours, held against both engines.
//!
//! Each test is written once as `async fn name(store: SharedStore)` and instantiated by
//! [`conformance!`] for SQLite (a fresh temp file) and PostgreSQL (a fresh schema, when
//! `AIRTEXT_TEST_DATABASE_URL` is set; otherwise it says loudly that it skipped).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use airtext_api::contacts::{Contact, PathChoice};
use airtext_api::identities::{IdentityKind, IdentityStatus};
use airtext_api::messages::{Direction, Encoding, Route};
use airtext_api::sync::EventKind;
use airtext_api::{
    AccountId, ClientId, ConversationId, DeviceId, IdentityId, MessageId, SendStatus,
};
use airtext_gateway::store::{
    self, Conflict, Delivery, Enqueue, InventoryNumber, LogAdvanced, NewAccount, NewDevice,
    NewIdentityCode, NewMessage, NumberSearch, OutboundOutcome, SharedStore, StatusUpdate,
    StoreError, TokenHash,
};
use chrono::{DateTime, Duration, DurationRound, Utc};
use sqlx::Connection;

// ----- harness -----

enum Engine {
    Sqlite(tempfile::TempDir),
    Postgres(common::PgSchema),
}

struct Harness {
    store: SharedStore,
    engine: Engine,
}

impl Harness {
    async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("store.db").display());
        let store = store::open(&url).await.expect("sqlite store opens");
        Harness {
            store,
            engine: Engine::Sqlite(dir),
        }
    }

    async fn postgres(name: &str) -> Option<Harness> {
        let pg = common::postgres_schema(&format!("store_conformance::postgres::{name}")).await?;
        let store = store::open(&pg.url).await.expect("postgres store opens");
        Some(Harness {
            store,
            engine: Engine::Postgres(pg),
        })
    }

    /// Runs raw SQL beside the store (to plant data the store would never write).
    async fn exec(&self, sql: &str) {
        match &self.engine {
            Engine::Sqlite(dir) => {
                let url = format!("sqlite://{}", dir.path().join("store.db").display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
            Engine::Postgres(pg) => {
                let mut conn = sqlx::PgConnection::connect(&pg.url).await.unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }

    /// A second store on the same database, as a restarted gateway opens it.
    async fn reopen(&self) -> SharedStore {
        let url = match &self.engine {
            Engine::Sqlite(dir) => format!("sqlite://{}", dir.path().join("store.db").display()),
            Engine::Postgres(pg) => pg.url.clone(),
        };
        store::open(&url).await.expect("the store opens again")
    }

    async fn finish(self) {
        self.store.close().await;
        if let Engine::Postgres(pg) = self.engine {
            pg.drop_schema().await;
        }
    }
}

/// Instantiates every test for both engines. Tests taking `store` get the store; tests under
/// `raw:` get the harness (for planting rows).
macro_rules! conformance {
    (store: [$($name:ident),* $(,)?], raw: [$($raw:ident),* $(,)?]) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let h = super::Harness::sqlite().await;
                    super::$name(h.store.clone()).await;
                    h.finish().await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $raw() {
                    let h = super::Harness::sqlite().await;
                    super::$raw(&h).await;
                    h.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(h) = super::Harness::postgres(stringify!($name)).await else {
                        return;
                    };
                    super::$name(h.store.clone()).await;
                    h.finish().await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $raw() {
                    let Some(h) = super::Harness::postgres(stringify!($raw)).await else {
                        return;
                    };
                    super::$raw(&h).await;
                    h.finish().await;
                }
            )*
        }
    };
}

conformance!(
    store: [
        accounts_are_unique_by_username_and_email,
        devices_authenticate_until_revoked,
        numbers_search_claim_and_quarantine,
        bought_numbers_are_held_then_given_back,
        identities_codes_attempts_and_the_verified_owner_keeps_it,
        a_removed_identity_is_free_for_another_account,
        deliver_in_network_stores_both_copies,
        deliver_note_to_self,
        repeated_client_id_returns_the_first_message,
        concurrent_repeats_of_one_client_id_make_one_message,
        concurrent_delivers_give_gap_free_seqs,
        failing_writes_beside_delivers_leave_no_gap,
        readers_never_see_a_seq_before_its_predecessor,
        status_only_moves_forward,
        outbound_queue_leases_and_outcomes,
        outbound_backlog_counts_what_waits,
        messages_page_newest_first,
        conversations_page_by_updated_at,
        mark_read_never_moves_backwards,
        delete_message_fixes_the_conversation,
        contacts_upsert_and_log,
        blocked_senders_texts_are_not_stored,
        deleted_contacts_are_logged_and_then_not_found,
        events_page_with_more_flag,
        other_accounts_ids_are_not_found,
        subscribers_hear_of_commits,
        writes_after_close_are_unavailable,
        ping_answers,
    ],
    raw: [corrupt_rows_are_errors_not_panics]
);

// ----- helpers -----

/// Now, truncated to microseconds (what both engines store).
fn now() -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(Duration::microseconds(1))
        .unwrap()
}

async fn account(store: &SharedStore, username: &str) -> AccountId {
    let id = AccountId::new();
    store
        .create_account(NewAccount {
            id,
            username: username.to_owned(),
            email: Some(format!("{username}@example.com")),
            password_hash: "$argon2id$fake".into(),
            created_at: now(),
        })
        .await
        .unwrap();
    id
}

fn copy(
    account: AccountId,
    peer: &str,
    direction: Direction,
    client_id: Option<ClientId>,
) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        account_id: account,
        peer: peer.to_owned(),
        direction,
        from: if direction == Direction::Outbound {
            "me".into()
        } else {
            peer.to_owned()
        },
        to: if direction == Direction::Outbound {
            peer.to_owned()
        } else {
            "me".into()
        },
        body: "hello".into(),
        status: if direction == Direction::Outbound {
            SendStatus::Sent
        } else {
            SendStatus::Delivered
        },
        route: Route::InNetwork,
        client_id,
        encoding: Encoding::Gsm7,
        segments: 1,
        created_at: now(),
    }
}

/// An in-network text from `from` (peer address `to_addr`) to `to` (peer address `from_addr`).
fn in_network(from: AccountId, from_addr: &str, to: AccountId, to_addr: &str) -> Delivery {
    Delivery {
        sender: Some(copy(
            from,
            to_addr,
            Direction::Outbound,
            Some(ClientId::new()),
        )),
        recipient: Some(copy(to, from_addr, Direction::Inbound, None)),
        enqueue: None,
    }
}

/// An outbound text to a phone outside, queued for a carrier.
fn carrier_send(from: AccountId, to: &str) -> Delivery {
    let mut sender = copy(from, to, Direction::Outbound, Some(ClientId::new()));
    sender.status = SendStatus::Queued;
    sender.route = Route::Carrier;
    Delivery {
        sender: Some(sender),
        recipient: None,
        enqueue: Some(Enqueue::default()),
    }
}

/// An inbound text from outside to `to`.
fn inbound(to: AccountId, from: &str) -> Delivery {
    Delivery {
        sender: None,
        recipient: Some(copy(to, from, Direction::Inbound, None)),
        enqueue: None,
    }
}

async fn all_events(store: &SharedStore, account: AccountId) -> Vec<airtext_api::sync::SyncEvent> {
    let (events, more) = store.events_after(account, 0, 10_000).await.unwrap();
    assert!(!more);
    events
}

fn assert_contiguous(seqs: &[i64], from: i64) {
    for (i, seq) in seqs.iter().enumerate() {
        assert_eq!(*seq, from + 1 + i as i64, "seqs must be gap-free: {seqs:?}");
    }
}

// ----- tests -----

async fn ping_answers(store: SharedStore) {
    store.ping().await.unwrap();
}

async fn accounts_are_unique_by_username_and_email(store: SharedStore) {
    let alice = account(&store, "alice").await;
    let found = store.account(alice).await.unwrap().unwrap();
    assert_eq!(found.username, "alice");
    assert_eq!(found.email.as_deref(), Some("alice@example.com"));
    assert_eq!(found.number, None);
    assert_eq!(
        store
            .account_by_username("alice")
            .await
            .unwrap()
            .unwrap()
            .id,
        alice
    );
    assert!(store.account_by_username("nobody").await.unwrap().is_none());
    assert!(store.account(AccountId::new()).await.unwrap().is_none());
    assert_eq!(store.last_seq(alice).await.unwrap(), 0);

    let taken = store
        .create_account(NewAccount {
            id: AccountId::new(),
            username: "alice".into(),
            email: None,
            password_hash: "x".into(),
            created_at: now(),
        })
        .await;
    assert!(
        matches!(taken, Err(StoreError::Conflict(Conflict::Username))),
        "{taken:?}"
    );
    let taken = store
        .create_account(NewAccount {
            id: AccountId::new(),
            username: "alice2".into(),
            email: Some("alice@example.com".into()),
            password_hash: "x".into(),
            created_at: now(),
        })
        .await;
    assert!(
        matches!(taken, Err(StoreError::Conflict(Conflict::Email))),
        "{taken:?}"
    );
    // Accounts without e-mail do not collide with each other.
    for name in ["nomail1", "nomail2"] {
        store
            .create_account(NewAccount {
                id: AccountId::new(),
                username: name.into(),
                email: None,
                password_hash: "x".into(),
                created_at: now(),
            })
            .await
            .unwrap();
    }
    let created = store.account(alice).await.unwrap().unwrap().created_at;
    assert!(created <= now());
}

async fn devices_authenticate_until_revoked(store: SharedStore) {
    let alice = account(&store, "alice").await;
    let bob = account(&store, "bob").await;
    let long_ago = now() - Duration::hours(1);
    let token = TokenHash([7; 32]);
    let device = DeviceId::new();
    store
        .create_device(NewDevice {
            id: device,
            account_id: alice,
            name: "laptop".into(),
            has_cellular: false,
            token_hash: token,
            created_at: long_ago,
        })
        .await
        .unwrap();
    let second = DeviceId::new();
    store
        .create_device(NewDevice {
            id: second,
            account_id: alice,
            name: "phone".into(),
            has_cellular: true,
            token_hash: TokenHash([8; 32]),
            created_at: now(),
        })
        .await
        .unwrap();

    let at = now();
    let found = store.device_by_token(&token, at).await.unwrap().unwrap();
    assert_eq!(found.id, device);
    assert_eq!(found.account_id, alice);
    assert_eq!(found.name, "laptop");
    assert!(!found.has_cellular);
    // An hour-old last_seen is refreshed; a fresh one is left alone (coarse refresh).
    let listed = store.devices(alice).await.unwrap();
    assert_eq!(listed.len(), 2);
    let laptop = listed.iter().find(|d| d.id == device).unwrap();
    assert_eq!(laptop.last_seen_at, at);
    let later = at + Duration::seconds(30);
    store.device_by_token(&token, later).await.unwrap().unwrap();
    let laptop = store.devices(alice).await.unwrap();
    assert_eq!(
        laptop.iter().find(|d| d.id == device).unwrap().last_seen_at,
        at
    );

    assert!(store
        .device_by_token(&TokenHash([9; 32]), now())
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        store.revoke_device(bob, device).await,
        Err(StoreError::NotFound)
    ));
    store.revoke_device(alice, device).await.unwrap();
    assert!(store
        .device_by_token(&token, now())
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.devices(alice).await.unwrap().len(), 1);
    assert!(store.devices(bob).await.unwrap().is_empty());
    assert!(matches!(
        store.revoke_device(alice, device).await,
        Err(StoreError::NotFound)
    ));
}

async fn bought_numbers_are_held_then_given_back(store: SharedStore) {
    use airtext_gateway::store::BoughtNumber;
    let alice = account(&store, "alice").await;
    let bought = |n: &str, carrier: &str| InventoryNumber {
        number: n.into(),
        carrier: carrier.into(),
        country: "US".into(),
    };
    let sid_a = "PN0000000000000000000000000000000a";
    let sid_b = "PN0000000000000000000000000000000b";
    // A number from the configuration: never given back.
    store
        .add_inventory(&[bought("+14155550009", "tw")])
        .await
        .unwrap();
    store
        .add_bought_number(&bought("+14155550001", "tw"), sid_a)
        .await
        .unwrap();
    store
        .add_bought_number(&bought("+14155550002", "tw"), sid_b)
        .await
        .unwrap();
    // Another carrier's bought number is not this carrier's to give back.
    store
        .add_bought_number(&bought("+14155550003", "other"), sid_a)
        .await
        .unwrap();
    let search = |at: DateTime<Utc>| NumberSearch {
        country: "US".into(),
        prefix: Some("+1415".into()),
        limit: 10,
        now: at,
    };
    assert_eq!(
        store
            .number_carrier("+14155550003")
            .await
            .unwrap()
            .as_deref(),
        Some("other")
    );
    assert_eq!(store.number_carrier("+19995550000").await.unwrap(), None);
    // Bought numbers are claimable like any other.
    assert_eq!(
        store.available_numbers(search(now())).await.unwrap(),
        vec![
            "+14155550001",
            "+14155550002",
            "+14155550003",
            "+14155550009"
        ]
    );
    store
        .claim_number(alice, "+14155550001", now())
        .await
        .unwrap();

    // Owned: not due. Unowned and out of quarantine: due, and held.
    let hold_until = now() + Duration::hours(1);
    let held = store
        .hold_numbers_to_give_back("tw", now(), hold_until, 10)
        .await
        .unwrap();
    assert_eq!(
        held,
        vec![BoughtNumber {
            number: "+14155550002".into(),
            carrier_sid: sid_b.into(),
        }]
    );
    // Held: out of searches and claims, and not handed to a second pass.
    assert_eq!(
        store.available_numbers(search(now())).await.unwrap(),
        vec!["+14155550003", "+14155550009"]
    );
    assert!(matches!(
        store.claim_number(alice, "+14155550002", now()).await,
        Err(StoreError::Conflict(Conflict::NumberTaken))
    ));
    assert!(store
        .hold_numbers_to_give_back("tw", now(), hold_until, 10)
        .await
        .unwrap()
        .is_empty());
    // A hold that lapses (its pass died) makes the number due again.
    let later = hold_until + Duration::seconds(1);
    assert_eq!(
        store
            .hold_numbers_to_give_back("tw", later, later + Duration::hours(1), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store
        .forget_given_back_number("+14155550002", sid_b)
        .await
        .unwrap());

    // Released: due only when its quarantine ends.
    let quarantine_ends = now() + Duration::days(45);
    store
        .release_number(alice, "+14155550001", quarantine_ends)
        .await
        .unwrap();
    let before = quarantine_ends - Duration::seconds(1);
    assert!(store
        .hold_numbers_to_give_back("tw", before, before + Duration::hours(1), 10)
        .await
        .unwrap()
        .is_empty());
    let held = store
        .hold_numbers_to_give_back(
            "tw",
            quarantine_ends,
            quarantine_ends + Duration::hours(1),
            10,
        )
        .await
        .unwrap();
    assert_eq!(
        held,
        vec![BoughtNumber {
            number: "+14155550001".into(),
            carrier_sid: sid_a.into(),
        }]
    );

    // Given back: gone from the inventory, once; a wrong sid or an owned number stays.
    assert!(!store
        .forget_given_back_number("+14155550001", sid_b)
        .await
        .unwrap());
    assert!(store
        .forget_given_back_number("+14155550001", sid_a)
        .await
        .unwrap());
    assert!(!store
        .forget_given_back_number("+14155550001", sid_a)
        .await
        .unwrap());
    assert!(matches!(
        store
            .claim_number(alice, "+14155550001", quarantine_ends)
            .await,
        Err(StoreError::NotFound)
    ));
    store
        .claim_number(alice, "+14155550003", now())
        .await
        .unwrap();
    assert!(!store
        .forget_given_back_number("+14155550003", sid_a)
        .await
        .unwrap());
    assert_eq!(
        store.number_owner("+14155550003").await.unwrap(),
        Some(alice)
    );
    // Bought again later: back in the inventory with its new sid.
    store
        .add_bought_number(&bought("+14155550001", "tw"), sid_b)
        .await
        .unwrap();
    store
        .add_bought_number(&bought("+14155550004", "tw"), sid_a)
        .await
        .unwrap();
    let far = quarantine_ends + Duration::days(1);
    let held = store
        .hold_numbers_to_give_back("tw", far, far + Duration::hours(1), 1)
        .await
        .unwrap();
    assert_eq!(held.len(), 1, "the limit is kept: {held:?}");
}

async fn numbers_search_claim_and_quarantine(store: SharedStore) {
    let alice = account(&store, "alice").await;
    let bob = account(&store, "bob").await;
    let inventory = |n: &str, country: &str| InventoryNumber {
        number: n.into(),
        carrier: "sim".into(),
        country: country.into(),
    };
    let numbers = vec![
        inventory("+14155550002", "US"),
        inventory("+14155550001", "US"),
        inventory("+12125550001", "US"),
        inventory("+442071234567", "GB"),
    ];
    store.add_inventory(&numbers).await.unwrap();
    // Idempotent.
    store.add_inventory(&numbers).await.unwrap();
    let search = |prefix: Option<&str>, limit| NumberSearch {
        country: "US".into(),
        prefix: prefix.map(str::to_owned),
        limit,
        now: now(),
    };
    assert_eq!(
        store.available_numbers(search(None, 10)).await.unwrap(),
        vec!["+12125550001", "+14155550001", "+14155550002"]
    );
    assert_eq!(
        store
            .available_numbers(search(Some("+1415"), 10))
            .await
            .unwrap(),
        vec!["+14155550001", "+14155550002"]
    );
    assert_eq!(
        store
            .available_numbers(search(Some("+1415"), 1))
            .await
            .unwrap(),
        vec!["+14155550001"]
    );
    assert!(store
        .available_numbers(NumberSearch {
            country: "FR".into(),
            prefix: None,
            limit: 10,
            now: now()
        })
        .await
        .unwrap()
        .is_empty());

    assert!(matches!(
        store.claim_number(alice, "+19995550000", now()).await,
        Err(StoreError::NotFound)
    ));
    store
        .claim_number(alice, "+14155550001", now())
        .await
        .unwrap();
    assert_eq!(
        store
            .account(alice)
            .await
            .unwrap()
            .unwrap()
            .number
            .as_deref(),
        Some("+14155550001")
    );
    assert_eq!(
        store.number_owner("+14155550001").await.unwrap(),
        Some(alice)
    );
    assert_eq!(store.number_owner("+14155550002").await.unwrap(), None);
    assert_eq!(store.number_owner("+10000000000").await.unwrap(), None);
    assert!(matches!(
        store.claim_number(bob, "+14155550001", now()).await,
        Err(StoreError::Conflict(Conflict::NumberTaken))
    ));
    assert!(matches!(
        store.claim_number(alice, "+14155550002", now()).await,
        Err(StoreError::Conflict(Conflict::AlreadyHasNumber))
    ));
    assert_eq!(
        store
            .available_numbers(search(Some("+1415"), 10))
            .await
            .unwrap(),
        vec!["+14155550002"]
    );

    // Release into quarantine.
    assert!(matches!(
        store.release_number(bob, "+14155550001", now()).await,
        Err(StoreError::NotFound)
    ));
    let until = now() + Duration::days(45);
    store
        .release_number(alice, "+14155550001", until)
        .await
        .unwrap();
    assert_eq!(store.account(alice).await.unwrap().unwrap().number, None);
    assert_eq!(store.number_owner("+14155550001").await.unwrap(), None);
    assert!(matches!(
        store.claim_number(bob, "+14155550001", now()).await,
        Err(StoreError::Conflict(Conflict::NumberTaken))
    ));
    assert_eq!(
        store
            .available_numbers(search(Some("+1415"), 10))
            .await
            .unwrap(),
        vec!["+14155550002"]
    );
    let after = until + Duration::seconds(1);
    let mut late = search(Some("+1415"), 10);
    late.now = after;
    assert_eq!(
        store.available_numbers(late).await.unwrap(),
        vec!["+14155550001", "+14155550002"]
    );
    store
        .claim_number(bob, "+14155550001", after)
        .await
        .unwrap();
    assert_eq!(store.number_owner("+14155550001").await.unwrap(), Some(bob));
}

async fn a_removed_identity_is_free_for_another_account(store: SharedStore) {
    let alice = account(&store, "alice").await;
    let bob = account(&store, "bob").await;
    let code = |account| NewIdentityCode {
        id: IdentityId::new(),
        account_id: account,
        kind: IdentityKind::Phone,
        value: "+15550003333".into(),
        code_hash: "h".into(),
        expires_at: now() + Duration::minutes(10),
        now: now(),
    };
    let alices = store.put_identity_code(code(alice)).await.unwrap();
    store.mark_verified(alice, alices, now()).await.unwrap();
    assert!(store.put_identity_code(code(bob)).await.is_err());
    // Only the owner removes it.
    assert!(matches!(
        store.remove_identity(bob, alices).await,
        Err(StoreError::NotFound)
    ));
    store.remove_identity(alice, alices).await.unwrap();
    assert!(store.identity(alice, alices).await.unwrap().is_none());
    assert!(matches!(
        store.remove_identity(alice, alices).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store
            .verified_owner(IdentityKind::Phone, "+15550003333")
            .await
            .unwrap(),
        None
    );
    let bobs = store.put_identity_code(code(bob)).await.unwrap();
    store.mark_verified(bob, bobs, now()).await.unwrap();
    assert_eq!(
        store
            .verified_owner(IdentityKind::Phone, "+15550003333")
            .await
            .unwrap(),
        Some(bob)
    );
}

async fn identities_codes_attempts_and_the_verified_owner_keeps_it(store: SharedStore) {
    let alice = account(&store, "alice").await;
    let bob = account(&store, "bob").await;
    let code = |account, code_hash: &str| NewIdentityCode {
        id: IdentityId::new(),
        account_id: account,
        kind: IdentityKind::Phone,
        value: "+15550001111".into(),
        code_hash: code_hash.into(),
        expires_at: now() + Duration::minutes(10),
        now: now(),
    };
    let first = code(alice, "h1");
    let id = store.put_identity_code(first.clone()).await.unwrap();
    assert_eq!(id, first.id);
    let record = store.identity(alice, id).await.unwrap().unwrap();
    assert_eq!(record.status, IdentityStatus::Pending);
    assert_eq!(record.code_hash.as_deref(), Some("h1"));
    assert_eq!(record.code_expires_at, Some(first.expires_at));
    assert_eq!(record.attempts, 0);
    assert_eq!(record.kind, IdentityKind::Phone);
    assert_eq!(record.value, "+15550001111");
    assert!(store.identity(bob, id).await.unwrap().is_none());

    assert_eq!(store.count_failed_attempt(alice, id).await.unwrap(), 1);
    assert_eq!(store.count_failed_attempt(alice, id).await.unwrap(), 2);
    assert!(matches!(
        store.count_failed_attempt(bob, id).await,
        Err(StoreError::NotFound)
    ));
    // A new code replaces the old one, keeps the id, resets attempts.
    let again = store.put_identity_code(code(alice, "h2")).await.unwrap();
    assert_eq!(again, id);
    let record = store.identity(alice, id).await.unwrap().unwrap();
    assert_eq!(record.code_hash.as_deref(), Some("h2"));
    assert_eq!(record.attempts, 0);
    assert_eq!(store.identities(alice).await.unwrap().len(), 1);

    assert_eq!(
        store
            .verified_owner(IdentityKind::Phone, "+15550001111")
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        store.mark_verified(bob, id, now()).await,
        Err(StoreError::NotFound)
    ));
    // Carol claims the same value while nobody has verified it: unverified claims block
    // nobody.
    let carol = account(&store, "carol").await;
    let carols = store.put_identity_code(code(carol, "h4")).await.unwrap();
    assert_ne!(carols, id);
    let at = now();
    store.mark_verified(alice, id, at).await.unwrap();
    let record = store.identity(alice, id).await.unwrap().unwrap();
    assert_eq!(record.status, IdentityStatus::Verified);
    assert_eq!(record.code_hash, None);
    assert_eq!(record.verified_at, Some(at));
    assert_eq!(
        store
            .verified_owner(IdentityKind::Phone, "+15550001111")
            .await
            .unwrap(),
        Some(alice)
    );
    assert_eq!(
        store
            .verified_owner(IdentityKind::Email, "+15550001111")
            .await
            .unwrap(),
        None
    );

    // Alice has verified it: bob cannot ask for a code, carol's pending claim cannot be
    // proven, and alice keeps it.
    let bobs_pending = code(bob, "h3");
    let refused = |result: Result<_, StoreError>| {
        assert!(
            matches!(
                result,
                Err(StoreError::Conflict(Conflict::IdentityTaken(
                    IdentityKind::Phone
                )))
            ),
            "{result:?}"
        );
    };
    refused(store.put_identity_code(bobs_pending).await.map(|_| ()));
    refused(store.mark_verified(carol, carols, now()).await);
    assert_eq!(
        store
            .verified_owner(IdentityKind::Phone, "+15550001111")
            .await
            .unwrap(),
        Some(alice)
    );
    let alices = store.identity(alice, id).await.unwrap().unwrap();
    assert_eq!(alices.status, IdentityStatus::Verified);
    assert_eq!(alices.verified_at, Some(at));
    assert!(store.identities(bob).await.unwrap().is_empty());
    let carols = store.identity(carol, carols).await.unwrap().unwrap();
    assert_eq!(carols.status, IdentityStatus::Pending);
}

async fn deliver_in_network_stores_both_copies(store: SharedStore) {
    let alice = account(&store, "alice").await;
    let bob = account(&store, "bob").await;
    let delivery = in_network(alice, "@alice", bob, "@bob");
    let sent = delivery.sender.clone().unwrap();
    let received = delivery.recipient.clone().unwrap();
    let done = store.deliver(delivery).await.unwrap();
    assert!(done.created);
    let a = done.sender.unwrap();
    let b = done.recipient.unwrap();
    assert_eq!(a.id, sent.id);
    assert_eq!(b.id, received.id);
    assert_ne!(a.conversation_id, b.conversation_id);
    assert_eq!(a.client_id, sent.client_id);
    assert_eq!(b.client_id, None);
    assert_eq!(a.direction, Direction::Outbound);
    assert_eq!(b.direction, Direction::Inbound);
    assert_eq!(a.created_at, sent.created_at);
    assert_eq!(a.updated_at, sent.created_at);

    // Each copy reads back exactly as returned, only by its owner.
    assert_eq!(store.message(alice, a.id).await.unwrap().unwrap(), a);
    assert_eq!(store.message(bob, b.id).await.unwrap().unwrap(), b);
    assert!(store.message(bob, a.id).await.unwrap().is_none());

    let conv_a = store
        .conversation(alice, a.conversation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conv_a.peer, "@bob");
    assert_eq!(conv_a.unread, 0);
    assert_eq!(conv_a.last_message.as_ref(), Some(&a));
    let conv_b = store
        .conversation(bob, b.conversation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conv_b.peer, "@alice");
    assert_eq!(conv_b.unread, 1);
    assert_eq!(conv_b.last_message.as_ref(), Some(&b));

    // A second text lands in the same conversations.
    let done2 = store
        .deliver(in_network(alice, "@alice", bob, "@bob"))
        .await
        .unwrap();
    let b2 = done2.recipient.unwrap();
    assert_eq!(done2.sender.unwrap().conversation_id, a.conversation_id);
    assert_eq!(b2.conversation_id, b.conversation_id);
    let conv_b = store
        .conversation(bob, b.conversation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conv_b.unread, 2);
    assert_eq!(conv_b.last_message.unwrap().id, b2.id);
    assert_eq!(store.conversations(bob, 10, None).await.unwrap().len(), 1);

    // Each account's log holds its copies' message.created, in order.
    let events = all_events(&store, bob).await;
    assert_eq!(events.len(), 2);
    assert_contiguous(&events.iter().map(|e| e.seq).collect::<Vec<_>>(), 0);
    match &events[0].kind {
        EventKind::MessageCreated { message } => assert_eq!(message, &b),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(store.last_seq(bob).await.unwrap(), 2);
    assert_eq!(store.last_seq(alice).await.unwrap(), 2);

    // An inbound text from outside.
    let from_outside = store.deliver(inbound(bob, "+15550009999")).await.unwrap();
    assert!(from_outside.created);
    assert!(from_outside.sender.is_none());
    let c = from_outside.recipient.unwrap();
    assert_ne!(c.conversation_id, b.conversation_id);
    assert_eq!(store.conversations(bob, 10, None).await.unwrap().len(), 2);
    assert_eq!(store.last_seq(bob).await.unwrap(), 3);
    // Nothing was queued for in-network or inbound texts.
    assert!(store
        .claim_outbound(10, now(), now() + Duration::minutes(1))
        .await
        .unwrap()
        .is_empty());
}

async fn deliver_note_to_self(store: SharedStore) {
    let alice = account(&store, "alice").await;
    let done = store
        .deliver(in_network(alice, "@alice", alice, "@alice"))
        .await
        .unwrap();
    assert!(done.created);
    let a = done.sender.unwrap();
    let b = done.recipient.unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(a.conversation_id, b.conversation_id);
    let conv = store
        .conversation(alice, a.conversation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conv.unread, 1);
    assert_eq!(conv.peer, "@alice");
    assert_eq!(
        store
            .messages(alice, a.conversation_id, 10, None)
            .await
            .unwrap()
            .len(),
        2
    );
    let events = all_events(&store, alice).await;
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
}

async fn repeated_client_id_returns_the_first_message(store: SharedStore) {
    let alice = account(&store, "alice").await;
    let bob = account(&store, "bob").await;
    let first = in_network(alice, "@alice", bob, "@bob");
    let done = store.deliver(first.clone()).await.unwrap();
    let original = done.sender.unwrap();

    // Same client_id, fresh ids and body: nothing new is written.
    let mut repeat = in_network(alice, "@alice", bob, "@bob");
    let mut sender = repeat.sender.take().unwrap();
    sender.client_id = first.sender.as_ref().unwrap().client_id;
    sender.body = "different".into();
    repeat.sender = Some(sender);
    let again = store.deliver(repeat).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.sender.unwrap(), original);
    assert_eq!(store.last_seq(alice).await.unwrap(), 1);
    assert_eq!(store.last_seq(bob).await.unwrap(), 1);
    let conv = store.conversations(bob, 10, None).await.unwrap();
    assert_eq!(conv.len(), 1);
    assert_eq!(conv[0].unread, 1);
    assert_eq!(
        store
            .messages(bob, conv[0].id, 10, None)
            .await
            .unwrap()
            .len(),
        1
    );
    // The same client_id is free for another account.
    let mut other = in_network(bob, "@bob", alice, "@alice");
    other.sender.as_mut().unwrap().client_id = first.sender.as_ref().unwrap().client_id;
    assert!(store.deliver(other).await.unwrap().created);
}

async fn concurrent_repeats_of_one_client_id_make_one_message(store: SharedStore) {
    let alice = account(&store, "alice").await;
    let bob = account(&store, "bob").await;
    let client_id = ClientId::new();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut delivery = in_network(alice, "@alice", bob, "@bob");
            delivery.sender.as_mut().unwrap().client_id = Some(client_id);
            store.deliver(delivery).await.unwrap()
        }));
    }
    let mut ids = HashSet::new();
    let mut created = 0;
    for task in tasks {
        let done = task.await.unwrap();
        created += usize::from(done.created);
        ids.insert(done.sender.unwrap().id);
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    assert_eq!(store.last_seq(alice).await.unwrap(), 1);
    assert_eq!(store.last_seq(bob).await.unwrap(), 1);
    let conv = store.conversations(bob, 10, None).await.unwrap();
    assert_eq!(conv[0].unread, 1);
}

async fn concurrent_delivers_give_gap_free_seqs(store: SharedStore) {
    let bob = account(&store, "bob").await;
    let mut senders = Vec::new();
    for i in 0..8 {
        senders.push(account(&store, &format!("sender{i}")).await);
    }
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        let from = senders[i % senders.len()];
        tasks.push(tokio::spawn(async move {
            let d = in_network(from, &format!("@sender{}", i % 8), bob, "@bob");
            store.deliver(d).await.unwrap()
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap().created);
    }
    let events = all_events(&store, bob).await;
    assert_eq!(events.len(), 200);
    assert_contiguous(&events.iter().map(|e| e.seq).collect::<Vec<_>>(), 0);
    assert_eq!(store.last_seq(bob).await.unwrap(), 200);
    for s in senders {
        let events = all_events(&store, s).await;
        assert_eq!(events.len(), 25);
        assert_contiguous(&events.iter().map(|e| e.seq).collect::<Vec<_>>(), 0);
    }
    let convs = store.conversations(bob, 100, None).await.unwrap();
    assert_eq!(convs.len(), 8);
    assert!(convs.iter().all(|c| c.unread == 25));
}

/// Writes that fail in the same commit group as good ones (here: deliveries to an account
/// that does not exist, which fail after the sender's copy was written) are undone alone:
/// nobody's log skips or repeats a seq, then or after.
async fn failing_writes_beside_delivers_leave_no_gap(store: SharedStore) {
    let bob = account(&store, "bob").await;
    let carol = account(&store, "carol").await;
    let ghost = AccountId::new();
    let mut tasks = Vec::new();
    for i in 0..240 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            if i % 4 == 3 {
                let d = in_network(carol, "@carol", ghost, "@ghost");
                store.deliver(d).await.is_ok()
            } else {
                let d = in_network(carol, "@carol", bob, "@bob");
                store.deliver(d).await.unwrap().created
            }
        }));
    }
    let mut created = 0;
    for task in tasks {
        if task.await.unwrap() {
            created += 1;
        }
    }
    assert_eq!(created, 180, "every good delivery lands, no bad one does");

    for (who, expected) in [(bob, 180), (carol, 180)] {
        let events = all_events(&store, who).await;
        assert_eq!(events.len(), expected);
        assert_contiguous(&events.iter().map(|e| e.seq).collect::<Vec<_>>(), 0);
        assert_eq!(store.last_seq(who).await.unwrap(), expected as i64);
    }
    // The next event follows on.
    store
        .deliver(in_network(carol, "@carol", bob, "@bob"))
        .await
        .unwrap();
    assert_eq!(store.last_seq(bob).await.unwrap(), 181);
    assert_eq!(
        all_events(&store, bob).await.last().map(|e| e.seq),
        Some(181)
    );
}

async fn readers_never_see_a_seq_before_its_predecessor(store: SharedStore) {
    let bob = account(&store, "bob").await;
    let alice = account(&store, "alice").await;
    const TOTAL: i64 = 300;
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut cursor = 0;
            let deadline = tokio::time::Instant::now() + StdDuration::from_secs(60);
            while cursor < TOTAL {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "reader stuck at {cursor}"
                );
                let (events, _) = store.events_after(bob, cursor, 50).await.unwrap();
                for event in events {
                    // The cursor only moves over contiguous seqs: a gap would mean an
                    // event became visible before its predecessor.
                    assert_eq!(
                        event.seq,
                        cursor + 1,
                        "saw seq {} after {cursor}",
                        event.seq
                    );
                    cursor = event.seq;
                }
                tokio::task::yield_now().await;
            }
            cursor
        })
    };
    let mut writers = Vec::new();
    for w in 0..10 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for _ in 0..TOTAL / 10 {
                let d = if w % 2 == 0 {
                    in_network(alice, "@alice", bob, "@bob")
                } else {
                    inbound(bob, &format!("+1555000{w:04}"))
                };
                store.deliver(d).await.unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(reader.await.unwrap(), TOTAL);
}

async fn status_only_moves_forward(store: SharedStore) {
    let alice = account(&store, "alice").await;
    let done = store
        .deliver(carrier_send(alice, "+15550001234"))
        .await
        .unwrap();
    let message = done.sender.unwrap();
    assert_eq!(message.status, SendStatus::Queued);
    let update = |status, reason: Option<&str>| StatusUpdate {
        message_id: message.id,
        status,
        failure_reason: reason.map(str::to_owned),
        at: now(),
    };
    let moved = store
        .update_status(update(SendStatus::Sending, None))
        .await
        .unwrap();
    assert!(moved.changed);
    assert_eq!(moved.message.status, SendStatus::Sending);
    let moved = store
        .update_status(update(SendStatus::Delivered, None))
        .await
        .unwrap();
    assert!(moved.changed);
    assert_eq!(moved.message.status, SendStatus::Delivered);
    // Late and repeated reports change nothing and append nothing.
    let seq = store.last_seq(alice).await.unwrap();
    for late in [
        SendStatus::Sent,
        SendStatus::Queued,
        SendStatus::Delivered,
        SendStatus::Failed,
    ] {
        let outcome = store
            .update_status(update(late, Some("late")))
            .await
            .unwrap();
        assert!(!outcome.changed);
        assert_eq!(outcome.message.status, SendStatus::Delivered);
    }
    assert_eq!(store.last_seq(alice).await.unwrap(), seq);
    let stored = store.message(alice, message.id).await.unwrap().unwrap();
    assert_eq!(stored.status, SendStatus::Delivered);
    assert_eq!(stored.failure_reason, None);
    assert_eq!(stored, moved.message);

    // Failure carries its reason and is final.
    let other = store
        .deliver(carrier_send(alice, "+15550001234"))
        .await
        .unwrap()
        .sender
        .unwrap();
    let failed = store
        .update_status(StatusUpdate {
            message_id: other.id,
            status: SendStatus::Failed,
            failure_reason: Some("unreachable".into()),
            at: now(),
        })
        .await
        .unwrap();
    assert!(failed.changed);
    assert_eq!(
        failed.message.failure_reason.as_deref(),
        Some("unreachable")
    );
    let after = store
        .update_status(StatusUpdate {
            message_id: other.id,
            status: SendStatus::Delivered,
            failure_reason: None,
            at: now(),
        })
        .await
        .unwrap();
    assert!(!after.changed);
    assert_eq!(after.message.status, SendStatus::Failed);

    let events = all_events(&store, alice).await;
    let statuses: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::MessageStatus {
                status,
                message_id,
                failure_reason,
                ..
            } => Some((*message_id, *status, failure_reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            (message.id, SendStatus::Sending, None),
            (message.id, SendStatus::Delivered, None),
            (other.id, SendStatus::Failed, Some("unreachable".into())),
        ]
    );
    assert!(matches!(
        store
            .update_status(StatusUpdate {
                message_id: MessageId::new(),
                status: SendStatus::Sent,
                failure_reason: None,
                at: now(),
            })
            .await,
        Err(StoreError::NotFound)
    ));
}

async fn outbound_queue_leases_and_outcomes(store: SharedStore) {
    let alice = account(&store, "alice").await;
    let t0 = now();
    let first = store
        .deliver(carrier_send(alice, "+15550000001"))
        .await
        .unwrap()
        .sender
        .unwrap();
    let second = store
        .deliver(carrier_send(alice, "+15550000002"))
        .await
        .unwrap()
        .sender
        .unwrap();
    let third = store
        .deliver(carrier_send(alice, "+15550000003"))
        .await
        .unwrap()
        .sender
        .unwrap();
    let t = now() + Duration::seconds(1);
    let lease = t + Duration::seconds(30);

    let claimed = store.claim_outbound(2, t, lease).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].message_id, first.id);
    assert_eq!(claimed[0].account_id, alice);
    assert_eq!(claimed[0].to, "+15550000001");
    assert_eq!(claimed[0].body, "hello");
    assert_eq!(claimed[0].attempts, 0);
    assert!(claimed[0].created_at >= t0);
    assert_eq!(claimed[1].message_id, second.id);
    // A second claimer gets only what is not leased.
    let other = store.claim_outbound(10, t, lease).await.unwrap();
    assert_eq!(
        other.iter().map(|j| j.message_id).collect::<Vec<_>>(),
        vec![third.id]
    );
    assert!(store.claim_outbound(10, t, lease).await.unwrap().is_empty());
    // Once the lease ends, the job is claimable again.
    let expired = store
        .claim_outbound(
            10,
            lease + Duration::seconds(1),
            lease + Duration::seconds(60),
        )
        .await
        .unwrap();
    assert_eq!(expired.len(), 3);

    // Sent: records the carrier id, status sent, job gone.
    store
        .finish_outbound(
            first.id,
            OutboundOutcome::Sent {
                carrier: "sim".into(),
                carrier_message_id: "SM1".into(),
                cost: None,
            },
            now(),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .message(alice, first.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        SendStatus::Sent
    );
    assert_eq!(
        store.message_by_carrier_id("sim", "SM1").await.unwrap(),
        Some(first.id)
    );
    assert_eq!(
        store.message_by_carrier_id("other", "SM1").await.unwrap(),
        None
    );
    assert_eq!(
        store.message_by_carrier_id("sim", "SM2").await.unwrap(),
        None
    );

    // Retry: attempts up, not before the given time, lease released.
    let retry_at = now() + Duration::minutes(5);
    store
        .finish_outbound(
            second.id,
            OutboundOutcome::Retry {
                not_before: retry_at,
                reason: "busy".into(),
            },
            now(),
        )
        .await
        .unwrap();
    let far = lease + Duration::seconds(61);
    let due = store
        .claim_outbound(10, far, far + Duration::seconds(30))
        .await
        .unwrap();
    assert_eq!(
        due.iter().map(|j| j.message_id).collect::<Vec<_>>(),
        vec![third.id]
    );
    let later = retry_at + Duration::seconds(1);
    let due = store
        .claim_outbound(10, later, later + Duration::seconds(30))
        .await
        .unwrap();
    let retried: Vec<_> = due.iter().filter(|j| j.message_id == second.id).collect();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].attempts, 1);

    // Deferred (left for another node): offered again, not counted as an attempt.
    store
        .finish_outbound(
            second.id,
            OutboundOutcome::Defer {
                not_before: later,
                reason: "left for the gateway node bound to smsc".into(),
            },
            now(),
        )
        .await
        .unwrap();
    let again = later + Duration::seconds(1);
    let due = store
        .claim_outbound(10, again, again + Duration::seconds(30))
        .await
        .unwrap();
    let deferred: Vec<_> = due.iter().filter(|j| j.message_id == second.id).collect();
    assert_eq!(deferred.len(), 1, "offered again");
    assert_eq!(deferred[0].attempts, 1, "a deferral is not an attempt");

    // Failed: job gone, message failed with the reason.
    store
        .finish_outbound(
            second.id,
            OutboundOutcome::Failed {
                reason: "number does not exist".into(),
            },
            now(),
        )
        .await
        .unwrap();
    let failed = store.message(alice, second.id).await.unwrap().unwrap();
    assert_eq!(failed.status, SendStatus::Failed);
    assert_eq!(
        failed.failure_reason.as_deref(),
        Some("number does not exist")
    );

    // A receipt that overtook the submit response: delivered stays delivered.
    store
        .update_status(StatusUpdate {
            message_id: third.id,
            status: SendStatus::Delivered,
            failure_reason: None,
            at: now(),
        })
        .await
        .unwrap();
    store
        .finish_outbound(
            third.id,
            OutboundOutcome::Sent {
                carrier: "sim".into(),
                carrier_message_id: "SM3".into(),
                cost: None,
            },
            now(),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .message(alice, third.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        SendStatus::Delivered
    );
    assert_eq!(
        store.message_by_carrier_id("sim", "SM3").await.unwrap(),
        Some(third.id)
    );

    let end = later + Duration::hours(1);
    assert!(store.claim_outbound(10, end, end).await.unwrap().is_empty());
    assert!(matches!(
        store
            .finish_outbound(
                MessageId::new(),
                OutboundOutcome::Retry {
                    not_before: now(),
                    reason: "x".into()
                },
                now()
            )
            .await,
        Err(StoreError::NotFound)
    ));
}

async fn messages_page_newest_first(store: SharedStore) {
    let alice = account(&store, "alice").await;
    let bob = account(&store, "bob").await;
    let mut ids = Vec::new();
    let mut conversation = None;
    for _ in 0..7 {
        let done = store
            .deliver(in_network(alice, "@alice", bob, "@bob"))
            .await
            .unwrap();
        let m = done.recipient.unwrap();
        conversation = Some(m.conversation_id);
        ids.push(m.id);
    }
    let conversation = conversation.unwrap();
    ids.reverse();
    let page1 = store.messages(bob, conversation, 3, None).await.unwrap();
    assert_eq!(page1.iter().map(|m| m.id).collect::<Vec<_>>(), ids[0..3]);
    let page2 = store
        .messages(bob, conversation, 3, Some(page1[2].id))
        .await
        .unwrap();
    assert_eq!(page2.iter().map(|m| m.id).collect::<Vec<_>>(), ids[3..6]);
    let page3 = store
        .messages(bob, conversation, 3, Some(page2[2].id))
        .await
        .unwrap();
    assert_eq!(page3.iter().map(|m| m.id).collect::<Vec<_>>(), ids[6..7]);
    // Another account sees nothing of it.
    assert!(store
        .messages(alice, conversation, 10, None)
        .await
        .unwrap()
        .is_empty());
}

async fn conversations_page_by_updated_at(store: SharedStore) {
    let bob = account(&store, "bob").await;
    let base = now() - Duration::hours(1);
    let mut peers = Vec::new();
    for i in 0..5 {
        let mut d = inbound(bob, &format!("+1555000000{i}"));
        d.recipient.as_mut().unwrap().created_at = base + Duration::minutes(i);
        store.deliver(d).await.unwrap();
        peers.push(format!("+1555000000{i}"));
    }
    // Peer 1 texts again: it moves to the top.
    let mut d = inbound(bob, "+15550000001");
    d.recipient.as_mut().unwrap().created_at = base + Duration::minutes(30);
    store.deliver(d).await.unwrap();

    let all = store.conversations(bob, 10, None).await.unwrap();
    let order: Vec<_> = all.iter().map(|c| c.peer.as_str()).collect();
    assert_eq!(
        order,
        vec![
            "+15550000001",
            "+15550000004",
            "+15550000003",
            "+15550000002",
            "+15550000000"
        ]
    );
    assert_eq!(all[0].unread, 2);
    assert_eq!(all[0].updated_at, base + Duration::minutes(30));
    let page1 = store.conversations(bob, 2, None).await.unwrap();
    assert_eq!(page1.len(), 2);
    let page2 = store
        .conversations(bob, 2, Some(page1[1].updated_at))
        .await
        .unwrap();
    assert_eq!(
        page2.iter().map(|c| c.peer.as_str()).collect::<Vec<_>>(),
        vec!["+15550000003", "+15550000002"]
    );
    assert!(page2.iter().all(|c| c.last_message.is_some()));
}

async fn mark_read_never_moves_backwards(store: SharedStore) {
    let alice = account(&store, "alice").await;
    let bob = account(&store, "bob").await;
    let mut received = Vec::new();
    for _ in 0..4 {
        let done = store
            .deliver(in_network(alice, "@alice", bob, "@bob"))
            .await
            .unwrap();
        received.push(done.recipient.unwrap());
    }
    let conversation = received[0].conversation_id;
    store
        .mark_read(bob, conversation, received[2].id, now())
        .await
        .unwrap();
    let conv = store
        .conversation(bob, conversation)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conv.unread, 1);
    // Backwards: the marker stays at message 3.
    store
        .mark_read(bob, conversation, received[0].id, now())
        .await
        .unwrap();
    let conv = store
        .conversation(bob, conversation)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conv.unread, 1);
    let reads: Vec<_> = all_events(&store, bob)
        .await
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::ConversationRead {
                conversation_id,
                up_to,
                unread,
            } => Some((conversation_id, up_to, unread)),
            _ => None,
        })
        .collect();
    assert_eq!(reads.len(), 2);
    assert_eq!(reads[0], (conversation, received[2].id, 1));
    assert_eq!(reads[1].1, received[2].id);
    assert_eq!(reads[1].2, 1);
    // A new message after the marker counts.
    store
        .deliver(in_network(alice, "@alice", bob, "@bob"))
        .await
        .unwrap();
    assert_eq!(
        store
            .conversation(bob, conversation)
            .await
            .unwrap()
            .unwrap()
            .unread,
        2
    );
    store
        .mark_read(bob, conversation, received[3].id, now())
        .await
        .unwrap();
    assert_eq!(
        store
            .conversation(bob, conversation)
            .await
            .unwrap()
            .unwrap()
            .unread,
        1
    );

    // Outbound copies never count as unread; marking with one works.
    let alices = store.conversations(alice, 10, None).await.unwrap();
    assert_eq!(alices[0].unread, 0);

    // Not this account's conversation, or a message outside it.
    assert!(matches!(
        store
            .mark_read(alice, conversation, received[3].id, now())
            .await,
        Err(StoreError::NotFound)
    ));
    let elsewhere = store
        .deliver(inbound(bob, "+15559990000"))
        .await
        .unwrap()
        .recipient
        .unwrap();
    assert!(matches!(
        store
            .mark_read(bob, conversation, elsewhere.id, now())
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .mark_read(bob, ConversationId::new(), received[3].id, now())
            .await,
        Err(StoreError::NotFound)
    ));
}

async fn delete_message_fixes_the_conversation(store: SharedStore) {
    let alice = account(&store, "alice").await;
    let bob = account(&store, "bob").await;
    let one = store
        .deliver(in_network(alice, "@alice", bob, "@bob"))
        .await
        .unwrap();
    let two = store
        .deliver(in_network(alice, "@alice", bob, "@bob"))
        .await
        .unwrap();
    let b1 = one.recipient.unwrap();
    let b2 = two.recipient.unwrap();
    let a2 = two.sender.unwrap();
    assert!(matches!(
        store.delete_message(alice, b2.id, now()).await,
        Err(StoreError::NotFound)
    ));
    store.delete_message(bob, b2.id, now()).await.unwrap();
    assert!(store.message(bob, b2.id).await.unwrap().is_none());
    // Only bob's copy went.
    assert!(store.message(alice, a2.id).await.unwrap().is_some());
    let conv = store
        .conversation(bob, b1.conversation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conv.last_message.unwrap().id, b1.id);
    assert_eq!(conv.unread, 1);
    let last = all_events(&store, bob).await.pop().unwrap();
    assert_eq!(
        last.kind,
        EventKind::MessageDeleted {
            message_id: b2.id,
            conversation_id: b1.conversation_id
        }
    );
    store.delete_message(bob, b1.id, now()).await.unwrap();
    let conv = store
        .conversation(bob, b1.conversation_id)
        .await
        .unwrap()
        .unwrap();
    assert!(conv.last_message.is_none());
    assert_eq!(conv.unread, 0);
    assert!(matches!(
        store.delete_message(bob, b1.id, now()).await,
        Err(StoreError::NotFound)
    ));
}

async fn contacts_upsert_and_log(store: SharedStore) {
    let alice = account(&store, "alice").await;
    let bob = account(&store, "bob").await;
    let mut contact = Contact {
        address: "+15550001111".into(),
        path: PathChoice::Cellular,
        fallback: true,
        name: Some("Mum".into()),
        blocked: false,
        updated_at: now(),
    };
    store.put_contact(alice, contact.clone()).await.unwrap();
    assert_eq!(store.contacts(alice).await.unwrap(), vec![contact.clone()]);
    contact.path = PathChoice::Cloud;
    contact.fallback = false;
    contact.name = None;
    contact.updated_at = now();
    store.put_contact(alice, contact.clone()).await.unwrap();
    assert_eq!(store.contacts(alice).await.unwrap(), vec![contact.clone()]);
    assert!(store.contacts(bob).await.unwrap().is_empty());
    let events = all_events(&store, alice).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].kind, EventKind::ContactUpdated { contact });
}

async fn blocked_senders_texts_are_not_stored(store: SharedStore) {
    let alice = account(&store, "alice").await;
    let bob = account(&store, "bob").await;
    let mut contact = Contact {
        address: "@bob".into(),
        path: PathChoice::Auto,
        fallback: false,
        name: None,
        blocked: true,
        updated_at: now(),
    };
    store.put_contact(alice, contact.clone()).await.unwrap();
    let outside = Contact {
        address: "+15550002222".into(),
        ..contact.clone()
    };
    store.put_contact(alice, outside).await.unwrap();
    let before = all_events(&store, alice).await.len();

    // In network: bob's copy is stored as usual, alice's is not.
    let sent = store
        .deliver(in_network(bob, "@bob", alice, "@alice"))
        .await
        .unwrap();
    assert!(sent.created);
    assert!(sent.sender.is_some());
    assert!(sent.recipient.is_none());
    // From outside: nothing stored.
    let received = store.deliver(inbound(alice, "+15550002222")).await.unwrap();
    assert!(received.recipient.is_none());
    assert!(store
        .conversations(alice, 50, None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(all_events(&store, alice).await.len(), before);
    assert_eq!(store.conversations(bob, 50, None).await.unwrap().len(), 1);

    // Unblocked: the next text reaches alice.
    contact.blocked = false;
    contact.updated_at = now();
    store.put_contact(alice, contact.clone()).await.unwrap();
    let stored = store.contacts(alice).await.unwrap();
    assert!(stored.iter().any(|c| c.address == "@bob" && !c.blocked));
    let sent = store
        .deliver(in_network(bob, "@bob", alice, "@alice"))
        .await
        .unwrap();
    assert!(sent.recipient.is_some());
    assert_eq!(store.conversations(alice, 50, None).await.unwrap().len(), 1);
    // A block is per account: bob did not block alice.
    let back = store
        .deliver(in_network(alice, "@alice", bob, "@bob"))
        .await
        .unwrap();
    assert!(back.recipient.is_some());
}

async fn deleted_contacts_are_logged_and_then_not_found(store: SharedStore) {
    let alice = account(&store, "alice").await;
    let bob = account(&store, "bob").await;
    let contact = Contact {
        address: "+15550001111".into(),
        path: PathChoice::Cloud,
        fallback: false,
        name: Some("Mum".into()),
        blocked: true,
        updated_at: now(),
    };
    store.put_contact(alice, contact.clone()).await.unwrap();
    // Another account cannot delete it.
    assert!(matches!(
        store.delete_contact(bob, "+15550001111", now()).await,
        Err(StoreError::NotFound)
    ));
    store
        .delete_contact(alice, "+15550001111", now())
        .await
        .unwrap();
    assert!(store.contacts(alice).await.unwrap().is_empty());
    let events = all_events(&store, alice).await;
    assert_eq!(
        events.last().map(|e| &e.kind),
        Some(&EventKind::ContactDeleted {
            address: "+15550001111".into()
        })
    );
    assert!(matches!(
        store.delete_contact(alice, "+15550001111", now()).await,
        Err(StoreError::NotFound)
    ));
    // Deleting the block lets texts through again.
    let received = store.deliver(inbound(alice, "+15550001111")).await.unwrap();
    assert!(received.recipient.is_some());
}

async fn events_page_with_more_flag(store: SharedStore) {
    let bob = account(&store, "bob").await;
    for i in 0..5 {
        store
            .deliver(inbound(bob, &format!("+155500000{i}")))
            .await
            .unwrap();
    }
    let (page, more) = store.events_after(bob, 0, 2).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert!(more);
    let (page, more) = store.events_after(bob, 2, 3).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert!(!more);
    let (page, more) = store.events_after(bob, 5, 3).await.unwrap();
    assert!(page.is_empty());
    assert!(!more);
    let (page, _) = store.events_after(AccountId::new(), 0, 3).await.unwrap();
    assert!(page.is_empty());
    assert_eq!(store.last_seq(AccountId::new()).await.unwrap(), 0);
    // Events round-trip through JSON as devices receive them.
    let json = serde_json::to_value(&page).unwrap();
    assert!(json.is_array());
}

async fn other_accounts_ids_are_not_found(store: SharedStore) {
    let alice = account(&store, "alice").await;
    let bob = account(&store, "bob").await;
    let eve = account(&store, "eve").await;
    let done = store
        .deliver(in_network(alice, "@alice", bob, "@bob"))
        .await
        .unwrap();
    let a = done.sender.unwrap();
    let b = done.recipient.unwrap();
    assert!(store.message(eve, a.id).await.unwrap().is_none());
    assert!(store.message(eve, b.id).await.unwrap().is_none());
    assert!(store
        .conversation(eve, a.conversation_id)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .conversation(alice, b.conversation_id)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .messages(eve, b.conversation_id, 10, None)
        .await
        .unwrap()
        .is_empty());
    assert!(store.conversations(eve, 10, None).await.unwrap().is_empty());
    assert!(matches!(
        store.delete_message(eve, a.id, now()).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.mark_read(eve, b.conversation_id, b.id, now()).await,
        Err(StoreError::NotFound)
    ));
    assert!(store.events_after(eve, 0, 10).await.unwrap().0.is_empty());
    // Nothing of eve's failed attempts touched the others.
    assert!(store.message(alice, a.id).await.unwrap().is_some());
    assert_eq!(store.last_seq(bob).await.unwrap(), 1);
}

async fn subscribers_hear_of_commits(store: SharedStore) {
    let alice = account(&store, "alice").await;
    let bob = account(&store, "bob").await;
    let mut rx = store.subscribe();
    store
        .deliver(in_network(alice, "@alice", bob, "@bob"))
        .await
        .unwrap();
    let mut heard = Vec::new();
    while heard.len() < 2 {
        let hint: LogAdvanced = tokio::time::timeout(StdDuration::from_secs(5), rx.recv())
            .await
            .expect("a hint arrives")
            .unwrap();
        // By the time the hint arrives, the events are readable.
        let (events, _) = store.events_after(hint.account_id, 0, 100).await.unwrap();
        assert_eq!(events.last().map(|e| e.seq), Some(hint.seq));
        heard.push(hint);
    }
    let accounts: HashSet<_> = heard.iter().map(|h| h.account_id).collect();
    assert_eq!(accounts, HashSet::from([alice, bob]));
    assert!(heard.iter().all(|h| h.seq == 1));
    // A write that appends nothing (a repeated status) publishes nothing.
    store
        .create_device(NewDevice {
            id: DeviceId::new(),
            account_id: alice,
            name: "x".into(),
            has_cellular: false,
            token_hash: TokenHash([1; 32]),
            created_at: now(),
        })
        .await
        .unwrap();
    store
        .put_contact(
            alice,
            Contact {
                address: "@bob".into(),
                path: PathChoice::Auto,
                fallback: false,
                name: None,
                blocked: false,
                updated_at: now(),
            },
        )
        .await
        .unwrap();
    let hint = tokio::time::timeout(StdDuration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        hint,
        LogAdvanced {
            account_id: alice,
            seq: 2
        }
    );
}

async fn writes_after_close_are_unavailable(store: SharedStore) {
    let alice = account(&store, "alice").await;
    let bob = account(&store, "bob").await;
    let to = airtext_sms::Address::parse("@bob", None).unwrap();
    // Read once before: SQLite keeps what a send reads in memory.
    store.sender_and_addressee(alice, &to).await.unwrap();
    // Writes queued before close are flushed, not lost.
    let pending: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .deliver(in_network(alice, "@alice", bob, "@bob"))
                    .await
            })
        })
        .collect();
    tokio::task::yield_now().await;
    store.close().await;
    let mut ok = 0;
    for p in pending {
        match p.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Unavailable(_)) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    let _ = ok;
    let after = store
        .deliver(in_network(alice, "@alice", bob, "@bob"))
        .await;
    assert!(
        matches!(after, Err(StoreError::Unavailable(_))),
        "{after:?}"
    );
    let after = store
        .put_contact(
            alice,
            Contact {
                address: "@bob".into(),
                path: PathChoice::Auto,
                fallback: false,
                name: None,
                blocked: false,
                updated_at: now(),
            },
        )
        .await;
    assert!(
        matches!(after, Err(StoreError::Unavailable(_))),
        "{after:?}"
    );
    // Nor is a send's lookup answered, even from memory.
    let after = store.sender_and_addressee(alice, &to).await;
    assert!(
        matches!(after, Err(StoreError::Unavailable(_))),
        "{after:?}"
    );
    // Closing twice is harmless.
    store.close().await;
}

async fn corrupt_rows_are_errors_not_panics(h: &Harness) {
    let store = h.store.clone();
    let alice = account(&store, "alice").await;
    let bob = account(&store, "bob").await;
    let done = store
        .deliver(in_network(alice, "@alice", bob, "@bob"))
        .await
        .unwrap();
    let b = done.recipient.unwrap();
    h.exec("UPDATE messages SET status = 'teleported'").await;
    let read = store.message(bob, b.id).await;
    assert!(matches!(read, Err(StoreError::Corrupt(_))), "{read:?}");
    let list = store.messages(bob, b.conversation_id, 10, None).await;
    assert!(matches!(list, Err(StoreError::Corrupt(_))), "{list:?}");
    let conv = store.conversations(bob, 10, None).await;
    assert!(matches!(conv, Err(StoreError::Corrupt(_))), "{conv:?}");
    let status = store
        .update_status(StatusUpdate {
            message_id: b.id,
            status: SendStatus::Delivered,
            failure_reason: None,
            at: now(),
        })
        .await;
    assert!(matches!(status, Err(StoreError::Corrupt(_))), "{status:?}");
    h.exec("UPDATE events SET payload = 'not json'").await;
    let events = store.events_after(bob, 0, 10).await;
    assert!(matches!(events, Err(StoreError::Corrupt(_))), "{events:?}");
    h.exec("UPDATE contacts SET path = 'x'").await;
    // The store still works for everything else.
    store.ping().await.unwrap();
    store.deliver(inbound(alice, "+15550000000")).await.unwrap();
    let _ = Arc::clone(&store);
}

// ----- least-cost routing and opt-outs -----

/// The routing work's methods, instantiated for both engines like the rest.
mod routing_and_opt_outs {
    use super::*;

    conformance!(
        store: [
            a_sent_message_records_carrier_id_and_cost,
            opt_outs_are_per_pair_and_idempotent,
            an_opted_out_recipient_refuses_the_send,
            addresses_lead_to_their_accounts,
            a_send_sees_every_change_to_the_accounts_it_reads,
            a_job_stored_leased_waits_for_its_lease,
        ],
        raw: []
    );

    /// `addressee` is SQLite's one-snapshot read on SQLite and the trait's composition of
    /// point reads on PostgreSQL: both must answer alike.
    async fn addresses_lead_to_their_accounts(store: SharedStore) {
        let alice = account(&store, "alice").await;
        let bob = account(&store, "bob").await;
        let carol = account(&store, "carol").await;
        let inventory = [InventoryNumber {
            number: "+14155550001".into(),
            carrier: "sim".into(),
            country: "US".into(),
        }];
        store.add_inventory(&inventory).await.unwrap();
        store
            .claim_number(alice, "+14155550001", now())
            .await
            .unwrap();
        for (kind, value) in [
            (IdentityKind::Phone, "+12025550111"),
            (IdentityKind::Email, "bob@example.org"),
            // Carol verified alice's DID as her phone: the DID's owner wins.
            (IdentityKind::Phone, "+14155550001"),
        ] {
            let owner = if value == "+14155550001" { carol } else { bob };
            let code = NewIdentityCode {
                id: IdentityId::new(),
                account_id: owner,
                kind,
                value: value.into(),
                code_hash: "h".into(),
                expires_at: now() + Duration::minutes(10),
                now: now(),
            };
            let id = store.put_identity_code(code).await.unwrap();
            store.mark_verified(owner, id, now()).await.unwrap();
        }
        let address = |s: &str| airtext_sms::Address::parse(s, None).unwrap();
        let lead = |s: &'static str| {
            let store = store.clone();
            async move {
                let to = address(s);
                let alone = store.addressee(&to).await.unwrap().map(|a| a.id);
                let (sender, with_sender) = store.sender_and_addressee(alice, &to).await.unwrap();
                assert_eq!(sender.map(|a| a.id), Some(alice), "{s}");
                assert_eq!(with_sender.map(|a| a.id), alone, "{s}");
                alone
            }
        };
        assert_eq!(lead("+14155550001").await, Some(alice));
        assert_eq!(lead("+12025550111").await, Some(bob));
        assert_eq!(lead("bob@example.org").await, Some(bob));
        assert_eq!(lead("@carol").await, Some(carol));
        assert_eq!(lead("@nobody").await, None);
        assert_eq!(lead("nobody@example.org").await, None);
        assert_eq!(lead("+12025550143").await, None);
        assert_eq!(lead("12345").await, None);
        // The account the DID leads to comes whole (its number included).
        let owner = store
            .addressee(&address("+14155550001"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(owner.number.as_deref(), Some("+14155550001"));
        // A sender that does not exist is no error: the caller decides.
        let (sender, _) = store
            .sender_and_addressee(AccountId::new(), &address("@carol"))
            .await
            .unwrap();
        assert!(sender.is_none());
    }

    /// SQLite serves these reads from memory after the first (kept true by its writer): each
    /// change to what a send reads must show in the very next send, on both engines.
    async fn a_send_sees_every_change_to_the_accounts_it_reads(store: SharedStore) {
        let alice = account(&store, "alice").await;
        let bob = account(&store, "bob").await;
        let did = "+14155550002";
        let inventory = [InventoryNumber {
            number: did.into(),
            carrier: "sim".into(),
            country: "US".into(),
        }];
        store.add_inventory(&inventory).await.unwrap();
        let address = |s: &str| airtext_sms::Address::parse(s, None).unwrap();
        let looked_up = |sender: AccountId, to: &'static str| {
            let store = store.clone();
            async move {
                let (sender, addressee) = store
                    .sender_and_addressee(sender, &address(to))
                    .await
                    .unwrap();
                let sender = sender.unwrap();
                (sender.number, addressee.map(|a| a.id))
            }
        };
        // Twice each time: the second may come from memory.
        for _ in 0..2 {
            assert_eq!(looked_up(alice, did).await, (None, None));
            assert_eq!(looked_up(alice, "@carol").await, (None, None));
            assert_eq!(looked_up(alice, "+12025550199").await, (None, None));
        }

        store.claim_number(bob, did, now()).await.unwrap();
        for _ in 0..2 {
            assert_eq!(looked_up(alice, did).await, (None, Some(bob)));
            assert_eq!(
                looked_up(bob, "@alice").await,
                (Some(did.into()), Some(alice))
            );
        }

        store
            .release_number(bob, did, now() - Duration::seconds(1))
            .await
            .unwrap();
        for _ in 0..2 {
            assert_eq!(looked_up(alice, did).await, (None, None));
            assert_eq!(looked_up(bob, "@alice").await, (None, Some(alice)));
        }

        store.claim_number(alice, did, now()).await.unwrap();
        assert_eq!(looked_up(alice, did).await, (Some(did.into()), Some(alice)));

        let carol = account(&store, "carol").await;
        assert_eq!(
            looked_up(alice, "@carol").await,
            (Some(did.into()), Some(carol))
        );

        let code = NewIdentityCode {
            id: IdentityId::new(),
            account_id: carol,
            kind: IdentityKind::Phone,
            value: "+12025550199".into(),
            code_hash: "h".into(),
            expires_at: now() + Duration::minutes(10),
            now: now(),
        };
        let id = store.put_identity_code(code).await.unwrap();
        // Pending is not verified: still out of network.
        assert_eq!(looked_up(alice, "+12025550199").await.1, None);
        store.mark_verified(carol, id, now()).await.unwrap();
        assert_eq!(looked_up(alice, "+12025550199").await.1, Some(carol));
    }

    async fn an_opted_out_recipient_refuses_the_send(store: SharedStore) {
        let alice = account(&store, "alice").await;
        let phone = "+15550000009";
        // Sent before the STOP: a repeat of it still answers with that message.
        let before = carrier_send(alice, phone);
        let first = store.deliver(before.clone()).await.unwrap();
        let seq = store.last_seq(alice).await.unwrap();

        store.set_opt_out("me", phone, true, now()).await.unwrap();
        let refused = store.deliver(carrier_send(alice, phone)).await;
        assert!(matches!(refused, Err(StoreError::OptedOut)), "{refused:?}");
        // Nothing of it was stored: no event, no job beside the first send's.
        assert_eq!(store.last_seq(alice).await.unwrap(), seq);
        let t = now() + Duration::seconds(1);
        let jobs = store
            .claim_outbound(10, t, t + Duration::seconds(30))
            .await
            .unwrap();
        let first_id = first.sender.as_ref().unwrap().id;
        assert_eq!(
            jobs.iter().map(|j| j.message_id).collect::<Vec<_>>(),
            vec![first_id]
        );
        let repeat = store.deliver(before).await.unwrap();
        assert!(!repeat.created);
        assert_eq!(repeat.sender.unwrap().id, first_id);
        // Another pair, and in-network texts, are not affected.
        store
            .deliver(carrier_send(alice, "+15550000010"))
            .await
            .unwrap();
        // START clears it.
        store.set_opt_out("me", phone, false, now()).await.unwrap();
        let after = store.deliver(carrier_send(alice, phone)).await.unwrap();
        assert!(after.created);
    }

    async fn a_job_stored_leased_waits_for_its_lease(store: SharedStore) {
        let alice = account(&store, "alice").await;
        let t = now() + Duration::seconds(1);
        let lease = t + Duration::seconds(30);
        let mut handed = carrier_send(alice, "+15550000001");
        handed.enqueue = Some(Enqueue {
            leased_until: Some(lease),
        });
        let handed = store.deliver(handed).await.unwrap().sender.unwrap();
        let free = store
            .deliver(carrier_send(alice, "+15550000002"))
            .await
            .unwrap()
            .sender
            .unwrap();
        // Leased to the worker it was handed to: another claim does not take it...
        let claimed = store
            .claim_outbound(10, t, t + Duration::seconds(30))
            .await
            .unwrap();
        assert_eq!(
            claimed.iter().map(|j| j.message_id).collect::<Vec<_>>(),
            vec![free.id]
        );
        // ...until its lease ends (that worker's node stopped before sending it).
        let later = lease + Duration::seconds(1);
        let claimed = store
            .claim_outbound(10, later, later + Duration::seconds(30))
            .await
            .unwrap();
        assert!(claimed.iter().any(|j| j.message_id == handed.id));
        // The handed-over job finishes like a claimed one.
        store
            .finish_outbound(
                handed.id,
                OutboundOutcome::Sent {
                    carrier: "smsc1".into(),
                    carrier_message_id: "H1".into(),
                    cost: None,
                },
                later,
            )
            .await
            .unwrap();
        let sent = store.message(alice, handed.id).await.unwrap().unwrap();
        assert_eq!(sent.status, SendStatus::Sent);
    }

    async fn a_sent_message_records_carrier_id_and_cost(store: SharedStore) {
        let alice = account(&store, "alice").await;
        let priced = store
            .deliver(carrier_send(alice, "+15550000001"))
            .await
            .unwrap()
            .sender
            .unwrap();
        let unpriced = store
            .deliver(carrier_send(alice, "+15550000002"))
            .await
            .unwrap()
            .sender
            .unwrap();
        let failed = store
            .deliver(carrier_send(alice, "+15550000003"))
            .await
            .unwrap()
            .sender
            .unwrap();
        assert_eq!(store.carrier_record(priced.id).await.unwrap(), None);
        let t = now() + Duration::seconds(1);
        let jobs = store
            .claim_outbound(10, t, t + Duration::seconds(30))
            .await
            .unwrap();
        assert_eq!(jobs.len(), 3);

        let sent = |id: &str, cost| OutboundOutcome::Sent {
            carrier: "smsc1".into(),
            carrier_message_id: id.into(),
            cost,
        };
        store
            .finish_outbound(priced.id, sent("M1", Some(0.0125)), t)
            .await
            .unwrap();
        store
            .finish_outbound(unpriced.id, sent("M2", None), t)
            .await
            .unwrap();
        store
            .finish_outbound(
                failed.id,
                OutboundOutcome::Failed {
                    reason: "no carrier can send from +1 to +1".into(),
                },
                t,
            )
            .await
            .unwrap();

        let record = store.carrier_record(priced.id).await.unwrap().unwrap();
        assert_eq!(
            record,
            store::CarrierRecord {
                carrier: "smsc1".into(),
                carrier_message_id: "M1".into(),
                cost: Some(0.0125),
            }
        );
        let record = store.carrier_record(unpriced.id).await.unwrap().unwrap();
        assert_eq!(
            (record.carrier_message_id.as_str(), record.cost),
            ("M2", None)
        );
        assert_eq!(store.carrier_record(failed.id).await.unwrap(), None);
        let failed = store.message(alice, failed.id).await.unwrap().unwrap();
        assert_eq!(failed.status, SendStatus::Failed);
        assert_eq!(
            store.message_by_carrier_id("smsc1", "M1").await.unwrap(),
            Some(priced.id)
        );
        assert_eq!(store.carrier_record(MessageId::new()).await.unwrap(), None);
        // Nothing is left in the queue.
        let later = t + Duration::seconds(120);
        assert!(store
            .claim_outbound(10, later, later + Duration::seconds(30))
            .await
            .unwrap()
            .is_empty());
    }

    async fn opt_outs_are_per_pair_and_idempotent(store: SharedStore) {
        let did = "+14155550100";
        let phone = "+12025550143";
        assert!(!store.opted_out(did, phone).await.unwrap());
        store.set_opt_out(did, phone, true, now()).await.unwrap();
        store.set_opt_out(did, phone, true, now()).await.unwrap();
        assert!(store.opted_out(did, phone).await.unwrap());
        // Only that pair.
        assert!(!store.opted_out(did, "+12025550144").await.unwrap());
        assert!(!store.opted_out("+14155550101", phone).await.unwrap());
        assert!(!store.opted_out(phone, did).await.unwrap());
        store.set_opt_out(did, phone, false, now()).await.unwrap();
        store.set_opt_out(did, phone, false, now()).await.unwrap();
        assert!(!store.opted_out(did, phone).await.unwrap());
        // Short codes are kept as received.
        store.set_opt_out(did, "12345", true, now()).await.unwrap();
        assert!(store.opted_out(did, "12345").await.unwrap());
    }
}

// ----- carrier receipts -----

/// Receipts applied in batches, and receipts that overtook the record of their send held in
/// the store until it commits.
mod receipts {
    use super::*;
    use airtext_api::messages::Message;
    use airtext_gateway::store::{CarrierReceipt, ReceiptOutcome};

    conformance!(
        store: [
            receipts_apply_in_one_batch_forward_only,
            early_receipts_apply_when_the_send_is_recorded,
            unclaimed_early_receipts_expire,
            receipts_racing_the_record_of_their_send_are_never_lost,
        ],
        raw: [early_receipts_survive_a_restart]
    );

    fn receipt(id: &str, status: SendStatus) -> CarrierReceipt {
        CarrierReceipt {
            carrier: "smsc1".into(),
            carrier_message_id: id.into(),
            status,
            failure_reason: (status == SendStatus::Failed).then(|| "absent subscriber".into()),
            received_at: now(),
        }
    }

    fn sent(id: &str) -> OutboundOutcome {
        OutboundOutcome::Sent {
            carrier: "smsc1".into(),
            carrier_message_id: id.into(),
            cost: None,
        }
    }

    fn sent_priced(id: &str, cost: f64) -> OutboundOutcome {
        OutboundOutcome::Sent {
            carrier: "smsc1".into(),
            carrier_message_id: id.into(),
            cost: Some(cost),
        }
    }

    /// `n` texts from `account`, claimed from the queue (so they can be finished).
    async fn claimed(store: &SharedStore, account: AccountId, n: usize) -> Vec<MessageId> {
        let mut ids = Vec::new();
        for i in 0..n {
            let to = format!("+1555000{i:04}");
            let done = store.deliver(carrier_send(account, &to)).await.unwrap();
            ids.push(done.sender.unwrap().id);
        }
        let t = now() + Duration::seconds(1);
        let mut jobs = Vec::new();
        while jobs.len() < n {
            let more = store
                .claim_outbound(1000, t, t + Duration::seconds(600))
                .await
                .unwrap();
            assert!(
                !more.is_empty(),
                "only {} of {n} jobs claimable",
                jobs.len()
            );
            jobs.extend(more);
        }
        ids
    }

    async fn message(store: &SharedStore, account: AccountId, id: MessageId) -> Message {
        store.message(account, id).await.unwrap().unwrap()
    }

    /// The statuses `account`'s log announced for `id`, in order.
    async fn announced(store: &SharedStore, account: AccountId, id: MessageId) -> Vec<SendStatus> {
        all_events(store, account)
            .await
            .into_iter()
            .filter_map(|event| match event.kind {
                EventKind::MessageStatus {
                    message_id, status, ..
                } if message_id == id => Some(status),
                _ => None,
            })
            .collect()
    }

    async fn receipts_apply_in_one_batch_forward_only(store: SharedStore) {
        let alice = account(&store, "alice").await;
        let bob = account(&store, "bob").await;
        let a = claimed(&store, alice, 3).await;
        let b = claimed(&store, bob, 1).await;
        for (id, carrier_id) in a.iter().zip(["A0", "A1", "A2"]) {
            store
                .finish_outbound(*id, sent(carrier_id), now())
                .await
                .unwrap();
        }
        store
            .finish_outbound(b[0], sent("B0"), now())
            .await
            .unwrap();
        let (alice_seq, bob_seq) = (
            store.last_seq(alice).await.unwrap(),
            store.last_seq(bob).await.unwrap(),
        );
        assert!(store.apply_receipts(&[]).await.unwrap().is_empty());

        let outcomes = store
            .apply_receipts(&[
                receipt("A0", SendStatus::Delivered),
                receipt("B0", SendStatus::Delivered),
                receipt("A1", SendStatus::Failed),
                receipt("A2", SendStatus::Sent),
                receipt("A0", SendStatus::Delivered),
                receipt("A0", SendStatus::Failed),
                receipt("NOBODY", SendStatus::Delivered),
            ])
            .await
            .unwrap();
        let applied = |message_id, changed| ReceiptOutcome::Applied {
            message_id,
            changed,
        };
        assert_eq!(
            outcomes,
            [
                applied(a[0], true),
                applied(b[0], true),
                applied(a[1], true),
                applied(a[2], false),
                applied(a[0], false),
                applied(a[0], false),
                ReceiptOutcome::Held,
            ]
        );
        // One event per real change, on the right account's log.
        assert_eq!(store.last_seq(alice).await.unwrap(), alice_seq + 2);
        assert_eq!(store.last_seq(bob).await.unwrap(), bob_seq + 1);
        let delivered = message(&store, alice, a[0]).await;
        assert_eq!(delivered.status, SendStatus::Delivered);
        assert_eq!(delivered.failure_reason, None);
        let failed = message(&store, alice, a[1]).await;
        assert_eq!(failed.status, SendStatus::Failed);
        assert_eq!(failed.failure_reason.as_deref(), Some("absent subscriber"));
        assert_eq!(message(&store, alice, a[2]).await.status, SendStatus::Sent);
        assert_eq!(
            message(&store, bob, b[0]).await.status,
            SendStatus::Delivered
        );
        assert_eq!(
            announced(&store, alice, a[0]).await,
            [SendStatus::Sent, SendStatus::Delivered]
        );
        assert_eq!(
            announced(&store, alice, a[1]).await,
            [SendStatus::Sent, SendStatus::Failed]
        );
        assert_eq!(announced(&store, alice, a[2]).await, [SendStatus::Sent]);
        // A receipt names its carrier: the same id from another carrier is someone else's.
        let other = CarrierReceipt {
            carrier: "smsc2".into(),
            ..receipt("A2", SendStatus::Delivered)
        };
        assert_eq!(
            store.apply_receipts(&[other]).await.unwrap(),
            [ReceiptOutcome::Held]
        );
        assert_eq!(message(&store, alice, a[2]).await.status, SendStatus::Sent);
    }

    async fn early_receipts_apply_when_the_send_is_recorded(store: SharedStore) {
        let alice = account(&store, "alice").await;
        let ids = claimed(&store, alice, 3).await;
        let seq = store.last_seq(alice).await.unwrap();

        // Receipts that overtook the record of their send are held, repeats included.
        let held = store
            .apply_receipts(&[receipt("E0", SendStatus::Delivered)])
            .await
            .unwrap();
        assert_eq!(held, [ReceiptOutcome::Held]);
        let held = store
            .apply_receipts(&[
                receipt("E0", SendStatus::Sent),
                receipt("E0", SendStatus::Delivered),
                receipt("E1", SendStatus::Failed),
            ])
            .await
            .unwrap();
        assert_eq!(held, [ReceiptOutcome::Held; 3]);
        assert_eq!(
            store.last_seq(alice).await.unwrap(),
            seq,
            "nothing announced yet"
        );
        assert_eq!(
            message(&store, alice, ids[0]).await.status,
            SendStatus::Queued
        );

        // The record of the send applies them, once each.
        store
            .finish_outbound(ids[0], sent("E0"), now())
            .await
            .unwrap();
        assert_eq!(
            message(&store, alice, ids[0]).await.status,
            SendStatus::Delivered
        );
        assert_eq!(
            announced(&store, alice, ids[0]).await,
            [SendStatus::Sent, SendStatus::Delivered]
        );
        store
            .finish_outbound(ids[1], sent_priced("E1", 0.01), now())
            .await
            .unwrap();
        let failed = message(&store, alice, ids[1]).await;
        assert_eq!(failed.status, SendStatus::Failed);
        assert_eq!(failed.failure_reason.as_deref(), Some("absent subscriber"));
        assert_eq!(
            announced(&store, alice, ids[1]).await,
            [SendStatus::Sent, SendStatus::Failed]
        );
        // The cost is recorded with the carrier id, though a receipt had moved it past `sent`.
        assert_eq!(
            store.carrier_record(ids[1]).await.unwrap().unwrap().cost,
            Some(0.01)
        );
        // A send that did not go records no id and takes no receipt.
        store
            .finish_outbound(
                ids[2],
                OutboundOutcome::Retry {
                    not_before: now() + Duration::minutes(1),
                    reason: "busy".into(),
                },
                now(),
            )
            .await
            .unwrap();
        assert_eq!(
            message(&store, alice, ids[2]).await.status,
            SendStatus::Queued
        );

        // They were used up: once more, the receipt finds its message and changes nothing.
        assert_eq!(
            store
                .apply_receipts(&[receipt("E0", SendStatus::Delivered)])
                .await
                .unwrap(),
            [ReceiptOutcome::Applied {
                message_id: ids[0],
                changed: false
            }]
        );
        assert_eq!(
            store
                .expire_early_receipts(now() + Duration::days(1))
                .await
                .unwrap(),
            0,
            "nothing is left held"
        );
    }

    async fn unclaimed_early_receipts_expire(store: SharedStore) {
        let alice = account(&store, "alice").await;
        let old = CarrierReceipt {
            received_at: now() - Duration::hours(5),
            ..receipt("X1", SendStatus::Delivered)
        };
        let fresh = receipt("X2", SendStatus::Delivered);
        store.apply_receipts(&[old, fresh]).await.unwrap();
        let cutoff = now() - Duration::hours(4);
        assert_eq!(store.expire_early_receipts(cutoff).await.unwrap(), 1);
        assert_eq!(store.expire_early_receipts(cutoff).await.unwrap(), 0);

        let ids = claimed(&store, alice, 2).await;
        store
            .finish_outbound(ids[0], sent("X1"), now())
            .await
            .unwrap();
        store
            .finish_outbound(ids[1], sent("X2"), now())
            .await
            .unwrap();
        assert_eq!(
            message(&store, alice, ids[0]).await.status,
            SendStatus::Sent
        );
        assert_eq!(
            message(&store, alice, ids[1]).await.status,
            SendStatus::Delivered
        );
    }

    /// Receipts and the records of their sends committed at the same moment (on PostgreSQL,
    /// in concurrent transactions that cannot see each other's writes): whichever goes
    /// first, every receipt ends up on its message.
    async fn receipts_racing_the_record_of_their_send_are_never_lost(store: SharedStore) {
        const N: usize = 60;
        let alice = account(&store, "alice").await;
        let bob = account(&store, "bob").await;
        let mut ids: Vec<(AccountId, MessageId)> = Vec::new();
        for who in [alice, bob] {
            for id in claimed(&store, who, N / 2).await {
                ids.push((who, id));
            }
        }
        let carrier_id = |i: usize| format!("R{i}");
        let mut tasks = tokio::task::JoinSet::new();
        for (i, &(_, id)) in ids.iter().enumerate() {
            let store = store.clone();
            let outcome = sent(&carrier_id(i));
            tasks.spawn(async move {
                store.finish_outbound(id, outcome, now()).await.unwrap();
            });
        }
        // Half as receipts of their own, half in a few batches of mixed accounts.
        for i in (0..N).step_by(2) {
            let store = store.clone();
            let receipt = receipt(&carrier_id(i), SendStatus::Delivered);
            tasks.spawn(async move {
                store.apply_receipts(&[receipt]).await.unwrap();
            });
        }
        let odd: Vec<usize> = (1..N).step_by(2).collect();
        for chunk in odd.chunks(10) {
            let store = store.clone();
            let batch: Vec<CarrierReceipt> = chunk
                .iter()
                .rev()
                .map(|&i| receipt(&carrier_id(i), SendStatus::Delivered))
                .collect();
            tasks.spawn(async move {
                store.apply_receipts(&batch).await.unwrap();
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        for &(who, id) in &ids {
            assert_eq!(message(&store, who, id).await.status, SendStatus::Delivered);
            assert_eq!(
                announced(&store, who, id).await,
                [SendStatus::Sent, SendStatus::Delivered]
            );
        }
        assert_eq!(
            store
                .expire_early_receipts(now() + Duration::days(1))
                .await
                .unwrap(),
            0
        );
    }

    async fn early_receipts_survive_a_restart(h: &Harness) {
        let store = h.store.clone();
        let alice = account(&store, "alice").await;
        let ids = claimed(&store, alice, 1).await;
        assert_eq!(
            store
                .apply_receipts(&[receipt("S1", SendStatus::Delivered)])
                .await
                .unwrap(),
            [ReceiptOutcome::Held]
        );
        store.close().await;

        let store = h.reopen().await;
        store
            .finish_outbound(ids[0], sent("S1"), now())
            .await
            .unwrap();
        assert_eq!(
            message(&store, alice, ids[0]).await.status,
            SendStatus::Delivered
        );
        store.close().await;
    }
}

async fn outbound_backlog_counts_what_waits(store: SharedStore) {
    assert_eq!(
        store.outbound_backlog().await.unwrap(),
        airtext_gateway::store::OutboundBacklog::default()
    );
    let alice = account(&store, "alice").await;
    let t0 = now();
    let first = store
        .deliver(carrier_send(alice, "+15550000001"))
        .await
        .unwrap()
        .sender
        .unwrap();
    store
        .deliver(carrier_send(alice, "+15550000002"))
        .await
        .unwrap();
    let backlog = store.outbound_backlog().await.unwrap();
    assert_eq!(backlog.jobs, 2);
    let oldest = backlog.oldest.unwrap();
    assert!(oldest >= t0 && oldest <= now(), "{oldest}");
    // Leased jobs still wait; finished ones do not.
    let t = now() + Duration::seconds(1);
    let claimed = store
        .claim_outbound(10, t, t + Duration::seconds(30))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(store.outbound_backlog().await.unwrap().jobs, 2);
    store
        .finish_outbound(
            first.id,
            OutboundOutcome::Failed {
                reason: "test".into(),
            },
            now(),
        )
        .await
        .unwrap();
    assert_eq!(store.outbound_backlog().await.unwrap().jobs, 1);
}

// ----- accounts for real use -----

/// Password changes and resets, account deletion, and deleted messages leaving only
/// tombstones in the log.
mod accounts_for_real_use {
    use super::*;
    use airtext_gateway::store::{ResetCodeRecord, SignOut};
    use sqlx::Row;

    conformance!(
        store: [
            password_changes_sign_out_as_asked,
            reset_codes_count_tries_and_go_with_the_change,
            deleted_messages_leave_only_tombstones_in_the_log,
            a_deleted_conversation_leaves_only_tombstones_in_the_log,
            search_finds_the_accounts_messages_by_word_prefix,
        ],
        raw: [deleting_an_account_leaves_no_row_of_it]
    );

    async fn device(store: &SharedStore, account: AccountId, token: u8) -> DeviceId {
        let id = DeviceId::new();
        store
            .create_device(NewDevice {
                id,
                account_id: account,
                name: format!("device {token}"),
                has_cellular: false,
                token_hash: TokenHash([token; 32]),
                created_at: now(),
            })
            .await
            .unwrap();
        id
    }

    async fn signed_in(store: &SharedStore, token: u8) -> bool {
        store
            .device_by_token(&TokenHash([token; 32]), now())
            .await
            .unwrap()
            .is_some()
    }

    async fn password_changes_sign_out_as_asked(store: SharedStore) {
        let alice = account(&store, "alice").await;
        let bob = account(&store, "bob").await;
        let kept = device(&store, alice, 1).await;
        device(&store, alice, 2).await;
        device(&store, alice, 3).await;
        device(&store, bob, 4).await;
        // Authenticate each once first, so cached tokens are what the change must evict.
        for token in 1..=4 {
            assert!(signed_in(&store, token).await);
        }

        store
            .set_password(alice, "hash 2".into(), SignOut::Nobody)
            .await
            .unwrap();
        assert_eq!(
            store.account(alice).await.unwrap().unwrap().password_hash,
            "hash 2"
        );
        for token in 1..=4 {
            assert!(signed_in(&store, token).await, "{token}");
        }

        store
            .set_password(alice, "hash 3".into(), SignOut::AllBut(kept))
            .await
            .unwrap();
        assert!(signed_in(&store, 1).await);
        assert!(!signed_in(&store, 2).await);
        assert!(!signed_in(&store, 3).await);
        assert!(signed_in(&store, 4).await, "another account's device stays");

        store
            .set_password(alice, "hash 4".into(), SignOut::Everyone)
            .await
            .unwrap();
        assert!(!signed_in(&store, 1).await);
        assert!(store.devices(alice).await.unwrap().is_empty());
        assert_eq!(store.devices(bob).await.unwrap().len(), 1);
        assert_eq!(
            store.account(bob).await.unwrap().unwrap().password_hash,
            "$argon2id$fake"
        );
        assert!(matches!(
            store
                .set_password(AccountId::new(), "x".into(), SignOut::Everyone)
                .await,
            Err(StoreError::NotFound)
        ));
    }

    async fn reset_codes_count_tries_and_go_with_the_change(store: SharedStore) {
        let alice = account(&store, "alice").await;
        let bob = account(&store, "bob").await;
        assert!(store.reset_code(alice).await.unwrap().is_none());
        assert!(matches!(
            store.count_failed_reset(alice).await,
            Err(StoreError::NotFound)
        ));
        let code = ResetCodeRecord {
            account_id: alice,
            code_hash: "sha256:one".into(),
            expires_at: now() + Duration::minutes(10),
            attempts: 0,
        };
        store.put_reset_code(code.clone()).await.unwrap();
        assert_eq!(store.reset_code(alice).await.unwrap(), Some(code.clone()));
        assert!(store.reset_code(bob).await.unwrap().is_none());
        assert_eq!(store.count_failed_reset(alice).await.unwrap(), 1);
        assert_eq!(store.count_failed_reset(alice).await.unwrap(), 2);
        assert_eq!(store.reset_code(alice).await.unwrap().unwrap().attempts, 2);

        // A new code replaces the old one, tries start over.
        let newer = ResetCodeRecord {
            code_hash: "sha256:two".into(),
            ..code
        };
        store.put_reset_code(newer.clone()).await.unwrap();
        assert_eq!(store.reset_code(alice).await.unwrap(), Some(newer));

        // Any password change uses the code up.
        store
            .set_password(alice, "new".into(), SignOut::Everyone)
            .await
            .unwrap();
        assert!(store.reset_code(alice).await.unwrap().is_none());
    }

    async fn deleted_messages_leave_only_tombstones_in_the_log(store: SharedStore) {
        let alice = account(&store, "alice").await;
        let bob = account(&store, "bob").await;
        let mut secret = in_network(alice, "@alice", bob, "@bob");
        for copy in [secret.sender.as_mut(), secret.recipient.as_mut()]
            .into_iter()
            .flatten()
        {
            copy.body = "a secret in-network".into();
        }
        let secret = store.deliver(secret).await.unwrap();
        let mut queued = carrier_send(alice, "+12065550100");
        queued.sender.as_mut().unwrap().body = "a secret to a phone".into();
        let queued = store.deliver(queued).await.unwrap().sender.unwrap();
        store
            .update_status(StatusUpdate {
                message_id: queued.id,
                status: SendStatus::Sent,
                failure_reason: None,
                at: now(),
            })
            .await
            .unwrap();
        let kept = store
            .deliver(in_network(alice, "@alice", bob, "@bob"))
            .await
            .unwrap()
            .sender
            .unwrap();
        let before = all_events(&store, alice).await;

        let alice_secret = secret.sender.unwrap();
        store
            .delete_message(alice, alice_secret.id, now())
            .await
            .unwrap();
        store.delete_message(alice, queued.id, now()).await.unwrap();

        // A device syncing from 0: the same seqs, plus the two deletions, and no body of
        // either message anywhere.
        let events = all_events(&store, alice).await;
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_contiguous(&seqs, 0);
        assert_eq!(events.len(), before.len() + 2);
        let text = serde_json::to_string(&events).unwrap();
        assert!(!text.contains("a secret"), "{text}");
        for event in &events {
            match &event.kind {
                EventKind::MessageCreated { message } => {
                    assert_eq!(message.id, kept.id);
                }
                EventKind::MessageStatus { message_id, .. } => {
                    panic!("a status of a deleted message is left: {message_id}")
                }
                EventKind::MessageDeleted { message_id, .. } => {
                    assert!(*message_id == alice_secret.id || *message_id == queued.id);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // The seqs of the events that became tombstones did not move.
        for (was, is) in before.iter().zip(&events) {
            assert_eq!(was.seq, is.seq);
        }
        // Bob's copy is his: deleting is per account.
        let bobs = serde_json::to_string(&all_events(&store, bob).await).unwrap();
        assert!(bobs.contains("a secret in-network"));
    }

    async fn a_deleted_conversation_leaves_only_tombstones_in_the_log(store: SharedStore) {
        let alice = account(&store, "alice").await;
        let bob = account(&store, "bob").await;
        let secret = |mut delivery: Delivery| {
            for copy in [delivery.sender.as_mut(), delivery.recipient.as_mut()]
                .into_iter()
                .flatten()
            {
                copy.body = "a secret in-network".into();
            }
            delivery
        };
        let sent = store
            .deliver(secret(in_network(alice, "@alice", bob, "@bob")))
            .await
            .unwrap()
            .sender
            .unwrap();
        let received = store
            .deliver(secret(in_network(bob, "@bob", alice, "@alice")))
            .await
            .unwrap()
            .recipient
            .unwrap();
        let conversation = sent.conversation_id;
        assert_eq!(received.conversation_id, conversation);
        store
            .mark_read(alice, conversation, received.id, now())
            .await
            .unwrap();
        let contact = Contact {
            address: "@bob".into(),
            path: PathChoice::Cloud,
            fallback: false,
            name: Some("Bob".into()),
            blocked: false,
            updated_at: now(),
        };
        store.put_contact(alice, contact.clone()).await.unwrap();
        let other = store
            .deliver(carrier_send(alice, "+12065550100"))
            .await
            .unwrap()
            .sender
            .unwrap();
        let before = all_events(&store, alice).await;

        // Neither another account nor an unknown id can delete it.
        assert!(matches!(
            store.delete_conversation(bob, conversation, now()).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store
                .delete_conversation(alice, ConversationId::new(), now())
                .await,
            Err(StoreError::NotFound)
        ));
        store
            .delete_conversation(alice, conversation, now())
            .await
            .unwrap();
        assert!(matches!(
            store.delete_conversation(alice, conversation, now()).await,
            Err(StoreError::NotFound)
        ));

        assert!(store
            .conversation(alice, conversation)
            .await
            .unwrap()
            .is_none());
        assert!(store.message(alice, sent.id).await.unwrap().is_none());
        assert!(store.message(alice, received.id).await.unwrap().is_none());
        let listed = store.conversations(alice, 50, None).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, other.conversation_id);
        assert_eq!(store.contacts(alice).await.unwrap(), vec![contact]);

        // A device syncing from 0: the same seqs plus the deletion, no body of the
        // conversation anywhere, the deletion last.
        let events = all_events(&store, alice).await;
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_contiguous(&seqs, 0);
        assert_eq!(events.len(), before.len() + 1);
        for (was, is) in before.iter().zip(&events) {
            assert_eq!(was.seq, is.seq);
        }
        let text = serde_json::to_string(&events).unwrap();
        assert!(!text.contains("a secret"), "{text}");
        for event in &events {
            match &event.kind {
                EventKind::MessageCreated { message } => assert_eq!(message.id, other.id),
                EventKind::MessageStatus { message_id, .. } => {
                    panic!("a status of a deleted message is left: {message_id}")
                }
                EventKind::MessageDeleted {
                    message_id,
                    conversation_id,
                } => {
                    assert!(*message_id == sent.id || *message_id == received.id);
                    assert_eq!(*conversation_id, conversation);
                }
                EventKind::ConversationRead { .. }
                | EventKind::ContactUpdated { .. }
                | EventKind::ConversationDeleted { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            events.last().map(|e| &e.kind),
            Some(&EventKind::ConversationDeleted {
                conversation_id: conversation
            })
        );
        // Bob's copy is his: deleting is per account.
        assert_eq!(store.conversations(bob, 50, None).await.unwrap().len(), 1);
        let bobs = serde_json::to_string(&all_events(&store, bob).await).unwrap();
        assert!(bobs.contains("a secret in-network"));
    }

    /// Every (table, column) of the schema holding one of `ids` or `texts`, with its count.
    async fn rows_holding(h: &Harness, ids: &[uuid::Uuid], texts: &[String]) -> Vec<String> {
        let mut found = Vec::new();
        match &h.engine {
            Engine::Sqlite(dir) => {
                let url = format!("sqlite://{}", dir.path().join("store.db").display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT name FROM sqlite_master WHERE type = 'table' \
                     AND name NOT LIKE 'sqlite_%' ORDER BY name",
                )
                .fetch_all(&mut conn)
                .await
                .unwrap();
                assert!(tables.contains(&"messages".to_owned()), "{tables:?}");
                for table in tables {
                    let columns: Vec<String> =
                        sqlx::query(&format!("PRAGMA table_info(\"{table}\")"))
                            .fetch_all(&mut conn)
                            .await
                            .unwrap()
                            .iter()
                            .map(|row| row.get::<String, _>("name"))
                            .collect();
                    for column in columns {
                        let marks = vec!["?"; ids.len() + texts.len()].join(", ");
                        let sql = format!(
                            "SELECT count(*) FROM \"{table}\" WHERE \"{column}\" IN ({marks})"
                        );
                        let mut query = sqlx::query_scalar::<_, i64>(&sql);
                        for id in ids {
                            query = query.bind(id.as_bytes().to_vec());
                        }
                        for text in texts {
                            query = query.bind(text.clone());
                        }
                        let count = query.fetch_one(&mut conn).await.unwrap();
                        if count > 0 {
                            found.push(format!("{table}.{column}: {count}"));
                        }
                    }
                }
                conn.close().await.unwrap();
            }
            Engine::Postgres(pg) => {
                let mut conn = sqlx::PgConnection::connect(&pg.url).await.unwrap();
                let columns: Vec<(String, String)> = sqlx::query_as(
                    "SELECT table_name::text, column_name::text FROM information_schema.columns \
                     WHERE table_schema = current_schema() ORDER BY 1, 2",
                )
                .fetch_all(&mut conn)
                .await
                .unwrap();
                assert!(
                    columns.iter().any(|(table, _)| table == "messages"),
                    "{columns:?}"
                );
                let values: Vec<String> = ids
                    .iter()
                    .map(ToString::to_string)
                    .chain(texts.iter().cloned())
                    .collect();
                for (table, column) in columns {
                    let count: i64 = sqlx::query_scalar(&format!(
                        "SELECT count(*) FROM \"{table}\" WHERE \"{column}\"::text = ANY($1)"
                    ))
                    .bind(&values)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
                    if count > 0 {
                        found.push(format!("{table}.{column}: {count}"));
                    }
                }
                conn.close().await.unwrap();
            }
        }
        found
    }

    /// Everything an account can hold, for `username`; returns the ids it made.
    async fn fill(
        store: &SharedStore,
        username: &str,
        number: &str,
        peer: AccountId,
    ) -> Vec<uuid::Uuid> {
        let me = account(store, username).await;
        let mut ids = vec![me.0];
        store.claim_number(me, number, now()).await.unwrap();
        for token in 0..2u8 {
            let token = token + if username == "alice" { 10 } else { 20 };
            ids.push(device(store, me, token).await.0);
        }
        for (kind, value) in [
            (
                IdentityKind::Phone,
                format!("+1206555{}", &number[number.len() - 4..]),
            ),
            (IdentityKind::Email, format!("{username}@example.org")),
        ] {
            let identity = store
                .put_identity_code(NewIdentityCode {
                    id: IdentityId::new(),
                    account_id: me,
                    kind,
                    value,
                    code_hash: "sha256:x".into(),
                    expires_at: now() + Duration::minutes(10),
                    now: now(),
                })
                .await
                .unwrap();
            ids.push(identity.0);
            if kind == IdentityKind::Phone {
                store.mark_verified(me, identity, now()).await.unwrap();
            }
        }
        let mut messages = Vec::new();
        messages.push(
            store
                .deliver(carrier_send(me, "+12065550199"))
                .await
                .unwrap()
                .sender
                .unwrap(),
        );
        messages.push(
            store
                .deliver(inbound(me, "+12065550111"))
                .await
                .unwrap()
                .recipient
                .unwrap(),
        );
        let delivered = store
            .deliver(in_network(me, &format!("@{username}"), peer, "@peer"))
            .await
            .unwrap();
        messages.push(delivered.sender.unwrap());
        for message in &messages {
            ids.push(message.id.0);
            ids.push(message.conversation_id.0);
        }
        store
            .mark_read(me, messages[1].conversation_id, messages[1].id, now())
            .await
            .unwrap();
        store
            .put_contact(
                me,
                Contact {
                    address: "+12065550111".into(),
                    path: PathChoice::Cloud,
                    fallback: true,
                    name: Some(format!("{username}'s friend")),
                    blocked: false,
                    updated_at: now(),
                },
            )
            .await
            .unwrap();
        store
            .put_reset_code(ResetCodeRecord {
                account_id: me,
                code_hash: "sha256:reset".into(),
                expires_at: now() + Duration::minutes(10),
                attempts: 0,
            })
            .await
            .unwrap();
        ids
    }

    async fn deleting_an_account_leaves_no_row_of_it(h: &Harness) {
        let store = &h.store;
        store
            .add_inventory(&[
                InventoryNumber {
                    number: "+14155550001".into(),
                    carrier: "sim".into(),
                    country: "US".into(),
                },
                InventoryNumber {
                    number: "+14155550002".into(),
                    carrier: "sim".into(),
                    country: "US".into(),
                },
            ])
            .await
            .unwrap();
        let peer = account(store, "peer").await;
        let alice_ids = fill(store, "alice", "+14155550001", peer).await;
        let bob_ids = fill(store, "bob", "+14155550002", peer).await;
        let alice = AccountId::from(alice_ids[0]);
        let bob = AccountId::from(bob_ids[0]);
        let texts = |name: &str| {
            vec![
                name.to_owned(),
                format!("{name}@example.com"),
                format!("{name}@example.org"),
                format!("{name}'s friend"),
            ]
        };
        let (alice_texts, bob_texts) = (texts("alice"), texts("bob"));
        let bob_before = rows_holding(h, &bob_ids, &bob_texts).await;
        assert!(!rows_holding(h, &alice_ids, &alice_texts).await.is_empty());
        let log =
            |events: Vec<airtext_api::sync::SyncEvent>| serde_json::to_string(&events).unwrap();
        let bob_events = log(all_events(store, bob).await);
        let peer_events = log(all_events(store, peer).await);

        let until = now() + Duration::days(30);
        store.delete_account(alice, until).await.unwrap();

        let left = rows_holding(h, &alice_ids, &alice_texts).await;
        assert!(
            left.is_empty(),
            "rows of the deleted account are left: {left:?}"
        );
        // Everyone else's rows are intact.
        assert_eq!(rows_holding(h, &bob_ids, &bob_texts).await, bob_before);
        assert_eq!(log(all_events(store, bob).await), bob_events);
        assert_eq!(log(all_events(store, peer).await), peer_events);
        assert!(signed_in(store, 20).await && signed_in(store, 21).await);
        assert!(!signed_in(store, 10).await && !signed_in(store, 11).await);
        assert!(store.account(alice).await.unwrap().is_none());
        assert!(store.account_by_username("alice").await.unwrap().is_none());
        assert!(matches!(
            store.delete_account(alice, until).await,
            Err(StoreError::NotFound)
        ));
        // Its queued text never goes; bob's still does.
        let jobs = store
            .claim_outbound(100, now(), now() + Duration::minutes(1))
            .await
            .unwrap();
        assert!(jobs.iter().all(|job| job.account_id != alice), "{jobs:?}");
        assert!(jobs.iter().any(|job| job.account_id == bob), "{jobs:?}");

        // Its number stays in the inventory, ownerless, in quarantine until `until`.
        let carol = account(store, "carol").await;
        assert!(matches!(
            store.claim_number(carol, "+14155550001", now()).await,
            Err(StoreError::Conflict(Conflict::NumberTaken))
        ));
        store
            .claim_number(carol, "+14155550001", until + Duration::seconds(1))
            .await
            .unwrap();
        // The username and the e-mail address are free again.
        account(store, "alice").await;
    }

    async fn text(
        store: &SharedStore,
        to: AccountId,
        body: &str,
    ) -> airtext_api::messages::Message {
        let mut delivery = inbound(to, "+12065550111");
        delivery.recipient.as_mut().unwrap().body = body.to_owned();
        store.deliver(delivery).await.unwrap().recipient.unwrap()
    }

    fn words(query: &str) -> Vec<String> {
        airtext_gateway::store::rules::search_words(query)
    }

    async fn search_finds_the_accounts_messages_by_word_prefix(store: SharedStore) {
        let alice = account(&store, "alice").await;
        let bob = account(&store, "bob").await;
        let first = text(&store, alice, "Meeting at noon tomorrow").await;
        let second = text(&store, alice, "the MEETING moved; lunch instead?").await;
        let third = text(&store, alice, "Noon? noon!").await;
        let mut fillers = Vec::new();
        for i in 0..120 {
            fillers.push(text(&store, alice, &format!("filler message {i}")).await.id);
        }
        text(&store, bob, "bob's meeting at noon").await;
        // Newer matches of another account, more than a search looks at before it narrows to
        // the account's own entries.
        let mut tasks = Vec::new();
        for i in 0..600 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                text(&store, bob, &format!("filler from bob {i}")).await
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }

        let ids = |found: Vec<airtext_api::messages::Message>| -> Vec<MessageId> {
            found.into_iter().map(|m| m.id).collect()
        };
        let meet = store
            .search_messages(alice, &words("meet"), 50, None)
            .await
            .unwrap();
        assert_eq!(
            ids(meet),
            vec![second.id, first.id],
            "a prefix, any case, newest first, only alice's"
        );
        let both = store
            .search_messages(alice, &words("noon MEET"), 50, None)
            .await
            .unwrap();
        assert_eq!(ids(both), vec![first.id], "every word must match");
        let exact = store
            .search_messages(alice, &words("meet noon"), 50, None)
            .await
            .unwrap();
        assert!(
            exact.is_empty(),
            "only the last word is a prefix: {exact:?}"
        );
        let noon = store
            .search_messages(alice, &words("noon"), 50, None)
            .await
            .unwrap();
        assert_eq!(ids(noon), vec![third.id, first.id]);
        assert!(store
            .search_messages(alice, &words("nothing"), 50, None)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            ids(store
                .search_messages(bob, &words("meeting"), 50, None)
                .await
                .unwrap())
            .len(),
            1
        );

        // Pages, newest first, going on from the last of each.
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = store
                .search_messages(alice, &words("filler"), 50, before)
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            before = page.last().map(|m| m.id);
            seen.extend(ids(page));
        }
        fillers.reverse();
        assert_eq!(seen, fillers);

        // A deleted message is not found; an unknown or foreign `before` is NotFound.
        store.delete_message(alice, first.id, now()).await.unwrap();
        let meet = store
            .search_messages(alice, &words("meet"), 50, None)
            .await
            .unwrap();
        assert_eq!(ids(meet), vec![second.id]);
        assert!(matches!(
            store
                .search_messages(bob, &words("meet"), 50, Some(second.id))
                .await,
            Err(StoreError::NotFound)
        ));
    }
}

// ----- conversation state -----

/// A conversation's name, archive flag and mute: patched per account, logged as
/// `conversation.updated`, and un-archived by a new inbound text.
mod conversation_state {
    use super::*;
    use airtext_api::conversations::{muted_always, PatchConversation};

    conformance!(
        store: [
            a_patch_names_archives_and_mutes_for_the_account_only,
            an_inbound_text_unarchives_but_an_outbound_one_does_not,
        ],
        raw: []
    );

    async fn a_patch_names_archives_and_mutes_for_the_account_only(store: SharedStore) {
        let alice = account(&store, "alice").await;
        let bob = account(&store, "bob").await;
        let sent = store
            .deliver(in_network(alice, "@alice", bob, "@bob"))
            .await
            .unwrap()
            .sender
            .unwrap();
        let conversation = sent.conversation_id;
        let before = all_events(&store, alice).await;

        let patch = PatchConversation {
            name: Some(Some("Bob from work".into())),
            archived: Some(true),
            muted_until: Some(Some(muted_always())),
        };
        assert!(matches!(
            store
                .update_conversation(bob, conversation, patch.clone(), now())
                .await,
            Err(StoreError::NotFound)
        ));
        let updated = store
            .update_conversation(alice, conversation, patch, now())
            .await
            .unwrap();
        assert_eq!(updated.name.as_deref(), Some("Bob from work"));
        assert!(updated.archived);
        assert_eq!(updated.muted_until, Some(muted_always()));
        assert_eq!(updated.last_message.as_ref().map(|m| m.id), Some(sent.id));
        let stored = store.conversation(alice, conversation).await.unwrap();
        assert_eq!(stored.as_ref(), Some(&updated));
        let listed = store.conversations(alice, 50, None).await.unwrap();
        assert_eq!(listed, vec![updated.clone()]);

        let events = all_events(&store, alice).await;
        assert_eq!(events.len(), before.len() + 1);
        assert_eq!(
            events.last().map(|e| &e.kind),
            Some(&EventKind::ConversationUpdated {
                conversation: updated.clone()
            })
        );

        // An absent field stays; an empty name and a null mute clear.
        let cleared = store
            .update_conversation(
                alice,
                conversation,
                PatchConversation {
                    name: Some(Some(String::new())),
                    archived: None,
                    muted_until: Some(None),
                },
                now(),
            )
            .await
            .unwrap();
        assert_eq!(cleared.name, None);
        assert!(cleared.archived);
        assert_eq!(cleared.muted_until, None);

        // Bob's copy is his own.
        let bobs = store.conversations(bob, 50, None).await.unwrap();
        assert_eq!(bobs.len(), 1);
        assert_eq!(bobs[0].name, None);
        assert!(!bobs[0].archived);
        assert_eq!(bobs[0].muted_until, None);
    }

    async fn an_inbound_text_unarchives_but_an_outbound_one_does_not(store: SharedStore) {
        let alice = account(&store, "alice").await;
        let first = store
            .deliver(inbound(alice, "+12065550100"))
            .await
            .unwrap()
            .recipient
            .unwrap();
        let conversation = first.conversation_id;
        let archive = PatchConversation {
            archived: Some(true),
            ..PatchConversation::default()
        };
        store
            .update_conversation(alice, conversation, archive.clone(), now())
            .await
            .unwrap();

        let reply = store
            .deliver(carrier_send(alice, "+12065550100"))
            .await
            .unwrap()
            .sender
            .unwrap();
        assert_eq!(reply.conversation_id, conversation);
        let after_reply = store
            .conversation(alice, conversation)
            .await
            .unwrap()
            .unwrap();
        assert!(
            after_reply.archived,
            "the account's own reply keeps it archived"
        );

        let again = store
            .deliver(inbound(alice, "+12065550100"))
            .await
            .unwrap()
            .recipient
            .unwrap();
        assert_eq!(again.conversation_id, conversation);
        let after_inbound = store
            .conversation(alice, conversation)
            .await
            .unwrap()
            .unwrap();
        assert!(!after_inbound.archived, "a new inbound text un-archives it");
        assert_eq!(after_inbound.last_message.map(|m| m.id), Some(again.id));
    }
}
