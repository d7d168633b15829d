//! The web listener and what every page behind it shares.
//!
//! One listener ([`listener`]) serves the web app (recordings, sign-in,
//! SSH sign-in links) and the identity-aware HTTP proxy's routes; both
//! read the same browser sessions ([`session`]: `__Host-` cookies holding
//! random tokens, stored as hashes in the state database), the same
//! client address ([`peer`]: `X-Forwarded-For` only through trusted
//! proxies) and write HTML the same way ([`html`]: every value escaped,
//! no inline script).
//!
//! **Invariant:** no cookie, token or code is ever logged or put in an
//! error; audit events name a browser session by a prefix of its stored
//! hash ([`session::short`]).

mod error;
pub mod html;
pub mod listener;
pub mod peer;
pub mod session;

pub use error::Error;
pub use listener::{Tls, WEB_ALPN, bind, serve, serve_io, tls_acceptor};
pub use peer::{Peer, client_addr};
