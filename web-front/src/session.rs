//! Browser sessions as the web listener sees them: the `__Host-` cookies,
//! the random tokens they carry, and the hashes the state database keeps
//! instead of the tokens. Shared by the web app (which signs browsers in)
//! and the HTTP proxy (which receives them on each route's host).
//!
//! **Invariant:** a token is never logged and never stored: the store has
//! its SHA-256, and audit events name a session by a prefix of that.

use std::time::SystemTime;

use axum::http::{HeaderMap, HeaderValue, header};
use cookie::{Cookie, SameSite};
use state::{Store, WebSession};

/// The session cookie, on the web app's host and on each route's host.
/// `__Host-`: Secure, no Domain, Path=/.
pub const SESSION_COOKIE: &str = "__Host-gatehouse";

/// Every cookie of ours starts with this; the proxy never forwards them.
pub const COOKIE_PREFIX: &str = "__Host-gatehouse";

pub use state::token::{hash, new_token as random_token, short};

/// The cookie named `name` in the request, if any.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// A `Set-Cookie` value for a `__Host-` cookie (Secure, HttpOnly,
/// SameSite=Lax, Path=/): Strict would drop it on the IdP's redirect back.
pub fn set_cookie(name: &str, value: &str, max_age_s: i64) -> Option<HeaderValue> {
    let c = Cookie::build((name, value))
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(max_age_s))
        .build();
    HeaderValue::from_str(&c.to_string()).ok()
}

/// The live browser session whose token the request's session cookie
/// carries, if any (counting the request, see [`Store::web_session`]).
pub async fn current(store: &dyn Store, headers: &HeaderMap) -> state::Result<Option<WebSession>> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    store.web_session(&hash(&token), SystemTime::now()).await
}

/// The signed-in browser's identity, as the policy language sees it: the
/// IdP subject, email, groups and every ID-token claim.
pub fn identity_of(session: &WebSession) -> policy::lang::Identity {
    use policy::lang::{Identity, IdentityKind};
    let claims = serde_json::from_str::<serde_json::Value>(&session.claims_json)
        .map(|v| identity::claims_from_json(&v))
        .unwrap_or_default();
    Identity {
        email: session.email.clone(),
        groups: session.groups.clone(),
        claims,
        ..Identity::new(IdentityKind::User, session.sub.clone())
    }
}

/// A path on this site to return to; anything else (another host,
/// `//evil`, control characters, too long) becomes `/`.
pub fn safe_return_to(path: Option<&str>) -> String {
    match path {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.starts_with("/\\")
                && p.len() <= 2048
                && !p.chars().any(char::is_control) =>
        {
            p.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(safe_return_to(Some("/sessions?user=a")), "/sessions?user=a");
        for bad in [
            "//evil.example",
            "/\\evil",
            "https://evil.example",
            "",
            "/a\nb",
        ] {
            assert_eq!(safe_return_to(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_return_to(None), "/");
    }

    #[test]
    fn cookies_are_host_prefixed_secure_http_only_and_lax() {
        let v = set_cookie(SESSION_COOKIE, "tok", 60)
            .and_then(|v| v.to_str().ok().map(str::to_owned))
            .unwrap_or_default();
        for part in [
            "__Host-gatehouse=tok",
            "Path=/",
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
            "Max-Age=60",
        ] {
            assert!(v.contains(part), "{part} in {v}");
        }
        assert!(!v.contains("Domain"), "{v}");
    }
}
