//! [`Timeline`]: what a recording did to its terminal, step by step, and
//! the screen at any step.

use recorder::asciicast::{Cast, Event, Header, TimedEvent};

use crate::Result;
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

/// A recording channel as a sequence of steps, with its first size.
/// Input events are left out: they are not drawn.
#[derive(Clone, Debug)]
pub struct Timeline {
    cols: u16,
    rows: u16,
    steps: Vec<Step>,
}

impl Timeline {
    /// The steps of a parsed recording. A first size of zero (a client
    /// that sent none, as `ssh -tt` without a terminal does) is taken as
    /// 80×24, each way; one larger than [`MAX_SIDE`] is cut to it.
    pub fn new(cast: &Cast) -> Result<Timeline> {
        Timeline::from_cast(cast.clone())
    }

    /// [`Timeline::new`], taking the recording's text instead of copying
    /// it: a long recording is held once.
    pub fn from_cast(cast: Cast) -> Result<Timeline> {
        let mut timeline = Timeline::empty(&cast.header);
        timeline.steps = cast
            .events
            .into_iter()
            .filter_map(Step::from_event)
            .collect();
        timeline.steps.shrink_to_fit();
        Ok(timeline)
    }

    /// A timeline with no steps yet, for a recording with this header: a
    /// live one, which grows with [`Timeline::push`].
    pub fn empty(header: &Header) -> Timeline {
        let side = |n: u16, default: u16| if n == 0 { default } else { n.min(MAX_SIDE) };
        Timeline {
            cols: side(header.term.cols, 80),
            rows: side(header.term.rows, 24),
            steps: Vec::new(),
        }
    }

    /// Appends a step, as a live recording grows. Times never go back: an
    /// earlier time is taken as the last one.
    pub fn push(&mut self, mut step: Step) {
        step.time_us = step.time_us.max(self.duration_us());
        self.steps.push(step);
    }

    /// The size the recording starts at.
    pub fn size(&self) -> (u16, u16) {
        (self.cols, self.rows)
    }

    /// Every step, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The time of the last step.
    pub fn duration_us(&self) -> u64 {
        self.steps.last().map_or(0, |s| s.time_us)
    }

    /// How many steps have happened by `time_us` (those at or before it).
    pub fn steps_by(&self, time_us: u64) -> usize {
        self.steps.partition_point(|s| s.time_us <= time_us)
    }

    /// The time at which `steps` steps have happened: the time of the
    /// last of them, or 0.
    pub fn time_of(&self, steps: usize) -> u64 {
        steps
            .checked_sub(1)
            .and_then(|i| self.steps.get(i))
            .map_or(0, |s| s.time_us)
    }

    /// The markers, with their times and the step count at which each is
    /// reached.
    pub fn markers(&self) -> impl Iterator<Item = (usize, u64, &str)> {
        self.steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.change {
                Change::Marker(label) => Some((i + 1, s.time_us, label.as_str())),
                _ => None,
            })
    }

    /// The steps at which output changed the screen: the targets of
    /// stepping one output event forward or back.
    pub fn output_steps(&self) -> impl DoubleEndedIterator<Item = usize> + '_ {
        self.steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| matches!(s.change, Change::Output(_)).then_some(i + 1))
    }

    /// A fresh screen at the recording's first size.
    pub fn start(&self) -> Result<Screen> {
        Screen::new(self.cols, self.rows, SCROLLBACK)
    }

    /// Applies steps `from..to` to `screen`.
    pub fn apply(&self, screen: &mut Screen, from: usize, to: usize) {
        for step in self.steps.get(from..to).unwrap_or_default() {
            apply(screen, &step.change);
        }
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
