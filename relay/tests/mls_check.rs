//! The relay's MLS check (PROTOCOL.md 8.6) over real connections: envelopes
//! whose group, epoch or kind disagree with the MLS bytes, and payloads that
//! are not MLS, are refused with a typed error; the sender's connection keeps
//! working and the other members see nothing of them.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::*;
use hush_crypto::inspect::framing;
use hush_protocol::frame::{MessageKind, RelayFrame, Reply, Request, RosterChange, Send};
use hush_protocol::{ErrorCode, ErrorDetail, GroupId};
use hush_sdk::wire::{ClientError, Identity, WireClient};

async fn send(
    c: &WireClient,
    group: &GroupId,
    kind: MessageKind,
    epoch: u64,
    payload: Bytes,
) -> Result<Reply, ErrorCode> {
    c.request(Request::Send(Send {
        group: group.clone(),
        client_msg_id: rand::random(),
        kind,
        epoch,
        payload,
        roster: None,
    }))
    .await
    .map_err(|e| e.code().unwrap())
}

#[tokio::test]
async fn envelopes_that_disagree_with_their_mls_bytes_are_refused() {
    let relay = TestRelay::start().await;
    let (a, b) = (Identity::generate("alice"), Identity::generate("bob"));
    let ca = relay.connect(&a).await;
    let mut cb = relay.connect(&b).await;
    let g = group_with(&ca, "checked", &[&cb]).await; // now at epoch 1
    let other = gid("elsewhere");
    create_group(&ca, &other, Default::default()).await;
    use MessageKind::{Application, Commit, Proposal};

    // The MLS bytes name another group (one the sender is a member of, too).
    let wrong_group = mls(&other, 1, Application, b"x");
    assert_eq!(
        send(&ca, &g, Application, 1, wrong_group).await,
        Err(ErrorCode::MlsMismatch)
    );
    // Another epoch than the envelope's.
    let wrong_epoch = mls(&g, 0, Application, b"x");
    assert_eq!(
        send(&ca, &g, Application, 1, wrong_epoch).await,
        Err(ErrorCode::MlsMismatch)
    );
    // A commit claimed as an application message: it would move the members'
    // epoch without the relay sequencing it.
    let commit_bytes = mls(&g, 1, Commit, b"x");
    assert_eq!(
        send(&ca, &g, Application, 1, commit_bytes.clone()).await,
        Err(ErrorCode::MlsMismatch)
    );
    assert_eq!(
        send(&ca, &g, Proposal, 1, commit_bytes).await,
        Err(ErrorCode::MlsMismatch)
    );
    // An application message claimed as a commit: it would take the epoch.
    let app_bytes = mls(&g, 1, Application, b"x");
    assert_eq!(send(&ca, &g, Commit, 1, app_bytes).await, Err(ErrorCode::MlsMismatch));
    // Not MLS at all, truncated MLS, MLS with trailing bytes, a Welcome in the log.
    let mut good = framing::private_message(&g, 1, Application, b"body");
    for garbage in [
        Bytes::from_static(b"hello, relay"),
        Bytes::new(),
        Bytes::copy_from_slice(&good[..good.len() - 1]),
        {
            good.push(0);
            Bytes::from(good)
        },
        Bytes::from(framing::welcome(b"w")),
    ] {
        assert_eq!(send(&ca, &g, Application, 1, garbage).await, Err(ErrorCode::InvalidMls));
    }
    // A commit whose roster binding is missing, or names other devices than
    // its envelope: the relay would apply a roster the committer did not sign.
    let carol = Identity::generate("carol").device();
    for payload in [
        mls(&g, 1, Commit, b"no binding"),
        Bytes::from(framing::commit(&g, 1, &[], &[], b"binds no change")),
        Bytes::from(framing::commit(&g, 1, &[], &[carol], b"binds a removal")),
    ] {
        let refused = ca
            .request(Request::Send(Send {
                group: g.clone(),
                client_msg_id: rand::random(),
                kind: Commit,
                epoch: 1,
                payload,
                roster: Some(RosterChange {
                    add: vec![carol],
                    remove: vec![],
                    welcome: Some(Bytes::from(framing::welcome(b"w"))),
                }),
            }))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Some(ErrorCode::MlsMismatch));
    }
    // A commit whose Welcome is not a Welcome.
    let bad_welcome = ca
        .request(Request::Send(Send {
            group: g.clone(),
            client_msg_id: 77,
            kind: Commit,
            epoch: 1,
            payload: Bytes::from(framing::commit(&g, 1, &[carol], &[], b"adds carol")),
            roster: Some(RosterChange {
                add: vec![carol],
                remove: vec![],
                welcome: Some(Bytes::from_static(b"welcome")),
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(bad_welcome.code(), Some(ErrorCode::InvalidMls));
    // A direct message that is not MLS.
    let direct = ca
        .request(Request::SendToDevice {
            device: b.device(),
            payload: Bytes::from_static(b"psst"),
        })
        .await
        .unwrap_err();
    assert_eq!(direct.code(), Some(ErrorCode::InvalidMls));

    // Nothing was stored and the group is still at epoch 1.
    match ca.request(Request::GetGroup { group: g.clone() }).await.unwrap() {
        Reply::Group(info) => assert_eq!((info.head_seq, info.epoch), (1, 1)),
        other => panic!("{other:?}"),
    }
    // The sender's connection keeps working; Bob's next delivery is the next
    // accepted message, with nothing refused before it.
    let (seq, _) = send_app(&ca, &g, 1, 1, b"accepted").await.unwrap();
    assert_eq!(seq, 2);
    let got = deliveries(&mut cb, &g, 1).await;
    assert_eq!((got[0].seq, body(&got[0].payload)), (2, &b"accepted"[..]));
    // Bob is unaffected: he sends, and commits at the real epoch.
    send_app(&cb, &g, 1, 1, b"bob too").await.unwrap();
    assert_eq!(commit(&cb, &g, 1, vec![], vec![]).await.unwrap().1, 2);
    relay.stop().await;
}

#[tokio::test]
async fn commits_are_sequenced_by_the_mls_epoch() {
    let relay = TestRelay::start().await;
    let a = Identity::generate("alice");
    let ca = relay.connect(&a).await;
    let g = gid("epochs");
    create_group(&ca, &g, Default::default()).await;
    // A commit made at epoch 0 moves the group to 1; a second one for epoch 0
    // (the envelope and its bytes agreeing) is stale.
    assert_eq!(commit(&ca, &g, 0, vec![], vec![]).await.unwrap().1, 1);
    let stale = commit(&ca, &g, 0, vec![], vec![]).await.unwrap_err();
    let ClientError::Relay(e) = stale else {
        panic!("{stale:?}")
    };
    assert_eq!(
        (e.code, e.detail),
        (ErrorCode::StaleEpoch, ErrorDetail::CurrentEpoch(1))
    );
    // Direct MLS messages of any wire format are accepted (here to another
    // device of the same user).
    let b = Identity::generate("alice");
    let mut cb = relay.connect(&b).await;
    ca.request(Request::SendToDevice {
        device: b.device(),
        payload: Bytes::from(framing::welcome(b"w")),
    })
    .await
    .unwrap();
    let f = wait_for(&mut cb, |f| matches!(f, RelayFrame::Inbox(_))).await;
    let RelayFrame::Inbox(entry) = f else { unreachable!() };
    assert_eq!(entry.payload.as_ref(), framing::welcome(b"w"));
    relay.stop().await;
}
