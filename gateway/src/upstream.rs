//! The target side: dial, verify the host key, log in with a fresh
//! certificate.
//!
//! Each client session channel gets its own upstream connection. russh
//! tops up a channel's receive window as soon as data arrives, and a full
//! per-channel queue blocks the whole connection, so on one shared
//! connection a client that reads one channel slowly would stall every
//! other channel. With one connection per channel the stall stays where
//! it belongs, and memory stays bounded by russh's per-channel queue.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use telemetry::labels::DialFailure;

use audit::{Event, SessionId};
use policy::lang::Identity;
use russh::client;
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PublicKeyOrCertificate};
use russh::{Channel, ChannelOpenFailure, Preferred};
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::Error;
use crate::keys::{CertRequest, UserCa};
use config::{HostKeyCheck, Route};

/// Everything needed to dial one route on behalf of one session.
#[derive(Clone)]
pub struct DialContext {
    /// The route to dial.
    pub route: Arc<Route>,
    /// The login on the target (the certificate's principal).
    pub login: String,
    /// Who the session belongs to; named in the certificate's key id.
    pub identity: Arc<Identity>,
    /// The client connection's session id.
    pub session_id: SessionId,
    /// The `permit-*` extensions the decision grants.
    pub extensions: Vec<&'static str>,
    /// The one command the decision allows (`force-command`), if any.
    pub force_command: Option<String>,
    /// The certificate lifetime the decision grants.
    pub cert_ttl: Duration,
    /// The CA that signs.
    pub ca: Arc<UserCa>,
    /// Where dial times, failures and proxied bytes are counted.
    pub metrics: Arc<telemetry::Metrics>,
}

/// A logged-in connection to a target.
pub struct Upstream {
    /// The russh client handle; dropping it ends the connection.
    pub handle: client::Handle<TargetHandler>,
    /// The serial of the certificate used, for audit.
    pub cert_serial: u64,
}

/// Decides what happens to the channels a target opens back to us on one
/// upstream connection (forwarded-tcpip, agent, X11). The implementation
/// (`forward::Inbound`) refuses everything until the client asked for a kind
/// and the policy granted it; this module only hands the channels over, so
/// it needs to know nothing about forwarding.
pub(crate) trait TargetOpened: Send + Sync + 'static {
    /// The target connected to one of our remote forwards' listeners.
    fn forwarded_tcpip(
        &self,
        channel: Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        address: &str,
        port: u32,
        originator_address: &str,
        originator_port: u32,
    );
    /// The target opened an agent channel.
    fn agent(&self, channel: Channel<client::Msg>, reply: client::ChannelOpenHandle);
    /// The target opened an X11 channel.
    fn x11(
        &self,
        channel: Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        originator_address: &str,
        originator_port: u32,
    );
}

/// Refuses every channel a target opens: for connections on which nothing
/// was granted.
pub(crate) struct RefuseAll;

impl TargetOpened for RefuseAll {
    fn forwarded_tcpip(
        &self,
        _channel: Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _address: &str,
        _port: u32,
        _originator_address: &str,
        _originator_port: u32,
    ) {
        drop(reply);
    }
    fn agent(&self, _channel: Channel<client::Msg>, reply: client::ChannelOpenHandle) {
        drop(reply);
    }
    fn x11(
        &self,
        _channel: Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _originator_address: &str,
        _originator_port: u32,
    ) {
        drop(reply);
    }
}

/// Verifies the target's host key as the route says. It records why it
/// refused, because russh only reports that the key was not accepted.
///
/// It also answers the channels the target opens to us. russh's defaults
/// accept them all (and then drop them); a target may only open what the
/// client asked for and the policy granted on this connection, which
/// its [`TargetOpened`] decides. Everything else is refused.
pub struct TargetHandler {
    check: HostKeyCheck,
    host: String,
    refusal: Arc<Mutex<Option<String>>>,
    inbound: Arc<dyn TargetOpened>,
}

impl TargetHandler {
    fn verify(&self, presented: &PublicKeyOrCertificate) -> Result<(), String> {
        match (&self.check, presented) {
            (HostKeyCheck::Pinned(pinned), PublicKeyOrCertificate::PublicKey { key, .. }) => {
                if key.key_data() == pinned.key_data() {
                    Ok(())
                } else {
                    Err(format!(
                        "presented {}, pinned {}",
                        key.fingerprint(HashAlg::Sha256),
                        pinned.fingerprint(HashAlg::Sha256)
                    ))
                }
            }
            (HostKeyCheck::Pinned(pinned), PublicKeyOrCertificate::Certificate(cert)) => {
                // Only reachable if a server offers a certificate we did not
                // ask for; the certified key must still be the pinned one.
                if cert.public_key() == pinned.key_data() {
                    Ok(())
                } else {
                    Err("presented a certificate for a key other than the pinned one".into())
                }
            }
            (HostKeyCheck::Ca(_), PublicKeyOrCertificate::PublicKey { key, .. }) => Err(format!(
                "presented plain host key {} but the route requires a host certificate",
                key.fingerprint(HashAlg::Sha256)
            )),
            (HostKeyCheck::Ca(ca), PublicKeyOrCertificate::Certificate(cert)) => {
                if cert.cert_type() != CertType::Host {
                    return Err("presented a user certificate as its host key".into());
                }
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let ca_fp = ca.fingerprint(HashAlg::Sha256);
                cert.validate_at(now, [&ca_fp]).map_err(|e| {
                    format!(
                        "host certificate not valid under host CA {ca_fp}: {e} (signed by {})",
                        cert.signature_key().fingerprint(HashAlg::Sha256)
                    )
                })?;
                // Stricter than OpenSSH, which accepts a host certificate
                // with no principals for any host: we require the name.
                if cert.valid_principals().contains(&self.host) {
                    Ok(())
                } else {
                    Err(format!(
                        "host certificate does not name {:?} (it names {:?})",
                        self.host,
                        cert.valid_principals()
                    ))
                }
            }
        }
    }
}

impl client::Handler for TargetHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match self.verify(server_public_key) {
            Ok(()) => Ok(true),
            Err(reason) => {
                if let Ok(mut slot) = self.refusal.lock() {
                    *slot = Some(reason);
                }
                Ok(false)
            }
        }
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<client::Msg>,
        connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.inbound.forwarded_tcpip(
            channel,
            reply,
            connected_address,
            connected_port,
            originator_address,
            originator_port,
        );
        Ok(())
    }

    async fn server_channel_open_agent_forward(
        &mut self,
        channel: Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.inbound.agent(channel, reply);
        Ok(())
    }

    async fn server_channel_open_x11(
        &mut self,
        channel: Channel<client::Msg>,
        originator_address: &str,
        originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.inbound
            .x11(channel, reply, originator_address, originator_port);
        Ok(())
    }

    // A target has no business opening these to a client; russh would
    // accept them.
    async fn server_channel_open_session(
        &mut self,
        _channel: Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        prohibit(reply).await
    }

    async fn server_channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<client::Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        prohibit(reply).await
    }

    async fn server_channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<client::Msg>,
        _socket_path: &str,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        prohibit(reply).await
    }

    async fn server_channel_open_forwarded_streamlocal(
        &mut self,
        _channel: Channel<client::Msg>,
        _socket_path: &str,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        prohibit(reply).await
    }
}

/// Refuses a channel the target has no business opening.
async fn prohibit(reply: client::ChannelOpenHandle) -> Result<(), russh::Error> {
    reply
        .reject(ChannelOpenFailure::AdministrativelyProhibited)
        .await;
    Ok(())
}

/// Ciphers for the gateway→target hop, where the gateway chooses. AES-GCM
/// first: ring runs it on the CPU's AES instructions, faster than
/// ChaCha20-Poly1305 on the machines gateways run on.
const UPSTREAM_CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_128_GCM,
    russh::cipher::AES_256_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_128_CTR,
];

/// The host key algorithms to ask for: only the pinned key's, so the
/// target cannot pick another key of its own that we would then refuse;
/// with a host CA, the certificate variants first.
fn preferred(check: &HostKeyCheck) -> Preferred {
    let all_plain = Preferred::DEFAULT.key.clone();
    match check {
        HostKeyCheck::Pinned(key) => {
            let algos: Vec<Algorithm> = match key.algorithm() {
                Algorithm::Rsa { .. } => vec![
                    Algorithm::Rsa {
                        hash: Some(HashAlg::Sha512),
                    },
                    Algorithm::Rsa {
                        hash: Some(HashAlg::Sha256),
                    },
                ],
                other => vec![other],
            };
            Preferred {
                key: Cow::Owned(algos),
                cipher: Cow::Borrowed(UPSTREAM_CIPHERS),
                ..Preferred::DEFAULT
            }
        }
        HostKeyCheck::Ca(_) => Preferred {
            host_key_certificates: Cow::Owned(vec![
                Algorithm::Ed25519,
                Algorithm::Ecdsa {
                    curve: EcdsaCurve::NistP256,
                },
                Algorithm::Ecdsa {
                    curve: EcdsaCurve::NistP384,
                },
                Algorithm::Ecdsa {
                    curve: EcdsaCurve::NistP521,
                },
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha512),
                },
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha256),
                },
            ]),
            key: all_plain,
            cipher: Cow::Borrowed(UPSTREAM_CIPHERS),
            ..Preferred::DEFAULT
        },
    }
}

/// The client-side SSH settings for a route.
fn client_config(check: &HostKeyCheck) -> client::Config {
    client::Config {
        preferred: preferred(check),
        // Targets are dialed per channel; keepalives notice a dead target
        // while the client sits idle.
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 4,
        inactivity_timeout: None,
        nodelay: true,
        ..client::Config::default()
    }
}

/// Dials the route's target, checks its host key and logs in with a freshly
/// minted certificate. Bounded by the route's connect timeout. Runs in a
/// `connect_target` span (under the channel's) naming the route.
pub(crate) async fn connect_target(
    ctx: &DialContext,
    opened: Arc<dyn TargetOpened>,
) -> Result<Upstream, Error> {
    let span = tracing::info_span!(
        "connect_target",
        route = %ctx.route.name,
        result = tracing::field::Empty,
    );
    let result = dial_and_log_in(ctx, opened).instrument(span.clone()).await;
    span.record("result", if result.is_ok() { "ok" } else { "error" });
    result
}

async fn dial_and_log_in(
    ctx: &DialContext,
    opened: Arc<dyn TargetOpened>,
) -> Result<Upstream, Error> {
    let route = &ctx.route;
    let unreachable = |reason: String| Error::TargetUnreachable {
        route: route.name.clone(),
        target: route.target.clone(),
        reason,
    };
    let started = Instant::now();
    let attempt = async {
        let tcp = TcpStream::connect((route.target_host.as_str(), route.target_port))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tcp.set_nodelay(true)
            .map_err(|e| unreachable(e.to_string()))?;

        let refusal = Arc::new(Mutex::new(None));
        let handler = TargetHandler {
            check: route.host_key.clone(),
            host: route.target_host.clone(),
            refusal: Arc::clone(&refusal),
            inbound: opened,
        };
        let config = Arc::new(client_config(&route.host_key));
        let mut handle = client::connect_stream(config, tcp, handler)
            .await
            .map_err(|e| {
                let refused = refusal.lock().ok().and_then(|mut r| r.take());
                match refused {
                    Some(reason) => Error::HostKeyRejected {
                        route: route.name.clone(),
                        target: route.target.clone(),
                        reason,
                    },
                    None => Error::TargetProtocol {
                        route: route.name.clone(),
                        target: route.target.clone(),
                        reason: e.to_string(),
                    },
                }
            })?;

        let key_id = format!("{}/{}", ctx.identity.label(), ctx.session_id);
        let minted = ctx.ca.mint(&CertRequest {
            login: &ctx.login,
            key_id: &key_id,
            ttl: ctx.cert_ttl,
            extensions: &ctx.extensions,
            force_command: ctx.force_command.as_deref(),
            source_address: route.source_address.as_deref(),
        })?;
        let serial = minted.serial;
        let auth = handle
            .authenticate_openssh_cert(ctx.login.clone(), Arc::new(minted.key), minted.cert)
            .await
            .map_err(|e| Error::TargetProtocol {
                route: route.name.clone(),
                target: route.target.clone(),
                reason: e.to_string(),
            })?;
        if !auth.success() {
            return Err(Error::CertRejected {
                route: route.name.clone(),
                target: route.target.clone(),
                login: ctx.login.clone(),
            });
        }
        Event::TargetConnected {
            session_id: ctx.session_id.clone(),
            route: route.name.clone(),
            target_addr: route.target.clone(),
            login: ctx.login.clone(),
            cert_serial: serial,
            cert_key_id: key_id,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
        .emit();
        Ok(Upstream {
            handle,
            cert_serial: serial,
        })
    };
    let result = match tokio::time::timeout(route.connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => {
            ctx.metrics.dial_failed(DialFailure::Timeout);
            return Err(unreachable(format!(
                "no answer within {}",
                humantime::format_duration(route.connect_timeout)
            )));
        }
    };
    match &result {
        Ok(_) => ctx.metrics.dialed(started.elapsed()),
        Err(e) => ctx.metrics.dial_failed(match e {
            Error::TargetUnreachable { .. } => DialFailure::Unreachable,
            Error::HostKeyRejected { .. } => DialFailure::HostKey,
            Error::CertRejected { .. } => DialFailure::Certificate,
            Error::TargetProtocol { .. } | Error::Ssh(_) => DialFailure::Protocol,
            _ => DialFailure::Other,
        }),
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pinned_routes_ask_only_for_the_pinned_algorithm() {
        let key = crate::keys::new_ed25519_key();
        let p = preferred(&HostKeyCheck::Pinned(key.public_key().clone()));
        assert_eq!(p.key.as_ref(), [Algorithm::Ed25519]);
        assert!(p.host_key_certificates.is_empty());
        let pk: russh::keys::PublicKey = key.public_key().clone();
        let ca = preferred(&HostKeyCheck::Ca(pk));
        assert_eq!(ca.host_key_certificates.first(), Some(&Algorithm::Ed25519));
    }

    #[test]
    fn pinned_key_mismatch_names_both_fingerprints() {
        let pinned = crate::keys::new_ed25519_key();
        let other = crate::keys::new_ed25519_key();
        let handler = TargetHandler {
            check: HostKeyCheck::Pinned(pinned.public_key().clone()),
            host: "h".into(),
            refusal: Arc::default(),
            inbound: Arc::new(RefuseAll),
        };
        let presented = PublicKeyOrCertificate::PublicKey {
            key: other.public_key().clone(),
            hash_alg: None,
        };
        let err = handler.verify(&presented).unwrap_err();
        assert!(err.contains(&other.public_key().fingerprint(HashAlg::Sha256).to_string()));
        assert!(err.contains(&pinned.public_key().fingerprint(HashAlg::Sha256).to_string()));
        let same = PublicKeyOrCertificate::PublicKey {
            key: pinned.public_key().clone(),
            hash_alg: None,
        };
        assert!(handler.verify(&same).is_ok());
    }
}
