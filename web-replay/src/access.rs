//! Who may see what: every page asks the `web.access` policy
//! ([`policy::lang::evaluate_access`]) about each recording it shows, with
//! the signed-in viewer's identity, address and the time.

use std::net::IpAddr;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use policy::lang::{
    AccessRequest, Identity, RecordingFacts, Timestamp, ViewerCapability, evaluate_access,
};
use state::{RecordingRow, WebSession};

use crate::App;
use crate::auth::current;
use crate::pages::message;
use web_front::client_addr;

/// A signed-in viewer, as the access policy sees them.
pub(crate) struct Viewer {
    /// Their browser session (CSRF token, hash for audit).
    pub(crate) session: WebSession,
    /// Their identity for the policy.
    pub(crate) identity: Identity,
    /// Their address, after trusted proxies.
    pub(crate) addr: IpAddr,
}

/// What the policy says about one capability on one recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Grant {
    /// Allowed.
    Yes,
    /// Allowed once the viewer gives a reason (break-glass).
    WithReason,
    /// Denied.
    No,
}

impl Viewer {
    /// The viewer of this request, or the response to send instead: a
    /// redirect to sign in (back to `here` afterwards) or an outage page.
    pub(crate) async fn of(
        app: &App,
        headers: &HeaderMap,
        peer: std::net::SocketAddr,
        here: &str,
    ) -> Result<Viewer, Response> {
        let Some(session) = current(app, headers).await? else {
            let back = crate::auth::safe_return_to(Some(here));
            let to = format!("/auth/login?return_to={}", crate::pages::url_encode(&back));
            return Err(Redirect::to(&to).into_response());
        };
        let identity = web_front::session::identity_of(&session);
        let addr = client_addr(peer, headers, &app.config.trusted_proxies);
        Ok(Viewer {
            session,
            identity,
            addr,
        })
    }

    /// How audit events and "viewed by" name the viewer.
    pub(crate) fn label(&self) -> &str {
        self.identity.label()
    }

    /// What the policy says about `cap` on `row`, now.
    pub(crate) fn grant(&self, app: &App, row: &RecordingRow, cap: ViewerCapability) -> Grant {
        self.grant_on(
            app,
            &row.start.route,
            &row.start.login,
            &row.start.identity,
            cap,
        )
    }

    /// [`Viewer::grant`] from the facts alone (a live session has no index
    /// row of its own yet).
    pub(crate) fn grant_on(
        &self,
        app: &App,
        route: &str,
        login: &str,
        recorded_user: &str,
        cap: ViewerCapability,
    ) -> Grant {
        let now =
            Timestamp::try_from(std::time::SystemTime::now()).unwrap_or(Timestamp::UNIX_EPOCH);
        let decision = evaluate_access(
            &app.config.access,
            &AccessRequest {
                viewer: &self.identity,
                source: self.addr,
                now,
                recording: RecordingFacts {
                    route,
                    login,
                    recorded_user,
                },
            },
        );
        if !decision.allows(cap) {
            Grant::No
        } else if decision.requires_reason(cap) {
            Grant::WithReason
        } else {
            Grant::Yes
        }
    }
}

/// The page for a request the policy refuses. It does not say whether the
/// session exists.
pub(crate) fn refused() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such session, or you may not see it.",
    )
}
