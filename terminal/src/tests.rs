#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use recorder::asciicast::{Cast, Event, Header, Term, TimedEvent};

use super::*;

fn cast(cols: u16, rows: u16, events: &[(u64, Event)]) -> Cast {
    let mut prev = 0;
    Cast {
        header: Header {
            version: 3,
            term: Term {
                cols,
                rows,
                term_type: None,
            },
            timestamp: None,
            command: None,
            title: None,
            gatehouse: None,
        },
        events: events
            .iter()
            .map(|(t, e)| {
                let ev = TimedEvent {
                    interval_us: t - prev,
                    time_us: *t,
                    event: e.clone(),
                };
                prev = *t;
                ev
            })
            .collect(),
    }
}

fn out(s: &str) -> Event {
    Event::Output(s.to_owned())
}

/// A session with colours, cursor movement, scrolling, a resize, a
/// full-screen program on the alternate screen and a marker.
fn session() -> Cast {
    let mut events = Vec::new();
    let mut t = 0;
    let mut push = |e: Event, events: &mut Vec<(u64, Event)>| {
        t += 150_000;
        events.push((t, e));
    };
    push(out("$ "), &mut events);
    for c in "ls -la".chars() {
        push(out(&c.to_string()), &mut events);
    }
    push(out("\r\n"), &mut events);
    for i in 0..40 {
        push(
            out(&format!(
                "\x1b[3{}mfile-{i:03}\x1b[0m  {}\r\n",
                i % 8,
                "x".repeat(i % 30)
            )),
            &mut events,
        );
    }
    push(Event::Marker("after ls".to_owned()), &mut events);
    push(out("$ vim notes\r\n"), &mut events);
    push(out("\x1b[?1049h\x1b[H\x1b[2J"), &mut events);
    push(
        out("\x1b[5;3Honly-in-the-editor \x1b[1mbold\x1b[0m"),
        &mut events,
    );
    push(out("\x1b[10;1H~\r\n~\x1b[H"), &mut events);
    push(Event::Resize { cols: 60, rows: 20 }, &mut events);
    push(out("\x1b[2;2Hafter resize"), &mut events);
    push(out("\x1b[?1049l"), &mut events);
    push(out("$ echo done\r\ndone\r\n$ "), &mut events);
    push(Event::Input("exit\r".to_owned()), &mut events);
    push(Event::Exit(0), &mut events);
    push(
        Event::Marker("gatehouse.ended exit 0".to_owned()),
        &mut events,
    );
    cast(80, 24, &events)
}

fn straight(timeline: &Timeline, steps: usize) -> Screen {
    let mut screen = timeline.start().unwrap();
    timeline.apply(&mut screen, 0, steps);
    screen
}

#[test]
fn every_seek_equals_playing_straight_through() {
    let timeline = Timeline::new(&session()).unwrap();
    // Keyframes every 3 output events' worth of bytes, so seeks start
    // from keyframes inside the run, the alternate screen included.
    let index = Index::build(
        &timeline,
        Policy {
            every_us: 400_000,
            every_bytes: 1 << 20,
        },
    )
    .unwrap();
    assert!(
        index.keyframes.len() > 10,
        "{} keyframes",
        index.keyframes.len()
    );
    for n in 0..=timeline.len() {
        let sought = timeline.screen_at(&index, n).unwrap();
        let played = straight(&timeline, n);
        assert_eq!(sought.lines(), played.lines(), "screen after {n} steps");
        assert_eq!(sought.cursor(), played.cursor(), "cursor after {n} steps");
        assert_eq!(sought.is_alternate(), played.is_alternate());
        assert_eq!(sought.size(), played.size());
        for row in 0..usize::from(played.size().1) {
            assert_eq!(
                sought.row(row),
                played.row(row),
                "row {row} after {n} steps"
            );
        }
    }
}

#[test]
fn stepping_back_is_the_screen_one_output_earlier() {
    let timeline = Timeline::new(&session()).unwrap();
    let index = Index::build(&timeline, Policy::default()).unwrap();
    let outputs: Vec<usize> = timeline.output_steps().collect();
    let (a, b) = (outputs[20], outputs[21]);
    let at_b = timeline.screen_at(&index, b).unwrap();
    let back = timeline.screen_at(&index, a).unwrap();
    assert_eq!(back.lines(), straight(&timeline, a).lines());
    assert_ne!(back.lines(), at_b.lines(), "the step changed the screen");
}

/// vt100 is an independent emulator: on plain output, scrolling and
/// cursor addressing, the screens agree at every keyframe-served seek.
#[test]
fn seeks_agree_with_vt100() {
    let timeline = Timeline::new(&session()).unwrap();
    let index = Index::build(
        &timeline,
        Policy {
            every_us: 1_000_000,
            every_bytes: 1 << 20,
        },
    )
    .unwrap();
    let nz = |n: u16| std::num::NonZeroU16::new(n).unwrap();
    let mut oracle = vt100::Parser::new(nz(24), nz(80), 0);
    for (i, step) in timeline.steps(0, timeline.len()).iter().enumerate() {
        match &step.change {
            Change::Output(text) => oracle.process(text.as_bytes()),
            Change::Resize { cols, rows } => oracle.set_size(nz(*rows), nz(*cols)),
            _ => {}
        }
        let ours = timeline.screen_at(&index, i + 1).unwrap();
        let theirs: Vec<String> = oracle
            .screen()
            .rows(0, ours.size().0)
            .map(|r| r.trim_end().to_owned())
            .collect();
        assert_eq!(ours.lines(), theirs, "after step {}", i + 1);
    }
}

#[test]
fn search_finds_the_alternate_screen_and_what_scrolled_away() {
    let timeline = Timeline::new(&session()).unwrap();
    let index = Index::build(&timeline, Policy::default()).unwrap();

    let editor = Query::plain("only-in-the-editor").unwrap().all(&index);
    assert_eq!(editor.len(), 1, "{editor:?}");
    assert!(editor[0].alternate);
    let shown = timeline.screen_at(&index, editor[0].steps).unwrap();
    assert!(
        shown.text().contains("only-in-the-editor"),
        "{}",
        shown.text()
    );
    let end = timeline.screen_at(&index, timeline.len()).unwrap();
    assert!(
        !end.text().contains("only-in-the-editor"),
        "gone at the end"
    );

    // file-000 scrolled off the 24-row screen long before the end, and is
    // recorded once, not once per row it passed through.
    let first = Query::plain("file-000").unwrap().all(&index);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(!first[0].alternate);
    assert!(!end.text().contains("file-000"));
    let shown = timeline.screen_at(&index, first[0].steps).unwrap();
    assert!(shown.text().contains("file-000"));

    // Typed one character at a time: one line, at its full text.
    let typed = Query::plain("$ ls").unwrap().all(&index);
    assert_eq!(typed.len(), 1, "{typed:?}");
    assert_eq!(index.text.get(typed[0].line).unwrap().text, "$ ls -la");

    // Smart case, regex, and hits in order with wrap-around.
    assert_eq!(Query::plain("FILE-000").unwrap().all(&index).len(), 0);
    let files = Query::regex(r"file-0[0-3]9").unwrap().all(&index);
    assert_eq!(
        files.len(),
        4,
        "{:?}",
        files
            .iter()
            .map(|h| (index.text.get(h.line).unwrap().text, h.steps, h.row))
            .collect::<Vec<_>>()
    );
    assert!(files.windows(2).all(|w| w[0].steps <= w[1].steps));
    let after = search::next(&files, files[1].steps, true).unwrap();
    assert_eq!(after, &files[2]);
    let wrapped = search::next(&files, files[3].steps, true).unwrap();
    assert_eq!(wrapped, &files[0]);
    let before = search::next(&files, files[0].steps, false).unwrap();
    assert_eq!(before, &files[3]);
    assert!(Query::regex("(").is_err());
    assert!(Query::plain("").is_err());
}

#[test]
fn markers_come_in_order_with_their_times() {
    let timeline = Timeline::new(&session()).unwrap();
    let markers: Vec<_> = timeline.markers().map(|(_, _, l)| l.to_owned()).collect();
    assert_eq!(markers, ["after ls", "gatehouse.ended exit 0"]);
    let times: Vec<u64> = timeline.markers().map(|(_, t, _)| t).collect();
    assert!(times[0] < times[1]);
    let (steps, time, _) = timeline.markers().next().unwrap();
    assert_eq!(timeline.time_of(steps), time);
    assert_eq!(timeline.steps_by(time), steps);
}

#[test]
fn a_sidecar_round_trips_and_a_bad_one_is_rebuilt() {
    let recording = b"the recording's bytes".to_vec();
    let timeline = Timeline::new(&session()).unwrap();
    let index = Index::build(&timeline, Policy::default()).unwrap();
    let sidecar = index.to_sidecar(&recording_hash(&recording)).unwrap();
    assert_eq!(Index::from_sidecar(&sidecar, &recording).unwrap(), index);
    let (loaded, how) =
        Index::load_or_build(Some(&sidecar), &recording_hash(&recording), &timeline).unwrap();
    assert_eq!((loaded, how), (index.clone(), Loaded::FromSidecar));

    // Another recording (a segment changed): detected by the hash.
    let other = b"the recording's bytez".to_vec();
    let err = Index::from_sidecar(&sidecar, &other).unwrap_err();
    assert!(err.to_string().contains("another version"), "{err}");
    let (rebuilt, how) =
        Index::load_or_build(Some(&sidecar), &recording_hash(&other), &timeline).unwrap();
    assert!(matches!(how, Loaded::Rebuilt(_)));
    assert_eq!(rebuilt, index, "rebuilt from the recording alone");

    // Corrupt bytes: detected, never trusted.
    let mut corrupt = sidecar.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0x55;
    assert!(Index::from_sidecar(&corrupt, &recording).is_err());
    assert!(Index::from_sidecar(b"not a sidecar", &recording).is_err());
    assert!(Index::from_sidecar(&[], &recording).is_err());
}

#[test]
fn missing_and_hostile_sizes_are_defaulted_or_clamped() {
    assert_eq!(Timeline::new(&cast(0, 0, &[])).unwrap().size(), (80, 24));
    assert_eq!(
        Timeline::new(&cast(65_535, 65_535, &[])).unwrap().size(),
        (MAX_SIDE, MAX_SIDE)
    );
    assert!(matches!(Screen::new(0, 24, 0), Err(Error::Size { .. })));
    let huge = cast(
        80,
        24,
        &[(
            1,
            Event::Resize {
                cols: 65_535,
                rows: 0,
            },
        )],
    );
    let timeline = Timeline::new(&huge).unwrap();
    let index = Index::build(&timeline, Policy::default()).unwrap();
    let screen = timeline.screen_at(&index, 1).unwrap();
    assert_eq!(screen.size(), (MAX_SIDE, 1));
}

#[test]
fn a_snapshot_restores_a_half_written_escape_sequence() {
    let mut screen = Screen::new(20, 4, 0).unwrap();
    screen.feed("abc\x1b[3");
    let restored = Screen::restore(&screen.snapshot(), 0).unwrap();
    let (mut a, mut b) = (screen, restored);
    a.feed("1mred");
    b.feed("1mred");
    assert_eq!(a.lines(), b.lines());
    assert_eq!(a.row(0), b.row(0));
    assert_eq!(a.row(0)[3].style.fg, Some(Color::Indexed(1)));
}

/// Found by the replay test: `row-1` scrolled up and `row-11` took its
/// row, which looked like typing (the new text starts with the old) and
/// replaced `row-1` in the text. A scroll changes many rows at once.
#[test]
fn a_line_that_scrolls_into_a_row_is_not_typing() {
    // One chunk scrolls ten lines: the top row goes from row-1 to row-11.
    let burst: String = (2..=12).map(|i| format!("row-{i}\r\n")).collect();
    let events = [(1000, out("row-1\r\n")), (2000, out(&burst))];
    let timeline = Timeline::new(&cast(20, 3, &events)).unwrap();
    let index = Index::build(&timeline, Policy::default()).unwrap();
    let lines = index.text.to_vec();
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    for want in ["row-1", "row-11", "row-12"] {
        assert_eq!(
            texts.iter().filter(|t| **t == want).count(),
            1,
            "{want} in {texts:?}"
        );
    }
}

/// A live recording grows: an index built step by step, used half-way,
/// ends up equal to one built at once, and seeks into the part already
/// indexed are right while the rest is still coming.
#[test]
fn an_index_built_as_the_recording_grows_equals_one_built_at_once() {
    let whole = Timeline::new(&session()).unwrap();
    let policy = Policy {
        every_us: 400_000,
        every_bytes: 1 << 20,
    };
    let at_once = Index::build(&whole, policy).unwrap();

    let mut cast = session();
    let rest = cast.events.split_off(cast.events.len() / 2);
    let mut live = Timeline::new(&cast).unwrap();
    let mut builder = Builder::new(live.size(), policy).unwrap();
    for step in live.steps(0, live.len()) {
        builder.push(&step);
    }
    let half = live.len();
    for n in [0, half / 2, half] {
        let sought = live.screen_at(builder.index(), n).unwrap();
        assert_eq!(
            sought.lines(),
            straight(&whole, n).lines(),
            "step {n} of a live recording"
        );
    }
    let more = Timeline::new(&Cast {
        header: cast.header.clone(),
        events: rest,
    })
    .unwrap();
    for step in more.steps(0, more.len()) {
        builder.push(&step);
        live.push(step);
    }
    assert_eq!(live.steps(0, live.len()), whole.steps(0, whole.len()));
    assert_eq!(builder.steps(), whole.len());
    assert_eq!(builder.finish(), at_once);
}

/// Found by the replay test: sixty lines in one read scroll most of
/// themselves away within the step, and were never on screen between
/// steps. They are searchable all the same, in order.
#[test]
fn lines_that_scroll_away_within_one_output_event_are_in_the_text() {
    let burst: String = (1..=60).map(|i| format!("line-{i:02}\r\n")).collect();
    let events = [(1000, out("top\r\n")), (2000, out(&burst))];
    let timeline = Timeline::new(&cast(20, 5, &events)).unwrap();
    let index = Index::build(&timeline, Policy::default()).unwrap();
    let lines = index.text.to_vec();
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    let want: Vec<String> = std::iter::once("top".to_owned())
        .chain((1..=60).map(|i| format!("line-{i:02}")))
        .collect();
    assert_eq!(texts, want);
    let hits = Query::plain("line-07").unwrap().all(&index);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].time_us, 2000);
}

/// Steps and text are kept compressed in blocks: a recording several
/// blocks long reads back exactly, seeks into every block match a screen
/// fed the original events, and a search finds a line in a middle block.
#[test]
fn a_recording_many_blocks_long_reads_back_exactly() {
    let mut events = Vec::new();
    for i in 0..3000u64 {
        let line = format!("line {i:05} {}\r\n", "x".repeat(79));
        events.push((i * 10_000 + 1, out(&line)));
        if i % 500 == 0 {
            events.push((i * 10_000 + 2, Event::Marker(format!("m{i}"))));
        }
        if i == 1700 {
            events.push((
                i * 10_000 + 3,
                Event::Resize {
                    cols: 100,
                    rows: 30,
                },
            ));
        }
    }
    let original = cast(120, 20, &events);
    let want: Vec<Step> = original
        .events
        .iter()
        .cloned()
        .filter_map(Step::from_event)
        .collect();
    let timeline = Timeline::new(&original).unwrap();
    assert!(
        timeline.held_bytes() < 200_000,
        "{} bytes held",
        timeline.held_bytes()
    );
    assert_eq!(timeline.steps(0, timeline.len()), want);
    assert_eq!(timeline.steps(1234, 1240), want[1234..1240]);
    assert_eq!(timeline.markers().count(), 6);

    let index = Index::build(&timeline, Policy::default()).unwrap();
    for n in [0, 1, 999, 1000, 1701, 1706, 2500, want.len()] {
        let mut fed = timeline.start().unwrap();
        for step in &want[..n] {
            crate::timeline::apply(&mut fed, &step.change);
        }
        let sought = timeline.screen_at(&index, n).unwrap();
        assert_eq!(sought.lines(), fed.lines(), "after {n} steps");
        assert_eq!(sought.size(), fed.size(), "after {n} steps");
    }
    assert_eq!(index.text.len(), 3000);
    let hits = Query::plain("line 01500 ").unwrap().all(&index);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].time_us, 15_000_001);
    let back = Index::from_sidecar_hashed(&index.to_sidecar("h").unwrap(), "h").unwrap();
    assert_eq!(back, index);
    // Walking the lines by value, block by block, gives them all in order.
    let walked: Vec<_> = index.text.clone().into_iter().collect();
    assert_eq!(walked, index.text.to_vec());
}
