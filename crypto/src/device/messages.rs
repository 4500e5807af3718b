//! Sending application messages and processing everything a group receives.

use hush_protocol::GroupId;
use openmls::prelude::{MlsMessageIn, ProcessedMessageContent, Sender, tls_codec::Deserialize as _};

use super::membership::{check_commit_credentials, roster_change};
use super::{Device, decode_credential};
use crate::content::Payload;
use crate::error::Error;
use crate::identity::{DeviceCredential, device_ids};
use crate::inspect::{self, ContentType};

/// What processing one incoming group message did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Processed {
    /// An application message, decrypted.
    Application {
        /// The group.
        group_id: GroupId,
        /// Who sent it.
        sender: DeviceCredential,
        /// The epoch it was sent in (may be a recent past epoch).
        epoch: u64,
        /// The plaintext (usually a [`Payload`]; decode with [`Payload::decode`]).
        plaintext: Vec<u8>,
    },
    /// A proposal, stored until a commit covers it. A member's request to
    /// leave arrives this way; [`Device::self_update`] commits it.
    Proposal {
        /// The group.
        group_id: GroupId,
        /// Who proposed.
        sender: DeviceCredential,
        /// Members the proposal would remove.
        removes: Vec<DeviceCredential>,
    },
    /// Another member's commit, merged: the group is at `epoch` now.
    Commit {
        /// The group.
        group_id: GroupId,
        /// Who committed.
        sender: DeviceCredential,
        /// The new epoch.
        epoch: u64,
        /// Devices that joined.
        added: Vec<DeviceCredential>,
        /// Devices that left.
        removed: Vec<DeviceCredential>,
    },
    /// This device's own pending commit, seen in the group's log: the relay
    /// accepted it (for example before a crash cut the acknowledgement), so it
    /// was merged.
    OwnCommitMerged {
        /// The group.
        group_id: GroupId,
        /// The new epoch.
        epoch: u64,
    },
    /// A commit removed this device; its state for the group is deleted.
    Removed {
        /// The group.
        group_id: GroupId,
        /// Who committed the removal.
        by: DeviceCredential,
    },
}

impl Device {
    /// Encrypts application bytes for the group, as an MLS `PrivateMessage`.
    pub fn encrypt(&mut self, group: &GroupId, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        self.atomically(Some(group), |d| {
            let (g, provider, identity) = d.idle_group_parts(group)?;
            let msg = g.create_message(provider, identity, plaintext).map_err(Error::mls)?;
            msg.to_bytes().map_err(Error::mls)
        })
    }

    /// Encrypts a [`Payload`].
    pub fn send(&mut self, group: &GroupId, payload: &Payload) -> Result<Vec<u8>, Error> {
        self.encrypt(group, &payload.encode())
    }

    /// Processes one message from a group's log: decrypts application
    /// messages, stores proposals, and merges other members' commits (after
    /// checking the credentials they bring in).
    ///
    /// A commit for an epoch the group has left gives [`Error::StaleEpoch`];
    /// a message from an epoch not reached yet gives [`Error::FutureEpoch`]
    /// (commits were missed: process them first). An application message from
    /// one of the last [`DeviceConfig::past_epochs`](crate::DeviceConfig::past_epochs)
    /// epochs still decrypts. Any error leaves the group as it was.
    pub fn process(&mut self, message: &[u8]) -> Result<Processed, Error> {
        let header = inspect::inspect(message)?;
        let group = header.group_id.clone();
        let authority = self.config.authority;
        self.atomically(Some(&group), |d| {
            let (g, provider, _) = d.group_parts(&group)?;
            let current = g.epoch().as_u64();
            if header.epoch > current {
                return Err(Error::FutureEpoch {
                    message: header.epoch,
                    group: current,
                });
            }
            if header.epoch < current && header.content_type != ContentType::Application {
                return Err(Error::StaleEpoch {
                    message: header.epoch,
                    group: current,
                });
            }
            let msg = MlsMessageIn::tls_deserialize_exact(message).map_err(Error::mls)?;
            let protocol = msg.try_into_protocol_message().map_err(Error::mls)?;
            let processed = g.process_message(provider, protocol).map_err(Error::mls)?;
            let epoch = processed.epoch().as_u64();
            let committer = match processed.sender() {
                Sender::Member(index) => Some(*index),
                _ => None,
            };
            let sender = decode_credential(processed.credential());
            let aad = processed.aad().to_vec();
            match processed.into_content() {
                ProcessedMessageContent::ApplicationMessage(app) => Ok(Processed::Application {
                    group_id: group.clone(),
                    sender: sender?,
                    epoch,
                    plaintext: app.into_bytes(),
                }),
                ProcessedMessageContent::ProposalMessage(proposal) => {
                    let sender = sender?;
                    let mut removes = Vec::new();
                    if let openmls::prelude::Proposal::Remove(remove) = proposal.proposal() {
                        let credential = g
                            .member(remove.removed())
                            .ok_or_else(|| Error::Mls("removal of an empty leaf".into()))?;
                        removes.push(decode_credential(credential)?);
                    }
                    g.store_pending_proposal(&provider.store, *proposal)?;
                    Ok(Processed::Proposal {
                        group_id: group.clone(),
                        sender,
                        removes,
                    })
                }
                ProcessedMessageContent::StagedCommitMessage(staged) => {
                    let sender = sender?;
                    check_commit_credentials(g, &staged, committer, authority.as_ref())?;
                    let (added, removed) = roster_change(g, &staged, None)?;
                    check_binding(&aad, &added, &removed)?;
                    let self_removed = staged.self_removed();
                    g.merge_staged_commit(provider, *staged).map_err(Error::mls)?;
                    if self_removed {
                        g.delete(&provider.store)?;
                        d.groups.remove(&group.0);
                        d.forget_records(&group)?;
                        return Ok(Processed::Removed {
                            group_id: group.clone(),
                            by: sender,
                        });
                    }
                    Ok(Processed::Commit {
                        group_id: group.clone(),
                        sender,
                        epoch: g.epoch().as_u64(),
                        added,
                        removed,
                    })
                }
                ProcessedMessageContent::OwnPrivateMessage | ProcessedMessageContent::OwnPendingCommit => {
                    // Our own commit in the log means the relay accepted it.
                    if header.content_type == ContentType::Commit
                        && header.epoch == current
                        && g.pending_commit().is_some()
                    {
                        g.merge_pending_commit(provider).map_err(Error::mls)?;
                        return Ok(Processed::OwnCommitMerged {
                            group_id: group.clone(),
                            epoch: g.epoch().as_u64(),
                        });
                    }
                    Err(Error::OwnMessage)
                }
                other => Err(Error::Mls(format!("unsupported message: {other:?}"))),
            }
        })
    }
}

/// A commit's roster binding must name exactly the devices MLS adds and
/// removes: the relay applies the binding's (the envelope's) roster change.
fn check_binding(aad: &[u8], added: &[DeviceCredential], removed: &[DeviceCredential]) -> Result<(), Error> {
    let Some((add, remove)) = hush_protocol::roster::parse_binding(aad) else {
        return Err(Error::RosterBinding("no roster binding".into()));
    };
    if !hush_protocol::roster::same_devices(&add, &device_ids(added))
        || !hush_protocol::roster::same_devices(&remove, &device_ids(removed))
    {
        return Err(Error::RosterBinding(format!(
            "it claims {} added and {} removed, MLS adds {} and removes {}",
            add.len(),
            remove.len(),
            added.len(),
            removed.len()
        )));
    }
    Ok(())
}
