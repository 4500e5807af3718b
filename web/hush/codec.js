// hush wire codec: bincode 2 "standard" encoding of the protocol's frames,
// written from PROTOCOL.md (sections 3 to 5) alone.
//
// Representation in JavaScript:
// - u16 and u32 fields are Numbers; u64 fields are BigInts when decoded (they may
//   exceed 2^53) and may be given as Number or BigInt when encoding.
// - bytes, group ids, device ids, keys, nonces, signatures are Uint8Arrays.
// - enums with fields are objects with a `type` naming the variant; unit-only
//   enums (MessageKind, Direction, CloseReason) are the variant's name as a string.
// - option<T> is `null` for none.
// - field names are PROTOCOL.md's (snake_case), so the tables there read as the code.

/** Largest frame either side sends (PROTOCOL.md section 11). */
export const MAX_FRAME_LEN = 1 << 20;

/** Raised for bytes that are not a valid frame. */
export class DecodeError extends Error {
  constructor(message) {
    super(message);
    this.name = 'DecodeError';
  }
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

const U16_MAX = 0xffffn;
const U32_MAX = 0xffffffffn;
const U64_MAX = 0xffffffffffffffffn;

/** Appends encoded values to a growing buffer. */
export class Writer {
  constructor(capacity = 64) {
    this.buf = new Uint8Array(capacity);
    this.len = 0;
  }

  reserve(n) {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  /** The bytes written so far (a copy). */
  finish() {
    return this.buf.slice(0, this.len);
  }

  raw(bytes) {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
    return this;
  }

  /** One raw byte (a u8 is not a varint, section 3.1). */
  u8(v) {
    this.reserve(1);
    this.buf[this.len++] = v & 0xff;
    return this;
  }

  /** An unsigned varint, shortest form (section 3.1). */
  varint(value, max = U64_MAX) {
    const v = BigInt(value);
    if (v < 0n || v > max) throw new RangeError(`integer ${v} out of range`);
    this.reserve(9);
    const view = new DataView(this.buf.buffer);
    if (v < 251n) {
      this.buf[this.len++] = Number(v);
    } else if (v <= U16_MAX) {
      this.buf[this.len++] = 0xfb;
      view.setUint16(this.len, Number(v), true);
      this.len += 2;
    } else if (v <= U32_MAX) {
      this.buf[this.len++] = 0xfc;
      view.setUint32(this.len, Number(v), true);
      this.len += 4;
    } else {
      this.buf[this.len++] = 0xfd;
      view.setBigUint64(this.len, v, true);
      this.len += 8;
    }
    return this;
  }

  u16(v) {
    return this.varint(v, U16_MAX);
  }

  u32(v) {
    return this.varint(v, U32_MAX);
  }

  u64(v) {
    return this.varint(v, U64_MAX);
  }

  bool(v) {
    return this.u8(v ? 1 : 0);
  }

  /** `bytes`: varint length, then the bytes (section 3.4). */
  bytes(b) {
    if (!(b instanceof Uint8Array)) throw new TypeError('bytes must be a Uint8Array');
    this.u64(b.length);
    return this.raw(b);
  }

  /** `string`: varint length in UTF-8 bytes, then the bytes (section 3.4). */
  string(s) {
    return this.bytes(utf8Encoder.encode(s));
  }

  /** A fixed-size array `[n]`: exactly n raw bytes, no length (section 3.5). */
  fixed(b, n) {
    if (!(b instanceof Uint8Array) || b.length !== n) {
      throw new TypeError(`expected ${n} bytes`);
    }
    return this.raw(b);
  }

  /** `option<T>`: 00, or 01 and the value (section 3.3). */
  option(v, put) {
    if (v === null || v === undefined) return this.u8(0);
    this.u8(1);
    put.call(this, v);
    return this;
  }

  /** `vec<T>`: varint count, then each element (section 3.4). */
  vec(items, put) {
    this.u64(items.length);
    for (const item of items) put.call(this, item);
    return this;
  }

  /** An enum's variant index (a u32 varint, section 3.7). */
  variant(index) {
    return this.u32(index);
  }
}

/** Reads encoded values from one frame's bytes. */
export class Reader {
  constructor(bytes) {
    this.buf = bytes;
    this.pos = 0;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  need(n) {
    if (this.pos + n > this.buf.length) throw new DecodeError('frame ends too early');
  }

  u8() {
    this.need(1);
    return this.buf[this.pos++];
  }

  /** A varint of a field whose type holds at most `bits` bits; returns a BigInt. */
  varint(bits) {
    const marker = this.u8();
    if (marker < 251) return BigInt(marker);
    if (marker === 0xfb) {
      this.need(2);
      const v = this.view.getUint16(this.pos, true);
      this.pos += 2;
      return BigInt(v);
    }
    if (marker === 0xfc && bits >= 32) {
      this.need(4);
      const v = this.view.getUint32(this.pos, true);
      this.pos += 4;
      return BigInt(v);
    }
    if (marker === 0xfd && bits >= 64) {
      this.need(8);
      const v = this.view.getBigUint64(this.pos, true);
      this.pos += 8;
      return v;
    }
    throw new DecodeError(`varint marker 0x${marker.toString(16)} not allowed for a u${bits}`);
  }

  u16() {
    return Number(this.varint(16));
  }

  u32() {
    return Number(this.varint(32));
  }

  u64() {
    return this.varint(64);
  }

  bool() {
    const b = this.u8();
    if (b > 1) throw new DecodeError(`invalid bool 0x${b.toString(16)}`);
    return b === 1;
  }

  /** A length (a u64 varint) that must fit in the bytes that are left. */
  length() {
    const n = this.varint(64);
    if (n > BigInt(this.buf.length - this.pos)) throw new DecodeError('declared length exceeds the frame');
    return Number(n);
  }

  bytes() {
    const n = this.length();
    return this.fixed(n);
  }

  string() {
    try {
      return utf8Decoder.decode(this.bytes());
    } catch (e) {
      if (e instanceof DecodeError) throw e;
      throw new DecodeError('invalid UTF-8');
    }
  }

  fixed(n) {
    this.need(n);
    const out = this.buf.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  option(get) {
    const tag = this.u8();
    if (tag === 0) return null;
    if (tag === 1) return get.call(this);
    throw new DecodeError(`invalid option tag 0x${tag.toString(16)}`);
  }

  vec(get) {
    const n = this.varint(64);
    // Every element takes at least one byte: a count larger than what is left is
    // malformed, and refusing it here bounds the loop.
    if (n > BigInt(this.buf.length - this.pos)) throw new DecodeError('element count exceeds the frame');
    const out = [];
    for (let i = 0n; i < n; i++) out.push(get.call(this));
    return out;
  }

  variant(names) {
    const i = Number(this.varint(32));
    if (i >= names.length) throw new DecodeError(`unknown variant index ${i}`);
    return i;
  }

  /** Trailing bytes are an error (section 3.9). */
  end() {
    if (this.pos !== this.buf.length) throw new DecodeError(`${this.buf.length - this.pos} trailing bytes`);
  }
}

// ---------------------------------------------------------------- named types

const DEVICE_ID_LEN = 16;
const KEY_LEN = 32;
const SIG_LEN = 64;
const NONCE_LEN = 32;

/** MessageKind (section 4.3). */
export const MESSAGE_KINDS = ['Application', 'Commit', 'Proposal'];
/** Direction (section 4.3). */
export const DIRECTIONS = ['Forward', 'Backward'];
/** CloseReason (section 10). */
export const CLOSE_REASONS = [
  'GoingAway',
  'SlowConsumer',
  'IdleTimeout',
  'HandshakeTimeout',
  'ProtocolError',
  'ServerBusy',
  'AuthFailed',
];
/** Error code names by number (section 9). */
export const ERROR_CODES = {
  1: 'Malformed',
  2: 'FrameTooLarge',
  3: 'UnsupportedVersion',
  4: 'Unauthenticated',
  5: 'AuthFailed',
  6: 'RegistrationRequired',
  7: 'InvalidToken',
  8: 'UnexpectedFrame',
  9: 'InvalidRequest',
  10: 'NotFound',
  11: 'AlreadyExists',
  12: 'NotMember',
  13: 'Forbidden',
  14: 'StaleEpoch',
  15: 'RateLimited',
  16: 'Truncated',
  17: 'NoKeyPackage',
  18: 'Unavailable',
  19: 'Internal',
  20: 'IdempotencyConflict',
  21: 'InvalidMls',
  22: 'MlsMismatch',
  23: 'Revoked',
  24: 'QuotaExceeded',
};

function unitIndex(names, name) {
  const i = names.indexOf(name);
  if (i < 0) throw new TypeError(`unknown variant ${name}`);
  return i;
}

function putDeviceId(d) {
  this.fixed(d, DEVICE_ID_LEN);
}

function getDeviceId() {
  return this.fixed(DEVICE_ID_LEN);
}

function putPolicy(p) {
  const posters = p.posters ?? { type: 'Everyone' };
  if (posters.type === 'Everyone') {
    this.variant(0);
  } else if (posters.type === 'Only') {
    this.variant(1).vec(posters.devices, putDeviceId);
  } else {
    throw new TypeError(`unknown Posters ${posters.type}`);
  }
  this.vec(p.admins ?? [], putDeviceId);
  this.bool(p.admins_change_roster ?? false);
}

function getPolicy() {
  const posters =
    this.variant(['Everyone', 'Only']) === 0
      ? { type: 'Everyone' }
      : { type: 'Only', devices: this.vec(getDeviceId) };
  return { posters, admins: this.vec(getDeviceId), admins_change_roster: this.bool() };
}

function putRosterChange(r) {
  this.vec(r.add ?? [], putDeviceId);
  this.vec(r.remove ?? [], putDeviceId);
  this.option(r.welcome ?? null, Writer.prototype.bytes);
}

// ------------------------------------------------------------- client frames

function putRequest(op) {
  switch (op.type) {
    case 'CreateGroup':
      this.variant(0).bytes(op.group);
      putPolicy.call(this, op.policy ?? {});
      break;
    case 'Send':
      this.variant(1)
        .bytes(op.group)
        .u64(op.client_msg_id)
        .variant(unitIndex(MESSAGE_KINDS, op.kind ?? 'Application'))
        .u64(op.epoch)
        .bytes(op.payload)
        .option(op.roster ?? null, putRosterChange);
      break;
    case 'GetGroup':
      this.variant(2).bytes(op.group);
      break;
    case 'SetPolicy':
      this.variant(3).bytes(op.group);
      putPolicy.call(this, op.policy);
      break;
    case 'History':
      this.variant(4)
        .bytes(op.group)
        .u64(op.from_seq)
        .variant(unitIndex(DIRECTIONS, op.direction ?? 'Forward'))
        .u16(op.limit);
      break;
    case 'UploadKeyPackages':
      this.variant(5)
        .vec(op.one_time ?? [], Writer.prototype.bytes)
        .option(op.last_resort ?? null, Writer.prototype.bytes);
      break;
    case 'ClaimKeyPackages':
      this.variant(6).string(op.user).option(op.device ?? null, putDeviceId);
      break;
    case 'ListDevices':
      this.variant(7).string(op.user);
      break;
    case 'SendToDevice':
      this.variant(8).fixed(op.device, DEVICE_ID_LEN).bytes(op.payload);
      break;
    case 'GetPresence':
      this.variant(9).vec(op.devices, putDeviceId);
      break;
    case 'ListGroups':
      this.variant(10);
      break;
    case 'Redact':
      this.variant(11).bytes(op.group).u64(op.seq);
      break;
    case 'RevokeDevice':
      this.variant(12).fixed(op.device, DEVICE_ID_LEN).fixed(op.signature, SIG_LEN);
      break;
    default:
      throw new TypeError(`unknown Request ${op.type}`);
  }
}

function putRegistration(r) {
  switch (r?.type ?? 'None') {
    case 'None':
      this.variant(0);
      break;
    case 'Token':
      this.variant(1).string(r.token);
      break;
    case 'Linked':
      this.variant(2).fixed(r.by, DEVICE_ID_LEN).fixed(r.signature, SIG_LEN);
      break;
    case 'LinkedUntil':
      this.variant(3).fixed(r.by, DEVICE_ID_LEN).u64(r.expires_ms).fixed(r.signature, SIG_LEN);
      break;
    default:
      throw new TypeError(`unknown Registration ${r.type}`);
  }
}

/**
 * Encodes a ClientFrame (section 4) to its bytes (no length prefix).
 * @param {object} f a frame: {type: 'Hello'|'Authenticate'|'Request'|'Ack'|'AckInbox'|'Ephemeral'|'Ping', ...}
 * @returns {Uint8Array}
 */
export function encodeClientFrame(f) {
  const w = new Writer();
  switch (f.type) {
    case 'Hello':
      w.variant(0).u16(f.min_version).u16(f.max_version).string(f.client);
      break;
    case 'Authenticate':
      w.variant(1).string(f.user).fixed(f.device_key, KEY_LEN).fixed(f.signature, SIG_LEN);
      putRegistration.call(w, f.registration);
      w.vec(f.resume ?? [], function (r) {
        this.bytes(r.group).u64(r.after_seq);
      });
      break;
    case 'Request':
      w.variant(2).u32(f.id);
      putRequest.call(w, f.op);
      break;
    case 'Ack':
      w.variant(3).bytes(f.group).u64(f.seq);
      break;
    case 'AckInbox':
      w.variant(4).u64(f.seq);
      break;
    case 'Ephemeral':
      w.variant(5).bytes(f.group).bytes(f.payload);
      break;
    case 'Ping':
      w.variant(6).u64(f.nonce);
      break;
    default:
      throw new TypeError(`unknown ClientFrame ${f.type}`);
  }
  const out = w.finish();
  if (out.length > MAX_FRAME_LEN) throw new RangeError(`frame of ${out.length} bytes exceeds the limit`);
  return out;
}

// -------------------------------------------------------------- relay frames

function getLogEntry() {
  return {
    group: this.bytes(),
    seq: this.u64(),
    sender: getDeviceId.call(this),
    client_msg_id: this.u64(),
    kind: MESSAGE_KINDS[this.variant(MESSAGE_KINDS)],
    epoch: this.u64(),
    timestamp_ms: this.u64(),
    payload: this.bytes(),
  };
}

function getGroupStatus() {
  return { group: this.bytes(), head_seq: this.u64(), resume_after: this.u64(), epoch: this.u64() };
}

function getPresenceUpdate() {
  return { device: getDeviceId.call(this), user: this.string(), online: this.bool(), last_seen_ms: this.u64() };
}

const ERROR_DETAILS = ['None', 'CurrentEpoch', 'RetryAfterMs', 'Versions', 'FirstAvailable', 'OriginalSeq'];

function getWireError() {
  const code = this.u16();
  const message = this.string();
  let detail;
  switch (this.variant(ERROR_DETAILS)) {
    case 0:
      detail = { type: 'None' };
      break;
    case 1:
      detail = { type: 'CurrentEpoch', epoch: this.u64() };
      break;
    case 2:
      detail = { type: 'RetryAfterMs', ms: this.u32() };
      break;
    case 3:
      detail = { type: 'Versions', min: this.u16(), max: this.u16() };
      break;
    case 4:
      detail = { type: 'FirstAvailable', seq: this.u64() };
      break;
    default:
      detail = { type: 'OriginalSeq', seq: this.u64() };
  }
  // An unknown code decodes fine (section 13); its name is then undefined.
  return { code, name: ERROR_CODES[code] ?? `unknown code ${code}`, message, detail };
}

const REPLIES = [
  'Done',
  'GroupCreated',
  'Sent',
  'Group',
  'History',
  'KeyPackageCount',
  'KeyPackages',
  'Devices',
  'Presence',
  'Groups',
];

function getReply() {
  const type = REPLIES[this.variant(REPLIES)];
  switch (type) {
    case 'Done':
      return { type };
    case 'GroupCreated':
      return { type, epoch: this.u64() };
    case 'Sent':
      return { type, seq: this.u64(), epoch: this.u64(), duplicate: this.bool() };
    case 'Group':
      return {
        type,
        group: this.bytes(),
        epoch: this.u64(),
        roster: this.vec(getDeviceId),
        policy: getPolicy.call(this),
        head_seq: this.u64(),
        first_seq: this.u64(),
      };
    case 'History':
      return { type, entries: this.vec(getLogEntry), next_from: this.option(this.u64) };
    case 'KeyPackageCount':
      return { type, one_time: this.u32(), last_resort: this.bool() };
    case 'KeyPackages':
      return {
        type,
        packages: this.vec(function () {
          return { device: getDeviceId.call(this), key_package: this.bytes(), last_resort: this.bool() };
        }),
      };
    case 'Devices':
      return {
        type,
        devices: this.vec(function () {
          return { device: getDeviceId.call(this), key: this.fixed(KEY_LEN), registered_ms: this.u64() };
        }),
      };
    case 'Presence':
      return { type, presence: this.vec(getPresenceUpdate) };
    default:
      return { type, groups: this.vec(getGroupStatus) };
  }
}

const RELAY_FRAMES = [
  'Challenge',
  'Ready',
  'Response',
  'Deliver',
  'Inbox',
  'Ephemeral',
  'Presence',
  'Notice',
  'Pong',
  'Error',
  'Closing',
];
const NOTICES = ['Truncated', 'Removed', 'Added'];
const INBOX_KINDS = ['Welcome', 'Direct'];

/**
 * Decodes one RelayFrame (section 5) from exactly `bytes`.
 * @param {Uint8Array} bytes
 * @returns {object} {type: 'Challenge'|'Ready'|..., ...fields}
 * @throws {DecodeError}
 */
export function decodeRelayFrame(bytes) {
  if (bytes.length > MAX_FRAME_LEN) throw new DecodeError('frame exceeds the limit');
  const r = new Reader(bytes);
  const type = RELAY_FRAMES[r.variant(RELAY_FRAMES)];
  let f;
  switch (type) {
    case 'Challenge':
      f = {
        type,
        version: r.u16(),
        nonce: r.fixed(NONCE_LEN),
        relay_id: r.string(),
        max_frame_len: r.u32(),
        heartbeat_ms: r.u32(),
      };
      break;
    case 'Ready':
      f = {
        type,
        device: getDeviceId.call(r),
        registered: r.bool(),
        groups: r.vec(getGroupStatus),
        inbox_acked: r.u64(),
      };
      break;
    case 'Response': {
      const id = r.u32();
      const tag = r.u8();
      if (tag === 0) f = { type, id, ok: getReply.call(r) };
      else if (tag === 1) f = { type, id, err: getWireError.call(r) };
      else throw new DecodeError(`invalid result tag 0x${tag.toString(16)}`);
      break;
    }
    case 'Deliver':
      f = { type, entry: getLogEntry.call(r) };
      break;
    case 'Inbox': {
      const seq = r.u64();
      const sender = getDeviceId.call(r);
      const kind =
        r.variant(INBOX_KINDS) === 0
          ? { type: 'Welcome', group: r.bytes(), commit_seq: r.u64() }
          : { type: 'Direct' };
      f = { type, entry: { seq, sender, kind, timestamp_ms: r.u64(), payload: r.bytes() } };
      break;
    }
    case 'Ephemeral':
      f = { type, group: r.bytes(), sender: getDeviceId.call(r), payload: r.bytes() };
      break;
    case 'Presence':
      f = { type, update: getPresenceUpdate.call(r) };
      break;
    case 'Notice': {
      const notice = NOTICES[r.variant(NOTICES)];
      const group = r.bytes();
      const n = r.u64();
      f = notice === 'Truncated' ? { type, notice, group, first_available: n } : { type, notice, group, seq: n };
      break;
    }
    case 'Pong':
      f = { type, nonce: r.u64() };
      break;
    case 'Error':
      f = { type, error: getWireError.call(r) };
      break;
    default:
      f = {
        type,
        reason: CLOSE_REASONS[r.variant(CLOSE_REASONS)],
        reconnect_after_ms: r.u32(),
        message: r.string(),
      };
  }
  r.end();
  return f;
}

// ------------------------------------------------------------------- helpers

/** Lower-case hex of bytes. */
export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Bytes of a hex string (spaces allowed). */
export function fromHex(hex) {
  const clean = hex.replace(/\s+/g, '');
  if (clean.length % 2 !== 0 || /[^0-9a-fA-F]/.test(clean)) throw new TypeError('invalid hex');
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}
