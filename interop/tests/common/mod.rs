//! What the interop tests share: mls-rs members with hush credentials, hush
//! devices, and the checks that both sides see the same group.
// Each test binary uses only some of these.
#![allow(dead_code)]

use hush_crypto::{Device, DeviceConfig, DeviceCredential, MlsStore, Processed};
use hush_protocol::ephemeral::{self, HEADER_LEN, NONCE_LEN, SIGNATURE_LEN};
use hush_protocol::{DeviceId, GroupId, UserId, roster};
use mls_rs::client_builder::MlsConfig;
use mls_rs::crypto::SignatureSecretKey;
use mls_rs::group::{CommitOutput, ReceivedMessage};
use mls_rs::identity::SigningIdentity;
use mls_rs::identity::basic::{BasicCredential, BasicIdentityProvider};
use mls_rs::mls_rules::{CommitOptions, DefaultMlsRules, EncryptionOptions};
use mls_rs::{CipherSuite, CipherSuiteProvider, Client, CryptoProvider, Group, MlsMessage};
use mls_rs_crypto_rustcrypto::RustCryptoProvider;

/// hush's default: MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.
pub const SUITE: CipherSuite = CipherSuite::CURVE25519_AES128;

/// An mls-rs client with a hush credential, and what the tests need to act
/// as that device outside MLS (its device id, its signing key).
pub struct RsMember<C: MlsConfig> {
    pub client: Client<C>,
    pub credential: DeviceCredential,
    pub secret: SignatureSecretKey,
}

impl<C: MlsConfig> RsMember<C> {
    pub fn device(&self) -> DeviceId {
        self.credential.device
    }

    /// A fresh KeyPackage, as an `MLSMessage`.
    pub fn key_package(&self) -> Vec<u8> {
        self.client
            .generate_key_package_message(Default::default(), Default::default(), None)
            .unwrap()
            .to_bytes()
            .unwrap()
    }
}

/// An mls-rs client whose basic credential is a hush credential for `user`:
/// `0x01 || device id || user`, the device id derived from its Ed25519 key.
/// Like hush, it sends every group message (proposals and commits too) as a
/// `PrivateMessage`: hush accepts nothing else. Its Welcomes carry the
/// ratchet tree (mls-rs's default, and hush's).
pub fn mls_rs_member(user: &str) -> RsMember<impl MlsConfig> {
    member_with(user, CommitOptions::new())
}

/// Like [`mls_rs_member`], but its Welcomes leave the ratchet tree out: the
/// joiner gets it beside the Welcome.
pub fn mls_rs_member_sending_tree_beside(user: &str) -> RsMember<impl MlsConfig> {
    member_with(user, CommitOptions::new().with_ratchet_tree_extension(false))
}

fn member_with(user: &str, commit_options: CommitOptions) -> RsMember<impl MlsConfig> {
    let crypto = RustCryptoProvider::default();
    let suite = crypto.cipher_suite_provider(SUITE).unwrap();
    let (secret, public) = suite.signature_key_generate().unwrap();
    let key: [u8; 32] = public.as_bytes().try_into().unwrap();
    let credential = DeviceCredential {
        user: UserId::from(user),
        device: DeviceId::from_public_key(&key),
    };
    let signing_identity = SigningIdentity::new(BasicCredential::new(credential.encode()).into_credential(), public);
    let mut encryption = EncryptionOptions::default();
    encryption.encrypt_control_messages = true;
    let client = Client::builder()
        .identity_provider(BasicIdentityProvider)
        .crypto_provider(crypto)
        .mls_rules(
            DefaultMlsRules::new()
                .with_encryption_options(encryption)
                .with_commit_options(commit_options),
        )
        .signing_identity(signing_identity, secret.clone(), SUITE)
        .build();
    RsMember {
        client,
        credential,
        secret,
    }
}

pub fn hush_device(user: &str) -> Device {
    Device::create(MlsStore::in_memory(), UserId::from(user), DeviceConfig::default()).unwrap()
}

/// One key package of a hush device.
pub fn hush_key_package(device: &mut Device) -> Vec<u8> {
    device.generate_key_packages(1, 0).unwrap().remove(0)
}

/// The plaintext of an application message mls-rs received.
pub fn text(received: ReceivedMessage) -> Vec<u8> {
    match received {
        ReceivedMessage::ApplicationMessage(m) => m.data().to_vec(),
        other => panic!("expected an application message, got {other:?}"),
    }
}

/// mls-rs processes `message` (bytes hush sent).
pub fn rs_process<C: MlsConfig>(group: &mut Group<C>, message: &[u8]) -> ReceivedMessage {
    group
        .process_incoming_message(MlsMessage::from_bytes(message).unwrap())
        .unwrap()
}

/// hush processes an application message: its sender and plaintext.
pub fn hush_reads(device: &mut Device, message: &[u8]) -> (DeviceCredential, Vec<u8>) {
    match device.process(message).unwrap() {
        Processed::Application { sender, plaintext, .. } => (sender, plaintext),
        other => panic!("expected an application message, got {other:?}"),
    }
}

/// The leaf of `device` in an mls-rs group.
pub fn rs_leaf<C: MlsConfig>(group: &Group<C>, device: DeviceId) -> u32 {
    group
        .roster()
        .members()
        .into_iter()
        .find(|m| member_credential(&m.signing_identity).device == device)
        .unwrap()
        .index
}

fn member_credential(identity: &SigningIdentity) -> DeviceCredential {
    DeviceCredential::decode(&identity.credential.as_basic().unwrap().identifier).unwrap()
}

/// mls-rs commits: adds the `add` key packages, removes the `remove`
/// leaves, and takes in every proposal it holds (by reference). Its
/// authenticated data is the roster binding hush requires of every commit,
/// `added` and `removed` being what the whole commit changes. mls-rs merges
/// it at once.
pub fn rs_commit<C: MlsConfig>(
    group: &mut Group<C>,
    add: &[&[u8]],
    remove: &[u32],
    (added, removed): (&[DeviceId], &[DeviceId]),
) -> CommitOutput {
    let mut builder = group.commit_builder();
    for kp in add {
        builder = builder.add_member(MlsMessage::from_bytes(kp).unwrap()).unwrap();
    }
    for leaf in remove {
        builder = builder.remove_member(*leaf).unwrap();
    }
    let out = builder
        .authenticated_data(roster::binding(added, removed))
        .build()
        .unwrap();
    group.apply_pending_commit().unwrap();
    out
}

/// hush processes another member's commit: its sender, the new epoch, the
/// devices it added and removed.
pub fn hush_commit(device: &mut Device, message: &[u8]) -> (DeviceId, u64, Vec<DeviceId>, Vec<DeviceId>) {
    match device.process(message).unwrap() {
        Processed::Commit {
            sender,
            epoch,
            added,
            removed,
            ..
        } => (
            sender.device,
            epoch,
            added.iter().map(|c| c.device).collect(),
            removed.iter().map(|c| c.device).collect(),
        ),
        other => panic!("expected a commit, got {other:?}"),
    }
}

/// hush and mls-rs see the same epoch and the same members at the same
/// leaves, with the same keys and credentials.
pub fn same_roster<C: MlsConfig>(hush: &mut Device, group: &GroupId, rs: &Group<C>) {
    assert_eq!(hush.epoch(group).unwrap(), rs.current_epoch());
    let mut seen_by_hush: Vec<(u32, Vec<u8>, DeviceCredential)> = hush
        .members(group)
        .unwrap()
        .into_iter()
        .map(|m| (m.leaf, m.public_key.to_vec(), m.credential))
        .collect();
    let mut seen_by_rs: Vec<(u32, Vec<u8>, DeviceCredential)> = rs
        .roster()
        .members()
        .into_iter()
        .map(|m| {
            let credential = member_credential(&m.signing_identity);
            (m.index, m.signing_identity.signature_key.to_vec(), credential)
        })
        .collect();
    seen_by_hush.sort_by_key(|m| m.0);
    seen_by_rs.sort_by_key(|m| m.0);
    assert_eq!(seen_by_hush, seen_by_rs);
}

/// hush and mls-rs derive the same exporter secret for the epoch: an
/// ephemeral signal (sealed with the key hush exports, see
/// `hush_protocol::ephemeral`) goes from hush to mls-rs, which opens it with
/// the key it exports itself, and another goes back, sealed and signed by
/// the mls-rs member, which hush opens and attributes to it.
pub fn same_exporter<C: MlsConfig>(hush: &mut Device, group: &GroupId, rs: &Group<C>, rs_member: &RsMember<C>) {
    let suite = RustCryptoProvider::default().cipher_suite_provider(SUITE).unwrap();
    let epoch = rs.current_epoch();
    let key = rs
        .export_secret(ephemeral::EXPORTER_LABEL.as_bytes(), &group.0, suite.aead_key_size())
        .unwrap();

    let sealed = hush.seal_ephemeral(group, b"hush is typing").unwrap();
    let header = ephemeral::header(&sealed).unwrap();
    assert_eq!(header.epoch, epoch);
    let aad = ephemeral::associated_data(group, epoch, hush.device_id());
    let inner = suite
        .aead_open(&key, &sealed[HEADER_LEN..], Some(&aad), &header.nonce)
        .unwrap();
    assert_eq!(&inner[SIGNATURE_LEN..], b"hush is typing");

    let nonce: [u8; NONCE_LEN] = suite.random_bytes_vec(NONCE_LEN).unwrap().try_into().unwrap();
    let aad = ephemeral::associated_data(group, epoch, rs_member.device());
    let plaintext = b"mls-rs is typing";
    let mut inner = suite
        .sign(&rs_member.secret, &ephemeral::signed_bytes(&aad, plaintext))
        .unwrap();
    inner.extend_from_slice(plaintext);
    let mut sealed = ephemeral::encode_header(epoch, &nonce).to_vec();
    sealed.extend(suite.aead_seal(&key, &inner, Some(&aad), &nonce).unwrap());
    let (sender, opened) = hush.open_ephemeral(group, rs_member.device(), &sealed).unwrap();
    assert_eq!((sender, opened), (rs_member.credential.clone(), plaintext.to_vec()));
}
