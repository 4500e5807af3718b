//! Durability: a relay killed with SIGKILL in the middle of a stream of sends
//! restarts with every acknowledged message present exactly once and in order,
//! and the sends that were not acknowledged, resent under their original
//! client message ids, are each stored once.
//!
//! A SIGKILL leaves the page cache alone, so these tests cannot tell whether
//! the store syncs; `power_loss.rs` can.
#![allow(clippy::unwrap_used)]

mod common;
mod durability;

use common::*;
use durability::*;
use hush_sdk::wire::Identity;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_nothing_acknowledged_and_retries_store_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = spawn_relay(dir.path());
    let alice = Identity::generate("alice");
    let ca = connect(&relay, &alice).await;
    let g = gid("durable");
    create_group(&ca, &g, Default::default()).await;

    // Four concurrent senders stream pipelined messages; each records what was
    // acknowledged. Kill once a good number were, while sends are in flight.
    let (count_tx, mut count_rx) = tokio::sync::watch::channel(0usize);
    let tasks = stream(ca, &g, 0, count_tx);
    tokio::time::timeout(WAIT * 6, count_rx.wait_for(|c| *c >= 300))
        .await
        .unwrap()
        .unwrap();
    relay.kill();
    let sent = collect(tasks).await;

    let relay = spawn_relay(dir.path());
    let mut ca = connect(&relay, &alice).await;
    drain_events(&mut ca);
    let r = check_and_retry(&ca, &g, 0, &sent).await;
    assert!(r.acked > 20, "only {} sends were acknowledged before the kill", r.acked);
    assert!(
        r.resent > 0,
        "every send was acknowledged before the kill: nothing was retried"
    );
    eprintln!("{r:?}");
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
    relay.kill();
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
    relay.kill();
}

/// Once the connection to a killed relay is gone, a request fails at once
/// rather than waiting out its timeout (30 s) for an answer nothing would
/// give: senders that were mid-stream at the kill learn it immediately.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_after_the_connection_is_gone_fails_at_once() {
    use hush_protocol::frame::Request;
    use hush_sdk::wire::ClientError;

    let dir = tempfile::tempdir().unwrap();
    let mut relay = spawn_relay(dir.path());
    let mut c = connect(&relay, &Identity::generate("alice")).await;
    relay.kill();
    // The events end when the connection's reader has stopped.
    while c.next_event_timeout(WAIT).await.unwrap().is_some() {}
    let r = tokio::time::timeout(WAIT, c.request(Request::ListGroups)).await;
    assert!(matches!(r, Ok(Err(ClientError::Connection(_)))), "{r:?}");
}
