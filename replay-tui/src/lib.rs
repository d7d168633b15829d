//! `gatehouse replay`: a terminal player for recordings.
//!
//! - [`Player`] is the state and the keys, with no terminal: tests drive it.
//! - [`view`] draws a player into a ratatui buffer: the recording at its
//!   own size (panned when the terminal is smaller), a side panel with who,
//!   where and the verification state, a timeline with an activity heatmap
//!   and markers, and a status line.
//! - [`run`] is the loop on a real terminal, restored on exit, on panic and
//!   on SIGTERM.
//! - [`export`] writes a time range as asciicast or text, without a UI.
//!
//! The screens come from the `terminal` crate's keyframe index; this crate
//! does no IO of its own beyond the terminal it draws on.

pub mod export;
mod pick;
mod player;
mod run;
pub mod view;

pub use pick::{Choice, pick};
pub use player::{LiveState, Player, Prompt, SPEEDS, clock, parse_clock};
pub use run::run;

/// A key, as the player understands it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// A printable character.
    Char(char),
    /// Enter.
    Enter,
    /// Escape.
    Esc,
    /// Backspace.
    Backspace,
    /// Arrows.
    Left,
    /// Right arrow.
    Right,
    /// Up arrow.
    Up,
    /// Down arrow.
    Down,
    /// Shift + left arrow.
    ShiftLeft,
    /// Shift + right arrow.
    ShiftRight,
    /// F1.
    F1,
}

/// Whether the recording passed verification when it was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verification {
    /// Signature and hash chain check out.
    Verified {
        /// Segments whose hashes were checked.
        segments: u64,
    },
    /// It failed, and was opened with `--force`: these are the problems.
    Failed(Vec<String>),
    /// A live session: there is no signed manifest yet. It is checked
    /// when the session ends.
    Unsealed,
}

/// What a live source sends a [`Player`] (see [`Player::live`]).
#[derive(Clone, Debug)]
pub enum Update {
    /// Steps recorded since the last update, in order.
    Steps(Vec<terminal::Step>),
    /// Something to tell the viewer, such as an outage being retried.
    Note(String),
    /// The session ended and everything it recorded was sent.
    Ended {
        /// Why, in words.
        reason: String,
        /// When, as text.
        ended: String,
        /// The sealed recording's verification, when it could be checked.
        verification: Option<Verification>,
    },
}

/// What the side panel shows about the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// The session id.
    pub session_id: String,
    /// The channel shown.
    pub channel: String,
    /// Who.
    pub identity: String,
    /// `login@route`.
    pub login_route: String,
    /// The target address.
    pub target: String,
    /// Start, as text.
    pub started: String,
    /// End, as text (empty while live).
    pub ended: String,
    /// Exit status, if the command exited.
    pub exit_status: Option<i64>,
    /// The certificate serial, if known.
    pub cert_serial: Option<u64>,
    /// The verification state.
    pub verification: Verification,
}
