// core/upload.js: EDF order, rate cap, concurrency limit, busy answers. Mirrors
// tests/test_upload.py (the hypothesis property becomes a seeded randomized run).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { UploadScheduler, resolveUploadConfig } from '../src/core/upload.js';
import { fuzzSeed, rng } from './helpers.js';

const KIB = 1024;
/** The queue shape most tests exercise (the defaults are 1 sending and 2 queued). */
const WIDE = { maxConcurrent: 4, maxQueued: 16 };
const chunks = (actions) => actions.filter((a) => a.type === 'sendChunk');

describe('UploadScheduler', () => {
  test('unlimited: everything goes out in chunks', () => {
    const up = new UploadScheduler({ ...WIDE, chunkSize: 64 * KIB });
    assert.deepEqual(up.offer(0.0, 1, 'a', 7, 150 * KIB, 5.0), { type: 'accept', requestId: 1 });
    const out = chunks(up.poll(0.0));
    assert.deepEqual(
      out.map((c) => [c.offset, c.nbytes, c.last]),
      [
        [0, 64 * KIB, false],
        [64 * KIB, 64 * KIB, false],
        [128 * KIB, 22 * KIB, true],
      ],
    );
    assert.ok(out.every((c) => c.sequence === 7 && c.peerId === 'a' && c.requestId === 1));
    assert.deepEqual(up.poll(0.1), []);
    assert.equal(up.nextWakeup(0.1), null);
    assert.equal(up.bytesSent, 150 * KIB);
  });

  test('earliest deadline first, no deadline last', () => {
    const up = new UploadScheduler({ ...WIDE, chunkSize: 10 });
    up.offer(0.0, 1, 'late', 1, 10, 9.0);
    up.offer(0.0, 2, 'soon', 2, 10, 3.0);
    up.offer(0.0, 3, 'none', 3, 10, null);
    assert.deepEqual(
      chunks(up.poll(0.0)).map((c) => c.requestId),
      [2, 1, 3],
    );
  });

  test('equal deadlines go by request id', () => {
    const up = new UploadScheduler({ ...WIDE, chunkSize: 10 });
    up.offer(0.0, 9, 'a', 1, 10, 3.0);
    up.offer(0.0, 4, 'b', 2, 10, 3.0);
    up.offer(0.0, 7, 'c', 3, 10);
    up.offer(0.0, 5, 'd', 3, 10);
    assert.deepEqual(
      chunks(up.poll(0.0)).map((c) => c.requestId),
      [4, 9, 5, 7],
    );
  });

  test('maxBytes bounds one poll', () => {
    const up = new UploadScheduler({ ...WIDE, chunkSize: 100 });
    up.offer(0.0, 1, 'a', 1, 1000);
    const out = chunks(up.poll(0.0, 250));
    assert.equal(
      out.reduce((n, c) => n + c.nbytes, 0),
      250,
    );
    assert.deepEqual(
      out.map((c) => c.nbytes),
      [100, 100, 50],
    );
  });

  test('disabled: always busy', () => {
    const up = new UploadScheduler({ enabled: false });
    assert.deepEqual(up.offer(0.0, 1, 'a', 1, 10), { type: 'busy', requestId: 1, retryAfter: 1.0 });
  });

  test('busy when the slots and the queue are full', () => {
    const up = new UploadScheduler({ maxConcurrent: 1, maxQueued: 1 });
    assert.equal(up.offer(0.0, 1, 'a', 1, 10).type, 'accept');
    assert.equal(up.offer(0.0, 2, 'b', 1, 10).type, 'accept');
    const answer = up.offer(0.0, 3, 'c', 1, 10);
    assert.equal(answer.type, 'busy');
    assert.ok(answer.retryAfter > 0);
  });

  test('concurrency: a queued request starts when a slot frees', () => {
    const up = new UploadScheduler({ maxConcurrent: 1, chunkSize: 10 });
    up.offer(0.0, 1, 'a', 1, 20, 5.0);
    up.offer(0.0, 2, 'b', 2, 10, 1.0); // earlier deadline, but the slot is taken: queued
    const out = chunks(up.poll(0.0, 10));
    assert.deepEqual(
      out.map((c) => c.requestId),
      [1],
    );
    // Request 1 keeps its slot until done; only then does 2 start.
    assert.deepEqual(
      chunks(up.poll(0.0)).map((c) => [c.requestId, c.last]),
      [
        [1, true],
        [2, true],
      ],
    );
  });

  test('refuses a deadline it cannot meet under the cap, and keeps its promises', () => {
    const config = { ...WIDE, rateLimitBps: 100_000, chunkSize: 10_000, burstSeconds: 0.25 };
    const up = new UploadScheduler(config);
    // 25 kB of burst, then 100 kB/s.
    assert.equal(up.offer(0.0, 1, 'a', 1, 200_000, 2.5).type, 'accept'); // done at 1.75 s
    assert.equal(up.offer(0.0, 2, 'b', 2, 300_000, 1.0).type, 'busy'); // cannot make it alone
    // Would fit alone, but served first it would push request 1 past its deadline (2.75 s).
    const answer = up.offer(0.0, 3, 'c', 3, 100_000, 2.0);
    assert.equal(answer.type, 'busy');
    assert.ok(Math.abs(answer.retryAfter - 2.0) < 0.02); // the backlog drains in 2 s
    // A small earlier request keeps every promise (request 1 then ends at 1.95 s).
    assert.equal(up.offer(0.0, 4, 'd', 4, 20_000, 2.4).type, 'accept');
    assert.deepEqual(
      chunks(up.poll(0.0)).map((c) => c.requestId),
      [4, 4],
    );
  });

  test('a queued request past its deadline is dropped', () => {
    const up = new UploadScheduler({
      maxConcurrent: 1,
      chunkSize: 10,
      rateLimitBps: 10,
      refuseLate: false,
    });
    up.offer(0.0, 1, 'a', 1, 100, 100.0);
    up.offer(0.0, 2, 'b', 2, 10, 0.5); // waits for a slot that frees after ~9 s
    const drops = up.poll(1.0).filter((a) => a.type === 'dropRequest');
    assert.deepEqual(drops, [
      { type: 'dropRequest', requestId: 2, peerId: 'b', reason: 'deadline' },
    ]);
  });

  test('cancel and cancelPeer', () => {
    const up = new UploadScheduler(WIDE);
    up.offer(0.0, 1, 'a', 1, 10);
    up.offer(0.0, 2, 'b', 1, 10);
    up.offer(0.0, 3, 'a', 2, 10);
    assert.ok(up.cancel(2));
    assert.ok(!up.cancel(2));
    assert.deepEqual(up.cancelPeer('a').sort(), [1, 3]);
    assert.deepEqual(up.poll(0.0), []);
    assert.equal(up.backlogBytes, 0);
  });

  test('bad requests and configs raise clear errors', () => {
    const up = new UploadScheduler(WIDE);
    assert.throws(() => up.offer(0.0, 1, 'a', 1, -5), /negative or non-integer size/);
    assert.throws(() => up.offer(0.0, 1, 'a', 1, 1.5), /negative or non-integer size/);
    up.offer(0.0, 1, 'a', 1, 5);
    assert.throws(() => up.offer(0.0, 1, 'a', 1, 5), /already in use/);
    assert.throws(() => up.offer(0.0, 2, 'a', 1, 5, '3'), /deadline/);
    assert.throws(() => resolveUploadConfig({ rateLimitBps: 0 }), RangeError);
    assert.throws(() => resolveUploadConfig({ maxConcurrent: 0 }), /maxConcurrent/);
    assert.throws(() => resolveUploadConfig({ chunksize: 10 }), /unknown option "chunksize"/);
    assert.throws(() => resolveUploadConfig({ enabled: 'no' }), /enabled must be a boolean/);
  });

  test('nextWakeup follows the bucket', () => {
    const up = new UploadScheduler({ ...WIDE, rateLimitBps: 10_000, chunkSize: 5_000, burstSeconds: 0 });
    up.offer(0.0, 1, 'a', 1, 20_000);
    const sent = (actions) => chunks(actions).reduce((n, c) => n + c.nbytes, 0);
    assert.equal(sent(up.poll(0.0)), 5_000); // the bucket holds one chunk
    assert.ok(Math.abs(up.nextWakeup(0.0) - 0.5) < 1e-12);
    assert.deepEqual(chunks(up.poll(0.4)), []);
    assert.equal(sent(up.poll(0.5)), 5_000);
  });

  test('the rate cap and the concurrency limit hold (randomized)', () => {
    const seed = fuzzSeed();
    const random = rng(seed);
    let total = 0;
    for (let round = 0; round < 60; round++) {
      const rate = 1_000 + random.int(999_000);
      const chunk = 100 + random.int(70_000);
      const concurrent = 1 + random.int(4);
      const config = {
        rateLimitBps: rate,
        chunkSize: chunk,
        maxConcurrent: concurrent,
        maxQueued: 4,
      };
      const up = new UploadScheduler(config);
      const burst = Math.max(rate * up.config.burstSeconds, chunk);
      const pending = Array.from({ length: random.int(21) }, () => [
        random() * 5,
        random.int(300_001),
        random.int(4) ? 0.1 + random() * 20 : null,
      ]).sort((a, b) => a[0] - b[0]);
      let now = 0;
      let sent = 0;
      let rid = 0;
      const started = new Set();
      const finished = new Set();
      const steps = 1 + random.int(60);
      for (let step = 0; step < steps; step++) {
        now += 0.001 + random() * 0.5;
        while (pending.length && pending[0][0] <= now) {
          const [, size, deadline] = /** @type {[number, number, number|null]} */ (pending.shift());
          rid += 1;
          up.offer(now, rid, `p${rid % 3}`, rid, size, deadline === null ? null : now + deadline);
        }
        for (const a of up.poll(now)) {
          if (a.type !== 'sendChunk') continue;
          sent += a.nbytes;
          started.add(a.requestId);
          if (a.last) finished.add(a.requestId);
          const open = [...started].filter((id) => !finished.has(id)).length;
          assert.ok(open <= concurrent, `seed ${seed} round ${round}: ${open} requests at once`);
        }
        // Token bucket: never more than the burst plus the rate times the elapsed time.
        assert.ok(sent <= burst + rate * now + 1e-6, `seed ${seed} round ${round}: over the cap`);
      }
      total += sent;
    }
    assert.ok(total > 0, `seed ${seed}: nothing was ever sent, the check checked nothing`);
  });
});

test('defaults: one request sent at a time, busy beyond two waiting', () => {
  const up = new UploadScheduler({ chunkSize: 10 });
  const answers = [1, 2, 3, 4].map((rid) => up.offer(0.0, rid, 'p', rid, 100, null).type);
  assert.deepEqual(answers, ['accept', 'accept', 'accept', 'busy']);
  assert.deepEqual([...new Set(chunks(up.poll(0.0, 50)).map((c) => c.requestId))], [1]);
});
