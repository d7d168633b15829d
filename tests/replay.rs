//! `gatehouse replay` end to end (issue 12): a recording made through the
//! real gateway with real `ssh`, played by the real binary in tmux
//! (`send-keys` to type, `capture-pane` to read), and exported.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::tmux::Tmux;
use common::{LOGIN, World, bin, run};
use sshd_test::require_program;

/// What the recorded session prints, with pauses so the parts land at
/// different seconds (and in different reads): a first line at 0 s, 60
/// lines at 1 s that scroll it away, a full-screen program's text on the
/// alternate screen from 3 s to 5 s, a line after it, and the end at 7 s.
const SCRIPT: &str = "printf 'first-line\\n'; sleep 1; seq -f 'row-%g' 1 60; sleep 2; \
     printf '\\033[?1049h\\033[H\\033[2J\\033[5;3Honly-in-the-editor'; sleep 2; \
     printf '\\033[?1049l'; printf 'after-editor\\n'; sleep 2; echo all-done";

fn gatehouse(args: &[&str], config: &Path) -> (i32, String, String) {
    let mut c = Command::new(bin());
    c.args(args).arg("--config").arg(config);
    run(c, Duration::from_secs(60))
}

/// Records SCRIPT on a pty through the gateway; returns the session id
/// once the recording is sealed.
fn record(w: &World) -> String {
    record_script(w, SCRIPT)
}

/// Records `script` (which ends by printing `all-done`) on a pty through
/// the gateway.
fn record_script(w: &World, script: &str) -> String {
    let gw = w.start(&[w.route("t", "")]);
    let mut ssh = Command::new(require_program("ssh"));
    ssh.args(w.ssh_args(&w.client_key, gw.port))
        .arg("-tt")
        .arg(format!("{LOGIN}@t@127.0.0.1"))
        .arg(script)
        .env("TERM", "xterm-256color");
    let (code, out, err) = run(ssh, Duration::from_secs(60));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("all-done"), "{out}");
    let config = w.path("gatehouse.yaml");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, out, err) = gatehouse(&["sessions", "list", "--json"], &config);
        assert_eq!(code, 0, "{err}");
        // One JSON object per line.
        let sealed = out
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|s| s["status"] == "sealed")
            .and_then(|s| s["session_id"].as_str().map(str::to_owned));
        if let Some(id) = sealed {
            return id;
        }
        assert!(Instant::now() < deadline, "never sealed: {out}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn export_gives_the_text_of_a_range_and_is_audited() {
    let w = World::new();
    let id = record(&w);
    let config = w.path("gatehouse.yaml");

    let (code, all, err) = gatehouse(&["replay", &id, "--format", "txt"], &config);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = all.lines().collect();
    let find = |text: &str| {
        lines
            .iter()
            .position(|l| l.ends_with(text))
            .unwrap_or_else(|| panic!("no {text:?} in:\n{all}"))
    };
    // In order; the full-screen text is marked; what scrolled away is there.
    let (first, editor, after) = (
        find(" first-line"),
        find(" only-in-the-editor"),
        find(" after-editor"),
    );
    assert!(first < find(" row-60") && find(" row-60") < editor && editor < after);
    assert!(lines[editor].contains(" | "), "{}", lines[editor]);
    assert!(lines[first].starts_with("0:00  "), "{}", lines[first]);
    // Each line once, although it scrolled through every row.
    assert_eq!(all.matches("row-1\n").count(), 1, "{all}");
    // The audit event names the viewer, the range and the mode.
    assert!(err.contains("event=\"recording.viewed\""), "{err}");
    assert!(err.contains("mode=\"export\""), "{err}");
    assert!(err.contains(&format!("session_id={id}")), "{err}");
    assert!(err.contains("verified=true"), "{err}");

    // A range: the first three seconds hold the first part only.
    let (code, part, err) = gatehouse(
        &[
            "replay", &id, "--from", "0:00", "--to", "0:02", "--format", "txt",
        ],
        &config,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        part.contains("first-line") && part.contains("row-60"),
        "{part}"
    );
    assert!(!part.contains("only-in-the-editor"), "{part}");
    assert!(err.contains("ranges=0:00-0:02"), "{err}");

    // As asciicast: from 0:04 it opens on the editor's screen, as it was.
    let out = w.path("range.cast");
    let (code, _, err) = gatehouse(
        &[
            "replay",
            &id,
            "--from",
            "0:04",
            "--format",
            "cast",
            "-o",
            out.to_str().unwrap(),
        ],
        &config,
    );
    assert_eq!(code, 0, "{err}");
    let cast = recorder::asciicast::read(&std::fs::read(&out).unwrap()).unwrap();
    let first_output = cast
        .events
        .iter()
        .find_map(|e| match &e.event {
            recorder::asciicast::Event::Output(t) => Some(t.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        first_output.contains("only-in-the-editor"),
        "{first_output:?}"
    );
    assert!(cast.output().contains("all-done"));
    assert!(!cast.output().contains("first-line"), "before the range");

    // Bad input: one line, non-zero.
    let (code, _, err) = gatehouse(&["replay", "no-such-session", "--format", "txt"], &config);
    assert_ne!(code, 0);
    assert!(err.contains("no-such-session"), "{err}");
    let (code, _, err) = gatehouse(&["replay", &id, "--from", "soon"], &config);
    assert_ne!(code, 0);
    assert!(err.contains("not a time"), "{err}");
}

#[test]
fn the_player_seeks_searches_steps_and_restores_the_terminal() {
    let w = World::new();
    let id = record(&w);
    let config = w.path("gatehouse.yaml");
    let tmux = Tmux::new(&w.path("tmux.sock"));
    let exited = w.path("exited");
    let command = format!(
        "{} replay --config {} {id} --paused; echo \"exit=$?\" > {}; stty -a > {}.stty; sleep 60",
        bin().display(),
        config.display(),
        exited.display(),
        exited.display(),
    );
    tmux.start("p", 140, 40, &command);
    let screen = tmux.wait_for("p", "? help", Duration::from_secs(30));
    assert!(screen.contains("⏸ 0:00"), "{screen}");
    assert!(screen.contains("verified"), "{screen}");
    assert!(screen.contains("alice@example.com"), "{screen}");

    // Search the alternate screen: the player jumps to the editor.
    tmux.keys("p", &["/"]);
    tmux.keys("p", &["-l", "only-in-the-editor"]);
    tmux.keys("p", &["Enter"]);
    let screen = tmux.wait_for("p", "match 1 of 1", Duration::from_secs(10));
    assert!(screen.contains("only-in-the-editor"), "{screen}");
    assert!(
        !screen.contains("row-60"),
        "the primary screen is hidden:\n{screen}"
    );

    // Back to the start: an empty screen, then one output event at a time.
    tmux.keys("p", &["0"]);
    let screen = tmux
        .wait_until("p", Duration::from_secs(10), |s| {
            !s.contains("only-in-the-editor")
        })
        .unwrap_or_else(|s| panic!("still on the editor:\n{s}"));
    assert!(!screen.contains("first-line"), "{screen}");
    tmux.keys("p", &["."]);
    tmux.wait_for("p", "first-line", Duration::from_secs(10));
    // Forward to the end (90 %, then 5 s on), and one step back.
    tmux.keys("p", &["9", "Right"]);
    tmux.wait_for("p", "all-done", Duration::from_secs(10));
    tmux.keys("p", &[","]);
    let screen = tmux
        .wait_until("p", Duration::from_secs(10), |s| !s.contains("all-done"))
        .unwrap_or_else(|s| panic!("step back left all-done:\n{s}"));
    assert!(screen.contains("after-editor"), "{screen}");

    // SIGTERM: the player leaves, and the terminal is as it was.
    let pane_pid = tmux.run(&["display", "-p", "-t", "p", "#{pane_pid}"]);
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", pane_pid.trim())).unwrap();
    let player: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &player.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !w.path("exited.stty").exists() {
        assert!(
            Instant::now() < deadline,
            "the player did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    let code = std::fs::read_to_string(&exited).unwrap();
    assert_eq!(code.trim(), "exit=0");
    let stty = std::fs::read_to_string(w.path("exited.stty")).unwrap();
    assert!(
        stty.split_whitespace().any(|f| f == "icanon")
            && stty.split_whitespace().any(|f| f == "echo"),
        "the terminal was left raw: {stty}"
    );
    // The alternate screen is gone: the pane shows the shell's screen,
    // not the player's.
    let screen = tmux.capture("p");
    assert!(!screen.contains("? help"), "{screen}");
}

#[test]
fn a_tampered_recording_opens_only_with_force_under_a_banner() {
    let w = World::new();
    let id = record(&w);
    let config = w.path("gatehouse.yaml");
    // Change one byte of one uploaded segment.
    let mut parts = Vec::new();
    let mut dirs = vec![w.path("state/recordings")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.to_string_lossy().ends_with(".part.zst") {
                parts.push(p);
            }
        }
    }
    let part = parts
        .first()
        .unwrap_or_else(|| panic!("no segment in storage"));
    let mut bytes = std::fs::read(part).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(part, bytes).unwrap();

    let (code, _, err) = gatehouse(&["replay", &id, "--format", "txt"], &config);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("failed verification"), "{err}");
    assert!(err.contains("--force"), "{err}");

    let tmux = Tmux::new(&w.path("tmux.sock"));
    let command = format!(
        "{} replay --config {} {id} --paused --force; sleep 60",
        bin().display(),
        config.display(),
    );
    tmux.start("p", 140, 40, &command);
    let screen = tmux.wait_for("p", "NOT VERIFIED", Duration::from_secs(30));
    assert!(screen.contains("segment"), "{screen}");

    // The terminal goes away under the paused player (its tmux server
    // ends): the player ends too, rather than spin on a dead pty.
    let pane_pid = tmux.run(&["display", "-p", "-t", "p", "#{pane_pid}"]);
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", pane_pid.trim())).unwrap();
    let player = children.split_whitespace().next().unwrap().to_owned();
    drop(tmux);
    let deadline = Instant::now() + Duration::from_secs(15);
    while Path::new(&format!("/proc/{player}")).exists()
        && !std::fs::read_to_string(format!("/proc/{player}/stat"))
            .unwrap_or_default()
            .contains(") Z")
    {
        assert!(
            Instant::now() < deadline,
            "the player outlived its terminal"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn without_an_id_a_list_of_sessions_opens_and_enter_plays_one() {
    let w = World::new();
    let id = record(&w);
    let config = w.path("gatehouse.yaml");
    let tmux = Tmux::new(&w.path("tmux.sock"));
    let command = format!(
        "{} replay --config {} --user ALICE@example.com --paused; sleep 60",
        bin().display(),
        config.display(),
    );
    tmux.start("p", 160, 40, &command);
    let screen = tmux.wait_for("p", "Recorded sessions (1)", Duration::from_secs(30));
    assert!(screen.contains(&id), "{screen}");
    assert!(screen.contains("ghtest@t"), "{screen}");
    tmux.keys("p", &["Enter"]);
    let screen = tmux.wait_for("p", "? help", Duration::from_secs(30));
    assert!(
        screen.contains(&id),
        "the player shows the session:\n{screen}"
    );
    tmux.keys("p", &["q"]);

    // A filter that matches nothing: one line, not an empty list.
    let (code, _, err) = gatehouse(&["replay", "--route", "nowhere"], &config);
    assert_ne!(code, 0);
    assert!(err.contains("no recorded sessions match"), "{err}");
}

/// The screen after a seek is the screen a real terminal shows when fed
/// the recorded output up to that time: the player in one tmux pane, the
/// raw output `cat` into another of the recording's size.
#[test]
fn a_seek_shows_what_a_terminal_fed_the_raw_output_shows() {
    let w = World::new();
    let id = record(&w);
    let config = w.path("gatehouse.yaml");
    let tmux = Tmux::new(&w.path("tmux.sock"));
    for at in ["0:02", "0:04", "0:06"] {
        // The output up to `at`, as asciicast (from an empty screen).
        let cast_file = w.path(&format!("upto-{}.cast", at.replace(':', "")));
        let (code, _, err) = gatehouse(
            &[
                "replay",
                &id,
                "--to",
                at,
                "--format",
                "cast",
                "-o",
                cast_file.to_str().unwrap(),
            ],
            &config,
        );
        assert_eq!(code, 0, "{err}");
        let cast = recorder::asciicast::read(&std::fs::read(&cast_file).unwrap()).unwrap();
        let raw = w.path(&format!("raw-{}.out", at.replace(':', "")));
        std::fs::write(&raw, cast.output()).unwrap();
        let (cols, rows) = (80, 24); // the recording's size (ssh -tt sent none)
        let pane = format!("raw{}", at.replace(':', ""));
        tmux.start(
            &pane,
            cols,
            rows,
            &format!("cat {}; sleep 60", raw.display()),
        );

        let player = format!("play{}", at.replace(':', ""));
        tmux.start(
            &player,
            140,
            40,
            &format!(
                "{} replay --config {} {id} --paused; sleep 60",
                bin().display(),
                config.display()
            ),
        );
        tmux.wait_for(&player, "? help", Duration::from_secs(30));
        tmux.keys(&player, &["g"]);
        tmux.keys(&player, &["-l", at]);
        tmux.keys(&player, &["Enter"]);
        let status = format!("⏸ {at}");
        let shown = tmux.wait_for(&player, &status, Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(300));
        let shown = {
            let again = tmux.capture(&player);
            if again.contains(&status) {
                again
            } else {
                shown
            }
        };
        let expected = tmux.capture(&pane);
        assert!(
            expected.lines().any(|l| !l.trim().is_empty()),
            "at {at}: the terminal shows nothing"
        );
        let lines = |screen: &str, width: usize, height: usize| -> Vec<String> {
            let mut v: Vec<String> = screen
                .lines()
                .take(height)
                .map(|l| {
                    l.chars()
                        .take(width)
                        .collect::<String>()
                        .trim_end()
                        .to_owned()
                })
                .collect();
            v.resize(height, String::new());
            v
        };
        assert_eq!(
            lines(&shown, usize::from(cols), usize::from(rows)),
            lines(&expected, usize::from(cols), usize::from(rows)),
            "at {at}: the player (left) and a terminal fed the raw output differ\n\
             player:\n{shown}\nterminal:\n{expected}"
        );
        tmux.keys(&player, &["q"]);
    }
}

/// Waits until the index lists a session still being recorded; returns
/// its id.
fn live_session(config: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, out, err) = gatehouse(&["sessions", "list", "--json"], config);
        assert_eq!(code, 0, "{err}");
        let live = out
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|s| s["status"] == "recording")
            .and_then(|s| s["session_id"].as_str().map(str::to_owned));
        if let Some(id) = live {
            return id;
        }
        assert!(Instant::now() < deadline, "no live session: {out}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn follow_shows_typed_output_within_two_segment_intervals() {
    const SEGMENT_INTERVAL: Duration = Duration::from_secs(2);
    let w = World::new();
    let recording = format!(
        "recording:\n  spool_dir: spool\n  segment_interval: {}s\n",
        SEGMENT_INTERVAL.as_secs()
    );
    let gw = w.start_with(&[w.route("t", "")], &recording);
    let config = w.path("gatehouse.yaml");
    // An auditor's machine: the same storage and index, but not the
    // gateway's spool, so it can only read uploaded segments.
    let viewer = w.path("viewer.yaml");
    std::fs::write(
        &viewer,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("spool_dir: spool", "spool_dir: viewer-spool"),
    )
    .unwrap();

    let tmux = Tmux::new(&w.path("tmux.sock"));
    let ssh = format!(
        "{} {} -tt {LOGIN}@t@127.0.0.1",
        require_program("ssh").display(),
        w.ssh_args(&w.client_key, gw.port).join(" ")
    );
    tmux.start("s", 100, 30, &format!("{ssh}; sleep 60"));
    tmux.keys("s", &["-l", "echo before-$((40 + 1))-follow"]);
    tmux.keys("s", &["Enter"]);
    tmux.wait_for("s", "before-41-follow", Duration::from_secs(30));
    let id = live_session(&config);

    // Followed from uploaded segments (viewer.yaml) and from the spool.
    let start = |pane: &str, config: &Path| {
        let command = format!(
            "{} replay --config {} {id} --follow --as auditor@example.com 2> {}; sleep 60",
            bin().display(),
            config.display(),
            w.path(&format!("{pane}.audit")).display(),
        );
        tmux.start(pane, 150, 40, &command);
    };
    start("segments", &viewer);
    start("spool", &config);
    for pane in ["segments", "spool"] {
        let screen = tmux.wait_for(pane, "● LIVE", Duration::from_secs(30));
        assert!(
            screen.contains("verified when the session is sealed"),
            "{screen}"
        );
        tmux.wait_for(pane, "before-41-follow", Duration::from_secs(30));
    }

    // Typed now: on both players within two segment intervals.
    tmux.keys("s", &["-l", "echo typed-$((6 * 7))-live"]);
    tmux.keys("s", &["Enter"]);
    let typed = Instant::now();
    tmux.wait_for("s", "typed-42-live", Duration::from_secs(10));
    for pane in ["spool", "segments"] {
        tmux.wait_for(pane, "typed-42-live", 2 * SEGMENT_INTERVAL);
    }
    let seen = typed.elapsed();
    eprintln!("typed output on both players after {seen:?}");
    assert!(seen <= 2 * SEGMENT_INTERVAL, "seen after {seen:?}");

    // Into the past, then back to live with L.
    tmux.keys("segments", &["0"]);
    let screen = tmux.wait_for("segments", "L goes back to live", Duration::from_secs(10));
    assert!(!screen.contains("typed-42-live"), "{screen}");
    tmux.keys("segments", &["L"]);
    let screen = tmux.wait_for("segments", "● LIVE", Duration::from_secs(10));
    assert!(screen.contains("typed-42-live"), "{screen}");

    // The session ends: both players say so, and why, and verify it.
    tmux.keys("s", &["-l", "exit 3"]);
    tmux.keys("s", &["Enter"]);
    for pane in ["segments", "spool"] {
        let screen = tmux.wait_for(pane, "session ended", Duration::from_secs(30));
        assert!(
            screen.contains("the command exited with status 3"),
            "{screen}"
        );
        let screen = tmux.wait_for(pane, "✔ verified", Duration::from_secs(30));
        assert!(screen.contains("typed-42-live"), "{screen}");
        tmux.keys(pane, &["q"]);
    }
    for pane in ["segments", "spool"] {
        let path = w.path(&format!("{pane}.audit"));
        let deadline = Instant::now() + Duration::from_secs(20);
        let audit = loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.contains("recording.viewed") {
                break text;
            }
            assert!(Instant::now() < deadline, "{pane}: no audit event: {text}");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(audit.contains("mode=\"follow\""), "{audit}");
        assert!(
            audit.contains("viewer_email=auditor@example.com"),
            "{audit}"
        );
        assert!(audit.contains(&format!("session_id={id}")), "{audit}");
    }
}

/// A real vi on the target: the file's text is drawn only on vi's
/// alternate screen (the command line spells it differently), and the
/// player's search finds it there.
#[test]
fn search_finds_what_only_a_real_vi_showed() {
    require_program("vi");
    let w = World::new();
    let script = "f=$(mktemp); printf 'seen-only%s-in-vi\\n' -there > $f; \
                  vi -u NONE -c 'redraw' -c 'sleep 1' -c 'q!' $f; rm -f $f; echo all-done";
    let id = record_script(&w, script);
    let config = w.path("gatehouse.yaml");
    let (code, text, err) = gatehouse(&["replay", &id, "--format", "txt"], &config);
    assert_eq!(code, 0, "{err}");
    let line = text
        .lines()
        .find(|l| l.contains("seen-only-there-in-vi"))
        .unwrap_or_else(|| panic!("vi's text is not in the index:\n{text}"));
    assert!(line.contains(" | "), "not marked full-screen: {line}");

    let tmux = Tmux::new(&w.path("tmux.sock"));
    let command = format!(
        "{} replay --config {} {id} --paused; sleep 60",
        bin().display(),
        config.display()
    );
    tmux.start("p", 140, 40, &command);
    tmux.wait_for("p", "? help", Duration::from_secs(30));
    tmux.keys("p", &["/"]);
    tmux.keys("p", &["-l", "only-there-in"]);
    tmux.keys("p", &["Enter"]);
    let screen = tmux.wait_for("p", "match 1 of 1", Duration::from_secs(10));
    assert!(screen.contains("full-screen"), "{screen}");
    assert!(screen.contains("seen-only-there-in-vi"), "{screen}");
    assert!(!screen.contains("all-done"), "{screen}");
    tmux.keys("p", &["q"]);
}
