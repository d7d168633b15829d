//! The uploader: ships spooled bytes to storage as hash-chained segments.
//!
//! One task per session reads back from the spool files (never from memory),
//! so a storage outage grows the spool, not a queue. Each uploaded segment is
//! listed in the channel's `.segments` sidecar, fsynced after the upload, so
//! recovery and sealing know what storage already holds. While storage fails
//! the task keeps the error for `Session::health` and retries with backoff.

use crate::meta::Status;
use audit::{Event, SessionId};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::watch;

use crate::meta::{SegmentMeta, chain_next, sha256};
use crate::sign::hex;
use crate::{Error, Result};

use super::{ChannelShared, RecorderInner, SessionShared};

/// The per-session background task: fsync every `fsync_interval`, upload every
/// `segment_interval` (or when woken), back off while storage fails.
///
/// Uploads keep time: each pass is due one `segment_interval` after the
/// previous one *began*, and the task sleeps until exactly then. (It used
/// to wake on the fsync tick and count from a pass's end, so bytes waited
/// up to an interval plus a second plus the upload, which a watcher on
/// another machine saw as lag.)
pub(super) async fn uploader(shared: Arc<SessionShared>, mut stop: watch::Receiver<bool>) {
    let config = &shared.recorder.config;
    let mut next_upload = Instant::now() + config.segment_interval;
    let mut next_fsync = Instant::now() + config.fsync_interval;
    let mut backoff = config.retry_initial_backoff;
    let mut retry_at: Option<Instant> = None;
    let mut outage_reported = false;
    // Since when recorded bytes have waited for storage, for the upload
    // lag the observer hears about.
    let mut waiting_since: Option<Instant> = None;
    let observer = shared.recorder.observer.get().cloned();
    loop {
        let upload_at = retry_at.map_or(next_upload, |r| r.max(next_upload));
        tokio::select! {
            _ = stop.changed() => return,
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep_until(upload_at.min(next_fsync)) => {}
        }
        if *stop.borrow() {
            return;
        }
        let channels: Vec<_> = shared
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if Instant::now() >= next_fsync {
            next_fsync = Instant::now() + config.fsync_interval;
        }
        for ch in &channels {
            if ch.dirty.swap(false, Ordering::Relaxed) {
                let ch = Arc::clone(ch);
                let _ = tokio::task::spawn_blocking(move || ch.file.sync_data()).await;
            }
        }
        let waiting = channels
            .iter()
            .any(|c| c.committed.load(Ordering::Relaxed) > c.acked.load(Ordering::Relaxed));
        if waiting && waiting_since.is_none() {
            waiting_since = Some(Instant::now());
        }
        let pending = channels.iter().any(|c| {
            c.committed
                .load(Ordering::Relaxed)
                .saturating_sub(c.acked.load(Ordering::Relaxed))
                >= config.segment_bytes
        });
        let due = Instant::now() >= next_upload || pending;
        if !due || retry_at.is_some_and(|t| Instant::now() < t) {
            continue;
        }
        next_upload = Instant::now() + config.segment_interval;
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
        match error {
            None => {
                if let (Some(since), Some(o)) = (waiting_since.take(), &observer) {
                    o.uploaded(since.elapsed());
                }
                if outage_reported {
                    Event::RecordingUploadResumed {
                        session_id: SessionId::new(shared.info.session_id.clone()),
                        status: Status::Recording.as_str(),
                    }
                    .emit();
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
                if let Some(o) = &observer {
                    o.upload_failed();
                }
                if !outage_reported {
                    Event::RecordingUploadFailed {
                        session_id: SessionId::new(shared.info.session_id.clone()),
                        status: Status::Recording.as_str(),
                        reason: reason.clone(),
                    }
                    .emit();
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
pub(super) async fn upload_pending(
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
            // Cut at a record boundary so every segment holds whole events
            // (lines) or frames; `end` is one.
            match ch.format.whole(&data) {
                0 => {
                    let len = whole_len(ch, acked, end)?;
                    data = read_range(&ch.file, &ch.spool_path, acked, len)?;
                }
                n => data.truncate(n),
            }
        }
        let digest = sha256(&data);
        // Advanced on a copy, kept only once the segment is stored: a
        // failed upload is tried again with the same bytes.
        let raw = state.hashes.as_ref().map(|h| {
            let mut raw = h.raw.clone();
            raw.update(&data);
            raw
        });
        let chain = chain_next(&state.chain, &digest);
        let seq = state.next_seq;
        // Segments are stored compressed, each one zstd frame of its lines;
        // the hash and the chain are over the uncompressed lines.
        let key = format!("{prefix}/{}/{seq:08}.part.zst", ch.spec.channel);
        let len = data.len() as u64;
        let level = ch.format.zstd_level();
        let frame = tokio::task::spawn_blocking(move || zstd::bulk::compress(&data, level))
            .await
            .map_err(|e| Error::Spool {
                path: ch.spool_path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?
            .map_err(Error::spool(&ch.spool_path))?;
        let frame = Bytes::from(frame);
        recorder.catalog.storage.put(&key, frame.clone()).await?;
        // Keeping the frame must fit under the cap with everything else
        // spooled; if it does not, the kept frames are given up (the seal
        // then compresses the spool instead) rather than the cap.
        let limit = recorder.config.spool_max_bytes;
        if let Some(frames) = state.frames.clone()
            && recorder.spool_total.load(Ordering::SeqCst) + frame.len() as u64 > limit
        {
            let kept = std::fs::metadata(&frames).map_or(0, |m| m.len());
            let _ = std::fs::remove_file(&frames);
            recorder.spool_total.fetch_sub(
                kept.min(recorder.spool_total.load(Ordering::SeqCst)),
                Ordering::SeqCst,
            );
            state.frames = None;
            state.hashes = None;
        }
        if let Some(frames) = &state.frames {
            match append_frame(frames, &frame) {
                Ok(()) => {
                    // The kept frames are spool bytes too: the cap counts
                    // every file of the spool.
                    recorder
                        .spool_total
                        .fetch_add(frame.len() as u64, Ordering::SeqCst);
                    if let (Some(h), Some(raw)) = (state.hashes.as_mut(), raw) {
                        h.raw = raw;
                        h.stored.update(&frame);
                        h.stored_len += frame.len() as u64;
                    }
                }
                Err(e) => {
                    tracing::warn!(session_id, error = %e, "keeping the sealed frames failed; the seal will compress the spool");
                    state.frames = None;
                    state.hashes = None;
                }
            }
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
            .await
        {
            tracing::warn!(session_id, error = %e, "index update after segment upload failed");
        }
    }
}

/// The length from `from` of the first whole record of a channel's spool
/// (one line or frame larger than a segment), up to `end`.
fn whole_len(ch: &ChannelShared, from: u64, end: u64) -> Result<u64> {
    match ch.format {
        super::Format::Cast => Ok(end - from),
        super::Format::Stream => {
            let mut header = [0u8; crate::stream::FRAME_HEADER];
            ch.file
                .read_exact_at(&mut header, from)
                .map_err(Error::spool(&ch.spool_path))?;
            let payload = u64::from(u32::from_le_bytes(
                header
                    .get(9..13)
                    .and_then(|b| b.try_into().ok())
                    .unwrap_or([0; 4]),
            ));
            Ok((header.len() as u64 + payload).min(end - from))
        }
    }
}

/// Appends one segment's zstd frame to the channel's local frames file.
fn append_frame(path: &Path, frame: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(frame)
}

/// Reads `len` spool bytes at `offset` with a positioned read, so the writer
/// can keep appending to the same file while a segment is read back.
fn read_range(file: &File, path: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    let mut data = vec![0u8; usize::try_from(len).unwrap_or(0)];
    file.read_exact_at(&mut data, offset)
        .map_err(Error::spool(path))?;
    Ok(data)
}

/// Reads the `.segments` sidecar: the segments storage already holds, in order.
pub(super) fn read_segments(path: &Path) -> Result<Vec<SegmentMeta>> {
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

/// Appends one JSON line to the `.segments` sidecar and fsyncs it before the
/// segment counts as uploaded, so a crash can only lose a listing (and the
/// segment is uploaded again), never list one storage does not hold.
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
