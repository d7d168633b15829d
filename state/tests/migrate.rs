//! A `gatehouse.db` from the layout before the state crate — bindings
//! migrated by the gateway to `user_version` 2, the recording index created
//! by the recorder under its own `recorder_schema` table — migrates in place
//! with every binding, token, revocation and index row intact.
//!
//! The old schema is written out here literally, as the previous release
//! created it, not taken from the migration list: the point is to check the
//! list against what is in the field.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, UNIX_EPOCH};

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use rusqlite::{Connection, params};
use state::{KillQueued, LiveSession, RecordingFilter, RecordingStatus, Sqlite, Store};

/// The gateway's migrations 1 and 2 as the previous release shipped them.
const OLD_BINDINGS: &str = "
    CREATE TABLE bindings (
        fingerprint TEXT PRIMARY KEY NOT NULL, sub TEXT NOT NULL, email TEXT,
        groups_json TEXT NOT NULL, issuer TEXT NOT NULL, refresh_token BLOB,
        created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
        last_used_at INTEGER, revoked_at INTEGER
    ) STRICT;
    CREATE TABLE store_revision (id INTEGER PRIMARY KEY CHECK (id = 0), value INTEGER NOT NULL) STRICT;
    INSERT INTO store_revision (id, value) VALUES (0, 0);
    CREATE TABLE revocations (revision INTEGER NOT NULL, fingerprint TEXT NOT NULL, revoked_at INTEGER NOT NULL) STRICT;
    CREATE INDEX revocations_by_revision ON revocations (revision);
    ALTER TABLE bindings ADD COLUMN claims_json TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE bindings ADD COLUMN authenticated_at INTEGER;
    CREATE TABLE session_kills (
        id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, reason TEXT NOT NULL,
        requested_at INTEGER NOT NULL, handled_at INTEGER, outcome TEXT
    ) STRICT;
    PRAGMA user_version = 2;";

/// The recorder's index as the previous release created it.
const OLD_INDEX: &str = "
    CREATE TABLE IF NOT EXISTS recorder_schema (version INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS recording_sessions (
        id TEXT PRIMARY KEY, identity TEXT NOT NULL, login TEXT NOT NULL, route TEXT NOT NULL,
        target TEXT NOT NULL, client_addr TEXT NOT NULL, client_key_fingerprint TEXT,
        cert_serial INTEGER, gateway_id TEXT NOT NULL, started_at_ms INTEGER NOT NULL,
        ended_at_ms INTEGER, duration_ms INTEGER, status TEXT NOT NULL, reason TEXT,
        bytes INTEGER NOT NULL DEFAULT 0, exit_status INTEGER, prefix TEXT NOT NULL, meta_key TEXT
    );
    CREATE INDEX IF NOT EXISTS recording_sessions_started ON recording_sessions(started_at_ms);
    CREATE INDEX IF NOT EXISTS recording_sessions_identity ON recording_sessions(identity);
    CREATE TABLE IF NOT EXISTS recording_channels (
        session_id TEXT NOT NULL, channel TEXT NOT NULL, kind TEXT NOT NULL, command TEXT,
        record_input INTEGER NOT NULL, output_bytes INTEGER NOT NULL DEFAULT 0,
        segments INTEGER NOT NULL DEFAULT 0, sealed_key TEXT, exit_status INTEGER,
        PRIMARY KEY (session_id, channel)
    );
    INSERT INTO recorder_schema (version) VALUES (1);";

const T0_MS: i64 = 1_800_000_000_000;

fn fp(c: char) -> String {
    format!("SHA256:{}", c.to_string().repeat(43))
}

/// Seals a token as the previous release did: nonce, then ciphertext and
/// tag, with the fingerprint (after a fixed context) as associated data.
fn seal(key: &[u8; 32], fingerprint: &str, token: &str) -> Vec<u8> {
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).unwrap());
    let nonce = [7u8; 12];
    let mut aad = b"gatehouse refresh token v1\0".to_vec();
    aad.extend_from_slice(fingerprint.as_bytes());
    let mut buf = token.as_bytes().to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut buf,
    )
    .unwrap();
    [nonce.to_vec(), buf].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_previous_layout_migrates_without_losing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    std::fs::set_permissions(&state_dir, Permissions::from_mode(0o700)).unwrap();
    // A key made by the previous release (random there; fixed here).
    let key = [42u8; 32];
    let key_path = state_dir.join("bindings.key");
    std::fs::write(&key_path, key).unwrap();
    std::fs::set_permissions(&key_path, Permissions::from_mode(0o600)).unwrap();
    {
        let c = Connection::open(state_dir.join("gatehouse.db")).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.execute_batch(OLD_BINDINGS).unwrap();
        c.execute_batch(OLD_INDEX).unwrap();
        let insert = "INSERT INTO bindings (fingerprint, sub, email, groups_json, issuer,
                refresh_token, created_at, expires_at, last_used_at, revoked_at, claims_json,
                authenticated_at)
             VALUES (?1, ?2, ?3, ?4, 'https://idp.example.com', ?5, ?6, ?7, NULL, ?8, ?9, ?10)";
        c.execute(
            insert,
            params![
                fp('a'),
                "sub-a",
                "alice@example.com",
                r#"["ops"]"#,
                seal(&key, &fp('a'), "rt-alice"),
                T0_MS,
                T0_MS + 3_600_000,
                None::<i64>,
                r#"{"dept":"eng"}"#,
                T0_MS + 60_000
            ],
        )
        .unwrap();
        // A binding from before migration 2 had no authenticated_at.
        c.execute(
            insert,
            params![
                fp('b'),
                "sub-b",
                None::<String>,
                "[]",
                None::<Vec<u8>>,
                T0_MS,
                T0_MS + 3_600_000,
                T0_MS + 10,
                "{}",
                None::<i64>
            ],
        )
        .unwrap();
        c.execute_batch(
            "UPDATE store_revision SET value = 1;
             INSERT INTO revocations VALUES (1, 'SHA256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 1800000000010);
             INSERT INTO session_kills (session_id, reason, requested_at) VALUES ('gone', 'old', 1800000000000);
             INSERT INTO recording_sessions (id, identity, login, route, target, client_addr,
                 gateway_id, started_at_ms, ended_at_ms, duration_ms, status, bytes, exit_status, prefix, meta_key)
             VALUES ('s-1', 'alice@example.com', 'root', 'db', '10.0.0.1:22', '127.0.0.1:5000',
                 'gw', 1000, 5000, 4000, 'sealed', 77, 0, 'sessions/2027/01/15/s-1', 'sessions/2027/01/15/s-1/meta.json');
             INSERT INTO recording_channels (session_id, channel, kind, record_input, output_bytes, segments, sealed_key, exit_status)
             VALUES ('s-1', '0', 'shell', 0, 77, 2, 'sessions/2027/01/15/s-1/0.cast.zst', 0);",
        )
        .unwrap();
    }

    let store = Sqlite::open(&state_dir).unwrap();
    let c = Connection::open(state_dir.join("gatehouse.db")).unwrap();
    let version: i64 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(
        version,
        i64::try_from(state::sqlite::SCHEMA_VERSION).unwrap()
    );
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        !tables.iter().any(|t| t == "recorder_schema"),
        "the recorder's own version table is gone: {tables:?}"
    );

    // Bindings, their claims, token and revocation survive.
    let bindings = store.bindings().await.unwrap();
    assert_eq!(bindings.len(), 2);
    let a = bindings.iter().find(|b| b.fingerprint == fp('a')).unwrap();
    assert_eq!(a.email.as_deref(), Some("alice@example.com"));
    assert_eq!(a.groups, ["ops"]);
    assert_eq!(a.claims_json, r#"{"dept":"eng"}"#);
    assert_eq!(
        a.authenticated_at,
        UNIX_EPOCH + Duration::from_millis(1_800_000_060_000)
    );
    let b = bindings.iter().find(|b| b.fingerprint == fp('b')).unwrap();
    assert_eq!(b.authenticated_at, b.created_at, "missing = the sign-in");
    assert!(b.revoked_at.is_some());
    assert_eq!(
        store
            .refresh_token(&fp('a'))
            .await
            .unwrap()
            .map(|s| s.expose().to_owned())
            .as_deref(),
        Some("rt-alice")
    );
    assert_eq!(store.revision().await.unwrap(), 1);
    assert_eq!(
        store.revoked_since(0).await.unwrap().fingerprints,
        vec![fp('b')]
    );

    // The index rows are there, unchanged.
    let rows = store.recordings(RecordingFilter::default()).await.unwrap();
    assert_eq!(rows.len(), 1);
    let (row, channels) = store.recording("s-1").await.unwrap().unwrap();
    assert_eq!(row.status, RecordingStatus::Sealed);
    assert_eq!(row.bytes, 77);
    assert_eq!(row.duration_ms, Some(4000));
    assert_eq!(row.start.prefix, "sessions/2027/01/15/s-1");
    assert_eq!(channels.len(), 1);
    assert_eq!(channels[0].segments, 2);
    // A sealed session of the old layout is due for the text index.
    assert_eq!(store.text_unindexed(0).await.unwrap(), ["s-1"]);

    // The old unaddressed kill request is closed; new ones work.
    let outcome: Option<String> = c
        .query_row(
            "SELECT outcome FROM session_kills WHERE session_id = 'gone'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(outcome.as_deref(), Some("not_found"));
    store
        .gateway_started("gw", std::time::SystemTime::now())
        .await
        .unwrap();
    store
        .session_opened(LiveSession {
            session_id: "s-2".into(),
            gateway_id: "gw".into(),
            identity: "alice@example.com".into(),
            route: "db".into(),
            started_at_ms: 1,
        })
        .await
        .unwrap();
    let queued = store
        .request_kill("s-2", "why", std::time::SystemTime::now())
        .await
        .unwrap();
    assert!(matches!(queued, KillQueued::Queued { ref gateway_id, .. } if gateway_id == "gw"));

    // A second open migrates nothing more.
    drop(store);
    let again = Sqlite::open(&state_dir).unwrap();
    assert_eq!(again.bindings().await.unwrap().len(), 2);
}
