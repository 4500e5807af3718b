//! Presence: which devices have a connection on this relay, and telling
//! devices that share a group with one when it comes or goes.
//!
//! A session holds an [`Online`] guard while it is authenticated; dropping it
//! (on every path out of the session, a panic included) marks the device
//! offline once its last connection is gone. Changes are counted under one
//! lock and handed, in that order, to one publishing task ([`publish`]), which
//! records the last-seen time and tells co-members: a device that goes
//! offline and comes straight back is never shown offline last.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hush_protocol::frame::{PresenceUpdate, RelayFrame};
use hush_protocol::{DeviceId, GroupId, UserId};
use tokio::sync::mpsc;

use crate::bus::{Bus, BusEvent};
use crate::grouplog::ConnHandle;
use crate::state::now_ms;
use crate::store::Store;

/// A device came online on this relay or went offline from it.
#[derive(Debug)]
pub struct Change {
    /// The device.
    pub device: DeviceId,
    /// Its user.
    pub user: UserId,
    /// The groups whose members are told.
    pub groups: Vec<GroupId>,
    /// Online (its first connection) or offline (its last one ended).
    pub online: bool,
    /// When (ms since the Unix epoch).
    pub at_ms: u64,
}

/// Online devices of this relay (connections per device).
pub struct Presence {
    online: Mutex<HashMap<DeviceId, usize>>,
    changes: mpsc::UnboundedSender<Change>,
}

impl Presence {
    /// An empty presence table and the receiving end of its changes, for
    /// [`publish`].
    pub fn new() -> (Arc<Presence>, mpsc::UnboundedReceiver<Change>) {
        let (changes, rx) = mpsc::unbounded_channel();
        let presence = Presence {
            online: Mutex::default(),
            changes,
        };
        (Arc::new(presence), rx)
    }

    /// Whether `device` has a live connection on this relay.
    pub fn is_online(&self, device: DeviceId) -> bool {
        self.lock().contains_key(&device)
    }

    /// A connection of `conn.device` is authenticated; members of `groups`
    /// are told if it is the device's first. Offline again when the guard
    /// drops.
    pub fn arrive(self: &Arc<Self>, conn: &Arc<ConnHandle>, groups: &[GroupId]) -> Online {
        let mut map = self.lock();
        let n = map.entry(conn.device).or_insert(0);
        *n += 1;
        if *n == 1 {
            self.changed(conn, groups.to_vec(), true);
        }
        drop(map);
        Online {
            presence: self.clone(),
            conn: conn.clone(),
        }
    }

    fn leave(&self, conn: &ConnHandle) {
        let mut map = self.lock();
        match map.get_mut(&conn.device) {
            Some(n) if *n > 1 => *n -= 1,
            _ => {
                map.remove(&conn.device);
                self.changed(conn, conn.watching(), false);
            }
        }
    }

    /// Called with the table locked, so changes are queued in the order the
    /// counts changed.
    fn changed(&self, conn: &ConnHandle, groups: Vec<GroupId>, online: bool) {
        // Fails only once the publisher is gone (the relay is stopping).
        let _ = self.changes.send(Change {
            device: conn.device,
            user: conn.user.clone(),
            groups,
            online,
            at_ms: now_ms(),
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, usize>> {
        self.online.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One authenticated connection counted online; dropping it counts it off.
pub struct Online {
    presence: Arc<Presence>,
    conn: Arc<ConnHandle>,
}

impl Drop for Online {
    fn drop(&mut self) {
        self.presence.leave(&self.conn);
    }
}

/// Publishes presence changes in order: records the device's last-seen time,
/// then tells the members of its groups. Ends when the presence table is gone.
pub async fn publish(store: Arc<dyn Store>, bus: Arc<dyn Bus>, mut changes: mpsc::UnboundedReceiver<Change>) {
    while let Some(c) = changes.recv().await {
        if let Err(e) = store.set_last_seen(c.device, c.at_ms).await {
            tracing::warn!(error = %e, "recording last seen failed");
        }
        let update = PresenceUpdate {
            device: c.device,
            user: c.user,
            online: c.online,
            last_seen_ms: c.at_ms,
        };
        if let Some(frame) = crate::session::encode(&RelayFrame::Presence(update)) {
            bus.publish(BusEvent::Presence {
                device: c.device,
                groups: c.groups,
                frame,
            })
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(device: u8) -> Arc<ConnHandle> {
        let (direct, _rx) = crate::queue::channel(1);
        Arc::new(ConnHandle::new(
            0,
            DeviceId([device; 16]),
            UserId("alice".into()),
            direct,
        ))
    }

    #[tokio::test]
    async fn a_session_that_panics_leaves_its_device_offline() {
        let (presence, mut changes) = Presence::new();
        let c = conn(1);
        let (p, c2) = (presence.clone(), c.clone());
        let task = tokio::spawn(async move {
            let _online = p.arrive(&c2, &[]);
            panic!("a bug in the session");
        });
        assert!(task.await.is_err());
        assert!(!presence.is_online(c.device));
        let seen: Vec<bool> = [changes.recv().await, changes.recv().await]
            .into_iter()
            .map(|c| c.map(|c| c.online).unwrap_or_default())
            .collect();
        assert_eq!(seen, [true, false]);
    }

    #[tokio::test]
    async fn only_the_first_and_last_connection_of_a_device_are_changes() {
        let (presence, mut changes) = Presence::new();
        let c = conn(2);
        let first = presence.arrive(&c, &[]);
        let second = presence.arrive(&c, &[]);
        drop(first);
        assert!(presence.is_online(c.device));
        drop(second);
        assert!(!presence.is_online(c.device));
        drop(presence);
        let mut seen = Vec::new();
        while let Some(c) = changes.recv().await {
            seen.push(c.online);
        }
        assert_eq!(seen, [true, false]);
    }
}
