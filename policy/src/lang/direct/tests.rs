//! Table-driven tests of the direct-access dialect (issue 16).

use std::net::IpAddr;

use super::super::{IdentityKind, Timestamp};
use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse()
        .unwrap_or_else(|e| panic!("bad timestamp {s} in test: {e}"))
}

/// A Monday, 10:00 in Berlin.
const MONDAY_10_BERLIN: &str = "2026-03-30T08:00:00Z";

fn logins(list: &[&str]) -> Vec<String> {
    list.iter().map(|l| (*l).to_owned()).collect()
}

/// The routes every test compiles against: `prod-db` offers only
/// `postgres` and `dba`; `web` offers any login.
fn with_routes<T>(f: impl FnOnce(&[KnownRoute<'_>]) -> T) -> T {
    let db = logins(&["postgres", "dba"]);
    let routes = [
        KnownRoute {
            name: "prod-db",
            logins: &db,
        },
        KnownRoute {
            name: "web",
            logins: &[],
        },
    ];
    f(&routes)
}

fn compiled(yaml: &str) -> CompiledDirectAccess {
    with_routes(|routes| parse_and_compile_direct(yaml, routes)).unwrap_or_else(|errors| {
        panic!(
            "direct_access did not compile:\n{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn errors(yaml: &str) -> Vec<String> {
    match with_routes(|routes| parse_and_compile_direct(yaml, routes)) {
        Ok(_) => panic!("compiled, but should not:\n{yaml}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn user(email: &str, groups: &[&str]) -> Identity {
    Identity {
        email: Some(email.to_owned()),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        ..Identity::new(IdentityKind::User, format!("sub-{email}"))
    }
}

fn ask(
    policy: &CompiledDirectAccess,
    who: &Identity,
    from: &str,
    at: &str,
) -> Result<DirectGrant, DirectDenial> {
    evaluate_direct(
        policy,
        &DirectRequest {
            identity: who,
            source: from.parse::<IpAddr>().expect("ip in test"),
            now: ts(at),
        },
    )
}

const POLICY: &str = "
rules:
  - allow: dba-direct
    when: { groups: dba }
    routes: [prod-db]
    logins: [postgres, dba]
    ttl: 2h
    extensions: [permit-pty, permit-port-forwarding]
  - allow: web-admins
    when: { groups: web }
    routes: web
    logins: root
  - deny: outside-vpn
    reason: direct access only from the VPN
    when: { not: { source_ip: 10.0.0.0/8 } }
";

#[test]
fn grants_are_the_principals_of_every_matching_allow_rule() {
    let policy = compiled(POLICY);
    assert_eq!(policy.rule_count(), 3);
    // (groups, principals, ttl in seconds, extensions)
    type Case<'a> = (&'a [&'a str], &'a [&'a str], u64, &'a [&'a str]);
    let cases: &[Case<'_>] = &[
        (
            &["dba"],
            &["dba@prod-db", "postgres@prod-db"],
            2 * 3600,
            &["permit-port-forwarding", "permit-pty"],
        ),
        (&["web"], &["root@web"], 3600, &["permit-pty"]),
        // Two rules: the union of principals and extensions, the shorter
        // lifetime.
        (
            &["dba", "web"],
            &["dba@prod-db", "postgres@prod-db", "root@web"],
            3600,
            &["permit-port-forwarding", "permit-pty"],
        ),
    ];
    for (groups, principals, ttl, extensions) in cases {
        let who = user("alice@example.com", groups);
        let grant = ask(&policy, &who, "10.1.2.3", MONDAY_10_BERLIN)
            .unwrap_or_else(|d| panic!("{groups:?} denied: {}", d.reason));
        assert_eq!(grant.principals, *principals, "{groups:?}");
        assert_eq!(grant.ttl, Duration::from_secs(*ttl), "{groups:?}");
        assert_eq!(grant.ttl_limit, TtlLimit::Rule, "{groups:?}");
        assert_eq!(grant.extensions, *extensions, "{groups:?}");
    }
    assert_eq!(
        policy
            .grantable()
            .iter()
            .map(DirectPair::principal)
            .collect::<Vec<_>>(),
        ["dba@prod-db", "postgres@prod-db", "root@web"]
    );
}

#[test]
fn refusals_name_the_deny_rule_or_what_was_missing() {
    let policy = compiled(POLICY);
    let dba = user("alice@example.com", &["dba"]);
    let denied = ask(&policy, &dba, "192.0.2.1", MONDAY_10_BERLIN).expect_err("outside the VPN");
    assert_eq!(denied.rule.as_deref(), Some("outside-vpn"));
    assert_eq!(&*denied.reason, "direct access only from the VPN");

    let nobody = user("mallory@example.com", &["interns"]);
    let denied = ask(&policy, &nobody, "10.1.2.3", MONDAY_10_BERLIN).expect_err("no grant");
    assert_eq!(denied.rule, None);
    assert!(denied.reason.contains("dba"), "{}", denied.reason);

    let empty = CompiledDirectAccess::default();
    let denied = ask(&empty, &dba, "10.1.2.3", MONDAY_10_BERLIN).expect_err("no rules");
    assert_eq!(&*denied.reason, NO_RULE_GRANTS);
}

#[test]
fn the_lifetime_never_passes_the_sign_in_nor_a_window_edge() {
    let policy = compiled(POLICY);
    let mut who = user("alice@example.com", &["dba"]);

    // The binding ends in 30 minutes: so does the certificate.
    who.binding_expires = Some(ts("2026-03-30T08:30:00Z"));
    let grant = ask(&policy, &who, "10.1.2.3", MONDAY_10_BERLIN).expect("granted");
    assert_eq!(grant.ttl, Duration::from_secs(1800));
    assert_eq!(grant.ttl_limit, TtlLimit::SignIn);

    // Expired: refused.
    who.binding_expires = Some(ts("2026-03-30T07:59:59Z"));
    let denied = ask(&policy, &who, "10.1.2.3", MONDAY_10_BERLIN).expect_err("expired");
    assert_eq!(&*denied.reason, SIGN_IN_EXPIRED);

    // A window that closes at 10:15 Berlin ends the certificate there.
    let windowed = compiled(
        r#"
rules:
  - allow: office
    when:
      time_of_day: { from: "09:00", to: "10:15", timezone: Europe/Berlin }
    routes: web
    logins: deploy
    ttl: 4h
"#,
    );
    let who = user("bob@example.com", &[]);
    let grant = ask(&windowed, &who, "10.1.2.3", MONDAY_10_BERLIN).expect("granted");
    assert_eq!(grant.ttl, Duration::from_secs(15 * 60));
    assert_eq!(grant.ttl_limit, TtlLimit::TimeWindow);
}

#[test]
fn max_ttl_bounds_rules_and_defaults() {
    let policy = compiled(
        "
max_ttl: 30m
rules:
  - allow: short
    when: { all: [] }
    routes: web
    logins: deploy
",
    );
    assert_eq!(policy.max_ttl(), Duration::from_secs(1800));
    let who = user("bob@example.com", &[]);
    let grant = ask(&policy, &who, "10.1.2.3", MONDAY_10_BERLIN).expect("granted");
    // The default `ttl` (1h) is longer than `max_ttl`: max_ttl it is.
    assert_eq!(grant.ttl, Duration::from_secs(1800));
    assert_eq!(CompiledDirectAccess::default().max_ttl(), MAX_DIRECT_TTL);
}

#[test]
fn extension_sets() {
    let cases: &[(&str, &[&str])] = &[
        ("", &["permit-pty"]),
        ("extensions: []", &[]),
        ("extensions: permit-user-rc", &["permit-user-rc"]),
        (
            "extensions: [permit-pty, permit-agent-forwarding, permit-X11-forwarding, permit-user-rc, permit-port-forwarding]",
            // OpenSSH's order: sorted by name, capitals first.
            &[
                "permit-X11-forwarding",
                "permit-agent-forwarding",
                "permit-port-forwarding",
                "permit-pty",
                "permit-user-rc",
            ],
        ),
    ];
    let who = user("bob@example.com", &[]);
    for (line, want) in cases {
        let yaml = format!(
            "rules:\n  - allow: r\n    when: {{all: []}}\n    routes: web\n    logins: deploy\n    {line}\n"
        );
        let grant = ask(&compiled(&yaml), &who, "10.1.2.3", MONDAY_10_BERLIN).expect("granted");
        assert_eq!(grant.extensions, *want, "{line}");
    }
}

#[test]
fn compile_errors_have_line_and_column() {
    let cases: &[(&str, &str)] = &[
        (
            "rules:\n  - allow: r\n    when: {all: []}\n    routes: nowhere\n    logins: x\n",
            "4:13: unknown route `nowhere`; routes are: prod-db, web",
        ),
        (
            "rules:\n  - allow: r\n    when: {all: []}\n    routes: prod-db\n    logins: [postgres, root]\n",
            "5:24: route `prod-db` does not offer login `root`",
        ),
        (
            "rules:\n  - allow: r\n    when: {all: []}\n    routes: web\n    logins: x\n    ttl: 9h\n",
            "6:10: `ttl` is at most 8h",
        ),
        (
            "max_ttl: 2d\nrules: []\n",
            "1:10: `max_ttl` is at most 1day",
        ),
        (
            "rules:\n  - allow: r\n    when: {all: []}\n    routes: web\n    logins: x\n    ttl: soon\n",
            "6:10: `ttl`: `soon` is not a duration",
        ),
        (
            "rules:\n  - allow: r\n    when: {all: []}\n    routes: web\n    logins: x\n    extensions: [pty]\n",
            "6:18: unknown extension `pty` (did you mean `permit-pty`?)",
        ),
        (
            "rules:\n  - allow: r\n    when: {all: []}\n    routes: web\n    logins: a@b\n",
            "5:13: bad logins entry \"a@b\"",
        ),
        (
            "rules:\n  - allow: r\n    when: {login: root}\n    routes: web\n    logins: x\n",
            "3:12: `login` means nothing in direct_access",
        ),
        (
            "rules:\n  - allow: r\n    when: {all: []}\n    logins: x\n",
            "2:12: allow rule `r` needs `routes:`",
        ),
        (
            "rules:\n  - deny: d\n    when: {all: []}\n    ttl: 1h\n",
            "4:10: a deny rule grants nothing, so it takes no `ttl`",
        ),
        (
            "rules:\n  - allow: r\n    routes: web\n    logins: x\n",
            "2:12: rule `r` needs a `when:` condition",
        ),
        (
            "rules:\n  - allow: r\n    when: {all: []}\n    routes: web\n    logins: x\n  - allow: r\n    when: {all: []}\n    routes: web\n    logins: z\n",
            "6:12: rule `r` is named twice in direct_access",
        ),
        (
            "rules:\n  - allow: r\n    colour: blue\n",
            "3:5: unknown field `colour`",
        ),
    ];
    for (yaml, want) in cases {
        let got = errors(yaml);
        assert!(
            got.iter().any(|e| e.starts_with(want)),
            "{yaml}\nwant an error starting {want:?}, got:\n{}",
            got.join("\n")
        );
    }
}
