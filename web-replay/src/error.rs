//! The web app's one error type.

/// What goes wrong in the web app.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A recording could not be read, verified or modelled.
    #[error("recording: {0}")]
    Recording(String),
    /// No such session or channel.
    #[error("{0}")]
    NotFound(String),
    /// A session's text could not be indexed for search. Never carries
    /// terminal text: a malformed recording is named by its line number.
    #[error("text index: session {session_id}: {reason}")]
    TextIndex {
        /// The session.
        session_id: String,
        /// What went wrong.
        reason: String,
        /// Whether trying again later may work (storage or the state
        /// database unreachable), rather than the recording being bad.
        transient: bool,
    },
}
