//! The SSH sign-in link (issue 14), for identity providers without the
//! device grant: the gateway makes a single-use link on the web listener,
//! the user opens it in a browser where they are signed in to the web app
//! and approves it there, and the gateway, polling the state database,
//! takes the approval and binds the key as after a device sign-in.
//!
//! The URL carries a random token; the store keeps only its SHA-256 (the
//! web app hashes what it is given the same way), so reading the database
//! gives no usable link. The phrase shown next to the link is repeated on
//! the page, so the user can check that the page is for their own terminal.
//! This module knows no SSH; `connection/authenticate.rs` shows the link
//! and runs the rounds.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::TryRng;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::phrase;
use crate::Error;
use identity::SignedIn;
use state::{LinkApproval, Store};

/// How long a link can be approved: never longer, whatever else is
/// configured (the state crate holds links to at most this too).
pub(crate) const LINK_LIFETIME: Duration = Duration::from_secs(600);

/// How often the gateway asks the state database whether the link was
/// approved: the user waits at most this long after approving, and a
/// gateway with `max_sign_ins` links pending makes a few hundred cheap
/// reads a second at worst.
const POLL_EVERY: Duration = Duration::from_millis(250);

/// Stands for a missing or unverified email when the domain is refused
/// (the same words as the device flow's).
const NO_EMAIL: &str = "(no verified email)";

/// A new link before it is stored: the token for the URL, the hash the
/// store keeps, and the phrase.
pub(crate) struct NewLink {
    /// 32 random bytes, base64url without padding: the URL's last segment.
    token: String,
    /// Lowercase hex SHA-256 of the token's text.
    pub(crate) id_hash: String,
    /// Three words joined by `-`.
    pub(crate) phrase: String,
}

/// Redacted: the token opens the link.
impl fmt::Debug for NewLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewLink")
            .field("token", &"***")
            .field("link", &link_name(&self.id_hash))
            .field("phrase", &self.phrase)
            .finish()
    }
}

impl NewLink {
    /// A fresh token from the operating system's random source, and a
    /// phrase.
    pub(crate) fn generate() -> Result<NewLink, Error> {
        let no_randomness =
            || Error::Io(std::io::Error::other("no random bytes for a sign-in link"));
        let token = state::token::new_token().ok_or_else(no_randomness)?;
        let mut words = [0u8; 3];
        rand::rngs::SysRng
            .try_fill_bytes(&mut words)
            .map_err(|_| no_randomness())?;
        Ok(NewLink {
            id_hash: state::token::hash(&token),
            token,
            phrase: phrase::phrase(words),
        })
    }

    /// The URL the user opens: `{public_url}/ssh/link/{token}`.
    pub(crate) fn url(&self, public_url: &str) -> String {
        format!(
            "{}/ssh/link/{}",
            public_url.trim_end_matches('/'),
            self.token
        )
    }
}

/// The link's name in audit events: the first hex digits of its hash.
pub(crate) fn link_name(id_hash: &str) -> String {
    state::token::short(id_hash)
}

/// Closes the link when dropped, unless its approval was taken: however
/// the wait ends (the client left, the auth timeout cut the connection,
/// the link expired, the task went away), a later visit to the link then
/// says that the SSH client is gone rather than offering to approve it.
pub(crate) struct LinkCloser {
    store: Arc<dyn Store>,
    id_hash: String,
    /// The approval was taken: the link is `used`, nothing to close.
    used: bool,
}

impl LinkCloser {
    /// Guards the stored link `id_hash`.
    pub(crate) fn new(store: Arc<dyn Store>, id_hash: String) -> Self {
        LinkCloser {
            store,
            id_hash,
            used: false,
        }
    }
}

impl Drop for LinkCloser {
    fn drop(&mut self) {
        if self.used {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = Arc::clone(&self.store);
        let id_hash = std::mem::take(&mut self.id_hash);
        runtime.spawn(
            async move {
                if let Err(e) = store.ssh_link_close(&id_hash).await {
                    tracing::warn!(
                        link = %link_name(&id_hash),
                        error = %e,
                        "cannot close the sign-in link; it stays open until it expires"
                    );
                }
            }
            .instrument(tracing::Span::current()),
        );
    }
}

/// Waits for the link to be approved and takes the approval: asks the
/// store every [`POLL_EVERY`] until it has one, the link expires at
/// `expires_at` ([`identity::Error::SignInExpired`]), or `cancel` fires
/// ([`identity::Error::SignInCancelled`]). A state-database error is
/// logged once and retried until expiry: the database being busy for a
/// moment must not cost the user the sign-in.
pub(crate) async fn wait_for_approval(
    closer: &mut LinkCloser,
    expires_at: SystemTime,
    cancel: &CancellationToken,
) -> Result<LinkApproval, Error> {
    let mut failing = false;
    loop {
        if cancel.is_cancelled() {
            return Err(identity::Error::SignInCancelled.into());
        }
        // Read the clock before asking: an approval is only possible
        // before `expires_at`, so one last look after it catches an
        // approval given at the very end.
        let now = SystemTime::now();
        match closer.store.ssh_link_redeem(&closer.id_hash).await {
            Ok(Some(approval)) => {
                closer.used = true;
                return Ok(approval);
            }
            Ok(None) => failing = false,
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        link = %link_name(&closer.id_hash),
                        error = %e,
                        "cannot read the sign-in link from the state database; retrying until it expires"
                    );
                }
                failing = true;
            }
        }
        let Ok(left) = expires_at.duration_since(now) else {
            return Err(identity::Error::SignInExpired.into());
        };
        if left.is_zero() {
            return Err(identity::Error::SignInExpired.into());
        }
        tokio::select! {
            () = cancel.cancelled() => return Err(identity::Error::SignInCancelled.into()),
            () = tokio::time::sleep(POLL_EVERY.min(left)) => {}
        }
    }
}

/// Who approved the link, as the device flow hands it on: the web app
/// verified the ID token at its own sign-in; here the gateway checks that
/// it names the configured issuer and applies `allowed_domains` itself,
/// since it decides who gets in over SSH. There is never a refresh token.
pub(crate) fn signed_in(
    approval: LinkApproval,
    issuer: &str,
    allowed_domains: &[String],
) -> Result<SignedIn, identity::Error> {
    if approval.issuer != issuer {
        return Err(identity::Error::TokenRejected(format!(
            "the sign-in link was approved by a sign-in at {:?}, not at the configured issuer",
            approval.issuer
        )));
    }
    if !identity::domain_allowed(approval.email.as_deref(), allowed_domains) {
        return Err(identity::Error::DomainNotAllowed {
            email: approval.email.unwrap_or_else(|| NO_EMAIL.to_owned()),
        });
    }
    let claims = serde_json::from_str::<serde_json::Value>(&approval.claims_json)
        .map(|v| identity::claims_from_json(&v))
        .unwrap_or_default();
    Ok(SignedIn {
        sub: approval.sub,
        email: approval.email,
        groups: approval.groups,
        issuer: approval.issuer,
        refresh_token: None,
        claims,
        claims_json: approval.claims_json,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn a_new_link_hashes_its_token_and_hides_it() {
        let link = NewLink::generate().unwrap();
        assert_eq!(link.token.len(), 43);
        assert!(
            link.token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(link.id_hash, state::token::hash(&link.token));
        assert_eq!(link.id_hash.len(), 64);
        assert_eq!(link.phrase.split('-').count(), 3);
        assert_eq!(
            link.url("https://gw.example.com"),
            format!("https://gw.example.com/ssh/link/{}", link.token)
        );
        assert!(!format!("{link:?}").contains(&link.token));
        assert_ne!(link.token, NewLink::generate().unwrap().token);
        assert_eq!(link_name(&link.id_hash).len(), 12);
    }

    fn approval(email: Option<&str>) -> LinkApproval {
        LinkApproval {
            sub: "alice-sub".to_owned(),
            email: email.map(str::to_owned),
            groups: vec!["sre".to_owned()],
            claims_json: r#"{"sub":"alice-sub","groups":["sre"],"amr":["pwd"]}"#.to_owned(),
            issuer: "https://idp.example".to_owned(),
            web_session: "abc123".to_owned(),
            approved_at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn an_approval_becomes_a_sign_in_within_the_allowed_domains() {
        let issuer = "https://idp.example";
        let ok = signed_in(approval(Some("alice@example.com")), issuer, &[]).unwrap();
        assert_eq!(ok.sub, "alice-sub");
        assert_eq!(ok.groups, ["sre"]);
        assert!(ok.refresh_token.is_none());
        assert!(ok.claims_json.contains("amr"));
        let allowed = ["example.com".to_owned()];
        assert!(signed_in(approval(Some("alice@EXAMPLE.com")), issuer, &allowed).is_ok());
        for email in [Some("alice@corp.example"), None, Some("@example.com")] {
            match signed_in(approval(email), issuer, &allowed) {
                Err(identity::Error::DomainNotAllowed { .. }) => {}
                other => panic!("{email:?}: {other:?}"),
            }
        }
        assert!(matches!(
            signed_in(approval(Some("alice@example.com")), "https://other", &[]),
            Err(identity::Error::TokenRejected(_))
        ));
    }

    /// A store with one pending link `id`, and its closer.
    async fn stored(dir: &std::path::Path, id: &str) -> (Arc<dyn Store>, LinkCloser) {
        let store: Arc<dyn Store> = Arc::new(state::Sqlite::open(dir).unwrap());
        let now = SystemTime::now();
        let link = state::SshLink {
            id_hash: id.to_owned(),
            phrase: "amber-falcon-river".to_owned(),
            fingerprint: String::new(),
            client_addr: "192.0.2.9".to_owned(),
            user_name: "root@db".to_owned(),
            gateway_id: "gw-1".to_owned(),
            session_id: "s-1".to_owned(),
            created_at: now,
            expires_at: now + LINK_LIFETIME,
        };
        store.ssh_link_create(link).await.unwrap();
        let closer = LinkCloser::new(Arc::clone(&store), id.to_owned());
        (store, closer)
    }

    async fn state_of(store: &Arc<dyn Store>, id: &str) -> state::LinkState {
        store.ssh_link(id).await.unwrap().unwrap().state
    }

    /// Waits (a little) for the closer's spawned close to land.
    async fn eventually(store: &Arc<dyn Store>, id: &str, want: state::LinkState) {
        for _ in 0..100 {
            if state_of(store, id).await == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(state_of(store, id).await, want);
    }

    #[tokio::test]
    async fn an_approval_is_taken_within_a_poll_and_the_link_stays_used() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut closer) = stored(dir.path(), "l1").await;
        let approver = Arc::clone(&store);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let approved = approver
                .ssh_link_approve("l1", approval(Some("alice@example.com")), SystemTime::now())
                .await
                .unwrap();
            assert_eq!(approved, state::LinkApproved::Approved);
        });
        let started = std::time::Instant::now();
        let expires_at = SystemTime::now() + LINK_LIFETIME;
        let got = wait_for_approval(&mut closer, expires_at, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(got.sub, "alice-sub");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        drop(closer);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(state_of(&store, "l1").await, state::LinkState::Used);
    }

    #[tokio::test]
    async fn an_expired_or_abandoned_wait_closes_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut closer) = stored(dir.path(), "expired").await;
        let expires_at = SystemTime::now() + Duration::from_millis(300);
        let started = std::time::Instant::now();
        let got = wait_for_approval(&mut closer, expires_at, &CancellationToken::new()).await;
        assert!(
            matches!(got, Err(Error::Identity(identity::Error::SignInExpired))),
            "{got:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(state_of(&store, "expired").await, state::LinkState::Pending);
        drop(closer);
        eventually(&store, "expired", state::LinkState::Closed).await;

        // The connection goes away: the wait ends at once, the link closes.
        let (_, mut closer) = stored(dir.path(), "left").await;
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            stop.cancel();
        });
        let got = wait_for_approval(&mut closer, SystemTime::now() + LINK_LIFETIME, &cancel).await;
        assert!(
            matches!(got, Err(Error::Identity(identity::Error::SignInCancelled))),
            "{got:?}"
        );
        drop(closer);
        eventually(&store, "left", state::LinkState::Closed).await;
    }
}
