//! Incremental UTF-8 decoding of terminal output; see the module docs of [`crate::asciicast`].

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

    pub fn finish(&mut self, out: &mut String) {
        if self.carry_len > 0 {
            out.push(char::REPLACEMENT_CHARACTER);
            self.carry_len = 0;
        }
    }
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

    #[test]
    fn random_splits_equal_lossy() {
        // A small deterministic generator keeps the test reproducible.
        let mut state = 0x1234_5678_9abc_def0_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
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
