// The two transports of PROTOCOL.md section 2, behind one small interface:
//
//   send(frameBytes)          reliable, in order (WebSocket message / stream frame)
//   sendDatagram(frameBytes)  unreliable; returns false if datagrams are unavailable
//                             or the frame does not fit (send it reliably then)
//   close()
//   onFrame(bytes, via)       set by the caller; via = 'stream' | 'datagram'
//   onClose(reason)           set by the caller; called once
//
// Frames are bare encoded frames; the WebTransport stream adds and strips the
// 4-byte length prefix here.

import { FrameSplitter, prefixFrame } from './framing.js';

/** WebSocket: `wss://host:port/ws`, one frame per binary message (section 2.1). */
export class WebSocketTransport {
  /** Opens the WebSocket; resolves once it is open. */
  static open(url) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.binaryType = 'arraybuffer';
      const t = new WebSocketTransport(ws);
      ws.onopen = () => resolve(t);
      ws.onerror = () => reject(new Error(`WebSocket to ${url} failed`));
    });
  }

  constructor(ws) {
    this.kind = 'websocket';
    this.ws = ws;
    this.onFrame = () => {};
    this.onClose = () => {};
    this.closed = false;
    ws.onmessage = (ev) => {
      if (typeof ev.data === 'string') {
        this.fail('text message from the relay');
        return;
      }
      this.onFrame(new Uint8Array(ev.data), 'stream');
    };
    ws.onclose = (ev) => this.fail(`WebSocket closed (${ev.code})`);
  }

  fail(reason) {
    if (this.closed) return;
    this.closed = true;
    try {
      this.ws.close();
    } catch {
      // already closing
    }
    this.onClose(reason);
  }

  async send(frame) {
    if (this.closed) throw new Error('connection closed');
    this.ws.send(frame);
  }

  /** WebSocket has no datagrams. */
  async sendDatagram() {
    return false;
  }

  close() {
    this.fail('closed by the client');
  }
}

/**
 * WebTransport: one client-opened bidirectional stream with length-prefixed
 * frames, and datagrams (one bare frame each) for ephemeral signals (section 2.2).
 */
export class WebTransportTransport {
  /**
   * Opens a session and its stream.
   * @param {string} url `https://host:port/wt`
   * @param {Uint8Array|Uint8Array[]|null} certHash SHA-256 of the relay's certificate (development
   *   relays; several during a certificate rotation), or null to check the chain as usual
   */
  static async open(url, certHash, { frameLimit } = {}) {
    const hashes = certHash ? (Array.isArray(certHash) ? certHash : [certHash]) : [];
    const options = hashes.length
      ? { serverCertificateHashes: hashes.map((value) => ({ algorithm: 'sha-256', value })) }
      : {};
    // `?datagrams=1` asks the relay to send ephemeral signals and presence as
    // datagrams (section 2.2); this transport reads them.
    const u = new URL(url);
    u.searchParams.set('datagrams', '1');
    const wt = new WebTransport(u.toString(), options);
    await wt.ready;
    // The relay takes the first bidirectional stream; the caller writes Hello on
    // it at once (a QUIC stream is invisible to the relay until written to).
    const stream = await wt.createBidirectionalStream();
    return new WebTransportTransport(wt, stream, frameLimit);
  }

  constructor(wt, stream, frameLimit) {
    this.kind = 'webtransport';
    this.wt = wt;
    this.writer = stream.writable.getWriter();
    this.datagramWriter = wt.datagrams.writable.getWriter();
    this.splitter = new FrameSplitter(frameLimit);
    this.onFrame = () => {};
    this.onClose = () => {};
    this.closed = false;
    this.readStream(stream.readable.getReader());
    this.readDatagrams(wt.datagrams.readable.getReader());
    wt.closed.then(
      (info) => this.fail(`session closed (${info?.closeCode ?? 0} ${info?.reason ?? ''})`),
      (e) => this.fail(`session failed: ${e}`),
    );
  }

  async readStream(reader) {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const frame of this.splitter.push(value)) this.onFrame(frame, 'stream');
      }
      this.fail('stream ended');
    } catch (e) {
      this.fail(`stream: ${e.message ?? e}`);
    }
  }

  async readDatagrams(reader) {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        this.onFrame(value, 'datagram');
      }
    } catch {
      // the session is closing; readStream reports it
    }
  }

  fail(reason) {
    if (this.closed) return;
    this.closed = true;
    try {
      this.wt.close();
    } catch {
      // already closed
    }
    this.onClose(reason);
  }

  async send(frame) {
    if (this.closed) throw new Error('connection closed');
    await this.writer.write(prefixFrame(frame));
  }

  /** Sends one frame as a datagram; false if it does not fit. */
  async sendDatagram(frame) {
    if (this.closed) throw new Error('connection closed');
    const max = this.wt.datagrams.maxDatagramSize;
    if (typeof max === 'number' && frame.length > max) return false;
    await this.datagramWriter.write(frame);
    return true;
  }

  close() {
    this.fail('closed by the client');
  }
}
