//! Opening what the recording commands read (`sessions`, `recordings`,
//! `replay`): the catalog (storage and index) of a configuration, the key
//! recordings are signed with, a runtime for storage calls, and the small
//! wording helpers their output shares.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result};
use config::Config;
use recorder::{Catalog, StorageConfig};
use state::Sqlite;

/// The raw ed25519 public key recordings are signed with: that of the first
/// ed25519 key in `config.host_keys`, whose seed the gateway signs meta.json
/// with. `verify` trusts this key and no other, so a recording re-signed by
/// someone who can write to storage but not read the host key fails. Only
/// the public half is read (see `hostkey.rs`).
pub fn recording_signer_public_key(config: &Config) -> Result<[u8; 32]> {
    crate::hostkey::recording_public_key(&config.host_keys)
}

/// How the index is opened.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum IndexUse {
    /// Read the index only; a missing state database means nothing is indexed.
    Read,
    /// Read from storage; the index only helps find objects, so a missing
    /// state database is replaced by an empty in-memory one.
    Storage,
    /// Write the index, creating the state database if needed.
    Write,
}

/// Opens the catalog of a configuration, or `None` for [`IndexUse::Read`]
/// when no state database exists yet. Not creating one matters: run as
/// root, this command would leave a database the gateway's user cannot write.
pub(crate) fn open_catalog(config: &Config, how: IndexUse) -> Result<Option<Catalog>> {
    let rec = &config.recording.recorder;
    let store: Arc<dyn state::Store> = match (Sqlite::exists(&config.state_dir), how) {
        (true, _) | (false, IndexUse::Write) => {
            Arc::new(Sqlite::open(&config.state_dir).context("cannot open the state database")?)
        }
        (false, IndexUse::Read) => return Ok(None),
        (false, IndexUse::Storage) => {
            Arc::new(Sqlite::in_memory().context("cannot make an empty index")?)
        }
    };
    Catalog::open(store, &rec.storage)
        .map(Some)
        .with_context(|| format!("cannot open the recordings in {}", describe(&rec.storage)))
}

/// Storage as the user configured it, for messages.
pub(crate) fn describe(storage: &StorageConfig) -> String {
    match storage {
        StorageConfig::File(root) => format!("file://{}", root.display()),
        StorageConfig::S3(s3) if s3.prefix.is_empty() => format!("s3://{}", s3.bucket),
        StorageConfig::S3(s3) => format!("s3://{}/{}", s3.bucket, s3.prefix),
    }
}

/// A current-thread runtime for the catalog's storage calls: one command,
/// one request at a time.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// A Unix-milliseconds time as RFC 3339 UTC to the second.
pub(crate) fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// `s` after a count other than one.
pub(crate) fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}
