//! hush devices in a group that mls-rs created and changes: they join from
//! an mls-rs Welcome, process mls-rs commits and proposals, and mls-rs
//! commits theirs (see the crate docs).
#![allow(clippy::unwrap_used)]

mod common;

use common::{
    RsMember, hush_commit, hush_device, hush_key_package, hush_reads, mls_rs_member, mls_rs_member_sending_tree_beside,
    rs_commit, rs_leaf, rs_process, same_exporter, same_roster, text,
};
use hush_crypto::{Device, Error, Processed};
use hush_protocol::{DeviceId, GroupId, roster};
use mls_rs::client_builder::MlsConfig;
use mls_rs::group::{CommitEffect, ReceivedMessage};
use mls_rs::{Group, MlsMessage};

/// mls-rs member `rs` creates `group` and adds the hush device `hush` with
/// its key package; `hush` joins from mls-rs's Welcome alone. Both are at
/// epoch 1.
fn hush_joins_mls_rs_group<C: MlsConfig>(rs: &RsMember<C>, hush: &mut Device, group: &GroupId) -> Group<C> {
    let mut rs_group = rs
        .client
        .create_group_with_id(group.0.clone(), Default::default(), Default::default(), None)
        .unwrap();
    let kp = hush_key_package(hush);
    let out = rs_commit(&mut rs_group, &[&kp], &[], (&[hush.device_id()], &[]));
    let [welcome] = out.welcome_messages() else {
        panic!("one Welcome expected, got {}", out.welcome_messages().len());
    };
    let joined = hush.join(&welcome.to_bytes().unwrap(), None).unwrap();
    assert_eq!(&joined, group);
    rs_group
}

/// An application message from mls-rs, as bytes.
fn rs_says<C: MlsConfig>(group: &mut Group<C>, plaintext: &[u8]) -> Vec<u8> {
    group
        .encrypt_application_message(plaintext, vec![])
        .unwrap()
        .to_bytes()
        .unwrap()
}

/// `hush` and `rs` send each other a message in the current epoch.
fn both_talk<C: MlsConfig>(hush: &mut Device, group: &GroupId, rs: &mut Group<C>, rs_device: DeviceId) {
    let epoch = rs.current_epoch();
    let ct = hush
        .encrypt(group, format!("hush in epoch {epoch}").as_bytes())
        .unwrap();
    assert_eq!(text(rs_process(rs, &ct)), format!("hush in epoch {epoch}").as_bytes());
    let ct = rs_says(rs, format!("mls-rs in epoch {epoch}").as_bytes());
    let (sender, plaintext) = hush_reads(hush, &ct);
    assert_eq!(sender.device, rs_device);
    assert_eq!(plaintext, format!("mls-rs in epoch {epoch}").as_bytes());
}

/// 1. mls-rs creates the group and adds a hush device with its KeyPackage;
///    the device joins from mls-rs's Welcome (the ratchet tree in its
///    `ratchet_tree` extension) and both talk.
#[test]
fn hush_joins_from_an_mls_rs_welcome_and_both_talk() {
    let dave = mls_rs_member("dave");
    let mut alice = hush_device("alice");
    let group = GroupId(b"made by mls-rs".to_vec());
    let mut dave_group = hush_joins_mls_rs_group(&dave, &mut alice, &group);

    assert_eq!(alice.epoch(&group).unwrap(), 1);
    same_roster(&mut alice, &group, &dave_group);
    same_exporter(&mut alice, &group, &dave_group, &dave);
    both_talk(&mut alice, &group, &mut dave_group, dave.device());
    // A second message each way: the ratchets advance the same way.
    both_talk(&mut alice, &group, &mut dave_group, dave.device());
}

/// 1b. The same with the ratchet tree beside the Welcome (mls-rs's export,
///     hush's `ratchet_tree` argument) instead of inside it.
#[test]
fn hush_joins_with_the_ratchet_tree_beside_an_mls_rs_welcome() {
    let dave = mls_rs_member_sending_tree_beside("dave");
    let mut alice = hush_device("alice");
    let group = GroupId(b"tree beside".to_vec());
    let mut dave_group = dave
        .client
        .create_group_with_id(group.0.clone(), Default::default(), Default::default(), None)
        .unwrap();
    let kp = hush_key_package(&mut alice);
    let out = rs_commit(&mut dave_group, &[&kp], &[], (&[alice.device_id()], &[]));
    let welcome = out.welcome_messages()[0].to_bytes().unwrap();
    // Without the tree there is nothing to join from.
    assert!(alice.join(&welcome, None).is_err());
    assert!(alice.groups().unwrap().is_empty());
    let tree = dave_group.export_tree().to_bytes().unwrap();
    assert_eq!(alice.join(&welcome, Some(&tree)).unwrap(), group);
    same_roster(&mut alice, &group, &dave_group);
    same_exporter(&mut alice, &group, &dave_group, &dave);
    both_talk(&mut alice, &group, &mut dave_group, dave.device());
}

/// The four of the commit and proposal tests: Dave and Erin (mls-rs), Alice
/// and Bob (hush), and the two mls-rs members' groups.
type Four<C> = (RsMember<C>, RsMember<C>, Device, Device, Group<C>, Group<C>);

/// Dave creates `group` with Alice, then adds Bob (hush, with the key
/// package `bob_kp` makes) and Erin (mls-rs) in one commit, with one Welcome
/// for both. Alice processes the commit; everyone is at epoch 2 with the same
/// roster and exporter.
fn four_in_mls_rs_group(group: &GroupId, bob_kp: impl FnOnce(&mut Device) -> Vec<u8>) -> Four<impl MlsConfig> {
    let mut bob = hush_device("bob");
    let bob_kp = bob_kp(&mut bob);
    let dave = mls_rs_member("dave");
    let erin = mls_rs_member("erin");
    let mut alice = hush_device("alice");
    let mut dave_group = hush_joins_mls_rs_group(&dave, &mut alice, group);
    let out = rs_commit(
        &mut dave_group,
        &[&bob_kp, &erin.key_package()],
        &[],
        (&[bob.device_id(), erin.device()], &[]),
    );
    let (sender, epoch, added, removed) = hush_commit(&mut alice, &out.commit_message().to_bytes().unwrap());
    assert_eq!((sender, epoch), (dave.device(), 2));
    assert_eq!((added, removed), (vec![bob.device_id(), erin.device()], vec![]));
    let welcome = out.welcome_messages()[0].to_bytes().unwrap();
    assert_eq!(&bob.join(&welcome, None).unwrap(), group);
    let (erin_group, _) = erin
        .client
        .join_group(None, &MlsMessage::from_bytes(&welcome).unwrap(), None)
        .unwrap();
    for hush in [&mut alice, &mut bob] {
        same_roster(hush, group, &dave_group);
        same_exporter(hush, group, &dave_group, &dave);
        same_exporter(hush, group, &erin_group, &erin);
    }
    (dave, erin, alice, bob, dave_group, erin_group)
}

/// 2. hush processes mls-rs commits: one adding a hush device and an mls-rs
///    member at once (one Welcome for both), a removal, an empty commit
///    (update path only), and one removing a hush device. After each, hush
///    is at mls-rs's epoch with mls-rs's roster and exporter, and messages
///    go both ways.
#[test]
fn hush_processes_mls_rs_commits() {
    let group = GroupId(b"changed by mls-rs".to_vec());
    // Bob's key package is a last-resort one: what the relay hands out when a
    // device's one-time ones are used up.
    let (dave, erin, mut alice, mut bob, mut dave_group, mut erin_group) =
        four_in_mls_rs_group(&group, |bob| bob.generate_key_packages(0, 1).unwrap().remove(0));
    both_talk(&mut bob, &group, &mut erin_group, erin.device());

    // hush refuses a commit whose roster binding hides what it changes (the
    // relay would apply the binding's roster, not MLS's): mls-rs removing
    // Erin but claiming to change nothing.
    let erin_leaf = rs_leaf(&dave_group, erin.device());
    let hidden = dave_group
        .commit_builder()
        .remove_member(erin_leaf)
        .unwrap()
        .authenticated_data(roster::binding(&[], &[]))
        .build()
        .unwrap();
    let refused = alice.process(&hidden.commit_message().to_bytes().unwrap());
    assert!(matches!(refused, Err(Error::RosterBinding(_))), "{refused:?}");
    assert_eq!(alice.epoch(&group).unwrap(), 2);
    dave_group.clear_pending_commit();

    // The same removal, honestly bound. Erin spoke just before it: her
    // message reaches the hush devices after the commit, from the epoch
    // before, and still decrypts.
    let last_words = rs_says(&mut erin_group, b"sent in epoch 2");
    let out = rs_commit(&mut dave_group, &[], &[erin_leaf], (&[], &[erin.device()]));
    let commit = out.commit_message().to_bytes().unwrap();
    for hush in [&mut alice, &mut bob] {
        assert_eq!(
            hush_commit(hush, &commit),
            (dave.device(), 3, vec![], vec![erin.device()])
        );
        same_roster(hush, &group, &dave_group);
        let late = hush.process(&last_words).unwrap();
        assert!(
            matches!(&late, Processed::Application { epoch: 2, plaintext, .. } if plaintext == b"sent in epoch 2"),
            "{late:?}"
        );
    }
    let processed = rs_process(&mut erin_group, &commit);
    assert!(
        matches!(&processed, ReceivedMessage::Commit(c) if matches!(c.effect, CommitEffect::Removed { .. })),
        "{processed:?}"
    );

    // An empty commit: no proposals, only Dave's new path secrets.
    let out = rs_commit(&mut dave_group, &[], &[], (&[], &[]));
    let commit = out.commit_message().to_bytes().unwrap();
    for hush in [&mut alice, &mut bob] {
        assert_eq!(hush_commit(hush, &commit), (dave.device(), 4, vec![], vec![]));
        same_roster(hush, &group, &dave_group);
        same_exporter(hush, &group, &dave_group, &dave);
        both_talk(hush, &group, &mut dave_group, dave.device());
    }

    // Dave removes Bob: Bob's state for the group goes, Alice goes on.
    let bob_leaf = rs_leaf(&dave_group, bob.device_id());
    let out = rs_commit(&mut dave_group, &[], &[bob_leaf], (&[], &[bob.device_id()]));
    let commit = out.commit_message().to_bytes().unwrap();
    match bob.process(&commit).unwrap() {
        Processed::Removed { by, .. } => assert_eq!(by.device, dave.device()),
        other => panic!("expected Removed, got {other:?}"),
    }
    assert!(bob.groups().unwrap().is_empty());
    assert_eq!(
        hush_commit(&mut alice, &commit),
        (dave.device(), 5, vec![], vec![bob.device_id()])
    );
    same_roster(&mut alice, &group, &dave_group);
    same_exporter(&mut alice, &group, &dave_group, &dave);
    both_talk(&mut alice, &group, &mut dave_group, dave.device());
}

/// Everyone in `group` but `sender` processes `proposal`; hush devices see
/// who proposed it and whom it would remove.
fn all_get_proposal<C: MlsConfig>(
    hush: &mut [&mut Device],
    rs: &mut [&mut Group<C>],
    proposal: &[u8],
    (sender, removes): (DeviceId, &[DeviceId]),
) {
    for d in hush {
        match d.process(proposal).unwrap() {
            Processed::Proposal {
                sender: s, removes: r, ..
            } => {
                assert_eq!(s.device, sender);
                assert_eq!(r.iter().map(|c| c.device).collect::<Vec<_>>(), removes);
            }
            other => panic!("expected a proposal, got {other:?}"),
        }
    }
    for g in rs {
        let processed = rs_process(g, proposal);
        assert!(matches!(processed, ReceivedMessage::Proposal(_)), "{processed:?}");
    }
}

/// The epoch of a commit mls-rs processed.
fn rs_epoch(processed: ReceivedMessage) -> u64 {
    match processed {
        ReceivedMessage::Commit(c) => match c.effect {
            CommitEffect::NewEpoch(e) | CommitEffect::Removed { new_epoch: e, .. } => e.epoch,
            other => panic!("unexpected commit effect {other:?}"),
        },
        other => panic!("expected a commit, got {other:?}"),
    }
}

/// 3. Proposals sent by one implementation and committed by reference by
///    the other, or by a third member: mls-rs's Update and Remove proposals
///    committed by hush, an mls-rs Update committed by another mls-rs member
///    and processed by hush, a hush device's request to leave committed by
///    mls-rs, and an mls-rs Add committed by hush (whose Welcome the new
///    device joins from). Both sides converge on epoch, roster and exporter.
#[test]
fn proposals_cross_between_hush_and_mls_rs() {
    let group = GroupId(b"proposals".to_vec());
    let (dave, erin, mut alice, mut bob, mut dave_group, mut erin_group) =
        four_in_mls_rs_group(&group, hush_key_package);

    // Erin (mls-rs) proposes to update her leaf; Alice (hush) commits it.
    let proposal = erin_group.propose_update(vec![]).unwrap().to_bytes().unwrap();
    all_get_proposal(
        &mut [&mut alice, &mut bob],
        &mut [&mut dave_group],
        &proposal,
        (erin.device(), &[]),
    );
    let commit = alice.self_update(&group).unwrap();
    assert_eq!((commit.added.len(), commit.removed.len()), (0, 0));
    alice.merge_pending_commit(&group).unwrap();
    assert_eq!(hush_commit(&mut bob, &commit.message).1, 3);
    for g in [&mut dave_group, &mut erin_group] {
        let processed = rs_process(g, &commit.message);
        let ReceivedMessage::Commit(c) = &processed else {
            panic!("expected a commit, got {processed:?}");
        };
        // The Update went in by reference.
        let CommitEffect::NewEpoch(e) = &c.effect else {
            panic!("{c:?}")
        };
        assert_eq!(e.epoch, 3);
        assert_eq!(e.applied_proposals.len(), 1, "{c:?}");
    }
    for hush in [&mut alice, &mut bob] {
        same_roster(hush, &group, &erin_group);
        same_exporter(hush, &group, &erin_group, &erin);
    }
    both_talk(&mut alice, &group, &mut erin_group, erin.device());

    // Dave proposes an update; Erin (mls-rs) commits it by reference, and the
    // hush devices, which stored the proposal, resolve the reference.
    let proposal = dave_group.propose_update(vec![]).unwrap().to_bytes().unwrap();
    all_get_proposal(
        &mut [&mut alice, &mut bob],
        &mut [&mut erin_group],
        &proposal,
        (dave.device(), &[]),
    );
    let out = rs_commit(&mut erin_group, &[], &[], (&[], &[]));
    let commit = out.commit_message().to_bytes().unwrap();
    assert_eq!(rs_epoch(rs_process(&mut dave_group, &commit)), 4);
    for hush in [&mut alice, &mut bob] {
        assert_eq!(hush_commit(hush, &commit), (erin.device(), 4, vec![], vec![]));
        same_roster(hush, &group, &dave_group);
        same_exporter(hush, &group, &dave_group, &dave);
    }

    // Dave (mls-rs) proposes to remove Erin; Alice (hush) commits it.
    let erin_leaf = rs_leaf(&dave_group, erin.device());
    let proposal = dave_group
        .propose_remove(erin_leaf, vec![])
        .unwrap()
        .to_bytes()
        .unwrap();
    all_get_proposal(
        &mut [&mut alice, &mut bob],
        &mut [&mut erin_group],
        &proposal,
        (dave.device(), &[erin.device()]),
    );
    let commit = alice.self_update(&group).unwrap();
    assert_eq!(
        commit.removed.iter().map(|c| c.device).collect::<Vec<_>>(),
        [erin.device()]
    );
    alice.merge_pending_commit(&group).unwrap();
    assert_eq!(
        hush_commit(&mut bob, &commit.message),
        (alice.device_id(), 5, vec![], vec![erin.device()])
    );
    assert_eq!(rs_epoch(rs_process(&mut dave_group, &commit.message)), 5);
    let processed = rs_process(&mut erin_group, &commit.message);
    assert!(
        matches!(&processed, ReceivedMessage::Commit(c) if matches!(c.effect, CommitEffect::Removed { .. })),
        "{processed:?}"
    );
    for hush in [&mut alice, &mut bob] {
        same_roster(hush, &group, &dave_group);
        same_exporter(hush, &group, &dave_group, &dave);
    }

    // Bob (hush) asks to leave; Dave (mls-rs) commits his removal.
    let proposal = bob.leave(&group).unwrap();
    all_get_proposal(
        &mut [&mut alice],
        &mut [&mut dave_group],
        &proposal,
        (bob.device_id(), &[bob.device_id()]),
    );
    let out = rs_commit(&mut dave_group, &[], &[], (&[], &[bob.device_id()]));
    let commit = out.commit_message().to_bytes().unwrap();
    assert!(matches!(bob.process(&commit).unwrap(), Processed::Removed { .. }));
    assert_eq!(
        hush_commit(&mut alice, &commit),
        (dave.device(), 6, vec![], vec![bob.device_id()])
    );
    same_roster(&mut alice, &group, &dave_group);
    same_exporter(&mut alice, &group, &dave_group, &dave);

    // Dave (mls-rs) proposes to add Carol (hush); Alice (hush) commits it,
    // and Carol joins from Alice's Welcome.
    let mut carol = hush_device("carol");
    let carol_kp = MlsMessage::from_bytes(&hush_key_package(&mut carol)).unwrap();
    let proposal = dave_group.propose_add(carol_kp, vec![]).unwrap().to_bytes().unwrap();
    let processed = alice.process(&proposal).unwrap();
    assert!(
        matches!(&processed, Processed::Proposal { sender, removes, .. } if sender.device == dave.device() && removes.is_empty()),
        "{processed:?}"
    );
    let commit = alice.self_update(&group).unwrap();
    assert_eq!(
        commit.added.iter().map(|c| c.device).collect::<Vec<_>>(),
        [carol.device_id()]
    );
    alice.merge_pending_commit(&group).unwrap();
    assert_eq!(rs_epoch(rs_process(&mut dave_group, &commit.message)), 7);
    assert_eq!(carol.join(commit.welcome.as_deref().unwrap(), None).unwrap(), group);
    for hush in [&mut alice, &mut carol] {
        same_roster(hush, &group, &dave_group);
        same_exporter(hush, &group, &dave_group, &dave);
        both_talk(hush, &group, &mut dave_group, dave.device());
    }
}
