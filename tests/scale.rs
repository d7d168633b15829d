//! Faults and soak at scale (issue 15). These are bench scenarios, not CI
//! tests: they are `#[ignore]`d, take minutes (the soak half an hour) and
//! run from `bench/scale.sh`, which passes the sizes in the environment
//! and copies the `SCALE {json}` line each prints into its report. They
//! use the same real components as the end-to-end tests: OpenSSH `ssh`
//! and `sshd`, the `gatehouse` binary and a SeaweedFS S3 server, and they
//! assert their targets, so a scenario that misses fails.
//!
//! - `kill_9_with_live_recorded_sessions`: `kill -9` of the gateway with
//!   N (50) sessions printing a timestamped line every 100 ms; after a
//!   restart every recording must be sealed `interrupted`, each missing at
//!   most 1 s of what its client saw.
//! - `s3_outage_under_best_effort_sessions`: S3 stopped for T (120) s under
//!   N (20) sessions; every recording must hold exactly what its client
//!   printed (0 bytes lost).
//! - `soak`: N (500) interactive sessions with keystroke-rate output for M
//!   (30) minutes; the gateway's RSS is sampled every 30 s (slope reported),
//!   and its file descriptors and threads must be back to where they were
//!   once the sessions are gone.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::recording::{runtime, s3_catalog, s3_section};
use common::{Gateway, LOGIN, World};
use recorder::asciicast::Event;
use recorder::{Catalog, SessionFilter, SessionRecord, Status};
use sshd_test::s3::S3Server;
use sshd_test::{ChildGuard, require_program};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A world whose target takes hundreds of sessions at once.
fn big_world() -> World {
    World::with_sshd(|b| {
        b.config_line("MaxStartups 1000:30:1000")
            .config_line("MaxSessions 1000")
    })
}

/// Recording to `s3`, 1 s segments, and limits that let N sessions from
/// one address in at once.
fn config(w: &World, s3: &S3Server, sessions: u64) -> std::path::PathBuf {
    let cap = sessions * 2 + 100;
    w.write_config(
        &[w.route("t", "")],
        &s3_section(
            w,
            s3,
            &format!(
                "limits:\n  max_connections: {cap}\n  max_unauthenticated: {cap}\n  max_unauthenticated_per_source: {cap}\n  penalties: {{exempt: [127.0.0.1]}}\n"
            ),
        ),
    )
}

/// Waits until `n` recordings are finished (not recording or uploading).
fn finished(catalog: &Catalog, n: usize, timeout: Duration) -> Vec<SessionRecord> {
    let deadline = Instant::now() + timeout;
    loop {
        let list = runtime()
            .block_on(catalog.list(&SessionFilter::default()))
            .unwrap();
        let done: Vec<_> = list
            .into_iter()
            .filter(|r| !matches!(r.status, Status::Recording | Status::Uploading))
            .collect();
        if done.len() >= n {
            return done;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} recordings finished after {timeout:?}",
            done.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn recorded_output(catalog: &Catalog, session: &str) -> String {
    let cast = runtime().block_on(catalog.cast(session, None)).unwrap();
    cast.events
        .into_iter()
        .filter_map(|e| match e.event {
            Event::Output(t) => Some(t),
            _ => None,
        })
        .collect()
}

/// `ssh LOGIN@t` running `script` under bash (the login shell may be sh).
fn ssh(w: &World, gw: &Gateway, script: &str, tty: bool) -> ChildGuard {
    let mut cmd = Command::new(require_program("ssh"));
    cmd.args(w.ssh_args(&w.client_key, gw.port));
    if tty {
        cmd.arg("-tt");
    }
    cmd.arg(format!("{LOGIN}@t@127.0.0.1"))
        .arg(format!("exec bash -c '{script}'"));
    ChildGuard::spawn(cmd).unwrap()
}

/// `nap SECONDS`, a sleep without a process: `read` with a timeout on a
/// pipe this shell also holds open for writing. With hundreds of sessions,
/// an external `sleep` per tick would be thousands of forks a second on
/// the machine that also runs the gateway.
const NAP: &str = "exec {z}<> <(:); nap() { read -t \"$1\" -u $z; };";

/// Client K's lines: `cK SEQ EPOCH` every 100 ms.
fn ticker(k: u64) -> String {
    format!("{NAP} for i in $(seq 1 100000); do echo \"c{k} $i $EPOCHREALTIME\"; nap 0.1; done")
}

/// The last `cK SEQ EPOCH` line in `text`: (K, EPOCH seconds).
fn last_tick(text: &str) -> Option<(u64, f64)> {
    text.lines().rev().find_map(|l| {
        let mut w = l.trim_end_matches('\r').split(' ');
        let k = w.next()?.strip_prefix('c')?.parse().ok()?;
        let _seq: u64 = w.next()?.parse().ok()?;
        let t = w.next()?.parse().ok()?;
        Some((k, t))
    })
}

fn print_scale(name: &str, fields: serde_json::Value) {
    println!(
        "SCALE {}",
        serde_json::json!({ "scenario": name, "results": fields })
    );
}

#[test]
#[ignore = "bench scenario: bench/scale.sh"]
fn kill_9_with_live_recorded_sessions() {
    let n = env_u64("GH_SCALE_SESSIONS", 50);
    let s3 = S3Server::start();
    let w = big_world();
    let config = config(&w, &s3, n);
    let gw = Gateway::start(&config);
    let clients: Vec<ChildGuard> = (0..n)
        .map(|k| {
            if k % 10 == 9 {
                std::thread::sleep(Duration::from_millis(200));
            }
            ssh(&w, &gw, &ticker(k), false)
        })
        .collect();
    for (k, c) in clients.iter().enumerate() {
        c.wait_for_output(&format!("c{k} 20 "), Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("client {k}: {e}\n{}", c.stderr_text()));
    }
    // A few seconds more, so segments have been cut and uploaded.
    std::thread::sleep(Duration::from_secs(3));
    gw.child.signal("KILL").unwrap();
    let killed_at = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    let seen: HashMap<u64, f64> = clients
        .iter()
        .map(|c| last_tick(&c.stdout_text()).expect("client saw ticks"))
        .collect();
    drop(clients);
    drop(gw);

    let gw = Gateway::start(&config);
    let restarted = Instant::now();
    let catalog = s3_catalog(&w, &s3);
    let recs = finished(&catalog, n as usize, Duration::from_secs(300));
    let sealed_in = restarted.elapsed();
    let mut missing = Vec::new();
    let mut statuses: HashMap<String, u64> = HashMap::new();
    for r in &recs {
        *statuses.entry(format!("{:?}", r.status)).or_default() += 1;
        let out = recorded_output(&catalog, &r.info.session_id);
        let (k, t) = last_tick(&out).expect("recording has ticks");
        missing.push((seen[&k] - t).max(0.0));
    }
    missing.sort_by(f64::total_cmp);
    let worst = missing.last().copied().unwrap_or(0.0);
    print_scale(
        "kill_9",
        serde_json::json!({
            "sessions": n,
            "finished": recs.len(),
            "statuses": statuses,
            "missing_s_median": missing.get(missing.len() / 2),
            "missing_s_max": worst,
            "seconds_from_kill_to_restart": (restarted - killed_at).as_secs_f64(),
            "seconds_from_restart_to_all_sealed": sealed_in.as_secs_f64(),
        }),
    );
    assert_eq!(recs.len() as u64, n);
    assert!(
        recs.iter().all(|r| r.status == Status::Interrupted),
        "{statuses:?}"
    );
    assert!(worst <= 1.0, "a recording misses {worst:.2} s");
    drop(gw);
}

#[test]
#[ignore = "bench scenario: bench/scale.sh"]
fn s3_outage_under_best_effort_sessions() {
    let n = env_u64("GH_SCALE_SESSIONS", 20);
    let outage = Duration::from_secs(env_u64("GH_SCALE_OUTAGE_S", 120));
    let mut s3 = S3Server::start();
    let w = big_world();
    let config = config(&w, &s3, n);
    let gw = Gateway::start(&config);
    // Each prints for the outage and 40 s around it, then a last line.
    let lines = (outage.as_secs() + 40) * 10;
    let clients: Vec<ChildGuard> = (0..n)
        .map(|k| {
            ssh(
                &w,
                &gw,
                &format!(
                    "{NAP} for i in $(seq 1 {lines}); do echo \"c{k} $i $EPOCHREALTIME $(head -c 24 /dev/urandom | base64)\"; nap 0.1; done; echo end-c{k}"
                ),
                false,
            )
        })
        .collect();
    for (k, c) in clients.iter().enumerate() {
        c.wait_for_output(&format!("c{k} 50 "), Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("client {k}: {e}\n{}", c.stderr_text()));
    }
    s3.stop();
    std::thread::sleep(outage);
    s3.restart();
    let mut printed = HashMap::new();
    for (k, mut c) in clients.into_iter().enumerate() {
        let status = c.wait_exit(Duration::from_secs(600)).unwrap();
        assert!(status.success(), "client {k}: {}", c.stderr_text());
        printed.insert(k as u64, c.stdout_text());
    }
    let catalog = s3_catalog(&w, &s3);
    let recs = finished(&catalog, n as usize, Duration::from_secs(600));
    let (mut lost, mut total) = (0usize, 0usize);
    let mut statuses: HashMap<String, u64> = HashMap::new();
    for r in &recs {
        *statuses.entry(format!("{:?}", r.status)).or_default() += 1;
        let out = recorded_output(&catalog, &r.info.session_id);
        let (k, _) = last_tick(&out).expect("recording has ticks");
        let seen = &printed[&k];
        total += seen.len();
        if out != *seen {
            // Whatever differs counts as lost: the common prefix is kept.
            let same = out
                .bytes()
                .zip(seen.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            lost += seen.len() - same;
        }
    }
    let failures = gw.log().matches("recording.upload_failed").count();
    print_scale(
        "s3_outage",
        serde_json::json!({
            "sessions": n,
            "outage_s": outage.as_secs(),
            "statuses": statuses,
            "bytes_printed": total,
            "bytes_lost": lost,
            "upload_failed_events": failures,
        }),
    );
    assert_eq!(recs.len() as u64, n);
    assert!(
        recs.iter().all(|r| r.status == Status::Sealed),
        "{statuses:?}"
    );
    assert_eq!(lost, 0, "bytes lost");
    drop(gw);
}

/// The gateway's resident memory (KiB), open file descriptors and threads.
fn footprint(pid: u32) -> (u64, usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count();
    (rss, fds, threads)
}

/// What each open file descriptor of `pid` points at (sockets and pipes
/// by kind only), sorted: to name what an fd count difference is.
fn fd_kinds(pid: u32, names: &[(u16, &str)]) -> Vec<String> {
    // Socket inode -> the remote port of its TCP connection.
    let mut tcp_peers = HashMap::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let (Some(remote), Some(inode)) = (f.get(2), f.get(9))
                && let Some(port) = remote
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            {
                tcp_peers.insert(inode.to_string(), port);
            }
        }
    }
    let mut kinds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|t| {
            let t = t.display().to_string();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|i| i.strip_suffix(']'))
                && let Some(peer) = tcp_peers.get(inode)
            {
                return match names.iter().find(|(p, _)| p == peer) {
                    Some((_, name)) => format!("tcp to {name}"),
                    None => format!("tcp to port {peer}"),
                };
            }
            match t.split_once(':') {
                Some((kind, _)) if !t.starts_with('/') => kind.to_owned(),
                _ => t,
            }
        })
        .collect();
    kinds.sort();
    kinds
}

/// The entries of `after` not matched by one in `before`.
fn extra(before: &[String], after: &[String]) -> Vec<String> {
    let mut left = before.to_vec();
    after
        .iter()
        .filter(|a| match left.iter().position(|b| b == *a) {
            Some(i) => {
                left.swap_remove(i);
                false
            }
            None => true,
        })
        .cloned()
        .collect()
}

/// Least-squares slope of `points` (x, y).
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    if den == 0.0 { 0.0 } else { num / den }
}

#[test]
#[ignore = "bench scenario: bench/scale.sh"]
fn soak() {
    let n = env_u64("GH_SOAK_SESSIONS", 500);
    let minutes = env_u64("GH_SOAK_MINUTES", 30);
    let s3 = S3Server::start();
    let w = big_world();
    let config = config(&w, &s3, n);
    let gw = Gateway::start(&config);
    let pid = gw.child.pid();
    // One session first, ended, so lazily built state (the IdP-less
    // sign-in path, the recorder's uploader, the state database's
    // connection) exists before the baseline.
    let mut warm = ssh(&w, &gw, "echo warm", false);
    warm.wait_exit(Duration::from_secs(60)).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let before = footprint(pid);
    let s3_port = s3
        .endpoint()
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or(0);
    let names = [(s3_port, "S3"), (w.sshd.port(), "the target")];
    let fds_before = fd_kinds(pid, &names);

    // About five keystrokes a second: one character echoed every 200 ms,
    // a newline every 60, through a pty like a person's shell.
    let ticks = minutes * 60 * 5;
    let script = format!(
        "{NAP} for i in $(seq 1 {ticks}); do printf x; [ $((i % 60)) = 0 ] && echo; nap 0.2; done; echo; echo soak-done"
    );
    let started = Instant::now();
    let mut clients: Vec<ChildGuard> = Vec::new();
    for k in 0..n {
        clients.push(ssh(&w, &gw, &script, true));
        if k % 10 == 9 {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let all_in = started.elapsed();
    let mut samples = Vec::new();
    let end = started + Duration::from_secs(minutes * 60);
    while Instant::now() < end {
        let (rss, fds, threads) = footprint(pid);
        samples.push((started.elapsed().as_secs_f64() / 60.0, rss, fds, threads));
        std::thread::sleep(
            Duration::from_secs(30).min(end.saturating_duration_since(Instant::now())),
        );
    }
    let peak_fds = samples.iter().map(|s| s.2).max().unwrap_or(0);
    let mut failed = 0;
    for mut c in clients {
        match c.wait_exit(Duration::from_secs(300)) {
            Some(s) if s.success() && c.stdout_text().contains("soak-done") => {}
            _ => failed += 1,
        }
    }
    // Let seals and uploads finish, then look again.
    let catalog = s3_catalog(&w, &s3);
    let recs = finished(&catalog, n as usize + 1, Duration::from_secs(600));
    // Past the S3 client's idle timeout (20 s), so pooled connections are
    // gone and what remains open is a leak.
    std::thread::sleep(Duration::from_secs(30));
    let after = footprint(pid);
    let fds_extra = extra(&fds_before, &fd_kinds(pid, &names));
    // The slope over the steady part: once every session is in.
    let steady: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.0 * 60.0 >= all_in.as_secs_f64() + 60.0)
        .map(|s| (s.0, s.1 as f64))
        .collect();
    let kib_per_min = slope(&steady);
    let rss_steady_start = steady.first().map(|s| s.1).unwrap_or(0.0);
    let sealed = recs.iter().filter(|r| r.status == Status::Sealed).count();
    let mut not_sealed: HashMap<String, u64> = HashMap::new();
    for r in recs.iter().filter(|r| r.status != Status::Sealed) {
        let reason = r.reason.as_deref().unwrap_or("-");
        *not_sealed
            .entry(format!(
                "{:?}: {}",
                r.status,
                reason.chars().take(160).collect::<String>()
            ))
            .or_default() += 1;
    }
    print_scale(
        "soak",
        serde_json::json!({
            "sessions": n,
            "minutes": minutes,
            "seconds_to_start_all": all_in.as_secs_f64(),
            "clients_failed": failed,
            "recordings_sealed": sealed,
            "recordings_not_sealed": not_sealed,
            "rss_kib_before": before.0,
            "rss_kib_steady_start": rss_steady_start,
            "rss_kib_peak": samples.iter().map(|s| s.1).max(),
            "rss_kib_after": after.0,
            "rss_slope_kib_per_min": kib_per_min,
            "fds_before": before.1,
            "fds_peak": peak_fds,
            "fds_after": after.1,
            "fds_extra_after": fds_extra,
            "threads_before": before.2,
            "threads_peak": samples.iter().map(|s| s.3).max(),
            "threads_after": after.2,
            "samples": samples.iter().map(|s| [s.0, s.1 as f64, s.2 as f64, s.3 as f64]).collect::<Vec<_>>(),
        }),
    );
    assert_eq!(failed, 0, "clients that did not finish");
    assert_eq!(sealed, n as usize + 1, "recordings not sealed");
    // Idle connections to S3 are the client's pool (at most 8, see
    // recorder/src/storage.rs), not a leak; anything else must be back.
    let pooled = fds_extra.iter().filter(|k| *k == "tcp to S3").count();
    assert!(pooled <= 8, "{pooled} idle connections to S3");
    assert!(
        fds_extra.len() - pooled <= 2,
        "file descriptors: {} before, {} after: {fds_extra:?}",
        before.1,
        after.1
    );
    // Flat: under 1 % of the steady RSS per 10 minutes.
    assert!(
        kib_per_min * 10.0 <= rss_steady_start * 0.01,
        "RSS grows {kib_per_min:.1} KiB/min from {rss_steady_start} KiB"
    );
    drop(gw);
}
