//! The device authorization grant (RFC 8628): ask for a device code, show
//! the user a short code and a URL, poll the token endpoint until they
//! approve in a browser elsewhere, deny, or let it expire.

use super::*;

impl Idp {
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
        let device_url = self.inner.device_url.clone().ok_or_else(|| {
            self.unavailable("the IdP offers no device authorization grant".to_owned())
        })?;
        let client = self
            .inner
            .client
            .clone()
            .set_device_authorization_url(device_url);
        let response: CoreDeviceAuthorizationResponse = client
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

    /// The polling loop of [`Idp::wait_for_sign_in`], without cancellation.
    pub(crate) async fn poll_until_done(
        &self,
        auth: &DeviceAuthorization,
    ) -> Result<SignedIn, Error> {
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
    pub(crate) async fn poll_once(&self, device_code: &DeviceCode) -> Result<Poll, Error> {
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
    pub(crate) fn token_request(&self, pairs: &[(&str, &str)]) -> Result<reqwest::Request, Error> {
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
}

/// What one token poll says about the next.
#[derive(Debug)]
pub(crate) enum Poll {
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
pub(crate) struct TokenSet {
    pub(crate) id_token: String,
    pub(crate) refresh_token: Option<String>,
}

/// Redacted: both fields are credentials.
impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSet(***)")
    }
}

/// An OAuth error response (RFC 6749 §5.2).
#[derive(Deserialize)]
pub(crate) struct OAuthError {
    pub(crate) error: String,
    pub(crate) error_description: Option<String>,
}

/// The longest OAuth `error` code kept; RFC 6749's are under 30 characters.
pub(crate) const MAX_ERROR_CODE: usize = 64;

/// Text an IdP wrote, as it may go into an error message and the audit
/// log: at most `max` characters, control characters replaced. Found by
/// the `token_response` fuzz target: an `error` code of any length went
/// into the message whole.
pub(crate) fn idp_text(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// What went wrong reading an IdP's JSON, without the JSON: serde_json's
/// own message quotes the values it did not expect (a string of any
/// length, found by the `token_response` fuzz target), so only the kind of
/// error and its position are kept.
pub(crate) fn json_error(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "JSON of the wrong shape",
        serde_json::error::Category::Eof => "JSON cut short",
    };
    format!("{kind} at line {} column {}", e.line(), e.column())
}

/// Sorts a token endpoint answer into a terminal error or a [`Poll`].
pub(crate) fn classify_token_response(
    issuer: &str,
    status: StatusCode,
    body: &[u8],
) -> Result<Poll, Error> {
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
            Err(e) => Ok(Poll::Failed(format!(
                "token endpoint: unreadable response: {}",
                json_error(&e)
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
    let error = idp_text(&error, MAX_ERROR_CODE);
    match error.as_str() {
        "authorization_pending" => Ok(Poll::Pending),
        "slow_down" => Ok(Poll::SlowDown),
        "access_denied" => Err(Error::SignInDenied),
        "expired_token" => Err(Error::SignInExpired),
        _ if status.is_server_error() => Ok(Poll::Failed(format!(
            "token endpoint: HTTP {status}: {error}"
        ))),
        _ => {
            let description = idp_text(&error_description.unwrap_or_default(), MAX_DESCRIPTION);
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
pub(crate) fn first_interval(from_idp: Duration, override_: Option<Duration>) -> Duration {
    override_.unwrap_or(from_idp).max(MIN_INTERVAL)
}

/// The interval after a `slow_down` (RFC 8628 §3.5: add 5 s).
pub(crate) fn slowed_down(interval: Duration) -> Duration {
    interval.saturating_add(SLOW_DOWN_STEP)
}

/// The wait before the next poll: the interval, doubled per consecutive
/// failure, capped at [`MAX_BACKOFF`] (or the interval, if longer).
pub(crate) fn poll_delay(interval: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures);
    interval
        .saturating_mul(factor)
        .min(MAX_BACKOFF.max(interval))
}
