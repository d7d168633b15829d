//! `gatehouse web`: the web app alone, for a host that has the storage and
//! the state database but runs no SSH; and the web app beside SSH in
//! `gatehouse serve` when the configuration has a `web:` section.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use tokio_util::sync::CancellationToken;

use crate::load_config;

/// Starts the web app of `config` (which must have a `web:` section) and
/// prints `web listening on URL ADDR`; returns the future that serves
/// until `stop`.
pub(crate) async fn start(
    config: &config::Config,
    stop: CancellationToken,
) -> Result<Option<impl std::future::Future<Output = ()> + use<>>> {
    let Some(web) = &config.web else {
        return Ok(None);
    };
    let sign_in = config
        .sign_in
        .as_ref()
        .ok_or_else(|| anyhow!("web needs an idp section"))?;
    let store: Arc<dyn state::Store> =
        Arc::new(state::Sqlite::open(&config.state_dir).context("cannot open the state database")?);
    let recorder = &config.recording.recorder;
    let catalog = recorder::Catalog::open(Arc::clone(&store), &recorder.storage)
        .context("cannot open the recordings")?;
    // Without the host key here (a web-only host may not have it), each
    // recording is checked against the key its signature names.
    let trusted = crate::catalog::recording_signer_public_key(config).ok();
    let app = Arc::new(web_replay::App::new(
        web.clone(),
        identity::LazyIdp::new(sign_in.idp.clone()),
        store,
        catalog,
        trusted,
        Some(recorder.spool_dir.clone()),
        recorder.segment_interval,
    ));
    let tls = match &web.transport {
        config::WebTransport::Tls { cert, key } => Some(web_front::tls_acceptor(cert, key)?),
        config::WebTransport::PlainHttp => None,
    };
    let (listener, addr) = web_front::bind(web.listen).await?;
    web_replay::start(&app, &stop);
    let run = web_front::serve(listener, tls, web_replay::router(app), stop);
    // Tests and scripts read this line to learn the port.
    let mut out = std::io::stdout();
    writeln!(out, "web listening on {addr} for {}", web.public_url)?;
    out.flush()?;
    Ok(Some(run))
}

/// `gatehouse web --config FILE`.
pub(crate) fn run(path: &Path) -> Result<ExitCode> {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if config.web.is_none() {
        eprintln!("{}: there is no web section to serve", path.display());
        return Ok(ExitCode::from(2));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let stop = CancellationToken::new();
        let signals = stop.clone();
        tokio::spawn(async move {
            crate::wait_for_stop_signal().await;
            tracing::info!("stop requested");
            signals.cancel();
        });
        if let Some(run) = start(&config, stop).await? {
            run.await;
        }
        Ok(ExitCode::SUCCESS)
    })
}
