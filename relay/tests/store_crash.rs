//! The embedded store's write-ahead log against real crashes: a child process
//! (this test binary, re-run as `child_appender`) appends to a store and prints
//! every acknowledgement, and is killed with SIGKILL mid-stream; the parent
//! then reopens the directory and checks that every acknowledged append is
//! there, once, in a gapless log. Also: a torn or corrupt tail of the log, the
//! log starting over after checkpoints, and reopening more than once.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hush_protocol::frame::{Direction, MessageKind, Policy};
use hush_protocol::{ClientMsgId, DeviceId, GroupId, UserId};
use hush_relay::store::embedded::{EmbeddedOptions, EmbeddedStore, FILE_NAME, WAL_FILE_NAME};
use hush_relay::store::{AppendOutcome, AppendRequest, DeviceRecord, Store, StoreError};

const CHILD_DIR: &str = "HUSH_STORE_CHILD_DIR";
const CHILD_ROUND: &str = "HUSH_STORE_CHILD_ROUND";
const CHILD_CHECKPOINTS: &str = "HUSH_STORE_CHILD_CHECKPOINTS";
/// Concurrent appenders in the child.
const TASKS: u64 = 8;

/// A device record whose key is `[n; 32]` (as in the conformance suite).
fn device_record(n: u8, user: &str) -> DeviceRecord {
    let key = [n; 32];
    DeviceRecord {
        device: DeviceId::from_public_key(&key),
        user: UserId::from(user),
        key,
        registered_ms: 1_000 + u64::from(n),
    }
}

/// An application message at epoch 0.
fn message(group: &GroupId, sender: DeviceId, client_msg_id: ClientMsgId, payload: &str) -> AppendRequest {
    AppendRequest {
        group: group.clone(),
        sender,
        client_msg_id,
        kind: MessageKind::Application,
        epoch: 0,
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        roster: None,
        now_ms: 1_000,
    }
}

fn group() -> GroupId {
    GroupId(b"crash".to_vec())
}

fn sender() -> DeviceId {
    device_record(1, "crash").device
}

/// Options of the child: with `frequent` checkpoints, kills land before,
/// during and after checkpoints and log resets; without, everything since the
/// open is in the log.
fn child_options(frequent: bool) -> EmbeddedOptions {
    let options = EmbeddedOptions::default();
    if frequent {
        options
            .checkpoint_interval(Duration::from_millis(15))
            .checkpoint_bytes(16 << 10)
    } else {
        options.checkpoint_interval(Duration::from_secs(3_600))
    }
}

/// The child: appends from [`TASKS`] tasks forever, printing `ack SEQ ID` for
/// each acknowledged append. Does nothing unless started by a parent below.
#[test]
#[ignore = "started by the crash tests as a child process"]
fn child_appender() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let round: u64 = std::env::var(CHILD_ROUND).unwrap().parse().unwrap();
    let frequent = std::env::var(CHILD_CHECKPOINTS).unwrap() == "frequent";
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = Arc::new(EmbeddedStore::open(Path::new(&dir), child_options(frequent)).unwrap());
        store.register_device(device_record(1, "crash")).await.unwrap();
        match store
            .create_group(group(), sender(), Policy::default(), "eu".into(), 0)
            .await
        {
            Ok(_) | Err(StoreError::AlreadyExists) => {}
            Err(e) => panic!("create group: {e}"),
        }
        println!("ready");
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let store = store.clone();
                tokio::spawn(async move {
                    for n in 0u64.. {
                        let id = round << 40 | task << 32 | n;
                        let payload = format!("{round}-{task}-{n}");
                        match store.append(message(&group(), sender(), id, &payload)).await {
                            Ok(AppendOutcome::Appended { entry, .. }) => println!("ack {} {id}", entry.seq),
                            other => panic!("append: {other:?}"),
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}

/// A running child and the acknowledgements it printed.
struct ChildRun {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

fn start_child(dir: &Path, round: u64, frequent: bool) -> ChildRun {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_appender",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_ROUND, round.to_string())
        .env(CHILD_CHECKPOINTS, if frequent { "frequent" } else { "rare" })
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    ChildRun { child, lines }
}

/// Lets the child acknowledge at least `count` appends, kills it with SIGKILL
/// and returns every `(seq, id)` it acknowledged.
fn kill_after(mut run: ChildRun, count: usize) -> Vec<(u64, u64)> {
    let mut acked = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.len() < count {
        let wait = deadline.saturating_duration_since(std::time::Instant::now());
        let line = run.lines.recv_timeout(wait).expect("child stopped acknowledging");
        if let Some(ack) = parse_ack(&line) {
            acked.push(ack);
        }
    }
    run.child.kill().unwrap(); // SIGKILL
    run.child.wait().unwrap();
    // What it printed before it died is still in the pipe.
    while let Ok(line) = run.lines.recv_timeout(Duration::from_secs(5)) {
        if let Some(ack) = parse_ack(&line) {
            acked.push(ack);
        }
    }
    acked
}

fn parse_ack(line: &str) -> Option<(u64, u64)> {
    let mut parts = line.strip_prefix("ack ")?.split(' ');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Opens the directory and returns the group's whole log as `seq → id`,
/// checking that it is gapless from 1.
async fn log_of(dir: &Path) -> BTreeMap<u64, u64> {
    let store = EmbeddedStore::open(dir, EmbeddedOptions::default()).unwrap();
    let log = store
        .read_log(&group(), 1, Direction::Forward, usize::MAX, usize::MAX)
        .await
        .unwrap();
    assert!(log.iter().zip(1..).all(|(e, seq)| e.seq == seq), "the log has a gap");
    let head = store.group(&group()).await.unwrap().unwrap().head_seq;
    assert_eq!(head, log.len() as u64, "the group's head is the last entry");
    log.into_iter().map(|e| (e.seq, e.client_msg_id)).collect()
}

fn assert_all_present(log: &BTreeMap<u64, u64>, acked: &[(u64, u64)]) {
    for (seq, id) in acked {
        assert_eq!(log.get(seq), Some(id), "acknowledged seq {seq} missing or different");
    }
    let mut ids: Vec<u64> = log.values().copied().collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), log.len(), "an append is stored twice");
}

fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    (tmp, dir)
}

/// Three rounds of SIGKILL mid-stream on the same directory, with checkpoints
/// and log resets every few milliseconds: after each, every acknowledged append
/// is present exactly once and the log is gapless; the next round reopens
/// (replays) and carries on from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_nothing_acknowledged() {
    let (_tmp, dir) = data_dir();
    let mut acked = Vec::new();
    for round in 0..3 {
        let run = start_child(&dir, round, true);
        acked.extend(kill_after(run, 1_500));
        let log = log_of(&dir).await;
        assert_all_present(&log, &acked);
        eprintln!(
            "round {round}: {} acknowledged so far, {} in the log",
            acked.len(),
            log.len()
        );
    }
    // Opening twice more changes nothing.
    let first = log_of(&dir).await;
    assert_eq!(log_of(&dir).await, first);
}

/// Everything since the open is only in the log (no checkpoint before the
/// kill): reopening replays it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_without_checkpoints_is_replayed() {
    let (_tmp, dir) = data_dir();
    let acked = kill_after(start_child(&dir, 0, false), 800);
    assert_all_present(&log_of(&dir).await, &acked);
}

/// Record boundaries of the log's first generation: `(offset, length)` of each
/// record, following the documented frame (`len u32 ‖ lsn u64 ‖ sum u64 ‖ body`)
/// until the zeros of the preallocation.
fn record_spans(wal: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut at = 0;
    while let Some(len) = wal.get(at..at + 4) {
        let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        spans.push((at, 20 + len));
        at += 20 + len;
    }
    spans
}

/// Makes a directory whose log holds every append since the open (none of it
/// checkpointed) and returns the acknowledgements and the log's bytes.
async fn crashed_with_log() -> (tempfile::TempDir, PathBuf, Vec<(u64, u64)>, Vec<u8>) {
    let (tmp, dir) = data_dir();
    let acked = kill_after(start_child(&dir, 0, false), 400);
    let wal = std::fs::read(dir.join(WAL_FILE_NAME)).unwrap();
    (tmp, dir, acked, wal)
}

/// Garbage after the last whole record (a torn write of a record that was
/// never acknowledged) is ignored: everything acknowledged is there, and the
/// store carries on with the next seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_ignored() {
    let (_tmp, dir, acked, mut wal) = crashed_with_log().await;
    let spans = record_spans(&wal);
    assert!(spans.len() > 2, "the log holds {} records", spans.len());
    let (last_at, last_len) = *spans.last().unwrap();
    let end = last_at + last_len;
    // The last record again as the next one (lsn + 1), cut short: its header
    // is whole, its body half there.
    let mut torn: Vec<u8> = wal[last_at..last_at + last_len / 2].to_vec();
    let lsn = u64::from_le_bytes(torn[4..12].try_into().unwrap());
    torn[4..12].copy_from_slice(&(lsn + 1).to_le_bytes());
    wal[end..end + torn.len()].copy_from_slice(&torn);
    std::fs::write(dir.join(WAL_FILE_NAME), &wal).unwrap();

    let log = log_of(&dir).await;
    assert_all_present(&log, &acked);
    let store = EmbeddedStore::open(&dir, EmbeddedOptions::default()).unwrap();
    let next = store
        .append(message(&group(), sender(), u64::MAX, "after"))
        .await
        .unwrap();
    let AppendOutcome::Appended { entry, .. } = next else {
        panic!("{next:?}")
    };
    assert_eq!(entry.seq, log.len() as u64 + 1);
}

/// A corrupt last record (one byte flipped, or cut in the middle) ends the log
/// before it: the store opens with the log's earlier records, gapless, and
/// nothing after the damage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_last_record_ends_the_log_there() {
    let (_tmp, dir, acked, wal) = crashed_with_log().await;
    let spans = record_spans(&wal);
    let (last_at, last_len) = *spans.last().unwrap();
    let by_seq: HashMap<u64, u64> = acked.iter().copied().collect();
    let mut previous: Option<BTreeMap<u64, u64>> = None;
    let mut whole = None;
    for damage in ["none", "flip", "cut"] {
        let mut bad = wal.clone();
        match damage {
            "none" => {}
            "flip" => bad[last_at + last_len - 1] ^= 0x01,
            _ => bad[last_at + last_len / 2..last_at + last_len].fill(0),
        }
        // A copy of the crashed directory with the damaged log, for each kind of damage.
        let log = {
            let (_copy_tmp, copy) = data_dir();
            std::fs::create_dir_all(&copy).unwrap();
            std::fs::copy(dir.join(FILE_NAME), copy.join(FILE_NAME)).unwrap();
            std::fs::write(copy.join(WAL_FILE_NAME), &bad).unwrap();
            log_of(&copy).await
        };
        let Some(whole) = &whole else {
            // Undamaged: everything acknowledged (and perhaps a last batch
            // whose acknowledgements the kill cut off).
            assert_all_present(&log, &acked);
            whole = Some(log);
            continue;
        };
        assert!(log.len() < whole.len(), "the damaged record's appends are gone");
        assert!(
            log.iter().all(|(seq, id)| whole.get(seq) == Some(id)),
            "what is left is a prefix of the undamaged log"
        );
        for (seq, id) in &log {
            assert_eq!(by_seq.get(seq), Some(id), "seq {seq} is not what was acknowledged");
        }
        if let Some(previous) = &previous {
            assert_eq!(&log, previous, "either damage ends the log at the same record");
        }
        previous = Some(log);
    }
}

/// With a small `checkpoint_bytes`, the log is checkpointed and starts over
/// many times; the file stays small and every append survives reopening twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_reset_the_log_and_reopening_twice_keeps_everything() {
    let (_tmp, dir) = data_dir();
    let options = || EmbeddedOptions::default().checkpoint_bytes(8 << 10);
    let store = Arc::new(EmbeddedStore::open(&dir, options()).unwrap());
    store.register_device(device_record(1, "crash")).await.unwrap();
    store
        .create_group(group(), sender(), Policy::default(), "eu".into(), 0)
        .await
        .unwrap();
    let before = store.stats().checkpoints;
    let tasks: Vec<_> = (0..8u64)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..250u64 {
                    let id = task << 32 | n;
                    store
                        .append(message(&group(), sender(), id, &"x".repeat(200)))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let stats = store.stats();
    // 2,000 records of at least 200 bytes are 400 KB: some 50 checkpoints.
    assert!(stats.checkpoints - before >= 10, "{stats:?}");
    let wal_len = std::fs::metadata(dir.join(WAL_FILE_NAME)).unwrap().len();
    assert!(wal_len <= 2 << 20, "the log grew to {wal_len} bytes");
    drop(store);
    for _ in 0..2 {
        let log = log_of(&dir).await;
        assert_eq!(log.len(), 2_000);
    }
}

/// An idle store checkpoints once `checkpoint_interval` has passed, without a
/// write to wake it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_store_checkpoints_on_time() {
    let (_tmp, dir) = data_dir();
    let options = EmbeddedOptions::default().checkpoint_interval(Duration::from_millis(50));
    let store = EmbeddedStore::open(&dir, options).unwrap();
    store.register_device(device_record(1, "crash")).await.unwrap();
    let before = store.stats();
    assert_eq!(before.syncs, 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.stats().checkpoints == before.checkpoints {
        assert!(tokio::time::Instant::now() < deadline, "no checkpoint after 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A log left by a crash is replayed whatever the mode of the next open, and
/// the durable-commit mode keeps working on the same directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_is_replayed_when_reopened_without_one() {
    let (_tmp, dir) = data_dir();
    let acked = kill_after(start_child(&dir, 0, false), 300);
    let committed = EmbeddedOptions::default().write_ahead_log(false);
    let store = EmbeddedStore::open(&dir, committed).unwrap();
    let log = store
        .read_log(&group(), 1, Direction::Forward, usize::MAX, usize::MAX)
        .await
        .unwrap();
    let log: BTreeMap<u64, u64> = log.into_iter().map(|e| (e.seq, e.client_msg_id)).collect();
    assert_all_present(&log, &acked);
    store.append(message(&group(), sender(), u64::MAX, "x")).await.unwrap();
    drop(store);
    assert_eq!(log_of(&dir).await.len(), log.len() + 1);
}

/// A record damaged in the middle of the log (records after it are whole) is
/// not taken for a torn tail: the store refuses to open, saying so, instead
/// of dropping the acknowledged appends of every later record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_in_the_middle_of_the_log_refuses_to_open() {
    let (_tmp, dir, _acked, wal) = crashed_with_log().await;
    let spans = record_spans(&wal);
    assert!(spans.len() >= 3, "need records after the damaged one: {}", spans.len());
    let (at, len) = spans[spans.len() / 2];
    let mut bad = wal.clone();
    bad[at + len - 1] ^= 0x01;
    std::fs::write(dir.join(WAL_FILE_NAME), &bad).unwrap();
    match EmbeddedStore::open(&dir, EmbeddedOptions::default()) {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("damaged"), "{m}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a log damaged in the middle"),
    }
    // The log is left as it was, for an operator to look at.
    assert_eq!(std::fs::read(dir.join(WAL_FILE_NAME)).unwrap(), bad);
}
