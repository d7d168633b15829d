//! The fuzz targets of Gatehouse, one function per target: everything a
//! stranger, a hostile client, a broken IdP or a corrupt file can hand the
//! gateway. `fuzz/` wraps each in a libFuzzer entry point; `tests/corpora.rs`
//! replays every committed corpus file through the same function under
//! `cargo test`, so an input that once crashed stays fixed.
//!
//! A target panics only on a finding: a crash in the code under test, or a
//! broken property asserted here (positions inside the input, bounded
//! output, printable prompts).

use std::net::IpAddr;
use std::path::Path;

pub use gateway::fuzz::{Harness, sign_in_prompt, user_name};
pub use identity::fuzz::token_response;

/// The names of all targets, as `fuzz/fuzz_targets/<name>.rs` and
/// `fuzz/corpus/<name>/`.
pub const TARGETS: &[&str] = &[
    "config",
    "policy",
    "user_name",
    "sign_in_prompt",
    "token_response",
    "asciicast",
    "sftp",
    "scp",
    "preauth",
    "auth",
    "stream",
    "transfer",
    "proxy_header",
    "first_bytes",
];

/// Lines in `text` as YAML counts them: `\r\n`, a lone `\r` and `\n`
/// each end a line (YAML 1.2, 5.4), and a position just past the end is
/// on the next one.
fn lines_of(text: &str) -> u64 {
    let breaks = text.replace("\r\n", "\n").replace('\r', "\n");
    u64::try_from(breaks.matches('\n').count()).unwrap_or(u64::MAX) + 1
}

/// The gateway configuration file. Every problem has a position inside the
/// file or none at all.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/fuzz/gatehouse.yaml");
    if let Err(errors) = config::parse(path, text) {
        assert!(!errors.0.is_empty(), "an error without problems");
        for problem in &errors.0 {
            assert!(problem.line <= lines_of(text), "{problem} is past the end");
            assert!(!problem.message.is_empty());
        }
    }
}

/// The policy language: compile, then decide for a fixed identity at a
/// few instants. Errors point inside the text; a decision's next check is
/// in the future.
pub fn policy(data: &[u8]) {
    use policy::lang::{Identity, IdentityKind, Request, Timestamp, evaluate, parse_and_compile};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let set = match parse_and_compile(text) {
        Ok(set) => set,
        Err(errors) => {
            assert!(!errors.is_empty(), "an error without problems");
            for e in &errors {
                assert!(e.line <= lines_of(text), "{e} is past the end");
            }
            return;
        }
    };
    let identity = Identity {
        email: Some("alice@example.com".into()),
        groups: vec!["ops".into(), "sre".into()],
        ..Identity::new(IdentityKind::User, "alice")
    };
    let instants = [0, 1_700_000_000, 1_767_225_599, 4_102_444_800];
    for (name, route) in set.routes() {
        for secs in instants {
            let Ok(now) = Timestamp::from_second(secs) else {
                continue;
            };
            let decision = evaluate(
                route,
                &Request {
                    identity: &identity,
                    login: "root",
                    source: IpAddr::from([192, 0, 2, 1]),
                    now,
                    session_start: None,
                },
            );
            // A re-check due now or earlier would make the gateway spin.
            if let Some(next) = decision.next_check {
                assert!(
                    next > now,
                    "route {name}: next check {next} is not after {now}"
                );
            }
            assert!(
                !decision.reason.is_empty() || decision.allowed,
                "route {name}: a denial without a reason"
            );
        }
    }
}

/// A recording as the replay tools read it (asciicast v2 or v3).
pub fn asciicast(data: &[u8]) {
    if let Ok(cast) = recorder::asciicast::read(data) {
        let _ = cast.output();
        let _ = cast.exit_status();
        let _ = cast.duration_us();
    }
}

/// The SFTP tracker fed both directions of a channel in pieces: each piece
/// is a header byte (low bit: direction; the rest: length) and that many
/// bytes. It must never panic, and what it remembers stays bounded.
pub fn sftp(data: &[u8]) {
    let mut tracker = recorder::SftpTracker::new();
    let mut ops = Vec::new();
    let mut rest = data;
    while let Some((&header, tail)) = rest.split_first() {
        let len = usize::from(header >> 1).min(tail.len());
        let (piece, tail) = tail.split_at(len);
        if header & 1 == 0 {
            tracker.client_data(piece, &mut ops);
        } else {
            tracker.server_data(piece, &mut ops);
        }
        rest = tail;
    }
    tracker.finish(&mut ops);
    // Each operation needs a response packet (at least 9 bytes) or an open
    // handle, and at most MAX_HANDLES handles are tracked.
    assert!(ops.len() <= data.len() / 9 + recorder::sftp::MAX_HANDLES);
    for op in &ops {
        let chars = op.path.chars().count();
        assert!(chars <= recorder::sftp::PREFIX_CAP, "{chars} characters");
    }
}

/// The SCP command line and its byte counts: the first line is the
/// command, each later byte a chunk of traffic (low bit: direction).
pub fn scp(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (command, traffic) = text.split_once('\n').unwrap_or((&text, ""));
    let Some(mut transfer) = recorder::Transfer::from_command(command) else {
        return;
    };
    for b in traffic.bytes() {
        if b & 1 == 0 {
            transfer.client_data(usize::from(b));
        } else {
            transfer.server_data(usize::from(b));
        }
    }
    let op = transfer.finish(Some(0));
    // Paths come from the command's words, unquoted: never longer.
    assert!(op.path.len() <= command.len());
}

/// A byte-stream recording (the format of channels without a terminal),
/// read as events, as frames and exported: no input panics, and what is
/// read never claims more bytes than were given.
pub fn stream(data: &[u8]) {
    use recorder::stream::{Frames, Kind, copy_stream, whole_frames};
    let whole = whole_frames(data);
    assert!(whole <= data.len());
    let mut frames = Frames::new(data);
    let mut read = 0usize;
    while let Ok(Some(f)) = frames.next_frame() {
        read += recorder::stream::FRAME_HEADER + f.data.len();
    }
    assert!(read <= whole, "{read} > {whole}");
    if let Ok((_, mut reader)) = recorder::asciicast::Reader::new(data) {
        let mut last = 0;
        while let Ok(Some(e)) = reader.next_event() {
            assert!(e.time_us >= last, "times never go back");
            last = e.time_us;
        }
    }
    let mut out = Vec::new();
    if let Ok(n) = copy_stream(data, Kind::Stdout, &mut out) {
        assert_eq!(n as usize, out.len());
        assert!(out.len() <= data.len());
    }
}

/// The command classifiers of exec channels that move files (scp, rsync,
/// git) and the shell word splitter under them.
pub fn transfer(data: &[u8]) {
    use recorder::transfer::{Protocol, Transfer, split_words};
    let command = String::from_utf8_lossy(data);
    if let Some(words) = split_words(&command) {
        // Quoting the words again gives them back.
        let quoted: Vec<String> = words
            .iter()
            .map(|w| format!("'{}'", w.replace('\'', "'\\''")))
            .collect();
        assert_eq!(split_words(&quoted.join(" ")), Some(words.clone()));
        if let Some(t) = Transfer::from_command(&command) {
            let program = words
                .first()
                .map(|w| w.rsplit('/').next().unwrap_or(w))
                .unwrap_or_default();
            match t.protocol {
                Protocol::Scp => assert_eq!(program, "scp"),
                Protocol::Rsync => assert_eq!(program, "rsync"),
                Protocol::Git => assert!(program.starts_with("git")),
            }
            for p in &t.paths {
                assert!(words.contains(p), "{p:?} not among {words:?}");
            }
        }
    } else {
        assert!(Transfer::from_command(&command).is_none());
    }
}

/// A reader that hands out `data` in chunks whose sizes come from `sizes`
/// (cycled), as a network does: headers split anywhere.
struct Chunked<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    next: usize,
}

impl tokio::io::AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let size = match self.sizes.get(self.next % self.sizes.len().max(1)) {
            Some(&s) => usize::from(s).max(1),
            None => usize::MAX,
        };
        self.next += 1;
        let n = size.min(buf.remaining()).min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = tail;
        std::task::Poll::Ready(Ok(()))
    }
}

/// The start of a connection on a listener that takes PROXY headers: the
/// header parser (v1 text, v2 binary) and the reader around it, fed in
/// chunks. The first byte picks trusted or not and the chunk sizes; what
/// comes back is always the client's address from a whole header (or the
/// peer's) and the bytes that followed it, never more than was sent.
pub fn proxy_header(data: &[u8]) {
    use std::net::SocketAddr;
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let (sizes, input) = rest.split_at(usize::from(control & 0x07).min(rest.len()));
    let trusted = control & 0x80 != 0;
    if let Ok(Some((_, len))) = edge::proxy::parse(input) {
        assert!(len <= input.len());
    }
    let peer: SocketAddr = ([192, 0, 2, 1], 2222).into();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let mut reader = Chunked {
        data: input,
        sizes,
        next: 0,
    };
    let started = runtime.block_on(edge::proxy::read_start(
        &mut reader,
        peer,
        trusted,
        std::time::Duration::from_secs(1),
    ));
    let Ok((client, first)) = started else {
        return;
    };
    if edge::proxy::looks_like_header(input) && input.len() >= 12 {
        // A header: only believed from a trusted peer, and what follows
        // it is what the input holds after it.
        assert!(trusted, "a header from an untrusted peer was believed");
        let (_, len) = edge::proxy::parse(input)
            .ok()
            .flatten()
            .expect("a header read whole parses whole");
        assert!(len <= edge::proxy::MAX_HEADER);
        assert!(input[len..].starts_with(&first));
    } else if client == peer {
        assert!(input.starts_with(&first), "bytes made up or reordered");
    }
}

/// The edge listener's classifier: more bytes never change a decision,
/// 14 bytes always decide, and a `CONNECT` authority is one word from the
/// request line.
pub fn first_bytes(data: &[u8]) {
    use edge::classify::{classify, connect_authority};
    let mut decided = None;
    for n in 0..=data.len().min(64) {
        match (classify(&data[..n]), decided) {
            (Some(kind), None) => decided = Some(kind),
            (Some(kind), Some(before)) => assert_eq!(kind, before, "at {n} bytes"),
            (None, Some(before)) => panic!("{before:?} undecided again at {n} bytes"),
            (None, None) => assert!(n < 15, "undecided after {n} bytes"),
        }
    }
    if let Some(authority) = connect_authority(data) {
        assert!(!authority.is_empty() && !authority.contains(' '));
        assert!(data.starts_with(format!("CONNECT {authority} ").as_bytes()));
    }
}
