//! The `web:` section: where the web app listens, the URL browsers use,
//! TLS or an explicit plain-HTTP-behind-a-proxy, trusted proxies, how
//! long a browser stays signed in, and the recordings access policy.

use super::*;

/// A signed-in browser's defaults: half an hour idle, a working day in all.
const DEFAULT_IDLE: Duration = Duration::from_secs(30 * 60);
const DEFAULT_LIFETIME: Duration = Duration::from_secs(12 * 3600);

impl Validator {
    pub(super) fn web(&mut self, raw: &RawConfig, has_idp: bool) -> Option<WebConfig> {
        let section = raw.web.as_ref()?;
        let w = &section.value;
        if !has_idp {
            self.problem(
                section,
                "web needs an idp section: viewers sign in through the identity provider",
            );
        }
        let listen = match &w.listen {
            None => {
                self.problem(section, "web.listen is required, e.g. 0.0.0.0:8443");
                SocketAddr::from(([127, 0, 0, 1], 0))
            }
            Some(s) => s.value.parse::<SocketAddr>().unwrap_or_else(|_| {
                self.problem(
                    s,
                    format!(
                        "bad web.listen address {:?}: write IP:PORT, e.g. 0.0.0.0:8443",
                        s.value
                    ),
                );
                SocketAddr::from(([127, 0, 0, 1], 0))
            }),
        };
        let public_url = match &w.public_url {
            None => {
                self.problem(
                    section,
                    "web.public_url is required: the URL browsers use, e.g. https://gatehouse.example.com",
                );
                String::new()
            }
            Some(s) => {
                let url = s.value.trim().trim_end_matches('/').to_owned();
                let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
                let host = url.split_once("://").map_or("", |(_, rest)| rest);
                if !scheme_ok || host.is_empty() || url.contains(['?', '#', ' ']) {
                    self.problem(
                        s,
                        format!(
                            "web.public_url {:?} must be an http(s) URL without query or fragment",
                            s.value
                        ),
                    );
                }
                url
            }
        };
        let plain = w.plain_http.as_ref().is_some_and(|s| s.value);
        let transport = match (&w.tls, plain) {
            (Some(tls), false) => {
                let mut file = |v: &Option<S<String>>, key: &str| -> PathBuf {
                    match v {
                        None => {
                            self.problem(tls, format!("web.tls.{key} is required (a PEM file)"));
                            PathBuf::new()
                        }
                        Some(s) => {
                            let p = self.path(&s.value);
                            if let Err(e) = std::fs::File::open(&p) {
                                self.problem(s, format!("cannot read {}: {e}", p.display()));
                            }
                            p
                        }
                    }
                };
                let cert = file(&tls.value.cert, "cert");
                let key = file(&tls.value.key, "key");
                WebTransport::Tls { cert, key }
            }
            (Some(tls), true) => {
                self.problem(
                    tls,
                    "web.tls and web.plain_http: true exclude each other; choose one",
                );
                WebTransport::PlainHttp
            }
            (None, true) => {
                if public_url.starts_with("http://")
                    && !loopback_url(&public_url)
                    && let Some(s) = &w.public_url
                {
                    self.problem(
                        s,
                        "web.public_url must be https:// unless it is loopback: browsers \
                         send the session cookie only over TLS (or to localhost)",
                    );
                }
                WebTransport::PlainHttp
            }
            (None, false) => {
                self.problem(
                    section,
                    "web needs tls: {cert, key}, or plain_http: true to say that a TLS proxy \
                     in front terminates TLS",
                );
                WebTransport::PlainHttp
            }
        };
        let trusted_proxies = self.networks(&w.trusted_proxies, |text| {
            format!("bad trusted proxy {text:?}: write an address or a CIDR block")
        });
        let session_idle = self.duration(&w.session_idle, DEFAULT_IDLE);
        let session_lifetime = self.duration(&w.session_lifetime, DEFAULT_LIFETIME);
        if let Some(s) = &w.session_idle
            && session_idle < Duration::from_secs(60)
        {
            self.problem(s, "web.session_idle must be at least 1m");
        }
        if session_idle > session_lifetime {
            match (&w.session_idle, &w.session_lifetime) {
                (_, Some(s)) | (Some(s), None) => self.problem(
                    s,
                    "web.session_idle must not be longer than web.session_lifetime",
                ),
                (None, None) => {}
            }
        }
        // Compiled like route policies, so its problems come with this
        // file's positions, together with every other problem.
        let access = match w.access.as_ref().map(policy::lang::compile_access) {
            None => CompiledAccessPolicy::default(),
            Some(Ok(access)) => access,
            Some(Err(errors)) => {
                self.policy_problems(errors);
                CompiledAccessPolicy::default()
            }
        };
        Some(WebConfig {
            listen,
            public_url,
            transport,
            trusted_proxies,
            session_idle,
            session_lifetime,
            access: Arc::new(access),
        })
    }
}

/// Whether an http:// URL names a loopback host, where browsers keep
/// secure cookies without TLS.
fn loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
