//! An mls-rs member joins a group created by hush-crypto (see the crate docs).
#![allow(clippy::unwrap_used)]

mod common;

use common::{hush_device, hush_key_package, hush_reads, mls_rs_member, rs_process, same_exporter, same_roster, text};
use hush_protocol::{GroupId, UserId};
use mls_rs::MlsMessage;
use mls_rs::group::ReceivedMessage;

#[test]
fn mls_rs_joins_a_hush_group_and_both_talk() {
    let mut alice = hush_device("alice");
    let group = GroupId(b"interop".to_vec());
    alice.create_group(&group).unwrap();

    // Carol (mls-rs) publishes a KeyPackage; hush adds her.
    let carol = mls_rs_member("carol");
    let add = alice.add_members(&group, &[&carol.key_package()]).unwrap();
    assert_eq!(add.added.iter().map(|c| c.device).collect::<Vec<_>>(), [carol.device()]);
    alice.merge_pending_commit(&group).unwrap();

    // She joins from the Welcome alone (the ratchet tree is inside it).
    let welcome = MlsMessage::from_bytes(add.welcome.as_deref().unwrap()).unwrap();
    let (mut carol_group, _) = carol.client.join_group(None, &welcome, None).unwrap();
    assert_eq!(carol_group.group_id(), group.0.as_slice());
    assert_eq!(carol_group.current_epoch(), 1);
    same_roster(&mut alice, &group, &carol_group);
    same_exporter(&mut alice, &group, &carol_group, &carol);

    // hush to mls-rs.
    let ct = alice.encrypt(&group, b"hello from hush").unwrap();
    assert_eq!(text(rs_process(&mut carol_group, &ct)), b"hello from hush");

    // mls-rs to hush: a PrivateMessage hush (and the relay's reader) accepts.
    let reply = carol_group
        .encrypt_application_message(b"hello from mls-rs", vec![])
        .unwrap()
        .to_bytes()
        .unwrap();
    let header = hush_crypto::inspect::inspect(&reply).unwrap();
    assert_eq!((header.group_id.clone(), header.epoch), (group.clone(), 1));
    let (sender, plaintext) = hush_reads(&mut alice, &reply);
    assert_eq!(plaintext, b"hello from mls-rs");
    assert_eq!((sender.user, sender.device), (UserId::from("carol"), carol.device()));

    // A later hush commit (a second hush device joins) is processed by mls-rs,
    // and all three talk in the new epoch.
    let mut bob = hush_device("bob");
    let add_bob = alice.add_members(&group, &[&hush_key_package(&mut bob)]).unwrap();
    alice.merge_pending_commit(&group).unwrap();
    bob.join(add_bob.welcome.as_deref().unwrap(), None).unwrap();
    let processed = rs_process(&mut carol_group, &add_bob.message);
    assert!(matches!(processed, ReceivedMessage::Commit(_)), "{processed:?}");
    assert_eq!(carol_group.current_epoch(), 2);
    same_roster(&mut alice, &group, &carol_group);

    let update = alice.self_update(&group).unwrap();
    alice.merge_pending_commit(&group).unwrap();
    bob.process(&update.message).unwrap();
    rs_process(&mut carol_group, &update.message);
    assert_eq!(carol_group.current_epoch(), 3);
    same_roster(&mut bob, &group, &carol_group);
    same_exporter(&mut bob, &group, &carol_group, &carol);

    let ct = alice.encrypt(&group, b"epoch 3").unwrap();
    assert_eq!(text(rs_process(&mut carol_group, &ct)), b"epoch 3");
    let from_carol = carol_group
        .encrypt_application_message(b"carol in epoch 3", vec![])
        .unwrap()
        .to_bytes()
        .unwrap();
    for d in [&mut alice, &mut bob] {
        assert_eq!(hush_reads(d, &from_carol).1, b"carol in epoch 3");
    }
}
