//! The one error type of the recorder crate.

use std::path::PathBuf;

/// Everything that can go wrong while recording, storing or reading recordings.
///
/// Each variant carries the context an operator needs (a path, a session id, an
/// object key). Storage errors are never fatal to a session by themselves: the
/// caller decides, per route, whether to carry on (`best_effort`) or to end the
/// session (`strict`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A local spool file or directory could not be created, written or read.
    #[error("spool {path}: {source}")]
    Spool {
        /// The spool file or directory.
        path: PathBuf,
        /// The underlying IO error.
        #[source]
        source: std::io::Error,
    },
    /// Writing would take the spool past `spool_max_bytes`; the recording of this channel stops.
    #[error(
        "spool full for session {session_id}: {limit} bytes in use; raise recording.spool_max_bytes or restore storage"
    )]
    SpoolFull {
        /// The session whose write was refused.
        session_id: String,
        /// The configured limit.
        limit: u64,
    },
    /// The channel recording already failed or was closed, so nothing more can be recorded.
    #[error("recording of session {session_id} channel {channel} is closed: {reason}")]
    RecordingClosed {
        /// The session id.
        session_id: String,
        /// The channel name.
        channel: String,
        /// Why the recording no longer accepts events.
        reason: String,
    },
    /// The object store refused or failed a request.
    #[error("storage {key}: {source}")]
    Storage {
        /// The object key (or prefix) of the request.
        key: String,
        /// The object_store error.
        #[source]
        source: object_store::Error,
    },
    /// Storage did not finish a seal within the time it was given.
    #[error("storage did not answer within {seconds}s")]
    StorageTimeout {
        /// The time given, in whole seconds.
        seconds: u64,
    },
    /// The storage configuration is invalid (bad URL, missing bucket, unreadable credentials).
    #[error("storage configuration: {0}")]
    StorageConfig(String),
    /// The index in the state database could not be read or written.
    #[error("index: {0}")]
    Index(#[from] state::Error),
    /// A recording (asciicast or meta.json) could not be parsed.
    #[error("malformed recording {what}: {reason}")]
    Format {
        /// What was being parsed: an object key, a spool path or "asciicast line N".
        what: String,
        /// What was wrong with it.
        reason: String,
    },
    /// No recording with this session id is known to the index or the bucket.
    #[error("no recording for session {session_id}; try `gatehouse recordings reindex`")]
    NotFound {
        /// The session id that was looked up.
        session_id: String,
    },
    /// The signing key is unusable (wrong length or rejected by ring).
    #[error("signing key: {0}")]
    Key(String),
    /// A session with this id is already being recorded by this process.
    #[error("session {session_id} is already being recorded")]
    Duplicate {
        /// The session id.
        session_id: String,
    },
}

/// The recorder's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an IO error on `path` as a spool error.
    pub(crate) fn spool(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Spool { path, source }
    }

    /// Wraps an object_store error on `key` as a storage error.
    pub(crate) fn storage(key: impl ToString) -> impl FnOnce(object_store::Error) -> Error {
        let key = key.to_string();
        move |source| Error::Storage { key, source }
    }
}
