//! The group lifecycle of issue 3 with three devices of two users, every
//! device restarted from disk between steps, against an in-test stand-in for
//! the relay's commit ordering (see `common`).
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, Sequencer, alice_and_bob, texts};
use hush_crypto::content::{Content, Payload};
use hush_crypto::inspect::{ContentType, inspect};
use hush_crypto::{Error, Processed};
use hush_protocol::{GroupId, UserId};

fn restart_all(clients: &mut [&mut Client]) {
    for c in clients {
        c.restart();
    }
}

fn epochs(group: &GroupId, clients: &mut [&mut Client]) -> Vec<u64> {
    clients.iter_mut().map(|c| c.d().epoch(group).unwrap()).collect()
}

/// Sends `text` from `from` and checks every other client decrypts it.
fn exchange(log: &mut Sequencer, group: &GroupId, from: &mut Client, to: &mut [&mut Client], text: &str) {
    let ct = from.d().encrypt(group, text.as_bytes()).unwrap();
    let h = inspect(&ct).unwrap();
    assert_eq!(h.content_type, ContentType::Application);
    log.submit(from.id(), &ct).unwrap();
    for c in to.iter_mut() {
        let got = log.deliver(c);
        assert_eq!(texts(&got), vec![text.as_bytes().to_vec()], "{} reading {text}", c.name);
    }
}

#[test]
fn three_devices_two_users_full_lifecycle_with_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut a1 = Client::new(&dir, "alice-phone", "alice");
    let mut a2 = Client::new(&dir, "alice-laptop", "alice");
    let mut b = Client::new(&dir, "bob", "bob");
    let mut log = Sequencer::default();
    let group = GroupId(b"family".to_vec());

    // Key packages, then a restart: the private keys must survive it.
    let kp_a2 = a2.d().generate_key_packages(2, 1).unwrap();
    let kp_b = b.d().generate_key_packages(2, 1).unwrap();
    restart_all(&mut [&mut a1, &mut a2, &mut b]);

    // Create and add both devices in one commit.
    a1.d().create_group(&group).unwrap();
    let commit = a1.d().add_members(&group, &[&kp_a2[0], &kp_b[0]]).unwrap();
    assert_eq!(commit.epoch, 0);
    assert_eq!(
        commit.added.iter().map(|c| c.device).collect::<Vec<_>>(),
        vec![a2.id(), b.id()]
    );
    log.submit(a1.id(), &commit.message).unwrap();
    a1.d().merge_pending_commit(&group).unwrap();
    let welcome = commit.welcome.unwrap();
    assert_eq!(a2.d().join(&welcome, None).unwrap(), group);
    assert_eq!(b.d().join(&welcome, None).unwrap(), group);
    a2.cursor = log.head();
    b.cursor = log.head();
    restart_all(&mut [&mut a1, &mut a2, &mut b]);
    assert_eq!(epochs(&group, &mut [&mut a1, &mut a2, &mut b]), vec![1, 1, 1]);

    // Both users see the same devices and so the same safety number.
    let alice = UserId::from("alice");
    let fp_from_bob = b.d().fingerprint(&group, &alice).unwrap();
    assert_eq!(fp_from_bob, a1.d().fingerprint(&group, &alice).unwrap());
    assert_eq!(b.d().members(&group).unwrap().len(), 3);

    // Exchange both ways, with a structured payload.
    exchange(
        &mut log,
        &group,
        &mut a1,
        &mut [&mut a2, &mut b],
        "hello from alice's phone",
    );
    exchange(&mut log, &group, &mut b, &mut [&mut a1, &mut a2], "hi alice, bob here");
    let payload = Payload::new(
        Content::Text {
            text: "typed on the laptop".into(),
            reply_to: None,
        },
        1_700_000_000_000,
    );
    let ct = a2.d().send(&group, &payload).unwrap();
    log.submit(a2.id(), &ct).unwrap();
    log.deliver(&mut a1);
    let got = log.deliver(&mut b);
    match &got[..] {
        [Processed::Application { plaintext, sender, .. }] => {
            assert_eq!(Payload::decode(plaintext).unwrap(), payload);
            assert_eq!(sender.user, alice);
            assert_eq!(sender.device, a2.id());
        }
        other => panic!("{other:?}"),
    }
    restart_all(&mut [&mut a1, &mut a2, &mut b]);

    // Self-update by Bob, restarted between sending and the relay's answer.
    let commit = b.d().self_update(&group).unwrap();
    log.submit(b.id(), &commit.message).unwrap();
    b.restart();
    assert!(b.d().has_pending_commit(&group).unwrap());
    b.d().merge_pending_commit(&group).unwrap();
    for c in [&mut a1, &mut a2] {
        assert!(matches!(&log.deliver(c)[..], [Processed::Commit { epoch: 2, .. }]));
    }
    restart_all(&mut [&mut a1, &mut a2, &mut b]);
    exchange(&mut log, &group, &mut b, &mut [&mut a1, &mut a2], "after the update");

    // Two members commit concurrently at epoch 2: the relay takes the first.
    let from_a2 = a2.d().self_update(&group).unwrap();
    let from_b = b.d().self_update(&group).unwrap();
    assert_eq!((from_a2.epoch, from_b.epoch), (2, 2));
    log.submit(a2.id(), &from_a2.message).unwrap();
    a2.d().merge_pending_commit(&group).unwrap();
    assert_eq!(
        log.submit(b.id(), &from_b.message),
        Err(3),
        "second commit of epoch 2 is stale"
    );
    // Bob restarts (the pending commit is on disk), discards it, catches up, retries.
    b.restart();
    assert_eq!(b.d().encrypt(&group, b"x"), Err(Error::PendingCommit));
    b.d().discard_pending_commit(&group).unwrap();
    assert!(matches!(&log.deliver(&mut b)[..], [Processed::Commit { epoch: 3, .. }]));
    // The refused commit, if it were delivered anyway, is recognised as stale.
    assert!(matches!(
        &log.deliver(&mut a1)[..],
        [Processed::Commit { epoch: 3, .. }]
    ));
    assert_eq!(
        a1.d().process(&from_b.message),
        Err(Error::StaleEpoch { message: 2, group: 3 })
    );
    let retry = b.d().self_update(&group).unwrap();
    assert_eq!(retry.epoch, 3);
    log.submit(b.id(), &retry.message).unwrap();
    b.d().merge_pending_commit(&group).unwrap();
    log.deliver(&mut a1);
    log.deliver(&mut a2);
    restart_all(&mut [&mut a1, &mut a2, &mut b]);
    assert_eq!(epochs(&group, &mut [&mut a1, &mut a2, &mut b]), vec![4, 4, 4]);
    exchange(&mut log, &group, &mut a1, &mut [&mut a2, &mut b], "still in sync");

    // A message sent at epoch 4 but sequenced after a commit to 5 still decrypts.
    let late = a1.d().encrypt(&group, b"sent just before the commit").unwrap();
    let commit = b.d().self_update(&group).unwrap();
    log.submit(b.id(), &commit.message).unwrap();
    b.d().merge_pending_commit(&group).unwrap();
    log.submit(a1.id(), &late).unwrap();
    let got = log.deliver(&mut a2);
    assert!(matches!(got[0], Processed::Commit { epoch: 5, .. }));
    assert!(matches!(got[1], Processed::Application { epoch: 4, .. }));
    assert_eq!(texts(&got), vec![b"sent just before the commit".to_vec()]);
    let got = log.deliver(&mut b);
    assert_eq!(texts(&got), vec![b"sent just before the commit".to_vec()]);
    log.deliver(&mut a1);
    restart_all(&mut [&mut a1, &mut a2, &mut b]);

    // Alice's phone removes Bob.
    let commit = a1.d().remove_members(&group, &[b.id()]).unwrap();
    assert_eq!(
        commit.removed.iter().map(|c| c.device).collect::<Vec<_>>(),
        vec![b.id()]
    );
    log.submit(a1.id(), &commit.message).unwrap();
    a1.d().merge_pending_commit(&group).unwrap();
    assert!(matches!(&log.deliver(&mut a2)[..], [Processed::Commit { removed, .. }] if removed.len() == 1));
    let secret = a1.d().encrypt(&group, b"bob must not read this").unwrap();
    // Bob, before processing his removal, cannot read the new epoch.
    assert!(matches!(b.d().process(&secret), Err(Error::FutureEpoch { .. })));
    assert!(matches!(&log.deliver(&mut b)[..], [Processed::Removed { .. }]));
    b.restart();
    assert_eq!(b.d().process(&secret), Err(Error::UnknownGroup(group.clone())));
    assert_eq!(b.d().encrypt(&group, b"x"), Err(Error::UnknownGroup(group.clone())));
    assert!(b.d().groups().unwrap().is_empty());
    log.submit(a1.id(), &secret).unwrap();
    assert_eq!(texts(&log.deliver(&mut a2)), vec![b"bob must not read this".to_vec()]);
    restart_all(&mut [&mut a1, &mut a2]);
    assert_eq!(a1.d().members(&group).unwrap().len(), 2);

    // The laptop leaves: a proposal, committed by the phone.
    let proposal = a2.d().leave(&group).unwrap();
    assert_eq!(inspect(&proposal).unwrap().content_type, ContentType::Proposal);
    log.submit(a2.id(), &proposal).unwrap();
    let got = log.deliver(&mut a1);
    assert!(matches!(&got[..], [Processed::Proposal { removes, .. }] if removes[0].device == a2.id()));
    a1.restart();
    let commit = a1.d().self_update(&group).unwrap();
    assert_eq!(commit.removed.len(), 1);
    log.submit(a1.id(), &commit.message).unwrap();
    a1.d().merge_pending_commit(&group).unwrap();
    assert!(matches!(&log.deliver(&mut a2)[..], [Processed::Removed { .. }]));
    assert_eq!(a1.d().members(&group).unwrap().len(), 1);
}

#[test]
fn corrupted_or_truncated_messages_fail_and_leave_the_group_usable() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b, mut log, group) = alice_and_bob(&dir);

    let ct = a.d().encrypt(&group, b"intact").unwrap();
    for len in [0, 3, 10, ct.len() / 2, ct.len() - 1] {
        assert!(b.d().process(&ct[..len]).is_err(), "truncated to {len}");
    }
    for at in [ct.len() - 1, ct.len() - 20, ct.len() / 2, 20] {
        let mut bad = ct.clone();
        bad[at] ^= 0x40;
        assert!(b.d().process(&bad).is_err(), "flipped byte {at}");
    }
    let mut long = ct.clone();
    long.push(0);
    assert!(b.d().process(&long).is_err());
    b.restart();
    match b.d().process(&ct).unwrap() {
        Processed::Application { plaintext, .. } => assert_eq!(plaintext, b"intact"),
        other => panic!("{other:?}"),
    }

    // A damaged commit is refused without moving the epoch; the real one applies.
    let commit = a.d().self_update(&group).unwrap();
    let mut bad = commit.message.clone();
    let last = bad.len() - 5;
    bad[last] ^= 1;
    assert!(b.d().process(&bad).is_err());
    assert_eq!(b.d().epoch(&group).unwrap(), 1);
    b.restart();
    assert_eq!(b.d().epoch(&group).unwrap(), 1);
    log.submit(a.id(), &commit.message).unwrap();
    a.d().merge_pending_commit(&group).unwrap();
    assert!(matches!(&log.deliver(&mut b)[..], [Processed::Commit { epoch: 2, .. }]));
    let ct = b.d().encrypt(&group, b"after the damage").unwrap();
    match a.d().process(&ct).unwrap() {
        Processed::Application { plaintext, .. } => assert_eq!(plaintext, b"after the damage"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn messages_older_than_the_past_epoch_window_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b, mut log, group) = alice_and_bob(&dir);

    // Written at epochs 1, 2, 3 and 4, read by Bob at epoch 4.
    let mut old = Vec::new();
    for _ in 0..3 {
        old.push(b.d().encrypt(&group, b"old").unwrap());
        let c = a.d().self_update(&group).unwrap();
        log.submit(a.id(), &c.message).unwrap();
        a.d().merge_pending_commit(&group).unwrap();
        log.deliver(&mut b);
    }
    assert_eq!(a.d().epoch(&group).unwrap(), 4);
    // Epoch 1 is three epochs back: beyond the default window of 2.
    assert!(a.d().process(&old[0]).is_err());
    // Epochs 2 and 3 are within it.
    assert!(matches!(
        a.d().process(&old[1]),
        Ok(Processed::Application { epoch: 2, .. })
    ));
    assert!(matches!(
        a.d().process(&old[2]),
        Ok(Processed::Application { epoch: 3, .. })
    ));
}

#[test]
fn held_writes_are_lost_together_with_a_crash_so_the_message_processes_again() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b, _log, group) = alice_and_bob(&dir);
    let side = |v: &[u8]| hush_crypto::SideWrites {
        table: "app_v1",
        ops: vec![(b"last".to_vec(), Some(v.to_vec()))],
    };

    // Processed, then a crash before the caller recorded the result: nothing
    // of the processing is durable, and after a restart the message processes
    // again (its key was not used up on disk).
    let ct = a.d().encrypt(&group, b"first").unwrap();
    b.d().hold_commits();
    assert!(matches!(b.d().process(&ct).unwrap(), Processed::Application { .. }));
    b.restart();
    b.d().hold_commits();
    match b.d().process(&ct).unwrap() {
        Processed::Application { plaintext, .. } => assert_eq!(plaintext, b"first"),
        other => panic!("{other:?}"),
    }
    // Recorded together: now the key is used up, and the side record is there.
    b.d().commit_held(&side(b"first")).unwrap();
    b.restart();
    assert!(b.d().process(&ct).is_err(), "a message key is used once");

    // Without holding, a processed message's key is gone at once: the window
    // holding closes.
    let ct2 = a.d().encrypt(&group, b"second").unwrap();
    b.d().process(&ct2).unwrap();
    b.restart();
    assert!(b.d().process(&ct2).is_err());

    // Discarding drops the held writes and leaves the group usable.
    let ct3 = a.d().encrypt(&group, b"third").unwrap();
    b.d().hold_commits();
    b.d().process(&ct3).unwrap();
    b.d().discard_held();
    match b.d().process(&ct3).unwrap() {
        Processed::Application { plaintext, .. } => assert_eq!(plaintext, b"third"),
        other => panic!("{other:?}"),
    }
}

/// Typing signals are sealed outside the message ratchet: any number of them
/// overtaking a backlog leaves every message of the backlog readable; a
/// commit passed off as a signal is refused and changes nothing; a signal is
/// bound to its sender and epoch.
#[test]
fn ephemeral_signals_never_touch_the_ratchet_or_the_group_state() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b, mut log, group) = alice_and_bob(&dir);
    // A backlog of 20 messages Bob has not read yet.
    let backlog: Vec<Vec<u8>> = (0..20)
        .map(|n| a.d().encrypt(&group, format!("m{n}").as_bytes()).unwrap())
        .collect();
    // 50 typing signals overtake it (MLS tolerates only a few skipped
    // generations: through the ratchet, these would lose the backlog).
    for n in 0..50 {
        let sealed = a.d().seal_ephemeral(&group, format!("typing {n}").as_bytes()).unwrap();
        let (from, plain) = b.d().open_ephemeral(&group, a.id(), &sealed).unwrap();
        assert_eq!((from.device, plain), (a.id(), format!("typing {n}").into_bytes()));
    }
    for (n, ct) in backlog.iter().enumerate() {
        match b.d().process(ct).unwrap() {
            Processed::Application { plaintext, .. } => assert_eq!(plaintext, format!("m{n}").into_bytes()),
            other => panic!("{other:?}"),
        }
    }

    // Another sender named by the relay: refused (the signature is Alice's).
    let sealed = a.d().seal_ephemeral(&group, b"hi").unwrap();
    let bob = b.id();
    assert!(matches!(
        b.d().open_ephemeral(&group, bob, &sealed),
        Err(Error::Ephemeral(_))
    ));
    // A flipped byte: refused.
    let mut bent = sealed.clone();
    *bent.last_mut().unwrap() ^= 1;
    assert!(matches!(
        b.d().open_ephemeral(&group, a.id(), &bent),
        Err(Error::Ephemeral(_))
    ));

    // A commit sent as a typing signal: refused, and Bob's group is unchanged.
    let commit = a.d().self_update(&group).unwrap();
    let before = (b.d().epoch(&group).unwrap(), b.d().members(&group).unwrap().len());
    assert!(matches!(
        b.d().open_ephemeral(&group, a.id(), &commit.message),
        Err(Error::Ephemeral(_))
    ));
    assert_eq!(
        before,
        (b.d().epoch(&group).unwrap(), b.d().members(&group).unwrap().len())
    );

    // After the commit, a signal sealed at the old epoch no longer opens.
    log.submit(a.id(), &commit.message).unwrap();
    a.d().merge_pending_commit(&group).unwrap();
    log.deliver(&mut b);
    assert!(matches!(
        b.d().open_ephemeral(&group, a.id(), &sealed),
        Err(Error::Ephemeral(_))
    ));
    let fresh = a.d().seal_ephemeral(&group, b"new epoch").unwrap();
    assert_eq!(b.d().open_ephemeral(&group, a.id(), &fresh).unwrap().1, b"new epoch");
}
