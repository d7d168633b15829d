//! The web app: auditors sign in with the identity provider and use the
//! recordings in a browser.
//!
//! What is here so far is the ground the pages stand on:
//! - serving ([`serve`]): plain HTTP behind a TLS proxy or TLS with rustls,
//!   security headers on every response (a CSP without inline script,
//!   `frame-ancestors 'none'`), `/healthz` and `/readyz`;
//! - sign-in (`auth.rs`): the authorization-code flow with PKCE against the
//!   configured IdP, one state cookie per attempt so two tabs can sign in
//!   at once, sessions stored server-side (`state::WebSession`) behind an
//!   opaque `__Host-` cookie, sign-out as a POST with a CSRF token, and
//!   revocation through `gatehouse logins revoke --user`;
//! - the client address (`peer.rs`), taken from `X-Forwarded-For` only when
//!   the connection comes from a trusted proxy.
//!
//! **Invariant:** no cookie, token, code or verifier is ever logged or put
//! in an error; audit events name a browser session by a prefix of its
//! stored hash.

mod access;
mod assets;
mod auth;
mod error;
mod handoff;
pub mod indexer;
mod limits;
mod link;
mod live;
mod pages;
mod player;
pub mod recording;
mod search;
mod serve;
mod sessions;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use error::Error;
pub use serve::{router, start};

/// How long a sign-in may take between the redirect to the IdP and the
/// callback.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(600);

/// What every request handler shares.
pub struct App {
    /// The `web:` section.
    pub config: config::WebConfig,
    /// The identity provider, discovered on first use.
    pub idp: identity::LazyIdp,
    /// The state database: web sessions, sign-ins, the recording index.
    pub store: Arc<dyn state::Store>,
    /// The recordings (storage and index).
    pub catalog: Arc<recorder::Catalog>,
    /// The recording signer's public key, to verify recordings against;
    /// `None` checks each signature against the key it names only.
    pub trusted: Option<[u8; 32]>,
    cache: recording::Cache,
    live: live::Hub,
    live_source: live::LiveSource,
    limits: limits::Limits,
    /// Whether an origin is an HTTP route's, where a signed-in browser may
    /// be handed off to; `None` without HTTP routes.
    route_origins: Option<RouteOrigins>,
}

/// Asks whether `scheme://host[:port]` is an HTTP route's origin (the
/// proxy's routes in force, which a reload may change).
pub type RouteOrigins = Arc<dyn Fn(&str) -> bool + Send + Sync>;

impl App {
    /// The app over `store` and `catalog`. `spool_dir` is this machine's
    /// recording spool, read for live sessions recorded here;
    /// `segment_interval` how often the recorders upload, which sets how
    /// often live sessions are polled.
    pub fn new(
        config: config::WebConfig,
        idp: identity::LazyIdp,
        store: Arc<dyn state::Store>,
        catalog: recorder::Catalog,
        trusted: Option<[u8; 32]>,
        spool_dir: Option<PathBuf>,
        segment_interval: Duration,
    ) -> App {
        App {
            config,
            idp,
            store,
            catalog: Arc::new(catalog),
            trusted,
            cache: recording::Cache::default(),
            live: live::Hub::default(),
            live_source: live::LiveSource {
                spool_dir,
                // Uploaded segments are looked for at a twentieth of the
                // upload interval (250 ms for the default 5 s), between
                // 100 ms and 1 s: a GET of the next segment's key, and only
                // while someone watches. This machine's spool every 200 ms
                // (live.rs).
                every: (segment_interval / 20)
                    .clamp(Duration::from_millis(100), Duration::from_secs(1)),
            },
            limits: limits::Limits::default(),
            route_origins: None,
        }
    }

    /// The app, handing signed-in browsers off to the HTTP routes whose
    /// origins `origins` accepts.
    pub fn with_route_origins(mut self, origins: RouteOrigins) -> App {
        self.route_origins = Some(origins);
        self
    }

    /// The redirect URI registered at the IdP: `{public_url}/auth/callback`.
    pub fn callback_url(&self) -> String {
        format!("{}/auth/callback", self.config.public_url)
    }
}
