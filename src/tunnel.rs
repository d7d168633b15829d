//! `gatehouse tunnel HOST[:PORT]`: an OpenSSH `ProxyCommand` that reaches
//! the gateway's SSH server where only HTTPS gets through: TLS to the edge
//! listener with ALPN `ssh`, optionally through an HTTP proxy the network
//! requires (`--via`, an HTTP `CONNECT`). stdin and stdout carry the SSH
//! stream.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// How long connecting (the proxy's answer and TLS included) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// `gatehouse tunnel`.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    ssh -o ProxyCommand='gatehouse tunnel gw.example.com:443' alice@prod-db@gw.example.com\n  \
    ssh -o ProxyCommand='gatehouse tunnel --via http://proxy:3128 gw.example.com' alice@prod-db@gw\n\n\
    Without gatehouse installed, OpenSSL does the same:\n  \
    ssh -o ProxyCommand='openssl s_client -quiet -alpn ssh -connect gw.example.com:443' …")]
pub(crate) struct TunnelArgs {
    /// The gateway's edge listener, `HOST[:PORT]` (port 443 by default).
    target: String,
    /// Go through this HTTP proxy (`http://HOST:PORT`) with `CONNECT`.
    #[arg(long, value_name = "URL")]
    via: Option<String>,
    /// Trust this PEM CA bundle for the gateway's certificate instead of
    /// the system's roots.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
}

/// `host:port`, with `default_port` when no port is given.
pub(crate) fn authority(target: &str, default_port: u16) -> Result<(String, u16)> {
    let bad_port = || format!("bad port in {target}");
    let (host, port) = if let Some(rest) = target.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| anyhow!("unclosed [ in {target}"))?;
        let port = match after {
            "" => default_port,
            _ => after
                .strip_prefix(':')
                .ok_or_else(|| anyhow!("{}", bad_port()))?
                .parse()
                .with_context(bad_port)?,
        };
        (host, port)
    } else {
        match target.split_once(':') {
            // One colon: host:port. More than one: a bare IPv6 address.
            Some((host, port)) if !port.contains(':') => {
                (host, port.parse().with_context(bad_port)?)
            }
            _ => (target, default_port),
        }
    };
    if host.is_empty() {
        bail!("no host in {target}");
    }
    Ok((host.to_owned(), port))
}

pub(crate) fn run(args: TunnelArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(tunnel(args))
}

async fn tunnel(args: TunnelArgs) -> Result<ExitCode> {
    let (host, port) = authority(&args.target, 443)?;
    let connecting = async {
        let tcp = match &args.via {
            None => TcpStream::connect((host.as_str(), port))
                .await
                .with_context(|| format!("cannot connect to {host}:{port}"))?,
            Some(proxy) => through_proxy(proxy, &host, port).await?,
        };
        let _ = tcp.set_nodelay(true);
        let config = tls_config(args.ca.as_deref())?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .with_context(|| format!("{host} is not a server name"))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS with {host}:{port} failed"))?;
        if tls.get_ref().1.alpn_protocol() != Some(edge::ALPN_SSH) {
            bail!("{host}:{port} does not offer SSH inside TLS (ALPN ssh)");
        }
        Ok(tls)
    };
    let mut tls = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| anyhow!("connecting to {host}:{port} took over {CONNECT_TIMEOUT:?}"))??;
    let mut local = tokio::io::join(tokio::io::stdin(), tokio::io::stdout());
    match tokio::io::copy_bidirectional(&mut local, &mut tls).await {
        Ok(_) => Ok(ExitCode::SUCCESS),
        // ssh closing its end (the session ended) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e).context("the tunnel broke"),
    }
}

/// A TCP stream to `host:port` through an HTTP proxy's `CONNECT`.
async fn through_proxy(proxy: &str, host: &str, port: u16) -> Result<TcpStream> {
    let rest = proxy
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("--via must be an http:// proxy URL"))?;
    let (p_host, p_port) = authority(rest.trim_end_matches('/'), 3128)?;
    let mut tcp = TcpStream::connect((p_host.as_str(), p_port))
        .await
        .with_context(|| format!("cannot connect to the proxy {p_host}:{p_port}"))?;
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    tcp.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await?;
    // The answer's head, byte by byte: what follows belongs to TLS.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || tcp.read(&mut byte).await? == 0 {
            bail!("the proxy {p_host}:{p_port} closed the connection");
        }
        head.push(byte[0]);
    }
    let status = String::from_utf8_lossy(&head);
    let line = status.lines().next().unwrap_or("");
    if line.split(' ').nth(1) != Some("200") {
        bail!("the proxy refused CONNECT {target}: {line}");
    }
    Ok(tcp)
}

fn tls_config(ca: Option<&std::path::Path>) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?;
    let mut config = match ca {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("cannot read {}", path.display()))?
            {
                roots
                    .add(cert.with_context(|| format!("bad certificate in {}", path.display()))?)
                    .with_context(|| format!("bad certificate in {}", path.display()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt as _;
            builder
                .with_platform_verifier()
                .context("the system's CA roots")?
                .with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![edge::ALPN_SSH.to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_take_443_unless_a_port_is_given() {
        assert_eq!(
            authority("gw.example.com", 443).unwrap(),
            ("gw.example.com".into(), 443)
        );
        assert_eq!(
            authority("gw.example.com:8443", 443).unwrap(),
            ("gw.example.com".into(), 8443)
        );
        assert_eq!(authority("[::1]:9", 443).unwrap(), ("::1".into(), 9));
        assert!(authority(":1", 443).is_err());
        assert!(authority("h:port", 443).is_err());
        assert_eq!(authority("[::1]", 443).unwrap(), ("::1".into(), 443));
        assert_eq!(authority("::1", 443).unwrap(), ("::1".into(), 443));
        assert!(authority("[::1", 443).is_err());
    }
}
