//! Device identity: one Ed25519 key per device, used everywhere that device
//! signs (relay authentication, device linking, and MLS, as the leaf's
//! signature key), and the MLS credential binding it to a user and device id.

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use hush_protocol::limits::MAX_USER_ID_LEN;
use hush_protocol::{DeviceId, UserId};
use openmls::prelude::{BasicCredential, Credential, CredentialType, CredentialWithKey, SignatureScheme};
use openmls_traits::signatures::{Signer, SignerError};

/// First byte of every hush credential identity; a later encoding gets a new one.
const CREDENTIAL_V1: u8 = 1;
/// A credential with an identity authority's certificate.
const CREDENTIAL_V2: u8 = 2;
/// Length of an identity certificate (an Ed25519 signature).
pub const CERTIFICATE_LEN: usize = 64;

/// Why a credential or key was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The credential is not an MLS basic credential.
    #[error("credential is not a basic credential")]
    NotBasic,
    /// The identity bytes are not a hush v1 credential.
    #[error("credential identity is not a hush v1 identity")]
    Malformed,
    /// The user id is empty, too long or has control characters.
    #[error("invalid user id")]
    InvalidUserId,
    /// The signature key is not a 32-byte Ed25519 key.
    #[error("signature key is not an Ed25519 public key")]
    BadSignatureKey,
    /// The device id in the credential is not the one derived from the leaf's
    /// signature key: someone claims a device id that is not theirs.
    #[error("credential device id {claimed} does not match its key (derives {derived})")]
    DeviceIdMismatch {
        /// The id in the credential.
        claimed: DeviceId,
        /// The id derived from the signature key.
        derived: DeviceId,
    },
    /// An identity authority is configured and the credential carries no
    /// certificate from it.
    #[error("credential of {0} carries no identity certificate")]
    NotCertified(UserId),
    /// The certificate is not the authority's signature over this user and
    /// device key.
    #[error("identity certificate of {0} does not verify")]
    BadCertificate(UserId),
}

/// An identity certificate: the authority's Ed25519 signature over
/// [`hush_protocol::auth::identity_transcript`] of the user and the device
/// key. Issued by the app's backend (the party that issues registration
/// tokens) and carried in the device's MLS credential.
pub fn certify(authority: &SigningKey, user: &UserId, device_key: &[u8; 32]) -> [u8; CERTIFICATE_LEN] {
    authority
        .sign(&hush_protocol::auth::identity_transcript(user, device_key))
        .to_bytes()
}

/// Checks a new leaf's credential against the identity authority, if one is
/// configured: it must be a version 2 credential whose certificate is the
/// authority's signature over its user and the leaf's signature key.
/// Without an authority, any well-formed credential passes (members then
/// check identities another way).
pub fn check_certificate(
    credential: &Credential,
    signature_key: &[u8],
    authority: Option<&[u8; 32]>,
) -> Result<DeviceCredential, CredentialError> {
    let parsed = DeviceCredential::from_leaf(credential, signature_key)?;
    let Some(authority) = authority else {
        return Ok(parsed);
    };
    let basic = BasicCredential::try_from(credential.clone()).map_err(|_| CredentialError::NotBasic)?;
    let identity = basic.identity();
    if identity.first() != Some(&CREDENTIAL_V2) || identity.len() < 1 + 16 + CERTIFICATE_LEN {
        return Err(CredentialError::NotCertified(parsed.user));
    }
    let mut signature = [0u8; CERTIFICATE_LEN];
    signature.copy_from_slice(&identity[17..17 + CERTIFICATE_LEN]);
    let key: &[u8; 32] = signature_key.try_into().map_err(|_| CredentialError::BadSignatureKey)?;
    let transcript = hush_protocol::auth::identity_transcript(&parsed.user, key);
    if !hush_protocol::auth::verify(authority, &transcript, &hush_protocol::frame::Signature(signature)) {
        return Err(CredentialError::BadCertificate(parsed.user));
    }
    Ok(parsed)
}

/// Who an MLS leaf belongs to: the (user, device) pair of a hush credential.
///
/// Encoded in a basic credential's identity as
/// `0x01 || device_id (16 bytes) || user_id (UTF-8, 1..=128 bytes)`:
/// the version byte and the fixed-length device id come first, so the user id
/// is simply the rest, with no separator to escape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeviceCredential {
    /// The user, as named by the app's backend.
    pub user: UserId,
    /// The device: derived from the device's Ed25519 key.
    pub device: DeviceId,
}

/// The device ids of `credentials`, in order.
pub(crate) fn device_ids(credentials: &[DeviceCredential]) -> Vec<DeviceId> {
    credentials.iter().map(|c| c.device).collect()
}

impl DeviceCredential {
    /// The basic credential identity bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 16 + self.user.0.len());
        out.push(CREDENTIAL_V1);
        out.extend_from_slice(&self.device.0);
        out.extend_from_slice(self.user.0.as_bytes());
        out
    }

    /// The basic credential identity bytes with an identity certificate:
    /// `0x02 || device_id (16 bytes) || certificate (64 bytes) || user_id`.
    pub fn encode_certified(&self, certificate: &[u8; CERTIFICATE_LEN]) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 16 + CERTIFICATE_LEN + self.user.0.len());
        out.push(CREDENTIAL_V2);
        out.extend_from_slice(&self.device.0);
        out.extend_from_slice(certificate);
        out.extend_from_slice(self.user.0.as_bytes());
        out
    }

    /// Parses basic credential identity bytes.
    pub fn decode(identity: &[u8]) -> Result<Self, CredentialError> {
        match crate::inspect::credential_identity(identity) {
            Some((device, user)) => Ok(DeviceCredential { user, device }),
            // Well framed, but the user id is not one (empty, control characters).
            None if identity.first() == Some(&CREDENTIAL_V2) => Err(CredentialError::Malformed),
            None if identity.first() == Some(&CREDENTIAL_V1)
                && (16 + 1..=16 + MAX_USER_ID_LEN).contains(&(identity.len() - 1))
                && std::str::from_utf8(&identity[17..]).is_ok() =>
            {
                Err(CredentialError::InvalidUserId)
            }
            None => Err(CredentialError::Malformed),
        }
    }

    /// Parses an MLS credential and checks that its device id is the one
    /// derived from `signature_key`, the Ed25519 key of the same leaf.
    pub fn from_leaf(credential: &Credential, signature_key: &[u8]) -> Result<Self, CredentialError> {
        if credential.credential_type() != CredentialType::Basic {
            return Err(CredentialError::NotBasic);
        }
        let basic = BasicCredential::try_from(credential.clone()).map_err(|_| CredentialError::NotBasic)?;
        let parsed = Self::decode(basic.identity())?;
        let key: &[u8; 32] = signature_key.try_into().map_err(|_| CredentialError::BadSignatureKey)?;
        let derived = DeviceId::from_public_key(key);
        if derived != parsed.device {
            return Err(CredentialError::DeviceIdMismatch {
                claimed: parsed.device,
                derived,
            });
        }
        Ok(parsed)
    }
}

/// A device's secret identity: its Ed25519 signing key and the user it belongs to.
///
/// The same key authenticates the device to the relay (whose device id is
/// derived from it) and signs its MLS leaf, so one key is the device's
/// identity everywhere. The secret never leaves the device's store.
pub struct DeviceIdentity {
    key: SigningKey,
    user: UserId,
    device: DeviceId,
    certificate: Option<[u8; CERTIFICATE_LEN]>,
}

impl std::fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceIdentity")
            .field("user", &self.user)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl DeviceIdentity {
    /// A new device of `user` with a fresh random key.
    pub fn generate(user: UserId) -> Result<Self, CredentialError> {
        let mut secret = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
        Self::from_secret(user, secret)
    }

    /// Rebuilds an identity from its 32-byte Ed25519 secret.
    pub fn from_secret(user: UserId, secret: [u8; 32]) -> Result<Self, CredentialError> {
        if !user.is_valid() {
            return Err(CredentialError::InvalidUserId);
        }
        let key = SigningKey::from_bytes(&secret);
        let device = DeviceId::from_public_key(&key.verifying_key().to_bytes());
        Ok(DeviceIdentity {
            key,
            user,
            device,
            certificate: None,
        })
    }

    /// This identity with the identity authority's certificate ([`certify`]),
    /// carried in every leaf it makes from now on.
    pub fn with_certificate(mut self, certificate: [u8; CERTIFICATE_LEN]) -> Self {
        self.certificate = Some(certificate);
        self
    }

    /// The identity certificate, if it has one.
    pub fn certificate(&self) -> Option<[u8; CERTIFICATE_LEN]> {
        self.certificate
    }

    /// The 32-byte secret, for the device's own store only.
    pub(crate) fn secret(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The user this device belongs to.
    pub fn user_id(&self) -> &UserId {
        &self.user
    }

    /// The device id, derived from the public key exactly as the relay derives it.
    pub fn device_id(&self) -> DeviceId {
        self.device
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The Ed25519 verifying key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs `message` (for example a relay authentication transcript).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    /// This device's credential.
    pub fn credential(&self) -> DeviceCredential {
        DeviceCredential {
            user: self.user.clone(),
            device: self.device,
        }
    }

    /// The MLS credential and signature key of this device's leaves.
    pub(crate) fn credential_with_key(&self) -> CredentialWithKey {
        CredentialWithKey {
            credential: BasicCredential::new(match &self.certificate {
                Some(c) => self.credential().encode_certified(c),
                None => self.credential().encode(),
            })
            .into(),
            signature_key: self.public_key().to_vec().into(),
        }
    }
}

impl Signer for DeviceIdentity {
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignerError> {
        Ok(self.key.sign(payload).to_bytes().to_vec())
    }

    fn signature_scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn credential_round_trips_and_binds_the_key() {
        let id = DeviceIdentity::from_secret(UserId::from("alice"), [3; 32]).unwrap();
        let cred = id.credential();
        assert_eq!(DeviceCredential::decode(&cred.encode()), Ok(cred.clone()));
        let cwk = id.credential_with_key();
        assert_eq!(
            DeviceCredential::from_leaf(&cwk.credential, &id.public_key()),
            Ok(cred.clone())
        );
        let other = DeviceIdentity::from_secret(UserId::from("alice"), [4; 32]).unwrap();
        assert!(matches!(
            DeviceCredential::from_leaf(&cwk.credential, &other.public_key()),
            Err(CredentialError::DeviceIdMismatch { .. })
        ));
    }

    #[test]
    fn malformed_identities_are_refused() {
        assert_eq!(DeviceCredential::decode(&[]), Err(CredentialError::Malformed));
        assert_eq!(DeviceCredential::decode(&[2; 20]), Err(CredentialError::Malformed));
        assert_eq!(DeviceCredential::decode(&[1; 17]), Err(CredentialError::Malformed));
        let mut bad_utf8 = vec![1; 17];
        bad_utf8.push(0xff);
        assert_eq!(DeviceCredential::decode(&bad_utf8), Err(CredentialError::Malformed));
        let mut control = vec![1; 17];
        control.push(b'\n');
        assert_eq!(DeviceCredential::decode(&control), Err(CredentialError::InvalidUserId));
        assert_eq!(
            DeviceIdentity::from_secret(UserId::from(""), [0; 32]).err(),
            Some(CredentialError::InvalidUserId)
        );
    }
}
