//! What every connection of a relay shares.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hush_protocol::{DeviceId, GroupId};
use tokio::sync::{mpsc, oneshot};

use crate::bus::Bus;
use crate::config::Config;
use crate::grouplog::GroupLog;
use crate::ratelimit::RateLimiter;
use crate::store::Store;
use crate::token::TokenVerifier;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The relay's shared state.
pub struct Shared {
    /// Configuration.
    pub config: Config,
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// Cross-relay fan-out.
    pub bus: Arc<dyn Bus>,
    /// Group logs: appends, reads, and the live view of active groups.
    pub log: Arc<dyn GroupLog>,
    /// Per-device token buckets.
    pub rate: RateLimiter,
    /// Per-device directory lookup buckets (`ListDevices`, `ClaimKeyPackages`
    /// of other users), by the asking device.
    pub lookups: RateLimiter,
    /// Per-device one-time key package buckets, by the device whose packages
    /// are claimed; in memory only.
    pub one_time_claims: RateLimiter,
    /// Registration token verification.
    pub tokens: TokenVerifier,
    /// Cursor acknowledgements, batched.
    pub acks: AckBatcher,
    /// Online devices on this relay.
    pub presence: Arc<crate::presence::Presence>,
    /// Live connections.
    pub connections: Arc<AtomicUsize>,
    /// Next connection id.
    pub next_conn_id: AtomicU64,
    /// Device-linking rendezvous slots waiting for their second side.
    pub rendezvous: crate::session::rendezvous::Slots,
    /// Which web pages may open sessions.
    pub origins: Arc<crate::transport::OriginPolicy>,
    /// Held from counting a user's devices to registering a new one, so
    /// concurrent registrations cannot pass `max_devices_per_user` together.
    pub registering: tokio::sync::Mutex<()>,
}

impl Shared {
    /// A fresh connection id.
    pub fn conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }
}

enum AckMsg {
    Advance(DeviceId, GroupId, u64),
    Flush(oneshot::Sender<()>),
}

/// Collects cursor acknowledgements and writes them in batches, so a client
/// acknowledging every message does not cost a transaction per message.
///
/// The first acknowledgement after a write starts the batch's clock: the batch
/// is written at most `interval` later however fast acknowledgements keep
/// arriving (or earlier, once it holds [`ACK_BATCH_MAX`] cursors). A crash
/// loses at most one interval of cursor movement, which only means entries are
/// delivered again (clients drop seqs they have already seen, and resume hints
/// let a client say exactly where it is).
#[derive(Clone)]
pub struct AckBatcher {
    tx: mpsc::Sender<AckMsg>,
}

/// Cursors written in one batch at most; a fuller batch is written at once.
pub const ACK_BATCH_MAX: usize = 1000;

impl AckBatcher {
    /// Starts the batcher task.
    pub fn spawn(store: Arc<dyn Store>, interval: Duration) -> Self {
        let (tx, mut rx) = mpsc::channel::<AckMsg>(8192);
        tokio::spawn(async move {
            let mut pending: HashMap<(DeviceId, GroupId), u64> = HashMap::new();
            let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
            // When the oldest unwritten acknowledgement must be on disk.
            let mut due: Option<tokio::time::Instant> = None;
            loop {
                let msg = match due {
                    None => rx.recv().await,
                    Some(at) => tokio::select! {
                        m = rx.recv() => m,
                        _ = tokio::time::sleep_until(at) => {
                            flush(&*store, &mut pending, &mut waiters).await;
                            due = None;
                            continue;
                        }
                    },
                };
                match msg {
                    None => {
                        flush(&*store, &mut pending, &mut waiters).await;
                        return;
                    }
                    Some(AckMsg::Advance(d, g, s)) => {
                        let e = pending.entry((d, g)).or_insert(0);
                        *e = (*e).max(s);
                        due.get_or_insert_with(|| tokio::time::Instant::now() + interval);
                        if pending.len() >= ACK_BATCH_MAX {
                            flush(&*store, &mut pending, &mut waiters).await;
                            due = None;
                        }
                    }
                    Some(AckMsg::Flush(w)) => {
                        waiters.push(w);
                        flush(&*store, &mut pending, &mut waiters).await;
                        due = None;
                    }
                }
            }
        });
        AckBatcher { tx }
    }

    /// Records an acknowledgement.
    pub async fn advance(&self, device: DeviceId, group: GroupId, seq: u64) {
        let _ = self.tx.send(AckMsg::Advance(device, group, seq)).await;
    }

    /// Writes everything recorded so far; returns when it is durable.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(AckMsg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn flush(
    store: &dyn Store,
    pending: &mut HashMap<(DeviceId, GroupId), u64>,
    waiters: &mut Vec<oneshot::Sender<()>>,
) {
    if !pending.is_empty() {
        let batch: Vec<_> = pending.drain().map(|((d, g), s)| (d, g, s)).collect();
        if let Err(e) = store.advance_cursors(batch).await {
            tracing::warn!(error = %e, "writing cursors failed; entries may be delivered again");
        }
    }
    for w in waiters.drain(..) {
        let _ = w.send(());
    }
}
