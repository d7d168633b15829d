//! Session channels of a live session: opening them (each dials the target
//! on its own upstream connection, see `proxy.rs`), and the requests that
//! shape and start them, each checked against the session's *current*
//! decision.

use std::time::Duration;

use audit::Event;
use policy::lang::{Capabilities, Decision, Exec};
use russh::server::{ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, ChannelOpenFailure, Pty, Sig};

use super::Connection;
use crate::proxy::{self, ChannelRecording, UpstreamChannel, WindowSize};
use crate::recording::Tap;
use crate::upstream::DialContext;
use crate::{Error, lines};
use config::RecordMode;

/// How long a forwarded channel request may wait for the target's reply.
/// Requests are answered in order, so this only bounds a broken target.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Channels one client connection may have open at once. Each costs an
/// upstream connection, so this bounds what one client can make us dial.
const MAX_CHANNELS: usize = 64;

/// A request that starts or shapes a session channel, forwarded as is.
pub(super) enum ChannelRequest {
    Pty {
        term: String,
        size: WindowSize,
        modes: Vec<(Pty, u32)>,
    },
    Env {
        name: String,
        value: String,
    },
    Shell,
    Exec(Vec<u8>),
    Subsystem(String),
}

impl ChannelRequest {
    fn name(&self) -> &'static str {
        match self {
            ChannelRequest::Pty { .. } => "pty-req",
            ChannelRequest::Env { .. } => "env",
            ChannelRequest::Shell => "shell",
            ChannelRequest::Exec(_) => "exec",
            ChannelRequest::Subsystem(_) => "subsystem",
        }
    }

    async fn send(&self, up: &UpstreamChannel) -> Result<(), russh::Error> {
        let w = &up.write;
        match self {
            ChannelRequest::Pty { term, size, modes } => {
                w.request_pty(
                    true,
                    term,
                    size.cols,
                    size.rows,
                    size.pix_width,
                    size.pix_height,
                    modes,
                )
                .await
            }
            ChannelRequest::Env { name, value } => {
                w.set_env(true, name.clone(), value.clone()).await
            }
            ChannelRequest::Shell => w.request_shell(true).await,
            ChannelRequest::Exec(command) => w.exec(true, command.clone()).await,
            ChannelRequest::Subsystem(name) => w.request_subsystem(true, name.clone()).await,
        }
    }
}

impl Connection {
    /// The decision new channels and requests follow: the live session's,
    /// which re-evaluation keeps current. `None` before authentication.
    pub(super) fn decision(&self) -> Option<Decision> {
        self.live.as_ref().map(|l| l.session.decision())
    }

    /// The capabilities in force for new channels and requests.
    pub(super) fn capabilities(&self) -> Option<Capabilities> {
        self.decision().map(|d| d.capabilities)
    }

    /// How to dial the target for a new channel under the current decision.
    pub(super) fn current_dial_context(&self) -> Option<DialContext> {
        self.dial_context(&self.decision()?)
    }

    /// How to dial the target for a new channel under `decision`; the
    /// certificate is minted from it.
    fn dial_context(&self, decision: &Decision) -> Option<DialContext> {
        let live = self.live.as_ref()?;
        Some(DialContext {
            route: std::sync::Arc::clone(&live.authorized.route),
            login: live.authorized.login.clone(),
            identity: live.session.identity(),
            session_id: self.id.clone(),
            extensions: decision.capabilities.certificate_extensions(),
            force_command: decision.capabilities.force_command().map(str::to_owned),
            cert_ttl: decision.obligations.cert_ttl,
            ca: std::sync::Arc::clone(&self.shared.ca),
            metrics: std::sync::Arc::clone(&self.shared.metrics),
        })
    }

    /// Accepts a session channel and starts its proxy, which dials the
    /// target in the background.
    pub(super) async fn open_session_channel(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Error> {
        let Some((decision, ctx)) = self
            .decision()
            .and_then(|d| self.dial_context(&d).map(|ctx| (d, ctx)))
        else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        if self.live.as_ref().map_or(0, |l| l.channels.len()) >= MAX_CHANNELS {
            reply
                .reject(ChannelOpenFailure::Other {
                    code: 4,
                    reason: lines::too_many_channels(MAX_CHANNELS),
                })
                .await;
            return Ok(());
        }
        let id = channel.id();
        let mode = match self.ensure_recording(decision.obligations.record).await {
            Ok(mode) => mode,
            Err(line) => {
                reply
                    .reject(ChannelOpenFailure::Other {
                        code: 1,
                        reason: line,
                    })
                    .await;
                return Ok(());
            }
        };
        reply.accept().await;
        let recording = ChannelRecording {
            tap: Tap::new(mode, &self.id),
            ender: self.ender.subscribe(),
            probe: (mode == RecordMode::Strict).then(|| self.shared.recorder().clone()),
        };
        let proxied = proxy::start(
            ctx,
            channel,
            session.handle(),
            recording,
            self.closed.clone(),
            tracing::info_span!(parent: &self.span, "channel", kind = "session"),
        );
        if let Some(live) = self.live.as_mut() {
            live.channels.insert(id, proxied);
        }
        Ok(())
    }

    /// The channel's upstream end once dialed; `None` when there is no
    /// such channel or dialing failed (the channel task told the client).
    async fn upstream_of(&self, id: ChannelId) -> Option<std::sync::Arc<UpstreamChannel>> {
        let ready = self.live.as_ref()?.channels.get(&id)?.upstream.clone();
        ready.await
    }

    /// Forwards a channel request to the target and relays the target's
    /// answer. The client connection waits meanwhile; that keeps replies
    /// exact (russh tracks one pending reply per channel) and only happens
    /// for the requests that start a channel.
    pub(super) async fn forward_request(
        &mut self,
        id: ChannelId,
        session: &mut Session,
        request: ChannelRequest,
    ) -> Result<(), Error> {
        let known = self
            .live
            .as_ref()
            .is_some_and(|l| l.channels.contains_key(&id));
        if !known {
            session.channel_failure(id)?;
            return Ok(());
        }
        // None: dialing failed and the channel task has told the client.
        let Some(up) = self.upstream_of(id).await else {
            return Ok(());
        };
        if let Err(line) = self
            .start_channel_recording(id, &request, up.cert_serial)
            .await
        {
            let text = self.line_on(id, &line);
            session.extended_data(id, 1, text.into_bytes())?;
            session.channel_failure(id)?;
            return Ok(());
        }
        let reply = up.expect_reply();
        let ok = match request.send(&up).await {
            Ok(()) => matches!(
                tokio::time::timeout(REPLY_TIMEOUT, reply).await,
                Ok(Ok(true))
            ),
            Err(_) => false,
        };
        if ok {
            session.channel_success(id)?;
        } else {
            tracing::debug!(channel = ?id, request = request.name(), "target refused request");
            session.channel_failure(id)?;
        }
        Ok(())
    }

    /// Refuses a request that starts a channel (shell, exec, subsystem)
    /// with a line on its stderr: `gatehouse: WHAT is not allowed on route
    /// ROUTE`. The request is answered with success and the channel then
    /// ends with exit status 1, because OpenSSH quits on a failed request
    /// before it prints what the channel said.
    fn refuse_with_line(
        &self,
        id: ChannelId,
        request: &'static str,
        what: &str,
        session: &mut Session,
    ) -> Result<(), Error> {
        self.audit_refused(request);
        let line = self.line_on(id, &lines::not_allowed(what, &self.route_name()));
        session.channel_success(id)?;
        session.extended_data(id, 1, line.into_bytes())?;
        session.exit_status_request(id, 1)?;
        session.eof(id)?;
        session.close(id)?;
        Ok(())
    }

    fn refuse_request(
        &self,
        id: ChannelId,
        what: &'static str,
        session: &mut Session,
    ) -> Result<(), Error> {
        self.audit_refused(what);
        session.channel_failure(id)?;
        Ok(())
    }

    fn audit_refused(&self, request: &'static str) {
        Event::RequestRefused {
            session_id: self.id.clone(),
            route: self.route_name(),
            request,
        }
        .emit();
    }

    /// `line` as written on channel `id` (see `lines::on_channel`).
    fn line_on(&self, id: ChannelId, line: &str) -> String {
        match self.live.as_ref().and_then(|l| l.channels.get(&id)) {
            Some(ch) => ch.tap.line(line, false),
            None => lines::on_channel(line, false, false),
        }
    }

    /// `pty-req`, when the policy grants a pty.
    pub(super) async fn request_pty(
        &mut self,
        channel: ChannelId,
        term: &str,
        size: WindowSize,
        modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Error> {
        if !self.capabilities().is_some_and(|c| c.pty) {
            return self.refuse_request(channel, "pty", session);
        }
        if let Some(ch) = self
            .live
            .as_mut()
            .and_then(|l| l.channels.get_mut(&channel))
        {
            ch.pty = Some((term.to_owned(), size));
            ch.tap.set_terminal();
        }
        let request = ChannelRequest::Pty {
            term: term.to_owned(),
            size,
            modes: modes.to_vec(),
        };
        self.forward_request(channel, session, request).await
    }

    /// `shell`, when the policy grants a login shell.
    pub(super) async fn request_shell(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Error> {
        if !self.capabilities().is_some_and(|c| c.shell) {
            return self.refuse_with_line(channel, "shell", "a login shell", session);
        }
        self.forward_request(channel, session, ChannelRequest::Shell)
            .await
    }

    /// `exec`, when the policy grants commands (or forces one).
    pub(super) async fn request_exec(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Error> {
        match self.capabilities().map(|c| c.exec) {
            Some(Exec::Any) => {}
            Some(Exec::Only(command)) => {
                // The certificate's force-command makes sshd run the one
                // allowed command whatever was asked (the request is in
                // SSH_ORIGINAL_COMMAND there), so the request may go on.
                Event::ExecForced {
                    session_id: self.id.clone(),
                    route: self.route_name(),
                    requested: String::from_utf8_lossy(data).into_owned(),
                    forced: command.to_string(),
                }
                .emit();
            }
            Some(Exec::Denied) | None => {
                return self.refuse_with_line(channel, "exec", "running commands", session);
            }
        }
        self.forward_request(channel, session, ChannelRequest::Exec(data.to_vec()))
            .await
    }

    /// `subsystem`: sftp when granted; others run programs of the target's
    /// choosing, so they need exec.
    pub(super) async fn request_subsystem(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Error> {
        let allowed = match self.capabilities() {
            Some(c) if name == "sftp" => c.sftp,
            Some(c) => c.exec == Exec::Any,
            None => false,
        };
        if !allowed {
            let what = format!("the {name} subsystem");
            return self.refuse_with_line(channel, "subsystem", &what, session);
        }
        self.forward_request(channel, session, ChannelRequest::Subsystem(name.to_owned()))
            .await
    }

    /// `window-change`: recorded, and the latest size goes to the target.
    pub(super) fn window_changed(&self, channel: ChannelId, size: WindowSize) {
        if let Some(ch) = self.live.as_ref().and_then(|l| l.channels.get(&channel)) {
            ch.tap.resize(size.cols, size.rows);
            ch.window.send_replace(Some(size));
        }
    }

    /// `signal`: queued for the target without waiting.
    pub(super) fn deliver_signal(&self, channel: ChannelId, signal: Sig) {
        if let Some(ch) = self.live.as_ref().and_then(|l| l.channels.get(&channel))
            && ch.signals.try_send(signal).is_err()
        {
            tracing::warn!(channel = ?channel, "signal queue full; signal dropped");
        }
    }

    /// `auth-agent-req@openssh.com`, when the policy grants agent
    /// forwarding.
    pub(super) async fn forward_agent(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<bool, Error> {
        let route = self.route_name();
        if !self.capabilities().is_some_and(|c| c.agent) {
            self.audit_refused("agent-forwarding");
            // OpenSSH asks for agent forwarding without wanting a reply, so
            // it would never learn of the refusal; tell the user on stderr.
            let line = self.line_on(channel, &lines::agent_not_allowed(&route));
            session.extended_data(channel, 1, line.into_bytes())?;
            return Ok(false);
        }
        // Dialing failed: the channel task has told the client.
        let Some(up) = self.upstream_of(channel).await else {
            return Ok(false);
        };
        let Some(end) = self.client_end(session) else {
            return Ok(false);
        };
        // Waiting for the target's answer keeps the request ahead of the
        // shell or exec that follows it, so the target's session sees
        // SSH_AUTH_SOCK.
        let ok = proxy::forward_agent(end, &up).await;
        Event::AgentForwarded {
            session_id: self.id.clone(),
            route,
            cert_serial: up.cert_serial,
            ok,
        }
        .emit();
        Ok(ok)
    }

    /// `x11-req`, when the policy grants X11 forwarding.
    pub(super) async fn forward_x11(
        &mut self,
        channel: ChannelId,
        request: proxy::X11Request,
        session: &mut Session,
    ) -> Result<(), Error> {
        if !self.capabilities().is_some_and(|c| c.x11) {
            return self.refuse_request(channel, "x11-forwarding", session);
        }
        let known = self
            .live
            .as_ref()
            .is_some_and(|l| l.channels.contains_key(&channel));
        if !known {
            session.channel_failure(channel)?;
            return Ok(());
        }
        let Some(up) = self.upstream_of(channel).await else {
            return Ok(());
        };
        let Some(end) = self.client_end(session) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        let ok = proxy::forward_x11(end, &up, request).await;
        Event::X11Forwarded {
            session_id: self.id.clone(),
            route: self.route_name(),
            cert_serial: up.cert_serial,
            ok,
        }
        .emit();
        if ok {
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }
}
