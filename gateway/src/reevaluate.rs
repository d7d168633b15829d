//! Re-evaluation: the tasks that keep every live session checked against
//! the policy (issue 5), and that follow what administrators ask through
//! the state database.
//!
//! The [`watch`] task re-evaluates every session in the registry:
//!
//! - when the earliest decision's `next_check` comes (a time window's edge,
//!   `max_session`, `reauth_every`, the binding's expiry);
//! - every `reevaluate_interval`;
//! - at once when something outside changes: a configuration reload, a
//!   `gatehouse logins revoke`, a `gatehouse sessions kill` (those two are
//!   requests in the state database, polled every [`ADMIN_POLL`]).
//!
//! A session that is now denied is ended through
//! [`LiveSession::end`](crate::registry::LiveSession::end). A session that
//! is still allowed keeps its channels, and its new channels follow the new
//! decision (narrower capabilities).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use audit::Event;
use policy::lang::{Identity, IdentityKind, Timestamp};
use state::{KillOutcome, RenewedIdentity};
use tokio_util::sync::CancellationToken;

use crate::lines;
use crate::registry::{EndCause, LiveSession, Verdict};
use crate::shared::Shared;
use telemetry::labels::PolicyPhase;

/// How often the state database is asked about revocations and kill
/// requests; the admin commands take effect within this plus a sweep.
pub(crate) const ADMIN_POLL: Duration = Duration::from_millis(500);

/// The shortest pause between two sweeps, so a next-check time that is
/// already due cannot make the task spin.
const MIN_SWEEP_GAP: Duration = Duration::from_millis(50);

/// How long a refresh for `reauth_every` may take before it counts as
/// failed.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(15);

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
            () = registry.sweep_asked() => {}
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
            Verdict::Allowed => {
                shared
                    .metrics()
                    .policy_decision(PolicyPhase::Reevaluate, true);
            }
            Verdict::Denied { line, decision } => {
                shared
                    .metrics()
                    .policy_decision(PolicyPhase::Reevaluate, false);
                session.end(line, EndCause::Policy, decision.as_deref());
            }
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
            Event::SigninRefreshed {
                session_id: session.id.clone(),
                identity: identity.label().to_owned(),
                route: session.route.clone(),
            }
            .emit();
            session.refreshed(identity);
            shared.sessions().sweep_now();
        }
        Err(reason) => {
            Event::SigninRefreshFailed {
                session_id: session.id.clone(),
                route: session.route.clone(),
                reason,
            }
            .emit();
            session.refresh_over();
            session.end(lines::REAUTH_FAILED.to_owned(), EndCause::Reauth, None);
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
    let store = shared.store();
    let token = store
        .refresh_token(&fingerprint)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "there is no refresh token for this sign-in".to_owned())?;
    let idp = sign_in.idp().await.map_err(|e| e.to_string())?;
    let old = session.identity();
    let refreshed = idp
        .refresh(
            &identity::RefreshToken::new(token.expose().to_owned()),
            &old.name,
        )
        .await
        .map_err(|e| e.to_string())?;
    let renewed = refreshed.signed_in.map(|s| RenewedIdentity {
        email: s.email,
        groups: s.groups,
        claims_json: s.claims_json,
    });
    let rotated = refreshed
        .refresh_token
        .map(|t| state::Secret::new(t.secret()));
    let binding = store
        .renew(&fingerprint, renewed, rotated, SystemTime::now())
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the sign-in was revoked".to_owned())?;
    Ok(Arc::new(crate::sign_in::identity_of_binding(&binding)))
}

/// Follows the state database for what administrators ask of running
/// sessions: revoked bindings, and kill requests addressed to this
/// gateway (the store addresses each to the gateway that holds the
/// session, so with several gateways on one database only the holder
/// answers). Polls every [`ADMIN_POLL`] until `shutdown`.
pub(crate) async fn follow_admin(shared: Arc<Shared>, shutdown: CancellationToken) {
    let store = Arc::clone(shared.store());
    let gateway_id = shared.config().gateway_id.clone();
    let start =
        async { Ok::<_, state::Error>((store.revision().await?, store.last_kill_id().await?)) };
    let (mut revision, mut last_kill) = match start.await {
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
        let (revoked, kills, new_revision) =
            match poll_admin(store.as_ref(), &gateway_id, revision, last_kill).await {
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
                    session.end(lines::sign_in_revoked(), EndCause::Revoked, None);
                }
            }
        }
        for kill in kills {
            last_kill = last_kill.max(kill.id);
            let session_id = audit::SessionId::new(kill.session_id.clone());
            let outcome = match registry.get(&session_id) {
                Some(session) => {
                    session.end(lines::killed(&kill.reason), EndCause::Killed, None);
                    KillOutcome::Ended
                }
                None => KillOutcome::NotFound,
            };
            Event::SessionKillAnswered {
                session_id,
                request_id: kill.id,
                outcome: outcome.as_str(),
            }
            .emit();
            if let Err(e) = store
                .kill_handled(kill.id, outcome, SystemTime::now())
                .await
            {
                tracing::warn!(error = %e, "cannot record the kill request's outcome");
            }
        }
    }
}

/// Keys revoked since `revision`, kill requests for this gateway after
/// `last_kill`, and the revision now.
async fn poll_admin(
    store: &dyn state::Store,
    gateway_id: &str,
    revision: u64,
    last_kill: i64,
) -> Result<(HashSet<String>, Vec<state::KillRequest>, u64), state::Error> {
    let mut revoked = HashSet::new();
    let mut new_revision = revision;
    if store.revision().await? != revision {
        let since = store.revoked_since(revision).await?;
        new_revision = since.revision;
        revoked.extend(since.fingerprints);
    }
    let kills = store.kill_requests_for(gateway_id, last_kill).await?;
    Ok((revoked, kills, new_revision))
}
