// A device identity: an Ed25519 key held by WebCrypto, the device id derived
// from it, and the signed transcripts of PROTOCOL.md sections 6.2 to 6.4.

const enc = new TextEncoder();

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

/** A 2-byte big-endian length then the UTF-8 bytes (the transcripts' strings). */
function lengthPrefixed(s) {
  const b = enc.encode(s);
  if (b.length > 0xffff) throw new RangeError('string too long for a transcript');
  return concat([new Uint8Array([b.length >> 8, b.length & 0xff]), b]);
}

/**
 * The auth transcript (section 6.2): "hush-auth-v1\0" || nonce ||
 * u16be(len relay_id) || relay_id || u16be(len user) || user || public key.
 */
export function authTranscript(nonce, relayId, user, publicKey) {
  return concat([enc.encode('hush-auth-v1\0'), nonce, lengthPrefixed(relayId), lengthPrefixed(user), publicKey]);
}

/**
 * The link transcript (section 6.4): "hush-link-v2\0" || u16be(len user) || user || new key
 * || expires_ms (u64 big-endian), for `Registration` `LinkedUntil`.
 */
export function linkTranscript(user, newPublicKey, expiresMs) {
  const expiry = new Uint8Array(8);
  new DataView(expiry.buffer).setBigUint64(0, BigInt(expiresMs), false);
  return concat([enc.encode('hush-link-v2\0'), lengthPrefixed(user), newPublicKey, expiry]);
}

/** device id = first 16 bytes of SHA-256("hush-device-id-v1" || public key) (section 6.3). */
export async function deviceIdOf(publicKey) {
  const digest = await crypto.subtle.digest('SHA-256', concat([enc.encode('hush-device-id-v1'), publicKey]));
  return new Uint8Array(digest).slice(0, 16);
}

// PKCS#8 wrapping of a raw 32-byte Ed25519 seed (RFC 8410), the only private
// key import format WebCrypto offers for Ed25519 besides JWK.
const PKCS8_ED25519_PREFIX = new Uint8Array([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
]);

/** A device: its user, its Ed25519 key pair (WebCrypto) and its public key bytes. */
export class DeviceIdentity {
  constructor(user, privateKey, publicKey, deviceId) {
    /** The user id this device belongs to. */
    this.user = user;
    this.privateKey = privateKey;
    /** The 32-byte Ed25519 public key. */
    this.publicKey = publicKey;
    /** The 16-byte device id. */
    this.deviceId = deviceId;
  }

  /** A new random device key (not extractable) for `user`. */
  static async generate(user) {
    const pair = await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
    const publicKey = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
    return new DeviceIdentity(user, pair.privateKey, publicKey, await deviceIdOf(publicKey));
  }

  /** The device key from a 32-byte seed (for the worked examples of PROTOCOL.md). */
  static async fromSeed(user, seed) {
    const pkcs8 = new Uint8Array(PKCS8_ED25519_PREFIX.length + 32);
    pkcs8.set(PKCS8_ED25519_PREFIX);
    pkcs8.set(seed, PKCS8_ED25519_PREFIX.length);
    const key = await crypto.subtle.importKey('pkcs8', pkcs8, { name: 'Ed25519' }, true, ['sign']);
    // The JWK form of a private key carries its public key as `x`.
    const jwk = await crypto.subtle.exportKey('jwk', key);
    const publicKey = base64UrlDecode(jwk.x);
    return new DeviceIdentity(user, key, publicKey, await deviceIdOf(publicKey));
  }

  /** Pure Ed25519 signature (64 bytes) over `data`. */
  async sign(data) {
    return new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, this.privateKey, data));
  }
}

function base64UrlDecode(s) {
  const b64 = s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}
