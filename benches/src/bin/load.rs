//! `load`: a small load generator for the relay.
//!
//! ```text
//! cargo run --release -p hush-bench --bin load -- appends 1
//! cargo run --release -p hush-bench --bin load -- appends 64
//! cargo run --release -p hush-bench --bin load -- fanout 100 200 10
//! ```
//!
//! Each run starts a relay in this process (release build, embedded store in a
//! temporary directory, real TLS WebSocket connections over loopback) unless
//! `HUSH_URL` and `HUSH_CERT_SHA256` name a running one.
//!
//! * `appends N [secs] [window]`: N devices, each in its own group, each
//!   keeping `window` sends outstanding (default 1: the next send waits for the
//!   previous acknowledgement). Reports acknowledged durable appends per second
//!   (concurrent appends share fsyncs).
//! * `fanout MEMBERS RATE SECS`: one sender posts RATE messages per second to a
//!   group of MEMBERS devices; every member records the time from the send to
//!   its delivery. Reports p50/p99/max over all deliveries.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use hush_crypto::inspect::framing;
use hush_protocol::frame::{MessageKind, Policy, RelayFrame, Reply, Request, RosterChange, Send};
use hush_protocol::{DeviceId, GroupId};
use hush_sdk::wire::{ConnectOptions, Identity, Trust, WireClient};

struct Target {
    url: String,
    cert: [u8; 32],
    _relay: Option<(hush_relay::ShutdownHandle, tempfile::TempDir)>,
}

async fn target() -> anyhow::Result<Target> {
    if let (Ok(url), Ok(hash)) = (std::env::var("HUSH_URL"), std::env::var("HUSH_CERT_SHA256")) {
        let cert = hex_decode(&hash).context("HUSH_CERT_SHA256")?;
        return Ok(Target {
            url,
            cert,
            _relay: None,
        });
    }
    let dir = tempfile::tempdir()?;
    let mut config = hush_relay::Config {
        listen: "127.0.0.1:0".parse()?,
        data_dir: dir.path().to_owned(),
        ..hush_relay::Config::default()
    };
    config.limits.rate_per_second = 1e9;
    config.limits.rate_burst = 1e9;
    config.limits.max_per_address = 1_000_000;
    config.limits.max_setups = 100_000;
    let relay = hush_relay::Relay::load(config).await?;
    let url = format!("wss://{}/ws", relay.local_addr());
    let cert = relay.tls().leaf_sha256;
    let handle = relay.shutdown_handle();
    tokio::spawn(relay.run());
    Ok(Target {
        url,
        cert,
        _relay: Some((handle, dir)),
    })
}

fn hex_decode(s: &str) -> anyhow::Result<[u8; 32]> {
    let s = s.trim();
    anyhow::ensure!(s.len() == 64, "expected 64 hex characters");
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)?;
    }
    Ok(out)
}

async fn connect(t: &Target, id: &Identity) -> anyhow::Result<WireClient> {
    let mut opts = ConnectOptions::new(t.url.clone(), Trust::CertSha256(t.cert));
    opts.event_buffer = 1 << 16;
    Ok(WireClient::connect(id, opts).await?)
}

async fn setup_group(t: &Target, n: usize, name: &str) -> anyhow::Result<(GroupId, Vec<WireClient>)> {
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        clients.push(connect(t, &Identity::generate(&format!("user{i}"))).await?);
    }
    let group = GroupId(format!("{name}-{}", now_ns()).into_bytes());
    clients[0]
        .request(Request::CreateGroup {
            group: group.clone(),
            policy: Policy::default(),
        })
        .await?;
    let add: Vec<DeviceId> = clients[1..].iter().map(|c| c.ready().device).collect();
    // One commit adds everyone and moves the group to epoch 1, as in real use.
    clients[0]
        .request(Request::Send(Send {
            group: group.clone(),
            client_msg_id: 0,
            kind: MessageKind::Commit,
            epoch: 0,
            payload: Bytes::from(framing::commit(&group, 0, &add, &[], b"commit")),
            roster: Some(RosterChange {
                add,
                remove: vec![],
                welcome: Some(Bytes::from(framing::welcome(b"welcome"))),
            }),
        }))
        .await?;
    Ok((group, clients))
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// An application message at epoch 1 whose MLS ciphertext is `body` (the
/// relay checks the framing, not the contents).
fn app(group: &GroupId, id: u64, body: &[u8]) -> Request {
    Request::Send(Send {
        group: group.clone(),
        client_msg_id: id,
        kind: MessageKind::Application,
        epoch: 1,
        payload: Bytes::from(framing::private_message(group, 1, MessageKind::Application, body)),
        roster: None,
    })
}

async fn appends(senders: usize, secs: u64, window: usize) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    use futures_util::stream::FuturesUnordered;

    let t = target().await?;
    // Each sender posts to its own group, so this measures durable appends (the
    // log, idempotency and group commit), not fan-out (see `fanout`). Each
    // keeps `window` sends outstanding on its connection (pipelining).
    let mut clients = Vec::new();
    for _ in 0..senders {
        let (group, mut c) = setup_group(&t, 1, "appends").await?;
        let mut c = c.remove(0);
        // The sender is a member and gets its own entries delivered: drain
        // them, or a full event queue stops its connection's reader (and
        // with it the replies).
        let mut events = c.take_events();
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        clients.push((group, Arc::new(c)));
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, (group, c)) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut lat = Vec::new();
            let body = vec![0xab; 100];
            let mut inflight = FuturesUnordered::new();
            let mut next = 0u64;
            loop {
                while inflight.len() < window && Instant::now() < deadline {
                    next += 1;
                    let (c, req) = (c.clone(), app(&group, (i as u64) << 40 | next, &body));
                    inflight.push(async move {
                        let t0 = Instant::now();
                        (c.request(req).await, t0.elapsed())
                    });
                }
                match inflight.next().await {
                    Some((Ok(Reply::Sent { .. }), l)) => {
                        lat.push(l);
                        n += 1;
                    }
                    Some((other, _)) => anyhow::bail!("send failed: {other:?}"),
                    None => break,
                }
            }
            Ok::<_, anyhow::Error>((n, lat))
        }));
    }
    let mut total = 0;
    let mut lat = Vec::new();
    for t in tasks {
        let (n, l) = t.await??;
        total += n;
        lat.extend(l);
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    println!(
        "appends: senders={senders} window={window} acknowledged={total} in {elapsed:.1}s => {:.0} appends/s; ack latency p50={:?} p99={:?}",
        total as f64 / elapsed,
        pct(&lat, 50.0),
        pct(&lat, 99.0)
    );
    Ok(())
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn fanout(members: usize, rate: u64, secs: u64) -> anyhow::Result<()> {
    let t = target().await?;
    let (group, mut clients) = setup_group(&t, members, "fanout").await?;
    let sender = clients.remove(0);
    let total = rate * secs;
    let mut receivers = Vec::new();
    for mut c in clients {
        let group = group.clone();
        receivers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(total as usize);
            while (lat.len() as u64) < total {
                match c.next_event_timeout(Duration::from_secs(30)).await {
                    Ok(Some(RelayFrame::Deliver(e))) if e.group == group && e.kind == MessageKind::Application => {
                        let body = framing::private_message_body(&e.payload).unwrap_or_default();
                        let sent = u64::from_le_bytes(body.get(..8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
                        lat.push(Duration::from_nanos(now_ns().saturating_sub(sent)));
                    }
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
            lat
        }));
    }
    let sender = Arc::new(sender);
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut inflight = Vec::new();
    for n in 0..total {
        tick.tick().await;
        let mut payload = now_ns().to_le_bytes().to_vec();
        payload.resize(100, 0);
        let s = sender.clone();
        let g = group.clone();
        inflight.push(tokio::spawn(async move { s.request(app(&g, n + 1, &payload)).await }));
    }
    for f in inflight {
        f.await??;
    }
    let mut lat = Vec::new();
    for r in receivers {
        lat.extend(r.await?);
    }
    lat.sort_unstable();
    let expected = total * (members as u64 - 1);
    println!(
        "fanout: members={members} rate={rate}/s secs={secs} deliveries={}/{expected} p50={:?} p99={:?} max={:?}",
        lat.len(),
        pct(&lat, 50.0),
        pct(&lat, 99.0),
        lat.last().copied().unwrap_or_default()
    );
    anyhow::ensure!(lat.len() as u64 == expected, "lost deliveries");
    Ok(())
}

/// The relay runs in this process: the same allocator as its binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    match args.first().map(String::as_str) {
        Some("appends") => appends(num(1, 1) as usize, num(2, 10), num(3, 1) as usize).await,
        Some("fanout") => fanout(num(1, 100) as usize, num(2, 200), num(3, 10)).await,
        _ => {
            eprintln!("usage: load appends SENDERS [secs] [window] | load fanout MEMBERS RATE SECS");
            std::process::exit(2)
        }
    }
}
