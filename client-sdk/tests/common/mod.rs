//! Test harness: a real relay on a loopback port (its data in a temporary
//! directory) and SDK clients with their own data directories.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use hush_relay::{Config, Relay, ShutdownHandle};
use hush_sdk::{Client, Event, Timing, Trust};

pub const WAIT: Duration = Duration::from_secs(20);

pub struct TestRelay {
    pub addr: std::net::SocketAddr,
    pub cert: [u8; 32],
    pub handle: ShutdownHandle,
    pub task: tokio::task::JoinHandle<hush_relay::RelayResult<()>>,
    pub dir: PathBuf,
}

impl TestRelay {
    pub async fn start(dir: &Path) -> Self {
        Self::start_at(dir, "127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts a relay on `listen` with its data in `dir` (reused by restarts).
    pub async fn start_at(dir: &Path, listen: std::net::SocketAddr) -> Self {
        Self::start_with(dir, listen, |_| {}).await
    }

    /// Starts a relay whose test configuration `adjust` changes first (its
    /// `[limits]`, say).
    pub async fn start_with(dir: &Path, listen: std::net::SocketAddr, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config {
            listen,
            data_dir: dir.to_owned(),
            ..Config::default()
        };
        config.limits.rate_per_second = 100_000.0;
        config.limits.rate_burst = 100_000.0;
        adjust(&mut config);
        // A relay stopped just before in this process may still be letting
        // go of the store's lock (its last tasks end after `run` returns):
        // try again for a while. (A separate process exits and frees it.)
        let deadline = tokio::time::Instant::now() + WAIT;
        let relay = loop {
            match Relay::load(config.clone()).await {
                Ok(r) => break r,
                Err(e) if e.to_string().contains("already open") && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("starting the relay: {e}"),
            }
        };
        let addr = relay.local_addr();
        let cert = relay.tls().leaf_sha256;
        let handle = relay.shutdown_handle();
        let task = tokio::spawn(relay.run());
        TestRelay {
            addr,
            cert,
            handle,
            task,
            dir: dir.to_owned(),
        }
    }

    pub fn url(&self) -> String {
        format!("wss://{}/ws", self.addr)
    }

    pub async fn stop(self) {
        self.handle.shutdown();
        let _ = tokio::time::timeout(WAIT, self.task).await;
    }

    /// Opens (or reopens) the client whose state is in `dir`.
    pub async fn client(&self, dir: &Path, user: &str) -> Client {
        Client::builder()
            .relay(self.url())
            .trust(Trust::CertSha256(self.cert))
            .data_dir(dir)
            .user(user)
            .timing(fast_timing())
            .open()
            .await
            .unwrap()
    }

    /// Opens a client with its event stream subscribed from the start.
    pub async fn client_with_events(&self, dir: &Path, user: &str) -> (Client, hush_sdk::EventStream) {
        Client::builder()
            .relay(self.url())
            .trust(Trust::CertSha256(self.cert))
            .data_dir(dir)
            .user(user)
            .timing(fast_timing())
            .open_with_events()
            .await
            .unwrap()
    }

    /// A client that is connected and settled (key packages uploaded).
    pub async fn ready_client(&self, dir: &Path, user: &str) -> Client {
        let c = self.client(dir, user).await;
        c.sync(WAIT).await.unwrap();
        c
    }
}

pub fn fast_timing() -> Timing {
    Timing {
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        heartbeat: Duration::from_millis(500),
        ..Timing::default()
    }
}

/// Waits for the first event matching `pick`, skipping others.
pub async fn wait_for<T>(events: &mut hush_sdk::EventStream, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let ev = events.next_timeout(left).await.expect("timed out waiting for an event");
        if let Some(t) = pick(&ev) {
            return t;
        }
    }
}

/// Every byte of every file under `dir`.
pub fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.extend(std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A device registered as `user` that speaks only the wire protocol, and its
/// MLS state (a credential of `user`): what tests play a hostile peer with.
pub async fn wire_device(
    relay: &TestRelay,
    user: &str,
) -> (
    hush_sdk::wire::Identity,
    hush_sdk::wire::WireClient,
    hush_crypto::Device,
) {
    use hush_sdk::wire::{ConnectOptions, Identity, WireClient};
    let key = Identity::generate(user);
    let wire = WireClient::connect(&key, ConnectOptions::new(relay.url(), Trust::CertSha256(relay.cert)))
        .await
        .unwrap();
    let identity = hush_crypto::DeviceIdentity::from_secret(hush_sdk::UserId(user.into()), key.seed()).unwrap();
    let device = hush_crypto::Device::with_identity(
        hush_crypto::MlsStore::in_memory(),
        identity,
        hush_crypto::DeviceConfig::default(),
    )
    .unwrap();
    (key, wire, device)
}
