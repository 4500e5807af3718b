//! Identity certificates: with an identity authority configured, a device
//! takes in only leaves the authority certified for their user and key (key
//! packages it adds, the members of a group it joins, devices a commit adds).
#![allow(clippy::unwrap_used)]

use ed25519_dalek::SigningKey;
use hush_crypto::{CredentialError, Device, DeviceConfig, DeviceIdentity, Error, MlsStore, certify};
use hush_protocol::{GroupId, UserId};

fn authority() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn config() -> DeviceConfig {
    DeviceConfig::default().identity_authority(authority().verifying_key().to_bytes())
}

/// A device of `user`, certified by `by` (for `claimed`, which may differ).
fn device(user: &str, claimed: Option<&str>, by: Option<&SigningKey>) -> Device {
    let mut identity = DeviceIdentity::generate(UserId::from(user)).unwrap();
    if let Some(by) = by {
        let cert = certify(by, &UserId::from(claimed.unwrap_or(user)), &identity.public_key());
        identity = identity.with_certificate(cert);
    }
    Device::with_identity(MlsStore::in_memory(), identity, config()).unwrap()
}

fn refused_as(r: Result<impl std::fmt::Debug, Error>) -> CredentialError {
    match r {
        Err(Error::Credential(e)) => e,
        other => panic!("expected a credential error, got {other:?}"),
    }
}

#[test]
fn only_certified_leaves_are_taken_in() {
    let authority = authority();
    let mut alice = device("alice", None, Some(&authority));
    let mut bob = device("bob", None, Some(&authority));
    let group = GroupId(b"certified".to_vec());
    alice.create_group(&group).unwrap();

    // Key packages: none, a forged authority, a certificate for another user.
    let mut uncertified = device("mallory", None, None);
    let mut self_signed = device("mallory", None, Some(&SigningKey::from_bytes(&[7; 32])));
    let mut renamed = device("bob", Some("mallory"), Some(&authority));
    for (d, why) in [
        (&mut uncertified, "none"),
        (&mut self_signed, "bad"),
        (&mut renamed, "bad"),
    ] {
        let kp = d.generate_key_packages(1, 0).unwrap();
        let e = refused_as(alice.add_members(&group, &[kp[0].as_slice()]));
        match why {
            "none" => assert!(matches!(e, CredentialError::NotCertified(_)), "{e:?}"),
            _ => assert!(matches!(e, CredentialError::BadCertificate(_)), "{e:?}"),
        }
    }

    // A certified device is added, and joins.
    let kp = bob.generate_key_packages(1, 0).unwrap();
    let commit = alice.add_members(&group, &[kp[0].as_slice()]).unwrap();
    alice.merge_pending_commit(&group).unwrap();
    assert_eq!(bob.join(commit.welcome.as_ref().unwrap(), None).unwrap(), group);

    // A group made by an uncertified device is not joined by a device with
    // an authority.
    let mut forger = device("bob", None, None);
    let other = GroupId(b"forged".to_vec());
    forger.create_group(&other).unwrap();
    let mut carol = device("carol", None, Some(&authority));
    let kp = carol.generate_key_packages(1, 0).unwrap();
    // The forger's own device has an authority configured too, but makes the
    // group anyway: it is carol who checks.
    let commit = forger.add_members(&other, &[kp[0].as_slice()]).unwrap();
    let e = refused_as(carol.join(commit.welcome.as_ref().unwrap(), None));
    assert!(matches!(e, CredentialError::NotCertified(_)), "{e:?}");
}

#[test]
fn a_commit_adding_an_uncertified_device_is_not_merged() {
    let authority = authority();
    let mut alice = device("alice", None, Some(&authority));
    let mut bob = device("bob", None, Some(&authority));
    let group = GroupId(b"commit".to_vec());
    alice.create_group(&group).unwrap();
    let kp = bob.generate_key_packages(1, 0).unwrap();
    let commit = alice.add_members(&group, &[kp[0].as_slice()]).unwrap();
    alice.merge_pending_commit(&group).unwrap();
    bob.join(commit.welcome.as_ref().unwrap(), None).unwrap();

    // Bob's device has no authority configured: it adds mallory's leaf.
    let bob_store = bob.into_store();
    let mut lax = Device::open(bob_store, DeviceConfig::default()).unwrap();
    let mut mallory = Device::create(MlsStore::in_memory(), UserId::from("mallory"), DeviceConfig::default()).unwrap();
    let kp = mallory.generate_key_packages(1, 0).unwrap();
    let commit = lax.add_members(&group, &[kp[0].as_slice()]).unwrap();
    lax.merge_pending_commit(&group).unwrap();
    let e = refused_as(alice.process(&commit.message));
    assert!(matches!(e, CredentialError::NotCertified(_)), "{e:?}");
    assert_eq!(alice.members(&group).unwrap().len(), 2, "not merged");
}
