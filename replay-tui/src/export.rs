//! A time range of a recording, for evidence: as asciicast v3 that starts
//! with the screen as it was at the start of the range, or as the text that
//! appeared on screen during it.

use recorder::asciicast as v3;
use terminal::{Change, Index, Timeline};

use crate::clock;

/// The range `from_us..=to_us` as asciicast v3. The first event redraws
/// the screen as it was at `from_us` (a snapshot), so the range plays on
/// its own; times start at 0. `header_line` is the recording's header.
pub fn cast(
    timeline: &Timeline,
    index: &Index,
    header_line: &str,
    from_us: u64,
    to_us: u64,
) -> terminal::Result<Vec<u8>> {
    let start = timeline.steps_by(from_us);
    let end = timeline.steps_by(to_us);
    let screen = timeline.screen_at(index, start)?;
    let (cols, rows) = screen.size();
    let mut out = Vec::new();
    out.extend_from_slice(header_line.trim_end().as_bytes());
    out.push(b'\n');
    if (cols, rows) != timeline.size() {
        v3::encode_event(0, "r", &format!("{cols}x{rows}"), &mut out);
    }
    // Clear, then the snapshot's own escape sequences.
    v3::encode_event(
        0,
        "o",
        &format!("\x1b[H\x1b[2J{}", screen.snapshot().dump),
        &mut out,
    );
    let mut last = from_us;
    timeline.for_each(start, end, |step| {
        let interval = step.time_us.saturating_sub(last);
        last = step.time_us;
        match &step.change {
            Change::Output(text) => v3::encode_event(interval, "o", text, &mut out),
            Change::Resize { cols, rows } => {
                v3::encode_event(interval, "r", &format!("{cols}x{rows}"), &mut out);
            }
            Change::Marker(label) => v3::encode_event(interval, "m", label, &mut out),
            Change::Exit(code) => v3::encode_event(interval, "x", &code.to_string(), &mut out),
        }
    });
    Ok(out)
}

/// The lines that appeared on screen during `from_us..=to_us`, each with
/// its time (`m:ss`, from the start of the recording), in order.
/// Full-screen (alternate screen) lines are marked.
pub fn text(index: &Index, from_us: u64, to_us: u64) -> String {
    let mut out = String::new();
    index.text.for_each(|_, line| {
        if line.time_us >= from_us && line.time_us <= to_us {
            let mark = if line.alternate { " |" } else { "  " };
            out.push_str(&format!("{}{mark} {}\n", clock(line.time_us), line.text));
        }
    });
    out
}
