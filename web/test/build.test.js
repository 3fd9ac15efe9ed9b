// The esbuild bundles: the IIFE exposes the global `swarmcast`, the ES module exports the same
// API, both work (a vector round-trips through them) and neither contains hls.js.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, test } from 'node:test';
import vm from 'node:vm';

import { build } from '../scripts/build.mjs';
import * as source from '../src/index.js';
import { loadVectors } from './helpers.js';

let outdir;
let metafiles;

before(async () => {
  outdir = await mkdtemp(path.join(tmpdir(), 'swarmcast-build-'));
  metafiles = await build(outdir);
});

after(async () => {
  await rm(outdir, { recursive: true, force: true });
});

const vector = loadVectors('protocol').valid.find((v) => v.message.type === 'have_set');

test('the IIFE build defines the global swarmcast with the public API', async () => {
  const code = await readFile(path.join(outdir, 'swarmcast.js'), 'utf8');
  const context = vm.createContext({ TextEncoder, TextDecoder, crypto: globalThis.crypto });
  vm.runInContext(code, context);
  const api = context.swarmcast;
  assert.deepEqual(Object.keys(api).sort(), Object.keys(source).sort());
  const frame = api.encode(api.messageFromJSON(vector.message));
  assert.equal(Buffer.from(frame).toString('hex'), vector.hex);
  const peer = new api.PeerProtocol({ peerId: 'p', swarms: ['s'] });
  assert.equal(api.decode(peer.dataToSend()[0]).type, 'hello');
});

test('the ES module build exports the same API', async () => {
  const built = await import(pathToFileURL(path.join(outdir, 'swarmcast.mjs')).href);
  assert.deepEqual(Object.keys(built).sort(), Object.keys(source).sort());
  assert.equal(await built.swarmId('my-event-2024', 'video-hd'), 'aF8sdrAIa3f5heBdEYm3LP');
});

test('hls.js is never bundled, and VERSION follows package.json', async () => {
  for (const meta of Object.values(metafiles)) {
    const inputs = Object.keys(meta.inputs);
    assert.ok(inputs.length > 0);
    assert.ok(inputs.every((file) => !file.includes('node_modules')), inputs.join(', '));
  }
  const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'));
  assert.equal(source.VERSION, pkg.version);
  assert.equal(pkg.peerDependencies['hls.js'] !== undefined, true);
});
