//! One client connection, as the russh `Handler` sees it, in the phases of
//! a session:
//!
//! - `authenticate.rs`: registered keys, login bindings, the sign-in
//!   rounds with a device code or a sign-in link ([`Authenticating`] holds
//!   what only this phase needs);
//! - `authorize.rs`: login, route and policy → [`Authorized`];
//! - `channels.rs`: session channels and their requests on the live
//!   session ([`Live`]); each channel dials the target through
//!   `upstream::connect_target` and is pumped by `proxy.rs`;
//! - `forwarding.rs`: port forwards;
//! - `direct.rs`: `ssh cert@GATEWAY`, a direct-access certificate for the
//!   client's own key instead of a session (issue 16);
//! - `record.rs`: starting the recording of the session and its channels.
//!
//! Re-evaluation (`reevaluate.rs`) and the seal (`server.rs`, when the
//! connection ends) run outside the handler.
//!
//! The `Handler` methods here only route each callback to its phase, so
//! their safe defaults stay visible in one place.

mod authenticate;
mod authorize;
mod channels;
mod direct;
mod forwarding;
mod record;

pub(crate) use authenticate::{link_instructions, sign_in_instructions};
pub(crate) use authorize::split_user;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use audit::SessionId;
use russh::server::{
    Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Response, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, Pty, Sig};
use tokio::sync::watch;
use tracing::Instrument;

use crate::admission::Slot;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::forward;
use crate::proxy::{self, ProxiedChannel};
use crate::recording::SessionSlot;
use crate::registry::{Admitted, LiveSession};
use crate::shared::Shared;
use telemetry::labels::{AuthMethod, AuthResult};

use authenticate::Authenticating;
use authorize::Authorized;
use direct::{CertChannelRequest, Issuing};

/// The russh handler of one client connection.
pub struct Connection {
    shared: Arc<Shared>,
    /// The session id: in every log line, audit event and certificate.
    id: SessionId,
    peer: SocketAddr,
    /// The route of a user name without `@ROUTE` (see
    /// [`crate::Incoming::route_hint`]).
    route_hint: Option<String>,
    span: tracing::Span,
    /// Cancelled when the client connection ends; stops its channels.
    closed: CancellationToken,
    /// The connection's recording, started with its first recorded
    /// channel and sealed when the connection ends.
    recording: SessionSlot,
    /// Ends every channel of the session with the line it carries.
    ender: watch::Sender<Option<String>>,
    /// Set once the state database holds this session as live.
    opened: Arc<AtomicBool>,
    /// Until authentication succeeds; then `None`.
    pre: Option<Authenticating>,
    /// After authentication succeeds.
    live: Option<Live>,
    /// After authentication as `cert` succeeds, instead of `live`.
    issuing: Option<Issuing>,
}

/// An authenticated connection: the live session and its channels.
struct Live {
    /// Holds `gatehouse_ssh_sessions_live` up while the session lives.
    _counted: telemetry::ActiveGuard,
    /// What the connection was authorized for.
    authorized: Authorized,
    /// The session in the live registry: its current decision is what new
    /// channels follow.
    session: Arc<LiveSession>,
    /// The proxied session channels.
    channels: HashMap<ChannelId, ProxiedChannel>,
    /// Port, agent and X11 forwarding: the remote-forward connection and
    /// the limit on forwarded channels.
    forwards: forward::Forwards,
}

/// How a connection's handler and its accept-loop task talk about the
/// connection's life.
pub(crate) struct Lifecycle {
    /// Cancelled when authentication succeeds; stops the auth timer.
    pub authenticated: CancellationToken,
    /// The unauthenticated connection's deadline.
    pub auth_deadline: watch::Sender<tokio::time::Instant>,
    /// Cancelled when the client connection ends.
    pub closed: CancellationToken,
    /// The connection's recording, sealed by the accept-loop task.
    pub recording: SessionSlot,
    /// Set while the state database holds (or is being asked to hold) the
    /// session as live, which starts before russh tells the client it is
    /// in: the accept-loop task closes it there whenever this is set, even
    /// if the client left or timed out in between.
    pub opened: Arc<AtomicBool>,
}

impl Connection {
    pub(crate) fn new(
        shared: Arc<Shared>,
        id: SessionId,
        peer: SocketAddr,
        route_hint: Option<String>,
        span: tracing::Span,
        unauthenticated: Slot,
        lifecycle: Lifecycle,
    ) -> Self {
        let Lifecycle {
            authenticated,
            auth_deadline,
            closed,
            recording,
            opened,
        } = lifecycle;
        Connection {
            shared,
            id,
            peer,
            route_hint,
            span,
            closed,
            recording,
            ender: watch::Sender::new(None),
            opened,
            pre: Some(Authenticating::new(
                unauthenticated,
                authenticated,
                auth_deadline,
            )),
            live: None,
            issuing: None,
        }
    }

    /// An authentication request arrived, so the key exchange is over: the
    /// connection is past `handshake_timeout` and, if it leaves without
    /// authenticating, failed authentication rather than never tried.
    fn key_exchange_done(&self) {
        if let Some(pre) = &self.pre {
            pre.unauthenticated.state.authenticating();
        }
    }

    /// Counts an authentication attempt by `method` and what it is
    /// answered, and passes the answer on.
    fn counted(&self, method: AuthMethod, answer: Auth) -> Auth {
        let result = match &answer {
            Auth::Accept => AuthResult::Accepted,
            Auth::Reject {
                partial_success: true,
                ..
            } => AuthResult::Partial,
            Auth::Partial { .. } => AuthResult::Prompted,
            Auth::Reject { .. } | Auth::UnsupportedMethod => AuthResult::Rejected,
        };
        self.shared.metrics().auth_attempt(method, result);
        answer
    }

    /// A span for one authentication attempt, under the connection's:
    /// the method, and the answer once given (never the key or a token).
    fn authenticate_span(&self, method: &'static str) -> tracing::Span {
        tracing::info_span!(
            parent: &self.span,
            "authenticate",
            method,
            result = tracing::field::Empty,
        )
    }

    /// The route's name once authenticated, for lines and audit events.
    fn route_name(&self) -> String {
        self.live
            .as_ref()
            .map(|l| l.authorized.route.name.clone())
            .unwrap_or_default()
    }

    /// Authentication succeeded: the pre-login state goes and the session
    /// joins the live registry (the state database has it already:
    /// [`Connection::hold_before_accept`]).
    async fn go_live(&mut self, session: &mut Session) {
        let Some(pre) = self.pre.take() else {
            return;
        };
        pre.authenticated.cancel();
        pre.unauthenticated.authenticated();
        drop(pre.unauthenticated);
        self.issuing = pre.issuing;
        let Some(authorized) = pre.authorized else {
            return;
        };
        let live = Arc::new(LiveSession::new(
            Admitted {
                id: self.id.clone(),
                peer: self.peer,
                route: authorized.route.name.clone(),
                login: authorized.login.clone(),
                key_fingerprint: authorized.key_fingerprint.clone(),
                identity: Arc::clone(&authorized.identity),
                decision: authorized.decision.clone(),
            },
            self.ender.clone(),
            session.handle(),
        ));
        self.shared.sessions().insert(Arc::clone(&live));
        self.live = Some(Live {
            _counted: self.shared.metrics().session_live(),
            authorized,
            session: live,
            channels: HashMap::new(),
            forwards: forward::Forwards::default(),
        });
    }
}

impl Connection {
    /// The user name as routed: `LOGIN@ROUTE` as the client sent it, or
    /// `LOGIN` with the route its `CONNECT` named.
    fn with_route<'u>(&self, user: &'u str) -> std::borrow::Cow<'u, str> {
        match &self.route_hint {
            Some(route) if !user.contains('@') => format!("{user}@{route}").into(),
            _ => user.into(),
        }
    }
}

impl russh::server::Handler for Connection {
    type Error = Error;

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        self.key_exchange_done();
        let user = self.with_route(user);
        let answer = self.authenticate_none(&user);
        Ok(self.counted(AuthMethod::None, answer))
    }

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        self.key_exchange_done();
        let answer = self.authenticate_offer(&offer);
        Ok(self.counted(AuthMethod::PublickeyQuery, answer))
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        self.key_exchange_done();
        let user = self.with_route(user);
        let span = self.authenticate_span("publickey");
        let answer = async {
            let answer = self.authenticate_key(&user, &key).await;
            self.hold_before_accept(answer, false).await
        }
        .instrument(span.clone())
        .await;
        span.record("result", outcome(&answer));
        Ok(self.counted(AuthMethod::Publickey, answer))
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        self.key_exchange_done();
        let user = self.with_route(user);
        let span = self.authenticate_span("keyboard-interactive");
        // Only whether there is an answer: the response itself is not Sync,
        // so the block must not borrow it.
        let answered = response.is_some();
        let answer = async {
            let answer = self.authenticate_interactive(&user, answered).await;
            self.hold_before_accept(answer, true).await
        }
        .instrument(span.clone())
        .await;
        span.record("result", outcome(&answer));
        Ok(self.counted(AuthMethod::KeyboardInteractive, answer))
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        self.go_live(session).await;
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.issuing.is_some() {
            self.open_certificate_channel(channel, reply).await;
            return Ok(());
        }
        self.open_session_channel(channel, reply, session).await
    }

    fn adjust_window(&mut self, _channel: ChannelId, _current: u32) -> u32 {
        // Shrink the window while any channel's input is congested; see
        // ProxiedChannel::input_congested. russh calls this each time it
        // tops up a window, so the full window comes back as soon as the
        // congestion clears.
        let congested = self
            .live
            .as_ref()
            .is_some_and(|l| l.channels.values().any(ProxiedChannel::input_congested));
        if congested {
            proxy::CONGESTED_WINDOW
        } else {
            self.shared.window_size()
        }
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(live) = self.live.as_mut() {
            live.channels.remove(&channel);
        }
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.open_direct_tcpip(
            channel,
            (host_to_connect, port_to_connect),
            (originator_address, originator_port),
            reply,
            session,
        )
        .await;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(self.listen_remote(address, port, session).await)
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(self.cancel_remote(address, port).await)
    }

    async fn agent_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        if self.issuing.is_some() {
            return Ok(false);
        }
        self.forward_agent(channel, session).await
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        single_connection: bool,
        x11_auth_protocol: &str,
        x11_auth_cookie: &str,
        x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.issuing.is_some() {
            return self.certificate_request(channel, CertChannelRequest::Other, session);
        }
        let request = proxy::X11Request {
            single_connection,
            protocol: x11_auth_protocol.to_owned(),
            cookie: x11_auth_cookie.to_owned(),
            screen: x11_screen_number,
        };
        self.forward_x11(channel, request, session).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.issuing.is_some() {
            return self.certificate_request(channel, CertChannelRequest::Pty, session);
        }
        let size = proxy::WindowSize {
            cols: col_width,
            rows: row_height,
            pix_width,
            pix_height,
        };
        self.request_pty(channel, term, size, modes, session).await
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.issuing.is_some() {
            return self.certificate_request(channel, CertChannelRequest::Env, session);
        }
        let request = channels::ChannelRequest::Env {
            name: variable_name.to_owned(),
            value: variable_value.to_owned(),
        };
        self.forward_request(channel, session, request).await
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.issuing.is_some() {
            return self.certificate_request(channel, CertChannelRequest::Start, session);
        }
        self.request_shell(channel, session).await
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.issuing.is_some() {
            return self.certificate_request(channel, CertChannelRequest::Start, session);
        }
        self.request_exec(channel, data, session).await
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.issuing.is_some() {
            return self.certificate_request(channel, CertChannelRequest::Other, session);
        }
        self.request_subsystem(channel, name, session).await
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.window_changed(
            channel,
            proxy::WindowSize {
                cols: col_width,
                rows: row_height,
                pix_width,
                pix_height,
            },
        );
        Ok(())
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: Sig,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.deliver_signal(channel, signal);
        Ok(())
    }
}

/// An authentication answer as a span attribute.
fn outcome(answer: &Auth) -> &'static str {
    match answer {
        Auth::Accept => "accept",
        Auth::Reject {
            partial_success: true,
            ..
        } => "partial",
        Auth::Reject { .. } => "reject",
        Auth::Partial { .. } => "prompt",
        _ => "other",
    }
}
