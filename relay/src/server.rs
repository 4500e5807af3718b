//! The relay process: setup ([`Relay::load`]) separate from running
//! ([`Relay::run`]), so tests and embedders can start one on port 0 and stop it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use hush_protocol::frame::CloseReason;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::bus::{Bus, BusSink, InProcessBus};
use crate::config::Config;
use crate::fanout::FanOut;
use crate::ratelimit::RateLimiter;
use crate::state::{AckBatcher, Shared, now_ms};
use crate::store::Store;
use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};
use crate::tls::{TlsMaterial, dev_certificate, load_pem};
use crate::token::TokenVerifier;
use crate::transport::websocket;

/// A loaded relay, ready to run.
pub struct Relay {
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: TlsMaterial,
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

impl Relay {
    /// Opens the data directory and store, prepares TLS and binds the listener.
    pub async fn load(config: Config) -> anyhow::Result<Relay> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let tls = match (&config.tls.cert, &config.tls.key) {
            (Some(c), Some(k)) => load_pem(c, k)?,
            _ => dev_certificate(
                &config.data_dir,
                &["localhost".into(), "127.0.0.1".into(), "::1".into()],
            )?,
        };
        let store: Arc<dyn Store> = Arc::new(
            EmbeddedStore::open(&config.data_dir.join("store"), EmbeddedOptions::default())
                .map_err(|e| anyhow::anyhow!("opening the store in {}: {e}", config.data_dir.display()))?,
        );
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        Self::with_parts(config, store, Arc::new(InProcessBus::new()), listener, tls)
    }

    /// Assembles a relay from parts (tests use other stores or buses).
    pub fn with_parts(
        config: Config,
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        listener: TcpListener,
        tls: TlsMaterial,
    ) -> anyhow::Result<Relay> {
        let fanout = Arc::new(FanOut::new(bus.clone()));
        let sink: Arc<dyn BusSink> = fanout.clone();
        bus.attach(Arc::downgrade(&sink));
        let shared = Arc::new(Shared {
            rate: RateLimiter::new(config.limits.rate_per_second, config.limits.rate_burst),
            tokens: TokenVerifier::from_config(&config.auth)?,
            acks: AckBatcher::spawn(store.clone(), Duration::from_millis(50)),
            online: Default::default(),
            connections: Default::default(),
            next_conn_id: Default::default(),
            config,
            store,
            bus,
            fanout,
        });
        Ok(Relay {
            shared,
            listener,
            tls,
            shutdown_tx: watch::channel(false).0,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.shared.config.listen)
    }

    /// The TLS certificate in use.
    pub fn tls(&self) -> &TlsMaterial {
        &self.tls
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
    pub async fn run(self) -> anyhow::Result<()> {
        let Relay {
            shared,
            listener,
            tls,
            shutdown_tx,
        } = self;
        let acceptor = Arc::new(TlsAcceptor::from(Arc::new(tls.server_config()?)));
        let mut shutdown = shutdown_tx.subscribe();
        // Every connection task holds a clone; when all are gone, draining is done.
        let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
        let retention = tokio::spawn(retention_loop(shared.clone(), shutdown_tx.subscribe()));
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
            let shared = shared.clone();
            let acceptor = acceptor.clone();
            let conn_shutdown = shutdown_tx.subscribe();
            let alive = alive_tx.clone();
            tokio::spawn(async move {
                let _alive = alive;
                let limits = &shared.config.limits;
                let deadline = Instant::now() + limits.handshake_timeout();
                let accepted = tokio::time::timeout_at(
                    deadline.into(),
                    websocket::accept(tcp, peer, acceptor, limits.max_frame_len),
                )
                .await;
                let conn = match accepted {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "transport setup failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "transport setup timed out");
                        return;
                    }
                };
                let n = shared.connections.fetch_add(1, Ordering::AcqRel) + 1;
                if n > limits.max_connections {
                    shared.connections.fetch_sub(1, Ordering::AcqRel);
                    refuse_busy(conn).await;
                    return;
                }
                crate::session::serve(shared.clone(), conn, conn_shutdown, deadline).await;
                shared.connections.fetch_sub(1, Ordering::AcqRel);
            });
        }
        drop(listener);
        drop(alive_tx);
        // Connections see the shutdown flag and close with GoingAway.
        let _ = tokio::time::timeout(Duration::from_secs(10), alive_rx.recv()).await;
        retention.abort();
        shared.acks.flush().await;
        tracing::info!("relay stopped");
        Ok(())
    }
}

/// Resolves when the shutdown flag turns true (or its sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
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
        shared.rate.sweep(Instant::now());
        match shared
            .store
            .prune(now_ms(), r.max_age_secs.saturating_mul(1000), r.delete_acknowledged)
            .await
        {
            Ok(rep) if rep.acknowledged + rep.expired > 0 => {
                for (group, first) in &rep.moved {
                    shared.fanout.truncate(group, *first);
                }
                tracing::info!(
                    acknowledged = rep.acknowledged,
                    expired = rep.expired,
                    "retention deleted entries"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention failed"),
        }
    }
}
