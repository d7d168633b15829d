//! A full-screen list to pick from: the sessions `replay` can play, or a
//! session's channels.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{List, ListState, Paragraph};

/// A row picked from the list, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Enter: play it from the start.
    Play(usize),
    /// `f`: follow it live, from its latest output.
    Follow(usize),
}

impl Choice {
    /// The row picked.
    pub fn row(self) -> usize {
        match self {
            Choice::Play(i) | Choice::Follow(i) => i,
        }
    }
}

/// Shows `title`, a `header` line and `rows`; returns the row picked with
/// Enter or `f`, or `None` for `q`/Esc. The terminal is restored either way.
pub fn pick(title: &str, header: &str, rows: &[String]) -> io::Result<Option<Choice>> {
    let stop = crate::run::stop_flag()?;
    let watch = crate::run::watch(&stop);
    let mut terminal = ratatui::try_init()?;
    let result = pick_loop(&mut terminal, title, header, rows, &stop);
    watch.store(true, Ordering::Relaxed);
    let restored = ratatui::try_restore();
    let picked = result?;
    restored?;
    Ok(picked)
}

fn pick_loop(
    terminal: &mut ratatui::DefaultTerminal,
    title: &str,
    header: &str,
    rows: &[String],
    stop: &AtomicBool,
) -> io::Result<Option<Choice>> {
    let mut state = ListState::default().with_selected((!rows.is_empty()).then_some(0));
    while !stop.load(Ordering::Relaxed) {
        let mut page = 1;
        terminal.draw(|frame| {
            let [top, head, list, help] = Layout::vertical([
                Constraint::Length(1),
                Constraint::Length(1),
                Constraint::Fill(1),
                Constraint::Length(1),
            ])
            .areas(frame.area());
            page = usize::from(list.height.max(1));
            frame.render_widget(Paragraph::new(title).style(Style::new().bold()), top);
            frame.render_widget(
                Paragraph::new(header).style(Style::new().add_modifier(Modifier::DIM)),
                head,
            );
            let items: Vec<Line<'_>> = rows.iter().map(|r| Line::raw(r.as_str())).collect();
            frame.render_stateful_widget(
                List::new(items).highlight_style(Style::new().add_modifier(Modifier::REVERSED)),
                list,
                &mut state,
            );
            frame.render_widget(
                Paragraph::new(
                    "↑↓ PgUp PgDn: choose  ·  Enter: play  ·  f: follow live  ·  q: quit",
                )
                .style(Style::new().add_modifier(Modifier::REVERSED)),
                help,
            );
        })?;
        if !event::poll(Duration::from_millis(100))? {
            continue;
        }
        if let Event::Key(k) = event::read()? {
            if k.kind == KeyEventKind::Release {
                continue;
            }
            let last = rows.len().saturating_sub(1);
            let at = state.selected().unwrap_or(0);
            match k.code {
                KeyCode::Char('q') | KeyCode::Esc => return Ok(None),
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                    return Ok(None);
                }
                KeyCode::Enter if !rows.is_empty() => return Ok(Some(Choice::Play(at))),
                KeyCode::Char('f') if !rows.is_empty() => return Ok(Some(Choice::Follow(at))),
                KeyCode::Down | KeyCode::Char('j') => state.select(Some((at + 1).min(last))),
                KeyCode::Up | KeyCode::Char('k') => state.select(Some(at.saturating_sub(1))),
                KeyCode::PageDown => state.select(Some((at + page).min(last))),
                KeyCode::PageUp => state.select(Some(at.saturating_sub(page))),
                KeyCode::Home => state.select(Some(0)),
                KeyCode::End => state.select(Some(last)),
                _ => {}
            }
        }
    }
    Ok(None)
}
