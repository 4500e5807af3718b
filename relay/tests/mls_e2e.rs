//! Issue 3's scenario with real MLS (hush-crypto) through a real relay: three
//! devices of two users; key packages uploaded to and claimed from the relay;
//! Welcomes through the relay inbox; exchange both ways; removal; self-update;
//! two members committing in the same epoch (the relay's MLS check sequences
//! them by the epoch in the bytes: one wins, the other gets `StaleEpoch`,
//! catches up from the log and retries); corrupted and truncated messages.
//! Every client is restarted from its on-disk state between steps: its MLS
//! store (redb) and the last log seq it processed per group.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use common::*;
use hush_crypto::{Device, DeviceConfig, DeviceIdentity, MlsStore, Processed};
use hush_protocol::frame::{
    ClientFrame, Direction, InboxKind, LogEntry, MessageKind, RelayFrame, Reply, Request, RosterChange, Send,
};
use hush_protocol::{DeviceId, ErrorCode, ErrorDetail, GroupId, UserId};
use hush_sdk::wire::{ClientError, Identity, WireClient};

/// A device: its MLS state and its processed-seq file on disk, its connection.
struct Member {
    name: &'static str,
    dir: PathBuf,
    key: Identity,
    device: Option<Device>,
    conn: Option<WireClient>,
    /// Highest log seq processed, per group (persisted in `dir/processed`).
    processed: BTreeMap<GroupId, u64>,
}

impl Member {
    async fn new(relay: &TestRelay, root: &tempfile::TempDir, name: &'static str, user: &str) -> Self {
        let dir = root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let key = Identity::generate(user);
        std::fs::write(dir.join("seed"), key.seed()).unwrap();
        let identity = DeviceIdentity::from_secret(UserId::from(user), key.seed()).unwrap();
        let store = MlsStore::open(dir.join("mls.redb")).unwrap();
        let device = Device::with_identity(store, identity, DeviceConfig::default()).unwrap();
        let conn = relay.connect(&key).await;
        let m = Member {
            name,
            dir,
            key,
            device: Some(device),
            conn: Some(conn),
            processed: BTreeMap::new(),
        };
        m.save();
        m
    }

    fn d(&mut self) -> &mut Device {
        self.device.as_mut().unwrap()
    }

    fn c(&self) -> &WireClient {
        self.conn.as_ref().unwrap()
    }

    fn id(&self) -> DeviceId {
        self.key.device()
    }

    fn save(&self) {
        let text: String = self
            .processed
            .iter()
            .map(|(g, seq)| format!("{} {seq}\n", g.to_hex()))
            .collect();
        std::fs::write(self.dir.join("processed"), text).unwrap();
    }

    /// Closes the connection and the MLS store, then opens both again from disk.
    async fn restart(&mut self, relay: &TestRelay) {
        let user = self.key.user.0.clone();
        drop(self.device.take());
        self.conn.take().unwrap().close().await;
        let seed: [u8; 32] = std::fs::read(self.dir.join("seed")).unwrap().try_into().unwrap();
        self.key = Identity::from_seed(&user, seed);
        let device = Device::open(
            MlsStore::open(self.dir.join("mls.redb")).unwrap(),
            DeviceConfig::default(),
        )
        .unwrap();
        assert_eq!(device.device_id(), self.key.device());
        self.device = Some(device);
        self.processed = std::fs::read_to_string(self.dir.join("processed"))
            .unwrap()
            .lines()
            .map(|l| {
                let (g, seq) = l.split_once(' ').unwrap();
                (GroupId(hex::decode(g).unwrap()), seq.parse().unwrap())
            })
            .collect();
        self.conn = Some(relay.connect(&self.key).await);
    }

    /// Uploads fresh key packages (two one-time, one last-resort).
    async fn upload_key_packages(&mut self) {
        let mut kps = self.d().generate_key_packages(2, 1).unwrap();
        let last_resort = kps.pop().map(Bytes::from);
        let reply = self
            .c()
            .request(Request::UploadKeyPackages {
                one_time: kps.into_iter().map(Bytes::from).collect(),
                last_resort,
            })
            .await
            .unwrap();
        assert_eq!(
            reply,
            Reply::KeyPackageCount {
                one_time: 2,
                last_resort: true
            }
        );
    }

    /// Claims one key package of `device` (a device of `user`) from the relay.
    async fn claim(&self, user: &str, device: DeviceId) -> Vec<u8> {
        let reply = self
            .c()
            .request(Request::ClaimKeyPackages {
                user: UserId::from(user),
                device: Some(device),
            })
            .await
            .unwrap();
        let Reply::KeyPackages(mut claimed) = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(claimed.len(), 1);
        let kp = claimed.pop().unwrap();
        assert_eq!((kp.device, kp.last_resort), (device, false));
        kp.key_package.to_vec()
    }

    /// Sends MLS bytes as the envelope the relay expects (kind and epoch read
    /// from the bytes by the sender, as the SDK does).
    async fn send(&self, group: &GroupId, mls: Vec<u8>, roster: Option<RosterChange>) -> Result<u64, ClientError> {
        let header = hush_crypto::inspect::inspect(&mls).unwrap();
        let reply = self
            .c()
            .request(Request::Send(Send {
                group: group.clone(),
                client_msg_id: rand::random(),
                kind: header.content_type.message_kind(),
                epoch: header.epoch,
                payload: Bytes::from(mls),
                roster,
            }))
            .await?;
        let Reply::Sent { seq, .. } = reply else {
            panic!("{reply:?}")
        };
        Ok(seq)
    }

    /// Encrypts and sends an application message; returns its seq.
    async fn say(&mut self, group: &GroupId, text: &str) -> u64 {
        let ct = self.d().encrypt(group, text.as_bytes()).unwrap();
        self.send(group, ct, None).await.unwrap()
    }

    /// Sends this device's pending commit; merges it if the relay accepts it.
    async fn commit(&mut self, group: &GroupId, commit: hush_crypto::Commit) -> Result<u64, ClientError> {
        let roster = RosterChange {
            add: commit.added.iter().map(|c| c.device).collect(),
            remove: commit.removed.iter().map(|c| c.device).collect(),
            welcome: commit.welcome.clone().map(Bytes::from),
        };
        match self.send(group, commit.message, Some(roster)).await {
            Ok(seq) => {
                self.d().merge_pending_commit(group).unwrap();
                self.mark(group, seq);
                Ok(seq)
            }
            Err(e) => Err(e),
        }
    }

    fn mark(&mut self, group: &GroupId, seq: u64) {
        let p = self.processed.entry(group.clone()).or_default();
        *p = (*p).max(seq);
        self.save();
    }

    /// The log entries after the last processed one, read with `History`.
    async fn unread(&self, group: &GroupId) -> Vec<LogEntry> {
        let mut from = self.processed.get(group).copied().unwrap_or(0) + 1;
        let mut out = Vec::new();
        loop {
            let reply = self
                .c()
                .request(Request::History {
                    group: group.clone(),
                    from_seq: from,
                    direction: Direction::Forward,
                    limit: 100,
                })
                .await
                .unwrap();
            let Reply::History { entries, next_from } = reply else {
                panic!("{reply:?}")
            };
            out.extend(entries);
            match next_from {
                Some(n) => from = n,
                None => return out,
            }
        }
    }

    /// Processes every unread entry of the group (skipping its own), acks them,
    /// and returns what processing gave, in log order.
    async fn catch_up(&mut self, group: &GroupId) -> Vec<Result<Processed, hush_crypto::Error>> {
        let mut out = Vec::new();
        for e in self.unread(group).await {
            if e.sender != self.id() {
                out.push(self.d().process(&e.payload));
            }
            self.mark(group, e.seq);
            self.c().ack(group, e.seq).await.unwrap();
        }
        out
    }

    /// Catches up and returns the application texts, failing on any error.
    async fn read(&mut self, group: &GroupId) -> Vec<String> {
        let name = self.name;
        self.catch_up(group)
            .await
            .into_iter()
            .filter_map(|r| match r {
                Ok(Processed::Application { plaintext, .. }) => Some(String::from_utf8(plaintext).unwrap()),
                Ok(_) => None,
                Err(e) => panic!("{name} could not process an entry: {e}"),
            })
            .collect()
    }

    /// Waits for the Welcome in the inbox, joins, and acks it.
    async fn join_from_inbox(&mut self, group: &GroupId, commit_seq: u64) {
        let f = wait_for(self.conn.as_mut().unwrap(), |f| matches!(f, RelayFrame::Inbox(_))).await;
        let RelayFrame::Inbox(entry) = f else { unreachable!() };
        assert_eq!(
            entry.kind,
            InboxKind::Welcome {
                group: group.clone(),
                commit_seq
            }
        );
        assert_eq!(&self.d().join(&entry.payload, None).unwrap(), group);
        self.c().send(&ClientFrame::AckInbox { seq: entry.seq }).await.unwrap();
        self.mark(group, commit_seq);
    }

    fn epoch(&mut self, group: &GroupId) -> u64 {
        self.d().epoch(group).unwrap()
    }
}

/// A commit sent as is (without merging), for racing two of them.
async fn send_commit(c: &WireClient, group: &GroupId, commit: &hush_crypto::Commit) -> Result<Reply, ClientError> {
    c.request(Request::Send(Send {
        group: group.clone(),
        client_msg_id: rand::random(),
        kind: MessageKind::Commit,
        epoch: commit.epoch,
        payload: Bytes::from(commit.message.clone()),
        roster: Some(RosterChange {
            add: vec![],
            remove: vec![],
            welcome: None,
        }),
    }))
    .await
}

async fn restart_all(relay: &TestRelay, members: &mut [&mut Member]) {
    for m in members {
        m.restart(relay).await;
    }
}

async fn relay_epoch(m: &Member, group: &GroupId) -> u64 {
    match m.c().request(Request::GetGroup { group: group.clone() }).await.unwrap() {
        Reply::Group(info) => info.epoch,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn three_devices_through_a_real_relay_with_restarts() {
    let relay = TestRelay::start().await;
    let root = tempfile::tempdir().unwrap();
    let mut a1 = Member::new(&relay, &root, "alice-phone", "alice").await;
    let mut a2 = Member::new(&relay, &root, "alice-laptop", "alice").await;
    let mut b = Member::new(&relay, &root, "bob", "bob").await;
    let g = gid("family");

    // Key packages go to the relay; the private parts survive a restart.
    a2.upload_key_packages().await;
    b.upload_key_packages().await;
    restart_all(&relay, &mut [&mut a1, &mut a2, &mut b]).await;

    // Create; claim both devices' key packages from the relay; add them in one
    // commit whose Welcome reaches them through their inboxes.
    create_group(a1.c(), &g, Default::default()).await;
    a1.d().create_group(&g).unwrap();
    let kp_a2 = a1.claim("alice", a2.id()).await;
    let kp_b = a1.claim("bob", b.id()).await;
    let add = a1.d().add_members(&g, &[&kp_a2, &kp_b]).unwrap();
    assert_eq!(add.epoch, 0);
    let commit_seq = a1.commit(&g, add).await.unwrap();
    assert_eq!(commit_seq, 1);
    a2.join_from_inbox(&g, commit_seq).await;
    b.join_from_inbox(&g, commit_seq).await;
    restart_all(&relay, &mut [&mut a1, &mut a2, &mut b]).await;
    assert_eq!([a1.epoch(&g), a2.epoch(&g), b.epoch(&g)], [1, 1, 1]);
    assert_eq!(relay_epoch(&a1, &g).await, 1);

    // Exchange both ways.
    a1.say(&g, "hello from alice's phone").await;
    assert_eq!(a2.read(&g).await, ["hello from alice's phone"]);
    assert_eq!(b.read(&g).await, ["hello from alice's phone"]);
    b.say(&g, "hi alice").await;
    assert_eq!(a1.read(&g).await, ["hi alice"]);
    assert_eq!(a2.read(&g).await, ["hi alice"]);
    restart_all(&relay, &mut [&mut a1, &mut a2, &mut b]).await;

    // Remove the laptop. The relay refuses its sends at once; once the others
    // moved on it cannot decrypt what they send.
    let removal = a1.d().remove_members(&g, &[a2.id()]).unwrap();
    assert_eq!(removal.removed.iter().map(|c| c.device).collect::<Vec<_>>(), [a2.id()]);
    let removal_bytes = removal.message.clone();
    a1.commit(&g, removal).await.unwrap();
    assert!(b.read(&g).await.is_empty());
    let after_removal = b.d().encrypt(&g, b"not for the laptop").unwrap();
    b.send(&g, after_removal.clone(), None).await.unwrap();
    assert_eq!(a1.read(&g).await, ["not for the laptop"]);
    let still = a2.d().encrypt(&g, b"am I still here?").unwrap();
    let refused = a2.send(&g, still, None).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::NotMember));
    let history = a2
        .c()
        .request(Request::History {
            group: g.clone(),
            from_seq: 1,
            direction: Direction::Forward,
            limit: 10,
        })
        .await
        .unwrap_err();
    assert_eq!(history.code(), Some(ErrorCode::NotMember));
    assert!(
        a2.d().process(&after_removal).is_err(),
        "a removed device decrypted a later message"
    );
    assert!(matches!(a2.d().process(&removal_bytes), Ok(Processed::Removed { .. })));
    assert!(a2.d().encrypt(&g, b"x").is_err());
    restart_all(&relay, &mut [&mut a1, &mut a2, &mut b]).await;

    // Self-update.
    let update = b.d().self_update(&g).unwrap();
    assert_eq!(update.epoch, 2);
    b.commit(&g, update).await.unwrap();
    let processed = a1.catch_up(&g).await;
    assert!(matches!(processed.as_slice(), [Ok(Processed::Commit { epoch: 3, .. })]));
    a1.say(&g, "after bob's update").await;
    assert_eq!(b.read(&g).await, ["after bob's update"]);
    restart_all(&relay, &mut [&mut a1, &mut b]).await;

    // Both commit in epoch 3 at the same time: the relay takes exactly one.
    let ua = a1.d().self_update(&g).unwrap();
    let ub = b.d().self_update(&g).unwrap();
    assert_eq!((ua.epoch, ub.epoch), (3, 3));
    let (ra, rb) = tokio::join!(send_commit(a1.c(), &g, &ua), send_commit(b.c(), &g, &ub));
    let (winner, loser, won_seq, lost) = match (ra, rb) {
        (Ok(Reply::Sent { seq, .. }), Err(e)) => (&mut a1, &mut b, seq, e),
        (Err(e), Ok(Reply::Sent { seq, .. })) => (&mut b, &mut a1, seq, e),
        other => panic!("exactly one commit must win: {other:?}"),
    };
    let ClientError::Relay(e) = lost else {
        panic!("{lost:?}")
    };
    assert_eq!(
        (e.code, e.detail),
        (ErrorCode::StaleEpoch, ErrorDetail::CurrentEpoch(4))
    );
    winner.d().merge_pending_commit(&g).unwrap();
    winner.mark(&g, won_seq);
    // The loser drops its commit, processes the winner's from the log, retries.
    loser.d().discard_pending_commit(&g).unwrap();
    let processed = loser.catch_up(&g).await;
    assert!(matches!(processed.as_slice(), [Ok(Processed::Commit { epoch: 4, .. })]));
    let retry = loser.d().self_update(&g).unwrap();
    assert_eq!(retry.epoch, 4);
    loser.commit(&g, retry).await.unwrap();
    let processed = winner.catch_up(&g).await;
    assert!(matches!(processed.as_slice(), [Ok(Processed::Commit { epoch: 5, .. })]));
    restart_all(&relay, &mut [&mut a1, &mut b]).await;
    assert_eq!([a1.epoch(&g), b.epoch(&g), relay_epoch(&a1, &g).await], [5, 5, 5]);
    a1.say(&g, "in sync").await;
    assert_eq!(b.read(&g).await, ["in sync"]);
    b.say(&g, "in sync too").await;
    assert_eq!(a1.read(&g).await, ["in sync too"]);

    // A corrupted message passes the relay (its header is intact) and fails
    // to decrypt; a truncated one is refused by the relay and fails locally;
    // the group stays usable.
    let mut corrupted = a1.d().encrypt(&g, b"corrupted").unwrap();
    *corrupted.last_mut().unwrap() ^= 0x01;
    a1.send(&g, corrupted, None).await.unwrap();
    let processed = b.catch_up(&g).await;
    assert!(matches!(processed.as_slice(), [Err(_)]), "{processed:?}");
    let truncated_full = a1.d().encrypt(&g, b"truncated").unwrap();
    let truncated = truncated_full[..truncated_full.len() - 10].to_vec();
    assert!(b.d().process(&truncated).is_err());
    let refused = a1
        .c()
        .request(Request::Send(Send {
            group: g.clone(),
            client_msg_id: rand::random(),
            kind: MessageKind::Application,
            epoch: 5,
            payload: Bytes::from(truncated),
            roster: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::InvalidMls));
    restart_all(&relay, &mut [&mut a1, &mut b]).await;
    a1.say(&g, "still fine").await;
    assert_eq!(b.read(&g).await, ["still fine"]);
    b.say(&g, "still fine here").await;
    assert_eq!(a1.read(&g).await, ["still fine here"]);
    relay.stop().await;
}
