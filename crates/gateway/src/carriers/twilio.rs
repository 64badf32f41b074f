//! Twilio: texts out through the Messaging REST API, texts and receipts in through its
//! webhooks.
//!
//! **Sending** is `POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded
//! (`To`, `From`, `Body`, plus `MessagingServiceSid` when configured and `StatusCallback` when
//! the gateway has a `public_url`), with HTTP basic auth `AccountSid:AuthToken`. The reply is
//! Twilio's `api.v2010.account.message` resource; its `sid` becomes the carrier message id.
//! `From` is always our DID (also with a Messaging Service, where it picks that sender from
//! the service's pool), because the outside phone's answer must come back to that DID.
//!
//! How replies are classified ([`CarrierError`]):
//!
//! | Twilio's answer                                   | Result                                 |
//! |---------------------------------------------------|----------------------------------------|
//! | 2xx with a `sid`                                  | accepted (a `failed`/`undelivered`/`canceled` status in it is also reported as a failed receipt) |
//! | 2xx without a readable `sid`                      | retryable, logged as an error (it may have gone out; losing a text is worse than a rare duplicate) |
//! | connection error, timeout, unreadable reply       | retryable                              |
//! | 429, or any 5xx                                   | retryable                              |
//! | 401, 403, 404                                     | retryable, logged as an error: wrong `account_sid`/`auth_token`/`base_url`, which another carrier (or a fixed configuration) gets past |
//! | 400 with a sender/account code ([`SENDER_CODES`]: the `From` is not ours on Twilio, the Messaging Service or our `StatusCallback` is wrong, throttled) | retryable, logged as an error: another carrier may send from that DID |
//! | 400 with any other code (21211 invalid `To`, 21614 not a mobile, 21610 recipient texted STOP, 21408 region not enabled, 21612 unroutable, 21617 body too long, …) | permanent, with Twilio's code and message |
//! | any other status                                  | retryable                              |
//!
//! The `max_per_second` cap is a token bucket of one token (sends are spaced `1/rate` apart),
//! so no one-second window ever carries more than the cap.
//!
//! **Statuses** map onto ours ([`map_status`]): `accepted`, `scheduled`, `queued`, `sending`, `sent`
//! → `Sent` (our `sent` means "the carrier took it"); `delivered` and `read` → `Delivered`;
//! `undelivered`, `failed` and `canceled` → `Failed`, with `ErrorCode`/`ErrorMessage` as the
//! reason. Inbound-only statuses (`receiving`, `received`) and unknown ones report nothing.
//!
//! **Webhooks** (`http::carriers`) are authenticated only by `X-Twilio-Signature`:
//! base64(HMAC-SHA1(auth token, URL + each POST parameter name and value, sorted)), exactly as
//! the official `twilio` library's `RequestValidator` computes it ([`compute_signature`]):
//! names sorted, each name's distinct values sorted, the URL as Twilio called it (the
//! configured `public_url` + path + query), accepted with or without the default port, since
//! Twilio's own signing is inconsistent there. The comparison is constant-time. What the
//! webhooks learn goes into the same report channel as every carrier's reports; an inbound
//! `MessageSid` seen in the last 10,000 is not reported again (Twilio may retry a webhook).
//! Without a `public_url`, signatures are checked over `https://` and `http://` + the request's
//! `Host` (the signature still needs the auth token, so a forged Host gains nothing).
//!
//! **Numbers**: with `provision = true` the account also sells numbers to the gateway's users
//! and takes them back after their quarantine ([`numbers`]); that needs a `public_url`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha1::Sha1;

use crate::carriers::config::{CarrierConfig, TwilioCarrierConfig};
use crate::carriers::reports::{NotStored, ReportSink};
use crate::carriers::{
    Carrier, CarrierAccepted, CarrierError, CarrierReport, OutboundSms, ReceiptStatus,
};
use crate::store::InventoryNumber;

pub mod numbers;

/// The header Twilio signs webhooks with.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// The empty TwiML document webhooks answer with ("do nothing more").
pub const EMPTY_TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#;

/// 400 codes that blame our side (the sender, the account or the Messaging Service), not the
/// message: another carrier, or a fixed configuration, can still send it.
pub const SENDER_CODES: &[u32] = &[
    20003, // authentication failed
    20005, // account not active
    20429, // too many requests
    21212, // invalid From number
    21603, // From is required
    21606, // the From number is not a valid, SMS-capable number of this account
    21609, // invalid StatusCallback (our public_url)
    21611, // this From number has too many queued messages
    21654, // Messaging Service has no sender
    21659, // From is not a Twilio number or verified caller ID
    21660, // From and the account do not match
    21701, // Messaging Service does not exist
    21703, // Messaging Service has no numbers
    21704, // Messaging Service has no phone numbers in the sender pool
    21705, // Messaging Service is not valid
    21712, // Messaging Service does not belong to this account
];

/// Timings of one Twilio carrier (the defaults suit the real API; tests shorten them).
#[derive(Debug, Clone, Copy)]
pub struct TwilioTuning {
    pub connect_timeout: Duration,
    /// The whole request, reply included.
    pub request_timeout: Duration,
}

impl Default for TwilioTuning {
    fn default() -> Self {
        TwilioTuning {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(20),
        }
    }
}

/// One Twilio account as a carrier.
pub struct TwilioCarrier {
    config: TwilioCarrierConfig,
    /// The secret both for basic auth and for webhook signatures.
    auth_token: String,
    /// `{base_url}/2010-04-01/Accounts/{sid}/Messages.json`
    messages_url: String,
    /// `public_url` without a trailing `/`, when the gateway has one.
    public_url: Option<String>,
    http: reqwest::Client,
    pace: Option<Pace>,
    reports: ReportSink,
    inventory: Vec<InventoryNumber>,
    /// `MessageSid`s of inbound texts already reported, so a webhook Twilio retries (after a
    /// timeout, or with `#rc=` connection overrides) does not make a second message.
    recent_inbound: Mutex<RecentSids>,
}

impl fmt::Debug for TwilioCarrier {
    // Never the auth token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioCarrier")
            .field("name", &self.config.name)
            .field("base_url", &self.config.base_url)
            .field("account_sid", &self.config.account_sid)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl TwilioCarrier {
    /// A carrier for `config`; the auth token comes from the configuration or from
    /// `AIRTEXT_CARRIER_<NAME>_AUTH_TOKEN`.
    pub fn new(
        config: TwilioCarrierConfig,
        public_url: Option<&str>,
        reports: ReportSink,
    ) -> anyhow::Result<TwilioCarrier> {
        Self::with_tuning(config, public_url, reports, TwilioTuning::default())
    }

    pub fn with_tuning(
        config: TwilioCarrierConfig,
        public_url: Option<&str>,
        reports: ReportSink,
        tuning: TwilioTuning,
    ) -> anyhow::Result<TwilioCarrier> {
        let env = CarrierConfig::Twilio(config.clone()).secret_env("AUTH_TOKEN");
        let auth_token = match &config.auth_token {
            Some(token) => token.clone(),
            None => std::env::var(&env).with_context(|| {
                format!("auth_token: give it in the configuration or in the environment as {env}")
            })?,
        };
        if auth_token.is_empty() {
            anyhow::bail!("auth_token: must not be empty");
        }
        let http = reqwest::Client::builder()
            .connect_timeout(tuning.connect_timeout)
            .timeout(tuning.request_timeout)
            .user_agent(concat!("airtext-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        let public_url = public_url.map(|url| url.trim_end_matches('/').to_owned());
        if let Some(url) = &public_url {
            // Twilio refuses a relative StatusCallback (error 21609) on every send.
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                anyhow::bail!(
                    "public_url {url:?}: Twilio calls back an absolute URL such as https://sms.example.org"
                );
            }
        }
        if let Some(service) = &config.messaging_service_sid {
            if !service.starts_with("MG") {
                anyhow::bail!(
                    "messaging_service_sid {service:?}: a Messaging Service SID starts with MG"
                );
            }
        }
        if config.provision && public_url.is_none() {
            anyhow::bail!(
                "provision = true needs the gateway's public_url: a bought number's SmsUrl and \
                 StatusCallback point at this gateway's webhooks"
            );
        }
        if public_url.is_none() {
            tracing::warn!(
                carrier = config.name,
                "no public_url: Twilio will not be asked for status callbacks, and webhook \
                 signatures are checked against the Host header"
            );
        }
        let messages_url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            config.base_url.trim_end_matches('/'),
            config.account_sid
        );
        let inventory = config
            .numbers
            .iter()
            .map(|number| InventoryNumber {
                number: number.clone(),
                carrier: config.name.clone(),
                country: country_of(number),
            })
            .collect();
        Ok(TwilioCarrier {
            pace: config.max_per_second.map(Pace::new),
            auth_token,
            messages_url,
            public_url,
            http,
            reports,
            inventory,
            recent_inbound: Mutex::new(RecentSids::default()),
            config,
        })
    }

    /// The URL Twilio is asked to post this carrier's receipts to.
    pub fn status_callback(&self) -> Option<String> {
        self.public_url
            .as_ref()
            .map(|base| format!("{base}/v1/carriers/{}/status", self.config.name))
    }

    /// The URL Twilio is asked to post texts to one of this carrier's numbers to.
    pub fn inbound_webhook(&self) -> Option<String> {
        self.public_url
            .as_ref()
            .map(|base| format!("{base}/v1/carriers/{}/inbound", self.config.name))
    }

    /// The URLs a webhook request may have been signed over: `public_url` + `path_and_query`
    /// when the gateway has one, else the `Host` the request came to, over https and http.
    pub fn webhook_urls(&self, path_and_query: &str, host: Option<&str>) -> Vec<String> {
        match (&self.public_url, host) {
            (Some(base), _) => vec![format!("{base}{path_and_query}")],
            (None, Some(host)) => vec![
                format!("https://{host}{path_and_query}"),
                format!("http://{host}{path_and_query}"),
            ],
            (None, None) => Vec::new(),
        }
    }

    /// Whether `signature` signs `params` over one of `urls` (each also tried with and without
    /// its default port, as `RequestValidator.validate` does).
    pub fn verify(&self, urls: &[String], params: &[(String, String)], signature: &str) -> bool {
        let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature.trim())
        else {
            return false;
        };
        let mut valid = false;
        for url in urls {
            for candidate in port_variants(url) {
                let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(self.auth_token.as_bytes()) else {
                    return false;
                };
                mac.update(signing_string(&candidate, params).as_bytes());
                // No early exit: every candidate costs the same whether or not one matched.
                valid |= mac.verify_slice(&signature).is_ok();
            }
        }
        valid
    }

    /// Reports a text an outside phone sent to one of our numbers (the inbound webhook);
    /// returns false for a `MessageSid` reported already (a retried webhook).
    pub async fn report_inbound(&self, inbound: &InboundForm) -> Result<bool, NotStored> {
        let sid = inbound.message_sid.as_deref().filter(|sid| !sid.is_empty());
        if let Some(sid) = sid {
            if !lock(&self.recent_inbound).insert(sid) {
                tracing::info!(
                    carrier = self.config.name,
                    sid,
                    "inbound webhook repeated; ignored"
                );
                return Ok(false);
            }
        }
        let mut body = inbound.body.clone().unwrap_or_default();
        // MMS: the recipient at least gets the links (Twilio's media URLs).
        for url in inbound.media_urls.iter().flatten() {
            if !body.is_empty() {
                body.push('\n');
            }
            body.push_str(url);
        }
        let reported = self
            .report(CarrierReport::Inbound {
                carrier: self.config.name.clone(),
                from: inbound.from.clone(),
                to: inbound.to.clone(),
                body,
            })
            .await;
        if let (Err(_), Some(sid)) = (&reported, sid) {
            // Not taken: Twilio's retry must not be mistaken for a repeat.
            lock(&self.recent_inbound).remove(sid);
        }
        reported.map(|()| true)
    }

    /// Reports a receipt from the status webhook; statuses that say nothing about our
    /// outbound message are dropped (returns whether something was reported).
    pub async fn report_status(&self, status: &StatusForm) -> Result<bool, NotStored> {
        let Some(sid) = status.message_sid.as_ref().or(status.sms_sid.as_ref()) else {
            return Ok(false);
        };
        let Some(message_status) = status
            .message_status
            .as_deref()
            .or(status.sms_status.as_deref())
        else {
            return Ok(false);
        };
        let Some(mapped) = map_status(message_status) else {
            tracing::debug!(
                carrier = self.config.name,
                sid,
                message_status,
                "status ignored"
            );
            return Ok(false);
        };
        let reason = (mapped == ReceiptStatus::Failed).then(|| {
            failure_reason(
                message_status,
                status.error_code.as_deref(),
                status.error_message.as_deref(),
            )
        });
        self.report(CarrierReport::Receipt {
            carrier: self.config.name.clone(),
            carrier_message_id: sid.clone(),
            status: mapped,
            reason,
        })
        .await?;
        Ok(true)
    }

    async fn report(&self, report: CarrierReport) -> Result<(), NotStored> {
        self.reports.deliver(report).await
    }

    fn misconfigured(&self, what: &str) {
        tracing::error!(
            carrier = self.config.name,
            account_sid = self.config.account_sid,
            base_url = self.config.base_url,
            "Twilio refused this gateway ({what}): check account_sid, auth_token and base_url"
        );
    }

    /// Turns Twilio's reply into the carrier's answer (see the module's table).
    async fn classify(
        &self,
        sms: &OutboundSms,
        response: reqwest::Response,
    ) -> Result<CarrierAccepted, CarrierError> {
        let status = response.status();
        let text = response.text().await.map_err(|e| {
            CarrierError::Retryable(format!("Twilio's reply could not be read: {e}"))
        })?;
        if status.is_success() {
            let message = serde_json::from_str::<MessageResource>(&text)
                .ok()
                .and_then(|m| {
                    m.sid
                        .clone()
                        .filter(|sid| !sid.is_empty())
                        .map(|sid| (sid, m))
                });
            let Some((sid, message)) = message else {
                tracing::error!(
                    carrier = self.config.name,
                    http_status = status.as_u16(),
                    "Twilio accepted a message but its reply has no sid; it will be retried"
                );
                return Err(CarrierError::Retryable(format!(
                    "Twilio answered {status} without a message sid"
                )));
            };
            if let Some(message_status) = message.status.as_deref() {
                if map_status(message_status) == Some(ReceiptStatus::Failed) {
                    // Failed at once: the routing side matches a receipt that beats our
                    // answer to its message once the id is stored.
                    let reason = failure_reason(
                        message_status,
                        message.error_code.as_ref().map(code_text).as_deref(),
                        message.error_message.as_deref(),
                    );
                    // Our own conclusion, nothing Twilio waits on: hand it over, don't wait.
                    let _ = self
                        .reports
                        .hand_over(CarrierReport::Receipt {
                            carrier: self.config.name.clone(),
                            carrier_message_id: sid.clone(),
                            status: ReceiptStatus::Failed,
                            reason: Some(reason),
                        })
                        .await;
                }
            }
            return Ok(CarrierAccepted {
                carrier_message_id: sid,
            });
        }
        let error = serde_json::from_str::<ErrorReply>(&text).unwrap_or_default();
        let described = error.describe(status);
        let code = status.as_u16();
        match code {
            429 => Err(CarrierError::Retryable(described)),
            500..=599 => Err(CarrierError::Retryable(described)),
            401 | 403 | 404 => {
                self.misconfigured(&described);
                Err(CarrierError::Retryable(described))
            }
            400 => match error.code {
                Some(c) if SENDER_CODES.contains(&c) => {
                    self.misconfigured(&format!("sending from {}: {described}", sms.from));
                    Err(CarrierError::Retryable(described))
                }
                _ => Err(CarrierError::Permanent(described)),
            },
            _ => Err(CarrierError::Retryable(described)),
        }
    }
}

#[async_trait]
impl Carrier for TwilioCarrier {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn inventory(&self) -> Vec<InventoryNumber> {
        self.inventory.clone()
    }

    async fn send(&self, sms: OutboundSms) -> Result<CarrierAccepted, CarrierError> {
        if let Some(pace) = &self.pace {
            pace.wait().await;
        }
        let mut form: Vec<(&str, String)> = vec![
            ("To", sms.to.clone()),
            ("From", sms.from.clone()),
            ("Body", sms.body.clone()),
        ];
        if let Some(service) = &self.config.messaging_service_sid {
            form.push(("MessagingServiceSid", service.clone()));
        }
        if let Some(callback) = self.status_callback() {
            form.push(("StatusCallback", callback));
        }
        let response = self
            .http
            .post(&self.messages_url)
            .basic_auth(&self.config.account_sid, Some(&self.auth_token))
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                let what = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "request failed"
                };
                CarrierError::Retryable(format!("Twilio {what}: {e}"))
            })?;
        self.classify(&sms, response).await
    }
}

/// The fields of Twilio's inbound-message webhook the gateway reads (others are ignored).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct InboundForm {
    /// Twilio's id of the inbound message.
    #[serde(rename = "MessageSid", default)]
    pub message_sid: Option<String>,
    /// The outside phone (E.164), or a short code / alphanumeric sender.
    #[serde(rename = "From")]
    pub from: String,
    /// Our number that was texted (E.164).
    #[serde(rename = "To")]
    pub to: String,
    /// The text (up to 1,600 characters; Twilio joins the parts).
    #[serde(rename = "Body", default)]
    pub body: Option<String>,
    /// How many SMS parts it came in.
    #[serde(rename = "NumSegments", default)]
    pub num_segments: Option<String>,
    /// How many media items an MMS carries (`MediaUrl0` …).
    #[serde(rename = "NumMedia", default)]
    pub num_media: Option<String>,
    #[serde(rename = "AccountSid", default)]
    pub account_sid: Option<String>,
    /// Media links, appended to the body.
    #[serde(flatten, deserialize_with = "media_urls", default)]
    #[schema(ignore)]
    pub media_urls: Vec<Option<String>>,
}

/// The fields of Twilio's status callback the gateway reads.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct StatusForm {
    /// The sid `Messages.json` answered with.
    #[serde(rename = "MessageSid", default)]
    pub message_sid: Option<String>,
    /// `queued`, `sent`, `delivered`, `undelivered`, `failed`, `read`, …
    #[serde(rename = "MessageStatus", default)]
    pub message_status: Option<String>,
    /// Older name of `MessageSid`.
    #[serde(rename = "SmsSid", default)]
    pub sms_sid: Option<String>,
    /// Older name of `MessageStatus`.
    #[serde(rename = "SmsStatus", default)]
    pub sms_status: Option<String>,
    /// Twilio's error code when undelivered or failed (e.g. 30003).
    #[serde(rename = "ErrorCode", default)]
    pub error_code: Option<String>,
    #[serde(rename = "ErrorMessage", default)]
    pub error_message: Option<String>,
    #[serde(rename = "AccountSid", default)]
    pub account_sid: Option<String>,
}

/// `MediaUrl0`, `MediaUrl1`, … in order (from the flattened rest of the form).
fn media_urls<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Option<String>>, D::Error> {
    let rest = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    let mut media: Vec<(u32, String)> = rest
        .into_iter()
        .filter_map(|(key, value)| {
            let index = key.strip_prefix("MediaUrl")?.parse::<u32>().ok()?;
            Some((index, value.as_str()?.to_owned()))
        })
        .collect();
    media.sort();
    Ok(media.into_iter().map(|(_, url)| Some(url)).collect())
}

/// Our status for one of Twilio's message statuses (`None`: nothing to report).
pub fn map_status(status: &str) -> Option<ReceiptStatus> {
    match status {
        "accepted" | "scheduled" | "queued" | "sending" | "sent" => Some(ReceiptStatus::Sent),
        "delivered" | "read" => Some(ReceiptStatus::Delivered),
        "undelivered" | "failed" | "canceled" => Some(ReceiptStatus::Failed),
        _ => None,
    }
}

/// The reason stored on a failed message: Twilio's status, code and words.
fn failure_reason(status: &str, code: Option<&str>, message: Option<&str>) -> String {
    let code = code.map(str::trim).filter(|c| !c.is_empty());
    let words = message
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .or_else(|| code.and_then(error_words).map(str::to_owned));
    match (code, words) {
        (Some(code), Some(words)) => format!("Twilio {status} (error {code}): {words}"),
        (Some(code), None) => format!("Twilio {status} (error {code})"),
        (None, Some(words)) => format!("Twilio {status}: {words}"),
        (None, None) => format!("Twilio {status}"),
    }
}

/// Words for the delivery error codes status callbacks carry without a message.
fn error_words(code: &str) -> Option<&'static str> {
    Some(match code {
        "30001" => "queue overflow",
        "30002" => "account suspended",
        "30003" => "unreachable destination handset",
        "30004" => "message blocked",
        "30005" => "unknown destination handset",
        "30006" => "landline or unreachable carrier",
        "30007" => "filtered by the carrier",
        "30008" => "unknown error",
        "30010" => "message price exceeds the max price",
        "30034" => "sender not registered for A2P 10DLC",
        _ => return None,
    })
}

fn code_text(code: &serde_json::Value) -> String {
    match code {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The parts of `api.v2010.account.message` the gateway reads.
#[derive(Debug, Deserialize)]
struct MessageResource {
    sid: Option<String>,
    status: Option<String>,
    /// An integer in the spec; tolerated as a string too.
    error_code: Option<serde_json::Value>,
    error_message: Option<String>,
}

/// Twilio's error body: `{"code": 21211, "message": "…", "more_info": "…", "status": 400}`.
#[derive(Debug, Default, Deserialize)]
struct ErrorReply {
    #[serde(default, deserialize_with = "lenient_code")]
    code: Option<u32>,
    message: Option<String>,
}

fn lenient_code<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

impl ErrorReply {
    fn describe(&self, status: reqwest::StatusCode) -> String {
        let message = self.message.as_deref().unwrap_or("no message");
        match self.code {
            Some(code) => format!("Twilio error {code} (HTTP {}): {message}", status.as_u16()),
            None => format!("Twilio answered HTTP {}: {message}", status.as_u16()),
        }
    }
}

/// What Twilio signs: the URL, then each parameter name followed by each of its distinct
/// values, names and values sorted (by code point, which UTF-8 byte order equals).
pub fn signing_string(url: &str, params: &[(String, String)]) -> String {
    let mut sorted: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (name, value) in params {
        sorted.entry(name).or_default().insert(value);
    }
    let mut out = url.to_owned();
    for (name, values) in sorted {
        for value in values {
            out.push_str(name);
            out.push_str(value);
        }
    }
    out
}

/// `X-Twilio-Signature` for a request to `url` with form `params`, signed with `auth_token`.
pub fn compute_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    // HMAC accepts keys of any length; the error arm cannot happen.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()) else {
        return String::new();
    };
    mac.update(signing_string(url, params).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// `url` as written, and with its port toggled: the default port added when it has none,
/// removed when it has one (string surgery, so nothing else in the URL is normalised).
fn port_variants(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return vec![url.to_owned()];
    };
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    let explicit_port = authority
        .rsplit_once(':')
        .filter(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    let toggled = match explicit_port {
        Some((host, _)) => format!("{scheme}://{host}{tail}"),
        None => {
            let port = if scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                80
            };
            format!("{scheme}://{authority}:{port}{tail}")
        }
    };
    vec![url.to_owned(), toggled]
}

/// ISO 3166 alpha-2 of an E.164 number (`ZZ` when unknown).
pub(crate) fn country_of(number: &str) -> String {
    let Ok(parsed) = phonenumber::parse(None, number) else {
        return "ZZ".to_owned();
    };
    if let Some(id) = parsed.country().id() {
        return id.as_ref().to_owned();
    }
    // Numbers outside any allocated range (e.g. fictional 555-01xx) still have a calling code.
    phonenumber::metadata::DATABASE
        .region(&parsed.country().code())
        .and_then(|ids| ids.first().map(|id| id.to_string()))
        .unwrap_or_else(|| "ZZ".to_owned())
}

/// How many inbound `MessageSid`s are remembered for spotting repeats.
const RECENT_INBOUND: usize = 10_000;

/// A bounded set of recent sids (oldest forgotten first).
#[derive(Debug, Default)]
struct RecentSids {
    order: std::collections::VecDeque<String>,
    set: std::collections::HashSet<String>,
}

impl RecentSids {
    /// False when `sid` is already there.
    fn insert(&mut self, sid: &str) -> bool {
        if self.set.contains(sid) {
            return false;
        }
        while self.order.len() >= RECENT_INBOUND {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(sid.to_owned());
        self.set.insert(sid.to_owned());
        true
    }

    fn remove(&mut self, sid: &str) {
        if self.set.remove(sid) {
            self.order.retain(|s| s != sid);
        }
    }
}

/// Spaces sends `1/rate` apart: a token bucket holding one token.
#[derive(Debug)]
struct Pace {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Pace {
    fn new(rate: u32) -> Pace {
        Pace {
            interval: Duration::from_secs(1) / rate.max(1),
            next: Mutex::new(None),
        }
    }

    async fn wait(&self) {
        let now = Instant::now();
        let slot = {
            let mut next = lock(&self.next);
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + self.interval);
            slot
        };
        let wait = slot.saturating_duration_since(now);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn twilio_documented_example_signature() {
        // The parameters of Twilio's webhook-security example; the expected value is what the
        // official `twilio` package's RequestValidator computes for them.
        let params = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(
            compute_signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }

    #[test]
    fn repeated_values_are_sorted_and_deduplicated() {
        let params = pairs(&[("b", "2"), ("a", "z"), ("a", "y"), ("a", "z")]);
        assert_eq!(signing_string("u", &params), "uayazb2");
    }

    #[test]
    fn ports_are_toggled_without_normalising() {
        assert_eq!(
            port_variants("https://x.org/a?b=%2F"),
            vec!["https://x.org/a?b=%2F", "https://x.org:443/a?b=%2F"]
        );
        assert_eq!(
            port_variants("http://127.0.0.1:8080/v1"),
            vec!["http://127.0.0.1:8080/v1", "http://127.0.0.1/v1"]
        );
    }

    #[test]
    fn statuses_map_forward() {
        assert_eq!(map_status("queued"), Some(ReceiptStatus::Sent));
        assert_eq!(map_status("read"), Some(ReceiptStatus::Delivered));
        assert_eq!(map_status("canceled"), Some(ReceiptStatus::Failed));
        assert_eq!(map_status("received"), None);
        assert_eq!(
            failure_reason("undelivered", Some("30003"), None),
            "Twilio undelivered (error 30003): unreachable destination handset"
        );
    }

    #[test]
    fn countries_come_from_the_number() {
        assert_eq!(country_of("+14155550100"), "US");
        assert_eq!(country_of("+442071838750"), "GB");
    }
}
