//! The development OpenID provider (`dev/idp`: node + panva's
//! `oidc-provider`) as a test fixture: started on a free loopback port,
//! stopped by its own process handle, with a helper that completes a
//! pending device sign-in the way a browser would.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// The directory of the dev IdP in this repository.
pub fn idp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dev/idp")
}

/// Checks for node and installs the IdP's packages (from its lockfile)
/// once per test binary.
fn ensure_node() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        match Command::new("node").arg("--version").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!("`node --version` failed: {out:?}"),
            Err(e) => panic!("node not found ({e}): apt-get install nodejs npm"),
        }
        let dir = idp_dir();
        if !dir.join("node_modules").is_dir() {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .stdout(Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("npm not found ({e}): apt-get install nodejs npm"));
            assert!(
                status.success(),
                "`npm ci` in {} failed: {status}",
                dir.display()
            );
        }
    });
}

/// A running dev IdP; killed and reaped on drop. Its stderr goes to a
/// file that is printed if the test panics.
pub struct DevIdp {
    child: Option<Child>,
    /// The issuer, exactly `http://127.0.0.1:PORT`.
    pub issuer: String,
    /// The port it listens on.
    pub port: u16,
    log: tempfile::NamedTempFile,
}

impl DevIdp {
    /// Starts `server.mjs` on `port` (0: any free port) polling every
    /// second, with `extra` flags such as `--device-code-ttl 3`.
    pub fn start(port: u16, extra: &[&str]) -> DevIdp {
        ensure_node();
        let log = tempfile::NamedTempFile::new().expect("temp file for the IdP log");
        let mut child = Command::new("node")
            .arg("server.mjs")
            .args(["--port", &port.to_string(), "--interval", "1"])
            .args(extra)
            .current_dir(idp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.reopen().expect("reopen the IdP log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node ({e}): apt-get install nodejs npm"));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        let _ = BufReader::new(stdout).read_line(&mut line);
        let mut idp = DevIdp {
            child: Some(child),
            issuer: String::new(),
            port: 0,
            log,
        };
        let Some(issuer) = line.trim().strip_prefix("listening on ") else {
            panic!(
                "dev IdP did not start (stdout {line:?}); stderr:\n{}",
                idp.stderr()
            );
        };
        idp.issuer = issuer.to_owned();
        idp.port = issuer
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in issuer {issuer:?}"));
        idp
    }

    /// What the IdP wrote to stderr so far.
    pub fn stderr(&self) -> String {
        let mut text = String::new();
        let _ = self
            .log
            .reopen()
            .and_then(|mut f| f.read_to_string(&mut text));
        text
    }

    /// Kills the IdP and waits for it; an IdP outage for tests.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Completes the pending device sign-in with `user_code` as the user
    /// `login`/`password`, or denies it: GET `/device`, POST the code,
    /// confirm, POST the credentials (see `dev/idp/README.md`).
    pub fn answer(&self, user_code: &str, login: &str, password: &str, deny: bool) {
        answer(&self.issuer, user_code, login, password, deny);
    }
}

/// [`DevIdp::answer`] for an issuer given by URL, for use from threads
/// that do not hold the fixture.
pub fn answer(issuer: &str, user_code: &str, login: &str, password: &str, deny: bool) {
    let mut cmd = Command::new("node");
    cmd.arg("approve.mjs")
        .args(["--issuer", issuer, "--user-code", user_code])
        .args(["--login", login, "--password", password])
        .current_dir(idp_dir());
    if deny {
        cmd.arg("--deny");
    }
    let out = cmd.output().expect("run node approve.mjs");
    assert!(
        out.status.success(),
        "approve.mjs failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Signs in through an authorization-code request the way a browser
/// would (GET `auth_url`, log in as `login`/`password`, consent, or deny
/// with `deny`) and returns the URL the IdP sends the browser back to,
/// without visiting it.
pub fn authorize(issuer: &str, auth_url: &str, login: &str, password: &str, deny: bool) -> String {
    let mut cmd = Command::new("node");
    cmd.arg("approve.mjs")
        .args(["--issuer", issuer, "--authorize", auth_url])
        .args(["--login", login, "--password", password])
        .current_dir(idp_dir());
    if deny {
        cmd.arg("--deny");
    }
    let out = cmd.output().expect("run node approve.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "approve.mjs --authorize failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("callback "))
        .unwrap_or_else(|| panic!("no callback in {stdout:?}"))
        .to_owned()
}

impl Drop for DevIdp {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- dev IdP {} stderr ---\n{}", self.issuer, self.stderr());
        }
    }
}
