//! The Twilio carrier against peers this project did not write:
//!
//! 1. Twilio's official OpenAPI description (`vendor/twilio/twilio_api_v2010.json`) served
//!    by `@stoplight/prism-cli`, which validates every request against the spec: our sends
//!    must pass, and the spec's example replies must parse.
//! 2. A fake Twilio (axum, in this test) that answers with Twilio's error shapes, to drive the
//!    error classification (429, 5xx, 400 with codes, auth failures, timeouts, no sid).
//! 3. Webhook signatures checked against the official `twilio` Python package's
//!    `RequestValidator` (through `tests/twilio/signatures.py`): its signatures are accepted,
//!    tampered ones refused, and our computation equals its own.
//! 4. The whole gateway with a `kind = "twilio"` carrier pointed at the fake: a text goes out
//!    through it, signed status callbacks move it to delivered (or failed), and a signed
//!    inbound webhook becomes a text for the number's owner.
//! 5. Numbers bought from Twilio (`provision = true`): searched, bought and given back through
//!    prism (a recorder in front of it shows the form sent, `SmsUrl` and `StatusCallback`),
//!    and Twilio's failures (a fake) leaving nothing claimed.
//!
//! Parts 1 and 3 need prism and the `twilio` package; without them they print "SKIPPED …" and
//! pass, unless `AIRTEXT_TEST_REQUIRE_TWILIO_TOOLS=1` makes a missing tool a failure.
//! Prism is looked for at `$AIRTEXT_PRISM`, then `~/.cache/airtext/prism/node_modules/.bin/prism`
//! (`npm install --prefix ~/.cache/airtext/prism @stoplight/prism-cli@5`), then on `PATH`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airtext_gateway::carriers::config::TwilioCarrierConfig;
use airtext_gateway::carriers::reports::report_channel;
use airtext_gateway::carriers::twilio::{
    compute_signature, TwilioCarrier, TwilioTuning, EMPTY_TWIML,
};
use airtext_gateway::carriers::{Carrier, CarrierError, CarrierReport, OutboundSms, ReceiptStatus};
use airtext_gateway::config::Config;
use airtext_gateway::{Gateway, RunningGateway};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const SERVICE_SID: &str = "MG0123456789abcdef0123456789abcdef";
const TOKEN: &str = "12345678901234567890123456789012";
const OUR_NUMBER: &str = "+14155550100";
const OUTSIDE: &str = "+12025550143";
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Tools this test borrows (prism, python's twilio package)
// ---------------------------------------------------------------------------------------------

/// Skips the calling test loudly, or fails it when the tools are required.
fn skip(what: &str) {
    if std::env::var("AIRTEXT_TEST_REQUIRE_TWILIO_TOOLS").is_ok_and(|v| v == "1") {
        panic!("required tool missing: {what}");
    }
    // Straight to stderr: the test harness captures eprintln! of passing tests.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED (twilio_carrier): {what}");
}

fn spec_path() -> PathBuf {
    std::env::var_os("AIRTEXT_TWILIO_SPEC").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../vendor/twilio/twilio_api_v2010.json")
        },
        PathBuf::from,
    )
}

fn prism_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("AIRTEXT_PRISM") {
        return Some(PathBuf::from(path));
    }
    if let Some(home) = std::env::var_os("HOME") {
        let path = PathBuf::from(home).join(".cache/airtext/prism/node_modules/.bin/prism");
        if path.exists() {
            return Some(path);
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("prism"))
            .find(|p| p.exists())
    })
}

/// A running prism mock of the spec; killed on drop.
struct Prism {
    url: String,
    _child: tokio::process::Child,
}

async fn start_prism() -> Option<Prism> {
    let Some(prism) = prism_path() else {
        skip("prism not found: npm install --prefix ~/.cache/airtext/prism @stoplight/prism-cli@5");
        return None;
    };
    let spec = spec_path();
    if !spec.exists() {
        skip(&format!(
            "the Twilio OpenAPI spec is not at {}",
            spec.display()
        ));
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(&prism)
        .args(["mock", "-h", "127.0.0.1", "-p", &port.to_string()])
        .arg(&spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", prism.display()));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Loading the 1.8 MB spec takes a few seconds; prism says when it listens.
    let listening = tokio::time::timeout(Duration::from_secs(120), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("Prism is listening") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(listening, Ok(true)),
        "prism did not start listening"
    );
    // Keep draining its log (a full pipe would stall it); violations show in the test output.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("violation") || line.contains("rror") {
                // The malformed-AccountSid control below shows violations on purpose.
                eprintln!("prism: {line}");
            }
        }
    });
    Some(Prism {
        url: format!("http://127.0.0.1:{port}"),
        _child: child,
    })
}

/// Signatures (and validations) by the `twilio` package's RequestValidator. `None`: skipped.
struct PyCase {
    url: String,
    params: Vec<(String, String)>,
    signature: Option<String>,
}

fn python_validator(token: &str, cases: &[PyCase]) -> Option<Vec<(String, Option<bool>)>> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/twilio/signatures.py");
    let request = json!({
        "token": token,
        "cases": cases.iter().map(|c| {
            let mut case = json!({"url": c.url, "params": c.params});
            if let Some(signature) = &c.signature {
                case["signature"] = json!(signature);
            }
            case
        }).collect::<Vec<_>>(),
    });
    let child = std::process::Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            skip(&format!(
                "python3 cannot run ({e}): install python3 and `pip install twilio`"
            ));
            return None;
        }
    };
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(request.to_string().as_bytes()).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    if output.status.code() == Some(3) {
        skip("the `twilio` Python package is missing: pip install twilio");
        return None;
    }
    assert!(
        output.status.success(),
        "signatures.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reply: Value = serde_json::from_slice(&output.stdout).unwrap();
    eprintln!("(signatures by the twilio package {})", reply["twilio"]);
    Some(
        reply["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["signature"].as_str().unwrap().to_owned(),
                    r["valid"].as_bool(),
                )
            })
            .collect(),
    )
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A fake Twilio
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    form: Vec<(String, String)>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Answers `Messages.json` by the text's `Body`:
/// - `status:429`, `status:500`, `status:503`, `status:401`: that status with Twilio's body;
/// - `code:NNNNN`: 400 with Twilio error NNNNN;
/// - `slow`: answers after 3 s;
/// - `no-sid`: 201 without a sid;
/// - `failed-at-once`: 201 with `status: failed`, `error_code: 30006`;
/// - anything else: 201 `queued`, then (when a `StatusCallback` came) signed callbacks `sent`
///   and `delivered`, or `sent` and `undelivered` (30003) when the body says "undeliverable".
#[derive(Clone)]
struct FakeTwilio {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    http: reqwest::Client,
}

impl FakeTwilio {
    async fn start() -> FakeTwilio {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeTwilio {
            url: format!("http://{}", listener.local_addr().unwrap()),
            seen: Arc::default(),
            http: reqwest::Client::new(),
        };
        let app = axum::Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                axum::routing::post(fake_messages),
            )
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    async fn wait_for(&self, body: &str) -> Seen {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(seen) = self
                .seen()
                .into_iter()
                .find(|s| s.field("Body") == Some(body))
            {
                return seen;
            }
            assert!(Instant::now() < deadline, "Twilio never got {body:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Posts a status callback the way Twilio does: form-encoded, signed.
    async fn callback(&self, url: &str, params: &[(String, String)]) -> u16 {
        self.http
            .post(url)
            .header("X-Twilio-Signature", compute_signature(TOKEN, url, params))
            .form(params)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        })),
    )
        .into_response()
}

async fn fake_messages(
    State(fake): State<FakeTwilio>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let seen = Seen {
        path: uri.path().to_owned(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        form,
    };
    fake.seen.lock().unwrap().push(seen.clone());
    let text = seen.field("Body").unwrap_or_default().to_owned();
    if let Some(code) = text.strip_prefix("code:") {
        let code: u32 = code.parse().unwrap();
        return twilio_error(
            StatusCode::BAD_REQUEST,
            code,
            &format!("Twilio says no ({code})"),
        );
    }
    match text.as_str() {
        "status:429" => {
            return twilio_error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests")
        }
        "status:500" => return (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
        "status:503" => {
            return twilio_error(
                StatusCode::SERVICE_UNAVAILABLE,
                20503,
                "Service unavailable",
            )
        }
        "status:401" => return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate"),
        // Never answers: the client's timeout decides, whatever the machine's speed.
        "slow" => std::future::pending::<()>().await,
        "no-sid" => {
            return (StatusCode::CREATED, axum::Json(json!({"status": "queued"}))).into_response()
        }
        _ => {}
    }
    let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    if text == "failed-at-once" {
        return (
            StatusCode::CREATED,
            axum::Json(
                json!({"sid": sid, "status": "failed", "error_code": 30006, "error_message": null}),
            ),
        )
            .into_response();
    }
    if let Some(callback) = seen.field("StatusCallback").map(str::to_owned) {
        let fake = fake.clone();
        let sid = sid.clone();
        let undeliverable = text.contains("undeliverable");
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let status = |s: &str| {
                pairs(&[
                    ("AccountSid", ACCOUNT_SID),
                    ("From", OUR_NUMBER),
                    ("MessageSid", &sid),
                    ("SmsSid", &sid),
                    ("MessageStatus", s),
                    ("SmsStatus", s),
                    ("ApiVersion", "2010-04-01"),
                ])
            };
            assert_eq!(fake.callback(&callback, &status("sent")).await, 200);
            let mut last = status(if undeliverable {
                "undelivered"
            } else {
                "delivered"
            });
            if undeliverable {
                last.push(("ErrorCode".into(), "30003".into()));
            }
            assert_eq!(fake.callback(&callback, &last).await, 200);
        });
    }
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "account_sid": ACCOUNT_SID,
            "api_version": "2010-04-01",
            "body": text,
            "direction": "outbound-api",
            "error_code": null,
            "error_message": null,
            "from": seen.field("From"),
            "to": seen.field("To"),
            "num_segments": "1",
            "sid": sid,
            "status": "queued",
        })),
    )
        .into_response()
}

fn twilio_config(base_url: &str) -> TwilioCarrierConfig {
    TwilioCarrierConfig {
        name: "tw".into(),
        base_url: base_url.into(),
        account_sid: ACCOUNT_SID.into(),
        auth_token: Some(TOKEN.into()),
        messaging_service_sid: None,
        max_per_second: None,
        any_sender: false,
        numbers: vec![OUR_NUMBER.into()],
        rates: Vec::new(),
        provision: false,
    }
}

fn sms(to: &str, body: &str) -> OutboundSms {
    OutboundSms {
        account: None,
        from: OUR_NUMBER.into(),
        to: to.into(),
        body: body.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The official OpenAPI spec, through prism
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_are_valid_under_twilios_official_openapi_spec() {
    let Some(prism) = start_prism().await else {
        return;
    };
    let (tx, _rx) = report_channel(16);
    let variants = [
        (
            "with a status callback",
            Some("https://sms.example.org"),
            None,
        ),
        ("without a public URL", None, None),
        (
            "through a Messaging Service",
            Some("https://sms.example.org/"),
            Some(SERVICE_SID),
        ),
    ];
    for (what, public_url, service) in variants {
        let mut config = twilio_config(&prism.url);
        config.messaging_service_sid = service.map(str::to_owned);
        let carrier = TwilioCarrier::new(config, public_url, tx.clone()).unwrap();
        for body in [
            "Hello from Airtext",
            "Ünïcödé 👍 and a long one: ".repeat(20).as_str(),
        ] {
            let accepted = carrier
                .send(sms("+15005550006", body))
                .await
                .unwrap_or_else(|e| panic!("{what}: prism refused the send: {e}"));
            // The spec's example reply parses: its sid is a message sid.
            let id = accepted.carrier_message_id;
            assert!(id.starts_with("SM") && id.len() == 34, "{what}: sid {id:?}");
        }
    }

    // The mock does validate: what the spec forbids is refused, and we see that as a failure.
    let mut config = twilio_config(&prism.url);
    config.account_sid = "ACnot-a-real-account".into();
    let carrier = TwilioCarrier::new(config, Some("https://sms.example.org"), tx).unwrap();
    match carrier.send(sms("+15005550006", "x")).await {
        Err(CarrierError::Retryable(reason)) => assert!(reason.contains("422"), "{reason}"),
        other => panic!("prism should refuse a malformed AccountSid: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Error classification against a fake Twilio
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_is_twilios_shape() {
    let fake = FakeTwilio::start().await;
    let (tx, _rx) = report_channel(16);
    let mut config = twilio_config(&fake.url);
    config.messaging_service_sid = Some(SERVICE_SID.into());
    let carrier = TwilioCarrier::new(config, Some("https://sms.example.org/base/"), tx).unwrap();
    assert_eq!(carrier.name(), "tw");
    let inventory = carrier.inventory();
    assert_eq!(inventory.len(), 1);
    assert_eq!(inventory[0].number, OUR_NUMBER);
    assert_eq!(inventory[0].carrier, "tw");
    assert_eq!(inventory[0].country, "US");

    let body = "héllo & goodbye = +1 ✓";
    let accepted = carrier.send(sms(OUTSIDE, body)).await.unwrap();
    let seen = fake.wait_for(body).await;
    assert_eq!(
        seen.path,
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{TOKEN}"));
    assert_eq!(seen.authorization, Some(format!("Basic {basic}")));
    assert_eq!(
        seen.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(seen.field("To"), Some(OUTSIDE));
    assert_eq!(seen.field("From"), Some(OUR_NUMBER));
    assert_eq!(seen.field("Body"), Some(body));
    assert_eq!(seen.field("MessagingServiceSid"), Some(SERVICE_SID));
    assert_eq!(
        seen.field("StatusCallback"),
        Some("https://sms.example.org/base/v1/carriers/tw/status")
    );
    assert!(accepted.carrier_message_id.starts_with("SM"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilios_errors_are_classified() {
    let fake = FakeTwilio::start().await;
    let (tx, mut rx) = report_channel(16);
    let carrier = TwilioCarrier::with_tuning(
        twilio_config(&fake.url),
        None,
        tx.clone(),
        // Long enough that no answer of the fake is late on a loaded machine; the slow case
        // never answers, so it times out whatever the timeout.
        TwilioTuning {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
        },
    )
    .unwrap();

    let retryable = [
        ("status:429", "20429"),
        ("status:500", "HTTP 500"),
        ("status:503", "20503"),
        ("status:401", "20003"),
        ("code:21606", "21606"), // our From is not a Twilio number: another carrier may send it
        ("code:21609", "21609"), // our public_url makes a bad StatusCallback: fix and retry
        ("slow", "timed out"),
        ("no-sid", "without a message sid"),
    ];
    for (body, words) in retryable {
        match carrier.send(sms(OUTSIDE, body)).await {
            Err(CarrierError::Retryable(reason)) => {
                assert!(reason.contains(words), "{body}: {reason}")
            }
            other => panic!("{body}: expected a retryable failure, got {other:?}"),
        }
    }
    for code in ["21211", "21614", "21610", "21408", "21612"] {
        match carrier.send(sms(OUTSIDE, &format!("code:{code}"))).await {
            Err(CarrierError::Permanent(reason)) => {
                assert!(reason.contains(code), "{code}: {reason}");
                assert!(reason.contains("Twilio says no"), "{code}: {reason}");
            }
            other => panic!("{code}: expected a permanent failure, got {other:?}"),
        }
    }

    // Accepted but failed in the same breath: the id, and a failed receipt for it.
    let accepted = carrier.send(sms(OUTSIDE, "failed-at-once")).await.unwrap();
    match rx.recv().await.unwrap().report {
        CarrierReport::Receipt {
            carrier,
            carrier_message_id,
            status,
            reason,
        } => {
            assert_eq!(carrier, "tw");
            assert_eq!(carrier_message_id, accepted.carrier_message_id);
            assert_eq!(status, ReceiptStatus::Failed);
            assert!(reason.unwrap().contains("30006"));
        }
        other => panic!("{other:?}"),
    }

    // Nobody listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let carrier = TwilioCarrier::new(twilio_config(&url), None, tx).unwrap();
    match carrier.send(sms(OUTSIDE, "x")).await {
        Err(CarrierError::Retryable(reason)) => assert!(reason.contains("connect"), "{reason}"),
        other => panic!("expected a retryable failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_keep_to_max_per_second_and_the_token_may_come_from_the_environment() {
    let fake = FakeTwilio::start().await;
    let (tx, _rx) = report_channel(16);
    let mut config = twilio_config(&fake.url);
    config.name = "tw-env".into();
    config.auth_token = None;
    config.max_per_second = Some(20);
    let error = TwilioCarrier::new(config.clone(), None, tx.clone())
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(
        error.contains("AIRTEXT_CARRIER_TW_ENV_AUTH_TOKEN"),
        "{error}"
    );
    std::env::set_var("AIRTEXT_CARRIER_TW_ENV_AUTH_TOKEN", TOKEN);
    // Settings Twilio would refuse on every send stop start-up instead, naming the key.
    for (public_url, service, key) in [
        (Some("sms.example.org"), None, "public_url"),
        (None, Some("AC0123"), "messaging_service_sid"),
    ] {
        let mut config = config.clone();
        config.messaging_service_sid = service.map(str::to_owned);
        let error = TwilioCarrier::new(config, public_url, tx.clone())
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(error.contains(key), "{error}");
    }
    let carrier = Arc::new(TwilioCarrier::new(config, None, tx).unwrap());

    let started = Instant::now();
    let sends: Vec<_> = (0..6)
        .map(|i| {
            let carrier = carrier.clone();
            tokio::spawn(async move { carrier.send(sms(OUTSIDE, &format!("paced {i}"))).await })
        })
        .collect();
    for send in sends {
        send.await.unwrap().unwrap();
    }
    // 20 per second: six sends are spread over at least 5 × 50 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(240),
        "{:?}",
        started.elapsed()
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{TOKEN}"));
    assert!(fake
        .seen()
        .iter()
        .all(|s| s.authorization == Some(format!("Basic {basic}"))));
}

// ---------------------------------------------------------------------------------------------
// A gateway in-process, with Twilio carriers
// ---------------------------------------------------------------------------------------------

struct Gw {
    running: Option<RunningGateway>,
    url: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Gw {
    /// `config` gets the gateway's own URL and returns the TOML beyond `listen` and the database.
    async fn start(config: impl FnOnce(&str) -> String) -> Gw {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let toml = format!(
            "listen = \"{addr}\"\ndatabase_url = \"sqlite://{}\"\n{}",
            dir.path().join("gateway.db").display(),
            config(&url)
        );
        let config = Config::from_toml(&toml).unwrap_or_else(|e| panic!("{e:#}\n{toml}"));
        let running = Gateway::start_on(config, listener).await.unwrap();
        Gw {
            running: Some(running),
            url,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await.unwrap();
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Signs up and signs in; returns the device token.
    async fn sign_up(&self, username: &str) -> String {
        let password = "correct horse battery";
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/v1/accounts",
                None,
                Some(json!({"username": username, "password": password})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/v1/sessions",
                None,
                Some(json!({"username": username, "password": password, "device_name": "phone"})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    async fn events(&self, token: &str) -> Vec<Value> {
        let (status, page) = self
            .call(
                reqwest::Method::GET,
                "/v1/sync?after=0&limit=1000",
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        page["events"].as_array().unwrap().clone()
    }

    async fn message(&self, token: &str, sent: &Value) -> Value {
        let path = format!(
            "/v1/conversations/{}/messages?limit=200",
            sent["conversation_id"].as_str().unwrap()
        );
        let (status, page) = self
            .call(reqwest::Method::GET, &path, Some(token), None)
            .await;
        assert_eq!(status, 200, "{page}");
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == sent["id"])
            .cloned()
            .unwrap()
    }

    async fn wait_for_status(&self, token: &str, sent: &Value, status: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let message = self.message(token, sent).await;
            if message["status"] == status {
                return message;
            }
            assert!(Instant::now() < deadline, "never {status}: {message}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Posts a webhook form; returns status, content type and body.
    async fn webhook(
        &self,
        path: &str,
        params: &[(String, String)],
        signature: Option<&str>,
    ) -> (u16, String, String) {
        let mut request = self.http.post(format!("{}{path}", self.url)).form(params);
        if let Some(signature) = signature {
            request = request.header("X-Twilio-Signature", signature);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (status, content_type, response.text().await.unwrap())
    }
}

/// A Twilio carrier `tw` pointed at `base_url`, and (with `simulator`) a simulator carrier
/// `sim` (not Twilio: its webhooks are 404).
fn twilio_toml(base_url: &str, simulator: bool) -> String {
    let mut toml = format!(
        r#"
[[carriers]]
name = "tw"
kind = "twilio"
base_url = "{base_url}"
account_sid = "{ACCOUNT_SID}"
auth_token = "{TOKEN}"
numbers = ["{OUR_NUMBER}"]
rates = [ {{ prefix = "+", cost_per_segment = 0.0079 }} ]
"#
    );
    if simulator {
        toml.push_str("[[carriers]]\nname = \"sim\"\nkind = \"simulator\"\n");
    }
    toml
}

// ---------------------------------------------------------------------------------------------
// 3. Webhook signatures, against the official `twilio` package
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_signatures_are_the_twilio_packages() {
    let cases: Vec<PyCase> = [
        (
            "https://sms.example.org/v1/carriers/tw/inbound",
            pairs(&[
                ("From", "+12025550143"),
                ("To", OUR_NUMBER),
                ("Body", "hello"),
            ]),
        ),
        // Repeated names, values out of order, a repeated value.
        (
            "https://sms.example.org/v1/carriers/tw/status?x=1&x=2",
            pairs(&[
                ("b", "2"),
                ("a", "z"),
                ("a", "y"),
                ("a", "z"),
                ("A", "upper"),
            ]),
        ),
        // Unicode in names, values and the URL; an empty value; plus signs and spaces.
        (
            "https://sms.example.org:8443/v1/carriers/tw/inbound?q=caf%C3%A9",
            pairs(&[
                ("Body", "Grüße 👍 你好 + and = & ?"),
                ("é", "ü"),
                ("Empty", ""),
                ("Z", "last"),
                (
                    "MediaUrl0",
                    "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
                ),
            ]),
        ),
        ("http://127.0.0.1:8080/v1/carriers/tw/status", Vec::new()),
    ]
    .into_iter()
    .map(|(url, params)| PyCase {
        signature: Some(compute_signature(TOKEN, url, &params)),
        url: url.to_owned(),
        params,
    })
    .collect();
    let Some(python) = python_validator(TOKEN, &cases) else {
        return;
    };
    for (case, (theirs, valid)) in cases.iter().zip(python) {
        assert_eq!(
            case.signature.as_deref(),
            Some(theirs.as_str()),
            "{} {:?}",
            case.url,
            case.params
        );
        assert_eq!(
            valid,
            Some(true),
            "RequestValidator.validate refused ours: {}",
            case.url
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_take_only_what_twilio_signed() {
    let fake = FakeTwilio::start().await;
    let public = "https://sms.example.org";
    let gw = Gw::start(|_| {
        format!(
            "public_url = \"{public}\"\n{}",
            twilio_toml(&fake.url, true)
        )
    })
    .await;
    let inbound = "/v1/carriers/tw/inbound";
    let status = "/v1/carriers/tw/status";
    let inbound_form = pairs(&[
        ("AccountSid", ACCOUNT_SID),
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("From", OUTSIDE),
        ("To", OUR_NUMBER),
        ("Body", "Hi there 👋"),
        ("NumSegments", "1"),
        ("NumMedia", "0"),
    ]);
    let status_form = pairs(&[
        ("MessageSid", "SM00000000000000000000000000000000"),
        ("MessageStatus", "delivered"),
    ]);
    let mut tampered = inbound_form.clone();
    tampered[4].1 = "Hi there, send money".into();
    let mut no_from = inbound_form.clone();
    no_from.remove(2);
    let mut twice = status_form.clone();
    twice.push((
        "MessageSid".into(),
        "SM11111111111111111111111111111111".into(),
    ));

    // What the official validator signs, for the URL Twilio would call.
    let sign = |url: &str, params: &[(String, String)]| PyCase {
        url: url.to_owned(),
        params: params.to_vec(),
        signature: None,
    };
    let cases = [
        sign(&format!("{public}{inbound}"), &inbound_form),
        sign(&format!("{public}:443{inbound}"), &inbound_form), // Twilio sometimes adds the port
        sign(&format!("{public}{status}"), &status_form),
        sign(&format!("{public}{status}?attempt=2"), &status_form),
        sign(&format!("{public}{inbound}"), &no_from),
        sign(&format!("{public}{status}"), &twice),
    ];
    let Some(signed) = python_validator(TOKEN, &cases) else {
        gw.stop().await;
        return;
    };
    let sig = |i: usize| Some(signed[i].0.clone());
    let other_token = python_validator("another account's token", &cases[..1]).unwrap();

    let empty = |(status, content_type, body): (u16, String, String)| {
        assert_eq!(status, 200, "{body}");
        assert!(content_type.starts_with("text/xml"), "{content_type}");
        assert_eq!(body, EMPTY_TWIML);
    };
    empty(gw.webhook(inbound, &inbound_form, sig(0).as_deref()).await);
    empty(gw.webhook(inbound, &inbound_form, sig(1).as_deref()).await);
    empty(gw.webhook(status, &status_form, sig(2).as_deref()).await);
    empty(
        gw.webhook(
            &format!("{status}?attempt=2"),
            &status_form,
            sig(3).as_deref(),
        )
        .await,
    );

    let refused = |(status, _, body): (u16, String, String), expected: u16, code: &str| {
        assert_eq!(status, expected, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["code"], code, "{body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    };
    // Tampered parameters, another URL, another token, no signature, garbage signature.
    refused(
        gw.webhook(inbound, &tampered, sig(0).as_deref()).await,
        403,
        "unauthorized",
    );
    refused(
        gw.webhook(status, &inbound_form, sig(0).as_deref()).await,
        403,
        "unauthorized",
    );
    refused(
        gw.webhook(
            &format!("{status}?attempt=3"),
            &status_form,
            sig(3).as_deref(),
        )
        .await,
        403,
        "unauthorized",
    );
    refused(
        gw.webhook(inbound, &inbound_form, Some(&other_token[0].0))
            .await,
        403,
        "unauthorized",
    );
    refused(
        gw.webhook(inbound, &inbound_form, None).await,
        403,
        "unauthorized",
    );
    refused(
        gw.webhook(inbound, &inbound_form, Some("not base64 !!"))
            .await,
        403,
        "unauthorized",
    );
    // Signed, but not a webhook this endpoint can use: 400, never 500.
    refused(
        gw.webhook(inbound, &no_from, sig(4).as_deref()).await,
        400,
        "bad_request",
    );
    refused(
        gw.webhook(status, &twice, sig(5).as_deref()).await,
        400,
        "bad_request",
    );
    // Unknown carrier, and a carrier that is not Twilio.
    refused(
        gw.webhook(
            "/v1/carriers/nope/inbound",
            &inbound_form,
            sig(0).as_deref(),
        )
        .await,
        404,
        "not_found",
    );
    refused(
        gw.webhook("/v1/carriers/sim/status", &status_form, sig(2).as_deref())
            .await,
        404,
        "not_found",
    );
    // Not a form.
    let response = gw
        .http
        .post(format!("{}{inbound}", gw.url))
        .header("X-Twilio-Signature", sig(0).unwrap())
        .json(&json!({"From": OUTSIDE}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);

    // The webhooks are in the OpenAPI document, without a device token.
    let (code, doc) = gw
        .call(reqwest::Method::GET, "/v1/openapi.json", None, None)
        .await;
    assert_eq!(code, 200);
    for path in ["/v1/carriers/{name}/inbound", "/v1/carriers/{name}/status"] {
        let op = &doc["paths"][path]["post"];
        assert!(op.is_object(), "{path} is not documented");
        assert!(op["security"].is_null(), "{path} documents a device token");
        assert!(op["responses"]["403"].is_object());
    }
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 4. End to end: the gateway sends through Twilio, Twilio calls back
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_go_out_through_twilio_and_come_back_through_its_webhooks() {
    let fake = FakeTwilio::start().await;
    let gw =
        Gw::start(|own| format!("public_url = \"{own}\"\n{}", twilio_toml(&fake.url, false))).await;
    let alice = gw.sign_up("alice").await;
    let (status, found) = gw
        .call(
            reqwest::Method::GET,
            "/v1/numbers/available?country=US&area_code=415&limit=5",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(
        found["numbers"],
        json!([OUR_NUMBER]),
        "Twilio's number is for sale"
    );
    let (status, claimed) = gw
        .call(
            reqwest::Method::POST,
            "/v1/numbers",
            Some(&alice),
            Some(json!({"number": OUR_NUMBER})),
        )
        .await;
    assert_eq!(status, 201, "{claimed}");

    let send = |to: &'static str, body: &'static str| {
        let gw = &gw;
        let alice = alice.clone();
        async move {
            let (status, sent) = gw
                .call(
                    reqwest::Method::POST,
                    "/v1/messages",
                    Some(&alice),
                    Some(json!({"to": to, "body": body, "client_id": uuid::Uuid::new_v4()})),
                )
                .await;
            assert_eq!(status, 201, "{sent}");
            assert_eq!(sent["route"], "carrier");
            sent
        }
    };

    // Out through Twilio; the signed status callbacks bring it to delivered.
    let sent = send(OUTSIDE, "hello through Twilio").await;
    let seen = fake.wait_for("hello through Twilio").await;
    assert_eq!(seen.field("To"), Some(OUTSIDE));
    assert_eq!(seen.field("From"), Some(OUR_NUMBER));
    let callback = format!("{}/v1/carriers/tw/status", gw.url);
    assert_eq!(seen.field("StatusCallback"), Some(callback.as_str()));
    let delivered = gw.wait_for_status(&alice, &sent, "delivered").await;
    assert_eq!(delivered["failure_reason"], Value::Null);

    // Undelivered: the callback's error code is the reason.
    let sent = send("+12025550188", "this one is undeliverable").await;
    let failed = gw.wait_for_status(&alice, &sent, "failed").await;
    let reason = failed["failure_reason"].as_str().unwrap();
    assert!(reason.contains("30003"), "{reason}");

    // Refused outright (invalid destination): failed at once with Twilio's words.
    let sent = send("+12025550177", "code:21211").await;
    let failed = gw.wait_for_status(&alice, &sent, "failed").await;
    let reason = failed["failure_reason"].as_str().unwrap();
    assert!(reason.contains("21211"), "{reason}");

    // An outside phone answers: Twilio's signed inbound webhook.
    let inbound = pairs(&[
        ("AccountSid", ACCOUNT_SID),
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("From", OUTSIDE),
        ("To", OUR_NUMBER),
        ("Body", "hi back from a real phone ✓"),
        ("NumSegments", "1"),
        ("NumMedia", "0"),
    ]);
    let url = format!("{}/v1/carriers/tw/inbound", gw.url);
    let signature = compute_signature(TOKEN, &url, &inbound);
    // Twilio may post the same webhook twice (a timeout, `#rc=` retries): one text only.
    for _ in 0..2 {
        let (status, _, body) = gw
            .webhook("/v1/carriers/tw/inbound", &inbound, Some(&signature))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let deadline = Instant::now() + WAIT;
    let received = loop {
        let events = gw.events(&alice).await;
        let found = events
            .iter()
            .filter(|e| e["type"] == "message.created")
            .map(|e| e["message"].clone())
            .find(|m| m["direction"] == "inbound");
        if let Some(found) = found {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "the inbound text never arrived: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(received["from"], OUTSIDE);
    assert_eq!(received["to"], OUR_NUMBER);
    assert_eq!(received["body"], "hi back from a real phone ✓");
    assert_eq!(received["route"], "carrier");
    assert_eq!(
        received["conversation_id"], delivered["conversation_id"],
        "the answer lands in the same thread"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let inbound_texts = gw
        .events(&alice)
        .await
        .iter()
        .filter(|e| e["type"] == "message.created" && e["message"]["direction"] == "inbound")
        .count();
    assert_eq!(inbound_texts, 1, "a repeated webhook made a second text");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_public_url_signatures_cover_the_host_twilio_called() {
    let fake = FakeTwilio::start().await;
    let gw = Gw::start(|_| twilio_toml(&fake.url, false)).await;
    let status_form = pairs(&[
        ("MessageSid", "SM00000000000000000000000000000000"),
        ("MessageStatus", "sent"),
    ]);
    let path = "/v1/carriers/tw/status";
    let host = gw.url.trim_start_matches("http://").to_owned();
    let cases = [
        PyCase {
            url: format!("http://{host}{path}"),
            params: status_form.clone(),
            signature: None,
        },
        PyCase {
            url: format!("https://{host}{path}"),
            params: status_form.clone(),
            signature: None,
        },
        PyCase {
            url: format!("http://elsewhere.example{path}"),
            params: status_form.clone(),
            signature: None,
        },
    ];
    let Some(signed) = python_validator(TOKEN, &cases) else {
        gw.stop().await;
        return;
    };
    // reqwest sends `Host: 127.0.0.1:PORT`, as a proxy in front of the gateway would pass on.
    for (i, expected) in [(0, 200), (1, 200), (2, 403)] {
        let (status, _, body) = gw.webhook(path, &status_form, Some(&signed[i].0)).await;
        assert_eq!(status, expected, "case {i}: {body}");
    }
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 5. Numbers bought from Twilio (`provision = true`)
// ---------------------------------------------------------------------------------------------

/// One request a number test saw on its way to Twilio (or to a fake of it), with the answer.
#[derive(Debug, Clone)]
struct Exchange {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    form: Vec<(String, String)>,
    status: u16,
}

impl Exchange {
    fn form_field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn query_field(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the fake number API answers to each kind of request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    Ok,
    /// 400 with this Twilio error code.
    Code(u32),
    /// This status with Twilio's error body.
    Status(u16),
}

#[derive(Clone)]
struct NumberApi {
    url: String,
    /// Where requests are forwarded (prism), or `None` for the fake's own answers.
    upstream: Option<String>,
    seen: Arc<Mutex<Vec<Exchange>>>,
    /// Answers of the fake by method: GET (search), POST (buy), DELETE (give back).
    answers: Arc<Mutex<std::collections::HashMap<&'static str, Answer>>>,
    /// When set, the fake answers no purchase until this many are waiting at once.
    purchases_together: Arc<Mutex<Option<Arc<tokio::sync::Barrier>>>>,
    http: reqwest::Client,
}

impl NumberApi {
    /// A recording proxy in front of `upstream` (prism), or (without it) a fake number API.
    async fn start(upstream: Option<&str>) -> NumberApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = NumberApi {
            url: format!("http://{}", listener.local_addr().unwrap()),
            upstream: upstream.map(str::to_owned),
            seen: Arc::default(),
            answers: Arc::default(),
            purchases_together: Arc::default(),
            http: reqwest::Client::new(),
        };
        let app = axum::Router::new()
            .fallback(number_api)
            .with_state(api.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        api
    }

    fn answer(&self, method: &'static str, answer: Answer) {
        self.answers.lock().unwrap().insert(method, answer);
    }

    fn seen(&self) -> Vec<Exchange> {
        self.seen.lock().unwrap().clone()
    }

    fn seen_by(&self, method: &str) -> Vec<Exchange> {
        self.seen()
            .into_iter()
            .filter(|e| e.method == method)
            .collect()
    }
}

async fn number_api(
    State(api): State<NumberApi>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap();
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let (status, reply) = match &api.upstream {
        Some(upstream) => {
            let mut request = api.http.request(
                method.clone(),
                format!("{upstream}{}", uri.path_and_query().unwrap()),
            );
            for name in ["authorization", "content-type", "accept"] {
                if let Some(value) = headers.get(name) {
                    request = request.header(name, value);
                }
            }
            let response = request.body(body.to_vec()).send().await.unwrap();
            let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
            (status, response.text().await.unwrap())
        }
        None => {
            let together = api.purchases_together.lock().unwrap().clone();
            if let (Some(barrier), &axum::http::Method::POST) = (together, &method) {
                barrier.wait().await;
            }
            let answer = api
                .answers
                .lock()
                .unwrap()
                .get(method.as_str())
                .copied()
                .unwrap_or(Answer::Ok);
            fake_number_answer(&method, &form, answer)
        }
    };
    api.seen.lock().unwrap().push(Exchange {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query,
        form,
        status: status.as_u16(),
    });
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        reply,
    )
        .into_response()
}

/// The sid the fake sells `number` under: `PN` and the number's digits, zero-padded.
fn sid_of(number: &str) -> String {
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    format!("PN{digits:0>32}")
}

fn fake_number_answer(
    method: &axum::http::Method,
    form: &[(String, String)],
    answer: Answer,
) -> (StatusCode, String) {
    let error = |status: u16, code: u32| {
        (
            StatusCode::from_u16(status).unwrap(),
            json!({"code": code, "message": format!("Twilio says no ({code})"), "status": status})
                .to_string(),
        )
    };
    match answer {
        Answer::Code(code) => return error(400, code),
        Answer::Status(status) => return error(status, 20000 + u32::from(status)),
        Answer::Ok => {}
    }
    match method.as_str() {
        "GET" => (
            StatusCode::OK,
            json!({"available_phone_numbers": [
                {"phone_number": "+14155550123"},
                {"phone_number": "+14155550124"},
                // Outside the area code asked for: not offered.
                {"phone_number": "+12125550125"},
            ]})
            .to_string(),
        ),
        "POST" => {
            let number = form
                .iter()
                .find(|(k, _)| k == "PhoneNumber")
                .map(|(_, v)| v.clone());
            (
                StatusCode::CREATED,
                json!({"sid": number.as_deref().map(sid_of), "phone_number": number}).to_string(),
            )
        }
        _ => (StatusCode::NO_CONTENT, String::new()),
    }
}

/// A Twilio carrier `tw` that sells numbers, at `base_url`, and the gateway's public URL.
fn provisioning_toml(base_url: &str) -> String {
    format!(
        r#"public_url = "https://sms.example.org"
[[carriers]]
name = "tw"
kind = "twilio"
base_url = "{base_url}"
account_sid = "{ACCOUNT_SID}"
auth_token = "{TOKEN}"
provision = true
rates = [ {{ prefix = "+", cost_per_segment = 0.0079 }} ]
"#
    )
}

impl Gw {
    fn state(&self) -> &airtext_gateway::http::AppState {
        &self.running.as_ref().unwrap().state
    }

    async fn give_back_due(&self, at: chrono::DateTime<chrono::Utc>) -> usize {
        let state = self.state();
        airtext_gateway::carriers::twilio::numbers::give_back_due(
            &state.twilio["tw"],
            &state.store,
            at,
        )
        .await
        .unwrap()
    }

    async fn my_number(&self, token: &str) -> Value {
        let (status, me) = self
            .call(reqwest::Method::GET, "/v1/me", Some(token), None)
            .await;
        assert_eq!(status, 200, "{me}");
        me["number"].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_are_bought_and_given_back_under_twilios_official_openapi_spec() {
    let Some(prism) = start_prism().await else {
        return;
    };
    // Prism validates each request against the spec; the recorder in front shows what was sent.
    let twilio = NumberApi::start(Some(&prism.url)).await;
    let gw = Gw::start(|_| provisioning_toml(&twilio.url)).await;
    let alice = gw.sign_up("alice").await;

    // The spec's example number for sale is +18089251571.
    let (status, found) = gw
        .call(
            reqwest::Method::GET,
            "/v1/numbers/available?country=US&area_code=808&limit=5",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["numbers"], json!(["+18089251571"]));
    let search = twilio.seen_by("GET");
    assert_eq!(search.len(), 1, "{search:?}");
    assert_eq!(search[0].status, 200, "prism refused the search");
    assert_eq!(
        search[0].path,
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/AvailablePhoneNumbers/US/Local.json")
    );
    assert_eq!(search[0].query_field("AreaCode"), Some("808"));
    assert_eq!(search[0].query_field("SmsEnabled"), Some("true"));
    // Elsewhere the prefix goes as `Contains`; the spec's (American) example is not offered.
    let (status, found) = gw
        .call(
            reqwest::Method::GET,
            "/v1/numbers/available?country=GB&area_code=20",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["numbers"], json!([]));
    let search = twilio.seen_by("GET");
    assert_eq!(search.len(), 2, "{search:?}");
    assert_eq!(search[1].status, 200, "prism refused the search");
    assert_eq!(search[1].query_field("Contains"), Some("+4420"));

    let (status, claimed) = gw
        .call(
            reqwest::Method::POST,
            "/v1/numbers",
            Some(&alice),
            Some(json!({"number": "+18089251571"})),
        )
        .await;
    assert_eq!(status, 201, "{claimed}");
    assert_eq!(gw.my_number(&alice).await, json!("+18089251571"));
    let bought = twilio.seen_by("POST");
    assert_eq!(bought.len(), 1, "{bought:?}");
    assert_eq!(bought[0].status, 201, "prism refused the purchase");
    assert_eq!(
        gw.state()
            .store
            .number_carrier("+18089251571")
            .await
            .unwrap()
            .as_deref(),
        Some("tw")
    );
    assert_eq!(
        bought[0].path,
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json")
    );
    assert_eq!(bought[0].form_field("PhoneNumber"), Some("+18089251571"));
    assert_eq!(
        bought[0].form_field("SmsUrl"),
        Some("https://sms.example.org/v1/carriers/tw/inbound")
    );
    assert_eq!(
        bought[0].form_field("StatusCallback"),
        Some("https://sms.example.org/v1/carriers/tw/status")
    );
    assert_eq!(bought[0].form_field("SmsMethod"), Some("POST"));

    // Texts go out from the bought number through the carrier that sold it (it is in no
    // configured `numbers` list).
    let (status, sent) = gw
        .call(
            reqwest::Method::POST,
            "/v1/messages",
            Some(&alice),
            Some(json!({"to": "+15005550006", "body": "from a bought number", "client_id": uuid::Uuid::new_v4()})),
        )
        .await;
    assert_eq!(status, 201, "{sent}");
    let message = gw.wait_for_status(&alice, &sent, "sent").await;
    assert_eq!(message["status"], "sent");
    let texts: Vec<Exchange> = twilio
        .seen_by("POST")
        .into_iter()
        .filter(|e| e.path.ends_with("/Messages.json"))
        .collect();
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert_eq!(texts[0].form_field("From"), Some("+18089251571"));
    assert_eq!(texts[0].status, 201, "prism refused the send");

    // Released: kept through its quarantine (45 days), then given back.
    let (status, body) = gw
        .call(
            reqwest::Method::DELETE,
            "/v1/numbers/%2B18089251571",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let now = chrono::Utc::now();
    assert_eq!(gw.give_back_due(now + chrono::Duration::days(44)).await, 0);
    assert!(twilio.seen_by("DELETE").is_empty());
    assert_eq!(gw.give_back_due(now + chrono::Duration::days(46)).await, 1);
    let given_back = twilio.seen_by("DELETE");
    assert_eq!(given_back.len(), 1, "{given_back:?}");
    assert_eq!(given_back[0].status, 204, "prism refused the give-back");
    // The spec's example purchase answers with this sid.
    assert_eq!(
        given_back[0].path,
        format!(
            "/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers/PNaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.json"
        )
    );
    assert_eq!(
        gw.state().store.number_owner("+18089251571").await.unwrap(),
        None
    );
    assert_eq!(gw.give_back_due(now + chrono::Duration::days(47)).await, 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilios_failures_leave_nothing_claimed() {
    let twilio = NumberApi::start(None).await;
    let gw = Gw::start(|_| provisioning_toml(&twilio.url)).await;
    let alice = gw.sign_up("alice").await;

    // Searches: Twilio's answers within the area code; its failures are said plainly.
    let search = || {
        gw.call(
            reqwest::Method::GET,
            "/v1/numbers/available?area_code=415",
            Some(&alice),
            None,
        )
    };
    let (status, found) = search().await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["numbers"], json!(["+14155550123", "+14155550124"]));
    let asked = twilio.seen_by("GET").pop().unwrap();
    assert_eq!(asked.query_field("AreaCode"), Some("415"));
    assert_eq!(asked.query_field("PageSize"), Some("20"));
    // Outside North America the area code goes as a pattern anchored at the start
    // (`Contains=+4420`), and only numbers that start with it are offered (none of the fake's
    // US numbers).
    let (status, found) = gw
        .call(
            reqwest::Method::GET,
            "/v1/numbers/available?country=GB&area_code=20&limit=3",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["numbers"], json!([]));
    let asked = twilio.seen_by("GET").pop().unwrap();
    assert!(
        asked.path.ends_with("/AvailablePhoneNumbers/GB/Local.json"),
        "{asked:?}"
    );
    assert_eq!(asked.query_field("Contains"), Some("+4420"));
    assert_eq!(asked.query_field("AreaCode"), None);
    assert_eq!(asked.query_field("PageSize"), Some("3"));
    twilio.answer("GET", Answer::Status(500));
    let (status, error) = search().await;
    assert_eq!(status, 503, "{error}");
    assert_eq!(error["code"], "unavailable");
    assert!(
        error["message"].as_str().unwrap().contains("Twilio"),
        "{error}"
    );
    twilio.answer("GET", Answer::Status(401));
    let (status, error) = search().await;
    assert_eq!(status, 502, "{error}");
    assert!(
        !error["message"].as_str().unwrap().contains("says no"),
        "Twilio's words stay in the log: {error}"
    );
    twilio.answer("GET", Answer::Ok);

    let claim = |number: &'static str| {
        gw.call(
            reqwest::Method::POST,
            "/v1/numbers",
            Some(&alice),
            Some(json!({ "number": number })),
        )
    };
    let nothing_of = |number: &'static str| {
        let store = gw.state().store.clone();
        async move {
            assert_eq!(store.number_owner(number).await.unwrap(), None);
            let due = store
                .hold_numbers_to_give_back(
                    "tw",
                    chrono::Utc::now() + chrono::Duration::days(1000),
                    chrono::Utc::now() + chrono::Duration::days(1001),
                    10,
                )
                .await
                .unwrap();
            assert!(due.is_empty(), "nothing was bought: {due:?}");
        }
    };

    // Sold to someone else meanwhile: 409, nothing held.
    twilio.answer("POST", Answer::Code(21422));
    let (status, error) = claim("+14155550123").await;
    assert_eq!(status, 409, "{error}");
    assert_eq!(error["code"], "number_taken");
    assert_eq!(gw.my_number(&alice).await, Value::Null);
    nothing_of("+14155550123").await;

    // Twilio down, or refusing us: 503 / 502, nothing held.
    for (answer, expected) in [(Answer::Status(503), 503), (Answer::Status(403), 502)] {
        twilio.answer("POST", answer);
        let (status, error) = claim("+14155550123").await;
        assert_eq!(status, expected, "{answer:?}: {error}");
        assert_eq!(error["code"], "unavailable");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("nothing was claimed"),
            "{error}"
        );
        assert_eq!(gw.my_number(&alice).await, Value::Null);
        nothing_of("+14155550123").await;
    }

    // Twilio back: the same claim buys it.
    twilio.answer("POST", Answer::Ok);
    let (status, claimed) = claim("+14155550123").await;
    assert_eq!(status, 201, "{claimed}");
    assert_eq!(gw.my_number(&alice).await, json!("+14155550123"));
    let purchases = twilio.seen_by("POST").len();

    // An account with a number is refused before anything is bought.
    let (status, error) = claim("+14155550124").await;
    assert_eq!(status, 409, "{error}");
    assert_eq!(error["code"], "already_has_number");
    assert_eq!(twilio.seen_by("POST").len(), purchases, "nothing bought");

    // Released; at the quarantine's end Twilio fails the give-back: kept, and tried again
    // once the hold lapses.
    let (status, body) = gw
        .call(
            reqwest::Method::DELETE,
            "/v1/numbers/%2B14155550123",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let ended = chrono::Utc::now() + chrono::Duration::days(46);
    twilio.answer("DELETE", Answer::Status(500));
    assert_eq!(gw.give_back_due(ended).await, 0);
    assert_eq!(twilio.seen_by("DELETE").len(), 1);
    // Held while it goes back: a second pass does not try it again at once.
    assert_eq!(gw.give_back_due(ended).await, 0);
    assert_eq!(twilio.seen_by("DELETE").len(), 1);
    // Twilio no longer having it (404) is as good as taking it back.
    twilio.answer("DELETE", Answer::Status(404));
    let lapsed = ended + chrono::Duration::hours(2);
    assert_eq!(gw.give_back_due(lapsed).await, 1);
    let given_back = twilio.seen_by("DELETE");
    assert_eq!(given_back.len(), 2);
    assert_eq!(
        given_back[1].path,
        format!(
            "/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers/{}.json",
            sid_of("+14155550123")
        )
    );
    nothing_of("+14155550123").await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_nobody_can_claim_goes_straight_back() {
    let twilio = NumberApi::start(None).await;
    let gw = Gw::start(|_| provisioning_toml(&twilio.url)).await;
    let alice = gw.sign_up("alice").await;
    // Two claims by one account, both past the "holds no number" check: Twilio answers
    // neither purchase until both are asked for.
    *twilio.purchases_together.lock().unwrap() = Some(Arc::new(tokio::sync::Barrier::new(2)));
    let claim = |number: &'static str| {
        gw.call(
            reqwest::Method::POST,
            "/v1/numbers",
            Some(&alice),
            Some(json!({ "number": number })),
        )
    };
    let (first, second) = tokio::join!(claim("+14155550123"), claim("+14155550124"));
    let mut statuses = [first.0, second.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409], "{first:?} {second:?}");
    let (won, lost) = if first.0 == 201 {
        ("+14155550123", "+14155550124")
    } else {
        ("+14155550124", "+14155550123")
    };
    let refused = if first.0 == 409 { &first.1 } else { &second.1 };
    assert_eq!(refused["code"], "already_has_number", "{refused}");
    assert_eq!(gw.my_number(&alice).await, json!(won));
    // The purchase nobody holds went straight back, and left the inventory.
    let given_back = twilio.seen_by("DELETE");
    assert_eq!(given_back.len(), 1, "{given_back:?}");
    assert!(
        given_back[0]
            .path
            .ends_with(&format!("/IncomingPhoneNumbers/{}.json", sid_of(lost))),
        "{given_back:?}"
    );
    assert_eq!(gw.state().store.number_carrier(lost).await.unwrap(), None);
    assert_eq!(
        gw.state()
            .store
            .number_carrier(won)
            .await
            .unwrap()
            .as_deref(),
        Some("tw")
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_that_times_out_is_unavailable() {
    // Nothing answers on this port's accepted connections: the purchase times out.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let (tx, _rx) = report_channel(16);
    let mut config = twilio_config(&url);
    config.provision = true;
    let carrier = TwilioCarrier::with_tuning(
        config,
        Some("https://sms.example.org"),
        tx,
        TwilioTuning {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_millis(300),
        },
    )
    .unwrap();
    match carrier.buy_number("+14155550123").await {
        Err(airtext_gateway::carriers::twilio::numbers::NumberProviderError::Unavailable(why)) => {
            assert!(why.contains("timed out"), "{why}")
        }
        other => panic!("a timeout is worth trying again later: {other:?}"),
    }
    drop(silent);

    // And selling numbers needs the URL Twilio will call.
    let (tx, _rx) = report_channel(16);
    let mut config = twilio_config(&url);
    config.provision = true;
    let error = TwilioCarrier::new(config, None, tx)
        .unwrap_err()
        .to_string();
    assert!(error.contains("public_url"), "{error}");
}
