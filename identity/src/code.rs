//! The authorization-code grant with PKCE (RFC 6749 §4.1, RFC 7636 with
//! S256), for browsers: the web app and the HTTP proxy.
//!
//! [`Idp::start_code_sign_in`] makes the URL to send the browser to and a
//! [`PendingCodeSignIn`] (state, nonce, PKCE verifier) the caller keeps
//! until the browser comes back, one per attempt, so two tabs signing in at
//! once do not overwrite each other. [`Idp::finish_code_sign_in`] checks
//! the returned state, redeems the code with the verifier and verifies the
//! ID token, including its nonce.

use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::{CsrfToken, PkceCodeChallenge, RedirectUrl};

use super::*;
use crate::device::{MAX_ERROR_CODE, idp_text};
use crate::verify::constant_time_eq;

/// One browser sign-in in progress: what came back must match it. The
/// verifier is a secret until it is used, so this prints as `***`.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingCodeSignIn {
    /// The `state` sent: the browser must bring it back.
    pub state: String,
    nonce: String,
    verifier: String,
    redirect_uri: String,
}

/// Redacted: the PKCE verifier and the nonce redeem the code.
impl fmt::Debug for PendingCodeSignIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingCodeSignIn")
            .field("state", &"***")
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

impl Idp {
    /// Starts a browser sign-in that will come back to `redirect_uri`
    /// (registered at the IdP): returns the authorization URL and what to
    /// keep until the callback.
    pub fn start_code_sign_in(
        &self,
        redirect_uri: &str,
    ) -> Result<(String, PendingCodeSignIn), Error> {
        let redirect = RedirectUrl::new(redirect_uri.to_owned()).map_err(|e| {
            self.unavailable(format!(
                "redirect URI {redirect_uri:?}: {}",
                error_chain(&e)
            ))
        })?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = self.inner.client.clone().set_redirect_uri(redirect);
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in &self.inner.settings.scopes {
            if scope != "openid" {
                request = request.add_scope(Scope::new(scope.clone()));
            }
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok((
            url.to_string(),
            PendingCodeSignIn {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                verifier: verifier.secret().clone(),
                redirect_uri: redirect_uri.to_owned(),
            },
        ))
    }

    /// Finishes a browser sign-in: `state` and `code` are the callback's
    /// query parameters. The state must be the pending one's; the code is
    /// redeemed with the PKCE verifier, and the ID token must carry the
    /// pending nonce. An `error` parameter on the callback is the caller's
    /// to report (see [`callback_error`]).
    pub async fn finish_code_sign_in(
        &self,
        pending: &PendingCodeSignIn,
        state: &str,
        code: &str,
    ) -> Result<SignedIn, Error> {
        if !constant_time_eq(state, &pending.state) {
            return Err(Error::TokenRejected(
                "the sign-in came back with another state".to_owned(),
            ));
        }
        let answer = self
            .token_grant(
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", &pending.redirect_uri),
                    ("code_verifier", &pending.verifier),
                ],
                |error| Error::TokenRejected(format!("the code was not accepted: {error}")),
            )
            .await?;
        let raw = answer
            .id_token
            .ok_or_else(|| Error::TokenRejected("the token response has no ID token".to_owned()))?;
        let nonce = Nonce::new(pending.nonce.clone());
        let mut signed_in = self.verify_id_token_for(&raw, Some(&nonce)).await?;
        signed_in.refresh_token = answer.refresh_token.map(RefreshToken);
        Ok(signed_in)
    }
}

/// The plain-words reason of a callback that carries `error` (RFC 6749
/// §4.1.2.1) instead of a code: the user denied, or the IdP refused.
/// Bounded and stripped of control characters, since the browser wrote it.
pub fn callback_error(error: &str) -> Error {
    match error {
        "access_denied" => Error::SignInDenied,
        other => Error::TokenRejected(format!(
            "the identity provider refused the sign-in: {}",
            idp_text(other, MAX_ERROR_CODE)
        )),
    }
}
