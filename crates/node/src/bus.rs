//! The message bus task: drives the sans-IO [`MessageBus`] with real time, seals its
//! frames into data packets, hands it the message frames the data plane opens, runs
//! forward sockets, and answers the API through [`Messages`].
//!
//! The bus has its own task so that a burst of message traffic never delays the
//! router. API calls reach it as closures run against the bus; long polls and reply
//! waits are waited out in the caller's task, never in the bus task, so one slow
//! reader cannot hold up anyone else (upstream holds a node-wide lock there).

use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mycelium_proto::messages::{
    Event, ForwardTicket, MessageBus, MessageInfo, NewMessage, PushError, ReceivedMessage,
    TopicConfig,
};
use mycelium_proto::time::Instant;
use mycelium_proto::wire::message::MessageId;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cmd::InboundFrame;
use crate::path::DataPath;

/// Inputs queued for the bus task.
pub(crate) const BUS_QUEUE: usize = 4_096;
/// Forward-socket exchanges running at once; messages past it go to the inbox.
const MAX_FORWARDS: usize = 64;
/// The write to a forward socket may take this long (as upstream).
#[cfg(unix)]
const FORWARD_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Upstream reads a forward socket's answer without a time limit; we stop after the
/// reply window, so a server that never closes cannot pin a task for ever.
#[cfg(unix)]
const FORWARD_READ_TIMEOUT: Duration = Duration::from_secs(300);

type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type Job = Box<dyn FnOnce(&mut BusCtx) + Send>;

/// Inputs of the bus task from the API and its own forward sockets (message
/// frames from the data plane come on a queue of their own).
pub(crate) enum BusCmd {
    /// Something the API asked, run against the bus.
    Run(Job),
    /// A forward socket answered (`None`: it failed).
    Forwarded {
        ticket: ForwardTicket,
        reply: Option<Bytes>,
    },
}

/// What an API job sees.
pub(crate) struct BusCtx {
    bus: MessageBus,
    now: Instant,
    /// Callers waiting for a reply to a message they pushed.
    waiters: Map<MessageId, oneshot::Sender<Option<ReceivedMessage>>>,
}

/// What the bus task is given to run with.
pub(crate) struct BusParts {
    pub(crate) bus: MessageBus,
    /// Where its frames go out.
    pub(crate) path: Arc<DataPath>,
    /// The API's jobs and the forward sockets' answers.
    pub(crate) rx: mpsc::Receiver<BusCmd>,
    /// A sender on `rx`, for the forward sockets.
    pub(crate) tx: mpsc::Sender<BusCmd>,
    /// Message frames the data plane opened.
    pub(crate) frames: mpsc::Receiver<InboundFrame>,
    pub(crate) arrivals: Arc<Notify>,
    pub(crate) shutdown: CancellationToken,
    /// Where forward-socket exchanges are spawned.
    pub(crate) tasks: TaskTracker,
}

/// Runs the bus until shutdown.
pub(crate) async fn run(parts: BusParts) {
    let BusParts {
        bus,
        path,
        mut rx,
        tx,
        mut frames,
        arrivals,
        shutdown,
        tasks,
    } = parts;
    let epoch = tokio::time::Instant::now();
    let now = || Instant::from_epoch(epoch.elapsed());
    let mut ctx = BusCtx {
        bus,
        now: now(),
        waiters: Map::default(),
    };
    let mut local = path.local();
    let forwards = Arc::new(tokio::sync::Semaphore::new(MAX_FORWARDS));
    loop {
        let deadline = ctx
            .bus
            .poll_timeout()
            .map(|t| epoch + t.since_epoch())
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(1));
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { break };
                ctx.now = now();
                handle(&mut ctx, cmd);
                for _ in 0..256 {
                    match rx.try_recv() {
                        Ok(cmd) => handle(&mut ctx, cmd),
                        Err(_) => break,
                    }
                }
            }
            frame = frames.recv() => {
                let Some(f) = frame else { break };
                ctx.now = now();
                ctx.bus.handle_frame(ctx.now, f.src, f.dst, f.key, &f.frame);
                for _ in 0..256 {
                    match frames.try_recv() {
                        Ok(f) => ctx.bus.handle_frame(ctx.now, f.src, f.dst, f.key, &f.frame),
                        Err(_) => break,
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                ctx.now = now();
                ctx.bus.handle_timeout(ctx.now);
            }
        }
        // Frames out, sealed for their destinations (or held by the core until a
        // route is found).
        let snapshot = path.snapshot.load();
        while let Some(t) = ctx.bus.poll_transmit() {
            let buf = crate::buffer::with_headroom(&t.frame);
            path.send_frame(&mut local, &snapshot, t.src, t.dst, buf);
        }
        path.finish(&mut local).await;
        while let Some(event) = ctx.bus.poll_event() {
            match event {
                Event::MessageReceived { .. } => arrivals.notify_waiters(),
                Event::ReplyReceived { id } => match ctx.waiters.remove(&id) {
                    Some(w) if !w.is_closed() => {
                        let _ = w.send(ctx.bus.take_reply(id));
                    }
                    // Whoever waited is gone: the reply goes to the inbox.
                    _ => {
                        ctx.bus.cancel_reply_wait(id);
                        arrivals.notify_waiters();
                    }
                },
                Event::ReplyTimedOut { id } => {
                    if let Some(w) = ctx.waiters.remove(&id) {
                        let _ = w.send(None);
                    }
                }
                Event::Forward {
                    ticket,
                    socket,
                    message,
                } => match forwards.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let (tx, stop) = (tx.clone(), shutdown.clone());
                        tasks.spawn(async move {
                            let reply = tokio::select! {
                                _ = stop.cancelled() => return,
                                r = forward(&socket, &message.payload) => r,
                            };
                            drop(permit);
                            let _ = tx.send(BusCmd::Forwarded { ticket, reply }).await;
                        });
                    }
                    Err(_) => {
                        tracing::debug!("too many forwards running; message goes to the inbox");
                        ctx.bus.handle_forward_result(
                            ctx.now,
                            ticket,
                            None,
                            &mut rand::thread_rng(),
                        );
                    }
                },
                Event::Delivered { id } => tracing::debug!("message {id} delivered"),
                Event::Read { id } => tracing::debug!("message {id} read by its receiver"),
                Event::SendFailed { id } => tracing::debug!("message {id} given up"),
                _ => {}
            }
        }
    }
}

fn handle(ctx: &mut BusCtx, cmd: BusCmd) {
    match cmd {
        BusCmd::Run(job) => job(ctx),
        BusCmd::Forwarded { ticket, reply } => {
            ctx.bus
                .handle_forward_result(ctx.now, ticket, reply, &mut rand::thread_rng());
        }
    }
}

/// As upstream: write the data, read until the server closes; what it sent
/// back is the reply. `None` on any failure or an empty answer.
#[cfg(unix)]
async fn forward(socket: &std::path::Path, payload: &[u8]) -> Option<Bytes> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut stream = tokio::net::UnixStream::connect(socket).await.ok()?;
        tokio::time::timeout(FORWARD_WRITE_TIMEOUT, stream.write_all(payload))
            .await
            .ok()?
            .ok()?;
        let mut reply = Vec::new();
        // Bounded: a reply is a message, and messages have a size limit.
        let mut limited = (&mut stream).take(16 << 20);
        tokio::time::timeout(FORWARD_READ_TIMEOUT, limited.read_to_end(&mut reply))
            .await
            .ok()?
            .ok()?;
        (!reply.is_empty()).then(|| Bytes::from(reply))
    };
    let reply = attempt.await;
    if reply.is_none() {
        tracing::debug!(
            "forward socket {} gave no answer; message goes to the inbox",
            socket.display()
        );
    }
    reply
}

/// Unix sockets only exist on Unix: elsewhere a topic's forward socket is ignored
/// and its messages go to the inbox, as upstream does.
#[cfg(not(unix))]
async fn forward(_socket: &std::path::Path, _payload: &[u8]) -> Option<Bytes> {
    None
}

/// The status of a message we sent, with times in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageStatus {
    /// Bus-side status.
    pub info: MessageInfo,
    /// When it was pushed, in Unix seconds.
    pub created: i64,
    /// When it is given up, in Unix seconds.
    pub deadline: i64,
}

/// What became of a pushed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Queued; nobody waits.
    Sent(MessageId),
    /// A reply arrived in time.
    Reply(MessageId, Box<ReceivedMessage>),
    /// No reply came in time.
    TimedOut(MessageId),
}

/// Why the bus could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The bus refused the message.
    #[error(transparent)]
    Push(#[from] PushError),
    /// Too many callers wait for replies at once.
    #[error("too many callers wait for replies")]
    TooManyWaiters,
    /// The node is stopping.
    #[error("the node is stopping")]
    Stopped,
}

/// The API's way into the message bus. Cheap to clone.
#[derive(Clone)]
pub struct Messages {
    /// The bus task's inputs.
    tx: mpsc::Sender<BusCmd>,
    /// Our address, the source of what we push.
    own_ip: Ipv6Addr,
    shutdown: CancellationToken,
    arrivals: Arc<Notify>,
}

impl std::fmt::Debug for Messages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messages").finish_non_exhaustive()
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

impl Messages {
    pub(crate) fn new(
        tx: mpsc::Sender<BusCmd>,
        own_ip: Ipv6Addr,
        shutdown: CancellationToken,
        arrivals: Arc<Notify>,
    ) -> Self {
        Self {
            tx,
            own_ip,
            shutdown,
            arrivals,
        }
    }

    /// Runs `f` against the bus and returns its answer.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut BusCtx) -> T + Send + 'static,
    ) -> Result<T, BusError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |ctx| {
            let _ = tx.send(f(ctx));
        });
        self.tx
            .send(BusCmd::Run(job))
            .await
            .map_err(|_| BusError::Stopped)?;
        rx.await.map_err(|_| BusError::Stopped)
    }

    /// Sends a message from our address to `dst`. With `reply_timeout`, waits up to
    /// that long for the reply.
    pub async fn push(
        &self,
        dst: Ipv6Addr,
        topic: Vec<u8>,
        payload: Bytes,
        reply_timeout: Option<Duration>,
    ) -> Result<Pushed, BusError> {
        let src = self.own_ip;
        let (id, waiter) = self
            .run(move |ctx| {
                let msg = NewMessage {
                    src,
                    dst,
                    topic,
                    payload,
                    reply_to: None,
                    try_for: None,
                };
                let id = ctx.bus.push(ctx.now, msg, &mut rand::thread_rng())?;
                let Some(timeout) = reply_timeout.filter(|t| !t.is_zero()) else {
                    return Ok((id, None));
                };
                if ctx.bus.wait_for_reply(id, ctx.now + timeout).is_err() {
                    return Err(BusError::TooManyWaiters);
                }
                let (tx, rx) = oneshot::channel();
                ctx.waiters.insert(id, tx);
                Ok((id, Some(rx)))
            })
            .await??;
        match (reply_timeout, waiter) {
            (None, _) => Ok(Pushed::Sent(id)),
            (Some(_), None) => Ok(Pushed::TimedOut(id)),
            (Some(_), Some(rx)) => match rx.await {
                Ok(Some(reply)) => Ok(Pushed::Reply(id, Box::new(reply))),
                _ => Ok(Pushed::TimedOut(id)),
            },
        }
    }

    /// Sends `payload` to `dst` as the reply to message `id`.
    pub async fn reply(
        &self,
        id: MessageId,
        dst: Ipv6Addr,
        payload: Bytes,
    ) -> Result<(), BusError> {
        let src = self.own_ip;
        self.run(move |ctx| {
            let msg = NewMessage {
                src,
                dst,
                topic: Vec::new(),
                payload,
                reply_to: Some(id),
                try_for: None,
            };
            ctx.bus.push(ctx.now, msg, &mut rand::thread_rng())
        })
        .await??;
        Ok(())
    }

    /// The oldest message with exactly `topic` (any if `None`), removed unless
    /// `peek`, waiting up to `timeout` for one to arrive.
    pub async fn pop(
        &self,
        peek: bool,
        timeout: Duration,
        topic: Option<Vec<u8>>,
    ) -> Option<ReceivedMessage> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before looking, so an arrival in between is not missed.
            let arrived = self.arrivals.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let t = topic.clone();
            match self.run(move |ctx| ctx.bus.pop(peek, t.as_deref())).await {
                Ok(Some(msg)) => return Some(msg),
                Ok(None) => {}
                Err(_) => return None,
            }
            tokio::select! {
                _ = arrived => {}
                _ = tokio::time::sleep_until(deadline) => return None,
                _ = self.shutdown.cancelled() => return None,
            }
        }
    }

    /// The status of a message we sent, while it is remembered.
    pub async fn status(&self, id: MessageId) -> Option<MessageStatus> {
        let (info, now) = self
            .run(move |ctx| (ctx.bus.message_info(ctx.now, id), ctx.now))
            .await
            .ok()?;
        let info = info?;
        let unix = unix_now();
        let created = unix - secs(now.saturating_since(info.created));
        let deadline = created + secs(info.deadline.saturating_since(info.created));
        Some(MessageStatus {
            info,
            created,
            deadline,
        })
    }

    /// Reads or changes the topic configuration.
    pub async fn with_topics<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut TopicConfig) -> T + Send + 'static,
    ) -> Option<T> {
        self.run(move |ctx| f(ctx.bus.topics_mut())).await.ok()
    }

    /// Sets a topic's forward socket; false if the topic is not whitelisted.
    pub async fn set_forward_socket(&self, topic: Vec<u8>, path: PathBuf) -> bool {
        self.with_topics(move |t| t.set_forward_socket(&topic, path))
            .await
            .unwrap_or(false)
    }

    /// The bus's counters.
    pub async fn stats(&self) -> Option<mycelium_proto::messages::BusStats> {
        self.run(|ctx| ctx.bus.stats()).await.ok()
    }
}
