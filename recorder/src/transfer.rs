//! Exec channels that move files, known by their command line: which way
//! the files go, which paths, and how many bytes. Their protocols are not
//! parsed; the byte counts are of the whole channel, control messages
//! included.
//!
//! - Legacy SCP (`scp -O`, or servers without SFTP) runs `scp -t PATH`
//!   (upload into PATH) or `scp -f PATH` (download of PATH) on the target.
//! - `rsync -e ssh` runs `rsync --server [--sender] OPTIONS . PATH...`:
//!   with `--sender` the target sends (a download), without it receives
//!   (an upload).
//! - `git clone`/`fetch`/`pull` run `git-upload-pack 'REPO'` (a download),
//!   `git push` runs `git-receive-pack 'REPO'` (an upload), and `git
//!   archive --remote` runs `git-upload-archive 'REPO'` (a download).
//!
//! The channel's bytes are recorded as a byte stream either way; this adds
//! one file operation event that says what the stream was.

use crate::{FileOp, FileOpKind};

/// Which tool a transfer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `scp -t` / `scp -f`.
    Scp,
    /// `rsync --server`.
    Rsync,
    /// `git-upload-pack`, `git-receive-pack`, `git-upload-archive`.
    Git,
}

impl Protocol {
    /// The name in file operation events.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Scp => "scp",
            Protocol::Rsync => "rsync",
            Protocol::Git => "git",
        }
    }
}

/// Tracks one exec channel that moves files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// The tool.
    pub protocol: Protocol,
    /// Upload (client to target) or download.
    pub direction: FileOpKind,
    /// The paths (or the repository) named on the command line.
    pub paths: Vec<String>,
    /// Bytes the client sent.
    client_bytes: u64,
    /// Bytes the target sent.
    server_bytes: u64,
}

/// The longest command line looked at; longer ones are not classified.
const MAX_COMMAND: usize = 64 * 1024;

/// Splits a command line into words as a POSIX shell would for the
/// quoting OpenSSH clients, rsync and git send: single quotes, double
/// quotes, backslashes. No expansion happens; `None` for an unterminated
/// quote.
pub fn split_words(command: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\' | '$' | '`') => word.push(c),
                            '\n' => {}
                            c => {
                                word.push('\\');
                                word.push(c);
                            }
                        },
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') | None => {}
                    Some(c) => word.push(c),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

/// The program's name without its directory.
fn program(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

impl Transfer {
    /// Recognizes the server side of scp, rsync or git; `None` for
    /// anything else.
    pub fn from_command(command: &str) -> Option<Transfer> {
        if command.len() > MAX_COMMAND {
            return None;
        }
        let words = split_words(command)?;
        let (first, rest) = words.split_first()?;
        let (protocol, direction, paths) = match program(first) {
            "scp" => scp(rest)?,
            "rsync" => rsync(rest)?,
            "git" => {
                let (sub, repo) = rest.split_first()?;
                git(sub, repo)?
            }
            name => {
                let sub = name.strip_prefix("git-")?;
                let (first_arg, repo) = rest.split_first()?;
                let mut args = vec![first_arg.clone()];
                args.extend(repo.iter().cloned());
                git(sub, &args)?
            }
        };
        Some(Transfer {
            protocol,
            direction,
            paths,
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

    /// The file operation to record when the channel ends with
    /// `exit_status`: the paths joined by spaces.
    pub fn finish(&self, exit_status: Option<u32>) -> FileOp {
        FileOp {
            protocol: self.protocol.as_str().into(),
            op: self.direction,
            path: self.paths.join(" "),
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

fn scp(args: &[String]) -> Option<(Protocol, FileOpKind, Vec<String>)> {
    let mut direction = None;
    let mut paths = Vec::new();
    let mut options_done = false;
    for word in args {
        if !options_done && word == "--" {
            options_done = true;
        } else if !options_done && word.starts_with('-') {
            if word.contains('t') {
                direction = Some(FileOpKind::Upload);
            } else if word.contains('f') {
                direction = Some(FileOpKind::Download);
            }
        } else {
            paths.push(word.clone());
        }
    }
    Some((Protocol::Scp, direction?, paths))
}

fn rsync(args: &[String]) -> Option<(Protocol, FileOpKind, Vec<String>)> {
    if !args.iter().any(|a| a == "--server") {
        return None;
    }
    let sender = args.iter().any(|a| a == "--sender");
    // The paths follow the `.` that ends the server's options.
    let dot = args.iter().position(|a| a == ".")?;
    let paths = args.get(dot + 1..).unwrap_or_default().to_vec();
    let direction = if sender {
        FileOpKind::Download
    } else {
        FileOpKind::Upload
    };
    Some((Protocol::Rsync, direction, paths))
}

fn git(sub: &str, args: &[String]) -> Option<(Protocol, FileOpKind, Vec<String>)> {
    let direction = match sub {
        "upload-pack" | "upload-archive" => FileOpKind::Download,
        "receive-pack" => FileOpKind::Upload,
        _ => return None,
    };
    // The repository is the last argument that is not an option.
    let repo = args.iter().rev().find(|a| !a.starts_with('-'))?;
    Some((Protocol::Git, direction, vec![repo.clone()]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn classify(cmd: &str) -> Option<(Protocol, FileOpKind, Vec<String>)> {
        Transfer::from_command(cmd).map(|t| (t.protocol, t.direction, t.paths))
    }

    #[test]
    fn scp_rsync_and_git_commands_are_known_by_what_they_move() {
        use FileOpKind::{Download, Upload};
        use Protocol::{Git, Rsync, Scp};
        type Want = Option<(Protocol, FileOpKind, &'static [&'static str])>;
        let cases: &[(&str, Want)] = &[
            ("scp -t /tmp/x", Some((Scp, Upload, &["/tmp/x"]))),
            ("/usr/bin/scp -r -f -- dir", Some((Scp, Download, &["dir"]))),
            (
                "rsync --server -vlogDtpre.iLsfxCIvu . /srv/backup/",
                Some((Rsync, Upload, &["/srv/backup/"])),
            ),
            (
                "rsync --server --sender -vlogDtpre.iLsfxCIvu . data/a 'with space'",
                Some((Rsync, Download, &["data/a", "with space"])),
            ),
            (
                "git-upload-pack '/srv/git/app.git'",
                Some((Git, Download, &["/srv/git/app.git"])),
            ),
            (
                "git-receive-pack 'app.git'",
                Some((Git, Upload, &["app.git"])),
            ),
            (
                "git upload-archive '/srv/it'\\''s.git'",
                Some((Git, Download, &["/srv/it's.git"])),
            ),
            ("ls -t", None),
            ("scp -v", None),
            ("rsync -av src dst", None),
            ("git log", None),
            ("git-upload-pack", None),
            ("git-upload-pack 'unterminated", None),
            ("tar c /etc", None),
            ("", None),
        ];
        for (cmd, want) in cases {
            let want = want.map(|(p, d, paths)| {
                (
                    p,
                    d,
                    paths.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
                )
            });
            assert_eq!(classify(cmd), want, "{cmd}");
        }
    }

    #[test]
    fn counts_and_status_make_the_event() {
        let mut t = Transfer::from_command("/usr/bin/scp -r -f -- dir").unwrap();
        t.server_data(10);
        t.client_data(3);
        let op = t.finish(Some(0));
        assert_eq!(
            (
                op.protocol.as_str(),
                op.bytes_read,
                op.bytes_written,
                op.status.as_str()
            ),
            ("scp", 10, 3, "ok")
        );
        let t = Transfer::from_command("rsync --server . a b").unwrap();
        assert_eq!(t.finish(Some(23)).status, "exit 23");
        assert_eq!(t.finish(None).path, "a b");
    }

    #[test]
    fn shell_words_follow_posix_quoting() {
        assert_eq!(
            split_words(r#"a 'b c' "d \"e\" \$f" g\ h '' x"#).unwrap(),
            ["a", "b c", "d \"e\" $f", "g h", "", "x"]
        );
        assert!(split_words("'open").is_none());
        assert!(split_words("\"open").is_none());
    }
}
