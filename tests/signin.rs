//! Sign-in inside SSH (issue 3): the device-code login in a
//! keyboard-interactive prompt, bound to the client key. Real `ssh`, real
//! `sshd`, and the real dev IdP (`dev/idp`), whose browser side the tests
//! complete with `approve.mjs` while `ssh` waits at the prompt.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Gateway, LOGIN, World, bin, fingerprint, keygen, run};
use sshd_test::idp::DevIdp;
use sshd_test::{ChildGuard, require_program};
use state::{Sqlite, Store};

/// The `idp` section for the dev IdP, with groups and a refresh token.
fn idp_section(issuer: &str, extra: &str) -> String {
    format!(
        "idp:\n  issuer: {issuer}\n  client_id: gatehouse\n  scopes: [openid, email, profile, groups, offline_access]\n{extra}"
    )
}

/// A route that people in group `sre` may use (alice is in it, bob not).
fn sre_route(w: &World) -> String {
    w.route(
        "prod",
        "policy: {rules: [{allow: sre, when: {groups: sre}}]}",
    )
}

/// `ssh` options for `key`, or for a client that offers no key at all.
fn ssh_command(w: &World, gw: &Gateway, key: Option<&Path>, user: &str, cmd: &[&str]) -> Command {
    if let Some(key) = key {
        return w.ssh_command(key, gw, user, cmd);
    }
    let mut args = w.ssh_args(&w.client_key, gw.port);
    let i = args.iter().position(|a| a == "-i").unwrap();
    args.drain(i..i + 2);
    args.extend(["-o".into(), "PubkeyAuthentication=no".into()]);
    let mut c = Command::new(require_program("ssh"));
    c.args(args).arg(format!("{user}@127.0.0.1")).args(cmd);
    c
}

/// What one `ssh` run showed.
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
    /// The user code from the sign-in prompt, if one was shown.
    user_code: Option<String>,
}

/// How the test plays the user at the browser.
enum Browser<'a> {
    /// Nobody answers (expiry, disconnects).
    Ignore,
    /// Approve (or deny) as this user of the dev IdP.
    Answer {
        idp: &'a DevIdp,
        login: &'a str,
        password: &'a str,
        deny: bool,
    },
}

fn alice(idp: &DevIdp) -> Browser<'_> {
    Browser::Answer {
        idp,
        login: "alice@example.com",
        password: "alice-pw",
        deny: false,
    }
}

/// Runs `ssh`; if it shows the sign-in prompt, plays `browser` with the
/// code it shows. `expect_prompt` says whether a prompt must appear.
fn ssh_signing_in(cmd: Command, expect_prompt: bool, browser: Browser<'_>) -> Outcome {
    let mut child = ChildGuard::spawn(cmd).expect("spawn ssh");
    let mut user_code = None;
    if expect_prompt {
        let line = child
            .wait_for_output(" and enter ", Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("no sign-in prompt: {e}"));
        let code = line.split_whitespace().last().unwrap().to_owned();
        if let Browser::Answer {
            idp,
            login,
            password,
            deny,
        } = browser
        {
            idp.answer(&code, login, password, deny);
        }
        user_code = Some(code);
    }
    let status = child
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("ssh did not finish:\n{}", child.stderr_text()));
    std::thread::sleep(Duration::from_millis(50));
    Outcome {
        code: status.code().unwrap_or(-1),
        stdout: child.stdout_text(),
        stderr: child.stderr_text(),
        user_code,
    }
}

fn logins(config: &Path, args: &[&str]) -> String {
    let mut c = Command::new(bin());
    c.arg("logins").args(args).arg("--config").arg(config);
    let (code, out, err) = run(c, Duration::from_secs(20));
    assert_eq!(code, 0, "gatehouse logins {args:?}: {err}");
    out
}

#[test]
fn sign_in_binds_the_key_and_later_connections_skip_the_prompt() {
    let idp = DevIdp::start(0, &[]);
    let w = World::new();
    let config = w.write_config(&[sre_route(&w)], &idp_section(&idp.issuer, ""));
    let gw = Gateway::start(&config);
    let laptop = keygen(w.dir.path(), "laptop");
    let user = format!("{LOGIN}@prod");

    // First connection: the prompt, alice approves, the command runs.
    let started = Instant::now();
    let first = ssh_signing_in(
        ssh_command(&w, &gw, Some(&laptop), &user, &["echo", "signed-in"]),
        true,
        alice(&idp),
    );
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(first.stdout.trim(), "signed-in");
    let code = first.user_code.clone().unwrap();
    assert!(
        first.stderr.contains("Sign in to Gatehouse"),
        "{}",
        first.stderr
    );
    assert!(
        first
            .stderr
            .contains(&format!("Open {}/device?user_code={code}", idp.issuer))
            || first
                .stderr
                .contains(&format!("Open {}/device", idp.issuer)),
        "{}",
        first.stderr
    );
    assert!(
        first.stderr.contains("This code expires in 10 minutes."),
        "{}",
        first.stderr
    );
    eprintln!("first connection with sign-in took {:?}", started.elapsed());
    let log = gw.wait_for_log("event=\"binding.created\"");
    assert!(log.contains(&fingerprint(&laptop)), "{log}");

    // Second connection, same key: no prompt.
    let second = ssh_signing_in(
        ssh_command(&w, &gw, Some(&laptop), &user, &["echo", "again"]),
        false,
        Browser::Ignore,
    );
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(second.stdout.trim(), "again");
    assert!(!second.stderr.contains("Sign in"), "{}", second.stderr);
    let log = gw.wait_for_log("method=\"binding\"");
    assert!(log.contains("identity_kind=\"user\""), "{log}");

    // The binding is listed with the key and the identity.
    let listed = logins(&config, &["list"]);
    assert!(listed.contains("alice@example.com"), "{listed}");
    assert!(listed.contains(&fingerprint(&laptop)), "{listed}");

    // Another key gets its own prompt; denying it says so.
    let desktop = keygen(w.dir.path(), "desktop");
    let other = ssh_signing_in(
        ssh_command(&w, &gw, Some(&desktop), &user, &["true"]),
        true,
        Browser::Answer {
            idp: &idp,
            login: "alice@example.com",
            password: "alice-pw",
            deny: true,
        },
    );
    assert_eq!(other.code, 255);
    assert!(
        other.stderr.contains("gatehouse: sign-in was denied"),
        "{}",
        other.stderr
    );
    let other_code = other.user_code.unwrap();

    // Revoking the binding brings the prompt back at once.
    let revoked = logins(&config, &["revoke", "--user", "alice@example.com"]);
    assert!(revoked.starts_with("revoked 1 login"), "{revoked}");
    let after = ssh_signing_in(
        ssh_command(&w, &gw, Some(&laptop), &user, &["echo", "back"]),
        true,
        alice(&idp),
    );
    assert_eq!(after.code, 0, "{}", after.stderr);
    assert_eq!(after.stdout.trim(), "back");

    // No user code, token or refresh token ever reaches the log.
    let store = Sqlite::open(&w.path("state")).unwrap();
    let refresh = block(store.refresh_token(&fingerprint(&laptop)))
        .unwrap()
        .expect("offline_access gives a refresh token")
        .expose()
        .to_owned();
    let log = gw.log();
    for secret in [&code, &other_code, &refresh] {
        assert!(
            !log.contains(secret.as_str()),
            "secret {secret:?} in the log"
        );
    }
    assert!(!log.contains("eyJ"), "a JWT reached the log:\n{log}");
}

#[test]
fn groups_from_the_token_reach_the_route_check() {
    let idp = DevIdp::start(0, &[]);
    let w = World::new();
    let config = w.write_config(&[sre_route(&w)], &idp_section(&idp.issuer, ""));
    let gw = Gateway::start(&config);
    let user = format!("{LOGIN}@prod");

    // bob is in `dev`, not `sre`: signed in, then refused by the route.
    // This client offers no key, so nothing is bound.
    let bob = ssh_signing_in(
        ssh_command(&w, &gw, None, &user, &["true"]),
        true,
        Browser::Answer {
            idp: &idp,
            login: "bob@example.com",
            password: "bob-pw",
            deny: false,
        },
    );
    assert_eq!(bob.code, 255);
    assert!(
        bob.stderr
            .contains("gatehouse: access denied: route prod: requires group sre"),
        "{}",
        bob.stderr
    );

    // alice is in `sre`; without a key she signs in every time.
    let first = ssh_signing_in(
        ssh_command(&w, &gw, None, &user, &["id", "-un"]),
        true,
        alice(&idp),
    );
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(first.stdout.trim(), LOGIN);
    assert_eq!(logins(&config, &["list"]).trim(), "no login bindings");
}

#[test]
fn expiry_outage_and_domain_each_get_their_line() {
    let idp = DevIdp::start(0, &["--device-code-ttl", "3"]);
    let w = World::new();
    let allowed = "  allowed_domains: [corp.example]\n";
    let config = w.write_config(&[sre_route(&w)], &idp_section(&idp.issuer, ""));
    let gw = Gateway::start(&config);
    let user = format!("{LOGIN}@prod");
    let key = keygen(w.dir.path(), "laptop");

    // Nobody signs in within the code's 3 s.
    let expired = ssh_signing_in(
        ssh_command(&w, &gw, Some(&key), &user, &["true"]),
        true,
        Browser::Ignore,
    );
    assert_eq!(expired.code, 255);
    assert!(
        expired
            .stderr
            .contains("gatehouse: sign-in expired, run ssh again"),
        "{}",
        expired.stderr
    );
    gw.wait_for_log("event=\"signin.failed\"");
    drop(gw);

    // A domain outside `allowed_domains` is refused after sign-in.
    let config = w.write_config(&[sre_route(&w)], &idp_section(&idp.issuer, allowed));
    let gw = Gateway::start(&config);
    let domain = ssh_signing_in(
        ssh_command(&w, &gw, Some(&key), &user, &["true"]),
        true,
        alice(&idp),
    );
    assert_eq!(domain.code, 255);
    assert!(
        domain
            .stderr
            .contains("gatehouse: access denied: alice@example.com is not from an allowed domain"),
        "{}",
        domain.stderr
    );

    // The IdP goes down: one line, and quickly.
    let mut idp = idp;
    idp.stop();
    let started = Instant::now();
    let down = ssh_signing_in(
        ssh_command(&w, &gw, Some(&key), &user, &["true"]),
        false,
        Browser::Ignore,
    );
    assert_eq!(down.code, 255);
    assert!(
        down.stderr
            .contains("gatehouse: identity provider unavailable"),
        "{}",
        down.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_gateway_started_while_the_idp_is_down_signs_in_once_it_is_back() {
    let port = sshd_test::free_port();
    let w = World::new();
    let issuer = format!("http://127.0.0.1:{port}");
    // Registered service keys work without the IdP.
    let routes = [sre_route(&w), w.route("ops", "")];
    let config = w.write_config(&routes, &idp_section(&issuer, ""));
    let gw = Gateway::start(&config);
    let (code, out, err) = w.ssh(&gw, &format!("{LOGIN}@ops"), &["echo", "service"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "service");

    // The IdP comes up on the configured port; the next sign-in works.
    let idp = DevIdp::start(port, &[]);
    std::thread::sleep(Duration::from_secs(5)); // past the retry pause
    let key = keygen(w.dir.path(), "laptop");
    let signed = ssh_signing_in(
        ssh_command(
            &w,
            &gw,
            Some(&key),
            &format!("{LOGIN}@prod"),
            &["echo", "ok"],
        ),
        true,
        alice(&idp),
    );
    assert_eq!(signed.code, 0, "{}", signed.stderr);
    assert_eq!(signed.stdout.trim(), "ok");
}

/// An IdP that accepts connections and never answers (a hung process, a
/// black-holed proxy) costs the user one `http_timeout` (5 s by default),
/// then one plain line; the gateway goes on serving.
#[test]
fn an_idp_that_never_answers_gives_a_line_within_ten_seconds() {
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", mute.local_addr().unwrap());
    // Accepted and held, never answered.
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let held = std::sync::Arc::clone(&held);
        std::thread::spawn(move || {
            for stream in mute.incoming().map_while(Result::ok) {
                held.lock().unwrap().push(stream);
            }
        });
    }
    let w = World::new();
    let routes = [sre_route(&w), w.route("ops", "")];
    let config = w.write_config(&routes, &idp_section(&issuer, ""));
    let gw = Gateway::start(&config);
    let key = keygen(w.dir.path(), "laptop");
    for _ in 0..2 {
        let started = Instant::now();
        let down = ssh_signing_in(
            ssh_command(&w, &gw, Some(&key), &format!("{LOGIN}@prod"), &["true"]),
            false,
            Browser::Ignore,
        );
        let took = started.elapsed();
        assert_eq!(down.code, 255);
        assert!(
            down.stderr
                .contains("gatehouse: identity provider unavailable"),
            "{}",
            down.stderr
        );
        assert!(took < Duration::from_secs(10), "the line took {took:?}");
    }
    assert!(
        !held.lock().unwrap().is_empty(),
        "the gateway never asked the IdP"
    );
    let log = gw.wait_for_log("event=\"signin.failed\"");
    assert!(
        log.contains(&format!("identity provider {issuer} unavailable")),
        "{log}"
    );
    // Registered keys still get in.
    let (code, out, err) = w.ssh(&gw, &format!("{LOGIN}@ops"), &["echo", "service"]);
    assert_eq!((code, out.trim()), (0, "service"), "{err}");
}

#[test]
fn a_client_that_leaves_mid_sign_in_stops_the_polling() {
    let idp = DevIdp::start(0, &[]);
    let w = World::new();
    let limits = "limits:\n  max_sign_ins_per_source: 1\n";
    let config = w.write_config(
        &[sre_route(&w)],
        &format!("{limits}{}", idp_section(&idp.issuer, "")),
    );
    let gw = Gateway::start(&config);
    let user = format!("{LOGIN}@prod");
    let key = keygen(w.dir.path(), "laptop");

    let waiting = ChildGuard::spawn(ssh_command(&w, &gw, Some(&key), &user, &["true"])).unwrap();
    waiting
        .wait_for_output(" and enter ", Duration::from_secs(30))
        .unwrap();

    // A second sign-in from the same address is over the limit.
    let second = ssh_signing_in(
        ssh_command(&w, &gw, Some(&key), &user, &["true"]),
        false,
        Browser::Ignore,
    );
    assert_eq!(second.code, 255);
    assert!(
        second
            .stderr
            .contains("gatehouse: too many sign-ins in progress from your address"),
        "{}",
        second.stderr
    );
    assert!(gw.log().contains("limit=\"max_sign_ins_per_source\""));

    // The first client goes away: its sign-in is cancelled within about a
    // second, and the slot is free again.
    let left = Instant::now();
    drop(waiting);
    gw.wait_for_log("sign-in cancelled");
    let noticed = left.elapsed();
    eprintln!("sign-in cancelled {noticed:?} after the client left");
    assert!(
        noticed < Duration::from_secs(5),
        "noticed after {noticed:?}"
    );
    let third = ssh_signing_in(
        ssh_command(&w, &gw, Some(&key), &user, &["echo", "third"]),
        true,
        alice(&idp),
    );
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert_eq!(third.stdout.trim(), "third");
}

#[test]
fn reauth_renews_a_live_sign_in_and_revoking_it_ends_the_session() {
    let idp = DevIdp::start(0, &[]);
    let w = World::new();
    let route = w.route(
        "prod",
        "policy: {obligations: {reauth_every: 2s}, rules: [{allow: sre, when: {groups: sre}}]}",
    );
    let config = w.write_config(&[route], &idp_section(&idp.issuer, "  poll_interval: 1s\n"));
    let gw = Gateway::start(&config);
    let laptop = keygen(w.dir.path(), "laptop");
    let cmd = ssh_command(
        &w,
        &gw,
        Some(&laptop),
        &format!("{LOGIN}@prod"),
        &["echo running; exec sleep 60"],
    );
    let mut child = ChildGuard::spawn(cmd).expect("spawn ssh");
    let line = child
        .wait_for_output(" and enter ", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("no sign-in prompt: {e}"));
    let code = line.split_whitespace().last().unwrap().to_owned();
    idp.answer(&code, "alice@example.com", "alice-pw", false);
    child
        .wait_for_output("running", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("the session did not start: {e}"));

    // Every 2 s the sign-in is renewed with the refresh token at the real
    // IdP, and the session goes on.
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw.log().matches("event=\"signin.refreshed\"").count() < 2 {
        assert!(Instant::now() < deadline, "no refreshes:\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(child.is_running(), "{}", child.stderr_text());
    assert!(!gw.log().contains("signin.refresh_failed"), "{}", gw.log());
    // The refresh token in use never reaches the log.
    let store = Sqlite::open(&w.path("state")).unwrap();
    let token = block(store.refresh_token(&fingerprint(&laptop)))
        .unwrap()
        .expect("a refresh token")
        .expose()
        .to_owned();
    assert!(!gw.log().contains(&token));

    // Revoking the sign-in ends the live session within 2 s.
    let asked = Instant::now();
    logins(&config, &["revoke", "--user", "alice@example.com"]);
    let status = child
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("not ended:\n{}", child.stderr_text()));
    let took = asked.elapsed();
    std::thread::sleep(Duration::from_millis(50));
    let stderr = child.stderr_text();
    assert_eq!(status.code(), Some(255), "{stderr}");
    assert!(
        stderr.contains(
            "gatehouse: session ended: access revoked (your sign-in was revoked by an administrator)"
        ),
        "{stderr}"
    );
    eprintln!("ended {took:?} after logins revoke was asked");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let log = gw.wait_for_log("cause=\"revoked\"");
    assert!(log.contains("event=\"session.ended\""), "{log}");
    assert!(
        block(store.bindings())
            .unwrap()
            .iter()
            .all(|b| b.revoked_at.is_some())
    );
}

/// Runs one state-store call from a synchronous test.
fn block<T>(call: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(call)
}
