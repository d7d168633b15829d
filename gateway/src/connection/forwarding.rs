//! Port forwards of a live session (`ssh -L`, `-W`, `-R`), each checked
//! against the session's current decision. The forwarding itself lives in
//! `forward.rs`.

use audit::Event;
use russh::server::{ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelOpenFailure};

use super::Connection;
use crate::forward::{self, ClientEnd, Kind};

impl Connection {
    /// The client end forwarded channels use; `None` before authentication.
    pub(super) fn client_end(&self, session: &Session) -> Option<ClientEnd> {
        let live = self.live.as_ref()?;
        Some(live.forwards.client_end(
            session.handle(),
            &self.id,
            &live.authorized.route.name,
            &self.closed,
            &self.span,
            &self.shared.metrics,
        ))
    }

    /// `direct-tcpip` (`ssh -L`, `-W`): allowed when the policy grants the
    /// destination as the client named it; the target is asked to connect
    /// to exactly that name.
    pub(super) async fn open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        (host, port): (&str, u32),
        (originator, originator_port): (&str, u32),
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) {
        let route = self.route_name();
        let allowed = match (self.capabilities(), forward::policy_port(port)) {
            (Some(caps), Some(p)) => caps.port_forward_local.destination_allowed(host, p),
            _ => false,
        };
        let end = self.client_end(session);
        match (self.current_dial_context(), end, &self.live) {
            (Some(ctx), Some(end), Some(live)) if allowed => live.forwards.open_local(
                end,
                ctx,
                channel,
                reply,
                host.to_owned(),
                port,
                (originator.to_owned(), originator_port),
            ),
            (_, end, _) => {
                if let Some(end) = end {
                    end.refused(
                        Kind::Local,
                        &forward::destination(host, port),
                        &forward::destination(originator, originator_port),
                        "not allowed by policy",
                    );
                }
                reply
                    .reject(ChannelOpenFailure::Other {
                        code: forward::PROHIBITED,
                        reason: forward::not_allowed_line(host, port, &route),
                    })
                    .await;
            }
        }
    }

    /// `tcpip-forward` (`ssh -R`): the target listens, when the policy
    /// grants the address. Returns whether it does; `port` becomes the port
    /// it listens on.
    pub(super) async fn listen_remote(
        &mut self,
        address: &str,
        port: &mut u32,
        session: &mut Session,
    ) -> bool {
        let route = self.route_name();
        let Some(end) = self.client_end(session) else {
            return false;
        };
        let requested = forward::destination(address, *port);
        // Destinations of a remote forward are where the target listens.
        let allowed = match (self.capabilities(), forward::policy_port(*port)) {
            (Some(caps), Some(p)) => caps.port_forward_remote.destination_allowed(address, p),
            _ => false,
        };
        let ctx = match self.current_dial_context() {
            Some(ctx) if allowed => ctx,
            // OpenSSH prints "Warning: remote port forwarding failed for
            // listen port N"; a global request's failure carries no text.
            _ => {
                end.refused(Kind::Remote, &requested, "", "not allowed by policy");
                return false;
            }
        };
        let Some(live) = self.live.as_mut() else {
            return false;
        };
        match live
            .forwards
            .listen_remote(&end, &ctx, address, *port)
            .await
        {
            Ok(assigned) => {
                *port = assigned;
                Event::ForwardListening {
                    session_id: self.id.clone(),
                    route,
                    kind: Kind::Remote.name(),
                    destination: forward::destination(address, assigned),
                    requested,
                }
                .emit();
                true
            }
            Err(reason) => {
                end.failed(Kind::Remote, &requested, "", &reason);
                false
            }
        }
    }

    /// `cancel-tcpip-forward`.
    pub(super) async fn cancel_remote(&mut self, address: &str, port: u32) -> bool {
        let route = self.route_name();
        let Some(live) = self.live.as_mut() else {
            return false;
        };
        let cancelled = live.forwards.cancel_remote(address, port).await;
        Event::ForwardCancelled {
            session_id: self.id.clone(),
            route,
            kind: Kind::Remote.name(),
            destination: forward::destination(address, port),
            ok: cancelled,
        }
        .emit();
        cancelled
    }
}
