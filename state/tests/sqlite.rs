//! What only the SQLite backend has: files, modes, the key file, sealed
//! tokens on disk, the schema version, and several processes' worth of
//! connections on one file. The behaviour every backend shares is in the
//! conformance suite.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, params};
use state::sqlite::{DB_FILE, KEY_FILE, SCHEMA_VERSION};
use state::{Binding, NewBinding, Revoke, Secret, Sqlite, Store, is_fingerprint};

const HOUR: Duration = Duration::from_secs(3600);
const T0: u64 = 1_800_000_000;
/// ChaCha20-Poly1305's nonce length: the sealed token starts with it.
const NONCE_LEN: usize = 12;

fn fp(c: char) -> String {
    format!("SHA256:{}", c.to_string().repeat(43))
}

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

struct Fixture {
    _dir: tempfile::TempDir,
    state: PathBuf,
    store: Sqlite,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let store = Sqlite::open(&state).unwrap();
    Fixture {
        _dir: dir,
        state,
        store,
    }
}

fn new(fingerprint: &str, sub: &str, email: Option<&str>) -> NewBinding {
    NewBinding {
        fingerprint: fingerprint.to_owned(),
        sub: sub.to_owned(),
        email: email.map(str::to_owned),
        groups: Vec::new(),
        issuer: "https://idp.example.com".to_owned(),
        refresh_token: None,
        claims_json: "{}".to_owned(),
        ttl: HOUR,
    }
}

async fn bind(store: &dyn Store, fingerprint: &str, email: &str, at: u64) -> Binding {
    store
        .bind(
            NewBinding {
                groups: vec!["ops".to_owned(), "dev".to_owned()],
                refresh_token: Some(Secret::new("rt-for-tests")),
                ..new(fingerprint, &format!("sub-{email}"), Some(email))
            },
            t(at),
        )
        .await
        .unwrap()
}

fn raw(state: &Path) -> Connection {
    Connection::open(state.join(DB_FILE)).unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn token(store_token: Option<Secret>) -> Option<String> {
    store_token.map(|s| s.expose().to_owned())
}

#[tokio::test]
async fn refresh_tokens_are_not_stored_in_plaintext_nor_printed() {
    let f = fixture();
    let secret = "rt-PLAINTEXT-should-never-hit-disk-5f3a9c";
    f.store
        .bind(
            NewBinding {
                refresh_token: Some(Secret::new(secret)),
                ..new(&fp('a'), "sub-visible-on-disk", None)
            },
            t(T0),
        )
        .await
        .unwrap();
    assert_eq!(
        token(f.store.refresh_token(&fp('a')).await.unwrap()).as_deref(),
        Some(secret)
    );
    raw(&f.state)
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let db = std::fs::read(f.state.join(DB_FILE)).unwrap();
    assert!(
        contains(&db, b"sub-visible-on-disk"),
        "the checkpoint reached the file"
    );
    assert!(!contains(&db, secret.as_bytes()), "plaintext token on disk");
    let wal = std::fs::read(f.state.join("gatehouse.db-wal")).unwrap_or_default();
    assert!(
        !contains(&wal, secret.as_bytes()),
        "plaintext token in the WAL"
    );
    assert_eq!(std::fs::read(f.state.join(KEY_FILE)).unwrap().len(), 32);
    // Neither the token nor the key shows in Debug output.
    let debug = format!(
        "{:?} {:?} {:?}",
        f.store,
        NewBinding {
            refresh_token: Some(Secret::new(secret)),
            ..new(&fp('a'), "s", None)
        },
        f.store.refresh_token(&fp('a')).await.unwrap()
    );
    assert!(!debug.contains(secret), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
}

#[tokio::test]
async fn altered_or_moved_ciphertexts_do_not_decrypt() {
    let f = fixture();
    bind(&f.store, &fp('a'), "a@example.com", T0).await;
    bind(&f.store, &fp('b'), "b@example.com", T0).await;
    let conn = raw(&f.state);
    let sealed: Vec<u8> = conn
        .query_row(
            "SELECT refresh_token FROM bindings WHERE fingerprint = ?1",
            [fp('a')],
            |r| r.get(0),
        )
        .unwrap();
    let set = |fingerprint: &str, value: &[u8]| {
        conn.execute(
            "UPDATE bindings SET refresh_token = ?2 WHERE fingerprint = ?1",
            params![fingerprint, value],
        )
        .unwrap();
    };
    let mut flipped = sealed.clone();
    let last = flipped.len() - 1;
    flipped[NONCE_LEN + 2] ^= 0x01;
    let mut bad_tag = sealed.clone();
    bad_tag[last] ^= 0x80;
    let mut bad_nonce = sealed.clone();
    bad_nonce[0] ^= 0x01;
    let cases: [(&str, char, Vec<u8>); 5] = [
        ("ciphertext bit flipped", 'a', flipped),
        ("tag bit flipped", 'a', bad_tag),
        ("nonce bit flipped", 'a', bad_nonce),
        ("truncated", 'a', sealed[..NONCE_LEN - 1].to_vec()),
        ("moved to another key's row", 'b', sealed.clone()),
    ];
    for (name, row, value) in cases {
        let row = fp(row);
        set(&row, &value);
        let err = f.store.refresh_token(&row).await.expect_err(name);
        assert!(
            err.to_string().contains("does not decrypt"),
            "{name}: {err}"
        );
        assert!(!err.to_string().contains("rt-for-tests"), "{name}: {err}");
        set(&row, &sealed);
    }
    assert_eq!(
        token(f.store.refresh_token(&fp('a')).await.unwrap()).as_deref(),
        Some("rt-for-tests"),
        "restored, row a opens again"
    );
}

#[tokio::test]
async fn files_are_private_and_the_key_is_reused_across_opens() {
    let f = fixture();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&f.state), 0o700);
    assert_eq!(mode(&f.state.join(DB_FILE)), 0o600);
    assert!(!f.state.join(KEY_FILE).exists(), "created on first use");
    bind(&f.store, &fp('a'), "a@example.com", T0).await;
    assert_eq!(mode(&f.state.join(KEY_FILE)), 0o600);
    let wal = f.state.join("gatehouse.db-wal");
    if wal.exists() {
        assert_eq!(mode(&wal), 0o600);
    }
    let key = std::fs::read(f.state.join(KEY_FILE)).unwrap();
    drop(f.store);

    let again = Sqlite::open(&f.state).unwrap();
    assert_eq!(
        token(again.refresh_token(&fp('a')).await.unwrap()).as_deref(),
        Some("rt-for-tests")
    );
    bind(&again, &fp('b'), "b@example.com", T0).await;
    assert_eq!(
        std::fs::read(f.state.join(KEY_FILE)).unwrap(),
        key,
        "never rewritten"
    );
    assert_eq!(again.bindings().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_store_opened_before_the_key_existed_reads_it_later() {
    let f = fixture();
    let other = Sqlite::open(&f.state).unwrap();
    bind(&f.store, &fp('a'), "a@example.com", T0).await;
    assert_eq!(
        token(other.refresh_token(&fp('a')).await.unwrap()).as_deref(),
        Some("rt-for-tests")
    );
}

#[tokio::test]
async fn bad_key_files_and_fingerprints_are_refused() {
    let f = fixture();
    let key = f.state.join(KEY_FILE);
    std::fs::write(&key, [0u8; 16]).unwrap();
    std::fs::set_permissions(&key, Permissions::from_mode(0o600)).unwrap();
    let err = Sqlite::open(&f.state).unwrap_err();
    assert!(err.to_string().contains("exactly 32 bytes"), "{err}");
    std::fs::write(&key, [0u8; 32]).unwrap();
    std::fs::set_permissions(&key, Permissions::from_mode(0o644)).unwrap();
    let err = Sqlite::open(&f.state).unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");

    for bad in ["", "SHA256:", "MD5:aa:bb", "SHA256:short", "sha256:AAAA"] {
        let err = f.store.bind(new(bad, "s", None), t(T0)).await.unwrap_err();
        assert!(
            err.to_string().contains("not a SHA256 key fingerprint"),
            "{err}"
        );
    }
    assert!(is_fingerprint(
        "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"
    ));
}

#[tokio::test]
async fn the_schema_is_versioned_and_a_newer_one_is_refused() {
    let f = fixture();
    let conn = raw(&f.state);
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, i64::try_from(SCHEMA_VERSION).unwrap());
    let journal: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    // Reopening migrates nothing and keeps data.
    bind(&f.store, &fp('a'), "a@example.com", T0).await;
    let again = Sqlite::open(&f.state).unwrap();
    assert_eq!(again.bindings().await.unwrap().len(), 1);
    drop(again);

    conn.pragma_update(None, "user_version", 99).unwrap();
    let err = Sqlite::open(&f.state).unwrap_err();
    assert!(
        err.to_string().contains("schema version 99 is newer"),
        "{err}"
    );
}

#[tokio::test]
async fn json_lines_carry_the_identity_and_state_but_no_token() {
    let f = fixture();
    let b = bind(&f.store, &fp('a'), "a@example.com", T0).await;
    let line = b.to_json_line(t(T0 + 10));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["fingerprint"], fp('a'));
    assert_eq!(v["email"], "a@example.com");
    assert_eq!(v["groups"], serde_json::json!(["ops", "dev"]));
    assert_eq!(v["state"], "live");
    assert_eq!(v["created_at"], "2027-01-15T08:00:00Z");
    assert_eq!(v["last_used_at"], serde_json::Value::Null);
    assert!(!line.contains("rt-for-tests"));
    assert!(!line.contains('\n'));
    let later: serde_json::Value = serde_json::from_str(&b.to_json_line(t(T0 + 7200))).unwrap();
    assert_eq!(later["state"], "expired");
}

#[test]
fn stores_opened_at_once_on_a_fresh_directory_agree() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let barrier = Arc::new(std::sync::Barrier::new(4));
        let handles: Vec<_> = (0..4u8)
            .map(|i| {
                let (state, barrier) = (state.clone(), Arc::clone(&barrier));
                let handle = rt.handle().clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    let store = Sqlite::open(&state).unwrap();
                    let c = char::from(b'a' + i);
                    handle.block_on(bind(&store, &fp(c), "x@example.com", T0));
                    store
                })
            })
            .collect();
        let stores: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        // One key won the race to be created; every store uses it.
        rt.block_on(async {
            for store in &stores {
                for c in ['a', 'b', 'c', 'd'] {
                    assert_eq!(
                        token(store.refresh_token(&fp(c)).await.unwrap()).as_deref(),
                        Some("rt-for-tests")
                    );
                }
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_use_from_tasks_and_connections_does_not_hit_locks() {
    let f = fixture();
    let shared: Arc<dyn Store> = Arc::new(Sqlite::open(&f.state).unwrap());
    let tasks: Vec<_> = (0..4u8)
        .map(|i| {
            // Two tasks share one store; two open their own, as a second
            // gateway and `gatehouse logins` do.
            let store: Arc<dyn Store> = if i < 2 {
                Arc::clone(&shared)
            } else {
                Arc::new(Sqlite::open(&f.state).unwrap())
            };
            tokio::spawn(async move {
                let c = char::from(b'a' + i);
                let email = format!("{c}@example.com");
                for round in 0..150u64 {
                    let at = T0 + round;
                    bind(store.as_ref(), &fp(c), &email, at).await;
                    assert!(store.live_binding(&fp(c), t(at)).await.unwrap().is_some());
                    assert_eq!(
                        token(store.refresh_token(&fp(c)).await.unwrap()).as_deref(),
                        Some("rt-for-tests")
                    );
                    if round % 10 == 0 {
                        let revoked = store.revoke(Revoke::Key(fp(c)), t(at)).await.unwrap();
                        assert_eq!(revoked.bindings.len(), 1);
                    }
                    store.bindings().await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("no task failed");
    }
    assert_eq!(shared.bindings().await.unwrap().len(), 4);
    assert_eq!(shared.revision().await.unwrap(), 4 * 15);
}

fn live(id: &str) -> state::LiveSession {
    state::LiveSession {
        session_id: id.to_owned(),
        gateway_id: "gw".to_owned(),
        identity: "alice".to_owned(),
        route: "db".to_owned(),
        started_at_ms: T0 * 1000,
    }
}

/// Another process holding the write lock makes a write fail after the
/// busy timeout; the writes queued behind it then fail quickly instead of
/// five seconds each, and once the lock is gone writes succeed (and wait
/// the full timeout again).
#[tokio::test(flavor = "multi_thread")]
async fn writes_fail_quickly_while_another_process_holds_the_lock() {
    let f = fixture();
    let holder = raw(&f.state);
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let first = std::time::Instant::now();
    assert!(f.store.session_opened(live("s1")).await.is_err());
    let first = first.elapsed();
    assert!(first >= Duration::from_secs(5), "gave up after {first:?}");

    let second = std::time::Instant::now();
    assert!(f.store.session_opened(live("s2")).await.is_err());
    let second = second.elapsed();
    assert!(second < Duration::from_secs(5), "waited {second:?} again");

    holder.execute_batch("COMMIT").unwrap();
    f.store.session_opened(live("s3")).await.unwrap();
    let ids: Vec<String> = f
        .store
        .live_sessions()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.session_id)
        .collect();
    assert_eq!(ids, ["s3"]);

    // Recovered: a short lock is waited out again.
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(800));
        holder.execute_batch("COMMIT").unwrap();
    });
    f.store.session_opened(live("s4")).await.unwrap();
    release.join().unwrap();
}
