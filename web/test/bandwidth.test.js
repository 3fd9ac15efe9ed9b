// core/bandwidth.js: dual-EWMA estimator, per-transfer meter, portable exp2. Mirrors
// tests/test_bandwidth.py; exp2 is checked against an exact oracle (Python's decimal module).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';

import {
  DEFAULT_BANDWIDTH_CONFIG,
  ThroughputEstimator,
  TransferMeter,
  exp2,
  resolveBandwidthConfig,
} from '../src/core/bandwidth.js';
import { fuzzSeed, rng } from './helpers.js';

const CFG = resolveBandwidthConfig();

function make(prior = 100_000, latency = 0.2) {
  return new ThroughputEstimator(prior, latency, CFG);
}

function near(actual, expected, rel = 1e-9) {
  assert.ok(Math.abs(actual - expected) <= rel * Math.abs(expected), `${actual} !~ ${expected}`);
}

describe('ThroughputEstimator', () => {
  test('the prior holds until the first sample', () => {
    const est = make();
    assert.equal(est.bytesPerSecond, 100_000);
    assert.equal(est.samples, 0);
    near(est.transferTime(50_000), 0.2 + 0.5);
  });

  test('converges to a steady rate', () => {
    const est = make();
    for (let i = 0; i < 40; i++) est.addSample(1_000_000, 1.0); // 1 MB/s for 40 s
    near(est.bytesPerSecond, 1_000_000, 0.01);
  });

  test('drops fast, rises slowly', () => {
    const up = make(1_000_000);
    const down = make(1_000_000);
    up.addSample(4_000_000, 1.0);
    down.addSample(250_000, 1.0);
    const rise = up.bytesPerSecond - 1_000_000;
    const fall = 1_000_000 - down.bytesPerSecond;
    assert.ok(rise / 3_000_000 < fall / 750_000);
  });

  test('one sample moves the averages by the half-life weights', () => {
    const est = make(100_000);
    est.addSample(600_000, 2.0); // 300 kB/s for one fast half-life and a third of the slow one
    const slow = 2 ** (-2 / 6) * 100_000 + (1 - 2 ** (-2 / 6)) * 300_000;
    near(est.bytesPerSecond, Math.min(0.5 * 100_000 + 0.5 * 300_000, slow), 1e-12);
  });

  test('long samples weigh more than short ones', () => {
    const short = make();
    const long = make();
    short.addSample(20_000, 0.02);
    long.addSample(2_000_000, 2.0);
    assert.ok(long.bytesPerSecond > short.bytesPerSecond);
    assert.ok(short.bytesPerSecond > 100_000);
  });

  test('empty samples are ignored and rates clamped', () => {
    const est = make();
    est.addSample(0, 1.0);
    est.addSample(10, 0.0);
    est.addSample(NaN, 1.0);
    assert.equal(est.samples, 0);
    est.addSample(1e15, 0.001);
    assert.ok(est.bytesPerSecond <= CFG.maxBps);
  });

  test('penalise scales down, never below the floor', () => {
    const est = make();
    est.penalise(0.5);
    near(est.bytesPerSecond, 50_000);
    for (let i = 0; i < 100; i++) est.penalise(0.1);
    assert.equal(est.bytesPerSecond, CFG.minBps);
  });

  test('latency is a weighted average', () => {
    const est = make(100_000, 0.2);
    est.addLatency(1.2);
    near(est.latency, 0.2 + CFG.latencyWeight * 1.0);
    est.addLatency(-1);
    near(est.latency, 0.2 + CFG.latencyWeight * 1.0);
  });
});

describe('TransferMeter', () => {
  test('the first event gives the latency, later ones the rate', () => {
    const est = make();
    const meter = new TransferMeter(10.0, est, 0.05);
    meter.progress(10.1, 10_000); // first byte after 100 ms
    assert.equal(meter.firstByteAt, 10.1);
    near(est.latency, 0.2 * 0.7 + 0.1 * 0.3, 1e-12);
    for (let i = 1; i <= 10; i++) meter.progress(10.1 + i * 0.1, 10_000 + i * 50_000);
    near(meter.rate(11.1), 500_000, 0.01);
    assert.equal(est.samples, 10);
    assert.ok(est.bytesPerSecond > 100_000);
  });

  test('a transfer that arrives in one read is timed from the request', () => {
    const est = make();
    const meter = new TransferMeter(0.0, est, 0.05);
    meter.progress(0.2, 200_000);
    meter.finish(0.2);
    assert.equal(est.samples, 1);
    assert.ok(est.bytesPerSecond < 1_000_000); // 200 kB over 0.2 s, not infinity
  });

  test('progress that does not grow is ignored', () => {
    const meter = new TransferMeter(0.0, make(), 0.05);
    meter.progress(0.1, 1000);
    meter.progress(0.2, 500);
    assert.equal(meter.received, 1000);
    assert.equal(meter.lastProgressAt, 0.1);
  });

  test('the rate falls when a transfer stalls', () => {
    const meter = new TransferMeter(0.0, make(), 0.05);
    meter.progress(0.1, 1000);
    meter.progress(0.5, 201_000);
    const before = meter.rate(0.5);
    assert.ok(meter.rate(5.0) < before / 5);
  });

  test('events closer than the minimum sample are merged', () => {
    const est = make();
    const meter = new TransferMeter(0.0, est, 0.05);
    meter.progress(0.1, 1000);
    meter.progress(0.11, 2000);
    meter.progress(0.12, 3000);
    assert.equal(est.samples, 0);
    meter.progress(0.16, 4000);
    assert.equal(est.samples, 1);
  });
});

describe('resolveBandwidthConfig', () => {
  test('defaults are the Python defaults', () => {
    assert.deepEqual(resolveBandwidthConfig(), { ...DEFAULT_BANDWIDTH_CONFIG });
    assert.equal(DEFAULT_BANDWIDTH_CONFIG.httpPriorBps, 500_000);
    assert.equal(DEFAULT_BANDWIDTH_CONFIG.peerPriorLatency, 0.15);
  });

  for (const options of [
    { httpPriorBps: 0 },
    { latencyWeight: 0 },
    { minBps: 10, maxBps: 1 },
    { fastHalfLife: -1 },
  ]) {
    test(`rejects ${JSON.stringify(options)}`, () => {
      assert.throws(() => resolveBandwidthConfig(options), RangeError);
    });
  }

  test('rejects unknown options and wrong types, naming them', () => {
    assert.throws(() => resolveBandwidthConfig({ httpPriorBPS: 1 }), /unknown option "httpPri/);
    assert.throws(() => resolveBandwidthConfig({ minBps: '5' }), /minBps must be a number/);
    assert.throws(() => resolveBandwidthConfig(null), TypeError);
  });
});

describe('exp2', () => {
  test('exact and special values', () => {
    assert.equal(exp2(0), 1);
    assert.equal(exp2(-1), 0.5);
    assert.equal(exp2(10), 1024);
    assert.equal(exp2(-1021), 2 ** -1021);
    assert.equal(exp2(0.5), Math.SQRT2); // the correctly rounded square root of 2
    assert.equal(exp2(-0.5), Math.SQRT1_2);
    assert.equal(exp2(1023.5), 2 * exp2(1022.5));
    assert.equal(exp2(-1022), 0); // subnormal results flush to zero
    assert.equal(exp2(1024), Infinity);
    assert.ok(Number.isNaN(exp2(NaN)));
  });

  test('monotonic over a fine grid (no rounding wobble)', () => {
    let previous = exp2(-6);
    for (let i = 1; i <= 100_000; i++) {
      const value = exp2(-6 + i * 6e-5);
      assert.ok(value >= previous, `exp2 not monotonic at ${-6 + i * 6e-5}`);
      previous = value;
    }
  });
});

const PYTHON = fileURLToPath(new URL('../../.venv/bin/python', import.meta.url));
const noPython = existsSync(PYTHON) ? false : 'no .venv (Python is the exact oracle)';

// For each x: 2**x rounded once to the nearest double (decimal at 60 digits, then float(),
// which CPython rounds correctly), and what CPython's own 0.5 ** -x gives.
const ORACLE = String.raw`
import json, sys
from decimal import Decimal, getcontext
getcontext().prec = 60
xs = json.load(sys.stdin)
json.dump([[float(Decimal(2) ** Decimal(x)), 0.5 ** -x] for x in xs], sys.stdout)
`;

describe('exp2 against an exact oracle', { skip: noPython }, () => {
  test('correctly rounded, and equal to CPython but where glibc misrounds', () => {
    const seed = fuzzSeed();
    const random = rng(seed);
    // The EWMA weights: -(seconds / half-life) for samples from 1 ms to minutes.
    const xs = Array.from({ length: 20_000 }, (_, i) =>
      i % 2 ? -random() * 5 : -(10 ** (random() * 6 - 4)) / 2,
    );
    const result = spawnSync(PYTHON, ['-c', ORACLE], {
      input: JSON.stringify(xs),
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    assert.equal(result.status, 0, result.stderr);
    let glibc = 0;
    JSON.parse(result.stdout).forEach(([exact, python], i) => {
      assert.equal(exp2(xs[i]), exact, `seed ${seed}: exp2(${xs[i]})`);
      if (python !== exact) glibc += 1;
    });
    // Documented in core/bandwidth.js: ~0.07 % of inputs. Far more would mean the Python side
    // changed how it computes the weight, and the twins would drift apart.
    assert.ok(glibc <= xs.length * 0.005, `seed ${seed}: CPython differs on ${glibc} inputs`);
  });
});
