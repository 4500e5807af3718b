//! The embedded store on real files: the conformance suite, group commit under
//! concurrency, and the behaviour it adds to the trait's contract.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use hush_protocol::frame::{Direction, InboxKind, Policy};
use hush_protocol::{DeviceId, GroupId};
use hush_store_conformance::{self as conformance, Backend, device_record, group_of};
use hush_relay::store::embedded::{EmbeddedOptions, EmbeddedStore, FILE_NAME};
use hush_relay::store::{AppendOutcome, AppendRequest, Store, StoreError};
use tempfile::TempDir;

/// Each store in its own temporary directory, removed when the test ends.
#[derive(Default)]
struct Embedded {
    dirs: Vec<TempDir>,
}

impl Embedded {
    fn fresh_dir(&mut self) -> PathBuf {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("data");
        self.dirs.push(dir);
        path
    }
}

fn open(dir: &std::path::Path) -> EmbeddedStore {
    EmbeddedStore::open(dir, EmbeddedOptions::default()).expect("open store")
}

impl Backend for Embedded {
    type Store = EmbeddedStore;

    async fn open_empty(&mut self) -> EmbeddedStore {
        open(&self.fresh_dir())
    }

    async fn reopen(&mut self, store: EmbeddedStore) -> EmbeddedStore {
        let dir = store.path().parent().expect("file in a directory").to_path_buf();
        drop(store);
        open(&dir)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    conformance::run_all(&mut Embedded::default()).await;
}

/// A send with a 200-byte payload, the relay's typical message size.
fn send(group: &GroupId, sender: DeviceId, client_msg_id: u64) -> AppendRequest {
    conformance::message(group, sender, client_msg_id, &"z".repeat(200))
}

/// Many tasks appending to two groups at once: every group's seqs are unique
/// and gapless, and the log on disk holds exactly what was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_gapless_unique_seqs() {
    const TASKS: u64 = 64;
    const EACH: u64 = 8;
    let mut backend = Embedded::default();
    let store = Arc::new(open(&backend.fresh_dir()));
    let (a, devices) = group_of(store.as_ref(), 4).await;
    let b = GroupId(b"b".to_vec());
    store
        .create_group(b.clone(), devices[0], Policy::default(), "eu".into(), 0)
        .await
        .expect("create b");

    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            let group = if task % 2 == 0 { a.clone() } else { b.clone() };
            let sender = if task % 2 == 0 {
                devices[(task % 4) as usize]
            } else {
                devices[0]
            };
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for n in 0..EACH {
                    match store.append(send(&group, sender, task * 1_000 + n)).await {
                        Ok(AppendOutcome::Appended { entry, .. }) => seqs.push(entry.seq),
                        other => panic!("append failed: {other:?}"),
                    }
                }
                (group, seqs)
            })
        })
        .collect();
    let (mut in_a, mut in_b) = (Vec::new(), Vec::new());
    for task in tasks {
        let (group, seqs) = task.await.expect("task");
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "a task's own sends are ordered");
        if group == a { &mut in_a } else { &mut in_b }.extend(seqs);
    }
    in_a.sort_unstable();
    in_b.sort_unstable();
    let per_group = TASKS / 2 * EACH;
    // Group a's seq 1 is the commit that added its members.
    assert_eq!(in_a, (2..=per_group + 1).collect::<Vec<_>>());
    assert_eq!(in_b, (1..=per_group).collect::<Vec<_>>());

    // Reopen: what was acknowledged is what is on disk.
    let store = Arc::into_inner(store).expect("sole handle");
    let store = backend.reopen(store).await;
    let log = store
        .read_log(&b, 1, Direction::Forward, usize::MAX)
        .await
        .expect("read");
    assert_eq!(log.len() as u64, per_group);
    assert!(log.iter().zip(1..).all(|(e, seq)| e.seq == seq));
}

/// Requests that break a rule, queued alongside valid ones (so they share
/// batches), fail alone and leave no trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_do_not_disturb_their_batch() {
    let mut backend = Embedded::default();
    let store = Arc::new(open(&backend.fresh_dir()));
    let (group, devices) = group_of(store.as_ref(), 1).await;
    let outsider = device_record(9, "outsider");
    store.register_device(outsider.clone()).await.expect("register");

    let tasks: Vec<_> = (0..64u64)
        .map(|n| {
            let (store, group) = (store.clone(), group.clone());
            let sender = if n % 3 == 0 { outsider.device } else { devices[0] };
            tokio::spawn(async move { (sender, store.append(send(&group, sender, n)).await) })
        })
        .collect();
    let mut accepted = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            (sender, Err(StoreError::NotMember)) => assert_eq!(sender, outsider.device),
            (sender, Ok(AppendOutcome::Appended { entry, .. })) => {
                assert_eq!(sender, devices[0]);
                accepted.push(entry.seq);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    accepted.sort_unstable();
    assert_eq!(accepted, (1..=accepted.len() as u64).collect::<Vec<_>>());
    let log = store
        .read_log(&group, 1, Direction::Forward, 1_000)
        .await
        .expect("read");
    assert_eq!(log.len(), accepted.len());
    assert!(log.iter().all(|e| e.sender == devices[0]));
}

#[tokio::test]
async fn the_database_is_a_file_in_the_directory_and_is_locked() {
    let mut backend = Embedded::default();
    let dir = backend.fresh_dir();
    let store = open(&dir);
    assert_eq!(store.path(), dir.join(FILE_NAME));
    assert!(dir.join(FILE_NAME).is_file());
    // A second relay on the same directory would break every rule at once.
    assert!(matches!(
        EmbeddedStore::open(&dir, EmbeddedOptions::default()),
        Err(StoreError::Backend(_))
    ));
    drop(store);
    open(&dir);
}

/// Beyond the trait's contract: a cursor never passes the group's head (else
/// retention could delete entries not yet delivered), and inboxes exist only
/// for registered devices.
#[tokio::test]
async fn cursors_stop_at_the_head_and_inboxes_need_a_device() {
    let mut backend = Embedded::default();
    let store = open(&backend.fresh_dir());
    let (group, devices) = group_of(&store, 2).await;
    store
        .advance_cursors(vec![
            (devices[0], group.clone(), 1_000),
            (devices[1], group.clone(), 1_000),
        ])
        .await
        .expect("advance");
    let member = store
        .membership(devices[1], &group)
        .await
        .expect("read")
        .expect("member");
    assert_eq!(member.cursor, 1);
    store.append(send(&group, devices[0], 1)).await.expect("append");
    let report = store.prune(10, u64::MAX, true).await.expect("prune");
    assert_eq!(
        report.acknowledged, 1,
        "the entry appended after the acknowledgement stays"
    );

    let unknown = DeviceId([0x77; 16]);
    assert!(matches!(
        store
            .inbox_push(unknown, devices[0], InboxKind::Direct, Bytes::new(), 0)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.upload_key_packages(unknown, vec![Bytes::new()], None).await,
        Err(StoreError::NotFound(_))
    ));
}
