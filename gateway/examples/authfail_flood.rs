//! Load generator for `bench/flood.py`: failed authentications at a fixed
//! rate, from 127.0.0.2-127.0.0.254 in turn.
//!
//!     authfail_flood PORT RATE SECONDS [MAX_IN_FLIGHT]
//!
//! Each attempt is a real SSH client (russh's): it connects from the next
//! source address, completes the key exchange and offers a key of its own
//! that the gateway does not know, signed, as `ghbench@target`. At 200 a
//! second a process per attempt (OpenSSH's `ssh`) would need more CPU than
//! a 2-core machine has, so the attempts share one process. Prints one
//! JSON object of counts on stdout when done.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use russh::client;
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};

/// What became of the attempts.
#[derive(Default)]
struct Counts {
    started: AtomicU64,
    /// Authentication ran and failed: what the load is for.
    refused: AtomicU64,
    got_in: AtomicU64,
    /// The gateway closed before authentication finished (a penalized
    /// source is refused at accept, a full pool sheds).
    closed: AtomicU64,
    connect_errors: AtomicU64,
    timed_out: AtomicU64,
    /// Not started: MAX_IN_FLIGHT attempts were still running.
    skipped: AtomicU64,
}

struct AnyHostKey;

impl client::Handler for AnyHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

enum Outcome {
    Refused,
    GotIn,
    Closed,
    ConnectError,
}

async fn attempt(
    port: u16,
    source: Ipv4Addr,
    key: Arc<russh::keys::PrivateKey>,
    config: Arc<client::Config>,
) -> Outcome {
    let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
        return Outcome::ConnectError;
    };
    if socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).is_err() {
        return Outcome::ConnectError;
    }
    let Ok(stream) = socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
    else {
        return Outcome::ConnectError;
    };
    let Ok(mut handle) = client::connect_stream(config, stream, AnyHostKey).await else {
        return Outcome::Closed;
    };
    match handle
        .authenticate_publickey("ghbench@target", PrivateKeyWithHashAlg::new(key, None))
        .await
    {
        Ok(result) if result.success() => Outcome::GotIn,
        Ok(_) => {
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, "", "en")
                .await;
            Outcome::Refused
        }
        Err(_) => Outcome::Closed,
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: Option<u64>| -> u64 {
        args.get(i)
            .map(|s| s.parse().expect("a number"))
            .or(default)
            .unwrap_or_else(|| panic!("usage: authfail_flood PORT RATE SECONDS [MAX_IN_FLIGHT]"))
    };
    let port = u16::try_from(arg(0, None)).expect("a port");
    let rate = arg(1, None).max(1);
    let seconds = arg(2, None);
    let max_in_flight = arg(3, Some(400));

    let key = Arc::new(gateway::keys::new_ed25519_key());
    let config = Arc::new(client::Config {
        inactivity_timeout: Some(Duration::from_secs(15)),
        ..client::Config::default()
    });
    let counts = Arc::new(Counts::default());
    let in_flight = Arc::new(AtomicU64::new(0));
    let mut tick = tokio::time::interval(Duration::from_secs(1) / u32::try_from(rate).unwrap_or(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let stop_at = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    let mut i: u64 = 0;
    while tokio::time::Instant::now() < stop_at {
        tick.tick().await;
        if in_flight.load(Ordering::Relaxed) >= max_in_flight {
            counts.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let source = Ipv4Addr::new(127, 0, 0, 2 + u8::try_from(i % 253).unwrap_or(0));
        i += 1;
        counts.started.fetch_add(1, Ordering::Relaxed);
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (key, config, counts, in_flight) = (
            Arc::clone(&key),
            Arc::clone(&config),
            Arc::clone(&counts),
            Arc::clone(&in_flight),
        );
        tasks.spawn(async move {
            let outcome =
                tokio::time::timeout(Duration::from_secs(20), attempt(port, source, key, config))
                    .await;
            let counter = match outcome {
                Ok(Outcome::Refused) => &counts.refused,
                Ok(Outcome::GotIn) => &counts.got_in,
                Ok(Outcome::Closed) => &counts.closed,
                Ok(Outcome::ConnectError) => &counts.connect_errors,
                Err(_) => &counts.timed_out,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
        while tasks.try_join_next().is_some() {}
    }
    // Attempts still running are cut off with the process.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "{{\"authfail_started\": {}, \"authfail_refused\": {}, \"authfail_got_in\": {}, \
         \"authfail_closed\": {}, \"authfail_connect_errors\": {}, \"authfail_timed_out\": {}, \
         \"authfail_skipped\": {}, \"authfail_seconds\": {seconds}}}",
        n(&counts.started),
        n(&counts.refused),
        n(&counts.got_in),
        n(&counts.closed),
        n(&counts.connect_errors),
        n(&counts.timed_out),
        n(&counts.skipped),
    );
}
