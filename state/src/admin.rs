//! What administrators ask of running sessions, and which gateway holds
//! which live session so that only the holder answers.
//!
//! Every gateway process registers itself with a `gateway_id` and records
//! each session it admits and ends. `gatehouse sessions kill` looks the
//! session up, queues a request tagged with its holder, and waits; each
//! gateway reads only the requests addressed to it. A request for a
//! session no gateway holds is answered at once, by the store.

/// A request from `gatehouse sessions kill` to end a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillRequest {
    /// The request's id.
    pub id: i64,
    /// The session to end.
    pub session_id: String,
    /// Why, as the administrator said it.
    pub reason: String,
}

/// What the holder did about a [`KillRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillOutcome {
    /// The session was live there and has been ended.
    Ended,
    /// The holder no longer had the session (it ended meanwhile).
    NotFound,
}

impl KillOutcome {
    /// The word stored in the database and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            KillOutcome::Ended => "ended",
            KillOutcome::NotFound => "not_found",
        }
    }

    /// Parses [`KillOutcome::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ended" => Some(KillOutcome::Ended),
            "not_found" => Some(KillOutcome::NotFound),
            _ => None,
        }
    }
}

/// What [`Store::request_kill`](crate::Store::request_kill) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillQueued {
    /// Queued for the gateway that holds the session; wait on
    /// [`Store::kill_outcome`](crate::Store::kill_outcome) with `id`.
    Queued {
        /// The request's id.
        id: i64,
        /// The gateway that holds the session and will answer.
        gateway_id: String,
    },
    /// No gateway holds a live session with that id.
    NotLive,
}

/// A live session as the store knows it, for `gatehouse sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    /// The session id.
    pub session_id: String,
    /// The gateway that holds it.
    pub gateway_id: String,
    /// Who (email or sub).
    pub identity: String,
    /// The route.
    pub route: String,
    /// When it was admitted, Unix milliseconds.
    pub started_at_ms: u64,
}
