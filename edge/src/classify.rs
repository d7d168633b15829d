//! What a connection is, from its first bytes.

/// The protocols the edge listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An SSH client's version line (`SSH-`).
    Ssh,
    /// A TLS ClientHello (a handshake record, `0x16 0x03`).
    Tls,
    /// An HTTP `CONNECT` request.
    Connect,
    /// Another HTTP request (a method and a space, or HTTP/2's preface).
    Http,
    /// None of these.
    Unknown,
}

const SSH: &[u8] = b"SSH-";
const TLS: &[u8] = b"\x16\x03";
const CONNECT: &[u8] = b"CONNECT ";
const METHODS: &[&[u8]] = &[
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"TRACE ",
    b"PRI * HTTP/2.0",
];

/// What `first` (the first bytes read) is, or `None` while it could still
/// be more than one thing and more bytes are needed. At most 14 bytes
/// decide.
pub fn classify(first: &[u8]) -> Option<Kind> {
    let candidates: [(&[u8], Kind); 3] =
        [(SSH, Kind::Ssh), (TLS, Kind::Tls), (CONNECT, Kind::Connect)];
    let methods = METHODS.iter().map(|m| (*m, Kind::Http));
    let mut pending = false;
    for (pattern, kind) in candidates.into_iter().chain(methods) {
        if first.starts_with(pattern) {
            return Some(kind);
        }
        if pattern.starts_with(first) {
            pending = true;
        }
    }
    if pending { None } else { Some(Kind::Unknown) }
}

/// The authority of a `CONNECT` request head (`CONNECT host:port HTTP/1.1`
/// and headers up to the blank line), if it is one.
pub fn connect_authority(head: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(head).ok()?;
    let line = text.lines().next()?;
    let mut words = line.split(' ');
    let (Some("CONNECT"), Some(authority), Some(version)) =
        (words.next(), words.next(), words.next())
    else {
        return None;
    };
    (version.starts_with("HTTP/1.") && words.next().is_none() && !authority.is_empty())
        .then(|| authority.to_owned())
}

/// The host of a `CONNECT` authority (`host:port`, `[v6]:port`), when it
/// has one that could name a route.
pub fn authority_host(authority: &str) -> Option<&str> {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split_once(']')?.0,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connect_names_its_host() {
        assert_eq!(authority_host("prod-db:22"), Some("prod-db"));
        assert_eq!(authority_host("prod-db"), Some("prod-db"));
        assert_eq!(authority_host("[::1]:22"), Some("::1"));
        assert_eq!(authority_host(":22"), None);
        assert_eq!(authority_host("[::1"), None);
    }

    #[test]
    fn first_bytes_decide() {
        for (bytes, want) in [
            (&b"SSH-2.0-OpenSSH_9.2"[..], Some(Kind::Ssh)),
            (b"\x16\x03\x01\x02\x00", Some(Kind::Tls)),
            (b"CONNECT gw:22 HTTP/1.1\r\n", Some(Kind::Connect)),
            (b"GET / HTTP/1.1\r\n", Some(Kind::Http)),
            (b"PRI * HTTP/2.0\r\n", Some(Kind::Http)),
            (b"S", None),
            (b"C", None),
            (b"CO", None),
            (b"P", None),
            (b"\x16", None),
            (b"\x00\x01", Some(Kind::Unknown)),
            (b"HELLO", Some(Kind::Unknown)),
            (b"", None),
        ] {
            assert_eq!(classify(bytes), want, "{bytes:?}");
        }
    }

    #[test]
    fn connect_heads_name_their_authority() {
        assert_eq!(
            connect_authority(b"CONNECT gw.example.com:22 HTTP/1.1\r\nHost: x\r\n\r\n").as_deref(),
            Some("gw.example.com:22")
        );
        assert_eq!(connect_authority(b"GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(connect_authority(b"CONNECT  HTTP/1.1\r\n\r\n"), None);
        assert_eq!(connect_authority(b"\xff\xfe"), None);
    }
}
