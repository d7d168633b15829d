//! The gateway's host public keys, read without their private halves.
//!
//! `gatehouse recordings verify` trusts exactly one key: the public half of
//! the first ed25519 host key, which the gateway signs `meta.json` with. An
//! administrator's command has no business loading the gateway's private
//! key, so the public key comes from `KEY.pub` beside it, or, for a key
//! without one, from the public-key section that every OpenSSH private key
//! file carries unencrypted in its header (PROTOCOL.key in OpenSSH).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The OpenSSH private key format's magic.
const MAGIC: &[u8] = b"openssh-key-v1\0";

/// The raw ed25519 public key of the first ed25519 key among `host_keys`,
/// in the configured order.
pub fn recording_public_key(host_keys: &[PathBuf]) -> Result<[u8; 32]> {
    for path in host_keys {
        if !path.exists() {
            bail!(
                "host key {} does not exist yet; `gatehouse serve` creates it, and recordings are signed with it",
                path.display()
            );
        }
        let blob = public_blob(path).with_context(|| {
            format!("cannot read the public half of host key {}", path.display())
        })?;
        if let Some(key) = ed25519_key(&blob) {
            return Ok(key);
        }
    }
    bail!("recordings are signed with an ed25519 host key; add one to host_keys")
}

/// The raw ed25519 key in an OpenSSH public key file (`KEY.pub`, one
/// `ssh-ed25519 AAAA... comment` line), for checking a bundle where no
/// configuration is.
pub fn ed25519_public_key_file(path: &Path) -> Result<[u8; 32]> {
    let line =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let blob = line
        .split_whitespace()
        .nth(1)
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .ok_or_else(|| anyhow!("{} is not an OpenSSH public key", path.display()))?;
    ed25519_key(&blob).ok_or_else(|| anyhow!("{} is not an ed25519 key", path.display()))
}

/// The SSH wire-format public key blob of a host key.
fn public_blob(path: &Path) -> Result<Vec<u8>> {
    let mut public = path.as_os_str().to_owned();
    public.push(".pub");
    let public = PathBuf::from(public);
    if public.exists() {
        let line = std::fs::read_to_string(&public)
            .with_context(|| format!("cannot read {}", public.display()))?;
        let encoded = line
            .split_whitespace()
            .nth(1)
            .ok_or_else(|| anyhow!("{} is not an OpenSSH public key", public.display()))?;
        return STANDARD
            .decode(encoded)
            .with_context(|| format!("{} is not an OpenSSH public key", public.display()));
    }
    let text = std::fs::read_to_string(path).context("cannot read the key file")?;
    header_public_blob(&text)
}

/// The first public key in an OpenSSH private key file's unencrypted
/// header: magic, cipher name, KDF name, KDF options, the number of keys,
/// then each public key; the private section follows and is not touched.
fn header_public_blob(text: &str) -> Result<Vec<u8>> {
    let body: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let bytes = STANDARD
        .decode(body)
        .context("not an OpenSSH private key file")?;
    let mut rest = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| anyhow!("not an OpenSSH private key file"))?;
    for _ in 0..3 {
        // cipher name, KDF name, KDF options
        string(&mut rest)?;
    }
    let count = u32_be(&mut rest)?;
    if count == 0 {
        bail!("the key file holds no key");
    }
    Ok(string(&mut rest)?.to_vec())
}

/// The key of an `ssh-ed25519` public key blob; `None` for other types.
fn ed25519_key(blob: &[u8]) -> Option<[u8; 32]> {
    let mut rest = blob;
    let kind = string(&mut rest).ok()?;
    if kind != b"ssh-ed25519" {
        return None;
    }
    string(&mut rest).ok()?.try_into().ok()
}

fn u32_be(rest: &mut &[u8]) -> Result<u32> {
    let (head, tail) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| anyhow!("the key file is cut short"))?;
    *rest = tail;
    Ok(u32::from_be_bytes(*head))
}

/// One SSH `string`: a big-endian length and that many bytes.
fn string<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8]> {
    let len = usize::try_from(u32_be(rest)?)?;
    if rest.len() < len {
        bail!("the key file is cut short");
    }
    let (value, tail) = rest.split_at(len);
    *rest = tail;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn keygen(dir: &Path, name: &str, kind: &str) -> PathBuf {
        let path = dir.join(name);
        let status = Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-t", kind, "-f"])
            .arg(&path)
            .status()
            .expect("ssh-keygen runs (apt-get install openssh-client)");
        assert!(status.success());
        path
    }

    #[test]
    fn reads_the_public_half_with_or_without_a_pub_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rsa = keygen(dir.path(), "rsa", "rsa");
        let ed = keygen(dir.path(), "ed", "ed25519");
        let from_pub = recording_public_key(&[rsa.clone(), ed.clone()]).expect("with .pub");
        // Without the .pub files, the private key files' headers are read.
        std::fs::remove_file(dir.path().join("ed.pub")).expect("rm");
        std::fs::remove_file(dir.path().join("rsa.pub")).expect("rm");
        let from_header = recording_public_key(&[rsa.clone(), ed.clone()]).expect("header");
        assert_eq!(from_pub, from_header);
        // The same key `ssh-keygen -y` derives.
        let out = Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(&ed)
            .output()
            .expect("ssh-keygen -y");
        let line = String::from_utf8(out.stdout).expect("utf-8");
        let blob = STANDARD
            .decode(line.split_whitespace().nth(1).expect("blob"))
            .expect("base64");
        assert_eq!(ed25519_key(&blob), Some(from_pub));
        // Only an RSA key: nothing to verify with.
        assert!(recording_public_key(&[rsa]).is_err());
        assert!(header_public_blob("-----BEGIN X-----\nAAAA\n-----END X-----\n").is_err());
    }
}
