//! Full-text search end to end: a session recorded through the real
//! gateway with real `ssh` prints a unique word and runs a real vi, whose
//! file is drawn only on its alternate screen; `gatehouse recordings
//! reindex --text` indexes it and `gatehouse recordings search` finds both,
//! at their moments, without the text reaching any log.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{LOGIN, World, bin, run};
use sshd_test::require_program;

fn gatehouse(args: &[&str], config: &Path) -> (i32, String, String) {
    let mut c = Command::new(bin());
    c.args(args).arg("--config").arg(config);
    run(c, Duration::from_secs(60))
}

/// The word is built by the shell, and vi's text by printf, so neither
/// appears on screen spelt out before the program prints it.
const SCRIPT: &str = "echo zq-$((6 * 7))-unique-word; sleep 1; f=$(mktemp); \
    printf 'seen-only%s-in-vi\\n' -there > $f; \
    vi -u NONE -c 'redraw' -c 'sleep 1' -c 'q!' $f; rm -f $f; echo all-done";

#[test]
fn reindex_text_then_search_finds_a_word_and_what_only_vi_showed() {
    require_program("vi");
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    let mut ssh = Command::new(require_program("ssh"));
    ssh.args(w.ssh_args(&w.client_key, gw.port))
        .arg("-tt")
        .arg(format!("{LOGIN}@t@127.0.0.1"))
        .arg(SCRIPT)
        .env("TERM", "xterm-256color");
    let (code, out, err) = run(ssh, Duration::from_secs(60));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("zq-42-unique-word"), "{out}");
    let config = w.path("gatehouse.yaml");
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let (code, out, err) = gatehouse(&["sessions", "list", "--json"], &config);
        assert_eq!(code, 0, "{err}");
        let sealed = out
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|s| s["status"] == "sealed")
            .and_then(|s| s["session_id"].as_str().map(str::to_owned));
        if let Some(id) = sealed {
            break id;
        }
        assert!(Instant::now() < deadline, "never sealed: {out}");
        std::thread::sleep(Duration::from_millis(200));
    };

    let (code, out, err) = gatehouse(&["recordings", "reindex", "--text"], &config);
    assert_eq!(code, 0, "{out}{err}");
    let summary = out
        .lines()
        .find(|l| l.starts_with("indexed "))
        .unwrap_or_else(|| panic!("no summary: {out}"));
    assert!(summary.starts_with("indexed 1 recording, "), "{summary}");
    assert!(
        summary.contains(" lines, ") && summary.ends_with(" s"),
        "{summary}"
    );

    // The word, found by a part of it, in any case: session, channel,
    // time, the line.
    let (code, out, err) = gatehouse(&["recordings", "search", "UNIQUE-WORD"], &config);
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.contains("zq-42-unique-word"))
        .unwrap_or_else(|| panic!("the word is not found: {out}"));
    let (code, show, err) = gatehouse(&["sessions", "show", &id, "--json"], &config);
    assert_eq!(code, 0, "{err}");
    let show: serde_json::Value = serde_json::from_str(&show).unwrap();
    let channel = show["channels"][0]["channel"].as_str().unwrap().to_owned();
    assert!(line.starts_with(&format!("{id}  {channel}  ")), "{line}");
    assert!(line.contains("0:00"), "printed at once: {line}");
    assert!(!line.contains(" | "), "not full-screen: {line}");

    // What only vi drew, marked full-screen, about a second in.
    let (code, out, err) = gatehouse(
        &["recordings", "search", "only-there-in-vi", "--json"],
        &config,
    );
    assert_eq!(code, 0, "{err}");
    let hits: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!hits.is_empty(), "vi's text is not found: {out}");
    assert!(
        hits.iter()
            .all(|h| h["alternate"] == true && h["session_id"] == id.as_str()),
        "{out}"
    );
    assert!(
        hits[0]["time_us"].as_u64().unwrap() >= 900_000,
        "after the first second: {out}"
    );
    let (code, out, _) = gatehouse(&["recordings", "search", "only-there-in-vi"], &config);
    assert_eq!(code, 0);
    assert!(out.contains(" | "), "marked full-screen: {out}");

    // Nothing else matches, and typed query syntax is text.
    let (code, out, err) = gatehouse(&["recordings", "search", "\"rm -rf\" OR *"], &config);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("no lines match"), "{err}");

    // The recorded text reached no log: not the gateway's, not the
    // commands'.
    let (_, _, err) = gatehouse(&["recordings", "reindex", "--text"], &config);
    assert!(!err.contains("zq-42"), "{err}");
    assert!(
        !gw.log().contains("zq-42"),
        "the gateway logged terminal text"
    );
}
