//! HTTP/3 and WebTransport as the RFCs say, checked with a client written
//! here on bare QUIC: every frame, stream type and setting is put on the wire
//! by hand, so the relay's answers (statuses, resets, connection error codes)
//! are seen as a client on another stack would see them.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::*;
use hush_protocol::codec;
use hush_protocol::frame::{ClientFrame, Registration, RelayFrame};
use hush_protocol::session::ClientHandshake;
use hush_sdk::wire::Identity;
use wtransport::quinn::{self, ConnectionError, VarInt};

// Codes (RFC 9114 8.1, RFC 9204 6, RFC 9297 5), written out independently of
// the relay's own table.
const H3_NO_ERROR: u64 = 0x100;
const H3_STREAM_CREATION_ERROR: u64 = 0x103;
const H3_CLOSED_CRITICAL_STREAM: u64 = 0x104;
const H3_FRAME_UNEXPECTED: u64 = 0x105;
const H3_SETTINGS_ERROR: u64 = 0x109;
const H3_REQUEST_REJECTED: u64 = 0x10b;
const H3_DATAGRAM_ERROR: u64 = 0x33;
const QPACK_DECOMPRESSION_FAILED: u64 = 0x200;
const QPACK_ENCODER_STREAM_ERROR: u64 = 0x201;

const SETTINGS_H3_DATAGRAM: u64 = 0x33;
const SETTINGS_ENABLE_CONNECT_PROTOCOL: u64 = 0x08;

fn varint(buf: &mut impl BufMut, v: u64) {
    match v {
        0..=63 => buf.put_u8(v as u8),
        64..=16_383 => buf.put_u16(0x4000 | v as u16),
        16_384..=1_073_741_823 => buf.put_u32(0x8000_0000 | v as u32),
        _ => buf.put_u64(0xc000_0000_0000_0000 | v),
    }
}

fn read_varint(buf: &mut &[u8]) -> Option<u64> {
    let first = *buf.first()?;
    let len = 1usize << (first >> 6);
    if buf.len() < len {
        return None;
    }
    let mut v = u64::from(first & 0x3f);
    for b in &buf[1..len] {
        v = (v << 8) | u64::from(*b);
    }
    buf.advance(len);
    Some(v)
}

fn frame(kind: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(&mut out, kind);
    varint(&mut out, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

fn settings(pairs: &[(u64, u64)]) -> Vec<u8> {
    let mut p = Vec::new();
    for &(id, v) in pairs {
        varint(&mut p, id);
        varint(&mut p, v);
    }
    frame(0x04, &p)
}

/// What a browser announces: extended CONNECT and datagrams.
fn browser_settings() -> Vec<(u64, u64)> {
    vec![(SETTINGS_ENABLE_CONNECT_PROTOCOL, 1), (SETTINGS_H3_DATAGRAM, 1)]
}

/// A QPACK field section of literal fields (no Huffman, no table): prefix
/// 0x00 0x00, then "literal field line with literal name" for each.
fn field_section(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = vec![0x00, 0x00];
    for (name, value) in fields {
        // 001 N H NameLen(3-bit prefix)
        qpack_int(&mut out, 0x20, 3, name.len());
        out.extend_from_slice(name.as_bytes());
        qpack_int(&mut out, 0x00, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

fn qpack_int(out: &mut Vec<u8>, bits: u8, n: u32, v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(bits | v as u8);
        return;
    }
    out.push(bits | max as u8);
    let mut rest = v - max;
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

fn connect_headers(authority: &str, path: &str, origin: Option<&str>) -> Vec<u8> {
    let mut fields = vec![
        (":method", "CONNECT"),
        (":protocol", "webtransport"),
        (":scheme", "https"),
        (":authority", authority),
        (":path", path),
    ];
    if let Some(o) = origin {
        fields.push(("origin", o));
    }
    frame(0x01, &field_section(&fields))
}

/// A client connection with its control stream open.
struct Client {
    conn: quinn::Connection,
    control: quinn::SendStream,
    authority: String,
}

async fn client(relay: &TestRelay, settings_pairs: &[(u64, u64)]) -> Client {
    let config = wtransport::ClientConfig::builder()
        .with_bind_default()
        .with_server_certificate_hashes([wtransport::tls::Sha256Digest::new(relay.cert)])
        .build();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = endpoint
        .connect_with(config.quic_config().clone(), relay.addr, "localhost")
        .unwrap()
        .await
        .unwrap();
    let mut control = conn.open_uni().await.unwrap();
    let mut pre = vec![0x00];
    pre.extend_from_slice(&settings(settings_pairs));
    control.write_all(&pre).await.unwrap();
    Client {
        conn,
        control,
        authority: relay.addr.to_string(),
    }
}

/// Reads a response's HEADERS and returns its `:status`.
async fn read_status(recv: &mut quinn::RecvStream) -> u16 {
    let mut buf = BytesMut::new();
    loop {
        let mut view = &buf[..];
        if let (Some(kind), Some(len)) = (read_varint(&mut view), read_varint(&mut view))
            && view.len() as u64 >= len
        {
            assert_eq!(kind, 0x01, "a response starts with HEADERS");
            let f = wtransport::proto::frame::Frame::new_headers(std::borrow::Cow::Borrowed(&view[..len as usize]));
            let h = wtransport::proto::headers::Headers::with_frame(&f).unwrap();
            return h.get(":status").unwrap().parse().unwrap();
        }
        let chunk = tokio::time::timeout(WAIT, recv.read_chunk(4096, true))
            .await
            .expect("a response")
            .expect("a readable stream")
            .expect("a response before the end");
        buf.extend_from_slice(&chunk.bytes);
    }
}

impl Client {
    /// Sends a request's HEADERS on a new stream.
    async fn request(&self, headers: &[u8]) -> (quinn::SendStream, quinn::RecvStream) {
        let (mut send, recv) = self.conn.open_bi().await.unwrap();
        send.write_all(headers).await.unwrap();
        (send, recv)
    }

    /// Opens the WebTransport session at `path`: CONNECT, 200, then the
    /// session's stream with its header.
    async fn session(&self, path: &str) -> Session {
        let (connect_send, mut connect_recv) = self.request(&connect_headers(&self.authority, path, None)).await;
        assert_eq!(read_status(&mut connect_recv).await, 200);
        let session_id = u64::from(connect_send.id());
        let (mut send, recv) = self.conn.open_bi().await.unwrap();
        let mut header = Vec::new();
        varint(&mut header, 0x41);
        varint(&mut header, session_id);
        send.write_all(&header).await.unwrap();
        Session {
            session_id,
            send,
            recv,
            buf: BytesMut::new(),
            _connect: (connect_send, connect_recv),
        }
    }

    /// Waits for the relay to close the connection; returns the code.
    async fn closed_with(&self) -> u64 {
        match tokio::time::timeout(WAIT, self.conn.closed())
            .await
            .expect("the relay closes")
        {
            ConnectionError::ApplicationClosed(c) => c.error_code.into_inner(),
            other => panic!("expected an application close, got {other:?}"),
        }
    }
}

struct Session {
    session_id: u64,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    buf: BytesMut,
    _connect: (quinn::SendStream, quinn::RecvStream),
}

impl Session {
    async fn write(&mut self, frame: &ClientFrame) {
        let body = codec::encode(frame).unwrap();
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&body);
        self.send.write_all(&out).await.unwrap();
    }

    async fn read(&mut self) -> RelayFrame {
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
                if self.buf.len() >= 4 + len {
                    let f = self.buf.split_to(4 + len);
                    return codec::decode(&f[4..]).unwrap();
                }
            }
            let chunk = tokio::time::timeout(WAIT, self.recv.read_chunk(65536, true))
                .await
                .expect("a frame in time")
                .unwrap()
                .expect("the stream is open");
            self.buf.extend_from_slice(&chunk.bytes);
        }
    }

    /// Hello → Challenge → Authenticate → Ready.
    async fn authenticate(&mut self, id: &Identity) {
        let hs = ClientHandshake::new(id.user.clone(), id.public_key());
        self.write(&hs.hello("h3-conformance")).await;
        let challenge = self.read().await;
        let (_, auth) = hs
            .on_challenge(challenge, |m| id.sign(m), Registration::None, Vec::new())
            .unwrap();
        self.write(&auth).await;
        assert!(matches!(self.read().await, RelayFrame::Ready(_)));
    }

    /// A request the session answers: proof it still runs.
    async fn still_served(&mut self) {
        self.write(&ClientFrame::Ping { nonce: 77 }).await;
        loop {
            if let RelayFrame::Pong { nonce } = self.read().await {
                assert_eq!(nonce, 77);
                return;
            }
        }
    }
}

#[tokio::test]
async fn a_second_connect_is_rejected_and_other_requests_are_answered() {
    let relay = TestRelay::start().await;
    let c = client(&relay, &browser_settings()).await;
    let mut s = c.session("/wt").await;
    s.authenticate(&Identity::generate("alice")).await;

    // A second WebTransport session on the connection: refused unprocessed.
    let (send, mut recv) = c.request(&connect_headers(&c.authority, "/wt", None)).await;
    let err = tokio::time::timeout(WAIT, recv.read_chunk(64, true))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err,
        quinn::ReadError::Reset(VarInt::from_u64(H3_REQUEST_REJECTED).unwrap())
    );
    drop(send);

    // A GET is answered (404), and its stream finished.
    let get = frame(
        0x01,
        &field_section(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", &c.authority),
            (":path", "/"),
        ]),
    );
    let (mut send, mut recv) = c.request(&get).await;
    send.finish().unwrap();
    assert_eq!(read_status(&mut recv).await, 404);
    assert!(
        tokio::time::timeout(WAIT, recv.read_chunk(64, true))
            .await
            .unwrap()
            .unwrap()
            .is_none()
    );

    // Several more: streams are freed as they are answered.
    for _ in 0..5 {
        let (mut send, mut recv) = c.request(&get).await;
        send.finish().unwrap();
        assert_eq!(read_status(&mut recv).await, 404);
    }
    s.still_served().await;
    relay.stop().await;
}

/// Runs `misbehave` on a client whose session is up, and returns the code the
/// relay closed the connection with.
async fn close_code_after<F, Fut>(settings_pairs: &[(u64, u64)], misbehave: F) -> u64
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Client>,
{
    let relay = TestRelay::start().await;
    let c = client(&relay, settings_pairs).await;
    let mut s = c.session("/wt").await;
    s.authenticate(&Identity::generate("alice")).await;
    let c = misbehave(c).await;
    let code = c.closed_with().await;
    // Everyone else is still served.
    let other = client(&relay, &browser_settings()).await;
    let mut s = other.session("/wt").await;
    s.authenticate(&Identity::generate("bob")).await;
    s.still_served().await;
    relay.stop().await;
    code
}

#[tokio::test]
async fn the_control_stream_is_parsed_for_the_whole_connection() {
    // A second SETTINGS.
    let code = close_code_after(&browser_settings(), |mut c| async move {
        c.control.write_all(&settings(&[])).await.unwrap();
        c
    })
    .await;
    assert_eq!(code, H3_FRAME_UNEXPECTED);
    // An HTTP/2-only frame (PING, 0x06).
    let code = close_code_after(&browser_settings(), |mut c| async move {
        c.control.write_all(&frame(0x06, &[0; 8])).await.unwrap();
        c
    })
    .await;
    assert_eq!(code, H3_FRAME_UNEXPECTED);
    // DATA on the control stream.
    let code = close_code_after(&browser_settings(), |mut c| async move {
        c.control.write_all(&frame(0x00, b"x")).await.unwrap();
        c
    })
    .await;
    assert_eq!(code, H3_FRAME_UNEXPECTED);
    // Its end.
    let code = close_code_after(&browser_settings(), |mut c| async move {
        c.control.finish().unwrap();
        c
    })
    .await;
    assert_eq!(code, H3_CLOSED_CRITICAL_STREAM);
}

#[tokio::test]
async fn a_client_goaway_and_unknown_frames_are_fine() {
    let relay = TestRelay::start().await;
    let mut c = client(&relay, &browser_settings()).await;
    let mut s = c.session("/wt").await;
    s.authenticate(&Identity::generate("alice")).await;
    let mut goaway = Vec::new();
    varint(&mut goaway, 0);
    c.control.write_all(&frame(0x21 + 0x1f, b"grease")).await.unwrap();
    c.control.write_all(&frame(0x07, &goaway)).await.unwrap();
    s.still_served().await;
    relay.stop().await;
}

#[tokio::test]
async fn streams_a_client_may_not_open_are_connection_errors() {
    // A push stream (only servers push).
    let code = close_code_after(&browser_settings(), |c| async move {
        let mut push = c.conn.open_uni().await.unwrap();
        push.write_all(&[0x01, 0x00]).await.unwrap();
        std::mem::forget(push);
        c
    })
    .await;
    assert_eq!(code, H3_STREAM_CREATION_ERROR);
    // A second QPACK encoder stream.
    let code = close_code_after(&browser_settings(), |c| async move {
        for _ in 0..2 {
            let mut enc = c.conn.open_uni().await.unwrap();
            enc.write_all(&[0x02]).await.unwrap();
            std::mem::forget(enc);
        }
        c
    })
    .await;
    assert_eq!(code, H3_STREAM_CREATION_ERROR);
}

#[tokio::test]
async fn qpack_streams_are_read_and_held_to_a_zero_table() {
    // Set Dynamic Table Capacity 1 on the encoder stream (the relay said 0).
    let code = close_code_after(&browser_settings(), |c| async move {
        let mut enc = c.conn.open_uni().await.unwrap();
        enc.write_all(&[0x02, 0x21]).await.unwrap();
        std::mem::forget(enc);
        c
    })
    .await;
    assert_eq!(code, QPACK_ENCODER_STREAM_ERROR);
    // Closing the decoder stream.
    let code = close_code_after(&browser_settings(), |c| async move {
        let mut dec = c.conn.open_uni().await.unwrap();
        dec.write_all(&[0x03]).await.unwrap();
        dec.finish().unwrap();
        std::mem::forget(dec);
        c
    })
    .await;
    assert_eq!(code, H3_CLOSED_CRITICAL_STREAM);
}

#[tokio::test]
async fn settings_and_header_errors_carry_their_own_codes() {
    let relay = TestRelay::start().await;
    // An HTTP/2 setting id (SETTINGS_ENABLE_PUSH, 0x02).
    let c = client(&relay, &[(0x02, 0)]).await;
    assert_eq!(c.closed_with().await, H3_SETTINGS_ERROR);
    // A CONNECT whose field section references the dynamic table (Required
    // Insert Count 1).
    let c = client(&relay, &browser_settings()).await;
    let mut bad = vec![0x01, 0x00];
    bad.extend_from_slice(&field_section(&[(":method", "CONNECT")])[2..]);
    let _streams = c.request(&frame(0x01, &bad)).await;
    assert_eq!(c.closed_with().await, QPACK_DECOMPRESSION_FAILED);
    relay.stop().await;
}

#[tokio::test]
async fn a_datagram_with_an_impossible_quarter_stream_id_is_an_error() {
    let code = close_code_after(&browser_settings(), |c| async move {
        let mut d = Vec::new();
        varint(&mut d, 1 << 60);
        d.push(0x05);
        c.conn.send_datagram(Bytes::from(d)).unwrap();
        c
    })
    .await;
    assert_eq!(code, H3_DATAGRAM_ERROR);
}

#[tokio::test]
async fn no_datagrams_go_to_a_client_that_did_not_ask_for_them_in_settings() {
    let relay = TestRelay::start().await;
    let (a, b) = (Identity::generate("alice"), Identity::generate("bob"));
    let ca = relay.connect(&a).await;
    let g = {
        let cb = relay.connect(&b).await;
        group_with(&ca, "typing", &[&cb]).await
    };
    // Bob asks for datagrams in the URL, but his SETTINGS lack
    // SETTINGS_H3_DATAGRAM: RFC 9297 forbids sending him any.
    let c = client(&relay, &[(SETTINGS_ENABLE_CONNECT_PROTOCOL, 1)]).await;
    let mut s = c.session("/wt?datagrams=1").await;
    s.authenticate(&b).await;
    let typing = envelope(epoch_of(&ca, &g).await, b"typing...");
    ca.send(&ClientFrame::Ephemeral {
        group: g.clone(),
        payload: typing.clone(),
    })
    .await
    .unwrap();
    // The signal comes on the stream...
    loop {
        if let RelayFrame::Ephemeral { payload, .. } = s.read().await {
            assert_eq!(payload, typing);
            break;
        }
    }
    // ...and no datagram came at all.
    let datagram = tokio::time::timeout(Duration::from_millis(300), c.conn.read_datagram()).await;
    assert!(datagram.is_err(), "a datagram was sent: {datagram:?}");
    let _ = s.session_id;
    relay.stop().await;
}

#[tokio::test]
async fn origins_are_checked_on_both_transports() {
    let relay = TestRelay::start_with(|c| c.allowed_origins = vec!["https://chat.example".into()]).await;
    let c = client(&relay, &browser_settings()).await;
    for (origin, status) in [
        (Some("https://evil.example"), 403),
        (Some("https://chat.example"), 200),
        (Some("http://localhost:3000"), 200),
        (None, 200),
    ] {
        let c = client(&relay, &browser_settings()).await;
        let (_send, mut recv) = c.request(&connect_headers(&c.authority, "/wt", origin)).await;
        assert_eq!(read_status(&mut recv).await, status, "{origin:?}");
    }
    drop(c);
    // WebSocket: the same policy on the upgrade.
    let url = relay.url();
    for (origin, ok) in [("https://evil.example", false), ("https://chat.example", true)] {
        let mut req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url.as_str()).unwrap();
        req.headers_mut().insert("origin", origin.parse().unwrap());
        let tls = hush_sdk::wire::tls_config(&hush_sdk::wire::Trust::CertSha256(relay.cert)).unwrap();
        let tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
            .connect(name, tcp)
            .await
            .unwrap();
        let result = tokio_tungstenite::client_async(req, tls).await;
        match result {
            Ok(_) => assert!(ok, "{origin} was let in"),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert!(!ok, "{origin} was refused");
                assert_eq!(resp.status(), 403);
            }
            Err(e) => panic!("{e}"),
        }
    }
    relay.stop().await;
}

#[tokio::test]
async fn a_goaway_precedes_the_relays_shutdown() {
    let relay = TestRelay::start().await;
    let c = client(&relay, &browser_settings()).await;
    let mut s = c.session("/wt").await;
    s.authenticate(&Identity::generate("alice")).await;
    // The relay's control stream: type, SETTINGS, and on shutdown GOAWAY.
    let mut control = c.conn.accept_uni().await.unwrap();
    relay.handle.shutdown();
    let mut buf = Vec::new();
    let goaway = loop {
        let chunk = tokio::time::timeout(WAIT, control.read_chunk(4096, true))
            .await
            .unwrap();
        match chunk {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
            _ => panic!("control stream ended without GOAWAY: {buf:x?}"),
        }
        let mut view = &buf[1..];
        let mut found = None;
        while let (Some(kind), Some(len)) = (read_varint(&mut view), read_varint(&mut view)) {
            if (view.len() as u64) < len {
                break;
            }
            let mut payload = &view[..len as usize];
            if kind == 0x07 {
                found = read_varint(&mut payload);
            }
            view.advance(len as usize);
        }
        if let Some(id) = found {
            break id;
        }
    };
    // Every stream the client opened so far was processed.
    assert!(goaway > u64::from(s.send.id()), "GOAWAY {goaway}");
    assert_eq!(c.closed_with().await, H3_NO_ERROR);
}
