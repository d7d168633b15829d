//! File-operation events, the recording of SFTP and SCP channels.

use serde::{Deserialize, Serialize};

/// What kind of file operation happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileOpKind {
    /// A file was opened (SFTP OPEN answered).
    Open,
    /// An open file was closed; the event carries the bytes read and written through it.
    Close,
    /// A file was removed.
    Remove,
    /// A file or directory was renamed to `target`.
    Rename,
    /// A directory was created.
    Mkdir,
    /// A directory was removed.
    Rmdir,
    /// Attributes (mode, owner, times) were changed.
    Setstat,
    /// A symbolic link at `path` pointing to `target` was created.
    Symlink,
    /// An SCP upload (client to target), with the bytes sent.
    Upload,
    /// An SCP download (target to client), with the bytes received.
    Download,
}

/// One file operation, with its result.
///
/// Contents are never recorded, only the path, the operation and byte counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOp {
    /// `sftp` or `scp`.
    pub protocol: String,
    /// The operation.
    pub op: FileOpKind,
    /// The path as the client named it (non-UTF-8 bytes become U+FFFD).
    pub path: String,
    /// The new name for `rename`, the link target for `symlink`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Bytes read from the file (target to client).
    #[serde(default)]
    pub bytes_read: u64,
    /// Bytes written to the file (client to target).
    #[serde(default)]
    pub bytes_written: u64,
    /// `ok`, or the failure: `no_such_file`, `permission_denied`, `failure`, `unclosed`, ...
    pub status: String,
}
