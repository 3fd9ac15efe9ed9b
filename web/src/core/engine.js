/**
 * The browser peer: the twin of `peer/agent.py` for a page playing HLS. It drives the same
 * sans-IO parts (one {@link SegmentScheduler}, {@link SegmentCache} and {@link IntegrityStore}
 * per rendition, one {@link UploadScheduler}) with the browser's I/O: {@link PeerSwarm}
 * (RTCPeerConnection + RTCDataChannel) and `fetch` (core/http-loader.js).
 *
 * The player adapter (hlsjs/) feeds it:
 * - each rendition's timeline, from the player's own playlist loads (`updateRendition`); the
 *   engine fetches the integrity manifest (`<stem>.integrity.json`) after each load, so the
 *   manifest is never older than the playlist;
 * - the playback state (`playback` callback: position, end of the buffer, rate, playing), read
 *   from the media element on every scheduler step;
 * - segment requests (`load`), answered from the cache, from peers or from HTTP.
 *
 * Rules kept from the Python agent:
 * - **Fallback is sacred**: the scheduler's deadlines move a segment to HTTP before playback
 *   would stall, and any segment the P2P path cannot serve (P2P off, no manifest, unknown to
 *   the scheduler, outside its horizon) is fetched over HTTP at once, exactly as hls.js would.
 * - **Never trust a peer**: a peer's segment is checked (size announced at the transfer's
 *   start, then SHA-256 of the bytes) against the origin's manifest before it is cached,
 *   handed to the player or re-shared; a peer whose bytes fail is banned (ERROR banned, refused
 *   for a while) and reported (`rejected` event, console warning); the scheduler fetches the
 *   segment elsewhere.
 * - Verified segments are announced with HAVE on every link, evictions with LOST, origin
 *   fetches with FETCHING (so election losers wait for them); requests from peers are served
 *   through the upload scheduler (earliest deadline first, optional rate cap).
 *
 * @module core/engine
 */

import { SegmentCache } from './cache.js';
import { FailureReason, SegmentScheduler } from './scheduler.js';
import { UploadScheduler } from './upload.js';
import { PeerSwarm } from './swarm.js';
import { IntegrityStore, Verdict, manifestUrlFor } from './integrity.js';
import { httpFetch } from './http-loader.js';
import { contentIdFromUrl, checkLabel, mediaKey, renditionId, swarmId } from './ids.js';
import { haveSetSequences } from './connection.js';

/** HAVE_SET / HAVE claims this far outside the known window are ignored (bounded state). */
const CLAIM_SLACK = 64;
/** Scheduler steps run at least this often (seconds): playback is sampled, not pushed. */
const STEP_INTERVAL = 0.25;
/** Digests of segments this far behind a live window are forgotten. */
const RETAIN_SEGMENTS = 30;

/**
 * @typedef {object} EngineOptions
 * @property {string} masterUrl master (or media) playlist URL; content id and rendition ids
 *   derive from it (docs/protocol.md §4)
 * @property {string|null} [signalingUrl] ws(s):// URL of `swarmcast signal`; null = P2P off
 * @property {boolean} [p2p] false = plain HTTP (true)
 * @property {boolean} [upload] false = never upload to peers (true)
 * @property {number|null} [uploadRate] upload cap, bytes per second; null = none
 * @property {number} [maxPeers] most peer connections (10)
 * @property {string|null} [contentId] explicit content id instead of the URL's
 * @property {string|null} [token] join token for the signalling server
 * @property {string|null} [network] locality hint for the signalling server
 * @property {number} [cacheBytes] memory budget of each rendition's cache (64 MiB)
 * @property {number} [httpTimeout] seconds one HTTP segment fetch may take (15)
 * @property {object} [scheduler] overrides of the scheduler's configuration
 * @property {object} [swarm] overrides of the swarm's configuration
 */

/** Defaults of the optional {@link EngineOptions}. */
export const DEFAULT_ENGINE_OPTIONS = Object.freeze({
  signalingUrl: null,
  p2p: true,
  upload: true,
  uploadRate: null,
  maxPeers: 10,
  contentId: null,
  token: null,
  network: null,
  cacheBytes: 64 * 1024 * 1024,
  httpTimeout: 15,
  scheduler: {},
  swarm: {},
});

/**
 * `options` completed with defaults and checked; throws naming the bad field.
 *
 * @param {EngineOptions} options
 * @returns {Required<EngineOptions>}
 */
export function resolveEngineOptions(options) {
  const o = { ...DEFAULT_ENGINE_OPTIONS, ...options };
  if (typeof o.masterUrl !== 'string' || !/^https?:\/\//i.test(o.masterUrl)) {
    throw new TypeError(`src must be an absolute http(s) URL, got ${JSON.stringify(o.masterUrl)}`);
  }
  if (o.signalingUrl !== null && !/^wss?:\/\//i.test(String(o.signalingUrl))) {
    throw new TypeError(`signalingUrl must be a ws:// or wss:// URL, got ${JSON.stringify(o.signalingUrl)}`);
  }
  if (o.uploadRate !== null && !(o.uploadRate > 0)) {
    throw new RangeError(`uploadRate must be a positive number of bytes/s or null, got ${o.uploadRate}`);
  }
  if (!Number.isInteger(o.maxPeers) || o.maxPeers < 1) {
    throw new RangeError(`maxPeers must be an integer >= 1, got ${o.maxPeers}`);
  }
  if (!(o.cacheBytes >= 1024 * 1024)) throw new RangeError('cacheBytes must be at least 1 MiB');
  if (!(o.httpTimeout > 0)) throw new RangeError('httpTimeout must be > 0');
  if (o.contentId !== null) checkLabel(o.contentId);
  return o;
}

/**
 * One fragment of a rendition, as the player's playlist load gives it.
 *
 * @typedef {object} FragmentInfo
 * @property {number} sequence media sequence number
 * @property {number} duration seconds
 * @property {number} start media time of its first frame (the media element's timeline)
 * @property {string} url absolute URL
 * @property {[number, number]|null} [byteRange] [start, end) within `url`, when ranged
 */

/**
 * Playback as the media element shows it.
 *
 * @typedef {object} PlaybackState
 * @property {number} position current time, seconds
 * @property {number} bufferedUntil end of the buffered range holding the position
 * @property {number} rate playback rate (> 0)
 * @property {boolean} playing playback started and not paused (stalled counts as playing)
 */

/** The browser peer (see the module docstring). */
export class P2PEngine {
  /**
   * @param {EngineOptions} options
   * @param {{fetch?: typeof fetch, RTCPeerConnection?: any, WebSocket?: any,
   *   now?: () => number, logger?: Console}} [env] injected for tests; globals by default
   */
  constructor(options, env = {}) {
    /** The resolved options. */
    this.options = resolveEngineOptions(options);
    this.env = env;
    this.now = env.now ?? (() => performance.now() / 1000);
    this.log = env.logger ?? console;
    this.contentId = this.options.contentId ?? contentIdFromUrl(this.options.masterUrl);
    /** Cumulative byte counters of this page (all renditions). */
    this.counters = { httpBytes: 0, p2pBytes: 0, uploadedBytes: 0, rejectedBytes: 0 };
    /** @type {PeerSwarm|null} */
    this.swarm = null;
    /** @type {Map<string, object>} rendition state by playlist URL */
    this.renditions = new Map();
    /** @type {Map<string, object>} rendition state by swarm id */
    this.bySwarm = new Map();
    /** @type {object|null} the rendition the player loads fragments of */
    this.active = null;
    /** @type {() => PlaybackState|null} */
    this.playback = () => null;
    this.upload = new UploadScheduler(
      { enabled: this.options.upload, rateLimitBps: this.options.uploadRate },
      { now: this.now() },
    );
    this._listeners = new Map();
    this._uploads = new Map();
    this._uploadIds = new Map();
    this._nextUpload = 0;
    this._peerSwarms = new Map();
    this._timer = null;
    this._uploadTimer = null;
    this._statsTimer = null;
    this._stepQueued = false;
    this._destroyed = false;
    this._swarmReady = null;
  }

  // ------------------------------------------------------------------------------ events

  /**
   * Listen to `name`: `peer-connected` {peerId}, `peer-disconnected` {peerId}, `rejected`
   * {peerId, sequence, reason}, `error` {message}. (`segment` events are the adapter's: it
   * knows when the player got the bytes.)
   */
  on(name, fn) {
    if (!this._listeners.has(name)) this._listeners.set(name, new Set());
    this._listeners.get(name).add(fn);
  }

  /** Stop listening. */
  off(name, fn) {
    this._listeners.get(name)?.delete(fn);
  }

  emit(name, detail) {
    for (const fn of this._listeners.get(name) ?? []) {
      try {
        fn(detail);
      } catch (error) {
        this.log.error(`swarmcast: '${name}' listener failed`, error);
      }
    }
  }

  /** @returns {boolean} whether peers are in use (P2P on and signalling reached) */
  get p2pEnabled() {
    return this.swarm !== null && this.swarm.localId !== null;
  }

  /** @returns {string|null} our peer id (HELLO id), once signalling welcomed us */
  get peerId() {
    return this.swarm?.localId ?? null;
  }

  /** @returns {number} open peer links */
  get peerCount() {
    return this.swarm ? this.swarm.links.size : 0;
  }

  // --------------------------------------------------------------------------- lifecycle

  /**
   * Connect to signalling (when P2P is on). Never rejects: without signalling the engine stays
   * on HTTP and says so with an `error` event.
   *
   * @returns {Promise<void>}
   */
  start() {
    const o = this.options;
    if (!o.p2p || !o.signalingUrl) return Promise.resolve();
    this._swarmReady = this._startSwarm().catch((error) => {
      this.swarm?.close();
      this.swarm = null;
      this.emit('error', { message: `P2P off, playing over HTTP only: ${error.message ?? error}` });
    });
    return this._swarmReady;
  }

  async _startSwarm() {
    const o = this.options;
    const swarm = new PeerSwarm(
      { maxPeers: o.maxPeers, uploadEnabled: o.upload, ...o.swarm },
      { url: o.signalingUrl, token: o.token, network: o.network },
      this,
      this.env,
    );
    this.swarm = swarm;
    await swarm.start();
    if (this._destroyed) return;
    for (const st of this.renditions.values()) this._maybeJoin(st);
    this._statsTimer = setInterval(
      () => this._reportStats(),
      (swarm.signaling.welcome?.statsInterval ?? 10) * 1000,
    );
  }

  /** Close peers and signalling, stop timers, fail pending loads. */
  destroy() {
    if (this._destroyed) return;
    this._destroyed = true;
    clearTimeout(this._timer);
    clearTimeout(this._uploadTimer);
    clearInterval(this._statsTimer);
    for (const st of this.renditions.values()) {
      for (const t of st.transfers.values()) t.controller?.abort();
      for (const [, waiters] of st.waiters) {
        for (const w of waiters) w.reject(new Error('swarmcast engine destroyed'));
      }
      st.waiters.clear();
    }
    this.swarm?.close();
  }

  // ---------------------------------------------------------------------------- timeline

  /**
   * The player loaded a media playlist: its fragments become the rendition's timeline; the
   * integrity manifest is fetched (again, for live) and the swarm joined once it verified.
   *
   * @param {string} playlistUrl absolute URL of the media playlist
   * @param {FragmentInfo[]} fragments
   * @param {{live?: boolean}} [options]
   * @returns {Promise<void>} settles once the manifest was processed
   */
  async updateRendition(playlistUrl, fragments, { live = false } = {}) {
    if (this._destroyed) return;
    const st = this._rendition(playlistUrl);
    st.live = live;
    st.fragments = new Map(fragments.map((f) => [f.sequence, f]));
    this._pushTimeline(st);
    if (!this.options.p2p || !this.options.signalingUrl) return;
    if (st.swarmId === null) {
      st.swarmId = await swarmId(this.contentId, renditionId(this.options.masterUrl, playlistUrl));
      this.bySwarm.set(st.swarmId, st);
    }
    if (st.manifestOk === false) return; // no manifest the first time: HTTP only, for good
    const newest = Math.max(...st.fragments.keys());
    if (st.manifestOk && (!live || newest <= st.manifestNewest)) return; // it covers these
    st.manifestNewest = newest;
    st.manifestLoading = this._loadManifest(st);
    await st.manifestLoading;
    st.manifestLoading = null;
    this._pushTimeline(st);
    this._maybeJoin(st);
    this._kick();
  }

  _rendition(playlistUrl) {
    let st = this.renditions.get(playlistUrl);
    if (!st) {
      st = {
        playlistUrl,
        swarmId: null,
        live: false,
        fragments: new Map(),
        integrity: new IntegrityStore(),
        manifestOk: null,
        manifestNewest: -1,
        manifestLoading: null,
        scheduler: null,
        joined: false,
        cache: new SegmentCache(this.options.cacheBytes),
        transfers: new Map(),
        partial: new Map(),
        waiters: new Map(),
        sources: new Map(),
        directs: new Map(),
        startedAt: null,
        counters: { http_bytes: 0, p2p_bytes: 0, uploaded_bytes: 0 },
      };
      this.renditions.set(playlistUrl, st);
    }
    return st;
  }

  async _loadManifest(st) {
    const url = manifestUrlFor(st.playlistUrl);
    try {
      // no-cache: a live manifest may be cached for a second, and it must cover the playlist
      // the player just loaded (revalidation costs a 304).
      const bytes = await httpFetch(url, {
        fetch: this.env.fetch,
        timeout: this.options.httpTimeout,
        cache: 'no-cache',
      });
      const { conflicts } = st.integrity.ingest(new TextDecoder().decode(bytes));
      if (conflicts.length) {
        this.log.warn(`swarmcast: ${url} contradicts ${conflicts.length} digest(s) held: kept the old ones`);
      }
      st.manifestOk = true;
      const first = Math.min(...st.fragments.keys());
      if (Number.isFinite(first)) st.integrity.forgetBefore(first - RETAIN_SEGMENTS);
    } catch (error) {
      if (st.manifestOk === null) {
        st.manifestOk = false;
        this.log.warn(
          `swarmcast: ${url} unavailable (${error.message}): peer data cannot be verified, so ` +
            'this rendition is served over HTTP only (publish manifests with `swarmcast integrity`)',
        );
      }
    }
  }

  _pushTimeline(st) {
    if (!st.scheduler) return;
    const segments = [...st.fragments.values()].map((f) => ({
      sequence: f.sequence,
      duration: f.duration,
      size: st.integrity.expected(f.sequence)?.size ?? null,
      start: f.start,
    }));
    st.scheduler.setTimeline(segments, { live: st.live });
  }

  _maybeJoin(st) {
    const swarm = this.swarm;
    if (!swarm || swarm.localId === null || st.joined || !st.manifestOk || st.swarmId === null) {
      return;
    }
    st.joined = true;
    // The election hashes our id: it must be the id neighbours see in our HELLO.
    st.scheduler = new SegmentScheduler(this.options.scheduler, { peerId: swarm.localId });
    this._pushTimeline(st);
    // join() adds the swarm to every open link at once (JOIN frames), then asks signalling.
    const joining = swarm.join(st.swarmId);
    for (const [link, swarms] of this._peerSwarms) {
      if (swarms.has(st.swarmId)) this._peerInSwarm(link, st.swarmId);
    }
    joining.catch((error) => {
      this.emit('error', { message: `joining swarm ${st.swarmId} failed: ${error.message}` });
    });
  }

  // ---------------------------------------------------------------------------- loading

  /**
   * The player wants fragment `sequence` of `playlistUrl`.
   *
   * @param {string} playlistUrl
   * @param {number} sequence
   * @param {{url: string, byteRange?: [number, number]|null, signal?: AbortSignal}} request
   * @returns {Promise<{data: Uint8Array, source: 'p2p'|'http'}>} the bytes (shared with the
   *   cache: copy before transferring them) and where they came from
   */
  load(playlistUrl, sequence, request) {
    const st = this._rendition(playlistUrl);
    this.active = st;
    if (st.manifestLoading && st.scheduler && !st.integrity.expected(sequence)) {
      // A live playlist just listed it and its manifest is on the way (a few ms from the
      // origin): without its size the scheduler would assume the worst and go to HTTP at
      // once, and without its digest no peer's copy could be accepted.
      return st.manifestLoading.then(() => this._load(st, sequence, request));
    }
    return this._load(st, sequence, request);
  }

  _load(st, sequence, request) {
    if (this._destroyed) return Promise.reject(new Error('swarmcast engine destroyed'));
    const frag = st.fragments.get(sequence);
    if (frag && !this.playback()?.playing) st.startedAt = Math.min(frag.start, st.startedAt ?? Infinity);
    const cached = st.cache.get(sequence);
    if (cached) return Promise.resolve({ data: cached, source: st.sources.get(sequence) ?? 'http' });
    if (!this._schedulable(st, sequence)) return this._direct(st, sequence, request);
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject, since: this.now(), request };
      if (!st.waiters.has(sequence)) st.waiters.set(sequence, []);
      st.waiters.get(sequence).push(waiter);
      request.signal?.addEventListener('abort', () => this._dropWaiter(st, sequence, waiter), {
        once: true,
      });
      this._kick();
    });
  }

  /** Whether the scheduler will bring `sequence` in (else the player's request goes to HTTP). */
  _schedulable(st, sequence) {
    const scheduler = st.scheduler;
    if (!scheduler || this._destroyed || !st.fragments.has(sequence)) return false;
    if (scheduler.has(sequence)) return false; // stored once, since evicted or not kept
    const frag = st.fragments.get(sequence);
    const pb = this._playbackFor(st, sequence);
    const end = frag.start + frag.duration;
    return frag.start <= pb.position + scheduler.config.prefetchSeconds && end > pb.bufferedUntil + 0.1;
  }

  _dropWaiter(st, sequence, waiter) {
    const list = st.waiters.get(sequence);
    if (!list) return;
    const index = list.indexOf(waiter);
    if (index >= 0) list.splice(index, 1);
    if (!list.length) st.waiters.delete(sequence);
    waiter.reject(new DOMException('aborted', 'AbortError'));
  }

  /** Plain HTTP for the player, as hls.js would do it (counted, verified for sharing). */
  _direct(st, sequence, request) {
    const promise = this._directFetch(st, sequence, request);
    st.directs.set(sequence, promise);
    const forget = () => {
      if (st.directs.get(sequence) === promise) st.directs.delete(sequence);
    };
    promise.then(forget, forget);
    return promise;
  }

  async _directFetch(st, sequence, request) {
    const frag = st.fragments.get(sequence);
    const range = request.byteRange ?? frag?.byteRange ?? null;
    const data = await httpFetch(request.url, {
      start: range ? range[0] : 0,
      end: range ? range[1] : null,
      signal: request.signal,
      timeout: this.options.httpTimeout,
      fetch: this.env.fetch,
    });
    this._count(st, 'http_bytes', data.byteLength);
    if (st.manifestOk && st.scheduler) {
      const verdict = await st.integrity.check(sequence, data);
      if (verdict === Verdict.VERIFIED) this._store(st, sequence, data, true, 'http');
    }
    return { data, source: 'http' };
  }

  // ------------------------------------------------------------------------------- step

  /** Run a scheduler step soon (coalesced). */
  _kick() {
    if (this._stepQueued || this._destroyed) return;
    this._stepQueued = true;
    queueMicrotask(() => {
      this._stepQueued = false;
      this._step();
    });
  }

  _step() {
    if (this._destroyed) return;
    clearTimeout(this._timer);
    const now = this.now();
    let wake = now + STEP_INTERVAL;
    const st = this.active;
    // Before playback starts, only the player's requests say where it will play from.
    const started = this.playback()?.playing || st?.waiters.size > 0 || st?.startedAt !== null;
    if (st && st.scheduler && st.scheduler.liveEdge !== null && started) {
      try {
        wake = Math.min(wake, this._stepRendition(st, now));
      } catch (error) {
        this.log.error('swarmcast: scheduler step failed', error);
      }
    }
    this._timer = setTimeout(() => this._step(), Math.max(wake - now, 0.005) * 1000);
  }

  _stepRendition(st, now) {
    const scheduler = st.scheduler;
    const pb = this._playbackFor(st, null);
    scheduler.setPlayback(now, pb.position, pb.bufferedUntil, pb.rate, pb.playing);
    st.cache.setPlayhead(this._sequenceAt(st, pb.position));
    for (const action of scheduler.poll(now)) this._execute(st, action, now);
    this._rescueWaiters(st);
    return scheduler.nextWakeup(now) ?? Infinity;
  }

  /**
   * The playback state for the scheduler. Before playback starts the position is the start
   * of the earliest fragment the player asked for: that is where it will start playing (the
   * media element still says 0, which would make a live segment look far away).
   */
  _playbackFor(st, sequence) {
    const raw = this.playback() ?? { position: 0, bufferedUntil: 0, rate: 1, playing: false };
    let { position, bufferedUntil } = raw;
    if (!raw.playing) {
      const asked = [...st.waiters.keys()];
      if (sequence !== null) asked.push(sequence);
      const starts = asked.map((s) => st.fragments.get(s)?.start).filter((s) => s !== undefined);
      if (starts.length) st.startedAt = Math.min(...starts, st.startedAt ?? Infinity);
      if (st.startedAt !== null && bufferedUntil <= position + 0.1 && position < st.startedAt) {
        position = st.startedAt;
        bufferedUntil = position;
      }
    }
    const rate = raw.rate > 0 ? raw.rate : 1;
    return { position: Math.max(position, 0), bufferedUntil: Math.max(bufferedUntil, 0), rate, playing: raw.playing };
  }

  /** Waiters the scheduler will not serve (it stored the segment but let it go) go to HTTP. */
  _rescueWaiters(st) {
    for (const [sequence, waiters] of st.waiters) {
      if (!st.scheduler.has(sequence) && this._schedulable(st, sequence)) continue;
      st.waiters.delete(sequence);
      const cached = st.cache.get(sequence);
      for (const w of waiters) {
        if (cached) w.resolve({ data: cached, source: st.sources.get(sequence) ?? 'http' });
        else this._direct(st, sequence, w.request).then(w.resolve, w.reject);
      }
    }
  }

  _sequenceAt(st, position) {
    if (position === undefined || position === null) return null;
    for (const f of st.fragments.values()) {
      if (f.start <= position && position < f.start + f.duration) return f.sequence;
    }
    return null;
  }

  _execute(st, action, now) {
    if (action.type === 'fetchFromPeer') this._fetchFromPeer(st, action, now);
    else if (action.type === 'fetchFromOrigin') this._fetchFromOrigin(st, action);
    else if (action.type === 'cancelTransfer') this._cancel(st, action);
  }

  _fetchFromPeer(st, action, now) {
    const link = this.swarm?.links.get(action.peerId);
    if (!link || link.closed || link.protocol.requestSlots === 0) {
      st.scheduler.transferFailed(now, action.transferId, FailureReason.PEER_GONE);
      this._kick();
      return;
    }
    let requestId;
    try {
      requestId = link.protocol.request(st.swarmId, mediaKey(action.sequence));
    } catch {
      st.scheduler.transferFailed(now, action.transferId, FailureReason.DONT_HAVE);
      this._kick();
      return;
    }
    st.transfers.set(action.transferId, { sequence: action.sequence, link, requestId });
    link.flush();
  }

  _cancel(st, action) {
    const t = st.transfers.get(action.transferId);
    if (!t) return;
    st.transfers.delete(action.transferId);
    if (t.link) {
      if ((action.reason === 'switch' || action.reason === 'stalled') && t.link.peerId) {
        const kept = t.link.protocol.partialData(t.requestId);
        if (kept.byteLength) st.partial.set(t.sequence, [kept, t.link.peerId]);
      }
      t.link.protocol.cancel(t.requestId);
      t.link.flush();
    } else {
      t.controller?.abort();
    }
  }

  _fetchFromOrigin(st, action) {
    const frag = st.fragments.get(action.sequence);
    const tid = action.transferId;
    if (!frag) {
      st.scheduler.transferFailed(this.now(), tid, FailureReason.HTTP_ERROR);
      return;
    }
    const direct = st.directs.get(action.sequence);
    if (direct) {
      // The player's own request is already fetching it: adopt that download.
      st.transfers.set(tid, { sequence: action.sequence, link: null, controller: null });
      direct.then(
        () => {
          if (st.transfers.delete(tid)) st.scheduler.transferDone(this.now(), tid);
        },
        () => {
          if (st.transfers.delete(tid)) st.scheduler.transferFailed(this.now(), tid, FailureReason.HTTP_ERROR);
        },
      );
      return;
    }
    const controller = new AbortController();
    st.transfers.set(tid, { sequence: action.sequence, link: null, controller });
    this._originFetch(st, tid, frag, action.offset, controller).catch((error) => {
      this.log.error('swarmcast: origin fetch failed unexpectedly', error);
    });
  }

  async _originFetch(st, tid, frag, offset, controller) {
    const scheduler = st.scheduler;
    let [prefix, source] = st.partial.get(frag.sequence) ?? [null, null];
    st.partial.delete(frag.sequence);
    if (!prefix || prefix.byteLength !== offset) [prefix, source] = [null, null];
    const skip = prefix ? prefix.byteLength : 0;
    const announce = skip === 0;
    if (announce) this._broadcast(st, 'Fetching', frag.sequence);
    const base = frag.byteRange ? frag.byteRange[0] : 0;
    let data;
    try {
      data = await httpFetch(frag.url, {
        start: base + skip,
        end: frag.byteRange ? frag.byteRange[1] : null,
        signal: controller.signal,
        timeout: this.options.httpTimeout,
        fetch: this.env.fetch,
        onProgress: (received) => scheduler.transferProgress(this.now(), tid, Math.max(received + skip - offset, 0)),
      });
    } catch (error) {
      if (announce && !this._destroyed) this._broadcast(st, 'FetchAborted', frag.sequence);
      if (controller.signal.aborted) return; // cancelled by the scheduler: no event expected
      this.log.warn(`swarmcast: origin fetch of ${frag.url} failed: ${error.message}`);
      st.transfers.delete(tid);
      scheduler.transferFailed(this.now(), tid, FailureReason.HTTP_ERROR);
      this._kick();
      return;
    }
    st.transfers.delete(tid);
    this._count(st, 'http_bytes', data.byteLength);
    const whole = prefix ? concatBytes(prefix, data) : data;
    const verdict = await st.integrity.check(frag.sequence, whole);
    if (verdict === Verdict.MISMATCH && source !== null) {
      this._reject(st, source, frag.sequence, prefix.byteLength, 'bytes resumed from it were bad');
      scheduler.transferFailed(this.now(), tid, FailureReason.BAD_DATA);
      this._kick();
      return;
    }
    if (prefix) this._count(st, 'p2p_bytes', prefix.byteLength);
    if (verdict === Verdict.MISMATCH) {
      this.log.error(`swarmcast: ${frag.url} does not match its integrity manifest; not sharing it`);
    }
    scheduler.transferDone(this.now(), tid);
    this._store(st, frag.sequence, whole, verdict !== Verdict.MISMATCH, prefix ? 'p2p' : 'http');
  }

  // ---------------------------------------------------------------------------- storage

  _store(st, sequence, data, share, source) {
    st.scheduler?.segmentStored(sequence);
    st.sources.set(sequence, source);
    if (share) {
      const result = st.cache.put(sequence, data);
      for (const key of result.evicted) {
        if (typeof key === 'number') {
          this._broadcast(st, 'Lost', key);
          st.scheduler?.segmentEvicted(key);
          st.sources.delete(key);
        }
      }
      if (result.stored) this._broadcast(st, 'Have', sequence);
    }
    const waiters = st.waiters.get(sequence);
    if (waiters) {
      st.waiters.delete(sequence);
      for (const w of waiters) w.resolve({ data, source });
    }
    if (!share || !st.cache.has(sequence)) st.sources.delete(sequence);
    this._kick();
  }

  _broadcast(st, what, sequence) {
    if (!this.swarm || !st.joined) return;
    const key = mediaKey(sequence);
    for (const [link, swarms] of this._peerSwarms) {
      if (!swarms.has(st.swarmId) || link.closed) continue;
      link.protocol[`send${what}`](st.swarmId, key);
      link.flush();
    }
  }

  _count(st, name, n) {
    st.counters[name] += n;
    const total = { http_bytes: 'httpBytes', p2p_bytes: 'p2pBytes', uploaded_bytes: 'uploadedBytes' };
    this.counters[total[name]] += n;
  }

  _reject(st, peerId, sequence, nbytes, why) {
    this.counters.rejectedBytes += nbytes;
    const reason = `segment ${sequence}: ${why}`;
    this.emit('rejected', { peerId, sequence, reason });
    this.swarm?.ban(peerId, reason);
  }

  // ---------------------------------------------------------------------- swarm listener

  /** A link is usable: add the peer to the schedulers of shared swarms, tell it what we hold. */
  linkOpened(link, hello) {
    this._peerSwarms.set(link, new Set(hello.swarms));
    for (const swarmId of hello.swarms) this._peerInSwarm(link, swarmId);
    this.emit('peer-connected', { peerId: hello.peerId });
  }

  _peerInSwarm(link, swarmId) {
    const st = this.bySwarm.get(swarmId);
    if (!st || !st.joined || link.closed) return;
    try {
      link.protocol.sendHaveSet(swarmId, st.cache.sequences());
    } catch {
      return; // the swarm is not on this link (yet): its JOIN will bring us back here
    }
    // A neighbour that announced "upload off" never serves: in the scheduler it would win
    // elections and suppress the others' with its FETCHING (docs/simulation.md, adapter rule).
    // It still gets our HAVE_SET: it may download from us.
    if (link.protocol.peer?.uploadEnabled !== false) {
      st.scheduler.addPeer(link.peerId, { isSeed: link.protocol.peer?.role === 'seed' });
    }
    link.flush();
    this._kick();
  }

  /** Route one link event to the scheduler, the upload side or the storage path. */
  linkEvent(link, event) {
    switch (event.type) {
      case 'requestReceived':
        this._onRequest(link, event);
        break;
      case 'requestCancelled':
        this._cancelUpload(link, event.requestId);
        break;
      case 'transferStarted':
      case 'transferChunk':
        this._onProgress(link, event);
        break;
      case 'transferCompleted':
        this._onCompleted(link, event);
        break;
      case 'transferFailed':
      case 'dontHaveReceived':
      case 'busyReceived':
        this._onRefused(link, event);
        break;
      case 'swarmJoined':
        if (!this._peerSwarms.has(link)) this._peerSwarms.set(link, new Set());
        this._peerSwarms.get(link).add(event.swarmId);
        this._peerInSwarm(link, event.swarmId);
        break;
      default:
        this._onAvailability(link.peerId, event);
    }
  }

  /** An open link ended: forget the peer everywhere; its transfers are rescheduled. */
  linkClosed(link) {
    this._peerSwarms.delete(link);
    const pid = link.peerId ?? '';
    for (const uid of this.upload.cancelPeer(pid)) this._uploads.delete(uid);
    for (const key of [...this._uploadIds.keys()]) {
      if (key.startsWith(`${pid}\u0000`)) this._uploadIds.delete(key);
    }
    for (const st of this.renditions.values()) {
      if (!st.scheduler) continue;
      for (const tid of st.scheduler.removePeer(pid)) st.transfers.delete(tid);
    }
    this.emit('peer-disconnected', { peerId: pid });
    this._kick();
  }

  _onAvailability(pid, event) {
    const st = this.bySwarm.get(event.swarmId);
    if (!st || !st.scheduler || !pid) return;
    const seqs = [...st.fragments.keys()];
    if (!seqs.length) return;
    const low = Math.min(...seqs) - CLAIM_SLACK;
    const high = Math.max(...seqs) + CLAIM_SLACK;
    const scheduler = st.scheduler;
    if (event.type === 'haveSetReceived') {
      scheduler.peerHas(pid, haveSetSequences(event).filter((s) => s >= low && s < high));
    } else {
      const key = event.key;
      if (!key || key.kind !== 'media' || key.number < low || key.number >= high) return;
      if (event.type === 'haveReceived') scheduler.peerHas(pid, [key.number]);
      else if (event.type === 'lostReceived') scheduler.peerLost(pid, [key.number]);
      else if (event.type === 'fetchingReceived') scheduler.peerFetching(pid, key.number);
      else if (event.type === 'fetchAbortedReceived') scheduler.peerFetchAborted(pid, key.number);
      else return;
    }
    this._kick();
  }

  _findTransfer(link, requestId) {
    for (const st of this.renditions.values()) {
      for (const [tid, t] of st.transfers) {
        if (t.link === link && t.requestId === requestId) return [st, tid];
      }
    }
    return null;
  }

  _onProgress(link, event) {
    const found = this._findTransfer(link, event.requestId);
    if (!found) return;
    const [st, tid] = found;
    const t = st.transfers.get(tid);
    if (event.type === 'transferStarted') {
      const expected = st.integrity.expected(t.sequence);
      if (expected && event.totalSize !== expected.size) {
        // Wrong size announced: refuse before buffering a byte of it.
        st.transfers.delete(tid);
        link.protocol.cancel(event.requestId);
        this._reject(st, link.peerId, t.sequence, 0, `announced ${event.totalSize} bytes, the manifest says ${expected.size}`);
        st.scheduler.transferFailed(this.now(), tid, FailureReason.BAD_DATA);
        this._kick();
        return;
      }
      st.scheduler.transferProgress(this.now(), tid, 0, event.totalSize);
    } else {
      const progress = link.protocol.progress(event.requestId);
      if (progress) st.scheduler.transferProgress(this.now(), tid, progress[0]);
    }
  }

  async _onCompleted(link, event) {
    const found = this._findTransfer(link, event.requestId);
    if (!found) return;
    const [st, tid] = found;
    const t = st.transfers.get(tid);
    st.transfers.delete(tid);
    const pid = link.peerId ?? '';
    const data = event.data;
    const verdict = event.offset === 0 ? await st.integrity.check(t.sequence, data) : Verdict.MISMATCH;
    const now = this.now();
    if (verdict === Verdict.VERIFIED) {
      this._count(st, 'p2p_bytes', data.byteLength);
      this.swarm?.touch(pid);
      st.scheduler.transferDone(now, tid);
      this._store(st, t.sequence, data, true, 'p2p');
    } else if (verdict === Verdict.MISMATCH) {
      this._reject(st, pid, t.sequence, data.byteLength, 'failed integrity (SHA-256 or size)');
      st.scheduler.transferFailed(now, tid, FailureReason.BAD_DATA);
    } else {
      // No digest (yet) for it: the bytes cannot be used, but the peer did nothing wrong.
      st.scheduler.transferFailed(now, tid, FailureReason.DONT_HAVE);
    }
    this._kick();
  }

  _onRefused(link, event) {
    const found = this._findTransfer(link, event.requestId);
    if (!found) return;
    const [st, tid] = found;
    st.transfers.delete(tid);
    const now = this.now();
    if (event.type === 'busyReceived') {
      const retry = event.retryAfterMs ? event.retryAfterMs / 1000 : null;
      st.scheduler.transferFailed(now, tid, FailureReason.BUSY, retry);
    } else if (event.type === 'dontHaveReceived') {
      st.scheduler.transferFailed(now, tid, FailureReason.DONT_HAVE);
    } else {
      st.scheduler.transferFailed(now, tid, FailureReason.PEER_GONE);
    }
    this._kick();
  }

  // ------------------------------------------------------------------------------ upload

  _onRequest(link, event) {
    const st = this.bySwarm.get(event.swarmId);
    const data = st && event.key.kind === 'media' ? st.cache.get(event.key.number) : undefined;
    if (!st || !data || event.offset >= data.byteLength) {
      link.protocol.sendDontHave(event.requestId);
      link.flush();
      return;
    }
    const uid = this._nextUpload++;
    let size = data.byteLength - event.offset;
    if (event.length) size = Math.min(size, event.length);
    const decision = this.upload.offer(this.now(), uid, link.peerId ?? '', event.key.number, size);
    if (decision.type === 'accept') {
      this._uploads.set(uid, { link, requestId: event.requestId, data, st });
      this._uploadIds.set(`${link.peerId}\u0000${event.requestId}`, uid);
      this._pumpUploads();
    } else {
      link.protocol.sendBusy(event.requestId, Math.min(Math.trunc(decision.retryAfter * 1000), 65535));
      link.flush();
    }
  }

  _cancelUpload(link, requestId) {
    const key = `${link.peerId}\u0000${requestId}`;
    const uid = this._uploadIds.get(key);
    if (uid === undefined) return;
    this._uploadIds.delete(key);
    this._uploads.delete(uid);
    this.upload.cancel(uid);
  }

  /** Hand accepted uploads to their links as the upload scheduler releases them. */
  _pumpUploads() {
    clearTimeout(this._uploadTimer);
    if (this._destroyed) return;
    const now = this.now();
    for (const action of this.upload.poll(now)) this._uploadAction(action);
    const next = this.upload.nextWakeup(this.now());
    if (next !== null) {
      this._uploadTimer = setTimeout(() => this._pumpUploads(), Math.max(next - this.now(), 0.001) * 1000);
    }
  }

  _uploadAction(action) {
    const entry = this._uploads.get(action.requestId);
    if (!entry) return;
    const { link, requestId, data, st } = entry;
    const done = () => {
      this._uploads.delete(action.requestId);
      this._uploadIds.delete(`${link.peerId}\u0000${requestId}`);
    };
    if (action.type === 'dropRequest') {
      done();
      link.protocol.sendBusy(requestId);
    } else if (action.offset === 0) {
      // The protocol sends the whole answer at channel speed (bufferedAmount backpressure);
      // the upload scheduler's bucket still gates when the next request may start.
      if (link.protocol.sendSegment(requestId, data)) {
        this._count(st, 'uploaded_bytes', data.byteLength);
        if (link.peerId) this.swarm?.touch(link.peerId);
      }
    }
    link.flush();
    if (action.type === 'sendChunk' && action.last) done();
  }

  // ------------------------------------------------------------------------------- stats

  _reportStats() {
    const stalls = this.stallCount?.() ?? 0;
    for (const st of this.renditions.values()) {
      if (st.joined) this.swarm?.signaling.sendStats(st.swarmId, { ...st.counters, stalls });
    }
  }
}

function concatBytes(a, b) {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a, 0);
  out.set(b, a.byteLength);
  return out;
}
