//! Shared harness for the end-to-end tests: a real `gatehouse` binary, a
//! real OpenSSH `sshd` target and the real OpenSSH client, on loopback.
//!
//! A [`World`] owns a temp dir with the gateway's user CA (made by
//! `gatehouse ca init`), a registered client key and a target sshd that
//! trusts the CA. [`World::start`] writes a config and runs `gatehouse
//! serve`, which prints the port it bound. Every process sits in a guard
//! that kills and reaps it on drop.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sshd_test::{ChildGuard, Sshd, ensure_user, require_program};

pub mod browser;
pub mod recording;
pub mod tmux;
pub mod web;

/// The login every test uses on targets.
pub const LOGIN: &str = "ghtest";

/// The `gatehouse` binary cargo built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gatehouse"))
}

/// Runs `cmd` to completion within `timeout`, returning (status, stdout,
/// stderr). Panics with everything captured if it takes longer.
pub fn run(cmd: Command, timeout: Duration) -> (i32, String, String) {
    let mut child = ChildGuard::spawn(cmd).expect("spawn");
    match child.wait_exit(timeout) {
        Some(status) => {
            // Let the reader threads catch the last bytes.
            std::thread::sleep(Duration::from_millis(50));
            (
                status.code().unwrap_or(-1),
                child.stdout_text(),
                child.stderr_text(),
            )
        }
        None => panic!(
            "command timed out after {timeout:?}\nstdout:\n{}\nstderr:\n{}",
            child.stdout_text(),
            child.stderr_text()
        ),
    }
}

/// Creates an ed25519 key pair with `ssh-keygen` and returns the private
/// key's path.
pub fn keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let st = Command::new(require_program("ssh-keygen"))
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen");
    assert!(st.success(), "ssh-keygen failed");
    path
}

/// `PATH.pub`.
pub fn public_key_path(private: &Path) -> PathBuf {
    let mut p = private.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// The text of `PATH.pub`, trimmed.
pub fn public_key(private: &Path) -> String {
    std::fs::read_to_string(public_key_path(private))
        .expect("read .pub")
        .trim()
        .to_owned()
}

/// The SHA256 fingerprint of `PATH.pub`, as the gateway logs and stores it.
pub fn fingerprint(private: &Path) -> String {
    russh::keys::PublicKey::from_openssh(&public_key(private))
        .expect("an OpenSSH public key")
        .fingerprint(russh::keys::HashAlg::Sha256)
        .to_string()
}

/// A gateway CA, a registered client key and a target sshd trusting the CA.
pub struct World {
    /// Everything the test writes lives here (mode 0755 so sshd can read).
    pub dir: tempfile::TempDir,
    /// The user CA private key made by `gatehouse ca init`.
    pub ca: PathBuf,
    /// The CA's public key line.
    pub ca_pub: String,
    /// A client key registered to identity `alice` (groups `ops`).
    pub client_key: PathBuf,
    /// The target.
    pub sshd: Sshd,
}

/// The rule most test routes use: group `ops` (alice) is allowed.
pub const ALLOW_OPS: &str = "{allow: ops, when: {groups: ops}}";

/// A route's `policy:` line allowing group `ops`, with `fields` (for
/// example `capabilities: {sftp: false}`) before its rules.
pub fn policy(fields: &str) -> String {
    if fields.is_empty() {
        format!("policy: {{rules: [{ALLOW_OPS}]}}")
    } else {
        format!("policy: {{{fields}, rules: [{ALLOW_OPS}]}}")
    }
}

impl World {
    pub fn new() -> World {
        use std::os::unix::fs::PermissionsExt;
        ensure_user(LOGIN);
        let dir = tempfile::Builder::new()
            .prefix("gh-e2e-")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let ca = dir.path().join("user_ca");
        let mut init = Command::new(bin());
        init.args(["ca", "init", "--key"]).arg(&ca);
        let (code, out, err) = run(init, Duration::from_secs(10));
        assert_eq!(code, 0, "ca init failed: {out}{err}");
        let ca_pub = public_key(&ca);
        let client_key = keygen(dir.path(), "alice");
        let sshd = Sshd::builder().trusted_user_ca(ca_pub.clone()).start();
        World {
            dir,
            ca,
            ca_pub,
            client_key,
            sshd,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A route named `name` to this world's target, pinned to its host key,
    /// offering login [`LOGIN`], plus `extra` YAML lines (indented four
    /// spaces). Without a `policy:` line in `extra`, the policy is
    /// [`policy("")`](policy): group `ops` (alice) may use it.
    pub fn route(&self, name: &str, extra: &str) -> String {
        self.route_to(
            name,
            &self.sshd.addr().to_string(),
            &self.sshd.host_public_key(),
            extra,
        )
    }

    /// A route to any target address with a pinned host key.
    pub fn route_to(&self, name: &str, target: &str, host_key: &str, extra: &str) -> String {
        let mut r = format!(
            "  - name: {name}\n    target: {target}\n    logins: [{LOGIN}]\n    host_key: \"{host_key}\"\n"
        );
        if !extra.contains("policy:") {
            r.push_str("    ");
            r.push_str(&policy(""));
            r.push('\n');
        }
        for line in extra.lines().filter(|l| !l.trim().is_empty()) {
            r.push_str("    ");
            r.push_str(line.trim_start());
            r.push('\n');
        }
        r
    }

    /// Writes a config with identity `alice` and `routes`, and returns its path.
    ///
    /// Tests fail authentication from 127.0.0.1 on purpose, many times over;
    /// unless a test sets its own `limits:`, that address is exempt from
    /// penalties. Tests of penalties and floods use 127.0.0.2 and up.
    pub fn write_config(&self, routes: &[String], extra_top: &str) -> PathBuf {
        let exempt = if extra_top.contains("limits:") {
            ""
        } else {
            "limits: {penalties: {exempt: [127.0.0.1]}}\n"
        };
        let config = format!(
            "listen: 127.0.0.1:0\nuser_ca: user_ca\nstate_dir: state\n{exempt}{extra_top}\
             identities:\n  - name: alice\n    email: alice@example.com\n    groups: [ops]\n    keys: [\"{}\"]\n\
             routes:\n{}",
            public_key(&self.client_key),
            routes.concat()
        );
        let path = self.path("gatehouse.yaml");
        std::fs::write(&path, config).unwrap();
        path
    }

    /// Starts `gatehouse serve` on a config with `routes`.
    pub fn start(&self, routes: &[String]) -> Gateway {
        self.start_with(routes, "")
    }

    pub fn start_with(&self, routes: &[String], extra_top: &str) -> Gateway {
        let config = self.write_config(routes, extra_top);
        Gateway::start(&config)
    }

    /// The OpenSSH client options every test uses: no user config, no
    /// agent, only the given key, no known_hosts.
    pub fn ssh_args(&self, key: &Path, port: u16) -> Vec<String> {
        [
            "-F",
            "/dev/null",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "PreferredAuthentications=publickey,keyboard-interactive",
        ]
        .into_iter()
        .map(String::from)
        .chain([
            "-i".to_owned(),
            key.display().to_string(),
            "-p".to_owned(),
            port.to_string(),
        ])
        .collect()
    }

    /// `ssh` through the gateway as `user` (e.g. `ghtest@t`), running `cmd`.
    pub fn ssh(&self, gw: &Gateway, user: &str, cmd: &[&str]) -> (i32, String, String) {
        self.ssh_with_key(&self.client_key, gw, user, cmd)
    }

    pub fn ssh_with_key(
        &self,
        key: &Path,
        gw: &Gateway,
        user: &str,
        cmd: &[&str],
    ) -> (i32, String, String) {
        run(
            self.ssh_command(key, gw, user, cmd),
            Duration::from_secs(60),
        )
    }

    /// The `ssh` command through the gateway as `user` with `key`, not yet
    /// started: for tests that watch a session while it runs.
    pub fn ssh_command(&self, key: &Path, gw: &Gateway, user: &str, cmd: &[&str]) -> Command {
        let mut c = Command::new(require_program("ssh"));
        c.args(self.ssh_args(key, gw.port))
            .arg(format!("{user}@127.0.0.1"))
            .args(cmd);
        c
    }

    /// Runs a bash script in which `$SSH` is the full ssh command (client
    /// key, gateway port) and `$GW` is `127.0.0.1`. For pipes and scp/sftp
    /// (`$SCP_OPTS` holds the same options with scp's `-P`).
    pub fn sh(&self, gw: &Gateway, script: &str, timeout: Duration) -> (i32, String, String) {
        let ssh = std::iter::once(require_program("ssh").display().to_string())
            .chain(self.ssh_args(&self.client_key, gw.port))
            .collect::<Vec<_>>()
            .join(" ");
        let scp_opts = self
            .ssh_args(&self.client_key, gw.port)
            .join(" ")
            .replace(" -p ", " -P ");
        let mut c = Command::new("bash");
        c.arg("-c")
            .arg(format!("set -o pipefail\n{script}"))
            .current_dir(self.dir.path())
            .env("SSH", ssh)
            .env("SCP_OPTS", scp_opts)
            .env("GW", "127.0.0.1");
        run(c, timeout)
    }
}

/// A running `gatehouse serve`.
pub struct Gateway {
    pub child: ChildGuard,
    pub port: u16,
}

impl Gateway {
    pub fn start(config: &Path) -> Gateway {
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--config"]).arg(config);
        Gateway::start_command(cmd)
    }

    /// Starts `gatehouse serve` as `cmd` runs it (a wrapper that execs the
    /// binary, say), and waits for its listening line.
    pub fn start_command(mut cmd: Command) -> Gateway {
        cmd.env("GATEHOUSE_LOG", "info,russh=warn");
        let child = ChildGuard::spawn(cmd).expect("spawn gatehouse");
        let line = child
            .wait_for_stdout_line(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("gatehouse did not start: {e}"));
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Gateway { child, port }
    }

    /// Everything the gateway logged so far (audit events included).
    pub fn log(&self) -> String {
        self.child.stderr_text()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str) -> String {
        self.child
            .wait_for_output(needle, Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("gateway log never showed {needle:?}: {e}"))
    }

    /// Resident memory of the gateway process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS")
    }
}

impl World {
    /// Like [`World::new`], with the target sshd configured further by
    /// `configure` (for example `|b| b.log_level("DEBUG1")`).
    pub fn with_sshd(
        configure: impl FnOnce(sshd_test::SshdBuilder) -> sshd_test::SshdBuilder,
    ) -> World {
        let mut w = World::new();
        w.sshd = configure(Sshd::builder().trusted_user_ca(w.ca_pub.clone())).start();
        w
    }
}

/// A TCP echo server on `127.0.0.1:0` for forwarding tests: every
/// connection gets back what it sends, and is closed after the peer's EOF.
/// Its threads end with the test process.
pub fn echo_server() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind echo server");
    let port = listener.local_addr().expect("echo addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = stream.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    port
}
