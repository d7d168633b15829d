//! Limits that protect the gateway from clients that never authenticate.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::World;

/// Reads until EOF or `limit`, returning what arrived and when it ended.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<Duration>) {
    let start = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return (got, Some(start.elapsed())),
            Ok(n) => got.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (got, Some(start.elapsed())),
        }
    }
    (got, None)
}

#[test]
fn a_client_that_never_authenticates_is_closed_after_auth_timeout() {
    let w = World::new();
    let gw = w.start_with(&[w.route("t", "")], "limits: {auth_timeout: 2s}\n");
    let mut silent = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    let (got, closed_after) = read_until_closed(&mut silent, Duration::from_secs(20));
    assert!(
        got.starts_with(b"SSH-2.0-Gatehouse"),
        "banner first: {got:?}"
    );
    let closed_after = closed_after.expect("the gateway closes the silent connection");
    assert!(
        closed_after >= Duration::from_millis(1500),
        "closed too early ({closed_after:?}); the timeout is 2 s"
    );
}

#[test]
fn unauthenticated_connections_beyond_the_cap_are_refused() {
    let w = World::new();
    let gw = w.start_with(&[w.route("t", "")], "limits: {max_unauthenticated: 1}\n");
    // The first connection holds the only unauthenticated slot.
    let mut first = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    let mut banner = [0u8; 7];
    first.read_exact(&mut banner).unwrap();
    assert_eq!(&banner, b"SSH-2.0");
    // The second is closed without a banner.
    let mut second = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    let (got, closed) = read_until_closed(&mut second, Duration::from_secs(10));
    assert!(closed.is_some(), "second connection stayed open");
    assert!(got.is_empty(), "refused connections get no banner: {got:?}");
    let log = gw.wait_for_log("event=\"connection.refused\"");
    assert!(log.contains("limit=\"max_unauthenticated\""), "{log}");
    // Once the slot is free again, a real client gets in.
    drop(first);
    std::thread::sleep(Duration::from_millis(300));
    let (code, out, err) = w.ssh(&gw, &format!("{}@t", common::LOGIN), &["echo in"]);
    assert_eq!((code, out.trim()), (0, "in"), "{err}");
}
