//! The relay's check of MLS bytes before they enter a group log or an inbox
//! (`PROTOCOL.md`, section 8.6). The relay has no keys: it reads what RFC 9420
//! leaves in clear (wire format, group id, epoch, content type) with
//! [`hush_crypto::inspect`] and refuses envelopes that disagree with it, so a
//! member cannot, for example, get a commit sequenced as an application
//! message, or an application message stored under another group's or
//! epoch's name.

use hush_crypto::inspect::{self, InspectError, Inspected, KeyPackageSignatures, framing::content_type_for};
use hush_protocol::frame::Send;
use hush_protocol::{ErrorCode, WireError};

fn invalid_mls(what: &str, e: &InspectError) -> WireError {
    WireError::new(
        ErrorCode::InvalidMls,
        format!("{what} is not a well-formed MLS message: {e}"),
    )
}

fn mismatch(msg: String) -> WireError {
    WireError::new(ErrorCode::MlsMismatch, msg)
}

/// Checks a `Send`: its payload must be an MLS `PrivateMessage` or
/// `PublicMessage` whose group id, epoch and content type are the envelope's
/// group, epoch and kind, and a Welcome riding with it must be an MLS
/// `Welcome`; a commit's `authenticated_data` must be the roster binding of
/// the envelope's roster change (`hush_protocol::roster`). Returns the epoch read from the MLS bytes, by which commits are
/// sequenced.
pub(super) fn group_message(send: &Send) -> Result<u64, WireError> {
    let header = inspect::inspect(&send.payload).map_err(|e| match e {
        InspectError::NotAGroupMessage(format) => WireError::new(
            ErrorCode::InvalidMls,
            format!("payload is an MLS {format:?}, not a PrivateMessage or PublicMessage"),
        ),
        e => invalid_mls("payload", &e),
    })?;
    if header.group_id != send.group {
        return Err(mismatch("the MLS group id differs from the envelope's group".into()));
    }
    if header.epoch != send.epoch {
        return Err(mismatch(format!(
            "the MLS epoch is {}, the envelope says {}",
            header.epoch, send.epoch
        )));
    }
    if header.content_type != content_type_for(send.kind) {
        return Err(mismatch(format!(
            "the MLS content type is {:?}, the envelope's kind is {:?}",
            header.content_type, send.kind
        )));
    }
    if send.kind == hush_protocol::frame::MessageKind::Commit {
        let (add, remove) = send
            .roster
            .as_ref()
            .map(|r| (r.add.as_slice(), r.remove.as_slice()))
            .unwrap_or_default();
        match hush_protocol::roster::parse_binding(&header.authenticated_data) {
            Some((a, r)) if a == add && r == remove => {}
            Some(_) => {
                return Err(mismatch(
                    "the commit's roster binding names other devices than the envelope's roster change".into(),
                ));
            }
            None => {
                return Err(mismatch(
                    "a commit's authenticated_data must be the roster binding of its roster change".into(),
                ));
            }
        }
    }
    if let Some(welcome) = send.roster.as_ref().and_then(|r| r.welcome.as_ref()) {
        match inspect::inspect_any(welcome) {
            Ok(Inspected::Welcome(_)) => {}
            Ok(_) => {
                return Err(WireError::new(
                    ErrorCode::InvalidMls,
                    "the roster's welcome is an MLS message but not a Welcome",
                ));
            }
            Err(e) => return Err(invalid_mls("the roster's welcome", &e)),
        }
    }
    Ok(header.epoch)
}

/// Checks a `SendToDevice` payload: any complete MLS message (a Welcome, a
/// group message, a GroupInfo or a KeyPackage), nothing else.
pub(super) fn direct_payload(payload: &[u8]) -> Result<(), WireError> {
    inspect::inspect_any(payload)
        .map(|_| ())
        .map_err(|e| invalid_mls("payload", &e))
}

/// Checks an uploaded key package: an MLS `KeyPackage` of a cipher suite
/// signed with Ed25519 (1 or 3; a hush device key is an Ed25519 key) whose
/// leaf is the uploader's own: its signature key derives the uploading
/// device's id, and its credential names that device and its user (so nobody
/// can publish a leaf that claims to be someone else); whose leaf node and
/// package signatures verify under that key; whose lifetime has not ended at
/// `now_secs` (and does not end before it begins); with the `last_resort`
/// extension exactly when it is uploaded as a last-resort package.
pub(super) fn own_key_package(
    bytes: &[u8],
    device: hush_protocol::DeviceId,
    user: &hush_protocol::UserId,
    last_resort: bool,
    now_secs: u64,
) -> Result<(), WireError> {
    let summary = match inspect::inspect_any(bytes) {
        Ok(Inspected::KeyPackage(k)) => k,
        Ok(_) => {
            return Err(WireError::new(
                ErrorCode::InvalidMls,
                "an uploaded key package is another kind of MLS message",
            ));
        }
        Err(e) => return Err(invalid_mls("an uploaded key package", &e)),
    };
    if !matches!(summary.cipher_suite, 1 | 3) {
        return Err(WireError::new(
            ErrorCode::InvalidMls,
            format!(
                "a key package's cipher suite is {}; the relay takes suites 1 and 3 (signed with Ed25519, as hush device keys are)",
                summary.cipher_suite
            ),
        ));
    }
    let key: Option<[u8; 32]> = summary.signature_key.as_slice().try_into().ok();
    if key.map(|k| hush_protocol::DeviceId::from_public_key(&k)) != Some(device) {
        return Err(WireError::new(
            ErrorCode::Forbidden,
            "a key package's signature key is not this device's key",
        ));
    }
    let named = summary
        .credential_identity
        .as_deref()
        .and_then(inspect::credential_identity);
    if named.as_ref().is_none_or(|(d, u)| *d != device || u != user) {
        return Err(WireError::new(
            ErrorCode::Forbidden,
            "a key package's credential does not name this device and its user",
        ));
    }
    match summary.signatures {
        KeyPackageSignatures::Valid => {}
        KeyPackageSignatures::InvalidLeafNode => {
            return Err(WireError::new(
                ErrorCode::InvalidMls,
                "a key package's leaf node signature does not verify",
            ));
        }
        _ => {
            return Err(WireError::new(
                ErrorCode::InvalidMls,
                "a key package's signature does not verify",
            ));
        }
    }
    if summary.not_after <= now_secs || summary.not_before > summary.not_after {
        return Err(WireError::new(
            ErrorCode::InvalidMls,
            "a key package's lifetime has ended or ends before it begins",
        ));
    }
    if summary.last_resort != last_resort {
        return Err(WireError::new(
            ErrorCode::InvalidMls,
            "last-resort key packages carry the last_resort extension, one-time ones do not",
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::Bytes;
    use hush_crypto::inspect::framing;
    use hush_protocol::GroupId;
    use hush_protocol::frame::{MessageKind, RosterChange};

    use super::*;

    fn send(kind: MessageKind, epoch: u64, payload: Vec<u8>) -> Send {
        Send {
            group: GroupId(b"g".to_vec()),
            client_msg_id: 1,
            kind,
            epoch,
            payload: Bytes::from(payload),
            roster: None,
        }
    }

    #[test]
    fn matching_envelopes_pass_and_return_the_mls_epoch() {
        let g = GroupId(b"g".to_vec());
        for kind in [MessageKind::Application, MessageKind::Proposal] {
            let s = send(kind, 9, framing::private_message(&g, 9, kind, b"x"));
            assert_eq!(group_message(&s), Ok(9));
        }
        let s = send(MessageKind::Commit, 9, framing::commit(&g, 9, &[], &[], b"x"));
        assert_eq!(group_message(&s), Ok(9));
    }

    #[test]
    fn a_commit_must_carry_the_binding_of_its_roster_change() {
        let g = GroupId(b"g".to_vec());
        let (a, b) = (hush_protocol::DeviceId([1; 16]), hush_protocol::DeviceId([2; 16]));
        let with_roster = |payload: Vec<u8>, add: Vec<_>, remove: Vec<_>| {
            let mut s = send(MessageKind::Commit, 3, payload);
            s.roster = Some(RosterChange {
                add,
                remove,
                welcome: None,
            });
            s
        };
        let ok = with_roster(framing::commit(&g, 3, &[a], &[b], b"c"), vec![a], vec![b]);
        assert_eq!(group_message(&ok), Ok(3));
        // No binding, a binding of other devices, a binding of the same
        // devices in the other list: all refused.
        for (payload, add, remove) in [
            (
                framing::private_message(&g, 3, MessageKind::Commit, b"c"),
                vec![],
                vec![],
            ),
            (framing::commit(&g, 3, &[], &[], b"c"), vec![], vec![b]),
            (framing::commit(&g, 3, &[a], &[], b"c"), vec![a], vec![b]),
            (framing::commit(&g, 3, &[b], &[a], b"c"), vec![a], vec![b]),
        ] {
            let e = group_message(&with_roster(payload, add, remove)).unwrap_err();
            assert_eq!(e.code, ErrorCode::MlsMismatch, "{e:?}");
        }
    }

    #[test]
    fn each_disagreement_has_its_code() {
        let g = GroupId(b"g".to_vec());
        let other = GroupId(b"h".to_vec());
        let app = MessageKind::Application;
        let code = |s: Send| group_message(&s).unwrap_err().code;
        assert_eq!(
            code(send(app, 1, framing::private_message(&other, 1, app, b""))),
            ErrorCode::MlsMismatch
        );
        assert_eq!(
            code(send(app, 1, framing::private_message(&g, 2, app, b""))),
            ErrorCode::MlsMismatch
        );
        let commit = framing::private_message(&g, 1, MessageKind::Commit, b"");
        assert_eq!(code(send(app, 1, commit.clone())), ErrorCode::MlsMismatch);
        assert_eq!(code(send(MessageKind::Proposal, 1, commit)), ErrorCode::MlsMismatch);
        assert_eq!(code(send(app, 1, b"garbage".to_vec())), ErrorCode::InvalidMls);
        assert_eq!(code(send(app, 1, framing::welcome(b""))), ErrorCode::InvalidMls);
        let mut with_bad_welcome = send(MessageKind::Commit, 1, framing::commit(&g, 1, &[], &[], b""));
        with_bad_welcome.roster = Some(RosterChange {
            add: vec![],
            remove: vec![],
            welcome: Some(Bytes::from_static(b"welcome")),
        });
        assert_eq!(code(with_bad_welcome), ErrorCode::InvalidMls);
    }

    #[test]
    fn direct_payloads_must_be_some_mls_message() {
        assert!(direct_payload(&framing::welcome(b"w")).is_ok());
        assert!(
            direct_payload(&framing::private_message(
                &GroupId(b"g".to_vec()),
                0,
                MessageKind::Application,
                b""
            ))
            .is_ok()
        );
        assert_eq!(direct_payload(b"hello").unwrap_err().code, ErrorCode::InvalidMls);
        assert_eq!(direct_payload(&[]).unwrap_err().code, ErrorCode::InvalidMls);
    }
}
