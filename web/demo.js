// The demo page (index.html) on the client of web/hush/.

import { fromHex, toHex } from './hush/codec.js';
import { HushClient, randomU64 } from './hush/client.js';
import { DeviceIdentity } from './hush/identity.js';
import { ephemeralEnvelope, privateMessage, readPrivateMessage } from './hush/mls.js';

const $ = (id) => document.getElementById(id);
const enc = new TextEncoder();
const dec = new TextDecoder();
let client = null;
const identities = new Map();

function log(line) {
  const el = $('log');
  el.textContent += `${new Date().toISOString().slice(11, 23)} ${line}\n`;
  el.scrollTop = el.scrollHeight;
}

function setConnected(on) {
  $('connect').disabled = on;
  for (const id of ['disconnect', 'create', 'send', 'typing']) $(id).disabled = !on;
}

// Defaults for a development relay on this host. When the page is served by the
// relay's development HTTP listener, /cert-hash (PROTOCOL.md section 2.3) gives
// the URLs and every certificate hash worth pinning.
async function prefill() {
  const host = location.hostname || '127.0.0.1';
  const params = new URLSearchParams(location.search);
  $('url').value = params.get('url') ?? `https://${host}:7443/wt`;
  if (params.get('hash')) {
    $('hash').value = params.get('hash');
    return;
  }
  try {
    const r = await fetch('/cert-hash');
    if (!r.ok) return;
    const info = await r.json();
    $('hash').value = (info.hashes ?? [{ hex: info.hex }]).map((h) => h.hex).join(',');
    if (info.webtransport && !params.get('url')) $('url').value = info.webtransport;
    log(`pinning ${info.hashes?.length ?? 1} certificate hash(es) from /cert-hash`);
  } catch {
    // not served by a relay
  }
}

$('transport').onchange = () => {
  const u = new URL($('url').value.replace(/^wss:/, 'https:'));
  $('url').value =
    $('transport').value === 'websocket' ? `wss://${u.host}/ws` : `https://${u.host}/wt`;
};

$('connect').onclick = async () => {
  const user = $('user').value;
  try {
    if (!identities.has(user)) identities.set(user, await DeviceIdentity.generate(user));
    const hashes = $('hash').value.split(',').map((h) => h.trim()).filter(Boolean).map(fromHex);
    client = await HushClient.connect(identities.get(user), {
      transport: $('transport').value,
      url: $('url').value,
      certHash: hashes.length ? hashes : null,
    });
  } catch (e) {
    log(`connect failed: ${e.message}`);
    return;
  }
  log(`ready over ${client.kind}: device ${toHex(client.ready.device)}, ${client.ready.groups.length} group(s)`);
  client.onEvent = (f, via) => {
    if (f.type === 'Deliver') {
      const e = f.entry;
      // This demo's "ciphertext" is the UTF-8 text itself (it does no MLS).
      const m = readPrivateMessage(e.payload);
      const text = m ? dec.decode(m.ciphertext) : `(${e.payload.length} bytes, not a PrivateMessage)`;
      log(`#${e.seq} from ${toHex(e.sender).slice(0, 8)} (${e.kind}, epoch ${e.epoch}): ${text}`);
      client.ack(e.group, e.seq).catch(() => {});
    } else if (f.type === 'Ephemeral') {
      log(`${toHex(f.sender).slice(0, 8)} is typing (${via})`);
    } else if (f.type !== 'Pong') {
      log(`${f.type} ${f.notice ?? f.error?.name ?? ''}`);
    }
  };
  client.onClose = (reason) => {
    log(`closed: ${reason}`);
    setConnected(false);
  };
  setConnected(true);
};

$('disconnect').onclick = () => client?.close();

const group = () => enc.encode($('group').value);

$('create').onclick = async () => {
  try {
    await client.request({ type: 'CreateGroup', group: group(), policy: {} });
    log(`created ${$('group').value}`);
  } catch (e) {
    log(`create: ${e.message}`);
  }
};

$('send').onclick = async () => {
  try {
    const epoch = BigInt($('epoch').value || 0);
    const r = await client.request({
      type: 'Send',
      group: group(),
      client_msg_id: randomU64(),
      kind: 'Application',
      epoch,
      // Framed as an MLS PrivateMessage, as the relay requires (PROTOCOL.md 8.6).
      payload: privateMessage({ group: group(), epoch, ciphertext: enc.encode($('text').value) }),
      roster: null,
    });
    log(`sent as #${r.seq}`);
    $('text').value = '';
  } catch (e) {
    log(`send: ${e.message}`);
  }
};

$('typing').onclick = async () => {
  const epoch = BigInt($('epoch').value || 0);
  const via = await client.ephemeral(group(), ephemeralEnvelope(epoch, enc.encode('typing')));
  log(`typing signal sent (${via})`);
};

prefill();
