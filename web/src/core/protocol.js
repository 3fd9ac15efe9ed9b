/**
 * The peer wire protocol codec: `encode` / `decode` of every frame, no I/O. Twin of
 * `peer/protocol.py`; docs/protocol.md is the specification and tests/vectors/protocol.json
 * pins both implementations to the same bytes.
 *
 * Messages are plain objects shaped exactly like the vectors' JSON `message`: `type` is the
 * frame name in lower case and the fields carry the spec's snake_case names, so the Python
 * dataclasses, the JS objects and the vectors say the same thing with the same words. Only
 * byte fields differ from the JSON: they are `Uint8Array` here, hex in JSON
 * ({@link messageToJSON} / {@link messageFromJSON} convert).
 *
 * Every frame is validated completely: size first, then each field only after checking its
 * bytes are present, every count and length against the limits below before anything is
 * allocated, trailing bytes rejected. Any violation throws {@link ProtocolError} with the same
 * `code` Python uses; nothing else escapes {@link decode} for any input bytes.
 *
 * @module core/protocol
 */

import {
  MAX_SEGMENT_NUMBER,
  SEGMENT_KIND_CODES,
  SWARM_ID_PATTERN,
  isSegmentKey,
} from './ids.js';
import { describe, fromHex, isWellFormed, toHex } from './util.js';

/** Protocol version spoken here. Same major: compatible, both speak min(minor). */
export const VERSION_MAJOR = 1;
/** Minor version spoken here. */
export const VERSION_MINOR = 0;
/** Largest frame, header included (64 KiB, RFC 8841's default max-message-size). */
export const MAX_FRAME_SIZE = 65536;
/** Bytes before the payload of a DATA frame: type (1) + request id (4) + offset (4). */
export const DATA_HEADER_SIZE = 9;
/** Largest DATA payload: 65,527 bytes. */
export const MAX_DATA_PAYLOAD = MAX_FRAME_SIZE - DATA_HEADER_SIZE;
/** Smallest `max_message_size` a HELLO may advertise; every control frame fits in it. */
export const MIN_MESSAGE_SIZE = 16384;
/** Most swarms one link covers (indices 0..31). */
export const MAX_SWARMS = 32;
/** Longest HAVE_SET bitmap in bytes (65,536 segments). */
export const MAX_BITMAP_BYTES = 8192;
/** Most init segment ids in one HAVE_SET. */
export const MAX_INIT_IDS = 16;
/** Longest peer id (printable ASCII). */
export const MAX_PEER_ID_BYTES = 64;
/** Longest ERROR reason in UTF-8 bytes. */
export const MAX_REASON_BYTES = 255;
/** Largest u32 (request ids, sizes, offsets). */
export const MAX_U32 = 0xffffffff;
/** Largest BUSY retry hint in milliseconds (u16). */
export const MAX_RETRY_AFTER_MS = 0xffff;
/** HELLO flag bit: the sender serves segments (answers REQUESTs). */
export const FLAG_UPLOAD = 0x01;

/** Codes of ERROR frames and of {@link ProtocolError} (docs/protocol.md §6.4). */
export const ErrorCode = Object.freeze({
  /** Different major protocol version. */
  VERSION: 1,
  /** A frame could not be parsed: truncated, trailing bytes, bad field value. */
  MALFORMED: 2,
  /** A frame type this version does not define. */
  UNKNOWN_TYPE: 3,
  /** A frame or a length field exceeds a protocol or advertised limit. */
  TOO_LARGE: 4,
  /** A well-formed frame that breaks the protocol's rules in the current state. */
  VIOLATION: 5,
  /** The sender refuses this peer (e.g. it served data that failed verification). */
  BANNED: 6,
  /** Orderly shutdown: leaving, or the link is no longer needed. */
  GOING_AWAY: 7,
});

const CODE_LABELS = Object.fromEntries(
  Object.entries(ErrorCode).map(([name, code]) => [code, name.toLowerCase()]),
);

/**
 * The lower-case name of an error code (`"unknown_type"`), as in the vectors and logs;
 * `"code_200"` for codes this version does not define.
 *
 * @param {number} code
 * @returns {string}
 */
export function errorCodeLabel(code) {
  return CODE_LABELS[code] ?? `code_${code}`;
}

/**
 * A frame or a message violates the protocol; `code` (an {@link ErrorCode}) says how.
 * Thrown by {@link decode} for bad peer input and by {@link encode} for out-of-range fields
 * (a local bug).
 */
export class ProtocolError extends Error {
  /**
   * @param {number} code an {@link ErrorCode}
   * @param {string} detail what was wrong, without the code (the ERROR frame's reason)
   */
  constructor(code, detail) {
    super(`${errorCodeLabel(code)}: ${detail}`);
    this.name = 'ProtocolError';
    /** @type {number} */
    this.code = code;
    /** @type {string} */
    this.detail = detail;
  }

  /** The code's lower-case name (`"malformed"`). */
  get label() {
    return errorCodeLabel(this.code);
  }
}

/** The first byte of every frame. 0x00 is never valid, so zeroed buffers are rejected. */
export const MessageType = Object.freeze({
  HELLO: 0x01,
  ERROR: 0x02,
  JOIN: 0x03,
  HAVE_SET: 0x04,
  HAVE: 0x05,
  LOST: 0x06,
  FETCHING: 0x07,
  FETCH_ABORTED: 0x08,
  REQUEST: 0x09,
  CANCEL: 0x0a,
  DONT_HAVE: 0x0b,
  BUSY: 0x0c,
  RESPONSE: 0x0d,
  DATA: 0x0e,
});

/** Wire value (u8) of each HELLO role. */
export const ROLE_CODES = Object.freeze({ viewer: 0, seed: 1 });
const ROLE_NAMES = ['viewer', 'seed'];
const KIND_NAMES = ['media', 'init'];

/**
 * Field names of each message type in wire (and JSON) order; `type` comes first.
 * @type {Readonly<Record<string, readonly string[]>>}
 */
export const MESSAGE_FIELDS = Object.freeze({
  hello: [
    'version_major',
    'version_minor',
    'role',
    'flags',
    'max_message_size',
    'max_requests',
    'peer_id',
    'swarms',
  ],
  error: ['code', 'reason'],
  join: ['swarm', 'swarm_id'],
  have_set: ['swarm', 'base', 'bitmap', 'init_ids'],
  have: ['swarm', 'key'],
  lost: ['swarm', 'key'],
  fetching: ['swarm', 'key'],
  fetch_aborted: ['swarm', 'key'],
  request: ['request_id', 'swarm', 'key', 'offset', 'length'],
  cancel: ['request_id'],
  dont_have: ['request_id'],
  busy: ['request_id', 'retry_after_ms'],
  response: ['request_id', 'total_size', 'offset', 'length'],
  data: ['request_id', 'offset', 'payload'],
});

// Defaults of optional fields, as in the Python dataclasses.
const DEFAULTS = {
  error: { reason: '' },
  have_set: { init_ids: [] },
  request: { offset: 0, length: 0 },
  busy: { retry_after_ms: 0 },
};

const TYPE_CODES = Object.fromEntries(
  Object.entries(MessageType).map(([name, code]) => [name.toLowerCase(), code]),
);
const TYPE_NAMES = Object.fromEntries(Object.entries(TYPE_CODES).map(([n, c]) => [c, n]));

/**
 * A wire message. Which fields are present depends on `type` (see {@link MESSAGE_FIELDS}):
 * hello {version_major, version_minor, role: "viewer"|"seed", flags, max_message_size,
 * max_requests, peer_id, swarms: string[]}; error {code, reason}; join {swarm, swarm_id};
 * have_set {swarm, base, bitmap: Uint8Array, init_ids: number[]}; have / lost / fetching /
 * fetch_aborted {swarm, key: SegmentKey}; request {request_id, swarm, key, offset, length};
 * cancel / dont_have {request_id}; busy {request_id, retry_after_ms}; response {request_id,
 * total_size, offset, length}; data {request_id, offset, payload: Uint8Array}.
 *
 * @typedef {{type: string, [field: string]: any}} Message
 */

// ------------------------------------------------------------------------------- validation

function fail(detail, code = ErrorCode.MALFORMED) {
  return new ProtocolError(code, detail);
}

function checkInt(value, name, high, low = 0) {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < low || value > high) {
    throw fail(`${name} ${describe(value)} is outside ${low}..${high}`);
  }
}

function checkSwarmIndex(index) {
  checkInt(index, 'swarm index', MAX_SWARMS - 1);
}

function checkSwarmId(swarm) {
  if (typeof swarm !== 'string' || !SWARM_ID_PATTERN.test(swarm)) {
    throw fail(`swarm id ${describe(swarm)} does not match ${SWARM_ID_PATTERN.source}`);
  }
}

function checkPeerId(peerId) {
  if (
    typeof peerId !== 'string' ||
    peerId.length < 1 ||
    peerId.length > MAX_PEER_ID_BYTES ||
    !/^[\x21-\x7e]*$/.test(peerId)
  ) {
    throw fail(
      `peer id ${describe(peerId)} must be 1..${MAX_PEER_ID_BYTES} printable ASCII chars`,
    );
  }
}

function checkKey(key) {
  if (!isSegmentKey(key)) {
    throw fail(`key ${describe(key)} must be {kind: "media"|"init", number: 0..2**53-1}`);
  }
}

function checkBytes(value, name) {
  if (!(value instanceof Uint8Array)) throw fail(`${name} must be a Uint8Array`);
}

const VALIDATORS = {
  hello(m) {
    checkInt(m.version_major, 'version major', 255);
    checkInt(m.version_minor, 'version minor', 255);
    if (!Object.hasOwn(ROLE_CODES, m.role)) throw fail(`role ${describe(m.role)} is unknown`);
    checkInt(m.flags, 'flags', 255);
    checkInt(m.max_message_size, 'max message size', MAX_U32, MIN_MESSAGE_SIZE);
    checkInt(m.max_requests, 'max requests', 0xffff, 1);
    checkPeerId(m.peer_id);
    if (!Array.isArray(m.swarms)) throw fail('swarms must be an array of swarm ids');
    if (m.swarms.length > MAX_SWARMS) {
      throw fail(`${m.swarms.length} swarms, at most ${MAX_SWARMS}`, ErrorCode.TOO_LARGE);
    }
    m.swarms.forEach(checkSwarmId);
    if (new Set(m.swarms).size !== m.swarms.length) throw fail('the same swarm id is listed twice');
  },
  error(m) {
    checkInt(m.code, 'error code', 255, 1);
    if (typeof m.reason !== 'string' || !isWellFormed(m.reason)) {
      throw fail('error reason must be valid text');
    }
    if (utf8.encode(m.reason).length > MAX_REASON_BYTES) {
      throw fail(`error reason longer than ${MAX_REASON_BYTES} bytes`, ErrorCode.TOO_LARGE);
    }
  },
  join(m) {
    checkSwarmIndex(m.swarm);
    checkSwarmId(m.swarm_id);
  },
  have_set(m) {
    checkSwarmIndex(m.swarm);
    checkInt(m.base, 'base sequence', MAX_SEGMENT_NUMBER);
    checkBytes(m.bitmap, 'bitmap');
    if (m.bitmap.length > MAX_BITMAP_BYTES) {
      throw fail(
        `bitmap of ${m.bitmap.length} bytes, at most ${MAX_BITMAP_BYTES}`,
        ErrorCode.TOO_LARGE,
      );
    }
    // Compared as a difference: base + 8 * length would round above 2**53.
    if (m.bitmap.length && 8 * m.bitmap.length - 1 > MAX_SEGMENT_NUMBER - m.base) {
      throw fail('bitmap reaches past the largest sequence number 2**53-1');
    }
    if (!Array.isArray(m.init_ids)) throw fail('init_ids must be an array');
    if (m.init_ids.length > MAX_INIT_IDS) {
      throw fail(`${m.init_ids.length} init ids, at most ${MAX_INIT_IDS}`, ErrorCode.TOO_LARGE);
    }
    for (const id of m.init_ids) checkInt(id, 'init id', MAX_SEGMENT_NUMBER);
  },
  have: checkKeyUpdate,
  lost: checkKeyUpdate,
  fetching: checkKeyUpdate,
  fetch_aborted: checkKeyUpdate,
  request(m) {
    checkInt(m.request_id, 'request id', MAX_U32);
    checkSwarmIndex(m.swarm);
    checkKey(m.key);
    checkInt(m.offset, 'offset', MAX_U32);
    checkInt(m.length, 'length', MAX_U32);
  },
  cancel: checkRequestRef,
  dont_have: checkRequestRef,
  busy(m) {
    checkInt(m.request_id, 'request id', MAX_U32);
    checkInt(m.retry_after_ms, 'retry after', MAX_RETRY_AFTER_MS);
  },
  response(m) {
    checkInt(m.request_id, 'request id', MAX_U32);
    checkInt(m.total_size, 'total size', MAX_U32);
    checkInt(m.offset, 'offset', MAX_U32);
    checkInt(m.length, 'length', MAX_U32);
    if (m.offset + m.length > m.total_size) {
      throw fail(
        `range ${m.offset}+${m.length} ends past the segment size ${m.total_size}`,
      );
    }
  },
  data(m) {
    checkInt(m.request_id, 'request id', MAX_U32);
    checkInt(m.offset, 'offset', MAX_U32);
    checkBytes(m.payload, 'payload');
    const size = m.payload.length;
    if (size < 1 || size > MAX_DATA_PAYLOAD) {
      throw fail(
        `DATA payload of ${size} bytes, must be 1..${MAX_DATA_PAYLOAD}`,
        size === 0 ? ErrorCode.MALFORMED : ErrorCode.TOO_LARGE,
      );
    }
  },
};

function checkKeyUpdate(m) {
  checkSwarmIndex(m.swarm);
  checkKey(m.key);
}

function checkRequestRef(m) {
  checkInt(m.request_id, 'request id', MAX_U32);
}

/**
 * Check every field of `message` against the protocol's rules (what Python's dataclass
 * constructors check); throws {@link ProtocolError} on the first problem.
 *
 * @param {Message} message
 * @returns {Message} the same message
 */
export function validateMessage(message) {
  const validator = VALIDATORS[message?.type];
  if (!validator || !Object.hasOwn(VALIDATORS, message.type)) {
    throw new TypeError(`not a protocol message: type ${describe(message?.type)}`);
  }
  validator(message);
  return message;
}

// ---------------------------------------------------------------------------------- encoding

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Writes big-endian fields into a frame allocated once at its final size. */
class Writer {
  constructor(size) {
    this.bytes = new Uint8Array(size);
    this.view = new DataView(this.bytes.buffer);
    this.pos = 0;
  }

  u8(value) {
    this.view.setUint8(this.pos, value);
    this.pos += 1;
  }

  u16(value) {
    this.view.setUint16(this.pos, value);
    this.pos += 2;
  }

  u32(value) {
    this.view.setUint32(this.pos, value);
    this.pos += 4;
  }

  /** A u64 whose value is at most 2**53 - 1 (validated before). */
  u53(value) {
    this.view.setUint32(this.pos, Math.floor(value / 2 ** 32));
    this.view.setUint32(this.pos + 4, value >>> 0);
    this.pos += 8;
  }

  raw(bytes) {
    this.bytes.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  /** A str8 of ASCII text (peer and swarm ids, validated before). */
  ascii(text) {
    this.u8(text.length);
    for (let i = 0; i < text.length; i++) this.bytes[this.pos + i] = text.charCodeAt(i);
    this.pos += text.length;
  }

  key(key) {
    this.u8(SEGMENT_KIND_CODES[key.kind]);
    this.u53(key.number);
  }
}

const str8Size = (text) => 1 + text.length;

const ENCODERS = {
  hello(m) {
    const size = 11 + str8Size(m.peer_id) + 1 + m.swarms.reduce((n, s) => n + str8Size(s), 0);
    const w = new Writer(size);
    w.u8(MessageType.HELLO);
    w.u8(m.version_major);
    w.u8(m.version_minor);
    w.u8(ROLE_CODES[m.role]);
    w.u8(m.flags);
    w.u32(m.max_message_size);
    w.u16(m.max_requests);
    w.ascii(m.peer_id);
    w.u8(m.swarms.length);
    for (const swarm of m.swarms) w.ascii(swarm);
    return w.bytes;
  },
  error(m) {
    const reason = utf8.encode(m.reason);
    const w = new Writer(3 + reason.length);
    w.u8(MessageType.ERROR);
    w.u8(m.code);
    w.u8(reason.length);
    w.raw(reason);
    return w.bytes;
  },
  join(m) {
    const w = new Writer(2 + str8Size(m.swarm_id));
    w.u8(MessageType.JOIN);
    w.u8(m.swarm);
    w.ascii(m.swarm_id);
    return w.bytes;
  },
  have_set(m) {
    const w = new Writer(12 + m.bitmap.length + 1 + 8 * m.init_ids.length);
    w.u8(MessageType.HAVE_SET);
    w.u8(m.swarm);
    w.u53(m.base);
    w.u16(m.bitmap.length);
    w.raw(m.bitmap);
    w.u8(m.init_ids.length);
    for (const id of m.init_ids) w.u53(id);
    return w.bytes;
  },
  have: encodeKeyUpdate,
  lost: encodeKeyUpdate,
  fetching: encodeKeyUpdate,
  fetch_aborted: encodeKeyUpdate,
  request(m) {
    const w = new Writer(23);
    w.u8(MessageType.REQUEST);
    w.u32(m.request_id);
    w.u8(m.swarm);
    w.key(m.key);
    w.u32(m.offset);
    w.u32(m.length);
    return w.bytes;
  },
  cancel: encodeRequestRef,
  dont_have: encodeRequestRef,
  busy(m) {
    const w = new Writer(7);
    w.u8(MessageType.BUSY);
    w.u32(m.request_id);
    w.u16(m.retry_after_ms);
    return w.bytes;
  },
  response(m) {
    const w = new Writer(17);
    w.u8(MessageType.RESPONSE);
    w.u32(m.request_id);
    w.u32(m.total_size);
    w.u32(m.offset);
    w.u32(m.length);
    return w.bytes;
  },
  data(m) {
    return encodeData(m.request_id, m.offset, m.payload);
  },
};

function encodeKeyUpdate(m) {
  const w = new Writer(11);
  w.u8(TYPE_CODES[m.type]);
  w.u8(m.swarm);
  w.key(m.key);
  return w.bytes;
}

function encodeRequestRef(m) {
  const w = new Writer(5);
  w.u8(TYPE_CODES[m.type]);
  w.u32(m.request_id);
  return w.bytes;
}

/**
 * The frame for `message`, after validating every field.
 *
 * @param {Message} message
 * @returns {Uint8Array}
 * @throws {ProtocolError} if a field is out of range; TypeError if it is not a message
 */
export function encode(message) {
  validateMessage(message);
  return ENCODERS[message.type](message);
}

/**
 * A DATA frame: 9-byte header then `payload`, in one buffer (one data-channel message).
 * The hot path of senders: no validation beyond what the caller guarantees (request id and
 * offset are u32, payload is 1..MAX_DATA_PAYLOAD bytes).
 *
 * @param {number} requestId
 * @param {number} offset
 * @param {Uint8Array} payload
 * @returns {Uint8Array}
 */
export function encodeData(requestId, offset, payload) {
  const frame = new Uint8Array(DATA_HEADER_SIZE + payload.length);
  const view = new DataView(frame.buffer);
  view.setUint8(0, MessageType.DATA);
  view.setUint32(1, requestId);
  view.setUint32(5, offset);
  frame.set(payload, DATA_HEADER_SIZE);
  return frame;
}

// ---------------------------------------------------------------------------------- decoding

/** Cursor over one frame; every read checks that its bytes are present first. */
class Reader {
  constructor(bytes, pos) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = pos;
  }

  need(size, what) {
    const end = this.pos + size;
    if (end > this.bytes.length) {
      throw fail(`frame truncated in ${what}: needs ${end} bytes, has ${this.bytes.length}`);
    }
    const start = this.pos;
    this.pos = end;
    return start;
  }

  u8(what) {
    return this.view.getUint8(this.need(1, what));
  }

  u16(what) {
    return this.view.getUint16(this.need(2, what));
  }

  u32(what) {
    return this.view.getUint32(this.need(4, what));
  }

  /**
   * A u64 as a number: exact up to 2**53 - 1; larger values come out >= 2**53 (a high word
   * above 0x1FFFFF), so the range checks after reading reject them without BigInt.
   */
  u64(what) {
    const at = this.need(8, what);
    return this.view.getUint32(at) * 2 ** 32 + this.view.getUint32(at + 4);
  }

  take(size, what) {
    const at = this.need(size, what);
    return this.bytes.subarray(at, at + size);
  }

  ascii(what) {
    const raw = this.take(this.u8(what), what);
    let text = '';
    for (const byte of raw) {
      if (byte > 0x7f) throw fail(`${what} is not valid ascii`);
      text += String.fromCharCode(byte);
    }
    return text;
  }

  utf8(what) {
    const raw = this.take(this.u8(what), what);
    try {
      return utf8Strict.decode(raw);
    } catch {
      throw fail(`${what} is not valid utf-8`);
    }
  }

  key() {
    const at = this.need(9, 'segment key');
    const kind = this.view.getUint8(at);
    const number = this.view.getUint32(at + 1) * 2 ** 32 + this.view.getUint32(at + 5);
    if (kind >= KIND_NAMES.length) throw fail(`unknown segment kind ${kind}`);
    if (number > MAX_SEGMENT_NUMBER) throw fail('segment number is above 2**53-1');
    return { kind: KIND_NAMES[kind], number };
  }

  end(what) {
    if (this.pos !== this.bytes.length) {
      throw fail(`${this.bytes.length - this.pos} trailing bytes after ${what}`);
    }
  }
}

const DECODERS = {
  [MessageType.HELLO](r) {
    const major = r.u8('HELLO version');
    const minor = r.u8('HELLO version');
    if (major !== VERSION_MAJOR) {
      throw fail(
        `peer speaks protocol ${major}.${minor}, this peer speaks ` +
          `${VERSION_MAJOR}.${VERSION_MINOR}: upgrade the older side`,
        ErrorCode.VERSION,
      );
    }
    const role = r.u8('HELLO');
    const flags = r.u8('HELLO');
    const maxSize = r.u32('HELLO');
    const maxRequests = r.u16('HELLO');
    if (role >= ROLE_NAMES.length) throw fail(`unknown role ${role}`);
    const peerId = r.ascii('peer id');
    const count = r.u8('swarm count');
    if (count > MAX_SWARMS) {
      throw fail(`${count} swarms, at most ${MAX_SWARMS}`, ErrorCode.TOO_LARGE);
    }
    const swarms = [];
    for (let i = 0; i < count; i++) swarms.push(r.ascii('swarm id'));
    // A newer minor may append fields to HELLO; an equal or older one may not.
    if (minor <= VERSION_MINOR) r.end('HELLO');
    return checked({
      type: 'hello',
      version_major: major,
      version_minor: minor,
      role: ROLE_NAMES[role],
      flags,
      max_message_size: maxSize,
      max_requests: maxRequests,
      peer_id: peerId,
      swarms,
    });
  },
  [MessageType.ERROR](r) {
    const code = r.u8('error code');
    return checked({ type: 'error', code, reason: r.utf8('error reason') });
  },
  [MessageType.JOIN](r) {
    const swarm = r.u8('swarm index');
    return checked({ type: 'join', swarm, swarm_id: r.ascii('swarm id') });
  },
  [MessageType.HAVE_SET](r) {
    const swarm = r.u8('HAVE_SET');
    const base = r.u64('HAVE_SET');
    const size = r.u16('HAVE_SET');
    if (size > MAX_BITMAP_BYTES) {
      throw fail(`bitmap of ${size} bytes, at most ${MAX_BITMAP_BYTES}`, ErrorCode.TOO_LARGE);
    }
    const bitmap = r.take(size, 'bitmap').slice(); // a copy: the message outlives the frame
    const count = r.u8('init count');
    if (count > MAX_INIT_IDS) {
      throw fail(`${count} init ids, at most ${MAX_INIT_IDS}`, ErrorCode.TOO_LARGE);
    }
    const initIds = [];
    for (let i = 0; i < count; i++) initIds.push(r.u64('init id'));
    return checked({ type: 'have_set', swarm, base, bitmap, init_ids: initIds });
  },
  [MessageType.HAVE]: keyUpdateDecoder('have'),
  [MessageType.LOST]: keyUpdateDecoder('lost'),
  [MessageType.FETCHING]: keyUpdateDecoder('fetching'),
  [MessageType.FETCH_ABORTED]: keyUpdateDecoder('fetch_aborted'),
  [MessageType.REQUEST](r) {
    const requestId = r.u32('REQUEST');
    const swarm = r.u8('REQUEST');
    const key = r.key();
    const offset = r.u32('REQUEST range');
    const length = r.u32('REQUEST range');
    return checked({ type: 'request', request_id: requestId, swarm, key, offset, length });
  },
  [MessageType.CANCEL]: requestRefDecoder('cancel'),
  [MessageType.DONT_HAVE]: requestRefDecoder('dont_have'),
  [MessageType.BUSY](r) {
    const requestId = r.u32('BUSY');
    return checked({ type: 'busy', request_id: requestId, retry_after_ms: r.u16('BUSY') });
  },
  [MessageType.RESPONSE](r) {
    return checked({
      type: 'response',
      request_id: r.u32('RESPONSE'),
      total_size: r.u32('RESPONSE'),
      offset: r.u32('RESPONSE'),
      length: r.u32('RESPONSE'),
    });
  },
};

function keyUpdateDecoder(type) {
  return (r) => {
    const swarm = r.u8('swarm index');
    return checked({ type, swarm, key: r.key() });
  };
}

function requestRefDecoder(type) {
  return (r) => checked({ type, request_id: r.u32('request id') });
}

function checked(message) {
  VALIDATORS[message.type](message);
  return message;
}

/**
 * A view of `frame`'s bytes as a Uint8Array (no copy).
 *
 * @param {ArrayBuffer|ArrayBufferView} frame
 * @returns {Uint8Array}
 */
export function asBytes(frame) {
  if (frame instanceof Uint8Array) return frame;
  if (ArrayBuffer.isView(frame)) {
    return new Uint8Array(frame.buffer, frame.byteOffset, frame.byteLength);
  }
  if (frame instanceof ArrayBuffer) return new Uint8Array(frame);
  throw new TypeError(`a frame is an ArrayBuffer or a typed array, not ${describe(frame)}`);
}

/**
 * The message in `frame`, fully validated.
 *
 * A DATA message's `payload` is a view into `frame` (no copy): keep the frame's buffer
 * untouched while the payload is in use, or copy it.
 *
 * @param {ArrayBuffer|ArrayBufferView} frame one data-channel message
 * @returns {Message}
 * @throws {ProtocolError} for any frame that breaks docs/protocol.md
 */
export function decode(frame) {
  const bytes = asBytes(frame);
  const size = bytes.length;
  if (size > MAX_FRAME_SIZE) {
    throw fail(`frame of ${size} bytes, at most ${MAX_FRAME_SIZE}`, ErrorCode.TOO_LARGE);
  }
  if (size === 0) throw fail('empty frame');
  const kind = bytes[0];
  if (kind === MessageType.DATA) {
    // The hot path: one bounds check, two reads, a view of the payload.
    if (size <= DATA_HEADER_SIZE) throw fail(`DATA frame of ${size} bytes has no payload`);
    const view = new DataView(bytes.buffer, bytes.byteOffset, DATA_HEADER_SIZE);
    return {
      type: 'data',
      request_id: view.getUint32(1),
      offset: view.getUint32(5),
      payload: bytes.subarray(DATA_HEADER_SIZE),
    };
  }
  const decoder = DECODERS[kind];
  if (decoder === undefined) {
    throw fail(`unknown frame type 0x${kind.toString(16).padStart(2, '0')}`, ErrorCode.UNKNOWN_TYPE);
  }
  const reader = new Reader(bytes, 1);
  const message = decoder(reader);
  if (kind !== MessageType.HELLO) reader.end(TYPE_NAMES[kind].toUpperCase());
  return message;
}

// ------------------------------------------------------------------------------ HAVE_SET help

/**
 * The smallest HAVE_SET for `sequences` (base = lowest, bitmap up to the highest).
 *
 * @param {number} swarm swarm index in the sender's list
 * @param {Iterable<number>} sequences media sequence numbers held
 * @param {Iterable<number>} [initIds] init segment ids held
 * @returns {Message}
 */
export function haveSetFromSequences(swarm, sequences, initIds = []) {
  const held = [...new Set(sequences)].sort((a, b) => a - b);
  for (const sequence of held) checkInt(sequence, 'sequence', MAX_SEGMENT_NUMBER);
  const message = { type: 'have_set', swarm, base: 0, bitmap: new Uint8Array(0), init_ids: [...initIds] };
  if (held.length) {
    const base = held[0];
    const span = held[held.length - 1] - base + 1;
    if (span > 8 * MAX_BITMAP_BYTES) {
      throw fail(
        `sequences ${base}..${held[held.length - 1]} span ${span} segments; a HAVE_SET covers ` +
          `at most ${8 * MAX_BITMAP_BYTES}: advertise the window that matters`,
        ErrorCode.TOO_LARGE,
      );
    }
    const bitmap = new Uint8Array(Math.ceil(span / 8));
    for (const sequence of held) {
      const offset = sequence - base;
      bitmap[offset >> 3] |= 0x80 >> (offset & 7);
    }
    message.base = base;
    message.bitmap = bitmap;
  }
  return validateMessage(message);
}

/**
 * The media sequence numbers a HAVE_SET bitmap marks as held, ascending.
 *
 * @param {number} base sequence number of bit 0
 * @param {Uint8Array} bitmap bit i (MSB first) set: base + i is held
 * @returns {Generator<number>}
 */
export function* bitmapSequences(base, bitmap) {
  for (let index = 0; index < bitmap.length; index++) {
    const byte = bitmap[index];
    if (byte === 0) continue;
    for (let bit = 0; bit < 8; bit++) {
      if (byte & (0x80 >> bit)) yield base + 8 * index + bit;
    }
  }
}

// -------------------------------------------------------------------------------------- JSON

/**
 * The JSON form of `message` used by the test vectors (bytes as lower-case hex).
 *
 * @param {Message} message
 * @returns {object}
 */
export function messageToJSON(message) {
  const fields = MESSAGE_FIELDS[message?.type];
  if (!fields || !Object.hasOwn(MESSAGE_FIELDS, message.type)) {
    throw new TypeError(`not a protocol message: type ${describe(message?.type)}`);
  }
  const out = { type: message.type };
  for (const name of fields) out[name] = toJSONValue(message[name]);
  return out;
}

function toJSONValue(value) {
  if (value instanceof Uint8Array) return toHex(value);
  if (Array.isArray(value)) return value.map(toJSONValue);
  if (typeof value === 'object' && value !== null) return { kind: value.kind, number: value.number };
  return value;
}

/**
 * Inverse of {@link messageToJSON}: a validated message from its JSON form. Optional fields
 * (ERROR reason, HAVE_SET init_ids, REQUEST offset/length, BUSY retry_after_ms) default as in
 * Python; unknown keys are ignored.
 *
 * @param {object} data
 * @returns {Message}
 * @throws {TypeError} if `data` is not a message object (unknown type, missing field, bad hex);
 *   {@link ProtocolError} if a field is out of range
 */
export function messageFromJSON(data) {
  if (typeof data !== 'object' || data === null) {
    throw new TypeError(`a message is a JSON object, not ${describe(data)}`);
  }
  const fields = Object.hasOwn(MESSAGE_FIELDS, data.type) ? MESSAGE_FIELDS[data.type] : null;
  if (!fields) throw new TypeError(`unknown message type ${describe(data.type)}`);
  const defaults = DEFAULTS[data.type] ?? {};
  const message = { type: data.type };
  for (const name of fields) {
    if (Object.hasOwn(data, name)) message[name] = fromJSONValue(name, data[name]);
    else if (Object.hasOwn(defaults, name)) message[name] = structuredClone(defaults[name]);
    else throw new TypeError(`${data.type} message is missing field ${name}`);
  }
  return validateMessage(message);
}

function fromJSONValue(name, value) {
  if (name === 'bitmap' || name === 'payload') return fromHex(value);
  if (name === 'key') {
    if (typeof value !== 'object' || value === null) throw new TypeError('key must be an object');
    return { kind: value.kind, number: value.number };
  }
  if (Array.isArray(value)) return [...value];
  return value;
}
