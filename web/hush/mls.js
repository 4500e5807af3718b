// The MLS envelope bytes the relay reads (PROTOCOL.md section 8.6): an RFC 9420
// PrivateMessage's clear header around opaque encrypted fields. This page does
// no MLS cryptography; it frames its (stand-in) ciphertext the way a real MLS
// client's output is framed, so the relay's checks accept it.

/** MLS content types (RFC 9420), by the protocol's MessageKind. */
export const CONTENT_TYPES = { Application: 1, Proposal: 2, Commit: 3 };

/** An MLS variable-length vector header (RFC 9420 section 2.1.2), shortest form. */
function vectorHeader(len) {
  if (len < 64) return [len];
  if (len < 16384) return [0x40 | (len >> 8), len & 0xff];
  if (len < 2 ** 30) return [0x80 | (len >>> 24), (len >>> 16) & 0xff, (len >>> 8) & 0xff, len & 0xff];
  throw new RangeError('MLS vector too long');
}

function opaque(bytes) {
  return [...vectorHeader(bytes.length), ...bytes];
}

/**
 * A PrivateMessage: version 1, wire format 2, group id, epoch (u64 big-endian),
 * content type, then authenticated data, encrypted sender data and ciphertext.
 * @param {{group: Uint8Array, epoch: bigint|number, kind?: string, ciphertext: Uint8Array,
 *   authenticatedData?: Uint8Array, encryptedSenderData?: Uint8Array}} m
 * @returns {Uint8Array}
 */
export function privateMessage(m) {
  const contentType = CONTENT_TYPES[m.kind ?? 'Application'];
  if (!contentType) throw new TypeError(`unknown kind ${m.kind}`);
  const epoch = new Uint8Array(8);
  new DataView(epoch.buffer).setBigUint64(0, BigInt(m.epoch), false);
  return Uint8Array.from([
    0x00, 0x01, // version = mls10
    0x00, 0x02, // wire_format = PrivateMessage
    ...opaque(m.group),
    ...epoch,
    contentType,
    ...opaque(m.authenticatedData ?? new Uint8Array(0)),
    ...opaque(m.encryptedSenderData ?? new Uint8Array(0)),
    ...opaque(m.ciphertext),
  ]);
}

/**
 * The envelope of an ephemeral signal (PROTOCOL.md section 8.7): magic 48 45,
 * version 1, the epoch (u64 big-endian), a 12-byte nonce, then the sealed
 * part. The relay reads only the header; a real client seals `sealed` with the
 * epoch's exported key (this page, which does no MLS, passes the plaintext in
 * the place of a signature and ciphertext, at least 80 bytes).
 */
export function ephemeralEnvelope(epoch, sealed) {
  const out = new Uint8Array(23 + Math.max(sealed.length, 80));
  out.set([0x48, 0x45, 0x01], 0);
  new DataView(out.buffer).setBigUint64(3, BigInt(epoch), false);
  crypto.getRandomValues(out.subarray(11, 23));
  out.set(sealed, 23);
  return out;
}

/**
 * Reads a PrivateMessage's fields back (null if the bytes are not one).
 * @returns {{group: Uint8Array, epoch: bigint, contentType: number, authenticatedData: Uint8Array,
 *   encryptedSenderData: Uint8Array, ciphertext: Uint8Array}|null}
 */
export function readPrivateMessage(bytes) {
  let pos = 0;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (n) => {
    if (pos + n > bytes.length) throw new RangeError('truncated');
  };
  const u8 = () => {
    need(1);
    return bytes[pos++];
  };
  const u16 = () => {
    need(2);
    pos += 2;
    return view.getUint16(pos - 2, false);
  };
  const vec = () => {
    const first = u8();
    let len;
    if (first >> 6 === 0) len = first;
    else if (first >> 6 === 1) len = ((first & 0x3f) << 8) | u8();
    else if (first >> 6 === 2) len = ((first & 0x3f) * 2 ** 24) + (u8() << 16) + (u8() << 8) + u8();
    else throw new RangeError('invalid vector header');
    need(len);
    pos += len;
    return bytes.slice(pos - len, pos);
  };
  try {
    if (u16() !== 1 || u16() !== 2) return null;
    const group = vec();
    need(8);
    const epoch = view.getBigUint64(pos, false);
    pos += 8;
    const contentType = u8();
    const m = { group, epoch, contentType, authenticatedData: vec(), encryptedSenderData: vec(), ciphertext: vec() };
    return pos === bytes.length ? m : null;
  } catch {
    return null;
  }
}
