//! Configuration: YAML in, validated and typed config out.
//!
//! Loading has two stages, as in ripgrep: serde reads the file into raw
//! types that mirror the YAML (every value that can be wrong carries its
//! position), and [`validate`] turns them into [`Config`]: parsed addresses
//! and durations, loaded keys, compiled route policies. Validation collects
//! *every* problem with its file:line:col, so `gatehouse check-config` can
//! print them all at once.
//!
//! The raw types live in `raw.rs`, the validation in `validate.rs`; this
//! file holds the typed configuration the gateway runs with.
//!
//! The crate has no SSH and no IO beyond reading the file and the key and
//! secret files it names: the CLI, the gateway and the web crates all load
//! configuration through it without pulling in russh.

mod error;
mod follow;
mod keys;
mod raw;
mod validate;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use policy::lang::{
    CompiledAccessPolicy, CompiledDirectAccess, CompiledHttpPolicy, CompiledRoutePolicy, Identity,
    PolicySet,
};
use ssh_key::PublicKey;

pub use crate::error::{ConfigErrors, ConfigProblem};
pub use crate::follow::{Trigger, follow};
pub use identity::IdpSettings;

/// The validated configuration of a gateway.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was loaded from, for messages.
    pub source: PathBuf,
    /// Where `serve` listens.
    pub listen: SocketAddr,
    /// Host key files; generated (mode 0600) by `serve` when absent.
    pub host_keys: Vec<PathBuf>,
    /// The user CA private key that signs certificates for targets.
    pub user_ca: PathBuf,
    /// Where the gateway keeps its state (host keys by default).
    pub state_dir: PathBuf,
    /// A name for this gateway instance, used in audit events.
    pub gateway_id: String,
    /// Connection and time limits.
    pub limits: Limits,
    /// Device-code sign-in through an OIDC identity provider; `None`
    /// when the `idp` section is absent (registered keys only).
    pub sign_in: Option<SignInConfig>,
    /// Where and how sessions are recorded.
    pub recording: RecordingConfig,
    /// Registered client keys, by SHA-256 fingerprint.
    pub keys: HashMap<String, Arc<Identity>>,
    /// Routes by name.
    pub routes: HashMap<String, Arc<Route>>,
    /// Every route's compiled policy, for `gatehouse policy test`.
    pub policies: Arc<PolicySet>,
    /// Who gets a direct-access certificate for their own key, for which
    /// `LOGIN@ROUTE` principals, how long, and with which extensions
    /// (`direct_access`, issue 16). Without the section it has no rules,
    /// and `ssh cert@GATEWAY` is refused to everyone.
    pub direct_access: Arc<CompiledDirectAccess>,
    /// How often every live session is checked against the policy, on top
    /// of its decision's own next-check time.
    pub reevaluate_interval: Duration,
    /// The web app (recordings in the browser); `None` without a `web`
    /// section.
    pub web: Option<WebConfig>,
    /// The identity-aware HTTP proxy, served on the web listener; `None`
    /// without `http_routes`.
    pub http: Option<HttpConfig>,
    /// Load balancers whose PROXY protocol headers the SSH listener
    /// believes (`trusted_proxies`); from anyone else a header is refused.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The one-port edge listener; `None` without an `edge` section.
    pub edge: Option<EdgeSettings>,
    /// The metrics and health listener; `None` without a `metrics`
    /// section.
    pub metrics: Option<MetricsSettings>,
    /// OpenTelemetry traces; `None` without a `tracing` section. Only a
    /// binary built with the `otel` feature exports them; the others
    /// refuse a configuration that asks for them.
    pub tracing: Option<TracingConfig>,
}

/// The metrics and health listener (issue 16): `/metrics`, `/healthz`
/// and `/readyz` over plain HTTP on a socket of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// Where it listens; a loopback or management address, since the
    /// listener has no authentication.
    pub listen: SocketAddr,
}

/// Where and how spans are exported (issue 16): OTLP over HTTP with
/// protobuf bodies.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// The collector's OTLP/HTTP base URL (`http://127.0.0.1:4318`); spans
    /// are posted to its `/v1/traces`.
    pub otlp_endpoint: url::Url,
    /// `service.name` of every span (default `gatehouse`).
    pub service_name: String,
    /// The share of traces kept, from 0.0 to 1.0 (default 1.0), decided at
    /// each trace's root and followed by its children.
    pub sample_ratio: f64,
    /// Where the section starts (line, column), for the message of a binary
    /// built without traces.
    pub at: (u64, u64),
}

impl TracingConfig {
    /// The URL spans are posted to: `{otlp_endpoint}/v1/traces`, unless the
    /// endpoint already names that path.
    pub fn traces_url(&self) -> String {
        let base = self.otlp_endpoint.as_str().trim_end_matches('/');
        if base.ends_with("/v1/traces") {
            base.to_owned()
        } else {
            format!("{base}/v1/traces")
        }
    }
}

/// The edge listener (issue 16): SSH, TLS (by ALPN) and HTTP on one port.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The certificate chain and key (PEM files) for TLS; without them TLS
    /// connections are refused.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Load balancers whose PROXY headers it believes (default: the
    /// top-level `trusted_proxies`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// A client silent this long is taken for an SSH client waiting for
    /// the server to speak first.
    pub silent_client: Duration,
}

/// The identity-aware HTTP proxy (issue 14): the `http:` settings and the
/// `http_routes:`.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// PEM file of the ECDSA P-256 keys (PKCS#8) that sign identity
    /// assertions for upstreams: the first signs, all are published in the
    /// JWKS (rotation). Generated with one key when absent.
    pub signing_key: PathBuf,
    /// Lifetime of each signed assertion.
    pub assertion_ttl: Duration,
    /// Bound on connecting to an upstream.
    pub connect_timeout: Duration,
    /// Bound on an upstream's response headers after the request was sent.
    pub header_timeout: Duration,
    /// A body or an upgraded connection (WebSocket) that moves no byte in
    /// either direction for this long is closed.
    pub idle_timeout: Duration,
    /// The routes, most specific first (a longer path prefix on the same
    /// host before a shorter one).
    pub routes: Vec<Arc<HttpRoute>>,
}

/// One web app behind the proxy.
#[derive(Debug, Clone)]
pub struct HttpRoute {
    /// Its name, in audit events and as the assertion's `aud`. Defaults to
    /// the host (with the path prefix, if any).
    pub name: String,
    /// The host browsers ask for, lowercase, without a port.
    pub host: String,
    /// The path prefix it serves (`/` for the whole host), ending in `/`
    /// unless it is a single segment written without one.
    pub path_prefix: String,
    /// The route's origin as browsers see it (`https://host[:port]`), for
    /// redirects back to it after sign-in.
    pub origin: String,
    /// Where requests go, tried in turn (round robin).
    pub upstreams: Vec<Upstream>,
    /// A PEM CA bundle for `https://` upstreams with a private CA; without
    /// it, the system's roots.
    pub upstream_ca: Option<PathBuf>,
    /// Speak HTTP/2 without TLS (h2c, prior knowledge) to `http://`
    /// upstreams.
    pub h2c: bool,
    /// Send the browser's `Host` upstream instead of the upstream's own.
    pub preserve_host: bool,
    /// Also send `X-Forwarded-User`, `-Email` and `-Groups`.
    pub identity_headers: bool,
    /// Who may make which requests.
    pub policy: Arc<CompiledHttpPolicy>,
}

/// An upstream of an HTTP route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `https` or `http`.
    pub tls: bool,
    /// `host:port` (the port filled in from the scheme).
    pub authority: String,
    /// The host alone, for TLS server names and the `Host` header.
    pub host: String,
    /// A path prefix to put before each request's path (`""` for none).
    pub base_path: String,
}

/// How SSH users sign in through the IdP (`idp.ssh_sign_in`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshSignIn {
    /// The device grant when discovery lists it, else the link.
    Auto,
    /// RFC 8628 device authorization: a code to enter at the IdP.
    Device,
    /// A single-use sign-in link on the web listener (issue 14).
    Link,
}

/// The web app's settings (issue 13).
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The URL browsers use, without a trailing slash; sign-in redirects
    /// come back to `{public_url}/auth/callback`.
    pub public_url: String,
    /// How it is served.
    pub transport: WebTransport,
    /// Proxies whose `X-Forwarded-For` is believed; anyone else's is
    /// ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// A signed-in browser's session ends after this long without a request.
    pub session_idle: Duration,
    /// ...and after this long whatever happens.
    pub session_lifetime: Duration,
    /// What a signed-in viewer may do with each recorded session
    /// (`web.access`), for `policy::lang::evaluate_access`. Without
    /// `access:` it has no rules, and every viewer is denied everything.
    pub access: Arc<CompiledAccessPolicy>,
}

/// TLS from files, or plain HTTP behind a TLS proxy (said explicitly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebTransport {
    /// rustls with this certificate chain and key (PEM files).
    Tls {
        /// The certificate chain.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
    },
    /// Plain HTTP: a proxy in front terminates TLS (`plain_http: true`).
    PlainHttp,
}

impl Route {
    /// Whether the target offers `login`: any login when `logins:` is
    /// empty (the policy alone decides), else one of those listed.
    pub fn offers(&self, login: &str) -> bool {
        self.logins.is_empty() || self.logins.iter().any(|l| l == login)
    }
}

/// How long a sign-in lasts when the configuration does not say
/// (`login_ttl`): one working day, so a user opens the browser about once
/// a day.
pub const DEFAULT_LOGIN_TTL: Duration = Duration::from_secs(12 * 3600);

/// Default for `reevaluate_interval`.
pub const DEFAULT_REEVALUATE_INTERVAL: Duration = Duration::from_secs(30);

/// How a route records sessions: an obligation of its policy.
pub use policy::lang::RecordMode;

/// Limits that protect the gateway from misbehaving or idle clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more are closed right after accept.
    pub max_connections: usize,
    /// Connections not yet authenticated at once; a flood of handshakes
    /// cannot starve authenticated users.
    pub max_unauthenticated: usize,
    /// A connection that has not authenticated by then is closed.
    pub auth_timeout: Duration,
    /// How long a rejected authentication attempt takes, so key probing
    /// is slow. The client's first `none` probe is never delayed.
    pub auth_rejection_delay: Duration,
    /// Default time to dial and handshake with a target.
    pub connect_timeout: Duration,
    /// A client connection with no traffic for this long is closed.
    pub idle_timeout: Option<Duration>,
    /// Keepalive probes to clients after this much silence.
    pub keepalive_interval: Option<Duration>,
    /// Device authorizations in flight at once, gateway-wide. Each one
    /// is a pending code at the IdP and a connection waiting on it.
    pub max_sign_ins: usize,
    /// Device authorizations in flight at once from one client address,
    /// so one host cannot take them all.
    pub max_sign_ins_per_source: usize,
    /// Unauthenticated connections at once from one source netblock; more
    /// are refused at accept.
    pub max_unauthenticated_per_source: usize,
    /// The prefix lengths that group IPv4 and IPv6 sources into one
    /// netblock for the per-source limit and penalties (OpenSSH's
    /// `PerSourceNetBlockSize`).
    pub source_netblock_v4: u8,
    /// See `source_netblock_v4`.
    pub source_netblock_v6: u8,
    /// A connection that has not finished the version and key exchange by
    /// then is closed, well before `auth_timeout`.
    pub handshake_timeout: Duration,
    /// Bytes a client may send before it authenticates; a flood of
    /// `IGNORE` or garbage ends its connection.
    pub max_preauth_bytes: u64,
    /// Penalties for sources that fail authentication or time out.
    pub penalties: Penalties,
}

/// Penalties for sources that fail (OpenSSH 9.8's `PerSourcePenalties`):
/// each failure adds its duration to the source netblock's penalty, which
/// runs down in real time. Once what is left reaches `min`, the netblock's
/// new connections are refused until it has run out. It never exceeds
/// `max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Penalties {
    /// Whether penalties apply at all.
    pub enabled: bool,
    /// Added when a client tried to authenticate and disconnected or was
    /// refused without succeeding.
    pub authfail: Duration,
    /// Added when a client left before it tried to authenticate.
    pub noauth: Duration,
    /// Added when a client ran out of `handshake_timeout` or
    /// `auth_timeout`, or sent more than `max_preauth_bytes`.
    pub grace_exceeded: Duration,
    /// A penalty is enforced once it reaches this much.
    pub min: Duration,
    /// The longest a penalty can be.
    pub max: Duration,
    /// Netblocks tracked at once; beyond it new failures are not tracked
    /// until old penalties run out (OpenSSH's `overflow:permissive`).
    pub max_sources: usize,
    /// Sources never penalized (a monitoring host, a bastion's own jump
    /// host).
    pub exempt: Vec<ipnet::IpNet>,
}

impl Default for Penalties {
    fn default() -> Self {
        Penalties {
            enabled: true,
            authfail: Duration::from_secs(5),
            noauth: Duration::from_secs(1),
            grace_exceeded: Duration::from_secs(10),
            min: Duration::from_secs(15),
            max: Duration::from_secs(600),
            max_sources: 65_536,
            exempt: Vec::new(),
        }
    }
}

/// Where sessions are recorded (issue 4).
#[derive(Debug, Clone)]
pub struct RecordingConfig {
    /// The recorder's settings: storage, spool, segment cadence.
    pub recorder: recorder::RecorderConfig,
    /// How long a `strict` route's session may run while storage keeps
    /// failing before it is ended (the spool still has everything).
    pub strict_grace: Duration,
}

/// How users sign in through the identity provider (issue 3).
#[derive(Debug, Clone)]
pub struct SignInConfig {
    /// How to reach and trust the IdP (the client secret, if any, is
    /// already read from its file).
    pub idp: IdpSettings,
    /// How long a sign-in authenticates the client key it was bound to.
    pub login_ttl: Duration,
    /// How SSH users sign in.
    pub ssh_sign_in: SshSignIn,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_unauthenticated: 64,
            auth_timeout: Duration::from_secs(120),
            auth_rejection_delay: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: None,
            keepalive_interval: Some(Duration::from_secs(60)),
            max_sign_ins: 256,
            max_sign_ins_per_source: 8,
            max_unauthenticated_per_source: 10,
            source_netblock_v4: 32,
            source_netblock_v6: 64,
            handshake_timeout: Duration::from_secs(10),
            max_preauth_bytes: 256 * 1024,
            penalties: Penalties::default(),
        }
    }
}

/// How the target's host key is verified. There is no trust on first use.
#[derive(Debug, Clone)]
pub enum HostKeyCheck {
    /// The target must present exactly this key.
    Pinned(PublicKey),
    /// The target must present a host certificate signed by this CA, valid
    /// now, naming the target host as a principal.
    Ca(PublicKey),
}

/// A named destination: `LOGIN@ROUTE@gateway` selects it.
#[derive(Debug, Clone)]
pub struct Route {
    /// The route's name.
    pub name: String,
    /// The target's `host:port` as written (the host is also the principal
    /// checked in host certificates).
    pub target: String,
    /// The target host without the port.
    pub target_host: String,
    /// The target port.
    pub target_port: u16,
    /// How the target's host key is verified.
    pub host_key: HostKeyCheck,
    /// The logins the target offers; empty means any login the policy
    /// allows (for example with `login_matches`).
    pub logins: Vec<String>,
    /// Who may use the route, when, and with which capabilities.
    pub policy: Arc<CompiledRoutePolicy>,
    /// `source-address` critical option for minted certificates, when set.
    pub source_address: Option<String>,
    /// Time to dial and handshake with this target.
    pub connect_timeout: Duration,
}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigProblem {
            file: path.to_owned(),
            line: 0,
            column: 0,
            message: format!("cannot read config: {e}"),
        }])
    })?;
    parse(path, &text)
}

/// Parses and validates configuration text; `path` names it in messages and
/// anchors relative paths.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let raw: raw::RawConfig = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        ConfigErrors(vec![ConfigProblem {
            file: path.to_owned(),
            line,
            column,
            message: first_line(&e.to_string()),
        }])
    })?;
    let mut v = validate::Validator::new(path);
    let config = v.config(raw);
    // In file order; problems without a position (line 0) come first.
    v.problems.sort_by_key(|p| (p.line, p.column));
    if v.problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(v.problems))
    }
}

/// serde-saphyr renders a source snippet under its message; the problem
/// line carries the position itself, so keep only the message.
fn first_line(message: &str) -> String {
    let mut line = message.lines().next().unwrap_or(message).trim();
    line = line.strip_prefix("error: ").unwrap_or(line);
    // Drop a "line N column M: " prefix that repeats our file:line:col.
    if let Some(rest) = line.strip_prefix("line ")
        && let Some((_, after)) = rest.split_once(": ")
        && rest
            .split_once(':')
            .is_some_and(|(pos, _)| pos.contains(" column "))
    {
        line = after;
    }
    match line.find(" at line ") {
        Some(i) => line.get(..i).unwrap_or(line).to_owned(),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests;
