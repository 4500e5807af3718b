// Runs inside the page (injected by drive.mjs as a module script): wraps the
// client of web/hush/ in a few commands the Node side calls with
// page.evaluate, and reports every relay frame through window.hushEmit.
// Bytes cross the page boundary as hex strings, u64 values as decimal strings.

import { fromHex, toHex } from '/hush/codec.js';
import { HushClient, randomU64 } from '/hush/client.js';
import { DeviceIdentity } from '/hush/identity.js';
import { privateMessage } from '/hush/mls.js';

const identities = new Map(); // user -> DeviceIdentity (one device per user, kept across connections)
const clients = new Map(); // connection name -> HushClient

/** Plain JSON of a decoded frame: bytes as hex, BigInts as decimal strings. */
function plain(v) {
  if (v instanceof Uint8Array) return toHex(v);
  if (typeof v === 'bigint') return v.toString();
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') {
    const out = {};
    for (const [k, x] of Object.entries(v)) out[k] = plain(x);
    return out;
  }
  return v;
}

function client(name) {
  const c = clients.get(name);
  if (!c) throw new Error(`no connection named ${name}`);
  return c;
}

async function identity(user) {
  if (!identities.has(user)) identities.set(user, await DeviceIdentity.generate(user));
  return identities.get(user);
}

function quantiles(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q) => s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
  return { n: s.length, min: s[0], median: at(0.5), p99: at(0.99), max: s[s.length - 1] };
}

/** Resolves with the match once the demo page's log (#log) matches `re`. */
function demoLog(re) {
  const el = document.getElementById('log');
  if (!el) return Promise.reject(new Error('this page is not the demo page'));
  return new Promise((resolve) => {
    const check = () => {
      const m = el.textContent.match(re);
      if (m) {
        obs.disconnect();
        resolve(m);
      }
    };
    const obs = new MutationObserver(check);
    obs.observe(el, { childList: true, characterData: true, subtree: true });
    check();
  });
}

window.hushDriver = {
  /**
   * Uses the demo page (index.html) as a person would: waits for it to pin the
   * hashes from /cert-hash, connects over WebTransport, creates `group`, sends
   * `text` and waits until the page shows its delivery. Returns the device id.
   */
  async demo({ user, group, text }) {
    const $ = (id) => document.getElementById(id);
    await demoLog(/pinning \d+ certificate hash/);
    $('user').value = user;
    $('connect').click();
    const [, device] = await demoLog(/ready over webtransport: device ([0-9a-f]{32})/);
    $('group').value = group;
    $('create').click();
    await demoLog(new RegExp(`created ${group}`));
    $('text').value = text;
    $('send').click();
    await demoLog(new RegExp(`#1 from ${device.slice(0, 8)} \\(Application, epoch 0\\): ${text}`));
    $('disconnect').click();
    await demoLog(/closed: /);
    return device;
  },

  /** Connects device `user` as connection `name`; returns its device id and Ready. */
  async connect({ name, user, transport, url, certHash }) {
    const id = await identity(user);
    const c = await HushClient.connect(id, {
      transport,
      url,
      certHash: certHash ? fromHex(certHash) : null,
      clientName: 'hush-js-test/0.1',
    });
    c.onEvent = (frame, via) => window.hushEmit({ event: 'frame', name, via, frame: plain(frame) });
    c.onClose = (reason) => window.hushEmit({ event: 'closed', name, reason });
    clients.set(name, c);
    return { device: toHex(id.deviceId), kind: c.kind, ready: plain(c.ready) };
  },

  /** The device id a user's key in this page has (creating the key if needed). */
  async device({ user }) {
    return toHex((await identity(user)).deviceId);
  },

  async createGroup({ name, group }) {
    return plain(await client(name).request({ type: 'CreateGroup', group: fromHex(group), policy: {} }));
  },

  /**
   * Sends `ciphertext` (hex) to `group`, framed as an MLS PrivateMessage of
   * `kind` at `epoch` (PROTOCOL.md 8.6); returns the reply and the payload sent.
   */
  async send({ name, group, epoch, ciphertext, kind = 'Application', clientMsgId }) {
    const payload = privateMessage({ group: fromHex(group), epoch: BigInt(epoch), kind, ciphertext: fromHex(ciphertext) });
    const reply = await client(name).request({
      type: 'Send',
      group: fromHex(group),
      client_msg_id: clientMsgId ? BigInt(clientMsgId) : randomU64(),
      kind,
      epoch: BigInt(epoch),
      payload,
      roster: null,
    });
    return { reply: plain(reply), payload: toHex(payload) };
  },

  async ack({ name, group, seq }) {
    await client(name).ack(fromHex(group), BigInt(seq));
    return null;
  },

  /** Sends a typing signal; returns how it went: 'datagram' or 'stream'. */
  async ephemeral({ name, group, payload }) {
    return client(name).ephemeral(fromHex(group), fromHex(payload));
  },

  async close({ name }) {
    client(name).close();
    clients.delete(name);
    return null;
  },

  /**
   * Round-trip times in milliseconds on an open connection, `n` times after
   * `warmup` untimed rounds, one at a time:
   * - 'ping': Ping until its Pong;
   * - 'send': Send of a PrivateMessage with `size` bytes of ciphertext to
   *   `group` (the device is a member) until
   *   its own Deliver arrives (the Sent response is not waited for).
   */
  async bench({ name, mode, n, warmup = 20, group, epoch = 0, size = 32 }) {
    const c = client(name);
    const samples = [];
    const sentSamples = []; // 'send' only: until the Sent response, for comparison
    const g = group ? fromHex(group) : null;
    const payload = g ? privateMessage({ group: g, epoch: BigInt(epoch), ciphertext: new Uint8Array(size) }) : null;
    for (let i = 0; i < warmup + n; i++) {
      const t0 = performance.now();
      let dt;
      if (mode === 'ping') {
        await c.ping();
        dt = performance.now() - t0;
      } else {
        const id = randomU64();
        const delivered = new Promise((resolve) => {
          const prev = c.onEvent;
          c.onEvent = (frame, via) => {
            if (frame.type === 'Deliver' && frame.entry.client_msg_id === id) {
              c.onEvent = prev;
              resolve(frame.entry.seq);
            }
          };
        });
        let sentAt = 0;
        const sent = c
          .request({ type: 'Send', group: g, client_msg_id: id, kind: 'Application', epoch: BigInt(epoch), payload, roster: null })
          .then(() => {
            sentAt = performance.now();
          });
        const seq = await delivered;
        dt = performance.now() - t0;
        await sent;
        if (i >= warmup) sentSamples.push(sentAt - t0);
        // Keep the cursor moving as a real client would (not timed).
        if (i % 50 === 0) c.ack(g, seq);
      }
      if (i >= warmup) samples.push(dt);
    }
    return { ...quantiles(samples), samples, sent: sentSamples.length ? quantiles(sentSamples) : null };
  },
};

window.hushEmit({ event: 'driver-loaded' });
