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
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt as _};

use crate::{Error, Peer};

/// A TLS handshake (or a trusted proxy's PROXY header) that takes longer
/// than this is dropped.
pub const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);

/// A request's headers must arrive within this long; hyper also closes a
/// keep-alive connection idle for this long between requests.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the request came over TLS on this listener (for
/// `X-Forwarded-Proto` and for redirects).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tls(pub bool);

/// The ALPN protocols of the web listener.
pub const WEB_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The TLS acceptor for `cert` and `key` (PEM files), offering the ALPN
/// protocols `alpn` in order of preference ([`WEB_ALPN`] for the web
/// listener; the edge adds `ssh`).
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
    alpn: &[&[u8]],
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
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
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

/// Serves `service` on `listener` until `stop` is cancelled. A peer in
/// `trusted_proxies` may start with a PROXY protocol header, whose client
/// address is then the request's [`Peer`].
pub async fn serve<S>(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    trusted_proxies: Vec<ipnet::IpNet>,
    service: S,
    stop: CancellationToken,
) where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    while let Some((stream, peer)) = edge::accept(&listener, &stop, "web").await {
        let (tls, service, stop) = (tls.clone(), service.clone(), stop.clone());
        let trusted = trusted_proxies.iter().any(|n| n.contains(&peer.ip()));
        tokio::spawn(async move {
            let mut stream = stream;
            // The first bytes within the deadline (hyper's header timeout
            // only starts at the first byte), and a trusted proxy's header;
            // a header from anyone else is refused.
            let (client, first) = match edge::proxy::read_start(
                &mut stream,
                peer,
                trusted,
                FIRST_BYTES_TIMEOUT,
            )
            .await
            {
                // Silent, or gone: nothing to serve (a trusted proxy's
                // client may still be about to speak).
                Ok((_, first)) if first.is_empty() && !trusted => return,
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "web: connection refused");
                    return;
                }
            };
            let io = edge::Prefixed::new(first, stream);
            let result = match tls {
                None => connection(io, client, false, service, stop).await,
                Some(acceptor) => {
                    let Ok(Ok(io)) =
                        tokio::time::timeout(FIRST_BYTES_TIMEOUT, acceptor.accept(io)).await
                    else {
                        return;
                    };
                    connection(io, client, true, service, stop).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "web: connection ended");
            }
        });
    }
}

/// Serves one connection that arrived elsewhere (the edge listener, with
/// TLS already ended when `tls`), from `client`.
pub fn serve_io<S>(
    io: edge::BoxedIo,
    client: SocketAddr,
    tls: bool,
    service: S,
    stop: CancellationToken,
) where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection(io, client, tls, service, stop).await {
            tracing::debug!(error = %e, "web: connection ended");
        }
    });
}

/// One connection: HTTP/1.1 or HTTP/2, with `Peer` and `Tls` on each
/// request.
async fn connection<I, S>(
    io: I,
    peer: SocketAddr,
    over_tls: bool,
    service: S,
    stop: CancellationToken,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let service = service.map_request(move |req: Request<hyper::body::Incoming>| {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(Peer(peer));
        req.extensions_mut().insert(Tls(over_tls));
        req
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let conn =
        builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::select! {
        r = conn => r,
        () = stop.cancelled() => Ok(()),
    }
}
