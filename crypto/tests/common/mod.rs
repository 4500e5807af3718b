//! Test harness: devices that persist to disk and restart, and a stand-in for
//! the relay's ordering rule.
//!
//! The relay is not part of these tests. [`Sequencer`] reproduces the one rule
//! of the relay that MLS correctness depends on: each group has one ordered
//! log, and a commit is appended only if it was made at the group's current
//! epoch (which it then advances); any other commit is refused as stale with
//! the current epoch. It reads the epoch with `inspect`, as the relay does.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use hush_crypto::inspect::{ContentType, inspect};
use hush_crypto::{Device, DeviceConfig, MlsStore, Processed};
use hush_protocol::{DeviceId, GroupId, UserId};

/// A device whose state lives in a redb file and can be restarted.
pub struct Client {
    pub name: &'static str,
    path: PathBuf,
    config: DeviceConfig,
    device: Option<Device>,
    /// Next log index to process (the relay's per-device cursor).
    pub cursor: usize,
}

impl Client {
    pub fn new(dir: &tempfile::TempDir, name: &'static str, user: &str) -> Self {
        Self::with_config(dir, name, user, DeviceConfig::default())
    }

    pub fn with_config(dir: &tempfile::TempDir, name: &'static str, user: &str, config: DeviceConfig) -> Self {
        let path = dir.path().join(format!("{name}.redb"));
        let device = Device::create(MlsStore::open(&path).unwrap(), UserId::from(user), config.clone()).unwrap();
        Client {
            name,
            path,
            config,
            device: Some(device),
            cursor: 0,
        }
    }

    pub fn d(&mut self) -> &mut Device {
        self.device.as_mut().unwrap()
    }

    pub fn id(&self) -> DeviceId {
        self.device.as_ref().unwrap().device_id()
    }

    /// Drops the device (closing its store) and opens it again from disk.
    pub fn restart(&mut self) {
        let id = self.id();
        drop(self.device.take());
        let device = Device::open(MlsStore::open(&self.path).unwrap(), self.config.clone()).unwrap();
        assert_eq!(device.device_id(), id);
        self.device = Some(device);
    }
}

/// The relay's ordering rule for one log shared by every group in a test.
#[derive(Default)]
pub struct Sequencer {
    epochs: HashMap<GroupId, u64>,
    /// (sender, MLS bytes), in order.
    pub log: Vec<(DeviceId, Vec<u8>)>,
}

impl Sequencer {
    /// Appends a message, or refuses a commit not made at the current epoch
    /// (returning the current epoch, as the relay's "stale epoch" error does).
    pub fn submit(&mut self, from: DeviceId, message: &[u8]) -> Result<usize, u64> {
        let header = inspect(message).unwrap();
        let epoch = self.epochs.entry(header.group_id.clone()).or_insert(0);
        if header.content_type == ContentType::Commit {
            if header.epoch != *epoch {
                return Err(*epoch);
            }
            *epoch += 1;
        }
        self.log.push((from, message.to_vec()));
        Ok(self.log.len())
    }

    /// Where a device added by the last accepted commit starts reading.
    pub fn head(&self) -> usize {
        self.log.len()
    }

    /// Delivers everything after the client's cursor, skipping its own
    /// messages (the SDK knows them from the relay's acknowledgements).
    pub fn deliver(&self, client: &mut Client) -> Vec<Processed> {
        let me = client.id();
        let mut out = Vec::new();
        while client.cursor < self.log.len() {
            let (from, message) = &self.log[client.cursor];
            client.cursor += 1;
            if *from == me {
                continue;
            }
            match client.d().process(message) {
                Ok(p) => out.push(p),
                Err(e) => panic!("{} failed to process log entry {}: {e}", client.name, client.cursor - 1),
            }
        }
        out
    }
}

/// The application plaintexts in a batch of processed messages.
pub fn texts(processed: &[Processed]) -> Vec<Vec<u8>> {
    processed
        .iter()
        .filter_map(|p| match p {
            Processed::Application { plaintext, .. } => Some(plaintext.clone()),
            _ => None,
        })
        .collect()
}

/// Alice's group `g` with Bob added and joined, at epoch 1.
pub fn alice_and_bob(dir: &tempfile::TempDir) -> (Client, Client, Sequencer, GroupId) {
    let mut a = Client::new(dir, "alice", "alice");
    let mut b = Client::new(dir, "bob", "bob");
    let mut log = Sequencer::default();
    let group = GroupId(b"g".to_vec());
    let kp = b.d().generate_key_packages(1, 0).unwrap();
    a.d().create_group(&group).unwrap();
    let commit = a.d().add_members(&group, &[&kp[0]]).unwrap();
    log.submit(a.id(), &commit.message).unwrap();
    a.d().merge_pending_commit(&group).unwrap();
    b.d().join(commit.welcome.as_deref().unwrap(), None).unwrap();
    b.cursor = log.head();
    (a, b, log, group)
}
