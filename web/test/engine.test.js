// core/engine.js: how links enter the scheduler (the browser twin of peer/agent.py's rule).
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';

import { P2PEngine } from '../src/core/engine.js';
import { SegmentScheduler } from '../src/core/scheduler.js';

const engines = [];
afterEach(() => {
  for (const e of engines.splice(0)) e.destroy();
});

/** An engine with one joined rendition in swarm `s`, no network. */
function engineWithSwarm() {
  const engine = new P2PEngine({ masterUrl: 'http://origin.test/master.m3u8' }, { now: () => 0 });
  engines.push(engine);
  const st = engine._rendition('http://origin.test/a.m3u8');
  st.swarmId = 's';
  st.joined = true;
  st.scheduler = new SegmentScheduler({}, { peerId: 'me' });
  engine.bySwarm.set('s', st);
  return { engine, st };
}

/** A link whose HELLO said `peer`; records the HAVE_SETs sent on it. */
function fakeLink(peerId, peer) {
  const sent = [];
  return {
    peerId,
    closed: false,
    sent,
    protocol: { peer, sendHaveSet: (swarmId, seqs) => sent.push([swarmId, [...seqs]]) },
    flush() {},
  };
}

describe('P2PEngine.linkOpened', () => {
  test('an uploading neighbour enters the scheduler, a seed as a seed', () => {
    const { engine, st } = engineWithSwarm();
    engine.linkOpened(fakeLink('v', { role: 'viewer', uploadEnabled: true }), { peerId: 'v', swarms: ['s'] });
    engine.linkOpened(fakeLink('d', { role: 'seed', uploadEnabled: true }), { peerId: 'd', swarms: ['s'] });
    assert.deepEqual([...st.scheduler._peers.keys()].sort(), ['d', 'v']);
    assert.equal(st.scheduler._peers.get('d').isSeed, true);
  });

  test('a neighbour with upload off is told what we hold but never scheduled', () => {
    const { engine, st } = engineWithSwarm();
    const link = fakeLink('x', { role: 'viewer', uploadEnabled: false });
    engine.linkOpened(link, { peerId: 'x', swarms: ['s'] });
    assert.equal(st.scheduler._peers.size, 0);
    assert.deepEqual(link.sent, [['s', []]]);
    // Its announcements are then ignored by the scheduler instead of counting in elections.
    st.scheduler.peerFetching('x', 3);
    assert.equal(st.scheduler._peers.size, 0);
  });
});
