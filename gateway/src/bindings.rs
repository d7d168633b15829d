//! Login bindings: a client key bound to an identity that signed in at the
//! identity provider.
//!
//! After a user completes the device-code sign-in, the gateway binds the
//! identity to the SHA-256 fingerprint of the key the client offered, so the
//! next connection with that key skips the browser until the binding
//! expires or an administrator revokes it (`gatehouse logins revoke`).
//!
//! Bindings live in SQLite at `<state_dir>/gatehouse.db` (WAL, mode 0600).
//! The refresh token the IdP issued is sealed with ChaCha20-Poly1305 under a
//! 32-byte key in `<state_dir>/bindings.key` (mode 0600, created on first
//! use, never overwritten), with the fingerprint as associated data so a
//! sealed token only opens in the row it was written to. Revocation keeps
//! the row for audit but wipes the token.
//!
//! The API is synchronous. The gateway calls it through
//! `tokio::task::spawn_blocking`; a [`BindingStore`] is `Send + Sync`.
//!
//! **Invariant:** refresh tokens and the key are never logged and never
//! appear in a `Debug` output or an error message.

use std::fmt;
use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::Error;

/// The database file's name inside the state directory. Later issues keep
/// sessions and audit in the same file, hence the general name.
pub const DB_FILE: &str = "gatehouse.db";

/// The refresh-token key file's name inside the state directory.
pub const KEY_FILE: &str = "bindings.key";

/// How long a sign-in lasts when the configuration does not say
/// (`login_ttl`): one working day, so a user opens the browser about once
/// a day.
pub const DEFAULT_LOGIN_TTL: Duration = Duration::from_secs(12 * 3600);

/// How long a statement waits for another connection (the gateway, or a
/// `gatehouse logins` command run beside it) to release the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The length of the refresh-token key.
const KEY_LEN: usize = 32;

/// Prefixed to the fingerprint in the associated data, so a ciphertext made
/// for another purpose under the same key can never pass for a refresh
/// token.
const AAD_CONTEXT: &[u8] = b"gatehouse refresh token v1\0";

/// The columns that make a [`Binding`], in [`RawBinding::read`]'s order.
const BINDING_COLUMNS: &str = "fingerprint, sub, email, groups_json, issuer, \
     created_at, expires_at, last_used_at, revoked_at, claims_json, \
     COALESCE(authenticated_at, created_at)";

/// Schema migrations. Entry `i` takes the schema from version `i` to
/// `i + 1` (`PRAGMA user_version`). Append new entries (sessions, audit);
/// never edit one that has shipped.
///
/// All times are Unix milliseconds, so bindings made within one second
/// still sort by age.
const MIGRATIONS: &[&str] = &[
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
    // confirmed with the IdP (sign-in or refresh), and requests from
    // `gatehouse sessions kill` to the running gateway.
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
];

/// What [`BindingStore::bind`] stores.
#[derive(Clone)]
pub struct NewBinding<'a> {
    /// The client key's fingerprint, `SHA256:...` as `ssh-keygen -l` prints it.
    pub fingerprint: &'a str,
    /// The ID token's `sub`: the identity as the IdP knows it.
    pub sub: &'a str,
    /// The ID token's `email`, when it had one.
    pub email: Option<&'a str>,
    /// The groups the IdP reported, for the policy.
    pub groups: &'a [String],
    /// The issuer that vouched for the identity.
    pub issuer: &'a str,
    /// The refresh token, if the IdP issued one; stored sealed.
    pub refresh_token: Option<&'a str>,
    /// Every claim of the ID token, as a JSON object, for the policy.
    pub claims_json: &'a str,
    /// How long the binding authenticates the key ([`DEFAULT_LOGIN_TTL`]
    /// unless configured).
    pub ttl: Duration,
}

impl fmt::Debug for NewBinding<'_> {
    // By hand, so the refresh token can never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewBinding")
            .field("fingerprint", &self.fingerprint)
            .field("sub", &self.sub)
            .field("email", &self.email)
            .field("groups", &self.groups)
            .field("issuer", &self.issuer)
            .field("refresh_token", &self.refresh_token.map(|_| "<redacted>"))
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// A stored binding as the gateway and `gatehouse logins list` see it.
/// The refresh token is deliberately absent: only
/// [`BindingStore::refresh_token`] hands it out, so a binding can be
/// printed or logged safely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The client key's fingerprint (`SHA256:...`).
    pub fingerprint: String,
    /// The identity's `sub` at the IdP.
    pub sub: String,
    /// The identity's email, when the IdP gave one.
    pub email: Option<String>,
    /// The identity's groups at sign-in.
    pub groups: Vec<String>,
    /// The issuer that vouched for the identity.
    pub issuer: String,
    /// When the user signed in (to the millisecond).
    pub created_at: SystemTime,
    /// When the binding stops authenticating the key.
    pub expires_at: SystemTime,
    /// When it last authenticated a connection, if ever.
    pub last_used_at: Option<SystemTime>,
    /// When it was revoked; a revoked binding never authenticates.
    pub revoked_at: Option<SystemTime>,
    /// Every claim of the ID token, as a JSON object.
    pub claims_json: String,
    /// When the identity was last confirmed with the IdP: the sign-in, or
    /// the latest refresh. A route's `reauth_every` counts from here.
    pub authenticated_at: SystemTime,
}

/// Whether a binding authenticates its key at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingState {
    /// Neither expired nor revoked.
    Live,
    /// Past `expires_at`; the user has to sign in again.
    Expired,
    /// Revoked by an administrator (takes precedence over expiry).
    Revoked,
}

impl BindingState {
    /// The word `gatehouse logins list` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            BindingState::Live => "live",
            BindingState::Expired => "expired",
            BindingState::Revoked => "revoked",
        }
    }
}

impl Binding {
    /// Who signed in, as a person would say it: the email, or the `sub`
    /// when the IdP gave no email.
    pub fn who(&self) -> &str {
        self.email.as_deref().unwrap_or(&self.sub)
    }

    /// The binding's state at `now`.
    pub fn state(&self, now: SystemTime) -> BindingState {
        if self.revoked_at.is_some() {
            BindingState::Revoked
        } else if now >= self.expires_at {
            BindingState::Expired
        } else {
            BindingState::Live
        }
    }

    /// One JSON object on one line, as `gatehouse logins list --json`
    /// prints it. Here rather than in the binary so it is tested with the
    /// store and the binary needs no JSON dependency. Times are RFC 3339
    /// UTC; `state` is [`Binding::state`] at `now`.
    pub fn to_json_line(&self, now: SystemTime) -> String {
        serde_json::json!({
            "fingerprint": self.fingerprint,
            "sub": self.sub,
            "email": self.email,
            "groups": self.groups,
            "issuer": self.issuer,
            "state": self.state(now).as_str(),
            "created_at": rfc3339(self.created_at),
            "expires_at": rfc3339(self.expires_at),
            "last_used_at": self.last_used_at.map(rfc3339),
            "revoked_at": self.revoked_at.map(rfc3339),
        })
        .to_string()
    }
}

/// RFC 3339 in UTC. humantime panics in `to_string` outside 1970..=9999,
/// so the time is clamped into that range first.
fn rfc3339(t: SystemTime) -> String {
    let last = UNIX_EPOCH
        .checked_add(Duration::from_secs(253_402_300_799)) // 9999-12-31T23:59:59Z
        .unwrap_or(UNIX_EPOCH);
    humantime::format_rfc3339_seconds(t.clamp(UNIX_EPOCH, last)).to_string()
}

/// Which bindings [`BindingStore::revoke`] revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoke<'a> {
    /// The binding of one key fingerprint (`SHA256:...`).
    Key(&'a str),
    /// Every binding of one user: the email, compared case-insensitively,
    /// or the exact `sub` (for identities without an email; `logins list`
    /// shows whichever it has).
    User(&'a str),
    /// Every binding.
    All,
}

impl fmt::Display for Revoke<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Revoke::Key(fp) => write!(f, "key {fp}"),
            Revoke::User(u) => write!(f, "user {u}"),
            Revoke::All => f.write_str("all"),
        }
    }
}

/// The identity a refresh brought back, for [`BindingStore::renew`].
#[derive(Debug, Clone, Copy)]
pub struct RenewedIdentity<'a> {
    /// The email in the new ID token, if any.
    pub email: Option<&'a str>,
    /// The groups in the new ID token.
    pub groups: &'a [String],
    /// Every claim of the new ID token, as a JSON object.
    pub claims_json: &'a str,
}

/// A request from `gatehouse sessions kill` to end a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillRequest {
    /// The request's id.
    pub id: i64,
    /// The session to end.
    pub session_id: String,
    /// Why, as the administrator said it.
    pub reason: String,
}

/// What the gateway did about a [`KillRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillOutcome {
    /// The session was live here and has been ended.
    Ended,
    /// No live session has that id.
    NotFound,
}

impl KillOutcome {
    /// The word stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            KillOutcome::Ended => "ended",
            KillOutcome::NotFound => "not_found",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "ended" => Some(KillOutcome::Ended),
            "not_found" => Some(KillOutcome::NotFound),
            _ => None,
        }
    }
}

/// What [`BindingStore::revoked_since`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSince {
    /// The store's revision now; pass it to the next call.
    pub revision: u64,
    /// Keys revoked after the revision asked about (each once). Sessions
    /// authenticated by them must end.
    pub fingerprints: Vec<String>,
}

/// The login-binding store: one SQLite database and one key file in the
/// state directory.
///
/// It holds one connection behind a mutex rather than opening one per
/// call. Every call is a statement or two on a small table, far cheaper
/// than opening a connection (open, three pragmas, schema check), and the
/// gateway's callers already sit on `spawn_blocking` threads where waiting
/// for a std mutex is fine. One connection also means writers in this
/// process never race each other for SQLite's lock; `busy_timeout` only
/// has to cover other processes, such as `gatehouse logins revoke` run
/// next to a live gateway.
pub struct BindingStore {
    db_path: PathBuf,
    key_path: PathBuf,
    inner: Mutex<Inner>,
    rng: SystemRandom,
}

struct Inner {
    conn: Connection,
    /// The refresh-token key, once read or created. Loaded at `open` when
    /// the file exists (a broken key file fails at startup, not at the
    /// first sign-in); created only when the first token is sealed.
    key: Option<LessSafeKey>,
}

impl fmt::Debug for BindingStore {
    // By hand: the key must never be printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BindingStore")
            .field("db_path", &self.db_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

// The gateway shares one store between spawn_blocking tasks.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<BindingStore>();
};

impl BindingStore {
    /// Where the database of a state directory is. `gatehouse logins`
    /// checks it exists before opening, so an administrator's command never
    /// creates a database the gateway's user cannot write.
    pub fn db_path(state_dir: &Path) -> PathBuf {
        state_dir.join(DB_FILE)
    }

    /// Opens (creating when absent) the store in `state_dir`: the directory
    /// (mode 0700 when created here), the database (mode 0600, WAL,
    /// migrated to the current schema) and, if it exists, the key file.
    pub fn open(state_dir: &Path) -> Result<Self, Error> {
        let db_path = Self::db_path(state_dir);
        let key_path = state_dir.join(KEY_FILE);
        let fail = |reason: String| Error::Store {
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
        ensure_private_file(&db_path).map_err(|e| fail(e.to_string()))?;
        let mut conn = Connection::open(&db_path).map_err(|e| fail(e.to_string()))?;
        configure(&conn).map_err(fail)?;
        migrate(&mut conn).map_err(fail)?;
        let key = read_key(&key_path)?;
        Ok(BindingStore {
            db_path,
            key_path,
            inner: Mutex::new(Inner { conn, key }),
            rng: SystemRandom::new(),
        })
    }

    /// Binds an identity to a key from `now` until `now + ttl`, replacing
    /// any binding the key had (expired, revoked or live): signing in again
    /// is how a user renews. Returns the binding as stored.
    pub fn bind(&self, b: &NewBinding<'_>, now: SystemTime) -> Result<Binding, Error> {
        if !is_fingerprint(b.fingerprint) {
            return Err(self.fail(
                "cannot bind",
                format!(
                    "{:?} is not a SHA256 key fingerprint (SHA256:... as ssh-keygen -l prints it)",
                    b.fingerprint
                ),
            ));
        }
        let created = to_millis(now).map_err(|e| self.fail("cannot bind", e))?;
        let ttl = i64::try_from(b.ttl.as_millis()).unwrap_or(i64::MAX);
        let expires = created.saturating_add(ttl);
        let groups = serde_json::to_string(b.groups).map_err(|e| self.fail("cannot bind", e))?;
        let mut inner = self.lock();
        let sealed = match b.refresh_token {
            Some(token) => Some(self.seal(&mut inner, b.fingerprint, token)?),
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
            .map_err(|e| self.fail("cannot bind", e))?;
        raw.into_binding().map_err(|e| self.fail("cannot bind", e))
    }

    /// The binding that authenticates `fingerprint` at `now`: present, not
    /// expired (`now < expires_at`) and not revoked. Records `now` as its
    /// last use.
    pub fn live(&self, fingerprint: &str, now: SystemTime) -> Result<Option<Binding>, Error> {
        let at = to_millis(now).map_err(|e| self.fail("cannot look up binding", e))?;
        let inner = self.lock();
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
            .map_err(|e| self.fail("cannot look up binding", e))?;
        raw.map(RawBinding::into_binding)
            .transpose()
            .map_err(|e| self.fail("cannot look up binding", e))
    }

    /// The refresh token stored with the key's binding, decrypted; `None`
    /// when there is no binding or no token (revocation wipes it). Fails
    /// when the ciphertext does not open under the key file with this
    /// fingerprint: it was altered, copied from another row, or sealed
    /// under another key.
    pub fn refresh_token(&self, fingerprint: &str) -> Result<Option<String>, Error> {
        let mut inner = self.lock();
        let sealed: Option<Vec<u8>> = inner
            .conn
            .query_row(
                "SELECT refresh_token FROM bindings WHERE fingerprint = ?1",
                params![fingerprint],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.fail("cannot read refresh token", e))?
            .flatten();
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        if inner.key.is_none() {
            // Another process may have created it since we opened.
            inner.key = read_key(&self.key_path)?;
        }
        let Some(key) = inner.key.as_ref() else {
            return Err(Error::KeyFile {
                path: self.key_path.clone(),
                reason: "missing, so stored refresh tokens cannot be decrypted".to_owned(),
            });
        };
        open_token(key, fingerprint, sealed)
            .map(Some)
            .ok_or_else(|| {
                self.fail(
                    "cannot read refresh token",
                    format!(
                        "the refresh token of {fingerprint} does not decrypt \
                         (altered, moved from another row, or sealed under another key)"
                    ),
                )
            })
    }

    /// Every binding, expired and revoked ones included, newest first.
    ///
    /// Takes no `now`: nothing here depends on the time; callers judge
    /// each binding with [`Binding::state`].
    pub fn list(&self) -> Result<Vec<Binding>, Error> {
        let inner = self.lock();
        let raws = list_in(&inner.conn).map_err(|e| self.fail("cannot list bindings", e))?;
        raws.into_iter()
            .map(RawBinding::into_binding)
            .collect::<Result<_, _>>()
            .map_err(|e| self.fail("cannot list bindings", e))
    }

    /// Revokes the bindings `which` selects that are not revoked yet,
    /// expired ones included (so nothing can renew them), and returns how
    /// many. Each keeps its row for audit, loses its refresh token and gets
    /// a `binding.revoked` audit event. A revocation of at least one binding
    /// bumps [`BindingStore::revision`].
    pub fn revoke(&self, which: Revoke<'_>, now: SystemTime) -> Result<usize, Error> {
        let at = to_millis(now).map_err(|e| self.fail("cannot revoke", e))?;
        let mut inner = self.lock();
        let (revision, victims) =
            revoke_in(&mut inner.conn, which, at).map_err(|e| self.fail("cannot revoke", e))?;
        let selector = which.to_string();
        for (fingerprint, who) in &victims {
            tracing::info!(
                target: "audit",
                event = "binding.revoked",
                fingerprint = fingerprint.as_str(),
                identity = who.as_str(),
                selector = selector.as_str(),
                revision,
            );
        }
        Ok(victims.len())
    }

    /// Records that the IdP confirmed the key's identity again (a refresh
    /// for `reauth_every`) at `now`: moves `authenticated_at`, takes the
    /// refreshed groups, email and claims when the IdP sent a new ID token,
    /// and stores a rotated refresh token. A revoked binding is left alone
    /// and `None` returned.
    pub fn renew(
        &self,
        fingerprint: &str,
        identity: Option<RenewedIdentity<'_>>,
        refresh_token: Option<&str>,
        now: SystemTime,
    ) -> Result<Option<Binding>, Error> {
        let at = to_millis(now).map_err(|e| self.fail("cannot renew", e))?;
        let mut inner = self.lock();
        let sealed = match refresh_token {
            Some(token) => Some(self.seal(&mut inner, fingerprint, token)?),
            None => None,
        };
        let (email, groups, claims) = match identity {
            Some(i) => (
                Some(i.email),
                Some(serde_json::to_string(i.groups).map_err(|e| self.fail("cannot renew", e))?),
                Some(i.claims_json),
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
            .map_err(|e| self.fail("cannot renew", e))?;
        raw.map(RawBinding::into_binding)
            .transpose()
            .map_err(|e| self.fail("cannot renew", e))
    }

    /// Asks the gateway running on this state directory to end a live
    /// session (`gatehouse sessions kill`). Returns the request's id, to
    /// wait on with [`BindingStore::kill_outcome`].
    pub fn request_kill(
        &self,
        session_id: &str,
        reason: &str,
        now: SystemTime,
    ) -> Result<i64, Error> {
        let at = to_millis(now).map_err(|e| self.fail("cannot request kill", e))?;
        let inner = self.lock();
        inner
            .conn
            .query_row(
                "INSERT INTO session_kills (session_id, reason, requested_at)
                 VALUES (?1, ?2, ?3) RETURNING id",
                params![session_id, reason, at],
                |r| r.get(0),
            )
            .map_err(|e| self.fail("cannot request kill", e))
    }

    /// Kill requests after `after` (an id), oldest first, and the newest id
    /// seen. Pass 0, or [`BindingStore::last_kill_id`] at start so that
    /// requests from before a restart are not replayed.
    pub fn kill_requests_after(&self, after: i64) -> Result<Vec<KillRequest>, Error> {
        let inner = self.lock();
        let mut stmt = inner
            .conn
            .prepare_cached(
                "SELECT id, session_id, reason FROM session_kills
                 WHERE id > ?1 AND handled_at IS NULL ORDER BY id",
            )
            .map_err(|e| self.fail("cannot read kill requests", e))?;
        let rows = stmt
            .query_map(params![after], |r| {
                Ok(KillRequest {
                    id: r.get(0)?,
                    session_id: r.get(1)?,
                    reason: r.get(2)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.fail("cannot read kill requests", e))?;
        Ok(rows)
    }

    /// The newest kill request's id (0 when there is none).
    pub fn last_kill_id(&self) -> Result<i64, Error> {
        let inner = self.lock();
        inner
            .conn
            .query_row("SELECT COALESCE(MAX(id), 0) FROM session_kills", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.fail("cannot read kill requests", e))
    }

    /// Records what the gateway did about a kill request.
    pub fn kill_handled(
        &self,
        id: i64,
        outcome: KillOutcome,
        now: SystemTime,
    ) -> Result<(), Error> {
        let at = to_millis(now).map_err(|e| self.fail("cannot record kill", e))?;
        let inner = self.lock();
        inner
            .conn
            .execute(
                "UPDATE session_kills SET handled_at = ?2, outcome = ?3 WHERE id = ?1",
                params![id, at, outcome.as_str()],
            )
            .map_err(|e| self.fail("cannot record kill", e))?;
        Ok(())
    }

    /// What the gateway did about a kill request, once it has.
    pub fn kill_outcome(&self, id: i64) -> Result<Option<KillOutcome>, Error> {
        let inner = self.lock();
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

    /// Deletes bindings that expired or were revoked at or before
    /// `older_than`, and the revocation log up to then; returns how many
    /// bindings went. Pass a time well in the past (e.g. 30 days ago) to
    /// keep recent ones for audit.
    pub fn purge_expired(&self, older_than: SystemTime) -> Result<usize, Error> {
        let at = to_millis(older_than).map_err(|e| self.fail("cannot purge", e))?;
        let mut inner = self.lock();
        purge_in(&mut inner.conn, at).map_err(|e| self.fail("cannot purge", e))
    }

    /// The revocation hook: a counter that only grows, bumped by every
    /// [`BindingStore::revoke`] that revoked something (in any process
    /// sharing the database). The live-session registry polls it and, when
    /// it moved, asks [`BindingStore::revoked_since`] which keys to cut off.
    /// Expiry does not bump it: a session's policy decision carries the
    /// binding's expiry as a next-check time instead.
    pub fn revision(&self) -> Result<u64, Error> {
        let inner = self.lock();
        read_revision(&inner.conn).map_err(|e| self.fail("cannot read revision", e))
    }

    /// The keys revoked after `revision` (from an earlier call or
    /// [`BindingStore::revision`]) and the revision now, read in one
    /// snapshot. Re-binding a revoked key does not hide its revocation
    /// here, so sessions of the revoked sign-in still end.
    pub fn revoked_since(&self, revision: u64) -> Result<RevokedSince, Error> {
        let after = i64::try_from(revision).unwrap_or(i64::MAX);
        let mut inner = self.lock();
        revoked_since_in(&mut inner.conn, after)
            .map_err(|e| self.fail("cannot read revocations", e))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while locked cannot leave the connection half-written:
        // an open transaction rolls back when its guard drops.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fail(&self, what: &str, reason: impl fmt::Display) -> Error {
        Error::Store {
            path: self.db_path.clone(),
            reason: format!("{what}: {reason}"),
        }
    }

    /// `nonce || ciphertext || tag` of `token`, creating the key file on
    /// first use.
    fn seal(&self, inner: &mut Inner, fingerprint: &str, token: &str) -> Result<Vec<u8>, Error> {
        let key = match &mut inner.key {
            Some(key) => key,
            slot @ None => slot.insert(create_key(&self.key_path, &self.rng)?),
        };
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| self.fail("cannot seal refresh token", "no randomness"))?;
        let mut buf = token.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(associated_data(fingerprint)),
            &mut buf,
        )
        .map_err(|_| self.fail("cannot seal refresh token", "encryption failed"))?;
        let mut sealed = nonce.to_vec();
        sealed.append(&mut buf);
        Ok(sealed)
    }
}

/// Whether `s` looks like an OpenSSH SHA-256 key fingerprint:
/// `SHA256:` and 43 unpadded base64 characters.
pub fn is_fingerprint(s: &str) -> bool {
    s.strip_prefix("SHA256:").is_some_and(|b64| {
        b64.len() == 43
            && b64
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
    })
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

fn associated_data(fingerprint: &str) -> Vec<u8> {
    let mut aad = AAD_CONTEXT.to_vec();
    aad.extend_from_slice(fingerprint.as_bytes());
    aad
}

/// Opens `nonce || ciphertext || tag`; `None` if it does not authenticate
/// (or is not UTF-8, which a token we sealed always is).
fn open_token(key: &LessSafeKey, fingerprint: &str, sealed: Vec<u8>) -> Option<String> {
    let (nonce, ciphertext) = sealed.split_at_checked(NONCE_LEN)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = ciphertext.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(associated_data(fingerprint)), &mut buf)
        .ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

/// Creates `path` with mode 0600 if absent, and tightens it to 0600 if not.
fn ensure_private_file(path: &Path) -> std::io::Result<()> {
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
/// connections, WAL (readers never block the writer), foreign keys on (the
/// session and audit tables will reference bindings).
fn configure(conn: &Connection) -> Result<(), String> {
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
fn migrate(conn: &mut Connection) -> Result<(), String> {
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
    Ok(u64::try_from(v).unwrap_or(0))
}

/// The transaction behind [`BindingStore::revoke`]: returns the new
/// revision and the (fingerprint, who) of each binding it revoked.
fn revoke_in(
    conn: &mut Connection,
    which: Revoke<'_>,
    at: i64,
) -> rusqlite::Result<(u64, Vec<(String, String)>)> {
    // IMMEDIATE: we read, then write. A deferred transaction would fail at
    // once with "database is locked" if another connection wrote between.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let candidates: Vec<(String, String, Option<String>)> = {
        let mut stmt = tx.prepare(
            "SELECT fingerprint, sub, email FROM bindings
             WHERE revoked_at IS NULL AND (?1 IS NULL OR fingerprint = ?1)",
        )?;
        let key = match which {
            Revoke::Key(fp) => Some(fp),
            Revoke::User(_) | Revoke::All => None,
        };
        let rows = stmt.query_map(params![key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let victims: Vec<(String, String)> = candidates
        .into_iter()
        .filter(|(_, sub, email)| match which {
            Revoke::User(user) => {
                // Unicode-aware, which SQLite's NOCASE is not.
                let user = user.trim();
                sub == user
                    || email
                        .as_deref()
                        .is_some_and(|e| e.to_lowercase() == user.to_lowercase())
            }
            Revoke::Key(_) | Revoke::All => true,
        })
        .map(|(fp, sub, email)| (fp, email.unwrap_or(sub)))
        .collect();
    if victims.is_empty() {
        return Ok((read_revision(&tx)?, victims));
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
    Ok((u64::try_from(revision).unwrap_or(0), victims))
}

/// Reads the key file if it exists. Refuses a file others can read, as
/// OpenSSH does for private keys, and one of the wrong length.
fn read_key(path: &Path) -> Result<Option<LessSafeKey>, Error> {
    let fail = |reason: String| Error::KeyFile {
        path: path.to_owned(),
        reason,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(e.to_string())),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(fail(format!(
            "mode {mode:04o} lets others read it; run chmod 600 {}",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    if bytes.len() != KEY_LEN {
        return Err(fail(format!(
            "must hold exactly {KEY_LEN} bytes, found {}",
            bytes.len()
        )));
    }
    let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
        .map_err(|_| fail("not a ChaCha20-Poly1305 key".to_owned()))?;
    Ok(Some(LessSafeKey::new(key)))
}

/// Creates the key file (0600) with fresh random bytes, or reads the one
/// that appeared meanwhile. Never overwrites: losing the key loses every
/// stored refresh token. The key is written to a temporary file and
/// hard-linked into place, which fails if the name exists, so two
/// processes racing at first use agree on one key and neither reads a
/// half-written file.
fn create_key(path: &Path, rng: &SystemRandom) -> Result<LessSafeKey, Error> {
    if let Some(key) = read_key(path)? {
        return Ok(key);
    }
    let fail = |reason: String| Error::KeyFile {
        path: path.to_owned(),
        reason,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut bytes = [0u8; KEY_LEN];
    rng.fill(&mut bytes)
        .map_err(|_| fail("no randomness for a new key".to_owned()))?;
    let tmp = dir.join(format!(".{KEY_FILE}.{}.tmp", uuid::Uuid::now_v7()));
    let written = publish_key(&tmp, path, dir, &bytes);
    let _ = std::fs::remove_file(&tmp);
    written.map_err(|e| fail(format!("cannot create: {e}")))?;
    // Whoever won the race, the file now holds the key to use.
    read_key(path)?.ok_or_else(|| fail("vanished right after it was created".to_owned()))
}

/// Writes `bytes` to `tmp` (0600) and links it to `path` unless `path`
/// exists already.
fn publish_key(tmp: &Path, path: &Path, dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    // The mode passed to open() is filtered by the umask; make sure.
    file.set_permissions(Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    match std::fs::hard_link(tmp, path) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created the refresh-token key");
            // Make the new name durable before tokens depend on it.
            File::open(dir)?.sync_all()
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const HOUR: Duration = Duration::from_secs(3600);

    /// A valid-looking fingerprint made of one repeated character.
    fn fp(c: char) -> String {
        format!("SHA256:{}", c.to_string().repeat(43))
    }

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const T0: u64 = 1_800_000_000;

    struct Fixture {
        dir: tempfile::TempDir,
        store: BindingStore,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = BindingStore::open(&dir.path().join("state")).unwrap();
        Fixture { dir, store }
    }

    impl Fixture {
        fn state(&self) -> PathBuf {
            self.dir.path().join("state")
        }
    }

    fn new<'a>(fingerprint: &'a str, sub: &'a str, email: Option<&'a str>) -> NewBinding<'a> {
        NewBinding {
            fingerprint,
            sub,
            email,
            groups: &[],
            issuer: "https://idp.example.com",
            refresh_token: None,
            claims_json: "{}",
            ttl: HOUR,
        }
    }

    fn bind(store: &BindingStore, fingerprint: &str, email: &str, at: u64) -> Binding {
        let groups = vec!["ops".to_owned(), "dev".to_owned()];
        store
            .bind(
                &NewBinding {
                    groups: &groups,
                    refresh_token: Some("rt-for-tests"),
                    claims_json: "{}",
                    ..new(fingerprint, &format!("sub-{email}"), Some(email))
                },
                t(at),
            )
            .unwrap()
    }

    #[test]
    fn bind_then_live_round_trips_and_records_use() {
        let f = fixture();
        let groups = vec!["ops".to_owned()];
        let made = f
            .store
            .bind(
                &NewBinding {
                    groups: &groups,
                    ..new(&fp('a'), "u-1", Some("alice@example.com"))
                },
                t(T0),
            )
            .unwrap();
        assert_eq!(made.created_at, t(T0));
        assert_eq!(made.expires_at, t(T0) + HOUR);
        assert_eq!(made.last_used_at, None);
        assert_eq!(made.revoked_at, None);

        let live = f.store.live(&fp('a'), t(T0 + 60)).unwrap().expect("live");
        assert_eq!(
            live,
            Binding {
                last_used_at: Some(t(T0 + 60)),
                ..made.clone()
            }
        );
        assert_eq!(live.groups, ["ops"]);
        assert_eq!(live.who(), "alice@example.com");
        assert_eq!(f.store.list().unwrap(), vec![live]);
        assert_eq!(f.store.live(&fp('b'), t(T0)).unwrap(), None);
    }

    #[test]
    fn bindings_expire_at_created_plus_ttl() {
        let f = fixture();
        f.store.bind(&new(&fp('a'), "u", None), t(T0)).unwrap();
        let cases = [
            (0, true),
            (1, true),
            (3599, true),
            (3600, false), // expires_at itself is past
            (7200, false),
        ];
        for (after, want_live) in cases {
            let got = f.store.live(&fp('a'), t(T0 + after)).unwrap();
            assert_eq!(got.is_some(), want_live, "at +{after}s");
            let listed = &f.store.list().unwrap()[0];
            let want_state = if want_live {
                BindingState::Live
            } else {
                BindingState::Expired
            };
            assert_eq!(listed.state(t(T0 + after)), want_state, "at +{after}s");
        }
        // The last use recorded is the last successful one.
        assert_eq!(f.store.list().unwrap()[0].last_used_at, Some(t(T0 + 3599)));
    }

    #[test]
    fn revoke_selects_by_key_user_or_all_and_revoked_bindings_are_not_live() {
        struct Case {
            name: &'static str,
            which: Revoke<'static>,
            revoked: &'static [char],
        }
        let cases = [
            Case {
                name: "one key",
                which: Revoke::Key("SHA256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"),
                revoked: &['b'],
            },
            Case {
                name: "user, any case",
                which: Revoke::User("ALICE@Example.COM"),
                revoked: &['a', 'b'],
            },
            Case {
                name: "user by sub when there is no email",
                which: Revoke::User("carol-sub"),
                revoked: &['c'],
            },
            Case {
                name: "nobody",
                which: Revoke::User("mallory@example.com"),
                revoked: &[],
            },
            Case {
                name: "unknown key",
                which: Revoke::Key("SHA256:zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"),
                revoked: &[],
            },
            Case {
                name: "all",
                which: Revoke::All,
                revoked: &['a', 'b', 'c', 'd'],
            },
        ];
        for case in cases {
            let f = fixture();
            bind(&f.store, &fp('a'), "alice@example.com", T0);
            bind(&f.store, &fp('b'), "Alice@example.com", T0 + 1);
            f.store
                .bind(&new(&fp('c'), "carol-sub", None), t(T0 + 2))
                .unwrap();
            bind(&f.store, &fp('d'), "dave@example.com", T0 + 3);
            let now = t(T0 + 10);
            let n = f.store.revoke(case.which, now).unwrap();
            assert_eq!(n, case.revoked.len(), "{}", case.name);
            assert_eq!(
                f.store.revision().unwrap(),
                u64::from(n > 0),
                "{}",
                case.name
            );
            for c in ['a', 'b', 'c', 'd'] {
                let revoked = case.revoked.contains(&c);
                let live = f.store.live(&fp(c), now).unwrap();
                assert_eq!(live.is_none(), revoked, "{}: key {c}", case.name);
                let row = f
                    .store
                    .list()
                    .unwrap()
                    .into_iter()
                    .find(|b| b.fingerprint == fp(c))
                    .expect("revoked rows are kept");
                assert_eq!(row.revoked_at.is_some(), revoked, "{}: key {c}", case.name);
                if revoked {
                    assert_eq!(row.state(now), BindingState::Revoked);
                    assert_eq!(f.store.refresh_token(&fp(c)).unwrap(), None, "wiped");
                }
            }
            // Revoking again finds nothing new and leaves the revision.
            let before = f.store.revision().unwrap();
            assert_eq!(f.store.revoke(case.which, now).unwrap(), 0, "{}", case.name);
            assert_eq!(f.store.revision().unwrap(), before);
        }
    }

    #[test]
    fn revoked_since_reports_revocations_even_after_a_rebind() {
        let f = fixture();
        bind(&f.store, &fp('a'), "a@example.com", T0);
        bind(&f.store, &fp('b'), "b@example.com", T0);
        let start = f.store.revision().unwrap();
        assert_eq!(
            f.store.revoked_since(start).unwrap(),
            RevokedSince {
                revision: start,
                fingerprints: vec![]
            }
        );
        f.store.revoke(Revoke::Key(&fp('a')), t(T0 + 1)).unwrap();
        let mid = f.store.revision().unwrap();
        bind(&f.store, &fp('a'), "a@example.com", T0 + 2); // signs in again
        f.store.revoke(Revoke::Key(&fp('b')), t(T0 + 3)).unwrap();
        let got = f.store.revoked_since(start).unwrap();
        assert_eq!(got.fingerprints, vec![fp('a'), fp('b')]);
        assert_eq!(got.revision, start + 2);
        assert_eq!(
            f.store.revoked_since(mid).unwrap().fingerprints,
            vec![fp('b')]
        );
        assert!(f.store.live(&fp('a'), t(T0 + 4)).unwrap().is_some());
    }

    #[test]
    fn binding_again_replaces_the_old_binding() {
        let f = fixture();
        bind(&f.store, &fp('a'), "old@example.com", T0);
        f.store.live(&fp('a'), t(T0 + 1)).unwrap();
        f.store.revoke(Revoke::All, t(T0 + 2)).unwrap();
        let groups = vec!["new".to_owned()];
        let again = f
            .store
            .bind(
                &NewBinding {
                    groups: &groups,
                    refresh_token: Some("rt-new"),
                    claims_json: "{}",
                    ..new(&fp('a'), "new-sub", Some("new@example.com"))
                },
                t(T0 + 100),
            )
            .unwrap();
        assert_eq!(again.sub, "new-sub");
        assert_eq!(again.groups, ["new"]);
        assert_eq!(again.created_at, t(T0 + 100));
        assert_eq!(again.last_used_at, None, "a new sign-in is unused");
        assert_eq!(again.revoked_at, None, "a new sign-in is not revoked");
        assert_eq!(f.store.list().unwrap(), vec![again]);
        assert_eq!(
            f.store.refresh_token(&fp('a')).unwrap().as_deref(),
            Some("rt-new")
        );
    }

    #[test]
    fn list_is_newest_first_and_purge_removes_dead_rows() {
        let f = fixture();
        bind(&f.store, &fp('a'), "a@example.com", T0);
        bind(&f.store, &fp('b'), "b@example.com", T0 + 7200);
        bind(&f.store, &fp('c'), "c@example.com", T0 + 3600);
        f.store.revoke(Revoke::Key(&fp('c')), t(T0 + 3700)).unwrap();
        let order: Vec<_> = f
            .store
            .list()
            .unwrap()
            .into_iter()
            .map(|b| b.fingerprint)
            .collect();
        assert_eq!(order, [fp('b'), fp('c'), fp('a')]);
        // a expired at T0+1h, c was revoked at T0+1h+100s, b lives.
        assert_eq!(f.store.purge_expired(t(T0 + 3600)).unwrap(), 1);
        assert_eq!(f.store.purge_expired(t(T0 + 3700)).unwrap(), 1);
        let left: Vec<_> = f
            .store
            .list()
            .unwrap()
            .into_iter()
            .map(|b| b.fingerprint)
            .collect();
        assert_eq!(left, [fp('b')]);
        assert!(f.store.revoked_since(0).unwrap().fingerprints.is_empty());
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn refresh_tokens_round_trip_and_are_not_stored_in_plaintext() {
        let f = fixture();
        let token = "rt-PLAINTEXT-should-never-hit-disk-5f3a9c";
        f.store
            .bind(
                &NewBinding {
                    refresh_token: Some(token),
                    claims_json: "{}",
                    ..new(&fp('a'), "sub-visible-on-disk", None)
                },
                t(T0),
            )
            .unwrap();
        f.store
            .bind(&new(&fp('b'), "no-token", None), t(T0))
            .unwrap();
        assert_eq!(
            f.store.refresh_token(&fp('a')).unwrap().as_deref(),
            Some(token)
        );
        assert_eq!(f.store.refresh_token(&fp('b')).unwrap(), None);
        assert_eq!(f.store.refresh_token(&fp('z')).unwrap(), None);

        f.store
            .lock()
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        let db = std::fs::read(f.state().join(DB_FILE)).unwrap();
        assert!(
            contains(&db, b"sub-visible-on-disk"),
            "the checkpoint reached the file"
        );
        assert!(!contains(&db, token.as_bytes()), "plaintext token on disk");
        let wal = std::fs::read(f.state().join("gatehouse.db-wal")).unwrap_or_default();
        assert!(
            !contains(&wal, token.as_bytes()),
            "plaintext token in the WAL"
        );
        let key = std::fs::read(f.state().join(KEY_FILE)).unwrap();
        assert_eq!(key.len(), KEY_LEN);
        // Neither the token nor the key shows in Debug output.
        let debug = format!(
            "{:?} {:?}",
            f.store,
            NewBinding {
                refresh_token: Some(token),
                claims_json: "{}",
                ..new(&fp('a'), "s", None)
            }
        );
        assert!(!debug.contains(token), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn altered_or_moved_ciphertexts_do_not_decrypt() {
        let f = fixture();
        bind(&f.store, &fp('a'), "a@example.com", T0);
        bind(&f.store, &fp('b'), "b@example.com", T0);
        let sealed: Vec<u8> = f
            .store
            .lock()
            .conn
            .query_row(
                "SELECT refresh_token FROM bindings WHERE fingerprint = ?1",
                [fp('a')],
                |r| r.get(0),
            )
            .unwrap();
        let set = |fingerprint: &str, value: &[u8]| {
            f.store
                .lock()
                .conn
                .execute(
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
        let cases: [(&str, &str, Vec<u8>); 5] = [
            ("ciphertext bit flipped", "a", flipped),
            ("tag bit flipped", "a", bad_tag),
            ("nonce bit flipped", "a", bad_nonce),
            ("truncated", "a", sealed[..NONCE_LEN - 1].to_vec()),
            ("moved to another key's row", "b", sealed.clone()),
        ];
        for (name, row, value) in cases {
            let row = fp(row.chars().next().unwrap());
            set(&row, &value);
            let err = f.store.refresh_token(&row).expect_err(name);
            assert!(
                err.to_string().contains("does not decrypt"),
                "{name}: {err}"
            );
            assert!(!err.to_string().contains("rt-for-tests"), "{name}: {err}");
            set(&row, &sealed);
        }
        // Restored, row a opens again.
        assert_eq!(
            f.store.refresh_token(&fp('a')).unwrap().as_deref(),
            Some("rt-for-tests")
        );
    }

    #[test]
    fn files_are_private_and_the_key_is_reused_across_opens() {
        let f = fixture();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&f.state()), 0o700);
        assert_eq!(mode(&f.state().join(DB_FILE)), 0o600);
        assert!(!f.state().join(KEY_FILE).exists(), "created on first use");
        bind(&f.store, &fp('a'), "a@example.com", T0);
        assert_eq!(mode(&f.state().join(KEY_FILE)), 0o600);
        let wal = f.state().join("gatehouse.db-wal");
        if wal.exists() {
            assert_eq!(mode(&wal), 0o600);
        }
        let key = std::fs::read(f.state().join(KEY_FILE)).unwrap();
        let state = f.state();
        drop(f.store);

        let again = BindingStore::open(&state).unwrap();
        assert_eq!(
            again.refresh_token(&fp('a')).unwrap().as_deref(),
            Some("rt-for-tests")
        );
        bind(&again, &fp('b'), "b@example.com", T0);
        assert_eq!(
            std::fs::read(state.join(KEY_FILE)).unwrap(),
            key,
            "never rewritten"
        );
        assert_eq!(again.list().unwrap().len(), 2);
    }

    #[test]
    fn a_store_opened_before_the_key_existed_reads_it_later() {
        let f = fixture();
        let other = BindingStore::open(&f.state()).unwrap();
        bind(&f.store, &fp('a'), "a@example.com", T0);
        assert_eq!(
            other.refresh_token(&fp('a')).unwrap().as_deref(),
            Some("rt-for-tests")
        );
    }

    #[test]
    fn bad_key_files_and_fingerprints_are_refused() {
        let f = fixture();
        let key = f.state().join(KEY_FILE);
        std::fs::write(&key, [0u8; 16]).unwrap();
        std::fs::set_permissions(&key, Permissions::from_mode(0o600)).unwrap();
        let err = BindingStore::open(&f.state()).unwrap_err();
        assert!(err.to_string().contains("exactly 32 bytes"), "{err}");
        std::fs::write(&key, [0u8; 32]).unwrap();
        std::fs::set_permissions(&key, Permissions::from_mode(0o644)).unwrap();
        let err = BindingStore::open(&f.state()).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");

        for bad in ["", "SHA256:", "MD5:aa:bb", "SHA256:short", "sha256:AAAA"] {
            let err = f.store.bind(&new(bad, "s", None), t(T0)).unwrap_err();
            assert!(
                err.to_string().contains("not a SHA256 key fingerprint"),
                "{err}"
            );
        }
        assert!(is_fingerprint(
            "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"
        ));
    }

    #[test]
    fn the_schema_is_versioned_and_a_newer_one_is_refused() {
        let f = fixture();
        let version = |c: &Connection| -> i64 {
            c.pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap()
        };
        assert_eq!(version(&f.store.lock().conn), MIGRATIONS.len() as i64);
        let journal: String = f
            .store
            .lock()
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(journal, "wal");
        let fk: bool = f
            .store
            .lock()
            .conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert!(fk);
        // Reopening migrates nothing and keeps data.
        bind(&f.store, &fp('a'), "a@example.com", T0);
        let again = BindingStore::open(&f.state()).unwrap();
        assert_eq!(again.list().unwrap().len(), 1);
        drop(again);

        f.store
            .lock()
            .conn
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = BindingStore::open(&f.state()).unwrap_err();
        assert!(
            err.to_string().contains("schema version 99 is newer"),
            "{err}"
        );
    }

    #[test]
    fn json_lines_carry_the_identity_and_state_but_no_token() {
        let f = fixture();
        let b = bind(&f.store, &fp('a'), "a@example.com", T0);
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
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&b.to_json_line(t(T0 + 7200))).unwrap()["state"],
            "expired"
        );
    }

    #[test]
    fn stores_opened_at_once_on_a_fresh_directory_agree() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let state = dir.path().join("state");
            let barrier = Arc::new(std::sync::Barrier::new(4));
            let handles: Vec<_> = (0..4u8)
                .map(|i| {
                    let (state, barrier) = (state.clone(), Arc::clone(&barrier));
                    std::thread::spawn(move || {
                        barrier.wait();
                        let store = BindingStore::open(&state).unwrap();
                        let c = char::from(b'a' + i);
                        bind(&store, &fp(c), "x@example.com", T0);
                        store
                    })
                })
                .collect();
            let stores: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            // One key won the race to be created; every store uses it.
            for store in &stores {
                for c in ['a', 'b', 'c', 'd'] {
                    assert_eq!(
                        store.refresh_token(&fp(c)).unwrap().as_deref(),
                        Some("rt-for-tests")
                    );
                }
            }
        }
    }

    #[test]
    fn concurrent_use_from_threads_and_connections_does_not_hit_locks() {
        let f = fixture();
        let shared = Arc::new(BindingStore::open(&f.state()).unwrap());
        let handles: Vec<_> = (0..4u8)
            .map(|i| {
                // Two threads share one store; two open their own, as the
                // gateway and `gatehouse logins` do.
                let store = if i < 2 {
                    Arc::clone(&shared)
                } else {
                    Arc::new(BindingStore::open(&f.state()).unwrap())
                };
                std::thread::spawn(move || {
                    let c = char::from(b'a' + i);
                    let email = format!("{c}@example.com");
                    for round in 0..150u64 {
                        let at = T0 + round;
                        bind(&store, &fp(c), &email, at);
                        assert!(store.live(&fp(c), t(at)).unwrap().is_some());
                        assert_eq!(
                            store.refresh_token(&fp(c)).unwrap().as_deref(),
                            Some("rt-for-tests")
                        );
                        if round % 10 == 0 {
                            assert_eq!(store.revoke(Revoke::Key(&fp(c)), t(at)).unwrap(), 1);
                        }
                        store.list().unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("no thread failed");
        }
        assert_eq!(shared.list().unwrap().len(), 4);
        assert_eq!(shared.revision().unwrap(), 4 * 15);
    }
}
