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

pub use pick::pick;
pub use player::{Player, Prompt, SPEEDS, clock, parse_clock};
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
