// The browser client's codec (web/hush/) against every hex example and encoding
// rule of PROTOCOL.md. Runs in Node (same modules, same WebCrypto API):
//
//   node --test tests/browser/

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import {
  DecodeError,
  Reader,
  Writer,
  decodeRelayFrame,
  encodeClientFrame,
  fromHex,
  toHex,
} from '../../web/hush/codec.js';
import { FrameSplitter, FrameTooLarge, prefixFrame } from '../../web/hush/framing.js';
import { DeviceIdentity, authTranscript, linkTranscript } from '../../web/hush/identity.js';
import { privateMessage, readPrivateMessage } from '../../web/hush/mls.js';

const protocol = readFileSync(new URL('../../PROTOCOL.md', import.meta.url), 'utf8');

/** The `<!-- example: NAME -->` blocks of PROTOCOL.md, as bytes. */
function examples() {
  const out = {};
  for (const m of protocol.matchAll(/<!-- example: ([\w-]+) -->([\s\S]*?)<!-- \/example -->/g)) {
    const block = /```text\n([\s\S]*?)\n```/.exec(m[2]);
    out[m[1]] = fromHex(block[1]);
  }
  return out;
}

const ex = examples();
const hex = (b) => toHex(b);
const group = fromHex('aabbccdd');
const nonce = Uint8Array.from({ length: 32 }, (_, i) => i);
const seed1 = new Uint8Array(32).fill(1);
const seed2 = new Uint8Array(32).fill(2);

test('varint rules (3.1)', () => {
  const cases = [
    [0, '00'],
    [250, 'fa'],
    [251, 'fbfb00'],
    [1000, 'fbe803'],
    [65535, 'fbffff'],
    [65536, 'fc00000100'],
    [2 ** 32, 'fd0000000001000000'],
    [0xffffffffffffffffn, 'fdffffffffffffffff'],
  ];
  for (const [v, h] of cases) {
    assert.equal(hex(new Writer().u64(v).finish()), h);
    const r = new Reader(fromHex(h));
    assert.equal(r.u64(), BigInt(v));
    r.end();
  }
  assert.equal(new Reader(fromHex('fb0500')).u64(), 5n);
  assert.throws(() => new Reader(fromHex('fc00000100')).u16(), DecodeError);
  assert.throws(() => new Reader(fromHex('fd0000000001000000')).u32(), DecodeError);
  assert.throws(() => new Reader(fromHex('ff')).u64(), DecodeError);
  assert.throws(() => new Reader(fromHex('fe')).u64(), DecodeError);
  assert.throws(() => new Writer().u16(65536), RangeError);
});

test('bool, option, string, bytes, vec, struct (3.2 to 3.6)', () => {
  assert.equal(hex(new Writer().option(300, Writer.prototype.u64).finish()), '01fb2c01');
  assert.equal(hex(new Writer().string('hé').finish()), '0368c3a9');
  assert.equal(hex(new Writer().bytes(fromHex('dead')).finish()), '02dead');
  assert.equal(hex(new Writer().vec([1, 300], Writer.prototype.u64).finish()), '0201fb2c01');
  assert.equal(hex(new Writer().u16(1000).bool(true).finish()), 'fbe80301');
  assert.throws(() => new Reader(fromHex('02')).bool(), DecodeError);
  assert.throws(() => new Reader(fromHex('02')).option(Reader.prototype.u64), DecodeError);
  assert.throws(() => new Reader(fromHex('02c328')).string(), DecodeError);
  assert.throws(() => new Reader(fromHex('05dead')).bytes(), DecodeError);
});

test('enum examples (3.7)', () => {
  const listGroups = encodeClientFrame({ type: 'Request', id: 0, op: { type: 'ListGroups' } });
  assert.equal(hex(listGroups), '02000a');
  const token = encodeClientFrame({
    type: 'Authenticate',
    user: 'u',
    device_key: new Uint8Array(32),
    signature: new Uint8Array(64),
    registration: { type: 'Token', token: 't' },
    resume: [],
  });
  // ... user, key, signature, then Registration::Token("t") = 01 01 74, then resume = 00
  assert.equal(hex(token.slice(-4)), '01017400');
  assert.equal(hex(encodeClientFrame({ type: 'AckInbox', seq: 9 })), '0409');
});

test('the examples this file checks are there', () => {
  const names = [
      'ack',
      'auth-transcript',
      'authenticate',
      'challenge',
      'closing',
      'deliver',
      'device-id',
      'device-key',
      'hello',
      'link-transcript',
      'ping',
      'ping-prefixed',
      'ready',
      'send',
      'sent',
      'stale-epoch',
      'truncated',
  ];
  for (const name of names) assert.ok(ex[name], `PROTOCOL.md has no example ${name}`);
});

test('MLS PrivateMessage framing (8.6)', () => {
  const m = privateMessage({ group, epoch: 3, kind: 'Application', ciphertext: fromHex('deadbeef') });
  const expected = '0001000204aabbccdd00000000000000030100000' + '4deadbeef';
  assert.equal(hex(m), expected);
  if (ex['mls-private-message']) assert.equal(hex(m), hex(ex['mls-private-message']));
  const back = readPrivateMessage(m);
  assert.equal(back.epoch, 3n);
  assert.equal(back.contentType, 1);
  assert.equal(hex(back.group), hex(group));
  assert.equal(hex(back.ciphertext), 'deadbeef');
  assert.equal(readPrivateMessage(m.slice(0, -1)), null);
  assert.equal(readPrivateMessage(fromHex('deadbeef')), null);
  // Long vectors use the 2- and 4-byte headers.
  const long = privateMessage({ group, epoch: 0, kind: 'Commit', ciphertext: new Uint8Array(20000) });
  assert.equal(readPrivateMessage(long).ciphertext.length, 20000);
  assert.equal(readPrivateMessage(long).contentType, 3);
  const mid = privateMessage({ group, epoch: 0, ciphertext: new Uint8Array(100) });
  assert.equal(hex(mid.slice(-102, -100)), '4064');
});

test('client frame examples encode byte for byte (12.1, 12.5 to 12.7)', () => {
  assert.equal(hex(encodeClientFrame({ type: 'Hello', min_version: 1, max_version: 1, client: 'hush-js/0.1' })), hex(ex.hello));
  const ping = encodeClientFrame({ type: 'Ping', nonce: 1000 });
  assert.equal(hex(ping), hex(ex.ping));
  assert.equal(hex(prefixFrame(ping)), hex(ex['ping-prefixed']));
  const send = encodeClientFrame({
    type: 'Request',
    id: 7,
    op: {
      type: 'Send',
      group,
      client_msg_id: 42,
      kind: 'Application',
      epoch: 3,
      payload: fromHex('deadbeef'),
      roster: null,
    },
  });
  assert.equal(hex(send), hex(ex.send));
  assert.equal(hex(encodeClientFrame({ type: 'Ack', group, seq: 321 })), hex(ex.ack));
});

test('device key, id, transcripts and Authenticate (12.3, 12.4, 12.9)', async () => {
  const id = await DeviceIdentity.fromSeed('alice', seed1);
  assert.equal(hex(id.publicKey), hex(ex['device-key']));
  assert.equal(hex(id.deviceId), hex(ex['device-id']));
  const transcript = authTranscript(nonce, 'eu-1/a', 'alice', id.publicKey);
  assert.equal(hex(transcript), hex(ex['auth-transcript']));
  const auth = encodeClientFrame({
    type: 'Authenticate',
    user: 'alice',
    device_key: id.publicKey,
    signature: await id.sign(transcript),
    registration: { type: 'None' },
    resume: [{ group, after_seq: 300 }],
  });
  assert.equal(hex(auth), hex(ex.authenticate));
  const other = await DeviceIdentity.fromSeed('alice', seed2);
  assert.equal(hex(linkTranscript('alice', other.publicKey, 1_700_000_000_000n)), hex(ex['link-transcript']));
  // A generated key works the same way.
  const fresh = await DeviceIdentity.generate('bob');
  assert.equal(fresh.publicKey.length, 32);
  assert.equal(fresh.deviceId.length, 16);
  assert.equal((await fresh.sign(transcript)).length, 64);
});

test('relay frame examples decode (12.2, 12.4, 12.6 to 12.8)', () => {
  assert.deepEqual(decodeRelayFrame(ex.challenge), {
    type: 'Challenge',
    version: 1,
    nonce,
    relay_id: 'eu-1/a',
    max_frame_len: 1048576,
    heartbeat_ms: 15000,
  });
  assert.deepEqual(decodeRelayFrame(ex.ready), {
    type: 'Ready',
    device: ex['device-id'],
    registered: true,
    groups: [{ group, head_seq: 320n, resume_after: 300n, epoch: 3n }],
    inbox_acked: 0n,
  });
  assert.deepEqual(decodeRelayFrame(ex.sent), {
    type: 'Response',
    id: 7,
    ok: { type: 'Sent', seq: 321n, epoch: 3n, duplicate: false },
  });
  assert.deepEqual(decodeRelayFrame(ex['stale-epoch']), {
    type: 'Response',
    id: 8,
    err: { code: 14, name: 'StaleEpoch', message: 'at epoch 4', detail: { type: 'CurrentEpoch', epoch: 4n } },
  });
  assert.deepEqual(decodeRelayFrame(ex.deliver), {
    type: 'Deliver',
    entry: {
      group,
      seq: 321n,
      sender: ex['device-id'],
      client_msg_id: 42n,
      kind: 'Application',
      epoch: 3n,
      timestamp_ms: 1700000000000n,
      payload: fromHex('deadbeef'),
    },
  });
  assert.deepEqual(decodeRelayFrame(ex.truncated), {
    type: 'Notice',
    notice: 'Truncated',
    group,
    first_available: 120n,
  });
  assert.deepEqual(decodeRelayFrame(ex.closing), {
    type: 'Closing',
    reason: 'GoingAway',
    reconnect_after_ms: 2000,
    message: 'drain',
  });
});

test('whole frames: truncation, trailing bytes, unknown variants (3.9)', () => {
  for (let n = 0; n < ex.deliver.length; n++) {
    assert.throws(() => decodeRelayFrame(ex.deliver.slice(0, n)), DecodeError, `prefix of ${n} bytes`);
  }
  const trailing = new Uint8Array([...ex.sent, 0]);
  assert.throws(() => decodeRelayFrame(trailing), DecodeError);
  assert.throws(() => decodeRelayFrame(fromHex('0b')), DecodeError);
  // An unknown error code decodes (section 13).
  const unknown = decodeRelayFrame(fromHex('09fbe80300' + '00'));
  assert.equal(unknown.error.code, 1000);
});

test('stream framing: any split, oversize refused at the prefix (2.2)', () => {
  const frames = [ex.ping, ex.ack, new Uint8Array(0), ex.send];
  const stream = new Uint8Array(frames.reduce((n, f) => n + 4 + f.length, 0));
  let pos = 0;
  for (const f of frames) {
    stream.set(prefixFrame(f), pos);
    pos += 4 + f.length;
  }
  for (let step = 1; step <= stream.length; step++) {
    const s = new FrameSplitter();
    const got = [];
    for (let i = 0; i < stream.length; i += step) got.push(...s.push(stream.slice(i, i + step)));
    assert.deepEqual(got.map(hex), frames.map(hex), `chunks of ${step}`);
    assert.equal(s.pending, 0);
  }
  const s = new FrameSplitter(100);
  assert.throws(() => s.push(fromHex('00000065')), FrameTooLarge);
});
