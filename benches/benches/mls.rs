//! MLS micro-benchmarks of `hush-crypto` (numbers in `BENCHMARKS.md`, section
//! "MLS (hush-crypto)").
//!
//! Run: `cargo bench -p hush-bench --bench mls`
//!
//! * `mls/ed25519_sign_verify_baseline`: one Ed25519 signature and one strict
//!   verification, the floor under every MLS message (each is signed by its
//!   sender and verified by each reader).
//! * `mls/encrypt_100B/*`, `mls/decrypt_100B/*`, `mls/encrypt_decrypt_100B/*`:
//!   a 100-byte application message in a group of two, with the store in
//!   memory (the MLS work alone) and in redb on disk (plus one durable,
//!   fsynced commit per operation).
//! * `mls/add_member/N`: a member adds one device to a group of N (commit and
//!   Welcome, state written to an in-memory store); the commit is discarded
//!   after each iteration so N stays fixed.
//! * `mls/join/1000`: a new device processes the Welcome into a group of 1000
//!   (tree inside the Welcome), including checking every member's leaf.
//!
//! Groups are grown the way real ones are: the owner adds one device per
//! commit (never one bulk add), and each new device, once joined, commits a
//! self-update, as active members do; so the tree's parent nodes are filled
//! rather than left blank. Growing a group of 1000 this way takes minutes, so
//! the owner's state is grown in a redb file under `target/mls-bench-cache/`
//! and reused by later runs (delete the folder to grow the groups again); the
//! benchmarks run on an in-memory copy of it. Message sizes are printed at
//! the end.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use hush_crypto::{Device, DeviceConfig, MlsStore};
use hush_protocol::{GroupId, UserId};

fn device(name: &str) -> Device {
    Device::create(MlsStore::in_memory(), UserId::from(name), DeviceConfig::default()).unwrap()
}

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/mls-bench-cache")
}

/// The owner of a group of `size` members, on an in-memory copy of its state.
fn populated(size: usize) -> (Device, GroupId) {
    let group = GroupId(format!("bench-{size}").into_bytes());
    std::fs::create_dir_all(cache_dir()).unwrap();
    let path = cache_dir().join(format!("owner-{size}-v1.redb"));
    let cached = MlsStore::open(&path).ok().and_then(|store| {
        let mut owner = Device::open(store, DeviceConfig::default()).ok()?;
        (owner.members(&group).ok()?.len() == size).then_some(owner)
    });
    let owner = match cached {
        Some(owner) => owner,
        None => {
            // Absent or cut short by an interrupted run: grow it again.
            let _ = std::fs::remove_file(&path);
            let started = Instant::now();
            let store = MlsStore::open(&path).unwrap();
            let owner = grow(store, size, &group);
            eprintln!("grew a group of {size} in {:.1?}", started.elapsed());
            owner
        }
    };
    let snapshot = owner.into_store().snapshot_in_memory();
    (Device::open(snapshot, DeviceConfig::default()).unwrap(), group)
}

fn grow(store: MlsStore, size: usize, group: &GroupId) -> Device {
    let mut owner = Device::create(store, UserId::from("owner"), DeviceConfig::default()).unwrap();
    owner.create_group(group).unwrap();
    for i in 1..size {
        let mut joiner = device(&format!("member-{i}"));
        let kp = joiner.generate_key_packages(1, 0).unwrap();
        let commit = owner.add_members(group, &[&kp[0]]).unwrap();
        owner.merge_pending_commit(group).unwrap();
        joiner.join(commit.welcome.as_deref().unwrap(), None).unwrap();
        let update = joiner.self_update(group).unwrap();
        joiner.merge_pending_commit(group).unwrap();
        owner.process(&update.message).unwrap();
    }
    owner
}

/// Alice and Bob in a group of two, stores in memory or in redb files under `dir`.
fn pair(dir: Option<&Path>, tag: &str) -> (Device, Device, GroupId) {
    let config = DeviceConfig::default();
    let store = |name: &str| match dir {
        Some(dir) => MlsStore::open(dir.join(format!("{tag}-{name}.redb"))).unwrap(),
        None => MlsStore::in_memory(),
    };
    let mut a = Device::create(store("a"), UserId::from("alice"), config.clone()).unwrap();
    let mut b = Device::create(store("b"), UserId::from("bob"), config).unwrap();
    let group = GroupId(b"pair".to_vec());
    let kp = b.generate_key_packages(1, 0).unwrap();
    a.create_group(&group).unwrap();
    let commit = a.add_members(&group, &[&kp[0]]).unwrap();
    a.merge_pending_commit(&group).unwrap();
    b.join(commit.welcome.as_deref().unwrap(), None).unwrap();
    (a, b, group)
}

/// The floor under every application message: MLS signs each one with the
/// sender's Ed25519 key and each reader verifies it (strictly, as openmls does).
fn ed25519_baseline(c: &mut Criterion) {
    use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
    let key = SigningKey::from_bytes(&[7; 32]);
    let public = key.verifying_key().to_bytes();
    let message = [0x42u8; 200];
    c.bench_function("mls/ed25519_sign_verify_baseline", |bench| {
        bench.iter(|| {
            let signature = key.sign(&message);
            let verifying = VerifyingKey::from_bytes(&public).unwrap();
            black_box(verifying.verify_strict(&message, &signature).is_ok())
        })
    });
}

fn encrypt_decrypt(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let message = [0x42u8; 100];
    for (label, on_disk) in [("memory", None), ("redb", Some(dir.path()))] {
        // Each benchmark gets its own pair: a sender that runs far ahead of
        // its reader would exceed the forward-distance bound.
        let (mut a, _, group) = pair(on_disk, "encrypt");
        c.bench_function(&format!("mls/encrypt_100B/{label}"), |bench| {
            bench.iter(|| black_box(a.encrypt(&group, &message).unwrap()))
        });
        // Decrypt in order, each ciphertext once: encrypt in the untimed setup.
        let (mut a, mut b, group) = pair(on_disk, "decrypt");
        c.bench_function(&format!("mls/decrypt_100B/{label}"), |bench| {
            bench.iter_batched(
                || a.encrypt(&group, &message).unwrap(),
                |ct| black_box(b.process(&ct).unwrap()),
                BatchSize::SmallInput,
            )
        });
        let (mut a, mut b, group) = pair(on_disk, "both");
        c.bench_function(&format!("mls/encrypt_decrypt_100B/{label}"), |bench| {
            bench.iter(|| {
                let ct = a.encrypt(&group, &message).unwrap();
                black_box(b.process(&ct).unwrap())
            })
        });
    }
}

struct Sizes {
    members: usize,
    commit: usize,
    welcome_with_tree: usize,
    tree: usize,
}

fn add_member_and_join(c: &mut Criterion) {
    let mut sizes = Vec::new();
    for size in [10usize, 100, 1000] {
        let (mut owner, group) = populated(size);
        let mut joiner = device("joiner");
        let kp = joiner.generate_key_packages(1, 0).unwrap();

        let mut bench_group = c.benchmark_group("mls/add_member");
        bench_group.sample_size(if size >= 1000 { 20 } else { 50 });
        bench_group.measurement_time(Duration::from_secs(if size >= 1000 { 10 } else { 5 }));
        bench_group.bench_function(size.to_string(), |bench| {
            bench.iter(|| {
                let commit = owner.add_members(&group, &[&kp[0]]).unwrap();
                owner.discard_pending_commit(&group).unwrap();
                black_box(commit)
            })
        });
        bench_group.finish();

        if size == 1000 {
            let mut bench_group = c.benchmark_group("mls/join");
            bench_group.sample_size(10);
            bench_group.measurement_time(Duration::from_secs(20));
            bench_group.bench_function(size.to_string(), |bench| {
                bench.iter_batched(
                    || {
                        let mut fresh = device("fresh");
                        let kp = fresh.generate_key_packages(1, 0).unwrap();
                        let commit = owner.add_members(&group, &[&kp[0]]).unwrap();
                        owner.discard_pending_commit(&group).unwrap();
                        (fresh, commit.welcome.unwrap())
                    },
                    |(mut fresh, welcome)| black_box(fresh.join(&welcome, None).unwrap()),
                    BatchSize::PerIteration,
                )
            });
            bench_group.finish();
        }

        // Sizes of the commit adding one device, of its Welcome (tree inside),
        // and of the tree of the new epoch alone (what travels beside a
        // Welcome without it).
        let commit = owner.add_members(&group, &[&kp[0]]).unwrap();
        owner.merge_pending_commit(&group).unwrap();
        sizes.push(Sizes {
            members: size,
            commit: commit.message.len(),
            welcome_with_tree: commit.welcome.as_ref().map_or(0, Vec::len),
            tree: owner.export_ratchet_tree(&group).unwrap().len(),
        });
    }
    eprintln!("\nmessage sizes in bytes, adding one device to a group of N");
    eprintln!("| N | commit | Welcome, tree inside | ratchet tree alone | Welcome without tree (difference) |");
    eprintln!("|---|---|---|---|---|");
    for s in sizes {
        eprintln!(
            "| {} | {} | {} | {} | {} |",
            s.members,
            s.commit,
            s.welcome_with_tree,
            s.tree,
            s.welcome_with_tree.saturating_sub(s.tree)
        );
    }
}

criterion_group!(benches, ed25519_baseline, encrypt_decrypt, add_member_and_join);
criterion_main!(benches);
