//! Opening the database file and bringing its schema up to date: one
//! ordered list of migrations for every table, on `PRAGMA user_version`.

use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};

/// How long a statement waits for another connection (another gateway, or
/// a `gatehouse` command run beside it) to release the database.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The busy timeout after a call has waited out [`BUSY_TIMEOUT`] and
/// failed, until one succeeds again.
pub(super) const DEGRADED_BUSY_TIMEOUT: Duration = Duration::from_millis(250);

/// Schema migrations. Entry `i` takes the schema from version `i` to
/// `i + 1` (`PRAGMA user_version`). Append new entries; never edit one
/// that has shipped: databases in the field ran it as written.
///
/// All binding times are Unix milliseconds, so bindings made within one
/// second still sort by age.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: login bindings, the revision counter and the revocation log.
    "CREATE TABLE bindings (
         fingerprint   TEXT PRIMARY KEY NOT NULL, -- SHA256:... of the client key
         sub           TEXT NOT NULL,
         email         TEXT,
         groups_json   TEXT NOT NULL,             -- JSON array of strings
         issuer        TEXT NOT NULL,
         refresh_token BLOB,                      -- nonce || ChaCha20-Poly1305 ciphertext || tag
         created_at    INTEGER NOT NULL,
         expires_at    INTEGER NOT NULL,
         last_used_at  INTEGER,
         revoked_at    INTEGER
     ) STRICT;
     CREATE TABLE store_revision (
         id    INTEGER PRIMARY KEY CHECK (id = 0),
         value INTEGER NOT NULL
     ) STRICT;
     INSERT INTO store_revision (id, value) VALUES (0, 0);
     CREATE TABLE revocations (
         revision    INTEGER NOT NULL,
         fingerprint TEXT NOT NULL,
         revoked_at  INTEGER NOT NULL
     ) STRICT;
     CREATE INDEX revocations_by_revision ON revocations (revision);",
    // 2: every ID-token claim for the policy, when the identity was last
    // confirmed with the IdP (sign-in or refresh), and kill requests.
    "ALTER TABLE bindings ADD COLUMN claims_json TEXT NOT NULL DEFAULT '{}';
     ALTER TABLE bindings ADD COLUMN authenticated_at INTEGER;
     CREATE TABLE session_kills (
         id           INTEGER PRIMARY KEY AUTOINCREMENT,
         session_id   TEXT NOT NULL,
         reason       TEXT NOT NULL,
         requested_at INTEGER NOT NULL,
         handled_at   INTEGER,
         outcome      TEXT                       -- ended | not_found
     ) STRICT;",
    // 3: one owner for the whole file. The recording index, which the
    // recorder used to create on its own (versioned in `recorder_schema`),
    // joins this list: IF NOT EXISTS keeps the rows of databases that have
    // it. Live sessions record which gateway holds each session, and kill
    // requests are addressed to that gateway. Requests from before, which
    // named no gateway, can no longer be answered and are closed.
    "CREATE TABLE IF NOT EXISTS recording_sessions (
         id TEXT PRIMARY KEY,
         identity TEXT NOT NULL,
         login TEXT NOT NULL,
         route TEXT NOT NULL,
         target TEXT NOT NULL,
         client_addr TEXT NOT NULL,
         client_key_fingerprint TEXT,
         cert_serial INTEGER,
         gateway_id TEXT NOT NULL,
         started_at_ms INTEGER NOT NULL,
         ended_at_ms INTEGER,
         duration_ms INTEGER,
         status TEXT NOT NULL,
         reason TEXT,
         bytes INTEGER NOT NULL DEFAULT 0,
         exit_status INTEGER,
         prefix TEXT NOT NULL,
         meta_key TEXT
     );
     CREATE INDEX IF NOT EXISTS recording_sessions_started ON recording_sessions(started_at_ms);
     CREATE INDEX IF NOT EXISTS recording_sessions_identity ON recording_sessions(identity);
     CREATE TABLE IF NOT EXISTS recording_channels (
         session_id TEXT NOT NULL,
         channel TEXT NOT NULL,
         kind TEXT NOT NULL,
         command TEXT,
         record_input INTEGER NOT NULL,
         output_bytes INTEGER NOT NULL DEFAULT 0,
         segments INTEGER NOT NULL DEFAULT 0,
         sealed_key TEXT,
         exit_status INTEGER,
         PRIMARY KEY (session_id, channel)
     );
     DROP TABLE IF EXISTS recorder_schema;
     CREATE TABLE live_sessions (
         session_id TEXT PRIMARY KEY NOT NULL,
         gateway_id TEXT NOT NULL,
         identity   TEXT NOT NULL,
         route      TEXT NOT NULL,
         started_at INTEGER NOT NULL
     ) STRICT;
     CREATE INDEX live_sessions_by_gateway ON live_sessions (gateway_id);
     ALTER TABLE session_kills ADD COLUMN gateway_id TEXT;
     UPDATE session_kills SET handled_at = requested_at, outcome = 'not_found'
         WHERE handled_at IS NULL;
     CREATE INDEX session_kills_by_gateway ON session_kills (gateway_id, id);",
    // 4: signed-in browsers (the web app, the HTTP proxy) and sign-ins in
    // progress. Only hashes of the cookie token and of `state` are kept.
    "CREATE TABLE web_sessions (
         id_hash         TEXT PRIMARY KEY NOT NULL,
         sub             TEXT NOT NULL,
         email           TEXT,
         groups_json     TEXT NOT NULL,
         claims_json     TEXT NOT NULL,
         issuer          TEXT NOT NULL,
         csrf            TEXT NOT NULL,
         client_addr     TEXT NOT NULL,
         created_at      INTEGER NOT NULL,
         last_seen_at    INTEGER NOT NULL,
         expires_at      INTEGER NOT NULL,
         idle_timeout_ms INTEGER NOT NULL
     ) STRICT;
     CREATE TABLE web_logins (
         state_hash   TEXT PRIMARY KEY NOT NULL,
         pending_json TEXT NOT NULL,
         return_to    TEXT NOT NULL,
         expires_at   INTEGER NOT NULL
     ) STRICT;",
    // 5: who viewed which recording (the web app's "viewed by"), and the
    // index the newest-first pages walk with their (started, id) cursor.
    "CREATE TABLE recording_views (
         session_id  TEXT NOT NULL,
         viewer      TEXT NOT NULL,
         first_at_ms INTEGER NOT NULL,
         last_at_ms  INTEGER NOT NULL,
         count       INTEGER NOT NULL,
         PRIMARY KEY (session_id, viewer)
     ) STRICT;
     CREATE INDEX recording_sessions_page ON recording_sessions (started_at_ms, id);",
    // 6: full-text search over what was on screen (sqlite/search.rs).
    // Each chunk's text is stored once, in text_chunks, with its line
    // marks (varints: offset, steps, time_us per line); both FTS5 indexes
    // are external-content tables over it, kept by the code that writes
    // it. Trigrams find substrings; words (no positions, prefix indexes of
    // 1 and 2 characters) find short queries at the start of a word.
    // text_indexed marks each channel done (or why not; channel '' is the
    // session as a whole), so nothing is retried forever.
    "CREATE TABLE text_chunks (
         id         INTEGER PRIMARY KEY,  -- session start ms << 20 | number
         session_id TEXT NOT NULL,
         channel    TEXT NOT NULL,
         alternate  INTEGER NOT NULL,
         text       TEXT NOT NULL,
         marks      BLOB NOT NULL
     ) STRICT;
     CREATE INDEX text_chunks_by_channel ON text_chunks (session_id, channel);
     CREATE VIRTUAL TABLE text_trigrams USING fts5(
         text, content='text_chunks', content_rowid='id', columnsize=0,
         tokenize='trigram case_sensitive 0');
     CREATE VIRTUAL TABLE text_words USING fts5(
         text, content='text_chunks', content_rowid='id', columnsize=0, detail='none',
         prefix='1 2', tokenize='unicode61 remove_diacritics 0');
     CREATE TABLE text_indexed (
         session_id TEXT NOT NULL,
         channel    TEXT NOT NULL,
         lines      INTEGER NOT NULL,
         bytes      INTEGER NOT NULL,
         failure    TEXT,
         PRIMARY KEY (session_id, channel)
     ) STRICT;",
    // 7: hand-offs of a signed-in browser to an HTTP route's host, the
    // sessions they create there (ended with the web app's session that
    // made them: parent_hash), and SSH sign-in links (issue 14). Only
    // hashes of codes and tokens are kept. And the sessions page's route
    // and user filters walk their own index in page order, not every
    // session (100,000 sessions: 67 ms a page before, bench/REPORT.md).
    "CREATE INDEX recording_sessions_route_page
         ON recording_sessions (route, started_at_ms, id);
     CREATE INDEX recording_sessions_identity_page
         ON recording_sessions (identity, started_at_ms, id);
     ALTER TABLE web_sessions ADD COLUMN parent_hash TEXT;
     CREATE INDEX web_sessions_by_parent ON web_sessions (parent_hash)
         WHERE parent_hash IS NOT NULL;
     CREATE TABLE web_handoffs (
         code_hash    TEXT PRIMARY KEY NOT NULL,
         session_hash TEXT NOT NULL,
         host         TEXT NOT NULL,
         nonce_hash   TEXT NOT NULL,
         return_to    TEXT NOT NULL,
         expires_at   INTEGER NOT NULL
     ) STRICT;
     CREATE TABLE ssh_links (
         id_hash       TEXT PRIMARY KEY NOT NULL,
         phrase        TEXT NOT NULL,
         fingerprint   TEXT NOT NULL,
         client_addr   TEXT NOT NULL,
         user_name     TEXT NOT NULL,
         gateway_id    TEXT NOT NULL,
         created_at    INTEGER NOT NULL,
         expires_at    INTEGER NOT NULL,
         state         TEXT NOT NULL,
         approval_json TEXT,
         session_id    TEXT NOT NULL
     ) STRICT;",
];

/// Creates `path` with mode 0600 if absent, and tightens it to 0600 if not.
pub(super) fn ensure_private_file(path: &Path) -> std::io::Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    if file.metadata()?.permissions().mode() & 0o777 != 0o600 {
        file.set_permissions(Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Sets the connection up: wait up to [`BUSY_TIMEOUT`] for other
/// connections, WAL (readers never block the writer), foreign keys on.
pub(super) fn configure(conn: &Connection) -> Result<(), String> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| format!("cannot set busy timeout: {e}"))?;
    // WAL is recorded in the file, so only the first opener switches. That
    // switch needs the database to itself and SQLite answers "busy" at
    // once, without the busy handler, when another connection is opening
    // the same fresh file; so it is retried here for as long.
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)) {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => break,
            Ok(mode) => return Err(format!("cannot switch to WAL: journal mode is {mode}")),
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("cannot switch to WAL: {e}")),
        }
    }
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(|e| format!("cannot enable foreign keys: {e}"))?;
    Ok(())
}

/// Brings the schema to the last of [`MIGRATIONS`], in one transaction.
/// Refuses a database from a newer Gatehouse rather than guess at it.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), String> {
    let fail = |e: rusqlite::Error| format!("cannot migrate schema: {e}");
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(fail)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(fail)?;
    let current = usize::try_from(version).unwrap_or(usize::MAX);
    if current > MIGRATIONS.len() {
        return Err(format!(
            "schema version {version} is newer than this gatehouse understands ({}); \
             upgrade gatehouse",
            MIGRATIONS.len()
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.execute_batch(sql).map_err(fail)?;
        let next = i64::try_from(i.saturating_add(1)).unwrap_or(i64::MAX);
        tx.pragma_update(None, "user_version", next).map_err(fail)?;
    }
    tx.commit().map_err(fail)
}
