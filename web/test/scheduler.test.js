// core/scheduler.js with an injected clock: the key cases of tests/test_scheduler.py (the
// shared scenario vectors and the Python side-by-side run are in scheduler-vectors.test.js).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  DEFAULT_SCHEDULER_CONFIG,
  FailureReason,
  SegmentScheduler,
  compareCodePoints,
  hrwScore,
  resolveSchedulerConfig,
} from '../src/core/scheduler.js';

const SIZE = 100_000;
const DUR = 2.0;
// Default priors: HTTP 500 kB/s and 0.25 s latency, x1.5, + 1 s: a 100 kB segment needs
// (0.25 + 0.2) * 1.5 + 1 = 1.675 s of notice before its deadline to be safe over HTTP.
const HTTP_NEED = 1.675;

function timeline(first = 0, count = 6, size = SIZE) {
  return Array.from({ length: count }, (_, i) => ({
    sequence: first + i,
    duration: DUR,
    size,
    start: (first + i) * DUR,
  }));
}

function make({ peerId = 'me', peers = [], seeds = [], count = 6, ...config } = {}) {
  const s = new SegmentScheduler({ prefetchSeconds: 6.0, ...config }, { peerId });
  s.setTimeline(timeline(0, count));
  for (const p of peers) s.addPeer(p);
  for (const p of seeds) s.addPeer(p, { isSeed: true });
  return s;
}

function playingAt(s, now, position, buffered) {
  s.setPlayback(now, position, buffered, 1.0, true);
  for (let seq = Math.floor(position / DUR); seq < Math.floor(buffered / DUR); seq++) {
    s.segmentStored(seq);
  }
}

const only = (actions, type, seq = null) =>
  actions.filter((a) => a.type === type && (seq === null || a.sequence === seq));

/** A peer id that ranks below `winner` for `seq` (so `winner` is elected). */
function loserName(seq, winner = 'me') {
  for (let i = 0; ; i++) if (hrwScore(`p${i}`, seq) < hrwScore(winner, seq)) return `p${i}`;
}

function winnerName(seq, loser = 'me') {
  for (let i = 0; ; i++) if (hrwScore(`p${i}`, seq) > hrwScore(loser, seq)) return `p${i}`;
}

function live(s, newest) {
  s.setTimeline(timeline(Math.max(newest - 5, 0), Math.min(newest + 1, 6)), { live: true });
}

describe('deadline rule', () => {
  test('the startup segment comes from the origin at once, later ones wait for peers', () => {
    const s = make({ peers: ['a'], prefetchSeconds: 4.0 });
    s.peerHas('a', [0, 1, 2]);
    s.setPlayback(0.0, 0.0, 0.0, 1.0, false);
    const actions = s.poll(0.0);
    assert.deepEqual(only(actions, 'fetchFromOrigin', 0), [
      { type: 'fetchFromOrigin', transferId: 1, sequence: 0, offset: 0, reason: 'deadline' },
    ]);
    assert.deepEqual(
      only(actions, 'fetchFromPeer', 2).map((a) => a.peerId),
      ['a'],
    );
    assert.deepEqual(only(actions, 'fetchFromPeer', 1), []);
    assert.deepEqual(s.poll(0.2), []);
    s.transferDone(0.3, 1);
    s.setPlayback(0.3, 0.0, 2.0, 1.0, true);
    assert.deepEqual(s.poll(0.3), []);
    assert.ok(Math.abs(s.nextWakeup(0.3) - (2.3 - HTTP_NEED)) < 1e-9);
    assert.equal(only(s.poll(2.3 - HTTP_NEED), 'fetchFromOrigin', 1).length, 1);
  });

  test('a near deadline goes to the origin even if a peer has the segment', () => {
    const s = make({ peers: ['a'] });
    playingAt(s, 0.0, 0.0, 2.0);
    s.peerHas('a', [1]);
    s.setPlayback(0.4, 0.4, 2.0);
    assert.equal(only(s.poll(0.4), 'fetchFromOrigin', 1)[0].reason, 'deadline');
  });

  test('a slow peer transfer switches to the origin with a Range resume', () => {
    const s = make({ peers: ['a'], prefetchSeconds: 4.0 });
    playingAt(s, 0.0, 0.0, 4.0);
    s.peerHas('a', [2]);
    const [fetch] = only(s.poll(0.0), 'fetchFromPeer', 2);
    for (const t of [0.2, 0.6, 1.0, 1.4, 1.8]) {
      s.setPlayback(t, t, 4.0);
      s.transferProgress(t, fetch.transferId, Math.trunc(5_000 + ((t - 0.2) * 25_000) / 1.6));
      assert.deepEqual(s.poll(t), []);
    }
    const received = 30_000;
    const switchAt = 4.0 - ((0.25 + (SIZE - received) / 500_000) * 1.5 + 1.0);
    // Segment 3 (start 6.0) enters the 4 s prefetch window at t=2.0: a wakeup of its own.
    assert.ok(Math.abs(s.nextWakeup(1.8) - 2.0) < 1e-9);
    s.setPlayback(2.0, 2.0, 4.0);
    assert.deepEqual(s.poll(2.0).filter((a) => a.sequence === 2), []);
    assert.ok(Math.abs(s.nextWakeup(2.0) - switchAt) < 1e-3);
    s.setPlayback(switchAt, switchAt, 4.0);
    const actions = s.poll(switchAt).filter((a) => (a.sequence ?? 2) === 2);
    assert.deepEqual(actions, [
      { type: 'cancelTransfer', transferId: fetch.transferId, reason: 'switch' },
      {
        type: 'fetchFromOrigin',
        transferId: actions[1].transferId,
        sequence: 2,
        offset: received,
        reason: 'switch',
      },
    ]);
    assert.equal(s.stats.switches, 1);
  });

  test('a stalled peer is cancelled, penalised, and another tried at once', () => {
    const s = make({ peers: ['a', 'b'], prefetchSeconds: 4.0, preferSeeds: false });
    playingAt(s, 0.0, 0.0, 4.0);
    s.peerHas('a', [2]);
    const [fetch] = only(s.poll(0.0), 'fetchFromPeer', 2);
    s.peerHas('b', [2]);
    s.setPlayback(1.0, 1.0, 4.0);
    const stall = s.config.stallTimeout;
    assert.ok(Math.abs(s.nextWakeup(0.5) - stall) < 1e-9);
    const actions = s.poll(stall);
    assert.deepEqual(actions[0], {
      type: 'cancelTransfer',
      transferId: fetch.transferId,
      reason: 'stalled',
    });
    assert.deepEqual(
      only(actions, 'fetchFromPeer', 2).map((a) => a.peerId),
      ['b'],
    );
  });

  test('origin errors are retried with a doubling backoff', () => {
    const s = make({ originRetryDelay: 0.25 });
    s.setPlayback(0.0, 0.0, 0.0, 1.0, false);
    const [f1] = only(s.poll(0.0), 'fetchFromOrigin', 0);
    s.transferFailed(0.1, f1.transferId, FailureReason.HTTP_ERROR);
    assert.deepEqual(only(s.poll(0.2), 'fetchFromOrigin', 0), []);
    assert.ok(Math.abs(s.nextWakeup(0.2) - 0.35) < 1e-9);
    const [f2] = only(s.poll(0.35), 'fetchFromOrigin', 0);
    s.transferFailed(0.4, f2.transferId, 'http_error');
    assert.deepEqual(only(s.poll(0.8), 'fetchFromOrigin', 0), []); // second wait is 0.5 s
    assert.equal(only(s.poll(0.9), 'fetchFromOrigin', 0).length, 1);
  });

  test('many origin errors do not overflow the backoff', () => {
    const s = make({ originRetryDelay: 0.25, originRetryMaxDelay: 4.0 });
    s.setPlayback(0.0, 0.0, 0.0, 1.0, false);
    let now = 0;
    for (let i = 0; i < 1100; i++) {
      const [fetch] = only(s.poll(now), 'fetchFromOrigin', 0);
      assert.ok(fetch, `retry ${i}`);
      s.transferFailed(now, fetch.transferId, 'http_error');
      assert.deepEqual(s.poll(now), [], `retry ${i}: the backoff is skipped`);
      const next = s.nextWakeup(now);
      assert.ok(next > now && next - now <= 4.0 + 1e-9, `retry ${i}: waits ${next - now}`);
      now = next;
    }
  });
});

describe('peer choice', () => {
  test('seeds first, then the fastest peer', () => {
    let s = make({ peers: ['slow', 'fast'], seeds: ['seed'], prefetchSeconds: 4.0 });
    playingAt(s, 0.0, 0.0, 4.0);
    for (const p of ['slow', 'fast', 'seed']) s.peerHas(p, [2]);
    assert.equal(only(s.poll(0.0), 'fetchFromPeer', 2)[0].peerId, 'seed');

    s = make({ peers: ['slow', 'fast'], prefetchSeconds: 4.0 });
    playingAt(s, 0.0, 0.0, 4.0);
    s.peerHas('slow', [1, 2]);
    s.peerHas('fast', [1, 2]);
    s._peers.get('fast').estimator.addSample(4_000_000, 2.0);
    s._peers.get('slow').estimator.addSample(100_000, 2.0);
    assert.equal(only(s.poll(0.0), 'fetchFromPeer', 2)[0].peerId, 'fast');
  });

  test('load is spread over equal peers, by downloader and by segment', () => {
    const byDownloader = new Set();
    for (let i = 0; i < 20; i++) {
      const s = make({ peerId: `viewer-${i}`, peers: ['a', 'b', 'c'], prefetchSeconds: 4.0 });
      playingAt(s, 0.0, 0.0, 4.0);
      for (const p of ['a', 'b', 'c']) s.peerHas(p, [2]);
      byDownloader.add(only(s.poll(0.0), 'fetchFromPeer', 2)[0].peerId);
    }
    assert.deepEqual([...byDownloader].sort(), ['a', 'b', 'c']);
    const s = make({
      peers: ['a', 'b', 'c'],
      prefetchSeconds: 30.0,
      count: 40,
      maxParallelP2p: 40,
      maxInflightPerPeer: 40,
    });
    playingAt(s, 0.0, 0.0, 2.0);
    const all = Array.from({ length: 39 }, (_, i) => i + 1);
    for (const p of ['a', 'b', 'c']) s.peerHas(p, all);
    const picks = only(s.poll(0.0), 'fetchFromPeer').map((a) => a.peerId);
    assert.ok(picks.length > 10);
    for (const p of ['a', 'b', 'c']) assert.ok(picks.filter((x) => x === p).length >= 3, p);
  });

  test('busy: retried elsewhere, and not before retryAfter', () => {
    const s = make({ peers: ['a', 'b'], prefetchSeconds: 8.0 });
    playingAt(s, 0.0, 0.0, 8.0);
    s.peerHas('a', [4]);
    const [f1] = only(s.poll(0.0), 'fetchFromPeer', 4);
    assert.equal(f1.peerId, 'a');
    s.transferFailed(0.1, f1.transferId, FailureReason.BUSY, 2.0);
    assert.deepEqual(only(s.poll(0.1), 'fetchFromPeer', 4), []);
    // Segment 5 enters the 8 s window at t=2.0; 'a' may be asked again at 2.1, not before.
    assert.ok(Math.abs(s.nextWakeup(0.1) - 2.0) < 1e-9);
    s.setPlayback(2.0, 2.0, 8.0);
    assert.deepEqual(only(s.poll(2.0), 'fetchFromPeer', 4), []);
    assert.ok(Math.abs(s.nextWakeup(2.0) - 2.1) < 1e-9);
    s.peerHas('b', [4]);
    assert.equal(only(s.poll(2.05), 'fetchFromPeer', 4)[0].peerId, 'b');
  });

  test('dont_have forgets the claim', () => {
    const s = make({ peers: ['a', 'b'], prefetchSeconds: 4.0 });
    playingAt(s, 0.0, 0.0, 4.0);
    s.peerHas('a', [2]);
    const [f1] = only(s.poll(0.0), 'fetchFromPeer', 2);
    s.peerHas('b', [2]);
    s.transferFailed(0.1, f1.transferId, 'dont_have');
    assert.equal(only(s.poll(0.1), 'fetchFromPeer', 2)[0].peerId, 'b');
    assert.ok(!s._peers.get('a').has.has(2));
  });

  test('bytes from a peer that fail verification after a resume get it banned', () => {
    const s = make({ peers: ['a'], prefetchSeconds: 4.0 });
    playingAt(s, 0.0, 0.0, 4.0);
    s.peerHas('a', [2]);
    const [f1] = only(s.poll(0.0), 'fetchFromPeer', 2);
    s.transferProgress(0.1, f1.transferId, 1_000);
    s.transferProgress(1.0, f1.transferId, 20_000);
    s.setPlayback(2.4, 2.4, 4.0);
    const fetch = only(s.poll(2.4), 'fetchFromOrigin', 2)[0];
    assert.equal(fetch.offset, 20_000);
    s.transferFailed(2.5, fetch.transferId, FailureReason.BAD_DATA);
    assert.ok(s._peers.get('a').blockedUntil > 500);
    s.setPlayback(2.8, 2.8, 4.0);
    const retry = only(s.poll(2.8), 'fetchFromOrigin', 2);
    assert.equal(retry[0].offset, 0); // the suspect bytes are thrown away
  });

  test('a peer leaving mid-transfer: its transfers are returned, the segment rescheduled', () => {
    const s = make({ peers: ['a'], prefetchSeconds: 4.0 });
    playingAt(s, 0.0, 0.0, 4.0);
    s.peerHas('a', [2]);
    const [f1] = only(s.poll(0.0), 'fetchFromPeer', 2);
    assert.deepEqual(s.transfers(), new Map([[f1.transferId, { sequence: 2, peerId: 'a' }]]));
    assert.deepEqual(s.removePeer('a'), [f1.transferId]);
    assert.equal(s.transfers().size, 0);
    s.setPlayback(2.5, 2.5, 4.0);
    assert.equal(only(s.poll(2.5), 'fetchFromOrigin', 2).length, 1);
  });
});

describe('election', () => {
  test('the winner bootstraps at once', () => {
    const s = make({ peers: [loserName(6)], prefetchSeconds: 30.0 });
    playingAt(s, 0.0, 8.0, 12.0);
    live(s, 6);
    assert.equal(s.electionRank(6), 0);
    assert.deepEqual(only(s.poll(0.0), 'fetchFromOrigin', 6), [
      { type: 'fetchFromOrigin', transferId: 1, sequence: 6, offset: 0, reason: 'bootstrap' },
    ]);
    assert.equal(s.stats.bootstraps, 1);
  });

  test('a loser steps in after the backoff when the winner is silent', () => {
    const s = make({ peers: [winnerName(6)], prefetchSeconds: 30.0 });
    playingAt(s, 0.0, 8.0, 12.0);
    live(s, 6);
    assert.equal(s.electionRank(6), 1);
    assert.deepEqual(s.poll(0.0), []);
    const backoff = s.config.electionBackoff;
    assert.ok(Math.abs(s.nextWakeup(0.0) - backoff) < 1e-9);
    s.setPlayback(backoff, 8.0 + backoff, 12.0);
    assert.equal(only(s.poll(backoff), 'fetchFromOrigin', 6)[0].reason, 'bootstrap');
  });

  test('banned peers claims do not hold the election back', () => {
    const other = loserName(6);
    const s = make({ peers: [other], prefetchSeconds: 30.0, maxParallelHttp: 3 });
    live(s, 6);
    playingAt(s, 0.0, 4.0, 8.0);
    s.peerHas(other, [4, 6]);
    let actions = s.poll(0.0);
    assert.deepEqual(only(actions, 'fetchFromOrigin', 6), []);
    const [fetch] = only(actions, 'fetchFromPeer', 4);
    const [fromOther] = only(actions, 'fetchFromPeer', 6);
    s.transferFailed(0.2, fetch.transferId, FailureReason.BAD_DATA);
    s.peerHas(other, [4, 6]);
    actions = s.poll(0.2);
    assert.deepEqual(only(actions, 'cancelTransfer'), [
      { type: 'cancelTransfer', transferId: fromOther.transferId, reason: 'banned' },
    ]);
    assert.equal(only(actions, 'fetchFromOrigin', 6)[0].reason, 'bootstrap');
  });

  test('electionCopies k makes exactly k winners in a full view', () => {
    const names = Array.from({ length: 10 }, (_, i) => `v${i}`);
    for (const k of [1, 3]) {
      let winners = 0;
      for (const me of names) {
        const s = new SegmentScheduler({ electionCopies: k }, { peerId: me });
        for (const p of names) s.addPeer(p);
        if (s.electionRank(42) < k) winners += 1;
      }
      assert.equal(winners, k);
    }
  });
});

describe('hrwScore and ordering', () => {
  test('unsigned 32-bit, and multi-byte UTF-8 hashed like Python', () => {
    for (let i = 0; i < 1000; i++) {
      const h = hrwScore(`peer-${i}`, i * 7919);
      assert.ok(Number.isInteger(h) && h >= 0 && h <= 0xffffffff);
    }
    // The same code points written as a surrogate pair or not give different scores than
    // their UTF-16 units would; equal strings give equal scores.
    assert.equal(hrwScore('\u{1F600}', 1), hrwScore('😀', 1));
    assert.notEqual(hrwScore('\u{1F600}', 1), hrwScore('\u00F0\u009F\u0098\u0080', 1));
  });

  test('a lone surrogate or a non-integer sequence is refused', () => {
    assert.throws(() => hrwScore('bad\uD800', 1), /lone surrogate/);
    assert.throws(() => hrwScore('bad\uDC00x', 1), /lone surrogate/);
    assert.throws(() => hrwScore('a', 1.5), /integer/);
  });

  test('compareCodePoints orders like Python str', () => {
    assert.ok(compareCodePoints('a', 'b') < 0);
    assert.ok(compareCodePoints('ab', 'a') > 0);
    assert.equal(compareCodePoints('x', 'x'), 0);
    // U+FFFF < U+10000 by code point, although its UTF-16 unit is larger than 0xD800.
    assert.ok(compareCodePoints('\uFFFF', '\u{10000}') < 0);
    assert.ok('\uFFFF' > '\u{10000}');
  });
});

describe('inputs', () => {
  test('liveEdge and liveStartPosition', () => {
    const s = make({ liveDelaySegments: 3 });
    assert.equal(s.isLive, false);
    live(s, 20);
    assert.equal(s.isLive, true);
    assert.equal(s.liveEdge, 42.0);
    assert.equal(s.liveStartPosition(), 36.0);
    s.setTimeline([]);
    assert.equal(s.liveEdge, null);
    assert.equal(s.liveStartPosition(), null);
  });

  test('a seek cancels what is no longer needed', () => {
    const s = make({ peers: ['a'], prefetchSeconds: 4.0 });
    playingAt(s, 0.0, 0.0, 4.0);
    s.peerHas('a', [2]);
    const [f1] = only(s.poll(0.0), 'fetchFromPeer', 2);
    s.setPlayback(0.5, 8.0, 8.0);
    assert.deepEqual(only(s.poll(0.5), 'cancelTransfer'), [
      { type: 'cancelTransfer', transferId: f1.transferId, reason: 'not_needed' },
    ]);
  });

  test('unknown sizes are estimated, then learned', () => {
    const s = make();
    s.setTimeline(timeline(0, 6, null));
    assert.equal(s.segmentSize(1), Math.trunc(DUR * s.config.assumedBitrateBps));
    s.setPlayback(0.0, 0.0, 0.0, 1.0, false);
    const [f] = only(s.poll(0.0), 'fetchFromOrigin', 0);
    s.transferProgress(0.1, f.transferId, 10, 123_456);
    assert.equal(s.segmentSize(0), 123_456);
  });

  test('a sliding window forgets old claims', () => {
    const s = make({ peers: ['a'] });
    s.peerHas('a', [0, 1, 2, 3, 4, 5]);
    s.setTimeline(timeline(10), { live: true });
    assert.equal(s._peers.get('a').has.size, 0);
  });

  test('bad inputs are refused clearly', () => {
    const s = make();
    assert.throws(() => s.setPlayback(0.0, -1.0, 0.0), /playback/);
    assert.throws(() => s.setPlayback(0.0, NaN, 0.0), /playback/);
    assert.throws(() => s.setPlayback(0.0, 0.0, 0.0, 0), /playback/);
    assert.throws(() => s.setPlayback('0', 0.0, 0.0), /playback/);
    const seg = { sequence: 0, duration: 2, size: 10, start: 0 };
    assert.throws(() => s.setTimeline([{ ...seg, duration: NaN }]), /timeline/);
    assert.throws(() => s.setTimeline([{ ...seg, duration: 0 }]), /timeline/);
    assert.throws(() => s.setTimeline([{ ...seg, size: -1 }]), /timeline/);
    assert.throws(() => s.setTimeline([{ ...seg, sequence: '0' }]), /timeline/);
    assert.throws(() => s.setTimeline([null]), /timeline/);
    assert.throws(() => s.transferFailed(0.0, 1, 'nonsense'), /unknown failure reason/);
    assert.throws(() => s.deadline(99, 0.0), /not in the timeline/);
    assert.throws(() => new SegmentScheduler({}, { peerId: '' }), /peerId/);
    assert.throws(() => new SegmentScheduler(), /peerId/);
    // Events about unknown peers or transfers are ignored (they race with leaves).
    s.peerHas('ghost', [1]);
    s.transferProgress(0.0, 999, 10);
    s.transferDone(0.0, 999);
    s.transferFailed(0.0, 999, 'busy');
    s.peerFetchAborted('ghost', 1);
  });

  test('config: defaults mirror Python, nonsense is refused by name', () => {
    const config = resolveSchedulerConfig({ bandwidth: { peerPriorBps: 1e6 } });
    assert.equal(config.bandwidth.peerPriorBps, 1e6);
    assert.equal(config.bandwidth.httpPriorBps, 500_000);
    assert.equal(DEFAULT_SCHEDULER_CONFIG.liveDelaySegments, 3);
    assert.equal(DEFAULT_SCHEDULER_CONFIG.assumedBitrateBps, 750_000);
    assert.throws(() => resolveSchedulerConfig({ maxParallelP2p: 0 }), /maxParallelP2p/);
    assert.throws(() => resolveSchedulerConfig({ maxParallelP2p: 1.5 }), /maxParallelP2p/);
    assert.throws(() => resolveSchedulerConfig({ httpSafetyFactor: 0.5 }), /safety/);
    assert.throws(() => resolveSchedulerConfig({ seedGrace: -1 }), /seedGrace/);
    assert.throws(() => resolveSchedulerConfig({ prefetch_seconds: 4 }), /unknown option/);
    assert.throws(() => resolveSchedulerConfig({ bandwidth: { nope: 1 } }), /unknown option/);
    assert.throws(() => resolveSchedulerConfig({ preferSeeds: 1 }), /boolean/);
  });
});
