//! The web app's pages (issue 13), end to end: sessions recorded through
//! the real gateway with real `ssh`, `gatehouse web` beside it on the same
//! state and storage, viewers signed in through the dev IdP's
//! authorization-code grant, and headless Chromium for what a browser
//! shows. Assertions are on page and DOM text, not on timing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::browser::Browser;
use common::tmux::Tmux;
use common::web::{Jar, Web, client, fetch, sign_in, start_web};
use common::{Gateway, LOGIN, World, bin, run};
use reqwest::StatusCode;
use sshd_test::idp::DevIdp;
use sshd_test::require_program;

/// Hostile terminal output: markup, an attribute breakout, a window title
/// and a hyperlink with script payloads. It must show as text everywhere.
const HOSTILE: &str = r#"printf '%s\n' '<script>alert(1)</script>' '"><img src=x onerror=alert(1)>'; printf '\033]0;<img src=x onerror=alert(2)>\007'; printf '\033]8;;javascript:alert(3)\033\\click-me\033]8;;\033\\\n'"#;

/// The web section: alice (group sre) may do everything; bob (group dev)
/// may list, play and search sessions on route `t2` only, and download
/// them only with a reason.
fn web_section(issuer: &str, port: u16) -> String {
    format!(
        "idp:\n  issuer: {issuer}\n  client_id: gatehouse\n  scopes: [openid, email, profile, groups]\n\
         web:\n  listen: 127.0.0.1:{port}\n  public_url: http://127.0.0.1:{port}\n  plain_http: true\n  \
         access:\n    rules:\n\
         \x20     - allow: sre-everything\n        when: {{groups: sre}}\n        capabilities: all\n\
         \x20     - allow: dev-on-t2\n        when: {{all: [{{groups: dev}}, {{route: t2}}]}}\n        \
         capabilities: [list, play, search]\n\
         \x20     - allow: dev-downloads-break-glass\n        when: {{all: [{{groups: dev}}, {{route: t2}}]}}\n        \
         capabilities: [download]\n        obligations: {{require_reason: true}}\n"
    )
}

/// A gateway on `gatehouse.yaml` (routes `t` and `t2`) and `gatehouse
/// web` on `web.yaml`: the same file plus the idp and web sections, so
/// both read one state database, one storage and one spool.
struct Setup {
    idp: DevIdp,
    w: World,
    gw: Gateway,
    web: Web,
    config: PathBuf,
}

fn setup(recording: &str) -> Setup {
    let idp = DevIdp::start(0, &["--redirect-uri", "http://127.0.0.1/auth/callback"]);
    let w = World::new();
    let config = w.write_config(&[w.route("t", ""), w.route("t2", "")], recording);
    let gw = Gateway::start(&config);
    let web_config = w.path("web.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &web_config,
        format!("{text}{}", web_section(&idp.issuer, sshd_test::free_port())),
    )
    .unwrap();
    let web = start_web(&web_config);
    Setup {
        idp,
        w,
        gw,
        web,
        config,
    }
}

fn gatehouse(args: &[&str], config: &Path) -> (i32, String, String) {
    let mut c = Command::new(bin());
    c.args(args).arg("--config").arg(config);
    run(c, Duration::from_secs(60))
}

/// Runs `script` on a pty through route `route`; it ends with `all-done`.
fn record(s: &Setup, route: &str, script: &str) {
    let mut ssh = Command::new(require_program("ssh"));
    ssh.args(s.w.ssh_args(&s.w.client_key, s.gw.port))
        .arg("-tt")
        .arg(format!("{LOGIN}@{route}@127.0.0.1"))
        .arg(script)
        .env("TERM", "xterm-256color");
    let (code, out, err) = run(ssh, Duration::from_secs(60));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("all-done"), "{out}");
}

/// The sealed session on `route`, once there is one.
fn sealed_on(config: &Path, route: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, out, err) = gatehouse(&["sessions", "list", "--json"], config);
        assert_eq!(code, 0, "{err}");
        let found = out
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|s| s["status"] == "sealed" && s["route"] == route)
            .and_then(|s| s["session_id"].as_str().map(str::to_owned));
        if let Some(id) = found {
            return id;
        }
        assert!(Instant::now() < deadline, "never sealed on {route}: {out}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// HTML attribute text back to what it says.
fn unescape(html: &str) -> String {
    html.replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
}

/// The first `href` after `marker` in `html`.
fn href_after(html: &str, marker: &str) -> String {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker}:\n{html}"));
    let rest = &html[at..];
    let start = rest.find("href=\"").unwrap() + 6;
    unescape(rest[start..].split('"').next().unwrap())
}

/// Searches as `jar` until the search finds a hit in `session` (the
/// background indexer runs after seal); returns the page.
async fn search_until(
    c: &reqwest::Client,
    jar: &mut Jar,
    web: &Web,
    q: &str,
    session: &str,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let url = format!("{}/search?q={}", web.url, urlencode(q));
        let (status, html) = fetch(c, jar, &url).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        if html.contains(&format!("<li data-session=\"{session}\"")) {
            return html;
        }
        assert!(
            Instant::now() < deadline,
            "search never found {q:?}:\n{html}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn urlencode(s: &str) -> String {
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

/// Signs alice in in the browser, landing on `path`.
async fn browser_sign_in(browser: &Browser, web: &Web, path: &str) {
    browser
        .client
        .goto(&format!("{}{path}", web.url))
        .await
        .unwrap();
    browser.fill("input[name=login]", "alice@example.com").await;
    browser.fill("input[name=password]", "alice-pw").await;
    browser.click("button[type=submit]").await;
    browser.click("form[action$=confirm] button").await;
}

/// Waits until the player says it is ready (loaded, sought, highlighted).
async fn player_ready(browser: &Browser) {
    browser.text("#player[data-state=ready]").await;
}

/// The terminal's rows as the player drew them, trailing spaces removed.
async fn terminal_rows(browser: &Browser) -> Vec<String> {
    let v = browser
        .client
        .execute(
            "return Array.from(document.querySelectorAll('#player .ap-term-text .ap-line'), \
             l => l.textContent.replace(/\\s+$/, ''));",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_see_what_policy_allows_search_deep_links_play_and_download() {
    require_program("vi");
    let s = setup("");
    let vi = "f=$(mktemp); printf 'seen-only%s-in-vi\\n' -there > $f; \
              vi -u NONE -c 'redraw' -c 'sleep 1' -c 'q!' $f; rm -f $f";
    record(
        &s,
        "t",
        &format!("{HOSTILE}; echo never-searched-word; {vi}; echo all-done"),
    );
    let a = sealed_on(&s.config, "t");
    record(&s, "t2", "echo bob-can-see-this; echo all-done");
    let b = sealed_on(&s.config, "t2");
    let c = client();
    let web = &s.web;
    let mut alice = sign_in(&c, web, &s.idp.issuer, "alice@example.com", "alice-pw").await;
    let mut bob = sign_in(&c, web, &s.idp.issuer, "bob@example.com", "bob-pw").await;

    // The lists differ by policy.
    let (status, list) = fetch(&c, &mut alice, &format!("{}/sessions", web.url)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.contains(&format!("data-session=\"{a}\"")), "{list}");
    assert!(list.contains(&format!("data-session=\"{b}\"")), "{list}");
    let (_, list) = fetch(&c, &mut bob, &format!("{}/sessions", web.url)).await;
    assert!(!list.contains(&format!("data-session=\"{a}\"")), "{list}");
    assert!(list.contains(&format!("data-session=\"{b}\"")), "{list}");
    // A filter lives in the URL.
    let (_, list) = fetch(&c, &mut alice, &format!("{}/sessions?route=t2", web.url)).await;
    assert!(!list.contains(&format!("data-session=\"{a}\"")), "{list}");
    let (status, list) = fetch(
        &c,
        &mut alice,
        &format!("{}/sessions?since=yesterday", web.url),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        list.contains("since: &quot;yesterday&quot; is not a time"),
        "{list}"
    );

    // What bob may not see does not exist for him, whatever the route.
    for path in [
        "",
        "/cast",
        "/download?format=v3",
        "/find?q=vi",
        "/screen?t=1",
    ] {
        let (status, _) = fetch(&c, &mut bob, &format!("{}/sessions/{a}{path}", web.url)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    // Break-glass: bob's download asks for a reason first.
    let url = format!("{}/sessions/{b}/download?format=v3", web.url);
    let (status, page) = fetch(&c, &mut bob, &url).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("id=\"reason\""), "{page}");
    let (status, cast) = fetch(&c, &mut bob, &format!("{url}&reason=ticket-4711")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(cast.starts_with("{\"version\":3"), "{cast}");
    assert!(cast.contains("bob-can-see-this"));

    // Search: text only vi's alternate screen showed, with a deep link to
    // the moment; bob's search does not see alice's session.
    let found = search_until(&c, &mut alice, web, "seen-only-there-in-vi", &a).await;
    assert!(found.contains("(full-screen program)"), "{found}");
    assert!(
        found.contains("<mark>seen-only-there-in-vi</mark>"),
        "{found}"
    );
    let deep = href_after(&found, &format!("<li data-session=\"{a}\""));
    assert!(
        deep.starts_with(&format!("/sessions/{a}?channel=")),
        "{deep}"
    );
    let (_, none) = fetch(
        &c,
        &mut bob,
        &format!("{}/search?q=seen-only-there-in-vi", web.url),
    )
    .await;
    assert!(none.contains("id=\"empty\""), "{none}");
    // Snippets of hostile output are text.
    let found = search_until(&c, &mut alice, web, "onerror", &a).await;
    assert!(
        found.contains("&quot;&gt;&lt;img src=x <mark>onerror</mark>=alert(1)&gt;"),
        "{found}"
    );
    assert!(!found.contains("<img"), "{found}");

    // Downloads: v2 and text, and a bundle that verifies offline until
    // one byte of it changes.
    let (status, v2) = fetch(
        &c,
        &mut alice,
        &format!("{}/sessions/{a}/download?format=v2", web.url),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(v2.lines().next().unwrap().contains("\"version\":2"), "{v2}");
    let (_, txt) = fetch(
        &c,
        &mut alice,
        &format!("{}/sessions/{a}/download?format=txt", web.url),
    )
    .await;
    assert!(
        txt.contains("seen-only-there-in-vi") && txt.contains("(alt)"),
        "{txt}"
    );
    let r = common::web::get(
        &c,
        &mut alice,
        &format!("{}/sessions/{a}/download?format=bundle", web.url),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let bundle = s.w.path("web-bundle.tar");
    std::fs::write(&bundle, r.bytes().await.unwrap()).unwrap();
    let (code, out, err) = gatehouse(
        &["recordings", "verify", "--bundle", bundle.to_str().unwrap()],
        &s.config,
    );
    assert_eq!(code, 0, "{out}{err}");
    let mut bytes = std::fs::read(&bundle).unwrap();
    let at = bytes
        .windows(4)
        .position(|w| w == [0x28, 0xb5, 0x2f, 0xfd])
        .unwrap();
    bytes[at + 16] ^= 0x04;
    std::fs::write(&bundle, bytes).unwrap();
    let (code, out, _) = gatehouse(
        &["recordings", "verify", "--bundle", bundle.to_str().unwrap()],
        &s.config,
    );
    assert_eq!(code, 1, "a tampered bundle verified: {out}");

    // A state-changing POST without the CSRF token is refused.
    let r = c
        .post(format!("{}/sessions/{a}/end", web.url))
        .header("cookie", alice.header())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("reason=no-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The browser: the deep link opens the player at the moment, with the
    // match highlighted, and the screen is the terminal model's.
    let browser = Browser::start().await;
    browser_sign_in(&browser, web, &deep).await;
    player_ready(&browser).await;
    let highlights = browser.text("#player[data-highlights]").await;
    let _ = highlights;
    let n: String = browser
        .client
        .execute(
            "return document.getElementById('player').dataset.highlights;",
            vec![],
        )
        .await
        .unwrap()
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        n.parse::<u32>().unwrap_or(0) >= 1,
        "nothing highlighted: {n:?}"
    );
    let shown = terminal_rows(&browser).await;
    let t = deep.split("&t=").nth(1).unwrap().split('&').next().unwrap();
    let channel = deep
        .split("channel=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let (_, model) = fetch(
        &c,
        &mut alice,
        &format!("{}/sessions/{a}/screen?channel={channel}&t={t}", web.url),
    )
    .await;
    let model: serde_json::Value = serde_json::from_str(&model).unwrap();
    let model: Vec<String> = serde_json::from_value(model["lines"].clone()).unwrap();
    assert_eq!(model.len(), shown.len(), "rows: {model:?} vs {shown:?}");
    assert_eq!(
        model, shown,
        "the player's screen differs from the terminal model's"
    );
    assert!(
        shown.iter().any(|l| l.contains("seen-only-there-in-vi")),
        "{shown:?}"
    );

    // The end of the recording: the payloads are on screen as text, and
    // nothing ran.
    browser
        .client
        .goto(&format!("{}/sessions/{a}?t=3600", web.url))
        .await
        .unwrap();
    player_ready(&browser).await;
    let rows = terminal_rows(&browser).await.join("\n");
    assert!(rows.contains("<script>alert(1)</script>"), "{rows}");
    assert!(rows.contains("\"><img src=x onerror=alert(1)>"), "{rows}");
    assert!(
        browser.client.get_alert_text().await.is_err(),
        "an alert fired"
    );
    let images = browser
        .client
        .execute("return document.querySelectorAll('img').length;", vec![])
        .await
        .unwrap();
    assert_eq!(images, serde_json::json!(0));
    let title = browser.client.title().await.unwrap();
    assert!(!title.contains("onerror"), "{title}");
    browser.close().await;

    // Viewed by: alice played it.
    let (_, list) = fetch(&c, &mut alice, &format!("{}/sessions", web.url)).await;
    let row = list
        .lines()
        .find(|l| l.contains(&format!("data-session=\"{a}\"")))
        .unwrap();
    assert!(
        row.contains("<td class=\"viewed\">alice@example.com</td>"),
        "{row}"
    );

    // Audited, with the viewer; no terminal text (but what was asked) and
    // no cookie in the log.
    let log = web.child.stderr_text();
    for needle in [
        "event=\"recording.viewed\"",
        "mode=\"web\"",
        "event=\"recording.searched\"",
        "event=\"recording.downloaded\"",
        "reason=ticket-4711",
    ] {
        assert!(log.contains(needle), "{needle} missing:\n{log}");
    }
    assert!(
        !log.contains("never-searched-word"),
        "terminal text in the log"
    );
    assert!(
        !log.contains("bob-can-see-this"),
        "terminal text in the log"
    );
    for cookie in [&alice.0["__Host-gatehouse"], &bob.0["__Host-gatehouse"]] {
        assert!(!log.contains(cookie.as_str()), "a cookie in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_watch_shows_typed_output_and_a_viewer_ends_the_session() {
    let s = setup("recording:\n  spool_dir: spool\n  segment_interval: 2s\n");
    let tmux = Tmux::new(&s.w.path("tmux.sock"));
    let ssh = format!(
        "{} {} -tt {LOGIN}@t@127.0.0.1",
        require_program("ssh").display(),
        s.w.ssh_args(&s.w.client_key, s.gw.port).join(" ")
    );
    tmux.start("s", 100, 30, &format!("{ssh}; echo ssh-ended; sleep 60"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let live = loop {
        let (_, out, _) = gatehouse(&["sessions", "list", "--json"], &s.config);
        let id = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["status"] == "recording")
            .and_then(|v| v["session_id"].as_str().map(str::to_owned));
        if let Some(id) = id {
            break id;
        }
        assert!(Instant::now() < deadline, "no live session: {out}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let c = client();
    let web = &s.web;
    let mut alice = sign_in(&c, web, &s.idp.issuer, "alice@example.com", "alice-pw").await;
    let (_, page) = fetch(&c, &mut alice, &format!("{}/live", web.url)).await;
    assert!(page.contains(&format!("data-session=\"{live}\"")), "{page}");
    let mut bob = sign_in(&c, web, &s.idp.issuer, "bob@example.com", "bob-pw").await;
    let (_, page) = fetch(&c, &mut bob, &format!("{}/live", web.url)).await;
    assert!(
        !page.contains(&format!("data-session=\"{live}\"")),
        "{page}"
    );

    let browser = Browser::start().await;
    browser_sign_in(&browser, web, &format!("/sessions/{live}/watch")).await;
    player_ready(&browser).await;
    tmux.keys("s", &["echo typed-live-$((6*7))", "Enter"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = terminal_rows(&browser).await.join("\n");
        if rows.contains("typed-live-42") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "typed output never showed:\n{rows}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // End it from the page, with a reason.
    browser
        .fill("#end input[name=reason]", "leaked credentials")
        .await;
    browser.click("#end button").await;
    let said = browser.text("#message").await;
    assert!(said.contains("ended"), "{said}");
    s.gw.wait_for_log("cause=\"killed\"");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !tmux.capture("s").contains("ssh-ended") {
        assert!(Instant::now() < deadline, "the ssh client did not end");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The watch page of the ended session says that it ended, and why.
    browser
        .client
        .goto(&format!("{}/sessions/{live}/watch", web.url))
        .await
        .unwrap();
    let state = browser.text("#live-state[data-ended]").await;
    assert!(state.starts_with("ended: "), "{state}");
    assert!(state.contains("leaked credentials"), "{state}");
    browser.close().await;
    let log = web.child.stderr_text();
    for needle in [
        "event=\"session.watched\"",
        "event=\"session.kill_requested\"",
        "reason=leaked credentials",
    ] {
        assert!(log.contains(needle), "{needle} missing:\n{log}");
    }
    assert!(!log.contains("typed-live-42"), "terminal text in the log");
}
