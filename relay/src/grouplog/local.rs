//! The group log of a region whose store is the log of record.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use hush_protocol::frame::{Direction, LogEntry, Policy, RelayFrame};
use hush_protocol::{DeviceId, GroupId};

use super::live::{Applied, Followup, Live};
use super::{AppendTicket, GroupLog};
use crate::bus::{Bus, BusEvent, BusSink};
use crate::store::{AppendOutcome, AppendRequest, GroupRecord, PruneReport, RetentionRule, Store, StoreResult};

/// How long an entry may wait for a missing predecessor before the group's
/// view is reloaded from the store.
const GAP_WAIT: Duration = Duration::from_millis(200);

/// [`GroupLog`] over this region's store and the bus.
pub struct LocalLog {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    live: Arc<Live>,
    region: String,
    me: Weak<LocalLog>,
}

impl LocalLog {
    /// A log over `store`, publishing on `bus` (and receiving from it: the
    /// log attaches itself as the bus's sink).
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn Bus>, region: String) -> Arc<Self> {
        let log = Arc::new_cyclic(|me| LocalLog {
            store,
            bus: bus.clone(),
            live: Arc::new(Live::new()),
            region,
            me: me.clone(),
        });
        let sink: Weak<dyn BusSink> = Arc::downgrade(&log) as Weak<dyn BusSink>;
        bus.attach(sink);
        log
    }

    /// Carries out what applying an entry asked for, off the caller's path.
    fn follow(&self, f: Followup) {
        for group in f.reload {
            if let Some(me) = self.me.upgrade() {
                tokio::spawn(async move { me.reload(group).await });
            }
        }
        for (group, missing) in f.gaps {
            if let Some(me) = self.me.upgrade() {
                tokio::spawn(async move {
                    tokio::time::sleep(GAP_WAIT).await;
                    if me.live.still_missing(&group, missing) {
                        me.resync(group).await;
                    }
                });
            }
        }
    }

    async fn reload(&self, group: GroupId) {
        match self.store.group(&group).await {
            Ok(Some(record)) => {
                if self.live.group(&group).is_some_and(|g| g.view().is_some()) {
                    self.resync(group).await;
                } else {
                    let f = self.live.install(&record);
                    self.follow(f);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "loading a group's view failed"),
        }
    }

    /// Rebuilds a group's view from the store after an entry went missing.
    async fn resync(&self, group: GroupId) {
        let record = match self.store.group(&group).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "reloading a group after a gap failed");
                return;
            }
        };
        let mut removed = Vec::new();
        let mut added = Vec::new();
        let watchers = self.live.watcher_devices(&group);
        for d in self.live.local_devices() {
            let Ok(Some(m)) = self.store.membership(d, &group).await else {
                continue;
            };
            match (m.removed_seq, watchers.contains(&d)) {
                (Some(r), true) => removed.push((d, r)),
                // From where it acknowledged (a device a voided commit had
                // removed resumes there; a new one's cursor is its join).
                (None, false) => added.push((d, m.joined_seq.max(m.cursor))),
                _ => {}
            }
        }
        tracing::info!(group = %hex::encode(&group.0), "filled a gap in a group's entries from the store");
        self.live.resync(&record, &removed, &added);
    }
}

fn applied(entry_frame: bytes::Bytes, group: GroupId, seq: u64, outcome: &AppendOutcome) -> Option<Applied> {
    match outcome {
        AppendOutcome::Appended {
            epoch, added, removed, ..
        } => Some(Applied {
            group,
            seq,
            epoch: *epoch,
            frame: entry_frame,
            added: added.iter().map(|(d, _)| *d).collect(),
            removed: removed.clone(),
        }),
        AppendOutcome::Duplicate { .. } => None,
    }
}

#[async_trait]
impl GroupLog for LocalLog {
    fn live(&self) -> &Live {
        &self.live
    }

    async fn create(&self, group: GroupId, creator: DeviceId, policy: Policy, now_ms: u64) -> StoreResult<GroupRecord> {
        let record = self
            .store
            .create_group(group.clone(), creator, policy, self.region.clone(), now_ms)
            .await?;
        self.live.device_joined(creator, &group, 0);
        let f = self.live.install(&record);
        self.follow(f);
        Ok(record)
    }

    async fn append(&self, req: AppendRequest) -> StoreResult<AppendTicket> {
        let pending = self.store.submit_append(req).await?;
        let bus = self.bus.clone();
        Ok(Box::pin(async move {
            let outcome = pending.await?;
            if let AppendOutcome::Appended { entry, added, .. } = &outcome {
                let (group, seq) = (entry.group.clone(), entry.seq);
                if let Some(frame) = crate::session::encode(&RelayFrame::Deliver(entry.clone()))
                    && let Some(a) = applied(frame, group, seq, &outcome)
                {
                    bus.publish(BusEvent::Appended(a)).await;
                }
                for (device, inbox_seq) in added {
                    if *inbox_seq > 0 {
                        bus.publish(BusEvent::Inbox {
                            device: *device,
                            seq: *inbox_seq,
                        })
                        .await;
                    }
                }
            }
            Ok(outcome)
        }))
    }

    async fn read(
        &self,
        group: &GroupId,
        from_seq: u64,
        direction: Direction,
        limit: usize,
        max_bytes: usize,
    ) -> StoreResult<Vec<LogEntry>> {
        // The store applies the budget as it reads: nothing past it is read.
        self.store.read_log(group, from_seq, direction, limit, max_bytes).await
    }

    async fn record(&self, group: &GroupId) -> StoreResult<Option<GroupRecord>> {
        self.store.group(group).await
    }

    async fn set_policy(&self, group: &GroupId, by: DeviceId, policy: Policy) -> StoreResult<()> {
        self.store.set_policy(group, by, policy.clone()).await?;
        self.live.set_policy(group, policy);
        Ok(())
    }

    async fn redact(&self, group: &GroupId, seq: u64, by: DeviceId) -> StoreResult<()> {
        self.store.redact(group, seq, by).await?;
        self.live.forget(group, seq);
        Ok(())
    }

    async fn void_commit(&self, group: &GroupId, seq: u64, by: DeviceId) -> StoreResult<()> {
        self.store.void_commit(group, seq, by).await?;
        self.live.forget(group, seq);
        // The roster and epoch went back: the view is read again, devices
        // the commit added are told they were removed, the ones it removed
        // watch again.
        self.resync(group.clone()).await;
        Ok(())
    }

    async fn subscribe(&self, group: &GroupId) {
        self.bus.subscribe(group);
    }

    async fn load_view(&self, group: &GroupId) -> StoreResult<Option<GroupRecord>> {
        let record = self.store.group(group).await?;
        if let Some(r) = &record {
            let f = self.live.install(r);
            self.follow(f);
        }
        Ok(record)
    }

    async fn prune(&self, now_ms: u64, max_age_ms: u64, delete_acknowledged: bool) -> StoreResult<PruneReport> {
        let rule = RetentionRule {
            now_ms,
            max_age_ms,
            delete_acknowledged,
        };
        // Bounded steps, one group at a time; the live view's first seq moves
        // after each step that moved the store's.
        crate::store::prune_all(self.store.as_ref(), rule, |group, first| {
            self.live.truncate(group, first)
        })
        .await
    }
}

impl BusSink for LocalLog {
    fn deliver(&self, event: BusEvent) {
        match event {
            BusEvent::Appended(a) => {
                let f = self.live.apply(a);
                self.follow(f);
            }
            BusEvent::Ephemeral { group, sender, frame } => {
                if let Some(g) = self.live.group(&group) {
                    g.signal(sender, &frame);
                }
            }
            BusEvent::Inbox { device, seq } => self.live.inbox(device, seq),
            BusEvent::Presence { device, groups, frame } => self.live.presence(device, &groups, &frame),
        }
    }
}
