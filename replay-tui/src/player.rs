//! [`Player`]: everything the player knows and does, without a terminal.
//! Keys go in ([`Player::key`]), time goes in ([`Player::tick`]), and the
//! view reads the rest. Tests drive it directly.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Duration;

use terminal::{Builder, Hit, Index, Policy, Query, Screen, Step, Timeline, search};

use crate::{Info, Key, Update};

/// The speeds `+` and `-` step through.
pub const SPEEDS: [f64; 7] = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0];
const NORMAL_SPEED: usize = 2;

/// Steps replayed from the current screen before seeking from a keyframe
/// is cheaper.
const INCREMENTAL: usize = 2_000;

/// What the bottom line is collecting, if anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prompt {
    /// A search: forward (`/`) or back (`?`), plain or regex.
    Search {
        /// Direction of the first jump.
        forward: bool,
        /// Typed so far.
        text: String,
    },
    /// A time for `g`.
    Goto(String),
}

/// Steps taken from a live source per frame, so catching up on a long
/// session never freezes the keys.
pub(crate) const PUMP_STEPS: usize = 20_000;

/// Output bytes and markers per timeline column, for a width and a number
/// of steps.
pub(crate) type Heat = (usize, usize, Vec<u64>, Vec<bool>);

/// Where the keyframes and text come from.
enum Frames {
    /// A sealed recording's index, complete.
    Sealed(Index),
    /// A live recording's, built as its steps arrive.
    Live(Box<Live>),
}

/// A session being followed.
struct Live {
    builder: Builder,
    updates: Receiver<Update>,
    /// Steps received and not yet taken.
    pending: VecDeque<Step>,
    /// Set when the session ended: its reason.
    ended: Option<String>,
    /// The source went away without saying the session ended.
    lost: bool,
}

/// What the status line says about a live session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveState {
    /// Not a live session.
    No,
    /// Live, and the screen is at its latest output.
    AtEdge,
    /// Live, and the screen is in the past (`L` goes back).
    Behind,
    /// The session ended, for this reason.
    Ended(String),
}

/// The player's state.
pub struct Player {
    pub(crate) timeline: Timeline,
    frames: Frames,
    pub(crate) info: Info,
    screen: Screen,
    /// Steps applied to `screen`.
    steps: usize,
    /// The playback clock, in recording time.
    pos_us: u64,
    pub(crate) playing: bool,
    speed: usize,
    idle_limit_us: u64,
    pub(crate) idle_cap: bool,
    regex: bool,
    pub(crate) hits: Vec<Hit>,
    pub(crate) current_hit: Option<usize>,
    pub(crate) prompt: Option<Prompt>,
    pub(crate) help: bool,
    pub(crate) message: Option<String>,
    /// Top-left cell of the recording shown, when it is larger than the
    /// terminal.
    pub(crate) pan: (u16, u16),
    /// Time ranges watched, for the audit event.
    ranges: Vec<(u64, u64)>,
    range_start: u64,
    pub(crate) quit: bool,
    /// The timeline's activity per column, for the width it was summed
    /// at (the view's cache; the recording does not change).
    pub(crate) heat: std::cell::RefCell<Option<Heat>>,
}

impl Player {
    /// A player at the start of the recording, paused or playing.
    pub fn new(
        timeline: Timeline,
        index: Index,
        info: Info,
        idle_limit: Duration,
        regex: bool,
        play: bool,
    ) -> terminal::Result<Player> {
        Player::with_frames(
            timeline,
            Frames::Sealed(index),
            info,
            idle_limit,
            regex,
            play,
        )
    }

    /// A player for a session still being recorded: `updates` brings its
    /// steps as they are recorded, and its end. It starts at the beginning,
    /// or, with `at_live_edge`, at the latest output once the steps
    /// recorded so far have arrived.
    pub fn live(
        timeline: Timeline,
        updates: Receiver<Update>,
        info: Info,
        idle_limit: Duration,
        regex: bool,
        at_live_edge: bool,
    ) -> terminal::Result<Player> {
        let mut builder = Builder::new(timeline.size(), Policy::default())?;
        timeline.for_each(0, timeline.len(), |step| builder.push(&step));
        let live = Live {
            builder,
            updates,
            pending: VecDeque::new(),
            ended: None,
            lost: false,
        };
        let mut player = Player::with_frames(
            timeline,
            Frames::Live(Box::new(live)),
            info,
            idle_limit,
            regex,
            true,
        )?;
        if at_live_edge {
            // Everything recorded so far, then the screen at its end.
            player.pump(usize::MAX);
            let all = player.timeline.len();
            player.pos_us = player.duration_us();
            player.range_start = player.pos_us;
            player.go_to_steps(all);
        }
        Ok(player)
    }

    fn with_frames(
        timeline: Timeline,
        frames: Frames,
        info: Info,
        idle_limit: Duration,
        regex: bool,
        play: bool,
    ) -> terminal::Result<Player> {
        let screen = timeline.start()?;
        Ok(Player {
            timeline,
            frames,
            info,
            screen,
            steps: 0,
            pos_us: 0,
            playing: play,
            speed: NORMAL_SPEED,
            idle_limit_us: u64::try_from(idle_limit.as_micros()).unwrap_or(u64::MAX),
            idle_cap: true,
            regex,
            hits: Vec::new(),
            current_hit: None,
            prompt: None,
            help: false,
            message: None,
            pan: (0, 0),
            ranges: Vec::new(),
            range_start: 0,
            quit: false,
            heat: std::cell::RefCell::default(),
        })
    }

    /// Shows `message` on the status line until the next key.
    pub fn say(&mut self, message: String) {
        self.message = Some(message);
    }

    /// What the side panel shows, as it stands (a live session's end and
    /// verification arrive while it plays).
    pub fn info(&self) -> &Info {
        &self.info
    }

    /// The keyframes and text so far.
    pub fn index(&self) -> &Index {
        match &self.frames {
            Frames::Sealed(index) => index,
            Frames::Live(live) => live.builder.index(),
        }
    }

    /// Whether this is a live session, and where the screen is in it.
    pub fn live_state(&self) -> LiveState {
        match &self.frames {
            Frames::Sealed(_) => LiveState::No,
            Frames::Live(live) => match &live.ended {
                Some(reason) => LiveState::Ended(reason.clone()),
                None if self.steps >= self.timeline.len() && live.pending.is_empty() => {
                    LiveState::AtEdge
                }
                None => LiveState::Behind,
            },
        }
    }

    /// Takes what a live source sent: new steps (at most `max` of them),
    /// notes and the end. A player at the latest output and playing stays
    /// there. Nothing happens for a sealed recording.
    pub fn pump(&mut self, max: usize) {
        let Frames::Live(live) = &mut self.frames else {
            return;
        };
        loop {
            match live.updates.try_recv() {
                Ok(Update::Steps(steps)) => live.pending.extend(steps),
                Ok(Update::Note(note)) => self.message = Some(note),
                Ok(Update::Ended {
                    reason,
                    ended,
                    verification,
                }) => {
                    live.ended = Some(reason);
                    self.info.ended = ended;
                    if let Some(v) = verification {
                        self.info.verification = v;
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    if live.ended.is_none() && !live.lost {
                        live.lost = true;
                        self.message = Some("the live source stopped".to_owned());
                    }
                    break;
                }
            }
        }
        if live.pending.is_empty() {
            return;
        }
        let at_edge =
            self.steps >= self.timeline.len() && self.pos_us >= self.timeline.duration_us();
        let take = live.pending.len().min(max);
        for step in live.pending.drain(..take) {
            if let terminal::Change::Exit(code) = step.change {
                self.info.exit_status = Some(code);
            }
            live.builder.push(&step);
            self.timeline.push(step);
        }
        *self.heat.borrow_mut() = None;
        if at_edge && self.playing {
            let all = self.timeline.len();
            self.pos_us = self.duration_us();
            self.go_to_steps(all);
        }
    }

    fn is_live(&self) -> bool {
        matches!(&self.frames, Frames::Live(live) if live.ended.is_none() && !live.lost)
    }

    /// The screen at the current position.
    pub fn screen(&self) -> &Screen {
        &self.screen
    }

    /// Steps applied.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The position, in microseconds of recording time.
    pub fn position_us(&self) -> u64 {
        self.pos_us
    }

    /// The recording's length.
    pub fn duration_us(&self) -> u64 {
        self.timeline.duration_us()
    }

    /// The playback speed.
    pub fn speed(&self) -> f64 {
        SPEEDS.get(self.speed).copied().unwrap_or(1.0)
    }

    /// The idle cap, in microseconds.
    pub fn idle_limit_us(&self) -> u64 {
        self.idle_limit_us
    }

    /// Whether `q` was pressed.
    pub fn done(&self) -> bool {
        self.quit
    }

    /// The time ranges watched so far (start and end in microseconds),
    /// merged where they touch.
    pub fn watched(&self) -> Vec<(u64, u64)> {
        let mut all = self.ranges.clone();
        all.push((
            self.range_start.min(self.pos_us),
            self.pos_us.max(self.range_start),
        ));
        all.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (a, b) in all {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        merged
    }

    /// Moves the screen to `steps` steps, replaying forward from the
    /// current screen when that is short, else from a keyframe.
    fn go_to_steps(&mut self, steps: usize) {
        let steps = steps.min(self.timeline.len());
        if steps >= self.steps && steps - self.steps <= INCREMENTAL {
            self.timeline.apply(&mut self.screen, self.steps, steps);
        } else {
            match self.timeline.screen_at(self.index(), steps) {
                Ok(screen) => self.screen = screen,
                Err(e) => {
                    self.message = Some(e.to_string());
                    return;
                }
            }
        }
        self.steps = steps;
    }

    /// A jump (seek, step, marker, search) to `steps` steps at time `t`:
    /// closes the watched range and starts another there.
    fn jump(&mut self, steps: usize, t: u64) {
        self.ranges.push((
            self.range_start.min(self.pos_us),
            self.pos_us.max(self.range_start),
        ));
        self.pos_us = t;
        self.range_start = t;
        self.go_to_steps(steps);
    }

    fn jump_to_time(&mut self, time_us: u64) {
        let t = time_us.min(self.duration_us());
        self.jump(self.timeline.steps_by(t), t);
    }

    fn jump_to_steps(&mut self, steps: usize) {
        self.jump(steps, self.timeline.time_of(steps));
    }

    /// Lets `elapsed` of wall-clock time pass.
    pub fn tick(&mut self, elapsed: Duration) {
        if !self.playing {
            return;
        }
        let advance = elapsed.as_secs_f64() * 1e6 * self.speed();
        let mut pos = self.pos_us.saturating_add(advance as u64);
        if self.idle_cap {
            // A gap longer than the cap is cut to the cap.
            let last = self.timeline.time_of(self.steps);
            if let Some(next) = self.timeline.time_at(self.steps)
                && next.saturating_sub(last) > self.idle_limit_us
                && pos >= last.saturating_add(self.idle_limit_us)
            {
                pos = pos.max(next);
            }
        }
        let end = self.duration_us();
        if pos >= end && self.is_live() {
            // At the latest output: stay there, playing, for what comes.
            pos = end;
        } else if pos >= end {
            pos = end;
            self.playing = false;
            self.message = Some("end of the recording".to_owned());
        }
        self.pos_us = pos;
        let steps = self.timeline.steps_by(pos);
        self.go_to_steps(steps);
    }

    /// Handles one key.
    pub fn key(&mut self, key: Key) {
        if let Some(prompt) = self.prompt.take() {
            self.prompt_key(prompt, key);
            return;
        }
        if self.help {
            self.help = false;
            if key != Key::Char('q') {
                return;
            }
        }
        self.message = None;
        let duration = self.duration_us();
        match key {
            Key::Char('q') | Key::Esc => self.quit = true,
            Key::Char(' ') => {
                if !self.playing && self.pos_us >= duration {
                    self.jump_to_time(0);
                }
                self.playing = !self.playing;
            }
            Key::Char('.') => {
                self.playing = false;
                let next = self.timeline.output_steps().find(|&s| s > self.steps);
                if let Some(s) = next {
                    self.jump_to_steps(s);
                }
            }
            Key::Char(',') => {
                // Undo the last output event shown: the screen just before it.
                self.playing = false;
                let last = self
                    .timeline
                    .output_steps()
                    .rev()
                    .find(|&s| s <= self.steps)
                    .unwrap_or(1);
                self.jump_to_steps(last - 1);
            }
            Key::Right => self.jump_to_time(self.pos_us.saturating_add(5_000_000)),
            Key::Left => self.jump_to_time(self.pos_us.saturating_sub(5_000_000)),
            Key::ShiftRight => self.jump_to_time(self.pos_us.saturating_add(duration / 10)),
            Key::ShiftLeft => self.jump_to_time(self.pos_us.saturating_sub(duration / 10)),
            Key::Char(d @ '0'..='9') => {
                let tenths = u64::from(d.to_digit(10).unwrap_or(0));
                self.jump_to_time(duration / 10 * tenths);
            }
            Key::Char('+') | Key::Char('=') => {
                self.speed = (self.speed + 1).min(SPEEDS.len() - 1);
            }
            Key::Char('-') => self.speed = self.speed.saturating_sub(1),
            Key::Char('i') => {
                self.idle_cap = !self.idle_cap;
                self.message = Some(if self.idle_cap {
                    format!("idle time capped at {}", clock(self.idle_limit_us))
                } else {
                    "idle time played in full".to_owned()
                });
            }
            Key::Char(']') => {
                let next = self.timeline.markers().find(|(s, _, _)| *s > self.steps);
                match next {
                    Some((s, _, label)) => {
                        self.message = Some(format!("marker: {label}"));
                        self.jump_to_steps(s);
                    }
                    None => self.message = Some("no marker after this point".to_owned()),
                }
            }
            Key::Char('[') => {
                let prev = self
                    .timeline
                    .markers()
                    .rev()
                    .find(|(s, _, _)| *s < self.steps);
                match prev {
                    Some((s, _, label)) => {
                        self.message = Some(format!("marker: {label}"));
                        self.jump_to_steps(s);
                    }
                    None => self.message = Some("no marker before this point".to_owned()),
                }
            }
            Key::Char('/') => {
                self.prompt = Some(Prompt::Search {
                    forward: true,
                    text: String::new(),
                });
            }
            Key::Char('?') => {
                // The help, and under it a backward search: typing starts
                // the search and hides the help, Esc or Enter closes both.
                self.help = true;
                self.prompt = Some(Prompt::Search {
                    forward: false,
                    text: String::new(),
                });
            }
            Key::Char('h') => self.help = true,
            Key::F1 => self.help = true,
            Key::Char('L') => {
                if self.is_live() {
                    self.playing = true;
                    self.jump_to_steps(self.timeline.len());
                    self.pos_us = self.duration_us();
                    self.message = Some("live".to_owned());
                } else {
                    self.message = Some("not a live session".to_owned());
                }
            }
            Key::Char('n') => self.next_hit(true),
            Key::Char('N') => self.next_hit(false),
            Key::Char('g') => self.prompt = Some(Prompt::Goto(String::new())),
            Key::Up => self.pan.1 = self.pan.1.saturating_sub(1),
            Key::Down => self.pan.1 = self.pan.1.saturating_add(1),
            Key::Char('<') => self.pan.0 = self.pan.0.saturating_sub(8),
            Key::Char('>') => self.pan.0 = self.pan.0.saturating_add(8),
            _ => {}
        }
    }

    fn prompt_key(&mut self, prompt: Prompt, key: Key) {
        if matches!(key, Key::Char(_) | Key::Esc | Key::Enter) {
            self.help = false;
        }
        let (mut text, rebuild): (String, fn(String) -> Prompt) = match prompt {
            Prompt::Search { forward, text } => (
                text,
                if forward {
                    |t| Prompt::Search {
                        forward: true,
                        text: t,
                    }
                } else {
                    |t| Prompt::Search {
                        forward: false,
                        text: t,
                    }
                },
            ),
            Prompt::Goto(text) => (text, Prompt::Goto),
        };
        match key {
            Key::Esc => {}
            Key::Backspace => {
                text.pop();
                self.prompt = Some(rebuild(text));
            }
            Key::Char(c) => {
                if text.len() < 256 {
                    text.push(c);
                }
                self.prompt = Some(rebuild(text));
            }
            Key::Enter => match rebuild(text) {
                Prompt::Search { text, .. } if text.is_empty() => {}
                Prompt::Search { forward, text } => self.search(&text, forward),
                Prompt::Goto(text) => match parse_clock(&text) {
                    Some(t) => self.jump_to_time(t),
                    None => {
                        self.message = Some(format!("not a time: {text:?} (use mm:ss or hh:mm:ss)"))
                    }
                },
            },
            _ => self.prompt = Some(rebuild(text)),
        }
    }

    /// Runs a search and jumps to the first hit in its direction.
    pub fn search(&mut self, text: &str, forward: bool) {
        let query = if self.regex {
            Query::regex(text)
        } else {
            Query::plain(text)
        };
        match query {
            Ok(q) => {
                self.hits = q.all(self.index());
                self.current_hit = None;
                if self.hits.is_empty() {
                    self.message = Some(format!("not found: {text}"));
                } else {
                    self.next_hit(forward);
                }
            }
            Err(e) => self.message = Some(e.to_string()),
        }
    }

    fn next_hit(&mut self, forward: bool) {
        let Some(hit) = search::next(&self.hits, self.steps, forward).cloned() else {
            self.message = Some("no search: press / to search".to_owned());
            return;
        };
        self.current_hit = self.hits.iter().position(|h| *h == hit);
        self.playing = false;
        self.jump_to_steps(hit.steps);
        let n = self.current_hit.map_or(0, |i| i + 1);
        let screen = if hit.alternate { ", full-screen" } else { "" };
        self.message = Some(format!(
            "match {n} of {} at {}{screen}",
            self.hits.len(),
            clock(hit.time_us)
        ));
    }

    /// The current hit, if the screen shows the step it was found at.
    pub fn shown_hit(&self) -> Option<&Hit> {
        self.current_hit
            .and_then(|i| self.hits.get(i))
            .filter(|h| h.steps == self.steps)
    }
}

/// `mm:ss` or `hh:mm:ss` (or plain seconds) as microseconds.
pub fn parse_clock(text: &str) -> Option<u64> {
    let parts: Vec<&str> = text.trim().split(':').collect();
    if parts.is_empty() || parts.len() > 3 {
        return None;
    }
    let mut secs = 0u64;
    for p in &parts {
        let n: u64 = p.parse().ok()?;
        secs = secs.checked_mul(60)?.checked_add(n)?;
    }
    secs.checked_mul(1_000_000)
}

/// Microseconds as `m:ss` or `h:mm:ss`.
pub fn clock(us: u64) -> String {
    let s = us / 1_000_000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}
