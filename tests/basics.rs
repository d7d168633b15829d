//! The core path: stock `ssh LOGIN@ROUTE@gateway` reaches a real sshd with
//! a certificate minted by the gateway.

mod common;

use std::time::Duration;

use common::{LOGIN, World};

#[test]
fn exec_returns_output_and_exit_code() {
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    let (code, out, err) = w.ssh(
        &gw,
        &format!("{LOGIN}@t"),
        &["echo hello from $(whoami); exit 3"],
    );
    assert_eq!(code, 3, "stderr: {err}");
    assert_eq!(out.trim(), format!("hello from {LOGIN}"));

    // The audit log records the decision and the channel with its exit status.
    let log = gw.wait_for_log("event=\"channel.closed\"");
    assert!(log.contains("exit_status=3"), "{log}");
    assert!(gw.log().contains("event=\"auth.accepted\""));
}

#[test]
fn target_log_shows_the_certificate_key_id_and_serial() {
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    let (code, _, err) = w.ssh(&gw, &format!("{LOGIN}@t"), &["true"]);
    assert_eq!(code, 0, "{err}");
    let accepted = w
        .sshd
        .wait_for_log("Accepted publickey for ghtest", Duration::from_secs(5))
        .expect("sshd accepted the certificate");
    // ID alice@example.com/<session id> (serial N) CA ED25519 <gateway CA>
    let id = accepted
        .split(" ID ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .expect("key id in sshd log");
    let (identity, session) = id.split_once('/').expect("IDENTITY/SESSION");
    assert_eq!(identity, "alice@example.com");
    assert_eq!(session.len(), 32, "session id {session:?}");
    assert!(accepted.contains("ED25519-CERT"), "{accepted}");
    let serial: u64 = accepted
        .split("(serial ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .expect("serial in sshd log");
    assert!(serial > 0);
    // The same session id and serial are in the gateway's audit log.
    let log = gw.wait_for_log("event=\"target.connected\"");
    assert!(log.contains(session), "{log}");
    assert!(log.contains(&format!("cert_serial={serial}")), "{log}");
}

#[test]
fn two_hundred_megabytes_through_cat_arrive_byte_identical() {
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    // Random data both ways at once: upload into cat, download its echo.
    // pipefail: ssh's own exit status counts, not only sha256sum's.
    let script = format!(
        "set -eo pipefail
         head -c 200000000 /dev/urandom > blob
         want=$(sha256sum < blob | cut -d' ' -f1)
         got=$($SSH {LOGIN}@t@$GW cat < blob | sha256sum | cut -d' ' -f1)
         echo \"$want $got\""
    );
    let (code, out, err) = w.sh(&gw, &script, Duration::from_secs(300));
    assert_eq!(code, 0, "{err}");
    let mut sums = out.split_whitespace();
    let want = sums.next().expect("sha of input");
    let got = sums.next().expect("sha of output");
    assert_eq!(want.len(), 64);
    assert_eq!(want, got, "output differs from input");
}

#[test]
fn terminal_contents_and_keys_never_reach_the_gateway_log() {
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    let marker = "SECRET-TERMINAL-CONTENT-8c1f";
    let (code, out, _) = w.ssh(&gw, &format!("{LOGIN}@t"), &["echo", marker]);
    assert_eq!(code, 0);
    assert!(out.contains(marker));
    gw.wait_for_log("event=\"channel.closed\"");
    let log = gw.log();
    assert!(!log.contains(marker), "terminal output leaked into the log");
    let ca_private = std::fs::read_to_string(&w.ca).unwrap();
    for line in ca_private.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!log.contains(line), "CA key material leaked into the log");
    }
}
