//! The command line: configuration checking, the user CA, help and
//! shutdown.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::{LOGIN, World, bin, run};

fn gatehouse(args: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(bin());
    c.args(args);
    run(c, Duration::from_secs(20))
}

#[test]
fn ca_init_writes_a_private_key_0600_refuses_to_overwrite_and_prints_target_setup() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ca");
    let key_s = key.to_str().unwrap();
    let (code, out, err) = gatehouse(&["ca", "init", "--key", key_s]);
    assert_eq!(code, 0, "{err}");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let public = std::fs::read_to_string(dir.path().join("ca.pub")).unwrap();
    assert!(out.contains(public.trim()), "{out}");
    assert!(
        out.contains("TrustedUserCAKeys /etc/ssh/gatehouse_user_ca.pub"),
        "{out}"
    );

    let before = std::fs::read(&key).unwrap();
    let (code, _, err) = gatehouse(&["ca", "init", "--key", key_s]);
    assert_ne!(code, 0);
    assert!(err.contains("refusing to overwrite"), "{err}");
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "the CA key is untouched"
    );

    let (code, out, _) = gatehouse(&["ca", "show", "--key", key_s]);
    assert_eq!(code, 0);
    assert!(out.contains(public.trim()));
}

#[test]
fn check_config_reports_every_problem_with_file_line_and_column() {
    let w = World::new();
    let config = w.path("bad.yaml");
    std::fs::write(
        &config,
        format!(
            "user_ca: user_ca
routes:
  - name: a
    target: nowhere
    logins: [{LOGIN}]
    host_key: \"{key}\"
    policy: {{obligations: {{cert_ttl: 5 fortnights}}, rules: []}}
  - name: a
    target: h:22
    logins: [{LOGIN}]
    host_key: \"{key}\"
    policy: {{rules: []}}
",
            key = w.sshd.host_public_key()
        ),
    )
    .unwrap();
    let path = config.to_str().unwrap();
    let (code, _, err) = gatehouse(&["check-config", path]);
    assert_eq!(code, 1);
    for want in [
        format!("{path}:4:13: bad target \"nowhere\""),
        format!("{path}:7:38: `cert_ttl`: `5 fortnights` is not a duration"),
        format!("{path}:8:11: duplicate route \"a\""),
        "3 problems in".to_owned(),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }

    // `serve` refuses the same file with the same report.
    let (code, _, serve_err) = gatehouse(&["serve", "--config", path]);
    assert_eq!(code, 1);
    assert!(
        serve_err.contains(&format!("{path}:4:13: bad target")),
        "{serve_err}"
    );

    let good = w.write_config(&[w.route("t", "")], "");
    let (code, out, err) = gatehouse(&["check-config", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok (1 route, 1 registered key)"), "{out}");
}

#[test]
fn help_shows_examples() {
    let (code, out, _) = gatehouse(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("Examples:"));
    assert!(out.contains("gatehouse serve --config"));
    let (_, out, _) = gatehouse(&["serve", "--help"]);
    assert!(out.contains("listening on ADDR"));
}

#[test]
fn host_keys_are_generated_0600_on_first_start_and_kept() {
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    let host_key = w.path("state/ssh_host_ed25519_key");
    let mode = std::fs::metadata(&host_key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let first = std::fs::read(&host_key).unwrap();
    drop(gw);
    let _gw = w.start(&[w.route("t", "")]);
    assert_eq!(std::fs::read(&host_key).unwrap(), first, "not regenerated");
}

#[test]
fn sigterm_tells_connected_users_and_exits() {
    let w = World::new();
    let mut gw = w.start(&[w.route("t", "")]);
    let mut session = sshd_test::ChildGuard::spawn({
        let mut c = Command::new(sshd_test::require_program("ssh"));
        c.args(w.ssh_args(&w.client_key, gw.port))
            .arg(format!("{LOGIN}@t@127.0.0.1"))
            .arg("echo started; sleep 60");
        c
    })
    .unwrap();
    session
        .wait_for_output("started", Duration::from_secs(20))
        .expect("session running");
    gw.child.signal("TERM").unwrap();
    let status = gw
        .child
        .wait_exit(Duration::from_secs(15))
        .expect("gateway exits");
    assert!(status.success(), "{status:?}");
    session
        .wait_exit(Duration::from_secs(10))
        .expect("client disconnected");
    assert!(
        session
            .stderr_text()
            .contains("gatehouse: the gateway is shutting down"),
        "{}",
        session.stderr_text()
    );
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let out = std::process::Command::new(common::bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let commit = text
        .trim()
        .strip_prefix(concat!(
            "gatehouse ",
            env!("CARGO_PKG_VERSION"),
            " (commit "
        ))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected --version: {text}"));
    assert!(!commit.is_empty(), "{text}");
}
