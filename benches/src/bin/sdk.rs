//! `sdk`: what an app sees through the client SDK, over WebTransport and over
//! WebSocket side by side, against the raw protocol underneath.
//!
//! ```text
//! cargo build --release -p hush-relay -p hush-bench --bin hush-relay --bin sdk
//! $CARGO_TARGET_DIR/release/sdk all 2000 1000 5
//! ```
//!
//! One relay in its own process (the release `hush-relay` next to this
//! binary, or `HUSH_RELAY_BIN`; embedded store in a temporary directory),
//! SDK clients in this process, each with its own data directory on the same
//! disk. Per transport, two users (`alice-wt` and `bob-wt`, `alice-ws` and
//! `bob-ws`), one device each, in a direct conversation. The WebSocket
//! clients have WebTransport disabled; the WebTransport clients have a race
//! window of a minute, so WebSocket would only be tried if QUIC failed. Every
//! measurement checks `Client::transport()` and fails on a reconnect.
//!
//! * `latency N`: N messages per transport, one at a time: `send_text` on
//!   alice, then the clock runs from `send_text` returning until bob's
//!   `Event::Message` with that id. Beside it, for the same machine load, the
//!   raw protocol: two `WireClient` devices in a group of two, a `Send` of an
//!   MLS PrivateMessage as long as the SDK's ciphertext, timed until the
//!   other device's `Deliver`. The four take turns in blocks of 100, after one
//!   untimed block each. Then a throughput run per transport: 1,000
//!   `send_text` calls back to back, timed until bob has all of them.
//! * `catchup M R`: bob closes; alice sends M messages and waits until the
//!   relay stored them all (`flush`); then the clock runs from reopening bob
//!   (`open_with_events` on its data directory) until its M-th
//!   `Event::Message`. Checks they came exactly once and in order, and that
//!   nothing more arrives once bob is synced. R repeats per transport,
//!   alternating transports.
//! * `floor`: on the same disk, in this process: a small write + fdatasync,
//!   one durable redb commit, MLS encrypt + decrypt with the MLS state in
//!   memory and in redb files (each operation one fsynced transaction).
//! * `all N M R`: `floor`, `latency N`, `catchup M R`.
//!
//! Text messages are 100 bytes. Prints Markdown tables.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use hush_bench::relay::RelayProcess;
use hush_crypto::content::{Content, Payload};
use hush_crypto::inspect::framing;
use hush_crypto::{Device, DeviceConfig, MlsStore};
use hush_protocol::frame::{MessageKind, Policy, RelayFrame, Reply, Request, RosterChange, Send};
use hush_protocol::{GroupId, UserId};
use hush_sdk::wire::{ConnectOptions, Identity, Trust, WireClient};
use hush_sdk::{Client, ConnectionState, Event, EventStream, TransportConfig};

const BLOCK: usize = 100;
const TEXT_LEN: usize = 100;
const THROUGHPUT: usize = 1000;
const WAIT: Duration = Duration::from_secs(120);

/// The two transports, in the order they are reported.
const TRANSPORTS: [Wt; 2] = [Wt::WebTransport, Wt::WebSocket];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wt {
    WebTransport,
    WebSocket,
}

impl Wt {
    /// The name `Client::transport()` gives.
    fn name(self) -> &'static str {
        match self {
            Wt::WebTransport => "webtransport",
            Wt::WebSocket => "websocket",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Wt::WebTransport => "WebTransport",
            Wt::WebSocket => "WebSocket",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Wt::WebTransport => "wt",
            Wt::WebSocket => "ws",
        }
    }

    fn config(self) -> TransportConfig {
        match self {
            Wt::WebTransport => TransportConfig {
                race_window: Duration::from_secs(60),
                ..TransportConfig::default()
            },
            Wt::WebSocket => TransportConfig {
                webtransport_url: Some(String::new()),
                ..TransportConfig::default()
            },
        }
    }
}

/// A 100-byte text, different for every (tag, i).
fn text(tag: &str, i: usize) -> String {
    let mut t = format!("{tag}-{i:06}-");
    while t.len() < TEXT_LEN {
        t.push('x');
    }
    t
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// Percentiles of one series, nearest rank.
fn row(name: &str, v: &mut [Duration]) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| ms(v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1]);
    format!(
        "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
        v.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        ms(v[v.len() - 1]),
        v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64
    )
}

// ---------------------------------------------------------------------------
// SDK clients

/// alice and bob on one transport, in a direct conversation.
struct SdkPair {
    wt: Wt,
    url: String,
    cert: [u8; 32],
    alice: Client,
    bob: Option<(Client, EventStream)>,
    bob_dir: PathBuf,
    bob_user: String,
    group: GroupId,
}

async fn open_client(
    url: &str,
    cert: [u8; 32],
    dir: &Path,
    user: &str,
    wt: Wt,
) -> anyhow::Result<(Client, EventStream)> {
    Ok(Client::builder()
        .relay(url)
        .trust(Trust::CertSha256(cert))
        .data_dir(dir)
        .user(user)
        .transport(wt.config())
        .open_with_events()
        .await?)
}

fn check_transport(c: &Client, wt: Wt) -> anyhow::Result<()> {
    ensure!(
        c.transport() == Some(wt.name()),
        "{} is on {:?}, expected {}",
        c.user(),
        c.transport(),
        wt.name()
    );
    Ok(())
}

/// The next event, failing on a timeout, a lost connection or a lag.
async fn next(ev: &mut EventStream) -> anyhow::Result<Event> {
    let e = ev.next_timeout(WAIT).await.context("timed out waiting for an event")?;
    match &e {
        Event::Connection(ConnectionState::Disconnected { reason, .. }) => {
            bail!("disconnected during the measurement: {reason}")
        }
        Event::Lagged { missed } => bail!("event stream lagged by {missed}"),
        _ => Ok(e),
    }
}

impl SdkPair {
    async fn open(relay: &RelayProcess, root: &Path, wt: Wt) -> anyhow::Result<Self> {
        let url = relay.websocket_url();
        let (alice_user, bob_user) = (format!("alice-{}", wt.short()), format!("bob-{}", wt.short()));
        let (alice, _) = open_client(&url, relay.cert, &root.join(&alice_user), &alice_user, wt).await?;
        let bob_dir = root.join(&bob_user);
        let (bob, mut bob_events) = open_client(&url, relay.cert, &bob_dir, &bob_user, wt).await?;
        alice.sync(WAIT).await.context("alice sync")?;
        bob.sync(WAIT).await.context("bob sync")?;
        check_transport(&alice, wt)?;
        check_transport(&bob, wt)?;
        let group = alice.direct(&bob_user).await?;
        loop {
            if let Event::Joined { group: g } = next(&mut bob_events).await?
                && g == group
            {
                break;
            }
        }
        bob.sync(WAIT).await?;
        Ok(SdkPair {
            wt,
            url,
            cert: relay.cert,
            alice,
            bob: Some((bob, bob_events)),
            bob_dir,
            bob_user,
            group,
        })
    }

    /// One message: `send_text` returning → bob's `Event::Message`. Also
    /// returns how long `send_text` itself took, and the part of the first
    /// time before the relay's timestamp of the entry (taken when the relay
    /// starts appending it; milliseconds, so only right on average).
    async fn once(&mut self, tag: &str, i: usize) -> anyhow::Result<(Duration, Duration, f64)> {
        let (_, ev) = self.bob.as_mut().context("bob is closed")?;
        let t = text(tag, i);
        let call = Instant::now();
        let id = self.alice.send_text(&self.group, &t).await?;
        let returned = Instant::now();
        let returned_ms = now_ns() as f64 / 1e6;
        loop {
            if let Event::Message(m) = next(ev).await? {
                ensure!(m.id == id && m.text == t, "bob got {:?}, expected {t:?}", m.text);
                // The relay's clock truncates to whole milliseconds: +0.5 on average.
                let to_relay = m.relay_at_ms as f64 + 0.5 - returned_ms;
                return Ok((returned.elapsed(), returned - call, to_relay));
            }
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        check_transport(&self.alice, self.wt)?;
        if let Some((bob, _)) = &self.bob {
            check_transport(bob, self.wt)?;
        }
        Ok(())
    }

    /// `n` `send_text` calls back to back; time until bob has all of them.
    async fn throughput(&mut self, n: usize) -> anyhow::Result<(Duration, Duration)> {
        let (_, ev) = self.bob.as_mut().context("bob is closed")?;
        let tag = format!("tp-{}", self.wt.short());
        let start = Instant::now();
        let send = async {
            for i in 0..n {
                self.alice.send_text(&self.group, &text(&tag, i)).await?;
            }
            anyhow::Ok(start.elapsed())
        };
        let receive = async {
            let mut got = 0;
            while got < n {
                if let Event::Message(m) = next(ev).await? {
                    ensure!(m.text == text(&tag, got), "out of order: {:?} at {got}", m.text);
                    got += 1;
                }
            }
            anyhow::Ok(start.elapsed())
        };
        let (sent, received) = tokio::join!(send, receive);
        Ok((sent?, received?))
    }

    /// Bob offline for `m` messages, then reopened. Returns the times from
    /// reopening to connected, to the first message and to the last.
    async fn catch_up(&mut self, m: usize, round: usize) -> anyhow::Result<[Duration; 3]> {
        if let Some((bob, ev)) = self.bob.take() {
            bob.close().await;
            drop((bob, ev));
        }
        let tag = format!("cu-{}-{round}", self.wt.short());
        for i in 0..m {
            self.alice.send_text(&self.group, &text(&tag, i)).await?;
        }
        self.alice.flush(WAIT).await.context("alice flush")?;

        let start = Instant::now();
        let (bob, mut ev) = open_client(&self.url, self.cert, &self.bob_dir, &self.bob_user, self.wt).await?;
        let (mut connected, mut first) = (None, None);
        let mut got = 0;
        while got < m {
            match ev.next_timeout(WAIT).await.context("timed out during catch-up")? {
                Event::Connection(ConnectionState::Connected { transport }) => {
                    ensure!(transport == self.wt.name(), "bob connected over {transport}");
                    connected.get_or_insert(start.elapsed());
                }
                Event::Connection(ConnectionState::Disconnected { reason, .. }) => {
                    bail!("bob disconnected during catch-up: {reason}")
                }
                Event::Lagged { missed } => bail!("event stream lagged by {missed}"),
                Event::Message(msg) => {
                    ensure!(
                        msg.text == text(&tag, got),
                        "catch-up: got {:?} as message {got}",
                        msg.text
                    );
                    first.get_or_insert(start.elapsed());
                    got += 1;
                }
                _ => {}
            }
        }
        let all = start.elapsed();
        check_transport(&bob, self.wt)?;
        // Exactly once: nothing more once bob is up to date.
        bob.sync(WAIT).await?;
        while let Some(e) = ev.next_timeout(Duration::from_millis(200)).await {
            ensure!(!matches!(e, Event::Message(_)), "extra message after catch-up: {e:?}");
        }
        self.bob = Some((bob, ev));
        Ok([
            connected.context("no Connected event")?,
            first.context("no message")?,
            all,
        ])
    }

    async fn close(mut self) {
        if let Some((bob, _)) = self.bob.take() {
            bob.close().await;
        }
        self.alice.close().await;
    }
}

// ---------------------------------------------------------------------------
// Raw protocol

/// Two `WireClient` devices in a group of two (epoch 1), as the SDK's direct
/// conversation is at the relay; no MLS, no local database.
struct RawPair {
    sender: WireClient,
    receiver: WireClient,
    group: GroupId,
    payload: Bytes,
    next: u64,
    drain: tokio::task::JoinHandle<()>,
}

impl RawPair {
    async fn open(relay: &RelayProcess, wt: Wt, payload_len: usize) -> anyhow::Result<Self> {
        let url = match wt {
            Wt::WebTransport => relay.webtransport_url(),
            Wt::WebSocket => relay.websocket_url(),
        };
        let opts = ConnectOptions::new(url, Trust::CertSha256(relay.cert));
        let mut sender =
            WireClient::connect(&Identity::generate(&format!("raw-a-{}", wt.short())), opts.clone()).await?;
        let receiver = WireClient::connect(&Identity::generate(&format!("raw-b-{}", wt.short())), opts).await?;
        // The group id is 16 bytes, like the SDK's, so the payloads match in length.
        let group = GroupId(format!("{:016x}", now_ns() as u64).into_bytes());
        let r = sender
            .request(Request::CreateGroup {
                group: group.clone(),
                policy: Policy::default(),
            })
            .await?;
        ensure!(r == (Reply::GroupCreated { epoch: 0 }), "create group: {r:?}");
        sender
            .request(Request::Send(Send {
                group: group.clone(),
                client_msg_id: 0,
                kind: MessageKind::Commit,
                epoch: 0,
                payload: Bytes::from(framing::commit(&group, 0, &[receiver.ready().device], &[], b"commit")),
                roster: Some(RosterChange {
                    add: vec![receiver.ready().device],
                    remove: vec![],
                    welcome: Some(Bytes::from(framing::welcome(b"welcome"))),
                }),
            }))
            .await?;
        let header = framing::private_message(&group, 1, MessageKind::Application, &[]).len();
        ensure!(
            payload_len > header,
            "payload of {payload_len} bytes is shorter than its header"
        );
        // The body's length prefix grows with the body: shrink it to fit.
        let mut body = payload_len - header;
        let mut payload = Vec::new();
        for _ in 0..4 {
            payload = framing::private_message(&group, 1, MessageKind::Application, &vec![0x5a; body]);
            if payload.len() <= payload_len {
                break;
            }
            body -= payload.len() - payload_len;
        }
        ensure!(
            payload.len().abs_diff(payload_len) <= 1,
            "raw payload of {} bytes for {payload_len}",
            payload.len()
        );
        let payload = Bytes::from(payload);
        // The sender is a member too: read its own Delivers so they never
        // fill its queue.
        let mut own = sender.take_events();
        let drain = tokio::spawn(async move { while own.recv().await.is_some() {} });
        Ok(RawPair {
            sender,
            receiver,
            group,
            payload,
            next: 1,
            drain,
        })
    }

    /// `Send` → the other device's `Deliver`, which it acknowledges (untimed).
    async fn once(&mut self) -> anyhow::Result<Duration> {
        let cmid = self.next;
        self.next += 1;
        let op = Request::Send(Send {
            group: self.group.clone(),
            client_msg_id: cmid,
            kind: MessageKind::Application,
            epoch: 1,
            payload: self.payload.clone(),
            roster: None,
        });
        let start = Instant::now();
        let sender = &self.sender;
        let receiver = &mut self.receiver;
        let receive = async {
            loop {
                match receiver.next_event().await {
                    Some(RelayFrame::Deliver(e)) if e.client_msg_id == cmid => return Ok((start.elapsed(), e.seq)),
                    Some(RelayFrame::Error(e)) => bail!("relay error: {e:?}"),
                    Some(_) => {}
                    None => bail!("connection closed"),
                }
            }
        };
        let (sent, received) = tokio::join!(sender.request(op), receive);
        sent?;
        let (d, seq) = received?;
        self.receiver.ack(&self.group, seq).await?;
        Ok(d)
    }

    async fn close(self) {
        self.sender.close().await;
        self.receiver.close().await;
        self.drain.abort();
    }
}

// ---------------------------------------------------------------------------
// Floor: the disk and MLS in this process

/// Alice and Bob in an MLS group of two; MLS state in memory or in redb files.
fn mls_pair(dir: Option<&Path>) -> anyhow::Result<(Device, Device, GroupId)> {
    let store = |name: &str| match dir {
        Some(d) => MlsStore::open(d.join(format!("{name}.redb"))),
        None => Ok(MlsStore::in_memory()),
    };
    let config = DeviceConfig::default();
    let mut a = Device::create(store("a")?, UserId::from("alice"), config.clone())?;
    let mut b = Device::create(store("b")?, UserId::from("bob"), config)?;
    let group = GroupId(vec![7; 16]);
    let kp = b.generate_key_packages(1, 0)?;
    a.create_group(&group)?;
    let commit = a.add_members(&group, &[&kp[0]])?;
    a.merge_pending_commit(&group)?;
    b.join(commit.welcome.as_deref().context("welcome")?, None)?;
    Ok((a, b, group))
}

/// The length of the MLS PrivateMessage the SDK sends for a 100-byte text.
fn sdk_ciphertext_len() -> anyhow::Result<usize> {
    let (mut a, _, group) = mls_pair(None)?;
    let payload = Payload::new(
        Content::Text {
            text: text("size", 0),
            reply_to: None,
        },
        0,
    );
    Ok(a.send(&group, &payload)?.len())
}

fn floor(n: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut rows = Vec::new();

    let mut file = std::fs::File::create(dir.path().join("fsync"))?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        file.write_all(&[0x42; 200])?;
        file.sync_data()?;
        v.push(t.elapsed());
    }
    rows.push(row("disk: 200-byte write + fdatasync", &mut v));

    const TABLE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("t");
    let db = redb::Database::create(dir.path().join("floor.redb"))?;
    let value = [0x42u8; 600];
    let mut v = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let t = Instant::now();
        let tx = db.begin_write()?;
        tx.open_table(TABLE)?.insert(i, value.as_slice())?;
        tx.commit()?;
        v.push(t.elapsed());
    }
    rows.push(row("redb: one durable commit (600-byte value)", &mut v));

    let payload = Payload::new(
        Content::Text {
            text: text("floor", 0),
            reply_to: None,
        },
        0,
    );
    for (label, on_disk) in [("in memory", None), ("in redb files", Some(dir.path()))] {
        let (mut a, mut b, group) = mls_pair(on_disk)?;
        let (mut enc, mut dec) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            let t = Instant::now();
            let ct = a.send(&group, &payload)?;
            enc.push(t.elapsed());
            let t = Instant::now();
            b.process(&ct)?;
            dec.push(t.elapsed());
        }
        rows.push(row(&format!("MLS encrypt, state {label}"), &mut enc));
        rows.push(row(&format!("MLS decrypt, state {label}"), &mut dec));
    }
    println!("\n### Floor: disk and MLS in this process, {n} each (ms)\n");
    println!("| operation | n | p50 | p90 | p99 | max | mean |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------

async fn latency(relay: &RelayProcess, root: &Path, n: usize) -> anyhow::Result<()> {
    let ct_len = sdk_ciphertext_len()?;
    let mut sdk = Vec::new();
    let mut raw = Vec::new();
    for wt in TRANSPORTS {
        sdk.push(SdkPair::open(relay, root, wt).await?);
        raw.push(RawPair::open(relay, wt, ct_len).await?);
    }
    // [sdk wt, sdk ws, raw wt, raw ws] delivery times; send_text call times.
    let mut delivery: [Vec<Duration>; 4] = Default::default();
    let mut call: [Vec<Duration>; 2] = Default::default();
    let mut to_relay: [Vec<f64>; 2] = Default::default();
    let blocks = n.div_ceil(BLOCK);
    for block in 0..=blocks {
        let warmup = block == 0;
        for k in 0..2 {
            for i in 0..BLOCK {
                let (d, c, r) = sdk[k].once("lat", block * BLOCK + i).await?;
                if !warmup {
                    delivery[k].push(d);
                    call[k].push(c);
                    to_relay[k].push(r);
                }
            }
            sdk[k].check()?;
            for _ in 0..BLOCK {
                let d = raw[k].once().await?;
                if !warmup {
                    delivery[2 + k].push(d);
                }
            }
        }
    }
    println!("\n### Latency: one message at a time, {n} per row after {BLOCK} untimed (ms)\n");
    println!(
        "SDK text: {TEXT_LEN} bytes; its MLS ciphertext {ct_len} bytes; raw payload {} bytes.\n",
        raw[0].payload.len()
    );
    println!("| measurement | n | p50 | p90 | p99 | max | mean |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for k in 0..2 {
        let l = TRANSPORTS[k].label();
        println!(
            "{}",
            row(
                &format!("SDK, {l}: `send_text` returned → `Event::Message` on the other device"),
                &mut delivery[k]
            )
        );
    }
    for k in 0..2 {
        let l = TRANSPORTS[k].label();
        println!(
            "{}",
            row(
                &format!("raw protocol, {l}: `Send` → `Deliver` on the other device"),
                &mut delivery[2 + k]
            )
        );
    }
    for k in 0..2 {
        let l = TRANSPORTS[k].label();
        println!(
            "{}",
            row(&format!("SDK, {l}: the `send_text` call itself"), &mut call[k])
        );
    }
    println!("\nWhere the SDK's time goes, split at the relay's timestamp of the entry (mean ms):\n");
    println!(
        "| transport | `send_text` returned → relay starts the append | → `Event::Message` on the other device | total |"
    );
    println!("|---|---:|---:|---:|");
    for k in 0..2 {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let total: Vec<f64> = delivery[k].iter().map(|d| d.as_secs_f64() * 1e3).collect();
        let (before, all) = (mean(&to_relay[k]), mean(&total));
        println!(
            "| {} | {before:.2} | {:.2} | {all:.2} |",
            TRANSPORTS[k].label(),
            all - before
        );
    }
    for r in raw {
        r.close().await;
    }

    println!("\n### Throughput: {THROUGHPUT} `send_text` calls back to back\n");
    println!("| transport | all `send_text` returned (s) | all received (s) | messages/s |");
    println!("|---|---:|---:|---:|");
    for pair in sdk.iter_mut() {
        let (sent, received) = pair.throughput(THROUGHPUT).await?;
        pair.check()?;
        println!(
            "| {} | {:.2} | {:.2} | {:.0} |",
            pair.wt.label(),
            sent.as_secs_f64(),
            received.as_secs_f64(),
            THROUGHPUT as f64 / received.as_secs_f64()
        );
    }
    for pair in sdk {
        pair.close().await;
    }
    Ok(())
}

async fn catchup(relay: &RelayProcess, root: &Path, m: usize, repeats: usize) -> anyhow::Result<()> {
    let mut pairs = Vec::new();
    for wt in TRANSPORTS {
        let dir = root.join(format!("catchup-{}", wt.short()));
        pairs.push(SdkPair::open(relay, &dir, wt).await?);
    }
    let mut results: [Vec<[Duration; 3]>; 2] = Default::default();
    for round in 0..repeats {
        for (k, pair) in pairs.iter_mut().enumerate() {
            let r = pair.catch_up(m, round).await?;
            eprintln!(
                "catch-up {} round {round}: connected {:?}, first {:?}, all {:?}",
                pair.wt.label(),
                r[0],
                r[1],
                r[2]
            );
            results[k].push(r);
        }
    }
    println!("\n### Catch-up: {m} missed messages, {repeats} rounds per transport (ms)\n");
    println!("Each round checked: all {m} `Event::Message`s exactly once and in order.\n");
    println!("| transport | to connected | to first message | to all {m}: median | min | max | all rounds |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for (k, rs) in results.iter().enumerate() {
        let median = |i: usize| {
            let mut v: Vec<Duration> = rs.iter().map(|r| r[i]).collect();
            v.sort();
            v[v.len() / 2]
        };
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let mut all: Vec<Duration> = rs.iter().map(|r| r[2]).collect();
        let rounds: Vec<String> = all.iter().map(|d| format!("{:.0}", ms(*d))).collect();
        all.sort();
        println!(
            "| {} | {:.0} | {:.0} | **{:.0}** | {:.0} | {:.0} | {} |",
            TRANSPORTS[k].label(),
            ms(median(0)),
            ms(median(1)),
            ms(median(2)),
            ms(all[0]),
            ms(all[all.len() - 1]),
            rounds.join(", ")
        );
    }
    for pair in pairs {
        pair.close().await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: usize| -> anyhow::Result<usize> {
        args.get(i).map_or(Ok(default), |s| s.parse().context("a number"))
    };
    let mode = args.first().map(String::as_str).unwrap_or("all");
    let relay = RelayProcess::start("")?;
    // Client data directories on the same disk as the relay's.
    let root = relay.dir().join("clients");
    println!(
        "relay pid {}, {}; client data under {}",
        relay.pid(),
        relay.addr,
        root.display()
    );
    match mode {
        "latency" => latency(&relay, &root, num(1, 2000)?).await?,
        "catchup" => catchup(&relay, &root, num(1, 1000)?, num(2, 5)?).await?,
        "floor" => floor(num(1, 500)?)?,
        "all" => {
            floor(500)?;
            latency(&relay, &root, num(1, 2000)?).await?;
            catchup(&relay, &root, num(2, 1000)?, num(3, 5)?).await?;
        }
        other => bail!("unknown mode {other}: latency N | catchup M R | floor N | all N M R"),
    }
    Ok(())
}
