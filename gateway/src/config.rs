//! Configuration: YAML in, validated and typed config out.
//!
//! Loading has two stages, as in ripgrep: serde reads the file into raw
//! types that mirror the YAML (every value that can be wrong carries its
//! position), and [`validate`] turns them into [`Config`]: parsed addresses
//! and durations, loaded keys, compiled route policies. Validation collects
//! *every* problem with its file:line:col, so `gatehouse check-config` can
//! print them all at once.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use policy::lang::{CompiledRoutePolicy, Identity, IdentityKind, PolicySet, raw as policy_raw};

use crate::oidc::IdpSettings;
use russh::keys::{HashAlg, PublicKey};
use serde::Deserialize;
use serde_saphyr::Spanned;

/// One problem in a configuration file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line; 0 when the problem has no position (a missing file).
    pub line: u64,
    /// 1-based column; 0 when unknown.
    pub column: u64,
    /// What is wrong, lowercase, saying what to do where possible.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

/// All problems found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// ---------------------------------------------------------------------------
// Raw types: exactly what the YAML says.
// ---------------------------------------------------------------------------

type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<S<String>>,
    host_keys: Option<Vec<S<String>>>,
    user_ca: Option<S<String>>,
    state_dir: Option<S<String>>,
    gateway_id: Option<S<String>>,
    #[serde(default)]
    limits: RawLimits,
    idp: Option<S<RawIdp>>,
    login_ttl: Option<S<String>>,
    #[serde(default)]
    recording: RawRecording,
    #[serde(default)]
    identities: Vec<RawIdentity>,
    /// Shared policies, referenced by name from routes.
    #[serde(default)]
    policies: policy_raw::Named<policy_raw::PolicyDoc>,
    reevaluate_interval: Option<S<String>>,
    #[serde(default)]
    routes: Vec<RawRoute>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_connections: Option<S<u64>>,
    max_unauthenticated: Option<S<u64>>,
    auth_timeout: Option<S<String>>,
    auth_rejection_delay: Option<S<String>>,
    connect_timeout: Option<S<String>>,
    idle_timeout: Option<S<String>>,
    keepalive_interval: Option<S<String>>,
    max_sign_ins: Option<S<u64>>,
    max_sign_ins_per_source: Option<S<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecording {
    storage: Option<S<String>>,
    s3_endpoint: Option<S<String>>,
    s3_region: Option<S<String>>,
    s3_virtual_hosted_style: Option<bool>,
    s3_credentials_file: Option<S<String>>,
    spool_dir: Option<S<String>>,
    spool_max_bytes: Option<S<u64>>,
    segment_interval: Option<S<String>>,
    segment_bytes: Option<S<u64>>,
    strict_grace: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdp {
    issuer: Option<S<String>>,
    client_id: Option<S<String>>,
    client_secret_file: Option<S<String>>,
    scopes: Option<Vec<S<String>>>,
    groups_claim: Option<S<String>>,
    poll_interval: Option<S<String>>,
    #[serde(default)]
    allowed_domains: Vec<S<String>>,
    http_timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    name: S<String>,
    email: Option<S<String>>,
    #[serde(default)]
    groups: Vec<S<String>>,
    #[serde(default)]
    keys: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: S<String>,
    target: Option<S<String>>,
    #[serde(default)]
    logins: Vec<S<String>>,
    host_key: Option<S<String>>,
    host_ca: Option<S<String>>,
    policy: Option<S<policy_raw::RoutePolicy>>,
    source_address: Option<Vec<S<String>>>,
    connect_timeout: Option<S<String>>,
}

// ---------------------------------------------------------------------------
// Validated types: what the gateway runs with.
// ---------------------------------------------------------------------------

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
    /// How often every live session is checked against the policy, on top
    /// of its decision's own next-check time.
    pub reevaluate_interval: Duration,
}

impl Route {
    /// Whether the target offers `login`: any login when `logins:` is
    /// empty (the policy alone decides), else one of those listed.
    pub fn offers(&self, login: &str) -> bool {
        self.logins.is_empty() || self.logins.iter().any(|l| l == login)
    }
}

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
    let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| {
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
    let mut v = Validator {
        file: path.to_owned(),
        base: path.parent().map(Path::to_owned).unwrap_or_default(),
        problems: Vec::new(),
    };
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

struct Validator {
    file: PathBuf,
    base: PathBuf,
    problems: Vec<ConfigProblem>,
}

impl Validator {
    fn problem<T>(&mut self, at: &S<T>, message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            file: self.file.clone(),
            line: at.referenced.line(),
            column: at.referenced.column(),
            message: message.into(),
        });
    }

    fn problem_here(&mut self, message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            file: self.file.clone(),
            line: 0,
            column: 0,
            message: message.into(),
        });
    }

    fn path(&self, value: &str) -> PathBuf {
        let p = PathBuf::from(value);
        if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        }
    }

    fn duration(&mut self, value: &Option<S<String>>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(s) => match humantime::parse_duration(s.value.trim()) {
                Ok(d) => d,
                Err(e) => {
                    self.problem(
                        s,
                        format!("bad duration {:?}: {e} (write e.g. 30s, 5m, 1h)", s.value),
                    );
                    default
                }
            },
        }
    }

    /// A public key given inline (`ssh-ed25519 AAAA…`) or as a path to a
    /// `.pub` file.
    fn public_key(&mut self, s: &S<String>, what: &str) -> Option<PublicKey> {
        let text = s.value.trim();
        let (text, origin) = if looks_like_key(text) {
            (text.to_owned(), None)
        } else {
            let path = self.path(text);
            match std::fs::read_to_string(&path) {
                Ok(t) => (t.trim().to_owned(), Some(path)),
                Err(e) => {
                    self.problem(s, format!("cannot read {what} {}: {e}", path.display()));
                    return None;
                }
            }
        };
        match PublicKey::from_openssh(&text) {
            Ok(k) => Some(k),
            Err(e) => {
                let from = origin
                    .map(|p| format!(" in {}", p.display()))
                    .unwrap_or_default();
                self.problem(s, format!("{what}{from} is not an OpenSSH public key: {e}"));
                None
            }
        }
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let listen = match &raw.listen {
            None => SocketAddr::from(([0, 0, 0, 0], 2222)),
            Some(s) => match s.value.parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    self.problem(
                        s,
                        format!(
                            "bad listen address {:?}: write IP:PORT, e.g. 0.0.0.0:2222",
                            s.value
                        ),
                    );
                    SocketAddr::from(([0, 0, 0, 0], 2222))
                }
            },
        };
        let state_dir = raw
            .state_dir
            .as_ref()
            .map(|s| self.path(&s.value))
            .unwrap_or_else(|| PathBuf::from("/var/lib/gatehouse"));
        let host_keys = match &raw.host_keys {
            Some(list) if !list.is_empty() => list.iter().map(|s| self.path(&s.value)).collect(),
            _ => vec![state_dir.join("ssh_host_ed25519_key")],
        };
        for (i, p) in host_keys.iter().enumerate() {
            // A host key that exists must be readable and valid now, not at
            // first connection; one that is absent is generated by `serve`.
            if p.exists()
                && let Err(e) = crate::keys::read_private_key(p)
            {
                match raw.host_keys.as_ref().and_then(|l| l.get(i)) {
                    Some(s) => self.problem(s, e.to_string()),
                    None => self.problem_here(e.to_string()),
                }
            }
        }
        let user_ca = match &raw.user_ca {
            None => {
                self.problem_here(
                    "user_ca is required: run `gatehouse ca init --key PATH` and set user_ca: PATH",
                );
                PathBuf::new()
            }
            Some(s) => {
                let p = self.path(&s.value);
                if let Err(e) = crate::keys::read_private_key(&p) {
                    self.problem(
                        s,
                        format!(
                            "{e} (create it with `gatehouse ca init --key {}`)",
                            p.display()
                        ),
                    );
                }
                p
            }
        };
        let gateway_id = raw
            .gateway_id
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or_else(|| "gatehouse".to_owned());
        let limits = self.limits(&raw.limits);
        let sign_in = self.sign_in(&raw);
        let recording = self.recording(&raw.recording, &state_dir, &gateway_id);
        let keys = self.identities(&raw.identities);
        let (routes, policies) = self.routes(&raw, &limits);
        let reevaluate_interval =
            self.duration(&raw.reevaluate_interval, DEFAULT_REEVALUATE_INTERVAL);
        if let Some(s) = &raw.reevaluate_interval
            && !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&reevaluate_interval)
        {
            self.problem(s, "reevaluate_interval must be between 1s and 1h");
        }
        Config {
            source: self.file.clone(),
            listen,
            host_keys,
            user_ca,
            state_dir,
            gateway_id,
            limits,
            sign_in,
            recording,
            keys,
            routes,
            policies: Arc::new(policies),
            reevaluate_interval,
        }
    }

    fn recording(
        &mut self,
        raw: &RawRecording,
        state_dir: &Path,
        gateway_id: &str,
    ) -> RecordingConfig {
        use recorder::{S3Credentials, StorageConfig};
        let default_root = state_dir.join("recordings");
        let mut storage = match &raw.storage {
            None => StorageConfig::File(default_root.clone()),
            Some(s) => {
                // A relative file URL is relative to the config file.
                let url = match s.value.strip_prefix("file://") {
                    Some(p) if !p.starts_with('/') => {
                        format!("file://{}", self.path(p).display())
                    }
                    _ => s.value.clone(),
                };
                match StorageConfig::from_url(&url) {
                    Ok(c) => c,
                    Err(e) => {
                        self.problem(s, e.to_string());
                        StorageConfig::File(default_root.clone())
                    }
                }
            }
        };
        let s3_keys = [
            raw.s3_endpoint.as_ref(),
            raw.s3_region.as_ref(),
            raw.s3_credentials_file.as_ref(),
        ];
        match &mut storage {
            StorageConfig::S3(s3) => {
                if let Some(e) = &raw.s3_endpoint {
                    let v = e.value.trim();
                    if !(v.starts_with("http://") || v.starts_with("https://")) {
                        self.problem(
                            e,
                            format!("bad s3_endpoint {v:?}: write http(s)://HOST:PORT"),
                        );
                    }
                    s3.allow_http = v.starts_with("http://");
                    s3.endpoint = Some(v.to_owned());
                }
                if let Some(r) = &raw.s3_region {
                    s3.region = r.value.trim().to_owned();
                }
                if let Some(v) = raw.s3_virtual_hosted_style {
                    s3.virtual_hosted_style = v;
                }
                if let Some(f) = &raw.s3_credentials_file {
                    let path = self.path(&f.value);
                    if let Err(e) = std::fs::metadata(&path) {
                        self.problem(
                            f,
                            format!("cannot read s3_credentials_file {}: {e}", path.display()),
                        );
                    }
                    s3.credentials = S3Credentials::File(path);
                }
            }
            StorageConfig::File(_) => {
                for s in s3_keys.into_iter().flatten() {
                    self.problem(s, "s3_* settings need an s3://bucket/prefix storage");
                }
            }
        }
        let spool_dir = raw
            .spool_dir
            .as_ref()
            .map(|s| self.path(&s.value))
            .unwrap_or_else(|| state_dir.join("spool"));
        let mut recorder = recorder::RecorderConfig::new(
            state_dir.join(crate::bindings::DB_FILE),
            spool_dir,
            storage,
        );
        recorder.gateway_id = gateway_id.to_owned();
        recorder.segment_interval = self.duration(&raw.segment_interval, recorder.segment_interval);
        if let Some(s) = &raw.segment_interval
            && recorder.segment_interval < Duration::from_millis(100)
        {
            self.problem(s, "segment_interval must be at least 100ms");
        }
        for (v, field, what) in [
            (
                &raw.segment_bytes,
                &mut recorder.segment_bytes,
                "segment_bytes",
            ),
            (
                &raw.spool_max_bytes,
                &mut recorder.spool_max_bytes,
                "spool_max_bytes",
            ),
        ] {
            if let Some(s) = v {
                if s.value < 4096 {
                    self.problem(s, format!("{what} must be at least 4096"));
                } else {
                    *field = s.value;
                }
            }
        }
        let strict_grace = self.duration(&raw.strict_grace, Duration::from_secs(10));
        RecordingConfig {
            recorder,
            strict_grace,
        }
    }

    fn sign_in(&mut self, raw: &RawConfig) -> Option<SignInConfig> {
        let Some(section) = &raw.idp else {
            if let Some(ttl) = &raw.login_ttl {
                self.problem(
                    ttl,
                    "login_ttl needs an idp section: logins come from sign-ins",
                );
            }
            return None;
        };
        let ri = &section.value;
        let required = |v: &Option<S<String>>, this: &mut Self, key: &str| -> String {
            match v {
                Some(s) if !s.value.trim().is_empty() => s.value.trim().to_owned(),
                Some(s) => {
                    this.problem(s, format!("idp.{key} must not be empty"));
                    String::new()
                }
                None => {
                    this.problem(section, format!("idp.{key} is required"));
                    String::new()
                }
            }
        };
        let issuer = required(&ri.issuer, self, "issuer");
        if let Some(s) = &ri.issuer
            && !issuer.is_empty()
            && !(issuer.starts_with("https://") || issuer.starts_with("http://"))
        {
            self.problem(
                s,
                format!(
                    "idp.issuer {issuer:?} must be an http(s) URL, exactly as the IdP names itself"
                ),
            );
        }
        let client_id = required(&ri.client_id, self, "client_id");
        let mut idp = IdpSettings::new(issuer, client_id);
        if let Some(s) = &ri.client_secret_file {
            let path = self.path(&s.value);
            match std::fs::read_to_string(&path) {
                Ok(secret) if !secret.trim().is_empty() => {
                    idp.client_secret = Some(secret.trim().to_owned());
                }
                Ok(_) => self.problem(s, format!("client secret file {} is empty", path.display())),
                Err(e) => self.problem(
                    s,
                    format!("cannot read client secret file {}: {e}", path.display()),
                ),
            }
        }
        if let Some(scopes) = &ri.scopes {
            for s in scopes {
                if s.value.trim().is_empty() || s.value.contains(char::is_whitespace) {
                    self.problem(s, format!("bad scope {:?}: one word per entry", s.value));
                }
            }
            idp.scopes = scopes.iter().map(|s| s.value.trim().to_owned()).collect();
        }
        if let Some(s) = &ri.groups_claim {
            if s.value.trim().is_empty() {
                self.problem(s, "idp.groups_claim must not be empty");
            } else {
                idp.groups_claim = s.value.trim().to_owned();
            }
        }
        if ri.poll_interval.is_some() {
            let d = self.duration(&ri.poll_interval, Duration::from_secs(5));
            idp.poll_interval = Some(d.max(Duration::from_secs(1)));
        }
        idp.http_timeout = self.duration(&ri.http_timeout, idp.http_timeout);
        for d in &ri.allowed_domains {
            let domain = d.value.trim().trim_start_matches('@').to_ascii_lowercase();
            if domain.is_empty() || domain.contains('@') || domain.contains(char::is_whitespace) {
                self.problem(
                    d,
                    format!("bad email domain {:?}: write e.g. example.com", d.value),
                );
            }
            idp.allowed_domains.push(domain);
        }
        let login_ttl = self.duration(&raw.login_ttl, crate::bindings::DEFAULT_LOGIN_TTL);
        if let Some(s) = &raw.login_ttl
            && login_ttl.is_zero()
        {
            self.problem(s, "login_ttl must be longer than zero");
        }
        Some(SignInConfig { idp, login_ttl })
    }

    fn limits(&mut self, raw: &RawLimits) -> Limits {
        let d = Limits::default();
        let mut count = |v: &Option<S<u64>>, default: usize, what: &str| -> usize {
            match v {
                None => default,
                Some(s) if s.value == 0 => {
                    self.problem(s, format!("{what} must be at least 1"));
                    default
                }
                Some(s) => usize::try_from(s.value).unwrap_or(usize::MAX),
            }
        };
        let max_connections = count(&raw.max_connections, d.max_connections, "max_connections");
        let max_unauthenticated = count(
            &raw.max_unauthenticated,
            d.max_unauthenticated,
            "max_unauthenticated",
        );
        let max_sign_ins = count(&raw.max_sign_ins, d.max_sign_ins, "max_sign_ins");
        let max_sign_ins_per_source = count(
            &raw.max_sign_ins_per_source,
            d.max_sign_ins_per_source,
            "max_sign_ins_per_source",
        );
        let optional = |v: Duration| if v.is_zero() { None } else { Some(v) };
        Limits {
            max_sign_ins,
            max_sign_ins_per_source,
            max_connections,
            max_unauthenticated,
            auth_timeout: self.duration(&raw.auth_timeout, d.auth_timeout),
            auth_rejection_delay: self.duration(&raw.auth_rejection_delay, d.auth_rejection_delay),
            connect_timeout: self.duration(&raw.connect_timeout, d.connect_timeout),
            idle_timeout: optional(self.duration(&raw.idle_timeout, Duration::ZERO)),
            keepalive_interval: optional(
                self.duration(&raw.keepalive_interval, Duration::from_secs(60)),
            ),
        }
    }

    fn identities(&mut self, raw: &[RawIdentity]) -> HashMap<String, Arc<Identity>> {
        let mut keys: HashMap<String, Arc<Identity>> = HashMap::new();
        let mut names = HashSet::new();
        for ri in raw {
            if ri.name.value.trim().is_empty() {
                self.problem(&ri.name, "identity name must not be empty");
            } else if !names.insert(ri.name.value.clone()) {
                self.problem(&ri.name, format!("duplicate identity {:?}", ri.name.value));
            }
            if ri.keys.is_empty() {
                self.problem(
                    &ri.name,
                    format!("identity {:?} has no keys", ri.name.value),
                );
            }
            let mut identity = Identity::new(IdentityKind::Service, ri.name.value.clone());
            identity.email = ri.email.as_ref().map(|e| e.value.clone());
            identity.groups = ri.groups.iter().map(|g| g.value.clone()).collect();
            let identity = Arc::new(identity);
            for k in &ri.keys {
                let Some(key) = self.public_key(k, "client key") else {
                    continue;
                };
                let fp = key.fingerprint(HashAlg::Sha256).to_string();
                if let Some(other) = keys.get(&fp) {
                    let other = other.name.clone();
                    self.problem(
                        k,
                        format!("key {fp} is already registered to identity {other:?}"),
                    );
                    continue;
                }
                keys.insert(fp, Arc::clone(&identity));
            }
        }
        keys
    }

    fn routes(
        &mut self,
        raw: &RawConfig,
        limits: &Limits,
    ) -> (HashMap<String, Arc<Route>>, PolicySet) {
        // Names are checked before validity, so a duplicate is reported
        // even when the first route of that name has problems of its own.
        let mut names = HashSet::new();
        let mut duplicates = Vec::new();
        let mut policies = Vec::new();
        for rr in &raw.routes {
            let name = rr.name.value.trim();
            let duplicate = !names.insert(name);
            duplicates.push(duplicate);
            if duplicate {
                self.problem(&rr.name, format!("duplicate route {name:?}"));
            }
            match &rr.policy {
                Some(policy) if !duplicate => policies.push((name, policy)),
                Some(_) => {}
                None => self.problem(
                    &rr.name,
                    format!(
                        "route {name:?} has no policy: add policy: NAME (one of policies:) or policy: {{rules: [...]}}"
                    ),
                ),
            }
        }
        let compiled = match policy::lang::compile(&raw.policies, policies) {
            Ok(set) => set,
            Err(errors) => {
                for e in errors {
                    self.problems.push(ConfigProblem {
                        file: self.file.clone(),
                        line: e.line,
                        column: e.column,
                        message: e.message,
                    });
                }
                policy::lang::PolicySet::default()
            }
        };
        let mut routes = HashMap::new();
        for (rr, duplicate) in raw.routes.iter().zip(duplicates) {
            // A duplicate is still validated, so its own problems show too.
            let policy = compiled.route(rr.name.value.trim()).cloned();
            if let Some(route) = self.route(rr, limits, policy)
                && !duplicate
            {
                routes.insert(route.name.clone(), Arc::new(route));
            }
        }
        (routes, compiled)
    }

    /// A route, given its compiled policy (`None` when it has none or the
    /// policies did not compile, which is reported already).
    fn route(
        &mut self,
        rr: &RawRoute,
        limits: &Limits,
        policy: Option<Arc<CompiledRoutePolicy>>,
    ) -> Option<Route> {
        let name = rr.name.value.trim().to_owned();
        let mut ok = true;
        if name.is_empty() || name.contains(['@', ' ', '/']) {
            self.problem(
                &rr.name,
                format!(
                    "bad route name {:?}: use letters, digits, '-', '_' or '.'",
                    rr.name.value
                ),
            );
            ok = false;
        }
        let target = match &rr.target {
            None => {
                self.problem(
                    &rr.name,
                    format!("route {name:?} needs a target: host:port"),
                );
                None
            }
            Some(t) => match split_host_port(&t.value) {
                Some(hp) => Some(hp),
                None => {
                    self.problem(t, format!("bad target {:?}: write host:port", t.value));
                    None
                }
            },
        };
        for l in &rr.logins {
            if l.value.is_empty() || l.value.contains(['@', ' ', ',']) {
                self.problem(l, format!("bad login {:?}", l.value));
                ok = false;
            }
        }
        let host_key = match (&rr.host_key, &rr.host_ca) {
            (Some(_), Some(ca)) => {
                self.problem(ca, "set either host_key or host_ca, not both");
                None
            }
            (None, None) => {
                self.problem(
                    &rr.name,
                    format!(
                        "route {name:?} has no host key check: set host_key (the target's public key) or host_ca; there is no trust on first use"
                    ),
                );
                None
            }
            (Some(k), None) => self.public_key(k, "host_key").map(HostKeyCheck::Pinned),
            (None, Some(ca)) => self.public_key(ca, "host_ca").map(HostKeyCheck::Ca),
        };
        let source_address = match &rr.source_address {
            None => None,
            Some(list) => {
                let mut parts = Vec::new();
                for s in list {
                    let v = s.value.trim();
                    if v.parse::<ipnet::IpNet>().is_ok() || v.parse::<std::net::IpAddr>().is_ok() {
                        parts.push(v.to_owned());
                    } else {
                        self.problem(s, format!("bad source_address {v:?}: write an IP or CIDR"));
                    }
                }
                (!parts.is_empty()).then(|| parts.join(","))
            }
        };
        let connect_timeout = self.duration(&rr.connect_timeout, limits.connect_timeout);
        let (target_host, target_port) = target?;
        let host_key = host_key?;
        let policy = policy?;
        if !ok {
            return None;
        }
        Some(Route {
            target: format!("{target_host}:{target_port}"),
            target_host,
            target_port,
            host_key,
            logins: rr.logins.iter().map(|l| l.value.clone()).collect(),
            policy,
            name,
            source_address,
            connect_timeout,
        })
    }
}

fn looks_like_key(text: &str) -> bool {
    text.starts_with("ssh-") || text.starts_with("ecdsa-") || text.starts_with("sk-")
}

/// Splits `host:port` or `[v6]:port`.
fn split_host_port(s: &str) -> Option<(String, u16)> {
    let s = s.trim();
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once("]:")?;
        (h, p)
    } else {
        s.rsplit_once(':')?
    };
    if host.is_empty() || host.contains(':') && !s.starts_with('[') {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    Some((host.to_owned(), port))
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGu0ixU5Zn1h2cCa5w9K8dXbK8VVZy6FTvJ/6Zp7pXiO";

    fn with_ca(yaml: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        crate::keys::generate_private_key(&dir.path().join("ca"), "test ca").unwrap();
        // Appended, so the positions in the tests are those of `yaml`.
        let text = format!("{yaml}user_ca: ca\nstate_dir: state\n");
        (dir, text)
    }

    fn errors(yaml: &str) -> Vec<String> {
        let (dir, text) = with_ca(yaml);
        let path = dir.path().join("gatehouse.yaml");
        match parse(&path, &text) {
            Ok(_) => Vec::new(),
            Err(e) => {
                e.0.iter()
                    .map(|p| format!("{}:{}: {}", p.line, p.column, p.message))
                    .collect()
            }
        }
    }

    #[test]
    fn a_good_config_loads() {
        let (dir, text) = with_ca(&format!(
            r#"listen: 127.0.0.1:0
identities:
  - name: ci
    email: ci@example.com
    groups: [deploy]
    keys: ["{KEY} ci"]
routes:
  - name: prod-db
    target: db.internal:22
    logins: [postgres]
    host_key: "{KEY}"
    policy:
      capabilities: {{agent: true}}
      obligations: {{cert_ttl: 2m}}
      rules:
        - allow: deployers
          when: {{groups: deploy}}
    source_address: [10.0.0.0/8, 192.0.2.1]
"#
        ));
        let c = parse(&dir.path().join("g.yaml"), &text).expect("valid");
        let r = &c.routes["prod-db"];
        assert_eq!(r.target_host, "db.internal");
        assert_eq!(r.target_port, 22);
        assert_eq!(r.policy.obligations().cert_ttl, Duration::from_secs(120));
        assert!(r.policy.capabilities().agent && r.policy.capabilities().pty);
        assert!(!r.policy.capabilities().port_forward_local.is_allowed());
        assert_eq!(c.reevaluate_interval, DEFAULT_REEVALUATE_INTERVAL);
        assert_eq!(r.source_address.as_deref(), Some("10.0.0.0/8,192.0.2.1"));
        assert_eq!(c.keys.len(), 1);
        assert_eq!(c.state_dir, dir.path().join("state"));
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let got = errors(&format!(
            r#"routes:
  - name: a
    target: nowhere
    logins: [root]
    host_key: "{KEY}"
    policy: {{obligations: {{cert_ttl: 5 parsecs}}, rules: []}}
  - name: a2
    target: h:22
    logins: [root]
    host_key: "{KEY}"
    policy: on-call
  - name: b
    target: h:22
    logins: [root]
    policy: {{rules: [{{allow: x, when: {{source_ip: 10.0.0.300/8}}}}]}}
  - name: c
    target: h:22
    host_key: "{KEY}"
"#
        ));
        let want_prefixes = [
            "3:13: bad target \"nowhere\"",
            "6:38: `cert_ttl`: `5 parsecs` is not a duration",
            "11:13: unknown policy `on-call`",
            "12:11: route \"b\" has no host key check",
            "15:51: `10.0.0.300/8` is not a CIDR",
            "16:11: route \"c\" has no policy",
        ];
        for w in want_prefixes {
            assert!(
                got.iter().any(|g| g.starts_with(w)),
                "missing {w:?} in {got:#?}"
            );
        }
    }

    #[test]
    fn duplicate_routes_and_keys_are_errors() {
        let got = errors(&format!(
            r#"identities:
  - name: one
    keys: ["{KEY}"]
  - name: two
    keys: ["{KEY}"]
routes:
  - name: r
    target: h:22
    logins: [root]
    host_key: "{KEY}"
    policy: {{rules: [{{allow: one, when: {{email: one@example.com}}}}]}}
  - name: r
    target: h:22
    logins: [root]
    host_key: "{KEY}"
    policy: {{rules: [{{allow: one, when: {{email: one@example.com}}}}]}}
"#
        ));
        assert!(
            got.iter().any(|g| g.starts_with("5:12: key SHA256:")),
            "{got:#?}"
        );
        assert!(
            got.iter()
                .any(|g| g.starts_with("12:11: duplicate route \"r\"")),
            "{got:#?}"
        );
    }

    #[test]
    fn unknown_keys_are_rejected_with_position() {
        let got = errors("listen: 127.0.0.1:2222\nlisten_adress: 1\n");
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(got[0].starts_with("2:1: unknown field"), "{got:#?}");
    }

    #[test]
    fn unreadable_key_files_are_errors() {
        let got = errors(
            "routes:\n  - name: r\n    target: h:22\n    logins: [root]\n    host_key: /nonexistent/key.pub\n    policy: {rules: []}\n",
        );
        assert!(
            got.iter()
                .any(|g| g.starts_with("5:15: cannot read host_key /nonexistent/key.pub")),
            "{got:#?}"
        );
    }

    #[test]
    fn the_idp_section_loads_with_defaults_and_a_secret_file() {
        let (dir, text) = with_ca(
            "idp:\n  issuer: https://idp.example.com\n  client_id: gatehouse\n  client_secret_file: secret\n  scopes: [openid, email, groups]\n  allowed_domains: ['@Example.com']\n  poll_interval: 2s\nlogin_ttl: 8h\nlimits:\n  max_sign_ins_per_source: 2\n",
        );
        std::fs::write(dir.path().join("secret"), "s3cret\n").unwrap();
        let c = parse(&dir.path().join("gatehouse.yaml"), &text).unwrap();
        let sign_in = c.sign_in.unwrap();
        assert_eq!(sign_in.idp.issuer, "https://idp.example.com");
        assert_eq!(sign_in.idp.client_secret.as_deref(), Some("s3cret"));
        assert_eq!(sign_in.idp.scopes, ["openid", "email", "groups"]);
        assert_eq!(sign_in.idp.groups_claim, "groups");
        assert_eq!(sign_in.idp.allowed_domains, ["example.com"]);
        assert_eq!(sign_in.idp.poll_interval, Some(Duration::from_secs(2)));
        assert_eq!(sign_in.login_ttl, Duration::from_secs(8 * 3600));
        assert_eq!(c.limits.max_sign_ins_per_source, 2);
        assert_eq!(c.limits.max_sign_ins, 256);
        // The secret never shows in debug output.
        assert!(!format!("{sign_in:?}").contains("s3cret"));
    }

    #[test]
    fn idp_problems_are_reported_with_positions() {
        let got = errors(
            "idp:\n  client_id: ''\n  client_secret_file: /nonexistent/secret\n  scopes: ['two words']\n  allowed_domains: [a@b]\n",
        );
        let expect = [
            "2:3: idp.issuer is required",
            "2:14: idp.client_id must not be empty",
            "3:23: cannot read client secret file /nonexistent/secret",
            "4:12: bad scope",
            "5:21: bad email domain",
        ];
        for e in expect {
            assert!(got.iter().any(|g| g.starts_with(e)), "{e}: {got:#?}");
        }
        let got = errors("login_ttl: 1h\n");
        assert!(
            got.iter()
                .any(|g| g.starts_with("1:12: login_ttl needs an idp section")),
            "{got:#?}"
        );
    }

    #[test]
    fn recording_defaults_to_files_in_the_state_dir_and_takes_s3() {
        let (dir, text) = with_ca("");
        let c = parse(&dir.path().join("gatehouse.yaml"), &text).unwrap();
        assert_eq!(
            c.recording.recorder.storage,
            recorder::StorageConfig::File(dir.path().join("state/recordings"))
        );
        assert_eq!(
            c.recording.recorder.spool_dir,
            dir.path().join("state/spool")
        );
        let (dir, text) = with_ca(
            "recording:\n  storage: s3://rec/gh\n  s3_endpoint: http://127.0.0.1:9000\n  segment_interval: 2s\n",
        );
        let c = parse(&dir.path().join("gatehouse.yaml"), &text).unwrap();
        let recorder::StorageConfig::S3(s3) = &c.recording.recorder.storage else {
            panic!("not s3: {:?}", c.recording.recorder.storage);
        };
        assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("rec", "gh"));
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(s3.allow_http);
        assert_eq!(
            c.recording.recorder.segment_interval,
            Duration::from_secs(2)
        );
    }

    #[test]
    fn recording_problems_are_reported_with_positions() {
        let got = errors(
            "recording:\n  storage: ftp://x\n  s3_region: eu\n  segment_bytes: 10\nroutes:\n  - name: r\n    target: h:22\n    logins: [root]\n    host_key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGu0ixU5Zn1h2cCa5w9K8dXbK8VVZy6FTvJ/6Zp7pXiO\"\n    policy: {rules: []}\n",
        );
        let expect = [
            "2:12: ",
            "3:14: s3_* settings need an s3://bucket/prefix storage",
            "4:18: segment_bytes must be at least 4096",
        ];
        for e in expect {
            assert!(got.iter().any(|g| g.starts_with(e)), "{e}: {got:#?}");
        }
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("h:22"), Some(("h".into(), 22)));
        assert_eq!(split_host_port("[::1]:2200"), Some(("::1".into(), 2200)));
        assert_eq!(split_host_port("::1:22"), None);
        assert_eq!(split_host_port("h"), None);
        assert_eq!(split_host_port("h:0"), None);
        assert_eq!(split_host_port(":22"), None);
    }
}
