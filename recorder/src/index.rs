//! The session index: the recorder's view of the state database's
//! recording tables (the `state` crate owns the schema and the file).
//!
//! The types here are what the CLI and the players read (`sessions list
//! --json` prints [`SessionRecord`] as it is); they convert to and from the
//! state crate's rows, so the index's storage can change without them.

use std::sync::Arc;

use serde::Serialize;
use state::{ChannelStart, RecordingChannel, RecordingFilter, RecordingRow, RecordingStart, Store};

use crate::Result;
use crate::meta::{SessionInfo, SessionMeta, Status};

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

/// Filters for [`Catalog::list`](crate::Catalog::list); `None` means any.
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

/// The index, written and read through the state store.
#[derive(Clone, Debug)]
pub(crate) struct Index {
    store: Arc<dyn Store>,
}

impl Index {
    pub(crate) fn new(store: Arc<dyn Store>) -> Index {
        Index { store }
    }

    /// Records a session that has just started.
    pub(crate) async fn session_started(
        &self,
        info: &SessionInfo,
        gateway_id: &str,
        started_at_ms: u64,
        prefix: &str,
    ) -> Result<()> {
        Ok(self
            .store
            .recording_started(start(info, gateway_id, started_at_ms, prefix))
            .await?)
    }

    /// Records a channel that has just started; its certificate serial
    /// becomes the session's when the session has none yet.
    pub(crate) async fn channel_started(
        &self,
        session_id: &str,
        channel: ChannelStart,
    ) -> Result<()> {
        Ok(self
            .store
            .recording_channel_started(session_id, channel)
            .await?)
    }

    /// Notes one more acknowledged segment of a channel.
    pub(crate) async fn segment_uploaded(
        &self,
        session_id: &str,
        channel: &str,
        seq: u64,
    ) -> Result<()> {
        Ok(self
            .store
            .recording_segment_uploaded(session_id, channel, seq)
            .await?)
    }

    /// Sets a session's state (and reason) without touching anything else.
    pub(crate) async fn set_status(
        &self,
        session_id: &str,
        status: Status,
        reason: Option<&str>,
    ) -> Result<()> {
        Ok(self
            .store
            .recording_status(session_id, status, reason.map(str::to_owned))
            .await?)
    }

    /// Stores a session's final state from its meta.json (also used by reindex).
    pub(crate) async fn upsert_meta(&self, meta: &SessionMeta, meta_key: &str) -> Result<()> {
        let row = RecordingRow {
            start: start(
                &meta.session,
                &meta.gateway_id,
                meta.started_at_ms,
                &meta.prefix,
            ),
            ended_at_ms: Some(meta.ended_at_ms),
            duration_ms: Some(meta.ended_at_ms.saturating_sub(meta.started_at_ms)),
            status: meta.status,
            reason: meta.reason.clone(),
            bytes: meta.channels.iter().map(|c| c.output_bytes).sum(),
            exit_status: meta.exit_status,
            meta_key: Some(meta_key.to_owned()),
        };
        let channels = meta
            .channels
            .iter()
            .map(|ch| RecordingChannel {
                channel: ch.channel.clone(),
                kind: ch.kind.clone(),
                command: ch.command.clone(),
                record_input: ch.record_input,
                output_bytes: ch.output_bytes,
                segments: u64::try_from(ch.segments.len()).unwrap_or(u64::MAX),
                sealed_key: Some(ch.sealed_key.clone()),
                exit_status: ch.exit_status,
            })
            .collect();
        Ok(self.store.recording_sealed(row, channels).await?)
    }

    /// Sessions matching `filter`, newest first.
    pub(crate) async fn list(&self, filter: &SessionFilter) -> Result<Vec<SessionRecord>> {
        let rows = self
            .store
            .recordings(RecordingFilter {
                identity: filter.identity.clone(),
                route: filter.route.clone(),
                since_ms: filter.since_ms,
                until_ms: filter.until_ms,
                status: filter.status,
                limit: filter.limit,
                ..RecordingFilter::default()
            })
            .await?;
        Ok(rows.into_iter().map(record).collect())
    }

    /// One session and its channels.
    pub(crate) async fn show(
        &self,
        session_id: &str,
    ) -> Result<Option<(SessionRecord, Vec<ChannelRecord>)>> {
        let found = self.store.recording(session_id).await?;
        Ok(found.map(|(row, channels)| {
            (
                record(row),
                channels
                    .into_iter()
                    .map(|c| ChannelRecord {
                        channel: c.channel,
                        kind: c.kind,
                        command: c.command,
                        record_input: c.record_input,
                        output_bytes: c.output_bytes,
                        segments: c.segments,
                        sealed_key: c.sealed_key,
                        exit_status: c.exit_status,
                    })
                    .collect(),
            )
        }))
    }
}

fn start(info: &SessionInfo, gateway_id: &str, started_at_ms: u64, prefix: &str) -> RecordingStart {
    RecordingStart {
        session_id: info.session_id.clone(),
        identity: info.identity.clone(),
        login: info.login.clone(),
        route: info.route.clone(),
        target: info.target.clone(),
        client_addr: info.client_addr.clone(),
        client_key_fingerprint: info.client_key_fingerprint.clone(),
        cert_serial: info.cert_serial,
        gateway_id: gateway_id.to_owned(),
        started_at_ms,
        prefix: prefix.to_owned(),
    }
}

fn record(row: RecordingRow) -> SessionRecord {
    let s = row.start;
    SessionRecord {
        info: SessionInfo {
            session_id: s.session_id,
            identity: s.identity,
            login: s.login,
            route: s.route,
            target: s.target,
            client_addr: s.client_addr,
            client_key_fingerprint: s.client_key_fingerprint,
            cert_serial: s.cert_serial,
        },
        gateway_id: s.gateway_id,
        started_at_ms: s.started_at_ms,
        ended_at_ms: row.ended_at_ms,
        duration_ms: row.duration_ms,
        status: row.status,
        reason: row.reason,
        bytes: row.bytes,
        exit_status: row.exit_status,
        prefix: s.prefix,
        meta_key: row.meta_key,
    }
}
