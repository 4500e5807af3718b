//! `hush-sdk`: the hush client SDK: end-to-end-encrypted group chat over a
//! hush relay, for apps. The `hush` terminal client is built on it.
//!
//! ```text
//!  app ──calls──▶ Client ──────────────┐            relay
//!   ▲             │ outbox (redb)      │ wire  ┌──────────────┐
//!   └──events──── │ history, cursors   ├──────▶│ ordered logs │
//!                 │ MLS (hush-crypto)  │◀──────│ inboxes      │
//!                 └────────────────────┘       └──────────────┘
//! ```
//!
//! # Quick start
//!
//! ```no_run
//! # async fn demo() -> Result<(), hush_sdk::Error> {
//! use hush_sdk::{Client, Event, Trust};
//! let alice = Client::builder()
//!     .relay("wss://127.0.0.1:7443/ws")
//!     .trust(Trust::CertSha256([0; 32])) // the relay's published certificate hash
//!     .data_dir("alice-data")
//!     .user("alice")
//!     .open()
//!     .await?;
//! let mut events = alice.events();
//! alice.sync(std::time::Duration::from_secs(10)).await?;
//! let chat = alice.direct("bob").await?;         // MLS group with all of bob's devices
//! alice.send_text(&chat, "hello").await?;        // durable in the outbox when this returns
//! while let Some(event) = events.next().await {
//!     if let Event::Message(m) = event {
//!         println!("{}: {}", m.sender.user, m.text);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Local state
//!
//! The data directory holds one redb database, `device.redb`, with two
//! tables: hush-crypto's MLS state (the device key, key packages, groups) and
//! the SDK's records (the device identity record, outbox, per-group cursors,
//! decrypted history, group labels, read state, settings). Processing a
//! message changes both tables in the same transaction, and a burst of
//! delivered messages (a catch-up, a busy group) is processed as a batch:
//! one fsynced transaction for the whole run of entries, after which their
//! events are emitted and one acknowledgement goes to the relay. A client
//! reopened on the same directory continues where it stopped. (Directories of earlier versions, with `mls.redb` and
//! `sdk.redb`, are moved into `device.redb` when opened.)
//!
//! # The event model
//!
//! [`Client::events`] gives a stream of [`Event`]s, in the order they
//! happened on this device. Group events of one group come in the group's
//! log order. `Message`, `Edited`, `Deleted`, `Reaction` and `Receipt` are
//! also recorded in history ([`Client::history`]) *before* the event is
//! emitted, so an app can always rebuild its view from history; a subscriber
//! that falls more than 4,096 events behind gets [`Event::Lagged`] instead of
//! the events it missed. `Typing` and `Presence` are live only. `Connection`
//! reports the connection state; `Truncated` says the relay no longer had
//! messages this device never received (retention), which are lost.
//!
//! # Inside
//!
//! One task per client owns all of its state: a sans-IO engine (frames,
//! replies, app calls and timer ticks in; frames, events and one
//! transaction per batch out; see `engine/mod.rs`), pumped by a thin loop
//! over the connection. App calls are messages to that task with an answer
//! channel; no lock is held across a round trip. Every request to the relay
//! has a deadline ([`Timing::request_timeout`]): a call whose request is not
//! answered in time fails with [`Error::Timeout`] and the connection is
//! replaced. Up to 32 outbox items are in flight at once, in order.
//!
//! # Delivery guarantees
//!
//! * **Sending.** `send_text`, `edit`, `delete`, `react` and `mark_read`
//!   return once the message is durably in the outbox, connected or not.
//!   From then on it is stored by the relay **exactly once**: the outbox
//!   sends in order with a client message id chosen at enqueue time; the
//!   ciphertext is saved before it is first written to the network, and every
//!   retry (lost answer, reconnect, process restart) sends the same bytes
//!   with the same id, which the relay deduplicates by
//!   `(group, sender device, client message id)`. The item leaves the outbox
//!   in the same transaction that records it in history ([`Event::Sent`]).
//!   A message the relay refuses for good (the device was removed from the
//!   group) is dropped with [`Event::SendFailed`].
//! * **Receiving.** For each group, entries are processed in seq order, each
//!   once: the local cursor (highest seq processed) is written in the same
//!   transaction as the history it produced, passed to the relay as the
//!   resume point on every connection, and anything at or below it is
//!   ignored; a gap is filled from the relay's history before later entries
//!   are processed. Only then is the entry acknowledged to the relay.
//!   The MLS state change of an entry (its message key used up, or the new
//!   epoch of a commit), the history it produced and the cursor past it are
//!   written in one transaction, so a crash at any point leaves all or none
//!   of them, and an entry not recorded is delivered and decrypted again.
//!   Joining a group from a Welcome is recorded the same way.
//! * **Group changes** (create, add, remove, leave) need a connection and
//!   return once the relay accepted the commit. A commit refused as stale
//!   (another member changed the group first) is discarded, the missed
//!   commits are fetched and processed, and the change is made again on the
//!   new epoch: the caller never sees the race. A commit whose answer was
//!   lost is resolved on the next connection (merged if the relay's log has
//!   it, discarded otherwise).
//! * **Rate limits.** The relay budgets directory lookups per device
//!   (`ListDevices` and `ClaimKeyPackages` of other users, PROTOCOL.md
//!   11.1). A call the app made that the relay refuses for it
//!   (`create_group`, `direct`, `add_user`, `devices`) fails with
//!   [`Error::RateLimited`] and the relay's `retry_after`, and leaves
//!   nothing behind: the key packages are claimed before the group is
//!   created or the commit made, so no group, roster change or pending
//!   commit remains; calling again after the wait is safe. `add_user` of a
//!   user none of whose devices is in the group is one claim, so its hint
//!   covers the whole call; a call that looks up several users makes one
//!   request per user and can be refused again with a new hint. Work the
//!   SDK does on its own (checking a new member's devices before taking in
//!   a group's entries, history pages, the key package count) is asked
//!   again after each hint, on the same connection: the group waits,
//!   the other groups and the outbox go on. Sends over the request rate
//!   wait in the outbox for the hint.
//! * **Connection.** The client reconnects by itself with exponential backoff
//!   (from [`Timing::backoff_base`] doubling to [`Timing::backoff_max`]) and
//!   jitter (a random delay between half and all of it), honouring the
//!   relay's `reconnect_after_ms`. It pings every [`Timing::heartbeat`] (or
//!   the relay's interval, if shorter) and treats a connection that brought
//!   nothing for three intervals as dead.
//!
//! # Multi-device
//!
//! Every device is its own MLS member. Groups a device creates include the
//! user's other registered devices; adding a user adds all of their devices.
//! The first device of a user creates a private group of the user's devices,
//! through which read state ([`Client::mark_read`]) and settings
//! ([`Client::set_setting`]) are synced.
//!
//! A new device is linked by an existing one: [`Client::link_device`] shows a
//! short code (`4821-K7Q2-9XMF`), and [`ClientBuilder::open_linked`] on the
//! new device takes it. The two meet at the relay, agree on a key from the
//! code (SPAKE2: the relay cannot test guesses offline), and the existing
//! device approves the new device's key, adds it to every group and sends it
//! the decrypted history of each, end-to-end encrypted in the private group
//! ([`Event::HistoryImported`]). [`Client::remove_device`] takes a device out
//! of every group.
//!
//! Deleting a message ([`Client::delete`]) also asks the relay to drop the
//! deleted entry's stored ciphertext (PROTOCOL.md, `Redact`).
//!
//! # Group names and admins
//!
//! A group's name is shared with its members as an encrypted `group_name`
//! message ([`Client::rename`], [`Event::GroupRenamed`]); the newest in log
//! order wins, so every member shows the same one. A group's creator is its
//! admin: only admins add and remove others ([`Client::set_policy`] says
//! otherwise); any member may leave and add or remove its own devices. A
//! commit every member rejects is voided by the admin's client, so it
//! cannot stop the group from changing.
//!
//! # Safety numbers
//!
//! Before a group's entries are processed, every member's claimed user is
//! checked against the relay's device list for that user; a leaf the list
//! does not hold is reported ([`Event::IdentityRejected`]) and the group is
//! not named after that user, not taken as this user's own devices, and
//! cannot sync anything ([`GroupSummary::unverified_members`]).
//!
//! [`Client::safety_number`] gives the number both partners compare: both
//! users' checked devices over every group this device is in. Once compared,
//! [`Client::mark_verified`] records it, and the partner's conversations are
//! [`GroupSummary::verified`] until their devices change. Every change to a
//! partner's devices, including the keys first seen, is an
//! [`Event::DevicesChanged`] with the new number.
//!
//! [`wire`] is the low-level protocol client underneath.
#![forbid(unsafe_code)]

mod client;
mod engine;
mod error;
mod event;
mod link;
#[doc(hidden)]
pub use link::fuzzing as link_fuzzing;
mod outbox;
mod session;
mod store;
mod transport;
pub mod wire;

pub use client::{
    Client, ClientBuilder, DeviceRemoval, EventStream, GroupSummary, SendOutcome, Timing, canonical_direct,
};
pub use error::Error;
pub use event::{ConnectionState, Event, Member, Message};
pub use hush_protocol::frame::{Policy, Posters};
pub use hush_protocol::{DeviceId, GroupId, UserId};
pub use link::PendingLink;
pub use transport::TransportConfig;
pub use wire::Trust;
