//! An mls-rs member joins a group created by hush-crypto (see the crate docs).
#![allow(clippy::unwrap_used)]

use hush_crypto::{Device, DeviceConfig, DeviceCredential, MlsStore, Processed};
use hush_protocol::{DeviceId, GroupId, UserId};
use mls_rs::client_builder::MlsConfig;
use mls_rs::group::ReceivedMessage;
use mls_rs::identity::SigningIdentity;
use mls_rs::identity::basic::{BasicCredential, BasicIdentityProvider};
use mls_rs::{CipherSuite, CipherSuiteProvider, Client, CryptoProvider, MlsMessage};
use mls_rs_crypto_rustcrypto::RustCryptoProvider;

/// hush's default: MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.
const SUITE: CipherSuite = CipherSuite::CURVE25519_AES128;

/// An mls-rs client whose basic credential is a hush credential for `user`:
/// `0x01 || device id || user`, the device id derived from its Ed25519 key.
fn mls_rs_client(user: &str) -> (Client<impl MlsConfig>, DeviceId) {
    let crypto = RustCryptoProvider::default();
    let suite = crypto.cipher_suite_provider(SUITE).unwrap();
    let (secret, public) = suite.signature_key_generate().unwrap();
    let key: [u8; 32] = public.as_bytes().try_into().unwrap();
    let device = DeviceId::from_public_key(&key);
    let identity = DeviceCredential {
        user: UserId::from(user),
        device,
    }
    .encode();
    let signing_identity = SigningIdentity::new(BasicCredential::new(identity).into_credential(), public);
    let client = Client::builder()
        .identity_provider(BasicIdentityProvider)
        .crypto_provider(crypto)
        .signing_identity(signing_identity, secret, SUITE)
        .build();
    (client, device)
}

fn text(received: ReceivedMessage) -> Vec<u8> {
    match received {
        ReceivedMessage::ApplicationMessage(m) => m.data().to_vec(),
        other => panic!("expected an application message, got {other:?}"),
    }
}

#[test]
fn mls_rs_joins_a_hush_group_and_both_talk() {
    let mut alice = Device::create(MlsStore::in_memory(), UserId::from("alice"), DeviceConfig::default()).unwrap();
    let group = GroupId(b"interop".to_vec());
    alice.create_group(&group).unwrap();

    // Carol (mls-rs) publishes a KeyPackage; hush adds her.
    let (carol, carol_device) = mls_rs_client("carol");
    let key_package = carol
        .generate_key_package_message(Default::default(), Default::default(), None)
        .unwrap()
        .to_bytes()
        .unwrap();
    let add = alice.add_members(&group, &[&key_package]).unwrap();
    assert_eq!(add.added.iter().map(|c| c.device).collect::<Vec<_>>(), [carol_device]);
    alice.merge_pending_commit(&group).unwrap();

    // She joins from the Welcome alone (the ratchet tree is inside it).
    let welcome = MlsMessage::from_bytes(add.welcome.as_deref().unwrap()).unwrap();
    let (mut carol_group, _) = carol.join_group(None, &welcome, None).unwrap();
    assert_eq!(carol_group.group_id(), group.0.as_slice());
    assert_eq!(carol_group.current_epoch(), 1);
    assert_eq!(alice.epoch(&group).unwrap(), 1);

    // hush to mls-rs.
    let ct = alice.encrypt(&group, b"hello from hush").unwrap();
    let got = carol_group
        .process_incoming_message(MlsMessage::from_bytes(&ct).unwrap())
        .unwrap();
    assert_eq!(text(got), b"hello from hush");

    // mls-rs to hush: a PrivateMessage hush (and the relay's reader) accepts.
    let reply = carol_group
        .encrypt_application_message(b"hello from mls-rs", vec![])
        .unwrap()
        .to_bytes()
        .unwrap();
    let header = hush_crypto::inspect::inspect(&reply).unwrap();
    assert_eq!((header.group_id.clone(), header.epoch), (group.clone(), 1));
    match alice.process(&reply).unwrap() {
        Processed::Application { plaintext, sender, .. } => {
            assert_eq!(plaintext, b"hello from mls-rs");
            assert_eq!((sender.user, sender.device), (UserId::from("carol"), carol_device));
        }
        other => panic!("{other:?}"),
    }

    // A later hush commit (a second hush device joins) is processed by mls-rs,
    // and all three talk in the new epoch.
    let mut bob = Device::create(MlsStore::in_memory(), UserId::from("bob"), DeviceConfig::default()).unwrap();
    let bob_kp = bob.generate_key_packages(1, 0).unwrap();
    let add_bob = alice.add_members(&group, &[&bob_kp[0]]).unwrap();
    alice.merge_pending_commit(&group).unwrap();
    bob.join(add_bob.welcome.as_deref().unwrap(), None).unwrap();
    let processed = carol_group
        .process_incoming_message(MlsMessage::from_bytes(&add_bob.message).unwrap())
        .unwrap();
    assert!(matches!(processed, ReceivedMessage::Commit(_)), "{processed:?}");
    assert_eq!(carol_group.current_epoch(), 2);
    assert_eq!(carol_group.roster().members().len(), 3);

    let update = alice.self_update(&group).unwrap();
    alice.merge_pending_commit(&group).unwrap();
    bob.process(&update.message).unwrap();
    carol_group
        .process_incoming_message(MlsMessage::from_bytes(&update.message).unwrap())
        .unwrap();
    assert_eq!(carol_group.current_epoch(), 3);

    let ct = alice.encrypt(&group, b"epoch 3").unwrap();
    let got = carol_group
        .process_incoming_message(MlsMessage::from_bytes(&ct).unwrap())
        .unwrap();
    assert_eq!(text(got), b"epoch 3");
    let from_carol = carol_group
        .encrypt_application_message(b"carol in epoch 3", vec![])
        .unwrap()
        .to_bytes()
        .unwrap();
    for d in [&mut alice, &mut bob] {
        match d.process(&from_carol).unwrap() {
            Processed::Application { plaintext, .. } => assert_eq!(plaintext, b"carol in epoch 3"),
            other => panic!("{other:?}"),
        }
    }
}
