//! The device authorization grant (and the authorization-code grant with
//! PKCE) against the real dev IdP (`dev/idp`,
//! node + oidc-provider): approval, denial, expiry, outages, cancellation,
//! foreign and tampered tokens, key rotation, allowed domains and a
//! confidential client.
//!
//! Each test starts its own IdP on a free port (`--port 0 --interval 1`)
//! and completes the browser side with `dev/idp/approve.mjs`.

// A test: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use identity::Error;
use identity::{DeviceAuthorization, Idp, IdpSettings, SignedIn};
use sshd_test::idp::DevIdp;
use tokio_util::sync::CancellationToken;

/// Settings for the dev IdP's public client, with groups and a refresh token.
fn settings(issuer: &str) -> IdpSettings {
    let mut settings = IdpSettings::new(issuer, "gatehouse");
    settings.scopes.push("groups".to_owned());
    settings.scopes.push("offline_access".to_owned());
    settings.http_timeout = Duration::from_secs(5);
    settings
}

/// Completes (or denies) the browser side of a device sign-in as alice,
/// off the async threads (the helper runs node and waits for it).
async fn approve(issuer: String, user_code: String, deny: bool) {
    tokio::task::spawn_blocking(move || {
        sshd_test::idp::answer(&issuer, &user_code, "alice@example.com", "alice-pw", deny);
    })
    .await
    .unwrap();
}

/// Waits for `auth` to be signed in while alice approves (or denies) it in
/// the browser, the way a user would while `ssh` shows the prompt.
async fn sign_in_while_alice_answers(
    idp: &Idp,
    issuer: &str,
    auth: &DeviceAuthorization,
    deny: bool,
) -> Result<SignedIn, Error> {
    let approver = tokio::spawn(approve(issuer.to_owned(), auth.user_code.clone(), deny));
    let result = idp.wait_for_sign_in(auth, &CancellationToken::new()).await;
    approver.await.unwrap();
    result
}

/// A device flow done by hand (raw HTTP), returning the ID token, so tests
/// can feed one IdP's token to another's verifier.
async fn raw_id_token(issuer: &str) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let form = "application/x-www-form-urlencoded";
    let body = http
        .post(format!("{issuer}/device/auth"))
        .header("content-type", form)
        .body("client_id=gatehouse&scope=openid%20email%20groups")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let auth: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let device_code = auth["device_code"].as_str().unwrap().to_owned();
    let user_code = auth["user_code"].as_str().unwrap().to_owned();
    approve(issuer.to_owned(), user_code, false).await;
    for _ in 0..10 {
        let body = http
            .post(format!("{issuer}/token"))
            .header("content-type", form)
            .body(format!(
                "client_id=gatehouse&grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code={device_code}"
            ))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if let Some(id_token) = answer["id_token"].as_str() {
            return id_token.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no ID token from {issuer}");
}

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn approved_sign_in_yields_identity_groups_and_refresh_token() {
    let server = DevIdp::start(0, &[]);
    let started = Instant::now();
    let idp = Idp::discover(settings(&server.issuer)).await.unwrap();
    let discovery = started.elapsed();
    assert_eq!(idp.issuer(), server.issuer);

    let started = Instant::now();
    let auth = idp.start_device_authorization().await.unwrap();
    assert_eq!(auth.interval, Duration::from_secs(1));
    assert_eq!(auth.verification_uri, format!("{}/device", server.issuer));
    assert!(
        auth.verification_uri_complete
            .as_deref()
            .is_some_and(|u| u.contains(&auth.user_code)),
        "{auth:?}"
    );
    let remaining = auth.expires_at - Instant::now();
    assert!(remaining > Duration::from_secs(590), "{remaining:?}");

    let signed_in = sign_in_while_alice_answers(&idp, &server.issuer, &auth, false)
        .await
        .unwrap();
    let flow = started.elapsed();
    eprintln!("timings: discovery {discovery:?}, approved device flow {flow:?}");

    assert_eq!(signed_in.sub, "alice");
    assert_eq!(signed_in.email.as_deref(), Some("alice@example.com"));
    assert!(signed_in.groups.iter().any(|g| g == "sre"), "{signed_in:?}");
    assert_eq!(signed_in.issuer, server.issuer);
    let refresh = signed_in.refresh_token.as_ref().expect("offline_access");
    assert!(!refresh.secret().is_empty());
    assert!(!format!("{signed_in:?}").contains(refresh.secret()));
}

#[tokio::test]
async fn denied_sign_in_is_sign_in_denied() {
    let server = DevIdp::start(0, &[]);
    let mut settings = settings(&server.issuer);
    settings.poll_interval = Some(Duration::from_secs(2)); // override wins
    let idp = Idp::discover(settings).await.unwrap();
    let auth = idp.start_device_authorization().await.unwrap();
    assert_eq!(auth.interval, Duration::from_secs(2));
    let result = sign_in_while_alice_answers(&idp, &server.issuer, &auth, true).await;
    assert!(matches!(result, Err(Error::SignInDenied)), "{result:?}");
}

#[tokio::test]
async fn unapproved_sign_in_expires() {
    let server = DevIdp::start(0, &["--device-code-ttl", "2"]);
    let idp = Idp::discover(settings(&server.issuer)).await.unwrap();
    let started = Instant::now();
    let auth = idp.start_device_authorization().await.unwrap();
    let result = idp.wait_for_sign_in(&auth, &CancellationToken::new()).await;
    let elapsed = started.elapsed();
    assert!(matches!(result, Err(Error::SignInExpired)), "{result:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
}

#[tokio::test]
async fn unreachable_idp_fails_fast_at_discovery() {
    let issuer = format!("http://127.0.0.1:{}", closed_port());
    let started = Instant::now();
    let result = Idp::discover(settings(&issuer)).await;
    let elapsed = started.elapsed();
    match &result {
        Err(Error::IdpUnavailable { issuer: i, reason }) => {
            assert_eq!(*i, issuer);
            assert!(reason.contains("refused"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[tokio::test]
async fn idp_going_down_is_idp_unavailable() {
    let mut server = DevIdp::start(0, &[]);
    let idp = Idp::discover(settings(&server.issuer)).await.unwrap();
    let auth = idp.start_device_authorization().await.unwrap();
    server.stop();

    let started = Instant::now();
    let result = idp.start_device_authorization().await;
    assert!(
        matches!(result, Err(Error::IdpUnavailable { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    // Polling gives up after three failed polls, backing off 1 s, 2 s, 4 s.
    let started = Instant::now();
    let result = idp.wait_for_sign_in(&auth, &CancellationToken::new()).await;
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(Error::IdpUnavailable { .. })),
        "{result:?}"
    );
    assert!(elapsed < Duration::from_secs(9), "{elapsed:?}");
    eprintln!("polling gave up after {elapsed:?}: {result:?}");
}

#[tokio::test]
async fn cancel_stops_polling_promptly() {
    let server = DevIdp::start(0, &[]);
    let idp = Idp::discover(settings(&server.issuer)).await.unwrap();
    let auth = idp.start_device_authorization().await.unwrap();
    let cancel = CancellationToken::new();
    let canceller = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        canceller.cancel();
    });
    let started = Instant::now();
    let result = idp.wait_for_sign_in(&auth, &cancel).await;
    let elapsed = started.elapsed();
    match result {
        Err(Error::SignInCancelled) => {}
        other => panic!("{other:?}"),
    }
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

/// Flips one character in the middle of the signature.
fn tamper(token: &str) -> String {
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut chars: Vec<char> = signature.chars().collect();
    let middle = chars.len() / 2;
    chars[middle] = if chars[middle] == 'A' { 'B' } else { 'A' };
    format!("{signed}.{}", chars.into_iter().collect::<String>())
}

#[tokio::test]
async fn foreign_and_tampered_tokens_are_rejected() {
    let a = DevIdp::start(0, &[]);
    let b = DevIdp::start(0, &[]);
    let idp = Idp::discover(settings(&a.issuer)).await.unwrap();

    let own = raw_id_token(&a.issuer).await;
    let signed_in = idp.verify_id_token(&own).await.unwrap();
    assert_eq!(signed_in.sub, "alice");
    assert!(signed_in.refresh_token.is_none());

    let result = idp.verify_id_token(&tamper(&own)).await;
    match &result {
        Err(Error::TokenRejected(reason)) => assert!(!reason.contains(&own), "{reason}"),
        other => panic!("{other:?}"),
    }
    eprintln!("tampered: {result:?}");

    let foreign = raw_id_token(&b.issuer).await;
    let result = idp.verify_id_token(&foreign).await;
    match &result {
        Err(Error::TokenRejected(reason)) => assert!(reason.contains("issuer"), "{reason}"),
        other => panic!("{other:?}"),
    }
    eprintln!("foreign: {result:?}");

    let result = idp.verify_id_token("not.a.jwt").await;
    assert!(matches!(result, Err(Error::TokenRejected(_))), "{result:?}");
}

#[tokio::test]
async fn rotated_keys_are_fetched_again_once() {
    // Restarting the dev IdP on the same port keeps the issuer and makes a
    // new signing key: a key rotation.
    let mut first = DevIdp::start(0, &[]);
    let port = first.port;
    let idp = Idp::discover(settings(&first.issuer)).await.unwrap();
    first.stop();

    let mut second = DevIdp::start(port, &[]);
    let token_from_second = raw_id_token(&second.issuer).await;
    second.stop();

    let third = DevIdp::start(port, &[]);
    assert_eq!(third.issuer, idp.issuer());
    // Unknown key → fetch again → still unknown (the third key) → rejected.
    let result = idp.verify_id_token(&token_from_second).await;
    assert!(matches!(result, Err(Error::TokenRejected(_))), "{result:?}");
    eprintln!("key gone after refetch: {result:?}");

    // A token from the third instance verifies after one refetch.
    let token_from_third = raw_id_token(&third.issuer).await;
    let signed_in = idp.verify_id_token(&token_from_third).await.unwrap();
    assert_eq!(signed_in.sub, "alice");
}

#[tokio::test]
async fn email_outside_allowed_domains_is_refused() {
    let server = DevIdp::start(0, &[]);
    let mut settings = settings(&server.issuer);
    settings.allowed_domains = vec!["example.org".to_owned()];
    let idp = Idp::discover(settings).await.unwrap();
    let auth = idp.start_device_authorization().await.unwrap();
    let result = sign_in_while_alice_answers(&idp, &server.issuer, &auth, false).await;
    match result {
        Err(Error::DomainNotAllowed { email }) => assert_eq!(email, "alice@example.com"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn confidential_client_authenticates_and_a_wrong_secret_is_refused() {
    let server = DevIdp::start(0, &["--client-secret", "s3cret/+&="]);
    let mut good = settings(&server.issuer);
    good.client_secret = Some("s3cret/+&=".to_owned());
    good.allowed_domains = vec!["EXAMPLE.com".to_owned()];
    let idp = Idp::discover(good).await.unwrap();
    let auth = idp.start_device_authorization().await.unwrap();
    let signed_in = sign_in_while_alice_answers(&idp, &server.issuer, &auth, false)
        .await
        .unwrap();
    assert_eq!(signed_in.email.as_deref(), Some("alice@example.com"));

    let mut bad = settings(&server.issuer);
    bad.client_secret = Some("wrong".to_owned());
    let idp = Idp::discover(bad).await.unwrap();
    match idp.start_device_authorization().await {
        Err(Error::IdpUnavailable { reason, .. }) => {
            assert!(reason.contains("invalid_client"), "{reason}");
            assert!(!reason.contains("wrong"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

/// The query parameter `name` of a URL.
fn query(url: &str, name: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Runs the browser side of a code sign-in off the async threads.
async fn browse(issuer: &str, auth_url: &str, login: &str, password: &str, deny: bool) -> String {
    let (issuer, auth_url) = (issuer.to_owned(), auth_url.to_owned());
    let (login, password) = (login.to_owned(), password.to_owned());
    tokio::task::spawn_blocking(move || {
        sshd_test::idp::authorize(&issuer, &auth_url, &login, &password, deny)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn code_sign_in_with_pkce_binds_state_and_nonce() {
    let server = DevIdp::start(0, &[]);
    let idp = Idp::discover(settings(&server.issuer)).await.unwrap();
    let redirect = "http://127.0.0.1:9/callback";
    let (url, pending) = idp.start_code_sign_in(redirect).unwrap();
    assert_eq!(
        query(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(
        query(&url, "code_challenge").is_some_and(|c| c.len() == 43),
        "{url}"
    );
    assert_eq!(
        query(&url, "state").as_deref(),
        Some(pending.state.as_str())
    );
    assert!(query(&url, "nonce").is_some(), "{url}");
    assert!(!format!("{pending:?}").contains(&pending.state));

    // Two attempts at once (two tabs): each finishes with its own state.
    let (url2, pending2) = idp.start_code_sign_in(redirect).unwrap();
    assert_ne!(pending.state, pending2.state);
    let back2 = browse(&server.issuer, &url2, "bob@example.com", "bob-pw", false).await;
    let back = browse(&server.issuer, &url, "alice@example.com", "alice-pw", false).await;
    assert!(back.starts_with(redirect), "{back}");
    let code = query(&back, "code").unwrap();
    let state = query(&back, "state").unwrap();

    // Another attempt's state, or this one's code with the other's
    // verifier, is refused.
    let err = idp
        .finish_code_sign_in(&pending2, &state, &code)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TokenRejected(_)), "{err}");
    let signed_in = idp
        .finish_code_sign_in(&pending, &state, &code)
        .await
        .unwrap();
    assert_eq!(signed_in.sub, "alice");
    assert_eq!(signed_in.email.as_deref(), Some("alice@example.com"));
    assert!(signed_in.groups.iter().any(|g| g == "sre"), "{signed_in:?}");
    // A code is good once.
    let err = idp
        .finish_code_sign_in(&pending, &state, &code)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TokenRejected(_)), "{err}");

    let code2 = query(&back2, "code").unwrap();
    let state2 = query(&back2, "state").unwrap();
    // The right state, the wrong verifier (PKCE): refused by the IdP.
    let mut forged = pending.clone();
    forged.state = state2.clone();
    let err = idp
        .finish_code_sign_in(&forged, &state2, &code2)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("code was not accepted"), "{err}");

    // Denied at the consent page: an error on the callback.
    let (url3, _) = idp.start_code_sign_in(redirect).unwrap();
    let back3 = browse(
        &server.issuer,
        &url3,
        "carol@contractor.example",
        "carol-pw",
        true,
    )
    .await;
    assert_eq!(
        query(&back3, "error").as_deref(),
        Some("access_denied"),
        "{back3}"
    );
    assert!(matches!(
        identity::callback_error("access_denied"),
        Error::SignInDenied
    ));
}
