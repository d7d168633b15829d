//! The pumps that move a channel's bytes in one direction each, under a
//! byte budget, and [`pipe`], which joins two channels with them.
//!
//! # Flow control
//!
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

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use russh::{
    Channel, ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig, client, server,
};
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

/// Bytes one direction of one channel may hold beyond russh's own queue.
/// Large enough that a fast reader never lets a queue fill (which would
/// stop a connection loop), small enough that a stalled reader costs a
/// bounded amount of memory.
pub(crate) const DIRECTION_BUDGET: usize = 8 << 20;

/// Client→target bytes a channel may hold while its output is pending; see
/// the module documentation.
pub(crate) const DIRECTION_HARD_CAP: usize = 64 << 20;

/// While over budget with output pending, the client→target pump admits
/// one packet per interval (at most 32 MiB/s of 32 KiB packets).
const LEAK_INTERVAL: Duration = Duration::from_millis(1);

/// Replies a target still owes for forwarded channel requests, oldest
/// first. RFC 4254 §5.4 answers channel requests in order, so a queue pairs
/// them up. The target→client pump resolves them as they arrive.
#[derive(Default)]
pub(crate) struct Replies {
    waiting: Mutex<VecDeque<oneshot::Sender<bool>>>,
}

impl Replies {
    /// Registers interest in the reply to the request about to be sent.
    pub(crate) fn expect(&self) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut q) = self.waiting.lock() {
            q.push_back(tx);
        }
        rx
    }

    fn resolve(&self, ok: bool) {
        let waiter = self.waiting.lock().ok().and_then(|mut q| q.pop_front());
        if let Some(w) = waiter {
            let _ = w.send(ok);
        }
    }

    /// Fails every reply still owed (the target is gone).
    pub(crate) fn fail_pending(&self) {
        while let Some(w) = self.waiting.lock().ok().and_then(|mut q| q.pop_front()) {
            let _ = w.send(false);
        }
    }
}

/// Bytes queued in one direction of a channel. The other direction reads
/// it too: the client→target pump leaks only while output is pending.
#[derive(Default)]
pub(crate) struct Buffered {
    bytes: AtomicUsize,
    /// Woken whenever bytes are queued.
    filled: Notify,
}

impl Buffered {
    pub(crate) fn charge(self: &Arc<Self>, n: usize) -> Charge {
        self.bytes.fetch_add(n, Ordering::AcqRel);
        self.filled.notify_waiters();
        Charge {
            buffered: Arc::clone(self),
            n,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }
}

/// Bytes of one queued message; released when its delivery is done.
pub(crate) struct Charge {
    buffered: Arc<Buffered>,
    n: usize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.buffered.bytes.fetch_sub(self.n, Ordering::AcqRel);
    }
}

/// When a pump may read more from russh while its queue is over budget.
pub(crate) enum Admission {
    /// Never (target→client): stopping the upstream loop is safe.
    Wait,
    /// One packet per [`LEAK_INTERVAL`] while output is pending for the
    /// client (client→target); `output` is the other direction's queue.
    Leaky { output: Arc<Buffered> },
}

/// One message on its way through a pump. Data carries the bytes it
/// occupies in the queue, released when it has been delivered.
pub(crate) enum Item {
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
    pub(crate) fn is_exit(&self) -> bool {
        matches!(self, Item::ExitStatus(_) | Item::ExitSignal { .. })
    }
}

/// How long EOF from the target is held back for the exit status that
/// usually follows it.
pub(crate) const EXIT_STATUS_GRACE: Duration = Duration::from_millis(200);

/// Where a pump delivers its items.
pub(crate) trait Deliver {
    /// Delivers one item, waiting for the receiver's window. False when
    /// the receiver is gone.
    fn deliver(&self, item: Item) -> impl Future<Output = bool> + Send;
}

/// How a pump ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PumpEnd {
    /// The sending side closed the channel (or its connection ended).
    Closed,
    /// The receiving side is gone.
    ReceiverGone,
    /// The client pushed past [`DIRECTION_HARD_CAP`] while output was
    /// pending.
    Overrun,
}

/// What differs between the two directions.
pub(crate) struct PumpRules {
    pub(crate) admission: Admission,
    /// Where the target's replies to forwarded requests go (target→client
    /// only). Resolved on arrival, not queued behind data, because the
    /// request callback that waits for them holds up the client connection.
    pub(crate) replies: Option<Arc<Replies>>,
    /// Hold EOF briefly for a following exit status (target→client only).
    ///
    /// sshd sends EOF and then the exit status, but OpenSSH's multiplexing
    /// master (ControlMaster) closes a channel as soon as EOF went both
    /// ways, and russh answers a client's close at once, after which the
    /// exit status can no longer be sent. So the exit status goes first.
    /// Nothing is lost: EOF only says that no more data follows.
    pub(crate) hold_eof: bool,
    /// On the sender's close, deliver what is queued first (target→client:
    /// the tail of the output, the exit status). A client's close ends its
    /// direction at once, since the target is hung up next.
    pub(crate) drain_on_close: bool,
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
pub(crate) async fn pump<D: Deliver + Sync>(
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
    /// The process-wide counter of this direction, added to per chunk.
    counted: &'a telemetry::Counter,
}

impl<S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static> Deliver for ToChannel<'_, S> {
    async fn deliver(&self, item: Item) -> bool {
        let sent = match item {
            Item::Data(data, _charge) => {
                self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                self.counted.inc_by(data.len() as u64);
                self.write.data_bytes(data).await
            }
            Item::ExtendedData(ext, data, _charge) => {
                self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                self.counted.inc_by(data.len() as u64);
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
    counted: &[telemetry::Counter; 2],
) -> Piped {
    let [to_target_counted, to_client_counted] = counted;
    let (client_rx, client_tx) = client.split();
    let (target_rx, target_tx) = target.split();
    let to_target_bytes = AtomicU64::new(0);
    let to_client_bytes = AtomicU64::new(0);
    let to_target_buffered = Arc::new(Buffered::default());
    let to_client_buffered = Arc::new(Buffered::default());
    let to_target = ToChannel {
        write: &target_tx,
        bytes: &to_target_bytes,
        counted: to_target_counted,
    };
    let to_client = ToChannel {
        write: &client_tx,
        bytes: &to_client_bytes,
        counted: to_client_counted,
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
