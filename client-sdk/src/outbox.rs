//! The outbox: messages accepted by the SDK and not yet stored by the relay.
//!
//! An item is durable before `send_*` returns, with a random client message
//! id. It is encrypted when it is about to go out (at once when the client
//! is connected and nothing earlier waits: then the enqueue and the sealed
//! ciphertext are one transaction), and the ciphertext is saved in the item
//! *before* it is written to the socket, so every retry (after a lost answer,
//! a reconnect or a restart) sends the very same bytes with the same id: the
//! relay's idempotency key `(group, sender, client_msg_id)` turns a retry of
//! a stored message into `Sent { duplicate: true }` with the original seq.
//! The item is deleted in the same transaction that records the message in
//! history. The engine ([`crate::engine`]) keeps a window of items in flight.

use hush_protocol::GroupId;
use serde::{Deserialize, Serialize};

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
