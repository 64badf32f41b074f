//! HTTP/1.1 over a bare TCP socket, for tests of what a connection does between and around
//! requests (keep-alive, timeouts, half-sent heads) that an HTTP client library hides.
#![allow(clippy::indexing_slicing)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One connection, with what it has read but not yet handed out.
pub struct RawConn {
    pub stream: TcpStream,
    buffered: Vec<u8>,
}

/// A response: status, lower-cased head and body.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Whether the server said it closes the connection after this response.
    pub fn closes(&self) -> bool {
        self.head
            .lines()
            .any(|line| line.starts_with("connection:") && line.contains("close"))
    }
}

impl RawConn {
    pub async fn connect(addr: std::net::SocketAddr) -> RawConn {
        RawConn {
            stream: TcpStream::connect(addr).await.unwrap(),
            buffered: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// `GET path` with keep-alive.
    pub async fn get(&mut self, path: &str) -> std::io::Result<()> {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
            .await
    }

    /// The next response; `None` if the server closed the connection first (or within
    /// `within`, which is only a bound against hanging, never a measurement).
    pub async fn response(&mut self, within: Duration) -> Option<RawResponse> {
        tokio::time::timeout(within, self.read_response())
            .await
            .ok()
            .flatten()
    }

    async fn read_response(&mut self) -> Option<RawResponse> {
        loop {
            if let Some(end) = find(&self.buffered, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buffered[..end]).to_lowercase();
                let status = head.split_whitespace().nth(1)?.parse().ok()?;
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let total = end + 4 + length;
                while self.buffered.len() < total {
                    if !self.fill().await {
                        return None;
                    }
                }
                let body = self.buffered[end + 4..total].to_vec();
                self.buffered.drain(..total);
                return Some(RawResponse { status, head, body });
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Reads more; false at end of stream or on an error (a reset is a close too).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buffered.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Waits until the server closes the connection, reading (and dropping) whatever comes;
    /// false if it is still open after `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, async { while self.fill().await {} })
            .await
            .is_ok()
    }

    /// Whether bytes are waiting now (without waiting for any).
    pub fn has_pending_bytes(&self) -> bool {
        let mut probe = [0u8; 1];
        !self.buffered.is_empty() || self.stream.try_read(&mut probe).is_ok()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
