//! Recovery: seals the spools an earlier process left behind.
//!
//! At startup every spool directory that no live session owns is read back
//! into channels (a torn last line is cut off, upload progress comes from the
//! `.segments` sidecar) and sealed through the same path as a live session,
//! as `interrupted` unless the session had already ended.

use audit::{Event, SessionId};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use crate::meta::{Status, chain_seed};
use crate::sign::unhex;
use crate::{Error, Result};

use super::seal::seal_channels;
use super::spool::{ChannelEnd, SpooledSession, read_json};
use super::upload::read_segments;
use super::{
    ChannelShared, FAILURE_FILE, Format, Recorder, RecorderInner, SealReport, SpooledChannel,
    UploadState,
};

impl Recorder {
    /// How many spool directories no live session of this process owns:
    /// left by an earlier process, or by a session whose seal gave up
    /// ([`Session::seal_or_leave`](crate::Session::seal_or_leave)).
    pub fn leftovers(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.inner.config.spool_dir) else {
            return 0;
        };
        let live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("session.json").is_file())
            .filter(|e| !live.contains(e.file_name().to_string_lossy().as_ref()))
            .count()
    }

    /// Seals every spool left behind by an earlier process, as `interrupted`
    /// (or `sealed`, if that session had already ended and only its upload was
    /// missing). Call at startup, and again (the gateway does, once storage
    /// answers) for the spools of seals that gave up.
    pub async fn recover(&self) -> Vec<SealReport> {
        let _one_at_a_time = self.inner.recovering.lock().await;
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
                    Event::RecordingFailed {
                        session_id: SessionId::new(name.clone()),
                        status: Status::Failed.as_str(),
                        reason: e.to_string(),
                    }
                    .emit();
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
        let SpooledChannel { spec, format } = read_json(&spec_path)?;
        let spool_path = dir.join(format!("{}.{}", spec.channel, format.extension()));
        let segments_path = dir.join(format!("{}.segments", spec.channel));
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&spool_path)
            .map_err(Error::spool(&spool_path))?;
        // A crash mid-write can leave a partial last line or frame; only
        // whole ones count.
        let len = file.metadata().map_err(Error::spool(&spool_path))?.len();
        let segments = read_segments(&segments_path)?;
        let complete = match format {
            Format::Cast => complete_len(&file, &spool_path, len)?,
            Format::Stream => {
                let from = segments.last().map_or(0, |s| s.offset + s.bytes).min(len);
                whole_frames_from(&file, &spool_path, from, len)?
            }
        };
        if complete < len {
            file.set_len(complete).map_err(Error::spool(&spool_path))?;
        }
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
            match format {
                Format::Cast => output_len(&spool_path, complete),
                Format::Stream => stream_output_len(&spool_path, complete),
            }
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
                hashes: None,
            }),
            spec,
            format,
        }));
    }
    let (status, reason) = if ended && !unfinished {
        // A recording that failed while live (spool full, a strict route
        // losing storage) stays failed, with its reason, when the seal
        // that was put off is finished here.
        match read_json::<String>(&dir.join(FAILURE_FILE)) {
            Ok(reason) => (Status::Failed, Some(reason)),
            Err(_) => (Status::Sealed, None),
        }
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
        .show(&spooled.info.session_id)
        .await?
        .is_none()
    {
        recorder
            .catalog
            .index
            .session_started(
                &spooled.info,
                &spooled.gateway_id,
                spooled.started_at_ms,
                &spooled.prefix,
            )
            .await?;
    }
    Event::RecordingRecovering {
        session_id: SessionId::new(spooled.info.session_id.clone()),
        status: status.as_str(),
    }
    .emit();
    Ok(seal_channels(
        recorder,
        &spooled.info,
        spooled.started_at_ms,
        &spooled.prefix,
        dir,
        &channels,
        status,
        reason,
        recorder.config.seal_timeout,
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

/// The end of the last whole frame of a stream spool, reading from
/// `from` (a frame boundary: the end of what was uploaded) to `len`.
fn whole_frames_from(file: &File, path: &Path, from: u64, len: u64) -> Result<u64> {
    let mut at = from;
    let mut header = [0u8; crate::stream::FRAME_HEADER];
    while at + header.len() as u64 <= len {
        file.read_exact_at(&mut header, at)
            .map_err(Error::spool(path))?;
        let payload = u64::from(u32::from_le_bytes(
            header
                .get(9..13)
                .and_then(|b| b.try_into().ok())
                .unwrap_or([0; 4]),
        ));
        let end = at + header.len() as u64 + payload;
        if end > len {
            break;
        }
        at = end;
    }
    Ok(at)
}

/// Output bytes (stdout and stderr) of a recovered stream spool whose
/// channel never wrote its end file.
fn stream_output_len(path: &Path, len: u64) -> u64 {
    let Ok(file) = File::open(path) else { return 0 };
    let mut frames = crate::stream::Frames::new(std::io::BufReader::new(file.take(len)));
    let mut total = 0u64;
    while let Ok(Some(f)) = frames.next_frame() {
        if matches!(
            f.kind,
            crate::stream::Kind::Stdout | crate::stream::Kind::Stderr
        ) {
            total += f.data.len() as u64;
        }
    }
    total
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
