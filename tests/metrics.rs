//! Metrics and health (issue 16): a real `ssh` session through the gateway
//! (a device-code sign-in at the dev IdP, a real target `sshd`), then the
//! `/metrics` exposition scraped over HTTP, checked series by series, for
//! what it must never contain, and by `promtool check metrics`; and
//! `/readyz` following recording storage.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Gateway, LOGIN, World, fingerprint, keygen};
use sshd_test::idp::DevIdp;
use sshd_test::{ChildGuard, require_program};

/// The address the metrics listener printed (`metrics listening on ADDR`).
fn metrics_addr(gw: &Gateway) -> String {
    let line = gw
        .child
        .wait_for_output("metrics listening on ", Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("no metrics listener: {e}"));
    line.rsplit(' ').next().unwrap().trim().to_owned()
}

/// A plain HTTP/1.1 GET: status and body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// Every sample of an exposition: `name{labels}` → value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no series {series}"))
}

/// Scrapes until `check` holds (counters that move when a connection's
/// task ends, a moment after `ssh` exits), or fails with the exposition.
fn scrape_until(addr: &str, what: &str, check: impl Fn(&HashMap<String, f64>) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, text) = get(addr, "/metrics");
        assert_eq!(status, 200, "{text}");
        if check(&samples(&text)) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what} never held:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `promtool check metrics` on `text`: its exit status and what it said.
fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new(require_program("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Issue 16: one signed-in session moves the connection, handshake,
/// authentication, sign-in, policy, session, dial, byte, state and
/// recording series; a refused login moves the policy's deny; nothing in
/// the exposition names the user, the key, the session or the address;
/// and promtool accepts it.
#[test]
fn a_real_session_moves_the_counters_and_the_exposition_passes_promtool() {
    // Required up front: a missing promtool fails here with its install line.
    require_program("promtool");
    let idp = DevIdp::start(0, &[]);
    let w = World::new();
    let route = w.route(
        "prod",
        "policy: {rules: [{allow: sre, when: {groups: sre}}]}",
    );
    let config = w.write_config(
        &[route],
        &format!(
            "idp:\n  issuer: {}\n  client_id: gatehouse\n  scopes: [openid, email, profile, groups]\n\
             metrics:\n  listen: 127.0.0.1:0\n",
            idp.issuer
        ),
    );
    let gw = Gateway::start(&config);
    let addr = metrics_addr(&gw);
    assert_eq!(get(&addr, "/healthz").0, 200);

    // Before anything: every closed series is there, at zero.
    let (_, before) = get(&addr, "/metrics");
    let b = samples(&before);
    assert_eq!(
        value(
            &b,
            "gatehouse_ssh_connections_total{result=\"authenticated\"}"
        ),
        0.0
    );
    assert_eq!(value(&b, "gatehouse_ssh_sessions_live"), 0.0);

    // A sign-in with a new key: the prompt, alice approves, the command runs.
    let laptop = keygen(w.dir.path(), "laptop");
    let user = format!("{LOGIN}@prod");
    let mut child = ChildGuard::spawn(w.ssh_command(
        &laptop,
        &gw,
        &user,
        &["echo", "metrics-payload-0123456789"],
    ))
    .unwrap();
    let line = child
        .wait_for_output(" and enter ", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("no sign-in prompt: {e}"));
    let user_code = line.split_whitespace().last().unwrap().to_owned();
    idp.answer(&user_code, "alice@example.com", "alice-pw", false);
    let status = child
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("ssh did not finish:\n{}", child.stderr_text()));
    assert_eq!(status.code(), Some(0), "{}", child.stderr_text());
    assert_eq!(child.stdout_text().trim(), "metrics-payload-0123456789");

    // The registered key is alice's too, but as a service identity in
    // group ops: the route's policy says no.
    let (code, _, err) = w.ssh(&gw, &user, &["true"]);
    assert_ne!(code, 0, "{err}");

    let text = scrape_until(&addr, "the session's and the refusal's counts", |s| {
        s.get("gatehouse_ssh_connections_total{result=\"authenticated\"}") == Some(&1.0)
            && s.get("gatehouse_ssh_connections_total{result=\"unauthenticated\"}") == Some(&1.0)
            && s.get("gatehouse_recordings_finished_total{status=\"sealed\"}") == Some(&1.0)
    });
    let s = samples(&text);
    let at_least = |series: &str, min: f64| {
        let v = value(&s, series);
        assert!(v >= min, "{series} = {v}, want at least {min}\n{text}");
    };
    let exactly = |series: &str, want: f64| {
        let v = value(&s, series);
        assert!(v == want, "{series} = {v}, want {want}\n{text}");
    };
    exactly("gatehouse_ssh_handshakes_total{result=\"completed\"}", 2.0);
    exactly("gatehouse_ssh_connections_active", 0.0);
    exactly("gatehouse_ssh_sessions_live", 0.0);
    // The new key: proven, partial success, then the sign-in round.
    at_least(
        "gatehouse_ssh_auth_attempts_total{method=\"publickey\",result=\"partial\"}",
        1.0,
    );
    at_least(
        "gatehouse_ssh_auth_attempts_total{method=\"keyboard_interactive\",result=\"prompted\"}",
        1.0,
    );
    exactly(
        "gatehouse_ssh_auth_attempts_total{method=\"keyboard_interactive\",result=\"accepted\"}",
        1.0,
    );
    exactly("gatehouse_sign_ins_total{result=\"started\"}", 1.0);
    exactly("gatehouse_sign_ins_total{result=\"completed\"}", 1.0);
    exactly("gatehouse_sign_ins_total{result=\"failed\"}", 0.0);
    exactly(
        "gatehouse_policy_decisions_total{phase=\"login\",result=\"allow\"}",
        1.0,
    );
    exactly(
        "gatehouse_policy_decisions_total{phase=\"login\",result=\"deny\"}",
        1.0,
    );
    exactly("gatehouse_ssh_session_duration_seconds_count", 1.0);
    exactly("gatehouse_upstream_dial_seconds_count", 1.0);
    at_least(
        "gatehouse_proxied_bytes_total{kind=\"session\",direction=\"to_client\"}",
        "metrics-payload-0123456789\n".len() as f64,
    );
    exactly(
        "gatehouse_proxied_bytes_total{kind=\"forward\",direction=\"to_client\"}",
        0.0,
    );
    at_least(
        "gatehouse_state_backend_seconds_count{op=\"session_opened\"}",
        1.0,
    );
    at_least("gatehouse_state_backend_seconds_count{op=\"bind\"}", 1.0);
    exactly(
        "gatehouse_ssh_preauth_rejected_total{reason=\"auth_timeout\"}",
        0.0,
    );

    // Nothing names who, which key, which session or from where.
    let log = gw.log();
    let session_ids: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("event=\"auth.accepted\""))
        .filter_map(|l| l.split("session_id=").nth(1))
        .filter_map(|rest| rest.split([' ', '"']).find(|p| !p.is_empty()))
        .collect();
    assert!(!session_ids.is_empty(), "no session id in the log:\n{log}");
    let mut secrets: Vec<String> = vec![
        "alice".into(),
        "example.com".into(),
        LOGIN.into(),
        "SHA256:".into(),
        fingerprint(&laptop),
        fingerprint(&w.client_key),
        "127.0.0.1".into(),
        user_code.clone(),
    ];
    secrets.extend(session_ids.iter().map(|s| (*s).to_owned()));
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "the exposition names {secret:?}:\n{text}"
        );
    }

    // Prometheus's own checker (and linter) accepts the exposition.
    let (ok, said) = promtool(&text);
    assert!(ok, "promtool check metrics failed:\n{said}\n{text}");
}

/// Issue 16: `/readyz` answers 200 while recording storage takes writes,
/// 503 with the reason once it does not (its directory replaced by a
/// file: a write fails even for root), and 200 again when it is back.
/// `/healthz` stays 200 throughout.
#[test]
fn readyz_follows_recording_storage() {
    let w = World::new();
    let objects = w.path("objects");
    std::fs::create_dir(&objects).unwrap();
    let config = w.write_config(
        &[w.route("t", "")],
        &format!(
            "recording:\n  storage: \"file://{}\"\nmetrics:\n  listen: 127.0.0.1:0\n",
            objects.display()
        ),
    );
    let gw = Gateway::start(&config);
    let addr = metrics_addr(&gw);
    assert_eq!(get(&addr, "/readyz"), (200, "ready\n".to_owned()));

    let wait_for = |want: u16| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = get(&addr, "/readyz");
            if status == want {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz stayed {status} ({body}), want {want}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    };

    std::fs::remove_dir_all(&objects).unwrap();
    std::fs::write(&objects, "not a directory").unwrap();
    let body = wait_for(503);
    assert!(body.starts_with("not ready: recording storage: "), "{body}");
    assert_eq!(body.lines().count(), 1, "{body}");
    assert_eq!(get(&addr, "/healthz").0, 200);

    std::fs::remove_file(&objects).unwrap();
    std::fs::create_dir(&objects).unwrap();
    assert_eq!(wait_for(200), "ready\n");
}
