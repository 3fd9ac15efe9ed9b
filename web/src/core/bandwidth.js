/**
 * Throughput and latency estimation for one source (a peer, or the HTTP origin). Twin of
 * `peer/bandwidth.py`: same priors, same arithmetic in the same order, so the download
 * scheduler that reads these estimates decides exactly as the Python one does.
 *
 * Sans-IO: callers pass byte counts and times in seconds; nothing here reads a clock.
 *
 * The estimator follows the dual-EWMA design of Shaka Player: a fast and a slow exponentially
 * weighted moving average, each weighted by how long a sample lasted, and the *lower* of the
 * two is reported (drops show at once, rises slowly: the safe side for deadline decisions).
 * {@link TransferMeter} groups the progress events of one transfer into samples of at least
 * `minSampleSeconds`, so chunks read from a socket buffer in one go do not produce absurd rates.
 *
 * Portability: the EWMA weight is `0.5 ** (seconds / halfLife)`. V8's `Math.pow` differs from
 * CPython's (glibc) in the last bit for several percent of such inputs, so it is computed by
 * {@link exp2}: correctly rounded, from IEEE + - * / only, identical on every engine. glibc is
 * itself off by one bit on ~0.07 % of inputs (measured), so the two twins agree on every
 * scheduling decision but not always on the last bit of an estimate until Python computes the
 * weight with the same function (a port is proposed in the JS twin's report).
 *
 * @module core/bandwidth
 */

/**
 * Priors and smoothing of the throughput estimators. Rates are in bytes per second.
 *
 * @typedef {object} BandwidthConfig
 * @property {number} httpPriorBps HTTP throughput assumed before the first sample (500 kB/s,
 *   4 Mbit/s). Deliberately modest: it only decides how early a segment falls back to the
 *   origin before anything was measured.
 * @property {number} httpPriorLatency HTTP time to first byte assumed before the first sample,
 *   seconds (0.25).
 * @property {number} peerPriorBps Peer throughput assumed before the first sample (400 kB/s):
 *   below HTTP on purpose, so an unmeasured peer is tried only when there is time to spare.
 * @property {number} peerPriorLatency Peer time to first byte assumed before a sample (0.15 s).
 * @property {number} fastHalfLife Half-life of the fast average, seconds of transfer time (2).
 * @property {number} slowHalfLife Half-life of the slow average, seconds of transfer time (6).
 * @property {number} latencyWeight Weight of a new time-to-first-byte sample in the latency
 *   average, in (0, 1] (0.3).
 * @property {number} minSampleSeconds Progress events are merged into samples at least this
 *   long (0.05 s).
 * @property {number} minBps Floor of every estimate, so that time = bytes / rate stays finite
 *   (1000).
 * @property {number} maxBps Ceiling of every estimate; loopback transfers can look infinitely
 *   fast (1e10).
 */

/** @type {Readonly<BandwidthConfig>} */
export const DEFAULT_BANDWIDTH_CONFIG = Object.freeze({
  httpPriorBps: 500_000,
  httpPriorLatency: 0.25,
  peerPriorBps: 400_000,
  peerPriorLatency: 0.15,
  fastHalfLife: 2.0,
  slowHalfLife: 6.0,
  latencyWeight: 0.3,
  minSampleSeconds: 0.05,
  minBps: 1_000,
  maxBps: 1e10,
});

/**
 * `options` completed with the defaults and checked. Unknown keys (typos) and values out of
 * range throw, naming the field.
 *
 * @param {Partial<BandwidthConfig>} [options]
 * @returns {Readonly<BandwidthConfig>}
 * @throws {TypeError|RangeError}
 */
export function resolveBandwidthConfig(options = {}) {
  const config = resolveOptions('BandwidthConfig', DEFAULT_BANDWIDTH_CONFIG, options);
  for (const name of ['httpPriorBps', 'peerPriorBps', 'fastHalfLife', 'slowHalfLife']) {
    if (!(config[name] > 0)) {
      throw new RangeError(`BandwidthConfig.${name} must be > 0, got ${config[name]}`);
    }
  }
  if (!(config.latencyWeight > 0 && config.latencyWeight <= 1)) {
    throw new RangeError(
      `BandwidthConfig.latencyWeight must be in (0, 1], got ${config.latencyWeight}`,
    );
  }
  if (!(config.minBps > 0 && config.minBps <= config.maxBps)) {
    throw new RangeError('BandwidthConfig needs 0 < minBps <= maxBps');
  }
  return Object.freeze(config);
}

/**
 * `defaults` overridden by `options`, every value a finite number (or of the default's type).
 * Shared by the config resolvers of the core modules. Internal.
 *
 * @template {object} T
 * @param {string} what name of the config, for messages
 * @param {Readonly<T>} defaults
 * @param {Partial<T>} options
 * @returns {T}
 */
export function resolveOptions(what, defaults, options) {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`${what} options must be an object`);
  }
  // Object.prototype.hasOwnProperty rather than Object.hasOwn: the bundle targets Chrome 90.
  for (const [name, value] of Object.entries(options)) {
    if (!Object.prototype.hasOwnProperty.call(defaults, name)) {
      throw new TypeError(`${what}: unknown option ${JSON.stringify(name)}`);
    }
    const expected = defaults[name] === null ? 'number' : typeof defaults[name];
    const nullable = defaults[name] === null && value === null;
    const ok =
      expected === 'number'
        ? (typeof value === 'number' && !Number.isNaN(value)) || nullable
        : typeof value === expected;
    if (expected !== 'object' && !ok) {
      throw new TypeError(`${what}.${name} must be a ${expected}, got ${String(value)}`);
    }
  }
  return { ...defaults, ...options };
}

/** Smoothed throughput (bytes/s) and time to first byte (s) of one source. */
export class ThroughputEstimator {
  /**
   * @param {number} priorBps throughput assumed until the first sample
   * @param {number} priorLatency time to first byte assumed until the first sample, seconds
   * @param {Readonly<BandwidthConfig>} config a resolved config ({@link resolveBandwidthConfig})
   */
  constructor(priorBps, priorLatency, config) {
    this._config = config;
    this._fast = priorBps;
    this._slow = priorBps;
    this._latency = priorLatency;
    /** Number of throughput samples taken so far (0 = still on the prior). */
    this.samples = 0;
  }

  /** @returns {number} the conservative estimate: the lower of the fast and slow averages */
  get bytesPerSecond() {
    return Math.min(this._fast, this._slow);
  }

  /** @returns {number} smoothed time to first byte, seconds */
  get latency() {
    return this._latency;
  }

  /**
   * Seconds expected to fetch `nbytes` from scratch (latency + bytes / rate).
   *
   * @param {number} nbytes
   * @returns {number}
   */
  transferTime(nbytes) {
    return this._latency + nbytes / this.bytesPerSecond;
  }

  /**
   * Feed `nbytes` received in `seconds` of transfer time (ignored unless both are > 0).
   *
   * @param {number} nbytes
   * @param {number} seconds
   */
  addSample(nbytes, seconds) {
    if (!(nbytes > 0) || !(seconds > 0)) return;
    const cfg = this._config;
    const rate = Math.min(Math.max(nbytes / seconds, cfg.minBps), cfg.maxBps);
    this._fast = ewma(this._fast, rate, seconds, cfg.fastHalfLife);
    this._slow = ewma(this._slow, rate, seconds, cfg.slowHalfLife);
    this.samples += 1;
  }

  /**
   * Feed one time-to-first-byte measurement, seconds (negative values are ignored).
   *
   * @param {number} seconds
   */
  addLatency(seconds) {
    if (!(seconds >= 0)) return;
    const w = this._config.latencyWeight;
    this._latency = (1 - w) * this._latency + w * seconds;
  }

  /**
   * Scale the estimate down after a timeout (`factor` in (0, 1]), never below `minBps`.
   *
   * @param {number} factor
   */
  penalise(factor) {
    const floor = this._config.minBps;
    this._fast = Math.max(this._fast * factor, floor);
    this._slow = Math.max(this._slow * factor, floor);
  }
}

function ewma(estimate, value, weight, halfLife) {
  const alpha = exp2(-(weight / halfLife)); // 0.5 ** (weight / halfLife), portably
  return alpha * estimate + (1 - alpha) * value;
}

/**
 * Measures one transfer and feeds its source's {@link ThroughputEstimator}.
 *
 * `started` is when the request was sent; the first progress event gives the latency sample,
 * later ones throughput samples of at least `minSample` seconds. The bytes of the first event
 * travelled during the latency period, so they are left out of the rate (counting them over a
 * zero-length interval would inflate it, the unsafe direction).
 */
export class TransferMeter {
  /**
   * @param {number} now when the request was issued, seconds
   * @param {ThroughputEstimator} estimator the source's estimator, fed by this meter
   * @param {number} minSample shortest throughput sample, seconds
   */
  constructor(now, estimator, minSample) {
    this._estimator = estimator;
    this._minSample = minSample;
    /** When the request was issued. */
    this.started = now;
    /** @type {number|null} when the first bytes arrived (null until then) */
    this.firstByteAt = null;
    /** When bytes last arrived (or the start time). */
    this.lastProgressAt = now;
    /** Bytes received so far. */
    this.received = 0;
    this._firstChunk = 0;
    this._accBytes = 0;
    this._accSince = now;
    this._sampled = false;
  }

  /**
   * Record that `totalReceived` bytes have arrived in all (ignored unless it grew).
   *
   * @param {number} now
   * @param {number} totalReceived
   */
  progress(now, totalReceived) {
    const delta = totalReceived - this.received;
    if (!(delta > 0)) return;
    this.received = totalReceived;
    this.lastProgressAt = now;
    if (this.firstByteAt === null) {
      this.firstByteAt = now;
      this._firstChunk = delta;
      this._accSince = now;
      this._estimator.addLatency(now - this.started);
      return;
    }
    this._accBytes += delta;
    if (now - this._accSince >= this._minSample) {
      this._estimator.addSample(this._accBytes, now - this._accSince);
      this._sampled = true;
      this._accBytes = 0;
      this._accSince = now;
    }
  }

  /**
   * Flush the last sample when the transfer completes.
   *
   * @param {number} now
   */
  finish(now) {
    if (!this._sampled) {
      // Too short to time chunk by chunk (a whole segment in one or two reads): time it from
      // the request, which undercounts the rate, the safe side.
      const elapsed = Math.max(now - this.started, this._minSample);
      this._estimator.addSample(this.received, elapsed);
    } else if (this._accBytes > 0 && now > this._accSince) {
      this._estimator.addSample(this._accBytes, Math.max(now - this._accSince, this._minSample));
    }
    this._accBytes = 0;
    this._sampled = true;
  }

  /**
   * Throughput of this transfer so far, or the source estimate if too little was seen.
   *
   * @param {number} now
   * @returns {number} bytes per second
   */
  rate(now) {
    if (this.firstByteAt !== null) {
      const elapsed = now - this.firstByteAt;
      if (elapsed >= 4 * this._minSample) {
        return Math.max((this.received - this._firstChunk) / elapsed, 1.0);
      }
    }
    return this._estimator.bytesPerSecond;
  }
}

// ------------------------------------------------------------------------------ exp2

// Double-double arithmetic (a value is hi + lo with |lo| <= ulp(hi)/2): ~104 bits of precision
// from IEEE operations alone, which JS specifies exactly (no FMA contraction, no x87), so the
// result is the same on every engine and CPU.
const SPLITTER = 134217729; // 2^27 + 1 (Veltkamp split)

/** ln 2 as a double-double (hi is Math.LN2). */
const LN2_HI = 0.6931471805599453;
const LN2_LO = 2.3190468138462996e-17;

/** 1/n! for n = 0..TERMS as double-doubles: exp(t) by Taylor to < 2^-110 for |t| <= ln2/2. */
const TERMS = 23;
const INV_FACT_HI = new Float64Array(TERMS + 1);
const INV_FACT_LO = new Float64Array(TERMS + 1);
INV_FACT_HI[0] = 1;
for (let n = 1; n <= TERMS; n++) {
  // (hi, lo) / n in double-double.
  const hi = INV_FACT_HI[n - 1];
  const q = hi / n;
  const [p, e] = twoProd(q, n);
  const r = (hi - p - e + INV_FACT_LO[n - 1]) / n;
  INV_FACT_HI[n] = q + r;
  INV_FACT_LO[n] = r - (INV_FACT_HI[n] - q);
}

function twoProd(a, b) {
  const p = a * b;
  let c = SPLITTER * a;
  const ah = c - (c - a);
  const al = a - ah;
  c = SPLITTER * b;
  const bh = c - (c - b);
  const bl = b - bh;
  return [p, ah * bh - p + ah * bl + al * bh + al * bl];
}

/**
 * 2 ** x, correctly rounded to the nearest double (round half up at the integer split, like
 * `Math.round`), from IEEE + - * / only. Results below 2^-1022 (subnormal) flush to 0; 2^1024
 * and beyond are Infinity; NaN gives NaN.
 *
 * Exists because the scheduler's decisions must match the Python twin bit for bit and
 * `Math.pow` is not correctly rounded in V8. The same algorithm, written with the same IEEE
 * operations in Python, gives the same bits on every machine (glibc's `pow` misrounds
 * about 0.07 % of these inputs, see web/test/bandwidth.test.js).
 *
 * @param {number} x
 * @returns {number}
 */
export function exp2(x) {
  if (Number.isNaN(x)) return NaN;
  if (x <= -1022) return 0;
  if (x >= 1024) return Infinity;
  if (x >= 1023) return 2 * exp2(x - 1); // x - 1 is exact here; keeps 2^n finite below
  let n = Math.floor(x);
  if (x - n >= 0.5) n += 1; // x - floor(x) is exact
  const f = x - n; // exact, |f| <= 0.5
  if (f === 0) return Math.pow(2, n); // a power of two: exact
  // t = f * ln2 in double-double, |t| <= 0.347.
  let [th, tl] = twoProd(f, LN2_HI);
  tl += f * LN2_LO;
  const s = th + tl;
  tl -= s - th;
  th = s;
  // Horner: r = r * t + 1/i!, all in double-double.
  let rh = INV_FACT_HI[TERMS];
  let rl = INV_FACT_LO[TERMS];
  for (let i = TERMS - 1; i >= 0; i--) {
    const [p, e] = twoProd(rh, th);
    const mh = p + (e + (rh * tl + rl * th));
    const ml = e + (rh * tl + rl * th) - (mh - p);
    const sum = mh + INV_FACT_HI[i];
    const bb = sum - mh;
    const err = mh - (sum - bb) + (INV_FACT_HI[i] - bb) + ml + INV_FACT_LO[i];
    rh = sum + err;
    rl = err - (rh - sum);
  }
  // rh + rl rounds the ~104-bit value once, to nearest; scaling by 2^n is exact (normal range).
  return (rh + rl) * Math.pow(2, n);
}
