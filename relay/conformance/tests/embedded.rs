//! The embedded store on real files: the conformance suite, group commit under
//! concurrency, and the behaviour it adds to the trait's contract.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use hush_protocol::frame::RosterChange;
use hush_protocol::frame::{Direction, InboxKind, Policy};
use hush_protocol::{DeviceId, GroupId};
use hush_protocol::{ErrorCode, ErrorDetail, WireError};
use hush_relay::store::embedded::{EmbeddedOptions, EmbeddedStore, FILE_NAME};
use hush_relay::store::{AppendOutcome, AppendRequest, OpToken, Store, StoreError};
use hush_store_conformance::{self as conformance, Backend, device_record, group_of};
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
            let a_id = a.clone();
            let sender = if task % 2 == 0 {
                devices[(task % 4) as usize]
            } else {
                devices[0]
            };
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for n in 0..EACH {
                    // Group a is at epoch 1 (its members were added by a commit).
                    let req = AppendRequest {
                        epoch: u64::from(group == a_id),
                        ..send(&group, sender, task * 1_000 + n)
                    };
                    match store.append(req).await {
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
        .read_log(&b, 1, Direction::Forward, usize::MAX, usize::MAX)
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
        .read_log(&group, 1, Direction::Forward, 1_000, usize::MAX)
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
        Err(StoreError::Unavailable(_))
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
    let req = AppendRequest {
        epoch: 1,
        ..send(&group, devices[0], 1)
    };
    store.append(req).await.expect("append");
    let report = conformance::prune(&store, 10, u64::MAX, true).await.expect("prune");
    assert_eq!(
        report.acknowledged, 1,
        "the entry appended after the acknowledgement stays"
    );

    let unknown = DeviceId([0x77; 16]);
    assert!(matches!(
        store
            .inbox_push(
                OpToken::random(),
                unknown,
                devices[0],
                InboxKind::Direct,
                Bytes::new(),
                0
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .upload_key_packages(OpToken::random(), unknown, vec![Bytes::new()], None)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

/// Opens the store in `dir` with `opts`.
fn open_with(dir: &std::path::Path, opts: EmbeddedOptions) -> EmbeddedStore {
    EmbeddedStore::open(dir, opts).expect("open store")
}

/// A commit adding three devices with one Welcome stores the Welcome once in
/// the file, counted by the inbox entries that refer to it; acknowledgements
/// count it down and the last one deletes it. The count survives a restart
/// (the write-ahead log replays it).
#[tokio::test]
async fn a_welcome_is_stored_once_for_every_added_device_and_freed_by_the_last_ack() {
    let mut backend = Embedded::default();
    let dir = backend.fresh_dir();
    let store = open(&dir);
    let (group, d) = group_of(&store, 1).await;
    let added: Vec<DeviceId> = (2..=4u8)
        .map(|n| device_record(n, &format!("user-{n}")).device)
        .collect();
    for n in 2..=4u8 {
        store
            .register_device(device_record(n, &format!("user-{n}")))
            .await
            .expect("register");
    }
    let commit = AppendRequest {
        kind: hush_protocol::frame::MessageKind::Commit,
        roster: Some(RosterChange {
            add: added.clone(),
            remove: vec![],
            welcome: Some(Bytes::from(vec![0x57; 4096])),
        }),
        ..conformance::message(&group, d[0], 99, "commit")
    };
    let seq = match store.append(commit).await.expect("commit") {
        AppendOutcome::Appended { entry, .. } => entry.seq,
        other => panic!("expected Appended, got {other:?}"),
    };
    assert_eq!(store.stored_welcomes().await, Ok(vec![(group.clone(), seq, 3)]));

    store.inbox_ack(added[0], 1).await.expect("ack");
    assert_eq!(store.stored_welcomes().await, Ok(vec![(group.clone(), seq, 2)]));
    // A repeated acknowledgement releases nothing more.
    store.inbox_ack(added[0], 1).await.expect("ack");
    assert_eq!(store.stored_welcomes().await, Ok(vec![(group.clone(), seq, 2)]));

    drop(store);
    let store = open(&dir);
    assert_eq!(store.stored_welcomes().await, Ok(vec![(group.clone(), seq, 2)]));
    let inbox = store.inbox_read(added[2], 0, 10).await.expect("inbox");
    assert_eq!(inbox[0].payload.len(), 4096);

    store.inbox_ack(added[1], 1).await.expect("ack");
    store.inbox_ack(added[2], 5).await.expect("ack");
    assert_eq!(
        store.stored_welcomes().await,
        Ok(vec![]),
        "freed by the last acknowledgement"
    );
}

/// Tokens are remembered up to the count bound: past it the oldest are
/// forgotten (a repeat of it is a new push), the newest still answer.
#[tokio::test]
async fn operation_tokens_are_forgotten_oldest_first_past_the_bound() {
    let mut backend = Embedded::default();
    let store = open_with(&backend.fresh_dir(), EmbeddedOptions::default().op_token_max(4));
    let devices = [device_record(1, "a"), device_record(2, "b")];
    for d in &devices {
        store.register_device(d.clone()).await.expect("register");
    }
    let (to, from) = (devices[0].device, devices[1].device);
    let tokens: Vec<OpToken> = (0..6).map(|_| OpToken::random()).collect();
    for (n, token) in (1..).zip(&tokens) {
        let seq = store
            .inbox_push(*token, to, from, InboxKind::Direct, Bytes::from("x"), 0)
            .await;
        assert_eq!(seq, Ok(n));
    }
    assert_eq!(store.remembered_tokens().await, Ok(4));
    let push = |token| store.inbox_push(token, to, from, InboxKind::Direct, Bytes::from("x"), 0);
    assert_eq!(push(tokens[5]).await, Ok(6), "the newest is remembered");
    assert_eq!(push(tokens[2]).await, Ok(3), "the fourth newest too");
    assert_eq!(push(tokens[0]).await, Ok(7), "the oldest was forgotten");
    assert_eq!(store.remembered_tokens().await, Ok(4));
}

/// A token remembered for one kind of operation is refused for another.
#[tokio::test]
async fn a_token_reused_for_another_operation_is_refused() {
    let mut backend = Embedded::default();
    let store = open(&backend.fresh_dir());
    let d = device_record(1, "a");
    store.register_device(d.clone()).await.expect("register");
    let token = OpToken::random();
    store
        .inbox_push(token, d.device, d.device, InboxKind::Direct, Bytes::from("x"), 0)
        .await
        .expect("push");
    assert!(matches!(
        store.claim_key_packages(token, vec![d.device.into()]).await,
        Err(StoreError::Invalid(_))
    ));
}

/// Store failures reach the client as `Unavailable` with a retry hint: short
/// for a transient failure, longer when the backend is down.
#[test]
fn store_failures_map_to_unavailable_with_a_retry_hint() {
    let transient = WireError::from(StoreError::Transient("conflict".into()));
    let down = WireError::from(StoreError::Unavailable("disk".into()));
    assert_eq!(transient.code, ErrorCode::Unavailable);
    assert_eq!(down.code, ErrorCode::Unavailable);
    assert_eq!(
        transient.detail,
        ErrorDetail::RetryAfterMs(hush_relay::store::TRANSIENT_RETRY_MS)
    );
    assert_eq!(
        down.detail,
        ErrorDetail::RetryAfterMs(hush_relay::store::UNAVAILABLE_RETRY_MS)
    );
    const { assert!(hush_relay::store::TRANSIENT_RETRY_MS < hush_relay::store::UNAVAILABLE_RETRY_MS) };
    assert!(
        !down.message.contains("disk"),
        "the backend's words stay in the relay's log"
    );
}

/// `retrying` makes a call again while it fails transiently (up to three
/// tries), never after another error.
#[tokio::test]
async fn transient_failures_are_retried_and_others_are_not() {
    let tries = std::sync::atomic::AtomicU32::new(0);
    let flaky = hush_relay::store::retrying(|| {
        let n = tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            if n < 2 {
                Err(StoreError::Transient("conflict".into()))
            } else {
                Ok(n)
            }
        }
    })
    .await;
    assert_eq!(flaky, Ok(2));
    tries.store(0, std::sync::atomic::Ordering::SeqCst);
    let down: Result<u32, _> = hush_relay::store::retrying(|| {
        tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { Err(StoreError::Unavailable("down".into())) }
    })
    .await;
    assert!(matches!(down, Err(StoreError::Unavailable(_))));
    assert_eq!(tries.load(std::sync::atomic::Ordering::SeqCst), 1);
    tries.store(0, std::sync::atomic::Ordering::SeqCst);
    let always: Result<u32, _> = hush_relay::store::retrying(|| {
        tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { Err(StoreError::Transient("conflict".into())) }
    })
    .await;
    assert!(always.is_err());
    assert_eq!(tries.load(std::sync::atomic::Ordering::SeqCst), 3);
}

/// A retention pass over more groups than fit in one page and more entries
/// than fit in one step deletes everything it should, in many transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_pass_pages_groups_and_steps_within_a_group() {
    use hush_relay::store::{PRUNE_PAGE_GROUPS, PRUNE_STEP_ENTRIES};
    let mut backend = Embedded::default();
    let store = Arc::new(open(&backend.fresh_dir()));
    let (big, d) = group_of(store.as_ref(), 1).await;
    let entries = PRUNE_STEP_ENTRIES as u64 * 2 + 10;
    let mut pending = Vec::new();
    for n in 1..=entries {
        pending.push(store.submit_append(send(&big, d[0], n)).await.expect("queue"));
    }
    for p in pending {
        p.await.expect("append");
    }
    for n in 0..PRUNE_PAGE_GROUPS + 3 {
        let g = GroupId(format!("small-{n}").into_bytes());
        store
            .create_group(g.clone(), d[0], Policy::default(), "eu".into(), 0)
            .await
            .expect("create");
        store.append(send(&g, d[0], 1)).await.expect("append");
    }
    let mut moved = Vec::new();
    let rule = hush_relay::store::RetentionRule {
        now_ms: u64::MAX,
        max_age_ms: 1,
        delete_acknowledged: false,
    };
    let report = hush_relay::store::prune_all(store.as_ref(), rule, |g, first| moved.push((g.clone(), first)))
        .await
        .expect("pass");
    let small = (PRUNE_PAGE_GROUPS + 3) as u64;
    assert_eq!(report.expired, entries + small);
    assert_eq!(report.groups_moved, small + 1);
    // Two pages of groups, three steps for the big group, one per small one.
    assert!(report.steps >= 2 + 3 + small, "{report:?}");
    let big_moves: Vec<u64> = moved.iter().filter(|(g, _)| *g == big).map(|(_, f)| *f).collect();
    assert_eq!(big_moves.len(), 3, "one call per step of the big group");
    assert_eq!(big_moves.last(), Some(&(entries + 1)));
    let record = store.group(&big).await.expect("group").expect("exists");
    assert_eq!(record.first_seq, record.head_seq + 1);
}

/// Tokens are forgotten once older than the time bound: with a bound of
/// zero, a token is gone as soon as a later tokened write comes a
/// millisecond after it, and its repeat is then a new push.
#[tokio::test]
async fn operation_tokens_are_forgotten_past_the_time_bound() {
    let mut backend = Embedded::default();
    let opts = EmbeddedOptions::default().op_token_ttl(std::time::Duration::ZERO);
    let store = open_with(&backend.fresh_dir(), opts);
    let d = device_record(1, "a");
    store.register_device(d.clone()).await.expect("register");
    let push = |token| store.inbox_push(token, d.device, d.device, InboxKind::Direct, Bytes::from("x"), 0);
    let first = OpToken::random();
    assert_eq!(push(first).await, Ok(1));
    // Each push takes a sync; the clock moves on within a few of them.
    let mut seq = 1;
    while store.remembered_tokens().await != Ok(1) || seq == 1 {
        seq += 1;
        assert_eq!(push(OpToken::random()).await, Ok(seq));
        assert!(seq < 5_000, "tokens never expired");
    }
    assert_eq!(
        push(first).await,
        Ok(seq + 1),
        "the expired token's repeat is a new push"
    );
}
