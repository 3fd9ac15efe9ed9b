/**
 * The segment cache of one swarm: bytes kept in memory under a hard budget. Twin of
 * `peer/cache.py` (same eviction order, same refusals).
 *
 * Sans-IO and clock-free. What to keep follows what is useful to the player *and* to the swarm:
 *
 * 1. unpinned string keys go first (extras the adapter chose not to pin);
 * 2. then segments behind the playhead, oldest first: the player has them already and the
 *    neighbours that still want them are behind us, the further behind the fewer;
 * 3. then segments ahead of the playhead, furthest first: the nearest are about to be played;
 * 4. pinned entries (init segments) are never evicted.
 *
 * A newcomer that would itself be the first to go is refused rather than evicting something
 * more useful. Every eviction is reported to the caller, so the adapter can tell its
 * neighbours (LOST) and the scheduler (`segmentEvicted`). Keys are media sequence numbers
 * (integers) or, for init segments, any string the adapter chooses; `1` and `"1"` are
 * different keys.
 *
 * Values are `Uint8Array`s (any `ArrayBuffer` view, or an `ArrayBuffer`): views of one shared
 * buffer cost only their `byteLength` against the budget.
 *
 * @module core/cache
 */

/** @typedef {number|string} CacheKey */
/** @typedef {ArrayBufferView|ArrayBuffer} CacheValue */

/**
 * What {@link SegmentCache#put} did.
 *
 * @typedef {object} StoreResult
 * @property {boolean} stored false when the value could not fit, or would have been the first
 *   to go
 * @property {CacheKey[]} evicted keys removed to make room, in eviction order (empty if none)
 */

/** Segments of one swarm under a memory budget of `budgetBytes`. */
export class SegmentCache {
  /**
   * @param {number} budgetBytes hard ceiling of {@link SegmentCache#usedBytes}, a positive
   *   integer
   * @throws {RangeError} for anything else
   */
  constructor(budgetBytes) {
    if (!Number.isSafeInteger(budgetBytes) || budgetBytes <= 0) {
      throw new RangeError(
        `cache budget must be a positive number of bytes, got ${String(budgetBytes)}`,
      );
    }
    /** Hard ceiling of {@link SegmentCache#usedBytes}. */
    this.budgetBytes = budgetBytes;
    /** Bytes currently held (pinned included). */
    this.usedBytes = 0;
    /** @type {Map<CacheKey, CacheValue>} insertion-ordered */
    this._items = new Map();
    /** @type {Set<CacheKey>} */
    this._pinned = new Set();
    /** @type {number|null} */
    this._playhead = null;
  }

  /** @returns {number} number of entries held */
  get size() {
    return this._items.size;
  }

  /**
   * Whether `key` is held.
   *
   * @param {CacheKey} key
   * @returns {boolean}
   */
  has(key) {
    return this._items.has(key);
  }

  /**
   * The value of `key`, or null.
   *
   * @param {CacheKey} key
   * @returns {CacheValue|null}
   */
  get(key) {
    return this._items.get(key) ?? null;
  }

  /** @returns {number[]} media sequence numbers held, ascending (string keys left out) */
  sequences() {
    return [...this._items.keys()].filter(isSequence).sort(ascending);
  }

  /**
   * Tell the cache which media sequence is playing (null = unknown: evict oldest first).
   *
   * @param {number|null} sequence
   */
  setPlayhead(sequence) {
    if (sequence !== null && !Number.isSafeInteger(sequence)) {
      throw new TypeError(`playhead must be a media sequence number or null, got ${sequence}`);
    }
    this._playhead = sequence;
  }

  /**
   * Store `data` under `key`, evicting what is least useful until it fits. Replacing an
   * existing key frees its old value first; nothing is evicted when the value cannot fit.
   *
   * @param {CacheKey} key
   * @param {CacheValue} data
   * @param {{pinned?: boolean}} [options] `pinned`: never evict it (init segments)
   * @returns {StoreResult}
   * @throws {TypeError} for a key that is neither an integer nor a string, or a value that is
   *   not bytes
   */
  put(key, data, { pinned = false } = {}) {
    if (!isSequence(key) && typeof key !== 'string') {
      throw new TypeError(`cache keys are media sequence numbers or strings, got ${String(key)}`);
    }
    const size = nbytes(data);
    const old = this._items.get(key);
    const oldSize = old === undefined ? 0 : nbytes(old);
    let pinnedBytes = 0;
    for (const k of this._pinned) if (k !== key) pinnedBytes += nbytes(this._items.get(k));
    if (size > this.budgetBytes - pinnedBytes) return { stored: false, evicted: [] };
    if (old !== undefined) this._drop(key);
    const victims = this._victims(pinned ? null : key, this.usedBytes + size - this.budgetBytes);
    if (victims === null) {
      // The newcomer is itself the least useful entry: keep what we have.
      if (old !== undefined) {
        this._items.set(key, old);
        this.usedBytes += oldSize;
      }
      return { stored: false, evicted: [] };
    }
    for (const victim of victims) this._drop(victim);
    this._items.set(key, data);
    this.usedBytes += size;
    if (pinned) this._pinned.add(key);
    return { stored: true, evicted: victims };
  }

  /**
   * Remove `key`, pinned or not.
   *
   * @param {CacheKey} key
   * @returns {boolean} whether it was held
   */
  evict(key) {
    if (!this._items.has(key)) return false;
    this._drop(key);
    return true;
  }

  _drop(key) {
    this.usedBytes -= nbytes(this._items.get(key));
    this._items.delete(key);
    this._pinned.delete(key);
  }

  /**
   * Keys to evict to free `need` bytes, or null if `newcomer` would go first.
   *
   * @param {CacheKey|null} newcomer
   * @param {number} need
   * @returns {CacheKey[]|null}
   */
  _victims(newcomer, need) {
    if (need <= 0) return [];
    const victims = [];
    for (const key of this._evictionOrder(newcomer)) {
      if (key === newcomer) return null;
      need -= nbytes(this._items.get(key));
      victims.push(key);
      if (need <= 0) break;
    }
    return victims;
  }

  /**
   * @param {CacheKey|null} newcomer
   * @returns {CacheKey[]}
   */
  _evictionOrder(newcomer) {
    const extras = [];
    const seqs = [];
    for (const key of this._items.keys()) {
      if (this._pinned.has(key)) continue;
      if (typeof key === 'string') extras.push(key);
      else seqs.push(key);
    }
    if (isSequence(newcomer)) seqs.push(newcomer);
    seqs.sort(ascending);
    if (this._playhead === null) return [...extras, ...seqs];
    const playhead = this._playhead;
    const behind = seqs.filter((s) => s < playhead);
    const ahead = seqs.filter((s) => s >= playhead).reverse();
    return [...extras, ...behind, ...ahead];
  }
}

function isSequence(key) {
  return Number.isSafeInteger(key);
}

function ascending(a, b) {
  return a - b;
}

/**
 * @param {CacheValue} data
 * @returns {number}
 */
function nbytes(data) {
  if (ArrayBuffer.isView(data) || data instanceof ArrayBuffer) return data.byteLength;
  throw new TypeError('cache values must be bytes (a Uint8Array or another ArrayBuffer view)');
}
