//! Path globs: the `glob` matcher of `path` in HTTP route policies.
//!
//! `*` matches any run of characters other than `/`, `**` any run
//! including `/`, `?` one character other than `/`; every other character
//! is literal, and the whole path must match. So `/api/**` matches
//! `/api/` and `/api/a/b` (not `/api`), `/api/*` matches `/api/a` but not
//! `/api/a/b`, and `/*.css` matches `/site.css` but not `/css/site.css`.
//!
//! A glob is matched by simulating its automaton with one bit per position
//! in the pattern, in a fixed array on the stack: time linear in the path
//! for a given glob, whatever the path holds (no backtracking a client
//! could make exponential), and no allocation. That array bounds a glob to
//! [`MAX_LEN`] characters.

use std::fmt;

/// How many 64-bit words of automaton states a match keeps on the stack.
const WORDS: usize = 8;

/// The longest glob, in characters (`**` counting as one), that fits the
/// automaton: one state per character, plus the accepting state.
pub(crate) const MAX_LEN: usize = WORDS * 64 - 1;

/// One position of a glob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// This character.
    Char(char),
    /// `?`: one character other than `/`.
    One,
    /// `*`: a run of characters other than `/`, maybe empty.
    Star,
    /// `**`: any run of characters, maybe empty.
    Any,
}

/// A compiled path glob.
#[derive(Debug, Clone)]
pub(crate) struct Glob {
    /// As written, for reasons.
    text: Box<str>,
    tokens: Box<[Token]>,
}

/// The set of automaton states (glob positions) a match is in.
#[derive(Clone, Copy, Default)]
struct States([u64; WORDS]);

impl States {
    fn insert(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
}

impl Glob {
    /// Compiles a glob, or says what is wrong with it (lowercase, for a
    /// compile error at the glob's position).
    pub(crate) fn parse(text: &str) -> Result<Glob, String> {
        if !text.starts_with('/') {
            return Err(format!(
                "a path glob starts with `/`, like the paths it matches: write `/{text}`"
            ));
        }
        if text.contains("***") {
            return Err(format!(
                "`***` in `{text}` means nothing more than `**`: write `**` for any run of characters including `/`"
            ));
        }
        let mut tokens = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' if chars.next_if_eq(&'*').is_some() => Token::Any,
                '*' => Token::Star,
                '?' => Token::One,
                c => Token::Char(c),
            });
        }
        if tokens.len() > MAX_LEN {
            return Err(format!(
                "a path glob has at most {MAX_LEN} characters; this one has {}",
                tokens.len()
            ));
        }
        Ok(Glob {
            text: text.into(),
            tokens: tokens.into(),
        })
    }

    /// Adds the states reachable without reading a character: past a `*`
    /// or `**` that matches nothing. Those moves go one position forward,
    /// so one pass in order reaches them all.
    fn close(&self, states: &mut States) {
        for (i, t) in self.tokens.iter().enumerate() {
            if matches!(t, Token::Star | Token::Any) && states.contains(i) {
                states.insert(i + 1);
            }
        }
    }

    /// Whether the whole of `path` matches.
    pub(crate) fn matches(&self, path: &str) -> bool {
        let mut current = States::default();
        current.insert(0);
        self.close(&mut current);
        for c in path.chars() {
            let mut next = States::default();
            for (w, &word) in current.0.iter().enumerate() {
                let mut bits = word;
                while bits != 0 {
                    let i = w * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    match self.tokens.get(i) {
                        Some(Token::Char(x)) if *x == c => next.insert(i + 1),
                        Some(Token::One) if c != '/' => next.insert(i + 1),
                        Some(Token::Star) if c != '/' => next.insert(i),
                        Some(Token::Any) => next.insert(i),
                        _ => {}
                    }
                }
            }
            self.close(&mut next);
            if next.is_empty() {
                return false;
            }
            current = next;
        }
        current.contains(self.tokens.len())
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_paths() {
        // (glob, path, matches)
        #[rustfmt::skip]
        let cases: &[(&str, &str, bool)] = &[
            ("/api/**", "/api/a/b", true),
            ("/api/**", "/api/", true),
            ("/api/**", "/api", false),
            ("/api/**", "/apix/a", false),
            ("/api/*", "/api/a", true),
            ("/api/*", "/api/", true),
            ("/api/*", "/api/a/b", false),
            ("/*.css", "/site.css", true),
            ("/*.css", "/.css", true),
            ("/*.css", "/css/site.css", false),
            ("/*.css", "/site.css.map", false),
            ("/**/*.css", "/a/b/site.css", true),
            ("/**/*.css", "/site.css", false),
            ("/**.css", "/site.css", true),
            ("/**.css", "/a/b/site.css", true),
            ("/a/?", "/a/b", true),
            ("/a/?", "/a/bc", false),
            ("/a/?", "/a//", false),
            ("/a/?/c", "/a/é/c", true),
            ("/u/*/edit", "/u/42/edit", true),
            ("/u/*/edit", "/u/42/x/edit", false),
            ("/u/**/edit", "/u/42/x/edit", true),
            ("/u/**/edit", "/u/edit", false),
            ("/u/**/edit", "/u//edit", true),
            ("/exact", "/exact", true),
            ("/exact", "/Exact", false),
            ("/exact", "/exact/", false),
            ("/*", "/", true),
            ("/**", "/", true),
            ("/a*b*c", "/aXbYc", true),
            ("/a*b*c", "/abcbc", true),
            ("/a*b*c", "/ab/c", false),
            ("/**/**/x", "/x", false),
            ("/**/**/x", "/a//x", true),
        ];
        for (glob, path, want) in cases {
            let g = Glob::parse(glob).unwrap_or_else(|e| panic!("{glob}: {e}"));
            assert_eq!(g.matches(path), *want, "{glob} against {path}");
            assert_eq!(g.to_string(), *glob);
        }
    }

    #[test]
    fn bad_globs_are_refused() {
        #[rustfmt::skip]
        let cases: &[(&str, &str)] = &[
            ("api/**", "a path glob starts with `/`, like the paths it matches: write `/api/**`"),
            ("**/x", "a path glob starts with `/`"),
            ("", "a path glob starts with `/`"),
            ("/a/***", "`***` in `/a/***` means nothing more than `**`"),
        ];
        for (glob, want) in cases {
            let e = Glob::parse(glob).expect_err(glob);
            assert!(e.starts_with(want), "{glob}: {e}");
        }
        let long = format!("/{}", "a".repeat(MAX_LEN));
        let e = Glob::parse(&long).expect_err("too long");
        assert_eq!(
            e,
            format!("a path glob has at most {MAX_LEN} characters; this one has 512")
        );
        assert!(Glob::parse(&long[..MAX_LEN]).is_ok());
    }

    #[test]
    fn the_longest_glob_still_matches() {
        let text = format!("/{}**", "a".repeat(MAX_LEN - 2));
        let g = Glob::parse(&text).expect("fits");
        assert!(g.matches(&format!("/{}/b/c", "a".repeat(MAX_LEN - 2))));
        assert!(!g.matches(&format!("/{}", "a".repeat(MAX_LEN - 3))));
    }

    #[test]
    fn a_hostile_path_takes_linear_time() {
        // The shape that makes backtracking matchers exponential.
        let g = Glob::parse(&format!("/{}b", "**a".repeat(40))).expect("glob");
        let path = format!("/{}", "a".repeat(20_000));
        assert!(!g.matches(&path));
    }
}
