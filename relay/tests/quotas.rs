//! Disk a device can make the relay hold for others: who `SendToDevice`
//! reaches, how much an inbox holds unread, how many groups a device makes.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::*;
use hush_crypto::inspect::framing;
use hush_protocol::ErrorCode;
use hush_protocol::frame::{ClientFrame, RelayFrame, Request};
use hush_sdk::wire::{ClientError, Identity, WireClient};

fn code(r: Result<hush_protocol::frame::Reply, ClientError>) -> Option<ErrorCode> {
    r.err().and_then(|e| e.code())
}

async fn direct(from: &WireClient, to: hush_protocol::DeviceId) -> Result<hush_protocol::frame::Reply, ClientError> {
    from.request(Request::SendToDevice {
        device: to,
        payload: Bytes::from(framing::welcome(b"w")),
    })
    .await
}

#[tokio::test]
async fn send_to_device_reaches_own_devices_and_co_members_only() {
    let relay = TestRelay::start().await;
    let (a, a2, b, c) = (
        Identity::generate("alice"),
        Identity::generate("alice"),
        Identity::generate("bob"),
        Identity::generate("carol"),
    );
    let ca = relay.connect(&a).await;
    let ca2 = relay.connect(&a2).await;
    let cb = relay.connect(&b).await;
    let cc = relay.connect(&c).await;
    // A stranger, and a device that does not exist, get the same answer.
    assert_eq!(code(direct(&ca, cb.ready().device).await), Some(ErrorCode::Forbidden));
    assert_eq!(
        code(direct(&ca, hush_protocol::DeviceId([9; 16])).await),
        Some(ErrorCode::Forbidden)
    );
    // Own devices, and devices sharing a group, are reachable.
    direct(&ca, ca2.ready().device).await.unwrap();
    group_with(&ca, "shared", &[&cb]).await;
    direct(&ca, cb.ready().device).await.unwrap();
    direct(&cb, ca.ready().device).await.unwrap();
    // Carol still shares nothing with anyone.
    assert_eq!(code(direct(&cc, cb.ready().device).await), Some(ErrorCode::Forbidden));
    relay.stop().await;
}

#[tokio::test]
async fn an_unread_inbox_stops_taking_direct_messages_until_read() {
    let relay = TestRelay::start_with(|c| c.limits.inbox_max_pending = 3).await;
    let (a, a2) = (Identity::generate("alice"), Identity::generate("alice"));
    let ca = relay.connect(&a).await;
    let target = {
        let c = relay.connect(&a2).await;
        c.ready().device
    };
    for _ in 0..3 {
        direct(&ca, target).await.unwrap();
    }
    assert_eq!(code(direct(&ca, target).await), Some(ErrorCode::QuotaExceeded));
    // The recipient reads and acknowledges: room again.
    let mut c2 = relay.connect(&a2).await;
    let mut last = 0;
    while last < 3 {
        if let RelayFrame::Inbox(e) = wait_for(&mut c2, |f| matches!(f, RelayFrame::Inbox(_))).await {
            last = e.seq;
        }
    }
    c2.send(&ClientFrame::AckInbox { seq: last }).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match direct(&ca, target).await {
            Ok(_) => break,
            Err(e) if e.code() == Some(ErrorCode::QuotaExceeded) && tokio::time::Instant::now() < deadline => {
                // The acknowledgement is applied in a batch: try again shortly.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    relay.stop().await;
}

#[tokio::test]
async fn a_device_creates_at_most_its_quota_of_groups() {
    let relay = TestRelay::start_with(|c| c.limits.max_groups_per_device = 2).await;
    let a = Identity::generate("alice");
    let ca = relay.connect(&a).await;
    create_group(&ca, &gid("one"), Default::default()).await;
    create_group(&ca, &gid("two"), Default::default()).await;
    let third = ca
        .request(Request::CreateGroup {
            group: gid("three"),
            policy: Default::default(),
        })
        .await;
    assert_eq!(code(third), Some(ErrorCode::QuotaExceeded));
    // Another device is not affected.
    let b = Identity::generate("bob");
    create_group(&relay.connect(&b).await, &gid("three"), Default::default()).await;
    relay.stop().await;
}

#[tokio::test]
async fn a_device_holds_at_most_its_quota_of_one_time_key_packages() {
    let relay = TestRelay::start_with(|c| c.limits.max_key_packages_per_device = 3).await;
    let a = Identity::generate("alice");
    let ca = relay.connect(&a).await;
    let (packages, _) = key_packages(&a, 6);
    let upload = |n: std::ops::Range<usize>| Request::UploadKeyPackages {
        one_time: packages[n].to_vec(),
        last_resort: None,
    };
    ca.request(upload(0..2)).await.unwrap();
    // Two more would make four: refused, and nothing is stored.
    assert_eq!(code(ca.request(upload(2..4)).await), Some(ErrorCode::QuotaExceeded));
    match ca.request(upload(2..3)).await.unwrap() {
        hush_protocol::frame::Reply::KeyPackageCount { one_time, .. } => assert_eq!(one_time, 3),
        other => panic!("{other:?}"),
    }
    relay.stop().await;
}

#[tokio::test]
async fn a_user_registers_at_most_its_quota_of_devices() {
    let relay = TestRelay::start_with(|c| c.limits.max_devices_per_user = 2).await;
    let revoke = |by: &Identity, target: &Identity| Request::RevokeDevice {
        device: target.device(),
        signature: by.sign(&hush_protocol::auth::revoke_transcript(
            &target.user,
            &target.public_key(),
        )),
    };
    let (phone, laptop, tablet) = (
        Identity::generate("alice"),
        Identity::generate("alice"),
        Identity::generate("alice"),
    );
    let cp = relay.connect(&phone).await;
    drop(relay.connect(&laptop).await);
    let refused = relay.try_connect(&tablet, relay.options()).await.err();
    assert_eq!(refused.and_then(|e| e.code()), Some(ErrorCode::QuotaExceeded));
    // Devices already registered still connect; other users are not counted.
    drop(relay.connect(&laptop).await);
    drop(relay.connect(&Identity::generate("bob")).await);
    // A revoked device frees its place.
    cp.request(revoke(&phone, &laptop)).await.unwrap();
    drop(relay.connect(&tablet).await);
    relay.stop().await;
}

#[tokio::test]
async fn concurrent_registrations_do_not_pass_the_device_quota_together() {
    let relay = TestRelay::start_with(|c| c.limits.max_devices_per_user = 3).await;
    let relay = std::sync::Arc::new(relay);
    let mut tries = Vec::new();
    for _ in 0..8 {
        let relay = relay.clone();
        tries.push(tokio::spawn(async move {
            let id = Identity::generate("alice");
            relay
                .try_connect(&id, relay.options())
                .await
                .map(|_| ())
                .map_err(|e| e.code())
        }));
    }
    let (mut ok, mut over) = (0, 0);
    for t in tries {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(Some(ErrorCode::QuotaExceeded)) => over += 1,
            Err(other) => panic!("unexpected refusal {other:?}"),
        }
    }
    assert_eq!((ok, over), (3, 5));
    let Ok(relay) = std::sync::Arc::try_unwrap(relay) else {
        panic!("relay still shared")
    };
    relay.stop().await;
}
