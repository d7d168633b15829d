//! The refresh-token grant: a live session's identity confirmed again
//! without the browser (a route's `reauth_every`).

use super::*;
use crate::device::{MAX_ERROR_CODE, OAuthError, idp_text};

impl Idp {
    /// Renews a sign-in with its refresh token (RFC 6749 §6), for routes
    /// with `reauth_every`. A new ID token is verified like the first one
    /// and must name the same subject. Any failure means the sign-in no
    /// longer holds: `invalid_grant` (revoked or expired) is
    /// [`Error::RefreshRejected`], an unreachable IdP
    /// [`Error::IdpUnavailable`].
    pub async fn refresh(&self, token: &RefreshToken, sub: &str) -> Result<Refreshed, Error> {
        let answer = self
            .token_grant(
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.secret()),
                ],
                Error::RefreshRejected,
            )
            .await?;
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

    /// One request to the token endpoint (a refresh, or a code
    /// redemption): a 4xx answer's OAuth error goes to `rejected`, a 5xx,
    /// an unreachable IdP or an unreadable answer is
    /// [`Error::IdpUnavailable`].
    pub(crate) async fn token_grant(
        &self,
        pairs: &[(&str, &str)],
        rejected: impl FnOnce(String) -> Error,
    ) -> Result<TokenAnswer, Error> {
        let request = self.token_request(pairs)?;
        let response = self
            .inner
            .http
            .send(request)
            .await
            .map_err(|reason| self.unavailable(reason))?;
        let status = response.status();
        if status != StatusCode::OK {
            let error = serde_json::from_slice::<OAuthError>(response.body())
                .map(|e| idp_text(&e.error, MAX_ERROR_CODE))
                .unwrap_or_else(|_| format!("HTTP {status}"));
            return Err(if status.is_server_error() {
                self.unavailable(format!("token endpoint: {error}"))
            } else {
                rejected(error)
            });
        }
        serde_json::from_slice(response.body()).map_err(|e| {
            self.unavailable(format!(
                "token endpoint: unreadable response: {}",
                crate::device::json_error(&e)
            ))
        })
    }
}

/// What the token endpoint sends back that we read.
#[derive(Deserialize)]
pub(crate) struct TokenAnswer {
    pub(crate) id_token: Option<String>,
    pub(crate) refresh_token: Option<String>,
}
