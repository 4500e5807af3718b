//! Group commit: one thread applies every write, many requests per transaction.
//!
//! Callers queue a [`Job`] on a bounded channel and await a oneshot answer.
//! The writer thread takes whatever is queued (up to the batch limit), runs the
//! jobs one after another inside one redb write transaction, commits once (one
//! fsync for the whole batch) and only then answers every caller. A caller is
//! therefore never told "done" before its change is on disk, and concurrent
//! callers share the cost of the fsync.
//!
//! A job that breaks a rule writes nothing (its check runs before its first
//! write) and answers with its own error; the others in the batch go on. A
//! failure of redb itself aborts the transaction and every caller in the batch
//! gets `Backend`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{Database, Table, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use super::layout::{self, Def};
use crate::store::{StoreError, StoreResult};

/// The tables of one write transaction, opened once per batch.
pub(super) struct Tables<'txn> {
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
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self, redb::TableError> {
        let open = |def: Def| txn.open_table(def);
        Ok(Tables {
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
        })
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

/// Called once the batch's fate is known: `Ok` when it committed.
type Answer = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;

/// One queued write: runs inside the batch's transaction and returns how to
/// answer its caller.
type Job = Box<dyn for<'t> FnOnce(&mut Tables<'t>) -> Result<Answer, Fatal> + Send>;

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
    /// Starts the writer thread.
    pub(super) fn start(db: Arc<Database>, queue_capacity: usize, max_batch: usize) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let thread_counters = counters.clone();
        let thread = std::thread::Builder::new()
            .name("hush-store-writer".into())
            .spawn(move || run(&db, rx, max_batch.max(1), &thread_counters))?;
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

    /// Runs `op` in the next batch and returns its result once the batch is durable.
    ///
    /// `op` must return a rule error (`Ok(Err(..))`) only before its first
    /// write; everything that fails after that is `Fatal`.
    pub(super) async fn write<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&mut Tables<'t>) -> Result<StoreResult<T>, Fatal> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |tables| match op(tables) {
            Ok(result) => Ok(Box::new(move |committed: Result<(), &StoreError>| {
                // The caller may have gone away; the outcome stands regardless.
                let _ = tx.send(committed.map_err(Clone::clone).and(result));
            })),
            Err(Fatal(e)) => {
                // The batch is aborted: nothing of it will be written.
                let _ = tx.send(Err(e.clone()));
                Err(Fatal(e))
            }
        });
        let queue = self.queue.as_ref().ok_or_else(stopped)?;
        queue.send(job).await.map_err(|_| stopped())?;
        // A closed answer channel means the batch was aborted before this job ran.
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Backend("write abandoned: its batch failed".into())))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue lets the thread finish what is queued and exit; joining
        // it means the database file is closed once the store is dropped, so the
        // same directory can be opened again at once.
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Backend("store writer has stopped".into())
}

fn run(db: &Database, mut rx: mpsc::Receiver<Job>, max_batch: usize, counters: &Counters) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut previous = Previous::default();
    while rx.blocking_recv_many(&mut batch, max_batch) > 0 {
        gather(&mut rx, &mut batch, max_batch, &previous);
        let size = batch.len();
        let started = Instant::now();
        let jobs = batch.drain(..);
        // A bug that panics inside a job must not take every later write down with
        // it: the transaction is dropped (aborted), the batch's callers see their
        // answer channel closed, and the thread carries on with the next batch.
        if catch_unwind(AssertUnwindSafe(|| commit_batch(db, jobs))).is_err() {
            tracing::error!("store writer: a batch panicked and was aborted");
        }
        counters.requests.fetch_add(size as u64, Ordering::Relaxed);
        counters.syncs.fetch_add(1, Ordering::Relaxed);
        counters.checkpoints.fetch_add(1, Ordering::Relaxed);
        previous = Previous {
            size,
            took: started.elapsed(),
        };
    }
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

fn commit_batch(db: &Database, jobs: impl Iterator<Item = Job>) {
    let mut answers: Vec<Answer> = Vec::new();
    let outcome = (|| -> Result<(), StoreError> {
        // Default durability is `Immediate`: commit returns after fsync.
        let txn = db.begin_write()?;
        {
            let mut tables = Tables::open(&txn)?;
            for job in jobs {
                answers.push(job(&mut tables).map_err(|Fatal(e)| e)?);
            }
        }
        txn.commit()?;
        Ok(())
    })();
    match outcome {
        Ok(()) => answers.into_iter().for_each(|answer| answer(Ok(()))),
        Err(e) => {
            tracing::error!(error = %e, "store writer: batch aborted");
            answers.into_iter().for_each(|answer| answer(Err(&e)));
        }
    }
}
