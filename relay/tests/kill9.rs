//! Durability: a relay killed with SIGKILL in the middle of a stream of sends
//! restarts with every acknowledged message present exactly once and in order.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use hush_protocol::frame::{Direction, Reply, Request};
use hush_sdk::wire::{ConnectOptions, Identity, Trust, WireClient};

struct Proc {
    child: Child,
    url: String,
    cert: [u8; 32],
}

/// A failed assertion must not leave a relay running after the test.
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_relay(dir: &std::path::Path) -> Proc {
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
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut url = None;
    let mut cert = None;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while url.is_none() || cert.is_none() {
        let line = lines.next().expect("relay exited before printing its address").unwrap();
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

async fn connect(p: &Proc, id: &Identity) -> WireClient {
    WireClient::connect(id, ConnectOptions::new(p.url.clone(), Trust::CertSha256(p.cert)))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = spawn_relay(dir.path());
    let alice = Identity::generate("alice");
    let ca = connect(&relay, &alice).await;
    let g = gid("durable");
    create_group(&ca, &g, Default::default()).await;

    // Four concurrent senders stream messages; each records what was acknowledged.
    let ca = Arc::new(ca);
    let stop = Arc::new(AtomicBool::new(false));
    let (count_tx, mut count_rx) = tokio::sync::watch::channel(0usize);
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let (ca, g, stop, count_tx) = (ca.clone(), g.clone(), stop.clone(), count_tx.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for n in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let cmid = t << 32 | n;
                match send_app(&ca, &g, cmid, 0, format!("{t}-{n}").as_bytes()).await {
                    Ok((seq, _)) => {
                        acked.push((seq, cmid));
                        count_tx.send_modify(|c| *c += 1);
                    }
                    Err(_) => break,
                }
            }
            acked
        }));
    }
    // Kill once a good number of sends were acknowledged, while sends are in flight.
    tokio::time::timeout(WAIT * 6, count_rx.wait_for(|c| *c >= 300))
        .await
        .unwrap()
        .unwrap();
    relay.child.kill().unwrap(); // SIGKILL
    relay.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(
        acked.len() > 20,
        "only {} sends were acknowledged before the kill",
        acked.len()
    );

    let relay = spawn_relay(dir.path());
    let ca = connect(&relay, &alice).await;
    let mut log = Vec::new();
    let mut from = 1;
    loop {
        let r = ca
            .request(Request::History {
                group: g.clone(),
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
            None => break,
        }
    }
    // Gapless from 1, and every acknowledged (seq, id) is there exactly once.
    assert!(log.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1));
    let by_seq: std::collections::HashMap<u64, u64> = log.iter().map(|e| (e.seq, e.client_msg_id)).collect();
    for (seq, cmid) in &acked {
        assert_eq!(
            by_seq.get(seq),
            Some(cmid),
            "acknowledged seq {seq} missing or different after restart"
        );
    }
    let mut ids: Vec<u64> = log.iter().map(|e| e.client_msg_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), log.len(), "a message is stored twice");
    // Per sender, ids are in send order.
    for t in 0..4u64 {
        let mine: Vec<u64> = log
            .iter()
            .filter(|e| e.client_msg_id >> 32 == t)
            .map(|e| e.client_msg_id)
            .collect();
        assert!(mine.windows(2).all(|w| w[0] < w[1]));
    }
    eprintln!(
        "{} acknowledged before SIGKILL, {} in the log after restart",
        acked.len(),
        log.len()
    );
    let mut relay = relay;
    relay.child.kill().unwrap();
    relay.child.wait().unwrap();
}

/// Acknowledgements that keep arriving, a few milliseconds apart, are still
/// written within the documented 50 ms: after a SIGKILL the relay resumes the
/// device after what it acknowledged up to shortly before the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_acknowledged_in_a_continuous_stream_survive_sigkill() {
    use hush_protocol::frame::RelayFrame;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let mut relay = spawn_relay(dir.path());
    let alice = Identity::generate("alice");
    let mut ca = connect(&relay, &alice).await;
    let g = gid("acked");
    create_group(&ca, &g, Default::default()).await;
    let n = 800u64;
    for i in 0..n {
        send_app(&ca, &g, i + 1, 0, b"x").await.unwrap();
    }
    let mut delivered = 0;
    while delivered < n {
        if let Some(RelayFrame::Deliver(e)) = ca.next_event_timeout(WAIT).await.unwrap() {
            delivered = e.seq;
        }
    }
    // One more seq acknowledged every 3 ms, without a pause, for ~2.4 s; then
    // the relay is killed while the stream goes on.
    let mut sent: Vec<(u64, Instant)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(3));
    for seq in 1..=n {
        tick.tick().await;
        ca.ack(&g, seq).await.unwrap();
        sent.push((seq, Instant::now()));
    }
    let killed = Instant::now();
    relay.child.kill().unwrap(); // SIGKILL
    relay.child.wait().unwrap();
    drop(ca);

    // Everything acknowledged more than 50 ms plus one batch write (an fsync,
    // slow on a busy disk, and a loaded machine running every test at once)
    // before the kill must be durable. A relay that writes no cursor while
    // acknowledgements keep coming fails this by more than a second.
    let slack = Duration::from_millis(1000);
    let must = sent
        .iter()
        .filter(|(_, at)| killed.duration_since(*at) > slack)
        .map(|(s, _)| *s)
        .max()
        .unwrap();
    let mut relay = spawn_relay(dir.path());
    let ca = connect(&relay, &alice).await;
    let status = ca.ready().groups.iter().find(|s| s.group == g).unwrap();
    assert!(
        status.resume_after >= must,
        "cursor {} after restart; seq {must} was acknowledged {slack:?} before the kill",
        status.resume_after
    );
    relay.child.kill().unwrap();
    relay.child.wait().unwrap();
}
