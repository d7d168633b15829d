//! The web app's ground floor (issue 13): `gatehouse web` against the
//! real dev IdP with the authorization-code grant. Two sign-ins at once,
//! a callback in the wrong browser, a used callback, sign-out with and
//! without its CSRF token, and revocation ending a browser session.

mod common;

use std::process::Command;
use std::time::Duration;

use common::web::{Jar, Web, begin, browse, client, csrf, get, location, start_web};
use common::{World, bin, run};
use reqwest::StatusCode;
use sshd_test::idp::DevIdp;

/// The dev IdP (accepting our callback on any loopback port), a world
/// whose config has an idp and a plain-HTTP web section on a free port,
/// and `gatehouse web` serving it.
fn world_with_web() -> (DevIdp, World, std::path::PathBuf, Web) {
    let idp = DevIdp::start(0, &["--redirect-uri", "http://127.0.0.1/auth/callback"]);
    let w = World::new();
    let port = sshd_test::free_port();
    let config = w.write_config(
        &[w.route("t", "")],
        &format!(
            "idp:\n  issuer: {}\n  client_id: gatehouse\n  scopes: [openid, email, profile, groups]\n\
             web:\n  listen: 127.0.0.1:{port}\n  public_url: http://127.0.0.1:{port}\n  plain_http: true\n",
            idp.issuer
        ),
    );
    let web = start_web(&config);
    (idp, w, config, web)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_sign_in_with_pkce_sign_out_with_csrf_and_end_on_revocation() {
    let (idp, _w, config, web) = world_with_web();
    let c = client();

    let r = c.get(format!("{}/healthz", web.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c.get(format!("{}/readyz", web.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );

    // Nobody signed in: off to sign in first.
    let (mut alice, mut bob) = (Jar::default(), Jar::default());
    let r = get(&c, &mut alice, &format!("{}/", web.url)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/auth/login?return_to=/");

    // Two sign-ins at once, each finished in its own browser.
    let to_idp_a = begin(&c, &mut alice, &web, "/a").await;
    let to_idp_b = begin(&c, &mut bob, &web, "/b").await;
    assert!(to_idp_a.starts_with(&idp.issuer), "{to_idp_a}");
    assert!(
        to_idp_a.contains("code_challenge_method=S256"),
        "{to_idp_a}"
    );
    let back_b = browse(&idp.issuer, &to_idp_b, "bob@example.com", "bob-pw").await;
    let back_a = browse(&idp.issuer, &to_idp_a, "alice@example.com", "alice-pw").await;

    // Bob's callback in Alice's browser (login CSRF) is refused.
    let r = get(&c, &mut alice.clone(), &back_b).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("started in another browser")
    );

    let r = get(&c, &mut alice, &back_a).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.text().await);
    assert_eq!(location(&r), "/a");
    assert!(alice.0.contains_key("__Host-gatehouse"));
    assert!(
        !alice
            .0
            .keys()
            .any(|k| k.starts_with("__Host-gatehouse-login-")),
        "the attempt's cookie is cleared"
    );
    let r = get(&c, &mut bob, &back_b).await;
    assert_eq!(location(&r), "/b");
    // A callback is good once.
    let mut replay = Jar::default();
    let r = get(&c, &mut replay, &back_a).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let r = get(&c, &mut alice, &format!("{}/", web.url)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Signed in as <strong>alice@example.com</strong>"),
        "{html}"
    );
    let token = csrf(&html);

    // Sign-out needs the form's CSRF token.
    let signout = format!("{}/auth/signout", web.url);
    for form in ["", "csrf=forged"] {
        let r = c
            .post(&signout)
            .header("cookie", alice.header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    let session_cookie = alice.0["__Host-gatehouse"].clone();
    let r = c
        .post(&signout)
        .header("cookie", alice.header())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The old cookie no longer works, even if a browser kept it.
    let mut kept = Jar::default();
    kept.0.insert("__Host-gatehouse".to_owned(), session_cookie);
    let r = get(&c, &mut kept, &format!("{}/", web.url)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // Revoking Bob ends his browser session.
    let r = get(&c, &mut bob, &format!("{}/", web.url)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut cmd = Command::new(bin());
    cmd.args(["logins", "revoke", "--user", "bob@example.com", "--config"])
        .arg(&config);
    let (code, out, err) = run(cmd, Duration::from_secs(30));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ended 1 signed-in browser session"), "{out}");
    let r = get(&c, &mut bob, &format!("{}/", web.url)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // Audited, and no cookie, code or state in the log.
    let log = web.child.stderr_text();
    assert_eq!(log.matches("event=\"web.signin\"").count(), 2, "{log}");
    assert!(log.contains("event=\"web.signin_failed\""), "{log}");
    assert!(log.contains("event=\"web.signout\""), "{log}");
    for secret in [
        &alice.0.get("__Host-gatehouse").cloned().unwrap_or_default(),
        &bob.0["__Host-gatehouse"],
    ] {
        assert!(
            secret.is_empty() || !log.contains(secret.as_str()),
            "a cookie in the log"
        );
    }
    let code_a = back_a
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    assert!(!log.contains(code_a), "the code in the log");
}

/// The same sign-in in headless Chromium: the cookies hold on
/// http://127.0.0.1 (a secure context, so `__Host-` and Secure work), the
/// IdP's pages and our redirects are followed by the browser itself, and
/// the page's DOM text says who is signed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_signs_in_and_out() {
    let (idp, _w, _config, web) = world_with_web();
    let browser = common::browser::Browser::start().await;
    browser.client.goto(&format!("{}/", web.url)).await.unwrap();
    // The IdP's sign-in page, then its consent page.
    browser.fill("input[name=login]", "alice@example.com").await;
    browser.fill("input[name=password]", "alice-pw").await;
    browser.click("button[type=submit]").await;
    browser.click("form[action$=confirm] button").await;
    let who = browser.text("#whoami").await;
    assert!(who.contains("Signed in as alice@example.com"), "{who}");
    assert!(who.contains("sre"), "{who}");
    let url = browser.client.current_url().await.unwrap();
    assert_eq!(url.as_str(), format!("{}/", web.url));

    browser.click("form[action='/auth/signout'] button").await;
    let said = browser.text("#message").await;
    assert_eq!(said, "You are signed out.");
    // Signed out here: / sends the browser to sign in again.
    browser.client.goto(&format!("{}/", web.url)).await.unwrap();
    let now = browser.client.current_url().await.unwrap();
    let page = browser.client.source().await.unwrap();
    assert!(!page.contains("id=\"whoami\""), "still signed in at {now}");
    assert!(
        now.as_str().starts_with(&idp.issuer),
        "not sent to sign in: {now}"
    );
    browser.close().await;
    let log = web.child.stderr_text();
    assert!(log.contains("event=\"web.signout\""), "{log}");
}
