//! Audit events that more than one module writes.
//!
//! Every audit event goes to the `audit` tracing target with an `event`
//! field and stable field names (`session_id`, `peer`, `identity`,
//! `route`, `login`, `reason`, ...), so operators can route and parse them.

use crate::{Error, Side};

/// A target-side failure: what the user saw and the detail behind it.
pub fn target_error(session_id: &str, route: &str, login: &str, error: &Error) {
    let side = match error.side() {
        Side::Client => "client",
        Side::Target => "target",
        Side::Internal => "internal",
    };
    tracing::warn!(
        target: "audit",
        event = "target.error",
        session_id,
        route,
        login,
        side,
        user_line = %error.user_line(),
        detail = %error,
    );
}
