//! Outages of the gateway's own state database: locked by another process,
//! or its disk full. Without it the gateway cannot see revocations or kill
//! requests, so new logins fail closed with one line (the audit log gets
//! the error); sessions already live go on, and logins work again once the
//! database does.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Gateway, LOGIN, World, bin};
use sshd_test::{ChildGuard, require_program};

const STATE_LINE: &str =
    "gatehouse: the gateway cannot reach its state database; try again in a minute";

fn assert_line(stderr: &str, line: &str) {
    assert!(
        stderr.lines().any(|l| l.trim() == line),
        "expected the line {line:?} on the client, got:\n{stderr}"
    );
}

/// A session that stays open: a remote loop that echoes each line back.
struct LiveShell {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl LiveShell {
    fn start(w: &World, gw: &Gateway) -> LiveShell {
        let mut cmd = w.ssh_command(
            &w.client_key,
            gw,
            &format!("{LOGIN}@t"),
            &["while read l; do echo \"got $l\"; done"],
        );
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn ssh");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LiveShell {
            child,
            stdin,
            lines,
        }
    }

    /// Sends `word` and waits for the session to answer it.
    fn echo(&mut self, word: &str) {
        writeln!(self.stdin, "{word}").expect("write to the live session");
        self.stdin.flush().expect("flush");
        let got = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("the live session did not answer {word:?}: {e}"));
        assert_eq!(got, format!("got {word}"));
    }
}

impl Drop for LiveShell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Holds SQLite's write lock on `db` from another process (as a second
/// gateway or a stuck `gatehouse` command would) until dropped.
fn hold_write_lock(db: &Path) -> ChildGuard {
    let mut cmd = Command::new(require_program("python3"));
    cmd.args([
        "-c",
        "import sqlite3, sys, time\n\
         c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
         c.execute('BEGIN EXCLUSIVE')\n\
         print('locked', flush=True)\n\
         time.sleep(3600)\n",
    ])
    .arg(db);
    let holder = ChildGuard::spawn(cmd).expect("spawn python3");
    holder
        .wait_for_output("locked", Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("could not lock {}: {e}", db.display()));
    holder
}

#[test]
fn a_locked_state_database_refuses_new_logins_and_keeps_live_ones() {
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    let mut live = LiveShell::start(&w, &gw);
    live.echo("before");

    let lock = hold_write_lock(&w.path("state/gatehouse.db"));
    let (code, _, err) = w.ssh(&gw, &format!("{LOGIN}@t"), &["true"]);
    assert_eq!(code, 255, "{err}\n{}", gw.log());
    assert_line(&err, STATE_LINE);
    assert_eq!(err.matches("state database").count(), 1, "{err}");
    live.echo("during");
    let log = gw.wait_for_log("event=\"state.unavailable\"");
    assert!(log.contains("operation=\"session_opened\""), "{log}");

    drop(lock);
    let (code, out, err) = w.ssh(&gw, &format!("{LOGIN}@t"), &["echo", "back"]);
    assert_eq!((code, out.trim()), (0, "back"), "{err}");
    live.echo("after");
}

#[test]
fn a_full_state_disk_refuses_new_logins_and_keeps_live_ones() {
    let w = World::new();
    let state = w.path("state");
    std::fs::create_dir(&state).unwrap();
    // Recordings live elsewhere: only the state database's disk fills.
    let config = w.write_config(
        &[w.route("t", "")],
        &format!(
            "recording: {{spool_dir: {}, storage: \"file://{}\"}}\n",
            w.path("spool").display(),
            w.path("recordings").display()
        ),
    );
    // The gateway gets a small file system of its own for the state
    // directory: a tmpfs in a mount namespace (a user namespace makes
    // that possible without privileges). A helper inside the namespace
    // fills it when `fill` appears and empties it when `empty` does
    // (signal files outside the tmpfs), then reports in `filled`/`emptied`.
    let script = "mount -t tmpfs -o size=16m,mode=0700 tmpfs \"$1\" || exit 1
(i=0; while [ ! -e \"$4/fill\" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
 head -c 64M /dev/zero > \"$1/filler\" 2>/dev/null; touch \"$4/filled\"
 i=0; while [ ! -e \"$4/empty\" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
 rm -f \"$1/filler\"; touch \"$4/emptied\") &
exec \"$2\" serve --config \"$3\"";
    let signals = w.path("signals");
    std::fs::create_dir(&signals).unwrap();
    let mut cmd = Command::new(require_program("unshare"));
    cmd.args([
        "--user",
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .arg(&state)
    .arg(bin())
    .arg(&config)
    .arg(&signals);
    let gw = Gateway::start_command(cmd);
    let signal = |name: &str, answer: &str| {
        std::fs::write(signals.join(name), "").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !signals.join(answer).exists() {
            assert!(std::time::Instant::now() < deadline, "no {answer}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    let mut live = LiveShell::start(&w, &gw);
    live.echo("before");

    signal("fill", "filled");
    let (code, _, err) = w.ssh(&gw, &format!("{LOGIN}@t"), &["true"]);
    assert_eq!(code, 255, "{err}");
    assert_line(&err, STATE_LINE);
    live.echo("during");
    let log = gw.wait_for_log("event=\"state.unavailable\"");
    assert!(log.contains("operation=\"session_opened\""), "{log}");

    signal("empty", "emptied");
    let (code, out, err) = w.ssh(&gw, &format!("{LOGIN}@t"), &["echo", "back"]);
    assert_eq!((code, out.trim()), (0, "back"), "{err}");
    live.echo("after");
}

/// How many sessions the state database holds as live.
fn live_rows(db: &Path) -> String {
    let out = Command::new(require_program("python3"))
        .args([
            "-c",
            "import sqlite3, sys\n\
             c = sqlite3.connect(sys.argv[1], timeout=30)\n\
             print(c.execute('SELECT count(*) FROM live_sessions').fetchone()[0])\n",
        ])
        .arg(db)
        .output()
        .expect("run python3");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A login cut off by its deadline while the gateway waits to write it as
/// live: the write still lands once the lock goes, and the gateway must
/// take it back, or the state database shows a session that never was
/// (until the gateway restarts).
#[test]
fn a_login_cut_off_while_it_is_written_leaves_no_live_session() {
    let w = World::new();
    let gw = w.start_with(
        &[w.route("t", "")],
        "limits: {auth_timeout: 2s, penalties: {exempt: [127.0.0.1]}}\n",
    );
    let db = w.path("state/gatehouse.db");
    let lock = hold_write_lock(&db);
    // The gateway's write waits up to 5 s for the lock; the connection's
    // deadline ends it after 2 s, and the lock goes right after that.
    let (code, _, err) = w.ssh(&gw, &format!("{LOGIN}@t"), &["true"]);
    assert_eq!(code, 255, "{err}");
    drop(lock);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rows = live_rows(&db);
        if rows == "0" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{rows} live session(s) left behind\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The gateway is none the worse: the same login now gets in.
    let (code, out, err) = w.ssh(&gw, &format!("{LOGIN}@t"), &["echo", "in"]);
    assert_eq!((code, out.trim()), (0, "in"), "{err}");
}
