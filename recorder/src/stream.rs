//! The byte-stream recording format (issue 15): what a channel without a
//! terminal carries (`rsync`, `git`, `tar c`, `cat file`), kept byte for
//! byte, with no JSON escaping and no UTF-8 decoding on the data path.
//!
//! A recording is a sequence of frames, each a 13-byte header and its
//! payload:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | kind: `0` header, `1` stdout, `2` stderr, `3` stdin, `4` marker, `5` exit |
//! | 8 | microseconds since the channel started, little-endian |
//! | 4 | payload length, little-endian (at most [`MAX_PAYLOAD`]) |
//!
//! The first frame is the header: [`MAGIC`] then the same JSON header an
//! asciicast recording starts with. A recording therefore starts with a NUL
//! byte, which no asciicast file does, and readers tell the two apart by
//! it. Markers carry a UTF-8 label (file operations are
//! `gatehouse.file {json}`, as in asciicast); the exit frame carries the
//! status as an `i64`. Times are absolute, so segments cut at any frame
//! boundary concatenate, like asciicast's, and the sealed recording is the
//! segments in order.
//!
//! [`Frames`] reads frames back; [`Events`] turns them into the same
//! [`TimedEvent`]s an asciicast recording gives (stdout and stderr as
//! output text, decoded the way the terminal recorder decodes), so the
//! players, search and the web app show a stream recording as text.
//! `recordings export --stream` gives back the exact bytes.

use std::io::Read;

use crate::asciicast::{Event, Header, TimedEvent, Utf8Decoder};
use crate::{Error, Result};

/// The start of the header frame's payload.
pub const MAGIC: &[u8; 8] = b"GHSTRM1\n";

/// The size of a frame header.
pub const FRAME_HEADER: usize = 13;

/// The largest payload of one frame; the writer splits larger writes.
pub const MAX_PAYLOAD: usize = 256 * 1024;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The JSON header, first and once.
    Header = 0,
    /// Bytes the target wrote to stdout.
    Stdout = 1,
    /// Bytes the target wrote to stderr (SSH extended data).
    Stderr = 2,
    /// Bytes the client sent (only with `record_input`).
    Stdin = 3,
    /// A marker label (UTF-8).
    Marker = 4,
    /// The exit status, an `i64` little-endian.
    Exit = 5,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            0 => Kind::Header,
            1 => Kind::Stdout,
            2 => Kind::Stderr,
            3 => Kind::Stdin,
            4 => Kind::Marker,
            5 => Kind::Exit,
            _ => return None,
        })
    }

    /// The name `recordings export --stream` takes.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Header => "header",
            Kind::Stdout => "stdout",
            Kind::Stderr => "stderr",
            Kind::Stdin => "stdin",
            Kind::Marker => "marker",
            Kind::Exit => "exit",
        }
    }

    /// The data stream a name stands for (`stdout`, `stderr`, `stdin`).
    pub fn stream(name: &str) -> Option<Kind> {
        match name {
            "stdout" => Some(Kind::Stdout),
            "stderr" => Some(Kind::Stderr),
            "stdin" => Some(Kind::Stdin),
            _ => None,
        }
    }
}

/// A frame's header for `kind` at `t_us` with `len` bytes of payload.
pub fn frame_header(kind: Kind, t_us: u64, len: usize) -> [u8; FRAME_HEADER] {
    let mut h = [0u8; FRAME_HEADER];
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    for (dst, src) in h.iter_mut().zip(
        [kind as u8]
            .into_iter()
            .chain(t_us.to_le_bytes())
            .chain(len.to_le_bytes()),
    ) {
        *dst = src;
    }
    h
}

/// The header frame's payload for `header`.
pub fn header_payload(header: &Header) -> Vec<u8> {
    let mut payload = MAGIC.to_vec();
    payload.extend(serde_json::to_vec(header).unwrap_or_default());
    payload
}

/// Whether a recording's first bytes are a stream recording's.
pub fn is_stream(first: &[u8]) -> bool {
    first.first() == Some(&(Kind::Header as u8))
}

/// The length of the longest prefix of `data` (which starts at a frame
/// boundary) made of whole frames: where a segment may be cut.
pub fn whole_frames(data: &[u8]) -> usize {
    let mut at = 0usize;
    while let Some(h) = data.get(at..at + FRAME_HEADER) {
        let len = h
            .get(9..13)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes) as usize;
        let end = at + FRAME_HEADER + len;
        if end > data.len() {
            break;
        }
        at = end;
    }
    at
}

/// One frame read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// What it carries.
    pub kind: Kind,
    /// Microseconds since the channel started.
    pub t_us: u64,
    /// The payload.
    pub data: Vec<u8>,
}

/// Reads frames from a stream recording.
pub struct Frames<R> {
    input: R,
    /// Where the next frame starts, for messages.
    offset: u64,
}

fn damaged(offset: u64, what: &str) -> Error {
    Error::Format {
        what: format!("stream recording at byte {offset}"),
        reason: what.to_owned(),
    }
}

/// Fills `buf` from `input`; the number of bytes read (less only at the
/// end of the input).
fn read_full<R: Read>(input: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let Some(rest) = buf.get_mut(got..) else {
            break;
        };
        match input.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl<R: Read> Frames<R> {
    /// Frames from the start of a recording.
    pub fn new(input: R) -> Frames<R> {
        Frames { input, offset: 0 }
    }

    /// The input, wherever reading stopped.
    pub fn into_inner(self) -> R {
        self.input
    }

    /// The next frame, or `None` at the end. A frame cut off by the end of
    /// the input (a crash mid-write) ends the recording; a frame that
    /// cannot be one is an error naming its offset.
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        let mut h = [0u8; FRAME_HEADER];
        let got =
            read_full(&mut self.input, &mut h).map_err(|e| damaged(self.offset, &e.to_string()))?;
        if got < FRAME_HEADER {
            return Ok(None);
        }
        let [k, t @ .., l0, l1, l2, l3] = h;
        let Some(kind) = Kind::from_byte(k) else {
            return Err(damaged(self.offset, &format!("unknown frame kind {k}")));
        };
        let t_us = u64::from_le_bytes(t);
        let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
        if len > MAX_PAYLOAD.max(64 * 1024) && kind != Kind::Header {
            return Err(damaged(self.offset, &format!("a frame of {len} bytes")));
        }
        if kind == Kind::Header && len > 1024 * 1024 {
            return Err(damaged(self.offset, "a header over 1 MiB"));
        }
        let mut data = vec![0u8; len];
        let got = read_full(&mut self.input, &mut data)
            .map_err(|e| damaged(self.offset, &e.to_string()))?;
        if got < len {
            return Ok(None);
        }
        self.offset += (FRAME_HEADER + len) as u64;
        Ok(Some(Frame { kind, t_us, data }))
    }
}

/// Reads the header frame of a stream recording.
pub fn read_header<R: Read>(frames: &mut Frames<R>) -> Result<Header> {
    let frame = frames
        .next_frame()?
        .ok_or_else(|| damaged(0, "empty recording"))?;
    if frame.kind != Kind::Header {
        return Err(damaged(0, "the first frame is not the header"));
    }
    parse_header_payload(&frame.data)
}

/// Turns frames into the timed events of a terminal recording: stdout
/// and stderr become output text, stdin input text, each decoded as UTF-8
/// the way the terminal recorder decodes (a split character is carried,
/// invalid bytes become U+FFFD). Shared by [`Events`] and the live tail.
#[derive(Debug, Default)]
pub struct EventDecoder {
    last_us: u64,
    stdout: Utf8Decoder,
    stderr: Utf8Decoder,
    stdin: Utf8Decoder,
}

impl EventDecoder {
    /// The event a frame makes, if any (the header and bytes that only
    /// begin a character make none).
    pub fn event(&mut self, frame: &Frame) -> Option<TimedEvent> {
        let event = match frame.kind {
            Kind::Header => return None,
            Kind::Stdout | Kind::Stderr | Kind::Stdin => {
                let decoder = match frame.kind {
                    Kind::Stdout => &mut self.stdout,
                    Kind::Stderr => &mut self.stderr,
                    _ => &mut self.stdin,
                };
                let mut text = String::new();
                decoder.decode(&frame.data, &mut text);
                if text.is_empty() {
                    return None;
                }
                if frame.kind == Kind::Stdin {
                    Event::Input(text)
                } else {
                    Event::Output(text)
                }
            }
            Kind::Marker => crate::asciicast::marker_event(&String::from_utf8_lossy(&frame.data)),
            Kind::Exit => Event::Exit(
                frame
                    .data
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, i64::from_le_bytes),
            ),
        };
        let time_us = frame.t_us.max(self.last_us);
        let interval_us = time_us - self.last_us;
        self.last_us = time_us;
        Some(TimedEvent {
            interval_us,
            time_us,
            event,
        })
    }
}

/// A stream recording read as the timed events of a terminal recording
/// ([`EventDecoder`]).
pub struct Events<R> {
    frames: Frames<R>,
    header_line: String,
    decoder: EventDecoder,
}

impl<R: Read> Events<R> {
    /// Reads the header; events follow.
    pub fn new(input: R) -> Result<(Header, Events<R>)> {
        let mut frames = Frames::new(input);
        let header = read_header(&mut frames)?;
        let header_line = serde_json::to_string(&header).unwrap_or_default();
        Ok((
            header,
            Events {
                frames,
                header_line,
                decoder: EventDecoder::default(),
            },
        ))
    }

    /// The header as JSON.
    pub fn header_line(&self) -> &str {
        &self.header_line
    }

    /// The input, wherever reading stopped.
    pub fn into_inner(self) -> R {
        self.frames.into_inner()
    }

    /// The next event, or `None` at the end.
    pub fn next_event(&mut self) -> Result<Option<TimedEvent>> {
        while let Some(frame) = self.frames.next_frame()? {
            if let Some(event) = self.decoder.event(&frame) {
                return Ok(Some(event));
            }
        }
        Ok(None)
    }
}

/// The header in a header frame's payload.
pub fn parse_header_payload(payload: &[u8]) -> Result<Header> {
    let json = payload
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| damaged(0, "no stream magic"))?;
    serde_json::from_slice(json).map_err(|e| damaged(0, &format!("header: {e}")))
}

/// Copies the bytes of one data stream (`Stdout`, `Stderr` or `Stdin`) of
/// a stream recording to `out`, exactly; returns how many.
pub fn copy_stream<R: Read, W: std::io::Write + ?Sized>(
    input: R,
    kind: Kind,
    out: &mut W,
) -> Result<u64> {
    let mut frames = Frames::new(input);
    read_header(&mut frames)?;
    let mut n = 0u64;
    while let Some(frame) = frames.next_frame()? {
        if frame.kind == kind {
            out.write_all(&frame.data).map_err(|e| Error::Format {
                what: "export".to_owned(),
                reason: e.to_string(),
            })?;
            n += frame.data.len() as u64;
        }
    }
    Ok(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::asciicast::Term;

    fn header() -> Header {
        Header {
            version: 3,
            term: Term {
                cols: 80,
                rows: 24,
                term_type: None,
            },
            timestamp: Some(1),
            command: Some("tar c /etc".to_owned()),
            title: None,
            gatehouse: None,
        }
    }

    fn frame(kind: Kind, t_us: u64, data: &[u8]) -> Vec<u8> {
        let mut f = frame_header(kind, t_us, data.len()).to_vec();
        f.extend_from_slice(data);
        f
    }

    fn recording() -> Vec<u8> {
        let mut r = frame(Kind::Header, 0, &header_payload(&header()));
        r.extend(frame(Kind::Stdout, 10, b"caf\xc3"));
        r.extend(frame(Kind::Stderr, 20, b"warn\n"));
        r.extend(frame(Kind::Stdout, 30, b"\xa9\x00\xff"));
        r.extend(frame(Kind::Marker, 40, b"gatehouse.ended exit 0"));
        r.extend(frame(Kind::Exit, 50, &3i64.to_le_bytes()));
        r
    }

    #[test]
    fn frames_read_back_and_the_exact_bytes_export() {
        let r = recording();
        assert!(is_stream(&r));
        assert!(!is_stream(b"{\"version\":3}"));
        let mut out = Vec::new();
        assert_eq!(
            copy_stream(r.as_slice(), Kind::Stdout, &mut out).unwrap(),
            7
        );
        assert_eq!(out, b"caf\xc3\xa9\x00\xff");
        let (h, mut events) = Events::new(r.as_slice()).unwrap();
        assert_eq!(h, header());
        let mut got = Vec::new();
        while let Some(e) = events.next_event().unwrap() {
            got.push((e.time_us, e.event));
        }
        assert_eq!(
            got,
            [
                (10, Event::Output("caf".into())),
                (20, Event::Output("warn\n".into())),
                (30, Event::Output("é\0\u{FFFD}".into())),
                (40, Event::Marker("gatehouse.ended exit 0".into())),
                (50, Event::Exit(3)),
            ]
        );
    }

    #[test]
    fn segments_are_cut_at_whole_frames_and_a_torn_frame_ends_it() {
        let r = recording();
        let first = frame(Kind::Header, 0, &header_payload(&header())).len();
        assert_eq!(whole_frames(&r), r.len());
        for cut in 0..r.len() {
            let n = whole_frames(&r[..cut]);
            assert!(n <= cut);
            // What is whole reads without error; the torn rest is dropped.
            let mut frames = Frames::new(&r[..cut]);
            let mut read = 0;
            while let Some(f) = frames.next_frame().unwrap() {
                read += FRAME_HEADER + f.data.len();
            }
            assert_eq!(read, n, "cut at {cut}");
        }
        assert_eq!(whole_frames(&r[..first + 3]), first);
        let mut bad = r.clone();
        bad[first] = 9;
        let mut frames = Frames::new(bad.as_slice());
        frames.next_frame().unwrap();
        let e = frames.next_frame().unwrap_err().to_string();
        assert!(e.contains(&format!("byte {first}")), "{e}");
    }

    #[test]
    fn a_huge_length_is_refused_before_allocating() {
        let mut r = frame(Kind::Header, 0, &header_payload(&header()));
        let mut h = frame_header(Kind::Stdout, 0, 0);
        h[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        r.extend(h);
        let (_, mut events) = Events::new(r.as_slice()).unwrap();
        assert!(events.next_event().is_err());
        assert!(Events::new(&b"\x00"[..]).is_err());
        assert!(Events::new(frame(Kind::Stdout, 0, b"x").as_slice()).is_err());
    }
}
