//! End-to-end recorder tests against the file backend and a real SeaweedFS S3.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use recorder::asciicast::{Event, Term};
use recorder::{
    Catalog, ChannelKind, ChannelSpec, Ed25519Signer, ExportFormat, FileOp, FileOpKind, Recorder,
    RecorderConfig, S3Config, S3Credentials, SessionFilter, SessionInfo, Signer, Status,
    StorageConfig,
};
use sshd_test::s3::S3Server;

const SEED: [u8; 32] = [42; 32];

fn signer() -> Arc<dyn Signer> {
    Arc::new(Ed25519Signer::from_seed(&SEED).unwrap())
}

fn config(state: &Path, storage: StorageConfig) -> RecorderConfig {
    let mut c = RecorderConfig::new(state.join("spool"), storage);
    c.gateway_id = "gw-test".into();
    c.segment_interval = Duration::from_millis(300);
    c.fsync_interval = Duration::from_millis(100);
    c.retry_initial_backoff = Duration::from_millis(100);
    c.retry_max_backoff = Duration::from_millis(500);
    c.seal_timeout = Duration::from_secs(3);
    c
}

/// The state database in `dir`, where the index is.
fn store(dir: &Path) -> Arc<dyn state::Store> {
    Arc::new(state::Sqlite::open(dir).unwrap())
}

fn info(id: &str, identity: &str, route: &str) -> SessionInfo {
    SessionInfo {
        session_id: id.into(),
        identity: identity.into(),
        login: "deploy".into(),
        route: route.into(),
        target: "127.0.0.1:22".into(),
        client_addr: "127.0.0.1:5555".into(),
        client_key_fingerprint: Some("SHA256:abc".into()),
        cert_serial: Some(7),
    }
}

fn shell(channel: &str, record_input: bool) -> ChannelSpec {
    ChannelSpec {
        channel: channel.into(),
        kind: ChannelKind::Shell,
        command: None,
        term: Term {
            cols: 80,
            rows: 24,
            term_type: Some("xterm-256color".into()),
        },
        record_input,
        cert_serial: None,
    }
}

fn s3_storage(s3: &S3Server) -> StorageConfig {
    StorageConfig::S3(S3Config {
        bucket: s3.bucket().into(),
        prefix: "gh".into(),
        endpoint: Some(s3.endpoint()),
        region: s3.region().into(),
        allow_http: true,
        virtual_hosted_style: false,
        credentials: S3Credentials::Static {
            access_key_id: s3.access_key().into(),
            secret_access_key: s3.secret_key().into(),
        },
    })
}

/// A recorder storing to `s3`, with its spool and index under `state`.
fn s3_recorder(s3: &S3Server, state: &Path) -> Recorder {
    Recorder::open(config(state, s3_storage(s3)), signer(), store(state)).unwrap()
}

fn public_key() -> [u8; 32] {
    Ed25519Signer::from_seed(&SEED).unwrap().public_key()
}

/// File backend: segments appear while recording; the sealed recording
/// verifies, replays the output (non-UTF-8 included), and tampering is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_backend_record_seal_verify_tamper_export() {
    let state = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let rec = Recorder::open(
        config(state.path(), StorageConfig::File(bucket.path().into())),
        signer(),
        store(state.path()),
    )
    .unwrap();
    let session = rec
        .start_session(info("sess-file", "alice@example.com", "prod-db"))
        .await
        .unwrap();
    let mut ch = session.open_channel(shell("0", false)).await.unwrap();
    let euro = "€".as_bytes();
    let mut raw: Vec<u8> = Vec::new();
    for part in [
        &b"$ ls\r\n"[..],
        &euro[..1],
        &euro[1..],
        b" bad:\xff\r\n",
        b"\x1b[31mred\x1b[0m\r\n",
    ] {
        ch.output(part).unwrap();
        raw.extend_from_slice(part);
    }
    ch.input(b"secret-password\r").unwrap();
    ch.resize(100, 30).unwrap();
    ch.file_op(&FileOp {
        protocol: "sftp".into(),
        op: FileOpKind::Close,
        path: "/etc/motd".into(),
        target: None,
        bytes_read: 0,
        bytes_written: 12,
        status: "ok".into(),
    })
    .unwrap();
    // Segments are uploaded while the session is live.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let parts = rec
        .catalog()
        .storage()
        .list(&format!("{}/0/", session.prefix()))
        .await
        .unwrap();
    assert!(!parts.is_empty(), "no segment uploaded while live");
    assert_eq!(
        rec.catalog()
            .show("sess-file")
            .await
            .unwrap()
            .unwrap()
            .0
            .status,
        Status::Recording
    );
    ch.output(b"bye\r\n").unwrap();
    raw.extend_from_slice(b"bye\r\n");
    ch.exit(3).unwrap();
    ch.close().unwrap();
    let report = session.seal().await;
    assert_eq!(report.status, Status::Sealed, "{report:?}");

    let catalog = rec.catalog();
    let (row, channels) = catalog.show("sess-file").await.unwrap().unwrap();
    assert_eq!(row.status, Status::Sealed);
    assert_eq!(row.exit_status, Some(3));
    assert_eq!(row.bytes, raw.len() as u64);
    assert_eq!(channels.len(), 1);
    assert!(
        channels[0].segments >= 2,
        "expected a live and a final segment, got {}",
        channels[0].segments
    );

    let verified = catalog
        .verify("sess-file", Some(&public_key()))
        .await
        .unwrap();
    assert!(verified.ok, "{verified:?}");
    let wrong_key = Ed25519Signer::from_seed(&[1; 32]).unwrap().public_key();
    assert!(
        !catalog
            .verify("sess-file", Some(&wrong_key))
            .await
            .unwrap()
            .ok
    );

    let cast = catalog.cast("sess-file", None).await.unwrap();
    assert_eq!(cast.output(), String::from_utf8_lossy(&raw));
    assert_eq!(cast.exit_status(), Some(3));
    let gh = cast.header.gatehouse.as_ref().unwrap();
    assert_eq!(
        (
            gh.session.identity.as_str(),
            gh.session.route.as_str(),
            gh.session.cert_serial
        ),
        ("alice@example.com", "prod-db", Some(7))
    );
    assert!(cast.events.iter().any(|e| e.event
        == Event::Resize {
            cols: 100,
            rows: 30
        }));
    assert!(cast.events.iter().any(|e| matches!(&e.event, Event::FileOp(op) if op.path == "/etc/motd" && op.bytes_written == 12)));
    // Input was not enabled for this channel, so the password is nowhere.
    let v3 = catalog
        .export("sess-file", None, ExportFormat::V3)
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&v3).contains("secret-password"));
    assert!(
        cast.events
            .iter()
            .all(|e| !matches!(e.event, Event::Input(_)))
    );

    // v2 export plays in Debian's asciinema 2.2.
    let v2 = catalog
        .export("sess-file", None, ExportFormat::V2)
        .await
        .unwrap();
    let v2_path = state.path().join("export.cast");
    std::fs::write(&v2_path, &v2).unwrap();
    // asciinema 2.2 `cat` opens /dev/tty, so it runs under `script`, which gives it a pty.
    let asciinema = sshd_test::require_program("asciinema");
    let script = sshd_test::require_program("script");
    let out = Command::new(script)
        .arg("-qec")
        .arg(format!("{} cat {}", asciinema.display(), v2_path.display()))
        .arg("/dev/null")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "asciinema cat failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let strip_cr = |s: &str| s.replace('\r', "");
    assert_eq!(
        strip_cr(&String::from_utf8_lossy(&out.stdout)),
        strip_cr(&String::from_utf8_lossy(&raw))
    );

    // An evidence bundle verifies offline with the public key alone, and
    // fails on a flipped byte in the recording, another key, or a missing
    // or extra object.
    let mut bundle = Vec::new();
    catalog.bundle("sess-file", &mut bundle).await.unwrap();
    let report = recorder::verify_bundle(bundle.as_slice(), Some(&public_key())).unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.session_id, "sess-file");
    let other = recorder::verify_bundle(bundle.as_slice(), Some(&[7u8; 32])).unwrap();
    assert!(
        other.problems.iter().any(|p| p.contains("untrusted key")),
        "{:?}",
        other.problems
    );
    let object_at = bundle
        .windows(4)
        .position(|w| w == [0x28, 0xb5, 0x2f, 0xfd])
        .expect("a zstd frame in the bundle");
    let mut flipped = bundle.clone();
    flipped[object_at + 20] ^= 0x01;
    let bad = recorder::verify_bundle(flipped.as_slice(), Some(&public_key())).unwrap();
    assert!(!bad.ok);
    assert!(
        bad.problems
            .iter()
            .any(|p| p.contains("does not match its sha256")),
        "{:?}",
        bad.problems
    );
    let mut only_meta = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(bundle.as_slice());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_string_lossy() == "meta.json" {
            let mut header = entry.header().clone();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
            only_meta
                .append_data(&mut header, "meta.json", data.as_slice())
                .unwrap();
            let mut extra = tar::Header::new_gnu();
            extra.set_size(2);
            extra.set_cksum();
            only_meta
                .append_data(&mut extra, "notes.txt", &b"hi"[..])
                .unwrap();
        }
    }
    let partial = only_meta.into_inner().unwrap();
    let bad = recorder::verify_bundle(partial.as_slice(), Some(&public_key())).unwrap();
    assert!(
        bad.problems
            .iter()
            .any(|p| p.contains("0.cast.zst is missing")),
        "{:?}",
        bad.problems
    );
    assert!(
        bad.problems.iter().any(|p| p.contains("unexpected entry")),
        "{:?}",
        bad.problems
    );
    assert!(
        recorder::verify_bundle(&b"not a tar"[..], None).is_err()
            || !recorder::verify_bundle(&b"not a tar"[..], None).unwrap().ok
    );

    // Tamper with one segment: verify must fail and say which.
    let meta = catalog.meta("sess-file").await.unwrap();
    let seg = &meta.meta.channels[0].segments[0];
    let seg_file = bucket.path().join(&seg.key);
    let mut bytes = std::fs::read(&seg_file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&seg_file, bytes).unwrap();
    let tampered = catalog.verify("sess-file", None).await.unwrap();
    assert!(!tampered.ok);
    assert!(
        tampered.problems.iter().any(|p| p.contains("segment 0")),
        "{:?}",
        tampered.problems
    );
}

/// Input is recorded only when the channel asks for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_recorded_only_when_enabled() {
    let state = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let rec = Recorder::open(
        config(state.path(), StorageConfig::File(bucket.path().into())),
        signer(),
        store(state.path()),
    )
    .unwrap();
    let session = rec
        .start_session(info("sess-input", "bob@example.com", "web"))
        .await
        .unwrap();
    let mut ch = session.open_channel(shell("0", true)).await.unwrap();
    ch.input(b"ls\r").unwrap();
    ch.output(b"file\r\n").unwrap();
    drop(ch);
    let report = session.seal().await;
    assert_eq!(report.status, Status::Sealed, "{report:?}");
    let cast = rec.catalog().cast("sess-input", None).await.unwrap();
    assert!(
        cast.events
            .iter()
            .any(|e| e.event == Event::Input("ls\r".into()))
    );
}

/// Storage outage mid-recording: the spool keeps everything, uploads resume,
/// and the sealed recording is complete and byte-exact with no duplicate segment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_then_recovery_is_complete() {
    let mut s3 = S3Server::start();
    let state = tempfile::tempdir().unwrap();
    let rec = s3_recorder(&s3, state.path());
    rec.probe_storage().await.unwrap();
    let session = rec
        .start_session(info("sess-outage", "carol@example.com", "prod-db"))
        .await
        .unwrap();
    let mut ch = session.open_channel(shell("0", false)).await.unwrap();
    let mut expected = String::new();
    let mut line_no = 0;
    let mut write = |ch: &mut recorder::ChannelRecorder, n: usize| {
        for _ in 0..n {
            let line = format!("line {line_no}\r\n");
            ch.output(line.as_bytes()).unwrap();
            expected.push_str(&line);
            line_no += 1;
        }
    };
    write(&mut ch, 20);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        session.health().pending_bytes,
        0,
        "first segments should be uploaded"
    );

    tokio::task::block_in_place(|| s3.stop());
    for _ in 0..10 {
        write(&mut ch, 10);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let health = session.health();
    assert!(health.pending_bytes > 0, "{health:?}");
    assert!(health.last_upload_error.is_some(), "{health:?}");
    assert!(probe_fails(&rec).await);

    tokio::task::block_in_place(|| s3.restart());
    write(&mut ch, 10);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while session.health().pending_bytes > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(session.health().pending_bytes, 0, "uploads did not resume");
    assert!(session.health().last_upload_error.is_none());
    ch.exit(0).unwrap();
    drop(ch);
    let report = session.seal().await;
    assert_eq!(report.status, Status::Sealed, "{report:?}");

    let catalog = rec.catalog();
    let verified = catalog
        .verify("sess-outage", Some(&public_key()))
        .await
        .unwrap();
    assert!(verified.ok, "{verified:?}");
    let cast = catalog.cast("sess-outage", None).await.unwrap();
    assert_eq!(cast.output(), expected, "recording is not byte-exact");
    let meta = catalog.meta("sess-outage").await.unwrap();
    let segments = &meta.meta.channels[0].segments;
    let listed: Vec<String> = catalog
        .storage()
        .list(&format!("{}/0/", meta.meta.prefix))
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.ends_with(".part.zst"))
        .collect();
    assert_eq!(
        listed.len(),
        segments.len(),
        "extra or missing segment objects: {listed:?}"
    );
    for (i, s) in segments.iter().enumerate() {
        assert_eq!(s.seq, i as u64);
    }
    // Stored size: zstd keeps the sealed object well under the raw cast.
    let ch = &meta.meta.channels[0];
    assert!(
        ch.sealed_bytes * 10 < ch.cast_bytes * 3,
        "sealed {} vs raw {}",
        ch.sealed_bytes,
        ch.cast_bytes
    );
}

/// A seal that storage does not answer in time is put off, not failed:
/// the recording stays `uploading` with its spool, and the next recovery
/// seals all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seal_storage_does_not_answer_is_put_off_then_completed() {
    let mut s3 = S3Server::start();
    let state = tempfile::tempdir().unwrap();
    let rec = s3_recorder(&s3, state.path());
    rec.probe_storage().await.unwrap();
    let session = rec
        .start_session(info("sess-later", "dave@example.com", "prod-db"))
        .await
        .unwrap();
    let mut ch = session.open_channel(shell("0", false)).await.unwrap();
    let mut expected = String::new();
    for i in 0..50 {
        let line = format!("before the outage {i}\r\n");
        ch.output(line.as_bytes()).unwrap();
        expected.push_str(&line);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    tokio::task::block_in_place(|| s3.stop());
    for i in 0..50 {
        let line = format!("during the outage {i}\r\n");
        ch.output(line.as_bytes()).unwrap();
        expected.push_str(&line);
    }
    ch.exit(0).unwrap();
    drop(ch);
    let report = session.seal_or_leave(Duration::from_secs(1)).await;
    assert_eq!(report.status, Status::Uploading, "{report:?}");
    assert!(report.meta_key.is_none(), "{report:?}");
    assert!(
        report
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("spool kept"),
        "{report:?}"
    );
    let catalog = rec.catalog();
    let (row, _) = catalog.show("sess-later").await.unwrap().unwrap();
    assert_eq!(row.status, Status::Uploading);
    assert_eq!(rec.leftovers(), 1);

    tokio::task::block_in_place(|| s3.restart());
    storage_answers(&rec).await;
    let reports = rec.recover().await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].status, Status::Sealed, "{reports:?}");
    assert_eq!(rec.leftovers(), 0);
    let verified = catalog
        .verify("sess-later", Some(&public_key()))
        .await
        .unwrap();
    assert!(verified.ok, "{verified:?}");
    let cast = catalog.cast("sess-later", None).await.unwrap();
    assert_eq!(cast.output(), expected, "recording is not byte-exact");
}

/// A recording that failed while live and whose seal was then put off
/// stays failed, with its reason, when recovery seals it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_recording_whose_seal_is_put_off_is_recovered_failed() {
    let mut s3 = S3Server::start();
    let state = tempfile::tempdir().unwrap();
    let mut cfg = config(state.path(), s3_storage(&s3));
    cfg.spool_max_bytes = 4096;
    let rec = Recorder::open(cfg, signer(), store(state.path())).unwrap();
    let session = rec
        .start_session(info("sess-full-later", "eve@example.com", "db"))
        .await
        .unwrap();
    let mut ch = session.open_channel(shell("0", false)).await.unwrap();
    assert!(
        (0..100).any(|_| ch.output(&[b'x'; 200]).is_err()),
        "the spool limit was never hit"
    );
    drop(ch);
    tokio::task::block_in_place(|| s3.stop());
    let report = session.seal_or_leave(Duration::from_secs(1)).await;
    assert_eq!(report.status, Status::Uploading, "{report:?}");

    tokio::task::block_in_place(|| s3.restart());
    storage_answers(&rec).await;
    let reports = rec.recover().await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].status, Status::Failed, "{reports:?}");
    assert!(
        reports[0]
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("spool full"),
        "{reports:?}"
    );
    let (row, _) = rec
        .catalog()
        .show("sess-full-later")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, Status::Failed);
    assert!(row.meta_key.is_some(), "sealed, with a manifest");
}

/// Waits until storage answers a probe, as the gateway's sweep does
/// before it recovers (a restarted S3 server may take a moment).
async fn storage_answers(rec: &Recorder) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while rec.probe_storage().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "storage did not come back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn probe_fails(rec: &Recorder) -> bool {
    rec.probe_storage().await.is_err()
}

/// A crash (no seal, torn last line) is sealed as `interrupted` at the next
/// start, with everything that was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_leftover_spool_is_recovered_as_interrupted() {
    let s3 = S3Server::start();
    let state = tempfile::tempdir().unwrap();
    let expected;
    {
        let rec = s3_recorder(&s3, state.path());
        let session = rec
            .start_session(info("sess-crash", "dave@example.com", "prod-db"))
            .await
            .unwrap();
        let mut ch = session.open_channel(shell("0", false)).await.unwrap();
        let mut text = String::new();
        for i in 0..50 {
            let line = format!("output {i}\r\n");
            ch.output(line.as_bytes()).unwrap();
            text.push_str(&line);
            if i == 10 {
                // Let one segment reach storage before the "crash".
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
        }
        expected = text;
        // Simulate a kill: no close, no seal, and a torn write at the end.
        std::mem::forget(ch);
        drop(session);
        let spool = state.path().join("spool/sess-crash/0.cast");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&spool)
            .unwrap();
        std::io::Write::write_all(&mut f, b"[0.1, \"o\", \"torn").unwrap();
    }
    let rec = s3_recorder(&s3, state.path());
    let reports = rec.recover().await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].status, Status::Interrupted, "{reports:?}");
    assert!(
        !state.path().join("spool/sess-crash").exists(),
        "spool not removed after sealing"
    );
    let catalog = rec.catalog();
    let (row, _) = catalog.show("sess-crash").await.unwrap().unwrap();
    assert_eq!(row.status, Status::Interrupted);
    assert!(row.reason.is_some());
    assert!(
        catalog
            .verify("sess-crash", Some(&public_key()))
            .await
            .unwrap()
            .ok
    );
    assert_eq!(
        catalog.cast("sess-crash", None).await.unwrap().output(),
        expected
    );
    // Nothing left to recover.
    assert!(rec.recover().await.is_empty());
}

/// The index can be rebuilt from the bucket alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reindex_reproduces_the_index() {
    let state = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let storage = StorageConfig::File(bucket.path().into());
    let rec = Recorder::open(
        config(state.path(), storage.clone()),
        signer(),
        store(state.path()),
    )
    .unwrap();
    for (id, who, route) in [
        ("s1", "alice@example.com", "db"),
        ("s2", "bob@example.com", "web"),
        ("s3", "alice@example.com", "web"),
    ] {
        let session = rec.start_session(info(id, who, route)).await.unwrap();
        let mut ch = session
            .open_channel(ChannelSpec {
                kind: ChannelKind::Exec,
                command: Some(format!("echo {id}")),
                ..shell("0", false)
            })
            .await
            .unwrap();
        ch.output(format!("{id}\n").as_bytes()).unwrap();
        ch.exit(0).unwrap();
        drop(ch);
        let report = session.seal().await;
        assert_eq!(report.status, Status::Sealed, "{report:?}");
    }
    let before = rec.catalog().list(&SessionFilter::default()).await.unwrap();
    assert_eq!(before.len(), 3);
    let alice = rec
        .catalog()
        .list(&SessionFilter {
            identity: Some("alice@example.com".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(alice.len(), 2);
    drop(rec);

    let fresh = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(store(fresh.path()), &storage).unwrap();
    assert!(
        catalog
            .list(&SessionFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(catalog.reindex().await.unwrap(), 3);
    let after = catalog.list(&SessionFilter::default()).await.unwrap();
    assert_eq!(after, before);
    let (_, channels) = catalog.show("s2").await.unwrap().unwrap();
    assert_eq!(channels[0].command.as_deref(), Some("echo s2"));
}

/// Past `spool_max_bytes` the channel fails explicitly, and the seal says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_limit_fails_explicitly() {
    let state = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let mut cfg = config(state.path(), StorageConfig::File(bucket.path().into()));
    cfg.spool_max_bytes = 4096;
    let rec = Recorder::open(cfg, signer(), store(state.path())).unwrap();
    let session = rec
        .start_session(info("sess-full", "eve@example.com", "db"))
        .await
        .unwrap();
    let mut ch = session.open_channel(shell("0", false)).await.unwrap();
    let err = (0..100)
        .find_map(|_| ch.output(&[b'x'; 200]).err())
        .expect("the spool limit was never hit");
    assert!(matches!(err, recorder::Error::SpoolFull { .. }), "{err}");
    assert!(
        ch.output(b"more").is_err(),
        "writes after the limit must keep failing"
    );
    assert!(session.health().failure.is_some());
    drop(ch);
    let report = session.seal().await;
    assert_eq!(report.status, Status::Failed);
    assert!(report.reason.unwrap().contains("spool full"));
    assert_eq!(
        rec.catalog()
            .show("sess-full")
            .await
            .unwrap()
            .unwrap()
            .0
            .status,
        Status::Failed
    );
}
