//! The channel proxy: each client session channel is joined to a session
//! channel on its own upstream connection. The pumps and their flow
//! control live in `pump.rs`.
//!
//! # Requests
//!
//! Channel requests that start the channel (pty-req, env, shell, exec,
//! subsystem) are forwarded from the handler callbacks in `connection`;
//! their replies come back through [`UpstreamChannel::expect_reply`].
//! Window changes and signals go through a small control task so the client
//! connection never waits on the target for them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use audit::Event;
use futures::future::{BoxFuture, FutureExt, Shared};
use russh::{Channel, ChannelId, ChannelWriteHalf, Disconnect, Sig, client, server};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::forward::{ClientEnd, Enable, Inbound};
use crate::lines;
use crate::pump::{
    Admission, Buffered, DIRECTION_BUDGET, DIRECTION_HARD_CAP, Deliver, Item, PumpEnd, PumpRules,
    Replies, pump,
};
use crate::recording::{self, Tap};
use crate::upstream::{DialContext, Upstream, connect_target};
use telemetry::labels::{ChannelKind, Direction};

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
    /// Replies the target still owes for forwarded requests.
    replies: Arc<Replies>,
    /// The serial of the certificate this channel's upstream login used.
    pub cert_serial: u64,
    /// What the target may open back on this channel's connection (agent
    /// and X11 channels, once granted).
    pub(crate) inbound: Arc<Inbound>,
}

impl UpstreamChannel {
    /// Registers interest in the reply to the request about to be sent.
    pub fn expect_reply(&self) -> oneshot::Receiver<bool> {
        self.replies.expect()
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

/// What the channel carried, for the audit event at close.
struct Tally {
    to_target: AtomicU64,
    to_client: AtomicU64,
    /// The process-wide `gatehouse_proxied_bytes_total` of session
    /// channels, added to per chunk with the channel's own counts.
    counted_to_target: telemetry::Counter,
    counted_to_client: telemetry::Counter,
    exit_status: Mutex<Option<u32>>,
    exit_signal: Mutex<Option<String>>,
}

impl Tally {
    fn new(metrics: &telemetry::Metrics) -> Tally {
        Tally {
            to_target: AtomicU64::new(0),
            to_client: AtomicU64::new(0),
            counted_to_target: metrics.bytes(ChannelKind::Session, Direction::ToTarget),
            counted_to_client: metrics.bytes(ChannelKind::Session, Direction::ToClient),
            exit_status: Mutex::new(None),
            exit_signal: Mutex::new(None),
        }
    }

    /// `n` bytes went to the target (one chunk).
    fn to_target(&self, n: usize) {
        self.to_target.fetch_add(n as u64, Ordering::Relaxed);
        self.counted_to_target.inc_by(n as u64);
    }

    /// `n` bytes went to the client (one chunk).
    fn to_client(&self, n: usize) {
        self.to_client.fetch_add(n as u64, Ordering::Relaxed);
        self.counted_to_client.inc_by(n as u64);
    }
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
                self.tally.to_target(data.len());
                if self.tap.input(&data).is_err() {
                    return false;
                }
                w.data_bytes(data).await
            }
            Item::ExtendedData(ext, data, _charge) => {
                self.tally.to_target(data.len());
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
    /// Records output (stdout, or stderr when `stderr`) before it may reach
    /// the client. A strict route whose recording failed gets the line
    /// instead, and the channel ends.
    async fn recorded(&self, data: &[u8], stderr: bool) -> bool {
        let recorded = if stderr {
            self.tap.stderr(data)
        } else {
            self.tap.output(data)
        };
        match recorded {
            Ok(()) => true,
            Err(line) => {
                tell_and_end(self.client, self.tap.line(line, true)).await;
                false
            }
        }
    }
}

impl Deliver for ToClient<'_> {
    async fn deliver(&self, item: Item) -> bool {
        match item {
            Item::Data(data, _charge) => {
                self.tally.to_client(data.len());
                self.recorded(&data, false).await && self.client.data_bytes(data).await.is_ok()
            }
            Item::ExtendedData(ext, data, _charge) => {
                self.tally.to_client(data.len());
                self.recorded(&data, ext == 1).await
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
        Event::RecordingRefused {
            session_id: ctx.session_id.clone(),
            route: ctx.route.name.clone(),
            reason,
        }
        .emit();
        let line = lines::recording_storage_unavailable(&ctx.route.name);
        refuse_channel(&client_tx, &tap.line(&line, false)).await;
        return;
    }

    // What the target may open back on this channel's connection: nothing
    // until a granted agent or X11 request enables it.
    let inbound = Arc::new(Inbound::default());
    let dialed = tokio::select! {
        dialed = dial(&ctx, Arc::clone(&inbound)) => dialed,
        () = connection.cancelled() => return,
    };
    let (upstream, up_channel) = match dialed {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(None);
            e.audit_target(&ctx.session_id, &ctx.route.name, &ctx.login);
            refuse_channel(&client_tx, &tap.line(&e.user_line(), false)).await;
            return;
        }
    };
    let cert_serial = upstream.cert_serial;
    let (up_rx, up_tx) = up_channel.split();
    let replies = Arc::new(Replies::default());
    let up = Arc::new(UpstreamChannel {
        write: up_tx,
        replies: Arc::clone(&replies),
        cert_serial,
        inbound,
    });
    let _ = ready.send(Some(Arc::clone(&up)));

    let tally = Arc::new(Tally::new(&ctx.metrics));
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
        replies: Some(Arc::clone(&replies)),
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
                Event::ChannelOverrun {
                    session_id: ctx.session_id.clone(),
                    route: ctx.route.name.clone(),
                    limit_bytes: audit::count(DIRECTION_HARD_CAP),
                }
                .emit();
                let line = tap.line(&lines::channel_overrun(DIRECTION_HARD_CAP >> 20), false);
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
            tell_and_end(&client_tx, tap.line(&line, true)).await;
            "gateway"
        }
    };
    tap.finish();
    finish(&ctx, tasks, &up, &client_tx, &upstream).await;
    Event::ChannelClosed {
        session_id: ctx.session_id.clone(),
        route: ctx.route.name.clone(),
        login: ctx.login.clone(),
        cert_serial,
        exit_status: tally
            .exit_status
            .lock()
            .ok()
            .and_then(|s| *s)
            .map(i64::from)
            .unwrap_or(-1),
        exit_signal: tally
            .exit_signal
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .unwrap_or_default(),
        bytes_to_target: tally.to_target.load(Ordering::Relaxed),
        bytes_to_client: tally.to_client.load(Ordering::Relaxed),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        ended_by,
    }
    .emit();
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
    up.replies.fail_pending();
    let _ = client.close().await;
    if let Err(e) = upstream
        .handle
        .disconnect(Disconnect::ByApplication, "channel closed", "en")
        .await
    {
        tracing::debug!(route = %ctx.route.name, error = %e, "upstream already gone");
    }
}

async fn dial(
    ctx: &DialContext,
    inbound: Arc<Inbound>,
) -> Result<(Upstream, Channel<client::Msg>), crate::Error> {
    let upstream = connect_target(ctx, inbound).await?;
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
async fn refuse_channel(client: &ChannelWriteHalf<server::Msg>, text: &str) {
    tell_and_end(client, text.to_owned()).await;
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

/// Forwards a granted `auth-agent-req@openssh.com` on a session channel's
/// upstream channel and lets the target open agent channels back. Returns
/// the target's answer.
pub(crate) async fn forward_agent(end: ClientEnd, up: &UpstreamChannel) -> bool {
    up.inbound.enable(end, Enable::Agent);
    let reply = up.expect_reply();
    if up.write.agent_forward(true).await.is_err() {
        return false;
    }
    matches!(
        tokio::time::timeout(crate::forward::REQUEST_TIMEOUT, reply).await,
        Ok(Ok(true))
    )
}

/// An `x11-req`, as the client sent it.
pub(crate) struct X11Request {
    /// Only one X11 connection is to be forwarded.
    pub single_connection: bool,
    /// The authentication protocol, e.g. `MIT-MAGIC-COOKIE-1`.
    pub protocol: String,
    /// The (fake, per OpenSSH) cookie the client made up.
    pub cookie: String,
    /// The X screen.
    pub screen: u32,
}

/// Forwards a granted `x11-req` on a session channel's upstream channel and
/// lets the target open X11 channels back. Returns the target's answer.
pub(crate) async fn forward_x11(end: ClientEnd, up: &UpstreamChannel, request: X11Request) -> bool {
    up.inbound.enable(end, Enable::X11);
    let reply = up.expect_reply();
    if up
        .write
        .request_x11(
            true,
            request.single_connection,
            request.protocol,
            request.cookie,
            request.screen,
        )
        .await
        .is_err()
    {
        return false;
    }
    matches!(
        tokio::time::timeout(crate::forward::REQUEST_TIMEOUT, reply).await,
        Ok(Ok(true))
    )
}
