//! Key packages (one-time and last-resort), joining with the ratchet tree
//! beside the Welcome, and the relay-side reader checked against real
//! messages from the MLS library.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, Sequencer};
use hush_crypto::inspect::{ContentType, Inspected, KeyPackageSignatures, WireFormat, inspect, inspect_any};
use hush_crypto::{DeviceConfig, DeviceCredential, Error};
use hush_protocol::{DeviceId, GroupId, UserId};

fn key_package_summary(bytes: &[u8]) -> hush_crypto::inspect::KeyPackageSummary {
    match inspect_any(bytes).unwrap() {
        Inspected::KeyPackage(kp) => kp,
        other => panic!("{other:?}"),
    }
}

#[test]
fn last_resort_packages_are_marked_and_reusable_one_time_ones_are_consumed() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Client::new(&dir, "alice", "alice");
    let mut b = Client::new(&dir, "bob", "bob");
    let packages = b.d().generate_key_packages(1, 1).unwrap();

    // What the relay sees: the marking, and the key the device id derives from.
    let one_time = key_package_summary(&packages[0]);
    let last_resort = key_package_summary(&packages[1]);
    assert!(!one_time.last_resort);
    assert!(last_resort.last_resort);
    assert_eq!(one_time.cipher_suite, 1);
    // Both signatures of a real package verify; a changed init key breaks the
    // package's (the leaf node's still holds).
    assert_eq!(one_time.signatures, KeyPackageSignatures::Valid);
    assert_eq!(last_resort.signatures, KeyPackageSignatures::Valid);
    assert!(one_time.not_before <= one_time.not_after);
    let mut tampered = packages[0].clone();
    tampered[9] ^= 1;
    assert_eq!(
        key_package_summary(&tampered).signatures,
        KeyPackageSignatures::InvalidKeyPackage
    );
    let key: [u8; 32] = one_time.signature_key.clone().try_into().unwrap();
    assert_eq!(DeviceId::from_public_key(&key), b.id());
    let credential = DeviceCredential::decode(one_time.credential_identity.as_deref().unwrap()).unwrap();
    assert_eq!((credential.user, credential.device), (UserId::from("bob"), b.id()));
    b.restart();

    for (i, name) in [b"one".as_slice(), b"two", b"three"].into_iter().enumerate() {
        let group = GroupId(name.to_vec());
        a.d().create_group(&group).unwrap();
        // Group "one" uses the one-time package; "two" and "three" the last-resort one.
        let kp = if i == 0 { &packages[0] } else { &packages[1] };
        let commit = a.d().add_members(&group, &[kp]).unwrap();
        a.d().merge_pending_commit(&group).unwrap();
        let welcome = commit.welcome.unwrap();
        // The Welcome names the key package it is encrypted to by its reference,
        // which the relay's reader computes identically.
        let Inspected::Welcome(w) = inspect_any(&welcome).unwrap() else {
            panic!("not a welcome")
        };
        assert_eq!(w.new_members, vec![key_package_summary(kp).reference.unwrap()]);
        assert_eq!(b.d().join(&welcome, None).unwrap(), group);
        b.restart();
    }
    assert_eq!(b.d().groups().unwrap().len(), 3);

    // The one-time package's private key is gone: a second Welcome to it fails,
    // and the failure leaves the device as it was.
    let group = GroupId(b"four".to_vec());
    a.d().create_group(&group).unwrap();
    let commit = a.d().add_members(&group, &[&packages[0]]).unwrap();
    assert!(matches!(
        b.d().join(commit.welcome.as_deref().unwrap(), None),
        Err(Error::Mls(_))
    ));
    b.restart();
    assert_eq!(b.d().groups().unwrap().len(), 3);
}

#[test]
fn ratchet_tree_can_travel_beside_the_welcome() {
    let dir = tempfile::tempdir().unwrap();
    let beside = DeviceConfig::default().ratchet_tree_in_welcome(false);
    let mut a = Client::with_config(&dir, "alice", "alice", beside.clone());
    let mut b = Client::with_config(&dir, "bob", "bob", beside);
    let kp = b.d().generate_key_packages(2, 0).unwrap();
    let group = GroupId(b"g".to_vec());
    a.d().create_group(&group).unwrap();
    let commit = a.d().add_members(&group, &[&kp[0]]).unwrap();
    a.d().merge_pending_commit(&group).unwrap();
    let tree = commit.ratchet_tree.unwrap();
    let welcome = commit.welcome.unwrap();
    // Without the tree the Welcome is not enough, and nothing is consumed.
    assert!(b.d().join(&welcome, None).is_err());
    assert_eq!(b.d().join(&welcome, Some(&tree)).unwrap(), group);
    let ct = a.d().encrypt(&group, b"hi").unwrap();
    assert!(b.d().process(&ct).is_ok());
}

#[test]
fn inspector_agrees_with_real_messages_and_refuses_foreign_packages() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Client::new(&dir, "alice", "alice");
    let mut b = Client::new(&dir, "bob", "bob");
    let mut log = Sequencer::default();
    let group = GroupId(vec![0xab; 32]);
    let kp = b.d().generate_key_packages(1, 0).unwrap();
    a.d().create_group(&group).unwrap();
    let commit = a.d().add_members(&group, &[&kp[0]]).unwrap();
    let h = inspect(&commit.message).unwrap();
    assert_eq!(
        (h.wire_format, h.group_id.clone(), h.epoch, h.content_type),
        (WireFormat::PrivateMessage, group.clone(), 0, ContentType::Commit)
    );
    assert_eq!(
        inspect(commit.welcome.as_deref().unwrap()),
        Err(hush_crypto::inspect::InspectError::NotAGroupMessage(
            WireFormat::Welcome
        ))
    );
    log.submit(a.id(), &commit.message).unwrap();
    a.d().merge_pending_commit(&group).unwrap();
    b.d().join(commit.welcome.as_deref().unwrap(), None).unwrap();
    let ct = b.d().encrypt(&group, &[7; 100]).unwrap();
    let h = inspect(&ct).unwrap();
    assert_eq!((h.epoch, h.content_type), (1, ContentType::Application));

    // Optionally keep real messages as fuzzing seeds.
    if let Some(dir) = std::env::var_os("HUSH_FUZZ_SEEDS") {
        let dir = std::path::PathBuf::from(dir);
        for (name, bytes) in [
            ("key-package", &kp[0]),
            ("commit", &commit.message),
            ("welcome", commit.welcome.as_ref().unwrap()),
            ("application", &ct),
        ] {
            std::fs::write(dir.join(format!("real-{name}")), bytes).unwrap();
        }
    }

    // A key package is refused if its credential claims a device id that is
    // not derived from its key (someone posing as Bob's device).
    let mallory = hush_crypto::DeviceIdentity::generate(UserId::from("bob")).unwrap();
    let claim = DeviceCredential {
        user: UserId::from("bob"),
        device: b.id(),
    };
    let forged = openmls::prelude::KeyPackage::builder()
        .build(
            openmls::prelude::Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519,
            &openmls_rust_crypto::OpenMlsRustCrypto::default(),
            &mallory,
            openmls::prelude::CredentialWithKey {
                credential: openmls::prelude::BasicCredential::new(claim.encode()).into(),
                signature_key: mallory.public_key().to_vec().into(),
            },
        )
        .unwrap();
    let forged = openmls::prelude::MlsMessageOut::from(forged.key_package().clone())
        .to_bytes()
        .unwrap();
    assert!(matches!(
        a.d().add_members(&group, &[&forged]),
        Err(Error::Credential(hush_crypto::CredentialError::DeviceIdMismatch { .. }))
    ));
    assert_eq!(
        a.d().add_members(&group, &[&commit.message]),
        Err(Error::UnexpectedMessage {
            expected: "key package"
        })
    );
    // Neither attempt left a pending commit behind.
    assert!(!a.d().has_pending_commit(&group).unwrap());
}
