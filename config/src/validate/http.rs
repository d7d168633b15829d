//! The `http:` settings and the `http_routes:` of the identity-aware HTTP
//! proxy (issue 14): where each route is served (a host, optionally a path
//! prefix, on the web listener), where it goes, and its policy.

use super::*;

const DEFAULT_ASSERTION_TTL: Duration = Duration::from_secs(60);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

impl Validator {
    pub(super) fn http(
        &mut self,
        raw: &RawConfig,
        web: Option<&WebConfig>,
        state_dir: &Path,
    ) -> Option<HttpConfig> {
        if raw.http_routes.is_empty() {
            if let Some(section) = &raw.http {
                self.problem(section, "http has settings but there are no http_routes");
            }
            return None;
        }
        let web_origin = match web {
            Some(w) => url::Url::parse(&w.public_url).ok(),
            None => {
                if let Some(first) = raw.http_routes.first() {
                    self.problem(
                        first,
                        "http_routes need a web section: they are served on the web listener, \
                         and users sign in through the web app",
                    );
                }
                None
            }
        };
        let settings = raw.http.as_ref().map(|s| &s.value);
        let signing_key = settings
            .and_then(|h| h.signing_key.as_ref())
            .map(|s| self.path(&s.value))
            .unwrap_or_else(|| state_dir.join("http_signing_keys.pem"));
        let dur = |this: &mut Self, v: Option<&Option<S<String>>>, default: Duration| match v {
            Some(v) => this.duration(v, default),
            None => default,
        };
        let assertion_ttl = dur(
            self,
            settings.map(|h| &h.assertion_ttl),
            DEFAULT_ASSERTION_TTL,
        );
        if let Some(s) = settings.and_then(|h| h.assertion_ttl.as_ref())
            && !(Duration::from_secs(10)..=Duration::from_secs(3600)).contains(&assertion_ttl)
        {
            self.problem(s, "http.assertion_ttl must be between 10s and 1h");
        }
        let connect_timeout = dur(
            self,
            settings.map(|h| &h.connect_timeout),
            DEFAULT_CONNECT_TIMEOUT,
        );
        let header_timeout = dur(
            self,
            settings.map(|h| &h.header_timeout),
            DEFAULT_HEADER_TIMEOUT,
        );
        let idle_timeout = dur(
            self,
            settings.map(|h| &h.idle_timeout),
            DEFAULT_IDLE_TIMEOUT,
        );
        for (v, key) in [
            (
                settings.and_then(|h| h.connect_timeout.as_ref()),
                "connect_timeout",
            ),
            (
                settings.and_then(|h| h.header_timeout.as_ref()),
                "header_timeout",
            ),
            (
                settings.and_then(|h| h.idle_timeout.as_ref()),
                "idle_timeout",
            ),
        ] {
            if let Some(s) = v
                && humantime::parse_duration(s.value.trim()).is_ok_and(|d| d.is_zero())
            {
                self.problem(s, format!("http.{key} must be longer than zero"));
            }
        }
        let mut routes: Vec<Arc<HttpRoute>> = Vec::new();
        let mut seen: HashMap<(String, String), ()> = HashMap::new();
        let mut names: HashSet<String> = HashSet::new();
        for r in &raw.http_routes {
            let Some(route) = self.http_route(r, web_origin.as_ref()) else {
                continue;
            };
            let at = r.value.from.as_ref();
            if seen
                .insert((route.host.clone(), route.path_prefix.clone()), ())
                .is_some()
                && let Some(at) = at
            {
                self.problem(
                    at,
                    format!(
                        "another http route already serves {}{}",
                        route.host, route.path_prefix
                    ),
                );
            }
            if !names.insert(route.name.clone()) {
                match &r.value.name {
                    Some(n) => self.problem(n, format!("http route {:?} is named twice", n.value)),
                    None => self.problem(r, format!("http route {:?} is named twice", route.name)),
                }
            }
            routes.push(Arc::new(route));
        }
        // Most specific first: the longest prefix on a host wins.
        routes.sort_by(|a, b| {
            a.host
                .cmp(&b.host)
                .then(b.path_prefix.len().cmp(&a.path_prefix.len()))
        });
        Some(HttpConfig {
            signing_key,
            assertion_ttl,
            connect_timeout,
            header_timeout,
            idle_timeout,
            routes,
        })
    }

    fn http_route(
        &mut self,
        r: &S<RawHttpRoute>,
        web_origin: Option<&url::Url>,
    ) -> Option<HttpRoute> {
        let raw = &r.value;
        let Some(from) = &raw.from else {
            self.problem(
                r,
                "an http route needs from: the host it serves, e.g. grafana.example.com",
            );
            return None;
        };
        // Everything else is checked even when `from` is bad, so that every
        // problem is reported at once.
        let served = self.route_from(from, web_origin);
        let (host, path_prefix, origin) = served.clone().unwrap_or_default();
        let name = match &raw.name {
            Some(n) if n.value.trim().is_empty() || n.value.chars().any(char::is_control) => {
                self.problem(n, "an http route's name must be printable text");
                n.value.clone()
            }
            Some(n) => n.value.trim().to_owned(),
            None if path_prefix == "/" => host.clone(),
            None => format!("{host}{}", path_prefix.trim_end_matches('/')),
        };
        let upstreams = match &raw.to {
            None => {
                self.problem(
                    r,
                    "an http route needs to: the upstream URL(s), e.g. http://127.0.0.1:3000",
                );
                Vec::new()
            }
            Some(to) => match &to.value {
                RawUpstreams::One(url) => {
                    let at = S {
                        value: url.clone(),
                        referenced: to.referenced,
                        defined: to.defined,
                    };
                    self.upstream(&at).into_iter().collect()
                }
                RawUpstreams::Many(list) => {
                    if list.is_empty() {
                        self.problem(to, "to: lists no upstream");
                    }
                    list.iter().filter_map(|u| self.upstream(u)).collect()
                }
            },
        };
        let upstream_ca = raw.upstream_ca.as_ref().map(|s| {
            let p = self.path(&s.value);
            if let Err(e) = std::fs::read(&p) {
                self.problem(s, format!("cannot read {}: {e}", p.display()));
            }
            p
        });
        let h2c = raw.h2c.as_ref().is_some_and(|s| s.value);
        if let Some(s) = &raw.h2c
            && s.value
            && upstreams.iter().any(|u| u.tls)
        {
            self.problem(
                s,
                "h2c is HTTP/2 without TLS: it applies to http:// upstreams only",
            );
        }
        let policy = match raw.policy.as_ref().map(policy::lang::compile_http) {
            None => {
                self.problem(
                    r,
                    format!(
                        "http route {name:?} has no policy: write policy: {{rules: [...]}} \
                         (anything no rule allows is denied)"
                    ),
                );
                CompiledHttpPolicy::default()
            }
            Some(Ok(p)) => p,
            Some(Err(errors)) => {
                self.policy_problems(errors);
                CompiledHttpPolicy::default()
            }
        };
        served?;
        Some(HttpRoute {
            name,
            host,
            path_prefix,
            origin,
            upstreams,
            upstream_ca,
            h2c,
            preserve_host: raw.preserve_host.as_ref().is_some_and(|s| s.value),
            identity_headers: raw.identity_headers.as_ref().is_none_or(|s| s.value),
            policy: Arc::new(policy),
        })
    }

    /// `from:` as (host, path prefix, origin). A bare host (with an
    /// optional path) takes its scheme and port from `web.public_url`,
    /// since it is served on the same listener.
    fn route_from(
        &mut self,
        from: &S<String>,
        web_origin: Option<&url::Url>,
    ) -> Option<(String, String, String)> {
        let text = from.value.trim();
        let with_scheme = if text.contains("://") {
            text.to_owned()
        } else {
            let scheme = web_origin.map_or("https", url::Url::scheme);
            let port = web_origin
                .and_then(url::Url::port)
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            match text.split_once('/') {
                Some((host, path)) => format!("{scheme}://{host}{port}/{path}"),
                None => format!("{scheme}://{text}{port}"),
            }
        };
        let parsed = match url::Url::parse(&with_scheme) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            _ => {
                self.problem(
                    from,
                    format!(
                        "bad from {text:?}: write a host name, optionally with a path prefix, \
                         e.g. grafana.example.com or tools.example.com/grafana"
                    ),
                );
                return None;
            }
        };
        let Some(host) = parsed.host_str().map(str::to_ascii_lowercase) else {
            self.problem(from, format!("from {text:?} has no host"));
            return None;
        };
        if parsed.query().is_some()
            || parsed.fragment().is_some()
            || !parsed.username().is_empty()
            || parsed.password().is_some()
        {
            self.problem(
                from,
                format!("from {text:?} must be a host and a path, without query, fragment or user"),
            );
        }
        if let Some(web) = web_origin
            && web
                .host_str()
                .is_some_and(|h| h.eq_ignore_ascii_case(&host))
        {
            self.problem(
                from,
                format!(
                    "from {text:?} is the web app's own host (web.public_url): give each http \
                     route a host of its own"
                ),
            );
        }
        let path = parsed.path();
        if path.contains("/./") || path.contains("/../") || path.contains("//") {
            self.problem(from, format!("from {text:?} has a path that is not normal"));
        }
        let origin = parsed.origin().ascii_serialization();
        Some((host, path.to_owned(), origin))
    }

    fn upstream(&mut self, s: &S<String>) -> Option<Upstream> {
        let text = s.value.trim();
        let bad = |this: &mut Self, why: &str| {
            this.problem(
                s,
                format!("bad upstream {text:?}: {why}; write e.g. http://127.0.0.1:3000"),
            );
            None
        };
        let Ok(u) = url::Url::parse(text) else {
            return bad(self, "not a URL");
        };
        let tls = match u.scheme() {
            "https" => true,
            "http" => false,
            _ => return bad(self, "the scheme must be http or https"),
        };
        let Some(host) = u.host_str() else {
            return bad(self, "no host");
        };
        if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() {
            return bad(self, "no query, fragment or user");
        }
        let port = u
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        let host = host.to_owned();
        let authority = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Some(Upstream {
            tls,
            authority,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            base_path: u.path().trim_end_matches('/').to_owned(),
        })
    }
}
