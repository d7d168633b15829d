//! The client's address: the TCP peer, or, when the peer is a trusted
//! proxy, the last address in `X-Forwarded-For` that is not itself a
//! trusted proxy (each proxy appends the address it saw, so earlier
//! entries are whatever the client claimed).

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

/// The connection's peer, set by the server for each connection.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// The client address for audit and logs.
pub fn client_addr(peer: SocketAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut addr = peer.ip();
    if !is_trusted(&addr) {
        return addr;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in forwarded.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                addr = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            // Garbage from here on back: stop at the last good hop.
            Err(_) => break,
        }
    }
    addr
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_proxy() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.9:5000".parse().unwrap();
        let h = headers(&["203.0.113.5"]);
        assert_eq!(client_addr(stranger, &h, &trusted), stranger.ip());
        assert_eq!(
            client_addr(proxy, &h, &trusted),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        // A client's own claim before the real hop is skipped; chained
        // trusted proxies are walked back.
        let h = headers(&["1.2.3.4, 203.0.113.5", "10.9.9.9"]);
        assert_eq!(
            client_addr(proxy, &h, &trusted),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        let h = headers(&["not-an-ip"]);
        assert_eq!(client_addr(proxy, &h, &trusted), proxy.ip());
        assert_eq!(client_addr(proxy, &HeaderMap::new(), &[]), proxy.ip());
    }
}
