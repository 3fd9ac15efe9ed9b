// The wire codec against the shared vectors (tests/vectors/protocol.json) and its own rules.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  DATA_HEADER_SIZE,
  ErrorCode,
  MAX_BITMAP_BYTES,
  MAX_DATA_PAYLOAD,
  MAX_FRAME_SIZE,
  MESSAGE_FIELDS,
  MessageType,
  ProtocolError,
  bitmapSequences,
  decode,
  encode,
  encodeData,
  errorCodeLabel,
  haveSetFromSequences,
  messageFromJSON,
  messageToJSON,
} from '../src/core/protocol.js';
import { mediaKey } from '../src/core/ids.js';
import { hex, loadVectors, toHex } from './helpers.js';

const VECTORS = loadVectors('protocol');

function throwsCode(fn, label) {
  assert.throws(fn, (error) => {
    assert.ok(error instanceof ProtocolError, `expected ProtocolError, got ${error}`);
    assert.equal(error.label, label, error.message);
    return true;
  });
}

describe('valid vectors', () => {
  for (const vector of VECTORS.valid) {
    test(`encodes: ${vector.name}`, () => {
      assert.equal(toHex(encode(messageFromJSON(vector.message))), vector.hex);
    });
    test(`decodes: ${vector.name}`, () => {
      assert.deepEqual(messageToJSON(decode(hex(vector.hex))), vector.message);
    });
  }
});

describe('tolerated vectors', () => {
  for (const vector of VECTORS.tolerated) {
    test(`decodes: ${vector.name}`, () => {
      assert.deepEqual(messageToJSON(decode(hex(vector.hex))), vector.message);
    });
  }
});

describe('invalid vectors', () => {
  for (const vector of VECTORS.invalid) {
    test(`${vector.error}: ${vector.name}`, () => {
      throwsCode(() => decode(hex(vector.hex)), vector.error);
    });
  }
});

test('the vectors cover every message type and the largest frame', () => {
  const covered = new Set(VECTORS.valid.map((v) => v.message.type));
  assert.deepEqual(covered, new Set(Object.keys(MESSAGE_FIELDS)));
  assert.deepEqual(
    new Set(Object.keys(MessageType).map((n) => n.toLowerCase())),
    new Set(Object.keys(MESSAGE_FIELDS)),
  );
  assert.equal(Math.max(...VECTORS.valid.map((v) => v.hex.length / 2)), MAX_FRAME_SIZE);
});

test('error code labels match the vectors and the spec', () => {
  assert.equal(errorCodeLabel(ErrorCode.UNKNOWN_TYPE), 'unknown_type');
  assert.equal(errorCodeLabel(ErrorCode.GOING_AWAY), 'going_away');
  assert.equal(errorCodeLabel(200), 'code_200');
  const error = new ProtocolError(ErrorCode.TOO_LARGE, 'big');
  assert.equal(error.message, 'too_large: big');
  assert.equal(error.detail, 'big');
  assert.ok(error instanceof Error);
});

test('decode accepts ArrayBuffer, DataView, Buffer and views at an offset', () => {
  const frame = encodeData(5, 10, Uint8Array.of(1, 2, 3));
  const expected = { type: 'data', request_id: 5, offset: 10, payload: Uint8Array.of(1, 2, 3) };
  const padded = new Uint8Array(frame.length + 7);
  padded.set(frame, 3);
  for (const input of [
    frame.buffer,
    new DataView(frame.buffer),
    Buffer.from(frame),
    padded.subarray(3, 3 + frame.length),
  ]) {
    const message = decode(input);
    assert.deepEqual({ ...message, payload: new Uint8Array(message.payload) }, expected);
  }
  assert.throws(() => decode('0e00'), TypeError);
  assert.throws(() => decode(null), TypeError);
});

test('DATA payload is a view of the frame, not a copy', () => {
  const frame = encodeData(1, 0, Uint8Array.of(9, 9));
  const message = decode(frame);
  frame[DATA_HEADER_SIZE] = 7;
  assert.equal(message.payload[0], 7);
});

test('HAVE_SET bitmap is a copy that outlives the frame', () => {
  const frame = hex('040000000000000000640002ffc000');
  const message = decode(frame);
  frame.fill(0);
  assert.deepEqual([...bitmapSequences(message.base, message.bitmap)], [...Array(10).keys()].map((i) => 100 + i));
});

test('encode validates every field like the Python constructors', () => {
  const hello = messageFromJSON(VECTORS.valid[0].message);
  throwsCode(() => encode({ ...hello, peer_id: 'has space' }), 'malformed');
  throwsCode(() => encode({ ...hello, max_message_size: 16383 }), 'malformed');
  throwsCode(() => encode({ ...hello, role: 'king' }), 'malformed');
  throwsCode(() => encode({ ...hello, swarms: ['a', 'a'] }), 'malformed');
  throwsCode(() => encode({ ...hello, swarms: Array.from({ length: 33 }, (_, i) => `s${i}`) }), 'too_large');
  throwsCode(() => encode({ ...hello, swarms: ['abc\n'] }), 'malformed');
  throwsCode(() => encode({ type: 'error', code: 0, reason: '' }), 'malformed');
  throwsCode(() => encode({ type: 'error', code: 1, reason: 'é'.repeat(128) }), 'too_large');
  throwsCode(() => encode({ type: 'error', code: 1, reason: '\ud800' }), 'malformed');
  throwsCode(() => encode({ type: 'have', swarm: 32, key: mediaKey(1) }), 'malformed');
  throwsCode(() => encode({ type: 'have', swarm: 0, key: { kind: 'media', number: 2 ** 53 } }), 'malformed');
  throwsCode(() => encode({ type: 'have', swarm: 0, key: { kind: 'audio', number: 1 } }), 'malformed');
  throwsCode(() => encode({ type: 'cancel', request_id: 2 ** 32 }), 'malformed');
  throwsCode(() => encode({ type: 'cancel', request_id: 1.5 }), 'malformed');
  throwsCode(() => encode({ type: 'cancel', request_id: '1' }), 'malformed');
  throwsCode(() => encode({ type: 'response', request_id: 0, total_size: 10, offset: 5, length: 6 }), 'malformed');
  throwsCode(() => encode({ type: 'data', request_id: 0, offset: 0, payload: new Uint8Array(0) }), 'malformed');
  throwsCode(
    () => encode({ type: 'data', request_id: 0, offset: 0, payload: new Uint8Array(MAX_DATA_PAYLOAD + 1) }),
    'too_large',
  );
  throwsCode(
    () => encode({ type: 'have_set', swarm: 0, base: 2 ** 53 - 7, bitmap: Uint8Array.of(1), init_ids: [] }),
    'malformed',
  );
  assert.throws(() => encode({ type: 'nope' }), TypeError);
  assert.throws(() => encode({ type: 'toString' }), TypeError);
  assert.throws(() => encode(null), TypeError);
});

test('haveSetFromSequences builds the smallest form and round-trips', () => {
  const message = haveSetFromSequences(1, [12, 10, 11, 40, 10], [77]);
  assert.equal(message.base, 10);
  assert.deepEqual([...message.bitmap], [0b11100000, 0, 0, 0b00000010]);
  assert.deepEqual([...bitmapSequences(message.base, message.bitmap)], [10, 11, 12, 40]);
  assert.deepEqual(decode(encode(message)), message);
  const empty = haveSetFromSequences(0, []);
  assert.equal(toHex(encode(empty)), '04000000000000000000000000');
  const widest = haveSetFromSequences(0, [5, 5 + 8 * MAX_BITMAP_BYTES - 1]);
  assert.equal(widest.bitmap.length, MAX_BITMAP_BYTES);
  throwsCode(() => haveSetFromSequences(0, [5, 5 + 8 * MAX_BITMAP_BYTES]), 'too_large');
  throwsCode(() => haveSetFromSequences(0, [-1]), 'malformed');
});

test('messageFromJSON fills Python defaults and rejects bad shapes clearly', () => {
  assert.deepEqual(messageFromJSON({ type: 'busy', request_id: 3 }), {
    type: 'busy',
    request_id: 3,
    retry_after_ms: 0,
  });
  assert.deepEqual(messageFromJSON({ type: 'request', request_id: 1, swarm: 0, key: { kind: 'init', number: 4 } }), {
    type: 'request',
    request_id: 1,
    swarm: 0,
    key: { kind: 'init', number: 4 },
    offset: 0,
    length: 0,
  });
  assert.deepEqual(messageFromJSON({ type: 'error', code: 7 }).reason, '');
  assert.throws(() => messageFromJSON({ type: 'hello' }), /missing field version_major/);
  assert.throws(() => messageFromJSON({ type: 'data', request_id: 0, offset: 0, payload: 'xyz' }), TypeError);
  assert.throws(() => messageFromJSON({ type: '__proto__' }), TypeError);
  assert.throws(() => messageFromJSON('hello'), TypeError);
  throwsCode(() => messageFromJSON({ type: 'cancel', request_id: -1 }), 'malformed');
});

test('messageToJSON and messageFromJSON are inverse on every valid vector', () => {
  for (const vector of VECTORS.valid) {
    assert.deepEqual(messageToJSON(messageFromJSON(vector.message)), vector.message);
  }
});
