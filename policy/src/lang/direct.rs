//! The direct-access policy: who gets a short-lived user certificate for
//! their own SSH key, so that they can reach targets without the gateway
//! in the path (`direct_access:` in the configuration, issue 16).
//!
//! It is written in the route language: the same rules, conditions,
//! criteria and matchers, compiled by the same compiler, and each allow
//! rule says what it grants.
//!
//! ```yaml
//! direct_access:
//!   max_ttl: 8h
//!   rules:
//!     - allow: dba-direct
//!       when: { groups: dba }
//!       routes: [prod-db, staging-db]
//!       logins: [postgres]
//!       ttl: 1h
//!       extensions: [permit-pty, permit-port-forwarding]
//!     - deny: outside-vpn
//!       reason: direct access only from the VPN
//!       when: { not: { source_ip: 10.0.0.0/8 } }
//! ```
//!
//! # What a rule grants
//!
//! An allow rule grants the principal `LOGIN@ROUTE` for every login in
//! `logins:` on every route in `routes:`. Such a principal never equals a
//! Unix user name, so a target's `TrustedUserCAKeys` never accepts the
//! certificate: a target opts in per login with an `authorized_keys` line
//! `cert-authority,principals="LOGIN@ROUTE" <the user CA>`. Routes must
//! exist, and a login must be one of the route's `logins:` when it lists
//! them (the gateway passes both in, [`KnownRoute`]).
//!
//! - `ttl`: the certificate's lifetime, default [`DEFAULT_DIRECT_TTL`]
//!   (or `max_ttl` when shorter), at least a second and at most the
//!   section's `max_ttl` (default [`MAX_DIRECT_TTL`], itself at most
//!   [`DIRECT_TTL_CEILING`]).
//! - `extensions`: which of [`Extension`] the certificate carries; default
//!   `[permit-pty]`, `[]` for none.
//!
//! # Semantics
//!
//! - Anything no rule allows is refused.
//! - A matching `deny` rule refuses the certificate, wherever it stands.
//! - Every matching allow rule adds its grant: the certificate names the
//!   union of their principals and carries the union of their extensions.
//!   It has one lifetime, the **shortest** `ttl` among them, so that no
//!   rule's lifetime is stretched by another's.
//! - The lifetime never passes the end of the user's sign-in (its login
//!   binding, [`Identity::binding_expires`]), nor the next edge of a time
//!   window in a matching allow rule or in any deny rule: a certificate
//!   granted "on weekdays 09:00–18:00" ends at 18:00. An identity without
//!   a binding (a registered key) gets the rule's `ttl`.
//! - A refusal names the deciding deny rule, or explains the allow rule
//!   that came closest (`requires group dba`), as [`evaluate`](super::evaluate)
//!   does for routes.
//!
//! # Criteria
//!
//! Every criterion about the identity and the context applies (`email`,
//! `domain`, `groups`, `claim.<path>`, `identity_kind`, the client's
//! `source_ip`, and `time_of_day`, `day_of_week` and `date`), with `all`,
//! `any` and `not`. `login` and `login_matches` are errors: the logins are
//! what a rule grants. So are the recording and HTTP criteria.
//!
//! **Invariant:** pure, like the rest of the crate: the time is an
//! argument. A granted certificate's principals are exactly `LOGIN@ROUTE`
//! pairs of matching allow rules, and its lifetime never exceeds the
//! binding's.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use super::Identity;
use super::compile::{CompileError, Compiler, Dialect};
use super::condition::{Cond, Facts};
use super::raw::{self, Location, Node, NodeValue, Spanned};
use super::time::Window;

/// A rule's `ttl` when it does not state one.
pub const DEFAULT_DIRECT_TTL: Duration = Duration::from_secs(3600);

/// The default `max_ttl`, the longest `ttl` a rule may grant: a working
/// day. A direct certificate cannot be revoked before it expires, so it is
/// kept short.
pub const MAX_DIRECT_TTL: Duration = Duration::from_secs(8 * 3600);

/// The highest `max_ttl` a configuration may set.
pub const DIRECT_TTL_CEILING: Duration = Duration::from_secs(24 * 3600);

/// A certificate extension a rule may grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Extension {
    /// `permit-pty`: a terminal.
    Pty,
    /// `permit-port-forwarding`: `-L`, `-R` and `-W` (OpenSSH has one
    /// extension for both directions).
    PortForwarding,
    /// `permit-agent-forwarding`: `-A`.
    AgentForwarding,
    /// `permit-X11-forwarding`: `-X`.
    X11Forwarding,
    /// `permit-user-rc`: sshd runs the user's `~/.ssh/rc`.
    UserRc,
}

impl Extension {
    /// Every extension, in the order messages list them.
    pub const ALL: [Extension; 5] = [
        Extension::Pty,
        Extension::PortForwarding,
        Extension::AgentForwarding,
        Extension::X11Forwarding,
        Extension::UserRc,
    ];

    /// The extension's name in certificates and in policies.
    pub const fn as_str(self) -> &'static str {
        match self {
            Extension::Pty => "permit-pty",
            Extension::PortForwarding => "permit-port-forwarding",
            Extension::AgentForwarding => "permit-agent-forwarding",
            Extension::X11Forwarding => "permit-X11-forwarding",
            Extension::UserRc => "permit-user-rc",
        }
    }

    /// The extension a name stands for.
    pub fn parse(name: &str) -> Option<Extension> {
        Extension::ALL.into_iter().find(|e| e.as_str() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Extension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const EXTENSION_LIST: &str = "permit-pty, permit-port-forwarding, permit-agent-forwarding, \
     permit-X11-forwarding, permit-user-rc";

/// A set of extensions, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct ExtensionSet(u8);

impl ExtensionSet {
    fn contains(self, e: Extension) -> bool {
        self.0 & e.bit() != 0
    }

    fn names(self) -> Vec<&'static str> {
        let mut names: Vec<_> = Extension::ALL
            .into_iter()
            .filter(|e| self.contains(*e))
            .map(Extension::as_str)
            .collect();
        // OpenSSH lists extensions sorted by name, `permit-X11-forwarding`
        // first (capitals sort before lowercase).
        names.sort_unstable();
        names
    }
}

/// A route as `compile_direct` needs to know it: its name, and the logins
/// it offers (empty: any login).
#[derive(Debug, Clone, Copy)]
pub struct KnownRoute<'a> {
    /// The route's name.
    pub name: &'a str,
    /// Its `logins:`; empty when it has none, so any login may be granted.
    pub logins: &'a [String],
}

/// One login on one route, as an allow rule grants it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DirectPair {
    /// The route.
    pub route: Arc<str>,
    /// The login on its target.
    pub login: Arc<str>,
}

impl DirectPair {
    /// The certificate principal: `LOGIN@ROUTE`.
    pub fn principal(&self) -> String {
        format!("{}@{}", self.login, self.route)
    }
}

/// One question: what certificate may this identity, from this address,
/// now, have for its key?
#[derive(Debug, Clone, Copy)]
pub struct DirectRequest<'a> {
    /// Who is asking: the identity the connection authenticated.
    pub identity: &'a Identity,
    /// The client's address as the gateway sees it, for `source_ip`.
    pub source: IpAddr,
    /// The time to decide at. Passed in, never read from a clock.
    pub now: Timestamp,
}

/// A compiled rule of `direct_access`.
#[derive(Debug)]
struct DirectRule {
    name: Arc<str>,
    /// The rule's `reason:` text.
    reason: Option<Arc<str>>,
    when: Cond,
    /// Every time window in `when`: a certificate ends at the next edge.
    windows: Vec<Window>,
    /// What an allow rule grants (empty for deny rules).
    pairs: Box<[DirectPair]>,
    ttl: Duration,
    extensions: ExtensionSet,
}

/// The compiled `direct_access` section: what [`evaluate_direct`] takes.
/// The default has no rules, so it refuses everyone.
#[derive(Debug)]
pub struct CompiledDirectAccess {
    /// The longest lifetime any certificate gets.
    max_ttl: Duration,
    allows: Vec<DirectRule>,
    denies: Vec<DirectRule>,
}

impl Default for CompiledDirectAccess {
    fn default() -> Self {
        CompiledDirectAccess {
            max_ttl: MAX_DIRECT_TTL,
            allows: Vec::new(),
            denies: Vec::new(),
        }
    }
}

impl CompiledDirectAccess {
    /// The section's `max_ttl`.
    pub fn max_ttl(&self) -> Duration {
        self.max_ttl
    }

    /// How many rules the policy has (allow and deny).
    pub fn rule_count(&self) -> usize {
        self.allows.len() + self.denies.len()
    }

    /// Every `LOGIN@ROUTE` some allow rule can grant, sorted by route and
    /// login, once each: the principals targets must opt in to
    /// (`gatehouse ca show --direct`).
    pub fn grantable(&self) -> Vec<DirectPair> {
        let set: BTreeSet<&DirectPair> = self.allows.iter().flat_map(|r| r.pairs.iter()).collect();
        set.into_iter().cloned().collect()
    }
}

/// What limited a granted certificate's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlLimit {
    /// The shortest `ttl` of the matching allow rules.
    Rule,
    /// The end of the user's sign-in (the login binding).
    SignIn,
    /// The next edge of a time window in the rules.
    TimeWindow,
}

impl TtlLimit {
    /// `rule`, `sign_in` or `time_window`.
    pub const fn as_str(self) -> &'static str {
        match self {
            TtlLimit::Rule => "rule",
            TtlLimit::SignIn => "sign_in",
            TtlLimit::TimeWindow => "time_window",
        }
    }
}

/// A granted certificate: what the gateway signs for the user's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectGrant {
    /// `LOGIN@ROUTE` principals, sorted, once each.
    pub principals: Vec<String>,
    /// How long the certificate is valid from `now`, in whole seconds.
    pub ttl: Duration,
    /// What set `ttl`.
    pub ttl_limit: TtlLimit,
    /// The extensions, in certificate order (sorted by name).
    pub extensions: Vec<&'static str>,
    /// The matching allow rules, in policy order.
    pub rules: Vec<Arc<str>>,
}

/// A refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectDenial {
    /// The deny rule that matched; `None` when no allow rule did, or the
    /// sign-in has expired.
    pub rule: Option<Arc<str>>,
    /// A human reason, phrased to follow "direct access denied: ": the
    /// rule's `reason:` text, what matched, or what the closest allow rule
    /// was missing.
    pub reason: Arc<str>,
}

/// The reason of a refusal by a policy without allow rules.
const NO_RULE_GRANTS: &str = "no direct_access rule grants a certificate";

/// The reason of a refusal after the sign-in expired.
const SIGN_IN_EXPIRED: &str = "sign-in expired";

/// The reason when a time window closes within a second.
const WINDOW_CLOSING: &str = "the time window that allows it is closing";

fn denial(rule: Option<&Arc<str>>, reason: &str) -> DirectDenial {
    DirectDenial {
        rule: rule.cloned(),
        reason: reason.into(),
    }
}

/// Decides what certificate an identity may have. See the [module
/// documentation](self) for the semantics.
pub fn evaluate_direct(
    policy: &CompiledDirectAccess,
    request: &DirectRequest<'_>,
) -> Result<DirectGrant, DirectDenial> {
    let now = request.now;
    let facts = Facts {
        identity: request.identity,
        // No direct-access criterion reads a login: `login` and
        // `login_matches` are refused when compiling.
        login: "",
        source: request.source,
        now,
        recording: None,
        http: None,
    };
    let remaining =
        |until: Timestamp| Duration::try_from(until.duration_since(now)).unwrap_or(Duration::ZERO);
    if let Some(expires) = request.identity.binding_expires
        && now >= expires
    {
        return Err(denial(None, SIGN_IN_EXPIRED));
    }
    for rule in &policy.denies {
        let (hit, why) = rule.when.eval(&facts, &mut 0);
        if hit {
            return Err(denial(
                Some(&rule.name),
                rule.reason.as_deref().unwrap_or(why),
            ));
        }
    }
    let mut pairs = BTreeSet::new();
    let mut extensions = ExtensionSet::default();
    let mut rules = Vec::new();
    let mut ttl = policy.max_ttl;
    let mut window_end: Option<Timestamp> = None;
    let mut closest: Option<(u32, &str)> = None;
    let next_edge = |windows: &[Window], end: &mut Option<Timestamp>| {
        for w in windows {
            if let Some(t) = w.next_change(now) {
                *end = Some(end.map_or(t, |e| e.min(t)));
            }
        }
    };
    for rule in &policy.allows {
        let mut score = 0;
        let (hit, why) = rule.when.eval(&facts, &mut score);
        if !hit {
            if closest.is_none_or(|(best, _)| score > best) {
                closest = Some((score, why));
            }
            continue;
        }
        pairs.extend(rule.pairs.iter().map(DirectPair::principal));
        extensions.0 |= rule.extensions.0;
        ttl = ttl.min(rule.ttl);
        rules.push(rule.name.clone());
        next_edge(&rule.windows, &mut window_end);
    }
    if rules.is_empty() {
        return Err(denial(None, closest.map_or(NO_RULE_GRANTS, |(_, why)| why)));
    }
    // A deny rule with a time window may start to match at its edge.
    for rule in &policy.denies {
        next_edge(&rule.windows, &mut window_end);
    }
    let mut ttl_limit = TtlLimit::Rule;
    if let Some(expires) = request.identity.binding_expires
        && remaining(expires) < ttl
    {
        ttl = remaining(expires);
        ttl_limit = TtlLimit::SignIn;
    }
    if let Some(end) = window_end
        && remaining(end) < ttl
    {
        ttl = remaining(end);
        ttl_limit = TtlLimit::TimeWindow;
    }
    // Certificates count whole seconds; round down so the certificate
    // never outlives what limited it.
    let ttl = Duration::from_secs(ttl.as_secs());
    if ttl.is_zero() {
        let reason = match ttl_limit {
            TtlLimit::TimeWindow => WINDOW_CLOSING,
            TtlLimit::Rule | TtlLimit::SignIn => SIGN_IN_EXPIRED,
        };
        return Err(denial(None, reason));
    }
    Ok(DirectGrant {
        principals: pairs.into_iter().collect(),
        ttl,
        ttl_limit,
        extensions: extensions.names(),
        rules,
    })
}

/// Compiles `direct_access`, or returns every problem found, in file
/// order. `routes` are the configuration's routes: a rule may grant only
/// those, and only logins they offer.
pub fn compile_direct(
    raw: &raw::DirectAccess,
    routes: &[KnownRoute<'_>],
) -> Result<CompiledDirectAccess, Vec<CompileError>> {
    let mut c = Compiler::new(Dialect::Direct);
    let mut names = HashSet::new();
    let mut policy = CompiledDirectAccess::default();
    if let Some(max) = &raw.max_ttl {
        policy.max_ttl = c
            .direct_duration(max, "max_ttl", DIRECT_TTL_CEILING)
            .unwrap_or(MAX_DIRECT_TTL);
    }
    for spanned in &raw.rules {
        let Some((rule, name_at, allow)) = c.direct_rule(spanned, routes, policy.max_ttl) else {
            continue;
        };
        if !names.insert(rule.name.clone()) {
            c.err(
                &name_at,
                format!(
                    "rule `{}` is named twice in direct_access; give each rule its own name",
                    rule.name
                ),
            );
        }
        if allow {
            policy.allows.push(rule);
        } else {
            policy.denies.push(rule);
        }
    }
    c.finish().map(|()| policy)
}

/// Parses `direct_access` as written (a mapping with `rules:`) and compiles
/// it against `routes`. For tests and tools; the configuration embeds
/// [`raw::DirectAccess`] and calls [`compile_direct`].
pub fn parse_and_compile_direct(
    yaml: &str,
    routes: &[KnownRoute<'_>],
) -> Result<CompiledDirectAccess, Vec<CompileError>> {
    let doc: raw::DirectAccess =
        serde_saphyr::from_str(yaml).map_err(|e| vec![CompileError::from_yaml(&e)])?;
    compile_direct(&doc, routes)
}

/// A node's items: the list's, or the node itself for a bare scalar.
fn items(node: &Node) -> Vec<&Node> {
    match &node.value {
        NodeValue::Seq(items) => items.iter().collect(),
        _ => vec![node],
    }
}

impl Compiler {
    /// One rule of `direct_access`, where its name stands, and whether it
    /// allows.
    fn direct_rule(
        &mut self,
        spanned: &Spanned<raw::DirectRule>,
        routes: &[KnownRoute<'_>],
        max_ttl: Duration,
    ) -> Option<(DirectRule, Location, bool)> {
        let rule = &spanned.value;
        let (allow, name) = self.allow_or_deny(
            &spanned.referenced,
            &rule.allow,
            &rule.deny,
            "a direct_access rule",
        )?;
        let (pairs, ttl, extensions) = if allow {
            let route_names = match &rule.routes {
                Some(node) => self.direct_names(node, "routes", "a route name"),
                None => {
                    self.err(
                        &name.referenced,
                        format!(
                            "allow rule `{}` needs `routes:`: the routes its certificate reaches",
                            name.value
                        ),
                    );
                    None
                }
            };
            let logins = match &rule.logins {
                Some(node) => self.direct_names(node, "logins", "a login"),
                None => {
                    self.err(
                        &name.referenced,
                        format!(
                            "allow rule `{}` needs `logins:`: the logins its certificate names on those routes",
                            name.value
                        ),
                    );
                    None
                }
            };
            let ttl = match &rule.ttl {
                Some(raw) => self.direct_duration(raw, "ttl", max_ttl),
                None => Some(DEFAULT_DIRECT_TTL.min(max_ttl)),
            };
            let extensions = match &rule.extensions {
                Some(node) => self.direct_extensions(node),
                None => Some(ExtensionSet(Extension::Pty.bit())),
            };
            let pairs = self.direct_pairs(route_names?, logins?, routes);
            (pairs?, ttl?, extensions?)
        } else {
            for (key, present) in [
                ("routes", rule.routes.as_ref().map(|n| &n.at)),
                ("logins", rule.logins.as_ref().map(|n| &n.at)),
                ("ttl", rule.ttl.as_ref().map(|s| &s.referenced)),
                ("extensions", rule.extensions.as_ref().map(|n| &n.at)),
            ] {
                if let Some(at) = present {
                    self.err(
                        at,
                        format!("a deny rule grants nothing, so it takes no `{key}`"),
                    );
                }
            }
            (Box::default(), Duration::ZERO, ExtensionSet::default())
        };
        let Some(when) = &rule.when else {
            self.err(
                &name.referenced,
                format!(
                    "rule `{}` needs a `when:` condition; to match everyone write `when: {{all: []}}`",
                    name.value
                ),
            );
            return None;
        };
        let mut windows = Vec::new();
        let when = self.cond(when, &mut windows)?;
        let rule = DirectRule {
            name: name.value.as_str().into(),
            reason: rule.reason.as_ref().map(|r| r.value.as_str().into()),
            when,
            windows,
            pairs,
            ttl,
            extensions,
        };
        Some((rule, name.referenced, allow))
    }

    /// `routes:` or `logins:`: a name or a list of names, each non-empty,
    /// without `@` (it separates login and route in a principal), commas
    /// or spaces (they separate principals in `authorized_keys`).
    fn direct_names<'n>(
        &mut self,
        node: &'n Node,
        key: &str,
        what: &str,
    ) -> Option<Vec<(&'n str, &'n Location)>> {
        let list = items(node);
        if list.is_empty() {
            self.err(
                &node.at,
                format!("an empty `{key}` list grants nothing; name at least one"),
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for item in list {
            match &item.value {
                NodeValue::Str(s)
                    if !s.is_empty() && !s.contains(['@', ',', ' ', '"', '\t', '\n']) =>
                {
                    if out.iter().any(|(seen, _)| seen == s) {
                        self.err(&item.at, format!("`{s}` is listed twice"));
                        ok = false;
                    } else {
                        out.push((s.as_str(), &item.at));
                    }
                }
                NodeValue::Str(s) => {
                    self.err(
                        &item.at,
                        format!("bad {key} entry {s:?}: {what} has no `@`, comma, quote or space"),
                    );
                    ok = false;
                }
                other => {
                    self.err(&item.at, format!("expected {what}, found {}", other.kind()));
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// Every (route, login) of a rule, each route known and offering each
    /// login.
    fn direct_pairs(
        &mut self,
        route_names: Vec<(&str, &Location)>,
        logins: Vec<(&str, &Location)>,
        routes: &[KnownRoute<'_>],
    ) -> Option<Box<[DirectPair]>> {
        let mut pairs = Vec::new();
        let mut ok = true;
        for (route_name, at) in route_names {
            let Some(route) = routes.iter().find(|r| r.name == route_name) else {
                let mut known = routes.iter().map(|r| r.name).collect::<Vec<_>>();
                known.sort_unstable();
                let known = known.join(", ");
                let known = if known.is_empty() {
                    "no routes are defined".to_owned()
                } else {
                    format!("routes are: {known}")
                };
                self.err(at, format!("unknown route `{route_name}`; {known}"));
                ok = false;
                continue;
            };
            for (login, login_at) in &logins {
                if !route.logins.is_empty() && !route.logins.iter().any(|l| l == login) {
                    self.err(
                        login_at,
                        format!(
                            "route `{route_name}` does not offer login `{login}` (its logins are {}); grant it on another rule, or add it to the route's logins",
                            route.logins.join(", ")
                        ),
                    );
                    ok = false;
                    continue;
                }
                pairs.push(DirectPair {
                    route: route_name.into(),
                    login: (*login).into(),
                });
            }
        }
        ok.then(|| pairs.into_boxed_slice())
    }

    /// `ttl:` of an allow rule or the section's `max_ttl`: whole seconds,
    /// at least one, at most `max`.
    fn direct_duration(
        &mut self,
        raw: &Spanned<String>,
        key: &str,
        max: Duration,
    ) -> Option<Duration> {
        match humantime::parse_duration(raw.value.trim()) {
            Ok(d) if d < Duration::from_secs(1) => {
                self.err(
                    &raw.referenced,
                    format!("`{key}` must be at least 1s: certificates count whole seconds"),
                );
                None
            }
            Ok(d) if d > max => {
                let bound = if key == "ttl" {
                    "the section's `max_ttl`"
                } else {
                    "the ceiling"
                };
                self.err(
                    &raw.referenced,
                    format!(
                        "`{key}` is at most {} ({bound}): a direct certificate cannot be revoked before it expires",
                        humantime::format_duration(max)
                    ),
                );
                None
            }
            Ok(d) => Some(Duration::from_secs(d.as_secs())),
            Err(e) => {
                self.err(
                    &raw.referenced,
                    format!(
                        "`{key}`: `{}` is not a duration ({e}); write e.g. `15m`, `1h`",
                        raw.value
                    ),
                );
                None
            }
        }
    }

    /// `extensions:` of an allow rule: a list of extension names (`[]` for
    /// none).
    fn direct_extensions(&mut self, node: &Node) -> Option<ExtensionSet> {
        let mut set = ExtensionSet::default();
        let mut ok = true;
        for item in items(node) {
            match &item.value {
                NodeValue::Str(s) => {
                    match Extension::parse(s) {
                        Some(e) if set.contains(e) => {
                            self.err(&item.at, format!("`{s}` is listed twice"));
                            ok = false;
                        }
                        Some(e) => set.0 |= e.bit(),
                        None => {
                            let hint = Extension::ALL
                                .into_iter()
                                .find(|e| e.as_str().eq_ignore_ascii_case(s))
                                .map(|e| format!(" (did you mean `{e}`?)"))
                                .or_else(|| {
                                    Extension::parse(&format!("permit-{s}"))
                                        .map(|e| format!(" (did you mean `{e}`?)"))
                                })
                                .unwrap_or_default();
                            self.err(
                            &item.at,
                            format!("unknown extension `{s}`{hint}; extensions are: {EXTENSION_LIST}"),
                        );
                            ok = false;
                        }
                    }
                }
                NodeValue::Null => {}
                other => {
                    self.err(
                        &item.at,
                        format!("expected an extension name, found {}", other.kind()),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(set)
    }

    /// `login` and `login_matches` in `direct_access`.
    pub(super) fn login_in_direct(&mut self, name: &str, at: &Location) {
        self.err(
            at,
            format!(
                "`{name}` means nothing in direct_access: the logins a certificate names are what a rule grants, with `logins:`"
            ),
        );
    }
}

#[cfg(test)]
mod tests;
