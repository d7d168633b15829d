//! The web-session checks of the conformance suite: browser sessions and
//! sign-ins in progress.

use std::time::Duration;

use super::{Failure, HOUR, fp, t};
use crate::{
    HandoffSession, LinkApproval, LinkApproved, LinkState, Revoke, SshLink, Store, WebHandoff,
    WebLogin, WebSession,
};

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

pub(super) async fn handoffs(s: &dyn Store) -> Result<(), Failure> {
    let at = |d: Duration| t(0) + d;
    let parent = web("parent", "alice", Some("alice@example.com"), HOUR, 8 * HOUR);
    s.web_session_create(parent.clone()).await?;
    let handoff = |code: &str, host: &str, minutes: u32| WebHandoff {
        code_hash: code.to_owned(),
        session_hash: "parent".to_owned(),
        host: host.to_owned(),
        nonce_hash: format!("nonce-{code}"),
        return_to: "/dashboards?x=1".to_owned(),
        expires_at: t(0) + MINUTE * minutes,
    };
    let child = |id: &str| HandoffSession {
        id_hash: id.to_owned(),
        csrf: format!("csrf-{id}"),
        client_addr: "198.51.100.7".to_owned(),
    };
    s.web_handoff_create(handoff("c1", "app.example.com", 1))
        .await?;
    // Another host, another browser's nonce: refused, and the code is
    // spent by the try.
    ensure!(
        s.web_handoff_redeem(
            "c1",
            "evil.example.com",
            "nonce-c1",
            child("x"),
            at(MINUTE / 2)
        )
        .await?
        .is_none(),
        "for another host"
    );
    ensure!(
        s.web_handoff_redeem(
            "c1",
            "app.example.com",
            "nonce-c1",
            child("x"),
            at(MINUTE / 2)
        )
        .await?
        .is_none(),
        "a code is tried once"
    );
    s.web_handoff_create(handoff("c2", "app.example.com", 1))
        .await?;
    ensure!(
        s.web_handoff_redeem(
            "c2",
            "app.example.com",
            "nonce-other",
            child("x"),
            at(MINUTE / 2)
        )
        .await?
        .is_none(),
        "another browser's nonce"
    );
    s.web_handoff_create(handoff("c3", "app.example.com", 1))
        .await?;
    ensure!(
        s.web_handoff_redeem(
            "c3",
            "app.example.com",
            "nonce-c3",
            child("x"),
            at(2 * MINUTE)
        )
        .await?
        .is_none(),
        "expired"
    );
    s.web_handoff_create(handoff("c4", "app.example.com", 1))
        .await?;
    let got = s
        .web_handoff_redeem(
            "c4",
            "app.example.com",
            "nonce-c4",
            child("app1"),
            at(MINUTE / 2),
        )
        .await?;
    let Some((made, return_to)) = got else {
        return Err(Failure("a good hand-off made no session".to_owned()));
    };
    ensure_eq!(return_to, "/dashboards?x=1".to_owned());
    ensure_eq!(made.id_hash, "app1".to_owned());
    ensure_eq!(made.sub, parent.sub.clone(), "the parent's identity");
    ensure_eq!(made.groups, parent.groups.clone());
    ensure_eq!(
        made.expires_at,
        parent.expires_at,
        "and its absolute expiry"
    );
    ensure_eq!(made.csrf, "csrf-app1".to_owned(), "its own CSRF value");
    ensure!(
        s.web_handoff_redeem(
            "c4",
            "app.example.com",
            "nonce-c4",
            child("app2"),
            at(MINUTE / 2)
        )
        .await?
        .is_none(),
        "used once"
    );
    let live = s
        .web_sessions_live(
            &["app1".to_owned(), "parent".to_owned(), "nope".to_owned()],
            at(MINUTE),
        )
        .await?;
    ensure_eq!(live, vec!["app1".to_owned(), "parent".to_owned()]);
    // The child lives by its own requests, not the parent's.
    ensure!(
        s.web_session("app1", at(50 * MINUTE)).await?.is_some(),
        "the child is used"
    );
    ensure!(
        s.web_sessions_live(&["parent".to_owned()], at(70 * MINUTE))
            .await?
            .is_empty(),
        "the parent went idle (and web_sessions_live does not count a request)"
    );
    ensure!(
        s.web_session("app1", at(70 * MINUTE)).await?.is_some(),
        "the child is not idle"
    );
    // A dead parent hands nothing off.
    s.web_handoff_create(handoff("c5", "app.example.com", 120))
        .await?;
    ensure!(
        s.web_handoff_redeem(
            "c5",
            "app.example.com",
            "nonce-c5",
            child("app3"),
            at(80 * MINUTE)
        )
        .await?
        .is_none(),
        "the parent is idle"
    );
    // Signing out of the web app signs out of every route host.
    let fresh = web("p2", "bob", Some("bob@example.com"), HOUR, 8 * HOUR);
    s.web_session_create(fresh).await?;
    s.web_handoff_create(WebHandoff {
        session_hash: "p2".to_owned(),
        ..handoff("c6", "app.example.com", 1)
    })
    .await?;
    s.web_handoff_redeem(
        "c6",
        "app.example.com",
        "nonce-c6",
        child("bob-app"),
        at(MINUTE / 2),
    )
    .await?;
    ensure!(s.web_session_end("p2").await?, "signed out");
    ensure!(
        s.web_session("bob-app", at(MINUTE)).await?.is_none(),
        "the route host's session ended with it"
    );
    s.web_handoff_create(handoff("c7", "app.example.com", 1))
        .await?;
    ensure_eq!(
        s.web_purge(at(2 * MINUTE)).await?,
        1,
        "the expired hand-off"
    );
    Ok(())
}

pub(super) async fn ssh_links(s: &dyn Store) -> Result<(), Failure> {
    let at = |d: Duration| t(0) + d;
    let link = |id: &str| SshLink {
        id_hash: id.to_owned(),
        phrase: "amber-falcon-river".to_owned(),
        fingerprint: fp('l'),
        client_addr: "192.0.2.9".to_owned(),
        user_name: "root@db".to_owned(),
        gateway_id: "gw-1".to_owned(),
        session_id: format!("session-{id}"),
        created_at: t(0),
        expires_at: t(0) + 10 * MINUTE,
    };
    let approval = |who: &str| LinkApproval {
        sub: who.to_owned(),
        email: Some(format!("{who}@example.com")),
        groups: vec!["sre".to_owned()],
        claims_json: "{\"groups\":[\"sre\"]}".to_owned(),
        issuer: "https://idp.example".to_owned(),
        web_session: "abc123".to_owned(),
        approved_at: at(MINUTE),
    };
    s.ssh_link_create(link("l1")).await?;
    let got = s.ssh_link("l1").await?;
    ensure_eq!(got.as_ref().map(|r| r.state), Some(LinkState::Pending));
    ensure_eq!(got.as_ref().map(|r| r.link.clone()), Some(link("l1")));
    ensure!(
        got.is_some_and(|r| r.approvable(at(MINUTE)) && !r.approvable(at(11 * MINUTE))),
        "approvable while pending and unexpired"
    );
    ensure!(s.ssh_link_redeem("l1").await?.is_none(), "not approved yet");
    ensure_eq!(
        s.ssh_link_approve("l1", approval("alice"), at(MINUTE))
            .await?,
        LinkApproved::Approved
    );
    ensure_eq!(
        s.ssh_link_approve("l1", approval("mallory"), at(MINUTE))
            .await?,
        LinkApproved::Already(LinkState::Approved),
        "a second approval changes nothing"
    );
    ensure_eq!(
        s.ssh_link_redeem("l1").await?,
        Some(approval("alice")),
        "the first approver's identity"
    );
    ensure!(s.ssh_link_redeem("l1").await?.is_none(), "redeemed once");
    ensure_eq!(
        s.ssh_link("l1").await?.map(|r| r.state),
        Some(LinkState::Used)
    );
    s.ssh_link_close("l1").await?;
    ensure_eq!(
        s.ssh_link("l1").await?.map(|r| r.state),
        Some(LinkState::Used),
        "closing a used link keeps it used"
    );
    ensure_eq!(
        s.ssh_link_approve("l1", approval("alice"), at(MINUTE))
            .await?,
        LinkApproved::Already(LinkState::Used),
        "replayed"
    );
    // The client left: closed, and no longer approvable.
    s.ssh_link_create(link("l2")).await?;
    s.ssh_link_close("l2").await?;
    ensure_eq!(
        s.ssh_link_approve("l2", approval("alice"), at(MINUTE))
            .await?,
        LinkApproved::Already(LinkState::Closed)
    );
    // Too late.
    s.ssh_link_create(link("l3")).await?;
    ensure_eq!(
        s.ssh_link_approve("l3", approval("alice"), at(10 * MINUTE))
            .await?,
        LinkApproved::Expired
    );
    ensure_eq!(
        s.ssh_link_approve("nope", approval("alice"), at(MINUTE))
            .await?,
        LinkApproved::Unknown
    );
    // Kept an hour past expiry, then purged.
    ensure_eq!(s.web_purge(at(30 * MINUTE)).await?, 0);
    ensure!(s.ssh_link("l3").await?.is_some(), "kept for a late visit");
    ensure_eq!(s.web_purge(at(71 * MINUTE)).await?, 3);
    ensure!(s.ssh_link("l3").await?.is_none(), "purged");
    Ok(())
}
