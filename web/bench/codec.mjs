/**
 * Throughput of the JS wire codec and of a whole sans-IO link, in MB/s of payload; the twin of
 * bench/protocol_codec.py, so the figures compare line by line.
 *
 * - anchor: copying 64 KiB buffers (Uint8Array.prototype.slice), the floor any codec pays once;
 * - codec: encode + decode of 64 KiB DATA frames (encode() with validation, decode());
 * - codec (hot path): encodeData() + decode(), what PeerProtocol uses to send;
 * - link: a 2 MB segment through PeerProtocol sendSegment -> dataToSend -> receive ->
 *   TransferCompleted (chunking, framing, validation, reassembly).
 *
 * Run: node bench/codec.mjs [--seconds 2]
 */

import { PeerProtocol } from '../src/core/connection.js';
import { mediaKey } from '../src/core/ids.js';
import { MAX_DATA_PAYLOAD, decode, encode, encodeData } from '../src/core/protocol.js';

const MB = 1_000_000;

/** Payload MB/s of `work` (which returns the payload bytes it moved), best of 3. */
function rate(work, seconds) {
  let best = 0;
  for (let round = 0; round < 3; round++) {
    let moved = 0;
    const start = performance.now();
    let elapsed = 0;
    while ((elapsed = (performance.now() - start) / 1000) < seconds / 3) moved += work();
    best = Math.max(best, moved / elapsed / MB);
  }
  return best;
}

function copyAnchor() {
  const buffer = Uint8Array.from({ length: MAX_DATA_PAYLOAD }, (_, i) => i % 256);
  return () => {
    for (let i = 0; i < 100; i++) buffer.slice();
    return 100 * MAX_DATA_PAYLOAD;
  };
}

function codec() {
  const message = { type: 'data', request_id: 7, offset: 123_456, payload: new Uint8Array(MAX_DATA_PAYLOAD) };
  return () => {
    for (let i = 0; i < 100; i++) decode(encode(message));
    return 100 * MAX_DATA_PAYLOAD;
  };
}

function hotPath() {
  const payload = new Uint8Array(MAX_DATA_PAYLOAD);
  return () => {
    for (let i = 0; i < 100; i++) decode(encodeData(7, 123_456, payload));
    return 100 * MAX_DATA_PAYLOAD;
  };
}

function link(segmentSize = 2_000_000) {
  const viewer = new PeerProtocol({ peerId: 'viewer', swarms: ['s'] });
  const seed = new PeerProtocol({ peerId: 'seed', swarms: ['s'], role: 'seed' });
  for (const frame of viewer.dataToSend()) seed.receive(frame);
  for (const frame of seed.dataToSend()) viewer.receive(frame);
  const segment = new Uint8Array(segmentSize);
  return () => {
    const rid = viewer.request('s', mediaKey(1));
    for (const frame of viewer.dataToSend()) seed.receive(frame);
    seed.sendSegment(rid, segment);
    let done = false;
    for (const frame of seed.dataToSend()) {
      for (const event of viewer.receive(frame)) done ||= event.type === 'transferCompleted';
    }
    if (!done) throw new Error('transfer did not complete');
    return segmentSize;
  };
}

const at = process.argv.indexOf('--seconds');
const seconds = at > 0 ? Number(process.argv[at + 1]) : 2;
const anchor = rate(copyAnchor(), seconds);
const rows = [
  ['anchor  slice() copy of 64 KiB', anchor],
  ['codec   encode+decode 64 KiB DATA', rate(codec(), seconds)],
  ['codec   encodeData+decode (hot path)', rate(hotPath(), seconds)],
  ['link    2 MB segment, send -> complete', rate(link(), seconds)],
];
console.log(`node ${process.version}`);
for (const [label, value] of rows) {
  const ratio = value === anchor ? '' : `  (${(anchor / value).toFixed(1)}x the anchor's time)`;
  console.log(`${label.padEnd(40)} ${value.toFixed(0).padStart(8)} MB/s${ratio}`);
}
