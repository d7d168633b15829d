//! Certificates the gateway mints, as real targets see them, and host
//! verification through a host CA.

mod common;

use std::process::Command;
use std::time::{Duration, SystemTime};

use common::{LOGIN, World, keygen, policy};
use gateway::keys::{CertRequest, UserCa};
use sshd_test::{Sshd, require_program};

/// Writes a minted key and certificate where `ssh -i` finds them.
fn write_minted(w: &World, at: SystemTime, name: &str) -> std::path::PathBuf {
    use russh::keys::ssh_key::LineEnding;
    use std::os::unix::fs::PermissionsExt;
    let ca = UserCa::load(&w.ca).expect("load CA");
    let minted = ca
        .mint_at(
            &CertRequest {
                login: LOGIN,
                key_id: "test/expired",
                ttl: Duration::from_secs(300),
                extensions: &["permit-pty"],
                force_command: None,
                source_address: None,
            },
            at,
        )
        .expect("mint");
    let key_path = w.path(name);
    std::fs::write(
        &key_path,
        minted.key.to_openssh(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cert_path = w.path(&format!("{name}-cert.pub"));
    std::fs::write(&cert_path, minted.cert.to_openssh().unwrap()).unwrap();
    key_path
}

fn ssh_direct(w: &World, key: &std::path::Path) -> (i32, String, String) {
    // Straight to the target with the harness's client options; BatchMode
    // so a refused certificate fails instead of falling back to prompts.
    let mut c = Command::new(require_program("ssh"));
    c.args(["-o", "BatchMode=yes"])
        .args(w.ssh_args(key, w.sshd.port()))
        .arg(format!("{LOGIN}@127.0.0.1"))
        .arg("echo direct-ok");
    common::run(c, Duration::from_secs(30))
}

#[test]
fn the_target_accepts_a_fresh_certificate_and_refuses_an_expired_one() {
    let w = World::new();
    // Control: the same CA and code path, minted now, is accepted, so the
    // refusal below is about time alone.
    let fresh = write_minted(&w, SystemTime::now(), "fresh");
    let (code, out, err) = ssh_direct(&w, &fresh);
    assert_eq!((code, out.trim()), (0, "direct-ok"), "{err}");

    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let expired = write_minted(&w, an_hour_ago, "expired");
    let (code, _, err) = ssh_direct(&w, &expired);
    assert_eq!(code, 255, "an expired certificate must not log in: {err}");
    w.sshd
        .wait_for_log("Certificate invalid: expired", Duration::from_secs(5))
        .expect("sshd says why");
}

#[test]
fn a_pty_is_granted_only_when_the_route_permits_it() {
    let w = World::new();
    let gw = w.start(&[
        w.route("with-pty", ""),
        w.route("no-pty", &policy("capabilities: {pty: false}")),
    ]);
    let (code, out, err) = w.ssh(&gw, &format!("{LOGIN}@with-pty"), &["-tt", "tty"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.trim().starts_with("/dev/pts/"), "{out}");

    // An explicitly requested tty that is refused ends the session in
    // OpenSSH (exit 255) with its own message; the command never runs.
    let (code, out, err) = w.ssh(&gw, &format!("{LOGIN}@no-pty"), &["-tt", "echo ran"]);
    assert_eq!(code, 255, "{err}");
    assert!(err.contains("PTY allocation request failed"), "{err}");
    assert!(!out.contains("ran"), "{out}");
    // Without a tty the route works.
    let (code, out, _) = w.ssh(&gw, &format!("{LOGIN}@no-pty"), &["tty"]);
    assert_eq!(code, 1, "tty exits 1 without a terminal");
    assert!(out.contains("not a tty"), "{out}");
    assert!(gw.log().contains("request=\"pty\""));
}

#[test]
fn host_ca_verification_accepts_certified_targets_and_refuses_plain_keys() {
    let w = World::new();
    let host_ca = keygen(w.dir.path(), "host_ca");
    let certified = Sshd::builder()
        .trusted_user_ca(w.ca_pub.clone())
        .host_certificate_from_ca(&host_ca)
        .start();
    let host_ca_pub = common::public_key(&host_ca);
    let route = |name: &str, target: &str| {
        format!(
            "  - name: {name}\n    target: {target}\n    logins: [{LOGIN}]\n    host_ca: \"{host_ca_pub}\"\n    {}\n",
            policy("")
        )
    };
    let gw = w.start(&[
        route("certified", &certified.addr().to_string()),
        // The world's own target has no host certificate.
        route("plain", &w.sshd.addr().to_string()),
    ]);
    let (code, out, err) = w.ssh(&gw, &format!("{LOGIN}@certified"), &["echo via-host-ca"]);
    assert_eq!((code, out.trim()), (0, "via-host-ca"), "{err}");

    let (code, _, err) = w.ssh(&gw, &format!("{LOGIN}@plain"), &["true"]);
    assert_eq!(code, 255);
    assert!(
        err.contains(
            "gatehouse: target plain presented an unexpected host key; refusing to connect"
        ),
        "{err}"
    );
    let log = gw.wait_for_log("event=\"target.error\"");
    assert!(log.contains("requires a host certificate"), "{log}");
}
