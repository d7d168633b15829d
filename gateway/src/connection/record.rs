//! Starting a live session's recording: the session's recorder with its
//! first recorded channel, each channel's recording as its shell, exec or
//! subsystem request arrives, and what a route's `record` mode does when
//! recording cannot start.

use std::sync::Arc;

use audit::Event;
use russh::ChannelId;
use tracing::Instrument;

use super::Connection;
use super::channels::ChannelRequest;
use crate::{lines, recording};
use config::RecordMode;

impl Connection {
    /// Starts the connection's recording with its first recorded channel.
    /// Returns the mode the channel runs in: a best-effort route whose
    /// recording cannot start runs unrecorded (and the audit log says so);
    /// a strict one gets the line that refuses the channel.
    pub(super) async fn ensure_recording(
        &mut self,
        mode: RecordMode,
    ) -> Result<RecordMode, String> {
        if mode == RecordMode::Off {
            return Ok(mode);
        }
        let Some(live) = &self.live else {
            return Ok(RecordMode::Off);
        };
        let mut slot = self.recording.lock().await;
        if slot.is_some() {
            return Ok(mode);
        }
        let auth = &live.authorized;
        let info = recorder::SessionInfo {
            session_id: self.id.to_string(),
            identity: auth.identity.label().to_owned(),
            login: auth.login.clone(),
            route: auth.route.name.clone(),
            target: auth.route.target.clone(),
            client_addr: self.peer.to_string(),
            client_key_fingerprint: auth.key_fingerprint.clone(),
            cert_serial: None,
        };
        match self.shared.recorder().start_session(info).await {
            Ok(session) => {
                *slot = Some(session);
                drop(slot);
                if mode == RecordMode::Strict {
                    tokio::spawn(
                        recording::watch_strict(
                            Arc::clone(&self.recording),
                            self.shared.config().recording.strict_grace,
                            Arc::clone(&live.session),
                            self.closed.clone(),
                        )
                        .instrument(self.span.clone()),
                    );
                }
                Ok(mode)
            }
            Err(e) => self
                .recording_unavailable(mode, &e.to_string())
                .map(|()| RecordMode::Off),
        }
    }

    /// Starts recording a channel as its shell, exec or subsystem request
    /// arrives. `Err` is the line for a strict route that cannot record it.
    pub(super) async fn start_channel_recording(
        &self,
        id: ChannelId,
        request: &ChannelRequest,
        cert_serial: u64,
    ) -> Result<(), String> {
        let Some(live) = &self.live else {
            return Ok(());
        };
        let Some(ch) = live.channels.get(&id) else {
            return Ok(());
        };
        if ch.tap.mode() == RecordMode::Off {
            return Ok(());
        }
        let (kind, command) = match request {
            ChannelRequest::Shell => (recorder::ChannelKind::Shell, None),
            ChannelRequest::Exec(cmd) => (
                recorder::ChannelKind::Exec,
                Some(String::from_utf8_lossy(cmd).into_owned()),
            ),
            ChannelRequest::Subsystem(name) => {
                (recorder::ChannelKind::Subsystem, Some(name.clone()))
            }
            _ => return Ok(()),
        };
        let term = match &ch.pty {
            Some((term, size)) => recorder::asciicast::Term {
                cols: u16::try_from(size.cols).unwrap_or(u16::MAX),
                rows: u16::try_from(size.rows).unwrap_or(u16::MAX),
                term_type: Some(term.clone()),
            },
            None => recorder::asciicast::Term {
                cols: 80,
                rows: 24,
                term_type: None,
            },
        };
        let record_input = live.session.decision().obligations.record_input;
        let spec = recorder::ChannelSpec {
            channel: format!("{id}"),
            kind,
            command: command.clone(),
            term,
            record_input,
            cert_serial: Some(cert_serial),
        };
        let stream = recording::is_stream(ch.pty.is_some(), kind, command.as_deref());
        let opened = match self.recording.lock().await.as_ref() {
            Some(session) if stream => session.open_stream(spec).await,
            Some(session) => session.open_channel(spec).await,
            None => Err(recorder::Error::Format {
                what: "recording".to_owned(),
                reason: "the session's recording did not start".to_owned(),
            }),
        }
        .map_err(|e| e.to_string());
        match opened {
            Ok(rec) => {
                ch.tap.start(rec, kind, command.as_deref());
                Ok(())
            }
            Err(reason) => self.recording_unavailable(ch.tap.mode(), &reason),
        }
    }

    /// A recording could not start: audited; a strict route gets the line
    /// that refuses it, a best-effort one runs on unrecorded.
    fn recording_unavailable(&self, mode: RecordMode, reason: &str) -> Result<(), String> {
        let route = self.route_name();
        Event::RecordingUnavailable {
            session_id: self.id.clone(),
            route: route.clone(),
            mode: mode.as_str(),
            reason: reason.to_owned(),
        }
        .emit();
        match mode {
            RecordMode::Strict => Err(lines::recording_unavailable(&route)),
            _ => Ok(()),
        }
    }
}
