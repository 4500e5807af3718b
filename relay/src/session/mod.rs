//! One connection's life, written once for every transport.
//!
//! ```text
//!            +--------+  requests (bounded in items and bytes)  +--------------+
//!  socket -> | reader | --------------------------------------> | request task | -+
//!            +--------+                                         +--------------+  | responses
//!               | acks, pings, ephemeral                          (sends pipelined) v (bounded)
//!               v                                                          +----------+
//!         acks / live view                  live view: work + frames  ---> | outbound | -> socket
//!                                           direct: ephemeral, presence -> +----------+
//! ```
//!
//! Handshake first ([`handshake`]), then the three tasks above. Any of them
//! can end the connection through the shared [`Closer`]; the outbound task
//! then sends what is queued plus a `Closing` frame (best effort) and closes.
//!
//! Backpressure: the reader stops reading when the request queue or its byte
//! budget is full, so a sender faster than the relay is slowed by TCP / QUIC
//! flow control; the request task waits for room in the response queue, and
//! the outbound task closes a connection whose socket stays unwritable for
//! `slow_consumer_timeout` as a slow consumer. Nothing is lost: entries stay
//! in the log and the device resumes from its cursor when it reconnects.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hush_protocol::codec;
use hush_protocol::frame::{ClientFrame, CloseReason, Closing, RelayFrame};
use hush_protocol::limits::MAX_EPHEMERAL_LEN;
use hush_protocol::{DeviceId, ErrorCode, ErrorDetail, GroupId, UserId, WireError};
use tokio::sync::{Notify, watch};
use tokio::time::timeout;

use crate::bus::BusEvent;
use crate::grouplog::ConnHandle;
use crate::queue;
use crate::shutdown::stopped;
use crate::state::Shared;
use crate::transport::{Connection, FrameReader, FrameWriter, TransportError};

mod handshake;
mod mls_check;
mod outbound;
pub mod rendezvous;
mod service;

/// How a connection ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The peer closed or the socket failed: nothing to tell it.
    Peer,
    /// The relay closes it, saying why.
    Close(CloseReason, String),
}

/// The shared "this connection is over" signal: the first reason wins.
///
/// A mutex and a [`Notify`] rather than a `watch` channel, whose eight
/// internal notifiers cost every idle connection ~0.4 KiB.
#[derive(Clone)]
pub struct Closer {
    inner: Arc<CloserInner>,
}

struct CloserInner {
    exit: Mutex<Option<Exit>>,
    closed: Notify,
}

impl Closer {
    fn new() -> Self {
        Closer {
            inner: Arc::new(CloserInner {
                exit: Mutex::new(None),
                closed: Notify::new(),
            }),
        }
    }

    /// Ends the connection (no effect if it is already ending).
    pub fn close(&self, exit: Exit) {
        let first = {
            let mut cur = self.inner.exit.lock().unwrap_or_else(|p| p.into_inner());
            if cur.is_none() {
                *cur = Some(exit);
                true
            } else {
                false
            }
        };
        if first {
            self.inner.closed.notify_waiters();
        }
    }

    /// Resolves once the connection is ending.
    pub async fn closed(&self) {
        let notified = self.inner.closed.notified();
        tokio::pin!(notified);
        // Registered before checking, so a close in between is not missed.
        notified.as_mut().enable();
        if self.exit().is_none() {
            notified.await;
        }
    }

    fn exit(&self) -> Option<Exit> {
        self.inner.exit.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Highest seqs delivered on this connection: acknowledgements are clamped to
/// them, so a client cannot acknowledge (and so get deleted) what it never got.
#[derive(Default)]
pub struct Delivered {
    groups: Mutex<HashMap<GroupId, u64>>,
    inbox: AtomicU64,
}

impl Delivered {
    fn set(&self, group: &GroupId, seq: u64) {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        match groups.get_mut(group) {
            Some(s) => *s = seq,
            None => {
                groups.insert(group.clone(), seq);
            }
        }
    }
    fn get(&self, group: &GroupId) -> Option<u64> {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(group)
            .copied()
    }
}

/// Encodes a relay frame. Relay frames are built from validated data, so a
/// failure here is a bug; it is logged and the frame dropped rather than
/// panicking the relay.
pub fn encode(frame: &RelayFrame) -> Option<Bytes> {
    match codec::encode_bytes(frame) {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::error!(error = %e, "encoding a relay frame failed");
            None
        }
    }
}

/// Serves one accepted connection until it ends. `shutdown` turning true closes
/// it with `GoingAway`.
pub async fn serve(shared: Arc<Shared>, conn: Connection, mut shutdown: watch::Receiver<bool>, deadline: Instant) {
    let Connection {
        mut reader,
        mut writer,
        peer,
        transport,
        binding,
    } = conn;
    let limits = &shared.config.limits;
    // Boxed, like `delivery::start` below: their states would otherwise stay in
    // this future's allocation for the whole session.
    // A shutdown does not wait for handshakes in progress.
    let handshaken = tokio::select! {
        h = Box::pin(handshake::run(&shared, &mut *reader, &mut *writer, deadline, binding)) => h,
        _ = stopped(&mut shutdown) => Err(Exit::Close(
            CloseReason::GoingAway,
            "relay is shutting down; reconnect".into(),
        )),
    };
    let proven = match handshaken {
        Ok(handshake::Handshaken::Device(p)) => p,
        Ok(handshake::Handshaken::Rendezvous { slot, payload }) => {
            tracing::debug!(%peer, transport, "link rendezvous");
            Box::pin(rendezvous::serve(
                &shared,
                crate::server::AddressCounts::key(peer.ip()),
                slot,
                payload,
                &mut *reader,
                &mut *writer,
                &mut shutdown,
            ))
            .await;
            return;
        }
        Err(exit) => {
            if let Exit::Close(reason, msg) = &exit {
                tracing::debug!(%peer, ?reason, msg, "handshake failed");
                send_closing(&mut *writer, *reason, msg).await;
            }
            return;
        }
    };
    let device = proven.device.device;
    tracing::debug!(%peer, transport, %device, user = %proven.device.user, "authenticated");

    let (out_tx, out_rx) = queue::channel::<Bytes>(limits.send_queue);
    let (direct_tx, direct_rx) = queue::channel::<Bytes>(limits.send_queue);
    let (req_tx, req_rx) = queue::channel(limits.request_queue);
    let closer = Closer::new();
    let conn = Arc::new(ConnHandle::new(
        shared.conn_id(),
        device,
        proven.device.user.clone(),
        direct_tx,
    ));
    let delivered = Arc::new(Delivered::default());

    // Acknowledgements are written in batches. A device that reconnects right
    // after acknowledging (its previous session may still be tearing down) must
    // resume after what it acknowledged, so make them durable before reading
    // its cursors. Concurrent flushes coalesce in the batcher.
    shared.acks.flush().await;
    let watching = Watching::attach(&shared, &conn);
    let start = match Box::pin(outbound::start(&shared, &conn, &proven)).await {
        Ok(s) => s,
        Err(e) => {
            drop(watching);
            let _ = writer.feed(encode(&RelayFrame::Error(e)).unwrap_or_default()).await;
            send_closing(
                &mut *writer,
                CloseReason::GoingAway,
                "relay could not load this device's state",
            )
            .await;
            return;
        }
    };
    let online = shared.presence.arrive(&conn, &start.active_groups);

    let outbound_task = tokio::spawn(outbound::run(
        shared.clone(),
        conn.clone(),
        writer,
        start,
        out_rx,
        direct_rx,
        closer.clone(),
        delivered.clone(),
    ));
    let ctx = service::Ctx {
        shared: shared.clone(),
        conn: conn.clone(),
        out: out_tx.clone(),
        closer: closer.clone(),
    };
    let request_task = tokio::spawn(service::request_loop(ctx, req_rx));
    let budget = Arc::new(tokio::sync::Semaphore::new(limits.request_bytes));

    let reading = read_loop(
        &shared,
        &conn,
        &mut *reader,
        req_tx,
        budget,
        out_tx,
        &closer,
        &delivered,
    );
    tokio::select! {
        _ = reading => {}
        _ = closer.closed() => {}
        _ = stopped(&mut shutdown) => closer.close(Exit::Close(CloseReason::GoingAway, "relay is shutting down; reconnect".into())),
    }
    drop(reader);
    let _ = request_task.await;
    // The request task is done, so every response is queued: the outbound
    // task sends them, then closes.
    closer.close(Exit::Peer);
    let _ = outbound_task.await;
    // Offline to the groups it still watches, then out of the live view.
    drop(online);
    drop(watching);
    shared.acks.flush().await;
    tracing::debug!(%peer, %device, exit = ?closer.exit(), "connection ended");
}

/// The connection's registration with the live view (what fans entries out
/// to it), undone when dropped: on every path out of the session, a panic
/// included.
struct Watching {
    shared: Arc<Shared>,
    conn: Arc<ConnHandle>,
}

impl Watching {
    fn attach(shared: &Arc<Shared>, conn: &Arc<ConnHandle>) -> Watching {
        shared.log.live().attach(conn);
        Watching {
            shared: shared.clone(),
            conn: conn.clone(),
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.shared.log.live().detach(&self.conn);
    }
}

/// A request as the request task gets it: its id, the operation, and the
/// share of the connection's byte budget it holds until its response is queued.
pub type Queued = (
    u32,
    Box<hush_protocol::frame::Request>,
    tokio::sync::OwnedSemaphorePermit,
);

#[allow(clippy::too_many_arguments)]
async fn read_loop(
    shared: &Arc<Shared>,
    conn: &Arc<ConnHandle>,
    reader: &mut dyn FrameReader,
    req_tx: queue::Sender<Queued>,
    budget: Arc<tokio::sync::Semaphore>,
    out: queue::Sender<Bytes>,
    closer: &Closer,
    delivered: &Delivered,
) {
    let max_bytes = shared.config.limits.request_bytes;
    let idle = shared.config.limits.idle_timeout();
    let mut protocol_errors = 0u32;
    loop {
        let frame = match timeout(idle, reader.recv()).await {
            Err(_) => {
                closer.close(Exit::Close(
                    CloseReason::IdleTimeout,
                    "no frame for three heartbeat intervals".into(),
                ));
                return;
            }
            Ok(Ok(None)) | Ok(Err(TransportError::Io(_))) => {
                closer.close(Exit::Peer);
                return;
            }
            Ok(Err(TransportError::TooLarge { len, max })) => {
                let e = WireError::new(
                    ErrorCode::FrameTooLarge,
                    format!("frame of {len} bytes exceeds the limit of {max}"),
                );
                send_error(&out, e).await;
                closer.close(Exit::Close(CloseReason::ProtocolError, "frame too large".into()));
                return;
            }
            Ok(Err(TransportError::BadDatagram(msg))) => {
                protocol_errors += 1;
                send_error(&out, WireError::new(ErrorCode::Malformed, msg)).await;
                if protocol_errors >= 16 {
                    closer.close(Exit::Close(
                        CloseReason::ProtocolError,
                        "too many malformed frames".into(),
                    ));
                    return;
                }
                continue;
            }
            Ok(Err(e)) => {
                send_error(&out, WireError::new(ErrorCode::Malformed, e.to_string())).await;
                closer.close(Exit::Close(CloseReason::ProtocolError, e.to_string()));
                return;
            }
            Ok(Ok(Some(bytes))) => bytes,
        };
        let frame_len = frame.len();
        let frame = match codec::decode_with_limit::<ClientFrame>(&frame, shared.config.limits.max_frame_len) {
            Ok(f) => f,
            Err(e) => {
                protocol_errors += 1;
                send_error(&out, e.into()).await;
                if protocol_errors >= 16 {
                    closer.close(Exit::Close(
                        CloseReason::ProtocolError,
                        "too many malformed frames".into(),
                    ));
                    return;
                }
                continue;
            }
        };
        match frame {
            ClientFrame::Request { id, op } => {
                // Requests hold their size of the connection's byte budget
                // until answered: with the budget spent the reader waits, and
                // the peer's sends wait behind flow control.
                let n = u32::try_from(frame_len.clamp(1, max_bytes)).unwrap_or(u32::MAX);
                let Ok(permit) = budget.clone().acquire_many_owned(n).await else {
                    return;
                };
                if req_tx.send((id, Box::new(op), permit)).await.is_err() {
                    return;
                }
            }
            // The rarer frames are handled in a boxed future, so the read loop
            // (which waits in every idle session) holds no room for their
            // store and bus calls.
            ClientFrame::Ack { .. } | ClientFrame::AckInbox { .. } | ClientFrame::Ephemeral { .. } => {
                Box::pin(side_frame(shared, conn, frame, &out, delivered)).await;
            }
            ClientFrame::Ping { nonce } => {
                if let Some(f) = encode(&RelayFrame::Pong { nonce }) {
                    let _ = out.try_send(f);
                }
            }
            ClientFrame::Hello(_) | ClientFrame::Authenticate(_) | ClientFrame::Rendezvous { .. } => {
                send_error(
                    &out,
                    WireError::new(ErrorCode::UnexpectedFrame, "already authenticated"),
                )
                .await;
            }
        }
    }
}

/// Acknowledgements and ephemeral signals.
async fn side_frame(
    shared: &Shared,
    conn: &ConnHandle,
    frame: ClientFrame,
    out: &queue::Sender<Bytes>,
    delivered: &Delivered,
) {
    match frame {
        ClientFrame::Ack { group, seq } => {
            // Clamp to what this connection delivered; ignore unknown groups.
            if let Some(max) = delivered.get(&group) {
                shared.acks.advance(conn.device, group, seq.min(max)).await;
            }
        }
        ClientFrame::AckInbox { seq } => {
            let seq = seq.min(delivered.inbox.load(Ordering::Acquire));
            if seq > 0
                && let Err(e) = shared.store.inbox_ack(conn.device, seq).await
            {
                send_error(out, e.into()).await;
            }
        }
        ClientFrame::Ephemeral { group, payload } => {
            if let Err(e) = ephemeral(shared, conn, group, payload).await {
                send_error(out, e).await;
            }
        }
        _ => {}
    }
}

async fn ephemeral(shared: &Shared, conn: &ConnHandle, group: GroupId, payload: Bytes) -> Result<(), WireError> {
    if payload.len() > MAX_EPHEMERAL_LEN {
        return Err(WireError::new(
            ErrorCode::InvalidRequest,
            format!("ephemeral payload over {MAX_EPHEMERAL_LEN} bytes"),
        ));
    }
    rate_check(shared, conn.device)?;
    // A member's connection watches the group, so its live view is here.
    let (member, epoch) = shared
        .log
        .live()
        .group(&group)
        .and_then(|g| g.member_at(conn.device))
        .unwrap_or((false, 0));
    if !member {
        return Err(WireError::new(ErrorCode::NotMember, "not a member of the group"));
    }
    // Only a sealed envelope of the current epoch travels: never an MLS
    // message (a commit sent as a typing signal would be applied by every
    // online member), nothing members of this epoch cannot open.
    let header = hush_protocol::ephemeral::header(&payload).map_err(|e| {
        let code = match e {
            hush_protocol::ephemeral::EnvelopeError::Mls => ErrorCode::InvalidMls,
            _ => ErrorCode::InvalidRequest,
        };
        WireError::new(code, e.to_string())
    })?;
    if header.epoch != epoch {
        return Err(WireError::with_detail(
            ErrorCode::StaleEpoch,
            format!("ephemeral signal for epoch {}, the group is at {epoch}", header.epoch),
            ErrorDetail::CurrentEpoch(epoch),
        ));
    }
    let frame = RelayFrame::Ephemeral {
        group: group.clone(),
        sender: conn.device,
        payload,
    };
    if let Some(frame) = encode(&frame) {
        shared
            .bus
            .publish(BusEvent::Ephemeral {
                group,
                sender: conn.device,
                frame,
            })
            .await;
    }
    Ok(())
}

/// Takes a rate-limit token for the device.
pub fn rate_check(shared: &Shared, device: DeviceId) -> Result<(), WireError> {
    shared.rate.check(device, Instant::now()).map_err(|ms| {
        WireError::with_detail(
            ErrorCode::RateLimited,
            format!("rate limit exceeded; retry in {ms} ms"),
            ErrorDetail::RetryAfterMs(ms),
        )
    })
}

async fn send_error(out: &queue::Sender<Bytes>, e: WireError) {
    if let Some(f) = encode(&RelayFrame::Error(e)) {
        let _ = out.send(f).await;
    }
}

pub(crate) async fn send_closing(writer: &mut dyn FrameWriter, reason: CloseReason, message: &str) {
    let frame = RelayFrame::Closing(Closing {
        reason,
        reconnect_after_ms: reconnect_delay(reason),
        message: message.into(),
    });
    let _ = timeout(Duration::from_secs(1), async {
        if let Some(f) = encode(&frame) {
            let _ = writer.feed(f).await;
            let _ = writer.flush().await;
        }
        writer.close(reason, message).await;
    })
    .await;
}

fn reconnect_delay(reason: CloseReason) -> u32 {
    match reason {
        CloseReason::GoingAway | CloseReason::ServerBusy => 1000,
        CloseReason::SlowConsumer => 500,
        _ => 0,
    }
}

/// The identity a connection authenticated as.
#[derive(Clone, Debug)]
pub struct Authenticated {
    /// The device.
    pub device: DeviceId,
    /// Its user.
    pub user: UserId,
    /// Whether this connection registered it.
    pub registered: bool,
}
