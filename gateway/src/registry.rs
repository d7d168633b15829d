//! The registry of live sessions: one [`LiveSession`] per authenticated
//! connection, with its current decision, and the one way a session is
//! ended ([`LiveSession::end`]). The tasks that re-check the sessions live in
//! `reevaluate.rs`.
//!
//! **Invariant:** a session is ended only through [`LiveSession::end`], so
//! every end has its line in every channel (which marks the recording), its
//! `session.ended` audit event, and the connection is closed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use audit::{Event, SessionId};
use policy::lang::{DecidedBy, Decision, Identity, IdentityKind, Request, Timestamp};
use russh::Disconnect;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::{lines, lock};
use config::Config;

/// How long a session's channels get to show the closing line before the
/// connection itself is closed.
const DISCONNECT_AFTER: Duration = Duration::from_millis(500);

/// Why a live session was ended; the `cause` of `session.ended`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndCause {
    /// The policy no longer allows it (reload, time window, route gone).
    Policy,
    /// Renewing the sign-in for `reauth_every` failed.
    Reauth,
    /// The sign-in was revoked (`gatehouse logins revoke`).
    Revoked,
    /// An administrator ended it (`gatehouse sessions kill`).
    Killed,
    /// A strict route's recording can no longer be stored.
    Recording,
}

impl EndCause {
    /// The cause as a metrics label.
    pub(crate) fn label(self) -> telemetry::labels::EndCause {
        use telemetry::labels::EndCause as L;
        match self {
            EndCause::Policy => L::Policy,
            EndCause::Reauth => L::Reauth,
            EndCause::Revoked => L::Revoked,
            EndCause::Killed => L::Killed,
            EndCause::Recording => L::Recording,
        }
    }

    /// The stable name in the audit event.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EndCause::Policy => "policy",
            EndCause::Reauth => "reauth",
            EndCause::Revoked => "revoked",
            EndCause::Killed => "killed",
            EndCause::Recording => "recording",
        }
    }
}

/// The sessions this gateway is serving.
#[derive(Default)]
pub(crate) struct Registry {
    sessions: Mutex<HashMap<SessionId, Arc<LiveSession>>>,
    /// Wakes the watch task for an immediate sweep.
    wake: Notify,
}

/// One authenticated connection, as continuous authorization sees it.
pub(crate) struct LiveSession {
    /// The session id.
    pub id: SessionId,
    /// The client's address.
    pub peer: SocketAddr,
    /// The route the session uses.
    pub route: String,
    /// The login on the target.
    pub login: String,
    /// When the session was authorized; `max_session` counts from here.
    pub started: Timestamp,
    /// The key that authenticated: a service key's, or the key a sign-in
    /// is bound to. Revoking that binding ends the session.
    pub key_fingerprint: Option<String>,
    state: Mutex<LiveState>,
    /// Tells every channel of the session to end with this line.
    ender: watch::Sender<Option<String>>,
    /// Closes the client connection once the channels had their say.
    handle: russh::server::Handle,
    /// Set once the session is ending, so it ends once.
    ending: CancellationToken,
    /// When and why it was ended, for the metrics at the connection's
    /// close.
    ended: std::sync::OnceLock<(std::time::Instant, EndCause)>,
}

struct LiveState {
    identity: Arc<Identity>,
    decision: Decision,
    /// A refresh for `reauth_every` is in flight.
    refreshing: bool,
}

/// What a sweep found for one session.
pub(crate) enum Verdict {
    /// Still allowed; the decision was updated.
    Allowed,
    /// No longer allowed: end it with this line.
    Denied {
        line: String,
        decision: Option<Box<Decision>>,
    },
    /// The sign-in is due for renewal at the IdP.
    Refresh,
}

/// Who the session is and how it was let in, for [`LiveSession::new`].
pub(crate) struct Admitted {
    /// The session id.
    pub id: SessionId,
    /// The client's address.
    pub peer: SocketAddr,
    /// The route.
    pub route: String,
    /// The login on the target.
    pub login: String,
    /// The key that authenticated, if any.
    pub key_fingerprint: Option<String>,
    /// Who.
    pub identity: Arc<Identity>,
    /// The decision that admitted it.
    pub decision: Decision,
}

impl LiveSession {
    /// A session admitted by `admitted.decision`, whose channels listen to
    /// `ender` and whose connection is `handle`.
    pub(crate) fn new(
        admitted: Admitted,
        ender: watch::Sender<Option<String>>,
        handle: russh::server::Handle,
    ) -> Self {
        let Admitted {
            id,
            peer,
            route,
            login,
            key_fingerprint,
            identity,
            decision,
        } = admitted;
        LiveSession {
            id,
            peer,
            route,
            login,
            started: Timestamp::now(),
            key_fingerprint,
            state: Mutex::new(LiveState {
                identity,
                decision,
                refreshing: false,
            }),
            ender,
            handle,
            ending: CancellationToken::new(),
            ended: std::sync::OnceLock::new(),
        }
    }

    /// When and why [`LiveSession::end`] ended it, if it did.
    pub(crate) fn ended(&self) -> Option<(std::time::Instant, EndCause)> {
        self.ended.get().copied()
    }

    /// The decision new channels and requests follow.
    pub(crate) fn decision(&self) -> Decision {
        lock(&self.state).decision.clone()
    }

    /// The identity as last confirmed.
    pub(crate) fn identity(&self) -> Arc<Identity> {
        Arc::clone(&lock(&self.state).identity)
    }

    fn next_check(&self) -> Option<Timestamp> {
        lock(&self.state).decision.next_check
    }

    /// Takes the identity a refresh for `reauth_every` confirmed.
    pub(crate) fn refreshed(&self, identity: Arc<Identity>) {
        let mut state = lock(&self.state);
        state.identity = identity;
        state.refreshing = false;
    }

    /// Notes that a refresh ended without a new identity.
    pub(crate) fn refresh_over(&self) {
        lock(&self.state).refreshing = false;
    }

    /// Ends the session: `line` in every channel (each marks its
    /// recording), the `session.ended` audit event, then the connection is
    /// closed. Only the first call does anything.
    pub(crate) fn end(&self, line: String, cause: EndCause, decision: Option<&Decision>) {
        if self.ending.is_cancelled() {
            return;
        }
        self.ending.cancel();
        let _ = self.ended.set((std::time::Instant::now(), cause));
        let identity = self.identity();
        Event::SessionEnded {
            session_id: self.id.clone(),
            peer: self.peer.to_string(),
            identity: identity.label().to_owned(),
            route: self.route.clone(),
            login: self.login.clone(),
            cause: cause.as_str(),
            rule: decision
                .and_then(|d| d.decided_by.rule_name())
                .unwrap_or("")
                .to_owned(),
            reason: line.clone(),
        }
        .emit();
        self.ender.send_replace(Some(line.clone()));
        let handle = self.handle.clone();
        tokio::spawn(async move {
            tokio::time::sleep(DISCONNECT_AFTER).await;
            let _ = handle
                .disconnect(
                    Disconnect::ByApplication,
                    lines::for_prompt(&line),
                    "en".into(),
                )
                .await;
        });
    }

    /// Re-checks the session against `config`, at `now`.
    pub(crate) fn evaluate(&self, config: &Config, now: Timestamp) -> Verdict {
        let revoked = |why: String| Verdict::Denied {
            line: lines::access_revoked(&why),
            decision: None,
        };
        let Some(route) = config.routes.get(&self.route) else {
            return revoked(format!("route {} no longer exists", self.route));
        };
        if !route.offers(&self.login) {
            return revoked(format!(
                "login {} is no longer allowed on route {}",
                self.login, self.route
            ));
        }
        let mut state = lock(&self.state);
        if state.identity.kind == IdentityKind::Service {
            // Service identities come from the configuration: follow it.
            let current = self
                .key_fingerprint
                .as_ref()
                .and_then(|fp| config.keys.get(fp));
            match current {
                Some(identity) => state.identity = Arc::clone(identity),
                None => return revoked("the client key is no longer registered".to_owned()),
            }
        }
        let decision = policy::lang::evaluate(
            &route.policy,
            &Request {
                identity: &state.identity,
                login: &self.login,
                source: self.peer.ip(),
                now,
                session_start: Some(self.started),
            },
        );
        if decision.allowed {
            if decision.capabilities != state.decision.capabilities {
                Event::SessionNarrowed {
                    session_id: self.id.clone(),
                    route: self.route.clone(),
                    rule: decision.decided_by.rule_name().unwrap_or("").to_owned(),
                    extensions: format!("{:?}", decision.capabilities.certificate_extensions()),
                }
                .emit();
            }
            state.decision = decision;
            return Verdict::Allowed;
        }
        if decision.decided_by == DecidedBy::ReauthenticationDue
            && state.identity.kind == IdentityKind::User
            && self.key_fingerprint.is_some()
        {
            if state.refreshing {
                // Keep the old decision until the refresh answers.
                return Verdict::Allowed;
            }
            state.refreshing = true;
            return Verdict::Refresh;
        }
        Verdict::Denied {
            line: lines::access_revoked(&lines::denial_reason(&self.route, &decision)),
            decision: Some(Box::new(decision)),
        }
    }
}

impl Registry {
    /// Adds a session; it is re-checked from now on.
    pub(crate) fn insert(&self, session: Arc<LiveSession>) {
        lock(&self.sessions).insert(session.id.clone(), session);
        // Its next-check time may be the earliest now.
        self.wake.notify_one();
    }

    /// Removes a session that has ended.
    pub(crate) fn remove(&self, id: &SessionId) {
        lock(&self.sessions).remove(id);
    }

    /// Asks for an immediate sweep (after a configuration reload).
    pub(crate) fn sweep_now(&self) {
        self.wake.notify_one();
    }

    /// Resolves when an immediate sweep was asked for.
    pub(crate) async fn sweep_asked(&self) {
        self.wake.notified().await;
    }

    /// How many sessions are live.
    pub(crate) fn len(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Every live session, at this moment.
    pub(crate) fn snapshot(&self) -> Vec<Arc<LiveSession>> {
        lock(&self.sessions).values().cloned().collect()
    }

    /// The live session with this id, if this gateway holds it.
    pub(crate) fn get(&self, id: &SessionId) -> Option<Arc<LiveSession>> {
        lock(&self.sessions).get(id).cloned()
    }

    /// The earliest time any session's decision must be checked again.
    pub(crate) fn earliest_next_check(&self) -> Option<Timestamp> {
        lock(&self.sessions)
            .values()
            .filter_map(|s| s.next_check())
            .min()
    }
}
