//! The loop on a real terminal.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use crate::{Key, Player, view};

/// How often the screen is redrawn while playing.
const FRAME: Duration = Duration::from_millis(33);

/// Runs the player until `q` or SIGTERM/SIGINT/SIGHUP. The terminal is put
/// back as it was on every way out: return, error, signal and panic
/// (ratatui's panic hook).
pub fn run(player: &mut Player) -> io::Result<()> {
    let stop = stop_flag()?;
    let mut terminal = ratatui::try_init()?;
    let result = event_loop(&mut terminal, player, &stop);
    let restored = ratatui::try_restore();
    result.and(restored)
}

/// Set by SIGTERM, SIGINT or SIGHUP, which then no longer kill the
/// process: the loops check it and restore the terminal.
pub(crate) fn stop_flag() -> io::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    Ok(stop)
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    player: &mut Player,
    stop: &AtomicBool,
) -> io::Result<()> {
    let mut last = Instant::now();
    while !player.done() && !stop.load(Ordering::Relaxed) {
        terminal.draw(|frame| view::draw(frame, player))?;
        if event::poll(FRAME)? {
            match event::read()? {
                Event::Key(k) if k.kind != KeyEventKind::Release => {
                    let shift = k.modifiers.contains(KeyModifiers::SHIFT);
                    let key = match k.code {
                        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                            Some(Key::Char('q'))
                        }
                        KeyCode::Char(c) => Some(Key::Char(c)),
                        KeyCode::Enter => Some(Key::Enter),
                        KeyCode::Esc => Some(Key::Esc),
                        KeyCode::Backspace => Some(Key::Backspace),
                        KeyCode::Left if shift => Some(Key::ShiftLeft),
                        KeyCode::Right if shift => Some(Key::ShiftRight),
                        KeyCode::Left => Some(Key::Left),
                        KeyCode::Right => Some(Key::Right),
                        KeyCode::Up => Some(Key::Up),
                        KeyCode::Down => Some(Key::Down),
                        KeyCode::F(1) => Some(Key::F1),
                        _ => None,
                    };
                    if let Some(key) = key {
                        player.key(key);
                    }
                }
                _ => {}
            }
        }
        let now = Instant::now();
        player.tick(now - last);
        last = now;
    }
    Ok(())
}
