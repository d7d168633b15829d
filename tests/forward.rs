//! Port and agent forwarding through the gateway with stock OpenSSH on
//! both sides: `ssh -L`, `-W` and `-R` to allowed destinations carry bytes
//! both ways and are refused elsewhere, visibly to the user; `ssh -A`
//! reaches a real `ssh-agent` only on routes that grant it; and the
//! certificate the target sees permits only what the route grants.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{LOGIN, World, echo_server};
use sshd_test::{ChildGuard, require_program};

/// Polls `check` every 50 ms until it returns true or `timeout` passes.
fn poll(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `msg`, half-closes and reads everything back. A connection the
/// other end already closed (a refused forward can be closed before the
/// write) gives nothing back, which the callers' assertions see.
fn round_trip(mut stream: impl Read + Write, msg: &[u8], shutdown: impl FnOnce()) -> Vec<u8> {
    if stream.write_all(msg).is_err() {
        return Vec::new();
    }
    shutdown();
    let mut back = Vec::new();
    let _ = stream.read_to_end(&mut back);
    back
}

fn unix_round_trip(path: &Path, msg: &[u8]) -> Vec<u8> {
    let stream = UnixStream::connect(path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let s2 = stream.try_clone().unwrap();
    round_trip(stream, msg, || {
        let _ = s2.shutdown(std::net::Shutdown::Write);
    })
}

/// `ssh -N` through the gateway with `extra` options, running in a guard.
fn ssh_background(w: &World, gw: &common::Gateway, route: &str, extra: &[&str]) -> ChildGuard {
    let mut c = Command::new(require_program("ssh"));
    c.args(w.ssh_args(&w.client_key, gw.port))
        .args(["-N", "-o", "ExitOnForwardFailure=yes"])
        .args(extra)
        .arg(format!("{LOGIN}@{route}@127.0.0.1"));
    ChildGuard::spawn(c).unwrap()
}

/// `ssh -L` to the allowed echo server carries bytes both ways and is
/// audited with its byte counts; a forward to another port is refused with
/// the gateway's line shown by ssh, and audited.
#[test]
fn local_forward_allowed_and_refused() {
    let echo = echo_server();
    let other = echo_server();
    let w = World::new();
    let gw = w.start(&[w.route(
        "t",
        &common::policy(&format!(
            "capabilities: {{port_forward_local: [\"127.0.0.1:{echo}\"]}}"
        )),
    )]);
    let ok_sock = w.path("ok.sock");
    let no_sock = w.path("no.sock");
    let ssh = ssh_background(
        &w,
        &gw,
        "t",
        &[
            "-L",
            &format!("{}:127.0.0.1:{echo}", ok_sock.display()),
            "-L",
            &format!("{}:127.0.0.1:{other}", no_sock.display()),
        ],
    );
    assert!(
        poll(Duration::from_secs(20), || ok_sock.exists()
            && no_sock.exists()),
        "ssh -L never listened:\n{}",
        ssh.stderr_text()
    );

    let msg = b"hello through the gateway\n".repeat(1000);
    assert_eq!(unix_round_trip(&ok_sock, &msg), msg);
    let closed = gw.wait_for_log("forward.closed");
    assert!(
        closed.contains("kind=\"local\"") || closed.contains("kind=local"),
        "{closed}"
    );
    assert!(closed.contains(&format!("127.0.0.1:{echo}")), "{closed}");
    assert!(
        closed.contains(&format!("bytes_to_target={}", msg.len())),
        "{closed}"
    );
    assert!(
        closed.contains(&format!("bytes_to_client={}", msg.len())),
        "{closed}"
    );
    assert!(gw.log().contains("forward.opened"));

    // Refused: the connection to the local socket is closed at once and
    // ssh prints the gateway's reason.
    assert!(unix_round_trip(&no_sock, b"nope").is_empty());
    let line = format!("gatehouse: port forwarding to 127.0.0.1:{other} is not allowed on route t");
    assert!(
        ssh.wait_for_output(&line, Duration::from_secs(10)).is_ok(),
        "ssh did not show the refusal:\n{}",
        ssh.stderr_text()
    );
    let refused = gw.wait_for_log("forward.refused");
    assert!(refused.contains(&format!("127.0.0.1:{other}")), "{refused}");
}

/// `ssh -W` (stdio forwarding) works to an allowed destination and fails
/// with the gateway's line elsewhere.
#[test]
fn stdio_forward_allowed_and_refused() {
    let echo = echo_server();
    let other = echo_server();
    let w = World::new();
    let gw = w.start(&[w.route(
        "t",
        &common::policy(&format!(
            "capabilities: {{port_forward_local: [\"127.0.0.1:{echo}\"]}}"
        )),
    )]);
    let (code, out, err) = w.sh(
        &gw,
        &format!("printf 'ping over -W' | $SSH -W 127.0.0.1:{echo} {LOGIN}@t@$GW"),
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "ssh -W failed: {err}");
    assert_eq!(out, "ping over -W");

    let (code, out, err) = w.sh(
        &gw,
        &format!("printf 'ping' | $SSH -W 127.0.0.1:{other} {LOGIN}@t@$GW"),
        Duration::from_secs(60),
    );
    assert_ne!(code, 0, "refused -W succeeded: {out}");
    assert!(
        err.contains(&format!(
            "gatehouse: port forwarding to 127.0.0.1:{other} is not allowed on route t"
        )),
        "{err}"
    );
}

/// `ssh -R` to a port the target picks: a connection to that port on the
/// target reaches the client's echo server through the gateway. On a route
/// without remote forwarding, ssh reports the failure.
#[test]
fn remote_forward_allowed_and_refused() {
    let echo = echo_server();
    let w = World::new();
    let gw = w.start(&[
        w.route(
            "t",
            &common::policy("capabilities: {port_forward_remote: [\"127.0.0.1:*\"]}"),
        ),
        w.route("plain", ""),
    ]);
    let ssh = ssh_background(
        &w,
        &gw,
        "t",
        &["-R", &format!("127.0.0.1:0:127.0.0.1:{echo}")],
    );
    let line = ssh
        .wait_for_output("Allocated port", Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("no port allocated: {e}\ngateway:\n{}", gw.log()));
    // "Allocated port 41235 for remote forward to 127.0.0.1:5555"
    let port: u16 = line
        .split_whitespace()
        .nth(2)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let s2 = stream.try_clone().unwrap();
    let msg = b"back through -R\n".repeat(500);
    let back = round_trip(stream, &msg, || {
        let _ = s2.shutdown(std::net::Shutdown::Write);
    });
    assert_eq!(back, msg);
    let closed = gw.wait_for_log("forward.closed");
    assert!(closed.contains("remote"), "{closed}");
    assert!(
        closed.contains(&format!("bytes_to_client={}", msg.len())),
        "{closed}"
    );
    assert!(gw.log().contains("forward.listening"));

    let mut refused = ssh_background(
        &w,
        &gw,
        "plain",
        &["-R", &format!("127.0.0.1:0:127.0.0.1:{echo}")],
    );
    assert!(
        refused.wait_exit(Duration::from_secs(20)).is_some(),
        "ssh -R with a refused forward kept running"
    );
    assert!(
        refused
            .stderr_text()
            .contains("remote port forwarding failed for listen port"),
        "{}",
        refused.stderr_text()
    );
    let audit = gw.wait_for_log("forward.refused");
    assert!(audit.contains("route=plain"), "{audit}");
}

/// A real ssh-agent on the client, forwarded with `ssh -A`: on a route
/// granting `agent`, `ssh-add -l` on the target lists the agent's key; on
/// one that does not, it finds no agent and the user sees why.
#[test]
fn agent_forwarding_only_when_granted() {
    let w = World::new();
    let gw = w.start(&[
        w.route("agent", &common::policy("capabilities: {agent: true}")),
        w.route("plain", ""),
    ]);
    let sock = w.path("agent.sock");
    let mut agent = Command::new(require_program("ssh-agent"));
    agent.arg("-D").arg("-a").arg(&sock);
    let agent = ChildGuard::spawn(agent).unwrap();
    assert!(
        poll(Duration::from_secs(10), || sock.exists()),
        "ssh-agent did not start: {}",
        agent.stderr_text()
    );
    let key = common::keygen(w.dir.path(), "agent-key");
    let mut add = Command::new(require_program("ssh-add"));
    add.arg(&key).env("SSH_AUTH_SOCK", &sock);
    let (code, _, err) = common::run(add, Duration::from_secs(10));
    assert_eq!(code, 0, "ssh-add: {err}");
    let mut fp = Command::new(require_program("ssh-keygen"));
    fp.arg("-lf").arg(common::public_key_path(&key));
    let (_, fp, _) = common::run(fp, Duration::from_secs(10));
    let fingerprint = fp.split_whitespace().nth(1).unwrap().to_owned();

    // ssh forwards an agent only if SSH_AUTH_SOCK reaches one, which the
    // usual IdentityAgent=none prevents; IdentitiesOnly keeps the agent's
    // key out of authentication.
    let ssh_with_agent = |route: &str| {
        let args = w.ssh_args(&w.client_key, gw.port);
        let mut c = Command::new(require_program("ssh"));
        let mut skip = false;
        for (i, a) in args.iter().enumerate() {
            if skip {
                skip = false;
                continue;
            }
            if a == "-o" && args.get(i + 1).map(String::as_str) == Some("IdentityAgent=none") {
                skip = true;
                continue;
            }
            c.arg(a);
        }
        c.arg("-A")
            .env("SSH_AUTH_SOCK", &sock)
            .arg(format!("{LOGIN}@{route}@127.0.0.1"))
            .arg("ssh-add -l");
        c
    };
    let c = ssh_with_agent("agent");
    let (code, out, err) = common::run(c, Duration::from_secs(60));
    assert_eq!(
        code,
        0,
        "ssh-add -l through the gateway failed:\n{out}\n{err}\ngateway:\n{}\nsshd:\n{}",
        gw.log(),
        w.sshd.log()
    );
    assert!(out.contains(&fingerprint), "{out}");
    assert!(gw.log().contains("agent.forwarded"));
    let closed = gw.wait_for_log("kind=\"agent\"");
    assert!(closed.contains("forward."), "{closed}");

    let c = ssh_with_agent("plain");
    let (code, out, err) = common::run(c, Duration::from_secs(60));
    assert_ne!(
        code, 0,
        "ssh-add -l found an agent on a route without it: {out}"
    );
    assert!(!out.contains(&fingerprint), "{out}");
    assert!(
        err.contains("gatehouse: agent forwarding is not allowed on route plain"),
        "{err}"
    );
    drop(agent);
}

/// The certificate the target sees permits agent and port forwarding only
/// on the route that grants them: sshd at DEBUG1 logs each login's
/// certificate options.
#[test]
fn certificate_carries_only_granted_extensions() {
    let w = World::with_sshd(|b| b.log_level("DEBUG1"));
    let gw = w.start(&[
        w.route(
            "granted",
            &common::policy("capabilities: {agent: true, port_forward_local: [\"127.0.0.1:1\"]}"),
        ),
        w.route("plain", ""),
    ]);
    let options = |route: &str| -> String {
        let before = w.sshd.log().len();
        let (code, _, err) = w.ssh(&gw, &format!("{LOGIN}@{route}"), &["true"]);
        assert_eq!(code, 0, "{err}");
        let log = w.sshd.log();
        log.get(before..)
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains("key options:"))
            .unwrap_or_else(|| panic!("no key options line for {route}:\n{log}"))
            .to_owned()
    };
    let granted = options("granted");
    assert!(granted.contains("agent-forwarding"), "{granted}");
    assert!(granted.contains("port-forwarding"), "{granted}");
    assert!(!granted.contains("x11-forwarding"), "{granted}");
    let plain = options("plain");
    assert!(!plain.contains("agent-forwarding"), "{plain}");
    assert!(!plain.contains("port-forwarding"), "{plain}");
    assert!(plain.contains("pty"), "{plain}");
}

/// `ssh -X`: on a route granting `x11`, the request reaches the target,
/// which sets DISPLAY for the session; on one that does not, it is refused
/// and audited. (The X11 channels themselves are not exercised: that needs
/// an X server on the client.)
#[test]
fn x11_request_only_when_granted() {
    let w = World::with_sshd(|b| b.config_line("X11Forwarding yes"));
    let gw = w.start(&[
        w.route("x", &common::policy("capabilities: {x11: true}")),
        w.route("plain", ""),
    ]);
    let display = |route: &str| {
        let mut c = Command::new(require_program("ssh"));
        c.args(w.ssh_args(&w.client_key, gw.port))
            .arg("-X")
            // Any display will do: ssh makes up a cookie if it cannot
            // read one, and nothing connects to it here.
            .env("DISPLAY", ":4242")
            .arg(format!("{LOGIN}@{route}@127.0.0.1"))
            .arg("echo display=$DISPLAY");
        common::run(c, Duration::from_secs(60))
    };
    let (code, out, err) = display("x");
    assert_eq!(code, 0, "{err}\n{}", gw.log());
    assert!(
        out.contains("display=localhost:"),
        "{out}\n{err}\n{}",
        w.sshd.log()
    );
    assert!(gw.log().contains("x11.forwarded"));

    let (code, out, err) = display("plain");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("display=\n") || out.trim() == "display=",
        "{out}"
    );
    let refused = gw.wait_for_log("x11-forwarding");
    assert!(refused.contains("request.refused"), "{refused}");
}
