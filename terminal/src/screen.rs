//! [`Screen`]: the one terminal emulator, behind a type of our own.
//!
//! avt is pre-1.0 and renamed its whole API in 0.19, so it is pinned
//! exactly and nothing outside this module names it. The player draws
//! [`Screen::row`], seeking restores a [`Snapshot`], and search reads
//! [`Screen::lines`].

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The largest terminal the model accepts in either dimension. A
/// recording's header or resize events are data from a client: a bogus
/// 65535×65535 must not allocate billions of cells.
pub const MAX_SIDE: u16 = 1000;

/// A terminal screen fed with a recording's output.
pub struct Screen {
    vt: avt::Terminal,
}

/// A point-in-time copy of a screen, from which [`Screen::restore`]
/// rebuilds it exactly (visible contents, both screens, cursor, modes and
/// any escape sequence left half-parsed). Scrollback is not kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Width in columns.
    pub cols: u16,
    /// Height in rows.
    pub rows: u16,
    /// The terminal's state as the escape sequences that recreate it.
    pub dump: String,
}

/// A colour as a terminal knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Color {
    /// One of the 256 indexed colours (0–15 are the themed ones).
    Indexed(u8),
    /// A 24-bit colour.
    Rgb(u8, u8, u8),
}

/// How a cell is drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Style {
    /// Foreground, or the default.
    pub fg: Option<Color>,
    /// Background, or the default.
    pub bg: Option<Color>,
    /// Bold.
    pub bold: bool,
    /// Faint.
    pub faint: bool,
    /// Italic.
    pub italic: bool,
    /// Underlined.
    pub underline: bool,
    /// Struck through.
    pub strikethrough: bool,
    /// Blinking.
    pub blink: bool,
    /// Foreground and background swapped.
    pub inverse: bool,
}

/// One cell of a row: a character (a space when empty) and its style.
/// A wide character's cell has width 2 and is followed by none for the
/// column it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell {
    /// The character.
    pub ch: char,
    /// Columns it covers: 1, or 2 for a wide character.
    pub width: u8,
    /// How it is drawn.
    pub style: Style,
}

fn checked_size(cols: u16, rows: u16) -> Result<(usize, usize)> {
    if cols == 0 || rows == 0 || cols > MAX_SIDE || rows > MAX_SIDE {
        return Err(Error::Size { cols, rows });
    }
    Ok((usize::from(cols), usize::from(rows)))
}

impl Screen {
    /// An empty screen of `cols` × `rows`, keeping `scrollback` lines of
    /// primary-screen history (what scrolled off the top).
    pub fn new(cols: u16, rows: u16, scrollback: usize) -> Result<Screen> {
        let (c, r) = checked_size(cols, rows)?;
        let vt = avt::Terminal::with_scrollback(c, r, Some(scrollback))
            .map_err(|_| Error::Size { cols, rows })?;
        Ok(Screen { vt })
    }

    /// A screen in the state `snapshot` was taken in.
    pub fn restore(snapshot: &Snapshot, scrollback: usize) -> Result<Screen> {
        let mut screen = Screen::new(snapshot.cols, snapshot.rows, scrollback)?;
        screen.vt.feed(snapshot.dump.as_str());
        Ok(screen)
    }

    /// Takes a snapshot.
    pub fn snapshot(&self) -> Snapshot {
        let (cols, rows) = self.size();
        Snapshot {
            cols,
            rows,
            dump: self.vt.dump(),
        }
    }

    /// Interprets output sent to the terminal.
    pub fn feed(&mut self, output: &str) {
        self.vt.feed(output);
    }

    /// Interprets output and returns the rows of the active screen it
    /// changed (sorted, each once). Lines that scrolled off the primary
    /// screen past its scrollback are added to `dirty`'s
    /// [`Dirty::take_scrolled`], oldest first.
    pub fn feed_dirty(&mut self, output: &str, dirty: &mut Dirty) -> Vec<usize> {
        self.vt.feed_with(output, &mut *dirty)
    }

    /// [`Screen::resize`] for a screen whose rows a [`Dirty`] tracks: it
    /// must see every resize, or its rows no longer match the screen's.
    /// Returns every row, since any may have changed.
    pub fn resize_dirty(&mut self, cols: u16, rows: u16, dirty: &mut Dirty) -> Vec<usize> {
        let cols = usize::from(cols.clamp(1, MAX_SIDE));
        let rows = usize::from(rows.clamp(1, MAX_SIDE));
        self.vt.resize_with(cols, rows, &mut *dirty);
        (0..rows).collect()
    }

    /// Resizes the terminal, clamped to [`MAX_SIDE`] and at least 1×1.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        let cols = usize::from(cols.clamp(1, MAX_SIDE));
        let rows = usize::from(rows.clamp(1, MAX_SIDE));
        self.vt.resize(cols, rows);
    }

    /// Width and height.
    pub fn size(&self) -> (u16, u16) {
        let (cols, rows) = self.vt.size();
        (
            u16::try_from(cols).unwrap_or(MAX_SIDE),
            u16::try_from(rows).unwrap_or(MAX_SIDE),
        )
    }

    /// Whether a full-screen program (vim, less, top) has switched to the
    /// alternate screen.
    pub fn is_alternate(&self) -> bool {
        self.vt.active_screen_kind() == avt::ScreenKind::Alternate
    }

    /// The cursor's column and row, if it is shown.
    pub fn cursor(&self) -> Option<(usize, usize)> {
        self.vt.cursor().position()
    }

    /// The text of each visible row of the active screen, trailing spaces
    /// removed.
    pub fn lines(&self) -> Vec<String> {
        self.vt
            .screen()
            .visible_lines()
            .map(|l| l.text().trim_end().to_owned())
            .collect()
    }

    /// The text of visible row `n`, trailing spaces removed.
    pub fn line(&self, n: usize) -> Option<String> {
        self.vt
            .screen()
            .line(n)
            .map(|l| l.text().trim_end().to_owned())
    }

    /// The primary screen's retained history and visible rows, oldest
    /// first, even while the alternate screen is shown.
    pub fn primary_history(&self) -> Vec<String> {
        self.vt
            .primary_screen()
            .all_lines()
            .map(|l| l.text().trim_end().to_owned())
            .collect()
    }

    /// The visible screen as text, one line per row, trailing blank rows
    /// dropped.
    pub fn text(&self) -> String {
        let mut lines = self.lines();
        while lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
        lines.join("\n")
    }

    /// The cells of visible row `n`, for drawing.
    pub fn row(&self, n: usize) -> Vec<Cell> {
        let Some(line) = self.vt.screen().line(n) else {
            return Vec::new();
        };
        line.cells()
            .iter()
            .filter(|c| c.width() > 0)
            .map(|c| Cell {
                ch: c.char(),
                width: c.width(),
                style: style(c.pen()),
            })
            .collect()
    }
}

/// Tracks which rows output changes, across calls to
/// [`Screen::feed_dirty`] (the first call reports every row), and keeps
/// the text of lines that scrolled away.
#[derive(Default)]
pub struct Dirty {
    rows: avt::observer::DirtyRows,
    scrolled: Vec<String>,
}

impl Dirty {
    /// The lines that scrolled off since the last call, oldest first,
    /// trailing spaces removed.
    pub fn take_scrolled(&mut self) -> Vec<String> {
        std::mem::take(&mut self.scrolled)
    }
}

impl avt::Observer for Dirty {
    type Output = Vec<usize>;

    fn begin(&mut self, context: &mut avt::Observation<'_>) {
        self.rows.begin(context);
    }

    fn resized(&mut self, cols: usize, rows: usize) {
        self.rows.resized(cols, rows);
    }

    fn dirty(&mut self, rows: std::ops::Range<usize>) {
        self.rows.dirty(rows);
    }

    fn evicted(&mut self, _context: &mut avt::Observation<'_>, line: &avt::Line) {
        // Bounded by what one feed can scroll: the caller drains it.
        self.scrolled.push(line.text().trim_end().to_owned());
    }

    fn end(&mut self, context: &mut avt::Observation<'_>) -> Self::Output {
        self.rows.end(context)
    }
}

fn color(c: Option<avt::Color>) -> Option<Color> {
    c.map(|c| match c {
        avt::Color::Indexed(i) => Color::Indexed(i),
        avt::Color::RGB(rgb) => Color::Rgb(rgb.r, rgb.g, rgb.b),
    })
}

fn style(pen: &avt::Pen) -> Style {
    Style {
        fg: color(pen.foreground()),
        bg: color(pen.background()),
        bold: pen.is_bold(),
        faint: pen.is_faint(),
        italic: pen.is_italic(),
        underline: pen.is_underline(),
        strikethrough: pen.is_strikethrough(),
        blink: pen.is_blink(),
        inverse: pen.is_inverse(),
    }
}
