// core/http-loader.js against a fake fetch: ranges, a 200 answer to a range, errors, aborts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { HttpError, httpFetch } from '../src/core/http-loader.js';

const body = new Uint8Array(100).map((_, i) => i);

/** A fetch that serves `body` in 7-byte chunks, honouring Range unless told not to. */
function fakeFetch({ status = null, ignoreRange = false, calls = [] } = {}) {
  return async (url, init) => {
    calls.push(init);
    const range = init.headers.Range;
    let data = body;
    let code = 200;
    if (range && !ignoreRange) {
      const [, a, b] = /bytes=(\d+)-(\d*)/.exec(range);
      data = body.subarray(Number(a), b === '' ? undefined : Number(b) + 1);
      code = 206;
    }
    const chunks = [];
    for (let i = 0; i < data.length; i += 7) chunks.push(data.slice(i, i + 7));
    return new Response(
      new ReadableStream({
        pull(controller) {
          if (chunks.length) controller.enqueue(chunks.shift());
          else controller.close();
        },
      }),
      { status: status ?? code, headers: { 'content-length': String(data.length) } },
    );
  };
}

describe('httpFetch', () => {
  test('whole body, with progress', async () => {
    const seen = [];
    const got = await httpFetch('http://o/s.ts', {
      fetch: fakeFetch(),
      onProgress: (n, total) => seen.push([n, total]),
    });
    assert.deepEqual(got, body);
    assert.deepEqual(seen.at(-1), [100, 100]);
    assert.ok(seen.length > 5);
  });

  test('a range sends Range and returns exactly those bytes', async () => {
    const calls = [];
    const got = await httpFetch('http://o/s.ts', { start: 10, end: 30, fetch: fakeFetch({ calls }) });
    assert.equal(calls[0].headers.Range, 'bytes=10-29');
    assert.deepEqual(got, body.subarray(10, 30));
    const open = await httpFetch('http://o/s.ts', { start: 95, fetch: fakeFetch() });
    assert.deepEqual(open, body.subarray(95));
  });

  test('a 200 answer to a range is cut to the range', async () => {
    const got = await httpFetch('http://o/s.ts', {
      start: 12,
      end: 40,
      fetch: fakeFetch({ ignoreRange: true }),
    });
    assert.deepEqual(got, body.subarray(12, 40));
  });

  test('an error status is an HttpError with the status', async () => {
    await assert.rejects(
      httpFetch('http://o/s.ts', { fetch: fakeFetch({ status: 503 }) }),
      (error) => error instanceof HttpError && error.status === 503,
    );
  });

  test('a network failure is an HttpError', async () => {
    const failing = async () => {
      throw new TypeError('connection refused');
    };
    await assert.rejects(httpFetch('http://o/s.ts', { fetch: failing }), HttpError);
  });

  test('abort rejects with the signal reason; bad ranges are refused', async () => {
    const controller = new AbortController();
    const never = (url, init) =>
      new Promise((_resolve, reject) => init.signal.addEventListener('abort', () => reject(init.signal.reason)));
    const pending = httpFetch('http://o/s.ts', { fetch: never, signal: controller.signal });
    controller.abort(new Error('not needed'));
    await assert.rejects(pending, /not needed/);
    await assert.rejects(httpFetch('http://o/s.ts', { start: 5, end: 5, fetch: fakeFetch() }), RangeError);
  });

  test('a timeout is an HttpError', async () => {
    const never = (url, init) =>
      new Promise((_resolve, reject) => init.signal.addEventListener('abort', () => reject(new Error('aborted'))));
    await assert.rejects(httpFetch('http://o/s.ts', { fetch: never, timeout: 0.05 }), /no complete answer/);
  });
});
