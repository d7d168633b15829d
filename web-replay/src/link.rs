//! `/ssh/link/{token}`: the page behind an SSH sign-in link (issue 14),
//! for identity providers without the device grant. The gateway showed
//! the link and a confirmation phrase in the SSH client's keyboard-
//! interactive prompt; here the user, signed in through the IdP, checks
//! the phrase, the key, the client address and the route, and approves
//! with a POST carrying the session's CSRF token. A GET never approves.
//! The gateway holding the SSH connection sees the approval in the state
//! database and binds the key to this user.
//!
//! A link that was used, whose SSH client left, that expired or that is
//! unknown gets a page saying so, and `signin.link_refused`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use audit::SessionId;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use state::token::well_formed;
use state::{LinkApproval, LinkApproved, LinkRow, LinkState, WebSession};
use web_front::{Peer, client_addr};

use crate::App;
use crate::auth::{current, hash, short, unavailable};
use crate::pages::{esc, message, page, url_encode};

/// Why a link cannot be approved, as audited.
fn refusal(row: Option<&LinkRow>, now: SystemTime) -> Option<&'static str> {
    match row {
        None => Some("unknown"),
        Some(r) => match r.state {
            LinkState::Used | LinkState::Approved => Some("used"),
            LinkState::Closed => Some("closed"),
            LinkState::Pending if now >= r.link.expires_at => Some("expired"),
            LinkState::Pending => None,
        },
    }
}

/// The page for a link that cannot be approved.
fn refused_page(
    reason: &'static str,
    row: Option<&LinkRow>,
    session: &WebSession,
    ip: IpAddr,
) -> Response {
    audit::Event::SigninLinkRefused {
        session_id: SessionId::new(row.map_or("", |r| r.link.session_id.as_str())),
        link: row.map_or_else(String::new, |r| short(&r.link.id_hash)),
        reason,
        web_session: short(&session.id_hash),
        peer: ip.to_string(),
    }
    .emit();
    let text = match reason {
        "used" => {
            "This sign-in link was already used. Each link signs in one SSH connection once; connect again for a new one."
        }
        "closed" => {
            "The SSH connection that showed this link has ended. Connect again for a new link."
        }
        "expired" => "This sign-in link has expired. Connect again for a new one.",
        "csrf" => "The form was not sent by this site (the CSRF check failed).",
        _ => "This sign-in link is not valid.",
    };
    message(StatusCode::GONE, "Sign-in link", text)
}

/// The signed-in browser, or a redirect to sign in and come back.
async fn signed_in(app: &App, headers: &HeaderMap, token: &str) -> Result<WebSession, Response> {
    match current(app, headers).await? {
        Some(s) => Ok(s),
        None => {
            let back = format!("/ssh/link/{}", url_encode(token));
            let login = format!("/auth/login?return_to={}", url_encode(&back));
            Err(Redirect::to(&login).into_response())
        }
    }
}

/// `GET /ssh/link/{token}`: what is being signed in, and the button.
pub(crate) async fn show(
    State(app): State<Arc<App>>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let session = match signed_in(&app, &headers, &token).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let ip = client_addr(peer, &headers, &app.config.trusted_proxies);
    let row = if well_formed(&token) {
        match app.store.ssh_link(&hash(&token)).await {
            Ok(row) => row,
            Err(e) => return unavailable("state", &e.to_string()),
        }
    } else {
        None
    };
    let now = SystemTime::now();
    if let Some(reason) = refusal(row.as_ref(), now) {
        return refused_page(reason, row.as_ref(), &session, ip);
    }
    let Some(row) = row else {
        return refused_page("unknown", None, &session, ip);
    };
    let link = &row.link;
    let minutes = link
        .expires_at
        .duration_since(now)
        .map_or(0, |d| d.as_secs().div_ceil(60));
    let who = session.email.as_deref().unwrap_or(&session.sub);
    let body = format!(
        "<p>An SSH client asks to sign in as <strong>{who}</strong>.</p>\n\
         <p class=\"warning\">Approve only if you started this connection yourself, just now, \
         and your terminal shows the same phrase. Approving lets that client act as you.</p>\n\
         <dl id=\"link\">\
         <dt>Phrase</dt><dd id=\"phrase\">{phrase}</dd>\
         <dt>Connecting as</dt><dd id=\"route\">{route}</dd>\
         <dt>Client address</dt><dd id=\"client\">{client}</dd>\
         <dt>Key</dt><dd id=\"key\"><code>{key}</code></dd>\
         <dt>Expires</dt><dd>in {minutes} min</dd>\
         </dl>\n\
         <form id=\"approve\" method=\"post\" action=\"/ssh/link/{token}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\">Approve this sign-in</button></form>\n\
         <p>If you did not start it, close this page: nothing happens without approval.</p>",
        who = esc(who),
        phrase = esc(&link.phrase),
        route = esc(&link.user_name),
        client = esc(&link.client_addr),
        key = esc(&link.fingerprint),
        token = esc(&url_encode(&token)),
        csrf = esc(&session.csrf),
    );
    page(StatusCode::OK, "Approve an SSH sign-in", &body)
}

#[derive(Deserialize)]
pub(crate) struct ApproveForm {
    csrf: Option<String>,
}

/// `POST /ssh/link/{token}`: approves, with the session's CSRF token.
pub(crate) async fn approve(
    State(app): State<Arc<App>>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(form): Form<ApproveForm>,
) -> Response {
    let session = match signed_in(&app, &headers, &token).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let ip = client_addr(peer, &headers, &app.config.trusted_proxies);
    let id_hash = hash(&token);
    let row = if well_formed(&token) {
        match app.store.ssh_link(&id_hash).await {
            Ok(row) => row,
            Err(e) => return unavailable("state", &e.to_string()),
        }
    } else {
        None
    };
    let csrf_ok = form
        .csrf
        .as_deref()
        .is_some_and(|c| identity::constant_time_eq(c, &session.csrf));
    if !csrf_ok {
        return refused_page("csrf", row.as_ref(), &session, ip);
    }
    let Some(row) = row else {
        return refused_page("unknown", None, &session, ip);
    };
    let now = SystemTime::now();
    let approval = LinkApproval {
        sub: session.sub.clone(),
        email: session.email.clone(),
        groups: session.groups.clone(),
        claims_json: session.claims_json.clone(),
        issuer: session.issuer.clone(),
        web_session: short(&session.id_hash),
        approved_at: now,
    };
    let outcome = match app.store.ssh_link_approve(&id_hash, approval, now).await {
        Ok(o) => o,
        Err(e) => return unavailable("state", &e.to_string()),
    };
    let reason = match outcome {
        LinkApproved::Approved => None,
        LinkApproved::Unknown => Some("unknown"),
        LinkApproved::Expired => Some("expired"),
        LinkApproved::Already(LinkState::Closed) => Some("closed"),
        LinkApproved::Already(_) => Some("used"),
    };
    if let Some(reason) = reason {
        return refused_page(reason, Some(&row), &session, ip);
    }
    audit::Event::SigninLinkApproved {
        session_id: SessionId::new(row.link.session_id.clone()),
        link: short(&id_hash),
        identity: session.email.clone().unwrap_or(session.sub.clone()),
        web_session: short(&session.id_hash),
        peer: ip.to_string(),
    }
    .emit();
    message(
        StatusCode::OK,
        "Signed in",
        "Approved. Go back to your terminal: the SSH connection continues.",
    )
}
