//! Decision-time benchmark for the policy language (issue 5).
//!
//! Builds a realistic policy of 50 routes and 200 distinct rules, then:
//!
//! - times single decisions on random routes, identities, logins, source
//!   addresses and times of the week, and reports median and p99;
//! - times re-checking 10,000 live sessions in one sweep, as the gateway's
//!   session registry does.
//!
//! The 200 rules are 50 shared ones (a `baseline` policy every route
//! includes, and nine team policies, each included by several routes) and
//! three of each route's own, with the usual mix of criteria: groups,
//! domains, email suffixes, nested and list claims, logins,
//! `login_matches`, source networks, time-of-day, day-of-week and date
//! windows, identity kinds, `all`/`any`/`not`, and restrict rules that
//! narrow capabilities and obligations. Each route applies 13 rules.
//!
//! Targets: median <= 5 µs; 10,000 re-checks <= 50 ms.
//!
//! Besides the human summary it prints one `key=value` line per figure
//! (`policy_decision_median_ns=…`) for `bench/run.py`'s `policy` step.
//!
//! Run: `cargo run -p policy --release --example bench`

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::IpAddr;
use std::time::Instant;

use policy::lang::{self, Identity, IdentityKind, Request, Timestamp};

const ROUTES: usize = 50;
/// Team policies; route `r` includes `team-{r % TEAMS}`.
const TEAMS: usize = 9;
const SAMPLES: usize = 200_000;
const SESSIONS: usize = 10_000;
const SWEEPS: usize = 20;

/// A small deterministic generator, so runs are comparable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The policy document, and how many distinct rules it defines.
fn policy_yaml() -> (String, usize) {
    let mut rules = 0;
    let mut y = String::from(
        r#"policies:
  baseline:
    description: every route includes this
    obligations: { record: best_effort, max_session: 12h, reauth_every: 4h }
    rules:
      - deny: offboarding
        reason: account is being offboarded
        when: { claim.status: offboarding }
      - deny: blocked-networks
        when: { source_ip: [203.0.113.0/24, "2001:db8::/32"] }
      - restrict: contractors-no-sftp
        when: { groups: contractors }
        capabilities: { sftp: false, port_forward_local: false, agent: false }
      - restrict: partners-recorded
        when: { domain: { in: [partner.io, sre-partner.net] } }
        obligations: { record: strict, max_session: 2h }
      - allow: break-glass
        when:
          all:
            - claim.roles: { has: break-glass }
            - date: { after: 2026-03-01, before: 2026-05-01, timezone: UTC }
"#,
    );
    rules += 5;
    for t in 0..TEAMS {
        write!(
            y,
            r#"  team-{t}:
    rules:
      - allow: team-{t}-office-hours
        when:
          all:
            - groups: {{ has: team-{t} }}
            - day_of_week: {{ days: [mon-fri], timezone: Europe/Berlin }}
            - time_of_day: {{ from: "08:00", to: "19:00", timezone: Europe/Berlin }}
      - allow: team-{t}-on-call
        when:
          all:
            - groups: team-{t}
            - claim.oncall.active: true
            - login_matches: email_local_part
      - allow: team-{t}-leads
        when:
          email: {{ ends_with: "@example.com" }}
          claim.org.title: [lead, manager]
          groups: {{ starts_with: team-{t} }}
      - restrict: team-{t}-interns
        when: {{ groups: team-{t}-interns }}
        capabilities: {{ agent: false, port_forward_local: false }}
        obligations: {{ record_input: true, max_session: 4h }}
      - deny: team-{t}-maintenance
        reason: weekly maintenance window
        when:
          all:
            - day_of_week: {{ days: [sun], timezone: UTC }}
            - time_of_day: {{ from: "02:00", to: "04:00", timezone: UTC }}
            - not: {{ groups: sre }}
"#
        )
        .ok();
        rules += 5;
    }
    y.push_str("routes:\n");
    for r in 0..ROUTES {
        let team = format!("team-{}", r % TEAMS);
        writeln!(y, "  route-{r}:").ok();
        writeln!(y, "    include: [baseline, team-{}]", r % TEAMS).ok();
        writeln!(
            y,
            "    capabilities: {{ port_forward_local: [\"db-{r}.internal:5432\", \"10.{r}.0.0/16:*\"], agent: {} }}",
            r % 3 == 0
        )
        .ok();
        writeln!(y, "    rules:").ok();
        writeln!(
            y,
            r#"      - allow: dba-{r}
        when:
          groups: dba
          source_ip: [10.0.0.0/8, 192.168.0.0/16]
          login: {{ in: [postgres, dba] }}
          not: {{ claim.org.department: sales }}
      - allow: sre-{r}
        when:
          any:
            - groups: [sre, {team}-admins]
            - email: {{ ends_with: "@ops.example.com" }}"#
        )
        .ok();
        match r % 3 {
            0 => writeln!(
                y,
                "      - allow: ci-{r}\n        when: {{ identity_kind: service, login: deploy }}"
            ),
            1 => writeln!(
                y,
                "      - deny: freeze-{r}\n        reason: change freeze\n        when: {{ date: {{ after: 2026-12-20, before: 2027-01-04, timezone: Europe/Berlin }} }}"
            ),
            _ => writeln!(
                y,
                "      - restrict: read-only-{r}\n        when: {{ login: postgres-ro }}\n        capabilities: {{ shell: false, sftp: false }}\n        obligations: {{ cert_ttl: 2m }}"
            ),
        }
        .ok();
        rules += 3;
    }
    (y, rules)
}

fn identities() -> Vec<Identity> {
    let claims = |yaml: &str| serde_saphyr::from_str(yaml).expect("claims");
    let mut out = Vec::new();
    for i in 0..24 {
        let team = format!("team-{}", i % TEAMS);
        let (domain, mut groups) = match i % 6 {
            0 => ("example.com", vec!["sre".to_owned(), team.clone()]),
            1 => ("example.com", vec!["dba".to_owned(), team.clone()]),
            2 => ("partner.io", vec!["contractors".to_owned(), team.clone()]),
            3 => ("ops.example.com", vec![team.clone()]),
            4 => ("example.com", vec![format!("{team}-interns"), team.clone()]),
            _ => ("sre-partner.net", vec!["sre".to_owned()]),
        };
        // People belong to many groups the policy never mentions.
        groups.extend((0..10).map(|g| format!("misc-{g}")));
        out.push(Identity {
            email: Some(format!("user{i}@{domain}")),
            groups,
            claims: claims(&format!(
                "status: {}\noncall: {{ active: {} }}\norg: {{ department: {}, title: {} }}\nroles: [{}]\nemail_verified: true\n",
                if i == 7 { "offboarding" } else { "active" },
                i % 3 == 0,
                if i % 5 == 0 { "sales" } else { "eng" },
                if i % 4 == 0 { "lead" } else { "engineer" },
                if i == 11 { "viewer, break-glass" } else { "viewer" },
            )),
            ..Identity::new(IdentityKind::User, format!("user{i}"))
        });
    }
    // Two registered service keys (CI).
    for i in 0..2 {
        out.push(Identity {
            email: Some(format!("ci{i}@example.com")),
            groups: vec!["ci".to_owned()],
            ..Identity::new(IdentityKind::Service, format!("ci{i}"))
        });
    }
    out
}

fn percentile(sorted: &[u128], p: f64) -> u128 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

fn main() {
    let (yaml, distinct_rules) = policy_yaml();
    let t = Instant::now();
    let set = lang::parse_and_compile(&yaml).unwrap_or_else(|e| {
        for err in e {
            eprintln!("{err}");
        }
        std::process::exit(1);
    });
    let compile_time = t.elapsed();
    let routes: Vec<_> = set.routes().map(|(_, p)| p.clone()).collect();
    // Keep the description honest if the generator changes.
    assert_eq!(routes.len(), ROUTES);
    assert_eq!(distinct_rules, 200);
    let applications: usize = routes.iter().map(|r| r.rule_count()).sum();
    let people = identities();
    let sources: Vec<IpAddr> = vec![
        "10.3.4.5".parse().expect("ip"),
        "192.168.7.1".parse().expect("ip"),
        "198.51.100.9".parse().expect("ip"),
        "203.0.113.9".parse().expect("ip"),
        "::ffff:10.1.1.1".parse().expect("ip"),
    ];
    let logins = ["postgres", "postgres-ro", "dba", "deploy", "user3", "root"];
    // Monday 2026-03-30 00:00 UTC; requests are spread over that week.
    let base = Timestamp::from_second(1_774_828_800).expect("time");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);

    let mut allowed = 0usize;
    let mut times = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let route = &routes[rng.below(routes.len())];
        let who = &people[rng.below(people.len())];
        let now = base
            .checked_add(jiff::SignedDuration::from_secs(rng.below(7 * 86_400) as i64))
            .expect("time");
        let request = Request {
            identity: who,
            login: logins[rng.below(logins.len())],
            source: sources[rng.below(sources.len())],
            now,
            // A session that started half an hour ago, so `reauth_every`
            // and `max_session` are in play but not yet due.
            session_start: Some(now - jiff::SignedDuration::from_mins(30)),
        };
        let t = Instant::now();
        let d = black_box(lang::evaluate(black_box(route), black_box(&request)));
        times.push(t.elapsed().as_nanos());
        allowed += usize::from(d.allowed);
    }
    times.sort_unstable();

    // 10,000 live sessions, re-checked in one sweep.
    let sessions: Vec<(usize, usize, usize, usize)> = (0..SESSIONS)
        .map(|_| {
            (
                rng.below(routes.len()),
                rng.below(people.len()),
                rng.below(logins.len()),
                rng.below(sources.len()),
            )
        })
        .collect();
    // Monday 10:00 UTC: inside office hours, so many sessions are allowed
    // and go all the way through their restrict rules.
    let now = base
        .checked_add(jiff::SignedDuration::from_hours(10))
        .expect("time");
    let mut sweeps = Vec::new();
    let mut still = 0usize;
    for _ in 0..SWEEPS {
        let t = Instant::now();
        still = 0;
        for &(r, p, l, s) in &sessions {
            let d = lang::evaluate(
                &routes[r],
                &Request {
                    identity: &people[p],
                    login: logins[l],
                    source: sources[s],
                    now,
                    session_start: Some(now - jiff::SignedDuration::from_mins(30)),
                },
            );
            still += usize::from(black_box(d).allowed);
        }
        black_box(still);
        sweeps.push(t.elapsed());
    }
    sweeps.sort_unstable();

    let median_ns = percentile(&times, 0.5);
    let p99_ns = percentile(&times, 0.99);
    let max_ns = times.last().copied().unwrap_or(0);
    let sweep_ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let recheck_median_ms = sweep_ms(sweeps[sweeps.len() / 2]);
    let recheck_worst_ms = sweeps.last().map_or(0.0, |d| sweep_ms(*d));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());

    println!("policy decision benchmark (issue 5)");
    println!("  machine: {cores} cores, {}", std::env::consts::ARCH);
    println!(
        "  policy: {} routes, {distinct_rules} distinct rules ({applications} rule applications over all routes), compiled in {:.2} ms",
        routes.len(),
        compile_time.as_secs_f64() * 1e3
    );
    println!(
        "  decisions: {SAMPLES} samples over a week, {:.1}% allowed",
        allowed as f64 * 100.0 / SAMPLES as f64
    );
    println!(
        "  decision time: median {:.2} µs, p99 {:.2} µs, max {:.2} µs (target: median <= 5 µs; includes two clock reads)",
        median_ns as f64 / 1e3,
        p99_ns as f64 / 1e3,
        max_ns as f64 / 1e3
    );
    println!(
        "  re-check {SESSIONS} sessions ({:.1}% still allowed): median {recheck_median_ms:.2} ms, worst {recheck_worst_ms:.2} ms of {SWEEPS} sweeps (target: <= 50 ms)",
        still as f64 * 100.0 / SESSIONS as f64
    );
    // Machine-readable, one figure per line, for bench/run.py.
    println!("policy_routes={}", routes.len());
    println!("policy_rules={distinct_rules}");
    println!("policy_rule_applications={applications}");
    println!("policy_compile_ms={:.3}", compile_time.as_secs_f64() * 1e3);
    println!("policy_decision_samples={SAMPLES}");
    println!(
        "policy_decision_allowed_pct={:.1}",
        allowed as f64 * 100.0 / SAMPLES as f64
    );
    println!("policy_decision_median_ns={median_ns}");
    println!("policy_decision_p99_ns={p99_ns}");
    println!("policy_decision_max_ns={max_ns}");
    println!("policy_recheck_sessions={SESSIONS}");
    println!("policy_recheck_sweeps={SWEEPS}");
    println!(
        "policy_recheck_allowed_pct={:.1}",
        still as f64 * 100.0 / SESSIONS as f64
    );
    println!("policy_recheck_median_ms={recheck_median_ms:.3}");
    println!("policy_recheck_worst_ms={recheck_worst_ms:.3}");
    println!("policy_cores={cores}");
}
