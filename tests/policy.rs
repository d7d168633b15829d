//! Policy and continuous authorization (issue 5), end to end: real `ssh`,
//! `sftp` and `sshd`, the gateway re-checking live sessions and ending the
//! ones the policy no longer allows.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::{ALLOW_OPS, Gateway, LOGIN, World, bin, policy, run};
use sshd_test::ChildGuard;

/// An `ssh` that runs `sleep 60` on `route` in the background, once it is
/// known to be running (its output says so).
fn long_session(w: &World, gw: &Gateway, route: &str) -> ChildGuard {
    let cmd = w.ssh_command(
        &w.client_key,
        gw,
        &format!("{LOGIN}@{route}"),
        &["echo running; exec sleep 60"],
    );
    let child = ChildGuard::spawn(cmd).expect("spawn ssh");
    child
        .wait_for_output("running", Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("the session did not start: {e}\n{}", child.stderr_text()));
    child
}

/// Waits for `child` to end; returns its exit code, stderr and when it ended.
fn ended(child: &mut ChildGuard, within: Duration) -> (i32, String, Instant) {
    let status = child
        .wait_exit(within)
        .unwrap_or_else(|| panic!("the session was not ended:\n{}", child.stderr_text()));
    let at = Instant::now();
    std::thread::sleep(Duration::from_millis(50));
    (status.code().unwrap_or(-1), child.stderr_text(), at)
}

/// Rewrites the config `good` so that only group sre (not alice) may use
/// its routes.
fn only_sre(config: &Path, good: &str) {
    std::fs::write(
        config,
        good.replace(ALLOW_OPS, "{allow: sre, when: {groups: sre}}"),
    )
    .unwrap();
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn gatehouse(args: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(bin());
    c.args(args);
    run(c, Duration::from_secs(30))
}

/// The id of the only live session in the gateway's audit log.
fn session_id(gw: &Gateway) -> String {
    let line = gw.wait_for_log("event=\"auth.accepted\"");
    let log = gw.log();
    let line = log
        .lines()
        .find(|l| l.contains("event=\"auth.accepted\""))
        .unwrap_or(&line);
    line.split("session_id=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(|id| id.trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("no session_id in {line:?}"))
}

#[test]
fn a_session_ends_when_its_time_window_closes() {
    let w = World::new();
    // Allowed until a few seconds from now, a whole second as RFC 3339
    // writes it.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    let close = SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs() + 6);
    let gw = w.start(&[w.route(
        "window",
        &format!(
            "policy: {{rules: [{{allow: ops-for-now, when: {{all: [{{groups: ops}}, {{date: {{before: \"{}\"}}}}]}}}}]}}",
            rfc3339(close)
        ),
    )]);
    let mut child = long_session(&w, &gw, "window");
    let (code, stderr, at) = ended(&mut child, Duration::from_secs(20));
    assert_eq!(code, 255, "{stderr}");
    assert!(
        stderr.contains("gatehouse: session ended: access revoked (route window: only before "),
        "{stderr}"
    );
    // Ended at the window's edge (next-check time), not at the 30 s sweep.
    let ended_at = SystemTime::now() - at.elapsed();
    let late = ended_at
        .duration_since(close)
        .unwrap_or_else(|early| panic!("ended {:?} before the window closed", early.duration()));
    eprintln!("ended {late:?} after the window closed");
    assert!(
        late < Duration::from_secs(2),
        "ended {late:?} after the window closed"
    );
    let log = gw.wait_for_log("event=\"session.ended\"");
    assert!(log.contains("cause=\"policy\""), "{log}");
}

/// Issue 10: a denial shown before login travels as keyboard-interactive
/// text, which OpenSSH prints with `\ooo` escapes for non-ASCII bytes in a
/// non-UTF-8 locale. The time window's en dash must arrive readable.
#[test]
fn a_time_window_denial_reaches_the_client_readable() {
    let w = World::new();
    // A ten-minute window that starts two hours from now (UTC), so it is
    // closed now whatever the time of day.
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let hhmm = |s: u64| format!("{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60);
    let (from, to) = (hhmm(secs + 7200), hhmm(secs + 7800));
    let gw = w.start(&[w.route(
        "window",
        &format!(
            "policy: {{rules: [{{allow: ops-later, when: {{time_of_day: {{from: \"{from}\", to: \"{to}\", timezone: UTC}}}}}}]}}"
        ),
    )]);
    let mut cmd = w.ssh_command(&w.client_key, &gw, &format!("{LOGIN}@window"), &["true"]);
    // The C locale, where OpenSSH escapes what is not ASCII.
    cmd.env("LC_ALL", "C").env_remove("LANG");
    let (code, _, err) = run(cmd, Duration::from_secs(30));
    assert_eq!(code, 255, "{err}");
    let want = format!("gatehouse: access denied: route window: outside {from}-{to} UTC");
    assert!(err.contains(&want), "{err}");
    assert!(
        !err.contains('\\'),
        "escaped bytes reached the client: {err}"
    );
}

#[test]
fn a_config_change_that_excludes_the_user_ends_the_session_and_a_bad_one_is_rejected() {
    let w = World::new();
    let config = w.write_config(&[w.route("p", "")], "");
    let gw = Gateway::start(&config);
    let mut child = long_session(&w, &gw, "p");

    // A broken file is rejected with its position; the session goes on.
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        good.replace("groups: ops", "groups: {is: ops, bogus: 1}"),
    )
    .unwrap();
    let log = gw.wait_for_log("event=\"config.rejected\"");
    assert!(log.contains("gatehouse.yaml:"), "{log}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.is_running(),
        "a rejected config must not end sessions"
    );

    // Now only group sre may use the route: alice (ops) is out.
    let changed = Instant::now();
    only_sre(&config, &good);
    let (code, stderr, at) = ended(&mut child, Duration::from_secs(10));
    assert_eq!(code, 255, "{stderr}");
    assert!(
        stderr.contains("gatehouse: session ended: access revoked (route p: requires group sre)"),
        "{stderr}"
    );
    let took = at - changed;
    eprintln!("ended {took:?} after the config file changed");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let log = gw.log();
    assert!(log.contains("event=\"config.reloaded\""), "{log}");
    // New connections follow the new policy too.
    let (code, _, err) = w.ssh(&gw, &format!("{LOGIN}@p"), &["true"]);
    assert_eq!(code, 255);
    assert!(err.contains("route p: requires group sre"), "{err}");
}

#[test]
fn sighup_reloads_the_config() {
    let w = World::new();
    let config = w.write_config(&[w.route("p", "")], "");
    let gw = Gateway::start(&config);
    let mut child = long_session(&w, &gw, "p");
    // The file changes and the signal follows at once, before the file
    // poll would notice: whichever comes first reloads.
    let good = std::fs::read_to_string(&config).unwrap();
    only_sre(&config, &good);
    gw.child.signal("HUP").unwrap();
    let (code, stderr, _) = ended(&mut child, Duration::from_secs(10));
    assert_eq!(code, 255, "{stderr}");
    assert!(stderr.contains("requires group sre"), "{stderr}");
    let log = gw.wait_for_log("event=\"config.reloaded\"");
    assert!(
        log.contains("trigger=\"sighup\"") || log.contains("trigger=\"file_changed\""),
        "{log}"
    );
}

#[test]
fn sessions_kill_ends_a_live_session_within_two_seconds_and_marks_its_recording() {
    let w = World::new();
    let config = w.write_config(&[w.route("p", "")], "");
    let gw = Gateway::start(&config);
    let mut child = long_session(&w, &gw, "p");
    let id = session_id(&gw);
    let config_s = config.to_str().unwrap();

    let asked = Instant::now();
    let (code, out, err) = gatehouse(&[
        "sessions",
        "kill",
        "-c",
        config_s,
        &id,
        "--reason",
        "incident 4711",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("session {id} ended")), "{out}");
    let (code, stderr, at) = ended(&mut child, Duration::from_secs(5));
    let took = at - asked;
    eprintln!("ended {took:?} after sessions kill was asked");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(code, 255, "{stderr}");
    assert!(
        stderr.contains("gatehouse: session ended by an administrator: incident 4711"),
        "{stderr}"
    );
    let log = gw.wait_for_log("cause=\"killed\"");
    assert!(log.contains("event=\"session.ended\""), "{log}");

    // The recording says why it ends where it does.
    let deadline = Instant::now() + Duration::from_secs(20);
    let cast = loop {
        let (code, out, _) = gatehouse(&["recordings", "export", "-c", config_s, &id]);
        if code == 0 {
            break out;
        }
        assert!(Instant::now() < deadline, "recording never sealed");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        cast.contains("gatehouse.ended gatehouse: session ended by an administrator"),
        "{cast}"
    );

    // A session that is not live gets its own answer.
    let (code, out, _) = gatehouse(&["sessions", "kill", "-c", config_s, "nope"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no live session nope"), "{out}");
}

#[test]
fn capabilities_are_enforced_by_the_gateway_and_the_certificate() {
    let w = World::new();
    let gw = w.start(&[
        w.route("nosftp", &policy("capabilities: {sftp: false}")),
        w.route(
            "noshell",
            &policy("capabilities: {shell: false, exec: false}"),
        ),
        w.route(
            "forced",
            &policy("capabilities: {exec: {only: \"echo forced-command-ran\"}}"),
        ),
    ]);

    // sftp refused, with its line.
    std::fs::write(w.path("batch"), "ls\n").unwrap();
    let (code, _, err) = w.sh(
        &gw,
        &format!("sftp $SCP_OPTS -b batch {LOGIN}@nosftp@$GW"),
        Duration::from_secs(30),
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("gatehouse: the sftp subsystem is not allowed on route nosftp"),
        "{err}"
    );
    // The same route still runs commands.
    let (code, out, err) = w.ssh(&gw, &format!("{LOGIN}@nosftp"), &["echo", "ok"]);
    assert_eq!((code, out.trim()), (0, "ok"), "{err}");

    let (code, _, err) = w.ssh(&gw, &format!("{LOGIN}@noshell"), &["echo", "ok"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("gatehouse: running commands is not allowed on route noshell"),
        "{err}"
    );

    // force-command: sshd runs the one allowed command whatever is asked.
    let (code, out, err) = w.ssh(&gw, &format!("{LOGIN}@forced"), &["echo", "something-else"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "forced-command-ran");
    let log = gw.wait_for_log("event=\"exec.forced\"");
    assert!(log.contains("forced=echo forced-command-ran"), "{log}");
}

#[test]
fn policy_check_and_policy_test_answer_from_the_config() {
    let w = World::new();
    let config = w.write_config(
        &[w.route(
            "prod",
            "policy: {capabilities: {sftp: false}, rules: [{allow: ops, when: {groups: ops}}, {deny: night, reason: closed at night, when: {time_of_day: {from: \"22:00\", to: \"06:00\", timezone: Europe/Berlin}}}]}",
        )],
        "",
    );
    let c = config.to_str().unwrap();
    let (code, out, err) = gatehouse(&[
        "policy",
        "check",
        "-c",
        c,
        "--route",
        "prod",
        "--login",
        LOGIN,
        "--email",
        "a@example.com",
        "--groups",
        "ops,dev",
        "--at",
        "2026-03-30T10:00:00+02:00",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("decision:     allow"), "{out}");
    assert!(out.contains("rule:         ops"), "{out}");
    assert!(!out.contains("sftp"), "{out}");
    assert!(out.contains("certificate:  permit-pty"), "{out}");
    assert!(out.contains("next check:   2026-03-30T20:00:00Z"), "{out}");

    let (code, out, _) = gatehouse(&[
        "policy",
        "check",
        "-c",
        c,
        "--route",
        "prod",
        "--login",
        LOGIN,
        "--groups",
        "ops",
        "--at",
        "2026-03-30T23:30:00+02:00",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("decision:     deny"), "{out}");
    assert!(out.contains("reason:       closed at night"), "{out}");

    let table = w.path("policy-tests.yaml");
    std::fs::write(
        &table,
        format!(
            "config: gatehouse.yaml
defaults: {{login: {LOGIN}, groups: [ops], at: \"2026-03-30T10:00:00+02:00\"}}
cases:
  - {{name: ops by day, route: prod, expect: allow, capabilities: {{sftp: false, shell: true}}}}
  - {{name: ops at night, route: prod, at: \"2026-03-30T23:00:00+02:00\", expect: deny, rule: night}}
  - {{name: wrong on purpose, route: prod, groups: [dev], expect: allow}}
"
        ),
    )
    .unwrap();
    let (code, out, _) = gatehouse(&["policy", "test", table.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("wrong on purpose: expected allow, got deny"),
        "{out}"
    );
    assert!(out.contains("2 passed, 1 failed"), "{out}");
}

/// Issue 10: two gateways on one state directory. A kill request is
/// addressed to the gateway that holds the session and answered by it; the
/// other, polling the same database every half second, neither ends
/// anything nor answers "not found" first.
#[test]
fn with_two_gateways_on_one_state_dir_the_holder_answers_a_kill() {
    let w = World::new();
    let config_a = w.write_config(
        &[w.route("p", "")],
        "gateway_id: gw-a\nrecording:\n  spool_dir: spool-a\n",
    );
    let config_b = w.path("b.yaml");
    std::fs::write(
        &config_b,
        std::fs::read_to_string(&config_a)
            .unwrap()
            .replace("gw-a", "gw-b")
            .replace("spool-a", "spool-b"),
    )
    .unwrap();
    let gw_a = Gateway::start(&config_a);
    let gw_b = Gateway::start(&config_b);
    // The session lives on gateway B; gateway A starts first and polls
    // the shared database the whole time.
    let mut on_b = long_session(&w, &gw_b, "p");
    let mut on_a = long_session(&w, &gw_a, "p");
    let id_b = session_id(&gw_b);

    // Asked through A's configuration: the store knows B holds it.
    let (code, out, err) = gatehouse(&[
        "sessions",
        "kill",
        "-c",
        config_a.to_str().unwrap(),
        &id_b,
        "--reason",
        "two gateways",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("session {id_b} ended")), "{out}");
    let (code, stderr, _) = ended(&mut on_b, Duration::from_secs(5));
    assert_eq!(code, 255, "{stderr}");
    assert!(
        stderr.contains("session ended by an administrator: two gateways"),
        "{stderr}"
    );
    gw_b.wait_for_log("event=\"session.kill_answered\"");
    let log_b = gw_b.log();
    let answered = log_b
        .lines()
        .find(|l| l.contains("event=\"session.kill_answered\""))
        .unwrap_or_default();
    assert!(answered.contains("outcome=\"ended\""), "{answered}");
    assert!(
        answered.contains(&format!("session_id={id_b}")),
        "{answered}"
    );
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        !gw_a.log().contains("session.kill_answered"),
        "the gateway that does not hold the session answered:\n{}",
        gw_a.log()
    );
    assert!(on_a.is_running(), "A's own session was touched");

    // Once ended, the session is no longer live anywhere.
    let (code, out, _) = gatehouse(&["sessions", "kill", "-c", config_a.to_str().unwrap(), &id_b]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("no live session {id_b}")), "{out}");
}

/// The web access policy (`web.access`) as `policy check --viewer` asks it:
/// a recording given on the command line, or one from the recording index.
#[test]
fn policy_check_viewer_answers_from_web_access() {
    let dir = tempfile::tempdir().unwrap();
    let mut init = Command::new(bin());
    init.args(["ca", "init", "--key"])
        .arg(dir.path().join("user_ca"));
    let (code, out, err) = run(init, Duration::from_secs(10));
    assert_eq!(code, 0, "{out}{err}");
    let config = dir.path().join("gatehouse.yaml");
    std::fs::write(
        &config,
        "user_ca: user_ca
state_dir: state
idp: {issuer: https://idp.example.com, client_id: gatehouse}
web:
  listen: 127.0.0.1:0
  public_url: http://127.0.0.1:8443
  plain_http: true
  access:
    rules:
      - allow: own-sessions
        when: { own: true }
        capabilities: [list, play]
      - allow: auditors
        when: { groups: auditors }
        capabilities: [list, play, search, download, watch_live]
      - allow: break-glass
        when: { groups: sre }
        capabilities: all
        obligations: { require_reason: true }
      - deny: no-prod-db-for-contractors
        when: { all: [ { groups: contractors }, { route: prod-db } ] }
",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let (code, out, err) = gatehouse(&["check-config", c]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("warning:"), "{out}");
    // Without rules, check-config says that nobody sees anything.
    let bare = dir.path().join("bare.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&bare, &text[..text.find("  access:").unwrap()]).unwrap();
    let (code, out, err) = gatehouse(&["check-config", bare.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("warning: web.access has no rules, so no viewer may see any recording"),
        "{out}"
    );
    let viewer = |args: &[&str]| {
        let mut all = vec!["policy", "check", "-c", c, "--at", "2026-03-30T10:00:00Z"];
        all.extend_from_slice(args);
        gatehouse(&all)
    };
    let recording = [
        "--route",
        "prod-db",
        "--login",
        "postgres",
        "--recorded-user",
        "bob@example.com",
    ];
    let with = |extra: &[&'static str]| -> Vec<&str> {
        let mut v: Vec<&str> = extra.to_vec();
        v.extend_from_slice(&recording);
        v
    };

    // An auditor who is also in sre: no reason needed but for end_session.
    let (code, out, err) = viewer(&with(&[
        "--viewer",
        "carol@example.com",
        "--groups",
        "auditors,sre",
        "--capability",
        "end_session",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("recording:    route prod-db, login postgres, recorded user bob@example.com"),
        "{out}"
    );
    let line = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no line for {name}:\n{out}"))
    };
    assert_eq!(
        line("play"),
        "play allow no auditors member of group auditors"
    );
    assert_eq!(
        line("end_session"),
        "end_session allow yes break-glass member of group sre"
    );
    assert!(out.contains("decision:     end_session allowed"), "{out}");

    // Bob's own session: list and play, nothing else; play is the default.
    let (code, out, err) = viewer(&with(&["--viewer", "Bob@Example.com"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("decision:     play allowed"), "{out}");
    let (code, out, _) = viewer(&with(&[
        "--viewer",
        "bob@example.com",
        "--capability",
        "download",
    ]));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("download ")
            && l.contains("none (no allow rule matched)")
            && l.ends_with("requires group auditors")),
        "{out}"
    );

    // A contractor is denied prod-db whatever else they are.
    let (code, out, _) = viewer(&with(&[
        "--viewer",
        "dan@example.com",
        "--groups",
        "contractors,auditors",
    ]));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no-prod-db-for-contractors"), "{out}");
    assert!(out.contains("decision:     play denied"), "{out}");

    // Mistakes exit 2 with one line.
    let (code, _, err) = viewer(&["--viewer", "bob@example.com", "--route", "prod-db"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("give --session ID, or --route, --login and --recorded-user"),
        "{err}"
    );
    let (code, _, err) = viewer(&[
        "--viewer",
        "bob@example.com",
        "--session",
        "no-such-session",
    ]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        err.trim(),
        "gatehouse: unknown session no-such-session: it is not in the recording index (see `gatehouse sessions list`)"
    );

    // --session reads route, login and identity from the recording index.
    let state_dir = dir.path().join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = state::Sqlite::open(&state_dir).unwrap();
        state::Store::recording_started(
            &store,
            state::RecordingStart {
                session_id: "sess-bob".into(),
                identity: "bob@example.com".into(),
                login: "postgres".into(),
                route: "prod-db".into(),
                target: "db.internal:22".into(),
                client_addr: "10.0.0.5:50000".into(),
                gateway_id: "gatehouse".into(),
                started_at_ms: 1_774_857_600_000,
                prefix: "sess-bob".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    });
    let (code, out, err) = viewer(&["--viewer", "bob@example.com", "--session", "sess-bob"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("session:      sess-bob"), "{out}");
    assert!(
        out.contains("recording:    route prod-db, login postgres, recorded user bob@example.com"),
        "{out}"
    );
    assert!(out.contains("own-sessions"), "{out}");
    let (code, out, _) = viewer(&[
        "--viewer",
        "dan@example.com",
        "--groups",
        "contractors",
        "--session",
        "sess-bob",
        "--capability",
        "list",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("decision:     list denied"), "{out}");
    // `policy test` runs viewer cases against web.access.
    let table = dir.path().join("access-tests.yaml");
    std::fs::write(
        &table,
        "config: gatehouse.yaml
defaults: {route: prod-db, login: postgres, recorded_user: bob@example.com, at: \"2026-03-30T10:00:00Z\"}
cases:
  - {name: own session, viewer: bob@example.com, expect: allow, rule: own-sessions}
  - {name: break-glass, viewer: erin@example.com, groups: [sre], capability: download, expect: allow, require_reason: true}
  - {name: wrong on purpose, viewer: dan@example.com, groups: [contractors], expect: allow}
",
    )
    .unwrap();
    let (code, out, _) = gatehouse(&["policy", "test", table.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("wrong on purpose: expected play allowed, got denied"),
        "{out}"
    );
    assert!(out.contains("2 passed, 1 failed"), "{out}");
}
