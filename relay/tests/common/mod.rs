//! Test harness: a real relay on a loopback port with its data in a temporary
//! directory, and helpers for real WebSocket clients.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use hush_crypto::inspect::framing;
use hush_protocol::frame::{LogEntry, MessageKind, Policy, RelayFrame, Reply, Request, RosterChange, Send};
use hush_protocol::{DeviceId, GroupId};
use hush_relay::{CertHandle, Config, Relay, ShutdownHandle, Stats};
use hush_sdk::wire::{ClientError, ConnectOptions, Identity, Trust, WireClient};

pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestRelay {
    pub addr: std::net::SocketAddr,
    pub cert: [u8; 32],
    pub handle: ShutdownHandle,
    pub stats: Stats,
    pub certs: CertHandle,
    pub dev_http: Option<std::net::SocketAddr>,
    pub task: tokio::task::JoinHandle<hush_relay::RelayResult<()>>,
    pub dir: tempfile::TempDir,
}

impl TestRelay {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        config.limits.rate_per_second = 100_000.0;
        config.limits.rate_burst = 100_000.0;
        f(&mut config);
        let relay = Relay::load(config).await.unwrap();
        let addr = relay.local_addr();
        let cert = relay.tls().leaf_sha256;
        let handle = relay.shutdown_handle();
        let stats = relay.stats();
        let certs = relay.certs();
        let dev_http = relay.dev_http_addr();
        let task = tokio::spawn(relay.run());
        TestRelay {
            addr,
            cert,
            handle,
            stats,
            certs,
            dev_http,
            task,
            dir,
        }
    }

    pub fn url(&self) -> String {
        format!("wss://{}/ws", self.addr)
    }

    /// The WebTransport URL (same port number, UDP).
    pub fn wt_url(&self) -> String {
        format!("https://{}/wt", self.addr)
    }

    /// Options for a WebTransport connection.
    pub fn wt_options(&self) -> ConnectOptions {
        ConnectOptions::new(self.wt_url(), Trust::CertSha256(self.cert))
    }

    pub async fn connect_wt(&self, id: &Identity) -> WireClient {
        WireClient::connect(id, self.wt_options()).await.unwrap()
    }

    pub fn options(&self) -> ConnectOptions {
        ConnectOptions::new(self.url(), Trust::CertSha256(self.cert))
    }

    pub async fn connect(&self, id: &Identity) -> WireClient {
        WireClient::connect(id, self.options()).await.unwrap()
    }

    pub async fn try_connect(&self, id: &Identity, opts: ConnectOptions) -> Result<WireClient, ClientError> {
        WireClient::connect(id, opts).await
    }

    pub async fn stop(self) {
        self.handle.shutdown();
        tokio::time::timeout(WAIT, self.task).await.unwrap().unwrap().unwrap();
    }
}

pub fn gid(name: &str) -> GroupId {
    GroupId(name.as_bytes().to_vec())
}

pub async fn create_group(c: &WireClient, group: &GroupId, policy: Policy) {
    let r = c
        .request(Request::CreateGroup {
            group: group.clone(),
            policy,
        })
        .await
        .unwrap();
    assert_eq!(r, Reply::GroupCreated { epoch: 0 });
}

/// Sends a commit at `epoch` adding and removing devices; returns `(seq, new epoch)`.
pub async fn commit(
    c: &WireClient,
    group: &GroupId,
    epoch: u64,
    add: Vec<DeviceId>,
    remove: Vec<DeviceId>,
) -> Result<(u64, u64), ClientError> {
    let welcome = (!add.is_empty()).then(|| Bytes::from(framing::welcome(b"welcome")));
    let reply = c
        .request(Request::Send(Send {
            group: group.clone(),
            client_msg_id: rand::random(),
            kind: MessageKind::Commit,
            epoch,
            payload: Bytes::from(framing::commit(
                group,
                epoch,
                &add,
                &remove,
                format!("commit@{epoch}").as_bytes(),
            )),
            roster: Some(RosterChange { add, remove, welcome }),
        }))
        .await?;
    match reply {
        Reply::Sent { seq, epoch, .. } => Ok((seq, epoch)),
        other => panic!("unexpected reply {other:?}"),
    }
}

/// `body` framed as an MLS PrivateMessage of `group` at `epoch` with `kind`'s
/// content type: what the relay's MLS check accepts.
pub fn mls(group: &GroupId, epoch: u64, kind: MessageKind, body: &[u8]) -> Bytes {
    Bytes::from(framing::private_message(group, epoch, kind, body))
}

/// The body of a payload built by [`mls`].
pub fn body(payload: &[u8]) -> &[u8] {
    framing::private_message_body(payload).unwrap()
}

/// Sends an application message at `epoch` whose MLS ciphertext is `payload`.
pub async fn send_app(
    c: &WireClient,
    group: &GroupId,
    cmid: u64,
    epoch: u64,
    payload: &[u8],
) -> Result<(u64, bool), ClientError> {
    let reply = c
        .request(Request::Send(Send {
            group: group.clone(),
            client_msg_id: cmid,
            kind: MessageKind::Application,
            epoch,
            payload: mls(group, epoch, MessageKind::Application, payload),
            roster: None,
        }))
        .await?;
    match reply {
        Reply::Sent { seq, duplicate, .. } => Ok((seq, duplicate)),
        other => panic!("unexpected reply {other:?}"),
    }
}

/// Waits for the next `n` log entries of `group`, skipping other events.
pub async fn deliveries(c: &mut WireClient, group: &GroupId, n: usize) -> Vec<LogEntry> {
    let mut out = Vec::new();
    while out.len() < n {
        match c.next_event_timeout(WAIT).await {
            Ok(Some(RelayFrame::Deliver(e))) if &e.group == group => out.push(e),
            Ok(Some(_)) => {}
            Ok(None) => panic!("connection closed after {} of {n} entries", out.len()),
            Err(_) => panic!("timed out after {} of {n} entries", out.len()),
        }
    }
    out
}

/// Waits for an event matching `pred`, skipping others.
pub async fn wait_for(c: &mut WireClient, mut pred: impl FnMut(&RelayFrame) -> bool) -> RelayFrame {
    loop {
        match c.next_event_timeout(WAIT).await {
            Ok(Some(f)) if pred(&f) => return f,
            Ok(Some(_)) => {}
            Ok(None) => panic!("connection closed while waiting"),
            Err(_) => panic!("timed out waiting for an event"),
        }
    }
}

/// Asserts no event matching `pred` is already queued or arrives before a Pong
/// for a ping sent now (the relay handles a connection's frames in order, so the
/// pong bounds what was in flight).
pub async fn assert_quiet(c: &mut WireClient, mut pred: impl FnMut(&RelayFrame) -> bool) {
    let nonce = rand::random();
    c.send(&hush_protocol::frame::ClientFrame::Ping { nonce })
        .await
        .unwrap();
    loop {
        match c.next_event_timeout(WAIT).await.unwrap() {
            Some(RelayFrame::Pong { nonce: n }) if n == nonce => return,
            Some(f) => assert!(!pred(&f), "unexpected event {f:?}"),
            None => panic!("closed"),
        }
    }
}

/// A group of `members.len() + 1` devices: the creator adds everyone in one commit.
pub async fn group_with(creator: &WireClient, name: &str, members: &[&WireClient]) -> GroupId {
    let g = gid(name);
    create_group(creator, &g, Policy::default()).await;
    let add = members.iter().map(|m| m.ready().device).collect();
    commit(creator, &g, 0, add, vec![]).await.unwrap();
    g
}

/// An ephemeral signal's envelope (PROTOCOL.md 8.7) for `epoch` around
/// `text`: the relay reads only its header, so the sealed part is filler.
pub fn envelope(epoch: u64, text: &[u8]) -> Bytes {
    use hush_protocol::ephemeral::{SIGNATURE_LEN, TAG_LEN, encode_header};
    let mut out = encode_header(epoch, &[3; 12]).to_vec();
    out.extend_from_slice(&[0; SIGNATURE_LEN]);
    out.extend_from_slice(text);
    out.extend_from_slice(&[0; TAG_LEN]);
    Bytes::from(out)
}

/// The group's current epoch, as the relay has it.
pub async fn epoch_of(c: &WireClient, group: &GroupId) -> u64 {
    match c.request(Request::GetGroup { group: group.clone() }).await.unwrap() {
        Reply::Group(info) => info.epoch,
        other => panic!("{other:?}"),
    }
}

/// Real MLS key packages of `id`'s device: `one_time` one-time ones and a
/// last-resort one (the relay checks that uploads are the uploader's leaf).
pub fn key_packages(id: &Identity, one_time: usize) -> (Vec<Bytes>, Bytes) {
    let identity = hush_crypto::DeviceIdentity::from_secret(id.user.clone(), id.seed()).unwrap();
    let mut device = hush_crypto::Device::with_identity(
        hush_crypto::MlsStore::in_memory(),
        identity,
        hush_crypto::DeviceConfig::default(),
    )
    .unwrap();
    let mut kps: Vec<Bytes> = device
        .generate_key_packages(one_time, 1)
        .unwrap()
        .into_iter()
        .map(Bytes::from)
        .collect();
    let last = kps.pop().unwrap();
    (kps, last)
}

/// Waits (bounded) until the relay's counters satisfy `cond`; each check is a
/// read of live counters, not a sleep standing in for an event.
pub async fn until(relay: &TestRelay, what: &str, cond: impl Fn(&Stats) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond(&relay.stats) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: setups {} sessions {} quic {} timeouts {} refused {}",
            relay.stats.setups(),
            relay.stats.sessions(),
            relay.stats.quic_connections(),
            relay.stats.setup_timeouts(),
            relay.stats.refused_setups()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
