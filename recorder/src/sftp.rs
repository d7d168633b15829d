//! SFTP file-operation extraction from the bytes passing through a subsystem channel.
//!
//! OpenSSH speaks SFTP version 3 (draft-ietf-secsh-filexfer-02). Each packet
//! is `uint32 length, byte type, uint32 request-id, ...`; requests go client to
//! server and every response carries the id of its request. [`SftpTracker`]
//! reassembles packets from arbitrary chunks in both directions, remembers the
//! pending requests and open handles, and yields a [`FileOp`] when an operation
//! completes: open, close (with the bytes read and written through the handle),
//! remove, rename, mkdir, rmdir, setstat and symlink.
//!
//! **Invariants:** it never panics on any input, and its memory is bounded:
//! at most [`PREFIX_CAP`] bytes of each packet are kept (file data is counted,
//! never stored), and at most [`MAX_PENDING`] requests and [`MAX_HANDLES`]
//! handles are tracked. A packet longer than [`MAX_PACKET`] means the stream
//! is not SFTP (or is corrupt); the tracker then stops parsing for good.

use std::collections::{HashMap, VecDeque};

use crate::{FileOp, FileOpKind};

/// Bytes of a packet's body kept for parsing: enough for two paths.
pub const PREFIX_CAP: usize = 8 * 1024 + 64;
/// The largest packet accepted; OpenSSH's own limit is 256 KiB.
pub const MAX_PACKET: u32 = 1024 * 1024;
/// Requests awaiting a response that are remembered.
pub const MAX_PENDING: usize = 4096;
/// Open handles that are remembered.
pub const MAX_HANDLES: usize = 1024;

const SSH_FXP_OPEN: u8 = 3;
const SSH_FXP_CLOSE: u8 = 4;
const SSH_FXP_READ: u8 = 5;
const SSH_FXP_WRITE: u8 = 6;
const SSH_FXP_SETSTAT: u8 = 9;
const SSH_FXP_FSETSTAT: u8 = 10;
const SSH_FXP_REMOVE: u8 = 13;
const SSH_FXP_MKDIR: u8 = 14;
const SSH_FXP_RMDIR: u8 = 15;
const SSH_FXP_RENAME: u8 = 18;
const SSH_FXP_SYMLINK: u8 = 20;
const SSH_FXP_STATUS: u8 = 101;
const SSH_FXP_HANDLE: u8 = 102;
const SSH_FXP_DATA: u8 = 103;
const SSH_FXP_EXTENDED: u8 = 200;

/// One direction's packet reassembly.
#[derive(Debug, Default)]
struct PacketReader {
    /// The 4-byte length being read.
    len_buf: [u8; 4],
    /// How many length bytes have arrived.
    len_have: usize,
    /// Body bytes still to come for the current packet (0 = reading a length).
    remaining: u32,
    /// Total body length of the current packet.
    total: u32,
    /// The first [`PREFIX_CAP`] bytes of the current body.
    prefix: Vec<u8>,
}

/// A complete packet: its type, the kept prefix of its payload (after the type
/// byte), and the full payload length.
struct Packet<'a> {
    kind: u8,
    payload: &'a [u8],
    payload_len: u32,
}

impl PacketReader {
    /// Feeds bytes; calls `on_packet` for each complete packet. Returns false
    /// when the stream cannot be SFTP (an oversized or empty packet).
    fn feed(&mut self, mut data: &[u8], on_packet: &mut dyn FnMut(Packet<'_>)) -> bool {
        while !data.is_empty() {
            if self.remaining == 0 {
                while self.len_have < 4 {
                    let Some((&b, rest)) = data.split_first() else {
                        return true;
                    };
                    if let Some(slot) = self.len_buf.get_mut(self.len_have) {
                        *slot = b;
                    }
                    self.len_have += 1;
                    data = rest;
                }
                let len = u32::from_be_bytes(self.len_buf);
                self.len_have = 0;
                if len == 0 || len > MAX_PACKET {
                    return false;
                }
                self.total = len;
                self.remaining = len;
                self.prefix.clear();
            }
            let take = data.len().min(self.remaining as usize);
            let (chunk, rest) = data.split_at(take);
            let room = PREFIX_CAP.saturating_sub(self.prefix.len());
            self.prefix
                .extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
            self.remaining -= take as u32;
            data = rest;
            if self.remaining == 0 {
                if let Some((&kind, payload)) = self.prefix.split_first() {
                    on_packet(Packet {
                        kind,
                        payload,
                        payload_len: self.total - 1,
                    });
                }
                // Do not keep a large buffer around between packets.
                if self.prefix.capacity() > 2 * 1024 {
                    self.prefix = Vec::new();
                }
            }
        }
        true
    }
}

/// A bounds-checked reader of SFTP fields.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn u32(&mut self) -> Option<u32> {
        let (head, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_be_bytes(*head))
    }
    fn u64(&mut self) -> Option<u64> {
        let (head, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(u64::from_be_bytes(*head))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        if len > self.0.len() {
            return None;
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(s)
    }
    fn text(&mut self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

/// What a request that awaits its response was.
#[derive(Debug, Clone)]
enum Pending {
    Open {
        path: String,
    },
    Close {
        handle: Vec<u8>,
    },
    Read {
        handle: Vec<u8>,
    },
    Write {
        handle: Vec<u8>,
        len: u64,
    },
    Simple {
        op: FileOpKind,
        path: String,
        target: Option<String>,
    },
}

/// An open file handle and its running totals.
#[derive(Debug, Clone)]
struct OpenFile {
    path: String,
    read: u64,
    written: u64,
}

/// Tracks one SFTP session in both directions and yields file operations.
#[derive(Debug, Default)]
pub struct SftpTracker {
    client: PacketReader,
    server: PacketReader,
    pending: HashMap<u32, Pending>,
    /// Insertion order of `pending`, to evict the oldest when full.
    pending_order: VecDeque<u32>,
    handles: HashMap<Vec<u8>, OpenFile>,
    /// Set once the stream is found not to be SFTP; parsing then stops.
    desynced: bool,
}

impl SftpTracker {
    /// Creates a tracker for a new subsystem channel.
    pub fn new() -> Self {
        Self::default()
    }

    /// True once the byte stream was found not to be SFTP; no more events come.
    pub fn is_desynced(&self) -> bool {
        self.desynced
    }

    /// Feeds bytes the client sent (requests).
    pub fn client_data(&mut self, data: &[u8], out: &mut Vec<FileOp>) {
        if self.desynced {
            return;
        }
        let mut packets = Vec::new();
        let ok = self
            .client
            .feed(data, &mut |p| packets.push(parse_request(&p)));
        for (id, pending) in packets.into_iter().flatten() {
            self.add_pending(id, pending);
        }
        let _ = out;
        if !ok {
            self.desynced = true;
        }
    }

    /// Feeds bytes the server sent (responses).
    pub fn server_data(&mut self, data: &[u8], out: &mut Vec<FileOp>) {
        if self.desynced {
            return;
        }
        let mut responses = Vec::new();
        let ok = self
            .server
            .feed(data, &mut |p| responses.extend(parse_response(&p)));
        for response in responses {
            self.complete(response, out);
        }
        if !ok {
            self.desynced = true;
        }
    }

    /// Ends the session: files still open are reported as closed with status `unclosed`.
    pub fn finish(&mut self, out: &mut Vec<FileOp>) {
        for (_, file) in self.handles.drain() {
            out.push(file_op(
                FileOpKind::Close,
                file.path,
                None,
                "unclosed".into(),
                file.read,
                file.written,
            ));
        }
        self.pending.clear();
        self.pending_order.clear();
    }

    fn add_pending(&mut self, id: u32, pending: Pending) {
        if self.pending.len() >= MAX_PENDING {
            while let Some(old) = self.pending_order.pop_front() {
                if self.pending.remove(&old).is_some() {
                    break;
                }
            }
        }
        if self.pending.insert(id, pending).is_none() {
            self.pending_order.push_back(id);
        }
        if self.pending_order.len() > 2 * MAX_PENDING {
            let pending = &self.pending;
            self.pending_order.retain(|id| pending.contains_key(id));
        }
    }

    fn complete(&mut self, response: Response, out: &mut Vec<FileOp>) {
        let Some(pending) = self.pending.remove(&response.id) else {
            return;
        };
        match (pending, response.body) {
            (Pending::Open { path }, ResponseBody::Handle(handle)) => {
                if self.handles.len() < MAX_HANDLES {
                    self.handles.insert(
                        handle,
                        OpenFile {
                            path: path.clone(),
                            read: 0,
                            written: 0,
                        },
                    );
                }
                out.push(file_op(FileOpKind::Open, path, None, "ok".into(), 0, 0));
            }
            (Pending::Open { path }, ResponseBody::Status(code)) => {
                out.push(file_op(
                    FileOpKind::Open,
                    path,
                    None,
                    status_name(code),
                    0,
                    0,
                ));
            }
            (Pending::Read { handle }, ResponseBody::Data(len)) => {
                if let Some(file) = self.handles.get_mut(&handle) {
                    file.read = file.read.saturating_add(len);
                }
            }
            (Pending::Write { handle, len }, ResponseBody::Status(0)) => {
                if let Some(file) = self.handles.get_mut(&handle) {
                    file.written = file.written.saturating_add(len);
                }
            }
            (Pending::Close { handle }, ResponseBody::Status(code)) => {
                if let Some(file) = self.handles.remove(&handle) {
                    out.push(file_op(
                        FileOpKind::Close,
                        file.path,
                        None,
                        status_name(code),
                        file.read,
                        file.written,
                    ));
                }
            }
            (Pending::Simple { op, path, target }, ResponseBody::Status(code)) => {
                out.push(file_op(op, path, target, status_name(code), 0, 0));
            }
            _ => {}
        }
    }
}

fn file_op(
    op: FileOpKind,
    path: String,
    target: Option<String>,
    status: String,
    read: u64,
    written: u64,
) -> FileOp {
    FileOp {
        protocol: "sftp".into(),
        op,
        path,
        target,
        bytes_read: read,
        bytes_written: written,
        status,
    }
}

/// Names SFTP v3 status codes as they appear in recordings.
fn status_name(code: u32) -> String {
    match code {
        0 => "ok",
        1 => "eof",
        2 => "no_such_file",
        3 => "permission_denied",
        4 => "failure",
        5 => "bad_message",
        6 => "no_connection",
        7 => "connection_lost",
        8 => "op_unsupported",
        other => return format!("status {other}"),
    }
    .into()
}

/// Parses a client request into its id and what to remember about it.
fn parse_request(p: &Packet<'_>) -> Option<(u32, Pending)> {
    let mut f = Fields(p.payload);
    let id = f.u32()?;
    let simple = |op, path, target| Some((id, Pending::Simple { op, path, target }));
    match p.kind {
        SSH_FXP_OPEN => Some((id, Pending::Open { path: f.text()? })),
        SSH_FXP_CLOSE => Some((
            id,
            Pending::Close {
                handle: f.bytes()?.to_vec(),
            },
        )),
        SSH_FXP_READ => Some((
            id,
            Pending::Read {
                handle: f.bytes()?.to_vec(),
            },
        )),
        SSH_FXP_WRITE => {
            let handle = f.bytes()?.to_vec();
            let _offset = f.u64()?;
            // The data itself is not kept; its length field says how much.
            let len = u64::from(f.u32()?);
            // The length may not exceed what the packet holds.
            let max = u64::from(p.payload_len).saturating_sub(4 + 4 + handle.len() as u64 + 8 + 4);
            Some((
                id,
                Pending::Write {
                    handle,
                    len: len.min(max),
                },
            ))
        }
        SSH_FXP_SETSTAT => simple(FileOpKind::Setstat, f.text()?, None),
        SSH_FXP_FSETSTAT => {
            let handle = f.bytes()?;
            simple(FileOpKind::Setstat, format!("handle:{}", hex(handle)), None)
        }
        SSH_FXP_REMOVE => simple(FileOpKind::Remove, f.text()?, None),
        SSH_FXP_MKDIR => simple(FileOpKind::Mkdir, f.text()?, None),
        SSH_FXP_RMDIR => simple(FileOpKind::Rmdir, f.text()?, None),
        SSH_FXP_RENAME => {
            let old = f.text()?;
            simple(FileOpKind::Rename, old, Some(f.text()?))
        }
        SSH_FXP_SYMLINK => {
            // OpenSSH sends (targetpath, linkpath), swapped from the draft.
            let target = f.text()?;
            let link = f.text()?;
            simple(FileOpKind::Symlink, link, Some(target))
        }
        SSH_FXP_EXTENDED => {
            let name = f.bytes()?;
            match name {
                b"posix-rename@openssh.com" => {
                    let old = f.text()?;
                    simple(FileOpKind::Rename, old, Some(f.text()?))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

struct Response {
    id: u32,
    body: ResponseBody,
}

enum ResponseBody {
    Status(u32),
    Handle(Vec<u8>),
    Data(u64),
}

/// Parses a server response that can complete a tracked request.
fn parse_response(p: &Packet<'_>) -> Option<Response> {
    let mut f = Fields(p.payload);
    let id = f.u32()?;
    let body = match p.kind {
        SSH_FXP_STATUS => ResponseBody::Status(f.u32()?),
        SSH_FXP_HANDLE => ResponseBody::Handle(f.bytes()?.to_vec()),
        SSH_FXP_DATA => {
            let len = u64::from(f.u32()?);
            ResponseBody::Data(len.min(u64::from(p.payload_len).saturating_sub(8)))
        }
        _ => return None,
    };
    Some(Response { id, body })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn packet(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        out.push(kind);
        out.extend_from_slice(body);
        out
    }
    fn s(bytes: &[u8]) -> Vec<u8> {
        let mut out = (bytes.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(bytes);
        out
    }
    fn u(n: u32) -> Vec<u8> {
        n.to_be_bytes().to_vec()
    }

    /// Feeds each buffer byte by byte or whole, to check reassembly.
    fn feed(t: &mut SftpTracker, client: bool, data: &[u8], split: bool, out: &mut Vec<FileOp>) {
        if split {
            for b in data {
                if client {
                    t.client_data(&[*b], out)
                } else {
                    t.server_data(&[*b], out)
                }
            }
        } else if client {
            t.client_data(data, out)
        } else {
            t.server_data(data, out)
        }
    }

    #[test]
    fn put_get_and_simple_ops() {
        for split in [false, true] {
            let mut t = SftpTracker::new();
            let mut out = Vec::new();
            // INIT / VERSION are ignored.
            feed(&mut t, true, &packet(1, &u(3)), split, &mut out);
            feed(&mut t, false, &packet(2, &u(3)), split, &mut out);
            // OPEN id 1 "/tmp/up" for write; HANDLE "h1".
            let open = [u(1), s(b"/tmp/up"), u(0x1a), u(0)].concat();
            feed(&mut t, true, &packet(SSH_FXP_OPEN, &open), split, &mut out);
            feed(
                &mut t,
                false,
                &packet(SSH_FXP_HANDLE, &[u(1), s(b"h1")].concat()),
                split,
                &mut out,
            );
            // Two WRITEs of 5000 and 100 bytes, both acknowledged.
            for (id, len) in [(2u32, 5000usize), (3, 100)] {
                let w = [
                    u(id),
                    s(b"h1"),
                    0u64.to_be_bytes().to_vec(),
                    s(&vec![7u8; len]),
                ]
                .concat();
                feed(&mut t, true, &packet(SSH_FXP_WRITE, &w), split, &mut out);
            }
            feed(
                &mut t,
                false,
                &packet(SSH_FXP_STATUS, &[u(2), u(0), s(b""), s(b"")].concat()),
                split,
                &mut out,
            );
            feed(
                &mut t,
                false,
                &packet(SSH_FXP_STATUS, &[u(3), u(0), s(b""), s(b"")].concat()),
                split,
                &mut out,
            );
            // READ answered with DATA of 42 bytes.
            let r = [u(4), s(b"h1"), 0u64.to_be_bytes().to_vec(), u(32768)].concat();
            feed(&mut t, true, &packet(SSH_FXP_READ, &r), split, &mut out);
            feed(
                &mut t,
                false,
                &packet(SSH_FXP_DATA, &[u(4), s(&[1u8; 42])].concat()),
                split,
                &mut out,
            );
            // CLOSE.
            feed(
                &mut t,
                true,
                &packet(SSH_FXP_CLOSE, &[u(5), s(b"h1")].concat()),
                split,
                &mut out,
            );
            feed(
                &mut t,
                false,
                &packet(SSH_FXP_STATUS, &[u(5), u(0), s(b""), s(b"")].concat()),
                split,
                &mut out,
            );
            // RENAME fails, REMOVE succeeds, MKDIR permission denied.
            feed(
                &mut t,
                true,
                &packet(SSH_FXP_RENAME, &[u(6), s(b"/a"), s(b"/b")].concat()),
                split,
                &mut out,
            );
            feed(
                &mut t,
                false,
                &packet(SSH_FXP_STATUS, &[u(6), u(4), s(b""), s(b"")].concat()),
                split,
                &mut out,
            );
            feed(
                &mut t,
                true,
                &packet(SSH_FXP_REMOVE, &[u(7), s(b"/c")].concat()),
                split,
                &mut out,
            );
            feed(
                &mut t,
                false,
                &packet(SSH_FXP_STATUS, &[u(7), u(0), s(b""), s(b"")].concat()),
                split,
                &mut out,
            );
            feed(
                &mut t,
                true,
                &packet(SSH_FXP_MKDIR, &[u(8), s(b"/d"), u(0)].concat()),
                split,
                &mut out,
            );
            feed(
                &mut t,
                false,
                &packet(SSH_FXP_STATUS, &[u(8), u(3), s(b""), s(b"")].concat()),
                split,
                &mut out,
            );
            // OPEN of a missing file.
            feed(
                &mut t,
                true,
                &packet(SSH_FXP_OPEN, &[u(9), s(b"/nope"), u(1), u(0)].concat()),
                split,
                &mut out,
            );
            feed(
                &mut t,
                false,
                &packet(SSH_FXP_STATUS, &[u(9), u(2), s(b""), s(b"")].concat()),
                split,
                &mut out,
            );

            let summary: Vec<_> = out
                .iter()
                .map(|o| {
                    (
                        o.op,
                        o.path.as_str(),
                        o.target.as_deref(),
                        o.bytes_read,
                        o.bytes_written,
                        o.status.as_str(),
                    )
                })
                .collect();
            assert_eq!(
                summary,
                vec![
                    (FileOpKind::Open, "/tmp/up", None, 0, 0, "ok"),
                    (FileOpKind::Close, "/tmp/up", None, 42, 5100, "ok"),
                    (FileOpKind::Rename, "/a", Some("/b"), 0, 0, "failure"),
                    (FileOpKind::Remove, "/c", None, 0, 0, "ok"),
                    (FileOpKind::Mkdir, "/d", None, 0, 0, "permission_denied"),
                    (FileOpKind::Open, "/nope", None, 0, 0, "no_such_file"),
                ],
                "split={split}"
            );
            assert!(!t.is_desynced());
        }
    }

    #[test]
    fn unclosed_files_reported_at_finish() {
        let mut t = SftpTracker::new();
        let mut out = Vec::new();
        t.client_data(
            &packet(SSH_FXP_OPEN, &[u(1), s(b"/x"), u(1), u(0)].concat()),
            &mut out,
        );
        t.server_data(&packet(SSH_FXP_HANDLE, &[u(1), s(b"h")].concat()), &mut out);
        t.finish(&mut out);
        assert_eq!(out.last().unwrap().status, "unclosed");
    }

    #[test]
    fn garbage_never_panics_and_stays_bounded() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..300 {
            let mut t = SftpTracker::new();
            let mut out = Vec::new();
            for _ in 0..50 {
                let len = (next() % 600) as usize;
                let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                // Half the rounds use plausible lengths so parsing gets deep.
                if round % 2 == 0 && buf.len() > 8 {
                    let plen = (next() % 64 + 1) as u32;
                    buf[..4].copy_from_slice(&plen.to_be_bytes());
                    buf[4] = [3, 4, 5, 6, 13, 18, 101, 102, 103, 200][(next() % 10) as usize];
                }
                if next() % 2 == 0 {
                    t.client_data(&buf, &mut out)
                } else {
                    t.server_data(&buf, &mut out)
                }
                assert!(t.pending.len() <= MAX_PENDING);
                assert!(t.handles.len() <= MAX_HANDLES);
                assert!(t.client.prefix.len() <= PREFIX_CAP && t.server.prefix.len() <= PREFIX_CAP);
            }
            t.finish(&mut out);
        }
    }

    #[test]
    fn oversized_packet_desyncs() {
        let mut t = SftpTracker::new();
        let mut out = Vec::new();
        t.client_data(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3], &mut out);
        assert!(t.is_desynced());
        t.client_data(
            &packet(SSH_FXP_REMOVE, &[u(7), s(b"/c")].concat()),
            &mut out,
        );
        assert!(out.is_empty());
    }
}
