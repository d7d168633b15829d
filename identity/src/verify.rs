//! ID-token verification (signature against the JWKS, exact issuer,
//! audience, expiry) and the claims the policy sees.

use super::*;

impl Idp {
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
        self.verify_id_token_for(raw, None).await
    }

    /// [`Idp::verify_id_token`], and with `nonce` the token must carry
    /// exactly that nonce (the authorization-code flow binds one).
    pub(crate) async fn verify_id_token_for(
        &self,
        raw: &str,
        nonce: Option<&Nonce>,
    ) -> Result<SignedIn, Error> {
        let token: GatehouseIdToken = raw
            .parse()
            .map_err(|e| Error::TokenRejected(format!("malformed ID token: {e}")))?;
        let claims = match self.check_claims(&token, nonce) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                tracing::info!(
                    issuer = %self.inner.settings.issuer,
                    "ID token names an unknown signing key; fetching the key set again"
                );
                self.refresh_jwks().await?;
                self.check_claims(&token, nonce)
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

    /// Checks `token` against the keys we hold now.
    pub(crate) fn check_claims(
        &self,
        token: &GatehouseIdToken,
        nonce: Option<&Nonce>,
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
        token
            .claims(&verifier, |got: Option<&Nonce>| match nonce {
                None => Ok(()),
                Some(want) => match got {
                    Some(got) if constant_time_eq(got.secret(), want.secret()) => Ok(()),
                    Some(_) => Err("the nonce is not the one this sign-in sent".to_owned()),
                    None => Err("the ID token has no nonce".to_owned()),
                },
            })
            .cloned()
    }
}

/// Compares two secrets (a state, a nonce, a CSRF token) in time that
/// depends only on their lengths. Public for the web app's CSRF check.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether `email` may sign in under `allowed` (empty: anyone). Exact,
/// case-insensitive domain match; no email never matches a non-empty list.
pub fn domain_allowed(email: Option<&str>, allowed: &[String]) -> bool {
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
pub(crate) fn groups_from_claim(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(group)) => vec![group.clone()],
        _ => Vec::new(),
    }
}
