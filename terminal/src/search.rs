//! Search over the text that was on screen ([`Index::text`]): the primary
//! screen, what scrolled off it, and the alternate screen.

use crate::index::{Index, TextLine};
use crate::{Error, Result};

/// The longest pattern accepted, in bytes.
const MAX_PATTERN: usize = 1024;

/// What to look for.
pub struct Query {
    regex: regex::Regex,
}

/// One match: the line it is in and where in the line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Position of the line in [`Index::text`].
    pub line: usize,
    /// Steps applied when the line showed this text: seek here to see it.
    pub steps: usize,
    /// The time of that step.
    pub time_us: u64,
    /// Whether the line was on the alternate screen.
    pub alternate: bool,
    /// The row the line was on.
    pub row: usize,
    /// Byte range of the match in the line's text.
    pub start: usize,
    /// End of the range.
    pub end: usize,
}

impl Query {
    /// Plain text, matched case-insensitively unless it has an upper-case
    /// letter (as `less` and vim's smartcase do).
    pub fn plain(text: &str) -> Result<Query> {
        let insensitive = !text.chars().any(char::is_uppercase);
        Query::build(&regex::escape(text), insensitive)
    }

    /// A regular expression (Rust `regex` syntax), with the same case rule.
    pub fn regex(pattern: &str) -> Result<Query> {
        let insensitive = !pattern.chars().any(char::is_uppercase);
        Query::build(pattern, insensitive)
    }

    fn build(pattern: &str, insensitive: bool) -> Result<Query> {
        if pattern.is_empty() {
            return Err(Error::Query("the search is empty".to_owned()));
        }
        if pattern.len() > MAX_PATTERN {
            return Err(Error::Query(format!(
                "the search is longer than {MAX_PATTERN} bytes"
            )));
        }
        let regex = regex::RegexBuilder::new(pattern)
            .case_insensitive(insensitive)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| Error::Query(last_line(&e.to_string())))?;
        Ok(Query { regex })
    }

    /// Where this query matches in a line.
    pub fn find_in<'a>(&'a self, text: &'a str) -> impl Iterator<Item = (usize, usize)> + 'a {
        self.regex
            .find_iter(text)
            .filter(|m| !m.is_empty())
            .map(|m| (m.start(), m.end()))
    }

    /// Every match in the index, in order of appearance.
    pub fn all(&self, index: &Index) -> Vec<Hit> {
        let mut hits = Vec::new();
        index
            .text
            .for_each(|i, line| hits.extend(self.hits(i, line)));
        hits
    }

    fn hits<'a>(&'a self, i: usize, line: &'a TextLine) -> impl Iterator<Item = Hit> + 'a {
        self.find_in(&line.text).map(move |(start, end)| Hit {
            line: i,
            steps: line.steps,
            time_us: line.time_us,
            alternate: line.alternate,
            row: line.row,
            start,
            end,
        })
    }
}

/// The first hit after step `steps` (or the first, wrapping) and the
/// last before it (or the last, wrapping): `n` and `N` in the player.
pub fn next(hits: &[Hit], steps: usize, forward: bool) -> Option<&Hit> {
    if forward {
        hits.iter()
            .find(|h| h.steps > steps)
            .or_else(|| hits.first())
    } else {
        hits.iter()
            .rev()
            .find(|h| h.steps < steps)
            .or_else(|| hits.last())
    }
}

/// The last non-blank line of a regex error, the one that says what is
/// wrong (the others repeat the pattern).
fn last_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("invalid regular expression")
        .to_owned()
}
