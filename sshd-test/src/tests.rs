//! Tests that start real sshd instances; they must run as root.

use super::*;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;

const USER: &str = "gh-fixture";

/// Generates an ed25519 key pair at `dir/name` and returns the private key path.
fn keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    run(Command::new(require_program("ssh-keygen"))
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&path));
    path
}

/// Creates a user CA and a user key certified for `USER` with ID `test-key-id` and serial 42.
fn user_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let ca = keygen(dir, "user_ca");
    let key = keygen(dir, "user_key");
    run(Command::new(require_program("ssh-keygen"))
        .arg("-s")
        .arg(&ca)
        .args(["-I", "test-key-id", "-n", USER, "-V", "-1m:+5m", "-z", "42"])
        .arg(key.with_extension("pub")));
    (ca, key)
}

/// Runs `echo hello` over ssh with the user certificate plus `extra` options.
fn ssh_echo(sshd: &Sshd, key: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(require_program("ssh"));
    cmd.args(["-F", "/dev/null", "-i"]).arg(key);
    cmd.arg("-o")
        .arg(format!("CertificateFile={}-cert.pub", key.display()));
    cmd.args(["-o", "BatchMode=yes", "-p", &sshd.port().to_string()])
        .args(extra);
    cmd.args([&format!("{USER}@127.0.0.1"), "echo", "hello"]);
    cmd.stdin(Stdio::null()).output().expect("run ssh")
}

/// Connects to a loopback port and returns the first line the server sends.
fn read_banner(port: u16) -> std::io::Result<String> {
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line.trim_end().to_owned())
}

#[test]
fn banner_and_host_key_match_keyscan() {
    let sshd = Sshd::builder().start();
    assert_eq!(sshd.addr(), SocketAddr::from(([127, 0, 0, 1], sshd.port())));
    let banner = read_banner(sshd.port()).unwrap();
    assert!(banner.starts_with("SSH-2.0-OpenSSH"), "banner: {banner}");
    let scan = run(Command::new(require_program("ssh-keyscan")).args([
        "-t",
        "ed25519",
        "-T",
        "5",
        "-p",
        &sshd.port().to_string(),
        "127.0.0.1",
    ]));
    let scanned = String::from_utf8_lossy(&scan.stdout);
    let key = scanned
        .lines()
        .find_map(|l| l.split_once(' '))
        .map(|(_, key)| key.trim());
    assert_eq!(
        key,
        Some(sshd.host_public_key().as_str()),
        "keyscan: {scanned}"
    );
    assert!(sshd.dir().join("sshd.pid").exists());
}

#[test]
fn user_certificate_login() {
    ensure_user(USER);
    let client = tempfile::tempdir().unwrap();
    let (ca, key) = user_cert(client.path());
    let sshd = Sshd::builder()
        .trusted_user_ca(ca.with_extension("pub").to_str().unwrap())
        .start();
    let out = ssh_echo(
        &sshd,
        &key,
        &[
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ssh failed: {stderr}\nsshd log:\n{}",
        sshd.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello");
    let line = sshd
        .wait_for_log("ID test-key-id (serial 42)", Duration::from_secs(5))
        .unwrap();
    assert!(
        line.contains(&format!("Accepted publickey for {USER}")),
        "{line}"
    );
}

#[test]
fn drop_ends_open_sessions() {
    ensure_user(USER);
    let client = tempfile::tempdir().unwrap();
    let (ca, key) = user_cert(client.path());
    let sshd = Sshd::builder()
        .trusted_user_ca(ca.with_extension("pub").to_str().unwrap())
        .start();
    let mut cmd = Command::new(require_program("ssh"));
    cmd.args(["-F", "/dev/null", "-i"]).arg(&key);
    cmd.args([
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
    ]);
    cmd.args(["-o", "BatchMode=yes", "-p", &sshd.port().to_string()]);
    cmd.args([&format!("{USER}@127.0.0.1"), "echo started; exec sleep 60"]);
    let mut session = ChildGuard::spawn(cmd).unwrap();
    session
        .wait_for_output("started", Duration::from_secs(10))
        .unwrap();
    let tree = descendants_of(sshd.pid());
    assert!(
        tree.len() >= 3,
        "connection, session and shell processes: {tree:?}"
    );
    drop(sshd);
    for pid in tree {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "pid {pid} survived: {stat}"
        );
    }
    let status = session.wait_exit(Duration::from_secs(5));
    assert!(
        status.is_some(),
        "ssh session survived sshd drop: {}",
        session.stderr_text()
    );
}

#[test]
fn host_certificate_verified_by_client() {
    ensure_user(USER);
    let client = tempfile::tempdir().unwrap();
    let (ca, key) = user_cert(client.path());
    let host_ca = keygen(client.path(), "host_ca");
    let ca_line = std::fs::read_to_string(ca.with_extension("pub")).unwrap();
    let sshd = Sshd::builder()
        .trusted_user_ca(ca_line)
        .host_certificate_from_ca(&host_ca)
        .start();
    let host_ca_pub = std::fs::read_to_string(host_ca.with_extension("pub")).unwrap();
    let known_hosts = client.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("@cert-authority * {host_ca_pub}")).unwrap();
    let kh_opt = format!("UserKnownHostsFile={}", known_hosts.display());
    let out = ssh_echo(
        &sshd,
        &key,
        &["-o", "StrictHostKeyChecking=yes", "-o", &kh_opt],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ssh failed: {stderr}\nsshd log:\n{}",
        sshd.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello");
}

#[test]
fn child_guard_captures_and_signals() {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "echo 'listening on 127.0.0.1:1'; echo oops >&2; exec sleep 30",
    ]);
    let mut child = ChildGuard::spawn(cmd).unwrap();
    assert_eq!(
        child.wait_for_stdout_line(Duration::from_secs(5)).unwrap(),
        "listening on 127.0.0.1:1"
    );
    assert_eq!(
        child
            .wait_for_output("oops", Duration::from_secs(5))
            .unwrap(),
        "oops"
    );
    assert!(
        child
            .wait_for_output("never", Duration::from_millis(50))
            .unwrap_err()
            .contains("oops")
    );
    assert!(child.is_running());
    child.signal("TERM").unwrap();
    let status = child
        .wait_exit(Duration::from_secs(5))
        .expect("sleep exits on SIGTERM");
    assert!(!status.success());
    assert!(!child.is_running());
    assert!(
        child.signal("TERM").is_err(),
        "a reaped child must not be signalled"
    );
    child.kill();
}

#[test]
fn ensure_user_is_idempotent_across_threads() {
    let threads: Vec<_> = (0..4)
        .map(|_| thread::spawn(|| ensure_user(USER)))
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(shadow_password(USER).as_deref(), Some("*"));
}

#[test]
#[should_panic(expected = "Bad configuration option")]
fn start_failure_reports_sshd_stderr() {
    Sshd::builder().config_line("NoSuchOption yes").start();
}
