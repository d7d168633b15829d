//! Following the configuration file: a reload on SIGHUP, or when the
//! file's bytes change (looked at every second). Each reload is handed
//! to the caller whole, or with every problem found; a caller never puts
//! a configuration with problems in force.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::{Config, ConfigErrors};

/// How often the file is read to see whether it changed.
const FILE_POLL: Duration = Duration::from_secs(1);

/// What made a reload happen, as the audit events name it.
pub type Trigger = &'static str;

/// Calls `reload` with the file loaded again whenever SIGHUP arrives
/// (`sighup`) or its content changes (`file_changed`), until `stop`.
pub async fn follow(
    path: PathBuf,
    stop: CancellationToken,
    mut reload: impl FnMut(Result<Config, ConfigErrors>, Trigger) + Send,
) {
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reloading on file changes only");
            None
        }
    };
    let mut seen = read(&path);
    loop {
        let hangup = async {
            match hangups.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        let trigger = tokio::select! {
            () = stop.cancelled() => return,
            _ = hangup => "sighup",
            () = tokio::time::sleep(FILE_POLL) => {
                let now = read(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                "file_changed"
            }
        };
        if trigger == "sighup" {
            seen = read(&path);
        }
        reload(crate::load(&path), trigger);
    }
}

/// The file's bytes, or nothing when it cannot be read (a reload then
/// reports why).
fn read(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}
