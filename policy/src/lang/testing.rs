//! Policy test tables: the pure part of `gatehouse policy test FILE`.
//!
//! Operators keep a YAML table of expected decisions next to their config
//! and run it in CI. The CLI reads the files (this module does no IO),
//! calls [`parse`], compiles the policies, and prints
//! [`TestTable::run`]'s report.
//!
//! ```yaml
//! config: gatehouse.yaml        # optional: the config the CLI loads
//! defaults:                     # optional: any case field, for every case
//!   from: 10.0.0.1
//!   at: 2026-03-30T10:00:00+02:00
//! cases:
//!   - name: sre may use prod-db as postgres during office hours
//!     route: prod-db
//!     email: alice@example.com  # identity: email, groups, claims, kind
//!     groups: [sre]
//!     claims: { oncall: { active: true } }
//!     kind: user                # user (default) or service
//!     login: postgres
//!     from: 10.1.2.3            # client address
//!     at: 2026-03-30T10:00:00[Europe/Berlin]   # RFC 3339, or with a zone
//!     session_start: 2026-03-30T08:00:00Z      # optional: a live session
//!     authenticated_at: 2026-03-30T08:00:00Z   # optional
//!     expect: allow             # allow | deny
//!     rule: on-call             # optional: the rule that must decide
//!     reason: office hours      # optional: text the reason must contain
//!     next_check: 2026-03-30T18:00:00+02:00    # optional: exact instant
//!     capabilities: { sftp: false, port_forward_local: true }  # optional
//! ```
//!
//! Each `capabilities` key expected says whether that capability is
//! granted at all (`exec` and the forwards: any command or destination).
//!
//! A case with `viewer:` asks the web access policy (`web.access`)
//! instead: what that viewer (an email; `groups`, `claims`, `kind`,
//! `identity` and `from` describe them too) may do with a recording of
//! `recorded_user` on `route` as `login`. `expect`, `rule` and `reason` are
//! about one capability, `capability:` (default `play`), and
//! `require_reason:` says whether it must need a reason; `capabilities:`
//! names viewer capabilities.
//!
//! ```yaml
//!   - name: auditors may download, without a reason
//!     viewer: carol@example.com
//!     groups: [auditors]
//!     route: prod-db
//!     login: postgres
//!     recorded_user: bob@example.com
//!     capability: download
//!     expect: allow
//!     require_reason: false
//!     capabilities: { end_session: false }
//! ```

use std::fmt;
use std::net::IpAddr;

use jiff::Timestamp;
use jiff::fmt::temporal::DateTimeParser;
use jiff::tz::TimeZoneDatabase;
use serde::Deserialize;

use super::compile::CompileError;
use super::raw::{Location, Named, Spanned};
use super::{
    AccessRequest, Capabilities, Claims, CompiledAccessPolicy, Decision, Exec, Identity,
    IdentityKind, PolicySet, RecordingFacts, Request, ViewerCapability,
};

/// A test table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTable {
    /// The config file whose policies the cases test, relative to the
    /// table; the CLI loads it (a command-line option may override it).
    pub config: Option<Spanned<String>>,
    /// Fields every case gets unless it states its own.
    #[serde(default)]
    pub defaults: RawCase,
    /// The cases, in order.
    pub cases: Vec<Spanned<RawCase>>,
}

/// One case as written; see the module documentation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCase {
    /// A name for the report; defaults to the case's line.
    pub name: Option<String>,
    /// The route asked for.
    pub route: Option<Spanned<String>>,
    /// The identity's email.
    pub email: Option<String>,
    /// The identity's groups.
    pub groups: Option<Vec<String>>,
    /// The identity's ID-token claims.
    pub claims: Option<Claims>,
    /// `user` or `service`.
    pub kind: Option<Spanned<String>>,
    /// The identity's name; defaults to the email, else `test`.
    pub identity: Option<String>,
    /// The login requested.
    pub login: Option<String>,
    /// The client address.
    pub from: Option<Spanned<String>>,
    /// When the request is made.
    pub at: Option<Spanned<String>>,
    /// When the session started (for re-checks of a live session).
    pub session_start: Option<Spanned<String>>,
    /// When the identity last confirmed with the IdP.
    pub authenticated_at: Option<Spanned<String>>,
    /// When the key's login binding expires.
    pub binding_expires: Option<Spanned<String>>,
    /// `allow` or `deny`.
    pub expect: Option<Spanned<String>>,
    /// The rule expected to decide.
    pub rule: Option<String>,
    /// Text the reason must contain.
    pub reason: Option<String>,
    /// The exact next-check instant expected, or `never`.
    pub next_check: Option<Spanned<String>>,
    /// Capabilities expected to be granted (`true`) or not (`false`).
    pub capabilities: Option<Named<bool>>,
    /// Makes this a case of the web access policy: the viewer's email.
    pub viewer: Option<String>,
    /// The recorded identity (viewer cases).
    pub recorded_user: Option<String>,
    /// The viewer capability `expect`, `rule`, `reason` and
    /// `require_reason` are about; default `play` (viewer cases).
    pub capability: Option<Spanned<String>>,
    /// Whether that capability must need a reason (viewer cases).
    pub require_reason: Option<bool>,
}

/// A parsed, checked test table.
#[derive(Debug, Clone)]
pub struct TestTable {
    /// The `config:` path as written, for the CLI to load.
    pub config: Option<String>,
    cases: Vec<Case>,
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    line: u64,
    column: u64,
    route: String,
    identity: Identity,
    login: String,
    from: IpAddr,
    at: Timestamp,
    session_start: Option<Timestamp>,
    allow: bool,
    rule: Option<String>,
    reason: Option<String>,
    next_check: Option<Option<Timestamp>>,
    capabilities: Vec<(String, bool)>,
    /// Set for a case of the web access policy.
    viewer: Option<ViewerCase>,
}

/// What a case of the web access policy adds.
#[derive(Debug, Clone)]
struct ViewerCase {
    recorded_user: String,
    capability: ViewerCapability,
    require_reason: Option<bool>,
}

/// One case that did not get what it expected.
#[derive(Debug, Clone)]
pub struct TestFailure {
    /// The case's name (or `case at line N`).
    pub name: String,
    /// Where the case starts in the table.
    pub line: u64,
    /// Where the case starts in the table.
    pub column: u64,
    /// Each expectation that failed, as a sentence.
    pub problems: Vec<String>,
    /// The decision the case got, when its route exists (`None` for a
    /// case of the web access policy).
    pub decision: Option<Decision>,
}

impl fmt::Display for TestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.line,
            self.column,
            self.name,
            self.problems.join("; ")
        )
    }
}

/// The outcome of running a table.
#[derive(Debug, Clone, Default)]
pub struct TestReport {
    /// How many cases ran.
    pub total: usize,
    /// The cases that failed, in table order.
    pub failures: Vec<TestFailure>,
}

impl TestReport {
    /// Whether every case passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for TestReport {
    /// The failures, one per line, then `N passed, M failed`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for failure in &self.failures {
            writeln!(f, "{failure}")?;
        }
        write!(
            f,
            "{} passed, {} failed",
            self.total - self.failures.len(),
            self.failures.len()
        )
    }
}

/// Parses and checks a test table; every problem comes back with its
/// position.
pub fn parse(yaml: &str) -> Result<TestTable, Vec<CompileError>> {
    let raw: RawTable =
        serde_saphyr::from_str(yaml).map_err(|e| vec![CompileError::from_yaml(&e)])?;
    let mut p = Parser {
        errors: Vec::new(),
        tzdb: TimeZoneDatabase::bundled(),
    };
    let cases = raw
        .cases
        .iter()
        .filter_map(|c| p.case(&raw.defaults, c))
        .collect();
    if p.errors.is_empty() {
        Ok(TestTable {
            config: raw.config.map(|c| c.value),
            cases,
        })
    } else {
        Err(p.errors)
    }
}

struct Parser {
    errors: Vec<CompileError>,
    tzdb: TimeZoneDatabase,
}

impl Parser {
    fn err(&mut self, at: &Location, message: impl Into<String>) {
        self.errors.push(CompileError::at(at, message));
    }

    fn time(&mut self, s: &Spanned<String>) -> Option<Timestamp> {
        if let Ok(ts) = s.value.parse::<Timestamp>() {
            return Some(ts);
        }
        match DateTimeParser::new().parse_zoned_with(&self.tzdb, &s.value) {
            Ok(z) => Some(z.timestamp()),
            Err(e) => {
                self.err(
                    &s.referenced,
                    format!(
                        "`{}` is not a time: write RFC 3339 (2026-03-30T10:00:00+02:00) or with a zone (2026-03-30T10:00[Europe/Berlin]) ({e})",
                        s.value
                    ),
                );
                None
            }
        }
    }

    fn case(&mut self, defaults: &RawCase, spanned: &Spanned<RawCase>) -> Option<Case> {
        let c = &spanned.value;
        let d = defaults;
        let at_case = &spanned.referenced;
        let before = self.errors.len();
        macro_rules! pick {
            ($f:ident) => {
                c.$f.as_ref().or(d.$f.as_ref())
            };
        }
        let required = |p: &mut Parser, field: &str| {
            p.err(at_case, format!("this case needs `{field}:`"));
        };
        let route = pick!(route).map(|r| r.value.clone());
        if route.is_none() {
            required(self, "route");
        }
        let login = pick!(login).cloned();
        if login.is_none() {
            required(self, "login");
        }
        let from = match pick!(from) {
            Some(f) => match f.value.parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    self.err(&f.referenced, format!("`{}` is not an IP address", f.value));
                    None
                }
            },
            None => Some(IpAddr::from([127, 0, 0, 1])),
        };
        let at = match pick!(at) {
            Some(t) => self.time(t),
            None => {
                required(self, "at");
                None
            }
        };
        let session_start = pick!(session_start).and_then(|t| self.time(t));
        let authenticated_at = pick!(authenticated_at).and_then(|t| self.time(t));
        let binding_expires = pick!(binding_expires).and_then(|t| self.time(t));
        let kind = match pick!(kind) {
            None => IdentityKind::User,
            Some(k) if k.value == "user" => IdentityKind::User,
            Some(k) if k.value == "service" => IdentityKind::Service,
            Some(k) => {
                self.err(&k.referenced, "`kind` is `user` or `service`");
                IdentityKind::User
            }
        };
        let allow = match pick!(expect) {
            Some(e) if e.value == "allow" => Some(true),
            Some(e) if e.value == "deny" => Some(false),
            Some(e) => {
                self.err(&e.referenced, "`expect` is `allow` or `deny`");
                None
            }
            None => {
                required(self, "expect");
                None
            }
        };
        let next_check = match pick!(next_check) {
            None => None,
            Some(n) if n.value == "never" => Some(None),
            Some(n) => self.time(n).map(Some),
        };
        let viewer_email = pick!(viewer).cloned();
        let names: &[&str] = if viewer_email.is_some() {
            &VIEWER_CAPABILITY_NAMES
        } else {
            CAPABILITY_NAMES
        };
        let mut capabilities = Vec::new();
        if let Some(caps) = pick!(capabilities) {
            for (k, v) in &caps.0 {
                if names.contains(&k.value.as_str()) {
                    capabilities.push((k.value.clone(), *v));
                } else {
                    self.err(
                        &k.referenced,
                        format!(
                            "unknown capability `{}`; expected one of {}",
                            k.value,
                            names.join(", ")
                        ),
                    );
                }
            }
        }
        let viewer = match &viewer_email {
            None => {
                for (field, given) in [
                    ("recorded_user", pick!(recorded_user).is_some()),
                    ("capability", pick!(capability).is_some()),
                    ("require_reason", pick!(require_reason).is_some()),
                ] {
                    if given {
                        self.err(
                            at_case,
                            format!("`{field}` is for cases of the web access policy: add `viewer: EMAIL`"),
                        );
                    }
                }
                None
            }
            Some(_) => {
                for (field, given) in [
                    ("session_start", pick!(session_start).is_some()),
                    ("authenticated_at", pick!(authenticated_at).is_some()),
                    ("binding_expires", pick!(binding_expires).is_some()),
                    ("next_check", pick!(next_check).is_some()),
                ] {
                    if given {
                        self.err(
                            at_case,
                            format!("`{field}` is for route cases, not for a `viewer:` case"),
                        );
                    }
                }
                let capability = match pick!(capability) {
                    None => Some(ViewerCapability::Play),
                    Some(c) => {
                        let parsed = ViewerCapability::parse(&c.value);
                        if parsed.is_none() {
                            self.err(
                                &c.referenced,
                                format!(
                                    "unknown capability `{}`; expected one of {}",
                                    c.value,
                                    VIEWER_CAPABILITY_NAMES.join(", ")
                                ),
                            );
                        }
                        parsed
                    }
                };
                let recorded_user = pick!(recorded_user).cloned();
                if recorded_user.is_none() {
                    required(self, "recorded_user");
                }
                match (recorded_user, capability) {
                    (Some(recorded_user), Some(capability)) => Some(ViewerCase {
                        recorded_user,
                        capability,
                        require_reason: pick!(require_reason).copied(),
                    }),
                    _ => None,
                }
            }
        };
        if self.errors.len() > before {
            return None;
        }
        let email = viewer_email.or_else(|| pick!(email).cloned());
        let identity = Identity {
            kind,
            name: pick!(identity)
                .cloned()
                .or_else(|| email.clone())
                .unwrap_or_else(|| "test".to_owned()),
            email,
            groups: pick!(groups).cloned().unwrap_or_default(),
            claims: pick!(claims).cloned().unwrap_or_default(),
            authenticated_at,
            binding_expires,
        };
        Some(Case {
            name: c
                .name
                .clone()
                .unwrap_or_else(|| format!("case at line {}", at_case.line())),
            line: at_case.line(),
            column: at_case.column(),
            route: route?,
            identity,
            login: login?,
            from: from?,
            at: at?,
            session_start,
            allow: allow?,
            rule: pick!(rule).cloned(),
            reason: pick!(reason).cloned(),
            next_check,
            capabilities,
            viewer,
        })
    }
}

const VIEWER_CAPABILITY_NAMES: [&str; 6] = [
    ViewerCapability::List.as_str(),
    ViewerCapability::Play.as_str(),
    ViewerCapability::Search.as_str(),
    ViewerCapability::Download.as_str(),
    ViewerCapability::WatchLive.as_str(),
    ViewerCapability::EndSession.as_str(),
];

const CAPABILITY_NAMES: &[&str] = &[
    "pty",
    "shell",
    "exec",
    "sftp",
    "port_forward_local",
    "port_forward_remote",
    "agent",
    "x11",
];

fn granted(caps: &Capabilities, name: &str) -> bool {
    match name {
        "pty" => caps.pty,
        "shell" => caps.shell,
        "exec" => !matches!(caps.exec, Exec::Denied),
        "sftp" => caps.sftp,
        "port_forward_local" => caps.port_forward_local.is_allowed(),
        "port_forward_remote" => caps.port_forward_remote.is_allowed(),
        "agent" => caps.agent,
        "x11" => caps.x11,
        _ => false,
    }
}

impl TestTable {
    /// How many cases the table has.
    pub fn len(&self) -> usize {
        self.cases.len()
    }

    /// Whether the table has no cases.
    pub fn is_empty(&self) -> bool {
        self.cases.is_empty()
    }

    /// Runs every case against a compiled policy set; a case with
    /// `viewer:` fails, since there is no access policy to ask (see
    /// [`TestTable::run_with_access`]).
    pub fn run(&self, set: &PolicySet) -> TestReport {
        self.run_with_access(set, None)
    }

    /// Runs every case: route cases against `set`, viewer cases against
    /// `access` (the configuration's `web.access`, `None` without a web
    /// section).
    pub fn run_with_access(
        &self,
        set: &PolicySet,
        access: Option<&CompiledAccessPolicy>,
    ) -> TestReport {
        let mut report = TestReport {
            total: self.cases.len(),
            failures: Vec::new(),
        };
        for case in &self.cases {
            let fail = |problems: Vec<String>, decision: Option<Decision>| TestFailure {
                name: case.name.clone(),
                line: case.line,
                column: case.column,
                problems,
                decision,
            };
            if let Some(viewer) = &case.viewer {
                let problems = match access {
                    Some(access) => case.check_access(viewer, access),
                    None => vec![
                        "this is a viewer case, and the configuration has no web section to ask"
                            .to_owned(),
                    ],
                };
                if !problems.is_empty() {
                    report.failures.push(fail(problems, None));
                }
                continue;
            }
            let Some(policy) = set.route(&case.route) else {
                report
                    .failures
                    .push(fail(vec![format!("unknown route `{}`", case.route)], None));
                continue;
            };
            let decision = super::evaluate(
                policy,
                &Request {
                    identity: &case.identity,
                    login: &case.login,
                    source: case.from,
                    now: case.at,
                    session_start: case.session_start,
                },
            );
            let mut problems = Vec::new();
            let word = |allowed: bool| if allowed { "allow" } else { "deny" };
            if decision.allowed != case.allow {
                problems.push(format!(
                    "expected {}, got {} ({}: {})",
                    word(case.allow),
                    word(decision.allowed),
                    decision.decided_by.rule_name().unwrap_or("no rule"),
                    decision.reason
                ));
            }
            if let Some(rule) = &case.rule
                && decision.decided_by.rule_name() != Some(rule.as_str())
            {
                problems.push(format!(
                    "expected rule `{rule}` to decide, got {}",
                    decision.decided_by.rule_name().map_or_else(
                        || format!("{:?}", decision.decided_by),
                        |n| format!("`{n}`")
                    )
                ));
            }
            if let Some(reason) = &case.reason
                && !decision.reason.contains(reason.as_str())
            {
                problems.push(format!(
                    "expected the reason to contain `{reason}`, got `{}`",
                    decision.reason
                ));
            }
            if let Some(expected) = case.next_check
                && decision.next_check != expected
            {
                let show =
                    |t: Option<Timestamp>| t.map_or_else(|| "never".to_owned(), |t| t.to_string());
                problems.push(format!(
                    "expected next check {}, got {}",
                    show(expected),
                    show(decision.next_check)
                ));
            }
            for (name, want) in &case.capabilities {
                if granted(&decision.capabilities, name) != *want {
                    problems.push(format!(
                        "expected {name} to be {}",
                        if *want { "granted" } else { "refused" }
                    ));
                }
            }
            if !problems.is_empty() {
                report.failures.push(fail(problems, Some(decision)));
            }
        }
        report
    }
}

impl Case {
    /// A viewer case's problems against the access policy.
    fn check_access(&self, viewer: &ViewerCase, access: &CompiledAccessPolicy) -> Vec<String> {
        let d = super::evaluate_access(
            access,
            &AccessRequest {
                viewer: &self.identity,
                source: self.from,
                now: self.at,
                recording: RecordingFacts {
                    route: &self.route,
                    login: &self.login,
                    recorded_user: &viewer.recorded_user,
                },
            },
        );
        let c = viewer.capability;
        let got = d.get(c);
        let word = |allowed: bool| if allowed { "allowed" } else { "denied" };
        let rule = got
            .rule
            .map_or_else(|| "no rule".to_owned(), |r| format!("`{r}`"));
        let mut problems = Vec::new();
        if got.allowed != self.allow {
            problems.push(format!(
                "expected {c} {}, got {} ({rule}: {})",
                word(self.allow),
                word(got.allowed),
                got.reason
            ));
        }
        if let Some(want) = &self.rule
            && got.rule != Some(want.as_str())
        {
            problems.push(format!("expected rule `{want}` to decide {c}, got {rule}"));
        }
        if let Some(reason) = &self.reason
            && !got.reason.contains(reason.as_str())
        {
            problems.push(format!(
                "expected the reason for {c} to contain `{reason}`, got `{}`",
                got.reason
            ));
        }
        if let Some(want) = viewer.require_reason
            && got.require_reason != want
        {
            problems.push(format!(
                "expected {c} {} a reason",
                if want { "to need" } else { "not to need" }
            ));
        }
        for (name, want) in &self.capabilities {
            if let Some(other) = ViewerCapability::parse(name)
                && d.allows(other) != *want
            {
                problems.push(format!(
                    "expected {name} to be {}",
                    if *want { "granted" } else { "refused" }
                ));
            }
        }
        problems
    }
}
