//! PROXY protocol headers (haproxy's `send-proxy`, v1 text and v2 binary):
//! a load balancer that terminates TCP tells the server who the client
//! really is. Believed only from `trusted_proxies`: anyone else could claim
//! any address, so a header from them is refused.
//!
//! A header must arrive within [`DEADLINE`] and fit in [`MAX_HEADER`]
//! bytes (the v2 specification's recommended buffer), or the connection
//! is dropped.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ppp::PartialResult as _;
use tokio::io::{AsyncRead, AsyncReadExt as _};

use crate::Error;

/// The longest header accepted.
pub const MAX_HEADER: usize = 536;

/// How long a trusted proxy has to send its header.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// The start of a v1 header.
const V1: &[u8] = b"PROXY ";
/// The longest v1 header, CRLF included (the specification's 107 bytes).
const V1_MAX: usize = 107;
/// The v2 signature.
const V2: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// Whether `first` (a connection's first bytes, any number) could be the
/// start of a PROXY header.
pub fn looks_like_header(first: &[u8]) -> bool {
    let n = first.len();
    n > 0
        && (V1.starts_with(first.get(..n.min(V1.len())).unwrap_or_default())
            || V2.starts_with(first.get(..n.min(V2.len())).unwrap_or_default()))
}

/// Whether `first` holds enough bytes to tell a PROXY header from
/// anything else.
fn decided(first: &[u8]) -> bool {
    !looks_like_header(first) || first.starts_with(V1) || first.starts_with(V2)
}

/// What a header said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The client's address, or `None` for `UNKNOWN` / `LOCAL` (a health
    /// check from the proxy itself: the peer's address stands).
    pub client: Option<SocketAddr>,
}

/// Parses a whole header at the start of `buf`: the header and its length,
/// `Ok(None)` if more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    // A v1 header is one text line. ppp is given that line alone: on the
    // whole buffer it rejects a good header when the bytes after it are not
    // UTF-8 (a TLS ClientHello in the same read), calls a header cut off
    // after a port's space malformed rather than incomplete, and takes a
    // bare LF for the end.
    let buf = if buf.starts_with(V1) {
        match buf.iter().take(V1_MAX).position(|&b| b == b'\n') {
            None if buf.len() < V1_MAX => return Ok(None),
            None => {
                return Err(Error::BadProxyHeader(format!(
                    "a v1 header longer than {V1_MAX} bytes"
                )));
            }
            Some(end) if end == 0 || buf.get(end - 1) != Some(&b'\r') => {
                return Err(Error::BadProxyHeader(
                    "a v1 header must end in CRLF".to_owned(),
                ));
            }
            Some(end) => buf.get(..=end).unwrap_or_default(),
        }
    } else {
        buf
    };
    let parsed = ppp::HeaderResult::parse(buf);
    if parsed.is_incomplete() {
        return Ok(None);
    }
    match parsed {
        ppp::HeaderResult::V1(Ok(h)) => {
            let client = match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                ppp::v1::Addresses::Tcp6(a) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                ppp::v1::Addresses::Unknown => None,
            };
            Ok(Some((Header { client }, h.header.len())))
        }
        ppp::HeaderResult::V2(Ok(h)) => {
            let client = match (h.command, h.addresses) {
                (ppp::v2::Command::Local, _) => None,
                (_, ppp::v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                (_, ppp::v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                _ => None,
            };
            Ok(Some((Header { client }, h.len())))
        }
        ppp::HeaderResult::V1(Err(e)) => Err(Error::BadProxyHeader(e.to_string())),
        ppp::HeaderResult::V2(Err(e)) => Err(Error::BadProxyHeader(e.to_string())),
    }
}

/// Reads what starts a connection from `peer`: when the peer is a trusted
/// proxy and sends a header, the client's address from it and the bytes
/// read past it; otherwise the peer's address and the bytes read. A peer
/// that is not trusted and sends a header is refused. Waits for the first
/// bytes at most `first_bytes` (a client that waits for the server to
/// speak first sends none; then nothing is read).
pub async fn read_start<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
    trusted: bool,
    first_bytes: Duration,
) -> Result<(SocketAddr, Vec<u8>), Error> {
    let mut buf = Vec::with_capacity(64);
    let mut chunk = [0u8; MAX_HEADER];
    // The first bytes, within `first_bytes`: none means a silent client.
    let started = tokio::time::Instant::now();
    loop {
        if decided(&buf) && !buf.is_empty() {
            break;
        }
        let wait = if buf.is_empty() {
            first_bytes
        } else {
            DEADLINE.saturating_sub(started.elapsed())
        };
        match tokio::time::timeout(wait, stream.read(&mut chunk)).await {
            Err(_) if buf.is_empty() => return Ok((peer, buf)),
            Err(_) => return Err(Error::Timeout(DEADLINE)),
            Ok(Ok(0)) => return Ok((peer, buf)),
            Ok(Ok(n)) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Ok(Err(e)) => return Err(Error::Io(e)),
        }
    }
    if !looks_like_header(&buf) {
        return Ok((peer, buf));
    }
    if !trusted {
        return Err(Error::UntrustedProxy { peer });
    }
    loop {
        match parse(&buf)? {
            Some((header, len)) => {
                let rest = buf.get(len..).unwrap_or_default().to_vec();
                return Ok((header.client.unwrap_or(peer), rest));
            }
            None if buf.len() >= MAX_HEADER => {
                return Err(Error::BadProxyHeader(format!(
                    "longer than {MAX_HEADER} bytes"
                )));
            }
            None => {}
        }
        let left = DEADLINE.saturating_sub(started.elapsed());
        let room = MAX_HEADER.saturating_sub(buf.len());
        let slot = chunk.get_mut(..room).unwrap_or_default();
        match tokio::time::timeout(left, stream.read(slot)).await {
            Err(_) => return Err(Error::Timeout(DEADLINE)),
            Ok(Ok(0)) => return Err(Error::BadProxyHeader("cut off".to_owned())),
            Ok(Ok(n)) => buf.extend_from_slice(slot.get(..n).unwrap_or_default()),
            Ok(Err(e)) => return Err(Error::Io(e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "10.0.0.2:5000".parse().unwrap()
    }

    async fn start(bytes: &[u8], trusted: bool) -> Result<(SocketAddr, Vec<u8>), Error> {
        let mut s = bytes;
        read_start(&mut s, peer(), trusted, Duration::from_millis(200)).await
    }

    fn v2(client: [u8; 4], port: u16, rest: &[u8]) -> Vec<u8> {
        let mut h = V2.to_vec();
        h.extend([0x21, 0x11, 0, 12]);
        h.extend(client);
        h.extend([10, 0, 0, 1]);
        h.extend(port.to_be_bytes());
        h.extend(443u16.to_be_bytes());
        h.extend(rest);
        h
    }

    #[tokio::test]
    async fn a_trusted_proxy_names_the_client_and_the_rest_is_kept() {
        let (client, rest) = start(
            b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\nSSH-2.0-x\r\n",
            true,
        )
        .await
        .unwrap();
        assert_eq!(client, "203.0.113.7:51000".parse().unwrap());
        assert_eq!(rest, b"SSH-2.0-x\r\n");
        let (client, rest) = start(&v2([198, 51, 100, 9], 40000, b"\x16\x03\x01"), true)
            .await
            .unwrap();
        assert_eq!(client, "198.51.100.9:40000".parse().unwrap());
        assert_eq!(rest, b"\x16\x03\x01");
        let (client, _) = start(b"PROXY UNKNOWN\r\nGET", true).await.unwrap();
        assert_eq!(client, peer(), "UNKNOWN keeps the peer");
    }

    /// Found by fuzzing: ppp, given the whole buffer, refused a good v1
    /// header when a TLS ClientHello followed it in the same read, and
    /// called a header cut after a port's space malformed.
    #[tokio::test]
    async fn a_v1_header_is_one_line_whatever_follows_or_however_it_is_cut() {
        let header: &[u8] = b"PROXY TCP6 2001:db8::1 2001:db8::2 5100 443\r\n";
        let mut sent = header.to_vec();
        sent.extend(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xb1");
        let (client, rest) = start(&sent, true).await.unwrap();
        assert_eq!(client, "[2001:db8::1]:5100".parse().unwrap());
        assert_eq!(rest, &sent[header.len()..]);
        for cut in V1.len()..header.len() {
            assert!(
                matches!(parse(&header[..cut]), Ok(None)),
                "cut at {cut}: {:?}",
                parse(&header[..cut])
            );
        }
        let (got, len) = parse(&sent).unwrap().unwrap();
        assert_eq!((got.client, len), (Some(client), header.len()));
        // The end is CRLF, within 107 bytes.
        assert!(parse(b"PROXY TCP4 1.2.3.4 10.0.0.1 1 2 \nSSH").is_err());
        let long = [V1, &[b'1'; 120][..]].concat();
        assert!(parse(&long).is_err());
        assert!(matches!(parse(&long[..100]), Ok(None)));
    }

    #[tokio::test]
    async fn no_header_is_fine_and_an_untrusted_one_is_refused() {
        let (client, rest) = start(b"SSH-2.0-OpenSSH\r\n", true).await.unwrap();
        assert_eq!(
            (client, rest.as_slice()),
            (peer(), &b"SSH-2.0-OpenSSH\r\n"[..])
        );
        let (client, rest) = start(b"SSH-2.0-OpenSSH\r\n", false).await.unwrap();
        assert_eq!((client, rest.len()), (peer(), 17));
        assert!(matches!(
            start(b"PROXY TCP4 1.2.3.4 10.0.0.1 1 2\r\n", false).await,
            Err(Error::UntrustedProxy { .. })
        ));
        assert!(matches!(
            start(&v2([1, 2, 3, 4], 1, b""), false).await,
            Err(Error::UntrustedProxy { .. })
        ));
    }

    #[tokio::test]
    async fn bad_long_and_cut_off_headers_are_refused() {
        assert!(matches!(
            start(b"PROXY TCP4 nope\r\n", true).await,
            Err(Error::BadProxyHeader(_))
        ));
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 600]].concat();
        assert!(start(&long, true).await.is_err());
        assert!(matches!(
            start(b"PROXY TCP4 1.2.3.4", true).await,
            Err(Error::BadProxyHeader(_))
        ));
        // A silent client: nothing read, nothing lost.
        let (client, rest) = start(b"", true).await.unwrap();
        assert_eq!((client, rest.len()), (peer(), 0));
    }

    #[test]
    fn prefixes_of_a_header_look_like_one() {
        assert!(looks_like_header(b"PRO"));
        assert!(looks_like_header(b"\r\n\r\n"));
        assert!(!looks_like_header(b"SSH-"));
        assert!(!looks_like_header(b"PRI * HTTP/2.0"));
        assert!(!looks_like_header(b""));
    }
}
