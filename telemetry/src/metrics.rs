//! [`Metrics`]: every metric family of one Gatehouse process, in one
//! registry.
//!
//! Counters and gauges are prometheus-client's atomics. Families with
//! closed labels ([`crate::labels`]) resolve every child once, here, so a
//! count on a hot path is one atomic add, with no map lookup and no lock;
//! every series of such a family is exported from the start (at zero),
//! which is what `rate()` and alerting on absence want.

use std::fmt::Write as _;
use std::marker::PhantomData;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::text::encode_registry;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::labels::{
    AuthMethod, AuthResult, ChannelKind, ConnectionResult, DialFailure, Direction, EndCause,
    HandshakeResult, Label, PolicyPhase, PolicyResult, PreauthReason, RecordingOutcome,
    SignInResult, StatusClass,
};

/// One closed label.
type One = [(&'static str, &'static str); 1];
/// Two closed labels.
type Two = [(&'static str, &'static str); 2];
/// A histogram family's constructor.
type MakeHistogram = fn() -> Histogram;
/// An HTTP route's name (from the configuration) and a status class.
type HttpLabels = ([(&'static str, String); 1], One);

/// The children of a family with one closed label, resolved once.
pub struct ByLabel<L: Label, M> {
    children: Vec<M>,
    label: PhantomData<L>,
}

impl<L: Label, M: Clone> ByLabel<L, M> {
    fn new<C>(family: &Family<One, M, C>) -> Self
    where
        C: prometheus_client::metrics::family::MetricConstructor<M>,
    {
        ByLabel {
            children: L::ALL
                .iter()
                .map(|l| family.get_or_create_owned(&[(L::KEY, l.as_str())]))
                .collect(),
            label: PhantomData,
        }
    }

    /// The child for `label`.
    pub fn get(&self, label: L) -> Option<&M> {
        self.children.get(label.index())
    }
}

/// The children of a family with two closed labels, resolved once.
pub struct ByTwo<A: Label, B: Label, M> {
    children: Vec<M>,
    labels: PhantomData<(A, B)>,
}

impl<A: Label, B: Label, M: Clone> ByTwo<A, B, M> {
    fn new(family: &Family<Two, M>) -> Self {
        let mut children = Vec::with_capacity(A::ALL.len() * B::ALL.len());
        for a in A::ALL {
            for b in B::ALL {
                children.push(
                    family.get_or_create_owned(&[(A::KEY, a.as_str()), (B::KEY, b.as_str())]),
                );
            }
        }
        ByTwo {
            children,
            labels: PhantomData,
        }
    }

    /// The child for `a` and `b`.
    pub fn get(&self, a: A, b: B) -> Option<&M> {
        self.children.get(a.index() * B::ALL.len() + b.index())
    }
}

/// Updates sampled gauges just before an exposition is written.
type Sampler = Box<dyn Fn(&Metrics) + Send + Sync>;

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Every metric family of one process. Shared as `Arc<Metrics>`; each
/// method is a count or an observation on an atomic.
pub struct Metrics {
    registry: Registry,
    samplers: Mutex<Vec<Sampler>>,

    connections_active: Gauge,
    connections: ByLabel<ConnectionResult, Counter>,
    handshakes: ByLabel<HandshakeResult, Counter>,
    auth_attempts: ByTwo<AuthMethod, AuthResult, Counter>,
    preauth_rejected: ByLabel<PreauthReason, Counter>,
    sign_ins: ByLabel<SignInResult, Counter>,
    policy_decisions: ByTwo<PolicyPhase, PolicyResult, Counter>,
    sessions_live: Gauge,
    session_duration: Histogram,
    sessions_ended: ByLabel<EndCause, Counter>,
    revocation_close: Histogram,
    dial_seconds: Histogram,
    dial_failures: ByLabel<DialFailure, Counter>,
    /// Resolved per kind and direction: the pumps add once per chunk.
    bytes: ByTwo<ChannelKind, Direction, Counter>,
    spool_bytes: Gauge,
    upload_lag: Histogram,
    upload_failures: Counter,
    recordings: ByLabel<RecordingOutcome, Counter>,
    /// By operation name (a method of `state::Store`): a closed set the
    /// code defines, resolved at the first call of each.
    state_seconds: Family<One, Histogram, MakeHistogram>,
    state_errors: Family<One, Counter>,
    /// By configured route name and status class.
    http_requests: Family<HttpLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every family, all at zero.
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("gatehouse");

        let connections_active = Gauge::default();
        r.register(
            "ssh_connections_active",
            "SSH client connections open now, authenticated or not",
            connections_active.clone(),
        );
        let connections = Family::<One, Counter>::default();
        r.register(
            "ssh_connections",
            "SSH client connections that ended (or were refused at accept), by result",
            connections.clone(),
        );
        let handshakes = Family::<One, Counter>::default();
        r.register(
            "ssh_handshakes",
            "SSH version and key exchanges, by result",
            handshakes.clone(),
        );
        let auth_attempts = Family::<Two, Counter>::default();
        r.register(
            "ssh_auth_attempts",
            "SSH authentication requests, by method and the gateway's answer",
            auth_attempts.clone(),
        );
        let preauth_rejected = Family::<One, Counter>::default();
        r.register(
            "ssh_preauth_rejected",
            "Connections refused or dropped before authenticating, by reason",
            preauth_rejected.clone(),
        );
        let sign_ins = Family::<One, Counter>::default();
        r.register(
            "sign_ins",
            "Sign-ins at the identity provider (device code or link), by result",
            sign_ins.clone(),
        );
        let policy_decisions = Family::<Two, Counter>::default();
        r.register(
            "policy_decisions",
            "Route policy decisions for SSH sessions, at login or re-evaluation, by result",
            policy_decisions.clone(),
        );
        let sessions_live = Gauge::default();
        r.register(
            "ssh_sessions_live",
            "Authenticated SSH sessions live now",
            sessions_live.clone(),
        );
        let session_duration = Histogram::new(exponential_buckets(1.0, 4.0, 9));
        r.register_with_unit(
            "ssh_session_duration",
            "Length of authenticated SSH sessions, from accept to close",
            Unit::Seconds,
            session_duration.clone(),
        );
        let sessions_ended = Family::<One, Counter>::default();
        r.register(
            "ssh_sessions_ended_by_gateway",
            "Live sessions the gateway ended, by cause",
            sessions_ended.clone(),
        );
        let revocation_close = Histogram::new(exponential_buckets(0.05, 2.0, 10));
        r.register_with_unit(
            "revocation_close",
            "From the gateway finding a revoked sign-in in the state database to the session's connection closed",
            Unit::Seconds,
            revocation_close.clone(),
        );
        let dial_seconds = Histogram::new(exponential_buckets(0.005, 2.5, 9));
        r.register_with_unit(
            "upstream_dial",
            "Time to reach a target and log in with a certificate, for dials that succeeded",
            Unit::Seconds,
            dial_seconds.clone(),
        );
        let dial_failures = Family::<One, Counter>::default();
        r.register(
            "upstream_dial_failures",
            "Dials to targets that failed, by kind",
            dial_failures.clone(),
        );
        let bytes = Family::<Two, Counter>::default();
        r.register_with_unit(
            "proxied",
            "Bytes proxied between clients and targets, by channel kind and direction",
            Unit::Bytes,
            bytes.clone(),
        );
        let spool_bytes = Gauge::default();
        r.register_with_unit(
            "recording_spool",
            "Bytes in the recording spool on local disk",
            Unit::Bytes,
            spool_bytes.clone(),
        );
        let upload_lag = Histogram::new(exponential_buckets(0.1, 3.0, 9));
        r.register_with_unit(
            "recording_upload_lag",
            "From recorded bytes waiting for storage to their upload, per upload pass",
            Unit::Seconds,
            upload_lag.clone(),
        );
        let upload_failures = Counter::default();
        r.register(
            "recording_upload_failures",
            "Recording upload passes that failed (storage unavailable or refusing)",
            upload_failures.clone(),
        );
        let recordings = Family::<One, Counter>::default();
        r.register(
            "recordings_finished",
            "Recordings finished, by status",
            recordings.clone(),
        );
        let state_seconds: Family<One, Histogram, MakeHistogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 3.0, 10)));
        r.register_with_unit(
            "state_backend",
            "Latency of state database operations, by operation",
            Unit::Seconds,
            state_seconds.clone(),
        );
        let state_errors = Family::<One, Counter>::default();
        r.register(
            "state_backend_errors",
            "State database operations that failed, by operation",
            state_errors.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        r.register(
            "http_requests",
            "Requests to HTTP routes, by configured route name and status class",
            http_requests.clone(),
        );

        Metrics {
            registry: r,
            samplers: Mutex::new(Vec::new()),
            connections_active,
            connections: ByLabel::new(&connections),
            handshakes: ByLabel::new(&handshakes),
            auth_attempts: ByTwo::new(&auth_attempts),
            preauth_rejected: ByLabel::new(&preauth_rejected),
            sign_ins: ByLabel::new(&sign_ins),
            policy_decisions: ByTwo::new(&policy_decisions),
            sessions_live,
            session_duration,
            sessions_ended: ByLabel::new(&sessions_ended),
            revocation_close,
            dial_seconds,
            dial_failures: ByLabel::new(&dial_failures),
            bytes: ByTwo::new(&bytes),
            spool_bytes,
            upload_lag,
            upload_failures,
            recordings: ByLabel::new(&recordings),
            state_seconds,
            state_errors,
            http_requests,
        }
    }

    /// Runs `sample` before every exposition, to set gauges from state
    /// that is cheaper to read than to track (the spool's size).
    pub fn sample(&self, sample: impl Fn(&Metrics) + Send + Sync + 'static) {
        self.samplers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(sample));
    }

    /// The exposition in the Prometheus text format (0.0.4), which every
    /// Prometheus and `promtool check metrics` read.
    pub fn encode_prometheus(&self) -> Result<String, crate::Error> {
        Ok(openmetrics_to_prometheus(&self.encode_openmetrics()?))
    }

    /// The exposition in the OpenMetrics text format, `# EOF` included.
    pub fn encode_openmetrics(&self) -> Result<String, crate::Error> {
        for sample in self
            .samplers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            sample(self);
        }
        let mut out = String::new();
        encode_registry(&mut out, &self.registry).map_err(|_| crate::Error::Encode)?;
        out.push_str("# EOF\n");
        Ok(out)
    }

    // SSH connections.

    /// A client connection is being served; the guard counts it as active
    /// until dropped.
    pub fn connection_opened(&self) -> ActiveGuard {
        self.connections_active.inc();
        ActiveGuard(self.connections_active.clone())
    }

    /// A client connection ended (or was refused) with `result`.
    pub fn connection(&self, result: ConnectionResult) {
        if let Some(c) = self.connections.get(result) {
            c.inc();
        }
    }

    /// A version and key exchange ended with `result`.
    pub fn handshake(&self, result: HandshakeResult) {
        if let Some(c) = self.handshakes.get(result) {
            c.inc();
        }
    }

    /// An authentication request, and what it was answered.
    pub fn auth_attempt(&self, method: AuthMethod, result: AuthResult) {
        if let Some(c) = self.auth_attempts.get(method, result) {
            c.inc();
        }
    }

    /// A connection refused or dropped before authenticating.
    pub fn preauth_rejected(&self, reason: PreauthReason) {
        if let Some(c) = self.preauth_rejected.get(reason) {
            c.inc();
        }
    }

    /// A sign-in step.
    pub fn sign_in(&self, result: SignInResult) {
        if let Some(c) = self.sign_ins.get(result) {
            c.inc();
        }
    }

    /// A route policy decision.
    pub fn policy_decision(&self, phase: PolicyPhase, allowed: bool) {
        let result = if allowed {
            PolicyResult::Allow
        } else {
            PolicyResult::Deny
        };
        if let Some(c) = self.policy_decisions.get(phase, result) {
            c.inc();
        }
    }

    /// A session became live; the guard counts it until dropped.
    pub fn session_live(&self) -> ActiveGuard {
        self.sessions_live.inc();
        ActiveGuard(self.sessions_live.clone())
    }

    /// An authenticated session closed after `length`.
    pub fn session_closed(&self, length: Duration) {
        self.session_duration.observe(seconds(length));
    }

    /// The gateway ended a live session.
    pub fn session_ended(&self, cause: EndCause) {
        if let Some(c) = self.sessions_ended.get(cause) {
            c.inc();
        }
    }

    /// A session whose sign-in was revoked closed `after` the gateway
    /// found the revocation.
    pub fn revocation_closed(&self, after: Duration) {
        self.revocation_close.observe(seconds(after));
    }

    // Targets.

    /// A target was reached and logged into in `took`.
    pub fn dialed(&self, took: Duration) {
        self.dial_seconds.observe(seconds(took));
    }

    /// A dial failed.
    pub fn dial_failed(&self, kind: DialFailure) {
        if let Some(c) = self.dial_failures.get(kind) {
            c.inc();
        }
    }

    /// The counter of bytes of `kind` going `direction`; pumps keep it and
    /// add once per chunk.
    pub fn bytes(&self, kind: ChannelKind, direction: Direction) -> Counter {
        self.bytes.get(kind, direction).cloned().unwrap_or_default()
    }

    // Recording.

    /// Sets the spool's size (a sampler calls this).
    pub fn set_spool_bytes(&self, bytes: u64) {
        self.spool_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Recorded bytes reached storage `after` they started waiting.
    pub fn upload_lag(&self, after: Duration) {
        self.upload_lag.observe(seconds(after));
    }

    /// An upload pass failed.
    pub fn upload_failed(&self) {
        self.upload_failures.inc();
    }

    /// A recording finished with `outcome`.
    pub fn recording_finished(&self, outcome: RecordingOutcome) {
        if let Some(c) = self.recordings.get(outcome) {
            c.inc();
        }
    }

    // State database.

    /// A state database operation took `took`; `failed` if it returned an
    /// error.
    pub fn state_operation(&self, operation: &'static str, took: Duration, failed: bool) {
        let labels = [("op", operation)];
        self.state_seconds
            .get_or_create(&labels)
            .observe(seconds(took));
        if failed {
            self.state_errors.get_or_create(&labels).inc();
        }
    }

    // HTTP proxy.

    /// A request to the HTTP route named `route` was answered `status`.
    pub fn http_request(&self, route: &str, status: u16) {
        let labels = (
            [("route", route.to_owned())],
            [("status", StatusClass::of(status).as_str())],
        );
        self.http_requests.get_or_create(&labels).inc();
    }
}

/// Holds a gauge up by one until dropped.
#[derive(Debug)]
pub struct ActiveGuard(Gauge);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Rewrites an OpenMetrics exposition as the Prometheus text format: a
/// counter family is named with its `_total` suffix in `# HELP` and
/// `# TYPE`, as its samples are; `# UNIT` and `# EOF` go. The Prometheus
/// text parser (and so `promtool check metrics`) would otherwise take
/// each counter's samples for an untyped family without help.
pub fn openmetrics_to_prometheus(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        if line.starts_with("# HELP ") {
            if let Some(held) = help.take() {
                out.push_str(held);
                out.push('\n');
            }
            help = Some(line);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.splitn(2, ' ');
            let (name, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let suffix = if kind == "counter" && !name.ends_with("_total") {
                "_total"
            } else {
                ""
            };
            if let Some(held) = help.take() {
                match held
                    .strip_prefix("# HELP ")
                    .and_then(|h| h.strip_prefix(name))
                {
                    Some(text) => {
                        let _ = writeln!(out, "# HELP {name}{suffix}{text}");
                    }
                    None => {
                        out.push_str(held);
                        out.push('\n');
                    }
                }
            }
            let _ = writeln!(out, "# TYPE {name}{suffix} {kind}");
            continue;
        }
        if let Some(held) = help.take() {
            out.push_str(held);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(held) = help {
        out.push_str(held);
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_with_total_in_the_prometheus_format() {
        let om = "# HELP a_b Things.\n# TYPE a_b counter\na_b_total{x=\"y\"} 1\n\
                  # HELP c_seconds Time.\n# TYPE c_seconds histogram\n# UNIT c_seconds seconds\n\
                  c_seconds_sum 0.0\n# EOF\n";
        assert_eq!(
            openmetrics_to_prometheus(om),
            "# HELP a_b_total Things.\n# TYPE a_b_total counter\na_b_total{x=\"y\"} 1\n\
             # HELP c_seconds Time.\n# TYPE c_seconds histogram\nc_seconds_sum 0.0\n"
        );
    }

    #[test]
    fn every_closed_series_is_exported_from_the_start() {
        let m = Metrics::new();
        let text = m.encode_prometheus().unwrap();
        assert!(
            text.contains(
                "gatehouse_ssh_auth_attempts_total{method=\"publickey\",result=\"accepted\"} 0"
            ),
            "{text}"
        );
        assert!(text.contains("gatehouse_ssh_preauth_rejected_total{reason=\"auth_timeout\"} 0"));
        assert!(
            text.contains("# TYPE gatehouse_proxied_bytes_total counter"),
            "{text}"
        );
    }

    #[test]
    fn counts_land_in_their_series() {
        let m = Metrics::new();
        m.auth_attempt(AuthMethod::Publickey, AuthResult::Accepted);
        m.policy_decision(PolicyPhase::Login, false);
        m.bytes(ChannelKind::Session, Direction::ToClient)
            .inc_by(42);
        m.http_request("app", 503);
        m.state_operation("revision", Duration::from_millis(2), true);
        {
            let _live = m.session_live();
            assert!(
                m.encode_prometheus()
                    .unwrap()
                    .contains("gatehouse_ssh_sessions_live 1")
            );
        }
        m.sample(|m| m.set_spool_bytes(7));
        let text = m.encode_prometheus().unwrap();
        for want in [
            "gatehouse_ssh_auth_attempts_total{method=\"publickey\",result=\"accepted\"} 1",
            "gatehouse_policy_decisions_total{phase=\"login\",result=\"deny\"} 1",
            "gatehouse_proxied_bytes_total{kind=\"session\",direction=\"to_client\"} 42",
            "gatehouse_http_requests_total{route=\"app\",status=\"5xx\"} 1",
            "gatehouse_state_backend_errors_total{op=\"revision\"} 1",
            "gatehouse_state_backend_seconds_count{op=\"revision\"} 1",
            "gatehouse_ssh_sessions_live 0",
            "gatehouse_recording_spool_bytes 7",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
    }
}
