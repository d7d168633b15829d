//! SSH sign-in links (issue 14): for identity providers without the
//! device grant, the keyboard-interactive prompt shows a single-use URL on
//! the gateway's web listener. The web app shows the link's details to the
//! signed-in user and, on a POST, approves it with their identity; the
//! gateway holding the SSH connection polls the link and binds the key.
//!
//! A link goes `pending → approved → used`, or to `closed` when the SSH
//! connection leaves first; it can be approved only while pending and
//! before it expires, and its approval is taken once. The store keeps
//! only the SHA-256 of the URL's token.

use std::fmt;
use std::time::SystemTime;

/// A sign-in link as the gateway creates it.
#[derive(Clone, PartialEq, Eq)]
pub struct SshLink {
    /// Hex SHA-256 of the token in the URL.
    pub id_hash: String,
    /// The confirmation phrase shown both in the terminal and on the page.
    pub phrase: String,
    /// The client key being signed in (`SHA256:...`).
    pub fingerprint: String,
    /// The SSH client's address.
    pub client_addr: String,
    /// What the client asked for: `LOGIN@ROUTE`.
    pub user_name: String,
    /// The gateway holding the SSH connection.
    pub gateway_id: String,
    /// The SSH session signing in, for the audit events of the web app.
    pub session_id: String,
    /// When the link was made.
    pub created_at: SystemTime,
    /// When it can no longer be approved (at most ten minutes on).
    pub expires_at: SystemTime,
}

/// Redacted: the hash names the link.
impl fmt::Debug for SshLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshLink")
            .field("id_hash", &self.id_hash.get(..8).unwrap_or("?"))
            .field("fingerprint", &self.fingerprint)
            .field("client_addr", &self.client_addr)
            .field("user_name", &self.user_name)
            .field("gateway_id", &self.gateway_id)
            .field("session_id", &self.session_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Where a link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Waiting for the user.
    Pending,
    /// Approved; the gateway has not taken the approval yet.
    Approved,
    /// The gateway took the approval and signed the connection in.
    Used,
    /// The SSH connection left (or gave up) before it was used.
    Closed,
}

impl LinkState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Pending => "pending",
            LinkState::Approved => "approved",
            LinkState::Used => "used",
            LinkState::Closed => "closed",
        }
    }

    /// The state a stored name stands for.
    pub fn parse(name: &str) -> Option<LinkState> {
        [
            LinkState::Pending,
            LinkState::Approved,
            LinkState::Used,
            LinkState::Closed,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// Who approved a link: the identity the web app signed in, which the
/// gateway binds to the key exactly as after a device sign-in.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LinkApproval {
    /// The IdP's subject.
    pub sub: String,
    /// The verified email, if any.
    pub email: Option<String>,
    /// The groups claim.
    pub groups: Vec<String>,
    /// Every ID-token claim, as a JSON object.
    pub claims_json: String,
    /// The issuer.
    pub issuer: String,
    /// The approving browser session (a prefix of its hash), for audit.
    pub web_session: String,
    /// When it was approved.
    pub approved_at: SystemTime,
}

/// A stored link with where it stands.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LinkRow {
    /// The link.
    pub link: SshLink,
    /// Its state.
    pub state: LinkState,
    /// Who approved it, once approved.
    pub approval: Option<LinkApproval>,
}

impl LinkRow {
    /// Whether it may still be approved at `now`.
    pub fn approvable(&self, now: SystemTime) -> bool {
        self.state == LinkState::Pending && now < self.link.expires_at
    }
}

/// What an approval did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkApproved {
    /// It was pending and is now approved.
    Approved,
    /// There is no such link (or it was purged).
    Unknown,
    /// Its ten minutes had passed.
    Expired,
    /// It was already approved, used or closed: nothing changed.
    Already(LinkState),
}
