//! The web-session checks of the conformance suite: browser sessions and
//! sign-ins in progress.

use std::time::Duration;

use super::{Failure, HOUR, fp, t};
use crate::{Revoke, Store, WebLogin, WebSession};

const MINUTE: Duration = Duration::from_secs(60);

fn web(id: &str, sub: &str, email: Option<&str>, idle: Duration, lifetime: Duration) -> WebSession {
    WebSession {
        id_hash: id.to_owned(),
        sub: sub.to_owned(),
        email: email.map(str::to_owned),
        groups: vec!["sre".to_owned()],
        claims_json: "{}".to_owned(),
        issuer: "https://idp.example".to_owned(),
        csrf: format!("csrf-{id}"),
        client_addr: "192.0.2.1".to_owned(),
        created_at: t(0),
        last_seen_at: t(0),
        expires_at: t(0) + lifetime,
        idle_timeout: idle,
    }
}

pub(super) async fn web_sessions(s: &dyn Store) -> Result<(), Failure> {
    let at = |d: Duration| t(0) + d;
    // Idle: each request moves the idle deadline.
    let idle = web(
        "idle",
        "alice",
        Some("Alice@Example.com"),
        30 * MINUTE,
        8 * HOUR,
    );
    s.web_session_create(idle.clone()).await?;
    let got = s.web_session("idle", at(10 * MINUTE)).await?;
    ensure_eq!(
        got.as_ref().map(|w| w.groups.clone()),
        Some(vec!["sre".to_owned()])
    );
    ensure_eq!(
        got.map(|w| w.last_seen_at),
        Some(at(10 * MINUTE)),
        "a request counts"
    );
    ensure!(
        s.web_session("idle", at(39 * MINUTE)).await?.is_some(),
        "idle from the last request"
    );
    ensure!(
        s.web_session("idle", at(70 * MINUTE)).await?.is_none(),
        "31 minutes without a request"
    );
    // Absolute: requests do not stretch it.
    s.web_session_create(web("abs", "bob", Some("bob@example.com"), HOUR, 2 * HOUR))
        .await?;
    for m in [50, 100] {
        ensure!(
            s.web_session("abs", at(m * MINUTE)).await?.is_some(),
            "at {m} min"
        );
    }
    ensure!(
        s.web_session("abs", at(125 * MINUTE)).await?.is_none(),
        "past its lifetime"
    );
    // Sign-out.
    s.web_session_create(web("out", "bob", Some("bob@example.com"), HOUR, 8 * HOUR))
        .await?;
    ensure!(s.web_session_end("out").await?, "signed out");
    ensure!(!s.web_session_end("out").await?, "signed out twice");
    ensure!(
        s.web_session("out", at(MINUTE)).await?.is_none(),
        "after sign-out"
    );
    ensure!(
        s.web_session("nope", at(MINUTE)).await?.is_none(),
        "unknown"
    );
    // Revocation of a user ends that user's browsers, even without bindings.
    s.web_session_create(web(
        "a2",
        "alice",
        Some("alice@example.com"),
        HOUR,
        8 * HOUR,
    ))
    .await?;
    s.web_session_create(web("b2", "bob", Some("bob@example.com"), HOUR, 8 * HOUR))
        .await?;
    let by_key = s.revoke(Revoke::Key(fp('k')), at(MINUTE)).await?;
    ensure_eq!(by_key.web_sessions, 0);
    let revoked = s
        .revoke(Revoke::User("ALICE@example.com".to_owned()), at(MINUTE))
        .await?;
    ensure_eq!(revoked.web_sessions, 2, "both of alice's, the idle one too");
    ensure!(
        s.web_session("a2", at(2 * MINUTE)).await?.is_none(),
        "alice's browser"
    );
    ensure!(
        s.web_session("b2", at(2 * MINUTE)).await?.is_some(),
        "bob's browser"
    );
    // Purge removes the dead (bob's: one past its lifetime, one idle) and
    // keeps the live.
    s.web_session_create(web("c3", "carol", None, 8 * HOUR, 8 * HOUR))
        .await?;
    let purged = s.web_purge(at(3 * HOUR)).await?;
    ensure_eq!(purged, 2, "the expired and the idle one");
    ensure!(
        s.web_session("c3", at(3 * HOUR)).await?.is_some(),
        "carol's is live"
    );
    let all = s.revoke(Revoke::All, at(4 * HOUR)).await?;
    ensure_eq!(all.web_sessions, 1, "carol's, by sub: everyone's");
    ensure!(
        s.web_session("c3", at(4 * HOUR)).await?.is_none(),
        "after revoke all"
    );
    Ok(())
}

pub(super) async fn web_logins(s: &dyn Store) -> Result<(), Failure> {
    let login = |state: &str, minutes: u32| WebLogin {
        state_hash: state.to_owned(),
        pending_json: format!("{{\"for\":\"{state}\"}}"),
        return_to: "/sessions?user=alice".to_owned(),
        expires_at: t(0) + MINUTE * minutes,
    };
    s.web_login_start(login("one", 10)).await?;
    s.web_login_start(login("two", 10)).await?;
    let got = s.web_login_take("one", t(0) + 5 * MINUTE).await?;
    ensure_eq!(got, Some(login("one", 10)));
    ensure!(
        s.web_login_take("one", t(0) + 5 * MINUTE).await?.is_none(),
        "used once"
    );
    ensure!(
        s.web_login_take("two", t(0) + 11 * MINUTE).await?.is_none(),
        "expired"
    );
    ensure!(
        s.web_login_take("two", t(0)).await?.is_none(),
        "an expired take removes it"
    );
    s.web_login_start(login("three", 1)).await?;
    ensure_eq!(s.web_purge(t(0) + 2 * MINUTE).await?, 1);
    Ok(())
}
