//! The state database of Gatehouse: login bindings with sealed refresh
//! tokens, the revocation log, live sessions and admin requests (tagged
//! with the gateway that holds the session), the recording index, and
//! signed-in browsers (web sessions) with their sign-ins in progress and
//! hand-offs to HTTP route hosts, and SSH sign-in links.
//!
//! Everything goes through one object-safe async trait, [`Store`], shared
//! as `Arc<dyn Store>`. [`Sqlite`] implements it on one file in the state
//! directory; a PostgreSQL backend for several gateways implements the
//! same trait and must pass the same [`conformance`] suite.
//!
//! **Invariants:**
//! - one place opens the database and one ordered list of migrations
//!   covers every table ([`sqlite`]);
//! - refresh tokens are sealed at rest and never appear in `Debug`, errors
//!   or logs ([`Secret`]);
//! - no SSH and no HTTP: this crate never depends on russh, reqwest or the
//!   gateway; callers write the audit events.

mod admin;
mod bindings;
pub mod conformance;
mod error;
mod links;
mod recordings;
pub mod search;
pub mod sqlite;
pub mod token;
mod web;

use std::time::SystemTime;

pub use admin::{KillOutcome, KillQueued, KillRequest, LiveSession};
pub use bindings::{
    Binding, BindingState, NewBinding, RenewedIdentity, Revoke, Revoked, RevokedSince, Secret,
    is_fingerprint,
};
pub use error::{Error, Result};
pub use links::{LinkApproval, LinkApproved, LinkRow, LinkState, SshLink};
pub use recordings::{
    ChannelStart, RecordingChannel, RecordingCursor, RecordingFilter, RecordingRow, RecordingStart,
    RecordingStatus, RecordingView,
};
pub use search::{
    LineMark, ScreenLine, TextChunk, TextChunker, TextChunks, TextCursor, TextHit, TextIndexState,
    TextIndexed, TextPage, TextQuery,
};
pub use sqlite::Sqlite;
pub use web::{HandoffSession, TOUCH_EVERY, WebHandoff, WebLogin, WebSession};

/// The state database. Every method is one short transaction; none holds
/// a lock across calls, so any number of gateways and CLI commands may
/// share one backend.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    // --- Login bindings -------------------------------------------------

    /// Binds an identity to a key from `now` until `now + ttl`, replacing
    /// any binding the key had (expired, revoked or live): signing in
    /// again is how a user renews. Returns the binding as stored.
    async fn bind(&self, binding: NewBinding, now: SystemTime) -> Result<Binding>;

    /// The binding that authenticates `fingerprint` at `now`: present, not
    /// expired (`now < expires_at`) and not revoked. Records `now` as its
    /// last use.
    async fn live_binding(&self, fingerprint: &str, now: SystemTime) -> Result<Option<Binding>>;

    /// The refresh token stored with the key's binding; `None` when there
    /// is no binding or no token (revocation wipes it). Fails when the
    /// stored token does not open (altered, moved from another row, or
    /// sealed under another key).
    async fn refresh_token(&self, fingerprint: &str) -> Result<Option<Secret>>;

    /// Every binding, expired and revoked ones included, newest first.
    async fn bindings(&self) -> Result<Vec<Binding>>;

    /// Revokes the bindings `which` selects that are not revoked yet
    /// (expired ones included, so nothing can renew them). Each keeps its
    /// row for audit and loses its refresh token. Revoking at least one
    /// bumps [`Store::revision`].
    async fn revoke(&self, which: Revoke, now: SystemTime) -> Result<Revoked>;

    /// Records that the IdP confirmed the key's identity again at `now`
    /// (a refresh): moves `authenticated_at`, takes the new groups, email
    /// and claims when the IdP sent a new ID token, and stores a rotated
    /// refresh token. A revoked binding is left alone and `None` returned.
    async fn renew(
        &self,
        fingerprint: &str,
        identity: Option<RenewedIdentity>,
        refresh_token: Option<Secret>,
        now: SystemTime,
    ) -> Result<Option<Binding>>;

    /// Deletes bindings that expired or were revoked at or before
    /// `older_than`, and the revocation log up to then; returns how many
    /// bindings went.
    async fn purge_expired(&self, older_than: SystemTime) -> Result<usize>;

    /// A counter that only grows, bumped by every revocation that revoked
    /// something (from any process sharing the store). Expiry does not
    /// bump it.
    async fn revision(&self) -> Result<u64>;

    /// The keys revoked after `revision` and the revision now, read in one
    /// snapshot. Re-binding a revoked key does not hide its revocation.
    async fn revoked_since(&self, revision: u64) -> Result<RevokedSince>;

    // --- Live sessions and admin requests --------------------------------

    /// A gateway process with this id starts: whatever the store still
    /// lists as live on it is from a previous run and is dropped, and kill
    /// requests addressed to those sessions are answered `not_found`.
    async fn gateway_started(&self, gateway_id: &str, now: SystemTime) -> Result<()>;

    /// A session was admitted on `gateway_id`.
    async fn session_opened(&self, session: LiveSession) -> Result<()>;

    /// A session ended.
    async fn session_closed(&self, session_id: &str) -> Result<()>;

    /// Live sessions, oldest first.
    async fn live_sessions(&self) -> Result<Vec<LiveSession>>;

    /// Asks the gateway holding `session_id` to end it. A session no
    /// gateway holds gets [`KillQueued::NotLive`] and no request.
    async fn request_kill(
        &self,
        session_id: &str,
        reason: &str,
        now: SystemTime,
    ) -> Result<KillQueued>;

    /// Unanswered kill requests addressed to `gateway_id` with an id after
    /// `after`, oldest first.
    async fn kill_requests_for(&self, gateway_id: &str, after: i64) -> Result<Vec<KillRequest>>;

    /// The newest kill request's id (0 when there is none).
    async fn last_kill_id(&self) -> Result<i64>;

    /// Records what the holder did about a kill request.
    async fn kill_handled(&self, id: i64, outcome: KillOutcome, now: SystemTime) -> Result<()>;

    /// What the holder did about a kill request, once it has.
    async fn kill_outcome(&self, id: i64) -> Result<Option<KillOutcome>>;

    // --- Recording index --------------------------------------------------

    /// A recorded session started: indexed as `recording`.
    async fn recording_started(&self, start: RecordingStart) -> Result<()>;

    /// A recorded channel started.
    async fn recording_channel_started(
        &self,
        session_id: &str,
        channel: ChannelStart,
    ) -> Result<()>;

    /// One more acknowledged segment (`seq` counts from 0) of a channel.
    async fn recording_segment_uploaded(
        &self,
        session_id: &str,
        channel: &str,
        seq: u64,
    ) -> Result<()>;

    /// Sets a session's state and reason, touching nothing else.
    async fn recording_status(
        &self,
        session_id: &str,
        status: RecordingStatus,
        reason: Option<String>,
    ) -> Result<()>;

    /// Stores a session's final row and channels (from its meta.json),
    /// replacing what was there; also how reindex writes.
    async fn recording_sealed(
        &self,
        row: RecordingRow,
        channels: Vec<RecordingChannel>,
    ) -> Result<()>;

    /// Sessions matching `filter`, newest first.
    async fn recordings(&self, filter: RecordingFilter) -> Result<Vec<RecordingRow>>;

    /// One session and its channels.
    async fn recording(
        &self,
        session_id: &str,
    ) -> Result<Option<(RecordingRow, Vec<RecordingChannel>)>>;

    /// Notes that `viewer` viewed a recording at `now` (the first and
    /// last time and a count are kept per viewer).
    async fn recording_viewed(&self, session_id: &str, viewer: &str, now: SystemTime)
    -> Result<()>;

    /// Who viewed these sessions, by session then first view.
    async fn recording_viewers(&self, session_ids: &[String]) -> Result<Vec<RecordingView>>;

    // --- Web sessions ---------------------------------------------------

    /// Stores a new signed-in browser.
    async fn web_session_create(&self, session: WebSession) -> Result<()>;

    /// The session whose token hashes to `id_hash`, if it is live at
    /// `now` (neither past its expiry nor idle too long); counts the
    /// request, writing at most once per [`TOUCH_EVERY`].
    async fn web_session(&self, id_hash: &str, now: SystemTime) -> Result<Option<WebSession>>;

    /// Ends a session (sign-out), and every session handed off from it to
    /// a route host; false if there was none.
    async fn web_session_end(&self, id_hash: &str) -> Result<bool>;

    /// Which of `id_hashes` are live sessions at `now`, without counting a
    /// request: the HTTP proxy asks about the sessions behind its open
    /// WebSockets every second.
    async fn web_sessions_live(&self, id_hashes: &[String], now: SystemTime)
    -> Result<Vec<String>>;

    /// Stores a hand-off code for a route host.
    async fn web_handoff_create(&self, handoff: WebHandoff) -> Result<()>;

    /// Takes (and removes) the hand-off whose code hashes to `code_hash`.
    /// If it is unexpired at `now`, for `host`, bound to `nonce_hash`, and
    /// its web app session is still live, creates `session` on the route
    /// host with that session's identity and expiry (ended with it), and
    /// returns it with the hand-off's `return_to`. Each code works once.
    async fn web_handoff_redeem(
        &self,
        code_hash: &str,
        host: &str,
        nonce_hash: &str,
        session: HandoffSession,
        now: SystemTime,
    ) -> Result<Option<(WebSession, String)>>;

    /// Stores a sign-in in progress.
    async fn web_login_start(&self, login: WebLogin) -> Result<()>;

    /// Takes (and removes) the sign-in whose state hashes to
    /// `state_hash`, if it has not expired at `now`: each is finished at
    /// most once.
    async fn web_login_take(&self, state_hash: &str, now: SystemTime) -> Result<Option<WebLogin>>;

    /// Removes sessions, sign-ins, hand-offs and SSH sign-in links dead at
    /// `now` (links an hour after they expire, so a late visit still gets
    /// a page that says what happened); returns how many.
    async fn web_purge(&self, now: SystemTime) -> Result<usize>;

    // --- SSH sign-in links (see [`SshLink`]) -----------------------------

    /// Stores a new pending link.
    async fn ssh_link_create(&self, link: SshLink) -> Result<()>;

    /// The link whose token hashes to `id_hash`, in whatever state.
    async fn ssh_link(&self, id_hash: &str) -> Result<Option<LinkRow>>;

    /// Approves the link if it is pending and unexpired at `now`.
    async fn ssh_link_approve(
        &self,
        id_hash: &str,
        approval: LinkApproval,
        now: SystemTime,
    ) -> Result<LinkApproved>;

    /// Takes an approved link's approval, once: the link becomes `used`.
    async fn ssh_link_redeem(&self, id_hash: &str) -> Result<Option<LinkApproval>>;

    /// The SSH connection is gone: a pending or approved link becomes
    /// `closed` (a used one stays used).
    async fn ssh_link_close(&self, id_hash: &str) -> Result<()>;

    // --- Text search (see [`search`]) -----------------------------------

    /// Replaces the on-screen text of one channel of an indexed session
    /// with `chunks` (in order of appearance), in one transaction, and
    /// marks the channel indexed, even with no text at all. The chunks
    /// are pulled as they are stored. Fails for a session the recording
    /// index does not know.
    async fn text_index_replace(
        &self,
        session_id: &str,
        channel: &str,
        chunks: TextChunks,
    ) -> Result<TextIndexed>;

    /// Records why a session (`channel` `None`) or one of its channels
    /// could not be indexed, so it leaves the queue of
    /// [`Store::text_unindexed`]. Text already indexed for it stays.
    async fn text_index_failed(
        &self,
        session_id: &str,
        channel: Option<&str>,
        reason: &str,
    ) -> Result<()>;

    /// Removes all indexed text and every mark, for a full rebuild.
    async fn text_index_clear(&self) -> Result<()>;

    /// Sessions whose text is due: sealed or interrupted, with no failure
    /// recorded for the session and a sealed channel not yet marked (or no
    /// mark at all); newest first, at most `limit` (0: all).
    async fn text_unindexed(&self, limit: usize) -> Result<Vec<String>>;

    /// What has been indexed of a session, per channel (the session's
    /// own failure, if any, has channel `None`).
    async fn text_index_state(&self, session_id: &str) -> Result<Vec<TextIndexState>>;

    /// Lines whose text matches `query` (see [`search`] for the meaning),
    /// newest session first, a page at a time. A query that can match
    /// nothing gives an empty page; one too long, or a cursor from
    /// elsewhere, is [`Error::Invalid`].
    async fn text_search(&self, query: TextQuery) -> Result<TextPage>;
}
