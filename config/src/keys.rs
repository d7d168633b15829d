//! Checking key files at load time, so a bad key is a config problem with
//! a position and not a failure at the first connection.

use std::path::Path;

use ssh_key::PrivateKey;

/// Whether `path` holds an unencrypted OpenSSH private key; the error is
/// the one line `check-config` prints beside the setting's position.
pub(crate) fn check_private_key(path: &Path) -> Result<(), String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("key file {}: {e}", path.display()))?;
    PrivateKey::from_openssh(text.as_bytes())
        .map(|_| ())
        .map_err(|e| {
            format!(
                "key file {}: not an unencrypted OpenSSH private key: {e}",
                path.display()
            )
        })
}
