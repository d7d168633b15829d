//! Login bindings: a client key bound to an identity that signed in at the
//! identity provider, and the revocation log that ends their sessions.
//!
//! After a device-code sign-in the gateway binds the identity to the
//! SHA-256 fingerprint of the key the client offered, so the next
//! connection with that key skips the browser until the binding expires or
//! an administrator revokes it. Revocation keeps the row for audit but
//! wipes the refresh token, and bumps a revision every gateway follows.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What [`Store::bind`](crate::Store::bind) stores.
#[derive(Clone)]
pub struct NewBinding {
    /// The client key's fingerprint, `SHA256:...` as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// The ID token's `sub`: the identity as the IdP knows it.
    pub sub: String,
    /// The ID token's `email`, when it had one.
    pub email: Option<String>,
    /// The groups the IdP reported, for the policy.
    pub groups: Vec<String>,
    /// The issuer that vouched for the identity.
    pub issuer: String,
    /// The refresh token, if the IdP issued one; stored sealed.
    pub refresh_token: Option<Secret>,
    /// Every claim of the ID token, as a JSON object, for the policy.
    pub claims_json: String,
    /// How long the binding authenticates the key.
    pub ttl: Duration,
}

impl fmt::Debug for NewBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewBinding")
            .field("fingerprint", &self.fingerprint)
            .field("sub", &self.sub)
            .field("email", &self.email)
            .field("groups", &self.groups)
            .field("issuer", &self.issuer)
            .field("refresh_token", &self.refresh_token)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// A secret string (a refresh token) that never prints: `Debug` and
/// `Display` show `<redacted>`. Only [`Secret::expose`] hands it out.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(secret.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A stored binding as the gateway and `gatehouse logins list` see it.
/// The refresh token is deliberately absent: only
/// [`Store::refresh_token`](crate::Store::refresh_token) hands it out, so
/// a binding can be printed or logged safely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The client key's fingerprint (`SHA256:...`).
    pub fingerprint: String,
    /// The identity's `sub` at the IdP.
    pub sub: String,
    /// The identity's email, when the IdP gave one.
    pub email: Option<String>,
    /// The identity's groups at sign-in.
    pub groups: Vec<String>,
    /// The issuer that vouched for the identity.
    pub issuer: String,
    /// When the user signed in (to the millisecond).
    pub created_at: SystemTime,
    /// When the binding stops authenticating the key.
    pub expires_at: SystemTime,
    /// When it last authenticated a connection, if ever.
    pub last_used_at: Option<SystemTime>,
    /// When it was revoked; a revoked binding never authenticates.
    pub revoked_at: Option<SystemTime>,
    /// Every claim of the ID token, as a JSON object.
    pub claims_json: String,
    /// When the identity was last confirmed with the IdP: the sign-in, or
    /// the latest refresh. A route's `reauth_every` counts from here.
    pub authenticated_at: SystemTime,
}

/// Whether a binding authenticates its key at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingState {
    /// Neither expired nor revoked.
    Live,
    /// Past `expires_at`; the user has to sign in again.
    Expired,
    /// Revoked by an administrator (takes precedence over expiry).
    Revoked,
}

impl BindingState {
    /// The word `gatehouse logins list` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            BindingState::Live => "live",
            BindingState::Expired => "expired",
            BindingState::Revoked => "revoked",
        }
    }
}

impl Binding {
    /// Who signed in, as a person would say it: the email, or the `sub`
    /// when the IdP gave no email.
    pub fn who(&self) -> &str {
        self.email.as_deref().unwrap_or(&self.sub)
    }

    /// The binding's state at `now`.
    pub fn state(&self, now: SystemTime) -> BindingState {
        if self.revoked_at.is_some() {
            BindingState::Revoked
        } else if now >= self.expires_at {
            BindingState::Expired
        } else {
            BindingState::Live
        }
    }

    /// One JSON object on one line, as `gatehouse logins list --json`
    /// prints it. Times are RFC 3339 UTC; `state` is [`Binding::state`] at
    /// `now`. The refresh token is not part of a binding, so never here.
    pub fn to_json_line(&self, now: SystemTime) -> String {
        serde_json::json!({
            "fingerprint": self.fingerprint,
            "sub": self.sub,
            "email": self.email,
            "groups": self.groups,
            "issuer": self.issuer,
            "state": self.state(now).as_str(),
            "created_at": rfc3339(self.created_at),
            "expires_at": rfc3339(self.expires_at),
            "last_used_at": self.last_used_at.map(rfc3339),
            "revoked_at": self.revoked_at.map(rfc3339),
        })
        .to_string()
    }
}

/// RFC 3339 in UTC. humantime panics in `to_string` outside 1970..=9999,
/// so the time is clamped into that range first.
fn rfc3339(t: SystemTime) -> String {
    let last = UNIX_EPOCH
        .checked_add(Duration::from_secs(253_402_300_799)) // 9999-12-31T23:59:59Z
        .unwrap_or(UNIX_EPOCH);
    humantime::format_rfc3339_seconds(t.clamp(UNIX_EPOCH, last)).to_string()
}

/// Which bindings [`Store::revoke`](crate::Store::revoke) revokes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoke {
    /// The binding of one key fingerprint (`SHA256:...`).
    Key(String),
    /// Every binding of one user: the email, compared case-insensitively,
    /// or the exact `sub` (for identities without an email).
    User(String),
    /// Every binding.
    All,
}

impl fmt::Display for Revoke {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Revoke::Key(fp) => write!(f, "key {fp}"),
            Revoke::User(u) => write!(f, "user {u}"),
            Revoke::All => f.write_str("all"),
        }
    }
}

/// What one [`Store::revoke`](crate::Store::revoke) did: the caller writes
/// one `binding.revoked` audit event per binding.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Revoked {
    /// The store's revision after the revocation.
    pub revision: u64,
    /// Each revoked binding: its fingerprint and who it belonged to.
    pub bindings: Vec<(String, String)>,
    /// Web sessions (signed-in browsers) ended with them: a user's for
    /// [`Revoke::User`], everyone's for [`Revoke::All`], none for a key.
    pub web_sessions: u64,
}

/// The identity a refresh brought back, for
/// [`Store::renew`](crate::Store::renew).
#[derive(Debug, Clone)]
pub struct RenewedIdentity {
    /// The email in the new ID token, if any.
    pub email: Option<String>,
    /// The groups in the new ID token.
    pub groups: Vec<String>,
    /// Every claim of the new ID token, as a JSON object.
    pub claims_json: String,
}

/// What [`Store::revoked_since`](crate::Store::revoked_since) reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSince {
    /// The store's revision now; pass it to the next call.
    pub revision: u64,
    /// Keys revoked after the revision asked about (each once). Sessions
    /// authenticated by them must end.
    pub fingerprints: Vec<String>,
}

/// Whether `s` looks like an OpenSSH SHA-256 key fingerprint:
/// `SHA256:` and 43 unpadded base64 characters.
pub fn is_fingerprint(s: &str) -> bool {
    s.strip_prefix("SHA256:").is_some_and(|b64| {
        b64.len() == 43
            && b64
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
    })
}
