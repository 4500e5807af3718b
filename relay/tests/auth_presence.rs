//! Registration rules, presence and ephemeral signals, retention.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use hush_protocol::frame::{
    ClientFrame, Direction, MessageKind, Notice, PresenceUpdate, Registration, RelayFrame, Reply, Request, Resume,
};
use hush_protocol::{ErrorCode, ErrorDetail};
use hush_relay::token::{issue_hs256, issue_hs256_for_device};
use hush_sdk::wire::Identity;

const APP_SECRET: &str = "5e0c8a1f2b7d4e6a9c3b1d0f8e2a4c6b";

fn exp() -> u64 {
    hush_relay::now_ms() / 1000 + 3600
}

#[tokio::test]
async fn a_device_bound_token_registers_only_its_device_and_long_tokens_are_refused() {
    let relay = TestRelay::start_with(|c| {
        c.auth.open = Some(false);
        c.auth.jwt_hs256_secret = Some(APP_SECRET.into());
        c.auth.max_token_lifetime_secs = 3600;
    })
    .await;
    let alice = Identity::generate("alice");
    let laptop = Identity::generate("alice");
    // A token the app issued for alice's laptop, intercepted and presented by
    // another device of someone claiming to be alice: refused.
    let bound = issue_hs256_for_device(APP_SECRET.as_bytes(), "alice", exp(), &laptop.device().0);
    let mut opts = relay.options();
    opts.registration = Registration::Token(bound.clone());
    let err = relay.try_connect(&alice, opts).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidToken));
    assert!(err.to_string().contains("another device"), "{err}");
    // The laptop itself registers with it.
    let mut opts = relay.options();
    opts.registration = Registration::Token(bound);
    assert!(relay.try_connect(&laptop, opts).await.unwrap().ready().registered);
    // A token valid for a week, where the relay accepts an hour: refused.
    let long = issue_hs256(
        APP_SECRET.as_bytes(),
        "alice",
        hush_relay::now_ms() / 1000 + 7 * 24 * 3600,
    );
    let mut opts = relay.options();
    opts.registration = Registration::Token(long);
    let err = relay.try_connect(&alice, opts).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidToken));
    assert!(err.to_string().contains("lifetime"), "{err}");
}

#[tokio::test]
async fn closed_relay_needs_a_token_or_a_link_approval() {
    let relay = TestRelay::start_with(|c| {
        c.auth.open = Some(false);
        c.auth.jwt_hs256_secret = Some(APP_SECRET.into());
    })
    .await;
    let alice = Identity::generate("alice");
    // No proof: refused with a reason.
    let err = relay.try_connect(&alice, relay.options()).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::RegistrationRequired));
    // A token for someone else, or signed with the wrong key: refused.
    let mut opts = relay.options();
    opts.registration = Registration::Token(issue_hs256(APP_SECRET.as_bytes(), "bob", exp()));
    assert_eq!(
        relay.try_connect(&alice, opts).await.unwrap_err().code(),
        Some(ErrorCode::InvalidToken)
    );
    let mut opts = relay.options();
    opts.registration = Registration::Token(issue_hs256(b"wrong-wrong-wrong-wrong-wrong-wrong", "alice", exp()));
    assert_eq!(
        relay.try_connect(&alice, opts).await.unwrap_err().code(),
        Some(ErrorCode::InvalidToken)
    );
    // A valid token registers the device; afterwards no proof is needed.
    let mut opts = relay.options();
    opts.registration = Registration::Token(issue_hs256(APP_SECRET.as_bytes(), "alice", exp()));
    let c = relay.try_connect(&alice, opts).await.unwrap();
    assert!(c.ready().registered);
    drop(c);
    let c = relay.try_connect(&alice, relay.options()).await.unwrap();
    assert!(!c.ready().registered);
    // A second device of alice's, approved by the first.
    let phone = Identity::from_seed("alice", rand::random());
    let mut opts = relay.options();
    opts.registration = alice.approve_link(&phone.public_key());
    let p = relay.try_connect(&phone, opts).await.unwrap();
    assert!(p.ready().registered);
    match c
        .request(Request::ListDevices {
            user: alice.user.clone(),
        })
        .await
        .unwrap()
    {
        Reply::Devices(d) => assert_eq!(d.len(), 2),
        other => panic!("{other:?}"),
    }
    // An approval from another user's device does not work.
    let bob = Identity::generate("bob");
    let mut opts = relay.options();
    opts.registration = Registration::Token(issue_hs256(APP_SECRET.as_bytes(), "bob", exp()));
    drop(relay.try_connect(&bob, opts).await.unwrap());
    let bob2 = Identity::generate("bob");
    let mut opts = relay.options();
    opts.registration = alice.approve_link(&bob2.public_key());
    assert_eq!(
        relay.try_connect(&bob2, opts).await.unwrap_err().code(),
        Some(ErrorCode::AuthFailed)
    );
    // A registered key cannot be claimed by another user.
    let thief = Identity::from_seed("mallory", alice.seed());
    assert_eq!(
        relay.try_connect(&thief, relay.options()).await.unwrap_err().code(),
        Some(ErrorCode::AuthFailed)
    );
    relay.stop().await;
}

#[tokio::test]
async fn presence_and_typing_reach_only_group_members() {
    let relay = TestRelay::start().await;
    let (a, b, e) = (
        Identity::generate("alice"),
        Identity::generate("bob"),
        Identity::generate("eve"),
    );
    let mut ca = relay.connect(&a).await;
    let cb = relay.connect(&b).await;
    let mut ce = relay.connect(&e).await;
    let g = group_with(&ca, "chat", &[&cb]).await;
    drop(cb);
    let f = wait_for(&mut ca, |f| matches!(f, RelayFrame::Presence(p) if !p.online)).await;
    let RelayFrame::Presence(p) = f else { unreachable!() };
    assert_eq!(p.device, b.device());
    assert!(p.last_seen_ms > 0);
    let mut cb = relay.connect(&b).await;
    let f = wait_for(&mut ca, |f| matches!(f, RelayFrame::Presence(p) if p.online)).await;
    assert!(matches!(f, RelayFrame::Presence(PresenceUpdate { online: true, .. })));
    // Typing: delivered live to the other member, never stored.
    let epoch = epoch_of(&ca, &g).await;
    let typing = envelope(epoch, b"typing");
    ca.send(&ClientFrame::Ephemeral {
        group: g.clone(),
        payload: typing.clone(),
    })
    .await
    .unwrap();
    let f = wait_for(&mut cb, |f| matches!(f, RelayFrame::Ephemeral { .. })).await;
    assert_eq!(
        f,
        RelayFrame::Ephemeral {
            group: g.clone(),
            sender: a.device(),
            payload: typing,
        }
    );
    // Only envelopes of the current epoch travel: an MLS message (a commit
    // passed off as a typing signal), bare bytes and an old epoch's envelope
    // are refused with their reasons, and the other member hears nothing.
    for (payload, code) in [
        (
            mls(&g, epoch, MessageKind::Commit, b"evict everyone"),
            ErrorCode::InvalidMls,
        ),
        (
            mls(&g, epoch, MessageKind::Application, b"ratchet"),
            ErrorCode::InvalidMls,
        ),
        (bytes::Bytes::from_static(b"typing"), ErrorCode::InvalidRequest),
        (envelope(epoch + 1, b"future"), ErrorCode::StaleEpoch),
    ] {
        ca.send(&ClientFrame::Ephemeral {
            group: g.clone(),
            payload,
        })
        .await
        .unwrap();
        let f = wait_for(&mut ca, |f| matches!(f, RelayFrame::Error(_))).await;
        assert!(matches!(&f, RelayFrame::Error(e) if e.code == code), "{f:?}");
    }
    assert_quiet(&mut cb, |f| matches!(f, RelayFrame::Ephemeral { .. })).await;
    match ca.request(Request::GetGroup { group: g.clone() }).await.unwrap() {
        Reply::Group(info) => assert_eq!(info.head_seq, 1, "typing must not be stored"),
        other => panic!("{other:?}"),
    }
    // Eve shares no group: no presence, no typing, and asking is answered with nothing.
    assert_quiet(&mut ce, |f| {
        matches!(f, RelayFrame::Presence(_) | RelayFrame::Ephemeral { .. })
    })
    .await;
    assert_eq!(
        ce.request(Request::GetPresence {
            devices: vec![b.device()]
        })
        .await
        .unwrap(),
        Reply::Presence(vec![])
    );
    ce.send(&ClientFrame::Ephemeral {
        group: g.clone(),
        payload: envelope(epoch, b"x"),
    })
    .await
    .unwrap();
    let f = wait_for(&mut ce, |f| matches!(f, RelayFrame::Error(_))).await;
    assert!(matches!(f, RelayFrame::Error(err) if err.code == ErrorCode::NotMember));
    match ca
        .request(Request::GetPresence {
            devices: vec![b.device()],
        })
        .await
        .unwrap()
    {
        Reply::Presence(v) => assert!(v.len() == 1 && v[0].online),
        other => panic!("{other:?}"),
    }
    relay.stop().await;
}

#[tokio::test]
async fn retention_deletes_acknowledged_entries_and_says_so() {
    let relay = TestRelay::start_with(|c| c.retention.interval_secs = 1).await;
    let (a, b) = (Identity::generate("alice"), Identity::generate("bob"));
    let mut ca = relay.connect(&a).await;
    let mut cb = relay.connect(&b).await;
    let g = group_with(&ca, "ephemeral-history", &[&cb]).await;
    for n in 0..5u64 {
        send_app(&ca, &g, n, 1, b"m").await.unwrap();
    }
    let ea = deliveries(&mut ca, &g, 6).await;
    let eb = deliveries(&mut cb, &g, 5).await;
    ca.ack(&g, ea.last().unwrap().seq).await.unwrap();
    cb.ack(&g, eb.last().unwrap().seq).await.unwrap();
    // Wait (bounded) for the retention pass that follows the acknowledgements.
    let mut first = 0;
    for _ in 0..100 {
        if let Reply::Group(info) = ca.request(Request::GetGroup { group: g.clone() }).await.unwrap() {
            first = info.first_seq;
            if first == 7 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        first, 7,
        "every entry was acknowledged by every member, so none is kept"
    );
    // A device that asks to resume from before the retained range is told, explicitly.
    drop(cb);
    let mut opts = relay.options();
    opts.resume = vec![Resume {
        group: g.clone(),
        after_seq: 2,
    }];
    let mut cb = relay.try_connect(&b, opts).await.unwrap();
    let (s, _) = send_app(&ca, &g, 99, 1, b"new").await.unwrap();
    let f = wait_for(&mut cb, |f| matches!(f, RelayFrame::Notice(_) | RelayFrame::Deliver(_))).await;
    assert_eq!(
        f,
        RelayFrame::Notice(Notice::Truncated {
            group: g.clone(),
            first_available: 7
        })
    );
    assert_eq!(deliveries(&mut cb, &g, 1).await[0].seq, s);
    let err = cb
        .request(Request::History {
            group: g.clone(),
            from_seq: 2,
            direction: Direction::Forward,
            limit: 5,
        })
        .await;
    match err.unwrap_err() {
        hush_sdk::wire::ClientError::Relay(e) => assert_eq!(e.detail, ErrorDetail::FirstAvailable(7)),
        other => panic!("{other:?}"),
    }
    relay.stop().await;
}

#[tokio::test]
async fn announce_only_groups_refuse_other_posters() {
    use hush_protocol::frame::{Policy, Posters};
    let relay = TestRelay::start().await;
    let (a, b) = (Identity::generate("host"), Identity::generate("listener"));
    let ca = relay.connect(&a).await;
    let mut cb = relay.connect(&b).await;
    let g = gid("announcements");
    let policy = Policy {
        posters: Posters::Only(vec![a.device()]),
        admins: vec![a.device()],
        admins_change_roster: true,
    };
    create_group(&ca, &g, policy.clone()).await;
    commit(&ca, &g, 0, vec![b.device()], vec![]).await.unwrap();
    let (s, _) = send_app(&ca, &g, 1, 1, b"news").await.unwrap();
    assert_eq!(deliveries(&mut cb, &g, 1).await[0].seq, s);
    assert_eq!(
        send_app(&cb, &g, 2, 1, b"reply").await.unwrap_err().code(),
        Some(ErrorCode::Forbidden)
    );
    // Only admins change the roster or the policy.
    assert_eq!(
        commit(&cb, &g, 1, vec![], vec![a.device()]).await.unwrap_err().code(),
        Some(ErrorCode::Forbidden)
    );
    let open = Policy {
        posters: Posters::Everyone,
        ..policy
    };
    let err = cb
        .request(Request::SetPolicy {
            group: g.clone(),
            policy: open.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));
    assert_eq!(
        ca.request(Request::SetPolicy {
            group: g.clone(),
            policy: open
        })
        .await
        .unwrap(),
        Reply::Done
    );
    send_app(&cb, &g, 3, 1, b"now I may").await.unwrap();
    relay.stop().await;
}

#[tokio::test]
async fn silent_connections_are_closed_and_pinging_ones_kept() {
    use hush_protocol::frame::{CloseReason, Closing};
    let relay = TestRelay::start_with(|c| c.limits.heartbeat_ms = 100).await;
    let (a, b) = (Identity::generate("quiet"), Identity::generate("chatty"));
    let mut quiet = relay.connect(&a).await;
    let mut chatty = relay.connect(&b).await;
    assert_eq!(quiet.challenge().heartbeat_ms, 100);
    let f = wait_for(&mut quiet, |f| matches!(f, RelayFrame::Closing(_))).await;
    assert!(matches!(
        f,
        RelayFrame::Closing(Closing {
            reason: CloseReason::IdleTimeout,
            ..
        })
    ));
    // Pinging every interval keeps the other alive well past the idle timeout.
    for n in 0..10u64 {
        chatty.send(&ClientFrame::Ping { nonce: n }).await.unwrap();
        let f = wait_for(&mut chatty, |f| {
            matches!(f, RelayFrame::Pong { .. } | RelayFrame::Closing(_))
        })
        .await;
        assert_eq!(f, RelayFrame::Pong { nonce: n });
        tokio::time::sleep(Duration::from_millis(100)).await; // the client's heartbeat interval
    }
    relay.stop().await;
}

#[tokio::test]
async fn a_revoked_device_is_refused_unlisted_unaddable_and_its_approvals_void() {
    let relay = TestRelay::start().await;
    let phone = Identity::generate("alice");
    let laptop = Identity::from_seed("alice", rand::random());
    let bob = Identity::generate("bob");
    let cp = relay.connect(&phone).await;
    let mut cl = relay.connect(&laptop).await;
    let cb = relay.connect(&bob).await;
    let revoke = |by: &Identity, target: &Identity| Request::RevokeDevice {
        device: target.device(),
        signature: by.sign(&hush_protocol::auth::revoke_transcript(
            &target.user,
            &target.public_key(),
        )),
    };
    let code = |r: Result<Reply, hush_sdk::wire::ClientError>| match r {
        Err(hush_sdk::wire::ClientError::Relay(e)) => e.code,
        other => panic!("expected a refusal, got {other:?}"),
    };
    // Bob cannot revoke alice's laptop; a signature by someone else does not do.
    assert_eq!(code(cb.request(revoke(&bob, &laptop)).await), ErrorCode::NotFound);
    assert_eq!(code(cp.request(revoke(&bob, &laptop)).await), ErrorCode::AuthFailed);
    // The laptop signs a link approval for a new device, then the phone
    // revokes the laptop: its open connection is closed at once.
    let tablet = Identity::from_seed("alice", rand::random());
    let approval = laptop.approve_link(&tablet.public_key());
    assert_eq!(cp.request(revoke(&phone, &laptop)).await.unwrap(), Reply::Done);
    let f = wait_for(&mut cl, |f| matches!(f, RelayFrame::Closing(_))).await;
    assert!(matches!(f, RelayFrame::Closing(c) if c.reason == hush_protocol::frame::CloseReason::AuthFailed));
    // Again: still done, nothing changes.
    assert_eq!(cp.request(revoke(&phone, &laptop)).await.unwrap(), Reply::Done);
    // It cannot connect again, and its approval is void.
    let err = relay.try_connect(&laptop, relay.options()).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Revoked));
    let mut opts = relay.options();
    opts.registration = approval;
    assert_eq!(
        relay.try_connect(&tablet, opts).await.unwrap_err().code(),
        Some(ErrorCode::AuthFailed)
    );
    // It is not listed, has no key package, gets no direct message, and no
    // commit can add it.
    match cb
        .request(Request::ListDevices {
            user: phone.user.clone(),
        })
        .await
        .unwrap()
    {
        Reply::Devices(d) => assert_eq!(d.iter().map(|d| d.device).collect::<Vec<_>>(), vec![phone.device()]),
        other => panic!("{other:?}"),
    }
    assert!(
        cb.request(Request::ClaimKeyPackages {
            user: phone.user.clone(),
            device: Some(laptop.device()),
        })
        .await
        .is_err()
    );
    let g = group_with(&cb, "after", &[]).await;
    let add = commit(&cb, &g, epoch_of(&cb, &g).await, vec![laptop.device()], vec![]).await;
    assert!(
        matches!(&add, Err(hush_sdk::wire::ClientError::Relay(e)) if e.code == ErrorCode::Forbidden),
        "{add:?}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn link_approvals_expire() {
    let relay = TestRelay::start_with(|c| {
        c.auth.open = Some(false);
        c.auth.jwt_hs256_secret = Some(APP_SECRET.into());
    })
    .await;
    let phone = Identity::generate("alice");
    let mut opts = relay.options();
    opts.registration = Registration::Token(issue_hs256(APP_SECRET.as_bytes(), "alice", exp()));
    drop(relay.try_connect(&phone, opts).await.unwrap());
    let now = hush_relay::now_ms();
    let relay = &relay;
    let try_with = |registration: Registration| {
        let mut opts = relay.options();
        opts.registration = registration;
        let laptop = Identity::from_seed("alice", [9; 32]);
        async move { relay.try_connect(&laptop, opts).await.map(|c| c.ready().registered) }
    };
    let laptop_key = Identity::from_seed("alice", [9; 32]).public_key();
    // Expired, valid for too long, or with no expiry at all: refused.
    for registration in [
        phone.approve_link_until(&laptop_key, now - 1_000),
        phone.approve_link_until(&laptop_key, now + 60 * 60 * 1000),
        Registration::Linked {
            by: phone.device(),
            signature: phone.sign(&hush_protocol::auth::link_transcript(&phone.user, &laptop_key)),
        },
    ] {
        let err = try_with(registration).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::AuthFailed), "{err}");
    }
    // A fresh one: accepted; its expiry cannot be moved (the signature covers it).
    let Registration::LinkedUntil { by, signature, .. } = phone.approve_link(&laptop_key) else {
        unreachable!()
    };
    let stretched = Registration::LinkedUntil {
        by,
        expires_ms: now + 14 * 60 * 1000,
        signature,
    };
    assert_eq!(
        try_with(stretched).await.unwrap_err().code(),
        Some(ErrorCode::AuthFailed)
    );
    assert!(try_with(phone.approve_link(&laptop_key)).await.unwrap());
}
