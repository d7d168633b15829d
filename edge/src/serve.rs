//! The edge listener: one port for everything. Each connection: a PROXY
//! header from a trusted proxy (the client's address for everything
//! after), then by its first bytes: SSH to the SSH server; TLS, ended
//! here, then by ALPN (`ssh` to the SSH server, anything else to the web
//! listener); `CONNECT` to the gateway's SSH service (a tunnel through an
//! HTTP proxy) to the SSH server; other HTTP to the web listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::classify::{Kind, classify, connect_authority};
use crate::{ALPN_SSH, BoxedIo, Error, Prefixed, proxy};

/// A client that has said nothing by then is taken for an SSH client
/// waiting for the server's version line (some do).
pub const SILENT_CLIENT: Duration = Duration::from_secs(3);

/// A TLS handshake or a `CONNECT` head must be done within this.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// The longest `CONNECT` request head read.
const MAX_CONNECT_HEAD: usize = 8 * 1024;

/// How the edge listener serves.
#[derive(Clone)]
pub struct EdgeConfig {
    /// TLS for `edge.tls` (its ALPN list must offer `ssh`, `h2` and
    /// `http/1.1`); without it, TLS connections are closed.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Peers whose PROXY headers are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// How long a silent client may stay silent before it is taken for SSH.
    pub silent_client: Duration,
}

/// Where connections go, wired in by the binary.
#[derive(Clone)]
pub struct Targets {
    /// An SSH connection (plain, inside TLS, or through `CONNECT`), the
    /// client's address, and for a `CONNECT` the host it named: the route
    /// a user name without `@ROUTE` goes to.
    pub ssh: Arc<dyn Fn(BoxedIo, SocketAddr, Option<String>) + Send + Sync>,
    /// An HTTP connection, the client's address, and whether it came over
    /// TLS.
    pub web: Arc<dyn Fn(BoxedIo, SocketAddr, bool) + Send + Sync>,
    /// Whether a `CONNECT` may go to this authority (the gateway's own SSH
    /// service; the edge is no open proxy).
    pub connect: Arc<dyn Fn(&str) -> bool + Send + Sync>,
}

/// The next connection on `listener` with Nagle off, or `None` once
/// `stop` is cancelled. A failed accept (usually out of file descriptors)
/// is logged under `what` and retried after 50 ms rather than spun on.
pub async fn accept(
    listener: &TcpListener,
    stop: &CancellationToken,
    what: &str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            () = stop.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((stream, peer));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "{what}: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Serves `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    config: EdgeConfig,
    targets: Targets,
    stop: CancellationToken,
) {
    while let Some((stream, peer)) = accept(&listener, &stop, "edge").await {
        let (config, targets) = (config.clone(), targets.clone());
        tokio::spawn(async move {
            if let Err(e) = one(stream, peer, &config, &targets).await {
                match e {
                    Error::UntrustedProxy { .. } | Error::BadProxyHeader(_) => {
                        tracing::warn!(%peer, error = %e, "edge: connection refused");
                    }
                    e => tracing::debug!(%peer, error = %e, "edge: connection dropped"),
                }
            }
        });
    }
}

/// One connection: who it is from and what it is, then handed on.
async fn one(
    mut stream: TcpStream,
    peer: SocketAddr,
    config: &EdgeConfig,
    targets: &Targets,
) -> Result<(), Error> {
    let trusted = config
        .trusted_proxies
        .iter()
        .any(|n| n.contains(&peer.ip()));
    let (client, mut first) =
        proxy::read_start(&mut stream, peer, trusted, config.silent_client).await?;
    // Enough bytes to tell what it is (a silent client is SSH).
    let kind = loop {
        if first.is_empty() {
            let mut byte = [0u8; 64];
            match tokio::time::timeout(config.silent_client, stream.read(&mut byte)).await {
                Err(_) => break Kind::Ssh,
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(n)) => first.extend_from_slice(byte.get(..n).unwrap_or_default()),
                Ok(Err(e)) => return Err(Error::Io(e)),
            }
        }
        if let Some(kind) = classify(&first) {
            break kind;
        }
        let mut more = [0u8; 64];
        match tokio::time::timeout(HANDSHAKE, stream.read(&mut more)).await {
            Err(_) => return Err(Error::Timeout(HANDSHAKE)),
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(n)) => first.extend_from_slice(more.get(..n).unwrap_or_default()),
            Ok(Err(e)) => return Err(Error::Io(e)),
        }
    };
    let io = Prefixed::new(first, stream);
    match kind {
        Kind::Ssh => (targets.ssh)(Box::new(io), client, None),
        Kind::Http => (targets.web)(Box::new(io), client, false),
        Kind::Tls => {
            let Some(acceptor) = &config.tls else {
                return Err(Error::Unknown);
            };
            let tls = tokio::time::timeout(HANDSHAKE, acceptor.accept(io))
                .await
                .map_err(|_| Error::Timeout(HANDSHAKE))??;
            let ssh = tls.get_ref().1.alpn_protocol() == Some(ALPN_SSH);
            if ssh {
                (targets.ssh)(Box::new(tls), client, None);
            } else {
                (targets.web)(Box::new(tls), client, true);
            }
        }
        Kind::Connect => connect(io, client, targets).await?,
        Kind::Unknown => return Err(Error::Unknown),
    }
    Ok(())
}

/// An HTTP `CONNECT`: its head read, the authority checked, then the
/// rest of the stream is SSH.
async fn connect(
    mut io: Prefixed<TcpStream>,
    client: SocketAddr,
    targets: &Targets,
) -> Result<(), Error> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte up to the blank line: nothing past it may be taken from
    // the SSH stream that follows.
    let read_head = async {
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() >= MAX_CONNECT_HEAD || io.read(&mut byte).await? == 0 {
                return Err(Error::Unknown);
            }
            head.push(byte[0]);
        }
        Ok::<_, Error>(())
    };
    tokio::time::timeout(HANDSHAKE, read_head)
        .await
        .map_err(|_| Error::Timeout(HANDSHAKE))??;
    match connect_authority(&head) {
        Some(authority) if (targets.connect)(&authority) => {
            io.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await?;
            let hint = crate::classify::authority_host(&authority).map(str::to_owned);
            (targets.ssh)(Box::new(io), client, hint);
            Ok(())
        }
        Some(authority) => {
            tracing::info!(%client, authority, "edge: CONNECT to somewhere else refused");
            io.write_all(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await?;
            Ok(())
        }
        None => {
            io.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await?;
            Ok(())
        }
    }
}
