//! Settings of a device's groups.

use openmls::prelude::Ciphersuite;

/// How a [`Device`](crate::Device) creates and joins groups. Every setter
/// states its default; the defaults are the safe choice for hush.
#[derive(Clone, Debug)]
pub struct DeviceConfig {
    pub(crate) ciphersuite: Ciphersuite,
    pub(crate) past_epochs: usize,
    pub(crate) out_of_order_tolerance: u32,
    pub(crate) maximum_forward_distance: u32,
    pub(crate) ratchet_tree_in_welcome: bool,
    pub(crate) authority: Option<[u8; 32]>,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            ciphersuite: Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519,
            past_epochs: 2,
            out_of_order_tolerance: 5,
            maximum_forward_distance: 1000,
            ratchet_tree_in_welcome: true,
            authority: None,
        }
    }
}

impl DeviceConfig {
    /// The identity authority's Ed25519 public key (the app's backend, which
    /// certifies that a device key is a device of a user: see
    /// [`crate::identity::certify`]). With it, every leaf this device takes
    /// in (a key package it adds, the members of a group it joins, a device
    /// another member's commit adds) must carry a valid certificate
    /// ([`crate::CredentialError::NotCertified`],
    /// [`crate::CredentialError::BadCertificate`] otherwise). Default: none.
    pub fn identity_authority(mut self, key: [u8; 32]) -> Self {
        self.authority = Some(key);
        self
    }

    /// The cipher suite of groups this device creates and of its key packages.
    /// Default: `MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519` (1), the one
    /// suite every RFC 9420 implementation must support. Its signature scheme
    /// must be Ed25519, since the device key is an Ed25519 key.
    pub fn ciphersuite(mut self, ciphersuite: Ciphersuite) -> Self {
        self.ciphersuite = ciphersuite;
        self
    }

    /// How many past epochs' message secrets are kept, so that an application
    /// message sent just before a commit, and delivered after it, still
    /// decrypts. Default: 2.
    ///
    /// The trade-off is forward secrecy: MLS deletes an epoch's secrets when
    /// the group moves on, so a device compromised later cannot read that
    /// epoch. Every epoch kept is an epoch whose messages a thief of this
    /// device's state could still decrypt, for as long as it is kept. Because
    /// the relay orders every group's log, a message can only be late by the
    /// commits racing with it, which is rarely more than one; 2 covers that
    /// with one to spare. 0 gives the strongest forward secrecy and loses any
    /// message that crosses a commit.
    ///
    /// Each kept epoch also keeps that epoch's member list, which openmls
    /// stores with the ratchet state and so rewrites on every message: in a
    /// group of a thousand, a larger window means more bytes written per
    /// message.
    pub fn past_epochs(mut self, epochs: usize) -> Self {
        self.past_epochs = epochs;
        self
    }

    /// How many messages of one sender, in one epoch, may arrive out of order
    /// (their keys are kept until used). Default: 5. The relay delivers a
    /// group's log in order, so this only matters for ephemeral signals.
    pub fn out_of_order_tolerance(mut self, messages: u32) -> Self {
        self.out_of_order_tolerance = messages;
        self
    }

    /// How far ahead of the last message seen from a sender a message may be
    /// before it is refused (a bound on the work a sender can force).
    /// Default: 1000.
    pub fn maximum_forward_distance(mut self, messages: u32) -> Self {
        self.maximum_forward_distance = messages;
        self
    }

    /// Whether a Welcome carries the ratchet tree (the RFC 9420 `ratchet_tree`
    /// extension) or the tree is sent beside it. Default: in the Welcome.
    ///
    /// With the tree inside, a new member needs only its Welcome, which the
    /// relay already delivers to its inbox; any RFC 9420 implementation can
    /// join from it. The tree is the bulk of a Welcome for large groups (see
    /// `BENCHMARKS.md`), but one commit's Welcome is shared by all the devices
    /// it adds, and sending the tree beside it would need a second
    /// delivery path and the same bytes anyway.
    ///
    /// The choice is stored with each group when it is created or joined;
    /// changing it later affects only groups created or joined afterwards.
    pub fn ratchet_tree_in_welcome(mut self, inside: bool) -> Self {
        self.ratchet_tree_in_welcome = inside;
        self
    }
}
