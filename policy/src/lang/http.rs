//! The HTTP route policy: who may make which requests to a web app behind
//! the identity-aware HTTP proxy (the `policy:` of each entry under
//! `http_routes:` in the configuration).
//!
//! It is written in the route language: the same rules, conditions,
//! criteria and matchers, compiled by the same compiler, with three
//! criteria about the request and no capabilities or obligations.
//!
//! ```yaml
//! policy:
//!   rules:
//!     - allow: sre
//!       when: { groups: sre }
//!     - allow: staff-read-only
//!       when: { all: [ { groups: staff }, { method: [GET, HEAD] } ] }
//!     - deny: no-admin-for-contractors
//!       when: { all: [ { groups: contractors }, { path: { starts_with: /admin/ } } ] }
//!     - allow: api-from-managed-devices
//!       when: { all: [ { path: { glob: "/api/**" } }, { header.x-device-trust: { is: managed } } ] }
//!     - allow: anyone-healthz
//!       reason: the health page is public to signed-in users
//!       when: { path: /healthz }
//! ```
//!
//! # Semantics
//!
//! - Anything that no rule allows is denied.
//! - A matching `deny` rule wins over any `allow` rule, wherever it
//!   stands.
//! - Each rule has exactly one of `allow: NAME` or `deny: NAME`; names are
//!   unique within the policy. `reason:` is optional text given when the
//!   rule decides; `when:` is optional, and a rule without it matches
//!   every request.
//! - The decision names the deciding rule: the first matching deny rule,
//!   else the first matching allow rule, and gives its `reason:` or what
//!   matched. A request no rule allows is explained by the allow rule that
//!   came closest, as [`evaluate`](super::evaluate) does for routes
//!   (`requires group sre`), or `no rule allows this request` when the
//!   policy has no allow rule.
//!
//! # Criteria
//!
//! Every criterion of the route language about the identity and the
//! context applies (`email`, `domain`, `groups`, `claim.<path>`,
//! `identity_kind`, the client's `source_ip`, and `time_of_day`,
//! `day_of_week` and `date`), with `all`, `any` and `not`, and three more
//! about the request:
//!
//! - `method`: the request method, ASCII case ignored: `method: GET`,
//!   `method: [GET, HEAD]`, or `is` and `in`. Methods are shown upper-case
//!   in reasons.
//! - `path`: the normalized path without its query, case-sensitive, with
//!   `is`, `in`, `starts_with`, `ends_with`, `contains` and `glob` (a bare
//!   string means `is`, a list `in`). In a glob, `*` matches any run of
//!   characters other than `/`, `**` any run including `/`, `?` one
//!   character other than `/`, and every other character itself; the
//!   whole path must match. So `/api/**` matches `/api/` and `/api/a/b`
//!   but not `/api` (write `any: [ {path: /api}, {path: {glob:
//!   "/api/**"}} ]` for both). Paths, prefixes and globs start with `/`.
//! - `header.<name>`: the values of the request header `<name>` (a token;
//!   the name's case is ignored), with `is`, `in`, `starts_with`,
//!   `ends_with` and `contains`, case-sensitive. It holds when *some* value
//!   of the header passes every matcher given; a missing header passes
//!   none. `present: true` holds when the header is there at all,
//!   `present: false` when it is not.
//!
//! `login` and `login_matches` are about an SSH login, and `route`,
//! `recorded_user` and `own` about a recording: each is a compile error
//! here, as `method`, `path`, `header.<name>` and `glob` are in route
//! policies and `web.access`.
//!
//! **Invariant:** pure, like the rest of the crate: the time is an
//! argument, and [`evaluate_http`] allocates nothing (the proxy asks on
//! every request); reasons are built when compiling.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use jiff::Timestamp;

use super::Identity;
use super::compile::{CompileError, Compiler, Dialect, Subject, leaf};
use super::condition::{Cond, CondKind, Facts, Leaf};
use super::glob::Glob;
use super::raw::{self, Location, Node, NodeValue, Spanned};
use super::time::Window;

/// What the policy is told about an HTTP request: the part of
/// [`HttpRequest`] that [`Facts`] carries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpFacts<'a> {
    /// The request method (the `method` criterion).
    pub method: &'a str,
    /// The normalized path without the query (the `path` criterion).
    pub path: &'a str,
    /// `(name, value)` pairs (the `header.<name>` criteria).
    pub headers: &'a [(&'a str, &'a str)],
}

impl<'a> HttpFacts<'a> {
    /// Every value of the header `name` (lowercase), in request order.
    /// Names are compared with ASCII case ignored, so a proxy that passes
    /// them as received still gets the right answer.
    pub fn values(self, name: &str) -> impl Iterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// One access question: may this signed-in user, from this address, now,
/// make this request?
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// The signed-in user.
    pub identity: &'a Identity,
    /// The client's address as the proxy sees it (after trusted proxies),
    /// for `source_ip`.
    pub source: IpAddr,
    /// The time to decide at. Passed in, never read from a clock.
    pub now: Timestamp,
    /// The request method, such as `GET` (the `method` criterion).
    pub method: &'a str,
    /// The normalized path without the query, such as `/api/v1/x` (the
    /// `path` criterion).
    pub path: &'a str,
    /// `(lowercase name, value)` pairs; a name may repeat. Only the names
    /// in [`CompiledHttpPolicy::header_names`] need to be present.
    pub headers: &'a [(&'a str, &'a str)],
}

/// A compiled rule of an HTTP route's policy.
#[derive(Debug)]
struct HttpRule {
    name: Arc<str>,
    /// The rule's `reason:` text.
    reason: Option<Arc<str>>,
    /// The condition; a rule without `when:` gets one that always holds.
    when: Cond,
}

/// The compiled policy of an HTTP route: what [`evaluate_http`] takes.
/// The default has no rules, so it denies everything.
#[derive(Debug, Default)]
pub struct CompiledHttpPolicy {
    allows: Vec<HttpRule>,
    denies: Vec<HttpRule>,
    /// Every time window in the rules, for [`Self::next_check`].
    windows: Vec<Window>,
    /// Every header the rules read, lowercase, sorted, once each.
    header_names: Box<[Box<str>]>,
}

impl CompiledHttpPolicy {
    /// How many rules the policy has (allow and deny).
    pub fn rule_count(&self) -> usize {
        self.allows.len() + self.denies.len()
    }

    /// The lowercase names of every request header a rule reads
    /// (`header.<name>`), sorted and once each, so that the proxy collects
    /// only those into [`HttpRequest::headers`].
    pub fn header_names(&self) -> &[Box<str>] {
        &self.header_names
    }

    /// The earliest instant after `now` at which a decision could change
    /// with time alone (the next edge of any time window in the rules), or
    /// `None` when no rule depends on time. For a long-lived request such
    /// as a WebSocket: ask again then. Not part of [`evaluate_http`], which
    /// stays cheap enough to run for every request.
    pub fn next_check(&self, now: Timestamp) -> Option<Timestamp> {
        self.windows.iter().filter_map(|w| w.next_change(now)).min()
    }
}

/// The answer to an [`HttpRequest`]. It borrows its rule name and reason
/// from the policy, so making one allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpDecision<'p> {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// The deciding rule: the first matching deny rule, else the first
    /// matching allow rule; `None` when no rule matched.
    pub rule: Option<&'p str>,
    /// A human reason, phrased to follow "allowed: " or "denied: ": the
    /// rule's `reason:` text, what matched, or for a request no rule
    /// allowed, what the closest allow rule was missing.
    pub reason: &'p str,
}

/// The reason of a denial by a policy without allow rules.
const NO_RULE_ALLOWS: &str = "no rule allows this request";

/// What a rule without `when:` says it matched.
const EVERY_REQUEST: &str = "every request";

/// Decides one request against an HTTP route's policy.
///
/// The first matching deny rule denies; else the first matching allow rule
/// allows; else the request is denied, explained by the allow rule that
/// came closest. See the [module documentation](self) for the semantics.
/// Allocates nothing: the proxy calls it on every request.
pub fn evaluate_http<'p>(
    policy: &'p CompiledHttpPolicy,
    request: &HttpRequest<'_>,
) -> HttpDecision<'p> {
    let facts = Facts {
        identity: request.identity,
        // No HTTP criterion reads a login: `login` and `login_matches` are
        // refused when compiling.
        login: "",
        source: request.source,
        now: request.now,
        recording: None,
        http: Some(HttpFacts {
            method: request.method,
            path: request.path,
            headers: request.headers,
        }),
    };
    for rule in &policy.denies {
        let (hit, why) = rule.when.eval(&facts, &mut 0);
        if hit {
            return HttpDecision {
                allowed: false,
                rule: Some(&rule.name),
                reason: rule.reason.as_deref().unwrap_or(why),
            };
        }
    }
    // The allow rule that came closest, as (leaves that held, what was
    // missing); the first one on a tie.
    let mut closest: Option<(u32, &'p str)> = None;
    for rule in &policy.allows {
        let mut score = 0;
        let (hit, why) = rule.when.eval(&facts, &mut score);
        if hit {
            return HttpDecision {
                allowed: true,
                rule: Some(&rule.name),
                reason: rule.reason.as_deref().unwrap_or(why),
            };
        }
        if closest.is_none_or(|(best, _)| score > best) {
            closest = Some((score, why));
        }
    }
    HttpDecision {
        allowed: false,
        rule: None,
        reason: closest.map_or(NO_RULE_ALLOWS, |(_, why)| why),
    }
}

/// Compiles an HTTP route's `policy:`, or returns every problem found, in
/// file order. No rules ([`CompiledHttpPolicy::default`]) denies
/// everything.
pub fn compile_http(raw: &raw::HttpPolicy) -> Result<CompiledHttpPolicy, Vec<CompileError>> {
    let mut c = Compiler::new(Dialect::Http);
    let mut names = HashSet::new();
    let mut headers = BTreeSet::new();
    let mut policy = CompiledHttpPolicy::default();
    for spanned in &raw.rules {
        let Some((rule, name_at, allow, windows)) = c.http_rule(spanned) else {
            continue;
        };
        if !names.insert(rule.name.clone()) {
            c.err(
                &name_at,
                format!(
                    "rule `{}` is named twice in this policy; give each rule its own name",
                    rule.name
                ),
            );
        }
        header_names(&rule.when, &mut headers);
        policy.windows.extend(windows);
        if allow {
            policy.allows.push(rule);
        } else {
            policy.denies.push(rule);
        }
    }
    policy.header_names = headers.into_iter().collect();
    c.finish().map(|()| policy)
}

/// Parses an HTTP route's policy as written under `policy:` (a mapping
/// with `rules:`) and compiles it. For tests and tools; the configuration
/// embeds [`raw::HttpPolicy`] and calls [`compile_http`].
pub fn parse_and_compile_http(yaml: &str) -> Result<CompiledHttpPolicy, Vec<CompileError>> {
    let doc: raw::HttpPolicy =
        serde_saphyr::from_str(yaml).map_err(|e| vec![CompileError::from_yaml(&e)])?;
    compile_http(&doc)
}

/// Adds the name of every header `cond` reads to `out`.
fn header_names(cond: &Cond, out: &mut BTreeSet<Box<str>>) {
    match &cond.kind {
        CondKind::All(children) | CondKind::Any(children) => {
            for c in children {
                header_names(c, out);
            }
        }
        CondKind::Not(child) => header_names(child, out),
        CondKind::Leaf(Leaf::Header { name, .. } | Leaf::HeaderPresent { name, .. }) => {
            out.insert(name.clone());
        }
        CondKind::Leaf(_) => {}
    }
}

/// Whether `s` is an HTTP token (RFC 9110, section 5.6.2): what a method
/// and a header name are made of.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Compiler {
    /// One rule of an HTTP route's policy, where its name stands, whether
    /// it allows, and its time windows.
    fn http_rule(
        &mut self,
        spanned: &Spanned<raw::HttpRule>,
    ) -> Option<(HttpRule, Location, bool, Vec<Window>)> {
        let rule = &spanned.value;
        let (allow, name) = self.allow_or_deny(
            &spanned.referenced,
            &rule.allow,
            &rule.deny,
            "a rule of an HTTP route",
        )?;
        let mut windows = Vec::new();
        let when = match &rule.when {
            Some(when) => self.cond(when, &mut windows)?,
            None => Cond {
                kind: CondKind::All(Vec::new()),
                on_match: EVERY_REQUEST.into(),
                on_fail: EVERY_REQUEST.into(),
            },
        };
        let rule = HttpRule {
            name: name.value.as_str().into(),
            reason: rule.reason.as_ref().map(|r| r.value.as_str().into()),
            when,
        };
        Some((rule, name.referenced, allow, windows))
    }

    /// `method`, `path` and `header.<name>`: criteria about an HTTP
    /// request, so only HTTP route policies have them.
    pub(super) fn request_criterion(
        &mut self,
        name: &str,
        at: &Location,
        value: &Node,
    ) -> Option<Cond> {
        let elsewhere = match self.dialect {
            Dialect::Route => Some("a route's policy"),
            Dialect::Access => Some("`web.access` rules"),
            Dialect::Direct => Some("direct_access rules"),
            Dialect::Http => None,
        };
        if let Some(elsewhere) = elsewhere {
            self.err(
                at,
                format!(
                    "`{name}` is about an HTTP request: it only applies in http_routes policies, not in {elsewhere}"
                ),
            );
            return None;
        }
        match name {
            "method" => self.string_criterion(Subject::Method, "method", value),
            "path" => self.string_criterion(Subject::Path, "path", value),
            _ => self.header(name, at, value),
        }
    }

    /// `header.<name>: MATCHERS` or `header.<name>: {present: BOOL}`.
    fn header(&mut self, key: &str, at: &Location, value: &Node) -> Option<Cond> {
        let raw_name = key.strip_prefix("header.").unwrap_or(key);
        if raw_name.is_empty() {
            self.err(at, "name the header after the dot: `header.x-device-trust`");
            return None;
        }
        if !is_token(raw_name) {
            self.err(
                at,
                format!(
                    "`{raw_name}` is not an HTTP header name: a name is letters, digits and !#$%&'*+-.^_`|~, without spaces or colons"
                ),
            );
            return None;
        }
        let name: Box<str> = raw_name.to_ascii_lowercase().into();
        let label = format!("header {name}");
        match &value.value {
            NodeValue::Map(entries)
                if entries
                    .iter()
                    .any(|(k, _)| matches!(&k.value, NodeValue::Str(s) if s == "present")) =>
            {
                self.header_present(name, &label, entries)
            }
            NodeValue::Bool(b) => {
                self.err(
                    &value.at,
                    format!(
                        "expected a string, found a boolean: quote it to match the text, or write `{{present: {b}}}` to test whether the header is there"
                    ),
                );
                None
            }
            _ => {
                let (matchers, on_match, on_fail) =
                    self.matchers(Subject::Header, &label, value)?;
                Some(leaf(Leaf::Header { name, matchers }, on_match, on_fail))
            }
        }
    }

    /// `header.<name>: {present: BOOL}`, which stands alone.
    fn header_present(
        &mut self,
        name: Box<str>,
        label: &str,
        entries: &[(Node, Node)],
    ) -> Option<Cond> {
        let mut present = None;
        let mut ok = true;
        for (k, v) in entries {
            match (&k.value, &v.value) {
                (NodeValue::Str(s), NodeValue::Bool(b)) if s == "present" => present = Some(*b),
                (NodeValue::Str(s), other) if s == "present" => {
                    self.err(
                        &v.at,
                        format!("`present` takes true or false, found {}", other.kind()),
                    );
                    ok = false;
                }
                _ => {
                    self.err(
                        &k.at,
                        "`present` stands alone: any other matcher already requires the header to be there",
                    );
                    ok = false;
                }
            }
        }
        let present = present.filter(|_| ok)?;
        let (on_match, on_fail) = if present {
            (format!("{label} present"), format!("requires {label}"))
        } else {
            (format!("no {label}"), format!("requires no {label}"))
        };
        Some(leaf(
            Leaf::HeaderPresent { name, present },
            on_match,
            on_fail,
        ))
    }

    /// A method in `method: …`, upper-cased for reasons.
    pub(super) fn method_name(&mut self, at: &Location, text: &str) -> Option<Box<str>> {
        if is_token(text) {
            Some(text.to_ascii_uppercase().into())
        } else {
            self.err(
                at,
                format!(
                    "`{text}` is not an HTTP method: write a token such as GET, POST or PROPFIND"
                ),
            );
            None
        }
    }

    /// A path (or a path prefix) in `path: …`: the path criterion sees
    /// normalized paths without their query, so anything else would never
    /// match.
    pub(super) fn path_value(&mut self, at: &Location, text: &str) -> Option<Box<str>> {
        if !text.starts_with('/') {
            self.err(
                at,
                format!("a request path starts with `/`: write `/{text}`"),
            );
            return None;
        }
        if text.contains('?') {
            self.err(
                at,
                format!(
                    "`{text}` has a query: `path` sees the path without its query (for wildcards use `glob`)"
                ),
            );
            return None;
        }
        Some(text.into())
    }

    /// `glob: "/api/**"` under `path`.
    pub(super) fn glob(&mut self, node: &Node) -> Option<Glob> {
        let NodeValue::Str(text) = &node.value else {
            self.err(
                &node.at,
                format!(
                    "`glob` takes a path pattern such as \"/api/**\", found {}",
                    node.value.kind()
                ),
            );
            return None;
        };
        match Glob::parse(text) {
            Ok(glob) => Some(glob),
            Err(message) => {
                self.err(&node.at, message);
                None
            }
        }
    }

    /// `login` and `login_matches` in an HTTP route's policy.
    pub(super) fn ssh_criterion_in_http(&mut self, name: &str, at: &Location) {
        let what = if name == "login" {
            "`login` is the login on an SSH target"
        } else {
            "`login_matches` compares an SSH login with the identity"
        };
        self.err(
            at,
            format!(
                "{what} and means nothing in an http_routes policy: use `method`, `path` or `header.<name>` for the request"
            ),
        );
    }
}

#[cfg(test)]
mod tests;
