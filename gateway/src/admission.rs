//! Admission before authentication: who may hold one of the few
//! unauthenticated slots, and which sources are kept out for a while.
//!
//! A gateway in front of production is attacked before anyone logs in. A
//! silent socket must not hold a slot a real user needs, so:
//! - each source netblock holds at most `max_unauthenticated_per_source`
//!   slots;
//! - when the pool of `max_unauthenticated` slots is full, a newcomer takes
//!   the slot of the least promising holder (one that has not finished the
//!   key exchange, has sent nothing, is from the netblock holding most
//!   slots, the oldest), which is closed, instead of every newcomer being
//!   refused;
//! - sources that fail collect penalties as OpenSSH 9.8's
//!   `PerSourcePenalties` do, and are refused at accept while one is
//!   enforced.
//!
//! Rejections are counted ([`Counters`]) and written as aggregate audit
//! events every few seconds ([`report`]), never once per connection: a
//! flood must not become a flood of log lines.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit::Event;
use config::{Limits, Penalties};
use telemetry::Metrics;
use telemetry::labels::PreauthReason;
use tokio_util::sync::CancellationToken;

use crate::lock;

/// How often the aggregate audit events are written.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// A source netblock: an address with its host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Netblock {
    V4(u32, u8),
    V6(u128, u8),
}

impl Netblock {
    fn of(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> Netblock {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(a) => {
                let bits = u32::from(a);
                let p = v4_prefix.min(32);
                let mask = u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0);
                Netblock::V4(bits & mask, p)
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                let p = v6_prefix.min(128);
                let mask = u128::MAX.checked_shl(128 - u32::from(p)).unwrap_or(0);
                Netblock::V6(bits & mask, p)
            }
        }
    }
}

impl std::fmt::Display for Netblock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Netblock::V4(bits, p) => write!(f, "{}/{p}", std::net::Ipv4Addr::from(bits)),
            Netblock::V6(bits, p) => write!(f, "{}/{p}", std::net::Ipv6Addr::from(bits)),
        }
    }
}

/// Why a connection was refused at accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The gateway serves `max_connections` already.
    MaxConnections,
    /// The source netblock holds `max_unauthenticated_per_source` slots.
    PerSource,
    /// The source netblock is penalized.
    Penalty,
}

impl Refused {
    fn limit(self) -> &'static str {
        match self {
            Refused::MaxConnections => "max_connections",
            Refused::PerSource => "max_unauthenticated_per_source",
            Refused::Penalty => "penalty",
        }
    }
}

/// Why the gateway closed an unauthenticated connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// A newcomer took its slot.
    Shed,
    /// No key exchange within `handshake_timeout`.
    HandshakeTimeout,
    /// More than `max_preauth_bytes` before authenticating.
    PreauthBytes,
}

impl Dropped {
    fn reason(self) -> &'static str {
        match self {
            Dropped::Shed => "shed",
            Dropped::HandshakeTimeout => "handshake_timeout",
            Dropped::PreauthBytes => "preauth_bytes",
        }
    }
}

/// Totals since start, for the metrics endpoint to come.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) refused_max_connections: AtomicU64,
    pub(crate) refused_per_source: AtomicU64,
    pub(crate) refused_penalty: AtomicU64,
    pub(crate) shed: AtomicU64,
    pub(crate) handshake_timeouts: AtomicU64,
    pub(crate) preauth_bytes: AtomicU64,
    pub(crate) penalties: AtomicU64,
}

/// How far an unauthenticated connection got; see [`SlotState`].
const ACCEPTED: u8 = 0;
const AUTHENTICATING: u8 = 1;
const AUTHENTICATED: u8 = 2;

/// What a connection and the accept loop share about one slot.
#[derive(Debug)]
pub(crate) struct SlotState {
    stage: AtomicU8,
    /// Set when the gateway ran out of patience with it (a deadline or the
    /// byte cap), which is penalized as `grace_exceeded`.
    overstayed: AtomicBool,
    /// Bytes read from the client before it authenticated.
    preauth_bytes: AtomicU64,
    /// The client sent more than `max_preauth_bytes` unauthenticated.
    over_bytes: AtomicBool,
    /// Cancelled to close the connection: its slot went to a newcomer.
    pub(crate) shed: CancellationToken,
    /// Cancelled once the key exchange is over (the first authentication
    /// request arrived).
    pub(crate) kex_done: CancellationToken,
}

impl SlotState {
    /// The first authentication request arrived: the key exchange is over.
    pub(crate) fn authenticating(&self) {
        let _ = self.stage.compare_exchange(
            ACCEPTED,
            AUTHENTICATING,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        self.kex_done.cancel();
    }

    pub(crate) fn is_authenticated(&self) -> bool {
        self.stage.load(Ordering::Acquire) == AUTHENTICATED
    }

    /// The gateway closed it for a deadline or the byte cap.
    pub(crate) fn overstayed(&self) {
        self.overstayed.store(true, Ordering::Release);
    }

    /// The client sent more than `max_preauth_bytes` unauthenticated.
    pub(crate) fn preauth_bytes_exceeded(&self) {
        self.over_bytes.store(true, Ordering::Release);
    }

    /// Whether [`Self::preauth_bytes_exceeded`] happened.
    pub(crate) fn sent_too_much(&self) -> bool {
        self.over_bytes.load(Ordering::Acquire)
    }

    /// Counts `n` bytes read from the client; false once it has sent more
    /// than `cap` without authenticating.
    pub(crate) fn read(&self, n: usize, cap: u64) -> bool {
        if self.is_authenticated() {
            return true;
        }
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        let total = self
            .preauth_bytes
            .fetch_add(n, Ordering::AcqRel)
            .saturating_add(n);
        total <= cap
    }
}

struct Holder {
    peer: IpAddr,
    block: Netblock,
    since: Instant,
    state: Arc<SlotState>,
}

#[derive(Clone, Copy)]
struct Penalty {
    expires: Instant,
    enforced: bool,
}

#[derive(Default)]
struct Window {
    count: u64,
    sources: HashSet<Netblock>,
    last_peer: Option<IpAddr>,
}

impl Window {
    fn add(&mut self, peer: IpAddr, block: Netblock) {
        self.count += 1;
        // Bounded: a window's distinct netblocks are only counted.
        if self.sources.len() < 65_536 {
            self.sources.insert(block);
        }
        self.last_peer = Some(peer);
    }
}

struct Inner {
    next_id: u64,
    holders: HashMap<u64, Holder>,
    per_block: HashMap<Netblock, usize>,
    penalties: HashMap<Netblock, Penalty>,
    refused: HashMap<&'static str, Window>,
    dropped: HashMap<&'static str, Window>,
    limits: Limits,
}

/// The gateway's admission state; one per server.
pub(crate) struct Admission {
    inner: Mutex<Inner>,
    pub(crate) counters: Counters,
    /// `gatehouse_ssh_preauth_rejected_total`, counted where `counters` is.
    metrics: Arc<Metrics>,
}

/// A connection's hold on an unauthenticated slot. Dropping it frees the
/// slot and, unless the connection authenticated, penalizes its source.
pub(crate) struct Slot {
    admission: Arc<Admission>,
    id: u64,
    peer: IpAddr,
    block: Netblock,
    pub(crate) state: Arc<SlotState>,
}

impl Slot {
    /// The connection authenticated: its slot is free for the next one,
    /// and its source is not penalized.
    pub(crate) fn authenticated(&self) {
        self.state.stage.store(AUTHENTICATED, Ordering::Release);
        self.admission.release(self.id, self.block);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admission.release(self.id, self.block);
        let state = &self.state;
        let cause = if state.is_authenticated() {
            return;
        } else if state.overstayed.load(Ordering::Acquire) {
            "grace_exceeded"
        } else if state.stage.load(Ordering::Acquire) == AUTHENTICATING {
            "authfail"
        } else {
            "noauth"
        };
        self.admission.penalize(self.peer, cause, Instant::now());
    }
}

impl Admission {
    /// Admission with metrics of its own, for tests.
    #[cfg(test)]
    pub(crate) fn new(limits: Limits) -> Arc<Self> {
        Admission::counted(limits, Arc::default())
    }

    /// Admission under `limits`, counting rejections into `metrics`.
    pub(crate) fn counted(limits: Limits, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Admission {
            inner: Mutex::new(Inner {
                next_id: 0,
                holders: HashMap::new(),
                per_block: HashMap::new(),
                penalties: HashMap::new(),
                refused: HashMap::new(),
                dropped: HashMap::new(),
                limits,
            }),
            counters: Counters::default(),
            metrics,
        })
    }

    /// Admits a new unauthenticated connection from `peer`, or says why
    /// not. When the pool is full, the holder least likely to be a real
    /// client is shed to make room.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr, now: Instant) -> Result<Slot, Refused> {
        let mut inner = lock(&self.inner);
        let limits = &inner.limits;
        let block = Netblock::of(peer, limits.source_netblock_v4, limits.source_netblock_v6);
        let per_source = limits.max_unauthenticated_per_source;
        let pool = limits.max_unauthenticated;
        if self.enforced(&mut inner, peer, block, now) {
            self.counters
                .refused_penalty
                .fetch_add(1, Ordering::Relaxed);
            self.metrics.preauth_rejected(PreauthReason::Penalty);
            inner.refuse(Refused::Penalty, peer, block);
            return Err(Refused::Penalty);
        }
        if inner.per_block.get(&block).copied().unwrap_or(0) >= per_source {
            self.counters
                .refused_per_source
                .fetch_add(1, Ordering::Relaxed);
            self.metrics.preauth_rejected(PreauthReason::PerSource);
            inner.refuse(Refused::PerSource, peer, block);
            return Err(Refused::PerSource);
        }
        while inner.holders.len() >= pool {
            let Some(victim) = inner.victim() else { break };
            if let Some(h) = inner.holders.remove(&victim) {
                inner.forget(h.block);
                h.state.shed.cancel();
                self.counters.shed.fetch_add(1, Ordering::Relaxed);
                self.metrics.preauth_rejected(PreauthReason::Shed);
                inner
                    .dropped
                    .entry(Dropped::Shed.reason())
                    .or_default()
                    .add(h.peer, h.block);
            }
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let state = Arc::new(SlotState {
            stage: AtomicU8::new(ACCEPTED),
            overstayed: AtomicBool::new(false),
            preauth_bytes: AtomicU64::new(0),
            over_bytes: AtomicBool::new(false),
            shed: CancellationToken::new(),
            kex_done: CancellationToken::new(),
        });
        inner.holders.insert(
            id,
            Holder {
                peer,
                block,
                since: now,
                state: Arc::clone(&state),
            },
        );
        *inner.per_block.entry(block).or_insert(0) += 1;
        Ok(Slot {
            admission: Arc::clone(self),
            id,
            peer,
            block,
            state,
        })
    }

    /// Counts a connection refused before admission (`max_connections`).
    pub(crate) fn refused(&self, peer: IpAddr, why: Refused) {
        if why == Refused::MaxConnections {
            self.counters
                .refused_max_connections
                .fetch_add(1, Ordering::Relaxed);
            self.metrics.preauth_rejected(PreauthReason::MaxConnections);
        }
        let mut inner = lock(&self.inner);
        let block = Netblock::of(
            peer,
            inner.limits.source_netblock_v4,
            inner.limits.source_netblock_v6,
        );
        inner.refuse(why, peer, block);
    }

    /// Counts a connection the gateway closed before it authenticated.
    pub(crate) fn dropped(&self, peer: IpAddr, why: Dropped) {
        match why {
            Dropped::Shed => &self.counters.shed,
            Dropped::HandshakeTimeout => &self.counters.handshake_timeouts,
            Dropped::PreauthBytes => &self.counters.preauth_bytes,
        }
        .fetch_add(1, Ordering::Relaxed);
        self.metrics.preauth_rejected(match why {
            Dropped::Shed => PreauthReason::Shed,
            Dropped::HandshakeTimeout => PreauthReason::HandshakeTimeout,
            Dropped::PreauthBytes => PreauthReason::PreauthBytes,
        });
        let mut inner = lock(&self.inner);
        let block = Netblock::of(
            peer,
            inner.limits.source_netblock_v4,
            inner.limits.source_netblock_v6,
        );
        inner
            .dropped
            .entry(why.reason())
            .or_default()
            .add(peer, block);
    }

    fn release(&self, id: u64, block: Netblock) {
        let mut inner = lock(&self.inner);
        if inner.holders.remove(&id).is_some() {
            inner.forget(block);
        }
    }

    /// Whether `block` is refused now; expired penalties are dropped.
    fn enforced(&self, inner: &mut Inner, peer: IpAddr, block: Netblock, now: Instant) -> bool {
        let p = &inner.limits.penalties;
        if !p.enabled || exempt(p, peer) {
            return false;
        }
        match inner.penalties.get(&block).copied() {
            Some(pen) if pen.expires <= now => {
                inner.penalties.remove(&block);
                false
            }
            Some(pen) => pen.enforced,
            None => false,
        }
    }

    /// Adds the penalty for `cause` to `peer`'s netblock.
    fn penalize(&self, peer: IpAddr, cause: &'static str, now: Instant) {
        let mut inner = lock(&self.inner);
        let limits = &inner.limits;
        let p = &limits.penalties;
        if !p.enabled || exempt(p, peer) {
            return;
        }
        let add = match cause {
            "authfail" => p.authfail,
            "grace_exceeded" => p.grace_exceeded,
            _ => p.noauth,
        };
        if add.is_zero() {
            return;
        }
        let (min, max, max_sources) = (p.min, p.max, p.max_sources);
        let block = Netblock::of(peer, limits.source_netblock_v4, limits.source_netblock_v6);
        if !inner.penalties.contains_key(&block) && inner.penalties.len() >= max_sources {
            inner.penalties.retain(|_, pen| pen.expires > now);
            if inner.penalties.len() >= max_sources {
                // Permissive overflow: new sources go untracked until old
                // penalties run out.
                return;
            }
        }
        let pen = inner.penalties.entry(block).or_insert(Penalty {
            expires: now,
            enforced: false,
        });
        let start = pen.expires.max(now);
        pen.expires = (start + add).min(now + max);
        let left = pen.expires.saturating_duration_since(now);
        if !pen.enforced && left >= min {
            pen.enforced = true;
            self.counters.penalties.fetch_add(1, Ordering::Relaxed);
            Event::SourcePenalized {
                source: block.to_string(),
                cause,
                until_s: left.as_secs(),
            }
            .emit();
        }
    }

    /// Writes what was refused and dropped since the last report, one event
    /// per reason, and starts a new window.
    fn report_window(&self) {
        let (refused, dropped) = {
            let mut inner = lock(&self.inner);
            (
                std::mem::take(&mut inner.refused),
                std::mem::take(&mut inner.dropped),
            )
        };
        for (limit, w) in refused {
            Event::ConnectionRefused {
                peer: w.last_peer.map(|p| p.to_string()).unwrap_or_default(),
                limit,
                count: w.count,
                sources: audit::count(w.sources.len()),
            }
            .emit();
        }
        for (reason, w) in dropped {
            Event::ConnectionDropped {
                peer: w.last_peer.map(|p| p.to_string()).unwrap_or_default(),
                reason,
                count: w.count,
                sources: audit::count(w.sources.len()),
            }
            .emit();
        }
    }
}

impl Inner {
    fn refuse(&mut self, why: Refused, peer: IpAddr, block: Netblock) {
        self.refused
            .entry(why.limit())
            .or_default()
            .add(peer, block);
    }

    fn forget(&mut self, block: Netblock) {
        if let Some(n) = self.per_block.get_mut(&block) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_block.remove(&block);
            }
        }
    }

    /// The holder to shed: one still in the key exchange before one that
    /// is authenticating; among those, one that has sent nothing at all
    /// before one that has (a real client sends its version line at once,
    /// a stalled socket never does); then from the netblock holding most
    /// slots; then the oldest. Under a flood of silent sockets a slot
    /// lives only milliseconds, less than a real key exchange takes, so
    /// without the second rule a real client would be shed mid-exchange.
    fn victim(&self) -> Option<u64> {
        self.holders
            .iter()
            .min_by_key(|(_, h)| {
                let progressed = h.state.stage.load(Ordering::Acquire) != ACCEPTED;
                let spoke = h.state.preauth_bytes.load(Ordering::Acquire) > 0;
                let crowd = self.per_block.get(&h.block).copied().unwrap_or(0);
                (progressed, spoke, std::cmp::Reverse(crowd), h.since)
            })
            .map(|(id, _)| *id)
    }
}

fn exempt(p: &Penalties, peer: IpAddr) -> bool {
    p.exempt.iter().any(|net| net.contains(&peer))
}

/// Writes the aggregate audit events every few seconds until `shutdown`.
pub(crate) async fn report(admission: Arc<Admission>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(REPORT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => admission.report_window(),
        }
    }
    admission.report_window();
}

#[cfg(test)]
mod tests;
