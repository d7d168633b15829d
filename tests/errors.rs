//! Every refusal a user can meet ends in one plain line on the client, and
//! the audit log gets the detail.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{LOGIN, World, keygen};
use sshd_test::{Sshd, require_program};

fn assert_line(stderr: &str, line: &str) {
    assert!(
        stderr.lines().any(|l| l.trim() == line),
        "expected the line {line:?} on the client, got:\n{stderr}"
    );
}

#[test]
fn unknown_route_login_group_and_missing_route_each_get_their_line() {
    let w = World::new();
    let gw = w.start(&[
        w.route("t", ""),
        w.route(
            "sre-only",
            "policy: {rules: [{allow: sre, when: {groups: sre}}]}",
        ),
    ]);

    let (code, _, err) = w.ssh(&gw, &format!("{LOGIN}@nope"), &["true"]);
    assert_eq!(code, 255);
    assert_line(&err, "gatehouse: unknown route \"nope\"");
    // Shown once, not once per keyboard-interactive retry.
    assert_eq!(err.matches("unknown route").count(), 1, "{err}");

    let (code, _, err) = w.ssh(&gw, "root@t", &["true"]);
    assert_eq!(code, 255);
    assert_line(
        &err,
        "gatehouse: access denied: login root is not allowed on route t",
    );

    let (code, _, err) = w.ssh(&gw, &format!("{LOGIN}@sre-only"), &["true"]);
    assert_eq!(code, 255);
    assert_line(
        &err,
        "gatehouse: access denied: route sre-only: requires group sre",
    );

    let (code, _, err) = w.ssh(&gw, LOGIN, &["true"]);
    assert_eq!(code, 255);
    assert_line(
        &err,
        &format!(
            "gatehouse: no route in user name \"{LOGIN}\": connect as ssh LOGIN@ROUTE@GATEWAY"
        ),
    );

    let log = gw.log();
    assert!(log.contains("event=\"auth.denied\""), "{log}");
    assert!(
        log.contains("user=root@t"),
        "audit names the requested user: {log}"
    );
    // Nothing reached the target.
    assert!(!w.sshd.log().contains("Accepted publickey"));
}

#[test]
fn unregistered_key_is_told_its_fingerprint() {
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    let stranger = keygen(w.dir.path(), "stranger");
    let (code, _, err) = w.ssh_with_key(&stranger, &gw, &format!("{LOGIN}@t"), &["true"]);
    assert_eq!(code, 255);
    let mut fp = Command::new(require_program("ssh-keygen"));
    fp.arg("-lf").arg(common::public_key_path(&stranger));
    let (_, fp_out, _) = common::run(fp, Duration::from_secs(10));
    let fingerprint = fp_out.split_whitespace().nth(1).expect("fingerprint");
    assert_line(
        &err,
        &format!(
            "gatehouse: access denied: key {fingerprint} is not registered; ask an administrator to add it"
        ),
    );
    assert!(gw.log().contains(&format!("key_fingerprint={fingerprint}")));
}

#[test]
fn target_down_gets_its_line_and_audit_detail() {
    let w = World::new();
    // A port with nothing listening: bind, note, close.
    let port = sshd_test::free_port();
    let gw = w.start(&[w.route_to(
        "down",
        &format!("127.0.0.1:{port}"),
        &w.sshd.host_public_key(),
        "",
    )]);
    let (code, _, err) = w.ssh(&gw, &format!("{LOGIN}@down"), &["true"]);
    assert_eq!(code, 255, "{err}");
    assert_line(&err, "gatehouse: target down unreachable");
    let log = gw.wait_for_log("event=\"target.error\"");
    assert!(
        log.contains("Connection refused"),
        "audit has the cause: {log}"
    );
}

#[test]
fn a_target_that_accepts_and_never_speaks_is_bounded_by_connect_timeout() {
    let w = World::new();
    // Accepts TCP (the kernel does, into the backlog) and never answers.
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = mute.local_addr().unwrap();
    let gw = w.start(&[
        w.route_to(
            "mute",
            &addr.to_string(),
            &w.sshd.host_public_key(),
            "connect_timeout: 2s",
        ),
        w.route("t", ""),
    ]);
    let started = std::time::Instant::now();
    let (code, _, err) = w.ssh(&gw, &format!("{LOGIN}@mute"), &["true"]);
    let took = started.elapsed();
    assert_eq!(code, 255, "{err}");
    assert!(
        err.lines()
            .any(|l| l.trim().starts_with("gatehouse: target mute")),
        "one plain line about the target: {err}"
    );
    assert!(
        took < Duration::from_secs(9),
        "bounded by connect_timeout: {took:?}"
    );
    let log = gw.wait_for_log("event=\"target.error\"");
    assert!(log.contains("route=mute"), "{log}");
    // The gateway goes on serving other routes.
    let (code, out, err) = w.ssh(&gw, &format!("{LOGIN}@t"), &["echo", "up"]);
    assert_eq!((code, out.trim()), (0, "up"), "{err}");
    drop(mute);
}

#[test]
fn host_key_mismatch_refuses_the_connection() {
    let w = World::new();
    let other = keygen(w.dir.path(), "not-the-host-key");
    let wrong = common::public_key(&other);
    let gw = w.start(&[w.route_to("t", &w.sshd.addr().to_string(), &wrong, "")]);
    let (code, _, err) = w.ssh(&gw, &format!("{LOGIN}@t"), &["true"]);
    assert_eq!(code, 255);
    assert_line(
        &err,
        "gatehouse: target t presented an unexpected host key; refusing to connect",
    );
    let log = gw.wait_for_log("event=\"target.error\"");
    assert!(
        log.contains("presented SHA256:") && log.contains("pinned SHA256:"),
        "{log}"
    );
    assert!(
        !w.sshd.log().contains("Accepted publickey"),
        "no login happened"
    );
}

#[test]
fn target_that_does_not_trust_the_ca_refuses_the_certificate() {
    let w = World::new();
    // A second sshd that trusts some other CA.
    let other_ca = keygen(w.dir.path(), "other_ca");
    let stranger = Sshd::builder()
        .trusted_user_ca(common::public_key(&other_ca))
        .start();
    let gw = w.start(&[w.route_to(
        "untrusting",
        &stranger.addr().to_string(),
        &stranger.host_public_key(),
        "",
    )]);
    let (code, _, err) = w.ssh(&gw, &format!("{LOGIN}@untrusting"), &["true"]);
    assert_eq!(code, 255);
    assert_line(
        &err,
        "gatehouse: target untrusting refused the gateway's certificate for login ghtest (does it trust the Gatehouse user CA?)",
    );
    gw.wait_for_log("event=\"target.error\"");
}

#[test]
fn port_forwarding_is_refused_with_a_reason() {
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    // -W asks for a direct-tcpip channel, like -L does per connection.
    let (code, _, err) = w.ssh(
        &gw,
        &format!("{LOGIN}@t"),
        &["-W", &w.sshd.addr().to_string()],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!(
            "gatehouse: port forwarding to {} is not allowed on route t",
            w.sshd.addr()
        )),
        "{err}"
    );
    let log = gw.wait_for_log("event=\"forward.refused\"");
    assert!(
        log.contains(&format!("destination={}", w.sshd.addr())),
        "{log}"
    );
}

#[test]
fn agent_forwarding_is_refused_with_a_line() {
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    let sock = w.path("agent.sock");
    let mut agent = sshd_test::ChildGuard::spawn({
        let mut c = Command::new(require_program("ssh-agent"));
        c.arg("-D").arg("-a").arg(&sock);
        c
    })
    .expect("ssh-agent");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "ssh-agent did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let script = format!(
        // IdentityAgent=none (in $SSH) would also turn forwarding off, and
        // OpenSSH keeps the first value of an option, so replace it.
        "SSH_AUTH_SOCK={0} ${{SSH/IdentityAgent=none/IdentityAgent={0}}} -o ForwardAgent=yes {LOGIN}@t@$GW 'echo ran; echo \"sock=$SSH_AUTH_SOCK\"'",
        sock.display()
    );
    let (code, out, err) = w.sh(&gw, &script, Duration::from_secs(60));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ran"));
    assert!(
        out.contains("sock=\n") || out.trim_end().ends_with("sock="),
        "no agent on the target: {out}"
    );
    assert!(
        err.contains("gatehouse: agent forwarding is not allowed on route t"),
        "{err}"
    );
    agent.kill();
}
