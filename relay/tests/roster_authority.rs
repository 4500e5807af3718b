//! Who may change a group's roster, and the way back from a commit the group
//! rejected (PROTOCOL.md 8.8), over real connections.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use hush_protocol::frame::{MessageKind, Policy, Posters, RelayFrame, Reply, Request, Send};
use hush_protocol::{DeviceId, ErrorCode, GroupId};
use hush_sdk::wire::{Identity, WireClient};

fn admin_policy(admin: DeviceId) -> Policy {
    Policy {
        posters: Posters::Everyone,
        admins: vec![admin],
        admins_change_roster: true,
    }
}

async fn policy_of(c: &WireClient, group: &GroupId) -> Policy {
    match c.request(Request::GetGroup { group: group.clone() }).await.unwrap() {
        Reply::Group(info) => info.policy,
        other => panic!("{other:?}"),
    }
}

async fn roster_of(c: &WireClient, group: &GroupId) -> Vec<DeviceId> {
    match c.request(Request::GetGroup { group: group.clone() }).await.unwrap() {
        Reply::Group(info) => info.roster,
        other => panic!("{other:?}"),
    }
}

async fn void(c: &WireClient, group: &GroupId, seq: u64) -> Result<(), ErrorCode> {
    c.request(Request::VoidCommit {
        group: group.clone(),
        seq,
    })
    .await
    .map(|r| assert_eq!(r, Reply::Done))
    .map_err(|e| e.code().unwrap())
}

#[tokio::test]
async fn only_admins_change_the_roster_but_members_add_their_own_devices_and_leave() {
    let relay = TestRelay::start().await;
    let (a, b, b2, c) = (
        Identity::generate("alice"),
        Identity::generate("bob"),
        Identity::generate("bob"),
        Identity::generate("carol"),
    );
    let ca = relay.connect(&a).await;
    let cb = relay.connect(&b).await;
    let _cb2 = relay.connect(&b2).await;
    let cc = relay.connect(&c).await;
    let g = gid("admins");
    create_group(&ca, &g, admin_policy(a.device())).await;
    commit(&ca, &g, 0, vec![b.device(), c.device()], vec![]).await.unwrap();

    // Bob is no admin: he may not remove carol, nor add someone else.
    for (add, remove) in [
        (vec![], vec![c.device()]),
        (vec![Identity::generate("dave").device()], vec![]),
    ] {
        let refused = commit(&cb, &g, 1, add, remove).await.unwrap_err();
        assert_eq!(refused.code(), Some(ErrorCode::Forbidden));
    }
    // He may add his own other device (linking)...
    let (_, epoch) = commit(&cb, &g, 1, vec![b2.device()], vec![]).await.unwrap();
    assert_eq!(epoch, 2);
    assert!(roster_of(&ca, &g).await.contains(&b2.device()));
    // ...and commit carol's leaving once she proposed it.
    let refused = commit(&cb, &g, 2, vec![], vec![c.device()]).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::Forbidden), "no proposal yet");
    let proposal = cc
        .request(Request::Send(Send {
            group: g.clone(),
            client_msg_id: 1,
            kind: MessageKind::Proposal,
            epoch: 2,
            payload: mls(&g, 2, MessageKind::Proposal, b"remove me"),
            roster: None,
        }))
        .await
        .unwrap();
    assert!(matches!(proposal, Reply::Sent { .. }));
    commit(&cb, &g, 2, vec![], vec![c.device()]).await.unwrap();
    assert!(!roster_of(&ca, &g).await.contains(&c.device()));

    // The admin removes bob's first device: it is no admin to begin with,
    // and the admin list keeps only alice.
    commit(&ca, &g, 3, vec![], vec![b.device()]).await.unwrap();
    assert_eq!(policy_of(&ca, &g).await.admins, vec![a.device()]);
}

#[tokio::test]
async fn an_admin_voids_a_rejected_commit_and_the_roster_and_epoch_go_back() {
    let relay = TestRelay::start().await;
    let (a, b, c) = (
        Identity::generate("alice"),
        Identity::generate("bob"),
        Identity::generate("carol"),
    );
    let ca = relay.connect(&a).await;
    let cb = relay.connect(&b).await;
    let mut cc = relay.connect(&c).await;
    let outsider = relay.connect(&Identity::generate("eve")).await;
    // A group without admins (any member may change it): bob's commit
    // claims to remove carol; its members reject it (say its MLS body is
    // garbage).
    let g = group_with(&ca, "voided", &[&cb, &cc]).await; // epoch 1
    let (seq, epoch) = commit(&cb, &g, 1, vec![], vec![c.device()]).await.unwrap();
    assert_eq!(epoch, 2);
    wait_for(&mut cc, |f| matches!(f, RelayFrame::Notice(_))).await;
    assert!(!roster_of(&ca, &g).await.contains(&c.device()));

    // Who may not void it, and what cannot be voided.
    assert_eq!(void(&outsider, &g, seq).await, Err(ErrorCode::NotMember));
    assert_eq!(
        void(&ca, &g, seq - 1).await,
        Err(ErrorCode::InvalidRequest),
        "not the newest commit"
    );
    assert_eq!(void(&ca, &g, seq + 5).await, Err(ErrorCode::NotFound));

    void(&ca, &g, seq).await.unwrap();
    assert_eq!(epoch_of(&ca, &g).await, 1);
    assert!(
        roster_of(&ca, &g).await.contains(&c.device()),
        "carol is a member again"
    );
    // The voided entry has no payload; the next commit is at the old epoch.
    let Reply::History { entries, .. } = ca
        .request(Request::History {
            group: g.clone(),
            from_seq: seq,
            direction: hush_protocol::frame::Direction::Forward,
            limit: 1,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(entries[0].payload.is_empty());
    assert_eq!(
        void(&ca, &g, seq).await,
        Err(ErrorCode::InvalidRequest),
        "voided already"
    );
    let (next, epoch) = commit(&ca, &g, 1, vec![], vec![]).await.unwrap();
    assert_eq!(epoch, 2);
    // Carol gets what follows again (before it, the commit that removed her:
    // as it was when she was removed, or voided).
    let delivered = loop {
        let e = deliveries(&mut cc, &g, 1).await.remove(0);
        if e.seq == next {
            break e;
        }
        assert_eq!(e.seq, seq, "{e:?}");
    };
    assert_eq!(delivered.kind, MessageKind::Commit);
}

#[tokio::test]
async fn with_admins_only_an_admin_voids() {
    let relay = TestRelay::start().await;
    let (a, b) = (Identity::generate("alice"), Identity::generate("bob"));
    let ca = relay.connect(&a).await;
    let cb = relay.connect(&b).await;
    let g = gid("admin voids");
    create_group(&ca, &g, admin_policy(a.device())).await;
    commit(&ca, &g, 0, vec![b.device()], vec![]).await.unwrap();
    // Bob's key update (no roster change: any member may make one).
    let (seq, _) = commit(&cb, &g, 1, vec![], vec![]).await.unwrap();
    assert_eq!(void(&cb, &g, seq).await, Err(ErrorCode::Forbidden));
    void(&ca, &g, seq).await.unwrap();
    assert_eq!(epoch_of(&ca, &g).await, 1);
}

/// A commit whose roster change is `change`, as `common::commit` builds it.
async fn commit_with(
    c: &WireClient,
    group: &GroupId,
    epoch: u64,
    change: hush_protocol::frame::RosterChange,
) -> Result<Reply, hush_sdk::wire::ClientError> {
    let payload = hush_crypto::inspect::framing::commit(group, epoch, &change.add, &change.remove, b"c");
    c.request(Request::Send(Send {
        group: group.clone(),
        client_msg_id: rand::random(),
        kind: MessageKind::Commit,
        epoch,
        payload: bytes::Bytes::from(payload),
        roster: Some(change),
    }))
    .await
}

#[tokio::test]
async fn adds_need_a_welcome_and_a_committer_cannot_remove_itself() {
    use hush_protocol::frame::RosterChange;
    let relay = TestRelay::start().await;
    let (a, b) = (Identity::generate("alice"), Identity::generate("bob"));
    let ca = relay.connect(&a).await;
    let cb = relay.connect(&b).await;
    let g = gid("rules");
    create_group(&ca, &g, Default::default()).await;
    let no_welcome = RosterChange {
        add: vec![cb.ready().device],
        remove: vec![],
        welcome: None,
    };
    let err = commit_with(&ca, &g, 0, no_welcome).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidRequest), "{err:?}");
    assert_eq!(commit(&ca, &g, 0, vec![cb.ready().device], vec![]).await.unwrap().1, 1);
    let remove_self = RosterChange {
        add: vec![],
        remove: vec![ca.ready().device],
        welcome: None,
    };
    let err = commit_with(&ca, &g, 1, remove_self).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidRequest), "{err:?}");
    // Nothing was stored: the group is still at epoch 1 and takes commits.
    assert_eq!(commit(&ca, &g, 1, vec![], vec![]).await.unwrap().1, 2);
    relay.stop().await;
}
