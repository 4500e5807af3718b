//! `disk`: bytes written to disk per accepted message, syncs per second and
//! append latency of the relay's embedded store, and its append throughput with
//! 64 concurrent callers.
//!
//! ```text
//! cargo build --release -p hush-bench --bin disk
//! ./target/release/disk                 # every scenario, 10 s each, both store modes
//! ./target/release/disk 20 rate100 max  # 20 s each, only those scenarios
//! ./target/release/disk 10 --modes commit,wal:1,wal:5 rate100
//! ```
//!
//! Scenarios, each on a fresh store in a temporary directory (on the same disk
//! as the relay's data directory would be), calling `EmbeddedStore::append` in
//! this process (only the store writes to disk, so the process's own counters
//! are the relay's):
//! * `rate100`: 100 appends/s of 100-byte messages into one group, open loop
//!   (each append starts at its scheduled time whether or not the previous one
//!   was answered; latency counts from the scheduled time).
//! * `rate1000`: 1,000 appends/s spread over 10 groups, one sender per group
//!   at 100/s each, open loop.
//! * `max`: 64 callers, one group each, each keeping 16 appends in flight
//!   (closed loop): the most the store sustains.
//!
//! Bytes come from `write_bytes` in `/proc/self/io` (what the process caused to
//! be sent to the storage layer) read before the load starts and after the
//! store is closed, so the final checkpoint of the database file is counted.
//! Syncs are the store's own count of the fdatasyncs that acknowledged batches.
//! Each scenario runs once per store mode (`--modes`, default `commit,wal`):
//! `commit` is a durable redb commit per batch (the store before its
//! write-ahead log), `wal` the write-ahead log with a checkpoint at most every
//! 5 s, `wal:S` every S seconds. Output is Markdown, for `BENCHMARKS.md`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hush_protocol::frame::{MessageKind, Policy};
use hush_protocol::{DeviceId, GroupId, UserId};
use hush_relay::store::embedded::{EmbeddedOptions, EmbeddedStore};
use hush_relay::store::{AppendOutcome, AppendRequest, DeviceRecord, Store};

const PAYLOAD_BYTES: usize = 100;

/// `write_bytes` of this process, from `/proc/self/io`.
fn write_bytes() -> anyhow::Result<u64> {
    let io = std::fs::read_to_string("/proc/self/io").context("reading /proc/self/io")?;
    io.lines()
        .find_map(|line| line.strip_prefix("write_bytes:"))
        .context("no write_bytes in /proc/self/io")?
        .trim()
        .parse()
        .context("write_bytes is not a number")
}

/// Incompressible payloads (they stand for ciphertext).
struct XorShift(u64);

impl XorShift {
    fn bytes(&mut self, n: usize) -> Bytes {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            out.extend_from_slice(&self.0.to_le_bytes());
        }
        out.truncate(n);
        Bytes::from(out)
    }
}

/// A fresh store with one device and `groups` groups it created.
async fn setup(
    options: EmbeddedOptions,
    groups: usize,
) -> anyhow::Result<(tempfile::TempDir, EmbeddedStore, DeviceId)> {
    // In the working directory's file system, not a RAM-backed /tmp.
    let dir = tempfile::tempdir_in(".")?;
    let store = EmbeddedStore::open(dir.path(), options)?;
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
        store
            .create_group(group(g), device, Policy::default(), "local".into(), 0)
            .await?;
    }
    Ok((dir, store, device))
}

fn group(n: usize) -> GroupId {
    GroupId(format!("bench-{n}").into_bytes())
}

fn request(group: GroupId, sender: DeviceId, client_msg_id: u64, payload: Bytes) -> AppendRequest {
    AppendRequest {
        group,
        sender,
        client_msg_id,
        kind: MessageKind::Application,
        epoch: 0,
        payload,
        roster: None,
        now_ms: 1,
    }
}

/// The outcome of one scenario run.
struct Run {
    accepted: u64,
    elapsed: Duration,
    bytes: u64,
    syncs: u64,
    checkpoints: u64,
    latencies: Vec<Duration>,
}

impl Run {
    fn percentile(&self, p: f64) -> Duration {
        let at = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(at).copied().unwrap_or_default()
    }

    fn print(&mut self, label: &str) {
        self.latencies.sort_unstable();
        let secs = self.elapsed.as_secs_f64();
        let per_msg = self.bytes as f64 / self.accepted.max(1) as f64;
        println!(
            "| {label} | {} | {:.0} | {:.1} | {:.0} | {:.1} | {:.1} | {} | {:.2} | {:.2} |",
            self.accepted,
            self.accepted as f64 / secs,
            self.bytes as f64 / 1e6,
            per_msg,
            self.syncs as f64 / secs,
            self.accepted as f64 / self.syncs.max(1) as f64,
            self.checkpoints,
            self.percentile(0.5).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
        );
    }
}

/// Closes the store and measures what the run wrote, including the close.
fn finish(store: EmbeddedStore, bytes_before: u64, start: Instant, latencies: Vec<Duration>) -> anyhow::Result<Run> {
    let stats = store.stats();
    drop(store);
    let elapsed = start.elapsed();
    Ok(Run {
        accepted: latencies.len() as u64,
        elapsed,
        bytes: write_bytes()?.saturating_sub(bytes_before),
        syncs: stats.syncs,
        checkpoints: stats.checkpoints,
        latencies,
    })
}

/// `rate` appends/s in all, open loop, for `seconds`, from one sender per group.
async fn open_loop(options: EmbeddedOptions, rate: u32, groups: usize, seconds: u64) -> anyhow::Result<Run> {
    let (_dir, store, device) = setup(options, groups).await?;
    let store = Arc::new(store);
    let per_sender = f64::from(rate) / groups as f64;
    let period = Duration::from_secs_f64(1.0 / per_sender);
    let ticks = (per_sender * seconds as f64) as u64;
    let syncs_before = store.stats().syncs;
    let checkpoints_before = store.stats().checkpoints;
    let bytes_before = write_bytes()?;
    let start = Instant::now();
    let senders: Vec<_> = (0..groups)
        .map(|g| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut rng = XorShift(g as u64 + 1);
                let mut interval = tokio::time::interval(period);
                let mut pending = Vec::with_capacity(ticks as usize);
                for n in 0..ticks {
                    let scheduled = interval.tick().await;
                    let req = request(group(g), device, n, rng.bytes(PAYLOAD_BYTES));
                    let store = store.clone();
                    pending.push(tokio::spawn(async move {
                        let outcome = store.append(req).await;
                        (outcome, scheduled.elapsed())
                    }));
                }
                let mut latencies = Vec::with_capacity(pending.len());
                for task in pending {
                    let (outcome, latency) = task.await?;
                    anyhow::ensure!(matches!(outcome?, AppendOutcome::Appended { .. }), "not appended");
                    latencies.push(latency);
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for sender in senders {
        latencies.extend(sender.await??);
    }
    let store = Arc::into_inner(store).context("store still shared")?;
    let mut run = finish(store, bytes_before, start, latencies)?;
    run.syncs -= syncs_before;
    run.checkpoints -= checkpoints_before;
    Ok(run)
}

/// `callers` tasks, each with `in_flight` appends outstanding in its own group, for `seconds`.
async fn closed_loop(options: EmbeddedOptions, callers: usize, in_flight: usize, seconds: u64) -> anyhow::Result<Run> {
    let (_dir, store, device) = setup(options, callers).await?;
    let store = Arc::new(store);
    let stats_before = store.stats();
    let bytes_before = write_bytes()?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut loops = Vec::with_capacity(callers * in_flight);
    for c in 0..callers {
        for slot in 0..in_flight {
            let store = store.clone();
            loops.push(tokio::spawn(async move {
                let mut rng = XorShift((c * in_flight + slot) as u64 + 1);
                let mut latencies = Vec::new();
                for n in 0u64.. {
                    let t = Instant::now();
                    if t >= deadline {
                        break;
                    }
                    let id = n * in_flight as u64 + slot as u64;
                    let req = request(group(c), device, id, rng.bytes(PAYLOAD_BYTES));
                    anyhow::ensure!(
                        matches!(store.append(req).await?, AppendOutcome::Appended { .. }),
                        "not appended"
                    );
                    latencies.push(t.elapsed());
                }
                anyhow::Ok(latencies)
            }));
        }
    }
    let mut latencies = Vec::new();
    for task in loops {
        latencies.extend(task.await??);
    }
    let store = Arc::into_inner(store).context("store still shared")?;
    let mut run = finish(store, bytes_before, start, latencies)?;
    run.syncs -= stats_before.syncs;
    run.checkpoints -= stats_before.checkpoints;
    Ok(run)
}

/// A store configuration under test.
#[derive(Clone, Copy)]
enum Mode {
    /// A durable redb commit per batch (the store before the write-ahead log).
    Commit,
    /// The write-ahead log, with a checkpoint at most every `.0` seconds.
    Wal(f64),
}

impl Mode {
    fn parse(s: &str) -> anyhow::Result<Mode> {
        match s.split_once(':') {
            None if s == "commit" => Ok(Mode::Commit),
            None if s == "wal" => Ok(Mode::Wal(5.0)),
            Some(("wal", secs)) => Ok(Mode::Wal(secs.parse().context("checkpoint seconds")?)),
            _ => anyhow::bail!("unknown mode {s}: commit, wal or wal:SECONDS"),
        }
    }

    fn label(self) -> String {
        match self {
            Mode::Commit => "durable commit per batch".into(),
            Mode::Wal(secs) => format!("WAL, checkpoint ≤ {secs} s"),
        }
    }

    fn options(self) -> EmbeddedOptions {
        match self {
            // With the batch limit and queue the store had before its log.
            Mode::Commit => EmbeddedOptions::default()
                .write_ahead_log(false)
                .max_batch(256)
                .queue_capacity(4096),
            Mode::Wal(secs) => EmbeddedOptions::default().checkpoint_interval(Duration::from_secs_f64(secs)),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let usage = "usage: disk [SECONDS] [--modes commit,wal,wal:SECS] [rate100|rate1000|max]...";
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: u64 = match args.first().map(|a| a.parse()) {
        Some(Ok(n)) => {
            args.remove(0);
            n
        }
        Some(Err(_)) | None => 10,
    };
    let mut modes = vec![Mode::Commit, Mode::Wal(5.0)];
    if let Some(at) = args.iter().position(|a| a == "--modes") {
        let list = args.get(at + 1).context(usage)?.clone();
        modes = list.split(',').map(Mode::parse).collect::<anyhow::Result<_>>()?;
        args.drain(at..at + 2);
    }
    if args.is_empty() {
        args = vec!["rate100".into(), "rate1000".into(), "max".into()];
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!("{seconds} s per run, {PAYLOAD_BYTES}-byte payloads.\n");
    println!(
        "| scenario | store | accepted | appends/s | MB written | bytes/msg | syncs/s | msgs/sync | checkpoints | p50 ms | p99 ms |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for scenario in &args {
        for &mode in &modes {
            let options = mode.options();
            let mut run = match scenario.as_str() {
                "rate100" => runtime.block_on(open_loop(options, 100, 1, seconds))?,
                "rate1000" => runtime.block_on(open_loop(options, 1_000, 10, seconds))?,
                "max" => runtime.block_on(closed_loop(options, 64, 16, seconds))?,
                other => anyhow::bail!("unknown scenario {other}; {usage}"),
            };
            run.print(&format!("{scenario} | {}", mode.label()));
        }
    }
    Ok(())
}
