//! Device-linking rendezvous (PROTOCOL.md §6.5).
//!
//! A device being linked has no registered key, so it cannot authenticate.
//! Instead of `Authenticate` it sends `Rendezvous { slot, payload }`; the relay
//! pairs it with the one other connection naming the same slot (the existing
//! device, which shows the link code) and forwards each payload to the other
//! side. The payloads are a PAKE exchange and then messages encrypted with its
//! key, so the relay learns nothing but the slot and the sizes. Nothing is
//! stored: a pair lives in memory for at most [`LIFETIME`], and either side
//! leaving ends the other.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hush_protocol::codec;
use hush_protocol::frame::{ClientFrame, CloseReason, RelayFrame};
use hush_protocol::limits::{MAX_RENDEZVOUS_MESSAGES, MAX_RENDEZVOUS_PAYLOAD};
use hush_protocol::{ErrorCode, WireError};
use tokio::sync::{mpsc, oneshot, watch};

use super::{encode, send_closing};
use crate::shutdown::stopped;
use crate::state::Shared;
use crate::transport::{FrameReader, FrameWriter};

/// How long a rendezvous connection may live, waiting and paired.
pub const LIFETIME: Duration = Duration::from_secs(600);
/// Most slots waiting for their second side at once.
pub const MAX_WAITING: usize = 1024;

/// The first side of a slot, waiting for the second.
struct Waiting {
    id: u64,
    /// The client address (an IPv6 /64 counts as one), for the per-address
    /// budget.
    address: std::net::IpAddr,
    /// Hands the first side its sender to the second.
    pair: oneshot::Sender<mpsc::Sender<Bytes>>,
    /// Payloads for the first side.
    to_first: mpsc::Sender<Bytes>,
}

/// The slots waiting for a second connection.
#[derive(Default)]
pub struct Slots {
    waiting: Mutex<HashMap<[u8; 16], Waiting>>,
    next_id: AtomicU64,
}

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 16], Waiting>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

enum Peer {
    /// Paired: payloads for the peer go here.
    Paired(mpsc::Sender<Bytes>),
    /// Waiting for the second side.
    Waiting(u64, oneshot::Receiver<mpsc::Sender<Bytes>>),
}

/// Serves a connection that asked for a rendezvous on `slot` with `first` as
/// its first payload, until either side leaves, the lifetime ends or the relay
/// stops.
pub async fn serve(
    shared: &Shared,
    address: std::net::IpAddr,
    slot: [u8; 16],
    first: Bytes,
    reader: &mut dyn FrameReader,
    writer: &mut dyn FrameWriter,
    shutdown: &mut watch::Receiver<bool>,
) {
    let (to_me, mut inbox) = mpsc::channel::<Bytes>(MAX_RENDEZVOUS_MESSAGES);
    let peer = {
        let mut waiting = shared.rendezvous.lock();
        let unpaired = match waiting.remove(&slot) {
            Some(w) => match w.pair.send(to_me) {
                Ok(()) => Err(w.to_first),
                // The first side left just now: this becomes the first.
                Err(to_me) => Ok(to_me),
            },
            None => Ok(to_me),
        };
        let per_address = shared.config.limits.rendezvous_per_address;
        match unpaired {
            Err(to_first) => Some(Peer::Paired(to_first)),
            Ok(to_me) => {
                if waiting.len() >= MAX_WAITING
                    || waiting.values().filter(|w| w.address == address).count() >= per_address
                {
                    None
                } else {
                    let id = shared.rendezvous.next_id.fetch_add(1, Ordering::Relaxed);
                    let (pair, paired) = oneshot::channel();
                    waiting.insert(
                        slot,
                        Waiting {
                            id,
                            address,
                            pair,
                            to_first: to_me,
                        },
                    );
                    Some(Peer::Waiting(id, paired))
                }
            }
        }
    };
    let Some(peer) = peer else {
        refuse(
            writer,
            ErrorCode::Unavailable,
            "too many link rendezvous in progress (on this relay, or from this address)",
        )
        .await;
        return;
    };
    let exit = run(shared, slot, first, peer, &mut inbox, reader, writer, shutdown).await;
    if let Some((code, msg)) = exit.error
        && let Some(f) = encode(&RelayFrame::Error(WireError::new(code, msg)))
    {
        let _ = writer.feed(f).await;
    }
    send_closing(writer, exit.reason, &exit.message).await;
}

struct Exit {
    reason: CloseReason,
    message: String,
    error: Option<(ErrorCode, String)>,
}

impl Exit {
    fn new(reason: CloseReason, message: &str) -> Self {
        Exit {
            reason,
            message: message.to_owned(),
            error: None,
        }
    }
    fn error(code: ErrorCode, message: &str) -> Self {
        Exit {
            reason: CloseReason::ProtocolError,
            message: message.to_owned(),
            error: Some((code, message.to_owned())),
        }
    }
}

async fn refuse(writer: &mut dyn FrameWriter, code: ErrorCode, message: &str) {
    if let Some(f) = encode(&RelayFrame::Error(WireError::new(code, message))) {
        let _ = writer.feed(f).await;
    }
    send_closing(writer, CloseReason::ServerBusy, message).await;
}

#[allow(clippy::too_many_arguments)]
async fn run(
    shared: &Shared,
    slot: [u8; 16],
    first: Bytes,
    mut peer: Peer,
    inbox: &mut mpsc::Receiver<Bytes>,
    reader: &mut dyn FrameReader,
    writer: &mut dyn FrameWriter,
    shutdown: &mut watch::Receiver<bool>,
) -> Exit {
    let limits = &shared.config.limits;
    let started = tokio::time::Instant::now();
    let deadline = started + LIFETIME;
    let wait_until = started + Duration::from_millis(limits.rendezvous_wait_ms);
    let idle = Duration::from_millis(limits.rendezvous_idle_ms);
    // Any frame from either side, once paired, counts as activity.
    let mut active = started;
    let mut queued = vec![first];
    let mut sent = 1usize;
    let max_frame = shared.config.limits.max_frame_len;
    let exit = loop {
        if let Peer::Paired(to_peer) = &peer {
            for p in queued.drain(..) {
                // Never full: the channel holds as many as a side may send.
                let _ = to_peer.try_send(p);
            }
        }
        let is_paired = matches!(peer, Peer::Paired(_));
        let paired = async {
            match &mut peer {
                Peer::Waiting(_, rx) => rx.await.ok(),
                Peer::Paired(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            tx = paired => match tx {
                Some(tx) => {
                    peer = Peer::Paired(tx);
                    active = tokio::time::Instant::now();
                }
                None => break Exit::new(CloseReason::GoingAway, "rendezvous slot taken over"),
            },
            got = inbox.recv() => match got {
                Some(payload) => {
                    active = tokio::time::Instant::now();
                    let Some(f) = encode(&RelayFrame::Rendezvous { payload }) else { continue };
                    if writer.feed(f).await.is_err() || writer.flush().await.is_err() {
                        break Exit::new(CloseReason::GoingAway, "peer gone");
                    }
                }
                None => break Exit::new(CloseReason::GoingAway, "the other side of the link left"),
            },
            frame = reader.recv() => {
                let bytes = match frame {
                    Ok(Some(b)) => b,
                    Ok(None) | Err(_) => break Exit::new(CloseReason::GoingAway, "closed"),
                };
                active = tokio::time::Instant::now();
                match codec::decode_with_limit::<ClientFrame>(&bytes, max_frame) {
                    Ok(ClientFrame::Rendezvous { slot: s, payload }) => {
                        if s != slot {
                            break Exit::error(ErrorCode::InvalidRequest, "a rendezvous connection names one slot");
                        }
                        if payload.len() > MAX_RENDEZVOUS_PAYLOAD {
                            break Exit::error(ErrorCode::InvalidRequest, "rendezvous payload too large");
                        }
                        sent += 1;
                        if sent > MAX_RENDEZVOUS_MESSAGES {
                            break Exit::error(ErrorCode::RateLimited, "too many rendezvous messages");
                        }
                        queued.push(payload);
                    }
                    Ok(ClientFrame::Ping { nonce }) => {
                        if let Some(f) = encode(&RelayFrame::Pong { nonce }) {
                            let _ = writer.feed(f).await;
                            let _ = writer.flush().await;
                        }
                    }
                    Ok(_) => break Exit::error(ErrorCode::UnexpectedFrame, "only Rendezvous and Ping on a rendezvous connection"),
                    Err(e) => break Exit::error(ErrorCode::Malformed, &e.to_string()),
                }
            }
            _ = tokio::time::sleep_until(deadline) => break Exit::new(CloseReason::IdleTimeout, "rendezvous expired"),
            _ = tokio::time::sleep_until(wait_until), if !is_paired => {
                break Exit::new(CloseReason::IdleTimeout, "nobody came to this rendezvous in time");
            }
            _ = tokio::time::sleep_until(active + idle), if is_paired => {
                break Exit::new(CloseReason::IdleTimeout, "the rendezvous went quiet");
            }
            _ = stopped(shutdown) => break Exit::new(CloseReason::GoingAway, "relay is shutting down"),
        }
    };
    if let Peer::Waiting(id, _) = peer {
        let mut waiting = shared.rendezvous.lock();
        if waiting.get(&slot).is_some_and(|w| w.id == id) {
            waiting.remove(&slot);
        }
    }
    exit
}
