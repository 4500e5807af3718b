// Length-prefixed framing of WebTransport streams (PROTOCOL.md section 2.2):
// each frame is preceded by its length as a 4-byte big-endian unsigned integer.

import { MAX_FRAME_LEN } from './codec.js';

/** Raised when a declared length exceeds the reader's limit. */
export class FrameTooLarge extends Error {
  constructor(len, limit) {
    super(`declared frame length ${len} exceeds the limit ${limit}`);
    this.name = 'FrameTooLarge';
  }
}

/** The frame with its 4-byte big-endian length prefix. */
export function prefixFrame(frame) {
  const out = new Uint8Array(4 + frame.length);
  new DataView(out.buffer).setUint32(0, frame.length, false);
  out.set(frame, 4);
  return out;
}

/**
 * Splits a byte stream into frames. Feed it whatever a stream read returns
 * (part of a prefix, several frames, a frame and a half); it returns the whole
 * frames it now holds. A declared length over the limit throws at once, before
 * any of the body is buffered.
 */
export class FrameSplitter {
  constructor(limit = MAX_FRAME_LEN) {
    this.limit = limit;
    this.buf = new Uint8Array(0);
  }

  /** @returns {Uint8Array[]} the complete frames, in order. */
  push(chunk) {
    if (chunk.length) {
      const joined = new Uint8Array(this.buf.length + chunk.length);
      joined.set(this.buf);
      joined.set(chunk, this.buf.length);
      this.buf = joined;
    }
    const frames = [];
    let pos = 0;
    while (this.buf.length - pos >= 4) {
      const len = new DataView(this.buf.buffer, this.buf.byteOffset + pos, 4).getUint32(0, false);
      if (len > this.limit) throw new FrameTooLarge(len, this.limit);
      if (this.buf.length - pos < 4 + len) break;
      frames.push(this.buf.slice(pos + 4, pos + 4 + len));
      pos += 4 + len;
    }
    this.buf = this.buf.slice(pos);
    return frames;
  }

  /** Bytes held that do not yet form a whole frame. */
  get pending() {
    return this.buf.length;
  }
}
