//! The SSH sign-in link (issue 14): for identity providers without the
//! device grant, the keyboard-interactive prompt shows a single-use URL on
//! the web listener and a three-word phrase. Real `ssh`, real `sshd` and
//! the real dev IdP started with `--no-device-flow`. Most tests approve
//! the link in the state database exactly as the web app does
//! (`ssh_link_approve`), with the hash of the token read from the prompt,
//! so the gateway is shown to need nothing of the web listener but its
//! address; the last one goes through the real page in Chromium.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::{Gateway, LOGIN, World, bin, fingerprint, keygen, run};
use russh::keys::HashAlg;
use sshd_test::ChildGuard;
use sshd_test::idp::DevIdp;
use state::{LinkApproval, LinkApproved, LinkRow, LinkState, Sqlite, Store};

/// The `idp` section for the dev IdP, plus `extra` lines under it.
fn idp_section(issuer: &str, extra: &str) -> String {
    format!(
        "idp:\n  issuer: {issuer}\n  client_id: gatehouse\n  scopes: [openid, email, profile, groups]\n{extra}"
    )
}

/// A `web` section whose address nobody listens on: the gateway only puts
/// it in the link.
fn web_section() -> (String, String) {
    let public_url = format!("http://127.0.0.1:{}", sshd_test::free_port());
    let section =
        format!("web:\n  listen: 127.0.0.1:0\n  public_url: {public_url}\n  plain_http: true\n");
    (section, public_url)
}

/// A route that people in group `sre` may use.
fn sre_route(w: &World) -> String {
    w.route(
        "prod",
        "policy: {rules: [{allow: sre, when: {groups: sre}}]}",
    )
}

/// What the web app stores a link under: hex SHA-256 of the token's text.
fn id_hash(token: &str) -> String {
    HashAlg::Sha256
        .digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The link a waiting `ssh` shows: (token, phrase), once the whole prompt
/// is there.
fn read_link(child: &ChildGuard, public_url: &str) -> (String, String) {
    let line = child
        .wait_for_output("/ssh/link/", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("no sign-in link: {e}"));
    let prefix = format!("  Open {public_url}/ssh/link/");
    let token = line
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("unexpected link line {line:?}"))
        .to_owned();
    assert_eq!(token.len(), 43, "{token:?}");
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{token:?}"
    );
    let line = child
        .wait_for_output("the page shows: ", Duration::from_secs(5))
        .unwrap();
    let phrase = line
        .strip_prefix("  and check that the page shows: ")
        .unwrap_or_else(|| panic!("unexpected phrase line {line:?}"))
        .to_owned();
    let words: Vec<&str> = phrase.split('-').collect();
    assert_eq!(words.len(), 3, "{phrase:?}");
    assert!(
        words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase())),
        "{phrase:?}"
    );
    child
        .wait_for_output("This link expires in 10 minutes.", Duration::from_secs(5))
        .unwrap();
    (token, phrase)
}

/// alice as the web app's sign-in hands her on to an approval.
fn alice(issuer: &str) -> LinkApproval {
    LinkApproval {
        sub: "alice".to_owned(),
        email: Some("alice@example.com".to_owned()),
        groups: vec!["sre".to_owned()],
        claims_json: r#"{"sub":"alice","email":"alice@example.com","groups":["sre"]}"#.to_owned(),
        issuer: issuer.to_owned(),
        web_session: "0123abcd".to_owned(),
        approved_at: SystemTime::now(),
    }
}

/// The link's row once it is stored (the prompt is shown after the write).
fn link_row(store: &Sqlite, id_hash: &str) -> LinkRow {
    block(store.ssh_link(id_hash))
        .unwrap()
        .unwrap_or_else(|| panic!("no link stored under {id_hash}"))
}

/// Waits until the link is in `state`.
fn wait_for_state(store: &Sqlite, id_hash: &str, state: LinkState, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let row = link_row(store, id_hash);
        if row.state == state {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "the link is {:?}, not {state:?}, after {within:?}",
            row.state
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn logins(config: &Path, args: &[&str]) -> String {
    let mut c = Command::new(bin());
    c.arg("logins").args(args).arg("--config").arg(config);
    let (code, out, err) = run(c, Duration::from_secs(20));
    assert_eq!(code, 0, "gatehouse logins {args:?}: {err}");
    out
}

/// Runs `ssh` to the end and returns (status, stdout, stderr).
fn finish(mut child: ChildGuard) -> (i32, String, String) {
    let status = child
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("ssh did not finish:\n{}", child.stderr_text()));
    std::thread::sleep(Duration::from_millis(50));
    (
        status.code().unwrap_or(-1),
        child.stdout_text(),
        child.stderr_text(),
    )
}

#[test]
fn an_approved_link_binds_the_key_and_the_command_runs_at_once() {
    let idp = DevIdp::start(0, &["--no-device-flow"]);
    let w = World::new();
    let (web, public_url) = web_section();
    let config = w.write_config(
        &[sre_route(&w)],
        &format!("{web}{}", idp_section(&idp.issuer, "")),
    );
    let gw = Gateway::start(&config);
    let laptop = keygen(w.dir.path(), "laptop");
    let user = format!("{LOGIN}@prod");
    let store = Sqlite::open(&w.path("state")).unwrap();

    let child = ChildGuard::spawn(w.ssh_command(&laptop, &gw, &user, &["echo", "signed-in"]))
        .expect("spawn ssh");
    let (token, phrase) = read_link(&child, &public_url);
    let stderr = child.stderr_text();
    eprintln!("the prompt, as ssh showed it:\n{stderr}");
    assert!(stderr.contains("Sign in to Gatehouse"), "{stderr}");
    assert!(!stderr.contains(" and enter "), "{stderr}");

    // The link is stored under the token's hash, for this key and session.
    let hash = id_hash(&token);
    let row = link_row(&store, &hash);
    assert_eq!(row.state, LinkState::Pending);
    assert_eq!(row.link.phrase, phrase);
    assert_eq!(row.link.fingerprint, fingerprint(&laptop));
    assert_eq!(row.link.user_name, user);
    assert_eq!(row.link.client_addr, "127.0.0.1");
    assert!(!row.link.gateway_id.is_empty());
    assert_eq!(
        row.link.expires_at.duration_since(row.link.created_at).ok(),
        Some(Duration::from_secs(600))
    );
    let issued = gw.wait_for_log("event=\"signin.link_issued\"");
    assert!(
        issued.contains(&format!(" link={} ", &hash[..12])),
        "{issued}"
    );
    assert!(issued.contains(&row.link.session_id), "{issued}");
    assert!(issued.contains("expires_in_s=600"), "{issued}");

    // The user approves in the browser (here: as the web app would); the
    // command's output follows within a second or so.
    std::thread::sleep(Duration::from_millis(700)); // mid-way through a round
    assert_eq!(
        block(store.ssh_link_approve(&hash, alice(&idp.issuer), SystemTime::now())).unwrap(),
        LinkApproved::Approved
    );
    let approved = Instant::now();
    while !child.stdout_text().contains("signed-in") {
        assert!(
            approved.elapsed() < Duration::from_secs(30),
            "no output after the approval:\n{}\n{}",
            child.stderr_text(),
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = approved.elapsed();
    eprintln!("approval to the command's output: {took:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let (code, out, err) = finish(child);
    assert_eq!((code, out.trim()), (0, "signed-in"), "{err}");

    // The approval was taken once: used, and approving again changes nothing.
    assert_eq!(link_row(&store, &hash).state, LinkState::Used);
    assert_eq!(
        block(store.ssh_link_approve(&hash, alice(&idp.issuer), SystemTime::now())).unwrap(),
        LinkApproved::Already(LinkState::Used)
    );

    // The same events as after a device sign-in, without a refresh token.
    let bound = gw.wait_for_log("event=\"binding.created\"");
    assert!(bound.contains(&fingerprint(&laptop)), "{bound}");
    let log = gw.log();
    let completed = log
        .lines()
        .find(|l| l.contains("event=\"signin.completed\""))
        .unwrap_or_else(|| panic!("no signin.completed:\n{log}"));
    assert!(completed.contains("refresh_token=false"), "{completed}");
    assert!(log.contains("method=\"sign_in_link\""), "{log}");

    // The key is bound: listed, and the next connection needs no sign-in.
    let listed = logins(&config, &["list"]);
    assert!(listed.contains("alice@example.com"), "{listed}");
    assert!(listed.contains(&fingerprint(&laptop)), "{listed}");
    let (code, out, err) = w.ssh_with_key(&laptop, &gw, &user, &["echo", "again"]);
    assert_eq!((code, out.trim()), (0, "again"), "{err}");
    assert!(!err.contains("Sign in"), "{err}");

    // The token never reaches the log.
    assert!(!gw.log().contains(&token), "the link's token is in the log");
}

#[test]
fn a_client_that_leaves_closes_its_link_and_domains_are_checked() {
    let idp = DevIdp::start(0, &["--no-device-flow"]);
    let w = World::new();
    let (web, public_url) = web_section();
    let allowed = "  allowed_domains: [corp.example]\n  ssh_sign_in: link\n";
    let config = w.write_config(
        &[sre_route(&w)],
        &format!("{web}{}", idp_section(&idp.issuer, allowed)),
    );
    let gw = Gateway::start(&config);
    let laptop = keygen(w.dir.path(), "laptop");
    let user = format!("{LOGIN}@prod");
    let store = Sqlite::open(&w.path("state")).unwrap();

    // The client goes away before anyone approves: the link is closed, so
    // the page can say so, and it can no longer be approved.
    let waiting =
        ChildGuard::spawn(w.ssh_command(&laptop, &gw, &user, &["true"])).expect("spawn ssh");
    let (token, _) = read_link(&waiting, &public_url);
    let hash = id_hash(&token);
    assert_eq!(link_row(&store, &hash).state, LinkState::Pending);
    drop(waiting);
    let took = wait_for_state(&store, &hash, LinkState::Closed, Duration::from_secs(5));
    eprintln!("link closed {took:?} after the client left");
    assert_eq!(
        block(store.ssh_link_approve(&hash, alice(&idp.issuer), SystemTime::now())).unwrap(),
        LinkApproved::Already(LinkState::Closed)
    );
    let cancelled = gw.wait_for_log("sign-in cancelled");
    assert!(cancelled.contains("event=\"signin.failed\""), "{cancelled}");

    // alice@example.com is not in `allowed_domains`: the gateway refuses
    // her approval with the device flow's line, and binds nothing.
    let child =
        ChildGuard::spawn(w.ssh_command(&laptop, &gw, &user, &["true"])).expect("spawn ssh");
    let (token, _) = read_link(&child, &public_url);
    let hash = id_hash(&token);
    assert_eq!(
        block(store.ssh_link_approve(&hash, alice(&idp.issuer), SystemTime::now())).unwrap(),
        LinkApproved::Approved
    );
    let (code, _, err) = finish(child);
    assert_eq!(code, 255, "{err}");
    assert!(
        err.contains("gatehouse: access denied: alice@example.com is not from an allowed domain"),
        "{err}"
    );
    assert_eq!(logins(&config, &["list"]).trim(), "no login bindings");
    gw.wait_for_log("email domain of alice@example.com is not allowed");
}

#[test]
fn without_the_device_grant_device_mode_and_a_missing_web_address_each_get_one_line() {
    let idp = DevIdp::start(0, &["--no-device-flow"]);
    let w = World::new();
    let laptop = keygen(w.dir.path(), "laptop");
    let user = format!("{LOGIN}@prod");
    let (web, _) = web_section();
    let cases = [
        (
            format!(
                "{web}{}",
                idp_section(&idp.issuer, "  ssh_sign_in: device\n")
            ),
            "gatehouse: sign-in is not available: the identity provider offers no device sign-in\n",
        ),
        (
            idp_section(&idp.issuer, ""),
            "gatehouse: sign-in is not available: the identity provider offers no device sign-in \
             and this gateway has no web address for a sign-in link\n",
        ),
    ];
    for (top, line) in cases {
        let config = w.write_config(&[sre_route(&w)], &top);
        let gw = Gateway::start(&config);
        let (code, out, err) = run(
            w.ssh_command(&laptop, &gw, &user, &["true"]),
            Duration::from_secs(30),
        );
        assert_eq!(code, 255, "{out}{err}");
        assert!(err.contains(line), "{err}");
        assert_eq!(err.matches("gatehouse:").count(), 1, "{err}");
        assert!(!err.contains("Sign in to Gatehouse"), "{err}");
        let failed = gw.wait_for_log("event=\"signin.failed\"");
        assert!(failed.contains("sign-in is not available"), "{failed}");
        assert!(!gw.log().contains("signin.link_issued"), "{}", gw.log());
    }
}

#[test]
fn auto_mode_still_shows_a_device_code_when_the_idp_offers_the_grant() {
    let idp = DevIdp::start(0, &[]);
    let w = World::new();
    let (web, _) = web_section();
    let config = w.write_config(
        &[sre_route(&w)],
        &format!("{web}{}", idp_section(&idp.issuer, "")),
    );
    let gw = Gateway::start(&config);
    let laptop = keygen(w.dir.path(), "laptop");
    let child = ChildGuard::spawn(w.ssh_command(&laptop, &gw, &format!("{LOGIN}@prod"), &["true"]))
        .expect("spawn ssh");
    let line = child
        .wait_for_output(" and enter ", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("no device code: {e}"));
    assert!(line.contains(&format!("{}/device", idp.issuer)), "{line}");
    assert!(!child.stderr_text().contains("/ssh/link/"));
    gw.wait_for_log("event=\"signin.started\"");
}

/// Runs one state-store call from a synchronous test.
fn block<T>(call: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(call)
}

/// The whole flow a user goes through: `ssh` shows the link, the browser
/// signs in at the IdP (authorization code) and lands on the link's page
/// on the gateway's own web listener, which shows the phrase, the key and
/// the client; a GET approves nothing; the Approve button does, and the
/// command runs. A replayed link gets a page that says it was used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_page_in_a_real_browser_approves_and_refuses_a_replay() {
    let idp = DevIdp::start(
        0,
        &[
            "--no-device-flow",
            "--redirect-uri",
            "http://127.0.0.1/auth/callback",
        ],
    );
    let w = World::new();
    let port = sshd_test::free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let config = w.write_config(
        &[sre_route(&w)],
        &format!(
            "web:\n  listen: 127.0.0.1:{port}\n  public_url: {public_url}\n  plain_http: true\n{}",
            idp_section(&idp.issuer, "")
        ),
    );
    let gw = Gateway::start(&config);
    let laptop = keygen(w.dir.path(), "laptop");
    let child = ChildGuard::spawn(w.ssh_command(
        &laptop,
        &gw,
        &format!("{LOGIN}@prod"),
        &["echo", "approved-in-a-browser"],
    ))
    .expect("spawn ssh");
    let (token, phrase) = read_link(&child, &public_url);
    let link = format!("{public_url}/ssh/link/{token}");

    let browser = common::browser::Browser::start().await;
    browser.client.goto(&link).await.unwrap();
    browser.fill("input[name=login]", "alice@example.com").await;
    browser.fill("input[name=password]", "alice-pw").await;
    browser.click("button[type=submit]").await;
    browser.click("form[action$=confirm] button").await;
    // Back at the link's page: what the user checks before approving.
    assert_eq!(browser.text("#phrase").await, phrase);
    assert_eq!(browser.text("#key").await, fingerprint(&laptop));
    assert_eq!(browser.text("#client").await, "127.0.0.1");
    assert_eq!(browser.text("#route").await, format!("{LOGIN}@prod"));
    // Showing the page approved nothing.
    let store = Sqlite::open(&w.path("state")).unwrap();
    let row = store.ssh_link(&id_hash(&token)).await.unwrap().unwrap();
    assert_eq!(row.state, LinkState::Pending);
    assert!(!child.stdout_text().contains("approved-in-a-browser"));

    browser.click("#approve button").await;
    let approved = Instant::now();
    assert!(browser.text("#message").await.contains("Approved"));
    while !child.stdout_text().contains("approved-in-a-browser") {
        assert!(
            approved.elapsed() < Duration::from_secs(30),
            "no output after approving:\n{}",
            child.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("approve click to output: {:?}", approved.elapsed());
    let (code, out, err) = finish(child);
    assert_eq!((code, out.trim()), (0, "approved-in-a-browser"), "{err}");
    gw.wait_for_log("event=\"signin.link_approved\"");

    // The same link again: a page that says so, and an audit event.
    browser.client.goto(&link).await.unwrap();
    let said = browser.text("#message").await;
    assert!(said.contains("already used"), "{said}");
    let refused = gw.wait_for_log("event=\"signin.link_refused\"");
    assert!(refused.contains("reason=\"used\""), "{refused}");
    browser.close().await;
    assert!(!gw.log().contains(&token), "the link's token in the log");
}
