//! The `edge:` section: one port for SSH, TLS and HTTP (issue 16).

use super::*;

/// A client silent this long is SSH (sslh's default, in spirit).
const DEFAULT_SILENT_CLIENT: Duration = Duration::from_secs(3);

impl Validator {
    pub(super) fn edge(
        &mut self,
        raw: &RawConfig,
        trusted: &[ipnet::IpNet],
        has_web: bool,
    ) -> Option<EdgeSettings> {
        let section = raw.edge.as_ref()?;
        let e = &section.value;
        let listen = match &e.listen {
            None => {
                self.problem(section, "edge.listen is required, e.g. 0.0.0.0:443");
                SocketAddr::from(([127, 0, 0, 1], 0))
            }
            Some(s) => s.value.parse::<SocketAddr>().unwrap_or_else(|_| {
                self.problem(
                    s,
                    format!(
                        "bad edge.listen address {:?}: write IP:PORT, e.g. 0.0.0.0:443",
                        s.value
                    ),
                );
                SocketAddr::from(([127, 0, 0, 1], 0))
            }),
        };
        let tls = e.tls.as_ref().map(|tls| {
            let mut file = |v: &Option<S<String>>, key: &str| -> PathBuf {
                match v {
                    None => {
                        self.problem(tls, format!("edge.tls.{key} is required (a PEM file)"));
                        PathBuf::new()
                    }
                    Some(s) => {
                        let p = self.path(&s.value);
                        if let Err(err) = std::fs::File::open(&p) {
                            self.problem(s, format!("cannot read {}: {err}", p.display()));
                        }
                        p
                    }
                }
            };
            (file(&tls.value.cert, "cert"), file(&tls.value.key, "key"))
        });
        if tls.is_none() && has_web {
            self.problem(
                section,
                "edge needs tls: {cert, key} to carry the web listener's HTTPS (and SSH in TLS)",
            );
        }
        let trusted_proxies = match &e.trusted_proxies {
            Some(list) => self.networks(list, |text| {
                format!("bad trusted proxy {text:?}: write an address or a CIDR block")
            }),
            None => trusted.to_vec(),
        };
        let silent_client = match &e.silent_client {
            None => DEFAULT_SILENT_CLIENT,
            Some(_) => {
                let d = self.duration(&e.silent_client, DEFAULT_SILENT_CLIENT);
                if let Some(s) = &e.silent_client
                    && !(Duration::from_millis(100)..=Duration::from_secs(30)).contains(&d)
                {
                    self.problem(s, "edge.silent_client must be between 100ms and 30s");
                }
                d
            }
        };
        Some(EdgeSettings {
            listen,
            tls,
            trusted_proxies,
            silent_client,
        })
    }
}
