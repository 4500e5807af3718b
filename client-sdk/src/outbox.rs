//! The outbox: messages accepted by the SDK and not yet stored by the relay.
//!
//! An item is written (fsynced) before `send_*` returns, with a random
//! client message id. It is encrypted the first time it is about to go out,
//! and the ciphertext is saved in the item *before* it is written to the
//! socket, so every retry (after a lost answer, a reconnect or a restart)
//! sends the very same bytes with the same id: the relay's idempotency key
//! `(group, sender, client_msg_id)` turns a retry of a stored message into
//! `Sent { duplicate: true }` with the original seq. The item is deleted in
//! the same transaction that records the message in history.

use hush_crypto::content::{Content, Payload};
use hush_protocol::frame::{MessageKind, Reply, Request, Send};
use hush_protocol::{ErrorCode, GroupId};
use serde::{Deserialize, Serialize};

use crate::client::Inner;
use crate::error::Error;
use crate::event::{Event, Member};
use crate::store::{Batch, key};
use crate::wire::{ClientError, WireClient};

/// One message waiting for the relay.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct OutboxItem {
    pub group: GroupId,
    pub client_msg_id: u64,
    /// The plaintext payload (JSON, as hush-crypto encodes it).
    pub payload: Vec<u8>,
    /// Once encrypted: the epoch and the MLS message, sent on every retry.
    pub sealed: Option<(u64, Vec<u8>)>,
}

/// Adds a payload to the outbox (durably) and wakes the sender.
pub(crate) fn push(inner: &Inner, group: &GroupId, payload: Payload) -> Result<(), Error> {
    let last: Vec<(Vec<u8>, OutboxItem)> = inner.local.scan(key::OUTBOX, None, true, 1)?;
    let n = match last.first() {
        Some((k, _)) => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&k[1..9]);
            u64::from_be_bytes(b) + 1
        }
        None => 1,
    };
    let item = OutboxItem {
        group: group.clone(),
        client_msg_id: rand::random(),
        payload: payload.encode(),
        sealed: None,
    };
    inner.local.put(key::outbox(n), &item)?;
    inner.outbox.notify_one();
    Ok(())
}

/// Sends outbox items in order until it is empty. Returns on a connection
/// error (the next connection continues).
pub(crate) async fn drain(inner: &Inner, wire: &WireClient) -> Result<(), Error> {
    loop {
        let next: Vec<(Vec<u8>, OutboxItem)> = inner.local.scan(key::OUTBOX, None, false, 1)?;
        let Some((k, mut item)) = next.into_iter().next() else {
            return Ok(());
        };
        let (epoch, ciphertext) = match &item.sealed {
            Some(s) => s.clone(),
            None => {
                let mut st = inner.state.lock().await;
                let sealed = st.device.groups().map_err(Error::from).and_then(|gs| {
                    if !gs.contains(&item.group) {
                        return Err(Error::UnknownGroup(item.group.to_hex()));
                    }
                    let epoch = st.device.epoch(&item.group)?;
                    Ok((epoch, st.device.encrypt(&item.group, &item.payload)?))
                });
                match sealed {
                    Ok(s) => {
                        item.sealed = Some(s.clone());
                        inner.local.put(k.clone(), &item)?;
                        s
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "dropping an outbox item that cannot be encrypted");
                        give_up(inner, k, &item, &e.to_string())?;
                        continue;
                    }
                }
            }
        };
        redact_target(inner, wire, &item).await?;
        let send = Send {
            group: item.group.clone(),
            client_msg_id: item.client_msg_id,
            kind: MessageKind::Application,
            epoch,
            payload: ciphertext.into(),
            roster: None,
        };
        match wire.request(Request::Send(send)).await {
            Ok(Reply::Sent { seq, .. }) => {
                let _st = inner.state.lock().await;
                let mut batch = Batch::default();
                batch.delete(k);
                let mut events = Vec::new();
                if let Ok(payload) = Payload::decode(&item.payload) {
                    let id = hex::encode(payload.id.0);
                    let me = Member {
                        user: inner.user.clone(),
                        device: inner.device_id,
                    };
                    inner.apply_content(
                        &mut batch,
                        &mut events,
                        &item.group,
                        seq,
                        crate::engine::now_ms(),
                        me,
                        payload,
                    )?;
                    events.insert(
                        0,
                        Event::Sent {
                            group: item.group.clone(),
                            id,
                            seq,
                        },
                    );
                }
                inner.local.commit(batch)?;
                for e in events {
                    inner.emit(e);
                }
            }
            Ok(other) => return Err(Error::Connection(format!("unexpected reply {other:?}"))),
            Err(ClientError::Relay(e)) => match e.code {
                ErrorCode::RateLimited | ErrorCode::Internal | ErrorCode::Unavailable => {
                    let wait = match e.detail {
                        hush_protocol::ErrorDetail::RetryAfterMs(ms) => ms as u64,
                        _ => 500,
                    };
                    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                }
                _ => {
                    tracing::warn!(error = %e, "relay refused an outbox item");
                    give_up(inner, k, &item, &e.to_string())?;
                }
            },
            Err(e) => return Err(e.into()),
        }
    }
}

/// For a delete of this user's message: asks the relay to drop the stored
/// ciphertext of the deleted entry, before the delete itself is sent. Done
/// again on every retry (the relay answers `Done` for an entry already
/// dropped); a refusal (the entry is gone, or not this user's) is logged and
/// the delete still goes out.
async fn redact_target(inner: &Inner, wire: &WireClient, item: &OutboxItem) -> Result<(), Error> {
    let Ok(Payload {
        content: Content::Delete { target },
        ..
    }) = Payload::decode(&item.payload)
    else {
        return Ok(());
    };
    let Some((group, seq)): Option<(GroupId, u64)> = inner.local.get(&key::message_id(&target.0))? else {
        return Ok(());
    };
    if group != item.group {
        return Ok(());
    }
    match wire.request(Request::Redact { group, seq }).await {
        Ok(_) => Ok(()),
        Err(ClientError::Relay(e)) => {
            tracing::debug!(error = %e, seq, "relay did not redact a deleted message");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn give_up(inner: &Inner, k: Vec<u8>, item: &OutboxItem, reason: &str) -> Result<(), Error> {
    let mut batch = Batch::default();
    batch.delete(k);
    inner.local.commit(batch)?;
    let id = Payload::decode(&item.payload)
        .map(|p| hex::encode(p.id.0))
        .unwrap_or_default();
    inner.emit(Event::SendFailed {
        group: item.group.clone(),
        id,
        reason: reason.to_owned(),
    });
    Ok(())
}
