//! `gatehouse replay` of a session still being recorded: a source thread
//! follows the channel ([`recorder::Tail`]: this machine's spool if it has
//! it, else the uploaded segments) and sends its steps to the player as
//! they are recorded; when the session ends, it says why and verifies the
//! sealed recording.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use recorder::asciicast::Header;
use recorder::tail::{Ended, Polled};
use recorder::{Catalog, Status, Tail};
use replay_tui::{Update, Verification};
use terminal::{Change, Step};

/// How long to wait for a channel's first bytes before giving up: its
/// header reaches storage with the first segment.
const FIRST_WAIT: Duration = Duration::from_secs(10);

/// Where to read a live channel from, and how often.
pub(crate) struct Source {
    pub(crate) catalog: Catalog,
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) tail: Tail,
    pub(crate) session_id: String,
    /// How often to look for new output.
    pub(crate) every: Duration,
    /// The recording signer's public key, to verify the sealed recording.
    pub(crate) trusted: [u8; 32],
}

/// The poll interval for a recorder that uploads every `segment_interval`:
/// half of it, so a segment is seen well within two intervals, but at
/// least 200 ms and at most 1 s (the spool is read at the same rate).
pub(crate) fn poll_interval(segment_interval: Duration) -> Duration {
    (segment_interval / 2).clamp(Duration::from_millis(200), Duration::from_secs(1))
}

/// What was recorded so far, for the player to start from.
pub(crate) struct Start {
    pub(crate) header: Header,
    pub(crate) steps: Vec<Step>,
    pub(crate) updates: Receiver<Update>,
}

/// Starts following on a thread of its own and waits for the channel's
/// header and what was recorded so far. Messages while waiting go to
/// stderr, before the player takes the terminal.
pub(crate) fn start(source: Source) -> Result<Start> {
    let id = source.session_id.clone();
    let (first_tx, first_rx) = mpsc::channel();
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("follow".to_owned())
        .spawn(move || follow(source, first_tx, tx))
        .context("cannot start the live source")?;
    let mut said = false;
    loop {
        match first_rx.recv_timeout(Duration::from_secs(1)) {
            Ok(first) => {
                let (header, steps) = first?;
                return Ok(Start {
                    header,
                    steps,
                    updates: rx,
                });
            }
            Err(RecvTimeoutError::Timeout) if !said => {
                eprintln!("waiting for session {id}'s first output to reach storage…");
                said = true;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => bail!("the live source stopped"),
        }
    }
}

/// The end of the session so far: the gateway's end marker, if any, and
/// the exit status.
#[derive(Default)]
struct EndSeen {
    marker: Option<String>,
    exit: Option<i64>,
}

impl EndSeen {
    fn steps(&mut self, polled: Polled) -> Vec<Step> {
        polled
            .events
            .into_iter()
            .filter_map(Step::from_event)
            .inspect(|s| match &s.change {
                Change::Marker(label) => {
                    if let Some(why) = recorder::tail::end_reason(label) {
                        self.marker = Some(why.to_owned());
                    }
                }
                Change::Exit(code) => self.exit = Some(*code),
                _ => {}
            })
            .collect()
    }

    /// Why the session ended, in words.
    fn reason(&self, ended: &Ended) -> String {
        let mut why = match (&self.marker, self.exit, &ended.reason) {
            (Some(marker), _, _) => marker.clone(),
            (None, Some(code), _) => format!("the command exited with status {code}"),
            (None, None, Some(reason)) => reason.clone(),
            (None, None, None) => "the channel closed".to_owned(),
        };
        if ended.status != Status::Sealed {
            why.push_str(&format!(" (recording {})", ended.status.as_str()));
        }
        why
    }
}

fn follow(source: Source, first_tx: Sender<Result<(Header, Vec<Step>)>>, tx: Sender<Update>) {
    let Source {
        catalog,
        rt,
        mut tail,
        session_id,
        every,
        trusted,
    } = source;
    let mut seen = EndSeen::default();
    let mut header = None;
    let mut steps = Vec::new();
    let mut ended;
    let deadline = Instant::now() + FIRST_WAIT;
    // Catch up first: until the header is read and a poll brings nothing
    // more (or the session has ended).
    loop {
        match rt.block_on(tail.poll(&catalog)) {
            Ok(polled) => {
                header = header.or(polled.header.clone());
                let quiet = polled.events.is_empty();
                ended = polled.ended.clone();
                steps.extend(seen.steps(polled));
                if header.is_some() && (quiet || ended.is_some()) {
                    break;
                }
                if ended.is_some() {
                    let _ = first_tx.send(Err(anyhow!(
                        "session {session_id} ended without recording this channel"
                    )));
                    return;
                }
            }
            Err(e) if Instant::now() >= deadline => {
                let _ = first_tx
                    .send(Err(e).with_context(|| format!("cannot follow session {session_id}")));
                return;
            }
            Err(_) => {}
        }
        if Instant::now() >= deadline && header.is_none() {
            let _ = first_tx.send(Err(anyhow!(
                "session {session_id} has recorded nothing on this channel yet; try again shortly"
            )));
            return;
        }
        if header.is_none() {
            // Nothing recorded yet: wait for it.
            std::thread::sleep(every.min(Duration::from_millis(250)));
        }
    }
    let Some(header) = header else { return };
    if first_tx.send(Ok((header, steps))).is_err() {
        return;
    }
    let mut outage = false;
    while ended.is_none() {
        std::thread::sleep(every);
        match rt.block_on(tail.poll(&catalog)) {
            Ok(polled) => {
                if outage {
                    outage = false;
                    let _ = tx.send(Update::Note("following again".to_owned()));
                }
                for line in polled.damaged.iter().take(1) {
                    let _ = tx.send(Update::Note(format!("skipped a damaged line: {line}")));
                }
                ended = polled.ended.clone();
                let new = seen.steps(polled);
                if !new.is_empty() && tx.send(Update::Steps(new)).is_err() {
                    return;
                }
            }
            Err(e) => {
                if !outage {
                    outage = true;
                    tracing::warn!(session_id, error = %e, "following a live session failed; retrying");
                    if tx
                        .send(Update::Note(
                            "cannot read the live session; retrying".to_owned(),
                        ))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    }
    let Some(end) = ended else { return };
    let verification = match rt.block_on(catalog.verify(&session_id, Some(&trusted))) {
        Ok(report) if report.ok => Some(Verification::Verified {
            segments: report.segments_checked,
        }),
        Ok(report) => Some(Verification::Failed(report.problems)),
        // A failed recording has no manifest to check.
        Err(_) => None,
    };
    let _ = tx.send(Update::Ended {
        reason: seen.reason(&end),
        ended: end
            .ended_at_ms
            .map(crate::catalog::rfc3339)
            .unwrap_or_default(),
        verification,
    });
}
