//! Key packages against hostile peers: uploads are checked (cipher suite,
//! signatures, lifetime), one device's directory lookups are limited, and
//! one device's one-time packages drain at most so fast, after which claims
//! get its last-resort package.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{TestRelay, key_packages};
use hush_crypto::inspect::framing::{self, KeyPackageFields};
use hush_protocol::frame::{Reply, Request};
use hush_protocol::{ErrorCode, ErrorDetail, UserId, WireError};
use hush_sdk::wire::{ClientError, Identity, WireClient};

fn refusal(r: Result<Reply, ClientError>) -> WireError {
    match r {
        Err(ClientError::Relay(e)) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn upload(c: &WireClient, one_time: Vec<Bytes>, last_resort: Option<Bytes>) -> Result<Reply, ClientError> {
    c.request(Request::UploadKeyPackages { one_time, last_resort }).await
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A key package of `id`'s own leaf, signed by `signer`, with `change`
/// applied to its fields first.
fn built(id: &Identity, signer: &Identity, change: impl FnOnce(&mut KeyPackageFields<'_>)) -> Bytes {
    let key = id.public_key();
    let identity = [&[1u8][..], &id.device().0, id.user.0.as_bytes()].concat();
    let mut fields = KeyPackageFields {
        cipher_suite: 1,
        signature_key: &key,
        identity: &identity,
        not_before: now_secs() - 3600,
        not_after: now_secs() + 3600,
        last_resort: false,
    };
    change(&mut fields);
    Bytes::from(framing::key_package(&fields, |m| signer.sign(m).0.to_vec()))
}

#[tokio::test]
async fn uploads_must_be_signed_current_and_of_an_ed25519_cipher_suite() {
    let relay = TestRelay::start().await;
    let mallory = Identity::generate("mallory");
    let cm = relay.connect(&mallory).await;

    // A real package with one byte of its init key changed: its signature no
    // longer verifies.
    let (mut real, _) = key_packages(&mallory, 1);
    let mut tampered = real.remove(0).to_vec();
    tampered[9] ^= 1;
    let e = refusal(upload(&cm, vec![Bytes::from(tampered)], None).await);
    assert_eq!(e.code, ErrorCode::InvalidMls, "{e:?}");
    assert!(e.message.contains("signature"), "{e:?}");

    // Built packages: well signed, they are accepted; then one field at a time
    // is wrong.
    let good = built(&mallory, &mallory, |_| {});
    assert_eq!(
        upload(&cm, vec![good], None).await.unwrap(),
        Reply::KeyPackageCount {
            one_time: 1,
            last_resort: false
        }
    );
    let other = Identity::generate("mallory");
    let cases = [
        ("signature", built(&mallory, &other, |_| {})),
        ("cipher suite", built(&mallory, &mallory, |f| f.cipher_suite = 2)),
        ("lifetime", built(&mallory, &mallory, |f| f.not_after = now_secs() - 1)),
        (
            "lifetime",
            built(&mallory, &mallory, |f| {
                (f.not_before, f.not_after) = (u64::MAX, u64::MAX - 1)
            }),
        ),
    ];
    for (what, package) in cases {
        let e = refusal(upload(&cm, vec![package.clone()], None).await);
        assert_eq!(e.code, ErrorCode::InvalidMls, "{what}: {e:?}");
        assert!(e.message.contains(what), "{what}: {e:?}");
        // Nor as the last-resort package, nor beside good ones.
        let last = built(&mallory, &mallory, |f| f.last_resort = true);
        let e = refusal(upload(&cm, vec![built(&mallory, &mallory, |_| {}), package], Some(last)).await);
        assert_eq!(e.code, ErrorCode::InvalidMls, "{what}: {e:?}");
    }
    // Nothing refused was stored: still the one package.
    assert_eq!(
        upload(&cm, vec![], None).await.unwrap(),
        Reply::KeyPackageCount {
            one_time: 1,
            last_resort: false
        }
    );
    relay.stop().await;
}

fn claim(user: &UserId) -> Request {
    Request::ClaimKeyPackages {
        user: user.clone(),
        device: None,
    }
}

#[tokio::test]
async fn one_device_may_look_up_other_users_only_so_fast() {
    // Three lookups, refilled at one a minute: none during the test.
    let relay = TestRelay::start_with(|c| {
        c.limits.lookups_burst = 3.0;
        c.limits.lookups_per_minute = 1.0;
    })
    .await;
    let (bob, mallory) = (Identity::generate("bob"), Identity::generate("mallory"));
    let cb = relay.connect(&bob).await;
    let cm = relay.connect(&mallory).await;
    let (one_time, last) = key_packages(&bob, 4);
    upload(&cb, one_time, Some(last)).await.unwrap();

    // A claim of one device and a device list take one each.
    for _ in 0..2 {
        assert!(matches!(cm.request(claim(&bob.user)).await.unwrap(), Reply::KeyPackages(p) if p.len() == 1));
    }
    let listed = cm
        .request(Request::ListDevices { user: bob.user.clone() })
        .await
        .unwrap();
    assert!(matches!(listed, Reply::Devices(d) if d.len() == 1));

    // Spent: claims, lists, and claims of users that do not exist (which
    // would otherwise say `NotFound`) are refused with a wait.
    let nobody = UserId("nobody".into());
    for request in [
        claim(&bob.user),
        Request::ListDevices { user: bob.user.clone() },
        claim(&nobody),
    ] {
        let e = refusal(cm.request(request).await);
        assert_eq!(e.code, ErrorCode::RateLimited, "{e:?}");
        assert!(
            matches!(e.detail, ErrorDetail::RetryAfterMs(ms) if ms > 0 && ms <= 60_000),
            "{e:?}"
        );
    }
    // Looking up your own user is not counted; another device has its own
    // budget.
    assert!(matches!(
        cm.request(Request::ListDevices {
            user: mallory.user.clone()
        })
        .await
        .unwrap(),
        Reply::Devices(_)
    ));
    assert!(matches!(
        cb.request(claim(&bob.user)).await.unwrap(),
        Reply::KeyPackages(_)
    ));
    let carol = Identity::generate("carol");
    let cc = relay.connect(&carol).await;
    assert_eq!(refusal(cc.request(claim(&nobody)).await).code, ErrorCode::NotFound);
    relay.stop().await;
}

#[tokio::test]
async fn one_time_packages_drain_at_most_so_fast_then_claims_get_the_last_resort() {
    let relay = TestRelay::start_with(|c| c.limits.one_time_claims_per_hour = 2.0).await;
    let (bob, alice, mallory) = (
        Identity::generate("bob"),
        Identity::generate("alice"),
        Identity::generate("mallory"),
    );
    let cb = relay.connect(&bob).await;
    let ca = relay.connect(&alice).await;
    let cm = relay.connect(&mallory).await;
    let (one_time, last) = key_packages(&bob, 5);
    upload(&cb, one_time.clone(), Some(last.clone())).await.unwrap();

    let claimed = |r: Reply| match r {
        Reply::KeyPackages(mut p) => {
            assert_eq!(p.len(), 1);
            let p = p.pop().unwrap();
            (p.key_package, p.last_resort)
        }
        other => panic!("{other:?}"),
    };
    // Two one-time packages, whoever claims them; after that, every claimer
    // gets the last-resort package, which is not consumed.
    assert_eq!(
        claimed(cm.request(claim(&bob.user)).await.unwrap()),
        (one_time[0].clone(), false)
    );
    assert_eq!(
        claimed(ca.request(claim(&bob.user)).await.unwrap()),
        (one_time[1].clone(), false)
    );
    for c in [&cm, &ca, &cm] {
        assert_eq!(
            claimed(c.request(claim(&bob.user)).await.unwrap()),
            (last.clone(), true)
        );
    }
    // Bob's other three one-time packages are still there.
    assert_eq!(
        upload(&cb, vec![], None).await.unwrap(),
        Reply::KeyPackageCount {
            one_time: 3,
            last_resort: true
        }
    );
    relay.stop().await;
}
