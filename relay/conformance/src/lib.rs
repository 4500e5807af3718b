//! The conformance suite every [`Store`] backend must pass.
//!
//! A crate of its own, used only by tests (`publish = false`, nothing in the
//! relay depends on it), so that the relay's build holds no test code while
//! every backend's tests (the embedded one in `tests/embedded.rs`, a
//! FoundationDB one later) run the very same cases. A backend provides a
//! [`Backend`]: how to open an empty store and how to close a store and open
//! its data again. Then:
//!
//! ```no_run
//! # async fn demo<B: hush_store_conformance::Backend>(mut backend: B) {
//! hush_store_conformance::run_all(&mut backend).await;
//! # }
//! ```
//!
//! Each case is also a public function taking a fresh store, so a failing case
//! can be run alone. Cases panic (with `assert!`) on the first broken rule.
//! They only use behaviour the [`Store`] trait documents, so any backend that
//! implements the documented contract passes.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use hush_protocol::frame::{Direction, InboxKind, LogEntry, MessageKind, Policy, Posters, RosterChange};
use hush_protocol::{ClientMsgId, DeviceId, GroupId, UserId};

use hush_relay::store::{
    AppendOutcome, AppendRequest, DeviceRecord, KeyPackageClaim, Membership, OpToken, PruneReport, PruneStep,
    RegisterOutcome, RetentionRule, Store, StoreError, StoreResult, prune_all,
};

/// How the suite gets stores of one backend.
pub trait Backend {
    /// The backend's store.
    type Store: Store;
    /// Opens a store that holds no data.
    fn open_empty(&mut self) -> impl Future<Output = Self::Store>;
    /// Closes `store` (drops every handle it holds) and opens the same data again,
    /// as a relay restart would.
    fn reopen(&mut self, store: Self::Store) -> impl Future<Output = Self::Store>;
}

/// Runs every case, each on a fresh store, then the restart case.
///
/// Prints each case's name to stderr before running it, so a failure names it.
pub async fn run_all<B: Backend>(backend: &mut B) {
    macro_rules! cases {
        ($($case:ident),* $(,)?) => {$(
            eprintln!("conformance: {}", stringify!($case));
            $case(&Arc::new(backend.open_empty().await)).await;
        )*};
    }
    cases!(
        registration,
        create_group,
        append_assigns_gapless_seqs,
        timestamps_never_go_back,
        idempotent_retry,
        idempotency_conflict,
        membership_rules,
        announce_only_policy,
        admins_change_roster,
        roster_exceptions,
        void_commit,
        set_policy_rules,
        commit_moves_epoch,
        concurrent_commits_one_wins,
        concurrent_appends_are_gapless,
        roster_add,
        roster_change_validation,
        roster_remove,
        read_log_paging,
        advance_cursors,
        key_packages,
        inbox,
        prune_acknowledged,
        prune_by_age,
        prune_in_bounded_steps,
        list_groups_in_pages,
        memberships_and_devices_in_pages,
        read_log_byte_budget,
        inbox_byte_budget,
        welcome_shared_by_added_devices,
        inbox_push_token,
        upload_key_packages_token,
        claim_key_packages_token,
        out_of_bounds_input,
    );
    eprintln!("conformance: survives_restart");
    survives_restart(backend).await;
    eprintln!("conformance: revocation");
    revocation(backend).await;
}

/// A revoked device: its revocation is kept (the first one; revoking again
/// changes nothing) across a restart, its key packages are gone, no commit
/// can add it; an unknown device cannot be revoked.
pub async fn revocation<B: Backend>(backend: &mut B) {
    let store = Arc::new(backend.open_empty().await);
    let (group, d) = group_of(store.as_ref(), 1).await;
    let lost = register(store.as_ref(), 3).await[2];
    store
        .upload_key_packages(
            OpToken::random(),
            lost,
            vec![Bytes::from_static(b"kp")],
            Some(Bytes::from_static(b"last")),
        )
        .await
        .expect("upload");
    let first = revocation_of(lost, d[0], 7_000);
    assert_eq!(store.revocation(lost).await, Ok(None));
    store.revoke_device(first.clone()).await.expect("revoke");
    store
        .revoke_device(revocation_of(lost, d[0], 9_000))
        .await
        .expect("again");
    assert_eq!(store.revocation(lost).await, Ok(Some(first.clone())));
    assert_eq!(
        store.claim_key_packages(OpToken::random(), claims(&[lost])).await,
        Ok(vec![])
    );
    assert!(matches!(
        store
            .append(commit(&group, d[0], 1, 0, adding(&[lost], Some("w"))))
            .await,
        Err(StoreError::Forbidden(_))
    ));
    assert!(matches!(
        store.revoke_device(revocation_of(DeviceId([0xee; 16]), d[0], 1)).await,
        Err(StoreError::NotFound(_))
    ));
    let store = Arc::into_inner(store).expect("no other handle");
    let store = backend.reopen(store).await;
    assert_eq!(store.revocation(lost).await, Ok(Some(first)));
}

fn revocation_of(device: DeviceId, by: DeviceId, revoked_ms: u64) -> hush_relay::store::Revocation {
    hush_relay::store::Revocation {
        device,
        by,
        revoked_ms,
        signature: vec![7; 64],
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A device record whose key is `[n; 32]` and whose user is `user`.
pub fn device_record(n: u8, user: &str) -> DeviceRecord {
    let key = [n; 32];
    DeviceRecord {
        device: DeviceId::from_public_key(&key),
        user: UserId::from(user),
        key,
        registered_ms: 1_000 + u64::from(n),
    }
}

/// Registers `count` devices (keys `[1; 32]`, `[2; 32]`, ...), each its own user.
async fn register<S: Store>(store: &S, count: u8) -> Vec<DeviceId> {
    let mut out = Vec::new();
    for n in 1..=count {
        let record = device_record(n, &format!("user-{n}"));
        out.push(record.device);
        store.register_device(record).await.expect("register device");
    }
    out
}

/// One whole retention pass ([`prune_all`]) with this rule.
pub async fn prune<S: Store + ?Sized>(
    store: &S,
    now_ms: u64,
    max_age_ms: u64,
    delete_acknowledged: bool,
) -> StoreResult<PruneReport> {
    let rule = RetentionRule {
        now_ms,
        max_age_ms,
        delete_acknowledged,
    };
    prune_all(store, rule, |_, _| {}).await
}

fn group_id(name: &str) -> GroupId {
    GroupId(name.as_bytes().to_vec())
}

/// Registers `count` devices (see [`device_record`]; device `n` belongs to user
/// `user-n`), creates group `g` with the first, and adds the others with one
/// commit (seq 1, moving the group to epoch 1). Returns the group and devices.
pub async fn group_of<S: Store>(store: &S, count: u8) -> (GroupId, Vec<DeviceId>) {
    let devices = register(store, count).await;
    let group = group_id("g");
    store
        .create_group(group.clone(), devices[0], Policy::default(), "eu".into(), 1_000)
        .await
        .expect("create group");
    if count > 1 {
        let change = RosterChange {
            add: devices[1..].to_vec(),
            remove: vec![],
            welcome: None,
        };
        appended(store.append(commit(&group, devices[0], 0, 0, Some(change))).await);
    }
    (group, devices)
}

/// An application message at epoch 1, the epoch of a [`group_of`] group of
/// more than one device (its members were added by a commit).
pub fn message_e1(group: &GroupId, sender: DeviceId, client_msg_id: ClientMsgId, payload: &str) -> AppendRequest {
    AppendRequest {
        epoch: 1,
        ..message(group, sender, client_msg_id, payload)
    }
}

/// An application message at epoch 0, accepted at time 1000.
pub fn message(group: &GroupId, sender: DeviceId, client_msg_id: ClientMsgId, payload: &str) -> AppendRequest {
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

/// A commit for `epoch` with client message id `1_000_000 + n`.
fn commit(group: &GroupId, sender: DeviceId, n: u64, epoch: u64, roster: Option<RosterChange>) -> AppendRequest {
    AppendRequest {
        kind: MessageKind::Commit,
        epoch,
        roster,
        ..message(group, sender, 1_000_000 + n, &format!("commit {n}"))
    }
}

fn adding(devices: &[DeviceId], welcome: Option<&str>) -> Option<RosterChange> {
    Some(RosterChange {
        add: devices.to_vec(),
        remove: vec![],
        welcome: welcome.map(|w| Bytes::copy_from_slice(w.as_bytes())),
    })
}

fn removing(devices: &[DeviceId]) -> Option<RosterChange> {
    Some(RosterChange {
        add: vec![],
        remove: devices.to_vec(),
        welcome: None,
    })
}

/// The parts of an `Appended` outcome; panics on anything else.
#[track_caller]
fn appended(result: Result<AppendOutcome, StoreError>) -> (LogEntry, u64, Vec<(DeviceId, u64)>, Vec<DeviceId>) {
    match result {
        Ok(AppendOutcome::Appended {
            entry,
            epoch,
            added,
            removed,
        }) => (entry, epoch, added, removed),
        other => panic!("expected Appended, got {other:?}"),
    }
}

async fn seqs<S: Store>(store: &S, group: &GroupId, from: u64, direction: Direction, limit: usize) -> Vec<u64> {
    let entries = store
        .read_log(group, from, direction, limit, usize::MAX)
        .await
        .expect("read log");
    entries.iter().map(|e| e.seq).collect()
}

async fn membership_of<S: Store>(store: &S, device: DeviceId, group: &GroupId) -> Membership {
    store
        .membership(device, group)
        .await
        .expect("membership")
        .expect("membership exists")
}

// ---------------------------------------------------------------------------
// Devices and groups
// ---------------------------------------------------------------------------

/// New devices register; registering again returns the stored record unchanged;
/// a user's devices come sorted by id; last-seen starts at 0.
pub async fn registration<S: Store>(store: &Arc<S>) {
    let first = device_record(1, "alice");
    let second = device_record(2, "alice");
    let other = device_record(3, "bob");
    for record in [&first, &second, &other] {
        assert_eq!(
            store.register_device(record.clone()).await,
            Ok(RegisterOutcome::Registered)
        );
    }
    let retry = DeviceRecord {
        user: UserId::from("mallory"),
        registered_ms: 9_999,
        ..first.clone()
    };
    assert_eq!(
        store.register_device(retry).await,
        Ok(RegisterOutcome::Existing(first.clone())),
        "an existing device is returned unchanged"
    );
    assert_eq!(store.device(first.device).await, Ok(Some(first.clone())));
    assert_eq!(store.device(DeviceId([0xee; 16])).await, Ok(None));

    let mut alice = vec![first.clone(), second.clone()];
    alice.sort_by_key(|r| r.device);
    assert_eq!(store.user_devices(&UserId::from("alice")).await, Ok(alice));
    assert_eq!(store.user_devices(&UserId::from("bob")).await, Ok(vec![other]));
    assert_eq!(store.user_devices(&UserId::from("carol")).await, Ok(vec![]));

    assert_eq!(store.last_seen(first.device).await, Ok(0));
    store.set_last_seen(first.device, 5_000).await.expect("set last seen");
    assert_eq!(store.last_seen(first.device).await, Ok(5_000));
}

/// A group starts at epoch 0 with its creator alone (joined at 0) and an empty
/// log; its id cannot be taken twice.
pub async fn create_group<S: Store>(store: &Arc<S>) {
    let devices = register(store.as_ref(), 2).await;
    let group = group_id("g");
    let policy = Policy {
        posters: Posters::Everyone,
        admins: vec![devices[0]],
        admins_change_roster: true,
    };
    let record = store
        .create_group(group.clone(), devices[0], policy.clone(), "eu-west".into(), 7_000)
        .await
        .expect("create group");
    assert_eq!(record.group, group);
    assert_eq!(record.epoch, 0);
    assert_eq!(record.roster, vec![devices[0]]);
    assert_eq!(record.policy, policy);
    assert_eq!((record.head_seq, record.first_seq), (0, 1));
    assert_eq!(record.home_region, "eu-west");
    assert_eq!(record.created_ms, 7_000);
    assert_eq!(store.group(&group).await, Ok(Some(record)));
    assert_eq!(store.group(&group_id("nope")).await, Ok(None));

    let again = store
        .create_group(group.clone(), devices[1], Policy::default(), "us".into(), 8_000)
        .await;
    assert_eq!(again, Err(StoreError::AlreadyExists));

    let creator = Membership {
        group: group.clone(),
        joined_seq: 0,
        cursor: 0,
        removed_seq: None,
    };
    assert_eq!(store.membership(devices[0], &group).await, Ok(Some(creator.clone())));
    assert_eq!(store.memberships(devices[0]).await, Ok(vec![creator]));
    assert_eq!(store.membership(devices[1], &group).await, Ok(None));
    assert_eq!(store.memberships(devices[1]).await, Ok(vec![]));
}

// ---------------------------------------------------------------------------
// The log
// ---------------------------------------------------------------------------

/// Seqs start at 1 and have no gaps; the stored entry is what was sent.
pub async fn append_assigns_gapless_seqs<S: Store>(store: &Arc<S>) {
    let (group, devices) = group_of(store.as_ref(), 1).await;
    for n in 1..=5u64 {
        let (entry, epoch, added, removed) = appended(
            store
                .append(message(&group, devices[0], n * 10, &format!("m{n}")))
                .await,
        );
        assert_eq!(entry.seq, n);
        assert_eq!(entry.group, group);
        assert_eq!(entry.sender, devices[0]);
        assert_eq!(entry.client_msg_id, n * 10);
        assert_eq!(entry.kind, MessageKind::Application);
        assert_eq!(entry.epoch, 0);
        assert_eq!(entry.payload, Bytes::from(format!("m{n}")));
        assert_eq!((epoch, added, removed), (0, vec![], vec![]));
    }
    let record = store.group(&group).await.expect("group").expect("exists");
    assert_eq!((record.head_seq, record.first_seq), (5, 1));
    let log = store
        .read_log(&group, 1, Direction::Forward, 100, usize::MAX)
        .await
        .expect("read");
    assert_eq!(log.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    assert_eq!(log[2].payload, Bytes::from("m3"));
}

/// The stored timestamp is `max(now, previous entry's timestamp)`.
pub async fn timestamps_never_go_back<S: Store>(store: &Arc<S>) {
    let (group, devices) = group_of(store.as_ref(), 1).await;
    let at = |n: u64, now_ms: u64| AppendRequest {
        now_ms,
        ..message(&group, devices[0], n, "m")
    };
    let times = [5_000, 4_000, 6_000];
    let mut stored = Vec::new();
    for (n, now) in (1..).zip(times) {
        stored.push(appended(store.append(at(n, now)).await).0.timestamp_ms);
    }
    assert_eq!(stored, vec![5_000, 5_000, 6_000]);
    let log = store
        .read_log(&group, 1, Direction::Forward, 10, usize::MAX)
        .await
        .expect("read");
    assert_eq!(log.iter().map(|e| e.timestamp_ms).collect::<Vec<_>>(), stored);
}

/// A retried send returns the original seq and the current epoch, and stores
/// nothing; the key includes the sender.
pub async fn idempotent_retry<S: Store>(store: &Arc<S>) {
    let (group, devices) = group_of(store.as_ref(), 2).await;
    let (first, ..) = appended(store.append(message_e1(&group, devices[0], 7, "hello")).await);
    assert_eq!(first.seq, 2);
    for _ in 0..3 {
        let retry = store.append(message_e1(&group, devices[0], 7, "hello")).await;
        assert_eq!(retry, Ok(AppendOutcome::Duplicate { seq: 2, epoch: 1 }));
    }
    // A retried commit is answered the same way, not as a stale commit.
    let retry_commit = store.append(commit(&group, devices[0], 0, 0, None)).await;
    assert_eq!(retry_commit, Ok(AppendOutcome::Duplicate { seq: 1, epoch: 1 }));
    assert_eq!(
        seqs(store.as_ref(), &group, 1, Direction::Forward, 100).await,
        vec![1, 2]
    );

    // The same client message id from another device is another message.
    let (other, ..) = appended(store.append(message_e1(&group, devices[1], 7, "hello")).await);
    assert_eq!(other.seq, 3);
}

/// Reusing a client message id for different content is refused with the
/// original's seq.
pub async fn idempotency_conflict<S: Store>(store: &Arc<S>) {
    let (group, devices) = group_of(store.as_ref(), 1).await;
    appended(store.append(message(&group, devices[0], 1, "first")).await);
    let conflict = store.append(message(&group, devices[0], 1, "second")).await;
    assert_eq!(conflict, Err(StoreError::IdempotencyConflict { seq: 1 }));
    let record = store.group(&group).await.expect("group").expect("exists");
    assert_eq!(record.head_seq, 1);
}

/// Only roster members may send; a missing group is `NotFound`.
pub async fn membership_rules<S: Store>(store: &Arc<S>) {
    let (group, devices) = group_of(store.as_ref(), 1).await;
    let outsider = register(store.as_ref(), 2).await[1];
    assert_eq!(
        store.append(message(&group, outsider, 1, "hi")).await,
        Err(StoreError::NotMember)
    );
    assert!(matches!(
        store.append(message(&group_id("missing"), devices[0], 1, "hi")).await,
        Err(StoreError::NotFound(_))
    ));
    let record = store.group(&group).await.expect("group").expect("exists");
    assert_eq!(record.head_seq, 0, "refused sends store nothing");
}

/// Announce-only: application messages need a listed poster; commits and
/// proposals are not application messages.
pub async fn announce_only_policy<S: Store>(store: &Arc<S>) {
    let (group, d) = group_of(store.as_ref(), 2).await;
    let policy = Policy {
        posters: Posters::Only(vec![d[0]]),
        ..Policy::default()
    };
    store.set_policy(&group, d[0], policy).await.expect("set policy");
    assert!(matches!(
        store.append(message_e1(&group, d[1], 1, "hi")).await,
        Err(StoreError::Forbidden(_))
    ));
    appended(store.append(message_e1(&group, d[0], 1, "announcement")).await);
    let proposal = AppendRequest {
        kind: MessageKind::Proposal,
        epoch: 1,
        ..message_e1(&group, d[1], 2, "proposal")
    };
    appended(store.append(proposal).await);
    appended(store.append(commit(&group, d[1], 1, 1, None)).await);
}

/// With `admins_change_roster`, commits that add or remove need an admin;
/// commits that change no one do not.
pub async fn admins_change_roster<S: Store>(store: &Arc<S>) {
    let (group, d) = group_of(store.as_ref(), 2).await;
    let newcomer = register(store.as_ref(), 3).await[2];
    let policy = Policy {
        admins: vec![d[0]],
        admins_change_roster: true,
        ..Policy::default()
    };
    store.set_policy(&group, d[0], policy).await.expect("set policy");
    assert!(matches!(
        store
            .append(commit(&group, d[1], 1, 1, adding(&[newcomer], None)))
            .await,
        Err(StoreError::Forbidden(_))
    ));
    assert!(matches!(
        store.append(commit(&group, d[1], 2, 1, removing(&[d[0]]))).await,
        Err(StoreError::Forbidden(_))
    ));
    let (_, epoch, ..) = appended(store.append(commit(&group, d[1], 3, 1, None)).await);
    assert_eq!(epoch, 2);
    let (_, epoch, added, _) = appended(
        store
            .append(commit(&group, d[0], 4, 2, adding(&[newcomer], None)))
            .await,
    );
    assert_eq!((epoch, added), (3, vec![(newcomer, 0)]));
}

/// Under `admins_change_roster`, a member may still change its own user's
/// devices and commit the removal of members that proposed to leave; admins
/// that are removed stop being admins.
pub async fn roster_exceptions<S: Store>(store: &Arc<S>) {
    let (group, d) = group_of(store.as_ref(), 3).await;
    let second = device_record(9, "user-2");
    store.register_device(second.clone()).await.expect("register");
    let policy = Policy {
        admins: vec![d[0]],
        admins_change_roster: true,
        ..Policy::default()
    };
    store.set_policy(&group, d[0], policy).await.expect("set policy");
    // user-2 links a second device, and removes it again.
    appended(
        store
            .append(commit(&group, d[1], 1, 1, adding(&[second.device], None)))
            .await,
    );
    appended(
        store
            .append(commit(&group, d[1], 2, 2, removing(&[second.device])))
            .await,
    );
    // Removing user-3 needs its leave proposal at the current epoch.
    assert!(matches!(
        store.append(commit(&group, d[1], 3, 3, removing(&[d[2]]))).await,
        Err(StoreError::Forbidden(_))
    ));
    let proposal = AppendRequest {
        kind: MessageKind::Proposal,
        epoch: 3,
        ..message(&group, d[2], 7, "leave")
    };
    appended(store.append(proposal).await);
    let meanwhile = AppendRequest {
        epoch: 3,
        ..message(&group, d[0], 8, "meanwhile")
    };
    appended(store.append(meanwhile).await);
    appended(store.append(commit(&group, d[1], 4, 3, removing(&[d[2]]))).await);
    // The admin removed: no admin left, so any member administers.
    appended(store.append(commit(&group, d[1], 5, 4, None)).await);
    let proposal = AppendRequest {
        kind: MessageKind::Proposal,
        epoch: 5,
        ..message(&group, d[0], 9, "leave")
    };
    appended(store.append(proposal).await);
    appended(store.append(commit(&group, d[1], 6, 5, removing(&[d[0]]))).await);
    let record = store.group(&group).await.expect("group").expect("exists");
    assert!(record.policy.admins.is_empty());
    assert_eq!(record.roster, vec![d[1]]);
}

/// The newest commit, rejected by the group, is voided: epoch and roster go
/// back, its payload is gone; nothing else can be voided.
pub async fn void_commit<S: Store>(store: &Arc<S>) {
    let (group, d) = group_of(store.as_ref(), 3).await;
    let outsider = register(store.as_ref(), 4).await[3];
    let newcomer = device_record(9, "user-9");
    store.register_device(newcomer.clone()).await.expect("register");
    // d[1] adds the newcomer and removes d[2], bound into the MLS bytes.
    let (add, remove) = (vec![newcomer.device], vec![d[2]]);
    let bad = AppendRequest {
        payload: Bytes::from(hush_crypto::inspect::framing::commit(&group, 1, &add, &remove, b"x")),
        ..commit(
            &group,
            d[1],
            1,
            1,
            Some(RosterChange {
                add,
                remove,
                welcome: None,
            }),
        )
    };
    let (entry, epoch, ..) = appended(store.append(bad).await);
    assert_eq!(epoch, 2);
    assert_eq!(
        store.void_commit(&group, entry.seq, outsider).await,
        Err(StoreError::NotMember)
    );
    assert!(matches!(
        store.void_commit(&group, entry.seq - 1, d[0]).await,
        Err(StoreError::Invalid(_))
    ));
    store.void_commit(&group, entry.seq, d[0]).await.expect("void");
    let record = store.group(&group).await.expect("group").expect("exists");
    assert_eq!(record.epoch, 1);
    let mut roster = record.roster.clone();
    roster.sort();
    let mut want = d.clone();
    want.sort();
    assert_eq!(roster, want);
    let gone = membership_of(store.as_ref(), newcomer.device, &group).await;
    assert_eq!(gone.removed_seq, Some(entry.seq));
    assert_eq!(membership_of(store.as_ref(), d[2], &group).await.removed_seq, None);
    let read = store
        .read_log(&group, entry.seq, Direction::Forward, 1, usize::MAX)
        .await
        .expect("read");
    assert!(read[0].payload.is_empty());
    assert!(matches!(
        store.void_commit(&group, entry.seq, d[0]).await,
        Err(StoreError::Invalid(_))
    ));
    // The group takes a commit at the old epoch again; d[2] may send.
    let (_, epoch, ..) = appended(store.append(commit(&group, d[0], 2, 1, None)).await);
    assert_eq!(epoch, 2);
    appended(
        store
            .append(AppendRequest {
                epoch: 2,
                ..message(&group, d[2], 1, "back")
            })
            .await,
    );
}

/// Changing the policy needs a member, and an admin when admins are named.
pub async fn set_policy_rules<S: Store>(store: &Arc<S>) {
    let (group, d) = group_of(store.as_ref(), 2).await;
    let outsider = register(store.as_ref(), 3).await[2];
    let admins = Policy {
        admins: vec![d[0]],
        ..Policy::default()
    };
    assert_eq!(
        store.set_policy(&group, outsider, admins.clone()).await,
        Err(StoreError::NotMember)
    );
    // No admins named yet: any member may set the policy.
    store
        .set_policy(&group, d[1], admins.clone())
        .await
        .expect("set policy");
    assert!(matches!(
        store.set_policy(&group, d[1], Policy::default()).await,
        Err(StoreError::Forbidden(_))
    ));
    let record = store.group(&group).await.expect("group").expect("exists");
    assert_eq!(record.policy, admins);
    store
        .set_policy(&group, d[0], Policy::default())
        .await
        .expect("admin sets policy");
    assert!(matches!(
        store.set_policy(&group_id("missing"), d[0], Policy::default()).await,
        Err(StoreError::NotFound(_))
    ));
}

/// A commit at the current epoch moves it by one; a commit for an old epoch,
/// or a message or proposal from more than `MAX_PAST_EPOCHS` back, is stale
/// (with the current epoch: members may already have deleted that epoch's
/// keys), unless it is a retry of one already stored; any message from a future epoch is
/// invalid; roster changes ride only with commits.
pub async fn commit_moves_epoch<S: Store>(store: &Arc<S>) {
    let (group, d) = group_of(store.as_ref(), 1).await;
    let (entry, epoch, ..) = appended(store.append(commit(&group, d[0], 1, 0, None)).await);
    assert_eq!(
        (entry.seq, entry.epoch, entry.kind, epoch),
        (1, 0, MessageKind::Commit, 1)
    );
    assert_eq!(
        store.append(commit(&group, d[0], 2, 0, None)).await,
        Err(StoreError::StaleEpoch { current: 1 })
    );
    for kind in [MessageKind::Commit, MessageKind::Application] {
        let future = AppendRequest {
            kind,
            epoch: 2,
            ..message(&group, d[0], 3, "future")
        };
        assert!(matches!(store.append(future).await, Err(StoreError::Invalid(_))));
    }
    // A message sealed at the current epoch, then the same one retried after
    // the group moved on: the retry is a duplicate, not stale.
    let at_one = AppendRequest {
        epoch: 1,
        ..message(&group, d[0], 6, "at one")
    };
    let (kept, ..) = appended(store.append(at_one.clone()).await);
    assert_eq!((kept.seq, kept.epoch), (2, 1));
    let (_, epoch, ..) = appended(store.append(commit(&group, d[0], 7, 1, None)).await);
    assert_eq!(epoch, 2);
    assert!(matches!(
        store.append(at_one).await,
        Ok(AppendOutcome::Duplicate { seq: 2, .. })
    ));
    // New messages and proposals from more than one epoch back: stale (one
    // epoch back is a message sealed just before the commit: it is kept).
    for kind in [MessageKind::Application, MessageKind::Proposal] {
        let late = AppendRequest {
            kind,
            epoch: 0,
            ..message(&group, d[0], 4, "late")
        };
        assert_eq!(store.append(late).await, Err(StoreError::StaleEpoch { current: 2 }));
    }
    let (just_before, ..) = appended(
        store
            .append(AppendRequest {
                epoch: 1,
                ..message(&group, d[0], 8, "sealed just before the commit")
            })
            .await,
    );
    assert_eq!((just_before.seq, just_before.epoch), (4, 1));
    let with_roster = AppendRequest {
        epoch: 2,
        roster: adding(&[], None),
        ..message(&group, d[0], 5, "not a commit")
    };
    assert!(matches!(store.append(with_roster).await, Err(StoreError::Invalid(_))));
    let record = store.group(&group).await.expect("group").expect("exists");
    assert_eq!((record.epoch, record.head_seq), (2, 4));
}

/// Eight concurrent commits for one epoch: exactly one is accepted, the others
/// are stale.
pub async fn concurrent_commits_one_wins<S: Store>(store: &Arc<S>) {
    let (group, d) = group_of(store.as_ref(), 1).await;
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let (store, group, sender) = (store.clone(), group.clone(), d[0]);
            tokio::spawn(async move { store.append(commit(&group, sender, n, 0, None)).await })
        })
        .collect();
    let (mut won, mut stale) = (0, 0);
    for task in tasks {
        match task.await.expect("task") {
            Ok(AppendOutcome::Appended { epoch: 1, .. }) => won += 1,
            Err(StoreError::StaleEpoch { current: 1 }) => stale += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((won, stale), (1, 7));
    let record = store.group(&group).await.expect("group").expect("exists");
    assert_eq!((record.epoch, record.head_seq), (1, 1));
}

/// Concurrent sends from many tasks get unique, gapless seqs.
pub async fn concurrent_appends_are_gapless<S: Store>(store: &Arc<S>) {
    const TASKS: u64 = 32;
    const EACH: u64 = 4;
    let (group, d) = group_of(store.as_ref(), 2).await;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (store, group, sender) = (store.clone(), group.clone(), d[(task % 2) as usize]);
            tokio::spawn(async move {
                let mut got = Vec::new();
                for n in 0..EACH {
                    let req = message_e1(&group, sender, task * 100 + n, &format!("{task}/{n}"));
                    got.push(appended(store.append(req).await).0.seq);
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        let got = task.await.expect("task");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "one task's sends are ordered");
        all.extend(got);
    }
    all.sort_unstable();
    // Seq 1 is the commit that built the group.
    assert_eq!(all, (2..2 + TASKS * EACH).collect::<Vec<_>>());
}

/// Added devices must be registered; they join at the commit's seq, get the
/// Welcome in their inbox, and may then send.
pub async fn roster_add<S: Store>(store: &Arc<S>) {
    let (group, d) = group_of(store.as_ref(), 1).await;
    let more = register(store.as_ref(), 3).await;
    let (b, c) = (more[1], more[2]);
    appended(store.append(message(&group, d[0], 1, "before")).await);

    let (entry, epoch, added, removed) = appended(
        store
            .append(commit(&group, d[0], 1, 0, adding(&[b], Some("welcome-b"))))
            .await,
    );
    assert_eq!((entry.seq, epoch, removed), (2, 1, vec![]));
    assert_eq!(added, vec![(b, 1)]);
    let joined = membership_of(store.as_ref(), b, &group).await;
    assert_eq!((joined.joined_seq, joined.cursor, joined.removed_seq), (2, 2, None));
    let inbox = store.inbox_read(b, 0, 10).await.expect("inbox");
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].seq, 1);
    assert_eq!(inbox[0].sender, d[0]);
    assert_eq!(inbox[0].payload, Bytes::from("welcome-b"));
    assert_eq!(
        inbox[0].kind,
        InboxKind::Welcome {
            group: group.clone(),
            commit_seq: 2
        }
    );
    appended(store.append(message_e1(&group, b, 1, "hi from b")).await);

    // Without a Welcome the added device's inbox seq is reported as 0.
    let (_, _, added, _) = appended(store.append(commit(&group, d[0], 2, 1, adding(&[c], None))).await);
    assert_eq!(added, vec![(c, 0)]);
    assert_eq!(store.inbox_state(c).await, Ok((0, 0)));
    let record = store.group(&group).await.expect("group").expect("exists");
    let mut roster = vec![d[0], b, c];
    roster.sort();
    assert_eq!(record.roster, roster);
}

/// Adding an unregistered device or a member, or removing a non-member, is
/// invalid and changes nothing.
pub async fn roster_change_validation<S: Store>(store: &Arc<S>) {
    let (group, d) = group_of(store.as_ref(), 2).await;
    let outsider = register(store.as_ref(), 3).await[2];
    let unregistered = DeviceId([0xab; 16]);
    for change in [
        adding(&[unregistered], None),
        adding(&[d[1]], None),
        removing(&[outsider]),
    ] {
        let refused = store.append(commit(&group, d[0], 9, 1, change)).await;
        assert!(matches!(refused, Err(StoreError::Invalid(_))), "got {refused:?}");
    }
    let record = store.group(&group).await.expect("group").expect("exists");
    assert_eq!((record.epoch, record.head_seq, record.roster.len()), (1, 1, 2));
}

/// A removed device keeps a tombstone with the removing commit's seq and can no
/// longer send; re-adding it replaces the tombstone.
pub async fn roster_remove<S: Store>(store: &Arc<S>) {
    let (group, d) = group_of(store.as_ref(), 2).await;
    let (entry, epoch, _, removed) = appended(store.append(commit(&group, d[0], 1, 1, removing(&[d[1]]))).await);
    assert_eq!((entry.seq, epoch, removed), (2, 2, vec![d[1]]));
    let tombstone = membership_of(store.as_ref(), d[1], &group).await;
    assert_eq!((tombstone.joined_seq, tombstone.removed_seq), (1, Some(2)));
    assert_eq!(store.memberships(d[1]).await, Ok(vec![tombstone]));
    assert_eq!(
        store.append(message_e1(&group, d[1], 1, "still here?")).await,
        Err(StoreError::NotMember)
    );
    let record = store.group(&group).await.expect("group").expect("exists");
    assert_eq!(record.roster, vec![d[0]]);

    let (entry, ..) = appended(store.append(commit(&group, d[0], 2, 2, adding(&[d[1]], None))).await);
    let back = membership_of(store.as_ref(), d[1], &group).await;
    assert_eq!(
        (back.joined_seq, back.cursor, back.removed_seq),
        (entry.seq, entry.seq, None)
    );
    let back = AppendRequest {
        epoch: 3,
        ..message(&group, d[1], 1, "back")
    };
    appended(store.append(back).await);
}

/// Pages forward and backward, with limits, clamped to what exists.
pub async fn read_log_paging<S: Store>(store: &Arc<S>) {
    let (group, d) = group_of(store.as_ref(), 1).await;
    for n in 1..=10 {
        appended(store.append(message(&group, d[0], n, "m")).await);
    }
    let s = store.as_ref();
    assert_eq!(seqs(s, &group, 1, Direction::Forward, 3).await, vec![1, 2, 3]);
    assert_eq!(seqs(s, &group, 8, Direction::Forward, 10).await, vec![8, 9, 10]);
    assert_eq!(seqs(s, &group, 0, Direction::Forward, 2).await, vec![1, 2]);
    assert_eq!(seqs(s, &group, 11, Direction::Forward, 5).await, Vec::<u64>::new());
    assert_eq!(seqs(s, &group, 10, Direction::Backward, 3).await, vec![10, 9, 8]);
    assert_eq!(seqs(s, &group, u64::MAX, Direction::Backward, 2).await, vec![10, 9]);
    assert_eq!(seqs(s, &group, 2, Direction::Backward, 5).await, vec![2, 1]);
    assert_eq!(seqs(s, &group, 0, Direction::Backward, 5).await, Vec::<u64>::new());
    assert_eq!(seqs(s, &group, 1, Direction::Forward, 0).await, Vec::<u64>::new());
    assert_eq!(
        seqs(s, &group, 1, Direction::Forward, usize::MAX).await,
        (1..=10).collect::<Vec<_>>()
    );
}

/// Cursors only move forward; non-members and tombstones are ignored; one call
/// takes many.
pub async fn advance_cursors<S: Store>(store: &Arc<S>) {
    let (group, d) = group_of(store.as_ref(), 3).await;
    for n in 1..=5 {
        appended(store.append(message_e1(&group, d[0], n, "m")).await);
    }
    appended(store.append(commit(&group, d[0], 1, 1, removing(&[d[2]]))).await);
    let outsider = DeviceId([0xcd; 16]);
    store
        .advance_cursors(vec![
            (d[0], group.clone(), 4),
            (d[1], group.clone(), 3),
            (d[2], group.clone(), 5),
            (outsider, group.clone(), 5),
        ])
        .await
        .expect("advance");
    store
        .advance_cursors(vec![(d[0], group.clone(), 2)])
        .await
        .expect("advance");
    assert_eq!(membership_of(store.as_ref(), d[0], &group).await.cursor, 4);
    assert_eq!(membership_of(store.as_ref(), d[1], &group).await.cursor, 3);
    assert_eq!(
        membership_of(store.as_ref(), d[2], &group).await.cursor,
        5,
        "a removed device's cursor moves, up to its removal"
    );
    store
        .advance_cursors(vec![(d[2], group.clone(), 100)])
        .await
        .expect("advance");
    let removed = membership_of(store.as_ref(), d[2], &group).await;
    assert_eq!(Some(removed.cursor), removed.removed_seq);
    assert_eq!(store.membership(outsider, &group).await, Ok(None));
    store.advance_cursors(vec![]).await.expect("empty batch");
}

/// Claims that may take any package.
fn claims(devices: &[DeviceId]) -> Vec<KeyPackageClaim> {
    devices.iter().map(|&d| d.into()).collect()
}

/// One-time packages are consumed oldest first; then the last-resort one is
/// handed out and kept; devices with neither are left out. A claim limited to
/// the last-resort package consumes nothing.
pub async fn key_packages<S: Store>(store: &Arc<S>) {
    let d = register(store.as_ref(), 3).await;
    let kp = |s: &str| Bytes::copy_from_slice(s.as_bytes());
    assert_eq!(
        store
            .upload_key_packages(OpToken::random(), d[0], vec![kp("a1"), kp("a2")], Some(kp("a-last")))
            .await,
        Ok((2, true))
    );
    assert_eq!(
        store
            .upload_key_packages(OpToken::random(), d[0], vec![kp("a3")], None)
            .await,
        Ok((3, true))
    );
    assert_eq!(
        store
            .upload_key_packages(OpToken::random(), d[1], vec![kp("b1")], None)
            .await,
        Ok((1, false))
    );

    let claim = |devices: Vec<DeviceId>| store.claim_key_packages(OpToken::random(), claims(&devices));
    let got = claim(vec![d[0], d[1], d[2]]).await.expect("claim");
    assert_eq!(
        got.iter()
            .map(|c| (c.device, c.key_package.clone(), c.last_resort))
            .collect::<Vec<_>>(),
        vec![(d[0], kp("a1"), false), (d[1], kp("b1"), false)],
        "device 3 has none and is left out"
    );
    // A claim that may not take a one-time package gets the last-resort one
    // and consumes nothing; a device without one is left out.
    let last_only = |device| KeyPackageClaim {
        device,
        one_time: false,
    };
    let got = store
        .claim_key_packages(OpToken::random(), vec![last_only(d[0]), last_only(d[1])])
        .await
        .expect("claim");
    assert_eq!(
        got.iter()
            .map(|c| (c.device, c.key_package.clone(), c.last_resort))
            .collect::<Vec<_>>(),
        vec![(d[0], kp("a-last"), true)]
    );
    let next: Vec<_> = [
        claim(vec![d[0]]).await,
        claim(vec![d[0]]).await,
        claim(vec![d[0]]).await,
    ]
    .into_iter()
    .map(|r| {
        let c = r.expect("claim").pop().expect("one package");
        (c.key_package, c.last_resort)
    })
    .collect();
    assert_eq!(next, vec![(kp("a2"), false), (kp("a3"), false), (kp("a-last"), true)]);
    let last = claim(vec![d[0], d[1]]).await.expect("claim");
    assert_eq!(last.len(), 1, "device 2 is out of packages");
    assert_eq!((last[0].key_package.clone(), last[0].last_resort), (kp("a-last"), true));
    assert_eq!(
        store
            .upload_key_packages(OpToken::random(), d[0], vec![], Some(kp("a-last-2")))
            .await,
        Ok((0, true))
    );
    let replaced = claim(vec![d[0]]).await.expect("claim");
    assert_eq!(replaced[0].key_package, kp("a-last-2"));
}

/// Inbox entries get gapless seqs; reading pages after a seq; acknowledging
/// deletes up to a seq and never moves back.
pub async fn inbox<S: Store>(store: &Arc<S>) {
    let d = register(store.as_ref(), 2).await;
    assert_eq!(store.inbox_state(d[0]).await, Ok((0, 0)));
    for n in 1..=3u64 {
        let payload = Bytes::from(format!("direct {n}"));
        let seq = store
            .inbox_push(OpToken::random(), d[0], d[1], InboxKind::Direct, payload, 2_000 + n)
            .await;
        assert_eq!(seq, Ok(n));
    }
    let all = store.inbox_read(d[0], 0, 10).await.expect("read");
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(
        (all[1].sender, all[1].kind.clone(), all[1].timestamp_ms),
        (d[1], InboxKind::Direct, 2_002)
    );
    assert_eq!(all[1].payload, Bytes::from("direct 2"));
    let page = store.inbox_read(d[0], 1, 1).await.expect("read");
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2]);

    assert_eq!(store.inbox_ack(d[0], 2).await, Ok(2));
    assert_eq!(store.inbox_state(d[0]).await, Ok((2, 3)));
    let rest = store.inbox_read(d[0], 0, 10).await.expect("read");
    assert_eq!(
        rest.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![3],
        "acknowledged entries are deleted"
    );
    assert_eq!(store.inbox_ack(d[0], 1).await, Ok(2), "acknowledging never moves back");
    assert_eq!(
        store
            .inbox_push(OpToken::random(), d[0], d[1], InboxKind::Direct, Bytes::new(), 3_000)
            .await,
        Ok(4)
    );
    assert_eq!(store.inbox_state(d[1]).await, Ok((0, 0)));
}

/// Entries every roster device acknowledged are deleted as a prefix, moving
/// `first_seq`; their idempotency keys go with them.
pub async fn prune_acknowledged<S: Store>(store: &Arc<S>) {
    let (group, d) = group_of(store.as_ref(), 2).await;
    for n in 1..=5 {
        appended(store.append(message_e1(&group, d[0], n, "m")).await);
    }
    store
        .advance_cursors(vec![(d[0], group.clone(), 6), (d[1], group.clone(), 3)])
        .await
        .expect("advance");
    let kept = prune(store.as_ref(), 1_000, u64::MAX, false).await.expect("prune");
    assert_eq!((kept.acknowledged, kept.expired, kept.groups_moved), (0, 0, 0));

    let report = prune(store.as_ref(), 1_000, u64::MAX, true).await.expect("prune");
    assert_eq!((report.acknowledged, report.expired), (3, 0));
    assert_eq!(report.groups_moved, 1);
    let record = store.group(&group).await.expect("group").expect("exists");
    assert_eq!((record.first_seq, record.head_seq), (4, 6));
    assert_eq!(
        seqs(store.as_ref(), &group, 1, Direction::Forward, 10).await,
        vec![4, 5, 6]
    );
    assert_eq!(
        seqs(store.as_ref(), &group, 10, Direction::Backward, 10).await,
        vec![6, 5, 4]
    );

    // Seq 2 held client message id 1; its idempotency key is gone, so the same id
    // is now a new message. Seq 4's key is kept.
    let (again, ..) = appended(store.append(message_e1(&group, d[0], 1, "m")).await);
    assert_eq!(again.seq, 7);
    assert_eq!(
        store.append(message_e1(&group, d[0], 3, "m")).await,
        Ok(AppendOutcome::Duplicate { seq: 4, epoch: 1 })
    );
    let nothing = prune(store.as_ref(), 1_000, u64::MAX, true).await.expect("prune");
    assert_eq!((nothing.acknowledged, nothing.groups_moved), (0, 0));
}

/// Entries older than the retention period are deleted whatever the cursors,
/// up to all of them (then `first_seq` is `head_seq + 1`).
pub async fn prune_by_age<S: Store>(store: &Arc<S>) {
    let (group, d) = group_of(store.as_ref(), 1).await;
    for (n, now_ms) in [(1, 10_000), (2, 20_000), (3, 30_000)] {
        appended(
            store
                .append(AppendRequest {
                    now_ms,
                    ..message(&group, d[0], n, "m")
                })
                .await,
        );
    }
    let report = prune(store.as_ref(), 35_000, 10_000, false).await.expect("prune");
    assert_eq!((report.acknowledged, report.expired), (0, 2));
    assert_eq!(report.groups_moved, 1);
    assert_eq!(seqs(store.as_ref(), &group, 1, Direction::Forward, 10).await, vec![3]);

    let report = prune(store.as_ref(), 100_000, 10_000, false).await.expect("prune");
    assert_eq!(report.expired, 1);
    let record = store.group(&group).await.expect("group").expect("exists");
    assert_eq!((record.first_seq, record.head_seq), (4, 3));
    assert_eq!(
        seqs(store.as_ref(), &group, 1, Direction::Forward, 10).await,
        Vec::<u64>::new()
    );
    let (next, ..) = appended(store.append(message(&group, d[0], 9, "after")).await);
    assert_eq!(next.seq, 4);
}

/// A retention step deletes at most `max_entries` of one group's prefix and
/// says whether more is due; steps add up to what one unbounded pass deletes,
/// and a group with nothing to delete is left alone.
pub async fn prune_in_bounded_steps<S: Store>(store: &Arc<S>) {
    let (group, d) = group_of(store.as_ref(), 2).await;
    for n in 1..=9 {
        let now_ms = if n <= 6 { 1_000 } else { 50_000 };
        appended(
            store
                .append(AppendRequest {
                    now_ms,
                    ..message_e1(&group, d[0], n, "m")
                })
                .await,
        );
    }
    // Seqs 1..=10 (1 is the commit that built the group). Device 1 acked 4,
    // device 0 everything; entries 2..=7 are older than the cutoff.
    store
        .advance_cursors(vec![(d[0], group.clone(), 10), (d[1], group.clone(), 4)])
        .await
        .expect("advance");
    let rule = RetentionRule {
        now_ms: 20_000,
        max_age_ms: 10_000,
        delete_acknowledged: true,
    };
    let step = |max| store.prune_group(&group, rule, max);
    assert_eq!(
        step(3).await,
        Ok(PruneStep {
            acknowledged: 3,
            expired: 0,
            first_seq: Some(4),
            more: true,
        })
    );
    assert_eq!(store.group(&group).await.expect("group").expect("exists").first_seq, 4);
    assert_eq!(
        step(3).await,
        Ok(PruneStep {
            acknowledged: 1,
            expired: 2,
            first_seq: Some(7),
            more: true,
        })
    );
    // Seq 7 is expired, seq 8 is neither acknowledged by all nor old: the step
    // stops there even with room for more, and says nothing more is due.
    assert_eq!(
        step(100).await,
        Ok(PruneStep {
            acknowledged: 0,
            expired: 1,
            first_seq: Some(8),
            more: false,
        })
    );
    assert_eq!(step(100).await, Ok(PruneStep::default()), "nothing left to delete");
    // A bound of 0 still makes progress (one entry).
    store
        .advance_cursors(vec![(d[1], group.clone(), 10)])
        .await
        .expect("advance");
    let one = step(0).await.expect("step");
    assert_eq!((one.acknowledged, one.first_seq, one.more), (1, Some(9), true));
    assert_eq!(
        seqs(store.as_ref(), &group, 0, Direction::Forward, 100).await,
        vec![9, 10]
    );
    assert!(matches!(
        store.prune_group(&group_id("missing"), rule, 10).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Group ids come in pages that together list every group once.
pub async fn list_groups_in_pages<S: Store>(store: &Arc<S>) {
    let d = register(store.as_ref(), 1).await;
    let names = ["b", "a", "ccc", "aa", "zz", "m"];
    for name in names {
        store
            .create_group(group_id(name), d[0], Policy::default(), "eu".into(), 0)
            .await
            .expect("create");
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_groups(after.clone(), 4).await.expect("page");
        assert!(page.len() <= 4);
        after = page.last().cloned();
        seen.extend(page.clone());
        if page.len() < 4 {
            break;
        }
    }
    let all = store.list_groups(None, usize::MAX).await.expect("all");
    assert_eq!(seen, all, "pages follow one order");
    let mut sorted: Vec<_> = seen.iter().map(|g| String::from_utf8_lossy(&g.0).to_string()).collect();
    sorted.sort();
    let mut expected: Vec<_> = names.iter().map(|n| n.to_string()).collect();
    expected.sort();
    assert_eq!(sorted, expected, "every group once");
    let last = all.last().cloned();
    assert_eq!(store.list_groups(last, 10).await, Ok(vec![]));
    assert_eq!(store.list_groups(None, 0).await, Ok(vec![]));
}

/// Memberships and a user's devices come in pages; the whole-list calls
/// return their concatenation.
pub async fn memberships_and_devices_in_pages<S: Store>(store: &Arc<S>) {
    let d = register(store.as_ref(), 1).await;
    for name in ["g1", "g2", "g3", "g4", "g5"] {
        store
            .create_group(group_id(name), d[0], Policy::default(), "eu".into(), 0)
            .await
            .expect("create");
    }
    let all = store.memberships(d[0]).await.expect("memberships");
    assert_eq!(all.len(), 5);
    let first = store.memberships_page(d[0], None, 2).await.expect("page");
    let second = store
        .memberships_page(d[0], first.last().map(|m| m.group.clone()), 2)
        .await
        .expect("page");
    let third = store
        .memberships_page(d[0], second.last().map(|m| m.group.clone()), 2)
        .await
        .expect("page");
    assert_eq!((first.len(), second.len(), third.len()), (2, 2, 1));
    assert_eq!([first, second, third].concat(), all);

    for n in 10..15 {
        store.register_device(device_record(n, "many")).await.expect("register");
    }
    let user = UserId::from("many");
    let devices = store.user_devices(&user).await.expect("devices");
    assert_eq!(devices.len(), 5);
    let page = store.user_devices_page(&user, None, 3).await.expect("page");
    let rest = store
        .user_devices_page(&user, page.last().map(|r| r.device), 3)
        .await
        .expect("page");
    assert_eq!((page.len(), rest.len()), (3, 2));
    assert_eq!([page, rest].concat(), devices);
}

/// A log read stops once its payload budget is reached or the next entry
/// would exceed it, and always returns the first entry.
pub async fn read_log_byte_budget<S: Store>(store: &Arc<S>) {
    let (group, d) = group_of(store.as_ref(), 1).await;
    for n in 1..=5 {
        appended(store.append(message(&group, d[0], n, "0123456789")).await);
    }
    let group = &group;
    let read = |from, direction, max_bytes| async move {
        let entries = store
            .read_log(group, from, direction, 100, max_bytes)
            .await
            .expect("read");
        entries.iter().map(|e| e.seq).collect::<Vec<_>>()
    };
    assert_eq!(
        read(1, Direction::Forward, 25).await,
        vec![1, 2],
        "a third would exceed 25"
    );
    assert_eq!(read(1, Direction::Forward, 30).await, vec![1, 2, 3], "reached exactly");
    assert_eq!(read(1, Direction::Forward, 0).await, vec![1], "at least one");
    assert_eq!(
        read(3, Direction::Forward, 5).await,
        vec![3],
        "one larger than the budget"
    );
    assert_eq!(read(5, Direction::Backward, 20).await, vec![5, 4]);
    assert_eq!(read(1, Direction::Forward, usize::MAX).await, vec![1, 2, 3, 4, 5]);
    let limited = store
        .read_log(group, 1, Direction::Forward, 2, usize::MAX)
        .await
        .expect("read");
    assert_eq!(limited.len(), 2, "the row limit still holds");
}

/// An inbox read keeps a payload budget the same way.
pub async fn inbox_byte_budget<S: Store>(store: &Arc<S>) {
    let d = register(store.as_ref(), 2).await;
    for n in 0..4u64 {
        store
            .inbox_push(
                OpToken::random(),
                d[0],
                d[1],
                InboxKind::Direct,
                Bytes::from("0123456789"),
                n,
            )
            .await
            .expect("push");
    }
    let device = d[0];
    let read = |after, max_bytes| async move {
        let entries = store.inbox_page(device, after, 100, max_bytes).await.expect("read");
        entries.iter().map(|e| e.seq).collect::<Vec<_>>()
    };
    assert_eq!(read(0, 25).await, vec![1, 2]);
    assert_eq!(read(0, 20).await, vec![1, 2]);
    assert_eq!(read(0, 0).await, vec![1]);
    assert_eq!(read(2, 1_000).await, vec![3, 4]);
    assert_eq!(read(4, 0).await, Vec::<u64>::new());
    assert_eq!(
        store.inbox_read(d[0], 0, 3).await.map(|e| e.len()),
        Ok(3),
        "the default budget holds small entries"
    );
}

/// A commit adding several devices with one Welcome: each device's inbox has
/// it, whole, until that device acknowledges it; the others keep theirs.
/// Its size counts against an inbox read's budget.
pub async fn welcome_shared_by_added_devices<S: Store>(store: &Arc<S>) {
    let (group, d) = group_of(store.as_ref(), 1).await;
    let more = register(store.as_ref(), 4).await;
    let added = &more[1..4];
    let welcome = "W".repeat(300);
    let (entry, _, outcome, _) = appended(
        store
            .append(commit(&group, d[0], 1, 0, adding(added, Some(&welcome))))
            .await,
    );
    assert_eq!(outcome, added.iter().map(|a| (*a, 1)).collect::<Vec<_>>());
    for &device in added {
        store
            .inbox_push(OpToken::random(), device, d[0], InboxKind::Direct, Bytes::from("dm"), 5)
            .await
            .expect("push");
        let inbox = store.inbox_read(device, 0, 10).await.expect("inbox");
        assert_eq!(inbox.len(), 2);
        assert_eq!(inbox[0].payload, Bytes::from(welcome.clone()));
        assert_eq!(
            inbox[0].kind,
            InboxKind::Welcome {
                group: group.clone(),
                commit_seq: entry.seq
            }
        );
        assert_eq!(inbox[0].sender, d[0]);
        let budgeted = store.inbox_page(device, 0, 10, 100).await.expect("inbox");
        assert_eq!(budgeted.len(), 1, "the Welcome's 300 bytes use the budget up");
    }
    store.inbox_ack(added[0], 1).await.expect("ack");
    store.inbox_ack(added[1], 2).await.expect("ack");
    assert_eq!(
        store.inbox_read(added[0], 0, 10).await.map(|e| e.len()),
        Ok(1),
        "the direct message is left"
    );
    let last = store.inbox_read(added[2], 0, 10).await.expect("inbox");
    assert_eq!(
        last[0].payload,
        Bytes::from(welcome.clone()),
        "still whole for the last one"
    );
    store.inbox_ack(added[2], 2).await.expect("ack");
    assert_eq!(store.inbox_read(added[2], 0, 10).await, Ok(vec![]));
}

/// An inbox push repeated with its token returns the first seq and adds
/// nothing; another token is another push.
pub async fn inbox_push_token<S: Store>(store: &Arc<S>) {
    let d = register(store.as_ref(), 2).await;
    let token = OpToken::random();
    let push = |token, body: &'static str| store.inbox_push(token, d[0], d[1], InboxKind::Direct, Bytes::from(body), 7);
    assert_eq!(push(token, "once").await, Ok(1));
    assert_eq!(push(token, "once").await, Ok(1), "a repeat is answered, not applied");
    assert_eq!(store.inbox_state(d[0]).await, Ok((0, 1)));
    assert_eq!(push(OpToken::random(), "twice").await, Ok(2));
    assert_eq!(push(token, "once").await, Ok(1));
    let inbox = store.inbox_read(d[0], 0, 10).await.expect("inbox");
    assert_eq!(inbox.len(), 2);
}

/// An upload repeated with its token returns the first count and adds no
/// package.
pub async fn upload_key_packages_token<S: Store>(store: &Arc<S>) {
    let d = register(store.as_ref(), 1).await;
    let token = OpToken::random();
    let upload = |token| store.upload_key_packages(token, d[0], vec![Bytes::from("k1"), Bytes::from("k2")], None);
    assert_eq!(upload(token).await, Ok((2, false)));
    assert_eq!(upload(token).await, Ok((2, false)));
    assert_eq!(upload(OpToken::random()).await, Ok((4, false)));
    assert_eq!(store.key_package_count(d[0]).await, Ok(4));
    let mut claimed = 0;
    while let Some(c) = store
        .claim_key_packages(OpToken::random(), claims(&[d[0]]))
        .await
        .expect("claim")
        .pop()
    {
        assert!(!c.last_resort);
        claimed += 1;
    }
    assert_eq!(claimed, 4, "two uploads' worth, not three");
    assert_eq!(store.key_package_count(d[0]).await, Ok(0));
}

/// A claim repeated with its token returns the same packages and consumes
/// nothing more.
pub async fn claim_key_packages_token<S: Store>(store: &Arc<S>) {
    let d = register(store.as_ref(), 2).await;
    let kp = |s: &str| Bytes::copy_from_slice(s.as_bytes());
    store
        .upload_key_packages(OpToken::random(), d[0], vec![kp("a1"), kp("a2")], None)
        .await
        .expect("upload");
    store
        .upload_key_packages(OpToken::random(), d[1], vec![kp("b1")], Some(kp("b-last")))
        .await
        .expect("upload");
    let token = OpToken::random();
    let first = store
        .claim_key_packages(token, claims(&[d[0], d[1]]))
        .await
        .expect("claim");
    let packages = |c: &[hush_protocol::frame::ClaimedKeyPackage]| {
        c.iter().map(|c| (c.device, c.key_package.clone())).collect::<Vec<_>>()
    };
    assert_eq!(packages(&first), vec![(d[0], kp("a1")), (d[1], kp("b1"))]);
    let again = store
        .claim_key_packages(token, claims(&[d[0], d[1]]))
        .await
        .expect("claim");
    assert_eq!(again, first, "the same packages");
    let next = store
        .claim_key_packages(OpToken::random(), claims(&[d[0], d[1]]))
        .await
        .expect("claim");
    assert_eq!(
        next.iter()
            .map(|c| (c.key_package.clone(), c.last_resort))
            .collect::<Vec<_>>(),
        vec![(kp("a2"), false), (kp("b-last"), true)],
        "the repeat consumed nothing"
    );
}

/// Out-of-bounds ids and numbers are errors or empty results, never a crash.
pub async fn out_of_bounds_input<S: Store>(store: &Arc<S>) {
    let d = register(store.as_ref(), 1).await;
    for bad in [GroupId(vec![]), GroupId(vec![7; 300])] {
        let created = store
            .create_group(bad.clone(), d[0], Policy::default(), "eu".into(), 0)
            .await;
        assert!(created.is_err(), "group id of {} bytes accepted", bad.0.len());
        assert!(store.append(message(&bad, d[0], 1, "m")).await.is_err());
        assert!(store.group(&bad).await.map_or(true, |g| g.is_none()));
    }
    assert_eq!(store.inbox_read(d[0], u64::MAX, usize::MAX).await, Ok(vec![]));
    assert_eq!(store.inbox_ack(d[0], u64::MAX).await, Ok(0));
    assert_eq!(store.claim_key_packages(OpToken::random(), vec![]).await, Ok(vec![]));
    let report = prune(store.as_ref(), u64::MAX, 0, true)
        .await
        .expect("prune of an empty store");
    assert_eq!((report.acknowledged, report.expired, report.groups_moved), (0, 0, 0));
    assert_eq!(
        store.read_log(&GroupId(vec![]), 1, Direction::Forward, 1, 0).await.ok(),
        None
    );
    assert_eq!(store.inbox_page(d[0], 0, usize::MAX, 0).await, Ok(vec![]));
    assert_eq!(
        store.list_groups(Some(GroupId(vec![9; 255])), usize::MAX).await,
        Ok(vec![])
    );
    assert_eq!(store.memberships_page(d[0], None, 0).await, Ok(vec![]));
}

/// Everything written is there after the store is closed and opened again.
pub async fn survives_restart<B: Backend>(backend: &mut B) {
    let store = Arc::new(backend.open_empty().await);
    let (group, d) = group_of(store.as_ref(), 2).await;
    for n in 1..=3 {
        appended(store.append(message_e1(&group, d[0], n, &format!("m{n}"))).await);
    }
    store
        .advance_cursors(vec![(d[1], group.clone(), 3)])
        .await
        .expect("advance");
    store.set_last_seen(d[0], 42_000).await.expect("last seen");
    let kp = Bytes::from_static(b"kp");
    store
        .upload_key_packages(OpToken::random(), d[1], vec![kp.clone()], None)
        .await
        .expect("upload");
    let push_token = OpToken::random();
    store
        .inbox_push(push_token, d[1], d[0], InboxKind::Direct, Bytes::from_static(b"dm"), 5)
        .await
        .expect("push");
    let before_group = store.group(&group).await.expect("group");
    let before_log = store
        .read_log(&group, 1, Direction::Forward, 100, usize::MAX)
        .await
        .expect("log");
    let before_members = store.memberships(d[1]).await.expect("memberships");
    let before_inbox = store.inbox_read(d[1], 0, 10).await.expect("inbox");

    let store = Arc::into_inner(store).expect("no other handle");
    let store = backend.reopen(store).await;

    assert_eq!(store.group(&group).await, Ok(before_group));
    assert_eq!(
        store.read_log(&group, 1, Direction::Forward, 100, usize::MAX).await,
        Ok(before_log)
    );
    assert_eq!(store.memberships(d[1]).await, Ok(before_members));
    assert_eq!(store.inbox_read(d[1], 0, 10).await, Ok(before_inbox));
    assert_eq!(store.last_seen(d[0]).await, Ok(42_000));
    assert_eq!(store.device(d[0]).await, Ok(Some(device_record(1, "user-1"))));
    assert_eq!(
        store.append(message_e1(&group, d[0], 2, "m2")).await,
        Ok(AppendOutcome::Duplicate { seq: 3, epoch: 1 }),
        "idempotency keys survive"
    );
    let (next, ..) = appended(store.append(message_e1(&group, d[1], 1, "after restart")).await);
    assert_eq!(next.seq, 5, "seqs continue without a gap");
    let claimed = store
        .claim_key_packages(OpToken::random(), claims(&[d[1]]))
        .await
        .expect("claim");
    assert_eq!(claimed.first().map(|c| c.key_package.clone()), Some(kp));
    assert_eq!(
        store
            .inbox_push(push_token, d[1], d[0], InboxKind::Direct, Bytes::from_static(b"dm"), 5)
            .await,
        Ok(1),
        "operation tokens survive"
    );
    assert_eq!(store.inbox_state(d[1]).await, Ok((0, 1)));
}
