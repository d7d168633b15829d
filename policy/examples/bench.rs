//! Decision-time benchmark for the policy language (issue 5).
//!
//! Builds a realistic policy of 50 routes and 200 rules (shared policies
//! included by several routes, plus each route's own rules, with groups,
//! domains, claims, logins, source networks and time windows), then:
//!
//! - times single decisions on random routes and reports median and p99;
//! - times re-checking 10,000 live sessions, as the gateway's registry does.
//!
//! Targets: median <= 5 µs; 10,000 re-checks <= 50 ms.
//!
//! Run: `cargo run -p policy --release --example bench`

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::IpAddr;
use std::time::Instant;

use policy::lang::{self, Identity, IdentityKind, Request, Timestamp};

const ROUTES: usize = 50;
const SAMPLES: usize = 200_000;
const SESSIONS: usize = 10_000;

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

fn policy_yaml() -> String {
    let mut y = String::from(
        r#"policies:
  staff:
    obligations: { record: best_effort, max_session: 8h, reauth_every: 1h }
    rules:
      - deny: offboarding
        when: { claim.status: offboarding }
      - allow: staff-office-hours
        when:
          all:
            - domain: example.com
            - day_of_week: { days: [mon-fri], timezone: Europe/Berlin }
            - time_of_day: { from: "08:00", to: "19:00", timezone: Europe/Berlin }
  contractors:
    rules:
      - restrict: contractors-no-sftp
        when: { groups: contractors }
        capabilities: { sftp: false, port_forward_local: false }
routes:
"#,
    );
    // Every route includes both shared policies (3 rules) and has one rule
    // of its own: 50 routes x 4 = 200 rules applied.
    let mut total = 0;
    for r in 0..ROUTES {
        writeln!(y, "  route-{r}:").ok();
        writeln!(y, "    include: [staff, contractors]").ok();
        writeln!(
            y,
            "    capabilities: {{ port_forward_local: [\"db-{r}.internal:5432\", \"10.{r}.0.0/16:*\"], agent: {} }}",
            r % 3 == 0
        )
        .ok();
        writeln!(y, "    rules:").ok();
        total += 3;
        let team = format!("team-{}", r % 10);
        match r % 4 {
            0 => writeln!(
                y,
                "      - allow: {team}-on-call\n        when:\n          all:\n            - groups: {{ has: {team} }}\n            - claim.oncall.active: true\n            - login_matches: email_local_part"
            ),
            1 => writeln!(
                y,
                "      - allow: sre-anywhere\n        when:\n          any:\n            - groups: [sre, {team}]\n            - email: {{ ends_with: \"@ops.example.com\" }}"
            ),
            2 => writeln!(
                y,
                "      - deny: maintenance-{r}\n        when: {{ time_of_day: {{ from: \"02:00\", to: \"03:00\", timezone: UTC }} }}"
            ),
            _ => writeln!(
                y,
                "      - allow: vpn-dba-{r}\n        when:\n          groups: dba\n          source_ip: [10.0.0.0/8, 192.168.0.0/16]\n          login: {{ in: [postgres, dba] }}\n          not: {{ claim.org.department: sales }}"
            ),
        }
        .ok();
        total += 1;
    }
    // Keep the count honest if the generator changes.
    assert_eq!(total, 200);
    y
}

fn identities() -> Vec<Identity> {
    let claims = |yaml: &str| serde_saphyr::from_str(yaml).expect("claims");
    let mut out = Vec::new();
    for i in 0..20 {
        let team = format!("team-{}", i % 10);
        let (domain, mut groups) = match i % 4 {
            0 => ("example.com", vec!["sre".to_owned(), team.clone()]),
            1 => ("example.com", vec!["dba".to_owned(), team.clone()]),
            2 => ("partner.io", vec!["contractors".to_owned()]),
            _ => ("ops.example.com", vec![team.clone()]),
        };
        groups.extend((0..10).map(|g| format!("misc-{g}")));
        out.push(Identity {
            email: Some(format!("user{i}@{domain}")),
            groups,
            claims: claims(&format!(
                "status: {}\noncall: {{ active: {} }}\norg: {{ department: {} }}\nroles: [a, b, c]\n",
                if i == 7 { "offboarding" } else { "active" },
                i % 3 == 0,
                if i % 5 == 0 { "sales" } else { "eng" }
            )),
            ..Identity::new(IdentityKind::User, format!("user{i}"))
        });
    }
    out
}

fn percentile(sorted: &[u128], p: f64) -> u128 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

fn main() {
    let yaml = policy_yaml();
    let t = Instant::now();
    let set = lang::parse_and_compile(&yaml).unwrap_or_else(|e| {
        for err in e {
            eprintln!("{err}");
        }
        std::process::exit(1);
    });
    let compile_time = t.elapsed();
    let routes: Vec<_> = set.routes().map(|(_, p)| p.clone()).collect();
    let rules: usize = routes.iter().map(|r| r.rule_count()).sum();
    let people = identities();
    let sources: Vec<IpAddr> = vec![
        "10.3.4.5".parse().expect("ip"),
        "192.168.7.1".parse().expect("ip"),
        "203.0.113.9".parse().expect("ip"),
        "::ffff:10.1.1.1".parse().expect("ip"),
    ];
    let logins = ["postgres", "dba", "user3", "root"];
    // Monday 2026-03-30, spread over the day.
    let base = Timestamp::from_second(1_774_857_600).expect("time");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);

    let mut allowed = 0usize;
    let mut times = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let route = &routes[rng.below(routes.len())];
        let who = &people[rng.below(people.len())];
        let now = base
            .checked_add(jiff::SignedDuration::from_secs(rng.below(86_400) as i64))
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
    let now = base
        .checked_add(jiff::SignedDuration::from_hours(10))
        .expect("time");
    let mut sweeps = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let mut still = 0usize;
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

    println!("policy decision benchmark (issue 5)");
    println!(
        "  machine: {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::consts::ARCH
    );
    println!(
        "  policy: {} routes, {rules} rule applications, compiled in {:.2} ms",
        routes.len(),
        compile_time.as_secs_f64() * 1e3
    );
    println!(
        "  decisions: {SAMPLES} samples, {:.1}% allowed",
        allowed as f64 * 100.0 / SAMPLES as f64
    );
    println!(
        "  decision time: median {:.2} µs, p99 {:.2} µs, max {:.2} µs (target: median <= 5 µs)",
        percentile(&times, 0.5) as f64 / 1e3,
        percentile(&times, 0.99) as f64 / 1e3,
        times.last().copied().unwrap_or(0) as f64 / 1e3
    );
    println!(
        "  re-check {SESSIONS} sessions: median {:.2} ms, worst {:.2} ms of 20 sweeps (target: <= 50 ms)",
        sweeps[sweeps.len() / 2].as_secs_f64() * 1e3,
        sweeps.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
}
