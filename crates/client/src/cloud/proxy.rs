//! The optional proxy every connection to the gateway goes through (HTTP and WebSocket alike).
//!
//! - `socks5h://host:port`: SOCKS5, names resolved *by the proxy* (Tor: the gateway's name
//!   never touches local DNS);
//! - `socks5://host:port`: SOCKS5, names resolved locally;
//! - `http://host:port`: an HTTP proxy (CONNECT for the WebSocket).
//!
//! When a proxy is configured and cannot be reached, the connection fails. There is no
//! fallback to a direct connection: a person who asked for Tor must never leak their address.

use std::fmt;
use std::str::FromStr;

use airtext_api::ErrorCode;
use reqwest::Url;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::Io;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// SOCKS5 with names resolved by the proxy.
    Socks5h,
    /// SOCKS5 with names resolved here.
    Socks5,
    /// An HTTP proxy (CONNECT).
    Http,
}

/// A parsed proxy URL.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    pub kind: ProxyKind,
    pub host: String,
    pub port: u16,
    credentials: Option<(String, String)>,
    url: String,
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the proxy password.
        f.debug_struct("ProxyUrl")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.kind {
            ProxyKind::Socks5h => "socks5h",
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Http => "http",
        };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

impl FromStr for ProxyUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::invalid(
                ErrorCode::InvalidField,
                format!("proxy {s:?}: {why} (use socks5h://HOST:PORT, socks5://HOST:PORT or http://HOST:PORT)"),
            )
        };
        let url = Url::parse(s).map_err(|e| bad(&e.to_string()))?;
        let kind = match url.scheme() {
            "socks5h" => ProxyKind::Socks5h,
            "socks5" => ProxyKind::Socks5,
            "http" => ProxyKind::Http,
            other => return Err(bad(&format!("unsupported scheme {other:?}"))),
        };
        let host = url
            .host_str()
            .ok_or_else(|| bad("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(1080);
        let credentials = (!url.username().is_empty()).then(|| {
            (
                url.username().to_owned(),
                url.password().unwrap_or_default().to_owned(),
            )
        });
        Ok(ProxyUrl {
            kind,
            host,
            port,
            credentials,
            url: s.to_owned(),
        })
    }
}

impl ProxyUrl {
    /// The proxy for reqwest (which speaks all three kinds).
    pub fn for_reqwest(&self) -> Result<reqwest::Proxy> {
        reqwest::Proxy::all(&self.url).map_err(|e| Error::Proxy {
            proxy: self.to_string(),
            detail: e.to_string(),
        })
    }

    fn error(&self, detail: impl fmt::Display) -> Error {
        Error::Proxy {
            proxy: self.to_string(),
            detail: detail.to_string(),
        }
    }

    /// A TCP stream to `host:port` through the proxy.
    pub async fn connect(&self, host: &str, port: u16) -> Result<Box<dyn Io>> {
        let proxy_addr = (self.host.as_str(), self.port);
        match self.kind {
            ProxyKind::Socks5h | ProxyKind::Socks5 => {
                let target: tokio_socks::TargetAddr<'_> = if self.kind == ProxyKind::Socks5 {
                    let addr = tokio::net::lookup_host((host, port))
                        .await
                        .map_err(|e| self.error(format!("cannot resolve {host}: {e}")))?
                        .next()
                        .ok_or_else(|| self.error(format!("{host} has no address")))?;
                    tokio_socks::TargetAddr::Ip(addr)
                } else {
                    tokio_socks::TargetAddr::Domain(host.into(), port)
                };
                let stream = match &self.credentials {
                    Some((user, pass)) => {
                        tokio_socks::tcp::Socks5Stream::connect_with_password(
                            proxy_addr, target, user, pass,
                        )
                        .await
                    }
                    None => tokio_socks::tcp::Socks5Stream::connect(proxy_addr, target).await,
                }
                .map_err(|e| self.error(e))?;
                Ok(Box::new(stream))
            }
            ProxyKind::Http => {
                let mut stream = TcpStream::connect(proxy_addr)
                    .await
                    .map_err(|e| self.error(e))?;
                let mut request =
                    format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n");
                if let Some((user, pass)) = &self.credentials {
                    use base64_lite::encode;
                    request.push_str(&format!(
                        "Proxy-Authorization: Basic {}\r\n",
                        encode(format!("{user}:{pass}").as_bytes())
                    ));
                }
                request.push_str("\r\n");
                stream
                    .write_all(request.as_bytes())
                    .await
                    .map_err(|e| self.error(e))?;
                let mut reader = BufReader::new(stream);
                let mut status = String::new();
                reader
                    .read_line(&mut status)
                    .await
                    .map_err(|e| self.error(e))?;
                if status.split_whitespace().nth(1) != Some("200") {
                    return Err(self.error(format!("CONNECT refused: {}", status.trim())));
                }
                loop {
                    let mut line = String::new();
                    let n = reader
                        .read_line(&mut line)
                        .await
                        .map_err(|e| self.error(e))?;
                    if n == 0 || line == "\r\n" || line == "\n" {
                        break;
                    }
                }
                Ok(Box::new(reader.into_inner()))
            }
        }
    }
}

/// Base64 for one header, without another dependency.
mod base64_lite {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
        for chunk in input.chunks(3) {
            let b = [
                chunk.first().copied().unwrap_or(0),
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for (i, shift) in [18u32, 12, 6, 0].iter().enumerate() {
                if i <= chunk.len() {
                    let index = ((n >> shift) & 63) as usize;
                    out.push(char::from(ALPHABET.get(index).copied().unwrap_or(b'=')));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn encodes_like_rfc4648() {
        assert_eq!(encode(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(encode(b"ab"), "YWI=");
        assert_eq!(encode(b"a"), "YQ==");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_kinds_and_hides_passwords() {
        let p: ProxyUrl = "socks5h://127.0.0.1:9050".parse().unwrap();
        assert_eq!(p.kind, ProxyKind::Socks5h);
        assert_eq!((p.host.as_str(), p.port), ("127.0.0.1", 9050));
        let p = ProxyUrl::from_str("socks5://u:secret@proxy.example:1080").unwrap();
        assert_eq!(p.kind, ProxyKind::Socks5);
        assert!(!format!("{p:?}").contains("secret"));
        assert!(!p.to_string().contains("secret"));
        assert_eq!(
            ProxyUrl::from_str("http://10.0.0.1:3128").unwrap().kind,
            ProxyKind::Http
        );
        assert!(ProxyUrl::from_str("ftp://x:1").is_err());
        assert!(ProxyUrl::from_str("not a url").is_err());
    }
}
