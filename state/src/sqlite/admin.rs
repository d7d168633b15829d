//! Live sessions and kill requests on SQLite.

use std::time::SystemTime;

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Inner, Shared, int, to_millis, uint};
use crate::{KillOutcome, KillQueued, KillRequest, LiveSession, Result};

impl Shared {
    pub(super) fn gateway_started(
        &self,
        inner: &mut Inner,
        gateway_id: &str,
        now: SystemTime,
    ) -> Result<()> {
        const WHAT: &str = "cannot register the gateway";
        let at = to_millis(now).map_err(|e| self.fail(WHAT, e))?;
        let mut run = || -> rusqlite::Result<()> {
            let tx = inner
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "UPDATE session_kills SET handled_at = ?2, outcome = 'not_found'
                 WHERE gateway_id = ?1 AND handled_at IS NULL",
                params![gateway_id, at],
            )?;
            tx.execute(
                "DELETE FROM live_sessions WHERE gateway_id = ?1",
                params![gateway_id],
            )?;
            tx.commit()
        };
        run().map_err(|e| self.fail(WHAT, e))
    }

    pub(super) fn session_opened(&self, inner: &mut Inner, s: &LiveSession) -> Result<()> {
        inner
            .conn
            .execute(
                "INSERT OR REPLACE INTO live_sessions
                 (session_id, gateway_id, identity, route, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    s.session_id,
                    s.gateway_id,
                    s.identity,
                    s.route,
                    int(s.started_at_ms)
                ],
            )
            .map(|_| ())
            .map_err(|e| self.fail("cannot record the live session", e))
    }

    pub(super) fn session_closed(&self, inner: &mut Inner, session_id: &str) -> Result<()> {
        inner
            .conn
            .execute(
                "DELETE FROM live_sessions WHERE session_id = ?1",
                params![session_id],
            )
            .map(|_| ())
            .map_err(|e| self.fail("cannot record the session's end", e))
    }

    pub(super) fn live_sessions(&self, inner: &mut Inner) -> Result<Vec<LiveSession>> {
        let run = || -> rusqlite::Result<Vec<LiveSession>> {
            let mut stmt = inner.conn.prepare_cached(
                "SELECT session_id, gateway_id, identity, route, started_at FROM live_sessions
                 ORDER BY started_at, session_id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(LiveSession {
                    session_id: r.get(0)?,
                    gateway_id: r.get(1)?,
                    identity: r.get(2)?,
                    route: r.get(3)?,
                    started_at_ms: uint(r.get(4)?),
                })
            })?;
            rows.collect()
        };
        run().map_err(|e| self.fail("cannot list live sessions", e))
    }

    pub(super) fn request_kill(
        &self,
        inner: &mut Inner,
        session_id: &str,
        reason: &str,
        now: SystemTime,
    ) -> Result<KillQueued> {
        const WHAT: &str = "cannot request kill";
        let at = to_millis(now).map_err(|e| self.fail(WHAT, e))?;
        let mut run = || -> rusqlite::Result<KillQueued> {
            let tx = inner
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let holder: Option<String> = tx
                .query_row(
                    "SELECT gateway_id FROM live_sessions WHERE session_id = ?1",
                    params![session_id],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(gateway_id) = holder else {
                return Ok(KillQueued::NotLive);
            };
            let id = tx.query_row(
                "INSERT INTO session_kills (session_id, reason, requested_at, gateway_id)
                 VALUES (?1, ?2, ?3, ?4) RETURNING id",
                params![session_id, reason, at, gateway_id],
                |r| r.get(0),
            )?;
            tx.commit()?;
            Ok(KillQueued::Queued { id, gateway_id })
        };
        run().map_err(|e| self.fail(WHAT, e))
    }

    pub(super) fn kill_requests_for(
        &self,
        inner: &mut Inner,
        gateway_id: &str,
        after: i64,
    ) -> Result<Vec<KillRequest>> {
        let run = || -> rusqlite::Result<Vec<KillRequest>> {
            let mut stmt = inner.conn.prepare_cached(
                "SELECT id, session_id, reason FROM session_kills
                 WHERE gateway_id = ?1 AND id > ?2 AND handled_at IS NULL ORDER BY id",
            )?;
            let rows = stmt.query_map(params![gateway_id, after], |r| {
                Ok(KillRequest {
                    id: r.get(0)?,
                    session_id: r.get(1)?,
                    reason: r.get(2)?,
                })
            })?;
            rows.collect()
        };
        run().map_err(|e| self.fail("cannot read kill requests", e))
    }

    pub(super) fn last_kill_id(&self, inner: &mut Inner) -> Result<i64> {
        inner
            .conn
            .query_row("SELECT COALESCE(MAX(id), 0) FROM session_kills", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.fail("cannot read kill requests", e))
    }

    pub(super) fn kill_handled(
        &self,
        inner: &mut Inner,
        id: i64,
        outcome: KillOutcome,
        now: SystemTime,
    ) -> Result<()> {
        const WHAT: &str = "cannot record kill";
        let at = to_millis(now).map_err(|e| self.fail(WHAT, e))?;
        inner
            .conn
            .execute(
                "UPDATE session_kills SET handled_at = ?2, outcome = ?3
                 WHERE id = ?1 AND handled_at IS NULL",
                params![id, at, outcome.as_str()],
            )
            .map(|_| ())
            .map_err(|e| self.fail(WHAT, e))
    }

    pub(super) fn kill_outcome(&self, inner: &mut Inner, id: i64) -> Result<Option<KillOutcome>> {
        let outcome: Option<String> = inner
            .conn
            .query_row(
                "SELECT outcome FROM session_kills WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.fail("cannot read kill request", e))?
            .flatten();
        Ok(outcome.as_deref().and_then(KillOutcome::parse))
    }
}
