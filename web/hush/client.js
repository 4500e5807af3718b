// A hush protocol client for browsers, written from PROTOCOL.md: handshake
// (section 6), requests matched by id (7.1), deliveries, acks, ephemeral
// signals and heartbeats, over WebTransport or WebSocket.
//
//   const id = await DeviceIdentity.generate('alice');
//   const c = await HushClient.connect(id, { transport: 'websocket', url: 'wss://127.0.0.1:7443/ws' });
//   c.onEvent = (frame, via) => console.log(frame);
//   await c.request({ type: 'CreateGroup', group, policy: {} });

import { decodeRelayFrame, encodeClientFrame } from './codec.js';
import { authTranscript } from './identity.js';
import { WebSocketTransport, WebTransportTransport } from './transport.js';

/** The protocol versions this client speaks. */
export const PROTOCOL_VERSION = 1;

/** A refusal by the relay (a WireError, section 9). */
export class RelayError extends Error {
  constructor(err) {
    super(`${err.name}: ${err.message}`);
    this.name = 'RelayError';
    /** The numeric error code. */
    this.code = err.code;
    /** The code's name (section 9). */
    this.codeName = err.name;
    /** The ErrorDetail. */
    this.detail = err.detail;
  }
}

/** A random u64 as a BigInt (client message ids, ping nonces). */
export function randomU64() {
  const b = crypto.getRandomValues(new Uint8Array(8));
  return new DataView(b.buffer).getBigUint64(0, true);
}

/** One authenticated connection to a relay. */
export class HushClient {
  /**
   * Opens a transport, runs the handshake and resolves once `Ready` arrived.
   * @param {import('./identity.js').DeviceIdentity} identity
   * @param {object} o
   * @param {'webtransport'|'websocket'} o.transport
   * @param {string} o.url `https://host:port/wt` (WebTransport) or `wss://host:port/ws`
   * @param {Uint8Array|Uint8Array[]} [o.certHash] the development relay's certificate SHA-256, or
   *   all the hashes its /cert-hash lists (WebTransport; a wss:// WebSocket cannot pin)
   * @param {object} [o.registration] `{type: 'None'}` (default), `{type: 'Token', token}` or `{type: 'LinkedUntil', by, expires_ms, signature}`
   * @param {Array} [o.resume] `[{group, after_seq}]`
   * @param {string} [o.clientName]
   * @param {number} [o.timeoutMs] handshake deadline
   */
  static async connect(identity, o) {
    const transport =
      o.transport === 'webtransport'
        ? await WebTransportTransport.open(o.url, o.certHash ?? null)
        : await WebSocketTransport.open(o.url);
    const client = new HushClient(identity, transport);
    try {
      await client.handshake(o);
    } catch (e) {
      transport.close();
      throw e;
    }
    return client;
  }

  constructor(identity, transport) {
    this.identity = identity;
    this.transport = transport;
    this.nextId = 1;
    this.pending = new Map(); // request id -> {resolve, reject}
    this.pings = new Map(); // nonce -> resolve
    this.waiter = null; // the handshake's frame waiter
    this.closedReason = null;
    /** Called with every frame that is not a response or a pong: (frame, via). */
    this.onEvent = () => {};
    /** Called once when the connection ends, with a reason. */
    this.onClose = () => {};
    transport.onFrame = (bytes, via) => this.receive(bytes, via);
    transport.onClose = (reason) => this.ended(reason);
  }

  /** Which transport this connection uses: 'webtransport' or 'websocket'. */
  get kind() {
    return this.transport.kind;
  }

  async handshake(o) {
    const frames = [];
    let wake = null;
    this.waiter = (item) => {
      if (item) frames.push(item);
      if (wake) wake();
    };
    const next = () =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('handshake timed out')), o.timeoutMs ?? 10000);
        const take = () => {
          if (frames.length) {
            clearTimeout(timer);
            wake = null;
            resolve(frames.shift().frame);
          } else if (this.closedReason) {
            clearTimeout(timer);
            reject(new Error(`closed during handshake: ${this.closedReason}`));
          } else {
            wake = take;
          }
        };
        take();
      });
    const refuse = (f) => {
      if (f.type === 'Error') return new RelayError(f.error);
      if (f.type === 'Closing') return new Error(`relay closed: ${f.reason} ${f.message}`);
      return new Error(`unexpected ${f.type} during handshake`);
    };

    await this.transport.send(
      encodeClientFrame({
        type: 'Hello',
        min_version: PROTOCOL_VERSION,
        max_version: PROTOCOL_VERSION,
        client: o.clientName ?? 'hush-js/0.1',
      }),
    );
    const challenge = await next();
    if (challenge.type !== 'Challenge') throw refuse(challenge);
    if (challenge.version !== PROTOCOL_VERSION) throw new Error(`relay chose version ${challenge.version}`);
    this.challenge = challenge;

    const id = this.identity;
    const transcript = authTranscript(challenge.nonce, challenge.relay_id, id.user, id.publicKey);
    await this.transport.send(
      encodeClientFrame({
        type: 'Authenticate',
        user: id.user,
        device_key: id.publicKey,
        signature: await id.sign(transcript),
        registration: o.registration ?? { type: 'None' },
        resume: o.resume ?? [],
      }),
    );
    const ready = await next();
    if (ready.type !== 'Ready') throw refuse(ready);
    this.ready = ready;
    this.waiter = null;
    // Anything that arrived right behind Ready is an ordinary event.
    for (const { frame, via } of frames) this.dispatch(frame, via);
    this.startHeartbeat(challenge.heartbeat_ms);
  }

  startHeartbeat(ms) {
    // Ping at a third of the interval, well inside the relay's three-interval idle limit.
    const every = Math.max(1000, Math.floor(ms / 3));
    this.heartbeat = setInterval(() => {
      const nonce = randomU64();
      // Its Pong is of no interest to the application.
      this.pings.set(nonce, () => {});
      this.send({ type: 'Ping', nonce }).catch(() => this.pings.delete(nonce));
    }, every);
  }

  receive(bytes, via) {
    let frame;
    try {
      frame = decodeRelayFrame(bytes);
    } catch (e) {
      // A frame we cannot decode: on a framed transport its extent is known, so
      // log and skip it (section 13).
      console.warn('hush: undecodable relay frame', e);
      return;
    }
    if (this.waiter) {
      this.waiter({ frame, via });
      return;
    }
    this.dispatch(frame, via);
  }

  dispatch(frame, via) {
    if (frame.type === 'Response') {
      const p = this.pending.get(frame.id);
      if (!p) return;
      this.pending.delete(frame.id);
      if (frame.err) p.reject(new RelayError(frame.err));
      else p.resolve(frame.ok);
      return;
    }
    if (frame.type === 'Pong') {
      const resolve = this.pings.get(frame.nonce);
      if (resolve) {
        this.pings.delete(frame.nonce);
        resolve();
        return;
      }
    }
    this.onEvent(frame, via);
  }

  ended(reason) {
    if (this.closedReason) return;
    this.closedReason = reason;
    clearInterval(this.heartbeat);
    for (const p of this.pending.values()) p.reject(new Error(`connection closed: ${reason}`));
    this.pending.clear();
    if (this.waiter) this.waiter(null);
    this.onClose(reason);
  }

  /** Sends one client frame reliably. */
  async send(frame) {
    if (this.closedReason) throw new Error(`connection closed: ${this.closedReason}`);
    await this.transport.send(encodeClientFrame(frame));
  }

  /**
   * Sends a request (section 4.3) and resolves with its Reply, or rejects with
   * a RelayError.
   */
  request(op) {
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.send({ type: 'Request', id, op }).catch((e) => {
        this.pending.delete(id);
        reject(e);
      });
    });
  }

  /** Acknowledges a group's entries up to and including `seq` (section 8.2). */
  ack(group, seq) {
    return this.send({ type: 'Ack', group, seq });
  }

  /** Acknowledges inbox entries up to `seq`. */
  ackInbox(seq) {
    return this.send({ type: 'AckInbox', seq });
  }

  /**
   * Sends an ephemeral signal (typing) to the group's online members: as a
   * datagram over WebTransport when it fits, else on the stream. Resolves with
   * 'datagram' or 'stream'.
   */
  async ephemeral(group, payload) {
    const bytes = encodeClientFrame({ type: 'Ephemeral', group, payload });
    if (await this.transport.sendDatagram(bytes)) return 'datagram';
    await this.transport.send(bytes);
    return 'stream';
  }

  /** Sends a Ping and resolves when its Pong arrives. */
  ping() {
    const nonce = randomU64();
    return new Promise((resolve, reject) => {
      this.pings.set(nonce, resolve);
      this.send({ type: 'Ping', nonce }).catch((e) => {
        this.pings.delete(nonce);
        reject(e);
      });
    });
  }

  /** Closes the connection. */
  close() {
    this.transport.close();
  }
}
