/**
 * The upload side of a peer: which request to serve, how fast, and when to say "busy". Twin of
 * `peer/upload.py` (same answers, same chunks, same order).
 *
 * Sans-IO: requests come in through {@link UploadScheduler#offer}, chunks to send come out of
 * {@link UploadScheduler#poll}; the adapter reads the bytes from its cache and writes them to
 * the data channel. Time is passed in as `now` (seconds).
 *
 * Policy:
 *
 * - earliest deadline first: the requester that will stall soonest is served first;
 * - at most `maxConcurrent` requests are being sent at once, at most `maxQueued` wait;
 * - a token bucket caps the upload rate (`rateLimitBps`, bytes/s) with a small burst;
 * - a request that cannot be served before its deadline is refused at once with `busy` (the
 *   requester then asks another peer or the origin) instead of being queued to fail later; a
 *   queued request whose deadline passes before it started is dropped (`dropRequest`).
 *
 * Answers and actions are plain objects; `type` is the Python class name with a lower-case
 * first letter and the fields are the Python fields in camelCase:
 *
 * | Python | JS |
 * |---|---|
 * | `Accept(request_id)` | `{type: 'accept', requestId}` |
 * | `Busy(request_id, retry_after)` | `{type: 'busy', requestId, retryAfter}` |
 * | `SendChunk(request_id, peer_id, sequence, offset, nbytes, last)` | `{type: 'sendChunk', requestId, peerId, sequence, offset, nbytes, last}` |
 * | `DropRequest(request_id, peer_id, reason)` | `{type: 'dropRequest', requestId, peerId, reason}` |
 *
 * @module core/upload
 */

import { resolveOptions } from './bandwidth.js';

/**
 * Limits of the upload side. Rates are in bytes per second.
 *
 * @typedef {object} UploadConfig
 * @property {boolean} enabled false turns uploading off: every request gets `busy` (true).
 * @property {number|null} rateLimitBps upload rate cap (token bucket); null = unlimited, the
 *   data channel paces itself (null).
 * @property {number} burstSeconds bucket depth in seconds of `rateLimitBps`, never less than
 *   one chunk (0.25).
 * @property {number} maxConcurrent requests being sent at the same time (1).
 * @property {number} maxQueued accepted requests waiting for a sending slot; beyond that the
 *   answer is `busy` (2).
 * @property {number} chunkSize bytes per `sendChunk`; 64 KiB is the interoperable data-channel
 *   message size (65536).
 * @property {number} busyRetryAfter `retryAfter` of a busy answer when no better estimate
 *   exists, seconds (1).
 * @property {boolean} refuseLate refuse (busy) a request whose deadline cannot be met given
 *   the backlog and the cap (true).
 */

/** @type {Readonly<UploadConfig>} */
export const DEFAULT_UPLOAD_CONFIG = Object.freeze({
  enabled: true,
  rateLimitBps: null,
  burstSeconds: 0.25,
  maxConcurrent: 1,
  maxQueued: 2,
  chunkSize: 64 * 1024,
  busyRetryAfter: 1.0,
  refuseLate: true,
});

/**
 * `options` completed with the defaults and checked; throws naming the bad field.
 *
 * @param {Partial<UploadConfig>} [options]
 * @returns {Readonly<UploadConfig>}
 * @throws {TypeError|RangeError}
 */
export function resolveUploadConfig(options = {}) {
  const config = resolveOptions('UploadConfig', DEFAULT_UPLOAD_CONFIG, options);
  if (config.rateLimitBps !== null && !(config.rateLimitBps > 0)) {
    throw new RangeError('UploadConfig.rateLimitBps must be > 0 or null');
  }
  for (const name of ['maxConcurrent', 'chunkSize']) {
    if (!Number.isSafeInteger(config[name]) || config[name] < 1) {
      throw new RangeError(`UploadConfig.${name} must be an integer >= 1, got ${config[name]}`);
    }
  }
  if (!Number.isSafeInteger(config.maxQueued) || config.maxQueued < 0) {
    throw new RangeError(`UploadConfig.maxQueued must be an integer >= 0`);
  }
  if (!(config.burstSeconds >= 0) || !(config.busyRetryAfter >= 0)) {
    throw new RangeError('UploadConfig: burstSeconds and busyRetryAfter must be >= 0');
  }
  return Object.freeze(config);
}

/** @typedef {{type: 'accept', requestId: number}} Accept */
/** @typedef {{type: 'busy', requestId: number, retryAfter: number}} Busy */
/**
 * Send bytes `[offset, offset + nbytes)` of segment `sequence` to `peerId`; `last` is true for
 * the final chunk of the request (the request is then forgotten).
 *
 * @typedef {{type: 'sendChunk', requestId: number, peerId: string, sequence: number,
 *   offset: number, nbytes: number, last: boolean}} SendChunk
 */
/**
 * A queued request was abandoned (its deadline passed before it could start).
 *
 * @typedef {{type: 'dropRequest', requestId: number, peerId: string, reason: string}} DropRequest
 */

/**
 * @typedef {object} UploadRequest
 * @property {number} requestId
 * @property {string} peerId
 * @property {number} sequence
 * @property {number} size
 * @property {number} deadline Infinity when none
 * @property {number} sent
 */

/** Earliest-deadline-first upload queue with a rate cap and a concurrency limit. */
export class UploadScheduler {
  /**
   * @param {Partial<UploadConfig>} [config] overrides of {@link DEFAULT_UPLOAD_CONFIG}
   * @param {{now?: number}} [options] `now`: clock at creation (the bucket starts full then)
   */
  constructor(config = {}, { now = 0 } = {}) {
    /** The resolved configuration. */
    this.config = resolveUploadConfig(config);
    const { rateLimitBps: cap, burstSeconds, chunkSize } = this.config;
    this._burst = cap ? Math.max(cap * burstSeconds, chunkSize) : 0;
    this._tokens = this._burst;
    this._refilledAt = now;
    /** @type {Map<number, UploadRequest>} */
    this._active = new Map();
    /** @type {Map<number, UploadRequest>} */
    this._queued = new Map();
    /** Total bytes handed out in `sendChunk` actions. */
    this.bytesSent = 0;
  }

  /** @returns {number} bytes accepted but not yet sent */
  get backlogBytes() {
    let total = 0;
    for (const r of this._active.values()) total += r.size - r.sent;
    for (const r of this._queued.values()) total += r.size - r.sent;
    return total;
  }

  /**
   * A neighbour asks for `size` bytes of `sequence`, wanted by `deadline` (or null: none).
   *
   * @param {number} now
   * @param {number} requestId
   * @param {string} peerId
   * @param {number} sequence
   * @param {number} size
   * @param {number|null} [deadline]
   * @returns {Accept|Busy}
   * @throws {RangeError} for a malformed request (negative or non-integer size, reused id)
   */
  offer(now, requestId, peerId, sequence, size, deadline = null) {
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new RangeError(`upload request ${requestId}: negative or non-integer size ${size}`);
    }
    if (this._active.has(requestId) || this._queued.has(requestId)) {
      throw new RangeError(`upload request id ${requestId} is already in use`);
    }
    if (deadline !== null && typeof deadline !== 'number') {
      throw new TypeError(`upload request ${requestId}: deadline must be a number or null`);
    }
    const cfg = this.config;
    if (!cfg.enabled) return busy(requestId, cfg.busyRetryAfter);
    /** @type {UploadRequest} */
    const req = {
      requestId,
      peerId,
      sequence,
      size,
      deadline: deadline === null ? Infinity : deadline,
      sent: 0,
    };
    const slotsFull = this._active.size >= cfg.maxConcurrent;
    if (slotsFull && this._queued.size >= cfg.maxQueued) {
      return busy(requestId, this._retryAfter());
    }
    if (cfg.refuseLate && cfg.rateLimitBps && !this._feasible(now, req)) {
      return busy(requestId, this._retryAfter());
    }
    (slotsFull ? this._queued : this._active).set(requestId, req);
    return { type: 'accept', requestId };
  }

  /**
   * Forget a request (the requester cancelled or went away).
   *
   * @param {number} requestId
   * @returns {boolean} whether it was known
   */
  cancel(requestId) {
    return this._active.delete(requestId) || this._queued.delete(requestId);
  }

  /**
   * Forget every request of `peerId` (it disconnected).
   *
   * @param {string} peerId
   * @returns {number[]} the ids of its requests
   */
  cancelPeer(peerId) {
    const gone = this._all()
      .filter((r) => r.peerId === peerId)
      .map((r) => r.requestId);
    for (const id of gone) this.cancel(id);
    return gone;
  }

  /**
   * Chunks to send now, earliest deadline first, within the rate cap.
   *
   * @param {number} now
   * @param {number|null} [maxBytes] bound on the bytes of this poll (the room left in the data
   *   channel's send buffer); null = no bound
   * @returns {Array<SendChunk|DropRequest>}
   */
  poll(now, maxBytes = null) {
    this._refill(now);
    /** @type {Array<SendChunk|DropRequest>} */
    const out = this._dropExpired(now);
    let budget = maxBytes === null ? -1 : maxBytes; // -1: no bound
    while (budget !== 0) {
      this._promote();
      if (this._active.size === 0) break;
      const req = edfMin(this._active.values());
      let n = Math.min(req.size - req.sent, this.config.chunkSize);
      if (budget > 0) n = Math.min(n, budget);
      if (this.config.rateLimitBps && n > this._tokens) break;
      out.push(this._send(req, n));
      if (budget > 0) budget -= n;
    }
    return out;
  }

  /**
   * When {@link UploadScheduler#poll} may have something new to send, or null when idle.
   *
   * @param {number} now
   * @returns {number|null}
   */
  nextWakeup(now) {
    if (this._active.size === 0 && this._queued.size === 0) return null;
    const cap = this.config.rateLimitBps;
    if (!cap) return now;
    const reqs = this._active.size > 0 ? this._active : this._queued;
    let smallest = Infinity;
    for (const r of reqs.values()) smallest = Math.min(smallest, r.size - r.sent);
    const need = Math.min(smallest, this.config.chunkSize);
    return now + Math.max(need - this._tokens, 0) / cap;
  }

  /**
   * Whether, served earliest deadline first under the cap, `fresh` and every accepted request
   * with a deadline still finish in time (admitting must not break promises).
   *
   * @param {number} now
   * @param {UploadRequest} fresh
   * @returns {boolean}
   */
  _feasible(now, fresh) {
    const cap = /** @type {number} */ (this.config.rateLimitBps);
    this._refill(now);
    let backlog = -this._tokens;
    for (const req of [...this._all(), fresh].sort(edfCompare)) {
      backlog += req.size - req.sent;
      if (req.deadline !== Infinity && now + Math.max(backlog, 0) / cap > req.deadline) {
        return false;
      }
    }
    return true;
  }

  /** @returns {UploadRequest[]} */
  _all() {
    return [...this._active.values(), ...this._queued.values()];
  }

  /**
   * @param {UploadRequest} req
   * @param {number} n
   * @returns {SendChunk}
   */
  _send(req, n) {
    /** @type {SendChunk} */
    const chunk = {
      type: 'sendChunk',
      requestId: req.requestId,
      peerId: req.peerId,
      sequence: req.sequence,
      offset: req.sent,
      nbytes: n,
      last: req.sent + n >= req.size,
    };
    req.sent += n;
    this.bytesSent += n;
    if (this.config.rateLimitBps) this._tokens -= n;
    if (chunk.last) this._active.delete(req.requestId);
    return chunk;
  }

  _promote() {
    while (this._queued.size > 0 && this._active.size < this.config.maxConcurrent) {
      const req = edfMin(this._queued.values());
      this._queued.delete(req.requestId);
      this._active.set(req.requestId, req);
    }
  }

  /**
   * @param {number} now
   * @returns {DropRequest[]}
   */
  _dropExpired(now) {
    /** @type {DropRequest[]} */
    const out = [];
    for (const r of [...this._queued.values()]) {
      if (!(r.deadline < now)) continue;
      // The requester has moved on to another source by now: starting would waste the link.
      this._queued.delete(r.requestId);
      const { requestId, peerId } = r;
      out.push({ type: 'dropRequest', requestId, peerId, reason: 'deadline' });
    }
    return out;
  }

  /** @param {number} now */
  _refill(now) {
    const cap = this.config.rateLimitBps;
    if (cap && now > this._refilledAt) {
      this._tokens = Math.min(this._burst, this._tokens + (now - this._refilledAt) * cap);
    }
    this._refilledAt = Math.max(this._refilledAt, now);
  }

  /** @returns {number} */
  _retryAfter() {
    const cap = this.config.rateLimitBps;
    if (!cap) return this.config.busyRetryAfter;
    // Time until the current backlog drains: a fair guess of when a slot frees up.
    return Math.max(this.backlogBytes / cap, 0.05);
  }
}

/**
 * @param {number} requestId
 * @param {number} retryAfter
 * @returns {Busy}
 */
function busy(requestId, retryAfter) {
  return { type: 'busy', requestId, retryAfter };
}

/** Python's `(deadline, request_id)` key. */
function edfCompare(a, b) {
  return a.deadline - b.deadline || a.requestId - b.requestId;
}

/**
 * @param {Iterable<UploadRequest>} requests non-empty
 * @returns {UploadRequest}
 */
function edfMin(requests) {
  let best = null;
  for (const r of requests) if (best === null || edfCompare(r, best) < 0) best = r;
  return /** @type {UploadRequest} */ (best);
}
