//! The load generator's three clients: hush (the SDK's `WireClient`),
//! Socket.IO (Engine.IO v4 over a raw WebSocket, written here) and the
//! floor's trivial framing. Each member is its own connection; each group's
//! first member is also its sender.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt, stream};
use hush_crypto::inspect::framing;
use hush_protocol::frame::{MessageKind, Notice, Policy, RelayFrame, Request, RosterChange, Send};
use hush_protocol::{DeviceId, GroupId};
use hush_sdk::wire::{ConnectOptions, Identity, Trust, WireClient};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::stats::{Global, Recv, Shared, Stamp, now_ns};

/// How many connections are being opened at once during setup.
const CONNECT_PARALLEL: usize = 32;
/// Messages queued to one connection's writer before its sender waits.
const WRITE_QUEUE: usize = 1024;
/// hush receivers acknowledge after this many entries...
const ACK_EVERY: u64 = 64;
/// ...or this long after the first entry not yet acknowledged, as a client
/// that batches its acknowledgements would.
const ACK_DELAY: Duration = Duration::from_millis(20);
/// Time allowed for a group to be set up (every member joined).
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Which wire a target speaks.
#[derive(Clone, Debug)]
pub enum Target {
    /// The hush relay: `wss://host:port/ws` and its certificate hash.
    Hush { url: String, cert: [u8; 32] },
    /// Socket.IO workers (members are spread over them), `ws://` or
    /// `wss://` base URLs, and the certificate hash for TLS.
    SocketIo { urls: Vec<String>, cert: Option<[u8; 32]> },
    /// The bare fan-out floor.
    Floor { url: String, cert: Option<[u8; 32]> },
}

/// The sender's own deliveries of the current step (its window in the
/// closed loop).
#[derive(Default)]
pub struct Own {
    pub received: AtomicU64,
    pub notify: Notify,
}

/// How a group's sender publishes.
pub enum Publisher {
    Hush {
        /// To the sender's pump ([`hush_pump`]), which keeps the order.
        tx: mpsc::Sender<Request>,
        group: GroupId,
        errors: Arc<AtomicU64>,
    },
    SocketIo {
        tx: mpsc::Sender<Message>,
        room: String,
    },
    Floor {
        tx: mpsc::Sender<Message>,
    },
}

impl Publisher {
    /// Publishes one stamped payload. hush sends are pipelined (many in
    /// flight, replies awaited by the sender's pump), in order.
    pub async fn publish(&self, s: Stamp) -> anyhow::Result<()> {
        match self {
            Publisher::Hush { tx, group, .. } => {
                let req = Request::Send(Send {
                    group: group.clone(),
                    client_msg_id: (u64::from(s.step) << 40 | s.seq) + 1,
                    kind: MessageKind::Application,
                    epoch: 1,
                    payload: Bytes::from(framing::private_message(
                        group,
                        1,
                        MessageKind::Application,
                        &s.binary(),
                    )),
                    roster: None,
                });
                tx.send(req).await.context("hush sender closed")
            }
            Publisher::SocketIo { tx, room } => {
                let frame = format!(r#"42["pub","{room}","{}"]"#, s.text());
                tx.send(Message::text(frame))
                    .await
                    .context("socket.io connection closed")
            }
            Publisher::Floor { tx } => tx
                .send(Message::Binary(Bytes::from(s.binary())))
                .await
                .context("floor connection closed"),
        }
    }

    /// Failed sends so far (hush replies that were errors).
    pub fn errors(&self) -> u64 {
        match self {
            Publisher::Hush { errors, .. } => errors.load(Ordering::Relaxed),
            _ => 0,
        }
    }
}

/// One group, connected and joined.
pub struct GroupConns {
    pub publisher: Publisher,
    pub own: Arc<Own>,
    pub receivers: Vec<Shared>,
    pub tasks: Vec<JoinHandle<()>>,
}

impl Drop for GroupConns {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Where a receiver puts what it gets.
#[derive(Clone)]
struct Sink {
    shared: Shared,
    global: Arc<Global>,
    origin: Instant,
    /// Set for the group's sender.
    own: Option<Arc<Own>>,
}

impl Sink {
    fn record(&self, s: Stamp) {
        let now = now_ns(self.origin);
        let counted = {
            let mut r = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            let before = (r.step, r.unique);
            r.record(s, now, &self.global);
            (r.step, r.unique) != before && r.step == s.step
        };
        if counted && let Some(own) = &self.own {
            own.received.fetch_add(1, Ordering::Relaxed);
            own.notify.notify_one();
        }
    }
}

/// Connects `members` members of group `index` and returns once every one of
/// them is in the group (so nothing sent afterwards can miss a member).
pub async fn setup_group(
    target: &Target,
    index: u32,
    members: usize,
    global: Arc<Global>,
    origin: Instant,
) -> anyhow::Result<GroupConns> {
    tokio::time::timeout(SETUP_TIMEOUT, async {
        match target {
            Target::Hush { url, cert } => hush_group(url, *cert, index, members, global, origin).await,
            Target::SocketIo { urls, cert } => {
                ws_group(Proto::SocketIo, urls, *cert, index, members, global, origin).await
            }
            Target::Floor { url, cert } => {
                ws_group(
                    Proto::Floor,
                    std::slice::from_ref(url),
                    *cert,
                    index,
                    members,
                    global,
                    origin,
                )
                .await
            }
        }
    })
    .await
    .context("group setup timed out")?
}

fn new_shared(group: u32) -> Shared {
    Arc::new(std::sync::Mutex::new(Recv::new(group)))
}

async fn hush_group(
    url: &str,
    cert: [u8; 32],
    index: u32,
    members: usize,
    global: Arc<Global>,
    origin: Instant,
) -> anyhow::Result<GroupConns> {
    let connect = |i: usize| {
        let url = url.to_owned();
        async move {
            let mut opts = ConnectOptions::new(url, Trust::CertSha256(cert));
            opts.event_buffer = 1 << 14;
            opts.timeout = Duration::from_secs(30);
            WireClient::connect(&Identity::generate(&format!("g{index}m{i}")), opts)
                .await
                .map_err(anyhow::Error::from)
        }
    };
    let clients: Vec<WireClient> = stream::iter(0..members)
        .map(connect)
        .buffered(CONNECT_PARALLEL)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let group = GroupId(format!("fanout-{index}-{}", std::process::id()).into_bytes());
    clients[0]
        .request(Request::CreateGroup {
            group: group.clone(),
            policy: Policy::default(),
        })
        .await?;
    let add: Vec<DeviceId> = clients[1..].iter().map(|c| c.ready().device).collect();
    // One commit adds everyone and moves the group to epoch 1, as in real use.
    clients[0]
        .request(Request::Send(Send {
            group: group.clone(),
            client_msg_id: 0,
            kind: MessageKind::Commit,
            epoch: 0,
            payload: Bytes::from(framing::commit(&group, 0, &add, &[], b"commit")),
            roster: Some(RosterChange {
                add,
                remove: vec![],
                welcome: Some(Bytes::from(framing::welcome(b"welcome"))),
            }),
        }))
        .await?;
    let own = Arc::new(Own::default());
    let errors = Arc::new(AtomicU64::new(0));
    let mut receivers = Vec::new();
    let mut tasks = Vec::new();
    let mut joined = Vec::new();
    let mut publisher = None;
    for (i, mut c) in clients.into_iter().enumerate() {
        let events = c.take_events();
        let client = Arc::new(c);
        let shared = new_shared(index);
        let sink = Sink {
            shared: shared.clone(),
            global: global.clone(),
            origin,
            own: (i == 0).then(|| own.clone()),
        };
        if i == 0 {
            let (tx, rx) = mpsc::channel(WRITE_QUEUE);
            tasks.push(tokio::spawn(hush_pump(client.clone(), rx, errors.clone())));
            publisher = Some(Publisher::Hush {
                tx,
                group: group.clone(),
                errors: errors.clone(),
            });
        }
        let (tx, rx) = oneshot::channel();
        joined.push(rx);
        tasks.push(tokio::spawn(hush_receiver(client, events, group.clone(), sink, tx)));
        receivers.push(shared);
    }
    for j in joined {
        j.await
            .context("a member's connection closed before it was added to the group")?;
    }
    Ok(GroupConns {
        publisher: publisher.context("no members")?,
        own,
        receivers,
        tasks,
    })
}

/// A hush sender's pipeline: puts each request on the connection in the
/// order given and awaits the replies concurrently (a failed send is
/// counted).
async fn hush_pump(client: Arc<WireClient>, mut rx: mpsc::Receiver<Request>, errors: Arc<AtomicU64>) {
    type Reply = Pin<Box<dyn Future<Output = bool> + std::marker::Send>>;
    let mut inflight: FuturesUnordered<Reply> = FuturesUnordered::new();
    loop {
        tokio::select! {
            req = rx.recv() => {
                let Some(req) = req else { break };
                let c = client.clone();
                let mut fut: Reply = Box::pin(async move { c.request(req).await.is_ok() });
                // The first poll runs `request` up to the connection's queue
                // (a FIFO, even while full), so frames leave in this order
                // however the replies interleave; spawning each request
                // instead would let tasks overtake each other.
                match std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
                    Poll::Ready(ok) => {
                        if !ok {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Poll::Pending => inflight.push(fut),
                }
            }
            Some(ok) = inflight.next(), if !inflight.is_empty() => {
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// One hush member: records application entries of its group and
/// acknowledges the latest seq every [`ACK_EVERY`] entries or [`ACK_DELAY`]
/// after the first unacknowledged one.
async fn hush_receiver(
    client: Arc<WireClient>,
    mut events: mpsc::Receiver<RelayFrame>,
    group: GroupId,
    sink: Sink,
    joined: oneshot::Sender<()>,
) {
    let mut joined = Some(joined);
    let (mut latest, mut acked, mut unacked) = (0u64, 0u64, 0u64);
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let ev = match deadline {
            Some(d) => tokio::select! {
                ev = events.recv() => ev,
                _ = tokio::time::sleep_until(d) => {
                    if client.ack(&group, latest).await.is_err() { return; }
                    acked = latest;
                    unacked = 0;
                    deadline = None;
                    continue;
                }
            },
            None => events.recv().await,
        };
        let e = match ev {
            None => return,
            // A device is in the group from this notice on: the creator's at
            // seq 0, an added member's at the commit that added it (whose
            // entry it never receives).
            Some(RelayFrame::Notice(Notice::Added { group: g, .. })) if g == group => {
                if let Some(j) = joined.take() {
                    let _ = j.send(());
                }
                continue;
            }
            Some(RelayFrame::Deliver(e)) if e.group == group => e,
            Some(_) => continue,
        };
        latest = latest.max(e.seq);
        if e.kind == MessageKind::Application
            && let Some(s) = framing::private_message_body(&e.payload)
                .ok()
                .and_then(Stamp::from_binary)
        {
            sink.record(s);
        }
        if latest > acked {
            unacked += 1;
            if unacked >= ACK_EVERY {
                if client.ack(&group, latest).await.is_err() {
                    return;
                }
                acked = latest;
                unacked = 0;
                deadline = None;
            } else if deadline.is_none() {
                deadline = Some(tokio::time::Instant::now() + ACK_DELAY);
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    SocketIo,
    Floor,
}

async fn ws_group(
    proto: Proto,
    urls: &[String],
    cert: Option<[u8; 32]>,
    index: u32,
    members: usize,
    global: Arc<Global>,
    origin: Instant,
) -> anyhow::Result<GroupConns> {
    let own = Arc::new(Own::default());
    let connect = |i: usize| {
        // Members alternate between the workers, so every broadcast crosses
        // the Redis adapter to reach half of its room.
        let url = urls[(index as usize + i) % urls.len()].clone();
        let sink = Sink {
            shared: new_shared(index),
            global: global.clone(),
            origin,
            own: (i == 0).then(|| own.clone()),
        };
        async move { ws_member(proto, &url, cert, index, sink).await }
    };
    let conns: Vec<(mpsc::Sender<Message>, Shared, Vec<JoinHandle<()>>)> = stream::iter(0..members)
        .map(connect)
        .buffered(CONNECT_PARALLEL)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let mut receivers = Vec::new();
    let mut tasks = Vec::new();
    let mut publisher = None;
    for (i, (tx, shared, t)) in conns.into_iter().enumerate() {
        if i == 0 {
            publisher = Some(match proto {
                Proto::SocketIo => Publisher::SocketIo {
                    tx,
                    room: format!("g{index}"),
                },
                Proto::Floor => Publisher::Floor { tx },
            });
        }
        receivers.push(shared);
        tasks.extend(t);
    }
    Ok(GroupConns {
        publisher: publisher.context("no members")?,
        own,
        receivers,
        tasks,
    })
}

/// Opens one member's WebSocket (TLS when `cert` is set), joins its group
/// and starts its reader and writer.
async fn ws_member(
    proto: Proto,
    base: &str,
    cert: Option<[u8; 32]>,
    index: u32,
    sink: Sink,
) -> anyhow::Result<(mpsc::Sender<Message>, Shared, Vec<JoinHandle<()>>)> {
    let url = match proto {
        Proto::SocketIo => format!("{base}/socket.io/?EIO=4&transport=websocket"),
        Proto::Floor => format!("{base}/"),
    };
    match cert {
        Some(hash) => {
            let ws = hush_sdk::wire::open_websocket(&url, &Trust::CertSha256(hash))
                .await
                .with_context(|| format!("connecting {url}"))?;
            ws_run(proto, ws, index, sink).await
        }
        None => {
            let hostport = url
                .strip_prefix("ws://")
                .and_then(|r| r.split('/').next())
                .context("ws:// URL")?;
            let tcp = TcpStream::connect(hostport).await?;
            tcp.set_nodelay(true)?;
            let (ws, _) = tokio_tungstenite::client_async(url.as_str(), tcp).await?;
            ws_run(proto, ws, index, sink).await
        }
    }
}

async fn next_text<S>(rx: &mut futures_util::stream::SplitStream<WebSocketStream<S>>) -> anyhow::Result<String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match rx.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Binary(b))) => return Ok(String::from_utf8_lossy(&b).into_owned()),
            Some(Ok(Message::Close(c))) => bail!("closed: {c:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("closed"),
        }
    }
}

async fn ws_run<S>(
    proto: Proto,
    ws: WebSocketStream<S>,
    index: u32,
    sink: Sink,
) -> anyhow::Result<(mpsc::Sender<Message>, Shared, Vec<JoinHandle<()>>)>
where
    S: AsyncRead + AsyncWrite + Unpin + std::marker::Send + 'static,
{
    let (mut wtx, mut rx) = ws.split();
    match proto {
        Proto::SocketIo => {
            // Engine.IO v4: the open packet, then a Socket.IO connect to "/",
            // then an acknowledged join (ack id 0).
            let open = next_text(&mut rx).await?;
            anyhow::ensure!(
                open.starts_with("0{"),
                "expected an Engine.IO open packet, got {open:?}"
            );
            wtx.send(Message::text("40")).await?;
            let connected = next_text(&mut rx).await?;
            anyhow::ensure!(
                connected.starts_with("40"),
                "expected a Socket.IO connect, got {connected:?}"
            );
            wtx.send(Message::text(format!(r#"420["join","g{index}"]"#))).await?;
            loop {
                let t = next_text(&mut rx).await?;
                if t.starts_with("430") {
                    break;
                }
                if t == "2" {
                    wtx.send(Message::text("3")).await?;
                }
            }
        }
        Proto::Floor => {
            wtx.send(Message::Binary(Bytes::copy_from_slice(&index.to_le_bytes())))
                .await?;
            let ok = rx.next().await.context("closed before joining")??;
            anyhow::ensure!(ok == Message::Binary(Bytes::from_static(b"ok")), "floor join: {ok:?}");
        }
    }
    let (tx, mut out) = mpsc::channel::<Message>(WRITE_QUEUE);
    let writer = tokio::spawn(async move {
        // One flush per burst of queued messages.
        while let Some(m) = out.recv().await {
            if wtx.feed(m).await.is_err() {
                return;
            }
            while let Ok(m) = out.try_recv() {
                if wtx.feed(m).await.is_err() {
                    return;
                }
            }
            if wtx.flush().await.is_err() {
                return;
            }
        }
    });
    let shared = sink.shared.clone();
    let pong = tx.clone();
    let reader = tokio::spawn(async move {
        while let Some(Ok(m)) = rx.next().await {
            match (proto, m) {
                (Proto::SocketIo, Message::Text(t)) => {
                    let t = t.as_str();
                    if let Some(body) = t.strip_prefix(r#"42["m",""#).and_then(|r| r.strip_suffix(r#""]"#)) {
                        if let Some(s) = Stamp::from_text(body) {
                            sink.record(s);
                        }
                    } else if t == "2" && pong.send(Message::text("3")).await.is_err() {
                        return;
                    }
                }
                (Proto::Floor, Message::Binary(b)) => {
                    if let Some(s) = Stamp::from_binary(&b) {
                        sink.record(s);
                    }
                }
                (_, Message::Close(_)) => return,
                _ => {}
            }
        }
    });
    Ok((tx, shared, vec![reader, writer]))
}
