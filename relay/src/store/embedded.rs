//! The embedded store: one redb file in the relay's data directory.
//!
//! ```text
//!  callers (async)             writer thread (one)                    redb file
//!  append ─┐                   ┌──────────────────────────────┐
//!  append ─┼─► bounded queue ─►│ take up to `max_batch` jobs  │
//!  ack    ─┘                   │ one write transaction:       │
//!     ▲                        │   check + apply each job     │──► commit (fsync)
//!     └──── oneshot answers ◄──│ answer every job             │
//!                              └──────────────────────────────┘
//!  reads ──► spawn_blocking ──► read transaction (a snapshot; never waits for writes)
//! ```
//!
//! **Group commit.** Every write goes through one writer thread, which applies
//! all queued requests in one transaction and commits once, so concurrent
//! appends share an fsync (see `BENCHMARKS.md`). A caller is answered only after
//! the commit returned, and redb's default durability (`Immediate`) makes that
//! commit durable. Each request is checked before it writes anything, so a
//! request that breaks a rule leaves the batch untouched; requests later in a
//! batch see the writes of earlier ones (two appends get consecutive seqs, the
//! second of two commits for one epoch is stale).
//!
//! **Key layout.** All tables map bytes to bytes. `G` is a group id encoded as
//! its length (1 byte) followed by its bytes (1..=255), which keeps keys of
//! different groups from interleaving; `D` is a device id (16 bytes); integers
//! in keys are 8 bytes big-endian so that byte order is numeric order. Values
//! are records encoded with the protocol codec (bincode, standard config).
//!
//! | table            | key                          | value                                         |
//! |------------------|------------------------------|-----------------------------------------------|
//! | `meta`           | `"format"`                   | layout version (`u64`)                        |
//! | `devices`        | `D`                          | user, public key, registered_ms               |
//! | `user_devices`   | `len(user) ‖ user ‖ D`       | empty                                         |
//! | `last_seen`      | `D`                          | ms (`u64`)                                    |
//! | `groups`         | `G`                          | epoch, policy, head, first, last timestamp, home region, created |
//! | `roster`         | `G ‖ D`                      | empty (current members only)                  |
//! | `log`            | `G ‖ seq`                    | sender, client msg id, kind, epoch, timestamp, payload |
//! | `idempotency`    | `G ‖ D(sender) ‖ client_msg_id` | seq (`u64`)                                |
//! | `members`        | `D ‖ G`                      | joined_seq, cursor, removed_seq (tombstones kept) |
//! | `kp_one_time`    | `D ‖ counter`                | key package bytes (counter order = upload order) |
//! | `kp_last_resort` | `D`                          | key package bytes                             |
//! | `kp_meta`        | `D`                          | next counter, one-time count                  |
//! | `inbox`          | `D ‖ seq`                    | sender, kind, timestamp, payload              |
//! | `inbox_meta`     | `D`                          | acknowledged seq, head seq                    |
//!
//! The roster is a table of its own rather than a list inside the group record
//! so that an append, which rewrites the group record to move its head, costs
//! the same whatever the group's size.

mod layout;
mod reads;
mod writer;
mod writes;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use bytes::Bytes;
use hush_protocol::frame::{ClaimedKeyPackage, Direction, InboxEntry, InboxKind, LogEntry, Policy};
use hush_protocol::{DeviceId, GroupId, UserId};
use redb::{Database, ReadTransaction, ReadableDatabase};

use self::layout::GroupKey;
use self::writer::Writer;
use self::writes::{NewGroup, NewInboxEntry, PruneRequest};
use super::{
    AppendOutcome, AppendRequest, DeviceRecord, GroupRecord, Membership, PruneReport, RegisterOutcome, Store,
    StoreError, StoreResult,
};

/// Name of the database file inside the data directory.
pub const FILE_NAME: &str = "hush.redb";

/// Tuning of an [`EmbeddedStore`]. The defaults suit a single relay.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    max_batch: usize,
    queue_capacity: usize,
    cache_bytes: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            max_batch: 256,
            queue_capacity: 4096,
            cache_bytes: 256 << 20,
        }
    }
}

impl EmbeddedOptions {
    /// Most write requests applied in one transaction (one fsync). Default 256.
    ///
    /// Larger batches share an fsync among more requests but make the first
    /// request of a batch wait for the others to be applied.
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }

    /// Capacity of the writer's queue. Default 4096.
    ///
    /// When it is full, writers wait (asynchronously) for room: the relay's
    /// sessions slow down rather than the store buffering without bound.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n.max(1);
        self
    }

    /// Size of redb's page cache, in bytes. Default 256 MiB.
    pub fn cache_bytes(mut self, n: usize) -> Self {
        self.cache_bytes = n;
        self
    }
}

/// Counters of the writer's work since the store was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriterStats {
    /// Write requests taken from the queue.
    pub requests: u64,
    /// Syncs to disk that acknowledged a batch (one fdatasync each).
    pub syncs: u64,
    /// Durable commits of the database file.
    pub checkpoints: u64,
}

/// The default [`Store`]: a redb database in a data directory, with group commit.
///
/// Dropping it finishes the queued writes, stops the writer thread and closes
/// the file, after which the directory can be opened again.
pub struct EmbeddedStore {
    // Field order matters for drop: the writer (and its thread's handle on the
    // database) goes first.
    writer: Writer,
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens the store in `dir`, creating the directory and the database file
    /// ([`FILE_NAME`]) if needed, and starts its writer thread.
    ///
    /// Fails if another process (or another `EmbeddedStore`) has the file open,
    /// or if the file was written by a newer layout.
    pub fn open(dir: &Path, opts: EmbeddedOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(FILE_NAME);
        let db = Database::builder().set_cache_size(opts.cache_bytes).create(&path)?;
        init(&db)?;
        let db = Arc::new(db);
        let writer = Writer::start(db.clone(), opts.queue_capacity, opts.max_batch)
            .map_err(|e| StoreError::Backend(format!("cannot start the store writer: {e}")))?;
        Ok(EmbeddedStore { writer, db, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the writer did since the store was opened (for benchmarks and tests).
    pub fn stats(&self) -> WriterStats {
        let c = self.writer.counters();
        WriterStats {
            requests: c.requests.load(Ordering::Relaxed),
            syncs: c.syncs.load(Ordering::Relaxed),
            checkpoints: c.checkpoints.load(Ordering::Relaxed),
        }
    }

    /// Runs `f` in a read transaction on a blocking thread: a large read must not
    /// stall the async workers.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> StoreResult<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db.begin_read()?))
            .await
            .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }
}

/// Creates every table and checks the layout version, so that read
/// transactions find all tables and an old relay never misreads a newer file.
fn init(db: &Database) -> StoreResult<()> {
    let txn = db.begin_write()?;
    {
        for def in [
            layout::DEVICES,
            layout::USER_DEVICES,
            layout::LAST_SEEN,
            layout::GROUPS,
            layout::ROSTER,
            layout::LOG,
            layout::IDEMPOTENCY,
            layout::MEMBERS,
            layout::KP_ONE_TIME,
            layout::KP_LAST_RESORT,
            layout::KP_META,
            layout::INBOX,
            layout::INBOX_META,
        ] {
            txn.open_table(def)?;
        }
        let mut meta = txn.open_table(layout::META)?;
        let found: Option<u64> = layout::get(&meta, layout::FORMAT_KEY)?;
        match found {
            None => {
                meta.insert(layout::FORMAT_KEY, layout::encode(&layout::FORMAT_VERSION)?.as_slice())?;
            }
            Some(layout::FORMAT_VERSION) => {}
            Some(other) => {
                return Err(StoreError::Backend(format!(
                    "database layout version {other} is not supported (this relay writes {})",
                    layout::FORMAT_VERSION
                )));
            }
        }
    }
    txn.commit()?;
    Ok(())
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn register_device(&self, record: DeviceRecord) -> StoreResult<RegisterOutcome> {
        self.writer.write(move |t| writes::register_device(t, record)).await
    }

    async fn device(&self, device: DeviceId) -> StoreResult<Option<DeviceRecord>> {
        self.read(move |txn| reads::device(&txn.open_table(layout::DEVICES)?, device))
            .await
    }

    async fn user_devices(&self, user: &UserId) -> StoreResult<Vec<DeviceRecord>> {
        let user = user.clone();
        self.read(move |txn| {
            reads::user_devices(
                &txn.open_table(layout::USER_DEVICES)?,
                &txn.open_table(layout::DEVICES)?,
                &user,
            )
        })
        .await
    }

    async fn set_last_seen(&self, device: DeviceId, ms: u64) -> StoreResult<()> {
        self.writer.write(move |t| writes::set_last_seen(t, device, ms)).await
    }

    async fn last_seen(&self, device: DeviceId) -> StoreResult<u64> {
        self.read(move |txn| Ok(layout::get(&txn.open_table(layout::LAST_SEEN)?, &device.0)?.unwrap_or(0)))
            .await
    }

    async fn create_group(
        &self,
        group: GroupId,
        creator: DeviceId,
        policy: Policy,
        home_region: String,
        now_ms: u64,
    ) -> StoreResult<GroupRecord> {
        let new = NewGroup {
            group,
            creator,
            policy,
            home_region,
            now_ms,
        };
        self.writer.write(move |t| writes::create_group(t, new)).await
    }

    async fn group(&self, group: &GroupId) -> StoreResult<Option<GroupRecord>> {
        let group = group.clone();
        self.read(move |txn| {
            let key = GroupKey::new(&group)?;
            let Some(meta) = layout::get(&txn.open_table(layout::GROUPS)?, key.as_bytes())? else {
                return Ok(None);
            };
            let roster = reads::roster(&txn.open_table(layout::ROSTER)?, &key)?;
            Ok(Some(reads::group_record(group, meta, roster)))
        })
        .await
    }

    async fn set_policy(&self, group: &GroupId, by: DeviceId, policy: Policy) -> StoreResult<()> {
        let group = group.clone();
        self.writer
            .write(move |t| writes::set_policy(t, group, by, policy))
            .await
    }

    async fn memberships(&self, device: DeviceId) -> StoreResult<Vec<Membership>> {
        self.read(move |txn| reads::memberships(&txn.open_table(layout::MEMBERS)?, device))
            .await
    }

    async fn membership(&self, device: DeviceId, group: &GroupId) -> StoreResult<Option<Membership>> {
        let group = group.clone();
        self.read(move |txn| reads::membership(&txn.open_table(layout::MEMBERS)?, device, &group))
            .await
    }

    async fn append(&self, req: AppendRequest) -> StoreResult<AppendOutcome> {
        self.writer.write(move |t| writes::append(t, req)).await
    }

    async fn read_log(
        &self,
        group: &GroupId,
        from_seq: u64,
        direction: Direction,
        limit: usize,
    ) -> StoreResult<Vec<LogEntry>> {
        let group = group.clone();
        self.read(move |txn| {
            let (groups, log) = (txn.open_table(layout::GROUPS)?, txn.open_table(layout::LOG)?);
            reads::read_log(&groups, &log, &group, from_seq, direction, limit)
        })
        .await
    }

    async fn redact(&self, group: &GroupId, seq: u64, by: DeviceId) -> StoreResult<()> {
        let group = group.clone();
        self.writer.write(move |t| writes::redact(t, group, seq, by)).await
    }

    async fn advance_cursors(&self, cursors: Vec<(DeviceId, GroupId, u64)>) -> StoreResult<()> {
        if cursors.is_empty() {
            return Ok(());
        }
        self.writer.write(move |t| writes::advance_cursors(t, cursors)).await
    }

    async fn upload_key_packages(
        &self,
        device: DeviceId,
        one_time: Vec<Bytes>,
        last_resort: Option<Bytes>,
    ) -> StoreResult<(u32, bool)> {
        self.writer
            .write(move |t| writes::upload_key_packages(t, device, one_time, last_resort))
            .await
    }

    async fn claim_key_packages(&self, devices: Vec<DeviceId>) -> StoreResult<Vec<ClaimedKeyPackage>> {
        self.writer.write(move |t| writes::claim_key_packages(t, devices)).await
    }

    async fn inbox_push(
        &self,
        device: DeviceId,
        sender: DeviceId,
        kind: InboxKind,
        payload: Bytes,
        now_ms: u64,
    ) -> StoreResult<u64> {
        let new = NewInboxEntry {
            device,
            sender,
            kind,
            payload,
            now_ms,
        };
        self.writer.write(move |t| writes::inbox_push(t, new)).await
    }

    async fn inbox_read(&self, device: DeviceId, after_seq: u64, limit: usize) -> StoreResult<Vec<InboxEntry>> {
        self.read(move |txn| reads::inbox_read(&txn.open_table(layout::INBOX)?, device, after_seq, limit))
            .await
    }

    async fn inbox_ack(&self, device: DeviceId, seq: u64) -> StoreResult<u64> {
        self.writer.write(move |t| writes::inbox_ack(t, device, seq)).await
    }

    async fn inbox_state(&self, device: DeviceId) -> StoreResult<(u64, u64)> {
        self.read(move |txn| {
            let meta = reads::inbox_meta(&txn.open_table(layout::INBOX_META)?, device)?;
            Ok((meta.acked, meta.head))
        })
        .await
    }

    async fn prune(&self, now_ms: u64, max_age_ms: u64, delete_acknowledged: bool) -> StoreResult<PruneReport> {
        let req = PruneRequest {
            now_ms,
            max_age_ms,
            delete_acknowledged,
        };
        self.writer.write(move |t| writes::prune(t, req)).await
    }
}
