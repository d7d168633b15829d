//! Text search on SQLite: `text_chunks` holds each chunk's text and line
//! marks once, and two FTS5 indexes over it find candidates:
//! `text_trigrams` (the trigram tokenizer: substrings of 3 characters or
//! more, case-insensitive) and `text_words` (unicode61: words, with
//! prefix indexes of 1 and 2 characters for short queries). Every
//! candidate is confirmed against its line with [`Needle::find_in`].
//!
//! **External content, kept by hand.** Both indexes are external-content
//! tables over `text_chunks` (see migration 6): the text is stored once,
//! in a table of our own that also holds the marks we need to confirm a
//! hit and map it to its line, and either index can be rebuilt from it
//! (`INSERT INTO t(t) VALUES('rebuild')`) if it is damaged or its
//! tokenizer changes. There are no triggers: a channel's old rows are
//! removed from the indexes with their exact text read in the same
//! transaction, and a full clear uses `delete-all`, which triggers would
//! turn into a row-by-row delete of the whole text.
//!
//! **Chunk ids order the hits.** A chunk's id is its session's start (Unix
//! ms) shifted left by [`SLOT_BITS`], plus a number within that
//! millisecond that counts down as chunks are added. FTS5 walks rowids
//! in descending order cheaply and stops at the page size, so "newest
//! session first, lines in order" needs no sort over every match, however
//! common the word: a page reads a few dozen candidates, not all of them.

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use super::{Inner, Shared, int, uint};
use crate::search::{
    LineMark, Needle, NeedleKind, TextChunk, TextChunks, TextCursor, TextHit, TextIndexState,
    TextIndexed, TextPage, TextQuery, snippet,
};
use crate::{Error, Result};

/// Bits of a chunk id below its session's start time: about a million
/// chunks (4 GiB of text) per millisecond, and starts up to the year 2248.
const SLOT_BITS: u32 = 20;

/// Candidate chunks one page reads at most, so a query whose candidates
/// mostly fail confirmation still answers quickly (with a `next` cursor).
const MAX_SCAN: usize = 2_000;

/// Candidates read from the index at a time.
const BATCH: i64 = 64;

/// The ids of the chunks of sessions that started at `started_at_ms`.
fn slot(started_at_ms: i64) -> Result<(i64, i64)> {
    let lo = started_at_ms
        .checked_mul(1 << SLOT_BITS)
        .filter(|lo| *lo >= 0)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "a session start of {started_at_ms} ms cannot be indexed"
            ))
        })?;
    Ok((lo, lo | ((1 << SLOT_BITS) - 1)))
}

/// `text` as one FTS5 string: in double quotes, inner quotes doubled, so
/// nothing in it is query syntax (`NEAR`, `*`, `OR`, `:`, parentheses).
fn fts_string(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// The index a needle is looked up in and its MATCH expression.
fn plan(needle: &Needle) -> (&'static str, String) {
    match needle.kind() {
        // A string of 3 characters or more is a phrase of trigrams: the
        // substring, case folded.
        NeedleKind::Substring => ("text_trigrams", fts_string(needle.text())),
        // Words starting with its letters and digits (the prefix index).
        NeedleKind::WordStart => ("text_words", format!("{}*", fts_string(&needle.word()))),
    }
}

/// The condition of [`RecordingFilter::text`](crate::RecordingFilter::text)
/// on `recording_sessions`, and its argument: sessions with a chunk the
/// index finds for `text`. Candidates are not confirmed line by line
/// here; for queries of 3 characters or more the index finds exactly the
/// chunks holding the substring, for shorter ones it ignores the query's
/// punctuation. A query that can match nothing matches no session.
pub(super) fn sessions_with_text(text: &str) -> (String, Vec<Value>) {
    match Needle::parse(text) {
        Ok(Some(needle)) => {
            let (table, expr) = plan(&needle);
            (
                format!(
                    " AND id IN (SELECT session_id FROM text_chunks WHERE id IN \
                     (SELECT rowid FROM {table} WHERE {table} MATCH ?))"
                ),
                vec![expr.into()],
            )
        }
        _ => (" AND 0".to_owned(), Vec::new()),
    }
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn get_varint(input: &mut &[u8]) -> Option<u64> {
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

/// The marks column: offset, steps and time of each line as varints.
fn encode_marks(marks: &[LineMark]) -> Vec<u8> {
    let mut out = Vec::with_capacity(marks.len() * 8);
    for m in marks {
        put_varint(&mut out, u64::from(m.offset));
        put_varint(&mut out, m.steps);
        put_varint(&mut out, m.time_us);
    }
    out
}

fn decode_marks(mut input: &[u8]) -> Option<Vec<LineMark>> {
    let mut marks = Vec::new();
    while !input.is_empty() {
        marks.push(LineMark {
            offset: u32::try_from(get_varint(&mut input)?).ok()?,
            steps: get_varint(&mut input)?,
            time_us: get_varint(&mut input)?,
        });
    }
    Some(marks)
}

/// A cursor: the chunk and the number of the last line given in it.
fn encode_cursor(chunk: i64, line: u32) -> TextCursor {
    TextCursor(format!("{chunk}.{line}"))
}

fn decode_cursor(cursor: &TextCursor) -> Result<(i64, u32)> {
    cursor
        .as_str()
        .split_once('.')
        .and_then(|(c, l)| Some((c.parse().ok()?, l.parse().ok()?)))
        .ok_or_else(|| Error::Invalid("not a search cursor of this store".to_owned()))
}

/// Removes a channel's chunks from both indexes and the content table.
fn delete_channel(tx: &Transaction<'_>, session_id: &str, channel: &str) -> rusqlite::Result<()> {
    let old: Vec<(i64, String)> = {
        let mut stmt =
            tx.prepare("SELECT id, text FROM text_chunks WHERE session_id = ?1 AND channel = ?2")?;
        stmt.query_map(params![session_id, channel], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    for (id, text) in &old {
        for table in ["text_trigrams", "text_words"] {
            tx.prepare_cached(&format!(
                "INSERT INTO {table} ({table}, rowid, text) VALUES ('delete', ?1, ?2)"
            ))?
            .execute(params![id, text])?;
        }
    }
    tx.execute(
        "DELETE FROM text_chunks WHERE session_id = ?1 AND channel = ?2",
        params![session_id, channel],
    )?;
    Ok(())
}

fn started_at(c: &rusqlite::Connection, session_id: &str) -> rusqlite::Result<Option<i64>> {
    c.query_row(
        "SELECT started_at_ms FROM recording_sessions WHERE id = ?1",
        [session_id],
        |r| r.get(0),
    )
    .optional()
}

/// A chunk as read back for confirmation.
struct Stored {
    session_id: String,
    channel: String,
    chunk: TextChunk,
}

impl Shared {
    pub(super) fn text_index_replace(
        &self,
        inner: &mut Inner,
        session_id: &str,
        channel: &str,
        chunks: TextChunks,
    ) -> Result<TextIndexed> {
        const WHAT: &str = "cannot index the recording's text";
        let sql = |e: rusqlite::Error| self.fail(WHAT, e);
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let Some(started) = started_at(&tx, session_id).map_err(sql)? else {
            return Err(Error::Invalid(format!(
                "session {session_id} is not in the recording index"
            )));
        };
        let (lo, hi) = slot(started)?;
        delete_channel(&tx, session_id, channel).map_err(sql)?;
        // Below every chunk already in this millisecond: indexed later,
        // listed later.
        let lowest: Option<i64> = tx
            .query_row(
                "SELECT MIN(id) FROM text_chunks WHERE id BETWEEN ?1 AND ?2",
                params![lo, hi],
                |r| r.get(0),
            )
            .map_err(sql)?;
        let mut next = lowest.unwrap_or(hi.saturating_add(1)).saturating_sub(1);
        let mut done = TextIndexed::default();
        {
            let mut content = tx
                .prepare(
                    "INSERT INTO text_chunks (id, session_id, channel, alternate, text, marks)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(sql)?;
            let mut trigrams = tx
                .prepare("INSERT INTO text_trigrams (rowid, text) VALUES (?1, ?2)")
                .map_err(sql)?;
            let mut words = tx
                .prepare("INSERT INTO text_words (rowid, text) VALUES (?1, ?2)")
                .map_err(sql)?;
            for chunk in chunks {
                if chunk.marks.is_empty() {
                    continue;
                }
                if next < lo {
                    return Err(Error::Invalid(format!(
                        "too many chunks of text for sessions that started at {started} ms; \
                         rebuild the text index (gatehouse recordings reindex --text)"
                    )));
                }
                content
                    .execute(params![
                        next,
                        session_id,
                        channel,
                        chunk.alternate,
                        chunk.text,
                        encode_marks(&chunk.marks)
                    ])
                    .map_err(sql)?;
                trigrams.execute(params![next, chunk.text]).map_err(sql)?;
                words.execute(params![next, chunk.text]).map_err(sql)?;
                next -= 1;
                done.chunks += 1;
                done.lines += chunk.marks.len() as u64;
                done.bytes += chunk.text.len() as u64;
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO text_indexed (session_id, channel, lines, bytes, failure)
             VALUES (?1, ?2, ?3, ?4, NULL)",
            params![session_id, channel, int(done.lines), int(done.bytes)],
        )
        .map_err(sql)?;
        tx.execute(
            "DELETE FROM text_indexed WHERE session_id = ?1 AND channel = ''",
            [session_id],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(done)
    }

    pub(super) fn text_index_failed(
        &self,
        inner: &mut Inner,
        session_id: &str,
        channel: Option<&str>,
        reason: &str,
    ) -> Result<()> {
        inner
            .conn
            .execute(
                "INSERT OR REPLACE INTO text_indexed (session_id, channel, lines, bytes, failure)
                 VALUES (?1, ?2, 0, 0, ?3)",
                params![session_id, channel.unwrap_or(""), reason],
            )
            .map(drop)
            .map_err(|e| self.fail("cannot record a text indexing failure", e))
    }

    pub(super) fn text_index_clear(&self, inner: &mut Inner) -> Result<()> {
        let mut run = || -> rusqlite::Result<()> {
            let tx = inner.conn.transaction()?;
            tx.execute_batch(
                "INSERT INTO text_trigrams (text_trigrams) VALUES ('delete-all');
                 INSERT INTO text_words (text_words) VALUES ('delete-all');
                 DELETE FROM text_chunks;
                 DELETE FROM text_indexed;",
            )?;
            tx.commit()
        };
        run().map_err(|e| self.fail("cannot clear the text index", e))
    }

    pub(super) fn text_unindexed(&self, inner: &mut Inner, limit: usize) -> Result<Vec<String>> {
        let run = || -> rusqlite::Result<Vec<String>> {
            // Done: a mark for the session as a whole (a failure), or a
            // mark for each of its sealed channels (and at least one).
            let mut stmt = inner.conn.prepare_cached(
                "SELECT s.id FROM recording_sessions s
                 WHERE s.status IN ('sealed', 'interrupted')
                   AND NOT EXISTS (SELECT 1 FROM text_indexed t
                                   WHERE t.session_id = s.id AND t.channel = '')
                   AND (NOT EXISTS (SELECT 1 FROM text_indexed t WHERE t.session_id = s.id)
                        OR EXISTS (SELECT 1 FROM recording_channels c
                                   WHERE c.session_id = s.id AND c.sealed_key IS NOT NULL
                                     AND NOT EXISTS (SELECT 1 FROM text_indexed t
                                                     WHERE t.session_id = s.id
                                                       AND t.channel = c.channel)))
                 ORDER BY s.started_at_ms DESC, s.id DESC
                 LIMIT ?1",
            )?;
            let limit = if limit == 0 {
                -1
            } else {
                i64::try_from(limit).unwrap_or(i64::MAX)
            };
            stmt.query_map([limit], |r| r.get(0))?.collect()
        };
        run().map_err(|e| self.fail("cannot list recordings to index", e))
    }

    pub(super) fn text_index_state(
        &self,
        inner: &mut Inner,
        session_id: &str,
    ) -> Result<Vec<TextIndexState>> {
        let run = || -> rusqlite::Result<Vec<TextIndexState>> {
            let mut stmt = inner.conn.prepare_cached(
                "SELECT channel, lines, bytes, failure FROM text_indexed
                 WHERE session_id = ?1 ORDER BY channel",
            )?;
            stmt.query_map([session_id], |r| {
                let channel: String = r.get(0)?;
                Ok(TextIndexState {
                    channel: (!channel.is_empty()).then_some(channel),
                    lines: uint(r.get(1)?),
                    bytes: uint(r.get(2)?),
                    failure: r.get(3)?,
                })
            })?
            .collect()
        };
        run().map_err(|e| self.fail("cannot read the text index state", e))
    }

    pub(super) fn text_search(&self, inner: &mut Inner, query: &TextQuery) -> Result<TextPage> {
        const WHAT: &str = "cannot search the text";
        let sql = |e: rusqlite::Error| self.fail(WHAT, e);
        let Some(needle) = Needle::parse(&query.text)? else {
            return Ok(TextPage::default());
        };
        let limit = query.page_size();
        let after = query.after.as_ref().map(decode_cursor).transpose()?;
        let c = &inner.conn;
        let (mut lo, mut hi) = (0, i64::MAX);
        if let Some(id) = &query.session_id {
            let Some(started) = started_at(c, id).map_err(sql)? else {
                return Ok(TextPage::default());
            };
            (lo, hi) = slot(started)?;
        }
        if let Some((chunk, _)) = after {
            hi = hi.min(chunk);
        }
        let (table, expr) = plan(&needle);
        let mut candidates = c
            .prepare_cached(&format!(
                "SELECT rowid FROM {table} WHERE {table} MATCH ?1 AND rowid BETWEEN ?2 AND ?3
                 ORDER BY rowid DESC LIMIT ?4"
            ))
            .map_err(sql)?;
        let mut read = c
            .prepare_cached(
                "SELECT session_id, channel, alternate, text, marks FROM text_chunks WHERE id = ?1",
            )
            .map_err(sql)?;
        let mut hits = Vec::new();
        let mut scanned = 0usize;
        while lo <= hi {
            let ids: Vec<i64> = candidates
                .query_map(params![expr, lo, hi, BATCH], |r| r.get(0))
                .map_err(sql)?
                .collect::<rusqlite::Result<_>>()
                .map_err(sql)?;
            let Some(&last) = ids.last() else {
                break;
            };
            for id in ids {
                scanned += 1;
                let stored = read
                    .query_row([id], |r| {
                        let marks: Vec<u8> = r.get(4)?;
                        Ok(Stored {
                            session_id: r.get(0)?,
                            channel: r.get(1)?,
                            chunk: TextChunk {
                                alternate: r.get(2)?,
                                text: r.get(3)?,
                                marks: decode_marks(&marks).unwrap_or_default(),
                            },
                        })
                    })
                    .optional()
                    .map_err(sql)?;
                let wanted = stored.filter(|s| {
                    query
                        .session_id
                        .as_ref()
                        .is_none_or(|want| *want == s.session_id)
                });
                if let Some(s) = wanted {
                    let skip = after.filter(|(chunk, _)| *chunk == id).map(|(_, l)| l);
                    for (n, (mark, line)) in s.chunk.lines().enumerate() {
                        let n = u32::try_from(n).unwrap_or(u32::MAX);
                        if skip.is_some_and(|done| n <= done) {
                            continue;
                        }
                        let found = needle.find_in(line);
                        if found.is_empty() {
                            continue;
                        }
                        let (snippet, matches) = snippet(line, &found);
                        hits.push(TextHit {
                            session_id: s.session_id.clone(),
                            channel: s.channel.clone(),
                            steps: mark.steps,
                            time_us: mark.time_us,
                            alternate: s.chunk.alternate,
                            snippet,
                            matches,
                        });
                        if hits.len() >= limit {
                            return Ok(TextPage {
                                hits,
                                next: Some(encode_cursor(id, n)),
                            });
                        }
                    }
                }
                if scanned >= MAX_SCAN {
                    return Ok(TextPage {
                        hits,
                        next: Some(encode_cursor(id, u32::MAX)),
                    });
                }
            }
            hi = last.saturating_sub(1);
        }
        Ok(TextPage { hits, next: None })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn queries_become_one_fts5_string() {
        assert_eq!(fts_string(r#"a "b" NEAR(c*)"#), r#""a ""b"" NEAR(c*)""#);
        let plan = |q: &str| plan(&Needle::parse(q).unwrap().unwrap());
        assert_eq!(plan("rm -rf"), ("text_trigrams", "\"rm -rf\"".to_owned()));
        assert_eq!(plan("-r"), ("text_words", "\"r\"*".to_owned()));
    }

    #[test]
    fn marks_and_cursors_round_trip() {
        let marks = vec![
            LineMark {
                offset: 0,
                steps: 1,
                time_us: 0,
            },
            LineMark {
                offset: 300,
                steps: 1 << 40,
                time_us: u64::MAX,
            },
        ];
        assert_eq!(decode_marks(&encode_marks(&marks)), Some(marks));
        assert_eq!(decode_marks(&[0x80]), None);
        assert_eq!(decode_cursor(&encode_cursor(42, 7)).unwrap(), (42, 7));
        assert!(decode_cursor(&TextCursor("x".to_owned())).is_err());
        assert_eq!(slot(1).unwrap(), (1 << 20, (2 << 20) - 1));
        assert!(slot(i64::MAX).is_err());
    }
}
