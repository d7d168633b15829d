//! Access policy for Gatehouse routes: who may use a route, as which login,
//! and with which capabilities.
//!
//! **Invariant:** this crate is pure. It does no IO, uses no async, and knows
//! nothing about SSH or HTTP. The gateway builds a [`Request`], calls
//! [`evaluate`], and enforces the [`Decision`] it gets back.
//!
//! The rules at the crate root are deliberately small (identities and
//! groups) and are what the gateway uses today. The full policy language of
//! issue 5 lives in [`lang`]: YAML policies, compiled with every error
//! positioned, evaluated into a decision with capabilities, obligations and
//! a next-check time. The gateway moves to [`lang`], and the root API then
//! goes away.

pub mod lang;

use std::net::IpAddr;
use std::time::Duration;

/// Who is asking: the identity established by authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// A stable name for the identity (a service account name, later the
    /// IdP subject's email). Appears in audit events and certificate key ids.
    pub name: String,
    /// The email address, when the identity has one.
    pub email: Option<String>,
    /// Groups the identity belongs to; routes grant access by group.
    pub groups: Vec<String>,
    /// How the identity was established.
    pub kind: IdentityKind,
}

impl Identity {
    /// The label used in certificate key ids and user-facing messages:
    /// the email when there is one, else the name.
    pub fn label(&self) -> &str {
        self.email.as_deref().unwrap_or(&self.name)
    }
}

/// How an identity was established. Policies can tell people from machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    /// A client key registered in the configuration (CI jobs, Ansible,
    /// break-glass accounts).
    ServiceKey,
    /// A person signed in through the identity provider.
    User,
}

/// One access question: may this identity use this route as this login?
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// Who is asking.
    pub identity: &'a Identity,
    /// The login requested on the target (the part before the route).
    pub login: &'a str,
    /// The client's address as the gateway sees it.
    pub source: IpAddr,
}

/// What a session may do on the target. Each capability maps to an OpenSSH
/// certificate extension, so the target enforces it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Allocate a pseudo-terminal (`permit-pty`).
    pub pty: bool,
    /// Port forwarding (`permit-port-forwarding`).
    pub port_forwarding: bool,
    /// Agent forwarding (`permit-agent-forwarding`).
    pub agent_forwarding: bool,
    /// X11 forwarding (`permit-X11-forwarding`).
    pub x11_forwarding: bool,
    /// Running `~/.ssh/rc` on login (`permit-user-rc`).
    pub user_rc: bool,
}

impl Capabilities {
    /// The OpenSSH certificate extensions that grant exactly these
    /// capabilities, in the order `ssh-keygen -L` lists them.
    pub fn certificate_extensions(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.x11_forwarding {
            out.push("permit-X11-forwarding");
        }
        if self.agent_forwarding {
            out.push("permit-agent-forwarding");
        }
        if self.port_forwarding {
            out.push("permit-port-forwarding");
        }
        if self.pty {
            out.push("permit-pty");
        }
        if self.user_rc {
            out.push("permit-user-rc");
        }
        out
    }
}

/// The access rules of one route.
#[derive(Debug, Clone)]
pub struct RoutePolicy {
    /// The route's name, used in reasons.
    pub route: String,
    /// Logins that may be requested on the target. Empty means none.
    pub logins: Vec<String>,
    /// Identities (by name or email) that may use the route.
    pub allow_identities: Vec<String>,
    /// Groups whose members may use the route.
    pub allow_groups: Vec<String>,
    /// What an allowed session may do.
    pub capabilities: Capabilities,
    /// How long the certificate minted for the target stays valid.
    pub cert_ttl: Duration,
}

/// Which rule decided, so that audit events and `policy check` can say why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// The login is not in the route's `logins`.
    Login,
    /// The identity is named in `allow.identities`.
    AllowIdentity(String),
    /// The identity is a member of this group in `allow.groups`.
    AllowGroup(String),
    /// No rule allowed the request, so it is denied.
    DefaultDeny,
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// The rule that decided.
    pub rule: Rule,
    /// A human reason, phrased to follow "access denied: " or "allowed: ".
    pub reason: String,
    /// Capabilities in force; all off when denied.
    pub capabilities: Capabilities,
    /// Certificate lifetime in force.
    pub cert_ttl: Duration,
}

/// Decides a request against a route's policy.
///
/// Anything that no rule allows is denied. The login check comes first: a
/// login the route does not offer is refused whoever asks.
pub fn evaluate(policy: &RoutePolicy, request: &Request<'_>) -> Decision {
    let deny = |rule: Rule, reason: String| Decision {
        allowed: false,
        rule,
        reason,
        capabilities: Capabilities::default(),
        cert_ttl: policy.cert_ttl,
    };
    let allow = |rule: Rule, reason: String| Decision {
        allowed: true,
        rule,
        reason,
        capabilities: policy.capabilities,
        cert_ttl: policy.cert_ttl,
    };

    if !policy.logins.iter().any(|l| l == request.login) {
        return deny(
            Rule::Login,
            format!(
                "login {} is not allowed on route {}",
                request.login, policy.route
            ),
        );
    }

    let identity = request.identity;
    if let Some(named) = policy
        .allow_identities
        .iter()
        .find(|n| **n == identity.name || identity.email.as_deref() == Some(n.as_str()))
    {
        return allow(
            Rule::AllowIdentity(named.clone()),
            format!("identity {named} is allowed on route {}", policy.route),
        );
    }
    if let Some(group) = policy
        .allow_groups
        .iter()
        .find(|g| identity.groups.iter().any(|m| m == *g))
    {
        return allow(
            Rule::AllowGroup(group.clone()),
            format!("group {group} is allowed on route {}", policy.route),
        );
    }

    let reason = match (
        policy.allow_groups.as_slice(),
        policy.allow_identities.is_empty(),
    ) {
        ([], _) => format!(
            "{} is not allowed on route {}",
            identity.label(),
            policy.route
        ),
        ([group], true) => format!("route {} requires group {group}", policy.route),
        (groups, true) => format!(
            "route {} requires one of the groups {}",
            policy.route,
            groups.join(", ")
        ),
        (_, false) => format!(
            "{} is not allowed on route {}",
            identity.label(),
            policy.route
        ),
    };
    deny(Rule::DefaultDeny, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RoutePolicy {
        RoutePolicy {
            route: "prod-db".into(),
            logins: vec!["postgres".into(), "deploy".into()],
            allow_identities: vec!["ci@example.com".into()],
            allow_groups: vec!["sre".into(), "dba".into()],
            capabilities: Capabilities {
                pty: true,
                ..Capabilities::default()
            },
            cert_ttl: Duration::from_secs(300),
        }
    }

    fn identity(name: &str, email: Option<&str>, groups: &[&str]) -> Identity {
        Identity {
            name: name.into(),
            email: email.map(Into::into),
            groups: groups.iter().map(|g| (*g).into()).collect(),
            kind: IdentityKind::ServiceKey,
        }
    }

    #[test]
    fn decisions() {
        struct Case {
            name: &'static str,
            identity: Identity,
            login: &'static str,
            allowed: bool,
            rule: Rule,
            reason: &'static str,
        }
        let cases = [
            Case {
                name: "member of an allowed group",
                identity: identity("alice", Some("alice@example.com"), &["dev", "dba"]),
                login: "postgres",
                allowed: true,
                rule: Rule::AllowGroup("dba".into()),
                reason: "group dba is allowed on route prod-db",
            },
            Case {
                name: "identity allowed by email",
                identity: identity("ci", Some("ci@example.com"), &[]),
                login: "deploy",
                allowed: true,
                rule: Rule::AllowIdentity("ci@example.com".into()),
                reason: "identity ci@example.com is allowed on route prod-db",
            },
            Case {
                name: "no matching rule is denied",
                identity: identity("bob", None, &["dev"]),
                login: "postgres",
                allowed: false,
                rule: Rule::DefaultDeny,
                reason: "bob is not allowed on route prod-db",
            },
            Case {
                name: "login outside the route's list is denied even for members",
                identity: identity("alice", None, &["sre"]),
                login: "root",
                allowed: false,
                rule: Rule::Login,
                reason: "login root is not allowed on route prod-db",
            },
        ];
        for case in cases {
            let request = Request {
                identity: &case.identity,
                login: case.login,
                source: IpAddr::from([127, 0, 0, 1]),
            };
            let decision = evaluate(&policy(), &request);
            assert_eq!(decision.allowed, case.allowed, "{}", case.name);
            assert_eq!(decision.rule, case.rule, "{}", case.name);
            assert_eq!(decision.reason, case.reason, "{}", case.name);
            if !case.allowed {
                assert_eq!(
                    decision.capabilities,
                    Capabilities::default(),
                    "{}: a denial grants nothing",
                    case.name
                );
            }
        }
    }

    #[test]
    fn group_only_routes_name_the_required_group() {
        let mut p = policy();
        p.allow_identities.clear();
        p.allow_groups = vec!["sre".into()];
        let who = identity("bob", None, &["dev"]);
        let request = Request {
            identity: &who,
            login: "postgres",
            source: IpAddr::from([127, 0, 0, 1]),
        };
        assert_eq!(
            evaluate(&p, &request).reason,
            "route prod-db requires group sre"
        );
        p.allow_groups.push("dba".into());
        assert_eq!(
            evaluate(&p, &request).reason,
            "route prod-db requires one of the groups sre, dba"
        );
    }

    #[test]
    fn extensions_follow_capabilities() {
        assert!(Capabilities::default().certificate_extensions().is_empty());
        let all = Capabilities {
            pty: true,
            port_forwarding: true,
            agent_forwarding: true,
            x11_forwarding: true,
            user_rc: true,
        };
        assert_eq!(
            all.certificate_extensions(),
            [
                "permit-X11-forwarding",
                "permit-agent-forwarding",
                "permit-port-forwarding",
                "permit-pty",
                "permit-user-rc"
            ]
        );
    }
}
