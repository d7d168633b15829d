//! The channel writer: what the gateway's pump task calls for every event.
//!
//! Each call encodes one event line into a reusable buffer and appends it to
//! the channel's spool file with one `write(2)` before it returns, so output
//! is in the spool before the caller forwards it. The writer never uploads:
//! it counts committed bytes, charges them to the recorder's spool total and
//! wakes the uploader when a segment's worth is waiting.

use crate::meta::Status;
use audit::{Event, SessionId};
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::asciicast::{self, FILE_OP_MARKER_PREFIX, GatehouseHeader, Header, Utf8Decoder};
use crate::meta::{SessionInfo, chain_seed};
use crate::stream;
use crate::{Error, FileOp, Result};

use super::spool::{ChannelEnd, write_json_synced};
use super::{
    ChannelShared, ChannelSpec, Format, RunningHashes, Session, SessionShared, SpooledChannel,
    UploadState, sanitize,
};

/// Largest slice of output encoded as one event; bigger writes are split so
/// the line buffer stays small. Escaping can make a byte six (`\u00XX`), so
/// 8 KiB keeps even an event of control characters under the 64 KiB a
/// recording may hold in buffers.
const MAX_EVENT_BYTES: usize = 8 * 1024;

impl Session {
    /// Starts recording a terminal channel (a shell, or a command with a
    /// pty) as asciicast: writes the header to a new spool file.
    pub async fn open_channel(&self, spec: ChannelSpec) -> Result<ChannelRecorder> {
        self.open(spec, Format::Cast).await
    }

    /// Starts recording a channel without a terminal (`rsync`, `git`,
    /// `tar c`, `cat file`) as a byte stream ([`crate::stream`]): its
    /// exact bytes, with no escaping or decoding on the data path.
    pub async fn open_stream(&self, spec: ChannelSpec) -> Result<ChannelRecorder> {
        self.open(spec, Format::Stream).await
    }

    async fn open(&self, spec: ChannelSpec, format: Format) -> Result<ChannelRecorder> {
        let mut spec = spec;
        spec.channel = sanitize(&spec.channel);
        let inner = &self.shared.recorder;
        let spool_path = self
            .shared
            .dir
            .join(format!("{}.{}", spec.channel, format.extension()));
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
            &SpooledChannel {
                spec: spec.clone(),
                format,
            },
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
                hashes: Some(RunningHashes::new()),
            }),
            spec,
            format,
        });
        inner
            .catalog
            .index
            .channel_started(
                &info.session_id,
                state::ChannelStart {
                    channel: shared.spec.channel.clone(),
                    kind: shared.spec.kind.as_str().to_owned(),
                    command: shared.spec.command.clone(),
                    record_input: shared.spec.record_input,
                    cert_serial: shared.spec.cert_serial.or(info.cert_serial),
                },
            )
            .await?;
        let mut recorder = ChannelRecorder {
            session: Arc::clone(&self.shared),
            channel: Arc::clone(&shared),
            line: Vec::new(),
            output_decoder: Utf8Decoder::new(),
            input_decoder: Utf8Decoder::new(),
            start: Instant::now(),
            last_us: 0,
        };
        match format {
            Format::Cast => {
                let mut line = Vec::new();
                asciicast::encode_header(&header, &mut line);
                recorder.append(&line)?;
            }
            Format::Stream => {
                let payload = stream::header_payload(&header);
                recorder.frame(stream::Kind::Header, &payload)?;
            }
        }
        self.shared
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(shared);
        Ok(recorder)
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
        match self.channel.format {
            Format::Cast => {
                for chunk in data.chunks(MAX_EVENT_BYTES) {
                    self.text_event(Stream::Output, chunk)?;
                }
                Ok(())
            }
            Format::Stream => self.frames(stream::Kind::Stdout, data),
        }
    }

    /// Records what the target wrote to stderr (SSH extended data): its own
    /// stream in a byte-stream recording; on a terminal, it is output like
    /// any other (the user saw it on the same screen).
    pub fn stderr(&mut self, data: &[u8]) -> Result<()> {
        match self.channel.format {
            Format::Cast => self.output(data),
            Format::Stream => {
                self.channel
                    .output_bytes
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                self.frames(stream::Kind::Stderr, data)
            }
        }
    }

    /// Records input; does nothing unless the channel was opened with `record_input`.
    pub fn input(&mut self, data: &[u8]) -> Result<()> {
        if !self.channel.spec.record_input {
            return Ok(());
        }
        match self.channel.format {
            Format::Cast => {
                for chunk in data.chunks(MAX_EVENT_BYTES) {
                    self.text_event(Stream::Input, chunk)?;
                }
                Ok(())
            }
            Format::Stream => self.frames(stream::Kind::Stdin, data),
        }
    }

    /// Records a terminal resize (nothing in a byte-stream recording).
    pub fn resize(&mut self, cols: u16, rows: u16) -> Result<()> {
        match self.channel.format {
            Format::Cast => self.event("r", &format!("{cols}x{rows}")),
            Format::Stream => Ok(()),
        }
    }

    /// Records a marker, e.g. a policy event.
    pub fn marker(&mut self, label: &str) -> Result<()> {
        match self.channel.format {
            Format::Cast => self.event("m", label),
            Format::Stream => self.frame(stream::Kind::Marker, label.as_bytes()),
        }
    }

    /// Records a file operation (SFTP, SCP, rsync, git) as a marker; see
    /// [`crate::asciicast`].
    pub fn file_op(&mut self, op: &FileOp) -> Result<()> {
        let json = serde_json::to_string(op).unwrap_or_default();
        self.marker(&format!("{FILE_OP_MARKER_PREFIX}{json}"))
    }

    /// Records the remote command's exit status.
    pub fn exit(&mut self, status: i64) -> Result<()> {
        *self
            .channel
            .exit_status
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(status);
        match self.channel.format {
            Format::Cast => {
                self.flush_decoders()?;
                self.event("x", &status.to_string())
            }
            Format::Stream => self.frame(stream::Kind::Exit, &status.to_le_bytes()),
        }
    }

    /// Records `data` of one stream as frames of at most
    /// [`stream::MAX_PAYLOAD`].
    fn frames(&mut self, kind: stream::Kind, data: &[u8]) -> Result<()> {
        for chunk in data.chunks(stream::MAX_PAYLOAD) {
            self.frame(kind, chunk)?;
        }
        Ok(())
    }

    /// Appends one frame: its header and payload in one `writev(2)`, so
    /// the bytes are copied once, into the page cache.
    fn frame(&mut self, kind: stream::Kind, payload: &[u8]) -> Result<()> {
        let (now_us, _) = self.clock();
        let header = stream::frame_header(kind, now_us, payload.len());
        let result = self.append_parts(&header, payload);
        if result.is_ok() {
            self.last_us = now_us;
        }
        result
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
        if self.channel.format == Format::Stream {
            return Ok(());
        }
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
        self.append_parts(bytes, &[])
    }

    /// Appends `head` then `tail` (one whole record) to the spool with one
    /// vectored write, retried until all is written.
    fn append_parts(&mut self, head: &[u8], tail: &[u8]) -> Result<()> {
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
        let len = (head.len() + tail.len()) as u64;
        let total = recorder.spool_total.fetch_add(len, Ordering::SeqCst) + len;
        if total > limit {
            recorder.spool_total.fetch_sub(len, Ordering::SeqCst);
            let reason = format!("spool full ({limit} bytes)");
            *ch.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.clone());
            Event::RecordingSpoolFull {
                session_id: SessionId::new(session_id.clone()),
                channel: ch.spec.channel.clone(),
                status: Status::Failed.as_str(),
                reason: reason.clone(),
            }
            .emit();
            return Err(Error::SpoolFull {
                session_id: session_id.clone(),
                limit,
            });
        }
        if let Err(source) = write_all_vectored(&ch.file, head, tail) {
            recorder.spool_total.fetch_sub(len, Ordering::SeqCst);
            let reason = format!("spool write failed: {source}");
            *ch.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.clone());
            Event::RecordingSpoolFailed {
                session_id: SessionId::new(session_id.clone()),
                channel: ch.spec.channel.clone(),
                status: Status::Failed.as_str(),
                reason: reason.clone(),
            }
            .emit();
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

/// Writes `head` then `tail` with as few `writev(2)` calls as the kernel
/// allows (one, nearly always).
fn write_all_vectored(mut file: &std::fs::File, head: &[u8], tail: &[u8]) -> std::io::Result<()> {
    let (mut head, mut tail) = (head, tail);
    while !head.is_empty() || !tail.is_empty() {
        let parts = [std::io::IoSlice::new(head), std::io::IoSlice::new(tail)];
        let n = match file.write_vectored(&parts) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let from_head = n.min(head.len());
        head = head.get(from_head..).unwrap_or_default();
        tail = tail.get(n - from_head..).unwrap_or_default();
    }
    Ok(())
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
