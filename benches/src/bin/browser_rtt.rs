//! `browser_rtt`: round-trip time of a small message on an open connection,
//! from the browser client (`web/hush/` in headless Chromium) and from the Rust
//! client, over WebTransport and over WebSocket, side by side in one run.
//!
//! ```text
//! cargo build --release -p hush-relay -p hush-bench --bin hush-relay --bin browser_rtt
//! target/release/browser_rtt 500
//! ```
//!
//! One relay (a separate `hush-relay` process next to this binary, or
//! `HUSH_RELAY_BIN`; embedded store in a temporary directory), one connection per
//! (client, transport), all open at once. Two measurements, each N times per
//! connection, in blocks of 100 that rotate through the four connections so all
//! see the same machine load:
//!
//! * `ping`: `Ping` until its `Pong` (the relay's session loop, no store);
//! * `send`: `Send` of an MLS PrivateMessage with 32 bytes of ciphertext
//!   to a group whose only member is the
//!   sender, until the sender's own `Deliver` of it arrives (includes the durable
//!   append: an fsync, shared by concurrent appends).
//!
//! The browser times with `performance.now()` in a cross-origin-isolated page
//! (5 µs resolution); the Rust client with `Instant`. Each connection first makes
//! 20 untimed round trips per block. Prints a Markdown table (µs).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hush_bench::browser::Browser;
use hush_bench::relay::RelayProcess;
use hush_protocol::GroupId;
use hush_protocol::frame::{ClientFrame, MessageKind, Policy, RelayFrame, Reply, Request, Send};
use hush_sdk::wire::{ConnectOptions, Identity, Trust, WireClient};
use serde_json::json;

const BLOCK: usize = 100;
const WARMUP: usize = 20;

/// The relay's URL over WebTransport (`wt`) or WebSocket.
fn url(relay: &RelayProcess, wt: bool) -> String {
    if wt {
        relay.webtransport_url()
    } else {
        relay.websocket_url()
    }
}

/// `ciphertext` framed as an MLS PrivateMessage (PROTOCOL.md 8.6).
fn private_message(group: &GroupId, epoch: u64, kind: MessageKind, ciphertext: &[u8]) -> Bytes {
    Bytes::from(hush_crypto::inspect::framing::private_message(
        group, epoch, kind, ciphertext,
    ))
}

/// One Rust connection and its own group.
struct RustConn {
    client: WireClient,
    group: GroupId,
    next: u64,
}

impl RustConn {
    async fn open(relay: &RelayProcess, wt: bool, group: &str) -> anyhow::Result<Self> {
        let id = Identity::generate("rtt-rust");
        let client =
            WireClient::connect(&id, ConnectOptions::new(url(relay, wt), Trust::CertSha256(relay.cert))).await?;
        let group = GroupId(group.as_bytes().to_vec());
        let r = client
            .request(Request::CreateGroup {
                group: group.clone(),
                policy: Policy::default(),
            })
            .await?;
        if r != (Reply::GroupCreated { epoch: 0 }) {
            bail!("create group: {r:?}");
        }
        Ok(RustConn { client, group, next: 1 })
    }

    async fn ping(&mut self) -> anyhow::Result<Duration> {
        let nonce = self.next;
        self.next += 1;
        let t = Instant::now();
        self.client.send(&ClientFrame::Ping { nonce }).await?;
        loop {
            match self.client.next_event().await {
                Some(RelayFrame::Pong { nonce: n }) if n == nonce => return Ok(t.elapsed()),
                Some(_) => {}
                None => bail!("connection closed"),
            }
        }
    }

    /// Send until the own Deliver arrives. The request goes out as a raw
    /// `Request` frame with an id no caller waits for, so the `Sent` response is
    /// dropped by the client and the clock stops at the `Deliver`, as in the
    /// browser.
    async fn send(&mut self) -> anyhow::Result<Duration> {
        let cmid = self.next;
        self.next += 1;
        let op = Request::Send(Send {
            group: self.group.clone(),
            client_msg_id: cmid,
            kind: MessageKind::Application,
            epoch: 0,
            payload: private_message(&self.group, 0, MessageKind::Application, &[0u8; 32]),
            roster: None,
        });
        let t = Instant::now();
        self.client.send(&ClientFrame::Request { id: u32::MAX - 1, op }).await?;
        loop {
            match self.client.next_event().await {
                Some(RelayFrame::Deliver(e)) if e.client_msg_id == cmid => {
                    let dt = t.elapsed();
                    if cmid.is_multiple_of(50) {
                        self.client.ack(&self.group, e.seq).await?;
                    }
                    return Ok(dt);
                }
                Some(RelayFrame::Error(e)) => bail!("relay error: {e:?}"),
                Some(_) => {}
                None => bail!("connection closed"),
            }
        }
    }

    async fn block(&mut self, mode: &str, n: usize, out: &mut Vec<f64>) -> anyhow::Result<()> {
        for i in 0..WARMUP + n {
            let d = if mode == "ping" {
                self.ping().await?
            } else {
                self.send().await?
            };
            if i >= WARMUP {
                out.push(d.as_secs_f64() * 1e6);
            }
        }
        Ok(())
    }
}

async fn browser_block(
    browser: &mut Browser,
    name: &str,
    group: &str,
    mode: &str,
    n: usize,
    out: &mut Vec<f64>,
) -> anyhow::Result<()> {
    let r = browser
        .call(
            "bench",
            json!({"name": name, "mode": mode, "n": n, "warmup": WARMUP, "group": hex::encode(group), "epoch": 0, "size": 32}),
        )
        .await?;
    let samples = r["samples"].as_array().context("samples")?;
    out.extend(samples.iter().filter_map(|v| v.as_f64()).map(|ms| ms * 1e3));
    Ok(())
}

fn row(label: &str, v: &mut [f64]) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "| {label} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
        v.len(),
        at(0.5),
        at(0.99),
        mean,
        v[v.len() - 1]
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().nth(1).map_or(Ok(500), |s| s.parse())?;
    let relay = RelayProcess::start("")?;
    let wss: std::net::SocketAddr = relay.addr.parse()?;
    let mut browser = Browser::start(wss, relay.cert, None).await?;
    browser.timeout = Duration::from_secs(600);
    eprintln!("browser page: {}", browser.started);

    let mut rust_wt = RustConn::open(&relay, true, "rtt-rust-wt").await?;
    let mut rust_ws = RustConn::open(&relay, false, "rtt-rust-ws").await?;
    for (name, transport, url) in [
        ("wt", "webtransport", url(&relay, true)),
        ("ws", "websocket", url(&relay, false)),
    ] {
        browser
            .call(
                "connect",
                json!({"name": name, "user": "rtt-browser", "transport": transport, "url": url, "certHash": hex::encode(relay.cert)}),
            )
            .await?;
        browser
            .call(
                "createGroup",
                json!({"name": name, "group": hex::encode(format!("rtt-browser-{name}"))}),
            )
            .await?;
    }

    let modes = ["ping", "send"];
    // [mode][browser wt, browser ws, rust wt, rust ws]
    let mut res: Vec<[Vec<f64>; 4]> = modes.iter().map(|_| Default::default()).collect();
    let blocks = n.div_ceil(BLOCK);
    for b in 0..blocks {
        let k = BLOCK.min(n - b * BLOCK);
        for (m, mode) in modes.iter().enumerate() {
            let [bwt, bws, rwt, rws] = &mut res[m];
            browser_block(&mut browser, "wt", "rtt-browser-wt", mode, k, bwt).await?;
            rust_wt.block(mode, k, rwt).await?;
            browser_block(&mut browser, "ws", "rtt-browser-ws", mode, k, bws).await?;
            rust_ws.block(mode, k, rws).await?;
        }
        eprintln!("block {}/{blocks} done", b + 1);
    }

    println!("| client, transport, measurement | round trips | median µs | p99 µs | mean µs | max µs |");
    println!("|---|---|---|---|---|---|");
    for (m, mode) in modes.iter().enumerate() {
        let what = if *mode == "ping" {
            "Ping→Pong"
        } else {
            "Send→own Deliver"
        };
        let [bwt, bws, rwt, rws] = &mut res[m];
        row(&format!("browser, WebTransport, {what}"), bwt);
        row(&format!("browser, WebSocket, {what}"), bws);
        row(&format!("Rust, WebTransport, {what}"), rwt);
        row(&format!("Rust, WebSocket, {what}"), rws);
    }
    browser.close().await?;
    Ok(())
}
