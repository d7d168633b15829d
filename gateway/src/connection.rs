//! One client connection: authenticate, authorize, then proxy channels.
//!
//! Refusals before authentication (unregistered key, unknown route, denied
//! by policy) are shown to the user as one plain line. SSH has no message
//! field in a userauth failure, so the line travels as the instructions of
//! a keyboard-interactive round without prompts, which OpenSSH prints; the
//! attempt is then rejected. Route details are only revealed after the key
//! has proven an identity, so an anonymous client cannot enumerate routes.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use policy::{Decision, Identity, Request};
use russh::keys::{HashAlg, PublicKey};
use russh::server::{
    Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Response, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet, Pty, Sig};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::config::Route;
use crate::proxy::{self, ProxiedChannel, UpstreamChannel, WindowSize};
use crate::server::Shared;
use crate::upstream::DialContext;

/// How long a forwarded channel request may wait for the target's reply.
/// Requests are answered in order, so this only bounds a broken target.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Channels one client connection may have open at once. Each costs an
/// upstream connection, so this bounds what one client can make us dial.
const MAX_CHANNELS: usize = 64;

/// What an authenticated connection may do.
struct Authorized {
    identity: Arc<Identity>,
    route: Arc<Route>,
    login: String,
    decision: Decision,
}

/// The russh handler of one client connection.
pub struct Connection {
    shared: Arc<Shared>,
    /// The session id: in every log line, audit event and certificate.
    id: String,
    peer: SocketAddr,
    span: tracing::Span,
    /// Held until authentication succeeds, so unauthenticated connections
    /// are capped separately from authenticated ones.
    unauthenticated: Option<OwnedSemaphorePermit>,
    /// Cancelled when authentication succeeds; stops the auth timer.
    authenticated: CancellationToken,
    /// Cancelled when the client connection ends; stops its channels.
    closed: CancellationToken,
    /// The line to show in the keyboard-interactive round, once known.
    refusal: Option<String>,
    /// The refusal has been shown; every further attempt is rejected.
    refusal_shown: bool,
    /// The first unregistered key offered, to tell the user which key to
    /// register.
    unregistered_key: Option<String>,
    authorized: Option<Authorized>,
    channels: HashMap<ChannelId, ProxiedChannel>,
}

impl Connection {
    pub(crate) fn new(
        shared: Arc<Shared>,
        id: String,
        peer: SocketAddr,
        span: tracing::Span,
        unauthenticated: OwnedSemaphorePermit,
        authenticated: CancellationToken,
        closed: CancellationToken,
    ) -> Self {
        Connection {
            shared,
            id,
            peer,
            span,
            unauthenticated: Some(unauthenticated),
            authenticated,
            closed,
            refusal: None,
            refusal_shown: false,
            unregistered_key: None,
            authorized: None,
            channels: HashMap::new(),
        }
    }

    fn identity_for(&self, key: &PublicKey) -> Option<Arc<Identity>> {
        let fp = key.fingerprint(HashAlg::Sha256).to_string();
        self.shared.config().keys.get(&fp).cloned()
    }

    /// What authentication answers once a refusal is known: after the user
    /// has seen it, nothing more; before, only the keyboard-interactive
    /// round that shows it.
    fn refused(&self) -> Option<Auth> {
        if self.refusal_shown {
            Some(Self::final_rejection())
        } else if self.refusal.is_some() {
            Some(Self::keyboard_interactive_only())
        } else {
            None
        }
    }

    fn audit_denied(&self, user: &str, identity: &str, key_fingerprint: &str, reason: &str) {
        tracing::info!(
            target: "audit",
            event = "auth.denied",
            session_id = %self.id,
            peer = %self.peer,
            identity,
            key_fingerprint = %key_fingerprint,
            user = %user,
            reason = %reason,
        );
    }

    /// Decides whether `identity` may have what the user name asks for.
    fn authorize(&self, user: &str, identity: &Arc<Identity>) -> Result<Authorized, String> {
        let Some((login, route_name)) = split_user(user) else {
            return Err(no_route_line(user));
        };
        let config = self.shared.config();
        let Some(route) = config.routes.get(route_name) else {
            return Err(format!("gatehouse: unknown route {route_name:?}"));
        };
        let decision = policy::evaluate(
            &route.policy,
            &Request {
                identity,
                login,
                source: self.peer.ip(),
            },
        );
        if !decision.allowed {
            return Err(format!("gatehouse: access denied: {}", decision.reason));
        }
        Ok(Authorized {
            identity: Arc::clone(identity),
            route: Arc::clone(route),
            login: login.to_owned(),
            decision,
        })
    }

    /// The final rejection after the user has seen the line. It lists only
    /// `publickey`: OpenSSH treats an empty list as "try everything again"
    /// and would repeat the keyboard-interactive round (and the line)
    /// three times, while its keys are already exhausted.
    fn final_rejection() -> Auth {
        Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        }
    }

    fn keyboard_interactive_only() -> Auth {
        Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::KeyboardInteractive][..])),
            partial_success: false,
        }
    }

    fn dial_context(&self, auth: &Authorized) -> DialContext {
        DialContext {
            route: Arc::clone(&auth.route),
            login: auth.login.clone(),
            identity: Arc::clone(&auth.identity),
            session_id: self.id.clone(),
            extensions: auth.decision.capabilities.certificate_extensions(),
            cert_ttl: auth.decision.cert_ttl,
            ca: Arc::clone(&self.shared.ca),
        }
    }

    /// Forwards a channel request to the target and relays the target's
    /// answer. The client connection waits meanwhile; that keeps replies
    /// exact (russh tracks one pending reply per channel) and only happens
    /// for the requests that start a channel.
    async fn forward(
        &mut self,
        id: ChannelId,
        session: &mut Session,
        request: ChannelRequest,
    ) -> Result<(), Error> {
        let Some(ch) = self.channels.get(&id) else {
            session.channel_failure(id)?;
            return Ok(());
        };
        let ready = ch.upstream.clone();
        // None: dialing failed and the channel task has told the client.
        let Some(up) = ready.await else {
            return Ok(());
        };
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

    fn refuse_request(
        &self,
        id: ChannelId,
        what: &str,
        session: &mut Session,
    ) -> Result<(), Error> {
        let route = self.route_name();
        tracing::info!(
            target: "audit",
            event = "request.refused",
            session_id = %self.id,
            route = %route,
            request = what,
        );
        session.channel_failure(id)?;
        Ok(())
    }

    fn route_name(&self) -> String {
        self.authorized
            .as_ref()
            .map(|a| a.route.name.clone())
            .unwrap_or_default()
    }
}

/// A request that starts or shapes a session channel, forwarded as is.
enum ChannelRequest {
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

fn no_route_line(user: &str) -> String {
    format!("gatehouse: no route in user name {user:?}: connect as ssh LOGIN@ROUTE@GATEWAY")
}

/// Splits `LOGIN@ROUTE`. OpenSSH already split `LOGIN@ROUTE@GATEWAY` at
/// its last `@`; route names cannot contain `@`, so the last one here
/// separates the route.
fn split_user(user: &str) -> Option<(&str, &str)> {
    let (login, route) = user.rsplit_once('@')?;
    (!login.is_empty() && !route.is_empty()).then_some((login, route))
}

impl russh::server::Handler for Connection {
    type Error = Error;

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        if split_user(user).is_none() {
            // Nothing secret about a missing route: say so at once.
            self.refusal = Some(no_route_line(user));
            return Ok(Self::keyboard_interactive_only());
        }
        Ok(Auth::reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if let Some(answer) = self.refused() {
            return Ok(answer);
        }
        if self.identity_for(offer.public_key).is_some() {
            return Ok(Auth::Accept);
        }
        if self.unregistered_key.is_none() {
            self.unregistered_key = Some(offer.public_key.fingerprint(HashAlg::Sha256).to_string());
        }
        // Let the client try its other keys.
        Ok(Auth::reject())
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if let Some(answer) = self.refused() {
            return Ok(answer);
        }
        let fingerprint = key.public_key.fingerprint(HashAlg::Sha256).to_string();
        let Some(identity) = self.identity_for(key.public_key) else {
            return Ok(Auth::reject());
        };
        let _entered = self.span.enter();
        match self.authorize(user, &identity) {
            Ok(auth) => {
                self.span.record("identity", identity.label());
                self.span.record("route", auth.route.name.as_str());
                self.span.record("login", auth.login.as_str());
                tracing::info!(
                    target: "audit",
                    event = "auth.accepted",
                    session_id = %self.id,
                    peer = %self.peer,
                    identity = identity.label(),
                    identity_kind = "service_key",
                    key_fingerprint = %fingerprint,
                    route = %auth.route.name,
                    login = %auth.login,
                    rule = ?auth.decision.rule,
                    reason = %auth.decision.reason,
                );
                self.authorized = Some(auth);
                Ok(Auth::Accept)
            }
            Err(line) => {
                self.audit_denied(user, identity.label(), &fingerprint, &line);
                self.refusal = Some(line);
                Ok(Self::keyboard_interactive_only())
            }
        }
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        if response.is_some() || self.refusal_shown {
            // The user has seen the line; end authentication.
            self.refusal_shown = true;
            return Ok(Self::final_rejection());
        }
        let line = match (&self.refusal, &self.unregistered_key) {
            (Some(line), _) => line.clone(),
            (None, Some(fp)) => {
                self.audit_denied(user, "", fp, "key not registered");
                format!(
                    "gatehouse: access denied: key {fp} is not registered; ask an administrator to add it"
                )
            }
            (None, None) => {
                self.audit_denied(user, "", "", "no key offered");
                "gatehouse: access denied: offer a registered SSH key (passwords are not accepted)"
                    .to_owned()
            }
        };
        Ok(Auth::Partial {
            name: Cow::Borrowed("Gatehouse"),
            instructions: Cow::Owned(format!("{line}\n")),
            prompts: Cow::Borrowed(&[]),
        })
    }

    async fn auth_succeeded(&mut self, _session: &mut Session) -> Result<(), Self::Error> {
        self.unauthenticated = None;
        self.authenticated.cancel();
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(auth) = &self.authorized else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        if self.channels.len() >= MAX_CHANNELS {
            reply
                .reject(ChannelOpenFailure::Other {
                    code: 4,
                    reason: format!("gatehouse: at most {MAX_CHANNELS} channels per connection"),
                })
                .await;
            return Ok(());
        }
        let ctx = self.dial_context(auth);
        let id = channel.id();
        reply.accept().await;
        let proxied = proxy::start(
            ctx,
            channel,
            session.handle(),
            self.closed.clone(),
            self.span.clone(),
        );
        self.channels.insert(id, proxied);
        Ok(())
    }

    fn adjust_window(&mut self, _channel: ChannelId, _current: u32) -> u32 {
        // Shrink the window while any channel's input is congested; see
        // ProxiedChannel::input_congested. russh calls this each time it
        // tops up a window, so the full window comes back as soon as the
        // congestion clears.
        if self.channels.values().any(ProxiedChannel::input_congested) {
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
        self.channels.remove(&channel);
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let route = self.route_name();
        tracing::info!(
            target: "audit",
            event = "forward.refused",
            session_id = %self.id,
            route = %route,
            kind = "local",
            destination = %format!("{host_to_connect}:{port_to_connect}"),
        );
        reply
            .reject(ChannelOpenFailure::Other {
                code: 1,
                reason: format!("gatehouse: port forwarding is not allowed on route {route}"),
            })
            .await;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        tracing::info!(
            target: "audit",
            event = "forward.refused",
            session_id = %self.id,
            route = %self.route_name(),
            kind = "remote",
            destination = %format!("{address}:{port}"),
        );
        Ok(false)
    }

    async fn agent_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let route = self.route_name();
        tracing::info!(
            target: "audit",
            event = "request.refused",
            session_id = %self.id,
            route = %route,
            request = "agent-forwarding",
        );
        // OpenSSH asks for agent forwarding without wanting a reply, so it
        // would never learn of the refusal; tell the user on stderr.
        let line = format!("gatehouse: agent forwarding is not allowed on route {route}\r\n");
        session.extended_data(channel, 1, line.into_bytes())?;
        Ok(false)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_request(channel, "x11-forwarding", session)
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
        let allowed = self
            .authorized
            .as_ref()
            .is_some_and(|a| a.decision.capabilities.pty);
        if !allowed {
            return self.refuse_request(channel, "pty", session);
        }
        let request = ChannelRequest::Pty {
            term: term.to_owned(),
            size: WindowSize {
                cols: col_width,
                rows: row_height,
                pix_width,
                pix_height,
            },
            modes: modes.to_vec(),
        };
        self.forward(channel, session, request).await
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let request = ChannelRequest::Env {
            name: variable_name.to_owned(),
            value: variable_value.to_owned(),
        };
        self.forward(channel, session, request).await
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.forward(channel, session, ChannelRequest::Shell).await
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.forward(channel, session, ChannelRequest::Exec(data.to_vec()))
            .await
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.forward(channel, session, ChannelRequest::Subsystem(name.to_owned()))
            .await
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
        if let Some(ch) = self.channels.get(&channel) {
            ch.window.send_replace(Some(WindowSize {
                cols: col_width,
                rows: row_height,
                pix_width,
                pix_height,
            }));
        }
        Ok(())
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: Sig,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(ch) = self.channels.get(&channel)
            && ch.signals.try_send(signal).is_err()
        {
            tracing::warn!(channel = ?channel, "signal queue full; signal dropped");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::split_user;

    #[test]
    fn user_names_split_at_the_last_at() {
        assert_eq!(split_user("alice@prod-db"), Some(("alice", "prod-db")));
        assert_eq!(split_user("a@b@prod-db"), Some(("a@b", "prod-db")));
        assert_eq!(split_user("alice"), None);
        assert_eq!(split_user("alice@"), None);
        assert_eq!(split_user("@prod-db"), None);
    }
}
