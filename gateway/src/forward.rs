//! Port, agent and X11 forwarding, when the route's policy grants them.
//!
//! - **Local** (`ssh -L`, `ssh -W`, direct-tcpip): each forwarded channel
//!   gets its own upstream connection, like a session channel, and a
//!   `direct-tcpip` channel there to exactly the host the client named (the
//!   policy checks that name; resolving it would be the target's job, and
//!   checking one name while dialing another would be a bypass). One
//!   connection per channel keeps a stalled forward from stalling its
//!   siblings (see `proxy`).
//! - **Remote** (`ssh -R`, tcpip-forward): the target must keep a listener
//!   open for the client's whole connection, so remote forwards share one
//!   upstream connection per client connection, dialed on the first
//!   request. The `forwarded-tcpip` channels the target opens for it are
//!   passed to the client as `forwarded-tcpip` channels.
//! - **Agent** (`ssh -A`) and **X11**: the request is forwarded on the
//!   session channel's own upstream connection, and the `auth-agent` or
//!   `x11` channels the target then opens there are passed to the client.
//!
//! What the target may open back is decided per upstream connection by its
//! [`Inbound`]: nothing until a granted request enables a kind. Every
//! forwarded channel is piped by `pump::pipe` (bounded memory, no
//! deadlock under bidirectional load) and audited (`forward.opened`,
//! `forward.closed`, with `kind` `local`, `remote`, `agent` or `x11`),
//! never recorded.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit::{Event, SessionId};

use russh::{Channel, ChannelOpenFailure, Disconnect, client, server};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::upstream::{DialContext, TargetOpened, Upstream, connect_target};
use crate::{lines, lock};
use telemetry::labels::{ChannelKind, Direction};

/// Forwarded channels (of every kind) one client connection may have open
/// at once. Local forwards cost an upstream connection each, so this bounds
/// what one client can make us dial.
pub(crate) const MAX_FORWARDS: usize = 64;

/// How long a forwarded global or channel request may wait for the
/// target's reply.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// SSH_OPEN_CONNECT_FAILED (RFC 4254 §5.1).
const CONNECT_FAILED: u32 = 2;
/// SSH_OPEN_ADMINISTRATIVELY_PROHIBITED.
pub(crate) const PROHIBITED: u32 = 1;
/// SSH_OPEN_RESOURCE_SHORTAGE.
const RESOURCE_SHORTAGE: u32 = 4;

/// What a forwarded channel is, as named in audit events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `ssh -L` / `-W`: the client opens, the target connects.
    Local,
    /// `ssh -R`: the target accepts, the client connects.
    Remote,
    /// An agent channel the target opened.
    Agent,
    /// An X11 channel the target opened.
    X11,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Local => "local",
            Kind::Remote => "remote",
            Kind::Agent => "agent",
            Kind::X11 => "x11",
        }
    }
}

/// The client connection, as the forwarding tasks need it: where to open
/// channels, what to name in audit events, when to stop.
#[derive(Clone)]
pub(crate) struct ClientEnd {
    /// Opens channels to the client.
    pub handle: server::Handle,
    /// The client connection's session id.
    pub session_id: SessionId,
    /// The route's name.
    pub route: String,
    /// Cancelled when the client connection ends.
    pub closed: CancellationToken,
    /// The connection's span, for spawned tasks.
    pub span: tracing::Span,
    /// Places for forwarded channels, shared by the whole connection.
    slots: Arc<Semaphore>,
    /// `gatehouse_proxied_bytes_total` of forwards, to the target and to
    /// the client.
    bytes: [telemetry::Counter; 2],
}

impl ClientEnd {
    fn slot(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.slots).try_acquire_owned().ok()
    }

    /// Audits a forward the gateway refused.
    pub fn refused(&self, kind: Kind, destination: &str, originator: &str, reason: &str) {
        Event::ForwardRefused {
            session_id: self.session_id.clone(),
            route: self.route.clone(),
            kind: kind.name(),
            destination: destination.to_owned(),
            originator: originator.to_owned(),
            reason: reason.to_owned(),
        }
        .emit();
    }

    /// Audits a forward that was allowed but could not be set up.
    pub fn failed(&self, kind: Kind, destination: &str, originator: &str, reason: &str) {
        Event::ForwardFailed {
            session_id: self.session_id.clone(),
            route: self.route.clone(),
            kind: kind.name(),
            destination: destination.to_owned(),
            originator: originator.to_owned(),
            reason: reason.to_owned(),
        }
        .emit();
    }

    /// Pipes an open forwarded channel until either side closes it, with
    /// `forward.opened` and `forward.closed` around it.
    async fn pipe(
        &self,
        kind: Kind,
        destination: &str,
        originator: &str,
        client: Channel<server::Msg>,
        target: Channel<client::Msg>,
    ) {
        Event::ForwardOpened {
            session_id: self.session_id.clone(),
            route: self.route.clone(),
            kind: kind.name(),
            destination: destination.to_owned(),
            originator: originator.to_owned(),
        }
        .emit();
        let started = Instant::now();
        let piped = crate::pump::pipe(client, target, self.closed.clone(), &self.bytes).await;
        Event::ForwardClosed {
            session_id: self.session_id.clone(),
            route: self.route.clone(),
            kind: kind.name(),
            destination: destination.to_owned(),
            originator: originator.to_owned(),
            bytes_to_target: piped.to_target,
            bytes_to_client: piped.to_client,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ended_by: piped.ended_by,
        }
        .emit();
    }
}

/// `host:port`, with IPv6 addresses in brackets.
pub(crate) fn destination(host: &str, port: u32) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A connection's forwarding state, kept by its handler.
pub(crate) struct Forwards {
    /// Places for forwarded channels; see [`MAX_FORWARDS`].
    slots: Arc<Semaphore>,
    /// The upstream connection that holds this client's remote forwards,
    /// once the first one was granted.
    remote: Option<(Arc<Upstream>, Arc<Inbound>)>,
}

impl Default for Forwards {
    fn default() -> Self {
        Forwards {
            slots: Arc::new(Semaphore::new(MAX_FORWARDS)),
            remote: None,
        }
    }
}

impl Forwards {
    /// The client end for the forwards of a connection.
    pub(crate) fn client_end(
        &self,
        handle: server::Handle,
        session_id: &SessionId,
        route: &str,
        closed: &CancellationToken,
        span: &tracing::Span,
        metrics: &telemetry::Metrics,
    ) -> ClientEnd {
        ClientEnd {
            bytes: [
                metrics.bytes(ChannelKind::Forward, Direction::ToTarget),
                metrics.bytes(ChannelKind::Forward, Direction::ToClient),
            ],
            handle,
            session_id: session_id.clone(),
            route: route.to_owned(),
            closed: closed.clone(),
            span: span.clone(),
            slots: Arc::clone(&self.slots),
        }
    }

    /// Serves an allowed direct-tcpip channel: dials the target in the
    /// background, opens `direct-tcpip` there to `host:port`, answers the
    /// client's open with the outcome and pipes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open_local(
        &self,
        end: ClientEnd,
        ctx: DialContext,
        channel: Channel<server::Msg>,
        reply: server::ChannelOpenHandle,
        host: String,
        port: u32,
        originator: (String, u32),
    ) {
        let span = tracing::info_span!(parent: &end.span, "channel", kind = Kind::Local.name());
        let task = async move {
            let dest = destination(&host, port);
            let from = destination(&originator.0, originator.1);
            let Some(_slot) = end.slot() else {
                end.refused(Kind::Local, &dest, &from, "too many forwarded channels");
                reply
                    .reject(ChannelOpenFailure::Other {
                        code: RESOURCE_SHORTAGE,
                        reason: lines::too_many_forwards(MAX_FORWARDS),
                    })
                    .await;
                return;
            };
            let dialed = tokio::select! {
                dialed = dial_local(&ctx, &host, port, &originator) => dialed,
                () = end.closed.cancelled() => return,
            };
            let (upstream, target) = match dialed {
                Ok(x) => x,
                Err(Refusal { line, detail }) => {
                    end.failed(Kind::Local, &dest, &from, &detail);
                    reply
                        .reject(ChannelOpenFailure::Other {
                            code: CONNECT_FAILED,
                            reason: line,
                        })
                        .await;
                    return;
                }
            };
            reply.accept().await;
            end.pipe(Kind::Local, &dest, &from, channel, target).await;
            let _ = upstream
                .handle
                .disconnect(Disconnect::ByApplication, "forward closed", "en")
                .await;
        };
        tokio::spawn(task.instrument(span));
    }

    /// Asks the target to listen for a remote forward on this client's
    /// remote-forward connection (dialed now if there is none yet), and
    /// returns the port it listens on.
    pub async fn listen_remote(
        &mut self,
        end: &ClientEnd,
        ctx: &DialContext,
        address: &str,
        port: u32,
    ) -> Result<u32, String> {
        let (upstream, inbound) = match &self.remote {
            Some((up, inbound)) if !up.handle.is_closed() => (Arc::clone(up), Arc::clone(inbound)),
            _ => {
                let inbound = Arc::new(Inbound::default());
                let up = match connect_target(ctx, Arc::clone(&inbound) as Arc<dyn TargetOpened>)
                    .await
                {
                    Ok(up) => Arc::new(up),
                    Err(e) => {
                        e.audit_target(&ctx.session_id, &ctx.route.name, &ctx.login);
                        return Err(e.to_string());
                    }
                };
                inbound.attach(end.clone());
                // The listeners live as long as the client connection.
                let closing = Arc::clone(&up);
                let closed = end.closed.clone();
                tokio::spawn(async move {
                    closed.cancelled().await;
                    let _ = closing
                        .handle
                        .disconnect(Disconnect::ByApplication, "client gone", "en")
                        .await;
                });
                self.remote = Some((Arc::clone(&up), Arc::clone(&inbound)));
                (up, inbound)
            }
        };
        let asked = tokio::time::timeout(
            REQUEST_TIMEOUT,
            upstream.handle.tcpip_forward(address, port),
        )
        .await;
        let assigned = match asked {
            Ok(Ok(assigned)) => {
                if port == 0 {
                    assigned
                } else {
                    port
                }
            }
            Ok(Err(e)) => return Err(format!("target refused: {e}")),
            Err(_) => return Err("target did not answer".to_owned()),
        };
        inbound.add_listener(address, assigned);
        Ok(assigned)
    }

    /// Cancels a remote forward this client set up. False if there is no
    /// such forward or the target refused.
    pub async fn cancel_remote(&mut self, address: &str, port: u32) -> bool {
        let Some((upstream, inbound)) = &self.remote else {
            return false;
        };
        if !inbound.remove_listener(address, port) {
            return false;
        }
        matches!(
            tokio::time::timeout(
                REQUEST_TIMEOUT,
                upstream.handle.cancel_tcpip_forward(address, port)
            )
            .await,
            Ok(Ok(()))
        )
    }
}

/// Why a forward could not be set up: the line for the client, and the
/// detail for the audit log.
struct Refusal {
    line: String,
    detail: String,
}

async fn dial_local(
    ctx: &DialContext,
    host: &str,
    port: u32,
    originator: &(String, u32),
) -> Result<(Upstream, Channel<client::Msg>), Refusal> {
    let upstream = connect_target(ctx, Arc::new(crate::upstream::RefuseAll))
        .await
        .map_err(|e| {
            e.audit_target(&ctx.session_id, &ctx.route.name, &ctx.login);
            Refusal {
                line: e.user_line(),
                detail: e.to_string(),
            }
        })?;
    let opened = tokio::time::timeout(
        REQUEST_TIMEOUT,
        upstream
            .handle
            .channel_open_direct_tcpip(host, port, originator.0.as_str(), originator.1),
    )
    .await;
    match opened {
        Ok(Ok(channel)) => Ok((upstream, channel)),
        Ok(Err(e)) => Err(Refusal {
            line: lines::forward_unreachable(&ctx.route.name, &destination(host, port)),
            detail: e.to_string(),
        }),
        Err(_) => Err(Refusal {
            line: lines::forward_no_answer(&ctx.route.name, &destination(host, port)),
            detail: "no answer to the direct-tcpip open".to_owned(),
        }),
    }
}

/// Which kind of target-opened channel to allow.
pub(crate) enum Enable {
    Agent,
    X11,
}

/// What the target may open on one upstream connection, and where it goes.
/// Empty by default: the target may open nothing.
#[derive(Default)]
pub(crate) struct Inbound {
    state: Mutex<InboundState>,
}

#[derive(Default)]
struct InboundState {
    /// Set with the first granted request on this connection.
    client: Option<ClientEnd>,
    /// Agent forwarding was granted and requested on this connection.
    agent: bool,
    /// X11 forwarding was granted and requested on this connection.
    x11: bool,
    /// The remote forwards the target listens for: (address, port) as the
    /// target names them in `forwarded-tcpip`.
    listeners: Vec<(String, u32)>,
}

impl Inbound {
    fn attach(&self, end: ClientEnd) {
        let mut state = lock(&self.state);
        if state.client.is_none() {
            state.client = Some(end);
        }
    }

    pub(crate) fn enable(&self, end: ClientEnd, kind: Enable) {
        let mut state = lock(&self.state);
        if state.client.is_none() {
            state.client = Some(end);
        }
        match kind {
            Enable::Agent => state.agent = true,
            Enable::X11 => state.x11 = true,
        }
    }

    fn add_listener(&self, address: &str, port: u32) {
        let mut state = lock(&self.state);
        if !state
            .listeners
            .iter()
            .any(|(a, p)| a == address && *p == port)
        {
            state.listeners.push((address.to_owned(), port));
        }
    }

    fn remove_listener(&self, address: &str, port: u32) -> bool {
        let mut state = lock(&self.state);
        let before = state.listeners.len();
        state
            .listeners
            .retain(|(a, p)| !(a == address && *p == port));
        state.listeners.len() != before
    }

    /// The client end, if the target may open a channel of this kind.
    fn client_for(&self, allowed: impl FnOnce(&InboundState) -> bool) -> Option<ClientEnd> {
        let state = lock(&self.state);
        if allowed(&state) {
            state.client.clone()
        } else {
            None
        }
    }
}

impl TargetOpened for Inbound {
    /// A connection to one of our remote forwards' listeners on the target:
    /// opens `forwarded-tcpip` to the client and pipes.
    fn forwarded_tcpip(
        &self,
        channel: Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        address: &str,
        port: u32,
        originator_address: &str,
        originator_port: u32,
    ) {
        let dest = destination(address, port);
        let originator = destination(originator_address, originator_port);
        let Some(end) = self.client_for(|s| {
            s.listeners
                .iter()
                .any(|(a, p)| a.as_str() == address && *p == port)
        }) else {
            tracing::warn!(destination = %dest, "target opened forwarded-tcpip for no forward of ours; refused");
            drop(reply);
            return;
        };
        let address = address.to_owned();
        let orig_host = originator_address.to_owned();
        let span = tracing::info_span!(parent: &end.span, "channel", kind = Kind::Remote.name());
        let task = async move {
            let Some(_slot) = end.slot() else {
                end.refused(
                    Kind::Remote,
                    &dest,
                    &originator,
                    "too many forwarded channels",
                );
                reply.reject(ChannelOpenFailure::ResourceShortage).await;
                return;
            };
            let opened = end
                .handle
                .channel_open_forwarded_tcpip(address, port, orig_host, originator_port)
                .await;
            match opened {
                Ok(client) => {
                    reply.accept().await;
                    end.pipe(Kind::Remote, &dest, &originator, client, channel)
                        .await;
                }
                Err(e) => {
                    end.failed(
                        Kind::Remote,
                        &dest,
                        &originator,
                        &format!("client refused: {e}"),
                    );
                    reply.reject(ChannelOpenFailure::ConnectFailed).await;
                }
            }
        };
        tokio::spawn(task.instrument(span));
    }

    /// An agent channel from the target: opens one to the client and pipes.
    fn agent(&self, channel: Channel<client::Msg>, reply: client::ChannelOpenHandle) {
        let Some(end) = self.client_for(|s| s.agent) else {
            tracing::warn!("target opened an agent channel without agent forwarding; refused");
            drop(reply);
            return;
        };
        let span = tracing::info_span!(parent: &end.span, "channel", kind = Kind::Agent.name());
        let task = async move {
            let Some(_slot) = end.slot() else {
                end.refused(
                    Kind::Agent,
                    "agent",
                    "target",
                    "too many forwarded channels",
                );
                reply.reject(ChannelOpenFailure::ResourceShortage).await;
                return;
            };
            match end.handle.channel_open_agent().await {
                Ok(client) => {
                    reply.accept().await;
                    end.pipe(Kind::Agent, "agent", "target", client, channel)
                        .await;
                }
                Err(e) => {
                    end.failed(
                        Kind::Agent,
                        "agent",
                        "target",
                        &format!("client refused: {e}"),
                    );
                    reply.reject(ChannelOpenFailure::ConnectFailed).await;
                }
            }
        };
        tokio::spawn(task.instrument(span));
    }

    /// An X11 channel from the target: opens one to the client and pipes.
    fn x11(
        &self,
        channel: Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        originator_address: &str,
        originator_port: u32,
    ) {
        let Some(end) = self.client_for(|s| s.x11) else {
            tracing::warn!("target opened an X11 channel without X11 forwarding; refused");
            drop(reply);
            return;
        };
        let originator = destination(originator_address, originator_port);
        let address = originator_address.to_owned();
        let span = tracing::info_span!(parent: &end.span, "channel", kind = Kind::X11.name());
        let task = async move {
            let Some(_slot) = end.slot() else {
                end.refused(Kind::X11, "x11", &originator, "too many forwarded channels");
                reply.reject(ChannelOpenFailure::ResourceShortage).await;
                return;
            };
            match end.handle.channel_open_x11(address, originator_port).await {
                Ok(client) => {
                    reply.accept().await;
                    end.pipe(Kind::X11, "x11", &originator, client, channel)
                        .await;
                }
                Err(e) => {
                    end.failed(
                        Kind::X11,
                        "x11",
                        &originator,
                        &format!("client refused: {e}"),
                    );
                    reply.reject(ChannelOpenFailure::ConnectFailed).await;
                }
            }
        };
        tokio::spawn(task.instrument(span));
    }
}

/// The port of a forward request as the policy takes it; `None` when it is
/// not a TCP port.
pub(crate) fn policy_port(port: u32) -> Option<u16> {
    u16::try_from(port).ok()
}

/// The line a client sees when a forward is not allowed.
pub(crate) fn not_allowed_line(host: &str, port: u32, route: &str) -> String {
    lines::forward_not_allowed(&destination(host, port), route)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_bracket_ipv6() {
        assert_eq!(destination("db", 5432), "db:5432");
        assert_eq!(destination("::1", 22), "[::1]:22");
        assert_eq!(destination("[::1]", 22), "[::1]:22");
    }

    #[test]
    fn ports_beyond_u16_are_not_ports() {
        assert_eq!(policy_port(22), Some(22));
        assert_eq!(policy_port(70000), None);
    }
}
