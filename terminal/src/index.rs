//! [`Index`]: keyframes for seeking and the text that was on screen, built
//! in one pass over a [`Timeline`] and kept in a sidecar object beside the
//! recording.
//!
//! The recording stays the source of truth: the sidecar records the
//! SHA-256 of the recording it was built from, and one that does not match
//! (or does not decode) is rebuilt, never trusted.

use std::collections::HashSet;
use std::io::Read as _;

use serde::{Deserialize, Serialize};

use crate::packed::{BLOCK, Pack, Packed, get_str, get_varint, put_str, put_varint};
use crate::screen::{Dirty, Screen, Snapshot};
use crate::timeline::{Change, SCROLLBACK, Step, Timeline, apply};
use crate::{Error, Result};

/// The sidecar format's version; another is rebuilt.
const SIDECAR_VERSION: u32 = 2;

/// The largest sidecar read, decompressed. One bigger is rebuilt.
const MAX_SIDECAR: u64 = 512 << 20;

/// The longest line of text kept for search, in characters.
const MAX_LINE: usize = 4096;

/// When keyframes are taken: after whichever comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Recording time since the last keyframe, in microseconds.
    pub every_us: u64,
    /// Output bytes since the last keyframe.
    pub every_bytes: u64,
}

impl Default for Policy {
    /// Every 5 s or 64 KiB of output: seeking then replays at most that
    /// much, a few milliseconds of emulation.
    fn default() -> Self {
        Policy {
            every_us: 5_000_000,
            every_bytes: 64 << 10,
        }
    }
}

/// A screen snapshot once `steps` steps of the timeline have happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keyframe {
    /// Steps applied.
    pub steps: usize,
    /// The time of the last of them.
    pub time_us: u64,
    /// The screen then.
    pub snapshot: Snapshot,
}

/// A line of text as it appeared on screen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextLine {
    /// Steps applied when the line reached this text: seeking there shows
    /// it.
    pub steps: usize,
    /// The time of that step.
    pub time_us: u64,
    /// Whether it was on the alternate screen (vim, less, top).
    pub alternate: bool,
    /// The row it was on.
    pub row: usize,
    /// The text, trailing spaces removed.
    pub text: String,
}

/// Keyframes and on-screen text of one recording channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// When keyframes were taken.
    pub policy: Policy,
    /// Keyframes in step order; the first is at step 0.
    pub keyframes: Vec<Keyframe>,
    /// Every line that appeared on either screen, in order of appearance.
    /// A line that scrolls keeps its first entry; a line being typed is
    /// one entry, updated as it grows.
    pub text: TextLines,
}

/// The lines of an [`Index`], held compressed: an hour of busy output is
/// hundreds of thousands of lines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TextLines(Packed<TextLine>);

/// Open text past which lines still referenced by a screen row are
/// compressed anyway (a later change to such a row starts a new entry).
const TEXT_OPEN_MAX: usize = 16 * BLOCK;

impl TextLines {
    /// How many lines.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    /// Line `i`, decompressed.
    pub fn get(&self, i: usize) -> Option<TextLine> {
        self.0.get(i)
    }

    /// Calls `f` with each line and its number, in order.
    pub fn for_each(&self, f: impl FnMut(usize, &TextLine)) {
        self.0.for_each(0, usize::MAX, f);
    }

    /// Every line, decompressed (for tests and small recordings).
    pub fn to_vec(&self) -> Vec<TextLine> {
        let mut all = Vec::with_capacity(self.len());
        self.for_each(|_, l| all.push(l.clone()));
        all
    }

    /// Memory the lines hold, in bytes.
    pub fn held_bytes(&self) -> usize {
        self.0.held_bytes()
    }

    fn push(&mut self, line: TextLine) -> usize {
        let weight = line.text.len() + 12;
        self.0.push(line, weight)
    }
}

impl IntoIterator for TextLines {
    type Item = TextLine;
    type IntoIter = IntoLines;

    /// Every line in order, one compressed block at a time: how the text
    /// is handed on (to the search index) without holding it whole.
    fn into_iter(self) -> IntoLines {
        IntoLines(self.0.into_items())
    }
}

/// The lines of a [`TextLines`], in order, decompressed a block at a time.
pub struct IntoLines(crate::packed::IntoItems<TextLine>);

impl Iterator for IntoLines {
    type Item = TextLine;

    fn next(&mut self) -> Option<TextLine> {
        self.0.next()
    }
}

impl Pack for TextLine {
    fn encode(&self, out: &mut Vec<u8>) {
        put_varint(out, self.steps as u64);
        put_varint(out, self.time_us);
        out.push(u8::from(self.alternate));
        put_varint(out, self.row as u64);
        put_str(out, &self.text);
    }

    fn decode(input: &mut &[u8]) -> Option<Self> {
        let steps = usize::try_from(get_varint(input)?).ok()?;
        let time_us = get_varint(input)?;
        let (&alternate, rest) = input.split_first()?;
        *input = rest;
        let row = usize::try_from(get_varint(input)?).ok()?;
        Some(TextLine {
            steps,
            time_us,
            alternate: alternate != 0,
            row,
            text: get_str(input)?,
        })
    }
}

/// The sidecar object: an index and the recording it belongs to.
#[derive(Serialize, Deserialize)]
struct Sidecar {
    version: u32,
    /// Hex SHA-256 of the recording's bytes (the uncompressed cast).
    recording_sha256: String,
    index: Index,
}

/// The sidecar's object key for the sealed recording `sealed_key`, beside
/// it: `CHANNEL.cast.zst` has `CHANNEL.keyframes.zst`.
pub fn sidecar_key(sealed_key: &str) -> String {
    match sealed_key.strip_suffix(".cast.zst") {
        Some(stem) => format!("{stem}.keyframes.zst"),
        None => format!("{sealed_key}.keyframes.zst"),
    }
}

/// Hex SHA-256 of a recording's bytes.
pub fn recording_hash(recording: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, recording).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Passes a recording's bytes through while hashing them, so a recording
/// read as a stream gets its [`recording_hash`] without being held whole.
pub struct HashReader<R> {
    inner: R,
    digest: ring::digest::Context,
}

impl<R> HashReader<R> {
    /// Hashes what is read from `inner`.
    pub fn new(inner: R) -> HashReader<R> {
        HashReader {
            inner,
            digest: ring::digest::Context::new(&ring::digest::SHA256),
        }
    }

    /// The [`recording_hash`] of everything read so far.
    pub fn hash(&self) -> String {
        hex(self.digest.clone().finish().as_ref())
    }
}

impl<R: std::io::Read> std::io::Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.update(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

/// The rows of one screen as the text tracker last saw them.
#[derive(Default)]
struct Rows {
    /// Each row's text after the previous step.
    text: Vec<String>,
    /// The entry each row last produced, if the row has not moved since.
    entry: Vec<Option<usize>>,
}

impl Rows {
    fn fit(&mut self, height: usize) {
        self.text.resize(height, String::new());
        self.entry.resize(height, None);
    }
}

/// Tracks the text on screen while the index is built.
#[derive(Default)]
struct TextTracker {
    primary: Rows,
    alternate: Rows,
    on_alternate: bool,
}

impl TextTracker {
    /// The oldest line a screen row may still update.
    fn oldest_entry(&self) -> Option<usize> {
        self.primary
            .entry
            .iter()
            .chain(&self.alternate.entry)
            .flatten()
            .min()
            .copied()
    }

    /// Records the rows a step changed. A row whose new text was already
    /// on that screen has moved (scrolled, or come back when a full-screen
    /// program ended), and is not recorded again; a row that grew from its
    /// previous text (typing) updates its entry.
    fn observe(
        &mut self,
        screen: &Screen,
        dirty: &[usize],
        scrolled: Vec<String>,
        steps: usize,
        time_us: u64,
        out: &mut TextLines,
    ) {
        let alternate = screen.is_alternate();
        if alternate && !self.on_alternate {
            // A full-screen program starts on a screen of its own.
            self.alternate = Rows::default();
        }
        self.on_alternate = alternate;
        let rows = if alternate {
            &mut self.alternate
        } else {
            &mut self.primary
        };
        // The rows fit a new height only after this step: a resize moves
        // rows, and what was on a row now cut off is still "already on
        // screen".
        let before: HashSet<&str> = if dirty.len() > 1 {
            rows.text.iter().map(String::as_str).collect()
        } else {
            HashSet::new()
        };
        // Lines that scrolled away during this step: those not on screen
        // after the previous one appeared and went within it.
        if !alternate {
            let seen: HashSet<&str> = rows.text.iter().map(String::as_str).collect();
            for mut text in scrolled {
                if text.trim().is_empty() || seen.contains(text.as_str()) {
                    continue;
                }
                if let Some((cut, _)) = text.char_indices().nth(MAX_LINE) {
                    text.truncate(cut);
                }
                out.push(TextLine {
                    steps,
                    time_us,
                    alternate: false,
                    row: 0,
                    text,
                });
            }
        }
        let mut updates = Vec::with_capacity(dirty.len());
        for &row in dirty {
            let Some(mut text) = screen.line(row) else {
                continue;
            };
            if let Some((cut, _)) = text.char_indices().nth(MAX_LINE) {
                text.truncate(cut);
            }
            let old = rows.text.get(row).map_or("", String::as_str);
            if text == old {
                continue;
            }
            let entry = if text.trim().is_empty() || before.contains(text.as_str()) {
                // Blank, or moved here from another row.
                None
            } else if let Some(line) = rows
                .entry
                .get(row)
                .copied()
                .flatten()
                // Typing changes one row at a time; when several change at
                // once (a scroll), a row that now starts with its old text
                // holds another line.
                .filter(|_| dirty.len() == 1 && !old.is_empty() && text.starts_with(old))
                .and_then(|i| Some((i, out.0.open_mut(i)?)))
            {
                let (i, line) = line;
                line.text.clone_from(&text);
                line.steps = steps;
                line.time_us = time_us;
                Some(i)
            } else {
                Some(out.push(TextLine {
                    steps,
                    time_us,
                    alternate,
                    row,
                    text: text.clone(),
                }))
            };
            updates.push((row, text, entry));
        }
        drop(before);
        rows.fit(usize::from(screen.size().1));
        for (row, text, entry) in updates {
            if let (Some(r), Some(e)) = (rows.text.get_mut(row), rows.entry.get_mut(row)) {
                *r = text;
                *e = entry;
            }
        }
    }
}

/// Builds an [`Index`] one step at a time: the whole of a sealed
/// recording, or a live one as its segments arrive. The index so far is
/// usable at any point ([`Builder::index`]).
pub struct Builder {
    screen: Screen,
    dirty: Dirty,
    tracker: TextTracker,
    /// Time of the last keyframe.
    last_us: u64,
    /// Output bytes since the last keyframe.
    bytes: u64,
    steps: usize,
    index: Index,
}

impl Builder {
    /// A builder for a recording that starts at `cols` × `rows`.
    pub fn new((cols, rows): (u16, u16), policy: Policy) -> Result<Builder> {
        let screen = Screen::new(cols, rows, 0)?;
        let index = Index {
            policy,
            keyframes: vec![Keyframe {
                steps: 0,
                time_us: 0,
                snapshot: screen.snapshot(),
            }],
            text: TextLines::default(),
        };
        Ok(Builder {
            screen,
            dirty: Dirty::default(),
            tracker: TextTracker::default(),
            last_us: 0,
            bytes: 0,
            steps: 0,
            index,
        })
    }

    /// Takes the next step of the recording.
    pub fn push(&mut self, step: &Step) {
        self.steps += 1;
        let steps = self.steps;
        let text = &mut self.index.text;
        match &step.change {
            Change::Output(out) => {
                let rows = self.screen.feed_dirty(out, &mut self.dirty);
                let scrolled = self.dirty.take_scrolled();
                self.tracker
                    .observe(&self.screen, &rows, scrolled, steps, step.time_us, text);
                self.bytes = self
                    .bytes
                    .saturating_add(u64::try_from(out.len()).unwrap_or(u64::MAX));
            }
            Change::Resize { cols, rows } => {
                // Through the tracker's observer, so its rows follow.
                let rows = self.screen.resize_dirty(*cols, *rows, &mut self.dirty);
                let scrolled = self.dirty.take_scrolled();
                self.tracker
                    .observe(&self.screen, &rows, scrolled, steps, step.time_us, text);
            }
            change => apply(&mut self.screen, change),
        }
        let open = self.index.text.0.open_bytes();
        if open >= BLOCK {
            // Compress what no row can update any more; past the cap,
            // everything.
            let keep = if open >= TEXT_OPEN_MAX {
                usize::MAX
            } else {
                self.tracker.oldest_entry().unwrap_or(usize::MAX)
            };
            self.index.text.0.freeze_before(keep);
        }
        let policy = self.index.policy;
        if step.time_us.saturating_sub(self.last_us) >= policy.every_us
            || self.bytes >= policy.every_bytes
        {
            self.index.keyframes.push(Keyframe {
                steps,
                time_us: step.time_us,
                snapshot: self.screen.snapshot(),
            });
            self.last_us = step.time_us;
            self.bytes = 0;
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The index of the steps taken so far.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The finished index, all of it compressed.
    pub fn finish(mut self) -> Index {
        self.index.text.0.freeze_before(usize::MAX);
        self.index
    }
}

/// Seeking lives here, beside the keyframes it reads, so the timeline
/// does not depend on the index.
impl Timeline {
    /// The screen once `steps` steps have happened, from the nearest
    /// keyframe at or before it.
    pub fn screen_at(&self, index: &Index, steps: usize) -> Result<Screen> {
        let steps = steps.min(self.len());
        let (mut screen, from) = match index.keyframe_before(steps) {
            Some(k) => (Screen::restore(&k.snapshot, SCROLLBACK)?, k.steps),
            None => (self.start()?, 0),
        };
        self.apply(&mut screen, from, steps);
        Ok(screen)
    }
}

impl Index {
    /// Builds the index in one pass over the timeline.
    pub fn build(timeline: &Timeline, policy: Policy) -> Result<Index> {
        let mut builder = Builder::new(timeline.size(), policy)?;
        timeline.for_each(0, timeline.len(), |step| builder.push(&step));
        Ok(builder.finish())
    }

    /// The last keyframe at or before `steps`.
    pub fn keyframe_before(&self, steps: usize) -> Option<&Keyframe> {
        let after = self.keyframes.partition_point(|k| k.steps <= steps);
        after.checked_sub(1).and_then(|i| self.keyframes.get(i))
    }

    /// The sidecar object for this index and the recording it was built
    /// from (its [`recording_hash`]): zstd-compressed JSON.
    pub fn to_sidecar(&self, recording_sha256: &str) -> Result<Vec<u8>> {
        let sidecar = Sidecar {
            version: SIDECAR_VERSION,
            recording_sha256: recording_sha256.to_owned(),
            index: self.clone(),
        };
        let json = serde_json::to_vec(&sidecar).map_err(|e| Error::Sidecar(e.to_string()))?;
        // With zstd's content checksum: a flipped bit anywhere (inside a
        // text block too) fails the read instead of decoding to nonsense.
        let fail = |e: std::io::Error| Error::Sidecar(e.to_string());
        let mut encoder = zstd::Encoder::new(Vec::new(), 3).map_err(fail)?;
        encoder.include_checksum(true).map_err(fail)?;
        std::io::Write::write_all(&mut encoder, &json).map_err(fail)?;
        encoder.finish().map_err(fail)
    }

    /// The index in a sidecar object, if it belongs to `recording`. An
    /// error says why it cannot be used (corrupt, another version,
    /// another recording); the caller rebuilds.
    pub fn from_sidecar(sidecar: &[u8], recording: &[u8]) -> Result<Index> {
        Index::from_sidecar_hashed(sidecar, &recording_hash(recording))
    }

    /// [`Index::from_sidecar`] for a recording whose [`recording_hash`] is
    /// known, so its bytes can be dropped first. Decoded as a stream: the
    /// JSON is never held whole.
    pub fn from_sidecar_hashed(sidecar: &[u8], recording_sha256: &str) -> Result<Index> {
        let decoder =
            zstd::Decoder::new(sidecar).map_err(|e| Error::Sidecar(format!("not zstd: {e}")))?;
        let reader = std::io::BufReader::new(decoder.take(MAX_SIDECAR));
        let sidecar: Sidecar = serde_json::from_reader(reader).map_err(|e| {
            if e.is_io() {
                Error::Sidecar(format!("cannot decompress: {e}"))
            } else {
                Error::Sidecar(format!(
                    "unreadable at line {} column {}",
                    e.line(),
                    e.column()
                ))
            }
        })?;
        if sidecar.version != SIDECAR_VERSION {
            return Err(Error::Sidecar(format!("version {}", sidecar.version)));
        }
        if sidecar.recording_sha256 != recording_sha256 {
            return Err(Error::Sidecar(
                "built from another version of the recording".to_owned(),
            ));
        }
        Ok(sidecar.index)
    }

    /// The index from `sidecar` if it is sound and belongs to the
    /// recording whose [`recording_hash`] is `recording_sha256`, else built
    /// afresh from the timeline; says which.
    pub fn load_or_build(
        sidecar: Option<&[u8]>,
        recording_sha256: &str,
        timeline: &Timeline,
    ) -> Result<(Index, Loaded)> {
        if let Some(bytes) = sidecar {
            match Index::from_sidecar_hashed(bytes, recording_sha256) {
                Ok(index) => return Ok((index, Loaded::FromSidecar)),
                Err(Error::Sidecar(why)) => {
                    return Ok((
                        Index::build(timeline, Policy::default())?,
                        Loaded::Rebuilt(why),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        Ok((Index::build(timeline, Policy::default())?, Loaded::Built))
    }
}

/// Where [`Index::load_or_build`] got the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loaded {
    /// From a sound sidecar.
    FromSidecar,
    /// There was no sidecar: built.
    Built,
    /// The sidecar could not be used, for this reason: rebuilt.
    Rebuilt(String),
}
