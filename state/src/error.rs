//! The state crate's one error type.

use std::path::PathBuf;

/// What can go wrong with the state database.
///
/// **Invariant:** no variant ever carries a refresh token or key bytes;
/// messages name files, rows and reasons only.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database could not be opened, migrated, read or written.
    #[error("state database {path}: {reason}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What went wrong, with what was being done.
        reason: String,
    },
    /// The refresh-token key file could not be read, created or used.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What went wrong with it.
        reason: String,
    },
    /// The caller passed something the store cannot hold (such as a
    /// fingerprint that is not `SHA256:...`).
    #[error("{0}")]
    Invalid(String),
    /// The store's worker could not run the request (the runtime is
    /// shutting down, or a worker panicked).
    #[error("state database unavailable: {0}")]
    Unavailable(String),
}

/// Results of the state crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
