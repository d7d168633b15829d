//! Web sessions and sign-ins in progress on SQLite.

use std::time::{Duration, SystemTime};

use rusqlite::{OptionalExtension, params};

use super::{Inner, Shared, from_millis, int, to_millis, uint};
use crate::{HandoffSession, Result, WebHandoff, WebLogin, WebSession};

const SESSION_COLUMNS: &str = "id_hash, sub, email, groups_json, claims_json, issuer, csrf, \
     client_addr, created_at, last_seen_at, expires_at, idle_timeout_ms";

fn read_session(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<WebSession, String>> {
    let groups: String = r.get(3)?;
    let times: [i64; 4] = [r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?];
    let (id_hash, sub, email, claims_json, issuer, csrf, client_addr) = (
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    );
    Ok((|| {
        Ok(WebSession {
            id_hash,
            sub,
            email,
            groups: serde_json::from_str(&groups).map_err(|e| e.to_string())?,
            claims_json,
            issuer,
            csrf,
            client_addr,
            created_at: from_millis(times[0])?,
            last_seen_at: from_millis(times[1])?,
            expires_at: from_millis(times[2])?,
            idle_timeout: Duration::from_millis(uint(times[3])),
        })
    })())
}

/// Inserts a session; `parent` names the web app session a hand-off made
/// it from.
fn insert_session(
    conn: &rusqlite::Connection,
    s: &WebSession,
    parent: Option<&str>,
) -> std::result::Result<(), String> {
    let groups = serde_json::to_string(&s.groups).map_err(|e| e.to_string())?;
    let created = to_millis(s.created_at)?;
    let seen = to_millis(s.last_seen_at)?;
    let expires = to_millis(s.expires_at)?;
    let idle = int(u64::try_from(s.idle_timeout.as_millis()).unwrap_or(u64::MAX));
    conn.execute(
        &format!(
            "INSERT INTO web_sessions ({SESSION_COLUMNS}, parent_hash) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ),
        params![
            s.id_hash,
            s.sub,
            s.email,
            groups,
            s.claims_json,
            s.issuer,
            s.csrf,
            s.client_addr,
            created,
            seen,
            expires,
            idle,
            parent
        ],
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

impl Shared {
    pub(super) fn web_session_create(&self, inner: &mut Inner, s: &WebSession) -> Result<()> {
        insert_session(&inner.conn, s, None)
            .map_err(|e| self.fail("cannot store the web session", e))
    }

    /// The live session under `id_hash` at `now`, read only.
    pub(super) fn web_session_read(
        &self,
        conn: &rusqlite::Connection,
        id_hash: &str,
        now: SystemTime,
    ) -> Result<Option<WebSession>> {
        const WHAT: &str = "cannot read the web session";
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS} FROM web_sessions WHERE id_hash = ?1"
            ))
            .map_err(|e| self.fail(WHAT, e))?;
        let found = stmt
            .query_row(params![id_hash], read_session)
            .optional()
            .map_err(|e| self.fail(WHAT, e))?
            .transpose()
            .map_err(|e| self.fail(WHAT, e))?;
        Ok(found.filter(|s| s.is_live(now)))
    }

    /// Counts a request on the session: its idle time starts again.
    pub(super) fn web_session_touch(
        &self,
        inner: &mut Inner,
        id_hash: &str,
        now: SystemTime,
    ) -> Result<()> {
        const WHAT: &str = "cannot count a request on the web session";
        let at = to_millis(now).map_err(|e| self.fail(WHAT, e))?;
        inner
            .conn
            .execute(
                "UPDATE web_sessions SET last_seen_at = ?2 WHERE id_hash = ?1",
                params![id_hash, at],
            )
            .map(|_| ())
            .map_err(|e| self.fail(WHAT, e))
    }

    pub(super) fn web_session_end(&self, inner: &mut Inner, id_hash: &str) -> Result<bool> {
        // The session and those handed off from it to route hosts.
        let mut run = || -> rusqlite::Result<bool> {
            let tx = inner.conn.transaction()?;
            let own = tx.execute(
                "DELETE FROM web_sessions WHERE id_hash = ?1",
                params![id_hash],
            )?;
            tx.execute(
                "DELETE FROM web_sessions WHERE parent_hash = ?1",
                params![id_hash],
            )?;
            tx.execute(
                "DELETE FROM web_handoffs WHERE session_hash = ?1",
                params![id_hash],
            )?;
            tx.commit()?;
            Ok(own > 0)
        };
        run().map_err(|e| self.fail("cannot end the web session", e))
    }

    pub(super) fn web_sessions_live(
        &self,
        conn: &rusqlite::Connection,
        id_hashes: &[String],
        now: SystemTime,
    ) -> Result<Vec<String>> {
        const WHAT: &str = "cannot read web sessions";
        let at = to_millis(now).map_err(|e| self.fail(WHAT, e))?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT 1 FROM web_sessions WHERE id_hash = ?1
                 AND expires_at > ?2 AND last_seen_at + idle_timeout_ms > ?2",
            )
            .map_err(|e| self.fail(WHAT, e))?;
        let mut live = Vec::new();
        for id in id_hashes {
            if stmt
                .exists(params![id, at])
                .map_err(|e| self.fail(WHAT, e))?
            {
                live.push(id.clone());
            }
        }
        Ok(live)
    }

    pub(super) fn web_handoff_create(&self, inner: &mut Inner, h: &WebHandoff) -> Result<()> {
        const WHAT: &str = "cannot store the hand-off";
        let expires = to_millis(h.expires_at).map_err(|e| self.fail(WHAT, e))?;
        inner
            .conn
            .execute(
                "INSERT INTO web_handoffs
                 (code_hash, session_hash, host, nonce_hash, return_to, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    h.code_hash,
                    h.session_hash,
                    h.host,
                    h.nonce_hash,
                    h.return_to,
                    expires
                ],
            )
            .map(|_| ())
            .map_err(|e| self.fail(WHAT, e))
    }

    pub(super) fn web_handoff_redeem(
        &self,
        inner: &mut Inner,
        code_hash: &str,
        host: &str,
        nonce_hash: &str,
        child: &HandoffSession,
        now: SystemTime,
    ) -> Result<Option<(WebSession, String)>> {
        const WHAT: &str = "cannot redeem the hand-off";
        let at = to_millis(now).map_err(|e| self.fail(WHAT, e))?;
        let tx = inner.conn.transaction().map_err(|e| self.fail(WHAT, e))?;
        // Taken whatever comes next: a code is tried once.
        let taken: Option<(String, String, String, String, i64)> = tx
            .query_row(
                "DELETE FROM web_handoffs WHERE code_hash = ?1
                 RETURNING session_hash, host, nonce_hash, return_to, expires_at",
                params![code_hash],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(|e| self.fail(WHAT, e))?;
        let parent = match taken {
            Some((parent, for_host, nonce, return_to, expires))
                if expires > at && for_host == host && nonce == nonce_hash =>
            {
                tx.query_row(
                    &format!("SELECT {SESSION_COLUMNS} FROM web_sessions WHERE id_hash = ?1"),
                    params![parent],
                    read_session,
                )
                .optional()
                .map_err(|e| self.fail(WHAT, e))?
                .transpose()
                .map_err(|e| self.fail(WHAT, e))?
                .filter(|p| p.is_live(now))
                .map(|p| (p, return_to))
            }
            _ => None,
        };
        let Some((parent, return_to)) = parent else {
            tx.commit().map_err(|e| self.fail(WHAT, e))?;
            return Ok(None);
        };
        let session = WebSession {
            id_hash: child.id_hash.clone(),
            csrf: child.csrf.clone(),
            client_addr: child.client_addr.clone(),
            created_at: now,
            last_seen_at: now,
            ..parent.clone()
        };
        insert_session(&tx, &session, Some(&parent.id_hash)).map_err(|e| self.fail(WHAT, e))?;
        tx.commit().map_err(|e| self.fail(WHAT, e))?;
        Ok(Some((session, return_to)))
    }

    pub(super) fn web_login_start(&self, inner: &mut Inner, l: &WebLogin) -> Result<()> {
        const WHAT: &str = "cannot store the sign-in";
        let expires = to_millis(l.expires_at).map_err(|e| self.fail(WHAT, e))?;
        inner
            .conn
            .execute(
                "INSERT OR REPLACE INTO web_logins (state_hash, pending_json, return_to, expires_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![l.state_hash, l.pending_json, l.return_to, expires],
            )
            .map(|_| ())
            .map_err(|e| self.fail(WHAT, e))
    }

    pub(super) fn web_login_take(
        &self,
        inner: &mut Inner,
        state_hash: &str,
        now: SystemTime,
    ) -> Result<Option<WebLogin>> {
        const WHAT: &str = "cannot read the sign-in";
        let at = to_millis(now).map_err(|e| self.fail(WHAT, e))?;
        let row: Option<(String, String, i64)> = inner
            .conn
            .query_row(
                "DELETE FROM web_logins WHERE state_hash = ?1
                 RETURNING pending_json, return_to, expires_at",
                params![state_hash],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.fail(WHAT, e))?;
        match row {
            Some((pending_json, return_to, expires)) if expires > at => Ok(Some(WebLogin {
                state_hash: state_hash.to_owned(),
                pending_json,
                return_to,
                expires_at: from_millis(expires).map_err(|e| self.fail(WHAT, e))?,
            })),
            _ => Ok(None),
        }
    }

    pub(super) fn web_purge(&self, inner: &mut Inner, now: SystemTime) -> Result<usize> {
        const WHAT: &str = "cannot purge web sessions";
        let at = to_millis(now).map_err(|e| self.fail(WHAT, e))?;
        let run = || -> rusqlite::Result<usize> {
            let sessions = inner.conn.execute(
                "DELETE FROM web_sessions
                 WHERE expires_at <= ?1 OR last_seen_at + idle_timeout_ms <= ?1",
                params![at],
            )?;
            let logins = inner
                .conn
                .execute("DELETE FROM web_logins WHERE expires_at <= ?1", params![at])?;
            let handoffs = inner.conn.execute(
                "DELETE FROM web_handoffs WHERE expires_at <= ?1",
                params![at],
            )?;
            let links = inner.conn.execute(
                "DELETE FROM ssh_links WHERE expires_at + ?2 <= ?1",
                params![at, super::links::KEEP_MS],
            )?;
            Ok(sessions + logins + handoffs + links)
        };
        run().map_err(|e| self.fail(WHAT, e))
    }
}

/// Ends the web sessions of `user` (email case-insensitively, or `sub`),
/// or of everyone with `None`, inside a revocation's transaction.
pub(super) fn end_web_sessions_in(
    tx: &rusqlite::Transaction<'_>,
    user: Option<&str>,
) -> rusqlite::Result<u64> {
    let Some(user) = user else {
        return tx.execute("DELETE FROM web_sessions", []).map(|n| n as u64);
    };
    let victims: Vec<String> = {
        let mut stmt = tx.prepare("SELECT id_hash, sub, email FROM web_sessions")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?;
        rows.filter_map(|r| r.ok())
            .filter(|(_, sub, email)| super::bindings::is_user(user, sub, email.as_deref()))
            .map(|(id, _, _)| id)
            .collect()
    };
    for id in &victims {
        tx.execute("DELETE FROM web_sessions WHERE id_hash = ?1", params![id])?;
    }
    Ok(victims.len() as u64)
}
