//! SCP channels: the command says which way files move; the byte counts say how much.
//!
//! Legacy SCP (`scp -O`, or servers without SFTP) runs `scp -t PATH` (upload
//! into PATH) or `scp -f PATH` (download of PATH) on the target. Its protocol is
//! not parsed; the byte counts include its small control messages.

use crate::{FileOp, FileOpKind};

/// Tracks one SCP exec channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScpTransfer {
    /// Upload (`-t`) or download (`-f`).
    direction: FileOpKind,
    /// The path argument.
    path: String,
    /// Bytes the client sent.
    client_bytes: u64,
    /// Bytes the target sent.
    server_bytes: u64,
}

impl ScpTransfer {
    /// Recognizes an SCP server-side command such as `scp -r -t -- /tmp`; returns `None` for anything else.
    pub fn from_command(command: &str) -> Option<ScpTransfer> {
        let mut words = command.split_whitespace();
        let program = words.next()?;
        if program.rsplit('/').next() != Some("scp") {
            return None;
        }
        let mut direction = None;
        let mut path = None;
        let mut options_done = false;
        for word in words {
            if !options_done && word == "--" {
                options_done = true;
            } else if !options_done && word.starts_with('-') {
                if word.contains('t') {
                    direction = Some(FileOpKind::Upload);
                } else if word.contains('f') {
                    direction = Some(FileOpKind::Download);
                }
            } else {
                path = Some(word.to_owned());
            }
        }
        Some(ScpTransfer {
            direction: direction?,
            path: path.unwrap_or_default(),
            client_bytes: 0,
            server_bytes: 0,
        })
    }

    /// Counts bytes the client sent on the channel.
    pub fn client_data(&mut self, len: usize) {
        self.client_bytes = self.client_bytes.saturating_add(len as u64);
    }

    /// Counts bytes the target sent on the channel.
    pub fn server_data(&mut self, len: usize) {
        self.server_bytes = self.server_bytes.saturating_add(len as u64);
    }

    /// The file operation to record when the channel ends with `exit_status`.
    pub fn finish(&self, exit_status: Option<u32>) -> FileOp {
        FileOp {
            protocol: "scp".into(),
            op: self.direction,
            path: self.path.clone(),
            target: None,
            bytes_read: self.server_bytes,
            bytes_written: self.client_bytes,
            status: match exit_status {
                Some(0) => "ok".into(),
                Some(code) => format!("exit {code}"),
                None => "unknown".into(),
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let t = ScpTransfer::from_command("scp -t /tmp/x").unwrap();
        assert_eq!(t.direction, FileOpKind::Upload);
        assert_eq!(t.path, "/tmp/x");
        let mut t = ScpTransfer::from_command("/usr/bin/scp -r -f -- dir").unwrap();
        assert_eq!(t.direction, FileOpKind::Download);
        assert_eq!(t.path, "dir");
        t.server_data(10);
        t.client_data(3);
        let op = t.finish(Some(0));
        assert_eq!(
            (op.bytes_read, op.bytes_written, op.status.as_str()),
            (10, 3, "ok")
        );
        assert!(ScpTransfer::from_command("ls -t").is_none());
        assert!(ScpTransfer::from_command("scp -v").is_none());
    }
}
