//! Group commit: one thread applies every write, many requests per transaction,
//! one sync per batch.
//!
//! Callers queue a [`WriteOp`] on a bounded channel and await a oneshot answer.
//! The writer thread takes whatever is queued (up to the batch limit), applies
//! the ops one after another inside one redb write transaction, then makes the
//! batch durable and only then commits it (so readers see it) and answers every
//! caller. A caller is therefore never told "done" before its change is on
//! disk, and concurrent callers share one sync.
//!
//! How a batch is made durable depends on [`Durability`]:
//! * `Logged` (the default): the ops of the batch that wrote something are
//!   appended as one record to the write-ahead log (`wal`) and fdatasync'ed;
//!   the redb transaction then commits with `redb::Durability::None` (in
//!   memory, no sync). Every `checkpoint_interval`, or when the log holds
//!   `checkpoint_bytes`, a durable redb commit writes out everything since the
//!   last one, after which the log starts over. Each batch's transaction also
//!   records its log sequence number in the `meta` table, so the database file
//!   always says which records it contains; at open, [`recover`] applies the
//!   records after that.
//! * `Committed`: every batch's redb commit is durable (redb's own fsync), no
//!   log. Redb copies on write every B-tree page a commit touches, so this
//!   writes far more per batch; it is kept for comparison.
//!
//! A job that breaks a rule writes nothing (its check runs before its first
//! write) and answers with its own error; the others in the batch go on. A
//! failure of redb itself aborts the transaction and every caller in the batch
//! gets `Unavailable`. A failure to write or sync the log, or to commit after the
//! log record is on disk, leaves the database and the log in doubt: the writer
//! then refuses every further write until the store is opened again (which
//! replays the log).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, Table, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use super::layout::{self, Def};
use super::ops::{self, Outcome, WriteOp};
use super::wal::{self, Wal};
use crate::store::{StoreError, StoreResult};

/// The tables of one write transaction, opened once per batch.
pub(super) struct Tables<'txn> {
    pub meta: Table<'txn, &'static [u8], &'static [u8]>,
    pub devices: Table<'txn, &'static [u8], &'static [u8]>,
    pub user_devices: Table<'txn, &'static [u8], &'static [u8]>,
    pub last_seen: Table<'txn, &'static [u8], &'static [u8]>,
    pub groups: Table<'txn, &'static [u8], &'static [u8]>,
    pub roster: Table<'txn, &'static [u8], &'static [u8]>,
    pub log: Table<'txn, &'static [u8], &'static [u8]>,
    pub idempotency: Table<'txn, &'static [u8], &'static [u8]>,
    pub members: Table<'txn, &'static [u8], &'static [u8]>,
    pub kp_one_time: Table<'txn, &'static [u8], &'static [u8]>,
    pub kp_last_resort: Table<'txn, &'static [u8], &'static [u8]>,
    pub kp_meta: Table<'txn, &'static [u8], &'static [u8]>,
    pub inbox: Table<'txn, &'static [u8], &'static [u8]>,
    pub inbox_meta: Table<'txn, &'static [u8], &'static [u8]>,
    pub welcomes: Table<'txn, &'static [u8], &'static [u8]>,
    pub op_tokens: Table<'txn, &'static [u8], &'static [u8]>,
    pub op_token_order: Table<'txn, &'static [u8], &'static [u8]>,
    pub revoked: Table<'txn, &'static [u8], &'static [u8]>,
    /// How long and how many operation tokens are remembered.
    pub token_bounds: TokenBounds,
    /// Set when an op passed its check and went on to write: only such ops
    /// are logged.
    pub wrote: bool,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction, token_bounds: TokenBounds) -> Result<Self, redb::TableError> {
        let open = |def: Def| txn.open_table(def);
        Ok(Tables {
            meta: open(layout::META)?,
            devices: open(layout::DEVICES)?,
            user_devices: open(layout::USER_DEVICES)?,
            last_seen: open(layout::LAST_SEEN)?,
            groups: open(layout::GROUPS)?,
            roster: open(layout::ROSTER)?,
            log: open(layout::LOG)?,
            idempotency: open(layout::IDEMPOTENCY)?,
            members: open(layout::MEMBERS)?,
            kp_one_time: open(layout::KP_ONE_TIME)?,
            kp_last_resort: open(layout::KP_LAST_RESORT)?,
            kp_meta: open(layout::KP_META)?,
            inbox: open(layout::INBOX)?,
            inbox_meta: open(layout::INBOX_META)?,
            welcomes: open(layout::WELCOMES)?,
            op_tokens: open(layout::OP_TOKENS)?,
            op_token_order: open(layout::OP_TOKEN_ORDER)?,
            revoked: open(layout::REVOKED)?,
            token_bounds,
            wrote: false,
        })
    }

    /// Records in the transaction which log record it applies.
    fn set_applied(&mut self, lsn: u64) -> Result<(), StoreError> {
        self.meta
            .insert(layout::APPLIED_LSN_KEY, layout::encode(&lsn)?.as_slice())?;
        Ok(())
    }
}

/// An error that aborts the whole batch: redb failed, or a record being
/// rewritten turned out corrupt after the job had started writing.
#[derive(Debug)]
pub(super) struct Fatal(pub StoreError);

impl From<StoreError> for Fatal {
    fn from(e: StoreError) -> Self {
        Fatal(e)
    }
}

impl From<redb::StorageError> for Fatal {
    fn from(e: redb::StorageError) -> Self {
        Fatal(e.into())
    }
}

/// How the writer makes a batch durable (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Durability {
    /// Write-ahead log record + fdatasync; redb commits without syncing and
    /// checkpoints durably now and then.
    Logged {
        checkpoint_interval: Duration,
        checkpoint_bytes: u64,
    },
    /// A durable redb commit per batch.
    Committed,
}

/// How long and how many operation tokens are remembered (see
/// `crate::store::OpToken`). A store must be reopened with the same bounds
/// for a replay to forget exactly what the first run forgot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TokenBounds {
    pub ttl_ms: u64,
    pub max: u64,
}

/// The writer's settings.
#[derive(Clone, Copy, Debug)]
pub(super) struct Config {
    pub queue_capacity: usize,
    pub max_batch: usize,
    pub durability: Durability,
    pub token_bounds: TokenBounds,
}

/// One queued write and where its answer goes.
struct Job {
    op: WriteOp,
    answer: oneshot::Sender<StoreResult<Outcome>>,
}

/// The handle callers use to reach the writer thread.
pub(super) struct Writer {
    queue: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

/// What the writer thread did, for [`super::WriterStats`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub requests: AtomicU64,
    pub syncs: AtomicU64,
    pub checkpoints: AtomicU64,
}

impl Writer {
    /// Starts the writer thread on a database that [`recover`] brought up to
    /// date (`recovered` is what it returned).
    pub(super) fn start(db: Arc<Database>, config: Config, recovered: Recovered) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        // The thread's own runtime only serves the timed wait for the next job
        // (a checkpoint is due even when no write arrives).
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
        let wal = match config.durability {
            Durability::Logged { .. } => Some(recovered.wal),
            Durability::Committed => None,
        };
        let engine = Engine {
            db,
            config,
            wal,
            lsn: recovered.lsn,
            frame: Vec::new(),
            answers: Vec::new(),
            last_checkpoint: Instant::now(),
            unflushed: false,
            in_doubt: false,
            failed: None,
            counters: counters.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("hush-store-writer".into())
            .spawn(move || run(engine, &runtime, rx))?;
        Ok(Writer {
            queue: Some(tx),
            thread: Some(thread),
            counters,
        })
    }

    /// The writer's counters.
    pub(super) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Applies `op` in the next batch and returns its outcome once the batch is durable.
    pub(super) async fn write(&self, op: WriteOp) -> StoreResult<Outcome> {
        self.submit(op).await?.await
    }

    /// Queues `op` (waiting for room in the queue) and returns, once it is
    /// queued, a future of its outcome. Jobs run in the order they were
    /// queued, so a caller that queues several before awaiting any keeps their
    /// order and still shares syncs between them.
    pub(super) async fn submit(
        &self,
        op: WriteOp,
    ) -> StoreResult<impl Future<Output = StoreResult<Outcome>> + Send + 'static> {
        let (answer, rx) = oneshot::channel();
        let queue = self.queue.as_ref().ok_or_else(stopped)?;
        queue.send(Job { op, answer }).await.map_err(|_| stopped())?;
        // A closed answer channel means the batch was aborted before this job ran.
        Ok(async move {
            rx.await
                .unwrap_or_else(|_| Err(StoreError::Transient("write abandoned: its batch was aborted".into())))
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue lets the thread finish what is queued, checkpoint and
        // exit; joining it means the database file is closed once the store is
        // dropped, so the same directory can be opened again at once.
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("store writer has stopped".into())
}

/// The writer thread's state.
struct Engine {
    db: Arc<Database>,
    config: Config,
    /// The log, in `Logged` mode.
    wal: Option<Wal>,
    /// Sequence number of the last record written (or replayed).
    lsn: u64,
    /// The record being built, reused from batch to batch.
    frame: Vec<u8>,
    /// The answers of the batch being applied, reused from batch to batch.
    answers: Vec<(oneshot::Sender<StoreResult<Outcome>>, StoreResult<Outcome>)>,
    last_checkpoint: Instant,
    /// Whether redb holds commits that are not durable in its file yet.
    unflushed: bool,
    /// Set from writing a log record until its transaction committed: a
    /// failure in between leaves the database behind the log.
    in_doubt: bool,
    /// Set once the database and the log are in doubt; every write is refused.
    failed: Option<StoreError>,
    counters: Arc<Counters>,
}

fn run(mut engine: Engine, runtime: &tokio::runtime::Runtime, mut rx: mpsc::Receiver<Job>) {
    let max_batch = engine.config.max_batch.max(1);
    let mut batch = Vec::with_capacity(max_batch);
    let mut previous = Previous::default();
    loop {
        if engine.checkpoint_due() {
            engine.checkpoint();
        }
        let received = match engine.until_checkpoint() {
            None => runtime.block_on(rx.recv_many(&mut batch, max_batch)),
            // The timer must be made inside the runtime.
            Some(wait) => match runtime
                .block_on(async { tokio::time::timeout(wait, rx.recv_many(&mut batch, max_batch)).await })
            {
                Ok(n) => n,
                // Idle until the checkpoint was due: take it, then wait again.
                Err(_) => continue,
            },
        };
        if received == 0 {
            break;
        }
        gather(&mut rx, &mut batch, max_batch, &previous);
        let size = batch.len();
        let started = Instant::now();
        // A bug that panics inside a job must not take every later write down with
        // it: the transaction is dropped (aborted), the batch's callers see their
        // answer channel closed, and the thread carries on with the next batch.
        // A panic after the log record was written leaves the two in doubt.
        if catch_unwind(AssertUnwindSafe(|| engine.commit_batch(batch.drain(..)))).is_err() {
            tracing::error!("store writer: a batch panicked and was aborted");
            if engine.in_doubt {
                engine.fail(StoreError::Unavailable("store writer panicked during a commit".into()));
            }
        }
        engine.counters.requests.fetch_add(size as u64, Ordering::Relaxed);
        previous = Previous {
            size,
            took: started.elapsed(),
        };
    }
    // The queue is closed and drained: make everything durable in the file.
    // Not after a failure: a checkpoint would record as applied a record
    // whose transaction did not commit, and the next open would skip it.
    if engine.unflushed && engine.failed.is_none() {
        engine.checkpoint();
    }
}

impl Engine {
    fn fail(&mut self, e: StoreError) {
        tracing::error!(error = %e, "store writer: refusing further writes until the store is reopened");
        self.failed = Some(StoreError::Unavailable(format!(
            "store writer stopped after a failure ({e}); reopen the store"
        )));
    }

    fn checkpoint_due(&self) -> bool {
        match self.config.durability {
            Durability::Logged {
                checkpoint_interval,
                checkpoint_bytes,
            } => {
                self.unflushed
                    && self.failed.is_none()
                    && (self.last_checkpoint.elapsed() >= checkpoint_interval
                        || self.wal.as_ref().is_some_and(|w| w.len() >= checkpoint_bytes))
            }
            Durability::Committed => false,
        }
    }

    /// How long the thread may wait for a job before a checkpoint is due.
    fn until_checkpoint(&self) -> Option<Duration> {
        match self.config.durability {
            Durability::Logged {
                checkpoint_interval, ..
            } if self.unflushed && self.failed.is_none() => {
                Some(checkpoint_interval.saturating_sub(self.last_checkpoint.elapsed()))
            }
            _ => None,
        }
    }

    /// A durable redb commit covering every record so far, then the log starts over.
    fn checkpoint(&mut self) {
        match checkpoint(&self.db, self.lsn) {
            Ok(()) => {
                if let Some(wal) = &mut self.wal {
                    wal.reset();
                }
                self.unflushed = false;
                self.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
            }
            // The log still holds every record; the next open replays them.
            Err(e) => self.fail(e),
        }
        self.last_checkpoint = Instant::now();
    }

    fn commit_batch(&mut self, jobs: impl Iterator<Item = Job>) {
        if let Some(e) = &self.failed {
            for job in jobs {
                let _ = job.answer.send(Err(e.clone()));
            }
            return;
        }
        // Reused from batch to batch: growing a fresh one to a large batch's
        // size was a tenth of the writer's time.
        let mut answers = std::mem::take(&mut self.answers);
        let mut pending = jobs;
        let outcome = self.apply_batch(&mut pending, &mut answers);
        match outcome {
            Ok(()) => {
                for (answer, result) in answers.drain(..) {
                    // The caller may have gone away; the outcome stands regardless.
                    let _ = answer.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "store writer: batch aborted");
                for (answer, _) in answers.drain(..) {
                    let _ = answer.send(Err(e.clone()));
                }
                for job in pending {
                    let _ = job.answer.send(Err(e.clone()));
                }
            }
        }
        self.answers = answers;
    }

    /// Applies the jobs in one transaction, makes them durable and commits.
    /// Answers are collected in `answers`; on error none of them stands.
    fn apply_batch(
        &mut self,
        jobs: &mut impl Iterator<Item = Job>,
        answers: &mut Vec<(oneshot::Sender<StoreResult<Outcome>>, StoreResult<Outcome>)>,
    ) -> Result<(), StoreError> {
        let logged = self.wal.is_some();
        let mut txn = self.db.begin_write()?;
        if logged {
            txn.set_durability(redb::Durability::None)?;
        }
        self.frame.clear();
        self.frame.resize(wal::HEADER_LEN, 0);
        let mut wrote = false;
        let lsn = self.lsn + 1;
        {
            let mut tables = Tables::open(&txn, self.config.token_bounds)?;
            for job in jobs.by_ref() {
                let mark = self.frame.len();
                if logged && let Err(e) = wal::push_op_with(&mut self.frame, |b| layout::encode_into(&job.op, b)) {
                    answers.push((job.answer, Err(e)));
                    continue;
                }
                tables.wrote = false;
                let result = match ops::apply(&mut tables, job.op) {
                    Ok(result) => result,
                    Err(Fatal(e)) => {
                        let _ = job.answer.send(Err(e.clone()));
                        return Err(e);
                    }
                };
                if tables.wrote {
                    wrote = true;
                } else {
                    self.frame.truncate(mark);
                }
                answers.push((job.answer, result));
            }
            if wrote && logged {
                tables.set_applied(lsn)?;
            }
        }
        if !wrote {
            // Nothing to make durable: every answer rests on commits already durable.
            txn.abort()?;
            return Ok(());
        }
        if let Some(wal) = &mut self.wal {
            wal::seal(&mut self.frame, lsn);
            self.in_doubt = true;
            if let Err(e) = wal.append(&self.frame) {
                // The record may be on disk in part or in whole: in doubt.
                let e = StoreError::Unavailable(format!("write-ahead log: {e}"));
                self.fail(e.clone());
                return Err(e);
            }
            self.lsn = lsn;
            self.counters.syncs.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = txn.commit() {
                // The record is durable and will be replayed at the next open.
                let e = StoreError::from(e);
                self.fail(e.clone());
                return Err(e);
            }
            self.in_doubt = false;
            self.unflushed = true;
        } else {
            txn.commit()?;
            self.counters.syncs.fetch_add(1, Ordering::Relaxed);
            self.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// A durable commit that records `lsn` as applied; redb writes out every
/// non-durable commit before it.
fn checkpoint(db: &Database, lsn: u64) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(layout::META)?;
        meta.insert(layout::APPLIED_LSN_KEY, layout::encode(&lsn)?.as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

/// What [`recover`] leaves for the writer.
pub(super) struct Recovered {
    wal: Wal,
    lsn: u64,
}

/// Opens the log next to the database, applies the records the database does
/// not contain yet (in order, each in its own transaction), and checkpoints.
///
/// The database's `applied_lsn` says which record its last durable commit
/// contains. Records up to it are skipped; the first record after it must be
/// the next one. A record whose checksum holds but whose ops do not decode, or
/// a gap between the database and the log, or a damaged record with newer
/// ones after it, is refused: acknowledged writes would be lost.
pub(super) fn recover(db: &Database, wal_path: &std::path::Path, token_bounds: TokenBounds) -> StoreResult<Recovered> {
    let io_error = |e: std::io::Error| StoreError::Unavailable(format!("write-ahead log {}: {e}", wal_path.display()));
    let contents = Wal::read(wal_path).map_err(io_error)?;
    let mut lsn: u64 = layout::get(&db.begin_read()?.open_table(layout::META)?, layout::APPLIED_LSN_KEY)?.unwrap_or(0);
    let mut replayed = 0usize;
    let (chain, end) = wal::records(&contents);
    let newest = chain.last().map_or(0, |r| r.lsn).max(lsn);
    if let Some(later) = wal::newer_record_after(&contents, end, newest + 1) {
        return Err(StoreError::Unavailable(format!(
            "write-ahead log {} is damaged: the record after {newest} is unreadable but record {later} \
             follows it; refusing to open rather than lose acknowledged writes",
            wal_path.display()
        )));
    }
    for record in chain {
        if record.lsn <= lsn {
            continue;
        }
        if record.lsn != lsn + 1 {
            return Err(StoreError::Unavailable(format!(
                "write-ahead log starts at record {} but the database holds records up to {lsn}",
                record.lsn
            )));
        }
        let ops = wal::ops(record.body).ok_or_else(|| corrupt_record(record.lsn))?;
        let mut txn = db.begin_write()?;
        txn.set_durability(redb::Durability::None)?;
        {
            let mut tables = Tables::open(&txn, token_bounds)?;
            for op in ops {
                let op: WriteOp = layout::decode(op).map_err(|_| corrupt_record(record.lsn))?;
                match ops::apply(&mut tables, op) {
                    Ok(Ok(_)) => {}
                    // Replay re-applies what succeeded before on the same state, so
                    // this cannot happen short of a bug; the op wrote nothing.
                    Ok(Err(e)) => tracing::warn!(lsn = record.lsn, error = %e, "replayed write refused"),
                    Err(Fatal(e)) => return Err(e),
                }
            }
            tables.set_applied(record.lsn)?;
        }
        txn.commit()?;
        lsn = record.lsn;
        replayed += 1;
    }
    if replayed > 0 {
        tracing::info!(records = replayed, lsn, "store: replayed the write-ahead log");
    }
    checkpoint(db, lsn)?;
    // Every record is in the database now; the log starts over in a new file.
    let wal = Wal::create(wal_path).map_err(io_error)?;
    Ok(Recovered { wal, lsn })
}

fn corrupt_record(lsn: u64) -> StoreError {
    StoreError::Unavailable(format!("write-ahead log record {lsn} is corrupt"))
}

/// The batch before this one.
#[derive(Default)]
struct Previous {
    size: usize,
    took: Duration,
}

/// Longest the writer waits for a batch to fill.
const MAX_LINGER: Duration = Duration::from_millis(2);
/// How often it looks at the queue while it waits.
const LINGER_POLL: Duration = Duration::from_micros(50);

/// After a batch of several requests, waits briefly for as many to queue again
/// before committing.
///
/// Callers answered by the last commit resubmit a moment after it; without the
/// wait the writer would commit the few requests already queued, the others
/// would arrive during that fsync, and batches would alternate between large and
/// tiny, each caller getting one write per two fsyncs. The wait is at most half
/// the last batch's duration (and [`MAX_LINGER`]), and there is none after a
/// batch of one, so a lone writer never waits.
fn gather(rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>, max_batch: usize, previous: &Previous) {
    let target = previous.size.min(max_batch);
    if batch.len() >= target {
        return;
    }
    let deadline = Instant::now() + (previous.took / 2).min(MAX_LINGER);
    while batch.len() < target && Instant::now() < deadline {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(mpsc::error::TryRecvError::Empty) => std::thread::sleep(LINGER_POLL),
            Err(mpsc::error::TryRecvError::Disconnected) => return,
        }
    }
}
