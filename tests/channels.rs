//! Session channels of every everyday kind, end to end through the gateway
//! with stock OpenSSH tools: scp (SFTP-based and legacy), sftp, an
//! interactive shell with a pty in tmux (echo, window changes, exit),
//! several channels multiplexed over one client connection (ControlMaster),
//! isolation of a stalled channel from its siblings, bounded gateway memory
//! behind a slow reader, stdin EOF with stderr and exit status, and exit
//! signals.

mod common;

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::tmux::Tmux;
use common::{Gateway, LOGIN, World};
use sshd_test::{ChildGuard, require_program};

/// A name no other test (or earlier run) uses: process id, a counter and
/// the clock.
fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes a directory (created on the target, which is this machine) on drop.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Creates a fresh directory on the target as [`LOGIN`], through the gateway.
fn remote_dir(w: &World, gw: &Gateway) -> RemoveDir {
    let dir = PathBuf::from("/tmp").join(unique("gh-chan"));
    let (code, _, err) = w.ssh(
        gw,
        &format!("{LOGIN}@t"),
        &[&format!("mkdir -p {}", dir.display())],
    );
    assert_eq!(code, 0, "mkdir on the target failed: {err}");
    RemoveDir(dir)
}

/// The sha256 of a file, hex.
fn sha256(path: &Path) -> String {
    let mut c = Command::new("sha256sum");
    c.arg(path);
    let (code, out, err) = common::run(c, Duration::from_secs(60));
    assert_eq!(code, 0, "sha256sum {}: {err}", path.display());
    out.split_whitespace().next().expect("digest").to_owned()
}

/// The full ssh command line (program and client options) as one string.
fn ssh_command(w: &World, gw: &Gateway) -> String {
    std::iter::once(require_program("ssh").display().to_string())
        .chain(w.ssh_args(&w.client_key, gw.port))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Polls `check` every 100 ms until it returns true or `timeout` passes.
fn poll(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Uploading and downloading a ~20 MB random file with scp, both with the
/// default SFTP-based protocol (subsystem channel) and with `scp -O`
/// (legacy protocol over an exec channel), leaves byte-identical copies on
/// the target and back on the client.
#[test]
fn scp_both_ways_byte_identical() {
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    let remote = remote_dir(&w, &gw);
    let rdir = remote.0.display().to_string();
    let (code, _, err) = w.sh(
        &gw,
        "head -c 20000000 /dev/urandom > blob",
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{err}");
    let want = sha256(&w.path("blob"));
    let mut id = Command::new("id");
    id.args(["-u", LOGIN]);
    let (code, login_uid, _) = common::run(id, Duration::from_secs(10));
    assert_eq!(code, 0);
    let login_uid = login_uid.trim().to_owned();

    for (mode, flag) in [("sftp", ""), ("legacy", "-O")] {
        let script = format!(
            "scp {flag} -q $SCP_OPTS blob {LOGIN}@t@$GW:{rdir}/up-{mode}\n\
             scp {flag} -q $SCP_OPTS {LOGIN}@t@$GW:{rdir}/up-{mode} down-{mode}"
        );
        let (code, out, err) = w.sh(&gw, &script, Duration::from_secs(180));
        assert_eq!(code, 0, "scp ({mode}) failed:\n{out}\n{err}");
        // The copy on the target, read directly from its disk.
        let uploaded = remote.0.join(format!("up-{mode}"));
        assert_eq!(sha256(&uploaded), want, "upload ({mode}) differs");
        let owner = std::fs::metadata(&uploaded).unwrap().uid();
        assert_eq!(owner.to_string(), login_uid, "owner of the upload ({mode})");
        assert_eq!(
            sha256(&w.path(&format!("down-{mode}"))),
            want,
            "download ({mode}) differs"
        );
    }
    let log = gw.log();
    assert!(
        log.contains("event=\"channel.closed\""),
        "no channel.closed in the audit log:\n{log}"
    );
}

/// An sftp batch session (`put`, `ls -l`, `get`) works through the gateway:
/// the listing names the uploaded file with its size and the downloaded
/// file matches the original.
#[test]
fn sftp_put_get_ls() {
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    let remote = remote_dir(&w, &gw);
    let rdir = remote.0.display().to_string();
    let (code, _, err) = w.sh(
        &gw,
        "head -c 1234567 /dev/urandom > payload.bin",
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{err}");
    std::fs::write(
        w.path("batch"),
        format!(
            "cd {rdir}\nput payload.bin\nls -l\nget payload.bin fetched.bin\n\
             get {rdir}/payload.bin fetched-abs.bin\n"
        ),
    )
    .unwrap();
    let (code, out, err) = w.sh(
        &gw,
        &format!("sftp $SCP_OPTS -b batch {LOGIN}@t@$GW"),
        Duration::from_secs(120),
    );
    assert_eq!(code, 0, "sftp failed:\n{out}\n{err}");
    let listing = out
        .lines()
        .find(|l| l.ends_with("payload.bin") && l.starts_with('-'))
        .unwrap_or_else(|| panic!("ls -l does not list payload.bin:\n{out}"));
    assert!(listing.contains(" 1234567 "), "size missing: {listing}");
    assert!(listing.contains(LOGIN), "owner missing: {listing}");
    let want = sha256(&w.path("payload.bin"));
    assert_eq!(sha256(&remote.0.join("payload.bin")), want);
    assert_eq!(sha256(&w.path("fetched.bin")), want);
    assert_eq!(sha256(&w.path("fetched-abs.bin")), want);
}

/// An interactive login shell on a pty (in a detached tmux window) echoes
/// what is typed, sees the initial terminal size from pty-req, sees the new
/// size after the window is resized (window-change reached the target),
/// and ends the client when the user types `exit`.
#[test]
fn interactive_shell_in_tmux_echoes_resizes_and_exits() {
    require_program("tmux");
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    let tmux = Tmux::new(&w.path("tmux.sock"));
    let ssh = format!("{} {LOGIN}@t@127.0.0.1", ssh_command(&w, &gw));
    tmux.start("shell", 100, 30, &ssh);
    let wait = Duration::from_secs(20);

    tmux.keys("shell", &["echo hi-$((40+2))", "Enter"]);
    tmux.wait_for_line("shell", "hi-42", wait);

    tmux.keys("shell", &["stty size", "Enter"]);
    tmux.wait_for_line("shell", "30 100", wait);

    tmux.run(&["resize-window", "-t", "shell", "-x", "120", "-y", "40"]);
    tmux.keys("shell", &["stty size", "Enter"]);
    tmux.wait_for_line("shell", "40 120", wait);

    tmux.keys("shell", &["exit", "Enter"]);
    let gone = poll(Duration::from_secs(20), || !tmux.alive("shell"));
    assert!(gone, "the ssh client did not exit after `exit`");
    let log = gw.wait_for_log("event=\"channel.closed\"");
    assert!(log.contains("exit_status=0"), "{log}");
}

/// Starts an OpenSSH ControlMaster (`-M -S ctl -N`) to route `t` and waits
/// until it answers `-O check`.
fn control_master(w: &World, gw: &Gateway) -> (ChildGuard, PathBuf) {
    let ctl = w.path("ctl");
    let mut master = Command::new(require_program("ssh"));
    master
        .args(w.ssh_args(&w.client_key, gw.port))
        .args(["-o", "ControlMaster=yes", "-N", "-S"])
        .arg(&ctl)
        .arg(format!("{LOGIN}@t@127.0.0.1"));
    let mut master = ChildGuard::spawn(master).expect("spawn ssh master");
    let ready = poll(Duration::from_secs(20), || {
        let mut check = mux_client(w, gw, &ctl);
        check.args(["-O", "check", &format!("{LOGIN}@t@127.0.0.1")]);
        let st = check.stdout(Stdio::null()).stderr(Stdio::null()).status();
        st.map(|s| s.success()).unwrap_or(false)
    });
    assert!(
        ready,
        "control master never became ready (running: {}):\n{}",
        master.is_running(),
        master.stderr_text()
    );
    (master, ctl)
}

/// An ssh client that goes through the control socket `ctl`.
fn mux_client(w: &World, gw: &Gateway, ctl: &Path) -> Command {
    let mut c = Command::new(require_program("ssh"));
    c.args(w.ssh_args(&w.client_key, gw.port))
        .args(["-o", "ControlMaster=no", "-S"])
        .arg(ctl);
    c
}

/// Two session channels on one client connection (an OpenSSH
/// ControlMaster) run at the same time: the first blocks until the second
/// lets it go, so it can only finish if the second channel runs while the
/// first is still open. Each channel gets its own upstream connection.
#[test]
fn control_master_runs_two_channels_at_once() {
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    let remote = remote_dir(&w, &gw);
    let rdir = remote.0.display().to_string();
    w.sshd
        .wait_for_log("Accepted publickey", Duration::from_secs(10))
        .expect("the mkdir session logged in");
    let accepted_before = count_accepted(&w);
    let (_master, ctl) = control_master(&w, &gw);
    let dest = format!("{LOGIN}@t@127.0.0.1");

    // Channel one announces itself, then waits (at most 60 s) for `go`.
    let mut first = mux_client(&w, &gw, &ctl);
    first.args([
        dest.as_str(),
        &format!(
            "cd {rdir} && touch started && \
             for i in $(seq 600); do [ -e go ] && break; sleep 0.1; done; \
             [ -e go ] && echo one"
        ),
    ]);
    let started = Instant::now();
    let mut first = ChildGuard::spawn(first).expect("spawn first client");
    let running = poll(Duration::from_secs(30), || {
        remote.0.join("started").exists()
    });
    assert!(
        running,
        "the first channel never started its command:\n{}",
        first.stderr_text()
    );

    // Channel two, opened while channel one is blocked, releases it.
    let mut second = mux_client(&w, &gw, &ctl);
    second.args([dest.as_str(), &format!("touch {rdir}/go && echo two")]);
    let (code, out, err) = common::run(second, Duration::from_secs(30));
    let second_done = started.elapsed();
    assert_eq!(out.trim(), "two", "second channel: {err}");
    assert_eq!(code, 0, "second channel: {err}");

    let first_status = first.wait_exit(Duration::from_secs(30)).unwrap_or_else(|| {
        panic!(
            "the first channel did not finish after the second released it:\n{}",
            first.stderr_text()
        )
    });
    let first_done = started.elapsed();
    std::thread::sleep(Duration::from_millis(100));
    // `one` is printed only if `go` appeared while the first channel ran.
    assert!(first_status.success(), "{}", first.stderr_text());
    assert_eq!(
        first.stdout_text().trim(),
        "one",
        "the first channel never saw `go`: {}",
        first.stderr_text()
    );
    println!("control master: second done at {second_done:?}, first at {first_done:?}");

    let accepted = count_accepted(&w) - accepted_before;
    assert!(
        accepted >= 2,
        "expected an upstream connection per channel, sshd accepted {accepted}:\n{}",
        w.sshd.log()
    );
}

/// How many logins the target sshd has accepted so far.
fn count_accepted(w: &World) -> usize {
    w.sshd
        .log()
        .lines()
        .filter(|l| l.contains(&format!("Accepted publickey for {LOGIN}")))
        .count()
}

/// Every channel opened through a ControlMaster gets the command's exit
/// status, as it does when the same master talks to sshd directly.
///
/// Regression: the OpenSSH master sends CHANNEL_CLOSE as soon as it has
/// both sent and received EOF, without waiting for exit-status, and russh
/// answers that close at once. The gateway used to forward the target's
/// EOF before the exit status that follows it, so about one channel in ten
/// exited 255 with `exit_status=-1` in the audit log. Forty channels catch
/// a regression reliably.
#[test]
fn control_master_channels_keep_their_exit_status() {
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    let (master, ctl) = control_master(&w, &gw);
    let dest = format!("{LOGIN}@t@127.0.0.1");
    let mut failed = Vec::new();
    for i in 0..40 {
        let mut c = mux_client(&w, &gw, &ctl);
        c.args([dest.as_str(), &format!("echo {i}; exit 7")]);
        let (code, out, err) = common::run(c, Duration::from_secs(30));
        assert_eq!(out.trim(), i.to_string(), "channel {i}: {err}");
        if code != 7 {
            failed.push((i, code));
        }
    }
    let lost = gw.log().matches("exit_status=-1").count();
    assert!(
        failed.is_empty(),
        "{} of 40 channels lost their exit status 7 (channel, ssh exit code): \
         {failed:?}; channel.closed events with exit_status=-1: {lost}\nmaster:\n{}",
        failed.len(),
        master.stderr_text()
    );
}

/// A channel whose output nobody reads (its window and the gateway's
/// per-direction buffer full) does not stall another channel on the same
/// client connection.
#[test]
fn slow_channel_does_not_stall_another() {
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    let (_master, ctl) = control_master(&w, &gw);
    let dest = format!("{LOGIN}@t@127.0.0.1");

    let mut stalled = mux_client(&w, &gw, &ctl);
    stalled
        .args([dest.as_str(), "head -c 2000000000 /dev/zero"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let stalled = KillOnDrop(stalled.spawn().expect("spawn stalled client"));
    // Setup, not an assertion: give the stream time to fill the pipe, the
    // client's window and the gateway's buffer.
    std::thread::sleep(Duration::from_secs(2));

    let mut other = mux_client(&w, &gw, &ctl);
    other.args([dest.as_str(), "echo alive"]);
    let (code, out, err) = common::run(other, Duration::from_secs(30));
    assert_eq!(out.trim(), "alive", "{err}");
    assert_eq!(code, 0, "{err}");

    let mut stalled = stalled;
    assert!(
        matches!(stalled.0.try_wait(), Ok(None)),
        "the stalled channel ended early, so it proved nothing"
    );
}

/// Kills and reaps a plain child on drop (for children whose pipes the
/// test must control itself).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fast producer behind a slow reader does not make the gateway buffer
/// the difference: resident memory stays within 64 MiB of where it started
/// while tens of megabytes flow.
#[test]
fn slow_reader_keeps_gateway_memory_bounded() {
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    // Warm up: one full session so first-use allocations are in the baseline.
    let (code, _, err) = w.ssh(&gw, &format!("{LOGIN}@t"), &["true"]);
    assert_eq!(code, 0, "{err}");
    let baseline = gw.rss_kib();

    let reader = "import os, time\n\
                  total = 0\n\
                  end = time.monotonic() + 8\n\
                  while time.monotonic() < end:\n\
                  \x20   b = os.read(0, 65536)\n\
                  \x20   if not b:\n\
                  \x20       break\n\
                  \x20   total += len(b)\n\
                  \x20   time.sleep(0.005)\n\
                  print(total)\n";
    // The two ends are separate processes so the test can stop ssh once the
    // reader is done: ssh discards output it can no longer write and waits
    // for the remote command, which would take a long time.
    let mut ssh = Command::new(require_program("ssh"));
    ssh.args(w.ssh_args(&w.client_key, gw.port))
        .arg(format!("{LOGIN}@t@127.0.0.1"))
        .arg("head -c 3000000000 /dev/zero")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut ssh = KillOnDrop(ssh.spawn().expect("spawn ssh"));
    let ssh_stdout = ssh.0.stdout.take().expect("piped stdout");
    let reader = Command::new("python3")
        .args(["-c", reader])
        .stdin(ssh_stdout)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3 reader");
    let mut reader = KillOnDrop(reader);

    let mut peak = baseline;
    let mut samples = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while matches!(reader.0.try_wait(), Ok(None)) {
        assert!(Instant::now() < deadline, "the slow reader never finished");
        peak = peak.max(gw.rss_kib());
        samples += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut out_pipe = reader.0.stdout.take().expect("piped stdout");
    let mut err_pipe = reader.0.stderr.take().expect("piped stderr");
    let (mut text, mut err) = (String::new(), String::new());
    let _ = out_pipe.read_to_string(&mut text);
    let _ = err_pipe.read_to_string(&mut err);
    let received: u64 = text
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("reader output: {text:?}, stderr: {err}"));
    let growth = peak.saturating_sub(baseline);
    println!(
        "slow reader: baseline {baseline} KiB, peak {peak} KiB, growth {growth} KiB, \
         {samples} samples, {received} bytes received"
    );
    assert!(
        received > 10_000_000,
        "only {received} bytes arrived; the test proved nothing"
    );
    assert!(
        growth < 65536,
        "gateway RSS grew by {growth} KiB (baseline {baseline}, peak {peak})"
    );
}

/// An exec channel carries stdin up to EOF (so `wc -l` finishes), keeps
/// stderr apart from stdout, and returns the command's exit status.
#[test]
fn exec_with_stdin_eof_and_stderr() {
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    let (code, out, err) = w.sh(
        &gw,
        &format!("printf 'a\\nb\\n' | $SSH {LOGIN}@t@$GW 'wc -l; echo err >&2; exit 5'"),
        Duration::from_secs(60),
    );
    assert_eq!(code, 5, "stdout: {out}\nstderr: {err}");
    assert_eq!(out.trim(), "2", "stderr: {err}");
    assert!(err.lines().any(|l| l.trim() == "err"), "stderr: {err}");
    assert!(!out.contains("err"), "stderr leaked into stdout: {out}");
}

/// A command killed by a signal reaches the client as an exit-signal (ssh
/// exits 255) and the audit log's `channel.closed` event names the signal.
#[test]
fn exit_signal_is_propagated() {
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    let (code, out, err) = w.ssh(&gw, &format!("{LOGIN}@t"), &["kill -TERM $$"]);
    assert_eq!(code, 255, "stdout: {out}\nstderr: {err}");
    let line = gw.wait_for_log("event=\"channel.closed\"");
    let signal = line
        .split("exit_signal=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no exit_signal field: {line}"));
    assert!(
        !signal.is_empty() && signal != "\"\"",
        "exit_signal is empty: {line}"
    );
    assert!(signal.contains("TERM"), "exit_signal={signal}: {line}");
}

/// Input flooding into a target that never reads is held back by TCP, not
/// buffered: the gateway's memory stays bounded.
#[test]
fn input_flood_into_a_target_that_never_reads_keeps_memory_bounded() {
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    let baseline = gw.rss_kib();
    let mut flood = ChildGuard::spawn({
        let mut c = Command::new("bash");
        c.arg("-c").arg(format!(
            "exec {} {} {LOGIN}@t@127.0.0.1 'sleep 30' < /dev/zero",
            sshd_test::require_program("ssh").display(),
            w.ssh_args(&w.client_key, gw.port).join(" ")
        ));
        c
    })
    .expect("spawn flood");
    gw.wait_for_log("event=\"target.connected\"");
    let mut peak = baseline;
    for _ in 0..12 {
        std::thread::sleep(Duration::from_millis(500));
        peak = peak.max(gw.rss_kib());
    }
    assert!(
        flood.is_running(),
        "the flood ended early, so it proved nothing"
    );
    let growth = peak.saturating_sub(baseline);
    println!("input flood: gateway RSS grew by {growth} KiB over {baseline} KiB");
    assert!(growth < 65_536, "gateway memory grew by {growth} KiB");
    flood.kill();
}

/// A policy change that narrows a session's capabilities without denying
/// it: the running channel goes on, and new channels on the same client
/// connection (through the ControlMaster) follow the new decision.
#[test]
fn a_narrowed_policy_applies_to_new_channels_of_a_running_session() {
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    let (_master, ctl) = control_master(&w, &gw);
    let dest = format!("{LOGIN}@t@127.0.0.1");
    let mut first = mux_client(&w, &gw, &ctl);
    first.args([dest.as_str(), "echo running; exec sleep 60"]);
    let mut first = ChildGuard::spawn(first).expect("spawn first client");
    first
        .wait_for_output("running", Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("the first channel did not start: {e}"));

    // Commands are no longer allowed on the route; the session still is.
    w.write_config(
        &[w.route("t", &common::policy("capabilities: {exec: false}"))],
        "",
    );
    let log = gw.wait_for_log("event=\"session.narrowed\"");
    assert!(!log.contains("event=\"session.ended\""), "{log}");
    assert!(first.is_running(), "{}", first.stderr_text());

    let mut second = mux_client(&w, &gw, &ctl);
    second.args([dest.as_str(), "echo two"]);
    let (code, out, err) = common::run(second, Duration::from_secs(30));
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("gatehouse: running commands is not allowed on route t"),
        "{err}"
    );
    assert!(first.is_running(), "{}", first.stderr_text());
}
