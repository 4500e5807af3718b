//! This relay's live view of its active groups, and who here listens to them.
//!
//! For every group with a connection on this relay, a [`LiveGroup`] holds the
//! group's view (roster, policy, epoch, head, first retained seq), the local
//! connections watching it, and the encoded `Deliver` frames of its newest
//! entries (one `Bytes` per entry, shared by every recipient). Appended
//! entries are applied to it **in seq order**: an entry that arrives before
//! its predecessor waits, so the view, the frame cache and every connection's
//! work always describe a prefix of the log. That is what lets the delivery
//! path skip the store entirely: a connection is sent entries only up to the
//! view's head, and a device removed by the commit at seq `S` has left the
//! group's watchers (and been told `Removed(S)`) before any entry after `S`
//! can be handed to it.
//!
//! A connection's [`ConnHandle`] collects *work* (membership changes in log
//! order, groups with new entries, inbox growth) and wakes its outbound task,
//! which sends whatever the connection has not seen: from the frame cache, or
//! from the store for a backlog. A burst coalesces into one wake-up and one
//! socket flush.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use hush_protocol::frame::Policy;
use hush_protocol::{DeviceId, GroupId, UserId};
use tokio::sync::Notify;

use crate::queue;
use crate::store::GroupRecord;

/// Encoded frames kept per group for live delivery, at most.
const RECENT_FRAMES: usize = 512;
/// Bytes of encoded frames kept per group, at most.
const RECENT_BYTES: usize = 4 << 20;
/// Entries that may wait for a missing predecessor before the group is
/// reloaded from the store.
const MAX_PENDING: usize = 4096;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A membership change of this connection's device, in log order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The device joined `group` at the commit `seq` (0: it created the group).
    Added(GroupId, u64),
    /// The device was removed from `group` by the commit `seq`.
    Removed(GroupId, u64),
    /// The device was revoked: the connection ends.
    Revoked,
}

/// Work for one connection's outbound task.
#[derive(Debug, Default)]
pub struct Work {
    /// Groups with new entries (the task delivers up to the view's head).
    pub groups: HashSet<GroupId>,
    /// Membership changes, in the order the log made them.
    pub changes: Vec<Change>,
    /// The newest inbox seq, if the inbox grew.
    pub inbox: Option<u64>,
}

impl Work {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.changes.is_empty() && self.inbox.is_none()
    }
}

/// What the live view knows about one connection.
#[derive(Debug)]
pub struct ConnHandle {
    /// Unique per relay process.
    pub id: u64,
    /// The authenticated device.
    pub device: DeviceId,
    /// Its user.
    pub user: UserId,
    /// Frames that bypass the log (ephemeral signals, presence): dropped when
    /// the queue is full, since they are not durable anyway.
    pub direct: queue::Sender<Bytes>,
    work: Mutex<Work>,
    /// Groups this connection watches (so detaching visits only those).
    watching: Mutex<Vec<GroupId>>,
    wake: Notify,
}

impl ConnHandle {
    /// A handle for a new connection.
    pub fn new(id: u64, device: DeviceId, user: UserId, direct: queue::Sender<Bytes>) -> Self {
        ConnHandle {
            id,
            device,
            user,
            direct,
            work: Mutex::new(Work::default()),
            watching: Mutex::new(Vec::new()),
            wake: Notify::new(),
        }
    }

    /// Takes the pending work (empty if none).
    pub fn take_work(&self) -> Work {
        std::mem::take(&mut *lock(&self.work))
    }

    /// Waits until there is work (returns at once if some arrived since the
    /// last wait).
    pub async fn wait_for_work(&self) {
        self.wake.notified().await;
    }

    /// The groups this connection watches.
    pub fn watching(&self) -> Vec<GroupId> {
        lock(&self.watching).clone()
    }

    fn with_work(&self, f: impl FnOnce(&mut Work)) {
        f(&mut lock(&self.work));
        self.wake.notify_one();
    }

    fn mark_group(&self, group: &GroupId) {
        self.with_work(|w| {
            if !w.groups.contains(group) {
                w.groups.insert(group.clone());
            }
        });
    }

    /// The inbox has entries up to `seq`.
    pub fn mark_inbox(&self, seq: u64) {
        self.with_work(|w| w.inbox = Some(w.inbox.unwrap_or(0).max(seq)));
    }

    fn mark_change(&self, change: Change) {
        self.with_work(|w| w.changes.push(change));
    }
}

/// A group as this relay currently knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupView {
    /// Current MLS epoch.
    pub epoch: u64,
    /// Newest seq applied here.
    pub head_seq: u64,
    /// Oldest retained seq.
    pub first_seq: u64,
    /// Current members.
    pub roster: BTreeSet<DeviceId>,
    /// Posting and admin policy.
    pub policy: Policy,
}

impl From<&GroupRecord> for GroupView {
    fn from(r: &GroupRecord) -> Self {
        GroupView {
            epoch: r.epoch,
            head_seq: r.head_seq,
            first_seq: r.first_seq,
            roster: r.roster.iter().copied().collect(),
            policy: r.policy.clone(),
        }
    }
}

/// An accepted entry, as the live view applies it.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The group.
    pub group: GroupId,
    /// The entry's seq.
    pub seq: u64,
    /// The group's epoch after the entry.
    pub epoch: u64,
    /// The encoded `RelayFrame::Deliver`.
    pub frame: Bytes,
    /// Devices the entry's commit added.
    pub added: Vec<DeviceId>,
    /// Devices the entry's commit removed.
    pub removed: Vec<DeviceId>,
}

/// One active group.
#[derive(Debug, Default)]
pub struct LiveGroup {
    state: Mutex<GroupState>,
}

#[derive(Debug, Default)]
struct GroupState {
    conns: Vec<Arc<ConnHandle>>,
    /// `None` until the first watcher read the group from the store.
    view: Option<GroupView>,
    /// Entries that arrived before their predecessor (or before the view).
    pending: BTreeMap<u64, Applied>,
    /// Frames of the newest applied entries, contiguous seqs.
    recent: VecDeque<(u64, Bytes)>,
    recent_bytes: usize,
}

/// What the outbound task may send of a group now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deliverable {
    /// Entries up to this seq have been applied here.
    pub head: u64,
    /// Whether the connection still watches the group (false once its device
    /// was removed: the removal is then in its work).
    pub watching: bool,
}

impl LiveGroup {
    /// The view, if loaded.
    pub fn view(&self) -> Option<GroupView> {
        lock(&self.state).view.clone()
    }

    /// Whether `device` is on the roster, if the view is loaded.
    pub fn has_member(&self, device: DeviceId) -> Option<bool> {
        lock(&self.state).view.as_ref().map(|v| v.roster.contains(&device))
    }

    /// Whether `device` is on the roster, and the group's epoch, if the view
    /// is loaded.
    pub fn member_at(&self, device: DeviceId) -> Option<(bool, u64)> {
        lock(&self.state)
            .view
            .as_ref()
            .map(|v| (v.roster.contains(&device), v.epoch))
    }

    /// How far connection `conn` may be sent entries now.
    pub fn deliverable(&self, conn: u64) -> Deliverable {
        let s = lock(&self.state);
        Deliverable {
            head: s.view.as_ref().map_or(0, |v| v.head_seq),
            watching: s.conns.iter().any(|c| c.id == conn),
        }
    }

    /// Appends to `out` the cached frames from `from` on, at most up to `to`
    /// and `max_bytes` (at least one frame if any); returns the next seq not
    /// taken and the bytes taken. Takes nothing when `from` is not cached.
    pub fn frames(&self, from: u64, to: u64, max_bytes: usize, out: &mut Vec<Bytes>) -> (u64, usize) {
        let s = lock(&self.state);
        let Some(&(first, _)) = s.recent.front() else {
            return (from, 0);
        };
        let Some(start) = from.checked_sub(first) else {
            return (from, 0);
        };
        let mut next = from;
        let mut bytes = 0usize;
        for (seq, frame) in s.recent.iter().skip(start as usize) {
            if *seq > to || (bytes > 0 && bytes + frame.len() > max_bytes) {
                break;
            }
            bytes += frame.len();
            out.push(frame.clone());
            next = seq + 1;
        }
        (next, bytes)
    }

    /// Signals for every watcher but `except`'s device.
    pub fn signal(&self, except: DeviceId, frame: &Bytes) {
        for c in lock(&self.state).conns.iter().filter(|c| c.device != except) {
            let _ = c.direct.try_send(frame.clone());
        }
    }

    fn has_conn(&self, id: u64) -> bool {
        lock(&self.state).conns.iter().any(|c| c.id == id)
    }
}

impl GroupState {
    fn push_recent(&mut self, seq: u64, frame: Bytes) {
        if self.recent.back().is_some_and(|(last, _)| last + 1 != seq) {
            self.recent.clear();
            self.recent_bytes = 0;
        }
        self.recent_bytes += frame.len();
        self.recent.push_back((seq, frame));
        while self.recent.len() > RECENT_FRAMES || (self.recent_bytes > RECENT_BYTES && self.recent.len() > 1) {
            if let Some((_, f)) = self.recent.pop_front() {
                self.recent_bytes -= f.len();
            }
        }
    }

    fn add_conn(&mut self, conn: &Arc<ConnHandle>) -> bool {
        if self.conns.iter().any(|c| c.id == conn.id) {
            return false;
        }
        self.conns.push(conn.clone());
        true
    }
}

/// The live view of every active group of this relay.
#[derive(Default)]
pub struct Live {
    groups: Mutex<HashMap<GroupId, Arc<LiveGroup>>>,
    devices: Mutex<HashMap<DeviceId, Vec<Arc<ConnHandle>>>>,
    /// Times a group had to be reloaded because an entry went missing.
    gaps: AtomicU64,
}

/// What [`Live::apply`] asks its caller to do afterwards.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Followup {
    /// Groups whose view must be (re)loaded from the store: new here, or too
    /// many entries wait for a missing one.
    pub reload: Vec<GroupId>,
    /// Groups where an entry now waits for a missing predecessor, with the
    /// seq that is missing: if it is still missing a moment later, the view is
    /// reloaded.
    pub gaps: Vec<(GroupId, u64)>,
}

impl Live {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a connection for its device (before its memberships are read,
    /// so membership changes from then on reach it).
    pub fn attach(&self, conn: &Arc<ConnHandle>) {
        lock(&self.devices).entry(conn.device).or_default().push(conn.clone());
    }

    /// The group's live state, if some connection here watches it.
    pub fn group(&self, group: &GroupId) -> Option<Arc<LiveGroup>> {
        lock(&self.groups).get(group).cloned()
    }

    /// Adds `conn` to the watchers of `group`. Returns the group and whether
    /// it is new here (then the caller confirms interest on the bus and loads
    /// the view).
    pub fn watch(&self, conn: &Arc<ConnHandle>, group: &GroupId) -> (Arc<LiveGroup>, bool) {
        // Under the map's lock, so a group losing its last watcher is never
        // forgotten while a new watcher joins it.
        let mut groups = lock(&self.groups);
        let (live, new) = match groups.get(group) {
            Some(g) => (g.clone(), false),
            None => {
                let g = Arc::new(LiveGroup::default());
                groups.insert(group.clone(), g.clone());
                (g, true)
            }
        };
        let mut s = lock(&live.state);
        // A loaded view is the truth: a device no longer on the roster does
        // not become a watcher again.
        let member = s.view.as_ref().is_none_or(|v| v.roster.contains(&conn.device));
        if member && s.add_conn(conn) {
            lock(&conn.watching).push(group.clone());
        }
        drop(s);
        (live, new)
    }

    /// Installs the view read from the store (after interest was confirmed),
    /// unless one is already there, and applies the entries that waited for it.
    pub fn install(&self, record: &GroupRecord) -> Followup {
        let mut follow = Followup::default();
        let Some(live) = self.group(&record.group) else {
            return follow;
        };
        let empty = {
            let mut s = lock(&live.state);
            if s.view.is_some() {
                return follow;
            }
            s.view = Some(GroupView::from(record));
            // Watchers whose device left the roster before the record was read.
            s.conns.retain(|c| {
                let keep = record.roster.contains(&c.device);
                if !keep {
                    lock(&c.watching).retain(|g| g != &record.group);
                }
                keep
            });
            // Entries the record already includes: their effect on the view is
            // in it; connections still hear of them.
            while let Some(entry) = s.pending.first_entry() {
                if *entry.key() > record.head_seq {
                    break;
                }
                let a = entry.remove();
                self.conn_effects(&mut s, &a);
            }
            self.drain(&mut s, &record.group, &mut follow);
            s.conns.is_empty()
        };
        if empty {
            self.forget_if_unwatched(&record.group);
        }
        follow
    }

    /// Applies an accepted entry (from this relay's appends or the bus).
    pub fn apply(&self, a: Applied) -> Followup {
        let mut follow = Followup::default();
        let live = match self.group(&a.group) {
            Some(g) => g,
            None => {
                // No watcher here, unless the commit adds a device connected here.
                let local = {
                    let devices = lock(&self.devices);
                    a.added.iter().any(|d| devices.contains_key(d))
                };
                if !local {
                    return follow;
                }
                let live = {
                    let mut groups = lock(&self.groups);
                    groups.entry(a.group.clone()).or_default().clone()
                };
                follow.reload.push(a.group.clone());
                live
            }
        };
        let group = a.group.clone();
        let empty = {
            let mut s = lock(&live.state);
            let head = s.view.as_ref().map(|v| v.head_seq);
            if head.is_some_and(|h| a.seq <= h) {
                return follow;
            }
            let was_waiting = !s.pending.is_empty();
            s.pending.insert(a.seq, a);
            self.drain(&mut s, &group, &mut follow);
            if !was_waiting
                && !s.pending.is_empty()
                && let Some(v) = &s.view
            {
                follow.gaps.push((group.clone(), v.head_seq + 1));
            }
            s.conns.is_empty() && s.view.is_some()
        };
        if empty {
            self.forget_if_unwatched(&group);
        }
        follow
    }

    /// Applies pending entries that follow the view's head, in order, under
    /// the group's lock: the view's head, the watchers and their work move
    /// together, so an outbound task never sees a head past a removal it was
    /// not told of.
    fn drain(&self, s: &mut GroupState, group: &GroupId, follow: &mut Followup) {
        loop {
            let Some(head) = s.view.as_ref().map(|v| v.head_seq) else {
                return;
            };
            let a = match s.pending.first_key_value().map(|(k, _)| *k) {
                Some(k) if k <= head => {
                    s.pending.pop_first();
                    continue;
                }
                Some(k) if k == head + 1 => match s.pending.pop_first() {
                    Some((_, a)) => a,
                    None => return,
                },
                Some(_) => {
                    // A gap: the missing entry may still be on its way
                    // (appends of one batch publish in any order); if too many
                    // wait, the caller reloads the group.
                    if s.pending.len() > MAX_PENDING && !follow.reload.contains(group) {
                        follow.reload.push(group.clone());
                    }
                    return;
                }
                None => return,
            };
            if let Some(v) = s.view.as_mut() {
                v.head_seq = a.seq;
                v.epoch = a.epoch;
                for d in &a.removed {
                    v.roster.remove(d);
                }
                for d in &a.added {
                    v.roster.insert(*d);
                }
            }
            s.push_recent(a.seq, a.frame.clone());
            self.conn_effects(s, &a);
        }
    }

    /// What an entry means for the connections here: removed devices stop
    /// watching (after being told), added ones start, everyone else has work.
    /// Called with the group's lock held (the devices lock nests inside it).
    fn conn_effects(&self, s: &mut GroupState, a: &Applied) {
        let (removed, added): (Vec<Arc<ConnHandle>>, Vec<Arc<ConnHandle>>) = {
            let map = lock(&self.devices);
            let of = |ds: &[DeviceId]| ds.iter().filter_map(|d| map.get(d)).flatten().cloned().collect();
            (of(&a.removed), of(&a.added))
        };
        for c in removed {
            s.conns.retain(|x| x.id != c.id);
            lock(&c.watching).retain(|g| g != &a.group);
            c.mark_change(Change::Removed(a.group.clone(), a.seq));
        }
        for c in added {
            if s.add_conn(&c) {
                lock(&c.watching).push(a.group.clone());
            }
            c.mark_change(Change::Added(a.group.clone(), a.seq));
        }
        for c in s.conns.iter().filter(|c| !a.added.contains(&c.device)) {
            c.mark_group(&a.group);
        }
    }

    /// Replaces a group's view with one read from the store after an entry
    /// went missing: watchers no longer on the roster are told they were
    /// removed (at the `removed_seq` of their membership, which the caller
    /// looked up), devices added meanwhile start watching, everyone gets work,
    /// the frame cache restarts.
    pub fn resync(&self, record: &GroupRecord, removed: &[(DeviceId, u64)], added: &[(DeviceId, u64)]) {
        let Some(live) = self.group(&record.group) else { return };
        self.gaps.fetch_add(1, Ordering::Relaxed);
        let group = &record.group;
        let mut s = lock(&live.state);
        let view = GroupView::from(record);
        let head = view.head_seq;
        s.pending.retain(|k, _| *k > head);
        s.view = Some(view);
        s.recent.clear();
        s.recent_bytes = 0;
        let conns = |ds: &[(DeviceId, u64)]| -> Vec<(Arc<ConnHandle>, u64)> {
            let map = lock(&self.devices);
            ds.iter()
                .filter_map(|(d, seq)| map.get(d).map(|cs| (cs, *seq)))
                .flat_map(|(cs, seq)| cs.iter().map(move |c| (c.clone(), seq)))
                .collect()
        };
        for (c, seq) in conns(removed) {
            if s.conns.iter().any(|x| x.id == c.id) {
                s.conns.retain(|x| x.id != c.id);
                lock(&c.watching).retain(|g| g != group);
                c.mark_change(Change::Removed(group.clone(), seq));
            }
        }
        for (c, seq) in conns(added) {
            if s.add_conn(&c) {
                lock(&c.watching).push(group.clone());
                c.mark_change(Change::Added(group.clone(), seq));
            }
        }
        for c in &s.conns {
            c.mark_group(group);
        }
        let mut follow = Followup::default();
        self.drain(&mut s, group, &mut follow);
    }

    /// Devices of this group's watchers (for a resync's membership lookups).
    pub fn watcher_devices(&self, group: &GroupId) -> Vec<DeviceId> {
        self.group(group)
            .map(|g| lock(&g.state).conns.iter().map(|c| c.device).collect())
            .unwrap_or_default()
    }

    /// Devices with a connection on this relay.
    pub fn local_devices(&self) -> Vec<DeviceId> {
        lock(&self.devices).keys().copied().collect()
    }

    /// Whether entry `seq` of the group is still missing while later ones wait.
    pub fn still_missing(&self, group: &GroupId, seq: u64) -> bool {
        self.group(group).is_some_and(|g| {
            let s = lock(&g.state);
            s.view.as_ref().is_some_and(|v| v.head_seq < seq) && !s.pending.is_empty()
        })
    }

    /// Whether an entry waits for a missing predecessor.
    pub fn has_gap(&self, group: &GroupId) -> bool {
        self.group(group).is_some_and(|g| {
            let s = lock(&g.state);
            match (s.view.as_ref(), s.pending.first_key_value()) {
                (Some(v), Some((k, _))) => *k > v.head_seq + 1,
                _ => false,
            }
        })
    }

    /// The device (all its connections here) joined `group` at `seq` (0: it
    /// created it).
    pub fn device_joined(&self, device: DeviceId, group: &GroupId, seq: u64) -> Vec<Arc<LiveGroup>> {
        let conns = lock(&self.devices).get(&device).cloned().unwrap_or_default();
        let mut out = Vec::new();
        for c in &conns {
            let (live, _) = self.watch(c, group);
            if live.has_conn(c.id) {
                c.mark_change(Change::Added(group.clone(), seq));
            }
            out.push(live);
        }
        out
    }

    /// Forgets a connection.
    pub fn detach(&self, conn: &ConnHandle) {
        {
            let mut devices = lock(&self.devices);
            if let Some(list) = devices.get_mut(&conn.device) {
                list.retain(|c| c.id != conn.id);
                if list.is_empty() {
                    devices.remove(&conn.device);
                }
            }
        }
        let watching = std::mem::take(&mut *lock(&conn.watching));
        for g in watching {
            if let Some(live) = self.group(&g) {
                let empty = {
                    let mut s = lock(&live.state);
                    s.conns.retain(|c| c.id != conn.id);
                    s.conns.is_empty()
                };
                if empty {
                    self.forget_if_unwatched(&g);
                }
            }
        }
    }

    fn forget_if_unwatched(&self, group: &GroupId) {
        let mut groups = lock(&self.groups);
        if let Some(live) = groups.get(group)
            && lock(&live.state).conns.is_empty()
        {
            groups.remove(group);
        }
    }

    /// `device` was revoked: each of its connections here ends.
    pub fn revoked(&self, device: DeviceId) {
        for c in lock(&self.devices).get(&device).into_iter().flatten() {
            c.mark_change(Change::Revoked);
        }
    }

    /// The inbox of `device` grew to `seq`.
    pub fn inbox(&self, device: DeviceId, seq: u64) {
        for c in lock(&self.devices).get(&device).into_iter().flatten() {
            c.mark_inbox(seq);
        }
    }

    /// Sends `frame` to every connection watching one of `groups`, except
    /// `device`'s own, once each.
    pub fn presence(&self, device: DeviceId, groups: &[GroupId], frame: &Bytes) {
        let mut seen = HashSet::new();
        for g in groups {
            let Some(live) = self.group(g) else { continue };
            for c in lock(&live.state).conns.iter() {
                if c.device != device && seen.insert(c.id) {
                    let _ = c.direct.try_send(frame.clone());
                }
            }
        }
    }

    /// Retention moved the group's first seq: cached frames below it go.
    pub fn truncate(&self, group: &GroupId, first_seq: u64) {
        if let Some(live) = self.group(group) {
            let mut s = lock(&live.state);
            while s.recent.front().is_some_and(|(seq, _)| *seq < first_seq) {
                if let Some((_, f)) = s.recent.pop_front() {
                    s.recent_bytes -= f.len();
                }
            }
            if let Some(v) = s.view.as_mut() {
                v.first_seq = v.first_seq.max(first_seq);
            }
        }
    }

    /// Entry `seq` changed (redacted): the group's cached frames go, later
    /// reads come from the store.
    pub fn forget(&self, group: &GroupId, seq: u64) {
        if let Some(live) = self.group(group) {
            let mut s = lock(&live.state);
            if s.recent.iter().any(|(x, _)| *x == seq) {
                s.recent.clear();
                s.recent_bytes = 0;
            }
        }
    }

    /// The group's policy changed.
    pub fn set_policy(&self, group: &GroupId, policy: Policy) {
        if let Some(live) = self.group(group)
            && let Some(v) = lock(&live.state).view.as_mut()
        {
            v.policy = policy;
        }
    }

    /// Number of live connections of a device on this relay.
    pub fn device_connections(&self, device: DeviceId) -> usize {
        lock(&self.devices).get(&device).map_or(0, Vec::len)
    }

    /// Times a group was reloaded because an entry went missing.
    pub fn gaps(&self) -> u64 {
        self.gaps.load(Ordering::Relaxed)
    }

    /// Every live connection (for shutdown).
    pub fn all_connections(&self) -> Vec<Arc<ConnHandle>> {
        lock(&self.devices).values().flatten().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(n: u8) -> DeviceId {
        DeviceId([n; 16])
    }

    fn group() -> GroupId {
        GroupId(b"g".to_vec())
    }

    fn record(head: u64, roster: &[DeviceId]) -> GroupRecord {
        GroupRecord {
            group: group(),
            epoch: 1,
            roster: roster.to_vec(),
            policy: Policy::default(),
            head_seq: head,
            first_seq: 1,
            home_region: "local".into(),
            created_ms: 0,
        }
    }

    fn entry(seq: u64, added: &[DeviceId], removed: &[DeviceId]) -> Applied {
        Applied {
            group: group(),
            seq,
            epoch: 1,
            frame: Bytes::from(seq.to_be_bytes().to_vec()),
            added: added.to_vec(),
            removed: removed.to_vec(),
        }
    }

    fn conn(live: &Live, id: u64, d: DeviceId) -> Arc<ConnHandle> {
        let (tx, _rx) = queue::channel(4);
        let c = Arc::new(ConnHandle::new(id, d, UserId("u".into()), tx));
        live.attach(&c);
        c
    }

    fn cached(g: &LiveGroup, from: u64, to: u64) -> Vec<u64> {
        let mut out = Vec::new();
        g.frames(from, to, usize::MAX, &mut out);
        out.iter()
            .map(|b| u64::from_be_bytes(b[..].try_into().unwrap_or([0; 8])))
            .collect()
    }

    #[test]
    fn entries_arriving_out_of_order_are_applied_in_order() {
        let live = Live::new();
        let c = conn(&live, 1, dev(1));
        let (g, new) = live.watch(&c, &group());
        assert!(new);
        live.install(&record(3, &[dev(1)]));
        // 6 and 5 arrive before 4: nothing past 3 may be handed out yet.
        assert_eq!(live.apply(entry(6, &[], &[])).gaps, vec![(group(), 4)]);
        live.apply(entry(5, &[], &[]));
        assert_eq!(g.deliverable(1).head, 3);
        assert!(live.has_gap(&group()) && live.still_missing(&group(), 4));
        live.apply(entry(4, &[], &[]));
        assert!(!live.still_missing(&group(), 4));
        assert_eq!(
            g.deliverable(1),
            Deliverable {
                head: 6,
                watching: true
            }
        );
        assert_eq!(cached(&g, 4, 6), vec![4, 5, 6]);
        assert!(!live.has_gap(&group()));
        // A duplicate changes nothing.
        live.apply(entry(5, &[], &[]));
        assert_eq!(cached(&g, 4, 100), vec![4, 5, 6]);
    }

    #[test]
    fn a_removed_device_stops_watching_before_later_entries_apply() {
        let live = Live::new();
        let (a, b) = (conn(&live, 1, dev(1)), conn(&live, 2, dev(2)));
        let (g, _) = live.watch(&a, &group());
        live.watch(&b, &group());
        live.install(&record(1, &[dev(1), dev(2)]));
        live.apply(entry(2, &[], &[dev(2)]));
        live.apply(entry(3, &[], &[]));
        assert_eq!(
            g.deliverable(2),
            Deliverable {
                head: 3,
                watching: false
            }
        );
        let w = b.take_work();
        assert_eq!(w.changes, vec![Change::Removed(group(), 2)]);
        assert!(w.groups.is_empty(), "no work for the removed device after its removal");
        assert!(a.take_work().groups.contains(&group()));
        assert_eq!(g.has_member(dev(2)), Some(false));
        assert!(b.watching().is_empty());
    }

    #[test]
    fn removal_and_readd_reach_the_connection_in_log_order() {
        let live = Live::new();
        let (a, b) = (conn(&live, 1, dev(1)), conn(&live, 2, dev(2)));
        live.watch(&a, &group());
        live.watch(&b, &group());
        live.install(&record(1, &[dev(1), dev(2)]));
        live.apply(entry(2, &[], &[dev(2)]));
        live.apply(entry(3, &[], &[]));
        live.apply(entry(4, &[dev(2)], &[]));
        live.apply(entry(5, &[], &[]));
        let w = b.take_work();
        assert_eq!(w.changes, vec![Change::Removed(group(), 2), Change::Added(group(), 4)]);
        let g = live.group(&group()).unwrap();
        assert_eq!(
            g.deliverable(2),
            Deliverable {
                head: 5,
                watching: true
            }
        );
        assert_eq!(b.watching(), vec![group()]);
    }

    #[test]
    fn a_commit_adding_a_connected_device_asks_for_the_view_and_then_tells_it() {
        let live = Live::new();
        let b = conn(&live, 2, dev(2));
        // No watcher here yet: the entry waits for the view.
        let f = live.apply(entry(7, &[dev(2)], &[]));
        assert_eq!(f.reload, vec![group()]);
        live.install(&record(7, &[dev(1), dev(2)]));
        assert_eq!(b.take_work().changes, vec![Change::Added(group(), 7)]);
        assert_eq!(b.watching(), vec![group()]);
        // Entries for groups nobody here watches are ignored.
        assert_eq!(live.apply(entry(1, &[], &[]).clone_for(b"other")), Followup::default());
    }

    #[test]
    fn the_frame_cache_is_bounded_and_honours_byte_budgets() {
        let live = Live::new();
        let a = conn(&live, 1, dev(1));
        let (g, _) = live.watch(&a, &group());
        live.install(&record(0, &[dev(1)]));
        for s in 1..=(RECENT_FRAMES as u64 + 10) {
            live.apply(entry(s, &[], &[]));
        }
        assert_eq!(cached(&g, 1, 5), Vec::<u64>::new(), "the oldest frames were dropped");
        let mut out = Vec::new();
        let (next, bytes) = g.frames(20, 1000, 8 * 3, &mut out);
        assert_eq!((next, bytes, out.len()), (23, 24, 3));
        // At least one frame even when it alone is over the budget.
        out.clear();
        assert_eq!(g.frames(30, 1000, 1, &mut out), (31, 8));
        live.truncate(&group(), 100);
        assert_eq!(cached(&g, 99, 100), Vec::<u64>::new());
        assert_eq!(cached(&g, 100, 100), vec![100]);
    }

    #[test]
    fn a_resync_after_a_lost_entry_tells_watchers_what_they_missed() {
        let live = Live::new();
        let (a, b, c) = (conn(&live, 1, dev(1)), conn(&live, 2, dev(2)), conn(&live, 3, dev(3)));
        let (g, _) = live.watch(&a, &group());
        live.watch(&b, &group());
        live.install(&record(2, &[dev(1), dev(2)]));
        // Entry 3 (say, the commit removing dev 2 and adding dev 3) is lost;
        // 4 waits for it.
        live.apply(entry(4, &[], &[]));
        assert!(live.still_missing(&group(), 3));
        let _ = (a.take_work(), b.take_work(), c.take_work());
        // The store says: head 4, dev 2 removed at 3, dev 3 joined at 3.
        live.resync(&record(4, &[dev(1), dev(3)]), &[(dev(2), 3)], &[(dev(3), 3)]);
        assert_eq!(
            g.deliverable(1),
            Deliverable {
                head: 4,
                watching: true
            }
        );
        assert_eq!(b.take_work().changes, vec![Change::Removed(group(), 3)]);
        assert_eq!(c.take_work().changes, vec![Change::Added(group(), 3)]);
        assert!(a.take_work().groups.contains(&group()));
        assert!(!live.still_missing(&group(), 3));
        assert_eq!(live.gaps(), 1);
        // Later entries apply normally.
        live.apply(entry(5, &[], &[]));
        assert_eq!(
            g.deliverable(3),
            Deliverable {
                head: 5,
                watching: true
            }
        );
    }

    impl Applied {
        fn clone_for(mut self, group: &[u8]) -> Self {
            self.group = GroupId(group.to_vec());
            self
        }
    }
}
