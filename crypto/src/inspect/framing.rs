//! Minimal, syntactically valid MLS framing around opaque bytes: what the
//! relay's check reads, and nothing more.
//!
//! The relay cannot decrypt and so cannot tell a real `PrivateMessage` from
//! one whose fields hold arbitrary bytes. Tests, load generators and clients
//! that exercise the relay without a full MLS stack use these builders to
//! send bytes the relay accepts; no MLS member can decrypt them. They are
//! also the layout `PROTOCOL.md` (section "MLS payloads") describes, in code.

use hush_protocol::{DeviceId, GroupId, frame::MessageKind};

use super::{ContentType, Reader, private_message_fields, read_version, varint};

/// `version = mls10 (1)` then `wire_format`, both big-endian `u16`.
fn mls_message_head(wire_format: u16) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&wire_format.to_be_bytes());
    out
}

/// Appends `opaque<V>`: the RFC 9420 §2.1.2 length header, then the bytes.
///
/// # Panics
///
/// If `data` is 2³⁰ bytes or longer (MLS cannot express it).
fn put_opaque(out: &mut Vec<u8>, data: &[u8]) {
    assert!(data.len() < 1 << 30, "MLS vectors are shorter than 2^30 bytes");
    out.extend_from_slice(&varint(data.len()));
    out.extend_from_slice(data);
}

/// The content type the relay expects for a kind of log entry.
pub fn content_type_for(kind: MessageKind) -> ContentType {
    match kind {
        MessageKind::Application => ContentType::Application,
        MessageKind::Commit => ContentType::Commit,
        MessageKind::Proposal => ContentType::Proposal,
    }
}

/// An MLS `PrivateMessage` for `group` at `epoch` whose content type matches
/// `kind`, with empty `authenticated_data` and `encrypted_sender_data`, and
/// `body` as its `ciphertext`.
///
/// ```
/// use hush_crypto::inspect::{framing, inspect};
/// use hush_protocol::{GroupId, frame::MessageKind};
///
/// let group = GroupId(b"g".to_vec());
/// let bytes = framing::private_message(&group, 7, MessageKind::Commit, b"xyz");
/// assert_eq!(bytes, [0, 1, 0, 2, 1, b'g', 0, 0, 0, 0, 0, 0, 0, 7, 3, 0, 0, 3, b'x', b'y', b'z']);
/// assert_eq!(inspect(&bytes).unwrap().epoch, 7);
/// assert_eq!(framing::private_message_body(&bytes).unwrap(), b"xyz");
/// ```
///
/// # Panics
///
/// If the group id or `body` is 2³⁰ bytes or longer.
pub fn private_message(group: &GroupId, epoch: u64, kind: MessageKind, body: &[u8]) -> Vec<u8> {
    private_message_with_aad(group, epoch, kind, &[], body)
}

/// A commit `PrivateMessage` for `group` at `epoch` carrying the roster
/// binding of `add` and `remove` ([`hush_protocol::roster::binding`]) as its
/// `authenticated_data`, as the relay requires, and `body` as its ciphertext.
///
/// ```
/// use hush_crypto::inspect::{framing, inspect};
/// use hush_protocol::{DeviceId, GroupId, roster};
///
/// let group = GroupId(b"g".to_vec());
/// let bytes = framing::commit(&group, 3, &[DeviceId([7; 16])], &[], b"c");
/// let header = inspect(&bytes).unwrap();
/// assert_eq!(roster::parse_binding(&header.authenticated_data), Some((vec![DeviceId([7; 16])], vec![])));
/// ```
pub fn commit(group: &GroupId, epoch: u64, add: &[DeviceId], remove: &[DeviceId], body: &[u8]) -> Vec<u8> {
    let aad = hush_protocol::roster::binding(add, remove);
    private_message_with_aad(group, epoch, MessageKind::Commit, &aad, body)
}

/// [`private_message`] with `aad` as its `authenticated_data`.
///
/// # Panics
///
/// If the group id, `aad` or `body` is 2³⁰ bytes or longer.
pub fn private_message_with_aad(group: &GroupId, epoch: u64, kind: MessageKind, aad: &[u8], body: &[u8]) -> Vec<u8> {
    let content_type: u8 = match content_type_for(kind) {
        ContentType::Application => 1,
        ContentType::Proposal => 2,
        ContentType::Commit => 3,
    };
    let mut out = mls_message_head(2);
    out.reserve(group.0.len() + aad.len() + body.len() + 20);
    put_opaque(&mut out, &group.0);
    out.extend_from_slice(&epoch.to_be_bytes());
    out.push(content_type);
    put_opaque(&mut out, aad); // authenticated_data
    put_opaque(&mut out, &[]); // encrypted_sender_data
    put_opaque(&mut out, body); // ciphertext
    out
}

/// The `ciphertext` field of a `PrivateMessage` (for [`private_message`], its `body`).
pub fn private_message_body(mls_bytes: &[u8]) -> Result<&[u8], super::InspectError> {
    let mut r = Reader::new(mls_bytes);
    read_version(&mut r)?;
    let wire_format = r.u16("wire_format")?;
    if wire_format != 2 {
        return Err(super::InspectError::NotAGroupMessage(super::WireFormat::from_u16(
            wire_format,
        )?));
    }
    let (_, ciphertext) = private_message_fields(&mut r)?;
    Ok(ciphertext)
}

/// An MLS `Welcome` for cipher suite 1 with one new member entry (reference,
/// KEM output and ciphertext all empty) and `body` as its
/// `encrypted_group_info`.
///
/// ```
/// use hush_crypto::inspect::{framing, inspect_any, Inspected};
///
/// let bytes = framing::welcome(b"w");
/// assert_eq!(bytes, [0, 1, 0, 3, 0, 1, 3, 0, 0, 0, 1, b'w']);
/// assert!(matches!(inspect_any(&bytes), Ok(Inspected::Welcome(_))));
/// ```
pub fn welcome(body: &[u8]) -> Vec<u8> {
    let mut out = mls_message_head(3);
    out.extend_from_slice(&1u16.to_be_bytes()); // cipher_suite
    put_opaque(&mut out, &[0, 0, 0]); // secrets: one EncryptedGroupSecrets of three empty vectors
    put_opaque(&mut out, body); // encrypted_group_info
    out
}

/// The fields of a key package built by [`key_package`].
#[derive(Clone, Debug)]
pub struct KeyPackageFields<'a> {
    /// The cipher suite (1 is the one hush uses).
    pub cipher_suite: u16,
    /// The leaf's signature key (a hush device's Ed25519 public key).
    pub signature_key: &'a [u8],
    /// The basic credential's identity (for hush: `01 || device || user`).
    pub identity: &'a [u8],
    /// The leaf's lifetime, in seconds since the Unix epoch.
    pub not_before: u64,
    /// The end of the leaf's lifetime.
    pub not_after: u64,
    /// Whether to add the `last_resort` extension.
    pub last_resort: bool,
}

/// A `KeyPackage` (wire format 5) with a basic credential, fixed placeholder
/// HPKE keys and capabilities, and the two signatures `sign` makes: it is
/// given the `SignContent` bytes (RFC 9420 §5.1.2) of `LeafNodeTBS`, then of
/// `KeyPackageTBS`. Its HPKE keys are not real keys, so no member can add it
/// to a group; it is for exercising the relay's upload check.
pub fn key_package(fields: &KeyPackageFields<'_>, sign: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let mut leaf = Vec::new();
    put_opaque(&mut leaf, &[2; 32]); // encryption_key
    put_opaque(&mut leaf, fields.signature_key);
    leaf.extend_from_slice(&1u16.to_be_bytes()); // basic credential
    put_opaque(&mut leaf, fields.identity);
    let suite = fields.cipher_suite.to_be_bytes();
    for list in [&[0u8, 1][..], &suite, &[0, 10], &[], &[0, 1]] {
        put_opaque(&mut leaf, list); // versions, cipher suites, extensions, proposals, credentials
    }
    leaf.push(1); // leaf_node_source: key_package
    leaf.extend_from_slice(&fields.not_before.to_be_bytes());
    leaf.extend_from_slice(&fields.not_after.to_be_bytes());
    put_opaque(&mut leaf, &[]); // leaf node extensions
    let leaf_signature = sign(&super::sign_content("LeafNodeTBS", &leaf));
    put_opaque(&mut leaf, &leaf_signature);

    let mut tbs = Vec::new();
    tbs.extend_from_slice(&1u16.to_be_bytes()); // version
    tbs.extend_from_slice(&suite);
    put_opaque(&mut tbs, &[1; 32]); // init_key
    tbs.extend_from_slice(&leaf);
    put_opaque(&mut tbs, if fields.last_resort { &[0, 10, 0][..] } else { &[] });
    let signature = sign(&super::sign_content("KeyPackageTBS", &tbs));
    let mut out = mls_message_head(5);
    out.extend_from_slice(&tbs);
    put_opaque(&mut out, &signature);
    out
}
