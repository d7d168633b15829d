//! Direct-access certificates (issue 16): `ssh cert@GATEWAY` signs in as
//! usual, then, instead of dialing a target, the gateway signs a
//! short-lived certificate for the key the client proved and prints it on
//! the session channel.
//!
//! - Authentication is the normal one (a registered key, a login binding,
//!   or a sign-in bound to the key); [`Connection::admit_direct`] only
//!   remembers who and which key, since there is no route to authorize.
//! - The first session channel's `exec` or `shell` asks the direct-access
//!   policy ([`policy::lang::evaluate_direct`]) at that moment. A grant is
//!   signed by the user CA ([`crate::keys::UserCa::certify`]) and written
//!   as one OpenSSH line on stdout, exit status 0; a refusal is one plain
//!   line on stderr, exit status 1. Either is audited (`cert.issued`,
//!   `cert.refused`).
//!
//! **Invariant:** such a connection never reaches a target and never
//! joins the live registry: it has no route, no recording and no
//! re-evaluation, and nothing in it outlives the one channel. Every other
//! request (forwards, subsystems, more channels) is refused.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use audit::Event;
use policy::lang::{DirectGrant, DirectRequest, Identity, Timestamp};
use russh::ChannelId;
use russh::keys::PublicKey;
use russh::server::{ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelOpenFailure};

use super::Connection;
use super::authorize::{self, Method};
use crate::keys::DirectCertRequest;
use crate::{Error, lines};

/// The user name that asks for a direct-access certificate: no `@ROUTE`,
/// so it cannot be mistaken for `LOGIN@ROUTE`.
pub(crate) const CERT_USER: &str = "cert";

/// A connection that asked for a certificate, from authentication until it
/// ends.
pub(crate) struct Issuing {
    /// Who the certificate is for.
    identity: Arc<Identity>,
    /// The key the client proved: the certificate certifies it.
    key: PublicKey,
    /// Its SHA-256 fingerprint, for audit events.
    fingerprint: String,
    /// The one session channel that carries the certificate, once open;
    /// held so that russh keeps delivering its requests.
    channel: Option<Channel<Msg>>,
    /// The client asked for a pty on it, so a refusal line ends in `\r\n`.
    terminal: bool,
    /// The certificate or the refusal has been written; the channel is
    /// closing.
    answered: bool,
}

/// A request on the certificate channel, as far as it matters here.
pub(super) enum CertChannelRequest {
    /// `pty-req`: accepted, and remembered for line endings.
    Pty,
    /// `env`: accepted and ignored (OpenSSH sends `LANG`).
    Env,
    /// `shell` or `exec`: answered with the certificate or a refusal.
    Start,
    /// Anything else (subsystems, X11): refused.
    Other,
}

impl Connection {
    /// Authentication proved `identity` with the key `fingerprint` for
    /// `cert`: remember it for the channel. `Err` is the line the user
    /// sees.
    pub(super) fn admit_direct(
        &mut self,
        identity: Arc<Identity>,
        fingerprint: &str,
        method: Method,
    ) -> Result<(), String> {
        let _entered = self.span.enter();
        let key = self
            .pre
            .as_ref()
            .and_then(|p| p.proven_public.as_ref())
            .filter(|k| {
                k.fingerprint(russh::keys::HashAlg::Sha256).to_string() == fingerprint
                    && !fingerprint.is_empty()
            })
            .cloned();
        let Some(key) = key else {
            // A sign-in without a proven key (keyboard-interactive only)
            // has nothing to certify.
            let line = lines::DIRECT_NEEDS_KEY.to_owned();
            authorize::audit_denied(
                &self.asker(),
                CERT_USER,
                identity.label(),
                fingerprint,
                &line,
            );
            return Err(line);
        };
        authorize::audit_accepted_for_certificate(&self.asker(), &identity, fingerprint, method);
        self.span.record("identity", identity.label());
        self.span.record("login", CERT_USER);
        if let Some(pre) = self.pre.as_mut() {
            pre.issuing = Some(Issuing {
                identity,
                key,
                fingerprint: fingerprint.to_owned(),
                channel: None,
                terminal: false,
                answered: false,
            });
        }
        Ok(())
    }

    /// Accepts the first session channel of a certificate connection;
    /// refuses any other.
    pub(super) async fn open_certificate_channel(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
    ) {
        match self.issuing.as_mut() {
            Some(issuing) if issuing.channel.is_none() => {
                issuing.channel = Some(channel);
                reply.accept().await;
            }
            _ => {
                reply
                    .reject(ChannelOpenFailure::AdministrativelyProhibited)
                    .await;
            }
        }
    }

    /// A request on a certificate connection's channel.
    pub(super) fn certificate_request(
        &mut self,
        channel: ChannelId,
        request: CertChannelRequest,
        session: &mut Session,
    ) -> Result<(), Error> {
        let Some(issuing) = self
            .issuing
            .as_mut()
            .filter(|i| i.channel.as_ref().map(Channel::id) == Some(channel) && !i.answered)
        else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        match request {
            CertChannelRequest::Pty => {
                issuing.terminal = true;
                session.channel_success(channel)?;
            }
            CertChannelRequest::Env => session.channel_success(channel)?,
            CertChannelRequest::Other => session.channel_failure(channel)?,
            CertChannelRequest::Start => {
                issuing.answered = true;
                session.channel_success(channel)?;
                let status = match self.issue() {
                    Ok(line) => {
                        session.data(channel, line.into_bytes())?;
                        0
                    }
                    Err(line) => {
                        let terminal = self.issuing.as_ref().is_some_and(|i| i.terminal);
                        let text = lines::on_channel(&line, terminal, false);
                        session.extended_data(channel, 1, text.into_bytes())?;
                        1
                    }
                };
                session.exit_status_request(channel, status)?;
                session.eof(channel)?;
                session.close(channel)?;
            }
        }
        Ok(())
    }

    /// Asks the direct-access policy now and signs what it grants: the
    /// certificate as one OpenSSH line, or the line that refuses it.
    fn issue(&self) -> Result<String, String> {
        let Some(issuing) = self.issuing.as_ref() else {
            return Err(lines::INTERNAL.to_owned());
        };
        let config = self.shared.config();
        let decided = policy::lang::evaluate_direct(
            &config.direct_access,
            &DirectRequest {
                identity: &issuing.identity,
                source: self.peer.ip(),
                now: Timestamp::now(),
            },
        );
        let grant = match decided {
            Ok(grant) => grant,
            Err(denial) => {
                let line = lines::direct_denied(&denial.reason);
                self.audit_refused_certificate(
                    issuing,
                    denial.rule.as_deref().unwrap_or(""),
                    &line,
                );
                return Err(line);
            }
        };
        match self.sign(issuing, &grant) {
            Ok(line) => Ok(line),
            Err(e) => {
                tracing::error!(error = %e, "cannot sign a direct-access certificate");
                self.audit_refused_certificate(issuing, "", &e.to_string());
                Err(lines::INTERNAL.to_owned())
            }
        }
    }

    /// Signs `grant` for the client's key and audits it.
    fn sign(&self, issuing: &Issuing, grant: &DirectGrant) -> Result<String, Error> {
        let key_id = format!("{}/direct", issuing.identity.label());
        let (cert, serial) = self.shared.ca.certify(&DirectCertRequest {
            key: &issuing.key,
            principals: &grant.principals,
            key_id: &key_id,
            ttl: grant.ttl,
            extensions: &grant.extensions,
        })?;
        let line = cert.to_openssh().map_err(|e| Error::Mint(e.to_string()))?;
        let valid_before = UNIX_EPOCH + Duration::from_secs(cert.valid_before());
        Event::CertIssued {
            session_id: self.id.clone(),
            identity: issuing.identity.label().to_owned(),
            key_fingerprint: issuing.fingerprint.clone(),
            serial,
            principals: grant.principals.clone(),
            valid_before: humantime::format_rfc3339_seconds(valid_before).to_string(),
            ttl_limit: grant.ttl_limit.as_str(),
            extensions: grant.extensions.join(","),
            rules: grant.rules.join(","),
        }
        .emit();
        Ok(format!("{line}\n"))
    }

    fn audit_refused_certificate(&self, issuing: &Issuing, rule: &str, reason: &str) {
        Event::CertRefused {
            session_id: self.id.clone(),
            identity: issuing.identity.label().to_owned(),
            key_fingerprint: issuing.fingerprint.clone(),
            rule: rule.to_owned(),
            reason: reason.to_owned(),
        }
        .emit();
    }
}
