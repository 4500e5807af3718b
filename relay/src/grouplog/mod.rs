//! The group-log service: the one place sessions go for anything about a
//! group's log.
//!
//! ```text
//!  sessions ──append / read / create / policy / redact──▶ GroupLog (trait)
//!      ▲                                                   │ LocalLog: this region's store is the
//!      │ work + shared frames                              │ log of record; checks and durable commit
//!      │                                                   │ in the store, publish after commit
//!  Live (live.rs): per active group the view (roster,      ▼
//!  policy, epoch, head), the local watchers, the newest ◀── bus (in-process; NATS later)
//!  encoded frames; entries applied in seq order
//! ```
//!
//! [`GroupLog`] is what a session calls; [`LocalLog`] implements it over the
//! [`crate::store::Store`] and the [`crate::bus::Bus`]. A relay whose group is
//! homed elsewhere will implement the same trait by forwarding appends to the
//! home, confirming interest before heads are read, and filling gaps from the
//! log of record; sessions do not change. [`Live`] is this relay's own: fed
//! by whichever log implementation, read by every connection's outbound task,
//! which therefore needs no store read and no thread hand-off to deliver a
//! live entry.

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use hush_protocol::frame::{Direction, LogEntry, Policy};
use hush_protocol::{DeviceId, GroupId};

use crate::store::{AppendOutcome, AppendRequest, GroupRecord, PruneReport, StoreResult};

pub mod live;
mod local;

pub use live::{Applied, Change, ConnHandle, Deliverable, GroupView, Live, LiveGroup, Work};
pub use local::LocalLog;

/// An append that has its place in the group's order: resolves once it is
/// durable in the log of record and applied to the live view (or refused).
pub type AppendTicket = Pin<Box<dyn Future<Output = StoreResult<AppendOutcome>> + Send>>;

/// A group's log as the relay's sessions see it.
#[async_trait]
pub trait GroupLog: Send + Sync + 'static {
    /// The live view of this relay's active groups, which this log feeds.
    fn live(&self) -> &Live;

    /// Creates a group homed here, with `creator` as its only member; the
    /// creator's connections on this relay start watching it.
    async fn create(&self, group: GroupId, creator: DeviceId, policy: Policy, now_ms: u64) -> StoreResult<GroupRecord>;

    /// Queues an append and returns once it is queued. Appends queued one
    /// after another by one caller get seqs in that order; the ticket resolves
    /// once the entry is durable (`Store::append`'s rules apply).
    async fn append(&self, req: AppendRequest) -> StoreResult<AppendTicket>;

    /// Up to `limit` entries from `from_seq` in `direction`, stopping before
    /// the entry that would bring the payload bytes over `max_bytes` (at least
    /// one entry is returned if any exists); the budget is applied inside the
    /// store read (`Store::read_log`).
    async fn read(
        &self,
        group: &GroupId,
        from_seq: u64,
        direction: Direction,
        limit: usize,
        max_bytes: usize,
    ) -> StoreResult<Vec<LogEntry>>;

    /// The group as its log of record has it.
    async fn record(&self, group: &GroupId) -> StoreResult<Option<GroupRecord>>;

    /// Replaces the group's policy (`Store::set_policy`'s rules).
    async fn set_policy(&self, group: &GroupId, by: DeviceId, policy: Policy) -> StoreResult<()>;

    /// Empties an application entry's payload (`Store::redact`'s rules).
    async fn redact(&self, group: &GroupId, seq: u64, by: DeviceId) -> StoreResult<()>;

    /// Voids the group's newest commit (`Store::void_commit`'s rules) and
    /// brings the live view and its watchers to the rolled-back roster.
    async fn void_commit(&self, group: &GroupId, seq: u64, by: DeviceId) -> StoreResult<()>;

    /// Makes sure this relay hears of the group's new entries. Returns once
    /// the interest is confirmed, so that a head read afterwards misses
    /// nothing.
    async fn subscribe(&self, group: &GroupId);

    /// Loads the live view of a group a connection started watching (a no-op
    /// if it is loaded).
    async fn load_view(&self, group: &GroupId) -> StoreResult<Option<GroupRecord>>;

    /// One retention pass: every group of this log, in bounded per-group
    /// steps (`store::prune_all`), moving the live view's first seq as the
    /// store's moves. Dropping the future between steps is safe.
    async fn prune(&self, now_ms: u64, max_age_ms: u64, delete_acknowledged: bool) -> StoreResult<PruneReport>;
}
