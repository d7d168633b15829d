//! Table-driven tests of the HTTP route policy.

use std::net::IpAddr;

use super::super::{
    ClaimValue, IdentityKind, Timestamp, parse_and_compile, parse_and_compile_access,
};
use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse()
        .unwrap_or_else(|e| panic!("bad timestamp {s} in test: {e}"))
}

fn compiled(yaml: &str) -> CompiledHttpPolicy {
    parse_and_compile_http(yaml).unwrap_or_else(|errors| {
        panic!(
            "http policy did not compile:\n{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn user(email: &str, groups: &[&str]) -> Identity {
    Identity {
        email: Some(email.to_owned()),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        ..Identity::new(IdentityKind::User, format!("sub-{email}"))
    }
}

/// A Monday, 10:00 in Berlin.
const MONDAY_10_BERLIN: &str = "2026-03-30T08:00:00Z";

/// One request: `who` asks to `method` `path` with `headers`.
#[derive(Clone)]
struct Ask<'a> {
    who: Identity,
    method: &'a str,
    path: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    from: &'a str,
    at: &'a str,
}

fn ask<'a>(who: Identity, method: &'a str, path: &'a str) -> Ask<'a> {
    Ask {
        who,
        method,
        path,
        headers: Vec::new(),
        from: "10.1.2.3",
        at: MONDAY_10_BERLIN,
    }
}

impl<'a> Ask<'a> {
    fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value));
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
    fn decide<'p>(&self, policy: &'p CompiledHttpPolicy) -> HttpDecision<'p> {
        evaluate_http(
            policy,
            &HttpRequest {
                identity: &self.who,
                source: self.from.parse::<IpAddr>().expect("ip in test"),
                now: ts(self.at),
                method: self.method,
                path: self.path,
                headers: &self.headers,
            },
        )
    }
}

/// The example of the module documentation.
const EXAMPLE: &str = r#"
rules:
  - allow: sre
    when: { groups: sre }
  - allow: staff-read-only
    when: { all: [ { groups: staff }, { method: [GET, HEAD] } ] }
  - deny: no-admin-for-contractors
    when: { all: [ { groups: contractors }, { path: { starts_with: /admin/ } } ] }
  - allow: api-from-managed-devices
    when: { all: [ { path: { glob: "/api/**" } }, { header.x-device-trust: { is: managed } } ] }
  - allow: anyone-healthz
    reason: the health page is public to signed-in users
    when: { path: /healthz }
"#;

/// Whether a decision allows, the deciding rule and the reason, for short
/// expectations.
type Want<'a> = (bool, Option<&'a str>, &'a str);

fn got<'p>(d: HttpDecision<'p>) -> Want<'p> {
    (d.allowed, d.rule, d.reason)
}

#[test]
fn no_rules_deny_everything() {
    for policy in [CompiledHttpPolicy::default(), compiled("rules: []")] {
        let d = ask(user("alice@example.com", &["sre"]), "GET", "/").decide(&policy);
        assert_eq!(got(d), (false, None, "no rule allows this request"));
        assert_eq!(policy.rule_count(), 0);
        assert!(policy.header_names().is_empty());
        assert_eq!(policy.next_check(ts(MONDAY_10_BERLIN)), None);
    }
    // Deny rules alone allow nothing either.
    let policy = compiled("rules: [{deny: contractors, when: {groups: contractors}}]");
    let d = ask(user("a@example.com", &[]), "GET", "/").decide(&policy);
    assert_eq!(got(d), (false, None, "no rule allows this request"));
}

#[test]
fn the_example_policy() {
    let policy = compiled(EXAMPLE);
    assert_eq!(policy.rule_count(), 5);
    assert_eq!(policy.header_names(), [Box::from("x-device-trust")]);
    let sre = || user("s@example.com", &["sre"]);
    let staff = || user("t@example.com", &["staff"]);
    let contractor = || user("c@example.com", &["staff", "contractors"]);
    let nobody = || user("n@example.com", &[]);
    let api = "/api/v1/x";
    #[rustfmt::skip]
    let cases: Vec<(&str, Ask<'_>, Want<'_>)> = vec![
        ("sre may do anything", ask(sre(), "DELETE", "/admin/x"),
         (true, Some("sre"), "member of group sre")),
        ("staff may read", ask(staff(), "GET", "/reports"),
         (true, Some("staff-read-only"), "member of group staff and method one of GET, HEAD")),
        ("the method's case is ignored", ask(staff(), "head", "/reports"),
         (true, Some("staff-read-only"), "member of group staff and method one of GET, HEAD")),
        ("staff may not write: the closest allow rule explains", ask(staff(), "POST", "/reports"),
         (false, None, "requires method one of GET, HEAD")),
        ("contractors may not read /admin/", ask(contractor(), "GET", "/admin/users"),
         (false, Some("no-admin-for-contractors"), "member of group contractors and path starting with /admin/")),
        ("a deny wins over an earlier allow", ask(user("cs@example.com", &["sre", "contractors"]), "GET", "/admin/"),
         (false, Some("no-admin-for-contractors"), "member of group contractors and path starting with /admin/")),
        ("/admin itself is not under /admin/", ask(contractor(), "GET", "/admin"),
         (true, Some("staff-read-only"), "member of group staff and method one of GET, HEAD")),
        ("paths are case-sensitive", ask(contractor(), "GET", "/ADMIN/users"),
         (true, Some("staff-read-only"), "member of group staff and method one of GET, HEAD")),
        ("a rule's own reason", ask(nobody(), "GET", "/healthz"),
         (true, Some("anyone-healthz"), "the health page is public to signed-in users")),
        ("the API from a managed device", ask(nobody(), "POST", api).header("x-device-trust", "managed"),
         (true, Some("api-from-managed-devices"), "path matching /api/** and header x-device-trust managed")),
        ("header values are case-sensitive", ask(nobody(), "POST", api).header("x-device-trust", "Managed"),
         (false, None, "requires header x-device-trust managed")),
        ("a missing header matches no matcher", ask(nobody(), "POST", api),
         (false, None, "requires header x-device-trust managed")),
        ("any value of a repeated header", ask(nobody(), "POST", api).header("x-device-trust", "unmanaged").header("x-device-trust", "managed"),
         (true, Some("api-from-managed-devices"), "path matching /api/** and header x-device-trust managed")),
        ("header names' case is ignored", ask(nobody(), "POST", api).header("X-Device-Trust", "managed"),
         (true, Some("api-from-managed-devices"), "path matching /api/** and header x-device-trust managed")),
        ("another header does not count", ask(nobody(), "POST", api).header("x-device", "managed"),
         (false, None, "requires header x-device-trust managed")),
        ("outside the API the header does not help", ask(nobody(), "POST", "/apiv2/x").header("x-device-trust", "managed"),
         (false, None, "requires group sre")),
        ("nothing matches: the first allow rule explains", ask(nobody(), "GET", "/"),
         (false, None, "requires group sre")),
    ];
    let mut failed = Vec::new();
    for (name, question, want) in &cases {
        let d = got(question.decide(&policy));
        if d != *want {
            failed.push(format!("{name}: want {want:?}, got {d:?}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// A policy of one allow rule, `r`, with the condition `when`.
fn one_rule(when: &str) -> CompiledHttpPolicy {
    compiled(&format!("rules:\n  - allow: r\n    when: {when}\n"))
}

#[test]
fn every_criterion_allows_and_denies() {
    let mut alice = user("alice@example.com", &["sre", "staff"]);
    alice
        .claims
        .insert("level".to_owned(), ClaimValue::Number(3.0));
    let alice = || alice.clone();
    let service = || Identity::new(IdentityKind::Service, "ci");
    // (when, question, allowed, reason)
    #[rustfmt::skip]
    let cases: Vec<(&str, Ask<'_>, bool, &str)> = vec![
        // The identity and the context, as in route policies.
        ("{ email: Alice@Example.com }", ask(alice(), "GET", "/"), true, "email Alice@Example.com"),
        ("{ email: bob@example.com }", ask(alice(), "GET", "/"), false, "requires email bob@example.com"),
        ("{ domain: example.com }", ask(alice(), "GET", "/"), true, "email domain example.com"),
        ("{ domain: [example.org] }", ask(alice(), "GET", "/"), false, "requires email domain one of example.org"),
        ("{ groups: [dev, staff] }", ask(alice(), "GET", "/"), true, "member of one of the groups dev, staff"),
        ("{ groups: dev }", ask(alice(), "GET", "/"), false, "requires group dev"),
        ("{ claim.level: 3 }", ask(alice(), "GET", "/"), true, "claim level with 3"),
        ("{ claim.level: 4 }", ask(alice(), "GET", "/"), false, "requires claim level with 4"),
        ("{ identity_kind: service }", ask(service(), "GET", "/"), true, "a service identity"),
        ("{ identity_kind: service }", ask(alice(), "GET", "/"), false, "requires a service identity"),
        ("{ source_ip: 10.0.0.0/8 }", ask(alice(), "GET", "/"), true, "source address in 10.0.0.0/8"),
        ("{ source_ip: 10.0.0.0/8 }", ask(alice(), "GET", "/").from("192.0.2.1"), false, "requires a source address in 10.0.0.0/8"),
        ("{ time_of_day: { from: \"09:00\", to: \"18:00\", timezone: Europe/Berlin } }", ask(alice(), "GET", "/"), true, "inside 09:00–18:00 Europe/Berlin"),
        ("{ time_of_day: { from: \"09:00\", to: \"18:00\", timezone: Europe/Berlin } }", ask(alice(), "GET", "/").at("2026-03-30T17:00:00Z"), false, "outside 09:00–18:00 Europe/Berlin"),
        ("{ day_of_week: { days: [mon-fri], timezone: UTC } }", ask(alice(), "GET", "/"), true, "on mon-fri UTC"),
        ("{ day_of_week: { days: [sat, sun], timezone: UTC } }", ask(alice(), "GET", "/"), false, "outside sat, sun UTC"),
        ("{ date: { before: \"2026-04-01T00:00:00Z\" } }", ask(alice(), "GET", "/"), true, "before 2026-04-01T00:00:00Z"),
        ("{ date: { after: \"2026-04-01T00:00:00Z\" } }", ask(alice(), "GET", "/"), false, "only from 2026-04-01T00:00:00Z"),
        ("{ all: [ { groups: sre }, { method: POST } ] }", ask(alice(), "POST", "/"), true, "member of group sre and method POST"),
        ("{ any: [ { groups: dev }, { path: /x } ] }", ask(alice(), "GET", "/x"), true, "path /x"),
        ("{ not: { path: /x } }", ask(alice(), "GET", "/x"), false, "path /x"),
        ("{ not: { path: /x } }", ask(alice(), "GET", "/y"), true, "requires path /x"),
        // method: bare, list, is, in; written in any case, shown upper-case.
        ("{ method: get }", ask(alice(), "GET", "/"), true, "method GET"),
        ("{ method: GET }", ask(alice(), "get", "/"), true, "method GET"),
        ("{ method: GET }", ask(alice(), "POST", "/"), false, "requires method GET"),
        ("{ method: { is: Delete } }", ask(alice(), "DELETE", "/"), true, "method DELETE"),
        ("{ method: { in: [put, patch] } }", ask(alice(), "PATCH", "/"), true, "method one of PUT, PATCH"),
        ("{ method: { in: [put, patch] } }", ask(alice(), "POST", "/"), false, "requires method one of PUT, PATCH"),
        ("{ method: [PROPFIND] }", ask(alice(), "propfind", "/"), true, "method one of PROPFIND"),
        // path: every string matcher, case-sensitive.
        ("{ path: /healthz }", ask(alice(), "GET", "/healthz"), true, "path /healthz"),
        ("{ path: /healthz }", ask(alice(), "GET", "/healthz/"), false, "requires path /healthz"),
        ("{ path: /healthz }", ask(alice(), "GET", "/HEALTHZ"), false, "requires path /healthz"),
        ("{ path: [/a, /b] }", ask(alice(), "GET", "/b"), true, "path one of /a, /b"),
        ("{ path: { in: [/a, /b] } }", ask(alice(), "GET", "/c"), false, "requires path one of /a, /b"),
        ("{ path: { starts_with: /static/ } }", ask(alice(), "GET", "/static/app.js"), true, "path starting with /static/"),
        ("{ path: { ends_with: .js } }", ask(alice(), "GET", "/static/app.js"), true, "path ending with .js"),
        ("{ path: { ends_with: .js } }", ask(alice(), "GET", "/static/app.JS"), false, "requires path ending with .js"),
        ("{ path: { contains: /edit } }", ask(alice(), "GET", "/u/1/edit"), true, "path containing /edit"),
        ("{ path: { starts_with: /u/, ends_with: /edit } }", ask(alice(), "GET", "/u/1/edit"), true, "path starting with /u/ and path ending with /edit"),
        ("{ path: { starts_with: /u/, ends_with: /edit } }", ask(alice(), "GET", "/u/1/view"), false, "requires path starting with /u/ and path ending with /edit"),
        // header: the string matchers, on any value; present.
        ("{ header.x-team: payments }", ask(alice(), "GET", "/").header("x-team", "payments"), true, "header x-team payments"),
        ("{ header.X-Team: [a, b] }", ask(alice(), "GET", "/").header("x-team", "b"), true, "header x-team one of a, b"),
        ("{ header.x-team: { starts_with: pay } }", ask(alice(), "GET", "/").header("x-team", "Payments"), false, "requires header x-team starting with pay"),
        ("{ header.x-team: { ends_with: ments } }", ask(alice(), "GET", "/").header("x-team", "payments"), true, "header x-team ending with ments"),
        ("{ header.x-team: { contains: ay } }", ask(alice(), "GET", "/").header("x-team", "payments"), true, "header x-team containing ay"),
        // Every matcher must hold for one and the same value.
        ("{ header.x-team: { starts_with: a, ends_with: z } }", ask(alice(), "GET", "/").header("x-team", "ab").header("x-team", "yz"), false, "requires header x-team starting with a and header x-team ending with z"),
        ("{ header.x-team: { starts_with: a, ends_with: z } }", ask(alice(), "GET", "/").header("x-team", "ab").header("x-team", "abz"), true, "header x-team starting with a and header x-team ending with z"),
        ("{ header.x-team: { present: true } }", ask(alice(), "GET", "/").header("x-team", ""), true, "header x-team present"),
        ("{ header.x-team: { present: true } }", ask(alice(), "GET", "/").header("x-other", "a"), false, "requires header x-team"),
        ("{ header.x-team: { present: false } }", ask(alice(), "GET", "/"), true, "no header x-team"),
        ("{ header.x-team: { present: false } }", ask(alice(), "GET", "/").header("x-team", "a"), false, "requires no header x-team"),
        // A missing header matches no matcher, so its negation holds.
        ("{ not: { header.x-team: payments } }", ask(alice(), "GET", "/"), true, "requires header x-team payments"),
    ];
    let mut failed = Vec::new();
    for (when, question, allowed, reason) in &cases {
        let policy = one_rule(when);
        let d = question.decide(&policy);
        let want = (*allowed, allowed.then_some("r"), *reason);
        if got(d) != want {
            failed.push(format!("{when}: want {want:?}, got {:?}", got(d)));
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
fn globs_match_the_whole_path() {
    // (glob, path, matches)
    #[rustfmt::skip]
    let cases: &[(&str, &str, bool)] = &[
        ("/api/**", "/api/a/b", true),
        ("/api/**", "/api/", true),
        ("/api/**", "/api", false),
        ("/api/**", "/API/a", false),
        ("/api/*", "/api/a", true),
        ("/api/*", "/api/a/b", false),
        ("/*.css", "/site.css", true),
        ("/*.css", "/css/site.css", false),
        ("/**/*.css", "/css/site.css", true),
        ("/**.css", "/css/site.css", true),
        ("/u/?/edit", "/u/7/edit", true),
        ("/u/?/edit", "/u/77/edit", false),
        ("/u/*/edit", "/u/7/x/edit", false),
        ("/u/**/edit", "/u/7/x/edit", true),
    ];
    for (glob, path, want) in cases {
        let policy = one_rule(&format!("{{ path: {{ glob: \"{glob}\" }} }}"));
        let d = ask(user("a@example.com", &[]), "GET", path).decide(&policy);
        assert_eq!(d.allowed, *want, "{glob} against {path}");
        let reason = if *want {
            format!("path matching {glob}")
        } else {
            format!("requires path matching {glob}")
        };
        assert_eq!(d.reason, reason);
    }
}

#[test]
fn deny_wins_wherever_it_stands_and_the_first_match_is_named() {
    let policy = compiled(
        r#"
rules:
  - allow: everyone
  - allow: staff
    when: { groups: staff }
  - deny: no-writes
    reason: the app is read-only this week
    when: { not: { method: [GET, HEAD] } }
  - deny: no-deletes
    when: { method: DELETE }
"#,
    );
    let who = || user("a@example.com", &["staff"]);
    #[rustfmt::skip]
    let cases: Vec<(Ask<'_>, Want<'_>)> = vec![
        (ask(who(), "GET", "/"), (true, Some("everyone"), "every request")),
        (ask(who(), "POST", "/"), (false, Some("no-writes"), "the app is read-only this week")),
        (ask(who(), "DELETE", "/"), (false, Some("no-writes"), "the app is read-only this week")),
    ];
    for (question, want) in cases {
        assert_eq!(got(question.decide(&policy)), want, "{}", question.method);
    }

    // A deny rule without `when:` denies everything.
    let policy = compiled("rules: [{allow: a, when: {all: []}}, {deny: closed}]");
    let d = ask(who(), "GET", "/").decide(&policy);
    assert_eq!(got(d), (false, Some("closed"), "every request"));
}

#[test]
fn the_closest_allow_rule_explains_a_denial() {
    let policy = compiled(
        r#"
rules:
  - allow: admins
    when: { groups: admins }
  - allow: writers-on-the-api
    when: { all: [ { path: { glob: "/api/**" } }, { groups: writers }, { method: POST } ] }
  - allow: readers
    when: { all: [ { method: GET }, { groups: readers } ] }
"#,
    );
    let who = || user("a@example.com", &["readers"]);
    // writers-on-the-api held the path, readers nothing: the path wins.
    let d = ask(who(), "POST", "/api/x").decide(&policy);
    assert_eq!(got(d), (false, None, "requires group writers"));
    // readers held the method, writers-on-the-api nothing.
    let d = ask(user("b@example.com", &[]), "GET", "/x").decide(&policy);
    assert_eq!(got(d), (false, None, "requires group readers"));
    // A tie (nothing held anywhere) names the first allow rule's miss.
    let d = ask(user("b@example.com", &[]), "PUT", "/x").decide(&policy);
    assert_eq!(got(d), (false, None, "requires group admins"));
}

#[test]
fn header_names_are_every_header_read_once_in_order() {
    let policy = compiled(
        r#"
rules:
  - allow: a
    when: { any: [ { header.X-B: x }, { not: { header.x-a: { present: false } } } ] }
  - deny: b
    when: { all: [ { header.x-b: { contains: yy } }, { header.x-c: z } ] }
  - allow: c
    when: { path: /x }
"#,
    );
    let names: Vec<&str> = policy.header_names().iter().map(|n| &**n).collect();
    assert_eq!(names, ["x-a", "x-b", "x-c"]);
}

#[test]
fn next_check_is_the_next_edge_of_a_time_window() {
    let policy = compiled(
        r#"
rules:
  - allow: office-hours
    when: { time_of_day: { from: "09:00", to: "18:00", timezone: Europe/Berlin } }
  - deny: maintenance
    when: { date: { after: "2026-03-30T12:00:00Z", before: "2026-03-30T13:00:00Z" } }
"#,
    );
    let now = ts(MONDAY_10_BERLIN);
    assert_eq!(policy.next_check(now), Some(ts("2026-03-30T12:00:00Z")));
    assert_eq!(
        policy.next_check(ts("2026-03-30T12:30:00Z")),
        Some(ts("2026-03-30T13:00:00Z"))
    );
    assert_eq!(
        policy.next_check(ts("2026-03-30T13:30:00Z")),
        Some(ts("2026-03-30T16:00:00Z"))
    );
    assert_eq!(compiled(EXAMPLE).next_check(now), None);
}

// -------------------------------------------------------------------------
// Compile errors
// -------------------------------------------------------------------------

fn errors(yaml: &str) -> Vec<String> {
    match parse_and_compile_http(yaml) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// Checks that each case's errors include one starting with its `want`.
fn check_errors(cases: &[(&str, &str, &str)], errors: impl Fn(&str) -> Vec<String>) {
    let mut failed = Vec::new();
    for (name, yaml, want) in cases {
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
fn compile_errors_point_at_line_and_column() {
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, &str)> = vec![
        // Criteria of the other dialects.
        ("login is about SSH",
         "rules:\n  - allow: a\n    when: { login: root }\n",
         "3:13: `login` is the login on an SSH target and means nothing in an http_routes policy"),
        ("login_matches is about SSH",
         "rules:\n  - allow: a\n    when: { all: [ { login_matches: email_local_part } ] }\n",
         "3:22: `login_matches` compares an SSH login with the identity and means nothing in an http_routes policy"),
        ("route is about a recording",
         "rules:\n  - allow: a\n    when: { route: prod-db }\n",
         "3:13: `route` is about a recorded session: it only applies in `web.access` rules, not in an http_routes policy"),
        ("recorded_user is about a recording",
         "rules:\n  - deny: a\n    when: { not: { recorded_user: bob } }\n",
         "3:20: `recorded_user` is about a recorded session"),
        ("own is about a recording",
         "rules:\n  - allow: a\n    when: { groups: sre, own: true }\n",
         "3:26: `own` is about a recorded session"),
        // Rules.
        ("duplicate rule name, at the second name",
         "rules:\n  - allow: a\n  - deny: a\n    when: { path: /x }\n",
         "3:11: rule `a` is named twice in this policy; give each rule its own name"),
        ("a rule without a kind",
         "rules:\n  - when: { path: /x }\n",
         "2:5: a rule of an HTTP route needs `allow: NAME` or `deny: NAME`"),
        ("a rule with two kinds",
         "rules:\n  - allow: a\n    deny: b\n",
         "3:11: a rule has exactly one of `allow` or `deny`"),
        ("an empty name",
         "rules:\n  - allow: \"\"\n",
         "2:12: a rule's name must not be empty"),
        ("no capabilities here (deny_unknown_fields)",
         "rules:\n  - allow: a\n    capabilities: [list]\n",
         "3:5: unknown field `capabilities`"),
        ("restrict rules are route-only",
         "rules:\n  - restrict: a\n",
         "2:5: unknown field `restrict`"),
        ("an empty condition",
         "rules:\n  - allow: a\n    when: {}\n",
         "3:11: empty condition"),
        ("unknown criterion lists the http criteria",
         "rules:\n  - allow: a\n    when: { url: /x }\n",
         "3:13: unknown criterion `url` (did you mean `path`?); criteria are: all, any, not, email, domain, groups, claim.<name>, source_ip, time_of_day, day_of_week, date, identity_kind, method, path, header.<name>"),
        ("headers. for header.",
         "rules:\n  - allow: a\n    when: { headers.x-a: b }\n",
         "3:13: unknown criterion `headers.x-a` (did you mean `header.x-a`?)"),
        // method.
        ("a method is a token",
         "rules:\n  - allow: a\n    when: { method: [GET, \"P OST\"] }\n",
         "3:27: `P OST` is not an HTTP method"),
        ("method takes is or in",
         "rules:\n  - allow: a\n    when: { method: { starts_with: G } }\n",
         "3:23: `method` takes a method, a list of methods, `is` or `in`"),
        ("method matcher names",
         "rules:\n  - allow: a\n    when: { method: { equals: GET } }\n",
         "3:23: unknown matcher `equals`; matchers are: is, in"),
        ("an empty method list",
         "rules:\n  - allow: a\n    when: { method: [] }\n",
         "3:21: an empty list matches nothing"),
        // path.
        ("a path starts with /",
         "rules:\n  - allow: a\n    when: { path: healthz }\n",
         "3:19: a request path starts with `/`: write `/healthz`"),
        ("a path prefix starts with /",
         "rules:\n  - allow: a\n    when: { path: { starts_with: admin/ } }\n",
         "3:34: a request path starts with `/`: write `/admin/`"),
        ("a path in a list starts with /",
         "rules:\n  - allow: a\n    when: { path: { in: [/a, b] } }\n",
         "3:30: a request path starts with `/`"),
        ("a path has no query",
         "rules:\n  - allow: a\n    when: { path: \"/search?q=x\" }\n",
         "3:19: `/search?q=x` has a query"),
        ("has on a path",
         "rules:\n  - allow: a\n    when: { path: { has: /x } }\n",
         "3:21: `has` tests a list, and path is a single value: use `is`"),
        ("path matcher names",
         "rules:\n  - allow: a\n    when: { path: { regex: x } }\n",
         "3:21: unknown matcher `regex`; matchers are: is, in, starts_with, ends_with, contains, glob"),
        ("a glob without /",
         "rules:\n  - allow: a\n    when: { path: { glob: \"api/**\" } }\n",
         "3:27: a path glob starts with `/`, like the paths it matches: write `/api/**`"),
        ("a glob with ***",
         "rules:\n  - allow: a\n    when: { path: { glob: \"/api/***\" } }\n",
         "3:27: `***` in `/api/***` means nothing more than `**`"),
        ("a glob is a string",
         "rules:\n  - allow: a\n    when: { path: { glob: [/a] } }\n",
         "3:27: `glob` takes a path pattern such as \"/api/**\", found a list"),
        ("glob only for path",
         "rules:\n  - allow: a\n    when: { email: { glob: \"*@example.com\" } }\n",
         "3:22: `glob` only applies to `path`; for email use is, in, starts_with, ends_with, contains, has"),
        ("glob not for headers",
         "rules:\n  - allow: a\n    when: { header.x-a: { glob: \"/x\" } }\n",
         "3:27: `glob` only applies to `path`; for header x-a use is, in, starts_with, ends_with, contains, present"),
        // header.
        ("a header name is a token",
         "rules:\n  - allow: a\n    when: { \"header.x a\": b }\n",
         "3:13: `x a` is not an HTTP header name"),
        ("a header needs a name",
         "rules:\n  - allow: a\n    when: { \"header.\": b }\n",
         "3:13: name the header after the dot: `header.x-device-trust`"),
        ("header alone",
         "rules:\n  - allow: a\n    when: { header: b }\n",
         "3:13: unknown criterion `header` (name the header after a dot: `header.x-device-trust`)"),
        ("present takes a boolean",
         "rules:\n  - allow: a\n    when: { header.x-a: { present: \"yes\" } }\n",
         "3:36: `present` takes true or false, found a string"),
        ("present stands alone",
         "rules:\n  - allow: a\n    when: { header.x-a: { present: true, is: b } }\n",
         "3:42: `present` stands alone"),
        ("a bare boolean on a header",
         "rules:\n  - allow: a\n    when: { header.x-a: true }\n",
         "3:25: expected a string, found a boolean: quote it to match the text, or write `{present: true}`"),
        ("has on a header",
         "rules:\n  - allow: a\n    when: { header.x-a: { has: b } }\n",
         "3:27: `has` tests a list, and header x-a is a single value: use `is`"),
        ("header matcher names",
         "rules:\n  - allow: a\n    when: { header.x-a: { exists: true } }\n",
         "3:27: unknown matcher `exists`; matchers are: is, in, starts_with, ends_with, contains, present"),
        ("nested conditions are checked as in routes",
         "rules:\n  - allow: a\n    when: { any: [ { path: /x }, { time_of_day: { from: \"09:00\", to: \"17:00\" } } ] }\n",
         "3:49: `time_of_day` needs a `timezone:`"),
    ];
    check_errors(&cases, errors);
}

#[test]
fn every_problem_is_reported_at_once() {
    let got = errors(
        r#"
rules:
  - allow: a
    when: { path: { glob: "api/**" } }
  - allow: b
    when: { login: root, method: "G T" }
  - deny: a
    when: { header.x-a: { present: 1 } }
"#,
    );
    let positions: Vec<&str> = got.iter().filter_map(|e| e.split(": ").next()).collect();
    assert_eq!(positions, ["4:27", "6:13", "6:34", "8:36"], "{got:#?}");
}

#[test]
fn request_criteria_are_refused_in_route_and_access_policies() {
    #[rustfmt::skip]
    let route_cases: Vec<(&str, &str, &str)> = vec![
        ("method in a route",
         "routes:\n  r:\n    rules:\n      - allow: a\n        when: { method: GET }\n",
         "5:17: `method` is about an HTTP request: it only applies in http_routes policies, not in a route's policy"),
        ("path in a shared policy",
         "policies:\n  p:\n    rules:\n      - allow: a\n        when: { all: [ { groups: sre }, { path: /x } ] }\n",
         "5:43: `path` is about an HTTP request: it only applies in http_routes policies, not in a route's policy"),
        ("a header in a route",
         "routes:\n  r:\n    rules:\n      - deny: a\n        when: { not: { header.x-a: b } }\n",
         "5:24: `header.x-a` is about an HTTP request: it only applies in http_routes policies, not in a route's policy"),
        ("glob in a route",
         "routes:\n  r:\n    rules:\n      - allow: a\n        when: { email: { glob: \"*@x\" } }\n",
         "5:26: `glob` matches request paths: it only applies to `path` in http_routes policies"),
    ];
    let route_errors = |yaml: &str| match parse_and_compile(yaml) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
    };
    check_errors(&route_cases, route_errors);

    #[rustfmt::skip]
    let access_cases: Vec<(&str, &str, &str)> = vec![
        ("method in web.access",
         "rules:\n  - allow: a\n    when: { method: GET }\n    capabilities: all\n",
         "3:13: `method` is about an HTTP request: it only applies in http_routes policies, not in `web.access` rules"),
        ("path in web.access",
         "rules:\n  - allow: a\n    when: { path: { glob: \"/**\" } }\n    capabilities: all\n",
         "3:13: `path` is about an HTTP request: it only applies in http_routes policies, not in `web.access` rules"),
        ("a header in web.access",
         "rules:\n  - allow: a\n    when: { any: [ { header.x-a: { present: true } } ] }\n    capabilities: all\n",
         "3:22: `header.x-a` is about an HTTP request"),
        ("glob in web.access",
         "rules:\n  - allow: a\n    when: { route: { glob: \"prod-*\" } }\n    capabilities: all\n",
         "3:22: `glob` matches request paths: it only applies to `path` in http_routes policies"),
    ];
    let access_errors = |yaml: &str| match parse_and_compile_access(yaml) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
    };
    check_errors(&access_cases, access_errors);
}

#[test]
fn the_raw_type_embeds_in_a_larger_document() {
    #[derive(serde::Deserialize)]
    struct HttpRoute {
        #[allow(dead_code)]
        upstream: String,
        #[serde(default)]
        policy: raw::HttpPolicy,
    }
    let route: HttpRoute = serde_saphyr::from_str(
        "upstream: http://127.0.0.1:3000\npolicy:\n  rules:\n    - allow: a\n      when: { path: { glob: \"x/**\" } }\n",
    )
    .expect("parses");
    let errors = compile_http(&route.policy).expect_err("a bad glob");
    assert_eq!(errors.len(), 1);
    // Positions are those of the whole document.
    assert_eq!((errors[0].line, errors[0].column), (5, 29));
}
