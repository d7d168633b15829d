//! Measures what recording output costs in the recorder alone: CPU per GiB
//! of `ChannelRecorder::output` (encode + spool write) for random bytes and
//! for terminal-like text, then the seal.
//!
//! `cargo run --release -p recorder --example output_cost [MIB] [random|text]`
//!
//! "output" is the whole process's CPU while the output is recorded (the
//! uploader's compression and hashing included); "caller" is the CPU of the
//! thread that called `output()`, which is what slows the user's stream.

// A measurement tool: failing loudly is fine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use recorder::asciicast::Term;
use recorder::{
    ChannelKind, ChannelSpec, Ed25519Signer, Recorder, RecorderConfig, SessionInfo, StorageConfig,
};

fn cpu_seconds() -> f64 {
    stat_cpu_seconds("/proc/self/stat")
}

/// CPU of the calling thread alone: what `output()` costs the task that
/// pumps the channel, without the uploader and fsync work on other threads.
fn thread_cpu_seconds() -> f64 {
    stat_cpu_seconds("/proc/thread-self/stat")
}

fn stat_cpu_seconds(path: &str) -> f64 {
    // utime + stime, from a /proc stat file, in clock ticks.
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main]
async fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(128);
    let only = std::env::args().nth(2);
    let dir = tempfile::tempdir().unwrap();
    let storage = StorageConfig::File(dir.path().join("store"));
    let config = RecorderConfig::new(dir.path().join("spool"), storage);
    let signer = Arc::new(Ed25519Signer::from_seed(&[7u8; 32]).unwrap());
    let recorder = Recorder::open(
        config,
        signer,
        Arc::new(state::Sqlite::open(&dir.path().join("state")).unwrap()),
    )
    .unwrap();
    let mut random = vec![0u8; 32 * 1024];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for b in random.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *b = state as u8;
    }
    let line = "drwxr-xr-x  2 root root  4096 Nov 22 07:00 some-directory-name.d\r\n";
    let text: Vec<u8> = line
        .as_bytes()
        .iter()
        .copied()
        .cycle()
        .take(32 * 1024)
        .collect();
    // Base64 text in 100-column lines, 8 MiB of it before it repeats: more
    // than zstd's window, so it compresses like real base64 output (about
    // 0.75), where the repeated line above compresses to almost nothing.
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut base64 = Vec::with_capacity(8 << 20);
    while base64.len() < 8 << 20 {
        for _ in 0..100 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            base64.extend(B64.get((state % 64) as usize));
        }
        base64.push(b'\n');
    }
    base64.truncate(8 << 20);
    for (name, data) in [("random", &random), ("text", &text), ("base64", &base64)] {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let session = recorder
            .start_session(SessionInfo {
                session_id: format!("bench-{name}"),
                identity: "bench".into(),
                login: "bench".into(),
                route: "bench".into(),
                target: "127.0.0.1:22".into(),
                client_addr: "127.0.0.1:1".into(),
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
                    cols: 80,
                    rows: 24,
                    term_type: None,
                },
                record_input: false,
                cert_serial: None,
            })
            .await
            .unwrap();
        let n = mib * 32;
        let cpu = cpu_seconds();
        let caller = thread_cpu_seconds();
        let wall = Instant::now();
        for chunk in data.chunks(32 * 1024).cycle().take(n) {
            ch.output(chunk).unwrap();
        }
        let out_cpu = cpu_seconds() - cpu;
        let caller_cpu = thread_cpu_seconds() - caller;
        let out_wall = wall.elapsed().as_secs_f64();
        drop(ch);
        let cpu = cpu_seconds();
        let wall = Instant::now();
        let report = session.seal().await;
        let seal_cpu = cpu_seconds() - cpu;
        let gib = mib as f64 / 1024.0;
        println!(
            "{name}: output {:.2} CPU s/GiB (caller {:.2}, {:.0} MiB/s wall), seal {:.2} CPU s/GiB ({:.1} s wall), {:?}",
            out_cpu / gib,
            caller_cpu / gib,
            mib as f64 / out_wall,
            seal_cpu / gib,
            wall.elapsed().as_secs_f64(),
            report.status
        );
    }
}
