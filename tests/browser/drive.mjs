#!/usr/bin/env node
// Drives the browser client of web/ in Debian's headless Chromium for tests and
// benchmarks run from Rust (relay/tests/browser.rs, benches' browser_rtt).
//
//   node tests/browser/drive.mjs --wss 127.0.0.1:PORT --cert-sha256 HEX [--page-url URL]
//
// Protocol: one JSON object per line on stdin, `{"id": N, "cmd": NAME, ...args}`,
// answered on stdout by `{"reply": N, "ok": VALUE}` or `{"reply": N, "error": TEXT}`.
// Everything the page reports is printed as it happens: `{"event": "frame",
// "name": CONNECTION, "via": "stream"|"datagram", "frame": {...}}`, `{"event":
// "closed", ...}`; `{"event": "started", "page": URL}` once the page is ready.
// stdout carries nothing else (diagnostics go to stderr). Closing stdin closes
// the browser and ends the process.
//
// Commands are the functions of page-driver.js (connect, device, createGroup,
// send, ack, ephemeral, close, bench), called with the rest of the object.
//
// Certificates. WebTransport pins the development relay's certificate with
// `serverCertificateHashes`, as a real page does. WebSocket cannot: Chromium has
// no per-connection way to trust a self-signed certificate for wss://, so the
// browser is started with --ignore-certificate-errors-spki-list=<SHA-256 of the
// certificate's public key, base64>, which trusts exactly that key (and works
// only together with a --user-data-dir, which we give it). The script first
// fetches the relay's certificate over TLS and refuses to go on unless its
// SHA-256 is the hash the relay published, so the pin is still checked.
//
// The page. If --page-url is given (the relay's development HTTP listener), that
// page is opened. Otherwise this script serves web/ itself on 127.0.0.1 (an
// http://127.0.0.1 origin is a secure context, which WebCrypto Ed25519 and
// WebTransport require), cross-origin isolated so that benchmarks get a fine
// clock.

import { createHash, X509Certificate } from 'node:crypto';
import { createReadStream, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { createInterface } from 'node:readline';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const WEB_ROOT = resolve(HERE, '../../web');
const CHROMIUM = process.env.HUSH_CHROMIUM ?? '/usr/bin/chromium';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) {
    if (fallback === undefined) fail(`missing --${name}`);
    return fallback;
  }
  return process.argv[i + 1];
}

function fail(message) {
  process.stderr.write(`drive.mjs: ${message}\n`);
  process.exit(2);
}

// A reader that went away (the test ended) is not an error worth a stack trace.
process.stdout.on('error', () => process.exit(0));

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

/** The relay's certificate, checked against the published SHA-256; returns the SPKI pin. */
function spkiPin(hostPort, certSha256) {
  const [host, port] = hostPort.split(/:(?=\d+$)/);
  return new Promise((resolvePin, reject) => {
    // The chain is not checked here: the hash comparison below is the check.
    const sock = tlsConnect({ host, port: Number(port), servername: undefined, rejectUnauthorized: false }, () => {
      const der = sock.getPeerCertificate(true).raw;
      sock.destroy();
      const got = createHash('sha256').update(der).digest('hex');
      if (got !== certSha256.toLowerCase()) {
        reject(new Error(`relay certificate sha256 ${got} is not the published ${certSha256}`));
        return;
      }
      const spki = new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });
      resolvePin(createHash('sha256').update(spki).digest('base64'));
    });
    sock.on('error', reject);
  });
}

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
};

/** Serves web/ on 127.0.0.1:0; resolves with its base URL. */
function serveWeb() {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    if (path === '/favicon.ico') {
      res.writeHead(204).end();
      return;
    }
    const file = normalize(join(WEB_ROOT, path === '/' ? 'index.html' : path));
    if (!file.startsWith(WEB_ROOT + sep) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, {
      'content-type': MIME[extname(file)] ?? 'application/octet-stream',
      'cache-control': 'no-store',
      // Cross-origin isolation: Chromium then gives performance.now() a 5 µs
      // resolution instead of 100 µs, which matters for round trips under 1 ms.
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-embedder-policy': 'require-corp',
    });
    createReadStream(file).pipe(res);
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok({ server, url: `http://127.0.0.1:${server.address().port}/` })));
}

async function main() {
  const wss = arg('wss');
  const certSha256 = arg('cert-sha256');
  let pageUrl = arg('page-url', null);

  if (!existsSync(CHROMIUM)) fail(`${CHROMIUM} not found: install Debian's chromium (apt-get install chromium)`);
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    fail(`playwright-core is not installed: run \`npm ci\` in tests/browser (${e.message})`);
  }

  const pin = await spkiPin(wss, certSha256);
  let web = null;
  if (!pageUrl) {
    web = await serveWeb();
    pageUrl = web.url;
  }

  const userDataDir = mkdtempSync(join(tmpdir(), 'hush-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      // The network is closed: without these, Chromium stalls on blocked lookups.
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--ignore-certificate-errors-spki-list=${pin}`,
    ],
  });
  let closing = false;
  const shutdown = async (code) => {
    if (closing) return;
    closing = true;
    await context.close().catch(() => {});
    web?.server.close();
    rmSync(userDataDir, { recursive: true, force: true });
    process.exit(code);
  };
  process.on('SIGTERM', () => shutdown(1));

  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => process.stderr.write(`page ${m.type()}: ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`page error: ${e.message}\n`));
  let loaded;
  const driverLoaded = new Promise((ok) => (loaded = ok));
  await page.exposeFunction('hushEmit', (ev) => {
    if (ev.event === 'driver-loaded') loaded();
    else out(ev);
  });
  await page.goto(pageUrl);
  await page.addScriptTag({ type: 'module', content: readFileSync(join(HERE, 'page-driver.js'), 'utf8') });
  await driverLoaded;
  const isolated = await page.evaluate(() => window.crossOriginIsolated);
  out({ event: 'started', page: pageUrl, crossOriginIsolated: isolated });

  // Commands run concurrently (a test may await an event while a bench runs);
  // each reply names its command's id.
  const lines = createInterface({ input: process.stdin });
  lines.on('line', async (line) => {
    if (!line.trim()) return;
    let msg;
    try {
      msg = JSON.parse(line);
    } catch (e) {
      out({ reply: null, error: `bad command line: ${e.message}` });
      return;
    }
    const { id, cmd, ...args } = msg;
    try {
      const ok = await page.evaluate(([c, a]) => window.hushDriver[c](a), [cmd, args]);
      out({ reply: id, ok: ok ?? null });
    } catch (e) {
      out({ reply: id, error: String(e.message ?? e).split('\n')[0] });
    }
  });
  lines.on('close', () => shutdown(0));
}

main().catch((e) => fail(e.stack ?? String(e)));
