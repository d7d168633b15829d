//! The text indexer: puts what was on screen in sealed recordings into the
//! state store's text index, so `Store::text_search` finds it.
//!
//! [`index_session`] reads each sealed channel of a session as a stream
//! out of its decompressor, takes the on-screen text from the keyframe
//! sidecar when the sidecar belongs to these bytes (else builds the index
//! and stores the sidecar for the player), and hands the lines to
//! `Store::text_index_replace` a compressed block at a time: the text of an
//! hour-long recording is never held uncompressed, only the sealed object
//! and the index's packed text are.
//!
//! [`Indexer::run`] is the background task: it asks the store which
//! sessions are due (`Store::text_unindexed`), indexes them one at a time,
//! and sleeps while there is nothing to do. A recording that cannot be
//! read (malformed, not zstd) is recorded as failed with its reason, so it
//! leaves the queue; a storage or database outage is retried with a
//! backoff, and after [`MAX_ATTEMPTS`] the session is recorded as failed
//! too, so one unreadable object never holds up the rest.
//!
//! **Invariant:** nothing logged carries terminal text: counts, session
//! ids, object keys and error kinds only (a malformed recording is named
//! by its line number, not by what the line held).
//!
//! Give the indexer a store of its own (a second `state::Sqlite::open` of
//! the same directory): a long channel is written in one transaction, and
//! the web app's own requests should not queue behind it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use recorder::Catalog;
use recorder::asciicast::Reader;
use recorder::meta::ChannelMeta;
use state::{ScreenLine, Store, TextChunker};
use terminal::{HashReader, Index, Policy, TextLines, Timeline};
use tokio_util::sync::CancellationToken;

use crate::Error;

/// How often a transient failure is retried before the session is
/// recorded as failed.
pub const MAX_ATTEMPTS: u32 = 3;

/// Sessions asked for at a time.
const BATCH: usize = 16;

/// What [`index_session`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexReport {
    /// Channels whose text is now indexed.
    pub channels: u64,
    /// Channels recorded as failed (each with its reason in the store).
    pub failed: u64,
    /// Lines of text indexed.
    pub lines: u64,
    /// Bytes of text indexed.
    pub text_bytes: u64,
    /// Bytes of recording read (the uncompressed asciicast).
    pub recording_bytes: u64,
    /// Sidecars built (no sidecar, or one that did not belong).
    pub sidecars_built: u64,
    /// Channels whose recording stopped parsing; their text up to there
    /// is indexed.
    pub damaged: u64,
}

impl IndexReport {
    fn add(&mut self, other: &IndexReport) {
        self.channels += other.channels;
        self.failed += other.failed;
        self.lines += other.lines;
        self.text_bytes += other.text_bytes;
        self.recording_bytes += other.recording_bytes;
        self.sidecars_built += other.sidecars_built;
        self.damaged += other.damaged;
    }
}

fn fail(session_id: &str, reason: impl Into<String>, transient: bool) -> Error {
    Error::TextIndex {
        session_id: session_id.to_owned(),
        reason: reason.into(),
        transient,
    }
}

/// A recorder error in words that hold no terminal text, and whether it
/// may pass.
fn recorder_error(session_id: &str, e: &recorder::Error) -> Error {
    match e {
        // The parser's message can quote the line; its number is enough.
        recorder::Error::Format { what, .. } => {
            fail(session_id, format!("malformed {what}"), false)
        }
        recorder::Error::NotFound { .. } => fail(session_id, "no meta.json in storage", false),
        recorder::Error::Storage { .. } | recorder::Error::Index(_) => {
            fail(session_id, e.to_string(), true)
        }
        other => fail(session_id, other.to_string(), false),
    }
}

fn state_error(session_id: &str, e: &state::Error) -> Error {
    let transient = !matches!(e, state::Error::Invalid(_));
    fail(session_id, e.to_string(), transient)
}

/// The on-screen text of one sealed channel, and what it took.
struct ChannelText {
    text: TextLines,
    /// A newly built sidecar to store, if the recording read cleanly.
    sidecar: Option<Vec<u8>>,
    recording_bytes: u64,
    built: bool,
    /// Where the recording stopped parsing (its line, never its text).
    damage: Option<String>,
}

/// Counts what passes through, for the recording's size.
struct Counted<R> {
    inner: R,
    bytes: u64,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Reads a sealed channel and gets its text: from the sidecar when it
/// names these bytes' hash (one pass to hash them), else from an index
/// built now (a second pass, through the timeline). Blocking: CPU only.
fn channel_text(
    session_id: &str,
    sealed: &[u8],
    key: &str,
    sidecar: Option<&[u8]>,
) -> Result<ChannelText, Error> {
    let open = || -> Result<_, Error> {
        let stream =
            recorder::sealed_reader(sealed, key).map_err(|e| recorder_error(session_id, &e))?;
        Ok(Counted {
            inner: HashReader::new(stream),
            bytes: 0,
        })
    };
    if let Some(sidecar) = sidecar {
        let mut hashed = open()?;
        std::io::copy(&mut hashed, &mut std::io::sink())
            .map_err(|e| fail(session_id, format!("{key}: {e}"), false))?;
        if let Ok(index) = Index::from_sidecar_hashed(sidecar, &hashed.inner.hash()) {
            return Ok(ChannelText {
                text: index.text,
                sidecar: None,
                recording_bytes: hashed.bytes,
                built: false,
                damage: None,
            });
        }
    }
    let (header, mut reader) = Reader::new(std::io::BufReader::new(open()?))
        .map_err(|e| recorder_error(session_id, &e))?;
    let (timeline, damage) = Timeline::read(&header, &mut reader);
    let counted = reader.into_inner().into_inner();
    let hash = counted.inner.hash();
    let index = Index::build(&timeline, Policy::default())
        .map_err(|e| fail(session_id, format!("{key}: {e}"), false))?;
    drop(timeline);
    let damage = damage.map(|e| match e {
        recorder::Error::Format { what, .. } => what,
        other => other.to_string(),
    });
    // A damaged recording's index covers only what could be read: it is
    // not stored, as the player does.
    let sidecar = damage
        .is_none()
        .then(|| index.to_sidecar(&hash).ok())
        .flatten();
    Ok(ChannelText {
        text: index.text,
        sidecar,
        recording_bytes: counted.bytes,
        built: true,
        damage,
    })
}

/// Indexes one channel: its text replaces what the store had for it.
async fn index_channel(
    catalog: &Catalog,
    store: &dyn Store,
    session_id: &str,
    channel: &ChannelMeta,
) -> Result<IndexReport, Error> {
    let key = channel.sealed_key.clone();
    let sealed = catalog
        .storage()
        .get(&key)
        .await
        .map_err(|e| recorder_error(session_id, &e))?;
    let sidecar_key = terminal::sidecar_key(&key);
    // No sidecar (or none readable) is normal: it is built.
    let sidecar = catalog.storage().get(&sidecar_key).await.ok();
    let id = session_id.to_owned();
    let read =
        tokio::task::spawn_blocking(move || channel_text(&id, &sealed, &key, sidecar.as_deref()))
            .await
            .map_err(|e| fail(session_id, format!("the indexing task failed: {e}"), true))??;
    let mut report = IndexReport {
        recording_bytes: read.recording_bytes,
        sidecars_built: u64::from(read.built),
        damaged: u64::from(read.damage.is_some()),
        ..IndexReport::default()
    };
    if let Some(at) = &read.damage {
        tracing::warn!(
            session_id,
            channel = %channel.channel,
            at = %at,
            "recording damaged; its text is indexed up to there"
        );
    }
    if let Some(data) = read.sidecar
        && let Err(e) = catalog.storage().put(&sidecar_key, data.into()).await
    {
        // Best effort: read-only storage still gets its text indexed.
        tracing::warn!(session_id, key = %sidecar_key, error = %e, "cannot store the keyframe sidecar");
    }
    let lines = read.text.into_iter().map(|l| ScreenLine {
        steps: u64::try_from(l.steps).unwrap_or(u64::MAX),
        time_us: l.time_us,
        alternate: l.alternate,
        text: l.text,
    });
    let stored = store
        .text_index_replace(
            session_id,
            &channel.channel,
            Box::new(TextChunker::new(lines)),
        )
        .await
        .map_err(|e| state_error(session_id, &e))?;
    report.channels = 1;
    report.lines = stored.lines;
    report.text_bytes = stored.bytes;
    Ok(report)
}

/// Indexes the text of every sealed channel of `session_id`, replacing
/// what the store had. A channel that cannot be read is recorded as
/// failed in the store and the others go on; a transient failure (storage
/// or the store unreachable) ends the call with an error and records
/// nothing, so the session stays due. A session whose manifest cannot be
/// read is recorded as failed as a whole, unless that is transient.
pub async fn index_session(
    catalog: &Catalog,
    store: &dyn Store,
    session_id: &str,
) -> Result<IndexReport, Error> {
    let signed = match catalog.meta(session_id).await {
        Ok(s) => s,
        Err(e) => {
            let err = recorder_error(session_id, &e);
            if let Error::TextIndex {
                reason,
                transient: false,
                ..
            } = &err
            {
                store
                    .text_index_failed(session_id, None, reason)
                    .await
                    .map_err(|e| state_error(session_id, &e))?;
            }
            return Err(err);
        }
    };
    let mut report = IndexReport::default();
    if signed.meta.channels.is_empty() {
        store
            .text_index_failed(session_id, None, "recorded no channels")
            .await
            .map_err(|e| state_error(session_id, &e))?;
        return Ok(report);
    }
    for channel in &signed.meta.channels {
        match index_channel(catalog, store, session_id, channel).await {
            Ok(r) => report.add(&r),
            Err(Error::TextIndex {
                reason,
                transient: false,
                ..
            }) => {
                tracing::warn!(session_id, channel = %channel.channel, reason = %reason, "cannot index a channel's text");
                store
                    .text_index_failed(session_id, Some(&channel.channel), &reason)
                    .await
                    .map_err(|e| state_error(session_id, &e))?;
                report.failed += 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

/// What one [`Indexer::pass`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Sessions indexed (some of their channels may have failed).
    pub sessions: u64,
    /// Sessions recorded as failed as a whole.
    pub failed: u64,
    /// Sessions put off after a transient failure.
    pub postponed: u64,
    /// The sum of the sessions' reports.
    pub total: IndexReport,
}

/// The background indexer (see the module docs).
pub struct Indexer {
    catalog: Arc<Catalog>,
    store: Arc<dyn Store>,
    /// The pause when nothing is due.
    idle: Duration,
    /// The first pause after a transient failure; doubled each time.
    backoff: Duration,
    /// Sessions that failed transiently: attempts so far and when to try
    /// again. In memory only: a restart tries them afresh.
    retry: HashMap<String, (u32, Instant)>,
}

impl Indexer {
    /// An indexer over `catalog`'s recordings and `store`'s text index,
    /// pausing 5 s when idle and 30 s (doubling) after a transient failure.
    pub fn new(catalog: Arc<Catalog>, store: Arc<dyn Store>) -> Indexer {
        Indexer {
            catalog,
            store,
            idle: Duration::from_secs(5),
            backoff: Duration::from_secs(30),
            retry: HashMap::new(),
        }
    }

    /// Sets the pause when nothing is due and the first backoff.
    pub fn with_pauses(mut self, idle: Duration, backoff: Duration) -> Indexer {
        self.idle = idle;
        self.backoff = backoff;
        self
    }

    /// Indexes the sessions due now, up to a batch of them (a session put
    /// off is skipped until its time). `Ok` with nothing done means the
    /// queue is empty, or holds only sessions put off.
    pub async fn pass(&mut self) -> Result<PassReport, Error> {
        let now = Instant::now();
        let due = self
            .store
            .text_unindexed(BATCH + self.retry.len())
            .await
            .map_err(|e| state_error("-", &e))?;
        let mut report = PassReport::default();
        let due: Vec<String> = due
            .into_iter()
            .filter(|id| self.retry.get(id).is_none_or(|(_, at)| *at <= now))
            .take(BATCH)
            .collect();
        for session_id in due {
            let started = Instant::now();
            match index_session(&self.catalog, self.store.as_ref(), &session_id).await {
                Ok(r) => {
                    tracing::info!(
                        session_id,
                        channels = r.channels,
                        failed_channels = r.failed,
                        lines = r.lines,
                        text_bytes = r.text_bytes,
                        recording_bytes = r.recording_bytes,
                        ms = started.elapsed().as_millis() as u64,
                        "indexed a recording's text"
                    );
                    self.retry.remove(&session_id);
                    report.sessions += 1;
                    report.total.add(&r);
                }
                Err(Error::TextIndex {
                    reason,
                    transient: true,
                    ..
                }) => {
                    let attempts = self.retry.get(&session_id).map_or(0, |(n, _)| *n) + 1;
                    if attempts >= MAX_ATTEMPTS {
                        tracing::warn!(session_id, attempts, reason = %reason, "giving up indexing a recording's text");
                        let why = format!("gave up after {attempts} attempts: {reason}");
                        self.store
                            .text_index_failed(&session_id, None, &why)
                            .await
                            .map_err(|e| state_error(&session_id, &e))?;
                        self.retry.remove(&session_id);
                        report.failed += 1;
                    } else {
                        let wait = self.backoff.saturating_mul(1 << (attempts - 1));
                        tracing::warn!(session_id, attempts, reason = %reason, retry_in_s = wait.as_secs(), "cannot index a recording's text yet");
                        self.retry.insert(session_id, (attempts, now + wait));
                        report.postponed += 1;
                    }
                }
                Err(e) => {
                    // Recorded in the store by index_session.
                    tracing::warn!(session_id, error = %e, "cannot index a recording's text");
                    self.retry.remove(&session_id);
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }

    /// Runs until `stop`: a pass, then another at once if it did anything,
    /// else after the idle pause. Errors are logged, never fatal.
    pub async fn run(mut self, stop: CancellationToken) {
        let idle = self.idle;
        loop {
            let pause = tokio::select! {
                () = stop.cancelled() => return,
                result = self.pass() => match result {
                    Ok(r) if r.sessions + r.failed > 0 => Duration::ZERO,
                    Ok(_) => idle,
                    Err(e) => {
                        tracing::warn!(error = %e, "the text indexer cannot reach the state database");
                        idle
                    }
                },
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}
