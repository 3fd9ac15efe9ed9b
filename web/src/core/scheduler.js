/**
 * The download scheduler of one swarm (one rendition): where each segment comes from, and
 * when. JS twin of `peer/scheduler.py`; docs/scheduler.md describes the rules, and the scenario
 * vectors in tests/vectors/scheduler/ pin both implementations to the same actions.
 *
 * Sans-IO state machine: the adapter feeds events (timeline, playback, neighbour
 * announcements, transfer progress) and calls {@link SegmentScheduler#poll} to get actions
 * (fetch from a peer, fetch from the origin, cancel). Time is a number `now` in seconds, from
 * any monotonic clock (e.g. `performance.now() / 1000`). Nothing here does I/O and nothing is
 * random: the same inputs give the same actions here, in Python and in the simulator (ties are
 * broken by hashing, see {@link hrwScore}).
 *
 * ## Mapping to the Python API and to the vectors
 *
 * Names are the Python names in camelCase, mechanically (`set_playback` -> `setPlayback`,
 * `max_parallel_p2p` -> `maxParallelP2p`, `bandwidth.peer_prior_bps` ->
 * `bandwidth.peerPriorBps`). Python positional parameters with defaults stay positional; Python
 * keyword-only parameters become an options object:
 *
 * | Python | JS |
 * |---|---|
 * | `SegmentScheduler(config, *, peer_id)` | `new SegmentScheduler(config, {peerId, logger})` |
 * | `set_timeline(segments, *, live=False)` | `setTimeline(segments, {live})` |
 * | `set_playback(now, position, buffered_until, rate=1.0, playing=True)` | `setPlayback(now, position, bufferedUntil, rate = 1, playing = true)` |
 * | `add_peer(peer_id, *, is_seed=False)` | `addPeer(peerId, {isSeed})` |
 * | `transfer_progress(now, transfer_id, bytes_received, total_size=None)` | `transferProgress(now, transferId, bytesReceived, totalSize = null)` |
 * | `transfer_failed(now, transfer_id, reason, retry_after=None)` | `transferFailed(now, transferId, reason, retryAfter = null)` |
 * | `SegmentInfo(sequence, duration, size, start)` | `{sequence, duration, size, start}` (`size` null when unknown) |
 *
 * Actions are plain objects; `type` is the Python class name with a lower-case first letter,
 * the other fields are the Python fields in camelCase (a vector's `expect` entry
 * `{"type": "FetchFromPeer", "transfer_id": 1, ...}` is `{type: 'fetchFromPeer', transferId: 1,
 * ...}` here):
 *
 * - `{type: 'fetchFromPeer', transferId, sequence, peerId, offset}`: request the segment over
 *   the data channel (`offset` is 0 today: peers serve whole segments);
 * - `{type: 'fetchFromOrigin', transferId, sequence, offset, reason}`: HTTP GET, with
 *   `Range: bytes=offset-` when `offset > 0` (keep the bytes already received from the peer);
 *   `reason` is `deadline`, `bootstrap` or `switch`. Announce FETCHING when it starts and HAVE
 *   once the segment is verified and stored;
 * - `{type: 'cancelTransfer', transferId, reason}`: abort it (`switch`, `stalled`,
 *   `not_needed`, `banned`); no `transferFailed` is expected for it.
 *
 * Call `poll` after feeding events and again at `nextWakeup(now)` (null: on events only).
 *
 * ## Numbers
 *
 * All arithmetic is IEEE double in the same order as the Python code, so results are equal bit
 * for bit; the one transcendental function (the EWMA weight in core/bandwidth.js) is computed
 * portably. Sequence numbers and byte counts are integers below 2^53.
 *
 * @module core/scheduler
 */

import {
  DEFAULT_BANDWIDTH_CONFIG,
  ThroughputEstimator,
  TransferMeter,
  resolveBandwidthConfig,
  resolveOptions,
} from './bandwidth.js';

/**
 * A segment counts as in the player's buffer when it ends at most this far past the buffered
 * range (timestamps of appended media are rounded by the demuxer).
 */
export const BUFFER_TOLERANCE = 0.1;

/**
 * Every knob of {@link SegmentScheduler}. Times in seconds, rates in bytes per second.
 *
 * @typedef {object} SchedulerConfig
 * @property {number} liveDelaySegments Live: play this many segment durations behind the end of
 *   the newest segment (hls.js `liveSyncDurationCount`). Each extra segment adds one duration
 *   of latency and the same time for a new segment to spread peer to peer (3).
 * @property {number} prefetchSeconds How far past the playhead segments are fetched, from peers
 *   or by the elected viewer (30).
 * @property {number} httpSafetyFactor Multiplier on the estimated origin download time when
 *   deciding the HTTP deadline (1.5).
 * @property {number} httpSafetyMargin Seconds added to the scaled origin download time: a
 *   segment whose deadline is closer than that goes to the origin. Covers event-loop jitter
 *   and playlist lag (1).
 * @property {number} p2pSafetyFactor Multiplier on projected peer transfer times; peer
 *   throughput is noisier than HTTP (1.25).
 * @property {number} minP2pTimeBudget A peer fetch starts only if at least this much time (or
 *   the projected transfer time, if larger) remains before the HTTP deadline (0.3).
 * @property {number} maxParallelP2p Peer transfers in flight at once (4).
 * @property {number} maxParallelHttp Origin fetches in flight for bootstrap; deadline-forced
 *   fetches ignore it, fallback is never held back (1).
 * @property {number} maxInflightPerPeer Transfers in flight to one neighbour at once (2).
 * @property {number} electionCopies Viewers expected to fetch a new segment from the origin,
 *   the rendezvous-hash winners (1).
 * @property {number} electionBackoff Seconds each further rank waits before stepping in when
 *   nobody fetches a segment (0.5).
 * @property {number} seedGrace With a seed connected, election winners wait this long for it to
 *   announce the segment (0.5).
 * @property {number} stallTimeout A peer transfer with no bytes for this long is cancelled and
 *   counted as a timeout (1.5).
 * @property {number} busyPenalty Seconds a neighbour that answered busy is not asked again,
 *   unless it said how long (1).
 * @property {number} timeoutPenalty Seconds a neighbour that timed out is not asked again (5).
 * @property {number} timeoutThroughputFactor A timeout scales the neighbour's throughput
 *   estimate by this factor (0.5).
 * @property {number} maxTimeouts Timeouts in a row after which a neighbour is banned for
 *   `banDuration` (3).
 * @property {number} banDuration Seconds a neighbour is not used after bad data or
 *   `maxTimeouts` timeouts (600).
 * @property {number} originRetryDelay First wait after an origin error; doubles per
 *   consecutive error of the same segment (0.25).
 * @property {number} originRetryMaxDelay Longest wait between origin retries (4).
 * @property {number} assumedBitrateBps Bytes per second of media assumed for segments of
 *   unknown size (750000 = 6 Mbit/s, on the high side so that the deadline rule errs early).
 * @property {boolean} preferSeeds Among peers that can deliver in time, ask seeds first (true).
 * @property {import('./bandwidth.js').BandwidthConfig} bandwidth Priors and smoothing of the
 *   throughput estimators.
 */

/** @type {Readonly<SchedulerConfig>} */
export const DEFAULT_SCHEDULER_CONFIG = Object.freeze({
  liveDelaySegments: 3,
  prefetchSeconds: 30.0,
  httpSafetyFactor: 1.5,
  httpSafetyMargin: 1.0,
  p2pSafetyFactor: 1.25,
  minP2pTimeBudget: 0.3,
  maxParallelP2p: 4,
  maxParallelHttp: 1,
  maxInflightPerPeer: 2,
  electionCopies: 1,
  electionBackoff: 0.5,
  seedGrace: 0.5,
  stallTimeout: 1.5,
  busyPenalty: 1.0,
  timeoutPenalty: 5.0,
  timeoutThroughputFactor: 0.5,
  maxTimeouts: 3,
  banDuration: 600.0,
  originRetryDelay: 0.25,
  originRetryMaxDelay: 4.0,
  assumedBitrateBps: 750_000,
  preferSeeds: true,
  bandwidth: DEFAULT_BANDWIDTH_CONFIG,
});

const POSITIVE_INTS = [
  'maxParallelP2p',
  'maxParallelHttp',
  'maxInflightPerPeer',
  'electionCopies',
  'maxTimeouts',
  'liveDelaySegments',
];
const NON_NEGATIVE = [
  'prefetchSeconds',
  'httpSafetyMargin',
  'minP2pTimeBudget',
  'electionBackoff',
  'seedGrace',
  'busyPenalty',
  'timeoutPenalty',
  'banDuration',
  'originRetryDelay',
  'originRetryMaxDelay',
];

/**
 * `options` completed with the defaults (`bandwidth` merged field by field) and checked;
 * throws naming the bad field.
 *
 * @param {Partial<Omit<SchedulerConfig, 'bandwidth'>> &
 *   {bandwidth?: Partial<import('./bandwidth.js').BandwidthConfig>}} [options]
 * @returns {Readonly<SchedulerConfig>}
 * @throws {TypeError|RangeError}
 */
export function resolveSchedulerConfig(options = {}) {
  const config = resolveOptions('SchedulerConfig', DEFAULT_SCHEDULER_CONFIG, options);
  config.bandwidth = resolveBandwidthConfig(options.bandwidth ?? {});
  for (const name of POSITIVE_INTS) {
    if (!Number.isSafeInteger(config[name]) || config[name] < 1) {
      throw new RangeError(`SchedulerConfig.${name} must be an integer >= 1, got ${config[name]}`);
    }
  }
  if (!(config.httpSafetyFactor >= 1) || !(config.p2pSafetyFactor >= 1)) {
    throw new RangeError('SchedulerConfig safety factors must be >= 1');
  }
  for (const name of NON_NEGATIVE) {
    if (!(config[name] >= 0)) {
      throw new RangeError(`SchedulerConfig.${name} must be >= 0, got ${config[name]}`);
    }
  }
  if (!(config.stallTimeout > 0) || !(config.assumedBitrateBps > 0)) {
    throw new RangeError('SchedulerConfig.stallTimeout and assumedBitrateBps must be > 0');
  }
  return Object.freeze(config);
}

/**
 * Why a transfer failed (reported by the adapter through `transferFailed`).
 *
 * @enum {string}
 */
export const FailureReason = Object.freeze({
  TIMEOUT: 'timeout',
  BUSY: 'busy',
  DONT_HAVE: 'dont_have',
  BAD_DATA: 'bad_data',
  PEER_GONE: 'peer_gone',
  HTTP_ERROR: 'http_error',
});
const FAILURE_REASONS = new Set(Object.values(FailureReason));

/**
 * One media segment of the swarm's playlist.
 *
 * @typedef {object} SegmentInfo
 * @property {number} sequence media sequence number
 * @property {number} duration seconds of media
 * @property {number|null} size bytes, when the integrity manifest gives it (null = unknown,
 *   estimated)
 * @property {number} start media time of the first frame, seconds (the player's timeline)
 */

/**
 * @typedef {{type: 'fetchFromPeer', transferId: number, sequence: number, peerId: string,
 *   offset: number}} FetchFromPeer
 */
/**
 * @typedef {{type: 'fetchFromOrigin', transferId: number, sequence: number, offset: number,
 *   reason: string}} FetchFromOrigin
 */
/** @typedef {{type: 'cancelTransfer', transferId: number, reason: string}} CancelTransfer */
/** @typedef {FetchFromPeer|FetchFromOrigin|CancelTransfer} Action */

/**
 * Counters for metrics and tests.
 *
 * @typedef {object} SchedulerStats
 * @property {number} p2pFetches peer transfers started
 * @property {number} originFetches origin transfers started (any reason)
 * @property {number} bootstraps origin fetches started because this viewer was elected
 * @property {number} switches peer transfers moved to the origin to meet a deadline
 * @property {number} p2pBytes bytes received from peers in completed or switched transfers
 * @property {number} originBytes bytes received from the origin in completed transfers
 */

/**
 * A console-like sink for the scheduler's few log lines (bans at `info`, details at `debug`).
 *
 * @typedef {{debug: (...args: unknown[]) => void, info: (...args: unknown[]) => void}} Logger
 */

/** @type {Logger} */
const SILENT = Object.freeze({ debug() {}, info() {} });

/**
 * @typedef {object} PeerState
 * @property {boolean} isSeed
 * @property {ThroughputEstimator} estimator
 * @property {Set<number>} has
 * @property {Set<number>} fetching
 * @property {number} inflight
 * @property {number} blockedUntil
 * @property {number} bannedUntil
 * @property {number} timeouts
 */

/**
 * @typedef {object} Transfer
 * @property {number} transferId
 * @property {number} sequence
 * @property {string|null} peerId null for the origin
 * @property {number} offset
 * @property {TransferMeter} meter
 * @property {string} reason
 */

/** Download decisions for one swarm, seen from the viewer `peerId`. */
export class SegmentScheduler {
  /**
   * @param {Parameters<typeof resolveSchedulerConfig>[0]} [config] overrides of
   *   {@link DEFAULT_SCHEDULER_CONFIG}
   * @param {{peerId: string, logger?: Logger}} options `peerId`: this viewer's id (it takes
   *   part in elections and tie-breaks); `logger`: where log lines go (silent by default)
   */
  constructor(config = {}, { peerId, logger = SILENT } = /** @type {any} */ ({})) {
    if (typeof peerId !== 'string' || !peerId) {
      throw new TypeError('SegmentScheduler needs a non-empty peerId');
    }
    /** The resolved configuration. */
    this.config = resolveSchedulerConfig(config);
    /** This viewer's id. */
    this.peerId = peerId;
    this._log = logger;
    const bw = this.config.bandwidth;
    /** Throughput estimate of the origin. */
    this.http = new ThroughputEstimator(bw.httpPriorBps, bw.httpPriorLatency, bw);
    /** @type {SchedulerStats} */
    this.stats = {
      p2pFetches: 0,
      originFetches: 0,
      bootstraps: 0,
      switches: 0,
      p2pBytes: 0,
      originBytes: 0,
    };
    /** @type {Map<number, SegmentInfo>} */
    this._segments = new Map();
    /** @type {number[]} */
    this._order = [];
    this._live = false;
    /** @type {Map<number, number>} */
    this._learnedSize = new Map();
    /** @type {Map<string, PeerState>} */
    this._peers = new Map();
    /** @type {Set<number>} */
    this._stored = new Set();
    /** @type {Map<number, Transfer>} */
    this._transfers = new Map();
    /** @type {Map<number, number>} sequence -> transfer id */
    this._bySeq = new Map();
    this._nextTid = 1;
    /** @type {Map<number, Set<string>>} */
    this._failedPeers = new Map();
    /** @type {Map<number, [number, string|null]>} sequence -> [bytes, source peer or null] */
    this._partial = new Map();
    /** @type {Map<number, [number, number]>} sequence -> [errors in a row, retry at] */
    this._originErrors = new Map();
    /** @type {Map<number, number>} */
    this._firstWanted = new Map();
    /** @type {Map<number, number>} election ranks, valid until the neighbours change */
    this._ranks = new Map();
    /** @type {number|null} */
    this._wakeup = null;
    // Playback: position at time _tRef, and whether it advances.
    this._tRef = 0;
    /** @type {number|null} start of the first segment past the prefetch window */
    this._beyondHorizon = null;
    this._position = 0;
    this._bufferedUntil = 0;
    this._rate = 1;
    this._playing = false;
  }

  // ------------------------------------------------------------------ inputs: timeline, player

  /**
   * Replace the playlist (a live window slides; forgotten segments are dropped).
   *
   * @param {SegmentInfo[]} segments
   * @param {{live?: boolean}} [options] `live`: a sliding live playlist
   * @throws {RangeError} for a segment with a bad sequence, duration, start or size
   */
  setTimeline(segments, { live = false } = {}) {
    const checked = [...segments].map(checkSegment);
    this._segments = new Map(checked.map((s) => [s.sequence, s]));
    this._order = [...this._segments.keys()].sort((a, b) => a - b);
    this._live = Boolean(live);
    if (this._order.length > 0) this._forgetBefore(this._order[0]);
  }

  /** @param {number} oldest */
  _forgetBefore(oldest) {
    // A live window slides forever: drop what refers to segments gone from the playlist.
    for (const seq of this._stored) if (seq < oldest) this._stored.delete(seq);
    for (const table of [
      this._ranks,
      this._firstWanted,
      this._failedPeers,
      this._originErrors,
      this._learnedSize,
      this._partial,
    ]) {
      for (const seq of table.keys()) if (seq < oldest) table.delete(seq);
    }
    for (const peer of this._peers.values()) {
      for (const seq of peer.has) if (seq < oldest) peer.has.delete(seq);
      for (const seq of peer.fetching) if (seq < oldest) peer.fetching.delete(seq);
    }
  }

  /** @returns {boolean} whether the last timeline was a live (sliding) playlist */
  get isLive() {
    return this._live;
  }

  /** @returns {number|null} media time at the end of the newest segment (null: no timeline) */
  get liveEdge() {
    if (this._order.length === 0) return null;
    return segmentEnd(this._segment(this._order[this._order.length - 1]));
  }

  /**
   * Where a live player should start: `liveDelaySegments` durations behind the edge.
   *
   * @returns {number|null} media time, or null without a timeline
   */
  liveStartPosition() {
    if (this._order.length === 0) return null;
    const index = Math.max(this._order.length - this.config.liveDelaySegments, 0);
    return this._segment(this._order[index]).start;
  }

  /**
   * Report the player: media `position`, end of the contiguous buffer, speed, state.
   *
   * `playing` false (not started yet, paused) makes deadlines float with the clock: only the
   * segment at the playhead is urgent, the rest wait for peers.
   *
   * @param {number} now
   * @param {number} position
   * @param {number} bufferedUntil
   * @param {number} [rate]
   * @param {boolean} [playing]
   * @throws {RangeError} for a non-finite or negative value, or a rate <= 0
   */
  setPlayback(now, position, bufferedUntil, rate = 1.0, playing = true) {
    const finite = [now, position, bufferedUntil, rate].every((x) => Number.isFinite(x));
    if (!finite || rate <= 0 || position < 0 || bufferedUntil < 0) {
      throw new RangeError(
        `bad playback state: position=${position} buffered=${bufferedUntil} rate=${rate}`,
      );
    }
    this._tRef = now;
    this._position = position;
    this._bufferedUntil = Math.max(bufferedUntil, position);
    this._rate = rate;
    this._playing = Boolean(playing);
  }

  /**
   * Clock time at which the player will need `sequence` (may be in the past).
   *
   * @param {number} sequence a sequence of the timeline
   * @param {number} now
   * @returns {number}
   * @throws {RangeError} if `sequence` is not in the timeline
   */
  deadline(sequence, now) {
    const seg = this._segment(sequence);
    const ahead = Math.max(seg.start - this._position, 0.0) / this._rate;
    if (!this._playing) return now + ahead;
    const playhead = this._position + (now - this._tRef) * this._rate;
    if (playhead > this._bufferedUntil + BUFFER_TOLERANCE) {
      // Stalled at the end of the buffer: playback resumes when the missing segment lands, so
      // the next segment is due now and the later ones shift with it.
      return now + Math.max(seg.start - this._bufferedUntil, 0.0) / this._rate;
    }
    return this._tRef + ahead;
  }

  // ------------------------------------------------------------------ inputs: neighbours

  /**
   * A neighbour joined (data channel open). Re-adding keeps its state.
   *
   * @param {string} peerId
   * @param {{isSeed?: boolean}} [options] `isSeed`: it is a seed (preferred source, no vote)
   */
  addPeer(peerId, { isSeed = false } = {}) {
    if (peerId === this.peerId || this._peers.has(peerId)) return;
    const bw = this.config.bandwidth;
    this._ranks.clear();
    this._peers.set(peerId, {
      isSeed: Boolean(isSeed),
      estimator: new ThroughputEstimator(bw.peerPriorBps, bw.peerPriorLatency, bw),
      has: new Set(),
      fetching: new Set(),
      inflight: 0,
      blockedUntil: -Infinity,
      bannedUntil: -Infinity,
      timeouts: 0,
    });
  }

  /**
   * A neighbour left. Its transfers are forgotten (the adapter aborts them); their segments are
   * rescheduled at the next poll.
   *
   * @param {string} peerId
   * @returns {number[]} the ids of its transfers
   */
  removePeer(peerId) {
    if (!this._peers.delete(peerId)) return [];
    this._ranks.clear();
    const gone = [];
    for (const t of this._transfers.values()) if (t.peerId === peerId) gone.push(t.transferId);
    for (const tid of gone) {
      this._keepPartial(/** @type {Transfer} */ (this._transfers.get(tid)));
      this._endTransfer(tid);
    }
    return gone;
  }

  /**
   * `peerId` announced it holds `sequences` (HAVE).
   *
   * @param {string} peerId
   * @param {Iterable<number>} sequences
   */
  peerHas(peerId, sequences) {
    const peer = this._peers.get(peerId);
    if (peer === undefined) {
      this._log.debug(`HAVE from unknown peer ${peerId} ignored`);
      return;
    }
    for (const seq of sequences) {
      peer.has.add(seq);
      peer.fetching.delete(seq);
    }
  }

  /**
   * `peerId` no longer holds `sequences` (LOST, evicted).
   *
   * @param {string} peerId
   * @param {Iterable<number>} sequences
   */
  peerLost(peerId, sequences) {
    const peer = this._peers.get(peerId);
    if (peer !== undefined) for (const seq of sequences) peer.has.delete(seq);
  }

  /**
   * `peerId` announced it is fetching `sequence` from the origin (FETCHING).
   *
   * @param {string} peerId
   * @param {number} sequence
   */
  peerFetching(peerId, sequence) {
    const peer = this._peers.get(peerId);
    if (peer !== undefined && !peer.has.has(sequence)) peer.fetching.add(sequence);
  }

  /**
   * `peerId` gave up fetching `sequence`.
   *
   * @param {string} peerId
   * @param {number} sequence
   */
  peerFetchAborted(peerId, sequence) {
    this._peers.get(peerId)?.fetching.delete(sequence);
  }

  // ------------------------------------------------------------------ inputs: own storage

  /**
   * `sequence` is in the cache (verified), whatever brought it there.
   *
   * @param {number} sequence
   */
  segmentStored(sequence) {
    this._stored.add(sequence);
    this._partial.delete(sequence);
  }

  /**
   * `sequence` left the cache.
   *
   * @param {number} sequence
   */
  segmentEvicted(sequence) {
    this._stored.delete(sequence);
  }

  /**
   * Whether `sequence` is stored.
   *
   * @param {number} sequence
   * @returns {boolean}
   */
  has(sequence) {
    return this._stored.has(sequence);
  }

  // ------------------------------------------------------------------ inputs: transfers

  /**
   * `bytesReceived` bytes of the transfer arrived so far (counted from its offset);
   * `totalSize` is the whole segment's size if the source told it. Unknown ids are ignored
   * (late events of a cancelled transfer).
   *
   * @param {number} now
   * @param {number} transferId
   * @param {number} bytesReceived
   * @param {number|null} [totalSize]
   */
  transferProgress(now, transferId, bytesReceived, totalSize = null) {
    const t = this._transfers.get(transferId);
    if (t === undefined) return;
    t.meter.progress(now, bytesReceived);
    if (totalSize !== null && totalSize > 0) this._learnedSize.set(t.sequence, totalSize);
  }

  /**
   * The transfer completed and the segment verified; it counts as stored.
   *
   * @param {number} now
   * @param {number} transferId
   */
  transferDone(now, transferId) {
    const t = this._transfers.get(transferId);
    if (t === undefined) return;
    t.meter.finish(now);
    if (t.peerId === null) {
      this.stats.originBytes += t.meter.received;
      this._originErrors.delete(t.sequence);
    } else {
      this.stats.p2pBytes += t.meter.received;
      const peer = this._peers.get(t.peerId);
      if (peer !== undefined) peer.timeouts = 0;
    }
    this._endTransfer(transferId);
    this.segmentStored(t.sequence);
  }

  /**
   * The transfer failed; the segment is rescheduled at the next poll.
   *
   * @param {number} now
   * @param {number} transferId
   * @param {string} reason a {@link FailureReason} value
   * @param {number|null} [retryAfter] seconds, with `busy` when the neighbour said how long
   * @throws {RangeError} for a reason that is not a {@link FailureReason} value
   */
  transferFailed(now, transferId, reason, retryAfter = null) {
    if (!FAILURE_REASONS.has(reason)) {
      throw new RangeError(
        `unknown failure reason ${JSON.stringify(reason)}; ` +
          `expected one of ${[...FAILURE_REASONS].join(', ')}`,
      );
    }
    const t = this._transfers.get(transferId);
    if (t === undefined) return;
    this._endTransfer(transferId);
    if (t.peerId === null) this._originFailed(now, t, reason);
    else this._peerFailed(now, t, reason, retryAfter);
  }

  // ------------------------------------------------------------------ outputs

  /**
   * Decide what to do now. Call after feeding events and at {@link SegmentScheduler#nextWakeup}.
   *
   * @param {number} now
   * @returns {Action[]}
   */
  poll(now) {
    this._wakeup = null;
    /** @type {Action[]} */
    const actions = [];
    this._checkTransfers(now, actions);
    this._schedule(now, actions);
    return actions;
  }

  /**
   * When {@link SegmentScheduler#poll} should run again if no event comes first.
   *
   * @param {number} now
   * @returns {number|null} a clock time >= now, or null: only on events
   */
  nextWakeup(now) {
    if (this._wakeup === null) return null;
    return Math.max(this._wakeup, now);
  }

  /** @returns {Map<number, {sequence: number, peerId: string|null}>} transfers in flight */
  transfers() {
    const out = new Map();
    for (const [tid, t] of this._transfers) {
      out.set(tid, { sequence: t.sequence, peerId: t.peerId });
    }
    return out;
  }

  // ------------------------------------------------------------------ estimates

  /**
   * Bytes of `sequence`: from the timeline, else learned, else from the assumed rate.
   *
   * @param {number} sequence a sequence of the timeline
   * @returns {number}
   */
  segmentSize(sequence) {
    const seg = this._segment(sequence);
    if (seg.size !== null) return seg.size;
    const learned = this._learnedSize.get(sequence);
    if (learned !== undefined) return learned;
    return Math.trunc(seg.duration * this.config.assumedBitrateBps);
  }

  /**
   * Seconds to reserve for fetching `nbytes` from the origin, safety included (the bytes still
   * outstanding on origin transfers share the link).
   *
   * @param {number} nbytes
   * @returns {number}
   */
  httpTimeNeeded(nbytes) {
    const cfg = this.config;
    let backlog = 0;
    for (const t of this._transfers.values()) {
      if (t.peerId === null) backlog += this.segmentSize(t.sequence) - doneBytes(t);
    }
    const raw = this.http.transferTime(nbytes + Math.max(backlog, 0));
    return raw * cfg.httpSafetyFactor + cfg.httpSafetyMargin;
  }

  /**
   * 0-based rank of this viewer among itself and its non-seed neighbours for `sequence`.
   *
   * @param {number} sequence
   * @returns {number}
   */
  electionRank(sequence) {
    const cached = this._ranks.get(sequence);
    if (cached !== undefined) return cached;
    const mine = hrwScore(this.peerId, sequence);
    let rank = 0;
    for (const [pid, peer] of this._peers) {
      if (peer.isSeed) continue;
      const score = hrwScore(pid, sequence);
      if (score > mine || (score === mine && compareCodePoints(pid, this.peerId) > 0)) rank += 1;
    }
    this._ranks.set(sequence, rank);
    return rank;
  }

  // ------------------------------------------------------------------ internals: running

  /**
   * @param {number} now
   * @param {Action[]} actions
   */
  _checkTransfers(now, actions) {
    // Drop what the player no longer needs first (a seek, a live window that slid past), so
    // the estimates below only count transfers that matter.
    for (const t of [...this._transfers.values()]) {
      const seg = this._segments.get(t.sequence);
      if (seg === undefined || segmentEnd(seg) <= this._position) {
        actions.push(cancel(t.transferId, 'not_needed'));
        this._endTransfer(t.transferId);
      } else if (t.peerId !== null && this._banned(t.peerId, now)) {
        // It sent bad data on another transfer: nothing it sends is worth waiting for.
        actions.push(cancel(t.transferId, 'banned'));
        this._endTransfer(t.transferId);
      }
    }
    const p2p = [...this._transfers.values()].filter((t) => t.peerId !== null);
    for (const t of p2p) this._checkP2p(now, t, actions);
  }

  /**
   * @param {number} now
   * @param {Transfer} t
   * @param {Action[]} actions
   */
  _checkP2p(now, t, actions) {
    const cfg = this.config;
    const remaining = Math.max(this.segmentSize(t.sequence) - doneBytes(t), 0);
    const httpNeed = this.httpTimeNeeded(remaining);
    const switchAt = this.deadline(t.sequence, now) - httpNeed;
    const stallAt = t.meter.lastProgressAt + cfg.stallTimeout;
    if (now >= stallAt) {
      this._log.debug(`transfer ${t.transferId} of ${t.sequence} from ${t.peerId} stalled`);
      actions.push(cancel(t.transferId, 'stalled'));
      this._endTransfer(t.transferId);
      this._keepPartial(t);
      this._penaliseTimeout(now, t.sequence, /** @type {string} */ (t.peerId));
      return;
    }
    if (now >= switchAt) {
      // The last moment the origin can still deliver the rest in time. Keeping the peer beyond
      // it would be a bet that it does not stall in the last second: never take it. The Range
      // resume keeps what the peer sent, so switching late costs little.
      this._switchToOrigin(now, t, actions);
      return;
    }
    this._wake(Math.min(stallAt, switchAt));
  }

  /**
   * @param {number} now
   * @param {Transfer} t
   * @param {Action[]} actions
   */
  _switchToOrigin(now, t, actions) {
    this._log.debug(
      `transfer ${t.transferId} of ${t.sequence}: ${t.peerId} too slow, ` +
        `switching to origin at byte ${doneBytes(t)}`,
    );
    actions.push(cancel(t.transferId, 'switch'));
    this.stats.switches += 1;
    this.stats.p2pBytes += t.meter.received;
    this._endTransfer(t.transferId);
    this._keepPartial(t);
    actions.push(this._startOrigin(now, t.sequence, 'switch'));
  }

  // ------------------------------------------------------------------ internals: new fetches

  /** @returns {number[]} sequences the player will need that nothing brings in yet */
  _needed(now) {
    // The window moves with the playhead extrapolated to `now`, as deadlines do, so an adapter
    // that polls without a fresh setPlayback still sees segments enter it.
    let playhead = this._position;
    if (this._playing) playhead += Math.max(0, now - this._tRef) * this._rate;
    const horizon = playhead + this.config.prefetchSeconds;
    const out = [];
    this._beyondHorizon = null;
    for (const seq of this._order) {
      const seg = this._segment(seq);
      if (seg.start > horizon) {
        this._beyondHorizon = seg.start;
        break;
      }
      if (
        segmentEnd(seg) <= this._bufferedUntil + BUFFER_TOLERANCE ||
        this._stored.has(seq) ||
        this._bySeq.has(seq)
      ) {
        continue;
      }
      out.push(seq);
    }
    return out;
  }

  /**
   * @param {number} now
   * @param {Action[]} actions
   */
  _schedule(now, actions) {
    const cfg = this.config;
    let p2pSlots = cfg.maxParallelP2p;
    let httpSlots = cfg.maxParallelHttp;
    for (const t of this._transfers.values()) {
      if (t.peerId !== null) p2pSlots -= 1;
      else if (t.reason !== 'deadline') httpSlots -= 1;
    }
    for (const seq of this._needed(now)) {
      if (!this._firstWanted.has(seq)) this._firstWanted.set(seq, now);
      const size = this.segmentSize(seq);
      const offset = this._partial.get(seq)?.[0] ?? 0;
      const urgentAt = this.deadline(seq, now) - this.httpTimeNeeded(size - offset);
      const retryAt = this._originRetryAt(seq);
      if (now >= urgentAt) {
        if (now >= retryAt) actions.push(this._startOrigin(now, seq, 'deadline'));
        else this._wake(retryAt);
        continue;
      }
      // Paused or not started: deadlines float with the clock, no timer needed.
      if (this._playing) this._wake(urgentAt);
      if (p2pSlots > 0) {
        const action = this._tryPeer(now, seq, size, urgentAt - now);
        if (action !== null) {
          actions.push(action);
          p2pSlots -= 1;
          continue;
        }
      }
      if (httpSlots > 0 && now >= retryAt && this._shouldBootstrap(now, seq)) {
        actions.push(this._startOrigin(now, seq, 'bootstrap'));
        httpSlots -= 1;
      }
    }
    if (this._playing && this._beyondHorizon !== null) {
      // Wake when the next segment enters the prefetch window: without it, a VOD viewer that
      // receives no events would only fetch it once the player stalls.
      const lead = this._beyondHorizon - this.config.prefetchSeconds - this._position;
      this._wake(this._tRef + lead / this._rate);
    }
  }

  /**
   * @param {number} now
   * @param {number} seq
   * @param {number} size
   * @param {number} budget seconds until the segment becomes urgent
   * @returns {FetchFromPeer|null}
   */
  _tryPeer(now, seq, size, budget) {
    const cfg = this.config;
    const failed = this._failedPeers.get(seq);
    /** @type {Array<{notSeed: boolean, eta: number, pid: string}>} */
    const best = [];
    for (const [pid, peer] of this._peers) {
      const holds = peer.has.has(seq);
      if (
        !holds ||
        failed?.has(pid) ||
        peer.blockedUntil > now ||
        peer.inflight >= cfg.maxInflightPerPeer
      ) {
        if (holds && peer.blockedUntil > now) this._wake(peer.blockedUntil);
        continue;
      }
      const est = peer.estimator;
      let eta = est.latency + (size * (peer.inflight + 1)) / est.bytesPerSecond;
      eta *= cfg.p2pSafetyFactor;
      if (Math.max(eta, cfg.minP2pTimeBudget) > budget) continue;
      best.push({ notSeed: cfg.preferSeeds ? !peer.isSeed : false, eta, pid });
    }
    if (best.length === 0) return null;
    best.sort(compareCandidates);
    // Spread load among the candidates nearly as good as the best one. The pick is a hash of
    // (me, candidate, segment): each downloader spreads its requests, different downloaders
    // pick different sources, and the Python twin picks exactly the same.
    const { notSeed: topSeed, eta: topEta } = best[0];
    let pick = null;
    let pickScore = -1;
    for (const c of best) {
      if (c.notSeed !== topSeed || !(c.eta <= topEta * 1.25)) continue;
      const score = hrwScore(`${this.peerId}>${c.pid}`, seq);
      if (score > pickScore) {
        pick = c.pid;
        pickScore = score;
      }
    }
    this._partial.delete(seq);
    return this._startPeer(now, seq, /** @type {string} */ (pick));
  }

  /**
   * Whether this viewer should bring `seq` into the swarm from the origin now.
   *
   * @param {number} now
   * @param {number} seq
   * @returns {boolean}
   */
  _shouldBootstrap(now, seq) {
    const cfg = this.config;
    let seeds = false;
    for (const peer of this._peers.values()) {
      // A banned peer's claims do not count: they would hold us back until urgent.
      if ((peer.has.has(seq) || peer.fetching.has(seq)) && peer.bannedUntil <= now) return false;
      seeds = seeds || peer.isSeed;
    }
    let start = /** @type {number} */ (this._firstWanted.get(seq)) + (seeds ? cfg.seedGrace : 0.0);
    const rank = this.electionRank(seq);
    start += Math.max(rank - cfg.electionCopies + 1, 0) * cfg.electionBackoff;
    if (now >= start) return true;
    this._wake(start);
    return false;
  }

  /**
   * @param {number} now
   * @param {number} seq
   * @param {string} peerId
   * @returns {FetchFromPeer}
   */
  _startPeer(now, seq, peerId) {
    const peer = /** @type {PeerState} */ (this._peers.get(peerId));
    const tid = this._newTransfer(now, seq, peerId, 0, peer.estimator, 'p2p');
    peer.inflight += 1;
    this.stats.p2pFetches += 1;
    this._wake(now + this.config.stallTimeout);
    return { type: 'fetchFromPeer', transferId: tid, sequence: seq, peerId, offset: 0 };
  }

  /**
   * @param {number} now
   * @param {number} seq
   * @param {string} reason
   * @returns {FetchFromOrigin}
   */
  _startOrigin(now, seq, reason) {
    const offset = this._partial.get(seq)?.[0] ?? 0;
    const tid = this._newTransfer(now, seq, null, offset, this.http, reason);
    this.stats.originFetches += 1;
    if (reason === 'bootstrap') this.stats.bootstraps += 1;
    return { type: 'fetchFromOrigin', transferId: tid, sequence: seq, offset, reason };
  }

  /**
   * @param {number} now
   * @param {number} seq
   * @param {string|null} peerId
   * @param {number} offset
   * @param {ThroughputEstimator} estimator
   * @param {string} reason
   * @returns {number} the new transfer id
   */
  _newTransfer(now, seq, peerId, offset, estimator, reason) {
    const tid = this._nextTid;
    this._nextTid += 1;
    const meter = new TransferMeter(now, estimator, this.config.bandwidth.minSampleSeconds);
    this._transfers.set(tid, { transferId: tid, sequence: seq, peerId, offset, meter, reason });
    this._bySeq.set(seq, tid);
    return tid;
  }

  /** @param {number} tid */
  _endTransfer(tid) {
    const t = /** @type {Transfer} */ (this._transfers.get(tid));
    this._transfers.delete(tid);
    if (this._bySeq.get(t.sequence) === tid) this._bySeq.delete(t.sequence);
    if (t.peerId !== null) {
      const peer = this._peers.get(t.peerId);
      if (peer !== undefined) peer.inflight -= 1;
    }
  }

  /** @param {Transfer} t */
  _keepPartial(t) {
    // Bytes already received stay useful only for an origin Range resume (peers serve whole
    // segments); remember who sent them in case the assembled segment is bad. A count at or
    // past the expected size means the size was wrong or the source lied: start over rather
    // than ask for an empty or negative range.
    const done = doneBytes(t);
    if (this._segments.has(t.sequence) && done > 0 && done < this.segmentSize(t.sequence)) {
      this._partial.set(t.sequence, [done, t.peerId]);
    } else {
      this._partial.delete(t.sequence);
    }
  }

  // ------------------------------------------------------------------ internals: failures

  /**
   * @param {number} now
   * @param {Transfer} t
   * @param {string} reason
   * @param {number|null} retryAfter
   */
  _peerFailed(now, t, reason, retryAfter) {
    const cfg = this.config;
    const pid = /** @type {string} */ (t.peerId);
    const peer = this._peers.get(pid);
    this._failedSet(t.sequence).add(pid);
    if (peer === undefined) return;
    switch (reason) {
      case FailureReason.BUSY: {
        const wait =
          retryAfter === null ? cfg.busyPenalty : Math.min(Math.max(retryAfter, 0.0), 60.0);
        peer.blockedUntil = Math.max(peer.blockedUntil, now + wait);
        this._failedSet(t.sequence).delete(pid);
        break;
      }
      case FailureReason.DONT_HAVE:
        peer.has.delete(t.sequence);
        break;
      case FailureReason.BAD_DATA:
        this._ban(now, pid, 'sent bad data');
        break;
      case FailureReason.TIMEOUT:
        this._keepPartial(t);
        this._penaliseTimeout(now, t.sequence, pid);
        break;
      case FailureReason.PEER_GONE:
        this._keepPartial(t);
        peer.has.clear();
        break;
      default:
        break; // http_error from a peer transfer: nothing to learn about the peer
    }
  }

  /**
   * @param {number} now
   * @param {Transfer} t
   * @param {string} reason
   */
  _originFailed(now, t, reason) {
    const cfg = this.config;
    const count = (this._originErrors.get(t.sequence)?.[0] ?? 0) + 1;
    // The exponent is capped so that an origin down for hours cannot overflow the doubling.
    const doubling = 2 ** Math.min(count - 1, 64);
    const delay = Math.min(cfg.originRetryDelay * doubling, cfg.originRetryMaxDelay);
    this._originErrors.set(t.sequence, [count, now + delay]);
    if (reason === FailureReason.BAD_DATA) {
      // The assembled segment did not verify: drop the resumed bytes and blame their peer.
      const source = this._partial.get(t.sequence)?.[1] ?? null;
      this._partial.delete(t.sequence);
      if (source !== null) {
        this._ban(now, source, 'contributed bytes to a segment that failed verification');
      }
    } else {
      this._keepPartial(t);
    }
    this._log.debug(`origin fetch of ${t.sequence} failed (${reason}), retry in ${delay}s`);
  }

  /**
   * @param {number} seq
   * @returns {number}
   */
  _originRetryAt(seq) {
    return this._originErrors.get(seq)?.[1] ?? -Infinity;
  }

  /**
   * @param {number} now
   * @param {number} seq
   * @param {string} pid
   */
  _penaliseTimeout(now, seq, pid) {
    const peer = this._peers.get(pid);
    this._failedSet(seq).add(pid);
    if (peer === undefined) return;
    peer.timeouts += 1;
    peer.estimator.penalise(this.config.timeoutThroughputFactor);
    if (peer.timeouts >= this.config.maxTimeouts) {
      this._ban(now, pid, `${peer.timeouts} timeouts in a row`);
    } else {
      peer.blockedUntil = Math.max(peer.blockedUntil, now + this.config.timeoutPenalty);
    }
  }

  /**
   * @param {number} now
   * @param {string} pid
   * @param {string} why
   */
  _ban(now, pid, why) {
    const peer = this._peers.get(pid);
    if (peer === undefined) return;
    this._log.info(`not using peer ${pid} for ${this.config.banDuration}s: ${why}`);
    peer.bannedUntil = Math.max(peer.bannedUntil, now + this.config.banDuration);
    peer.blockedUntil = Math.max(peer.blockedUntil, peer.bannedUntil);
    peer.has.clear();
  }

  /**
   * @param {string} pid
   * @param {number} now
   * @returns {boolean}
   */
  _banned(pid, now) {
    const peer = this._peers.get(pid);
    return peer !== undefined && peer.bannedUntil > now;
  }

  /**
   * @param {number} seq
   * @returns {Set<string>}
   */
  _failedSet(seq) {
    let failed = this._failedPeers.get(seq);
    if (failed === undefined) {
      failed = new Set();
      this._failedPeers.set(seq, failed);
    }
    return failed;
  }

  /** @param {number} when */
  _wake(when) {
    if (this._wakeup === null || when < this._wakeup) this._wakeup = when;
  }

  /**
   * @param {number} sequence
   * @returns {SegmentInfo}
   */
  _segment(sequence) {
    const seg = this._segments.get(sequence);
    if (seg === undefined) throw new RangeError(`segment ${sequence} is not in the timeline`);
    return seg;
  }
}

/**
 * Rendezvous-hash weight of (peer, segment): FNV-1a 32-bit over the UTF-8 bytes of
 * `"<peerId>/<sequence>"`, then the murmur3 finaliser (which fixes FNV's weak low bits). Equal
 * to Python's `hrw_score` for every input (tests/vectors/scheduler/hrw_score.json); 32-bit
 * products are done with `Math.imul`, so no BigInt is needed.
 *
 * @param {string} peerId
 * @param {number} sequence an integer
 * @returns {number} an unsigned 32-bit integer
 * @throws {TypeError} if `peerId` holds a lone UTF-16 surrogate (not encodable as UTF-8, as in
 *   Python) or `sequence` is not an integer
 */
export function hrwScore(peerId, sequence) {
  if (!Number.isSafeInteger(sequence)) {
    throw new TypeError(`hrwScore: sequence must be an integer, got ${String(sequence)}`);
  }
  const text = `${peerId}/${sequence}`;
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    let cp = text.charCodeAt(i);
    if (cp >= 0xd800 && cp <= 0xdfff) {
      const next = text.charCodeAt(i + 1);
      if (cp > 0xdbff || !(next >= 0xdc00 && next <= 0xdfff)) {
        throw new TypeError('hrwScore: peer id is not valid Unicode (lone surrogate)');
      }
      cp = 0x10000 + ((cp - 0xd800) << 10) + (next - 0xdc00);
      i += 1;
    }
    // UTF-8 encode the code point and hash its bytes.
    if (cp < 0x80) {
      h = fnvStep(h, cp);
    } else if (cp < 0x800) {
      h = fnvStep(fnvStep(h, 0xc0 | (cp >> 6)), 0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      h = fnvStep(h, 0xe0 | (cp >> 12));
      h = fnvStep(fnvStep(h, 0x80 | ((cp >> 6) & 0x3f)), 0x80 | (cp & 0x3f));
    } else {
      h = fnvStep(fnvStep(h, 0xf0 | (cp >> 18)), 0x80 | ((cp >> 12) & 0x3f));
      h = fnvStep(fnvStep(h, 0x80 | ((cp >> 6) & 0x3f)), 0x80 | (cp & 0x3f));
    }
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function fnvStep(h, byte) {
  return Math.imul(h ^ byte, 0x01000193) >>> 0;
}

/**
 * Python's `str` order (by code point), which differs from JS `<` (by UTF-16 unit) for
 * characters above U+FFFF versus U+E000..U+FFFF.
 *
 * @param {string} a
 * @param {string} b
 * @returns {number} negative, 0 or positive
 */
export function compareCodePoints(a, b) {
  if (a === b) return 0;
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done || y.done) return x.done ? (y.done ? 0 : -1) : 1;
    const cx = /** @type {number} */ (x.value.codePointAt(0));
    const cy = /** @type {number} */ (y.value.codePointAt(0));
    if (cx !== cy) return cx - cy;
  }
}

/** Python's order of `((not_seed, eta), pid)` tuples: seeds first, soonest, then by id. */
function compareCandidates(a, b) {
  if (a.notSeed !== b.notSeed) return a.notSeed ? 1 : -1;
  if (a.eta !== b.eta) return a.eta < b.eta ? -1 : 1;
  return compareCodePoints(a.pid, b.pid);
}

/**
 * A timeline entry checked and copied (the caller's object may change later).
 *
 * @param {SegmentInfo} seg
 * @returns {SegmentInfo}
 */
function checkSegment(seg) {
  const { sequence, duration, start } = seg ?? {};
  const size = seg?.size ?? null;
  const ok =
    Number.isSafeInteger(sequence) &&
    typeof duration === 'number' &&
    duration > 0 &&
    duration < Infinity &&
    Number.isFinite(start) &&
    (size === null || (Number.isSafeInteger(size) && size >= 0));
  if (!ok) {
    throw new RangeError(
      `segment ${String(sequence)}: bad sequence, duration, start or size in timeline`,
    );
  }
  return { sequence, duration, size, start };
}

/**
 * @param {SegmentInfo} seg
 * @returns {number}
 */
function segmentEnd(seg) {
  return seg.start + seg.duration;
}

/**
 * @param {Transfer} t
 * @returns {number}
 */
function doneBytes(t) {
  return t.offset + t.meter.received;
}

/**
 * @param {number} transferId
 * @param {string} reason
 * @returns {CancelTransfer}
 */
function cancel(transferId, reason) {
  return { type: 'cancelTransfer', transferId, reason };
}
