//! The one task of a client: it owns the [`Engine`] and pumps it. Connect,
//! run one session, reconnect with exponential backoff and jitter, forever
//! (until closed); app calls arrive as [`Command`]s, also while offline.
//!
//! One turn of the loop: wait for the next input (a frame, a command, the
//! engine's timer), feed it and every other input already waiting (up to
//! [`MAX_BATCH`]) to the engine, flush the engine (one transaction for all
//! of them), then hand its frames to the connection and its events to the
//! app. No lock is held anywhere: the engine belongs to this task alone.

use std::sync::Arc;
use std::time::Duration;

use hush_protocol::ErrorCode;
use hush_protocol::frame::{CloseReason, Registration, RelayFrame};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::client::Inner;
use crate::engine::{Command, Engine};
use crate::error::Error;
use crate::event::{ConnectionState, Event};
use crate::wire::WireClient;

/// Inputs fed to the engine before one flush: a burst of deliveries (a
/// catch-up) becomes batches of up to this many entries, each one
/// transaction.
const MAX_BATCH: usize = 512;

pub(crate) async fn run(inner: Arc<Inner>, mut engine: Engine, mut commands: mpsc::Receiver<Command>) {
    let mut shutdown = inner.shutdown.subscribe();
    let mut attempt: u32 = 0;
    loop {
        if *shutdown.borrow() {
            return;
        }
        attempt = attempt.saturating_add(1);
        inner.emit(Event::Connection(ConnectionState::Connecting { attempt }));
        let connect = crate::transport::connect(&inner);
        tokio::pin!(connect);
        let result = loop {
            tokio::select! {
                r = &mut connect => break r,
                Some(c) = commands.recv() => offline(&inner, &mut engine, c),
                _ = closing(&mut shutdown) => return,
            }
        };
        let (reason, min_delay) = match result {
            Ok((wire, transport)) => {
                attempt = 0;
                session(&inner, &mut engine, &mut commands, wire, transport).await
            }
            Err(Error::Relay(e)) if e.code == ErrorCode::Revoked => {
                // For good: no more attempts; the app's calls are answered
                // offline, sends refused.
                tracing::warn!("the relay refuses this device: it was revoked");
                engine.handle_revoked();
                release(&inner, &mut engine);
                inner.revoked.send_replace(true);
                inner.emit(Event::Connection(ConnectionState::Revoked));
                loop {
                    tokio::select! {
                        Some(c) = commands.recv() => offline(&inner, &mut engine, c),
                        _ = closing(&mut shutdown) => return,
                    }
                }
            }
            Err(e) => (e.to_string(), Duration::ZERO),
        };
        engine.handle_disconnected();
        release(&inner, &mut engine);
        let _ = inner.connected.send_replace(false);
        if *shutdown.borrow() {
            return;
        }
        let delay = backoff(&inner.timing, attempt).max(min_delay);
        inner.emit(Event::Connection(ConnectionState::Disconnected {
            reason,
            retry_in_ms: delay.as_millis() as u64,
        }));
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                _ = inner.reconnect.notified() => break,
                Some(c) = commands.recv() => offline(&inner, &mut engine, c),
                _ = closing(&mut shutdown) => return,
            }
        }
    }
}

/// A command while there is no connection (reads, the outbox).
fn offline(inner: &Inner, engine: &mut Engine, command: Command) {
    engine.handle_command(Instant::now().into_std(), command);
    release(inner, engine);
}

/// Flushes the engine and emits its events; frames are dropped (there is no
/// connection to carry them; the engine sends what matters again).
fn release(inner: &Inner, engine: &mut Engine) {
    engine.flush();
    while engine.poll_transmit().is_some() {}
    while let Some(e) = engine.poll_event() {
        inner.emit(e);
    }
}

/// Full jitter between half and all of `base · 2^attempt`, capped.
fn backoff(t: &crate::client::Timing, attempt: u32) -> Duration {
    let exp = t.backoff_base.saturating_mul(1u32 << attempt.min(16));
    let cap = exp.min(t.backoff_max);
    let half = cap / 2;
    half + half.mul_f64(rand::random::<f64>())
}

async fn session(
    inner: &Arc<Inner>,
    engine: &mut Engine,
    commands: &mut mpsc::Receiver<Command>,
    mut wire: WireClient,
    transport: &'static str,
) -> (String, Duration) {
    let mut frames = wire.take_events();
    let relay_hb = Duration::from_millis(wire.challenge().heartbeat_ms.max(100) as u64);
    let ready = wire.ready().clone();
    *inner.current_transport.lock().unwrap_or_else(|p| p.into_inner()) = Some(transport);
    // Linked devices were approved by another device: that device adds them
    // to the groups. A first device starts the private group of its user.
    let first_device = ready.registered
        && !matches!(
            *inner.registration.lock().unwrap_or_else(|p| p.into_inner()),
            Registration::Linked { .. } | Registration::LinkedUntil { .. }
        );
    engine.handle_connected(Instant::now().into_std(), relay_hb);
    let _ = inner.connected.send_replace(true);
    inner.emit(Event::Connection(ConnectionState::Connected {
        transport: transport.to_owned(),
    }));

    let mut shutdown = inner.shutdown.subscribe();
    // Work that is a sequence of app calls (it talks to this loop through
    // commands, so it runs beside it).
    let mut helper: Option<tokio::task::JoinHandle<()>> = None;
    let outcome = 'session: loop {
        engine.flush();
        while let Some(e) = engine.poll_event() {
            inner.emit(e);
        }
        while let Some(f) = engine.poll_transmit() {
            if let Err(e) = wire.send(&f).await {
                break 'session (e.to_string(), Duration::ZERO);
            }
        }
        if let Some(reason) = engine.poll_close() {
            break (reason, Duration::ZERO);
        }
        if engine.poll_settled() {
            helper = Some(settle(inner.clone(), first_device));
        }
        let deadline = engine
            .poll_timeout()
            .map(Instant::from_std)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            frame = frames.recv() => {
                let Some(frame) = frame else { break ("connection closed".to_owned(), Duration::ZERO) };
                if let Some(closed) = relay_closing(inner, &frame) {
                    break closed;
                }
                let now = Instant::now().into_std();
                engine.handle_frame(now, frame);
                let mut n = 1;
                while n < MAX_BATCH {
                    let Ok(frame) = frames.try_recv() else { break };
                    if let Some(closed) = relay_closing(inner, &frame) {
                        engine.flush();
                        break 'session closed;
                    }
                    engine.handle_frame(now, frame);
                    n += 1;
                }
                while n < MAX_BATCH {
                    let Ok(c) = commands.try_recv() else { break };
                    engine.handle_command(now, c);
                    n += 1;
                }
            }
            Some(c) = commands.recv() => {
                let now = Instant::now().into_std();
                engine.handle_command(now, c);
                let mut n = 1;
                while n < MAX_BATCH {
                    let Ok(c) = commands.try_recv() else { break };
                    engine.handle_command(now, c);
                    n += 1;
                }
            }
            _ = tokio::time::sleep_until(deadline) => engine.handle_timeout(Instant::now().into_std()),
            _ = inner.reconnect.notified() => break ("reconnect requested".to_owned(), Duration::ZERO),
            _ = closing(&mut shutdown) => break ("closed".to_owned(), Duration::ZERO),
        }
    };
    if let Some(h) = helper {
        h.abort();
        // Wait for it to end, so a closed client holds no reference to its state.
        let _ = h.await;
    }
    inner.settled.send_replace(false);
    *inner.current_transport.lock().unwrap_or_else(|p| p.into_inner()) = None;
    let _ = inner.connected.send_replace(false);
    wire.close().await;
    outcome
}

/// Why the relay closes and when to come back, if the frame is its `Closing`.
fn relay_closing(inner: &Inner, frame: &RelayFrame) -> Option<(String, Duration)> {
    let RelayFrame::Closing(c) = frame else { return None };
    let delay = Duration::from_millis(c.reconnect_after_ms as u64);
    let delay = if c.reason == CloseReason::AuthFailed {
        delay.max(inner.timing.backoff_max)
    } else {
        delay
    };
    Some((format!("relay closed: {:?} {}", c.reason, c.message), delay))
}

/// Once pending commits are resolved and key packages stocked: a first
/// device creates the private group of its user's devices, then the client
/// counts as settled.
fn settle(inner: Arc<Inner>, first_device: bool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if first_device && matches!(inner.own_devices_group_id(), Ok(None)) {
            let client = crate::client::Client::from_inner(inner.clone());
            if let Err(e) = client.create_own_devices_group().await {
                tracing::debug!(error = %e, "creating the own-devices group failed");
                return;
            }
        }
        inner.settled.send_replace(true);
    })
}

/// Resolves once the client is being closed, also when that was requested
/// before the receiver subscribed (`changed` alone would miss it: a new
/// receiver has already seen the current value).
async fn closing(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}
