//! The relay process: setup ([`Relay::load`]) separate from running
//! ([`Relay::run`]), so tests and embedders can start one on port 0 and stop it.
//!
//! One port number serves both transports: WebSocket over TLS on TCP and
//! WebTransport on UDP. Both accept loops hand their connections to the same
//! session code, under the same handshake deadline and connection limit.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hush_protocol::frame::CloseReason;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::bus::{Bus, InProcessBus};
use crate::config::Config;
use crate::error::{RelayError, RelayResult};
use crate::grouplog::{GroupLog, LocalLog};
use crate::ratelimit::RateLimiter;
use crate::shutdown::stopped;
use crate::state::{AckBatcher, Shared, now_ms};
use crate::store::Store;
use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};
use crate::tls::{CertHandle, CertSource, CertStore, DevCerts, TlsMaterial, load_pem};
use crate::token::TokenVerifier;
use crate::transport::{Connection, TransportError, quic, websocket, webtransport};

type QuicEndpoint = wtransport::quinn::Endpoint;

/// A loaded relay, ready to run.
pub struct Relay {
    shared: Arc<Shared>,
    listener: TcpListener,
    quic: Option<Arc<QuicEndpoint>>,
    dev_http: Option<TcpListener>,
    certs: CertHandle,
    tls: TlsMaterial,
    stats: Stats,
    shutdown_tx: watch::Sender<bool>,
}

/// Stops a running relay.
#[derive(Clone)]
pub struct ShutdownHandle {
    tx: watch::Sender<bool>,
}

impl ShutdownHandle {
    /// Starts a graceful shutdown: stop accepting, tell clients to reconnect,
    /// drain, flush, return from [`Relay::run`].
    pub fn shutdown(&self) {
        let _ = self.tx.send(true);
    }
}

#[derive(Default)]
struct Counters {
    setups: Arc<AtomicUsize>,
    setup_timeouts: AtomicU64,
    /// Setups refused at accept (too many in progress, or from one address).
    refused: AtomicU64,
    /// QUIC handshakes answered with a Retry (address validation).
    retries: AtomicU64,
    /// Setups and connections per client address.
    addresses: Arc<AddressCounts>,
}

/// A count in an atomic, held while this lives: taking it fails at a
/// maximum, and dropping gives it back on every path.
struct Held(Arc<AtomicUsize>);

impl Held {
    fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Held> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| Held(count.clone()))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Setups and connections per client address (an IPv6 address counts by its
/// /64, what one subscriber usually gets).
#[derive(Default)]
pub(crate) struct AddressCounts(std::sync::Mutex<HashMap<IpAddr, usize>>);

/// One setup or connection of an address, held while this lives.
struct AddressSlot {
    table: Arc<AddressCounts>,
    key: IpAddr,
}

impl AddressCounts {
    /// What counts as one client address: an IPv4 address (also when
    /// mapped into IPv6), or an IPv6 /64.
    pub(crate) fn key(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !0xffff_ffff_ffff_ffff)),
            },
            v4 => v4,
        }
    }

    fn take(table: &Arc<AddressCounts>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let key = Self::key(ip);
        let mut map = table.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: table.clone(),
            key,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// What a new connection holds from accept on: its setup slot (given back
/// once set up) and its address's slot (for its whole life).
struct Admission {
    setup: Held,
    address: AddressSlot,
}

/// Live counts of a relay, for tests, benchmarks and metrics.
#[derive(Clone)]
pub struct Stats {
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    quic: Option<Arc<QuicEndpoint>>,
}

impl Stats {
    /// Connections past transport setup (in the protocol handshake or
    /// authenticated), both transports.
    pub fn sessions(&self) -> usize {
        self.shared.connections.load(Ordering::Acquire)
    }

    /// Connections still in transport setup (TCP+TLS+upgrade, or QUIC
    /// handshake + HTTP/3 CONNECT + stream).
    pub fn setups(&self) -> usize {
        self.counters.setups.load(Ordering::Acquire)
    }

    /// Transport setups abandoned at the handshake deadline since start.
    pub fn setup_timeouts(&self) -> u64 {
        self.counters.setup_timeouts.load(Ordering::Acquire)
    }

    /// Setups refused at accept since start: too many in progress
    /// (`limits.max_setups`) or from one address (`limits.max_per_address`).
    pub fn refused_setups(&self) -> u64 {
        self.counters.refused.load(Ordering::Acquire)
    }

    /// QUIC handshakes answered with a Retry since start (the relay validates
    /// client addresses while `limits.quic_retry_above` setups are in progress).
    pub fn quic_retries(&self) -> u64 {
        self.counters.retries.load(Ordering::Acquire)
    }

    /// QUIC connections the endpoint holds, in any state (handshaking, open,
    /// closing): this is what a half-open QUIC handshake costs until dropped.
    pub fn quic_connections(&self) -> usize {
        self.quic.as_ref().map_or(0, |q| q.open_connections())
    }
}

/// Binds TCP and UDP on the same port. With port 0, TCP picks a port and UDP
/// takes the same number; if that UDP port is taken, try again.
fn bind_pair(addr: SocketAddr, with_udp: bool) -> anyhow::Result<(std::net::TcpListener, Option<UdpSocket>)> {
    let attempts = if addr.port() == 0 { 32 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let tcp = std::net::TcpListener::bind(addr).with_context(|| format!("listening on TCP {addr}"))?;
        if !with_udp {
            return Ok((tcp, None));
        }
        let bound = tcp.local_addr()?;
        match UdpSocket::bind(bound) {
            Ok(udp) => return Ok((tcp, Some(udp))),
            Err(e) => last = Some(e),
        }
    }
    Err(anyhow::anyhow!(
        "binding UDP on the TCP port of {addr}: {}",
        last.map_or_else(String::new, |e| e.to_string())
    ))
}

/// `relay-` and 16 random hex digits.
fn random_relay_id() -> String {
    format!("relay-{}", hex::encode(rand::random::<[u8; 8]>()))
}

impl Relay {
    /// Opens the data directory and store, prepares TLS and binds the listeners.
    pub async fn load(mut config: Config) -> RelayResult<Relay> {
        config.validate()?;
        let data_dir = |reason: String| RelayError::DataDir {
            dir: config.data_dir.clone(),
            reason,
        };
        std::fs::create_dir_all(&config.data_dir).map_err(|e| data_dir(format!("cannot create it: {e}")))?;
        if config.relay_id.is_empty() {
            // Unique per data directory, and stable across restarts.
            let path = config.data_dir.join("relay-id");
            config.relay_id = match std::fs::read_to_string(&path) {
                Ok(id) if !id.trim().is_empty() => id.trim().to_owned(),
                _ => {
                    let id = random_relay_id();
                    std::fs::write(&path, &id).map_err(|e| data_dir(format!("cannot write relay-id: {e}")))?;
                    id
                }
            };
        }
        let store: Arc<dyn Store> = Arc::new(
            EmbeddedStore::open(&config.data_dir.join("store"), EmbeddedOptions::default())
                .map_err(|e| data_dir(format!("cannot open the store in it: {e}")))?,
        );
        Self::with_parts(config, store, Arc::new(InProcessBus::new()))
    }

    /// Assembles a relay from parts (tests use other stores or buses) and binds
    /// its listeners. Needs a Tokio runtime.
    pub fn with_parts(mut config: Config, store: Arc<dyn Store>, bus: Arc<dyn Bus>) -> RelayResult<Relay> {
        config.validate()?;
        if config.relay_id.is_empty() {
            config.relay_id = random_relay_id();
        }
        let (source, tls) = match (&config.tls.cert, &config.tls.key) {
            (Some(c), Some(k)) => (
                CertSource::Pem {
                    cert: c.clone(),
                    key: k.clone(),
                },
                load_pem(c, k).map_err(RelayError::tls)?,
            ),
            _ => {
                let certs = DevCerts {
                    dir: config.data_dir.clone(),
                    names: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
                    validity: Duration::from_secs(config.tls.dev_validity_secs),
                    renew_before: Duration::from_secs(config.tls.dev_renew_before_secs),
                };
                let state = certs.load(time::OffsetDateTime::now_utc()).map_err(RelayError::tls)?;
                let tls = state.serving.clone();
                (
                    CertSource::Dev {
                        certs,
                        state: Box::new(state),
                    },
                    tls,
                )
            }
        };
        let store_certs = CertStore::new(&tls).map_err(RelayError::tls)?;
        if let CertSource::Dev { state, .. } = &source {
            store_certs
                .replace(state.serving.clone(), state.published())
                .map_err(RelayError::tls)?;
        }
        let certs = CertHandle {
            store: store_certs,
            source: Arc::new(Mutex::new(source)),
        };

        let (tcp, udp) =
            bind_pair(config.listen, config.quic.enabled).map_err(|e| RelayError::listen(format!("{e:#}")))?;
        tcp.set_nonblocking(true).map_err(RelayError::listen)?;
        let listener = TcpListener::from_std(tcp).map_err(RelayError::listen)?;
        let quic = match udp {
            Some(udp) => {
                let transport = quic::transport_config(&config.quic, &config.limits)
                    .map_err(|e| RelayError::Config(format!("{e:#}")))?;
                let tls = certs.store.quic_config().map_err(RelayError::tls)?;
                Some(Arc::new(
                    quic::endpoint(udp, tls, transport)
                        .map_err(|e| RelayError::listen(format!("WebTransport: {e:#}")))?,
                ))
            }
            None => None,
        };
        let dev_http = if config.dev_http.enabled.unwrap_or(tls.dev) {
            // A relay on port 0 (tests, several relays on one machine) gets its
            // dev listener on a free port too, unless one was chosen.
            let mut at = config.dev_http.listen;
            if config.listen.port() == 0 && at == crate::config::DevHttpConfig::default().listen {
                at.set_port(0);
            }
            // A development convenience: failing to bind it does not stop the relay.
            match std::net::TcpListener::bind(at).and_then(|l| {
                l.set_nonblocking(true)?;
                TcpListener::from_std(l)
            }) {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::warn!(%at, error = %e, "dev HTTP listener not started");
                    None
                }
            }
        } else {
            None
        };

        let log: Arc<dyn GroupLog> = LocalLog::new(store.clone(), bus.clone(), config.region.clone());
        // The publisher ends when the presence table does, with the relay.
        let (presence, presence_changes) = crate::presence::Presence::new();
        tokio::spawn(crate::presence::publish(store.clone(), bus.clone(), presence_changes));
        let shared = Arc::new(Shared {
            rate: RateLimiter::new(config.limits.rate_per_second, config.limits.rate_burst),
            lookups: RateLimiter::new(config.limits.lookups_per_minute / 60.0, config.limits.lookups_burst),
            one_time_claims: RateLimiter::new(
                config.limits.one_time_claims_per_hour / 3600.0,
                config.limits.one_time_claims_per_hour,
            ),
            tokens: TokenVerifier::from_config(&config.auth)?,
            acks: AckBatcher::spawn(store.clone(), Duration::from_millis(50)),
            presence,
            connections: Default::default(),
            next_conn_id: Default::default(),
            rendezvous: Default::default(),
            registering: Default::default(),
            origins: Arc::new(crate::transport::OriginPolicy::new(
                &config.allowed_origins,
                config.is_dev_setup(),
            )),
            config,
            store,
            bus,
            log,
        });
        let stats = Stats {
            shared: shared.clone(),
            counters: Arc::default(),
            quic: quic.clone(),
        };
        Ok(Relay {
            shared,
            listener,
            quic,
            dev_http,
            certs,
            tls,
            stats,
            shutdown_tx: watch::channel(false).0,
        })
    }

    /// The bound address (TCP for WebSocket; UDP for WebTransport has the same
    /// port when enabled).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.shared.config.listen)
    }

    /// The id this relay puts in every authentication challenge.
    pub fn relay_id(&self) -> &str {
        &self.shared.config.relay_id
    }

    /// The bound UDP address of WebTransport, if enabled.
    pub fn quic_addr(&self) -> Option<SocketAddr> {
        self.quic.as_ref().and_then(|q| q.local_addr().ok())
    }

    /// The bound address of the plain-HTTP development listener, if enabled.
    pub fn dev_http_addr(&self) -> Option<SocketAddr> {
        self.dev_http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The TLS certificate served at start.
    pub fn tls(&self) -> &TlsMaterial {
        &self.tls
    }

    /// The certificate handle (reload, rotation, published hashes).
    pub fn certs(&self) -> CertHandle {
        self.certs.clone()
    }

    /// Live counts.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// A handle that stops [`Relay::run`].
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            tx: self.shutdown_tx.clone(),
        }
    }

    /// Accepts and serves connections until shut down.
    pub async fn run(self) -> RelayResult<()> {
        let Relay {
            shared,
            listener,
            quic,
            dev_http,
            certs,
            tls: _,
            stats,
            shutdown_tx,
        } = self;
        let acceptor = Arc::new(TlsAcceptor::from(Arc::new(
            certs.store.tcp_config().map_err(RelayError::tls)?,
        )));
        // Every connection task holds a clone; when all are gone, draining is done.
        let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
        let spawner = Spawner {
            shared: shared.clone(),
            counters: stats.counters.clone(),
            shutdown: shutdown_tx.clone(),
            alive: alive_tx,
        };
        let mut background = vec![tokio::spawn(retention_loop(shared.clone(), shutdown_tx.subscribe()))];
        if let Some(l) = dev_http {
            let site = crate::devhttp::DevSite {
                certs: certs.clone(),
                static_dir: shared.config.dev_http.static_dir.clone(),
                relay_addr: listener.local_addr().unwrap_or(shared.config.listen),
            };
            background.push(tokio::spawn(crate::devhttp::serve(l, site, shutdown_tx.subscribe())));
        }
        if matches!(&*certs.source.lock().await, CertSource::Dev { .. }) {
            background.push(tokio::spawn(rotation_loop(
                certs.clone(),
                Duration::from_secs(shared.config.tls.dev_check_interval_secs),
                shutdown_tx.subscribe(),
            )));
        }
        let quic_loop = quic.clone().map(|q| tokio::spawn(quic_accept_loop(q, spawner.clone())));
        tcp_accept_loop(listener, acceptor, spawner).await;
        if let Some(q) = quic_loop {
            let _ = q.await;
        }
        // Connections see the shutdown flag and close with GoingAway.
        let _ = tokio::time::timeout(Duration::from_secs(10), alive_rx.recv()).await;
        if let Some(q) = &quic {
            q.close(
                wtransport::quinn::VarInt::from_u32(webtransport::CLOSE_CODE),
                b"relay stopped",
            );
            let _ = tokio::time::timeout(Duration::from_secs(2), q.wait_idle()).await;
        }
        for b in background {
            b.abort();
        }
        shared.acks.flush().await;
        tracing::info!("relay stopped");
        Ok(())
    }
}

/// Starts connection tasks: transport setup under the handshake deadline, the
/// connection limit, then the session.
#[derive(Clone)]
struct Spawner {
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    shutdown: watch::Sender<bool>,
    alive: mpsc::Sender<()>,
}

impl Spawner {
    /// Admits a new connection from `peer`, or refuses it: too many setups
    /// in progress, or too many setups and connections from its address.
    fn admit(&self, peer: SocketAddr) -> Option<Admission> {
        let limits = &self.shared.config.limits;
        let admitted = Held::take(&self.counters.setups, limits.max_setups).and_then(|setup| {
            AddressCounts::take(&self.counters.addresses, peer.ip(), limits.max_per_address)
                .map(|address| Admission { setup, address })
        });
        if admitted.is_none() {
            self.counters.refused.fetch_add(1, Ordering::AcqRel);
            tracing::debug!(%peer, "connection refused at accept: setup or per-address limit");
        }
        admitted
    }

    fn spawn<F>(&self, peer: SocketAddr, admission: Admission, setup: F)
    where
        F: Future<Output = Result<Connection, TransportError>> + Send + 'static,
    {
        let shared = self.shared.clone();
        let counters = self.counters.clone();
        let conn_shutdown = self.shutdown.subscribe();
        let alive = self.alive.clone();
        // The setup (TLS, upgrade or HTTP/3) with its deadline timer, the
        // refusal and the session are each boxed: a task keeps the space of its
        // largest state for its whole life, and inline the setup's state would
        // stay with every idle connection.
        let setup = Box::pin(setup);
        tokio::spawn(async move {
            let _alive = alive;
            let Admission {
                setup: setup_slot,
                address: _address,
            } = admission;
            let limits = &shared.config.limits;
            let deadline = Instant::now() + limits.handshake_timeout();
            let accepted = Box::pin(tokio::time::timeout_at(deadline.into(), setup)).await;
            drop(setup_slot);
            let conn = match accepted {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "transport setup failed");
                    return;
                }
                Err(_) => {
                    // Dropping the setup future closes the socket or QUIC connection.
                    counters.setup_timeouts.fetch_add(1, Ordering::AcqRel);
                    tracing::debug!(%peer, "transport setup timed out");
                    return;
                }
            };
            let Some(_counted) = Held::take(&shared.connections, limits.max_connections) else {
                Box::pin(refuse_busy(conn)).await;
                return;
            };
            Box::pin(crate::session::serve(shared.clone(), conn, conn_shutdown, deadline)).await;
        });
    }
}

fn frame_limits(l: &crate::config::LimitsConfig) -> crate::transport::FrameLimits {
    crate::transport::FrameLimits {
        max_frame_len: l.max_frame_len,
        handshake_frame_len: l.handshake_frame_len,
    }
}

async fn tcp_accept_loop(listener: TcpListener, acceptor: Arc<TlsAcceptor>, spawner: Spawner) {
    let mut shutdown = spawner.shutdown.subscribe();
    let frame_limits = frame_limits(&spawner.shared.config.limits);
    let origins = spawner.shared.origins.clone();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and similar: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Refused: dropping the socket closes it before any TLS work.
        let Some(admission) = spawner.admit(peer) else {
            continue;
        };
        spawner.spawn(
            peer,
            admission,
            websocket::accept(tcp, peer, acceptor.clone(), frame_limits, origins.clone()),
        );
    }
}

async fn quic_accept_loop(endpoint: Arc<QuicEndpoint>, spawner: Spawner) {
    let mut shutdown = spawner.shutdown.subscribe();
    let frame_limits = frame_limits(&spawner.shared.config.limits);
    let origins = spawner.shared.origins.clone();
    loop {
        let incoming = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
        };
        let peer = incoming.remote_address();
        // Under load, make the client prove its address (one round trip)
        // before the relay spends a handshake on it.
        let retry_above = spawner.shared.config.limits.quic_retry_above;
        if !incoming.remote_address_validated()
            && incoming.may_retry()
            && spawner.counters.setups.load(Ordering::Acquire) >= retry_above
        {
            if incoming.retry().is_ok() {
                spawner.counters.retries.fetch_add(1, Ordering::AcqRel);
            }
            continue;
        }
        let Some(admission) = spawner.admit(peer) else {
            incoming.refuse();
            continue;
        };
        spawner.spawn(
            peer,
            admission,
            webtransport::accept(incoming, frame_limits, origins.clone()),
        );
    }
}

async fn rotation_loop(certs: CertHandle, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped(&mut shutdown) => return,
        }
        if let Err(e) = certs.rotate_dev(time::OffsetDateTime::now_utc()).await {
            tracing::warn!(error = %e, "development certificate rotation failed");
        }
    }
}

async fn refuse_busy(mut conn: crate::transport::Connection) {
    use hush_protocol::frame::{Closing, RelayFrame};
    let frame = RelayFrame::Closing(Closing {
        reason: CloseReason::ServerBusy,
        reconnect_after_ms: 1000,
        message: "relay is at its connection limit; retry later or elsewhere".into(),
    });
    if let Some(f) = crate::session::encode(&frame) {
        let _ = conn.writer.feed(f).await;
        let _ = conn.writer.flush().await;
    }
    conn.writer.close(CloseReason::ServerBusy, "connection limit").await;
}

async fn retention_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let r = &shared.config.retention;
    let mut tick = tokio::time::interval(Duration::from_secs(r.interval_secs));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped(&mut shutdown) => return,
        }
        let now = Instant::now();
        shared.rate.sweep(now);
        shared.lookups.sweep(now);
        shared.one_time_claims.sweep(now);
        // A pass is many small store transactions (a page of groups, then
        // bounded steps per group); stopping between two of them is safe.
        let pass = shared
            .log
            .prune(now_ms(), r.max_age_secs.saturating_mul(1000), r.delete_acknowledged);
        let result = tokio::select! {
            result = pass => result,
            _ = stopped(&mut shutdown) => return,
        };
        match result {
            Ok(rep) if rep.acknowledged + rep.expired > 0 => {
                tracing::info!(
                    acknowledged = rep.acknowledged,
                    expired = rep.expired,
                    groups = rep.groups_moved,
                    steps = rep.steps,
                    "retention deleted entries"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention failed"),
        }
    }
}
