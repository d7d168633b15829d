//! [`Timed`]: a `state::Store` that times every operation of the store it
//! wraps into `gatehouse_state_backend_seconds{op}` (and counts failures),
//! so the state crate needs no metrics of its own and every backend is
//! measured at the same boundary.

use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use state::search::{TextChunks, TextIndexState, TextIndexed, TextPage, TextQuery};
use state::{
    Binding, ChannelStart, HandoffSession, KillOutcome, KillQueued, KillRequest, LinkApproval,
    LinkApproved, LinkRow, LiveSession, NewBinding, RecordingChannel, RecordingFilter,
    RecordingRow, RecordingStart, RecordingStatus, RecordingView, RenewedIdentity, Result, Revoke,
    Revoked, RevokedSince, Secret, SshLink, Store, WebHandoff, WebLogin, WebSession,
};

use crate::Metrics;

/// A store whose every operation is timed.
#[derive(Debug)]
pub struct Timed {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl Timed {
    /// `inner`, timed into `metrics`.
    pub fn wrap(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Arc<dyn Store> {
        Arc::new(Timed { inner, metrics })
    }

    async fn timed<T>(&self, op: &'static str, call: impl Future<Output = Result<T>>) -> Result<T> {
        let started = Instant::now();
        let result = call.await;
        self.metrics
            .state_operation(op, started.elapsed(), result.is_err());
        result
    }
}

#[async_trait::async_trait]
impl Store for Timed {
    async fn bind(&self, binding: NewBinding, now: SystemTime) -> Result<Binding> {
        self.timed("bind", self.inner.bind(binding, now)).await
    }

    async fn live_binding(&self, fingerprint: &str, now: SystemTime) -> Result<Option<Binding>> {
        self.timed("live_binding", self.inner.live_binding(fingerprint, now))
            .await
    }

    async fn refresh_token(&self, fingerprint: &str) -> Result<Option<Secret>> {
        self.timed("refresh_token", self.inner.refresh_token(fingerprint))
            .await
    }

    async fn bindings(&self) -> Result<Vec<Binding>> {
        self.timed("bindings", self.inner.bindings()).await
    }

    async fn revoke(&self, which: Revoke, now: SystemTime) -> Result<Revoked> {
        self.timed("revoke", self.inner.revoke(which, now)).await
    }

    async fn renew(
        &self,
        fingerprint: &str,
        identity: Option<RenewedIdentity>,
        refresh_token: Option<Secret>,
        now: SystemTime,
    ) -> Result<Option<Binding>> {
        self.timed(
            "renew",
            self.inner.renew(fingerprint, identity, refresh_token, now),
        )
        .await
    }

    async fn purge_expired(&self, older_than: SystemTime) -> Result<usize> {
        self.timed("purge_expired", self.inner.purge_expired(older_than))
            .await
    }

    async fn revision(&self) -> Result<u64> {
        self.timed("revision", self.inner.revision()).await
    }

    async fn revoked_since(&self, revision: u64) -> Result<RevokedSince> {
        self.timed("revoked_since", self.inner.revoked_since(revision))
            .await
    }

    async fn gateway_started(&self, gateway_id: &str, now: SystemTime) -> Result<()> {
        self.timed(
            "gateway_started",
            self.inner.gateway_started(gateway_id, now),
        )
        .await
    }

    async fn session_opened(&self, session: LiveSession) -> Result<()> {
        self.timed("session_opened", self.inner.session_opened(session))
            .await
    }

    async fn session_closed(&self, session_id: &str) -> Result<()> {
        self.timed("session_closed", self.inner.session_closed(session_id))
            .await
    }

    async fn live_sessions(&self) -> Result<Vec<LiveSession>> {
        self.timed("live_sessions", self.inner.live_sessions())
            .await
    }

    async fn request_kill(
        &self,
        session_id: &str,
        reason: &str,
        now: SystemTime,
    ) -> Result<KillQueued> {
        self.timed(
            "request_kill",
            self.inner.request_kill(session_id, reason, now),
        )
        .await
    }

    async fn kill_requests_for(&self, gateway_id: &str, after: i64) -> Result<Vec<KillRequest>> {
        self.timed(
            "kill_requests_for",
            self.inner.kill_requests_for(gateway_id, after),
        )
        .await
    }

    async fn last_kill_id(&self) -> Result<i64> {
        self.timed("last_kill_id", self.inner.last_kill_id()).await
    }

    async fn kill_handled(&self, id: i64, outcome: KillOutcome, now: SystemTime) -> Result<()> {
        self.timed("kill_handled", self.inner.kill_handled(id, outcome, now))
            .await
    }

    async fn kill_outcome(&self, id: i64) -> Result<Option<KillOutcome>> {
        self.timed("kill_outcome", self.inner.kill_outcome(id))
            .await
    }

    async fn recording_started(&self, start: RecordingStart) -> Result<()> {
        self.timed("recording_started", self.inner.recording_started(start))
            .await
    }

    async fn recording_channel_started(
        &self,
        session_id: &str,
        channel: ChannelStart,
    ) -> Result<()> {
        self.timed(
            "recording_channel_started",
            self.inner.recording_channel_started(session_id, channel),
        )
        .await
    }

    async fn recording_segment_uploaded(
        &self,
        session_id: &str,
        channel: &str,
        seq: u64,
    ) -> Result<()> {
        self.timed(
            "recording_segment_uploaded",
            self.inner
                .recording_segment_uploaded(session_id, channel, seq),
        )
        .await
    }

    async fn recording_status(
        &self,
        session_id: &str,
        status: RecordingStatus,
        reason: Option<String>,
    ) -> Result<()> {
        self.timed(
            "recording_status",
            self.inner.recording_status(session_id, status, reason),
        )
        .await
    }

    async fn recording_sealed(
        &self,
        row: RecordingRow,
        channels: Vec<RecordingChannel>,
    ) -> Result<()> {
        self.timed(
            "recording_sealed",
            self.inner.recording_sealed(row, channels),
        )
        .await
    }

    async fn recordings(&self, filter: RecordingFilter) -> Result<Vec<RecordingRow>> {
        self.timed("recordings", self.inner.recordings(filter))
            .await
    }

    async fn recording(
        &self,
        session_id: &str,
    ) -> Result<Option<(RecordingRow, Vec<RecordingChannel>)>> {
        self.timed("recording", self.inner.recording(session_id))
            .await
    }

    async fn recording_viewed(
        &self,
        session_id: &str,
        viewer: &str,
        now: SystemTime,
    ) -> Result<()> {
        self.timed(
            "recording_viewed",
            self.inner.recording_viewed(session_id, viewer, now),
        )
        .await
    }

    async fn recording_viewers(&self, session_ids: &[String]) -> Result<Vec<RecordingView>> {
        self.timed(
            "recording_viewers",
            self.inner.recording_viewers(session_ids),
        )
        .await
    }

    async fn web_session_create(&self, session: WebSession) -> Result<()> {
        self.timed("web_session_create", self.inner.web_session_create(session))
            .await
    }

    async fn web_session(&self, id_hash: &str, now: SystemTime) -> Result<Option<WebSession>> {
        self.timed("web_session", self.inner.web_session(id_hash, now))
            .await
    }

    async fn web_session_end(&self, id_hash: &str) -> Result<bool> {
        self.timed("web_session_end", self.inner.web_session_end(id_hash))
            .await
    }

    async fn web_sessions_live(
        &self,
        id_hashes: &[String],
        now: SystemTime,
    ) -> Result<Vec<String>> {
        self.timed(
            "web_sessions_live",
            self.inner.web_sessions_live(id_hashes, now),
        )
        .await
    }

    async fn web_handoff_create(&self, handoff: WebHandoff) -> Result<()> {
        self.timed("web_handoff_create", self.inner.web_handoff_create(handoff))
            .await
    }

    async fn web_handoff_redeem(
        &self,
        code_hash: &str,
        host: &str,
        nonce_hash: &str,
        session: HandoffSession,
        now: SystemTime,
    ) -> Result<Option<(WebSession, String)>> {
        self.timed(
            "web_handoff_redeem",
            self.inner
                .web_handoff_redeem(code_hash, host, nonce_hash, session, now),
        )
        .await
    }

    async fn web_login_start(&self, login: WebLogin) -> Result<()> {
        self.timed("web_login_start", self.inner.web_login_start(login))
            .await
    }

    async fn web_login_take(&self, state_hash: &str, now: SystemTime) -> Result<Option<WebLogin>> {
        self.timed("web_login_take", self.inner.web_login_take(state_hash, now))
            .await
    }

    async fn web_purge(&self, now: SystemTime) -> Result<usize> {
        self.timed("web_purge", self.inner.web_purge(now)).await
    }

    async fn ssh_link_create(&self, link: SshLink) -> Result<()> {
        self.timed("ssh_link_create", self.inner.ssh_link_create(link))
            .await
    }

    async fn ssh_link(&self, id_hash: &str) -> Result<Option<LinkRow>> {
        self.timed("ssh_link", self.inner.ssh_link(id_hash)).await
    }

    async fn ssh_link_approve(
        &self,
        id_hash: &str,
        approval: LinkApproval,
        now: SystemTime,
    ) -> Result<LinkApproved> {
        self.timed(
            "ssh_link_approve",
            self.inner.ssh_link_approve(id_hash, approval, now),
        )
        .await
    }

    async fn ssh_link_redeem(&self, id_hash: &str) -> Result<Option<LinkApproval>> {
        self.timed("ssh_link_redeem", self.inner.ssh_link_redeem(id_hash))
            .await
    }

    async fn ssh_link_close(&self, id_hash: &str) -> Result<()> {
        self.timed("ssh_link_close", self.inner.ssh_link_close(id_hash))
            .await
    }

    async fn text_index_replace(
        &self,
        session_id: &str,
        channel: &str,
        chunks: TextChunks,
    ) -> Result<TextIndexed> {
        self.timed(
            "text_index_replace",
            self.inner.text_index_replace(session_id, channel, chunks),
        )
        .await
    }

    async fn text_index_failed(
        &self,
        session_id: &str,
        channel: Option<&str>,
        reason: &str,
    ) -> Result<()> {
        self.timed(
            "text_index_failed",
            self.inner.text_index_failed(session_id, channel, reason),
        )
        .await
    }

    async fn text_index_clear(&self) -> Result<()> {
        self.timed("text_index_clear", self.inner.text_index_clear())
            .await
    }

    async fn text_unindexed(&self, limit: usize) -> Result<Vec<String>> {
        self.timed("text_unindexed", self.inner.text_unindexed(limit))
            .await
    }

    async fn text_index_state(&self, session_id: &str) -> Result<Vec<TextIndexState>> {
        self.timed("text_index_state", self.inner.text_index_state(session_id))
            .await
    }

    async fn text_search(&self, query: TextQuery) -> Result<TextPage> {
        self.timed("text_search", self.inner.text_search(query))
            .await
    }
}
