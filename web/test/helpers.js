// Shared helpers of the tests (not a test file itself: it defines no tests).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The shared vectors of the Python and JS implementations (tests/vectors/NAME.json). */
export function loadVectors(name) {
  const url = new URL(`../../tests/vectors/${name}.json`, import.meta.url);
  return JSON.parse(readFileSync(fileURLToPath(url), 'utf8'));
}

/** Bytes from hex (test input only). */
export function hex(text) {
  return new Uint8Array(Buffer.from(text, 'hex'));
}

/** Lower-case hex of bytes. */
export function toHex(bytes) {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/**
 * A small seeded PRNG (mulberry32) so fuzz failures can be replayed: set SWARMCAST_FUZZ_SEED.
 */
export function rng(seed) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  next.int = (n) => Math.floor(next() * n);
  next.pick = (items) => items[next.int(items.length)];
  next.bytes = (n) => Uint8Array.from({ length: n }, () => next.int(256));
  return next;
}

/** The fuzz seed: SWARMCAST_FUZZ_SEED if set, else a fresh one (printed by the tests). */
export function fuzzSeed() {
  const fixed = process.env.SWARMCAST_FUZZ_SEED;
  return fixed ? Number(fixed) : Math.floor(Math.random() * 2 ** 32);
}

/** A segment-like byte pattern of `size` bytes. */
export function segment(size, seed = 0) {
  return Uint8Array.from({ length: size }, (_, i) => (i * 7 + seed) % 256);
}

/** A mutation of `frame`: flip, set, insert, delete, truncate or extend bytes. */
export function mutate(random, frame) {
  const bytes = [...frame];
  const edits = 1 + random.int(4);
  for (let i = 0; i < edits; i++) {
    const at = random.int(bytes.length + 1);
    switch (random.int(6)) {
      case 0: if (bytes.length) bytes[at % bytes.length] ^= 1 << random.int(8); break;
      case 1: if (bytes.length) bytes[at % bytes.length] = random.pick([0, 1, 0x7f, 0x80, 0xff, random.int(256)]); break;
      case 2: bytes.splice(at, 0, random.int(256)); break;
      case 3: bytes.splice(at, 1); break;
      case 4: bytes.length = at; break;
      default: bytes.push(...random.bytes(random.int(12))); break;
    }
  }
  return Uint8Array.from(bytes);
}

/** A random frame: a type byte (mostly known ones) and random bytes. */
export function randomFrame(random) {
  const frame = random.bytes(random.int(64));
  if (frame.length) frame[0] = random.int(10) ? 1 + random.int(14) : random.int(256);
  return frame;
}
