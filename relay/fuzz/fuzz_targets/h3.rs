//! Bytes from a peer fed to the relay's HTTP/3 parsers: the control stream,
//! the QPACK encoder and decoder streams, the CONNECT stream's capsules, the
//! start of a bidirectional stream, SETTINGS, request headers and datagrams.
//!
//! Checks: no parser panics; a stream parser gives the same outcome (its
//! events, or its first error) whether its input arrives whole or cut in two
//! at any point; whatever
//! `bidi_head` finds in a prefix it finds again in the whole input; an
//! accepted datagram's payload is what follows its prefix, and re-encodes.
#![no_main]

use bytes::Bytes;
use hush_relay::fuzzing::h3::*;
use libfuzzer_sys::fuzz_target;

/// The outcome of a stream parser over `chunks`: every event, or the first
/// error (the relay closes the connection there, so events before it in the
/// same read do not matter).
fn run<E: PartialEq + std::fmt::Debug>(
    chunks: &[&[u8]],
    mut input: impl FnMut(Option<&[u8]>) -> Result<Vec<E>, H3Error>,
) -> (Vec<E>, Option<u32>) {
    let mut events = Vec::new();
    for chunk in chunks {
        match input(Some(chunk)) {
            Ok(e) => events.extend(e),
            Err(e) => return (Vec::new(), Some(e.code)),
        }
    }
    (events, None)
}

fn same_split<E: PartialEq + std::fmt::Debug>(
    data: &[u8],
    cut: usize,
    new: impl Fn() -> Box<dyn FnMut(Option<&[u8]>) -> Result<Vec<E>, H3Error>>,
) {
    let whole = run(&[data], new());
    let split = run(&[&data[..cut], &data[cut..]], new());
    assert_eq!(whole, split, "cut at {cut}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, data)) = data.split_first() else {
        return;
    };
    let cut = if data.is_empty() { 0 } else { usize::from(which) * 7 % (data.len() + 1) };
    match which % 8 {
        0 => same_split(data, cut, || {
            let mut c = ControlIn::default();
            Box::new(move |b| c.input(b))
        }),
        1 => same_split(data, cut, || {
            let mut e = EncoderIn::default();
            Box::new(move |b| e.input(b).map(|()| Vec::<()>::new()))
        }),
        2 => same_split(data, cut, || {
            let mut d = DecoderIn::default();
            Box::new(move |b| d.input(b).map(|()| Vec::<()>::new()))
        }),
        3 => {
            // Stops at the first close, as the session does.
            same_split(data, cut, || {
                let mut c = ConnectIn::default();
                let mut closed = false;
                Box::new(move |b| {
                    if closed {
                        return Ok(Vec::new());
                    }
                    let e = c.input(b)?;
                    closed = e == ConnectEvent::Closed;
                    Ok(if closed { vec![e] } else { Vec::new() })
                })
            });
            let _ = ConnectIn::default().input(None);
        }
        4 => {
            let whole = bidi_head(data, true);
            if let Ok(Some((head, used))) = bidi_head(&data[..cut], false) {
                assert!(used <= cut);
                let again = bidi_head(data, false).expect("a prefix that parsed parses whole");
                assert_eq!(again, Some((head, used)));
                assert!(whole.is_ok());
            }
        }
        5 => {
            let _ = parse_settings(data);
        }
        6 => {
            if let Ok(head) = parse_request_headers(data) {
                let _ = head.kind();
            }
        }
        _ => {
            let session = u64::from(which) * 4;
            if let Ok(Some(payload)) = datagram_payload(Bytes::copy_from_slice(data), session) {
                // The prefix may be a longer varint than needed; the payload
                // is what follows it, and the relay's own encoding reads back.
                assert!(data.ends_with(&payload));
                let again = datagram_payload(datagram(session, &payload), session);
                assert_eq!(again, Ok(Some(payload)));
            }
        }
    }
});
