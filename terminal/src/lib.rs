//! The terminal model shared by the replay player, the web app and search:
//! a recording channel's screen at any time, fast.
//!
//! - [`Screen`] wraps the terminal emulator (avt, the engine inside
//!   asciinema-player, pinned exactly; nothing outside [`screen`] names
//!   it).
//! - [`Timeline`] is a recording as the steps that change its terminal.
//! - [`Index`] holds keyframes (a [`Snapshot`] every few seconds or
//!   kilobytes of output) and the text that was on screen, built in one
//!   pass and stored as a sidecar object that is checked against the
//!   recording before it is used.
//! - [`Query`] searches that text: the primary screen, what scrolled off
//!   it, and the alternate screen of full-screen programs.
//!
//! Depends on `recorder`'s reader types only: never on the gateway, never
//! on IO. Callers fetch the recording and the sidecar.

pub mod index;
mod packed;
pub mod screen;
pub mod search;
pub mod timeline;

pub use index::{
    Builder, HashReader, Index, IntoLines, Keyframe, Loaded, Policy, TextLine, TextLines,
    recording_hash, sidecar_key,
};
pub use screen::{Cell, Color, Dirty, MAX_SIDE, Screen, Snapshot, Style};
pub use search::{Hit, Query};
pub use timeline::{Change, SCROLLBACK, Step, Timeline};

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A terminal size of zero or beyond [`MAX_SIDE`].
    #[error("terminal size {cols}x{rows} is out of range (1 to {MAX_SIDE} each way)")]
    Size {
        /// Width.
        cols: u16,
        /// Height.
        rows: u16,
    },
    /// A sidecar that cannot be used, and why.
    #[error("keyframe sidecar unusable: {0}")]
    Sidecar(String),
    /// A search that cannot run, and why.
    #[error("search: {0}")]
    Query(String),
}

/// This crate's results.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests;
