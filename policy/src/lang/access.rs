//! The recordings access policy: what a signed-in viewer may do with a
//! recorded session in the web app (`web.access` in the configuration).
//!
//! It is written in the route language: the same rules, conditions,
//! criteria and matchers, compiled by the same compiler, with its own
//! capabilities and one obligation.
//!
//! ```yaml
//! web:
//!   access:
//!     rules:
//!       - allow: own-sessions          # users may list and play their own sessions
//!         when: { own: true }
//!         capabilities: [list, play]
//!       - allow: auditors
//!         when: { groups: auditors }
//!         capabilities: [list, play, search, download, watch_live]
//!       - allow: break-glass
//!         when: { groups: sre }
//!         capabilities: all
//!         obligations: { require_reason: true }
//!       - deny: no-prod-db-for-contractors
//!         when: { all: [ { groups: contractors }, { route: prod-db } ] }
//! ```
//!
//! # Capabilities and the obligation
//!
//! [`ViewerCapability`]: `list` (see the session in lists), `play`
//! (replay it), `search` (search its text), `download` (export it or take
//! an evidence bundle), `watch_live` (follow it while it is recorded) and
//! `end_session` (end it while it is live). A rule lists them, or says
//! `all`. The one obligation, `require_reason: true`, makes a viewer who
//! uses a capability granted *only* by such rules give a reason first
//! (break-glass); the web app puts it in the audit event.
//!
//! # Semantics
//!
//! - Anything that no rule allows is denied.
//! - Each capability is decided on its own. It is granted when some
//!   matching `allow` rule grants it and no matching `deny` rule removes
//!   it: grants from several rules add up.
//! - A `deny` rule removes the capabilities it lists, and every capability
//!   when it lists none. Where it stands does not matter.
//! - `require_reason` holds for a capability only when *every* matching
//!   allow rule that grants it requires a reason: the least demanding path
//!   wins, so an auditor who is also in `sre` plays without a reason.
//! - Each capability's answer names the deciding rule (the first matching
//!   allow rule that grants it without a reason, else the first that grants
//!   it; or the first matching deny rule that removes it) and a human
//!   reason. A capability no rule grants is explained by the allow rule
//!   granting it that came closest, as [`evaluate`](super::evaluate) does
//!   for routes: `requires group auditors`.
//!
//! # Criteria
//!
//! Every criterion of the route language applies to the viewer (`email`,
//! `domain`, `groups`, `claim.<path>`, `identity_kind`, the viewer's
//! `source_ip`, and `time_of_day`, `day_of_week` and `date`), and three
//! more to the recording:
//!
//! - `route`: the recording's route name, with the string matchers (`is`,
//!   `in`, `starts_with`, `ends_with`, `contains`);
//! - `recorded_user`: the identity recorded (usually an email), ASCII case
//!   ignored;
//! - `own: true|false`: whether the recorded identity is the viewer (their
//!   email, case ignored, or their subject name).
//!
//! `login` is the recording's login on the target. `login_matches` compares
//! a requested login with the identity and means nothing here: it is a
//! compile error, as are the recording criteria in a route policy.
//!
//! **Invariant:** pure, like the rest of the crate: the time is an
//! argument, and [`evaluate_access`] allocates nothing.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use jiff::Timestamp;

use super::Identity;
use super::compile::{CompileError, Compiler, Dialect, Subject, leaf};
use super::condition::{Cond, Facts, Leaf};
use super::raw::{self, Location, Node, NodeValue, Spanned};
use super::time::Window;

/// Something a viewer may do with a recorded session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ViewerCapability {
    /// See the session in lists: who, route, login, when, status (`list`).
    List,
    /// Replay the recording (`play`).
    Play,
    /// Search the recording's text (`search`).
    Search,
    /// Export the recording or take an evidence bundle (`download`).
    Download,
    /// Follow the session while it is being recorded (`watch_live`).
    WatchLive,
    /// End the session while it is live (`end_session`).
    EndSession,
}

impl ViewerCapability {
    /// Every capability, in the order the web app and `policy check` show
    /// them.
    pub const ALL: [ViewerCapability; 6] = [
        ViewerCapability::List,
        ViewerCapability::Play,
        ViewerCapability::Search,
        ViewerCapability::Download,
        ViewerCapability::WatchLive,
        ViewerCapability::EndSession,
    ];

    /// The name written in policies: `list`, `play`, `search`, `download`,
    /// `watch_live`, `end_session`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ViewerCapability::List => "list",
            ViewerCapability::Play => "play",
            ViewerCapability::Search => "search",
            ViewerCapability::Download => "download",
            ViewerCapability::WatchLive => "watch_live",
            ViewerCapability::EndSession => "end_session",
        }
    }

    /// The capability a policy name stands for.
    pub fn parse(name: &str) -> Option<ViewerCapability> {
        ViewerCapability::ALL
            .into_iter()
            .find(|c| c.as_str() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// The reason a capability no rule grants is denied.
    fn ungranted(self) -> &'static str {
        match self {
            ViewerCapability::List => "no rule in web.access grants list",
            ViewerCapability::Play => "no rule in web.access grants play",
            ViewerCapability::Search => "no rule in web.access grants search",
            ViewerCapability::Download => "no rule in web.access grants download",
            ViewerCapability::WatchLive => "no rule in web.access grants watch_live",
            ViewerCapability::EndSession => "no rule in web.access grants end_session",
        }
    }
}

impl fmt::Display for ViewerCapability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const CAPABILITY_LIST: &str = "list, play, search, download, watch_live, end_session";

/// A set of capabilities, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct CapabilitySet(u8);

impl CapabilitySet {
    const ALL: CapabilitySet = CapabilitySet((1 << ViewerCapability::ALL.len()) - 1);

    fn contains(self, c: ViewerCapability) -> bool {
        self.0 & c.bit() != 0
    }
}

/// What the policy is told about a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordingFacts<'a> {
    /// The route the session used (the `route` criterion).
    pub route: &'a str,
    /// The login on the target (the `login` criterion).
    pub login: &'a str,
    /// The recorded identity's label, usually an email (the
    /// `recorded_user` and `own` criteria).
    pub recorded_user: &'a str,
}

/// One access question: what may this viewer, from this address, now, do
/// with this recording?
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    /// The signed-in viewer.
    pub viewer: &'a Identity,
    /// The viewer's address as the web app sees it (after trusted
    /// proxies), for `source_ip`.
    pub source: IpAddr,
    /// The time to decide at. Passed in, never read from a clock.
    pub now: Timestamp,
    /// The recording asked about.
    pub recording: RecordingFacts<'a>,
}

/// A compiled rule of the access policy.
#[derive(Debug)]
struct AccessRule {
    name: Arc<str>,
    /// The rule's `reason:` text.
    reason: Option<Arc<str>>,
    when: Cond,
    /// What an allow rule grants, or a deny rule removes.
    capabilities: CapabilitySet,
    /// `obligations: {require_reason: true}` (allow rules only).
    require_reason: bool,
}

/// The compiled `web.access` policy: what [`evaluate_access`] takes. The
/// default has no rules, so it denies everything.
#[derive(Debug, Default)]
pub struct CompiledAccessPolicy {
    allows: Vec<AccessRule>,
    denies: Vec<AccessRule>,
    /// Every time window in the rules, for [`Self::next_check`].
    windows: Vec<Window>,
}

impl CompiledAccessPolicy {
    /// How many rules the policy has (allow and deny).
    pub fn rule_count(&self) -> usize {
        self.allows.len() + self.denies.len()
    }

    /// The earliest instant after `now` at which an answer could change
    /// with time alone (the next edge of any time window in the rules), or
    /// `None` when no rule depends on time. For a viewer watching a live
    /// session: ask again then. Not part of [`evaluate_access`], which stays
    /// cheap enough to run for every row of a list.
    pub fn next_check(&self, now: Timestamp) -> Option<Timestamp> {
        self.windows.iter().filter_map(|w| w.next_change(now)).min()
    }
}

/// The answer for one capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapabilityDecision<'p> {
    /// Whether the viewer may use the capability.
    pub allowed: bool,
    /// Whether the viewer must give a reason first: every matching allow
    /// rule granting it requires one. Never true when not allowed.
    pub require_reason: bool,
    /// The deciding rule: the allow rule that grants it, or the deny rule
    /// that removes it; `None` when no allow rule granting it matched.
    pub rule: Option<&'p str>,
    /// A human reason, phrased to follow "allowed: " or "denied: ": the
    /// rule's `reason:` text, what matched, or for a capability no rule
    /// granted, what the closest allow rule was missing.
    pub reason: &'p str,
}

const NOT_DECIDED: CapabilityDecision<'static> = CapabilityDecision {
    allowed: false,
    require_reason: false,
    rule: None,
    reason: "not decided",
};

/// The answer to an [`AccessRequest`], capability by capability. It
/// borrows its rule names and reasons from the policy, so making one
/// allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessDecision<'p> {
    /// By [`ViewerCapability`] discriminant (the order of `ALL`).
    decisions: [CapabilityDecision<'p>; ViewerCapability::ALL.len()],
}

impl<'p> AccessDecision<'p> {
    /// The answer for one capability.
    pub fn get(&self, c: ViewerCapability) -> CapabilityDecision<'p> {
        self.decisions
            .get(c as usize)
            .copied()
            .unwrap_or(NOT_DECIDED)
    }

    /// Whether the viewer may use `c`.
    pub fn allows(&self, c: ViewerCapability) -> bool {
        self.get(c).allowed
    }

    /// Whether using `c` needs a reason from the viewer (break-glass).
    pub fn requires_reason(&self, c: ViewerCapability) -> bool {
        self.get(c).require_reason
    }

    /// The rule that decided `c`, when a rule did.
    pub fn rule(&self, c: ViewerCapability) -> Option<&'p str> {
        self.get(c).rule
    }

    /// Why `c` is allowed or denied.
    pub fn reason(&self, c: ViewerCapability) -> &'p str {
        self.get(c).reason
    }

    /// Every capability with its answer, in the order of
    /// [`ViewerCapability::ALL`].
    pub fn iter(&self) -> impl Iterator<Item = (ViewerCapability, CapabilityDecision<'p>)> + '_ {
        ViewerCapability::ALL.into_iter().zip(self.decisions)
    }
}

/// Decides what a viewer may do with one recording.
///
/// Each allow rule's condition is evaluated once and grants its
/// capabilities when it holds; then each matching deny rule removes its
/// own. See the [module documentation](self) for the semantics. Allocates
/// nothing: the web app may call it for every row of a long list.
pub fn evaluate_access<'p>(
    policy: &'p CompiledAccessPolicy,
    request: &AccessRequest<'_>,
) -> AccessDecision<'p> {
    let facts = Facts {
        identity: request.viewer,
        login: request.recording.login,
        source: request.source,
        now: request.now,
        recording: Some(request.recording),
        http: None,
    };
    let mut decisions = ViewerCapability::ALL.map(|c| CapabilityDecision {
        reason: c.ungranted(),
        ..NOT_DECIDED
    });
    // Per capability: the allow rule granting it that came closest, as
    // (leaves that held, what was missing).
    let mut closest: [Option<(u32, &'p str)>; ViewerCapability::ALL.len()] = Default::default();
    for rule in &policy.allows {
        let mut score = 0;
        let (hit, why) = rule.when.eval(&facts, &mut score);
        let granted = ViewerCapability::ALL.into_iter().zip(&mut decisions);
        for ((c, d), close) in granted.zip(&mut closest) {
            if !rule.capabilities.contains(c) {
                continue;
            }
            if hit {
                // The first granting rule decides, unless a later one
                // grants without the reason the earlier one requires.
                if !d.allowed || (d.require_reason && !rule.require_reason) {
                    *d = CapabilityDecision {
                        allowed: true,
                        require_reason: rule.require_reason,
                        rule: Some(&rule.name),
                        reason: rule.reason.as_deref().unwrap_or(why),
                    };
                }
            } else if close.is_none_or(|(best, _)| score > best) {
                *close = Some((score, why));
            }
        }
    }
    for (d, close) in decisions.iter_mut().zip(closest) {
        if !d.allowed
            && let Some((_, why)) = close
        {
            d.reason = why;
        }
    }
    let mut removed = CapabilitySet::default();
    for rule in &policy.denies {
        if rule.capabilities.0 & !removed.0 == 0 {
            continue;
        }
        let (hit, why) = rule.when.eval(&facts, &mut 0);
        if !hit {
            continue;
        }
        for (c, d) in ViewerCapability::ALL.into_iter().zip(&mut decisions) {
            if rule.capabilities.contains(c) && !removed.contains(c) {
                *d = CapabilityDecision {
                    allowed: false,
                    require_reason: false,
                    rule: Some(&rule.name),
                    reason: rule.reason.as_deref().unwrap_or(why),
                };
            }
        }
        removed.0 |= rule.capabilities.0;
    }
    AccessDecision { decisions }
}

/// Compiles `web.access`, or returns every problem found, in file order.
/// No rules (or no `access:` at all, [`CompiledAccessPolicy::default`])
/// denies everything.
pub fn compile_access(raw: &raw::AccessPolicy) -> Result<CompiledAccessPolicy, Vec<CompileError>> {
    let mut c = Compiler::new(Dialect::Access);
    let mut names = HashSet::new();
    let mut policy = CompiledAccessPolicy::default();
    for spanned in &raw.rules {
        let Some((rule, allow, windows)) = c.access_rule(spanned) else {
            continue;
        };
        if !names.insert(rule.name.clone()) {
            c.err(
                &spanned.referenced,
                format!(
                    "rule `{}` is named twice in web.access; give each rule its own name",
                    rule.name
                ),
            );
        }
        policy.windows.extend(windows);
        if allow {
            policy.allows.push(rule);
        } else {
            policy.denies.push(rule);
        }
    }
    c.finish().map(|()| policy)
}

/// Parses an access policy as written under `web.access` (a mapping with
/// `rules:`) and compiles it. For tests and tools; the configuration embeds
/// [`raw::AccessPolicy`] and calls [`compile_access`].
pub fn parse_and_compile_access(yaml: &str) -> Result<CompiledAccessPolicy, Vec<CompileError>> {
    let doc: raw::AccessPolicy =
        serde_saphyr::from_str(yaml).map_err(|e| vec![CompileError::from_yaml(&e)])?;
    compile_access(&doc)
}

impl Compiler {
    /// Whether a rule of `web.access` or of an HTTP route (`what`) allows,
    /// and its name: exactly one of `allow: NAME` and `deny: NAME`, with a
    /// name that is not empty.
    pub(super) fn allow_or_deny<'r>(
        &mut self,
        at: &Location,
        allow: &'r Option<Spanned<String>>,
        deny: &'r Option<Spanned<String>>,
        what: &str,
    ) -> Option<(bool, &'r Spanned<String>)> {
        let (allows, name) = match (allow, deny) {
            (Some(name), None) => (true, name),
            (None, Some(name)) => (false, name),
            (None, None) => {
                self.err(at, format!("{what} needs `allow: NAME` or `deny: NAME`"));
                return None;
            }
            (Some(_), Some(deny)) => {
                self.err(
                    &deny.referenced,
                    "a rule has exactly one of `allow` or `deny`; split it into two rules",
                );
                return None;
            }
        };
        if name.value.trim().is_empty() {
            self.err(&name.referenced, "a rule's name must not be empty");
        }
        Some((allows, name))
    }

    /// One rule of `web.access`, whether it allows, and its time windows.
    fn access_rule(
        &mut self,
        spanned: &Spanned<raw::AccessRule>,
    ) -> Option<(AccessRule, bool, Vec<Window>)> {
        let rule = &spanned.value;
        let (allow, name) = self.allow_or_deny(
            &spanned.referenced,
            &rule.allow,
            &rule.deny,
            "an access rule",
        )?;
        let capabilities = match &rule.capabilities {
            Some(node) => self.viewer_capabilities(node, allow),
            None if allow => {
                self.err(
                    &name.referenced,
                    format!(
                        "allow rule `{}` needs `capabilities:`: a list such as [list, play], or all",
                        name.value
                    ),
                );
                None
            }
            // A deny rule that lists nothing removes everything.
            None => Some(CapabilitySet::ALL),
        };
        let require_reason = match &rule.obligations {
            Some(o) if !allow => {
                self.err(
                    &o.referenced,
                    "a deny rule grants nothing, so it has no obligations",
                );
                false
            }
            Some(o) => o.value.require_reason.as_ref().is_some_and(|r| r.value),
            None => false,
        };
        let Some(when) = &rule.when else {
            self.err(
                &name.referenced,
                format!(
                    "rule `{}` needs a `when:` condition; to match every viewer write `when: {{all: []}}`",
                    name.value
                ),
            );
            return None;
        };
        let mut windows = Vec::new();
        let when = self.cond(when, &mut windows);
        let rule = AccessRule {
            name: name.value.as_str().into(),
            reason: rule.reason.as_ref().map(|r| r.value.as_str().into()),
            when: when?,
            capabilities: capabilities?,
            require_reason,
        };
        Some((rule, allow, windows))
    }

    /// `capabilities:` of an access rule: `all`, or a list of names.
    fn viewer_capabilities(&mut self, node: &Node, allow: bool) -> Option<CapabilitySet> {
        let items = match &node.value {
            NodeValue::Str(s) if s == "all" => return Some(CapabilitySet::ALL),
            NodeValue::Str(s) if ViewerCapability::parse(s).is_some() => {
                self.err(
                    &node.at,
                    format!("`capabilities` is a list: write `[{s}]`, or `all`"),
                );
                return None;
            }
            NodeValue::Seq(items) => items,
            other => {
                let found = match other {
                    NodeValue::Str(s) => format!("`{s}`"),
                    other => other.kind().to_owned(),
                };
                self.err(
                    &node.at,
                    format!(
                        "`capabilities` in web.access is a list of {CAPABILITY_LIST}, or `all`; found {found}"
                    ),
                );
                return None;
            }
        };
        if items.is_empty() {
            let message = if allow {
                "an empty list grants nothing; list capabilities such as [list, play]"
            } else {
                "an empty list removes nothing; leave `capabilities` out to remove every capability"
            };
            self.err(&node.at, message);
            return None;
        }
        let mut set = CapabilitySet::default();
        let mut ok = true;
        for item in items {
            match &item.value {
                NodeValue::Str(s) if s == "all" => {
                    self.err(&item.at, "`all` stands alone: write `capabilities: all`");
                    ok = false;
                }
                NodeValue::Str(s) => match ViewerCapability::parse(s) {
                    Some(c) if set.contains(c) => {
                        self.err(&item.at, format!("`{s}` is listed twice"));
                        ok = false;
                    }
                    Some(c) => set.0 |= c.bit(),
                    None => {
                        self.err(
                            &item.at,
                            format!(
                                "unknown capability `{s}`; capabilities are: {CAPABILITY_LIST} (or `all`)"
                            ),
                        );
                        ok = false;
                    }
                },
                other => {
                    self.err(
                        &item.at,
                        format!("expected a capability name, found {}", other.kind()),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(set)
    }

    /// `route`, `recorded_user` and `own`: criteria about a recording, so
    /// only the access policy has them.
    pub(super) fn recording_criterion(
        &mut self,
        name: &str,
        at: &Location,
        value: &Node,
    ) -> Option<Cond> {
        let elsewhere = match self.dialect {
            Dialect::Route => Some("a route's policy"),
            Dialect::Http => Some("an http_routes policy"),
            Dialect::Direct => Some("direct_access rules"),
            Dialect::Access => None,
        };
        if let Some(elsewhere) = elsewhere {
            self.err(
                at,
                format!(
                    "`{name}` is about a recorded session: it only applies in `web.access` rules, not in {elsewhere}"
                ),
            );
            return None;
        }
        match name {
            "route" => self.string_criterion(Subject::Route, "route", value),
            "recorded_user" => self.string_criterion(Subject::RecordedUser, "recorded user", value),
            _ => self.own(value),
        }
    }

    fn own(&mut self, value: &Node) -> Option<Cond> {
        let NodeValue::Bool(want) = value.value else {
            self.err(
                &value.at,
                format!("`own` takes true or false, found {}", value.value.kind()),
            );
            return None;
        };
        let what = if want {
            "the viewer's own session"
        } else {
            "someone else's session"
        };
        Some(leaf(
            Leaf::Own(want),
            what.to_owned(),
            format!("requires {what}"),
        ))
    }

    /// `login_matches` in `web.access`.
    pub(super) fn login_matches_in_access(&mut self, at: &Location) {
        self.err(
            at,
            "`login_matches` compares a requested login with the identity and means nothing in \
             `web.access`: use `login` (the recording's login) or `own`",
        );
    }
}

#[cfg(test)]
mod tests;
