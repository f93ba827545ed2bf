//! Who a client is, for the per-address limits: the TCP peer, or, when the
//! peer is one of the configured reverse proxies, the address the proxy says
//! it forwarded for. Behind a proxy every browser arrives from the proxy's
//! address, so without this one client could use up the whole site's per-IP
//! limit; trusting the headers from anyone else would let every client name
//! itself.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// Whether `peer` is one of the `trusted` proxies (`--trusted-proxy`).
pub fn is_trusted_proxy(peer: IpAddr, trusted: &[IpNet]) -> bool {
    let peer = canonical(peer);
    trusted.iter().any(|net| net.contains(&peer))
}

/// The client's address: `peer` itself unless `peer` is in `trusted`. From a
/// trusted proxy, the right-most `X-Forwarded-For` address that is not itself
/// a trusted proxy (the hops to its left are written by the client and prove
/// nothing), else `X-Real-IP`, else the peer.
///
/// An `X-Forwarded-For` entry that is not an address stops the walk at the
/// nearest address already known, so a garbled header can never name a
/// client the proxies did not vouch for.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| is_trusted_proxy(ip, trusted);
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    if !hops.is_empty() {
        let mut nearest = peer;
        for hop in hops.iter().rev() {
            match parse_hop(hop) {
                Some(ip) if is_trusted(ip) => nearest = ip,
                Some(ip) => return ip,
                None => return nearest,
            }
        }
        // Every hop is one of our proxies: the left-most one is the client.
        return nearest;
    }
    headers
        .get("x-real-ip")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_hop)
        .unwrap_or(peer)
}

/// The key the per-address limits count under: an IPv4 address itself, an
/// IPv6 address's /64 network (the smallest block one subscriber line is
/// given, so one client cannot take 2^64 separate places).
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
    }
}

/// One forwarded address as proxies write it: `192.0.2.1`, `2001:db8::1`,
/// with or without a port (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(canonical)
}

/// An IPv4 client on a dual-stack socket arrives as `::ffff:a.b.c.d`; it is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn headers(list: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in list {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn headers_count_only_from_a_trusted_proxy() {
        let h = headers(&[("x-forwarded-for", "192.0.2.7"), ("x-real-ip", "192.0.2.8")]);
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(client_addr(ip("10.1.2.3"), &h, &trusted), ip("192.0.2.7"));
        assert_eq!(
            client_addr(ip("198.51.100.1"), &h, &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(client_addr(ip("10.1.2.3"), &h, &[]), ip("10.1.2.3"));
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "::1/128"]);
        // The client wrote 203.0.113.66 itself; our proxies added the rest.
        let h = headers(&[("x-forwarded-for", "203.0.113.66, 192.0.2.7, 10.0.0.2")]);
        assert_eq!(client_addr(ip("10.0.0.1"), &h, &trusted), ip("192.0.2.7"));
        // Several header lines read as one list.
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.66"),
            ("x-forwarded-for", "[2001:db8::5]:4711, 10.0.0.2"),
        ]);
        assert_eq!(client_addr(ip("::1"), &h, &trusted), ip("2001:db8::5"));
        // All hops trusted: the left-most is the client.
        let h = headers(&[("x-forwarded-for", "10.0.0.3, 10.0.0.2")]);
        assert_eq!(client_addr(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.3"));
        // Garbage stops the walk at the nearest known address.
        let h = headers(&[("x-forwarded-for", "192.0.2.7, unknown, 10.0.0.2")]);
        assert_eq!(client_addr(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.2"));
    }

    #[test]
    fn x_real_ip_is_used_without_x_forwarded_for() {
        let trusted = nets(&["127.0.0.1/32"]);
        let h = headers(&[("x-real-ip", "192.0.2.9")]);
        assert_eq!(client_addr(ip("127.0.0.1"), &h, &trusted), ip("192.0.2.9"));
        let h = headers(&[("x-real-ip", "not an address")]);
        assert_eq!(client_addr(ip("127.0.0.1"), &h, &trusted), ip("127.0.0.1"));
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(limit_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            limit_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            limit_key(ip("2001:db8:1:2::1"))
        );
        assert_ne!(
            limit_key(ip("2001:db8:1:3::1")),
            limit_key(ip("2001:db8:1:2::1"))
        );
        assert_eq!(limit_key(ip("192.0.2.1")), ip("192.0.2.1"));
        assert_ne!(limit_key(ip("192.0.2.1")), limit_key(ip("192.0.2.2")));
        assert_eq!(limit_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        let trusted = nets(&["127.0.0.1/32"]);
        let h = headers(&[("x-real-ip", "192.0.2.9")]);
        assert_eq!(
            client_addr(ip("::ffff:127.0.0.1"), &h, &trusted),
            ip("192.0.2.9"),
            "a proxy on a dual-stack socket is still the trusted IPv4 proxy"
        );
    }
}
