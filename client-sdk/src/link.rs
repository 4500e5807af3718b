//! Device linking: an existing device shows a short code, the new device is
//! given it, and the two meet at the relay.
//!
//! ```text
//!  existing device                      relay                     new device
//!  link_device(): code 4821-K7Q2-9XMF    |                         open_linked(code)
//!  Rendezvous(slot, SPAKE2 msg) ───────▶ pairs the two ◀──────── Rendezvous(slot, SPAKE2 msg)
//!        ◀──────────────── each side's SPAKE2 message ────────────────▶
//!        ◀──────────── sealed {key: new device's public key} ──────────
//!        ──── sealed {user, by, expiry, signature over the link transcript} ──▶
//!                                        │ ◀── connects: Registration::LinkedUntil, uploads key packages
//!        ◀──────────────────────── sealed {ready} ─────────────────────
//!  adds the device to every group (own-devices group first),
//!  posts the history of each group in the own-devices group (MLS)
//!        ──────────────────────── sealed {done} ──────────────────────▶
//! ```
//!
//! The code is `NNNN-XXXX-XXXX`: the four digits (the *nameplate*) pick the
//! relay slot, and the whole code is the SPAKE2 password, so the relay (which
//! sees the nameplate and the messages) gets one guess at the rest per link
//! attempt and cannot test guesses offline. A wrong code fails the first
//! sealed message and ends the attempt. Everything after the SPAKE2 exchange
//! is sealed with ChaCha20-Poly1305 under keys derived from its result.
//! History travels as MLS application messages of the user's own-devices
//! group, so the relay only ever stores ciphertext.

use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use futures_util::{SinkExt, StreamExt};
use hkdf::Hkdf;
use hush_crypto::content::Content;
use hush_protocol::frame::{ClientFrame, Hello, Registration, RelayFrame, Signature};
use hush_protocol::{DeviceId, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, codec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spake2::{Ed25519Group, Identity, Password, Spake2};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::client::{Client, ClientBuilder, EventStream};
use crate::error::Error;
use crate::event::{Event, Message};
use crate::store::key;
use crate::wire::{self, Trust};

/// The characters of the secret part of a code (no I, L, O, U: nothing to
/// confuse when typing it).
const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const SPAKE_ID: &[u8] = b"hush-link-v1";
/// History records per `sync_history` message: keeps each well under the
/// relay's payload limit.
const HISTORY_CHUNK_BYTES: usize = 128 * 1024;

fn link_err(msg: impl Into<String>) -> Error {
    Error::Link(msg.into())
}

/// A link code, normalised (`NNNN-XXXX-XXXX`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Code(String);

impl Code {
    fn generate() -> Self {
        let nameplate = rand::random::<u16>() % 10_000;
        let secret: String = (0..8)
            .map(|_| ALPHABET[rand::random::<u8>() as usize % ALPHABET.len()] as char)
            .collect();
        Code(format!("{nameplate:04}-{}-{}", &secret[..4], &secret[4..]))
    }

    /// Accepts what a person types: any case, spaces, `O` for zero, `I`/`L`
    /// for one.
    fn parse(typed: &str) -> Result<Self, Error> {
        let mut chars = Vec::new();
        for c in typed.chars() {
            match c.to_ascii_uppercase() {
                ' ' | '-' | '_' => {}
                'O' => chars.push('0'),
                'I' | 'L' => chars.push('1'),
                c if ALPHABET.contains(&(c as u8)) && c.is_ascii() => chars.push(c),
                _ => return Err(link_err(format!("{c:?} cannot be in a link code"))),
            }
        }
        if chars.len() != 12 || !chars[..4].iter().all(char::is_ascii_digit) {
            return Err(link_err(
                "a link code is four digits and eight characters, like 4821-K7Q2-9XMF",
            ));
        }
        let s: String = chars.into_iter().collect();
        Ok(Code(format!("{}-{}-{}", &s[..4], &s[4..8], &s[8..])))
    }

    /// The relay slot: a hash of the nameplate only.
    fn slot(&self) -> [u8; 16] {
        let mut h = Sha256::new();
        h.update(b"hush-link-slot-v1\0");
        h.update(&self.0.as_bytes()[..4]);
        let d = h.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&d[..16]);
        out
    }

    fn spake(&self) -> (Spake2<Ed25519Group>, Vec<u8>) {
        Spake2::<Ed25519Group>::start_symmetric(&Password::new(self.0.as_bytes()), &Identity::new(SPAKE_ID))
    }
}

/// What the two devices say to each other after SPAKE2, sealed.
#[derive(Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum LinkMsg {
    /// New → existing: the new device's Ed25519 public key (hex).
    Key { key: String },
    /// Existing → new: the user, the approving device and its signature
    /// over the link transcript (hex) and its expiry, for `Registration::LinkedUntil`.
    Approve {
        user: String,
        by: String,
        expires_ms: u64,
        signature: String,
    },
    /// New → existing: registered, key packages uploaded.
    Ready,
    /// Existing → new: added to this many groups, history posted.
    Done { groups: usize },
}

impl LinkMsg {
    /// The new device's key, from its first sealed message.
    fn into_key(self) -> Result<[u8; 32], Error> {
        let LinkMsg::Key { key } = self else {
            return Err(link_err("expected the new device's key"));
        };
        parse_hex(&key, "device key")
    }

    /// The approval: user, approving device, expiry and signature, as the
    /// new device registers with them.
    fn into_approval(self) -> Result<(String, Registration), Error> {
        let LinkMsg::Approve {
            user,
            by,
            expires_ms,
            signature,
        } = self
        else {
            return Err(link_err("expected the approval"));
        };
        let by = DeviceId(parse_hex(&by, "approving device")?);
        let signature = Signature(parse_hex(&signature, "approval signature")?);
        Ok((
            user,
            Registration::LinkedUntil {
                by,
                expires_ms,
                signature,
            },
        ))
    }
}

/// ChaCha20-Poly1305 in each direction, keys from the SPAKE2 result, nonces
/// counting messages.
struct Sealer {
    send: ChaCha20Poly1305,
    recv: ChaCha20Poly1305,
    sent: u64,
    received: u64,
}

impl Sealer {
    fn new(shared: &[u8], existing: bool) -> Result<Self, Error> {
        let hk = Hkdf::<Sha256>::new(None, shared);
        let mut to_new = [0u8; 32];
        let mut to_existing = [0u8; 32];
        hk.expand(b"hush-link-v1 existing to new", &mut to_new)
            .and_then(|()| hk.expand(b"hush-link-v1 new to existing", &mut to_existing))
            .map_err(|_| link_err("key derivation failed"))?;
        let (send, recv) = if existing {
            (to_new, to_existing)
        } else {
            (to_existing, to_new)
        };
        Ok(Sealer {
            send: ChaCha20Poly1305::new(Key::from_slice(&send)),
            recv: ChaCha20Poly1305::new(Key::from_slice(&recv)),
            sent: 0,
            received: 0,
        })
    }

    fn nonce(n: u64) -> Nonce {
        let mut b = [0u8; 12];
        b[4..].copy_from_slice(&n.to_be_bytes());
        *Nonce::from_slice(&b)
    }

    fn seal(&mut self, msg: &LinkMsg) -> Result<Vec<u8>, Error> {
        let plain = serde_json::to_vec(msg).map_err(|e| link_err(e.to_string()))?;
        let out = self
            .send
            .encrypt(&Self::nonce(self.sent), plain.as_slice())
            .map_err(|_| link_err("sealing failed"))?;
        self.sent += 1;
        Ok(out)
    }

    fn open(&mut self, sealed: &[u8]) -> Result<LinkMsg, Error> {
        let plain = self
            .recv
            .decrypt(&Self::nonce(self.received), sealed)
            .map_err(|_| link_err("the link code does not match (typed wrong, or another link attempt)"))?;
        self.received += 1;
        serde_json::from_slice(&plain).map_err(|e| link_err(format!("unexpected link message: {e}")))
    }
}

/// An unauthenticated rendezvous connection to the relay (over WebSocket).
struct Pipe {
    ws: wire::Ws,
    slot: [u8; 16],
}

impl Pipe {
    async fn open(relay: &str, trust: &Trust, slot: [u8; 16], first: Vec<u8>) -> Result<Self, Error> {
        let ws = wire::open_websocket(relay, trust).await?;
        let hello = ClientFrame::Hello(Hello {
            min_version: MIN_PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            client: concat!("hush-sdk/", env!("CARGO_PKG_VERSION"), " link").into(),
        });
        let mut pipe = Pipe { ws, slot };
        pipe.send_frame(&hello).await?;
        match pipe.recv_frame().await? {
            RelayFrame::Challenge(_) => {}
            other => return Err(link_err(format!("expected Challenge, got {other:?}"))),
        }
        pipe.send(first).await?;
        Ok(pipe)
    }

    async fn send_frame(&mut self, frame: &ClientFrame) -> Result<(), Error> {
        let bytes = codec::encode(frame).map_err(|e| link_err(e.to_string()))?;
        self.ws
            .send(WsMessage::Binary(bytes.into()))
            .await
            .map_err(|e| Error::Connection(e.to_string()))
    }

    async fn send(&mut self, payload: Vec<u8>) -> Result<(), Error> {
        let frame = ClientFrame::Rendezvous {
            slot: self.slot,
            payload: payload.into(),
        };
        self.send_frame(&frame).await
    }

    async fn recv_frame(&mut self) -> Result<RelayFrame, Error> {
        loop {
            match self.ws.next().await {
                Some(Ok(WsMessage::Binary(b))) => {
                    return codec::decode(&b).map_err(|e| Error::Connection(e.to_string()));
                }
                Some(Ok(WsMessage::Close(_))) | None => {
                    return Err(link_err("the relay closed the link connection"));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(Error::Connection(e.to_string())),
            }
        }
    }

    /// The peer's next payload.
    async fn recv(&mut self) -> Result<Vec<u8>, Error> {
        loop {
            match self.recv_frame().await? {
                RelayFrame::Rendezvous { payload } => return Ok(payload.to_vec()),
                RelayFrame::Error(e) => return Err(link_err(format!("relay: {e}"))),
                RelayFrame::Closing(c) => {
                    return Err(link_err(format!(
                        "the link ended: {} (the other device stopped or refused the code)",
                        c.message
                    )));
                }
                _ => {}
            }
        }
    }

    async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// Runs `work`, pinging the relay meanwhile: a rendezvous in which
    /// neither side sends anything for a while is closed (PROTOCOL.md 6.6).
    async fn keep_alive<T>(&mut self, work: impl std::future::Future<Output = T>) -> T {
        let mut work = std::pin::pin!(work);
        let mut tick = tokio::time::interval(Duration::from_secs(20));
        tick.tick().await;
        let mut nonce = 0u64;
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = tick.tick() => {
                    nonce += 1;
                    let _ = self.send_frame(&ClientFrame::Ping { nonce }).await;
                }
            }
        }
    }
}

/// What a device does with link input from outside (a typed code, the
/// peer's SPAKE2 message, sealed messages and their plaintext), for the fuzz
/// target `link` in `client-sdk/fuzz`. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Feeds `data` to the decoder its first byte picks; panics only if a
    /// decoder breaks an invariant.
    pub fn link_input(data: &[u8]) {
        let Some((&which, rest)) = data.split_first() else {
            return;
        };
        match which % 4 {
            0 => {
                let typed = String::from_utf8_lossy(rest);
                if let Ok(code) = Code::parse(&typed) {
                    let again = Code::parse(&code.0).expect("a normalised code parses");
                    assert_eq!(again, code);
                    let _ = code.slot();
                }
            }
            1 => {
                let (spake, _) = Code("0000-AAAA-AAAA".into()).spake();
                let _ = spake.finish(rest);
            }
            2 => {
                let mut existing = Sealer::new(&[7; 32], true).expect("keys derive");
                let _ = existing.open(rest);
            }
            _ => {
                let Ok(msg) = serde_json::from_slice::<LinkMsg>(rest) else {
                    return;
                };
                // A message that decodes goes through a seal and an open unchanged.
                let mut new = Sealer::new(&[7; 32], false).expect("keys derive");
                let mut existing = Sealer::new(&[7; 32], true).expect("keys derive");
                let sealed = new.seal(&msg).expect("a decoded message seals");
                let opened = existing.open(&sealed).expect("a sealed message opens");
                assert_eq!(serde_json::to_value(&opened).ok(), serde_json::to_value(&msg).ok());
                let _ = opened.into_key();
                let _ = msg.into_approval();
            }
        }
    }
}

fn parse_hex<const N: usize>(s: &str, what: &str) -> Result<[u8; N], Error> {
    hex::decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| link_err(format!("bad {what}")))
}

/// A link started on an existing device: show [`PendingLink::code`] to the
/// user, then call [`PendingLink::complete`] while they give the code to the
/// new device ([`ClientBuilder::open_linked`]).
pub struct PendingLink {
    client: Client,
    code: Code,
    spake: Spake2<Ed25519Group>,
    pipe: Pipe,
}

impl std::fmt::Debug for PendingLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLink").field("code", &self.code.0).finish()
    }
}

impl PendingLink {
    /// The code to show, `NNNN-XXXX-XXXX`. It works once, for this link only.
    pub fn code(&self) -> &str {
        &self.code.0
    }

    /// Waits for the new device (at most `timeout`), approves its key, adds
    /// it to every group of this device (the private group of the user's
    /// devices first) and sends it the history of each group, end-to-end
    /// encrypted. Returns the new device's id; [`Event::DeviceLinked`] is
    /// emitted too. A wrong code ends the link with [`Error::Link`].
    pub async fn complete(self, timeout: Duration) -> Result<DeviceId, Error> {
        tokio::time::timeout(timeout, self.run())
            .await
            .map_err(|_| link_err("the new device did not finish linking in time"))?
    }

    async fn run(self) -> Result<DeviceId, Error> {
        let PendingLink {
            client,
            code: _,
            spake,
            mut pipe,
        } = self;
        let theirs = pipe.recv().await?;
        let shared = spake
            .finish(&theirs)
            .map_err(|e| link_err(format!("key exchange failed: {e:?}")))?;
        let mut sealer = Sealer::new(&shared, true)?;
        let key = sealer.open(&pipe.recv().await?)?.into_key()?;
        let Registration::LinkedUntil {
            by,
            expires_ms,
            signature,
        } = client.inner.identity.approve_link(&key)
        else {
            return Err(link_err("approval failed"));
        };
        let approve = LinkMsg::Approve {
            user: client.inner.user.0.clone(),
            by: by.to_string(),
            expires_ms,
            signature: hex::encode(signature.0),
        };
        pipe.send(sealer.seal(&approve)?).await?;
        let LinkMsg::Ready = sealer.open(&pipe.recv().await?)? else {
            return Err(link_err("expected the new device to be ready"));
        };
        let device = DeviceId::from_public_key(&key);
        let groups = pipe
            .keep_alive(async {
                let groups = client.add_own_device(device).await?;
                client.send_history().await?;
                // Posted before the new device is told it is done, so its
                // next sync brings the whole history in.
                client.flush(Duration::from_secs(60)).await?;
                Ok::<_, Error>(groups)
            })
            .await?;
        pipe.send(sealer.seal(&LinkMsg::Done { groups })?).await?;
        pipe.close().await;
        client.inner.emit(Event::DeviceLinked { device });
        Ok(device)
    }
}

impl Client {
    /// Starts linking a new device to this user: reserves a rendezvous at the
    /// relay and returns the code to show. Needs the relay to be reachable.
    pub async fn link_device(&self) -> Result<PendingLink, Error> {
        let code = Code::generate();
        let (spake, first) = code.spake();
        let pipe = Pipe::open(&self.inner.relay, &self.inner.trust, code.slot(), first).await?;
        Ok(PendingLink {
            client: self.clone(),
            code,
            spake,
            pipe,
        })
    }

    /// Adds `device` (a new device of this user) to every group of this
    /// device, the own-devices group first. Returns how many groups it was
    /// added to.
    pub(crate) async fn add_own_device(&self, device: DeviceId) -> Result<usize, Error> {
        if self.own_devices_group().await?.is_none() {
            // Created with every registered device of the user, the new one too.
            self.create_own_devices_group().await?;
        }
        let mut groups = self.groups().await?;
        groups.sort_by_key(|g| !g.own_devices);
        let mut added = 0;
        for g in groups {
            if g.members.iter().any(|m| m.device == device) {
                continue;
            }
            let packages = crate::client::claim(self, &self.inner.user.0, Some(device)).await?;
            let seq = self
                .call(|answer| crate::engine::Command::Change {
                    group: g.group.clone(),
                    change: crate::engine::Change::Add {
                        packages,
                        unless_member: Some(device),
                    },
                    answer,
                })
                .await?;
            added += usize::from(seq.is_some());
        }
        Ok(added)
    }

    /// Posts the decrypted history of every group, and this user's settings,
    /// in the own-devices group (through the outbox, so exactly once).
    pub(crate) async fn send_history(&self) -> Result<(), Error> {
        let Some(own) = self.own_devices_group().await? else {
            return Ok(());
        };
        for g in self.groups().await? {
            if g.own_devices {
                continue;
            }
            let read_up_to = self.read_up_to(&g.group)?;
            let all: Vec<(Vec<u8>, Message)> =
                self.inner
                    .local
                    .scan(&key::history_prefix(&g.group), None, false, usize::MAX)?;
            let mut chunk: Vec<serde_json::Value> = Vec::new();
            let mut size = 0;
            let flush = |chunk: &mut Vec<serde_json::Value>| Content::SyncHistory {
                group: g.group.to_hex(),
                read_up_to,
                messages: serde_json::Value::Array(std::mem::take(chunk)),
            };
            let mut contents = Vec::new();
            for (_, m) in all {
                let v = serde_json::to_value(&m).map_err(|e| Error::Local(e.to_string()))?;
                let len = v.to_string().len();
                if size + len > HISTORY_CHUNK_BYTES && !chunk.is_empty() {
                    contents.push(flush(&mut chunk));
                    size = 0;
                }
                size += len;
                chunk.push(v);
            }
            if !chunk.is_empty() || read_up_to > 0 {
                contents.push(flush(&mut chunk));
            }
            for c in contents {
                self.enqueue(&own, c).await?;
            }
        }
        let settings: Vec<(Vec<u8>, serde_json::Value)> =
            self.inner.local.scan(&key::setting("user/"), None, false, usize::MAX)?;
        for (k, value) in settings {
            let name = String::from_utf8_lossy(&k[key::setting("user/").len()..]).into_owned();
            self.enqueue(&own, Content::SyncSetting { name, value }).await?;
        }
        Ok(())
    }
}

impl ClientBuilder {
    /// Creates this device by linking it to an existing device of a user,
    /// with the code that device shows ([`Client::link_device`]). The data
    /// directory must not hold an identity yet; the user is the one of the
    /// approving device (a user given to the builder is ignored). Returns once
    /// the existing device added this one to its groups and posted their
    /// history; [`Client::sync`] then brings it all in. At most `timeout`.
    pub async fn open_linked(self, code: &str, timeout: Duration) -> Result<(Client, EventStream), Error> {
        tokio::time::timeout(timeout, self.link(code))
            .await
            .map_err(|_| link_err("linking did not finish in time"))?
    }

    async fn link(self, code: &str) -> Result<(Client, EventStream), Error> {
        let code = Code::parse(code)?;
        let relay = self
            .relay
            .clone()
            .ok_or_else(|| Error::Config("relay URL missing".into()))?;
        let trust = self
            .trust
            .clone()
            .ok_or_else(|| Error::Config("relay trust missing".into()))?;
        if let Some(dir) = &self.data_dir
            && (dir.join(crate::store::FILE).exists() || dir.join("sdk.redb").exists())
        {
            let local = crate::store::LocalStore::open_in(crate::store::open_database(dir)?)?;
            if local.get::<serde_json::Value>(key::IDENTITY)?.is_some() {
                return Err(Error::Config(format!(
                    "{} already holds a device; link into a new directory",
                    dir.display()
                )));
            }
        }
        let (spake, first) = code.spake();
        let mut pipe = Pipe::open(&relay, &trust, code.slot(), first).await?;
        let theirs = pipe.recv().await?;
        let shared = spake
            .finish(&theirs)
            .map_err(|e| link_err(format!("key exchange failed: {e:?}")))?;
        let mut sealer = Sealer::new(&shared, false)?;
        let seed: [u8; 32] = rand::random();
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        pipe.send(sealer.seal(&LinkMsg::Key {
            key: hex::encode(public),
        })?)
        .await?;
        let (user, registration) = sealer.open(&pipe.recv().await?)?.into_approval()?;
        let (client, events) = pipe
            .keep_alive(async {
                let (client, events) = self
                    .user(user)
                    .device_seed(seed)
                    .registration(registration)
                    .open_with_events()
                    .await?;
                let mut settled = client.inner.settled.subscribe();
                if settled.wait_for(|s| *s).await.is_err() {
                    return Err(Error::Closed);
                }
                Ok((client, events))
            })
            .await?;
        pipe.send(sealer.seal(&LinkMsg::Ready)?).await?;
        let LinkMsg::Done { .. } = sealer.open(&pipe.recv().await?)? else {
            return Err(link_err("expected the end of the link"));
        };
        pipe.close().await;
        Ok((client, events))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_as_typed_and_share_a_slot_only_by_nameplate() {
        let c = Code::generate();
        assert_eq!(Code::parse(&c.0).unwrap(), c);
        assert_eq!(Code::parse(&c.0.to_lowercase().replace('-', " ")).unwrap(), c);
        assert_eq!(Code::parse("4821 k7q2 9xmf").unwrap().0, "4821-K7Q2-9XMF");
        assert_eq!(Code::parse("482I-K7Q2-9XMO").unwrap().0, "4821-K7Q2-9XM0");
        assert!(Code::parse("4821-K7Q2").is_err());
        assert!(Code::parse("48A1-K7Q2-9XMF").is_err());
        assert!(Code::parse("4821-K7Q2-9XM!").is_err());
        assert_eq!(
            Code::parse("4821-AAAA-AAAA").unwrap().slot(),
            Code::parse("4821-BBBB-BBBB").unwrap().slot()
        );
        assert_ne!(
            Code::parse("4821-AAAA-AAAA").unwrap().slot(),
            Code::parse("4822-AAAA-AAAA").unwrap().slot()
        );
    }

    #[test]
    fn sealed_messages_open_only_with_the_same_code() {
        let a = Code::parse("1234-ABCD-EFGH").unwrap();
        let b = Code::parse("1234-ABCD-EFGJ").unwrap();
        let (sa, ma) = a.spake();
        let (sb, mb) = a.spake();
        let (sc, mc) = b.spake();
        let ka = sa.finish(&mb).unwrap();
        let kb = sb.finish(&ma).unwrap();
        let mut existing = Sealer::new(&ka, true).unwrap();
        let mut new = Sealer::new(&kb, false).unwrap();
        let sealed = new.seal(&LinkMsg::Ready).unwrap();
        assert!(matches!(existing.open(&sealed).unwrap(), LinkMsg::Ready));
        // A second message uses the next nonce: replaying the first fails.
        assert!(existing.open(&sealed).is_err());
        // A wrong code gives another key.
        let (sa2, ma2) = a.spake();
        let kc = sc.finish(&ma2).unwrap();
        let _ = sa2.finish(&mc).unwrap();
        let mut wrong = Sealer::new(&kc, false).unwrap();
        let mut existing2 = Sealer::new(&ka, true).unwrap();
        assert!(existing2.open(&wrong.seal(&LinkMsg::Ready).unwrap()).is_err());
    }
}
