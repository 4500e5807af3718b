//! The embedded store: a redb file and its write-ahead log in the relay's data
//! directory.
//!
//! ```text
//!  callers (async)            writer thread (one)                      data directory
//!  append ─┐                  ┌───────────────────────────────────┐
//!  append ─┼─► bounded queue ─►│ take up to `max_batch` ops        │
//!  ack    ─┘   (WriteOp data) │ one redb write transaction:       │
//!     ▲                       │   check + apply each op           │
//!     │                       │ ops that wrote → one log record ──┼──► hush.wal  append + fdatasync
//!     │                       │ commit (Durability::None)         │    (one sync per batch)
//!     └─── oneshot answers ◄──│ answer every op                   │
//!                             │ every 5 s / 4 MiB of log:         │
//!                             │   durable commit (checkpoint) ────┼──► hush.redb (fsync), log starts over
//!                             └───────────────────────────────────┘
//!  reads ──► spawn_blocking ──► read transaction (a snapshot; never waits for writes)
//!  open  ──► replay the log records the database does not hold yet, checkpoint
//! ```
//!
//! **Group commit.** Every write goes through one writer thread, which applies
//! all queued requests in one transaction and syncs once, so concurrent
//! appends share an fdatasync (see `BENCHMARKS.md`). Each request is checked
//! before it writes anything, so a request that breaks a rule leaves the batch
//! untouched; requests later in a batch see the writes of earlier ones (two
//! appends get consecutive seqs, the second of two commits for one epoch is
//! stale).
//!
//! **Durability.** A caller is answered only after its batch is on disk. The
//! writer thread serializes the requests of the batch that wrote something
//! ([`WriteOp`](ops::WriteOp), plain data with every input such as timestamps
//! in it) into one framed, checksummed record, appends it to the write-ahead
//! log and waits for `fdatasync`; only then does it commit the redb
//! transaction, with `Durability::None`: the commit is visible to readers (so
//! a read never sees a write that could still be lost) but redb keeps its
//! pages in memory. Every [`EmbeddedOptions::checkpoint_interval`] (or when
//! the log reaches [`EmbeddedOptions::checkpoint_bytes`]) a durable redb
//! commit writes out every page changed since the last one, once, however many
//! batches changed it, and the log starts over at its beginning. Every
//! transaction records the sequence number of its log record in the `meta`
//! table, so the file always says how far it got; at open the records after
//! that are applied again in order, and reading stops at the first torn or
//! corrupt record (one that was never acknowledged: its sync had not
//! returned). Why this instead of a durable redb commit per batch: a redb
//! commit copies on write every B-tree page it touches (log, idempotency,
//! group head, allocator state, header), about 40 KB per batch of one 100-byte
//! message; a log record costs one 4 KiB page per sync. The numbers are in
//! `BENCHMARKS.md` ("Disk bytes per message"), the decision in
//! `ARCHITECTURE.md`. [`EmbeddedOptions::write_ahead_log`]`(false)` brings
//! back a durable redb commit per batch.
//!
//! A failure to write or sync the log (or to commit after the record is on
//! disk) leaves the file and the log in doubt: the writer answers `Unavailable`
//! to every later write until the store is opened again, which replays the
//! log. Such a batch may or may not be there afterwards, as with any storage
//! error after a write was sent; retries are idempotent.
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
//! | `meta`           | `"applied_lsn"`              | last write-ahead log record applied (`u64`)   |
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
//! | `inbox`          | `D ‖ seq`                    | sender, kind, timestamp, payload (empty for a Welcome: in `welcomes`) |
//! | `inbox_meta`     | `D`                          | acknowledged seq, head seq                    |
//! | `welcomes`       | `G ‖ commit seq`             | inbox entries still referring to it, Welcome payload |
//! | `op_tokens`      | token (16 bytes)             | order number, the outcome it answered         |
//! | `op_token_order` | order number ‖ token         | when it was recorded (ms)                     |
//! | `meta`           | `"op_tokens"`                | next order number, tokens remembered          |
//!
//! **Welcomes.** A commit that adds N devices with a Welcome stores the
//! Welcome once in `welcomes`, with a count of N, and puts in each added
//! device's inbox an entry of kind `Welcome { group, commit_seq }` with an
//! empty payload; reading an inbox fills the payload in from `welcomes`, and
//! acknowledging entries decrements the count and deletes the Welcome with
//! the last one. Entries written by layout 2 carry the Welcome inline and are
//! read as they are.
//!
//! **Operation tokens.** `op_tokens` maps each token to the outcome its
//! write produced; `op_token_order` lists them oldest first. Every tokened
//! write forgets up to four of the oldest tokens that are older than
//! [`EmbeddedOptions::op_token_ttl`] or over [`EmbeddedOptions::op_token_max`].
//! The time is the writer's clock when the request was queued, logged with
//! the request, so that a replay forgets exactly the same tokens.
//!
//! The roster is a table of its own rather than a list inside the group record
//! so that an append, which rewrites the group record to move its head, costs
//! the same whatever the group's size.

mod layout;
mod ops;
mod reads;
mod wal;
mod writer;
mod writes;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hush_protocol::frame::{ClaimedKeyPackage, Direction, InboxEntry, InboxKind, LogEntry, Policy};
use hush_protocol::{DeviceId, GroupId, UserId};
use redb::{Database, ReadTransaction, ReadableDatabase};

use self::layout::GroupKey;
use self::ops::{Outcome, WriteOp, mismatch};
use self::writer::{Config, Durability, TokenBounds, Writer};
use self::writes::{NewGroup, NewInboxEntry, Tokened};
use super::{
    AppendOutcome, AppendRequest, DeviceRecord, GroupRecord, KeyPackageClaim, Membership, OpToken, PendingAppend,
    PruneStep, RegisterOutcome, RetentionRule, Revocation, Store, StoreError, StoreResult,
};

/// Name of the database file inside the data directory.
pub const FILE_NAME: &str = "hush.redb";
/// Name of the write-ahead log inside the data directory.
pub const WAL_FILE_NAME: &str = "hush.wal";

/// Tuning of an [`EmbeddedStore`]. The defaults suit a single relay.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    max_batch: usize,
    queue_capacity: usize,
    cache_bytes: usize,
    write_ahead_log: bool,
    checkpoint_interval: Duration,
    checkpoint_bytes: u64,
    op_token_ttl: Duration,
    op_token_max: u64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            max_batch: 1024,
            queue_capacity: 8192,
            cache_bytes: 256 << 20,
            write_ahead_log: true,
            checkpoint_interval: Duration::from_secs(5),
            checkpoint_bytes: 4 << 20,
            op_token_ttl: Duration::from_millis(crate::store::OP_TOKEN_TTL_MS),
            op_token_max: crate::store::OP_TOKEN_MAX,
        }
    }
}

impl EmbeddedOptions {
    /// Most write requests applied in one transaction (one sync). Default 1024.
    ///
    /// Larger batches share a sync among more requests but make the first
    /// request of a batch wait for the others to be applied.
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }

    /// Capacity of the writer's queue. Default 8192.
    ///
    /// When it is full, writers wait (asynchronously) for room: the relay's
    /// sessions slow down rather than the store buffering without bound.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n.max(1);
        self
    }

    /// Size of redb's page cache, in bytes. Default 256 MiB. Pages written
    /// since the last checkpoint are held in it too.
    pub fn cache_bytes(mut self, n: usize) -> Self {
        self.cache_bytes = n;
        self
    }

    /// Whether batches are made durable by the write-ahead log (default, `true`)
    /// or by a durable commit of the database file each (`false`).
    ///
    /// Both are durable on acknowledgement. The log writes one small record and
    /// one fdatasync per batch; a durable database commit rewrites every page
    /// it touches, about ten times as many bytes per message (`BENCHMARKS.md`,
    /// "Disk bytes per message").
    pub fn write_ahead_log(mut self, on: bool) -> Self {
        self.write_ahead_log = on;
        self
    }

    /// Longest time between checkpoints (durable commits of the database file,
    /// after which the log starts over), while there are writes. Default 5 s.
    ///
    /// Longer means fewer bytes written per message (a page gathers more
    /// writes before it is written out) and more log to replay after a crash.
    pub fn checkpoint_interval(mut self, every: Duration) -> Self {
        self.checkpoint_interval = every;
        self
    }

    /// Size of the log at which a checkpoint is taken whatever the interval.
    /// Default 4 MiB: a checkpoint blocks every write for as long as redb
    /// takes to write and sync what changed since the last one (about 530 ms
    /// per 32 MiB here), so smaller and more frequent ones cut the appends'
    /// tail latency; at 100 or 1,000 appends/s the 5 s interval comes first.
    pub fn checkpoint_bytes(mut self, n: u64) -> Self {
        self.checkpoint_bytes = n.max(1);
        self
    }

    /// How long an operation token is remembered at least (unless over
    /// [`EmbeddedOptions::op_token_max`]). Default [`crate::store::OP_TOKEN_TTL_MS`].
    /// Reopen a store with the same value: a replay of the log forgets tokens
    /// by it.
    pub fn op_token_ttl(mut self, ttl: Duration) -> Self {
        self.op_token_ttl = ttl;
        self
    }

    /// How many operation tokens are remembered at most; the oldest go
    /// first. Default [`crate::store::OP_TOKEN_MAX`]. Reopen a store with the
    /// same value (as for [`EmbeddedOptions::op_token_ttl`]).
    pub fn op_token_max(mut self, n: u64) -> Self {
        self.op_token_max = n.max(1);
        self
    }

    fn token_bounds(&self) -> TokenBounds {
        TokenBounds {
            ttl_ms: u64::try_from(self.op_token_ttl.as_millis()).unwrap_or(u64::MAX),
            max: self.op_token_max,
        }
    }

    fn writer_config(&self) -> Config {
        Config {
            queue_capacity: self.queue_capacity,
            max_batch: self.max_batch,
            durability: if self.write_ahead_log {
                Durability::Logged {
                    checkpoint_interval: self.checkpoint_interval,
                    checkpoint_bytes: self.checkpoint_bytes,
                }
            } else {
                Durability::Committed
            },
            token_bounds: self.token_bounds(),
        }
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
    /// Then replays the write-ahead log ([`WAL_FILE_NAME`]) into the database:
    /// every write acknowledged before a crash is there once `open` returns.
    ///
    /// Fails if another process (or another `EmbeddedStore`) has the file open,
    /// if the file was written by a newer layout, or if the log does not
    /// continue the database (a record missing between them).
    pub fn open(dir: &Path, opts: EmbeddedOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(FILE_NAME);
        let db = Database::builder().set_cache_size(opts.cache_bytes).create(&path)?;
        init(&db)?;
        // Whatever the mode, a log left by an earlier run is replayed first.
        let recovered = writer::recover(&db, &dir.join(WAL_FILE_NAME), opts.token_bounds())?;
        let db = Arc::new(db);
        let writer = Writer::start(db.clone(), opts.writer_config(), recovered)
            .map_err(|e| StoreError::Unavailable(format!("cannot start the store writer: {e}")))?;
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

    /// The Welcomes stored in the file: `(group, commit seq, inbox entries
    /// still referring to it)`, in key order. For tests and inspection: it
    /// reads the whole table.
    pub async fn stored_welcomes(&self) -> StoreResult<Vec<(GroupId, u64, u64)>> {
        self.read(|txn| {
            let table = txn.open_table(layout::WELCOMES)?;
            let mut out = Vec::new();
            reads::scan_prefix(&table, &[], |k, v| {
                let seq = layout::trailing_u64(k)?;
                let group = GroupKey::decode(k.get(..k.len().saturating_sub(8)).unwrap_or_default())?;
                let w: layout::WelcomeValue = layout::decode(v)?;
                out.push((group, seq, w.refs));
                Ok(true)
            })?;
            Ok(out)
        })
        .await
    }

    /// How many operation tokens the file remembers (for tests).
    pub async fn remembered_tokens(&self) -> StoreResult<u64> {
        self.read(|txn| {
            let meta: Option<layout::TokenMeta> = layout::get(&txn.open_table(layout::META)?, layout::TOKEN_META_KEY)?;
            Ok(meta.map_or(0, |m| m.count))
        })
        .await
    }

    /// Queues `op` for the writer; `pick` takes the answer of the kind it expects.
    async fn write<T>(&self, op: WriteOp, pick: fn(Outcome) -> Option<T>) -> StoreResult<T> {
        pick(self.writer.write(op).await?).ok_or_else(mismatch)
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
            .map_err(|e| StoreError::Unavailable(format!("read task failed: {e}")))?
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
            layout::WELCOMES,
            layout::OP_TOKENS,
            layout::OP_TOKEN_ORDER,
            layout::REVOKED,
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
            // Version 1 differs only in having no log, version 2 in having
            // Welcomes inline (still read) and no tokens, version 3 in having
            // no revocations.
            Some(1..=3) => {
                meta.insert(layout::FORMAT_KEY, layout::encode(&layout::FORMAT_VERSION)?.as_slice())?;
            }
            Some(other) => {
                return Err(StoreError::Unavailable(format!(
                    "database layout version {other} is not supported (this relay writes {})",
                    layout::FORMAT_VERSION
                )));
            }
        }
    }
    txn.commit()?;
    Ok(())
}

fn done(o: Outcome) -> Option<()> {
    match o {
        Outcome::Done => Some(()),
        _ => None,
    }
}

fn seq(o: Outcome) -> Option<u64> {
    match o {
        Outcome::Seq(n) => Some(n),
        _ => None,
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn register_device(&self, record: DeviceRecord) -> StoreResult<RegisterOutcome> {
        self.write(WriteOp::RegisterDevice(record.into()), |o| match o {
            Outcome::Registered(r) => Some(r),
            _ => None,
        })
        .await
    }

    async fn device(&self, device: DeviceId) -> StoreResult<Option<DeviceRecord>> {
        self.read(move |txn| reads::device(&txn.open_table(layout::DEVICES)?, device))
            .await
    }

    async fn revoke_device(&self, revocation: Revocation) -> StoreResult<()> {
        self.write(WriteOp::RevokeDevice(revocation.into()), done).await
    }

    async fn revocation(&self, device: DeviceId) -> StoreResult<Option<Revocation>> {
        self.read(move |txn| reads::revocation(&txn.open_table(layout::REVOKED)?, device))
            .await
    }

    async fn user_devices_page(
        &self,
        user: &UserId,
        after: Option<DeviceId>,
        limit: usize,
    ) -> StoreResult<Vec<DeviceRecord>> {
        let user = user.clone();
        self.read(move |txn| {
            reads::user_devices_page(
                &txn.open_table(layout::USER_DEVICES)?,
                &txn.open_table(layout::DEVICES)?,
                &user,
                after,
                limit,
            )
        })
        .await
    }

    async fn set_last_seen(&self, device: DeviceId, ms: u64) -> StoreResult<()> {
        self.write(WriteOp::SetLastSeen { device, ms }, done).await
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
        self.write(WriteOp::CreateGroup(new), |o| match o {
            Outcome::Group(g) => Some(g),
            _ => None,
        })
        .await
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

    async fn list_groups(&self, after: Option<GroupId>, limit: usize) -> StoreResult<Vec<GroupId>> {
        self.read(move |txn| reads::list_groups(&txn.open_table(layout::GROUPS)?, after.as_ref(), limit))
            .await
    }

    async fn set_policy(&self, group: &GroupId, by: DeviceId, policy: Policy) -> StoreResult<()> {
        let group = group.clone();
        self.write(WriteOp::SetPolicy { group, by, policy }, done).await
    }

    async fn memberships_page(
        &self,
        device: DeviceId,
        after: Option<GroupId>,
        limit: usize,
    ) -> StoreResult<Vec<Membership>> {
        self.read(move |txn| reads::memberships_page(&txn.open_table(layout::MEMBERS)?, device, after.as_ref(), limit))
            .await
    }

    async fn membership(&self, device: DeviceId, group: &GroupId) -> StoreResult<Option<Membership>> {
        let group = group.clone();
        self.read(move |txn| reads::membership(&txn.open_table(layout::MEMBERS)?, device, &group))
            .await
    }

    async fn append(&self, req: AppendRequest) -> StoreResult<AppendOutcome> {
        self.write(WriteOp::Append(req.into()), |o| match o {
            Outcome::Appended(a) => Some(a),
            _ => None,
        })
        .await
    }

    async fn submit_append(&self, req: AppendRequest) -> StoreResult<PendingAppend> {
        let pending = self.writer.submit(WriteOp::Append(req.into())).await?;
        Ok(Box::pin(async move {
            match pending.await? {
                Outcome::Appended(a) => Ok(a),
                _ => Err(mismatch()),
            }
        }))
    }

    async fn read_log(
        &self,
        group: &GroupId,
        from_seq: u64,
        direction: Direction,
        limit: usize,
        max_bytes: usize,
    ) -> StoreResult<Vec<LogEntry>> {
        let group = group.clone();
        self.read(move |txn| {
            let (groups, log) = (txn.open_table(layout::GROUPS)?, txn.open_table(layout::LOG)?);
            reads::read_log(&groups, &log, &group, from_seq, direction, limit, max_bytes)
        })
        .await
    }

    async fn redact(&self, group: &GroupId, seq: u64, by: DeviceId) -> StoreResult<()> {
        let group = group.clone();
        self.write(WriteOp::Redact { group, seq, by }, done).await
    }

    async fn void_commit(&self, group: &GroupId, seq: u64, by: DeviceId) -> StoreResult<()> {
        let group = group.clone();
        self.write(WriteOp::VoidCommit { group, seq, by }, done).await
    }

    async fn advance_cursors(&self, cursors: Vec<(DeviceId, GroupId, u64)>) -> StoreResult<()> {
        if cursors.is_empty() {
            return Ok(());
        }
        self.write(WriteOp::AdvanceCursors(cursors), done).await
    }

    async fn upload_key_packages(
        &self,
        token: OpToken,
        device: DeviceId,
        one_time: Vec<Bytes>,
        last_resort: Option<Bytes>,
    ) -> StoreResult<(u32, bool)> {
        let op = WriteOp::UploadKeyPackagesOnce {
            token: tokened(token),
            device,
            one_time,
            last_resort,
        };
        self.write(op, |o| match o {
            Outcome::KeyPackages(count, last_resort) => Some((count, last_resort)),
            _ => None,
        })
        .await
    }

    async fn claim_key_packages(
        &self,
        token: OpToken,
        claims: Vec<KeyPackageClaim>,
    ) -> StoreResult<Vec<ClaimedKeyPackage>> {
        let op = WriteOp::ClaimKeyPackagesFrom {
            token: tokened(token),
            claims: claims.into_iter().map(|c| (c.device, c.one_time)).collect(),
        };
        self.write(op, |o| match o {
            Outcome::Claimed(c) => Some(c),
            _ => None,
        })
        .await
    }

    async fn inbox_push(
        &self,
        token: OpToken,
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
        let op = WriteOp::InboxPushOnce {
            token: tokened(token),
            entry: new,
        };
        self.write(op, seq).await
    }

    async fn inbox_page(
        &self,
        device: DeviceId,
        after_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> StoreResult<Vec<InboxEntry>> {
        self.read(move |txn| {
            let (inbox, welcomes) = (txn.open_table(layout::INBOX)?, txn.open_table(layout::WELCOMES)?);
            reads::inbox_read(&inbox, &welcomes, device, after_seq, limit, max_bytes)
        })
        .await
    }

    async fn inbox_ack(&self, device: DeviceId, seq: u64) -> StoreResult<u64> {
        self.write(WriteOp::InboxAck { device, seq }, self::seq).await
    }

    async fn key_package_count(&self, device: DeviceId) -> StoreResult<u32> {
        self.read(move |txn| reads::key_package_count(&txn.open_table(layout::KP_META)?, device))
            .await
    }

    async fn inbox_state(&self, device: DeviceId) -> StoreResult<(u64, u64)> {
        self.read(move |txn| {
            let meta = reads::inbox_meta(&txn.open_table(layout::INBOX_META)?, device)?;
            Ok((meta.acked, meta.head))
        })
        .await
    }

    async fn prune_group(&self, group: &GroupId, rule: RetentionRule, max_entries: usize) -> StoreResult<PruneStep> {
        let op = WriteOp::PruneGroup {
            group: group.clone(),
            rule,
            max_entries: max_entries as u64,
        };
        self.write(op, |o| match o {
            Outcome::Pruned(step) => Some(step),
            _ => None,
        })
        .await
    }
}

/// A token with the time the request was queued, logged with it.
fn tokened(token: OpToken) -> Tokened {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Tokened { token, now_ms }
}

#[cfg(test)]
mod tests {
    use super::layout::{InboxValue, encode};
    use super::ops::WriteOp;
    use super::writes::PruneRequest;
    use super::*;

    /// A layout-2 file (Welcomes inline in inboxes) with a write-ahead log of
    /// layout-2 write requests (no tokens, retention of every group at once)
    /// opens: the log replays, the inline Welcome is read as it is, and
    /// acknowledging it works.
    #[tokio::test]
    async fn a_layout_2_file_and_its_log_open_and_replay() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("data");
        let device = DeviceRecord {
            device: DeviceId([7; 16]),
            user: UserId::from("old"),
            key: [7; 32],
            registered_ms: 1,
        };
        let group = GroupId(b"old".to_vec());
        {
            let store = EmbeddedStore::open(&dir, EmbeddedOptions::default()).expect("open");
            store.register_device(device.clone()).await.expect("register");
            store
                .create_group(group.clone(), device.device, Policy::default(), "eu".into(), 0)
                .await
                .expect("create");
        }
        // Make it look like layout 2: format 2 and a Welcome inline in the inbox.
        let db = Database::create(dir.join(FILE_NAME)).expect("db");
        let txn = db.begin_write().expect("txn");
        let lsn: u64 = {
            let mut meta = txn.open_table(layout::META).expect("meta");
            meta.insert(layout::FORMAT_KEY, encode(&2u64).expect("encode").as_slice())
                .expect("format");
            let mut inbox = txn.open_table(layout::INBOX).expect("inbox");
            let welcome = InboxValue {
                sender: device.device,
                kind: InboxKind::Welcome {
                    group: group.clone(),
                    commit_seq: 9,
                },
                timestamp_ms: 3,
                payload: Bytes::from_static(b"inline welcome"),
            };
            inbox
                .insert(
                    layout::device_seq(device.device, 1).as_slice(),
                    encode(&welcome).expect("encode").as_slice(),
                )
                .expect("inbox");
            let mut inbox_meta = txn.open_table(layout::INBOX_META).expect("inbox meta");
            let counters = layout::InboxMeta { acked: 0, head: 1 };
            inbox_meta
                .insert(
                    device.device.0.as_slice(),
                    encode(&counters).expect("encode").as_slice(),
                )
                .expect("inbox meta");
            layout::get(&meta, layout::APPLIED_LSN_KEY).expect("lsn").unwrap_or(0)
        };
        txn.commit().expect("commit");
        drop(db);
        // One log record of layout-2 requests after what the file holds.
        let legacy = [
            WriteOp::InboxPush(super::writes::NewInboxEntry {
                device: device.device,
                sender: device.device,
                kind: InboxKind::Direct,
                payload: Bytes::from_static(b"replayed"),
                now_ms: 4,
            }),
            WriteOp::Prune(PruneRequest {
                now_ms: 10,
                max_age_ms: 1,
                delete_acknowledged: true,
            }),
        ];
        let mut frame = vec![0u8; wal::HEADER_LEN];
        for op in &legacy {
            wal::push_op(&mut frame, &encode(op).expect("encode"));
        }
        wal::seal(&mut frame, lsn + 1);
        let mut log = wal::Wal::create(&dir.join(WAL_FILE_NAME)).expect("log");
        log.append(&frame).expect("append");
        drop(log);

        let store = EmbeddedStore::open(&dir, EmbeddedOptions::default()).expect("reopen");
        let inbox = store.inbox_read(device.device, 0, 10).await.expect("inbox");
        let payloads: Vec<_> = inbox.iter().map(|e| (e.seq, e.payload.clone())).collect();
        assert_eq!(
            payloads,
            vec![
                (1, Bytes::from_static(b"inline welcome")),
                (2, Bytes::from_static(b"replayed"))
            ]
        );
        assert_eq!(store.inbox_ack(device.device, 2).await, Ok(2));
        assert_eq!(store.inbox_read(device.device, 0, 10).await, Ok(vec![]));
        let record = store.group(&group).await.expect("group").expect("exists");
        assert_eq!(record.first_seq, 1);
    }
}
