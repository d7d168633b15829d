//! The identity assertion: a short-lived JWT (RFC 7519) signed with ES256
//! (ECDSA P-256 with SHA-256, RFC 7518 §3.4) by ring, and the JWKS
//! (RFC 7517) upstreams verify it with, at
//! `/.well-known/gatehouse/jwks.json`.
//!
//! The keys live in one PEM file of PKCS#8 keys (`http.signing_key`):
//! the first signs, every one is published, so a new key can be put first
//! while upstreams still hold tokens of the old one (rotation: `gatehouse
//! http rotate-key`). The file is read again when it changes. Key ids are
//! RFC 7638 thumbprints.
//!
//! **Invariant:** the private keys never leave this module: not in
//! `Debug`, errors or logs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde::Serialize;

use crate::Error;

/// How often the key file is looked at for a change.
const RECHECK: Duration = Duration::from_secs(2);

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// One signing key and its public half.
struct Key {
    pair: EcdsaKeyPair,
    kid: String,
    x: String,
    y: String,
}

impl Key {
    fn from_pkcs8(der: &[u8]) -> Result<Key, String> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| format!("not an ECDSA P-256 PKCS#8 key: {e}"))?;
        // The uncompressed point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        let (x, y) = match (point.get(1..33), point.get(33..65)) {
            (Some(x), Some(y)) if point.len() == 65 => (b64(x), b64(y)),
            _ => return Err("unexpected public key encoding".to_owned()),
        };
        // RFC 7638: the SHA-256 of the required members in lexical order.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = b64(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref());
        Ok(Key { pair, kid, x, y })
    }
}

/// The keys as last read from the file.
struct Keys {
    keys: Vec<Key>,
    jwks: Arc<str>,
}

/// The keys in force and when the file was last looked at.
struct Loaded {
    current: Arc<Keys>,
    /// The file's modification time when read.
    modified: Option<SystemTime>,
    checked: Instant,
}

/// Signs assertions and publishes the keys.
pub struct Signer {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

/// Redacted: no key material.
impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Jwk<'a> {
    kty: &'static str,
    crv: &'static str,
    x: &'a str,
    y: &'a str,
    kid: &'a str,
    alg: &'static str,
    #[serde(rename = "use")]
    use_: &'static str,
}

/// What an assertion says.
#[derive(Serialize)]
pub struct Claims<'a> {
    /// Gatehouse (its public URL).
    pub iss: &'a str,
    /// The route.
    pub aud: &'a str,
    /// The IdP subject.
    pub sub: &'a str,
    /// The verified email, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
    /// The groups claim.
    pub groups: &'a [String],
    /// Issued at (seconds).
    pub iat: u64,
    /// Expires at (seconds).
    pub exp: u64,
}

/// Parses every PKCS#8 key in a PEM file's text.
fn parse_pem(text: &str) -> Result<Vec<Key>, String> {
    let mut keys = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(PEM_BEGIN) {
        let after = rest.get(start + PEM_BEGIN.len()..).unwrap_or("");
        let Some(end) = after.find(PEM_END) else {
            return Err("a PRIVATE KEY block has no end".to_owned());
        };
        let body: String = after
            .get(..end)
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| format!("bad base64 in a PRIVATE KEY block: {e}"))?;
        keys.push(Key::from_pkcs8(&der)?);
        rest = after.get(end + PEM_END.len()..).unwrap_or("");
    }
    if keys.is_empty() {
        return Err("no PRIVATE KEY block".to_owned());
    }
    Ok(keys)
}

/// A new P-256 key as a PEM block.
pub fn generate_pem() -> Result<String, Error> {
    let rng = SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| Error::Keys("cannot generate a signing key".to_owned()))?;
    let body = base64::engine::general_purpose::STANDARD.encode(doc.as_ref());
    let mut pem = String::from(PEM_BEGIN);
    pem.push('\n');
    for chunk in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        pem.push('\n');
    }
    pem.push_str(PEM_END);
    pem.push('\n');
    Ok(pem)
}

/// Writes `text` to `path` with mode 0600, replacing it atomically.
fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let fail = |e: std::io::Error| Error::Keys(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension("pem.new");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    f.write_all(text.as_bytes()).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// Puts a new key first in the file at `path` (made if absent) and keeps
/// at most `keep` keys in all; returns the new key's id. Upstreams that
/// cached the JWKS fetch it again when they meet the new `kid`.
pub fn rotate(path: &Path, keep: usize) -> Result<String, Error> {
    let old = match std::fs::read_to_string(path) {
        Ok(text) => parse_pem(&text)
            .map(|_| text)
            .map_err(|e| Error::Keys(format!("{}: {e}", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::Keys(format!("{}: {e}", path.display()))),
    };
    let new = generate_pem()?;
    let mut blocks = vec![new.clone()];
    let mut rest = old.as_str();
    while let Some(start) = rest.find(PEM_BEGIN) {
        let Some(end) = rest.get(start..).and_then(|r| r.find(PEM_END)) else {
            break;
        };
        let stop = start + end + PEM_END.len();
        if blocks.len() < keep.max(1) {
            blocks.push(format!("{}\n", rest.get(start..stop).unwrap_or("")));
        }
        rest = rest.get(stop..).unwrap_or("");
    }
    write_private(path, &blocks.concat())?;
    let kid = parse_pem(&new)
        .map_err(Error::Keys)?
        .first()
        .map(|k| k.kid.clone())
        .unwrap_or_default();
    Ok(kid)
}

fn jwks_of(keys: &[Key]) -> Arc<str> {
    let jwks: Vec<Jwk<'_>> = keys
        .iter()
        .map(|k| Jwk {
            kty: "EC",
            crv: "P-256",
            x: &k.x,
            y: &k.y,
            kid: &k.kid,
            alg: "ES256",
            use_: "sig",
        })
        .collect();
    serde_json::to_string(&serde_json::json!({ "keys": jwks }))
        .unwrap_or_else(|_| "{\"keys\":[]}".to_owned())
        .into()
}

impl Signer {
    /// The signer of the keys in `path`; a missing file is created with
    /// one new key (mode 0600).
    pub fn open(path: &Path) -> Result<Signer, Error> {
        if !path.exists() {
            write_private(path, &generate_pem()?)?;
            tracing::info!(path = %path.display(), "generated the HTTP proxy's signing key");
        }
        let loaded = Self::read(path)?;
        Ok(Signer {
            path: path.to_owned(),
            loaded: Mutex::new(loaded),
        })
    }

    fn read(path: &Path) -> Result<Loaded, Error> {
        let fail = |e: String| Error::Keys(format!("{}: {e}", path.display()));
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let keys = parse_pem(&text).map_err(fail)?;
        let jwks = jwks_of(&keys);
        Ok(Loaded {
            current: Arc::new(Keys { keys, jwks }),
            modified,
            checked: Instant::now(),
        })
    }

    /// The keys, read again if the file changed (looked at every 2 s). A
    /// file that became unreadable keeps the keys in force, with a warning.
    fn keys(&self) -> Arc<Keys> {
        let mut slot = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.checked.elapsed() >= RECHECK {
            slot.checked = Instant::now();
            let modified = std::fs::metadata(&self.path)
                .and_then(|m| m.modified())
                .ok();
            if modified != slot.modified {
                match Self::read(&self.path) {
                    Ok(new) => {
                        tracing::info!(
                            keys = new.current.keys.len(),
                            "reloaded the HTTP signing keys"
                        );
                        *slot = new;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot reload the HTTP signing keys; keeping the old ones");
                        slot.modified = modified;
                    }
                }
            }
        }
        Arc::clone(&slot.current)
    }

    /// The id of the key that signs now.
    pub fn current_kid(&self) -> Option<String> {
        self.keys().keys.first().map(|k| k.kid.clone())
    }

    /// The JWKS document.
    pub fn jwks(&self) -> Arc<str> {
        Arc::clone(&self.keys().jwks)
    }

    /// A signed assertion for `claims`.
    pub fn sign(&self, claims: &Claims<'_>) -> Result<String, Error> {
        let loaded = self.keys();
        let key = loaded
            .keys
            .first()
            .ok_or_else(|| Error::Keys("no signing key".to_owned()))?;
        let header = serde_json::json!({ "alg": "ES256", "typ": "JWT", "kid": key.kid });
        let payload =
            serde_json::to_vec(claims).map_err(|e| Error::Keys(format!("claims: {e}")))?;
        let mut token = b64(header.to_string().as_bytes());
        token.push('.');
        token.push_str(&b64(&payload));
        let signature = key
            .pair
            .sign(&SystemRandom::new(), token.as_bytes())
            .map_err(|_| Error::Keys("signing failed".to_owned()))?;
        token.push('.');
        token.push_str(&b64(signature.as_ref()));
        Ok(token)
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    fn verify(token: &str, jwks: &str) -> serde_json::Value {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let d = |s: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .unwrap()
        };
        let header: serde_json::Value = serde_json::from_slice(&d(parts[0])).unwrap();
        assert_eq!(header["alg"], "ES256");
        let jwks: serde_json::Value = serde_json::from_str(jwks).unwrap();
        let key = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == header["kid"])
            .expect("the token's kid is published");
        let mut point = vec![4u8];
        point.extend(d(key["x"].as_str().unwrap()));
        point.extend(d(key["y"].as_str().unwrap()));
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
            .verify(
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &d(parts[2]),
            )
            .expect("the signature verifies");
        serde_json::from_slice(&d(parts[1])).unwrap()
    }

    fn claims() -> Claims<'static> {
        Claims {
            iss: "https://gw.example.com",
            aud: "grafana",
            sub: "alice",
            email: Some("alice@example.com"),
            groups: &[],
            iat: 1,
            exp: 61,
        }
    }

    #[test]
    fn assertions_verify_against_the_jwks_through_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.pem");
        let signer = Signer::open(&path).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let old = signer.sign(&claims()).unwrap();
        let got = verify(&old, &signer.jwks());
        assert_eq!(got["aud"], "grafana");
        assert_eq!(got["email"], "alice@example.com");

        let kid = rotate(&path, 2).unwrap();
        // Seen after the re-check interval (the file's time changed).
        std::thread::sleep(RECHECK + Duration::from_millis(100));
        let new = signer.sign(&claims()).unwrap();
        let jwks = signer.jwks();
        assert!(jwks.contains(&kid), "{jwks}");
        verify(&new, &jwks);
        verify(&old, &jwks);
        assert_ne!(new.split('.').next(), old.split('.').next(), "a new kid");
        // A third key pushes the first out.
        rotate(&path, 2).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(parse_pem(&text).unwrap().len(), 2);
    }

    #[test]
    fn a_bad_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.pem");
        std::fs::write(&path, "not a key").unwrap();
        let e = Signer::open(&path).unwrap_err().to_string();
        assert!(e.contains("no PRIVATE KEY block"), "{e}");
        assert!(
            !format!("{:?}", Signer::open(&dir.path().join("k2.pem")).unwrap()).contains("BEGIN")
        );
    }
}
