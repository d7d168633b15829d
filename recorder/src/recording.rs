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
//! decoded and escaped straight into it, one event of at most 16 KiB of input
//! at a time (larger writes are split), so it holds about 16 KiB for text. A
//! flood of control characters can make one line up to six times its input
//! (`\u00xx`); a buffer that grew past 64 KiB is freed after its event.
//!
//! **Crash safety.** A process kill loses nothing that was written (the kernel
//! keeps it); a machine crash loses at most `fsync_interval` (1 s). Uploaded
//! segments are listed in a `<channel>.segments` sidecar (fsynced after each
//! upload), so recovery re-uploads only what is missing. A re-upload of the same
//! sequence number overwrites the same key: nothing is duplicated.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, watch};

use crate::asciicast::{self, FILE_OP_MARKER_PREFIX, GatehouseHeader, Header, Term, Utf8Decoder};
use crate::catalog::Catalog;
use crate::meta::{
    ChannelMeta, SegmentMeta, SessionInfo, SessionMeta, SignedMeta, Status, chain_next, chain_seed,
    sha256,
};
use crate::sign::{Signer, hex, unhex};
use crate::storage::StorageConfig;
use crate::time::{now_ms, utc_date};
use crate::{Error, FileOp, Result};

/// zstd level of sealed recordings. Level 3 (zstd's default) compresses
/// terminal text to about a tenth, at several times the speed of level 9,
/// whose extra few percent cost most of the gateway's CPU at seal time.
const SEAL_ZSTD_LEVEL: i32 = 3;

/// Largest slice of output encoded as one event; bigger writes are split so
/// the line buffer stays small. Escaping can make a byte six (`\u00XX`), so
/// 8 KiB keeps even an event of control characters under the 64 KiB a
/// recording may hold in buffers.
const MAX_EVENT_BYTES: usize = 8 * 1024;

/// Settings of the recorder; [`RecorderConfig::new`] fills in the defaults.
#[derive(Clone, Debug)]
pub struct RecorderConfig {
    /// The gateway's state database, `<state_dir>/gatehouse.db`, shared with the gateway.
    pub state_db: PathBuf,
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
    /// How long sealing keeps retrying before the recording is marked `failed`
    /// and left in the spool for the next start (default 60 s).
    pub seal_timeout: Duration,
}

impl RecorderConfig {
    /// A config with the documented defaults.
    pub fn new(
        state_db: impl Into<PathBuf>,
        spool_dir: impl Into<PathBuf>,
        storage: StorageConfig,
    ) -> Self {
        RecorderConfig {
            state_db: state_db.into(),
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

/// The outcome of sealing one session, also returned by recovery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SealReport {
    /// The session.
    pub session_id: String,
    /// `sealed`, `interrupted` or `failed`.
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

/// Shared by all sessions of one recorder.
struct RecorderInner {
    config: RecorderConfig,
    catalog: Catalog,
    signer: Arc<dyn Signer>,
    /// Bytes in all spool files of this recorder.
    spool_total: AtomicU64,
    /// Sessions recorded by this process, which recovery must leave alone.
    live: Mutex<HashSet<String>>,
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
    /// Opens the index, the storage backend and the spool directory. Contacts
    /// no server; call [`Recorder::recover`] next, once, at startup.
    pub fn open(config: RecorderConfig, signer: Arc<dyn Signer>) -> Result<Recorder> {
        std::fs::create_dir_all(&config.spool_dir).map_err(Error::spool(&config.spool_dir))?;
        let catalog = Catalog::open(&config.state_db, &config.storage)?;
        let spool_total = dir_size(&config.spool_dir);
        Ok(Recorder {
            inner: Arc::new(RecorderInner {
                config,
                catalog,
                signer,
                spool_total: AtomicU64::new(spool_total),
                live: Mutex::new(HashSet::new()),
            }),
        })
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
    pub fn start_session(&self, info: SessionInfo) -> Result<Session> {
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
        let result = (|| {
            std::fs::create_dir_all(&dir).map_err(Error::spool(&dir))?;
            let spooled = SpooledSession {
                info: info.clone(),
                gateway_id: self.inner.config.gateway_id.clone(),
                started_at_ms,
                prefix: prefix.clone(),
            };
            write_json_synced(&dir.join("session.json"), &spooled)?;
            self.inner.catalog.index.session_started(
                &info,
                &self.inner.config.gateway_id,
                started_at_ms,
                &prefix,
            )
        })();
        if let Err(e) = result {
            self.inner
                .live
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&session_id);
            return Err(e);
        }
        tracing::info!(target: "audit", event = "recording.started", session_id, status = "recording");
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

    /// Seals every spool left behind by an earlier process, as `interrupted`
    /// (or `sealed`, if that session had already ended and only its upload was
    /// missing). Call once at startup, before accepting sessions.
    pub async fn recover(&self) -> Vec<SealReport> {
        let mut reports = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.inner.config.spool_dir) else {
            return reports;
        };
        let dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.join("session.json").is_file())
            .collect();
        for dir in dirs {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if self
                .inner
                .live
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&name)
            {
                continue;
            }
            match recover_session(&self.inner, &dir).await {
                Ok(report) => reports.push(report),
                Err(e) => {
                    tracing::warn!(target: "audit", event = "recording.failed", session_id = name, status = "failed", reason = %e);
                    reports.push(SealReport {
                        session_id: name,
                        status: Status::Failed,
                        reason: Some(e.to_string()),
                        meta_key: None,
                    });
                }
            }
        }
        reports
    }
}

/// session.json in a session's spool directory.
#[derive(Serialize, Deserialize)]
struct SpooledSession {
    info: SessionInfo,
    gateway_id: String,
    started_at_ms: u64,
    prefix: String,
}

/// `<channel>.end` in the spool: the channel finished normally.
#[derive(Serialize, Deserialize, Default)]
struct ChannelEnd {
    exit_status: Option<i64>,
    output_bytes: u64,
}

/// The state of one live (or recovered) channel, shared by writer, uploader and sealer.
struct ChannelShared {
    spec: ChannelSpec,
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

struct UploadState {
    next_seq: u64,
    chain: [u8; 32],
    /// Live channels: a local file holding each uploaded segment's zstd
    /// frame, in order. zstd frames concatenate, so at seal this file *is*
    /// the sealed recording and nothing is compressed twice. `None` after
    /// recovery (a crash may have cut it short) or a failed append; the
    /// seal then compresses the spool instead.
    frames: Option<PathBuf>,
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

    /// Starts recording a channel: writes the asciicast header to a new spool file.
    pub fn open_channel(&self, spec: ChannelSpec) -> Result<ChannelRecorder> {
        let mut spec = spec;
        spec.channel = sanitize(&spec.channel);
        let inner = &self.shared.recorder;
        let spool_path = self.shared.dir.join(format!("{}.cast", spec.channel));
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .append(true)
            .open(&spool_path)
            .map_err(Error::spool(&spool_path))?;
        let info = &self.shared.info;
        let header = Header {
            version: 3,
            term: spec.term.clone(),
            timestamp: Some(self.shared.started_at_ms / 1000),
            command: spec.command.clone(),
            title: Some(format!("{}@{} ({})", info.login, info.route, info.identity)),
            gatehouse: Some(GatehouseHeader {
                session: SessionInfo {
                    cert_serial: spec.cert_serial.or(info.cert_serial),
                    ..info.clone()
                },
                gateway_id: inner.config.gateway_id.clone(),
                channel: spec.channel.clone(),
                kind: spec.kind.as_str().into(),
            }),
        };
        write_json_synced(
            &self
                .shared
                .dir
                .join(format!("{}.channel.json", spec.channel)),
            &spec,
        )?;
        let shared = Arc::new(ChannelShared {
            segments_path: self.shared.dir.join(format!("{}.segments", spec.channel)),
            file,
            spool_path,
            committed: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            dirty: AtomicBool::new(false),
            output_bytes: AtomicU64::new(0),
            exit_status: Mutex::new(None),
            failure: Mutex::new(None),
            closed: AtomicBool::new(false),
            sealed: AtomicBool::new(false),
            upload: tokio::sync::Mutex::new(UploadState {
                next_seq: 0,
                chain: chain_seed(&info.session_id, &spec.channel),
                frames: Some(self.shared.dir.join(format!("{}.frames.zst", spec.channel))),
            }),
            spec,
        });
        inner.catalog.index.channel_started(
            &info.session_id,
            &shared.spec.channel,
            shared.spec.kind.as_str(),
            shared.spec.command.as_deref(),
            shared.spec.record_input,
        )?;
        let mut recorder = ChannelRecorder {
            session: Arc::clone(&self.shared),
            channel: Arc::clone(&shared),
            line: Vec::new(),
            output_decoder: Utf8Decoder::new(),
            input_decoder: Utf8Decoder::new(),
            start: Instant::now(),
            last_us: 0,
        };
        let mut line = Vec::new();
        asciicast::encode_header(&header, &mut line);
        recorder.append(&line)?;
        self.shared
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(shared);
        Ok(recorder)
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

    /// Ends the recording: uploads the last segments, the sealed `.cast.zst`
    /// per channel and the signed meta.json, updates the index and removes the
    /// spool. Retries storage for up to `seal_timeout`; after that the status
    /// is `failed` and the spool stays for [`Recorder::recover`].
    pub async fn seal(mut self) -> SealReport {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let shared = Arc::clone(&self.shared);
        let channels: Vec<_> = shared
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut failure = None;
        for ch in &channels {
            ch.sealed.store(true, Ordering::SeqCst);
            let _ = ch.file.sync_data();
            if failure.is_none() {
                failure = ch.failure.lock().unwrap_or_else(|p| p.into_inner()).clone();
            }
        }
        let _ = write_json_synced(&shared.dir.join("ended.json"), &now_ms());
        let (status, reason) = match failure {
            Some(reason) => (Status::Failed, Some(reason)),
            None => (Status::Sealed, None),
        };
        let report = seal_channels(
            &shared.recorder,
            &shared.info,
            shared.started_at_ms,
            &shared.prefix,
            &shared.dir,
            &channels,
            status,
            reason,
        )
        .await;
        shared
            .recorder
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&shared.info.session_id);
        report
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

/// Records one channel. Owned by the task that pumps the channel; every call
/// writes to the spool before it returns.
pub struct ChannelRecorder {
    session: Arc<SessionShared>,
    channel: Arc<ChannelShared>,
    /// Reusable encode buffer: one event line at a time.
    line: Vec<u8>,
    output_decoder: Utf8Decoder,
    input_decoder: Utf8Decoder,
    /// When the channel started; event times are measured from here.
    start: Instant,
    /// Time of the previous event, microseconds since `start`.
    last_us: u64,
}

impl std::fmt::Debug for ChannelRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelRecorder")
            .field("channel", &self.channel.spec.channel)
            .finish_non_exhaustive()
    }
}

impl ChannelRecorder {
    /// Records terminal output. In strict mode, forward `data` to the client
    /// only after this returns `Ok`; an `Err` means the recording stopped
    /// (spool full or unwritable) and a strict route must end the session.
    pub fn output(&mut self, data: &[u8]) -> Result<()> {
        self.channel
            .output_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        for chunk in data.chunks(MAX_EVENT_BYTES) {
            self.text_event(Stream::Output, chunk)?;
        }
        Ok(())
    }

    /// Records input; does nothing unless the channel was opened with `record_input`.
    pub fn input(&mut self, data: &[u8]) -> Result<()> {
        if !self.channel.spec.record_input {
            return Ok(());
        }
        for chunk in data.chunks(MAX_EVENT_BYTES) {
            self.text_event(Stream::Input, chunk)?;
        }
        Ok(())
    }

    /// Records a terminal resize.
    pub fn resize(&mut self, cols: u16, rows: u16) -> Result<()> {
        self.event("r", &format!("{cols}x{rows}"))
    }

    /// Records a marker, e.g. a policy event.
    pub fn marker(&mut self, label: &str) -> Result<()> {
        self.event("m", label)
    }

    /// Records a file operation (SFTP or SCP) as a marker; see [`crate::asciicast`].
    pub fn file_op(&mut self, op: &FileOp) -> Result<()> {
        let json = serde_json::to_string(op).unwrap_or_default();
        self.event("m", &format!("{FILE_OP_MARKER_PREFIX}{json}"))
    }

    /// Records the remote command's exit status.
    pub fn exit(&mut self, status: i64) -> Result<()> {
        *self
            .channel
            .exit_status
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(status);
        self.flush_decoders()?;
        self.event("x", &status.to_string())
    }

    /// Ends the channel's recording (also done by dropping it): pending
    /// partial characters are flushed and the spool is marked complete.
    pub fn close(mut self) -> Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> Result<()> {
        if self.channel.closed.load(Ordering::SeqCst) || self.channel.sealed.load(Ordering::SeqCst)
        {
            return Ok(());
        }
        let flushed = self.flush_decoders();
        self.channel.closed.store(true, Ordering::SeqCst);
        let end = ChannelEnd {
            exit_status: *self
                .channel
                .exit_status
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
            output_bytes: self.channel.output_bytes.load(Ordering::Relaxed),
        };
        let _ = self.channel.file.sync_data();
        write_json_synced(
            &self
                .session
                .dir
                .join(format!("{}.end", self.channel.spec.channel)),
            &end,
        )?;
        flushed
    }

    fn flush_decoders(&mut self) -> Result<()> {
        let mut text = String::new();
        self.output_decoder.finish(&mut text);
        if !text.is_empty() {
            self.event("o", &text)?;
        }
        text.clear();
        self.input_decoder.finish(&mut text);
        if !text.is_empty() {
            self.event("i", &text)?;
        }
        Ok(())
    }

    fn event(&mut self, code: &str, data: &str) -> Result<()> {
        let (now_us, interval) = self.clock();
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        asciicast::encode_event(interval, code, data, &mut line);
        let result = self.append(&line);
        self.done(line, now_us, &result);
        result
    }

    /// Records a piece of output or input: decoded, escaped and framed as
    /// an event line in one pass over the bytes, then written. Bytes that
    /// only begin a character make no event (the next piece finishes it).
    fn text_event(&mut self, stream: Stream, bytes: &[u8]) -> Result<()> {
        let (now_us, interval) = self.clock();
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        let (code, decoder) = match stream {
            Stream::Output => ("o", &mut self.output_decoder),
            Stream::Input => ("i", &mut self.input_decoder),
        };
        if !asciicast::encode_text_event(interval, code, decoder, bytes, &mut line) {
            self.line = line;
            return Ok(());
        }
        let result = self.append(&line);
        self.done(line, now_us, &result);
        result
    }

    /// The time of an event now: microseconds since the start, and since
    /// the previous event.
    fn clock(&self) -> (u64, u64) {
        let now_us = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        (now_us, now_us.saturating_sub(self.last_us))
    }

    /// After an event line was appended (or not): advance the clock and
    /// keep the line buffer for the next event.
    fn done(&mut self, mut line: Vec<u8>, now_us: u64, result: &Result<()>) {
        if result.is_ok() {
            self.last_us = now_us;
        }
        // Do not keep a large buffer after a burst.
        if line.capacity() > 64 * 1024 {
            line = Vec::new();
        }
        self.line = line;
    }

    /// Appends complete lines to the spool with one write.
    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        let ch = &self.channel;
        let session_id = &self.session.info.session_id;
        if let Some(reason) = ch.failure.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(Error::RecordingClosed {
                session_id: session_id.clone(),
                channel: ch.spec.channel.clone(),
                reason,
            });
        }
        if ch.sealed.load(Ordering::SeqCst) {
            return Err(Error::RecordingClosed {
                session_id: session_id.clone(),
                channel: ch.spec.channel.clone(),
                reason: "session sealed".into(),
            });
        }
        let recorder = &self.session.recorder;
        let limit = recorder.config.spool_max_bytes;
        let len = bytes.len() as u64;
        let total = recorder.spool_total.fetch_add(len, Ordering::SeqCst) + len;
        if total > limit {
            recorder.spool_total.fetch_sub(len, Ordering::SeqCst);
            let reason = format!("spool full ({limit} bytes)");
            *ch.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.clone());
            tracing::warn!(target: "audit", event = "recording.spool_full", session_id, channel = ch.spec.channel, status = "failed", reason);
            return Err(Error::SpoolFull {
                session_id: session_id.clone(),
                limit,
            });
        }
        if let Err(source) = (&ch.file).write_all(bytes) {
            recorder.spool_total.fetch_sub(len, Ordering::SeqCst);
            let reason = format!("spool write failed: {source}");
            *ch.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.clone());
            tracing::warn!(target: "audit", event = "recording.spool_failed", session_id, channel = ch.spec.channel, status = "failed", reason);
            return Err(Error::Spool {
                path: ch.spool_path.clone(),
                source,
            });
        }
        ch.dirty.store(true, Ordering::Relaxed);
        let committed = ch.committed.fetch_add(len, Ordering::SeqCst) + len;
        if committed.saturating_sub(ch.acked.load(Ordering::Relaxed))
            >= recorder.config.segment_bytes
        {
            self.session.wake.notify_one();
        }
        Ok(())
    }
}

/// Which byte stream of a channel an event records.
#[derive(Clone, Copy)]
enum Stream {
    /// What the target sent (`o`).
    Output,
    /// What the user typed (`i`).
    Input,
}

impl Drop for ChannelRecorder {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// The per-session background task: fsync every `fsync_interval`, upload every
/// `segment_interval` (or when woken), back off while storage fails.
async fn uploader(shared: Arc<SessionShared>, mut stop: watch::Receiver<bool>) {
    let config = &shared.recorder.config;
    let mut last_upload = Instant::now();
    let mut backoff = config.retry_initial_backoff;
    let mut retry_at: Option<Instant> = None;
    let mut outage_reported = false;
    loop {
        let tick = config.fsync_interval.min(config.segment_interval);
        tokio::select! {
            _ = stop.changed() => return,
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(tick) => {}
        }
        if *stop.borrow() {
            return;
        }
        let channels: Vec<_> = shared
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for ch in &channels {
            if ch.dirty.swap(false, Ordering::Relaxed) {
                let ch = Arc::clone(ch);
                let _ = tokio::task::spawn_blocking(move || ch.file.sync_data()).await;
            }
        }
        let pending = channels.iter().any(|c| {
            c.committed
                .load(Ordering::Relaxed)
                .saturating_sub(c.acked.load(Ordering::Relaxed))
                >= config.segment_bytes
        });
        let due = last_upload.elapsed() >= config.segment_interval || pending;
        if !due || retry_at.is_some_and(|t| Instant::now() < t) {
            continue;
        }
        let mut error = None;
        for ch in &channels {
            if let Err(e) = upload_pending(
                &shared.recorder,
                &shared.info.session_id,
                &shared.prefix,
                ch,
            )
            .await
            {
                error = Some(e.to_string());
                break;
            }
        }
        last_upload = Instant::now();
        match error {
            None => {
                if outage_reported {
                    tracing::info!(target: "audit", event = "recording.upload_resumed", session_id = shared.info.session_id, status = "recording");
                }
                outage_reported = false;
                backoff = config.retry_initial_backoff;
                retry_at = None;
                *shared
                    .last_upload_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = None;
            }
            Some(reason) => {
                if !outage_reported {
                    tracing::warn!(target: "audit", event = "recording.upload_failed", session_id = shared.info.session_id, status = "recording", reason);
                    outage_reported = true;
                }
                *shared
                    .last_upload_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(reason);
                retry_at = Some(Instant::now() + backoff);
                backoff = (backoff * 2).min(config.retry_max_backoff);
            }
        }
    }
}

/// Uploads every complete line not yet acknowledged, as one or more segments.
async fn upload_pending(
    recorder: &RecorderInner,
    session_id: &str,
    prefix: &str,
    ch: &ChannelShared,
) -> Result<()> {
    let mut state = ch.upload.lock().await;
    // Upload what was spooled when this pass began, not what arrives while
    // it runs: chasing a live stream would cut it into one small segment per
    // PUT, each with its own fsync and index update.
    let end = ch.committed.load(Ordering::SeqCst);
    loop {
        let acked = ch.acked.load(Ordering::SeqCst);
        if end <= acked {
            return Ok(());
        }
        let want = (end - acked).min(recorder.config.segment_bytes.max(1));
        let mut data = read_range(&ch.file, &ch.spool_path, acked, want)?;
        if acked + want < end {
            // Cut at a line boundary so every segment holds whole events.
            match data.iter().rposition(|&b| b == b'\n') {
                Some(pos) => data.truncate(pos + 1),
                None => data = read_range(&ch.file, &ch.spool_path, acked, end - acked)?,
            }
        }
        let digest = sha256(&data);
        let chain = chain_next(&state.chain, &digest);
        let seq = state.next_seq;
        // Segments are stored compressed, each one zstd frame of its lines;
        // the hash and the chain are over the uncompressed lines.
        let key = format!("{prefix}/{}/{seq:08}.part.zst", ch.spec.channel);
        let len = data.len() as u64;
        let frame =
            tokio::task::spawn_blocking(move || zstd::bulk::compress(&data, SEAL_ZSTD_LEVEL))
                .await
                .map_err(|e| Error::Spool {
                    path: ch.spool_path.clone(),
                    source: std::io::Error::other(e.to_string()),
                })?
                .map_err(Error::spool(&ch.spool_path))?;
        let frame = Bytes::from(frame);
        recorder.catalog.storage.put(&key, frame.clone()).await?;
        if let Some(frames) = &state.frames
            && let Err(e) = append_frame(frames, &frame)
        {
            tracing::warn!(session_id, error = %e, "keeping the sealed frames failed; the seal will compress the spool");
            state.frames = None;
        }
        let segment = SegmentMeta {
            seq,
            key,
            offset: acked,
            bytes: len,
            sha256: hex(&digest),
            chain: hex(&chain),
        };
        append_line_synced(&ch.segments_path, &segment)?;
        state.next_seq = seq + 1;
        state.chain = chain;
        ch.acked.store(acked + len, Ordering::SeqCst);
        if let Err(e) = recorder
            .catalog
            .index
            .segment_uploaded(session_id, &ch.spec.channel, seq)
        {
            tracing::warn!(session_id, error = %e, "index update after segment upload failed");
        }
    }
}

/// The shared end of a recording, for seal and recovery.
#[allow(clippy::too_many_arguments)]
async fn seal_channels(
    recorder: &Arc<RecorderInner>,
    info: &SessionInfo,
    started_at_ms: u64,
    prefix: &str,
    dir: &Path,
    channels: &[Arc<ChannelShared>],
    status: Status,
    reason: Option<String>,
) -> SealReport {
    let session_id = info.session_id.clone();
    let _ = recorder
        .catalog
        .index
        .set_status(&session_id, Status::Uploading, reason.as_deref());
    let deadline = Instant::now() + recorder.config.seal_timeout;
    let mut backoff = recorder.config.retry_initial_backoff;
    let result = loop {
        match seal_once(
            recorder,
            info,
            started_at_ms,
            prefix,
            channels,
            status,
            reason.clone(),
        )
        .await
        {
            Ok(key) => break Ok(key),
            Err(e) if Instant::now() + backoff < deadline => {
                tracing::warn!(session_id, error = %e, "sealing failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(recorder.config.retry_max_backoff);
            }
            Err(e) => break Err(e),
        }
    };
    match result {
        Ok(meta_key) => {
            let freed = dir_size(dir);
            if std::fs::remove_dir_all(dir).is_ok() {
                recorder.spool_total.fetch_sub(
                    freed.min(recorder.spool_total.load(Ordering::SeqCst)),
                    Ordering::SeqCst,
                );
            }
            tracing::info!(target: "audit", event = format!("recording.{status}"), session_id, status = status.as_str(), reason = reason.as_deref().unwrap_or(""));
            SealReport {
                session_id,
                status,
                reason,
                meta_key: Some(meta_key),
            }
        }
        Err(e) => {
            let why = format!("sealing failed, spool kept for the next start: {e}");
            let _ = recorder
                .catalog
                .index
                .set_status(&session_id, Status::Failed, Some(&why));
            tracing::error!(target: "audit", event = "recording.failed", session_id, status = "failed", reason = why);
            SealReport {
                session_id,
                status: Status::Failed,
                reason: Some(why),
                meta_key: None,
            }
        }
    }
}

/// One attempt at sealing: last segments, sealed objects, meta.json, index.
#[allow(clippy::too_many_arguments)]
async fn seal_once(
    recorder: &Arc<RecorderInner>,
    info: &SessionInfo,
    started_at_ms: u64,
    prefix: &str,
    channels: &[Arc<ChannelShared>],
    status: Status,
    reason: Option<String>,
) -> Result<String> {
    let mut metas = Vec::new();
    let mut ended_at_ms = started_at_ms;
    for ch in channels {
        upload_pending(recorder, &info.session_id, prefix, ch).await?;
        let segments = read_segments(&ch.segments_path)?;
        let sealed_key = format!("{prefix}/{}.cast.zst", ch.spec.channel);
        let (cast_bytes, cast_sha256, sealed_bytes, sealed_sha256) =
            upload_sealed(recorder, ch, &sealed_key).await?;
        if let Ok(modified) = std::fs::metadata(&ch.spool_path).and_then(|m| m.modified())
            && let Ok(since) = modified.duration_since(std::time::UNIX_EPOCH)
        {
            ended_at_ms = ended_at_ms.max(u64::try_from(since.as_millis()).unwrap_or(0));
        }
        metas.push(ChannelMeta {
            channel: ch.spec.channel.clone(),
            kind: ch.spec.kind.as_str().into(),
            command: ch.spec.command.clone(),
            record_input: ch.spec.record_input,
            output_bytes: ch.output_bytes.load(Ordering::Relaxed),
            cast_bytes,
            cast_sha256,
            sealed_key,
            sealed_bytes,
            sealed_sha256,
            exit_status: *ch.exit_status.lock().unwrap_or_else(|p| p.into_inner()),
            segments,
        });
    }
    if status == Status::Sealed || status == Status::Failed {
        ended_at_ms = ended_at_ms.max(now_ms());
    }
    let meta = SessionMeta {
        format: "gatehouse-recording/1".into(),
        session: info.clone(),
        gateway_id: recorder.config.gateway_id.clone(),
        started_at_ms,
        ended_at_ms,
        status,
        reason,
        exit_status: metas.iter().find_map(|c| c.exit_status),
        prefix: prefix.to_owned(),
        channels: metas,
    };
    let signed = SignedMeta::sign(meta, recorder.signer.as_ref());
    let json = serde_json::to_vec_pretty(&signed).map_err(|e| Error::Format {
        what: "meta.json".into(),
        reason: e.to_string(),
    })?;
    let meta_key = format!("{prefix}/meta.json");
    recorder
        .catalog
        .storage
        .put(&meta_key, Bytes::from(json))
        .await?;
    recorder
        .catalog
        .index
        .upsert_meta(&signed.meta, &meta_key)?;
    Ok(meta_key)
}

/// Compresses a channel's spool into `<channel>.cast.zst` and uploads it
/// (multipart when large). Returns (raw bytes, raw sha256, stored bytes, stored sha256).
async fn upload_sealed(
    recorder: &RecorderInner,
    ch: &ChannelShared,
    key: &str,
) -> Result<(u64, String, u64, String)> {
    let spool = ch.spool_path.clone();
    let committed = ch.committed.load(Ordering::SeqCst);
    // Every byte is uploaded by now, so the frames kept while uploading
    // are the whole recording; otherwise compress the spool once.
    let frames = ch.upload.lock().await.frames.clone();
    let (tmp, keep_tmp) = match frames {
        Some(frames) => (frames, true),
        None => (spool.with_extension("cast.zst"), false),
    };
    let tmp2 = tmp.clone();
    let (raw_sha, stored_len, stored_sha) = tokio::task::spawn_blocking(move || {
        if keep_tmp {
            hash_frames(&spool, committed, &tmp2)
        } else {
            compress_file(&spool, committed, &tmp2)
        }
    })
    .await
    .map_err(|e| Error::Spool {
        path: tmp.clone(),
        source: std::io::Error::other(e.to_string()),
    })??;
    let path = recorder.catalog.storage.path(key);
    let mut writer = object_store::buffered::BufWriter::with_capacity(
        Arc::clone(recorder.catalog.storage.store()),
        path,
        8 * 1024 * 1024,
    );
    let file = tokio::fs::File::open(&tmp)
        .await
        .map_err(Error::spool(&tmp))?;
    // Each read of a tokio file is a trip to the blocking pool: read a
    // mebibyte at a time, not tokio::io::copy's 8 KiB, or the thread
    // hand-offs cost more CPU than the copy.
    let mut file = tokio::io::BufReader::with_capacity(1 << 20, file);
    let copied = tokio::io::copy_buf(&mut file, &mut writer).await;
    let done = match copied {
        Ok(_) => writer.shutdown().await,
        Err(e) => {
            let _ = writer.abort().await;
            Err(e)
        }
    };
    if !keep_tmp {
        let _ = std::fs::remove_file(&tmp);
    }
    done.map_err(|e| Error::Storage {
        key: key.to_owned(),
        source: object_store::Error::Generic {
            store: "upload",
            source: Box::new(e),
        },
    })?;
    Ok((committed, raw_sha, stored_len, stored_sha))
}

/// Appends one segment's zstd frame to the channel's local frames file.
fn append_frame(path: &Path, frame: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(frame)
}

/// Hashes the first `len` bytes of `src` (the raw cast) and all of
/// `frames` (the sealed object made of the segments' frames).
fn hash_frames(src: &Path, len: u64, frames: &Path) -> Result<(String, u64, String)> {
    let mut raw = HashingReader {
        inner: File::open(src).map_err(Error::spool(src))?.take(len),
        ctx: ring::digest::Context::new(&ring::digest::SHA256),
    };
    std::io::copy(&mut raw, &mut std::io::sink()).map_err(Error::spool(src))?;
    let mut stored = HashingReader {
        inner: File::open(frames).map_err(Error::spool(frames))?,
        ctx: ring::digest::Context::new(&ring::digest::SHA256),
    };
    let stored_len =
        std::io::copy(&mut stored, &mut std::io::sink()).map_err(Error::spool(frames))?;
    Ok((
        hex(raw.ctx.finish().as_ref()),
        stored_len,
        hex(stored.ctx.finish().as_ref()),
    ))
}

/// zstd-compresses the first `len` bytes of `src` into `dst`, hashing both sides.
fn compress_file(src: &Path, len: u64, dst: &Path) -> Result<(String, u64, String)> {
    let input = File::open(src).map_err(Error::spool(src))?;
    let output = File::create(dst).map_err(Error::spool(dst))?;
    let mut reader = HashingReader {
        inner: input.take(len),
        ctx: ring::digest::Context::new(&ring::digest::SHA256),
    };
    let mut writer = HashingWriter {
        inner: output,
        ctx: ring::digest::Context::new(&ring::digest::SHA256),
        len: 0,
    };
    zstd::stream::copy_encode(&mut reader, &mut writer, SEAL_ZSTD_LEVEL)
        .map_err(Error::spool(dst))?;
    writer.inner.sync_data().map_err(Error::spool(dst))?;
    Ok((
        hex(reader.ctx.finish().as_ref()),
        writer.len,
        hex(writer.ctx.finish().as_ref()),
    ))
}

struct HashingReader<R> {
    inner: R,
    ctx: ring::digest::Context,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.ctx.update(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

struct HashingWriter<W> {
    inner: W,
    ctx: ring::digest::Context,
    len: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.ctx.update(buf.get(..n).unwrap_or_default());
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Rebuilds a session from its spool directory and seals it.
async fn recover_session(recorder: &Arc<RecorderInner>, dir: &Path) -> Result<SealReport> {
    let spooled: SpooledSession = read_json(&dir.join("session.json"))?;
    let ended = dir.join("ended.json").exists();
    let mut channels = Vec::new();
    let mut unfinished = false;
    let entries = std::fs::read_dir(dir).map_err(Error::spool(dir))?;
    let mut specs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".channel.json"))
        .collect();
    specs.sort();
    for spec_path in specs {
        let spec: ChannelSpec = read_json(&spec_path)?;
        let spool_path = dir.join(format!("{}.cast", spec.channel));
        let segments_path = dir.join(format!("{}.segments", spec.channel));
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&spool_path)
            .map_err(Error::spool(&spool_path))?;
        // A crash mid-write can leave a partial last line; only whole lines count.
        let len = file.metadata().map_err(Error::spool(&spool_path))?.len();
        let complete = complete_len(&file, &spool_path, len)?;
        if complete < len {
            file.set_len(complete).map_err(Error::spool(&spool_path))?;
        }
        let segments = read_segments(&segments_path)?;
        let mut chain = chain_seed(&spooled.info.session_id, &spec.channel);
        let mut acked = 0;
        if let Some(last) = segments.last() {
            chain = unhex(&last.chain)
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .unwrap_or(chain);
            acked = last.offset + last.bytes;
        }
        let end: Option<ChannelEnd> = read_json(&dir.join(format!("{}.end", spec.channel))).ok();
        if end.is_none() {
            unfinished = true;
        }
        let end = end.unwrap_or_default();
        let output_bytes = if end.output_bytes > 0 {
            end.output_bytes
        } else {
            output_len(&spool_path, complete)
        };
        channels.push(Arc::new(ChannelShared {
            segments_path,
            file,
            spool_path,
            committed: AtomicU64::new(complete),
            acked: AtomicU64::new(acked.min(complete)),
            dirty: AtomicBool::new(false),
            output_bytes: AtomicU64::new(output_bytes),
            exit_status: Mutex::new(end.exit_status),
            failure: Mutex::new(None),
            closed: AtomicBool::new(true),
            sealed: AtomicBool::new(true),
            upload: tokio::sync::Mutex::new(UploadState {
                next_seq: segments.last().map_or(0, |s| s.seq + 1),
                chain,
                frames: None,
            }),
            spec,
        }));
    }
    let (status, reason) = if ended && !unfinished {
        (Status::Sealed, None)
    } else {
        (
            Status::Interrupted,
            Some("gateway stopped before the session ended".to_owned()),
        )
    };
    // Make sure the session is in the index even if its row was lost.
    if recorder
        .catalog
        .index
        .show(&spooled.info.session_id)?
        .is_none()
    {
        recorder.catalog.index.session_started(
            &spooled.info,
            &spooled.gateway_id,
            spooled.started_at_ms,
            &spooled.prefix,
        )?;
    }
    tracing::info!(target: "audit", event = "recording.recovering", session_id = spooled.info.session_id, status = status.as_str());
    Ok(seal_channels(
        recorder,
        &spooled.info,
        spooled.started_at_ms,
        &spooled.prefix,
        dir,
        &channels,
        status,
        reason,
    )
    .await)
}

/// Length of the spool up to and including its last newline.
fn complete_len(file: &File, path: &Path, len: u64) -> Result<u64> {
    let mut pos = len;
    let mut buf = [0u8; 4096];
    while pos > 0 {
        let start = pos.saturating_sub(buf.len() as u64);
        let n = (pos - start) as usize;
        let chunk = buf.get_mut(..n).unwrap_or_default();
        file.read_exact_at(chunk, start)
            .map_err(Error::spool(path))?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        pos = start;
    }
    Ok(0)
}

/// Output bytes of a recovered spool whose channel never wrote its end file,
/// measured as the UTF-8 length of its output events.
fn output_len(path: &Path, len: u64) -> u64 {
    let Ok(file) = File::open(path) else { return 0 };
    let mut reader = std::io::BufReader::new(file.take(len));
    let mut line = String::new();
    let mut total = 0u64;
    let mut first = true;
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        if !first
            && let Ok((_, code, data)) = serde_json::from_str::<(f64, String, String)>(&line)
            && code == "o"
        {
            total += data.len() as u64;
        }
        first = false;
        line.clear();
    }
    total
}

fn read_range(file: &File, path: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    let mut data = vec![0u8; usize::try_from(len).unwrap_or(0)];
    file.read_exact_at(&mut data, offset)
        .map_err(Error::spool(path))?;
    Ok(data)
}

fn read_segments(path: &Path) -> Result<Vec<SegmentMeta>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Spool {
                path: path.to_owned(),
                source: e,
            });
        }
    };
    // A torn last line (crash during append) is ignored: that segment is simply uploaded again.
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

fn append_line_synced<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut line = serde_json::to_vec(value).map_err(|e| Error::Format {
        what: path.display().to_string(),
        reason: e.to_string(),
    })?;
    line.push(b'\n');
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(Error::spool(path))?;
    file.write_all(&line).map_err(Error::spool(path))?;
    file.sync_data().map_err(Error::spool(path))
}

fn write_json_synced<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_vec(value).map_err(|e| Error::Format {
        what: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(Error::spool(&tmp))?;
    file.write_all(&json).map_err(Error::spool(&tmp))?;
    file.sync_data().map_err(Error::spool(&tmp))?;
    std::fs::rename(&tmp, path).map_err(Error::spool(path))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(Error::spool(path))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Format {
        what: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Total size of the files under a directory (one level of subdirectories).
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
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
