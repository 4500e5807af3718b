//! The SDK's entry point: [`Client`] and its builder.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hush_crypto::content::{Content, MessageId, Payload};
use hush_crypto::{Device, DeviceConfig, DeviceIdentity, MlsStore};
use hush_protocol::frame::{Policy, Posters, Registration, Reply, Request};
use hush_protocol::{DeviceId, GroupId, UserId};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};

use crate::engine::{Answer, Change, Command, Engine, EngineConfig, GroupMeta, now_ms};
use crate::error::Error;
use crate::event::{Event, Member, Message};
use crate::outbox::OutboxItem;
use crate::store::{LocalStore, key};
use crate::transport::TransportConfig;
use crate::wire::{self, Trust};

/// App calls waiting for the client's task; a caller beyond that waits.
const COMMAND_QUEUE: usize = 1024;

/// What is saved about this device in the data directory.
#[derive(Serialize, Deserialize)]
struct IdentityRecord {
    user: String,
    seed: [u8; 32],
}

/// Timing of reconnects and heartbeats.
#[derive(Clone, Debug)]
pub struct Timing {
    /// First reconnect delay (doubles per failed attempt). Default 250 ms.
    pub backoff_base: Duration,
    /// Longest reconnect delay. Default 30 s.
    pub backoff_max: Duration,
    /// Ping interval; the relay's `heartbeat_ms` is used if it is shorter.
    /// Default 10 s. A connection with no frame from the relay for three
    /// intervals is treated as dead and replaced.
    pub heartbeat: Duration,
    /// How long a request to the relay may wait for its answer. Default
    /// 10 s. One that takes longer fails its call with [`Error::Timeout`]
    /// and the connection is replaced (outbox items and other work in flight
    /// are sent again on the next one).
    pub request_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Builds a [`Client`]: `Client::builder().relay(url).trust(..).data_dir(dir).user("alice").open()`.
#[derive(Debug, Default)]
pub struct ClientBuilder {
    pub(crate) relay: Option<String>,
    pub(crate) trust: Option<Trust>,
    pub(crate) data_dir: Option<PathBuf>,
    user: Option<String>,
    registration: Option<Registration>,
    timing: Timing,
    transport: TransportConfig,
    seed: Option<[u8; 32]>,
    authority: Option<[u8; 32]>,
    certificate: Option<[u8; 64]>,
}

impl ClientBuilder {
    /// The relay's WebSocket URL, `wss://host:port/ws`. Required.
    pub fn relay(mut self, url: impl Into<String>) -> Self {
        self.relay = Some(url.into());
        self
    }

    /// How to trust the relay's certificate. Default: the system's... there
    /// is none bundled, so this is required.
    pub fn trust(mut self, trust: Trust) -> Self {
        self.trust = Some(trust);
        self
    }

    /// Where this device keeps its state (created if missing). Required.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// The user this device belongs to. Needed the first time (it creates the
    /// device identity); afterwards it must match the saved one, or be left out.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// How a new device is admitted by the relay (a token from the app's
    /// backend, or a link approval). Default: none (open relays).
    pub fn registration(mut self, registration: Registration) -> Self {
        self.registration = Some(registration);
        self
    }

    /// Reconnect and heartbeat timing.
    pub fn timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// Transport selection (WebTransport race, fallback).
    pub fn transport(mut self, transport: TransportConfig) -> Self {
        self.transport = transport;
        self
    }

    /// The identity authority's Ed25519 public key: the app's backend, which
    /// certifies each device key as a device of its user
    /// ([`hush_crypto::certify`] over
    /// [`hush_protocol::auth::identity_transcript`]). With it, this device
    /// takes in no leaf without a valid certificate: it does not add such a
    /// key package, does not join a group holding one, and does not merge a
    /// commit adding one ([`Event::CommitRejected`]); so no one, relay
    /// included, can pass off a device as another user's. Give it at every
    /// open.
    pub fn identity_authority(mut self, key: [u8; 32]) -> Self {
        self.authority = Some(key);
        self
    }

    /// The authority's certificate for this device's key (see
    /// [`ClientBuilder::identity_authority`]), used when creating the
    /// identity: choose the key first ([`ClientBuilder::device_seed`];
    /// [`crate::wire::Identity::from_seed`] gives its public key), have the
    /// backend certify it, then open. It is kept with the identity.
    pub fn identity_certificate(mut self, certificate: [u8; 64]) -> Self {
        self.certificate = Some(certificate);
        self
    }

    /// Uses this device key seed when creating the identity (device linking
    /// generates the key before the data directory exists).
    pub fn device_seed(mut self, seed: [u8; 32]) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Opens (or creates) the device's state and starts connecting in the
    /// background. Returns at once, also when the relay is unreachable:
    /// watch [`Event::Connection`] or call [`Client::wait_connected`].
    pub async fn open(self) -> Result<Client, Error> {
        Ok(self.open_with_events().await?.0)
    }

    /// Like [`ClientBuilder::open`], with an event stream subscribed before
    /// the client starts connecting, so no event is missed (replayed
    /// messages can arrive within milliseconds).
    pub async fn open_with_events(self) -> Result<(Client, EventStream), Error> {
        let relay = self.relay.ok_or_else(|| Error::Config("relay URL missing".into()))?;
        let trust = self.trust.ok_or_else(|| Error::Config("relay trust missing".into()))?;
        let dir = self
            .data_dir
            .ok_or_else(|| Error::Config("data directory missing".into()))?;
        std::fs::create_dir_all(&dir).map_err(|e| Error::Config(format!("{}: {e}", dir.display())))?;
        let db = crate::store::open_database(&dir)?;
        let local = Arc::new(LocalStore::open_in(db.clone())?);
        let mls = MlsStore::open_in(db).map_err(hush_crypto::Error::from)?;
        let saved: Option<IdentityRecord> = local.get(key::IDENTITY)?;
        let device_config = match self.authority {
            Some(a) => DeviceConfig::default().identity_authority(a),
            None => DeviceConfig::default(),
        };
        let (record, device) = match saved {
            Some(r) => {
                if let Some(u) = &self.user
                    && *u != r.user
                {
                    return Err(Error::Config(format!("this data directory belongs to user {}", r.user)));
                }
                let device = Device::open(mls, device_config)?;
                (r, device)
            }
            None => {
                let user = self
                    .user
                    .ok_or_else(|| Error::Config("no identity here yet: give a user".into()))?;
                let uid = UserId(user.clone());
                if !uid.is_valid() {
                    return Err(Error::Config(format!("invalid user id {user:?}")));
                }
                let seed = self.seed.unwrap_or_else(rand::random);
                let mut identity = DeviceIdentity::from_secret(uid, seed).map_err(hush_crypto::Error::from)?;
                if let Some(c) = self.certificate {
                    identity = identity.with_certificate(c);
                }
                let device = Device::with_identity(mls, identity, device_config)?;
                let r = IdentityRecord { user, seed };
                local.put(key::IDENTITY.to_vec(), &r)?;
                (r, device)
            }
        };
        let identity = wire::Identity::from_seed(&record.user, record.seed);
        let (events, _) = broadcast::channel(4096);
        let (connected, _) = watch::channel(false);
        let (shutdown, _) = watch::channel(false);
        let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let engine = Engine::new(
            device,
            local.clone(),
            identity.user.clone(),
            EngineConfig {
                request_timeout: self.timing.request_timeout,
                heartbeat: self.timing.heartbeat,
                ..EngineConfig::default()
            },
        )?;
        let inner = Arc::new(Inner {
            relay,
            trust,
            dir,
            device_id: identity.device(),
            user: identity.user.clone(),
            identity,
            registration: Mutex::new(self.registration.unwrap_or(Registration::None)),
            timing: self.timing,
            transport: self.transport,
            local,
            commands,
            events,
            connected,
            revoked: watch::channel(false).0,
            shutdown,
            reconnect: Notify::new(),
            settled: watch::channel(false).0,
            transport_state: Default::default(),
            current_transport: Mutex::new(None),
        });
        let stream = EventStream {
            rx: inner.events.subscribe(),
        };
        let task = tokio::spawn(crate::session::run(inner.clone(), engine, commands_rx));
        let client = Client {
            inner,
            task: Arc::new(Mutex::new(Some(task))),
        };
        Ok((client, stream))
    }
}

/// Shared by the client handles and the background connection task.
pub(crate) struct Inner {
    pub relay: String,
    pub trust: Trust,
    pub dir: PathBuf,
    pub identity: wire::Identity,
    pub device_id: DeviceId,
    pub user: UserId,
    pub registration: Mutex<Registration>,
    pub timing: Timing,
    pub transport: TransportConfig,
    /// Reads of committed records (history, outbox length, settings); every
    /// write goes through the engine.
    pub local: Arc<LocalStore>,
    /// App calls to the client's task, which owns the engine.
    pub commands: mpsc::Sender<Command>,
    pub events: broadcast::Sender<Event>,
    pub connected: watch::Sender<bool>,
    /// The relay refused this device as revoked: no more connections.
    pub revoked: watch::Sender<bool>,
    pub shutdown: watch::Sender<bool>,
    pub reconnect: Notify,
    /// Set once this connection resolved pending commits and stocked key packages.
    pub settled: watch::Sender<bool>,
    pub transport_state: crate::transport::TransportState,
    /// The transport of the current connection.
    pub current_transport: Mutex<Option<&'static str>>,
}

impl Inner {
    pub(crate) fn own_devices_group_id(&self) -> Result<Option<GroupId>, Error> {
        let groups: Vec<(Vec<u8>, GroupMeta)> = self.local.scan(key::GROUPS, None, false, usize::MAX)?;
        Ok(groups
            .into_iter()
            .find(|(_, m)| m.own_devices && !m.left)
            .map(|(k, _)| GroupId(k[2..].to_vec())))
    }

    pub(crate) fn emit(&self, event: Event) {
        // No subscriber is fine: history is in the database.
        let _ = self.events.send(event);
    }

    pub(crate) fn group_meta(&self, group: &GroupId) -> Result<Option<GroupMeta>, Error> {
        self.local.get(&key::group(group))
    }
}

/// What [`Client::remove_device`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRemoval {
    /// Whether the relay revoked it now (false: it was revoked before).
    pub revoked: bool,
    /// The groups it was removed from (by a commit of this device).
    pub removed_from: Vec<GroupId>,
}

/// What became of a sent message ([`Client::send_outcome`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendOutcome {
    /// In the group's log.
    Stored,
    /// Still in the outbox: it goes, exactly once, when the relay is reached.
    Queued,
    /// Refused by the relay (or impossible to encrypt): it will never be
    /// sent. The reason.
    Failed(String),
}

/// A group as listed by [`Client::groups`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSummary {
    /// The group.
    pub group: GroupId,
    /// Its local label.
    pub name: String,
    /// For a direct conversation, the partner.
    pub direct_with: Option<String>,
    /// Whether it is the private group of this user's devices.
    pub own_devices: bool,
    /// The members (user and device).
    pub members: Vec<Member>,
    /// The highest seq processed on this device.
    pub seq: u64,
    /// No leaf is an impostor, and either an identity authority certified
    /// every member ([`ClientBuilder::identity_authority`]) or every other
    /// member's devices are the ones whose safety number this user compared
    /// ([`Client::mark_verified`]).
    pub verified: bool,
    /// Leaves that claim a user whose devices, as the relay lists them, do
    /// not include them ([`crate::Event::IdentityRejected`]).
    pub unverified_members: usize,
    /// `name` is the group's shared name, the same for every member
    /// ([`Client::rename`]); otherwise a local label.
    pub shared_name: bool,
}

/// A hush device: its identity, groups, history and connection.
///
/// Cloning gives another handle to the same client. Dropping every handle
/// does not stop the background task; call [`Client::close`].
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({}, {})", self.inner.user, self.inner.device_id)
    }
}

impl Client {
    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Client {
            inner,
            task: Arc::new(Mutex::new(None)),
        }
    }

    /// Creates the private group of this user's devices (read state and
    /// settings sync through it). The first device does this on its first
    /// connection.
    pub(crate) async fn create_own_devices_group(&self) -> Result<GroupId, Error> {
        self.create("own devices", &[], None, true).await
    }

    /// Starts building a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// This device's user.
    pub fn user(&self) -> &UserId {
        &self.inner.user
    }

    /// This device's id.
    pub fn device_id(&self) -> DeviceId {
        self.inner.device_id
    }

    /// This device's Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.inner.identity.public_key()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.inner.dir
    }

    /// Subscribes to events from now on. Each subscriber has its own queue of
    /// 4,096 events; one that falls further behind gets [`Event::Lagged`]
    /// (the history in the database stays complete).
    pub fn events(&self) -> EventStream {
        EventStream {
            rx: self.inner.events.subscribe(),
        }
    }

    /// The transport of the current connection (`"webtransport"` or
    /// `"websocket"`), if connected.
    pub fn transport(&self) -> Option<&'static str> {
        *self.inner.current_transport.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a connection is up now.
    pub fn is_connected(&self) -> bool {
        *self.inner.connected.borrow()
    }

    /// Waits until connected, at most `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), Error> {
        let mut rx = self.inner.connected.subscribe();
        let mut revoked = self.inner.revoked.subscribe();
        tokio::select! {
            r = tokio::time::timeout(timeout, rx.wait_for(|c| *c)) => {
                r.map_err(|_| Error::Offline)?.map_err(|_| Error::Closed)?;
                Ok(())
            }
            Ok(_) = revoked.wait_for(|r| *r) => Err(Error::Revoked),
        }
    }

    /// Drops the current connection (if any) and reconnects at once; for
    /// apps that know the network changed.
    pub fn reconnect_now(&self) {
        self.inner.reconnect.notify_one();
    }

    /// Stops the connection and the background task. State is durable at
    /// every point, so this only needs to stop the network.
    pub async fn close(&self) {
        let _ = self.inner.shutdown.send_replace(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }

    /// Hands a command to the client's task and waits for its answer.
    pub(crate) async fn call<T>(&self, make: impl FnOnce(Answer<T>) -> Command) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.inner.commands.send(make(tx)).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// A request to the relay through the engine (with its timeout).
    pub(crate) async fn request(&self, request: Request) -> Result<Reply, Error> {
        self.call(|answer| Command::Request { request, answer }).await
    }

    async fn change(&self, group: &GroupId, change: Change) -> Result<Option<u64>, Error> {
        self.call(|answer| Command::Change {
            group: group.clone(),
            change,
            answer,
        })
        .await
    }

    /// Creates a group with `users` (all their devices) and this user's other
    /// devices. Needs a connection.
    pub async fn create_group(&self, name: &str, users: &[&str]) -> Result<GroupId, Error> {
        self.create(name, users, None, false).await
    }

    /// The direct conversation with `user`: the existing one, or a new one.
    ///
    /// If two people started one at the same moment they have two; both sides
    /// then use the same one, the one with the lowest group id
    /// ([`canonical_direct`]), so they converge without talking about it.
    pub async fn direct(&self, user: &str) -> Result<GroupId, Error> {
        if let Some(g) = canonical_direct(&self.groups().await?, user) {
            return Ok(g.group.clone());
        }
        self.create(user, &[user], Some(user.to_owned()), false).await
    }

    async fn create(
        &self,
        name: &str,
        users: &[&str],
        direct_with: Option<String>,
        own_devices: bool,
    ) -> Result<GroupId, Error> {
        // The key packages first: a claim the relay refuses (a rate limit,
        // a user with no device) leaves no group behind, there or here.
        let mut packages = self.claim_own_other_devices().await?;
        for u in users {
            if *u == self.inner.user.0 {
                continue;
            }
            packages.extend(claim(self, u, None).await?);
        }
        let group = GroupId(rand::random::<[u8; 16]>().to_vec());
        let reply = self
            .request(Request::CreateGroup {
                group: group.clone(),
                // The creator is the admin: only it changes who is in the
                // group (the relay lets every member add and remove its own
                // devices, and commit a member's leaving).
                policy: Policy {
                    posters: Posters::Everyone,
                    admins: vec![self.inner.device_id],
                    admins_change_roster: true,
                },
            })
            .await?;
        if !matches!(reply, Reply::GroupCreated { .. }) {
            return Err(Error::Connection(format!("unexpected reply {reply:?}")));
        }
        let direct_is_none = direct_with.is_none();
        let meta = GroupMeta {
            name: name.to_owned(),
            created_direct: direct_with.is_some(),
            direct_with,
            own_devices,
            ..Default::default()
        };
        self.call(|answer| Command::CreateGroup {
            group: group.clone(),
            meta,
            answer,
        })
        .await?;
        if !packages.is_empty() {
            self.change(
                &group,
                Change::Add {
                    packages,
                    unless_member: None,
                },
            )
            .await?;
        }
        if !own_devices && direct_is_none {
            // Shared with the members, end-to-end encrypted, after they
            // joined (they read only what follows their join).
            self.enqueue(&group, Content::GroupName { name: name.to_owned() })
                .await?;
        }
        Ok(group)
    }

    /// Renames a group for every member: the name travels end-to-end
    /// encrypted, and the newest in the group's log order wins. Direct
    /// conversations and the own-devices group keep their names.
    pub async fn rename(&self, group: &GroupId, name: &str) -> Result<String, Error> {
        let name = crate::engine::clean_name(name);
        if name.is_empty() {
            return Err(Error::Config("a group name cannot be empty".into()));
        }
        self.enqueue(group, Content::GroupName { name }).await
    }

    /// Sends the group's shared name again, for members that joined after it
    /// was sent.
    async fn share_name(&self, group: &GroupId) -> Result<(), Error> {
        let summary = self.groups().await?.into_iter().find(|g| g.group == *group);
        if let Some(g) = summary
            && g.direct_with.is_none()
            && !g.own_devices
            && g.unverified_members == 0
            && g.shared_name
        {
            self.enqueue(group, Content::GroupName { name: g.name }).await?;
        }
        Ok(())
    }

    async fn claim_own_other_devices(&self) -> Result<Vec<Vec<u8>>, Error> {
        let Reply::Devices(devices) = self
            .request(Request::ListDevices {
                user: self.inner.user.clone(),
            })
            .await?
        else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for d in devices {
            if d.device != self.inner.device_id {
                match claim(self, &self.inner.user.0, Some(d.device)).await {
                    Ok(p) => out.extend(p),
                    Err(Error::NoDevices(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    /// Adds every device of `user` to the group. Needs a connection.
    pub async fn add_user(&self, group: &GroupId, user: &str) -> Result<(), Error> {
        let members = self.members(group).await?;
        let packages: Vec<Vec<u8>> = if members.iter().any(|m| m.user.0 == user) {
            // Some of the user's devices are in: claim for the others only.
            let present: Vec<DeviceId> = members.iter().map(|m| m.device).collect();
            claim_filtered(self, user, &present).await?
        } else {
            // One request for all of them: one lookup per device, and a
            // rate limit's hint that covers the whole call.
            match claim(self, user, None).await {
                Err(Error::NoDevices(_)) => Vec::new(),
                other => other?,
            }
        };
        if packages.is_empty() {
            return Err(Error::NoDevices(user.to_owned()));
        }
        self.change(
            group,
            Change::Add {
                packages,
                unless_member: None,
            },
        )
        .await?;
        self.share_name(group).await
    }

    /// The group's policy at the relay: who may post, who administers it,
    /// whether roster changes need an admin. Needs a connection.
    pub async fn policy(&self, group: &GroupId) -> Result<Policy, Error> {
        match self.request(Request::GetGroup { group: group.clone() }).await? {
            Reply::Group(info) => Ok(info.policy),
            other => Err(Error::Connection(format!("unexpected reply {other:?}"))),
        }
    }

    /// Replaces the group's policy (admins only). Groups start with their
    /// creator's device as the only admin and roster changes reserved to
    /// admins; `admins_change_roster: false` lets every member add and
    /// remove others. Needs a connection.
    pub async fn set_policy(&self, group: &GroupId, policy: Policy) -> Result<(), Error> {
        self.request(Request::SetPolicy {
            group: group.clone(),
            policy,
        })
        .await?;
        Ok(())
    }

    /// Removes every device of `user` from the group. Needs a connection.
    pub async fn remove_user(&self, group: &GroupId, user: &str) -> Result<(), Error> {
        self.change(group, Change::RemoveUser(UserId(user.to_owned()))).await?;
        Ok(())
    }

    /// Revokes one of this user's devices (a lost phone, say) and removes it
    /// from every group of this device that contains it. After the
    /// revocation the relay refuses the device at once (its connections are
    /// closed), nothing can add it to a group again, and link approvals it
    /// signed are void. Needs a connection.
    pub async fn remove_device(&self, device: DeviceId) -> Result<DeviceRemoval, Error> {
        let Reply::Devices(mine) = self
            .request(Request::ListDevices {
                user: self.user().clone(),
            })
            .await?
        else {
            return Err(Error::Connection("unexpected reply to ListDevices".into()));
        };
        let target = mine.iter().find(|d| d.device == device);
        let revoked = match target {
            Some(d) => {
                let transcript = hush_protocol::auth::revoke_transcript(self.user(), &d.key);
                let signature = self.inner.identity.sign(&transcript);
                self.request(Request::RevokeDevice { device, signature }).await?;
                true
            }
            // Not listed: revoked already, or not a device of this user.
            None => false,
        };
        let mut removed_from = Vec::new();
        for g in self.groups().await? {
            if g.members.iter().any(|m| m.device == device) {
                self.change(&g.group, Change::RemoveDevice(device)).await?;
                removed_from.push(g.group);
            }
        }
        if !revoked && removed_from.is_empty() {
            return Err(Error::UnknownDevice(device.to_hex()));
        }
        Ok(DeviceRemoval { revoked, removed_from })
    }

    /// Leaves a group: asks the other members to remove this device (the
    /// next commit of one of them does) and stops showing the group.
    pub async fn leave(&self, group: &GroupId) -> Result<(), Error> {
        self.call(|answer| Command::Leave {
            group: group.clone(),
            answer,
        })
        .await
    }

    /// This device's groups (those it has not left).
    pub async fn groups(&self) -> Result<Vec<GroupSummary>, Error> {
        self.call(|answer| Command::Groups { answer }).await
    }

    /// The members of a group.
    pub async fn members(&self, group: &GroupId) -> Result<Vec<Member>, Error> {
        self.call(|answer| Command::Members {
            group: group.clone(),
            answer,
        })
        .await
    }

    /// A page of a group's decrypted history, newest first: up to `limit`
    /// messages with seq below `before` (`None`: from the newest).
    pub async fn history(&self, group: &GroupId, before: Option<u64>, limit: usize) -> Result<Vec<Message>, Error> {
        let prefix = key::history_prefix(group);
        let bound = before.map(|b| key::history(group, b));
        let page: Vec<(Vec<u8>, Message)> = self.inner.local.scan(&prefix, bound.as_deref(), true, limit)?;
        Ok(page.into_iter().map(|(_, m)| m).collect())
    }

    /// Waits until this device is up to date: connected, every group's log
    /// processed up to the relay's head, pending Welcomes joined and the
    /// outbox empty. At most `timeout`.
    pub async fn sync(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.inner.events.subscribe();
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            self.wait_connected(remaining).await?;
            if self.synced().await? {
                return Ok(());
            }
            // Re-check on every event, and at least every 100 ms (acks and
            // Welcomes do not always produce one).
            let tick = remaining.min(Duration::from_millis(100));
            match tokio::time::timeout(tick, rx.recv()).await {
                Ok(Err(broadcast::error::RecvError::Closed)) => return Err(Error::Closed),
                _ if tokio::time::Instant::now() >= deadline => return Err(Error::Offline),
                _ => {}
            }
        }
    }

    async fn synced(&self) -> Result<bool, Error> {
        if !*self.inner.settled.borrow() {
            return Ok(false);
        }
        let Ok(Reply::Groups(groups)) = self.request(Request::ListGroups).await else {
            return Ok(false);
        };
        let heads = groups.into_iter().map(|g| (g.group, g.head_seq)).collect();
        self.call(|answer| Command::Synced { heads, answer }).await
    }

    /// Messages waiting in the outbox (not yet stored by the relay).
    pub fn outbox_len(&self) -> Result<usize, Error> {
        let items: Vec<(Vec<u8>, OutboxItem)> = self.inner.local.scan(key::OUTBOX, None, false, usize::MAX)?;
        Ok(items.len())
    }

    /// Whether message `id` waits in the outbox (in `group`, if given).
    fn queued_in(&self, group: Option<&GroupId>, id: &[u8; 16]) -> Result<bool, Error> {
        let items: Vec<(Vec<u8>, OutboxItem)> = self.inner.local.scan(key::OUTBOX, None, false, usize::MAX)?;
        Ok(items.iter().any(|(_, item)| {
            group.is_none_or(|g| item.group == *g) && Payload::decode(&item.payload).is_ok_and(|p| p.id.0 == *id)
        }))
    }

    /// What became of a message this device sent (by the id `send_*`
    /// returned): stored in the group's log, still queued, or refused.
    pub fn send_outcome(&self, id: &str) -> Result<SendOutcome, Error> {
        let raw: [u8; 16] = hex::decode(id)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::Local(format!("not a message id: {id}")))?;
        if let Some(reason) = self.inner.local.get::<String>(&key::send_failed(&raw))? {
            return Ok(SendOutcome::Failed(reason));
        }
        if self.queued_in(None, &raw)? {
            return Ok(SendOutcome::Queued);
        }
        // Out of the outbox and not refused: the relay stored it. (An id
        // this device never sent also lands here; history has the messages.)
        Ok(SendOutcome::Stored)
    }

    /// Waits until the outbox is empty (every message sent so far is stored
    /// by the relay, or refused: see [`Client::send_outcome`]), at most
    /// `timeout`.
    pub async fn flush(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.inner.events.subscribe();
        loop {
            if self.outbox_len()? == 0 {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => return Err(Error::Offline),
                Ok(Err(broadcast::error::RecvError::Closed)) => return Err(Error::Closed),
                Ok(_) => {}
            }
        }
    }

    pub(crate) async fn enqueue(&self, group: &GroupId, content: Content) -> Result<String, Error> {
        let payload = Payload::new(content, now_ms());
        let id = hex::encode(payload.id.0);
        self.call(|answer| Command::Enqueue {
            group: group.clone(),
            payload,
            answer,
        })
        .await?;
        Ok(id)
    }

    /// Sends a text message. Returns its id once it is durably in the
    /// outbox: from then on it is delivered exactly once, whether or not the
    /// client is connected now (see the crate docs).
    pub async fn send_text(&self, group: &GroupId, text: &str) -> Result<String, Error> {
        self.enqueue(
            group,
            Content::Text {
                text: text.to_owned(),
                reply_to: None,
            },
        )
        .await
    }

    /// Replaces the text of one of this user's messages.
    pub async fn edit(&self, group: &GroupId, id: &str, text: &str) -> Result<String, Error> {
        let target = self.own_message(group, id)?;
        self.enqueue(
            group,
            Content::Edit {
                target,
                text: text.to_owned(),
            },
        )
        .await
    }

    /// Deletes one of this user's messages for everyone.
    pub async fn delete(&self, group: &GroupId, id: &str) -> Result<String, Error> {
        let target = self.own_message(group, id)?;
        self.enqueue(group, Content::Delete { target }).await
    }

    /// The id of a message of this group, sent by this user and not deleted:
    /// what an edit or delete may target (every member's client ignores
    /// the others, so they are refused here rather than sent for nothing).
    fn own_message(&self, group: &GroupId, id: &str) -> Result<MessageId, Error> {
        let target = parse_id(id)?;
        let unknown = || Error::UnknownMessage(id.to_owned());
        let Some((g, seq)) = self.inner.local.get::<(GroupId, u64)>(&key::message_id(&target.0))? else {
            // Sent by this device and not stored by the relay yet: the change
            // queues behind it.
            return if self.queued_in(Some(group), &target.0)? {
                Ok(target)
            } else {
                Err(unknown())
            };
        };
        if g != *group {
            return Err(unknown());
        }
        let m: Message = self.inner.local.get(&key::history(group, seq))?.ok_or_else(unknown)?;
        if m.sender.user != *self.user() || m.deleted {
            return Err(Error::NotYourMessage(id.to_owned()));
        }
        Ok(target)
    }

    /// Adds (or with `remove`, takes back) a reaction to a message.
    pub async fn react(&self, group: &GroupId, id: &str, emoji: &str, remove: bool) -> Result<String, Error> {
        let target = parse_id(id)?;
        self.enqueue(
            group,
            Content::Reaction {
                target,
                emoji: emoji.to_owned(),
                remove,
            },
        )
        .await
    }

    /// Marks everything received in the group as read: sends a read receipt
    /// for the others' messages not marked read yet, and tells this user's
    /// other devices. Returns how many messages it covered.
    pub async fn mark_read(&self, group: &GroupId) -> Result<usize, Error> {
        let meta = self
            .inner
            .group_meta(group)?
            .ok_or_else(|| Error::UnknownGroup(group.to_hex()))?;
        let mut unread = Vec::new();
        let mut head = meta.read_up_to;
        for m in self.history(group, None, 500).await? {
            if m.seq <= meta.read_up_to {
                break;
            }
            head = head.max(m.seq);
            if m.sender.user != self.inner.user && !m.deleted {
                unread.push(parse_id(&m.id)?);
            }
        }
        if head == meta.read_up_to {
            return Ok(0);
        }
        let n = unread.len();
        if !unread.is_empty() {
            self.enqueue(group, Content::ReadReceipt { messages: unread }).await?;
        }
        self.call(|answer| Command::MarkRead {
            group: group.clone(),
            seq: head,
            answer,
        })
        .await?;
        if let Some(own) = self.own_devices_group().await? {
            self.enqueue(
                &own,
                Content::SyncRead {
                    group: group.to_hex(),
                    seq: head,
                },
            )
            .await?;
        }
        Ok(n)
    }

    /// Sets a setting of this user (any JSON value) here and, through the
    /// private group of the user's devices, on every other device of the user
    /// ([`Event::SettingChanged`] there). Works offline (outbox).
    pub async fn set_setting(&self, name: &str, value: serde_json::Value) -> Result<(), Error> {
        let k = key::setting(&format!("user/{name}"));
        let v = value.clone();
        self.call(|answer| Command::PutSetting {
            key: k,
            value: v,
            answer,
        })
        .await?;
        if let Some(own) = self.own_devices_group().await? {
            self.enqueue(
                &own,
                Content::SyncSetting {
                    name: name.to_owned(),
                    value,
                },
            )
            .await?;
        }
        Ok(())
    }

    /// A setting of this user, as last set on any of its devices.
    pub fn setting(&self, name: &str) -> Result<Option<serde_json::Value>, Error> {
        self.inner.local.get(&key::setting(&format!("user/{name}")))
    }

    /// The highest seq of the group this user has read (on any of its devices).
    pub fn read_up_to(&self, group: &GroupId) -> Result<u64, Error> {
        Ok(self.inner.group_meta(group)?.map(|m| m.read_up_to).unwrap_or(0))
    }

    /// Tells the group's members who are online now that this user is (or
    /// stopped) typing. Ephemeral: never stored, dropped when offline.
    pub async fn typing(&self, group: &GroupId, active: bool) -> Result<(), Error> {
        self.call(|answer| Command::Typing {
            group: group.clone(),
            active,
            answer,
        })
        .await
    }

    /// The safety number between this user and `user` (60 digits, the same
    /// on both sides): both users' devices, as the groups this device is in
    /// hold them (checked leaves only).
    pub async fn safety_number(&self, user: &str) -> Result<String, Error> {
        self.call(|answer| Command::SafetyNumber {
            user: UserId(user.to_owned()),
            answer,
        })
        .await
    }

    /// Records that the safety number with `user` was compared out of band
    /// and is `number` (spaces ignored): conversations with `user` count as
    /// verified ([`GroupSummary::verified`]) until their devices change.
    /// [`Error::SafetyNumberMismatch`] if `number` is not the current one.
    pub async fn mark_verified(&self, user: &str, number: &str) -> Result<(), Error> {
        self.call(|answer| Command::MarkVerified {
            user: UserId(user.to_owned()),
            number: number.to_owned(),
            answer,
        })
        .await
    }

    /// The devices of `user` registered at the relay. Needs a connection.
    pub async fn devices(&self, user: &str) -> Result<Vec<hush_protocol::frame::DeviceInfo>, Error> {
        match self
            .request(Request::ListDevices {
                user: UserId(user.to_owned()),
            })
            .await?
        {
            Reply::Devices(d) => Ok(d),
            other => Err(Error::Connection(format!("unexpected reply {other:?}"))),
        }
    }

    /// Presence of the members of a group (other than this device).
    pub async fn presence(&self, group: &GroupId) -> Result<Vec<hush_protocol::frame::PresenceUpdate>, Error> {
        let devices: Vec<DeviceId> = self
            .members(group)
            .await?
            .into_iter()
            .map(|m| m.device)
            .filter(|d| *d != self.inner.device_id)
            .collect();
        match self.request(Request::GetPresence { devices }).await? {
            Reply::Presence(p) => Ok(p),
            other => Err(Error::Connection(format!("unexpected reply {other:?}"))),
        }
    }

    /// The private group of this user's devices, if there is one.
    pub async fn own_devices_group(&self) -> Result<Option<GroupId>, Error> {
        Ok(self
            .groups()
            .await?
            .into_iter()
            .find(|g| g.own_devices)
            .map(|g| g.group))
    }

    /// Finds a group by a prefix of its hex id, its label, or (for direct
    /// conversations) the partner's user id.
    pub async fn find_group(&self, name: &str) -> Result<GroupId, Error> {
        resolve_group(&self.groups().await?, name)
    }
}

/// The direct conversation with `user` both sides use: of those this device
/// is in, the one with the lowest group id (two started at once converge on
/// the same one).
pub fn canonical_direct<'a>(groups: &'a [GroupSummary], user: &str) -> Option<&'a GroupSummary> {
    groups
        .iter()
        .filter(|g| g.direct_with.as_deref() == Some(user))
        .min_by(|a, b| a.group.0.cmp(&b.group.0))
}

/// A group by name: a direct conversation's partner (its canonical one), a
/// label, or a unique prefix of the hex id. More than one match is an
/// [`Error::AmbiguousGroup`] naming them.
fn resolve_group(groups: &[GroupSummary], name: &str) -> Result<GroupId, Error> {
    if let Some(g) = canonical_direct(groups, name) {
        return Ok(g.group.clone());
    }
    let ambiguous = |found: &[&GroupSummary]| Error::AmbiguousGroup {
        name: name.to_owned(),
        candidates: found
            .iter()
            .map(|g| format!("{} ({})", &g.group.to_hex()[..8.min(g.group.to_hex().len())], g.name))
            .collect(),
    };
    let labelled: Vec<&GroupSummary> = groups.iter().filter(|g| g.name == name).collect();
    match labelled.as_slice() {
        [one] => return Ok(one.group.clone()),
        [] => {}
        many => return Err(ambiguous(many)),
    }
    let by_hex: Vec<&GroupSummary> = groups.iter().filter(|g| g.group.to_hex().starts_with(name)).collect();
    match by_hex.as_slice() {
        [one] if !name.is_empty() => Ok(one.group.clone()),
        [_, _, ..] if !name.is_empty() => Err(ambiguous(&by_hex)),
        _ => Err(Error::UnknownGroup(name.to_owned())),
    }
}

fn parse_id(id: &str) -> Result<MessageId, Error> {
    let bytes = hex::decode(id).map_err(|_| Error::UnknownMessage(id.to_owned()))?;
    let arr: [u8; 16] = bytes.try_into().map_err(|_| Error::UnknownMessage(id.to_owned()))?;
    Ok(MessageId(arr))
}

/// Claims one key package per device of `user` (or only `device`).
pub(crate) async fn claim(client: &Client, user: &str, device: Option<DeviceId>) -> Result<Vec<Vec<u8>>, Error> {
    match client
        .request(Request::ClaimKeyPackages {
            user: UserId(user.to_owned()),
            device,
        })
        .await
    {
        Ok(Reply::KeyPackages(p)) => {
            // The relay checks uploads, but is not trusted to: a package
            // whose leaf is not the device and user asked for is dropped.
            let packages: Vec<Vec<u8>> = p
                .into_iter()
                .filter(|k| {
                    let ok = leaf_is(&k.key_package, k.device, user);
                    if !ok {
                        tracing::warn!(device = %k.device, user, "dropping a claimed key package whose leaf is someone else's");
                    }
                    ok
                })
                .map(|k| k.key_package.to_vec())
                .collect();
            if packages.is_empty() {
                Err(Error::NoDevices(user.to_owned()))
            } else {
                Ok(packages)
            }
        }
        Ok(_) => Err(Error::NoDevices(user.to_owned())),
        Err(e)
            if matches!(
                e.code(),
                Some(hush_protocol::ErrorCode::NotFound | hush_protocol::ErrorCode::NoKeyPackage)
            ) =>
        {
            Err(Error::NoDevices(user.to_owned()))
        }
        Err(e) => Err(e),
    }
}

/// Whether `key_package`'s leaf is `device` of `user`: its signature key
/// derives the device id and its credential names both.
fn leaf_is(key_package: &[u8], device: DeviceId, user: &str) -> bool {
    let Ok(hush_crypto::inspect::Inspected::KeyPackage(k)) = hush_crypto::inspect::inspect_any(key_package) else {
        return false;
    };
    let key: Option<[u8; 32]> = k.signature_key.as_slice().try_into().ok();
    key.is_some_and(|key| DeviceId::from_public_key(&key) == device)
        && k.credential_identity
            .as_deref()
            .and_then(hush_crypto::inspect::credential_identity)
            .is_some_and(|(d, u)| d == device && u.0 == user)
}

/// Claims key packages for the devices of `user` not in `present`.
async fn claim_filtered(client: &Client, user: &str, present: &[DeviceId]) -> Result<Vec<Vec<u8>>, Error> {
    let Reply::Devices(devices) = client
        .request(Request::ListDevices {
            user: UserId(user.to_owned()),
        })
        .await?
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for d in devices {
        if !present.contains(&d.device) {
            match claim(client, user, Some(d.device)).await {
                Ok(p) => out.extend(p),
                Err(Error::NoDevices(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

/// The events of one subscriber.
#[derive(Debug)]
pub struct EventStream {
    rx: broadcast::Receiver<Event>,
}

impl EventStream {
    /// The next event; `None` once the client is closed and dropped.
    pub async fn next(&mut self) -> Option<Event> {
        match self.rx.recv().await {
            Ok(e) => Some(e),
            Err(broadcast::error::RecvError::Lagged(missed)) => Some(Event::Lagged { missed }),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// The next event within `timeout`.
    pub async fn next_timeout(&mut self, timeout: Duration) -> Option<Event> {
        tokio::time::timeout(timeout, self.next()).await.ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use hush_crypto::{Device, DeviceConfig, MlsStore};

    use super::*;

    fn summary(id: u8, name: &str, direct_with: Option<&str>) -> GroupSummary {
        GroupSummary {
            group: GroupId(vec![id; 16]),
            name: name.into(),
            direct_with: direct_with.map(str::to_owned),
            own_devices: false,
            members: vec![],
            seq: 0,
            verified: false,
            unverified_members: 0,
            shared_name: false,
        }
    }

    #[test]
    fn two_direct_conversations_resolve_to_the_same_one_and_ambiguous_names_are_reported() {
        // Bob started one (0x90...) while Alice started hers (0x20...): on
        // either side, in either order, "bob" is the lowest id.
        let a = [summary(0x90, "bob", Some("bob")), summary(0x20, "bob", Some("bob"))];
        let b = [summary(0x20, "bob", Some("bob")), summary(0x90, "bob", Some("bob"))];
        assert_eq!(resolve_group(&a, "bob").unwrap(), GroupId(vec![0x20; 16]));
        assert_eq!(resolve_group(&b, "bob").unwrap(), GroupId(vec![0x20; 16]));
        // Two groups with one label: ambiguous, with both candidates.
        let c = [summary(0x11, "team", None), summary(0x12, "team", None)];
        match resolve_group(&c, "team") {
            Err(Error::AmbiguousGroup { candidates, .. }) => {
                assert_eq!(candidates, vec!["11111111 (team)", "12121212 (team)"]);
            }
            other => panic!("{other:?}"),
        }
        // An id prefix shared by both: ambiguous too; a unique one resolves.
        assert!(matches!(resolve_group(&c, "1"), Err(Error::AmbiguousGroup { .. })));
        assert_eq!(resolve_group(&c, "12").unwrap(), GroupId(vec![0x12; 16]));
        assert!(matches!(resolve_group(&c, "nobody"), Err(Error::UnknownGroup(_))));
    }

    #[test]
    fn a_claimed_key_package_must_be_the_leaf_asked_for() {
        let mut alice = Device::create(MlsStore::in_memory(), UserId("alice".into()), DeviceConfig::default()).unwrap();
        let kp = alice.generate_key_packages(1, 0).unwrap().remove(0);
        assert!(leaf_is(&kp, alice.device_id(), "alice"));
        // Asked for bob, or for another device: not this package.
        assert!(!leaf_is(&kp, alice.device_id(), "bob"));
        assert!(!leaf_is(&kp, DeviceId([9; 16]), "alice"));
        assert!(!leaf_is(b"not a key package", alice.device_id(), "alice"));
    }
}
