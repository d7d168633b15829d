//! OpenTelemetry traces (feature `otel`, issue 16): the libraries' plain
//! `tracing` spans, bridged by tracing-opentelemetry and exported over
//! OTLP/HTTP with protobuf bodies by a batch span processor.
//!
//! The exporter runs on its own thread and waits on each export with a
//! plain executor, but our reqwest client needs tokio's reactor: every
//! export is therefore spawned onto the gateway's runtime
//! ([`OnRuntime`]). [`Traces`] flushes what is left when it is dropped,
//! which must happen before the runtime goes.

use std::time::Duration;

use anyhow::{Context, Result};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider};
use tracing_subscriber::Layer;
use tracing_subscriber::registry::Registry;

/// A span export that takes longer is abandoned (the batch is dropped).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The tracer provider; dropping it flushes and stops the exporter.
pub(crate) struct Traces {
    provider: SdkTracerProvider,
}

impl Drop for Traces {
    fn drop(&mut self) {
        // Exports the spans still queued; a collector that is down costs at
        // most the export timeout.
        if let Err(e) = self.provider.shutdown() {
            eprintln!("gatehouse: cannot flush traces: {e}");
        }
    }
}

/// Starts the exporter for `config` on `runtime`, and returns the layer
/// that turns `tracing` spans into OpenTelemetry spans.
pub(crate) fn start(
    config: &config::TracingConfig,
    runtime: tokio::runtime::Handle,
) -> Result<(Traces, Box<dyn Layer<Registry> + Send + Sync>)> {
    // reqwest is built without a crypto provider of its own (no aws-lc);
    // Err means one is installed already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(EXPORT_TIMEOUT)
        .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client for traces")?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OnRuntime { client, runtime })
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(config.traces_url())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .with_context(|| {
            format!(
                "cannot set up the OTLP exporter for {}",
                config.traces_url()
            )
        })?;
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        // Decided at a trace's root, followed by its children; a
        // `traceparent` from a browser decides for the proxy's span.
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("gatehouse");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // Spans only: events (audit lines among them) stay in the logs.
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.is_span() && *meta.level() <= tracing::Level::INFO && ours(meta.target())
        }))
        .boxed();
    Ok((Traces { provider }, layer))
}

/// Spans of our crates; the HTTP and SSH libraries' own (and the
/// exporter's requests) stay out of traces.
fn ours(target: &str) -> bool {
    let krate = target.split("::").next().unwrap_or(target);
    matches!(
        krate,
        "gatehouse"
            | "gateway"
            | "http_proxy"
            | "web_front"
            | "web_replay"
            | "recorder"
            | "identity"
            | "state"
            | "edge"
    )
}

/// The exporter's HTTP client: our reqwest client, each request spawned
/// onto the gateway's tokio runtime (the batch processor's thread has no
/// reactor of its own).
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}
