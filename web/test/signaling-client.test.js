// core/signaling-client.js against a fake WebSocket that plays the server's part: hello ->
// welcome, join with request ids, errors by ref, relayed signals, reconnect and rejoin.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { SignalingClient, SignalingError } from '../src/core/signaling-client.js';

/** A fake server: every socket the client opens is recorded; tests answer for the server. */
function fakeServer() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      sockets.push(this);
      setTimeout(() => {
        this.readyState = 1;
        this.onopen?.();
      }, 0);
    }
    send(text) {
      this.sent.push(JSON.parse(text));
    }
    close(code = 1000) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      setTimeout(() => this.onclose?.({ code }), 0);
    }
    /** The server says `message`. */
    say(message) {
      this.onmessage?.({ data: typeof message === 'string' ? message : JSON.stringify(message) });
    }
    last(type) {
      return this.sent.filter((m) => m.type === type).at(-1);
    }
  }
  return { sockets, FakeWebSocket };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 5));
const welcome = (peer) => ({ type: 'welcome', peer, ice_servers: [{ urls: ['turn:t:3478'] }], heartbeat: 15 });

function client(handler = {}, extra = {}) {
  const server = fakeServer();
  const quiet = { warn() {}, error() {}, info() {}, debug() {} };
  const c = new SignalingClient(
    { url: 'ws://sig/ws', reconnectInitial: 0.01, reconnectMax: 0.02, requestTimeout: 1, ...extra },
    handler,
    { WebSocket: server.FakeWebSocket, random: () => 1, logger: quiet },
  );
  return { c, server };
}

describe('SignalingClient', () => {
  test('hello, welcome, ICE servers only from the welcome', async () => {
    const { c, server } = client();
    c.start();
    await tick();
    const ws = server.sockets[0];
    assert.equal(ws.sent[0].type, 'hello');
    ws.say(welcome('peerA'));
    const got = await c.waitReady(1);
    assert.equal(got.peerId, 'peerA');
    assert.deepEqual(got.iceServers, [{ urls: ['turn:t:3478'] }]);
    assert.equal(c.peerId, 'peerA');
    c.close();
  });

  test('join resolves with the sample; an error answer rejects with its code', async () => {
    const samples = [];
    const { c, server } = client({ onJoined: (swarm, peers) => samples.push([swarm, peers]) });
    c.start();
    await tick();
    const ws = server.sockets[0];
    ws.say(welcome('peerA'));
    const joining = c.join('swarm1');
    const join = ws.last('join');
    assert.equal(join.swarm, 'swarm1');
    ws.say({ type: 'joined', id: join.id, swarm: 'swarm1', peers: [{ peer: 'B', role: 'seed' }, 'junk'] });
    await joining;
    assert.deepEqual(samples, [['swarm1', [{ peer: 'B', role: 'seed' }]]]);
    const refused = c.join('swarm2');
    ws.say({ type: 'error', code: 'swarm-full', message: 'full', ref: ws.last('join').id });
    await assert.rejects(refused, (e) => e instanceof SignalingError && e.code === 'swarm-full');
    assert.deepEqual(c.swarms, ['swarm1']);
    c.close();
  });

  test('signals relay both ways; malformed server messages are dropped', async () => {
    const signals = [];
    const { c, server } = client({ onSignal: (...args) => signals.push(args) });
    c.start();
    await tick();
    const ws = server.sockets[0];
    ws.say(welcome('peerA'));
    ws.say('not json');
    ws.say({ type: 'signal', from: 'B', swarm: 's', data: 'nope' });
    ws.say({ type: 'signal', from: 'B', swarm: 's', data: { candidate: null } });
    ws.say({ type: 'mystery' });
    assert.deepEqual(signals, [['B', 's', { candidate: null }]]);
    c.signal('B', 's', { sdp: { type: 'answer', sdp: 'v=0' } });
    assert.deepEqual(ws.last('signal'), { type: 'signal', to: 'B', swarm: 's', data: { sdp: { type: 'answer', sdp: 'v=0' } } });
    c.sendStats('s', { http_bytes: 1, p2p_bytes: 2 });
    assert.equal(ws.last('stats').p2p_bytes, 2);
    c.sendReport('s', 'B', 'bad-data');
    assert.deepEqual(ws.last('report'), { type: 'report', swarm: 's', peer: 'B', reason: 'bad-data' });
    c.close();
  });

  test('reconnects after a drop and rejoins its swarms under the new id', async () => {
    let disconnected = 0;
    const { c, server } = client({ onDisconnected: () => (disconnected += 1) });
    c.start();
    await tick();
    server.sockets[0].say(welcome('first'));
    const joining = c.join('swarm1');
    const ws0 = server.sockets[0];
    ws0.say({ type: 'joined', id: ws0.last('join').id, swarm: 'swarm1', peers: [] });
    await joining;
    ws0.close(1006);
    await tick();
    await new Promise((resolve) => setTimeout(resolve, 40));
    assert.equal(disconnected, 1);
    assert.equal(server.sockets.length, 2);
    const ws1 = server.sockets[1];
    ws1.say(welcome('second'));
    await tick();
    assert.equal(ws1.last('join').swarm, 'swarm1');
    assert.equal(c.peerId, 'second');
    assert.equal(c.connections, 2);
    c.close();
  });

  test('a server that never welcomes: waitReady rejects, and the URL is checked', async () => {
    const { c } = client({}, { connectTimeout: 0.05 });
    c.start();
    await assert.rejects(c.waitReady(0.03), /did not welcome/);
    c.close();
    assert.throws(() => new SignalingClient({ url: 'http://x' }, {}), TypeError);
  });
});
