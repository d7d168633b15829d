//! The channel proxy: each client session channel is joined to a session
//! channel on its own upstream connection.
//!
//! # Flow control
//!
//! russh grants SSH window as soon as a packet arrives, not when it is
//! consumed, and when a channel's message queue is full it stops its whole
//! connection loop, which also stops it reading the peer's window
//! adjustments. A proxy that simply awaited one side while reading the
//! other therefore deadlocks under bidirectional load: the client loop
//! waits for the client→target writer, which waits for target window; the
//! upstream loop waits for the target→client writer, which waits for client
//! window that the blocked client loop never reads.
//!
//! So each direction has an *intake* that drains russh's queue into a
//! buffer counted in bytes, and a *writer* that empties it while respecting
//! the receiver's window:
//!
//! - target → client: past [`DIRECTION_BUDGET`] the intake waits, which
//!   stops the upstream loop. That is safe: the upstream connection serves
//!   only this channel, and the client loop keeps running.
//! - client → target: past the budget, when no output is waiting for the
//!   client, the intake waits (a slow target slows the client through TCP).
//!   When output *is* waiting, stopping the client loop would also stop it
//!   reading the window adjustments that output needs: a deadlock. So the
//!   intake then *leaks*: it admits one packet per [`LEAK_INTERVAL`], which
//!   lets the client loop creep forward through the stream to the next
//!   window adjustment while still throttling the client's input. Should
//!   the buffer reach [`DIRECTION_HARD_CAP`] anyway (a client that floods
//!   input and never reads output), the channel is closed with a clear line
//!   rather than left to hang.
//!
//! Memory per channel is therefore bounded (budget plus hard cap plus
//! russh's queues) whatever the size of the transfer. Real per-channel
//! windows would need russh to grant window on consumption; see
//! ARCHITECTURE.md.
//!
//! # Requests
//!
//! Channel requests that start the channel (pty-req, env, shell, exec,
//! subsystem) are forwarded from the handler callbacks in `connection`;
//! their replies come back through [`UpstreamChannel::expect_reply`].
//! Window changes and signals go through a small control task so the client
//! connection never waits on the target for them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use russh::{
    Channel, ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Disconnect, Sig, client,
    server,
};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::upstream::{DialContext, Upstream, connect_target};

/// Bytes one direction of one channel may hold beyond russh's own queue.
/// Large enough that a fast reader never lets a queue fill (which would
/// stop a connection loop), small enough that a stalled reader costs a
/// bounded amount of memory.
pub const DIRECTION_BUDGET: usize = 8 << 20;

/// Client→target bytes a channel may hold while its output is pending; see
/// the module documentation.
pub const DIRECTION_HARD_CAP: usize = 64 << 20;

/// While over budget with output pending, the client→target intake admits
/// one packet per interval (at most 32 MiB/s of 32 KiB packets).
const LEAK_INTERVAL: Duration = Duration::from_millis(1);

/// At most this many undelivered signals wait per channel.
const SIGNAL_QUEUE: usize = 16;

/// The target end of a proxied channel, shared by the tasks and the
/// handler callbacks that forward requests.
pub struct UpstreamChannel {
    /// Writes to the target's channel; waits for the target's window.
    pub write: ChannelWriteHalf<client::Msg>,
    /// Replies the target still owes, oldest first. RFC 4254 §5.4 answers
    /// channel requests in order, so a queue pairs them up.
    replies: Mutex<VecDeque<oneshot::Sender<bool>>>,
}

impl UpstreamChannel {
    /// Registers interest in the reply to the request about to be sent.
    pub fn expect_reply(&self) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut q) = self.replies.lock() {
            q.push_back(tx);
        }
        rx
    }

    fn resolve(&self, ok: bool) {
        let waiter = self.replies.lock().ok().and_then(|mut q| q.pop_front());
        if let Some(w) = waiter {
            let _ = w.send(ok);
        }
    }

    fn fail_pending(&self) {
        while let Some(w) = self.replies.lock().ok().and_then(|mut q| q.pop_front()) {
            let _ = w.send(false);
        }
    }
}

/// Resolves once the upstream channel is open, or to `None` when dialing
/// failed (the channel task has then told the client why).
pub type UpstreamReady = Shared<BoxFuture<'static, Option<Arc<UpstreamChannel>>>>;

/// A terminal size, as in a window-change request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    /// Columns.
    pub cols: u32,
    /// Rows.
    pub rows: u32,
    /// Width in pixels.
    pub pix_width: u32,
    /// Height in pixels.
    pub pix_height: u32,
}

/// The handler's side of a proxied channel.
pub struct ProxiedChannel {
    /// Resolves to the upstream channel.
    pub upstream: UpstreamReady,
    /// The latest terminal size; only the newest matters, so a client that
    /// floods resizes cannot queue work.
    pub window: watch::Sender<Option<WindowSize>>,
    /// Signals to deliver, in order. Bounded: a flood is dropped with a log.
    pub signals: mpsc::Sender<Sig>,
}

/// Starts proxying a freshly accepted client session channel: dials the
/// target in the background and returns the handle the request callbacks
/// use. Everything stops when `connection` is cancelled (the client
/// connection ended).
pub fn start(
    ctx: DialContext,
    channel: Channel<server::Msg>,
    client: server::Handle,
    connection: CancellationToken,
    span: tracing::Span,
) -> ProxiedChannel {
    let (ready_tx, ready_rx) = oneshot::channel();
    let upstream: UpstreamReady = async move { ready_rx.await.ok().flatten() }
        .boxed()
        .shared();
    let (window, window_rx) = watch::channel(None);
    let (signals, signals_rx) = mpsc::channel(SIGNAL_QUEUE);
    let control = Control {
        window: window_rx,
        signals: signals_rx,
    };
    let task = run(
        ctx,
        channel,
        client,
        ready_tx,
        control,
        connection,
        span.clone(),
    );
    tokio::spawn(task.instrument(span));
    ProxiedChannel {
        upstream,
        window,
        signals,
    }
}

struct Control {
    window: watch::Receiver<Option<WindowSize>>,
    signals: mpsc::Receiver<Sig>,
}

/// Bytes waiting in one direction of a channel, between intake and writer.
#[derive(Default)]
struct Buffered {
    bytes: AtomicUsize,
    /// Woken whenever bytes leave the buffer.
    drained: Notify,
    /// Woken whenever bytes enter the buffer.
    filled: Notify,
}

impl Buffered {
    fn charge(self: &Arc<Self>, n: usize) -> Charge {
        self.bytes.fetch_add(n, Ordering::AcqRel);
        self.filled.notify_waiters();
        Charge {
            buffered: Arc::clone(self),
            n,
        }
    }

    fn len(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// Waits until fewer than `limit` bytes are buffered.
    async fn wait_below(&self, limit: usize) {
        loop {
            let drained = self.drained.notified();
            if self.len() < limit {
                return;
            }
            drained.await;
        }
    }
}

impl Buffered {
    /// Waits until some bytes are buffered.
    async fn wait_above_zero(&self) {
        loop {
            let filled = self.filled.notified();
            if self.len() > 0 {
                return;
            }
            filled.await;
        }
    }
}

/// Bytes of one queued message; released when the writer is done with it.
struct Charge {
    buffered: Arc<Buffered>,
    n: usize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.buffered.bytes.fetch_sub(self.n, Ordering::AcqRel);
        self.buffered.drained.notify_waiters();
    }
}

/// How an intake admits data into its buffer.
enum Admission {
    /// Wait while the buffer is over budget (target→client).
    Wait,
    /// Wait while over budget, but leak while output is pending for the
    /// client (client→target); `output` is the other direction's buffer.
    Leaky { output: Arc<Buffered> },
}

/// The client pushed past [`DIRECTION_HARD_CAP`] while output was pending.
struct Overrun;

impl Admission {
    async fn admit(&self, buffered: &Arc<Buffered>, n: usize) -> Result<Charge, Overrun> {
        match self {
            Admission::Wait => buffered.wait_below(DIRECTION_BUDGET).await,
            Admission::Leaky { output } => {
                if buffered.len() >= DIRECTION_HARD_CAP {
                    return Err(Overrun);
                }
                // Over budget: wait for the target to drain, or, while
                // output is pending, for the next leak tick.
                while buffered.len() >= DIRECTION_BUDGET {
                    if output.len() == 0 {
                        tokio::select! {
                            () = buffered.wait_below(DIRECTION_BUDGET) => {}
                            () = output.wait_above_zero() => {}
                        }
                    } else {
                        tokio::select! {
                            () = buffered.wait_below(DIRECTION_BUDGET) => {}
                            () = tokio::time::sleep(LEAK_INTERVAL) => break,
                        }
                    }
                }
            }
        }
        Ok(buffered.charge(n))
    }
}

/// One message on its way from an intake to a writer. Data carries the
/// bytes it occupies in the buffer, released when the writer is done.
enum Item {
    Data(Bytes, Charge),
    ExtendedData(u32, Bytes, Charge),
    Eof,
    ExitStatus(u32),
    ExitSignal {
        signal: Sig,
        core_dumped: bool,
        message: String,
        lang: String,
    },
    XonXoff(bool),
}

/// What the channel carried, for the audit event at close.
#[derive(Default)]
struct Tally {
    to_target: AtomicU64,
    to_client: AtomicU64,
    exit_status: Mutex<Option<u32>>,
    exit_signal: Mutex<Option<String>>,
}

async fn run(
    ctx: DialContext,
    channel: Channel<server::Msg>,
    client: server::Handle,
    ready: oneshot::Sender<Option<Arc<UpstreamChannel>>>,
    control_rx: Control,
    connection: CancellationToken,
    span: tracing::Span,
) {
    let id = channel.id();
    let started = Instant::now();
    let (client_rx, client_tx) = channel.split();

    let dialed = tokio::select! {
        dialed = dial(&ctx) => dialed,
        () = connection.cancelled() => return,
    };
    let (upstream, up_channel) = match dialed {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(None);
            crate::audit::target_error(&ctx.session_id, &ctx.route.name, &ctx.login, &e);
            refuse_channel(&client_tx, &e.user_line()).await;
            return;
        }
    };
    let cert_serial = upstream.cert_serial;
    let (up_rx, up_tx) = up_channel.split();
    let up = Arc::new(UpstreamChannel {
        write: up_tx,
        replies: Mutex::new(VecDeque::new()),
    });
    let _ = ready.send(Some(Arc::clone(&up)));

    let tally = Arc::new(Tally::default());
    let to_target_buffered = Arc::new(Buffered::default());
    let to_client_buffered = Arc::new(Buffered::default());
    let (to_target_tx, to_target_rx) = mpsc::unbounded_channel();
    let (to_client_tx, to_client_rx) = mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();

    // Client → target. Ends when the client closes the channel, or pushed
    // past the hard cap.
    let (client_done_tx, client_done) = oneshot::channel();
    let admission = Admission::Leaky {
        output: Arc::clone(&to_client_buffered),
    };
    tasks.spawn(
        async move {
            let outcome =
                intake(client_rx, to_target_tx, to_target_buffered, admission, None).await;
            let _ = client_done_tx.send(outcome);
        }
        .instrument(span.clone()),
    );
    tasks.spawn(
        write_to_target(to_target_rx, Arc::clone(&up), Arc::clone(&tally)).instrument(span.clone()),
    );
    // Target → client.
    let replies = Arc::clone(&up);
    tasks.spawn(
        async move {
            let _ = intake(
                up_rx,
                to_client_tx,
                to_client_buffered,
                Admission::Wait,
                Some(replies),
            )
            .await;
        }
        .instrument(span.clone()),
    );
    tasks.spawn(control(control_rx, Arc::clone(&up)).instrument(span));
    let to_client = write_to_client(to_client_rx, &client_tx, &client, id, &tally);

    tokio::select! {
        // The target closed the channel and everything it sent is delivered.
        () = to_client => {}
        // The client closed the channel or went away: hang up on the target,
        // as sshd hangs up a session whose connection drops.
        outcome = client_done => {
            if let Ok(Err(Overrun)) = outcome {
                tracing::warn!(
                    target: "audit",
                    event = "channel.overrun",
                    session_id = %ctx.session_id,
                    route = %ctx.route.name,
                    limit_bytes = DIRECTION_HARD_CAP,
                    "client kept sending while its output went unread",
                );
                let line = format!(
                    "gatehouse: channel closed: more than {} MiB of input waited while output went unread\r\n",
                    DIRECTION_HARD_CAP >> 20
                );
                let _ = client.extended_data(id, 1, line.into_bytes()).await;
            }
        }
        () = connection.cancelled() => {}
    }
    finish(&ctx, tasks, &up, &client_tx, &upstream).await;
    tracing::info!(
        target: "audit",
        event = "channel.closed",
        session_id = %ctx.session_id,
        route = %ctx.route.name,
        login = %ctx.login,
        cert_serial,
        exit_status = tally.exit_status.lock().ok().and_then(|s| *s).map(i64::from).unwrap_or(-1),
        exit_signal = tally.exit_signal.lock().ok().and_then(|s| s.clone()).unwrap_or_default(),
        bytes_to_target = tally.to_target.load(Ordering::Relaxed),
        bytes_to_client = tally.to_client.load(Ordering::Relaxed),
        duration_ms = started.elapsed().as_millis() as u64,
    );
}

/// Stops the channel's tasks and hangs up the upstream connection.
async fn finish(
    ctx: &DialContext,
    mut tasks: tokio::task::JoinSet<()>,
    up: &UpstreamChannel,
    client: &ChannelWriteHalf<server::Msg>,
    upstream: &Upstream,
) {
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    up.fail_pending();
    let _ = client.close().await;
    if let Err(e) = upstream
        .handle
        .disconnect(Disconnect::ByApplication, "channel closed", "en")
        .await
    {
        tracing::debug!(route = %ctx.route.name, error = %e, "upstream already gone");
    }
}

async fn dial(ctx: &DialContext) -> Result<(Upstream, Channel<client::Msg>), crate::Error> {
    let upstream = connect_target(ctx).await?;
    let channel =
        upstream
            .handle
            .channel_open_session()
            .await
            .map_err(|e| crate::Error::TargetProtocol {
                route: ctx.route.name.clone(),
                target: ctx.route.target.clone(),
                reason: format!("opening a session channel: {e}"),
            })?;
    Ok((upstream, channel))
}

/// Tells the client why its channel cannot be served: one line on stderr,
/// exit status 255 like OpenSSH's own connection failures, then close.
async fn refuse_channel(client: &ChannelWriteHalf<server::Msg>, line: &str) {
    let _ = client
        .extended_data_bytes(1, format!("{line}\r\n").into_bytes())
        .await;
    let _ = client.exit_status(255).await;
    let _ = client.eof().await;
    let _ = client.close().await;
}

/// Drains one side's russh queue promptly, so that side's connection loop
/// never waits on us while the buffer has room. Replies to channel
/// requests are resolved here rather than queued behind data, because the
/// request callback that waits for them holds up the client connection.
async fn intake(
    mut rx: ChannelReadHalf,
    tx: mpsc::UnboundedSender<Item>,
    buffered: Arc<Buffered>,
    admission: Admission,
    replies: Option<Arc<UpstreamChannel>>,
) -> Result<(), Overrun> {
    while let Some(msg) = rx.wait().await {
        let item = match msg {
            ChannelMsg::Data { data } => {
                let charge = admission.admit(&buffered, data.len()).await?;
                Item::Data(data, charge)
            }
            ChannelMsg::ExtendedData { data, ext } => {
                let charge = admission.admit(&buffered, data.len()).await?;
                Item::ExtendedData(ext, data, charge)
            }
            ChannelMsg::Eof => Item::Eof,
            ChannelMsg::Close => break,
            ChannelMsg::ExitStatus { exit_status } => Item::ExitStatus(exit_status),
            ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                error_message,
                lang_tag,
            } => Item::ExitSignal {
                signal: signal_name,
                core_dumped,
                message: error_message,
                lang: lang_tag,
            },
            ChannelMsg::XonXoff { client_can_do } => Item::XonXoff(client_can_do),
            ChannelMsg::Success | ChannelMsg::Failure => {
                if let Some(r) = &replies {
                    r.resolve(matches!(msg, ChannelMsg::Success));
                }
                continue;
            }
            // Client requests arrive through the handler callbacks too,
            // which forward them with their replies; the copies here are
            // not needed.
            _ => continue,
        };
        if tx.send(item).is_err() {
            break;
        }
    }
    Ok(())
}

async fn write_to_target(
    mut rx: mpsc::UnboundedReceiver<Item>,
    up: Arc<UpstreamChannel>,
    tally: Arc<Tally>,
) {
    while let Some(item) = rx.recv().await {
        let sent = match item {
            Item::Data(data, _charge) => {
                tally
                    .to_target
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                up.write.data_bytes(data).await
            }
            Item::ExtendedData(ext, data, _charge) => {
                tally
                    .to_target
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                up.write.extended_data_bytes(ext, data).await
            }
            Item::Eof => up.write.eof().await,
            // Exit status and flow-control notices only travel to clients.
            Item::ExitStatus(_) | Item::ExitSignal { .. } | Item::XonXoff(_) => Ok(()),
        };
        if sent.is_err() {
            break;
        }
    }
}

/// How long EOF from the target is held back for the exit status that
/// usually follows it.
const EXIT_STATUS_GRACE: Duration = Duration::from_millis(200);

/// Delivers the target's side in order; returns when the target has closed
/// the channel and everything before the close has reached the client.
///
/// One reordering: sshd sends EOF and then the exit status, but OpenSSH's
/// multiplexing master (ControlMaster) closes a channel as soon as EOF went
/// both ways, and russh answers a client's close at once, after which the
/// exit status can no longer be sent. So EOF waits briefly for an exit
/// status or signal, which then goes first. Nothing is lost by this: EOF
/// only says no more data follows.
async fn write_to_client(
    mut rx: mpsc::UnboundedReceiver<Item>,
    client: &ChannelWriteHalf<server::Msg>,
    handle: &server::Handle,
    id: ChannelId,
    tally: &Tally,
) {
    let mut held: Option<Item> = None;
    loop {
        let item = match held.take() {
            Some(item) => item,
            None => match rx.recv().await {
                Some(item) => item,
                None => break,
            },
        };
        let item = match item {
            Item::Eof => match tokio::time::timeout(EXIT_STATUS_GRACE, rx.recv()).await {
                Ok(Some(exit @ (Item::ExitStatus(_) | Item::ExitSignal { .. }))) => {
                    held = Some(Item::Eof);
                    exit
                }
                Ok(Some(next)) => {
                    held = Some(next);
                    Item::Eof
                }
                Ok(None) | Err(_) => Item::Eof,
            },
            other => other,
        };
        let delivered = match item {
            Item::Data(data, _charge) => {
                tally
                    .to_client
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                client.data_bytes(data).await.is_ok()
            }
            Item::ExtendedData(ext, data, _charge) => {
                tally
                    .to_client
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                client.extended_data_bytes(ext, data).await.is_ok()
            }
            Item::Eof => client.eof().await.is_ok(),
            Item::ExitStatus(status) => {
                if let Ok(mut s) = tally.exit_status.lock() {
                    *s = Some(status);
                }
                client.exit_status(status).await.is_ok()
            }
            Item::ExitSignal {
                signal,
                core_dumped,
                message,
                lang,
            } => {
                if let Ok(mut s) = tally.exit_signal.lock() {
                    *s = Some(format!("{signal:?}"));
                }
                handle
                    .exit_signal_request(id, signal, core_dumped, message, lang)
                    .await
                    .is_ok()
            }
            Item::XonXoff(can) => handle.xon_xoff_request(id, can).await.is_ok(),
        };
        if !delivered {
            break;
        }
    }
}

async fn control(mut c: Control, up: Arc<UpstreamChannel>) {
    loop {
        tokio::select! {
            changed = c.window.changed() => {
                if changed.is_err() {
                    break;
                }
                let size = *c.window.borrow_and_update();
                if let Some(s) = size
                    && up.write.window_change(s.cols, s.rows, s.pix_width, s.pix_height).await.is_err()
                {
                    break;
                }
            }
            signal = c.signals.recv() => {
                let Some(signal) = signal else { break };
                if up.write.signal(signal).await.is_err() {
                    break;
                }
            }
        }
    }
}
