//! Reading recordings back: list, show, verify, export and reindex. This is
//! the API the CLI, `replay-tui` and `web-replay` use; it needs no signing key.

use std::sync::Arc;

use audit::Event;
use serde::Serialize;

use crate::asciicast::{self, Cast};
use crate::index::{ChannelRecord, Index, SessionFilter, SessionRecord};
use crate::meta::{SignedMeta, chain_next, chain_seed, sha256};
use crate::sign::hex;
use crate::storage::{Storage, StorageConfig};
use crate::{Error, Result};

/// The format of an exported recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// asciicast v3, exactly as stored (decompressed).
    V3,
    /// asciicast v2 with absolute times, for players that read only v2.
    V2,
}

/// The outcome of [`Catalog::verify`]: `ok` only when every check passed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The session checked.
    pub session_id: String,
    /// True when the signature, every segment hash, the chain and the sealed objects all check out.
    pub ok: bool,
    /// Segments checked across channels.
    pub segments_checked: u64,
    /// Each problem found, in words.
    pub problems: Vec<String>,
}

/// Storage plus index, for everything that reads recordings.
#[derive(Debug)]
pub struct Catalog {
    /// Where recordings are stored.
    pub(crate) storage: Storage,
    /// The session index in the state database.
    pub(crate) index: Index,
}

impl Catalog {
    /// Reads and writes the index through `store` (the state database)
    /// and opens the storage backend.
    pub fn open(store: Arc<dyn state::Store>, storage: &StorageConfig) -> Result<Catalog> {
        Ok(Catalog {
            storage: Storage::open(storage)?,
            index: Index::new(store),
        })
    }

    /// The storage backend.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Sessions matching a filter, newest first (`gatehouse sessions list`).
    pub async fn list(&self, filter: &SessionFilter) -> Result<Vec<SessionRecord>> {
        self.index.list(filter).await
    }

    /// One session with its channels (`gatehouse sessions show ID`).
    pub async fn show(
        &self,
        session_id: &str,
    ) -> Result<Option<(SessionRecord, Vec<ChannelRecord>)>> {
        self.index.show(session_id).await
    }

    /// Finds and parses a session's meta.json, via the index or, failing that, a bucket listing.
    pub async fn meta(&self, session_id: &str) -> Result<SignedMeta> {
        let key = self.meta_key(session_id).await?;
        let bytes = self.storage.get(&key).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Format {
            what: key,
            reason: e.to_string(),
        })
    }

    /// The key of a session's meta.json.
    pub(crate) async fn meta_key_of(&self, session_id: &str) -> Result<String> {
        self.meta_key(session_id).await
    }

    async fn meta_key(&self, session_id: &str) -> Result<String> {
        if let Some((record, _)) = self.index.show(session_id).await?
            && let Some(key) = record.meta_key
        {
            return Ok(key);
        }
        let suffix = format!("/{session_id}/meta.json");
        self.storage
            .list("sessions")
            .await?
            .into_iter()
            .find(|k| k.ends_with(&suffix))
            .ok_or_else(|| Error::NotFound {
                session_id: session_id.to_owned(),
            })
    }

    /// The decompressed v3 stream of one channel (the first when `channel` is `None`).
    pub async fn cast_bytes(&self, session_id: &str, channel: Option<&str>) -> Result<Vec<u8>> {
        let meta = self.meta(session_id).await?;
        let ch = match channel {
            Some(name) => meta.meta.channels.iter().find(|c| c.channel == name),
            None => meta.meta.channels.first(),
        }
        .ok_or_else(|| Error::NotFound {
            session_id: session_id.to_owned(),
        })?;
        let compressed = self.storage.get(&ch.sealed_key).await?;
        decompress(&compressed, &ch.sealed_key)
    }

    /// A parsed channel recording.
    pub async fn cast(&self, session_id: &str, channel: Option<&str>) -> Result<Cast> {
        asciicast::read(&self.cast_bytes(session_id, channel).await?)
    }

    /// `gatehouse recordings export ID [--format v3|v2]`.
    pub async fn export(
        &self,
        session_id: &str,
        channel: Option<&str>,
        format: ExportFormat,
    ) -> Result<Vec<u8>> {
        let bytes = self.cast_bytes(session_id, channel).await?;
        match format {
            // A byte-stream recording plays as the terminal text it was.
            ExportFormat::V3 if crate::stream::is_stream(&bytes) => {
                Ok(asciicast::to_v3(&asciicast::read(&bytes)?))
            }
            ExportFormat::V3 => Ok(bytes),
            ExportFormat::V2 => Ok(asciicast::to_v2(&asciicast::read(&bytes)?)),
        }
    }

    /// `gatehouse recordings export ID --stream stdout|stderr|stdin`: the
    /// exact bytes of one stream of a byte-stream recording, written to
    /// `out` as the sealed object is decompressed (never held whole);
    /// returns how many.
    pub async fn export_stream(
        &self,
        session_id: &str,
        channel: Option<&str>,
        kind: crate::stream::Kind,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<u64> {
        let meta = self.meta(session_id).await?;
        let ch = match channel {
            Some(name) => meta.meta.channels.iter().find(|c| c.channel == name),
            None => meta.meta.channels.first(),
        }
        .ok_or_else(|| Error::NotFound {
            session_id: session_id.to_owned(),
        })?;
        let compressed = self.storage.get(&ch.sealed_key).await?;
        let mut reader = sealed_reader(&compressed, &ch.sealed_key)?;
        let first = std::io::BufRead::fill_buf(&mut reader).map_err(|e| Error::Format {
            what: ch.sealed_key.clone(),
            reason: e.to_string(),
        })?;
        if !crate::stream::is_stream(first) {
            return Err(Error::Format {
                what: ch.sealed_key.clone(),
                reason: format!(
                    "channel {} was recorded as a terminal (asciicast), not as a byte \
                     stream: export it without --stream",
                    ch.channel
                ),
            });
        }
        crate::stream::copy_stream(reader, kind, out)
    }

    /// `gatehouse recordings verify ID`: checks the signature (against
    /// `trusted_key` when given), every segment's hash and the hash chain, that
    /// the segments concatenate to the sealed recording, and the sealed object's hash.
    pub async fn verify(
        &self,
        session_id: &str,
        trusted_key: Option<&[u8; 32]>,
    ) -> Result<VerifyReport> {
        let signed = self.meta(session_id).await?;
        let mut report = VerifyReport {
            session_id: session_id.to_owned(),
            ..Default::default()
        };
        if let Err(problem) = signed.verify(trusted_key) {
            report.problems.push(format!("meta.json: {problem}"));
        }
        let meta = &signed.meta;
        if meta.session.session_id != session_id {
            report.problems.push(format!(
                "meta.json names session {}",
                meta.session.session_id
            ));
        }
        for ch in &meta.channels {
            let mut chain = chain_seed(&meta.session.session_id, &ch.channel).to_vec();
            let mut whole = ring::digest::Context::new(&ring::digest::SHA256);
            let mut offset = 0u64;
            for (i, seg) in ch.segments.iter().enumerate() {
                report.segments_checked += 1;
                let at = format!("channel {} segment {}", ch.channel, seg.seq);
                if seg.seq != i as u64 || seg.offset != offset {
                    report.problems.push(format!(
                        "{at}: out of order (seq {}, offset {})",
                        seg.seq, seg.offset
                    ));
                }
                let stored = match self.storage.get(&seg.key).await {
                    Ok(d) => d,
                    Err(e) => {
                        report.problems.push(format!("{at}: {e}"));
                        continue;
                    }
                };
                // Segments are stored as zstd frames (`.part.zst`); older
                // recordings stored them plain (`.part`).
                let data = if seg.key.ends_with(".zst") {
                    match decompress(&stored, &seg.key) {
                        Ok(raw) => bytes::Bytes::from(raw),
                        Err(e) => {
                            report.problems.push(format!(
                                "{at}: content does not match its sha256 ({}: {e})",
                                seg.key
                            ));
                            continue;
                        }
                    }
                } else {
                    stored
                };
                let digest = sha256(&data);
                if hex(&digest) != seg.sha256 || data.len() as u64 != seg.bytes {
                    report.problems.push(format!(
                        "{at}: content does not match its sha256 ({})",
                        seg.key
                    ));
                }
                chain = chain_next(&chain, &digest).to_vec();
                if hex(&chain) != seg.chain {
                    report.problems.push(format!("{at}: hash chain broken"));
                }
                whole.update(&data);
                offset += data.len() as u64;
            }
            if hex(whole.finish().as_ref()) != ch.cast_sha256 || offset != ch.cast_bytes {
                report.problems.push(format!(
                    "channel {}: segments do not add up to the recording",
                    ch.channel
                ));
            }
            match self.storage.get(&ch.sealed_key).await {
                Ok(sealed) => {
                    if hex(&sha256(&sealed)) != ch.sealed_sha256 {
                        report.problems.push(format!(
                            "channel {}: sealed object hash mismatch",
                            ch.channel
                        ));
                    } else {
                        // Hashed as a stream: a long recording is never
                        // held decompressed.
                        match stream_sha256(&sealed, &ch.sealed_key) {
                            Ok((digest, _)) if hex(&digest) == ch.cast_sha256 => {}
                            Ok(_) => report.problems.push(format!(
                                "channel {}: sealed recording differs from segments",
                                ch.channel
                            )),
                            Err(e) => report.problems.push(format!("channel {}: {e}", ch.channel)),
                        }
                    }
                }
                Err(e) => report.problems.push(format!("channel {}: {e}", ch.channel)),
            }
        }
        // Verifying is a read: the caller prints the report, nothing is
        // audited (an audit line here used to reach the CLI's stderr).
        report.ok = report.problems.is_empty();
        Ok(report)
    }

    /// `gatehouse recordings reindex`: rebuilds index rows from every meta.json in the bucket.
    /// Returns how many sessions were indexed; unreadable meta.json objects are skipped with a warning.
    pub async fn reindex(&self) -> Result<usize> {
        let mut count = 0;
        for key in self.storage.list("sessions").await? {
            if !key.ends_with("/meta.json") {
                continue;
            }
            let bytes = self.storage.get(&key).await?;
            match serde_json::from_slice::<SignedMeta>(&bytes) {
                Ok(signed) => {
                    self.index.upsert_meta(&signed.meta, &key).await?;
                    count += 1;
                }
                Err(e) => tracing::warn!(key, error = %e, "skipping unreadable meta.json"),
            }
        }
        Event::RecordingReindexed {
            sessions: u64::try_from(count).unwrap_or(u64::MAX),
        }
        .emit();
        Ok(count)
    }
}

/// The SHA-256 and length of a sealed object's decompressed recording,
/// hashed as a stream.
pub(crate) fn stream_sha256(data: &[u8], key: &str) -> Result<(Vec<u8>, u64)> {
    use std::io::Read as _;
    let mut reader = sealed_reader(data, key)?;
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 << 10];
    let mut len = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| Error::Format {
            what: key.to_owned(),
            reason: e.to_string(),
        })?;
        if n == 0 {
            return Ok((digest.finish().as_ref().to_vec(), len));
        }
        len += n as u64;
        digest.update(buf.get(..n).unwrap_or_default());
    }
}

/// A sealed `.cast.zst` object's recording as a stream, decompressed as
/// it is read: a long recording is never held uncompressed.
pub fn sealed_reader<'a>(data: &'a [u8], key: &str) -> Result<impl std::io::BufRead + 'a> {
    let decoder = zstd::stream::read::Decoder::with_buffer(data).map_err(|e| Error::Format {
        what: key.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(std::io::BufReader::new(decoder))
}

/// Decompresses a sealed `.cast.zst` object.
pub fn decompress(data: &[u8], key: &str) -> Result<Vec<u8>> {
    zstd::stream::decode_all(data).map_err(|e| Error::Format {
        what: key.to_owned(),
        reason: e.to_string(),
    })
}
