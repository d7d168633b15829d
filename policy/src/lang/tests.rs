//! Table-driven tests of the policy language (issue 5).

use std::net::IpAddr;
use std::time::Duration;

use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse()
        .unwrap_or_else(|e| panic!("bad timestamp {s} in test: {e}"))
}

fn compiled(yaml: &str) -> PolicySet {
    match parse_and_compile(yaml) {
        Ok(set) => set,
        Err(errors) => panic!(
            "policy did not compile:\n{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

fn claims(yaml: &str) -> Claims {
    serde_saphyr::from_str(yaml).expect("claims in test")
}

/// Alice: staff, SRE, with a rich set of claims.
fn alice() -> Identity {
    Identity {
        email: Some("alice@example.com".into()),
        groups: vec!["sre".into(), "team-payments".into()],
        claims: claims(
            r#"
department: eng
org: { team: payments }
roles: [admin, db-admin]
email_verified: true
level: 3
preferred_username: alice
"https://example.com/roles": [ops]
"#,
        ),
        ..Identity::new(IdentityKind::User, "alice")
    }
}

/// Bob: a contractor from another domain whose IdP sends scalars.
fn bob() -> Identity {
    Identity {
        email: Some("Bob@Example.ORG".into()),
        groups: vec!["contractors".into(), "dba".into()],
        claims: claims(
            "department: sales\nroles: admin\nlevel: 5\nemail_verified: false\npreferred_username: robert\n",
        ),
        ..Identity::new(IdentityKind::User, "bob")
    }
}

/// A CI job: a service key without email, groups or claims.
fn ci() -> Identity {
    Identity::new(IdentityKind::Service, "ci")
}

const MONDAY_10_BERLIN: &str = "2026-03-30T08:00:00Z";

struct Ask<'a> {
    route: &'a str,
    who: Identity,
    login: &'a str,
    from: &'a str,
    at: &'a str,
}

fn ask(route: &str, who: Identity) -> Ask<'_> {
    Ask {
        route,
        who,
        login: "postgres",
        from: "10.1.2.3",
        at: MONDAY_10_BERLIN,
    }
}

impl<'a> Ask<'a> {
    fn login(mut self, login: &'a str) -> Self {
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
    fn decide(&self, set: &PolicySet) -> Decision {
        let policy = set
            .route(self.route)
            .unwrap_or_else(|| panic!("no route {}", self.route));
        evaluate(
            policy,
            &Request {
                identity: &self.who,
                login: self.login,
                source: self.from.parse::<IpAddr>().expect("ip in test"),
                now: ts(self.at),
                session_start: None,
            },
        )
    }
}

// -------------------------------------------------------------------------
// Criteria, matchers and combinators
// -------------------------------------------------------------------------

const CRITERIA: &str = r#"
routes:
  email-bare:      { rules: [ { allow: r, when: { email: alice@example.com } } ] }
  email-is:        { rules: [ { allow: r, when: { email: { is: Alice@Example.COM } } } ] }
  email-in:        { rules: [ { allow: r, when: { email: [carol@example.com, bob@example.org] } } ] }
  email-starts:    { rules: [ { allow: r, when: { email: { starts_with: ALI } } } ] }
  email-ends:      { rules: [ { allow: r, when: { email: { ends_with: "@example.com" } } } ] }
  email-contains:  { rules: [ { allow: r, when: { email: { contains: "ice@ex" } } } ] }
  email-two:       { rules: [ { allow: r, when: { email: { starts_with: b, ends_with: ".org" } } } ] }
  domain:          { rules: [ { allow: r, when: { domain: example.com } } ] }
  domain-in:       { rules: [ { allow: r, when: { domain: { in: [example.net, EXAMPLE.org] } } } ] }
  groups-bare:     { rules: [ { allow: r, when: { groups: sre } } ] }
  groups-has:      { rules: [ { allow: r, when: { groups: { has: dba } } } ] }
  groups-list:     { rules: [ { allow: r, when: { groups: [dba, ops] } } ] }
  groups-in:       { rules: [ { allow: r, when: { groups: { in: [ops, sre] } } } ] }
  groups-starts:   { rules: [ { allow: r, when: { groups: { starts_with: team- } } } ] }
  groups-ends:     { rules: [ { allow: r, when: { groups: { ends_with: -payments } } } ] }
  groups-contains: { rules: [ { allow: r, when: { groups: { contains: tract } } } ] }
  claim-bare:      { rules: [ { allow: r, when: { claim.department: eng } } ] }
  claim-is:        { rules: [ { allow: r, when: { claim.department: { is: eng } } } ] }
  claim-nested:    { rules: [ { allow: r, when: { claim.org.team: payments } } ] }
  claim-has:       { rules: [ { allow: r, when: { claim.roles: { has: admin } } } ] }
  claim-list-bare: { rules: [ { allow: r, when: { claim.roles: admin } } ] }
  claim-list-is:   { rules: [ { allow: r, when: { claim.roles: { is: admin } } } ] }
  claim-ends:      { rules: [ { allow: r, when: { claim.roles: { ends_with: -admin } } } ] }
  claim-in:        { rules: [ { allow: r, when: { claim.department: [eng, ops] } } ] }
  claim-bool:      { rules: [ { allow: r, when: { claim.email_verified: true } } ] }
  claim-num:       { rules: [ { allow: r, when: { claim.level: { in: [3, 4] } } } ] }
  claim-quoted:    { rules: [ { allow: r, when: { 'claim."https://example.com/roles"': { has: ops } } } ] }
  claim-missing:   { rules: [ { allow: r, when: { not: { claim.nope: x } } } ] }
  login-bare:      { rules: [ { allow: r, when: { login: postgres } } ] }
  login-in:        { rules: [ { allow: r, when: { login: { in: [deploy, root] } } } ] }
  login-starts:    { rules: [ { allow: r, when: { login: { starts_with: app- } } } ] }
  login-local:     { rules: [ { allow: r, when: { login_matches: email_local_part } } ] }
  login-claim:     { rules: [ { allow: r, when: { login_matches: claim.preferred_username } } ] }
  source:          { rules: [ { allow: r, when: { source_ip: [10.0.0.0/8, "2001:db8::/32"] } } ] }
  source-one:      { rules: [ { allow: r, when: { source_ip: 192.168.1.5 } } ] }
  source-in:       { rules: [ { allow: r, when: { source_ip: { in: [172.16.0.0/12] } } } ] }
  kind-user:       { rules: [ { allow: r, when: { identity_kind: user } } ] }
  kind-service:    { rules: [ { allow: r, when: { identity_kind: { is: service } } } ] }
  kind-either:     { rules: [ { allow: r, when: { identity_kind: [user, service] } } ] }
  all:             { rules: [ { allow: r, when: { all: [ { groups: sre }, { login: postgres } ] } } ] }
  implicit-all:    { rules: [ { allow: r, when: { groups: sre, login: postgres } } ] }
  any:             { rules: [ { allow: r, when: { any: [ { groups: sre }, { login: deploy } ] } } ] }
  not:             { rules: [ { allow: r, when: { not: { groups: contractors } } } ] }
  not-any:         { rules: [ { allow: r, when: { not: { groups: [contractors, sre] } } } ] }
  not-all:         { rules: [ { allow: r, when: { not: { all: [ { groups: contractors }, { groups: dba } ] } } } ] }
  not-not:         { rules: [ { allow: r, when: { not: { not: { groups: sre } } } } ] }
  all-empty:       { rules: [ { allow: r, when: { all: [] } } ] }
  any-empty:       { rules: [ { allow: r, when: { any: [] } } ] }
  date-after:      { rules: [ { allow: r, when: { date: { after: "2026-03-30T09:00:00+02:00" } } } ] }
  date-range:      { rules: [ { allow: r, when: { date: { after: 2026-01-01, before: 2026-03-30, timezone: Europe/Berlin } } } ] }
  weekdays:        { rules: [ { allow: r, when: { day_of_week: { days: [mon-fri], timezone: Europe/Berlin } } } ] }
  weekend:         { rules: [ { allow: r, when: { day_of_week: { days: [sat, sunday], timezone: Europe/Berlin } } } ] }
  weekend-nz:      { rules: [ { allow: r, when: { day_of_week: { days: fri-sun, timezone: Pacific/Auckland } } } ] }
  office:          { rules: [ { allow: r, when: { time_of_day: { from: "09:00", to: "18:00", timezone: Europe/Berlin } } } ] }
  night:           { rules: [ { allow: r, when: { time_of_day: { from: "22:00", to: "06:00", timezone: Europe/Berlin } } } ] }
"#;

#[test]
fn every_criterion_matcher_and_combinator() {
    let set = compiled(CRITERIA);
    #[rustfmt::skip]
    let cases: Vec<(&str, Ask, bool)> = vec![
        ("email bare scalar is `is`", ask("email-bare", alice()), true),
        ("email bare scalar is `is` (no)", ask("email-bare", bob()), false),
        ("email ignores ASCII case", ask("email-is", alice()), true),
        ("email bare list is `in`", ask("email-in", bob()), true),
        ("email in (no)", ask("email-in", alice()), false),
        ("email starts_with, case ignored", ask("email-starts", alice()), true),
        ("email ends_with", ask("email-ends", alice()), true),
        ("email ends_with (no)", ask("email-ends", bob()), false),
        ("email contains", ask("email-contains", alice()), true),
        ("two matchers must both hold", ask("email-two", bob()), true),
        ("two matchers must both hold (no)", ask("email-two", alice()), false),
        ("missing email matches nothing", ask("email-ends", ci()), false),
        ("domain", ask("domain", alice()), true),
        ("domain (no)", ask("domain", bob()), false),
        ("domain in, case ignored", ask("domain-in", bob()), true),
        ("groups bare scalar is `has`", ask("groups-bare", alice()), true),
        ("groups bare (no)", ask("groups-bare", bob()), false),
        ("groups has", ask("groups-has", bob()), true),
        ("groups bare list: member of any", ask("groups-list", bob()), true),
        ("groups bare list (no)", ask("groups-list", alice()), false),
        ("groups in", ask("groups-in", alice()), true),
        ("groups starts_with: some group", ask("groups-starts", alice()), true),
        ("groups starts_with (no)", ask("groups-starts", bob()), false),
        ("groups ends_with", ask("groups-ends", alice()), true),
        ("groups contains is a substring of some group", ask("groups-contains", bob()), true),
        ("groups of an identity without groups", ask("groups-has", ci()), false),
        ("claim bare scalar equals", ask("claim-bare", alice()), true),
        ("claim bare scalar (no)", ask("claim-bare", bob()), false),
        ("claim is", ask("claim-is", alice()), true),
        ("claim nested path", ask("claim-nested", alice()), true),
        ("claim nested path missing", ask("claim-nested", bob()), false),
        ("claim has on a list", ask("claim-has", alice()), true),
        ("claim has on a scalar equals it", ask("claim-has", bob()), true),
        ("claim bare scalar on a list is `has`", ask("claim-list-bare", alice()), true),
        ("claim is never matches a list", ask("claim-list-is", alice()), false),
        ("claim is on a scalar", ask("claim-list-is", bob()), true),
        ("claim ends_with on list elements", ask("claim-ends", alice()), true),
        ("claim in", ask("claim-in", alice()), true),
        ("claim in (no)", ask("claim-in", bob()), false),
        ("claim boolean compares by type", ask("claim-bool", alice()), true),
        ("claim boolean false", ask("claim-bool", bob()), false),
        ("claim number in", ask("claim-num", alice()), true),
        ("claim number in (no)", ask("claim-num", bob()), false),
        ("claim quoted name with dots", ask("claim-quoted", alice()), true),
        ("not of a missing claim holds", ask("claim-missing", ci()), true),
        ("login bare", ask("login-bare", alice()), true),
        ("login bare (no)", ask("login-bare", alice()).login("root"), false),
        ("login in", ask("login-in", alice()).login("deploy"), true),
        ("login starts_with", ask("login-starts", alice()).login("app-web"), true),
        ("login_matches email local part", ask("login-local", alice()).login("alice"), true),
        ("login_matches email local part (no)", ask("login-local", alice()).login("postgres"), false),
        ("login_matches is case-sensitive", ask("login-local", bob()).login("bob"), false),
        ("login_matches without email", ask("login-local", ci()).login("ci"), false),
        ("login_matches claim", ask("login-claim", bob()).login("robert"), true),
        ("login_matches claim (no)", ask("login-claim", bob()).login("bob"), false),
        ("source_ip v4 in CIDR", ask("source", alice()).from("10.200.0.1"), true),
        ("source_ip v4 outside", ask("source", alice()).from("11.0.0.1"), false),
        ("source_ip v6 in CIDR", ask("source", alice()).from("2001:db8::7"), true),
        ("source_ip v4-mapped v6 counts as v4", ask("source", alice()).from("::ffff:10.9.9.9"), true),
        ("source_ip single address", ask("source-one", alice()).from("192.168.1.5"), true),
        ("source_ip single address (no)", ask("source-one", alice()).from("192.168.1.6"), false),
        ("source_ip in", ask("source-in", alice()).from("172.20.1.1"), true),
        ("identity_kind user", ask("kind-user", alice()), true),
        ("identity_kind user (service)", ask("kind-user", ci()), false),
        ("identity_kind service", ask("kind-service", ci()), true),
        ("identity_kind service (user)", ask("kind-service", alice()), false),
        ("identity_kind list", ask("kind-either", ci()), true),
        ("all: every one", ask("all", alice()), true),
        ("all: one fails", ask("all", alice()).login("root"), false),
        ("several keys are all", ask("implicit-all", alice()), true),
        ("several keys are all (no)", ask("implicit-all", alice()).login("root"), false),
        ("any: first", ask("any", alice()).login("root"), true),
        ("any: second", ask("any", bob()).login("deploy"), true),
        ("any: none", ask("any", bob()), false),
        ("not: negates", ask("not", alice()), true),
        ("not: negates (member)", ask("not", bob()), false),
        ("not of a list: member of neither", ask("not-any", ci()), true),
        ("not of a list: member of one", ask("not-any", alice()), false),
        ("not is plain negation of all, not NOR", ask("not-all", bob()), false),
        ("not of all holds when one part fails", ask("not-all", alice()), true),
        ("not not", ask("not-not", alice()), true),
        ("all: [] holds", ask("all-empty", ci()), true),
        ("any: [] never holds", ask("any-empty", alice()), false),
        ("date after: at the instant", ask("date-after", alice()).at("2026-03-30T07:00:00Z"), true),
        ("date after: before it", ask("date-after", alice()).at("2026-03-30T06:59:59Z"), false),
        ("date range in Berlin: inside", ask("date-range", alice()).at("2026-03-29T21:59:59Z"), true),
        ("date range: before is exclusive", ask("date-range", alice()).at("2026-03-29T22:00:00Z"), false),
        ("date range: after uses the zone", ask("date-range", alice()).at("2025-12-31T22:30:00Z"), false),
        ("date range: after the zone's midnight", ask("date-range", alice()).at("2025-12-31T23:00:00Z"), true),
        ("weekdays on Monday", ask("weekdays", alice()), true),
        ("weekdays: Sunday 23:30 UTC is Monday in Berlin", ask("weekdays", alice()).at("2026-03-29T22:30:00Z"), true),
        ("weekdays on Saturday", ask("weekdays", alice()).at("2026-03-28T12:00:00Z"), false),
        ("weekend full day names", ask("weekend", alice()).at("2026-03-29T12:00:00Z"), true),
        ("weekend in Auckland on Thursday 13:00 UTC (Friday there)", ask("weekend-nz", alice()).at("2026-04-02T13:00:00Z"), true),
        ("weekend in Auckland on Thursday 10:00 UTC (Thursday there)", ask("weekend-nz", alice()).at("2026-04-02T10:00:00Z"), false),
        ("office hours", ask("office", alice()), true),
        ("office: from is inclusive", ask("office", alice()).at("2026-03-30T07:00:00Z"), true),
        ("office: to is exclusive", ask("office", alice()).at("2026-03-30T16:00:00Z"), false),
        ("night window crossing midnight: late", ask("night", alice()).at("2026-03-30T21:30:00Z"), true),
        ("night window crossing midnight: early", ask("night", alice()).at("2026-03-31T03:59:00Z"), true),
        ("night window: end is exclusive", ask("night", alice()).at("2026-03-31T04:00:00Z"), false),
        ("night window: day", ask("night", alice()), false),
    ];
    let mut failed = Vec::new();
    for (name, ask, want) in &cases {
        let d = ask.decide(&set);
        if d.allowed != *want {
            failed.push(format!(
                "{name}: want {want}, got {} ({})",
                d.allowed, d.reason
            ));
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
fn reasons_say_what_matched_or_was_missing() {
    let set = compiled(CRITERIA);
    #[rustfmt::skip]
    let cases: Vec<(Ask, &str)> = vec![
        (ask("groups-bare", bob()), "requires group sre"),
        (ask("groups-bare", alice()), "member of group sre"),
        (ask("groups-list", alice()), "requires one of the groups dba, ops"),
        (ask("email-ends", bob()), "requires email ending with @example.com"),
        (ask("office", alice()).at("2026-03-30T17:00:00Z"), "outside 09:00–18:00 Europe/Berlin"),
        (ask("office", alice()), "inside 09:00–18:00 Europe/Berlin"),
        (ask("not", bob()), "member of group contractors"),
        (ask("any", bob()), "requires one of: member of group sre; login deploy"),
        (ask("all", alice()).login("root"), "requires login postgres"),
        (ask("source", alice()).from("11.0.0.1"), "requires a source address in 10.0.0.0/8, 2001:db8::/32"),
        (ask("kind-service", alice()), "requires a service identity"),
        (ask("login-local", alice()), "requires the login to equal the email's local part"),
        (ask("weekdays", alice()).at("2026-03-28T12:00:00Z"), "outside mon-fri Europe/Berlin"),
        (ask("date-after", alice()).at("2026-03-29T12:00:00Z"), "only from 2026-03-30T09:00:00+02:00"),
    ];
    for (ask, want) in cases {
        let d = ask.decide(&set);
        assert_eq!(&*d.reason, want, "route {}", ask.route);
    }
}

// -------------------------------------------------------------------------
// Rules: deny wins, default deny, first allow, restrict, narrowing
// -------------------------------------------------------------------------

const RULES: &str = r#"
policies:
  base:
    capabilities:
      sftp: true
      agent: true
      port_forward_local: ["db.internal:5432", "*.corp.example:443", "10.0.0.0/8:*", "[fd00::/8]:22"]
    obligations: { record: best_effort, max_session: 8h, cert_ttl: 10m }
    rules:
      - deny: contractors-at-night
        reason: contractors may not connect at night
        when:
          all:
            - groups: contractors
            - time_of_day: { from: "20:00", to: "06:00", timezone: Europe/Berlin }
      - allow: staff
        when: { domain: example.com }
      - allow: contractors
        reason: contractor access
        when: { groups: contractors }
        capabilities: { sftp: false, agent: true, x11: true }
        obligations: { record: strict, max_session: 12h, cert_ttl: 2m, record_input: true }
      - restrict: dba-forwarding
        when: { groups: dba }
        capabilities: { port_forward_local: ["db.internal:5432", "db2.internal:5432"] }
routes:
  prod: base
  prod-banned:
    include: [base]
    rules:
      - deny: banned
        when: { email: alice@example.com }
  no-rules: { rules: [] }
  readonly:
    capabilities: { exec: { only: /usr/local/bin/report }, pty: false }
    rules: [ { allow: everyone, when: { all: [] } } ]
  restricted-exec:
    rules:
      - allow: everyone
        when: { all: [] }
        capabilities: { exec: { only: uptime } }
"#;

#[test]
fn deny_wins_first_allow_decides_default_denies() {
    let set = compiled(RULES);
    let carol = Identity {
        email: Some("carol@other.net".into()),
        ..Identity::new(IdentityKind::User, "carol")
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, Ask, bool, DecidedBy, &str)> = vec![
        ("staff allowed", ask("prod", alice()), true, DecidedBy::Allow("staff".into()), "email domain example.com"),
        ("contractor by day", ask("prod", bob()), true, DecidedBy::Allow("contractors".into()), "contractor access"),
        ("deny wins over a matching allow", ask("prod", bob()).at("2026-03-30T19:00:00Z"), false,
            DecidedBy::Deny("contractors-at-night".into()), "contractors may not connect at night"),
        ("a deny rule after the allow rules still wins", ask("prod-banned", alice()), false,
            DecidedBy::Deny("banned".into()), "email alice@example.com"),
        ("default deny explains the closest allow rule", ask("prod", carol), false,
            DecidedBy::NoRuleAllowed, "requires email domain example.com"),
        ("no rules: default deny", ask("no-rules", alice()), false, DecidedBy::NoRuleAllowed,
            "no rule allows access to route no-rules"),
    ];
    for (name, ask, allowed, by, reason) in cases {
        let d = ask.decide(&set);
        assert_eq!(d.allowed, allowed, "{name}");
        assert_eq!(d.decided_by, by, "{name}");
        assert_eq!(&*d.reason, reason, "{name}");
        if !allowed {
            assert_eq!(
                d.capabilities,
                Capabilities::none(),
                "{name}: a denial grants nothing"
            );
        }
    }
}

#[test]
fn rules_narrow_capabilities_and_tighten_obligations_never_widen() {
    let set = compiled(RULES);
    let staff = ask("prod", alice()).decide(&set);
    assert!(staff.capabilities.sftp && staff.capabilities.agent && !staff.capabilities.x11);
    assert_eq!(staff.obligations.record, RecordMode::BestEffort);
    assert_eq!(staff.obligations.cert_ttl, Duration::from_secs(600));

    let contractor = ask("prod", bob()).decide(&set);
    let c = &contractor.capabilities;
    assert!(!c.sftp, "the contractors rule takes sftp away");
    assert!(c.agent, "agent stays as the route states it");
    assert!(
        !c.x11,
        "x11: true in a rule cannot widen the route's x11: false"
    );
    let o = contractor.obligations;
    assert_eq!(o.record, RecordMode::Strict);
    assert!(o.record_input);
    assert_eq!(
        o.max_session,
        Some(Duration::from_secs(8 * 3600)),
        "12h cannot widen the route's 8h"
    );
    assert_eq!(o.cert_ttl, Duration::from_secs(120));

    // Forward destinations: staff get the route's list; bob (dba) is also
    // narrowed by the restrict rule, whichever allow rule let him in.
    #[rustfmt::skip]
    let destinations: Vec<(&str, u16, bool, bool)> = vec![
        // host, port, staff, dba
        ("db.internal", 5432, true, true),
        ("DB.Internal", 5432, true, true),
        ("db.internal", 5433, false, false),
        ("db2.internal", 5432, false, false), // the restrict rule cannot add it
        ("api.corp.example", 443, true, false),
        ("corp.example", 443, false, false),
        ("10.1.2.3", 22, true, false),
        ("11.1.2.3", 22, false, false),
        ("[fd00::1]", 22, true, false),
        ("fd00::1", 22, true, false),
        ("fd00::1", 23, false, false),
    ];
    for (host, port, for_staff, for_dba) in destinations {
        assert_eq!(
            staff
                .capabilities
                .port_forward_local
                .destination_allowed(host, port),
            for_staff,
            "staff {host}:{port}"
        );
        assert_eq!(
            c.port_forward_local.destination_allowed(host, port),
            for_dba,
            "dba {host}:{port}"
        );
        assert!(
            !c.port_forward_remote.destination_allowed(host, port),
            "remote forwarding is off by default"
        );
    }
}

#[test]
fn certificate_extensions_and_force_command_follow_capabilities() {
    let set = compiled(RULES);
    let staff = ask("prod", alice()).decide(&set).capabilities;
    assert_eq!(
        staff.certificate_extensions(),
        [
            "permit-agent-forwarding",
            "permit-port-forwarding",
            "permit-pty"
        ]
    );
    assert_eq!(staff.force_command(), None);

    let readonly = ask("readonly", alice()).decide(&set).capabilities;
    assert_eq!(readonly.certificate_extensions(), Vec::<&str>::new());
    assert_eq!(readonly.force_command(), Some("/usr/local/bin/report"));
    assert!(
        !readonly.shell && !readonly.sftp,
        "a forced command replaces shells and subsystems"
    );

    let narrowed = ask("restricted-exec", alice()).decide(&set).capabilities;
    assert_eq!(narrowed.force_command(), Some("uptime"));
    assert!(!narrowed.shell && !narrowed.sftp);
    assert_eq!(narrowed.certificate_extensions(), ["permit-pty"]);

    assert!(Capabilities::none().certificate_extensions().is_empty());
    let all = Capabilities {
        pty: true,
        shell: true,
        exec: Exec::Any,
        sftp: true,
        port_forward_local: Forwarding::Denied,
        port_forward_remote: Forwarding::Any,
        agent: true,
        x11: true,
    };
    assert_eq!(
        all.certificate_extensions(),
        [
            "permit-X11-forwarding",
            "permit-agent-forwarding",
            "permit-port-forwarding",
            "permit-pty"
        ]
    );
}

#[test]
fn route_defaults() {
    let set = compiled("routes:\n  r: { rules: [ { allow: a, when: { all: [] } } ] }\n");
    let d = ask("r", alice()).decide(&set);
    let c = d.capabilities;
    assert!(c.pty && c.shell && c.sftp && c.exec == Exec::Any);
    assert!(
        !c.agent
            && !c.x11
            && !c.port_forward_local.is_allowed()
            && !c.port_forward_remote.is_allowed()
    );
    assert_eq!(
        d.obligations,
        Obligations {
            record: RecordMode::BestEffort,
            record_input: false,
            max_session: None,
            reauth_every: None,
            cert_ttl: DEFAULT_CERT_TTL,
        }
    );
    assert_eq!(d.next_check, None, "nothing here depends on time");
}

#[test]
fn include_takes_rules_and_unstated_capabilities() {
    let set = compiled(
        r#"
policies:
  a:
    capabilities: { agent: true, sftp: false }
    obligations: { cert_ttl: 1m, record: strict }
    rules: [ { allow: from-a, when: { groups: sre } } ]
  b:
    capabilities: { agent: false, x11: true }
    rules: [ { allow: from-b, when: { groups: dba } } ]
routes:
  r:
    include: [a, b]
    capabilities: { sftp: true }
    obligations: { record: off }
    rules: [ { allow: own, when: { groups: contractors } } ]
"#,
    );
    let d = ask("r", alice()).decide(&set);
    assert_eq!(d.decided_by, DecidedBy::Allow("from-a".into()));
    assert!(d.capabilities.sftp, "the route's own statement wins");
    assert!(
        d.capabilities.agent,
        "the first included policy that states it"
    );
    assert!(d.capabilities.x11, "stated only by the second");
    assert_eq!(d.obligations.record, RecordMode::Off);
    assert_eq!(d.obligations.cert_ttl, Duration::from_secs(60));
    assert_eq!(
        ask("r", bob()).decide(&set).decided_by,
        DecidedBy::Allow("from-b".into())
    );
    assert_eq!(set.route("r").map(|r| r.rule_count()), Some(3));
}

// -------------------------------------------------------------------------
// Time: DST, midnight, next_check
// -------------------------------------------------------------------------

const TIMES: &str = r#"
routes:
  office: { rules: [ { allow: r, when: { time_of_day: { from: "09:00", to: "18:00", timezone: Europe/Berlin } } } ] }
  night: { rules: [ { allow: r, when: { time_of_day: { from: "22:00", to: "06:00", timezone: Europe/Berlin } } } ] }
  gap: { rules: [ { allow: r, when: { time_of_day: { from: "02:30", to: "03:30", timezone: Europe/Berlin } } } ] }
  fold: { rules: [ { allow: r, when: { time_of_day: { from: "02:00", to: "02:30", timezone: Europe/Berlin } } } ] }
  weekdays: { rules: [ { allow: r, when: { day_of_week: { days: [mon-fri], timezone: Europe/Berlin } } } ] }
  dates: { rules: [ { allow: r, when: { date: { after: "2026-04-01T00:00:00Z", before: "2026-05-01T00:00:00Z" } } } ] }
  two-rules:
    rules:
      - allow: office
        when: { time_of_day: { from: "09:00", to: "18:00", timezone: Europe/Berlin } }
      - allow: sre-nights
        when: { all: [ { groups: nobody }, { time_of_day: { from: "12:30", to: "13:00", timezone: UTC } } ] }
  deny-window:
    rules:
      - deny: maintenance
        when: { time_of_day: { from: "10:15", to: "10:45", timezone: Europe/Berlin } }
      - allow: all
        when: { all: [] }
"#;

#[test]
fn time_windows_follow_the_wall_clock_across_dst() {
    let set = compiled(TIMES);
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, bool)> = vec![
        // Spring forward, Sunday 2026-03-29 at 01:00 UTC (02:00 CET -> 03:00 CEST).
        ("office", "2026-03-28T08:00:00Z", true),   // 09:00 CET
        ("office", "2026-03-28T07:59:59Z", false),  // 08:59:59 CET
        ("office", "2026-03-29T07:00:00Z", true),   // 09:00 CEST (a fixed +01:00 would say 08:00)
        ("office", "2026-03-29T06:59:59Z", false),
        ("office", "2026-03-29T15:59:59Z", true),   // 17:59:59 CEST
        ("office", "2026-03-29T16:00:00Z", false),  // 18:00 CEST
        // The window 02:30-03:30 on the spring day: the clock jumps into it.
        ("gap", "2026-03-29T00:59:59Z", false),     // 01:59:59 CET
        ("gap", "2026-03-29T01:00:00Z", true),      // 03:00 CEST
        ("gap", "2026-03-29T01:30:00Z", false),     // 03:30 CEST
        // Fall back, Sunday 2026-10-25 at 01:00 UTC (03:00 CEST -> 02:00 CET).
        ("office", "2026-10-24T07:00:00Z", true),   // 09:00 CEST
        ("office", "2026-10-25T07:59:59Z", false),  // 08:59:59 CET
        ("office", "2026-10-25T08:00:00Z", true),   // 09:00 CET
        ("office", "2026-10-25T16:59:59Z", true),   // 17:59:59 CET
        // 02:00-02:30 happens twice on the fall day: inside both times.
        ("fold", "2026-10-25T00:10:00Z", true),     // 02:10 CEST
        ("fold", "2026-10-25T00:45:00Z", false),    // 02:45 CEST
        ("fold", "2026-10-25T01:10:00Z", true),     // 02:10 CET
        ("fold", "2026-10-25T01:30:00Z", false),    // 02:30 CET
        // Crossing midnight.
        ("night", "2026-03-28T20:59:59Z", false),   // 21:59:59 CET
        ("night", "2026-03-28T21:00:00Z", true),    // 22:00 CET
        ("night", "2026-03-29T03:59:59Z", true),    // 05:59:59 CEST, after the jump
        ("night", "2026-03-29T04:00:00Z", false),   // 06:00 CEST
    ];
    for (route, at, want) in cases {
        let d = ask(route, alice()).at(at).decide(&set);
        assert_eq!(d.allowed, want, "{route} at {at}: {}", d.reason);
    }
}

#[test]
fn next_check_is_the_next_edge_of_any_window() {
    let set = compiled(TIMES);
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, Option<&str>)> = vec![
        // Plain days.
        ("office", "2026-03-30T08:00:00Z", Some("2026-03-30T16:00:00Z")),
        ("office", "2026-03-30T16:00:00Z", Some("2026-03-31T07:00:00Z")),
        ("office", "2026-03-30T05:00:00Z", Some("2026-03-30T07:00:00Z")),
        // Across the spring jump: Saturday 18:30 CET -> Sunday 09:00 CEST.
        ("office", "2026-03-28T17:30:00Z", Some("2026-03-29T07:00:00Z")),
        // Across the fall change: Saturday 19:00 CEST -> Sunday 09:00 CET.
        ("office", "2026-10-24T17:00:00Z", Some("2026-10-25T08:00:00Z")),
        ("office", "2026-10-24T15:00:00Z", Some("2026-10-24T16:00:00Z")),
        // A window edge inside the skipped hour takes effect at the jump.
        ("gap", "2026-03-29T00:30:00Z", Some("2026-03-29T01:00:00Z")),
        ("gap", "2026-03-29T01:00:00Z", Some("2026-03-29T01:30:00Z")),
        // The repeated hour: out at 02:30 CEST, in again when 03:00 CEST becomes 02:00 CET.
        ("fold", "2026-10-25T00:10:00Z", Some("2026-10-25T00:30:00Z")),
        ("fold", "2026-10-25T00:45:00Z", Some("2026-10-25T01:00:00Z")),
        ("fold", "2026-10-25T01:10:00Z", Some("2026-10-25T01:30:00Z")),
        // Crossing midnight.
        ("night", "2026-03-30T21:30:00Z", Some("2026-03-31T04:00:00Z")),
        ("night", "2026-03-30T12:00:00Z", Some("2026-03-30T20:00:00Z")),
        // Days: Friday noon -> Saturday 00:00 CEST.
        ("weekdays", "2026-04-03T10:00:00Z", Some("2026-04-03T22:00:00Z")),
        ("weekdays", "2026-04-04T10:00:00Z", Some("2026-04-05T22:00:00Z")),
        // Dates.
        ("dates", "2026-03-01T00:00:00Z", Some("2026-04-01T00:00:00Z")),
        ("dates", "2026-04-10T00:00:00Z", Some("2026-05-01T00:00:00Z")),
        ("dates", "2026-06-01T00:00:00Z", None),
        // A window in a rule that did not match still counts (12:30 UTC).
        ("two-rules", "2026-03-30T08:00:00Z", Some("2026-03-30T12:30:00Z")),
        // So does a deny rule's window that is not in force yet (10:15 CEST).
        ("deny-window", "2026-03-30T08:00:00Z", Some("2026-03-30T08:15:00Z")),
        ("deny-window", "2026-03-30T08:20:00Z", Some("2026-03-30T08:45:00Z")),
    ];
    for (route, at, want) in cases {
        let d = ask(route, alice()).at(at).decide(&set);
        assert_eq!(d.next_check, want.map(ts), "{route} at {at}");
    }
}

#[test]
fn next_check_covers_session_limits_reauth_and_binding_expiry() {
    let set = compiled(
        r#"
routes:
  r:
    obligations: { max_session: 8h, reauth_every: 1h }
    rules:
      - allow: office
        when: { time_of_day: { from: "09:00", to: "18:00", timezone: Europe/Berlin } }
"#,
    );
    let policy = set.route("r").expect("route r");
    let now = ts("2026-03-30T08:00:00Z"); // 10:00 Berlin, window ends 16:00Z
    let decide = |who: &Identity, start: Option<&str>| {
        evaluate(
            policy,
            &Request {
                identity: who,
                login: "postgres",
                source: IpAddr::from([10, 0, 0, 1]),
                now,
                session_start: start.map(ts),
            },
        )
    };
    let mut user = alice();
    user.authenticated_at = Some(ts("2026-03-30T07:30:00Z"));
    #[rustfmt::skip]
    type Case<'a> = (&'a str, Identity, Option<&'a str>, bool, DecidedBy, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "reauth due first",
            user.clone(),
            Some("2026-03-30T07:30:00Z"),
            true,
            DecidedBy::Allow("office".into()),
            Some("2026-03-30T08:30:00Z"),
        ),
        (
            "new session: reauth counts from sign-in",
            user.clone(),
            None,
            true,
            DecidedBy::Allow("office".into()),
            Some("2026-03-30T08:30:00Z"),
        ),
        (
            "services never reauthenticate: session end first",
            ci(),
            Some("2026-03-30T00:30:00Z"),
            true,
            DecidedBy::Allow("office".into()),
            Some("2026-03-30T08:30:00Z"),
        ),
        (
            "services: the window's end",
            ci(),
            Some("2026-03-30T07:00:00Z"),
            true,
            DecidedBy::Allow("office".into()),
            Some("2026-03-30T15:00:00Z"),
        ),
        (
            "binding expiry first",
            Identity {
                binding_expires: Some(ts("2026-03-30T08:05:00Z")),
                ..user.clone()
            },
            None,
            true,
            DecidedBy::Allow("office".into()),
            Some("2026-03-30T08:05:00Z"),
        ),
        (
            "session too long",
            ci(),
            Some("2026-03-30T00:00:00Z"),
            false,
            DecidedBy::SessionLimit,
            Some("2026-03-30T16:00:00Z"),
        ),
        (
            "reauthentication overdue",
            Identity {
                authenticated_at: Some(ts("2026-03-30T07:00:00Z")),
                ..user.clone()
            },
            None,
            false,
            DecidedBy::ReauthenticationDue,
            Some("2026-03-30T16:00:00Z"),
        ),
        (
            "binding expired",
            Identity {
                binding_expires: Some(now),
                ..user.clone()
            },
            None,
            false,
            DecidedBy::BindingExpired,
            Some("2026-03-30T16:00:00Z"),
        ),
    ];
    for (name, who, start, allowed, by, next) in cases {
        let d = decide(&who, start);
        assert_eq!(d.allowed, allowed, "{name}: {}", d.reason);
        assert_eq!(d.decided_by, by, "{name}");
        assert_eq!(d.next_check, next.map(ts), "{name}");
    }
}

// -------------------------------------------------------------------------
// Compile errors
// -------------------------------------------------------------------------

fn errors(yaml: &str) -> Vec<String> {
    match parse_and_compile(yaml) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn compile_errors_point_at_line_and_column() {
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, &str)> = vec![
        ("unknown criterion",
         "routes:\n  r:\n    rules:\n      - allow: a\n        when: { emial: x }\n",
         "5:17: unknown criterion `emial`"),
        ("claims. is not claim.",
         "routes:\n  r: { rules: [ { allow: a, when: { claims.team: x } } ] }\n",
         "2:37: unknown criterion `claims.team` (did you mean `claim.team`?)"),
        ("bad CIDR",
         "routes:\n  r:\n    rules:\n      - allow: a\n        when:\n          source_ip: [10.0.0.0/8, 10.0.0.0/33]\n",
         "6:35: `10.0.0.0/33` is not a CIDR network or IP address"),
        ("bad time zone",
         "routes:\n  r:\n    rules:\n      - allow: a\n        when:\n          time_of_day: { from: \"09:00\", to: \"17:00\", timezone: Europe/Berln }\n",
         "6:64: unknown time zone `Europe/Berln`"),
        ("unknown referenced policy",
         "policies:\n  base: { rules: [] }\nroutes:\n  r: bsae\n",
         "4:6: unknown policy `bsae`; defined policies: base"),
        ("unknown included policy",
         "routes:\n  r:\n    include: [base]\n",
         "3:15: unknown policy `base`: no policies are defined under `policies:`"),
        ("contradictory time range",
         "routes:\n  r: { rules: [ { allow: a, when: { time_of_day: { from: \"09:00\", to: \"09:00\", timezone: UTC } } } ] }\n",
         "2:71: contradictory time range: `from` and `to` are both 09:00"),
        ("contradictory date range",
         "routes:\n  r:\n    rules:\n      - allow: a\n        when:\n          date: { after: \"2026-05-01T00:00:00Z\", before: \"2026-04-01T00:00:00Z\" }\n",
         "6:58: contradictory date range"),
        ("equal dates are contradictory too",
         "routes:\n  r:\n    rules:\n      - allow: a\n        when:\n          date: { after: 2026-05-01, before: 2026-05-01, timezone: UTC }\n",
         "6:46: contradictory date range"),
        ("date without offset or zone",
         "routes:\n  r:\n    rules:\n      - allow: a\n        when:\n          date: { after: 2026-05-01 }\n",
         "6:26: `2026-05-01` has no UTC offset"),
        ("time_of_day without a zone",
         "routes:\n  r:\n    rules:\n      - allow: a\n        when:\n          time_of_day: { from: \"09:00\", to: \"17:00\" }\n",
         "6:24: `time_of_day` needs a `timezone:`"),
        ("bad time",
         "routes:\n  r:\n    rules:\n      - allow: a\n        when:\n          time_of_day: { from: \"25:00\", to: \"17:00\", timezone: UTC }\n",
         "6:32: `from` must be a time of day"),
        ("unknown day",
         "routes:\n  r:\n    rules:\n      - allow: a\n        when:\n          day_of_week: { days: [mon, funday], timezone: UTC }\n",
         "6:38: a day is mon, tue"),
        ("unknown matcher",
         "routes:\n  r:\n    rules:\n      - allow: a\n        when:\n          email: { matches: x }\n",
         "6:20: unknown matcher `matches`"),
        ("is on groups",
         "routes:\n  r:\n    rules:\n      - allow: a\n        when:\n          groups: { is: sre }\n",
         "6:21: `groups` is a list: use `has: GROUP`"),
        ("has on email",
         "routes:\n  r:\n    rules:\n      - allow: a\n        when:\n          email: { has: x }\n",
         "6:20: `has` tests a list"),
        ("unknown key in a rule (deny_unknown_fields)",
         "routes:\n  r:\n    rules:\n      - allow: a\n        wehn: { all: [] }\n",
         "5:9: unknown field `wehn`"),
        ("a rule without when",
         "routes:\n  r:\n    rules:\n      - allow: a\n",
         "4:16: rule `a` needs a `when:` condition"),
        ("a rule without a kind",
         "routes:\n  r:\n    rules:\n      - when: { all: [] }\n",
         "4:9: a rule needs one of `allow: NAME`, `deny: NAME` or `restrict: NAME`"),
        ("a rule with two kinds",
         "routes:\n  r:\n    rules:\n      - allow: a\n        deny: b\n        when: { all: [] }\n",
         "5:15: a rule has exactly one of"),
        ("deny with capabilities",
         "routes:\n  r:\n    rules:\n      - deny: a\n        when: { all: [] }\n        capabilities: { sftp: false }\n",
         "6:23: a deny rule grants nothing"),
        ("bad destination",
         "routes:\n  r:\n    capabilities: { port_forward_local: [\"db.internal\"] }\n",
         "3:42: `db.internal` needs a port"),
        ("bad duration",
         "routes:\n  r:\n    obligations: { max_session: forever }\n",
         "3:33: `max_session`: `forever` is not a duration"),
        ("exec only contradicts shell",
         "routes:\n  r:\n    capabilities: { exec: { only: ls }, shell: true }\n",
         "3:48: `shell: true` contradicts `exec: {only: …}`"),
        ("empty condition",
         "routes:\n  r:\n    rules:\n      - allow: a\n        when: {}\n",
         "5:15: empty condition"),
        ("duplicate rule name",
         "routes:\n  r:\n    rules:\n      - allow: a\n        when: { all: [] }\n      - deny: a\n        when: { all: [] }\n",
         "6:9: rule `a` is named twice"),
        ("bare boolean where a string is expected",
         "routes:\n  r:\n    rules:\n      - allow: a\n        when: { login: off }\n",
         "5:24: expected a string, found a boolean (YAML reads bare yes/no/on/off as booleans: quote it)"),
        ("YAML syntax error",
         "routes:\n  r: { rules: [\n",
         "2:15: unclosed bracket"),
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
fn every_compile_error_is_reported_at_once() {
    let got = errors(
        r#"
policies:
  base:
    rules:
      - allow: a
        when: { emial: x }
routes:
  r1: missing
  r2:
    rules:
      - allow: b
        when:
          source_ip: 10.0.0.0/99
          time_of_day: { from: "09:00", to: "09:00", timezone: Mars/Olympus }
"#,
    );
    assert_eq!(got.len(), 4, "{got:#?}");
    let positions: Vec<&str> = got.iter().filter_map(|e| e.split(": ").next()).collect();
    assert_eq!(positions, ["6:17", "8:7", "13:22", "14:64"], "{got:#?}");
}

// -------------------------------------------------------------------------
// Test tables (`gatehouse policy test`)
// -------------------------------------------------------------------------

#[test]
fn test_tables_run_and_report_failures() {
    let set = compiled(RULES);
    let table = testing::parse(
        r#"
config: gatehouse.yaml
defaults:
  at: 2026-03-30T10:00:00[Europe/Berlin]
  login: postgres
  from: 10.0.0.1
cases:
  - name: staff allowed
    route: prod
    email: alice@example.com
    expect: allow
    rule: staff
    capabilities: { sftp: true, x11: false, port_forward_local: true }
  - name: contractors get no sftp
    route: prod
    email: bob@partner.io
    groups: [contractors]
    expect: allow
    reason: contractor
    capabilities: { sftp: false }
  - name: contractors at night
    route: prod
    email: bob@partner.io
    groups: [contractors]
    at: 2026-03-30T23:00:00+02:00
    expect: deny
    rule: contractors-at-night
    next_check: 2026-03-31T06:00:00+02:00
  - name: a wrong expectation
    route: prod
    email: eve@evil.example
    expect: allow
  - name: wrong rule and capability
    route: prod
    email: alice@example.com
    expect: allow
    rule: contractors
    capabilities: { agent: false }
  - name: a service key
    route: prod
    kind: service
    identity: ci
    expect: deny
    next_check: 2026-03-30T20:00:00+02:00
  - route: nowhere
    expect: deny
"#,
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(table.config.as_deref(), Some("gatehouse.yaml"));
    assert_eq!(table.len(), 7);
    let report = table.run(&set);
    assert_eq!(report.total, 7);
    let summary: Vec<String> = report.failures.iter().map(ToString::to_string).collect();
    assert_eq!(summary.len(), 3, "{summary:#?}");
    assert!(
        summary[0].starts_with("29:5: a wrong expectation: expected allow, got deny"),
        "{}",
        summary[0]
    );
    assert!(
        summary[1].contains("expected rule `contractors` to decide, got `staff`"),
        "{}",
        summary[1]
    );
    assert!(
        summary[1].contains("expected agent to be refused"),
        "{}",
        summary[1]
    );
    assert!(
        summary[2].starts_with("45:5: case at line 45: unknown route `nowhere`"),
        "{}",
        summary[2]
    );
    assert!(report.to_string().ends_with("4 passed, 3 failed"));
}

#[test]
fn test_table_errors_have_positions() {
    let errors = testing::parse(
        "cases:\n  - route: r\n    login: x\n    at: yesterday\n    expect: maybe\n    from: 10.0.0\n  - route: r\n    expect: allow\n    at: 2026-01-01T00:00:00Z\n    capabilities: { teleport: true }\n",
    )
    .expect_err("bad table");
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let starts = [
        "6:11: `10.0.0` is not an IP address",
        "4:9: `yesterday` is not a time",
        "5:13: `expect` is",
        "7:5: this case needs `login:`",
        "10:21: unknown capability `teleport`",
    ];
    for want in starts {
        assert!(
            got.iter().any(|e| e.starts_with(want)),
            "want {want}, got {got:#?}"
        );
    }
}

// -------------------------------------------------------------------------
// Raw types embed in a bigger config
// -------------------------------------------------------------------------

#[test]
fn raw_types_embed_in_the_gateway_config() {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        #[serde(default)]
        policies: raw::Named<raw::PolicyDoc>,
        routes: Vec<Route>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Route {
        name: String,
        #[allow(dead_code)]
        target: String,
        policy: raw::Spanned<raw::RoutePolicy>,
    }
    let text = r#"
policies:
  staff: { rules: [ { allow: staff, when: { domain: example.com } } ] }
routes:
  - name: prod-db
    target: db.internal:22
    policy: staff
  - name: staging
    target: staging.internal:22
    policy: stafff
"#;
    let config: Config = serde_saphyr::from_str(text).expect("config parses");
    let errors = compile(
        &config.policies,
        config.routes.iter().map(|r| (r.name.as_str(), &r.policy)),
    )
    .expect_err("unknown policy");
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].line, errors[0].column), (10, 13));
}

#[test]
fn the_shipped_examples_compile_and_their_table_passes() {
    let set = compiled(include_str!("../../examples/policy.yaml"));
    let table = testing::parse(include_str!("../../examples/policy-tests.yaml"))
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(table.config.as_deref(), Some("policy.yaml"));
    let report = table.run(&set);
    assert!(report.passed(), "{report}");
    assert_eq!(report.total, 12);

    let deploy = set.route("deploy").expect("deploy route");
    assert_eq!(
        deploy.capabilities().force_command(),
        Some("/usr/local/bin/deploy")
    );
    assert_eq!(
        deploy.capabilities().certificate_extensions(),
        Vec::<&str>::new()
    );
}

/// Walks both 2026 DST weekends in Berlin in 7-minute steps and checks,
/// for windows alone, that the decision holds until `next_check` and flips
/// exactly there: never late, and for plain windows never early either.
#[test]
fn next_check_is_exact_across_both_dst_weekends() {
    let set = compiled(TIMES);
    let step = jiff::SignedDuration::from_mins(7);
    let second = jiff::SignedDuration::from_secs(1);
    let mut checked = 0;
    for (start, end) in [
        ("2026-03-27T00:00:00Z", "2026-03-31T00:00:00Z"),
        ("2026-10-23T00:00:00Z", "2026-10-27T00:00:00Z"),
    ] {
        for route in ["office", "night", "gap", "fold", "weekdays"] {
            let at = |t: Timestamp| {
                let who = alice();
                let policy = set.route(route).expect("route");
                evaluate(
                    policy,
                    &Request {
                        identity: &who,
                        login: "postgres",
                        source: IpAddr::from([10, 0, 0, 1]),
                        now: t,
                        session_start: None,
                    },
                )
            };
            let (mut t, end) = (ts(start), ts(end));
            while t < end {
                let d = at(t);
                let next = d.next_check.expect("windows always change");
                assert!(
                    next > t,
                    "{route} at {t}: next_check {next} is not in the future"
                );
                let before = next - second;
                let mid =
                    Timestamp::from_second((t.as_second() + before.as_second()) / 2).expect("time");
                for probe in [t + second, mid, before] {
                    if probe > t && probe < next {
                        assert_eq!(
                            at(probe).allowed,
                            d.allowed,
                            "{route}: at {t} next_check {next}, but it changed by {probe}"
                        );
                    }
                }
                assert_ne!(
                    at(next).allowed,
                    d.allowed,
                    "{route}: at {t} next_check {next} is early: nothing changes then"
                );
                checked += 1;
                t += step;
            }
        }
    }
    assert!(checked > 8000, "{checked}");
}
