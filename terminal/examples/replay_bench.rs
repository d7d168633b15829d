//! Benchmark for the player's terminal model (bench/README.md, issue 12).
//!
//!     cargo run --release -p terminal --example replay_bench -- DIR
//!
//! Writes a synthetic one-hour recording into DIR (bursts of `ls -laR`,
//! `top` refreshing on the alternate screen, idle periods; more than
//! 50 MiB of output) and measures, against the targets:
//! - open with a keyframe sidecar (read, parse, check and load): <= 1 s;
//! - building the sidecar;
//! - 100 seeks to random times: p50 <= 20 ms, p99 <= 50 ms;
//! - a search across the whole recording: <= 500 ms;
//! - peak memory of a process that opens it and plays: <= 64 MiB;
//! - and, for comparison, `asciinema cat` of the same recording (as v2,
//!   which Debian's asciinema 2.2 reads), which processes every byte.
//!
//! Prints a Markdown report on stdout.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use recorder::asciicast::{self, Header, Term};
use terminal::{Index, Policy, Query, Timeline};

const HOUR_US: u64 = 3_600_000_000;

/// A small deterministic generator, so every run writes the same bytes.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn generate(path: &Path) -> (u64, u64) {
    let header = Header {
        version: 3,
        term: Term {
            cols: 120,
            rows: 40,
            term_type: Some("xterm-256color".to_owned()),
        },
        timestamp: Some(1_796_000_000),
        command: None,
        title: Some("bench@replay".to_owned()),
        gatehouse: None,
    };
    let mut out = Vec::with_capacity(64 << 20);
    asciicast::encode_header(&header, &mut out);
    let mut rng = Lcg(7);
    let (mut t, mut last) = (0u64, 0u64);
    let mut output_bytes = 0u64;
    let mut burst = 0u64;
    let emit = |out: &mut Vec<u8>, t: u64, last: &mut u64, code: &str, data: &str| {
        asciicast::encode_event(t - *last, code, data, out);
        *last = t;
    };
    while t < HOUR_US {
        // A prompt and `ls -laR`, 4,000 lines in 4 KiB reads 1 ms apart.
        emit(&mut out, t, &mut last, "o", "user@host:~/src$ ");
        t += 400_000;
        emit(&mut out, t, &mut last, "o", "ls -laR\r\n");
        let mut chunk = String::new();
        for i in 0..4_000 {
            chunk.push_str(&format!(
                "-rw-r--r-- 1 user group {:>8} Mar  {} 09:{:02} \x1b[01;34mfile-{burst:03}-{i:05}.txt\x1b[0m\r\n",
                rng.below(10_000_000),
                1 + rng.below(28),
                rng.below(60)
            ));
            if chunk.len() >= 4096 {
                t += 1_000;
                output_bytes += chunk.len() as u64;
                emit(&mut out, t, &mut last, "o", &chunk);
                chunk.clear();
            }
        }
        output_bytes += chunk.len() as u64;
        emit(&mut out, t, &mut last, "o", &chunk);
        if burst.is_multiple_of(10) {
            emit(&mut out, t, &mut last, "m", &format!("burst {burst}"));
        }
        // `top` on the alternate screen: 10 refreshes, half a second apart.
        t += 2_000_000;
        emit(&mut out, t, &mut last, "o", "\x1b[?1049h\x1b[H\x1b[2J");
        for r in 0..10 {
            let mut screen = format!(
                "\x1b[Htop - 09:{r:02}:00 up 3 days,  load average: 0.{}, 0.{}, 0.{}\x1b[K\r\n\
                 Tasks: {} total, \x1b[1m{}\x1b[0m running\x1b[K\r\n\x1b[7m  PID USER      %CPU %MEM COMMAND\x1b[K\x1b[0m\r\n",
                rng.below(99),
                rng.below(99),
                rng.below(99),
                200 + rng.below(50),
                1 + rng.below(5)
            );
            for p in 0..35 {
                screen.push_str(&format!(
                    "{:>5} user      {:>4}.{} {:>4}.{} proc-{burst}-{p}\x1b[K\r\n",
                    1000 + p,
                    rng.below(100),
                    rng.below(10),
                    rng.below(20),
                    rng.below(10)
                ));
            }
            output_bytes += screen.len() as u64;
            emit(&mut out, t, &mut last, "o", &screen);
            t += 500_000;
        }
        emit(&mut out, t, &mut last, "o", "\x1b[?1049l");
        // Idle: 5 to 20 s.
        t += 5_000_000 + rng.below(15_000_000);
        burst += 1;
    }
    emit(&mut out, t, &mut last, "x", "0");
    std::fs::write(path, &out).unwrap();
    (out.len() as u64, output_bytes)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Opens the sealed (zstd) recording as `gatehouse replay` does: read as
/// a stream through its decompressor and hashed on the way, steps kept
/// compressed, then the sidecar checked against the hash and loaded.
fn open(sealed_path: &Path, sidecar_path: &Path) -> (Timeline, Index, terminal::Loaded) {
    let sealed = std::fs::read(sealed_path).unwrap();
    let stream = recorder::sealed_reader(&sealed, "hour.cast.zst").unwrap();
    let (header, mut reader) =
        asciicast::Reader::new(std::io::BufReader::new(terminal::HashReader::new(stream))).unwrap();
    let (timeline, damage) = Timeline::read(&header, &mut reader);
    assert!(damage.is_none(), "{damage:?}");
    let hash = reader.into_inner().into_inner().hash();
    drop(sealed);
    let sidecar = std::fs::read(sidecar_path).unwrap();
    let (index, loaded) = Index::load_or_build(Some(&sidecar), &hash, &timeline).unwrap();
    (timeline, index, loaded)
}

/// Opens, then plays ten minutes of it from 20:00, step by step, and
/// searches it. Prints the peak RSS in KiB.
fn play(sealed_path: &Path, sidecar_path: &Path) {
    let (timeline, index, _) = open(sealed_path, sidecar_path);
    let from = timeline.steps_by(20 * 60 * 1_000_000);
    let to = timeline.steps_by(30 * 60 * 1_000_000);
    let mut screen = timeline.screen_at(&index, from).unwrap();
    for n in from..to {
        timeline.apply(&mut screen, n, n + 1);
    }
    assert!(!screen.text().is_empty());
    assert_eq!(
        Query::plain("file-150-03999.txt")
            .unwrap()
            .all(&index)
            .len(),
        1
    );
    println!("{}", peak_rss_kib());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("play") {
        play(Path::new(&args[2]), Path::new(&args[3]));
        return;
    }
    let dir = PathBuf::from(args.get(1).expect("usage: replay_bench DIR"));
    std::fs::create_dir_all(&dir).unwrap();
    let cast_path = dir.join("hour.cast");
    let started = Instant::now();
    let (cast_bytes, output_bytes) = generate(&cast_path);
    let generated = started.elapsed();

    // The sealed object, as the recorder stores it (zstd level 3).
    let sealed_path = dir.join("hour.cast.zst");
    let bytes = std::fs::read(&cast_path).unwrap();
    std::fs::write(&sealed_path, zstd::encode_all(bytes.as_slice(), 3).unwrap()).unwrap();

    // Build the sidecar, as the first open does.
    let t = Instant::now();
    let cast = asciicast::read(&bytes).unwrap();
    let v2 = asciicast::to_v2(&cast);
    let timeline = Timeline::from_cast(cast).unwrap();
    let parse = t.elapsed();
    let t = Instant::now();
    let index = Index::build(&timeline, Policy::default()).unwrap();
    let build = t.elapsed();
    let t = Instant::now();
    let sidecar = index.to_sidecar(&terminal::recording_hash(&bytes)).unwrap();
    let encode = t.elapsed();
    let sidecar_path = dir.join("hour.keyframes.zst");
    std::fs::write(&sidecar_path, &sidecar).unwrap();
    drop((timeline, index, bytes));

    // Open with the sidecar.
    let t = Instant::now();
    let (timeline, index, loaded) = open(&sealed_path, &sidecar_path);
    let open = t.elapsed();
    assert_eq!(loaded, terminal::Loaded::FromSidecar);

    // 100 seeks to random times.
    let mut rng = Lcg(11);
    let duration = timeline.duration_us();
    let mut seeks = Vec::new();
    for _ in 0..100 {
        let at = rng.below(duration);
        let t = Instant::now();
        let screen = timeline.screen_at(&index, timeline.steps_by(at)).unwrap();
        seeks.push(t.elapsed());
        std::hint::black_box(screen.size());
    }
    seeks.sort();

    // Search the whole recording: one line that appeared once, and a regex.
    let t = Instant::now();
    let hits = Query::plain("file-150-03999.txt").unwrap().all(&index);
    let search = t.elapsed();
    assert_eq!(hits.len(), 1, "{hits:?}");
    let t = Instant::now();
    let regex_hits = Query::regex(r"proc-1[0-9]{2}-3[0-4]").unwrap().all(&index);
    let search_regex = t.elapsed();

    // Peak memory of a process that opens and plays.
    let me = std::env::current_exe().unwrap();
    let out = std::process::Command::new(me)
        .arg("play")
        .arg(&sealed_path)
        .arg(&sidecar_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let play_kib: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();

    // asciinema cat of the same recording.
    let v2_path = dir.join("hour.v2.cast");
    std::fs::write(&v2_path, &v2).unwrap();
    let t = Instant::now();
    // asciinema cat reads keys from /dev/tty: script(1) gives it one.
    let cat = std::process::Command::new("script")
        .arg("-qec")
        .arg(format!("asciinema cat {} > /dev/null", v2_path.display()))
        .arg("/dev/null")
        .stdout(std::process::Stdio::null())
        .status();
    let asciinema = t.elapsed();
    let asciinema_ok = cat.is_ok_and(|s| s.success());

    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    println!("# Replay: the terminal model (terminal/examples/replay_bench.rs)\n");
    println!(
        "A synthetic {:.0}-minute recording: {:.1} MiB of cast, {:.1} MiB of output, {} steps; \
         {} keyframes, {} lines of text; sidecar {:.1} MiB. Generated in {}. In memory, the \
         steps take {:.1} MiB and the text {:.1} MiB (compressed blocks).\n",
        duration as f64 / 60e6,
        mib(cast_bytes),
        mib(output_bytes),
        timeline.len(),
        index.keyframes.len(),
        index.text.len(),
        mib(sidecar.len() as u64),
        ms(generated),
        mib(timeline.held_bytes() as u64),
        mib(index.text.held_bytes() as u64),
    );
    println!("| measure | result | target | |");
    println!("|---|---:|---:|---|");
    println!(
        "| open with the sidecar (read, parse, hash check, load) | {} | ≤ 1 s | {} |",
        ms(open),
        met(open <= Duration::from_secs(1))
    );
    println!("| first open: parse | {} | | |", ms(parse));
    println!("| first open: build the index | {} | | |", ms(build));
    println!("| first open: encode the sidecar | {} | | |", ms(encode));
    println!(
        "| seek, p50 of 100 | {} | ≤ 20 ms | {} |",
        ms(pct(&seeks, 0.5)),
        met(pct(&seeks, 0.5) <= Duration::from_millis(20))
    );
    println!(
        "| seek, p99 of 100 | {} | ≤ 50 ms | {} |",
        ms(pct(&seeks, 0.99)),
        met(pct(&seeks, 0.99) <= Duration::from_millis(50))
    );
    println!(
        "| search, plain (1 hit) | {} | ≤ 500 ms | {} |",
        ms(search),
        met(search <= Duration::from_millis(500))
    );
    println!(
        "| search, regex ({} hits) | {} | ≤ 500 ms | {} |",
        regex_hits.len(),
        ms(search_regex),
        met(search_regex <= Duration::from_millis(500))
    );
    println!(
        "| peak RSS, open and play 10 minutes | {:.1} MiB | ≤ 64 MiB | {} |",
        play_kib as f64 / 1024.0,
        met(play_kib <= 64 * 1024)
    );
    if asciinema_ok {
        println!(
            "| `asciinema cat` (2.2, v2 copy), for comparison | {} | | open ÷ cat = {:.2}× |",
            ms(asciinema),
            open.as_secs_f64() / asciinema.as_secs_f64()
        );
    } else {
        println!("| `asciinema cat` | not run (asciinema missing) | | |");
    }
}
