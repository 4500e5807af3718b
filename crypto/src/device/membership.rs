//! Creating, joining and changing groups: every change is a commit the relay orders.

use hush_protocol::{DeviceId, GroupId, roster};
use openmls::group::GroupId as MlsGroupId;
use openmls::prelude::{
    KeyPackage, KeyPackageIn, LeafNodeIndex, LeafNodeParameters, MlsGroup, MlsGroupJoinConfig, MlsMessageBodyIn,
    MlsMessageIn, MlsMessageOut, PURE_CIPHERTEXT_WIRE_FORMAT_POLICY, ProtocolVersion, RatchetTreeIn,
    SenderRatchetConfiguration, StagedCommit, StagedWelcome,
    tls_codec::{Deserialize as _, Serialize as _},
};
use openmls_traits::OpenMlsProvider as _;

use super::{Device, capabilities, decode_credential};
use crate::error::Error;
use crate::identity::{DeviceCredential, check_certificate, device_ids};
use crate::inspect::InspectError;

/// A commit to send to the relay, with what the relay needs beside it.
///
/// The group now has this commit pending: nothing else can be sent in it until
/// the relay answers and [`Device::merge_pending_commit`] or
/// [`Device::discard_pending_commit`] is called.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Commit {
    /// The group.
    pub group_id: GroupId,
    /// The epoch the commit was made in: the relay accepts it only while the
    /// group is at this epoch.
    pub epoch: u64,
    /// The commit, an MLS `PrivateMessage`.
    pub message: Vec<u8>,
    /// The Welcome for the devices added, if any (one Welcome for all of them).
    pub welcome: Option<Vec<u8>>,
    /// The ratchet tree of the new epoch, when the configuration sends it
    /// beside the Welcome instead of inside it.
    pub ratchet_tree: Option<Vec<u8>>,
    /// Devices added (the relay's roster change).
    pub added: Vec<DeviceCredential>,
    /// Devices removed (the relay's roster change).
    pub removed: Vec<DeviceCredential>,
}

/// Members added and removed by a commit, read before it is merged.
pub(crate) fn roster_change(
    group: &MlsGroup,
    staged: &StagedCommit,
    authority: Option<&[u8; 32]>,
) -> Result<(Vec<DeviceCredential>, Vec<DeviceCredential>), Error> {
    let mut added = Vec::new();
    for add in staged.add_proposals() {
        let leaf = add.add_proposal().key_package().leaf_node();
        added.push(check_certificate(
            leaf.credential(),
            leaf.signature_key().as_slice(),
            authority,
        )?);
    }
    let mut removed = Vec::new();
    for remove in staged.remove_proposals() {
        let index = remove.remove_proposal().removed();
        let credential = group
            .member(index)
            .ok_or_else(|| Error::Mls("removal of an empty leaf".into()))?;
        removed.push(decode_credential(credential)?);
    }
    Ok((added, removed))
}

/// Checks that every leaf a commit introduces or changes carries a valid hush
/// credential, and that a member updating its leaf keeps its (user, device).
pub(crate) fn check_commit_credentials(
    group: &MlsGroup,
    staged: &StagedCommit,
    committer: Option<LeafNodeIndex>,
    authority: Option<&[u8; 32]>,
) -> Result<(), Error> {
    roster_change(group, staged, authority)?;
    let same_as_before = |index: LeafNodeIndex, new: DeviceCredential| -> Result<(), Error> {
        let old = group
            .member(index)
            .ok_or_else(|| Error::Mls("update of an empty leaf".into()))?;
        if decode_credential(old)? != new {
            return Err(Error::Mls("a member's update changed its identity".into()));
        }
        Ok(())
    };
    for update in staged.update_proposals() {
        let leaf = update.update_proposal().leaf_node();
        let new = check_certificate(leaf.credential(), leaf.signature_key().as_slice(), authority)?;
        if let openmls::prelude::Sender::Member(index) = update.sender() {
            same_as_before(*index, new)?;
        }
    }
    if let (Some(leaf), Some(index)) = (staged.update_path_leaf_node(), committer) {
        let new = check_certificate(leaf.credential(), leaf.signature_key().as_slice(), authority)?;
        same_as_before(index, new)?;
    }
    Ok(())
}

fn tree_beside_record(group: &GroupId) -> String {
    format!("tree-beside/{}", group.to_hex())
}

impl Device {
    fn join_config(&self) -> MlsGroupJoinConfig {
        MlsGroupJoinConfig::builder()
            .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
            .max_past_epochs(self.config.past_epochs)
            .sender_ratchet_configuration(SenderRatchetConfiguration::new(
                self.config.out_of_order_tolerance,
                self.config.maximum_forward_distance,
            ))
            .use_ratchet_tree_extension(self.config.ratchet_tree_in_welcome)
            .build()
    }

    /// Creates a group with this device as its only member, at epoch 0.
    pub fn create_group(&mut self, group_id: &GroupId) -> Result<(), Error> {
        if !group_id.is_valid() {
            return Err(InspectError::InvalidGroupId { len: group_id.0.len() }.into());
        }
        self.atomically(Some(group_id), |d| {
            if MlsGroup::load(&d.provider.store, &MlsGroupId::from_slice(&group_id.0))?.is_some() {
                return Err(Error::GroupExists(group_id.clone()));
            }
            let group = MlsGroup::builder()
                .with_group_id(MlsGroupId::from_slice(&group_id.0))
                .ciphersuite(d.config.ciphersuite)
                .with_wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
                .max_past_epochs(d.config.past_epochs)
                .sender_ratchet_configuration(SenderRatchetConfiguration::new(
                    d.config.out_of_order_tolerance,
                    d.config.maximum_forward_distance,
                ))
                .use_ratchet_tree_extension(d.config.ratchet_tree_in_welcome)
                .with_capabilities(capabilities())
                .build(&d.provider, &d.identity, d.identity.credential_with_key())
                .map_err(Error::mls)?;
            d.remember_group(group_id, true)?;
            d.provider
                .store
                .write_record(&tree_beside_record(group_id), &!d.config.ratchet_tree_in_welcome)?;
            d.groups.insert(group_id.0.clone(), group);
            Ok(())
        })
    }

    /// Adds devices to the group from their key packages (as claimed from the
    /// relay). Each key package's signature and hush credential are checked.
    pub fn add_members(&mut self, group: &GroupId, key_packages: &[&[u8]]) -> Result<Commit, Error> {
        self.atomically(Some(group), |d| {
            let mut packages = Vec::with_capacity(key_packages.len());
            let mut guess = Vec::with_capacity(key_packages.len());
            for bytes in key_packages {
                let (kp, credential) = d.parse_key_package(bytes)?;
                packages.push(kp);
                guess.push(credential.device);
            }
            d.bound_commit(group, (guess, Vec::new()), |g, provider, identity| {
                let (commit, welcome, _) = g.add_members(provider, identity, &packages).map_err(Error::mls)?;
                Ok((commit, Some(welcome)))
            })
        })
    }

    /// Checks a key package as [`Device::add_members`] would (its signature,
    /// cipher suite and hush credential, and the certificate when an
    /// identity authority is configured) without changing anything: a
    /// caller can leave out a bad one instead of failing the whole add.
    pub fn check_key_package(&self, bytes: &[u8]) -> Result<DeviceCredential, Error> {
        self.parse_key_package(bytes).map(|(_, c)| c)
    }

    fn parse_key_package(&self, bytes: &[u8]) -> Result<(KeyPackage, DeviceCredential), Error> {
        let msg = MlsMessageIn::tls_deserialize_exact(bytes).map_err(Error::mls)?;
        let MlsMessageBodyIn::KeyPackage(kp) = msg.extract() else {
            return Err(Error::UnexpectedMessage {
                expected: "key package",
            });
        };
        let kp: KeyPackage =
            KeyPackageIn::validate(kp, self.provider.crypto(), ProtocolVersion::Mls10).map_err(Error::mls)?;
        if kp.ciphersuite() != self.config.ciphersuite {
            return Err(Error::Mls(format!("key package cipher suite {:?}", kp.ciphersuite())));
        }
        let leaf = kp.leaf_node();
        let credential = check_certificate(
            leaf.credential(),
            leaf.signature_key().as_slice(),
            self.config.authority.as_ref(),
        )?;
        Ok((kp, credential))
    }

    /// Removes devices from the group.
    pub fn remove_members(&mut self, group: &GroupId, devices: &[DeviceId]) -> Result<Commit, Error> {
        self.atomically(Some(group), |d| {
            let members = d.members(group)?;
            let mut leaves = Vec::with_capacity(devices.len());
            for device in devices {
                let member = members
                    .iter()
                    .find(|m| m.credential.device == *device)
                    .ok_or(Error::NotAMember(*device))?;
                leaves.push(LeafNodeIndex::new(member.leaf));
            }
            d.bound_commit(group, (Vec::new(), devices.to_vec()), |g, provider, identity| {
                let (commit, welcome, _) = g.remove_members(provider, identity, &leaves).map_err(Error::mls)?;
                Ok((commit, welcome))
            })
        })
    }

    /// Replaces this device's leaf key material (post-compromise security) and
    /// commits any proposals received, such as another member's request to
    /// leave.
    pub fn self_update(&mut self, group: &GroupId) -> Result<Commit, Error> {
        self.atomically(Some(group), |d| {
            d.bound_commit(group, (Vec::new(), Vec::new()), |g, provider, identity| {
                let bundle = g
                    .self_update(provider, identity, LeafNodeParameters::default())
                    .map_err(Error::mls)?;
                let (commit, welcome, _) = bundle.into_messages();
                Ok((commit, welcome))
            })
        })
    }

    /// Asks to leave the group: returns a Remove proposal for this device's
    /// own leaf, to send like any group message. MLS does not let a member
    /// commit its own removal; the next commit of another member (its
    /// [`Device::self_update`] includes received proposals) removes it, and
    /// processing that commit deletes the group here.
    pub fn leave(&mut self, group: &GroupId) -> Result<Vec<u8>, Error> {
        self.atomically(Some(group), |d| {
            let (g, provider, identity) = d.idle_group_parts(group)?;
            let proposal = g.leave_group(provider, identity).map_err(Error::mls)?;
            proposal.to_bytes().map_err(Error::mls)
        })
    }

    /// Makes a commit with `make`, carrying the roster binding of what it
    /// adds and removes as its authenticated data (`hush_protocol::roster`).
    /// `guess` is what the caller asked for; proposals received earlier (a
    /// member's request to leave) may join the commit, and then it is made
    /// again with the binding of what it really changes.
    fn bound_commit(
        &mut self,
        group: &GroupId,
        guess: (Vec<DeviceId>, Vec<DeviceId>),
        make: impl Fn(
            &mut MlsGroup,
            &super::Provider,
            &crate::identity::DeviceIdentity,
        ) -> Result<(MlsMessageOut, Option<MlsMessageOut>), Error>,
    ) -> Result<Commit, Error> {
        let mut aad = roster::binding(&guess.0, &guess.1);
        for _ in 0..2 {
            let (g, provider, identity) = self.idle_group_parts(group)?;
            let epoch = g.epoch().as_u64();
            g.set_aad(aad.clone());
            let made = make(g, provider, identity);
            g.set_aad(Vec::new());
            let (commit, welcome) = made?;
            let out = self.commit_output(group, epoch, commit, welcome)?;
            let actual = roster::binding(&device_ids(&out.added), &device_ids(&out.removed));
            if actual == aad {
                return Ok(out);
            }
            let (g, provider, _) = self.group_parts(group)?;
            g.clear_pending_commit(&provider.store)?;
            aad = actual;
        }
        Err(Error::RosterBinding("the commit changed between two attempts".into()))
    }

    fn commit_output(
        &mut self,
        group: &GroupId,
        epoch: u64,
        commit: MlsMessageOut,
        welcome: Option<MlsMessageOut>,
    ) -> Result<Commit, Error> {
        let with_tree_inside = !self.tree_beside(group)?;
        let Device { provider, groups, .. } = self;
        let g = groups.get(&group.0).ok_or_else(|| Error::UnknownGroup(group.clone()))?;
        let staged = g.pending_commit().ok_or(Error::NoPendingCommit)?;
        let (added, removed) = roster_change(g, staged, None)?;
        let ratchet_tree = match (&welcome, with_tree_inside) {
            (Some(_), false) => {
                let tree = staged
                    .export_ratchet_tree(provider.crypto(), g.export_ratchet_tree())
                    .map_err(Error::mls)?
                    .ok_or_else(|| Error::Mls("no ratchet tree for the staged commit".into()))?;
                Some(tree.tls_serialize_detached().map_err(Error::mls)?)
            }
            _ => None,
        };
        Ok(Commit {
            group_id: group.clone(),
            epoch,
            message: commit.to_bytes().map_err(Error::mls)?,
            welcome: welcome.map(|w| w.to_bytes()).transpose().map_err(Error::mls)?,
            ratchet_tree,
            added,
            removed,
        })
    }

    /// The group's ratchet tree (RFC 9420 `ratchet_tree` extension content),
    /// TLS-encoded: what a new member needs beside a Welcome that does not
    /// carry it.
    pub fn export_ratchet_tree(&mut self, group: &GroupId) -> Result<Vec<u8>, Error> {
        let g = self.group(group)?;
        g.export_ratchet_tree().tls_serialize_detached().map_err(Error::mls)
    }

    /// The relay accepted the pending commit: move the group to the next epoch.
    pub fn merge_pending_commit(&mut self, group: &GroupId) -> Result<(), Error> {
        self.atomically(Some(group), |d| {
            let (g, provider, _) = d.group_parts(group)?;
            if g.pending_commit().is_none() {
                return Err(Error::NoPendingCommit);
            }
            g.merge_pending_commit(provider).map_err(Error::mls)
        })
    }

    /// The relay refused the pending commit (another commit won the epoch):
    /// forget it, so the missed commits can be processed and the change retried.
    pub fn discard_pending_commit(&mut self, group: &GroupId) -> Result<(), Error> {
        self.atomically(Some(group), |d| {
            let (g, provider, _) = d.group_parts(group)?;
            if g.pending_commit().is_none() {
                return Err(Error::NoPendingCommit);
            }
            g.clear_pending_commit(&provider.store)?;
            Ok(())
        })
    }

    /// Joins a group from a Welcome (and the ratchet tree, when it was sent
    /// beside the Welcome). Consumes the key package it was encrypted to,
    /// unless that one is last-resort. Every member's credential is checked.
    pub fn join(&mut self, welcome: &[u8], ratchet_tree: Option<&[u8]>) -> Result<GroupId, Error> {
        self.atomically(None, |d| {
            let msg = MlsMessageIn::tls_deserialize_exact(welcome).map_err(Error::mls)?;
            let MlsMessageBodyIn::Welcome(welcome) = msg.extract() else {
                return Err(Error::UnexpectedMessage { expected: "welcome" });
            };
            let tree = ratchet_tree
                .map(RatchetTreeIn::tls_deserialize_exact)
                .transpose()
                .map_err(Error::mls)?;
            let config = d.join_config();
            let group = StagedWelcome::new_from_welcome(&d.provider, &config, welcome, tree)
                .map_err(Error::mls)?
                .into_group(&d.provider)
                .map_err(Error::mls)?;
            for member in group.members() {
                check_certificate(&member.credential, &member.signature_key, d.config.authority.as_ref())?;
            }
            let id = GroupId(group.group_id().as_slice().to_vec());
            if !id.is_valid() {
                return Err(InspectError::InvalidGroupId { len: id.0.len() }.into());
            }
            d.remember_group(&id, true)?;
            d.provider
                .store
                .write_record(&tree_beside_record(&id), &!d.config.ratchet_tree_in_welcome)?;
            d.groups.insert(id.0.clone(), group);
            Ok(id)
        })
    }

    /// Deletes this device's state for a group (after being removed, or to
    /// forget a group it left).
    pub fn forget_group(&mut self, group: &GroupId) -> Result<(), Error> {
        self.atomically(Some(group), |d| {
            let store = &d.provider.store;
            if let Some(mut g) = MlsGroup::load(store, &MlsGroupId::from_slice(&group.0))? {
                g.delete(store)?;
            }
            d.groups.remove(&group.0);
            d.forget_records(group)
        })
    }

    /// Drops this crate's own records about a group.
    pub(super) fn forget_records(&self, group: &GroupId) -> Result<(), Error> {
        self.provider.store.delete_record(&tree_beside_record(group))?;
        self.remember_group(group, false)
    }

    /// Whether the group was set up to send the ratchet tree beside Welcomes
    /// (the setting is fixed when the group is created or joined, because it
    /// is part of the group's stored configuration).
    fn tree_beside(&self, group: &GroupId) -> Result<bool, Error> {
        Ok(self
            .provider
            .store
            .read_record(&tree_beside_record(group))?
            .unwrap_or(!self.config.ratchet_tree_in_welcome))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use hush_protocol::UserId;
    use openmls::prelude::LeafNodeIndex;

    use super::*;
    use crate::{DeviceConfig, MlsStore, Processed};

    fn device(dir: &tempfile::TempDir, name: &str, user: &str) -> Device {
        let store = MlsStore::open(dir.path().join(format!("{name}.redb"))).unwrap();
        Device::create(store, UserId::from(user), DeviceConfig::default()).unwrap()
    }

    /// A commit that removes carol in MLS while its roster binding (what
    /// the relay applies) says it changes nothing is not merged by bob; the
    /// same removal, honestly bound, is.
    #[test]
    fn a_commit_whose_roster_binding_hides_a_removal_is_not_merged() {
        let dir = tempfile::tempdir().unwrap();
        let (mut alice, mut bob, mut carol) = (
            device(&dir, "a", "alice"),
            device(&dir, "b", "bob"),
            device(&dir, "c", "carol"),
        );
        let g = GroupId(b"bound".to_vec());
        alice.create_group(&g).unwrap();
        let kb = bob.generate_key_packages(1, 0).unwrap().remove(0);
        let kc = carol.generate_key_packages(1, 0).unwrap().remove(0);
        let add = alice.add_members(&g, &[&kb, &kc]).unwrap();
        let (add_ids, _) =
            roster::parse_binding(&crate::inspect::inspect(&add.message).unwrap().authenticated_data).unwrap();
        assert_eq!(add_ids, vec![bob.device_id(), carol.device_id()]);
        alice.merge_pending_commit(&g).unwrap();
        for d in [&mut bob, &mut carol] {
            d.join(add.welcome.as_deref().unwrap(), add.ratchet_tree.as_deref())
                .unwrap();
        }
        let carol_leaf = alice
            .members(&g)
            .unwrap()
            .into_iter()
            .find(|m| m.credential.device == carol.device_id())
            .unwrap()
            .leaf;

        let forged = {
            let (grp, provider, identity) = alice.idle_group_parts(&g).unwrap();
            grp.set_aad(roster::binding(&[], &[]));
            let (msg, _, _) = grp
                .remove_members(provider, identity, &[LeafNodeIndex::new(carol_leaf)])
                .unwrap();
            msg.to_bytes().unwrap()
        };
        let before = bob.epoch(&g).unwrap();
        assert!(matches!(bob.process(&forged), Err(Error::RosterBinding(_))));
        assert_eq!(bob.epoch(&g).unwrap(), before);
        assert_eq!(bob.members(&g).unwrap().len(), 3);

        alice.discard_pending_commit(&g).unwrap();
        let honest = alice.remove_members(&g, &[carol.device_id()]).unwrap();
        match bob.process(&honest.message).unwrap() {
            Processed::Commit { removed, .. } => assert_eq!(removed[0].device, carol.device_id()),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(bob.epoch(&g).unwrap(), before + 1);
    }
}
