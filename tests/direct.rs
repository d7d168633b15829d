//! Direct-access certificates (issue 16): `ssh cert@GATEWAY` after the
//! usual sign-in prints a certificate for the client's own key, and with
//! it the real OpenSSH client logs into a real sshd directly, the target
//! opting in with `cert-authority,principals="LOGIN@ROUTE"`. Real `ssh`,
//! `sshd`, `ssh-keygen`, the dev IdP and the `gatehouse` binary.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::{Gateway, LOGIN, World, bin, keygen, run};
use gateway::keys::{DirectCertRequest, UserCa};
use russh::keys::PublicKey;
use sshd_test::idp::DevIdp;
use sshd_test::{ChildGuard, Sshd, require_program};

/// A target that trusts the gateway's user CA only for `principals`, with
/// the `authorized_keys` line the README tells operators to write. It has
/// no `TrustedUserCAKeys`: the gateway's own certificates (principal
/// `LOGIN`) do not reach it.
fn direct_target(w: &World, principals: &str) -> Sshd {
    let keys = w.path("direct_authorized_keys");
    std::fs::write(
        &keys,
        format!("cert-authority,principals=\"{principals}\" {}\n", w.ca_pub),
    )
    .unwrap();
    Sshd::builder()
        .config_line(format!("Match User {LOGIN}"))
        .config_line(format!("    AuthorizedKeysFile {}", keys.display()))
        .start()
}

/// `ssh` straight to `target` with `key` (and its `-cert.pub`), running
/// `cmd`; BatchMode so a refused certificate fails instead of prompting.
fn ssh_to(
    w: &World,
    target: &Sshd,
    key: &Path,
    extra: &[&str],
    cmd: &[&str],
) -> (i32, String, String) {
    let mut c = Command::new(require_program("ssh"));
    c.args(["-o", "BatchMode=yes"])
        .args(extra)
        .args(w.ssh_args(key, target.port()))
        .arg(format!("{LOGIN}@127.0.0.1"))
        .args(cmd);
    run(c, Duration::from_secs(30))
}

/// `ssh-keygen -L -f PATH`.
fn describe(path: &Path) -> String {
    let mut c = Command::new(require_program("ssh-keygen"));
    c.args(["-L", "-f"]).arg(path);
    let (code, out, err) = run(c, Duration::from_secs(10));
    assert_eq!(code, 0, "ssh-keygen -L: {err}");
    out
}

/// The lines of `ssh-keygen -L` under `heading` (`Principals:`,
/// `Extensions:`), trimmed.
fn listed(description: &str, heading: &str) -> Vec<String> {
    description
        .lines()
        .skip_while(|l| !l.trim_start().starts_with(heading))
        .skip(1)
        .take_while(|l| l.starts_with("                "))
        .map(|l| l.trim().to_owned())
        .collect()
}

/// Writes `line` as `KEY-cert.pub`, where `ssh -i KEY` finds it.
fn write_cert(key: &Path, line: &str) -> std::path::PathBuf {
    let mut path = key.as_os_str().to_owned();
    path.push("-cert.pub");
    std::fs::write(&path, line).unwrap();
    path.into()
}

#[test]
fn a_signed_in_user_gets_a_certificate_that_the_target_accepts_directly() {
    let idp = DevIdp::start(0, &[]);
    let w = World::new();
    let target = direct_target(&w, &format!("{LOGIN}@db"));
    let route = w.route_to(
        "db",
        &target.addr().to_string(),
        &target.host_public_key(),
        "",
    );
    let idp_section = format!(
        "idp:\n  issuer: {}\n  client_id: gatehouse\n  scopes: [openid, email, profile, groups, offline_access]\n",
        idp.issuer
    );
    let direct = "direct_access:\n  rules:\n    - allow: sre-direct\n      when: {groups: sre}\n      \
                  routes: db\n      logins: ghtest\n      ttl: 10m\n      extensions: [permit-port-forwarding]\n";
    let config = w.write_config(&[route], &format!("{idp_section}{direct}"));
    let gw = Gateway::start(&config);
    let laptop = keygen(w.dir.path(), "laptop");

    // Sign in with the device code, as for any route; then the certificate.
    let mut child = ChildGuard::spawn(w.ssh_command(&laptop, &gw, "cert", &[])).unwrap();
    let prompt = child
        .wait_for_output(" and enter ", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("no sign-in prompt: {e}"));
    let code = prompt.split_whitespace().last().unwrap().to_owned();
    idp.answer(&code, "alice@example.com", "alice-pw", false);
    let status = child
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("ssh cert@ did not finish:\n{}", child.stderr_text()));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(status.code(), Some(0), "{}", child.stderr_text());
    let line = child.stdout_text();
    assert!(
        line.starts_with("ssh-ed25519-cert-v01@openssh.com ") && line.lines().count() == 1,
        "{line:?}"
    );
    let cert_path = write_cert(&laptop, &line);

    // What the target will read: the principal, the key id, exactly the
    // granted extension, and ten minutes.
    let description = describe(&cert_path);
    assert!(
        description.contains("Key ID: \"alice@example.com/direct\""),
        "{description}"
    );
    assert_eq!(listed(&description, "Principals:"), [format!("{LOGIN}@db")]);
    assert_eq!(
        listed(&description, "Extensions:"),
        ["permit-port-forwarding"]
    );
    let log = gw.wait_for_log("event=\"cert.issued\"");
    let issued = log
        .lines()
        .find(|l| l.contains("event=\"cert.issued\""))
        .unwrap();
    assert!(issued.contains("identity=alice@example.com"), "{issued}");
    let serial = issued
        .split("serial=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap();
    assert!(
        description.contains(&format!("Serial: {serial}")),
        "{description}\n{issued}"
    );

    // Straight to the target, no gateway in the path.
    let (code, out, err) = ssh_to(&w, &target, &laptop, &[], &["echo direct-ok"]);
    assert_eq!((code, out.trim()), (0, "direct-ok"), "{err}");
    target
        .wait_for_log(
            &format!("ID alice@example.com/direct (serial {serial})"),
            Duration::from_secs(5),
        )
        .expect("sshd logs the certificate's key id and serial");

    // No permit-pty: sshd refuses the terminal.
    let (_, out, err) = ssh_to(&w, &target, &laptop, &["-tt"], &["tty"]);
    assert!(err.contains("PTY allocation request failed"), "{err}");
    assert!(!out.contains("/dev/pts/"), "{out}");

    // The key is bound now: the next certificate comes without a prompt,
    // with a serial of its own.
    let (code, again, err) = w.ssh_with_key(&laptop, &gw, "cert", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("Sign in"), "{err}");
    assert!(
        again.starts_with("ssh-ed25519-cert-v01@openssh.com "),
        "{again}"
    );
    assert_ne!(again, line);
    gw.wait_for_log("method=\"binding\"");
}

#[test]
fn the_target_refuses_an_expired_direct_certificate() {
    let w = World::new();
    let target = direct_target(&w, &format!("{LOGIN}@db"));
    let ca = UserCa::load(&w.ca).expect("load CA");
    let public = PublicKey::from_openssh(&common::public_key(&w.client_key)).unwrap();
    let principals = [format!("{LOGIN}@db")];
    let certify = |at: SystemTime| {
        let (cert, _) = ca
            .certify_at(
                &DirectCertRequest {
                    key: &public,
                    principals: &principals,
                    key_id: "alice@example.com/direct",
                    ttl: Duration::from_secs(300),
                    extensions: &["permit-pty"],
                },
                at,
            )
            .expect("certify");
        write_cert(&w.client_key, &format!("{}\n", cert.to_openssh().unwrap()));
    };
    // Control: the same key and principal, signed now, logs in, so the
    // refusal below is about time alone.
    certify(SystemTime::now());
    let (code, out, err) = ssh_to(&w, &target, &w.client_key, &[], &["echo direct-ok"]);
    assert_eq!((code, out.trim()), (0, "direct-ok"), "{err}");

    certify(SystemTime::now() - Duration::from_secs(3600));
    let (code, _, err) = ssh_to(&w, &target, &w.client_key, &[], &["true"]);
    assert_eq!(code, 255, "an expired certificate must not log in: {err}");
    target
        .wait_for_log("Certificate invalid: expired", Duration::from_secs(5))
        .expect("sshd says why");
}

#[test]
fn without_a_grant_the_certificate_is_refused_with_one_line() {
    let w = World::new();
    let direct = "direct_access:\n  rules:\n    - allow: dba-direct\n      when: {groups: dba}\n      \
                  routes: db\n      logins: ghtest\n";
    let gw = w.start_with(&[w.route("db", "")], direct);
    let (code, out, err) = w.ssh(&gw, "cert", &[]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(out, "", "no certificate on stdout");
    let refusal: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("gatehouse:"))
        .collect();
    assert_eq!(refusal.len(), 1, "{err}");
    assert!(
        refusal[0].starts_with("gatehouse: direct access denied: ") && refusal[0].contains("dba"),
        "{err}"
    );
    let log = gw.wait_for_log("event=\"cert.refused\"");
    assert!(log.contains("identity=alice@example.com"), "{log}");
    assert!(!log.contains("event=\"cert.issued\""), "{log}");
}

#[test]
fn gatehouse_login_writes_the_certificate_beside_the_key() {
    let w = World::new();
    let target = direct_target(&w, &format!("{LOGIN}@db"));
    // No `extensions:`: the default, permit-pty alone.
    let direct = "direct_access:\n  rules:\n    - allow: ops-direct\n      when: {groups: ops}\n      \
                  routes: db\n      logins: ghtest\n";
    let route = w.route_to(
        "db",
        &target.addr().to_string(),
        &target.host_public_key(),
        "",
    );
    let gw = w.start_with(&[route], direct);

    let mut login = Command::new(bin());
    login
        .args([
            "login",
            "--gateway",
            &format!("127.0.0.1:{}", gw.port),
            "-i",
        ])
        .arg(&w.client_key)
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "IdentityAgent=none", "-o", "BatchMode=yes"])
        .arg("--ssh")
        .arg(require_program("ssh"));
    let (code, out, err) = run(login, Duration::from_secs(60));
    assert_eq!(code, 0, "{out}{err}");
    let cert_path = w.path("alice-cert.pub");
    assert!(
        out.starts_with(&format!(
            "wrote {} for {LOGIN}@db; valid until ",
            cert_path.display()
        )) && out.contains("59m from now"),
        "{out}"
    );
    let mode = std::fs::metadata(&cert_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    let description = describe(&cert_path);
    assert_eq!(listed(&description, "Extensions:"), ["permit-pty"]);

    // OpenSSH picks up KEY-cert.pub by itself, and permit-pty gives a tty.
    let (code, out, err) = ssh_to(&w, &target, &w.client_key, &["-tt"], &["tty"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.trim().starts_with("/dev/pts/"), "{out}");

    // A refusal leaves the old certificate alone and exits non-zero.
    let before = std::fs::read(&cert_path).unwrap();
    let stranger = keygen(w.dir.path(), "stranger");
    let mut login = Command::new(bin());
    login
        .args([
            "login",
            "--gateway",
            &format!("127.0.0.1:{}", gw.port),
            "-i",
        ])
        .arg(&stranger)
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "IdentityAgent=none", "-o", "BatchMode=yes"]);
    let (code, _, err) = run(login, Duration::from_secs(60));
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("no certificate"), "{err}");
    assert!(!w.path("stranger-cert.pub").exists());
    assert_eq!(std::fs::read(&cert_path).unwrap(), before);
}
