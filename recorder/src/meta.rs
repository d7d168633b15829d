//! `meta.json`: what a sealed recording is, signed by the gateway.

use serde::{Deserialize, Serialize};

use crate::sign::{Signer, hex, unhex, verify_signature};

/// Who and what a recorded session is; the gateway fills this in at session start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Unique session id (a UUID v7 from the gateway). Used in object keys, so
    /// only `[A-Za-z0-9._-]` are kept; other characters become `_`.
    pub session_id: String,
    /// The signed-in identity, usually an email address.
    pub identity: String,
    /// The login on the target.
    pub login: String,
    /// The route name.
    pub route: String,
    /// The target `host:port`.
    pub target: String,
    /// The client's `ip:port`.
    pub client_addr: String,
    /// The client key's fingerprint, `SHA256:...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_fingerprint: Option<String>,
    /// Serial of the certificate minted for the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_serial: Option<u64>,
}

/// Where a recording is in its life. Every state is explicit; none means
/// "probably fine". The state crate owns the type, since the index stores it.
pub use state::RecordingStatus as Status;

/// One uploaded segment: a byte range of the channel's asciicast stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// 0, 1, 2, ... without gaps.
    pub seq: u64,
    /// Object key relative to the recordings root.
    pub key: String,
    /// Offset of the segment in the channel's stream.
    pub offset: u64,
    /// Length in bytes.
    pub bytes: u64,
    /// sha256 of the segment's bytes, hex.
    pub sha256: String,
    /// sha256(previous chain ‖ sha256), hex; the first segment chains from
    /// [`chain_seed`].
    pub chain: String,
}

/// One recorded channel of a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelMeta {
    /// The channel's name within the session.
    pub channel: String,
    /// `shell`, `exec` or `subsystem`.
    pub kind: String,
    /// The exec command or subsystem name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Whether input was recorded.
    pub record_input: bool,
    /// Bytes of terminal output seen (before encoding).
    pub output_bytes: u64,
    /// Size of the asciicast stream (the concatenated segments).
    pub cast_bytes: u64,
    /// sha256 of the asciicast stream, hex.
    pub cast_sha256: String,
    /// Key of the sealed, zstd-compressed `.cast.zst` object.
    pub sealed_key: String,
    /// Size of the sealed object.
    pub sealed_bytes: u64,
    /// sha256 of the sealed object's bytes, hex.
    pub sealed_sha256: String,
    /// Exit status, if the command reported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i64>,
    /// The segments in order.
    pub segments: Vec<SegmentMeta>,
}

/// The signed part of `meta.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionMeta {
    /// `gatehouse-recording/1`.
    pub format: String,
    /// The session's identity and route.
    pub session: SessionInfo,
    /// The gateway that recorded it.
    pub gateway_id: String,
    /// Start, Unix milliseconds.
    pub started_at_ms: u64,
    /// End, Unix milliseconds.
    pub ended_at_ms: u64,
    /// `sealed` or `interrupted` (a meta.json is only written for those).
    pub status: Status,
    /// Why the status is not `sealed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The first channel's exit status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i64>,
    /// Key prefix of this session's objects.
    pub prefix: String,
    /// The channels.
    pub channels: Vec<ChannelMeta>,
}

/// The ed25519 signature over the canonical JSON of [`SessionMeta`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureMeta {
    /// `ed25519`.
    pub algorithm: String,
    /// Raw public key, hex.
    pub public_key: String,
    /// Signature, hex.
    pub value: String,
}

/// The content of `meta.json`.
///
/// The signature covers `serde_json::to_vec(&meta)` — the compact JSON of the
/// `meta` field with fields in declaration order. Verifiers re-serialize the
/// parsed struct, so any added, removed or changed field breaks it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedMeta {
    /// What was recorded.
    pub meta: SessionMeta,
    /// The gateway's signature.
    pub signature: SignatureMeta,
}

impl SignedMeta {
    /// Signs `meta`.
    pub fn sign(meta: SessionMeta, signer: &dyn Signer) -> SignedMeta {
        let message = serde_json::to_vec(&meta).unwrap_or_default();
        let signature = SignatureMeta {
            algorithm: "ed25519".into(),
            public_key: hex(&signer.public_key()),
            value: hex(&signer.sign(&message)),
        };
        SignedMeta { meta, signature }
    }

    /// Checks the signature against the embedded key and, if given, that this
    /// key is the trusted one.
    pub fn verify(&self, trusted_key: Option<&[u8; 32]>) -> Result<(), String> {
        if self.signature.algorithm != "ed25519" {
            return Err(format!(
                "unknown signature algorithm {}",
                self.signature.algorithm
            ));
        }
        let public = unhex(&self.signature.public_key).ok_or("public key is not hex")?;
        if let Some(trusted) = trusted_key
            && public.as_slice() != trusted.as_slice()
        {
            return Err("signed by an untrusted key".into());
        }
        let value = unhex(&self.signature.value).ok_or("signature is not hex")?;
        let message = serde_json::to_vec(&self.meta).map_err(|e| e.to_string())?;
        if verify_signature(&public, &message, &value) {
            Ok(())
        } else {
            Err("signature does not match meta.json".into())
        }
    }
}

/// The chain value before the first segment of a channel: binds the chain to
/// the session and channel so segments cannot be swapped between recordings.
pub fn chain_seed(session_id: &str, channel: &str) -> [u8; 32] {
    sha256(format!("gatehouse-recording/1\n{session_id}\n{channel}\n").as_bytes())
}

/// The next chain value.
pub fn chain_next(previous: &[u8], segment_sha256: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(previous);
    ctx.update(segment_sha256);
    to_array(ctx.finish().as_ref())
}

/// sha256 of bytes.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    to_array(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

fn to_array(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    if bytes.len() == 32 {
        out.copy_from_slice(bytes);
    }
    out
}
