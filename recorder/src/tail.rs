//! Following a channel while it is being recorded ([`Tail`]): its stream as
//! it grows, read from this machine's spool when it has it (the freshest
//! copy), else from the segments already uploaded, and finally from the
//! sealed session's segment list once it ends.
//!
//! The stream is the same bytes either way (segments are byte ranges of the
//! spool), so the tail keeps one offset: how much of the stream it has
//! handed out, always at a line boundary. Switching source never repeats or
//! skips an event.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use crate::asciicast::{Event, Header, TimedEvent, parse_header, parse_line};
use crate::catalog::{Catalog, decompress};
use crate::meta::Status;
use crate::{Error, Result};

/// The most read from the spool in one poll: a session that has run far
/// ahead is caught up over several polls, and memory stays bounded.
const MAX_SPOOL_READ: u64 = 8 << 20;

/// The most segments fetched in one poll, for the same reason.
const MAX_SEGMENTS: usize = 32;

/// What one [`Tail::poll`] found.
#[derive(Debug, Default)]
pub struct Polled {
    /// The recording's header, on the poll that first read it.
    pub header: Option<Header>,
    /// New events, in order, with times from the start of the recording.
    pub events: Vec<TimedEvent>,
    /// Set once the session has ended and every event has been handed out.
    pub ended: Option<Ended>,
    /// Lines that could not be parsed and were skipped, in words.
    pub damaged: Vec<String>,
}

/// How a followed session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended {
    /// The recording's final state.
    pub status: Status,
    /// Why, when the index gives a reason.
    pub reason: Option<String>,
    /// When, Unix milliseconds, if the index knows.
    pub ended_at_ms: Option<u64>,
}

/// Where the last poll read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Nothing read yet.
    Nothing,
    /// This machine's spool file.
    Spool,
    /// Uploaded segments.
    Segments,
    /// The sealed session.
    Sealed,
}

/// One channel of a session, followed as it is recorded.
#[derive(Debug)]
pub struct Tail {
    session_id: String,
    channel: String,
    prefix: String,
    /// This machine's spool files for the channel: asciicast, then a byte
    /// stream (one of them exists).
    spool: Option<[PathBuf; 2]>,
    /// A byte-stream recording (known from its first byte): its frames are
    /// decoded here; `None` while unknown or for asciicast.
    stream: Option<crate::stream::EventDecoder>,
    /// Stream bytes handed out as events (whole lines or frames only).
    consumed: u64,
    /// Bytes read past `consumed`: the start of a line still being written.
    partial: Vec<u8>,
    /// The next segment to fetch and the stream offset it starts at.
    next_seq: u64,
    seg_offset: u64,
    header_seen: bool,
    time_us: u64,
    line_no: u64,
    source: Source,
    ended: bool,
}

impl Tail {
    /// Follows `channel` of `session_id`, whose objects are under `prefix`
    /// (from the index). `spool_dir` is this machine's spool directory, if
    /// it may hold the session.
    pub fn new(session_id: &str, channel: &str, prefix: &str, spool_dir: Option<PathBuf>) -> Tail {
        Tail {
            session_id: session_id.to_owned(),
            channel: channel.to_owned(),
            prefix: prefix.to_owned(),
            spool: spool_dir.map(|d| {
                let dir = d.join(session_id);
                [
                    dir.join(format!("{channel}.cast")),
                    dir.join(format!("{channel}.stream")),
                ]
            }),
            stream: None,
            consumed: 0,
            partial: Vec::new(),
            next_seq: 0,
            seg_offset: 0,
            header_seen: false,
            time_us: 0,
            line_no: 0,
            source: Source::Nothing,
            ended: false,
        }
    }

    /// Where the last poll read from.
    pub fn source(&self) -> Source {
        self.source
    }

    /// Whether the session has ended and everything was handed out.
    pub fn is_done(&self) -> bool {
        self.ended
    }

    /// Reads what is new. Storage or index errors are returned; the next
    /// poll retries from the same place.
    pub async fn poll(&mut self, catalog: &Catalog) -> Result<Polled> {
        let mut out = Polled::default();
        if self.ended {
            return Ok(out);
        }
        let (record, _) = catalog
            .show(&self.session_id)
            .await?
            .ok_or_else(|| Error::NotFound {
                session_id: self.session_id.clone(),
            })?;
        let sealed = record.status != Status::Recording && record.meta_key.is_some();
        // A recording that failed before its seal gets no manifest: what
        // was uploaded is all there is.
        let failed = record.status == Status::Failed && record.meta_key.is_none();
        if sealed || failed {
            if sealed {
                self.read_sealed(catalog, &mut out).await?;
                self.source = Source::Sealed;
            } else {
                if self.read_segments(catalog, &mut out).await? == MAX_SEGMENTS {
                    // More may follow: the end is said once all is read.
                    return Ok(out);
                }
            }
            self.ended = true;
            out.ended = Some(Ended {
                status: record.status,
                reason: record.reason,
                ended_at_ms: record.ended_at_ms,
            });
            return Ok(out);
        }
        if self.read_spool(&mut out)? {
            self.source = Source::Spool;
        } else {
            self.read_segments(catalog, &mut out).await?;
        }
        Ok(out)
    }

    /// Reads the spool past what was handed out; false when this machine
    /// has no readable spool for the channel.
    fn read_spool(&mut self, out: &mut Polled) -> Result<bool> {
        let Some(paths) = &self.spool else {
            return Ok(false);
        };
        let Some((path, mut file)) = paths
            .iter()
            .find_map(|p| std::fs::File::open(p).ok().map(|f| (p.clone(), f)))
        else {
            return Ok(false);
        };
        let from = self.consumed + self.partial.len() as u64;
        let mut data = Vec::new();
        file.seek(SeekFrom::Start(from))
            .and_then(|_| file.take(MAX_SPOOL_READ).read_to_end(&mut data))
            .map_err(Error::spool(&path))?;
        self.feed(&data, out);
        Ok(true)
    }

    /// Fetches the uploaded segments not read yet (at most
    /// [`MAX_SEGMENTS`]); returns how many it fetched.
    async fn read_segments(&mut self, catalog: &Catalog, out: &mut Polled) -> Result<usize> {
        for fetched in 0..MAX_SEGMENTS {
            let key = format!(
                "{}/{}/{:08}.part.zst",
                self.prefix, self.channel, self.next_seq
            );
            let stored = match catalog.storage().get(&key).await {
                Ok(data) => data,
                Err(Error::Storage {
                    source: object_store::Error::NotFound { .. },
                    ..
                }) => return Ok(fetched),
                Err(e) => return Err(e),
            };
            let data = decompress(&stored, &key)?;
            self.source = Source::Segments;
            let start = self.seg_offset;
            self.next_seq += 1;
            self.seg_offset += data.len() as u64;
            self.take_range(start, &data, out);
        }
        Ok(MAX_SEGMENTS)
    }

    /// Reads the rest of a sealed session through its segment list.
    async fn read_sealed(&mut self, catalog: &Catalog, out: &mut Polled) -> Result<()> {
        let signed = catalog.meta(&self.session_id).await?;
        let Some(ch) = signed
            .meta
            .channels
            .iter()
            .find(|c| c.channel == self.channel)
        else {
            return Ok(());
        };
        let have = self.consumed + self.partial.len() as u64;
        for seg in ch.segments.iter().filter(|s| s.offset + s.bytes > have) {
            let stored = catalog.storage().get(&seg.key).await?;
            let data = if seg.key.ends_with(".zst") {
                decompress(&stored, &seg.key)?
            } else {
                stored.to_vec()
            };
            self.take_range(seg.offset, &data, out);
        }
        // A last line without its newline is the end of the stream.
        if !self.partial.is_empty() && self.stream.is_none() {
            let mut rest = std::mem::take(&mut self.partial);
            rest.push(b'\n');
            self.feed(&rest, out);
        }
        Ok(())
    }

    /// Feeds the part of `data` (stream bytes from `start`) not read yet.
    fn take_range(&mut self, start: u64, data: &[u8], out: &mut Polled) {
        let have = self.consumed + self.partial.len() as u64;
        let skip = usize::try_from(have.saturating_sub(start)).unwrap_or(usize::MAX);
        if let Some(new) = data.get(skip..) {
            self.feed(new, out);
        }
    }

    /// Appends stream bytes and hands out every complete line (or frame,
    /// for a byte-stream recording).
    fn feed(&mut self, data: &[u8], out: &mut Polled) {
        if self.consumed == 0 && self.partial.is_empty() && crate::stream::is_stream(data) {
            self.stream = Some(crate::stream::EventDecoder::default());
        }
        if self.stream.is_some() {
            self.feed_frames(data, out);
            return;
        }
        self.partial.extend_from_slice(data);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        self.consumed += complete.len() as u64;
        for line in complete.split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            self.line_no += 1;
            let text = String::from_utf8_lossy(line);
            if !self.header_seen {
                if text.trim().is_empty() {
                    continue;
                }
                match parse_header(&text) {
                    Ok(header) => out.header = Some(header),
                    Err(e) => out.damaged.push(format!("line {}: {e}", self.line_no)),
                }
                self.header_seen = true;
                continue;
            }
            match parse_line(&text) {
                None => {}
                Some(Ok((interval_us, event))) => {
                    self.time_us = self.time_us.saturating_add(interval_us);
                    out.events.push(TimedEvent {
                        interval_us,
                        time_us: self.time_us,
                        event,
                    });
                }
                Some(Err(e)) => out.damaged.push(format!("line {}: {e}", self.line_no)),
            }
        }
    }
}

impl Tail {
    /// [`Tail::feed`] for a byte-stream recording: whole frames only.
    fn feed_frames(&mut self, data: &[u8], out: &mut Polled) {
        self.partial.extend_from_slice(data);
        let whole = crate::stream::whole_frames(&self.partial);
        if whole == 0 {
            return;
        }
        let complete: Vec<u8> = self.partial.drain(..whole).collect();
        self.consumed += whole as u64;
        let mut frames = crate::stream::Frames::new(complete.as_slice());
        loop {
            match frames.next_frame() {
                Ok(Some(frame)) => {
                    if frame.kind == crate::stream::Kind::Header && !self.header_seen {
                        self.header_seen = true;
                        match crate::stream::parse_header_payload(&frame.data) {
                            Ok(header) => out.header = Some(header),
                            Err(e) => out.damaged.push(e.to_string()),
                        }
                        continue;
                    }
                    let decoder = self.stream.get_or_insert_with(Default::default);
                    if let Some(event) = decoder.event(&frame) {
                        self.time_us = event.time_us;
                        out.events.push(event);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    out.damaged.push(e.to_string());
                    break;
                }
            }
        }
    }
}

/// The label of the end marker the gateway writes, if `event` is one.
pub fn end_marker(event: &Event) -> Option<&str> {
    match event {
        Event::Marker(label) => end_reason(label),
        _ => None,
    }
}

/// The reason in a marker label written when the gateway ended a session
/// (`gatehouse.ended REASON`), if the label is one.
pub fn end_reason(label: &str) -> Option<&str> {
    label.strip_prefix("gatehouse.ended ")
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tail() -> Tail {
        Tail::new("s1", "0", "sessions/x/s1", None)
    }

    const HEADER: &str = r#"{"version":3,"term":{"cols":80,"rows":24}}"#;

    #[test]
    fn lines_split_across_reads_come_out_once() {
        let mut t = tail();
        let mut out = Polled::default();
        let stream = format!("{HEADER}\n[0.5,\"o\",\"ab\"]\n[1.0,\"o\",\"cd\"]\n");
        let (a, b) = stream.as_bytes().split_at(HEADER.len() + 8);
        t.feed(a, &mut out);
        assert!(out.header.is_some());
        assert!(out.events.is_empty(), "a half line is held back");
        t.feed(b, &mut out);
        let texts: Vec<_> = out.events.iter().map(|e| e.event.clone()).collect();
        assert_eq!(
            texts,
            [Event::Output("ab".into()), Event::Output("cd".into())]
        );
        assert_eq!(out.events.last().map(|e| e.time_us), Some(1_500_000));
        assert_eq!(t.consumed, stream.len() as u64);
    }

    #[test]
    fn overlapping_ranges_are_not_repeated() {
        let mut t = tail();
        let mut out = Polled::default();
        let first = format!("{HEADER}\n[0.1,\"o\",\"a\"]\n");
        t.feed(first.as_bytes(), &mut out);
        // The spool went away: a segment holding all of it and more comes next.
        let whole = format!("{first}[0.1,\"o\",\"b\"]\n");
        t.take_range(0, whole.as_bytes(), &mut out);
        let texts: Vec<_> = out.events.iter().map(|e| e.event.clone()).collect();
        assert_eq!(
            texts,
            [Event::Output("a".into()), Event::Output("b".into())]
        );
    }

    #[test]
    fn a_stream_recording_is_followed_frame_by_frame() {
        use crate::stream::{Kind, frame_header, header_payload};
        let header: Header = serde_json::from_str(HEADER).unwrap();
        let frame = |kind: Kind, t: u64, data: &[u8]| {
            let mut f = frame_header(kind, t, data.len()).to_vec();
            f.extend_from_slice(data);
            f
        };
        let mut bytes = frame(Kind::Header, 0, &header_payload(&header));
        bytes.extend(frame(Kind::Stdout, 100, b"caf\xc3"));
        bytes.extend(frame(Kind::Stdout, 200, b"\xa9\n"));
        bytes.extend(frame(Kind::Exit, 300, &0i64.to_le_bytes()));
        let mut t = tail();
        let mut out = Polled::default();
        // Fed a few bytes at a time, as a growing spool is read.
        for piece in bytes.chunks(7) {
            t.feed(piece, &mut out);
        }
        assert_eq!(out.header, Some(header));
        let events: Vec<_> = out.events.iter().map(|e| e.event.clone()).collect();
        assert_eq!(
            events,
            [
                Event::Output("caf".into()),
                Event::Output("é\n".into()),
                Event::Exit(0)
            ]
        );
        assert_eq!(t.consumed, bytes.len() as u64);
        assert!(out.damaged.is_empty(), "{:?}", out.damaged);
    }

    #[test]
    fn a_damaged_line_is_reported_and_skipped() {
        let mut t = tail();
        let mut out = Polled::default();
        t.feed(
            format!("{HEADER}\n[0.1,\"o\",\"a\"]\nnot json\n[0.1,\"o\",\"b\"]\n").as_bytes(),
            &mut out,
        );
        assert_eq!(out.events.len(), 2);
        assert_eq!(out.damaged.len(), 1, "{:?}", out.damaged);
        assert!(out.damaged[0].starts_with("line 3:"), "{:?}", out.damaged);
    }
}
