//! Drawing a [`Player`] into a ratatui buffer.

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use crate::{Player, Prompt, Verification, clock};

/// Width of the side panel, when there is room for it.
const PANEL: u16 = 44;

/// The keys, for the help overlay.
pub const HELP: &[(&str, &str)] = &[
    ("space", "pause / play"),
    (". ,", "one output event forward / back"),
    ("← →", "seek 5 s back / forward"),
    ("shift ← →", "seek 10 %"),
    ("0 – 9", "jump to 0 – 90 %"),
    ("+ -", "speed (0.25× to 16×)"),
    ("i", "cap idle time on / off"),
    ("[ ]", "previous / next marker"),
    ("/ ?", "search forward / back"),
    ("n N", "next / previous match"),
    ("L", "back to live (a live session)"),
    ("g", "go to a time (mm:ss)"),
    ("↑ ↓ < >", "pan a recording larger than the terminal"),
    ("h F1", "this help"),
    ("q", "quit"),
];

/// Draws the whole player.
pub fn draw(frame: &mut Frame<'_>, player: &Player) {
    let area = frame.area();
    let forced = matches!(player.info.verification, Verification::Failed(_));
    let [banner, main, timeline, status] = Layout::vertical([
        Constraint::Length(u16::from(forced)),
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    if let Verification::Failed(problems) = &player.info.verification {
        let text = format!(
            " NOT VERIFIED: {} ",
            problems
                .first()
                .map_or("verification failed", String::as_str)
        );
        frame.render_widget(
            Paragraph::new(text).style(Style::new().bg(Color::Red).fg(Color::White).bold()),
            banner,
        );
    }
    let (rec_cols, _) = player.screen().size();
    let with_panel = main.width >= rec_cols.saturating_add(PANEL);
    let [recording, panel] = if with_panel {
        // The panel sits right of the recording (and its edge line).
        Layout::horizontal([
            Constraint::Length(rec_cols.saturating_add(1)),
            Constraint::Fill(1),
        ])
        .areas(main)
    } else {
        [main, Rect::default()]
    };
    draw_recording(frame.buffer_mut(), recording, player);
    if with_panel {
        draw_panel(frame, panel, player);
    }
    draw_timeline(frame.buffer_mut(), timeline, player);
    draw_status(frame, status, player);
    if player.help {
        draw_help(frame, main);
    }
}

fn color(c: terminal::Color) -> Color {
    match c {
        terminal::Color::Indexed(i) => Color::Indexed(i),
        terminal::Color::Rgb(r, g, b) => Color::Rgb(r, g, b),
    }
}

fn cell_style(s: &terminal::Style) -> Style {
    let mut style = Style::new();
    if let Some(fg) = s.fg {
        style = style.fg(color(fg));
    }
    if let Some(bg) = s.bg {
        style = style.bg(color(bg));
    }
    let mut m = Modifier::empty();
    for (on, flag) in [
        (s.bold, Modifier::BOLD),
        (s.faint, Modifier::DIM),
        (s.italic, Modifier::ITALIC),
        (s.underline, Modifier::UNDERLINED),
        (s.strikethrough, Modifier::CROSSED_OUT),
        (s.blink, Modifier::SLOW_BLINK),
        (s.inverse, Modifier::REVERSED),
    ] {
        if on {
            m |= flag;
        }
    }
    style.add_modifier(m)
}

/// The recording at its own size, from the pan offset, clipped to `area`;
/// outside it, a dim border shows where the recording ends.
fn draw_recording(buf: &mut Buffer, area: Rect, player: &Player) {
    let screen = player.screen();
    let (cols, rows) = screen.size();
    let pan_x = player.pan.0.min(cols.saturating_sub(area.width));
    let pan_y = player.pan.1.min(rows.saturating_sub(area.height));
    let hit = player.shown_hit();
    for y in 0..rows.saturating_sub(pan_y).min(area.height) {
        let row = usize::from(y + pan_y);
        let cells = screen.row(row);
        // The match's columns, from its byte range in the row's text.
        let marked = hit.filter(|h| h.row == row).map(|h| {
            let text = screen.line(row).unwrap_or_default();
            let start = text.get(..h.start).map_or(0, |t| t.chars().count());
            let end = text.get(..h.end).map_or(0, |t| t.chars().count());
            (start, end)
        });
        let mut x: u16 = 0;
        for (i, cell) in cells.iter().enumerate() {
            let width = u16::from(cell.width.max(1));
            if x >= pan_x && x - pan_x < area.width {
                let mut style = cell_style(&cell.style);
                if marked.is_some_and(|(a, b)| i >= a && i < b) {
                    style = style.bg(Color::Yellow).fg(Color::Black);
                }
                if let Some(c) = buf.cell_mut((area.x + x - pan_x, area.y + y)) {
                    // Control characters never reach the real terminal.
                    let ch = if cell.ch.is_control() { ' ' } else { cell.ch };
                    c.set_char(ch).set_style(style);
                }
            }
            x = x.saturating_add(width);
        }
    }
    // Where the recording ends, when the terminal is larger.
    let edge = Style::new().fg(Color::DarkGray);
    if cols.saturating_sub(pan_x) < area.width {
        let x = area.x + cols - pan_x;
        for y in 0..rows.saturating_sub(pan_y).min(area.height) {
            if let Some(c) = buf.cell_mut((x, area.y + y)) {
                c.set_char('│').set_style(edge);
            }
        }
    }
    if rows.saturating_sub(pan_y) < area.height {
        let y = area.y + rows - pan_y;
        for x in 0..cols.saturating_sub(pan_x).min(area.width) {
            if let Some(c) = buf.cell_mut((area.x + x, y)) {
                c.set_char('─').set_style(edge);
            }
        }
    }
}

fn draw_panel(frame: &mut Frame<'_>, area: Rect, player: &Player) {
    let info = &player.info;
    let label = Style::new().fg(Color::DarkGray);
    let row = |k: &'static str, v: String| {
        Line::from(vec![Span::styled(format!("{k:<9}"), label), Span::raw(v)])
    };
    let mut lines = vec![
        row("session", info.session_id.clone()),
        row("channel", info.channel.clone()),
        row("who", info.identity.clone()),
        row("login", info.login_route.clone()),
        row("target", info.target.clone()),
        row("started", info.started.clone()),
        row(
            "ended",
            if info.ended.is_empty() {
                "-".to_owned()
            } else {
                info.ended.clone()
            },
        ),
        row(
            "exit",
            info.exit_status.map_or("-".to_owned(), |c| c.to_string()),
        ),
        row(
            "cert",
            info.cert_serial.map_or("-".to_owned(), |s| s.to_string()),
        ),
        Line::default(),
    ];
    match &info.verification {
        Verification::Verified { segments } => lines.push(Line::styled(
            format!("✔ verified: signature, {segments} segment(s), hash chain"),
            Style::new().fg(Color::Green),
        )),
        Verification::Unsealed => lines.push(Line::styled(
            "… live: verified when the session is sealed",
            Style::new().fg(Color::Yellow),
        )),
        Verification::Failed(problems) => {
            lines.push(Line::styled(
                "✘ NOT VERIFIED (opened with --force)",
                Style::new().fg(Color::Red).bold(),
            ));
            for p in problems.iter().take(6) {
                lines.push(Line::styled(format!("- {p}"), Style::new().fg(Color::Red)));
            }
        }
    }
    let markers: Vec<_> = player.timeline.markers().collect();
    if !markers.is_empty() {
        lines.push(Line::default());
        lines.push(Line::styled("markers", label));
        for (_, t, name) in markers.iter().take(12) {
            lines.push(Line::raw(format!("{} {name}", clock(*t))));
        }
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(Block::new().borders(Borders::LEFT).border_style(label)),
        area,
    );
}

/// One cell per slice of the recording: the amount of output in it as a
/// bar, markers as `|`, and the playhead.
fn draw_timeline(buf: &mut Buffer, area: Rect, player: &Player) {
    let width = usize::from(area.width);
    if width == 0 {
        return;
    }
    let duration = player.duration_us().max(1);
    let slice = |t: u64| -> usize {
        let i = u128::from(t) * width as u128 / (u128::from(duration) + 1);
        usize::try_from(i).unwrap_or(0).min(width - 1)
    };
    // Summed once per width, not on every frame: a long recording has
    // hundreds of thousands of steps.
    let mut cache = player.heat.borrow_mut();
    let steps = player.timeline.len();
    if cache
        .as_ref()
        .is_none_or(|(w, n, _, _)| *w != width || *n != steps)
    {
        let mut bytes = vec![0u64; width];
        let mut marks = vec![false; width];
        for (time_us, len) in player.timeline.activity() {
            if let Some(b) = bytes.get_mut(slice(time_us)) {
                *b = b.saturating_add(u64::from(len));
            }
        }
        for (_, time_us, _) in player.timeline.markers() {
            if let Some(m) = marks.get_mut(slice(time_us)) {
                *m = true;
            }
        }
        *cache = Some((width, steps, bytes, marks));
    }
    let Some((_, _, bytes, marks)) = cache.as_ref() else {
        return;
    };
    let max = bytes.iter().copied().max().unwrap_or(0).max(1);
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let head = slice(player.position_us());
    for (i, (&b, &m)) in bytes.iter().zip(marks).enumerate() {
        let (ch, mut style) = if m {
            ('|', Style::new().fg(Color::Magenta).bold())
        } else if b == 0 {
            ('·', Style::new().fg(Color::DarkGray))
        } else {
            // Logarithmic, so a burst does not flatten everything else.
            let level = ((b as f64).ln() / (max as f64).ln().max(1.0) * 7.0).round();
            let idx = (level.max(0.0) as usize).min(7);
            (
                BARS.get(idx).copied().unwrap_or('█'),
                Style::new().fg(Color::Cyan),
            )
        };
        if i == head {
            style = style.bg(Color::White).fg(Color::Black);
        }
        let x = area.x + u16::try_from(i).unwrap_or(0);
        if let Some(c) = buf.cell_mut((x, area.y)) {
            c.set_char(ch).set_style(style);
        }
    }
}

fn draw_status(frame: &mut Frame<'_>, area: Rect, player: &Player) {
    let text = match &player.prompt {
        Some(Prompt::Search { forward, text }) => {
            format!("{}{text}▏", if *forward { "/" } else { "?" })
        }
        Some(Prompt::Goto(text)) => format!("go to (mm:ss): {text}▏"),
        None => {
            let state = if player.playing { "▶" } else { "⏸" };
            let live = match player.live_state() {
                crate::LiveState::No => None,
                crate::LiveState::AtEdge => Some("● LIVE".to_owned()),
                crate::LiveState::Behind => Some("live: L goes back to live".to_owned()),
                crate::LiveState::Ended(reason) => Some(format!("session ended: {reason}")),
            };
            let (cols, rows) = player.screen().size();
            let mut parts = vec![
                format!(
                    "{state} {} / {}",
                    clock(player.position_us()),
                    clock(player.duration_us())
                ),
                format!("{}×", player.speed()),
            ];
            parts.extend(live);
            if player.idle_cap {
                parts.push(format!("idle ≤ {}", clock(player.idle_limit_us())));
            }
            let area_full = frame.area();
            if cols > area_full.width || rows > area_full.height.saturating_sub(2) {
                parts.push(format!(
                    "recording is {cols}×{rows}, larger than this terminal: ↑↓<> pan"
                ));
            }
            if let Some(m) = &player.message {
                parts.push(m.clone());
            }
            parts.push("? help".to_owned());
            parts.join("  ·  ")
        }
    };
    frame.render_widget(
        Paragraph::new(text).style(Style::new().add_modifier(Modifier::REVERSED)),
        area,
    );
}

fn draw_help(frame: &mut Frame<'_>, area: Rect) {
    let width = 60.min(area.width);
    let height = (HELP.len() as u16 + 4).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let mut lines: Vec<Line<'_>> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:>10}  "), Style::new().bold()),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::styled(
        "type to search back; Esc closes",
        Style::new().fg(Color::DarkGray),
    ));
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" keys ")),
        popup,
    );
}
