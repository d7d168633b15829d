//! Continuous authorization: the registry of live sessions and the task
//! that keeps re-checking them against the policy (issue 5).
//!
//! Every authenticated connection is a [`LiveSession`] here until it ends.
//! The [`watch`] task re-evaluates all of them:
//!
//! - when the earliest decision's `next_check` comes (a time window's edge,
//!   `max_session`, `reauth_every`, the binding's expiry);
//! - every `reevaluate_interval`;
//! - at once when something outside changes: a configuration reload, a
//!   `gatehouse logins revoke`, a `gatehouse sessions kill` (those two are
//!   requests in the state database, polled every [`ADMIN_POLL`]).
//!
//! A session that is now denied is ended: one line in each of its
//! channels (which also marks the recording), an audit event, then the
//! connection is closed. A session that is still allowed keeps its channels,
//! and its new channels follow the new decision (narrower capabilities).
//!
//! **Invariant:** a session is ended only through [`LiveSession::end`], so
//! every end has its line, its audit event and its recording marker.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use policy::lang::{DecidedBy, Decision, Identity, IdentityKind, Request, Timestamp};
use russh::Disconnect;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::bindings::{BindingStore, KillOutcome, RenewedIdentity};
use crate::lock;
use crate::server::Shared;
use crate::sign_in::blocking;

/// How often the state database is asked about revocations and kill
/// requests; the admin commands take effect within this plus a sweep.
pub(crate) const ADMIN_POLL: Duration = Duration::from_millis(500);

/// How long a session's channels get to show the closing line before the
/// connection itself is closed.
const DISCONNECT_AFTER: Duration = Duration::from_millis(500);

/// The shortest pause between two sweeps, so a next-check time that is
/// already due cannot make the task spin.
const MIN_SWEEP_GAP: Duration = Duration::from_millis(50);

/// How long a refresh for `reauth_every` may take before it counts as
/// failed.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(15);

/// The sessions this gateway is serving.
#[derive(Default)]
pub(crate) struct Registry {
    sessions: Mutex<HashMap<String, Arc<LiveSession>>>,
    /// Wakes the watch task for an immediate sweep.
    wake: Notify,
}

/// One authenticated connection, as continuous authorization sees it.
pub(crate) struct LiveSession {
    /// The session id.
    pub id: String,
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
}

struct LiveState {
    identity: Arc<Identity>,
    decision: Decision,
    /// A refresh for `reauth_every` is in flight.
    refreshing: bool,
}

/// What a sweep found for one session.
enum Verdict {
    Allowed,
    Denied {
        line: String,
        cause: &'static str,
        decision: Option<Box<Decision>>,
    },
    Refresh,
}

impl LiveSession {
    /// A session, authorized by `decision`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: String,
        peer: SocketAddr,
        route: String,
        login: String,
        key_fingerprint: Option<String>,
        identity: Arc<Identity>,
        decision: Decision,
        ender: watch::Sender<Option<String>>,
        handle: russh::server::Handle,
    ) -> Self {
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
        }
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

    /// Ends the session: `line` in every channel (each marks its
    /// recording), the `session.ended` audit event, then the connection is
    /// closed. Only the first call does anything.
    pub(crate) fn end(&self, line: String, cause: &str, decision: Option<&Decision>) {
        if self.ending.is_cancelled() {
            return;
        }
        self.ending.cancel();
        let identity = self.identity();
        tracing::info!(
            target: "audit",
            event = "session.ended",
            session_id = %self.id,
            peer = %self.peer,
            identity = identity.label(),
            route = %self.route,
            login = %self.login,
            cause,
            rule = decision.and_then(|d| d.decided_by.rule_name()).unwrap_or(""),
            reason = %line,
        );
        self.ender.send_replace(Some(line.clone()));
        let handle = self.handle.clone();
        tokio::spawn(async move {
            tokio::time::sleep(DISCONNECT_AFTER).await;
            let _ = handle
                .disconnect(Disconnect::ByApplication, line, "en".into())
                .await;
        });
    }

    /// Re-checks the session against `config`, at `now`.
    fn evaluate(&self, config: &crate::config::Config, now: Timestamp) -> Verdict {
        let revoked = |why: String| Verdict::Denied {
            line: format!("gatehouse: session ended: access revoked ({why})"),
            cause: "policy",
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
                tracing::info!(
                    target: "audit",
                    event = "session.narrowed",
                    session_id = %self.id,
                    route = %self.route,
                    rule = decision.decided_by.rule_name().unwrap_or(""),
                    extensions = ?decision.capabilities.certificate_extensions(),
                    "new channels follow the new decision",
                );
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
        let line = format!(
            "gatehouse: session ended: access revoked ({})",
            crate::connection::denial_reason(&self.route, &decision)
        );
        Verdict::Denied {
            line,
            cause: "policy",
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
    pub(crate) fn remove(&self, id: &str) {
        lock(&self.sessions).remove(id);
    }

    /// Asks for an immediate sweep (after a configuration reload).
    pub(crate) fn sweep_now(&self) {
        self.wake.notify_one();
    }

    /// How many sessions are live.
    pub(crate) fn len(&self) -> usize {
        lock(&self.sessions).len()
    }

    fn snapshot(&self) -> Vec<Arc<LiveSession>> {
        lock(&self.sessions).values().cloned().collect()
    }

    fn get(&self, id: &str) -> Option<Arc<LiveSession>> {
        lock(&self.sessions).get(id).cloned()
    }

    fn earliest_next_check(&self) -> Option<Timestamp> {
        lock(&self.sessions)
            .values()
            .filter_map(|s| s.next_check())
            .min()
    }
}

/// Re-checks every live session until `shutdown`: see the module
/// documentation for when.
pub(crate) async fn watch(shared: Arc<Shared>, shutdown: CancellationToken) {
    let registry = Arc::clone(shared.sessions());
    let mut last_full = tokio::time::Instant::now();
    loop {
        let interval = shared.config().reevaluate_interval;
        let mut until = last_full + interval;
        if let Some(due) = registry.earliest_next_check() {
            let wait =
                Duration::try_from(due.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO);
            until = until.min(tokio::time::Instant::now() + wait);
        }
        let until = until.max(tokio::time::Instant::now() + MIN_SWEEP_GAP);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep_until(until) => {}
            () = registry.wake.notified() => {}
        }
        last_full = tokio::time::Instant::now();
        sweep(&shared).await;
    }
}

/// Re-evaluates every live session once.
async fn sweep(shared: &Arc<Shared>) {
    let config = shared.config();
    let now = Timestamp::now();
    for session in shared.sessions().snapshot() {
        match session.evaluate(&config, now) {
            Verdict::Allowed => {}
            Verdict::Denied {
                line,
                cause,
                decision,
            } => session.end(line, cause, decision.as_deref()),
            Verdict::Refresh => {
                tokio::spawn(refresh(Arc::clone(shared), session));
            }
        }
    }
}

/// Renews a signed-in session's identity with the IdP for `reauth_every`.
/// On success the session goes on (re-checked at once with the renewed
/// identity); on any failure it ends: the identity no longer holds.
async fn refresh(shared: Arc<Shared>, session: Arc<LiveSession>) {
    let result = tokio::time::timeout(REFRESH_TIMEOUT, renew(&shared, &session)).await;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(_) => Err(format!(
            "the identity provider did not answer within {}s",
            REFRESH_TIMEOUT.as_secs()
        )),
    };
    match outcome {
        Ok(identity) => {
            tracing::info!(
                target: "audit",
                event = "signin.refreshed",
                session_id = %session.id,
                identity = identity.label(),
                route = %session.route,
            );
            {
                let mut state = lock(&session.state);
                state.identity = identity;
                state.refreshing = false;
            }
            shared.sessions().sweep_now();
        }
        Err(reason) => {
            tracing::warn!(
                target: "audit",
                event = "signin.refresh_failed",
                session_id = %session.id,
                route = %session.route,
                reason = %reason,
            );
            lock(&session.state).refreshing = false;
            session.end(
                "gatehouse: session ended: your sign-in could not be renewed; run ssh again to sign in"
                    .to_owned(),
                "reauth",
                None,
            );
        }
    }
}

/// The refresh itself: the stored refresh token, the IdP, the store.
async fn renew(shared: &Shared, session: &LiveSession) -> Result<Arc<Identity>, String> {
    let Some(sign_in) = shared.sign_in() else {
        return Err("sign-in is no longer configured".to_owned());
    };
    let Some(fingerprint) = session.key_fingerprint.clone() else {
        return Err("the session has no bound key".to_owned());
    };
    let store = Arc::clone(shared.store());
    let fp = fingerprint.clone();
    let token = blocking(move || store.refresh_token(&fp))
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "there is no refresh token for this sign-in".to_owned())?;
    let idp = sign_in.idp().await.map_err(|e| e.to_string())?;
    let old = session.identity();
    let refreshed = idp
        .refresh(&crate::oidc::RefreshToken::new(token), &old.name)
        .await
        .map_err(|e| e.to_string())?;
    let store = Arc::clone(shared.store());
    let signed_in = refreshed.signed_in;
    let rotated = refreshed.refresh_token.map(|t| t.secret().to_owned());
    let binding = blocking(move || {
        let renewed = signed_in.as_ref().map(|s| RenewedIdentity {
            email: s.email.as_deref(),
            groups: &s.groups,
            claims_json: &s.claims_json,
        });
        store.renew(&fingerprint, renewed, rotated.as_deref(), SystemTime::now())
    })
    .await
    .map_err(|e| e.to_string())?
    .ok_or_else(|| "the sign-in was revoked".to_owned())?;
    Ok(Arc::new(crate::sign_in::identity_of_binding(&binding)))
}

/// Follows the state database for what administrators ask of running
/// sessions: revoked bindings and kill requests. Polls every
/// [`ADMIN_POLL`] until `shutdown`.
pub(crate) async fn follow_admin(shared: Arc<Shared>, shutdown: CancellationToken) {
    let store = Arc::clone(shared.store());
    let start = {
        let store = Arc::clone(&store);
        blocking(move || Ok((store.revision()?, store.last_kill_id()?))).await
    };
    let (mut revision, mut last_kill) = match start {
        Ok(pair) => pair,
        Err(e) => {
            tracing::error!(error = %e, "cannot follow revocations and kill requests");
            return;
        }
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(ADMIN_POLL) => {}
        }
        let polled = {
            let store = Arc::clone(&store);
            blocking(move || poll_admin(&store, revision, last_kill)).await
        };
        let (revoked, kills, new_revision) = match polled {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read revocations and kill requests");
                continue;
            }
        };
        revision = new_revision;
        let registry = shared.sessions();
        if !revoked.is_empty() {
            for session in registry.snapshot() {
                if session
                    .key_fingerprint
                    .as_ref()
                    .is_some_and(|fp| revoked.contains(fp))
                    && session.identity().kind == IdentityKind::User
                {
                    session.end(
                        "gatehouse: session ended: access revoked (your sign-in was revoked by an administrator)".to_owned(),
                        "revoked",
                        None,
                    );
                }
            }
        }
        for kill in kills {
            last_kill = last_kill.max(kill.id);
            let outcome = match registry.get(&kill.session_id) {
                Some(session) => {
                    let why = if kill.reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", kill.reason)
                    };
                    session.end(
                        format!("gatehouse: session ended by an administrator{why}"),
                        "killed",
                        None,
                    );
                    KillOutcome::Ended
                }
                None => KillOutcome::NotFound,
            };
            let store = Arc::clone(&store);
            let id = kill.id;
            let recorded =
                blocking(move || store.kill_handled(id, outcome, SystemTime::now())).await;
            if let Err(e) = recorded {
                tracing::warn!(error = %e, "cannot record the kill request's outcome");
            }
        }
    }
}

type AdminNews = (HashSet<String>, Vec<crate::bindings::KillRequest>, u64);

fn poll_admin(
    store: &BindingStore,
    revision: u64,
    last_kill: i64,
) -> Result<AdminNews, crate::Error> {
    let mut revoked = HashSet::new();
    let mut new_revision = revision;
    if store.revision()? != revision {
        let since = store.revoked_since(revision)?;
        new_revision = since.revision;
        revoked.extend(since.fingerprints);
    }
    let kills = store.kill_requests_after(last_kill)?;
    Ok((revoked, kills, new_revision))
}
