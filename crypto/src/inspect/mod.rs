//! Reading the clear parts of MLS wire bytes, without keys: what the relay
//! checks before it stores or sequences a message.
//!
//! RFC 9420 leaves `group_id`, `epoch` and `content_type` in clear in both
//! `PublicMessage` and `PrivateMessage` (§6), precisely so a delivery service
//! can order handshake messages. [`inspect`] reads them; [`inspect_any`] also
//! recognises the other wire formats (Welcome, GroupInfo, KeyPackage) and
//! reports what they carry in clear.
//!
//! This module is a hand-written parser with no dependency on the MLS library,
//! so the relay can use it with `default-features = false`. It never panics
//! and never allocates more than it returns (and, to verify a key package's
//! signatures, one copy of the signed part): every length is checked against
//! the bytes that remain before anything is read. Signatures are checked with
//! the Ed25519 verifier hush's own handshake uses (`hush_protocol::auth`).
//!
//! What is checked, per wire format:
//!
//! | wire format | fields read | whole message parsed |
//! |---|---|---|
//! | `PrivateMessage` | group id, epoch, content type, then every remaining field | yes, no trailing bytes |
//! | `PublicMessage` | group id, epoch, sender, authenticated data, content type | application content only (proposal and commit bodies are not parsed) |
//! | `Welcome` | cipher suite, key package references of the new members | yes |
//! | `GroupInfo` | group context (cipher suite, group id, epoch) | group context only |
//! | `KeyPackage` | cipher suite, signature key, credential, lifetime, last-resort extension; both signatures verified for an Ed25519 cipher suite | yes |

pub mod framing;
mod reader;

use hush_protocol::limits::MAX_USER_ID_LEN;
use hush_protocol::{DeviceId, GroupId, UserId, frame::MessageKind, limits::MAX_GROUP_ID_LEN};
use sha2::{Digest, Sha256, Sha384, Sha512};

use reader::Reader;

/// `mls10` in RFC 9420's `ProtocolVersion`.
const MLS10: u16 = 1;
/// `last_resort` in the IANA "MLS Extension Types" registry (RFC 9420 §17.3).
const LAST_RESORT_EXTENSION: u16 = 0x000a;

/// The MLS wire formats (RFC 9420 §17.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WireFormat {
    /// 1: `mls_public_message`, signed but not encrypted.
    PublicMessage,
    /// 2: `mls_private_message`, encrypted; the default for everything hush sends in a group.
    PrivateMessage,
    /// 3: `mls_welcome`.
    Welcome,
    /// 4: `mls_group_info`.
    GroupInfo,
    /// 5: `mls_key_package`.
    KeyPackage,
}

impl WireFormat {
    fn from_u16(value: u16) -> Result<Self, InspectError> {
        Ok(match value {
            1 => WireFormat::PublicMessage,
            2 => WireFormat::PrivateMessage,
            3 => WireFormat::Welcome,
            4 => WireFormat::GroupInfo,
            5 => WireFormat::KeyPackage,
            other => return Err(InspectError::UnknownWireFormat(other)),
        })
    }
}

/// What a group message carries (RFC 9420 `ContentType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContentType {
    /// 1: application data.
    Application,
    /// 2: a standalone proposal.
    Proposal,
    /// 3: a commit; it moves the group from the header's epoch to the next.
    Commit,
}

impl ContentType {
    fn from_u8(value: u8) -> Result<Self, InspectError> {
        Ok(match value {
            1 => ContentType::Application,
            2 => ContentType::Proposal,
            3 => ContentType::Commit,
            other => return Err(InspectError::UnknownContentType(other)),
        })
    }

    /// The relay's name for this kind of log entry.
    pub fn message_kind(self) -> MessageKind {
        match self {
            ContentType::Application => MessageKind::Application,
            ContentType::Proposal => MessageKind::Proposal,
            ContentType::Commit => MessageKind::Commit,
        }
    }
}

/// The clear header of a group message (`PublicMessage` or `PrivateMessage`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MlsHeader {
    /// Which of the two group-message wire formats carried it.
    pub wire_format: WireFormat,
    /// The MLS group id.
    pub group_id: GroupId,
    /// The epoch the message was sent in. A commit with epoch `E` is valid only
    /// while the group is at `E`, and moves it to `E + 1`.
    pub epoch: u64,
    /// Application, proposal or commit.
    pub content_type: ContentType,
    /// The message's `authenticated_data`: in clear, covered by the sender's
    /// signature. A hush commit carries its roster binding here
    /// ([`hush_protocol::roster`]).
    pub authenticated_data: Vec<u8>,
}

/// The clear parts of a `Welcome`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WelcomeSummary {
    /// The cipher suite (RFC 9420 §17.1).
    pub cipher_suite: u16,
    /// One `KeyPackageRef` per new member, in order: the reference of the key
    /// package the Welcome is encrypted to (compare with [`KeyPackageSummary::reference`]).
    pub new_members: Vec<Vec<u8>>,
}

/// The clear group context at the head of a `GroupInfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupInfoSummary {
    /// The cipher suite.
    pub cipher_suite: u16,
    /// The MLS group id.
    pub group_id: GroupId,
    /// The epoch the group info describes.
    pub epoch: u64,
}

/// Whether a `KeyPackage`'s two signatures hold (RFC 9420 §5.1.2 `SignWithLabel`):
/// the leaf node's over `LeafNodeTBS` and the package's over
/// `KeyPackageTBS`, both under the leaf's signature key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyPackageSignatures {
    /// Both verify (strict Ed25519).
    Valid,
    /// The cipher suite's signature scheme is not Ed25519 (only suites 1 and
    /// 3 use it), so they were not checked.
    NotEd25519,
    /// The leaf node's signature does not verify (or the key is not an
    /// Ed25519 key, or the signature is not 64 bytes).
    InvalidLeafNode,
    /// The leaf node's signature verifies, the key package's does not.
    InvalidKeyPackage,
}

/// The clear contents of a `KeyPackage`, and whether its signatures verify.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyPackageSummary {
    /// The cipher suite.
    pub cipher_suite: u16,
    /// The leaf's lifetime, `not_before` (seconds since the Unix epoch).
    pub not_before: u64,
    /// The leaf's lifetime, `not_after` (seconds since the Unix epoch).
    pub not_after: u64,
    /// Whether the leaf node's and the package's signatures verify.
    pub signatures: KeyPackageSignatures,
    /// The leaf's signature public key (for hush: the device's Ed25519 key, from
    /// which the relay derives the device id).
    pub signature_key: Vec<u8>,
    /// The identity of a basic credential (`None` for an X.509 credential).
    pub credential_identity: Option<Vec<u8>>,
    /// Whether the key package carries the `last_resort` extension.
    pub last_resort: bool,
    /// The `KeyPackageRef` (RFC 9420 §5.2), `None` for an unknown cipher suite.
    pub reference: Option<Vec<u8>>,
}

/// What [`inspect_any`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inspected {
    /// A `PublicMessage` or `PrivateMessage`.
    Message(MlsHeader),
    /// A `Welcome`.
    Welcome(WelcomeSummary),
    /// A `GroupInfo`.
    GroupInfo(GroupInfoSummary),
    /// A `KeyPackage`.
    KeyPackage(KeyPackageSummary),
}

/// Why bytes are not a well-formed MLS message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// The input ends inside `field`.
    #[error("truncated MLS message: ends inside {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// A length header is invalid or not in its shortest form.
    #[error("invalid length header for {field}")]
    InvalidLength {
        /// The field whose length was being read.
        field: &'static str,
    },
    /// Bytes follow a complete message.
    #[error("{count} trailing bytes after the MLS message")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// The protocol version is not MLS 1.0.
    #[error("unsupported MLS protocol version {0}")]
    UnsupportedVersion(u16),
    /// The wire format is not one of RFC 9420's five.
    #[error("unknown MLS wire format {0}")]
    UnknownWireFormat(u16),
    /// The content type is not application, proposal or commit.
    #[error("unknown MLS content type {0}")]
    UnknownContentType(u8),
    /// The sender type of a `PublicMessage` is unknown.
    #[error("unknown MLS sender type {0}")]
    UnknownSenderType(u8),
    /// The credential type of a key package is neither basic nor X.509.
    #[error("unknown MLS credential type {0}")]
    UnknownCredentialType(u16),
    /// The leaf node source of a key package is not `key_package`.
    #[error("key package leaf node has source {0}, expected key_package (1)")]
    InvalidLeafNodeSource(u8),
    /// The group id is empty or longer than hush allows.
    #[error("group id of {len} bytes is outside 1..={MAX_GROUP_ID_LEN}")]
    InvalidGroupId {
        /// Its length.
        len: usize,
    },
    /// [`inspect`] was given a Welcome, GroupInfo or KeyPackage.
    #[error("expected a group message, got {0:?}")]
    NotAGroupMessage(WireFormat),
}

/// Reads the clear header of a group message: the check the relay runs on every
/// envelope before comparing its claimed group, epoch and kind with the MLS bytes.
///
/// ```
/// use hush_crypto::inspect::{inspect, InspectError};
///
/// // version 1, PrivateMessage, group "g", epoch 7, commit, then four empty vectors.
/// let bytes = [0, 1, 0, 2, 1, b'g', 0, 0, 0, 0, 0, 0, 0, 7, 3, 0, 0, 0];
/// let header = inspect(&bytes).unwrap();
/// assert_eq!(header.epoch, 7);
/// assert_eq!(header.group_id.0, b"g");
/// assert_eq!(inspect(&bytes[..9]), Err(InspectError::Truncated { field: "epoch" }));
/// ```
pub fn inspect(mls_bytes: &[u8]) -> Result<MlsHeader, InspectError> {
    match inspect_any(mls_bytes)? {
        Inspected::Message(header) => Ok(header),
        Inspected::Welcome(_) => Err(InspectError::NotAGroupMessage(WireFormat::Welcome)),
        Inspected::GroupInfo(_) => Err(InspectError::NotAGroupMessage(WireFormat::GroupInfo)),
        Inspected::KeyPackage(_) => Err(InspectError::NotAGroupMessage(WireFormat::KeyPackage)),
    }
}

/// Reads any `MLSMessage` (RFC 9420 §6) and reports what it carries in clear.
pub fn inspect_any(mls_bytes: &[u8]) -> Result<Inspected, InspectError> {
    let mut r = Reader::new(mls_bytes);
    read_version(&mut r)?;
    let wire_format = WireFormat::from_u16(r.u16("wire_format")?)?;
    let out = match wire_format {
        WireFormat::PrivateMessage => Inspected::Message(private_message(&mut r)?),
        WireFormat::PublicMessage => Inspected::Message(public_message(&mut r)?),
        WireFormat::Welcome => Inspected::Welcome(welcome(&mut r)?),
        WireFormat::GroupInfo => Inspected::GroupInfo(group_info(&mut r)?),
        WireFormat::KeyPackage => Inspected::KeyPackage(key_package(&mut r)?),
    };
    Ok(out)
}

/// The (device, user) a hush v1 basic-credential identity names:
/// `0x01 || device_id (16 bytes) || user_id (UTF-8, 1..=128 bytes)`. Keyless:
/// the relay uses it to check that an uploaded key package is the
/// uploader's; `None` for anything else.
///
/// Version 2 (`0x02 || device_id || certificate (64 bytes) || user_id`) adds
/// an identity authority's signature; the (device, user) it names is read
/// the same way, the signature is not checked here.
pub fn credential_identity(identity: &[u8]) -> Option<(DeviceId, UserId)> {
    let rest = match identity.split_first()? {
        (&1, rest) => rest,
        (&2, rest) if rest.len() > 16 + 64 => {
            let (device, tail) = rest.split_at(16);
            return credential_identity(&[&[1u8][..], device, &tail[64..]].concat());
        }
        _ => return None,
    };
    if rest.len() < 16 + 1 || rest.len() > 16 + MAX_USER_ID_LEN {
        return None;
    }
    let (device, user) = rest.split_at(16);
    let device = DeviceId(device.try_into().ok()?);
    let user = UserId(std::str::from_utf8(user).ok()?.to_owned());
    user.is_valid().then_some((device, user))
}

fn read_version(r: &mut Reader<'_>) -> Result<(), InspectError> {
    match r.u16("version")? {
        MLS10 => Ok(()),
        other => Err(InspectError::UnsupportedVersion(other)),
    }
}

fn group_id(r: &mut Reader<'_>) -> Result<GroupId, InspectError> {
    let id = r.opaque("group_id")?;
    if id.is_empty() || id.len() > MAX_GROUP_ID_LEN {
        return Err(InspectError::InvalidGroupId { len: id.len() });
    }
    Ok(GroupId(id.to_vec()))
}

/// `PrivateMessage`: group_id<V>, epoch, content_type, authenticated_data<V>,
/// encrypted_sender_data<V>, ciphertext<V>.
fn private_message(r: &mut Reader<'_>) -> Result<MlsHeader, InspectError> {
    Ok(private_message_fields(r)?.0)
}

/// [`private_message`], also returning the `ciphertext` field.
fn private_message_fields<'a>(r: &mut Reader<'a>) -> Result<(MlsHeader, &'a [u8]), InspectError> {
    let group_id = group_id(r)?;
    let epoch = r.u64("epoch")?;
    let content_type = ContentType::from_u8(r.u8("content_type")?)?;
    let authenticated_data = r.opaque("authenticated_data")?.to_vec();
    r.opaque("encrypted_sender_data")?;
    let ciphertext = r.opaque("ciphertext")?;
    r.finish()?;
    let header = MlsHeader {
        wire_format: WireFormat::PrivateMessage,
        group_id,
        epoch,
        content_type,
        authenticated_data,
    };
    Ok((header, ciphertext))
}

/// `PublicMessage`: FramedContent (group_id<V>, epoch, sender,
/// authenticated_data<V>, content_type, body), then auth data and tags.
fn public_message(r: &mut Reader<'_>) -> Result<MlsHeader, InspectError> {
    let group_id = group_id(r)?;
    let epoch = r.u64("epoch")?;
    let sender_type = r.u8("sender_type")?;
    match sender_type {
        // member (leaf index) and external (sender index)
        1 | 2 => {
            r.u32("sender_index")?;
        }
        // new_member_proposal, new_member_commit
        3 | 4 => {}
        other => return Err(InspectError::UnknownSenderType(other)),
    }
    let authenticated_data = r.opaque("authenticated_data")?.to_vec();
    let content_type = ContentType::from_u8(r.u8("content_type")?)?;
    if content_type == ContentType::Application {
        r.opaque("application_data")?;
        r.opaque("signature")?;
        if sender_type == 1 {
            r.opaque("membership_tag")?;
        }
        r.finish()?;
    }
    Ok(MlsHeader {
        wire_format: WireFormat::PublicMessage,
        group_id,
        epoch,
        content_type,
        authenticated_data,
    })
}

/// `Welcome`: cipher_suite, secrets<V> of (new_member<V>, kem_output<V>,
/// ciphertext<V>), encrypted_group_info<V>.
fn welcome(r: &mut Reader<'_>) -> Result<WelcomeSummary, InspectError> {
    let cipher_suite = r.u16("cipher_suite")?;
    let mut secrets = Reader::new(r.opaque("secrets")?);
    let mut new_members = Vec::new();
    while secrets.remaining() > 0 {
        new_members.push(secrets.opaque("new_member")?.to_vec());
        secrets.opaque("kem_output")?;
        secrets.opaque("ciphertext")?;
    }
    r.opaque("encrypted_group_info")?;
    r.finish()?;
    Ok(WelcomeSummary {
        cipher_suite,
        new_members,
    })
}

/// `GroupInfo` starts with a `GroupContext`: version, cipher_suite,
/// group_id<V>, epoch, ...
fn group_info(r: &mut Reader<'_>) -> Result<GroupInfoSummary, InspectError> {
    read_version(r)?;
    let cipher_suite = r.u16("cipher_suite")?;
    let group_id = group_id(r)?;
    let epoch = r.u64("epoch")?;
    Ok(GroupInfoSummary {
        cipher_suite,
        group_id,
        epoch,
    })
}

/// `KeyPackage`: version, cipher_suite, init_key<V>, leaf_node,
/// extensions<V>, signature<V>.
fn key_package(r: &mut Reader<'_>) -> Result<KeyPackageSummary, InspectError> {
    let start = r.position();
    read_version(r)?;
    let cipher_suite = r.u16("cipher_suite")?;
    r.opaque("init_key")?;
    // LeafNode
    let leaf_start = r.position();
    r.opaque("encryption_key")?;
    let signature_key = r.opaque("signature_key")?.to_vec();
    let credential_identity = match r.u16("credential_type")? {
        1 => Some(r.opaque("identity")?.to_vec()),
        2 => {
            r.opaque("certificates")?;
            None
        }
        other => return Err(InspectError::UnknownCredentialType(other)),
    };
    for field in [
        "versions",
        "cipher_suites",
        "extension_types",
        "proposal_types",
        "credential_types",
    ] {
        r.opaque(field)?;
    }
    let (not_before, not_after) = match r.u8("leaf_node_source")? {
        1 => (r.u64("not_before")?, r.u64("not_after")?),
        other => return Err(InspectError::InvalidLeafNodeSource(other)),
    };
    extensions(r, "leaf_node_extensions")?;
    let leaf_tbs = r.consumed_since(leaf_start);
    let leaf_signature = r.opaque("leaf_node_signature")?;
    let last_resort = extensions(r, "extensions")?.contains(&LAST_RESORT_EXTENSION);
    let tbs = r.consumed_since(start);
    let signature = r.opaque("signature")?;
    let reference = key_package_ref(cipher_suite, r.consumed_since(start));
    r.finish()?;
    let signatures = if !matches!(cipher_suite, 1 | 3) {
        KeyPackageSignatures::NotEd25519
    } else if !verify_with_label(&signature_key, "LeafNodeTBS", leaf_tbs, leaf_signature) {
        KeyPackageSignatures::InvalidLeafNode
    } else if !verify_with_label(&signature_key, "KeyPackageTBS", tbs, signature) {
        KeyPackageSignatures::InvalidKeyPackage
    } else {
        KeyPackageSignatures::Valid
    };
    Ok(KeyPackageSummary {
        cipher_suite,
        not_before,
        not_after,
        signatures,
        signature_key,
        credential_identity,
        last_resort,
        reference,
    })
}

/// `SignContent` (RFC 9420 §5.1.2): `opaque label<V> = "MLS 1.0 " || label`,
/// then `opaque content<V>`: the bytes `SignWithLabel` signs.
fn sign_content(label: &str, content: &[u8]) -> Vec<u8> {
    let label = ["MLS 1.0 ", label].concat();
    let mut out = varint(label.len());
    out.extend_from_slice(label.as_bytes());
    out.extend_from_slice(&varint(content.len()));
    out.extend_from_slice(content);
    out
}

/// `VerifyWithLabel` for an Ed25519 key (strict verification).
fn verify_with_label(key: &[u8], label: &str, content: &[u8], signature: &[u8]) -> bool {
    let (Ok(key), Ok(signature)) = (<&[u8; 32]>::try_from(key), <[u8; 64]>::try_from(signature)) else {
        return false;
    };
    hush_protocol::auth::verify(
        key,
        &sign_content(label, content),
        &hush_protocol::frame::Signature(signature),
    )
}

/// Reads `Extension extensions<V>` and returns the extension types.
fn extensions(r: &mut Reader<'_>, field: &'static str) -> Result<Vec<u16>, InspectError> {
    let mut list = Reader::new(r.opaque(field)?);
    let mut types = Vec::new();
    while list.remaining() > 0 {
        types.push(list.u16("extension_type")?);
        list.opaque("extension_data")?;
    }
    Ok(types)
}

/// `RefHash("MLS 1.0 KeyPackage Reference", KeyPackage)` (RFC 9420 §5.2), with
/// the hash of the cipher suite.
fn key_package_ref(cipher_suite: u16, key_package: &[u8]) -> Option<Vec<u8>> {
    fn ref_hash<D: Digest>(value: &[u8]) -> Vec<u8> {
        const LABEL: &[u8] = b"MLS 1.0 KeyPackage Reference";
        let mut h = D::new();
        h.update(varint(LABEL.len()));
        h.update(LABEL);
        h.update(varint(value.len()));
        h.update(value);
        h.finalize().to_vec()
    }
    match cipher_suite {
        1..=3 => Some(ref_hash::<Sha256>(key_package)),
        4..=6 => Some(ref_hash::<Sha512>(key_package)),
        7 => Some(ref_hash::<Sha384>(key_package)),
        _ => None,
    }
}

/// The RFC 9420 §2.1.2 length header for `len` (lengths here come from a
/// parsed input, so they fit in 30 bits).
fn varint(len: usize) -> Vec<u8> {
    match len {
        0..=63 => vec![len as u8],
        64..=16383 => (0x4000u16 | len as u16).to_be_bytes().to_vec(),
        _ => (0x8000_0000u32 | (len as u32 & 0x3fff_ffff)).to_be_bytes().to_vec(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
