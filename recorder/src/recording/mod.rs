//! Live recording: the spool, segment upload, seal and recovery.
//!
//! ```text
//! ChannelRecorder::output ──write(2)──▶ spool file ──every segment_interval──▶ NNNNNNNN.part.zst
//!        (caller's task)                  (fsync ≤ 1 s)        (uploader task)      (hash chained)
//! Session::seal ──▶ last segments ──▶ <channel>.cast.zst ──▶ meta.json (signed) ──▶ index
//! Recorder::recover (startup) ──▶ same seal path for spools left behind, status `interrupted`
//! ```
//!
//! **Backpressure.** An event is written to the spool file with one `write(2)`
//! before the call returns, so in strict mode the caller forwards output to the
//! client only after it is in the spool (in the page cache; fsynced within
//! `fsync_interval`). Nothing is queued in memory: uploads read the spool file,
//! so a storage outage grows the spool on disk, up to `spool_max_bytes`, never
//! memory. Per channel the recorder keeps one reusable line buffer: output is
//! decoded and escaped straight into it, one event of at most 8 KiB of input
//! at a time (larger writes are split), so it holds about 8 KiB for text. A
//! flood of control characters can make one line up to six times its input
//! (`\u00xx`); a buffer that grew past 64 KiB is freed after its event.
//!
//! **Crash safety.** A process kill loses nothing that was written (the kernel
//! keeps it); a machine crash loses at most `fsync_interval` (1 s). Uploaded
//! segments are listed in a `<channel>.segments` sidecar (fsynced after each
//! upload), so recovery re-uploads only what is missing. A re-upload of the same
//! sequence number overwrites the same key: nothing is duplicated.
//!
//! **Where the code is.** One file per job, and the dependencies run one
//! way, so each job can be read (and changed) without the others:
//!
//! - `spool.rs`: the small files a session's spool directory holds besides
//!   the spool itself (`session.json`, `<channel>.end`) and the synced writes
//!   that make them crash-safe. It uses nothing else in this module.
//! - this file: the public types, the state shared by all jobs
//!   (`RecorderInner`, `SessionShared`, `ChannelShared`) and
//!   `Recorder::start_session`, which starts the uploader.
//! - `writer.rs`: `Session::open_channel` and `ChannelRecorder`, the
//!   caller's side: the line buffer, spool writes and spool-size accounting.
//! - `upload.rs`: the uploader task, hash-chained segments and the
//!   `.segments` sidecar.
//! - `seal.rs`: `Session::seal` and the seal path shared with recovery; it
//!   uploads the last segments through `upload.rs`.
//! - `recovery.rs`: `Recorder::recover`, which rebuilds a session from its
//!   spool and seals it through `seal.rs`.
//!
//! `writer.rs` imports none of `upload.rs`, `seal.rs` or `recovery.rs` (it
//! wakes the uploader only through `SessionShared::wake`), and `upload.rs`
//! does not import `seal.rs`.

mod recovery;
mod seal;
mod spool;
mod upload;
mod writer;

pub use writer::ChannelRecorder;

use audit::{Event, SessionId};
use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use crate::asciicast::Term;
use crate::catalog::Catalog;
use crate::meta::{SessionInfo, Status};
use crate::sign::Signer;
use crate::storage::StorageConfig;
use crate::time::{now_ms, utc_date};
use crate::{Error, Result};

use spool::{SpooledSession, dir_size, write_json_synced};
use upload::uploader;

/// zstd level of sealed recordings. Level 3 (zstd's default) compresses
/// terminal text to about a tenth, at several times the speed of level 9,
/// whose extra few percent cost most of the gateway's CPU at seal time.
const SEAL_ZSTD_LEVEL: i32 = 3;

/// In a spool directory: why a session's recording failed while it was
/// live, written when its seal begins, so that recovery seals it `failed`.
const FAILURE_FILE: &str = "failure.json";

/// Seals that talk to storage at once. When hundreds of sessions end
/// together (a gateway drained, a network blip), each seal still gets the
/// storage it needs inside its time limit instead of all of them sharing
/// it; the limit starts once a seal's turn has come.
const CONCURRENT_SEALS: usize = 32;

/// Settings of the recorder; [`RecorderConfig::new`] fills in the defaults.
#[derive(Clone, Debug)]
pub struct RecorderConfig {
    /// Where spool files live, e.g. `<state_dir>/spool`. Must be on local disk.
    pub spool_dir: PathBuf,
    /// Where recordings are uploaded.
    pub storage: StorageConfig,
    /// Names this gateway in recordings and probe objects.
    pub gateway_id: String,
    /// Upload new spool bytes at least this often (default 5 s).
    pub segment_interval: Duration,
    /// ... or as soon as this many bytes are waiting (default 1 MiB); also the largest segment.
    pub segment_bytes: u64,
    /// All spool files together may not grow past this (default 1 GiB).
    pub spool_max_bytes: u64,
    /// fsync spool files at least this often (default 1 s).
    pub fsync_interval: Duration,
    /// First wait after a failed upload; doubles up to `retry_max_backoff` (default 250 ms).
    pub retry_initial_backoff: Duration,
    /// Longest wait between upload attempts (default 5 s).
    pub retry_max_backoff: Duration,
    /// How long sealing keeps retrying, from its turn, before the recording
    /// is left `uploading` in the spool for the next recovery (default 60 s).
    pub seal_timeout: Duration,
}

impl RecorderConfig {
    /// A config with the documented defaults.
    pub fn new(spool_dir: impl Into<PathBuf>, storage: StorageConfig) -> Self {
        RecorderConfig {
            spool_dir: spool_dir.into(),
            storage,
            gateway_id: "gatehouse".into(),
            segment_interval: Duration::from_secs(5),
            segment_bytes: 1024 * 1024,
            spool_max_bytes: 1024 * 1024 * 1024,
            fsync_interval: Duration::from_secs(1),
            retry_initial_backoff: Duration::from_millis(250),
            retry_max_backoff: Duration::from_secs(5),
            seal_timeout: Duration::from_secs(60),
        }
    }
}

/// What kind of channel is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// An interactive shell (with or without a pty).
    Shell,
    /// An exec request; `command` holds the command.
    Exec,
    /// A subsystem such as `sftp`; `command` holds its name.
    Subsystem,
}

impl ChannelKind {
    fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Shell => "shell",
            ChannelKind::Exec => "exec",
            ChannelKind::Subsystem => "subsystem",
        }
    }
}

/// How a channel is recorded, chosen by what it carries (issue 15).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// A terminal (a shell, or a command with a pty): asciicast v3, the
    /// screen the user saw.
    #[default]
    Cast,
    /// Anything else (`rsync`, `git`, `tar c`, `cat file`): the exact
    /// bytes of stdout, stderr and (with `record_input`) stdin, framed
    /// ([`crate::stream`]).
    Stream,
}

impl Format {
    /// The spool file's and the sealed object's extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Cast => "cast",
            Format::Stream => "stream",
        }
    }

    /// The zstd level of this format's segments. Terminal text is small
    /// and compresses well, so a slower level pays; bulk streams must keep
    /// up with the wire, so the fastest (binary data barely compresses).
    pub(crate) fn zstd_level(self) -> i32 {
        match self {
            Format::Cast => SEAL_ZSTD_LEVEL,
            Format::Stream => 1,
        }
    }

    /// The length of the longest prefix of `data`, which starts at a
    /// record boundary, made of whole records (lines or frames): where a
    /// segment may be cut.
    pub(crate) fn whole(self, data: &[u8]) -> usize {
        match self {
            Format::Cast => data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1),
            Format::Stream => crate::stream::whole_frames(data),
        }
    }
}

/// Describes a channel when its recording starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSpec {
    /// A name unique within the session, e.g. the SSH channel number `0`.
    /// Used in object keys: characters outside `[A-Za-z0-9_-]` become `_`.
    pub channel: String,
    /// Shell, exec or subsystem.
    pub kind: ChannelKind,
    /// The exec command or the subsystem name.
    pub command: Option<String>,
    /// Initial terminal size and `TERM` (80x24 when there is no pty).
    pub term: Term,
    /// Record input events (the route's `record_input`); off by default because keystrokes hold passwords.
    pub record_input: bool,
    /// Serial of the certificate minted for this channel's target login
    /// (the gateway mints one per channel); falls back to the session's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_serial: Option<u64>,
}

/// What a channel's spool directory keeps of it (`<channel>.channel.json`):
/// its spec and format, for recovery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SpooledChannel {
    #[serde(flatten)]
    pub(crate) spec: ChannelSpec,
    /// Spools written before formats existed are casts.
    #[serde(default)]
    pub(crate) format: Format,
}

/// The outcome of sealing one session, also returned by recovery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SealReport {
    /// The session.
    pub session_id: String,
    /// `sealed`, `interrupted` or `failed`; `uploading` when storage did
    /// not answer in time and the spool is kept for
    /// [`Recorder::recover`](crate::Recorder::recover).
    pub status: Status,
    /// Why it is not `sealed`.
    pub reason: Option<String>,
    /// The meta.json key, when one was written.
    pub meta_key: Option<String>,
}

/// A live session's recording health, for strict routes to act on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// Spooled bytes not yet acknowledged by storage.
    pub pending_bytes: u64,
    /// The last upload error, cleared by the next success.
    pub last_upload_error: Option<String>,
    /// Set when a channel can no longer be recorded (spool full or unwritable).
    pub failure: Option<String>,
}

/// Told about uploads as they happen, for metrics (issue 16). The
/// recorder knows nothing of how they are counted; the gateway implements
/// this over its metrics. Each method is called from an uploader task and
/// must not block.
pub trait Observer: Send + Sync {
    /// An upload pass failed (storage unavailable or refusing).
    fn upload_failed(&self) {}
    /// Recorded bytes that had waited `waited` for storage were uploaded.
    fn uploaded(&self, waited: Duration) {
        let _ = waited;
    }
}

/// Shared by all sessions of one recorder.
struct RecorderInner {
    /// Who hears about uploads, once set.
    observer: std::sync::OnceLock<Arc<dyn Observer>>,
    config: RecorderConfig,
    catalog: Catalog,
    signer: Arc<dyn Signer>,
    /// Bytes in all spool files of this recorder.
    spool_total: AtomicU64,
    /// Sessions recorded by this process, which recovery must leave alone.
    live: Mutex<HashSet<String>>,
    /// Held while recovery runs: one at a time, or two would seal the same
    /// spool.
    recovering: tokio::sync::Mutex<()>,
    /// Turns at storage for seals; see [`CONCURRENT_SEALS`].
    seals: tokio::sync::Semaphore,
}

/// The recording service: one per gateway process.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<RecorderInner>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Opens the storage backend and the spool directory, with the index in
    /// `store` (the state database). Contacts no server; call
    /// [`Recorder::recover`] next, once, at startup.
    pub fn open(
        config: RecorderConfig,
        signer: Arc<dyn Signer>,
        store: Arc<dyn state::Store>,
    ) -> Result<Recorder> {
        std::fs::create_dir_all(&config.spool_dir).map_err(Error::spool(&config.spool_dir))?;
        let catalog = Catalog::open(store, &config.storage)?;
        let spool_total = dir_size(&config.spool_dir);
        Ok(Recorder {
            inner: Arc::new(RecorderInner {
                observer: std::sync::OnceLock::new(),
                config,
                catalog,
                signer,
                spool_total: AtomicU64::new(spool_total),
                live: Mutex::new(HashSet::new()),
                recovering: tokio::sync::Mutex::new(()),
                seals: tokio::sync::Semaphore::new(CONCURRENT_SEALS),
            }),
        })
    }

    /// Tells `observer` about uploads from now on; only the first call
    /// counts.
    pub fn observe(&self, observer: Arc<dyn Observer>) {
        let _ = self.inner.observer.set(observer);
    }

    /// Read access: list, show, verify, export, reindex.
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// Writes a small probe object; strict routes refuse sessions when this fails.
    pub async fn probe_storage(&self) -> Result<()> {
        self.inner
            .catalog
            .storage
            .probe(&self.inner.config.gateway_id)
            .await
    }

    /// Bytes currently held in spool files.
    pub fn spool_bytes(&self) -> u64 {
        self.inner.spool_total.load(Ordering::Relaxed)
    }

    /// Starts recording a session: creates its spool directory, indexes it as
    /// `recording`, and starts its uploader task (needs a tokio runtime).
    pub async fn start_session(&self, info: SessionInfo) -> Result<Session> {
        let mut info = info;
        info.session_id = sanitize(&info.session_id);
        let session_id = info.session_id.clone();
        {
            let mut live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
            if !live.insert(session_id.clone()) {
                return Err(Error::Duplicate { session_id });
            }
        }
        let started_at_ms = now_ms();
        let (y, m, d) = utc_date(started_at_ms);
        let prefix = format!("sessions/{y:04}/{m:02}/{d:02}/{session_id}");
        let dir = self.inner.config.spool_dir.join(&session_id);
        let result = async {
            std::fs::create_dir_all(&dir).map_err(Error::spool(&dir))?;
            let spooled = SpooledSession {
                info: info.clone(),
                gateway_id: self.inner.config.gateway_id.clone(),
                started_at_ms,
                prefix: prefix.clone(),
            };
            write_json_synced(&dir.join("session.json"), &spooled)?;
            self.inner
                .catalog
                .index
                .session_started(&info, &self.inner.config.gateway_id, started_at_ms, &prefix)
                .await
        }
        .await;
        if let Err(e) = result {
            self.inner
                .live
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&session_id);
            return Err(e);
        }
        Event::RecordingStarted {
            session_id: SessionId::new(session_id.clone()),
            status: Status::Recording.as_str(),
        }
        .emit();
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(SessionShared {
            recorder: Arc::clone(&self.inner),
            info,
            started_at_ms,
            prefix,
            dir,
            channels: Mutex::new(Vec::new()),
            wake: Notify::new(),
            last_upload_error: Mutex::new(None),
        });
        let task = tokio::spawn(uploader(Arc::clone(&shared), stop_rx));
        Ok(Session {
            shared,
            stop: stop_tx,
            task: Some(task),
        })
    }
}

/// The state of one live (or recovered) channel, shared by writer, uploader and sealer.
struct ChannelShared {
    spec: ChannelSpec,
    /// Terminal text or exact bytes.
    format: Format,
    /// The spool file, opened for appending.
    file: File,
    spool_path: PathBuf,
    segments_path: PathBuf,
    /// Spool bytes that are complete lines.
    committed: AtomicU64,
    /// Spool bytes acknowledged by storage.
    acked: AtomicU64,
    /// Bytes written since the last fsync.
    dirty: AtomicBool,
    output_bytes: AtomicU64,
    exit_status: Mutex<Option<i64>>,
    /// Set when the channel recording stopped; later writes fail with this reason.
    failure: Mutex<Option<String>>,
    /// Set when the writer closed the channel (its `.end` file is written).
    closed: AtomicBool,
    /// Set when sealing began; later writes are refused.
    sealed: AtomicBool,
    /// Upload progress; held across the upload so only one runs per channel.
    upload: tokio::sync::Mutex<UploadState>,
}

/// Where a channel's uploads stand. The sequence number and the chain advance
/// together, and only after a segment is listed in the `.segments` sidecar, so
/// a retry after a failure uploads the same segment under the same key.
struct UploadState {
    next_seq: u64,
    chain: [u8; 32],
    /// Live channels: a local file holding each uploaded segment's zstd
    /// frame, in order. zstd frames concatenate, so at seal this file *is*
    /// the sealed recording and nothing is compressed twice. `None` after
    /// recovery (a crash may have cut it short) or a failed append; the
    /// seal then compresses the spool instead.
    frames: Option<PathBuf>,
    /// While `frames` is kept: the SHA-256 of every spool byte uploaded so
    /// far and of every frame kept, and the frames' length, so the seal
    /// reads neither the spool nor the frames again to hash them.
    hashes: Option<RunningHashes>,
}

/// The hashes of a live channel's recording, advanced segment by segment.
#[derive(Clone)]
struct RunningHashes {
    raw: ring::digest::Context,
    stored: ring::digest::Context,
    stored_len: u64,
}

impl RunningHashes {
    fn new() -> Self {
        RunningHashes {
            raw: ring::digest::Context::new(&ring::digest::SHA256),
            stored: ring::digest::Context::new(&ring::digest::SHA256),
            stored_len: 0,
        }
    }
}

/// State of one live session, shared by its handles and its uploader task.
struct SessionShared {
    recorder: Arc<RecorderInner>,
    info: SessionInfo,
    started_at_ms: u64,
    prefix: String,
    dir: PathBuf,
    channels: Mutex<Vec<Arc<ChannelShared>>>,
    /// Wakes the uploader early (segment_bytes reached).
    wake: Notify,
    last_upload_error: Mutex<Option<String>>,
}

/// A session being recorded. Open a [`ChannelRecorder`] per recorded channel,
/// then call [`Session::seal`] when the session ends. Dropping it without
/// sealing leaves the spool for [`Recorder::recover`].
pub struct Session {
    shared: Arc<SessionShared>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("session_id", &self.shared.info.session_id)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The session id (sanitized for object keys).
    pub fn id(&self) -> &str {
        &self.shared.info.session_id
    }

    /// The key prefix of this session's objects.
    pub fn prefix(&self) -> &str {
        &self.shared.prefix
    }

    /// Upload progress and failures, for strict routes to end sessions whose
    /// recording can no longer be persisted.
    pub fn health(&self) -> Health {
        let channels = self
            .shared
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Health {
            pending_bytes: channels
                .iter()
                .map(|c| {
                    c.committed
                        .load(Ordering::Relaxed)
                        .saturating_sub(c.acked.load(Ordering::Relaxed))
                })
                .sum(),
            last_upload_error: self
                .shared
                .last_upload_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            failure: channels
                .iter()
                .find_map(|c| c.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Dropped without seal (the gateway crashed or gave up): stop uploading
        // and leave the spool for recovery.
        let _ = self.stop.send(true);
        if self.task.is_some() {
            self.shared
                .recorder
                .live
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.shared.info.session_id);
        }
    }
}

/// Keeps names safe for object keys and file names.
fn sanitize(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned.starts_with('.') {
        format!("_{cleaned}")
    } else {
        cleaned
    }
}
