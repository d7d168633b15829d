//! Entry points for the fuzz targets in `fuzz/` and the corpus replay test
//! (`fuzz-targets` crate): what an IdP answers during a sign-in. Not part
//! of the crate's API.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use openidconnect::http::StatusCode;
use serde_json::Value;

use crate::device::MAX_ERROR_CODE;
use crate::device::{Poll, classify_token_response};
use crate::verify::{domain_allowed, groups_from_claim};
use crate::{MAX_DESCRIPTION, claims_from_json};

/// Room for the fixed words around what the IdP wrote.
const MESSAGE_SLACK: usize = 160;

/// A token endpoint answer: the first two bytes choose the HTTP status,
/// the rest is the body. Whatever the IdP sends, the result is a poll
/// outcome or an error whose message stays short (it is audited and may
/// be shown).
pub fn token_response(data: &[u8]) {
    let (status, body) = match data {
        [a, b, body @ ..] => (100 + u16::from_be_bytes([*a, *b]) % 500, body),
        _ => (200, data),
    };
    let Ok(status) = StatusCode::from_u16(status) else {
        return;
    };
    let issuer = "https://idp.example.com";
    let bound = issuer.len() + MAX_ERROR_CODE + MAX_DESCRIPTION + MESSAGE_SLACK;
    match classify_token_response(issuer, status, body) {
        Ok(Poll::Failed(reason)) => assert!(reason.chars().count() <= bound, "{reason:?}"),
        Ok(_) => {}
        Err(e) => {
            let message = e.to_string();
            assert!(message.chars().count() <= bound, "{message:?}");
        }
    }
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        let _ = claims_from_json(&value);
        let groups = groups_from_claim(value.get("groups"));
        assert!(groups.len() <= body.len());
        let email = value.get("email").and_then(Value::as_str);
        let allowed = ["example.com".to_owned()];
        if domain_allowed(email, &allowed) {
            let email = email.unwrap_or_default().to_ascii_lowercase();
            assert!(email.ends_with("@example.com"), "{email:?}");
        }
    }
}
