//! Upgraded connections (WebSockets) through the proxy: the protocol
//! switch is passed through to an HTTP/1.1 upstream, then bytes are
//! copied both ways until either side closes, nothing moves for
//! `idle_timeout`, or the proxy ends it.
//!
//! Every open one is registered under its browser session. A watcher asks
//! the state database once a second which of those sessions are still
//! live, and closes the connections of those that are not (signed out,
//! revoked, expired): within 2 s, where a request-time check alone would
//! let a WebSocket live on for hours (Pomerium #1327). A configuration
//! reload re-checks each against its route's new policy.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use policy::lang::{HttpRequest, Identity, Timestamp, evaluate_http};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use crate::Proxy;

/// How often the sessions behind open connections are checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What a reload re-checks an open connection against.
pub(crate) struct Facts {
    pub(crate) identity: Arc<Identity>,
    pub(crate) source: IpAddr,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
}

/// One open upgraded connection.
struct Open {
    session_hash: String,
    route: String,
    cancel: CancellationToken,
    /// Why the proxy ended it, set once before cancelling.
    cause: Arc<OnceLock<&'static str>>,
    facts: Facts,
}

/// Every open upgraded connection of this process.
#[derive(Default)]
pub(crate) struct Registry {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Open>>,
}

/// Removes its entry when the connection ends.
struct Entry {
    registry: Weak<Registry>,
    id: u64,
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(r) = self.registry.upgrade() {
            r.open
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&self.id);
        }
    }
}

impl Registry {
    fn add(self: &Arc<Self>, open: Open) -> Entry {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, open);
        Entry {
            registry: Arc::downgrade(self),
            id,
        }
    }

    fn end(open: &Open, cause: &'static str) {
        let _ = open.cause.set(cause);
        open.cancel.cancel();
    }

    /// Ends the connections whose session is not among `live`.
    fn end_dead(&self, live: &HashSet<String>) {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        for o in open.values() {
            if !live.contains(&o.session_hash) {
                Self::end(o, "signed_out");
            }
        }
    }

    /// Re-checks every connection against the routes now in force; one
    /// whose route is gone or whose policy now refuses it is ended.
    pub(crate) fn recheck(&self, proxy: &Proxy) {
        let live = proxy.live();
        let now = Timestamp::try_from(SystemTime::now()).unwrap_or(Timestamp::UNIX_EPOCH);
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        for o in open.values() {
            let allowed = live.route_named(&o.route).is_some_and(|route| {
                let headers: Vec<(&str, &str)> = o
                    .facts
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                evaluate_http(
                    &route.policy,
                    &HttpRequest {
                        identity: &o.facts.identity,
                        source: o.facts.source,
                        now,
                        method: &o.facts.method,
                        path: &o.facts.path,
                        headers: &headers,
                    },
                )
                .allowed
            });
            if !allowed {
                Self::end(o, "denied");
            }
        }
    }

    fn sessions(&self) -> Vec<String> {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let set: HashSet<&String> = open.values().map(|o| &o.session_hash).collect();
        set.into_iter().cloned().collect()
    }
}

/// Checks the sessions behind open connections every second until `stop`.
pub(crate) async fn watch(proxy: Weak<Proxy>, stop: CancellationToken) {
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
        let Some(proxy) = proxy.upgrade() else {
            return;
        };
        let sessions = proxy.upgrades.sessions();
        if sessions.is_empty() {
            continue;
        }
        match proxy
            .store
            .web_sessions_live(&sessions, SystemTime::now())
            .await
        {
            Ok(live) => {
                failing = false;
                proxy
                    .upgrades
                    .end_dead(&live.into_iter().collect::<HashSet<_>>());
            }
            // Keep them open while the database is away, and say so once.
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "proxy: cannot check the sessions of open WebSockets");
            }
            Err(_) => {}
        }
    }
}

/// Who is on an upgraded connection, for the registry and the audit event.
pub(crate) struct Holder {
    pub(crate) session_hash: String,
    pub(crate) identity_label: String,
    pub(crate) route: String,
    pub(crate) facts: Facts,
}

/// Copies bytes between the client and the upstream until one closes,
/// `idle` passes without a byte, or the proxy ends it.
pub(crate) async fn pump(
    registry: Arc<Registry>,
    holder: Holder,
    client: Upgraded,
    upstream: Upgraded,
    idle: Duration,
) {
    let started = Instant::now();
    let cancel = CancellationToken::new();
    let cause = Arc::new(OnceLock::new());
    let _entry = registry.add(Open {
        session_hash: holder.session_hash.clone(),
        route: holder.route.clone(),
        cancel: cancel.clone(),
        cause: Arc::clone(&cause),
        facts: holder.facts,
    });
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    let mut from_client = vec![0u8; 16 * 1024];
    let mut from_upstream = vec![0u8; 16 * 1024];
    let ended: Option<&'static str> = loop {
        let deadline = tokio::time::sleep(idle);
        tokio::select! {
            () = cancel.cancelled() => break cause.get().copied(),
            () = deadline => break Some("idle"),
            r = client.read(&mut from_client) => match r {
                Ok(0) | Err(_) => break None,
                Ok(n) => {
                    let Some(bytes) = from_client.get(..n) else { break None };
                    if upstream.write_all(bytes).await.is_err() {
                        break None;
                    }
                }
            },
            r = upstream.read(&mut from_upstream) => match r {
                Ok(0) | Err(_) => break None,
                Ok(n) => {
                    let Some(bytes) = from_upstream.get(..n) else { break None };
                    if client.write_all(bytes).await.is_err() {
                        break None;
                    }
                }
            },
        }
    };
    let _ = client.shutdown().await;
    let _ = upstream.shutdown().await;
    if let Some(cause) = ended {
        audit::Event::HttpUpgradeClosed {
            route: holder.route,
            identity: holder.identity_label,
            web_session: web_front::session::short(&holder.session_hash),
            cause,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
        .emit();
    }
}
