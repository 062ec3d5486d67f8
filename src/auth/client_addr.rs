//! Which address a request comes from: the TCP peer, or, when the peer is a proxy the operator
//! trusts, the right-most address in `X-Forwarded-For` that is not itself a trusted proxy.
//! Anything left of that entry was written by the client and is ignored.

use std::net::IpAddr;

use axum::http::HeaderMap;

pub use crate::domain::net::IpNet;

/// The client's address, `None` when the server was not given the peer's address.
pub fn client_address(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    // Several headers are one list, in order.
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        // A trusted proxy wrote every entry right of this one; an entry that is not an address
        // cannot be trusted further, so the last good one stands.
        let Ok(ip) = entry.parse::<IpAddr>() else { break };
        client = ip.to_canonical();
        if !is_trusted(client) {
            break;
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().expect("net")).collect()
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().expect("value"));
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn cidr_blocks_contain_what_they_should() {
        let n: IpNet = "10.1.0.0/16".parse().expect("net");
        assert!(n.contains(ip("10.1.255.3")) && !n.contains(ip("10.2.0.1")));
        assert!("0.0.0.0/0".parse::<IpNet>().expect("all").contains(ip("8.8.8.8")));
        assert!("fd00::/8".parse::<IpNet>().expect("v6").contains(ip("fd12::1")));
        assert!("127.0.0.1".parse::<IpNet>().expect("one").contains(ip("::ffff:127.0.0.1")));
        for bad in ["10.0.0.0/33", "x", "10.0.0.0/", "::/129", ""] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let trusted = nets(&["10.0.0.0/8"]);
        // Untrusted peer: the header is the client's own claim.
        assert_eq!(client_address(Some(ip("1.2.3.4")), &xff("9.9.9.9"), &trusted), Some(ip("1.2.3.4")));
        // Trusted peer: the right-most untrusted entry, whatever the client put on the left.
        let h = xff("6.6.6.6, 5.5.5.5, 10.0.0.7");
        assert_eq!(client_address(Some(ip("10.0.0.2")), &h, &trusted), Some(ip("5.5.5.5")));
        // No header: the proxy itself.
        assert_eq!(client_address(Some(ip("10.0.0.2")), &HeaderMap::new(), &trusted), Some(ip("10.0.0.2")));
        // Garbage stops the walk at the last address a trusted proxy wrote.
        assert_eq!(client_address(Some(ip("10.0.0.2")), &xff("junk, 10.0.0.9"), &trusted), Some(ip("10.0.0.9")));
        assert_eq!(client_address(None, &h, &trusted), None);
        // No trusted proxies configured: never read the header.
        assert_eq!(client_address(Some(ip("10.0.0.2")), &h, &[]), Some(ip("10.0.0.2")));
    }
}
