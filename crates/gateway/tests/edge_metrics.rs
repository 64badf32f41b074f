//! `/metrics`: served on `metrics_listen` only, in Prometheus' text format, with requests by
//! route template and status, carrier sends, breakers, live streams, connections and store
//! commits, each moving when the gateway does the thing it counts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::*;

/// The value of the series whose line starts with `name{` and contains every label given
/// (or is exactly `name` when no labels are given); `None` when absent.
fn value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            let series = line.rsplit_once(' ').map(|(s, _)| s).unwrap_or("");
            if labels.is_empty() {
                series == name
            } else {
                series.starts_with(&format!("{name}{{"))
                    && labels.iter().all(|label| series.contains(label))
            }
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

async fn scrape(url: &str) -> String {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    response.text().await.unwrap()
}

#[tokio::test]
async fn metrics_appear_and_move() {
    let gw = TestGateway::start_with(|c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let metrics = format!(
        "http://{}/metrics",
        gw.gateway.as_ref().unwrap().metrics_addr.unwrap()
    );

    // Not on the API's listener.
    let (status, _) = gw.call(reqwest::Method::GET, "/metrics", None, None).await;
    assert_eq!(status, 404);

    let before = scrape(&metrics).await;
    let sign_ups = |text: &str| {
        value(
            text,
            "airtext_http_requests_total",
            &[
                r#"route="/v1/accounts""#,
                r#"status="201""#,
                r#"method="POST""#,
            ],
        )
        .unwrap_or(0.0)
    };
    let alice = gw.sign_up("alice").await;
    gw.sign_up("bob").await;
    gw.claim_number(&alice, "646").await;
    let stream = gw.stream(&alice).await;
    gw.send(&alice, "@bob", "in network").await;
    gw.send(&alice, "(202) 555-0143", "to an outside phone")
        .await;
    // A raw path clients choose never becomes a label.
    let (status, _) = gw
        .call(reqwest::Method::GET, "/v1/no-such-thing-7e1f", None, None)
        .await;
    assert_eq!(status, 404);

    let after = eventually(Duration::from_secs(30), || {
        let metrics = metrics.clone();
        async move {
            let text = scrape(&metrics).await;
            let sent = value(
                &text,
                "airtext_carrier_sends_total",
                &[r#"outcome="accepted""#],
            )?;
            let streams = value(&text, "airtext_websocket_streams", &[])?;
            (sent >= 1.0 && streams >= 1.0).then_some(text)
        }
    })
    .await;
    assert!(sign_ups(&after) >= sign_ups(&before) + 2.0, "{after}");
    assert!(
        value(
            &after,
            "airtext_http_request_duration_seconds_bucket",
            &[r#"route="/v1/messages""#, r#"le="+Inf""#]
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{after}"
    );
    assert!(
        value(
            &after,
            "airtext_http_requests_total",
            &[r#"route="unmatched""#, r#"status="404""#]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        !after.contains("no-such-thing"),
        "a raw path became a label"
    );
    assert!(value(&after, "airtext_connections_open", &[]).unwrap_or(0.0) >= 1.0);
    assert!(value(&after, "airtext_connections_accepted_total", &[]).unwrap_or(0.0) >= 1.0);
    assert!(
        value(
            &after,
            "airtext_store_commit_seconds_count",
            &[r#"engine="sqlite""#]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{after}"
    );
    assert!(
        value(
            &after,
            "airtext_outbound_finished_total",
            &[r#"outcome="sent""#]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{after}"
    );
    assert!(
        value(&after, "airtext_outbound_queue_jobs", &[]).is_some(),
        "{after}"
    );
    assert!(
        value(&after, "airtext_outbound_queue_oldest_seconds", &[]).is_some(),
        "{after}"
    );
    assert_eq!(
        value(&after, "airtext_carrier_breaker_open", &["carrier="]),
        Some(0.0),
        "{after}"
    );

    // The stream's end is counted.
    let streams = value(&after, "airtext_websocket_streams", &[]).unwrap_or(0.0);
    stream.close().await;
    eventually(Duration::from_secs(30), || {
        let metrics = metrics.clone();
        async move {
            let text = scrape(&metrics).await;
            (value(&text, "airtext_websocket_streams", &[])? < streams).then_some(())
        }
    })
    .await;
    gw.stop().await;
}
