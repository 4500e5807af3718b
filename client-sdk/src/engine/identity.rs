//! Whose leaves these are. A member's user is what its MLS credential
//! claims; before a group's entries are processed, every leaf's claim is
//! checked against the relay's device list for that user (`ListDevices`,
//! kept per user in the SDK's store and asked again when a device it does
//! not list appears). A leaf the list does not hold is an impostor: the group
//! is marked, never labelled after that user, never taken as this user's own
//! devices, and its sync records are refused. Labels, the own-devices group,
//! device change events and safety numbers come only from checked leaves.
//!
//! The relay's list is what is trusted here; safety numbers, compared out of
//! band, are what removes that trust ([`Engine::mark_verified`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use hush_crypto::DeviceCredential;
use hush_crypto::safety_number::{Fingerprint, SafetyNumber};
use hush_protocol::frame::{Reply, Request};
use hush_protocol::{DeviceId, GroupId, UserId, WireError};

use super::{Engine, GroupMeta, Purpose};
use crate::error::Error;
use crate::event::Event;
use crate::store::key;

/// Each user's checked devices (id → Ed25519 key) over all groups.
type Checked = BTreeMap<UserId, BTreeMap<DeviceId, [u8; 32]>>;

impl Engine {
    fn meta(&self, group: &GroupId) -> Result<GroupMeta, Error> {
        Ok(self
            .local
            .get_staged(&self.staged.batch, &key::group(group))?
            .unwrap_or_default())
    }

    /// Members of `group` (other than this device) whose claimed identity is
    /// neither confirmed nor rejected yet.
    fn unchecked(&mut self, group: &GroupId) -> Result<Vec<(UserId, DeviceId)>, Error> {
        let meta = self.meta(group)?;
        let mut lists: HashMap<UserId, Vec<String>> = HashMap::new();
        let mut out = Vec::new();
        for m in self.device.members(group)? {
            let c = m.credential;
            if c.device == self.device_id {
                continue;
            }
            let hex = c.device.to_hex();
            if meta.impostors.iter().any(|(u, d)| *u == c.user.0 && *d == hex) {
                continue;
            }
            if !lists.contains_key(&c.user) {
                let listed: Vec<String> = self
                    .local
                    .get_staged(&self.staged.batch, &key::listed_devices(&c.user.0))?
                    .unwrap_or_default();
                lists.insert(c.user.clone(), listed);
            }
            if !lists[&c.user].contains(&hex) {
                out.push((c.user, c.device));
            }
        }
        Ok(out)
    }

    /// Holds `group`'s entries until every member's identity is checked,
    /// asking the relay for the device lists that are missing. Returns
    /// whether the group may go on. `changed`: its members just changed (a
    /// join or a commit), so labels and device events are brought up to date
    /// even if nothing had to be asked.
    pub(super) fn check_identities(&mut self, now: Instant, group: &GroupId, changed: bool) -> Result<bool, Error> {
        let pending = self.unchecked(group)?;
        if pending.is_empty() {
            let was = std::mem::replace(&mut self.flow(group)?.verifying, false);
            if was || changed || self.meta(group)?.label_pending {
                self.identities_settled(group)?;
            }
            return Ok(true);
        }
        self.flow(group)?.verifying = true;
        if self.conn.is_some() {
            let users: BTreeSet<UserId> = pending.into_iter().map(|(u, _)| u).collect();
            for user in users {
                if self.listing.insert(user.clone()) {
                    self.request(now, Request::ListDevices { user: user.clone() }, Purpose::Devices(user));
                }
            }
        }
        Ok(false)
    }

    /// The relay's device list for `user`: leaves claiming that user with
    /// another device are impostors; waiting groups go on once settled.
    pub(super) fn on_devices(
        &mut self,
        now: Instant,
        user: UserId,
        result: Result<Reply, WireError>,
    ) -> Result<(), Error> {
        self.listing.remove(&user);
        let listed: Vec<String> = match result {
            Ok(Reply::Devices(d)) => d.iter().map(|i| i.device.to_hex()).collect(),
            other => return Err(Error::Connection(format!("ListDevices: unexpected answer {other:?}"))),
        };
        self.staged.batch.put(key::listed_devices(&user.0), &listed)?;
        let mut waiting: Vec<GroupId> = self
            .flows
            .iter()
            .filter(|(_, f)| f.verifying)
            .map(|(g, _)| g.clone())
            .collect();
        waiting.sort();
        for group in waiting {
            if !self.joined(&group)? {
                continue;
            }
            let mut meta = self.meta(&group)?;
            let mut rejected = false;
            for m in self.device.members(&group)? {
                let c = m.credential;
                let hex = c.device.to_hex();
                if c.user == user
                    && c.device != self.device_id
                    && !listed.contains(&hex)
                    && !meta.impostors.iter().any(|(u, d)| *u == c.user.0 && *d == hex)
                {
                    tracing::warn!(group = %group, user = %c.user.0, device = %c.device, "a leaf claims a user whose devices do not include it");
                    meta.impostors.push((c.user.0.clone(), hex));
                    self.emit(Event::IdentityRejected {
                        group: group.clone(),
                        user: c.user,
                        device: c.device,
                    });
                    rejected = true;
                }
            }
            if rejected {
                meta.own_devices = false;
                meta.direct_with = None;
                if !meta.label_pending && !meta.name.starts_with(UNVERIFIED) {
                    meta.name = format!("{UNVERIFIED}{}", meta.name);
                }
                self.staged.batch.put(key::group(&group), &meta)?;
            }
            if self.check_identities(now, &group, false)? {
                self.advance(now, &group)?;
            }
        }
        Ok(())
    }

    /// Every member of `group` is checked: name it if it was joined from a
    /// Welcome, and report partners' device changes.
    fn identities_settled(&mut self, group: &GroupId) -> Result<(), Error> {
        let mut meta = self.meta(group)?;
        if meta.label_pending {
            meta.label_pending = false;
            let mut others: Vec<String> = self
                .device
                .members(group)?
                .into_iter()
                .filter(|m| {
                    let hex = m.credential.device.to_hex();
                    !meta
                        .impostors
                        .iter()
                        .any(|(u, d)| *u == m.credential.user.0 && *d == hex)
                })
                .map(|m| m.credential.user.0)
                .filter(|u| *u != self.user.0)
                .collect();
            others.sort();
            others.dedup();
            if !meta.impostors.is_empty() {
                let mut claimed: Vec<&str> = meta.impostors.iter().map(|(u, _)| u.as_str()).collect();
                claimed.sort_unstable();
                claimed.dedup();
                others.extend(claimed.iter().map(|u| format!("{u}?")));
                meta.name = format!("{UNVERIFIED}{}", others.join(","));
            } else {
                // A group of one other user is a direct conversation with
                // them; one of this user alone is its own devices.
                match others.as_slice() {
                    [] => {
                        meta.own_devices = true;
                        meta.name = "own devices".into();
                    }
                    [one] => {
                        meta.direct_with = Some(one.clone());
                        meta.name = one.clone();
                    }
                    many => meta.name = many.join(","),
                }
            }
            self.staged.batch.put(key::group(group), &meta)?;
            // Joined from a Welcome: reported once it is named.
            self.emit(Event::Joined { group: group.clone() });
        }
        self.track_devices()
    }

    /// The leaves this device's own commit brought in: their key packages
    /// were claimed for these users from the relay, and each leaf was checked
    /// to be the device and user claimed for (`client::claim`).
    pub(super) fn note_listed(&mut self, added: &[DeviceCredential]) -> Result<(), Error> {
        for c in added {
            let k = key::listed_devices(&c.user.0);
            let mut listed: Vec<String> = self.local.get_staged(&self.staged.batch, &k)?.unwrap_or_default();
            let hex = c.device.to_hex();
            if !listed.contains(&hex) {
                listed.push(hex);
                self.staged.batch.put(k, &listed)?;
            }
        }
        Ok(())
    }

    /// Each user's checked devices over every group this device is in.
    fn checked_devices(&mut self) -> Result<Checked, Error> {
        let mut out = Checked::new();
        for group in self.device.groups()? {
            let meta = self.meta(&group)?;
            if meta.left {
                continue;
            }
            let pending: Vec<DeviceId> = self.unchecked(&group)?.into_iter().map(|(_, d)| d).collect();
            for m in self.device.members(&group)? {
                let c = m.credential;
                let hex = c.device.to_hex();
                if pending.contains(&c.device) || meta.impostors.iter().any(|(u, d)| *u == c.user.0 && *d == hex) {
                    continue;
                }
                out.entry(c.user).or_default().insert(c.device, m.public_key);
            }
        }
        Ok(out)
    }

    /// Emits [`Event::DevicesChanged`] for every partner whose checked
    /// devices differ from those last reported.
    fn track_devices(&mut self) -> Result<(), Error> {
        let all = self.checked_devices()?;
        for (user, devices) in &all {
            if *user == self.user {
                continue;
            }
            let k = key::known_devices(&user.0);
            let before: Option<Vec<String>> = self.local.get_staged(&self.staged.batch, &k)?;
            let mut now: Vec<String> = devices.values().map(hex::encode).collect();
            now.sort();
            if before.as_ref() == Some(&now) {
                continue;
            }
            let before = before.unwrap_or_default();
            let added = devices
                .iter()
                .filter(|(_, key)| !before.contains(&hex::encode(key)))
                .map(|(d, _)| *d)
                .collect();
            let removed = before
                .iter()
                .filter(|k| !now.contains(k))
                .filter_map(|k| <[u8; 32]>::try_from(hex::decode(k).ok()?).ok())
                .map(|key| DeviceId::from_public_key(&key))
                .collect();
            self.staged.batch.put(k, &now)?;
            let safety_number = safety_number_in(&all, &self.user, user)?;
            self.emit(Event::DevicesChanged {
                user: user.clone(),
                added,
                removed,
                first_seen: before.is_empty(),
                safety_number,
            });
        }
        Ok(())
    }

    /// The safety number with `partner`: this user's checked devices and
    /// the partner's, over every group this device is in.
    pub(super) fn safety_number(&mut self, partner: &UserId) -> Result<String, Error> {
        let all = self.checked_devices()?;
        safety_number_in(&all, &self.user, partner)
    }

    /// Records that this user compared the safety number with `partner`
    /// out of band and it was `number`: the partner's current devices are
    /// verified until they change.
    pub(super) fn mark_verified(&mut self, partner: &UserId, number: &str) -> Result<(), Error> {
        let all = self.checked_devices()?;
        let current = safety_number_in(&all, &self.user, partner)?;
        let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
        if digits(number) != digits(&current) {
            return Err(Error::SafetyNumberMismatch(partner.0.clone()));
        }
        let mut keys: Vec<String> = all[partner].values().map(hex::encode).collect();
        keys.sort();
        self.staged.batch.put(key::compared(&partner.0), &keys)
    }

    /// Whether no leaf of `group` is an impostor and either an identity
    /// authority certified every leaf or every other user has the devices
    /// whose safety number this user compared.
    pub(super) fn verified(&mut self, group: &GroupId, all: &Checked) -> Result<bool, Error> {
        let meta = self.meta(group)?;
        if !meta.impostors.is_empty() || meta.label_pending {
            return Ok(false);
        }
        if self.device.has_identity_authority() {
            return Ok(true);
        }
        let users: BTreeSet<UserId> = self
            .device
            .members(group)?
            .into_iter()
            .map(|m| m.credential.user)
            .filter(|u| *u != self.user)
            .collect();
        for user in users {
            let compared: Option<Vec<String>> = self.local.get_staged(&self.staged.batch, &key::compared(&user.0))?;
            let mut now: Vec<String> = all
                .get(&user)
                .map(|d| d.values().map(hex::encode).collect())
                .unwrap_or_default();
            now.sort();
            if compared.as_ref() != Some(&now) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// [`Self::checked_devices`], for callers outside this module.
    pub(super) fn all_checked(&mut self) -> Result<Checked, Error> {
        self.checked_devices()
    }
}

/// The prefix of a group holding an impostor.
const UNVERIFIED: &str = "unverified: ";

fn safety_number_in(all: &Checked, me: &UserId, partner: &UserId) -> Result<String, Error> {
    let theirs = all
        .get(partner)
        .filter(|d| !d.is_empty())
        .ok_or_else(|| Error::NoDevices(partner.0.clone()))?;
    let mine: Vec<[u8; 32]> = all.get(me).map(|d| d.values().copied().collect()).unwrap_or_default();
    let theirs: Vec<[u8; 32]> = theirs.values().copied().collect();
    Ok(SafetyNumber::new(Fingerprint::of_user(me, &mine), Fingerprint::of_user(partner, &theirs)).to_string())
}
