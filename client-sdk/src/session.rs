//! The background task of a client: connect, run one session, reconnect
//! with exponential backoff and jitter, forever (until closed).
//!
//! One session: authenticate (resuming each group after the local cursor),
//! then concurrently (a) process every frame the relay sends, in order,
//! (b) ping every heartbeat and drop the connection when nothing has arrived
//! for three heartbeats, (c) resolve commits left pending by a lost
//! connection, keep key packages stocked, and drain the outbox.

use std::sync::Arc;
use std::time::Duration;

use hush_protocol::GroupId;
use hush_protocol::frame::{ClientFrame, CloseReason, Notice, Registration, RelayFrame, Reply, Request};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::client::Inner;
use crate::error::Error;
use crate::event::{ConnectionState, Event, Member};
use crate::wire::WireClient;

/// Key packages kept at the relay.
const KEY_PACKAGES_LOW: u32 = 10;
const KEY_PACKAGES_BATCH: usize = 30;

pub(crate) async fn run(
    inner: Arc<Inner>,
    mut proposals: mpsc::UnboundedReceiver<GroupId>,
    mut replenish: mpsc::UnboundedReceiver<()>,
) {
    let mut shutdown = inner.shutdown.subscribe();
    let mut attempt: u32 = 0;
    loop {
        if *shutdown.borrow() {
            return;
        }
        attempt = attempt.saturating_add(1);
        inner.emit(Event::Connection(ConnectionState::Connecting { attempt }));
        let connect = crate::transport::connect(&inner);
        let result = tokio::select! {
            r = connect => r,
            _ = closing(&mut shutdown) => return,
        };
        let (reason, min_delay) = match result {
            Ok((wire, transport)) => {
                attempt = 0;
                session(&inner, wire, transport, &mut proposals, &mut replenish).await
            }
            Err(e) => (e.to_string(), Duration::ZERO),
        };
        let _ = inner.connected.send_replace(false);
        if *shutdown.borrow() {
            return;
        }
        let delay = backoff(&inner.timing, attempt).max(min_delay);
        inner.emit(Event::Connection(ConnectionState::Disconnected {
            reason,
            retry_in_ms: delay.as_millis() as u64,
        }));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = inner.reconnect.notified() => {}
            _ = closing(&mut shutdown) => return,
        }
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
    mut wire: WireClient,
    transport: &'static str,
    proposals: &mut mpsc::UnboundedReceiver<GroupId>,
    replenish: &mut mpsc::UnboundedReceiver<()>,
) -> (String, Duration) {
    let mut frames = wire.take_events();
    let relay_hb = Duration::from_millis(wire.challenge().heartbeat_ms.max(100) as u64);
    let ping_every = inner.timing.heartbeat.min(relay_hb);
    let ready = wire.ready().clone();
    let wire = Arc::new(wire);
    *inner.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(wire.clone());
    *inner.current_transport.lock().unwrap_or_else(|p| p.into_inner()) = Some(transport);
    // Linked devices were approved by another device: that device adds them
    // to the groups. A first device starts the private group of its user.
    let first_device = ready.registered
        && !matches!(
            *inner.registration.lock().unwrap_or_else(|p| p.into_inner()),
            Registration::Linked { .. }
        );
    let _ = inner.connected.send_replace(true);
    inner.emit(Event::Connection(ConnectionState::Connected {
        transport: transport.to_owned(),
    }));

    let worker = {
        let inner = inner.clone();
        let wire = wire.clone();
        tokio::spawn(async move {
            if let Err(e) = background(&inner, &wire, first_device).await {
                tracing::debug!(error = %e, "session worker stopped");
            }
        })
    };

    let mut shutdown = inner.shutdown.subscribe();
    let mut ticker = tokio::time::interval(ping_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_rx = Instant::now();
    let mut nonce = 0u64;
    let outcome = loop {
        tokio::select! {
            frame = frames.recv() => {
                let Some(frame) = frame else { break ("connection closed".to_owned(), Duration::ZERO) };
                last_rx = Instant::now();
                if let RelayFrame::Closing(c) = &frame {
                    let delay = Duration::from_millis(c.reconnect_after_ms as u64);
                    let delay = if c.reason == CloseReason::AuthFailed { delay.max(inner.timing.backoff_max) } else { delay };
                    break (format!("relay closed: {:?} {}", c.reason, c.message), delay);
                }
                if let Err(e) = handle(inner, &wire, frame).await {
                    tracing::warn!(error = %e, "processing a frame failed");
                    if matches!(e, Error::Connection(_)) {
                        break (e.to_string(), Duration::ZERO);
                    }
                }
            }
            _ = ticker.tick() => {
                if last_rx.elapsed() > ping_every * 3 {
                    break ("no answer to heartbeats".to_owned(), Duration::ZERO);
                }
                nonce += 1;
                let _ = wire.send(&ClientFrame::Ping { nonce }).await;
            }
            Some(group) = proposals.recv() => {
                let mut st = inner.state.lock().await;
                let r = inner.commit_change(&mut st, &wire, &group, |d| Ok(Some(d.self_update(&group)?))).await;
                if let Err(e) = r { tracing::debug!(error = %e, "committing a leave request failed"); }
            }
            Some(()) = replenish.recv() => {
                if let Err(e) = key_packages(inner, &wire).await {
                    tracing::debug!(error = %e, "key package upload failed");
                }
            }
            _ = inner.reconnect.notified() => break ("reconnect requested".to_owned(), Duration::ZERO),
            _ = closing(&mut shutdown) => break ("closed".to_owned(), Duration::ZERO),
        }
    };
    worker.abort();
    // Wait for it to end, so a closed client holds no reference to its state.
    let _ = worker.await;
    inner.settled.send_replace(false);
    *inner.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
    *inner.current_transport.lock().unwrap_or_else(|p| p.into_inner()) = None;
    let _ = inner.connected.send_replace(false);
    if let Ok(w) = Arc::try_unwrap(wire) {
        w.close().await;
    }
    outcome
}

/// Work that needs a connection but not the frame loop.
async fn background(inner: &Arc<Inner>, wire: &WireClient, first_device: bool) -> Result<(), Error> {
    {
        let mut st = inner.state.lock().await;
        inner.resolve_pending(&mut st, wire).await?;
    }
    key_packages(inner, wire).await?;
    if first_device && inner.own_devices_group_id()?.is_none() {
        let client = crate::client::Client::from_inner(inner.clone());
        client.create_own_devices_group().await?;
    }
    inner.settled.send_replace(true);
    loop {
        crate::outbox::drain(inner, wire).await?;
        inner.outbox.notified().await;
    }
}

async fn key_packages(inner: &Inner, wire: &WireClient) -> Result<(), Error> {
    let count = wire
        .request(Request::UploadKeyPackages {
            one_time: Vec::new(),
            last_resort: None,
        })
        .await?;
    let Reply::KeyPackageCount { one_time, last_resort } = count else {
        return Ok(());
    };
    if one_time >= KEY_PACKAGES_LOW && last_resort {
        return Ok(());
    }
    let mut packages = {
        let mut st = inner.state.lock().await;
        st.device
            .generate_key_packages(KEY_PACKAGES_BATCH, usize::from(!last_resort))?
    };
    let last = if last_resort { None } else { packages.pop() };
    wire.request(Request::UploadKeyPackages {
        one_time: packages.into_iter().map(Into::into).collect(),
        last_resort: last.map(Into::into),
    })
    .await?;
    Ok(())
}

async fn handle(inner: &Inner, wire: &WireClient, frame: RelayFrame) -> Result<(), Error> {
    match frame {
        RelayFrame::Deliver(entry) => {
            let mut st = inner.state.lock().await;
            inner.on_entry(&mut st, wire, entry).await?;
        }
        RelayFrame::Inbox(entry) => {
            let mut st = inner.state.lock().await;
            inner.on_inbox(&mut st, wire, entry).await?;
        }
        RelayFrame::Ephemeral { group, payload, .. } => {
            let mut st = inner.state.lock().await;
            if let Ok(hush_crypto::Processed::Application { sender, plaintext, .. }) = st.device.process(&payload)
                && let Ok(p) = hush_crypto::content::Payload::decode(&plaintext)
                && let hush_crypto::content::Content::Typing { active } = p.content
            {
                inner.emit(Event::Typing {
                    group,
                    by: Member {
                        user: sender.user,
                        device: sender.device,
                    },
                    active,
                });
            }
        }
        RelayFrame::Presence(p) => inner.emit(Event::Presence {
            member: Member {
                user: p.user,
                device: p.device,
            },
            online: p.online,
            last_seen_ms: p.last_seen_ms,
        }),
        RelayFrame::Notice(Notice::Truncated { group, first_available }) => {
            let _st = inner.state.lock().await;
            inner.truncated(&group, first_available)?;
        }
        RelayFrame::Notice(Notice::Removed { group, .. }) => {
            let mut st = inner.state.lock().await;
            let meta = inner.group_meta(&group)?;
            if meta.as_ref().is_some_and(|m| !m.left) {
                let mut batch = crate::store::Batch::default();
                inner.mark_left(&mut batch, &group)?;
                inner.local.commit(batch)?;
                if st.device.groups()?.contains(&group) {
                    st.device.forget_group(&group)?;
                }
                inner.emit(Event::Removed { group });
            }
        }
        RelayFrame::Notice(_) | RelayFrame::Pong { .. } => {}
        RelayFrame::Error(e) => tracing::warn!(error = %e, "relay error"),
        other => tracing::debug!(frame = ?other, "unexpected frame"),
    }
    Ok(())
}

/// Resolves once the client is being closed, also when that was requested
/// before the receiver subscribed (`changed` alone would miss it: a new
/// receiver has already seen the current value).
async fn closing(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}
