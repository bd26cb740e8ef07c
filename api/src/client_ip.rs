//! The address of the client a request comes from: the peer address, or behind trusted proxies
//! the address the nearest of them recorded in a header such as `X-Forwarded-For`.
//!
//! Each proxy appends the address it received the request from, so the right end of the header
//! is written by the proxies and the left end by whoever sent the request: a client can put
//! anything there. With `hops` trusted proxies in front of lct, the client is the `hops`-th
//! entry from the right; entries to its left are ignored.

use axum::http::{HeaderMap, HeaderName};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// Where the client address comes from.
#[derive(Debug, Clone)]
pub struct ClientIpSource {
    header: Option<HeaderName>,
    hops: usize,
}

impl Default for ClientIpSource {
    /// The peer address.
    fn default() -> Self {
        Self { header: None, hops: 1 }
    }
}

impl ClientIpSource {
    /// Reads the client address from `header` (when set), `hops` entries from the right (at
    /// least 1). Errors: the header name is invalid.
    pub fn new(header: Option<&str>, hops: usize) -> Result<Self, axum::http::header::InvalidHeaderName> {
        let header = match header.map(str::trim).filter(|h| !h.is_empty()) {
            Some(name) => Some(HeaderName::try_from(name.to_ascii_lowercase())?),
            None => None,
        };
        Ok(Self { header, hops: hops.max(1) })
    }

    /// Whether requests come through trusted proxies (so the peer is a proxy, not a client).
    pub fn behind_proxy(&self) -> bool {
        self.header.is_some()
    }

    /// Whether a request with `headers` came through the trusted proxies (it carries their
    /// header): never when lct is not behind proxies.
    pub fn proxied(&self, headers: &HeaderMap) -> bool {
        self.header.as_ref().is_some_and(|name| headers.contains_key(name))
    }

    /// The client address of a request with `headers` from `peer`. Behind proxies: the entry
    /// `hops` from the right of the header (every line of it, in order); the peer address when
    /// the header is absent, has fewer entries than trusted proxies or that entry is no address.
    pub fn client_ip(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<IpAddr> {
        let Some(name) = &self.header else { return peer };
        let entries: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        let entry = entries.len().checked_sub(self.hops).map(|at| entries[at]);
        entry.and_then(parse_address).or(peer)
    }
}

/// The address rate limits and connection caps count a client by: itself for IPv4, its /64 for
/// IPv6, since a host is usually given a whole /64 and may send from any address in it.
pub fn limited_as(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
        v4 => v4,
    }
}

/// An address as proxies write it: `1.2.3.4`, `2001:db8::1`, or with a port.
fn parse_address(entry: &str) -> Option<IpAddr> {
    entry.parse::<IpAddr>().ok().or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for line in lines {
            map.append("x-forwarded-for", line.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64_and_ipv4_ones_by_their_address() {
        let limited = |text: &str| limited_as(text.parse().unwrap());
        assert_eq!(limited("2001:db8:1:2::1"), limited("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_eq!(limited("2001:db8:1:2:3:4:5:6"), ip("2001:db8:1:2::").unwrap());
        assert_ne!(limited("2001:db8:1:2::1"), limited("2001:db8:1:3::1"));
        assert_eq!(limited("198.51.100.7"), ip("198.51.100.7").unwrap());
        assert_ne!(limited("198.51.100.7"), limited("198.51.100.8"));
        assert_eq!(limited("::ffff:198.51.100.7"), ip("198.51.100.7").unwrap(), "an IPv4 client on a dual stack");
    }

    #[test]
    fn without_a_header_the_peer_is_the_client() {
        let source = ClientIpSource::default();
        assert_eq!(source.client_ip(&headers(&["198.51.100.1"]), ip("10.0.0.1")), ip("10.0.0.1"));
        assert!(!source.behind_proxy());
    }

    #[test]
    fn one_proxy_means_the_right_most_entry_whatever_the_client_wrote_before_it() {
        let source = ClientIpSource::new(Some("X-Forwarded-For"), 1).unwrap();
        let peer = ip("10.0.0.1");
        assert_eq!(source.client_ip(&headers(&["198.51.100.7"]), peer), ip("198.51.100.7"));
        assert_eq!(source.client_ip(&headers(&["203.0.113.9, 198.51.100.7"]), peer), ip("198.51.100.7"));
        assert_eq!(source.client_ip(&headers(&["garbage", "198.51.100.7"]), peer), ip("198.51.100.7"));
        assert_eq!(source.client_ip(&headers(&["[2001:db8::7]:443"]), peer), ip("2001:db8::7"));
        assert_eq!(source.client_ip(&headers(&["198.51.100.7:5000"]), peer), ip("198.51.100.7"));
    }

    #[test]
    fn more_hops_count_from_the_right() {
        let source = ClientIpSource::new(Some("x-forwarded-for"), 2).unwrap();
        let peer = ip("10.0.0.1");
        assert_eq!(source.client_ip(&headers(&["1.1.1.1, 198.51.100.9, 10.1.0.1"]), peer), ip("198.51.100.9"));
        assert_eq!(source.client_ip(&headers(&["198.51.100.9", "10.1.0.1"]), peer), ip("198.51.100.9"));
        // Fewer entries than trusted proxies: the request skipped one; the peer is what is known.
        assert_eq!(source.client_ip(&headers(&["10.1.0.1"]), peer), peer);
        assert_eq!(source.client_ip(&HeaderMap::new(), peer), peer);
    }

    #[test]
    fn an_entry_that_is_no_address_falls_back_to_the_peer() {
        let source = ClientIpSource::new(Some("x-forwarded-for"), 1).unwrap();
        assert_eq!(source.client_ip(&headers(&["unknown"]), ip("10.0.0.1")), ip("10.0.0.1"));
        assert!(ClientIpSource::new(Some("bad header\n"), 1).is_err());
    }
}
