//! The Gatehouse route policy language (issue 5).
//!
//! The web app's recordings access policy (`web.access`: what a viewer may
//! do with a recorded session) is written in the same language, with its
//! own capabilities and three criteria about the recording; see
//! [`access`]. So is the policy of each HTTP route of the identity-aware
//! HTTP proxy (`http_routes:`), with three criteria about the request
//! (`method`, `path` with its `glob` matcher, `header.<name>`); see
//! [`http`]. All three share this module's compiler and conditions.
//!
//! **Invariant:** this module is pure. It reads YAML from a `&str`, takes
//! the current time as an argument and never reads a clock, a file, the
//! network or the system's time-zone database (time zones come from the
//! IANA database bundled into the binary).
//!
//! # Phases
//!
//! 1. **Parse**: the gateway's config parser embeds [`raw::PolicyDoc`]
//!    (under a top-level `policies:`) and [`raw::RoutePolicy`] (as
//!    `Spanned<RoutePolicy>` under each route's `policy:`).
//! 2. **Compile**: [`compile`] checks everything and builds a [`PolicySet`]
//!    with one [`CompiledRoutePolicy`] per route, or returns *all* problems
//!    as [`CompileError`]s with line and column (the gateway adds the file
//!    name). [`parse_and_compile`] does both steps for a standalone file.
//! 3. **Evaluate**: [`evaluate`] answers a [`Request`] with a [`Decision`]
//!    without allocating: allowed or denied, which rule decided and why, the
//!    [`Capabilities`] and [`Obligations`] in force, and when to check
//!    again ([`Decision::next_check`]).
//!
//! # The language
//!
//! A complete example (`policy/examples/policy.yaml`, compiled and run
//! against `policy/examples/policy-tests.yaml` by a unit test):
//!
//! ```yaml
#![doc = include_str!("../../examples/policy.yaml")]
//! ```
//!
//! ## Rules
//!
//! A rule is one of `allow: NAME`, `deny: NAME` or `restrict: NAME`, with a
//! required `when:` condition, an optional `reason:` text and, for allow and
//! restrict rules, optional `capabilities:` and `obligations:` that narrow
//! the route's.
//!
//! - A matching **deny** rule always wins, wherever it stands.
//! - Otherwise the **first** matching **allow** rule (in order: included
//!   policies' rules, then the route's own) decides.
//! - Anything that no allow rule matches is **denied** (default deny).
//! - Every matching **restrict** rule narrows an allowed request's
//!   capabilities and obligations; it never allows or denies by itself.
//!   Use it for "contractors get no sftp, however they got in".
//!
//! ## Conditions
//!
//! A condition is a mapping of criteria; several keys in one mapping must
//! **all** hold. The combinators mean exactly what they say:
//!
//! - `all: [c1, c2]`: every condition holds (`all: []` always holds: write
//!   it for a rule that applies to everyone);
//! - `any: [c1, c2]`: at least one holds (`any: []` never holds);
//! - `not: c`: `c` does not hold. A plain negation of one condition, not
//!   Pomerium's "none of".
//!
//! ## Criteria
//!
//! | criterion | subject | bare scalar | bare list |
//! |---|---|---|---|
//! | `email` | the identity's email, ASCII case ignored | `is` | `in` |
//! | `domain` | the part of the email after the last `@`, case ignored | `is` | `in` |
//! | `groups` | the identity's groups (a list) | `has` | `in` (member of any) |
//! | `claim.<path>` | an ID-token claim; `claim.org.team` walks into objects, `claim."https://x/roles"` quotes a name with dots | `has` (equals, or a list contains it) | `in` |
//! | `login` | the login requested on the target | `is` | `in` |
//! | `login_matches` | `email_local_part` or `claim.<path>`: the login must equal it (case-sensitive) | | |
//! | `source_ip` | the client's address; IPv4-mapped IPv6 counts as IPv4 | one CIDR or address | any of them |
//! | `time_of_day` | `{from: "HH:MM", to: "HH:MM", timezone: IANA}`; inside when `from <= t < to` on that zone's wall clock, crossing midnight when `from > to` | | |
//! | `day_of_week` | `{days: [mon, tue, …] or [mon-fri], timezone: IANA}` | | |
//! | `date` | `{after, before, timezone}`: inside from `after` (inclusive) until `before` (exclusive); RFC 3339 instants, or dates/date-times on `timezone`'s clock | | |
//! | `identity_kind` | `user` (signed in through the IdP) or `service` (a configured key) | `is` | `in` |
//!
//! A missing subject (no email, no such claim) matches no matcher, so
//! `not: {email: …}` holds for an identity without email.
//!
//! ## Matchers
//!
//! Written as a mapping under the criterion (`email: {ends_with:
//! "@example.com"}`); several matchers in one mapping must all hold.
//!
//! - `is: V`: the subject equals `V`. Never matches a list (use `has`).
//! - `in: [V…]`: the subject equals one of them; for a list, some element
//!   does.
//! - `starts_with`, `ends_with`, `contains: "S"`: string tests (`contains`
//!   is a substring test); for a list, some element passes.
//! - `has: V`: a list contains `V`; a scalar equals it.
//! - `glob: "/api/**"`: a path pattern, for `path` in HTTP route policies
//!   only (see [`http`]).
//!
//! `is`, `in` and `has` compare claims by type: `claim.email_verified:
//! true` matches the boolean, not the string `"true"`. YAML 1.1 reads bare
//! `yes`, `no`, `on` and `off` as booleans: quote them when you mean text.
//!
//! ## Capabilities and obligations
//!
//! See [`raw::Capabilities`] and [`raw::Obligations`] for the keys and
//! their defaults. A route states them; a rule can only narrow them
//! (capabilities are intersected, obligations take the stricter value), so
//! `agent: true` in a rule never grants agent forwarding on a route that
//! does not.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod access;
pub mod direct;
pub mod http;
pub mod raw;
pub mod testing;

mod capabilities;
mod claims;
mod compile;
mod condition;
mod glob;
mod time;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub use access::{
    AccessDecision, AccessRequest, CapabilityDecision, CompiledAccessPolicy, RecordingFacts,
    ViewerCapability, compile_access, evaluate_access, parse_and_compile_access,
};
pub use capabilities::{
    Capabilities, DEFAULT_CERT_TTL, DestinationPattern, Exec, Forwarding, Obligations, RecordMode,
};
pub use claims::{ClaimValue, Claims};
pub use compile::{CompileError, compile, parse_and_compile};
pub use direct::{
    CompiledDirectAccess, DEFAULT_DIRECT_TTL, DIRECT_TTL_CEILING, DirectDenial, DirectGrant,
    DirectPair, DirectRequest, Extension, KnownRoute, MAX_DIRECT_TTL, TtlLimit, compile_direct,
    evaluate_direct, parse_and_compile_direct,
};
pub use http::{
    CompiledHttpPolicy, HttpDecision, HttpRequest, compile_http, evaluate_http,
    parse_and_compile_http,
};
/// An instant in time, as [`Request::now`] takes it. Convert from
/// `SystemTime` with `Timestamp::try_from(SystemTime::now())`.
pub use jiff::Timestamp;

use capabilities::{CapabilityMask, ObligationMask};
use condition::{Cond, Facts};
use time::Window;

/// How an identity was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityKind {
    /// A person signed in through the identity provider (`user`).
    User,
    /// A client key registered in the configuration (`service`).
    Service,
}

/// Who is asking: the identity established by authentication.
#[derive(Debug, Clone)]
pub struct Identity {
    /// How the identity was established.
    pub kind: IdentityKind,
    /// A stable name for audit (service account name or IdP subject).
    pub name: String,
    /// The email address, when there is one.
    pub email: Option<String>,
    /// Group memberships (from the IdP's groups claim or the config).
    pub groups: Vec<String>,
    /// All ID-token claims, for `claim.<name>` criteria.
    pub claims: Claims,
    /// When the identity was last confirmed with the IdP (sign-in or
    /// refresh); `reauth_every` counts from here. `None` counts from the
    /// session start.
    pub authenticated_at: Option<Timestamp>,
    /// When the login binding of the client key expires. Past it, every
    /// decision is a denial.
    pub binding_expires: Option<Timestamp>,
}

impl Identity {
    /// An identity with only a kind and a name; fill the rest as needed.
    pub fn new(kind: IdentityKind, name: impl Into<String>) -> Self {
        Identity {
            kind,
            name: name.into(),
            email: None,
            groups: Vec::new(),
            claims: BTreeMap::new(),
            authenticated_at: None,
            binding_expires: None,
        }
    }

    /// How people and certificates name the identity: the email when
    /// there is one, else the name.
    pub fn label(&self) -> &str {
        self.email.as_deref().unwrap_or(&self.name)
    }
}

/// One access question: may this identity use this route as this login,
/// from this address, now?
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Who is asking.
    pub identity: &'a Identity,
    /// The login requested on the target.
    pub login: &'a str,
    /// The client's address as the gateway sees it.
    pub source: IpAddr,
    /// The time to decide at. Passed in, never read from a clock, so
    /// decisions are reproducible and testable.
    pub now: Timestamp,
    /// When the session started, for a re-check of a live session; `None`
    /// for a new session (it starts `now`). `max_session` counts from here.
    pub session_start: Option<Timestamp>,
}

/// What decided a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecidedBy {
    /// This allow rule matched and no deny rule did.
    Allow(Arc<str>),
    /// This deny rule matched.
    Deny(Arc<str>),
    /// No allow rule matched.
    NoRuleAllowed,
    /// The session reached its `max_session`.
    SessionLimit,
    /// `reauth_every` has passed since the identity was last confirmed.
    ReauthenticationDue,
    /// The login binding of the client key has expired.
    BindingExpired,
}

impl DecidedBy {
    /// The name of the deciding rule, when a rule decided.
    pub fn rule_name(&self) -> Option<&str> {
        match self {
            DecidedBy::Allow(name) | DecidedBy::Deny(name) => Some(name),
            _ => None,
        }
    }
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// What decided.
    pub decided_by: DecidedBy,
    /// A human reason, phrased to follow "access denied: " or "allowed: "
    /// (for example `outside 09:00–18:00 Europe/Berlin`, `requires group
    /// sre`). The rule's own `reason:` text when it has one.
    pub reason: Arc<str>,
    /// Capabilities in force; [`Capabilities::none`] when denied.
    pub capabilities: Capabilities,
    /// Obligations in force (the route's when denied).
    pub obligations: Obligations,
    /// The earliest instant at which this decision could change with time
    /// alone: the next edge of any time window in the route's rules
    /// (matched or not), the end of `max_session`, when re-authentication
    /// falls due, or when the binding expires (the last three only for
    /// allowed decisions: time cannot lift a denial they caused). `None`
    /// when nothing depends on time. The gateway re-evaluates no later than
    /// this; an instant may come early (the answer stays the same), never
    /// late.
    pub next_check: Option<Timestamp>,
}

/// What a compiled rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    Allow,
    Deny,
    Restrict,
}

/// A rule compiled once (shared by every route that includes it).
#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub name: Arc<str>,
    pub effect: Effect,
    /// The rule's `reason:` text.
    pub reason: Option<Arc<str>>,
    pub when: Cond,
    pub capabilities: CapabilityMask,
    pub obligations: ObligationMask,
    /// Every time window in `when`, for next-check times.
    pub windows: Vec<Window>,
}

/// A shared policy, compiled.
#[derive(Debug)]
pub(crate) struct NamedPolicy {
    pub capabilities: CapabilityMask,
    pub obligations: ObligationMask,
    pub rules: Vec<Arc<CompiledRule>>,
}

/// A rule as it applies on one route: what an allowed request gets when
/// this rule decides (allow) or applies (restrict), computed when compiling.
#[derive(Debug)]
struct RouteRule {
    rule: Arc<CompiledRule>,
    capabilities: Capabilities,
    obligations: Obligations,
}

/// The compiled policy of one route: what [`evaluate`] takes.
#[derive(Debug)]
pub struct CompiledRoutePolicy {
    route: Arc<str>,
    denies: Vec<RouteRule>,
    allows: Vec<RouteRule>,
    restricts: Vec<RouteRule>,
    capabilities: Capabilities,
    obligations: Obligations,
    windows: Vec<Window>,
    no_allow_rules: Arc<str>,
    session_limit: Arc<str>,
    reauth_due: Arc<str>,
    binding_expired: Arc<str>,
}

impl CompiledRoutePolicy {
    /// The route's name.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// The route's own capability statement, before any rule narrows it.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// The route's own obligations, before any rule tightens them.
    pub fn obligations(&self) -> &Obligations {
        &self.obligations
    }

    /// How many rules apply on this route (allow, deny and restrict).
    pub fn rule_count(&self) -> usize {
        self.denies.len() + self.allows.len() + self.restricts.len()
    }
}

/// Every compiled policy: the shared ones and each route's.
#[derive(Debug, Default)]
pub struct PolicySet {
    named: BTreeMap<String, Arc<NamedPolicy>>,
    routes: BTreeMap<String, Arc<CompiledRoutePolicy>>,
}

impl PolicySet {
    /// The compiled policy of a route.
    pub fn route(&self, name: &str) -> Option<&Arc<CompiledRoutePolicy>> {
        self.routes.get(name)
    }

    /// Every route with its policy, by name.
    pub fn routes(&self) -> impl Iterator<Item = (&str, &Arc<CompiledRoutePolicy>)> {
        self.routes.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The names of the shared policies.
    pub fn policy_names(&self) -> impl Iterator<Item = &str> {
        self.named.keys().map(String::as_str)
    }
}

fn add(t: Timestamp, d: Duration) -> Option<Timestamp> {
    t.checked_add(d).ok()
}

/// Decides a request against one route's policy.
///
/// In order: an expired binding denies; a matching deny rule denies; the
/// first matching allow rule allows, narrowed by every matching restrict
/// rule; then `max_session` and `reauth_every` (for users; service keys do
/// not re-authenticate) may still deny. Anything else is denied.
///
/// A default denial explains the allow rule that came closest: the one in
/// which the most conditions held before one failed (the first such rule on
/// a tie), giving for example `requires group sre` or `outside 09:00–18:00
/// Europe/Berlin`.
///
/// Allocates nothing, except in two rare cases: near a time-zone transition
/// (a short list of candidate instants) and when two different forwarding
/// destination lists must be intersected.
pub fn evaluate(policy: &CompiledRoutePolicy, request: &Request<'_>) -> Decision {
    let now = request.now;
    let facts = Facts::from(request);
    let windows_next = policy
        .windows
        .iter()
        .filter_map(|w| w.next_change(now))
        .min();
    let deny = |decided_by: DecidedBy, reason: &Arc<str>| Decision {
        allowed: false,
        decided_by,
        reason: reason.clone(),
        capabilities: Capabilities::none(),
        obligations: policy.obligations,
        next_check: windows_next,
    };

    if request.identity.binding_expires.is_some_and(|e| now >= e) {
        return deny(DecidedBy::BindingExpired, &policy.binding_expired);
    }

    for rule in &policy.denies {
        let (hit, why) = rule.rule.when.eval(&facts, &mut 0);
        if hit {
            let reason = rule.rule.reason.as_ref().unwrap_or(why);
            return deny(DecidedBy::Deny(rule.rule.name.clone()), reason);
        }
    }

    let mut closest: Option<(u32, &Arc<str>)> = None;
    let mut allowed_by = None;
    for rule in &policy.allows {
        let mut score = 0;
        let (hit, why) = rule.rule.when.eval(&facts, &mut score);
        if hit {
            allowed_by = Some((rule, why));
            break;
        }
        if closest.is_none_or(|(best, _)| score > best) {
            closest = Some((score, why));
        }
    }
    let Some((rule, why)) = allowed_by else {
        let reason = closest.map_or(&policy.no_allow_rules, |(_, why)| why);
        return deny(DecidedBy::NoRuleAllowed, reason);
    };

    let mut capabilities = rule.capabilities.clone();
    let mut obligations = rule.obligations;
    for restrict in &policy.restricts {
        if restrict.rule.when.eval(&facts, &mut 0).0 {
            capabilities = capabilities.intersect(&restrict.capabilities);
            obligations = obligations.strictest(&restrict.obligations);
        }
    }

    let start = request.session_start.unwrap_or(now);
    let session_end = obligations.max_session.and_then(|d| add(start, d));
    if session_end.is_some_and(|end| now >= end) {
        return deny(DecidedBy::SessionLimit, &policy.session_limit);
    }
    let reauth_due = match request.identity.kind {
        IdentityKind::User => obligations
            .reauth_every
            .and_then(|d| add(request.identity.authenticated_at.unwrap_or(start), d)),
        IdentityKind::Service => None,
    };
    if reauth_due.is_some_and(|due| now >= due) {
        return deny(DecidedBy::ReauthenticationDue, &policy.reauth_due);
    }

    let next_check = [
        windows_next,
        session_end,
        reauth_due,
        request.identity.binding_expires,
    ]
    .into_iter()
    .flatten()
    .min();
    Decision {
        allowed: true,
        decided_by: DecidedBy::Allow(rule.rule.name.clone()),
        reason: rule.rule.reason.as_ref().unwrap_or(why).clone(),
        capabilities,
        obligations,
        next_check,
    }
}

#[cfg(test)]
mod tests;
