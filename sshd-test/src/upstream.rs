//! A real upstream web app for the HTTP proxy's tests and benchmark: it runs
//! on a free loopback port and reports exactly what it received.
//!
//! One port serves HTTP/1.1 and cleartext HTTP/2 with prior knowledge (h2c),
//! told apart by the connection preface. The endpoints:
//!
//! | Request | Answer |
//! |---|---|
//! | `/ws` with a WebSocket upgrade | echoes every text and binary message; closes on close |
//! | `GET /stream/download?bytes=N` | exactly N bytes of [`pattern_byte`], generated chunk by chunk |
//! | `POST`/`PUT /stream/upload` | `{"bytes": N, "sha256": "hex"}` of the body, streamed |
//! | `GET /slow?ms=N` | `ok`, after waiting N ms before sending the headers |
//! | `/set-cookie` (any method) | the echo, plus `Set-Cookie: upstream=1; Path=/` |
//! | anything else | the echo (below) |
//!
//! The echo is 200 with JSON:
//!
//! ```json
//! {"method": "POST", "path": "/p?q=1", "version": "HTTP/1.1",
//!  "authority": "127.0.0.1:8080",
//!  "headers": [["host", "127.0.0.1:8080"], ["x-a", "1"], ["x-a", "2"]],
//!  "body_bytes": 5,
//!  "assertion": {"present": true, "valid": false, "error": "expired",
//!                "kid": "k1", "claims": {"sub": "..."}}}
//! ```
//!
//! `headers` holds every header with its name lowercased; the values of one
//! name stay in the order received, and names appear in the order first seen
//! (hyper's header map does not keep the interleaving of different names).
//! `authority` is the URI authority (HTTP/2 `:authority`, or an absolute-form
//! HTTP/1.1 target), else the `Host` header, else null. `assertion.error` is
//! null exactly when `valid` is true; `claims` is the decoded payload
//! whenever it is a JSON object, even for an invalid token, so a failing test
//! shows what the proxy sent, and `kid` is the JOSE header's. Every response
//! carries `x-upstream-version` with the request's HTTP version.
//!
//! The assertion contract is in [`AssertionError`]'s variants and
//! `upstream/assertion.rs`; the JWKS cache is `upstream/jwks.rs`.

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Router, middleware};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

mod assertion;
mod jwks;
#[cfg(test)]
mod tests;

pub use assertion::AssertionError;
use assertion::{Expected, Token};
use jwks::Jwks;

/// The request header that carries the proxy's signed identity assertion.
pub const ASSERTION_HEADER: &str = "x-gatehouse-assertion";

/// The response header that names the HTTP version the upstream saw.
pub const VERSION_HEADER: &str = "x-upstream-version";

/// What the upstream checks in `X-Gatehouse-Assertion`.
#[derive(Debug, Clone, Default)]
pub struct UpstreamOptions {
    /// Verify `X-Gatehouse-Assertion` against this JWKS URL (fetched on first
    /// use, fetched again when a token names an unknown `kid`, at most once a
    /// second); `None` = don't verify, and every assertion reports
    /// `"verification not configured"`.
    pub jwks_url: Option<String>,
    /// The `iss` a valid assertion must carry; `None` accepts any.
    pub issuer: Option<String>,
    /// The `aud` a valid assertion must carry; `None` accepts any.
    pub audience: Option<String>,
}

impl UpstreamOptions {
    /// Reports a problem that would make [`serve`] or [`Upstream::start`] panic:
    /// today, a `jwks_url` that is not an `http://` URL.
    pub fn validate(&self) -> Result<(), String> {
        self.jwks_url
            .as_deref()
            .map_or(Ok(()), |url| Jwks::new(url).map(drop))
    }
}

/// A running upstream on `127.0.0.1`, served from its own thread and tokio
/// runtime so sync and async tests alike can use it.
///
/// Dropping it stops the server: open connections (including WebSockets and
/// requests in flight) are dropped, not drained, and the thread is joined.
pub struct Upstream {
    /// The address it listens on, `127.0.0.1:PORT`.
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub url: String,
    /// State shared with the server, for [`Upstream::requests`].
    shared: Arc<Shared>,
    /// Dropping (or sending on) this stops the accept loop.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The server's thread, joined on drop.
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Starts the server on `127.0.0.1:0` on its own thread with its own
    /// tokio runtime; returns once it accepts connections.
    ///
    /// Panics if the options are invalid (see [`UpstreamOptions::validate`])
    /// or the socket or thread cannot be created.
    pub fn start(options: UpstreamOptions) -> Upstream {
        let shared = Arc::new(Shared::new(options).unwrap_or_else(|e| panic!("upstream: {e}")));
        // Bound and listening before `start` returns, so a client may connect
        // at once: the kernel queues connections until the loop accepts them.
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("upstream: bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("upstream: set listener non-blocking");
        let addr = listener.local_addr().expect("upstream: local_addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("upstream-{}", addr.port()))
            .spawn({
                let shared = Arc::clone(&shared);
                move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("upstream: build tokio runtime");
                    runtime.block_on(async move {
                        let listener = TcpListener::from_std(listener)
                            .expect("upstream: register listener with tokio");
                        accept_loop(listener, shared, async {
                            let _ = stopped.await;
                        })
                        .await;
                    });
                    // Dropping the runtime here cancels every connection and
                    // WebSocket task, so nothing outlives the `Upstream`.
                }
            })
            .expect("upstream: spawn server thread");
        Upstream {
            addr,
            url: format!("http://{addr}"),
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// How many requests it has served (counted as each request arrives,
    /// so tests can check that a request never reached the upstream).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // A panic on the server thread was already printed; re-raising it
            // here could abort a test that is itself unwinding.
            let _ = thread.join();
        }
    }
}

/// Serves the upstream on `listener` until `shutdown` completes, then drops
/// every open connection; for callers that bring their own runtime (the
/// `upstream` example). The caller binds, so it chooses the port.
///
/// Panics if the options are invalid (see [`UpstreamOptions::validate`]).
pub async fn serve(
    listener: TcpListener,
    options: UpstreamOptions,
    shutdown: impl Future<Output = ()>,
) {
    let shared = Shared::new(options).unwrap_or_else(|e| panic!("upstream: {e}"));
    accept_loop(listener, Arc::new(shared), shutdown).await;
}

/// The byte at `offset` of every `/stream/download` body: `offset % 251`.
///
/// 251 is prime, so a chunk dropped, repeated or reordered by the proxy
/// shows up as a mismatch instead of lining up again.
pub fn pattern_byte(offset: u64) -> u8 {
    // The remainder is below 251, so the cast keeps it whole.
    (offset % 251) as u8
}

/// State shared by every connection.
struct Shared {
    /// Requests seen so far, for [`Upstream::requests`].
    requests: AtomicU64,
    /// The key cache, when assertions are verified.
    jwks: Option<Jwks>,
    /// The issuer and audience a valid assertion must name.
    expected: Expected,
}

impl Shared {
    fn new(options: UpstreamOptions) -> Result<Shared, String> {
        Ok(Shared {
            requests: AtomicU64::new(0),
            jwks: options.jwks_url.as_deref().map(Jwks::new).transpose()?,
            expected: Expected {
                issuer: options.issuer,
                audience: options.audience,
            },
        })
    }
}

/// Accepts connections until `shutdown`, serving each on its own task.
///
/// The tasks live in a `JoinSet`, so returning (which drops it) aborts
/// them: a proxy's pooled keep-alive connections must not delay a test.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
) {
    let app = router(shared);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // RFC 8441 extended CONNECT, so WebSockets work over HTTP/2 as well.
    builder.http2().enable_connect_protocol();
    let builder = Arc::new(builder);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let service = TowerToHyperService::new(app.clone());
                    let builder = Arc::clone(&builder);
                    connections.spawn(async move {
                        // A connection error (a reset, a malformed request) ends
                        // only that connection; hyper already answered if it could.
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await;
                    });
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
}

/// The routes; every request first passes [`count_and_tag`].
fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/ws", any(websocket))
        .route("/stream/download", get(download).fallback(echo))
        .route("/stream/upload", post(upload).put(upload).fallback(echo))
        .route("/slow", get(slow).fallback(echo))
        .route("/set-cookie", any(set_cookie))
        .fallback(echo)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            count_and_tag,
        ))
        .with_state(shared)
}

/// Counts the request and adds `x-upstream-version` to the response.
async fn count_and_tag(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let version = request.version();
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        VERSION_HEADER,
        HeaderValue::from_static(version_name(version)),
    );
    response
}

/// `HTTP/1.1`, `HTTP/2.0` and so on, as the echo reports them.
fn version_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "unknown",
    }
}

/// The default handler: answers with what was received (module docs).
async fn echo(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    match describe(&shared, request).await {
        Ok(report) => json_response(StatusCode::OK, &report),
        Err(response) => response,
    }
}

/// `/set-cookie`: the echo, plus a cookie the proxy must pass back.
async fn set_cookie(state: State<Arc<Shared>>, request: Request) -> Response {
    let mut response = echo(state, request).await;
    response.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("upstream=1; Path=/"),
    );
    response
}

/// Builds the echo JSON, reading (and counting) the body as a stream.
async fn describe(shared: &Shared, request: Request) -> Result<Value, Response> {
    let (parts, body) = request.into_parts();
    let body_bytes = count_body(body, |_| {}).await?;
    let headers: Vec<Value> = parts
        .headers
        .iter()
        .map(|(name, value)| json!([name.as_str(), String::from_utf8_lossy(value.as_bytes())]))
        .collect();
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .map(|host| String::from_utf8_lossy(host.as_bytes()).into_owned())
        });
    Ok(json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path_and_query().map_or(parts.uri.path(), |pq| pq.as_str()),
        "version": version_name(parts.version),
        "authority": authority,
        "headers": headers,
        "body_bytes": body_bytes,
        "assertion": check_assertion(shared, &parts.headers).await,
    }))
}

/// The `assertion` object of the echo JSON.
async fn check_assertion(shared: &Shared, headers: &HeaderMap) -> Value {
    let mut values = headers.get_all(ASSERTION_HEADER).iter();
    let (first, second) = (values.next(), values.next());
    let Some(first) = first else {
        return assertion_report(false, None, Err(AssertionError::Missing));
    };
    if second.is_some() {
        return assertion_report(true, None, Err(AssertionError::Duplicate));
    }
    let token = match first.to_str().map(Token::decode) {
        Ok(Ok(token)) => token,
        Ok(Err(error)) => return assertion_report(true, None, Err(error)),
        Err(_) => return assertion_report(true, None, Err(AssertionError::Malformed)),
    };
    let verdict = verify(shared, &token).await;
    assertion_report(true, Some(&token), verdict)
}

/// Checks a decoded token: header, key, signature, then claims.
async fn verify(shared: &Shared, token: &Token) -> Result<(), AssertionError> {
    let jwks = shared.jwks.as_ref().ok_or(AssertionError::NotConfigured)?;
    let kid = token.check_header()?;
    let key = jwks.key(kid).await?;
    token.verify_signature(&key)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64());
    token.check_claims(&shared.expected, now)
}

fn assertion_report(
    present: bool,
    token: Option<&Token>,
    verdict: Result<(), AssertionError>,
) -> Value {
    json!({
        "present": present,
        "valid": verdict.is_ok(),
        "error": verdict.err().map(|e| e.to_string()),
        "kid": token.and_then(Token::kid),
        "claims": token.and_then(|t| t.claims.clone()),
    })
}

/// Reads a body to its end without keeping it, handing each chunk to
/// `each`; returns the byte count, or a 400 if the client broke off.
async fn count_body(body: Body, mut each: impl FnMut(&[u8])) -> Result<u64, Response> {
    let mut body = body;
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("reading the request body: {e}\n"),
            )
                .into_response()
        })?;
        if let Some(data) = frame.data_ref() {
            each(data);
            total += data.len() as u64;
        }
    }
    Ok(total)
}

/// `POST|PUT /stream/upload`: the body's length and SHA-256, streamed.
async fn upload(request: Request) -> Response {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let bytes = match count_body(request.into_body(), |chunk| digest.update(chunk)).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let sha256: String = digest
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    json_response(StatusCode::OK, &json!({"bytes": bytes, "sha256": sha256}))
}

/// `GET /stream/download?bytes=N`: N bytes of [`pattern_byte`].
async fn download(uri: Uri) -> Response {
    let Some(bytes) = query_number(&uri, "bytes") else {
        return (StatusCode::BAD_REQUEST, "want ?bytes=N\n").into_response();
    };
    let mut response = Response::new(Body::new(PatternBody { remaining: bytes }));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes));
    response
}

/// `GET /slow?ms=N`: sleeps before answering, for the proxy's header timeout.
async fn slow(uri: Uri) -> Response {
    let Some(ms) = query_number(&uri, "ms") else {
        return (StatusCode::BAD_REQUEST, "want ?ms=N\n").into_response();
    };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "ok".into_response()
}

/// `/ws`: a WebSocket echo; a request without an upgrade gets the echo JSON.
async fn websocket(
    state: State<Arc<Shared>>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    request: Request,
) -> Response {
    match upgrade {
        Ok(upgrade) => upgrade.on_upgrade(echo_messages),
        // An attempted upgrade that is wrong (a missing key, a bad version) is
        // refused, so a proxy that mangles upgrades fails loudly.
        Err(rejection)
            if request.headers().contains_key(header::UPGRADE)
                || request.method() == Method::CONNECT =>
        {
            rejection.into_response()
        }
        Err(_) => echo(state, request).await,
    }
}

/// Echoes text and binary messages unchanged until the peer closes.
///
/// On a close frame tungstenite queues the reply itself and sends it on the
/// next read, so the loop just keeps reading until the stream ends.
async fn echo_messages(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        let echo = match message {
            Message::Text(_) | Message::Binary(_) => message,
            // Pings are answered by tungstenite; pongs and closes need nothing.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => continue,
        };
        if socket.send(echo).await.is_err() {
            break;
        }
    }
}

/// Parses `name=N` from the query string.
fn query_number(uri: &Uri, name: &str) -> Option<u64> {
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| value.parse().ok())
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut response = (status, format!("{value}\n")).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A body of `remaining` pattern bytes, produced one chunk per poll so a
/// download of any size takes one shared chunk of memory.
struct PatternBody {
    /// Bytes still to send.
    remaining: u64,
}

/// The bytes of one chunk: a multiple of 251 long, so every chunk starts at
/// pattern phase 0 and can be the same shared buffer.
fn pattern_chunk() -> &'static Bytes {
    static CHUNK: OnceLock<Bytes> = OnceLock::new();
    CHUNK.get_or_init(|| (0..251 * 256).map(pattern_byte).collect::<Vec<u8>>().into())
}

impl http_body::Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let chunk = pattern_chunk();
        let len = usize::try_from(self.remaining).map_or(chunk.len(), |r| r.min(chunk.len()));
        self.remaining -= len as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk.slice(..len)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
