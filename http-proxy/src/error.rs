//! The crate's one error type.

/// What goes wrong starting or running the proxy. Per-request failures
/// are answered as pages and audit events, not errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The signing keys could not be read, written or used.
    #[error("HTTP signing keys: {0}")]
    Keys(String),
    /// A route's upstream TLS settings could not be used.
    #[error("http route {route}: {reason}")]
    Upstream {
        /// The route.
        route: String,
        /// Why.
        reason: String,
    },
}
