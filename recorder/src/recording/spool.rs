//! The small files in a session's spool directory, next to the spool files,
//! and the size of what the spool holds.
//!
//! They are written with a temporary file, fsync and rename, so a crash leaves
//! either the old file or the new one: recovery reads them to rebuild a
//! session, and a torn one would lose it.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::meta::SessionInfo;
use crate::{Error, Result};

/// session.json in a session's spool directory.
#[derive(Serialize, Deserialize)]
pub(super) struct SpooledSession {
    pub(super) info: SessionInfo,
    pub(super) gateway_id: String,
    pub(super) started_at_ms: u64,
    pub(super) prefix: String,
}

/// `<channel>.end` in the spool: the channel finished normally.
#[derive(Serialize, Deserialize, Default)]
pub(super) struct ChannelEnd {
    pub(super) exit_status: Option<i64>,
    pub(super) output_bytes: u64,
}

/// Writes `value` as JSON through a temporary file, fsync and rename, so a
/// crash leaves the old file or the new one, never a torn one.
pub(super) fn write_json_synced<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_vec(value).map_err(|e| Error::Format {
        what: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(Error::spool(&tmp))?;
    file.write_all(&json).map_err(Error::spool(&tmp))?;
    file.sync_data().map_err(Error::spool(&tmp))?;
    std::fs::rename(&tmp, path).map_err(Error::spool(path))
}

/// Reads a JSON file written by [`write_json_synced`].
pub(super) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(Error::spool(path))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Format {
        what: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Total size of the files under a directory (one level of subdirectories).
pub(super) fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
