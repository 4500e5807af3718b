//! `fanout-floor`: the bare fan-out floor of the `fanout` benchmark. What a
//! WebSocket fan-out costs with nothing else: no store, no authentication, no
//! protocol beyond this:
//!
//! - a client's first binary message is its group (4 bytes, little-endian
//!   u32); the server answers `ok` once the client is in the group;
//! - every later binary message is sent, unchanged, to every member of the
//!   sender's group, the sender included.
//!
//! ```text
//! fanout-floor [--listen 127.0.0.1:0] [--cert cert.pem --key key.pem]
//! ```
//!
//! With `--cert` and `--key` it speaks WSS (tokio-rustls), otherwise plain
//! WS. It prints `listening PORT` once it accepts connections. Each
//! connection has one writer task that flushes once per burst of queued
//! messages; a full queue (bounded) makes the publisher wait, as TCP would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Messages queued to one connection before its publishers wait.
const QUEUE: usize = 4096;

type Members = Arc<Vec<mpsc::Sender<Message>>>;

#[derive(Default)]
struct Groups {
    // Copy-on-write member lists: a publish takes a snapshot without holding
    // the lock while it sends.
    map: Mutex<HashMap<u32, Members>>,
}

impl Groups {
    fn join(&self, group: u32, tx: mpsc::Sender<Message>) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let cur = map.entry(group).or_default();
        let mut next: Vec<_> = cur.iter().filter(|t| !t.is_closed()).cloned().collect();
        next.push(tx);
        *cur = Arc::new(next);
    }

    fn members(&self, group: u32) -> Members {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&group)
            .cloned()
            .unwrap_or_default()
    }
}

async fn serve<S>(stream: S, groups: Arc<Groups>) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = tokio_tungstenite::accept_async(stream).await?;
    let (mut sink, mut rx) = ws.split();
    let group = loop {
        match rx.next().await.context("closed before joining")?? {
            Message::Binary(b) if b.len() == 4 => break u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Message::Close(_) => return Ok(()),
            _ => continue,
        }
    };
    let (tx, mut out) = mpsc::channel::<Message>(QUEUE);
    groups.join(group, tx.clone());
    sink.send(Message::Binary(Bytes::from_static(b"ok"))).await?;
    let writer = tokio::spawn(async move {
        while let Some(m) = out.recv().await {
            if sink.feed(m).await.is_err() {
                return;
            }
            while let Ok(m) = out.try_recv() {
                if sink.feed(m).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    // The connection's own queue stays in the group's list only as long as
    // this reader runs; dropping `tx` lets the writer end.
    drop(tx);
    while let Some(m) = rx.next().await {
        match m? {
            Message::Binary(b) => {
                let members = groups.members(group);
                for m in members.iter() {
                    // A member that is gone is skipped; the others still get it.
                    let _ = m.send(Message::Binary(b.clone())).await;
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    writer.abort();
    Ok(())
}

/// glibc's allocator took about a third of a request worker's time under
/// load (BENCHMARKS.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut listen, mut cert, mut key) = ("127.0.0.1:0".to_owned(), None, None);
    while let Some(a) = args.next() {
        let v = args.next().with_context(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--listen" => listen = v,
            "--cert" => cert = Some(v),
            "--key" => key = Some(v),
            _ => anyhow::bail!("usage: fanout-floor [--listen ADDR] [--cert PEM --key PEM]"),
        }
    }
    let tls = match (cert, key) {
        (Some(c), Some(k)) => {
            let certs = rustls_pemfile::certs(&mut &std::fs::read(c)?[..]).collect::<Result<Vec<_>, _>>()?;
            let key = rustls_pemfile::private_key(&mut &std::fs::read(k)?[..])?.context("no private key")?;
            let config =
                rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()?
                    .with_no_client_auth()
                    .with_single_cert(certs, key)?;
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
        }
        (None, None) => None,
        _ => anyhow::bail!("--cert and --key go together"),
    };
    let listener = TcpListener::bind(&listen).await?;
    println!("listening {}", listener.local_addr()?.port());
    let groups = Arc::new(Groups::default());
    loop {
        // Running out of descriptors must not end the server.
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (groups, tls) = (groups.clone(), tls.clone());
        tokio::spawn(async move {
            let _ = match tls {
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(s) => serve(s, groups).await,
                    Err(e) => Err(e.into()),
                },
                None => serve(tcp, groups).await,
            };
        });
    }
}
