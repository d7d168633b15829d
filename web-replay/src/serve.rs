//! The listener, TLS, the routes and the headers every response carries.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::peer::Peer;
use crate::{App, Error, assets, auth, live, player, search, sessions};

/// A TLS handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// The TLS acceptor for `cert` and `key` (PEM), HTTP/1.1 only.
fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, Error> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect())
        .map_err(|e| Error::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!("{}: no certificate", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::Tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Binds the `web:` listener. Returns the bound address (for `:0`) and a
/// future that serves until `stop` is cancelled.
pub async fn serve(
    app: Arc<App>,
    stop: CancellationToken,
) -> Result<(SocketAddr, impl std::future::Future<Output = ()>), Error> {
    let addr = app.config.listen;
    let tls = match &app.config.transport {
        config::WebTransport::Tls { cert, key } => Some(tls_acceptor(cert, key)?),
        config::WebTransport::PlainHttp => None,
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| Error::Listen { addr, source })?;
    tokio::spawn(purge(Arc::clone(&app), stop.clone()));
    // Recordings become searchable once sealed.
    let indexer = crate::indexer::Indexer::new(Arc::clone(&app.catalog), Arc::clone(&app.store));
    tokio::spawn(indexer.run(stop.clone()));
    let routes = router(app);
    let run = async move {
        loop {
            let (stream, peer) = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(error = %e, "web: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let service =
                routes
                    .clone()
                    .map_request(move |req: hyper::Request<hyper::body::Incoming>| {
                        let mut req = req.map(axum::body::Body::new);
                        req.extensions_mut().insert(Peer(peer));
                        req
                    });
            let tls = tls.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let service = TowerToHyperService::new(service);
                let result = match tls {
                    None => {
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        tokio::select! {
                            r = conn => r,
                            () = stop.cancelled() => Ok(()),
                        }
                    }
                    Some(acceptor) => {
                        let handshake =
                            tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                        let Ok(Ok(stream)) = handshake else {
                            return;
                        };
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        tokio::select! {
                            r = conn => r,
                            () = stop.cancelled() => Ok(()),
                        }
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "web: connection ended");
                }
            });
        }
    };
    Ok((bound, run))
}
