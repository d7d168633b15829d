//! Signing a browser in on a route's host: cookies are per host, so the
//! web app's session cannot be read here. The proxy sends the browser to
//! the web app (`{public_url}/auth/handoff`), which signs it in if needed
//! and sends it back with a one-time code; `/.gatehouse/callback` on the
//! route's host trades the code for a session of this host. The session
//! cookie never travels in a URL.
//!
//! Before leaving, the proxy sets an attempt cookie on this host holding a
//! random nonce, and sends only the nonce's hash along; the code is bound
//! to that hash, so it works only in the browser that asked for it (a
//! stolen or planted code is useless: login CSRF).

use std::net::IpAddr;
use std::time::SystemTime;

use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use config::HttpRoute;
use state::HandoffSession;
use web_front::html::{message, url_encode};
use web_front::session::{
    SESSION_COOKIE, cookie, hash, random_token, safe_return_to, set_cookie, short,
};

use crate::Proxy;

/// The attempt cookie's name starts with this; its suffix is a prefix of
/// the nonce's hash, so tabs signing in at once do not collide.
const ATTEMPT_COOKIE: &str = "__Host-gatehouse-handoff-";

/// How long an attempt may take (the web app's sign-in included).
const ATTEMPT_MAX_AGE_S: i64 = 600;

/// The path of the hand-off's return on every route host.
pub(crate) const CALLBACK: &str = "/.gatehouse/callback";

/// The answer to a request without a session: a browser navigating is
/// sent to sign in; anything else gets a 401 with JSON.
pub(crate) fn required(
    proxy: &Proxy,
    route: &HttpRoute,
    method: &Method,
    headers: &HeaderMap,
    path_and_query: &str,
) -> Response {
    let back = format!("{}{path_and_query}", route.origin);
    if !crate::headers::wants_html(method, headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Gatehouse")],
            axum::Json(serde_json::json!({
                "error": "unauthenticated",
                "message": "sign in first: open this address in a browser",
                "sign_in": back,
            })),
        )
            .into_response();
    }
    let Some(nonce) = random_token() else {
        return message(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", "Try again.");
    };
    let nonce_hash = hash(&nonce);
    let to = format!(
        "{}/auth/handoff?to={}&n={}",
        proxy.public_url,
        url_encode(&back),
        url_encode(&nonce_hash)
    );
    let mut response = Redirect::to(&to).into_response();
    let name = format!("{ATTEMPT_COOKIE}{}", short(&nonce_hash));
    if let Some(v) = set_cookie(&name, &nonce, ATTEMPT_MAX_AGE_S) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// `GET /.gatehouse/callback?code=C&n=N`: the browser is back from the web
/// app with a one-time code.
pub(crate) async fn callback(
    proxy: &Proxy,
    route: &HttpRoute,
    host: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    client: IpAddr,
) -> Response {
    let query = query.unwrap_or("");
    let param = |key: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| web_front::html::url_decode(v))
    };
    let failed = |reason: &str| {
        audit::Event::HttpSigninFailed {
            route: route.name.clone(),
            reason: reason.to_owned(),
            peer: client.to_string(),
        }
        .emit();
        message(
            StatusCode::FORBIDDEN,
            "Sign-in failed",
            "This sign-in has expired, was already used, or was started in another \
             browser. Open the address again to sign in.",
        )
    };
    let (Some(code), Some(n)) = (param("code"), param("n")) else {
        return failed("the callback has no code");
    };
    if code.len() > 256 || n.len() > 64 {
        return failed("the callback is malformed");
    }
    let attempt = format!("{ATTEMPT_COOKIE}{n}");
    let Some(nonce) = cookie(headers, &attempt) else {
        return failed("the browser has no attempt cookie for this code");
    };
    let (Some(token), Some(csrf)) = (random_token(), random_token()) else {
        return failed("no randomness");
    };
    let session = HandoffSession {
        id_hash: hash(&token),
        csrf,
        client_addr: client.to_string(),
    };
    let redeemed = proxy
        .store
        .web_handoff_redeem(
            &hash(&code),
            host,
            &hash(&nonce),
            session,
            SystemTime::now(),
        )
        .await;
    let (session, return_to) = match redeemed {
        Ok(Some(v)) => v,
        Ok(None) => return failed("the code is unknown, used, expired, or not this browser's"),
        Err(e) => {
            tracing::warn!(error = %e, "proxy: cannot redeem a hand-off");
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The state database is unavailable. Try again in a moment.",
            );
        }
    };
    audit::Event::HttpSignin {
        route: route.name.clone(),
        identity: session.email.clone().unwrap_or(session.sub.clone()),
        web_session: short(&session.id_hash),
        peer: client.to_string(),
    }
    .emit();
    let mut response = Redirect::to(&safe_return_to(Some(&return_to))).into_response();
    let lifetime = session
        .expires_at
        .duration_since(SystemTime::now())
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    for v in [
        set_cookie(SESSION_COOKIE, &token, lifetime),
        set_cookie(&attempt, "", 0),
    ]
    .into_iter()
    .flatten()
    {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}
