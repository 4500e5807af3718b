use super::*;
use proptest::prelude::*;

fn vec_v(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&varint(data.len()));
    out.extend_from_slice(data);
}

fn private_message(group: &[u8], epoch: u64, content_type: u8) -> Vec<u8> {
    let mut m = vec![0, 1, 0, 2];
    vec_v(&mut m, group);
    m.extend_from_slice(&epoch.to_be_bytes());
    m.push(content_type);
    vec_v(&mut m, b"aad");
    vec_v(&mut m, &[9; 12]);
    vec_v(&mut m, &[7; 100]);
    m
}

fn key_package(last_resort: bool) -> Vec<u8> {
    let fields = framing::KeyPackageFields {
        cipher_suite: 1,
        signature_key: &[3; 32],
        identity: b"identity",
        not_before: 0,
        not_after: u64::MAX,
        last_resort,
    };
    framing::key_package(&fields, |_| vec![4; 64])
}

#[test]
fn private_message_header() {
    let m = private_message(b"group-1", 42, 3);
    let h = inspect(&m).unwrap();
    assert_eq!(h.wire_format, WireFormat::PrivateMessage);
    assert_eq!(h.group_id, GroupId(b"group-1".to_vec()));
    assert_eq!(h.epoch, 42);
    assert_eq!(h.content_type, ContentType::Commit);
    assert_eq!(h.content_type.message_kind(), MessageKind::Commit);
}

#[test]
fn every_truncation_is_an_error() {
    let m = private_message(b"group-1", 42, 1);
    for len in 0..m.len() {
        assert!(
            matches!(inspect(&m[..len]), Err(InspectError::Truncated { .. })),
            "prefix of {len} bytes"
        );
    }
    let mut long = m.clone();
    long.push(0);
    assert_eq!(inspect(&long), Err(InspectError::TrailingBytes { count: 1 }));
}

#[test]
fn bad_header_fields_are_named() {
    let mut m = private_message(b"g", 1, 1);
    m[1] = 2;
    assert_eq!(inspect(&m), Err(InspectError::UnsupportedVersion(2)));
    let mut m = private_message(b"g", 1, 1);
    m[3] = 9;
    assert_eq!(inspect(&m), Err(InspectError::UnknownWireFormat(9)));
    assert_eq!(
        inspect(&private_message(b"g", 1, 4)),
        Err(InspectError::UnknownContentType(4))
    );
    assert_eq!(
        inspect(&private_message(b"", 1, 1)),
        Err(InspectError::InvalidGroupId { len: 0 })
    );
    assert_eq!(
        inspect(&private_message(&[1; 256], 1, 1)),
        Err(InspectError::InvalidGroupId { len: 256 })
    );
}

#[test]
fn key_package_summary_reports_last_resort_and_key() {
    for last_resort in [false, true] {
        let m = key_package(last_resort);
        let Inspected::KeyPackage(kp) = inspect_any(&m).unwrap() else {
            panic!("not a key package")
        };
        assert_eq!(kp.last_resort, last_resort);
        assert_eq!(kp.signature_key, vec![3; 32]);
        assert_eq!(kp.credential_identity.as_deref(), Some(&b"identity"[..]));
        assert_eq!(kp.reference.as_ref().map(Vec::len), Some(32));
        assert_eq!((kp.not_before, kp.not_after), (0, u64::MAX));
        assert_eq!(kp.signatures, KeyPackageSignatures::InvalidLeafNode);
        assert_eq!(inspect(&m), Err(InspectError::NotAGroupMessage(WireFormat::KeyPackage)));
    }
}

#[test]
fn welcome_lists_new_members() {
    let mut secrets = Vec::new();
    for i in 0..3u8 {
        vec_v(&mut secrets, &[i; 16]);
        vec_v(&mut secrets, &[0; 32]);
        vec_v(&mut secrets, &[0; 48]);
    }
    let mut m = vec![0, 1, 0, 3, 0, 1];
    vec_v(&mut m, &secrets);
    vec_v(&mut m, &[0; 500]);
    let Inspected::Welcome(w) = inspect_any(&m).unwrap() else {
        panic!("not a welcome")
    };
    assert_eq!(w.cipher_suite, 1);
    assert_eq!(w.new_members, vec![vec![0; 16], vec![1; 16], vec![2; 16]]);
}

proptest! {
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = inspect_any(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(i in 0usize..200, b in any::<u8>(), wire in 0usize..2) {
        let mut m = if wire == 0 { private_message(b"group", 3, 1) } else { key_package(true) };
        let at = i % m.len();
        m[at] = b;
        let _ = inspect_any(&m);
    }
}
