//! `transports`: WebTransport against WebSocket, from the Rust client.
//!
//! ```text
//! cargo build --release -p hush-relay -p hush-bench
//! target/release/transports rtt 5000
//! target/release/transports idle 1000 10000
//! ```
//!
//! * `rtt N`: one relay (a separate `hush-relay` process), one WebTransport and
//!   one WebSocket connection, N `Ping`→`Pong` round trips on each open stream,
//!   alternating between the two so both see the same machine load. Reports
//!   p50/p90/p99/mean in microseconds, side by side.
//! * `idle COUNTS...`: for each count and each of WebSocket, WebTransport with
//!   the relay's QUIC settings and WebTransport with quinn's defaults, a fresh
//!   relay process; its RSS is read from `/proc` before and after opening that
//!   many authenticated, idle connections (all WebTransport sessions share one
//!   UDP socket of this process). Reports RSS growth per connection.
//!
//! The relay binary is `hush-relay` next to this one (or `HUSH_RELAY_BIN`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hush_bench::relay::RelayProcess;
use hush_protocol::frame::{ClientFrame, RelayFrame};
use hush_sdk::wire::{ConnectOptions, Identity, Trust, WebTransportEndpoint, WireClient};

/// Idle connections must stay up for the whole measurement: a long heartbeat
/// (the idle timeout is three of them) and room for 20,000 connections.
const IDLE_LIMITS: &str = "max_connections = 20000\nheartbeat_ms = 600000\nhandshake_timeout_ms = 60000\n";

/// Connection options for the relay over WebTransport (`wt`) or WebSocket.
fn options(relay: &RelayProcess, wt: bool) -> ConnectOptions {
    let url = if wt {
        relay.webtransport_url()
    } else {
        relay.websocket_url()
    };
    let mut o = ConnectOptions::new(url, Trust::CertSha256(relay.cert));
    o.timeout = Duration::from_secs(120);
    o.event_buffer = 64;
    o
}

async fn ping(c: &mut WireClient, nonce: u64) -> anyhow::Result<Duration> {
    let t = Instant::now();
    c.send(&ClientFrame::Ping { nonce }).await?;
    loop {
        match c.next_event().await {
            Some(RelayFrame::Pong { nonce: n }) if n == nonce => return Ok(t.elapsed()),
            Some(_) => {}
            None => anyhow::bail!("connection closed"),
        }
    }
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let at = |q: f64| us(v[((v.len() as f64 * q) as usize).min(v.len() - 1)]);
    let mean = v.iter().map(|d| us(*d)).sum::<f64>() / v.len() as f64;
    println!(
        "| {name} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
        v.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        mean
    );
}

async fn rtt(n: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let relay = RelayProcess::start_in(dir.path(), IDLE_LIMITS)?;
    let id = Identity::generate("rtt");
    let mut wt = WireClient::connect(&id, options(&relay, true)).await?;
    let mut ws = WireClient::connect(&id, options(&relay, false)).await?;
    for i in 0..200 {
        ping(&mut wt, i).await?;
        ping(&mut ws, i).await?;
    }
    let (mut a, mut b) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n as u64 {
        a.push(ping(&mut wt, 1000 + i).await?);
        b.push(ping(&mut ws, 1000 + i).await?);
    }
    println!("| transport | round trips | p50 µs | p90 µs | p99 µs | mean µs |");
    println!("|---|---|---|---|---|---|");
    summary("WebTransport (stream)", a);
    summary("WebSocket", b);
    Ok(())
}

/// Opens `n` idle connections; returns them (kept open by the caller).
async fn open_many(relay: &RelayProcess, n: usize, wt: bool) -> anyhow::Result<Vec<WireClient>> {
    let endpoint = WebTransportEndpoint::new(&Trust::CertSha256(relay.cert))?;
    let sem = Arc::new(tokio::sync::Semaphore::new(128));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (opts, endpoint, sem) = (options(relay, wt), endpoint.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await?;
            let id = Identity::from_seed(&format!("idle{i}"), seed(i));
            let c = if wt {
                WireClient::connect_with(&id, opts, &endpoint).await?
            } else {
                WireClient::connect(&id, opts).await?
            };
            anyhow::Ok(c)
        }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

/// The same device keys in every relay of a measurement.
fn seed(i: usize) -> [u8; 32] {
    let mut s = [7u8; 32];
    s[..8].copy_from_slice(&(i as u64).to_le_bytes());
    s
}

/// Relay RSS growth per connection for `n` idle connections. The devices are
/// registered by a first relay process on the same data directory, so the
/// measured process only reads them: what is measured is connections, not the
/// store growing.
async fn idle_one(n: usize, wt: bool, extra: &str) -> anyhow::Result<(u64, u64)> {
    let dir = tempfile::tempdir()?;
    {
        let setup = RelayProcess::start_in(dir.path(), IDLE_LIMITS)?;
        drop(open_many(&setup, n, false).await?);
    }
    let relay = RelayProcess::start_in(dir.path(), &format!("{IDLE_LIMITS}{extra}"))?;
    // Warm up: a few connections and their teardown, so one-time allocations
    // (TLS, runtime, store handles) are not counted per connection.
    drop(open_many(&relay, 4, wt).await?);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = relay.rss_kib()?;
    let clients = open_many(&relay, n, wt).await?;
    // Let the relay finish what connecting caused (presence, cursors).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = relay.rss_kib()?;
    drop(clients);
    Ok((before, after))
}

async fn idle(counts: &[usize]) -> anyhow::Result<()> {
    println!("| connections | transport | relay RSS before (MiB) | after (MiB) | per connection (KiB) |");
    println!("|---|---|---|---|---|");
    for &n in counts {
        for (name, wt, extra) in [
            ("WebSocket", false, ""),
            ("WebTransport, relay settings", true, ""),
            ("WebTransport, quinn defaults", true, "[quic]\nquinn_defaults = true\n"),
        ] {
            match idle_one(n, wt, extra).await {
                Ok((before, after)) => println!(
                    "| {n} | {name} | {:.1} | {:.1} | {:.1} |",
                    before as f64 / 1024.0,
                    after as f64 / 1024.0,
                    after.saturating_sub(before) as f64 / n as f64
                ),
                Err(e) => println!("| {n} | {name} | failed: {e} | | |"),
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("rtt") => rtt(args.get(1).map_or(Ok(5000), |s| s.parse())?).await,
        Some("idle") => {
            let counts = args[1..].iter().map(|s| s.parse()).collect::<Result<Vec<usize>, _>>()?;
            idle(if counts.is_empty() { &[1000] } else { &counts }).await
        }
        _ => anyhow::bail!("usage: transports rtt N | transports idle COUNT..."),
    }
}
