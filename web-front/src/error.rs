//! The crate's one error type.

use std::net::SocketAddr;

/// What can go wrong starting the web listener.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address in `web.listen`.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate or key could not be used.
    #[error("web TLS: {0}")]
    Tls(String),
}
