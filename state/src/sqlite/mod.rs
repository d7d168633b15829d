//! The SQLite backend: one file, `<state_dir>/gatehouse.db` (WAL, mode
//! 0600), and the refresh-token key beside it.
//!
//! One connection sits behind a mutex rather than one per call: every call
//! is a statement or two on a small table, far cheaper than opening a
//! connection, and one connection means writers in this process never race
//! each other for SQLite's lock; `busy_timeout` only has to cover other
//! processes (a second gateway, or `gatehouse logins revoke`). Calls run on
//! tokio's blocking pool, so async callers never block a worker thread.

mod admin;
mod bindings;
mod keyfile;
mod links;
mod recordings;
mod schema;
mod search;
mod web;

use std::fmt;
use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::aead::LessSafeKey;
use ring::rand::SystemRandom;
use rusqlite::Connection;

pub use keyfile::KEY_FILE;

use crate::web::TOUCH_EVERY;
use crate::{
    Binding, ChannelStart, Error, KillOutcome, KillQueued, KillRequest, LiveSession, NewBinding,
    RecordingChannel, RecordingFilter, RecordingRow, RecordingStart, RecordingStatus,
    RecordingView, RenewedIdentity, Result, Revoke, Revoked, RevokedSince, Secret, Store, WebLogin,
    WebSession,
};

/// The database file's name inside the state directory.
pub const DB_FILE: &str = "gatehouse.db";

/// The schema version (`PRAGMA user_version`) this code migrates to.
pub const SCHEMA_VERSION: usize = schema::MIGRATIONS.len();

/// The state database on SQLite. Cheap to clone; clones share one
/// connection.
#[derive(Clone)]
pub struct Sqlite {
    shared: Arc<Shared>,
}

struct Shared {
    db_path: PathBuf,
    key_path: PathBuf,
    inner: Mutex<Inner>,
    /// Read-only connections for short reads on hot paths (see
    /// [`Sqlite::read`]); WAL lets them read while `inner` writes. Empty
    /// for an in-memory store.
    readers: Vec<Mutex<Connection>>,
    rng: SystemRandom,
}

/// Read connections beside the writer: enough for the two cores the proxy
/// runs on to read at once without waiting for each other.
const READERS: usize = 2;

struct Inner {
    conn: Connection,
    /// The refresh-token key, once read or created. Loaded at `open` when
    /// the file exists (a broken key file fails at startup, not at the
    /// first sign-in); created only when the first token is sealed.
    key: Option<LessSafeKey>,
    /// Set when a call failed after waiting out the whole busy timeout
    /// (another process holds the lock): later calls then wait only
    /// [`schema::DEGRADED_BUSY_TIMEOUT`], so callers queued behind this
    /// connection's mutex fail in turn quickly instead of five seconds
    /// each. The first call that succeeds restores the full timeout.
    degraded: bool,
}

impl fmt::Debug for Sqlite {
    // By hand: the key must never be printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sqlite")
            .field("db_path", &self.shared.db_path)
            .field("key_path", &self.shared.key_path)
            .finish_non_exhaustive()
    }
}

impl Sqlite {
    /// Where the database of a state directory is.
    pub fn db_path(state_dir: &Path) -> PathBuf {
        state_dir.join(DB_FILE)
    }

    /// Whether a state directory has a database yet. Administrator
    /// commands check this before opening, so that one run as root never
    /// creates a database the gateway's user cannot write.
    pub fn exists(state_dir: &Path) -> bool {
        Self::db_path(state_dir).exists()
    }

    /// Opens (creating when absent) the store in `state_dir`: the directory
    /// (mode 0700 when created here), the database (mode 0600, WAL,
    /// migrated to the current schema) and, if it exists, the key file.
    /// Synchronous: it runs once, at startup, before anything is served.
    pub fn open(state_dir: &Path) -> Result<Sqlite> {
        let db_path = Self::db_path(state_dir);
        let key_path = state_dir.join(KEY_FILE);
        let fail = |reason: String| Error::Database {
            path: db_path.clone(),
            reason,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(|e| {
                fail(format!(
                    "cannot create state directory {}: {e}",
                    state_dir.display()
                ))
            })?;
        // SQLite would create the file with mode 0644; create it first so it
        // never exists with a looser mode. The WAL and shared-memory files
        // copy the database's mode.
        schema::ensure_private_file(&db_path).map_err(|e| fail(e.to_string()))?;
        let mut conn = Connection::open(&db_path).map_err(|e| fail(e.to_string()))?;
        schema::configure(&conn).map_err(fail)?;
        schema::migrate(&mut conn).map_err(fail)?;
        let key = keyfile::read(&key_path)?;
        let mut readers = Vec::new();
        for _ in 0..READERS {
            let reader = Connection::open_with_flags(
                &db_path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| fail(e.to_string()))?;
            reader
                .busy_timeout(schema::BUSY_TIMEOUT)
                .map_err(|e| fail(e.to_string()))?;
            readers.push(Mutex::new(reader));
        }
        Ok(Sqlite {
            shared: Arc::new(Shared {
                db_path,
                key_path,
                inner: Mutex::new(Inner {
                    conn,
                    key,
                    degraded: false,
                }),
                readers,
                rng: SystemRandom::new(),
            }),
        })
    }

    /// An empty store in memory, for a command that reads storage and
    /// needs an index only to find objects (no state directory, no file,
    /// and no refresh-token key: binding with a token fails).
    pub fn in_memory() -> Result<Sqlite> {
        let db_path = PathBuf::from(":memory:");
        let fail = |reason: String| Error::Database {
            path: db_path.clone(),
            reason,
        };
        let mut conn = Connection::open_in_memory().map_err(|e| fail(e.to_string()))?;
        schema::migrate(&mut conn).map_err(fail)?;
        Ok(Sqlite {
            shared: Arc::new(Shared {
                db_path: db_path.clone(),
                key_path: PathBuf::new(),
                inner: Mutex::new(Inner {
                    conn,
                    key: None,
                    degraded: false,
                }),
                readers: Vec::new(),
                rng: SystemRandom::new(),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.db_path
    }

    /// Runs a short read `f` at once on this thread with a read-only
    /// connection that is free, else on the blocking pool with the main
    /// connection like [`Sqlite::run`]. For point reads by key on a hot
    /// path (a browser session per proxied request): a WAL read never waits
    /// for a writer, and the blocking pool's thread hand-off costs more than
    /// a lookup of a few microseconds.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Shared, &Connection) -> Result<T> + Send + 'static,
    {
        for reader in &self.shared.readers {
            if let Ok(conn) = reader.try_lock() {
                return f(&self.shared, &conn);
            }
        }
        self.run(move |s, inner| f(s, &inner.conn)).await
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Shared, &mut Inner) -> Result<T> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let mut inner = shared.lock();
            let started = std::time::Instant::now();
            let result = f(&shared, &mut inner);
            match (&result, inner.degraded) {
                (Err(_), false) if started.elapsed() >= schema::BUSY_TIMEOUT => {
                    inner.degraded = true;
                    let _ = inner.conn.busy_timeout(schema::DEGRADED_BUSY_TIMEOUT);
                }
                (Ok(_), true) => {
                    inner.degraded = false;
                    let _ = inner.conn.busy_timeout(schema::BUSY_TIMEOUT);
                }
                _ => {}
            }
            result
        })
        .await
        .map_err(|e| Error::Unavailable(e.to_string()))?
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while locked cannot leave the connection half-written:
        // an open transaction rolls back when its guard drops.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fail(&self, what: &str, reason: impl fmt::Display) -> Error {
        Error::Database {
            path: self.db_path.clone(),
            reason: format!("{what}: {reason}"),
        }
    }
}

fn to_millis(t: SystemTime) -> Result<i64, String> {
    let d = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "the time is before 1970".to_owned())?;
    i64::try_from(d.as_millis()).map_err(|_| "the time is too far in the future".to_owned())
}

fn from_millis(ms: i64) -> Result<SystemTime, String> {
    u64::try_from(ms)
        .ok()
        .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms)))
        .ok_or_else(|| format!("timestamp {ms} is out of range"))
}

/// An unsigned count or time as SQLite's signed integer (saturating).
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// SQLite's signed integer as an unsigned count or time (negatives are 0).
fn uint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[async_trait::async_trait]
impl Store for Sqlite {
    async fn bind(&self, binding: NewBinding, now: SystemTime) -> Result<Binding> {
        self.run(move |s, i| s.bind(i, &binding, now)).await
    }

    async fn live_binding(&self, fingerprint: &str, now: SystemTime) -> Result<Option<Binding>> {
        let fp = fingerprint.to_owned();
        self.run(move |s, i| s.live_binding(i, &fp, now)).await
    }

    async fn refresh_token(&self, fingerprint: &str) -> Result<Option<Secret>> {
        let fp = fingerprint.to_owned();
        self.run(move |s, i| s.refresh_token(i, &fp)).await
    }

    async fn bindings(&self) -> Result<Vec<Binding>> {
        self.run(|s, i| s.list_bindings(i)).await
    }

    async fn revoke(&self, which: Revoke, now: SystemTime) -> Result<Revoked> {
        self.run(move |s, i| s.revoke(i, &which, now)).await
    }

    async fn renew(
        &self,
        fingerprint: &str,
        identity: Option<RenewedIdentity>,
        refresh_token: Option<Secret>,
        now: SystemTime,
    ) -> Result<Option<Binding>> {
        let fp = fingerprint.to_owned();
        self.run(move |s, i| s.renew(i, &fp, identity.as_ref(), refresh_token.as_ref(), now))
            .await
    }

    async fn purge_expired(&self, older_than: SystemTime) -> Result<usize> {
        self.run(move |s, i| s.purge_expired(i, older_than)).await
    }

    async fn revision(&self) -> Result<u64> {
        self.run(|s, i| s.revision(i)).await
    }

    async fn revoked_since(&self, revision: u64) -> Result<RevokedSince> {
        self.run(move |s, i| s.revoked_since(i, revision)).await
    }

    async fn gateway_started(&self, gateway_id: &str, now: SystemTime) -> Result<()> {
        let gw = gateway_id.to_owned();
        self.run(move |s, i| s.gateway_started(i, &gw, now)).await
    }

    async fn session_opened(&self, session: LiveSession) -> Result<()> {
        self.run(move |s, i| s.session_opened(i, &session)).await
    }

    async fn session_closed(&self, session_id: &str) -> Result<()> {
        let id = session_id.to_owned();
        self.run(move |s, i| s.session_closed(i, &id)).await
    }

    async fn live_sessions(&self) -> Result<Vec<LiveSession>> {
        self.run(|s, i| s.live_sessions(i)).await
    }

    async fn request_kill(
        &self,
        session_id: &str,
        reason: &str,
        now: SystemTime,
    ) -> Result<KillQueued> {
        let (id, reason) = (session_id.to_owned(), reason.to_owned());
        self.run(move |s, i| s.request_kill(i, &id, &reason, now))
            .await
    }

    async fn kill_requests_for(&self, gateway_id: &str, after: i64) -> Result<Vec<KillRequest>> {
        let gw = gateway_id.to_owned();
        self.run(move |s, i| s.kill_requests_for(i, &gw, after))
            .await
    }

    async fn last_kill_id(&self) -> Result<i64> {
        self.run(|s, i| s.last_kill_id(i)).await
    }

    async fn kill_handled(&self, id: i64, outcome: KillOutcome, now: SystemTime) -> Result<()> {
        self.run(move |s, i| s.kill_handled(i, id, outcome, now))
            .await
    }

    async fn kill_outcome(&self, id: i64) -> Result<Option<KillOutcome>> {
        self.run(move |s, i| s.kill_outcome(i, id)).await
    }

    async fn recording_started(&self, start: RecordingStart) -> Result<()> {
        self.run(move |s, i| s.recording_started(i, &start)).await
    }

    async fn recording_channel_started(
        &self,
        session_id: &str,
        channel: ChannelStart,
    ) -> Result<()> {
        let id = session_id.to_owned();
        self.run(move |s, i| s.recording_channel_started(i, &id, &channel))
            .await
    }

    async fn recording_segment_uploaded(
        &self,
        session_id: &str,
        channel: &str,
        seq: u64,
    ) -> Result<()> {
        let (id, ch) = (session_id.to_owned(), channel.to_owned());
        self.run(move |s, i| s.recording_segment_uploaded(i, &id, &ch, seq))
            .await
    }

    async fn recording_status(
        &self,
        session_id: &str,
        status: RecordingStatus,
        reason: Option<String>,
    ) -> Result<()> {
        let id = session_id.to_owned();
        self.run(move |s, i| s.recording_status(i, &id, status, reason.as_deref()))
            .await
    }

    async fn recording_sealed(
        &self,
        row: RecordingRow,
        channels: Vec<RecordingChannel>,
    ) -> Result<()> {
        self.run(move |s, i| s.recording_sealed(i, &row, &channels))
            .await
    }

    async fn recordings(&self, filter: RecordingFilter) -> Result<Vec<RecordingRow>> {
        self.run(move |s, i| s.recordings(i, &filter)).await
    }

    async fn recording(
        &self,
        session_id: &str,
    ) -> Result<Option<(RecordingRow, Vec<RecordingChannel>)>> {
        let id = session_id.to_owned();
        self.run(move |s, i| s.recording(i, &id)).await
    }

    async fn recording_viewed(
        &self,
        session_id: &str,
        viewer: &str,
        now: SystemTime,
    ) -> Result<()> {
        let (id, viewer) = (session_id.to_owned(), viewer.to_owned());
        self.run(move |s, i| s.recording_viewed(i, &id, &viewer, now))
            .await
    }

    async fn recording_viewers(&self, session_ids: &[String]) -> Result<Vec<RecordingView>> {
        let ids = session_ids.to_vec();
        self.run(move |s, i| s.recording_viewers(i, &ids)).await
    }

    async fn web_session_create(&self, session: WebSession) -> Result<()> {
        self.run(move |s, i| s.web_session_create(i, &session))
            .await
    }

    async fn web_session(&self, id_hash: &str, now: SystemTime) -> Result<Option<WebSession>> {
        let id = id_hash.to_owned();
        let found = self
            .read(move |s, i| s.web_session_read(i, &id, now))
            .await?;
        let Some(mut session) = found else {
            return Ok(None);
        };
        // Counting the request is a write, at most once a minute: on the
        // blocking pool, since a write may wait for another process.
        let stale = now
            .duration_since(session.last_seen_at)
            .is_ok_and(|d| d >= TOUCH_EVERY);
        if stale {
            let id = id_hash.to_owned();
            self.run(move |s, i| s.web_session_touch(i, &id, now))
                .await?;
            session.last_seen_at = now;
        }
        Ok(Some(session))
    }

    async fn web_session_end(&self, id_hash: &str) -> Result<bool> {
        let id = id_hash.to_owned();
        self.run(move |s, i| s.web_session_end(i, &id)).await
    }

    async fn web_sessions_live(
        &self,
        id_hashes: &[String],
        now: SystemTime,
    ) -> Result<Vec<String>> {
        let ids = id_hashes.to_vec();
        self.read(move |s, i| s.web_sessions_live(i, &ids, now))
            .await
    }

    async fn web_handoff_create(&self, handoff: crate::WebHandoff) -> Result<()> {
        self.run(move |s, i| s.web_handoff_create(i, &handoff))
            .await
    }

    async fn web_handoff_redeem(
        &self,
        code_hash: &str,
        host: &str,
        nonce_hash: &str,
        session: crate::HandoffSession,
        now: SystemTime,
    ) -> Result<Option<(WebSession, String)>> {
        let (code, host, nonce) = (code_hash.to_owned(), host.to_owned(), nonce_hash.to_owned());
        self.run(move |s, i| s.web_handoff_redeem(i, &code, &host, &nonce, &session, now))
            .await
    }

    async fn ssh_link_create(&self, link: crate::SshLink) -> Result<()> {
        self.run(move |s, i| s.ssh_link_create(i, &link)).await
    }

    async fn ssh_link(&self, id_hash: &str) -> Result<Option<crate::LinkRow>> {
        let id = id_hash.to_owned();
        self.run(move |s, i| s.ssh_link(i, &id)).await
    }

    async fn ssh_link_approve(
        &self,
        id_hash: &str,
        approval: crate::LinkApproval,
        now: SystemTime,
    ) -> Result<crate::LinkApproved> {
        let id = id_hash.to_owned();
        self.run(move |s, i| s.ssh_link_approve(i, &id, &approval, now))
            .await
    }

    async fn ssh_link_redeem(&self, id_hash: &str) -> Result<Option<crate::LinkApproval>> {
        let id = id_hash.to_owned();
        self.run(move |s, i| s.ssh_link_redeem(i, &id)).await
    }

    async fn ssh_link_close(&self, id_hash: &str) -> Result<()> {
        let id = id_hash.to_owned();
        self.run(move |s, i| s.ssh_link_close(i, &id)).await
    }

    async fn web_login_start(&self, login: WebLogin) -> Result<()> {
        self.run(move |s, i| s.web_login_start(i, &login)).await
    }

    async fn web_login_take(&self, state_hash: &str, now: SystemTime) -> Result<Option<WebLogin>> {
        let hash = state_hash.to_owned();
        self.run(move |s, i| s.web_login_take(i, &hash, now)).await
    }

    async fn web_purge(&self, now: SystemTime) -> Result<usize> {
        self.run(move |s, i| s.web_purge(i, now)).await
    }

    async fn text_index_replace(
        &self,
        session_id: &str,
        channel: &str,
        chunks: crate::TextChunks,
    ) -> Result<crate::TextIndexed> {
        let (id, ch) = (session_id.to_owned(), channel.to_owned());
        self.run(move |s, i| s.text_index_replace(i, &id, &ch, chunks))
            .await
    }

    async fn text_index_failed(
        &self,
        session_id: &str,
        channel: Option<&str>,
        reason: &str,
    ) -> Result<()> {
        let (id, ch, why) = (
            session_id.to_owned(),
            channel.map(str::to_owned),
            reason.to_owned(),
        );
        self.run(move |s, i| s.text_index_failed(i, &id, ch.as_deref(), &why))
            .await
    }

    async fn text_index_clear(&self) -> Result<()> {
        self.run(|s, i| s.text_index_clear(i)).await
    }

    async fn text_unindexed(&self, limit: usize) -> Result<Vec<String>> {
        self.run(move |s, i| s.text_unindexed(i, limit)).await
    }

    async fn text_index_state(&self, session_id: &str) -> Result<Vec<crate::TextIndexState>> {
        let id = session_id.to_owned();
        self.run(move |s, i| s.text_index_state(i, &id)).await
    }

    async fn text_search(&self, query: crate::TextQuery) -> Result<crate::TextPage> {
        self.run(move |s, i| s.text_search(i, &query)).await
    }
}
