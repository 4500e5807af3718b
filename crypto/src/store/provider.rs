//! openmls's storage trait over [`MlsStore`].
//!
//! Keys are `label ':' json(key)`; values are JSON, the encoding every openmls
//! type supports through serde. Lists (own leaf nodes, proposal references)
//! are one JSON array per key.

use openmls_traits::storage::{CURRENT_VERSION, StorageProvider, traits};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

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

fn storage_key<K: Serialize + ?Sized>(label: &[u8], key: &K) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(label.len() + 1 + 64);
    out.extend_from_slice(label);
    out.push(b':');
    serde_json::to_writer(&mut out, key)?;
    Ok(out)
}

impl MlsStore {
    fn write<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &self,
        label: &[u8],
        key: &K,
        value: &V,
    ) -> Result<(), StoreError> {
        self.put(storage_key(label, key)?, serde_json::to_vec(value)?);
        Ok(())
    }

    fn read<K: Serialize + ?Sized, V: DeserializeOwned>(&self, label: &[u8], key: &K) -> Result<Option<V>, StoreError> {
        match self.get(&storage_key(label, key)?) {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    fn remove<K: Serialize + ?Sized>(&self, label: &[u8], key: &K) -> Result<(), StoreError> {
        self.delete(storage_key(label, key)?);
        Ok(())
    }

    fn read_values<K: Serialize + ?Sized>(&self, label: &[u8], key: &K) -> Result<Vec<Value>, StoreError> {
        Ok(self.read(label, key)?.unwrap_or_default())
    }

    fn read_list<K: Serialize + ?Sized, V: DeserializeOwned>(
        &self,
        label: &[u8],
        key: &K,
    ) -> Result<Vec<V>, StoreError> {
        self.read_values(label, key)?
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(StoreError::from))
            .collect()
    }

    fn push<K: Serialize + ?Sized, V: Serialize>(&self, label: &[u8], key: &K, item: &V) -> Result<(), StoreError> {
        let mut list = self.read_values(label, key)?;
        list.push(serde_json::to_value(item)?);
        self.write(label, key, &list)
    }

    fn remove_from_list<K: Serialize + ?Sized, V: Serialize>(
        &self,
        label: &[u8],
        key: &K,
        item: &V,
    ) -> Result<(), StoreError> {
        let item = serde_json::to_value(item)?;
        let mut list = self.read_values(label, key)?;
        if let Some(pos) = list.iter().position(|v| *v == item) {
            list.remove(pos);
        }
        self.write(label, key, &list)
    }
}

impl StorageProvider<CURRENT_VERSION> for MlsStore {
    type Error = StoreError;

    fn write_mls_join_config<G: traits::GroupId<CURRENT_VERSION>, C: traits::MlsGroupJoinConfig<CURRENT_VERSION>>(
        &self,
        group_id: &G,
        config: &C,
    ) -> Result<(), Self::Error> {
        self.write(JOIN_CONFIG, group_id, config)
    }

    fn append_own_leaf_node<G: traits::GroupId<CURRENT_VERSION>, L: traits::LeafNode<CURRENT_VERSION>>(
        &self,
        group_id: &G,
        leaf_node: &L,
    ) -> Result<(), Self::Error> {
        self.push(OWN_LEAF_NODES, group_id, leaf_node)
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

    fn write_tree<G: traits::GroupId<CURRENT_VERSION>, T: traits::TreeSync<CURRENT_VERSION>>(
        &self,
        group_id: &G,
        tree: &T,
    ) -> Result<(), Self::Error> {
        self.write(TREE, group_id, tree)
    }

    fn write_interim_transcript_hash<
        G: traits::GroupId<CURRENT_VERSION>,
        H: traits::InterimTranscriptHash<CURRENT_VERSION>,
    >(
        &self,
        group_id: &G,
        hash: &H,
    ) -> Result<(), Self::Error> {
        self.write(INTERIM_TRANSCRIPT_HASH, group_id, hash)
    }

    fn write_context<G: traits::GroupId<CURRENT_VERSION>, C: traits::GroupContext<CURRENT_VERSION>>(
        &self,
        group_id: &G,
        context: &C,
    ) -> Result<(), Self::Error> {
        self.write(GROUP_CONTEXT, group_id, context)
    }

    fn write_confirmation_tag<G: traits::GroupId<CURRENT_VERSION>, T: traits::ConfirmationTag<CURRENT_VERSION>>(
        &self,
        group_id: &G,
        tag: &T,
    ) -> Result<(), Self::Error> {
        self.write(CONFIRMATION_TAG, group_id, tag)
    }

    fn write_group_state<S: traits::GroupState<CURRENT_VERSION>, G: traits::GroupId<CURRENT_VERSION>>(
        &self,
        group_id: &G,
        state: &S,
    ) -> Result<(), Self::Error> {
        self.write(GROUP_STATE, group_id, state)
    }

    fn write_message_secrets<G: traits::GroupId<CURRENT_VERSION>, M: traits::MessageSecrets<CURRENT_VERSION>>(
        &self,
        group_id: &G,
        secrets: &M,
    ) -> Result<(), Self::Error> {
        self.write(MESSAGE_SECRETS, group_id, secrets)
    }

    fn write_resumption_psk_store<
        G: traits::GroupId<CURRENT_VERSION>,
        P: traits::ResumptionPskStore<CURRENT_VERSION>,
    >(
        &self,
        group_id: &G,
        store: &P,
    ) -> Result<(), Self::Error> {
        self.write(RESUMPTION_PSK_STORE, group_id, store)
    }

    fn write_own_leaf_index<G: traits::GroupId<CURRENT_VERSION>, I: traits::LeafNodeIndex<CURRENT_VERSION>>(
        &self,
        group_id: &G,
        index: &I,
    ) -> Result<(), Self::Error> {
        self.write(OWN_LEAF_NODE_INDEX, group_id, index)
    }

    fn write_group_epoch_secrets<G: traits::GroupId<CURRENT_VERSION>, S: traits::GroupEpochSecrets<CURRENT_VERSION>>(
        &self,
        group_id: &G,
        secrets: &S,
    ) -> Result<(), Self::Error> {
        self.write(EPOCH_SECRETS, group_id, secrets)
    }

    fn write_signature_key_pair<
        P: traits::SignaturePublicKey<CURRENT_VERSION>,
        K: traits::SignatureKeyPair<CURRENT_VERSION>,
    >(
        &self,
        public_key: &P,
        key_pair: &K,
    ) -> Result<(), Self::Error> {
        self.write(SIGNATURE_KEY_PAIR, public_key, key_pair)
    }

    fn write_encryption_key_pair<P: traits::EncryptionKey<CURRENT_VERSION>, K: traits::HpkeKeyPair<CURRENT_VERSION>>(
        &self,
        public_key: &P,
        key_pair: &K,
    ) -> Result<(), Self::Error> {
        self.write(ENCRYPTION_KEY_PAIR, public_key, key_pair)
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

    fn write_key_package<R: traits::HashReference<CURRENT_VERSION>, K: traits::KeyPackage<CURRENT_VERSION>>(
        &self,
        hash_ref: &R,
        key_package: &K,
    ) -> Result<(), Self::Error> {
        self.write(KEY_PACKAGE, hash_ref, key_package)
    }

    fn write_psk<I: traits::PskId<CURRENT_VERSION>, B: traits::PskBundle<CURRENT_VERSION>>(
        &self,
        psk_id: &I,
        psk: &B,
    ) -> Result<(), Self::Error> {
        self.write(PSK, psk_id, psk)
    }

    fn mls_group_join_config<G: traits::GroupId<CURRENT_VERSION>, C: traits::MlsGroupJoinConfig<CURRENT_VERSION>>(
        &self,
        group_id: &G,
    ) -> Result<Option<C>, Self::Error> {
        self.read(JOIN_CONFIG, group_id)
    }

    fn own_leaf_nodes<G: traits::GroupId<CURRENT_VERSION>, L: traits::LeafNode<CURRENT_VERSION>>(
        &self,
        group_id: &G,
    ) -> Result<Vec<L>, Self::Error> {
        self.read_list(OWN_LEAF_NODES, group_id)
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

    fn tree<G: traits::GroupId<CURRENT_VERSION>, T: traits::TreeSync<CURRENT_VERSION>>(
        &self,
        group_id: &G,
    ) -> Result<Option<T>, Self::Error> {
        self.read(TREE, group_id)
    }

    fn group_context<G: traits::GroupId<CURRENT_VERSION>, C: traits::GroupContext<CURRENT_VERSION>>(
        &self,
        group_id: &G,
    ) -> Result<Option<C>, Self::Error> {
        self.read(GROUP_CONTEXT, group_id)
    }

    fn interim_transcript_hash<
        G: traits::GroupId<CURRENT_VERSION>,
        H: traits::InterimTranscriptHash<CURRENT_VERSION>,
    >(
        &self,
        group_id: &G,
    ) -> Result<Option<H>, Self::Error> {
        self.read(INTERIM_TRANSCRIPT_HASH, group_id)
    }

    fn confirmation_tag<G: traits::GroupId<CURRENT_VERSION>, T: traits::ConfirmationTag<CURRENT_VERSION>>(
        &self,
        group_id: &G,
    ) -> Result<Option<T>, Self::Error> {
        self.read(CONFIRMATION_TAG, group_id)
    }

    fn group_state<S: traits::GroupState<CURRENT_VERSION>, G: traits::GroupId<CURRENT_VERSION>>(
        &self,
        group_id: &G,
    ) -> Result<Option<S>, Self::Error> {
        self.read(GROUP_STATE, group_id)
    }

    fn message_secrets<G: traits::GroupId<CURRENT_VERSION>, M: traits::MessageSecrets<CURRENT_VERSION>>(
        &self,
        group_id: &G,
    ) -> Result<Option<M>, Self::Error> {
        self.read(MESSAGE_SECRETS, group_id)
    }

    fn resumption_psk_store<G: traits::GroupId<CURRENT_VERSION>, P: traits::ResumptionPskStore<CURRENT_VERSION>>(
        &self,
        group_id: &G,
    ) -> Result<Option<P>, Self::Error> {
        self.read(RESUMPTION_PSK_STORE, group_id)
    }

    fn own_leaf_index<G: traits::GroupId<CURRENT_VERSION>, I: traits::LeafNodeIndex<CURRENT_VERSION>>(
        &self,
        group_id: &G,
    ) -> Result<Option<I>, Self::Error> {
        self.read(OWN_LEAF_NODE_INDEX, group_id)
    }

    fn group_epoch_secrets<G: traits::GroupId<CURRENT_VERSION>, S: traits::GroupEpochSecrets<CURRENT_VERSION>>(
        &self,
        group_id: &G,
    ) -> Result<Option<S>, Self::Error> {
        self.read(EPOCH_SECRETS, group_id)
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

    fn remove_proposal<G: traits::GroupId<CURRENT_VERSION>, R: traits::ProposalRef<CURRENT_VERSION>>(
        &self,
        group_id: &G,
        proposal_ref: &R,
    ) -> Result<(), Self::Error> {
        self.remove_from_list(PROPOSAL_QUEUE_REFS, group_id, proposal_ref)?;
        self.remove(QUEUED_PROPOSAL, &(group_id, proposal_ref))
    }

    fn delete_own_leaf_nodes<G: traits::GroupId<CURRENT_VERSION>>(&self, group_id: &G) -> Result<(), Self::Error> {
        self.remove(OWN_LEAF_NODES, group_id)
    }

    fn delete_group_config<G: traits::GroupId<CURRENT_VERSION>>(&self, group_id: &G) -> Result<(), Self::Error> {
        self.remove(JOIN_CONFIG, group_id)
    }

    fn delete_tree<G: traits::GroupId<CURRENT_VERSION>>(&self, group_id: &G) -> Result<(), Self::Error> {
        self.remove(TREE, group_id)
    }

    fn delete_confirmation_tag<G: traits::GroupId<CURRENT_VERSION>>(&self, group_id: &G) -> Result<(), Self::Error> {
        self.remove(CONFIRMATION_TAG, group_id)
    }

    fn delete_group_state<G: traits::GroupId<CURRENT_VERSION>>(&self, group_id: &G) -> Result<(), Self::Error> {
        self.remove(GROUP_STATE, group_id)
    }

    fn delete_context<G: traits::GroupId<CURRENT_VERSION>>(&self, group_id: &G) -> Result<(), Self::Error> {
        self.remove(GROUP_CONTEXT, group_id)
    }

    fn delete_interim_transcript_hash<G: traits::GroupId<CURRENT_VERSION>>(
        &self,
        group_id: &G,
    ) -> Result<(), Self::Error> {
        self.remove(INTERIM_TRANSCRIPT_HASH, group_id)
    }

    fn delete_message_secrets<G: traits::GroupId<CURRENT_VERSION>>(&self, group_id: &G) -> Result<(), Self::Error> {
        self.remove(MESSAGE_SECRETS, group_id)
    }

    fn delete_all_resumption_psk_secrets<G: traits::GroupId<CURRENT_VERSION>>(
        &self,
        group_id: &G,
    ) -> Result<(), Self::Error> {
        self.remove(RESUMPTION_PSK_STORE, group_id)
    }

    fn delete_own_leaf_index<G: traits::GroupId<CURRENT_VERSION>>(&self, group_id: &G) -> Result<(), Self::Error> {
        self.remove(OWN_LEAF_NODE_INDEX, group_id)
    }

    fn delete_group_epoch_secrets<G: traits::GroupId<CURRENT_VERSION>>(&self, group_id: &G) -> Result<(), Self::Error> {
        self.remove(EPOCH_SECRETS, group_id)
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

    fn delete_signature_key_pair<P: traits::SignaturePublicKey<CURRENT_VERSION>>(
        &self,
        public_key: &P,
    ) -> Result<(), Self::Error> {
        self.remove(SIGNATURE_KEY_PAIR, public_key)
    }

    fn delete_encryption_key_pair<P: traits::EncryptionKey<CURRENT_VERSION>>(
        &self,
        public_key: &P,
    ) -> Result<(), Self::Error> {
        self.remove(ENCRYPTION_KEY_PAIR, public_key)
    }

    fn delete_encryption_epoch_key_pairs<G: traits::GroupId<CURRENT_VERSION>, E: traits::EpochKey<CURRENT_VERSION>>(
        &self,
        group_id: &G,
        epoch: &E,
        leaf_index: u32,
    ) -> Result<(), Self::Error> {
        self.remove(EPOCH_KEY_PAIRS, &(group_id, epoch, leaf_index))
    }

    fn delete_key_package<R: traits::HashReference<CURRENT_VERSION>>(&self, hash_ref: &R) -> Result<(), Self::Error> {
        self.remove(KEY_PACKAGE, hash_ref)
    }

    fn delete_psk<I: traits::PskId<CURRENT_VERSION>>(&self, psk_id: &I) -> Result<(), Self::Error> {
        self.remove(PSK, psk_id)
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
}
