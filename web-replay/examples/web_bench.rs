//! Benchmark of the web app served by the real `gatehouse web` process
//! (bench/README.md): the session list, live watching, and the process's
//! memory.
//!
//!     cargo build --release -p gatehouse
//!     cargo run --release -p web-replay --example web_bench -- DIR [SESSIONS] [WATCHERS] [SEARCH_DIR]
//!
//! Defaults: 100,000 indexed sessions, 100 watchers. The `gatehouse`
//! binary is taken from `$GATEHOUSE`, else from next to this example's
//! directory (`target/release/gatehouse`). In DIR it
//!
//! 1. indexes SESSIONS recordings in a state database (`DIR/list/state`)
//!    through the `Store` calls the recorder makes over a session's life
//!    (`recording_started`, `recording_channel_started`,
//!    `recording_segment_uploaded`, `recording_status`,
//!    `recording_sealed`) and marks each one's text indexed, as the web
//!    app's indexer would: a year of sessions by 300 people (a few much
//!    busier than the rest) and 3 service identities on 40 routes; 3 %
//!    of them viewed. An index already there is reused;
//! 2. stores browser sessions for three viewers straight in the database
//!    (the cookie's token is ours, the row holds its SHA-256, as after a
//!    sign-in): an auditor the access policy lets list everything, and
//!    two users who may list only their own sessions (`own: true`), a
//!    busy one and a typical one;
//! 3. starts `gatehouse web --config FILE` on that database (its IdP is an
//!    unused loopback URL: the web app discovers it only at a sign-in,
//!    which never happens here) and times `GET /sessions` pages, first
//!    pages and filtered ones, on one keep-alive connection: the time
//!    from sending the request to the last byte of the page, p50 and p99;
//! 4. records a live session with the `recorder` crate, as the gateway
//!    does, into the spool directory of a second web process's
//!    configuration, writing an output line carrying a sequence number
//!    every 200 ms, and opens 1 and then WATCHERS Server-Sent-Events
//!    watchers (`GET /sessions/ID/live`, raw HTTP/1.1 clients). The lag of
//!    event n is the time from just before the recorder call that wrote it
//!    to each watcher reading it. Reported with the process's VmRSS and
//!    VmHWM idle, with 1 and with WATCHERS watchers;
//! 5. the same against a third web process whose spool directory is empty
//!    (a host that does not hold the session), which follows the uploaded
//!    segments instead;
//! 6. with SEARCH_DIR (the DIR `search_bench` filled: its 10,000
//!    recordings and 1 GiB of text), serves that index with one more web
//!    process and times `GET /search?q=` for `search_bench`'s queries and
//!    `GET /sessions?text=` as an auditor.
//!
//! Prints a Markdown report on stdout; progress goes to stderr. Takes about
//! 17 minutes on 2 cores with the defaults, 13 of them building the index
//! (fsync-bound; reused on the next run, which takes about 3 minutes).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use recorder::asciicast::Term;
use recorder::{
    ChannelKind, ChannelSpec, Ed25519Signer, Recorder, RecorderConfig, SessionInfo, Signer,
    StorageConfig,
};
use sshd_test::ChildGuard;
use state::{
    ChannelStart, LiveSession, RecordingChannel, RecordingRow, RecordingStart, RecordingStatus,
    Sqlite, Store, WebSession,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// How often the live session writes a line.
const WRITE_EVERY: Duration = Duration::from_millis(200);
/// The recorder's default upload interval, which the web app's live feed
/// derives its polling from (a twentieth, between 100 ms and 1 s).
const SEGMENT_INTERVAL: Duration = Duration::from_secs(5);
/// Measured requests per page, after the warm-up.
const ROUNDS: usize = 100;
const WARMUP: usize = 10;

/// A small deterministic generator, so every run builds the same index.
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
    /// An index in `0..weights.len()`, drawn by the cumulative `weights`.
    fn weighted(&mut self, cumulative: &[f64]) -> usize {
        let total = cumulative.last().copied().unwrap_or(1.0);
        let x = (self.next() as f64 / f64::from(1u32 << 31)) * total;
        cumulative
            .partition_point(|&c| c <= x)
            .min(cumulative.len() - 1)
    }
}

const FIRST: &[&str] = &[
    "anna", "ben", "chloe", "david", "emma", "felix", "greta", "hugo", "ines", "jonas", "klara",
    "lukas", "mia", "noah", "olga", "paul", "rosa", "sami", "tara", "uwe",
];
const LAST: &[&str] = &[
    "schmidt", "meyer", "weber", "wagner", "becker", "hoffmann", "koch", "richter", "klein",
    "wolf", "neumann", "braun", "zimmer", "kruger", "lange",
];
const SERVICES: &[&str] = &["deploy-bot", "backup-bot", "ci-runner"];
const ENVS: &[&str] = &["prod", "staging", "dev", "ops"];
const SYSTEMS: &[&str] = &[
    "db", "web", "api", "cache", "queue", "search", "k8s", "bastion", "mail", "backup",
];
const LOGINS: &[&str] = &["root", "ubuntu", "deploy", "postgres", "admin"];
const COMMANDS: &[&str] = &[
    "systemctl status nginx",
    "tail -n 200 /var/log/syslog",
    "pg_dump app",
    "df -h",
    "kubectl get pods -A",
    "rsync -a /srv/ backup:/srv/",
];

/// The people, routes and their weights of the synthetic index.
struct Corpus {
    people: Vec<String>,
    person_weights: Vec<f64>,
    routes: Vec<String>,
    route_weights: Vec<f64>,
}

fn cumulative(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut total = 0.0;
    weights
        .map(|w| {
            total += w;
            total
        })
        .collect()
}

impl Corpus {
    fn new() -> Corpus {
        let mut people = Vec::new();
        for (i, first) in FIRST.iter().cycle().enumerate().take(300) {
            let last = LAST[(i * 7 + i / FIRST.len()) % LAST.len()];
            people.push(format!("{first}.{last}{}@example.com", i / FIRST.len()));
        }
        // A long tail: the busiest person has ~30x the sessions of the
        // 100th.
        let person_weights = cumulative((0..people.len()).map(|k| 1.0 / (k as f64 + 4.0)));
        let mut routes = Vec::new();
        for (i, sys) in SYSTEMS.iter().cycle().enumerate().take(40) {
            routes.push(format!(
                "{}-{sys}-{}",
                ENVS[i % ENVS.len()],
                i / SYSTEMS.len() + 1
            ));
        }
        let route_weights = cumulative((0..routes.len()).map(|k| 1.0 / (k as f64 + 2.0)));
        Corpus {
            people,
            person_weights,
            routes,
            route_weights,
        }
    }
}

/// One synthetic recorded session.
struct Synth {
    start: RecordingStart,
    duration_ms: u64,
    status: RecordingStatus,
    reason: Option<String>,
    exit_status: Option<i64>,
    kind: &'static str,
    command: Option<String>,
    bytes: u64,
    segments: u64,
    viewed: bool,
}

/// Unix milliseconds now.
fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// `YYYY/MM/DD` of a Unix time, as the recorder's object prefixes.
fn utc_day(ms: u64) -> String {
    let text =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string();
    text[..10].replace('-', "/")
}

/// Session `i` of `n`, the sessions spread over the year before `end_ms`.
fn synth(corpus: &Corpus, i: u64, n: u64, end_ms: u64) -> Synth {
    let mut r = Lcg(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed_1234);
    r.next();
    let year = 365 * 86_400_000u64;
    let step = year / n.max(1);
    let started_at_ms = end_ms - year + i * step + r.below(step.max(1));
    let identity = if r.below(100) < 15 {
        SERVICES[r.below(SERVICES.len() as u64) as usize].to_owned()
    } else {
        corpus.people[r.weighted(&corpus.person_weights)].clone()
    };
    let route = corpus.routes[r.weighted(&corpus.route_weights)].clone();
    let exec = r.below(100) < 30;
    let duration_ms = match r.below(100) {
        0..=39 => 1_000 + r.below(30_000),
        40..=89 => 60_000 + r.below(3_600_000),
        _ => 3_600_000 + r.below(7 * 3_600_000),
    };
    let (status, reason) = match r.below(1000) {
        0..=9 => (
            RecordingStatus::Interrupted,
            Some("the gateway stopped before the session ended".to_owned()),
        ),
        10..=14 => (
            RecordingStatus::Failed,
            Some("storage unavailable past the seal timeout".to_owned()),
        ),
        _ => (RecordingStatus::Sealed, None),
    };
    let exit_status = match r.below(100) {
        0..=79 => Some(0),
        80..=89 => Some(1),
        90..=94 => Some(130),
        _ => None,
    };
    // A UUIDv7, as the gateway's session ids.
    let id = format!(
        "{:012x}7{:03x}{:04x}{:012x}",
        started_at_ms,
        r.below(1 << 12),
        0x8000 | r.below(1 << 14),
        (r.next() << 17) | r.below(1 << 17)
    );
    let start = RecordingStart {
        session_id: id.clone(),
        identity,
        login: LOGINS[r.below(LOGINS.len() as u64) as usize].to_owned(),
        route,
        target: format!("10.{}.{}.{}:22", r.below(8), r.below(256), 1 + r.below(254)),
        client_addr: format!("192.0.2.{}:{}", 1 + r.below(254), 30_000 + r.below(30_000)),
        client_key_fingerprint: Some(format!("SHA256:bench{:016x}", r.next())),
        cert_serial: Some(started_at_ms * 1000 + r.below(1000)),
        gateway_id: "gatehouse".to_owned(),
        started_at_ms,
        prefix: format!("sessions/{}/{id}", utc_day(started_at_ms)),
    };
    Synth {
        start,
        duration_ms,
        status,
        reason,
        exit_status,
        kind: if exec { "exec" } else { "shell" },
        command: exec.then(|| COMMANDS[r.below(COMMANDS.len() as u64) as usize].to_owned()),
        bytes: r.below(5_000_000),
        segments: 1 + duration_ms / SEGMENT_INTERVAL.as_millis() as u64 / 4,
        viewed: r.below(100) < 3,
    }
}

/// Writes one session to the index the way the recorder does over its
/// life, then marks its text indexed as the web app's indexer does.
async fn index_one(store: &dyn Store, s: Synth) {
    let id = s.start.session_id.clone();
    store.recording_started(s.start.clone()).await.unwrap();
    store
        .recording_channel_started(
            &id,
            ChannelStart {
                channel: "0".into(),
                kind: s.kind.into(),
                command: s.command.clone(),
                record_input: false,
                cert_serial: s.start.cert_serial,
            },
        )
        .await
        .unwrap();
    store
        .recording_segment_uploaded(&id, "0", s.segments - 1)
        .await
        .unwrap();
    store
        .recording_status(&id, RecordingStatus::Uploading, None)
        .await
        .unwrap();
    let ended = s.start.started_at_ms + s.duration_ms;
    let sealed = s.status != RecordingStatus::Failed;
    let row = RecordingRow {
        start: s.start.clone(),
        ended_at_ms: Some(ended),
        duration_ms: Some(s.duration_ms),
        status: s.status,
        reason: s.reason.clone(),
        bytes: s.bytes,
        exit_status: s.exit_status,
        meta_key: sealed.then(|| format!("{}/meta.json", s.start.prefix)),
    };
    let channel = RecordingChannel {
        channel: "0".into(),
        kind: s.kind.into(),
        command: s.command.clone(),
        record_input: false,
        output_bytes: s.bytes,
        segments: s.segments,
        sealed_key: sealed.then(|| format!("{}/0.cast.zst", s.start.prefix)),
        exit_status: s.exit_status,
    };
    store.recording_sealed(row, vec![channel]).await.unwrap();
    if sealed {
        store
            .text_index_replace(&id, "0", Box::new(std::iter::empty()))
            .await
            .unwrap();
    }
    if s.viewed {
        let at = UNIX_EPOCH + Duration::from_millis(ended + 3_600_000);
        store
            .recording_viewed(&id, "audra.auditor@example.com", at)
            .await
            .unwrap();
    }
}

/// Hex SHA-256, what the store keeps of a cookie's token.
fn sha256_hex(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Stores a signed-in browser for `email` in `groups`, as the sign-in
/// callback does; returns the cookie's token.
async fn sign_in(store: &dyn Store, email: &str, groups: &[&str]) -> String {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).unwrap();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let now = SystemTime::now();
    let sub = format!("bench-{}", email.split('@').next().unwrap());
    store
        .web_session_create(WebSession {
            id_hash: sha256_hex(&token),
            sub: sub.clone(),
            email: Some(email.to_owned()),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            claims_json: serde_json::json!({"sub": sub, "email": email, "groups": groups})
                .to_string(),
            issuer: "http://127.0.0.1/unused-idp".to_owned(),
            csrf: format!("csrf-{}", &token[..16]),
            client_addr: "127.0.0.1".to_owned(),
            created_at: now,
            last_seen_at: now,
            expires_at: now + Duration::from_secs(12 * 3600),
            idle_timeout: Duration::from_secs(1800),
        })
        .await
        .unwrap();
    token
}

/// A port nobody listens on, for the IdP that is never contacted.
fn unused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A configuration for `gatehouse web` on `state_dir`, reading live
/// sessions from `spool_dir`.
fn write_config(path: &Path, user_ca: &Path, state_dir: &Path, spool_dir: &Path) {
    let text = format!(
        "listen: 127.0.0.1:0\n\
         user_ca: {ca}\n\
         state_dir: {state}\n\
         idp:\n  issuer: http://127.0.0.1:{port}/unused-idp\n  client_id: gatehouse-bench\n\
         recording:\n  spool_dir: {spool}\n  segment_interval: {interval}s\n\
         web:\n  listen: 127.0.0.1:0\n  public_url: http://127.0.0.1\n  plain_http: true\n  \
         access:\n    rules:\n\
         \x20     - allow: own-sessions\n        when: {{own: true}}\n        capabilities: [list, play]\n\
         \x20     - allow: auditors\n        when: {{groups: auditors}}\n        \
         capabilities: [list, play, search, download, watch_live]\n",
        ca = user_ca.display(),
        state = state_dir.display(),
        port = unused_port(),
        spool = spool_dir.display(),
        interval = SEGMENT_INTERVAL.as_secs(),
    );
    std::fs::write(path, text).unwrap();
}

/// A running `gatehouse web`.
struct Web {
    child: ChildGuard,
    addr: SocketAddr,
}

impl Web {
    fn start(bin: &Path, config: &Path) -> Web {
        let mut cmd = Command::new(bin);
        cmd.args(["web", "--config"]).arg(config);
        cmd.env("GATEHOUSE_LOG", "warn");
        let child = ChildGuard::spawn(cmd).unwrap();
        let line = child
            .wait_for_stdout_line(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("gatehouse web did not start: {e}"));
        let addr = line
            .strip_prefix("web listening on ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Web { child, addr }
    }

    /// VmRSS and VmHWM of the process, in KiB.
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.pid())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    fn stop(mut self) {
        let _ = self.child.signal("TERM");
        if self.child.wait_exit(Duration::from_secs(10)).is_none() {
            eprintln!("gatehouse web did not stop on SIGTERM; killing it");
        }
        let log = self.child.stderr_text();
        if !log.trim().is_empty() {
            eprintln!("--- gatehouse web said ---\n{}", log.trim_end());
        }
        self.child.kill();
    }
}

/// Undoes chunked transfer coding as bytes arrive.
#[derive(Default)]
struct Chunked {
    raw: Vec<u8>,
    /// Bytes of the current chunk still to come (with its CRLF).
    left: Option<usize>,
    done: bool,
}

impl Chunked {
    fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        self.raw.extend_from_slice(data);
        loop {
            match self.left {
                None => {
                    let Some(end) = find(&self.raw, b"\r\n") else {
                        return;
                    };
                    let line = String::from_utf8_lossy(&self.raw[..end]).to_string();
                    let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
                        .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
                    self.raw.drain(..end + 2);
                    if size == 0 {
                        self.done = true;
                        return;
                    }
                    self.left = Some(size + 2);
                }
                Some(left) => {
                    if self.raw.len() < left {
                        return;
                    }
                    out.extend_from_slice(&self.raw[..left - 2]);
                    self.raw.drain(..left);
                    self.left = None;
                }
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One keep-alive HTTP/1.1 connection.
struct Http {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// Reads the status line and headers; returns the status, the headers
/// (lower-case names) and what was read past them.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> (u16, Vec<(String, String)>) {
    let mut tmp = [0u8; 16 * 1024];
    let end = loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut tmp).await.unwrap();
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    buf.drain(..end + 4);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers)
}

fn request(addr: SocketAddr, path: &str, cookie: &str, accept: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: __Host-gatehouse={cookie}\r\n\
         Accept: {accept}\r\nUser-Agent: web_bench\r\n\r\n"
    )
}

impl Http {
    async fn connect(addr: SocketAddr) -> Http {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Http {
            stream,
            buf: Vec::new(),
        }
    }

    /// `GET path`: the status and the body.
    async fn get(&mut self, addr: SocketAddr, path: &str, cookie: &str) -> (u16, String) {
        self.stream
            .write_all(request(addr, path, cookie, "text/html").as_bytes())
            .await
            .unwrap();
        let (status, headers) = read_head(&mut self.stream, &mut self.buf).await;
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let mut tmp = [0u8; 64 * 1024];
        let mut body = Vec::new();
        if let Some(len) = header("content-length") {
            let len: usize = len.parse().unwrap();
            while self.buf.len() < len {
                let n = self.stream.read(&mut tmp).await.unwrap();
                assert!(n > 0, "the server closed the connection");
                self.buf.extend_from_slice(&tmp[..n]);
            }
            body = self.buf.drain(..len).collect();
        } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let mut dec = Chunked::default();
            let pending = std::mem::take(&mut self.buf);
            dec.feed(&pending, &mut body);
            while !dec.done {
                let n = self.stream.read(&mut tmp).await.unwrap();
                assert!(n > 0, "the server closed the connection");
                dec.feed(&tmp[..n], &mut body);
            }
            // The empty trailer's CRLF.
            while dec.raw.len() < 2 {
                let n = self.stream.read(&mut tmp).await.unwrap();
                assert!(n > 0, "the server closed the connection");
                dec.raw.extend_from_slice(&tmp[..n]);
            }
            self.buf = dec.raw.split_off(2);
        } else {
            panic!("a response without a length: {headers:?}");
        }
        (status, String::from_utf8(body).unwrap())
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1000.0;
    if v < 10.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.1} ms")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// What a page showed.
struct PageCheck {
    rows: usize,
    older: bool,
    users: std::collections::BTreeSet<String>,
}

fn check_page(html: &str) -> PageCheck {
    let users = html
        .split("<td class=\"user\">")
        .skip(1)
        .filter_map(|s| s.split("</td>").next())
        .map(str::to_owned)
        .collect();
    PageCheck {
        rows: html.matches("<tr data-session=").count(),
        older: html.contains("id=\"older\""),
        users,
    }
}

/// One timed page: who asks, what, and what came back.
struct PageFigures {
    viewer: &'static str,
    label: String,
    path: String,
    rows: usize,
    older: bool,
    bytes: usize,
    times: Vec<Duration>,
}

/// Figures of the list step.
struct ListFigures {
    sessions: u64,
    built: Option<Duration>,
    db_bytes: u64,
    counts: BTreeMap<&'static str, usize>,
    route: String,
    route_sessions: usize,
    pages: Vec<PageFigures>,
    memory_idle: (u64, u64),
    memory_after: (u64, u64),
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

async fn count(store: &dyn Store, filter: state::RecordingFilter) -> usize {
    store.recordings(filter).await.unwrap().len()
}

async fn list_bench(bin: &Path, dir: &Path, user_ca: &Path, n: u64) -> ListFigures {
    let root = dir.join("list");
    let state_dir = root.join("state");
    let complete = root.join("complete");
    let reuse = std::fs::read_to_string(&complete).ok().as_deref() == Some(&n.to_string());
    if !reuse {
        let _ = std::fs::remove_dir_all(&root);
    }
    std::fs::create_dir_all(&root).unwrap();
    let store: Arc<dyn Store> = Arc::new(Sqlite::open(&state_dir).unwrap());
    let corpus = Corpus::new();
    let built = if reuse {
        eprintln!(
            "list: reusing the index of {n} sessions in {}",
            state_dir.display()
        );
        None
    } else {
        eprintln!("list: indexing {n} sessions through the recorder's Store calls");
        let end_ms = now_ms() - 3_600_000;
        let t = Instant::now();
        for i in 0..n {
            index_one(store.as_ref(), synth(&corpus, i, n, end_ms)).await;
            if (i + 1) % 10_000 == 0 {
                let s = t.elapsed().as_secs_f64();
                eprintln!(
                    "  {} sessions, {:.0}/s, {:.0} s left",
                    i + 1,
                    (i + 1) as f64 / s,
                    s / (i + 1) as f64 * (n - i - 1) as f64
                );
            }
        }
        std::fs::write(&complete, n.to_string()).unwrap();
        Some(t.elapsed())
    };
    let db_bytes = dir_bytes(&state_dir);

    // The viewers: an auditor, the busiest person, and the 100th.
    let busy = corpus.people[0].clone();
    let typical = corpus.people[99].clone();
    let route = corpus.routes[9].clone();
    let by_identity = |who: &str| state::RecordingFilter {
        identity: Some(who.to_owned()),
        ..Default::default()
    };
    let mut counts = BTreeMap::new();
    counts.insert("busy", count(store.as_ref(), by_identity(&busy)).await);
    counts.insert(
        "typical",
        count(store.as_ref(), by_identity(&typical)).await,
    );
    let route_sessions = count(
        store.as_ref(),
        state::RecordingFilter {
            route: Some(route.clone()),
            ..Default::default()
        },
    )
    .await;
    let auditor = sign_in(store.as_ref(), "audra.auditor@example.com", &["auditors"]).await;
    let busy_token = sign_in(store.as_ref(), &busy, &["staff"]).await;
    let typical_token = sign_in(store.as_ref(), &typical, &["staff"]).await;
    drop(store);

    let config = root.join("web.yaml");
    write_config(&config, user_ca, &state_dir, &root.join("spool"));
    let web = Web::start(bin, &config);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let memory_idle = web.memory();
    let addr = web.addr;
    let mut http = Http::connect(addr).await;

    // The second page of the auditor's list, by the first page's link.
    let (status, first) = http.get(addr, "/sessions", &auditor).await;
    assert_eq!(status, 200, "{first}");
    let older = first
        .split("id=\"older\" href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the first page links to older sessions")
        .replace("&amp;", "&");

    let mut pages: Vec<PageFigures> = Vec::new();
    let mut add = |viewer: &'static str, token: &str, label: &str, path: String| {
        pages.push(PageFigures {
            viewer,
            label: label.to_owned(),
            path,
            rows: 0,
            older: false,
            bytes: 0,
            times: Vec::new(),
        });
        token.to_owned()
    };
    let mut tokens = vec![
        add(
            "auditor (list: all)",
            &auditor,
            "first page",
            "/sessions".into(),
        ),
        add(
            "auditor (list: all)",
            &auditor,
            "second page (`after=`)",
            older,
        ),
        add(
            "auditor (list: all)",
            &auditor,
            "`?user=` (the typical user)",
            format!("/sessions?user={}", url_encode(&typical)),
        ),
        add(
            "auditor (list: all)",
            &auditor,
            "`?route=`",
            format!("/sessions?route={}", url_encode(&route)),
        ),
    ];
    tokens.push(add(
        "busy user (own only)",
        &busy_token,
        "first page",
        "/sessions".into(),
    ));
    tokens.push(add(
        "busy user (own only)",
        &busy_token,
        "`?route=`",
        format!("/sessions?route={}", url_encode(&route)),
    ));
    tokens.push(add(
        "typical user (own only)",
        &typical_token,
        "first page",
        "/sessions".into(),
    ));
    tokens.push(add(
        "typical user (own only)",
        &typical_token,
        "`?user=` (self)",
        format!("/sessions?user={}", url_encode(&typical)),
    ));
    tokens.push(add(
        "typical user (own only)",
        &typical_token,
        "`?route=`",
        format!("/sessions?route={}", url_encode(&route)),
    ));

    eprintln!(
        "list: {} pages x ({WARMUP} warm-up + {ROUNDS}) requests",
        pages.len()
    );
    let mut rng = Lcg(11);
    for round in 0..WARMUP + ROUNDS {
        let mut order: Vec<usize> = (0..pages.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for i in order {
            let t = Instant::now();
            let (status, html) = http.get(addr, &pages[i].path, &tokens[i]).await;
            let took = t.elapsed();
            assert_eq!(status, 200, "{} {}: {html}", pages[i].viewer, pages[i].path);
            if round == 0 {
                let check = check_page(&html);
                let page = &mut pages[i];
                page.rows = check.rows;
                page.older = check.older;
                page.bytes = html.len();
                if page.viewer.starts_with("busy") {
                    assert!(check.users.iter().all(|u| *u == busy), "{:?}", check.users);
                }
                if page.viewer.starts_with("typical") {
                    assert!(
                        check.users.iter().all(|u| *u == typical),
                        "{:?}",
                        check.users
                    );
                }
            }
            if round >= WARMUP {
                pages[i].times.push(took);
            }
        }
    }
    for p in &mut pages {
        p.times.sort();
    }
    let memory_after = web.memory();
    web.stop();
    ListFigures {
        sessions: n,
        built,
        db_bytes,
        counts,
        route,
        route_sessions,
        pages,
        memory_idle,
        memory_after,
    }
}

/// What one watcher saw: each sequence number with the time it arrived.
struct Seen {
    events: Vec<(u64, Instant)>,
    /// When the response's headers and the first message arrived.
    head_at: Instant,
    first_at: Option<Instant>,
}

/// One Server-Sent-Events watcher over raw HTTP/1.1, until `stop` or the
/// `done` event.
async fn watcher(
    addr: SocketAddr,
    path: String,
    cookie: String,
    ready: tokio::sync::mpsc::UnboundedSender<()>,
    stop: CancellationToken,
) -> Seen {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .write_all(request(addr, &path, &cookie, "text/event-stream").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let (status, headers) = read_head(&mut stream, &mut buf).await;
    let head_at = Instant::now();
    assert_eq!(status, 200, "{path}: {headers:?}");
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("text/event-stream")),
        "{headers:?}"
    );
    let mut dec = Chunked::default();
    let mut body = Vec::new();
    dec.feed(&buf, &mut body);
    let mut seen = Seen {
        events: Vec::new(),
        head_at,
        first_at: None,
    };
    let mut tmp = [0u8; 64 * 1024];
    // What came with the headers is handled before the first read.
    let mut at = head_at;
    loop {
        while let Some(end) = find(&body, b"\n\n") {
            let event: Vec<u8> = body.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            let mut name = "message";
            let mut data = String::new();
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = if v.trim() == "done" { "done" } else { "other" };
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            if name == "done" {
                return seen;
            }
            if data.is_empty() {
                continue; // a keep-alive comment
            }
            if seen.first_at.is_none() {
                seen.first_at = Some(at);
                let _ = ready.send(());
            }
            let Ok(serde_json::Value::Array(v)) = serde_json::from_str(&data) else {
                continue; // the screen to start from
            };
            if v.get(1).and_then(|c| c.as_str()) != Some("o") {
                continue;
            }
            let out = v.get(2).and_then(|t| t.as_str()).unwrap_or_default();
            for part in out.split("seq=").skip(1) {
                let digits = part.bytes().take_while(u8::is_ascii_digit).count();
                if let Ok(seq) = part[..digits].parse::<u64>() {
                    seen.events.push((seq, at));
                }
            }
        }
        let n = tokio::select! {
            () = stop.cancelled() => return seen,
            r = stream.read(&mut tmp) => r.unwrap(),
        };
        at = Instant::now();
        if n == 0 {
            return seen;
        }
        dec.feed(&tmp[..n], &mut body);
    }
}

/// The lag figures of one phase.
struct Phase {
    watchers: usize,
    events: usize,
    expected: usize,
    lags: Vec<Duration>,
    memory: (u64, u64),
    connect: Duration,
}

/// Opens `n` watchers, measures for `measure` the events written after
/// all of them got their first message, waits `tail` more for late ones,
/// reads the web process's memory, and closes them.
async fn phase(
    web: &Web,
    path: &str,
    cookie: &str,
    n: usize,
    measure: Duration,
    tail: Duration,
    written: &Arc<Mutex<Vec<Instant>>>,
) -> Phase {
    let stop = CancellationToken::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    let t = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(watcher(
                web.addr,
                path.to_owned(),
                cookie.to_owned(),
                ready_tx.clone(),
                stop.clone(),
            ))
        })
        .collect();
    for _ in 0..n {
        tokio::time::timeout(Duration::from_secs(60), ready_rx.recv())
            .await
            .expect("every watcher gets a first message within 60 s");
    }
    let connect = t.elapsed();
    // A fresh feed hands out the session's history first: measure only
    // what is written from now on.
    let from = Instant::now() + Duration::from_millis(500);
    tokio::time::sleep(measure + Duration::from_millis(500) + tail).await;
    let to = from + measure;
    let memory = web.memory();
    stop.cancel();
    let mut seen = Vec::new();
    for h in handles {
        seen.push(h.await.unwrap());
    }
    let mut heads: Vec<Duration> = seen.iter().map(|s| s.head_at - t).collect();
    let mut firsts: Vec<Duration> = seen
        .iter()
        .filter_map(|s| s.first_at.map(|f| f - t))
        .collect();
    heads.sort();
    firsts.sort();
    eprintln!(
        "  {n} watcher(s): response headers after {} (p50) / {} (last), first message after {} / {}",
        ms(pct(&heads, 0.5)),
        ms(heads.last().copied().unwrap_or_default()),
        ms(pct(&firsts, 0.5)),
        ms(firsts.last().copied().unwrap_or_default()),
    );
    let written = written.lock().unwrap().clone();
    let window: BTreeMap<u64, Instant> = written
        .iter()
        .enumerate()
        .filter(|(_, at)| **at >= from && **at < to)
        .map(|(seq, at)| (seq as u64, *at))
        .collect();
    let mut lags = Vec::new();
    for s in &seen {
        let mut got = std::collections::HashSet::new();
        for (seq, at) in &s.events {
            if let Some(w) = window.get(seq)
                && got.insert(*seq)
            {
                lags.push(at.saturating_duration_since(*w));
            }
        }
    }
    lags.sort();
    Phase {
        watchers: n,
        events: window.len(),
        expected: window.len() * n,
        lags,
        memory,
        connect,
    }
}

/// Figures of one web process following the live session.
struct LiveCase {
    name: &'static str,
    idle: (u64, u64),
    phases: Vec<Phase>,
}

/// Writes a numbered output line every [`WRITE_EVERY`] until `stop`,
/// noting when each write started.
async fn write_lines(
    mut ch: recorder::ChannelRecorder,
    written: Arc<Mutex<Vec<Instant>>>,
    stop: CancellationToken,
) -> recorder::ChannelRecorder {
    let mut tick = tokio::time::interval(WRITE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    loop {
        tokio::select! {
            () = stop.cancelled() => return ch,
            _ = tick.tick() => {}
        }
        let line = format!(
            "\x1b[32m{:>6}.{:03}\x1b[0m worker[{}]: processed batch seq={n:06} in {} ms, queue depth {}\r\n",
            n / 5,
            (n % 5) * 200,
            n % 8,
            10 + n % 90,
            n % 17
        );
        let at = Instant::now();
        ch.output(line.as_bytes()).unwrap();
        written.lock().unwrap().push(at);
        n += 1;
    }
}

async fn live_bench(bin: &Path, dir: &Path, user_ca: &Path, watchers: usize) -> Vec<LiveCase> {
    let root = dir.join("live");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let state_dir = root.join("state");
    let spool = root.join("spool");
    let elsewhere = root.join("spool-elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let store: Arc<dyn Store> = Arc::new(Sqlite::open(&state_dir).unwrap());
    let cookie = sign_in(store.as_ref(), "audra.auditor@example.com", &["auditors"]).await;

    // The gateway's side: the recorder on this machine's spool, writing
    // the index through the same state database.
    let mut rc = RecorderConfig::new(&spool, StorageConfig::File(state_dir.join("recordings")));
    rc.segment_interval = SEGMENT_INTERVAL;
    let signer: Arc<dyn Signer> = Arc::new(Ed25519Signer::from_seed(&[7; 32]).unwrap());
    let rec = Recorder::open(rc, signer, Arc::clone(&store)).unwrap();
    let session = rec
        .start_session(SessionInfo {
            session_id: uuid_like(),
            identity: "anna.schmidt0@example.com".into(),
            login: "deploy".into(),
            route: "prod-api-1".into(),
            target: "10.0.3.7:22".into(),
            client_addr: "192.0.2.10:50022".into(),
            client_key_fingerprint: None,
            cert_serial: None,
        })
        .await
        .unwrap();
    let id = session.id().to_owned();
    store
        .session_opened(LiveSession {
            session_id: id.clone(),
            gateway_id: "gatehouse".into(),
            identity: "anna.schmidt0@example.com".into(),
            route: "prod-api-1".into(),
            started_at_ms: now_ms(),
        })
        .await
        .unwrap();
    let ch = session
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
    let written = Arc::new(Mutex::new(Vec::new()));
    let stop_writing = CancellationToken::new();
    let writer = tokio::spawn(write_lines(ch, Arc::clone(&written), stop_writing.clone()));
    let path = format!("/sessions/{id}/live?channel=0");

    let mut cases = Vec::new();
    for (name, spool_dir, measure, tail) in [
        (
            "this machine's spool",
            &spool,
            Duration::from_secs(30),
            Duration::from_secs(3),
        ),
        (
            "uploaded segments (no spool)",
            &elsewhere,
            Duration::from_secs(40),
            Duration::from_secs(8),
        ),
    ] {
        let config = root.join(format!("web-{}.yaml", cases.len()));
        write_config(&config, user_ca, &state_dir, spool_dir);
        let web = Web::start(bin, &config);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let idle = web.memory();
        let mut phases = Vec::new();
        for n in [1, watchers] {
            eprintln!("live ({name}): {n} watcher(s) for {} s", measure.as_secs());
            phases.push(phase(&web, &path, &cookie, n, measure, tail, &written).await);
        }
        web.stop();
        cases.push(LiveCase { name, idle, phases });
    }

    stop_writing.cancel();
    let mut ch = writer.await.unwrap();
    ch.exit(0).unwrap();
    ch.close().unwrap();
    let report = session.seal().await;
    eprintln!("live: the session is {:?}", report.status);
    store.session_closed(&id).await.unwrap();
    cases
}

/// IPs the search corpus of `search_bench` plants; searched for.
const PLANTED_IPS: &[&str] = &["10.20.30.40", "192.168.77.12", "172.16.5.250"];

/// The searches of `search_bench`, by kind (the same list).
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

/// Figures of the search step.
struct SearchFigures {
    by_kind: BTreeMap<&'static str, (Vec<Duration>, usize)>,
    all: Vec<Duration>,
    filters: Vec<(String, usize, Duration, Vec<Duration>)>,
    memory: (u64, u64),
}

/// Step 6 (optional): the pages of `search_bench`'s corpus through the
/// web app: `GET /search?q=` for its queries and `GET /sessions?text=`.
async fn search_pages(bin: &Path, search_dir: &Path, user_ca: &Path) -> SearchFigures {
    let state_dir = search_dir.join("search");
    assert!(
        Sqlite::exists(&state_dir),
        "no search_bench index in {}",
        state_dir.display()
    );
    let store: Arc<dyn Store> = Arc::new(Sqlite::open(&state_dir).unwrap());
    // Searches are limited to 20 at once per browser session: a fresh
    // one every 20 requests keeps the limiter out of the figures.
    let mut tokens = Vec::new();
    for _ in 0..40 {
        tokens.push(sign_in(store.as_ref(), "audra.auditor@example.com", &["auditors"]).await);
    }
    drop(store);
    let config = search_dir.join("web-search.yaml");
    write_config(&config, user_ca, &state_dir, &search_dir.join("web-spool"));
    let web = Web::start(bin, &config);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let addr = web.addr;
    let mut http = Http::connect(addr).await;
    let qs = queries();
    let mut order: Vec<usize> = (0..qs.len())
        .chain((0..qs.len()).flat_map(|i| std::iter::repeat_n(i, 10)))
        .collect();
    let warmup = qs.len();
    let mut rng = Lcg(3);
    for i in (warmup + 1..order.len()).rev() {
        let j = warmup + rng.below((i - warmup) as u64 + 1) as usize;
        order.swap(i, j);
    }
    eprintln!(
        "search: {} /search requests ({} warm-up)",
        order.len(),
        warmup
    );
    let mut by_kind: BTreeMap<&'static str, (Vec<Duration>, usize)> = BTreeMap::new();
    let mut all = Vec::new();
    for (n, &i) in order.iter().enumerate() {
        let (kind, text) = &qs[i];
        let path = format!("/search?q={}", url_encode(text));
        let t = Instant::now();
        let (status, html) = http.get(addr, &path, &tokens[n / 20]).await;
        let took = t.elapsed();
        assert_eq!(status, 200, "{path}: {html}");
        if n >= warmup {
            let hits = html.matches("<li data-session=").count();
            let e = by_kind.entry(kind).or_default();
            e.0.push(took);
            e.1 = e.1.max(hits);
            all.push(took);
        }
    }
    let mut filters = Vec::new();
    for text in ["xylophone-3", "10.20.30.40", "rm -rf", "error"] {
        let path = format!("/sessions?text={}", url_encode(text));
        let mut times = Vec::new();
        let mut rows = 0;
        for _ in 0..6 {
            let t = Instant::now();
            let (status, html) = http.get(addr, &path, &tokens[0]).await;
            let took = t.elapsed();
            assert_eq!(status, 200, "{path}: {html}");
            rows = check_page(&html).rows;
            times.push(took);
        }
        // The first request reads the text's whole match list from disk
        // (a search's first page reads only its newest end).
        let first = times.remove(0);
        times.sort();
        eprintln!("search: {path}: {rows} rows, p50 {}", ms(pct(&times, 0.5)));
        filters.push((text.to_owned(), rows, first, times));
    }
    for (times, _) in by_kind.values_mut() {
        times.sort();
    }
    all.sort();
    let memory = web.memory();
    web.stop();
    SearchFigures {
        by_kind,
        all,
        filters,
        memory,
    }
}

fn uuid_like() -> String {
    let mut bytes = [0u8; 10];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).unwrap();
    let rest: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{:012x}7{}", now_ms(), &rest[..19])
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(
        args.get(1)
            .expect("usage: web_bench DIR [SESSIONS] [WATCHERS] [SEARCH_DIR]"),
    );
    let sessions: u64 = args
        .get(2)
        .map_or(100_000, |n| n.parse().expect("SESSIONS"));
    let watchers: usize = args.get(3).map_or(100, |n| n.parse().expect("WATCHERS"));
    std::fs::create_dir_all(&dir).unwrap();
    let dir = std::fs::canonicalize(&dir).unwrap();
    let bin = std::env::var_os("GATEHOUSE").map_or_else(
        || {
            let exe = std::env::current_exe().unwrap();
            exe.parent().unwrap().parent().unwrap().join("gatehouse")
        },
        PathBuf::from,
    );
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --release -p gatehouse` or set GATEHOUSE",
        bin.display()
    );
    let user_ca = dir.join("user_ca");
    if !user_ca.exists() {
        let out = Command::new(&bin)
            .args(["ca", "init", "--key"])
            .arg(&user_ca)
            .output()
            .unwrap();
        assert!(out.status.success(), "ca init: {out:?}");
    }
    let rt = runtime();
    let list = rt.block_on(list_bench(&bin, &dir, &user_ca, sessions));
    let live = rt.block_on(live_bench(&bin, &dir, &user_ca, watchers));
    let search = args
        .get(4)
        .map(|d| rt.block_on(search_pages(&bin, Path::new(d), &user_ca)));
    report(&list, &live, search.as_ref());
}

fn report(list: &ListFigures, live: &[LiveCase], search: Option<&SearchFigures>) {
    let met = |ok: bool| if ok { "met" } else { "**not met**" };
    println!("### Session list: {} indexed sessions\n", list.sessions);
    match list.built {
        Some(t) => println!(
            "Index built through the recorder's `Store` calls (five per session, plus the \
             text mark) in {:.0} s ({:.0} sessions/s); database {:.0} MiB.",
            t.as_secs_f64(),
            list.sessions as f64 / t.as_secs_f64(),
            list.db_bytes as f64 / f64::from(1 << 20)
        ),
        None => println!(
            "Index reused from an earlier run; database {:.0} MiB.",
            list.db_bytes as f64 / f64::from(1 << 20)
        ),
    }
    println!(
        "The busy user has {} sessions, the typical user {}; route `{}` has {}.\n",
        list.counts["busy"], list.counts["typical"], list.route, list.route_sessions
    );
    println!(
        "Time from sending `GET` to the page's last byte on one keep-alive loopback \
         connection, {ROUNDS} requests per page (after {WARMUP} warm-up rounds), pages \
         interleaved.\n"
    );
    println!("| viewer | page | rows | older link | KiB | p50 | p99 | max | p50 ≤ 50 ms |");
    println!("|---|---|---:|---|---:|---:|---:|---:|---|");
    for p in &list.pages {
        let p50 = pct(&p.times, 0.5);
        println!(
            "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} |",
            p.viewer,
            p.label,
            p.rows,
            if p.older { "yes" } else { "no" },
            p.bytes as f64 / 1024.0,
            ms(p50),
            ms(pct(&p.times, 0.99)),
            ms(p.times.last().copied().unwrap_or_default()),
            met(p50 <= Duration::from_millis(50))
        );
    }
    println!(
        "\nThe web process: VmRSS {} idle (VmHWM {}), {} after the requests (VmHWM {}).\n",
        mib(list.memory_idle.0),
        mib(list.memory_idle.1),
        mib(list.memory_after.0),
        mib(list.memory_after.1)
    );
    println!(
        "### Live watching: a line every {} ms, `segment_interval` {} s\n",
        WRITE_EVERY.as_millis(),
        SEGMENT_INTERVAL.as_secs()
    );
    println!(
        "| source | watchers | connect | events | received / expected | p50 | p99 | max | target | verdict (p99) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|---|");
    for (i, case) in live.iter().enumerate() {
        let target = if i == 0 {
            Duration::from_secs(1)
        } else {
            SEGMENT_INTERVAL
        };
        for p in &case.phases {
            let p99 = pct(&p.lags, 0.99);
            println!(
                "| {} | {} | {} | {} | {} / {} | {} | {} | {} | ≤ {} s | {} |",
                case.name,
                p.watchers,
                ms(p.connect),
                p.events,
                p.lags.len(),
                p.expected,
                ms(pct(&p.lags, 0.5)),
                ms(p99),
                ms(p.lags.last().copied().unwrap_or_default()),
                target.as_secs(),
                met(p99 <= target && p.lags.len() == p.expected)
            );
        }
    }
    println!("\n| web process memory | VmRSS | VmHWM |");
    println!("|---|---:|---:|");
    for case in live {
        println!(
            "| {}: idle | {} | {} |",
            case.name,
            mib(case.idle.0),
            mib(case.idle.1)
        );
        for p in &case.phases {
            println!(
                "| {}: {} watcher(s) | {} | {} |",
                case.name,
                p.watchers,
                mib(p.memory.0),
                mib(p.memory.1)
            );
        }
    }
    let Some(search) = search else {
        return;
    };
    println!("\n### Search pages: `search_bench`'s corpus through the web app\n");
    println!(
        "`GET /search?q=` as an auditor (search and play on every session), {} pages after one \
         warm-up pass, queries shuffled, a fresh browser session every 20 requests (the \
         per-session limit is 20 at once); time to the page's last byte.\n",
        search.all.len()
    );
    println!("| kind | p50 | p99 | most hits shown |");
    println!("|---|---:|---:|---:|");
    for (kind, (times, hits)) in &search.by_kind {
        println!(
            "| {kind} | {} | {} | {hits} |",
            ms(pct(times, 0.5)),
            ms(pct(times, 0.99))
        );
    }
    let (p50, p99) = (pct(&search.all, 0.5), pct(&search.all, 0.99));
    println!(
        "| **all** | **{}** ({} p50 ≤ 100 ms) | **{}** ({} p99 ≤ 300 ms) | |",
        ms(p50),
        met(p50 <= Duration::from_millis(100)),
        ms(p99),
        met(p99 <= Duration::from_millis(300))
    );
    println!("\n| `GET /sessions?text=` | rows | first request | p50 of the next 5 | max |");
    println!("|---|---:|---:|---:|---:|");
    for (text, rows, first, times) in &search.filters {
        println!(
            "| `{text}` | {rows} | {} | {} | {} |",
            ms(*first),
            ms(pct(times, 0.5)),
            ms(times.last().copied().unwrap_or_default())
        );
    }
    println!(
        "\nThe web process after the searches: VmRSS {}, VmHWM {}.",
        mib(search.memory.0),
        mib(search.memory.1)
    );
}
