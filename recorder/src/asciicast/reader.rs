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

/// Parses a v3 recording. Blank lines and `#` comment lines are skipped; a
/// truncated last line (from a crash mid-write) is ignored rather than fatal.
pub fn read(bytes: &[u8]) -> Result<Cast> {
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
        "m" => match data.strip_prefix(FILE_OP_MARKER_PREFIX) {
            Some(json) => match serde_json::from_str(json) {
                Ok(op) => Event::FileOp(op),
                Err(_) => Event::Marker(data),
            },
            None => Event::Marker(data),
        },
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
