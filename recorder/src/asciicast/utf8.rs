//! Incremental UTF-8 decoding of terminal output; see the module docs of [`crate::asciicast`].

use super::json;

/// Decodes a byte stream that arrives in arbitrary chunks into text.
///
/// A character split across chunks is carried (at most 3 bytes) to the next
/// call; each maximal invalid subsequence becomes one U+FFFD. Decoding every
/// chunk of a stream and then calling [`Utf8Decoder::finish`] gives exactly
/// `String::from_utf8_lossy` of the whole stream. Memory: 4 bytes.
#[derive(Debug, Default, Clone)]
pub struct Utf8Decoder {
    /// The incomplete (but so far valid) sequence at the end of the last chunk.
    carry: [u8; 4],
    /// How many bytes of `carry` are in use.
    carry_len: usize,
}

impl Utf8Decoder {
    /// Creates a decoder with nothing carried.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns true when an incomplete sequence is waiting for more bytes.
    pub fn has_pending(&self) -> bool {
        self.carry_len > 0
    }

    /// Decodes `input`, appending text to `out`.
    pub fn decode(&mut self, mut input: &[u8], out: &mut String) {
        // First complete (or reject) a sequence carried from the last chunk,
        // one byte at a time, so no input needs copying.
        while self.carry_len > 0 {
            let Some((&byte, rest)) = input.split_first() else {
                return;
            };
            let Some(slot) = self.carry.get_mut(self.carry_len) else {
                // Cannot happen: a carry is at most 3 bytes. Reset defensively.
                out.push(char::REPLACEMENT_CHARACTER);
                self.carry_len = 0;
                break;
            };
            *slot = byte;
            let candidate = self.carry.get(..=self.carry_len).unwrap_or_default();
            match std::str::from_utf8(candidate) {
                Ok(text) => {
                    out.push_str(text);
                    self.carry_len = 0;
                    input = rest;
                }
                Err(e) if e.error_len().is_none() => {
                    self.carry_len += 1;
                    input = rest;
                }
                Err(_) => {
                    // The new byte does not continue the sequence: the carried
                    // prefix is one invalid subsequence, and the byte is
                    // decoded afresh below.
                    out.push(char::REPLACEMENT_CHARACTER);
                    self.carry_len = 0;
                }
            }
        }
        // One pass over the input with the standard library's chunker: each
        // chunk is a valid run followed by at most one maximal invalid
        // sequence (the same rule as `String::from_utf8_lossy`). Calling
        // `from_utf8` again after every invalid byte instead made binary
        // output cost tens of CPU seconds per GiB.
        let mut chunks = input.utf8_chunks().peekable();
        while let Some(chunk) = chunks.next() {
            out.push_str(chunk.valid());
            let invalid = chunk.invalid();
            if invalid.is_empty() {
                continue;
            }
            let last = chunks.peek().is_none();
            // At the very end, an invalid tail may only be a character cut
            // by the write boundary: keep it for the next call.
            let incomplete = last
                && invalid.len() <= 3
                && matches!(std::str::from_utf8(invalid), Err(e) if e.error_len().is_none());
            if incomplete {
                if let Some(dst) = self.carry.get_mut(..invalid.len()) {
                    dst.copy_from_slice(invalid);
                    self.carry_len = invalid.len();
                }
            } else {
                out.push(char::REPLACEMENT_CHARACTER);
            }
        }
    }

    /// Decodes `input` like [`Utf8Decoder::decode`], but appends the text
    /// already escaped for the inside of a JSON string, in one pass.
    ///
    /// This is the recorder's hot path: every byte of output goes through it
    /// before the client sees it. The result is byte-identical to
    /// `serde_json` escaping the text [`Utf8Decoder::decode`] returns (the
    /// tests compare the two). Printable ASCII is checked eight bytes at a
    /// time and copied in runs; invalid bytes cost one branch each, where a
    /// chunk iterator paid a call per invalid sequence.
    pub fn decode_json(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        if self.carry_len > 0 {
            let Some(rest) = self.resume(input, out) else {
                return;
            };
            input = rest;
        }
        let done = decode_bulk(input, out);
        let input = input.get(done..).unwrap_or_default();
        // The last few bytes, one sequence at a time. `run` is where the
        // bytes not yet copied start: plain ASCII and valid multi-byte
        // characters accumulate and are copied in one go.
        let mut run = 0;
        let mut i = 0;
        while let Some(&byte) = input.get(i) {
            if byte.is_ascii() {
                if json::needs_escape(byte) {
                    out.extend_from_slice(input.get(run..i).unwrap_or_default());
                    json::push_escape(byte, out);
                    run = i + 1;
                }
                i += 1;
                continue;
            }
            match scan(input.get(i..).unwrap_or_default()) {
                Sequence::Valid(len) => i += len,
                Sequence::Invalid(len) => {
                    out.extend_from_slice(input.get(run..i).unwrap_or_default());
                    out.extend_from_slice(REPLACEMENT);
                    i += len;
                    run = i;
                }
                Sequence::Incomplete => {
                    // Only a character cut by the write boundary gets here
                    // (at most 3 bytes): keep it for the next call.
                    out.extend_from_slice(input.get(run..i).unwrap_or_default());
                    let tail = input.get(i..).unwrap_or_default();
                    self.keep(tail, out);
                    return;
                }
            }
        }
        out.extend_from_slice(input.get(run..).unwrap_or_default());
    }

    /// Continues a carried sequence with the first bytes of `input`. Appends
    /// the finished character (or U+FFFD) to `out` and returns the input
    /// left to decode, or `None` when `input` ran out and the carry grew.
    fn resume<'a>(&mut self, input: &'a [u8], out: &mut Vec<u8>) -> Option<&'a [u8]> {
        let carried = self.carry_len.min(self.carry.len());
        let mut joined = [0u8; 4];
        let take = input.len().min(joined.len() - carried);
        let (head, tail) = joined.split_at_mut(carried);
        head.copy_from_slice(self.carry.get(..carried).unwrap_or_default());
        if let (Some(dst), Some(src)) = (tail.get_mut(..take), input.get(..take)) {
            dst.copy_from_slice(src);
        }
        let joined = joined.get(..carried + take).unwrap_or_default();
        // The carried bytes are a valid prefix, so any verdict covers at
        // least them; only the bytes past them are consumed from `input`.
        let used = match scan(joined) {
            Sequence::Valid(len) => {
                out.extend_from_slice(joined.get(..len).unwrap_or_default());
                len
            }
            Sequence::Invalid(len) => {
                out.extend_from_slice(REPLACEMENT);
                len
            }
            Sequence::Incomplete => {
                self.keep(joined, out);
                return None;
            }
        };
        self.carry_len = 0;
        Some(
            input
                .get(used.saturating_sub(carried)..)
                .unwrap_or_default(),
        )
    }

    /// Carries an incomplete (but so far valid) sequence to the next call.
    fn keep(&mut self, tail: &[u8], out: &mut Vec<u8>) {
        match self.carry.get_mut(..tail.len()) {
            Some(dst) if tail.len() < 4 => {
                dst.copy_from_slice(tail);
                self.carry_len = tail.len();
            }
            // Cannot happen: an incomplete sequence is at most 3 bytes.
            _ => {
                out.extend_from_slice(REPLACEMENT);
                self.carry_len = 0;
            }
        }
    }

    /// Ends the stream: a sequence still carried becomes one U+FFFD.
    pub fn finish(&mut self, out: &mut String) {
        if self.carry_len > 0 {
            out.push(char::REPLACEMENT_CHARACTER);
            self.carry_len = 0;
        }
    }
}

/// U+FFFD REPLACEMENT CHARACTER in UTF-8.
const REPLACEMENT: &[u8] = "\u{fffd}".as_bytes();

/// Decodes and escapes the bulk of `input` into `out`, stopping at a
/// sequence boundary fewer than [`BULK_TAIL`] bytes before the end (the
/// caller finishes those, carrying a cut character). Returns the number of
/// input bytes consumed.
///
/// Eight bytes of printable ASCII are checked and stored as one word. Any
/// other byte takes one branch-free step: a table says what the byte becomes
/// on its own (itself, its escape, or U+FFFD) and, for a lead byte, its width
/// and second-byte range; the next three bytes then give the length of the
/// valid prefix, which is either the whole character (stored as is) or a
/// maximal invalid subsequence (one U+FFFD). Random bytes made a branching
/// decoder mispredict about once per byte, which cost most of its time.
///
/// Output is stored eight bytes at a time into zeroed room at the end of
/// `out` (grown in steps, never more than [`BULK_ROOM`] plus 4 KiB ahead)
/// and cut to length at the end.
fn decode_bulk(input: &[u8], out: &mut Vec<u8>) -> usize {
    let mut pos = out.len();
    let mut i = 0;
    if input.len() < BULK_TAIL {
        return 0;
    }
    out.reserve(input.len() + BULK_ROOM);
    while i + BULK_TAIL <= input.len() {
        if out.len() < pos + BULK_ROOM {
            let ahead = (input.len() - i).min(4096);
            out.resize(pos + BULK_ROOM + ahead, 0);
        }
        let Some(word) = input
            .get(i..i + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
        else {
            break;
        };
        let word = u64::from_le_bytes(word);
        if json::plain_word(word) {
            store(out, pos, word);
            pos += 8;
            i += 8;
            continue;
        }
        if word & 0x8080_8080_8080_8080 == 0 {
            // ASCII with something to escape (the line ends of text): every
            // byte stands alone, so the eight stores do not wait on each
            // other's lengths to know where the next byte is.
            for byte in word.to_le_bytes() {
                let class = CLASSES
                    .get(usize::from(byte))
                    .copied()
                    .unwrap_or(Class::ALONE);
                store(out, pos, class.alone);
                pos += usize::from(class.alone_len);
            }
            i += 8;
            continue;
        }
        // At most 8 steps of at most 6 bytes out (an escape) each, reading
        // at most 3 bytes past the word: within BULK_ROOM and BULK_TAIL.
        let end = i + 8;
        while i < end {
            let Some(quad) = input
                .get(i..i + 4)
                .and_then(|q| <[u8; 4]>::try_from(q).ok())
            else {
                break;
            };
            let [lead, b1, b2, b3] = quad;
            let class = CLASSES
                .get(usize::from(lead))
                .copied()
                .unwrap_or(Class::ALONE);
            let c1 = b1 >= class.second_lo && b1 <= class.second_hi;
            let c2 = c1 & (class.width >= 3) & (b2 & 0xc0 == 0x80);
            let c3 = c2 & (class.width >= 4) & (b3 & 0xc0 == 0x80);
            let valid = 1 + usize::from(c1) + usize::from(c2) + usize::from(c3);
            let (bytes, len) = if valid == usize::from(class.width) {
                (u64::from(u32::from_le_bytes(quad)), valid)
            } else {
                (class.alone, usize::from(class.alone_len))
            };
            store(out, pos, bytes);
            pos += len;
            i += valid;
        }
    }
    out.truncate(pos);
    i
}

/// The bulk loop stops this many bytes before the end of its input: a word
/// plus the three bytes a character starting in its last byte may need.
const BULK_TAIL: usize = 11;

/// Zeroed room kept after the output position in the bulk loop: the most
/// one word of input can produce (8 escapes of 6 bytes) plus a word of
/// overhang from the last store, rounded up.
const BULK_ROOM: usize = 128;

/// Stores eight bytes at `pos`; the bulk loop keeps room for them.
#[inline]
fn store(out: &mut [u8], pos: usize, bytes: u64) {
    if let Some(dst) = out.get_mut(pos..pos + 8) {
        dst.copy_from_slice(&bytes.to_le_bytes());
    }
}

/// What the bulk loop needs to know about a byte, from one table lookup.
#[derive(Clone, Copy)]
struct Class {
    /// What the byte becomes when it does not start a valid multi-byte
    /// character: itself, its JSON escape, or U+FFFD (little-endian).
    alone: u64,
    /// How many bytes of `alone` are used.
    alone_len: u8,
    /// The width of the character this byte leads (2 to 4), or 0.
    width: u8,
    /// The range of a valid second byte; empty (`0xff..=0`) unless a lead.
    second_lo: u8,
    second_hi: u8,
}

impl Class {
    /// A byte that stands alone and is not escaped; only a fallback.
    const ALONE: Class = Class {
        alone: 0,
        alone_len: 0,
        width: 0,
        second_lo: 0xff,
        second_hi: 0,
    };
}

/// [`Class`] of every byte value, built at compile time from the same rules
/// as [`scan`] and [`json::push_escape`] (the tests compare the results).
// Indexing here runs at compile time: an out-of-range index would fail the
// build, never a session.
#[allow(clippy::indexing_slicing)]
static CLASSES: [Class; 256] = {
    let mut table = [Class::ALONE; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        let (alone, alone_len) = json::alone(byte);
        let (width, second_lo, second_hi) = match byte {
            0xc2..=0xdf => (2, 0x80, 0xbf),
            0xe0 => (3, 0xa0, 0xbf),
            0xe1..=0xec | 0xee..=0xef => (3, 0x80, 0xbf),
            0xed => (3, 0x80, 0x9f),
            0xf0 => (4, 0x90, 0xbf),
            0xf1..=0xf3 => (4, 0x80, 0xbf),
            0xf4 => (4, 0x80, 0x8f),
            _ => (0, 0xff, 0),
        };
        table[b] = Class {
            alone,
            alone_len,
            width,
            second_lo,
            second_hi,
        };
        b += 1;
    }
    table
};

/// What the bytes at the start of a slice (beginning with a non-ASCII byte) are.
#[derive(Debug, PartialEq, Eq)]
enum Sequence {
    /// A whole valid character of this many bytes.
    Valid(usize),
    /// A maximal invalid subsequence of this many bytes: one U+FFFD.
    Invalid(usize),
    /// A valid prefix cut off by the end of the slice.
    Incomplete,
}

/// Classifies the sequence at the start of `bytes` with the rules of
/// `core::str::Utf8Chunks` (Unicode's "maximal subpart" practice, which is
/// what `String::from_utf8_lossy` does): a lead byte fixes the width and the
/// range of the second byte (no overlongs, surrogates or values above
/// U+10FFFF); the sequence ends at the first byte that does not fit.
#[inline]
fn scan(bytes: &[u8]) -> Sequence {
    let Some(&lead) = bytes.first() else {
        return Sequence::Incomplete;
    };
    let (width, second) = match lead {
        0xc2..=0xdf => (2, 0x80..=0xbf),
        0xe0 => (3, 0xa0..=0xbf),
        0xe1..=0xec | 0xee..=0xef => (3, 0x80..=0xbf),
        0xed => (3, 0x80..=0x9f),
        0xf0 => (4, 0x90..=0xbf),
        0xf1..=0xf3 => (4, 0x80..=0xbf),
        0xf4 => (4, 0x80..=0x8f),
        _ => return Sequence::Invalid(1),
    };
    match bytes.get(1) {
        None => return Sequence::Incomplete,
        Some(byte) if second.contains(byte) => {}
        Some(_) => return Sequence::Invalid(1),
    }
    for i in 2..width {
        match bytes.get(i) {
            None => return Sequence::Incomplete,
            Some(0x80..=0xbf) => {}
            Some(_) => return Sequence::Invalid(i),
        }
    }
    Sequence::Valid(width)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn decode_chunks(chunks: &[&[u8]]) -> String {
        let mut d = Utf8Decoder::new();
        let mut out = String::new();
        for c in chunks {
            d.decode(c, &mut out);
        }
        d.finish(&mut out);
        out
    }

    #[test]
    fn table() {
        let euro = "€".as_bytes(); // e2 82 ac
        let cases: &[(&[&[u8]], &str)] = &[
            (&[b"hello"], "hello"),
            (&[&euro[..1], &euro[1..]], "€"),
            (&[&euro[..2], &euro[2..]], "€"),
            (&[&euro[..1], &euro[1..2], &euro[2..], b"x"], "€x"),
            (&[b"a\xffb"], "a\u{fffd}b"),
            (&[b"a\xe2\x82"], "a\u{fffd}"),
            (&[b"a\xe2", b"b"], "a\u{fffd}b"),
            (&[b"\xe2\x82", b"\xe2\x82\xac"], "\u{fffd}€"),
            (&[b"\xf0\x9f", b"\x98", b"\x80!"], "😀!"),
            (&[b"\xc0\xaf"], "\u{fffd}\u{fffd}"),
            (&[b"", b"\xed\xa0\x80"], "\u{fffd}\u{fffd}\u{fffd}"),
        ];
        for (chunks, want) in cases {
            assert_eq!(decode_chunks(chunks), *want, "chunks {chunks:?}");
        }
    }

    /// A small deterministic generator keeps the random tests reproducible.
    pub(super) fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    #[test]
    fn random_splits_equal_lossy() {
        let mut next = xorshift(0x1234_5678_9abc_def0);
        let alphabet: &[&[u8]] = &[
            b"a",
            b"\n",
            b"\x1b[31m",
            "€".as_bytes(),
            "😀".as_bytes(),
            "é".as_bytes(),
            b"\xff",
            b"\xe2",
            b"\x82",
            b"\xf0\x9f",
            b"\xc3",
        ];
        for _ in 0..2000 {
            let mut stream = Vec::new();
            for _ in 0..(next() % 40) {
                stream.extend_from_slice(alphabet[(next() % alphabet.len() as u64) as usize]);
            }
            let mut chunks = Vec::new();
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let n = 1 + (next() as usize % rest.len().min(5));
                let (a, b) = rest.split_at(n);
                chunks.push(a);
                rest = b;
            }
            assert_eq!(
                decode_chunks(&chunks),
                String::from_utf8_lossy(&stream),
                "stream {stream:?} chunks {chunks:?}"
            );
        }
    }
}

/// `decode_json` (the fast path) against the path it replaced: `decode`
/// (utf8_chunks) followed by `serde_json` escaping, compared call by call,
/// so the event lines of both are byte-identical.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod json_tests {
    use super::*;

    /// Feeds `pieces` to both paths in lockstep and compares every call
    /// (including which calls produce no text, hence no event) and the finish.
    fn assert_same(pieces: &[&[u8]]) {
        let mut old = Utf8Decoder::new();
        let mut new = Utf8Decoder::new();
        for (n, piece) in pieces.iter().enumerate() {
            let mut text = String::new();
            old.decode(piece, &mut text);
            let want = serde_json::to_vec(&text).unwrap();
            let mut got = vec![b'"'];
            new.decode_json(piece, &mut got);
            got.push(b'"');
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "call {n} of {pieces:?}"
            );
            assert_eq!(got, want, "call {n} of {pieces:?}");
            assert_eq!(
                new.has_pending(),
                old.has_pending(),
                "call {n} of {pieces:?}"
            );
        }
        let (mut a, mut b) = (String::new(), String::new());
        old.finish(&mut a);
        new.finish(&mut b);
        assert_eq!(a, b, "finish of {pieces:?}");
    }

    /// Every split of `stream` into two pieces, and the stream whole: alone
    /// (the byte-at-a-time tail) and behind every offset of padding within
    /// a word, so the bulk loop sees it at each position of its words.
    fn assert_same_all_splits(stream: &[u8]) {
        assert_same(&[stream]);
        for at in 0..=stream.len() {
            let (a, b) = stream.split_at(at);
            assert_same(&[a, b]);
        }
        assert_same_padded(stream);
    }

    /// `stream` behind 0 to 8 bytes of plain text and before 16 more, in
    /// one piece, so that it goes through the bulk loop.
    fn assert_same_padded(stream: &[u8]) {
        for pad in 0..=8 {
            let mut padded = b"abcdefgh"[..pad].to_vec();
            padded.extend_from_slice(stream);
            padded.extend_from_slice(b"ijklmnopqrstuvwx");
            assert_same(&[&padded]);
        }
    }

    #[test]
    fn every_two_byte_sequence() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                assert_same_all_splits(&[a, b]);
            }
        }
    }

    #[test]
    fn four_byte_sequences_of_boundary_values() {
        // Lead bytes of each width, the edges of every second-byte range
        // (overlongs, surrogates, above U+10FFFF), continuation edges,
        // ASCII that needs escaping and ASCII that does not.
        let values: &[u8] = &[
            0x00, 0x0a, 0x22, 0x41, 0x5c, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1,
            0xc2, 0xdf, 0xe0, 0xed, 0xee, 0xf0, 0xf4, 0xf5, 0xff,
        ];
        for &a in values {
            for &b in values {
                for &c in values {
                    for &d in values {
                        let stream = [a, b, c, d];
                        assert_same(&[&stream]);
                        assert_same_padded(&stream);
                        assert_same(&[&stream[..1], &stream[1..]]);
                        assert_same(&[&stream[..2], &stream[2..]]);
                        assert_same(&[&stream[..1], &stream[1..2], &stream[2..3], &stream[3..]]);
                    }
                }
            }
        }
    }

    #[test]
    fn random_mixed_streams_split_across_calls() {
        let mut next = super::tests::xorshift(0x9e37_79b9_7f4a_7c15);
        let alphabet: &[&[u8]] = &[
            b"a",
            b"plain ascii longer than one word ",
            b"drwxr-xr-x  2 root root  4096 Nov 22 07:00 dir\r\n",
            b"\n",
            b"\r\n",
            b"\t",
            b"\x00",
            b"\x08\x0c",
            b"\x1b[31m",
            b"\"",
            b"\\",
            b"\x7f",
            "é".as_bytes(),
            "€".as_bytes(),
            "😀".as_bytes(),
            "\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}".as_bytes(),
            "\u{fffd}".as_bytes(),
            b"\xff",
            b"\x80",
            b"\xc0\xaf",
            b"\xe2",
            b"\xe2\x82",
            b"\xed\xa0\x80",
            b"\xf0\x9f",
            b"\xf0\x9f\x98",
            b"\xf4\x90\x80\x80",
            b"\xf5",
            b"\xc3",
        ];
        for _ in 0..3000 {
            let mut stream = Vec::new();
            for _ in 0..(next() % 60) {
                if next().is_multiple_of(8) {
                    // Raw random bytes too.
                    stream.extend((0..(next() % 24)).map(|_| next() as u8));
                } else {
                    stream.extend_from_slice(alphabet[(next() % alphabet.len() as u64) as usize]);
                }
            }
            let mut pieces = Vec::new();
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let n = 1 + (next() as usize % rest.len().min(40));
                let (a, b) = rest.split_at(n);
                pieces.push(a);
                rest = b;
            }
            assert_same(&pieces);
            assert_same(&[&stream]);
        }
    }
}
