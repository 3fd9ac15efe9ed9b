// The shared scenario vectors (tests/vectors/scheduler/*.json, written from the Python
// scheduler): every step is replayed on the JS SegmentScheduler, which must return the same
// actions and the same next wakeup. Also hrw_score.json, bit for bit.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';

import { SegmentScheduler, hrwScore } from '../src/core/scheduler.js';
import { fuzzSeed } from './helpers.js';

const DIR = fileURLToPath(new URL('../../tests/vectors/scheduler/', import.meta.url));
const FILES = readdirSync(DIR)
  .filter((name) => name.endsWith('.json'))
  .sort();
const SCENARIOS = FILES.filter((name) => name !== 'hrw_score.json');

function load(name) {
  return JSON.parse(readFileSync(DIR + name, 'utf8'));
}

/** `snake_case` -> `camelCase` (the documented mapping of every name). */
function camel(name) {
  return name.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());
}

/** `camelCase` -> `snake_case`. */
function snake(name) {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** A vector's config overrides (snake_case, `bandwidth` nested) as JS config options. */
function configFromJSON(config) {
  return Object.fromEntries(
    Object.entries(config).map(([key, value]) => [
      camel(key),
      key === 'bandwidth' ? configFromJSON(value) : value,
    ]),
  );
}

/** A JS action in the vectors' shape: `{type: ClassName, ...snake_case fields}`. */
function actionToJSON(action) {
  const { type, ...fields } = action;
  const out = { type: type[0].toUpperCase() + type.slice(1) };
  for (const [key, value] of Object.entries(fields)) out[snake(key)] = value;
  return out;
}

// Each Python method with its parameters: [name, default] (no default: required).
const CALLS = {
  set_timeline: [[['segments'], ['live', false]], (s, a) => s.setTimeline(a[0], { live: a[1] })],
  set_playback: [
    [['now'], ['position'], ['buffered_until'], ['rate', 1.0], ['playing', true]],
    (s, a) => s.setPlayback(...a),
  ],
  add_peer: [[['peer_id'], ['is_seed', false]], (s, a) => s.addPeer(a[0], { isSeed: a[1] })],
  remove_peer: [[['peer_id']], (s, a) => s.removePeer(...a)],
  peer_has: [[['peer_id'], ['sequences']], (s, a) => s.peerHas(...a)],
  peer_lost: [[['peer_id'], ['sequences']], (s, a) => s.peerLost(...a)],
  peer_fetching: [[['peer_id'], ['sequence']], (s, a) => s.peerFetching(...a)],
  peer_fetch_aborted: [[['peer_id'], ['sequence']], (s, a) => s.peerFetchAborted(...a)],
  segment_stored: [[['sequence']], (s, a) => s.segmentStored(...a)],
  segment_evicted: [[['sequence']], (s, a) => s.segmentEvicted(...a)],
  transfer_progress: [
    [['now'], ['transfer_id'], ['bytes_received'], ['total_size', null]],
    (s, a) => s.transferProgress(...a),
  ],
  transfer_done: [[['now'], ['transfer_id']], (s, a) => s.transferDone(...a)],
  transfer_failed: [
    [['now'], ['transfer_id'], ['reason'], ['retry_after', null]],
    (s, a) => s.transferFailed(...a),
  ],
};

/** Run one non-poll step (a Python call with keyword arguments) on the JS scheduler. */
function applyStep(sched, step) {
  const spec = CALLS[step.call];
  assert.ok(spec, `the replay does not know the call ${step.call}: add it to CALLS`);
  const [params, run] = spec;
  const args = step.args ?? {};
  const known = new Set(params.map(([name]) => name));
  for (const name of Object.keys(args)) {
    assert.ok(known.has(name), `${step.call}: argument ${name} is not mapped`);
  }
  const values = params.map(([name, ...fallback]) => {
    if (name in args) return args[name];
    assert.equal(fallback.length, 1, `${step.call}: required argument ${name} missing`);
    return fallback[0];
  });
  return run(sched, values);
}

/** Replay a whole vector; returns the number of polls checked. */
function replay(vector) {
  const sched = new SegmentScheduler(configFromJSON(vector.config), { peerId: vector.peer_id });
  let polls = 0;
  vector.steps.forEach((step, i) => {
    if (step.call !== 'poll') {
      applyStep(sched, step);
      return;
    }
    const { now } = step.args;
    const where = `${vector.name} step ${i} (poll at ${now})`;
    assert.deepEqual(sched.poll(now).map(actionToJSON), step.expect, where);
    const wake = sched.nextWakeup(now);
    if (step.next_wakeup === null) {
      assert.equal(wake, null, where);
    } else {
      assert.equal(typeof wake, 'number', where);
      assert.ok(Math.abs(wake - step.next_wakeup) <= 1e-9, `${where}: wakeup ${wake}`);
    }
    polls += 1;
  });
  return polls;
}

describe('scheduler scenario vectors', () => {
  test('the folder holds the vectors this test expects to replay', () => {
    // A vector that fails to load or an empty folder must not pass silently.
    assert.ok(SCENARIOS.length >= 7, `only ${SCENARIOS.length} scenarios in ${DIR}`);
    assert.ok(FILES.includes('hrw_score.json'));
  });

  for (const name of SCENARIOS) {
    test(name, () => {
      const vector = load(name);
      assert.ok(replay(vector) > 0, 'a vector without polls checks nothing');
    });
  }

  test('hrw_score.json, bit for bit', () => {
    const { cases } = load('hrw_score.json');
    assert.ok(cases.length > 0);
    for (const { peer_id: peerId, sequence, score } of cases) {
      assert.equal(hrwScore(peerId, sequence), score, `${peerId}/${sequence}`);
    }
  });
});

describe('the replay itself', () => {
  test('a changed expectation is detected', () => {
    // Guards against a replay that cannot fail: flip one expected action of a real vector.
    const vector = load('p2p_switch_resume.json');
    const poll = vector.steps.find((s) => s.call === 'poll' && s.expect.length > 0);
    poll.expect[0].peer_id = 'somebody-else';
    assert.throws(() => replay(vector), assert.AssertionError);
  });

  test('a changed wakeup is detected', () => {
    const vector = load('deadline_fallback.json');
    const poll = vector.steps.find((s) => s.call === 'poll' && s.next_wakeup !== null);
    poll.next_wakeup += 1e-6;
    assert.throws(() => replay(vector), assert.AssertionError);
  });

  test('unknown calls and arguments are refused, not skipped', () => {
    const sched = new SegmentScheduler({}, { peerId: 'me' });
    assert.throws(() => applyStep(sched, { call: 'teleport', args: {} }), /does not know/);
    assert.throws(
      () => applyStep(sched, { call: 'add_peer', args: { peer_id: 'a', colour: 'red' } }),
      /not mapped/,
    );
  });
});

// ------------------------------------------------------------------------ random scenarios

const PYTHON = fileURLToPath(new URL('../../.venv/bin/python', import.meta.url));
const noPython = existsSync(PYTHON) ? false : 'no .venv with the Python reference scheduler';

// Writes random scenario vectors with the Python scheduler (the Recorder of make_vectors.py):
// a small player model (position advancing, stalls, startup), neighbours joining, leaving and
// announcing, transfers progressing, completing and failing for every reason, live windows
// sliding. argv: make_vectors.py path, seed, count. Prints a JSON list of vectors.
const GENERATOR = String.raw`
import importlib.util, itertools, json, random, sys

spec = importlib.util.spec_from_file_location("make_vectors", sys.argv[1])
mv = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mv)
REASONS = ["timeout", "busy", "dont_have", "bad_data", "peer_gone", "http_error"]


def scenario(rng, index):
    cfg = {}
    if rng.random() < 0.5:
        cfg["prefetch_seconds"] = rng.choice([4.0, 8.0, 12.0, 30.0])
    if rng.random() < 0.3:
        cfg["max_parallel_http"] = rng.randint(1, 3)
    if rng.random() < 0.3:
        cfg["election_copies"] = rng.randint(1, 2)
    if rng.random() < 0.3:
        cfg["max_inflight_per_peer"] = rng.randint(1, 3)
    if rng.random() < 0.2:
        cfg["max_timeouts"] = 1
    if rng.random() < 0.3:
        cfg["prefer_seeds"] = False
    if rng.random() < 0.4:
        cfg["bandwidth"] = {
            "peer_prior_bps": rng.choice([50_000.0, 400_000.0, 2_000_000.0]),
            "http_prior_bps": rng.choice([200_000.0, 500_000.0, 3_000_000.0]),
        }
    me = rng.choice(["me", "viewer-7", "\u00fc-peer", "z", "p3"])
    r = mv.Recorder(f"random-{index}", "random", peer_id=me, **cfg)
    live = rng.random() < 0.5
    dur = rng.choice([1.5, 2.0, 4.0])
    count = rng.randint(3, 10)
    sizes = {}

    def size(s):
        if s not in sizes:
            sizes[s] = None if rng.random() < 0.2 else rng.randint(20_000, 400_000)
        return sizes[s]

    def timeline(first):
        return [
            {"sequence": s, "duration": dur, "size": size(s), "start": s * dur}
            for s in range(first, first + count)
        ]

    first = 0
    peers = []
    names = (f"p{i}" for i in itertools.count())

    def add(seed=False):
        pid = "seed-%d" % len(peers) if seed else next(names)
        if pid != me and pid not in peers:
            peers.append(pid)
            r.add_peer(peer_id=pid, **({"is_seed": True} if seed else {}))

    for _ in range(rng.randint(0, 5)):
        add()
    if rng.random() < 0.3:
        add(seed=True)
    r.set_timeline(segments=timeline(first), **({"live": True} if live else {}))
    for pid in peers:
        if rng.random() < 0.7:
            r.peer_has(peer_id=pid, sequences=rng.sample(range(count), rng.randint(1, count)))
    stored = set()
    received = {}
    now = 0.0
    position = (first + max(count - 3, 0)) * dur if live else 0.0
    playing = False
    rate = rng.choice([1.0, 1.0, 1.0, 1.25])
    for _ in range(rng.randint(10, 70)):
        wake = r.sched.next_wakeup(now)
        if wake is not None and wake > now and rng.random() < 0.4:
            dt = wake - now
        else:
            dt = rng.choice([0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.7, 1.5])
        now += dt
        seqs = list(range(first, first + count))
        buffered = position
        while int(buffered // dur) in stored and int(buffered // dur) in seqs:
            buffered = (int(buffered // dur) + 1) * dur
        if playing:
            position = min(position + dt * rate, buffered)
        if not playing and rng.random() < 0.3:
            playing = True
        for _ in range(rng.randint(0, 3)):
            event = rng.random()
            transfers = r.sched.transfers()
            if event < 0.25 and peers:
                have = rng.sample(seqs, rng.randint(1, len(seqs)))
                r.peer_has(peer_id=rng.choice(peers), sequences=have)
            elif event < 0.32 and peers:
                r.peer_fetching(peer_id=rng.choice(peers), sequence=rng.choice(seqs))
            elif event < 0.36 and peers:
                r.peer_fetch_aborted(peer_id=rng.choice(peers), sequence=rng.choice(seqs))
            elif event < 0.40 and peers:
                r.peer_lost(peer_id=rng.choice(peers), sequences=[rng.choice(seqs)])
            elif event < 0.65 and transfers:
                tid = rng.choice(sorted(transfers))
                got = received.get(tid, 0) + rng.randint(1, 120_000)
                received[tid] = got
                args = {"now": now, "transfer_id": tid, "bytes_received": got}
                if rng.random() < 0.2:
                    args["total_size"] = rng.randint(50_000, 400_000)
                r.transfer_progress(**args)
            elif event < 0.78 and transfers:
                tid = rng.choice(sorted(transfers))
                r.transfer_done(now=now, transfer_id=tid)
                stored.add(transfers[tid][0])
            elif event < 0.86 and transfers:
                tid = rng.choice(sorted(transfers))
                args = {"now": now, "transfer_id": tid, "reason": rng.choice(REASONS)}
                if args["reason"] == "busy" and rng.random() < 0.6:
                    args["retry_after"] = rng.choice([0.0, 0.3, 2.0, 100.0])
                r.transfer_failed(**args)
            elif event < 0.89:
                add(seed=rng.random() < 0.2)
            elif event < 0.92 and peers:
                pid = rng.choice(peers)
                peers.remove(pid)
                r.remove_peer(peer_id=pid)
            elif event < 0.95 and stored:
                seq = rng.choice(sorted(stored))
                stored.discard(seq)
                r.segment_evicted(sequence=seq)
            elif event < 0.98 and live:
                first += 1
                r.set_timeline(segments=timeline(first), live=True)
            else:
                seq = rng.choice(seqs)
                stored.add(seq)
                r.segment_stored(sequence=seq)
        seqs = list(range(first, first + count))
        position = max(position, first * dur)
        buffered = position
        while int(buffered // dur) in stored and int(buffered // dur) in seqs:
            buffered = (int(buffered // dur) + 1) * dur
        args = {"now": now, "position": position, "buffered_until": buffered}
        if rate != 1.0:
            args["rate"] = rate
        if not playing:
            args["playing"] = False
        r.set_playback(**args)
        r.poll(now)
    return r.vector


seed, count = int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
json.dump([scenario(rng, i) for i in range(count)], sys.stdout)
`;

describe('random scenarios, Python and JS side by side', { skip: noPython }, () => {
  test('every action and wakeup agrees', () => {
    const seed = fuzzSeed();
    const makeVectors = `${DIR}make_vectors.py`;
    const result = spawnSync(PYTHON, ['-c', GENERATOR, makeVectors, String(seed), '200'], {
      encoding: 'utf8',
      maxBuffer: 256 * 1024 * 1024,
    });
    assert.equal(result.status, 0, result.stderr);
    const vectors = JSON.parse(result.stdout);
    let polls = 0;
    let actions = 0;
    for (const vector of vectors) {
      try {
        polls += replay(vector);
      } catch (error) {
        error.message = `seed ${seed} (SWARMCAST_FUZZ_SEED=${seed}): ${error.message}`;
        throw error;
      }
      for (const step of vector.steps) actions += step.expect?.length ?? 0;
    }
    // The generator must exercise the scheduler, not just poll an idle one.
    assert.ok(polls > 2000 && actions > 1000, `seed ${seed}: ${polls} polls, ${actions} actions`);
  });
});
