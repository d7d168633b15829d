//! Tokens and their hashes. Browser session cookies, sign-in states,
//! hand-off codes and SSH sign-in links are random tokens handed to a
//! browser or shown to a user; the store is keyed by their SHA-256 (hex)
//! and never holds a token itself, so a copy of the database opens
//! nothing. The web app, the HTTP proxy and the gateway all make and hash
//! tokens here, so they agree on every byte.

use base64::Engine as _;

/// 32 random bytes from the operating system, base64url without padding
/// (43 characters); `None` when the system has no randomness to give.
pub fn new_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Lowercase hex SHA-256 of `text`: what the store keeps instead of it.
pub fn hash(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// How audit events name a session, a link or a code: the first 12 hex
/// digits of its hash, enough to find it, useless to open it.
pub fn short(hash: &str) -> String {
    hash.get(..12).unwrap_or(hash).to_owned()
}

/// Whether `token` looks like one [`new_token`] makes (43 base64url
/// characters), before it is looked up.
pub fn well_formed(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_url_safe_and_hashed_as_hex() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_ne!(a, b);
        assert!(well_formed(&a) && well_formed(&b));
        assert!(!well_formed("short") && !well_formed(&format!("{}+", &a[..42])));
        // SHA-256("abc"), FIPS 180-2.
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(short(&hash("abc")), "ba7816bf8f01");
    }
}
