// core/cache.js: memory budget, eviction order, pinned init segments. Mirrors
// tests/test_cache.py, plus a randomized check of the budget and of eviction reports.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { SegmentCache } from '../src/core/cache.js';
import { fuzzSeed, rng } from './helpers.js';

const bytes = (n) => new Uint8Array(n);

describe('SegmentCache', () => {
  test('put, get, has', () => {
    const cache = new SegmentCache(100);
    const data = bytes(40).fill(7);
    assert.deepEqual(cache.put(1, data), { stored: true, evicted: [] });
    assert.ok(cache.has(1));
    assert.equal(cache.get(1), data);
    assert.equal(cache.get(2), null);
    assert.equal(cache.usedBytes, 40);
    assert.equal(cache.size, 1);
  });

  test('oldest first without a playhead', () => {
    const cache = new SegmentCache(100);
    for (const seq of [5, 3, 4]) cache.put(seq, bytes(30));
    assert.deepEqual(cache.put(6, bytes(30)).evicted, [3]);
    assert.deepEqual(cache.sequences(), [4, 5, 6]);
  });

  test('behind the playhead oldest first, then furthest ahead', () => {
    const cache = new SegmentCache(100);
    for (const seq of [1, 2, 10, 11]) cache.put(seq, bytes(25));
    cache.setPlayhead(5);
    assert.deepEqual(cache.put(6, bytes(50)).evicted, [1, 2]);
    assert.deepEqual(cache.put(7, bytes(25)).evicted, [11]);
  });

  test('sequences sort numerically, not as strings', () => {
    const cache = new SegmentCache(1000);
    for (const seq of [10, 9, 100, 2]) cache.put(seq, bytes(1));
    assert.deepEqual(cache.sequences(), [2, 9, 10, 100]);
    cache.setPlayhead(50);
    assert.deepEqual(cache.put(60, bytes(999)).evicted, [2, 9, 10]); // 100 (ahead) stays
  });

  test('a newcomer less useful than everything held is refused', () => {
    const cache = new SegmentCache(100);
    cache.setPlayhead(5);
    for (const seq of [5, 6, 7, 8]) cache.put(seq, bytes(25));
    assert.deepEqual(cache.put(20, bytes(25)), { stored: false, evicted: [] });
    assert.deepEqual(cache.sequences(), [5, 6, 7, 8]);
  });

  test('a pinned init segment survives', () => {
    const cache = new SegmentCache(100);
    cache.put('init', bytes(20), { pinned: true });
    for (let seq = 0; seq < 10; seq++) cache.put(seq, bytes(30));
    assert.ok(cache.has('init'));
    assert.ok(cache.usedBytes <= 100);
    assert.equal(cache.put(99, bytes(90)).stored, false); // cannot fit beside the pinned 20
  });

  test('unpinned string keys go first; 1 and "1" are different keys', () => {
    const cache = new SegmentCache(100);
    cache.put(1, bytes(40));
    cache.put('1', bytes(40));
    assert.deepEqual(cache.put(2, bytes(40)).evicted, ['1']);
    assert.ok(cache.has(1) && !cache.has('1'));
  });

  test('replace and evict', () => {
    const cache = new SegmentCache(100);
    cache.put(1, bytes(60));
    cache.put(1, bytes(10));
    assert.equal(cache.usedBytes, 10);
    assert.ok(cache.evict(1));
    assert.ok(!cache.evict(1));
    assert.equal(cache.usedBytes, 0);
  });

  test('views of a shared buffer count their own bytes', () => {
    const shared = new ArrayBuffer(1000);
    const cache = new SegmentCache(500);
    cache.put(1, new Uint8Array(shared, 0, 300));
    cache.put(2, new Uint8Array(shared, 300, 100));
    assert.equal(cache.usedBytes, 400);
  });

  for (const budget of [0, -1, 1.5, NaN, '100']) {
    test(`bad budget ${String(budget)}`, () => {
      assert.throws(() => new SegmentCache(budget), /budget/);
    });
  }

  test('bad keys and values are refused clearly', () => {
    const cache = new SegmentCache(10);
    assert.throws(() => cache.put(1.5, bytes(1)), TypeError);
    assert.throws(() => cache.put(null, bytes(1)), TypeError);
    assert.throws(() => cache.put(1, 'not bytes'), /must be bytes/);
    assert.throws(() => cache.setPlayhead('5'), TypeError);
    assert.equal(cache.usedBytes, 0);
  });

  test('never exceeds the budget and reports every eviction (randomized)', () => {
    const seed = fuzzSeed();
    const random = rng(seed);
    for (let round = 0; round < 200; round++) {
      const budget = 1 + random.int(500);
      const cache = new SegmentCache(budget);
      const held = new Set();
      const pinned = new Set();
      for (let op = 0; op < 60; op++) {
        cache.setPlayhead(random.int(4) ? random.int(31) : null);
        const pin = random.int(10) === 0;
        const key = pin ? `init-${random.int(3)}` : random.int(31);
        const result = cache.put(key, bytes(random.int(pin ? 60 : 201)), { pinned: pin });
        const where = `seed ${seed} round ${round} op ${op}`;
        assert.ok(cache.usedBytes <= budget, where);
        for (const gone of result.evicted) {
          assert.ok(held.delete(gone), `${where}: evicted ${gone} was not held`);
          assert.ok(!pinned.has(gone), `${where}: pinned ${gone} evicted`);
        }
        if (result.stored) {
          held.add(key);
          if (pin) pinned.add(key);
        } else {
          assert.deepEqual(result.evicted, [], where);
        }
        const expected = [...held].filter((k) => typeof k === 'number').sort((a, b) => a - b);
        assert.deepEqual(cache.sequences(), expected, where);
        let total = 0;
        for (const k of held) total += cache.get(k).byteLength;
        assert.equal(cache.usedBytes, total, where);
      }
    }
  });
});
