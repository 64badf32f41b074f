//! Rate limits hold across gateway nodes on one PostgreSQL: the buckets are rows, so attempts
//! spread over several nodes draw from one bucket, concurrent checks never hand out more than
//! the burst, and refilled buckets are swept away.
//!
//! Runs only with `AIRTEXT_TEST_DATABASE_URL`; otherwise each test prints a loud `SKIPPED` line.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use airtext_gateway::config::{Config, Rate, RateLimits};
use airtext_gateway::error::ApiError;
use airtext_gateway::rate_limit::{RateKind, RateLimiter};
use common::*;
use serde_json::json;

fn limits(per_minute: u32, burst: u32) -> RateLimits {
    RateLimits::uniform(Rate { per_minute, burst })
}

/// Opens the store once so its migrations create `rate_buckets`, then a shared limiter.
async fn shared_limiter(url: &str, limits: RateLimits) -> RateLimiter {
    let store = airtext_gateway::store::open(url).await.unwrap();
    store.close().await;
    let limiter = RateLimiter::for_database(url, limits).await.unwrap();
    assert!(matches!(limiter, RateLimiter::Shared(_)));
    limiter
}

#[tokio::test]
async fn sign_in_attempts_spread_over_two_nodes_share_one_budget() {
    let Some(pg) = postgres_schema("sign_in_attempts_spread_over_two_nodes_share_one_budget").await
    else {
        return;
    };
    let adjust = |c: &mut Config| {
        c.database_url = pg.url.clone();
        c.rate_limits.sign_in = Rate {
            per_minute: 1,
            burst: 4,
        };
    };
    let node1 = TestGateway::start_with(adjust).await;
    let node2 = TestGateway::start_with(adjust).await;
    let (status, body) = node1
        .post(
            "/v1/accounts",
            None,
            json!({"username": "alice", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // A guesser alternating between the nodes: per-process buckets would allow 4 on each.
    let mut answers = Vec::new();
    for attempt in 0..8 {
        let node = if attempt % 2 == 0 { &node1 } else { &node2 };
        let response = node
            .http
            .post(format!("{}/v1/sessions", node.url))
            .json(&json!({"username": "alice", "password": "wrong guess", "device_name": "x"}))
            .send()
            .await
            .unwrap();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        answers.push((response.status().as_u16(), retry_after));
    }
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        statuses,
        [401, 401, 401, 401, 429, 429, 429, 429],
        "{answers:?}"
    );
    // One token a minute: the wait is (up to) a minute, whichever node answers.
    for (_, retry_after) in &answers[4..] {
        let secs: u64 = retry_after.as_deref().unwrap().parse().unwrap();
        assert!((1..=60).contains(&secs), "Retry-After {secs}");
    }

    node1.stop().await;
    node2.stop().await;
    pg.drop_schema().await;
}

#[tokio::test]
async fn concurrent_checks_from_two_nodes_never_exceed_the_burst() {
    let Some(pg) = postgres_schema("concurrent_checks_from_two_nodes_never_exceed_the_burst").await
    else {
        return;
    };
    let node1 = std::sync::Arc::new(shared_limiter(&pg.url, limits(1, 10)).await);
    let node2 = std::sync::Arc::new(
        RateLimiter::for_database(&pg.url, limits(1, 10))
            .await
            .unwrap(),
    );
    let mut checks = tokio::task::JoinSet::new();
    for i in 0..60 {
        let limiter = if i % 2 == 0 {
            node1.clone()
        } else {
            node2.clone()
        };
        checks.spawn(async move { limiter.check(RateKind::Send, "account-1").await });
    }
    let mut granted = 0;
    let mut refused = 0;
    while let Some(result) = checks.join_next().await {
        match result.unwrap() {
            Ok(()) => granted += 1,
            Err(ApiError::RateLimited { retry_after }) => {
                refused += 1;
                assert!(retry_after >= Duration::from_secs(1), "{retry_after:?}");
                assert!(retry_after <= Duration::from_secs(60), "{retry_after:?}");
            }
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    // One token a minute refills well under one token during the test.
    assert_eq!((granted, refused), (10, 50));
    // A key of kilobytes (what a client typed) is limited like any other, never a 500.
    // (varied, so PostgreSQL cannot compress it below its index-entry limit).
    let huge: String = (0..4_000u32)
        .map(|i| format!("{:x}", i.wrapping_mul(2_654_435_761)))
        .collect();
    node1.check(RateKind::SignIn, &huge).await.unwrap();
    node2.check(RateKind::SignIn, &huge).await.unwrap();
    // Other keys and kinds have their own buckets.
    node2.check(RateKind::Send, "account-2").await.unwrap();
    node1.check(RateKind::SignIn, "account-1").await.unwrap();

    node1.close().await;
    node2.close().await;
    pg.drop_schema().await;
}

#[tokio::test]
async fn refusals_take_nothing_and_the_bucket_refills_at_the_rate() {
    let Some(pg) =
        postgres_schema("refusals_take_nothing_and_the_bucket_refills_at_the_rate").await
    else {
        return;
    };
    // One token a minute, a burst of 2: no token can come back while the test runs, however
    // slow the machine; the refill is shown by moving the bucket's clock instead.
    let limiter = shared_limiter(&pg.url, limits(1, 2)).await;
    limiter.check(RateKind::Lookup, "k").await.unwrap();
    limiter.check(RateKind::Lookup, "k").await.unwrap();
    match limiter.check(RateKind::Lookup, "k").await {
        Err(ApiError::RateLimited { retry_after }) => {
            assert!(
                (Duration::from_secs(59)..=Duration::from_secs(60)).contains(&retry_after),
                "a whole minute for the next token, in whole seconds: {retry_after:?}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Knocking while empty does not dig the bucket deeper: once the time one token takes has
    // passed (the bucket's last refill moved back 61 s: the database's clock is the only one
    // a bucket reads), exactly one more is granted, and the next is refused again.
    for _ in 0..5 {
        assert!(limiter.check(RateKind::Lookup, "k").await.is_err());
    }
    let moved = pg
        .exec_base(&format!(
            "UPDATE {}.rate_buckets SET updated_at = updated_at - interval '61 seconds' \
             WHERE kind = '{}' AND key = 'k'",
            pg.schema,
            RateKind::Lookup.as_str()
        ))
        .await;
    assert_eq!(moved, 1);
    limiter.check(RateKind::Lookup, "k").await.unwrap();
    assert!(
        limiter.check(RateKind::Lookup, "k").await.is_err(),
        "one token came back, not more"
    );

    limiter.close().await;
    pg.drop_schema().await;
}

#[tokio::test]
async fn refilled_buckets_are_swept() {
    let Some(pg) = postgres_schema("refilled_buckets_are_swept").await else {
        return;
    };
    // 6,000 a minute: a bucket of 1 refills in 10 ms.
    let limiter = shared_limiter(&pg.url, limits(6_000, 1)).await;
    for key in ["a", "b", "c"] {
        limiter.check(RateKind::SignUp, key).await.unwrap();
    }
    // A slow bucket that is not full yet must stay.
    let slow = RateLimiter::for_database(&pg.url, limits(1, 5))
        .await
        .unwrap();
    slow.check(RateKind::SignIn, "slow").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(limiter.sweep().await.unwrap(), 3);
    assert_eq!(limiter.sweep().await.unwrap(), 0);
    // The slow bucket is still there: its four remaining tokens are all it has.
    for _ in 0..4 {
        slow.check(RateKind::SignIn, "slow").await.unwrap();
    }
    assert!(slow.check(RateKind::SignIn, "slow").await.is_err());

    limiter.close().await;
    slow.close().await;
    pg.drop_schema().await;
}

#[tokio::test]
async fn sqlite_gateways_keep_their_buckets_in_memory() {
    let limiter = RateLimiter::for_database("sqlite://whatever.db", limits(1, 1))
        .await
        .unwrap();
    assert!(matches!(limiter, RateLimiter::Local(_)));
    limiter.check(RateKind::Send, "k").await.unwrap();
    assert!(limiter.check(RateKind::Send, "k").await.is_err());
}
