//! The delivery pump: sends a connection every log entry it has not seen, in seq
//! order per group, first the backlog (from the resume point) and then live
//! entries, with no gap and no duplicate.
//!
//! The pump keeps, per group, the next seq to send. When woken it sends from
//! there up to the newest known seq: from the fan-out's cache of encoded frames
//! when present (the same `Bytes` for every recipient), otherwise from the store.
//! Since it only ever moves `next` forward by what it sent, a missed or reordered
//! wake-up costs a store read, never a gap or a duplicate. Before each round it
//! confirms membership in the store, so a device removed by a commit receives
//! nothing after that commit even if the removal event is still in flight.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use hush_protocol::frame::{Direction, GroupStatus, Notice, Ready, RelayFrame};
use hush_protocol::{GroupId, WireError};

use super::handshake::Proven;
use super::queue::{self, SendTimeoutError};
use super::{Closer, Delivered, Exit, encode};
use crate::fanout::{ConnHandle, Work};
use crate::state::Shared;
use crate::store::StoreError;
use hush_protocol::frame::CloseReason;

const READ_BATCH: usize = 128;

#[derive(Clone, Copy, Debug)]
struct GroupCursor {
    /// Next seq to send.
    next: u64,
    /// Send nothing after this seq (the device was removed by that commit).
    stop_after: Option<u64>,
}

/// What a connection starts delivery from.
pub struct Start {
    /// The `Ready` frame to send first.
    pub ready: Ready,
    /// Groups the device is an active member of.
    pub active_groups: Vec<GroupId>,
    cursors: HashMap<GroupId, GroupCursor>,
    heads: Vec<(GroupId, u64)>,
    removed: Vec<(GroupId, u64)>,
    inbox_after: u64,
    inbox_head: u64,
}

/// Loads the device's groups, subscribes the connection, and computes where
/// delivery resumes. The connection is registered with the fan-out before any
/// state is read, so nothing appended meanwhile is missed.
pub async fn start(shared: &Shared, conn: &Arc<ConnHandle>, proven: &Proven) -> Result<Start, WireError> {
    shared.fanout.attach(conn, &[]);
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
        heads: Vec::new(),
        removed: Vec::new(),
        inbox_after: 0,
        inbox_head: 0,
    };
    for m in &memberships {
        let after = hints.get(&m.group).copied().unwrap_or(m.cursor).max(m.joined_seq);
        match m.removed_seq {
            None => s.active_groups.push(m.group.clone()),
            Some(r) if after < r => {
                s.cursors.insert(
                    m.group.clone(),
                    GroupCursor {
                        next: after + 1,
                        stop_after: Some(r),
                    },
                );
                s.heads.push((m.group.clone(), r));
                s.removed.push((m.group.clone(), r));
            }
            Some(r) => {
                if hints.contains_key(&m.group) {
                    s.removed.push((m.group.clone(), r));
                }
            }
        }
    }
    shared.fanout.join_groups(conn, &s.active_groups);
    for m in memberships.iter().filter(|m| m.removed_seq.is_none()) {
        let Some(g) = shared.store.group(&m.group).await? else {
            continue;
        };
        let after = hints.get(&m.group).copied().unwrap_or(m.cursor).max(m.joined_seq);
        s.cursors.insert(
            m.group.clone(),
            GroupCursor {
                next: after + 1,
                stop_after: None,
            },
        );
        s.heads.push((m.group.clone(), g.head_seq));
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

struct Pump {
    shared: Arc<Shared>,
    conn: Arc<ConnHandle>,
    out: queue::Sender<Bytes>,
    closer: Closer,
    delivered: Arc<Delivered>,
    cursors: HashMap<GroupId, GroupCursor>,
    inbox_next: u64,
}

/// Why the pump stopped.
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

/// Runs the pump until the connection ends.
///
/// The backlog and each round of work run in boxed futures: a task keeps room
/// for its largest state for its whole life, and an idle pump then holds only
/// its wait for work, not the state of a delivery (store reads, a timed send).
pub async fn pump(
    shared: Arc<Shared>,
    conn: Arc<ConnHandle>,
    start: Start,
    out: queue::Sender<Bytes>,
    closer: Closer,
    delivered: Arc<Delivered>,
) {
    let Start {
        ready,
        active_groups,
        cursors,
        heads,
        removed,
        inbox_after,
        inbox_head,
    } = start;
    // The session sent these already; the pump does not keep them.
    drop((ready, active_groups));
    let mut p = Pump {
        shared,
        conn,
        out,
        closer: closer.clone(),
        delivered,
        cursors,
        inbox_next: inbox_after + 1,
    };
    for (g, c) in &p.cursors {
        p.delivered.set(g, c.next - 1);
    }
    if Box::pin(p.backlog(heads, removed, inbox_head)).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            _ = p.conn.wait_for_work() => {}
            _ = closer.closed() => return,
        }
        let work = p.conn.take_work();
        if Box::pin(p.round(work)).await.is_err() {
            return;
        }
    }
}

fn notice(n: Notice) -> Option<Bytes> {
    encode(&RelayFrame::Notice(n))
}

impl Pump {
    /// What accumulated while the device was away.
    async fn backlog(
        &mut self,
        heads: Vec<(GroupId, u64)>,
        removed: Vec<(GroupId, u64)>,
        inbox_head: u64,
    ) -> Result<(), Stop> {
        for (g, head) in &heads {
            self.deliver(g, *head).await?;
        }
        for (g, seq) in removed {
            self.removed(g, seq).await?;
        }
        self.deliver_inbox(inbox_head).await
    }

    /// One wake-up's work: groups joined, left, with new entries, the inbox.
    async fn round(&mut self, work: Work) -> Result<(), Stop> {
        for (g, seq) in work.added {
            self.cursors.insert(
                g.clone(),
                GroupCursor {
                    next: seq + 1,
                    stop_after: None,
                },
            );
            self.delivered.set(&g, seq);
            self.send(notice(Notice::Added { group: g.clone(), seq })).await?;
            let head = self.shared.store.group(&g).await?.map_or(seq, |r| r.head_seq);
            self.deliver(&g, head).await?;
        }
        for (g, seq) in work.removed {
            self.removed(g, seq).await?;
        }
        for (g, head) in work.groups {
            self.deliver(&g, head).await?;
        }
        if let Some(h) = work.inbox {
            self.deliver_inbox(h).await?;
        }
        Ok(())
    }

    async fn send(&self, frame: Option<Bytes>) -> Result<(), Stop> {
        let Some(frame) = frame else { return Ok(()) };
        match self
            .out
            .send_timeout(frame, self.shared.config.limits.slow_consumer_timeout())
            .await
        {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::Timeout(_)) => {
                self.closer.close(Exit::Close(
                    CloseReason::SlowConsumer,
                    "client is not reading fast enough; reconnect to resume from your cursor".into(),
                ));
                Err(Stop::Closed)
            }
            Err(SendTimeoutError::Closed(_)) => Err(Stop::Closed),
        }
    }

    async fn removed(&mut self, group: GroupId, seq: u64) -> Result<(), Stop> {
        if let Some(c) = self.cursors.get_mut(&group) {
            c.stop_after = Some(seq);
            self.deliver(&group, seq).await?;
        }
        self.cursors.remove(&group);
        self.send(notice(Notice::Removed { group, seq })).await
    }

    /// Sends `group`'s entries from the cursor up to `head`.
    async fn deliver(&mut self, group: &GroupId, head: u64) -> Result<(), Stop> {
        let Some(mut c) = self.cursors.get(group).copied() else {
            return Ok(());
        };
        if c.next > head {
            return Ok(());
        }
        // Authoritative membership check, once per round.
        if c.stop_after.is_none() {
            match self.shared.store.membership(self.conn.device, group).await? {
                Some(m) if m.removed_seq.is_none() => {}
                Some(m) => c.stop_after = m.removed_seq,
                None => c.stop_after = Some(0),
            }
        }
        let limit = head.min(c.stop_after.unwrap_or(u64::MAX));
        while c.next <= limit {
            if let Some(frame) = self.shared.fanout.cached(group, c.next) {
                self.send(Some(frame)).await?;
                c.next += 1;
                continue;
            }
            let entries = self
                .shared
                .store
                .read_log(group, c.next, Direction::Forward, READ_BATCH)
                .await?;
            let first = match entries.first() {
                Some(e) => e.seq,
                None => {
                    // Nothing at or after `next`: either truncated away entirely or
                    // not yet visible (it is durable before it is announced, so the
                    // former).
                    let g = self.shared.store.group(group).await?;
                    match g {
                        Some(g) if g.first_seq > c.next => g.first_seq,
                        _ => break,
                    }
                }
            };
            if first > c.next {
                self.send(notice(Notice::Truncated {
                    group: group.clone(),
                    first_available: first,
                }))
                .await?;
                c.next = first;
            }
            for e in entries {
                if e.seq > limit {
                    break;
                }
                if e.seq < c.next {
                    continue;
                }
                let seq = e.seq;
                self.send(encode(&RelayFrame::Deliver(e))).await?;
                c.next = seq + 1;
            }
        }
        self.delivered.set(group, c.next - 1);
        self.cursors.insert(group.clone(), c);
        Ok(())
    }

    async fn deliver_inbox(&mut self, head: u64) -> Result<(), Stop> {
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
                self.send(encode(&RelayFrame::Inbox(e))).await?;
                self.inbox_next = seq + 1;
                self.delivered.inbox.store(seq, Ordering::Release);
            }
        }
        Ok(())
    }
}
