//! The session index in the gateway's SQLite state database.
//!
//! **Invariant:** the gateway's own migrations use `PRAGMA user_version`; this
//! module never reads or writes it. Its schema version lives in its own table,
//! `recorder_schema`, and all its tables are named `recording_*`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::meta::{SessionInfo, SessionMeta, Status};
use crate::{Error, Result};

/// The schema version this code writes.
const SCHEMA_VERSION: i64 = 1;

/// One session in the index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionRecord {
    /// Identity, route and target.
    #[serde(flatten)]
    pub info: SessionInfo,
    /// Which gateway recorded it.
    pub gateway_id: String,
    /// Start, Unix milliseconds.
    pub started_at_ms: u64,
    /// End, Unix milliseconds, once ended.
    pub ended_at_ms: Option<u64>,
    /// Duration in milliseconds, once ended.
    pub duration_ms: Option<u64>,
    /// The recording's state.
    pub status: Status,
    /// Why, when the state is not a plain success.
    pub reason: Option<String>,
    /// Terminal output bytes across channels.
    pub bytes: u64,
    /// The first channel's exit status.
    pub exit_status: Option<i64>,
    /// Key prefix of the session's objects.
    pub prefix: String,
    /// Key of meta.json, once sealed.
    pub meta_key: Option<String>,
}

/// One recorded channel in the index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChannelRecord {
    /// The channel's name.
    pub channel: String,
    /// `shell`, `exec` or `subsystem`.
    pub kind: String,
    /// Exec command or subsystem name.
    pub command: Option<String>,
    /// Whether input was recorded.
    pub record_input: bool,
    /// Output bytes.
    pub output_bytes: u64,
    /// Segments uploaded.
    pub segments: u64,
    /// The sealed object, once sealed.
    pub sealed_key: Option<String>,
    /// Exit status.
    pub exit_status: Option<i64>,
}

/// Filters for [`Index::list`]; `None` means any.
#[derive(Clone, Debug, Default)]
pub struct SessionFilter {
    /// Sessions of this identity.
    pub identity: Option<String>,
    /// Sessions on this route.
    pub route: Option<String>,
    /// Started at or after (Unix ms).
    pub since_ms: Option<u64>,
    /// Started before (Unix ms).
    pub until_ms: Option<u64>,
    /// In this state.
    pub status: Option<Status>,
    /// At most this many, newest first (0 = no limit).
    pub limit: usize,
}

/// The open index.
#[derive(Debug)]
pub struct Index {
    /// The database file, for error messages.
    path: PathBuf,
    /// One connection; index writes are small and rare (per segment, not per event).
    conn: Mutex<Connection>,
}

impl Index {
    /// Opens (creating if needed) the state database and this module's tables.
    pub fn open(path: &Path) -> Result<Index> {
        let err = |source| Error::Index {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(Error::spool(parent))?;
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS recorder_schema (version INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS recording_sessions (
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
             );",
        )
        .map_err(err)?;
        let version: Option<i64> = conn
            .query_row("SELECT version FROM recorder_schema", [], |r| r.get(0))
            .optional()
            .map_err(err)?;
        if version.is_none() {
            conn.execute(
                "INSERT INTO recorder_schema (version) VALUES (?1)",
                [SCHEMA_VERSION],
            )
            .map_err(err)?;
        }
        Ok(Index {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(|source| Error::Index {
            path: self.path.clone(),
            source,
        })
    }

    /// Records a session that has just started.
    pub(crate) fn session_started(
        &self,
        info: &SessionInfo,
        gateway_id: &str,
        started_at_ms: u64,
        prefix: &str,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO recording_sessions
                 (id, identity, login, route, target, client_addr, client_key_fingerprint, cert_serial,
                  gateway_id, started_at_ms, status, prefix)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'recording', ?11)",
                params![
                    info.session_id, info.identity, info.login, info.route, info.target, info.client_addr,
                    info.client_key_fingerprint, info.cert_serial.map(|s| s as i64), gateway_id,
                    started_at_ms as i64, prefix
                ],
            )
            .map(|_| ())
        })
    }

    /// Records a channel that has just started.
    pub(crate) fn channel_started(
        &self,
        session_id: &str,
        channel: &str,
        kind: &str,
        command: Option<&str>,
        record_input: bool,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO recording_channels (session_id, channel, kind, command, record_input)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![session_id, channel, kind, command, record_input],
            )
            .map(|_| ())
        })
    }

    /// Notes one more acknowledged segment of a channel.
    pub(crate) fn segment_uploaded(&self, session_id: &str, channel: &str, seq: u64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE recording_channels SET segments = ?3 WHERE session_id = ?1 AND channel = ?2",
                params![session_id, channel, (seq + 1) as i64],
            )
            .map(|_| ())
        })
    }

    /// Sets a session's state (and reason) without touching anything else.
    pub(crate) fn set_status(
        &self,
        session_id: &str,
        status: Status,
        reason: Option<&str>,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE recording_sessions SET status = ?2, reason = ?3 WHERE id = ?1",
                params![session_id, status.as_str(), reason],
            )
            .map(|_| ())
        })
    }

    /// Stores a session's final state from its meta.json (also used by reindex).
    pub(crate) fn upsert_meta(&self, meta: &SessionMeta, meta_key: &str) -> Result<()> {
        let info = &meta.session;
        let bytes: u64 = meta.channels.iter().map(|c| c.output_bytes).sum();
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            tx.execute(
                "INSERT OR REPLACE INTO recording_sessions
                 (id, identity, login, route, target, client_addr, client_key_fingerprint, cert_serial,
                  gateway_id, started_at_ms, ended_at_ms, duration_ms, status, reason, bytes, exit_status,
                  prefix, meta_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
                params![
                    info.session_id, info.identity, info.login, info.route, info.target, info.client_addr,
                    info.client_key_fingerprint, info.cert_serial.map(|s| s as i64), meta.gateway_id,
                    meta.started_at_ms as i64, meta.ended_at_ms as i64,
                    meta.ended_at_ms.saturating_sub(meta.started_at_ms) as i64, meta.status.as_str(),
                    meta.reason, bytes as i64, meta.exit_status, meta.prefix, meta_key
                ],
            )?;
            tx.execute("DELETE FROM recording_channels WHERE session_id = ?1", [&info.session_id])?;
            for ch in &meta.channels {
                tx.execute(
                    "INSERT INTO recording_channels
                     (session_id, channel, kind, command, record_input, output_bytes, segments, sealed_key, exit_status)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        info.session_id, ch.channel, ch.kind, ch.command, ch.record_input,
                        ch.output_bytes as i64, ch.segments.len() as i64, ch.sealed_key, ch.exit_status
                    ],
                )?;
            }
            tx.commit()
        })
    }

    /// Sessions matching `filter`, newest first.
    pub fn list(&self, filter: &SessionFilter) -> Result<Vec<SessionRecord>> {
        let mut sql = format!("SELECT {SESSION_COLUMNS} FROM recording_sessions WHERE 1=1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(v) = &filter.identity {
            sql += " AND identity = ?";
            args.push(v.clone().into());
        }
        if let Some(v) = &filter.route {
            sql += " AND route = ?";
            args.push(v.clone().into());
        }
        if let Some(v) = filter.since_ms {
            sql += " AND started_at_ms >= ?";
            args.push((v as i64).into());
        }
        if let Some(v) = filter.until_ms {
            sql += " AND started_at_ms < ?";
            args.push((v as i64).into());
        }
        if let Some(v) = filter.status {
            sql += " AND status = ?";
            args.push(v.as_str().to_owned().into());
        }
        sql += " ORDER BY started_at_ms DESC, id DESC";
        if filter.limit > 0 {
            sql += &format!(" LIMIT {}", filter.limit);
        }
        self.with(|c| {
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), session_row)?;
            rows.collect()
        })
    }

    /// One session and its channels.
    pub fn show(&self, session_id: &str) -> Result<Option<(SessionRecord, Vec<ChannelRecord>)>> {
        self.with(|c| {
            let session = c
                .query_row(
                    &format!("SELECT {SESSION_COLUMNS} FROM recording_sessions WHERE id = ?1"),
                    [session_id],
                    session_row,
                )
                .optional()?;
            let Some(session) = session else { return Ok(None) };
            let mut stmt = c.prepare(
                "SELECT channel, kind, command, record_input, output_bytes, segments, sealed_key, exit_status
                 FROM recording_channels WHERE session_id = ?1 ORDER BY channel",
            )?;
            let channels = stmt
                .query_map([session_id], |r| {
                    Ok(ChannelRecord {
                        channel: r.get(0)?,
                        kind: r.get(1)?,
                        command: r.get(2)?,
                        record_input: r.get(3)?,
                        output_bytes: r.get::<_, i64>(4)? as u64,
                        segments: r.get::<_, i64>(5)? as u64,
                        sealed_key: r.get(6)?,
                        exit_status: r.get(7)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some((session, channels)))
        })
    }
}

const SESSION_COLUMNS: &str = "id, identity, login, route, target, client_addr, client_key_fingerprint, cert_serial,
    gateway_id, started_at_ms, ended_at_ms, duration_ms, status, reason, bytes, exit_status, prefix, meta_key";

fn session_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRecord> {
    let status: String = r.get(12)?;
    Ok(SessionRecord {
        info: SessionInfo {
            session_id: r.get(0)?,
            identity: r.get(1)?,
            login: r.get(2)?,
            route: r.get(3)?,
            target: r.get(4)?,
            client_addr: r.get(5)?,
            client_key_fingerprint: r.get(6)?,
            cert_serial: r.get::<_, Option<i64>>(7)?.map(|s| s as u64),
        },
        gateway_id: r.get(8)?,
        started_at_ms: r.get::<_, i64>(9)? as u64,
        ended_at_ms: r.get::<_, Option<i64>>(10)?.map(|v| v as u64),
        duration_ms: r.get::<_, Option<i64>>(11)?.map(|v| v as u64),
        status: Status::parse(&status).unwrap_or(Status::Failed),
        reason: r.get(13)?,
        bytes: r.get::<_, i64>(14)? as u64,
        exit_status: r.get(15)?,
        prefix: r.get(16)?,
        meta_key: r.get(17)?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn user_version_untouched_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gatehouse.db");
        {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "user_version", 7).unwrap();
        }
        let index = Index::open(&path).unwrap();
        let _again = Index::open(&path).unwrap();
        let c = Connection::open(&path).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 7);
        let n: i64 = c
            .query_row("SELECT count(*) FROM recorder_schema", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        for (id, who, route, t) in [
            ("a", "alice", "db", 1000),
            ("b", "bob", "db", 2000),
            ("c", "alice", "web", 3000),
        ] {
            let info = SessionInfo {
                session_id: id.into(),
                identity: who.into(),
                route: route.into(),
                ..Default::default()
            };
            index.session_started(&info, "gw", t, "p").unwrap();
        }
        index
            .set_status("b", Status::Failed, Some("storage down"))
            .unwrap();
        let ids = |f: SessionFilter| {
            index
                .list(&f)
                .unwrap()
                .into_iter()
                .map(|s| s.info.session_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(SessionFilter::default()), ["c", "b", "a"]);
        assert_eq!(
            ids(SessionFilter {
                identity: Some("alice".into()),
                ..Default::default()
            }),
            ["c", "a"]
        );
        assert_eq!(
            ids(SessionFilter {
                route: Some("db".into()),
                ..Default::default()
            }),
            ["b", "a"]
        );
        assert_eq!(
            ids(SessionFilter {
                since_ms: Some(1500),
                until_ms: Some(3000),
                ..Default::default()
            }),
            ["b"]
        );
        assert_eq!(
            ids(SessionFilter {
                status: Some(Status::Failed),
                ..Default::default()
            }),
            ["b"]
        );
        let (b, _) = index.show("b").unwrap().unwrap();
        assert_eq!(b.reason.as_deref(), Some("storage down"));
        assert!(index.show("zz").unwrap().is_none());
    }
}
