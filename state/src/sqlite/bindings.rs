//! Login bindings and the revocation log on SQLite.

use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Inner, Shared, from_millis, keyfile, to_millis, uint};
use crate::{
    Binding, Error, NewBinding, RenewedIdentity, Result, Revoke, Revoked, RevokedSince, Secret,
    is_fingerprint,
};

/// The columns that make a [`Binding`], in [`RawBinding::read`]'s order.
const BINDING_COLUMNS: &str = "fingerprint, sub, email, groups_json, issuer, \
     created_at, expires_at, last_used_at, revoked_at, claims_json, \
     COALESCE(authenticated_at, created_at)";

impl Shared {
    pub(super) fn bind(
        &self,
        inner: &mut Inner,
        b: &NewBinding,
        now: SystemTime,
    ) -> Result<Binding> {
        const WHAT: &str = "cannot bind";
        if !is_fingerprint(&b.fingerprint) {
            return Err(Error::Invalid(format!(
                "{:?} is not a SHA256 key fingerprint (SHA256:... as ssh-keygen -l prints it)",
                b.fingerprint
            )));
        }
        let created = to_millis(now).map_err(|e| self.fail(WHAT, e))?;
        let ttl = i64::try_from(b.ttl.as_millis()).unwrap_or(i64::MAX);
        let expires = created.saturating_add(ttl);
        let groups = serde_json::to_string(&b.groups).map_err(|e| self.fail(WHAT, e))?;
        let sealed = match &b.refresh_token {
            Some(token) => Some(self.seal(inner, &b.fingerprint, token)?),
            None => None,
        };
        let raw = inner
            .conn
            .query_row(
                &format!(
                    "INSERT INTO bindings (fingerprint, sub, email, groups_json, issuer,
                         refresh_token, created_at, expires_at, last_used_at, revoked_at,
                         claims_json, authenticated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, NULL, ?9, ?7)
                     ON CONFLICT (fingerprint) DO UPDATE SET
                         sub = excluded.sub, email = excluded.email,
                         groups_json = excluded.groups_json, issuer = excluded.issuer,
                         refresh_token = excluded.refresh_token,
                         created_at = excluded.created_at, expires_at = excluded.expires_at,
                         last_used_at = NULL, revoked_at = NULL,
                         claims_json = excluded.claims_json,
                         authenticated_at = excluded.authenticated_at
                     RETURNING {BINDING_COLUMNS}"
                ),
                params![
                    b.fingerprint,
                    b.sub,
                    b.email,
                    groups,
                    b.issuer,
                    sealed,
                    created,
                    expires,
                    b.claims_json
                ],
                RawBinding::read,
            )
            .map_err(|e| self.fail(WHAT, e))?;
        raw.into_binding().map_err(|e| self.fail(WHAT, e))
    }

    pub(super) fn live_binding(
        &self,
        inner: &mut Inner,
        fingerprint: &str,
        now: SystemTime,
    ) -> Result<Option<Binding>> {
        const WHAT: &str = "cannot look up binding";
        let at = to_millis(now).map_err(|e| self.fail(WHAT, e))?;
        let raw = inner
            .conn
            .query_row(
                &format!(
                    "UPDATE bindings SET last_used_at = MAX(COALESCE(last_used_at, 0), ?2)
                     WHERE fingerprint = ?1 AND revoked_at IS NULL AND expires_at > ?2
                     RETURNING {BINDING_COLUMNS}"
                ),
                params![fingerprint, at],
                RawBinding::read,
            )
            .optional()
            .map_err(|e| self.fail(WHAT, e))?;
        raw.map(RawBinding::into_binding)
            .transpose()
            .map_err(|e| self.fail(WHAT, e))
    }

    pub(super) fn refresh_token(
        &self,
        inner: &mut Inner,
        fingerprint: &str,
    ) -> Result<Option<Secret>> {
        const WHAT: &str = "cannot read refresh token";
        let sealed: Option<Vec<u8>> = inner
            .conn
            .query_row(
                "SELECT refresh_token FROM bindings WHERE fingerprint = ?1",
                params![fingerprint],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.fail(WHAT, e))?
            .flatten();
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        if inner.key.is_none() {
            // Another process may have created it since we opened.
            inner.key = keyfile::read(&self.key_path)?;
        }
        let Some(key) = inner.key.as_ref() else {
            return Err(Error::KeyFile {
                path: self.key_path.clone(),
                reason: "missing, so stored refresh tokens cannot be decrypted".to_owned(),
            });
        };
        keyfile::open(key, fingerprint, &sealed)
            .map(|t| Some(Secret::new(t)))
            .ok_or_else(|| {
                self.fail(
                    WHAT,
                    format!(
                        "the refresh token of {fingerprint} does not decrypt \
                         (altered, moved from another row, or sealed under another key)"
                    ),
                )
            })
    }

    pub(super) fn list_bindings(&self, inner: &mut Inner) -> Result<Vec<Binding>> {
        const WHAT: &str = "cannot list bindings";
        let raws = list_in(&inner.conn).map_err(|e| self.fail(WHAT, e))?;
        raws.into_iter()
            .map(RawBinding::into_binding)
            .collect::<Result<_, _>>()
            .map_err(|e| self.fail(WHAT, e))
    }

    pub(super) fn revoke(
        &self,
        inner: &mut Inner,
        which: &Revoke,
        now: SystemTime,
    ) -> Result<Revoked> {
        let at = to_millis(now).map_err(|e| self.fail("cannot revoke", e))?;
        revoke_in(&mut inner.conn, which, at).map_err(|e| self.fail("cannot revoke", e))
    }

    pub(super) fn renew(
        &self,
        inner: &mut Inner,
        fingerprint: &str,
        identity: Option<&RenewedIdentity>,
        refresh_token: Option<&Secret>,
        now: SystemTime,
    ) -> Result<Option<Binding>> {
        const WHAT: &str = "cannot renew";
        let at = to_millis(now).map_err(|e| self.fail(WHAT, e))?;
        let sealed = match refresh_token {
            Some(token) => Some(self.seal(inner, fingerprint, token)?),
            None => None,
        };
        let (email, groups, claims) = match identity {
            Some(i) => (
                Some(i.email.as_deref()),
                Some(serde_json::to_string(&i.groups).map_err(|e| self.fail(WHAT, e))?),
                Some(i.claims_json.as_str()),
            ),
            None => (None, None, None),
        };
        let raw = inner
            .conn
            .query_row(
                &format!(
                    "UPDATE bindings SET authenticated_at = ?2,
                         email = CASE WHEN ?3 THEN ?4 ELSE email END,
                         groups_json = COALESCE(?5, groups_json),
                         claims_json = COALESCE(?6, claims_json),
                         refresh_token = COALESCE(?7, refresh_token)
                     WHERE fingerprint = ?1 AND revoked_at IS NULL
                     RETURNING {BINDING_COLUMNS}"
                ),
                params![
                    fingerprint,
                    at,
                    email.is_some(),
                    email.flatten(),
                    groups,
                    claims,
                    sealed
                ],
                RawBinding::read,
            )
            .optional()
            .map_err(|e| self.fail(WHAT, e))?;
        raw.map(RawBinding::into_binding)
            .transpose()
            .map_err(|e| self.fail(WHAT, e))
    }

    pub(super) fn purge_expired(&self, inner: &mut Inner, older_than: SystemTime) -> Result<usize> {
        let at = to_millis(older_than).map_err(|e| self.fail("cannot purge", e))?;
        purge_in(&mut inner.conn, at).map_err(|e| self.fail("cannot purge", e))
    }

    pub(super) fn revision(&self, inner: &mut Inner) -> Result<u64> {
        read_revision(&inner.conn).map_err(|e| self.fail("cannot read revision", e))
    }

    pub(super) fn revoked_since(&self, inner: &mut Inner, revision: u64) -> Result<RevokedSince> {
        let after = i64::try_from(revision).unwrap_or(i64::MAX);
        revoked_since_in(&mut inner.conn, after)
            .map_err(|e| self.fail("cannot read revocations", e))
    }

    /// `nonce || ciphertext || tag` of `token`, creating the key file on
    /// first use.
    fn seal(&self, inner: &mut Inner, fingerprint: &str, token: &Secret) -> Result<Vec<u8>> {
        let key = match &mut inner.key {
            Some(key) => key,
            slot @ None => slot.insert(keyfile::create(&self.key_path, &self.rng)?),
        };
        keyfile::seal(key, &self.rng, fingerprint, token.expose())
            .ok_or_else(|| self.fail("cannot seal refresh token", "encryption failed"))
    }
}

/// One `bindings` row as SQLite returns it.
struct RawBinding {
    fingerprint: String,
    sub: String,
    email: Option<String>,
    groups_json: String,
    issuer: String,
    created_at: i64,
    expires_at: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
    claims_json: String,
    authenticated_at: i64,
}

impl RawBinding {
    /// Reads the columns of [`BINDING_COLUMNS`].
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawBinding {
            fingerprint: r.get(0)?,
            sub: r.get(1)?,
            email: r.get(2)?,
            groups_json: r.get(3)?,
            issuer: r.get(4)?,
            created_at: r.get(5)?,
            expires_at: r.get(6)?,
            last_used_at: r.get(7)?,
            revoked_at: r.get(8)?,
            claims_json: r.get(9)?,
            authenticated_at: r.get(10)?,
        })
    }

    fn into_binding(self) -> Result<Binding, String> {
        let groups = serde_json::from_str(&self.groups_json)
            .map_err(|e| format!("groups of {} are not a JSON list: {e}", self.fingerprint))?;
        Ok(Binding {
            groups,
            created_at: from_millis(self.created_at)?,
            expires_at: from_millis(self.expires_at)?,
            last_used_at: self.last_used_at.map(from_millis).transpose()?,
            revoked_at: self.revoked_at.map(from_millis).transpose()?,
            authenticated_at: from_millis(self.authenticated_at)?,
            claims_json: self.claims_json,
            fingerprint: self.fingerprint,
            sub: self.sub,
            email: self.email,
            issuer: self.issuer,
        })
    }
}

fn list_in(conn: &Connection) -> rusqlite::Result<Vec<RawBinding>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {BINDING_COLUMNS} FROM bindings ORDER BY created_at DESC, fingerprint"
    ))?;
    let rows = stmt.query_map([], RawBinding::read)?;
    rows.collect()
}

fn purge_in(conn: &mut Connection, at: i64) -> rusqlite::Result<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let n = tx.execute(
        "DELETE FROM bindings WHERE expires_at <= ?1 OR revoked_at <= ?1",
        params![at],
    )?;
    tx.execute(
        "DELETE FROM revocations WHERE revoked_at <= ?1",
        params![at],
    )?;
    tx.commit()?;
    Ok(n)
}

fn revoked_since_in(conn: &mut Connection, after: i64) -> rusqlite::Result<RevokedSince> {
    // A read transaction: both queries see the same snapshot.
    let tx = conn.transaction()?;
    let revision = read_revision(&tx)?;
    let fingerprints = {
        let mut stmt = tx.prepare(
            "SELECT DISTINCT fingerprint FROM revocations
             WHERE revision > ?1 ORDER BY fingerprint",
        )?;
        let rows = stmt.query_map(params![after], |r| r.get::<_, String>(0))?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    tx.commit()?;
    Ok(RevokedSince {
        revision,
        fingerprints,
    })
}

fn read_revision(conn: &Connection) -> rusqlite::Result<u64> {
    let v: i64 = conn.query_row("SELECT value FROM store_revision WHERE id = 0", [], |r| {
        r.get(0)
    })?;
    Ok(uint(v))
}

/// The transaction behind a revocation.
/// Whether `user` (as `logins revoke --user` takes it: an email, compared
/// case-insensitively and Unicode-aware, which SQLite's NOCASE is not, or
/// the exact `sub`) names the identity `sub` / `email`.
pub(super) fn is_user(user: &str, sub: &str, email: Option<&str>) -> bool {
    let user = user.trim();
    sub == user || email.is_some_and(|e| e.to_lowercase() == user.to_lowercase())
}

fn revoke_in(conn: &mut Connection, which: &Revoke, at: i64) -> rusqlite::Result<Revoked> {
    // IMMEDIATE: we read, then write. A deferred transaction would fail at
    // once with "database is locked" if another connection wrote between.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let candidates: Vec<(String, String, Option<String>)> = {
        let mut stmt = tx.prepare(
            "SELECT fingerprint, sub, email FROM bindings
             WHERE revoked_at IS NULL AND (?1 IS NULL OR fingerprint = ?1)",
        )?;
        let key = match which {
            Revoke::Key(fp) => Some(fp.as_str()),
            Revoke::User(_) | Revoke::All => None,
        };
        let rows = stmt.query_map(params![key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let victims: Vec<(String, String)> = candidates
        .into_iter()
        .filter(|(_, sub, email)| match which {
            Revoke::User(user) => is_user(user, sub, email.as_deref()),
            Revoke::Key(_) | Revoke::All => true,
        })
        .map(|(fp, sub, email)| (fp, email.unwrap_or(sub)))
        .collect();
    // A signed-in browser goes with its user's bindings, whether or not
    // the user has any.
    let web_sessions = match which {
        Revoke::User(user) => super::web::end_web_sessions_in(&tx, Some(user))?,
        Revoke::All => super::web::end_web_sessions_in(&tx, None)?,
        Revoke::Key(_) => 0,
    };
    if victims.is_empty() {
        let revision = read_revision(&tx)?;
        tx.commit()?;
        return Ok(Revoked {
            revision,
            bindings: victims,
            web_sessions,
        });
    }
    let revision: i64 = tx.query_row(
        "UPDATE store_revision SET value = value + 1 WHERE id = 0 RETURNING value",
        [],
        |r| r.get(0),
    )?;
    for (fp, _) in &victims {
        tx.execute(
            "UPDATE bindings SET revoked_at = ?2, refresh_token = NULL WHERE fingerprint = ?1",
            params![fp, at],
        )?;
        tx.execute(
            "INSERT INTO revocations (revision, fingerprint, revoked_at) VALUES (?1, ?2, ?3)",
            params![revision, fp, at],
        )?;
    }
    tx.commit()?;
    Ok(Revoked {
        revision: uint(revision),
        bindings: victims,
        web_sessions,
    })
}
