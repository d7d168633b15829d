//! Compiling raw policies: every check happens here, and every problem is
//! collected (not just the first) with its line and column.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use jiff::Timestamp;
use jiff::civil::{DateTime, Time, Weekday};
use jiff::tz::{TimeZone, TimeZoneDatabase};

use super::capabilities::{
    CapabilityMask, DestinationPattern, Exec, Forwarding, ObligationMask, RecordMode,
};
use super::condition::{Cond, CondKind, Leaf, LoginSource, Matcher, Scalar};
use super::raw::{self, Location, Node, NodeValue, Spanned};
use super::time::{DateRange, DayOfWeek, TimeOfDay, Window, weekday_bit};
use super::{
    CompiledRoutePolicy, CompiledRule, Effect, IdentityKind, NamedPolicy, PolicySet, RouteRule,
};

/// One problem found while parsing or compiling a policy, with the position
/// it points at (1-based; 0 when unknown). The gateway prefixes the file
/// name to get `file:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// 1-based line, or 0 when unknown.
    pub line: u64,
    /// 1-based column, or 0 when unknown.
    pub column: u64,
    /// What is wrong, lowercase, saying what to do where possible.
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for CompileError {}

impl CompileError {
    pub(crate) fn at(at: &Location, message: impl Into<String>) -> Self {
        CompileError {
            line: at.line(),
            column: at.column(),
            message: message.into(),
        }
    }

    /// Turns a serde-saphyr parse error into a positioned problem.
    pub(crate) fn from_yaml(e: &serde_saphyr::Error) -> Self {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        CompileError {
            line,
            column,
            message: first_line(&e.to_string()),
        }
    }
}

/// serde-saphyr renders a source snippet under its message and repeats the
/// position; the problem carries the position itself, so keep the message.
fn first_line(message: &str) -> String {
    let mut line = message.lines().next().unwrap_or(message).trim();
    line = line.strip_prefix("error: ").unwrap_or(line);
    if let Some(rest) = line.strip_prefix("line ")
        && let Some((pos, after)) = rest.split_once(": ")
        && pos.contains(" column ")
    {
        line = after;
    }
    match line.find(" at line ") {
        Some(i) => line.get(..i).unwrap_or(line).to_owned(),
        None => line.to_owned(),
    }
}

/// Parses a standalone policy file ([`raw::Document`]: `policies:` and
/// `routes:`) and compiles it. For tests and `gatehouse policy test`; the
/// gateway embeds the raw types in its own config and calls [`compile`].
pub fn parse_and_compile(yaml: &str) -> Result<PolicySet, Vec<CompileError>> {
    let doc: raw::Document =
        serde_saphyr::from_str(yaml).map_err(|e| vec![CompileError::from_yaml(&e)])?;
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for (name, _) in &doc.routes.0 {
        if !seen.insert(name.value.as_str()) {
            errors.push(CompileError::at(
                &name.referenced,
                format!("route `{}` is defined twice", name.value),
            ));
        }
    }
    let result = compile(
        &doc.policies,
        doc.routes.0.iter().map(|(n, p)| (n.value.as_str(), p)),
    );
    match result {
        Ok(set) if errors.is_empty() => Ok(set),
        Ok(_) => Err(errors),
        Err(mut more) => {
            errors.append(&mut more);
            errors.sort_by_key(|e| (e.line, e.column));
            Err(errors)
        }
    }
}

/// Compiles the shared policies and each route's policy into a
/// [`PolicySet`], or returns every problem found, in file order.
///
/// `routes` gives each route's name and its `policy:` value; route names
/// are the gateway's to check for duplicates.
pub fn compile<'a>(
    policies: &raw::Named<raw::PolicyDoc>,
    routes: impl IntoIterator<Item = (&'a str, &'a Spanned<raw::RoutePolicy>)>,
) -> Result<PolicySet, Vec<CompileError>> {
    let mut c = Compiler::new(Dialect::Route);
    let mut set = PolicySet::default();
    for (name, doc) in &policies.0 {
        let compiled = c.named_policy(doc);
        if set.named.contains_key(&name.value) {
            c.err(
                &name.referenced,
                format!("policy `{}` is defined twice", name.value),
            );
        } else {
            set.named.insert(name.value.clone(), Arc::new(compiled));
        }
    }
    for (name, policy) in routes {
        if let Some(route) = c.route(name, policy, &set.named) {
            set.routes.insert(name.to_owned(), Arc::new(route));
        }
    }
    c.finish().map(|()| set)
}

const CRITERIA: &str = "all, any, not, email, domain, groups, claim.<name>, login, login_matches, \
     source_ip, time_of_day, day_of_week, date, identity_kind";

const ACCESS_CRITERIA: &str = "all, any, not, email, domain, groups, claim.<name>, source_ip, \
     time_of_day, day_of_week, date, identity_kind, route, login, recorded_user, own";

const DIRECT_CRITERIA: &str = "all, any, not, email, domain, groups, claim.<name>, source_ip, \
     time_of_day, day_of_week, date, identity_kind";

const HTTP_CRITERIA: &str = "all, any, not, email, domain, groups, claim.<name>, source_ip, \
     time_of_day, day_of_week, date, identity_kind, method, path, header.<name>";

/// Which language is compiled: they share conditions, and differ in the
/// criteria they allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    /// A route's policy: who may use the route.
    Route,
    /// `web.access`: what a viewer may do with a recording
    /// ([`super::access`]).
    Access,
    /// An HTTP route's policy: who may make a request to a web app
    /// ([`super::http`]).
    Http,
    /// `direct_access`: who gets a certificate for their own key
    /// ([`super::direct`]).
    Direct,
}

pub(super) struct Compiler {
    errors: Vec<CompileError>,
    tzdb: TimeZoneDatabase,
    pub(super) dialect: Dialect,
}

/// The subject a string matcher applies to, which decides the matchers it
/// accepts and how reasons read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Subject {
    Email,
    Domain,
    Login,
    Groups,
    Claim,
    /// A recording's route (access policy only).
    Route,
    /// A recording's identity (access policy only).
    RecordedUser,
    /// The request method (HTTP routes only).
    Method,
    /// The request path (HTTP routes only).
    Path,
    /// A request header's values (HTTP routes only).
    Header,
}

impl Subject {
    /// The matchers the subject takes, for messages.
    fn matcher_names(self) -> &'static str {
        match self {
            Subject::Method => "is, in",
            Subject::Path => "is, in, starts_with, ends_with, contains, glob",
            Subject::Header => "is, in, starts_with, ends_with, contains, present",
            _ => "is, in, starts_with, ends_with, contains, has",
        }
    }
}

fn join<I: IntoIterator<Item = S>, S: AsRef<str>>(items: I, sep: &str) -> String {
    let mut out = String::new();
    for (i, s) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(s.as_ref());
    }
    out
}

fn scalar_text(s: &Scalar) -> String {
    match s {
        Scalar::Str(s) => s.to_string(),
        Scalar::Num(n) => n.to_string(),
        Scalar::Bool(b) => b.to_string(),
    }
}

fn hhmm(t: Time) -> String {
    if t.second() == 0 && t.subsec_nanosecond() == 0 {
        format!("{:02}:{:02}", t.hour(), t.minute())
    } else {
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
    }
}

pub(super) fn leaf(leaf: Leaf, on_match: String, on_fail: String) -> Cond {
    Cond {
        kind: CondKind::Leaf(leaf),
        on_match: on_match.into(),
        on_fail: on_fail.into(),
    }
}

impl Compiler {
    pub(super) fn new(dialect: Dialect) -> Self {
        Compiler {
            errors: Vec::new(),
            tzdb: TimeZoneDatabase::bundled(),
            dialect,
        }
    }

    pub(super) fn err(&mut self, at: &Location, message: impl Into<String>) {
        self.errors.push(CompileError::at(at, message));
    }

    /// Every problem found, in file order, or none.
    pub(super) fn finish(mut self) -> Result<(), Vec<CompileError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            self.errors.sort_by_key(|e| (e.line, e.column));
            Err(self.errors)
        }
    }

    fn criteria(&self) -> &'static str {
        match self.dialect {
            Dialect::Route => CRITERIA,
            Dialect::Access => ACCESS_CRITERIA,
            Dialect::Http => HTTP_CRITERIA,
            Dialect::Direct => DIRECT_CRITERIA,
        }
    }

    // ---------------------------------------------------------------
    // Policies and routes
    // ---------------------------------------------------------------

    fn named_policy(&mut self, doc: &raw::PolicyDoc) -> NamedPolicy {
        NamedPolicy {
            capabilities: self.capabilities(doc.capabilities.as_ref()),
            obligations: self.obligations(doc.obligations.as_ref()),
            rules: self.rules(&doc.rules),
        }
    }

    fn rules(&mut self, rules: &[Spanned<raw::Rule>]) -> Vec<Arc<CompiledRule>> {
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for rule in rules {
            if let Some(compiled) = self.rule(rule) {
                if !names.insert(compiled.name.clone()) {
                    self.err(
                        &rule.referenced,
                        format!(
                            "rule `{}` is named twice in this policy; give each rule its own name",
                            compiled.name
                        ),
                    );
                }
                out.push(Arc::new(compiled));
            }
        }
        out
    }

    fn route(
        &mut self,
        name: &str,
        policy: &Spanned<raw::RoutePolicy>,
        named: &BTreeMap<String, Arc<NamedPolicy>>,
    ) -> Option<CompiledRoutePolicy> {
        let unknown = |n: &str| {
            let known = join(named.keys(), ", ");
            if known.is_empty() {
                format!("unknown policy `{n}`: no policies are defined under `policies:`")
            } else {
                format!("unknown policy `{n}`; defined policies: {known}")
            }
        };
        let errors_before = self.errors.len();
        let (mut caps, mut obls, mut rules) = (
            CapabilityMask::default(),
            ObligationMask::default(),
            Vec::new(),
        );
        match &policy.value {
            raw::RoutePolicy::Reference(n) => match named.get(n) {
                Some(p) => {
                    caps = p.capabilities.clone();
                    obls = p.obligations;
                    rules.clone_from(&p.rules);
                }
                None => self.err(&policy.referenced, unknown(n)),
            },
            raw::RoutePolicy::Inline(inline) => {
                caps = self.capabilities(inline.capabilities.as_ref());
                obls = self.obligations(inline.obligations.as_ref());
                for inc in &inline.include {
                    match named.get(&inc.value) {
                        Some(p) => {
                            caps.or(&p.capabilities);
                            obls.or(&p.obligations);
                            rules.extend(p.rules.iter().cloned());
                        }
                        None => self.err(&inc.referenced, unknown(&inc.value)),
                    }
                }
                rules.extend(self.rules(&inline.rules));
            }
        }
        if self.errors.len() > errors_before {
            return None;
        }
        let capabilities = caps.route_capabilities();
        let obligations = obls.route_obligations();
        let mut out = CompiledRoutePolicy {
            route: name.into(),
            denies: Vec::new(),
            allows: Vec::new(),
            restricts: Vec::new(),
            windows: Vec::new(),
            no_allow_rules: format!("no rule allows access to route {name}").into(),
            session_limit: "session reached its maximum length".into(),
            reauth_due: "re-authentication is due".into(),
            binding_expired: "sign-in expired".into(),
            capabilities,
            obligations,
        };
        for rule in rules {
            out.windows.extend(rule.windows.iter().cloned());
            let rr = RouteRule {
                capabilities: out.capabilities.narrow(&rule.capabilities),
                obligations: out.obligations.narrow(&rule.obligations),
                rule: rule.clone(),
            };
            match rule.effect {
                Effect::Allow => out.allows.push(rr),
                Effect::Deny => out.denies.push(rr),
                Effect::Restrict => out.restricts.push(rr),
            }
        }
        Some(out)
    }

    fn rule(&mut self, spanned: &Spanned<raw::Rule>) -> Option<CompiledRule> {
        let rule = &spanned.value;
        let named: Vec<(Effect, &Spanned<String>)> = [
            (Effect::Allow, &rule.allow),
            (Effect::Deny, &rule.deny),
            (Effect::Restrict, &rule.restrict),
        ]
        .into_iter()
        .filter_map(|(e, n)| n.as_ref().map(|n| (e, n)))
        .collect();
        let (effect, name) = match named.as_slice() {
            [one] => *one,
            [] => {
                self.err(
                    &spanned.referenced,
                    "a rule needs one of `allow: NAME`, `deny: NAME` or `restrict: NAME`",
                );
                return None;
            }
            [_, second, ..] => {
                self.err(
                    &second.1.referenced,
                    "a rule has exactly one of `allow`, `deny` or `restrict`; split it into two rules",
                );
                return None;
            }
        };
        if name.value.trim().is_empty() {
            self.err(&name.referenced, "a rule's name must not be empty");
        }
        if effect == Effect::Deny {
            if let Some(c) = &rule.capabilities {
                self.err(
                    &c.referenced,
                    "a deny rule grants nothing, so it cannot narrow capabilities; use a restrict rule",
                );
            }
            if let Some(o) = &rule.obligations {
                self.err(
                    &o.referenced,
                    "a deny rule grants nothing, so it cannot state obligations; use a restrict rule",
                );
            }
        }
        let capabilities = self.capabilities(rule.capabilities.as_ref());
        let obligations = self.obligations(rule.obligations.as_ref());
        let Some(when) = &rule.when else {
            self.err(
                &name.referenced,
                format!(
                    "rule `{}` needs a `when:` condition; to match every request write `when: {{all: []}}`",
                    name.value
                ),
            );
            return None;
        };
        let mut windows = Vec::new();
        let cond = self.cond(when, &mut windows)?;
        Some(CompiledRule {
            name: name.value.as_str().into(),
            effect,
            reason: rule.reason.as_ref().map(|r| r.value.as_str().into()),
            when: cond,
            capabilities,
            obligations,
            windows,
        })
    }

    // ---------------------------------------------------------------
    // Capabilities and obligations
    // ---------------------------------------------------------------

    fn capabilities(&mut self, raw: Option<&Spanned<raw::Capabilities>>) -> CapabilityMask {
        let Some(raw) = raw else {
            return CapabilityMask::default();
        };
        let c = &raw.value;
        let b = |v: &Option<Spanned<bool>>| v.as_ref().map(|s| s.value);
        let exec = c.exec.as_ref().and_then(|e| match &e.value {
            raw::Exec::Allowed(true) => Some(Exec::Any),
            raw::Exec::Allowed(false) => Some(Exec::Denied),
            raw::Exec::Only(cmd) if cmd.value.trim().is_empty() => {
                self.err(&cmd.referenced, "`exec: {only: …}` needs a command");
                None
            }
            raw::Exec::Only(cmd) => Some(Exec::Only(cmd.value.as_str().into())),
        });
        if matches!(exec, Some(Exec::Only(_))) {
            for (field, v) in [("shell", &c.shell), ("sftp", &c.sftp)] {
                if let Some(v) = v
                    && v.value
                {
                    self.err(
                        &v.referenced,
                        format!(
                            "`{field}: true` contradicts `exec: {{only: …}}`: the forced command replaces shells and subsystems"
                        ),
                    );
                }
            }
        }
        CapabilityMask {
            pty: b(&c.pty),
            shell: b(&c.shell),
            exec,
            sftp: b(&c.sftp),
            port_forward_local: self.forward(c.port_forward_local.as_ref()),
            port_forward_remote: self.forward(c.port_forward_remote.as_ref()),
            agent: b(&c.agent),
            x11: b(&c.x11),
        }
    }

    fn forward(&mut self, raw: Option<&Spanned<raw::Forward>>) -> Option<Forwarding> {
        let raw = raw?;
        match &raw.value {
            raw::Forward::Allowed(true) => Some(Forwarding::Any),
            raw::Forward::Allowed(false) => Some(Forwarding::Denied),
            raw::Forward::Only(list) if list.is_empty() => {
                self.err(
                    &raw.referenced,
                    "an empty destination list allows nothing; write `false` to forbid forwarding",
                );
                None
            }
            raw::Forward::Only(list) => {
                let mut patterns = Vec::new();
                for p in list {
                    match DestinationPattern::parse(&p.value) {
                        Ok(pattern) => patterns.push(pattern),
                        Err(e) => self.err(&p.referenced, e),
                    }
                }
                Some(Forwarding::Only(Arc::from(vec![Arc::from(patterns)])))
            }
        }
    }

    fn obligations(&mut self, raw: Option<&Spanned<raw::Obligations>>) -> ObligationMask {
        let Some(raw) = raw else {
            return ObligationMask::default();
        };
        let o = &raw.value;
        ObligationMask {
            record: o.record.as_ref().map(|r| match r.value {
                raw::RecordMode::Strict => RecordMode::Strict,
                raw::RecordMode::BestEffort => RecordMode::BestEffort,
                raw::RecordMode::Off => RecordMode::Off,
            }),
            record_input: o.record_input.as_ref().map(|r| r.value),
            max_session: self.duration("max_session", o.max_session.as_ref()),
            reauth_every: self.duration("reauth_every", o.reauth_every.as_ref()),
            cert_ttl: self.duration("cert_ttl", o.cert_ttl.as_ref()),
        }
    }

    fn duration(&mut self, field: &str, raw: Option<&Spanned<String>>) -> Option<Duration> {
        let raw = raw?;
        match humantime::parse_duration(&raw.value) {
            Ok(d) if d.is_zero() => {
                self.err(
                    &raw.referenced,
                    format!("`{field}` must be longer than zero; leave it out for no limit"),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    &raw.referenced,
                    format!(
                        "`{field}`: `{}` is not a duration ({e}); write e.g. `90s`, `15m`, `8h`",
                        raw.value
                    ),
                );
                None
            }
        }
    }

    // ---------------------------------------------------------------
    // Conditions
    // ---------------------------------------------------------------

    pub(super) fn cond(&mut self, node: &Node, windows: &mut Vec<Window>) -> Option<Cond> {
        let NodeValue::Map(entries) = &node.value else {
            self.err(
                &node.at,
                format!(
                    "expected a condition (a mapping such as `groups: sre`), found {}",
                    node.value.kind()
                ),
            );
            return None;
        };
        if entries.is_empty() {
            self.err(
                &node.at,
                "empty condition; to match every request write `all: []`",
            );
            return None;
        }
        let mut children = Vec::new();
        let mut ok = true;
        for (key, value) in entries {
            match self.criterion(key, value, windows) {
                Some(c) => children.push(c),
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        if children.len() == 1 {
            return children.pop();
        }
        Some(all(children))
    }

    fn conds(&mut self, node: &Node, windows: &mut Vec<Window>, op: &str) -> Option<Vec<Cond>> {
        let NodeValue::Seq(items) = &node.value else {
            self.err(
                &node.at,
                format!(
                    "`{op}` takes a list of conditions, found {}",
                    node.value.kind()
                ),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items {
            match self.cond(item, windows) {
                Some(c) => out.push(c),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn criterion(&mut self, key: &Node, value: &Node, windows: &mut Vec<Window>) -> Option<Cond> {
        let NodeValue::Str(name) = &key.value else {
            self.err(
                &key.at,
                format!(
                    "a criterion's name must be a string; criteria are: {}",
                    self.criteria()
                ),
            );
            return None;
        };
        match name.as_str() {
            "all" => self.conds(value, windows, "all").map(all),
            "any" => self.conds(value, windows, "any").map(any),
            "not" => {
                let inner = self.cond(value, windows)?;
                Some(Cond {
                    on_match: inner.on_fail.clone(),
                    on_fail: inner.on_match.clone(),
                    kind: CondKind::Not(Box::new(inner)),
                })
            }
            "email" => self.string_criterion(Subject::Email, "email", value),
            "domain" => self.string_criterion(Subject::Domain, "email domain", value),
            "login" | "login_matches" if self.dialect == Dialect::Http => {
                self.ssh_criterion_in_http(name, &key.at);
                None
            }
            "login" | "login_matches" if self.dialect == Dialect::Direct => {
                self.login_in_direct(name, &key.at);
                None
            }
            "login" => self.string_criterion(Subject::Login, "login", value),
            "groups" => self.string_criterion(Subject::Groups, "group", value),
            "login_matches" if self.dialect == Dialect::Access => {
                self.login_matches_in_access(&key.at);
                None
            }
            "login_matches" => self.login_matches(value),
            "route" | "recorded_user" | "own" => self.recording_criterion(name, &key.at, value),
            "source_ip" => self.source_ip(value),
            "time_of_day" => self.time_of_day(value, windows),
            "day_of_week" => self.day_of_week(value, windows),
            "date" => self.date(value, windows),
            "identity_kind" => self.identity_kind(value),
            "method" | "path" => self.request_criterion(name, &key.at, value),
            other => {
                if other.starts_with("header.") {
                    return self.request_criterion(name, &key.at, value);
                }
                if let Some(path) = other.strip_prefix("claim.") {
                    let path = self.claim_path(&key.at, path)?;
                    let label = format!("claim {}", other.trim_start_matches("claim."));
                    let (matchers, on_match, on_fail) =
                        self.matchers(Subject::Claim, &label, value)?;
                    return Some(leaf(Leaf::Claim { path, matchers }, on_match, on_fail));
                }
                let hint = match other {
                    "claim" | "claims" => {
                        " (name the claim after a dot: `claim.department`)".to_owned()
                    }
                    o if o.starts_with("claims.") => {
                        format!(
                            " (did you mean `claim.{}`?)",
                            o.trim_start_matches("claims.")
                        )
                    }
                    "group" => " (did you mean `groups`?)".to_owned(),
                    "recorded_identity" | "recorded_email" | "user"
                        if self.dialect == Dialect::Access =>
                    {
                        " (did you mean `recorded_user`?)".to_owned()
                    }
                    "header" | "headers" if self.dialect == Dialect::Http => {
                        " (name the header after a dot: `header.x-device-trust`)".to_owned()
                    }
                    o if o.starts_with("headers.") && self.dialect == Dialect::Http => {
                        format!(
                            " (did you mean `header.{}`?)",
                            o.trim_start_matches("headers.")
                        )
                    }
                    "methods" | "verb" if self.dialect == Dialect::Http => {
                        " (did you mean `method`?)".to_owned()
                    }
                    "paths" | "url" | "uri" if self.dialect == Dialect::Http => {
                        " (did you mean `path`?)".to_owned()
                    }
                    "and" | "or" => " (the combinators are `all`, `any` and `not`)".to_owned(),
                    _ => String::new(),
                };
                let criteria = self.criteria();
                self.err(
                    &key.at,
                    format!("unknown criterion `{other}`{hint}; criteria are: {criteria}"),
                );
                None
            }
        }
    }

    fn claim_path(&mut self, at: &Location, text: &str) -> Option<Box<[Box<str>]>> {
        let mut out: Vec<Box<str>> = Vec::new();
        let mut rest = text;
        loop {
            let (segment, after) = if let Some(quoted) = rest.strip_prefix('"') {
                match quoted.split_once('"') {
                    Some((seg, after)) => (seg, after),
                    None => {
                        self.err(at, format!("claim path `{text}` has an unclosed quote"));
                        return None;
                    }
                }
            } else {
                match rest.find('.') {
                    Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("")),
                    None => (rest, ""),
                }
            };
            if segment.is_empty() {
                self.err(
                    at,
                    format!("claim path `{text}` has an empty part; write `claim.a.b`"),
                );
                return None;
            }
            out.push(segment.into());
            if after.is_empty() {
                return Some(out.into());
            }
            match after.strip_prefix('.') {
                Some(next) => rest = next,
                None => {
                    self.err(
                        at,
                        format!("claim path `{text}`: expected `.` after a quoted name"),
                    );
                    return None;
                }
            }
        }
    }

    fn scalar(&mut self, subject: Subject, node: &Node) -> Option<Scalar> {
        let s = match &node.value {
            NodeValue::Str(s) if subject == Subject::Method => {
                Scalar::Str(self.method_name(&node.at, s)?)
            }
            NodeValue::Str(s) if subject == Subject::Path => {
                Scalar::Str(self.path_value(&node.at, s)?)
            }
            NodeValue::Str(s) => Scalar::Str(s.as_str().into()),
            NodeValue::Int(i) if subject == Subject::Claim => Scalar::Num(*i as f64),
            NodeValue::Float(f) if subject == Subject::Claim => Scalar::Num(*f),
            NodeValue::Bool(b) if subject == Subject::Claim => Scalar::Bool(*b),
            other => {
                let hint = if matches!(other, NodeValue::Bool(_)) {
                    " (YAML reads bare yes/no/on/off as booleans: quote it)"
                } else {
                    ""
                };
                self.err(
                    &node.at,
                    format!("expected a string, found {}{hint}", other.kind()),
                );
                return None;
            }
        };
        Some(s)
    }

    fn scalars(&mut self, subject: Subject, node: &Node, items: &[Node]) -> Option<Box<[Scalar]>> {
        if items.is_empty() {
            self.err(&node.at, "an empty list matches nothing");
            return None;
        }
        let mut out = Vec::new();
        for item in items {
            out.push(self.scalar(subject, item)?);
        }
        Some(out.into())
    }

    fn string(&mut self, node: &Node) -> Option<Box<str>> {
        match &node.value {
            NodeValue::Str(s) if !s.is_empty() => Some(s.as_str().into()),
            other => {
                self.err(
                    &node.at,
                    format!("expected a non-empty string, found {}", other.kind()),
                );
                None
            }
        }
    }

    /// `email`, `domain`, `login` and `groups`; `route` and
    /// `recorded_user` in the access policy; `method` and `path` in HTTP
    /// route policies.
    pub(super) fn string_criterion(
        &mut self,
        subject: Subject,
        label: &str,
        value: &Node,
    ) -> Option<Cond> {
        let (matchers, on_match, on_fail) = self.matchers(subject, label, value)?;
        let l = match subject {
            Subject::Email => Leaf::Email(matchers),
            Subject::Domain => Leaf::Domain(matchers),
            Subject::Login => Leaf::Login(matchers),
            // Claims and headers never come here: their leaves carry a
            // path or a name, and are built where those are read.
            Subject::Groups | Subject::Claim | Subject::Header => Leaf::Groups(matchers),
            Subject::Route => Leaf::Route(matchers),
            Subject::RecordedUser => Leaf::RecordedUser(matchers),
            Subject::Method => Leaf::Method(matchers),
            Subject::Path => Leaf::Path(matchers),
        };
        Some(leaf(l, on_match, on_fail))
    }

    /// The matchers of a string criterion and the reasons they give.
    pub(super) fn matchers(
        &mut self,
        subject: Subject,
        label: &str,
        value: &Node,
    ) -> Option<(Vec<Matcher>, String, String)> {
        let mut matchers = Vec::new();
        match &value.value {
            NodeValue::Seq(items) => {
                matchers.push(Matcher::In(self.scalars(subject, value, items)?));
            }
            NodeValue::Map(entries) => {
                if entries.is_empty() {
                    let names = subject.matcher_names();
                    self.err(
                        &value.at,
                        match names.rsplit_once(", ") {
                            Some((head, last)) => format!("no matcher given; use {head} or {last}"),
                            None => format!("no matcher given; use {names}"),
                        },
                    );
                    return None;
                }
                for (k, v) in entries {
                    let NodeValue::Str(op) = &k.value else {
                        self.err(&k.at, "a matcher's name must be a string");
                        return None;
                    };
                    let m = match op.as_str() {
                        "is" if subject == Subject::Groups => {
                            self.err(
                                &k.at,
                                "`groups` is a list: use `has: GROUP` (or `in: [..]` for any of several)",
                            );
                            return None;
                        }
                        "starts_with" | "ends_with" | "contains" | "has" | "glob"
                            if subject == Subject::Method =>
                        {
                            self.err(
                                &k.at,
                                "`method` takes a method, a list of methods, `is` or `in`",
                            );
                            return None;
                        }
                        "glob" if self.dialect != Dialect::Http => {
                            self.err(
                                &k.at,
                                "`glob` matches request paths: it only applies to `path` in http_routes policies",
                            );
                            return None;
                        }
                        "glob" if subject != Subject::Path => {
                            self.err(
                                &k.at,
                                format!(
                                    "`glob` only applies to `path`; for {label} use {}",
                                    subject.matcher_names()
                                ),
                            );
                            return None;
                        }
                        "has"
                            if matches!(
                                subject,
                                Subject::Email
                                    | Subject::Domain
                                    | Subject::Login
                                    | Subject::Route
                                    | Subject::RecordedUser
                                    | Subject::Path
                                    | Subject::Header
                            ) =>
                        {
                            self.err(
                                &k.at,
                                format!(
                                    "`has` tests a list, and {label} is a single value: use `is`"
                                ),
                            );
                            return None;
                        }
                        "is" => Matcher::Is(self.scalar(subject, v)?),
                        "has" => Matcher::Has(self.scalar(subject, v)?),
                        "in" => match &v.value {
                            NodeValue::Seq(items) => Matcher::In(self.scalars(subject, v, items)?),
                            other => {
                                self.err(
                                    &v.at,
                                    format!("`in` takes a list, found {}", other.kind()),
                                );
                                return None;
                            }
                        },
                        "starts_with" if subject == Subject::Path => {
                            let prefix = self.string(v)?;
                            Matcher::StartsWith(self.path_value(&v.at, &prefix)?)
                        }
                        "glob" => Matcher::Glob(self.glob(v)?),
                        "starts_with" => Matcher::StartsWith(self.string(v)?),
                        "ends_with" => Matcher::EndsWith(self.string(v)?),
                        "contains" => Matcher::Contains(self.string(v)?),
                        other => {
                            self.err(
                                &k.at,
                                format!(
                                    "unknown matcher `{other}`; matchers are: {}",
                                    subject.matcher_names()
                                ),
                            );
                            return None;
                        }
                    };
                    matchers.push(m);
                }
            }
            NodeValue::Null => {
                self.err(&value.at, format!("`{label}` needs a value to match"));
                return None;
            }
            _ => {
                let s = self.scalar(subject, value)?;
                matchers.push(match subject {
                    Subject::Groups | Subject::Claim => Matcher::Has(s),
                    _ => Matcher::Is(s),
                });
            }
        }
        let phrase = |m: &Matcher| -> String {
            let groups = subject == Subject::Groups;
            match m {
                Matcher::Is(s) => format!("{label} {}", scalar_text(s)),
                Matcher::Has(s) if groups => format!("group {}", scalar_text(s)),
                Matcher::Has(s) => format!("{label} with {}", scalar_text(s)),
                Matcher::In(set) if groups => {
                    format!(
                        "one of the groups {}",
                        join(set.iter().map(scalar_text), ", ")
                    )
                }
                Matcher::In(set) => {
                    format!("{label} one of {}", join(set.iter().map(scalar_text), ", "))
                }
                Matcher::StartsWith(p) => format!("{label} starting with {p}"),
                Matcher::EndsWith(p) => format!("{label} ending with {p}"),
                Matcher::Contains(p) => format!("{label} containing {p}"),
                Matcher::Glob(g) => format!("{label} matching {g}"),
            }
        };
        let noun = join(matchers.iter().map(phrase), " and ");
        let on_match = if subject == Subject::Groups {
            format!("member of {noun}")
        } else {
            noun.clone()
        };
        let on_fail = format!("requires {noun}");
        Some((matchers, on_match, on_fail))
    }

    fn login_matches(&mut self, value: &Node) -> Option<Cond> {
        let NodeValue::Str(s) = &value.value else {
            self.err(
                &value.at,
                "`login_matches` takes `email_local_part` or `claim.<name>`",
            );
            return None;
        };
        let (source, what) = if s == "email_local_part" {
            (
                LoginSource::EmailLocalPart,
                "the email's local part".to_owned(),
            )
        } else if let Some(path) = s.strip_prefix("claim.") {
            (
                LoginSource::Claim(self.claim_path(&value.at, path)?),
                format!("claim {path}"),
            )
        } else {
            self.err(
                &value.at,
                format!("`login_matches: {s}`: use `email_local_part` or `claim.<name>`"),
            );
            return None;
        };
        Some(leaf(
            Leaf::LoginMatches(source),
            format!("login equal to {what}"),
            format!("requires the login to equal {what}"),
        ))
    }

    fn source_ip(&mut self, value: &Node) -> Option<Cond> {
        let items: Vec<&Node> = match &value.value {
            NodeValue::Str(_) => vec![value],
            NodeValue::Seq(items) => items.iter().collect(),
            NodeValue::Map(entries) => match entries.as_slice() {
                [(k, v)] if k.value == NodeValue::Str("in".into()) => match &v.value {
                    NodeValue::Seq(items) => items.iter().collect(),
                    _ => vec![v],
                },
                _ => {
                    self.err(
                        &value.at,
                        "`source_ip` takes a CIDR, a list of CIDRs, or `in: [..]`",
                    );
                    return None;
                }
            },
            other => {
                self.err(
                    &value.at,
                    format!(
                        "`source_ip` takes a CIDR or a list of CIDRs, found {}",
                        other.kind()
                    ),
                );
                return None;
            }
        };
        if items.is_empty() {
            self.err(&value.at, "an empty list matches nothing");
            return None;
        }
        let mut nets = Vec::new();
        let mut texts = Vec::new();
        let mut ok = true;
        for item in items {
            let NodeValue::Str(s) = &item.value else {
                self.err(
                    &item.at,
                    format!("expected a CIDR, found {}", item.value.kind()),
                );
                ok = false;
                continue;
            };
            let parsed = if s.contains('/') {
                s.parse::<IpNet>().ok().map(|n| n.trunc())
            } else {
                s.parse::<IpAddr>().ok().map(IpNet::from)
            };
            match parsed {
                Some(net) => {
                    nets.push(net);
                    texts.push(s.clone());
                }
                None => {
                    self.err(
                        &item.at,
                        format!("`{s}` is not a CIDR network or IP address (e.g. `10.0.0.0/8`)"),
                    );
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        let list = join(&texts, ", ");
        Some(leaf(
            Leaf::SourceIp(nets.into()),
            format!("source address in {list}"),
            format!("requires a source address in {list}"),
        ))
    }

    /// Reads a fixed-shape mapping, reporting unknown and missing keys.
    fn fields<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        allowed: &[&str],
    ) -> Option<BTreeMap<String, &'n Node>> {
        let NodeValue::Map(entries) = &node.value else {
            self.err(
                &node.at,
                format!(
                    "`{what}` takes a mapping with {}, found {}",
                    allowed.join(", "),
                    node.value.kind()
                ),
            );
            return None;
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (k, v) in entries {
            match &k.value {
                NodeValue::Str(s) if allowed.contains(&s.as_str()) => {
                    out.insert(s.clone(), v);
                }
                _ => {
                    let shown = match &k.value {
                        NodeValue::Str(s) => s.clone(),
                        other => other.kind().to_owned(),
                    };
                    self.err(
                        &k.at,
                        format!(
                            "unknown key `{shown}` in `{what}`; expected {}",
                            allowed.join(", ")
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn timezone(
        &mut self,
        what: &str,
        node: Option<&&Node>,
        at: &Location,
    ) -> Option<(TimeZone, String)> {
        let Some(node) = node else {
            self.err(
                at,
                format!(
                    "`{what}` needs a `timezone:` (an IANA name such as Europe/Berlin, or UTC)"
                ),
            );
            return None;
        };
        let NodeValue::Str(name) = &node.value else {
            self.err(
                &node.at,
                "a time zone is an IANA name such as Europe/Berlin",
            );
            return None;
        };
        match self.tzdb.get(name) {
            Ok(tz) => Some((tz, name.clone())),
            Err(_) => {
                self.err(
                    &node.at,
                    format!("unknown time zone `{name}`; use an IANA name such as Europe/Berlin, America/New_York or UTC"),
                );
                None
            }
        }
    }

    fn time_value(&mut self, node: Option<&&Node>, key: &str, at: &Location) -> Option<Time> {
        let Some(node) = node else {
            self.err(at, format!("`time_of_day` needs `{key}:` (\"HH:MM\")"));
            return None;
        };
        let parsed = match &node.value {
            NodeValue::Str(s) => s.parse::<Time>().ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.err(
                &node.at,
                format!("`{key}` must be a time of day like \"09:00\""),
            );
        }
        parsed
    }

    fn time_of_day(&mut self, value: &Node, windows: &mut Vec<Window>) -> Option<Cond> {
        let f = self.fields(value, "time_of_day", &["from", "to", "timezone"])?;
        let from = self.time_value(f.get("from"), "from", &value.at);
        let to = self.time_value(f.get("to"), "to", &value.at);
        let tz = self.timezone("time_of_day", f.get("timezone"), &value.at);
        let (from, to, (tz, tz_name)) = (from?, to?, tz?);
        if from == to {
            let at = f.get("to").map_or(&value.at, |n| &n.at);
            self.err(
                at,
                format!(
                    "contradictory time range: `from` and `to` are both {}; the window would be empty (or all day: then leave it out)",
                    hhmm(from)
                ),
            );
            return None;
        }
        let window = TimeOfDay { from, to, tz };
        windows.push(Window::TimeOfDay(window.clone()));
        let span = format!("{}–{} {tz_name}", hhmm(from), hhmm(to));
        Some(leaf(
            Leaf::TimeOfDay(window),
            format!("inside {span}"),
            format!("outside {span}"),
        ))
    }

    fn day_of_week(&mut self, value: &Node, windows: &mut Vec<Window>) -> Option<Cond> {
        let f = self.fields(value, "day_of_week", &["days", "timezone"])?;
        let tz = self.timezone("day_of_week", f.get("timezone"), &value.at);
        let Some(days_node) = f.get("days") else {
            self.err(
                &value.at,
                "`day_of_week` needs `days:` (e.g. [mon-fri, sun])",
            );
            return None;
        };
        let items: Vec<&Node> = match &days_node.value {
            NodeValue::Seq(items) => items.iter().collect(),
            _ => vec![*days_node],
        };
        let mut mask = 0u8;
        let mut texts = Vec::new();
        for item in items {
            let parsed = match &item.value {
                NodeValue::Str(s) => day_set(s),
                _ => None,
            };
            match parsed {
                Some(bits) => {
                    mask |= bits;
                    if let NodeValue::Str(s) = &item.value {
                        texts.push(s.to_ascii_lowercase());
                    }
                }
                None => self.err(
                    &item.at,
                    "a day is mon, tue, wed, thu, fri, sat or sun, or a range like mon-fri",
                ),
            }
        }
        let (tz, tz_name) = tz?;
        if mask == 0 {
            self.err(
                &days_node.at,
                "`days` lists no day, so the window would be empty",
            );
            return None;
        }
        let window = DayOfWeek { days: mask, tz };
        windows.push(Window::DayOfWeek(window.clone()));
        let list = join(&texts, ", ");
        Some(leaf(
            Leaf::DayOfWeek(window),
            format!("on {list} {tz_name}"),
            format!("outside {list} {tz_name}"),
        ))
    }

    fn date(&mut self, value: &Node, windows: &mut Vec<Window>) -> Option<Cond> {
        let f = self.fields(value, "date", &["after", "before", "timezone"])?;
        let tz = match f.get("timezone") {
            Some(n) => Some(self.timezone("date", Some(n), &value.at)?),
            None => None,
        };
        let instant = |key: &str, c: &mut Compiler| -> Result<Option<(Timestamp, String)>, ()> {
            let Some(node) = f.get(key) else {
                return Ok(None);
            };
            let NodeValue::Str(s) = &node.value else {
                c.err(
                    &node.at,
                    format!("`{key}` must be a date or an RFC 3339 time"),
                );
                return Err(());
            };
            if let Ok(ts) = s.parse::<Timestamp>() {
                return Ok(Some((ts, s.clone())));
            }
            let Ok(dt) = s.parse::<DateTime>() else {
                c.err(
                    &node.at,
                    format!("`{s}` is not a date (2026-01-31), a date-time, or an RFC 3339 time (2026-01-31T09:00:00Z)"),
                );
                return Err(());
            };
            let Some((tz, tz_name)) = &tz else {
                c.err(
                    &node.at,
                    format!("`{s}` has no UTC offset: add `timezone:` to the date, or write an offset (…Z or …+01:00)"),
                );
                return Err(());
            };
            match tz.to_ambiguous_timestamp(dt).compatible() {
                Ok(ts) => Ok(Some((ts, format!("{s} {tz_name}")))),
                Err(e) => {
                    c.err(&node.at, format!("`{s}`: {e}"));
                    Err(())
                }
            }
        };
        let after = instant("after", self);
        let before = instant("before", self);
        let (Ok(after), Ok(before)) = (after, before) else {
            return None;
        };
        let (on_match, on_fail) = match (&after, &before) {
            (None, None) => {
                self.err(&value.at, "`date` needs `after:`, `before:` or both");
                return None;
            }
            (Some((a, at)), Some((b, bt))) => {
                if a >= b {
                    let node = f.get("before").map_or(&value.at, |n| &n.at);
                    self.err(
                        node,
                        format!("contradictory date range: `after` {at} is not before `before` {bt}, so no time is inside"),
                    );
                    return None;
                }
                (
                    format!("between {at} and {bt}"),
                    format!("only between {at} and {bt}"),
                )
            }
            (Some((_, at)), None) => (format!("since {at}"), format!("only from {at}")),
            (None, Some((_, bt))) => (format!("before {bt}"), format!("only before {bt}")),
        };
        let range = DateRange {
            after: after.map(|(t, _)| t),
            before: before.map(|(t, _)| t),
        };
        windows.push(Window::Date(range.clone()));
        Some(leaf(Leaf::Date(range), on_match, on_fail))
    }

    fn identity_kind(&mut self, value: &Node) -> Option<Cond> {
        let items: Vec<&Node> = match &value.value {
            NodeValue::Str(_) => vec![value],
            NodeValue::Seq(items) => items.iter().collect(),
            NodeValue::Map(entries) => match entries.as_slice() {
                [(k, v)] if matches!(&k.value, NodeValue::Str(s) if s == "is" || s == "in") => {
                    match &v.value {
                        NodeValue::Seq(items) => items.iter().collect(),
                        _ => vec![v],
                    }
                }
                _ => {
                    self.err(
                        &value.at,
                        "`identity_kind` takes `user`, `service`, or `in: [..]`",
                    );
                    return None;
                }
            },
            other => {
                self.err(
                    &value.at,
                    format!(
                        "`identity_kind` takes `user` or `service`, found {}",
                        other.kind()
                    ),
                );
                return None;
            }
        };
        let mut kinds = Vec::new();
        for item in items {
            match &item.value {
                NodeValue::Str(s) if s == "user" => kinds.push(IdentityKind::User),
                NodeValue::Str(s) if s == "service" => kinds.push(IdentityKind::Service),
                _ => {
                    self.err(&item.at, "an identity kind is `user` or `service`");
                    return None;
                }
            }
        }
        let mut leaves: Vec<Cond> = kinds
            .into_iter()
            .map(|k| {
                let what = match k {
                    IdentityKind::User => "a user identity",
                    IdentityKind::Service => "a service identity",
                };
                leaf(
                    Leaf::IdentityKind(k),
                    what.to_owned(),
                    format!("requires {what}"),
                )
            })
            .collect();
        match leaves.len() {
            0 => {
                self.err(&value.at, "an empty list matches nothing");
                None
            }
            1 => leaves.pop(),
            _ => Some(any(leaves)),
        }
    }
}

fn all(children: Vec<Cond>) -> Cond {
    let on_match = if children.is_empty() {
        "every request (all: [])".to_owned()
    } else {
        join(children.iter().map(|c| &*c.on_match), " and ")
    };
    let on_fail = format!("requires {on_match}");
    Cond {
        kind: CondKind::All(children),
        on_match: on_match.into(),
        on_fail: on_fail.into(),
    }
}

fn any(children: Vec<Cond>) -> Cond {
    let (on_match, on_fail) = if children.is_empty() {
        ("never".to_owned(), "no request (any: [])".to_owned())
    } else {
        let list = join(children.iter().map(|c| &*c.on_match), "; ");
        (
            join(children.iter().map(|c| &*c.on_match), " or "),
            format!("requires one of: {list}"),
        )
    };
    Cond {
        kind: CondKind::Any(children),
        on_match: on_match.into(),
        on_fail: on_fail.into(),
    }
}

fn weekday(s: &str) -> Option<Weekday> {
    let s = s.to_ascii_lowercase();
    let day = match s.get(..3)? {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return None,
    };
    let full = match day {
        Weekday::Monday => "monday",
        Weekday::Tuesday => "tuesday",
        Weekday::Wednesday => "wednesday",
        Weekday::Thursday => "thursday",
        Weekday::Friday => "friday",
        Weekday::Saturday => "saturday",
        Weekday::Sunday => "sunday",
    };
    (s.len() == 3 || s == full).then_some(day)
}

/// `mon`, `monday`, or a range `mon-fri` (wrapping: `fri-mon`).
fn day_set(s: &str) -> Option<u8> {
    match s.split_once('-') {
        None => weekday(s.trim()).map(weekday_bit),
        Some((a, b)) => {
            let (mut day, last) = (weekday(a.trim())?, weekday(b.trim())?);
            let mut bits = weekday_bit(day);
            while day != last {
                day = day.next();
                bits |= weekday_bit(day);
            }
            Some(bits)
        }
    }
}
