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

/// With an identity authority (the app's backend) configured, members take
/// in only certified leaves: a group made by an uncertified device is not
/// joined, whatever user its leaf claims, and an uncertified device cannot
/// be added; certified users chat as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_authority_only_certified_devices_are_taken_in() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&tmp.path().join("relay")).await;
    let authority = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let certified = |name: &'static str| {
        let seed: [u8; 32] = rand::random();
        let key = Identity::from_seed(name, seed).public_key();
        let cert = hush_crypto::certify(&authority, &UserId(name.into()), &key);
        hush_sdk::Client::builder()
            .relay(relay.url())
            .trust(Trust::CertSha256(relay.cert))
            .data_dir(tmp.path().join(name))
            .user(name)
            .timing(fast_timing())
            .device_seed(seed)
            .identity_certificate(cert)
            .identity_authority(authority.verifying_key().to_bytes())
    };
    let alice = certified("alice").open().await.unwrap();
    let bob = certified("bob").open().await.unwrap();
    for c in [&alice, &bob] {
        c.wait_connected(WAIT).await.unwrap();
        c.sync(WAIT).await.unwrap();
    }
    let mut a_ev = alice.events();

    // An uncertified registrant's group, its leaf claiming "bob".
    let (_forger, _wire, group, _key) = forged_group(&relay, "bob", "alice").await;
    let reason = wait_for(&mut a_ev, |e| match e {
        Event::InvitationRefused { group: g, reason } if *g == group => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(reason.contains("certificate"), "{reason}");
    assert!(alice.groups().await.unwrap().iter().all(|g| g.group != group));

    // Its key packages (real, but uncertified) are refused too.
    let (_key, m, mut device) = wire_device(&relay, "mallory").await;
    let packages = device.generate_key_packages(2, 0).unwrap();
    m.request(Request::UploadKeyPackages {
        one_time: packages.into_iter().map(Into::into).collect(),
        last_resort: None,
    })
    .await
    .unwrap();
    let refused = alice.create_group("with mallory", &["mallory"]).await;
    assert!(
        matches!(&refused, Err(hush_sdk::Error::Crypto(e)) if e.to_string().contains("certificate")),
        "{refused:?}"
    );

    // Certified devices chat.
    let mut b_ev = bob.events();
    let dm = alice.direct("bob").await.unwrap();
    let id = alice.send_text(&dm, "certified hello").await.unwrap();
    let summary = alice
        .groups()
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.group == dm)
        .unwrap();
    assert!(summary.verified, "every leaf is certified");
    wait_for(&mut b_ev, |e| {
        matches!(e, Event::Message(m) if m.id == id).then_some(())
    })
    .await;
}

/// One device's key package does not check (its signature is broken: the
/// relay does not verify signatures, members do): that device is left out,
/// the user's other devices are added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_package_leaves_its_device_out_not_the_whole_add() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&tmp.path().join("relay")).await;
    let alice = relay.ready_client(&tmp.path().join("alice"), "alice").await;
    let bob = relay.ready_client(&tmp.path().join("bob"), "bob").await;
    // Bob's second device, with a package the relay takes (its own leaf,
    // signed) but MLS does not: its lifetime begins tomorrow.
    let (key, wire, _device) = wire_device(&relay, "bob").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let public = key.public_key();
    let credential = [&[1u8][..], &key.device().0, b"bob"].concat();
    let fields = hush_crypto::inspect::framing::KeyPackageFields {
        cipher_suite: 1,
        signature_key: &public,
        identity: &credential,
        not_before: now + 86_400,
        not_after: now + 2 * 86_400,
        last_resort: false,
    };
    let package = hush_crypto::inspect::framing::key_package(&fields, |m| key.sign(m).0.to_vec());
    wire.request(Request::UploadKeyPackages {
        one_time: vec![package.into()],
        last_resort: None,
    })
    .await
    .unwrap();

    let group = alice.create_group("partly", &["bob"]).await.unwrap();
    let members = alice.members(&group).await.unwrap();
    assert!(members.iter().any(|m| m.device == bob.device_id()), "{members:?}");
    assert!(members.iter().all(|m| m.device != key.device()), "{members:?}");
}
