//! Validation: raw types in, typed [`Config`](super::Config) out, with
//! every problem collected as a [`ConfigProblem`] at its file:line:col.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use policy::lang::{Identity, IdentityKind, PolicySet};
use ssh_key::{HashAlg, PublicKey};

use super::raw::*;
use super::*;

mod edge;
mod http;
mod web;

pub(super) struct Validator {
    file: PathBuf,
    base: PathBuf,
    pub(super) problems: Vec<ConfigProblem>,
}

impl Validator {
    /// A validator for the file at `path`; relative paths in it are
    /// anchored at its directory.
    pub(super) fn new(path: &Path) -> Self {
        Validator {
            file: path.to_owned(),
            base: path.parent().map(Path::to_owned).unwrap_or_default(),
            problems: Vec::new(),
        }
    }

    fn problem<T>(&mut self, at: &S<T>, message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            file: self.file.clone(),
            line: at.referenced.line(),
            column: at.referenced.column(),
            message: message.into(),
        });
    }

    /// Problems the policy compiler found. The raw policy types sit inside
    /// our raw config, so their positions are already this file's.
    fn policy_problems(&mut self, errors: Vec<policy::lang::CompileError>) {
        for e in errors {
            self.problems.push(ConfigProblem {
                file: self.file.clone(),
                line: e.line,
                column: e.column,
                message: e.message,
            });
        }
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

    /// Addresses or CIDR blocks (an address is its own /32 or /128); each
    /// that is neither is a problem worded by `bad`.
    fn networks(&mut self, list: &[S<String>], bad: impl Fn(&str) -> String) -> Vec<ipnet::IpNet> {
        let mut nets = Vec::new();
        for s in list {
            let text = s.value.trim();
            match text.parse::<ipnet::IpNet>() {
                Ok(net) => nets.push(net),
                Err(_) => match text.parse::<std::net::IpAddr>() {
                    Ok(ip) => nets.push(ipnet::IpNet::from(ip)),
                    Err(_) => self.problem(s, bad(text)),
                },
            }
        }
        nets
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

    pub(super) fn config(&mut self, raw: RawConfig) -> Config {
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
                && let Err(e) = crate::keys::check_private_key(p)
            {
                match raw.host_keys.as_ref().and_then(|l| l.get(i)) {
                    Some(s) => self.problem(s, e),
                    None => self.problem_here(e),
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
                if let Err(e) = crate::keys::check_private_key(&p) {
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
        let direct_access = self.direct_access(&raw, &routes);
        let web = self.web(&raw, sign_in.is_some());
        let http = self.http(&raw, web.as_ref(), &state_dir);
        let trusted_proxies = self.networks(&raw.trusted_proxies, |text| {
            format!("bad trusted proxy {text:?}: write an address or a CIDR block")
        });
        let edge = self.edge(&raw, &trusted_proxies, web.is_some());
        let metrics = self.metrics(&raw);
        if let (Some(s), Some(sign_in)) = (
            raw.idp.as_ref().and_then(|i| i.value.ssh_sign_in.as_ref()),
            &sign_in,
        ) && sign_in.ssh_sign_in == SshSignIn::Link
            && web.is_none()
        {
            self.problem(
                s,
                "idp.ssh_sign_in: link needs a web section: the link opens on the web listener",
            );
        }
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
            direct_access: Arc::new(direct_access),
            reevaluate_interval,
            web,
            http,
            trusted_proxies,
            edge,
            metrics,
            tracing: self.tracing(&raw.tracing),
        }
    }

    /// The `metrics:` section: where the metrics and health listener
    /// listens.
    fn metrics(&mut self, raw: &RawConfig) -> Option<MetricsSettings> {
        let section = raw.metrics.as_ref()?;
        let listen = match &section.value.listen {
            None => {
                self.problem(section, "metrics.listen is required, e.g. 127.0.0.1:9100");
                SocketAddr::from(([127, 0, 0, 1], 0))
            }
            Some(s) => s.value.parse::<SocketAddr>().unwrap_or_else(|_| {
                self.problem(
                    s,
                    format!(
                        "bad metrics.listen address {:?}: write IP:PORT, e.g. 127.0.0.1:9100",
                        s.value
                    ),
                );
                SocketAddr::from(([127, 0, 0, 1], 0))
            }),
        };
        Some(MetricsSettings { listen })
    }

    /// The `tracing:` section: an `http(s)://` OTLP endpoint, a service
    /// name and a sampling ratio.
    fn tracing(&mut self, raw: &Option<S<RawTracing>>) -> Option<TracingConfig> {
        let section = raw.as_ref()?;
        let t = &section.value;
        let otlp_endpoint = match &t.otlp_endpoint {
            None => {
                self.problem(
                    section,
                    "tracing.otlp_endpoint is required, e.g. http://127.0.0.1:4318",
                );
                None
            }
            Some(s) => match url::Url::parse(s.value.trim()) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                    if u.query().is_some() || !u.username().is_empty() || u.password().is_some() {
                        self.problem(
                            s,
                            "tracing.otlp_endpoint takes no credentials or query; \
                             write e.g. http://127.0.0.1:4318",
                        );
                    }
                    Some(u)
                }
                _ => {
                    self.problem(
                        s,
                        format!(
                            "bad tracing.otlp_endpoint {:?}: write an http:// or https:// URL, \
                             e.g. http://127.0.0.1:4318",
                            s.value
                        ),
                    );
                    None
                }
            },
        };
        let service_name = match &t.service_name {
            None => "gatehouse".to_owned(),
            Some(s) => {
                let name = s.value.trim();
                if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
                    self.problem(
                        s,
                        "tracing.service_name must be 1 to 128 printable characters",
                    );
                }
                name.to_owned()
            }
        };
        let sample_ratio = match &t.sample_ratio {
            None => 1.0,
            Some(s) => {
                if !(0.0..=1.0).contains(&s.value) {
                    self.problem(s, "tracing.sample_ratio must be between 0.0 and 1.0");
                }
                s.value.clamp(0.0, 1.0)
            }
        };
        Some(TracingConfig {
            otlp_endpoint: otlp_endpoint?,
            service_name,
            sample_ratio,
            at: (section.referenced.line(), section.referenced.column()),
        })
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
        let mut recorder = recorder::RecorderConfig::new(spool_dir, storage);
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
        let login_ttl = self.duration(&raw.login_ttl, super::DEFAULT_LOGIN_TTL);
        if let Some(s) = &raw.login_ttl
            && login_ttl.is_zero()
        {
            self.problem(s, "login_ttl must be longer than zero");
        }
        let ssh_sign_in = match &ri.ssh_sign_in {
            None => SshSignIn::Auto,
            Some(s) => match s.value.trim() {
                "device" => SshSignIn::Device,
                "link" => SshSignIn::Link,
                other => {
                    self.problem(
                        s,
                        format!("idp.ssh_sign_in {other:?} must be device or link"),
                    );
                    SshSignIn::Auto
                }
            },
        };
        Some(SignInConfig {
            idp,
            login_ttl,
            ssh_sign_in,
        })
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
        let max_unauthenticated_per_source = count(
            &raw.max_unauthenticated_per_source,
            d.max_unauthenticated_per_source,
            "max_unauthenticated_per_source",
        );
        let source_netblock_v4 = self.prefix(&raw.source_netblock_v4, d.source_netblock_v4, 32);
        let source_netblock_v6 = self.prefix(&raw.source_netblock_v6, d.source_netblock_v6, 128);
        let max_preauth_bytes = match &raw.max_preauth_bytes {
            None => d.max_preauth_bytes,
            Some(s) if s.value < 16 * 1024 => {
                self.problem(
                    s,
                    "max_preauth_bytes must be at least 16384: a key exchange and a few keys need that much",
                );
                d.max_preauth_bytes
            }
            Some(s) => s.value,
        };
        let handshake_timeout = self.duration(&raw.handshake_timeout, d.handshake_timeout);
        if handshake_timeout.is_zero()
            && let Some(s) = &raw.handshake_timeout
        {
            self.problem(s, "handshake_timeout must be longer than 0s");
        }
        let penalties = self.penalties(&raw.penalties);
        let optional = |v: Duration| if v.is_zero() { None } else { Some(v) };
        Limits {
            max_unauthenticated_per_source,
            source_netblock_v4,
            source_netblock_v6,
            handshake_timeout,
            max_preauth_bytes,
            penalties,
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

    /// A netblock prefix length, at most `max` bits.
    fn prefix(&mut self, v: &Option<S<u64>>, default: u8, max: u8) -> u8 {
        match v {
            None => default,
            Some(s) => match u8::try_from(s.value) {
                Ok(p) if (1..=max).contains(&p) => p,
                _ => {
                    self.problem(s, format!("a prefix length must be between 1 and {max}"));
                    default
                }
            },
        }
    }

    fn penalties(&mut self, raw: &RawPenalties) -> Penalties {
        let d = Penalties::default();
        let min = self.duration(&raw.min, d.min);
        let max = self.duration(&raw.max, d.max);
        if max < min
            && let Some(s) = raw.max.as_ref().or(raw.min.as_ref())
        {
            self.problem(s, "penalties: max must not be shorter than min");
        }
        let max_sources = match &raw.max_sources {
            None => d.max_sources,
            Some(s) if s.value == 0 => {
                self.problem(s, "penalties: max_sources must be at least 1");
                d.max_sources
            }
            Some(s) => usize::try_from(s.value).unwrap_or(usize::MAX),
        };
        let exempt = self.networks(&raw.exempt, |text| {
            format!("bad address {text:?} in penalties.exempt: write 10.0.0.0/8 or 192.0.2.7")
        });
        Penalties {
            enabled: raw.enabled.unwrap_or(d.enabled),
            authfail: self.duration(&raw.authfail, d.authfail),
            noauth: self.duration(&raw.noauth, d.noauth),
            grace_exceeded: self.duration(&raw.grace_exceeded, d.grace_exceeded),
            min,
            max,
            max_sources,
            exempt,
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
                self.policy_problems(errors);
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

    /// `direct_access`, compiled against the valid routes. Without the
    /// section, or when it has problems (reported), it grants nothing.
    fn direct_access(
        &mut self,
        raw: &RawConfig,
        routes: &HashMap<String, Arc<Route>>,
    ) -> policy::lang::CompiledDirectAccess {
        let Some(section) = &raw.direct_access else {
            return policy::lang::CompiledDirectAccess::default();
        };
        let known: Vec<policy::lang::KnownRoute<'_>> = routes
            .values()
            .map(|r| policy::lang::KnownRoute {
                name: &r.name,
                logins: &r.logins,
            })
            .collect();
        match policy::lang::compile_direct(section, &known) {
            Ok(compiled) => compiled,
            Err(errors) => {
                self.policy_problems(errors);
                policy::lang::CompiledDirectAccess::default()
            }
        }
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

pub(super) fn looks_like_key(text: &str) -> bool {
    text.starts_with("ssh-") || text.starts_with("ecdsa-") || text.starts_with("sk-")
}

/// Splits `host:port` or `[v6]:port`.
pub(super) fn split_host_port(s: &str) -> Option<(String, u16)> {
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
