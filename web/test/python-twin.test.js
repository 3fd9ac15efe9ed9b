// Differential test against the Python reference (peer/protocol.py, peer/ids.py): thousands of
// generated frames and URLs go through both implementations, which must agree exactly (same
// message, or the same error code; same path, or both refusing). Skipped when the repository's
// .venv is missing (e.g. the web package checked out alone).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

import { initSegmentId, normalizePath, renditionId } from '../src/core/ids.js';
import { ProtocolError, decode, messageToJSON } from '../src/core/protocol.js';
import { fuzzSeed, hex, loadVectors, mutate, randomFrame, rng, toHex } from './helpers.js';

const PYTHON = fileURLToPath(new URL('../../.venv/bin/python', import.meta.url));
const skip = existsSync(PYTHON) ? false : 'no .venv with the Python reference implementation';

// Reads a JSON list of cases on stdin, answers a JSON list of results in the same order.
const ORACLE = String.raw`
import asyncio, json, sys
from swarmcast.peer import ids
from swarmcast.peer.protocol import ProtocolError, decode, message_to_dict

def run(case):
    try:
        op = case["op"]
        if op == "decode":
            return {"ok": message_to_dict(decode(bytes.fromhex(case["hex"])))}
        if op == "normalize":
            return {"ok": ids.normalize_path(case["url"])}
        if op == "rendition":
            return {"ok": ids.rendition_id(case["master"], case["uri"])}
        if op == "init":
            return {"ok": ids.init_segment_id(case["uri"], base_url=case["base"])}
    except ProtocolError as exc:
        return {"error": exc.code.label}
    except ValueError as exc:
        return {"error": "value"}
    except Exception as exc:
        return {"crash": f"{type(exc).__name__}: {exc}"}

cases = json.load(sys.stdin)
json.dump([run(c) for c in cases], sys.stdout)
`;

function oracle(cases) {
  const result = spawnSync(PYTHON, ['-c', ORACLE], {
    input: JSON.stringify(cases),
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  assert.equal(result.status, 0, result.stderr);
  return JSON.parse(result.stdout);
}

async function runJs(testCase) {
  try {
    switch (testCase.op) {
      case 'decode':
        return { ok: messageToJSON(decode(hex(testCase.hex))) };
      case 'normalize':
        return { ok: normalizePath(testCase.url) };
      case 'rendition':
        return { ok: renditionId(testCase.master, testCase.uri) };
      default:
        return { ok: await initSegmentId(testCase.uri, { baseUrl: testCase.base }) };
    }
  } catch (error) {
    if (error instanceof ProtocolError) return { error: error.label };
    if (testCase.op !== 'decode' && error instanceof Error) return { error: 'value' };
    return { crash: String(error?.stack ?? error) };
  }
}

async function compare(cases, seed) {
  const expected = oracle(cases);
  const mismatches = [];
  for (let i = 0; i < cases.length; i++) {
    const got = await runJs(cases[i]);
    assert.ok(!expected[i].crash, `Python crashed on ${JSON.stringify(cases[i])}: ${expected[i].crash}`);
    assert.ok(!got.crash, `JS crashed on ${JSON.stringify(cases[i])}: ${got.crash}`);
    if (JSON.stringify(got) !== JSON.stringify(expected[i])) {
      mismatches.push({ case: cases[i], python: expected[i], js: got });
    }
  }
  assert.deepEqual(mismatches.slice(0, 5), [], `seed ${seed}: ${mismatches.length} mismatches`);
  return expected;
}

test('frames: JS and Python decode identically', { skip }, async () => {
  const seed = fuzzSeed();
  const random = rng(seed);
  const vectors = loadVectors('protocol');
  const seeds = [...vectors.valid, ...vectors.tolerated, ...vectors.invalid]
    .map((v) => hex(v.hex))
    .filter((f) => f.length < 4096);
  const cases = [];
  for (let i = 0; i < 6000; i++) {
    const frame = i % 3 === 0 ? randomFrame(random) : mutate(random, random.pick(seeds));
    cases.push({ op: 'decode', hex: toHex(frame) });
  }
  const results = await compare(cases, seed);
  const labels = new Set(results.map((r) => r.error ?? 'ok'));
  for (const label of ['ok', 'malformed', 'unknown_type', 'too_large', 'version']) {
    assert.ok(labels.has(label), `the generated frames never produced ${label} (seed ${seed})`);
  }
});

const SCHEMES = ['http:', 'https:', 'HTTPS:', 'ftp:', 'foo:', 'c:', 'a+b:', '1a:', ''];
const HOSTS = ['//h.example', '//u:p@H.example:8080', '//[::1]', '//[v1.x]', '//[1.2.3.4]',
  '//[::1', '//h]', '//[fe80::1%25eth0]', '//[::ffff:1.2.3.4]', '//\u2100.example', '//ｈ.example',
  '///', '//', ''];
const PIECES = ['/', '//', '.', '..', '/./', '/../', '/..;p', '/.;', ';/', 'a', 'B', '%', '%2', '%2e', '%2E', '%2f', '%7e',
  '%41', '%e2%9c%93', '%zz', 'é', '✓', ' ', '~', ';p=1', '?q=1', '#f', '\\', '\t', '\n', '\u3000',
  '\x00', '\x1f', '@', ':', '+', '[', ']', '"', '<', "'", '*', '=', '&', '$', '!', '\ud83d\ude00'];

function randomUrl(random) {
  let url = random.int(4) ? random.pick(SCHEMES) + random.pick(HOSTS) : '';
  for (let n = random.int(8); n > 0; n--) url += random.pick(PIECES);
  if (random.int(5) === 0) url = random.pick([' ', '\u3000', '\x85', '\ufeff', '\x0b']) + url;
  if (random.int(5) === 0) url += random.pick([' ', '\u2028', '\x1c', '\ufeff']);
  return url;
}

test('URLs: JS and Python normalise identically', { skip }, async () => {
  const seed = fuzzSeed();
  const random = rng(seed);
  const cases = [];
  for (let i = 0; i < 4000; i++) cases.push({ op: 'normalize', url: randomUrl(random) });
  for (let i = 0; i < 2000; i++) {
    const master = random.int(3) ? `https://h.example/live/${randomUrl(random)}` : randomUrl(random);
    cases.push({ op: 'rendition', master, uri: randomUrl(random) });
  }
  for (let i = 0; i < 500; i++) {
    const base = random.int(3) ? `https://h.example/v/${randomUrl(random)}` : '';
    cases.push({ op: 'init', uri: randomUrl(random), base });
  }
  const results = await compare(cases, seed);
  const ok = results.filter((r) => 'ok' in r).length;
  assert.ok(ok > cases.length / 4 && ok < cases.length, `seed ${seed}: ${ok} of ${cases.length} accepted`);
});
