//! The upstream fixture as a standalone server, for the HTTP proxy benchmark:
//!
//! ```text
//! cargo run --release -p sshd-test --example upstream -- \
//!     [--port N] [--jwks URL --issuer ISS --audience AUD]
//! ```
//!
//! It prints `upstream listening on http://127.0.0.1:PORT` once it accepts
//! connections and serves until SIGTERM or SIGINT, then exits 0. The
//! endpoints are those of `sshd_test::upstream`.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::ExitCode;

use sshd_test::upstream::{UpstreamOptions, serve};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "usage: upstream [--port N] [--jwks URL] [--issuer ISS] [--audience AUD]

  --port N        listen on 127.0.0.1:N (default 0: any free port)
  --jwks URL      verify X-Gatehouse-Assertion against this JWKS (http:// only)
  --issuer ISS    the iss a valid assertion must carry
  --audience AUD  the aud a valid assertion must carry";

/// The command line, checked.
struct Args {
    /// The port to bind on 127.0.0.1; 0 picks a free one.
    port: u16,
    /// What assertions must satisfy.
    options: UpstreamOptions,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 0,
        options: UpstreamOptions::default(),
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = argv.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => {
                args.port = value
                    .parse()
                    .map_err(|_| format!("--port {value:?} is not a port number"))?;
            }
            "--jwks" => args.options.jwks_url = Some(value),
            "--issuer" => args.options.issuer = Some(value),
            "--audience" => args.options.audience = Some(value),
            _ => return Err(format!("unknown flag {flag:?}")),
        }
    }
    args.options.validate()?;
    Ok(args)
}

async fn run(args: Args) -> Result<(), String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, args.port))
        .await
        .map_err(|e| format!("bind 127.0.0.1:{}: {e}", args.port))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("local address: {e}"))?;
    // Signal handlers go in before the announcement, so a benchmark that
    // sends SIGTERM right after reading the line still gets a clean exit.
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "upstream listening on http://{addr}")
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("stdout: {e}"))?;
    drop(stdout);
    serve(listener, args.options, async {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
    .await;
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("upstream: {error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("upstream: tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("upstream: {error}");
            ExitCode::FAILURE
        }
    }
}
