//! The web listener: the web app (recordings, sign-in, SSH sign-in links)
//! and the identity-aware HTTP proxy's routes, in `gatehouse serve` when
//! the configuration has a `web:` section, or alone in `gatehouse web`
//! for a host that has the storage and the state database but runs no
//! SSH. Also `gatehouse http rotate-key`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use crate::load_config;

/// The web listener, started: the future that serves it, and its service
/// for connections the edge listener hands over.
pub(crate) struct Started<F> {
    pub(crate) run: F,
    pub(crate) service: http_proxy::Dispatch,
}

/// Starts the web listener of `config` (which must have a `web:`
/// section) and prints `web listening on ADDR for URL`; returns the
/// future that serves until `stop`.
pub(crate) async fn start(
    config: &config::Config,
    metrics: &Arc<telemetry::Metrics>,
    stop: CancellationToken,
) -> Result<Option<Started<impl std::future::Future<Output = ()> + use<>>>> {
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
    let mut app = web_replay::App::new(
        web.clone(),
        identity::LazyIdp::new(sign_in.idp.clone()),
        Arc::clone(&store),
        catalog,
        trusted,
        Some(recorder.spool_dir.clone()),
        recorder.segment_interval,
    );
    let proxy = match &config.http {
        Some(http) => Some(
            http_proxy::Proxy::start(
                http.clone(),
                &web.public_url,
                web.trusted_proxies.clone(),
                Arc::clone(&store),
                Arc::clone(metrics),
                &stop,
            )
            .context("cannot start the HTTP proxy")?,
        ),
        None => None,
    };
    if let Some(proxy) = &proxy {
        let proxy = Arc::clone(proxy);
        app = app.with_route_origins(Arc::new(move |origin| proxy.serves_origin(origin)));
    }
    let app = Arc::new(app);
    let tls = match &web.transport {
        config::WebTransport::Tls { cert, key } => {
            Some(web_front::tls_acceptor(cert, key, web_front::WEB_ALPN)?)
        }
        config::WebTransport::PlainHttp => None,
    };
    let (listener, addr) = web_front::bind(web.listen).await?;
    web_replay::start(&app, &stop);
    let router = web_replay::router(app);
    let service = match &proxy {
        Some(proxy) => {
            // Routes and policies follow the file: a reload applies to the
            // next request and re-checks open WebSockets.
            let reloaded = Arc::clone(proxy);
            tokio::spawn(config::follow(
                config.source.clone(),
                stop.clone(),
                move |loaded, trigger| match loaded {
                    Ok(new) => match new.http {
                        Some(http) => {
                            let routes = http.routes.len();
                            match reloaded.reload(http) {
                                Ok(()) => {
                                    tracing::info!(trigger, routes, "HTTP routes reloaded")
                                }
                                Err(e) => {
                                    tracing::warn!(trigger, error = %e, "HTTP routes not reloaded")
                                }
                            }
                        }
                        None => tracing::warn!(
                            trigger,
                            "the file has no http_routes any more; restart to stop serving them"
                        ),
                    },
                    Err(errors) => tracing::warn!(
                        trigger,
                        problems = errors.0.len(),
                        "HTTP routes not reloaded: the file has problems"
                    ),
                },
            ));
            proxy.dispatch(router)
        }
        None => http_proxy::Dispatch::web_only(router),
    };
    let run = web_front::serve(
        listener,
        tls,
        web.trusted_proxies.clone(),
        service.clone(),
        stop,
    );
    // Tests and scripts read this line to learn the port.
    let mut out = std::io::stdout();
    writeln!(out, "web listening on {addr} for {}", web.public_url)?;
    out.flush()?;
    Ok(Some(Started { run, service }))
}

/// Starts the edge listener of `config` (an `edge:` section): SSH goes to
/// `ssh` (the gateway), HTTP and TLS other than ALPN `ssh` to the web
/// listener's `web` service. Prints `edge listening on ADDR`.
pub(crate) async fn start_edge(
    config: &config::Config,
    ssh: tokio::sync::mpsc::Sender<gateway::Incoming>,
    web: Option<http_proxy::Dispatch>,
    stop: CancellationToken,
) -> Result<Option<impl std::future::Future<Output = ()> + use<>>> {
    let Some(settings) = &config.edge else {
        return Ok(None);
    };
    let tls = match &settings.tls {
        Some((cert, key)) => Some(web_front::tls_acceptor(
            cert,
            key,
            &[edge::ALPN_SSH, b"h2", b"http/1.1"],
        )?),
        None => None,
    };
    let (listener, addr) = web_front::bind(settings.listen).await?;
    let web_stop = stop.clone();
    let targets = edge::Targets {
        ssh: Arc::new(move |io, client, route_hint| {
            // The gateway's accept loop takes it from here, under the same
            // caps; when it is not keeping up, the connection is dropped.
            let handed = gateway::Incoming {
                io,
                client,
                route_hint,
            };
            if ssh.try_send(handed).is_err() {
                tracing::warn!(%client, "edge: the SSH server is not taking connections");
            }
        }),
        web: Arc::new(move |io, client, tls| match &web {
            Some(service) => {
                web_front::serve_io(io, client, tls, service.clone(), web_stop.clone());
            }
            None => tracing::debug!(%client, "edge: HTTP, but there is no web section"),
        }),
        // Whatever the authority, a CONNECT reaches only this gateway's
        // own SSH server (the edge opens no connection elsewhere); a host
        // that names a route is where a bare `LOGIN` goes.
        connect: Arc::new(|_| true),
    };
    let run = edge::serve(
        listener,
        edge::EdgeConfig {
            tls,
            trusted_proxies: settings.trusted_proxies.clone(),
            silent_client: settings.silent_client,
        },
        targets,
        stop,
    );
    let mut out = std::io::stdout();
    writeln!(out, "edge listening on {addr}")?;
    out.flush()?;
    Ok(Some(run))
}

/// `gatehouse web --config FILE`.
pub(crate) fn run(path: &Path, format: crate::LogFormat) -> Result<ExitCode> {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if let Some(code) = crate::refuse_tracing(&config) {
        return Ok(code);
    }
    if config.web.is_none() {
        eprintln!("{}: there is no web section to serve", path.display());
        return Ok(ExitCode::from(2));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Dropped (and so flushed) after the server stops, before the runtime.
    let _traces = crate::start_logging(format, &config, &runtime)?;
    runtime.block_on(async move {
        let stop = CancellationToken::new();
        let signals = stop.clone();
        tokio::spawn(async move {
            crate::wait_for_stop_signal().await;
            tracing::info!("stop requested");
            signals.cancel();
        });
        let metrics = Arc::new(telemetry::Metrics::new());
        if let Some(started) = start(&config, &metrics, stop.clone()).await? {
            crate::metrics::start(&config, &metrics, &stop).await?;
            started.run.await;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `gatehouse http ...`.
#[derive(Subcommand)]
pub(crate) enum HttpCommand {
    /// Put a new key first in the HTTP proxy's signing key file; the
    /// previous key stays published in the JWKS so upstreams keep
    /// accepting assertions signed with it until they expire.
    #[command(
        after_help = "Example:\n  gatehouse http rotate-key --config /etc/gatehouse/gatehouse.yaml\n\n\
        Running proxies pick the new key up within a few seconds. Upstreams that cached \
        the JWKS fetch it again when they meet the new key id."
    )]
    RotateKey {
        /// The configuration file (for http.signing_key).
        #[arg(long, short)]
        config: PathBuf,
        /// How many keys to keep in the file, the new one included.
        #[arg(long, default_value_t = 2)]
        keep: usize,
    },
}

pub(crate) fn run_http(command: HttpCommand) -> Result<ExitCode> {
    match command {
        HttpCommand::RotateKey { config, keep } => {
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let Some(http) = &config.http else {
                eprintln!("the configuration has no http_routes");
                return Ok(ExitCode::from(2));
            };
            let kid = http_proxy::rotate(&http.signing_key, keep.max(1))?;
            println!(
                "{}: new signing key {kid} first; {} key{} published",
                http.signing_key.display(),
                keep.max(1),
                if keep.max(1) == 1 { "" } else { "s" }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
