//! `GET /auth/handoff?to=URL&n=HASH`: hands a signed-in browser to an HTTP
//! route's host (issue 14). The proxy sent the browser here with the
//! address it wanted (`to`, on a route's host) and the hash of a nonce it
//! keeps in a cookie on that host (`n`). The browser signs in here if it
//! has not, then goes back to the route's host with a one-time code bound
//! to that hash (`/.gatehouse/callback`), which the proxy trades for a
//! session of its own host. Only configured route origins are accepted,
//! so this is no open redirect.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use state::WebHandoff;
use web_front::Peer;
use web_front::client_addr;

use crate::App;
use crate::auth::{current, hash, random_token, short, unavailable};
use crate::pages::{message, url_encode};

/// How long a hand-off code is good for: one redirect.
const CODE_LIFETIME: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
pub(crate) struct HandoffQuery {
    to: Option<String>,
    n: Option<String>,
}

pub(crate) async fn handoff(
    State(app): State<Arc<App>>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    headers: HeaderMap,
    Query(q): Query<HandoffQuery>,
) -> Response {
    let ip = client_addr(peer, &headers, &app.config.trusted_proxies);
    let refuse = |reason: &str| {
        audit::Event::HttpSigninFailed {
            route: String::new(),
            reason: reason.to_owned(),
            peer: ip.to_string(),
        }
        .emit();
        message(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "This sign-in link is not valid. Open the application's address again.",
        )
    };
    let (Some(to), Some(n)) = (q.to, q.n) else {
        return refuse("the hand-off has no destination or nonce");
    };
    if n.len() != 64 || !n.bytes().all(|b| b.is_ascii_hexdigit()) || to.len() > 4096 {
        return refuse("the hand-off is malformed");
    }
    let Ok(url) = url::Url::parse(&to) else {
        return refuse("the hand-off's destination is not a URL");
    };
    let origin = url.origin().ascii_serialization();
    let served = app
        .route_origins
        .as_ref()
        .is_some_and(|serves| serves(&origin));
    let Some(host) = url.host_str().filter(|_| served) else {
        return refuse("the hand-off's destination is not an HTTP route");
    };
    let here = format!("/auth/handoff?to={}&n={n}", url_encode(&to));
    let session = match current(&app, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            let login = format!("/auth/login?return_to={}", url_encode(&here));
            return Redirect::to(&login).into_response();
        }
        Err(r) => return r,
    };
    let Some(code) = random_token() else {
        return unavailable("state", "no randomness");
    };
    let return_to = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let handoff = WebHandoff {
        code_hash: hash(&code),
        session_hash: session.id_hash.clone(),
        host: host.to_ascii_lowercase(),
        nonce_hash: n.to_ascii_lowercase(),
        return_to,
        expires_at: SystemTime::now() + CODE_LIFETIME,
    };
    if let Err(e) = app.store.web_handoff_create(handoff).await {
        return unavailable("state", &e.to_string());
    }
    let back = format!(
        "{origin}/.gatehouse/callback?code={}&n={}",
        url_encode(&code),
        short(&n.to_ascii_lowercase())
    );
    Redirect::to(&back).into_response()
}
