//! The v3 encoder: events in, bytes out, no IO.

use super::{Header, Utf8Decoder, json};

/// Formats microseconds as seconds with six decimals, e.g. `1.000250`.
pub fn format_interval(us: u64, out: &mut Vec<u8>) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{}.{:06}", us / 1_000_000, us % 1_000_000);
}

/// Appends the header line (with its newline) to `out`.
pub fn encode_header(header: &Header, out: &mut Vec<u8>) {
    // Serializing a struct of strings and integers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, header);
    out.push(b'\n');
}

/// Appends one event line `[interval, code, data]` (with its newline) to `out`.
pub fn encode_event(interval_us: u64, code: &str, data: &str, out: &mut Vec<u8>) {
    out.push(b'[');
    format_interval(interval_us, out);
    out.extend_from_slice(b", ");
    json::push_str(code, out);
    out.extend_from_slice(b", ");
    json::push_str(data, out);
    out.extend_from_slice(b"]\n");
}

/// Appends one event line whose data is the next piece of a byte stream
/// (output or input), decoded by the stream's `decoder` and escaped in the
/// same pass, straight into `out`.
///
/// The line is exactly what [`encode_event`] writes for the text
/// [`Utf8Decoder::decode`] returns. When the bytes decode to no text (they
/// only begin a character that the next piece finishes), nothing is appended
/// and the result is `false`: there is no event.
pub fn encode_text_event(
    interval_us: u64,
    code: &str,
    decoder: &mut Utf8Decoder,
    bytes: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    let start = out.len();
    out.push(b'[');
    format_interval(interval_us, out);
    out.extend_from_slice(b", ");
    json::push_str(code, out);
    out.extend_from_slice(b", \"");
    let text_start = out.len();
    decoder.decode_json(bytes, out);
    if out.len() == text_start {
        out.truncate(start);
        return false;
    }
    out.extend_from_slice(b"\"]\n");
    true
}

/// A parsed recording as asciicast v3 bytes: how a byte-stream recording
/// is exported for players (a terminal recording exports as stored).
pub fn to_v3(cast: &super::Cast) -> Vec<u8> {
    use super::Event;
    let mut out = Vec::new();
    encode_header(&cast.header, &mut out);
    for e in &cast.events {
        let (code, data) = match &e.event {
            Event::Output(text) => ("o", text.clone()),
            Event::Input(text) => ("i", text.clone()),
            Event::Resize { cols, rows } => ("r", format!("{cols}x{rows}")),
            Event::Marker(label) => ("m", label.clone()),
            Event::FileOp(op) => (
                "m",
                format!(
                    "{}{}",
                    super::FILE_OP_MARKER_PREFIX,
                    serde_json::to_string(op).unwrap_or_default()
                ),
            ),
            Event::Exit(status) => ("x", status.to_string()),
            Event::Other { code, data } => (code.as_str(), data.clone()),
        };
        encode_event(e.interval_us, code, &data, &mut out);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::asciicast::Term;

    #[test]
    fn lines() {
        let mut out = Vec::new();
        encode_event(1_000_250, "o", "a\u{1b}[0m\"\n", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[1.000250, \"o\", \"a\\u001b[0m\\\"\\n\"]\n"
        );
        let mut out = Vec::new();
        encode_event(0, "r", "100x30", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[0.000000, \"r\", \"100x30\"]\n"
        );
        let mut out = Vec::new();
        let header = Header {
            version: 3,
            term: Term {
                cols: 80,
                rows: 24,
                term_type: Some("xterm".into()),
            },
            timestamp: Some(1),
            command: None,
            title: None,
            gatehouse: None,
        };
        encode_header(&header, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"version\":3,\"term\":{\"cols\":80,\"rows\":24,\"type\":\"xterm\"},\"timestamp\":1}\n"
        );
    }

    #[test]
    fn text_events_equal_decoded_events() {
        let pieces: &[&[u8]] = &[
            b"ok \x1b[0m\"q\"\r\n\xe2",
            b"\x82",
            b"\xac \xff\\",
            b"\xf0\x9f",
        ];
        let mut old = Utf8Decoder::new();
        let mut new = Utf8Decoder::new();
        for (n, piece) in pieces.iter().enumerate() {
            let mut text = String::new();
            old.decode(piece, &mut text);
            let mut want = Vec::new();
            if !text.is_empty() {
                encode_event(n as u64, "o", &text, &mut want);
            }
            let mut got = b"previous line\n".to_vec();
            let wrote = encode_text_event(n as u64, "o", &mut new, piece, &mut got);
            assert_eq!(wrote, !text.is_empty(), "piece {n}");
            assert_eq!(
                got.strip_prefix(b"previous line\n").unwrap(),
                want,
                "piece {n}"
            );
        }
        // The "\x82" piece only continues a character: no event.
        let mut out = Vec::new();
        let mut d = Utf8Decoder::new();
        assert!(!encode_text_event(0, "o", &mut d, b"\xe2\x82", &mut out));
        assert!(out.is_empty());
        assert!(encode_text_event(0, "o", &mut d, b"\xac", &mut out));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[0.000000, \"o\", \"€\"]\n"
        );
    }
}
