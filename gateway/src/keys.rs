//! Key files and certificate minting.
//!
//! The user CA signs one certificate per upstream connection. Each
//! certificate is for a fresh ed25519 key that lives only in memory, names
//! the login as its only principal, carries only the extensions the
//! decision grants, and is valid for minutes.
//!
//! It also signs direct-access certificates (issue 16): for the client's
//! own public key, naming the `LOGIN@ROUTE` principals the direct-access
//! policy grants. Both go through one builder ([`UserCa::sign_at`]), so
//! serials, backdating and extensions cannot drift apart.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngExt;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::certificate::{Builder, CertType};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::{Certificate, HashAlg, PrivateKey, PublicKey};

use crate::Error;

/// The key recordings are signed with: the first ed25519 key among the
/// gateway's host keys, in the configured order. `serve` signs with it and
/// `gatehouse recordings verify` trusts only its public half, so both take
/// it from here and cannot drift apart.
pub fn recording_signer(host_keys: &[PrivateKey]) -> Result<recorder::Ed25519Signer, Error> {
    let seed = host_keys
        .iter()
        .find_map(|k| k.key_data().ed25519().map(|kp| kp.private.to_bytes()))
        .ok_or_else(|| {
            Error::Recording(
                "recordings are signed with an ed25519 host key; add one to host_keys".to_owned(),
            )
        })?;
    recorder::Ed25519Signer::from_seed(&seed)
        .map_err(|e| Error::Recording(format!("cannot use the host key to sign recordings: {e}")))
}

/// Reads an OpenSSH private key file (unencrypted).
pub fn read_private_key(path: &Path) -> Result<PrivateKey, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::KeyFile {
        path: path.to_owned(),
        reason: source.to_string(),
    })?;
    PrivateKey::from_openssh(text.as_bytes()).map_err(|e| Error::KeyFile {
        path: path.to_owned(),
        reason: format!("not an unencrypted OpenSSH private key: {e}"),
    })
}

/// A fresh ed25519 key from the operating system's random source.
pub fn new_ed25519_key() -> PrivateKey {
    let seed: [u8; 32] = rand::rng().random();
    PrivateKey::from(Ed25519Keypair::from_seed(&seed))
}

/// Writes a new ed25519 private key to `path` with mode 0600, and its public
/// key to `path.pub`. Refuses to overwrite an existing key: losing a CA key
/// locks everyone out of every target.
pub fn generate_private_key(path: &Path, comment: &str) -> Result<PrivateKey, Error> {
    let key_error = |reason: String| Error::KeyFile {
        path: path.to_owned(),
        reason,
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| key_error(format!("cannot create directory: {e}")))?;
    }
    let mut key = new_ed25519_key();
    key.set_comment(comment);
    let pem = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| key_error(e.to_string()))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                key_error("already exists; refusing to overwrite it".to_owned())
            } else {
                key_error(e.to_string())
            }
        })?;
    // The mode passed to open() is filtered by the umask; make sure.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| key_error(e.to_string()))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| key_error(e.to_string()))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| key_error(e.to_string()))?;
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    std::fs::write(&pub_path, format!("{public}\n")).map_err(|e| key_error(e.to_string()))?;
    Ok(key)
}

/// Loads a host key, generating it (0600) when it does not exist yet.
pub fn load_or_generate_host_key(path: &Path) -> Result<PrivateKey, Error> {
    if path.exists() {
        read_private_key(path)
    } else {
        tracing::info!(path = %path.display(), "generating host key");
        generate_private_key(path, "gatehouse host key")
    }
}

/// The public key line (with comment) and SHA-256 fingerprint of a key, as
/// printed by `gatehouse ca show`.
pub fn describe(key: &PrivateKey) -> Result<(String, String), Error> {
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| Error::Mint(e.to_string()))?;
    Ok((public, key.fingerprint(HashAlg::Sha256).to_string()))
}

/// What one minted certificate says.
#[derive(Debug, Clone)]
pub struct CertRequest<'a> {
    /// The only principal: the login on the target.
    pub login: &'a str,
    /// `IDENTITY/SESSION-ID`, so the target's logs name who and which session.
    pub key_id: &'a str,
    /// How long the certificate stays valid from now.
    pub ttl: Duration,
    /// The `permit-*` extensions to include.
    pub extensions: &'a [&'static str],
    /// The `force-command` critical option: the one command the policy
    /// allows, which sshd runs whatever the client asks for.
    pub force_command: Option<&'a str>,
    /// The `source-address` critical option, when configured.
    pub source_address: Option<&'a str>,
}

/// What a direct-access certificate for a client's own key says.
#[derive(Debug, Clone)]
pub struct DirectCertRequest<'a> {
    /// The client's public key, the one it proved in SSH authentication.
    pub key: &'a PublicKey,
    /// `LOGIN@ROUTE` principals, as the direct-access policy grants them.
    pub principals: &'a [String],
    /// `IDENTITY/direct`.
    pub key_id: &'a str,
    /// How long the certificate stays valid from now.
    pub ttl: Duration,
    /// The `permit-*` extensions to include.
    pub extensions: &'a [&'static str],
}

/// What every certificate the CA signs says, whoever holds the key.
struct Contents<'a> {
    principals: &'a [&'a str],
    key_id: &'a str,
    ttl: Duration,
    extensions: &'a [&'static str],
    critical_options: &'a [(&'static str, &'a str)],
}

/// A minted certificate with the in-memory key it certifies.
pub struct MintedCert {
    /// The fresh key the certificate is for.
    pub key: PrivateKey,
    /// The signed certificate.
    pub cert: Certificate,
    /// Its serial, for audit events.
    pub serial: u64,
}

/// The user CA: signs short-lived certificates for upstream connections.
pub struct UserCa {
    key: PrivateKey,
    /// The CA's public key fingerprint, for logs.
    pub fingerprint: String,
}

/// Backdating the start of validity absorbs clock skew between the gateway
/// and targets (design §4).
const BACKDATE: Duration = Duration::from_secs(60);

/// The last serial handed out. Serials are microseconds since the epoch
/// shifted left by 8 bits, bumped when two certificates land in the same
/// slot, so they are unique within a gateway and increase across restarts.
static LAST_SERIAL: AtomicU64 = AtomicU64::new(0);

fn next_serial(now: Duration) -> u64 {
    let candidate = u64::try_from(now.as_micros()).unwrap_or(u64::MAX >> 8) << 8;
    let mut last = LAST_SERIAL.load(Ordering::Relaxed);
    loop {
        let next = candidate.max(last.saturating_add(1));
        match LAST_SERIAL.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

impl UserCa {
    /// Wraps a loaded CA key.
    pub fn new(key: PrivateKey) -> Self {
        let fingerprint = key.public_key().fingerprint(HashAlg::Sha256).to_string();
        UserCa { key, fingerprint }
    }

    /// Loads the CA from its key file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        read_private_key(path).map(Self::new)
    }

    /// Mints a certificate for a fresh key, valid from a minute ago.
    pub fn mint(&self, req: &CertRequest<'_>) -> Result<MintedCert, Error> {
        self.mint_at(req, SystemTime::now())
    }

    /// Mints a certificate as if the clock read `at`. Tests use it to make
    /// certificates that targets must refuse as expired.
    pub fn mint_at(&self, req: &CertRequest<'_>, at: SystemTime) -> Result<MintedCert, Error> {
        let key = new_ed25519_key();
        let mut critical = Vec::new();
        if let Some(command) = req.force_command {
            critical.push(("force-command", command));
        }
        if let Some(addr) = req.source_address {
            critical.push(("source-address", addr));
        }
        let (cert, serial) = self.sign_at(
            key.public_key().key_data(),
            &Contents {
                principals: &[req.login],
                key_id: req.key_id,
                ttl: req.ttl,
                extensions: req.extensions,
                critical_options: &critical,
            },
            at,
        )?;
        Ok(MintedCert { key, cert, serial })
    }

    /// Signs a direct-access certificate for the client's own key, valid
    /// from a minute ago; returns it with its serial.
    pub fn certify(&self, req: &DirectCertRequest<'_>) -> Result<(Certificate, u64), Error> {
        self.certify_at(req, SystemTime::now())
    }

    /// [`UserCa::certify`] as if the clock read `at`. Tests use it to make
    /// certificates that targets must refuse as expired.
    pub fn certify_at(
        &self,
        req: &DirectCertRequest<'_>,
        at: SystemTime,
    ) -> Result<(Certificate, u64), Error> {
        let principals: Vec<&str> = req.principals.iter().map(String::as_str).collect();
        self.sign_at(
            req.key.key_data(),
            &Contents {
                principals: &principals,
                key_id: req.key_id,
                ttl: req.ttl,
                extensions: req.extensions,
                critical_options: &[],
            },
            at,
        )
    }

    /// The one certificate builder: a user certificate for `key`, backdated
    /// by [`BACKDATE`], with a fresh serial.
    fn sign_at(
        &self,
        key: &KeyData,
        what: &Contents<'_>,
        at: SystemTime,
    ) -> Result<(Certificate, u64), Error> {
        let now = at
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Error::Mint("system clock is before 1970".to_owned()))?;
        let valid_after = now.saturating_sub(BACKDATE).as_secs();
        let valid_before = now.saturating_add(what.ttl).as_secs();
        let serial = next_serial(now);
        let nonce: [u8; 32] = rand::rng().random();
        let mint = |e: russh::keys::ssh_key::Error| Error::Mint(e.to_string());
        let mut b =
            Builder::new(nonce.to_vec(), key.clone(), valid_after, valid_before).map_err(mint)?;
        b.serial(serial).map_err(mint)?;
        b.cert_type(CertType::User).map_err(mint)?;
        b.key_id(what.key_id).map_err(mint)?;
        for principal in what.principals {
            b.valid_principal(*principal).map_err(mint)?;
        }
        for ext in what.extensions {
            b.extension(*ext, "").map_err(mint)?;
        }
        for (name, value) in what.critical_options {
            b.critical_option(*name, *value).map_err(mint)?;
        }
        let cert = b.sign(&self.key).map_err(mint)?;
        Ok((cert, serial))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ca_key_is_0600_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca");
        generate_private_key(&path, "ca").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let before = std::fs::read(&path).unwrap();
        let err = generate_private_key(&path, "ca").expect_err("must refuse");
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert!(dir.path().join("ca.pub").exists());
    }

    #[test]
    fn minted_certificates_carry_only_what_was_asked() {
        let ca = UserCa::new(new_ed25519_key());
        let minted = ca
            .mint(&CertRequest {
                login: "postgres",
                key_id: "ci@example.com/0123",
                ttl: Duration::from_secs(300),
                extensions: &["permit-pty"],
                force_command: Some("/usr/local/bin/deploy"),
                source_address: Some("10.0.0.1/32"),
            })
            .unwrap();
        let c = &minted.cert;
        assert_eq!(c.valid_principals(), ["postgres".to_owned()]);
        assert_eq!(c.key_id(), "ci@example.com/0123");
        assert_eq!(c.serial(), minted.serial);
        assert_eq!(c.extensions().keys().collect::<Vec<_>>(), ["permit-pty"]);
        assert_eq!(
            c.critical_options()
                .get("source-address")
                .map(String::as_str),
            Some("10.0.0.1/32")
        );
        assert_eq!(
            c.critical_options()
                .get("force-command")
                .map(String::as_str),
            Some("/usr/local/bin/deploy")
        );
        assert_eq!(c.valid_before() - c.valid_after(), 360);
        let ca_fp = ca.key.public_key().fingerprint(HashAlg::Sha256);
        c.validate([&ca_fp])
            .expect("signed by the CA and valid now");
        assert_eq!(c.public_key(), minted.key.public_key().key_data());
    }

    #[test]
    fn direct_certificates_are_for_the_given_key() {
        let ca = UserCa::new(new_ed25519_key());
        let client = new_ed25519_key();
        let principals = ["postgres@prod-db".to_owned(), "root@web".to_owned()];
        let (cert, serial) = ca
            .certify(&DirectCertRequest {
                key: client.public_key(),
                principals: &principals,
                key_id: "alice@example.com/direct",
                ttl: Duration::from_secs(3600),
                extensions: &["permit-port-forwarding", "permit-pty"],
            })
            .unwrap();
        assert_eq!(cert.public_key(), client.public_key().key_data());
        assert_eq!(cert.valid_principals(), principals);
        assert_eq!(cert.key_id(), "alice@example.com/direct");
        assert_eq!(cert.serial(), serial);
        assert!(cert.critical_options().is_empty());
        assert_eq!(
            cert.extensions().keys().collect::<Vec<_>>(),
            ["permit-port-forwarding", "permit-pty"]
        );
        assert_eq!(cert.valid_before() - cert.valid_after(), 3660);
        let ca_fp = ca.key.public_key().fingerprint(HashAlg::Sha256);
        cert.validate([&ca_fp])
            .expect("signed by the CA and valid now");
    }

    #[test]
    fn serials_are_unique_and_increasing() {
        let now = Duration::from_secs(1_800_000_000);
        let a = next_serial(now);
        let b = next_serial(now);
        let c = next_serial(now);
        assert!(a < b && b < c);
    }
}
