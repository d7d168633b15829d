//! OIDC sign-in with the OAuth 2.0 device authorization grant (RFC 8628).
//!
//! An SSH client cannot open a browser, so the gateway asks the identity
//! provider for a device code, shows the user a short code and a URL, and
//! polls the token endpoint until the user approves in a browser elsewhere.
//! The ID token that comes back is verified here (signature against the
//! provider's JWKS, exact issuer, audience, expiry) before anything trusts
//! its claims.
//!
//! The flow is [`Idp::discover`] once at start, then per sign-in
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
use openidconnect::http::{self, StatusCode, header};
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

use crate::Error;

/// What `slow_down` adds to the interval (RFC 8628 §3.5).
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// The fastest we ever poll, whatever the IdP or the settings say, so a
/// zero interval cannot turn the gateway into a load generator.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The longest wait between polls after transport errors (exponential
/// backoff, RFC 8628 §3.5), unless the interval itself is longer.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Consecutive failed polls (transport errors, 5xx, garbage) after which
/// the IdP counts as down. Bounds how long an outage keeps a user waiting:
/// about 7 intervals.
const MAX_POLL_FAILURES: u32 = 3;
/// The longest device-code lifetime we honour, whatever `expires_in` says:
/// nobody should sit at an SSH prompt longer, and it keeps `Instant`
/// arithmetic far from overflow.
const MAX_DEVICE_CODE_LIFETIME: Duration = Duration::from_secs(3600);
/// The largest IdP response we read. Discovery documents and key sets are a
/// few KiB; anything bigger is a misbehaving or hostile endpoint.
const MAX_BODY: usize = 1 << 20;
/// The longest TCP (and TLS) connect we wait for, if `http_timeout` is longer.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Stands for a missing or unverified email in [`Error::DomainNotAllowed`].
const NO_EMAIL: &str = "(no verified email)";
/// How much of an IdP's free-text error description we keep.
const MAX_DESCRIPTION: usize = 200;

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
            http_timeout: Duration::from_secs(10),
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
    /// A token read back from the binding store.
    pub(crate) fn new(token: String) -> Self {
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
struct DeviceCode(String);

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
    device_code: DeviceCode,
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
struct DeviceEndpoint {
    device_authorization_endpoint: Option<DeviceAuthorizationUrl>,
}

impl AdditionalProviderMetadata for DeviceEndpoint {}

/// Discovery metadata with the device endpoint.
type Metadata = ProviderMetadata<
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

/// The openidconnect client once discovery set its endpoints.
type DeviceClient = CoreClient<
    EndpointSet,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Every claim the standard ones do not cover. The groups claim's name is
/// configurable, so it cannot be a named field.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct OtherClaims {
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

impl AdditionalClaims for OtherClaims {}

/// An ID token with our claims.
type GatehouseIdToken = IdToken<
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
    inner: Arc<Inner>,
}

/// What [`Idp`] shares.
struct Inner {
    settings: IdpSettings,
    issuer: IssuerUrl,
    http: HttpClient,
    client: DeviceClient,
    token_url: TokenUrl,
    jwks_uri: JsonWebKeySetUrl,
    jwks: RwLock<JsonWebKeySet<CoreJsonWebKey>>,
    signing_algs: Vec<CoreJwsSigningAlgorithm>,
    auth_type: AuthType,
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

impl Idp {
    /// Fetches the discovery document and the signing keys. Fails with
    /// [`Error::IdpUnavailable`] if the IdP cannot be reached within
    /// `http_timeout` per request, names another issuer, or has no device
    /// authorization or token endpoint.
    pub async fn discover(settings: IdpSettings) -> Result<Idp, Error> {
        let started = Instant::now();
        let http = HttpClient::new(&settings)?;
        let unavailable = |reason: String| Error::IdpUnavailable {
            issuer: settings.issuer.clone(),
            reason,
        };
        let issuer = IssuerUrl::new(settings.issuer.clone())
            .map_err(|e| unavailable(format!("invalid issuer URL: {e}")))?;
        let metadata = Metadata::discover_async(issuer.clone(), &http)
            .await
            .map_err(|e| match e {
                DiscoveryError::Request(inner) => inner,
                other => unavailable(format!("discovery: {}", error_chain(&other))),
            })?;
        let device_url = metadata
            .additional_metadata()
            .device_authorization_endpoint
            .clone()
            .ok_or_else(|| {
                unavailable("discovery names no device_authorization_endpoint".to_owned())
            })?;
        let token_url = metadata
            .token_endpoint()
            .cloned()
            .ok_or_else(|| unavailable("discovery names no token_endpoint".to_owned()))?;
        let auth_type = auth_type(
            settings.client_secret.is_some(),
            metadata.token_endpoint_auth_methods_supported(),
        );
        let signing_algs = signing_algs(metadata.id_token_signing_alg_values_supported());
        let jwks = metadata.jwks().clone();
        let jwks_uri = metadata.jwks_uri().clone();
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(settings.client_id.clone()),
            settings.client_secret.clone().map(ClientSecret::new),
        )
        .set_device_authorization_url(device_url)
        .set_auth_type(auth_type.clone());
        tracing::debug!(
            issuer = %settings.issuer,
            keys = jwks.keys().len(),
            elapsed_ms = started.elapsed().as_millis(),
            "identity provider discovered"
        );
        Ok(Idp {
            inner: Arc::new(Inner {
                issuer,
                http,
                client,
                token_url,
                jwks_uri,
                jwks: RwLock::new(jwks),
                signing_algs,
                auth_type,
                settings,
            }),
        })
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.inner.settings.issuer
    }

    /// Asks the IdP for a device code and a user code to show. Fails with
    /// [`Error::IdpUnavailable`] if the IdP is unreachable or refuses (an
    /// unknown client, a wrong secret, a scope it does not know).
    pub async fn start_device_authorization(&self) -> Result<DeviceAuthorization, Error> {
        let asked_at = Instant::now();
        let scopes = self
            .inner
            .settings
            .scopes
            .iter()
            .filter(|s| s.as_str() != "openid") // openidconnect adds it
            .map(|s| Scope::new(s.clone()));
        let response: CoreDeviceAuthorizationResponse = self
            .inner
            .client
            .exchange_device_code()
            .add_scopes(scopes)
            .request_async(&self.inner.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::Request(inner) => inner,
                other => self.unavailable(format!("device authorization: {}", error_chain(&other))),
            })?;
        let lifetime = response.expires_in().min(MAX_DEVICE_CODE_LIFETIME);
        let interval = first_interval(response.interval(), self.inner.settings.poll_interval);
        tracing::debug!(
            issuer = %self.inner.settings.issuer,
            expires_in_s = lifetime.as_secs(),
            interval_ms = interval.as_millis(),
            "device authorization started"
        );
        Ok(DeviceAuthorization {
            user_code: response.user_code().secret().clone(),
            verification_uri: response.verification_uri().to_string(),
            verification_uri_complete: response
                .verification_uri_complete()
                .map(|u| u.secret().clone()),
            // `lifetime` is at most an hour, so this cannot overflow.
            expires_at: asked_at.checked_add(lifetime).unwrap_or(asked_at),
            interval,
            device_code: DeviceCode(response.device_code().secret().clone()),
        })
    }

    /// Polls the token endpoint until the user approves, then verifies the
    /// ID token and returns who signed in.
    ///
    /// Waits `interval` before each poll (the first included: nobody
    /// approves in zero seconds) and 5 s longer after each `slow_down`. Ends with [`Error::SignInDenied`] when the user denies,
    /// [`Error::SignInExpired`] when the IdP says the code expired or our
    /// clock passes `expires_at`, [`Error::IdpUnavailable`] after three
    /// failed polls in a row (backing off 2×, 4×) or an unexpected OAuth
    /// error, and [`Error::TokenRejected`] / [`Error::DomainNotAllowed`] as
    /// [`Idp::verify_id_token`] does.
    ///
    /// When `cancel` fires (the SSH client went away) it returns at once
    /// with [`Error::SignInCancelled`].
    pub async fn wait_for_sign_in(
        &self,
        auth: &DeviceAuthorization,
        cancel: &CancellationToken,
    ) -> Result<SignedIn, Error> {
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(Error::SignInCancelled),
            result = self.poll_until_done(auth) => result,
        }
    }

    /// Verifies a raw ID token as [`Idp::wait_for_sign_in`] does: signature
    /// against the IdP's keys (fetched again once if the token names an
    /// unknown key, as after a rotation), exact issuer, audience containing
    /// our client id, expiry; then the allowed email domains. There is no
    /// nonce: the device grant has none to bind.
    ///
    /// Public for tests that feed it tokens from elsewhere; the gateway
    /// itself only verifies tokens it polled.
    #[doc(hidden)]
    pub async fn verify_id_token(&self, raw: &str) -> Result<SignedIn, Error> {
        let token: GatehouseIdToken = raw
            .parse()
            .map_err(|e| Error::TokenRejected(format!("malformed ID token: {e}")))?;
        let claims = match self.check_claims(&token) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                tracing::info!(
                    issuer = %self.inner.settings.issuer,
                    "ID token names an unknown signing key; fetching the key set again"
                );
                self.refresh_jwks().await?;
                self.check_claims(&token)
            }
            other => other,
        }
        .map_err(|e| Error::TokenRejected(error_chain(&e)))?;

        let email = match (claims.email(), claims.email_verified()) {
            (Some(_), Some(false)) | (None, _) => None,
            (Some(email), _) => Some(email.to_string()),
        };
        if !domain_allowed(email.as_deref(), &self.inner.settings.allowed_domains) {
            return Err(Error::DomainNotAllowed {
                email: email.unwrap_or_else(|| NO_EMAIL.to_owned()),
            });
        }
        let groups_claim = &self.inner.settings.groups_claim;
        let groups_value = claims.additional_claims().other.get(groups_claim);
        let groups = groups_from_claim(groups_value);
        if groups_value.is_some_and(|v| !(v.is_array() || v.is_string() || v.is_null())) {
            tracing::warn!(
                issuer = %self.inner.settings.issuer,
                claim = %groups_claim,
                "groups claim is neither a string nor an array of strings; ignoring it"
            );
        }
        // All claims, standard ones included, as the policy sees them. The
        // token's own serialization is the source, so nothing is renamed.
        let claims_value = serde_json::to_value(&claims).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the ID token's claims for the policy");
            Value::Object(serde_json::Map::new())
        });
        let all_claims = claims_from_json(&claims_value);
        Ok(SignedIn {
            sub: claims.subject().to_string(),
            email,
            groups,
            issuer: claims.issuer().to_string(),
            refresh_token: None,
            claims: all_claims,
            claims_json: claims_value.to_string(),
        })
    }

    /// Renews a sign-in with its refresh token (RFC 6749 §6), for routes
    /// with `reauth_every`. A new ID token is verified like the first one
    /// and must name the same subject. Any failure means the sign-in no
    /// longer holds: `invalid_grant` (revoked or expired) is
    /// [`Error::RefreshRejected`], an unreachable IdP
    /// [`Error::IdpUnavailable`].
    pub async fn refresh(&self, token: &RefreshToken, sub: &str) -> Result<Refreshed, Error> {
        let request = self.token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token.secret()),
        ])?;
        let response = self
            .inner
            .http
            .send(request)
            .await
            .map_err(|reason| self.unavailable(reason))?;
        let status = response.status();
        if status != StatusCode::OK {
            let error = serde_json::from_slice::<OAuthError>(response.body())
                .map(|e| e.error)
                .unwrap_or_else(|_| format!("HTTP {status}"));
            return Err(if status.is_server_error() {
                self.unavailable(format!("token endpoint: {error}"))
            } else {
                Error::RefreshRejected(error)
            });
        }
        #[derive(Deserialize)]
        struct RefreshAnswer {
            id_token: Option<String>,
            refresh_token: Option<String>,
        }
        let answer: RefreshAnswer = serde_json::from_slice(response.body())
            .map_err(|e| self.unavailable(format!("token endpoint: unreadable response: {e}")))?;
        let signed_in = match answer.id_token {
            Some(raw) => {
                let signed_in = self.verify_id_token(&raw).await?;
                if signed_in.sub != sub {
                    return Err(Error::TokenRejected(
                        "the refreshed ID token names another subject".to_owned(),
                    ));
                }
                Some(signed_in)
            }
            None => None,
        };
        Ok(Refreshed {
            signed_in,
            refresh_token: answer.refresh_token.map(RefreshToken),
        })
    }

    /// The polling loop of [`Idp::wait_for_sign_in`], without cancellation.
    async fn poll_until_done(&self, auth: &DeviceAuthorization) -> Result<SignedIn, Error> {
        let mut interval = auth.interval;
        let mut failures = 0;
        loop {
            let delay = poll_delay(interval, failures);
            let wake = Instant::now()
                .checked_add(delay)
                .map_or(auth.expires_at, |wake| wake.min(auth.expires_at));
            tokio::time::sleep_until(wake.into()).await;
            if Instant::now() >= auth.expires_at {
                return Err(Error::SignInExpired);
            }
            match self.poll_once(&auth.device_code).await? {
                Poll::Pending => failures = 0,
                Poll::SlowDown => {
                    failures = 0;
                    interval = slowed_down(interval);
                    tracing::debug!(
                        interval_ms = interval.as_millis(),
                        "identity provider asked to slow down"
                    );
                }
                Poll::Failed(reason) => {
                    failures += 1;
                    if failures >= MAX_POLL_FAILURES {
                        return Err(self.unavailable(reason));
                    }
                    tracing::debug!(failures, %reason, "token poll failed; backing off");
                }
                Poll::Tokens(tokens) => {
                    let mut signed_in = self.verify_id_token(&tokens.id_token).await?;
                    signed_in.refresh_token = tokens.refresh_token.map(RefreshToken);
                    return Ok(signed_in);
                }
            }
        }
    }

    /// One token request with the device code (RFC 8628 §3.4). Terminal
    /// answers are errors; what warrants another poll is a [`Poll`].
    async fn poll_once(&self, device_code: &DeviceCode) -> Result<Poll, Error> {
        let request = self.token_request(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", &device_code.0),
        ])?;
        let response = match self.inner.http.send(request).await {
            Ok(response) => response,
            Err(reason) => return Ok(Poll::Failed(reason)),
        };
        classify_token_response(
            &self.inner.settings.issuer,
            response.status(),
            response.body(),
        )
    }

    /// A token request with `pairs` and the client authentication chosen
    /// at discovery. Not async: the form serializer is not `Send`.
    fn token_request(&self, pairs: &[(&str, &str)]) -> Result<reqwest::Request, Error> {
        let settings = &self.inner.settings;
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.extend_pairs(pairs);
        let mut request = self
            .inner
            .http
            .client
            .post(self.inner.token_url.url().clone())
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        match (&settings.client_secret, &self.inner.auth_type) {
            (Some(secret), AuthType::BasicAuth) => {
                // RFC 6749 §2.3.1: both parts form-encoded before Basic.
                let id: String =
                    form_urlencoded::byte_serialize(settings.client_id.as_bytes()).collect();
                let secret: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
                request = request.basic_auth(id, Some(secret));
            }
            (Some(secret), _) => {
                form.append_pair("client_id", &settings.client_id)
                    .append_pair("client_secret", secret);
            }
            (None, _) => {
                form.append_pair("client_id", &settings.client_id);
            }
        }
        request
            .body(form.finish())
            .build()
            .map_err(|e| self.unavailable(format!("token request: {}", error_chain(&e))))
    }

    /// Checks `token` against the keys we hold now.
    fn check_claims(
        &self,
        token: &GatehouseIdToken,
    ) -> Result<openidconnect::IdTokenClaims<OtherClaims, CoreGenderClaim>, ClaimsVerificationError>
    {
        let keys = match self.inner.jwks.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let client_id = ClientId::new(self.inner.settings.client_id.clone());
        let verifier = match &self.inner.settings.client_secret {
            Some(secret) => IdTokenVerifier::new_confidential_client(
                client_id,
                ClientSecret::new(secret.clone()),
                self.inner.issuer.clone(),
                keys,
            ),
            None => IdTokenVerifier::new_public_client(client_id, self.inner.issuer.clone(), keys),
        }
        .set_allowed_algs(self.inner.signing_algs.clone());
        token.claims(&verifier, |_: Option<&Nonce>| Ok(())).cloned()
    }

    /// Fetches the key set again and replaces ours with it.
    async fn refresh_jwks(&self) -> Result<(), Error> {
        let keys = JsonWebKeySet::fetch_async(&self.inner.jwks_uri, &self.inner.http)
            .await
            .map_err(|e| match e {
                DiscoveryError::Request(inner) => inner,
                other => self.unavailable(format!("key set: {}", error_chain(&other))),
            })?;
        match self.inner.jwks.write() {
            Ok(mut slot) => *slot = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
        Ok(())
    }

    /// An [`Error::IdpUnavailable`] for this IdP.
    fn unavailable(&self, reason: String) -> Error {
        Error::IdpUnavailable {
            issuer: self.inner.settings.issuer.clone(),
            reason,
        }
    }
}

/// What one token poll says about the next.
#[derive(Debug)]
enum Poll {
    /// `authorization_pending`: ask again after the interval.
    Pending,
    /// `slow_down`: ask again, 5 s more patiently from now on.
    SlowDown,
    /// The request failed in a way that may pass (transport, 5xx, garbage).
    Failed(String),
    /// The user approved.
    Tokens(TokenSet),
}

/// The parts of a token response we use. Not `Debug`-derived: it holds
/// tokens.
#[derive(Deserialize)]
struct TokenSet {
    id_token: String,
    refresh_token: Option<String>,
}

/// Redacted: both fields are credentials.
impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSet(***)")
    }
}

/// An OAuth error response (RFC 6749 §5.2).
#[derive(Deserialize)]
struct OAuthError {
    error: String,
    error_description: Option<String>,
}

/// Sorts a token endpoint answer into a terminal error or a [`Poll`].
fn classify_token_response(issuer: &str, status: StatusCode, body: &[u8]) -> Result<Poll, Error> {
    if status == StatusCode::OK {
        #[derive(Deserialize)]
        struct MaybeIdToken {
            id_token: Option<String>,
            refresh_token: Option<String>,
        }
        return match serde_json::from_slice::<MaybeIdToken>(body) {
            Ok(MaybeIdToken {
                id_token: Some(id_token),
                refresh_token,
            }) => Ok(Poll::Tokens(TokenSet {
                id_token,
                refresh_token,
            })),
            Ok(MaybeIdToken { id_token: None, .. }) => Err(Error::TokenRejected(
                "the token response has no id_token (is the openid scope granted?)".to_owned(),
            )),
            // serde_json's message has no input text, only a position.
            Err(e) => Ok(Poll::Failed(format!(
                "token endpoint: unreadable response: {e}"
            ))),
        };
    }
    let Ok(OAuthError {
        error,
        error_description,
    }) = serde_json::from_slice::<OAuthError>(body)
    else {
        return Ok(Poll::Failed(format!("token endpoint: HTTP {status}")));
    };
    match error.as_str() {
        "authorization_pending" => Ok(Poll::Pending),
        "slow_down" => Ok(Poll::SlowDown),
        "access_denied" => Err(Error::SignInDenied),
        "expired_token" => Err(Error::SignInExpired),
        _ if status.is_server_error() => Ok(Poll::Failed(format!(
            "token endpoint: HTTP {status}: {error}"
        ))),
        _ => {
            let description: String = error_description
                .unwrap_or_default()
                .chars()
                .take(MAX_DESCRIPTION)
                .collect();
            Err(Error::IdpUnavailable {
                issuer: issuer.to_owned(),
                reason: format!("token endpoint: {error}: {description}"),
            })
        }
    }
}

/// The first poll interval: the override, else the IdP's, never under
/// [`MIN_INTERVAL`]. openidconnect already substitutes RFC 8628's 5 s
/// when the IdP sends no `interval` (oidc-provider, for one, never does).
fn first_interval(from_idp: Duration, override_: Option<Duration>) -> Duration {
    override_.unwrap_or(from_idp).max(MIN_INTERVAL)
}

/// The interval after a `slow_down` (RFC 8628 §3.5: add 5 s).
fn slowed_down(interval: Duration) -> Duration {
    interval.saturating_add(SLOW_DOWN_STEP)
}

/// The wait before the next poll: the interval, doubled per consecutive
/// failure, capped at [`MAX_BACKOFF`] (or the interval, if longer).
fn poll_delay(interval: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures);
    interval
        .saturating_mul(factor)
        .min(MAX_BACKOFF.max(interval))
}

/// The client authentication to use at the token endpoint: HTTP Basic
/// (the default, RFC 6749 §2.3.1) unless discovery lists only
/// `client_secret_post`. Public clients send `client_id` in the body
/// either way.
fn auth_type(has_secret: bool, supported: Option<&Vec<CoreClientAuthMethod>>) -> AuthType {
    match supported {
        Some(methods)
            if has_secret
                && !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
                && methods.contains(&CoreClientAuthMethod::ClientSecretPost) =>
        {
            AuthType::RequestBody
        }
        _ => AuthType::BasicAuth,
    }
}

/// ID-token signature algorithms to accept: what the IdP advertises, minus
/// `none`; RS256 (the OIDC default) if that leaves nothing. HMAC ones work
/// only for a confidential client (openidconnect refuses them otherwise).
fn signing_algs(advertised: &[CoreJwsSigningAlgorithm]) -> Vec<CoreJwsSigningAlgorithm> {
    let algs: Vec<_> = advertised
        .iter()
        .filter(|alg| **alg != CoreJwsSigningAlgorithm::None)
        .cloned()
        .collect();
    if algs.is_empty() {
        vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]
    } else {
        algs
    }
}

/// Whether `email` may sign in under `allowed` (empty: anyone). Exact,
/// case-insensitive domain match; no email never matches a non-empty list.
fn domain_allowed(email: Option<&str>, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some((local, domain)) = email.and_then(|e| e.rsplit_once('@')) else {
        return false;
    };
    !local.is_empty()
        && allowed.iter().any(|d| {
            d.trim()
                .trim_start_matches('@')
                .eq_ignore_ascii_case(domain)
        })
}

/// ID-token claims (a JSON object) as the policy reads them; anything but
/// an object is no claims.
pub fn claims_from_json(value: &Value) -> policy::lang::Claims {
    policy::lang::Claims::deserialize(value).unwrap_or_default()
}

/// The groups in a claim value: an array's strings (other items skipped),
/// or a single string as one group; anything else is no groups.
fn groups_from_claim(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(group)) => vec![group.clone()],
        _ => Vec::new(),
    }
}

/// An error and its sources, `: `-joined, because reqwest and
/// openidconnect keep the useful part (connection refused, which claim)
/// in the source chain.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The one HTTP client: reqwest on rustls with ring, no redirects, every
/// request bounded by `http_timeout`, bodies capped at [`MAX_BODY`].
/// openidconnect calls it through [`AsyncHttpClient`]; its errors are
/// already [`Error::IdpUnavailable`].
#[derive(Clone)]
struct HttpClient {
    client: reqwest::Client,
    issuer: String,
}

impl HttpClient {
    /// Builds the client, installing ring as rustls's process-wide crypto
    /// provider first unless one is installed (reqwest is built with
    /// `rustls-no-provider`, so it would panic without one; installing
    /// ring keeps aws-lc out of the build).
    fn new(settings: &IdpSettings) -> Result<HttpClient, Error> {
        // Err means a provider is already installed, which is all we need.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.http_timeout.min(MAX_CONNECT_TIMEOUT))
            .timeout(settings.http_timeout)
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::IdpUnavailable {
                issuer: settings.issuer.clone(),
                reason: format!("cannot build HTTP client: {}", error_chain(&e)),
            })?;
        Ok(HttpClient {
            client,
            issuer: settings.issuer.clone(),
        })
    }

    /// Sends `request` and reads at most [`MAX_BODY`] of the answer. The
    /// error is the reason for an [`Error::IdpUnavailable`], naming the URL
    /// (an endpoint from discovery, so no credentials in it).
    async fn send(&self, request: reqwest::Request) -> Result<HttpResponse, String> {
        let url = request.url().clone();
        let failed = |e: reqwest::Error| format!("{url}: {}", error_chain(&e.without_url()));
        let mut response = self.client.execute(request).await.map_err(failed)?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len().saturating_add(chunk.len()) > MAX_BODY {
                return Err(format!("{url}: response larger than {MAX_BODY} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let mut builder = http::Response::builder().status(response.status());
        if let Some(headers) = builder.headers_mut() {
            headers.extend(response.headers().clone());
        }
        builder.body(body).map_err(|e| format!("{url}: {e}"))
    }
}

/// openidconnect's view of [`HttpClient`]: failures are already
/// [`Error::IdpUnavailable`], so discovery and device authorization pass
/// them through unchanged.
impl<'c> AsyncHttpClient<'c> for HttpClient {
    type Error = Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HttpResponse, Error>> + Send + 'c>,
    >;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request =
                reqwest::Request::try_from(request).map_err(|e| Error::IdpUnavailable {
                    issuer: self.issuer.clone(),
                    reason: format!("bad request: {}", error_chain(&e)),
                })?;
            self.send(request)
                .await
                .map_err(|reason| Error::IdpUnavailable {
                    issuer: self.issuer.clone(),
                    reason,
                })
        })
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn first_interval_prefers_the_override_and_never_goes_under_a_second() {
        assert_eq!(first_interval(S(5), None), S(5));
        assert_eq!(first_interval(S(5), Some(S(2))), S(2));
        assert_eq!(first_interval(S(0), None), S(1));
        assert_eq!(first_interval(S(5), Some(Duration::from_millis(10))), S(1));
    }

    #[test]
    fn a_missing_interval_means_five_seconds() {
        // RFC 8628 §3.2; oidc-provider never sends one (our dev IdP adds it).
        let response: CoreDeviceAuthorizationResponse = serde_json::from_value(serde_json::json!({
            "device_code": "d",
            "user_code": "U",
            "verification_uri": "https://idp.example/device",
            "expires_in": 600,
        }))
        .unwrap();
        assert_eq!(first_interval(response.interval(), None), S(5));
    }

    #[test]
    fn slow_down_adds_five_seconds_each_time() {
        assert_eq!(slowed_down(S(1)), S(6));
        assert_eq!(slowed_down(slowed_down(S(5))), S(15));
        assert_eq!(slowed_down(Duration::MAX), Duration::MAX);
    }

    #[test]
    fn failures_back_off_exponentially_up_to_a_cap() {
        assert_eq!(poll_delay(S(5), 0), S(5));
        assert_eq!(poll_delay(S(5), 1), S(10));
        assert_eq!(poll_delay(S(5), 2), S(20));
        assert_eq!(poll_delay(S(5), 5), MAX_BACKOFF);
        assert_eq!(poll_delay(S(5), 100), MAX_BACKOFF);
        // An interval longer than the cap is never shortened.
        assert_eq!(poll_delay(S(90), 0), S(90));
        assert_eq!(poll_delay(S(90), 3), S(90));
    }

    #[test]
    fn domains_match_exactly_and_case_insensitively() {
        let allowed = vec!["Example.COM".to_owned(), "@corp.example".to_owned()];
        assert!(domain_allowed(Some("alice@example.com"), &allowed));
        assert!(domain_allowed(Some("ALICE@EXAMPLE.com"), &allowed));
        assert!(domain_allowed(Some("bob@corp.example"), &allowed));
        assert!(!domain_allowed(Some("eve@eu.example.com"), &allowed));
        assert!(!domain_allowed(Some("eve@example.com.evil"), &allowed));
        assert!(!domain_allowed(Some("eve@notexample.com"), &allowed));
        assert!(!domain_allowed(Some("example.com"), &allowed));
        assert!(!domain_allowed(Some("@example.com"), &allowed));
        assert!(!domain_allowed(None, &allowed));
        // The last @ separates the domain.
        assert!(!domain_allowed(
            Some("x@example.com@evil.example"),
            &allowed
        ));
        // An empty list admits anyone, with or without an email.
        assert!(domain_allowed(Some("anyone@anywhere.example"), &[]));
        assert!(domain_allowed(None, &[]));
    }

    #[test]
    fn groups_come_from_an_array_of_strings_or_a_single_string() {
        let v = serde_json::json!(["sre", "dev"]);
        assert_eq!(groups_from_claim(Some(&v)), ["sre", "dev"]);
        let v = serde_json::json!(["sre", 7, null, {"a": 1}, "dev"]);
        assert_eq!(groups_from_claim(Some(&v)), ["sre", "dev"]);
        let v = serde_json::json!("sre");
        assert_eq!(groups_from_claim(Some(&v)), ["sre"]);
        for v in [
            serde_json::json!(42),
            serde_json::json!(null),
            serde_json::json!({"sre": true}),
        ] {
            assert!(groups_from_claim(Some(&v)).is_empty(), "{v}");
        }
        assert!(groups_from_claim(None).is_empty());
    }

    #[test]
    fn groups_claim_is_picked_by_its_configured_name() {
        let claims: OtherClaims = serde_json::from_value(serde_json::json!({
            "groups": ["a"],
            "https://example.com/roles": "admin",
        }))
        .unwrap();
        assert_eq!(groups_from_claim(claims.other.get("groups")), ["a"]);
        assert_eq!(
            groups_from_claim(claims.other.get("https://example.com/roles")),
            ["admin"]
        );
    }

    fn classify(status: u16, body: &str) -> Result<Poll, Error> {
        classify_token_response(
            "https://idp.example",
            StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
        )
    }

    #[test]
    fn token_responses_are_classified_per_rfc_8628() {
        assert!(matches!(
            classify(400, r#"{"error":"authorization_pending"}"#),
            Ok(Poll::Pending)
        ));
        assert!(matches!(
            classify(400, r#"{"error":"slow_down"}"#),
            Ok(Poll::SlowDown)
        ));
        assert!(matches!(
            classify(400, r#"{"error":"access_denied"}"#),
            Err(Error::SignInDenied)
        ));
        assert!(matches!(
            classify(400, r#"{"error":"expired_token"}"#),
            Err(Error::SignInExpired)
        ));
        match classify(
            400,
            r#"{"error":"invalid_grant","error_description":"grant request is invalid"}"#,
        ) {
            Err(Error::IdpUnavailable { issuer, reason }) => {
                assert_eq!(issuer, "https://idp.example");
                assert_eq!(
                    reason,
                    "token endpoint: invalid_grant: grant request is invalid"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(503, "<html>down</html>"),
            Ok(Poll::Failed(_))
        ));
        assert!(matches!(
            classify(500, r#"{"error":"server_error"}"#),
            Ok(Poll::Failed(_))
        ));
        assert!(matches!(classify(200, "not json"), Ok(Poll::Failed(_))));
        assert!(matches!(
            classify(200, r#"{"access_token":"a","token_type":"Bearer"}"#),
            Err(Error::TokenRejected(_))
        ));
        match classify(
            200,
            r#"{"access_token":"a","id_token":"i","refresh_token":"r"}"#,
        ) {
            Ok(Poll::Tokens(t)) => {
                assert_eq!(t.id_token, "i");
                assert_eq!(t.refresh_token.as_deref(), Some("r"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn basic_auth_unless_the_idp_only_takes_the_secret_in_the_body() {
        use CoreClientAuthMethod::{ClientSecretBasic, ClientSecretPost};
        let post_only = vec![ClientSecretPost];
        let both = vec![ClientSecretPost, ClientSecretBasic];
        assert!(matches!(
            auth_type(true, Some(&post_only)),
            AuthType::RequestBody
        ));
        assert!(matches!(auth_type(true, Some(&both)), AuthType::BasicAuth));
        assert!(matches!(auth_type(true, None), AuthType::BasicAuth));
        assert!(matches!(
            auth_type(false, Some(&post_only)),
            AuthType::BasicAuth
        ));
    }

    #[test]
    fn alg_none_is_never_accepted() {
        use CoreJwsSigningAlgorithm::{EcdsaP256Sha256, None as AlgNone, RsaSsaPkcs1V15Sha256};
        assert_eq!(signing_algs(&[AlgNone]), [RsaSsaPkcs1V15Sha256]);
        assert_eq!(signing_algs(&[]), [RsaSsaPkcs1V15Sha256]);
        assert_eq!(signing_algs(&[EcdsaP256Sha256, AlgNone]), [EcdsaP256Sha256]);
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let token = RefreshToken("rt-secret".to_owned());
        assert_eq!(format!("{token:?}"), "RefreshToken(***)");
        let auth = DeviceAuthorization {
            user_code: "ABCD-EFGH".to_owned(),
            verification_uri: "https://idp.example/device".to_owned(),
            verification_uri_complete: None,
            expires_at: Instant::now(),
            interval: S(5),
            device_code: DeviceCode("dc-secret".to_owned()),
        };
        let shown = format!("{auth:?}");
        assert!(
            shown.contains("ABCD-EFGH") && !shown.contains("dc-secret"),
            "{shown}"
        );
        let mut settings = IdpSettings::new("https://idp.example", "gatehouse");
        settings.client_secret = Some("cs-secret".to_owned());
        let shown = format!("{settings:?}");
        assert!(
            shown.contains("gatehouse") && !shown.contains("cs-secret"),
            "{shown}"
        );
        let tokens = TokenSet {
            id_token: "it-secret".to_owned(),
            refresh_token: Some("rt-secret".to_owned()),
        };
        assert!(!format!("{tokens:?}").contains("secret"));
        let signed_in = SignedIn {
            sub: "alice".to_owned(),
            email: None,
            groups: Vec::new(),
            issuer: "https://idp.example".to_owned(),
            refresh_token: Some(token),
            claims: policy::lang::Claims::new(),
            claims_json: "{}".to_owned(),
        };
        assert!(!format!("{signed_in:?}").contains("rt-secret"));
    }

    #[test]
    fn idp_and_its_futures_can_cross_threads() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: T) {}
        #[allow(unreachable_code, clippy::diverging_sub_expression)]
        fn check(idp: &Idp, auth: &DeviceAuthorization, cancel: &CancellationToken) {
            send_sync(idp);
            send(Idp::discover(IdpSettings::new("x", "y")));
            send(idp.start_device_authorization());
            send(idp.wait_for_sign_in(auth, cancel));
            send(idp.verify_id_token(""));
        }
        let _ = check;
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = IdpSettings::new("https://idp.example", "gatehouse");
        assert_eq!(s.scopes, ["openid", "email", "profile"]);
        assert_eq!(s.groups_claim, "groups");
        assert_eq!(s.http_timeout, S(10));
        assert!(s.client_secret.is_none() && s.poll_interval.is_none());
        assert!(s.allowed_domains.is_empty());
    }
}
