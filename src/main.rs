//! `gatehouse`: the command-line front of the Gatehouse SSH gateway.
//!
//! A thin layer: each subcommand parses its arguments, calls into the
//! library crates and turns errors into one message and an exit code.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

mod bundle;
mod catalog;
mod follow;
mod hostkey;
mod login;
mod logins;
mod metrics;
#[cfg(feature = "otel")]
mod otel;
mod policy;
mod recordings;
mod replay;
mod text;
mod textindex;
mod tunnel;
mod web;

/// Where `ca init` and `ca show` look when given neither --key nor --config.
const DEFAULT_CA_PATH: &str = "/var/lib/gatehouse/user_ca";

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("GATEHOUSE_COMMIT"), ")"),
    about = "An identity-aware SSH gateway: users run stock `ssh LOGIN@ROUTE@GATEWAY`; \
             Gatehouse checks who they are and dials the target with a short-lived certificate.",
    after_help = "Examples:\n  \
        gatehouse ca init --key /var/lib/gatehouse/user_ca\n  \
        gatehouse check-config /etc/gatehouse/gatehouse.yaml\n  \
        gatehouse serve --config /etc/gatehouse/gatehouse.yaml\n  \
        ssh -p 2222 postgres@prod-db@gatehouse.example.com"
)]
struct Cli {
    /// Log format on stderr. Audit events use the `audit` target in both.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    #[command(
        after_help = "Example:\n  gatehouse serve --config /etc/gatehouse/gatehouse.yaml\n\n\
        Prints `listening on ADDR` on stdout once the socket is bound. \
        SIGTERM or Ctrl-C stop accepting, tell connected users and wait up to 10 s."
    )]
    Serve {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the web app alone (recordings in the browser), for a host with
    /// the storage and the state database but no SSH.
    #[command(
        after_help = "Example:\n  gatehouse web --config /etc/gatehouse/gatehouse.yaml\n\n\
        Serves the config's web section. Prints `web listening on ADDR for URL` on stdout \
        once the socket is bound. `gatehouse serve` serves it beside SSH."
    )]
    Web {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration file and print every problem with file:line:col.
    #[command(after_help = "Example:\n  gatehouse check-config gatehouse.yaml\n\n\
        Exits 0 when the file is valid and 1 when it is not.")]
    CheckConfig {
        /// The configuration file.
        config: PathBuf,
    },
    /// Manage the user CA that signs certificates for targets.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Get a direct-access certificate for your own key from a gateway
    /// and write it beside the key (`KEY-cert.pub`).
    Login(login::LoginArgs),
    /// List and revoke login bindings: keys that signed in through the
    /// identity provider.
    Logins {
        #[command(subcommand)]
        command: logins::LoginsCommand,
    },
    /// List, show and end sessions.
    Sessions {
        #[command(subcommand)]
        command: recordings::SessionsCommand,
    },
    /// Verify, export and reindex session recordings.
    Recordings {
        #[command(subcommand)]
        command: recordings::RecordingsCommand,
    },
    /// Play a session's recording in the terminal: seek, step, search,
    /// markers; or export a time range of it.
    Replay(replay::ReplayArgs),
    /// Ask the policy a question, or test it against a table of expected
    /// decisions.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Reach the gateway's SSH server through TLS on port 443 (an OpenSSH
    /// ProxyCommand).
    Tunnel(tunnel::TunnelArgs),
    /// Manage the identity-aware HTTP proxy's signing keys.
    Http {
        #[command(subcommand)]
        command: web::HttpCommand,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create the user CA key (mode 0600; never overwrites) and print the
    /// lines targets need.
    #[command(
        after_help = "Examples:\n  gatehouse ca init --key /var/lib/gatehouse/user_ca\n  \
        gatehouse ca init --config gatehouse.yaml   # uses its user_ca path"
    )]
    Init(CaPath),
    /// Print the user CA's public key and the lines targets need.
    #[command(after_help = "Example:\n  gatehouse ca show --config gatehouse.yaml")]
    Show(CaPath),
}

#[derive(clap::Args)]
struct CaPath {
    /// Path of the CA private key.
    #[arg(long, conflicts_with = "config")]
    key: Option<PathBuf>,
    /// Take the path from this configuration's `user_ca`.
    #[arg(long)]
    config: Option<PathBuf>,
}

impl CaPath {
    fn resolve(&self) -> Result<PathBuf> {
        if let Some(k) = &self.key {
            return Ok(k.clone());
        }
        if let Some(c) = &self.config {
            return user_ca_from_config(c);
        }
        Ok(PathBuf::from(DEFAULT_CA_PATH))
    }
}

/// Reads only `user_ca` from a config, so `ca init` works before the CA
/// (which full validation requires) exists.
fn user_ca_from_config(path: &Path) -> Result<PathBuf> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("user_ca:") {
            let v = v.trim().trim_matches(['"', '\'']);
            let p = PathBuf::from(v);
            let base = path.parent().unwrap_or(Path::new(""));
            return Ok(if p.is_absolute() { p } else { base.join(p) });
        }
    }
    bail!("{} has no top-level user_ca: line", path.display())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The serving commands start logging once their configuration says
    // whether spans are exported too (`tracing:`).
    if !matches!(cli.command, Command::Serve { .. } | Command::Web { .. }) {
        init_logging(cli.log_format, Vec::new());
    }
    match run(cli.command, cli.log_format) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gatehouse: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A layer beside the log lines (the OpenTelemetry bridge).
type ExtraLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// Log lines on stderr, filtered by `GATEHOUSE_LOG`, plus `extra` layers
/// with their own filters.
fn init_logging(format: LogFormat, extra: Vec<ExtraLayer>) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter = tracing_subscriber::EnvFilter::try_from_env("GATEHOUSE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,russh=warn"));
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let lines: ExtraLayer = match format {
        LogFormat::Text => lines.with_filter(filter).boxed(),
        LogFormat::Json => lines.json().with_filter(filter).boxed(),
    };
    let mut layers = vec![lines];
    layers.extend(extra);
    tracing_subscriber::registry().with(layers).init();
}

/// What flushes exported spans when dropped; drop it before the runtime.
#[cfg(feature = "otel")]
pub(crate) type Traces = Option<otel::Traces>;
/// Without the `otel` feature nothing is exported.
#[cfg(not(feature = "otel"))]
pub(crate) struct Traces;

/// Starts logging for a command that serves `config` on `runtime`, with
/// its spans exported over OTLP when the configuration has a `tracing`
/// section.
pub(crate) fn start_logging(
    format: LogFormat,
    config: &config::Config,
    runtime: &tokio::runtime::Runtime,
) -> Result<Traces> {
    #[cfg(feature = "otel")]
    {
        if let Some(tracing) = &config.tracing {
            let (traces, layer) = otel::start(tracing, runtime.handle().clone())?;
            init_logging(format, vec![layer]);
            return Ok(Some(traces));
        }
        init_logging(format, Vec::new());
        Ok(None)
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = (config, runtime);
        init_logging(format, Vec::new());
        Ok(Traces)
    }
}

/// A `tracing` section that this binary cannot honour (it was built
/// without the `otel` feature): said in one line, and the command stops
/// with exit code 2 rather than run without the traces asked for.
pub(crate) fn refuse_tracing(config: &config::Config) -> Option<ExitCode> {
    if cfg!(feature = "otel") {
        return None;
    }
    let tracing = config.tracing.as_ref()?;
    eprintln!(
        "gatehouse: {}:{}:{}: tracing is set, but this gatehouse was built without \
         OpenTelemetry; rebuild it with --features otel or remove the tracing section",
        config.source.display(),
        tracing.at.0,
        tracing.at.1
    );
    Some(ExitCode::from(2))
}

fn run(command: Command, format: LogFormat) -> Result<ExitCode> {
    match command {
        Command::Serve { config } => serve(&config, format),
        Command::Web { config } => web::run(&config, format),
        Command::CheckConfig { config } => check_config(&config),
        Command::Ca { command } => match command {
            CaCommand::Init(p) => ca_init(&p.resolve()?),
            CaCommand::Show(p) => ca_show(&p.resolve()?),
        },
        Command::Login(args) => login::run(args),
        Command::Logins { command } => logins::run(command),
        Command::Sessions { command } => recordings::run_sessions(command),
        Command::Recordings { command } => recordings::run_recordings(command),
        Command::Replay(args) => replay::run(args),
        Command::Policy { command } => policy::run(command),
        Command::Http { command } => web::run_http(command),
        Command::Tunnel(args) => tunnel::run(args),
    }
}

pub(crate) fn load_config(path: &Path) -> Result<config::Config, ExitCode> {
    config::load(path).map_err(|errors| {
        for p in &errors.0 {
            eprintln!("{p}");
        }
        eprintln!(
            "gatehouse: {} problem{} in {}",
            errors.0.len(),
            if errors.0.len() == 1 { "" } else { "s" },
            path.display()
        );
        ExitCode::FAILURE
    })
}

fn check_config(path: &Path) -> Result<ExitCode> {
    match load_config(path) {
        Err(code) => Ok(code),
        Ok(c) => {
            if let Some(code) = refuse_tracing(&c) {
                return Ok(code);
            }
            println!(
                "{}: ok ({} route{}, {} registered key{})",
                path.display(),
                c.routes.len(),
                if c.routes.len() == 1 { "" } else { "s" },
                c.keys.len(),
                if c.keys.len() == 1 { "" } else { "s" },
            );
            match &c.sign_in {
                // The IdP is not contacted: the gateway starts without it.
                Some(s) => println!("sign-in through {} (not contacted)", s.idp.issuer),
                None => println!("no idp section: only registered keys can log in"),
            }
            if let Some(http) = &c.http {
                println!(
                    "{} http route{} on the web listener",
                    http.routes.len(),
                    if http.routes.len() == 1 { "" } else { "s" }
                );
            }
            if let Some(web) = &c.web
                && web.access.rule_count() == 0
            {
                println!("warning: web.access has no rules, so no viewer may see any recording");
            }
            if let Some(t) = &c.tracing {
                println!(
                    "traces to {} as {} (sample ratio {})",
                    t.traces_url(),
                    t.service_name,
                    t.sample_ratio
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn serve(path: &Path, format: LogFormat) -> Result<ExitCode> {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if let Some(code) = refuse_tracing(&config) {
        return Ok(code);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Dropped (and so flushed) after the server stops, before the runtime.
    let _traces = start_logging(format, &config, &runtime)?;
    runtime.block_on(async move {
        let listener =
            listen(config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        // Tests and scripts read this line to learn the port.
        let mut out = std::io::stdout();
        writeln!(out, "listening on {addr}")?;
        out.flush()?;

        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_stop_signal().await;
            tracing::info!("stop requested");
            signals.cancel();
        });
        // One registry for the process: the gateway and the HTTP proxy
        // count into it, the metrics listener serves it.
        let metrics = Arc::new(telemetry::Metrics::new());
        let web = match web::start(&config, &metrics, shutdown.clone()).await? {
            Some(started) => {
                tokio::spawn(started.run);
                Some(started.service)
            }
            None => None,
        };
        // The edge hands SSH connections to the gateway's accept loop.
        let (to_gateway, incoming) = tokio::sync::mpsc::channel(256);
        if let Some(edge) = web::start_edge(&config, to_gateway, web, shutdown.clone()).await? {
            tokio::spawn(edge);
        }
        metrics::start(&config, &metrics, &shutdown).await?;
        gateway::run_with(listener, Some(incoming), config, metrics, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The listen queue asked of the kernel (which caps it at
/// `net.core.somaxconn`, 4096 by default). Under a flood of thousands of
/// connections a second, tokio's default of 1,024 fills, and a real
/// client's SYN is dropped and retried a whole second later.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

pub(crate) async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn print_target_setup(key_path: &Path, public: &str, fingerprint: &str) {
    println!("User CA public key ({fingerprint}):");
    println!("{public}");
    println!();
    println!("On each target, install that line as /etc/ssh/gatehouse_user_ca.pub and add to");
    println!("/etc/ssh/sshd_config:");
    println!();
    println!("    TrustedUserCAKeys /etc/ssh/gatehouse_user_ca.pub");
    println!();
    println!("then reload sshd. Certificates name the login as their principal, so the");
    println!(
        "login must exist on the target. Keep {} secret.",
        key_path.display()
    );
}

fn ca_init(path: &Path) -> Result<ExitCode> {
    let key = gateway::keys::generate_private_key(path, "gatehouse user CA")?;
    let (public, fingerprint) = gateway::keys::describe(&key)?;
    println!(
        "Wrote the user CA to {} (mode 0600) and {}.pub.",
        path.display(),
        path.display()
    );
    println!();
    print_target_setup(path, &public, &fingerprint);
    Ok(ExitCode::SUCCESS)
}

fn ca_show(path: &Path) -> Result<ExitCode> {
    let key = gateway::keys::read_private_key(path)?;
    let (public, fingerprint) = gateway::keys::describe(&key)?;
    print_target_setup(path, &public, &fingerprint);
    Ok(ExitCode::SUCCESS)
}
