//! A small streaming-tolerant reader for the v3 recordings we write.

use super::{Event, FILE_OP_MARKER_PREFIX, Header, TimedEvent};
use crate::{Error, Result};

/// A parsed recording: its header and every event in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Cast {
    /// The header line.
    pub header: Header,
    /// The events with relative and absolute times.
    pub events: Vec<TimedEvent>,
}

impl Cast {
    /// All output text concatenated, which is what a terminal was sent.
    pub fn output(&self) -> String {
        self.events
            .iter()
            .filter_map(|e| match &e.event {
                Event::Output(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The exit status, if an `x` event was recorded.
    pub fn exit_status(&self) -> Option<i64> {
        self.events.iter().rev().find_map(|e| match e.event {
            Event::Exit(code) => Some(code),
            _ => None,
        })
    }

    /// Total duration in microseconds (the time of the last event).
    pub fn duration_us(&self) -> u64 {
        self.events.last().map_or(0, |e| e.time_us)
    }
}

/// Parses a v3 recording (or a byte-stream recording, as events). Blank
/// lines and `#` comment lines are skipped; a truncated last line (from a
/// crash mid-write) is ignored rather than fatal.
pub fn read(bytes: &[u8]) -> Result<Cast> {
    if crate::stream::is_stream(bytes) {
        // A byte-stream recording, read as the events a terminal
        // recording of it would have.
        let (header, mut reader) = Reader::new(bytes)?;
        let mut events = Vec::new();
        while let Some(e) = reader.next_event()? {
            events.push(e);
        }
        return Ok(Cast { header, events });
    }
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.split('\n').enumerate();
    let header_line = lines
        .by_ref()
        .find(|(_, l)| !l.trim().is_empty())
        .map(|(_, l)| l)
        .ok_or_else(|| format_error("header", "empty recording"))?;
    let header = parse_header(header_line)?;
    let complete = text.ends_with('\n');
    let mut lines = lines.peekable();
    let mut events = Vec::new();
    let mut time_us = 0u64;
    while let Some((n, line)) = lines.next() {
        let is_last = lines.peek().is_none_or(|(_, l)| l.is_empty()) && !complete;
        let (interval_us, event) = match parse_line(line) {
            None => continue,
            Some(Ok(v)) => v,
            Some(Err(_)) if is_last => break,
            Some(Err(e)) => return Err(format_error(&format!("asciicast line {}", n + 1), &e)),
        };
        time_us = time_us.saturating_add(interval_us);
        events.push(TimedEvent {
            interval_us,
            time_us,
            event,
        });
    }
    Ok(Cast { header, events })
}

/// Parses the header line of a v3 recording.
pub fn parse_header(line: &str) -> Result<Header> {
    let header: Header =
        serde_json::from_str(line).map_err(|e| format_error("header", &e.to_string()))?;
    if header.version != 3 {
        return Err(format_error(
            "header",
            &format!("version {} is not 3", header.version),
        ));
    }
    Ok(header)
}

/// Parses one event line of a v3 recording into its interval (in
/// microseconds) and event. `None` for a blank or `#` comment line; an
/// error says what is wrong with the line.
pub fn parse_line(line: &str) -> Option<std::result::Result<(u64, Event), String>> {
    let line = line.trim_end_matches('\r');
    if line.trim().is_empty() || line.starts_with('#') {
        return None;
    }
    let parsed: std::result::Result<(f64, String, String), _> = serde_json::from_str(line);
    Some(match parsed {
        Ok((interval, code, data)) => {
            let interval_us = if interval.is_finite() && interval > 0.0 {
                (interval * 1_000_000.0).round() as u64
            } else {
                0
            };
            Ok((interval_us, decode_event(code, data)))
        }
        Err(e) => Err(e.to_string()),
    })
}

/// A marker's label as an event: a file operation when it carries one,
/// else a plain marker.
pub fn marker_event(label: &str) -> Event {
    match label.strip_prefix(FILE_OP_MARKER_PREFIX) {
        Some(json) => match serde_json::from_str(json) {
            Ok(op) => Event::FileOp(op),
            Err(_) => Event::Marker(label.to_owned()),
        },
        None => Event::Marker(label.to_owned()),
    }
}

/// Turns a code and its data into an [`Event`], keeping unknown codes.
fn decode_event(code: String, data: String) -> Event {
    match code.as_str() {
        "o" => Event::Output(data),
        "i" => Event::Input(data),
        "r" => {
            let size = data
                .split_once('x')
                .and_then(|(c, r)| Some((c.parse().ok()?, r.parse().ok()?)));
            match size {
                Some((cols, rows)) => Event::Resize { cols, rows },
                None => Event::Other { code, data },
            }
        }
        "m" => marker_event(&data),
        "x" => match data.trim().parse() {
            Ok(status) => Event::Exit(status),
            Err(_) => Event::Other { code, data },
        },
        _ => Event::Other { code, data },
    }
}

fn format_error(what: &str, reason: &str) -> Error {
    Error::Format {
        what: what.to_owned(),
        reason: reason.to_owned(),
    }
}

/// The longest line [`Reader`] accepts. The recorder writes events of at
/// most 8 KiB of output, which escape to well under this.
const MAX_LINE: u64 = 16 << 20;

/// Reads a recording event by event from a stream, never holding it
/// whole: a sealed recording is read straight out of its decompressor.
/// Like [`read`], it skips blank and comment lines and ignores a last line
/// cut off mid-write. A byte-stream recording ([`crate::stream`]) reads
/// too, as the events a terminal recording of it would have: every
/// player, search and export of text takes either.
pub struct Reader<R> {
    inner: Inner<R>,
}

enum Inner<R> {
    Cast {
        input: R,
        header_line: String,
        line: Vec<u8>,
        line_no: u64,
        time_us: u64,
    },
    Stream(crate::stream::Events<R>),
}

impl<R: std::io::BufRead> Reader<R> {
    /// Reads the header.
    pub fn new(mut input: R) -> Result<(Header, Reader<R>)> {
        let first = input
            .fill_buf()
            .map_err(|e| format_error("recording", &e.to_string()))?;
        if crate::stream::is_stream(first) {
            let (header, events) = crate::stream::Events::new(input)?;
            return Ok((
                header,
                Reader {
                    inner: Inner::Stream(events),
                },
            ));
        }
        let mut line = Vec::new();
        let mut line_no = 0;
        loop {
            line.clear();
            let n = read_line(&mut input, &mut line)?;
            line_no += 1;
            if n == 0 {
                return Err(format_error("header", "empty recording"));
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                break;
            }
        }
        let header_line = String::from_utf8_lossy(&line).trim_end().to_owned();
        let header = parse_header(&header_line)?;
        Ok((
            header,
            Reader {
                inner: Inner::Cast {
                    input,
                    header_line,
                    line,
                    line_no,
                    time_us: 0,
                },
            },
        ))
    }

    /// The stream, at wherever reading stopped.
    pub fn into_inner(self) -> R {
        match self.inner {
            Inner::Cast { input, .. } => input,
            Inner::Stream(events) => events.into_inner(),
        }
    }

    /// The header line as it was written (a stream recording's header as
    /// JSON).
    pub fn header_line(&self) -> &str {
        match &self.inner {
            Inner::Cast { header_line, .. } => header_line,
            Inner::Stream(events) => events.header_line(),
        }
    }

    /// Whether this is a byte-stream recording.
    pub fn is_stream(&self) -> bool {
        matches!(self.inner, Inner::Stream(_))
    }

    /// The next event, or `None` at the end. An error names the line (or
    /// the byte offset of a stream recording).
    pub fn next_event(&mut self) -> Result<Option<TimedEvent>> {
        let (input, line, line_no, time_us) = match &mut self.inner {
            Inner::Stream(events) => return events.next_event(),
            Inner::Cast {
                input,
                line,
                line_no,
                time_us,
                ..
            } => (input, line, line_no, time_us),
        };
        loop {
            line.clear();
            let n = read_line(input, line)?;
            if n == 0 {
                return Ok(None);
            }
            *line_no += 1;
            let complete = line.last() == Some(&b'\n');
            let text = String::from_utf8_lossy(line);
            match parse_line(text.trim_end_matches('\n')) {
                None => continue,
                Some(Ok((interval_us, event))) => {
                    *time_us = time_us.saturating_add(interval_us);
                    return Ok(Some(TimedEvent {
                        interval_us,
                        time_us: *time_us,
                        event,
                    }));
                }
                // Cut off mid-write: the end of the recording.
                Some(Err(_)) if !complete => return Ok(None),
                Some(Err(e)) => {
                    return Err(format_error(&format!("asciicast line {line_no}"), &e));
                }
            }
        }
    }
}

/// Reads one line (with its newline, if any) of at most [`MAX_LINE`].
fn read_line<R: std::io::BufRead>(input: &mut R, line: &mut Vec<u8>) -> Result<usize> {
    use std::io::{BufRead as _, Read as _};
    let n = input
        .by_ref()
        .take(MAX_LINE)
        .read_until(b'\n', line)
        .map_err(|e| format_error("recording", &e.to_string()))?;
    if n as u64 == MAX_LINE && line.last() != Some(&b'\n') {
        return Err(format_error(
            "recording",
            &format!("a line is longer than {} MiB", MAX_LINE >> 20),
        ));
    }
    Ok(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn stream(text: &str) -> Result<(Header, Vec<TimedEvent>)> {
        let (header, mut reader) = Reader::new(text.as_bytes())?;
        let mut events = Vec::new();
        while let Some(e) = reader.next_event()? {
            events.push(e);
        }
        Ok((header, events))
    }

    #[test]
    fn the_stream_reader_reads_what_read_reads() {
        let text = "\n{\"version\":3,\"term\":{\"cols\":80,\"rows\":24}}\n[0.5,\"o\",\"a\"]\n\n\
                    # a comment\n[1.25,\"r\",\"100x30\"]\n[0.1,\"x\",\"0\"]\n[0.2,\"o\",\"cut";
        let whole = read(text.as_bytes()).unwrap();
        let (header, events) = stream(text).unwrap();
        assert_eq!(header, whole.header);
        assert_eq!(events, whole.events);
        assert_eq!(events.len(), 3);
        assert_eq!(events[2].time_us, 1_850_000);
    }

    #[test]
    fn a_bad_line_in_the_middle_is_an_error_naming_it() {
        let text = "{\"version\":3,\"term\":{\"cols\":80,\"rows\":24}}\n[0.5,\"o\",\"a\"]\nnope\n[0.5,\"o\",\"b\"]\n";
        let err = stream(text).unwrap_err().to_string();
        assert!(err.contains("asciicast line 3"), "{err}");
        assert!(stream("").is_err());
        assert!(stream("{\"version\":2}\n").is_err());
    }
}
