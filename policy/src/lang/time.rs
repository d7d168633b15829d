//! Time windows: `time_of_day`, `day_of_week` and `date`, and the next
//! instant each could change its answer.
//!
//! Windows are judged on the wall clock of their time zone: `09:00–18:00
//! Europe/Berlin` means what a clock in Berlin shows, before and after a
//! daylight-saving change. On the day clocks spring forward, a window edge
//! that falls into the skipped hour takes effect at the jump; on the day
//! they fall back, a wall time that happens twice is inside the window both
//! times.

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// `time_of_day: {from, to, timezone}`: inside when the wall clock shows a
/// time `t` with `from <= t < to`; when `from > to` the window crosses
/// midnight (`t >= from or t < to`). `from == to` is rejected when
/// compiling.
#[derive(Debug, Clone)]
pub(crate) struct TimeOfDay {
    pub from: Time,
    pub to: Time,
    pub tz: TimeZone,
}

impl TimeOfDay {
    fn inside(&self, t: Time) -> bool {
        if self.from < self.to {
            self.from <= t && t < self.to
        } else {
            t >= self.from || t < self.to
        }
    }

    pub fn contains(&self, now: Timestamp) -> bool {
        self.inside(self.tz.to_datetime(now).time())
    }

    /// The first instant after `now` at which [`contains`](Self::contains)
    /// differs from its value at `now`.
    pub fn next_change(&self, now: Timestamp) -> Option<Timestamp> {
        let dt = self.tz.to_datetime(now);
        let inside = self.inside(dt.time());
        // On a plain wall clock the answer flips at `to` when inside and at
        // `from` when outside, at its next occurrence.
        let edge = if inside { self.to } else { self.from };
        let date = if edge > dt.time() {
            dt.date()
        } else {
            dt.date().tomorrow().ok()?
        };
        let simple = self
            .tz
            .to_ambiguous_timestamp(date.to_datetime(edge))
            .compatible()
            .ok()?;
        // The plain answer holds unless the clock jumps before then, or the
        // edge's wall time is ambiguous and its first reading has passed
        // (inside the repeated hour after clocks fall back).
        match self.tz.following(now).next() {
            Some(tr) if tr.timestamp() <= simple => self.careful_next_change(now, dt, inside),
            _ if simple <= now => self.careful_next_change(now, dt, inside),
            _ => Some(simple),
        }
    }

    /// Near a time-zone transition the wall clock jumps, so list every
    /// instant at which the answer could flip (each occurrence of `from` and
    /// `to`, both readings of an ambiguous one, and the transitions) and
    /// take the first where it does.
    fn careful_next_change(&self, now: Timestamp, dt: DateTime, inside: bool) -> Option<Timestamp> {
        let horizon = now.checked_add(96.hours()).ok()?;
        let mut candidates: Vec<Timestamp> = self
            .tz
            .following(now)
            .map(|tr| tr.timestamp())
            .take_while(|ts| *ts <= horizon)
            .collect();
        let mut date = dt.date().yesterday().ok()?;
        for _ in 0..5 {
            for edge in [self.from, self.to] {
                let amb = self.tz.to_ambiguous_timestamp(date.to_datetime(edge));
                candidates.extend(amb.earlier().ok());
                candidates.extend(amb.later().ok());
            }
            date = date.tomorrow().ok()?;
        }
        candidates.retain(|c| *c > now);
        candidates.sort();
        candidates.dedup();
        candidates
            .iter()
            .copied()
            .find(|c| self.contains(*c) != inside)
            .or_else(|| candidates.last().copied())
    }
}

/// `day_of_week: {days, timezone}`: inside on the listed weekdays of the
/// time zone's calendar, from midnight to midnight.
#[derive(Debug, Clone)]
pub(crate) struct DayOfWeek {
    /// Bit `n` set means weekday `n` (Monday = 0) is inside.
    pub days: u8,
    pub tz: TimeZone,
}

impl DayOfWeek {
    fn inside(&self, date: Date) -> bool {
        self.days & weekday_bit(date.weekday()) != 0
    }

    pub fn contains(&self, now: Timestamp) -> bool {
        self.inside(self.tz.to_datetime(now).date())
    }

    pub fn next_change(&self, now: Timestamp) -> Option<Timestamp> {
        let today = self.tz.to_datetime(now).date();
        let inside = self.inside(today);
        let mut date = today;
        for _ in 0..7 {
            date = date.tomorrow().ok()?;
            if self.inside(date) != inside {
                // `compatible` maps a midnight that a transition skips to
                // the transition itself, which is when that day begins.
                return self
                    .tz
                    .to_ambiguous_timestamp(date.to_datetime(Time::midnight()))
                    .compatible()
                    .ok();
            }
        }
        None
    }
}

pub(crate) fn weekday_bit(day: Weekday) -> u8 {
    1 << day.to_monday_zero_offset()
}

/// `date: {after, before}`: inside from `after` (inclusive) until `before`
/// (exclusive).
#[derive(Debug, Clone)]
pub(crate) struct DateRange {
    pub after: Option<Timestamp>,
    pub before: Option<Timestamp>,
}

impl DateRange {
    pub fn contains(&self, now: Timestamp) -> bool {
        self.after.is_none_or(|a| now >= a) && self.before.is_none_or(|b| now < b)
    }

    pub fn next_change(&self, now: Timestamp) -> Option<Timestamp> {
        [self.after, self.before]
            .into_iter()
            .flatten()
            .filter(|t| *t > now)
            .min()
    }
}

/// Any time window, for collecting the next-check instant of a route.
#[derive(Debug, Clone)]
pub(crate) enum Window {
    TimeOfDay(TimeOfDay),
    DayOfWeek(DayOfWeek),
    Date(DateRange),
}

impl Window {
    pub fn next_change(&self, now: Timestamp) -> Option<Timestamp> {
        match self {
            Window::TimeOfDay(w) => w.next_change(now),
            Window::DayOfWeek(w) => w.next_change(now),
            Window::Date(w) => w.next_change(now),
        }
    }
}
