//! The recording index on SQLite: `recording_sessions` and
//! `recording_channels`.

use rusqlite::{Connection, OptionalExtension, params};

use std::time::SystemTime;

use super::{Inner, Shared, int, to_millis, uint};
use crate::{
    ChannelStart, RecordingChannel, RecordingFilter, RecordingRow, RecordingStart, RecordingStatus,
    RecordingView, Result,
};

const SESSION_COLUMNS: &str = "id, identity, login, route, target, client_addr, \
    client_key_fingerprint, cert_serial, gateway_id, started_at_ms, ended_at_ms, duration_ms, \
    status, reason, bytes, exit_status, prefix, meta_key";

impl Shared {
    pub(super) fn recording_started(&self, inner: &mut Inner, s: &RecordingStart) -> Result<()> {
        inner
            .conn
            .execute(
                "INSERT OR REPLACE INTO recording_sessions
                 (id, identity, login, route, target, client_addr, client_key_fingerprint,
                  cert_serial, gateway_id, started_at_ms, status, prefix)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'recording', ?11)",
                params![
                    s.session_id,
                    s.identity,
                    s.login,
                    s.route,
                    s.target,
                    s.client_addr,
                    s.client_key_fingerprint,
                    s.cert_serial.map(int),
                    s.gateway_id,
                    int(s.started_at_ms),
                    s.prefix
                ],
            )
            .map(|_| ())
            .map_err(|e| self.fail("cannot index the recording", e))
    }

    pub(super) fn recording_channel_started(
        &self,
        inner: &mut Inner,
        session_id: &str,
        ch: &ChannelStart,
    ) -> Result<()> {
        let mut run = || -> rusqlite::Result<()> {
            let tx = inner.conn.transaction()?;
            tx.execute(
                "INSERT OR REPLACE INTO recording_channels
                 (session_id, channel, kind, command, record_input)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![session_id, ch.channel, ch.kind, ch.command, ch.record_input],
            )?;
            // A session starts before its first channel's target connection
            // is made, so its serial is known only now.
            if let Some(serial) = ch.cert_serial {
                tx.execute(
                    "UPDATE recording_sessions SET cert_serial = ?2
                     WHERE id = ?1 AND cert_serial IS NULL",
                    params![session_id, int(serial)],
                )?;
            }
            tx.commit()
        };
        run().map_err(|e| self.fail("cannot index the channel", e))
    }

    pub(super) fn recording_segment_uploaded(
        &self,
        inner: &mut Inner,
        session_id: &str,
        channel: &str,
        seq: u64,
    ) -> Result<()> {
        inner
            .conn
            .execute(
                "UPDATE recording_channels SET segments = MAX(segments, ?3)
                 WHERE session_id = ?1 AND channel = ?2",
                params![session_id, channel, int(seq.saturating_add(1))],
            )
            .map(|_| ())
            .map_err(|e| self.fail("cannot index the segment", e))
    }

    pub(super) fn recording_status(
        &self,
        inner: &mut Inner,
        session_id: &str,
        status: RecordingStatus,
        reason: Option<&str>,
    ) -> Result<()> {
        inner
            .conn
            .execute(
                "UPDATE recording_sessions SET status = ?2, reason = ?3 WHERE id = ?1",
                params![session_id, status.as_str(), reason],
            )
            .map(|_| ())
            .map_err(|e| self.fail("cannot set the recording's state", e))
    }

    pub(super) fn recording_sealed(
        &self,
        inner: &mut Inner,
        row: &RecordingRow,
        channels: &[RecordingChannel],
    ) -> Result<()> {
        let mut run = || -> rusqlite::Result<()> {
            let s = &row.start;
            let tx = inner.conn.transaction()?;
            tx.execute(
                "INSERT OR REPLACE INTO recording_sessions
                 (id, identity, login, route, target, client_addr, client_key_fingerprint,
                  cert_serial, gateway_id, started_at_ms, ended_at_ms, duration_ms, status,
                  reason, bytes, exit_status, prefix, meta_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                  ?16, ?17, ?18)",
                params![
                    s.session_id,
                    s.identity,
                    s.login,
                    s.route,
                    s.target,
                    s.client_addr,
                    s.client_key_fingerprint,
                    s.cert_serial.map(int),
                    s.gateway_id,
                    int(s.started_at_ms),
                    row.ended_at_ms.map(int),
                    row.duration_ms.map(int),
                    row.status.as_str(),
                    row.reason,
                    int(row.bytes),
                    row.exit_status,
                    s.prefix,
                    row.meta_key
                ],
            )?;
            tx.execute(
                "DELETE FROM recording_channels WHERE session_id = ?1",
                [&s.session_id],
            )?;
            for ch in channels {
                tx.execute(
                    "INSERT INTO recording_channels
                     (session_id, channel, kind, command, record_input, output_bytes, segments,
                      sealed_key, exit_status)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        s.session_id,
                        ch.channel,
                        ch.kind,
                        ch.command,
                        ch.record_input,
                        int(ch.output_bytes),
                        int(ch.segments),
                        ch.sealed_key,
                        ch.exit_status
                    ],
                )?;
            }
            tx.commit()
        };
        run().map_err(|e| self.fail("cannot index the sealed recording", e))
    }

    pub(super) fn recordings(
        &self,
        inner: &mut Inner,
        filter: &RecordingFilter,
    ) -> Result<Vec<RecordingRow>> {
        list_in(&inner.conn, filter).map_err(|e| self.fail("cannot list recordings", e))
    }

    pub(super) fn recording(
        &self,
        inner: &mut Inner,
        session_id: &str,
    ) -> Result<Option<(RecordingRow, Vec<RecordingChannel>)>> {
        show_in(&inner.conn, session_id).map_err(|e| self.fail("cannot read the recording", e))
    }

    pub(super) fn recording_viewed(
        &self,
        inner: &mut Inner,
        session_id: &str,
        viewer: &str,
        now: SystemTime,
    ) -> Result<()> {
        let at = to_millis(now).map_err(|e| self.fail("cannot note the view", e))?;
        inner
            .conn
            .execute(
                "INSERT INTO recording_views (session_id, viewer, first_at_ms, last_at_ms, count)
                 VALUES (?1, ?2, ?3, ?3, 1)
                 ON CONFLICT (session_id, viewer)
                 DO UPDATE SET last_at_ms = excluded.last_at_ms, count = count + 1",
                rusqlite::params![session_id, viewer, at],
            )
            .map(drop)
            .map_err(|e| self.fail("cannot note the view", e))
    }

    pub(super) fn recording_viewers(
        &self,
        inner: &mut Inner,
        session_ids: &[String],
    ) -> Result<Vec<RecordingView>> {
        viewers_in(&inner.conn, session_ids).map_err(|e| self.fail("cannot read the views", e))
    }
}

fn list_in(c: &Connection, filter: &RecordingFilter) -> rusqlite::Result<Vec<RecordingRow>> {
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
        args.push(int(v).into());
    }
    if let Some(v) = filter.until_ms {
        sql += " AND started_at_ms < ?";
        args.push(int(v).into());
    }
    if let Some(v) = filter.status {
        sql += " AND status = ?";
        args.push(v.as_str().to_owned().into());
    }
    if let Some(v) = &filter.login {
        sql += " AND login = ?";
        args.push(v.clone().into());
    }
    if let Some(v) = &filter.target {
        // A substring, taken literally: LIKE's wildcards are escaped.
        sql += " AND target LIKE ? ESCAPE '\\'";
        args.push(format!("%{}%", like_literal(v)).into());
    }
    if let Some(v) = filter.active_at_ms {
        sql += " AND started_at_ms <= ? AND (ended_at_ms IS NULL OR ended_at_ms >= ?)";
        args.push(int(v).into());
        args.push(int(v).into());
    }
    if let Some(v) = filter.min_duration_ms {
        sql += " AND duration_ms >= ?";
        args.push(int(v).into());
    }
    if let Some(v) = filter.max_duration_ms {
        sql += " AND duration_ms <= ?";
        args.push(int(v).into());
    }
    if let Some(v) = filter.exit_status {
        sql += " AND exit_status = ?";
        args.push(v.into());
    }
    if let Some(v) = &filter.text {
        let (clause, text_args) = super::search::sessions_with_text(v);
        sql += &clause;
        args.extend(text_args);
    }
    if let Some(c) = &filter.after {
        sql += " AND (started_at_ms < ? OR (started_at_ms = ? AND id < ?))";
        args.push(int(c.started_at_ms).into());
        args.push(int(c.started_at_ms).into());
        args.push(c.session_id.clone().into());
    }
    sql += " ORDER BY started_at_ms DESC, id DESC";
    if filter.limit > 0 {
        sql += " LIMIT ?";
        args.push(i64::try_from(filter.limit).unwrap_or(i64::MAX).into());
    }
    let mut stmt = c.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), session_row)?;
    rows.collect()
}

fn viewers_in(c: &Connection, session_ids: &[String]) -> rusqlite::Result<Vec<RecordingView>> {
    let mut out = Vec::new();
    // SQLite binds at most 32,766 values per statement; pages are far
    // smaller, but chunk anyway.
    for ids in session_ids.chunks(500) {
        let marks = vec!["?"; ids.len()].join(",");
        let mut stmt = c.prepare(&format!(
            "SELECT session_id, viewer, first_at_ms, last_at_ms, count FROM recording_views
             WHERE session_id IN ({marks}) ORDER BY session_id, first_at_ms, viewer"
        ))?;
        let rows = stmt.query_map(rusqlite::params_from_iter(ids), |r| {
            Ok(RecordingView {
                session_id: r.get(0)?,
                viewer: r.get(1)?,
                first_at_ms: uint(r.get(2)?),
                last_at_ms: uint(r.get(3)?),
                count: uint(r.get(4)?),
            })
        })?;
        for row in rows {
            out.push(row?);
        }
    }
    Ok(out)
}

/// `text` with LIKE's `%`, `_` and the escape character escaped.
fn like_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn show_in(
    c: &Connection,
    session_id: &str,
) -> rusqlite::Result<Option<(RecordingRow, Vec<RecordingChannel>)>> {
    let session = c
        .query_row(
            &format!("SELECT {SESSION_COLUMNS} FROM recording_sessions WHERE id = ?1"),
            [session_id],
            session_row,
        )
        .optional()?;
    let Some(session) = session else {
        return Ok(None);
    };
    let mut stmt = c.prepare(
        "SELECT channel, kind, command, record_input, output_bytes, segments, sealed_key,
                exit_status
         FROM recording_channels WHERE session_id = ?1 ORDER BY channel",
    )?;
    let channels = stmt
        .query_map([session_id], |r| {
            Ok(RecordingChannel {
                channel: r.get(0)?,
                kind: r.get(1)?,
                command: r.get(2)?,
                record_input: r.get(3)?,
                output_bytes: uint(r.get(4)?),
                segments: uint(r.get(5)?),
                sealed_key: r.get(6)?,
                exit_status: r.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some((session, channels)))
}

fn session_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RecordingRow> {
    let status: String = r.get(12)?;
    Ok(RecordingRow {
        start: RecordingStart {
            session_id: r.get(0)?,
            identity: r.get(1)?,
            login: r.get(2)?,
            route: r.get(3)?,
            target: r.get(4)?,
            client_addr: r.get(5)?,
            client_key_fingerprint: r.get(6)?,
            cert_serial: r.get::<_, Option<i64>>(7)?.map(uint),
            gateway_id: r.get(8)?,
            started_at_ms: uint(r.get(9)?),
            prefix: r.get(16)?,
        },
        ended_at_ms: r.get::<_, Option<i64>>(10)?.map(uint),
        duration_ms: r.get::<_, Option<i64>>(11)?.map(uint),
        // A state this version does not know reads as failed: never as fine.
        status: RecordingStatus::parse(&status).unwrap_or(RecordingStatus::Failed),
        reason: r.get(13)?,
        bytes: uint(r.get(14)?),
        exit_status: r.get(15)?,
        meta_key: r.get(17)?,
    })
}
