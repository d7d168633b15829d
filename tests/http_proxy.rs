//! The identity-aware HTTP proxy (issue 14), end to end: `gatehouse web`
//! with `http_routes`, the dev IdP's authorization-code grant, and a real
//! upstream (`sshd_test::upstream`) that reports what it received and
//! verifies the identity assertion against our JWKS.
//!
//! Route hosts are `*.localhost` names resolved to 127.0.0.1 by the
//! client, so each has its own cookies, as in production.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::web::{Jars, Web, browse, location, sign_in_via_proxy, start_web};
use common::{World, bin, run};
use reqwest::StatusCode;
use serde_json::Value;
use sshd_test::idp::DevIdp;
use sshd_test::upstream::{Upstream, UpstreamOptions};

/// Everything a proxy test needs.
struct Setup {
    idp: DevIdp,
    w: World,
    config: std::path::PathBuf,
    web: Web,
    port: u16,
    upstream: Upstream,
    h2c: Upstream,
}

const APP_POLICY: &str = "      rules:
        - allow: sre
          when: {groups: sre}
        - allow: dev-reads
          when: {all: [{groups: dev}, {method: [GET, HEAD]}]}
        - deny: no-admin-for-non-sre
          when: {all: [{not: {groups: sre}}, {path: {starts_with: /admin/}}]}
";

fn routes_yaml(upstream: &Upstream, h2c: &Upstream, app_policy: &str) -> String {
    let dead = sshd_test::free_port();
    format!(
        "http:\n  header_timeout: 2s\n  assertion_ttl: 60s\n\
         http_routes:\n\
         \x20 - from: app.localhost\n    name: app\n    to: {up}\n    policy:\n{app_policy}\
         \x20 - from: h2c.localhost\n    to: {h2}\n    h2c: true\n    identity_headers: false\n    policy: {{rules: [{{allow: everyone}}]}}\n\
         \x20 - from: down.localhost\n    to: http://127.0.0.1:{dead}\n    policy: {{rules: [{{allow: everyone}}]}}\n",
        up = upstream.url,
        h2 = h2c.url,
    )
}

fn setup() -> Setup {
    let idp = DevIdp::start(0, &["--redirect-uri", "http://127.0.0.1/auth/callback"]);
    let w = World::new();
    let port = sshd_test::free_port();
    let web_url = format!("http://127.0.0.1:{port}");
    let options = UpstreamOptions {
        jwks_url: Some(format!("{web_url}/.well-known/gatehouse/jwks.json")),
        issuer: Some(web_url.clone()),
        audience: Some("app".to_owned()),
    };
    let upstream = Upstream::start(options);
    let h2c = Upstream::start(UpstreamOptions::default());
    let config = w.write_config(
        &[w.route("t", "")],
        &format!(
            "idp:\n  issuer: {}\n  client_id: gatehouse\n  scopes: [openid, email, profile, groups]\n\
             web:\n  listen: 127.0.0.1:{port}\n  public_url: {web_url}\n  plain_http: true\n{}",
            idp.issuer,
            routes_yaml(&upstream, &h2c, APP_POLICY),
        ),
    );
    let web = start_web(&config);
    Setup {
        idp,
        w,
        config,
        web,
        port,
        upstream,
        h2c,
    }
}

impl Setup {
    fn origin(&self, host: &str) -> String {
        format!("http://{host}.localhost:{}", self.port)
    }

    /// A client that finds every route host on loopback and follows no
    /// redirects.
    fn client(&self) -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut b = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        for host in ["app", "h2c", "down"] {
            b = b.resolve(&format!("{host}.localhost"), addr);
        }
        b.build().unwrap()
    }
}

async fn echo(c: &reqwest::Client, b: &Jars, url: &str) -> (StatusCode, Value) {
    let host = reqwest::Url::parse(url)
        .unwrap()
        .host_str()
        .unwrap()
        .to_owned();
    let r = c
        .get(url)
        .header("cookie", b.cookie(&host))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn header_values(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0] == name)
        .map(|h| h[1].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signs_in_through_the_web_app_and_vouches_for_the_user_upstream() {
    let s = setup();
    let c = s.client();
    let app = s.origin("app");

    // An API client without a session: 401 with JSON, nothing upstream.
    let r = c
        .get(format!("{app}/api/items"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.text().await.map(|t| json(&t)).unwrap();
    assert_eq!(body["error"], "unauthenticated");
    assert_eq!(s.upstream.requests(), 0);

    // A browser: to the web app, the IdP, and back with a session of the
    // app's own host.
    let mut alice = Jars::default();
    let landed = sign_in_via_proxy(
        &c,
        &mut alice,
        &s.idp.issuer,
        &format!("{app}/hello?x=1"),
        "alice@example.com",
    )
    .await;
    assert_eq!(landed, format!("{app}/hello?x=1"));
    assert!(alice.cookie("app.localhost").contains("__Host-gatehouse="));
    assert!(
        !alice
            .cookie("app.localhost")
            .contains("__Host-gatehouse-handoff-"),
        "the attempt cookie is cleared"
    );

    // Forged identity headers in every case; our cookie beside the app's.
    let r = c
        .get(format!("{app}/hello?x=1"))
        .header(
            "cookie",
            format!("{}; theirs=1", alice.cookie("app.localhost")),
        )
        .header("X-Gatehouse-Assertion", "forged")
        .header("x-forwarded-user", "mallory")
        .header("X-FORWARDED-EMAIL", "mallory@example.com")
        .header("X-Forwarded-Groups", "sre")
        .header("x-forwarded-for", "6.6.6.6")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let e: Value = r.text().await.map(|t| json(&t)).unwrap();
    assert_eq!(e["path"], "/hello?x=1");
    assert_eq!(e["assertion"]["valid"], true, "{e:#}");
    assert_eq!(e["assertion"]["claims"]["email"], "alice@example.com");
    assert_eq!(e["assertion"]["claims"]["aud"], "app");
    assert_eq!(header_values(&e, "x-gatehouse-assertion").len(), 1);
    assert_eq!(header_values(&e, "x-forwarded-user"), ["alice@example.com"]);
    assert_eq!(
        header_values(&e, "x-forwarded-email"),
        ["alice@example.com"]
    );
    assert_eq!(header_values(&e, "x-forwarded-groups"), ["sre,dev"]);
    assert_eq!(header_values(&e, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(header_values(&e, "x-forwarded-proto"), ["http"]);
    assert_eq!(
        header_values(&e, "x-forwarded-host"),
        [format!("app.localhost:{}", s.port)]
    );
    assert_eq!(
        header_values(&e, "cookie"),
        ["theirs=1"],
        "our cookie stays here"
    );
    assert_eq!(
        header_values(&e, "host"),
        [s.upstream.url.trim_start_matches("http://").to_owned()]
    );

    // Policy by group, method and path.
    let mut bob = Jars::default();
    sign_in_via_proxy(
        &c,
        &mut bob,
        &s.idp.issuer,
        &format!("{app}/"),
        "bob@example.com",
    )
    .await;
    let (status, _) = echo(&c, &bob, &format!("{app}/reports")).await;
    assert_eq!(status, StatusCode::OK, "dev may read");
    let r = c
        .post(format!("{app}/reports"))
        .header("cookie", bob.cookie("app.localhost"))
        .header("accept", "application/json")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "dev may not write");
    let body: Value = r.text().await.map(|t| json(&t)).unwrap();
    assert!(
        body["reason"].as_str().unwrap().contains("method"),
        "{body}"
    );
    for path in [
        "/admin/users",
        "/%61dmin/users",
        "//admin/users",
        "/x/../admin/users",
    ] {
        let (status, _) = echo(&c, &bob, &format!("{app}{path}")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    let (status, e) = echo(&c, &alice, &format!("{app}/%61dmin/users")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        e["path"], "/admin/users",
        "the upstream gets the normalized path"
    );
    let mut carol = Jars::default();
    // Carol signs in, but the app's policy refuses her requests.
    sign_in_via_proxy(
        &c,
        &mut carol,
        &s.idp.issuer,
        &format!("{app}/"),
        "carol@contractor.example",
    )
    .await;
    let (status, _) = echo(&c, &carol, &format!("{app}/")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Another host's cookie is not this one's.
    let (status, _) = echo(&c, &alice, &format!("{}/", s.origin("h2c"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // h2c to the upstream; HTTP/2 from the client.
    let mut b2 = Jars::default();
    let h2c = s.origin("h2c");
    sign_in_via_proxy(
        &c,
        &mut b2,
        &s.idp.issuer,
        &format!("{h2c}/v"),
        "alice@example.com",
    )
    .await;
    let (status, e) = echo(&c, &b2, &format!("{h2c}/v")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(e["version"], "HTTP/2.0", "h2c to the upstream");
    assert!(
        header_values(&e, "x-forwarded-user").is_empty(),
        "identity_headers: false"
    );
    let c2 = {
        let addr = SocketAddr::from(([127, 0, 0, 1], s.port));
        reqwest::Client::builder()
            .http2_prior_knowledge()
            .resolve("app.localhost", addr)
            .build()
            .unwrap()
    };
    let r = c2
        .get(format!("{app}/h2"))
        .header("cookie", alice.cookie("app.localhost"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), StatusCode::OK);
    let e: Value = r.text().await.map(|t| json(&t)).unwrap();
    assert_eq!(e["assertion"]["valid"], true);

    // An upstream that is down: a clean 502 and an audit event; one too
    // slow: 504.
    let mut b3 = Jars::default();
    let down = s.origin("down");
    sign_in_via_proxy(
        &c,
        &mut b3,
        &s.idp.issuer,
        &format!("{down}/"),
        "alice@example.com",
    )
    .await;
    let r = c
        .get(format!("{down}/x"))
        .header("cookie", b3.cookie("down.localhost"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(r.text().await.unwrap().contains("not answering"));
    s.web
        .child
        .wait_for_output("event=\"http.upstream_failed\"", Duration::from_secs(10))
        .unwrap();
    let (status, _) = echo(&c, &alice, &format!("{app}/slow?ms=4000")).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);

    // The JWKS rotates; the old and new keys both verify.
    let (code, out, err) = run(
        {
            let mut cmd = Command::new(bin());
            cmd.args(["http", "rotate-key", "--config"]).arg(&s.config);
            cmd
        },
        Duration::from_secs(20),
    );
    assert_eq!(code, 0, "{out}{err}");
    let old_kid = e["assertion"]["kid"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, e) = echo(&c, &alice, &format!("{app}/rotated")).await;
        assert_eq!(e["assertion"]["valid"], true, "{e:#}");
        if e["assertion"]["kid"] != old_kid.as_str() {
            break;
        }
        assert!(Instant::now() < deadline, "the new key was never used");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let jwks: Value = c
        .get(format!("{}/.well-known/gatehouse/jwks.json", s.web.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| json(&t))
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);

    // A policy reload applies to the next request.
    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        text.replace(
            "        - allow: dev-reads\n",
            "        - allow: dev-reads-gone\n",
        )
        .replace(
            "when: {all: [{groups: dev}, {method: [GET, HEAD]}]}",
            "when: {all: [{groups: nobody}]}",
        ),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while echo(&c, &bob, &format!("{app}/reports")).await.0 == StatusCode::OK {
        assert!(Instant::now() < deadline, "the reload never applied");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Nothing secret in the log.
    let log = s.web.child.stderr_text();
    for secret in [alice.cookie("app.localhost"), bob.cookie("app.localhost")] {
        let value = secret
            .split('=')
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        assert!(!log.contains(&value), "a cookie in the log");
    }
    assert!(!log.contains("eyJ"), "an assertion in the log");
    for needle in ["event=\"http.signin\"", "event=\"http.denied\""] {
        assert!(log.contains(needle), "{needle} missing");
    }
    drop(s.h2c);
    drop(s.w);
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Follows a browser through the sign-in from `start` (a hand-off URL at
/// the web app, or an app URL) until it lands on `want`.
async fn follow_to(s: &Setup, c: &reqwest::Client, b: &mut Jars, start: &str, want: &str) {
    let mut next = start.to_owned();
    for _ in 0..10 {
        let r = b.get(c, &next).await;
        assert!(r.status().is_redirection(), "{next}: {}", r.status());
        let to = location(&r);
        let to = if to.starts_with('/') {
            let u = reqwest::Url::parse(&next).unwrap();
            format!("{}{to}", u.origin().ascii_serialization())
        } else {
            to
        };
        if to.starts_with(&s.idp.issuer) {
            next = browse(&s.idp.issuer, &to, "alice@example.com", "alice-pw").await;
            continue;
        }
        if to == want {
            return;
        }
        next = to;
    }
    panic!("never reached {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_websockets_closed_on_revocation_and_streams_without_buffering() {
    use futures::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;

    let s = setup();
    let c = s.client();
    let app = s.origin("app");

    // Two tabs start signing in before either finishes; both land.
    let mut b = Jars::default();
    let first = location(&b.get(&c, &format!("{app}/tab1")).await);
    let second = location(&b.get(&c, &format!("{app}/tab2")).await);
    assert_ne!(first, second);
    follow_to(&s, &c, &mut b, &second, &format!("{app}/tab2")).await;
    follow_to(&s, &c, &mut b, &first, &format!("{app}/tab1")).await;
    let (status, e) = echo(&c, &b, &format!("{app}/tab1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(e["assertion"]["valid"], true);

    // A WebSocket through the proxy echoes, and is closed within 2 s of
    // revoking the user.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
        .await
        .unwrap();
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://app.localhost:{}/ws", s.port),
    )
    .unwrap();
    req.headers_mut()
        .insert("cookie", b.cookie("app.localhost").parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws.send(Message::text("hello through the proxy"))
        .await
        .unwrap();
    let got = ws.next().await.unwrap().unwrap();
    assert_eq!(got.into_text().unwrap().as_str(), "hello through the proxy");
    let mut revoke = Command::new(bin());
    revoke
        .args([
            "logins",
            "revoke",
            "--user",
            "alice@example.com",
            "--config",
        ])
        .arg(&s.config);
    let (code, out, err) = run(revoke, Duration::from_secs(20));
    assert_eq!(code, 0, "{out}{err}");
    let revoked = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the WebSocket outlived the revocation");
    let took = revoked.elapsed();
    eprintln!("WebSocket closed {took:?} after the revocation");
    assert!(took <= Duration::from_millis(2500), "closed after {took:?}");
    s.web
        .child
        .wait_for_output("cause=\"signed_out\"", Duration::from_secs(5))
        .unwrap();
    let (status, _) = echo(&c, &b, &format!("{app}/after")).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the next request is refused too"
    );

    // 1 GiB each way through the proxy, streamed: its memory barely moves.
    let mut b = Jars::default();
    sign_in_via_proxy(
        &c,
        &mut b,
        &s.idp.issuer,
        &format!("{app}/big"),
        "bob@example.com",
    )
    .await;
    let cookie = b.cookie("app.localhost");
    let pid = s.web.child.pid();
    let before = rss_kib(pid);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    const GIB: u64 = 1 << 30;
    let resolve = format!("app.localhost:{}:127.0.0.1", s.port);
    let curl = sshd_test::require_program("curl");
    let started = Instant::now();
    let out = Command::new(&curl)
        .args(["-sS", "--fail", "--resolve", &resolve, "-H"])
        .arg(format!("cookie: {cookie}"))
        .args(["-o", "/dev/null", "-w", "%{size_download}"])
        .arg(format!("{app}/stream/download?bytes={GIB}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), GIB.to_string());
    let down = started.elapsed();
    // bob may only read: the upload goes as alice... who is revoked; sign
    // in as alice again (sre may write).
    let mut a = Jars::default();
    sign_in_via_proxy(
        &c,
        &mut a,
        &s.idp.issuer,
        &format!("{app}/up"),
        "alice@example.com",
    )
    .await;
    let started = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c {GIB} /dev/zero | {} -sS --fail --resolve {resolve} -H 'cookie: {}' -T - {app}/stream/upload",
            curl.display(),
            a.cookie("app.localhost")
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let up: Value = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(up["bytes"], GIB);
    let upload = started.elapsed();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let grew = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(before);
    eprintln!(
        "1 GiB down in {down:?}, up in {upload:?}; proxy RSS {before} KiB before, grew {grew} KiB at most"
    );
    assert!(grew <= 32 * 1024, "the proxy grew by {grew} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_is_sent_to_sign_in_and_back_to_the_app() {
    let s = setup();
    let browser = common::browser::Browser::start().await;
    let app = s.origin("app");
    browser
        .client
        .goto(&format!("{app}/welcome?from=browser"))
        .await
        .unwrap();
    // The IdP's login form, then its consent.
    browser.fill("input[name=login]", "alice@example.com").await;
    browser.fill("input[name=password]", "alice-pw").await;
    browser.click("button[type=submit]").await;
    browser.click("form[action$=confirm] button").await;
    // Back at the app, through the hand-off, with the upstream's echo.
    let deadline = Instant::now() + Duration::from_secs(15);
    let body = loop {
        let url = browser.client.current_url().await.unwrap();
        if url.as_str().starts_with(&app) {
            let body = browser.text("body").await;
            if body.contains("\"path\"") {
                break body;
            }
        }
        assert!(Instant::now() < deadline, "never back at the app: {url}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let e = json(&body);
    assert_eq!(e["path"], "/welcome?from=browser");
    assert_eq!(e["assertion"]["valid"], true, "{e:#}");
    assert_eq!(e["assertion"]["claims"]["email"], "alice@example.com");
    // Another app host needs no second IdP sign-in: the web app's session
    // hands it off at once.
    browser
        .client
        .goto(&format!("{}/second", s.origin("h2c")))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let body = browser.text("body").await;
        if body.contains("\"version\":\"HTTP/2.0\"") {
            break;
        }
        assert!(Instant::now() < deadline, "second app never shown: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_listener_speaks_http2_to_the_web_app_and_the_routes() {
    let openssl = sshd_test::require_program("openssl");
    let idp = DevIdp::start(0, &["--redirect-uri", "http://127.0.0.1/auth/callback"]);
    let w = World::new();
    let port = sshd_test::free_port();
    // A self-signed certificate for the web app's address and a route host.
    let (cert, key) = (w.path("web.crt"), w.path("web.key"));
    let st = Command::new(openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=gatehouse-test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:app.localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let upstream = Upstream::start(UpstreamOptions::default());
    let config = w.write_config(
        &[w.route("t", "")],
        &format!(
            "idp:\n  issuer: {}\n  client_id: gatehouse\n\
             web:\n  listen: 127.0.0.1:{port}\n  public_url: https://127.0.0.1:{port}\n  \
             tls: {{cert: web.crt, key: web.key}}\n\
             http_routes:\n  - from: app.localhost\n    to: {}\n    policy: {{rules: [{{allow: everyone}}]}}\n",
            idp.issuer, upstream.url
        ),
    );
    let web = start_web(&config);
    assert!(web.url.starts_with("https://"));
    let curl = sshd_test::require_program("curl");
    let get = |url: &str, extra: &[&str]| {
        let out = Command::new(&curl)
            .args(["-sS", "--http2", "--cacert"])
            .arg(&cert)
            .args(["--resolve", &format!("app.localhost:{port}:127.0.0.1")])
            .args(["-w", "\n%{http_version} %{http_code}"])
            .args(extra)
            .arg(url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let health = get(&format!("{}/healthz", web.url), &[]);
    assert!(health.ends_with("\n2 200"), "{health}");
    let jwks = get(
        &format!("https://app.localhost:{port}/.well-known/gatehouse/jwks.json"),
        &[],
    );
    assert!(
        jwks.contains("\"kty\":\"EC\"") && jwks.ends_with("\n2 200"),
        "{jwks}"
    );
    let api = get(
        &format!("https://app.localhost:{port}/api"),
        &["-H", "accept: application/json"],
    );
    assert!(
        api.contains("\"unauthenticated\"") && api.ends_with("\n2 401"),
        "{api}"
    );
    let page = get(
        &format!("https://app.localhost:{port}/"),
        &["-H", "accept: text/html"],
    );
    assert!(page.ends_with("\n2 303"), "{page}");
    // HTTP/1.1 clients too.
    let old = get(&format!("{}/healthz", web.url), &["--http1.1"]);
    assert!(old.ends_with("\n1.1 200"), "{old}");
    assert_eq!(
        upstream.requests(),
        0,
        "nothing unauthenticated went upstream"
    );
}
