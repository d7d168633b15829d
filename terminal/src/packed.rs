//! [`Packed`]: a long sequence kept as zstd-compressed blocks, so a
//! recording's output and its on-screen text cost a tenth of their size in
//! memory. Items are appended to an open tail; the tail is compressed into
//! a block once it is large enough and no longer changes. Reading a range
//! decompresses only the blocks it covers.
//!
//! Serialized (in the sidecar) as its blocks, each base64 in a JSON
//! string, so loading one never holds the items uncompressed.

use base64::Engine as _;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Uncompressed bytes per block: decompressing one takes a fraction of a
/// millisecond.
pub(crate) const BLOCK: usize = 128 << 10;

/// zstd level of blocks: the fastest, since blocks are built while a
/// recording opens.
const LEVEL: i32 = 1;

/// The most one block may decompress to, against a hostile sidecar.
const MAX_BLOCK: usize = 64 << 20;

/// An item a [`Packed`] can hold: a compact byte encoding of it.
pub(crate) trait Pack: Sized {
    /// Appends the encoding.
    fn encode(&self, out: &mut Vec<u8>);
    /// Reads one item from the front of `input`, advancing it; `None` if
    /// the bytes are not an item.
    fn decode(input: &mut &[u8]) -> Option<Self>;
}

/// One compressed run of items.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Block {
    /// Index of its first item.
    first: usize,
    /// Items in it.
    count: usize,
    /// The items' encodings, zstd-compressed.
    data: Box<[u8]>,
}

/// A sequence of `T`, mostly compressed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Packed<T> {
    blocks: Vec<Block>,
    /// Items after the last block, uncompressed.
    open: Vec<T>,
    /// Their encoded size, roughly.
    open_bytes: usize,
}

impl<T> Default for Packed<T> {
    fn default() -> Self {
        Packed {
            blocks: Vec::new(),
            open: Vec::new(),
            open_bytes: 0,
        }
    }
}

impl<T: Pack + Clone> Packed<T> {
    /// Items held.
    pub(crate) fn len(&self) -> usize {
        self.frozen() + self.open.len()
    }

    /// Items in blocks.
    fn frozen(&self) -> usize {
        self.blocks.last().map_or(0, |b| b.first + b.count)
    }

    /// Uncompressed bytes in the open tail.
    pub(crate) fn open_bytes(&self) -> usize {
        self.open_bytes
    }

    /// Appends an item; returns its index. `weight` is roughly its
    /// encoded size.
    pub(crate) fn push(&mut self, item: T, weight: usize) -> usize {
        self.open.push(item);
        self.open_bytes += weight;
        self.len() - 1
    }

    /// The item at `i`, if it is still open (not yet compressed).
    pub(crate) fn open_mut(&mut self, i: usize) -> Option<&mut T> {
        let frozen = self.frozen();
        i.checked_sub(frozen).and_then(|j| self.open.get_mut(j))
    }

    /// Compresses the open items before index `before` (all of them with
    /// `usize::MAX`) into one block.
    pub(crate) fn freeze_before(&mut self, before: usize) {
        let frozen = self.frozen();
        let n = before.saturating_sub(frozen).min(self.open.len());
        if n == 0 {
            return;
        }
        let mut raw = Vec::with_capacity(self.open_bytes.min(BLOCK * 2));
        for item in self.open.drain(..n) {
            item.encode(&mut raw);
        }
        self.open_bytes = self.open_bytes.saturating_sub(raw.len());
        if self.open.is_empty() {
            self.open_bytes = 0;
        }
        // zstd fails only on a bad level or out of memory; keeping the
        // raw bytes would still be correct, so compress or store plain.
        let data = zstd::bulk::compress(&raw, LEVEL).unwrap_or_default();
        self.blocks.push(Block {
            first: frozen,
            count: n,
            data: data.into_boxed_slice(),
        });
    }

    /// Decodes a block's items.
    fn block_items(&self, b: &Block) -> Vec<T> {
        decode_block(b)
    }

    /// Every item, in order, taking the sequence: one block is
    /// decompressed at a time, so walking it never holds it whole.
    pub(crate) fn into_items(self) -> IntoItems<T> {
        IntoItems {
            blocks: self.blocks.into_iter(),
            current: Vec::new().into_iter(),
            open: self.open.into_iter(),
        }
    }

    /// Calls `f` with each item in `from..to` and its index, in order.
    pub(crate) fn for_each(&self, from: usize, to: usize, mut f: impl FnMut(usize, &T)) {
        let to = to.min(self.len());
        if from >= to {
            return;
        }
        let start = self.blocks.partition_point(|b| b.first + b.count <= from);
        for b in self.blocks.get(start..).unwrap_or_default() {
            if b.first >= to {
                return;
            }
            for (k, item) in self.block_items(b).iter().enumerate() {
                let i = b.first + k;
                if i >= from && i < to {
                    f(i, item);
                }
            }
        }
        let frozen = self.frozen();
        for (k, item) in self.open.iter().enumerate() {
            let i = frozen + k;
            if i >= from && i < to {
                f(i, item);
            }
        }
    }

    /// The item at `i`.
    pub(crate) fn get(&self, i: usize) -> Option<T> {
        let mut found = None;
        self.for_each(i, i + 1, |_, item| found = Some(item.clone()));
        found
    }

    /// Compressed bytes held, plus the open tail: what this costs.
    pub(crate) fn held_bytes(&self) -> usize {
        self.blocks.iter().map(|b| b.data.len()).sum::<usize>() + self.open_bytes
    }
}

/// Decodes a block's items.
fn decode_block<T: Pack>(b: &Block) -> Vec<T> {
    let raw = zstd::bulk::decompress(&b.data, MAX_BLOCK).unwrap_or_default();
    let mut input = raw.as_slice();
    let mut items = Vec::with_capacity(b.count.min(1 << 16));
    while items.len() < b.count {
        match T::decode(&mut input) {
            Some(item) => items.push(item),
            None => break,
        }
    }
    items
}

/// [`Packed::into_items`]: the blocks not yet read, the items of the one
/// being read, then the open tail.
pub(crate) struct IntoItems<T> {
    blocks: std::vec::IntoIter<Block>,
    current: std::vec::IntoIter<T>,
    open: std::vec::IntoIter<T>,
}

impl<T: Pack> Iterator for IntoItems<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        loop {
            if let Some(item) = self.current.next() {
                return Some(item);
            }
            match self.blocks.next() {
                Some(block) => self.current = decode_block(&block).into_iter(),
                None => return self.open.next(),
            }
        }
    }
}

/// The serialized form: blocks, the open tail compressed as one more.
#[derive(Serialize, Deserialize)]
struct Stored {
    first: usize,
    count: usize,
    zstd_b64: String,
}

impl<T: Pack + Clone> Serialize for Packed<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut all = self.clone();
        all.freeze_before(usize::MAX);
        let engine = base64::engine::general_purpose::STANDARD;
        let stored: Vec<Stored> = all
            .blocks
            .iter()
            .map(|b| Stored {
                first: b.first,
                count: b.count,
                zstd_b64: engine.encode(&b.data),
            })
            .collect();
        stored.serialize(serializer)
    }
}

impl<'de, T: Pack + Clone> Deserialize<'de> for Packed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let stored = Vec::<Stored>::deserialize(deserializer)?;
        let engine = base64::engine::general_purpose::STANDARD;
        let mut blocks = Vec::with_capacity(stored.len());
        let mut next = 0usize;
        for s in stored {
            if s.first != next || s.count == 0 {
                return Err(D::Error::custom("blocks out of order"));
            }
            let data = engine
                .decode(s.zstd_b64.as_bytes())
                .map_err(|_| D::Error::custom("a block is not base64"))?;
            next = s.first.saturating_add(s.count);
            blocks.push(Block {
                first: s.first,
                count: s.count,
                data: data.into_boxed_slice(),
            });
        }
        Ok(Packed {
            blocks,
            open: Vec::new(),
            open_bytes: 0,
        })
    }
}

/// Appends `n` as a LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads a LEB128 varint from the front of `input`.
pub(crate) fn get_varint(input: &mut &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = input.split_first()?;
        *input = rest;
        n |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

/// Appends a length-prefixed string.
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Reads a length-prefixed string.
pub(crate) fn get_str(input: &mut &[u8]) -> Option<String> {
    let len = usize::try_from(get_varint(input)?).ok()?;
    if len > input.len() {
        return None;
    }
    let (s, rest) = input.split_at(len);
    *input = rest;
    Some(String::from_utf8_lossy(s).into_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    impl Pack for String {
        fn encode(&self, out: &mut Vec<u8>) {
            put_str(out, self);
        }
        fn decode(input: &mut &[u8]) -> Option<Self> {
            get_str(input)
        }
    }

    #[test]
    fn ranges_read_across_blocks_and_the_open_tail() {
        let mut p = Packed::<String>::default();
        for i in 0..100 {
            p.push(format!("item {i}"), 8);
            if i % 30 == 29 {
                p.freeze_before(usize::MAX);
            }
        }
        assert_eq!(p.len(), 100);
        let mut seen = Vec::new();
        p.for_each(25, 95, |i, s| seen.push((i, s.clone())));
        assert_eq!(seen.len(), 70);
        assert!(seen.iter().all(|(i, s)| *s == format!("item {i}")));
        assert_eq!(p.get(99).as_deref(), Some("item 99"));
        assert_eq!(p.get(100), None);
        assert!(p.open_mut(10).is_none(), "frozen items do not change");
        p.open_mut(95).unwrap().push('!');
        assert_eq!(p.get(95).as_deref(), Some("item 95!"));

        let json = serde_json::to_string(&p).unwrap();
        let back: Packed<String> = serde_json::from_str(&json).unwrap();
        let mut all = Vec::new();
        back.for_each(0, usize::MAX, |_, s| all.push(s.clone()));
        assert_eq!(all.len(), 100);
        assert_eq!(all[95], "item 95!");
    }

    #[test]
    fn hostile_blocks_are_refused_or_read_as_nothing() {
        let gap = r#"[{"first":5,"count":1,"zstd_b64":""}]"#;
        assert!(serde_json::from_str::<Packed<String>>(gap).is_err());
        let junk = r#"[{"first":0,"count":3,"zstd_b64":"aGVsbG8="}]"#;
        let p: Packed<String> = serde_json::from_str(junk).unwrap();
        let mut n = 0;
        p.for_each(0, 3, |_, _| n += 1);
        assert_eq!(n, 0);
    }

    #[test]
    fn varints_round_trip_and_truncation_is_none() {
        for n in [0u64, 1, 127, 128, 300, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, n);
            let mut input = out.as_slice();
            assert_eq!(get_varint(&mut input), Some(n));
            assert!(input.is_empty());
        }
        let mut input: &[u8] = &[0x80, 0x80];
        assert_eq!(get_varint(&mut input), None);
    }
}
