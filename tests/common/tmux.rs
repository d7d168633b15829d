//! A tmux server on a private socket in the test's temp dir (so parallel
//! tests never share a server and nothing is left in /tmp/tmux-UID), for
//! driving terminal programs: `send-keys` to type, `capture-pane` to read.
//! Killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sshd_test::require_program;

pub struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    pub fn new(socket: &Path) -> Tmux {
        Tmux {
            socket: socket.to_owned(),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(require_program("tmux"));
        c.args(["-f", "/dev/null", "-S"]).arg(&self.socket);
        c
    }

    /// Runs a tmux command, which must succeed; returns its output.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(out.status.success(), "tmux {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `command` in a detached session of `cols` x `rows`.
    pub fn start(&self, session: &str, cols: u16, rows: u16, command: &str) {
        self.run(&[
            "new-session",
            "-d",
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
            "-s",
            session,
            command,
        ]);
    }

    /// Types `keys` (tmux key names, such as `Right` or `Enter`).
    pub fn keys(&self, target: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", target];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Whether the session `target` still exists (its command runs).
    pub fn alive(&self, target: &str) -> bool {
        self.cmd()
            .args(["has-session", "-t", target])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits until a line of the pane, trimmed, equals `line`.
    pub fn wait_for_line(&self, target: &str, line: &str, timeout: Duration) -> String {
        self.wait_until(target, timeout, |s| s.lines().any(|l| l.trim() == line))
            .unwrap_or_else(|s| panic!("no line {line:?} in {target}:\n{s}"))
    }

    pub fn capture(&self, target: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", target])
    }

    /// Waits until `needle` is on the pane; returns the pane.
    pub fn wait_for(&self, target: &str, needle: &str, timeout: Duration) -> String {
        self.wait_until(target, timeout, |s| s.contains(needle))
            .unwrap_or_else(|s| panic!("{needle:?} never appeared in {target}:\n{s}"))
    }

    /// Waits until `done` holds for the pane; the last pane either way.
    pub fn wait_until(
        &self,
        target: &str,
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.capture(target);
            if done(&screen) {
                return Ok(screen);
            }
            if Instant::now() >= deadline {
                return Err(screen);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self
            .cmd()
            .arg("kill-server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
