//! Evidence bundles: a session's signed `meta.json` and its sealed
//! recordings in one tar file, checked offline by [`verify_bundle`] with
//! nothing but the gateway's public key.
//!
//! The signature covers `meta.json`, which names each sealed object's
//! SHA-256 and the SHA-256 of its decompressed recording, so the bundle
//! needs no segments: a changed byte anywhere fails one of those hashes.

use std::collections::HashMap;
use std::io::{Read, Write};

use crate::catalog::{Catalog, VerifyReport, stream_sha256};
use crate::meta::{SignedMeta, sha256};
use crate::sign::hex;
use crate::{Error, Result};

/// The manifest's name in a bundle.
pub const BUNDLE_META: &str = "meta.json";

/// The largest `meta.json` read from a bundle.
const MAX_META: u64 = 16 << 20;

/// A channel's sealed object's name in a bundle.
fn object_name(channel: &str) -> String {
    format!("{channel}.cast.zst")
}

fn tar_error(what: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::Format {
        what: what.to_owned(),
        reason: e.to_string(),
    }
}

impl Catalog {
    /// Writes session `session_id`'s bundle to `out`: `meta.json` as
    /// stored, then each channel's sealed object. Returns the bytes of
    /// recordings written.
    pub async fn bundle<W: Write>(&self, session_id: &str, out: W) -> Result<u64> {
        let key = self.meta_key_of(session_id).await?;
        let meta_bytes = self.storage.get(&key).await?;
        let signed: SignedMeta =
            serde_json::from_slice(&meta_bytes).map_err(|e| Error::Format {
                what: key.clone(),
                reason: e.to_string(),
            })?;
        let mut tar = tar::Builder::new(out);
        let mut append = |name: &str, data: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(signed.meta.ended_at_ms / 1000);
            header.set_cksum();
            tar.append_data(&mut header, name, data)
                .map_err(tar_error("bundle"))
        };
        append(BUNDLE_META, &meta_bytes)?;
        let mut total = 0u64;
        for ch in &signed.meta.channels {
            let sealed = self.storage.get(&ch.sealed_key).await?;
            append(&object_name(&ch.channel), &sealed)?;
            total += sealed.len() as u64;
        }
        tar.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(tar_error("bundle"))?;
        Ok(total)
    }
}

/// A sealed object found in a bundle: its SHA-256, and the SHA-256 and
/// length of the recording inside (or why it could not be read).
type Object = (String, std::result::Result<(String, u64), String>);

/// Checks a bundle offline: the signature on `meta.json` (by
/// `trusted_key` when given), and for every channel that the bundle holds
/// its sealed object, with the hashes `meta.json` names (of the object and
/// of the recording inside). Anything else in the bundle is a problem too.
pub fn verify_bundle<R: Read>(input: R, trusted_key: Option<&[u8; 32]>) -> Result<VerifyReport> {
    let mut archive = tar::Archive::new(input);
    let mut meta: Option<SignedMeta> = None;
    let mut objects: HashMap<String, Object> = HashMap::new();
    let mut report = VerifyReport::default();
    for entry in archive.entries().map_err(tar_error("bundle"))? {
        let mut entry = entry.map_err(tar_error("bundle"))?;
        let name = entry
            .path()
            .map_err(tar_error("bundle"))?
            .to_string_lossy()
            .into_owned();
        if name == BUNDLE_META {
            let mut bytes = Vec::new();
            entry
                .by_ref()
                .take(MAX_META)
                .read_to_end(&mut bytes)
                .map_err(tar_error("bundle"))?;
            match serde_json::from_slice::<SignedMeta>(&bytes) {
                Ok(m) => meta = Some(m),
                Err(e) => report.problems.push(format!("meta.json: unreadable: {e}")),
            }
        } else if name.ends_with(".cast.zst") && !objects.contains_key(&name) {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).map_err(tar_error("bundle"))?;
            let inner = stream_sha256(&data, &name)
                .map(|(digest, len)| (hex(&digest), len))
                .map_err(|e| e.to_string());
            objects.insert(name, (hex(&sha256(&data)), inner));
        } else {
            report.problems.push(format!("unexpected entry {name:?}"));
        }
    }
    let Some(signed) = meta else {
        report
            .problems
            .push("the bundle has no meta.json".to_owned());
        return Ok(report);
    };
    report.session_id = signed.meta.session.session_id.clone();
    if let Err(problem) = signed.verify(trusted_key) {
        report.problems.push(format!("meta.json: {problem}"));
    }
    for ch in &signed.meta.channels {
        let name = object_name(&ch.channel);
        match objects.remove(&name) {
            None => report
                .problems
                .push(format!("channel {}: {name} is missing", ch.channel)),
            Some((outer, _)) if outer != ch.sealed_sha256 => report.problems.push(format!(
                "channel {}: {name} does not match its sha256",
                ch.channel
            )),
            Some((_, Err(e))) => report
                .problems
                .push(format!("channel {}: {name}: {e}", ch.channel)),
            Some((_, Ok((inner, len)))) if inner != ch.cast_sha256 || len != ch.cast_bytes => {
                report.problems.push(format!(
                    "channel {}: the recording in {name} differs from the one signed",
                    ch.channel
                ))
            }
            Some(_) => {}
        }
    }
    for name in objects.keys() {
        report
            .problems
            .push(format!("{name} belongs to no channel of this session"));
    }
    report.ok = report.problems.is_empty();
    Ok(report)
}
