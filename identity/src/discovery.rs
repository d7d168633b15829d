//! Finding out about an identity provider: its discovery document (OpenID
//! Connect Discovery 1.0), endpoints and signing keys, fetched again once
//! when a token names a key we do not have (rotation). [`LazyIdp`]
//! discovers on first use, one attempt at a time, so a service starts (and
//! serves what needs no IdP) while the IdP is down.

use super::*;

impl Idp {
    /// Fetches the discovery document and the signing keys. Fails with
    /// [`Error::IdpUnavailable`] if the IdP cannot be reached within
    /// `http_timeout` per request, names another issuer, or has no token
    /// endpoint. An IdP without a device authorization endpoint is fine:
    /// [`Idp::offers_device_grant`] says so, and SSH sign-in uses a link.
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
            .clone();
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
                device_url,
                token_url,
                jwks_uri,
                jwks: RwLock::new(jwks),
                signing_algs,
                auth_type,
                settings,
            }),
        })
    }

    /// Whether discovery lists a device authorization endpoint (RFC 8628).
    pub fn offers_device_grant(&self) -> bool {
        self.inner.device_url.is_some()
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.inner.settings.issuer
    }

    /// Fetches the key set again and replaces ours with it.
    pub(crate) async fn refresh_jwks(&self) -> Result<(), Error> {
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
    pub(crate) fn unavailable(&self, reason: String) -> Error {
        Error::IdpUnavailable {
            issuer: self.inner.settings.issuer.clone(),
            reason,
        }
    }
}

/// The client authentication to use at the token endpoint: HTTP Basic
/// (the default, RFC 6749 §2.3.1) unless discovery lists only
/// `client_secret_post`. Public clients send `client_id` in the body
/// either way.
pub(crate) fn auth_type(
    has_secret: bool,
    supported: Option<&Vec<CoreClientAuthMethod>>,
) -> AuthType {
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
pub(crate) fn signing_algs(advertised: &[CoreJwsSigningAlgorithm]) -> Vec<CoreJwsSigningAlgorithm> {
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

/// After a failed discovery, callers within this long are told the IdP is
/// unavailable at once instead of each waiting for its own attempt.
const DISCOVERY_RETRY_AFTER: Duration = Duration::from_secs(5);

/// An [`Idp`] discovered on first use rather than at start: a service
/// starts while its IdP is down and signs people in once it is back.
/// Callers that find it undiscovered wait for one attempt, not one each;
/// within [`DISCOVERY_RETRY_AFTER`] of a failure they fail at once.
pub struct LazyIdp {
    settings: IdpSettings,
    state: tokio::sync::Mutex<LazyState>,
}

#[derive(Default)]
struct LazyState {
    idp: Option<Idp>,
    failed_at: Option<Instant>,
}

impl fmt::Debug for LazyIdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyIdp")
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}

impl LazyIdp {
    /// Contacts nobody: discovery happens at the first [`LazyIdp::get`].
    pub fn new(settings: IdpSettings) -> Self {
        LazyIdp {
            settings,
            state: tokio::sync::Mutex::new(LazyState::default()),
        }
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// The discovered IdP, discovering it first if no attempt succeeded
    /// yet. A failed attempt is written to the audit log
    /// (`idp.unavailable`); a call within [`DISCOVERY_RETRY_AFTER`] of it
    /// fails fast with [`Error::IdpUnavailable`] and writes nothing.
    pub async fn get(&self) -> Result<Idp, Error> {
        let mut state = self.state.lock().await;
        if let Some(idp) = &state.idp {
            return Ok(idp.clone());
        }
        if let Some(at) = state.failed_at
            && at.elapsed() < DISCOVERY_RETRY_AFTER
        {
            return Err(Error::IdpUnavailable {
                issuer: self.settings.issuer.clone(),
                reason: "discovery failed moments ago; not retrying yet".to_owned(),
            });
        }
        match Idp::discover(self.settings.clone()).await {
            Ok(idp) => {
                tracing::info!(issuer = %self.settings.issuer, "identity provider discovered");
                state.idp = Some(idp.clone());
                state.failed_at = None;
                Ok(idp)
            }
            Err(e) => {
                audit::Event::IdpUnavailable {
                    issuer: self.settings.issuer.clone(),
                    error: e.to_string(),
                }
                .emit();
                state.failed_at = Some(Instant::now());
                Err(e)
            }
        }
    }
}
