// Random and mutated frames: decode only ever throws ProtocolError, and whatever it accepts
// re-encodes to the same bytes (HELLO extension bytes aside). Seeded: SWARMCAST_FUZZ_SEED.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { PeerProtocol } from '../src/core/connection.js';
import { MAX_FRAME_SIZE, ProtocolError, decode, encode } from '../src/core/protocol.js';
import { fuzzSeed, hex, loadVectors, mutate, randomFrame, rng, toHex } from './helpers.js';

const VECTORS = loadVectors('protocol');
const SEEDS = [...VECTORS.valid, ...VECTORS.tolerated, ...VECTORS.invalid]
  .map((v) => hex(v.hex))
  .filter((frame) => frame.length < 4096); // keep mutation cheap; big frames are covered below

function check(frame, seed) {
  let message;
  try {
    message = decode(frame);
  } catch (error) {
    if (!(error instanceof ProtocolError)) {
      assert.fail(`seed ${seed}: ${toHex(frame)} raised ${error?.stack ?? error}`);
    }
    return false;
  }
  const extended = message.type === 'hello' && message.version_minor > 0;
  if (!extended) assert.equal(toHex(encode(message)), toHex(frame), `seed ${seed}: re-encode`);
  return true;
}

test('decode: mutated vectors and random frames only raise ProtocolError', () => {
  const seed = fuzzSeed();
  const random = rng(seed);
  let accepted = 0;
  for (let i = 0; i < 20_000; i++) {
    const frame = i % 4 === 0 ? randomFrame(random) : mutate(random, random.pick(SEEDS));
    if (check(frame, seed)) accepted += 1;
  }
  // Mutations of valid frames must sometimes stay valid, or the fuzzer tests nothing.
  assert.ok(accepted > 500, `only ${accepted} frames decoded (seed ${seed})`);
});

test('decode: sizes around the frame limit', () => {
  for (const size of [MAX_FRAME_SIZE - 1, MAX_FRAME_SIZE, MAX_FRAME_SIZE + 1, 1 << 20]) {
    for (const type of [0x01, 0x04, 0x0e, 0x42]) {
      const frame = new Uint8Array(size);
      frame[0] = type;
      if (type === 0x01) frame[1] = 1;
      check(frame, 'fixed');
    }
  }
});

test('PeerProtocol.receive never throws for garbage and closes at most once', () => {
  const seed = fuzzSeed();
  const random = rng(seed);
  for (let round = 0; round < 300; round++) {
    const peer = new PeerProtocol({ peerId: 'fuzzed', swarms: ['s'] });
    peer.dataToSend();
    let closes = 0;
    for (let i = 0; i < 40; i++) {
      const frame = random.int(3) ? mutate(random, random.pick(SEEDS)) : randomFrame(random);
      const events = peer.receive(frame);
      closes += events.filter((e) => e.type === 'connectionClosed').length;
      peer.dataToSend(random.int(2) ? null : random.int(70_000));
    }
    assert.ok(closes <= 1, `seed ${seed}: closed ${closes} times`);
  }
});
