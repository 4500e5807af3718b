//! A device's MLS state: its identity, key packages and groups, persisted in
//! an [`MlsStore`].
//!
//! Every public method is one atomic operation: its writes reach the store
//! together when it returns `Ok`, and none of them do when it returns `Err`
//! (the group is then reloaded from the store on next use, so memory and disk
//! never disagree).

mod ephemeral;
mod membership;
mod messages;

use std::collections::HashMap;

use hush_protocol::{DeviceId, GroupId, UserId};
use openmls::group::GroupId as MlsGroupId;
use openmls::prelude::{BasicCredential, Capabilities, Credential, ExtensionType, KeyPackage, MlsGroup, MlsMessageOut};
use openmls_rust_crypto::RustCrypto;
use openmls_traits::OpenMlsProvider;
use serde::{Deserialize, Serialize};

use crate::config::DeviceConfig;
use crate::error::Error;
use crate::identity::{DeviceCredential, DeviceIdentity};
use crate::safety_number::Fingerprint;
use crate::store::MlsStore;

pub use membership::Commit;
pub use messages::Processed;

/// The openmls provider: RustCrypto for cryptography and randomness, the
/// device's store for state.
pub(crate) struct Provider {
    crypto: RustCrypto,
    store: MlsStore,
}

impl OpenMlsProvider for Provider {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = MlsStore;

    fn storage(&self) -> &MlsStore {
        &self.store
    }

    fn crypto(&self) -> &RustCrypto {
        &self.crypto
    }

    fn rand(&self) -> &RustCrypto {
        &self.crypto
    }
}

/// What is persisted about the device itself, beside openmls's state.
#[derive(Serialize, Deserialize)]
struct IdentityRecord {
    user: String,
    secret: [u8; 32],
    /// The identity authority's certificate (a 64-byte signature).
    #[serde(default)]
    certificate: Option<Vec<u8>>,
}

const IDENTITY: &str = "identity";
const GROUPS: &str = "groups";

/// A member of a group, as this device sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMember {
    /// The member's user and device.
    pub credential: DeviceCredential,
    /// Its Ed25519 key (the device id derives from it).
    pub public_key: [u8; 32],
    /// Its leaf index in the ratchet tree.
    pub leaf: u32,
}

/// One device's MLS client: identity, key packages, groups.
///
/// Methods that change a group and must be ordered by the relay return a
/// [`Commit`]; the group then waits for the relay's answer: call
/// [`Device::merge_pending_commit`] once the relay accepted it, or
/// [`Device::discard_pending_commit`] if it refused it as stale, then process
/// the commits missed and retry.
pub struct Device {
    identity: DeviceIdentity,
    provider: Provider,
    config: DeviceConfig,
    groups: HashMap<Vec<u8>, MlsGroup>,
    /// While set, operations stage their writes without committing them
    /// ([`Device::hold_commits`]).
    hold: bool,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("identity", &self.identity)
            .field("store", &self.provider.store)
            .finish_non_exhaustive()
    }
}

impl Device {
    /// Creates a new device of `user` in an empty store: generates its
    /// Ed25519 key and saves it.
    pub fn create(store: MlsStore, user: UserId, config: DeviceConfig) -> Result<Self, Error> {
        if store.read_record::<IdentityRecord>(IDENTITY)?.is_some() {
            return Err(Error::AlreadyInitialised);
        }
        let identity = DeviceIdentity::generate(user)?;
        Self::with_identity(store, identity, config)
    }

    /// Creates a device from an existing identity (for example one restored
    /// from a backup) in an empty store.
    pub fn with_identity(store: MlsStore, identity: DeviceIdentity, config: DeviceConfig) -> Result<Self, Error> {
        if store.read_record::<IdentityRecord>(IDENTITY)?.is_some() {
            return Err(Error::AlreadyInitialised);
        }
        let record = IdentityRecord {
            user: identity.user_id().0.clone(),
            secret: identity.secret(),
            certificate: identity.certificate().map(|c| c.to_vec()),
        };
        store.write_record(IDENTITY, &record)?;
        store.write_record(GROUPS, &Vec::<Vec<u8>>::new())?;
        if let Err(e) = store.commit() {
            store.rollback();
            return Err(e.into());
        }
        Ok(Self::assemble(store, identity, config))
    }

    /// Opens the device saved in `store`.
    pub fn open(store: MlsStore, config: DeviceConfig) -> Result<Self, Error> {
        let record: IdentityRecord = store.read_record(IDENTITY)?.ok_or(Error::NotInitialised)?;
        let mut identity = DeviceIdentity::from_secret(UserId(record.user), record.secret)?;
        if let Some(c) = record.certificate.and_then(|c| <[u8; 64]>::try_from(c).ok()) {
            identity = identity.with_certificate(c);
        }
        Ok(Self::assemble(store, identity, config))
    }

    fn assemble(store: MlsStore, identity: DeviceIdentity, config: DeviceConfig) -> Self {
        Device {
            identity,
            provider: Provider {
                crypto: RustCrypto::default(),
                store,
            },
            config,
            groups: HashMap::new(),
            hold: false,
        }
    }

    /// Durable transactions made through this device's store since it was
    /// opened (see [`MlsStore::durable_commits`]).
    pub fn durable_commits(&self) -> u64 {
        self.provider.store.durable_commits()
    }

    /// Closes the device and returns its store (everything in it is durable).
    pub fn into_store(self) -> MlsStore {
        self.provider.store
    }

    /// The device's identity (its secret key stays inside).
    pub fn identity(&self) -> &DeviceIdentity {
        &self.identity
    }

    /// Whether an identity authority is configured
    /// ([`DeviceConfig::identity_authority`]): every leaf this device took in
    /// carries a valid certificate.
    pub fn has_identity_authority(&self) -> bool {
        self.config.authority.is_some()
    }

    /// The device id.
    pub fn device_id(&self) -> DeviceId {
        self.identity.device_id()
    }

    /// From now until [`Device::commit_held`] or [`Device::discard_held`],
    /// successful operations leave their writes staged instead of committing
    /// them, so the caller can make its own record of the result (say, the
    /// decrypted message and the cursor past it) durable in the same
    /// transaction. A failing operation drops only its own writes, so many
    /// operations (a batch of delivered messages) can be held and made
    /// durable in one transaction.
    pub fn hold_commits(&mut self) {
        self.hold = true;
    }

    /// Makes the held writes and `side` durable in one transaction. On
    /// failure nothing is written and the in-memory groups are reloaded from
    /// what is durable.
    pub fn commit_held(&mut self, side: &crate::SideWrites) -> Result<(), Error> {
        self.hold = false;
        if let Err(e) = self.provider.store.commit_with(side) {
            self.discard_held();
            return Err(e.into());
        }
        Ok(())
    }

    /// Drops the held writes; the in-memory groups are reloaded from what is
    /// durable.
    pub fn discard_held(&mut self) {
        self.hold = false;
        self.provider.store.rollback();
        self.groups.clear();
    }

    /// Runs `op` as one atomic operation on the store. On error, staged writes
    /// are dropped and `group`'s in-memory state is evicted so it is reloaded
    /// from what is durable.
    fn atomically<T>(
        &mut self,
        group: Option<&GroupId>,
        op: impl FnOnce(&mut Self) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let result = op(self).and_then(|value| {
            if self.hold {
                self.provider.store.hold();
            } else {
                self.provider.store.commit()?;
            }
            Ok(value)
        });
        if result.is_err() {
            // Only this operation's writes: those of operations that
            // succeeded while commits are held stay staged.
            self.provider.store.rollback_operation();
            match group {
                Some(g) => {
                    self.groups.remove(&g.0);
                }
                None => self.groups.clear(),
            }
        }
        result
    }

    /// Generates key packages to upload to the relay: `one_time` ordinary ones
    /// and `last_resort` ones marked with the RFC 9420 `last_resort` extension
    /// (the relay hands those out only when no one-time package is left, and
    /// they survive being used). Each is an `MLSMessage` of wire format
    /// `mls_key_package`, the bytes the relay stores; their private keys stay
    /// in the store until a Welcome uses them.
    pub fn generate_key_packages(&mut self, one_time: usize, last_resort: usize) -> Result<Vec<Vec<u8>>, Error> {
        self.atomically(None, |d| {
            let mut out = Vec::with_capacity(one_time + last_resort);
            for i in 0..one_time + last_resort {
                let mut builder = KeyPackage::builder().leaf_node_capabilities(capabilities());
                if i >= one_time {
                    builder = builder.mark_as_last_resort();
                }
                let bundle = builder
                    .build(
                        d.config.ciphersuite,
                        &d.provider,
                        &d.identity,
                        d.identity.credential_with_key(),
                    )
                    .map_err(Error::mls)?;
                let msg = MlsMessageOut::from(bundle.key_package().clone());
                out.push(msg.to_bytes().map_err(Error::mls)?);
            }
            Ok(out)
        })
    }

    /// The groups this device is in.
    pub fn groups(&self) -> Result<Vec<GroupId>, Error> {
        let ids: Vec<Vec<u8>> = self.provider.store.read_record(GROUPS)?.unwrap_or_default();
        Ok(ids.into_iter().map(GroupId).collect())
    }

    fn remember_group(&self, group: &GroupId, present: bool) -> Result<(), Error> {
        let mut ids: Vec<Vec<u8>> = self.provider.store.read_record(GROUPS)?.unwrap_or_default();
        ids.retain(|g| *g != group.0);
        if present {
            ids.push(group.0.clone());
        }
        self.provider.store.write_record(GROUPS, &ids)?;
        Ok(())
    }

    /// The group's state, loaded from the store on first use.
    fn group(&mut self, id: &GroupId) -> Result<&mut MlsGroup, Error> {
        use std::collections::hash_map::Entry;
        match self.groups.entry(id.0.clone()) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(v) => {
                let group = MlsGroup::load(&self.provider.store, &MlsGroupId::from_slice(&id.0))?
                    .ok_or_else(|| Error::UnknownGroup(id.clone()))?;
                Ok(v.insert(group))
            }
        }
    }

    /// The group's state with the provider and signer beside it (split
    /// borrows of `self`).
    fn group_parts(&mut self, id: &GroupId) -> Result<(&mut MlsGroup, &Provider, &DeviceIdentity), Error> {
        self.group(id)?;
        let Device {
            groups,
            provider,
            identity,
            ..
        } = self;
        let g = groups.get_mut(&id.0).ok_or_else(|| Error::UnknownGroup(id.clone()))?;
        Ok((g, provider, identity))
    }

    /// Like [`Self::group_parts`], for operations that change or send in the
    /// group: refused while a commit awaits the relay's answer.
    fn idle_group_parts(&mut self, id: &GroupId) -> Result<(&mut MlsGroup, &Provider, &DeviceIdentity), Error> {
        let parts = self.group_parts(id)?;
        if parts.0.pending_commit().is_some() {
            return Err(Error::PendingCommit);
        }
        Ok(parts)
    }

    /// The group's current epoch.
    pub fn epoch(&mut self, group: &GroupId) -> Result<u64, Error> {
        Ok(self.group(group)?.epoch().as_u64())
    }

    /// Whether the group has a commit waiting for the relay's answer.
    pub fn has_pending_commit(&mut self, group: &GroupId) -> Result<bool, Error> {
        Ok(self.group(group)?.pending_commit().is_some())
    }

    /// The group's members. Every credential in a group was checked when its
    /// member joined, so this only decodes them.
    pub fn members(&mut self, group: &GroupId) -> Result<Vec<GroupMember>, Error> {
        let g = self.group(group)?;
        g.members()
            .map(|m| {
                let public_key: [u8; 32] = m
                    .signature_key
                    .as_slice()
                    .try_into()
                    .map_err(|_| crate::identity::CredentialError::BadSignatureKey)?;
                Ok(GroupMember {
                    credential: DeviceCredential::from_leaf(&m.credential, &public_key)?,
                    public_key,
                    leaf: m.index.u32(),
                })
            })
            .collect()
    }

    /// The fingerprint of `user`'s devices as this group knows them: what the
    /// app shows for comparison (see [`crate::safety_number`]).
    pub fn fingerprint(&mut self, group: &GroupId, user: &UserId) -> Result<Fingerprint, Error> {
        let keys: Vec<[u8; 32]> = self
            .members(group)?
            .into_iter()
            .filter(|m| m.credential.user == *user)
            .map(|m| m.public_key)
            .collect();
        Ok(Fingerprint::of_user(user, &keys))
    }
}

/// The capabilities of every leaf this device creates: the defaults plus the
/// `last_resort` extension, which RFC 9420 requires a leaf to list before
/// its key package may carry it.
fn capabilities() -> Capabilities {
    Capabilities::new(None, None, Some(&[ExtensionType::LastResort]), None, None)
}

/// Decodes a credential already checked against its key when its leaf joined.
fn decode_credential(credential: &Credential) -> Result<DeviceCredential, Error> {
    let basic =
        BasicCredential::try_from(credential.clone()).map_err(|_| crate::identity::CredentialError::NotBasic)?;
    Ok(DeviceCredential::decode(basic.identity())?)
}
