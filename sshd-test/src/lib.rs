//! Test fixtures that run a real OpenSSH `sshd` on a free loopback port.
//!
//! The gateway's end-to-end tests need a genuine OpenSSH server as the upstream
//! target, because only the real implementation proves that certificates, host
//! keys and channel forwarding interoperate. Everything here is test-only code:
//! failures panic with a message that says what went wrong and how to fix it.
//!
//! The fixtures assume they run as root (sshd needs it to switch users) and they
//! never use fixed ports or broad process matching, so tests may run in parallel.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// How often the polling helpers look at captured output or process state.
const POLL: Duration = Duration::from_millis(20);

/// Finds an executable and panics with an install hint when it is missing.
///
/// Tests call this up front so that a machine without OpenSSH or tmux fails with
/// "install it with `apt-get install ...`" instead of an obscure spawn error.
/// The search covers `PATH` plus `/usr/sbin` and `/usr/bin`, because `sshd`
/// lives in `/usr/sbin`, which is often missing from `PATH`. The returned path
/// is absolute, which sshd requires for re-executing itself.
pub fn require_program(name: &str) -> PathBuf {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let dirs =
        std::env::split_paths(&path_var).chain([PathBuf::from("/usr/sbin"), "/usr/bin".into()]);
    for dir in dirs.filter(|d| d.is_absolute()) {
        let candidate = dir.join(name);
        let executable = std::fs::metadata(&candidate)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false);
        if executable {
            return candidate;
        }
    }
    let package = match name {
        "sshd" => "openssh-server",
        "ssh" | "scp" | "sftp" | "ssh-keygen" | "ssh-keyscan" | "ssh-add" | "ssh-agent" => {
            "openssh-client"
        }
        other => other,
    };
    panic!(
        "{name} not found in PATH, /usr/sbin or /usr/bin: install it with `apt-get install {package}`"
    );
}

/// Returns a loopback TCP port that was free a moment ago.
///
/// The port is found by binding `127.0.0.1:0` and dropping the listener, so
/// another process may grab it before the caller binds it; callers that spawn
/// servers (like [`SshdBuilder::start`]) retry with a new port when that happens.
pub fn free_port() -> u16 {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("local_addr of probe listener")
        .port()
}

/// Serializes user creation among the threads of one test process.
static USER_LOCK: Mutex<()> = Mutex::new(());

/// Creates (if needed) an unlocked local user with a home directory and `/bin/bash`.
///
/// sshd runs with `UsePAM no`, which refuses accounts whose shadow password is
/// locked (`!`), and `useradd` creates exactly such accounts; so the password
/// field is set to `*` (no password, but not locked). The call is idempotent and
/// thread-safe; across processes it retries when another process holds the
/// passwd/shadow locks or has just created the same user.
pub fn ensure_user(name: &str) {
    let _guard = USER_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut last_error = String::new();
    for _ in 0..50 {
        let exists = Command::new("id")
            .arg("-u")
            .arg(name)
            .output()
            .is_ok_and(|o| o.status.success());
        if exists && shadow_password(name).as_deref() == Some("*") {
            return;
        }
        let output = if exists {
            Command::new("usermod").args(["-p", "*", name]).output()
        } else {
            Command::new("useradd")
                .args(["-m", "-s", "/bin/bash", name])
                .output()
        };
        match output {
            Ok(o) if o.status.success() => continue,
            Ok(o) => last_error = String::from_utf8_lossy(&o.stderr).into_owned(),
            Err(e) => last_error = e.to_string(),
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!("could not create unlocked user {name} (are the tests running as root?): {last_error}");
}

/// Reads the password field of `name` from `/etc/shadow`, if present.
fn shadow_password(name: &str) -> Option<String> {
    let shadow = std::fs::read_to_string("/etc/shadow").ok()?;
    shadow.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next() == Some(name)).then(|| fields.next().unwrap_or("").to_owned())
    })
}

/// One captured output stream: the bytes read so far and whether EOF was seen.
#[derive(Default)]
struct Capture {
    data: Mutex<Vec<u8>>,
    eof: AtomicBool,
}

impl Capture {
    /// Starts a thread that copies `reader` into a new shared capture buffer.
    fn start(mut reader: impl Read + Send + 'static) -> Arc<Capture> {
        let capture = Arc::new(Capture::default());
        let sink = Arc::clone(&capture);
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => lock(&sink.data).extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            sink.eof.store(true, Ordering::SeqCst);
        });
        capture
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&lock(&self.data)).into_owned()
    }

    fn eof(&self) -> bool {
        self.eof.load(Ordering::SeqCst)
    }
}

/// Locks a mutex, ignoring poisoning: a panicking test thread must not hide output.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Owns a spawned child process, captures its output, and kills it on drop.
///
/// Tests must never leak processes or find them by name, so every process a
/// test starts lives in a guard: dropping the guard (also during a panic) sends
/// SIGKILL to exactly this PID and reaps it. stdout and stderr are drained by
/// background threads, which keeps the child from blocking on a full pipe and
/// lets failing tests print everything the child said.
pub struct ChildGuard {
    child: Mutex<Child>,
    pid: u32,
    stdout: Arc<Capture>,
    stderr: Arc<Capture>,
}

impl ChildGuard {
    /// Spawns `cmd` with stdin set to null and stdout and stderr captured.
    ///
    /// The capture threads run until the pipes close, which may be after the
    /// child exits if it handed the pipes to its own children.
    pub fn spawn(mut cmd: Command) -> std::io::Result<ChildGuard> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = Capture::start(child.stdout.take().expect("stdout is piped"));
        let stderr = Capture::start(child.stderr.take().expect("stderr is piped"));
        Ok(ChildGuard {
            pid: child.id(),
            child: Mutex::new(child),
            stdout,
            stderr,
        })
    }

    /// Returns the child's process ID, for log messages and signals.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Returns everything the child wrote to stderr so far, decoded lossily as UTF-8.
    pub fn stderr_text(&self) -> String {
        self.stderr.text()
    }

    /// Returns everything the child wrote to stdout so far, decoded lossily as UTF-8.
    pub fn stdout_text(&self) -> String {
        self.stdout.text()
    }

    /// Formats both captured streams for inclusion in an error message.
    fn describe(&self) -> String {
        format!(
            "pid {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.pid,
            self.stdout_text(),
            self.stderr_text()
        )
    }

    /// Waits until `needle` appears in stderr or stdout and returns the first line containing it.
    ///
    /// Returning the line lets tests inspect details such as the certificate ID
    /// in an sshd log line. It fails early when both streams are closed, since
    /// the needle can then never appear, and the error includes all output.
    pub fn wait_for_output(&self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let closed = self.stdout.eof() && self.stderr.eof();
            for text in [self.stderr_text(), self.stdout_text()] {
                if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                    return Ok(line.to_owned());
                }
            }
            if closed || Instant::now() >= deadline {
                let why = if closed { "output closed" } else { "timed out" };
                return Err(format!(
                    "{why} after waiting for {needle:?} from {}",
                    self.describe()
                ));
            }
            thread::sleep(POLL);
        }
    }

    /// Waits for the first complete stdout line and returns it without the line ending.
    ///
    /// Servers under test announce their address on stdout (for example
    /// "listening on 127.0.0.1:PORT"), and this is how a test learns it without
    /// guessing ports. A final line without a newline counts once stdout closes.
    pub fn wait_for_stdout_line(&self, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let closed = self.stdout.eof();
            let text = self.stdout_text();
            if let Some((line, _)) = text.split_once('\n') {
                return Ok(line.trim_end_matches('\r').to_owned());
            }
            if closed && !text.is_empty() {
                return Ok(text);
            }
            if closed || Instant::now() >= deadline {
                let why = if closed { "stdout closed" } else { "timed out" };
                return Err(format!(
                    "{why} while waiting for a stdout line from {}",
                    self.describe()
                ));
            }
            thread::sleep(POLL);
        }
    }

    /// Sends a signal such as `"TERM"`, `"HUP"` or `"INT"` by running `kill -s SIG PID`.
    ///
    /// Unsafe code is denied in this workspace, so the signal goes through the
    /// `kill` program. It refuses to signal a child that was already reaped,
    /// because its PID might by now belong to an unrelated process.
    pub fn signal(&self, sig: &str) -> std::io::Result<()> {
        let mut child = lock(&self.child);
        if child.try_wait()?.is_some() {
            return Err(std::io::Error::other(format!(
                "pid {} already exited",
                self.pid
            )));
        }
        let sig = sig.trim_start_matches('-');
        let status = Command::new("kill")
            .args(["-s", sig, &self.pid.to_string()])
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "kill -s {sig} {} failed",
                self.pid
            )))
        }
    }

    /// Reports whether the child is still running, reaping it if it has exited.
    pub fn is_running(&mut self) -> bool {
        matches!(lock(&self.child).try_wait(), Ok(None))
    }

    /// Kills the child with SIGKILL and reaps it; calling it again does nothing.
    pub fn kill(&mut self) {
        let mut child = lock(&self.child);
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    /// Waits up to `timeout` for the child to exit and returns its status, or `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match lock(&self.child).try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {}
                _ => return None,
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a short helper command (like `ssh-keygen`) and panics with its stderr if it fails.
fn run(cmd: &mut Command) -> Output {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("failed to run {cmd:?}: {e}"));
    if !output.status.success() {
        panic!(
            "{cmd:?} failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

/// Configures a private sshd instance before [`SshdBuilder::start`] launches it.
///
/// Options are recorded here and applied inside the fresh temporary directory
/// that `start` creates, so the builder itself touches no files.
#[derive(Default)]
pub struct SshdBuilder {
    trusted_user_ca: Option<String>,
    host_ca: Option<PathBuf>,
    extra_lines: Vec<String>,
    log_level: Option<String>,
}

impl SshdBuilder {
    /// Sets `TrustedUserCAKeys`, so sshd accepts user certificates signed by this CA.
    ///
    /// A string starting with a key type (such as `ssh-ed25519 AAAA...`) is
    /// treated as the public key itself and written into the temp dir; anything
    /// else is taken as the path of a public key file.
    pub fn trusted_user_ca(mut self, ca_pub_line_or_path: impl Into<String>) -> Self {
        self.trusted_user_ca = Some(ca_pub_line_or_path.into());
        self
    }

    /// Signs sshd's host key with this host CA and sets `HostCertificate`.
    ///
    /// This lets tests check that the gateway verifies upstream hosts through a
    /// `@cert-authority` trust anchor instead of pinning keys. The certificate
    /// names the principals `127.0.0.1` and `localhost`. The CA private key file
    /// must be mode 0600, as `ssh-keygen` refuses readable private keys.
    pub fn host_certificate_from_ca(mut self, host_ca_private_key: impl AsRef<Path>) -> Self {
        self.host_ca = Some(host_ca_private_key.as_ref().to_path_buf());
        self
    }

    /// Appends a raw line to the generated `sshd_config`, for options the builder does not cover.
    ///
    /// sshd uses the first value it reads for most keywords, so an extra line
    /// cannot override a setting the builder already wrote.
    pub fn config_line(mut self, line: impl Into<String>) -> Self {
        self.extra_lines.push(line.into());
        self
    }

    /// Sets sshd's `LogLevel` (default `VERBOSE`). `DEBUG1` adds, among much
    /// else, a `key options:` line per login listing what the user
    /// certificate permits (`agent-forwarding port-forwarding pty ...`).
    pub fn log_level(mut self, level: impl Into<String>) -> Self {
        self.log_level = Some(level.into());
        self
    }

    /// Writes keys and config into a new temp dir, starts sshd, and waits until it accepts connections.
    ///
    /// If the chosen port is taken by the time sshd binds it, sshd is restarted
    /// on a new port (up to five times). Panics with sshd's stderr on failure.
    pub fn start(self) -> Sshd {
        let sshd = require_program("sshd");
        let keygen = require_program("ssh-keygen");
        ensure_privsep_dir();
        let dir = tempfile::Builder::new()
            .prefix("sshd-test-")
            .tempdir()
            .expect("create sshd temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod sshd temp dir");
        let host_key = dir.path().join("ssh_host_ed25519_key");
        run(Command::new(&keygen)
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "sshd-test", "-f"])
            .arg(&host_key));
        let host_pub =
            std::fs::read_to_string(host_key.with_extension("pub")).expect("read host public key");
        let host_public_key = host_pub
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");

        let mut config = format!("HostKey {}\n", host_key.display());
        if let Some(ca) = &self.host_ca {
            run(Command::new(&keygen)
                .arg("-s")
                .arg(ca)
                .args(["-I", "sshd-test", "-h", "-n", "127.0.0.1,localhost"])
                .arg(host_key.with_extension("pub")));
            config += &format!(
                "HostCertificate {}\n",
                dir.path().join("ssh_host_ed25519_key-cert.pub").display()
            );
        }
        if let Some(ca) = &self.trusted_user_ca {
            let path = if ["ssh-", "ecdsa-", "sk-"].iter().any(|p| ca.starts_with(p)) {
                let path = dir.path().join("trusted_user_ca.pub");
                std::fs::write(&path, format!("{}\n", ca.trim()))
                    .expect("write trusted_user_ca.pub");
                path
            } else {
                PathBuf::from(ca)
            };
            config += &format!("TrustedUserCAKeys {}\n", path.display());
        }
        config += &format!(
            "PidFile {}\nListenAddress 127.0.0.1\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nAuthorizedKeysFile none\n\
             Subsystem sftp /usr/lib/openssh/sftp-server\nLogLevel {}\nStrictModes no\n\
             AcceptEnv LANG LC_* GH_TEST_*\nPermitUserEnvironment no\nMaxStartups 100:30:200\n\
             MaxSessions 50\nPrintMotd no\nPrintLastLog no\nUseDNS no\n",
            dir.path().join("sshd.pid").display(),
            self.log_level.as_deref().unwrap_or("VERBOSE"),
        );
        for line in &self.extra_lines {
            config += line;
            config.push('\n');
        }

        let config_path = dir.path().join("sshd_config");
        let mut failures = String::new();
        for attempt in 1..=5 {
            let port = free_port();
            std::fs::write(&config_path, format!("Port {port}\n{config}"))
                .expect("write sshd_config");
            let mut cmd = Command::new(&sshd);
            cmd.arg("-D").arg("-e").arg("-f").arg(&config_path);
            let mut guard = ChildGuard::spawn(cmd).expect("spawn sshd");
            // sshd logs this right after listen(), so connections succeed from here
            // on. Unlike a banner probe, the line cannot come from another process
            // that grabbed the port, and it keeps probe connections out of the log.
            let listening = format!("Server listening on 127.0.0.1 port {port}");
            let error = match guard.wait_for_output(&listening, Duration::from_secs(10)) {
                Ok(_) => {
                    return Sshd {
                        guard,
                        dir,
                        port,
                        host_public_key,
                    };
                }
                Err(error) => error,
            };
            guard.kill();
            failures += &format!("attempt {attempt} on port {port}: {error}\n");
            if !guard.stderr_text().contains("Address already in use") {
                break;
            }
        }
        panic!(
            "sshd failed to start (config {}):\n{failures}",
            config_path.display()
        );
    }
}

/// Creates sshd's privilege separation directory, which must exist and be root-owned and not writable by others.
fn ensure_privsep_dir() {
    let dir = Path::new("/run/sshd");
    std::fs::create_dir_all(dir).expect("create /run/sshd (are the tests running as root?)");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod /run/sshd");
}

/// A running private sshd on `127.0.0.1`, with its files in a temporary directory.
///
/// Dropping it stops sshd (and the per-connection sshd processes it forked)
/// and then deletes the directory, so each test gets an isolated server.
pub struct Sshd {
    guard: ChildGuard,
    dir: tempfile::TempDir,
    port: u16,
    host_public_key: String,
}

impl Sshd {
    /// Returns a builder with the default configuration: ed25519 host key, no trusted CA.
    pub fn builder() -> SshdBuilder {
        SshdBuilder::default()
    }

    /// Returns the loopback port sshd listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the address sshd listens on, `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Returns the host public key as `ssh-ed25519 AAAA...`, for pinning it in known-hosts configuration.
    pub fn host_public_key(&self) -> String {
        self.host_public_key.clone()
    }

    /// Returns the temporary directory holding sshd's config, keys and pid file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Returns sshd's log (its stderr) captured so far, including per-connection messages.
    pub fn log(&self) -> String {
        self.guard.stderr_text()
    }

    /// Waits until a log line contains `needle` and returns that line, or an error with the whole log.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<String, String> {
        self.guard.wait_for_output(needle, timeout)
    }

    /// Returns the PID of the listening sshd process.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Per-connection sshd processes call setsid() and user commands without a
        // pty survive a closed connection, so the whole tree below the listener is
        // found by parent PID while the listener is alive (so none was reparented).
        if self.guard.is_running() {
            for pid in descendants_of(self.guard.pid()) {
                let _ = Command::new("kill")
                    .args(["-s", "TERM", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
            // Let the listener reap its children, so fewer orphaned zombies remain.
            let deadline = Instant::now() + Duration::from_secs(2);
            while !descendants_of(self.guard.pid()).is_empty() && Instant::now() < deadline {
                thread::sleep(POLL);
            }
            let _ = self.guard.signal("TERM");
            self.guard.wait_exit(Duration::from_secs(2));
        }
        self.guard.kill();
    }
}

/// Lists all processes below `root` (children first), from the parent PIDs in `/proc/*/stat`.
fn descendants_of(root: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let table: Vec<(u32, u32)> = entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The command name may contain spaces, so fields are counted after its closing ')'.
            let fields = stat.rsplit_once(')')?.1;
            Some((pid, fields.split_whitespace().nth(1)?.parse().ok()?))
        })
        .collect();
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(
            table
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        next += 1;
    }
    found.split_off(1)
}

pub mod idp;
pub mod otlp;
pub mod s3;
pub mod upstream;

#[cfg(test)]
mod tests;
