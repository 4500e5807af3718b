//! Local fan-out: which connections of this relay care about which group, and
//! waking their delivery pumps.
//!
//! A connection's [`ConnHandle`] collects *work* (a group has new entries up to
//! some seq, the device was added to or removed from a group, its inbox grew);
//! its delivery pump (in `session/delivery.rs`) takes the work and sends whatever
//! the connection has not seen, reading from the store when the frame is not in
//! the group's small cache of recent encoded frames. So a burst coalesces into one
//! wake-up, the cache makes the common case one shared `Bytes` per recipient, and
//! a missed event costs a store read, never a lost message.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use hush_protocol::{DeviceId, GroupId, UserId};
use tokio::sync::Notify;

use crate::bus::{Bus, BusEvent, BusSink};

/// Encoded frames kept per group for live delivery.
const RECENT_FRAMES: usize = 256;

/// Work for one connection's delivery pump.
#[derive(Debug, Default)]
pub struct Work {
    /// Groups with entries up to this seq (the pump compares with what it sent).
    pub groups: HashMap<GroupId, u64>,
    /// Groups the device joined, with the adding commit's seq.
    pub added: Vec<(GroupId, u64)>,
    /// Groups the device was removed from, with the removing commit's seq.
    pub removed: Vec<(GroupId, u64)>,
    /// The newest inbox seq, if the inbox grew.
    pub inbox: Option<u64>,
}

/// What the fan-out knows about one live connection.
#[derive(Debug)]
pub struct ConnHandle {
    /// Unique per relay process.
    pub id: u64,
    /// The authenticated device.
    pub device: DeviceId,
    /// Its user.
    pub user: UserId,
    /// Frames that bypass the pump (ephemeral signals, presence): dropped when the
    /// queue is full, since they are not durable anyway.
    pub direct: crate::session::queue::Sender<Bytes>,
    work: Mutex<Work>,
    wake: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ConnHandle {
    /// A handle for a new connection.
    pub fn new(id: u64, device: DeviceId, user: UserId, direct: crate::session::queue::Sender<Bytes>) -> Self {
        ConnHandle {
            id,
            device,
            user,
            direct,
            work: Mutex::new(Work::default()),
            wake: Notify::new(),
        }
    }

    /// Takes the pending work (empty if none).
    pub fn take_work(&self) -> Work {
        std::mem::take(&mut *lock(&self.work))
    }

    /// Waits until there is work (returns at once if some arrived since the last take).
    pub async fn wait_for_work(&self) {
        self.wake.notified().await;
    }

    fn with_work(&self, f: impl FnOnce(&mut Work)) {
        f(&mut lock(&self.work));
        self.wake.notify_one();
    }

    /// The group has entries up to `seq`.
    pub fn mark_group(&self, group: &GroupId, seq: u64) {
        self.with_work(|w| {
            let e = w.groups.entry(group.clone()).or_insert(0);
            *e = (*e).max(seq);
        });
    }

    /// The inbox has entries up to `seq`.
    pub fn mark_inbox(&self, seq: u64) {
        self.with_work(|w| w.inbox = Some(w.inbox.unwrap_or(0).max(seq)));
    }

    /// The device joined `group` at the commit `seq` (0 for a group it created).
    pub fn mark_added(&self, group: &GroupId, seq: u64) {
        self.with_work(|w| w.added.push((group.clone(), seq)));
    }

    fn mark_removed(&self, group: &GroupId, seq: u64) {
        self.with_work(|w| w.removed.push((group.clone(), seq)));
    }
}

#[derive(Default)]
struct GroupSub {
    conns: Vec<Arc<ConnHandle>>,
    head: u64,
    recent: VecDeque<(u64, Bytes)>,
}

#[derive(Default)]
struct Tables {
    groups: HashMap<GroupId, GroupSub>,
    devices: HashMap<DeviceId, Vec<Arc<ConnHandle>>>,
    /// Gaps noticed in the bus's seq sequence (filled from the store by pumps).
    gaps: u64,
}

/// This relay's local subscriptions.
pub struct FanOut {
    tables: Mutex<Tables>,
    bus: Arc<dyn Bus>,
}

impl FanOut {
    /// A fan-out publishing through `bus`.
    pub fn new(bus: Arc<dyn Bus>) -> Self {
        FanOut {
            tables: Mutex::new(Tables::default()),
            bus,
        }
    }

    /// Registers a connection for its device and the given groups.
    pub fn attach(&self, conn: &Arc<ConnHandle>, groups: &[GroupId]) {
        let mut t = lock(&self.tables);
        t.devices.entry(conn.device).or_default().push(conn.clone());
        for g in groups {
            Self::join(&mut t, &*self.bus, g, conn);
        }
    }

    fn join(t: &mut Tables, bus: &dyn Bus, group: &GroupId, conn: &Arc<ConnHandle>) {
        let sub = t.groups.entry(group.clone()).or_insert_with(|| {
            bus.subscribe(group);
            GroupSub::default()
        });
        if !sub.conns.iter().any(|c| c.id == conn.id) {
            sub.conns.push(conn.clone());
        }
    }

    fn leave(t: &mut Tables, bus: &dyn Bus, group: &GroupId, conn_id: u64) {
        if let Some(sub) = t.groups.get_mut(group) {
            sub.conns.retain(|c| c.id != conn_id);
            if sub.conns.is_empty() {
                t.groups.remove(group);
                bus.unsubscribe(group);
            }
        }
    }

    /// Subscribes an attached connection to more groups.
    pub fn join_groups(&self, conn: &Arc<ConnHandle>, groups: &[GroupId]) {
        let mut t = lock(&self.tables);
        for g in groups {
            Self::join(&mut t, &*self.bus, g, conn);
        }
    }

    /// Adds every connection of `device` to `group`, which it joined at `seq`
    /// (0 when it created the group), and tells their pumps.
    pub fn attach_device_to_group(&self, device: DeviceId, group: &GroupId, seq: u64) {
        let mut t = lock(&self.tables);
        let conns = t.devices.get(&device).cloned().unwrap_or_default();
        for c in &conns {
            Self::join(&mut t, &*self.bus, group, c);
            c.mark_added(group, seq);
        }
    }

    /// Forgets a connection.
    pub fn detach(&self, conn: &ConnHandle) {
        let mut t = lock(&self.tables);
        if let Some(list) = t.devices.get_mut(&conn.device) {
            list.retain(|c| c.id != conn.id);
            if list.is_empty() {
                t.devices.remove(&conn.device);
            }
        }
        let groups: Vec<GroupId> = t
            .groups
            .iter()
            .filter(|(_, s)| s.conns.iter().any(|c| c.id == conn.id))
            .map(|(g, _)| g.clone())
            .collect();
        for g in groups {
            Self::leave(&mut t, &*self.bus, &g, conn.id);
        }
    }

    /// The encoded frame of `group`'s entry `seq`, if still cached.
    pub fn cached(&self, group: &GroupId, seq: u64) -> Option<Bytes> {
        let t = lock(&self.tables);
        let sub = t.groups.get(group)?;
        let (first, _) = sub.recent.front()?;
        let idx = seq.checked_sub(*first)? as usize;
        sub.recent.get(idx).filter(|(s, _)| *s == seq).map(|(_, f)| f.clone())
    }

    /// Drops cached frames below `first_seq` (retention deleted them from the log,
    /// so they must not be served from the cache either).
    pub fn truncate(&self, group: &GroupId, first_seq: u64) {
        let mut t = lock(&self.tables);
        if let Some(sub) = t.groups.get_mut(group) {
            while sub.recent.front().is_some_and(|(s, _)| *s < first_seq) {
                sub.recent.pop_front();
            }
        }
    }

    /// Drops the group's cached frames because entry `seq` changed (it was
    /// redacted): later reads of it come from the store.
    pub fn forget(&self, group: &GroupId, seq: u64) {
        let mut t = lock(&self.tables);
        if let Some(sub) = t.groups.get_mut(group)
            && sub.recent.iter().any(|(s, _)| *s == seq)
        {
            sub.recent.clear();
        }
    }

    /// Number of live connections of a device on this relay.
    pub fn device_connections(&self, device: DeviceId) -> usize {
        lock(&self.tables).devices.get(&device).map_or(0, Vec::len)
    }

    /// Gaps noticed in bus events so far.
    pub fn gaps(&self) -> u64 {
        lock(&self.tables).gaps
    }

    /// Every live connection (for shutdown).
    pub fn all_connections(&self) -> Vec<Arc<ConnHandle>> {
        lock(&self.tables).devices.values().flatten().cloned().collect()
    }
}

impl BusSink for FanOut {
    fn deliver(&self, event: BusEvent) {
        let mut t = lock(&self.tables);
        match event {
            BusEvent::Appended {
                group,
                seq,
                frame,
                added,
                removed,
            } => {
                // Removed devices first: they get entries up to and including the
                // removing commit, then nothing.
                for d in &removed {
                    let conns = t.devices.get(d).cloned().unwrap_or_default();
                    for c in conns {
                        c.mark_removed(&group, seq);
                        Self::leave(&mut t, &*self.bus, &group, c.id);
                    }
                }
                for d in &added {
                    let conns = t.devices.get(d).cloned().unwrap_or_default();
                    for c in conns {
                        c.mark_added(&group, seq);
                        Self::join(&mut t, &*self.bus, &group, &c);
                    }
                }
                let Some(sub) = t.groups.get_mut(&group) else { return };
                let contiguous = sub.recent.back().is_none_or(|(last, _)| *last + 1 == seq);
                let mut gap = false;
                if seq > sub.head {
                    if !contiguous {
                        // Missed bus events (or out-of-order publication): the cache
                        // restarts here; pumps read the gap from the store.
                        gap = sub.head != 0 && seq != sub.head + 1;
                        sub.recent.clear();
                    }
                    sub.recent.push_back((seq, frame));
                    if sub.recent.len() > RECENT_FRAMES {
                        sub.recent.pop_front();
                    }
                    sub.head = seq;
                }
                for c in &sub.conns {
                    if !added.contains(&c.device) {
                        c.mark_group(&group, seq);
                    }
                }
                if gap {
                    t.gaps += 1;
                }
            }
            BusEvent::Ephemeral { group, sender, frame } => {
                if let Some(sub) = t.groups.get(&group) {
                    for c in sub.conns.iter().filter(|c| c.device != sender) {
                        let _ = c.direct.try_send(frame.clone());
                    }
                }
            }
            BusEvent::Inbox { device, seq } => {
                for c in t.devices.get(&device).into_iter().flatten() {
                    c.mark_inbox(seq);
                }
            }
            BusEvent::Presence { device, groups, frame } => {
                let mut seen = HashSet::new();
                for g in &groups {
                    for c in t.groups.get(g).into_iter().flat_map(|s| s.conns.iter()) {
                        if c.device != device && seen.insert(c.id) {
                            let _ = c.direct.try_send(frame.clone());
                        }
                    }
                }
            }
        }
    }
}
