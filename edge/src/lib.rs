//! The front door on one port (issue 16): every connection on the edge
//! listener is told apart by its first bytes and handed to the SSH server
//! or the web listener, and a PROXY protocol header from a trusted load
//! balancer gives the client's real address to everything after it.
//!
//! - [`proxy`]: PROXY protocol v1 and v2 headers (haproxy's `send-proxy`),
//!   read only from `trusted_proxies`, capped in size and bounded in time.
//! - [`classify`]: SSH (`SSH-`, or a client that waits for the server to
//!   speak first), TLS (then by ALPN: `ssh` to the SSH server inside TLS,
//!   `h2`/`http/1.1` to the web listener), an HTTP `CONNECT` to the
//!   gateway's SSH service, or plain HTTP.
//! - [`serve`]: the edge listener's accept loop, which does both and hands
//!   each connection to the targets the binary wires in.
//!
//! **Invariant:** this crate knows no SSH and no HTTP beyond the first
//! bytes and a `CONNECT` request head; it moves streams, it never speaks
//! the protocols inside them.

pub mod classify;
mod error;
mod prefixed;
pub mod proxy;
mod serve;

pub use error::Error;
pub use prefixed::Prefixed;
pub use serve::{EdgeConfig, SILENT_CLIENT, Targets, accept, serve};

use tokio::io::{AsyncRead, AsyncWrite};

/// A connection's byte stream, whatever carries it (TCP, TLS, a stream
/// with bytes already read put back in front).
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A boxed [`Io`], as handed to the SSH server and the web listener.
pub type BoxedIo = Box<dyn Io>;

/// The ALPN protocol id that selects SSH inside TLS (`gatehouse tunnel`,
/// `openssl s_client -alpn ssh`).
pub const ALPN_SSH: &[u8] = b"ssh";
