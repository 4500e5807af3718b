//! A member sends a commit every other member rejects (here: garbage in a
//! valid MLS frame, which the relay cannot tell from a real commit). The
//! relay's epoch moved past the group's, so without a way back no honest
//! member could change the group again. The creator's client (the group's
//! admin) has the relay void it, and the group goes on.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::*;
use hush_crypto::inspect::framing;
use hush_protocol::ErrorCode;
use hush_protocol::frame::{MessageKind, Reply, Request, Send};
use hush_sdk::Event;
use hush_sdk::wire::WireClient;

/// A device of "mallory" that only speaks the wire protocol, with real key
/// packages at the relay (so others can add it).
async fn mallory(relay: &TestRelay) -> WireClient {
    let (_key, wire, mut device) = wire_device(relay, "mallory").await;
    let mut packages: Vec<Bytes> = device
        .generate_key_packages(2, 1)
        .unwrap()
        .into_iter()
        .map(Bytes::from)
        .collect();
    let last = packages.pop();
    wire.request(Request::UploadKeyPackages {
        one_time: packages,
        last_resort: last,
    })
    .await
    .unwrap();
    wire
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_the_group_rejects_is_voided_and_the_group_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&tmp.path().join("relay")).await;
    let alice = relay.ready_client(&tmp.path().join("alice"), "alice").await;
    let bob = relay.ready_client(&tmp.path().join("bob"), "bob").await;
    let _carol = relay.ready_client(&tmp.path().join("carol"), "carol").await;
    let m = mallory(&relay).await;
    let (mut a_ev, mut b_ev) = (alice.events(), bob.events());
    let group = alice.create_group("project", &["bob", "mallory"]).await.unwrap();
    wait_for(&mut b_ev, |e| {
        matches!(e, Event::Joined { group: g } if *g == group).then_some(())
    })
    .await;

    // Mallory is no admin: the relay refuses her roster changes...
    let epoch = match m.request(Request::GetGroup { group: group.clone() }).await.unwrap() {
        Reply::Group(info) => info.epoch,
        other => panic!("{other:?}"),
    };
    let bob_device = bob.device_id();
    let kick = m
        .request(Request::Send(Send {
            group: group.clone(),
            client_msg_id: 1,
            kind: MessageKind::Commit,
            epoch,
            payload: framing::commit(&group, epoch, &[], &[bob_device], b"kick bob").into(),
            roster: Some(hush_protocol::frame::RosterChange {
                add: vec![],
                remove: vec![bob_device],
                welcome: None,
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(kick.code(), Some(ErrorCode::Forbidden));
    // ...but any member may update its keys: this "update" is garbage.
    let Reply::Sent { seq, .. } = m
        .request(Request::Send(Send {
            group: group.clone(),
            client_msg_id: 2,
            kind: MessageKind::Commit,
            epoch,
            payload: framing::commit(&group, epoch, &[], &[], b"not a commit").into(),
            roster: None,
        }))
        .await
        .unwrap()
    else {
        panic!("not stored")
    };
    for events in [&mut a_ev, &mut b_ev] {
        wait_for(events, |e| {
            matches!(e, Event::CommitRejected { group: g, seq: s, .. } if *g == group && *s == seq).then_some(())
        })
        .await;
    }

    // Alice's client voided it: the group takes commits again. Adding carol
    // would otherwise fail (StaleEpoch, every retry).
    alice.add_user(&group, "carol").await.unwrap();
    let members = alice.members(&group).await.unwrap();
    assert!(members.iter().any(|m| m.user.0 == "carol"));
    let id = bob.send_text(&group, "still here").await.unwrap();
    wait_for(&mut a_ev, |e| {
        matches!(e, Event::Message(msg) if msg.id == id).then_some(())
    })
    .await;
}
