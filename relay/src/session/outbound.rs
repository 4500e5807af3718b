//! A connection's outbound task: everything the relay sends on it, in one
//! task, with one flush per burst.
//!
//! It sends the responses of the request task, ephemeral signals and presence,
//! and every log entry the connection has not seen, in seq order per group:
//! first the backlog (from the resume point) and then live entries, with no
//! gap and no duplicate. Per group it keeps the next seq to send; when woken
//! it sends from there up to the group's head *as applied to the live view*:
//! from the view's cache of encoded frames (the same `Bytes` for every
//! recipient) or, for a backlog, from the log with a byte budget. Since the
//! live view applies entries in seq order and a removal takes the device off
//! the group's watchers before any later entry is applied, delivery needs no
//! membership read: a device removed by the commit at seq `S` is sent entries
//! up to `S`, then `Notice::Removed`, then nothing more of the group.
//!
//! Frames are gathered into a batch and written with one flush (one TLS
//! record run and one system call for a burst, rather than one per frame).
//! A batch that cannot be written within `slow_consumer_timeout` closes the
//! connection as a slow consumer; the device resumes from its cursor.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use hush_protocol::frame::{CloseReason, Direction, GroupStatus, Notice, Ready, RelayFrame};
use hush_protocol::{GroupId, WireError};
use tokio::time::timeout;

use super::handshake::Proven;
use super::{Closer, Delivered, Exit, encode, send_closing};
use crate::grouplog::{Change, ConnHandle, LiveGroup, Work};
use crate::queue;
use crate::state::Shared;
use crate::store::StoreError;
use crate::transport::FrameWriter;

/// Entries read from the log at a time for a backlog.
const READ_BATCH: usize = 256;
/// Payload bytes read from the log at a time for a backlog.
const READ_BYTES: usize = 1 << 20;
/// Bytes gathered before they are written and flushed.
const WRITE_BATCH_BYTES: usize = 256 << 10;

struct GroupCursor {
    /// Next seq to send.
    next: u64,
    /// Send nothing after this seq (the device was removed by that commit).
    stop_after: Option<u64>,
    /// The group's live state (none for a group the device left while away).
    live: Option<Arc<LiveGroup>>,
}

/// What a connection starts delivery from.
pub struct Start {
    /// The `Ready` frame to send first.
    pub ready: Ready,
    /// Groups the device is an active member of.
    pub active_groups: Vec<GroupId>,
    cursors: HashMap<GroupId, GroupCursor>,
    removed: Vec<(GroupId, u64)>,
    inbox_after: u64,
    inbox_head: u64,
}

/// Loads the device's groups, makes the connection a watcher of them, and
/// computes where delivery resumes. The caller has registered the connection
/// with the live view ([`super::Watching`]), and interest in each group is
/// confirmed here before any head is read, so nothing appended meanwhile is
/// missed.
pub async fn start(shared: &Shared, conn: &Arc<ConnHandle>, proven: &Proven) -> Result<Start, WireError> {
    let live = shared.log.live();
    let memberships = shared.store.memberships(conn.device).await?;
    let hints: HashMap<&GroupId, u64> = proven.resume.iter().map(|r| (&r.group, r.after_seq)).collect();
    let mut s = Start {
        ready: Ready {
            device: conn.device,
            registered: proven.device.registered,
            groups: Vec::new(),
            inbox_acked: 0,
        },
        active_groups: Vec::new(),
        cursors: HashMap::new(),
        removed: Vec::new(),
        inbox_after: 0,
        inbox_head: 0,
    };
    for m in &memberships {
        // A hint below the join point means the join point; one above the
        // removing commit, that commit.
        let after = hints.get(&m.group).copied().unwrap_or(m.cursor).max(m.joined_seq);
        match m.removed_seq {
            None => {
                let (_, new) = live.watch(conn, &m.group);
                if new {
                    shared.log.subscribe(&m.group).await;
                }
                s.active_groups.push(m.group.clone());
            }
            Some(r) if after < r => {
                s.cursors.insert(
                    m.group.clone(),
                    GroupCursor {
                        next: after + 1,
                        stop_after: Some(r),
                        live: None,
                    },
                );
                s.removed.push((m.group.clone(), r));
            }
            Some(r) => {
                if hints.contains_key(&m.group) {
                    s.removed.push((m.group.clone(), r));
                }
            }
        }
    }
    for m in memberships.iter().filter(|m| m.removed_seq.is_none()) {
        let Some(g) = shared.log.load_view(&m.group).await? else {
            continue;
        };
        // A hint above the head means the head (`Ready` says so): taken as
        // is, the entries appended next would never be sent.
        let after = hints
            .get(&m.group)
            .copied()
            .unwrap_or(m.cursor)
            .max(m.joined_seq)
            .min(g.head_seq);
        s.cursors.insert(
            m.group.clone(),
            GroupCursor {
                next: after + 1,
                stop_after: None,
                live: live.group(&m.group),
            },
        );
        s.ready.groups.push(GroupStatus {
            group: m.group.clone(),
            head_seq: g.head_seq,
            resume_after: after,
            epoch: g.epoch,
        });
    }
    let (acked, head) = shared.store.inbox_state(conn.device).await?;
    s.ready.inbox_acked = acked;
    s.inbox_after = acked;
    s.inbox_head = head;
    Ok(s)
}

/// Why the outbound task stopped.
enum Stop {
    /// The connection is ending.
    Closed,
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "store read failed during delivery");
        Stop::Closed
    }
}

/// Frames gathered for one write.
#[derive(Default)]
struct Batch {
    frames: Vec<Bytes>,
    bytes: usize,
}

impl Batch {
    fn push(&mut self, f: Bytes) {
        self.bytes += f.len();
        self.frames.push(f);
    }

    fn full(&self) -> bool {
        self.bytes >= WRITE_BATCH_BYTES
    }
}

/// The task's state.
pub struct Outbound {
    shared: Arc<Shared>,
    conn: Arc<ConnHandle>,
    writer: Box<dyn FrameWriter>,
    responses: queue::Receiver<Bytes>,
    direct: queue::Receiver<Bytes>,
    closer: Closer,
    delivered: Arc<Delivered>,
    cursors: HashMap<GroupId, GroupCursor>,
    inbox_next: u64,
    stall: Duration,
}

/// Runs the outbound side of a connection until it ends, then sends what is
/// queued and a `Closing` frame when the relay closes it.
///
/// The backlog and each round run in boxed futures: a task keeps room for its
/// largest state for its whole life, and an idle connection then holds only
/// its waits, not the state of a delivery.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    shared: Arc<Shared>,
    conn: Arc<ConnHandle>,
    writer: Box<dyn FrameWriter>,
    start: Start,
    responses: queue::Receiver<Bytes>,
    direct: queue::Receiver<Bytes>,
    closer: Closer,
    delivered: Arc<Delivered>,
) {
    let Start {
        ready,
        active_groups,
        cursors,
        removed,
        inbox_after,
        inbox_head,
    } = start;
    drop(active_groups);
    let stall = shared.config.limits.slow_consumer_timeout();
    let mut o = Outbound {
        shared,
        conn,
        writer,
        responses,
        direct,
        closer: closer.clone(),
        delivered,
        cursors,
        inbox_next: inbox_after + 1,
        stall,
    };
    for (g, c) in &o.cursors {
        o.delivered.set(g, c.next - 1);
    }
    let mut ok = Box::pin(o.backlog(ready, removed, inbox_head)).await.is_ok();
    while ok {
        let first = tokio::select! {
            biased;
            _ = closer.closed() => break,
            f = o.responses.recv() => match f { Some(f) => Some(f), None => break },
            f = o.direct.recv() => match f { Some(f) => Some(f), None => break },
            _ = o.conn.wait_for_work() => None,
        };
        ok = Box::pin(o.round(first)).await.is_ok();
    }
    o.finish().await;
}

fn notice(n: Notice) -> Option<Bytes> {
    encode(&RelayFrame::Notice(n))
}

impl Outbound {
    /// `Ready`, then what accumulated while the device was away.
    async fn backlog(&mut self, ready: Ready, removed: Vec<(GroupId, u64)>, inbox_head: u64) -> Result<(), Stop> {
        let mut batch = Batch::default();
        if let Some(f) = encode(&RelayFrame::Ready(ready)) {
            batch.push(f);
        }
        let groups: Vec<GroupId> = self.cursors.keys().cloned().collect();
        for g in &groups {
            self.deliver(g, &mut batch).await?;
        }
        for (g, seq) in removed {
            self.removed(g, seq, &mut batch).await?;
        }
        self.deliver_inbox(inbox_head, &mut batch).await?;
        self.write(&mut batch).await
    }

    /// One wake-up: queued responses and signals, membership changes in log
    /// order, groups with new entries, the inbox; one flush.
    async fn round(&mut self, first: Option<Bytes>) -> Result<(), Stop> {
        let mut batch = Batch::default();
        if let Some(f) = first {
            batch.push(f);
        }
        while let Ok(f) = self.responses.try_recv() {
            batch.push(f);
        }
        while let Ok(f) = self.direct.try_recv() {
            batch.push(f);
        }
        let Work { groups, changes, inbox } = self.conn.take_work();
        for change in changes {
            match change {
                Change::Added(g, seq) => self.added(g, seq, &mut batch).await?,
                Change::Removed(g, seq) => self.removed(g, seq, &mut batch).await?,
                Change::Revoked => {
                    self.closer.close(Exit::Close(
                        CloseReason::AuthFailed,
                        "this device was revoked by a device of its user".into(),
                    ));
                    return Err(Stop::Closed);
                }
            }
        }
        for g in &groups {
            self.deliver(g, &mut batch).await?;
        }
        if let Some(h) = inbox {
            self.deliver_inbox(h, &mut batch).await?;
        }
        self.write(&mut batch).await
    }

    /// Writes and flushes the batch within the stall deadline.
    async fn write(&mut self, batch: &mut Batch) -> Result<(), Stop> {
        if batch.frames.is_empty() {
            return Ok(());
        }
        let frames = std::mem::take(&mut batch.frames);
        batch.bytes = 0;
        let writer = &mut self.writer;
        let write = async move {
            for f in frames {
                writer.feed(f).await?;
            }
            writer.flush().await
        };
        match timeout(self.stall, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => {
                self.closer.close(Exit::Peer);
                Err(Stop::Closed)
            }
            Err(_) => {
                self.closer.close(Exit::Close(
                    CloseReason::SlowConsumer,
                    "client is not reading fast enough; reconnect to resume from your cursor".into(),
                ));
                Err(Stop::Closed)
            }
        }
    }

    async fn push(&mut self, batch: &mut Batch, frame: Option<Bytes>) -> Result<(), Stop> {
        if let Some(f) = frame {
            batch.push(f);
            if batch.full() {
                self.write(batch).await?;
            }
        }
        Ok(())
    }

    async fn added(&mut self, group: GroupId, seq: u64, batch: &mut Batch) -> Result<(), Stop> {
        let live = self.shared.log.live().group(&group);
        self.cursors.insert(
            group.clone(),
            GroupCursor {
                next: seq + 1,
                stop_after: None,
                live,
            },
        );
        self.delivered.set(&group, seq);
        self.push(
            batch,
            notice(Notice::Added {
                group: group.clone(),
                seq,
            }),
        )
        .await?;
        self.deliver(&group, batch).await
    }

    async fn removed(&mut self, group: GroupId, seq: u64, batch: &mut Batch) -> Result<(), Stop> {
        if let Some(c) = self.cursors.get_mut(&group) {
            c.stop_after = Some(seq);
            self.deliver(&group, batch).await?;
        }
        self.cursors.remove(&group);
        self.push(batch, notice(Notice::Removed { group, seq })).await
    }

    /// Sends `group`'s entries from the cursor up to what may be sent now.
    async fn deliver(&mut self, group: &GroupId, batch: &mut Batch) -> Result<(), Stop> {
        let Some(c) = self.cursors.get(group) else {
            return Ok(());
        };
        let (mut next, live) = (c.next, c.live.clone());
        let limit = match (c.stop_after, &live) {
            // Removed by the commit at `stop`: it was applied, so entries up
            // to it may be sent.
            (Some(stop), _) => stop,
            (None, Some(l)) => {
                let d = l.deliverable(self.conn.id);
                if !d.watching {
                    // Removed (the change is in the work) or detached.
                    return Ok(());
                }
                d.head
            }
            (None, None) => return Ok(()),
        };
        while next <= limit {
            if let Some(l) = &live {
                let budget = WRITE_BATCH_BYTES.saturating_sub(batch.bytes).max(1);
                let (taken, bytes) = l.frames(next, limit, budget, &mut batch.frames);
                if taken > next {
                    batch.bytes += bytes;
                    next = taken;
                    if batch.full() {
                        self.write(batch).await?;
                    }
                    continue;
                }
            }
            let entries = self
                .shared
                .log
                .read(group, next, Direction::Forward, READ_BATCH, READ_BYTES)
                .await?;
            let first = match entries.first() {
                Some(e) => e.seq,
                None => {
                    // Nothing at or after `next`: truncated away entirely (an
                    // entry is durable before it is applied, so it is not
                    // "not yet written").
                    match self.shared.log.record(group).await? {
                        Some(g) if g.first_seq > next => g.first_seq,
                        _ => break,
                    }
                }
            };
            if first > next {
                let n = notice(Notice::Truncated {
                    group: group.clone(),
                    first_available: first,
                });
                self.push(batch, n).await?;
                next = first;
            }
            for e in entries {
                if e.seq > limit {
                    break;
                }
                if e.seq < next {
                    continue;
                }
                let seq = e.seq;
                self.push(batch, encode(&RelayFrame::Deliver(e))).await?;
                next = seq + 1;
            }
        }
        self.delivered.set(group, next - 1);
        if let Some(c) = self.cursors.get_mut(group) {
            c.next = next;
        }
        Ok(())
    }

    async fn deliver_inbox(&mut self, head: u64, batch: &mut Batch) -> Result<(), Stop> {
        while self.inbox_next <= head {
            let entries = self
                .shared
                .store
                .inbox_read(self.conn.device, self.inbox_next - 1, READ_BATCH)
                .await?;
            if entries.is_empty() {
                break;
            }
            for e in entries {
                let seq = e.seq;
                self.push(batch, encode(&RelayFrame::Inbox(e))).await?;
                self.inbox_next = seq + 1;
                self.delivered.inbox.store(seq, Ordering::Release);
            }
        }
        Ok(())
    }

    /// The connection is ending: frames already queued (e.g. the error that
    /// caused the close) go first, then `Closing` when the relay closes it.
    async fn finish(mut self) {
        match self.closer.exit() {
            Some(Exit::Close(reason, msg)) => {
                let _ = timeout(Duration::from_millis(500), async {
                    while let Ok(f) = self.responses.try_recv() {
                        if self.writer.feed(f).await.is_err() {
                            break;
                        }
                    }
                })
                .await;
                send_closing(&mut *self.writer, reason, &msg).await;
            }
            _ => {
                let _ = timeout(Duration::from_secs(1), self.writer.close(CloseReason::GoingAway, "")).await;
            }
        }
    }
}
