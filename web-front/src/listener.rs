//! The web listener: plain HTTP (a TLS proxy in front, said explicitly in
//! the configuration) or TLS with rustls on ring; HTTP/1.1 and HTTP/2 on
//! both (ALPN `h2` and `http/1.1` over TLS, prior knowledge in the clear).
//! Each request carries the connection's [`Peer`] and [`Tls`] as
//! extensions. One listener serves the web app and every HTTP route; the
//! service handed in decides which by the request's host.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt as _};

use crate::{Error, Peer};

/// A TLS handshake, or a plain connection's first byte, that takes longer
/// than this is dropped: a client that connects and says nothing must not
/// hold a task for ever (hyper's header timeout only starts at the first
/// byte).
pub const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);

/// A request's headers must arrive within this long of its first byte.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the request came over TLS on this listener (for
/// `X-Forwarded-Proto` and for redirects).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tls(pub bool);

/// The TLS acceptor for `cert` and `key` (PEM files), offering HTTP/2 and
/// HTTP/1.1.
pub fn tls_acceptor(
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
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Binds `addr`; returns the listener and the address it got (for `:0`).
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), Error> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| Error::Listen { addr, source })?;
    Ok((listener, bound))
}

/// Serves `service` on `listener` until `stop` is cancelled.
pub async fn serve<S>(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    service: S,
    stop: CancellationToken,
) where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
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
        let _ = stream.set_nodelay(true);
        let over_tls = tls.is_some();
        let service = service
            .clone()
            .map_request(move |req: Request<hyper::body::Incoming>| {
                let mut req = req.map(Body::new);
                req.extensions_mut().insert(Peer(peer));
                req.extensions_mut().insert(Tls(over_tls));
                req
            });
        let tls = tls.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, tls, service, stop).await {
                tracing::debug!(error = %e, "web: connection ended");
            }
        });
    }
}

/// One connection, over TLS or not.
async fn connection<S>(
    stream: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    service: S,
    stop: CancellationToken,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    S: Service<Request<hyper::body::Incoming>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let service = TowerToHyperService::new(service);
    match tls {
        None => {
            // Nothing from the client yet: wait for its first byte, bounded.
            let mut first = [0u8; 1];
            match tokio::time::timeout(FIRST_BYTES_TIMEOUT, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return Ok(()),
            }
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::select! {
                r = conn => r,
                () = stop.cancelled() => Ok(()),
            }
        }
        Some(acceptor) => {
            let Ok(Ok(stream)) =
                tokio::time::timeout(FIRST_BYTES_TIMEOUT, acceptor.accept(stream)).await
            else {
                return Ok(());
            };
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::select! {
                r = conn => r,
                () = stop.cancelled() => Ok(()),
            }
        }
    }
}
