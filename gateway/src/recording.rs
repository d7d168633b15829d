//! The gateway's side of session recording (issue 4): one recorder
//! session per client connection, one [`Tap`] per channel that feeds the
//! channel's bytes to it, and the rules of each route's `record` mode.
//!
//! The recording format, spool and uploads live in the `recorder` crate,
//! which knows no SSH; this module translates channel events into its
//! calls.
//!
//! - **Output is recorded before it is forwarded.** The target→client pump
//!   calls [`Tap::output`] before it writes to the client, so with `strict`
//!   nothing reaches a user unrecorded: when the recording cannot take the
//!   bytes, the channel ends with [`RECORDING_LOST`] instead.
//! - **What is recorded depends on what the channel carries** (issue 15):
//!   a terminal (a pty) as asciicast, the screen the user saw; any other
//!   exec, shell or subsystem as a byte stream, its exact bytes
//!   (`ChannelRecorder` is opened with `open_stream`); `rsync --server` and
//!   `git-upload-pack`/`-receive-pack` get a file operation event on top
//!   (`recorder::Transfer`).
//! - **SFTP and SCP are file operations**, not contents: the `sftp`
//!   subsystem's packets go through `recorder::SftpTracker`, an `scp -t/-f`
//!   exec is counted by `recorder::Transfer`.
//! - **Input** is passed on, and the recorder drops it unless the route
//!   sets `record_input`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit::{Event, SessionId};
use recorder::transfer::Protocol;
use recorder::{ChannelKind, ChannelRecorder, FileOp, Recorder, SftpTracker, Transfer};
use tokio_util::sync::CancellationToken;

use crate::lines::RECORDING_LOST;
use crate::lock;
use crate::registry::{EndCause, LiveSession};
use config::RecordMode;

/// How long a strict route waits for the storage probe before refusing.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection's recorder session, shared by its channels; sealed when the
/// connection ends (see `server::serve_connection`).
pub type SessionSlot = Arc<tokio::sync::Mutex<Option<recorder::Session>>>;

/// Whether storage answers, for a strict route about to start a session.
pub(crate) async fn probe(recorder: &Recorder) -> Result<(), String> {
    match tokio::time::timeout(PROBE_TIMEOUT, recorder.probe_storage()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "storage did not answer within {}s",
            PROBE_TIMEOUT.as_secs()
        )),
    }
}

/// How a channel's bytes are turned into recording events.
enum Content {
    /// The bytes themselves: terminal text or a byte stream, as the
    /// channel's recording was opened.
    Bytes,
    /// SFTP packets: file operations only.
    Sftp(Box<SftpTracker>, Vec<FileOp>),
    /// A legacy `scp -t/-f` exec: one file operation with byte counts, no
    /// contents.
    Scp(Transfer),
    /// `rsync` or `git` over SSH: the bytes, and one file operation with
    /// the paths and byte counts at the end.
    Transfer(Transfer),
}

/// Whether a channel is recorded as a byte stream rather than a terminal:
/// it has no pty, and is neither SFTP nor SCP (which record file
/// operations only).
pub(crate) fn is_stream(has_pty: bool, kind: ChannelKind, command: Option<&str>) -> bool {
    if has_pty {
        return false;
    }
    match (kind, command) {
        (ChannelKind::Subsystem, Some("sftp")) => false,
        (ChannelKind::Exec, Some(cmd)) => {
            Transfer::from_command(cmd).is_none_or(|t| t.protocol != Protocol::Scp)
        }
        _ => true,
    }
}

enum State {
    /// The channel has not started (no shell, exec or subsystem yet), or
    /// the route does not record.
    Idle,
    Recording(Box<ChannelRecorder>, Content),
    /// Recording stopped after an error (best effort: the channel runs on
    /// unrecorded; the audit log says so).
    Stopped,
}

/// Records one channel. Shared by the pumps of both directions and the
/// handler callbacks; every call is a short synchronous spool write.
pub struct Tap {
    state: Mutex<State>,
    mode: RecordMode,
    session_id: SessionId,
    /// The client asked for a pty: lines the gateway writes on the channel
    /// end in `\r\n` (see `lines::on_channel`).
    terminal: std::sync::atomic::AtomicBool,
}

impl Tap {
    /// A tap for a channel of a route recorded in `mode`.
    pub fn new(mode: RecordMode, session_id: &SessionId) -> Arc<Tap> {
        Arc::new(Tap {
            state: Mutex::new(State::Idle),
            mode,
            session_id: session_id.clone(),
            terminal: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The client asked for a pty on this channel.
    pub fn set_terminal(&self) {
        self.terminal
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// `line` as the gateway writes it on this channel (`after_output`: it
    /// may follow the target's output on the same line).
    pub fn line(&self, line: &str, after_output: bool) -> String {
        crate::lines::on_channel(
            line,
            self.terminal.load(std::sync::atomic::Ordering::Relaxed),
            after_output,
        )
    }

    /// The route's record mode.
    pub fn mode(&self) -> RecordMode {
        self.mode
    }

    /// Starts recording the channel, when its shell, exec or subsystem
    /// request arrives.
    pub fn start(&self, recorder: ChannelRecorder, spec_kind: ChannelKind, command: Option<&str>) {
        let content = match (spec_kind, command) {
            (ChannelKind::Subsystem, Some("sftp")) => {
                Content::Sftp(Box::new(SftpTracker::new()), Vec::new())
            }
            (ChannelKind::Exec, Some(cmd)) => match Transfer::from_command(cmd) {
                Some(t) if t.protocol == Protocol::Scp => Content::Scp(t),
                Some(t) => Content::Transfer(t),
                None => Content::Bytes,
            },
            _ => Content::Bytes,
        };
        let mut recorder = Box::new(recorder);
        if let Err(e) = recorder.marker("gatehouse.session.start") {
            tracing::warn!(session_id = %self.session_id, error = %e, "recording marker failed");
        }
        *lock(&self.state) = State::Recording(recorder, content);
    }

    /// Records output from the target. `Err` carries the line to show when
    /// a strict route must end the channel instead of forwarding.
    pub fn output(&self, data: &[u8]) -> Result<(), &'static str> {
        self.record(|rec, content| match content {
            Content::Bytes => rec.output(data),
            Content::Sftp(tracker, ops) => {
                tracker.server_data(data, ops);
                write_ops(rec, ops)
            }
            Content::Scp(scp) => {
                scp.server_data(data.len());
                Ok(())
            }
            Content::Transfer(t) => {
                t.server_data(data.len());
                rec.output(data)
            }
        })
    }

    /// Records what the target wrote to stderr (SSH extended data), before
    /// it is forwarded, like [`Tap::output`].
    pub fn stderr(&self, data: &[u8]) -> Result<(), &'static str> {
        self.record(|rec, content| match content {
            Content::Bytes | Content::Transfer(_) => rec.stderr(data),
            // SFTP and SCP speak on stdout; stderr is their messages.
            Content::Sftp(..) | Content::Scp(_) => Ok(()),
        })
    }

    /// Records input from the client (dropped by the recorder unless the
    /// route records input).
    pub fn input(&self, data: &[u8]) -> Result<(), &'static str> {
        self.record(|rec, content| match content {
            Content::Bytes => rec.input(data),
            Content::Sftp(tracker, ops) => {
                tracker.client_data(data, ops);
                write_ops(rec, ops)
            }
            Content::Scp(scp) => {
                scp.client_data(data.len());
                Ok(())
            }
            Content::Transfer(t) => {
                t.client_data(data.len());
                rec.input(data)
            }
        })
    }

    /// Records a terminal resize.
    pub fn resize(&self, cols: u32, rows: u32) {
        let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        let _ = self.record(|rec, _| rec.resize(clamp(cols), clamp(rows)));
    }

    /// Records a marker such as a policy event.
    pub fn marker(&self, label: &str) {
        let _ = self.record(|rec, _| rec.marker(label));
    }

    /// Records the exit status (a signal is recorded as -1).
    pub fn exit(&self, status: Option<u32>) {
        let _ = self.record(|rec, content| {
            if let Content::Scp(t) | Content::Transfer(t) = content {
                rec.file_op(&t.finish(status))?;
            }
            rec.exit(status.map(i64::from).unwrap_or(-1))
        });
    }

    /// Ends the channel's recording: open SFTP handles are reported, the
    /// spool is marked complete.
    pub fn finish(&self) {
        let state = std::mem::replace(&mut *lock(&self.state), State::Stopped);
        if let State::Recording(mut rec, content) = state {
            if let Content::Sftp(mut tracker, mut ops) = content {
                tracker.finish(&mut ops);
                let _ = write_ops(&mut rec, &mut ops);
            }
            if let Err(e) = rec.close() {
                tracing::warn!(session_id = %self.session_id, error = %e, "closing a channel recording failed");
            }
        }
    }

    fn record(
        &self,
        f: impl FnOnce(&mut ChannelRecorder, &mut Content) -> recorder::Result<()>,
    ) -> Result<(), &'static str> {
        let mut state = lock(&self.state);
        let State::Recording(rec, content) = &mut *state else {
            return match (&*state, self.mode) {
                // A strict channel whose recording stopped forwards nothing.
                (State::Stopped, RecordMode::Strict) => Err(RECORDING_LOST),
                _ => Ok(()),
            };
        };
        let Err(e) = f(rec, content) else {
            return Ok(());
        };
        *state = State::Stopped;
        Event::RecordingStopped {
            session_id: self.session_id.clone(),
            mode: self.mode.as_str(),
            reason: e.to_string(),
        }
        .emit();
        match self.mode {
            RecordMode::Strict => Err(RECORDING_LOST),
            _ => Ok(()),
        }
    }
}

fn write_ops(rec: &mut ChannelRecorder, ops: &mut Vec<FileOp>) -> recorder::Result<()> {
    for op in ops.drain(..) {
        rec.file_op(&op)?;
    }
    Ok(())
}

/// Watches a strict route's recording while the session lives: once
/// uploads have failed for longer than `grace` (the spool still has
/// everything, but storage is gone), the session is ended with
/// [`RECORDING_LOST`] through [`LiveSession::end`], like every other end:
/// the line in every channel, `session.ended` with `cause = "recording"`,
/// and the connection closed.
pub(crate) async fn watch_strict(
    slot: SessionSlot,
    grace: Duration,
    session: Arc<LiveSession>,
    closed: CancellationToken,
) {
    let mut failing_since: Option<Instant> = None;
    loop {
        tokio::select! {
            () = closed.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let health = match slot.lock().await.as_ref() {
            Some(session) => session.health(),
            None => return,
        };
        let lost = if let Some(reason) = &health.failure {
            Some(reason.clone())
        } else if let Some(error) = &health.last_upload_error {
            let since = *failing_since.get_or_insert_with(Instant::now);
            (since.elapsed() >= grace).then(|| error.clone())
        } else {
            failing_since = None;
            None
        };
        if let Some(reason) = lost {
            Event::RecordingLost {
                session_id: session.id.clone(),
                mode: RecordMode::Strict.as_str(),
                reason,
            }
            .emit();
            session.end(RECORDING_LOST.to_owned(), EndCause::Recording, None);
            return;
        }
    }
}
