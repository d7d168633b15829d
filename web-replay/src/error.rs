//! The web app's one error type.

/// What can stop the web app from serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address could not be bound.
    #[error("web: cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("web: TLS: {0}")]
    Tls(String),
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
