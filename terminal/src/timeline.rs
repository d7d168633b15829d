//! [`Timeline`]: what a recording did to its terminal, step by step, and
//! the screen at any step.

use recorder::asciicast::{Cast, Event, Header, Reader, TimedEvent};

use crate::Result;
use crate::packed::{BLOCK, Pack, Packed, get_str, get_varint, put_str, put_varint};
use crate::screen::{MAX_SIDE, Screen};

/// Lines of primary-screen history each screen keeps. Only search and
/// the player's scrollback view read it; seeking does not need it.
pub const SCROLLBACK: usize = 1000;

/// One thing that happens to the terminal.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Output, fed to the terminal.
    Output(String),
    /// The client resized its terminal.
    Resize {
        /// New width.
        cols: u16,
        /// New height.
        rows: u16,
    },
    /// A marker (`m` event), such as `gatehouse.ended …`.
    Marker(String),
    /// The remote command exited with this status.
    Exit(i64),
}

/// A [`Change`] at a time.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Microseconds since the recording started.
    pub time_us: u64,
    /// What happened.
    pub change: Change,
}

impl Step {
    /// The step an event is, if it is drawn: input, file operations and
    /// unknown events are not.
    pub fn from_event(e: TimedEvent) -> Option<Step> {
        let change = match e.event {
            Event::Output(text) => Change::Output(text),
            Event::Resize { cols, rows } => Change::Resize { cols, rows },
            Event::Marker(label) => Change::Marker(label),
            Event::Exit(code) => Change::Exit(code),
            Event::Input(_) | Event::FileOp(_) | Event::Other { .. } => return None,
        };
        Some(Step {
            time_us: e.time_us,
            change,
        })
    }
}

/// What kind of change a step is, kept per step beside its time so the
/// timeline can be walked without decompressing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Output,
    Resize,
    Marker,
    Exit,
}

/// A step's time, kind and output size.
#[derive(Clone, Copy, Debug)]
struct Meta {
    time_us: u64,
    /// Output bytes (0 for other kinds).
    len: u32,
    kind: Kind,
}

impl Pack for Change {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Change::Output(text) => {
                out.push(0);
                put_str(out, text);
            }
            Change::Resize { cols, rows } => {
                out.push(1);
                put_varint(out, u64::from(*cols));
                put_varint(out, u64::from(*rows));
            }
            Change::Marker(label) => {
                out.push(2);
                put_str(out, label);
            }
            Change::Exit(code) => {
                out.push(3);
                out.extend_from_slice(&code.to_le_bytes());
            }
        }
    }

    fn decode(input: &mut &[u8]) -> Option<Self> {
        let (&tag, rest) = input.split_first()?;
        *input = rest;
        let side = |input: &mut &[u8]| get_varint(input).and_then(|n| u16::try_from(n).ok());
        Some(match tag {
            0 => Change::Output(get_str(input)?),
            1 => Change::Resize {
                cols: side(input)?,
                rows: side(input)?,
            },
            2 => Change::Marker(get_str(input)?),
            3 => {
                let (code, rest) = input.split_first_chunk::<8>()?;
                *input = rest;
                Change::Exit(i64::from_le_bytes(*code))
            }
            _ => return None,
        })
    }
}

/// A recording channel as a sequence of steps, with its first size.
/// Input events are left out: they are not drawn.
///
/// The steps are held compressed ([`Packed`], about a tenth of the
/// output's size), with each step's time and kind beside them; applying a
/// range decompresses only the blocks it covers.
#[derive(Clone, Debug)]
pub struct Timeline {
    cols: u16,
    rows: u16,
    meta: Vec<Meta>,
    changes: Packed<Change>,
    /// Markers: the step count at which each is reached, and its label.
    markers: Vec<(usize, String)>,
}

impl Timeline {
    /// The steps of a parsed recording. A first size of zero (a client
    /// that sent none, as `ssh -tt` without a terminal does) is taken as
    /// 80×24, each way; one larger than [`MAX_SIDE`] is cut to it.
    pub fn new(cast: &Cast) -> Result<Timeline> {
        Timeline::from_cast(cast.clone())
    }

    /// [`Timeline::new`], taking the recording instead of copying it.
    pub fn from_cast(cast: Cast) -> Result<Timeline> {
        let mut timeline = Timeline::empty(&cast.header);
        for step in cast.events.into_iter().filter_map(Step::from_event) {
            timeline.push(step);
        }
        timeline.seal();
        Ok(timeline)
    }

    /// Reads a recording as a stream (after its header), holding only its
    /// compressed steps. A damaged line ends it: the steps before it are
    /// kept, and the error says where the damage is.
    pub fn read<R: std::io::BufRead>(
        header: &Header,
        reader: &mut Reader<R>,
    ) -> (Timeline, Option<recorder::Error>) {
        let mut timeline = Timeline::empty(header);
        let damage = loop {
            match reader.next_event() {
                Ok(Some(event)) => {
                    if let Some(step) = Step::from_event(event) {
                        timeline.push(step);
                    }
                }
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        timeline.seal();
        (timeline, damage)
    }

    /// A timeline with no steps yet, for a recording with this header: one
    /// read event by event, or a live one, which grows with
    /// [`Timeline::push`].
    pub fn empty(header: &Header) -> Timeline {
        let side = |n: u16, default: u16| if n == 0 { default } else { n.min(MAX_SIDE) };
        Timeline {
            cols: side(header.term.cols, 80),
            rows: side(header.term.rows, 24),
            meta: Vec::new(),
            changes: Packed::default(),
            markers: Vec::new(),
        }
    }

    /// Appends a step, as a recording is read or a live one grows. Times
    /// never go back: an earlier time is taken as the last one.
    pub fn push(&mut self, step: Step) {
        let time_us = step.time_us.max(self.duration_us());
        let (kind, len, weight) = match &step.change {
            Change::Output(text) => (
                Kind::Output,
                u32::try_from(text.len()).unwrap_or(u32::MAX),
                text.len() + 2,
            ),
            Change::Resize { .. } => (Kind::Resize, 0, 5),
            Change::Marker(label) => (Kind::Marker, 0, label.len() + 2),
            Change::Exit(_) => (Kind::Exit, 0, 9),
        };
        if let Change::Marker(label) = &step.change {
            self.markers.push((self.meta.len() + 1, label.clone()));
        }
        self.meta.push(Meta { time_us, len, kind });
        self.changes.push(step.change, weight);
        if self.changes.open_bytes() >= BLOCK {
            self.changes.freeze_before(usize::MAX);
        }
    }

    /// Compresses the last steps too: for a recording read whole.
    pub fn seal(&mut self) {
        self.changes.freeze_before(usize::MAX);
        self.meta.shrink_to_fit();
    }

    /// The size the recording starts at.
    pub fn size(&self) -> (u16, u16) {
        (self.cols, self.rows)
    }

    /// How many steps there are.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// The time of step `i` (0-based), if there is one.
    pub fn time_at(&self, i: usize) -> Option<u64> {
        self.meta.get(i).map(|m| m.time_us)
    }

    /// Each step's time and output bytes, in order: the activity the
    /// player's heatmap draws.
    pub fn activity(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.meta.iter().map(|m| (m.time_us, m.len))
    }

    /// The steps `from..to`, decompressed.
    pub fn steps(&self, from: usize, to: usize) -> Vec<Step> {
        let mut out = Vec::new();
        self.for_each(from, to, |step| out.push(step));
        out
    }

    /// Calls `f` with each step in `from..to`, in order.
    pub fn for_each(&self, from: usize, to: usize, mut f: impl FnMut(Step)) {
        self.changes.for_each(from, to, |i, change| {
            if let Some(m) = self.meta.get(i) {
                f(Step {
                    time_us: m.time_us,
                    change: change.clone(),
                });
            }
        });
    }

    /// Memory the steps hold, in bytes (compressed output and per-step
    /// times).
    pub fn held_bytes(&self) -> usize {
        self.changes.held_bytes() + self.meta.len() * std::mem::size_of::<Meta>()
    }

    /// The time of the last step.
    pub fn duration_us(&self) -> u64 {
        self.meta.last().map_or(0, |m| m.time_us)
    }

    /// How many steps have happened by `time_us` (those at or before it).
    pub fn steps_by(&self, time_us: u64) -> usize {
        self.meta.partition_point(|m| m.time_us <= time_us)
    }

    /// The time at which `steps` steps have happened: the time of the
    /// last of them, or 0.
    pub fn time_of(&self, steps: usize) -> u64 {
        steps
            .checked_sub(1)
            .and_then(|i| self.meta.get(i))
            .map_or(0, |m| m.time_us)
    }

    /// The markers, with their times and the step count at which each is
    /// reached.
    pub fn markers(&self) -> impl DoubleEndedIterator<Item = (usize, u64, &str)> {
        self.markers
            .iter()
            .map(|(n, label)| (*n, self.time_of(*n), label.as_str()))
    }

    /// The steps at which output changed the screen: the targets of
    /// stepping one output event forward or back.
    pub fn output_steps(&self) -> impl DoubleEndedIterator<Item = usize> + '_ {
        self.meta
            .iter()
            .enumerate()
            .filter_map(|(i, m)| (m.kind == Kind::Output).then_some(i + 1))
    }

    /// A fresh screen at the recording's first size.
    pub fn start(&self) -> Result<Screen> {
        Screen::new(self.cols, self.rows, SCROLLBACK)
    }

    /// Applies steps `from..to` to `screen`.
    pub fn apply(&self, screen: &mut Screen, from: usize, to: usize) {
        self.changes
            .for_each(from, to, |_, change| apply(screen, change));
    }
}

/// Applies one change to a screen.
pub(crate) fn apply(screen: &mut Screen, change: &Change) {
    match change {
        Change::Output(text) => screen.feed(text),
        Change::Resize { cols, rows } => screen.resize(*cols, *rows),
        Change::Marker(_) | Change::Exit(_) => {}
    }
}
