//! Test harness: a real gateway in-process on a free port, on a fresh SQLite file (or on
//! PostgreSQL, in a fresh schema, when `AIRTEXT_TEST_DATABASE_URL` is set and a test asks for
//! it), driven over real HTTP and WebSocket.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::field_reassign_with_default
)]

use std::time::Duration;

pub mod counting_smsc;
pub mod raw_http;

use airtext_gateway::config::Config;
use airtext_gateway::{Gateway, RunningGateway};
use serde_json::{json, Value};

pub struct TestGateway {
    pub gateway: Option<RunningGateway>,
    pub url: String,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl TestGateway {
    /// A gateway on a fresh SQLite database with the simulator on (receipts after 50 ms).
    pub async fn start() -> TestGateway {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.database_url = format!("sqlite://{}", dir.path().join("gateway.db").display());
        config.simulator.enabled = true;
        config.simulator.receipt_delay_ms = 50;
        adjust(&mut config);
        let gateway = Gateway::start(config).await.expect("gateway starts");
        let url = gateway.url();
        TestGateway {
            gateway: Some(gateway),
            url,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    pub async fn stop(mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.shutdown().await.expect("clean shutdown");
        }
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("{}{}", self.url.replacen("http://", "ws://", 1), path)
    }

    /// Sends a request; returns status and JSON body (`Value::Null` when empty).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{}", self.url, path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    /// Creates an account and signs one device in; returns the device token.
    pub async fn sign_up(&self, username: &str) -> Device {
        let (status, body) = self
            .post(
                "/v1/accounts",
                None,
                json!({"username": username, "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(status, 201, "sign-up: {body}");
        self.sign_in(username, "first").await
    }

    /// Signs another device of an existing account in.
    pub async fn sign_in(&self, username: &str, device_name: &str) -> Device {
        let (status, body) = self
            .post(
                "/v1/sessions",
                None,
                json!({"username": username, "password": "correct horse battery", "device_name": device_name}),
            )
            .await;
        assert_eq!(status, 201, "sign-in: {body}");
        Device {
            token: body["token"].as_str().unwrap().to_owned(),
            device_id: body["device_id"].as_str().unwrap().to_owned(),
            account_id: body["account_id"].as_str().unwrap().to_owned(),
        }
    }

    /// Claims the first available number in an area code; returns it.
    pub async fn claim_number(&self, device: &Device, area_code: &str) -> String {
        let (status, body) = self
            .get(
                &format!("/v1/numbers/available?country=US&area_code={area_code}&limit=1"),
                &device.token,
            )
            .await;
        assert_eq!(status, 200, "search: {body}");
        let number = body["numbers"][0]
            .as_str()
            .expect("a number is available")
            .to_owned();
        let (status, body) = self
            .post(
                "/v1/numbers",
                Some(&device.token),
                json!({"number": number}),
            )
            .await;
        assert_eq!(status, 201, "claim: {body}");
        number
    }

    /// Sends a text; returns the sender's message.
    pub async fn send(&self, device: &Device, to: &str, body: &str) -> Value {
        let (status, reply) = self
            .post(
                "/v1/messages",
                Some(&device.token),
                json!({"to": to, "body": body, "client_id": uuid::Uuid::new_v4()}),
            )
            .await;
        assert!(status == 201, "send to {to}: {status} {reply}");
        reply
    }

    /// Pulls every event after `after`, paging until `more` is false.
    pub async fn sync_all(&self, device: &Device, mut after: i64) -> (Vec<Value>, i64) {
        let mut events = Vec::new();
        loop {
            let (status, page) = self
                .get(&format!("/v1/sync?after={after}&limit=1000"), &device.token)
                .await;
            assert_eq!(status, 200, "sync: {page}");
            events.extend(page["events"].as_array().unwrap().iter().cloned());
            after = page["next"].as_i64().unwrap();
            if !page["more"].as_bool().unwrap() {
                return (events, after);
            }
        }
    }

    /// The simulator's outbox for one outside address.
    pub async fn outbox(&self, device: &Device, to: &str) -> Vec<Value> {
        let (status, body) = self
            .get(
                &format!("/v1/simulator/outbox?to={}", urlencode(to)),
                &device.token,
            )
            .await;
        assert_eq!(status, 200, "outbox: {body}");
        body["messages"].as_array().cloned().unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct Device {
    pub token: String,
    pub device_id: String,
    pub account_id: String,
}

pub fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace('@', "%40")
}

/// Polls `check` until it returns `Some`, for at most `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ----- WebSocket hint streams (`/v1/stream`) -----

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message as WsMessage;

pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What a hint stream said next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamNews {
    Hint(i64),
    Closed(Option<u16>),
}

/// A device's live `/v1/stream` connection.
pub struct HintStream {
    pub ws: WsStream,
}

impl TestGateway {
    /// Opens `/v1/stream` with the token in the Authorization header.
    pub async fn stream(&self, device: &Device) -> HintStream {
        let mut request = self.ws_url("/v1/stream").into_client_request().unwrap();
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {}", device.token).parse().unwrap(),
        );
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("stream connects");
        HintStream { ws }
    }

    /// Opens `/v1/stream?token=…` (how browsers authenticate).
    pub async fn stream_with_query_token(&self, device: &Device) -> HintStream {
        let url = self.ws_url(&format!("/v1/stream?token={}", device.token));
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("stream connects");
        HintStream { ws }
    }

    /// Pulls `/v1/sync` after every hint until `done` holds for the events gathered so far;
    /// returns them with the new cursor. Fails if no hint comes within `timeout`.
    pub async fn follow(
        &self,
        device: &Device,
        stream: &mut HintStream,
        mut cursor: i64,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> (Vec<Value>, i64) {
        let mut events = Vec::new();
        loop {
            match stream.next(timeout).await {
                Some(StreamNews::Hint(seq)) => {
                    if seq > cursor {
                        let (more, next) = self.sync_all(device, cursor).await;
                        events.extend(more);
                        cursor = next;
                    }
                }
                other => panic!("expected a hint, got {other:?} (events so far: {events:?})"),
            }
            if done(&events) {
                return (events, cursor);
            }
        }
    }
}

impl HintStream {
    /// The next hint or close, answering pings; `None` when nothing comes within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<StreamNews> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            match frame {
                None => return Some(StreamNews::Closed(None)),
                Some(Err(_)) => return Some(StreamNews::Closed(None)),
                Some(Ok(WsMessage::Text(text))) => {
                    let hint: Value = serde_json::from_str(text.as_str()).unwrap();
                    return Some(StreamNews::Hint(hint["seq"].as_i64().unwrap()));
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    return Some(StreamNews::Closed(frame.map(|f| u16::from(f.code))))
                }
                // tungstenite queues the pong; make sure it leaves now.
                Some(Ok(WsMessage::Ping(_))) => {
                    let _ = self.ws.flush().await;
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next hint's seq; fails on anything else.
    pub async fn hint(&mut self, timeout: Duration) -> i64 {
        match self.next(timeout).await {
            Some(StreamNews::Hint(seq)) => seq,
            other => panic!("expected a hint, got {other:?}"),
        }
    }

    /// Hints until `seq` is reached (hints coalesce, so any number of them may come).
    pub async fn until(&mut self, seq: i64, timeout: Duration) -> i64 {
        loop {
            let got = self.hint(timeout).await;
            if got >= seq {
                return got;
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self
            .ws
            .send(WsMessage::Close(Some(
                tokio_tungstenite::tungstenite::protocol::CloseFrame {
                    code: CloseCode::Normal,
                    reason: "bye".into(),
                },
            )))
            .await;
    }
}

/// `type` of each event, in order.
pub fn event_types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The messages of the `message.created` events.
pub fn created_messages(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["type"] == "message.created")
        .map(|e| e["message"].clone())
        .collect()
}

/// Verifies a phone number for a device's account through the simulator's outbox; returns
/// the identity id.
pub async fn verify_phone(gw: &TestGateway, device: &Device, phone: &str) -> String {
    let (status, body) = gw
        .post(
            "/v1/identities",
            Some(&device.token),
            json!({"kind": "phone", "value": phone}),
        )
        .await;
    assert_eq!(status, 202, "add identity: {body}");
    let identity = body["identity_id"].as_str().unwrap().to_owned();
    let texts = gw.outbox(device, phone).await;
    let text = texts.last().expect("a code was texted")["body"]
        .as_str()
        .unwrap()
        .to_owned();
    let code: String = text
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .expect("a 6-digit code in the text")
        .to_owned();
    let (status, body) = gw
        .post(
            &format!("/v1/identities/{identity}/verify"),
            Some(&device.token),
            json!({"code": code}),
        )
        .await;
    assert_eq!(status, 200, "verify: {body}");
    identity
}

impl TestGateway {
    /// Shuts the gateway down cleanly and starts a new one on the same database (on a new
    /// port), with the same configuration changed by `adjust`: what survives a restart.
    pub async fn restart_with(mut self, adjust: impl FnOnce(&mut Config)) -> TestGateway {
        let gateway = self.gateway.take().expect("running");
        let mut config = (*gateway.state.config).clone();
        gateway.shutdown().await.expect("clean shutdown");
        config.listen = "127.0.0.1:0".parse().unwrap();
        adjust(&mut config);
        let gateway = Gateway::start(config).await.expect("gateway restarts");
        let url = gateway.url();
        TestGateway {
            gateway: Some(gateway),
            url,
            http: self.http.clone(),
            _dir: self._dir,
        }
    }
}

impl TestGateway {
    /// [`TestGateway::start_with`] plus carriers built by the test (routed after the
    /// configured ones, with the routing facts given).
    pub async fn start_with_carriers(
        adjust: impl FnOnce(&mut Config),
        extra: Vec<airtext_gateway::lcr::RoutedCarrier>,
    ) -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.database_url = format!("sqlite://{}", dir.path().join("gateway.db").display());
        config.simulator.enabled = true;
        config.simulator.receipt_delay_ms = 50;
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let gateway = Gateway::start_with_carriers(config, listener, extra)
            .await
            .expect("gateway starts");
        let url = gateway.url();
        TestGateway {
            gateway: Some(gateway),
            url,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    pub fn state(&self) -> &airtext_gateway::http::AppState {
        &self.gateway.as_ref().expect("running").state
    }
}

// ----- PostgreSQL: a fresh schema per test (several nodes share it) -----

/// A fresh schema on `AIRTEXT_TEST_DATABASE_URL`; dropped by [`PgSchema::drop_schema`].
pub struct PgSchema {
    pub base: String,
    pub schema: String,
    /// `base` with `options=-c search_path=<schema>`: what every node is given.
    pub url: String,
}

/// `url` with `options=-c search_path=<schema>`.
pub fn with_search_path(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// A test that needs a service this machine lacks: a loud `SKIPPED` line, or a failure when
/// `required` (an `AIRTEXT_TEST_REQUIRE_*` variable set to `1`, as CI sets them) says the
/// service must be there, so a run that could not reach it never passes silently.
pub fn skip_or_fail(required: &str, missing: &str, test: &str) {
    if std::env::var(required).is_ok_and(|v| v == "1") {
        panic!("{test}: {missing}, and {required}=1 says it must run");
    }
    // Straight to the process's stderr: libtest captures `eprintln!` of passing tests.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED ({missing}): {test}");
}

/// A fresh schema, or `None` after a loud `SKIPPED` line when `AIRTEXT_TEST_DATABASE_URL` is
/// unset (a failure instead with `AIRTEXT_TEST_REQUIRE_POSTGRES=1`).
pub async fn postgres_schema(test: &str) -> Option<PgSchema> {
    use sqlx::Connection;
    let Ok(base) = std::env::var("AIRTEXT_TEST_DATABASE_URL") else {
        skip_or_fail(
            "AIRTEXT_TEST_REQUIRE_POSTGRES",
            "no AIRTEXT_TEST_DATABASE_URL",
            test,
        );
        return None;
    };
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&base).await.expect("postgres");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let url = with_search_path(&base, &schema);
    Some(PgSchema { base, schema, url })
}

impl PgSchema {
    /// Runs `sql` on the base database (not scoped to the schema).
    pub async fn exec_base(&self, sql: &str) -> u64 {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.base).await.unwrap();
        let done = sqlx::query(sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        done.rows_affected()
    }

    pub async fn drop_schema(self) {
        self.exec_base(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .await;
    }
}

impl TestGateway {
    /// Drives a gateway this test did not start in-process (a child process, or nginx in
    /// front of several) through the same helpers.
    pub fn remote(url: &str) -> TestGateway {
        TestGateway {
            gateway: None,
            url: url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            _dir: tempfile::tempdir().unwrap(),
        }
    }
}

/// A port free on 127.0.0.1 now (for servers that take a port number, not a listener).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Waits until the gateway at `url` answers `/healthz` (a child process just spawned).
pub async fn wait_healthy(http: &reqwest::Client, url: &str) {
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{url}/healthz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} did not become healthy");
}

/// The bodies of the messages created in `events`, in order.
pub fn bodies(events: &[Value]) -> Vec<String> {
    created_messages(events)
        .iter()
        .map(|m| m["body"].as_str().unwrap_or_default().to_owned())
        .collect()
}
