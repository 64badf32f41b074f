//! Test harness: a real gateway in-process on a free port, on a fresh SQLite file (or on
//! PostgreSQL, in a fresh schema, when `AIRTEXT_TEST_DATABASE_URL` is set and a test asks for
//! it), driven over real HTTP and WebSocket.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

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
    /// A gateway on a fresh SQLite database with the simulator (receipts after 50 ms).
    pub async fn start() -> TestGateway {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.database_url = format!("sqlite://{}", dir.path().join("gateway.db").display());
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
        self.call(reqwest::Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body)).await
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
        let number = body["numbers"][0].as_str().expect("a number is available").to_owned();
        let (status, body) = self
            .post("/v1/numbers", Some(&device.token), json!({"number": number}))
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
            .get(&format!("/v1/simulator/outbox?to={}", urlencode(to)), &device.token)
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
