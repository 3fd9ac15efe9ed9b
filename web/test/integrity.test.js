// core/integrity.js: manifest validation (docs/integrity.md), digests across live manifests,
// verdicts. Hashes are computed with node:crypto, independently of the module.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';

import {
  IntegrityError,
  IntegrityStore,
  Verdict,
  manifestUrlFor,
  parseManifest,
} from '../src/core/integrity.js';

const seg = (n) => new Uint8Array(1000 + n).fill(n);
const sha = (data) => createHash('sha256').update(data).digest('hex');

function manifest(first, count, overrides = {}) {
  const segments = [];
  for (let i = 0; i < count; i++) {
    const data = seg(first + i);
    segments.push({
      sequence: first + i,
      uri: `seg-${first + i}.ts`,
      duration: 2.0,
      size: data.length,
      sha256: sha(data),
      byterange: null,
      map: null,
      discontinuity: false,
    });
  }
  return {
    format: 'swarmcast-integrity',
    version: 1,
    algorithm: 'sha256',
    playlist: 'index.m3u8',
    media_sequence: first,
    live: true,
    init: [],
    segments,
    ...overrides,
  };
}

describe('parseManifest', () => {
  test('accepts a valid manifest', () => {
    const parsed = parseManifest(JSON.stringify(manifest(5, 3)));
    assert.equal(parsed.mediaSequence, 5);
    assert.deepEqual(
      parsed.segments.map((s) => s.sequence),
      [5, 6, 7],
    );
  });

  const bad = {
    'not JSON': '{',
    'not an object': '[]',
    'unknown key': JSON.stringify({ ...manifest(0, 1), extra: 1 }),
    'missing key': JSON.stringify((({ live, ...rest }) => rest)(manifest(0, 1))),
    'other version': JSON.stringify(manifest(0, 1, { version: 2 })),
    'boolean version': JSON.stringify(manifest(0, 1, { version: true })),
    'other algorithm': JSON.stringify(manifest(0, 1, { algorithm: 'md5' })),
    'sequence gap': JSON.stringify(
      (() => {
        const m = manifest(0, 2);
        m.segments[1].sequence = 5;
        return m;
      })(),
    ),
    'upper-case digest': JSON.stringify(
      (() => {
        const m = manifest(0, 1);
        m.segments[0].sha256 = m.segments[0].sha256.toUpperCase();
        return m;
      })(),
    ),
    'negative size': JSON.stringify(
      (() => {
        const m = manifest(0, 1);
        m.segments[0].size = -1;
        return m;
      })(),
    ),
    'control character in uri': JSON.stringify(
      (() => {
        const m = manifest(0, 1);
        m.segments[0].uri = 'a\nb';
        return m;
      })(),
    ),
    'map naming no init': JSON.stringify(
      (() => {
        const m = manifest(0, 1);
        m.segments[0].map = 'init.mp4';
        return m;
      })(),
    ),
  };
  for (const [what, text] of Object.entries(bad)) {
    test(`rejects: ${what}`, () => {
      assert.throws(() => parseManifest(text), IntegrityError);
    });
  }
});

describe('IntegrityStore', () => {
  test('verdicts: verified, mismatch (size, content), unverified', async () => {
    const store = new IntegrityStore();
    store.ingest(JSON.stringify(manifest(0, 3)));
    assert.equal(await store.check(1, seg(1)), Verdict.VERIFIED);
    const flipped = seg(1);
    flipped[500] ^= 0xff;
    assert.equal(await store.check(1, flipped), Verdict.MISMATCH);
    assert.equal(await store.check(1, seg(1).subarray(0, 10)), Verdict.MISMATCH);
    assert.equal(await store.check(9, seg(9)), Verdict.UNVERIFIED);
  });

  test('a live window: later manifests add, contradictions keep the first digest', () => {
    const store = new IntegrityStore();
    assert.deepEqual(store.ingest(JSON.stringify(manifest(0, 3))).added, [0, 1, 2]);
    const next = manifest(1, 3);
    next.segments[0].sha256 = '0'.repeat(64);
    const update = store.ingest(JSON.stringify(next));
    assert.deepEqual(update.added, [3]);
    assert.deepEqual(update.conflicts, [1]);
    assert.equal(store.expected(1).sha256, sha(seg(1)));
    store.forgetBefore(2);
    assert.equal(store.expected(1), undefined);
    assert.equal(store.size, 2);
  });

  test('a bad manifest changes nothing', () => {
    const store = new IntegrityStore();
    assert.throws(() => store.ingest('{"format": 1}'), IntegrityError);
    assert.equal(store.manifests, 0);
  });
});

test('manifestUrlFor: stem beside the playlist, query kept', () => {
  assert.equal(
    manifestUrlFor('http://h/live/90p/index.m3u8?token=a#x'),
    'http://h/live/90p/index.integrity.json?token=a',
  );
  assert.equal(manifestUrlFor('https://h/low.m3u8'), 'https://h/low.integrity.json');
});
