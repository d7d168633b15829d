//! Verification of `X-Gatehouse-Assertion`, written from the RFCs: a compact
//! JWS (RFC 7515 §7.1) whose JOSE header is `{"alg":"ES256","typ":"JWT",
//! "kid":"..."}` and whose signature is ECDSA P-256 with SHA-256 in the fixed
//! 64-byte `r || s` form (RFC 7518 §3.4).
//!
//! Everything here is pure: the key comes from the caller (the JWKS cache in
//! `jwks.rs`) and so does the clock, so the rules are tested without a server.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// Clock skew allowed on `exp` and `iat`, in seconds.
const SKEW_SECONDS: f64 = 5.0;

/// Why an assertion is not valid; its `Display` text is the `error` string of
/// the echo JSON, so tests may compare against `AssertionError::X.to_string()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    /// The request carried no `X-Gatehouse-Assertion` header.
    #[error("no assertion header")]
    Missing,
    /// The request carried the header more than once; a proxy must replace a
    /// client-supplied assertion, never add a second one beside it.
    #[error("duplicate assertion header")]
    Duplicate,
    /// Not three base64url (unpadded) parts, or the header is not a JSON object.
    #[error("malformed token")]
    Malformed,
    /// The JOSE `alg` is not `ES256` (RFC 7518 §3.1 lists `none` and HMAC too).
    #[error("unsupported alg")]
    UnsupportedAlg,
    /// The JOSE `typ` is present and not `JWT`.
    #[error("wrong typ")]
    WrongTyp,
    /// The JOSE header has `crit`, which RFC 7515 §4.1.11 says must be understood.
    #[error("unsupported crit")]
    UnsupportedCrit,
    /// The JOSE header names no `kid`.
    #[error("missing kid")]
    MissingKid,
    /// No key in the JWKS has the token's `kid`, even after a refetch.
    #[error("unknown kid")]
    UnknownKid,
    /// The JWKS could not be fetched or parsed; the text says why.
    #[error("jwks unavailable: {0}")]
    JwksUnavailable(String),
    /// The signature is not 64 bytes or does not verify with the key.
    #[error("bad signature")]
    BadSignature,
    /// The payload is not a JSON object, or a claim has the wrong type or is absent.
    #[error("malformed claims: {0}")]
    MalformedClaims(&'static str),
    /// `exp` is more than the allowed skew in the past.
    #[error("expired")]
    Expired,
    /// `iat` is more than the allowed skew in the future.
    #[error("issued in the future")]
    IssuedInFuture,
    /// `iss` differs from the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` differs from the configured audience.
    #[error("wrong audience")]
    WrongAudience,
    /// The upstream was started without `jwks_url`, so nothing is verified.
    #[error("verification not configured")]
    NotConfigured,
}

/// What the claims must say, from `UpstreamOptions`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Expected {
    /// The required `iss`, if configured.
    pub issuer: Option<String>,
    /// The required `aud`, if configured.
    pub audience: Option<String>,
}

/// A compact JWS split and decoded, not yet trusted.
#[derive(Debug)]
pub(crate) struct Token {
    /// The decoded JOSE header.
    header: Map<String, Value>,
    /// The decoded payload if it is a JSON object; reported even when the
    /// token turns out invalid, so a failing test shows what the proxy sent.
    pub claims: Option<Map<String, Value>>,
    /// The ASCII `header.payload` the signature covers (RFC 7515 §5.2 step 8).
    signing_input: String,
    /// The decoded signature bytes.
    signature: Vec<u8>,
}

impl Token {
    /// Splits and decodes a compact JWS; nothing is checked but its shape.
    pub fn decode(compact: &str) -> Result<Token, AssertionError> {
        let Some((signing_input, signature)) = compact.rsplit_once('.') else {
            return Err(AssertionError::Malformed);
        };
        let Some((header, payload)) = signing_input.split_once('.') else {
            return Err(AssertionError::Malformed);
        };
        if payload.contains('.') {
            return Err(AssertionError::Malformed);
        }
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| AssertionError::Malformed)
        };
        let header = match serde_json::from_slice(&decode(header)?) {
            Ok(Value::Object(map)) => map,
            _ => return Err(AssertionError::Malformed),
        };
        let claims = match serde_json::from_slice(&decode(payload)?) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        };
        Ok(Token {
            header,
            claims,
            signing_input: signing_input.to_owned(),
            signature: decode(signature)?,
        })
    }

    /// The `kid` of the JOSE header, if it is a string.
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    /// Checks the JOSE header and returns the `kid` whose key must verify it.
    pub fn check_header(&self) -> Result<&str, AssertionError> {
        if self.header.get("alg").and_then(Value::as_str) != Some("ES256") {
            return Err(AssertionError::UnsupportedAlg);
        }
        match self.header.get("typ") {
            None => {}
            Some(typ) if typ.as_str() == Some("JWT") => {}
            Some(_) => return Err(AssertionError::WrongTyp),
        }
        if self.header.contains_key("crit") {
            return Err(AssertionError::UnsupportedCrit);
        }
        self.kid().ok_or(AssertionError::MissingKid)
    }

    /// Verifies the signature with an uncompressed P-256 point (`0x04 || x || y`).
    pub fn verify_signature(&self, public_key: &[u8]) -> Result<(), AssertionError> {
        // RFC 7518 §3.4: the JWS form is exactly 64 bytes; a DER signature
        // (what many libraries emit by default) is a proxy bug to catch here.
        if self.signature.len() != 64 {
            return Err(AssertionError::BadSignature);
        }
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            public_key,
        )
        .verify(self.signing_input.as_bytes(), &self.signature)
        .map_err(|_| AssertionError::BadSignature)
    }

    /// Checks types, lifetime, issuer and audience; `now` is in Unix seconds.
    pub fn check_claims(&self, expected: &Expected, now: f64) -> Result<(), AssertionError> {
        let claims = self.claims.as_ref().ok_or(AssertionError::MalformedClaims(
            "payload is not a JSON object",
        ))?;
        let string = |name: &'static str| claims.get(name).and_then(Value::as_str);
        let number = |name: &'static str| claims.get(name).and_then(Value::as_f64);
        let iss = string("iss").ok_or(AssertionError::MalformedClaims("iss"))?;
        let aud = string("aud").ok_or(AssertionError::MalformedClaims("aud"))?;
        string("sub").ok_or(AssertionError::MalformedClaims("sub"))?;
        if claims.get("email").is_some_and(|email| !email.is_string()) {
            return Err(AssertionError::MalformedClaims("email"));
        }
        let groups_ok = claims
            .get("groups")
            .and_then(Value::as_array)
            .is_some_and(|groups| groups.iter().all(Value::is_string));
        if !groups_ok {
            return Err(AssertionError::MalformedClaims("groups"));
        }
        let iat = number("iat").ok_or(AssertionError::MalformedClaims("iat"))?;
        let exp = number("exp").ok_or(AssertionError::MalformedClaims("exp"))?;
        if exp + SKEW_SECONDS <= now {
            return Err(AssertionError::Expired);
        }
        if iat > now + SKEW_SECONDS {
            return Err(AssertionError::IssuedInFuture);
        }
        if expected.issuer.as_deref().is_some_and(|want| want != iss) {
            return Err(AssertionError::WrongIssuer);
        }
        if expected.audience.as_deref().is_some_and(|want| want != aud) {
            return Err(AssertionError::WrongAudience);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    fn token(header: Value, claims: Value) -> Token {
        Token::decode(&format!("{}.{}.AAAA", b64(&header), b64(&claims))).expect("decodes")
    }

    fn good_claims() -> Value {
        json!({"iss": "https://gh", "aud": "app", "sub": "u1", "email": "a@b",
               "groups": ["ops"], "iat": 1000, "exp": 1060})
    }

    #[test]
    fn decode_rejects_bad_shapes() {
        let header = b64(&json!({"alg": "ES256"}));
        let cases = [
            "".to_owned(),
            "a.b".to_owned(),
            "a.b.c.d".to_owned(),
            format!("{header}.e30.!!!"),
            format!("{header}=.e30.AAAA"),
            format!("{}.e30.AAAA", b64(&json!([1]))),
        ];
        for case in cases {
            assert_eq!(
                Token::decode(&case).err(),
                Some(AssertionError::Malformed),
                "{case}"
            );
        }
    }

    #[test]
    fn header_rules() {
        let cases = [
            (json!({"alg": "ES256", "typ": "JWT", "kid": "k"}), Ok("k")),
            (json!({"alg": "ES256", "kid": "k"}), Ok("k")),
            (
                json!({"alg": "none", "kid": "k"}),
                Err(AssertionError::UnsupportedAlg),
            ),
            (
                json!({"alg": "HS256", "kid": "k"}),
                Err(AssertionError::UnsupportedAlg),
            ),
            (
                json!({"alg": "ES256", "typ": "at+jwt", "kid": "k"}),
                Err(AssertionError::WrongTyp),
            ),
            (
                json!({"alg": "ES256", "kid": "k", "crit": ["exp"]}),
                Err(AssertionError::UnsupportedCrit),
            ),
            (json!({"alg": "ES256"}), Err(AssertionError::MissingKid)),
            (
                json!({"alg": "ES256", "kid": 7}),
                Err(AssertionError::MissingKid),
            ),
        ];
        for (header, want) in cases {
            let token = token(header.clone(), good_claims());
            assert_eq!(token.check_header(), want, "{header}");
        }
    }

    #[test]
    fn claim_rules() {
        let expected = Expected {
            issuer: Some("https://gh".into()),
            audience: Some("app".into()),
        };
        let with = |key: &str, value: Value| {
            let mut claims = good_claims();
            claims[key] = value;
            claims
        };
        let without = |key: &str| {
            let mut claims = good_claims();
            claims.as_object_mut().map(|c| c.remove(key));
            claims
        };
        // `now` is 1030 unless the case says otherwise.
        let cases: Vec<(Value, f64, Result<(), AssertionError>)> = vec![
            (good_claims(), 1030.0, Ok(())),
            (without("email"), 1030.0, Ok(())),
            (good_claims(), 1064.9, Ok(())),
            (good_claims(), 1065.0, Err(AssertionError::Expired)),
            (good_claims(), 994.0, Err(AssertionError::IssuedInFuture)),
            (good_claims(), 995.0, Ok(())),
            (
                with("iss", json!("https://evil")),
                1030.0,
                Err(AssertionError::WrongIssuer),
            ),
            (
                with("aud", json!("other")),
                1030.0,
                Err(AssertionError::WrongAudience),
            ),
            (
                with("aud", json!(["app"])),
                1030.0,
                Err(AssertionError::MalformedClaims("aud")),
            ),
            (
                without("sub"),
                1030.0,
                Err(AssertionError::MalformedClaims("sub")),
            ),
            (
                with("email", json!(1)),
                1030.0,
                Err(AssertionError::MalformedClaims("email")),
            ),
            (
                with("groups", json!("ops")),
                1030.0,
                Err(AssertionError::MalformedClaims("groups")),
            ),
            (
                with("groups", json!([1])),
                1030.0,
                Err(AssertionError::MalformedClaims("groups")),
            ),
            (
                without("exp"),
                1030.0,
                Err(AssertionError::MalformedClaims("exp")),
            ),
            (
                with("iat", json!("1000")),
                1030.0,
                Err(AssertionError::MalformedClaims("iat")),
            ),
            (with("exp", json!(1060.5)), 1065.2, Ok(())),
        ];
        for (claims, now, want) in cases {
            let token = token(json!({"alg": "ES256", "kid": "k"}), claims.clone());
            assert_eq!(
                token.check_claims(&expected, now),
                want,
                "{claims} at {now}"
            );
        }
        // Unconfigured expectations accept any issuer and audience.
        let token = token(json!({"alg": "ES256"}), with("aud", json!("other")));
        assert_eq!(token.check_claims(&Expected::default(), 1030.0), Ok(()));
    }

    #[test]
    fn payload_that_is_not_an_object() {
        let token = Token::decode(&format!("{}.WzFd.AAAA", b64(&json!({"alg": "ES256"}))))
            .expect("decodes");
        assert!(token.claims.is_none());
        assert!(matches!(
            token.check_claims(&Expected::default(), 0.0),
            Err(AssertionError::MalformedClaims(_))
        ));
    }

    #[test]
    fn short_signature_is_bad() {
        let token = token(json!({"alg": "ES256", "kid": "k"}), good_claims());
        let mut point = vec![4u8];
        point.extend([1u8; 64]);
        assert_eq!(
            token.verify_signature(&point),
            Err(AssertionError::BadSignature)
        );
    }
}
