//! Signed-in browsers: the web app's and the HTTP proxy's sessions, and
//! the sign-ins in progress that will become them.
//!
//! The browser holds an opaque random token in a cookie; the store keeps
//! only its SHA-256 (`id_hash`), so a copy of the database lets no one in.
//! A session ends at the first of: its absolute expiry, `idle_timeout`
//! without a request, sign-out, or revocation of its user
//! ([`Store::revoke`](crate::Store::revoke) ends them with the bindings).

use std::fmt;
use std::time::{Duration, SystemTime};

/// One signed-in browser.
#[derive(Clone, PartialEq, Eq)]
pub struct WebSession {
    /// Hex SHA-256 of the cookie's token.
    pub id_hash: String,
    /// The IdP's subject.
    pub sub: String,
    /// The verified email, if the IdP gave one.
    pub email: Option<String>,
    /// The groups claim.
    pub groups: Vec<String>,
    /// Every ID-token claim, as a JSON object, for the access policy.
    pub claims_json: String,
    /// The issuer that vouched for it.
    pub issuer: String,
    /// The token forms must echo (CSRF): not secret from the page, but
    /// unknown to other sites.
    pub csrf: String,
    /// The client address at sign-in, for the audit log.
    pub client_addr: String,
    /// Sign-in time.
    pub created_at: SystemTime,
    /// The last request counted (updated at most once a minute).
    pub last_seen_at: SystemTime,
    /// When it ends whatever happens.
    pub expires_at: SystemTime,
    /// How long it lasts without a request.
    pub idle_timeout: Duration,
}

/// The hash names the session: shown only in part.
impl fmt::Debug for WebSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSession")
            .field("id_hash", &self.id_hash.get(..8).unwrap_or("?"))
            .field("sub", &self.sub)
            .field("email", &self.email)
            .field("groups", &self.groups)
            .field("issuer", &self.issuer)
            .field("client_addr", &self.client_addr)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl WebSession {
    /// Whether it is still good at `now`.
    pub fn is_live(&self, now: SystemTime) -> bool {
        now < self.expires_at
            && self
                .last_seen_at
                .checked_add(self.idle_timeout)
                .is_some_and(|idle_end| now < idle_end)
    }
}

/// How often a session's `last_seen_at` is written: a busy page does not
/// turn every request into a write.
pub const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// A browser sign-in in progress, between the redirect to the IdP and
/// the callback: single use, and short-lived.
#[derive(Clone, PartialEq, Eq)]
pub struct WebLogin {
    /// Hex SHA-256 of the `state` parameter sent to the IdP.
    pub state_hash: String,
    /// What the callback needs (the identity crate's pending sign-in, as
    /// JSON; it holds the PKCE verifier).
    pub pending_json: String,
    /// Where to go after signing in (a path on this site).
    pub return_to: String,
    /// When it can no longer be finished.
    pub expires_at: SystemTime,
}

/// Redacted: the pending sign-in holds the PKCE verifier.
impl fmt::Debug for WebLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebLogin")
            .field("return_to", &self.return_to)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A one-time code that hands a signed-in browser over to the host of an
/// HTTP route (issue 14). Cookies are per host, so the web app's session
/// cannot reach a route's host; the browser carries this code there in a
/// redirect instead, never the session's own token.
#[derive(Clone, PartialEq, Eq)]
pub struct WebHandoff {
    /// Hex SHA-256 of the code in the redirect.
    pub code_hash: String,
    /// The web app's session it hands over.
    pub session_hash: String,
    /// The route host it is good for (lowercase, with a port if any).
    pub host: String,
    /// Hex SHA-256 of the value of the attempt cookie the route host set
    /// before sending the browser to sign in: the code is good only in the
    /// browser that asked for it (login CSRF).
    pub nonce_hash: String,
    /// Where to go on that host afterwards (a path).
    pub return_to: String,
    /// When it can no longer be used (a minute or so).
    pub expires_at: SystemTime,
}

/// Redacted: the hashes name a session and a code.
impl fmt::Debug for WebHandoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebHandoff")
            .field("host", &self.host)
            .field("return_to", &self.return_to)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The session a hand-off creates on a route's host: the identity and the
/// lifetime are the web app session's, the token and CSRF value its own.
#[derive(Clone, PartialEq, Eq)]
pub struct HandoffSession {
    /// Hex SHA-256 of the new cookie's token on the route host.
    pub id_hash: String,
    /// Its CSRF value.
    pub csrf: String,
    /// The client address at the hand-off.
    pub client_addr: String,
}

/// Redacted like [`WebSession`].
impl fmt::Debug for HandoffSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandoffSession")
            .field("id_hash", &self.id_hash.get(..8).unwrap_or("?"))
            .field("client_addr", &self.client_addr)
            .finish_non_exhaustive()
    }
}
