//! The identity crate's one error type.

/// What can go wrong talking to the identity provider or with what it said.
///
/// **Invariant:** no variant carries a token, a device code or a client
/// secret; reasons name endpoints and what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The identity provider could not be reached in time or answered
    /// something unusable (discovery, JWKS, device authorization, token).
    #[error("identity provider {issuer} unavailable: {reason}")]
    IdpUnavailable {
        /// The configured issuer.
        issuer: String,
        /// The transport or protocol error.
        reason: String,
    },
    /// The user denied the sign-in at the identity provider.
    #[error("sign-in was denied at the identity provider")]
    SignInDenied,
    /// The device code expired before the user finished signing in.
    #[error("sign-in expired before it was completed")]
    SignInExpired,
    /// The caller cancelled a pending sign-in (the SSH client went away);
    /// polling stopped at once.
    #[error("sign-in cancelled: the SSH client went away")]
    SignInCancelled,
    /// The ID token failed verification (signature, issuer, audience,
    /// expiry, or a required claim missing).
    #[error("ID token rejected: {0}")]
    TokenRejected(String),
    /// The IdP refused to renew a sign-in (`invalid_grant`: the refresh
    /// token was revoked or expired, or the user was disabled).
    #[error("the identity provider refused to renew the sign-in: {0}")]
    RefreshRejected(String),
    /// The signed-in email's domain is not in `allowed_domains`.
    #[error("email domain of {email} is not allowed")]
    DomainNotAllowed {
        /// The email from the ID token.
        email: String,
    },
}
