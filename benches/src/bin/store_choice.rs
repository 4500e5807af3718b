//! `store_choice`: redb against fjall for the relay's write pattern, and the
//! relay's own embedded store on top of redb.
//!
//! ```text
//! cargo run --release -p hush-bench --bin store_choice
//! cargo run --release -p hush-bench --bin store_choice -- 4000 3   # appends, rounds
//! ```
//!
//! Every append is durable before it is acknowledged (redb commits with
//! `Durability::Immediate`; fjall commits its write batch with
//! `PersistMode::SyncAll`). Entries are 200 bytes of incompressible data (they
//! stand for ciphertext) under a `group ‖ seq` key, as in the relay's log.
//!
//! Scenarios, per engine, each in a fresh temporary directory:
//! * `1 writer`: one append per commit, one after the other.
//! * `64 writers`: 64 threads each send an append to one committer thread and
//!   wait for its answer; the committer takes everything queued (at most 256),
//!   writes it in one batch, commits once and answers all (group commit). With
//!   1 group every batch extends one key range; with 1000 groups (a relay's
//!   real traffic) a batch lands all over the key space.
//! * `read 100`: reads 100 consecutive entries at random positions of the log
//!   the previous scenario wrote.
//!
//! Then `EmbeddedStore::append` itself (all its rules) with 1 caller, and with
//! 64 concurrent callers in one group and spread over 64 groups.
//!
//! The disk's fsync latency drifts with whatever else the machine does, so the
//! program runs every scenario in several interleaved rounds and prints the
//! median. Output is Markdown, for `BENCHMARKS.md`.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hush_protocol::frame::{MessageKind, Policy};
use hush_protocol::{DeviceId, GroupId, UserId};
use hush_relay::store::embedded::{EmbeddedOptions, EmbeddedStore};
use hush_relay::store::{AppendRequest, DeviceRecord, Store};

const ENTRY_BYTES: usize = 200;
const WRITERS: usize = 64;
const MAX_BATCH: usize = 256;
const READ_LEN: usize = 100;
const READS: usize = 2_000;

/// One storage engine under test: durable batches of appends and range reads.
trait Engine: Send + Sync + 'static {
    /// Writes `entries` (key, value) in one atomic, durable commit.
    fn commit(&self, entries: &[(Vec<u8>, Vec<u8>)]) -> anyhow::Result<()>;
    /// Reads up to `n` entries from key `from` on; returns how many it read.
    fn read_range(&self, from: &[u8], to: &[u8], n: usize) -> anyhow::Result<usize>;
}

const REDB_LOG: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("log");

struct Redb(redb::Database);

impl Redb {
    fn open(dir: &Path) -> anyhow::Result<Self> {
        Ok(Redb(redb::Database::create(dir.join("bench.redb"))?))
    }
}

impl Engine for Redb {
    fn commit(&self, entries: &[(Vec<u8>, Vec<u8>)]) -> anyhow::Result<()> {
        let txn = self.0.begin_write()?;
        {
            let mut log = txn.open_table(REDB_LOG)?;
            for (k, v) in entries {
                log.insert(k.as_slice(), v.as_slice())?;
            }
        }
        // Durability::Immediate is the default: commit returns after fsync.
        txn.commit()?;
        Ok(())
    }

    fn read_range(&self, from: &[u8], to: &[u8], n: usize) -> anyhow::Result<usize> {
        use redb::ReadableDatabase;
        let txn = self.0.begin_read()?;
        let log = txn.open_table(REDB_LOG)?;
        let mut read = 0;
        for item in log.range(from..=to)?.take(n) {
            let (_, v) = item?;
            read += usize::from(!v.value().is_empty());
        }
        Ok(read)
    }
}

struct Fjall {
    db: fjall::Database,
    log: fjall::Keyspace,
}

impl Fjall {
    fn open(dir: &Path) -> anyhow::Result<Self> {
        let db = fjall::Database::builder(dir.join("bench.fjall")).open()?;
        let log = db.keyspace("log", fjall::KeyspaceCreateOptions::default)?;
        Ok(Fjall { db, log })
    }
}

impl Engine for Fjall {
    fn commit(&self, entries: &[(Vec<u8>, Vec<u8>)]) -> anyhow::Result<()> {
        // Without a durability mode a batch only reaches the OS buffers.
        let mut batch = self.db.batch().durability(Some(fjall::PersistMode::SyncAll));
        for (k, v) in entries {
            batch.insert(&self.log, k.as_slice(), v.as_slice());
        }
        batch.commit()?;
        Ok(())
    }

    fn read_range(&self, from: &[u8], to: &[u8], n: usize) -> anyhow::Result<usize> {
        let mut read = 0;
        for item in self.log.range(from..=to).take(n) {
            let (_, v) = item.into_inner()?;
            read += usize::from(!v.is_empty());
        }
        Ok(read)
    }
}

/// A small deterministic generator: payloads must not compress (fjall
/// compresses blocks) and runs must be repeatable.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// `group ‖ seq`, as in the relay's log table (a group id is its length, then
/// its bytes).
fn log_key(group: u64, seq: u64) -> Vec<u8> {
    let mut key = vec![13];
    key.extend_from_slice(b"group");
    key.extend_from_slice(&group.to_be_bytes());
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// Latency summary of one scenario run.
struct Summary {
    ops: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// Commits it took (0 where it does not apply).
    batches: usize,
}

impl Summary {
    fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort_unstable();
        let at = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(at).copied().unwrap_or_default()
    }
}

/// One row of a result table: every round's run of one scenario. The disk's
/// fsync latency drifts with whatever else the machine does, so rows report
/// the median over rounds, and the rounds interleave the engines.
#[derive(Default)]
struct Row {
    ops: usize,
    per_second: Vec<f64>,
    p50: Vec<Duration>,
    p99: Vec<Duration>,
    mean_batch: Vec<f64>,
}

impl Row {
    fn add(&mut self, mut run: Summary) {
        self.ops = run.ops;
        self.per_second.push(run.ops as f64 / run.elapsed.as_secs_f64());
        self.p50.push(run.percentile(0.5));
        self.p99.push(run.percentile(0.99));
        if run.batches > 0 {
            self.mean_batch.push(run.ops as f64 / run.batches as f64);
        }
    }

    fn print(&self, label: &str) {
        fn median<T: Copy + PartialOrd>(values: &[T]) -> Option<T> {
            let mut sorted = values.to_vec();
            sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
            sorted.get(sorted.len() / 2).copied()
        }
        let low = self.per_second.iter().copied().fold(f64::INFINITY, f64::min);
        let high = self.per_second.iter().copied().fold(0.0, f64::max);
        let micros = |d: Option<Duration>| d.unwrap_or_default().as_micros();
        let batch = median(&self.mean_batch).map_or("-".into(), |b| format!("{b:.1}"));
        println!(
            "| {label} | {} | {:.0} ({low:.0}–{high:.0}) | {} | {} | {batch} |",
            self.ops,
            median(&self.per_second).unwrap_or_default(),
            micros(median(&self.p50)),
            micros(median(&self.p99)),
        );
    }
}

/// Runs `op(1)`, `op(2)`, ... `op(n)` one after the other, timing each.
fn one_by_one(n: usize, mut op: impl FnMut(u64) -> anyhow::Result<()>) -> anyhow::Result<Summary> {
    let mut latencies = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 1..=n as u64 {
        let t = Instant::now();
        op(i)?;
        latencies.push(t.elapsed());
    }
    Ok(Summary {
        ops: n,
        elapsed: start.elapsed(),
        latencies,
        batches: n,
    })
}

/// The disk alone: append 200 bytes to a file and `fdatasync`, one after the
/// other. Every durable commit costs at least this.
fn raw_fsync(dir: &Path, appends: usize) -> anyhow::Result<Summary> {
    use std::io::Write;
    let mut file = std::fs::File::create(dir.join("raw.log"))?;
    let mut rng = XorShift(7);
    one_by_one(appends, |_| {
        file.write_all(&rng.bytes(ENTRY_BYTES))?;
        Ok(file.sync_data()?)
    })
}

fn one_writer(engine: &dyn Engine, appends: usize) -> anyhow::Result<Summary> {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    one_by_one(appends, |seq| {
        engine.commit(&[(log_key(0, seq), rng.bytes(ENTRY_BYTES))])
    })
}

/// An append for a group, and where to answer.
type Request = (u64, Vec<u8>, mpsc::Sender<anyhow::Result<()>>);

/// The committer of the group-commit scenarios: assigns each group's seqs in
/// arrival order, commits each drained batch once, answers every request in it.
fn committer(engine: Arc<dyn Engine>, rx: mpsc::Receiver<Request>) -> usize {
    let mut next_seq = std::collections::HashMap::<u64, u64>::new();
    let mut batches = 0;
    while let Ok(first) = rx.recv() {
        let mut pending = vec![first];
        while pending.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(request) => pending.push(request),
                Err(_) => break,
            }
        }
        let entries: Vec<_> = pending
            .iter()
            .map(|(group, value, _)| {
                let seq = next_seq.entry(*group).or_insert(0);
                *seq += 1;
                (log_key(*group, *seq), value.clone())
            })
            .collect();
        let result = engine.commit(&entries).map_err(|e| e.to_string());
        for (_, _, answer) in pending {
            let _ = answer.send(result.clone().map_err(anyhow::Error::msg));
        }
        batches += 1;
    }
    batches
}

/// 64 writers, each appending to a random one of `groups` groups.
fn many_writers(engine: Arc<dyn Engine>, appends: usize, groups: u64) -> anyhow::Result<Summary> {
    let (tx, rx) = mpsc::sync_channel::<Request>(4 * WRITERS);
    let committer = std::thread::spawn({
        let engine = engine.clone();
        move || committer(engine, rx)
    });
    let each = appends / WRITERS;
    let start = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let tx = tx.clone();
            std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
                let mut rng = XorShift(w as u64 + 1);
                let mut latencies = Vec::with_capacity(each);
                for _ in 0..each {
                    let (answer, wait) = mpsc::channel();
                    let t = Instant::now();
                    let group = rng.next() % groups;
                    tx.send((group, rng.bytes(ENTRY_BYTES), answer))
                        .context("committer gone")?;
                    wait.recv().context("no answer")??;
                    latencies.push(t.elapsed());
                }
                Ok(latencies)
            })
        })
        .collect();
    drop(tx);
    let mut latencies = Vec::with_capacity(appends);
    for writer in writers {
        latencies.extend(writer.join().map_err(|_| anyhow::anyhow!("writer panicked"))??);
    }
    let elapsed = start.elapsed();
    let batches = committer.join().map_err(|_| anyhow::anyhow!("committer panicked"))?;
    Ok(Summary {
        ops: each * WRITERS,
        elapsed,
        latencies,
        batches,
    })
}

fn range_reads(engine: &dyn Engine, log_len: u64) -> anyhow::Result<Summary> {
    let mut rng = XorShift(42);
    let span = log_len.saturating_sub(READ_LEN as u64).max(1);
    let mut summary = one_by_one(READS, |_| {
        let from = 1 + rng.next() % span;
        let read = engine.read_range(&log_key(0, from), &log_key(0, u64::MAX), READ_LEN)?;
        anyhow::ensure!(read == READ_LEN.min(log_len as usize), "short read: {read}");
        Ok(())
    })?;
    summary.batches = 0;
    Ok(summary)
}

/// `EmbeddedStore::append` with `callers` concurrent tasks, each waiting for its
/// acknowledgement before sending again; caller `c` sends to group `c % groups`.
async fn embedded_appends(callers: usize, appends: usize, groups: usize) -> anyhow::Result<Summary> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(EmbeddedStore::open(dir.path(), EmbeddedOptions::default())?);
    let key = [7u8; 32];
    let device = DeviceId::from_public_key(&key);
    store
        .register_device(DeviceRecord {
            device,
            user: UserId::from("bench"),
            key,
            registered_ms: 0,
        })
        .await?;
    for g in 0..groups {
        let group = GroupId(format!("bench-{g}").into_bytes());
        store
            .create_group(group, device, Policy::default(), "local".into(), 0)
            .await?;
    }
    let each = appends / callers;
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let store = store.clone();
            let group = GroupId(format!("bench-{}", c % groups).into_bytes());
            tokio::spawn(async move {
                let mut rng = XorShift(c as u64 + 1);
                let mut latencies = Vec::with_capacity(each);
                for n in 0..each {
                    let req = AppendRequest {
                        group: group.clone(),
                        sender: device,
                        client_msg_id: (c * each + n) as u64,
                        kind: MessageKind::Application,
                        epoch: 0,
                        payload: Bytes::from(rng.bytes(ENTRY_BYTES)),
                        roster: None,
                        now_ms: 1,
                    };
                    let t = Instant::now();
                    store.append(req).await?;
                    latencies.push(t.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(appends);
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(Summary {
        ops: each * callers,
        elapsed: start.elapsed(),
        latencies,
        batches: 0,
    })
}

/// The rows of the report, in print order.
#[derive(Default)]
struct Report {
    raw: Row,
    engines: [[Row; 4]; 2],
    embedded: [Row; 3],
}

const ENGINES: [&str; 2] = ["redb 4", "fjall 3"];
const SCENARIOS: [&str; 4] = [
    "1 writer, durable appends",
    "64 writers, group commit, 1 group",
    "64 writers, group commit, 1000 groups",
    "read 100 consecutive entries",
];

fn open_engine(index: usize, dir: &Path) -> anyhow::Result<Arc<dyn Engine>> {
    Ok(match index {
        0 => Arc::new(Redb::open(dir)?),
        _ => Arc::new(Fjall::open(dir)?),
    })
}

fn round(report: &mut Report, appends: usize, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    report.raw.add(raw_fsync(dir.path(), appends)?);
    for (index, rows) in report.engines.iter_mut().enumerate() {
        let (single, group) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let engine = open_engine(index, single.path())?;
        rows[0].add(one_writer(engine.as_ref(), appends)?);
        drop(engine);
        let engine = open_engine(index, group.path())?;
        let run = many_writers(engine.clone(), appends * 4, 1)?;
        let log_len = run.ops as u64;
        rows[1].add(run);
        rows[3].add(range_reads(engine.as_ref(), log_len)?);
        drop(engine);
        let spread = tempfile::tempdir()?;
        rows[2].add(many_writers(open_engine(index, spread.path())?, appends * 4, 1_000)?);
    }
    let runs = [
        (1, appends, 1),
        (WRITERS, appends * 4, 1),
        (WRITERS, appends * 4, WRITERS),
    ];
    for (row, (callers, total, groups)) in report.embedded.iter_mut().zip(runs) {
        row.add(runtime.block_on(embedded_appends(callers, total, groups))?);
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let usage = "usage: store_choice [APPENDS [ROUNDS]]";
    let mut args = std::env::args().skip(1);
    let appends: usize = args.next().map_or(Ok(1_000), |n| n.parse()).context(usage)?;
    let rounds: usize = args.next().map_or(Ok(5), |n| n.parse()).context(usage)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut report = Report::default();
    for n in 1..=rounds {
        eprintln!("round {n} of {rounds}");
        round(&mut report, appends, &runtime)?;
    }

    println!(
        "Medians of {rounds} rounds; ops/s also as (min–max). 1-writer runs: {appends} appends; 64-writer runs: {} appends.\n",
        appends * 4
    );
    println!("| engine: scenario | ops | ops/s | p50 µs | p99 µs | mean batch |");
    println!("|---|---:|---:|---:|---:|---:|");
    report.raw.print("disk alone: 200-byte write + fdatasync");
    for (engine, rows) in ENGINES.iter().zip(&report.engines) {
        for (scenario, row) in SCENARIOS.iter().zip(rows) {
            row.print(&format!("{engine}: {scenario}"));
        }
    }
    report.embedded[0].print("EmbeddedStore::append, 1 caller");
    report.embedded[1].print("EmbeddedStore::append, 64 concurrent callers, 1 group");
    report.embedded[2].print("EmbeddedStore::append, 64 concurrent callers, 64 groups");
    Ok(())
}
