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
//! So each direction is one *pump* task that reads russh's queue into a
//! local queue counted in bytes and delivers it in order, while respecting
//! the receiver's window; reading never waits for delivery:
//!
//! - target → client: past [`DIRECTION_BUDGET`] the pump stops reading,
//!   which stops the upstream loop. That is safe: the upstream connection
//!   serves only this channel, and the client loop keeps running.
//! - client → target: past the budget, when no output is waiting for the
//!   client, the pump stops reading too (a slow target slows the client
//!   through TCP). When output *is* waiting, stopping the client loop would
//!   also stop it reading the window adjustments that output needs: a
//!   deadlock. So the pump then *leaks*: it reads one packet per
//!   [`LEAK_INTERVAL`], which lets the client loop creep forward through
//!   the stream to the next window adjustment while still throttling the
//!   client's input. Should the queue reach [`DIRECTION_HARD_CAP`] anyway
//!   (a client that floods input and never reads output), the channel is
//!   closed with a clear line rather than left to hang.
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
use std::future::Future;
use std::pin::Pin;
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

use crate::recording::{self, Tap};
use crate::upstream::{DialContext, Upstream, connect_target};

/// Bytes one direction of one channel may hold beyond russh's own queue.
/// Large enough that a fast reader never lets a queue fill (which would
/// stop a connection loop), small enough that a stalled reader costs a
/// bounded amount of memory.
pub const DIRECTION_BUDGET: usize = 8 << 20;

/// Client→target bytes a channel may hold while its output is pending; see
/// the module documentation.
pub const DIRECTION_HARD_CAP: usize = 64 << 20;

/// While over budget with output pending, the client→target pump admits
/// one packet per interval (at most 32 MiB/s of 32 KiB packets).
const LEAK_INTERVAL: Duration = Duration::from_millis(1);

/// The window the client connection grants while a channel's input is
/// congested; see [`ProxiedChannel::input_congested`].
pub const CONGESTED_WINDOW: u32 = 64 * 1024;

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
    /// The serial of the certificate this channel's upstream login used.
    pub cert_serial: u64,
    /// What the target may open back on this channel's connection (agent
    /// and X11 channels, once granted).
    pub(crate) inbound: Arc<crate::forward::Inbound>,
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
    /// Client→target bytes queued for this channel.
    input: Arc<Buffered>,
    /// The channel's recording.
    pub tap: Arc<Tap>,
    /// The terminal the client asked for (pty-req), for the recording's
    /// header.
    pub pty: Option<(String, WindowSize)>,
}

/// What a channel needs from the session's recording.
pub struct ChannelRecording {
    /// Feeds the channel's events to its recording.
    pub tap: Arc<Tap>,
    /// Set to the line to show when the session must end (a strict route's
    /// recording was lost; later, policy revocations).
    pub ender: watch::Receiver<Option<String>>,
    /// For strict routes: the recorder whose storage must answer before the
    /// channel may start.
    pub probe: Option<recorder::Recorder>,
}

impl ProxiedChannel {
    /// Whether the client is sending faster than the target takes it in.
    ///
    /// The client connection then shrinks the SSH window it grants to
    /// [`CONGESTED_WINDOW`] (russh asks `Handler::adjust_window` each time
    /// it tops a window up). That bounds how much input can queue in TCP
    /// ahead of the client's next window adjustment for *our* output, which
    /// the pump must read through before output can move again; with the
    /// full window, several megabytes could stand in the way every time,
    /// more than the output it unlocks, and the queue would only grow.
    pub fn input_congested(&self) -> bool {
        self.input.len() >= DIRECTION_BUDGET / 2
    }
}

/// Starts proxying a freshly accepted client session channel: dials the
/// target in the background and returns the handle the request callbacks
/// use. Everything stops when `connection` is cancelled (the client
/// connection ended).
pub fn start(
    ctx: DialContext,
    channel: Channel<server::Msg>,
    client: server::Handle,
    recording: ChannelRecording,
    connection: CancellationToken,
    span: tracing::Span,
) -> ProxiedChannel {
    let tap = Arc::clone(&recording.tap);
    let (ready_tx, ready_rx) = oneshot::channel();
    let upstream: UpstreamReady = async move { ready_rx.await.ok().flatten() }
        .boxed()
        .shared();
    let (window, window_rx) = watch::channel(None);
    let (signals, signals_rx) = mpsc::channel(SIGNAL_QUEUE);
    let input = Arc::new(Buffered::default());
    let control = Control {
        window: window_rx,
        signals: signals_rx,
    };
    let wiring = Wiring {
        ready: ready_tx,
        control,
        input: Arc::clone(&input),
        recording,
    };
    let task = run(ctx, channel, client, wiring, connection, span.clone());
    tokio::spawn(task.instrument(span));
    ProxiedChannel {
        upstream,
        window,
        signals,
        input,
        tap,
        pty: None,
    }
}

/// What [`start`] hands the channel task besides the channel itself.
struct Wiring {
    /// Tells the request callbacks the upstream channel (or `None`).
    ready: oneshot::Sender<Option<Arc<UpstreamChannel>>>,
    /// Window changes and signals from the callbacks.
    control: Control,
    /// The client→target queue, shared with [`ProxiedChannel`].
    input: Arc<Buffered>,
    /// The channel's recording and the session's end signal.
    recording: ChannelRecording,
}

struct Control {
    window: watch::Receiver<Option<WindowSize>>,
    signals: mpsc::Receiver<Sig>,
}

/// Bytes queued in one direction of a channel. The other direction reads
/// it too: the client→target pump leaks only while output is pending.
#[derive(Default)]
struct Buffered {
    bytes: AtomicUsize,
    /// Woken whenever bytes are queued.
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
}

/// Bytes of one queued message; released when its delivery is done.
struct Charge {
    buffered: Arc<Buffered>,
    n: usize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.buffered.bytes.fetch_sub(self.n, Ordering::AcqRel);
    }
}

/// When a pump may read more from russh while its queue is over budget.
enum Admission {
    /// Never (target→client): stopping the upstream loop is safe.
    Wait,
    /// One packet per [`LEAK_INTERVAL`] while output is pending for the
    /// client (client→target); `output` is the other direction's queue.
    Leaky { output: Arc<Buffered> },
}

/// One message on its way through a pump. Data carries the bytes it
/// occupies in the queue, released when it has been delivered.
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

impl Item {
    fn is_exit(&self) -> bool {
        matches!(self, Item::ExitStatus(_) | Item::ExitSignal { .. })
    }
}

/// What the channel carried, for the audit event at close.
#[derive(Default)]
struct Tally {
    to_target: AtomicU64,
    to_client: AtomicU64,
    exit_status: Mutex<Option<u32>>,
    exit_signal: Mutex<Option<String>>,
}

/// How long EOF from the target is held back for the exit status that
/// usually follows it.
const EXIT_STATUS_GRACE: Duration = Duration::from_millis(200);

/// Where a pump delivers its items.
trait Deliver {
    /// Delivers one item, waiting for the receiver's window. False when
    /// the receiver is gone.
    fn deliver(&self, item: Item) -> impl Future<Output = bool> + Send;
}

/// Delivers to the target's channel.
struct ToTarget {
    up: Arc<UpstreamChannel>,
    tally: Arc<Tally>,
    tap: Arc<Tap>,
}

impl Deliver for ToTarget {
    async fn deliver(&self, item: Item) -> bool {
        let w = &self.up.write;
        let sent = match item {
            Item::Data(data, _charge) => {
                self.tally
                    .to_target
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                if self.tap.input(&data).is_err() {
                    return false;
                }
                w.data_bytes(data).await
            }
            Item::ExtendedData(ext, data, _charge) => {
                self.tally
                    .to_target
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                w.extended_data_bytes(ext, data).await
            }
            Item::Eof => w.eof().await,
            // Exit status and flow-control notices only travel to clients.
            Item::ExitStatus(_) | Item::ExitSignal { .. } | Item::XonXoff(_) => Ok(()),
        };
        sent.is_ok()
    }
}

/// Delivers to the client's channel.
struct ToClient<'a> {
    client: &'a ChannelWriteHalf<server::Msg>,
    handle: &'a server::Handle,
    id: ChannelId,
    tally: &'a Tally,
    tap: &'a Tap,
}

impl ToClient<'_> {
    /// Records output before it may reach the client. A strict route whose
    /// recording failed gets the line instead, and the channel ends.
    async fn recorded(&self, data: &[u8]) -> bool {
        match self.tap.output(data) {
            Ok(()) => true,
            Err(line) => {
                tell_and_end(self.client, format!("\r\n{line}\r\n")).await;
                false
            }
        }
    }
}

impl Deliver for ToClient<'_> {
    async fn deliver(&self, item: Item) -> bool {
        match item {
            Item::Data(data, _charge) => {
                self.tally
                    .to_client
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                self.recorded(&data).await && self.client.data_bytes(data).await.is_ok()
            }
            Item::ExtendedData(ext, data, _charge) => {
                self.tally
                    .to_client
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                self.recorded(&data).await
                    && self.client.extended_data_bytes(ext, data).await.is_ok()
            }
            Item::Eof => self.client.eof().await.is_ok(),
            Item::ExitStatus(status) => {
                if let Ok(mut s) = self.tally.exit_status.lock() {
                    *s = Some(status);
                }
                self.tap.exit(Some(status));
                self.client.exit_status(status).await.is_ok()
            }
            Item::ExitSignal {
                signal,
                core_dumped,
                message,
                lang,
            } => {
                if let Ok(mut s) = self.tally.exit_signal.lock() {
                    *s = Some(format!("{signal:?}"));
                }
                self.tap.exit(None);
                self.handle
                    .exit_signal_request(self.id, signal, core_dumped, message, lang)
                    .await
                    .is_ok()
            }
            Item::XonXoff(can) => self.handle.xon_xoff_request(self.id, can).await.is_ok(),
        }
    }
}

/// How a pump ended.
#[derive(Debug, PartialEq, Eq)]
enum PumpEnd {
    /// The sending side closed the channel (or its connection ended).
    Closed,
    /// The receiving side is gone.
    ReceiverGone,
    /// The client pushed past [`DIRECTION_HARD_CAP`] while output was
    /// pending.
    Overrun,
}

/// What differs between the two directions.
struct PumpRules {
    admission: Admission,
    /// Where the target's replies to forwarded requests go (target→client
    /// only). Resolved on arrival, not queued behind data, because the
    /// request callback that waits for them holds up the client connection.
    replies: Option<Arc<UpstreamChannel>>,
    /// Hold EOF briefly for a following exit status (target→client only).
    ///
    /// sshd sends EOF and then the exit status, but OpenSSH's multiplexing
    /// master (ControlMaster) closes a channel as soon as EOF went both
    /// ways, and russh answers a client's close at once, after which the
    /// exit status can no longer be sent. So the exit status goes first.
    /// Nothing is lost: EOF only says that no more data follows.
    hold_eof: bool,
    /// On the sender's close, deliver what is queued first (target→client:
    /// the tail of the output, the exit status). A client's close ends its
    /// direction at once, since the target is hung up next.
    drain_on_close: bool,
}

/// A future delivering one item, borrowing the pump's [`Deliver`].
type Delivery<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;

async fn drive(delivery: &mut Option<Delivery<'_>>) -> bool {
    match delivery {
        Some(f) => f.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Moves one direction of a channel: reads russh's queue into a local queue
/// counted against a byte budget and delivers it in order, in one task, so
/// a message costs one wake-up and reading never waits for delivery.
async fn pump<D: Deliver + Sync>(
    mut rx: ChannelReadHalf,
    out: &D,
    buffered: Arc<Buffered>,
    rules: PumpRules,
) -> PumpEnd {
    let mut queue: VecDeque<Item> = VecDeque::new();
    let mut open = true;
    let mut delivery: Option<Delivery<'_>> = None;
    let mut seen_exit = false;
    let mut eof_deadline: Option<Instant> = None;
    let mut leak_ready = false;
    loop {
        if delivery.is_none() {
            match queue.front() {
                Some(Item::Eof) if rules.hold_eof && open && !seen_exit => {
                    let deadline =
                        *eof_deadline.get_or_insert_with(|| Instant::now() + EXIT_STATUS_GRACE);
                    if Instant::now() >= deadline
                        && let Some(item) = queue.pop_front()
                    {
                        delivery = Some(Box::pin(out.deliver(item)));
                    }
                }
                Some(_) => {
                    if let Some(item) = queue.pop_front() {
                        delivery = Some(Box::pin(out.deliver(item)));
                    }
                }
                None if !open => return PumpEnd::Closed,
                None => {}
            }
        }
        let over_budget = buffered.len() >= DIRECTION_BUDGET;
        let output_pending = match &rules.admission {
            Admission::Wait => false,
            Admission::Leaky { output } => output.len() > 0,
        };
        let may_read = open && (!over_budget || leak_ready);
        let holding_eof = delivery.is_none() && eof_deadline.is_some() && !queue.is_empty();
        tokio::select! {
            biased;
            delivered = drive(&mut delivery), if delivery.is_some() => {
                delivery = None;
                if !delivered {
                    return PumpEnd::ReceiverGone;
                }
            }
            msg = rx.wait(), if may_read => {
                let Some(msg) = msg else {
                    open = false;
                    continue;
                };
                let item = match msg {
                    ChannelMsg::Data { data } => {
                        if matches!(rules.admission, Admission::Leaky { .. })
                            && buffered.len() >= DIRECTION_HARD_CAP
                        {
                            return PumpEnd::Overrun;
                        }
                        leak_ready = false;
                        let charge = buffered.charge(data.len());
                        Item::Data(data, charge)
                    }
                    ChannelMsg::ExtendedData { data, ext } => {
                        leak_ready = false;
                        let charge = buffered.charge(data.len());
                        Item::ExtendedData(ext, data, charge)
                    }
                    ChannelMsg::Eof => Item::Eof,
                    ChannelMsg::Close if rules.drain_on_close => {
                        open = false;
                        continue;
                    }
                    ChannelMsg::Close => return PumpEnd::Closed,
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
                        if let Some(r) = &rules.replies {
                            r.resolve(matches!(msg, ChannelMsg::Success));
                        }
                        continue;
                    }
                    // Client requests arrive through the handler callbacks
                    // too, which forward them with their replies.
                    _ => continue,
                };
                if item.is_exit() && rules.hold_eof {
                    seen_exit = true;
                    // Overtake a held EOF.
                    match queue.iter().position(|i| matches!(i, Item::Eof)) {
                        Some(at) => queue.insert(at, item),
                        None => queue.push_back(item),
                    }
                } else {
                    queue.push_back(item);
                }
            }
            () = tokio::time::sleep(LEAK_INTERVAL), if open && over_budget && output_pending && !leak_ready => {
                leak_ready = true;
            }
            () = wait_filled(&rules.admission), if open && over_budget && !output_pending => {}
            () = sleep_until(eof_deadline), if holding_eof => {}
        }
    }
}

/// Waits until the other direction queues output (client→target only).
async fn wait_filled(admission: &Admission) {
    match admission {
        Admission::Leaky { output } => {
            let filled = output.filled.notified();
            if output.len() == 0 {
                filled.await;
            }
        }
        Admission::Wait => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

async fn run(
    ctx: DialContext,
    channel: Channel<server::Msg>,
    client: server::Handle,
    wiring: Wiring,
    connection: CancellationToken,
    span: tracing::Span,
) {
    let Wiring {
        ready,
        control: control_rx,
        input: to_target_buffered,
        recording:
            ChannelRecording {
                tap,
                mut ender,
                probe,
            },
    } = wiring;
    let id = channel.id();
    let started = Instant::now();
    let (client_rx, client_tx) = channel.split();

    // A strict route runs recorded or not at all.
    if let Some(recorder) = &probe
        && let Err(reason) = recording::probe(recorder).await
    {
        let _ = ready.send(None);
        tracing::warn!(
            target: "audit",
            event = "recording.refused",
            session_id = %ctx.session_id,
            route = %ctx.route.name,
            reason = %reason,
        );
        let line = format!(
            "gatehouse: recording storage is unavailable and route {} requires recording",
            ctx.route.name
        );
        refuse_channel(&client_tx, &line).await;
        return;
    }

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
        cert_serial,
        inbound: Arc::clone(&upstream.inbound),
    });
    let _ = ready.send(Some(Arc::clone(&up)));

    let tally = Arc::new(Tally::default());
    let to_client_buffered = Arc::new(Buffered::default());
    let mut tasks = tokio::task::JoinSet::new();

    // Client → target, in its own task. Ends when the client closes the
    // channel, or pushed past the hard cap.
    let (client_done_tx, client_done) = oneshot::channel();
    let rules = PumpRules {
        admission: Admission::Leaky {
            output: Arc::clone(&to_client_buffered),
        },
        replies: None,
        hold_eof: false,
        drain_on_close: false,
    };
    let to_target = ToTarget {
        up: Arc::clone(&up),
        tally: Arc::clone(&tally),
        tap: Arc::clone(&tap),
    };
    tasks.spawn(
        async move {
            let end = pump(client_rx, &to_target, to_target_buffered, rules).await;
            let _ = client_done_tx.send(end);
        }
        .instrument(span.clone()),
    );
    tasks.spawn(control(control_rx, Arc::clone(&up)).instrument(span));
    // Target → client, here.
    let to_client = ToClient {
        client: &client_tx,
        handle: &client,
        id,
        tally: &tally,
        tap: &tap,
    };
    let rules = PumpRules {
        admission: Admission::Wait,
        replies: Some(Arc::clone(&up)),
        hold_eof: true,
        drain_on_close: true,
    };

    let ended_by = tokio::select! {
        // The target closed the channel and everything it sent is delivered,
        // or the client is gone.
        end = pump(up_rx, &to_client, to_client_buffered, rules) => match end {
            PumpEnd::ReceiverGone => "client",
            _ => "target",
        },
        // The client closed the channel or went away: hang up on the target,
        // as sshd hangs up a session whose connection drops.
        end = client_done => {
            if let Ok(PumpEnd::Overrun) = end {
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
                "overrun"
            } else if let Ok(PumpEnd::ReceiverGone) = end {
                "target"
            } else {
                "client"
            }
        }
        () = connection.cancelled() => "connection",
        // The gateway ends the session (a strict route lost its recording).
        line = ended(&mut ender) => {
            tap.marker(&format!("gatehouse.ended {line}"));
            tell_and_end(&client_tx, format!("\r\n{line}\r\n")).await;
            "gateway"
        }
    };
    tap.finish();
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
        ended_by,
    );
}

/// Resolves to the line to show once the session is to end.
async fn ended(ender: &mut watch::Receiver<Option<String>>) -> String {
    let line = match ender.wait_for(Option::is_some).await {
        Ok(line) => line.clone(),
        Err(_) => None,
    };
    match line {
        Some(line) => line,
        // The connection is gone; its cancellation ends the channel.
        None => std::future::pending().await,
    }
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
    tell_and_end(client, format!("{line}\r\n")).await;
    let _ = client.close().await;
}

/// Shows `text` on the client's stderr, then exit status 255 (as OpenSSH's
/// own failures) and EOF; the caller closes the channel.
async fn tell_and_end(client: &ChannelWriteHalf<server::Msg>, text: String) {
    let _ = client.extended_data_bytes(1, text.into_bytes()).await;
    let _ = client.exit_status(255).await;
    let _ = client.eof().await;
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

/// What a piped channel carried, for its audit event.
pub(crate) struct Piped {
    /// Bytes from the client to the target.
    pub to_target: u64,
    /// Bytes from the target to the client.
    pub to_client: u64,
    /// Who ended it: `client`, `target`, `overrun` or `connection`.
    pub ended_by: &'static str,
}

/// Delivers bytes and EOF to one end of a piped channel, counting them.
struct ToChannel<'a, S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static> {
    write: &'a ChannelWriteHalf<S>,
    bytes: &'a AtomicU64,
}

impl<S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static> Deliver for ToChannel<'_, S> {
    async fn deliver(&self, item: Item) -> bool {
        let sent = match item {
            Item::Data(data, _charge) => {
                self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                self.write.data_bytes(data).await
            }
            Item::ExtendedData(ext, data, _charge) => {
                self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                self.write.extended_data_bytes(ext, data).await
            }
            Item::Eof => self.write.eof().await,
            // Forwarded connections have no exit status or flow control.
            Item::ExitStatus(_) | Item::ExitSignal { .. } | Item::XonXoff(_) => Ok(()),
        };
        sent.is_ok()
    }
}

/// Joins a forwarded channel (port forward, agent, X11) to its target
/// channel byte for byte, with the same pumps and budgets as session
/// channels, so bidirectional load cannot deadlock the client connection
/// and memory stays bounded. Nothing is recorded: forwards are audited,
/// not recorded (ARCHITECTURE.md).
///
/// Each side's close is honoured after its queued bytes are delivered (a
/// TCP peer's last bytes and EOF must arrive), then both channels close.
pub(crate) async fn pipe(
    client: Channel<server::Msg>,
    target: Channel<client::Msg>,
    connection: CancellationToken,
) -> Piped {
    let (client_rx, client_tx) = client.split();
    let (target_rx, target_tx) = target.split();
    let to_target_bytes = AtomicU64::new(0);
    let to_client_bytes = AtomicU64::new(0);
    let to_target_buffered = Arc::new(Buffered::default());
    let to_client_buffered = Arc::new(Buffered::default());
    let to_target = ToChannel {
        write: &target_tx,
        bytes: &to_target_bytes,
    };
    let to_client = ToChannel {
        write: &client_tx,
        bytes: &to_client_bytes,
    };
    let upward = pump(
        client_rx,
        &to_target,
        to_target_buffered,
        PumpRules {
            admission: Admission::Leaky {
                output: Arc::clone(&to_client_buffered),
            },
            replies: None,
            hold_eof: false,
            drain_on_close: true,
        },
    );
    let downward = pump(
        target_rx,
        &to_client,
        to_client_buffered,
        PumpRules {
            admission: Admission::Wait,
            replies: None,
            hold_eof: false,
            drain_on_close: true,
        },
    );
    let ended_by = tokio::select! {
        end = upward => match end {
            PumpEnd::Closed => "client",
            PumpEnd::ReceiverGone => "target",
            PumpEnd::Overrun => "overrun",
        },
        end = downward => match end {
            PumpEnd::ReceiverGone => "client",
            _ => "target",
        },
        () = connection.cancelled() => "connection",
    };
    let _ = target_tx.close().await;
    let _ = client_tx.close().await;
    Piped {
        to_target: to_target_bytes.load(Ordering::Relaxed),
        to_client: to_client_bytes.load(Ordering::Relaxed),
        ended_by,
    }
}
