//! `gatehouse sessions` and `gatehouse recordings` against recordings made
//! with the recorder library directly, in the storage a real config names,
//! signed with the host key that config names (issue 4). The gateway's own
//! recording path has its own end-to-end tests; these check the commands.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{LOGIN, World, bin, run};
use recorder::asciicast::Term;
use recorder::{ChannelKind, ChannelSpec, Ed25519Signer, Recorder, SessionInfo, Signer, Status};

fn gatehouse(args: &[&str], config: &Path) -> (i32, String, String) {
    let mut c = Command::new(bin());
    c.args(args).arg("--config").arg(config);
    run(c, Duration::from_secs(30))
}

fn info(id: &str, identity: &str, route: &str) -> SessionInfo {
    SessionInfo {
        session_id: id.into(),
        identity: identity.into(),
        login: LOGIN.into(),
        route: route.into(),
        target: "127.0.0.1:22".into(),
        client_addr: "127.0.0.1:40000".into(),
        client_key_fingerprint: Some("SHA256:clientkey".into()),
        cert_serial: Some(42),
    }
}

fn channel(name: &str, kind: ChannelKind, command: Option<&str>) -> ChannelSpec {
    ChannelSpec {
        channel: name.into(),
        kind,
        command: command.map(Into::into),
        term: Term {
            cols: 80,
            rows: 24,
            term_type: Some("xterm-256color".into()),
        },
        record_input: false,
        cert_serial: None,
    }
}

/// What the two recorded sessions wrote to their terminals.
const SHELL_FIRST: &str = "hello from the recorded shell\r\n";
const SHELL_SECOND: &str = "second segment \u{1b}[1mbold\u{1b}[0m\r\n";

/// Records, in the storage and index `config` names:
/// - `sess-alice` (alice@example.com on route `t`): a shell on channel 0
///   spread over several segments, and an exec of `uptime` on channel 1,
///   signed with the gateway's host key;
/// - `sess-bob` (bob@example.com on route `db`): an exec whose recording
///   fails (spool full), signed with a key that is not the gateway's, as
///   if someone with write access to storage had made it.
fn record(config: &Path) {
    let cfg = config::load(config).unwrap_or_else(|e| panic!("config: {e:?}"));
    let host_key_path = cfg.host_keys.first().unwrap();
    let host_key = gateway::keys::load_or_generate_host_key(host_key_path).unwrap();
    let seed = host_key.key_data().ed25519().unwrap().private.to_bytes();
    let gateway_signer: Arc<dyn Signer> = Arc::new(Ed25519Signer::from_seed(&seed).unwrap());
    let mut rc = cfg.recording.recorder.clone();
    rc.segment_interval = Duration::from_millis(150);
    rc.fsync_interval = Duration::from_millis(50);
    rc.seal_timeout = Duration::from_secs(5);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store: Arc<dyn state::Store> = Arc::new(state::Sqlite::open(&cfg.state_dir).unwrap());
        let rec = Recorder::open(rc.clone(), gateway_signer, Arc::clone(&store)).unwrap();
        let session = rec
            .start_session(info("sess-alice", "alice@example.com", "t"))
            .await
            .unwrap();
        let mut shell = session
            .open_channel(channel("0", ChannelKind::Shell, None))
            .await
            .unwrap();
        let mut exec = session
            .open_channel(channel("1", ChannelKind::Exec, Some("uptime")))
            .await
            .unwrap();
        shell.output(SHELL_FIRST.as_bytes()).unwrap();
        exec.output(b"up 3 days\n").unwrap();
        exec.exit(0).unwrap();
        exec.close().unwrap();
        // Let the uploader cut a segment, so the shell has more than one.
        tokio::time::sleep(Duration::from_millis(600)).await;
        shell.output(SHELL_SECOND.as_bytes()).unwrap();
        shell.exit(0).unwrap();
        shell.close().unwrap();
        let report = session.seal().await;
        assert_eq!(report.status, Status::Sealed, "{report:?}");
        drop(rec);

        let mut small = rc.clone();
        small.spool_max_bytes = 4096;
        let stranger: Arc<dyn Signer> = Arc::new(Ed25519Signer::from_seed(&[7; 32]).unwrap());
        let rec = Recorder::open(small, stranger, store).unwrap();
        let session = rec
            .start_session(info("sess-bob", "bob@example.com", "db"))
            .await
            .unwrap();
        let mut exec = session
            .open_channel(channel("0", ChannelKind::Exec, Some("cat big.log")))
            .await
            .unwrap();
        exec.output(b"first lines\n").unwrap();
        assert!(exec.output(&[b'x'; 8192]).is_err(), "spool limit not hit");
        drop(exec);
        let report = session.seal().await;
        assert_eq!(report.status, Status::Failed, "{report:?}");
    });
}

/// The segment objects (`.part.zst`) of a session under a file storage root.
fn segment_files(root: &Path, session_id: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.to_string_lossy().ends_with(".part.zst") {
                out.push(path);
            }
        }
    }
    let mut all = Vec::new();
    walk(root, &mut all);
    all.retain(|p| p.to_string_lossy().contains(&format!("/{session_id}/")));
    all.sort();
    all
}

/// `asciinema cat FILE`: Debian's asciinema 2.2 reads only v2 and opens
/// /dev/tty, so it runs under `script`, which gives it a pty.
fn asciinema_cat(file: &Path) -> String {
    let asciinema = sshd_test::require_program("asciinema");
    let script = sshd_test::require_program("script");
    let out = Command::new(script)
        .arg("-qec")
        .arg(format!("{} cat {}", asciinema.display(), file.display()))
        .arg("/dev/null")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "asciinema cat failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).replace('\r', "")
}

#[test]
fn sessions_list_show_verify_export_and_reindex() {
    let w = World::new();
    let config = w.write_config(&[w.route("t", ""), w.route("db", "")], "");
    let db = w.path("state/gatehouse.db");

    // Nothing recorded yet: nothing listed, and no database made.
    let (code, out, err) = gatehouse(&["sessions", "list"], &config);
    assert_eq!((code, out.trim()), (0, "no sessions"), "{err}");
    assert!(!db.exists());

    record(&config);

    // The table: newest first, one line per session.
    let (code, table, err) = gatehouse(&["sessions", "list"], &config);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    for col in [
        "ID",
        "START",
        "DURATION",
        "IDENTITY",
        "LOGIN@ROUTE",
        "STATUS",
        "BYTES",
        "EXIT",
    ] {
        assert!(lines[0].contains(col), "no {col} column: {table}");
    }
    assert!(lines[1].starts_with("sess-bob "), "{table}");
    assert!(
        lines[1].contains(" bob@example.com ")
            && lines[1].contains(&format!(" {LOGIN}@db "))
            && lines[1].contains(" failed "),
        "{table}"
    );
    assert!(lines[2].starts_with("sess-alice "), "{table}");
    assert!(
        lines[2].contains(" alice@example.com ")
            && lines[2].contains(&format!(" {LOGIN}@t "))
            && lines[2].contains(" sealed ")
            && lines[2].ends_with(" 0"),
        "{table}"
    );
    let today = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    assert!(
        lines[2].contains(&today[..11]),
        "start not RFC 3339: {table}"
    );

    // Filters.
    let ids = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["sessions", "list"];
        all.extend_from_slice(args);
        let (code, out, err) = gatehouse(&all, &config);
        assert_eq!(code, 0, "{args:?}: {err}");
        if out.trim() == "no sessions" {
            return vec![];
        }
        out.lines()
            .skip(1)
            .map(|l| l.split_whitespace().next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&["--user", "Alice@Example.COM"]), ["sess-alice"]);
    assert_eq!(ids(&["--route", "db"]), ["sess-bob"]);
    assert_eq!(ids(&["--status", "sealed"]), ["sess-alice"]);
    assert_eq!(ids(&["--status", "failed"]), ["sess-bob"]);
    assert_eq!(ids(&["--limit", "1"]), ["sess-bob"]);
    assert_eq!(ids(&["--since", "1h"]), ["sess-bob", "sess-alice"]);
    assert!(ids(&["--until", "1h"]).is_empty());
    assert!(ids(&["--since", "2999-01-01T00:00:00Z"]).is_empty());
    assert_eq!(
        ids(&[
            "--since",
            "2000-01-01T01:00:00+01:00",
            "--until",
            "2999-01-01"
        ]),
        ["sess-bob", "sess-alice"]
    );
    assert!(ids(&["--user", "carol@example.com"]).is_empty());
    let (code, _, err) = gatehouse(&["sessions", "list", "--since", "yesterday"], &config);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("gatehouse: bad --since: \"yesterday\" is neither an RFC 3339 time"),
        "{err}"
    );
    let (code, _, err) = gatehouse(&["sessions", "list", "--status", "done"], &config);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("use recording, uploading, sealed"), "{err}");

    // JSON: one object per line with RFC 3339 times.
    let (code, json, err) = gatehouse(&["sessions", "list", "--json"], &config);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{json}");
    assert_eq!(rows[1]["session_id"], "sess-alice");
    assert_eq!(rows[1]["identity"], "alice@example.com");
    assert_eq!(rows[1]["status"], "sealed");
    assert_eq!(rows[1]["exit_status"], 0);
    assert_eq!(
        rows[1]["bytes"],
        (SHELL_FIRST.len() + SHELL_SECOND.len() + "up 3 days\n".len()) as u64
    );
    assert!(rows[1]["started_at"].as_str().unwrap().ends_with('Z'));
    assert!(rows[1]["ended_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(rows[0]["status"], "failed");
    assert!(
        rows[0]["reason"].as_str().unwrap().contains("spool full"),
        "{json}"
    );

    // Show: every field, the channels and the objects.
    let (code, shown, err) = gatehouse(&["sessions", "show", "sess-alice"], &config);
    assert_eq!(code, 0, "{err}");
    for want in [
        "session:     sess-alice",
        "status:      sealed",
        "identity:    alice@example.com",
        &format!("login:       {LOGIN}"),
        "route:       t",
        "target:      127.0.0.1:22",
        "client:      127.0.0.1:40000",
        "client key:  SHA256:clientkey",
        "cert serial: 42",
        "exit:        0",
        "channels (2):",
        "/sess-alice/meta.json",
        "/sess-alice/0.cast.zst",
        "/sess-alice/1.cast.zst",
    ] {
        assert!(shown.contains(want), "no {want:?} in:\n{shown}");
    }
    assert!(!shown.contains("reason:"), "{shown}");
    let channel_row = |name: &str| {
        shown
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no channel {name}:\n{shown}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let shell = channel_row("0");
    assert_eq!(shell[1..4], ["shell", "-", "off"], "{shown}");
    assert!(
        shell[5].parse::<u32>().unwrap() >= 2,
        "one segment: {shown}"
    );
    assert_eq!(
        channel_row("1"),
        ["1", "exec", "uptime", "off", "10", "1", "0"],
        "{shown}"
    );
    let (code, shown, err) = gatehouse(&["sessions", "show", "sess-bob"], &config);
    assert_eq!(code, 0, "{err}");
    assert!(
        shown.contains("status:      failed\nreason:      spool full"),
        "{shown}"
    );
    let (code, shown, err) = gatehouse(&["sessions", "show", "sess-alice", "--json"], &config);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["channels"][1]["command"], "uptime");
    let (code, out, err) = gatehouse(&["sessions", "show", "sess-nope"], &config);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.starts_with("gatehouse: no session sess-nope in the index;")
            && err.lines().count() == 1,
        "{err}"
    );

    // Verify: the gateway's recording checks out; the stranger's does not.
    let (code, out, err) = gatehouse(&["recordings", "verify", "sess-alice"], &config);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok: session sess-alice:"), "{out}");
    let (code, out, err) = gatehouse(&["recordings", "verify", "sess-bob"], &config);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("sess-bob: meta.json: signed by an untrusted key"),
        "{out}"
    );
    assert!(
        err.trim_end()
            .ends_with("gatehouse: session sess-bob failed verification with 1 problem"),
        "{err}"
    );
    let (code, _, err) = gatehouse(&["recordings", "verify", "sess-nope"], &config);
    assert_eq!(code, 1);
    assert!(
        err.starts_with(
            "gatehouse: cannot verify session sess-nope: no recording for session sess-nope"
        ),
        "{err}"
    );

    // An evidence bundle verifies offline: with the config's host key, or
    // with nothing but the host key's .pub; a stranger's signature and a
    // changed byte fail.
    let bundle = w.path("alice.tar");
    let (code, out, err) = gatehouse(
        &[
            "recordings",
            "bundle",
            "sess-alice",
            "-o",
            bundle.to_str().unwrap(),
        ],
        &config,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("wrote session sess-alice's bundle to"),
        "{out}"
    );
    let (code, out, err) = gatehouse(
        &["recordings", "verify", "--bundle", bundle.to_str().unwrap()],
        &config,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("session sess-alice: signature by the gateway's host key"),
        "{out}"
    );
    let host_pub = w.path("state/ssh_host_ed25519_key.pub");
    assert!(host_pub.exists(), "no {}", host_pub.display());
    let mut offline = Command::new(bin());
    offline
        .args(["recordings", "verify", "--bundle"])
        .arg(&bundle)
        .arg("--key")
        .arg(&host_pub);
    let (code, out, err) = run(offline, Duration::from_secs(30));
    assert_eq!(code, 0, "{out}{err}");
    let mut bytes = std::fs::read(&bundle).unwrap();
    let at = bytes
        .windows(4)
        .position(|w| w == [0x28, 0xb5, 0x2f, 0xfd])
        .unwrap();
    bytes[at + 16] ^= 0x04;
    let tampered = w.path("tampered.tar");
    std::fs::write(&tampered, bytes).unwrap();
    let (code, out, _) = gatehouse(
        &[
            "recordings",
            "verify",
            "--bundle",
            tampered.to_str().unwrap(),
        ],
        &config,
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does not match its sha256"), "{out}");
    let bob_bundle = w.path("bob.tar");
    let (code, _, err) = gatehouse(
        &[
            "recordings",
            "bundle",
            "sess-bob",
            "-o",
            bob_bundle.to_str().unwrap(),
        ],
        &config,
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = gatehouse(
        &[
            "recordings",
            "verify",
            "--bundle",
            bob_bundle.to_str().unwrap(),
        ],
        &config,
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("signed by an untrusted key"), "{out}");

    // Export: v3 as stored, per channel; v2 plays in asciinema 2.2.
    let (code, v3, err) = gatehouse(&["recordings", "export", "sess-alice"], &config);
    assert_eq!(code, 0, "{err}");
    assert!(v3.starts_with("{\"version\":3"), "{v3}");
    assert!(v3.contains("hello from the recorded shell"), "{v3}");
    assert!(!v3.contains("up 3 days"), "channel 1 in channel 0: {v3}");
    let (code, v3, err) = gatehouse(
        &["recordings", "export", "sess-alice", "--channel", "1"],
        &config,
    );
    assert_eq!(code, 0, "{err}");
    assert!(v3.contains("up 3 days") && v3.contains("uptime"), "{v3}");
    let (code, _, err) = gatehouse(
        &["recordings", "export", "sess-alice", "--channel", "9"],
        &config,
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("session sess-alice has no channel \"9\"; its channels are 0, 1"),
        "{err}"
    );
    let v2_path = w.path("alice.v2.cast");
    let (code, out, err) = gatehouse(
        &[
            "recordings",
            "export",
            "sess-alice",
            "--format",
            "v2",
            "-o",
            v2_path.to_str().unwrap(),
        ],
        &config,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("wrote session sess-alice channel 0 as asciicast v2 to"),
        "{out}"
    );
    let v2 = std::fs::read_to_string(&v2_path).unwrap();
    let header: serde_json::Value = serde_json::from_str(v2.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 2, "{v2}");
    let played = asciinema_cat(&v2_path);
    assert_eq!(
        played,
        format!("{SHELL_FIRST}{SHELL_SECOND}").replace('\r', ""),
        "asciinema cat printed something else"
    );

    // Without a state database, verify and export still read storage, and
    // leave no database behind; list shows nothing until reindex.
    for f in ["gatehouse.db", "gatehouse.db-wal", "gatehouse.db-shm"] {
        let _ = std::fs::remove_file(w.path("state").join(f));
    }
    let (code, out, err) = gatehouse(&["recordings", "verify", "sess-alice"], &config);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = gatehouse(&["sessions", "list"], &config);
    assert_eq!((code, out.trim()), (0, "no sessions"), "{err}");
    assert!(!db.exists(), "a read-only command made the database");

    // Reindex rebuilds the index from storage alone.
    let (code, out, err) = gatehouse(&["recordings", "reindex"], &config);
    assert_eq!(code, 0, "{err}");
    let storage_url = format!("file://{}", w.path("state/recordings").display());
    assert_eq!(
        out.trim(),
        format!("reindexed 2 sessions from {storage_url}")
    );
    let (code, again, err) = gatehouse(&["sessions", "list"], &config);
    assert_eq!(code, 0, "{err}");
    assert_eq!(again, table, "reindex changed the list");
    let (code, again, err) = gatehouse(&["sessions", "list", "--json"], &config);
    assert_eq!(code, 0, "{err}");
    assert_eq!(again, json, "reindex changed the list");

    // Tamper with one segment of the shell: verify names it and fails.
    let parts = segment_files(&w.path("state/recordings"), "sess-alice");
    let shell_part = parts
        .iter()
        .find(|p| p.to_string_lossy().contains("/sess-alice/0/"))
        .unwrap_or_else(|| panic!("no shell segment among {parts:?}"));
    let mut bytes = std::fs::read(shell_part).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(shell_part, bytes).unwrap();
    let (code, out, err) = gatehouse(&["recordings", "verify", "sess-alice"], &config);
    assert_eq!(code, 1, "{out}{err}");
    let name = shell_part.file_name().unwrap().to_string_lossy();
    let seq: u64 = name.trim_end_matches(".part.zst").parse().unwrap();
    assert!(
        out.contains(&format!(
            "sess-alice: channel 0 segment {seq}: content does not match its sha256"
        )),
        "{out}"
    );
    assert!(!out.contains("ok:"), "{out}");
    // The last line is the error; the audit event may be logged before it.
    assert!(
        err.trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("gatehouse: session sess-alice failed verification with"),
        "{err}"
    );
}
