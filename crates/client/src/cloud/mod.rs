//! The connection to the gateway: API v1 over HTTP ([`Cloud`]) and the `/v1/stream`
//! WebSocket ([`stream`]), both through the optional [`proxy::ProxyUrl`].
//!
//! Every failure comes back as a typed [`Error`]: `Api` with the gateway's own
//! `{code, message}`, `Network` when the gateway could not be reached, `Proxy` when the
//! configured proxy could not (never followed by a direct attempt).

mod app_calls;
pub mod backoff;
pub mod proxy;
pub mod stream;

use std::time::Duration;

use airtext_api::accounts::{
    AccountCreated, ChangePassword, DeleteAccount, Me, Session, SignIn, SignUp,
};
use airtext_api::contacts::{Contact, PutContact};
use airtext_api::identities::{AddIdentity, IdentityPending, IdentityVerified, VerifyIdentity};
use airtext_api::messages::{Lookup, Message, SendMessage};
use airtext_api::numbers::{AvailableNumbers, ClaimNumber, ClaimedNumber};
use airtext_api::sync::SyncPage;
use airtext_api::{ErrorBody, ErrorCode, IdentityId};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{Error, Result};
pub use proxy::ProxyUrl;

/// A byte stream to the gateway (direct TCP, or a tunnel through the proxy).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// `POST /v1/messages/record` (an extension of API v1, see docs/decisions.md).
pub use airtext_api::messages::RecordCellular;

/// `GET /v1/contacts` (an extension listed in docs/decisions.md).
#[derive(Debug, Clone, Deserialize)]
struct ContactList {
    contacts: Vec<Contact>,
}

/// An API v1 client for one gateway, optionally signed in (holding a device token).
#[derive(Clone)]
pub struct Cloud {
    http: reqwest::Client,
    base: Url,
    proxy: Option<ProxyUrl>,
    token: Option<String>,
}

impl std::fmt::Debug for Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cloud")
            .field("base", &self.base.as_str())
            .field("proxy", &self.proxy)
            .field("signed_in", &self.token.is_some())
            .finish()
    }
}

impl Cloud {
    /// A client for the gateway at `base` (`http://…` or `https://…`).
    pub fn new(base: &str, proxy: Option<ProxyUrl>) -> Result<Cloud> {
        let base = Url::parse(base).map_err(|e| {
            Error::invalid(
                ErrorCode::InvalidField,
                format!("gateway URL {base:?}: {e} (expected e.g. https://sms.example.org)"),
            )
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(Error::invalid(
                ErrorCode::InvalidField,
                format!("gateway URL {base}: must be http:// or https://"),
            ));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("airtext/", env!("CARGO_PKG_VERSION")));
        builder = match &proxy {
            Some(proxy) => builder.proxy(proxy.for_reqwest()?),
            // No proxy configured means none: ignore HTTP_PROXY & co. so behaviour is explicit.
            None => builder.no_proxy(),
        };
        let http = builder
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Cloud {
            http,
            base,
            proxy,
            token: None,
        })
    }

    /// The same client, signed in with `token`.
    pub fn with_token(&self, token: impl Into<String>) -> Cloud {
        Cloud {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    pub fn proxy(&self) -> Option<&ProxyUrl> {
        self.proxy.as_ref()
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn url(&self, segments: &[&str]) -> Result<Url> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| Error::Config(format!("gateway URL {} has no path", self.base)))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn transport_error(&self, e: &reqwest::Error) -> Error {
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            detail = format!("{detail}: {s}");
            source = s.source();
        }
        match &self.proxy {
            Some(proxy) if e.is_connect() || e.is_timeout() => Error::Proxy {
                proxy: proxy.to_string(),
                detail,
            },
            _ => Error::Network {
                url: self.base.to_string(),
                detail,
            },
        }
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&(dyn erased::Json + Sync)>,
    ) -> Result<reqwest::Response> {
        let mut request = self.http.request(method, url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_json()?);
        }
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str::<ErrorBody>(&text).unwrap_or_else(|_| ErrorBody {
            code: code_for_status(status),
            message: format!(
                "the gateway answered {status}{}",
                if text.is_empty() {
                    String::new()
                } else {
                    format!(": {}", text.chars().take(200).collect::<String>())
                }
            ),
        });
        Err(Error::Api {
            status: status.as_u16(),
            body,
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&(dyn erased::Json + Sync)>,
    ) -> Result<T> {
        let response = self.send(method, url, body).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Protocol(e.to_string()))
    }

    pub async fn sign_up(&self, request: &SignUp) -> Result<AccountCreated> {
        self.json(Method::POST, self.url(&["v1", "accounts"])?, Some(request))
            .await
    }

    pub async fn sign_in(&self, request: &SignIn) -> Result<Session> {
        self.json(Method::POST, self.url(&["v1", "sessions"])?, Some(request))
            .await
    }

    /// Ends this device's session: its token stops working everywhere at once.
    pub async fn sign_out(&self) -> Result<()> {
        self.send(
            Method::DELETE,
            self.url(&["v1", "sessions", "current"])?,
            None,
        )
        .await
        .map(drop)
    }

    pub async fn me(&self) -> Result<Me> {
        self.json(Method::GET, self.url(&["v1", "me"])?, None).await
    }

    pub async fn available_numbers(
        &self,
        country: Option<&str>,
        area_code: Option<&str>,
        limit: Option<u32>,
    ) -> Result<AvailableNumbers> {
        let mut url = self.url(&["v1", "numbers", "available"])?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(country) = country {
                query.append_pair("country", country);
            }
            if let Some(area_code) = area_code {
                query.append_pair("area_code", area_code);
            }
            if let Some(limit) = limit {
                query.append_pair("limit", &limit.to_string());
            }
        }
        self.json(Method::GET, url, None).await
    }

    pub async fn claim_number(&self, number: &str) -> Result<ClaimedNumber> {
        let request = ClaimNumber {
            number: number.to_owned(),
        };
        self.json(Method::POST, self.url(&["v1", "numbers"])?, Some(&request))
            .await
    }

    /// `DELETE /v1/numbers/{number}`: gives the account's number back.
    pub async fn change_password(&self, request: &ChangePassword) -> Result<()> {
        let url = self.url(&["v1", "accounts", "me", "password"])?;
        self.send(Method::POST, url, Some(request)).await.map(drop)
    }

    pub async fn delete_account(&self, request: &DeleteAccount) -> Result<()> {
        let url = self.url(&["v1", "accounts", "me"])?;
        self.send(Method::DELETE, url, Some(request))
            .await
            .map(drop)
    }

    pub async fn release_number(&self, number: &str) -> Result<()> {
        self.send(Method::DELETE, self.url(&["v1", "numbers", number])?, None)
            .await
            .map(drop)
    }

    pub async fn add_identity(&self, request: &AddIdentity) -> Result<IdentityPending> {
        self.json(
            Method::POST,
            self.url(&["v1", "identities"])?,
            Some(request),
        )
        .await
    }

    pub async fn verify_identity(&self, id: IdentityId, code: &str) -> Result<IdentityVerified> {
        let request = VerifyIdentity {
            code: code.to_owned(),
        };
        let id = id.to_string();
        self.json(
            Method::POST,
            self.url(&["v1", "identities", &id, "verify"])?,
            Some(&request),
        )
        .await
    }

    /// `POST /v1/messages`: idempotent by `client_id` (a repeat returns the first message).
    pub async fn send_message(&self, request: &SendMessage) -> Result<Message> {
        self.json(Method::POST, self.url(&["v1", "messages"])?, Some(request))
            .await
    }

    /// Records a text that went over this device's cellular path (the PROPOSED
    /// `POST /v1/messages/record`; see [`RecordCellular`]).
    pub async fn record_cellular_message(&self, request: &RecordCellular) -> Result<Message> {
        self.json(
            Method::POST,
            self.url(&["v1", "messages", "record"])?,
            Some(request),
        )
        .await
    }

    pub async fn lookup(&self, address: &str) -> Result<Lookup> {
        let mut url = self.url(&["v1", "lookup"])?;
        url.query_pairs_mut().append_pair("address", address);
        self.json(Method::GET, url, None).await
    }

    pub async fn put_contact(&self, address: &str, request: &PutContact) -> Result<Contact> {
        self.json(
            Method::PUT,
            self.url(&["v1", "contacts", address])?,
            Some(request),
        )
        .await
    }

    pub async fn contacts(&self) -> Result<Vec<Contact>> {
        let list: ContactList = self
            .json(Method::GET, self.url(&["v1", "contacts"])?, None)
            .await?;
        Ok(list.contacts)
    }

    pub async fn delete_contact(&self, address: &str) -> Result<()> {
        self.send(
            Method::DELETE,
            self.url(&["v1", "contacts", address])?,
            None,
        )
        .await
        .map(drop)
    }

    pub async fn remove_identity(&self, id: IdentityId) -> Result<()> {
        let id = id.to_string();
        self.send(Method::DELETE, self.url(&["v1", "identities", &id])?, None)
            .await
            .map(drop)
    }

    /// `GET /v1/sync?after=&limit=`
    pub async fn sync(&self, after: i64, limit: u32) -> Result<SyncPage> {
        let mut url = self.url(&["v1", "sync"])?;
        url.query_pairs_mut()
            .append_pair("after", &after.to_string())
            .append_pair("limit", &limit.to_string());
        self.json(Method::GET, url, None).await
    }
}

fn code_for_status(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        400 => ErrorCode::BadRequest,
        401 => ErrorCode::Unauthorized,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        413 => ErrorCode::PayloadTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        429 => ErrorCode::RateLimited,
        500 => ErrorCode::Internal,
        _ if status.is_server_error() => ErrorCode::Unavailable,
        _ => ErrorCode::Unknown,
    }
}

/// Request bodies as one object-safe trait, so the request helpers are not generic over them.
mod erased {
    use crate::error::{Error, Result};

    pub trait Json {
        fn to_json(&self) -> Result<Vec<u8>>;
    }

    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Result<Vec<u8>> {
            serde_json::to_vec(self).map_err(|e| Error::Protocol(e.to_string()))
        }
    }
}
