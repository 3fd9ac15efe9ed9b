/**
 * HTTP downloads of segments from the origin / CDN with `fetch`: byte ranges (to resume what a
 * peer delivered in part, or for EXT-X-BYTERANGE), progress while the body streams (the
 * scheduler's throughput estimate and stall detection need it), cancellation through an
 * AbortSignal, and a deadline. Single attempt: retries and their backoff belong to the
 * scheduler, which knows whether the segment is still worth fetching.
 *
 * @module core/http-loader
 */

/** The origin answered with an error status, or the transfer failed or timed out. */
export class HttpError extends Error {
  /**
   * @param {string} message
   * @param {number|null} [status] HTTP status, null for network errors and timeouts
   */
  constructor(message, status = null) {
    super(message);
    this.name = 'HttpError';
    /** HTTP status, null for network errors and timeouts. */
    this.status = status;
  }
}

/**
 * @typedef {object} HttpFetchOptions
 * @property {number} [start] first byte wanted (default 0)
 * @property {number|null} [end] one past the last byte wanted; null = to the end
 * @property {AbortSignal} [signal] aborts the download (rejects with the signal's reason)
 * @property {number} [timeout] seconds the whole download may take (default 15)
 * @property {(received: number, total: number|null) => void} [onProgress] bytes received so
 *   far (of the requested range) as they arrive
 * @property {RequestCache} [cache] fetch's cache mode ('no-cache' for documents that must be
 *   fresh, such as live integrity manifests); default the browser's
 * @property {typeof fetch} [fetch] injected for tests
 */

/**
 * Download `url` (or a byte range of it).
 *
 * @param {string} url
 * @param {HttpFetchOptions} [options]
 * @returns {Promise<Uint8Array>} exactly the bytes of the requested range
 * @throws {HttpError} on an error status, a short body, a network error or the timeout; the
 *   abort reason when `signal` aborts
 */
export async function httpFetch(url, options = {}) {
  const { start = 0, end = null, signal, timeout = 15, onProgress } = options;
  const doFetch = options.fetch ?? globalThis.fetch;
  if (!Number.isSafeInteger(start) || start < 0 || (end !== null && !(end > start))) {
    throw new RangeError(`bad byte range ${start}..${end}`);
  }
  const controller = new AbortController();
  const onAbort = () => controller.abort(signal.reason);
  if (signal) {
    if (signal.aborted) throw signal.reason ?? new Error('aborted');
    signal.addEventListener('abort', onAbort, { once: true });
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeout * 1000);
  const headers = {};
  const ranged = start > 0 || end !== null;
  if (ranged) headers.Range = `bytes=${start}-${end === null ? '' : end - 1}`;
  try {
    const init = { headers, signal: controller.signal, credentials: 'omit' };
    if (options.cache) init.cache = options.cache;
    const response = await doFetch(url, init);
    if (response.status !== 200 && response.status !== 206) {
      throw new HttpError(`GET ${url}: HTTP ${response.status}`, response.status);
    }
    // A 200 to a Range request is the whole body (RFC 9110 allows ignoring Range): cut it.
    const skip = ranged && response.status === 200 ? start : 0;
    const body = await readBody(response, skip, end === null ? null : end - start, onProgress);
    if (end !== null && body.byteLength !== end - start) {
      throw new HttpError(`GET ${url}: got ${body.byteLength} bytes, expected ${end - start}`);
    }
    return body;
  } catch (error) {
    if (signal?.aborted) throw signal.reason ?? error;
    if (timedOut) throw new HttpError(`GET ${url}: no complete answer in ${timeout}s`);
    if (error instanceof HttpError) throw error;
    throw new HttpError(`GET ${url}: ${error?.message ?? error}`);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

async function readBody(response, skip, limit, onProgress) {
  const announced = Number(response.headers.get('content-length'));
  const total = limit ?? (Number.isFinite(announced) && announced > 0 ? announced - skip : null);
  if (!response.body || typeof response.body.getReader !== 'function') {
    const all = new Uint8Array(await response.arrayBuffer());
    const out = all.subarray(skip, limit === null ? undefined : skip + limit);
    onProgress?.(out.byteLength, total);
    return out;
  }
  const reader = response.body.getReader();
  const chunks = [];
  let seen = 0;
  let kept = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const from = Math.max(skip - seen, 0);
    seen += value.byteLength;
    if (from >= value.byteLength) continue;
    let piece = value.subarray(from);
    if (limit !== null && kept + piece.byteLength > limit) piece = piece.subarray(0, limit - kept);
    chunks.push(piece);
    kept += piece.byteLength;
    onProgress?.(kept, total);
    if (limit !== null && kept >= limit) {
      reader.cancel().catch(() => {});
      break;
    }
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(kept);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}
