//! The accept loop: caps, timeouts and graceful shutdown around russh.
//!
//! Shaped like mini-redis: the caller binds the listener (tests bind port
//! 0), one [`CancellationToken`] asks everything to stop, and a
//! [`TaskTracker`] waits for connections to finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use russh::server::run_stream;
use std::borrow::Cow;

use russh::{Disconnect, MethodKind, MethodSet, Preferred, SshId, cipher};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use audit::{Event, SessionId};

use std::sync::RwLock;

use crate::admission::{self, Admission, Dropped, Refused, Slot};
use crate::connection::{Connection, Lifecycle};
use crate::keys::{self, UserCa};
use crate::metered::Metered;
use crate::recording::SessionSlot;
use crate::registry::EndCause;
use crate::shared::Shared;
use crate::sign_in::SignIn;
use crate::{Error, lines, reevaluate};
use config::Config;
use telemetry::Metrics;
use telemetry::labels::{ConnectionResult, HandshakeResult, PreauthReason, RecordingOutcome};

/// How long live sessions get to end after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long a session that ended gives storage to take its recording.
const SEAL_AT_END: Duration = Duration::from_secs(5);

/// How often spools whose seal gave up are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Seals the spools of sessions whose seal gave up (storage was down when
/// they ended), once storage answers the probe again; until `shutdown`.
/// Recovery at startup covers what a crash left.
async fn sweep_leftovers(
    recorder: recorder::Recorder,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(SWEEP_EVERY) => {}
        }
        if recorder.leftovers() == 0 || recorder.probe_storage().await.is_err() {
            continue;
        }
        let reports = recorder.recover().await;
        count_recordings(&metrics, &reports);
        if !reports.is_empty() {
            tracing::info!(
                sealed = reports.len(),
                "sealed recordings left when storage was down"
            );
        }
    }
}

/// Serves SSH on `listener` until `shutdown` is cancelled, then tells
/// connected users, waits up to 10 s for their sessions to end, and returns.
///
/// Host keys missing on disk are generated first; the user CA must exist.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    run_with(listener, None, config, Arc::default(), shutdown).await
}

/// A connection handed to the SSH server from elsewhere (the edge
/// listener: SSH inside TLS, through `CONNECT`, or plain on port 443).
pub struct Incoming {
    pub io: edge::BoxedIo,
    /// The client's address.
    pub client: SocketAddr,
    /// The host a `CONNECT` named: the route of a user name that has no
    /// `@ROUTE` of its own (`ssh alice@gw` through `CONNECT prod-db:22`).
    pub route_hint: Option<String>,
}

/// [`run`], also serving the connections that arrive on `incoming` as if
/// they had been accepted here (the same caps, admission and shutdown),
/// and counting into `metrics` (which the caller serves).
pub async fn run_with(
    listener: TcpListener,
    incoming: Option<tokio::sync::mpsc::Receiver<Incoming>>,
    config: Config,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let mut incoming = incoming;
    let shared = open(config, metrics).await?;
    {
        // Seal what an earlier process left in the spool (a crash, a kill)
        // in the background: new sessions need not wait for uploads.
        let recorder = shared.recorder.clone();
        let metrics = Arc::clone(&shared.metrics);
        tokio::spawn(async move {
            let reports = recorder.recover().await;
            count_recordings(&metrics, &reports);
            if !reports.is_empty() {
                tracing::info!(
                    recovered = reports.len(),
                    "recovered recordings left by an earlier run"
                );
            }
        });
    }
    if let Some(sign_in) = &shared.sign_in {
        // Discover the IdP in the background: the gateway serves
        // registered keys and bound logins while the IdP is down, and a
        // failed attempt is retried by the next sign-in.
        let sign_in = Arc::clone(sign_in);
        tokio::spawn(async move {
            let _ = sign_in.idp().await;
        });
    }
    tokio::spawn(sweep_leftovers(
        shared.recorder.clone(),
        Arc::clone(&shared.metrics),
        shutdown.clone(),
    ));
    tokio::spawn(reevaluate::watch(Arc::clone(&shared), shutdown.clone()));
    tokio::spawn(reevaluate::follow_admin(
        Arc::clone(&shared),
        shutdown.clone(),
    ));
    tokio::spawn(crate::reload::follow(Arc::clone(&shared), shutdown.clone()));
    tokio::spawn(admission::report(
        Arc::clone(&shared.admission),
        shutdown.clone(),
    ));
    tracing::info!(
        addr = %listener.local_addr()?,
        routes = shared.config().routes.len(),
        user_ca = %shared.ca.fingerprint,
        "gatehouse listening"
    );

    let tracker = TaskTracker::new();
    let mut backoff = Duration::from_millis(10);
    loop {
        let (stream, peer, route_hint): (edge::BoxedIo, SocketAddr, Option<String>) = tokio::select! {
            () = shutdown.cancelled() => break,
            handed = async {
                match incoming.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => match handed {
                Some(handed) => (handed.io, handed.client, handed.route_hint),
                None => {
                    incoming = None;
                    continue;
                }
            },
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(10);
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "set_nodelay failed");
                    }
                    let trusted = shared
                        .config()
                        .trusted_proxies
                        .iter()
                        .any(|n| n.contains(&peer.ip()));
                    if trusted {
                        // The client's address comes first, from the
                        // proxy's header; admission is by that address.
                        let (shared, shutdown) = (Arc::clone(&shared), shutdown.clone());
                        tracker.spawn(async move {
                            let mut stream = stream;
                            match edge::proxy::read_start(
                                &mut stream,
                                peer,
                                true,
                                edge::proxy::DEADLINE,
                            )
                            .await
                            {
                                Ok((client, first)) => {
                                    let io: edge::BoxedIo =
                                        Box::new(edge::Prefixed::new(first, stream));
                                    admit_and_serve(shared, io, client, None, shutdown).await;
                                }
                                Err(e) => {
                                    tracing::warn!(%peer, error = %e, "PROXY header refused");
                                }
                            }
                        });
                        continue;
                    }
                    (Box::new(stream) as edge::BoxedIo, peer, None)
                }
                Err(e) => {
                    // Usually out of file descriptors: wait for some to free
                    // up rather than spinning.
                    tracing::warn!(error = %e, "accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let (shared, shutdown) = (Arc::clone(&shared), shutdown.clone());
        tracker.spawn(admit_and_serve(shared, stream, peer, route_hint, shutdown));
    }

    tracker.close();
    tracing::info!(
        open = tracker.len(),
        "shutting down; waiting for sessions to end"
    );
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tracker.len(),
            "sessions still open after the grace period"
        );
    }
    Ok(())
}

/// Loads keys, opens the state store, the recorder and sign-in: what a
/// gateway needs before it accepts its first connection.
pub(crate) async fn open(config: Config, metrics: Arc<Metrics>) -> Result<Arc<Shared>, Error> {
    let host_keys = config
        .host_keys
        .iter()
        .map(|p| keys::load_or_generate_host_key(p))
        .collect::<Result<Vec<_>, _>>()?;
    let ca = Arc::new(UserCa::load(&config.user_ca)?);
    let limits = config.limits.clone();
    // Timed at the trait boundary: every operation's latency, whoever
    // calls it (the recorder's index writes too).
    let store = telemetry::store::Timed::wrap(
        Arc::new(state::Sqlite::open(&config.state_dir)?),
        Arc::clone(&metrics),
    );
    // Whatever the store lists as live on this gateway is from an earlier
    // run of it: nothing is live here yet.
    store
        .gateway_started(&config.gateway_id, std::time::SystemTime::now())
        .await?;
    let recorder = open_recorder(&config, &host_keys, Arc::clone(&store))?;
    // The observer holds the metrics weakly: the spool sampler below holds
    // the recorder, and a cycle would keep both alive for good.
    recorder.observe(Arc::new(UploadMetrics(Arc::downgrade(&metrics))));
    {
        let recorder = recorder.clone();
        metrics.sample(move |m| m.set_spool_bytes(recorder.spool_bytes()));
    }
    let sign_in = match &config.sign_in {
        Some(c) => Some(Arc::new(SignIn::open(
            c.clone(),
            &limits,
            Arc::clone(&store),
        )?)),
        None => None,
    };
    let ssh = ssh_config(&limits, host_keys);
    Ok(Arc::new(Shared {
        config: RwLock::new(Arc::new(config)),
        store,
        sessions: Arc::default(),
        ca,
        ssh: Arc::new(ssh),
        admission: Admission::counted(limits.clone(), Arc::clone(&metrics)),
        connections: Arc::new(Semaphore::new(limits.max_connections)),
        sign_in,
        recorder,
        metrics,
    }))
}

/// Uploads as the recorder reports them, into the metrics.
struct UploadMetrics(std::sync::Weak<Metrics>);

impl recorder::Observer for UploadMetrics {
    fn upload_failed(&self) {
        if let Some(m) = self.0.upgrade() {
            m.upload_failed();
        }
    }

    fn uploaded(&self, waited: Duration) {
        if let Some(m) = self.0.upgrade() {
            m.upload_lag(waited);
        }
    }
}

/// Counts finished recordings by their status.
pub(crate) fn count_recordings(metrics: &Metrics, reports: &[recorder::SealReport]) {
    for report in reports {
        metrics.recording_finished(match report.status {
            recorder::Status::Interrupted => RecordingOutcome::Interrupted,
            recorder::Status::Failed => RecordingOutcome::Failed,
            recorder::Status::Sealed => RecordingOutcome::Sealed,
            // A seal put off until storage answers: counted when the
            // sweep seals it, not twice.
            recorder::Status::Recording | recorder::Status::Uploading => continue,
        });
    }
}

/// russh's settings: the algorithms offered, the rejection delay, the
/// keepalives.
pub(crate) fn ssh_config(
    limits: &config::Limits,
    host_keys: Vec<russh::keys::PrivateKey>,
) -> russh::server::Config {
    russh::server::Config {
        server_id: SshId::Standard("SSH-2.0-Gatehouse".into()),
        methods: MethodSet::from(&[MethodKind::PublicKey, MethodKind::KeyboardInteractive][..]),
        auth_rejection_time: limits.auth_rejection_delay,
        // OpenSSH clients probe with `none` first; delaying that answer
        // would add a full rejection delay to every login.
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: host_keys,
        inactivity_timeout: limits.idle_timeout,
        keepalive_interval: limits.keepalive_interval,
        keepalive_max: 3,
        nodelay: true,
        preferred: Preferred {
            kex: Cow::Borrowed(KEX),
            // The client picks; offer AES-GCM too, which OpenSSH prefers on
            // CPUs with AES instructions and russh leaves out by default.
            cipher: Cow::Borrowed(&[
                cipher::CHACHA20_POLY1305,
                cipher::AES_128_GCM,
                cipher::AES_256_GCM,
                cipher::AES_256_CTR,
                cipher::AES_192_CTR,
                cipher::AES_128_CTR,
            ]),
            ..Preferred::DEFAULT
        },
        // Clients with many agent keys try each in turn.
        max_auth_attempts: 30,
        ..Default::default()
    }
}

/// Key exchanges the gateway offers: the hybrid post-quantum one and
/// curve25519, which every OpenSSH since 6.5 (2014) speaks. russh's default
/// list also has finite-field Diffie-Hellman up to 8192 bits, whose modular
/// exponentiation it does in pure Rust: a stranger who asks for
/// `diffie-hellman-group18-sha512` makes the gateway spend about half a
/// second of CPU before anyone logs in, for a few bytes sent (found by the
/// `preauth` fuzz target). They are left out.
const KEX: &[russh::kex::Name] = &[
    russh::kex::MLKEM768X25519_SHA256,
    russh::kex::CURVE25519,
    russh::kex::CURVE25519_PRE_RFC_8731,
    russh::kex::EXTENSION_SUPPORT_AS_SERVER,
    russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
];

/// Opens the recorder, signing with the first ed25519 host key
/// ([`keys::recording_signer`]): the key users already trust as the
/// gateway's, so `recordings verify` needs no new key distribution.
fn open_recorder(
    config: &Config,
    host_keys: &[russh::keys::PrivateKey],
    store: Arc<dyn state::Store>,
) -> Result<recorder::Recorder, Error> {
    let signer = keys::recording_signer(host_keys)?;
    recorder::Recorder::open(config.recording.recorder.clone(), Arc::new(signer), store)
        .map_err(|e| Error::Recording(format!("cannot open the recorder: {e}")))
}

/// A new session id: a UUIDv7, so ids sort by start time.
fn new_session_id() -> SessionId {
    SessionId::new(uuid::Uuid::now_v7().simple().to_string())
}

/// Admits a connection from `peer` (the client, after any PROXY header)
/// under the caps and serves it. Refused connections are closed at once,
/// without a banner, and counted; the audit log gets one line per limit
/// every few seconds.
async fn admit_and_serve(
    shared: Arc<Shared>,
    stream: edge::BoxedIo,
    peer: SocketAddr,
    route_hint: Option<String>,
    shutdown: CancellationToken,
) {
    let Ok(connection) = Arc::clone(&shared.connections).try_acquire_owned() else {
        shared.admission.refused(peer.ip(), Refused::MaxConnections);
        shared.metrics.connection(ConnectionResult::Refused);
        return;
    };
    let Ok(unauthenticated) = shared.admission.admit(peer.ip(), Instant::now()) else {
        shared.metrics.connection(ConnectionResult::Refused);
        return;
    };
    serve_connection(shared, stream, peer, route_hint, unauthenticated, shutdown).await;
    drop(connection);
}

pub(crate) async fn serve_connection<S>(
    shared: Arc<Shared>,
    stream: S,
    peer: SocketAddr,
    route_hint: Option<String>,
    unauthenticated: Slot,
    shutdown: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let id = new_session_id();
    // One span per client connection: the root of its trace when traces
    // are exported (issue 16), and the prefix of every log line about it.
    let span = tracing::info_span!(
        "connection",
        id = %id,
        peer = %peer,
        identity = tracing::field::Empty,
        route = tracing::field::Empty,
        login = tracing::field::Empty,
    );
    let started = Instant::now();
    let limits = shared.config().limits.clone();
    let auth_timeout = limits.auth_timeout;
    let handshake_deadline =
        tokio::time::Instant::now() + limits.handshake_timeout.min(auth_timeout);
    let slot = Arc::clone(&unauthenticated.state);
    async move {
        let authenticated = CancellationToken::new();
        // Counts the handshake, the connection's result and the session's
        // length however this task ends, early returns included.
        let mut outcome = Outcome {
            metrics: Arc::clone(&shared.metrics),
            _active: shared.metrics.connection_opened(),
            slot: Arc::clone(&slot),
            authenticated: authenticated.clone(),
            handshake_timed_out: false,
            started,
        };
        // When an unauthenticated connection is cut off. A pending sign-in
        // moves it to cover the device code's lifetime.
        let (auth_deadline, mut deadline) =
            tokio::sync::watch::channel(tokio::time::Instant::now() + auth_timeout);
        let recording: SessionSlot = Arc::default();
        let opened = Arc::new(AtomicBool::new(false));
        // Dropped (and so cancelled) when this connection is done, which
        // stops its channels and hangs up their upstream connections.
        let closed = CancellationToken::new();
        let _closed_guard = closed.clone().drop_guard();
        let handler = Connection::new(
            Arc::clone(&shared),
            id.clone(),
            peer,
            route_hint,
            tracing::Span::current(),
            unauthenticated,
            Lifecycle {
                authenticated: authenticated.clone(),
                auth_deadline,
                closed,
                recording: Arc::clone(&recording),
                opened: Arc::clone(&opened),
            },
        );
        // The version exchange happens inside run_stream, the key exchange
        // after it; both must be over by `handshake_timeout`, long before
        // `auth_timeout`, so silent sockets give their slots back soon.
        let ssh = run_stream(
            Arc::clone(&shared.ssh),
            Metered::new(stream, Arc::clone(&slot), limits.max_preauth_bytes),
            handler,
        );
        tokio::pin!(ssh);
        let running = tokio::select! {
            result = &mut ssh => match result {
                Ok(running) => running,
                Err(e) => {
                    tracing::debug!(error = %e, "handshake failed");
                    if slot.sent_too_much() {
                        shared.admission.dropped(peer.ip(), Dropped::PreauthBytes);
                    }
                    return;
                }
            },
            () = tokio::time::sleep_until(handshake_deadline) => {
                tracing::debug!("no SSH version exchange in time");
                outcome.handshake_timed_out = true;
                slot.overstayed();
                shared.admission.dropped(peer.ip(), Dropped::HandshakeTimeout);
                return;
            }
            () = slot.shed.cancelled() => return,
        };
        let handle = running.handle();
        tokio::pin!(running);
        // Resolves to true when the client fails to authenticate in time,
        // to false as soon as it authenticates. (A `select!` guard would be
        // evaluated only once per loop turn and keep the timer armed.)
        let auth_phase = async {
            loop {
                let until = *deadline.borrow_and_update();
                tokio::select! {
                    () = tokio::time::sleep_until(until) => {
                        if *deadline.borrow() <= tokio::time::Instant::now() {
                            break !authenticated.is_cancelled();
                        }
                    }
                    changed = deadline.changed() => {
                        // The sender lives in the handler; gone means the
                        // connection is over anyway.
                        if changed.is_err() {
                            break false;
                        }
                    }
                    () = authenticated.cancelled() => break false,
                }
            }
        };
        tokio::pin!(auth_phase);
        let mut auth_phase_over = false;
        let mut handshake_over = false;
        let mut shed = false;
        let mut told_shutdown = false;
        let result = loop {
            tokio::select! {
                result = &mut running => break result,
                () = tokio::time::sleep_until(handshake_deadline), if !handshake_over => {
                    handshake_over = true;
                    if !slot.kex_done.is_cancelled() {
                        outcome.handshake_timed_out = true;
                        slot.overstayed();
                        shared.admission.dropped(peer.ip(), Dropped::HandshakeTimeout);
                        let _ = handle
                            .disconnect(Disconnect::ByApplication, lines::HANDSHAKE_TIMED_OUT.into(), "en".into())
                            .await;
                    }
                }
                () = slot.shed.cancelled(), if !shed => {
                    shed = true;
                    let _ = handle
                        .disconnect(Disconnect::ByApplication, lines::SHED.into(), "en".into())
                        .await;
                }
                timed_out = &mut auth_phase, if !auth_phase_over => {
                    auth_phase_over = true;
                    if timed_out {
                        shared.metrics.preauth_rejected(PreauthReason::AuthTimeout);
                        slot.overstayed();
                        Event::AuthTimeout { session_id: id.clone(), peer: peer.to_string() }.emit();
                        let _ = handle
                            .disconnect(Disconnect::ByApplication, lines::AUTH_TIMED_OUT.into(), "en".into())
                            .await;
                    }
                }
                () = shutdown.cancelled(), if !told_shutdown => {
                    told_shutdown = true;
                    let _ = handle
                        .disconnect(Disconnect::ByApplication, lines::SHUTTING_DOWN.into(), "en".into())
                        .await;
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "connection ended with an error");
        }
        if slot.sent_too_much() {
            shared.admission.dropped(peer.ip(), Dropped::PreauthBytes);
        }
        // Channels stop with the connection; then the recording is sealed.
        // A session the gateway ended: its cause, and for a revocation,
        // how long from finding it (the session is ended in the same poll)
        // to the connection closed.
        if let Some((at, cause)) = shared.sessions().get(&id).and_then(|s| s.ended()) {
            shared.metrics.session_ended(cause.label());
            if cause == EndCause::Revoked {
                shared.metrics.revocation_closed(at.elapsed());
            }
        }
        shared.sessions().remove(&id);
        // Whenever the row was written, authenticated or not: a client can
        // leave between the write and russh's success message.
        if opened.load(Ordering::Acquire)
            && let Err(e) = shared.store().session_closed(id.as_str()).await
        {
            tracing::warn!(error = %e, "cannot record the session's end in the state database");
        }
        drop(_closed_guard);
        if authenticated.is_cancelled() {
            Event::SessionClosed {
                session_id: id.clone(),
                peer: peer.to_string(),
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            }
            .emit();
        }
        // The seal gets storage for a few seconds only: during an outage
        // the connection's resources are not held for a minute (issue 15);
        // the spool stays, and `sweep_leftovers` seals it once storage
        // answers.
        let session = recording.lock().await.take();
        drop(outcome);
        if let Some(session) = session {
            let seal = tracing::info_span!("seal", status = tracing::field::Empty);
            let report = session
                .seal_or_leave(SEAL_AT_END)
                .instrument(seal.clone())
                .await;
            count_recordings(&shared.metrics, std::slice::from_ref(&report));
            seal.record("status", tracing::field::debug(&report.status));
            seal.in_scope(|| tracing::debug!(status = ?report.status, "recording sealed"));
        }
    }
    .instrument(span)
    .await;
}

/// What a connection's task counts when it ends, however it ends.
struct Outcome {
    metrics: Arc<Metrics>,
    /// Holds `gatehouse_ssh_connections_active` up while the task runs.
    _active: telemetry::ActiveGuard,
    slot: Arc<crate::admission::SlotState>,
    authenticated: CancellationToken,
    /// The gateway cut the version or key exchange off at its deadline.
    handshake_timed_out: bool,
    started: Instant,
}

impl Drop for Outcome {
    fn drop(&mut self) {
        self.metrics
            .handshake(if self.slot.kex_done.is_cancelled() {
                HandshakeResult::Completed
            } else if self.handshake_timed_out {
                HandshakeResult::Timeout
            } else {
                HandshakeResult::Failed
            });
        if self.authenticated.is_cancelled() {
            self.metrics.connection(ConnectionResult::Authenticated);
            self.metrics.session_closed(self.started.elapsed());
        } else {
            self.metrics.connection(ConnectionResult::Unauthenticated);
        }
    }
}
