//! Session recording for Gatehouse: asciicast v3, a crash-safe spool, segments
//! streamed to object storage, sealed and signed recordings, and the index.
//!
//! **Invariant:** this crate knows no SSH types. The gateway feeds it bytes and
//! events per channel ([`ChannelRecorder`]), and signs through the [`Signer`]
//! trait.
//!
//! # Lifecycle (what the gateway calls)
//!
//! 1. At startup: [`Recorder::open`], then [`Recorder::recover`] to seal the
//!    spools an earlier process left behind (status `interrupted`).
//! 2. Strict routes: [`Recorder::probe_storage`] before admitting a session.
//! 3. Per session: [`Recorder::start_session`] → [`Session::open_channel`] per
//!    recorded channel → [`ChannelRecorder::output`] (before forwarding to the
//!    client), [`ChannelRecorder::input`], [`ChannelRecorder::resize`],
//!    [`ChannelRecorder::file_op`] (from [`SftpTracker`] / [`Transfer`]),
//!    [`ChannelRecorder::exit`] → [`Session::seal`].
//! 4. The CLI and replay tools use [`Catalog`]: list, show, verify, export, reindex.
//!
//! See [`asciicast`] for the format, file-operation markers and how non-UTF-8
//! output is encoded.

pub mod asciicast;
mod bundle;
mod catalog;
mod error;
mod fileop;
pub mod index;
pub mod meta;
mod recording;
pub mod sftp;
pub mod sign;
pub mod storage;
pub mod stream;
pub mod tail;
mod time;
pub mod transfer;

pub use bundle::{BUNDLE_META, verify_bundle};
pub use catalog::{Catalog, ExportFormat, VerifyReport, decompress, sealed_reader};
pub use error::{Error, Result};
pub use fileop::{FileOp, FileOpKind};
pub use index::{ChannelRecord, SessionFilter, SessionRecord};
pub use meta::{SessionInfo, SignedMeta, Status};
pub use recording::{
    ChannelKind, ChannelRecorder, ChannelSpec, Format, Health, Observer, Recorder, RecorderConfig,
    SealReport, Session,
};
pub use sftp::SftpTracker;
pub use sign::{Ed25519Signer, Signer};
pub use storage::{S3Config, S3Credentials, Storage, StorageConfig};
pub use tail::Tail;
pub use transfer::Transfer;
