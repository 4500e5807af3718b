//! A registrant passes off an MLS leaf of its own as another user's (a leaf
//! it puts in a group it creates is never uploaded, so the relay's key
//! package check does not see it). Through a real relay with real MLS: the
//! member it adds reports the forgery, and the group is neither named after
//! the user it claims nor trusted as that member's own devices.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use hush_crypto::{Device, DeviceConfig, DeviceIdentity, MlsStore};
use hush_protocol::frame::{MessageKind, Reply, Request, RosterChange, Send};
use hush_protocol::{GroupId, UserId};
use hush_sdk::wire::{ConnectOptions, Identity, WireClient};
use hush_sdk::{Event, Trust};

/// Registers a device as "mallory" whose MLS credential claims `claimed`,
/// creates a group and adds every device of `victim` to it.
async fn forged_group(relay: &TestRelay, claimed: &str, victim: &str) -> (Device, WireClient, GroupId, Identity) {
    let key = Identity::generate("mallory");
    let wire = WireClient::connect(&key, ConnectOptions::new(relay.url(), Trust::CertSha256(relay.cert)))
        .await
        .unwrap();
    let identity = DeviceIdentity::from_secret(UserId(claimed.into()), key.seed()).unwrap();
    let mut forger = Device::with_identity(MlsStore::in_memory(), identity, DeviceConfig::default()).unwrap();
    let group = GroupId(rand::random::<[u8; 16]>().to_vec());
    wire.request(Request::CreateGroup {
        group: group.clone(),
        policy: Default::default(),
    })
    .await
    .unwrap();
    forger.create_group(&group).unwrap();
    let Reply::KeyPackages(packages) = wire
        .request(Request::ClaimKeyPackages {
            user: UserId(victim.into()),
            device: None,
        })
        .await
        .unwrap()
    else {
        panic!("no key packages")
    };
    let refs: Vec<&[u8]> = packages.iter().map(|p| p.key_package.as_ref()).collect();
    let commit = forger.add_members(&group, &refs).unwrap();
    wire.request(Request::Send(Send {
        group: group.clone(),
        client_msg_id: 1,
        kind: MessageKind::Commit,
        epoch: commit.epoch,
        payload: commit.message.clone().into(),
        roster: Some(RosterChange {
            add: commit.added.iter().map(|c| c.device).collect(),
            remove: vec![],
            welcome: commit.welcome.clone().map(Into::into),
        }),
    }))
    .await
    .unwrap();
    forger.merge_pending_commit(&group).unwrap();
    (forger, wire, group, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_claiming_another_user_is_reported_and_names_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&tmp.path().join("relay")).await;
    let alice = relay.ready_client(&tmp.path().join("alice"), "alice").await;
    let _bob = relay.ready_client(&tmp.path().join("bob"), "bob").await;
    let mut events = alice.events();

    let (_forger, _wire, group, key) = forged_group(&relay, "bob", "alice").await;
    let (user, device) = wait_for(&mut events, |e| match e {
        Event::IdentityRejected { group: g, user, device } if *g == group => Some((user.clone(), *device)),
        _ => None,
    })
    .await;
    assert_eq!(user.0, "bob");
    assert_eq!(device, key.device());
    wait_for(&mut events, |e| {
        matches!(e, Event::Joined { group: g } if *g == group).then_some(())
    })
    .await;
    let summary = alice
        .groups()
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.group == group)
        .unwrap();
    assert_eq!(summary.direct_with, None, "not alice's direct conversation with bob");
    assert!(summary.name.starts_with("unverified"), "{}", summary.name);
    assert_eq!(summary.unverified_members, 1);
    assert!(!summary.verified);
    // `hush send bob` does not go to the forger.
    assert_ne!(alice.find_group("bob").await.ok(), Some(group.clone()));
    // The forged key counts in no safety number.
    assert!(alice.safety_number("bob").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_claiming_your_own_user_cannot_sync_into_your_devices() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&tmp.path().join("relay")).await;
    let alice = relay.ready_client(&tmp.path().join("alice"), "alice").await;
    let mut events = alice.events();

    let (mut forger, wire, group, _key) = forged_group(&relay, "alice", "alice").await;
    wait_for(&mut events, |e| {
        matches!(e, Event::IdentityRejected { group: g, .. } if *g == group).then_some(())
    })
    .await;
    // A setting "synced" from a device claiming to be alice's.
    let payload = hush_crypto::content::Payload::new(
        hush_crypto::content::Content::SyncSetting {
            name: "theme".into(),
            value: serde_json::json!("forged"),
        },
        1,
    );
    let text = hush_crypto::content::Payload::new(
        hush_crypto::content::Content::Text {
            text: "after the setting".into(),
            reply_to: None,
        },
        1,
    );
    for (n, p) in [(2, &payload), (3, &text)] {
        let sealed = forger.send(&group, p).unwrap();
        let sent = wire
            .request(Request::Send(Send {
                group: group.clone(),
                client_msg_id: n,
                kind: MessageKind::Application,
                epoch: forger.epoch(&group).unwrap(),
                payload: sealed.into(),
                roster: None,
            }))
            .await
            .unwrap();
        assert!(matches!(sent, Reply::Sent { .. }), "{sent:?}");
    }
    // Entries are processed in order: once the text is here, the setting was
    // processed (and refused).
    wait_for(&mut events, |e| {
        matches!(e, Event::Message(m) if m.group == group && m.text == "after the setting").then_some(())
    })
    .await;
    assert_eq!(alice.setting("theme").unwrap(), None);
    let own = alice.own_devices_group().await.unwrap();
    assert_ne!(own, Some(group.clone()));
    let summary = alice
        .groups()
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.group == group)
        .unwrap();
    assert!(!summary.own_devices);
}
