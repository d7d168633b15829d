//! Unit tests of the flows' pure parts and of redaction.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use super::*;
use crate::device::*;
use crate::discovery::*;
use crate::verify::*;

const S: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn first_interval_prefers_the_override_and_never_goes_under_a_second() {
    assert_eq!(first_interval(S(5), None), S(5));
    assert_eq!(first_interval(S(5), Some(S(2))), S(2));
    assert_eq!(first_interval(S(0), None), S(1));
    assert_eq!(first_interval(S(5), Some(Duration::from_millis(10))), S(1));
}

#[test]
fn a_missing_interval_means_five_seconds() {
    // RFC 8628 §3.2; oidc-provider never sends one (our dev IdP adds it).
    let response: CoreDeviceAuthorizationResponse = serde_json::from_value(serde_json::json!({
        "device_code": "d",
        "user_code": "U",
        "verification_uri": "https://idp.example/device",
        "expires_in": 600,
    }))
    .unwrap();
    assert_eq!(first_interval(response.interval(), None), S(5));
}

#[test]
fn slow_down_adds_five_seconds_each_time() {
    assert_eq!(slowed_down(S(1)), S(6));
    assert_eq!(slowed_down(slowed_down(S(5))), S(15));
    assert_eq!(slowed_down(Duration::MAX), Duration::MAX);
}

#[test]
fn failures_back_off_exponentially_up_to_a_cap() {
    assert_eq!(poll_delay(S(5), 0), S(5));
    assert_eq!(poll_delay(S(5), 1), S(10));
    assert_eq!(poll_delay(S(5), 2), S(20));
    assert_eq!(poll_delay(S(5), 5), MAX_BACKOFF);
    assert_eq!(poll_delay(S(5), 100), MAX_BACKOFF);
    // An interval longer than the cap is never shortened.
    assert_eq!(poll_delay(S(90), 0), S(90));
    assert_eq!(poll_delay(S(90), 3), S(90));
}

#[test]
fn domains_match_exactly_and_case_insensitively() {
    let allowed = vec!["Example.COM".to_owned(), "@corp.example".to_owned()];
    assert!(domain_allowed(Some("alice@example.com"), &allowed));
    assert!(domain_allowed(Some("ALICE@EXAMPLE.com"), &allowed));
    assert!(domain_allowed(Some("bob@corp.example"), &allowed));
    assert!(!domain_allowed(Some("eve@eu.example.com"), &allowed));
    assert!(!domain_allowed(Some("eve@example.com.evil"), &allowed));
    assert!(!domain_allowed(Some("eve@notexample.com"), &allowed));
    assert!(!domain_allowed(Some("example.com"), &allowed));
    assert!(!domain_allowed(Some("@example.com"), &allowed));
    assert!(!domain_allowed(None, &allowed));
    // The last @ separates the domain.
    assert!(!domain_allowed(
        Some("x@example.com@evil.example"),
        &allowed
    ));
    // An empty list admits anyone, with or without an email.
    assert!(domain_allowed(Some("anyone@anywhere.example"), &[]));
    assert!(domain_allowed(None, &[]));
}

#[test]
fn groups_come_from_an_array_of_strings_or_a_single_string() {
    let v = serde_json::json!(["sre", "dev"]);
    assert_eq!(groups_from_claim(Some(&v)), ["sre", "dev"]);
    let v = serde_json::json!(["sre", 7, null, {"a": 1}, "dev"]);
    assert_eq!(groups_from_claim(Some(&v)), ["sre", "dev"]);
    let v = serde_json::json!("sre");
    assert_eq!(groups_from_claim(Some(&v)), ["sre"]);
    for v in [
        serde_json::json!(42),
        serde_json::json!(null),
        serde_json::json!({"sre": true}),
    ] {
        assert!(groups_from_claim(Some(&v)).is_empty(), "{v}");
    }
    assert!(groups_from_claim(None).is_empty());
}

#[test]
fn groups_claim_is_picked_by_its_configured_name() {
    let claims: OtherClaims = serde_json::from_value(serde_json::json!({
        "groups": ["a"],
        "https://example.com/roles": "admin",
    }))
    .unwrap();
    assert_eq!(groups_from_claim(claims.other.get("groups")), ["a"]);
    assert_eq!(
        groups_from_claim(claims.other.get("https://example.com/roles")),
        ["admin"]
    );
}

fn classify(status: u16, body: &str) -> Result<Poll, Error> {
    classify_token_response(
        "https://idp.example",
        StatusCode::from_u16(status).unwrap(),
        body.as_bytes(),
    )
}

#[test]
fn token_responses_are_classified_per_rfc_8628() {
    assert!(matches!(
        classify(400, r#"{"error":"authorization_pending"}"#),
        Ok(Poll::Pending)
    ));
    assert!(matches!(
        classify(400, r#"{"error":"slow_down"}"#),
        Ok(Poll::SlowDown)
    ));
    assert!(matches!(
        classify(400, r#"{"error":"access_denied"}"#),
        Err(Error::SignInDenied)
    ));
    assert!(matches!(
        classify(400, r#"{"error":"expired_token"}"#),
        Err(Error::SignInExpired)
    ));
    match classify(
        400,
        r#"{"error":"invalid_grant","error_description":"grant request is invalid"}"#,
    ) {
        Err(Error::IdpUnavailable { issuer, reason }) => {
            assert_eq!(issuer, "https://idp.example");
            assert_eq!(
                reason,
                "token endpoint: invalid_grant: grant request is invalid"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        classify(503, "<html>down</html>"),
        Ok(Poll::Failed(_))
    ));
    assert!(matches!(
        classify(500, r#"{"error":"server_error"}"#),
        Ok(Poll::Failed(_))
    ));
    assert!(matches!(classify(200, "not json"), Ok(Poll::Failed(_))));
    assert!(matches!(
        classify(200, r#"{"access_token":"a","token_type":"Bearer"}"#),
        Err(Error::TokenRejected(_))
    ));
    match classify(
        200,
        r#"{"access_token":"a","id_token":"i","refresh_token":"r"}"#,
    ) {
        Ok(Poll::Tokens(t)) => {
            assert_eq!(t.id_token, "i");
            assert_eq!(t.refresh_token.as_deref(), Some("r"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn basic_auth_unless_the_idp_only_takes_the_secret_in_the_body() {
    use CoreClientAuthMethod::{ClientSecretBasic, ClientSecretPost};
    let post_only = vec![ClientSecretPost];
    let both = vec![ClientSecretPost, ClientSecretBasic];
    assert!(matches!(
        auth_type(true, Some(&post_only)),
        AuthType::RequestBody
    ));
    assert!(matches!(auth_type(true, Some(&both)), AuthType::BasicAuth));
    assert!(matches!(auth_type(true, None), AuthType::BasicAuth));
    assert!(matches!(
        auth_type(false, Some(&post_only)),
        AuthType::BasicAuth
    ));
}

#[test]
fn alg_none_is_never_accepted() {
    use CoreJwsSigningAlgorithm::{EcdsaP256Sha256, None as AlgNone, RsaSsaPkcs1V15Sha256};
    assert_eq!(signing_algs(&[AlgNone]), [RsaSsaPkcs1V15Sha256]);
    assert_eq!(signing_algs(&[]), [RsaSsaPkcs1V15Sha256]);
    assert_eq!(signing_algs(&[EcdsaP256Sha256, AlgNone]), [EcdsaP256Sha256]);
}

#[test]
fn secrets_are_redacted_in_debug_output() {
    let token = RefreshToken("rt-secret".to_owned());
    assert_eq!(format!("{token:?}"), "RefreshToken(***)");
    let auth = DeviceAuthorization {
        user_code: "ABCD-EFGH".to_owned(),
        verification_uri: "https://idp.example/device".to_owned(),
        verification_uri_complete: None,
        expires_at: Instant::now(),
        interval: S(5),
        device_code: DeviceCode("dc-secret".to_owned()),
    };
    let shown = format!("{auth:?}");
    assert!(
        shown.contains("ABCD-EFGH") && !shown.contains("dc-secret"),
        "{shown}"
    );
    let mut settings = IdpSettings::new("https://idp.example", "gatehouse");
    settings.client_secret = Some("cs-secret".to_owned());
    let shown = format!("{settings:?}");
    assert!(
        shown.contains("gatehouse") && !shown.contains("cs-secret"),
        "{shown}"
    );
    let tokens = TokenSet {
        id_token: "it-secret".to_owned(),
        refresh_token: Some("rt-secret".to_owned()),
    };
    assert!(!format!("{tokens:?}").contains("secret"));
    let signed_in = SignedIn {
        sub: "alice".to_owned(),
        email: None,
        groups: Vec::new(),
        issuer: "https://idp.example".to_owned(),
        refresh_token: Some(token),
        claims: policy::lang::Claims::new(),
        claims_json: "{}".to_owned(),
    };
    assert!(!format!("{signed_in:?}").contains("rt-secret"));
}

#[test]
fn idp_and_its_futures_can_cross_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: T) {}
    #[allow(unreachable_code, clippy::diverging_sub_expression)]
    fn check(idp: &Idp, auth: &DeviceAuthorization, cancel: &CancellationToken) {
        send_sync(idp);
        send(Idp::discover(IdpSettings::new("x", "y")));
        send(idp.start_device_authorization());
        send(idp.wait_for_sign_in(auth, cancel));
        send(idp.verify_id_token(""));
    }
    let _ = check;
}

#[test]
fn defaults_are_the_documented_ones() {
    let s = IdpSettings::new("https://idp.example", "gatehouse");
    assert_eq!(s.scopes, ["openid", "email", "profile"]);
    assert_eq!(s.groups_claim, "groups");
    assert_eq!(s.http_timeout, S(5));
    assert!(s.client_secret.is_none() && s.poll_interval.is_none());
    assert!(s.allowed_domains.is_empty());
}

/// Found by the `token_response` fuzz target: an IdP's `error` code went
/// into the message (and the audit log) whole, however long, and control
/// characters in the description reached the log.
#[test]
fn what_the_idp_writes_is_bounded_in_error_messages() {
    let long = "e".repeat(100_000);
    for status in [400, 500] {
        let body = format!(r#"{{"error":"{long}","error_description":"a\u001b[2Jb{long}"}}"#);
        let message = match classify(status, &body) {
            Err(e) => e.to_string(),
            Ok(Poll::Failed(reason)) => reason,
            Ok(_) => panic!("classified as a poll outcome"),
        };
        assert!(message.len() < 500, "{} bytes", message.len());
        assert!(!message.contains('\u{1b}'), "{message:?}");
    }
    // serde_json quotes an unexpected value whole in its message: a long
    // string where the ID token's object should be was the second finding.
    let message = match classify(200, &format!("\"{long}\"")) {
        Ok(Poll::Failed(reason)) => reason,
        other => panic!("not a failed poll: {other:?}"),
    };
    assert_eq!(
        message,
        "token endpoint: unreadable response: JSON of the wrong shape at line 1 column 100002"
    );
}
