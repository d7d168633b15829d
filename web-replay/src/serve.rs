//! The routes and the headers every response carries.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use crate::{App, assets, auth, handoff, link, live, player, search, sessions};

/// How often dead browser sessions and abandoned sign-ins are removed.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// Removes dead web sessions and sign-ins now and every [`PURGE_EVERY`],
/// until `stop`: a session that is never used again must not stay a row.
async fn purge(app: Arc<App>, stop: CancellationToken) {
    loop {
        match app.store.web_purge(std::time::SystemTime::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "removed dead web sessions and sign-ins"),
            Err(e) => tracing::warn!(error = %e, "cannot purge web sessions"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PURGE_EVERY) => {}
        }
    }
}

/// Every route of the app.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(auth::home))
        .route("/auth/login", get(auth::login))
        .route("/auth/callback", get(auth::callback))
        .route("/auth/signout", post(auth::signout))
        .route("/auth/handoff", get(handoff::handoff))
        .route("/ssh/link/{token}", get(link::show).post(link::approve))
        .route("/sessions", get(sessions::list))
        .route("/sessions/{id}", get(player::page))
        .route("/sessions/{id}/cast", get(player::cast))
        .route("/sessions/{id}/download", get(player::download))
        .route("/sessions/{id}/find", get(player::find))
        .route("/sessions/{id}/screen", get(player::screen))
        .route("/sessions/{id}/watch", get(live::watch))
        .route("/sessions/{id}/live", get(live::events))
        .route("/sessions/{id}/status", get(live::status))
        .route("/sessions/{id}/end", post(live::end))
        .route("/live", get(live::list))
        .route("/search", get(search::page))
        .route("/assets/{name}", get(assets::get))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(app)
}

/// The same headers on every response: no framing, no inline script, no
/// sniffing, no referrer, and nothing cached.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
             img-src 'self' data:; \
             object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// `/healthz`: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// `/readyz`: the state database and the identity provider answer.
async fn readyz(State(app): State<Arc<App>>) -> Response {
    if let Err(e) = app.store.revision().await {
        tracing::warn!(error = %e, "readyz: state database");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "state database unavailable\n",
        )
            .into_response();
    }
    if let Err(e) = app.idp.get().await {
        tracing::warn!(error = %e, "readyz: identity provider");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "identity provider unavailable\n",
        )
            .into_response();
    }
    "ready\n".into_response()
}

/// Starts the app's background work until `stop`: removing dead browser
/// sessions, and indexing the text of sealed recordings so they become
/// searchable. The listener is the binary's ([`web_front::serve`]), since
/// it also serves the HTTP proxy's routes.
pub fn start(app: &Arc<App>, stop: &CancellationToken) {
    tokio::spawn(purge(Arc::clone(app), stop.clone()));
    let indexer = crate::indexer::Indexer::new(Arc::clone(&app.catalog), Arc::clone(&app.store));
    tokio::spawn(indexer.run(stop.clone()));
}
