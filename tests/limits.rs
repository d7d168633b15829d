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

/// A TCP connection from `source` (a loopback address other than
/// 127.0.0.1, so the test's own logins stay apart from it).
fn connect_from(source: [u8; 4], port: u16) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(std::net::SocketAddr::from((source, 0)))
            .unwrap();
        let stream = socket
            .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .unwrap();
        stream.into_std().unwrap()
    })
}

/// Makes a blocking std stream of one that tokio handed over.
fn blocking(stream: TcpStream) -> TcpStream {
    stream.set_nonblocking(false).unwrap();
    stream
}

#[test]
fn a_full_unauthenticated_pool_sheds_a_silent_connection_for_a_newcomer() {
    let w = World::new();
    let gw = w.start_with(
        &[w.route("t", "")],
        "limits: {max_unauthenticated: 1, penalties: {exempt: [127.0.0.1]}}\n",
    );
    // The first connection holds the only unauthenticated slot, silently.
    let mut first = blocking(connect_from([127, 0, 0, 2], gw.port));
    let mut banner = [0u8; 7];
    first.read_exact(&mut banner).unwrap();
    assert_eq!(&banner, b"SSH-2.0");
    // A newcomer is not refused: it takes the silent one's slot.
    let mut second = blocking(connect_from([127, 0, 0, 3], gw.port));
    second.read_exact(&mut banner).unwrap();
    assert_eq!(&banner, b"SSH-2.0", "the newcomer gets a banner");
    let (_, closed) = read_until_closed(&mut first, Duration::from_secs(10));
    assert!(closed.is_some(), "the silent connection was closed");
    let log = gw.wait_for_log("event=\"connection.dropped\"");
    assert!(log.contains("reason=\"shed\""), "{log}");
    // And a real client gets in while the second one sits there.
    let (code, out, err) = w.ssh(&gw, &format!("{}@t", common::LOGIN), &["echo in"]);
    assert_eq!((code, out.trim()), (0, "in"), "{err}");
    drop(second);
}

#[test]
fn two_hundred_silent_connections_do_not_lock_out_real_logins() {
    let w = World::new();
    // Default limits: 64 unauthenticated slots, 10 per source.
    let gw = w.start(&[w.route("t", "")]);
    let silent: Vec<TcpStream> = (0..200u16)
        .map(|i| {
            let [hi, lo] = i.to_be_bytes();
            connect_from([127, 0, 2 + hi, 2 + lo], gw.port)
        })
        .collect();
    let mut got_in = 0;
    let mut errors = Vec::new();
    for _ in 0..5 {
        let (code, out, err) = w.ssh(&gw, &format!("{}@t", common::LOGIN), &["echo in"]);
        if (code, out.trim()) == (0, "in") {
            got_in += 1;
        } else {
            errors.push(err);
        }
    }
    assert_eq!(got_in, 5, "5 of 5 logins get in: {errors:?}");
    let log = gw.wait_for_log("event=\"connection.dropped\"");
    assert!(log.contains("reason=\"shed\""), "{log}");
    drop(silent);
}

#[test]
fn a_silent_connection_is_closed_after_the_handshake_timeout() {
    let w = World::new();
    let gw = w.start_with(
        &[w.route("t", "")],
        "limits: {handshake_timeout: 1s, penalties: {exempt: [127.0.0.1]}}\n",
    );
    let mut silent = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    let (got, closed_after) = read_until_closed(&mut silent, Duration::from_secs(20));
    assert!(got.starts_with(b"SSH-2.0-Gatehouse"), "{got:?}");
    let closed_after = closed_after.expect("closed well before auth_timeout (120 s)");
    assert!(closed_after < Duration::from_secs(10), "{closed_after:?}");
    let log = gw.wait_for_log("event=\"connection.dropped\"");
    assert!(log.contains("reason=\"handshake_timeout\""), "{log}");
}

#[test]
fn a_source_that_keeps_leaving_is_penalized_and_others_are_not() {
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    // Each connection that leaves without authenticating adds one second
    // (noauth); at 15 s the source's netblock is refused.
    for _ in 0..20 {
        let mut s = blocking(connect_from([127, 0, 0, 9], gw.port));
        let mut banner = [0u8; 7];
        if s.read_exact(&mut banner).is_err() {
            break;
        }
        drop(s);
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = gw.wait_for_log("event=\"source.penalized\"");
    assert!(log.contains("source=127.0.0.9/32"), "{log}");
    assert!(log.contains("cause=\"noauth\""), "{log}");
    // Refused now: closed without a banner.
    let mut refused = blocking(connect_from([127, 0, 0, 9], gw.port));
    let (got, closed) = read_until_closed(&mut refused, Duration::from_secs(10));
    assert!(closed.is_some() && got.is_empty(), "{got:?}");
    let log = gw.wait_for_log("limit=\"penalty\"");
    assert!(log.contains("event=\"connection.refused\""), "{log}");
    // Another source, and the real user, are unaffected.
    let mut other = blocking(connect_from([127, 0, 0, 10], gw.port));
    let mut banner = [0u8; 7];
    other.read_exact(&mut banner).unwrap();
    assert_eq!(&banner, b"SSH-2.0");
    let (code, out, err) = w.ssh(&gw, &format!("{}@t", common::LOGIN), &["echo in"]);
    assert_eq!((code, out.trim()), (0, "in"), "{err}");
}

/// Finite-field Diffie-Hellman is not offered: in russh it costs the
/// gateway about half a second of CPU per 8192-bit exchange, for a few
/// bytes a stranger sends (found by the `preauth` fuzz target). A client
/// that offers only that fails the key exchange at once; one that offers
/// curve25519 (every OpenSSH since 6.5) gets in.
#[test]
fn finite_field_diffie_hellman_is_not_offered() {
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    let user = format!("{}@t@127.0.0.1", common::LOGIN);
    for kex in [
        "diffie-hellman-group18-sha512",
        "diffie-hellman-group16-sha512",
        "diffie-hellman-group14-sha256",
        "diffie-hellman-group-exchange-sha256",
    ] {
        let mut ssh = std::process::Command::new(sshd_test::require_program("ssh"));
        ssh.args(w.ssh_args(&w.client_key, gw.port))
            .arg("-o")
            .arg(format!("KexAlgorithms={kex}"))
            .arg(&user)
            .arg("true");
        let (code, _, err) = common::run(ssh, Duration::from_secs(30));
        assert_eq!(code, 255, "{kex}: {err}");
        assert!(
            err.contains("no matching key exchange method"),
            "{kex}: {err}"
        );
    }
    for kex in ["curve25519-sha256", "mlkem768x25519-sha256"] {
        let mut ssh = std::process::Command::new(sshd_test::require_program("ssh"));
        ssh.args(w.ssh_args(&w.client_key, gw.port))
            .arg("-o")
            .arg(format!("KexAlgorithms={kex}"))
            .arg(&user)
            .args(["echo", "in"]);
        let (code, out, err) = common::run(ssh, Duration::from_secs(30));
        // OpenSSH before 9.9 does not know mlkem768x25519-sha256.
        if kex.starts_with("mlkem") && err.contains("Bad SSH2 KexAlgorithms") {
            continue;
        }
        assert_eq!((code, out.trim()), (0, "in"), "{kex}: {err}");
    }
}
