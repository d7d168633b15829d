//! The recording format: asciicast v3, written by us, read back by us.
//!
//! A recording is newline-delimited JSON: one header object, then one
//! `[interval, code, data]` array per event, where `interval` is the number of
//! seconds since the previous event (microsecond precision). Because intervals
//! are relative, uploaded segments concatenate without rewriting.
//!
//! # Event codes
//!
//! | code | meaning | data |
//! |---|---|---|
//! | `o` | output the client's terminal showed | text |
//! | `i` | input typed by the user (only when the route sets `record_input`) | text |
//! | `r` | terminal resize | `"COLSxROWS"` |
//! | `m` | marker: session start, policy events, file operations | label |
//! | `x` | exit status of the remote command | decimal status, as text |
//!
//! **File operations** (SFTP and SCP) are markers whose label starts with
//! [`FILE_OP_MARKER_PREFIX`] followed by a JSON [`FileOp`](crate::FileOp), for
//! example `gatehouse.file {"op":"write","path":"/etc/motd",...}`. The v3 spec
//! defines only the five codes above, and players differ on unknown codes, so
//! a marker keeps every player working (asciinema-player shows it as a seek
//! point, which is what an auditor wants) while [`read`] turns it back into a
//! structured [`Event::FileOp`].
//!
//! # Non-UTF-8 output
//!
//! asciicast strings are JSON, hence Unicode. Terminal output is bytes. The
//! encoder decodes each channel's byte stream *incrementally* as UTF-8
//! ([`Utf8Decoder`]): a multi-byte character split across two writes is carried
//! over (at most 3 bytes) and emitted whole with the next event, and each
//! maximal invalid subsequence becomes one U+FFFD REPLACEMENT CHARACTER — the
//! same rule as `String::from_utf8_lossy` and what xterm, VTE and asciinema's
//! own emulator display for such bytes. The recording therefore replays to the
//! screen the user saw. It is not byte-exact for binary garbage: the exact
//! invalid byte values are not kept (they are not displayable anyway); byte
//! counts in the metadata are of the raw stream.

mod json;
mod reader;
mod utf8;
mod v2;
mod v3;

pub use reader::{Cast, Reader, marker_event, parse_header, parse_line, read};
pub use utf8::Utf8Decoder;
pub use v2::to_v2;
pub use v3::{encode_event, encode_header, encode_text_event, format_interval, to_v3};

use serde::{Deserialize, Serialize};

use crate::FileOp;
use crate::meta::SessionInfo;

/// The prefix of a marker label that carries a JSON [`FileOp`].
pub const FILE_OP_MARKER_PREFIX: &str = "gatehouse.file ";

/// Terminal description in a v3 header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Term {
    /// Initial width in columns.
    pub cols: u16,
    /// Initial height in rows.
    pub rows: u16,
    /// The `TERM` the client asked for, such as `xterm-256color`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub term_type: Option<String>,
}

/// Gatehouse's own metadata in the header, under the key `gatehouse`.
///
/// Players ignore unknown header keys, so this namespaced object travels with
/// every copy of the recording.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatehouseHeader {
    /// Who and what the session is, as in `meta.json` (flattened: the same
    /// keys at the same level). `cert_serial` is this channel's
    /// certificate, since the gateway mints one per channel.
    #[serde(flatten)]
    pub session: SessionInfo,
    /// Which gateway recorded the session.
    pub gateway_id: String,
    /// The channel name within the session (e.g. `0`).
    pub channel: String,
    /// `shell`, `exec` or `subsystem`.
    pub kind: String,
}

/// The header line of an asciicast v3 recording.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always 3.
    pub version: u8,
    /// Initial terminal size and type.
    pub term: Term,
    /// Unix time in seconds when the channel started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    /// The command of an exec channel, or the subsystem name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// A human-readable title, such as `alice@prod-db`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Gatehouse metadata; absent in recordings from other tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gatehouse: Option<GatehouseHeader>,
}

/// One decoded event of a recording.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Terminal output.
    Output(String),
    /// User input.
    Input(String),
    /// Terminal resize to `cols` x `rows`.
    Resize {
        /// New width.
        cols: u16,
        /// New height.
        rows: u16,
    },
    /// A plain marker with its label.
    Marker(String),
    /// A file operation (a marker with [`FILE_OP_MARKER_PREFIX`]).
    FileOp(FileOp),
    /// Exit status of the remote command.
    Exit(i64),
    /// An event code this reader does not know, kept as is.
    Other {
        /// The code.
        code: String,
        /// The data.
        data: String,
    },
}

/// An event with its time.
#[derive(Clone, Debug, PartialEq)]
pub struct TimedEvent {
    /// Microseconds since the previous event (as stored in v3).
    pub interval_us: u64,
    /// Microseconds since the start of the recording (the sum of intervals).
    pub time_us: u64,
    /// What happened.
    pub event: Event,
}
