// Identities against the shared vectors (tests/vectors/ids.json), and the SHA-256 fallback.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';

import {
  MAX_SEGMENT_NUMBER,
  SWARM_ID_PATTERN,
  checkLabel,
  checkSegmentNumber,
  contentIdFromUrl,
  initKey,
  initSegmentId,
  keyToString,
  mediaKey,
  normalizePath,
  renditionId,
  swarmId,
} from '../src/core/ids.js';
import { sha256, sha256Sync } from '../src/core/sha256.js';
import { fuzzSeed, loadVectors, rng, toHex } from './helpers.js';

const VECTORS = loadVectors('ids');

describe('ids vectors', () => {
  for (const { url, path } of VECTORS.normalize_path) {
    test(`normalizePath ${JSON.stringify(url)}`, () => assert.equal(normalizePath(url), path));
  }
  for (const { url, content_id: id } of VECTORS.content_id_from_url) {
    test(`contentIdFromUrl ${JSON.stringify(url)}`, () => assert.equal(contentIdFromUrl(url), id));
  }
  for (const v of VECTORS.rendition_id) {
    test(`renditionId ${v.playlist_uri}`, () => {
      assert.equal(renditionId(v.master_url, v.playlist_uri), v.rendition);
    });
  }
  for (const v of VECTORS.swarm_id) {
    test(`swarmId ${v.content_id} ${v.rendition}`, async () => {
      const id = await swarmId(v.content_id, v.rendition);
      assert.equal(id, v.swarm_id);
      assert.match(id, SWARM_ID_PATTERN);
    });
  }
  for (const v of VECTORS.init_segment_id) {
    test(`initSegmentId ${v.uri}`, async () => {
      const options = { byterange: v.byterange, baseUrl: v.base_url ?? '' };
      assert.equal(await initSegmentId(v.uri, options), v.init_id);
    });
  }
});

test('init ids resolve the map URI against the playlist URL, any CDN host', async () => {
  const a = await initSegmentId('init.mp4', { baseUrl: 'https://a.example/live/720p/index.m3u8?t=1' });
  const b = await initSegmentId('/live/720p/init.mp4');
  const c = await initSegmentId('init.mp4', { baseUrl: 'https://b.example/live/720p/index.m3u8' });
  assert.equal(a, b);
  assert.equal(a, c);
  const ranged = await initSegmentId('/live/720p/init.mp4', { byterange: { length: 720, offset: 0 } });
  assert.notEqual(ranged, a);
  assert.ok(Number.isSafeInteger(a) && a >= 0 && a <= MAX_SEGMENT_NUMBER);
  await assert.rejects(initSegmentId('/x', { byterange: { length: -1, offset: 0 } }), /length/);
});

test('bad input gets a clear error', async () => {
  for (const bad of ['', '   ', 'relative/path.m3u8', 'mailto:x']) {
    assert.throws(() => normalizePath(bad), /URL is empty|absolute/);
  }
  assert.throws(() => normalizePath(42), /URL is empty/);
  assert.throws(() => normalizePath('https://[::1/x'), /IPv6/);
  assert.throws(() => normalizePath('/a/\ud800'), /surrogate/);
  assert.throws(() => checkLabel(''), /non-empty/);
  assert.throws(() => checkLabel('a\x00b'), /NUL/);
  assert.throws(() => checkLabel('x'.repeat(1025)), /longer/);
  assert.equal(checkLabel('é'.repeat(512)), 'é'.repeat(512));
  await assert.rejects(swarmId('', 'r'), /content id/);
  await assert.rejects(swarmId('c', '\ud800'), /rendition id/);
});

test('segment keys', () => {
  assert.deepEqual(mediaKey(5), { kind: 'media', number: 5 });
  assert.equal(keyToString(initKey(7)), 'init:7');
  assert.equal(checkSegmentNumber(MAX_SEGMENT_NUMBER), MAX_SEGMENT_NUMBER);
  assert.throws(() => mediaKey(2 ** 53), RangeError);
  assert.throws(() => mediaKey(-1), RangeError);
  assert.throws(() => mediaKey(1.5), TypeError);
  assert.throws(() => mediaKey('1'), TypeError);
});

test('sha256Sync matches node:crypto on random inputs around the block boundaries', () => {
  const seed = fuzzSeed();
  const random = rng(seed);
  for (const size of [0, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 1000, 100_000]) {
    const data = random.bytes(size);
    const expected = createHash('sha256').update(data).digest('hex');
    assert.equal(toHex(sha256Sync(data)), expected, `size ${size}, seed ${seed}`);
  }
});

test('without WebCrypto (insecure page) ids are the same', async () => {
  const withCrypto = await swarmId('/live/ch1/master.m3u8', '720p/index.m3u8');
  const saved = Object.getOwnPropertyDescriptor(globalThis, 'crypto');
  Object.defineProperty(globalThis, 'crypto', { value: undefined, configurable: true });
  try {
    assert.equal(globalThis.crypto, undefined);
    assert.equal(await swarmId('/live/ch1/master.m3u8', '720p/index.m3u8'), withCrypto);
    assert.deepEqual(await sha256(Uint8Array.of(1)), sha256Sync(Uint8Array.of(1)));
  } finally {
    Object.defineProperty(globalThis, 'crypto', saved);
  }
});
