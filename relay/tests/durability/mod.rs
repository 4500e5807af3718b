//! Shared by the crash tests (`kill9.rs`, `power_loss.rs`): the real relay
//! binary as a child process, a stream of pipelined sends that records what
//! was acknowledged, and the check after a restart that resends everything
//! unacknowledged under its original client message id.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use futures_util::future::join_all;
use hush_protocol::GroupId;
use hush_protocol::frame::{Direction, LogEntry, MessageKind, Reply, Request};
use hush_sdk::wire::{ConnectOptions, Identity, Trust, WireClient};

use crate::common::send_app;

/// Concurrent senders on one connection.
pub const SENDERS: u64 = 4;
/// Sends each sender has in flight at once (written back to back).
pub const WINDOW: u64 = 16;

/// A relay process; killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub url: String,
    pub cert: [u8; 32],
}

/// A failed assertion must not leave a relay running after the test.
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// SIGKILL, and wait until the process is gone.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// Starts the relay binary with its data directory in `dir/data`.
pub fn spawn_relay(dir: &Path) -> Proc {
    // The default rate limit (50/s per device) would throttle the stream.
    let config = dir.join("relay.toml");
    std::fs::write(&config, "[limits]\nrate_per_second = 100000.0\nrate_burst = 100000.0\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hush-relay"))
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--log", "warn"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("relay.err")).unwrap())
        .spawn()
        .unwrap();
    let mut url = None;
    let mut cert = None;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while url.is_none() || cert.is_none() {
        let Some(line) = lines.next() else {
            let err = std::fs::read_to_string(dir.join("relay.err")).unwrap_or_default();
            panic!("relay exited before printing its address:\n{err}");
        };
        let line = line.unwrap();
        if let Some(u) = line.trim().strip_prefix("websocket:") {
            url = Some(u.trim().to_owned());
        }
        if let Some(h) = line.trim().strip_prefix("cert sha256:") {
            cert = Some(hex::decode(h.trim()).unwrap().try_into().unwrap());
        }
    }
    // Keep draining stdout so the relay never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    Proc {
        child,
        url: url.unwrap(),
        cert: cert.unwrap(),
    }
}

pub async fn connect(p: &Proc, id: &Identity) -> WireClient {
    WireClient::connect(id, ConnectOptions::new(p.url.clone(), Trust::CertSha256(p.cert)))
        .await
        .unwrap()
}

/// Reads and drops `client`'s events from now on: a client that does not read
/// its deliveries (its own sends, the replay of a long log) stops reading
/// responses once its event buffer is full.
pub fn drain_events(client: &mut WireClient) {
    let mut events = client.take_events();
    tokio::spawn(async move { while events.recv().await.is_some() {} });
}

/// The whole log of `group`, page by page.
pub async fn read_log(c: &WireClient, group: &GroupId) -> Vec<LogEntry> {
    let mut log = Vec::new();
    let mut from = 1;
    loop {
        let r = c
            .request(Request::History {
                group: group.clone(),
                from_seq: from,
                direction: Direction::Forward,
                limit: 500,
            })
            .await;
        let Reply::History { entries, next_from } = r.unwrap() else {
            panic!()
        };
        log.extend(entries);
        match next_from {
            Some(n) => from = n,
            None => return log,
        }
    }
}

/// The client message id of sender `t`'s `n`th message, and its payload (the
/// same on every retry, as an outbox keeps it).
pub fn cmid(t: u64, n: u64) -> u64 {
    t << 32 | n
}

fn body(cmid: u64) -> Vec<u8> {
    format!("{}-{}", cmid >> 32, cmid & 0xffff_ffff).into_bytes()
}

/// What one sender did: every send it started, in order, and the seq each
/// acknowledged one got.
#[derive(Default)]
pub struct Sent {
    pub started: Vec<u64>,
    pub acked: HashMap<u64, u64>,
}

/// Starts [`SENDERS`] tasks that send application messages at `epoch` to
/// `group` on `client` until a send fails (the relay is gone), [`WINDOW`]
/// at a time; `acked` counts acknowledged sends. Consumes the client's events
/// (its own deliveries) so that they never hold up responses.
pub fn stream(
    mut client: WireClient,
    group: &GroupId,
    epoch: u64,
    acked: tokio::sync::watch::Sender<usize>,
) -> Vec<tokio::task::JoinHandle<Sent>> {
    drain_events(&mut client);
    let client = Arc::new(client);
    (0..SENDERS)
        .map(|t| {
            let (client, group, acked) = (client.clone(), group.clone(), acked.clone());
            tokio::spawn(async move {
                let mut sent = Sent::default();
                for window in 0.. {
                    let ids: Vec<u64> = (window * WINDOW..(window + 1) * WINDOW).map(|n| cmid(t, n)).collect();
                    sent.started.extend(&ids);
                    // join_all polls in order, and each send writes its frame on
                    // its first poll: the window goes out in order.
                    let bodies: Vec<Vec<u8>> = ids.iter().map(|&id| body(id)).collect();
                    let sends = ids
                        .iter()
                        .zip(&bodies)
                        .map(|(&id, b)| send_app(&client, &group, id, epoch, b));
                    let replies = join_all(sends).await;
                    let mut failed = false;
                    for (&id, r) in ids.iter().zip(replies) {
                        match r {
                            Ok((seq, _)) => {
                                sent.acked.insert(id, seq);
                                acked.send_modify(|c| *c += 1);
                            }
                            Err(_) => failed = true,
                        }
                    }
                    if failed {
                        break;
                    }
                }
                sent
            })
        })
        .collect()
}

/// Waits for the senders of [`stream`] (the relay was stopped).
pub async fn collect(tasks: Vec<tokio::task::JoinHandle<Sent>>) -> Vec<Sent> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// How the retry after a restart went.
#[derive(Debug)]
pub struct Retried {
    pub acked: usize,
    /// Unacknowledged sends resent.
    pub resent: usize,
    /// Of those, how many were stored before the crash (answered as duplicates).
    pub duplicates: usize,
    pub log_len: usize,
}

/// After a restart: checks that every acknowledged send is in `group`'s log
/// at the seq it was acknowledged with, resends every unacknowledged one (same
/// client message id and content, in each sender's order) and checks that each
/// is stored once: answered as a duplicate with its seq if it was stored
/// before the crash, appended otherwise. Then every started send is in the
/// log exactly once, gapless, and in each sender's order.
pub async fn check_and_retry(client: &WireClient, group: &GroupId, epoch: u64, sent: &[Sent]) -> Retried {
    let before = read_log(client, group).await;
    assert!(
        before.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1),
        "the log has a gap"
    );
    let at: HashMap<u64, u64> = apps(&before).map(|e| (e.client_msg_id, e.seq)).collect();
    let mut acked = 0;
    for s in sent {
        for (id, seq) in &s.acked {
            assert_eq!(
                at.get(id),
                Some(seq),
                "message {id:#x}, acknowledged with seq {seq}, is missing or moved after the restart"
            );
            acked += 1;
        }
    }
    let (mut resent, mut duplicates) = (0, 0);
    for s in sent {
        for &id in s.started.iter().filter(|id| !s.acked.contains_key(id)) {
            let (seq, duplicate) = send_app(client, group, id, epoch, &body(id)).await.unwrap();
            match at.get(&id) {
                Some(&stored) => {
                    assert!(
                        duplicate,
                        "{id:#x} was stored before the crash, yet its retry stored it again"
                    );
                    assert_eq!(seq, stored, "the retry of {id:#x} got another seq");
                    duplicates += 1;
                }
                None => {
                    assert!(!duplicate, "{id:#x} was not stored, yet its retry was a duplicate");
                    assert!(seq > before.len() as u64);
                }
            }
            resent += 1;
        }
    }
    let after = read_log(client, group).await;
    assert_eq!(
        after[..before.len()],
        before[..],
        "the retries changed the log before them"
    );
    assert!(after.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1));
    let ids: Vec<u64> = apps(&after).map(|e| e.client_msg_id).collect();
    let distinct: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "a message is stored twice");
    let started: HashSet<u64> = sent.iter().flat_map(|s| s.started.iter().copied()).collect();
    assert_eq!(distinct, started, "the log does not hold exactly the messages sent");
    for t in 0..SENDERS {
        let mine: Vec<u64> = ids.iter().copied().filter(|id| id >> 32 == t).collect();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "sender {t}'s messages are out of order"
        );
    }
    Retried {
        acked,
        resent,
        duplicates,
        log_len: after.len(),
    }
}

fn apps(log: &[LogEntry]) -> impl Iterator<Item = &LogEntry> {
    log.iter().filter(|e| e.kind == MessageKind::Application)
}
