//! The metrics listener: `/metrics`, `/healthz` and `/readyz` over plain
//! HTTP/1.1 on its own socket, apart from the web listener, so scraping
//! needs no TLS, no cookie and no route, and the web app's users never
//! reach it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{Error, Metrics};

/// The content type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of the OpenMetrics text format.
const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long one readiness probe may take before it counts as failed: a
/// storage backend that never answers must not hang `/readyz`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Something `/readyz` depends on, checked cheaply.
#[async_trait::async_trait]
pub trait Probe: Send + Sync {
    /// What it is, in the one-line reason when it fails (`state`,
    /// `recording storage`).
    fn name(&self) -> &'static str;
    /// `Err` with a short reason when it is not usable.
    async fn check(&self) -> Result<(), String>;
}

/// One probe and its last answer, kept for `cache_for`.
struct Cached {
    probe: Box<dyn Probe>,
    cache_for: Duration,
    /// The last answer and when it was taken. A tokio mutex: requests that
    /// arrive while a probe runs wait for its answer instead of probing
    /// again.
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Cached {
    async fn check(&self) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = last.as_ref()
            && at.elapsed() < self.cache_for
        {
            return answer.clone();
        }
        let answer = match tokio::time::timeout(PROBE_TIMEOUT, self.probe.check()).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {}s", PROBE_TIMEOUT.as_secs())),
        };
        *last = Some((Instant::now(), answer.clone()));
        answer
    }
}

/// What `/readyz` checks, in order; the first failure is the answer.
#[derive(Default)]
pub struct Readiness {
    probes: Vec<Cached>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.probes.iter().map(|p| p.probe.name()))
            .finish()
    }
}

impl Readiness {
    /// No probes: always ready.
    pub fn new() -> Readiness {
        Readiness::default()
    }

    /// Adds `probe`, whose answer is kept for `cache_for` (zero: asked
    /// every time).
    pub fn with(mut self, probe: impl Probe + 'static, cache_for: Duration) -> Readiness {
        self.probes.push(Cached {
            probe: Box::new(probe),
            cache_for,
            last: tokio::sync::Mutex::new(None),
        });
        self
    }

    /// `Ok` when every probe passes, else the first failure as one line:
    /// `NAME: REASON`.
    pub async fn check(&self) -> Result<(), String> {
        for cached in &self.probes {
            if let Err(reason) = cached.check().await {
                let reason = reason.replace(['\n', '\r'], " ");
                return Err(format!("{}: {reason}", cached.probe.name()));
            }
        }
        Ok(())
    }
}

/// What every request of the listener shares.
#[derive(Clone)]
struct Served {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

/// The listener's routes.
pub fn router(metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Served { metrics, readiness })
}

/// Serves the listener on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    axum::serve(listener, router(metrics, readiness))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(Error::Io)
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The exposition: OpenMetrics when the scraper asks for it (Prometheus
/// does), else the Prometheus text format.
async fn metrics_page(State(s): State<Served>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let encoded = if openmetrics {
        s.metrics
            .encode_openmetrics()
            .map(|b| (OPENMETRICS_TEXT, b))
    } else {
        s.metrics.encode_prometheus().map(|b| (PROMETHEUS_TEXT, b))
    };
    match encoded {
        Ok((content_type, body)) => text(StatusCode::OK, content_type, body),
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode the metrics");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                "cannot encode the metrics\n".to_owned(),
            )
        }
    }
}

/// The process is alive and serving.
async fn healthz() -> Response {
    text(
        StatusCode::OK,
        "text/plain; charset=utf-8",
        "ok\n".to_owned(),
    )
}

/// Ready when every probe passes; otherwise 503 with the reason.
async fn readyz(State(s): State<Served>) -> Response {
    match s.readiness.check().await {
        Ok(()) => text(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ready\n".to_owned(),
        ),
        Err(reason) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            format!("not ready: {reason}\n"),
        ),
    }
}
