//! Raw configuration types: exactly what the YAML says. Every value that
//! can be wrong carries its position (`Spanned`), so validation can report
//! file:line:col. Unknown keys are rejected.

use policy::lang::raw as policy_raw;
use serde::Deserialize;
use serde_saphyr::Spanned;

pub(super) type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) listen: Option<S<String>>,
    pub(super) host_keys: Option<Vec<S<String>>>,
    pub(super) user_ca: Option<S<String>>,
    pub(super) state_dir: Option<S<String>>,
    pub(super) gateway_id: Option<S<String>>,
    #[serde(default)]
    pub(super) limits: RawLimits,
    pub(super) idp: Option<S<RawIdp>>,
    pub(super) login_ttl: Option<S<String>>,
    pub(super) web: Option<S<RawWeb>>,
    /// Load balancers whose PROXY protocol headers the SSH listener (and
    /// the edge) believes.
    #[serde(default)]
    pub(super) trusted_proxies: Vec<S<String>>,
    /// One port for SSH, TLS and HTTP.
    pub(super) edge: Option<S<RawEdge>>,
    /// The metrics and health listener (issue 16).
    pub(super) metrics: Option<S<RawMetrics>>,
    /// Settings every HTTP route shares.
    pub(super) http: Option<S<RawHttp>>,
    /// The identity-aware HTTP proxy's routes.
    #[serde(default)]
    pub(super) http_routes: Vec<S<RawHttpRoute>>,
    /// OpenTelemetry traces (issue 16).
    pub(super) tracing: Option<S<RawTracing>>,
    #[serde(default)]
    pub(super) recording: RawRecording,
    #[serde(default)]
    pub(super) identities: Vec<RawIdentity>,
    /// Shared policies, referenced by name from routes.
    #[serde(default)]
    pub(super) policies: policy_raw::Named<policy_raw::PolicyDoc>,
    pub(super) reevaluate_interval: Option<S<String>>,
    #[serde(default)]
    pub(super) routes: Vec<RawRoute>,
    /// Who gets a certificate for their own key (issue 16).
    pub(super) direct_access: Option<policy_raw::DirectAccess>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_connections: Option<S<u64>>,
    pub(super) max_unauthenticated: Option<S<u64>>,
    pub(super) auth_timeout: Option<S<String>>,
    pub(super) auth_rejection_delay: Option<S<String>>,
    pub(super) connect_timeout: Option<S<String>>,
    pub(super) idle_timeout: Option<S<String>>,
    pub(super) keepalive_interval: Option<S<String>>,
    pub(super) max_sign_ins: Option<S<u64>>,
    pub(super) max_sign_ins_per_source: Option<S<u64>>,
    pub(super) max_unauthenticated_per_source: Option<S<u64>>,
    pub(super) source_netblock_v4: Option<S<u64>>,
    pub(super) source_netblock_v6: Option<S<u64>>,
    pub(super) handshake_timeout: Option<S<String>>,
    pub(super) max_preauth_bytes: Option<S<u64>>,
    #[serde(default)]
    pub(super) penalties: RawPenalties,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPenalties {
    pub(super) enabled: Option<bool>,
    pub(super) authfail: Option<S<String>>,
    pub(super) noauth: Option<S<String>>,
    pub(super) grace_exceeded: Option<S<String>>,
    pub(super) min: Option<S<String>>,
    pub(super) max: Option<S<String>>,
    pub(super) max_sources: Option<S<u64>>,
    #[serde(default)]
    pub(super) exempt: Vec<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecording {
    pub(super) storage: Option<S<String>>,
    pub(super) s3_endpoint: Option<S<String>>,
    pub(super) s3_region: Option<S<String>>,
    pub(super) s3_virtual_hosted_style: Option<bool>,
    pub(super) s3_credentials_file: Option<S<String>>,
    pub(super) spool_dir: Option<S<String>>,
    pub(super) spool_max_bytes: Option<S<u64>>,
    pub(super) segment_interval: Option<S<String>>,
    pub(super) segment_bytes: Option<S<u64>>,
    pub(super) strict_grace: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdp {
    pub(super) issuer: Option<S<String>>,
    pub(super) client_id: Option<S<String>>,
    pub(super) client_secret_file: Option<S<String>>,
    pub(super) scopes: Option<Vec<S<String>>>,
    pub(super) groups_claim: Option<S<String>>,
    pub(super) poll_interval: Option<S<String>>,
    #[serde(default)]
    pub(super) allowed_domains: Vec<S<String>>,
    pub(super) http_timeout: Option<S<String>>,
    pub(super) ssh_sign_in: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdentity {
    pub(super) name: S<String>,
    pub(super) email: Option<S<String>>,
    #[serde(default)]
    pub(super) groups: Vec<S<String>>,
    #[serde(default)]
    pub(super) keys: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) name: S<String>,
    pub(super) target: Option<S<String>>,
    #[serde(default)]
    pub(super) logins: Vec<S<String>>,
    pub(super) host_key: Option<S<String>>,
    pub(super) host_ca: Option<S<String>>,
    pub(super) policy: Option<S<policy_raw::RoutePolicy>>,
    pub(super) source_address: Option<Vec<S<String>>>,
    pub(super) connect_timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeb {
    pub(super) listen: Option<S<String>>,
    pub(super) public_url: Option<S<String>>,
    pub(super) tls: Option<S<RawTls>>,
    pub(super) plain_http: Option<S<bool>>,
    #[serde(default)]
    pub(super) trusted_proxies: Vec<S<String>>,
    pub(super) session_idle: Option<S<String>>,
    pub(super) session_lifetime: Option<S<String>>,
    /// Who may do what with recorded sessions.
    pub(super) access: Option<policy_raw::AccessPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert: Option<S<String>>,
    pub(super) key: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub(super) signing_key: Option<S<String>>,
    pub(super) assertion_ttl: Option<S<String>>,
    pub(super) connect_timeout: Option<S<String>>,
    pub(super) header_timeout: Option<S<String>>,
    pub(super) idle_timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttpRoute {
    pub(super) name: Option<S<String>>,
    pub(super) from: Option<S<String>>,
    pub(super) to: Option<S<RawUpstreams>>,
    pub(super) upstream_ca: Option<S<String>>,
    pub(super) h2c: Option<S<bool>>,
    pub(super) preserve_host: Option<S<bool>>,
    pub(super) identity_headers: Option<S<bool>>,
    pub(super) policy: Option<policy_raw::HttpPolicy>,
}

/// One upstream URL or a list of them.
#[derive(Debug)]
pub(super) enum RawUpstreams {
    One(String),
    Many(Vec<S<String>>),
}

impl<'de> Deserialize<'de> for RawUpstreams {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawUpstreams;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an upstream URL or a list of them")
            }
            fn visit_str<E>(self, v: &str) -> Result<RawUpstreams, E> {
                Ok(RawUpstreams::One(v.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawUpstreams, A::Error> {
                let mut out = Vec::new();
                while let Some(url) = seq.next_element::<S<String>>()? {
                    out.push(url);
                }
                Ok(RawUpstreams::Many(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEdge {
    pub(super) listen: Option<S<String>>,
    pub(super) tls: Option<S<RawTls>>,
    #[serde(default)]
    pub(super) trusted_proxies: Option<Vec<S<String>>>,
    pub(super) silent_client: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTracing {
    pub(super) otlp_endpoint: Option<S<String>>,
    pub(super) service_name: Option<S<String>>,
    pub(super) sample_ratio: Option<S<f64>>,
}
