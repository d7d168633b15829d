//! Sending a request to a route's upstream and its answer back: streamed
//! both ways (never buffered whole), with the connect, header and idle
//! timeouts, round robin over the route's upstreams, and a clean 502 or
//! 504 page (and an audit event) when an upstream fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, Uri, Version, header};
use axum::response::{IntoResponse, Response};
use config::{HttpConfig, HttpRoute, Upstream};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::Error;
use crate::idle::IdleBody;

/// After a connect failure, an upstream is passed over (while another is
/// up) for this long.
const DOWN_FOR: Duration = Duration::from_secs(10);

type Tls = Client<HttpsConnector<HttpConnector>, Body>;
type H2c = Client<HttpConnector, Body>;

/// The clients of one route.
pub(crate) struct Clients {
    /// HTTP/1.1 to `http://`, and HTTP/1.1 or HTTP/2 (ALPN) to `https://`;
    /// also every protocol switch (WebSocket), which needs HTTP/1.1.
    main: Tls,
    /// HTTP/2 with prior knowledge to `http://` upstreams (`h2c: true`).
    h2c: Option<H2c>,
    /// The next upstream to try.
    next: AtomicUsize,
    /// When each upstream may be tried again after failing to connect.
    down_until: Vec<std::sync::Mutex<Option<Instant>>>,
}

fn connector(timeout: Duration) -> HttpConnector {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    http
}

/// The TLS client settings of a route: its own CA, or the platform's roots.
fn tls_config(route: &HttpRoute) -> Result<rustls::ClientConfig, Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let fail = |reason: String| Error::Upstream {
        route: route.name.clone(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?;
    let config = match &route.upstream_ca {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect())
                .map_err(|e| fail(format!("{}: {e}", path.display())))?;
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| fail(format!("{}: {e}", path.display())))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt as _;
            builder
                .with_platform_verifier()
                .map_err(|e| fail(format!("the platform's CA roots: {e}")))?
                .with_no_client_auth()
        }
    };
    Ok(config)
}

impl Clients {
    /// The clients for `route`.
    pub(crate) fn new(route: &HttpRoute, http: &HttpConfig) -> Result<Clients, Error> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(route)?)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(connector(http.connect_timeout));
        let main = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https);
        let h2c = route.h2c.then(|| {
            Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build(connector(http.connect_timeout))
        });
        Ok(Clients {
            main,
            h2c,
            next: AtomicUsize::new(0),
            down_until: route
                .upstreams
                .iter()
                .map(|_| std::sync::Mutex::new(None))
                .collect(),
        })
    }

    /// The upstream to use: the next in turn that is not marked down, or
    /// the next in turn if all are.
    fn pick<'r>(&self, route: &'r HttpRoute) -> Option<(usize, &'r Upstream)> {
        let n = route.upstreams.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let now = Instant::now();
        let up = |i: usize| {
            self.down_until
                .get(i)
                .and_then(|m| *m.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
                .is_none_or(|until| until <= now)
        };
        let i = (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| up(i))
            .unwrap_or(start);
        route.upstreams.get(i).map(|u| (i, u))
    }

    fn mark_down(&self, i: usize) {
        if let Some(m) = self.down_until.get(i) {
            *m.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(Instant::now() + DOWN_FOR);
        }
    }
}

/// Why no answer came from the upstream.
pub(crate) enum Failure {
    /// Refused, unreachable, TLS failed, or it hung up: 502.
    Bad(String),
    /// No response headers within `header_timeout`: 504.
    Timeout,
}

/// A request ready to go upstream: its method, headers and body are the
/// client's, cleaned (see `headers.rs`); `path_and_query` is the
/// normalized path and the query.
pub(crate) struct Outgoing {
    pub(crate) request: Request<Body>,
    pub(crate) path_and_query: String,
    pub(crate) upgrade: bool,
}

/// Sends `out` to one of the route's upstreams; the upstream's response
/// with its body streamed (and bounded by the idle timeout), or why not.
pub(crate) async fn send(
    clients: &Clients,
    route: &HttpRoute,
    http: &HttpConfig,
    out: Outgoing,
) -> Result<(String, Response<hyper::body::Incoming>), (String, Failure)> {
    let Some((i, upstream)) = clients.pick(route) else {
        return Err((
            String::new(),
            Failure::Bad("the route has no upstream".to_owned()),
        ));
    };
    let name = format!(
        "{}://{}",
        if upstream.tls { "https" } else { "http" },
        upstream.authority
    );
    let mut request = out.request;
    let uri = format!("{name}{}{}", upstream.base_path, out.path_and_query);
    match uri.parse::<Uri>() {
        Ok(uri) => *request.uri_mut() = uri,
        Err(e) => return Err((name, Failure::Bad(format!("bad upstream URI: {e}")))),
    }
    let h2c = clients
        .h2c
        .as_ref()
        .filter(|_| !upstream.tls && !out.upgrade);
    // The upstream's own Host unless the route keeps the browser's (which
    // is already in the request). HTTP/2 has no Host header: the
    // authority travels in the URI, so it is dropped there.
    if !route.preserve_host
        && let Ok(v) = HeaderValue::from_str(&upstream.authority)
    {
        request.headers_mut().insert(header::HOST, v);
    }
    if h2c.is_some() {
        // HTTP/2 names the host in :authority (the upstream's, from the
        // URI); a kept browser Host goes along as a header.
        if !route.preserve_host {
            request.headers_mut().remove(header::HOST);
        }
        *request.version_mut() = Version::HTTP_2;
    } else {
        *request.version_mut() = Version::HTTP_11;
    }
    let idle = http.idle_timeout;
    let (parts, body) = request.into_parts();
    let body_sent = (!http_body::Body::is_end_stream(&body)).then_some(());
    let mut body = IdleBody::new(body, idle);
    let body_sent = body_sent.map(|()| body.ended());
    let request = Request::from_parts(parts, Body::new(body));
    let response = async {
        match h2c {
            Some(c) => c.request(request).await,
            None => clients.main.request(request).await,
        }
    };
    let sent = headers_within(response, body_sent, http.header_timeout).await;
    match sent {
        Ok(Ok(response)) => Ok((name, response)),
        Ok(Err(e)) => {
            if e.is_connect() {
                clients.mark_down(i);
            }
            Err((name, Failure::Bad(error_chain(&e))))
        }
        Err(_) => Err((name, Failure::Timeout)),
    }
}

/// `response`, given `limit` for its headers once the request body (if
/// any) is all sent: an upload's duration is bounded by the idle timeout
/// of its body, not by the wait for headers.
async fn headers_within<F: std::future::Future>(
    response: F,
    body_sent: Option<tokio::sync::oneshot::Receiver<()>>,
    limit: Duration,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    tokio::pin!(response);
    if let Some(sent) = body_sent {
        tokio::select! {
            r = &mut response => return Ok(r),
            // Sent, or the body was dropped (the request failed or the
            // upstream answered early): the clock starts either way.
            _ = sent => {}
        }
    }
    tokio::time::timeout(limit, response).await
}

/// An error and its causes on one line, without secrets (hyper's errors
/// name addresses and reasons, never headers or bodies).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.chars().take(300).collect()
}

/// The upstream's answer for the client: hop-by-hop headers removed, the
/// body streamed through the idle timeout.
pub(crate) fn to_client(response: Response<hyper::body::Incoming>, idle: Duration) -> Response {
    let (mut parts, body) = response.into_parts();
    crate::headers::to_client(&mut parts.headers, false);
    Response::from_parts(parts, Body::new(IdleBody::new(body, idle)))
}

/// The page (or JSON) for a failed upstream.
pub(crate) fn failed(html: bool, failure: &Failure) -> Response {
    let (status, title, text) = match failure {
        Failure::Bad(_) => (
            StatusCode::BAD_GATEWAY,
            "Bad gateway",
            "The application behind this address is not answering. Try again in a moment.",
        ),
        Failure::Timeout => (
            StatusCode::GATEWAY_TIMEOUT,
            "Gateway timeout",
            "The application behind this address took too long to answer.",
        ),
    };
    if html {
        web_front::html::message(status, title, text)
    } else {
        (
            status,
            axum::Json(serde_json::json!({ "error": title.to_ascii_lowercase(), "message": text })),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::headers_within;
    use std::time::Duration;

    const LIMIT: Duration = Duration::from_secs(10);

    /// An upstream that answers 3 limits after the request started.
    async fn slow_answer() -> u8 {
        tokio::time::sleep(LIMIT * 3).await;
        7
    }

    #[tokio::test(start_paused = true)]
    async fn the_header_clock_starts_when_the_body_is_sent() {
        // A long upload: the body is sent after 2.5 limits, the answer
        // comes half a limit later.
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            tokio::time::sleep(LIMIT * 5 / 2).await;
            let _ = tx.send(());
        });
        assert_eq!(headers_within(slow_answer(), Some(rx), LIMIT).await, Ok(7));
        // Without a body, the same answer is too late.
        assert!(headers_within(slow_answer(), None, LIMIT).await.is_err());
        // A body that was sent at once leaves the limit as it was.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = tx.send(());
        assert!(
            headers_within(slow_answer(), Some(rx), LIMIT)
                .await
                .is_err()
        );
    }
}
