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
    let watch = watch(&stop);
    let mut terminal = ratatui::try_init()?;
    let result = event_loop(&mut terminal, player, &stop);
    watch.store(true, Ordering::Relaxed);
    let restored = ratatui::try_restore();
    result.and(restored)
}

/// Watches, from a thread of its own, for the terminal going away (its
/// pty closed without a SIGHUP reaching us) and for a stop the loop does
/// not act on: once stdin is at EOF, crossterm's `poll` can spin without
/// returning, and a paused player's draws write nothing that could fail.
/// A vanished terminal sets `stop`; a stop not acted on within two
/// seconds ends the process (after a best-effort restore). Returns the
/// flag that tells the watcher the loop is done.
pub(crate) fn watch(stop: &Arc<AtomicBool>) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let (stop, finished) = (Arc::clone(stop), Arc::clone(&done));
    std::thread::spawn(move || {
        let mut stopping: Option<Instant> = None;
        while !finished.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(250));
            let gone = ratatui::crossterm::terminal::size().is_err();
            if gone {
                stop.store(true, Ordering::Relaxed);
            }
            if stop.load(Ordering::Relaxed) {
                let since = *stopping.get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_secs(2) && !finished.load(Ordering::Relaxed) {
                    let _ = ratatui::try_restore();
                    std::process::exit(if gone { 1 } else { 143 });
                }
            }
        }
    });
    done
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
        player.pump(crate::player::PUMP_STEPS);
        let now = Instant::now();
        player.tick(now - last);
        last = now;
    }
    Ok(())
}
