//! Gatehouse's telemetry: every metric family of a process ([`Metrics`])
//! and the listener that serves `/metrics`, `/healthz` and `/readyz`
//! ([`serve`]), plus [`store::Timed`], which times the state database at
//! its trait boundary.
//!
//! **Invariants:**
//! - label values are closed enums ([`labels`]) or names from the
//!   configuration (HTTP routes), never user names, session ids, keys,
//!   addresses or free text;
//! - counting is an atomic add on a child resolved once: no lock and no
//!   map lookup on the paths that carry bytes;
//! - this crate knows nothing of SSH, the gateway or the HTTP proxy; they
//!   depend on it.

pub mod labels;
mod metrics;
pub mod serve;
pub mod store;

pub use metrics::{ActiveGuard, ByLabel, ByTwo, Metrics, openmetrics_to_prometheus};
pub use prometheus_client::metrics::counter::Counter;
pub use serve::{Probe, Readiness};

/// What can go wrong in the telemetry crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry could not be written as text (a bug: writing to a
    /// `String` does not fail otherwise).
    #[error("cannot encode the metrics")]
    Encode,
    /// The listener failed.
    #[error("metrics listener: {0}")]
    Io(#[from] std::io::Error),
}
