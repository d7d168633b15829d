//! Sealing: the end of every recording, live or recovered.
//!
//! A seal uploads the last segments, then the sealed `<channel>.cast.zst` per
//! channel, then the signed meta.json, and updates the index; only then is
//! the spool removed. At most [`CONCURRENT_SEALS`](super::CONCURRENT_SEALS)
//! seals talk to storage at once. Storage is retried for up to
//! `seal_timeout` from a seal's turn, after which the recording stays
//! `uploading` and its spool is kept until
//! [`Recorder::recover`](crate::Recorder::recover) seals it (at the next
//! start, or when the gateway sees storage answer again).

use audit::{Event, SessionId};
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use crate::meta::{ChannelMeta, SessionInfo, SessionMeta, SignedMeta, Status};
use crate::sign::hex;
use crate::time::now_ms;
use crate::{Error, Result};

use super::spool::{dir_size, write_json_synced};
use super::upload::{read_segments, upload_pending};
use super::{ChannelShared, RecorderInner, SealReport, Session};

impl Session {
    /// Ends the recording: uploads the last segments, the sealed `.cast.zst`
    /// per channel and the signed meta.json, updates the index and removes the
    /// spool. Retries storage for up to `seal_timeout`; after that the status
    /// stays `uploading` and the spool is kept for
    /// [`Recorder::recover`](crate::Recorder::recover).
    pub async fn seal(self) -> SealReport {
        let within = self.shared.recorder.config.seal_timeout;
        self.seal_within(within).await
    }

    /// Like [`Session::seal`], but gives storage only `within` (at most
    /// `seal_timeout`): what a session that ended calls, so that an
    /// outage does not hold the connection's resources for a minute. A
    /// recording not sealed by then keeps its spool and stays `uploading`
    /// until [`Recorder::recover`](crate::Recorder::recover) seals it (the
    /// gateway calls it again once storage answers).
    pub async fn seal_or_leave(self, within: Duration) -> SealReport {
        let within = within.min(self.shared.recorder.config.seal_timeout);
        self.seal_within(within).await
    }

    async fn seal_within(mut self, within: Duration) -> SealReport {
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
        if let Some(reason) = &failure {
            // For a seal that is put off: recovery must not call it sealed.
            let _ = write_json_synced(&shared.dir.join(super::FAILURE_FILE), reason);
        }
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
            within,
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

/// The shared end of a recording, for seal and recovery.
#[allow(clippy::too_many_arguments)]
pub(super) async fn seal_channels(
    recorder: &Arc<RecorderInner>,
    info: &SessionInfo,
    started_at_ms: u64,
    prefix: &str,
    dir: &Path,
    channels: &[Arc<ChannelShared>],
    status: Status,
    reason: Option<String>,
    within: Duration,
) -> SealReport {
    let session_id = info.session_id.clone();
    let _ = recorder
        .catalog
        .index
        .set_status(&session_id, Status::Uploading, reason.as_deref())
        .await;
    // The semaphore is never closed; without a turn, the seal goes ahead.
    let _turn = recorder.seals.acquire().await.ok();
    let deadline = Instant::now() + within;
    let mut backoff = recorder.config.retry_initial_backoff;
    let result = loop {
        // One attempt may not outlast the deadline either (an unanswered
        // storage request retries on its own).
        let attempt = seal_once(
            recorder,
            info,
            started_at_ms,
            prefix,
            channels,
            status,
            reason.clone(),
        );
        let left = deadline.saturating_duration_since(Instant::now());
        let outcome =
            match tokio::time::timeout(left.max(Duration::from_millis(100)), attempt).await {
                Ok(outcome) => outcome,
                Err(_) => Err(Error::StorageTimeout {
                    seconds: within.as_secs(),
                }),
            };
        match outcome {
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
            let (id, reason_text) = (
                SessionId::new(session_id.clone()),
                reason.clone().unwrap_or_default(),
            );
            match status {
                Status::Failed => Event::RecordingFailed {
                    session_id: id,
                    status: status.as_str(),
                    reason: reason_text,
                },
                Status::Interrupted => Event::RecordingInterrupted {
                    session_id: id,
                    status: status.as_str(),
                    reason: reason_text,
                },
                Status::Recording | Status::Uploading | Status::Sealed => Event::RecordingSealed {
                    session_id: id,
                    status: status.as_str(),
                    reason: reason_text,
                },
            }
            .emit();
            SealReport {
                session_id,
                status,
                reason,
                meta_key: Some(meta_key),
            }
        }
        Err(e) => {
            // Nothing is lost: the spool holds the whole recording and is
            // sealed by the next recovery. Until then it is not finished,
            // and saying `failed` would tell an auditor (and `replay
            // --follow`) that it never will be.
            let why = format!("sealing put off, spool kept until storage answers: {e}");
            let _ = recorder
                .catalog
                .index
                .set_status(&session_id, Status::Uploading, Some(&why))
                .await;
            Event::RecordingSealDeferred {
                session_id: SessionId::new(session_id.clone()),
                status: Status::Uploading.as_str(),
                reason: why.clone(),
            }
            .emit();
            SealReport {
                session_id,
                status: Status::Uploading,
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
        let sealed_key = format!("{prefix}/{}.{}.zst", ch.spec.channel, ch.format.extension());
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
    // The session starts before its first target connection is made, so
    // its certificate serial is the first channel's.
    let session = SessionInfo {
        cert_serial: info
            .cert_serial
            .or_else(|| channels.iter().find_map(|ch| ch.spec.cert_serial)),
        ..info.clone()
    };
    let meta = SessionMeta {
        format: "gatehouse-recording/1".into(),
        session,
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
        .upsert_meta(&signed.meta, &meta_key)
        .await?;
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
    // are the whole recording, already hashed as they were kept;
    // otherwise (recovery) compress the spool once, hashing both sides.
    let (frames, hashes) = {
        let state = ch.upload.lock().await;
        (state.frames.clone(), state.hashes.clone())
    };
    let path = recorder.catalog.storage.path(key);
    let mut writer = object_store::buffered::BufWriter::with_capacity(
        Arc::clone(recorder.catalog.storage.store()),
        path,
        8 * 1024 * 1024,
    );
    let (copied, sums) = match (frames, hashes) {
        (Some(frames), Some(h)) => {
            let sums = Ok((
                hex(h.raw.finish().as_ref()),
                h.stored_len,
                hex(h.stored.finish().as_ref()),
            ));
            (copy_file(&frames, &mut writer).await, sums)
        }
        _ => {
            // Compressed straight into the upload, a mebibyte at a time: a
            // compressed copy in the spool would take it past its cap.
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
            let level = ch.format.zstd_level();
            let compress = tokio::task::spawn_blocking(move || {
                compress_into(&spool, committed, ChunkSender::new(tx), level)
            });
            let mut copied = Ok(());
            while let Some(chunk) = rx.recv().await {
                if let Err(e) = writer.write_all(&chunk).await {
                    copied = Err(e);
                    break;
                }
            }
            // A failed upload stops the compression at its next chunk.
            drop(rx);
            let sums = match compress.await {
                Ok(sums) => sums,
                Err(e) => Err(Error::Spool {
                    path: ch.spool_path.clone(),
                    source: std::io::Error::other(e.to_string()),
                }),
            };
            (copied, sums)
        }
    };
    let done = match (copied, &sums) {
        (Ok(()), Ok(_)) => writer.shutdown().await,
        (Err(e), _) => {
            let _ = writer.abort().await;
            Err(e)
        }
        (Ok(()), Err(_)) => {
            let _ = writer.abort().await;
            Ok(())
        }
    };
    done.map_err(|e| Error::Storage {
        key: key.to_owned(),
        source: object_store::Error::Generic {
            store: "upload",
            source: Box::new(e),
        },
    })?;
    let (raw_sha, stored_len, stored_sha) = sums?;
    Ok((committed, raw_sha, stored_len, stored_sha))
}

/// Copies the file at `src` into `writer` (the upload), a mebibyte at a
/// time: each read of a tokio file is a trip to the blocking pool, and
/// tokio::io::copy's 8 KiB would make the hand-offs cost more than the copy.
async fn copy_file(
    src: &Path,
    writer: &mut object_store::buffered::BufWriter,
) -> std::io::Result<()> {
    let file = tokio::fs::File::open(src).await?;
    let mut file = tokio::io::BufReader::with_capacity(1 << 20, file);
    tokio::io::copy_buf(&mut file, writer).await.map(|_| ())
}

/// zstd-compresses the first `len` bytes of `src` into `sink`, hashing
/// both sides.
fn compress_into<W: Write>(
    src: &Path,
    len: u64,
    sink: W,
    level: i32,
) -> Result<(String, u64, String)> {
    let input = File::open(src).map_err(Error::spool(src))?;
    let mut reader = HashingReader {
        inner: input.take(len),
        ctx: ring::digest::Context::new(&ring::digest::SHA256),
    };
    let mut writer = HashingWriter {
        inner: sink,
        ctx: ring::digest::Context::new(&ring::digest::SHA256),
        len: 0,
    };
    zstd::stream::copy_encode(&mut reader, &mut writer, level).map_err(Error::spool(src))?;
    writer.flush().map_err(Error::spool(src))?;
    Ok((
        hex(reader.ctx.finish().as_ref()),
        writer.len,
        hex(writer.ctx.finish().as_ref()),
    ))
}

/// Hands what is written to the async uploader in chunks of about a
/// mebibyte; fails once the uploader has stopped listening.
struct ChunkSender {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl ChunkSender {
    const CHUNK: usize = 1 << 20;

    fn new(tx: tokio::sync::mpsc::Sender<Bytes>) -> Self {
        ChunkSender {
            tx,
            buf: Vec::with_capacity(Self::CHUNK),
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(Self::CHUNK),
        ));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::other("the upload stopped"))
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= Self::CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Hashes what is read through it, so the raw cast is hashed in the same pass
/// that compresses it.
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

/// Hashes and counts what is written through it, so the stored object's hash
/// and size need no second read.
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
