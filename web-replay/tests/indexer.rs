//! The text indexer over real recordings made with the recorder library in
//! file storage: what a session showed on both screens becomes searchable
//! at its moment, the keyframe sidecar is built once and then reused, a
//! broken recording is recorded as failed without holding up the others,
//! and the background task stops when told.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::Duration;

use recorder::asciicast::Term;
use recorder::{
    Catalog, ChannelKind, ChannelSpec, Ed25519Signer, Recorder, RecorderConfig, SessionInfo,
    Signer, Status, StorageConfig,
};
use state::{Store, TextQuery};
use tokio_util::sync::CancellationToken;
use web_replay::indexer::{Indexer, index_session};

fn info(id: &str) -> SessionInfo {
    SessionInfo {
        session_id: id.into(),
        identity: "alice@example.com".into(),
        login: "root".into(),
        route: "t".into(),
        target: "127.0.0.1:22".into(),
        client_addr: "127.0.0.1:40000".into(),
        client_key_fingerprint: None,
        cert_serial: None,
    }
}

fn shell(name: &str) -> ChannelSpec {
    ChannelSpec {
        channel: name.into(),
        kind: ChannelKind::Shell,
        command: None,
        term: Term {
            cols: 80,
            rows: 24,
            term_type: Some("xterm-256color".into()),
        },
        record_input: false,
        cert_serial: None,
    }
}

struct World {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    catalog: Arc<Catalog>,
    root: std::path::PathBuf,
}

/// Records `sessions` (id, what each channel wrote, writes split at `|`) into fresh file
/// storage and index.
async fn record(sessions: &[(&str, &[&str])]) -> World {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("storage");
    let storage = StorageConfig::File(root.clone());
    let store: Arc<dyn Store> = Arc::new(state::Sqlite::open(&dir.path().join("state")).unwrap());
    let mut rc = RecorderConfig::new(dir.path().join("spool"), storage.clone());
    rc.segment_interval = Duration::from_millis(100);
    rc.fsync_interval = Duration::from_millis(50);
    rc.seal_timeout = Duration::from_secs(5);
    let signer: Arc<dyn Signer> = Arc::new(Ed25519Signer::from_seed(&[3; 32]).unwrap());
    let rec = Recorder::open(rc, signer, Arc::clone(&store)).unwrap();
    for (id, channels) in sessions {
        let session = rec.start_session(info(id)).await.unwrap();
        for (n, output) in channels.iter().enumerate() {
            let mut ch = session.open_channel(shell(&n.to_string())).await.unwrap();
            // `|` separates writes: a full-screen program draws in writes
            // of its own, and the model sees the screen after each.
            for part in output.split('|') {
                ch.output(part.as_bytes()).unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            ch.exit(0).unwrap();
            ch.close().unwrap();
        }
        let report = session.seal().await;
        assert_eq!(report.status, Status::Sealed, "{report:?}");
        // Sessions start in different milliseconds.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let catalog = Arc::new(Catalog::open(Arc::clone(&store), &storage).unwrap());
    World {
        _dir: dir,
        store,
        catalog,
        root,
    }
}

async fn find(store: &dyn Store, text: &str) -> Vec<state::TextHit> {
    store
        .text_search(TextQuery {
            text: text.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .hits
}

const SHELL: &str = "$ ls /srv/www\r\nindex.html  zebra-unique-word.txt\r\n$ \
    |\x1b[?1049h\x1b[H\x1b[2J\x1b[3;5Hshown-only-in-the-editor|\x1b[?1049l$ exit\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_s_text_is_found_on_both_screens_and_its_sidecar_reused() {
    let w = record(&[("ix-1", &[SHELL, "second channel: 192.168.7.21\r\n"])]).await;
    let report = index_session(&w.catalog, w.store.as_ref(), "ix-1")
        .await
        .unwrap();
    assert_eq!((report.channels, report.failed), (2, 0), "{report:?}");
    assert_eq!(report.sidecars_built, 2, "{report:?}");
    assert!(report.lines >= 4, "{report:?}");
    assert!(report.recording_bytes > SHELL.len() as u64, "{report:?}");

    let hits = find(w.store.as_ref(), "zebra-unique").await;
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].session_id, "ix-1");
    assert_eq!(hits[0].channel, "0");
    assert!(!hits[0].alternate);
    assert_eq!(hits[0].snippet, "index.html  zebra-unique-word.txt");
    assert_eq!(&hits[0].snippet[hits[0].matches[0].clone()], "zebra-unique");
    assert!(hits[0].steps >= 1);

    let editor = find(w.store.as_ref(), "ONLY-IN-THE-EDITOR").await;
    assert_eq!(editor.len(), 1, "{editor:?}");
    assert!(editor[0].alternate, "on the alternate screen");
    let ip = find(w.store.as_ref(), "168.7.2").await;
    assert_eq!(
        ip.iter().map(|h| h.channel.as_str()).collect::<Vec<_>>(),
        ["1"]
    );

    // The sidecars are where the player looks for them.
    let sidecars = walk(&w.root, ".keyframes.zst");
    assert_eq!(sidecars.len(), 2, "{sidecars:?}");
    // Indexing again reads them instead of rebuilding, and replaces the
    // text rather than adding to it.
    let again = index_session(&w.catalog, w.store.as_ref(), "ix-1")
        .await
        .unwrap();
    assert_eq!(again.sidecars_built, 0, "{again:?}");
    assert_eq!(again.lines, report.lines);
    assert_eq!(find(w.store.as_ref(), "zebra-unique").await.len(), 1);
}

fn walk(dir: &std::path::Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_indexer_records_a_broken_recording_and_goes_on() {
    let w = record(&[
        ("ok-1", &["first-good-session\r\n"]),
        ("bad-2", &["secret-that-must-not-be-logged\r\n"]),
        ("ok-3", &["third-good-session\r\n"]),
    ])
    .await;
    // Someone overwrote one sealed object with bytes that are not zstd.
    let bad = walk(&w.root, ".cast.zst")
        .into_iter()
        .find(|p| p.to_string_lossy().contains("/bad-2/"))
        .unwrap();
    std::fs::write(&bad, b"not a recording").unwrap();
    assert_eq!(
        w.store.text_unindexed(0).await.unwrap(),
        ["ok-3", "bad-2", "ok-1"]
    );

    let stop = CancellationToken::new();
    let indexer = Indexer::new(Arc::clone(&w.catalog), Arc::clone(&w.store))
        .with_pauses(Duration::from_millis(50), Duration::from_millis(50));
    let task = tokio::spawn(indexer.run(stop.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !w.store.text_unindexed(0).await.unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the queue never emptied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the indexer stops when told")
        .unwrap();

    assert_eq!(find(w.store.as_ref(), "first-good").await.len(), 1);
    assert_eq!(find(w.store.as_ref(), "third-good").await.len(), 1);
    assert!(find(w.store.as_ref(), "secret-that").await.is_empty());
    let state = w.store.text_index_state("bad-2").await.unwrap();
    assert_eq!(state.len(), 1, "{state:?}");
    let failure = state[0].failure.clone().unwrap_or_default();
    assert_eq!(state[0].channel.as_deref(), Some("0"), "{state:?}");
    assert!(
        !failure.is_empty() && !failure.contains("secret"),
        "{failure}"
    );
}
