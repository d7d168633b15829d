//! OIDC for Gatehouse: discovery, the OAuth 2.0 device authorization grant
//! (RFC 8628), ID-token verification with JWKS rotation, and refresh.
//!
//! The crate knows no SSH and no HTTP server: the gateway drives the device
//! flow from its keyboard-interactive prompt, and the web app and the HTTP
//! proxy drive the authorization-code flow with PKCE (`code.rs`) from their
//! sign-in and callback pages, on the same [`Idp`] (discovery, keys,
//! verification and refresh are shared by both flows).
//!
//! Modules: `discovery.rs` (the discovery document, signing keys, and
//! [`LazyIdp`], which discovers on first use), `device.rs` (device
//! authorization and token polling), `code.rs` (authorization code with
//! PKCE S256, state and nonce), `verify.rs` (ID-token verification and
//! claims), `refresh.rs` (refresh-token grant), `http.rs` (the one HTTP
//! client), `error.rs`.
//!
//! An SSH client cannot open a browser, so the gateway asks the identity
//! provider for a device code, shows the user a short code and a URL, and
//! polls the token endpoint until the user approves in a browser elsewhere.
//! The ID token that comes back is verified here (signature against the
//! provider's JWKS, exact issuer, audience, expiry) before anything trusts
//! its claims.
//!
//! The device flow is [`Idp::discover`] once, then per sign-in
//! [`Idp::start_device_authorization`] and [`Idp::wait_for_sign_in`].
//!
//! HTTP goes through one small adapter over reqwest (`HttpClient`), used
//! both by `openidconnect` (discovery, JWKS, device authorization) and by our
//! own token polling, so the gateway builds one reqwest and one TLS stack
//! (rustls on ring). The adapter never follows redirects (an IdP answer
//! must not steer the gateway to another host) and bounds every request by
//! `http_timeout`, so an IdP outage cannot hang an SSH connection.
//!
//! Polling is ours rather than `oauth2`'s loop: that loop retries transport
//! errors silently until the device code expires, cannot take a configured
//! interval, and gives no place to stop when the SSH client disconnects.
//!
//! **Invariant:** device codes, tokens and client secrets never reach logs,
//! errors or `Debug` output; their types print `***`.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod,
    CoreDeviceAuthorizationResponse, CoreGenderClaim, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::http::{StatusCode, header};
use openidconnect::url::form_urlencoded;
use openidconnect::{
    AdditionalClaims, AdditionalProviderMetadata, AsyncHttpClient, AuthType,
    ClaimsVerificationError, ClientId, ClientSecret, DeviceAuthorizationUrl, DiscoveryError,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, IdToken,
    IdTokenVerifier, IssuerUrl, JsonWebKeySet, JsonWebKeySetUrl, Nonce, ProviderMetadata,
    RequestTokenError, Scope, SignatureVerificationError, TokenUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

mod code;
mod device;
mod discovery;
mod error;
#[doc(hidden)]
pub mod fuzz;
mod http;
mod refresh;
#[cfg(test)]
mod tests;
mod verify;

pub use code::{PendingCodeSignIn, callback_error};
pub use discovery::LazyIdp;
pub use error::Error;
pub use verify::{claims_from_json, constant_time_eq, domain_allowed};

use crate::http::{HttpClient, error_chain};

/// What `slow_down` adds to the interval (RFC 8628 §3.5).
pub(crate) const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// The fastest we ever poll, whatever the IdP or the settings say, so a
/// zero interval cannot turn the gateway into a load generator.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The longest wait between polls after transport errors (exponential
/// backoff, RFC 8628 §3.5), unless the interval itself is longer.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Consecutive failed polls (transport errors, 5xx, garbage) after which
/// the IdP counts as down. Bounds how long an outage keeps a user waiting:
/// about 7 intervals.
pub(crate) const MAX_POLL_FAILURES: u32 = 3;
/// The longest device-code lifetime we honour, whatever `expires_in` says:
/// nobody should sit at an SSH prompt longer, and it keeps `Instant`
/// arithmetic far from overflow.
pub(crate) const MAX_DEVICE_CODE_LIFETIME: Duration = Duration::from_secs(3600);
/// The largest IdP response we read. Discovery documents and key sets are a
/// few KiB; anything bigger is a misbehaving or hostile endpoint.
pub(crate) const MAX_BODY: usize = 1 << 20;
/// The longest TCP (and TLS) connect we wait for, if `http_timeout` is longer.
pub(crate) const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Stands for a missing or unverified email in [`Error::DomainNotAllowed`].
pub(crate) const NO_EMAIL: &str = "(no verified email)";
/// How much of an IdP's free-text error description we keep.
pub(crate) const MAX_DESCRIPTION: usize = 200;

/// How to reach and trust one identity provider. The config parser builds
/// this; [`IdpSettings::new`] fills in the defaults.
#[derive(Clone)]
pub struct IdpSettings {
    /// The issuer URL, exactly as the IdP spells it in its discovery
    /// document and in `iss` (no trailing slash unless the IdP has one).
    pub issuer: String,
    /// The client registered at the IdP for the gateway.
    pub client_id: String,
    /// The client secret for a confidential client; `None` for a public
    /// client. Sent with HTTP Basic unless discovery says the IdP only
    /// takes it in the request body.
    pub client_secret: Option<String>,
    /// Scopes to request. `openid` is always sent, listed or not. Default
    /// `openid email profile`; add `groups` (or the IdP's equivalent) for a
    /// groups claim and `offline_access` for a refresh token.
    pub scopes: Vec<String>,
    /// The ID-token claim holding the user's groups (default `groups`).
    /// It may be an array of strings or a single string.
    pub groups_claim: String,
    /// Poll this often instead of the IdP's `interval` (never under 1 s).
    pub poll_interval: Option<Duration>,
    /// Email domains allowed to sign in, matched case-insensitively and
    /// exactly (`example.com` does not admit `eu.example.com`). Empty
    /// admits everyone the IdP vouches for.
    pub allowed_domains: Vec<String>,
    /// Bound on every HTTP request to the IdP, connect included.
    pub http_timeout: Duration,
}

impl IdpSettings {
    /// Settings for `issuer` and `client_id` with every default: public
    /// client, scopes `openid email profile`, claim `groups`, the IdP's
    /// interval, any domain, 10 s per request.
    pub fn new(issuer: impl Into<String>, client_id: impl Into<String>) -> Self {
        IdpSettings {
            issuer: issuer.into(),
            client_id: client_id.into(),
            client_secret: None,
            scopes: ["openid", "email", "profile"].map(str::to_owned).to_vec(),
            groups_claim: "groups".to_owned(),
            poll_interval: None,
            allowed_domains: Vec::new(),
            http_timeout: Duration::from_secs(5),
        }
    }
}

/// Hand-written so the client secret never shows.
impl fmt::Debug for IdpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdpSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .field("scopes", &self.scopes)
            .field("groups_claim", &self.groups_claim)
            .field("poll_interval", &self.poll_interval)
            .field("allowed_domains", &self.allowed_domains)
            .field("http_timeout", &self.http_timeout)
            .finish()
    }
}

/// A refresh token: a long-lived credential, so it prints as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

impl RefreshToken {
    /// A token read back from where it was stored (the state database).
    pub fn new(token: String) -> Self {
        RefreshToken(token)
    }

    /// The token itself, for the one place that sends it back to the IdP.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

/// Redacted: refresh tokens must not reach logs.
impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(***)")
    }
}

/// The device code: whoever holds it collects the user's tokens, so it
/// stays private to this module and prints as `***`.
#[derive(Clone)]
pub(crate) struct DeviceCode(pub(crate) String);

/// Redacted: the device code is a bearer credential until it expires.
impl fmt::Debug for DeviceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceCode(***)")
    }
}

/// A pending sign-in: what to show the user, and what to poll with.
#[derive(Clone, Debug)]
pub struct DeviceAuthorization {
    /// The short code the user types at `verification_uri`.
    pub user_code: String,
    /// The page where the user enters the code.
    pub verification_uri: String,
    /// The same page with the code filled in, if the IdP offers one (good
    /// for a QR code).
    pub verification_uri_complete: Option<String>,
    /// When the device code expires by our clock (the IdP's `expires_in`,
    /// counted from before we asked, capped at an hour).
    pub expires_at: Instant,
    /// The first poll interval: `poll_interval` if set, else the IdP's
    /// `interval`, else 5 s; never under 1 s.
    pub interval: Duration,
    pub(crate) device_code: DeviceCode,
}

/// Who signed in, from a verified ID token.
#[derive(Clone, Debug)]
pub struct SignedIn {
    /// The IdP's stable subject identifier (`sub`).
    pub sub: String,
    /// The email, unless missing or marked `email_verified: false` (an
    /// unverified address says nothing about who the user is).
    pub email: Option<String>,
    /// The configured groups claim; empty if absent or not strings.
    pub groups: Vec<String>,
    /// The token's issuer, equal to the configured one.
    pub issuer: String,
    /// Present when `offline_access` (or the IdP's policy) granted one.
    pub refresh_token: Option<RefreshToken>,
    /// Every claim of the ID token, for the policy's `claim.<name>`.
    pub claims: policy::lang::Claims,
    /// The same claims as a JSON object, as the binding stores them.
    pub claims_json: String,
}

/// What a refresh ([`Idp::refresh`]) brought back.
#[derive(Debug)]
pub struct Refreshed {
    /// The identity from the new ID token, when the IdP sent one (OIDC
    /// Core §12.2 lets it leave the ID token out of a refresh).
    pub signed_in: Option<SignedIn>,
    /// The refresh token to use next time: a rotated one, or none when the
    /// IdP did not rotate it (keep the old one then).
    pub refresh_token: Option<RefreshToken>,
}

/// The device authorization endpoint from discovery; optional so that an
/// IdP without it gets a clear error instead of a parse failure.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct DeviceEndpoint {
    pub(crate) device_authorization_endpoint: Option<DeviceAuthorizationUrl>,
}

impl AdditionalProviderMetadata for DeviceEndpoint {}

/// Discovery metadata with the device endpoint.
pub(crate) type Metadata = ProviderMetadata<
    DeviceEndpoint,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The openidconnect client once discovery set its endpoints. The device
/// authorization endpoint is optional (an IdP may not offer the grant), so
/// it is kept beside the client and set for each device sign-in.
pub(crate) type OidcClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Every claim the standard ones do not cover. The groups claim's name is
/// configurable, so it cannot be a named field.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct OtherClaims {
    #[serde(flatten)]
    pub(crate) other: serde_json::Map<String, Value>,
}

impl AdditionalClaims for OtherClaims {}

/// An ID token with our claims.
pub(crate) type GatehouseIdToken = IdToken<
    OtherClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// One identity provider: its discovered endpoints, its signing keys
/// (refreshed when it rotates them) and the HTTP client. Cheap to clone
/// and share between connections.
#[derive(Clone)]
pub struct Idp {
    pub(crate) inner: Arc<Inner>,
}

/// What [`Idp`] shares.
pub(crate) struct Inner {
    pub(crate) settings: IdpSettings,
    pub(crate) issuer: IssuerUrl,
    pub(crate) http: HttpClient,
    pub(crate) client: OidcClient,
    /// The device authorization endpoint, when discovery lists one.
    pub(crate) device_url: Option<DeviceAuthorizationUrl>,
    pub(crate) token_url: TokenUrl,
    pub(crate) jwks_uri: JsonWebKeySetUrl,
    pub(crate) jwks: RwLock<JsonWebKeySet<CoreJsonWebKey>>,
    pub(crate) signing_algs: Vec<CoreJwsSigningAlgorithm>,
    pub(crate) auth_type: AuthType,
}

/// Shows the issuer only: the rest is either settings (with a secret) or
/// key material.
impl fmt::Debug for Idp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idp")
            .field("issuer", &self.inner.settings.issuer)
            .finish_non_exhaustive()
    }
}
