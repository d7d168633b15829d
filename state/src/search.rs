//! Full-text search over what was on screen in recordings: the types of
//! the text index, the chunker that groups on-screen lines, and the
//! matching rule every backend confirms its candidates with.
//!
//! **What is indexed.** The terminal model gives every line that appeared
//! on either screen, in order of appearance, with the step and time it
//! appeared at. [`TextChunker`] groups consecutive lines into
//! [`TextChunk`]s of at most [`CHUNK_MAX_LINES`] lines or about
//! [`CHUNK_MAX_BYTES`] bytes, never mixing the primary and the alternate
//! screen, and keeps a [`LineMark`] per line so a hit maps back to its
//! line, its moment and its screen.
//!
//! **What a query means** ([`Needle`]). The typed text, trimmed, is taken
//! literally: no operators, wildcards or quotes mean anything.
//! - A query of 3 characters or more finds every line that contains it,
//!   compared case-insensitively (Unicode simple lowercase, character by
//!   character; accents are not folded). This is substring search: paths,
//!   addresses and `rm -rf` are found inside longer text.
//! - A query of 1 or 2 characters finds lines where it starts a word (the
//!   first letter or digit of the query begins a run of letters and digits
//!   in the line): `ls` finds `ls -la`, not `tools`. Such a query must
//!   hold a letter or digit; one without (`$`, `/`) finds nothing.
//! - A match lies within one line; a query with a control character
//!   (a newline, say) finds nothing. Empty queries find nothing.
//!
//! Backends find candidates with whatever index they have and must
//! confirm each against the line with [`Needle::find_in`], which gives the
//! exact byte ranges to highlight.
//!
//! **Order.** Hits come newest session first (by session start), then in
//! the order the channel's text was indexed and the lines appeared. Pages
//! continue from an opaque [`TextCursor`].
//!
//! **Invariant:** nothing here is specific to one backend; the SQLite one
//! lives in `sqlite/search.rs`.

use std::ops::Range;

/// The most lines in one chunk.
pub const CHUNK_MAX_LINES: usize = 64;

/// The most bytes of text in one chunk; a longer line is a chunk of its
/// own.
pub const CHUNK_MAX_BYTES: usize = 4096;

/// Hits in a page when the query asks for none.
pub const DEFAULT_HITS: usize = 50;

/// The most hits in one page.
pub const MAX_HITS: usize = 500;

/// The longest query, in characters; a longer one is refused.
pub const MAX_QUERY_CHARS: usize = 256;

/// Characters of a line a snippet shows around its first match; a line
/// this long or shorter is shown whole.
pub const SNIPPET_CHARS: usize = 160;

/// A line as the terminal model gives it, for [`TextChunker`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScreenLine {
    /// Steps of the recording applied when the line reached this text:
    /// the player seeks there to show it.
    pub steps: u64,
    /// The time of that step, in microseconds from the recording's start.
    pub time_us: u64,
    /// Whether it was on the alternate screen (vim, less, top).
    pub alternate: bool,
    /// The text, without trailing spaces.
    pub text: String,
}

/// Where one line starts in a chunk's text, and when it appeared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineMark {
    /// Byte offset of the line in [`TextChunk::text`].
    pub offset: u32,
    /// Steps applied when it appeared.
    pub steps: u64,
    /// The time it appeared, in microseconds.
    pub time_us: u64,
}

/// A run of consecutive lines of one screen, the unit the index stores.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TextChunk {
    /// Whether the lines were on the alternate screen.
    pub alternate: bool,
    /// The lines, each followed by `\n` but the last.
    pub text: String,
    /// One mark per line, in order, the first at offset 0.
    pub marks: Vec<LineMark>,
}

impl TextChunk {
    /// Each line with its mark. Marks out of order or off a character
    /// boundary (a corrupt row) yield no line past them.
    pub fn lines(&self) -> impl Iterator<Item = (LineMark, &str)> + '_ {
        let ends = self
            .marks
            .iter()
            .skip(1)
            .map(|m| (m.offset as usize).saturating_sub(1))
            .chain(std::iter::once(self.text.len()));
        self.marks
            .iter()
            .zip(ends)
            .map_while(|(m, end)| Some((*m, self.text.get(m.offset as usize..end)?)))
    }
}

/// The chunks of one channel, in order, pulled by the store while it
/// writes them: a long recording's text is produced as it is stored and
/// never held whole. A `Vec` works too (`Box::new(v.into_iter())`).
pub type TextChunks = Box<dyn Iterator<Item = TextChunk> + Send>;

/// Groups lines into chunks (see the module docs); an iterator adapter,
/// so it never holds more than one chunk.
pub struct TextChunker<I> {
    lines: I,
    /// The line that did not fit the previous chunk.
    pending: Option<ScreenLine>,
}

impl<I: Iterator<Item = ScreenLine>> TextChunker<I> {
    /// Chunks `lines`, which come in order of appearance.
    pub fn new(lines: I) -> TextChunker<I> {
        TextChunker {
            lines,
            pending: None,
        }
    }

    fn next_line(&mut self) -> Option<ScreenLine> {
        loop {
            let line = self.pending.take().or_else(|| self.lines.next())?;
            if !line.text.trim().is_empty() {
                return Some(line);
            }
        }
    }
}

impl<I: Iterator<Item = ScreenLine>> Iterator for TextChunker<I> {
    type Item = TextChunk;

    fn next(&mut self) -> Option<TextChunk> {
        let first = self.next_line()?;
        let mut chunk = TextChunk {
            alternate: first.alternate,
            text: String::new(),
            marks: Vec::new(),
        };
        let mut line = Some(first);
        while let Some(l) = line.take() {
            let fits = chunk.marks.is_empty()
                || (l.alternate == chunk.alternate
                    && chunk.marks.len() < CHUNK_MAX_LINES
                    && chunk.text.len() + 1 + l.text.len() <= CHUNK_MAX_BYTES);
            if !fits {
                self.pending = Some(l);
                break;
            }
            if !chunk.marks.is_empty() {
                chunk.text.push('\n');
            }
            chunk.marks.push(LineMark {
                offset: u32::try_from(chunk.text.len()).unwrap_or(u32::MAX),
                steps: l.steps,
                time_us: l.time_us,
            });
            // A screen line holds no newline; one that did would split.
            chunk.text.extend(
                l.text
                    .chars()
                    .map(|c| if c == '\n' || c == '\r' { ' ' } else { c }),
            );
            line = self.next_line();
        }
        Some(chunk)
    }
}

/// What a finished [`Store::text_index_replace`](crate::Store::text_index_replace) stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TextIndexed {
    /// Chunks stored.
    pub chunks: u64,
    /// Lines in them.
    pub lines: u64,
    /// Bytes of text in them.
    pub bytes: u64,
}

/// Where a session's text indexing stands, per channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextIndexState {
    /// The channel, or `None` for the session as a whole (a failure to
    /// read its manifest, say).
    pub channel: Option<String>,
    /// Lines indexed (0 for a failure or a channel that showed no text).
    pub lines: u64,
    /// Bytes of text indexed.
    pub bytes: u64,
    /// Why it could not be indexed; `None` when it was.
    pub failure: Option<String>,
}

/// A search.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TextQuery {
    /// What the user typed (see the module docs for its meaning).
    pub text: String,
    /// Only hits in this session.
    pub session_id: Option<String>,
    /// Continue after this position (the `next` of the previous page).
    pub after: Option<TextCursor>,
    /// At most this many hits ([`DEFAULT_HITS`] when 0, at most
    /// [`MAX_HITS`]).
    pub limit: usize,
}

impl TextQuery {
    /// The page size this query asks for, within bounds.
    pub fn page_size(&self) -> usize {
        match self.limit {
            0 => DEFAULT_HITS,
            n => n.min(MAX_HITS),
        }
    }
}

/// A position in the order of hits, as the backend that made it encodes
/// it. Opaque: pass it back unchanged (it may travel in a URL).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TextCursor(pub String);

impl TextCursor {
    /// The cursor as text, for a URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One line that matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextHit {
    /// The session.
    pub session_id: String,
    /// Its channel.
    pub channel: String,
    /// Steps applied when the line appeared: the player seeks there.
    pub steps: u64,
    /// When it appeared, in microseconds from the channel's start.
    pub time_us: u64,
    /// Whether it was on the alternate screen.
    pub alternate: bool,
    /// The line, or the part of a long line around its first match with
    /// `…` where it was cut. Plain text: escape it to show it.
    pub snippet: String,
    /// Byte ranges of the matches in `snippet`, in order.
    pub matches: Vec<Range<usize>>,
}

/// A page of hits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TextPage {
    /// The hits, in order.
    pub hits: Vec<TextHit>,
    /// Where the next page starts; `None` once there is nothing more. A
    /// page may hold fewer hits than asked and still have a next one
    /// (a backend bounds the work one page does).
    pub next: Option<TextCursor>,
}

/// How a query is searched: see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeedleKind {
    /// 3 characters or more: anywhere in a line.
    Substring,
    /// 1 or 2 characters: where it starts a word.
    WordStart,
}

/// A query, parsed: what to look for and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Needle {
    /// The query, trimmed.
    text: String,
    /// Its characters, lowercased ([`fold`]).
    folded: Vec<char>,
    /// How it matches.
    kind: NeedleKind,
    /// For [`NeedleKind::WordStart`]: the position in `folded` of the
    /// first letter or digit, which must begin a word.
    word_at: usize,
}

/// A character compared without case: its lowercase when that is one
/// character (Unicode simple case mapping), else itself.
pub fn fold(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

/// A character that words are made of.
pub fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
}

impl Needle {
    /// Parses a query: `Ok(None)` when it can match nothing (empty, a
    /// control character, a short one without a letter or digit); an
    /// error when it is longer than [`MAX_QUERY_CHARS`].
    pub fn parse(query: &str) -> crate::Result<Option<Needle>> {
        let text = query.trim();
        let n = text.chars().count();
        if n > MAX_QUERY_CHARS {
            return Err(crate::Error::Invalid(format!(
                "a search is at most {MAX_QUERY_CHARS} characters; this one has {n}"
            )));
        }
        if n == 0 || text.chars().any(char::is_control) {
            return Ok(None);
        }
        let folded: Vec<char> = text.chars().map(fold).collect();
        if n >= 3 {
            return Ok(Some(Needle {
                text: text.to_owned(),
                folded,
                kind: NeedleKind::Substring,
                word_at: 0,
            }));
        }
        let Some(word_at) = folded.iter().position(|&c| is_word_char(c)) else {
            return Ok(None);
        };
        Ok(Some(Needle {
            text: text.to_owned(),
            folded,
            kind: NeedleKind::WordStart,
            word_at,
        }))
    }

    /// The query, trimmed.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// How it matches.
    pub fn kind(&self) -> NeedleKind {
        self.kind
    }

    /// For a word-start query, the letters and digits a word must start
    /// with (what a word index is asked for); empty for a substring.
    pub fn word(&self) -> String {
        match self.kind {
            NeedleKind::Substring => String::new(),
            NeedleKind::WordStart => self
                .text
                .chars()
                .skip(self.word_at)
                .take_while(|&c| is_word_char(c))
                .collect(),
        }
    }

    /// The byte ranges where the query matches `line`, in order and not
    /// overlapping; empty when it does not.
    pub fn find_in(&self, line: &str) -> Vec<Range<usize>> {
        let hay: Vec<(usize, char)> = line.char_indices().collect();
        let n = self.folded.len();
        let mut found = Vec::new();
        let mut i = 0;
        while i + n <= hay.len() {
            let same = self
                .folded
                .iter()
                .zip(hay.get(i..i + n).unwrap_or_default())
                .all(|(&want, &(_, c))| fold(c) == want);
            if same && self.starts_word(&hay, i) {
                let start = hay.get(i).map_or(0, |&(b, _)| b);
                let end = hay.get(i + n).map_or(line.len(), |&(b, _)| b);
                found.push(start..end);
                i += n;
            } else {
                i += 1;
            }
        }
        found
    }

    fn starts_word(&self, hay: &[(usize, char)], at: usize) -> bool {
        match self.kind {
            NeedleKind::Substring => true,
            NeedleKind::WordStart => {
                let w = at + self.word_at;
                w == 0
                    || hay
                        .get(w - 1)
                        .is_none_or(|&(_, before)| !is_word_char(before))
            }
        }
    }
}

/// The hit text for a line and its matches: the line itself when short,
/// else [`SNIPPET_CHARS`] characters around the first match with `…` at
/// each cut; the ranges moved to match (those cut off are dropped).
pub fn snippet(line: &str, matches: &[Range<usize>]) -> (String, Vec<Range<usize>>) {
    const CUT: &str = "…";
    let chars = line.chars().count();
    let Some(first) = matches.first() else {
        return (line.to_owned(), Vec::new());
    };
    if chars <= SNIPPET_CHARS {
        return (line.to_owned(), matches.to_vec());
    }
    // Start a third of the window before the first match.
    let before = line.get(..first.start).map_or(0, |s| s.chars().count());
    let from_char = before.saturating_sub(SNIPPET_CHARS / 3);
    let from_char = from_char.min(chars.saturating_sub(SNIPPET_CHARS));
    let to_char = from_char + SNIPPET_CHARS;
    let byte_at = |n: usize| line.char_indices().nth(n).map_or(line.len(), |(b, _)| b);
    let (from, to) = (byte_at(from_char), byte_at(to_char));
    let mut text = String::new();
    if from > 0 {
        text.push_str(CUT);
    }
    let shift = text.len();
    text.push_str(line.get(from..to).unwrap_or_default());
    if to < line.len() {
        text.push_str(CUT);
    }
    let kept = matches
        .iter()
        .filter(|m| m.start >= from && m.end <= to)
        .map(|m| (m.start - from + shift)..(m.end - from + shift))
        .collect();
    (text, kept)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn needle(q: &str) -> Needle {
        Needle::parse(q).unwrap().unwrap()
    }

    #[test]
    fn matching_follows_the_documented_rule() {
        // (query, line, matched texts)
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "rm -rf",
                "sudo rm -rf /tmp/x; RM -RF /",
                &["rm -rf", "RM -RF"],
            ),
            ("/etc/nginx", "vim /etc/nginx/nginx.conf", &["/etc/nginx"]),
            ("10.0.0.7", "ssh root@10.0.0.7 -p 22", &["10.0.0.7"]),
            ("ÉTÉ", "un été chaud", &["été"]),
            ("ete", "un été chaud", &[]),
            ("aaa", "aaaaaaa", &["aaa", "aaa"]),
            ("ls", "ls -la; tools; LS", &["ls", "LS"]),
            ("-r", "rm -rf x-ray", &["-r", "-r"]),
            ("a", "a b ab ba", &["a", "a"]),
            ("\"*h", "say \"*hi", &["\"*h"]),
            ("NEAR", "near(x) NEAR", &["near", "NEAR"]),
        ];
        for (q, line, want) in cases {
            let got: Vec<&str> = needle(q)
                .find_in(line)
                .into_iter()
                .map(|r| &line[r])
                .collect();
            assert_eq!(&got, want, "{q:?} in {line:?}");
        }
    }

    #[test]
    fn queries_that_cannot_match_are_none_and_long_ones_refused() {
        for q in ["", "   ", "$", "/", "a\nb", "tab\there"] {
            assert_eq!(Needle::parse(q).unwrap(), None, "{q:?}");
        }
        assert!(Needle::parse(&"x".repeat(MAX_QUERY_CHARS + 1)).is_err());
        assert_eq!(needle(" ls ").text(), "ls");
        assert_eq!(needle("-r").word(), "r");
        assert_eq!(needle("rm -rf").kind(), NeedleKind::Substring);
    }

    fn line(n: u64, alternate: bool, text: &str) -> ScreenLine {
        ScreenLine {
            steps: n,
            time_us: n * 1000,
            alternate,
            text: text.to_owned(),
        }
    }

    #[test]
    fn chunks_keep_screens_apart_and_stay_small() {
        let mut lines: Vec<ScreenLine> = (0..100).map(|n| line(n, false, "x")).collect();
        lines.push(line(100, false, "   "));
        lines.push(line(101, true, "in vim"));
        lines.push(line(102, false, &"y".repeat(5000)));
        lines.push(line(103, false, "after"));
        let chunks: Vec<TextChunk> = TextChunker::new(lines.into_iter()).collect();
        let shape: Vec<(bool, usize)> = chunks
            .iter()
            .map(|c| (c.alternate, c.marks.len()))
            .collect();
        assert_eq!(
            shape,
            [(false, 64), (false, 36), (true, 1), (false, 1), (false, 1)]
        );
        let back: Vec<(u64, &str)> = chunks[1]
            .lines()
            .map(|(m, t)| (m.steps, t))
            .take(2)
            .collect();
        assert_eq!(back, [(64, "x"), (65, "x")]);
        assert_eq!(chunks[2].lines().next().unwrap().1, "in vim");
        assert!(
            chunks
                .iter()
                .all(|c| c.text.len() <= CHUNK_MAX_BYTES || c.marks.len() == 1)
        );
    }

    #[test]
    fn a_long_line_is_cut_around_its_first_match() {
        let line = format!("{}needle{}", "a".repeat(300), "b".repeat(300));
        let n = needle("needle");
        let (text, ranges) = snippet(&line, &n.find_in(&line));
        assert_eq!(text.chars().count(), SNIPPET_CHARS + 2);
        assert!(text.starts_with('…') && text.ends_with('…'));
        assert_eq!(&text[ranges[0].clone()], "needle");
        let (short, r) = snippet("a needle", &n.find_in("a needle"));
        assert_eq!(
            (short.as_str(), r.first().cloned()),
            ("a needle", Some(2..8))
        );
    }
}
