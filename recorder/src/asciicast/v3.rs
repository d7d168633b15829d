//! The v3 encoder: events in, bytes out, no IO.

use super::Header;

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
    let _ = serde_json::to_writer(&mut *out, code);
    out.extend_from_slice(b", ");
    let _ = serde_json::to_writer(&mut *out, data);
    out.extend_from_slice(b"]\n");
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
}
