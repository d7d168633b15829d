//! Session recording end to end (issue 4): real `ssh`, `sftp`, `sshd`, the
//! real `gatehouse` binary, and for S3 a real SeaweedFS server. Recordings
//! are read back through the recorder's own catalog, the way `gatehouse
//! sessions` and the replay tools read them.

mod common;

use std::time::{Duration, Instant};

use common::recording::{file_catalog, runtime, s3_catalog, s3_section};
use common::tmux::Tmux;
use common::{Gateway, LOGIN, World, policy};
use recorder::asciicast::Event;
use recorder::{Catalog, FileOpKind, SessionFilter, SessionRecord, Status};
use sshd_test::ChildGuard;
use sshd_test::s3::S3Server;

/// Waits until the index has a finished recording (sealed, interrupted or
/// failed) for a session on `route`, and returns it.
fn finished(catalog: &Catalog, route: &str, timeout: Duration) -> SessionRecord {
    let deadline = Instant::now() + timeout;
    loop {
        let filter = SessionFilter {
            route: Some(route.to_owned()),
            ..SessionFilter::default()
        };
        let list = runtime().block_on(catalog.list(&filter)).unwrap();
        if let Some(r) = list
            .into_iter()
            .find(|r| !matches!(r.status, Status::Recording | Status::Uploading))
        {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no finished recording on route {route} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The events of the session's first recorded channel.
fn events(catalog: &Catalog, session: &str) -> Vec<Event> {
    let cast = runtime().block_on(catalog.cast(session, None)).unwrap();
    cast.events.into_iter().map(|e| e.event).collect()
}

fn output(events: &[Event]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Output(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn exec_output_and_exit_code_are_recorded_and_sealed() {
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    let (code, out, err) = w.ssh(
        &gw,
        &format!("{LOGIN}@t"),
        &["echo recorded-$((6*7)); exit 3"],
    );
    assert_eq!(code, 3, "{err}");
    assert_eq!(out.trim(), "recorded-42");

    let catalog = file_catalog(&w);
    let rec = finished(&catalog, "t", Duration::from_secs(20));
    assert_eq!(rec.status, Status::Sealed, "{rec:?}");
    assert_eq!(rec.exit_status, Some(3));
    assert_eq!(rec.info.identity, "alice@example.com");
    assert_eq!(rec.info.login, LOGIN);
    assert!(rec.info.client_key_fingerprint.is_some());
    let events = events(&catalog, &rec.info.session_id);
    assert!(output(&events).contains("recorded-42"), "{events:?}");
    assert!(events.contains(&Event::Exit(3)), "{events:?}");
    // The header names the certificate the target saw.
    let cast = runtime()
        .block_on(catalog.cast(&rec.info.session_id, None))
        .unwrap();
    let serial = cast
        .header
        .gatehouse
        .as_ref()
        .and_then(|g| g.session.cert_serial)
        .unwrap();
    assert!(
        gw.log().contains(&format!("cert_serial={serial}")),
        "serial {serial} not in the audit log"
    );
    let (_, channels) = runtime()
        .block_on(catalog.show(&rec.info.session_id))
        .unwrap()
        .unwrap();
    assert_eq!(channels.len(), 1);
    assert_eq!(channels[0].kind, "exec");
    assert!(
        channels[0]
            .command
            .as_deref()
            .is_some_and(|c| c.contains("recorded-")),
        "{channels:?}"
    );
    // The session id in the recording is the one in the audit log.
    assert!(gw.log().contains(&rec.info.session_id));
    // The session starts before its target connection, yet the index and
    // `sessions show` carry the serial the target saw (issue 10).
    assert_eq!(rec.info.cert_serial, Some(serial), "{rec:?}");
    let mut show = std::process::Command::new(common::bin());
    show.args(["sessions", "show", "-c"])
        .arg(w.path("gatehouse.yaml"))
        .arg(&rec.info.session_id);
    let (code, shown, err) = common::run(show, Duration::from_secs(20));
    assert_eq!(code, 0, "{err}");
    assert!(shown.contains(&format!("cert serial: {serial}")), "{shown}");
}

#[test]
fn sftp_is_recorded_as_file_operations_and_input_only_when_enabled() {
    let w = World::new();
    let gw = w.start(&[
        w.route("plain", ""),
        w.route("keys", &policy("obligations: {record_input: true}")),
    ]);
    let payload = w.path("payload.bin");
    std::fs::write(&payload, vec![7u8; 300_000]).unwrap();
    let script = format!(
        "put {} /tmp/gh-rec-{}.bin\nget /tmp/gh-rec-{}.bin {}\nrm /tmp/gh-rec-{}.bin\n",
        payload.display(),
        std::process::id(),
        std::process::id(),
        w.path("back.bin").display(),
        std::process::id(),
    );
    std::fs::write(w.path("batch"), script).unwrap();
    let (code, out, err) = w.sh(
        &gw,
        &format!("sftp $SCP_OPTS -b batch {LOGIN}@plain@$GW"),
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(std::fs::read(w.path("back.bin")).unwrap().len(), 300_000);

    let catalog = file_catalog(&w);
    let rec = finished(&catalog, "plain", Duration::from_secs(20));
    let recorded = events(&catalog, &rec.info.session_id);
    let ops: Vec<_> = recorded
        .iter()
        .filter_map(|e| match e {
            Event::FileOp(op) => Some(op),
            _ => None,
        })
        .collect();
    let written = ops
        .iter()
        .find(|op| op.op == FileOpKind::Close && op.bytes_written == 300_000)
        .unwrap_or_else(|| panic!("no close with 300000 bytes written: {ops:#?}"));
    assert!(written.path.starts_with("/tmp/gh-rec-"), "{written:?}");
    assert!(
        ops.iter()
            .any(|op| op.op == FileOpKind::Close && op.bytes_read == 300_000),
        "{ops:#?}"
    );
    assert!(ops.iter().any(|op| op.op == FileOpKind::Remove), "{ops:#?}");
    // File contents are not in the recording.
    assert!(
        output(&recorded).is_empty(),
        "sftp bytes recorded as output"
    );

    // Keystrokes: not recorded on `plain`, recorded on `keys`.
    for route in ["plain", "keys"] {
        let (code, _, err) = w.sh(
            &gw,
            &format!("printf 'typed-secret\\n' | $SSH {LOGIN}@{route}@$GW 'read x; echo got-$x'"),
            Duration::from_secs(30),
        );
        assert_eq!(code, 0, "{err}");
    }
    let list = runtime()
        .block_on(catalog.list(&SessionFilter::default()))
        .unwrap();
    let input_of = |route: &str| -> String {
        let rec = list
            .iter()
            .find(|r| r.info.route == route && r.exit_status == Some(0) && r.bytes > 0)
            .unwrap_or_else(|| panic!("no recording on {route}: {list:#?}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while runtime()
            .block_on(catalog.show(&rec.info.session_id))
            .unwrap()
            .unwrap()
            .0
            .status
            != Status::Sealed
        {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(100));
        }
        events(&catalog, &rec.info.session_id)
            .iter()
            .filter_map(|e| match e {
                Event::Input(t) => Some(t.clone()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(input_of("plain"), "");
    assert!(input_of("keys").contains("typed-secret"));
    // Recorded or not, keystrokes and output never reach the gateway's log.
    let log = gw.log();
    assert!(
        !log.contains("typed-secret") && !log.contains("got-typed"),
        "{log}"
    );
}

#[test]
fn a_shell_recording_replays_to_the_screen_the_user_saw() {
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    let ssh_cmd = {
        let mut args = vec![sshd_test::require_program("ssh").display().to_string()];
        args.extend(w.ssh_args(&w.client_key, gw.port));
        args.push("-tt".into());
        args.push(format!("{LOGIN}@t@127.0.0.1"));
        args.join(" ")
    };
    let tmux = Tmux::new(&w.path("tmux.sock"));
    tmux.run(&[
        "new-session",
        "-d",
        "-x",
        "100",
        "-y",
        "30",
        "-s",
        "live",
        &ssh_cmd,
    ]);
    tmux.wait_for("live", "$", Duration::from_secs(20));
    for keys in [
        "printf '\\033[1mbold\\033[0m and plain\\n'",
        "seq 1 40",
        "printf 'caf\\303\\251 \\342\\224\\200\\342\\224\\200 done\\n'",
    ] {
        tmux.run(&["send-keys", "-t", "live", keys, "Enter"]);
    }
    tmux.wait_for("live", "done", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let seen = tmux.capture("live");
    tmux.run(&["send-keys", "-t", "live", "exit", "Enter"]);

    let catalog = file_catalog(&w);
    let rec = finished(&catalog, "t", Duration::from_secs(20));
    let events = events(&catalog, &rec.info.session_id);
    // Replay the recorded output into a fresh terminal of the same size.
    let replay = w.path("replay.out");
    let mut text = output(&events);
    // The shell's exit is not part of the screen compared.
    if let Some(i) = text.rfind("exit") {
        text.truncate(i);
    }
    std::fs::write(&replay, text).unwrap();
    tmux.run(&[
        "new-session",
        "-d",
        "-x",
        "100",
        "-y",
        "30",
        "-s",
        "replay",
        &format!("cat {} && sleep 60", replay.display()),
    ]);
    tmux.wait_for("replay", "done", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let replayed = tmux.capture("replay");
    let trim = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.trim_end().to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    };
    let seen = trim(&seen);
    let replayed = trim(&replayed);
    assert_eq!(
        replayed,
        seen,
        "replayed screen differs:\n--- seen ---\n{}\n--- replayed ---\n{}",
        seen.join("\n"),
        replayed.join("\n")
    );
    assert!(seen.iter().any(|l| l.contains("café ── done")), "{seen:?}");
}

/// The recording section for a SeaweedFS bucket.
#[test]
fn a_killed_gateway_leaves_an_interrupted_recording_that_the_next_start_seals() {
    let s3 = S3Server::start();
    let w = World::new();
    let config = w.write_config(&[w.route("t", "")], &s3_section(&w, &s3, ""));
    let gw = Gateway::start(&config);
    let cmd = w.ssh_command(
        &w.client_key,
        &gw,
        &format!("{LOGIN}@t"),
        &["for i in $(seq 1 1000); do echo tick-$i; sleep 0.1; done"],
    );
    let client = ChildGuard::spawn(cmd).unwrap();
    client
        .wait_for_output("tick-20", Duration::from_secs(30))
        .unwrap();
    // What the client had seen when the gateway died.
    gw.child.signal("KILL").unwrap();
    let seen = client.stdout_text();
    let last_seen = seen
        .lines()
        .filter_map(|l| l.strip_prefix("tick-")?.parse::<u32>().ok())
        .max()
        .unwrap();
    drop(client);
    drop(gw);

    // The next start seals what the spool held.
    let gw = Gateway::start(&config);
    let catalog = s3_catalog(&w, &s3);
    let rec = finished(&catalog, "t", Duration::from_secs(30));
    assert_eq!(rec.status, Status::Interrupted, "{rec:?}");
    let recorded = output(&events(&catalog, &rec.info.session_id));
    let last_recorded = recorded
        .lines()
        .filter_map(|l| l.strip_prefix("tick-")?.parse::<u32>().ok())
        .max()
        .unwrap();
    // Output reaches the spool before the client, so everything the
    // client saw is there (the spool is written, not only fsynced).
    assert!(
        last_recorded >= last_seen,
        "recorded up to tick-{last_recorded}, client saw tick-{last_seen}"
    );
    drop(gw);
}

#[test]
fn strict_routes_refuse_without_storage_and_end_when_it_goes_away() {
    let mut s3 = S3Server::start();
    let w = World::new();
    let config = w.write_config(
        &[
            w.route("strict", &policy("obligations: {record: strict}")),
            w.route("easy", ""),
        ],
        &s3_section(&w, &s3, "  strict_grace: 2s\n"),
    );
    let gw = Gateway::start(&config);

    // Storage up: a strict session runs, and is ended once storage has been
    // gone for longer than strict_grace.
    let cmd = w.ssh_command(
        &w.client_key,
        &gw,
        &format!("{LOGIN}@strict"),
        &["for i in $(seq 1 600); do echo beat-$i; sleep 0.1; done"],
    );
    let mut client = ChildGuard::spawn(cmd).unwrap();
    client
        .wait_for_output("beat-5", Duration::from_secs(30))
        .unwrap();
    s3.stop();
    let status = client
        .wait_exit(Duration::from_secs(30))
        .expect("strict session kept running without storage");
    assert_eq!(status.code(), Some(255));
    assert!(
        client
            .stderr_text()
            .contains("gatehouse: session ended: the recording can no longer be stored"),
        "{}",
        client.stderr_text()
    );

    // Storage down: a new strict session is refused, a best-effort one runs.
    let (code, _, err) = w.ssh(&gw, &format!("{LOGIN}@strict"), &["echo", "never"]);
    assert_eq!(code, 255);
    assert!(
        err.contains(
            "gatehouse: recording storage is unavailable and route strict requires recording"
        ),
        "{err}"
    );
    let (code, out, err) = w.ssh(&gw, &format!("{LOGIN}@easy"), &["echo", "still-here"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "still-here");
    s3.restart();
}

/// Issue 10: the strict-recording watchdog ends a session like every other
/// end does: `session.ended` with `cause = "recording"`, and the client's
/// connection is closed, not only its channels. A ControlMaster holds the
/// connection with no channel of its own, so it exits only if the gateway
/// closes the connection.
#[test]
fn a_lost_strict_recording_ends_the_session_and_closes_the_connection() {
    let mut s3 = S3Server::start();
    let w = World::new();
    let config = w.write_config(
        &[w.route("strict", &policy("obligations: {record: strict}"))],
        &s3_section(&w, &s3, "  strict_grace: 2s\n"),
    );
    let gw = Gateway::start(&config);
    let ctl = w.path("ctl");
    let dest = format!("{LOGIN}@strict@127.0.0.1");
    let ssh = || {
        let mut c = std::process::Command::new(sshd_test::require_program("ssh"));
        c.args(w.ssh_args(&w.client_key, gw.port))
            .arg("-S")
            .arg(&ctl);
        c
    };
    let mut master = ssh();
    master.args(["-o", "ControlMaster=yes", "-N", &dest]);
    let mut master = ChildGuard::spawn(master).expect("spawn ssh master");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ssh()
        .args(["-o", "ControlMaster=no", "-O", "check", &dest])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(
            Instant::now() < deadline,
            "control master never became ready:\n{}",
            master.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut session = ssh();
    session.args([
        "-o",
        "ControlMaster=no",
        &dest,
        "for i in $(seq 1 600); do echo beat-$i; sleep 0.1; done",
    ]);
    let mut client = ChildGuard::spawn(session).expect("spawn ssh");
    client
        .wait_for_output("beat-5", Duration::from_secs(30))
        .unwrap();
    s3.stop();
    let status = client
        .wait_exit(Duration::from_secs(30))
        .expect("strict session kept running without storage");
    assert_eq!(status.code(), Some(255), "{}", client.stderr_text());
    assert!(
        client
            .stderr_text()
            .contains("gatehouse: session ended: the recording can no longer be stored"),
        "{}",
        client.stderr_text()
    );
    // The connection itself is closed: the master, which has no channel,
    // learns it from the gateway.
    let closed = master.wait_exit(Duration::from_secs(10));
    assert!(
        closed.is_some(),
        "the gateway kept the connection open after ending the session"
    );
    gw.wait_for_log("event=\"session.ended\"");
    let log = gw.log();
    let ended = log
        .lines()
        .find(|l| l.contains("event=\"session.ended\""))
        .unwrap_or_default();
    assert!(ended.contains("cause=\"recording\""), "{ended}");
    let lost = log
        .lines()
        .find(|l| l.contains("event=\"recording.lost\""))
        .unwrap_or_else(|| panic!("no recording.lost in {log}"));
    let session_id = ended
        .split("session_id=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("session.ended names the session");
    assert!(lost.contains(&format!("session_id={session_id}")), "{lost}");
    s3.restart();
}

#[test]
fn a_storage_outage_mid_session_loses_nothing() {
    let mut s3 = S3Server::start();
    let w = World::new();
    let config = w.write_config(&[w.route("t", "")], &s3_section(&w, &s3, ""));
    let gw = Gateway::start(&config);
    let cmd = w.ssh_command(&w.client_key, &gw, &format!("{LOGIN}@t"), &["for i in $(seq 1 700); do echo line-$i-$(head -c 30 /dev/urandom | base64); sleep 0.05; done; echo end-of-output"]);
    let mut client = ChildGuard::spawn(cmd).unwrap();
    client
        .wait_for_output("line-10-", Duration::from_secs(30))
        .unwrap();
    s3.stop();
    // Storage is gone for 30 s while the session keeps producing output.
    std::thread::sleep(Duration::from_secs(30));
    s3.restart();
    let status = client.wait_exit(Duration::from_secs(120)).unwrap();
    assert!(status.success(), "{}", client.stderr_text());
    let seen = client.stdout_text();
    assert!(seen.contains("end-of-output"));

    let catalog = s3_catalog(&w, &s3);
    let rec = finished(&catalog, "t", Duration::from_secs(60));
    assert_eq!(rec.status, Status::Sealed, "{rec:?}");
    let recorded = output(&events(&catalog, &rec.info.session_id));
    // Byte-exact: without a pty the recorded stream is what ssh printed.
    assert_eq!(recorded, seen);
    let verified = runtime()
        .block_on(catalog.verify(&rec.info.session_id, None))
        .unwrap();
    assert!(verified.ok, "{verified:?}");
    assert!(
        gw.log().contains("recording.upload_failed"),
        "outage not reported"
    );
}
