//! Table-driven tests of the recordings access policy.

use std::net::IpAddr;

use super::super::{ClaimValue, IdentityKind, Timestamp, parse_and_compile};
use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse()
        .unwrap_or_else(|e| panic!("bad timestamp {s} in test: {e}"))
}

use ViewerCapability::{Download, EndSession, List, Play, Search, WatchLive};

fn compiled(yaml: &str) -> CompiledAccessPolicy {
    parse_and_compile_access(yaml).unwrap_or_else(|errors| {
        panic!(
            "access policy did not compile:\n{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn viewer(email: &str, groups: &[&str]) -> Identity {
    Identity {
        email: Some(email.to_owned()),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        ..Identity::new(IdentityKind::User, format!("sub-{email}"))
    }
}

/// A Monday, 10:00 in Berlin.
const MONDAY_10_BERLIN: &str = "2026-03-30T08:00:00Z";

/// One question: `who` asks about a session `recorded_user` had on
/// `route` as `login`.
struct Ask<'a> {
    who: Identity,
    route: &'a str,
    login: &'a str,
    recorded_user: &'a str,
    from: &'a str,
    at: &'a str,
}

fn ask<'a>(who: Identity, recorded_user: &'a str) -> Ask<'a> {
    Ask {
        who,
        route: "staging",
        login: "deploy",
        recorded_user,
        from: "10.1.2.3",
        at: MONDAY_10_BERLIN,
    }
}

impl<'a> Ask<'a> {
    fn on(mut self, route: &'a str, login: &'a str) -> Self {
        self.route = route;
        self.login = login;
        self
    }
    fn from(mut self, from: &'a str) -> Self {
        self.from = from;
        self
    }
    fn at(mut self, at: &'a str) -> Self {
        self.at = at;
        self
    }
    fn decide<'p>(&self, policy: &'p CompiledAccessPolicy) -> AccessDecision<'p> {
        evaluate_access(
            policy,
            &AccessRequest {
                viewer: &self.who,
                source: self.from.parse::<IpAddr>().expect("ip in test"),
                now: ts(self.at),
                recording: RecordingFacts {
                    route: self.route,
                    login: self.login,
                    recorded_user: self.recorded_user,
                },
            },
        )
    }
}

/// The capabilities a decision allows, as names, for short expectations.
fn allowed(d: &AccessDecision<'_>) -> Vec<&'static str> {
    d.iter()
        .filter(|(_, c)| c.allowed)
        .map(|(c, _)| c.as_str())
        .collect()
}

/// The capabilities a decision allows only with a reason.
fn with_reason(d: &AccessDecision<'_>) -> Vec<&'static str> {
    d.iter()
        .filter(|(_, c)| c.require_reason)
        .map(|(c, _)| c.as_str())
        .collect()
}

/// The README's example.
const EXAMPLE: &str = r#"
rules:
  - allow: own-sessions
    when: { own: true }
    capabilities: [list, play]
  - allow: break-glass
    when: { groups: sre }
    capabilities: all
    obligations: { require_reason: true }
  - allow: auditors
    when: { groups: auditors }
    capabilities: [list, play, search, download, watch_live]
  - deny: no-prod-db-for-contractors
    when: { all: [ { groups: contractors }, { route: prod-db } ] }
"#;

#[test]
fn capability_names_round_trip() {
    for c in ViewerCapability::ALL {
        assert_eq!(ViewerCapability::parse(c.as_str()), Some(c));
        assert_eq!(c.to_string(), c.as_str());
    }
    assert_eq!(ViewerCapability::parse("watch-live"), None);
    assert_eq!(ViewerCapability::parse("all"), None);
}

#[test]
fn no_rules_deny_everything() {
    for policy in [CompiledAccessPolicy::default(), compiled("rules: []")] {
        let d = ask(viewer("alice@example.com", &["sre"]), "alice@example.com").decide(&policy);
        for (c, cd) in d.iter() {
            assert!(!cd.allowed, "{c}");
            assert_eq!(cd.rule, None, "{c}");
            assert_eq!(cd.reason, format!("no rule in web.access grants {c}"));
        }
        assert_eq!(policy.rule_count(), 0);
    }
}

#[test]
fn own_sessions_one_short_rule() {
    let policy =
        compiled("rules: [{allow: own-sessions, when: {own: true}, capabilities: [list, play]}]");
    let alice = || viewer("alice@example.com", &[]);
    // (case, viewer, recorded identity, allowed, reason for `list`)
    #[rustfmt::skip]
    let cases: Vec<(&str, Identity, &str, &[&str], &str)> = vec![
        ("her own session", alice(), "alice@example.com", &["list", "play"], "the viewer's own session"),
        ("email case is ignored", alice(), "Alice@EXAMPLE.com", &["list", "play"], "the viewer's own session"),
        ("by her subject name", alice(), "sub-alice@example.com", &["list", "play"], "the viewer's own session"),
        ("subject names keep their case", alice(), "SUB-alice@example.com", &[], "requires the viewer's own session"),
        ("someone else's", alice(), "bob@example.com", &[], "requires the viewer's own session"),
        ("an empty label is nobody's", Identity::new(IdentityKind::User, ""), "", &[], "requires the viewer's own session"),
        ("a viewer without email, by name", Identity::new(IdentityKind::Service, "ci"), "ci", &["list", "play"], "the viewer's own session"),
    ];
    for (name, who, recorded, want, reason) in cases {
        let d = ask(who, recorded).decide(&policy);
        assert_eq!(allowed(&d), want, "{name}");
        assert_eq!(d.reason(List), reason, "{name}");
        let expected_rule = (!want.is_empty()).then_some("own-sessions");
        assert_eq!(d.rule(Play), expected_rule, "{name}");
        // Nothing grants search: the reason says so, not the own rule's.
        assert!(!d.allows(Search), "{name}");
        assert_eq!(d.reason(Search), "no rule in web.access grants search");
        assert!(with_reason(&d).is_empty(), "{name}");
    }
}

#[test]
fn grants_add_up_and_deny_rules_remove_them() {
    let policy = compiled(EXAMPLE);
    // (case, viewer, recorded, route, allowed, rule deciding `list`)
    type Case<'a> = (
        &'a str,
        Identity,
        &'a str,
        &'a str,
        &'a [&'a str],
        Option<&'a str>,
    );
    #[rustfmt::skip]
    let cases: Vec<Case<'_>> = vec![
        ("own only", viewer("u@example.com", &[]), "u@example.com", "staging",
         &["list", "play"], Some("own-sessions")),
        ("auditor on someone else's", viewer("a@example.com", &["auditors"]), "u@example.com", "staging",
         &["list", "play", "search", "download", "watch_live"], Some("auditors")),
        ("auditor on their own: the first granting rule is named", viewer("a@example.com", &["auditors"]), "a@example.com", "staging",
         &["list", "play", "search", "download", "watch_live"], Some("own-sessions")),
        ("a contractor auditor on prod-db: denied everything", viewer("c@example.com", &["auditors", "contractors"]), "u@example.com", "prod-db",
         &[], Some("no-prod-db-for-contractors")),
        ("even their own session on prod-db", viewer("c@example.com", &["contractors"]), "c@example.com", "prod-db",
         &[], Some("no-prod-db-for-contractors")),
        ("a contractor elsewhere is not denied", viewer("c@example.com", &["auditors", "contractors"]), "u@example.com", "staging",
         &["list", "play", "search", "download", "watch_live"], Some("auditors")),
        ("a stranger", viewer("s@example.com", &["dev"]), "u@example.com", "staging",
         &[], None),
    ];
    for (name, who, recorded, route, want, rule) in cases {
        let d = ask(who, recorded).on(route, "postgres").decide(&policy);
        assert_eq!(allowed(&d), want, "{name}");
        assert_eq!(d.rule(List), rule, "{name}");
    }

    // A deny rule that lists capabilities removes only those.
    let policy = compiled(
        r#"
rules:
  - allow: auditors
    when: { groups: auditors }
    capabilities: all
  - deny: no-downloads-from-home
    reason: downloads only from the office network
    when: { not: { source_ip: 10.0.0.0/8 } }
    capabilities: [download, end_session]
"#,
    );
    let auditor = || viewer("a@example.com", &["auditors"]);
    let d = ask(auditor(), "u@example.com").decide(&policy);
    assert_eq!(allowed(&d).len(), 6);
    let d = ask(auditor(), "u@example.com")
        .from("203.0.113.9")
        .decide(&policy);
    assert_eq!(allowed(&d), ["list", "play", "search", "watch_live"]);
    assert_eq!(d.rule(Download), Some("no-downloads-from-home"));
    assert_eq!(d.reason(Download), "downloads only from the office network");
    assert_eq!(d.rule(EndSession), Some("no-downloads-from-home"));
    assert_eq!(d.rule(Play), Some("auditors"));
    // The deny rule decides even where no allow rule granted anything.
    let d = ask(viewer("s@example.com", &[]), "u@example.com")
        .from("203.0.113.9")
        .decide(&policy);
    assert_eq!(d.rule(Download), Some("no-downloads-from-home"));
    assert_eq!(d.rule(Play), None);
}

#[test]
fn require_reason_holds_only_when_every_granting_rule_requires_one() {
    let policy = compiled(EXAMPLE);
    // (case, groups, recorded, with a reason, rule deciding `play`, rule deciding `end_session`)
    type Case<'a> = (
        &'a str,
        &'a [&'a str],
        &'a str,
        &'a [&'a str],
        &'a str,
        Option<&'a str>,
    );
    #[rustfmt::skip]
    let cases: Vec<Case<'_>> = vec![
        ("sre only: break-glass for everything", &["sre"], "u@example.com",
         &["list", "play", "search", "download", "watch_live", "end_session"], "break-glass", Some("break-glass")),
        ("sre and auditor: the least demanding path wins", &["sre", "auditors"], "u@example.com",
         &["end_session"], "auditors", Some("break-glass")),
        ("sre on their own session: own-sessions needs no reason", &["sre"], "v@example.com",
         &["search", "download", "watch_live", "end_session"], "own-sessions", Some("break-glass")),
    ];
    for (name, groups, recorded, want, play_rule, end_rule) in cases {
        let d = ask(viewer("v@example.com", groups), recorded).decide(&policy);
        assert_eq!(allowed(&d).len(), 6, "{name}");
        assert_eq!(with_reason(&d), want, "{name}");
        assert_eq!(d.rule(Play), Some(play_rule), "{name}");
        assert_eq!(d.rule(EndSession), end_rule, "{name}");
        assert_eq!(
            d.requires_reason(EndSession),
            d.get(EndSession).require_reason
        );
    }
    // A denied capability never requires a reason.
    let d = ask(
        viewer("c@example.com", &["sre", "contractors"]),
        "u@example.com",
    )
    .on("prod-db", "postgres")
    .decide(&policy);
    assert!(allowed(&d).is_empty());
    assert!(with_reason(&d).is_empty());
}

#[test]
fn recording_criteria_and_viewer_criteria() {
    let policy = compiled(
        r#"
rules:
  - allow: prod
    when: { route: { starts_with: prod- } }
    capabilities: [list]
  - allow: listed-routes
    when: { route: [staging, dev] }
    capabilities: [play]
  - allow: postgres-logins
    when: { login: postgres }
    capabilities: [search]
  - allow: bots
    when: { recorded_user: { ends_with: "@BOTS.example.com" } }
    capabilities: [download]
  - allow: office-hours
    when:
      all:
        - { domain: example.com }
        - { source_ip: [10.0.0.0/8] }
        - { time_of_day: { from: "09:00", to: "18:00", timezone: Europe/Berlin } }
    capabilities: [watch_live]
  - allow: not-own
    when: { own: false, claim.level: 3 }
    capabilities: [end_session]
"#,
    );
    let mut alice = viewer("alice@example.com", &[]);
    alice
        .claims
        .insert("level".to_owned(), ClaimValue::Number(3.0));
    let who = || alice.clone();
    // (case, question, allowed)
    #[rustfmt::skip]
    let cases: Vec<(&str, Ask<'_>, &[&str])> = vec![
        ("route prefix and login", ask(who(), "alice@example.com").on("prod-db", "postgres"),
         &["list", "search", "watch_live"]),
        ("route list; someone else's", ask(who(), "bob@example.com").on("dev", "app"),
         &["play", "watch_live", "end_session"]),
        ("route names are case-sensitive", ask(who(), "alice@example.com").on("PROD-db", "app"),
         &["watch_live"]),
        ("recorded user, case ignored", ask(who(), "deploy@bots.EXAMPLE.com").on("x", "y"),
         &["download", "watch_live", "end_session"]),
        ("outside the office network", ask(who(), "alice@example.com").on("x", "y").from("192.0.2.1"),
         &[]),
        ("after hours", ask(who(), "alice@example.com").on("x", "y").at("2026-03-30T17:00:00Z"),
         &[]),
    ];
    for (name, question, want) in cases {
        let d = question.decide(&policy);
        assert_eq!(allowed(&d), want, "{name}");
    }

    // Denials explain the closest allow rule that grants the capability.
    let d = ask(who(), "alice@example.com")
        .on("x", "y")
        .at("2026-03-30T17:00:00Z")
        .decide(&policy);
    assert_eq!(d.reason(WatchLive), "outside 09:00–18:00 Europe/Berlin");
    assert_eq!(d.reason(List), "requires route starting with prod-");
    assert_eq!(d.reason(Play), "requires route one of staging, dev");
    assert_eq!(d.reason(Search), "requires login postgres");
    assert_eq!(
        d.reason(Download),
        "requires recorded user ending with @BOTS.example.com"
    );
    assert_eq!(d.reason(EndSession), "requires someone else's session");
    assert_eq!(d.rule(WatchLive), None);

    // next_check: the time windows' edges.
    assert_eq!(
        policy.next_check(ts(MONDAY_10_BERLIN)),
        Some(ts("2026-03-30T16:00:00Z"))
    );
    assert_eq!(compiled(EXAMPLE).next_check(ts(MONDAY_10_BERLIN)), None);
}

#[test]
fn the_closest_allow_rule_explains_a_denial() {
    let policy = compiled(
        r#"
rules:
  - allow: auditors
    when: { groups: auditors }
    capabilities: [list, play]
  - allow: sre-on-prod
    when: { all: [ { route: prod-db }, { groups: sre } ] }
    capabilities: [play, end_session]
  - allow: with-a-reason
    reason: every viewer may list during the audit
    when: { date: { before: "2026-04-01T00:00:00Z" } }
    capabilities: [list]
"#,
    );
    let d = ask(viewer("v@example.com", &["dev"]), "u@example.com")
        .on("prod-db", "postgres")
        .decide(&policy);
    // sre-on-prod held one condition (the route) before it failed.
    assert_eq!(d.reason(Play), "requires group sre");
    assert_eq!(d.reason(EndSession), "requires group sre");
    assert!(d.allows(List));
    assert_eq!(d.rule(List), Some("with-a-reason"));
    assert_eq!(d.reason(List), "every viewer may list during the audit");
}

// -------------------------------------------------------------------------
// Compile errors
// -------------------------------------------------------------------------

fn errors(yaml: &str) -> Vec<String> {
    match parse_and_compile_access(yaml) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn compile_errors_point_at_line_and_column() {
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, &str)> = vec![
        ("unknown capability",
         "rules:\n  - allow: a\n    when: { all: [] }\n    capabilities: [list, replay]\n",
         "4:26: unknown capability `replay`; capabilities are: list, play, search, download, watch_live, end_session (or `all`)"),
        ("route capabilities are not viewer capabilities",
         "rules:\n  - allow: a\n    when: { all: [] }\n    capabilities: { sftp: true }\n",
         "4:19: `capabilities` in web.access is a list of list, play"),
        ("a bare name",
         "rules:\n  - allow: a\n    when: { all: [] }\n    capabilities: play\n",
         "4:19: `capabilities` is a list: write `[play]`, or `all`"),
        ("all in a list",
         "rules:\n  - allow: a\n    when: { all: [] }\n    capabilities: [list, all]\n",
         "4:26: `all` stands alone"),
        ("listed twice",
         "rules:\n  - allow: a\n    when: { all: [] }\n    capabilities: [play, play]\n",
         "4:26: `play` is listed twice"),
        ("an empty grant",
         "rules:\n  - allow: a\n    when: { all: [] }\n    capabilities: []\n",
         "4:19: an empty list grants nothing"),
        ("an empty removal",
         "rules:\n  - deny: a\n    when: { all: [] }\n    capabilities: []\n",
         "4:19: an empty list removes nothing"),
        ("an allow rule without capabilities",
         "rules:\n  - allow: a\n    when: { all: [] }\n",
         "2:12: allow rule `a` needs `capabilities:`"),
        ("obligations on a deny rule",
         "rules:\n  - deny: a\n    when: { all: [] }\n    obligations: { require_reason: true }\n",
         "4:18: a deny rule grants nothing, so it has no obligations"),
        ("unknown obligation (deny_unknown_fields)",
         "rules:\n  - allow: a\n    when: { all: [] }\n    capabilities: all\n    obligations: { record: strict }\n",
         "5:20: unknown field `record`"),
        ("unknown key in a rule (deny_unknown_fields)",
         "rules:\n  - allow: a\n    whne: { all: [] }\n",
         "3:5: unknown field `whne`"),
        ("restrict rules are route-only",
         "rules:\n  - restrict: a\n    when: { all: [] }\n",
         "2:5: unknown field `restrict`"),
        ("a rule without a kind",
         "rules:\n  - when: { all: [] }\n    capabilities: all\n",
         "2:5: an access rule needs `allow: NAME` or `deny: NAME`"),
        ("a rule with two kinds",
         "rules:\n  - allow: a\n    deny: b\n    when: { all: [] }\n",
         "3:11: a rule has exactly one of `allow` or `deny`"),
        ("a rule without when",
         "rules:\n  - allow: a\n    capabilities: all\n",
         "2:12: rule `a` needs a `when:` condition"),
        ("duplicate rule name",
         "rules:\n  - allow: a\n    when: { all: [] }\n    capabilities: all\n  - deny: a\n    when: { all: [] }\n",
         "5:5: rule `a` is named twice in web.access"),
        ("login_matches means nothing here",
         "rules:\n  - allow: a\n    when: { login_matches: email_local_part }\n    capabilities: all\n",
         "3:13: `login_matches` compares a requested login with the identity"),
        ("unknown criterion lists the access criteria",
         "rules:\n  - allow: a\n    when: { recorded_identity: x }\n    capabilities: all\n",
         "3:13: unknown criterion `recorded_identity` (did you mean `recorded_user`?); criteria are: all, any, not, email, domain, groups, claim.<name>, source_ip, time_of_day, day_of_week, date, identity_kind, route, login, recorded_user, own"),
        ("own takes a boolean",
         "rules:\n  - allow: a\n    when: { own: \"yes\" }\n    capabilities: all\n",
         "3:18: `own` takes true or false, found a string"),
        ("has on a route",
         "rules:\n  - allow: a\n    when: { route: { has: prod } }\n    capabilities: all\n",
         "3:22: `has` tests a list, and route is a single value: use `is`"),
        ("nested conditions are checked as in routes",
         "rules:\n  - allow: a\n    when: { any: [ { route: prod }, { time_of_day: { from: \"09:00\", to: \"17:00\" } } ] }\n    capabilities: all\n",
         "3:52: `time_of_day` needs a `timezone:`"),
    ];
    let mut failed = Vec::new();
    for (name, yaml, want) in &cases {
        let got = errors(yaml);
        if !got.iter().any(|e| e.starts_with(want)) {
            failed.push(format!("{name}: want `{want}…`, got {got:?}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} cases failed:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let got = errors(
        r#"
rules:
  - allow: a
    when: { own: maybe }
    capabilities: [list, lsit]
  - allow: b
    capabilities: all
  - deny: c
    when: { route: { matches: x } }
"#,
    );
    let positions: Vec<&str> = got.iter().filter_map(|e| e.split(": ").next()).collect();
    assert_eq!(positions, ["4:18", "5:26", "6:12", "9:22"], "{got:#?}");
}

#[test]
fn recording_criteria_are_refused_in_route_policies() {
    #[rustfmt::skip]
    let cases: Vec<(&str, &str)> = vec![
        ("routes:\n  r:\n    rules:\n      - allow: a\n        when: { route: prod }\n",
         "5:17: `route` is about a recorded session: it only applies in `web.access` rules, not in a route's policy"),
        ("routes:\n  r:\n    rules:\n      - allow: a\n        when: { all: [ { groups: sre }, { own: true } ] }\n",
         "5:43: `own` is about a recorded session"),
        ("policies:\n  p:\n    rules:\n      - deny: a\n        when: { not: { recorded_user: x } }\n",
         "5:24: `recorded_user` is about a recorded session"),
    ];
    for (yaml, want) in cases {
        let got = match parse_and_compile(yaml) {
            Ok(_) => panic!("expected errors for:\n{yaml}"),
            Err(errors) => errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        };
        assert!(
            got.iter().any(|e| e.starts_with(want)),
            "want `{want}…`, got {got:?}"
        );
    }
}

#[test]
fn the_raw_type_embeds_in_a_larger_document() {
    #[derive(serde::Deserialize)]
    struct Web {
        #[allow(dead_code)]
        listen: String,
        #[serde(default)]
        access: Option<raw::AccessPolicy>,
    }
    let web: Web = serde_saphyr::from_str(
        "listen: 127.0.0.1:8443\naccess:\n  rules:\n    - allow: a\n      when: { own: true }\n      capabilities: [lsit]\n",
    )
    .expect("parses");
    let errors = compile_access(&web.access.expect("access")).expect_err("a bad capability");
    assert_eq!(errors.len(), 1);
    // Positions are those of the whole document.
    assert_eq!((errors[0].line, errors[0].column), (6, 22));
}

// -------------------------------------------------------------------------
// Viewer cases in test tables (`gatehouse policy test`)
// -------------------------------------------------------------------------

#[test]
fn test_tables_take_viewer_cases() {
    use super::super::testing;
    let access = compiled(EXAMPLE);
    let routes =
        parse_and_compile("routes:\n  r: { rules: [ { allow: a, when: { all: [] } } ] }\n")
            .expect("route policy");
    let table = testing::parse(
        r#"
defaults: { at: "2026-03-30T10:00:00Z", route: prod-db, login: postgres }
cases:
  - name: a route case still works
    route: r
    expect: allow
  - name: own session, play by default
    viewer: bob@example.com
    recorded_user: Bob@Example.com
    expect: allow
    rule: own-sessions
    capabilities: { list: true, download: false }
  - name: auditor and sre need a reason only to end a session
    viewer: carol@example.com
    groups: [auditors, sre]
    recorded_user: bob@example.com
    capability: end_session
    expect: allow
    require_reason: true
  - name: wrong on purpose
    viewer: dan@example.com
    groups: [contractors, auditors]
    recorded_user: bob@example.com
    capability: download
    expect: allow
    require_reason: true
    capabilities: { list: true }
"#,
    )
    .expect("table parses");
    let report = table.run_with_access(&routes, Some(&access));
    assert_eq!(report.total, 4);
    assert_eq!(report.failures.len(), 1, "{report}");
    let failure = report.failures[0].to_string();
    assert!(
        failure.starts_with("20:5: wrong on purpose: expected download allowed, got denied (`no-prod-db-for-contractors`: member of group contractors and route prod-db); expected download to need a reason; expected list to be granted"),
        "{failure}"
    );
    // Without a web section, viewer cases cannot pass.
    let report = table.run(&routes);
    assert_eq!(report.failures.len(), 3, "{report}");
    assert!(
        report.failures[0].problems[0].contains("no web section"),
        "{report}"
    );

    let errors = testing::parse(
        r#"
cases:
  - { route: r, login: x, at: "2026-03-30T10:00:00Z", expect: allow, recorded_user: bob }
  - { viewer: v@example.com, route: r, login: x, at: "2026-03-30T10:00:00Z", expect: allow, capability: replay }
  - { viewer: v@example.com, route: r, login: x, at: "2026-03-30T10:00:00Z", expect: allow, capabilities: { sftp: true } }
"#,
    )
    .expect_err("bad cases");
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(got.len(), 5, "{got:#?}");
    let want = [
        "3:5: `recorded_user` is for cases of the web access policy",
        "4:105: unknown capability `replay`; expected one of list, play",
        "4:5: this case needs `recorded_user:`",
        "5:109: unknown capability `sftp`; expected one of list, play",
        "5:5: this case needs `recorded_user:`",
    ];
    for w in want {
        assert!(got.iter().any(|g| g.starts_with(w)), "{w}: {got:#?}");
    }
}
