//! The plain-HTTP development listener (loopback, port 7480 by default).
//!
//! - `GET /cert-hash`: JSON with the development certificate's SHA-256 (hex and
//!   base64) and every hash worth pinning during a rotation, plus the relay's
//!   WebTransport and WebSocket URLs. A page passes the hashes to
//!   `new WebTransport(url, { serverCertificateHashes })`.
//! - `GET /<file>`: static files of the demo page from a directory (`web/` by
//!   default); `/` is `index.html`.
//!
//! HTTP/1.1, one request per connection, `GET` and `HEAD` only, request heads up
//! to 8 KiB read within 5 seconds. It is a development convenience, not a web
//! server: it serves nothing secret and listens on loopback unless configured
//! otherwise.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::shutdown::stopped;
use crate::tls::CertHandle;

const MAX_HEAD: usize = 8 * 1024;

/// What the listener needs to answer.
#[derive(Clone)]
pub struct DevSite {
    /// The certificate handle (published hashes).
    pub certs: CertHandle,
    /// Static files, if any.
    pub static_dir: Option<PathBuf>,
    /// The relay's TCP/UDP address (for the URLs in `/cert-hash`).
    pub relay_addr: SocketAddr,
}

/// Serves until shutdown.
pub async fn serve(listener: TcpListener, site: DevSite, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (tcp, _) = tokio::select! {
            _ = stopped(&mut shutdown) => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let site = site.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), answer(tcp, &site)).await;
        });
    }
}

async fn answer(mut tcp: TcpStream, site: &DevSite) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let read_head = async {
        loop {
            let n = tcp.read(&mut buf).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                return Ok(true);
            }
            if head.len() > MAX_HEAD {
                return Ok(false);
            }
        }
    };
    let complete = tokio::time::timeout(Duration::from_secs(5), read_head)
        .await
        .unwrap_or(Ok(false))?;
    if !complete {
        return respond(&mut tcp, "400 Bad Request", "text/plain", b"bad request\n", false).await;
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(&mut tcp, "405 Method Not Allowed", "text/plain", b"GET only\n", false).await;
    }
    let path = target.split(['?', '#']).next().unwrap_or("/");
    if path == "/cert-hash" {
        let body = cert_json(site);
        return respond(&mut tcp, "200 OK", "application/json", body.as_bytes(), head_only).await;
    }
    match static_file(site.static_dir.as_deref(), path).await {
        Some((bytes, mime)) => respond(&mut tcp, "200 OK", mime, &bytes, head_only).await,
        None => respond(&mut tcp, "404 Not Found", "text/plain", b"not found\n", head_only).await,
    }
}

fn cert_json(site: &DevSite) -> String {
    let mut doc: serde_json::Value = serde_json::from_str(&site.certs.store().published_json()).unwrap_or_default();
    let addr = site.relay_addr;
    doc["webtransport"] = format!("https://{addr}{}", crate::transport::webtransport::PATH).into();
    doc["websocket"] = format!("wss://{addr}{}", crate::transport::websocket::PATH).into();
    doc.to_string()
}

/// Reads `path` under `dir`, refusing anything that would leave it.
async fn static_file(dir: Option<&Path>, path: &str) -> Option<(Vec<u8>, &'static str)> {
    let dir = dir?;
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() || rel.ends_with('/') {
        format!("{rel}index.html")
    } else {
        rel.to_owned()
    };
    let rel = Path::new(&rel);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let full = dir.join(rel);
    let bytes = tokio::fs::read(&full).await.ok()?;
    let mime = match full.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    };
    Some((bytes, mime))
}

async fn respond(tcp: &mut TcpStream, status: &str, mime: &str, body: &[u8], head_only: bool) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {mime}\r\ncontent-length: {}\r\n\
         access-control-allow-origin: *\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await?;
    if !head_only {
        tcp.write_all(body).await?;
    }
    tcp.shutdown().await
}
