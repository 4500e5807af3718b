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

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hush_protocol::frame::{ClientFrame, RelayFrame};
use hush_sdk::wire::{ConnectOptions, Identity, Trust, WebTransportEndpoint, WireClient};

struct RelayProc {
    child: Child,
    addr: String,
    cert: [u8; 32],
}

impl Drop for RelayProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RelayProc {
    fn start(dir: &std::path::Path, extra_config: &str) -> anyhow::Result<Self> {
        let bin = match std::env::var("HUSH_RELAY_BIN") {
            Ok(p) => PathBuf::from(p),
            Err(_) => std::env::current_exe()?
                .parent()
                .context("binary directory")?
                .join("hush-relay"),
        };
        let config = dir.join("relay.toml");
        // Idle connections must stay up for the whole measurement: a long
        // heartbeat (the idle timeout is three of them), no rate limit.
        std::fs::write(
            &config,
            format!(
                "[limits]\nmax_connections = 20000\nheartbeat_ms = 600000\nhandshake_timeout_ms = 60000\n\
                 rate_per_second = 1e9\nrate_burst = 1e9\n{extra_config}"
            ),
        )?;
        let mut child = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--log",
                "error",
                "--dev-http",
                "off",
                "--data-dir",
            ])
            .arg(dir.join("data"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let (mut addr, mut cert) = (None, None);
        while addr.is_none() || cert.is_none() {
            let line = lines.next().context("relay exited")??;
            if let Some(u) = line.trim().strip_prefix("websocket:") {
                addr = Some(u.trim().trim_start_matches("wss://").trim_end_matches("/ws").to_owned());
            }
            if let Some(h) = line.trim().strip_prefix("cert sha256:") {
                let mut c = [0u8; 32];
                for (i, o) in c.iter_mut().enumerate() {
                    *o = u8::from_str_radix(&h.trim()[2 * i..2 * i + 2], 16)?;
                }
                cert = Some(c);
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Ok(RelayProc {
            child,
            addr: addr.context("address")?,
            cert: cert.context("certificate hash")?,
        })
    }

    fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("VmRSS")?;
        Ok(line.split_whitespace().nth(1).context("VmRSS value")?.parse()?)
    }

    fn options(&self, wt: bool) -> ConnectOptions {
        let url = if wt {
            format!("https://{}/wt", self.addr)
        } else {
            format!("wss://{}/ws", self.addr)
        };
        let mut o = ConnectOptions::new(url, Trust::CertSha256(self.cert));
        o.timeout = Duration::from_secs(120);
        o.event_buffer = 64;
        o
    }
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
    let relay = RelayProc::start(dir.path(), "")?;
    let id = Identity::generate("rtt");
    let mut wt = WireClient::connect(&id, relay.options(true)).await?;
    let mut ws = WireClient::connect(&id, relay.options(false)).await?;
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
async fn open_many(relay: &RelayProc, n: usize, wt: bool) -> anyhow::Result<Vec<WireClient>> {
    let endpoint = WebTransportEndpoint::new(&Trust::CertSha256(relay.cert))?;
    let sem = Arc::new(tokio::sync::Semaphore::new(128));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (opts, endpoint, sem) = (relay.options(wt), endpoint.clone(), sem.clone());
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
        let setup = RelayProc::start(dir.path(), "")?;
        drop(open_many(&setup, n, false).await?);
    }
    let relay = RelayProc::start(dir.path(), extra)?;
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
