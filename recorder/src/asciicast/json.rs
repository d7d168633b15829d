//! JSON string escaping for event lines, byte-identical to `serde_json`.
//!
//! Recordings written before this module existed were escaped by
//! `serde_json::to_writer`, and readers compare against them, so the rules are
//! exactly serde_json's: `"` and `\` get a backslash; `\b \t \n \f \r` use
//! their short forms; every other byte below 0x20 becomes `\u00xx` (lowercase
//! hex); everything else, DEL and non-ASCII included, is copied as is.
//!
//! What differs is the speed: terminal output is mostly long runs of
//! printable ASCII, so [`plain_word`] checks eight bytes at a time and runs
//! are copied with one `extend_from_slice` instead of per-byte work.

/// Eight copies of a byte, for the word-at-a-time checks.
const fn splat(byte: u8) -> u64 {
    u64::from_ne_bytes([byte; 8])
}

/// True when all eight bytes of `word` are ASCII and need no escaping
/// (no control character, no `"`, no `\`), so the whole word can be copied.
///
/// The classic "has a zero byte" / "has a byte less than n" tests are exact
/// as booleans, which is all we ask of them.
#[inline]
pub(crate) fn plain_word(word: u64) -> bool {
    const HIGH: u64 = splat(0x80);
    let non_ascii = word & HIGH;
    let below_space = word.wrapping_sub(splat(0x20)) & !word;
    let quote = word ^ splat(b'"');
    let quote = quote.wrapping_sub(splat(1)) & !quote;
    let backslash = word ^ splat(b'\\');
    let backslash = backslash.wrapping_sub(splat(1)) & !backslash;
    (non_ascii | ((below_space | quote | backslash) & HIGH)) == 0
}

/// True when an ASCII byte must be escaped inside a JSON string.
#[inline]
pub(crate) fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// Appends the escape sequence of a byte for which [`needs_escape`] holds.
#[inline]
pub(crate) fn push_escape(byte: u8, out: &mut Vec<u8>) {
    let short = match byte {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        b'\t' => b't',
        b'\n' => b'n',
        0x0c => b'f',
        b'\r' => b'r',
        _ => {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex(byte >> 4), hex(byte & 0xf)]);
            return;
        }
    };
    out.extend_from_slice(&[b'\\', short]);
}

/// A lowercase hex digit for a value below 16.
#[inline]
const fn hex(nibble: u8) -> u8 {
    if nibble < 10 {
        b'0' + nibble
    } else {
        b'a' + (nibble - 10)
    }
}

/// What one byte becomes inside a JSON string when it is not part of a
/// valid multi-byte character, as little-endian bytes and their count:
/// itself, its escape, or U+FFFD for a non-ASCII byte. For tables built at
/// compile time; [`push_escape`] is the same rule at run time.
pub(crate) const fn alone(byte: u8) -> (u64, u8) {
    let (bytes, len): ([u8; 8], u8) = match byte {
        b'"' => ([b'\\', b'"', 0, 0, 0, 0, 0, 0], 2),
        b'\\' => ([b'\\', b'\\', 0, 0, 0, 0, 0, 0], 2),
        0x08 => ([b'\\', b'b', 0, 0, 0, 0, 0, 0], 2),
        b'\t' => ([b'\\', b't', 0, 0, 0, 0, 0, 0], 2),
        b'\n' => ([b'\\', b'n', 0, 0, 0, 0, 0, 0], 2),
        0x0c => ([b'\\', b'f', 0, 0, 0, 0, 0, 0], 2),
        b'\r' => ([b'\\', b'r', 0, 0, 0, 0, 0, 0], 2),
        0x00..=0x1f => (
            [
                b'\\',
                b'u',
                b'0',
                b'0',
                hex(byte >> 4),
                hex(byte & 0xf),
                0,
                0,
            ],
            6,
        ),
        0x20..=0x7f => ([byte, 0, 0, 0, 0, 0, 0, 0], 1),
        // U+FFFD REPLACEMENT CHARACTER.
        0x80..=0xff => ([0xef, 0xbf, 0xbd, 0, 0, 0, 0, 0], 3),
    };
    (u64::from_le_bytes(bytes), len)
}

/// Appends `text` escaped, without quotes.
pub(crate) fn push_escaped(text: &str, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(word) = bytes
            .get(i..i + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            && plain_word(u64::from_ne_bytes(word))
        {
            i += 8;
            continue;
        }
        let Some(&byte) = bytes.get(i) else { break };
        if needs_escape(byte) {
            out.extend_from_slice(bytes.get(run..i).unwrap_or_default());
            push_escape(byte, out);
            run = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(bytes.get(run..).unwrap_or_default());
}

/// Appends `text` as a quoted JSON string.
pub(crate) fn push_str(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    push_escaped(text, out);
    out.push(b'"');
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn every_char_below_256_matches_serde_json() {
        for c in (0u32..0x100).chain([0x7ff, 0xfffd, 0x2028, 0x1f600]) {
            let c = char::from_u32(c).unwrap();
            for text in [
                c.to_string(),
                format!("abcdefgh{c}ijklmnop"),
                format!("{c}{c}{c}{c}{c}{c}{c}{c}{c}"),
            ] {
                let mut ours = Vec::new();
                push_str(&text, &mut ours);
                assert_eq!(ours, serde_json::to_vec(&text).unwrap(), "{text:?}");
            }
        }
    }

    #[test]
    fn plain_word_is_exact() {
        // Every byte value at every position of an otherwise plain word.
        for pos in 0..8 {
            for byte in 0..=255u8 {
                let mut word = *b"abcdefgh";
                word[pos] = byte;
                let plain = byte.is_ascii() && !needs_escape(byte);
                assert_eq!(
                    plain_word(u64::from_ne_bytes(word)),
                    plain,
                    "{byte:#x} at {pos}"
                );
            }
        }
    }
}
