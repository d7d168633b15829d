//! The metrics and health listener of `gatehouse serve` (issue 16), when
//! the configuration has a `metrics:` section: `/metrics` from the
//! process's `telemetry::Metrics`, `/healthz`, and `/readyz` over two
//! probes: the state database (a cheap read) and recording storage (the
//! recorder's probe object, written at most every few seconds).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

/// How long the state database's answer stands: a read per second at most,
/// however often a load balancer asks.
const STATE_CACHE: Duration = Duration::from_secs(1);

/// How long recording storage's answer stands: each probe is a PUT.
const STORAGE_CACHE: Duration = Duration::from_secs(5);

/// The state database answers a read.
struct StateProbe(Arc<dyn state::Store>);

#[async_trait::async_trait]
impl telemetry::Probe for StateProbe {
    fn name(&self) -> &'static str {
        "state database"
    }

    async fn check(&self) -> std::result::Result<(), String> {
        self.0
            .revision()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Recording storage takes a small write (the probe strict routes use).
struct StorageProbe {
    catalog: recorder::Catalog,
    gateway_id: String,
}

#[async_trait::async_trait]
impl telemetry::Probe for StorageProbe {
    fn name(&self) -> &'static str {
        "recording storage"
    }

    async fn check(&self) -> std::result::Result<(), String> {
        self.catalog
            .storage()
            .probe(&self.gateway_id)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Binds the listener of `config.metrics`, if any, prints `metrics
/// listening on ADDR`, and serves it in the background until `stop`.
pub(crate) async fn start(
    config: &config::Config,
    metrics: &Arc<telemetry::Metrics>,
    stop: &CancellationToken,
) -> Result<()> {
    let Some(settings) = &config.metrics else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {} for metrics", settings.listen))?;
    let addr = listener.local_addr()?;
    // Its own handle on the database and storage: the probes ask what a
    // session would need, through the same backends.
    let store = telemetry::store::Timed::wrap(
        Arc::new(
            state::Sqlite::open(&config.state_dir)
                .context("cannot open the state database for /readyz")?,
        ),
        Arc::clone(metrics),
    );
    let catalog = recorder::Catalog::open(Arc::clone(&store), &config.recording.recorder.storage)
        .context("cannot open recording storage for /readyz")?;
    let readiness = telemetry::Readiness::new()
        .with(StateProbe(store), STATE_CACHE)
        .with(
            StorageProbe {
                catalog,
                gateway_id: config.gateway_id.clone(),
            },
            STORAGE_CACHE,
        );
    let served = telemetry::serve::serve(
        listener,
        Arc::clone(metrics),
        Arc::new(readiness),
        stop.clone(),
    );
    tokio::spawn(async move {
        if let Err(e) = served.await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    // Tests and scripts read this line to learn the port.
    let mut out = std::io::stdout();
    writeln!(out, "metrics listening on {addr}")?;
    out.flush()?;
    Ok(())
}
