//! Presence: which devices have a connection on this relay, and telling
//! devices that share a group with one when it comes or goes.

use std::collections::HashMap;
use std::sync::Mutex;

use hush_protocol::frame::{PresenceUpdate, RelayFrame};
use hush_protocol::{DeviceId, GroupId};

use crate::bus::BusEvent;
use crate::grouplog::ConnHandle;
use crate::state::{Shared, now_ms};

/// Online devices of this relay (connections per device).
#[derive(Default)]
pub struct Presence {
    online: Mutex<HashMap<DeviceId, usize>>,
}

impl Presence {
    /// Whether `device` has a live connection on this relay.
    pub fn is_online(&self, device: DeviceId) -> bool {
        self.online
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&device)
    }

    /// A connection of the device started (`online`) or ended. The first
    /// connection of a device marks it online, the last one offline; then
    /// devices that share one of `groups` with it are told, and its last-seen
    /// time is recorded.
    pub async fn changed(&self, shared: &Shared, conn: &ConnHandle, groups: &[GroupId], online: bool) {
        let changed = {
            let mut map = self.online.lock().unwrap_or_else(|p| p.into_inner());
            if online {
                let n = map.entry(conn.device).or_insert(0);
                *n += 1;
                *n == 1
            } else {
                match map.get_mut(&conn.device) {
                    Some(n) if *n > 1 => {
                        *n -= 1;
                        false
                    }
                    _ => {
                        map.remove(&conn.device);
                        true
                    }
                }
            }
        };
        if !changed {
            return;
        }
        let now = now_ms();
        if let Err(e) = shared.store.set_last_seen(conn.device, now).await {
            tracing::warn!(error = %e, "recording last seen failed");
        }
        let update = PresenceUpdate {
            device: conn.device,
            user: conn.user.clone(),
            online,
            last_seen_ms: now,
        };
        if let Some(frame) = crate::session::encode(&RelayFrame::Presence(update)) {
            shared
                .bus
                .publish(BusEvent::Presence {
                    device: conn.device,
                    groups: groups.to_vec(),
                    frame,
                })
                .await;
        }
    }
}
