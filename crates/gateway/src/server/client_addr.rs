//! The client's address behind proxies: the peer of the TCP connection, unless that peer is a
//! trusted proxy (`trusted_proxies`), in which case the forwarding header it appends to names
//! the hops, and the client is the right-most hop that is not itself a trusted proxy.
//!
//! Invariants:
//! - a forwarding header from a peer that is not trusted is ignored whole: anyone can send one;
//! - only hops appended by trusted proxies are believed: walking from the right, the first hop
//!   outside `trusted_proxies` is the client (anything left of it was written by that client);
//! - one header is read, the one the proxies are configured to write (`forwarded_header`):
//!   a proxy that appends to `X-Forwarded-For` passes a client's own `Forwarded` through
//!   untouched, so reading both would let a client choose its address;
//! - a hop that is not an address (`unknown`, an obfuscated name) stops the walk: the client is
//!   then the trusted proxy that reported it, which at least limits that proxy's clients together.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;
use serde::Deserialize;

/// Networks whose forwarding header is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// Which header trusted proxies write the client into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1` (nginx's `$proxy_add_x_forwarded_for`).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for=proxy1`.
    Forwarded,
}

impl TrustedProxies {
    /// Parses CIDRs (`10.0.0.0/8`, `fd00::/8`) and single addresses (`127.0.0.1`).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> anyhow::Result<TrustedProxies> {
        let mut nets = Vec::with_capacity(entries.len());
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            let net = match entry.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => match entry.parse::<IpAddr>() {
                    Ok(ip) => {
                        let ip = ip.to_canonical();
                        let bits = if ip.is_ipv4() { 32 } else { 128 };
                        IpNet::new(ip, bits).map_err(|e| anyhow::anyhow!("trusted_proxies: {entry}: {e}"))?
                    }
                    Err(_) => anyhow::bail!(
                        "trusted_proxies: {entry:?} is neither a CIDR (10.0.0.0/8) nor an address (127.0.0.1)"
                    ),
                },
            };
            nets.push(net);
        }
        Ok(TrustedProxies(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request that came from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap, header: ForwardedHeader) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let hops = match header {
            ForwardedHeader::XForwardedFor => x_forwarded_for(headers),
            ForwardedHeader::Forwarded => forwarded_for(headers),
        };
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) if self.contains(*ip) => client = *ip,
                Some(ip) => return *ip,
                None => return client,
            }
        }
        client
    }
}

impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(deserializer)?;
        TrustedProxies::parse(&entries).map_err(serde::de::Error::custom)
    }
}

/// Every hop of every `X-Forwarded-For` line, left to right; `None` for a hop that is not an
/// address.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|line| {
            let text = line.to_str().unwrap_or("");
            text.split(',').map(|hop| parse_hop(hop.trim()))
        })
        .collect()
}

/// The `for=` of every element of every `Forwarded` line, left to right.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("forwarded")
        .iter()
        .flat_map(|line| {
            let text = line.to_str().unwrap_or("");
            text.split(',')
                .map(|element| {
                    element
                        .split(';')
                        .filter_map(|pair| pair.split_once('='))
                        .find(|(key, _)| key.trim().eq_ignore_ascii_case("for"))
                        .and_then(|(_, value)| parse_hop(value.trim().trim_matches('"')))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]` or `[::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = hop.strip_prefix('[') {
        let (ip, _) = rest.split_once(']')?;
        return ip.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    }
    let (ip, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    fn headers(name: &'static str, lines: &[&'static str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for line in lines {
            map.append(name, axum::http::HeaderValue::from_static(line));
        }
        map
    }

    fn proxies(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(entries).unwrap_or_default()
    }

    #[test]
    fn an_untrusted_peer_cannot_name_another_client() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let spoofed = headers("x-forwarded-for", &["1.1.1.1"]);
        assert_eq!(
            trusted.client(ip("203.0.113.9"), &spoofed, ForwardedHeader::XForwardedFor),
            ip("203.0.113.9")
        );
        let nobody = TrustedProxies::default();
        assert_eq!(
            nobody.client(ip("10.0.0.1"), &spoofed, ForwardedHeader::XForwardedFor),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = proxies(&["10.0.0.0/8", "127.0.0.1"]);
        // The client wrote "1.1.1.1" itself; nginx appended the address it saw.
        let forwarded = headers("x-forwarded-for", &["1.1.1.1, 198.51.100.7", "10.1.2.3"]);
        assert_eq!(
            trusted.client(ip("127.0.0.1"), &forwarded, ForwardedHeader::XForwardedFor),
            ip("198.51.100.7")
        );
        // Every hop trusted: the left-most one is all we know.
        let internal = headers("x-forwarded-for", &["10.9.9.9, 10.1.1.1"]);
        assert_eq!(
            trusted.client(ip("127.0.0.1"), &internal, ForwardedHeader::XForwardedFor),
            ip("10.9.9.9")
        );
        // No header from a trusted peer: the peer is the client.
        assert_eq!(
            trusted.client(
                ip("10.0.0.5"),
                &HeaderMap::new(),
                ForwardedHeader::XForwardedFor
            ),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn an_unreadable_hop_stops_at_the_proxy_that_reported_it() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let forwarded = headers("x-forwarded-for", &["198.51.100.7, unknown, 10.0.0.2"]);
        assert_eq!(
            trusted.client(ip("10.0.0.1"), &forwarded, ForwardedHeader::XForwardedFor),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn only_the_configured_header_is_read() {
        let trusted = proxies(&["127.0.0.0/8"]);
        let mut both = headers("x-forwarded-for", &["198.51.100.7"]);
        both.append(
            "forwarded",
            axum::http::HeaderValue::from_static("for=1.1.1.1"),
        );
        assert_eq!(
            trusted.client(ip("127.0.0.1"), &both, ForwardedHeader::XForwardedFor),
            ip("198.51.100.7")
        );
        assert_eq!(
            trusted.client(ip("127.0.0.1"), &both, ForwardedHeader::Forwarded),
            ip("1.1.1.1")
        );
    }

    #[test]
    fn forwarded_elements_quote_ports_and_ipv6() {
        let trusted = proxies(&["2001:db8::/32"]);
        let forwarded = headers(
            "forwarded",
            &["for=\"[2001:db8:cafe::17]:4711\";proto=https, For=\"[2001:db8::1]\""],
        );
        assert_eq!(
            trusted.client(ip("2001:db8::2"), &forwarded, ForwardedHeader::Forwarded),
            ip("2001:db8:cafe::17")
        );
        let v4 = headers("forwarded", &["for=192.0.2.60:8080;by=203.0.113.43"]);
        assert_eq!(
            trusted.client(ip("2001:db8::2"), &v4, ForwardedHeader::Forwarded),
            ip("192.0.2.60")
        );
    }

    #[test]
    fn mapped_ipv4_peers_match_ipv4_networks() {
        let trusted = proxies(&["127.0.0.1"]);
        let forwarded = headers("x-forwarded-for", &["198.51.100.7"]);
        assert_eq!(
            trusted.client(
                ip("::ffff:127.0.0.1"),
                &forwarded,
                ForwardedHeader::XForwardedFor
            ),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn bad_entries_are_named() {
        let error = TrustedProxies::parse(&["10.0.0.0/8", "ten"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("\"ten\""), "{error}");
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
    }
}
