//! The bus: how accepted entries and signals reach every relay with local members.
//!
//! A relay publishes each event once; every relay (including itself) that has
//! local members of the group hands it to its live view ([`crate::grouplog::Live`]). The
//! first implementation is in-process (one relay). Ordering and no-loss never
//! depend on the bus: an event carries the entry's seq, a relay that sees a seq
//! jump notices the gap, and connections read whatever they have not seen from
//! the store, which is the log of record. The bus only shortens the path.

use std::sync::{OnceLock, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use hush_protocol::{DeviceId, GroupId};

use crate::grouplog::Applied;

/// Something to fan out.
#[derive(Clone, Debug)]
pub enum BusEvent {
    /// An entry was appended to a group's log (with its encoded `Deliver`
    /// frame, shared by every recipient, and its roster changes).
    Appended(Applied),
    /// An ephemeral signal for the group's online members.
    Ephemeral {
        /// The group.
        group: GroupId,
        /// The sender (not delivered back to it).
        sender: DeviceId,
        /// The encoded `RelayFrame::Ephemeral`.
        frame: Bytes,
    },
    /// A device's inbox grew to `seq`.
    Inbox {
        /// The device.
        device: DeviceId,
        /// Its newest inbox seq.
        seq: u64,
    },
    /// A device came online or went offline; shown to members of `groups`.
    Presence {
        /// The device.
        device: DeviceId,
        /// Its groups.
        groups: Vec<GroupId>,
        /// The encoded `RelayFrame::Presence`.
        frame: Bytes,
    },
}

/// Receives events from the bus.
pub trait BusSink: Send + Sync + 'static {
    /// Handles one event. Must not block.
    fn deliver(&self, event: BusEvent);
}

/// Publishes and subscribes.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Where received events go (set once, at relay start).
    fn attach(&self, sink: Weak<dyn BusSink>);
    /// Publishes an event to every interested relay.
    async fn publish(&self, event: BusEvent);
    /// This relay now has local members of `group`.
    fn subscribe(&self, group: &GroupId);
    /// This relay no longer has local members of `group`.
    fn unsubscribe(&self, group: &GroupId);
}

/// The bus of a single relay: publishing hands the event straight to the sink.
#[derive(Default)]
pub struct InProcessBus {
    sink: OnceLock<Weak<dyn BusSink>>,
}

impl InProcessBus {
    /// A bus with no sink yet.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Bus for InProcessBus {
    fn attach(&self, sink: Weak<dyn BusSink>) {
        let _ = self.sink.set(sink);
    }

    async fn publish(&self, event: BusEvent) {
        if let Some(sink) = self.sink.get().and_then(Weak::upgrade) {
            sink.deliver(event);
        }
    }

    // A single relay receives everything it publishes; the fan-out ignores
    // groups with no local members.
    fn subscribe(&self, _group: &GroupId) {}
    fn unsubscribe(&self, _group: &GroupId) {}
}
