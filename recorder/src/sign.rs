//! Signing sealed recordings with the gateway's ed25519 key, without SSH types.

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use crate::{Error, Result};

/// Signs `meta.json`. The gateway adapts its host key to this trait.
pub trait Signer: Send + Sync {
    /// The raw 32-byte ed25519 public key.
    fn public_key(&self) -> [u8; 32];
    /// An ed25519 signature (64 bytes) over `message`.
    fn sign(&self, message: &[u8]) -> [u8; 64];
}

/// An in-process ed25519 key.
pub struct Ed25519Signer {
    /// The ring key pair.
    pair: Ed25519KeyPair,
}

impl Ed25519Signer {
    /// Builds a signer from a 32-byte private seed (the form OpenSSH keys store).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self> {
        Ed25519KeyPair::from_seed_unchecked(seed)
            .map(|pair| Ed25519Signer { pair })
            .map_err(|e| Error::Key(format!("ed25519 seed rejected: {e}")))
    }
}

impl Signer for Ed25519Signer {
    fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        let public = self.pair.public_key().as_ref();
        if public.len() == 32 {
            out.copy_from_slice(public);
        }
        out
    }

    fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        let sig = self.pair.sign(message);
        if sig.as_ref().len() == 64 {
            out.copy_from_slice(sig.as_ref());
        }
        out
    }
}

/// Checks an ed25519 signature.
pub fn verify_signature(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(message, signature)
        .is_ok()
}

/// Lowercase hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses lowercase or uppercase hex.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let signer = Ed25519Signer::from_seed(&[7u8; 32]).unwrap();
        let sig = signer.sign(b"hello");
        assert!(verify_signature(&signer.public_key(), b"hello", &sig));
        assert!(!verify_signature(&signer.public_key(), b"hellO", &sig));
        assert_eq!(unhex(&hex(&sig)).unwrap(), sig.to_vec());
        assert!(unhex("abc").is_none() && unhex("zz").is_none());
    }
}
