//! SSH sign-in links on SQLite.

use std::time::SystemTime;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Inner, Shared, from_millis, to_millis};
use crate::{LinkApproval, LinkApproved, LinkRow, LinkState, Result, SshLink};

/// How long a link is kept after it expires: a late visit still gets a
/// page that says what happened to it, not "unknown".
pub(super) const KEEP_MS: i64 = 3_600_000;

/// The approval as stored (`approval_json`).
#[derive(Serialize, Deserialize)]
struct StoredApproval {
    sub: String,
    email: Option<String>,
    groups: Vec<String>,
    claims_json: String,
    issuer: String,
    web_session: String,
    approved_at_ms: i64,
}

const COLUMNS: &str = "id_hash, phrase, fingerprint, client_addr, user_name, gateway_id, \
     created_at, expires_at, state, approval_json, session_id";

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<LinkRow, String>> {
    let (id_hash, phrase, fingerprint, client_addr, user_name, gateway_id) = (
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    );
    let (created, expires): (i64, i64) = (r.get(6)?, r.get(7)?);
    let (state, approval): (String, Option<String>) = (r.get(8)?, r.get(9)?);
    let session_id: String = r.get(10)?;
    Ok((|| {
        let approval = approval
            .map(|json| {
                let a: StoredApproval = serde_json::from_str(&json).map_err(|e| e.to_string())?;
                Ok::<_, String>(LinkApproval {
                    sub: a.sub,
                    email: a.email,
                    groups: a.groups,
                    claims_json: a.claims_json,
                    issuer: a.issuer,
                    web_session: a.web_session,
                    approved_at: from_millis(a.approved_at_ms)?,
                })
            })
            .transpose()?;
        Ok(LinkRow {
            link: SshLink {
                id_hash,
                phrase,
                fingerprint,
                client_addr,
                user_name,
                gateway_id,
                session_id,
                created_at: from_millis(created)?,
                expires_at: from_millis(expires)?,
            },
            state: LinkState::parse(&state).ok_or_else(|| format!("unknown link state {state}"))?,
            approval,
        })
    })())
}

impl Shared {
    pub(super) fn ssh_link_create(&self, inner: &mut Inner, l: &SshLink) -> Result<()> {
        const WHAT: &str = "cannot store the sign-in link";
        let created = to_millis(l.created_at).map_err(|e| self.fail(WHAT, e))?;
        let expires = to_millis(l.expires_at).map_err(|e| self.fail(WHAT, e))?;
        inner
            .conn
            .execute(
                &format!("INSERT INTO ssh_links ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, ?10)"),
                params![
                    l.id_hash,
                    l.phrase,
                    l.fingerprint,
                    l.client_addr,
                    l.user_name,
                    l.gateway_id,
                    created,
                    expires,
                    LinkState::Pending.as_str(),
                    l.session_id
                ],
            )
            .map(|_| ())
            .map_err(|e| self.fail(WHAT, e))
    }

    pub(super) fn ssh_link(&self, inner: &mut Inner, id_hash: &str) -> Result<Option<LinkRow>> {
        const WHAT: &str = "cannot read the sign-in link";
        inner
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM ssh_links WHERE id_hash = ?1"),
                params![id_hash],
                read_row,
            )
            .optional()
            .map_err(|e| self.fail(WHAT, e))?
            .transpose()
            .map_err(|e| self.fail(WHAT, e))
    }

    pub(super) fn ssh_link_approve(
        &self,
        inner: &mut Inner,
        id_hash: &str,
        a: &LinkApproval,
        now: SystemTime,
    ) -> Result<LinkApproved> {
        const WHAT: &str = "cannot approve the sign-in link";
        let at = to_millis(now).map_err(|e| self.fail(WHAT, e))?;
        let stored = StoredApproval {
            sub: a.sub.clone(),
            email: a.email.clone(),
            groups: a.groups.clone(),
            claims_json: a.claims_json.clone(),
            issuer: a.issuer.clone(),
            web_session: a.web_session.clone(),
            approved_at_ms: to_millis(a.approved_at).map_err(|e| self.fail(WHAT, e))?,
        };
        let json = serde_json::to_string(&stored).map_err(|e| self.fail(WHAT, e))?;
        let tx = inner.conn.transaction().map_err(|e| self.fail(WHAT, e))?;
        let found: Option<(String, i64)> = tx
            .query_row(
                "SELECT state, expires_at FROM ssh_links WHERE id_hash = ?1",
                params![id_hash],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.fail(WHAT, e))?;
        let outcome = match found {
            None => LinkApproved::Unknown,
            Some((state, _)) if state != LinkState::Pending.as_str() => {
                LinkApproved::Already(LinkState::parse(&state).unwrap_or(LinkState::Closed))
            }
            Some((_, expires)) if expires <= at => LinkApproved::Expired,
            Some(_) => {
                tx.execute(
                    "UPDATE ssh_links SET state = ?2, approval_json = ?3 WHERE id_hash = ?1",
                    params![id_hash, LinkState::Approved.as_str(), json],
                )
                .map_err(|e| self.fail(WHAT, e))?;
                LinkApproved::Approved
            }
        };
        tx.commit().map_err(|e| self.fail(WHAT, e))?;
        Ok(outcome)
    }

    pub(super) fn ssh_link_redeem(
        &self,
        inner: &mut Inner,
        id_hash: &str,
    ) -> Result<Option<LinkApproval>> {
        const WHAT: &str = "cannot redeem the sign-in link";
        let tx = inner.conn.transaction().map_err(|e| self.fail(WHAT, e))?;
        let row = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM ssh_links WHERE id_hash = ?1"),
                params![id_hash],
                read_row,
            )
            .optional()
            .map_err(|e| self.fail(WHAT, e))?
            .transpose()
            .map_err(|e| self.fail(WHAT, e))?;
        let approval = match row {
            Some(LinkRow {
                state: LinkState::Approved,
                approval: Some(approval),
                ..
            }) => {
                tx.execute(
                    "UPDATE ssh_links SET state = ?2 WHERE id_hash = ?1",
                    params![id_hash, LinkState::Used.as_str()],
                )
                .map_err(|e| self.fail(WHAT, e))?;
                Some(approval)
            }
            _ => None,
        };
        tx.commit().map_err(|e| self.fail(WHAT, e))?;
        Ok(approval)
    }

    pub(super) fn ssh_link_close(&self, inner: &mut Inner, id_hash: &str) -> Result<()> {
        inner
            .conn
            .execute(
                "UPDATE ssh_links SET state = ?2 WHERE id_hash = ?1 AND state IN (?3, ?4)",
                params![
                    id_hash,
                    LinkState::Closed.as_str(),
                    LinkState::Pending.as_str(),
                    LinkState::Approved.as_str()
                ],
            )
            .map(|_| ())
            .map_err(|e| self.fail("cannot close the sign-in link", e))
    }
}
