//! The crate's one error type.

/// Why a connection was not handed on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A PROXY header from a peer not in `trusted_proxies`.
    #[error("a PROXY header from {peer}, which is not a trusted proxy")]
    UntrustedProxy {
        /// The peer that sent it.
        peer: std::net::SocketAddr,
    },
    /// A PROXY header that is not one, or longer than allowed.
    #[error("bad PROXY header: {0}")]
    BadProxyHeader(String),
    /// The header (or the first bytes) did not arrive in time.
    #[error("nothing came within {0:?}")]
    Timeout(std::time::Duration),
    /// The first bytes are no protocol the edge serves.
    #[error("unknown protocol")]
    Unknown,
    /// Reading or writing the connection failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
