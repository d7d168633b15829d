//! The gateway's one error type.
//!
//! Every error knows which side caused it ([`Side`]): that decides the one
//! line the SSH user sees and the level it is logged at, as in pingora.

use std::path::PathBuf;

use audit::{Event, SessionId};

use crate::lines;
use config::ConfigErrors;

/// Who caused an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The SSH client sent something wrong or was refused.
    Client,
    /// The target was down, misconfigured or misbehaved.
    Target,
    /// Gatehouse itself failed (IO, keys, bugs).
    Internal,
}

/// Everything that can go wrong in the gateway.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid; every problem is listed.
    #[error("invalid configuration:\n{0}")]
    Config(#[from] ConfigErrors),
    /// A key file could not be read, parsed or written.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What went wrong with it.
        reason: String,
    },
    /// Signing a certificate failed.
    #[error("cannot mint certificate: {0}")]
    Mint(String),
    /// A socket operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The SSH protocol layer failed.
    #[error("ssh: {0}")]
    Ssh(#[from] russh::Error),
    /// The target could not be reached in time.
    #[error("target {route} ({target}) unreachable: {reason}")]
    TargetUnreachable {
        /// The route being dialed.
        route: String,
        /// Its `host:port`.
        target: String,
        /// The socket or timeout error.
        reason: String,
    },
    /// The target's host key is not the pinned key, or its host certificate
    /// is not valid under the configured host CA.
    #[error("target {route} ({target}) host key rejected: {reason}")]
    HostKeyRejected {
        /// The route being dialed.
        route: String,
        /// Its `host:port`.
        target: String,
        /// What was presented and why it was refused.
        reason: String,
    },
    /// The target refused the certificate (the CA is not trusted there,
    /// the login does not exist, or the certificate is invalid).
    #[error("target {route} ({target}) rejected the certificate for login {login}")]
    CertRejected {
        /// The route being dialed.
        route: String,
        /// Its `host:port`.
        target: String,
        /// The login the certificate was for.
        login: String,
    },
    /// The state database failed.
    #[error(transparent)]
    State(#[from] state::Error),
    /// Sign-in at the identity provider failed: unavailable, denied,
    /// expired, cancelled, a rejected token or refresh, a domain not
    /// allowed. Its user line comes from `lines.rs` like every other.
    #[error(transparent)]
    Identity(#[from] identity::Error),
    /// No way of signing in over SSH fits the identity provider and the
    /// configuration (`idp.ssh_sign_in`, the IdP's device grant, the `web`
    /// section): an administrator has to change one of them.
    #[error("sign-in is not available: {0}")]
    SignInUnavailable(crate::sign_in::NoWay),
    /// Session recording could not be set up (no ed25519 host key to sign
    /// with, an unusable spool or state database).
    #[error("recording: {0}")]
    Recording(String),
    /// The target broke the SSH protocol or closed during setup.
    #[error("target {route} ({target}) failed: {reason}")]
    TargetProtocol {
        /// The route being dialed.
        route: String,
        /// Its `host:port`.
        target: String,
        /// The protocol error.
        reason: String,
    },
}

impl Error {
    /// Which side caused the error.
    pub fn side(&self) -> Side {
        match self {
            Error::TargetUnreachable { .. }
            | Error::HostKeyRejected { .. }
            | Error::CertRejected { .. }
            | Error::TargetProtocol { .. } => Side::Target,
            Error::Identity(identity::Error::IdpUnavailable { .. }) => Side::Internal,
            Error::Ssh(_) | Error::Identity(_) => Side::Client,
            Error::Config(_)
            | Error::KeyFile { .. }
            | Error::Mint(_)
            | Error::Io(_)
            | Error::State(_)
            | Error::SignInUnavailable(_)
            | Error::Recording(_) => Side::Internal,
        }
    }

    /// The one plain line the SSH user sees. It names the route but never
    /// internal detail (addresses, keys); the audit log has that.
    pub fn user_line(&self) -> String {
        match self {
            Error::TargetUnreachable { route, .. } => lines::target_unreachable(route),
            Error::HostKeyRejected { route, .. } => lines::host_key_rejected(route),
            Error::CertRejected { route, login, .. } => lines::cert_rejected(route, login),
            Error::TargetProtocol { route, .. } => lines::target_failed(route),
            Error::Identity(e) => match e {
                identity::Error::SignInDenied => lines::SIGN_IN_DENIED.to_owned(),
                identity::Error::SignInExpired => lines::SIGN_IN_EXPIRED.to_owned(),
                identity::Error::SignInCancelled => lines::SIGN_IN_CANCELLED.to_owned(),
                identity::Error::IdpUnavailable { .. } => lines::IDP_UNAVAILABLE.to_owned(),
                identity::Error::TokenRejected(_) => lines::TOKEN_REJECTED.to_owned(),
                identity::Error::DomainNotAllowed { email } => lines::domain_not_allowed(email),
                identity::Error::RefreshRejected(_) => lines::INTERNAL.to_owned(),
            },
            Error::SignInUnavailable(why) => why.user_line().to_owned(),
            _ => lines::INTERNAL.to_owned(),
        }
    }

    /// Writes `target.error`: what the user saw and the detail behind it.
    pub(crate) fn audit_target(&self, session_id: &SessionId, route: &str, login: &str) {
        let side = match self.side() {
            Side::Client => "client",
            Side::Target => "target",
            Side::Internal => "internal",
        };
        Event::TargetError {
            session_id: session_id.clone(),
            route: route.to_owned(),
            login: login.to_owned(),
            side,
            user_line: self.user_line(),
            detail: self.to_string(),
        }
        .emit();
    }
}
