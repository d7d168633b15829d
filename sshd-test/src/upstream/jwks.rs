//! The verifier's copy of the proxy's JWKS: fetched over plain HTTP/1.1 on
//! first use, cached, and fetched again when a token names an unknown `kid`
//! (key rotation), at most once per [`REFETCH_INTERVAL`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::assertion::AssertionError;

/// The least time between two fetches, so a stream of tokens with a bogus
/// `kid` cannot turn the upstream into a load generator against the proxy.
pub(crate) const REFETCH_INTERVAL: Duration = Duration::from_secs(1);

/// How long one fetch may take before the token is reported unverifiable.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest JWKS document accepted; real ones are a few hundred bytes.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Keys by `kid`, each an uncompressed P-256 point (`0x04 || x || y`).
type Keys = HashMap<String, Arc<[u8]>>;

/// A cached JWKS and the means to refresh it.
pub(crate) struct Jwks {
    /// Where the JWKS lives, `http://127.0.0.1:PORT/.well-known/gatehouse/jwks.json`.
    url: Uri,
    /// A plain HTTP/1.1 client: the JWKS URL is always cleartext loopback.
    client: Client<HttpConnector, Empty<Bytes>>,
    /// The keys of the last successful fetch. A std lock, held only to copy
    /// an `Arc` out, so verification of known kids never waits on a fetch.
    keys: RwLock<Keys>,
    /// When the last fetch was attempted (`None`: never). The async lock also
    /// makes concurrent misses wait for one fetch instead of starting many.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl Jwks {
    /// Prepares the cache; nothing is fetched until the first token arrives.
    pub fn new(url: &str) -> Result<Jwks, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("jwks url {url:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(format!(
                "jwks url {url:?} must be http://HOST:PORT/...: the upstream fixture has no TLS"
            ));
        }
        Ok(Jwks {
            url: uri,
            client: Client::builder(TokioExecutor::new()).build_http(),
            keys: RwLock::new(Keys::new()),
            last_fetch: tokio::sync::Mutex::new(None),
        })
    }

    /// Returns the key for `kid`, fetching the JWKS on first use and again
    /// (rate limited) when the `kid` is not in the cached copy.
    pub async fn key(&self, kid: &str) -> Result<Arc<[u8]>, AssertionError> {
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        let mut last_fetch = self.last_fetch.lock().await;
        // Another request may have fetched while this one waited for the lock.
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        if last_fetch.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL) {
            return Err(AssertionError::UnknownKid);
        }
        *last_fetch = Some(Instant::now());
        let keys = self
            .fetch()
            .await
            .map_err(AssertionError::JwksUnavailable)?;
        let found = keys.get(kid).cloned();
        *self
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = keys;
        found.ok_or(AssertionError::UnknownKid)
    }

    /// Looks `kid` up in the cached copy.
    fn cached(&self, kid: &str) -> Option<Arc<[u8]>> {
        self.keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(kid)
            .cloned()
    }

    /// GETs and parses the JWKS; the error text ends up in the echo JSON.
    async fn fetch(&self) -> Result<Keys, String> {
        let fetch = async {
            let response = self
                .client
                .get(self.url.clone())
                .await
                .map_err(|e| format!("GET {}: {e}", self.url))?;
            if !response.status().is_success() {
                return Err(format!("GET {}: status {}", self.url, response.status()));
            }
            let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await
                .map_err(|e| format!("GET {}: body: {e}", self.url))?
                .to_bytes();
            parse(&body)
        };
        tokio::time::timeout(FETCH_TIMEOUT, fetch)
            .await
            .map_err(|_| format!("GET {}: timed out", self.url))?
    }
}

/// Parses a JWKS document (RFC 7517 §5), keeping the EC P-256 signing keys.
///
/// Keys of other types, or marked for another `use` or `alg`, are skipped
/// rather than rejected, as RFC 7517 §5 asks of keys a reader does not
/// understand; a P-256 key with a bad coordinate is an error, since it
/// means the proxy publishes broken keys.
pub(crate) fn parse(document: &[u8]) -> Result<Keys, String> {
    let document: Value =
        serde_json::from_slice(document).map_err(|e| format!("jwks is not JSON: {e}"))?;
    let keys = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("jwks has no \"keys\" array")?;
    let mut parsed = Keys::new();
    for key in keys {
        let field = |name: &str| key.get(name).and_then(Value::as_str);
        let is_p256 = field("kty") == Some("EC") && field("crv") == Some("P-256");
        let for_es256 = field("alg").is_none_or(|alg| alg == "ES256")
            && field("use").is_none_or(|usage| usage == "sig");
        let Some(kid) = field("kid") else { continue };
        if !is_p256 || !for_es256 {
            continue;
        }
        let mut point = vec![0x04];
        for coordinate in ["x", "y"] {
            let bytes = field(coordinate)
                .and_then(|text| URL_SAFE_NO_PAD.decode(text).ok())
                .filter(|bytes| bytes.len() == 32)
                .ok_or_else(|| {
                    format!("jwks key {kid:?}: {coordinate} is not 32 base64url bytes")
                })?;
            point.extend(bytes);
        }
        parsed.insert(kid.to_owned(), point.into());
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn coordinate(byte: u8) -> String {
        URL_SAFE_NO_PAD.encode([byte; 32])
    }

    #[test]
    fn keeps_p256_signing_keys_only() {
        let document = json!({"keys": [
            {"kty": "EC", "crv": "P-256", "x": coordinate(1), "y": coordinate(2),
             "kid": "a", "alg": "ES256", "use": "sig"},
            {"kty": "EC", "crv": "P-256", "x": coordinate(3), "y": coordinate(4), "kid": "b"},
            {"kty": "EC", "crv": "P-384", "x": coordinate(1), "y": coordinate(2), "kid": "c"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "d"},
            {"kty": "EC", "crv": "P-256", "x": coordinate(1), "y": coordinate(2),
             "kid": "e", "use": "enc"},
            {"kty": "EC", "crv": "P-256", "x": coordinate(1), "y": coordinate(2)},
        ]});
        let keys = parse(document.to_string().as_bytes()).expect("parses");
        let mut kids: Vec<_> = keys.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, ["a", "b"]);
        let a = keys.get("a").expect("a");
        assert_eq!(a.len(), 65);
        assert_eq!(a.first(), Some(&4));
    }

    #[test]
    fn rejects_broken_documents() {
        let cases = [
            json!([]),
            json!({"keys": {}}),
            json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "a",
                             "x": coordinate(1), "y": URL_SAFE_NO_PAD.encode([2u8; 31])}]}),
            json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "a", "x": coordinate(1)}]}),
        ];
        for case in cases {
            assert!(parse(case.to_string().as_bytes()).is_err(), "{case}");
        }
        assert!(parse(b"not json").is_err());
    }

    #[test]
    fn refuses_non_http_urls() {
        assert!(Jwks::new("http://127.0.0.1:1/.well-known/gatehouse/jwks.json").is_ok());
        assert!(Jwks::new("https://127.0.0.1:1/jwks.json").is_err());
        assert!(Jwks::new("not a url").is_err());
    }
}
