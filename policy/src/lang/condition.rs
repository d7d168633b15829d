//! Compiled conditions and how they are evaluated.
//!
//! Every reason text is built once, when compiling, and evaluation hands
//! back a reference to it, so deciding allocates nothing.
//!
//! A condition is evaluated against [`Facts`]: what a route [`Request`], a
//! recordings [`AccessRequest`](super::AccessRequest) or an
//! [`HttpRequest`](super::HttpRequest) says, in one shape, so the three
//! dialects share one compiler and one evaluator. The recording criteria
//! (`route`, `recorded_user`, `own`) read [`Facts::recording`], which only
//! an access request has, and the request criteria (`method`, `path`,
//! `header.<name>`) read [`Facts::http`], which only an HTTP request has;
//! the compiler refuses each in the other dialects, so they are never
//! evaluated where their facts are missing.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use jiff::Timestamp;

use super::capabilities::unmap;
use super::claims::{self, ClaimValue};
use super::glob::Glob;
use super::http::HttpFacts;
use super::time::{DateRange, DayOfWeek, TimeOfDay};
use super::{Identity, IdentityKind, RecordingFacts, Request};

/// What a condition is evaluated against. Built on the stack for each
/// evaluation (it is a handful of references), never stored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts<'a> {
    /// Who is asking: the SSH user, or the viewer in the web app.
    pub identity: &'a Identity,
    /// The login on the target: the one requested, or the recording's.
    pub login: &'a str,
    /// The address the question comes from.
    pub source: IpAddr,
    /// The time to decide at.
    pub now: Timestamp,
    /// The recording asked about; `None` for a route or HTTP request.
    pub recording: Option<RecordingFacts<'a>>,
    /// The HTTP request asked about; `None` for a route or access request.
    pub http: Option<HttpFacts<'a>>,
}

impl<'a> From<&Request<'a>> for Facts<'a> {
    fn from(r: &Request<'a>) -> Self {
        Facts {
            identity: r.identity,
            login: r.login,
            source: r.source,
            now: r.now,
            recording: None,
            http: None,
        }
    }
}

/// A compiled condition with the reasons it gives.
#[derive(Debug)]
pub(crate) struct Cond {
    pub kind: CondKind,
    /// Said when the condition holds ("member of group sre").
    pub on_match: Arc<str>,
    /// Said when it does not ("requires group sre").
    pub on_fail: Arc<str>,
}

#[derive(Debug)]
pub(crate) enum CondKind {
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
    Leaf(Leaf),
}

#[derive(Debug)]
pub(crate) enum Leaf {
    /// Matchers on the email; ASCII case is ignored.
    Email(Vec<Matcher>),
    /// Matchers on the email's domain; ASCII case is ignored.
    Domain(Vec<Matcher>),
    Login(Vec<Matcher>),
    Groups(Vec<Matcher>),
    Claim {
        path: Box<[Box<str>]>,
        matchers: Vec<Matcher>,
    },
    LoginMatches(LoginSource),
    SourceIp(Box<[IpNet]>),
    TimeOfDay(TimeOfDay),
    DayOfWeek(DayOfWeek),
    Date(DateRange),
    IdentityKind(IdentityKind),
    /// Matchers on the recording's route name (access policy only).
    Route(Vec<Matcher>),
    /// Matchers on the recorded identity's label; ASCII case is ignored
    /// (access policy only).
    RecordedUser(Vec<Matcher>),
    /// Whether the recording is the viewer's own (access policy only).
    Own(bool),
    /// Matchers on the request method; ASCII case is ignored (HTTP routes
    /// only).
    Method(Vec<Matcher>),
    /// Matchers on the request path, `glob` among them (HTTP routes only).
    Path(Vec<Matcher>),
    /// Some value of the request header `name` (lowercase) passes every
    /// matcher (HTTP routes only).
    Header {
        name: Box<str>,
        matchers: Vec<Matcher>,
    },
    /// Whether the request has the header `name` (lowercase) at all (HTTP
    /// routes only).
    HeaderPresent {
        name: Box<str>,
        present: bool,
    },
}

#[derive(Debug)]
pub(crate) enum LoginSource {
    EmailLocalPart,
    Claim(Box<[Box<str>]>),
}

#[derive(Debug, Clone)]
pub(crate) enum Scalar {
    Str(Box<str>),
    Num(f64),
    Bool(bool),
}

/// One matcher. On a list subject every matcher but `Is` asks whether some
/// element matches; `Is` asks for a scalar and never matches a list.
#[derive(Debug)]
pub(crate) enum Matcher {
    Is(Scalar),
    In(Box<[Scalar]>),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Contains(Box<str>),
    /// A list subject contains the value; a scalar subject equals it (so an
    /// IdP that sends a one-element list as a plain string still matches).
    Has(Scalar),
    /// The whole string matches a path glob (`path` only).
    Glob(Glob),
}

fn eq(a: &str, b: &str, ci: bool) -> bool {
    if ci {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

fn starts_with(s: &str, p: &str, ci: bool) -> bool {
    s.get(..p.len()).is_some_and(|head| eq(head, p, ci))
}

fn ends_with(s: &str, p: &str, ci: bool) -> bool {
    s.len() >= p.len()
        && s.get(s.len() - p.len()..)
            .is_some_and(|tail| eq(tail, p, ci))
}

fn contains(s: &str, p: &str, ci: bool) -> bool {
    if !ci {
        return s.contains(p);
    }
    let (s, p) = (s.as_bytes(), p.as_bytes());
    p.is_empty() || s.windows(p.len()).any(|w| w.eq_ignore_ascii_case(p))
}

impl Scalar {
    fn eq_str(&self, s: &str, ci: bool) -> bool {
        matches!(self, Scalar::Str(x) if eq(x, s, ci))
    }

    fn eq_claim(&self, v: &ClaimValue) -> bool {
        match (self, v) {
            (Scalar::Str(x), ClaimValue::String(s)) => **x == **s,
            (Scalar::Num(x), ClaimValue::Number(n)) => x == n,
            (Scalar::Bool(x), ClaimValue::Bool(b)) => x == b,
            _ => false,
        }
    }
}

impl Matcher {
    fn str(&self, s: &str, ci: bool) -> bool {
        match self {
            Matcher::Is(x) | Matcher::Has(x) => x.eq_str(s, ci),
            Matcher::In(set) => set.iter().any(|x| x.eq_str(s, ci)),
            Matcher::StartsWith(p) => starts_with(s, p, ci),
            Matcher::EndsWith(p) => ends_with(s, p, ci),
            Matcher::Contains(p) => contains(s, p, ci),
            Matcher::Glob(g) => g.matches(s),
        }
    }

    fn list(&self, items: &[String], ci: bool) -> bool {
        match self {
            Matcher::Is(_) => false,
            _ => items.iter().any(|item| self.str(item, ci)),
        }
    }

    fn claim(&self, v: &ClaimValue) -> bool {
        match v {
            ClaimValue::String(s) => self.str(s, false),
            ClaimValue::Bool(_) | ClaimValue::Number(_) => match self {
                Matcher::Is(x) | Matcher::Has(x) => x.eq_claim(v),
                Matcher::In(set) => set.iter().any(|x| x.eq_claim(v)),
                _ => false,
            },
            ClaimValue::List(items) => match self {
                Matcher::Is(_) => false,
                _ => items
                    .iter()
                    .any(|item| !matches!(item, ClaimValue::List(_)) && self.claim(item)),
            },
            ClaimValue::Null | ClaimValue::Map(_) => false,
        }
    }
}

fn email_domain(email: &str) -> Option<&str> {
    email.rsplit_once('@').map(|(_, d)| d)
}

/// Whether `recorded` (a recording's identity label) names `viewer`: their
/// email with ASCII case ignored, or exactly their subject name. An empty
/// label names nobody.
pub(crate) fn is_own(viewer: &Identity, recorded: &str) -> bool {
    !recorded.is_empty()
        && (viewer
            .email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(recorded))
            || viewer.name == recorded)
}

impl Leaf {
    fn matches(&self, r: &Facts<'_>) -> bool {
        let id = r.identity;
        match self {
            Leaf::Email(ms) => id
                .email
                .as_deref()
                .is_some_and(|e| ms.iter().all(|m| m.str(e, true))),
            Leaf::Domain(ms) => id
                .email
                .as_deref()
                .and_then(email_domain)
                .is_some_and(|d| ms.iter().all(|m| m.str(d, true))),
            Leaf::Login(ms) => ms.iter().all(|m| m.str(r.login, false)),
            Leaf::Groups(ms) => ms.iter().all(|m| m.list(&id.groups, false)),
            Leaf::Claim { path, matchers } => claims::lookup(&id.claims, path)
                .is_some_and(|v| matchers.iter().all(|m| m.claim(v))),
            Leaf::LoginMatches(LoginSource::EmailLocalPart) => id
                .email
                .as_deref()
                .and_then(|e| e.rsplit_once('@'))
                .is_some_and(|(local, _)| local == r.login),
            Leaf::LoginMatches(LoginSource::Claim(path)) => claims::lookup(&id.claims, path)
                .and_then(ClaimValue::as_str)
                .is_some_and(|v| v == r.login),
            Leaf::SourceIp(nets) => {
                let ip = unmap(r.source);
                nets.iter().any(|n| n.contains(&ip))
            }
            Leaf::TimeOfDay(w) => w.contains(r.now),
            Leaf::DayOfWeek(w) => w.contains(r.now),
            Leaf::Date(w) => w.contains(r.now),
            Leaf::IdentityKind(k) => id.kind == *k,
            Leaf::Route(ms) => r
                .recording
                .is_some_and(|rec| ms.iter().all(|m| m.str(rec.route, false))),
            Leaf::RecordedUser(ms) => r
                .recording
                .is_some_and(|rec| ms.iter().all(|m| m.str(rec.recorded_user, true))),
            Leaf::Own(want) => r
                .recording
                .is_some_and(|rec| is_own(id, rec.recorded_user) == *want),
            Leaf::Method(ms) => r
                .http
                .is_some_and(|h| ms.iter().all(|m| m.str(h.method, true))),
            Leaf::Path(ms) => r
                .http
                .is_some_and(|h| ms.iter().all(|m| m.str(h.path, false))),
            Leaf::Header { name, matchers } => r.http.is_some_and(|h| {
                h.values(name)
                    .any(|v| matchers.iter().all(|m| m.str(v, false)))
            }),
            Leaf::HeaderPresent { name, present } => r
                .http
                .is_some_and(|h| h.values(name).next().is_some() == *present),
        }
    }
}

impl Cond {
    /// Evaluates the condition. Returns whether it holds and the reason:
    /// for a match, what matched; for a miss, what was missing. `score`
    /// counts the leaves that held, so that a default denial can explain
    /// the allow rule that came closest.
    pub fn eval<'p>(&'p self, r: &Facts<'_>, score: &mut u32) -> (bool, &'p Arc<str>) {
        match &self.kind {
            CondKind::Leaf(leaf) => {
                if leaf.matches(r) {
                    *score += 1;
                    (true, &self.on_match)
                } else {
                    (false, &self.on_fail)
                }
            }
            CondKind::All(children) => {
                for c in children {
                    let (ok, why) = c.eval(r, score);
                    if !ok {
                        return (false, why);
                    }
                }
                (true, &self.on_match)
            }
            CondKind::Any(children) => {
                for c in children {
                    let (ok, why) = c.eval(r, score);
                    if ok {
                        return (true, why);
                    }
                }
                (false, &self.on_fail)
            }
            // The child's reason for holding is exactly why its negation
            // fails, and the other way round.
            CondKind::Not(child) => {
                let (ok, why) = child.eval(r, &mut 0);
                (!ok, why)
            }
        }
    }
}
