//! The web app: auditors sign in with the identity provider and use the
//! recordings in a browser.
//!
//! What is here so far is the ground the pages stand on:
//! - serving ([`serve`]): plain HTTP behind a TLS proxy or TLS with rustls,
//!   security headers on every response (a CSP without inline script,
//!   `frame-ancestors 'none'`), `/healthz` and `/readyz`;
//! - sign-in (`auth.rs`): the authorization-code flow with PKCE against the
//!   configured IdP, one state cookie per attempt so two tabs can sign in
//!   at once, sessions stored server-side (`state::WebSession`) behind an
//!   opaque `__Host-` cookie, sign-out as a POST with a CSRF token, and
//!   revocation through `gatehouse logins revoke --user`;
//! - the client address (`peer.rs`), taken from `X-Forwarded-For` only when
//!   the connection comes from a trusted proxy.
//!
//! **Invariant:** no cookie, token, code or verifier is ever logged or put
//! in an error; audit events name a browser session by a prefix of its
//! stored hash.

mod auth;
mod error;
pub mod indexer;
mod pages;
mod peer;
mod serve;

use std::sync::Arc;
use std::time::Duration;

pub use error::Error;
pub use serve::{router, serve};

/// How long a sign-in may take between the redirect to the IdP and the
/// callback.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(600);

/// What every request handler shares.
pub struct App {
    /// The `web:` section.
    pub config: config::WebConfig,
    /// The identity provider, discovered on first use.
    pub idp: identity::LazyIdp,
    /// The state database: web sessions and sign-ins in progress.
    pub store: Arc<dyn state::Store>,
}

impl App {
    /// The redirect URI registered at the IdP: `{public_url}/auth/callback`.
    pub fn callback_url(&self) -> String {
        format!("{}/auth/callback", self.config.public_url)
    }
}
