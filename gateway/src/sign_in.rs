//! Sign-in through the identity provider, shared by every connection:
//! the lazily discovered [`Idp`], the login-binding store, the limits on
//! sign-ins in flight (issue 3), which way an SSH client signs in (the
//! device grant, or a sign-in link on the web listener: [`Way`]), and the
//! sign-in link itself (`link.rs`, `phrase.rs`; issue 14).
//!
//! The SSH side of the flow (partial success, the keyboard-interactive
//! rounds) lives in `connection/authenticate.rs`; this module knows no
//! SSH.

mod link;
mod phrase;

pub(crate) use link::{LINK_LIFETIME, LinkCloser, NewLink, link_name, wait_for_approval};

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use policy::lang::{Identity, IdentityKind, Timestamp};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{Error, lock};
use config::{Limits, SignInConfig, SshSignIn};
use identity::{Idp, LazyIdp, SignedIn};
use state::{Binding, LinkApproval, NewBinding, Secret, Store};

/// Sign-in state shared by all connections.
pub(crate) struct SignIn {
    config: SignInConfig,
    /// The IdP, discovered at the first sign-in that needs it (one attempt
    /// at a time, a short pause after a failure).
    idp: LazyIdp,
    /// Login bindings (key fingerprint → identity).
    pub(crate) bindings: Arc<dyn Store>,
    /// Sign-ins in flight (device authorizations and links), gateway-wide.
    in_flight: Arc<Semaphore>,
    /// Sign-ins in flight per client address.
    per_source: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_source: usize,
}

/// Why a new sign-in (device authorization or link) was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitHit {
    /// `limits.max_sign_ins_per_source` sign-ins are pending from this
    /// address.
    PerSource,
    /// `limits.max_sign_ins` sign-ins are pending gateway-wide.
    Global,
}

impl LimitHit {
    /// The line the SSH user sees.
    pub(crate) fn user_line(self) -> &'static str {
        match self {
            LimitHit::PerSource => crate::lines::SIGN_INS_PER_SOURCE,
            LimitHit::Global => crate::lines::SIGN_INS_GLOBAL,
        }
    }

    /// The limit's name in the configuration, for the audit log.
    pub(crate) fn setting(self) -> &'static str {
        match self {
            LimitHit::PerSource => "max_sign_ins_per_source",
            LimitHit::Global => "max_sign_ins",
        }
    }
}

/// One sign-in's place in the limits (a device authorization or a link);
/// released on drop, which happens when its poller ends (approved, failed
/// or cancelled).
pub(crate) struct SignInPermit {
    _global: OwnedSemaphorePermit,
    source: IpAddr,
    per_source: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for SignInPermit {
    fn drop(&mut self) {
        let mut map = lock(&self.per_source);
        if let Some(n) = map.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.source);
            }
        }
    }
}

impl SignIn {
    /// Sign-in over the gateway's binding store. The IdP is not contacted
    /// here: the gateway starts (and serves registered keys) while the IdP
    /// is down.
    pub(crate) fn open(
        config: SignInConfig,
        limits: &Limits,
        bindings: Arc<dyn Store>,
    ) -> Result<SignIn, Error> {
        Ok(SignIn {
            idp: LazyIdp::new(config.idp.clone()),
            config,
            bindings,
            in_flight: Arc::new(Semaphore::new(limits.max_sign_ins)),
            per_source: Arc::new(Mutex::new(HashMap::new())),
            max_per_source: limits.max_sign_ins_per_source,
        })
    }

    /// The configured issuer.
    pub(crate) fn issuer(&self) -> &str {
        &self.config.idp.issuer
    }

    /// `idp.http_timeout`: the bound on each request to the IdP, and on
    /// starting a sign-in as a whole.
    pub(crate) fn http_timeout(&self) -> Duration {
        self.config.idp.http_timeout
    }

    /// The discovered IdP, discovering it first if no attempt succeeded
    /// yet; fails fast with `identity::Error::IdpUnavailable` just after a failed
    /// attempt.
    pub(crate) async fn idp(&self) -> Result<Idp, Error> {
        Ok(self.idp.get().await?)
    }

    /// Decides how this sign-in goes, from `idp.ssh_sign_in`, what the IdP
    /// offers and whether the gateway has a web address (`web_url`,
    /// `web.public_url`). Discovers the IdP first where the choice needs it;
    /// `link` mode does not talk to the IdP at all (the web app does).
    pub(crate) async fn way(&self, web_url: Option<&str>) -> Result<Way, Error> {
        let link = |why: NoWay| match web_url {
            Some(url) => Ok(Way::Link(url.to_owned())),
            None => Err(Error::SignInUnavailable(why)),
        };
        match self.config.ssh_sign_in {
            SshSignIn::Link => link(NoWay::NoWebAddress),
            SshSignIn::Device => {
                let idp = self.idp().await?;
                if idp.offers_device_grant() {
                    Ok(Way::Device(idp))
                } else {
                    Err(Error::SignInUnavailable(NoWay::NoDeviceGrant))
                }
            }
            SshSignIn::Auto => {
                let idp = self.idp().await?;
                if idp.offers_device_grant() {
                    Ok(Way::Device(idp))
                } else {
                    link(NoWay::NeitherWay)
                }
            }
        }
    }

    /// Who approved a sign-in link, as a sign-in: the configured issuer
    /// and `idp.allowed_domains` are checked here, as the device flow
    /// checks them on its ID token.
    pub(crate) fn link_signed_in(&self, approval: LinkApproval) -> Result<SignedIn, Error> {
        Ok(link::signed_in(
            approval,
            &self.config.idp.issuer,
            &self.config.idp.allowed_domains,
        )?)
    }

    /// Reserves a place for one sign-in (device authorization or link)
    /// from `source`.
    pub(crate) fn reserve(&self, source: IpAddr) -> Result<SignInPermit, LimitHit> {
        let mut map = lock(&self.per_source);
        let pending = map.get(&source).copied().unwrap_or(0);
        if pending >= self.max_per_source {
            return Err(LimitHit::PerSource);
        }
        let global = Arc::clone(&self.in_flight)
            .try_acquire_owned()
            .map_err(|_| LimitHit::Global)?;
        map.insert(source, pending + 1);
        Ok(SignInPermit {
            _global: global,
            source,
            per_source: Arc::clone(&self.per_source),
        })
    }

    /// The live binding of a key fingerprint, if any; records its use.
    pub(crate) async fn live_binding(&self, fingerprint: &str) -> Result<Option<Binding>, Error> {
        Ok(self
            .bindings
            .live_binding(fingerprint, SystemTime::now())
            .await?)
    }

    /// Binds `signed_in` to the key `fingerprint` for `login_ttl`.
    pub(crate) async fn bind(
        &self,
        fingerprint: &str,
        signed_in: &SignedIn,
    ) -> Result<Binding, Error> {
        let binding = NewBinding {
            fingerprint: fingerprint.to_owned(),
            sub: signed_in.sub.clone(),
            email: signed_in.email.clone(),
            groups: signed_in.groups.clone(),
            issuer: signed_in.issuer.clone(),
            refresh_token: signed_in
                .refresh_token
                .as_ref()
                .map(|t| Secret::new(t.secret())),
            claims_json: signed_in.claims_json.clone(),
            ttl: self.config.login_ttl,
        };
        Ok(self.bindings.bind(binding, SystemTime::now()).await?)
    }
}

/// How an SSH client signs in this time.
pub(crate) enum Way {
    /// The device grant at this (discovered) IdP.
    Device(Idp),
    /// A sign-in link on the web listener at this `web.public_url`.
    Link(String),
}

/// Why an SSH client cannot sign in at all: a configuration problem the
/// user can only report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoWay {
    /// `idp.ssh_sign_in: device`, and the IdP lists no device authorization
    /// endpoint.
    NoDeviceGrant,
    /// `idp.ssh_sign_in: link` without a `web` section (check-config
    /// refuses this; a configuration built otherwise may still have it).
    NoWebAddress,
    /// `idp.ssh_sign_in: auto`, and the IdP has no device grant and the
    /// gateway no `web` section for a link.
    NeitherWay,
}

impl NoWay {
    /// The line the SSH user sees.
    pub(crate) fn user_line(self) -> &'static str {
        match self {
            NoWay::NoDeviceGrant => crate::lines::SIGN_IN_NO_DEVICE_GRANT,
            NoWay::NoWebAddress => crate::lines::SIGN_IN_NO_WEB_ADDRESS,
            NoWay::NeitherWay => crate::lines::SIGN_IN_NEITHER_WAY,
        }
    }
}

impl std::fmt::Display for NoWay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NoWay::NoDeviceGrant => {
                "idp.ssh_sign_in is device, and the identity provider lists no device authorization endpoint"
            }
            NoWay::NoWebAddress => "idp.ssh_sign_in is link, and there is no web section",
            NoWay::NeitherWay => {
                "the identity provider lists no device authorization endpoint, and there is no web section for a sign-in link"
            }
        })
    }
}

/// The identity a sign-in established, just now; `binding_expires` when
/// it was bound to the client key.
pub(crate) fn identity_of(signed_in: &SignedIn, binding: Option<&Binding>) -> Identity {
    let mut identity = Identity::new(IdentityKind::User, signed_in.sub.clone());
    identity.email = signed_in.email.clone();
    identity.groups = signed_in.groups.clone();
    identity.claims = signed_in.claims.clone();
    identity.authenticated_at = Some(Timestamp::now());
    identity.binding_expires = binding.and_then(|b| timestamp(b.expires_at));
    identity
}

/// The identity a login binding carries.
pub(crate) fn identity_of_binding(binding: &Binding) -> Identity {
    let mut identity = Identity::new(IdentityKind::User, binding.sub.clone());
    identity.email = binding.email.clone();
    identity.groups = binding.groups.clone();
    identity.claims = serde_json::from_str::<serde_json::Value>(&binding.claims_json)
        .map(|v| identity::claims_from_json(&v))
        .unwrap_or_default();
    identity.authenticated_at = timestamp(binding.authenticated_at);
    identity.binding_expires = timestamp(binding.expires_at);
    identity
}

/// A `SystemTime` as the policy's timestamp (`None` if out of its range).
pub(crate) fn timestamp(t: SystemTime) -> Option<Timestamp> {
    Timestamp::try_from(t).ok()
}

/// How long until `at`, as the user reads it: "10 minutes", "45 seconds".
pub(crate) fn expires_in_words(left: Duration) -> String {
    let secs = left.as_secs();
    if secs >= 120 {
        format!("{} minutes", secs.div_ceil(60))
    } else if secs >= 60 {
        "1 minute".to_owned()
    } else {
        format!("{secs} seconds")
    }
}

#[cfg(test)]
mod tests {
    use super::expires_in_words;
    use std::time::Duration;

    #[test]
    fn expiry_reads_naturally() {
        assert_eq!(expires_in_words(Duration::from_secs(600)), "10 minutes");
        assert_eq!(expires_in_words(Duration::from_secs(599)), "10 minutes");
        assert_eq!(expires_in_words(Duration::from_secs(90)), "1 minute");
        assert_eq!(expires_in_words(Duration::from_secs(30)), "30 seconds");
    }
}
