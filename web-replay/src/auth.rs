//! Sign-in, the browser session and sign-out.
//!
//! - `GET /auth/login?return_to=PATH` starts an authorization-code sign-in
//!   with PKCE: the pending sign-in is stored server-side under the hash of
//!   its `state`, and the browser gets a cookie named after that hash
//!   holding the state, so the callback proves it came to the browser that
//!   started it (login CSRF), and two tabs signing in at once each have
//!   their own cookie.
//! - `GET /auth/callback` finishes it, stores a [`state::WebSession`] under
//!   the SHA-256 of a fresh random token, and sets the token in the
//!   `__Host-gatehouse` cookie (Secure, HttpOnly, SameSite=Lax).
//! - `POST /auth/signout` with the session's CSRF token ends it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use state::{WebLogin, WebSession};

use crate::pages::{esc, message, page};
use crate::{App, LOGIN_TIMEOUT};
use web_front::{Peer, client_addr};

/// Per-attempt sign-in cookies start with this.
const LOGIN_COOKIE: &str = "__Host-gatehouse-login-";

pub(crate) use web_front::session::{
    SESSION_COOKIE, cookie, hash, random_token, safe_return_to, set_cookie, short,
};

/// The signed-in browser making this request, if it is one.
pub(crate) async fn current(
    app: &App,
    headers: &HeaderMap,
) -> Result<Option<WebSession>, Response> {
    web_front::session::current(app.store.as_ref(), headers)
        .await
        .map_err(|e| unavailable("state", &e.to_string()))
}

/// One plain line for the user; the detail goes to the log.
pub(crate) fn unavailable(what: &'static str, detail: &str) -> Response {
    tracing::warn!(component = what, error = detail, "web request failed");
    let text = match what {
        "idp" => "The identity provider is unavailable. Try again in a moment.",
        _ => "The state database is unavailable. Try again in a moment.",
    };
    message(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", text)
}

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    return_to: Option<String>,
}

/// `GET /auth/login`: off to the identity provider.
pub(crate) async fn login(State(app): State<Arc<App>>, Query(q): Query<LoginQuery>) -> Response {
    let idp = match app.idp.get().await {
        Ok(idp) => idp,
        Err(e) => return unavailable("idp", &e.to_string()),
    };
    let (url, pending) = match idp.start_code_sign_in(&app.callback_url()) {
        Ok(v) => v,
        Err(e) => return unavailable("idp", &e.to_string()),
    };
    let Ok(pending_json) = serde_json::to_string(&pending) else {
        return unavailable("state", "cannot encode the sign-in");
    };
    let state_hash = hash(&pending.state);
    let login = WebLogin {
        state_hash: state_hash.clone(),
        pending_json,
        return_to: safe_return_to(q.return_to.as_deref()),
        expires_at: SystemTime::now() + LOGIN_TIMEOUT,
    };
    if let Err(e) = app.store.web_login_start(login).await {
        return unavailable("state", &e.to_string());
    }
    let name = format!("{LOGIN_COOKIE}{}", short(&state_hash));
    let mut response = Redirect::to(&url).into_response();
    let max_age = i64::try_from(LOGIN_TIMEOUT.as_secs()).unwrap_or(600);
    if let Some(v) = set_cookie(&name, &pending.state, max_age) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /auth/callback`: back from the identity provider.
pub(crate) async fn callback(
    State(app): State<Arc<App>>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let ip = client_addr(peer, &headers, &app.config.trusted_proxies);
    let failed = |reason: String, text: &str| {
        audit::Event::WebSigninFailed {
            peer: ip.to_string(),
            reason,
        }
        .emit();
        message(StatusCode::FORBIDDEN, "Sign-in failed", text)
    };
    let Some(state) = q.state.filter(|s| !s.is_empty() && s.len() <= 256) else {
        return failed(
            "the callback has no state".to_owned(),
            "This sign-in link is not valid. Start again.",
        );
    };
    let state_hash = hash(&state);
    let cookie_name = format!("{LOGIN_COOKIE}{}", short(&state_hash));
    // The browser that started this sign-in holds its state.
    if cookie(&headers, &cookie_name).as_deref() != Some(state.as_str()) {
        return failed(
            "the callback came to a browser that did not start the sign-in".to_owned(),
            "This sign-in was started in another browser. Start again here.",
        );
    }
    let login = match app
        .store
        .web_login_take(&state_hash, SystemTime::now())
        .await
    {
        Ok(Some(login)) => login,
        Ok(None) => {
            return failed(
                "the sign-in is unknown, used or expired".to_owned(),
                "This sign-in has expired or was already used. Start again.",
            );
        }
        Err(e) => return unavailable("state", &e.to_string()),
    };
    let mut response = match finish(&app, ip, &login, &state, q.code, q.error).await {
        Ok(r) => r,
        Err((reason, text)) => failed(reason, text),
    };
    // The attempt's cookie has done its job either way.
    if let Some(v) = set_cookie(&cookie_name, "", 0) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// Redeems the code and starts the browser session.
async fn finish(
    app: &App,
    ip: IpAddr,
    login: &WebLogin,
    state: &str,
    code: Option<String>,
    error: Option<String>,
) -> Result<Response, (String, &'static str)> {
    if let Some(error) = error {
        let e = identity::callback_error(&error);
        return Err((e.to_string(), "The identity provider did not sign you in."));
    }
    let code = code.ok_or_else(|| {
        (
            "the callback has no code".to_owned(),
            "This sign-in link is not valid. Start again.",
        )
    })?;
    let pending: identity::PendingCodeSignIn =
        serde_json::from_str(&login.pending_json).map_err(|_| {
            (
                "the stored sign-in is unreadable".to_owned(),
                "Start again.",
            )
        })?;
    let idp = app
        .idp
        .get()
        .await
        .map_err(|e| (e.to_string(), "The identity provider is unavailable."))?;
    let signed_in = idp
        .finish_code_sign_in(&pending, state, &code)
        .await
        .map_err(|e| (e.to_string(), "The identity provider did not sign you in."))?;
    let (Some(token), Some(csrf)) = (random_token(), random_token()) else {
        return Err(("no randomness".to_owned(), "Try again."));
    };
    let now = SystemTime::now();
    let id_hash = hash(&token);
    let identity = signed_in
        .email
        .clone()
        .unwrap_or_else(|| signed_in.sub.clone());
    let session = WebSession {
        id_hash: id_hash.clone(),
        sub: signed_in.sub.clone(),
        email: signed_in.email.clone(),
        groups: signed_in.groups.clone(),
        claims_json: signed_in.claims_json.clone(),
        issuer: signed_in.issuer.clone(),
        csrf,
        client_addr: ip.to_string(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + app.config.session_lifetime,
        idle_timeout: app.config.session_idle,
    };
    if let Err(e) = app.store.web_session_create(session).await {
        tracing::warn!(error = %e, "cannot store a web session");
        return Err((
            format!("state database: {e}"),
            "The state database is unavailable. Try again in a moment.",
        ));
    }
    audit::Event::WebSignin {
        web_session: short(&id_hash),
        identity,
        sub: signed_in.sub,
        issuer: signed_in.issuer,
        groups: signed_in.groups,
        peer: ip.to_string(),
    }
    .emit();
    let mut response = Redirect::to(&login.return_to).into_response();
    let max_age = i64::try_from(app.config.session_lifetime.as_secs()).unwrap_or(i64::MAX);
    if let Some(v) = set_cookie(SESSION_COOKIE, &token, max_age) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(response)
}

#[derive(Deserialize)]
pub(crate) struct SignoutForm {
    csrf: Option<String>,
}

/// `POST /auth/signout`: ends the browser session, if the form carries its
/// CSRF token.
pub(crate) async fn signout(
    State(app): State<Arc<App>>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    headers: HeaderMap,
    Form(form): Form<SignoutForm>,
) -> Response {
    let session = match current(&app, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return Redirect::to("/").into_response(),
        Err(r) => return r,
    };
    let ok = form
        .csrf
        .as_deref()
        .is_some_and(|c| identity::constant_time_eq(c, &session.csrf));
    if !ok {
        return message(
            StatusCode::FORBIDDEN,
            "Refused",
            "The form was not sent by this site (the CSRF check failed).",
        );
    }
    if let Err(e) = app.store.web_session_end(&session.id_hash).await {
        return unavailable("state", &e.to_string());
    }
    let ip = client_addr(peer, &headers, &app.config.trusted_proxies);
    audit::Event::WebSignout {
        web_session: short(&session.id_hash),
        identity: session.email.clone().unwrap_or(session.sub.clone()),
        cause: "signout",
        peer: ip.to_string(),
    }
    .emit();
    let mut response = message(StatusCode::OK, "Signed out", "You are signed out.");
    if let Some(v) = set_cookie(SESSION_COOKIE, "", 0) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// `GET /`: who is signed in; sign-in first if nobody is.
pub(crate) async fn home(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let session = match current(&app, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return Redirect::to("/auth/login?return_to=/").into_response(),
        Err(r) => return r,
    };
    let who = session.email.as_deref().unwrap_or(&session.sub);
    let body = format!(
        "<p id=\"whoami\">Signed in as <strong>{}</strong> ({})</p>\n\
         <p><a href=\"/sessions\">Recorded sessions</a> · <a href=\"/live\">Live sessions</a> · \
         <a href=\"/search\">Search what was on screen</a></p>\n\
         <form method=\"post\" action=\"/auth/signout\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\">Sign out</button></form>",
        esc(who),
        esc(&session.groups.join(", ")),
        esc(&session.csrf),
    );
    page(StatusCode::OK, "Gatehouse", &body)
}
