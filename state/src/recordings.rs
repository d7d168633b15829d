//! The recording index: one row per recorded session and per channel, so
//! recordings can be listed and found without reading object storage.
//!
//! The recorder writes it as a session moves through its states; the
//! objects in storage stay the truth (`gatehouse recordings reindex`
//! rebuilds the index from them).

use serde::{Deserialize, Serialize};

/// Where a recording is in its life. Every state is explicit; none means
/// "probably fine".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingStatus {
    /// The session is live and being spooled and uploaded.
    #[default]
    Recording,
    /// The session ended and its last segments and sealed object are being uploaded.
    Uploading,
    /// Complete, uploaded and signed.
    Sealed,
    /// The gateway stopped before the session ended; sealed from what the spool held.
    Interrupted,
    /// The recording could not be completed; see the reason.
    Failed,
}

impl RecordingStatus {
    /// Every state, in life order.
    pub const ALL: [RecordingStatus; 5] = [
        RecordingStatus::Recording,
        RecordingStatus::Uploading,
        RecordingStatus::Sealed,
        RecordingStatus::Interrupted,
        RecordingStatus::Failed,
    ];

    /// The name used in the index, the CLI and audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingStatus::Recording => "recording",
            RecordingStatus::Uploading => "uploading",
            RecordingStatus::Sealed => "sealed",
            RecordingStatus::Interrupted => "interrupted",
            RecordingStatus::Failed => "failed",
        }
    }

    /// Parses [`RecordingStatus::as_str`] names.
    pub fn parse(name: &str) -> Option<RecordingStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl std::fmt::Display for RecordingStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who and where a recorded session was: the part of an index row known
/// when it starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordingStart {
    /// The session id.
    pub session_id: String,
    /// The signed-in identity.
    pub identity: String,
    /// The login on the target.
    pub login: String,
    /// The route.
    pub route: String,
    /// The target `host:port`.
    pub target: String,
    /// The client's `ip:port`.
    pub client_addr: String,
    /// The client key's fingerprint.
    pub client_key_fingerprint: Option<String>,
    /// Serial of the certificate minted for the target, once known.
    pub cert_serial: Option<u64>,
    /// The gateway recording it.
    pub gateway_id: String,
    /// Start, Unix milliseconds.
    pub started_at_ms: u64,
    /// Key prefix of the session's objects.
    pub prefix: String,
}

/// One session in the index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordingRow {
    /// What was known at the start (the certificate serial is filled in
    /// from the first channel that carries one).
    pub start: RecordingStart,
    /// End, Unix milliseconds, once ended.
    pub ended_at_ms: Option<u64>,
    /// Duration in milliseconds, once ended.
    pub duration_ms: Option<u64>,
    /// The recording's state.
    pub status: RecordingStatus,
    /// Why, when the state is not a plain success.
    pub reason: Option<String>,
    /// Terminal output bytes across channels.
    pub bytes: u64,
    /// The first channel's exit status.
    pub exit_status: Option<i64>,
    /// Key of meta.json, once sealed.
    pub meta_key: Option<String>,
}

/// One recorded channel in the index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordingChannel {
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

/// A channel that has just started, for
/// [`Store::recording_channel_started`](crate::Store::recording_channel_started).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelStart {
    /// The channel's name.
    pub channel: String,
    /// `shell`, `exec` or `subsystem`.
    pub kind: String,
    /// Exec command or subsystem name.
    pub command: Option<String>,
    /// Whether input is recorded.
    pub record_input: bool,
    /// The serial of the certificate the channel's target connection was
    /// made with; fills the session's serial when that is still unknown.
    pub cert_serial: Option<u64>,
}

/// Filters for [`Store::recordings`](crate::Store::recordings); `None`
/// means any.
#[derive(Clone, Debug, Default)]
pub struct RecordingFilter {
    /// Sessions of this identity.
    pub identity: Option<String>,
    /// Sessions on this route.
    pub route: Option<String>,
    /// Sessions as this login on the target.
    pub login: Option<String>,
    /// Sessions whose target (`host:port`) contains this text.
    pub target: Option<String>,
    /// Started at or after (Unix ms).
    pub since_ms: Option<u64>,
    /// Started before (Unix ms).
    pub until_ms: Option<u64>,
    /// In progress at this instant (Unix ms): started at or before it and
    /// not ended before it.
    pub active_at_ms: Option<u64>,
    /// In this state.
    pub status: Option<RecordingStatus>,
    /// Lasted at least this long (ms); sessions still running have no
    /// duration and never match.
    pub min_duration_ms: Option<u64>,
    /// Lasted at most this long (ms).
    pub max_duration_ms: Option<u64>,
    /// Whose first channel exited with this status.
    pub exit_status: Option<i64>,
    /// With a match for this text on screen (as
    /// [`Store::text_search`](crate::Store::text_search) means it, found
    /// by the text index alone); only indexed sessions can match.
    pub text: Option<String>,
    /// Only sessions after this one in the newest-first order: the
    /// cursor of the next page.
    pub after: Option<RecordingCursor>,
    /// At most this many, newest first (0 = no limit).
    pub limit: usize,
}

/// A position in the newest-first order of recordings: the last row of a
/// page. Stable while sessions are added, unlike an offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordingCursor {
    /// The row's start (Unix ms).
    pub started_at_ms: u64,
    /// The row's session id (breaks ties between sessions that started in
    /// the same millisecond).
    pub session_id: String,
}

impl RecordingCursor {
    /// The cursor just past `row`.
    pub fn after(row: &RecordingRow) -> RecordingCursor {
        RecordingCursor {
            started_at_ms: row.start.started_at_ms,
            session_id: row.start.session_id.clone(),
        }
    }
}

/// Who has viewed a recording, for the "viewed by" column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordingView {
    /// The session viewed.
    pub session_id: String,
    /// The viewer (an email or identity label).
    pub viewer: String,
    /// Their first view (Unix ms).
    pub first_at_ms: u64,
    /// Their last view (Unix ms).
    pub last_at_ms: u64,
    /// How many times.
    pub count: u64,
}
