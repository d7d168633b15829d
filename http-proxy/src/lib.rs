//! The identity-aware HTTP reverse proxy (issue 14): web apps behind the
//! same sign-in and the same policy language as SSH routes.
//!
//! It is served on the web listener beside the web app: [`Dispatch`] sends
//! a request whose host is an HTTP route's to the [`Proxy`], and anything
//! else to the web app. For each request the proxy
//! 1. finds the route by host and path prefix (the path normalized first,
//!    `path.rs`);
//! 2. reads the browser session of this host from the state database, so
//!    a sign-out or revocation applies to the next request; without one,
//!    a browser is sent to sign in through the web app and back with a
//!    one-time code (`signin.rs`), and an API client gets a 401;
//! 3. asks the route's policy (`policy::lang::evaluate_http`) with the
//!    user, the client address, the time, the method, the path and the
//!    request headers it names; a denial is a 403 and `http.denied`;
//! 4. forwards the request with the user's identity (`headers.rs`: an
//!    ES256 assertion signed by `assertion.rs`, optional plain headers;
//!    every client-sent copy stripped), streaming both bodies
//!    (`forward.rs`), or passes a WebSocket through (`upgrade.rs`).
//!
//! **Invariants:** no cookie, token, assertion or body reaches a log; the
//! upstream never sees a client-supplied identity header or our cookies;
//! every request is authorized against the policy and session in force
//! when it arrives.

mod assertion;
mod error;
mod forward;
mod headers;
mod idle;
mod path;
mod signin;
mod trace;
mod upgrade;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use config::{HttpConfig, HttpRoute};
use policy::lang::{HttpRequest, Timestamp, evaluate_http};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tracing::Instrument as _;
use web_front::html::message;
use web_front::session::{identity_of, short};
use web_front::{Peer, Tls};

pub use assertion::{generate_pem, rotate};
pub use error::Error;

/// Where upstreams fetch the keys that verify the identity assertion, on
/// every host the listener serves.
pub const JWKS_PATH: &str = "/.well-known/gatehouse/jwks.json";

/// The routes in force and their clients.
pub(crate) struct Live {
    http: Arc<HttpConfig>,
    clients: HashMap<String, Arc<forward::Clients>>,
}

impl Live {
    fn new(http: HttpConfig) -> Result<Live, Error> {
        let mut clients = HashMap::new();
        for route in &http.routes {
            clients.insert(
                route.name.clone(),
                Arc::new(forward::Clients::new(route, &http)?),
            );
        }
        Ok(Live {
            http: Arc::new(http),
            clients,
        })
    }

    /// Whether some route is served on `host`.
    fn serves(&self, host: &str) -> bool {
        self.http.routes.iter().any(|r| r.host == host)
    }

    /// The route for `host` and a normalized `path`: the longest prefix.
    fn route(&self, host: &str, path: &str) -> Option<&Arc<HttpRoute>> {
        self.http
            .routes
            .iter()
            .find(|r| r.host == host && path::under(path, &r.path_prefix))
    }

    pub(crate) fn route_named(&self, name: &str) -> Option<&Arc<HttpRoute>> {
        self.http.routes.iter().find(|r| r.name == name)
    }
}

/// What the proxy keeps of a browser session between its requests: its
/// identity as the policy sees it (the claims parsed once) and the
/// assertions signed for it, by route. A session's identity never changes
/// after sign-in, and the session itself is still read from the state
/// database on every request, so nothing here outlives a sign-out.
struct Vouched {
    identity: Arc<policy::lang::Identity>,
    /// Route name → (assertion, its `exp`, the key that signed it).
    assertions: HashMap<String, (Arc<str>, u64, String)>,
}

/// Sessions remembered at most; past it the memory starts over.
const VOUCHED_MAX: usize = 10_000;

/// The proxy: the routes in force, the state database, the signer.
pub struct Proxy {
    live: RwLock<Arc<Live>>,
    pub(crate) store: Arc<dyn state::Store>,
    signer: assertion::Signer,
    /// The web app's URL: where browsers sign in, and the assertion's `iss`.
    pub(crate) public_url: String,
    trusted_proxies: Vec<ipnet::IpNet>,
    pub(crate) upgrades: Arc<upgrade::Registry>,
    vouched: std::sync::Mutex<HashMap<String, Vouched>>,
    /// `gatehouse_http_requests_total`, by route and status.
    metrics: Arc<telemetry::Metrics>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// The proxy for `http` (the routes), signing in through the web app at
    /// `public_url`, believing `X-Forwarded-For` from `trusted_proxies`.
    /// Opens (or makes) the signing keys and starts the watcher of open
    /// WebSockets, which runs until `stop`.
    pub fn start(
        http: HttpConfig,
        public_url: &str,
        trusted_proxies: Vec<ipnet::IpNet>,
        store: Arc<dyn state::Store>,
        metrics: Arc<telemetry::Metrics>,
        stop: &CancellationToken,
    ) -> Result<Arc<Proxy>, Error> {
        let signer = assertion::Signer::open(&http.signing_key)?;
        let proxy = Arc::new(Proxy {
            live: RwLock::new(Arc::new(Live::new(http)?)),
            store,
            signer,
            public_url: public_url.to_owned(),
            trusted_proxies,
            upgrades: Arc::default(),
            vouched: std::sync::Mutex::default(),
            metrics,
        });
        tokio::spawn(upgrade::watch(Arc::downgrade(&proxy), stop.clone()));
        Ok(proxy)
    }

    /// The identity of a browser session, parsed once per session.
    fn identity(&self, session: &state::WebSession) -> Arc<policy::lang::Identity> {
        let mut vouched = self.vouched.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = vouched.get(&session.id_hash) {
            return Arc::clone(&v.identity);
        }
        if vouched.len() >= VOUCHED_MAX {
            vouched.clear();
        }
        let identity = Arc::new(identity_of(session));
        vouched.insert(
            session.id_hash.clone(),
            Vouched {
                identity: Arc::clone(&identity),
                assertions: HashMap::new(),
            },
        );
        identity
    }

    /// An assertion for `session` at `route`: one signed earlier while it
    /// has at least half its lifetime left, else a new one. Signing is the
    /// most expensive step of a request.
    fn assertion(
        &self,
        session: &state::WebSession,
        route: &str,
        ttl_s: u64,
    ) -> Result<Arc<str>, Error> {
        let now = assertion::unix_now();
        // A rotated key signs from the next request on.
        let kid = self.signer.current_kid().unwrap_or_default();
        {
            let vouched = self.vouched.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((token, exp, signed_by)) = vouched
                .get(&session.id_hash)
                .and_then(|v| v.assertions.get(route))
                && exp.saturating_sub(now) * 2 >= ttl_s
                && *signed_by == kid
            {
                return Ok(Arc::clone(token));
            }
        }
        let exp = now.saturating_add(ttl_s);
        let token: Arc<str> = self
            .signer
            .sign(&assertion::Claims {
                iss: &self.public_url,
                aud: route,
                sub: &session.sub,
                email: session.email.as_deref(),
                groups: &session.groups,
                iat: now,
                exp,
            })?
            .into();
        let mut vouched = self.vouched.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = vouched.get_mut(&session.id_hash) {
            v.assertions
                .insert(route.to_owned(), (Arc::clone(&token), exp, kid));
        }
        Ok(token)
    }

    pub(crate) fn live(&self) -> Arc<Live> {
        Arc::clone(&self.live.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts a reloaded configuration's routes in force for the next
    /// request, and re-checks open WebSockets against them. Settings that
    /// cannot change while running (the signing key file) keep theirs.
    pub fn reload(&self, http: HttpConfig) -> Result<(), Error> {
        let live = Arc::new(Live::new(http)?);
        *self.live.write().unwrap_or_else(PoisonError::into_inner) = live;
        self.upgrades.recheck(self);
        Ok(())
    }

    /// Whether `origin` (`scheme://host[:port]`) is an HTTP route's: where
    /// the web app may send a browser back to with a hand-off code.
    pub fn serves_origin(&self, origin: &str) -> bool {
        self.live()
            .http
            .routes
            .iter()
            .any(|r| r.origin.eq_ignore_ascii_case(origin))
    }

    /// The service for the web listener: route hosts here, anything else
    /// to `fallback` (the web app).
    pub fn dispatch(self: &Arc<Self>, fallback: axum::Router) -> Dispatch {
        Dispatch {
            proxy: Some(Arc::clone(self)),
            fallback,
        }
    }

    /// One request on a route's host, counted by its route (a configured
    /// name; requests that match no route are not counted) and status.
    async fn handle(self: Arc<Self>, request: Request<Body>, host: String) -> Response {
        let mut route = None;
        let metrics = Arc::clone(&self.metrics);
        let response = self.serve_request(request, host, &mut route).await;
        if let Some(route) = route {
            metrics.http_request(&route, response.status().as_u16());
        }
        response
    }

    /// [`Proxy::handle`]'s phases; `route_name` is set once a route
    /// matches.
    async fn serve_request(
        self: Arc<Self>,
        request: Request<Body>,
        host: String,
        route_name: &mut Option<String>,
    ) -> Response {
        let peer = request
            .extensions()
            .get::<Peer>()
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |p| p.0);
        let tls = request.extensions().get::<Tls>().is_some_and(|t| t.0);
        let client = web_front::client_addr(peer, request.headers(), &self.trusted_proxies);
        let html = headers::wants_html(request.method(), request.headers());
        let Some(path) = path::normalize(request.uri().path()) else {
            return message(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The path is not valid.",
            );
        };
        let live = self.live();
        let Some(route) = live.route(&host, &path).cloned() else {
            return message(
                StatusCode::NOT_FOUND,
                "Not found",
                "No application is served at this address.",
            );
        };
        *route_name = Some(route.name.clone());
        tracing::Span::current().record("route", route.name.as_str());
        if path == signin::CALLBACK {
            return signin::callback(
                &self,
                &route,
                &host,
                request.headers(),
                request.uri().query(),
                client,
            )
            .await;
        }
        let path_and_query = match request.uri().query() {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        let session =
            match web_front::session::current(self.store.as_ref(), request.headers()).await {
                Ok(Some(s)) => s,
                Ok(None) => {
                    return signin::required(
                        &self,
                        &route,
                        request.method(),
                        request.headers(),
                        &path_and_query,
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "proxy: state database");
                    return message(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Unavailable",
                        "The state database is unavailable. Try again in a moment.",
                    );
                }
            };
        let identity = self.identity(&session);
        let label = identity.label().to_owned();
        let web_session = short(&session.id_hash);
        let named: Vec<(&str, &str)> = route
            .policy
            .header_names()
            .iter()
            .flat_map(|name| {
                request
                    .headers()
                    .get_all(name.as_ref())
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .map(move |v| (name.as_ref(), v))
            })
            .collect();
        let now = Timestamp::try_from(SystemTime::now()).unwrap_or(Timestamp::UNIX_EPOCH);
        let method = request.method().as_str().to_owned();
        let decision = evaluate_http(
            &route.policy,
            &HttpRequest {
                identity: &identity,
                source: client,
                now,
                method: &method,
                path: &path,
                headers: &named,
            },
        );
        if !decision.allowed {
            audit::Event::HttpDenied {
                route: route.name.clone(),
                method,
                path,
                identity: label,
                web_session,
                rule: decision.rule.unwrap_or("").to_owned(),
                reason: decision.reason.to_owned(),
                peer: client.to_string(),
            }
            .emit();
            return forbidden(html, decision.reason);
        }
        if tracing::enabled!(target: "audit", tracing::Level::DEBUG) {
            audit::Event::HttpRequest {
                route: route.name.clone(),
                method: method.clone(),
                path: path.clone(),
                identity: label.clone(),
                web_session: web_session.clone(),
                rule: decision.rule.unwrap_or("").to_owned(),
                peer: client.to_string(),
            }
            .emit();
        }
        // What a reload re-checks an open WebSocket against; the headers
        // are copied only for a protocol switch.
        let upgrading = headers::is_upgrade(request.headers());
        let facts = upgrade::Facts {
            identity,
            source: client,
            method,
            path,
            headers: if upgrading {
                named
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect()
            } else {
                Vec::new()
            },
        };
        self.forward(
            &live,
            &route,
            request,
            path_and_query,
            &session,
            facts,
            client,
            peer,
            tls,
            html,
        )
        .await
    }

    /// Sends an authorized request upstream and its answer back.
    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        live: &Live,
        route: &Arc<HttpRoute>,
        mut request: Request<Body>,
        path_and_query: String,
        session: &state::WebSession,
        facts: upgrade::Facts,
        client: IpAddr,
        peer: SocketAddr,
        tls: bool,
        html: bool,
    ) -> Response {
        let Some(clients) = live.clients.get(&route.name) else {
            return message(StatusCode::NOT_FOUND, "Not found", "No such application.");
        };
        let assertion =
            match self.assertion(session, &route.name, live.http.assertion_ttl.as_secs()) {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(error = %e, "proxy: cannot sign the identity assertion");
                    return message(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Error",
                        "The gateway cannot vouch for you right now.",
                    );
                }
            };
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()))
            .unwrap_or_default();
        let upgrade = headers::is_upgrade(request.headers());
        let trusted_chain = self
            .trusted_proxies
            .iter()
            .any(|n| n.contains(&peer.ip()))
            .then(|| {
                request
                    .headers()
                    .get_all("x-forwarded-for")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect::<Vec<_>>()
                    .join(", ")
            });
        let proto = if tls || route.origin.starts_with("https://") {
            "https"
        } else {
            "http"
        };
        let user = session.email.as_deref().unwrap_or(&session.sub);
        headers::to_upstream(
            request.headers_mut(),
            &headers::Forwarding {
                client,
                trusted_chain,
                proto,
                host: &host,
                assertion: &assertion,
                identity: route.identity_headers.then_some((
                    user,
                    session.email.as_deref(),
                    session.groups.as_slice(),
                )),
            },
            upgrade,
        );
        trace::inject_upstream(request.headers_mut());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let method = request.method().as_str().to_owned();
        let path = facts.path.clone();
        let sent = forward::send(
            clients,
            route,
            &live.http,
            forward::Outgoing {
                request,
                path_and_query,
                upgrade,
            },
        )
        .await;
        let (upstream, mut response) = match sent {
            Ok(v) => v,
            Err((upstream, failure)) => {
                let error = match &failure {
                    forward::Failure::Bad(e) => e.clone(),
                    forward::Failure::Timeout => "no response headers in time".to_owned(),
                };
                audit::Event::HttpUpstreamFailed {
                    route: route.name.clone(),
                    upstream,
                    method,
                    path,
                    error,
                    peer: client.to_string(),
                }
                .emit();
                return forward::failed(html, &failure);
            }
        };
        let _ = upstream;
        match client_upgrade {
            Some(client_side) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
                let upstream_side = hyper::upgrade::on(&mut response);
                let registry = Arc::clone(&self.upgrades);
                let holder = upgrade::Holder {
                    session_hash: session.id_hash.clone(),
                    identity_label: facts.identity.label().to_owned(),
                    route: route.name.clone(),
                    facts,
                };
                let idle = live.http.idle_timeout;
                tokio::spawn(async move {
                    match tokio::join!(client_side, upstream_side) {
                        (Ok(c), Ok(u)) => upgrade::pump(registry, holder, c, u, idle).await,
                        (Err(e), _) | (_, Err(e)) => {
                            tracing::debug!(error = %e, "proxy: an upgrade did not complete");
                        }
                    }
                });
                let (mut parts, _) = response.into_parts();
                headers::to_client(&mut parts.headers, true);
                Response::from_parts(parts, Body::empty())
            }
            _ => forward::to_client(response, live.http.idle_timeout),
        }
    }

    /// The JWKS document.
    fn jwks(&self) -> Response {
        let mut response = (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            self.signer.jwks().to_string(),
        )
            .into_response();
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        );
        response
    }
}

/// A 403 with the policy's reason.
fn forbidden(html: bool, reason: &str) -> Response {
    if html {
        message(
            StatusCode::FORBIDDEN,
            "Access denied",
            &format!("Access denied: {reason}."),
        )
    } else {
        (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({ "error": "forbidden", "reason": reason })),
        )
            .into_response()
    }
}

/// The host a request is for: HTTP/2's `:authority`, else `Host`;
/// lowercase, without the port or a final dot.
fn request_host(request: &Request<Body>) -> Option<String> {
    let raw = request
        .uri()
        .authority()
        .map(|a| a.host().to_owned())
        .or_else(|| {
            let host = request.headers().get(header::HOST)?.to_str().ok()?;
            let host = match host.rsplit_once(':') {
                Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
                _ => host,
            };
            Some(host.to_owned())
        })?;
    Some(raw.trim_end_matches('.').to_ascii_lowercase())
}

/// The web listener's service: the proxy's routes by host, the JWKS on
/// every host, and the web app for the rest.
#[derive(Clone)]
pub struct Dispatch {
    proxy: Option<Arc<Proxy>>,
    fallback: axum::Router,
}

impl Dispatch {
    /// The web app alone, with no HTTP routes.
    pub fn web_only(fallback: axum::Router) -> Dispatch {
        Dispatch {
            proxy: None,
            fallback,
        }
    }
}

impl tower::Service<Request<Body>> for Dispatch {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if let Some(proxy) = &self.proxy {
            if request.uri().path() == JWKS_PATH {
                let response = proxy.jwks();
                return Box::pin(async move { Ok(response) });
            }
            if let Some(host) = request_host(&request)
                && proxy.live().serves(&host)
            {
                let proxy = Arc::clone(proxy);
                let span = trace::request_span(request.method().as_str());
                trace::continue_incoming(&span, request.headers());
                return Box::pin(
                    async move {
                        let response = proxy.handle(request, host).await;
                        tracing::Span::current().record("status", response.status().as_u16());
                        Ok(response)
                    }
                    .instrument(span),
                );
            }
        }
        let fallback = self.fallback.clone();
        Box::pin(async move { fallback.oneshot(request).await })
    }
}
