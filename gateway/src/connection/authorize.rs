//! Authorize: may this identity have what the user name asks for? The user
//! name is split into login and route, the route's `logins:` are checked,
//! then the route's policy decides.

use std::net::SocketAddr;
use std::sync::Arc;

use audit::{Event, SessionId};
use policy::lang::{Decision, Identity, IdentityKind, Request, Timestamp};

use crate::lines;
use config::{Config, Route};
use telemetry::Metrics;
use telemetry::labels::PolicyPhase;

/// What an authorized connection may do.
pub(crate) struct Authorized {
    /// Who.
    pub identity: Arc<Identity>,
    /// The route asked for.
    pub route: Arc<Route>,
    /// The login on the target.
    pub login: String,
    /// The decision that allowed it.
    pub decision: Decision,
    /// The key that authenticated (empty for none).
    pub key_fingerprint: Option<String>,
}

/// How a client proved who it is, for `auth.accepted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// A registered service key.
    PublicKey,
    /// A key with a live login binding.
    Binding,
    /// A device-code sign-in in this connection.
    DeviceCode,
    /// A sign-in link approved in the web app during this connection.
    SignInLink,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::PublicKey => "publickey",
            Method::Binding => "binding",
            Method::DeviceCode => "device_code",
            Method::SignInLink => "sign_in_link",
        }
    }
}

/// The connection asking, for the audit events.
pub(crate) struct Asker<'a> {
    /// The session id.
    pub id: &'a SessionId,
    /// The client's address.
    pub peer: SocketAddr,
}

/// Decides whether `identity` may have what `user` asks for, and writes
/// `auth.accepted` or `auth.denied`. `Err` is the line the user sees.
pub(crate) fn authorize(
    config: &Config,
    metrics: &Metrics,
    asker: &Asker<'_>,
    user: &str,
    identity: Arc<Identity>,
    fingerprint: &str,
    method: Method,
) -> Result<Authorized, String> {
    match decide(config, metrics, asker.peer, user, &identity) {
        Ok((route, login, decision)) => {
            Event::AuthAccepted {
                session_id: asker.id.clone(),
                peer: asker.peer.to_string(),
                identity: identity.label().to_owned(),
                identity_kind: kind_name(identity.kind),
                method: method.as_str(),
                key_fingerprint: fingerprint.to_owned(),
                route: route.name.clone(),
                login: login.to_owned(),
                rule: decision.decided_by.rule_name().unwrap_or("").to_owned(),
                reason: decision.reason.to_string(),
                next_check: decision
                    .next_check
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
            }
            .emit();
            Ok(Authorized {
                identity,
                route,
                login: login.to_owned(),
                decision,
                key_fingerprint: (!fingerprint.is_empty()).then(|| fingerprint.to_owned()),
            })
        }
        Err(line) => {
            audit_denied(asker, user, identity.label(), fingerprint, &line);
            Err(line)
        }
    }
}

/// `auth.accepted` for `cert` (issue 16): there is no route or login to
/// decide yet; the direct-access policy decides on the channel.
pub(crate) fn audit_accepted_for_certificate(
    asker: &Asker<'_>,
    identity: &Identity,
    fingerprint: &str,
    method: Method,
) {
    Event::AuthAccepted {
        session_id: asker.id.clone(),
        peer: asker.peer.to_string(),
        identity: identity.label().to_owned(),
        identity_kind: kind_name(identity.kind),
        method: method.as_str(),
        key_fingerprint: fingerprint.to_owned(),
        route: String::new(),
        login: super::direct::CERT_USER.to_owned(),
        rule: String::new(),
        reason: "direct-access certificate requested".to_owned(),
        next_check: String::new(),
    }
    .emit();
}

/// Whether a user name asks for something: `LOGIN@ROUTE`, or `cert` for a
/// direct-access certificate. Anything else is refused before sign-in.
pub(crate) fn asks_for_something(user: &str) -> bool {
    user == super::direct::CERT_USER || split_user(user).is_some()
}

/// `auth.denied`, for refusals before any policy ran too.
pub(crate) fn audit_denied(
    asker: &Asker<'_>,
    user: &str,
    identity: &str,
    key_fingerprint: &str,
    reason: &str,
) {
    Event::AuthDenied {
        session_id: asker.id.clone(),
        peer: asker.peer.to_string(),
        identity: identity.to_owned(),
        key_fingerprint: key_fingerprint.to_owned(),
        user: user.to_owned(),
        reason: reason.to_owned(),
    }
    .emit();
}

fn decide<'u>(
    config: &Config,
    metrics: &Metrics,
    peer: SocketAddr,
    user: &'u str,
    identity: &Identity,
) -> Result<(Arc<Route>, &'u str, Decision), String> {
    let Some((login, route_name)) = split_user(user) else {
        return Err(lines::no_route(user));
    };
    let Some(route) = config.routes.get(route_name) else {
        return Err(lines::unknown_route(route_name));
    };
    if !route.offers(login) {
        return Err(lines::login_not_allowed(login, route_name));
    }
    let decision = policy::lang::evaluate(
        &route.policy,
        &Request {
            identity,
            login,
            source: peer.ip(),
            now: Timestamp::now(),
            session_start: None,
        },
    );
    metrics.policy_decision(PolicyPhase::Login, decision.allowed);
    if !decision.allowed {
        return Err(lines::access_denied(&route.name, &decision));
    }
    Ok((Arc::clone(route), login, decision))
}

fn kind_name(kind: IdentityKind) -> &'static str {
    match kind {
        IdentityKind::Service => "service_key",
        IdentityKind::User => "user",
    }
}

/// Splits `LOGIN@ROUTE`. OpenSSH already split `LOGIN@ROUTE@GATEWAY` at
/// its last `@`; route names cannot contain `@`, so the last one here
/// separates the route.
pub(crate) fn split_user(user: &str) -> Option<(&str, &str)> {
    let (login, route) = user.rsplit_once('@')?;
    (!login.is_empty() && !route.is_empty()).then_some((login, route))
}

#[cfg(test)]
mod tests {
    use super::split_user;

    #[test]
    fn user_names_split_at_the_last_at() {
        assert_eq!(split_user("alice@prod-db"), Some(("alice", "prod-db")));
        assert_eq!(split_user("a@b@prod-db"), Some(("a@b", "prod-db")));
        assert_eq!(split_user("alice"), None);
        assert_eq!(split_user("alice@"), None);
        assert_eq!(split_user("@prod-db"), None);
    }
}
