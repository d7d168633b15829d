//! The refresh-token key: 32 bytes in `<state_dir>/bindings.key` (mode
//! 0600, created on first use, never overwritten), and sealing with
//! ChaCha20-Poly1305 under it. The fingerprint is associated data, so a
//! sealed token only opens in the row it was written to.
//!
//! **Invariant:** the key and the tokens never reach a log, an error or a
//! `Debug` output.

use std::fs::{File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::Error;

/// The key file's name inside the state directory.
pub const KEY_FILE: &str = "bindings.key";

/// The length of the refresh-token key.
const KEY_LEN: usize = 32;

/// Prefixed to the fingerprint in the associated data, so a ciphertext made
/// for another purpose under the same key can never pass for a refresh
/// token.
const AAD_CONTEXT: &[u8] = b"gatehouse refresh token v1\0";

fn associated_data(fingerprint: &str) -> Vec<u8> {
    let mut aad = AAD_CONTEXT.to_vec();
    aad.extend_from_slice(fingerprint.as_bytes());
    aad
}

/// `nonce || ciphertext || tag` of `token`; `None` without randomness.
pub(super) fn seal(
    key: &LessSafeKey,
    rng: &SystemRandom,
    fingerprint: &str,
    token: &str,
) -> Option<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce).ok()?;
    let mut buf = token.as_bytes().to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(associated_data(fingerprint)),
        &mut buf,
    )
    .ok()?;
    let mut sealed = nonce.to_vec();
    sealed.append(&mut buf);
    Some(sealed)
}

/// Opens `nonce || ciphertext || tag`; `None` if it does not authenticate
/// (or is not UTF-8, which a token we sealed always is).
pub(super) fn open(key: &LessSafeKey, fingerprint: &str, sealed: &[u8]) -> Option<String> {
    let (nonce, ciphertext) = sealed.split_at_checked(NONCE_LEN)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = ciphertext.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(associated_data(fingerprint)), &mut buf)
        .ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

/// Reads the key file if it exists. Refuses a file others can read, as
/// OpenSSH does for private keys, and one of the wrong length.
pub(super) fn read(path: &Path) -> Result<Option<LessSafeKey>, Error> {
    let fail = |reason: String| Error::KeyFile {
        path: path.to_owned(),
        reason,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(e.to_string())),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(fail(format!(
            "mode {mode:04o} lets others read it; run chmod 600 {}",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    if bytes.len() != KEY_LEN {
        return Err(fail(format!(
            "must hold exactly {KEY_LEN} bytes, found {}",
            bytes.len()
        )));
    }
    let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
        .map_err(|_| fail("not a ChaCha20-Poly1305 key".to_owned()))?;
    Ok(Some(LessSafeKey::new(key)))
}

/// Creates the key file (0600) with fresh random bytes, or reads the one
/// that appeared meanwhile. Never overwrites: losing the key loses every
/// stored refresh token. The key is written to a temporary file and
/// hard-linked into place, which fails if the name exists, so two
/// processes racing at first use agree on one key and neither reads a
/// half-written file.
pub(super) fn create(path: &Path, rng: &SystemRandom) -> Result<LessSafeKey, Error> {
    if let Some(key) = read(path)? {
        return Ok(key);
    }
    let fail = |reason: String| Error::KeyFile {
        path: path.to_owned(),
        reason,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut bytes = [0u8; KEY_LEN];
    rng.fill(&mut bytes)
        .map_err(|_| fail("no randomness for a new key".to_owned()))?;
    let tmp = dir.join(format!(".{KEY_FILE}.{}.tmp", uuid::Uuid::now_v7()));
    let written = publish(&tmp, path, dir, &bytes);
    let _ = std::fs::remove_file(&tmp);
    written.map_err(|e| fail(format!("cannot create: {e}")))?;
    // Whoever won the race, the file now holds the key to use.
    read(path)?.ok_or_else(|| fail("vanished right after it was created".to_owned()))
}

/// Writes `bytes` to `tmp` (0600) and links it to `path` unless `path`
/// exists already.
fn publish(tmp: &Path, path: &Path, dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    // The mode passed to open() is filtered by the umask; make sure.
    file.set_permissions(Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    match std::fs::hard_link(tmp, path) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created the refresh-token key");
            // Make the new name durable before tokens depend on it.
            File::open(dir)?.sync_all()
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}
