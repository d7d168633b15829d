//! Benchmark for full-text search over recordings (bench/README.md).
//!
//!     cargo run --release -p web-replay --example search_bench -- DIR [GIB] [RECORDINGS]
//!
//! Defaults: 1 GiB of screen text over 10,000 recordings. In DIR it
//! 1. records one long busy session through the real recorder (its
//!    encoder, spool, segments and seal, into file storage) and indexes it
//!    with `web_replay::indexer::index_session`, first without a sidecar
//!    (the terminal model is built) and then, with the text index emptied,
//!    again with the sidecar it stored; each run in a child process of its
//!    own, so its peak memory is that run's alone;
//! 2. builds a text index of RECORDINGS synthetic recordings totalling
//!    GIB of realistic screen text (prompts, `ls -la`, paths, addresses,
//!    web and system logs, `kubectl`, `git log`; a deterministic generator)
//!    through `Store::text_index_replace`, the chunking and insert path of
//!    the indexer;
//! 3. runs a shuffled mix of searches (rare word, common word, path
//!    substring, address, `rm -rf`, a two-letter word, a phrase of common
//!    words that never occurs) and reports p50 and p99 of the first page
//!    (50 hits), against p50 <= 100 ms and p99 <= 300 ms, plus the next
//!    page and the recording filter's `text`.
//!
//! An index already in DIR/search is reused (delete it to rebuild).
//! Prints a Markdown report on stdout; progress goes to stderr.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use recorder::asciicast::Term;
use recorder::{
    Catalog, ChannelKind, ChannelSpec, Ed25519Signer, Recorder, RecorderConfig, SessionInfo,
    Signer, Status, StorageConfig,
};
use state::{
    RecordingChannel, RecordingFilter, RecordingRow, RecordingStart, RecordingStatus, ScreenLine,
    Sqlite, Store, TextChunker, TextQuery,
};

/// A small deterministic generator, so every run writes the same text.
#[derive(Clone)]
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
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

const USERS: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "deploy", "root", "postgres", "www-data", "ops",
];
const HOSTS: &[&str] = &[
    "web1",
    "web2",
    "db-primary",
    "db-replica",
    "cache3",
    "bastion",
    "ci-runner",
    "k8s-node4",
    "mail",
    "backup",
];
const DIRS: &[&str] = &[
    "/etc/nginx/sites-enabled",
    "/var/log/nginx",
    "/srv/app/releases",
    "/home/deploy/.ssh",
    "/opt/backup/daily",
    "/var/lib/postgresql/16/main",
    "/etc/systemd/system",
    "/usr/local/bin",
    "/tmp/build-cache",
    "/srv/www/static/assets",
];
const WORDS: &[&str] = &[
    "config",
    "server",
    "release",
    "backup",
    "index",
    "report",
    "invoice",
    "user",
    "session",
    "worker",
    "queue",
    "metrics",
    "export",
    "import",
    "payment",
    "order",
    "cache",
    "schema",
    "migration",
    "service",
    "client",
    "token",
    "upload",
    "thumbnail",
    "archive",
    "nightly",
    "staging",
    "canary",
    "rollout",
    "health",
];
const EXTS: &[&str] = &[
    "conf", "log", "json", "yaml", "tar.gz", "sql", "py", "rs", "txt", "pem",
];
const SERVICES: &[&str] = &[
    "nginx",
    "postgresql",
    "redis",
    "sshd",
    "docker",
    "kubelet",
    "cron",
    "app-worker",
];
const PATHS: &[&str] = &[
    "/",
    "/login",
    "/api/v1/orders",
    "/api/v1/users/me",
    "/static/app.js",
    "/healthz",
    "/admin/reports",
    "/api/v2/search?q=shoes",
];
const MESSAGES: &[&str] = &[
    "Started Session of user",
    "connection reset by peer",
    "error: could not connect to server",
    "warning: disk usage above 80%",
    "Accepted publickey for",
    "Reloading configuration",
    "error: timeout waiting for lock",
    "checkpoint complete: wrote 412 buffers",
    "OOM killer invoked",
    "Finished backup job",
];
const MONTHS: &[&str] = &[
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
];

/// IPs planted in about one session in 50; searched for.
const PLANTED_IPS: &[&str] = &["10.20.30.40", "192.168.77.12", "172.16.5.250"];

fn ip(rng: &mut Lcg) -> String {
    format!(
        "10.{}.{}.{}",
        rng.below(256),
        rng.below(256),
        1 + rng.below(254)
    )
}

fn name(rng: &mut Lcg) -> String {
    format!(
        "{}-{}-{:04x}.{}",
        rng.pick(WORDS),
        rng.pick(WORDS),
        rng.below(65536),
        rng.pick(EXTS)
    )
}

/// Screen lines of one synthetic recording: about `budget` bytes of a
/// day at a shell, session `n` of the corpus.
struct Workday {
    rng: Lcg,
    budget: u64,
    steps: u64,
    time_us: u64,
    pending: std::collections::VecDeque<String>,
    user: &'static str,
    host: &'static str,
    /// Rare words planted in this session.
    rare: Vec<String>,
    planted_ip: Option<&'static str>,
}

impl Workday {
    fn new(n: u64, budget: u64) -> Workday {
        let mut rng = Lcg(n.wrapping_mul(0x9e37_79b9) ^ 0x5eed);
        let user = rng.pick(USERS);
        let host = rng.pick(HOSTS);
        // 20 rare words, each in 1 to 3 sessions of the corpus.
        let rare = (0..20u64)
            .filter(|k| (n * 7 + k * 1013) % 4001 < (k % 3) + 1)
            .map(|k| format!("xylophone-{k}"))
            .collect();
        let planted_ip = (n % 50 == 7).then(|| PLANTED_IPS[(n / 50) as usize % PLANTED_IPS.len()]);
        Workday {
            rng,
            budget,
            steps: 0,
            time_us: 0,
            pending: Default::default(),
            user,
            host,
            rare,
            planted_ip,
        }
    }

    /// One command and what it printed.
    fn command(&mut self) {
        let r = &mut self.rng;
        let cwd = r.pick(DIRS);
        let prompt = format!("{}@{}:{cwd}$ ", self.user, self.host);
        let mut out = Vec::new();
        let cmd = match r.below(12) {
            0 | 1 => {
                let dir = r.pick(DIRS);
                out.push(format!("total {}", r.below(5000)));
                for _ in 0..(5 + r.below(40)) {
                    out.push(format!(
                        "-rw-r--r-- 1 {} {} {:>9} {} {:>2} {:02}:{:02} {}",
                        r.pick(USERS),
                        r.pick(USERS),
                        r.below(50_000_000),
                        r.pick(MONTHS),
                        1 + r.below(28),
                        r.below(24),
                        r.below(60),
                        name(r)
                    ));
                }
                format!("ls -la {dir}")
            }
            2 | 3 => {
                for _ in 0..(10 + r.below(60)) {
                    let status = [200, 200, 200, 304, 404, 500][r.below(6) as usize];
                    out.push(format!(
                        "{} - - [{:02}/{}/2026:{:02}:{:02}:{:02} +0000] \"GET {} HTTP/1.1\" {status} {} \"-\" \"Mozilla/5.0\"",
                        ip(r),
                        1 + r.below(28),
                        r.pick(MONTHS),
                        r.below(24),
                        r.below(60),
                        r.below(60),
                        r.pick(PATHS),
                        r.below(90_000)
                    ));
                }
                "tail -n 50 /var/log/nginx/access.log".to_owned()
            }
            4 | 5 => {
                for _ in 0..(5 + r.below(40)) {
                    out.push(format!(
                        "{} {:>2} {:02}:{:02}:{:02} {} {}[{}]: {} {}",
                        r.pick(MONTHS),
                        1 + r.below(28),
                        r.below(24),
                        r.below(60),
                        r.below(60),
                        r.pick(HOSTS),
                        r.pick(SERVICES),
                        100 + r.below(60000),
                        r.pick(MESSAGES),
                        r.pick(USERS)
                    ));
                }
                format!("journalctl -u {} --since today", r.pick(SERVICES))
            }
            6 => {
                out.push(
                    "NAME                                READY   STATUS    RESTARTS   AGE"
                        .to_owned(),
                );
                for _ in 0..(3 + r.below(20)) {
                    out.push(format!(
                        "{}-{:08x}-{:05x}        1/1     Running   {}          {}d",
                        r.pick(WORDS),
                        r.below(1 << 32),
                        r.below(1 << 20),
                        r.below(5),
                        r.below(90)
                    ));
                }
                format!("kubectl get pods -n {}", r.pick(WORDS))
            }
            7 => {
                for _ in 0..(5 + r.below(20)) {
                    out.push(format!(
                        "{:07x} {} {} in {}",
                        r.below(1 << 28),
                        r.pick(&["fix", "add", "remove", "update", "refactor"]),
                        r.pick(WORDS),
                        r.pick(WORDS)
                    ));
                }
                "git log --oneline -20".to_owned()
            }
            8 => {
                let target = ip(r);
                out.push(format!(
                    "Warning: Permanently added '{target}' (ED25519) to the list of known hosts."
                ));
                format!("ssh {}@{target}", r.pick(USERS))
            }
            9 => {
                out.push("Filesystem      Size  Used Avail Use% Mounted on".to_owned());
                for d in ["/", "/var", "/srv", "/home"] {
                    out.push(format!(
                        "/dev/vda{}        {}G  {}G  {}G  {}% {d}",
                        1 + r.below(4),
                        100 + r.below(400),
                        r.below(100),
                        r.below(300),
                        r.below(100)
                    ));
                }
                "df -h".to_owned()
            }
            10 if r.chance(60) => format!("sudo rm -rf {}/{}", r.pick(DIRS), r.pick(WORDS)),
            _ => {
                out.push(format!("{} is active (running)", r.pick(SERVICES)));
                format!("sudo systemctl restart {}", r.pick(SERVICES))
            }
        };
        self.pending.push_back(format!("{prompt}{cmd}"));
        self.pending.extend(out);
        if !self.rare.is_empty() && r.chance(20) {
            let word = self.rare[r.below(self.rare.len() as u64) as usize].clone();
            self.pending
                .push_back(format!("grep: {word}: no such file or directory"));
        }
        if let Some(ip) = self.planted_ip
            && r.chance(30)
        {
            self.pending
                .push_back(format!("{}@{}:~$ ssh admin@{ip}", self.user, self.host));
        }
    }
}

impl Iterator for Workday {
    type Item = ScreenLine;

    fn next(&mut self) -> Option<ScreenLine> {
        if self.pending.is_empty() {
            if self.budget == 0 {
                return None;
            }
            self.command();
        }
        let text = self.pending.pop_front()?;
        self.budget = self.budget.saturating_sub(text.len() as u64 + 1);
        self.steps += 1;
        self.time_us += 1_000 + self.rng.below(200_000);
        Some(ScreenLine {
            steps: self.steps,
            time_us: self.time_us,
            alternate: false,
            text,
        })
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mib(b: u64) -> f64 {
    b as f64 / f64::from(1 << 20)
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        dir_bytes(&p)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Records one busy session of about `output` bytes through the real
/// recorder: bursts of `ls -laR`, `top` on the alternate screen, logs.
async fn record_long(dir: &Path, store: Arc<dyn Store>, output: u64) -> (StorageConfig, u64) {
    let storage = StorageConfig::File(dir.join("storage"));
    let mut rc = RecorderConfig::new(dir.join("spool"), storage.clone());
    rc.segment_interval = Duration::from_secs(1);
    rc.seal_timeout = Duration::from_secs(120);
    let signer: Arc<dyn Signer> = Arc::new(Ed25519Signer::from_seed(&[9; 32]).unwrap());
    let rec = Recorder::open(rc, signer, store).unwrap();
    let session = rec
        .start_session(SessionInfo {
            session_id: "long-1".into(),
            identity: "alice@example.com".into(),
            login: "root".into(),
            route: "bench".into(),
            target: "127.0.0.1:22".into(),
            client_addr: "127.0.0.1:40000".into(),
            client_key_fingerprint: None,
            cert_serial: None,
        })
        .await
        .unwrap();
    let mut ch = session
        .open_channel(ChannelSpec {
            channel: "0".into(),
            kind: ChannelKind::Shell,
            command: None,
            term: Term {
                cols: 120,
                rows: 40,
                term_type: Some("xterm-256color".into()),
            },
            record_input: false,
            cert_serial: None,
        })
        .await
        .unwrap();
    let mut rng = Lcg(7);
    let mut written = 0u64;
    let mut burst = 0u64;
    while written < output {
        let mut chunk = String::from("user@host:~/src$ ls -laR\r\n");
        for i in 0..4_000 {
            chunk.push_str(&format!(
                "-rw-r--r-- 1 user group {:>8} Mar  {} 09:{:02} \x1b[01;34m{}-{burst:03}-{i:05}\x1b[0m\r\n",
                rng.below(10_000_000),
                1 + rng.below(28),
                rng.below(60),
                name(&mut rng),
            ));
            if chunk.len() >= 4096 {
                ch.output(chunk.as_bytes()).unwrap();
                written += chunk.len() as u64;
                chunk.clear();
            }
        }
        ch.output(chunk.as_bytes()).unwrap();
        written += chunk.len() as u64;
        ch.output(b"\x1b[?1049h\x1b[H\x1b[2J").unwrap();
        for r in 0..10 {
            let mut screen = format!(
                "\x1b[Htop - 09:{r:02}:00 up 3 days,  load average: 0.{}, 0.{}\x1b[K\r\n",
                rng.below(99),
                rng.below(99)
            );
            for p in 0..35 {
                screen.push_str(&format!(
                    "{:>5} user {:>4}.{} proc-{burst}-{p}\x1b[K\r\n",
                    1000 + p,
                    rng.below(100),
                    rng.below(10)
                ));
            }
            ch.output(screen.as_bytes()).unwrap();
            written += screen.len() as u64;
        }
        ch.output(b"\x1b[?1049l").unwrap();
        burst += 1;
    }
    ch.exit(0).unwrap();
    ch.close().unwrap();
    let report = session.seal().await;
    assert_eq!(report.status, Status::Sealed, "{report:?}");
    (storage, written)
}

/// The child process of step 1: indexes the long recording once, `cold`
/// (no sidecar yet: the terminal model is built and the sidecar stored)
/// or `warm` (the sidecar stored by the cold run is reused; the text
/// index is emptied first, untimed, so both runs store the same text),
/// and prints its figures as JSON. Each run is a process of its own, so
/// its peak RSS is its own.
fn index_child(dir: &Path, mode: &str) {
    let rt = runtime();
    rt.block_on(async {
        let store: Arc<dyn Store> = Arc::new(Sqlite::open(&dir.join("state")).unwrap());
        let storage = StorageConfig::File(dir.join("storage"));
        let catalog = Catalog::open(Arc::clone(&store), &storage).unwrap();
        if mode == "warm" {
            store.text_index_clear().await.unwrap();
        }
        let before = status_kib("VmRSS:");
        let t = Instant::now();
        let report = web_replay::indexer::index_session(&catalog, store.as_ref(), "long-1")
            .await
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        let expected_built = u64::from(mode == "cold");
        assert_eq!(report.sidecars_built, expected_built, "{mode}: {report:?}");
        assert_eq!(report.channels, 1, "{mode}: {report:?}");
        println!(
            "{}",
            serde_json::json!({
                "recording_bytes": report.recording_bytes,
                "lines": report.lines,
                "text_bytes": report.text_bytes,
                "secs": secs,
                "rss_before_kib": before,
                "peak_kib": status_kib("VmHWM:"),
            })
        );
    });
}

/// Runs one indexing child; its figures.
fn index_run(idx: &Path, mode: &str) -> serde_json::Value {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["index", mode])
        .arg(idx)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Step 1: the indexer on a real recording.
fn indexer_figures(dir: &Path, output: u64) -> serde_json::Value {
    let idx = dir.join("indexer");
    let _ = std::fs::remove_dir_all(&idx);
    std::fs::create_dir_all(&idx).unwrap();
    let rt = runtime();
    let t = Instant::now();
    let written = rt.block_on(async {
        let store: Arc<dyn Store> = Arc::new(Sqlite::open(&idx.join("state")).unwrap());
        record_long(&idx, store, output).await.1
    });
    eprintln!(
        "recorded {:.1} MiB of output through the recorder in {:.1} s",
        mib(written),
        t.elapsed().as_secs_f64()
    );
    drop(rt);
    let cold = index_run(&idx, "cold");
    let warm = index_run(&idx, "warm");
    assert_eq!(cold["lines"], warm["lines"]);
    let mut figures = cold.clone();
    figures["cold_s"] = cold["secs"].clone();
    figures["warm_s"] = warm["secs"].clone();
    figures["peak_cold_kib"] = cold["peak_kib"].clone();
    figures["peak_warm_kib"] = warm["peak_kib"].clone();
    figures["output_bytes"] = written.into();
    figures["sealed_bytes"] = dir_bytes(&idx.join("storage")).into();
    figures
}

/// Step 2: the corpus.
async fn build(store: &dyn Store, recordings: u64, total: u64) -> (Duration, u64, u64) {
    let per = total / recordings;
    let t = Instant::now();
    let (mut lines, mut bytes) = (0u64, 0u64);
    for n in 0..recordings {
        let id = format!("bench-{n:05}");
        let started_at_ms = 1_800_000_000_000 + n * 60_000;
        let start = RecordingStart {
            session_id: id.clone(),
            identity: format!("{}@example.com", USERS[(n % 10) as usize]),
            login: "root".into(),
            route: "bench".into(),
            target: "10.0.0.1:22".into(),
            client_addr: "127.0.0.1:50000".into(),
            gateway_id: "gw".into(),
            started_at_ms,
            prefix: format!("sessions/{id}"),
            ..Default::default()
        };
        store
            .recording_sealed(
                RecordingRow {
                    start,
                    ended_at_ms: Some(started_at_ms + 30_000),
                    duration_ms: Some(30_000),
                    status: RecordingStatus::Sealed,
                    bytes: per,
                    meta_key: Some(format!("sessions/{id}/meta.json")),
                    ..Default::default()
                },
                vec![RecordingChannel {
                    channel: "0".into(),
                    kind: "shell".into(),
                    sealed_key: Some(format!("sessions/{id}/0.cast.zst")),
                    ..Default::default()
                }],
            )
            .await
            .unwrap();
        let chunks = TextChunker::new(Workday::new(n, per));
        let done = store
            .text_index_replace(&id, "0", Box::new(chunks))
            .await
            .unwrap();
        lines += done.lines;
        bytes += done.bytes;
        if (n + 1) % 500 == 0 {
            let s = t.elapsed().as_secs_f64();
            eprintln!(
                "  {} recordings, {:.0} MiB of text, {:.1} MiB/s, {:.0} s left",
                n + 1,
                mib(bytes),
                mib(bytes) / s,
                s / (n + 1) as f64 * (recordings - n - 1) as f64
            );
        }
    }
    (t.elapsed(), lines, bytes)
}

/// Step 3: what is searched, by kind.
fn queries() -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    for k in 0..20 {
        q.push(("rare word", format!("xylophone-{k}")));
    }
    for w in ["error", "warning", "nginx", "Running", "backup", "session"] {
        q.push(("common word", w.to_owned()));
    }
    for p in [
        "nginx/sites-enabled",
        "/var/lib/postgresql",
        "releases",
        "/home/deploy/.ssh",
        "static/assets",
    ] {
        q.push(("path substring", p.to_owned()));
    }
    for ip in PLANTED_IPS {
        q.push(("address", (*ip).to_owned()));
    }
    q.push(("address", "10.20.30".to_owned()));
    for r in ["rm -rf", "sudo rm -rf", "rm -rf /tmp"] {
        q.push(("rm -rf", r.to_owned()));
    }
    for s in ["ls", "df", "gi"] {
        q.push(("two letters", s.to_owned()));
    }
    for s in ["error invoice nightly", "total 99999", "GET /nowhere"] {
        q.push(("absent phrase", s.to_owned()));
    }
    q
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("index") {
        index_child(Path::new(&args[3]), &args[2]);
        return;
    }
    let dir = PathBuf::from(
        args.get(1)
            .expect("usage: search_bench DIR [GIB] [RECORDINGS]"),
    );
    let gib: f64 = args.get(2).map_or(1.0, |g| g.parse().expect("GIB"));
    let recordings: u64 = args
        .get(3)
        .map_or(10_000, |n| n.parse().expect("RECORDINGS"));
    std::fs::create_dir_all(&dir).unwrap();

    eprintln!("step 1: the indexer on a recording made by the recorder");
    let ix = indexer_figures(&dir, 48 << 20);

    let search_dir = dir.join("search");
    let reuse = Sqlite::exists(&search_dir);
    let store = Sqlite::open(&search_dir).unwrap();
    let rt = runtime();
    let total = (gib * f64::from(1 << 30)) as u64;
    let (build_time, lines, bytes) = if reuse {
        eprintln!("step 2: reusing the index in {}", search_dir.display());
        (Duration::ZERO, 0, 0)
    } else {
        eprintln!("step 2: {recordings} recordings, {gib} GiB of text");
        rt.block_on(build(&store, recordings, total))
    };
    let db_bytes = dir_bytes(&search_dir);

    eprintln!("step 3: searches");
    let qs = queries();
    let mut order: Vec<usize> = (0..qs.len())
        .flat_map(|i| std::iter::repeat_n(i, 10))
        .collect();
    let mut rng = Lcg(3);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut by_kind: std::collections::BTreeMap<&str, (Vec<Duration>, usize)> = Default::default();
    let mut all = Vec::new();
    let mut second = Vec::new();
    rt.block_on(async {
        // One warm-up pass, so the figures are of a running server's cache.
        for (_, text) in &qs {
            let _ = store
                .text_search(TextQuery {
                    text: text.clone(),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        for &i in &order {
            let (kind, text) = &qs[i];
            let t = Instant::now();
            let page = store
                .text_search(TextQuery {
                    text: text.clone(),
                    limit: 50,
                    ..Default::default()
                })
                .await
                .unwrap();
            let took = t.elapsed();
            all.push(took);
            let e = by_kind.entry(kind).or_default();
            e.0.push(took);
            e.1 = e.1.max(page.hits.len());
            if let Some(next) = page.next
                && *kind == "common word"
            {
                let t = Instant::now();
                store
                    .text_search(TextQuery {
                        text: text.clone(),
                        limit: 50,
                        after: Some(next),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                second.push(t.elapsed());
            }
        }
    });
    all.sort();
    second.sort();
    let mut filters = Vec::new();
    rt.block_on(async {
        for text in ["xylophone-3", "10.20.30.40", "rm -rf", "error"] {
            // The first call reads the text's whole match list from disk
            // (a search's first page reads only its newest end); then 5
            // more.
            let mut times = Vec::new();
            let mut found = 0;
            for _ in 0..6 {
                let t = Instant::now();
                let rows = store
                    .recordings(RecordingFilter {
                        text: Some(text.to_owned()),
                        limit: 50,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                times.push(t.elapsed());
                found = rows.len();
            }
            let first = times.remove(0);
            times.sort();
            filters.push((text, found, first, pct(&times, 0.5)));
        }
    });

    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    println!("## Search: the text index (web-replay/examples/search_bench.rs)\n");
    let recording_mib = mib(ix["recording_bytes"].as_u64().unwrap());
    let cold = ix["cold_s"].as_f64().unwrap();
    let warm = ix["warm_s"].as_f64().unwrap();
    println!(
        "**Indexer** on one busy session recorded through the recorder: {:.1} MiB of output \
         ({:.1} MiB of asciicast, {:.1} MiB sealed in storage), {} lines, {:.1} MiB of text.\n",
        mib(ix["output_bytes"].as_u64().unwrap()),
        recording_mib,
        mib(ix["sealed_bytes"].as_u64().unwrap()),
        ix["lines"],
        mib(ix["text_bytes"].as_u64().unwrap()),
    );
    let output_mib = mib(ix["output_bytes"].as_u64().unwrap());
    println!("| indexer | time | output MiB/s | recording MiB/s | peak RSS |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| first time (builds and stores the sidecar) | {cold:.2} s | {:.1} | {:.1} | {:.1} MiB |",
        output_mib / cold,
        recording_mib / cold,
        ix["peak_cold_kib"].as_f64().unwrap() / 1024.0
    );
    println!(
        "| again, text index emptied (sidecar reused) | {warm:.2} s | {:.1} | {:.1} | {:.1} MiB |\n",
        output_mib / warm,
        recording_mib / warm,
        ix["peak_warm_kib"].as_f64().unwrap() / 1024.0
    );
    if reuse {
        println!(
            "**Corpus**: the index already in DIR/search, reused ({:.2} GiB on disk).\n",
            db_bytes as f64 / f64::from(1 << 30)
        );
    } else {
        println!(
            "**Corpus**: {recordings} recordings, {lines} lines, {:.2} GiB of screen text, \
             indexed through `text_index_replace` in {:.0} s ({:.1} MiB/s of text, chunking \
             and both FTS5 indexes); {:.2} GiB on disk ({:.1}× the text).\n",
            bytes as f64 / f64::from(1 << 30),
            build_time.as_secs_f64(),
            mib(bytes) / build_time.as_secs_f64(),
            db_bytes as f64 / f64::from(1 << 30),
            db_bytes as f64 / bytes.max(1) as f64,
        );
    }
    println!(
        "**Searches**: {} first pages of up to 50 hits, {} queries of 7 kinds shuffled, \
         after one warm-up pass (the OS cache holds the index, as on a running server).\n",
        all.len(),
        qs.len()
    );
    println!("| kind | p50 | p99 | most hits |");
    println!("|---|---:|---:|---:|");
    for (kind, (mut times, hits)) in by_kind {
        times.sort();
        println!(
            "| {kind} | {} | {} | {hits} |",
            ms(pct(&times, 0.5)),
            ms(pct(&times, 0.99))
        );
    }
    println!(
        "| **all** | **{}** | **{}** | |",
        ms(pct(&all, 0.5)),
        ms(pct(&all, 0.99))
    );
    if !second.is_empty() {
        println!(
            "| common word, next page | {} | {} | |",
            ms(pct(&second, 0.5)),
            ms(pct(&second, 0.99))
        );
    }
    println!();
    println!("| target | result | |");
    println!("|---|---:|---|");
    println!(
        "| p50 ≤ 100 ms | {} | {} |",
        ms(pct(&all, 0.5)),
        met(pct(&all, 0.5) <= Duration::from_millis(100))
    );
    println!(
        "| p99 ≤ 300 ms | {} | {} |",
        ms(pct(&all, 0.99)),
        met(pct(&all, 0.99) <= Duration::from_millis(300))
    );
    println!();
    println!(
        "| `RecordingFilter::text` (50 newest sessions) | sessions | first call | p50 of the next 5 |"
    );
    println!("|---|---:|---:|---:|");
    for (text, n, first, p50) in filters {
        println!("| `{text}` | {n} | {} | {} |", ms(first), ms(p50));
    }
}
