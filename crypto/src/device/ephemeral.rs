//! Ephemeral signals (typing): sealed with a key exported from the current
//! epoch and signed by the sending device, never with the message ratchet and
//! never processed as MLS. The envelope is described in
//! [`hush_protocol::ephemeral`].

use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use hush_protocol::ephemeral::{self as envelope, HEADER_LEN, NONCE_LEN, SIGNATURE_LEN};
use hush_protocol::{DeviceId, GroupId};
use openmls_traits::OpenMlsProvider as _;
use openmls_traits::crypto::OpenMlsCrypto as _;

use super::Device;
use crate::error::Error;
use crate::identity::DeviceCredential;

fn refused(why: impl std::fmt::Display) -> Error {
    Error::Ephemeral(why.to_string())
}

impl Device {
    /// The group's ephemeral key for its current epoch, with the epoch and
    /// the ciphersuite's AEAD. Reading it changes nothing.
    fn ephemeral_key(&mut self, group: &GroupId) -> Result<(u64, Vec<u8>, openmls_traits::types::AeadType), Error> {
        let (g, provider, _) = self.group_parts(group)?;
        let aead = g.ciphersuite().aead_algorithm();
        let key = g
            .export_secret(provider.crypto(), envelope::EXPORTER_LABEL, &group.0, aead.key_size())
            .map_err(Error::mls)?;
        Ok((g.epoch().as_u64(), key, aead))
    }

    /// Seals an ephemeral signal for the group's current epoch. Unlike
    /// [`Device::encrypt`] it writes nothing: the group's state and its
    /// message ratchet are untouched.
    pub fn seal_ephemeral(&mut self, group: &GroupId, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let (epoch, key, aead) = self.ephemeral_key(group)?;
        let nonce: [u8; NONCE_LEN] = rand::random();
        let aad = envelope::associated_data(group, epoch, self.identity.device_id());
        let signature = self.identity.sign(&envelope::signed_bytes(&aad, plaintext));
        let mut inner = Vec::with_capacity(SIGNATURE_LEN + plaintext.len());
        inner.extend_from_slice(&signature);
        inner.extend_from_slice(plaintext);
        let sealed = self
            .provider
            .crypto()
            .aead_encrypt(aead, &key, &inner, &nonce, &aad)
            .map_err(Error::mls)?;
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.extend_from_slice(&envelope::encode_header(epoch, &nonce));
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens an ephemeral signal the relay says `sender` sent: it must be an
    /// envelope for the group's current epoch, decrypt with that epoch's key
    /// and be signed by `sender`'s leaf key. Returns the sender's credential
    /// and the plaintext. Writes nothing; an MLS message (a commit sent as a
    /// typing signal) is refused without being looked at.
    pub fn open_ephemeral(
        &mut self,
        group: &GroupId,
        sender: DeviceId,
        sealed: &[u8],
    ) -> Result<(DeviceCredential, Vec<u8>), Error> {
        let header = envelope::header(sealed).map_err(refused)?;
        let (epoch, key, aead) = self.ephemeral_key(group)?;
        if header.epoch != epoch {
            return Err(refused(format!(
                "sealed at epoch {}, the group is at {epoch}",
                header.epoch
            )));
        }
        let member = self
            .members(group)?
            .into_iter()
            .find(|m| m.credential.device == sender)
            .ok_or_else(|| refused("the sender is not a member"))?;
        let aad = envelope::associated_data(group, epoch, sender);
        let inner = self
            .provider
            .crypto()
            .aead_decrypt(aead, &key, &sealed[HEADER_LEN..], &header.nonce, &aad)
            .map_err(|_| refused("does not decrypt"))?;
        if inner.len() < SIGNATURE_LEN {
            return Err(refused("too short"));
        }
        let (signature, plaintext) = inner.split_at(SIGNATURE_LEN);
        let key = VerifyingKey::from_bytes(&member.public_key).map_err(|_| refused("bad member key"))?;
        let signature = Signature::from_slice(signature).map_err(|_| refused("bad signature"))?;
        key.verify(&envelope::signed_bytes(&aad, plaintext), &signature)
            .map_err(|_| refused("not signed by the sender"))?;
        Ok((member.credential, plaintext.to_vec()))
    }
}
