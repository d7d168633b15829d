//! SSH and HTTPS on one port, and client addresses through load balancers
//! (issue 16): the edge listener with real `ssh` (plain; inside TLS through
//! `gatehouse tunnel` and through `openssl s_client`; through `CONNECT`
//! with socat; through an HTTP proxy with `tunnel --via`), a silent client,
//! the web app on the same port, and a real haproxy with `send-proxy-v2`
//! in front of the SSH listener, whose policy sees the original address.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Gateway, LOGIN, World, bin};
use sshd_test::{ChildGuard, free_port, require_program};

/// A private CA and a server certificate it signed for 127.0.0.1: (CA
/// certificate, server certificate, server key).
fn certificate(w: &World) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let openssl = require_program("openssl");
    let (ca, ca_key) = (w.path("ca.crt"), w.path("ca.key"));
    let (cert, key, csr) = (w.path("edge.crt"), w.path("edge.key"), w.path("edge.csr"));
    let ext = w.path("edge.ext");
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    for args in [
        vec![
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=gatehouse-test-ca",
            "-keyout",
            ca_key.to_str().unwrap(),
            "-out",
            ca.to_str().unwrap(),
        ],
        vec![
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=gatehouse-edge",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            csr.to_str().unwrap(),
        ],
        vec![
            "x509",
            "-req",
            "-in",
            csr.to_str().unwrap(),
            "-CA",
            ca.to_str().unwrap(),
            "-CAkey",
            ca_key.to_str().unwrap(),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            ext.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ],
    ] {
        let out = Command::new(&openssl).args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (ca, cert, key)
}

/// The port `gatehouse serve` printed for its edge listener.
fn edge_port(gw: &Gateway) -> u16 {
    let line = gw
        .child
        .wait_for_output("edge listening on ", Duration::from_secs(20))
        .unwrap();
    line.trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{line}"))
}

/// `ssh` to the gateway's route `t` with extra options (a ProxyCommand),
/// running `echo WORD`.
fn ssh_via(w: &World, port: u16, extra: &[&str], word: &str) -> (i32, String, String) {
    let mut cmd = Command::new(require_program("ssh"));
    cmd.args(w.ssh_args(&w.client_key, port))
        .args(extra)
        .arg(format!("{LOGIN}@t@127.0.0.1"))
        .args(["echo", word]);
    common::run(cmd, Duration::from_secs(60))
}

#[test]
fn one_port_carries_ssh_plain_in_tls_and_through_connect_and_the_web_app() {
    let w = World::new();
    let (ca, cert, key) = certificate(&w);
    let idp = sshd_test::idp::DevIdp::start(0, &[]);
    let web_port = free_port();
    let config = w.write_config(
        &[w.route("t", "")],
        &format!(
            "idp:\n  issuer: {}\n  client_id: gatehouse\n\
             web:\n  listen: 127.0.0.1:{web_port}\n  public_url: http://127.0.0.1:{web_port}\n  plain_http: true\n\
             edge:\n  listen: 127.0.0.1:0\n  tls: {{cert: {}, key: {}}}\n  silent_client: 1s\n",
            idp.issuer,
            cert.display(),
            key.display()
        ),
    );
    let gw = Gateway::start(&config);
    let edge = edge_port(&gw);

    // Plain SSH on the edge port.
    let (code, out, err) = ssh_via(&w, edge, &[], "plain");
    assert_eq!((code, out.trim()), (0, "plain"), "{err}");

    // SSH inside TLS (ALPN ssh) through gatehouse tunnel.
    let proxy = format!(
        "ProxyCommand={} tunnel --ca {} 127.0.0.1:{edge}",
        bin().display(),
        ca.display()
    );
    let (code, out, err) = ssh_via(&w, edge, &["-o", &proxy], "in-tls");
    assert_eq!((code, out.trim()), (0, "in-tls"), "{err}");

    // ... and through openssl s_client, for clients without gatehouse.
    let proxy = format!(
        "ProxyCommand={} s_client -quiet -verify_quiet -alpn ssh -CAfile {} -connect 127.0.0.1:{edge}",
        require_program("openssl").display(),
        ca.display()
    );
    let (code, out, err) = ssh_via(&w, edge, &["-o", &proxy], "openssl");
    assert_eq!((code, out.trim()), (0, "openssl"), "{err}");

    // An HTTP CONNECT to the gateway's SSH service.
    let proxy = format!(
        "ProxyCommand={} - PROXY:127.0.0.1:gatehouse:22,proxyport={edge}",
        require_program("socat").display()
    );
    let (code, out, err) = ssh_via(&w, edge, &["-o", &proxy], "connect");
    assert_eq!((code, out.trim()), (0, "connect"), "{err}");

    // A CONNECT to a route's SSH address carries the route: the user name
    // is a bare login.
    let proxy = format!(
        "ProxyCommand={} - PROXY:127.0.0.1:t:22,proxyport={edge}",
        require_program("socat").display()
    );
    let mut cmd = Command::new(require_program("ssh"));
    cmd.args(w.ssh_args(&w.client_key, edge))
        .args(["-o", &proxy])
        .arg(format!("{LOGIN}@127.0.0.1"))
        .args(["echo", "by-connect"]);
    let (code, out, err) = common::run(cmd, Duration::from_secs(60));
    assert_eq!((code, out.trim()), (0, "by-connect"), "{err}\n{}", gw.log());
    // A bare login through a CONNECT that names no route is refused with
    // the usual line.
    let proxy = format!(
        "ProxyCommand={} - PROXY:127.0.0.1:nowhere:22,proxyport={edge}",
        require_program("socat").display()
    );
    let mut cmd = Command::new(require_program("ssh"));
    cmd.args(w.ssh_args(&w.client_key, edge))
        .args(["-o", &proxy])
        .arg(format!("{LOGIN}@127.0.0.1"))
        .arg("true");
    let (code, _, err) = common::run(cmd, Duration::from_secs(60));
    assert_eq!(code, 255);
    assert!(
        err.contains("gatehouse: unknown route \"nowhere\""),
        "{err}"
    );

    // gatehouse tunnel through an HTTP proxy the network requires.
    let http_proxy = ConnectProxy::start();
    let proxy = format!(
        "ProxyCommand={} tunnel --via http://127.0.0.1:{} --ca {} 127.0.0.1:{edge}",
        bin().display(),
        http_proxy.port,
        ca.display()
    );
    let (code, out, err) = ssh_via(&w, edge, &["-o", &proxy], "via-proxy");
    assert_eq!((code, out.trim()), (0, "via-proxy"), "{err}");
    assert!(http_proxy.used(), "the tunnel did not go through the proxy");

    // A client that waits for the server to speak first gets its banner.
    let mut silent = TcpStream::connect(("127.0.0.1", edge)).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut banner = [0u8; 8];
    silent.read_exact(&mut banner).unwrap();
    assert_eq!(&banner, b"SSH-2.0-");
    assert!(started.elapsed() >= Duration::from_millis(900));

    // The web app over TLS (HTTP/2) and in the clear, on the same port.
    let curl = require_program("curl");
    let out = Command::new(&curl)
        .args(["-sS", "--http2", "--cacert"])
        .arg(&ca)
        .args(["-w", "\n%{http_version}"])
        .arg(format!("https://127.0.0.1:{edge}/healthz"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n\n2", "{out:?}");
    let out = Command::new(&curl)
        .args(["-sS"])
        .arg(format!("http://127.0.0.1:{edge}/healthz"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    drop(idp);
}

/// A minimal HTTP proxy that serves one kind of request, `CONNECT`, and
/// remembers that it did.
struct ConnectProxy {
    port: u16,
    used: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl ConnectProxy {
    fn start() -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let used = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = used.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let flag = flag.clone();
                std::thread::spawn(move || {
                    let mut client = client;
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if client.read(&mut byte).unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let target = text.split(' ').nth(1).unwrap_or("").to_owned();
                    let Ok(upstream) = TcpStream::connect(&target) else {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
                        return;
                    };
                    flag.store(true, std::sync::atomic::Ordering::Relaxed);
                    let _ = client.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
                    let (mut c2, mut u2) =
                        (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                    let up = std::thread::spawn(move || {
                        let mut upstream = upstream;
                        let _ = std::io::copy(&mut c2, &mut upstream);
                        let _ = upstream.shutdown(std::net::Shutdown::Write);
                    });
                    let _ = std::io::copy(&mut u2, &mut client);
                    let _ = client.shutdown(std::net::Shutdown::Write);
                    let _ = up.join();
                });
            }
        });
        ConnectProxy { port, used }
    }

    fn used(&self) -> bool {
        self.used.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[test]
fn behind_haproxy_with_proxy_v2_the_policy_sees_the_client_address() {
    let w = World::new();
    // Only the client address 127.0.0.5 may use the route; haproxy
    // connects from 127.0.0.1, which is trusted for PROXY headers.
    let gw = w.start_with(
        &[w.route(
            "t",
            "policy: {rules: [{allow: from-five, when: {all: [{groups: ops}, {source_ip: 127.0.0.5/32}]}}]}",
        )],
        "trusted_proxies: [127.0.0.1/32]\nlimits: {penalties: {exempt: [127.0.0.0/8]}}\n",
    );
    let front = free_port();
    let proxy = haproxy(&w, front, gw.port);
    let run = |source: &str| {
        let mut cmd = Command::new(require_program("ssh"));
        cmd.args(w.ssh_args(&w.client_key, front))
            .args(["-b", source])
            .arg(format!("{LOGIN}@t@127.0.0.1"))
            .args(["echo", "through-haproxy"]);
        common::run(cmd, Duration::from_secs(60))
    };
    let (code, out, err) = run("127.0.0.5");
    assert_eq!((code, out.trim()), (0, "through-haproxy"), "{err}");
    let accepted = gw.wait_for_log("event=\"auth.accepted\"");
    assert!(accepted.contains("peer=127.0.0.5:"), "{accepted}");
    // From another address the same key is refused: the policy saw it.
    let (code, _, err) = run("127.0.0.6");
    assert_ne!(code, 0);
    assert!(err.contains("access denied"), "{err}");

    // A PROXY header from a peer that is not trusted gets no session:
    // the connection is closed before SSH starts.
    let mut forged = TcpStream::connect(("127.0.0.1", front)).unwrap();
    drop(forged.write_all(b"x"));
    drop(proxy);
}

/// haproxy in TCP mode with `send-proxy-v2` from `front` to `backend`.
fn haproxy(w: &World, front: u16, backend: u16) -> ChildGuard {
    let cfg = w.path(&format!("haproxy-{front}.cfg"));
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
             frontend f\n  bind 127.0.0.1:{front}\n  default_backend b\n\
             backend b\n  server s 127.0.0.1:{backend} send-proxy-v2\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(require_program("haproxy"));
    cmd.arg("-db").arg("-f").arg(&cfg);
    let proxy = ChildGuard::spawn(cmd).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", front)).is_err() {
        assert!(
            Instant::now() < deadline,
            "haproxy did not start: {}",
            proxy.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    proxy
}

#[test]
fn the_web_listener_believes_proxy_headers_only_from_trusted_peers() {
    let w = World::new();
    let idp = sshd_test::idp::DevIdp::start(0, &[]);
    let port = free_port();
    let config = w.write_config(
        &[w.route("t", "")],
        &format!(
            "idp:\n  issuer: {}\n  client_id: gatehouse\n\
             web:\n  listen: 127.0.0.1:{port}\n  public_url: http://127.0.0.1:{port}\n  plain_http: true\n  \
             trusted_proxies: [127.0.0.1/32]\n",
            idp.issuer
        ),
    );
    let web = common::web::start_web(&config);
    let front = free_port();
    let _proxy = haproxy(&w, front, port);
    let curl = require_program("curl");
    // Through haproxy from 127.0.0.9: the app sees 127.0.0.9.
    let out = Command::new(&curl)
        .args([
            "-sS",
            "--interface",
            "127.0.0.9",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://127.0.0.1:{front}/auth/callback?state=x"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403", "{out:?}");
    let failed = web
        .child
        .wait_for_output("event=\"web.signin_failed\"", Duration::from_secs(10))
        .unwrap();
    assert!(failed.contains("peer=127.0.0.9"), "{failed}");
    // The same header straight from 127.0.0.9, which is no trusted proxy:
    // refused, no answer.
    let out = Command::new(&curl)
        .args([
            "-sS",
            "--haproxy-protocol",
            "--interface",
            "127.0.0.9",
            "-o",
            "/dev/null",
        ])
        .arg(format!("http://127.0.0.1:{port}/healthz"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    web.child
        .wait_for_output("web: connection refused", Duration::from_secs(10))
        .unwrap();
    drop(idp);
}
