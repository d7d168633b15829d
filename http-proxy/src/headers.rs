//! What crosses the proxy in headers, and what never does.
//!
//! Towards the upstream, the proxy removes (in any letter case, every
//! copy): the identity headers it sets itself (the assertion and
//! `X-Forwarded-User`/`-Email`/`-Groups`), the forwarding headers it sets
//! itself (`X-Forwarded-For`/`-Proto`/`-Host`, `Forwarded`), hop-by-hop
//! headers (RFC 9110 §7.6.1) and every header the `Connection` header
//! names, and its own cookies from `Cookie`. Then it sets its own. So a
//! client can never hand the upstream an identity: a forged, duplicated
//! or oddly cased copy is gone before the real one is added.
//!
//! Towards the client, hop-by-hop headers of the upstream's response are
//! removed (except for a protocol switch, which needs `Upgrade` and
//! `Connection`).

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use web_front::session::COOKIE_PREFIX;

/// The identity assertion: a short-lived ES256 JWT naming the user.
pub const ASSERTION: &str = "x-gatehouse-assertion";
/// The plain identity headers, when a route asks for them.
pub const FORWARDED_USER: &str = "x-forwarded-user";
/// The user's email.
pub const FORWARDED_EMAIL: &str = "x-forwarded-email";
/// The user's groups, comma-separated.
pub const FORWARDED_GROUPS: &str = "x-forwarded-groups";

/// Headers that describe one connection, not the message (RFC 9110
/// §7.6.1), plus the legacy ones proxies still meet. HTTP/2 forbids them
/// outright (RFC 9113 §8.2.2).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers only the proxy may set towards the upstream.
const OURS: &[&str] = &[
    ASSERTION,
    FORWARDED_USER,
    FORWARDED_EMAIL,
    FORWARDED_GROUPS,
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
];

/// Removes hop-by-hop headers and those `Connection` names.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// The request's `Cookie` headers without the proxy's own cookies; `None`
/// when nothing is left.
fn cookies_without_ours(headers: &HeaderMap) -> Option<HeaderValue> {
    let kept: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or("").trim();
            !name.starts_with(COOKIE_PREFIX)
        })
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join("; ")).ok()
}

/// What the proxy tells the upstream about the request and its user.
pub struct Forwarding<'a> {
    /// The client's address (after trusted proxies).
    pub client: IpAddr,
    /// The `X-Forwarded-For` chain to extend, when the peer is a trusted
    /// proxy (its value, as received); `None` starts a new chain.
    pub trusted_chain: Option<String>,
    /// `https` or `http`, as the browser reached us.
    pub proto: &'a str,
    /// The host (with port) the browser asked for.
    pub host: &'a str,
    /// The signed assertion.
    pub assertion: &'a str,
    /// The plain identity headers, when the route asks for them: user,
    /// email, groups.
    pub identity: Option<(&'a str, Option<&'a str>, &'a [String])>,
}

/// Turns the client's request headers into the upstream's: everything
/// the proxy owns is removed first (see the module docs), then set.
/// `upgrade` keeps the protocol switch (`Upgrade` and `Connection:
/// upgrade`) for a WebSocket.
pub fn to_upstream(headers: &mut HeaderMap, f: &Forwarding<'_>, upgrade: bool) {
    let upgrade_to = upgrade
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    let cookies = cookies_without_ours(headers);
    remove_hop_by_hop(headers);
    for name in OURS {
        headers.remove(*name);
    }
    headers.remove(header::COOKIE);
    if let Some(c) = cookies {
        headers.insert(header::COOKIE, c);
    }
    if let Some(to) = upgrade_to {
        headers.insert(header::UPGRADE, to);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let chain = match &f.trusted_chain {
        Some(prev) if !prev.trim().is_empty() => format!("{}, {}", prev.trim(), f.client),
        _ => f.client.to_string(),
    };
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    set("x-forwarded-for", &chain);
    set("x-forwarded-proto", f.proto);
    set("x-forwarded-host", f.host);
    set(ASSERTION, f.assertion);
    if let Some((user, email, groups)) = f.identity {
        set(FORWARDED_USER, user);
        if let Some(email) = email {
            set(FORWARDED_EMAIL, email);
        }
        set(FORWARDED_GROUPS, &groups.join(","));
    }
}

/// Cleans the upstream's response headers for the client.
pub fn to_client(headers: &mut HeaderMap, switching: bool) {
    let upgrade = switching
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    remove_hop_by_hop(headers);
    if let Some(to) = upgrade {
        headers.insert(header::UPGRADE, to);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Whether the request asks to switch to another protocol (a WebSocket)
/// over HTTP/1.1.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Whether a browser is navigating (so a sign-in redirect helps), rather
/// than a script or an API client (which gets a 401 with JSON).
pub fn wants_html(method: &axum::http::Method, headers: &HeaderMap) -> bool {
    let navigating = matches!(*method, axum::http::Method::GET | axum::http::Method::HEAD);
    let xhr = headers
        .get("x-requested-with")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("xmlhttprequest"));
    let html = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"));
    navigating && html && !xhr
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn forwarding<'a>(groups: &'a [String]) -> Forwarding<'a> {
        Forwarding {
            client: "203.0.113.9".parse().unwrap(),
            trusted_chain: None,
            proto: "https",
            host: "app.example.com",
            assertion: "jwt",
            identity: Some(("alice", Some("alice@example.com"), groups)),
        }
    }

    fn values(h: &HeaderMap, name: &str) -> Vec<String> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    /// A small deterministic generator for the property test.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[(self.next() % items.len() as u64) as usize]
        }
    }

    /// Any case mix of `name`.
    fn cased(rng: &mut Lcg, name: &str) -> String {
        name.chars()
            .map(|c| {
                if rng.next().is_multiple_of(2) {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    }

    #[test]
    fn forged_duplicated_and_oddly_cased_identity_headers_never_reach_the_upstream() {
        let groups = vec!["sre".to_owned(), "dev".to_owned()];
        let mut rng = Lcg(7);
        let forged = [
            ASSERTION,
            FORWARDED_USER,
            FORWARDED_EMAIL,
            FORWARDED_GROUPS,
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "forwarded",
        ];
        for round in 0..2_000 {
            let mut h = HeaderMap::new();
            // Up to eight forged headers, in any case, repeated, mixed
            // with ordinary ones.
            for _ in 0..(rng.next() % 8 + 1) {
                let picked = rng.pick(&forged);
                let name = cased(&mut rng, picked);
                let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
                h.append(name, HeaderValue::from_static("forged"));
            }
            h.append("accept", HeaderValue::from_static("*/*"));
            if round % 3 == 0 {
                // A header the client says is hop-by-hop goes too.
                h.append("x-evil", HeaderValue::from_static("forged"));
                h.append("connection", HeaderValue::from_static("keep-alive, X-Evil"));
            }
            to_upstream(&mut h, &forwarding(&groups), false);
            for name in forged {
                for v in values(&h, name) {
                    assert_ne!(v, "forged", "round {round}: {name} survived: {h:?}");
                }
            }
            assert_eq!(values(&h, ASSERTION), ["jwt"], "exactly one assertion");
            assert_eq!(values(&h, FORWARDED_USER), ["alice"]);
            assert_eq!(values(&h, FORWARDED_GROUPS), ["sre,dev"]);
            assert_eq!(values(&h, "x-forwarded-for"), ["203.0.113.9"]);
            assert!(h.get("x-evil").is_none() && h.get("connection").is_none());
            assert_eq!(values(&h, "accept"), ["*/*"]);
        }
    }

    #[test]
    fn our_cookies_stay_here_and_the_upstream_gets_the_rest() {
        let mut h = HeaderMap::new();
        h.append(
            "cookie",
            HeaderValue::from_static("a=1; __Host-gatehouse=secret; b=2"),
        );
        h.append(
            "cookie",
            HeaderValue::from_static("__Host-gatehouse-handoff-abc=n; c=3"),
        );
        to_upstream(&mut h, &forwarding(&[]), false);
        assert_eq!(values(&h, "cookie"), ["a=1; b=2; c=3"]);
        let mut h = HeaderMap::new();
        h.append(
            "cookie",
            HeaderValue::from_static("__Host-gatehouse=secret"),
        );
        to_upstream(&mut h, &forwarding(&[]), false);
        assert!(h.get("cookie").is_none());
    }

    #[test]
    fn hop_by_hop_headers_go_but_an_upgrade_keeps_its_switch() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic x"),
            ("sec-websocket-key", "k"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        assert!(is_upgrade(&h));
        let mut plain = h.clone();
        to_upstream(&mut plain, &forwarding(&[]), false);
        for gone in [
            "connection",
            "upgrade",
            "te",
            "transfer-encoding",
            "keep-alive",
            "proxy-authorization",
        ] {
            assert!(plain.get(gone).is_none(), "{gone}");
        }
        to_upstream(&mut h, &forwarding(&[]), true);
        assert_eq!(values(&h, "upgrade"), ["websocket"]);
        assert_eq!(values(&h, "connection"), ["upgrade"]);
        assert_eq!(values(&h, "sec-websocket-key"), ["k"]);
        assert!(h.get("te").is_none());
    }

    #[test]
    fn a_trusted_chain_is_extended() {
        let mut h = HeaderMap::new();
        let f = Forwarding {
            trusted_chain: Some("198.51.100.1, 10.0.0.2".to_owned()),
            identity: None,
            ..forwarding(&[])
        };
        to_upstream(&mut h, &f, false);
        assert_eq!(
            values(&h, "x-forwarded-for"),
            ["198.51.100.1, 10.0.0.2, 203.0.113.9"]
        );
        assert!(h.get(FORWARDED_USER).is_none());
        assert_eq!(values(&h, "x-forwarded-proto"), ["https"]);
        assert_eq!(values(&h, "x-forwarded-host"), ["app.example.com"]);
    }

    #[test]
    fn browsers_navigating_get_html_and_scripts_get_json() {
        use axum::http::Method;
        let mut h = HeaderMap::new();
        h.insert("accept", HeaderValue::from_static("text/html,*/*"));
        assert!(wants_html(&Method::GET, &h));
        assert!(!wants_html(&Method::POST, &h));
        h.insert(
            "x-requested-with",
            HeaderValue::from_static("XMLHttpRequest"),
        );
        assert!(!wants_html(&Method::GET, &h));
        assert!(!wants_html(&Method::GET, &HeaderMap::new()));
    }
}
