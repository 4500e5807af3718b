//! openmls's storage trait over [`MlsStore`].
//!
//! Keys are `label ':' encode(key)` and values `encode(value)`, where `encode`
//! is MessagePack (see [`encode`] for why not JSON).
//! Lists (own leaf nodes, proposal references) are one encoded list of
//! encoded items per key.

use openmls_traits::storage::{CURRENT_VERSION, StorageProvider, traits};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{MlsStore, StoreError};

const KEY_PACKAGE: &[u8] = b"KeyPackage";
const PSK: &[u8] = b"Psk";
const ENCRYPTION_KEY_PAIR: &[u8] = b"EncryptionKeyPair";
const SIGNATURE_KEY_PAIR: &[u8] = b"SignatureKeyPair";
const EPOCH_KEY_PAIRS: &[u8] = b"EpochKeyPairs";
const TREE: &[u8] = b"Tree";
const GROUP_CONTEXT: &[u8] = b"GroupContext";
const INTERIM_TRANSCRIPT_HASH: &[u8] = b"InterimTranscriptHash";
const CONFIRMATION_TAG: &[u8] = b"ConfirmationTag";
const JOIN_CONFIG: &[u8] = b"MlsGroupJoinConfig";
const OWN_LEAF_NODES: &[u8] = b"OwnLeafNodes";
const GROUP_STATE: &[u8] = b"GroupState";
const QUEUED_PROPOSAL: &[u8] = b"QueuedProposal";
const PROPOSAL_QUEUE_REFS: &[u8] = b"ProposalQueueRefs";
const OWN_LEAF_NODE_INDEX: &[u8] = b"OwnLeafNodeIndex";
const EPOCH_SECRETS: &[u8] = b"EpochSecrets";
const RESUMPTION_PSK_STORE: &[u8] = b"ResumptionPsk";
const MESSAGE_SECRETS: &[u8] = b"MessageSecrets";

/// The value encoding: MessagePack, structs as arrays.
///
/// JSON (what openmls's own storages use) writes every byte of a key or
/// secret as decimal text; for a group of a thousand, where openmls rewrites
/// the tree and the past epochs' member lists on each operation, encoding was
/// a third of the time of every commit and message. MessagePack is several
/// times faster and smaller, and unlike bincode it is self-describing, which
/// some openmls types need to decode (untagged enums). Every openmls storage
/// type round-trips through it (the tests exercise each one, and a failure
/// surfaces as [`StoreError::Encoding`]). The encoding is deterministic for a
/// given value, which list removal relies on.
fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec(value).map_err(|e| StoreError::Encoding(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|e| StoreError::Encoding(e.to_string()))
}

fn storage_key<K: Serialize + ?Sized>(label: &[u8], key: &K) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(label.len() + 1 + 64);
    out.extend_from_slice(label);
    out.push(b':');
    out.extend_from_slice(&encode(key)?);
    Ok(out)
}

impl MlsStore {
    fn write<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &self,
        label: &[u8],
        key: &K,
        value: &V,
    ) -> Result<(), StoreError> {
        self.put(storage_key(label, key)?, encode(value)?);
        Ok(())
    }

    fn read<K: Serialize + ?Sized, V: DeserializeOwned>(&self, label: &[u8], key: &K) -> Result<Option<V>, StoreError> {
        match self.get(&storage_key(label, key)?) {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    fn remove<K: Serialize + ?Sized>(&self, label: &[u8], key: &K) -> Result<(), StoreError> {
        self.delete(storage_key(label, key)?);
        Ok(())
    }

    fn read_values<K: Serialize + ?Sized>(&self, label: &[u8], key: &K) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self.read(label, key)?.unwrap_or_default())
    }

    fn read_list<K: Serialize + ?Sized, V: DeserializeOwned>(
        &self,
        label: &[u8],
        key: &K,
    ) -> Result<Vec<V>, StoreError> {
        self.read_values(label, key)?.into_iter().map(|v| decode(&v)).collect()
    }

    fn push<K: Serialize + ?Sized, V: Serialize>(&self, label: &[u8], key: &K, item: &V) -> Result<(), StoreError> {
        let mut list = self.read_values(label, key)?;
        list.push(encode(item)?);
        self.write(label, key, &list)
    }

    fn remove_from_list<K: Serialize + ?Sized, V: Serialize>(
        &self,
        label: &[u8],
        key: &K,
        item: &V,
    ) -> Result<(), StoreError> {
        let item = encode(item)?;
        let mut list = self.read_values(label, key)?;
        if let Some(pos) = list.iter().position(|v| *v == item) {
            list.remove(pos);
        }
        self.write(label, key, &list)
    }
}

/// Writers of one value per group: `fn name<G, T>(&self, group_id, value)`.
macro_rules! group_writers {
    ($($name:ident: $bound:ident => $label:ident),* $(,)?) => {$(
        fn $name<G: traits::GroupId<CURRENT_VERSION>, T: traits::$bound<CURRENT_VERSION>>(
            &self,
            group_id: &G,
            value: &T,
        ) -> Result<(), Self::Error> {
            self.write($label, group_id, value)
        }
    )*};
}

/// Readers of one value per group: `fn name<G, T>(&self, group_id) -> Option<T>`.
macro_rules! group_readers {
    ($($name:ident: $bound:ident => $label:ident),* $(,)?) => {$(
        fn $name<G: traits::GroupId<CURRENT_VERSION>, T: traits::$bound<CURRENT_VERSION>>(
            &self,
            group_id: &G,
        ) -> Result<Option<T>, Self::Error> {
            self.read($label, group_id)
        }
    )*};
}

/// Deleters of one value per group: `fn name<G>(&self, group_id)`.
macro_rules! group_deleters {
    ($($name:ident => $label:ident),* $(,)?) => {$(
        fn $name<G: traits::GroupId<CURRENT_VERSION>>(&self, group_id: &G) -> Result<(), Self::Error> {
            self.remove($label, group_id)
        }
    )*};
}

/// Writers and deleters of one value per key: `fn name<K, T>(&self, key, value)`.
macro_rules! keyed {
    ($($write:ident, $delete:ident: $key:ident, $bound:ident => $label:ident);* $(;)?) => {$(
        fn $write<K: traits::$key<CURRENT_VERSION>, T: traits::$bound<CURRENT_VERSION>>(
            &self,
            key: &K,
            value: &T,
        ) -> Result<(), Self::Error> {
            self.write($label, key, value)
        }

        fn $delete<K: traits::$key<CURRENT_VERSION>>(&self, key: &K) -> Result<(), Self::Error> {
            self.remove($label, key)
        }
    )*};
}

impl StorageProvider<CURRENT_VERSION> for MlsStore {
    type Error = StoreError;

    group_writers! {
        write_mls_join_config: MlsGroupJoinConfig => JOIN_CONFIG,
        write_tree: TreeSync => TREE,
        write_interim_transcript_hash: InterimTranscriptHash => INTERIM_TRANSCRIPT_HASH,
        write_context: GroupContext => GROUP_CONTEXT,
        write_confirmation_tag: ConfirmationTag => CONFIRMATION_TAG,
        write_message_secrets: MessageSecrets => MESSAGE_SECRETS,
        write_resumption_psk_store: ResumptionPskStore => RESUMPTION_PSK_STORE,
        write_own_leaf_index: LeafNodeIndex => OWN_LEAF_NODE_INDEX,
        write_group_epoch_secrets: GroupEpochSecrets => EPOCH_SECRETS,
    }

    group_readers! {
        mls_group_join_config: MlsGroupJoinConfig => JOIN_CONFIG,
        tree: TreeSync => TREE,
        group_context: GroupContext => GROUP_CONTEXT,
        interim_transcript_hash: InterimTranscriptHash => INTERIM_TRANSCRIPT_HASH,
        confirmation_tag: ConfirmationTag => CONFIRMATION_TAG,
        message_secrets: MessageSecrets => MESSAGE_SECRETS,
        resumption_psk_store: ResumptionPskStore => RESUMPTION_PSK_STORE,
        own_leaf_index: LeafNodeIndex => OWN_LEAF_NODE_INDEX,
        group_epoch_secrets: GroupEpochSecrets => EPOCH_SECRETS,
    }

    group_deleters! {
        delete_own_leaf_nodes => OWN_LEAF_NODES,
        delete_group_config => JOIN_CONFIG,
        delete_tree => TREE,
        delete_confirmation_tag => CONFIRMATION_TAG,
        delete_group_state => GROUP_STATE,
        delete_context => GROUP_CONTEXT,
        delete_interim_transcript_hash => INTERIM_TRANSCRIPT_HASH,
        delete_message_secrets => MESSAGE_SECRETS,
        delete_all_resumption_psk_secrets => RESUMPTION_PSK_STORE,
        delete_own_leaf_index => OWN_LEAF_NODE_INDEX,
        delete_group_epoch_secrets => EPOCH_SECRETS,
    }

    keyed! {
        write_signature_key_pair, delete_signature_key_pair: SignaturePublicKey, SignatureKeyPair => SIGNATURE_KEY_PAIR;
        write_encryption_key_pair, delete_encryption_key_pair: EncryptionKey, HpkeKeyPair => ENCRYPTION_KEY_PAIR;
        write_key_package, delete_key_package: HashReference, KeyPackage => KEY_PACKAGE;
        write_psk, delete_psk: PskId, PskBundle => PSK;
    }

    fn signature_key_pair<
        P: traits::SignaturePublicKey<CURRENT_VERSION>,
        K: traits::SignatureKeyPair<CURRENT_VERSION>,
    >(
        &self,
        public_key: &P,
    ) -> Result<Option<K>, Self::Error> {
        self.read(SIGNATURE_KEY_PAIR, public_key)
    }

    fn encryption_key_pair<K: traits::HpkeKeyPair<CURRENT_VERSION>, P: traits::EncryptionKey<CURRENT_VERSION>>(
        &self,
        public_key: &P,
    ) -> Result<Option<K>, Self::Error> {
        self.read(ENCRYPTION_KEY_PAIR, public_key)
    }

    fn key_package<R: traits::HashReference<CURRENT_VERSION>, K: traits::KeyPackage<CURRENT_VERSION>>(
        &self,
        hash_ref: &R,
    ) -> Result<Option<K>, Self::Error> {
        self.read(KEY_PACKAGE, hash_ref)
    }

    fn psk<B: traits::PskBundle<CURRENT_VERSION>, I: traits::PskId<CURRENT_VERSION>>(
        &self,
        psk_id: &I,
    ) -> Result<Option<B>, Self::Error> {
        self.read(PSK, psk_id)
    }

    // The group state's generic parameters come in the other order.
    fn write_group_state<S: traits::GroupState<CURRENT_VERSION>, G: traits::GroupId<CURRENT_VERSION>>(
        &self,
        group_id: &G,
        state: &S,
    ) -> Result<(), Self::Error> {
        self.write(GROUP_STATE, group_id, state)
    }

    fn group_state<S: traits::GroupState<CURRENT_VERSION>, G: traits::GroupId<CURRENT_VERSION>>(
        &self,
        group_id: &G,
    ) -> Result<Option<S>, Self::Error> {
        self.read(GROUP_STATE, group_id)
    }

    fn append_own_leaf_node<G: traits::GroupId<CURRENT_VERSION>, L: traits::LeafNode<CURRENT_VERSION>>(
        &self,
        group_id: &G,
        leaf_node: &L,
    ) -> Result<(), Self::Error> {
        self.push(OWN_LEAF_NODES, group_id, leaf_node)
    }

    fn own_leaf_nodes<G: traits::GroupId<CURRENT_VERSION>, L: traits::LeafNode<CURRENT_VERSION>>(
        &self,
        group_id: &G,
    ) -> Result<Vec<L>, Self::Error> {
        self.read_list(OWN_LEAF_NODES, group_id)
    }

    fn queue_proposal<
        G: traits::GroupId<CURRENT_VERSION>,
        R: traits::ProposalRef<CURRENT_VERSION>,
        P: traits::QueuedProposal<CURRENT_VERSION>,
    >(
        &self,
        group_id: &G,
        proposal_ref: &R,
        proposal: &P,
    ) -> Result<(), Self::Error> {
        self.write(QUEUED_PROPOSAL, &(group_id, proposal_ref), proposal)?;
        self.push(PROPOSAL_QUEUE_REFS, group_id, proposal_ref)
    }

    fn queued_proposal_refs<G: traits::GroupId<CURRENT_VERSION>, R: traits::ProposalRef<CURRENT_VERSION>>(
        &self,
        group_id: &G,
    ) -> Result<Vec<R>, Self::Error> {
        self.read_list(PROPOSAL_QUEUE_REFS, group_id)
    }

    fn queued_proposals<
        G: traits::GroupId<CURRENT_VERSION>,
        R: traits::ProposalRef<CURRENT_VERSION>,
        P: traits::QueuedProposal<CURRENT_VERSION>,
    >(
        &self,
        group_id: &G,
    ) -> Result<Vec<(R, P)>, Self::Error> {
        let refs: Vec<R> = self.read_list(PROPOSAL_QUEUE_REFS, group_id)?;
        let mut out = Vec::with_capacity(refs.len());
        for proposal_ref in refs {
            let proposal = self
                .read(QUEUED_PROPOSAL, &(group_id, &proposal_ref))?
                .ok_or_else(|| StoreError::Encoding("queued proposal listed but missing".into()))?;
            out.push((proposal_ref, proposal));
        }
        Ok(out)
    }

    fn remove_proposal<G: traits::GroupId<CURRENT_VERSION>, R: traits::ProposalRef<CURRENT_VERSION>>(
        &self,
        group_id: &G,
        proposal_ref: &R,
    ) -> Result<(), Self::Error> {
        self.remove_from_list(PROPOSAL_QUEUE_REFS, group_id, proposal_ref)?;
        self.remove(QUEUED_PROPOSAL, &(group_id, proposal_ref))
    }

    fn clear_proposal_queue<G: traits::GroupId<CURRENT_VERSION>, R: traits::ProposalRef<CURRENT_VERSION>>(
        &self,
        group_id: &G,
    ) -> Result<(), Self::Error> {
        let refs: Vec<R> = self.read_list(PROPOSAL_QUEUE_REFS, group_id)?;
        for proposal_ref in &refs {
            self.remove(QUEUED_PROPOSAL, &(group_id, proposal_ref))?;
        }
        self.remove(PROPOSAL_QUEUE_REFS, group_id)
    }

    fn write_encryption_epoch_key_pairs<
        G: traits::GroupId<CURRENT_VERSION>,
        E: traits::EpochKey<CURRENT_VERSION>,
        K: traits::HpkeKeyPair<CURRENT_VERSION>,
    >(
        &self,
        group_id: &G,
        epoch: &E,
        leaf_index: u32,
        key_pairs: &[K],
    ) -> Result<(), Self::Error> {
        self.write(EPOCH_KEY_PAIRS, &(group_id, epoch, leaf_index), key_pairs)
    }

    fn encryption_epoch_key_pairs<
        G: traits::GroupId<CURRENT_VERSION>,
        E: traits::EpochKey<CURRENT_VERSION>,
        K: traits::HpkeKeyPair<CURRENT_VERSION>,
    >(
        &self,
        group_id: &G,
        epoch: &E,
        leaf_index: u32,
    ) -> Result<Vec<K>, Self::Error> {
        Ok(self
            .read(EPOCH_KEY_PAIRS, &(group_id, epoch, leaf_index))?
            .unwrap_or_default())
    }

    fn delete_encryption_epoch_key_pairs<G: traits::GroupId<CURRENT_VERSION>, E: traits::EpochKey<CURRENT_VERSION>>(
        &self,
        group_id: &G,
        epoch: &E,
        leaf_index: u32,
    ) -> Result<(), Self::Error> {
        self.remove(EPOCH_KEY_PAIRS, &(group_id, epoch, leaf_index))
    }
}

/// Application records (identity, key package index) live in the same store,
/// under labels openmls does not use, so they commit atomically with MLS state.
impl MlsStore {
    pub(crate) fn write_record<V: Serialize>(&self, name: &str, value: &V) -> Result<(), StoreError> {
        self.write(b"hush", name, value)
    }

    pub(crate) fn read_record<V: DeserializeOwned>(&self, name: &str) -> Result<Option<V>, StoreError> {
        self.read(b"hush", name)
    }

    pub(crate) fn delete_record(&self, name: &str) -> Result<(), StoreError> {
        self.remove(b"hush", name)
    }
}
