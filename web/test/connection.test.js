// The link state machine: two PeerProtocol objects wired back to back, plus forged frames for
// everything an honest peer would never send. Mirrors tests/test_connection.py.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  ConnectionState,
  ConnectionStateError,
  PeerProtocol,
  haveSetSequences,
} from '../src/core/connection.js';
import { initKey, mediaKey } from '../src/core/ids.js';
import {
  ErrorCode,
  MAX_FRAME_SIZE,
  VERSION_MINOR,
  decode,
  encode,
  encodeData,
} from '../src/core/protocol.js';
import { segment } from './helpers.js';

const S1 = 'swarm-one';
const S2 = 'swarm-two';
const SEG = mediaKey(100);

function make(peerId, swarms = [S1], options = {}) {
  return new PeerProtocol({ peerId, swarms, ...options });
}

function pump(src, dst, budget = null) {
  return src.dataToSend(budget).flatMap((frame) => dst.receive(frame));
}

function of(events, type) {
  return events.filter((e) => e.type === type);
}

function closedWith(events) {
  const last = events.at(-1);
  assert.equal(last?.type, 'connectionClosed', JSON.stringify(events));
  return last;
}

function sentError(proto) {
  const errors = proto.dataToSend().map(decode).filter((m) => m.type === 'error');
  assert.equal(errors.length, 1);
  return errors[0];
}

/** viewer (requester) and seed (holder), handshake done. */
function pair() {
  const viewer = make('viewer');
  const seed = make('seed', [S1], { role: 'seed' });
  pump(viewer, seed);
  pump(seed, viewer);
  return [viewer, seed];
}

/** `peer` after receiving a forged HELLO. */
function opened(peer, hello = {}) {
  const events = peer.receive(
    encode({
      type: 'hello',
      version_major: 1,
      version_minor: 0,
      role: 'viewer',
      flags: 1,
      max_message_size: 65536,
      max_requests: 4,
      peer_id: 'forger',
      swarms: [S1],
      ...hello,
    }),
  );
  assert.equal(of(events, 'helloReceived').length, 1, JSON.stringify(events));
  peer.dataToSend();
  return peer;
}

const request = (id, swarm = 0, key = SEG, offset = 0, length = 0) =>
  encode({ type: 'request', request_id: id, swarm, key, offset, length });
const response = (id, total, offset, length) =>
  encode({ type: 'response', request_id: id, total_size: total, offset, length });

// ---------------------------------------------------------------------------- handshake

test('handshake exchanges capabilities', () => {
  const viewer = make('viewer', [S1, S2], { uploadEnabled: false, maxInboundRequests: 3 });
  const seed = make('seed', [S1], { role: 'seed' });
  assert.equal(viewer.state, ConnectionState.AWAIT_HELLO);
  assert.equal(viewer.requestSlots, 0);
  assert.deepEqual(pump(viewer, seed), [
    {
      type: 'helloReceived',
      peerId: 'viewer',
      role: 'viewer',
      uploadEnabled: false,
      maxRequests: 3,
      swarms: [S1, S2],
      versionMinor: 0,
    },
  ]);
  assert.equal(seed.state, ConnectionState.OPEN);
  assert.equal(seed.requestSlots, 0); // the viewer does not upload
  const [hello] = pump(seed, viewer);
  assert.equal(hello.role, 'seed');
  assert.ok(hello.uploadEnabled);
  assert.equal(viewer.requestSlots, 16);
  assert.equal(viewer.peerId, 'seed');
});

test('request before the peer HELLO is refused locally', () => {
  assert.throws(() => make('viewer').request(S1, SEG), (e) => e instanceof ConnectionStateError && /await_hello/.test(e.message));
});

test('a newer minor is negotiated down', () => {
  const seed = opened(make('seed'), { version_minor: 9 });
  assert.equal(seed.versionMinor, VERSION_MINOR);
  assert.equal(seed.state, ConnectionState.OPEN);
});

test('another major version sends ERROR version and closes', () => {
  const seed = make('seed');
  seed.dataToSend();
  const closed = closedWith(seed.receive(Uint8Array.of(0x01, 0x02, 0x00, 0xaa, 0xbb)));
  assert.equal(closed.code, ErrorCode.VERSION);
  assert.equal(closed.byPeer, false);
  assert.equal(sentError(seed).code, ErrorCode.VERSION);
  assert.equal(seed.state, ConnectionState.CLOSED);
});

test('frames before HELLO are a violation', () => {
  const seed = make('seed');
  seed.dataToSend();
  const closed = closedWith(seed.receive(encode({ type: 'have', swarm: 0, key: SEG })));
  assert.equal(closed.code, ErrorCode.VIOLATION);
  assert.match(closed.reason, /before HELLO/);
  assert.equal(closedWith(make('seed2').receive(encodeData(0, 0, Uint8Array.of(1)))).code, ErrorCode.VIOLATION);
});

test('a second HELLO is a violation', () => {
  const [, seed] = pair();
  const hello = encode({
    type: 'hello', version_major: 1, version_minor: 0, role: 'viewer', flags: 1,
    max_message_size: 65536, max_requests: 1, peer_id: 'x', swarms: [],
  });
  assert.equal(closedWith(seed.receive(hello)).code, ErrorCode.VIOLATION);
});

test('configuration is validated', () => {
  assert.throws(() => make('p', [], { maxMessageSize: 1000 }), /maxMessageSize/);
  assert.throws(() => make('p', [], { maxInboundRequests: 0 }), /maxInboundRequests/);
  assert.throws(() => make('p', [], { maxSegmentSize: 2 ** 32 }), /maxSegmentSize/);
  assert.throws(() => make('bad peer id'), /peer id/);
  assert.throws(() => make('p', ['not a swarm id']), /swarm id/);
});

// ------------------------------------------------------------------------- availability

test('availability events name swarms', () => {
  const [viewer, seed] = pair();
  seed.sendHaveSet(S1, [10, 11, 12, 40], [77]);
  seed.sendHave(S1, mediaKey(41));
  seed.sendLost(S1, mediaKey(10));
  seed.sendFetching(S1, mediaKey(42));
  seed.sendFetchAborted(S1, mediaKey(42));
  const events = pump(seed, viewer);
  assert.deepEqual([...haveSetSequences(events[0])], [10, 11, 12, 40]);
  assert.deepEqual(events, [
    { type: 'haveSetReceived', swarmId: S1, base: 10, bitmap: Uint8Array.of(0b11100000, 0, 0, 0b10), initIds: [77] },
    { type: 'haveReceived', swarmId: S1, key: mediaKey(41) },
    { type: 'lostReceived', swarmId: S1, key: mediaKey(10) },
    { type: 'fetchingReceived', swarmId: S1, key: mediaKey(42) },
    { type: 'fetchAbortedReceived', swarmId: S1, key: mediaKey(42) },
  ]);
});

test('announcements may follow HELLO before the peer answers', () => {
  const seed = make('seed', [S1], { role: 'seed' });
  seed.sendHaveSet(S1, [1, 2]);
  const events = pump(seed, make('viewer'));
  assert.equal(events[0].type, 'helloReceived');
  assert.deepEqual(events[1], { type: 'haveSetReceived', swarmId: S1, base: 1, bitmap: Uint8Array.of(0xc0), initIds: [] });
});

test('a swarm index never announced is a violation', () => {
  const [viewer] = pair();
  const closed = closedWith(viewer.receive(encode({ type: 'have', swarm: 1, key: SEG })));
  assert.equal(closed.code, ErrorCode.VIOLATION);
  assert.match(closed.reason, /never announced/);
});

test('join adds a swarm both ways', () => {
  const [viewer, seed] = pair();
  seed.join(S2);
  viewer.join(S2);
  seed.sendHave(S2, SEG);
  assert.deepEqual(pump(seed, viewer), [
    { type: 'swarmJoined', swarmId: S2 },
    { type: 'haveReceived', swarmId: S2, key: SEG },
  ]);
  assert.deepEqual(pump(viewer, seed), [{ type: 'swarmJoined', swarmId: S2 }]);
  const rid = viewer.request(S2, SEG);
  assert.deepEqual(pump(viewer, seed), [
    { type: 'requestReceived', requestId: rid, swarmId: S2, key: SEG, offset: 0, length: 0 },
  ]);
});

test('join with a wrong index or a duplicate is a violation', () => {
  const [viewer] = pair();
  assert.equal(closedWith(viewer.receive(encode({ type: 'join', swarm: 5, swarm_id: S2 }))).code, ErrorCode.VIOLATION);
  const viewer2 = opened(make('v2'));
  assert.equal(closedWith(viewer2.receive(encode({ type: 'join', swarm: 1, swarm_id: S1 }))).code, ErrorCode.VIOLATION);
});

test('local misuse throws clear errors', () => {
  const [viewer] = pair();
  assert.throws(() => viewer.sendHave('not-on-link', SEG), /join/);
  assert.throws(() => viewer.join(S1), /already/);
  viewer.join(S2);
  assert.throws(() => viewer.request(S2, SEG), /not in swarm/); // the seed has not joined S2
});

// ---------------------------------------------------------------------------- transfers

test('whole segment transfer', () => {
  const [viewer, seed] = pair();
  const data = segment(200_000);
  const rid = viewer.request(S1, SEG);
  const [req] = pump(viewer, seed);
  assert.ok(seed.sendSegment(req.requestId, data));
  const frames = seed.dataToSend();
  assert.ok(frames.every((f) => f.length <= MAX_FRAME_SIZE));
  const events = frames.flatMap((f) => viewer.receive(f));
  assert.deepEqual(events[0], { type: 'transferStarted', requestId: rid, totalSize: 200_000, offset: 0, length: 200_000 });
  assert.deepEqual(of(events, 'transferChunk').map((c) => c.size), [65527, 65527, 65527, 200_000 - 3 * 65527]);
  assert.deepEqual(events.at(-1), { type: 'transferCompleted', requestId: rid, data, totalSize: 200_000, offset: 0 });
  assert.equal(viewer.bufferedBytes, 0);
  assert.equal(seed.pendingBytes, 0);
  assert.equal(viewer.requestSlots, 16);
});

test('interleaved transfers share the link round robin', () => {
  const [viewer, seed] = pair();
  const a = segment(150_000, 1);
  const b = segment(90_000, 2);
  const ra = viewer.request(S1, mediaKey(1));
  const rb = viewer.request(S1, mediaKey(2));
  const [reqA, reqB] = pump(viewer, seed);
  seed.sendSegment(reqA.requestId, a);
  seed.sendSegment(reqB.requestId, b);
  const frames = seed.dataToSend();
  const dataIds = frames.map(decode).filter((m) => m.type === 'data').map((m) => m.request_id);
  assert.deepEqual(dataIds, [ra, rb, ra, rb, ra]);
  const done = Object.fromEntries(
    of(frames.flatMap((f) => viewer.receive(f)), 'transferCompleted').map((e) => [e.requestId, e.data]),
  );
  assert.deepEqual(done, { [ra]: a, [rb]: b });
});

test('resume from an offset with a length', () => {
  const [viewer, seed] = pair();
  const data = segment(100_000);
  const rid = viewer.request(S1, SEG, 70_000, 20_000);
  const [req] = pump(viewer, seed);
  assert.deepEqual([req.offset, req.length], [70_000, 20_000]);
  seed.sendSegment(rid, data);
  const events = pump(seed, viewer);
  assert.deepEqual(events[0], { type: 'transferStarted', requestId: rid, totalSize: 100_000, offset: 70_000, length: 20_000 });
  assert.deepEqual(events.at(-1), {
    type: 'transferCompleted', requestId: rid, data: data.subarray(70_000, 90_000), totalSize: 100_000, offset: 70_000,
  });
});

test('length is clipped to the segment end; an empty remainder completes at once', () => {
  const [viewer, seed] = pair();
  const rid = viewer.request(S1, SEG, 10, 1_000_000);
  pump(viewer, seed);
  seed.sendSegment(rid, segment(50));
  assert.deepEqual(pump(seed, viewer).at(-1).data, segment(50).subarray(10));
  const rid2 = viewer.request(S1, SEG, 50);
  pump(viewer, seed);
  seed.sendSegment(rid2, segment(50));
  assert.deepEqual(pump(seed, viewer), [
    { type: 'transferStarted', requestId: rid2, totalSize: 50, offset: 50, length: 0 },
    { type: 'transferCompleted', requestId: rid2, data: new Uint8Array(0), totalSize: 50, offset: 50 },
  ]);
});

test('an offset past the end is answered DONT_HAVE', () => {
  const [viewer, seed] = pair();
  const rid = viewer.request(S1, SEG, 51);
  pump(viewer, seed);
  assert.equal(seed.sendSegment(rid, segment(50)), false);
  assert.deepEqual(pump(seed, viewer), [{ type: 'dontHaveReceived', requestId: rid, received: 0 }]);
});

test('DONT_HAVE and BUSY end requests', () => {
  const [viewer, seed] = pair();
  const r1 = viewer.request(S1, SEG);
  const r2 = viewer.request(S1, initKey(5));
  pump(viewer, seed);
  assert.ok(seed.sendDontHave(r1));
  assert.ok(seed.sendBusy(r2, 1500));
  assert.equal(seed.sendBusy(r2), false); // already answered
  assert.deepEqual(pump(seed, viewer), [
    { type: 'dontHaveReceived', requestId: r1, received: 0 },
    { type: 'busyReceived', requestId: r2, retryAfterMs: 1500, received: 0 },
  ]);
  assert.equal(viewer.requestSlots, 16);
});

test('a request in a swarm the holder is not in gets DONT_HAVE', () => {
  const [viewer, seed] = pair();
  viewer.join(S2);
  pump(viewer, seed);
  assert.deepEqual(seed.receive(request(5, 1)), []);
  assert.deepEqual(seed.dataToSend().map(decode), [{ type: 'dont_have', request_id: 5 }]);
});

test('a peer with small messages gets small chunks', () => {
  const viewer = make('viewer', [S1], { maxMessageSize: 16384 });
  const seed = make('seed', [S1], { role: 'seed' });
  pump(viewer, seed);
  pump(seed, viewer);
  const rid = viewer.request(S1, SEG);
  pump(viewer, seed);
  seed.sendSegment(rid, segment(40_000));
  const frames = seed.dataToSend();
  assert.equal(Math.max(...frames.map((f) => f.length)), 16384);
  assert.equal(of(frames.flatMap((f) => viewer.receive(f)), 'transferCompleted').length, 1);
});

test('the budget limits data per call but not control frames', () => {
  const [viewer, seed] = pair();
  const rid = viewer.request(S1, SEG);
  pump(viewer, seed);
  seed.sendSegment(rid, segment(300_000));
  seed.sendHave(S1, mediaKey(7));
  const first = seed.dataToSend(100);
  assert.deepEqual(first.map((f) => decode(f).type), ['response', 'have', 'data']);
  assert.equal(seed.pendingBytes, 300_000 - 65527);
  assert.equal(seed.dataToSend(2 * 65536).length, 2);
});

// ------------------------------------------------------------ truncated and oversized transfers

function started(size = 100_000) {
  const [viewer, seed] = pair();
  const rid = viewer.request(S1, SEG);
  pump(viewer, seed);
  viewer.receive(response(rid, size, 0, size));
  return [viewer, seed, rid];
}

test('a link lost mid-transfer reports the partial bytes', () => {
  const [viewer, , rid] = started();
  viewer.receive(encodeData(rid, 0, new Uint8Array(1000)));
  const events = viewer.connectionLost();
  assert.deepEqual(events[0], { type: 'transferFailed', requestId: rid, reason: 'link closed: data channel closed', received: 1000 });
  assert.deepEqual(events.at(-1), { type: 'connectionClosed', code: null, reason: 'data channel closed', byPeer: true });
  assert.deepEqual(viewer.connectionLost(), []);
});

test('a holder giving up mid-transfer is DONT_HAVE with progress', () => {
  const [viewer, seed] = pair();
  const rid = viewer.request(S1, SEG);
  pump(viewer, seed);
  seed.sendSegment(rid, segment(200_000));
  for (const frame of seed.dataToSend(100)) viewer.receive(frame); // RESPONSE + one chunk
  assert.deepEqual(viewer.progress(rid), [65527, 200_000]);
  assert.ok(seed.sendDontHave(rid));
  assert.equal(seed.pendingBytes, 5); // only the DONT_HAVE frame is left
  assert.deepEqual(pump(seed, viewer), [{ type: 'dontHaveReceived', requestId: rid, received: 65527 }]);
});

test('partialData keeps what arrived before a cancel', () => {
  const [viewer, seed] = pair();
  const rid = viewer.request(S1, SEG);
  pump(viewer, seed);
  const data = segment(200_000);
  seed.sendSegment(rid, data);
  for (const frame of seed.dataToSend(100)) viewer.receive(frame); // RESPONSE + one chunk
  assert.deepEqual(viewer.partialData(rid), data.subarray(0, 65527));
  viewer.cancel(rid);
  assert.equal(viewer.partialData(rid).length, 0);
  assert.equal(viewer.partialData(12345).length, 0);
});

test('DATA past the announced end is too_large', () => {
  const [viewer, , rid] = started(100);
  viewer.receive(encodeData(rid, 0, new Uint8Array(60)));
  const closed = closedWith(viewer.receive(encodeData(rid, 60, new Uint8Array(41))));
  assert.equal(closed.code, ErrorCode.TOO_LARGE);
  assert.equal(sentError(viewer).code, ErrorCode.TOO_LARGE);
});

test('non-contiguous DATA is a violation and fails the transfer with its progress', () => {
  const [viewer, , rid] = started();
  viewer.receive(encodeData(rid, 0, new Uint8Array(100)));
  const events = viewer.receive(encodeData(rid, 200, new Uint8Array(100)));
  assert.equal(events[0].type, 'transferFailed');
  assert.equal(events[0].received, 100);
  assert.equal(closedWith(events).code, ErrorCode.VIOLATION);
});

test('DATA before RESPONSE is a violation', () => {
  const [viewer] = pair();
  const rid = viewer.request(S1, SEG);
  assert.equal(closedWith(viewer.receive(encodeData(rid, 0, Uint8Array.of(1)))).code, ErrorCode.VIOLATION);
});

for (const [offset, length, answer, name] of [
  [0, 0, [100, 0, 50], 'short'],
  [10, 0, [100, 0, 100], 'wrong offset'],
  [0, 20, [100, 0, 30], 'more than asked'],
]) {
  test(`a RESPONSE not matching the request is a violation (${name})`, () => {
    const [viewer] = pair();
    const rid = viewer.request(S1, SEG, offset, length);
    assert.equal(closedWith(viewer.receive(response(rid, ...answer))).code, ErrorCode.VIOLATION);
  });
}

test('a second RESPONSE is a violation', () => {
  const [viewer, , rid] = started();
  assert.equal(closedWith(viewer.receive(response(rid, 100_000, 0, 100_000))).code, ErrorCode.VIOLATION);
});

test('a segment above maxSegmentSize fails the request only', () => {
  const viewer = make('viewer', [S1], { maxSegmentSize: 100_000 });
  const seed = make('seed', [S1], { role: 'seed' });
  pump(viewer, seed);
  pump(seed, viewer);
  const rid = viewer.request(S1, SEG);
  pump(viewer, seed);
  seed.sendSegment(rid, segment(200_000));
  const events = pump(seed, viewer, 100); // RESPONSE + first chunk
  assert.equal(events.length, 1);
  assert.equal(events[0].type, 'transferFailed');
  assert.match(events[0].reason, /maxSegmentSize/);
  assert.equal(viewer.bufferedBytes, 0);
  assert.equal(viewer.state, ConnectionState.OPEN);
  assert.deepEqual(pump(viewer, seed), [{ type: 'requestCancelled', requestId: rid }]);
  assert.equal(seed.pendingBytes, 0);
});

test('frames for unknown or finished requests are violations', () => {
  const [viewer] = pair();
  assert.equal(closedWith(viewer.receive(encode({ type: 'dont_have', request_id: 3 }))).code, ErrorCode.VIOLATION);
  const [viewer2, seed2] = pair();
  const rid = viewer2.request(S1, SEG);
  pump(viewer2, seed2);
  seed2.sendSegment(rid, Uint8Array.of(1, 2, 3));
  pump(seed2, viewer2);
  assert.match(closedWith(viewer2.receive(encodeData(rid, 3, Uint8Array.of(4)))).reason, /finished request/);
});

test('a frame larger than we accept is too_large', () => {
  const viewer = opened(make('viewer', [S1], { maxMessageSize: 16384 }));
  const frame = encodeData(0, 0, new Uint8Array(16384));
  assert.equal(closedWith(viewer.receive(frame)).code, ErrorCode.TOO_LARGE);
});

test('received bytes are copied: the adapter may reuse its frame buffer', () => {
  const [viewer, , rid] = started(4);
  const frame = encodeData(rid, 0, Uint8Array.of(1, 2));
  viewer.receive(frame);
  frame.fill(0xff);
  const events = viewer.receive(encodeData(rid, 2, Uint8Array.of(3, 4)));
  assert.deepEqual(events.at(-1).data, Uint8Array.of(1, 2, 3, 4));
});

// ------------------------------------------------------------------------------- cancel

test('cancel mid-transfer stops the holder and drops frames in flight', () => {
  const [viewer, seed] = pair();
  const rid = viewer.request(S1, SEG);
  pump(viewer, seed);
  seed.sendSegment(rid, segment(500_000));
  const inFlight = seed.dataToSend(2 * 65536); // RESPONSE + 2 chunks on the wire
  assert.equal(viewer.receive(inFlight[0])[0].type, 'transferStarted');
  assert.ok(viewer.cancel(rid));
  assert.equal(viewer.cancel(rid), false);
  assert.equal(viewer.bufferedBytes, 0);
  for (const frame of inFlight.slice(1)) assert.deepEqual(viewer.receive(frame), []);
  assert.deepEqual(pump(viewer, seed), [{ type: 'requestCancelled', requestId: rid }]);
  assert.deepEqual(seed.dataToSend(), []);
  assert.equal(seed.pendingBytes, 0);
  assert.equal(viewer.state, ConnectionState.OPEN);
  assert.equal(viewer.requestSlots, 16);
});

test('a cancel crossing the last byte is ignored by both sides', () => {
  const [viewer, seed] = pair();
  const rid = viewer.request(S1, SEG);
  pump(viewer, seed);
  seed.sendSegment(rid, Uint8Array.of(1, 2, 3, 4));
  const frames = seed.dataToSend();
  viewer.cancel(rid);
  for (const frame of frames) assert.deepEqual(viewer.receive(frame), []);
  assert.deepEqual(pump(viewer, seed), []);
  assert.equal(seed.state, ConnectionState.OPEN);
});

test('cancelled ids are forgotten after cancelledMemory more', () => {
  const viewer = make('viewer', [S1], { cancelledMemory: 2 });
  const seed = make('seed');
  pump(viewer, seed);
  pump(seed, viewer);
  const ids = [0, 1, 2].map(() => viewer.request(S1, SEG));
  ids.forEach((id) => viewer.cancel(id));
  assert.deepEqual(viewer.receive(encode({ type: 'dont_have', request_id: ids[2] })), []);
  assert.equal(closedWith(viewer.receive(encode({ type: 'dont_have', request_id: ids[0] }))).code, ErrorCode.VIOLATION);
});

test('a CANCEL of a request never made is a violation', () => {
  const [, seed] = pair();
  assert.equal(closedWith(seed.receive(encode({ type: 'cancel', request_id: 0 }))).code, ErrorCode.VIOLATION);
});

test('sendSegment after cancel returns false', () => {
  const [viewer, seed] = pair();
  const rid = viewer.request(S1, SEG);
  pump(viewer, seed);
  viewer.cancel(rid);
  pump(viewer, seed);
  assert.equal(seed.sendSegment(rid, Uint8Array.of(1)), false);
  assert.deepEqual(seed.dataToSend(), []);
});

// ------------------------------------------------------------------------------- limits

test('request slots follow the peer limit', () => {
  const viewer = make('viewer');
  const seed = make('seed', [S1], { maxInboundRequests: 2 });
  pump(viewer, seed);
  pump(seed, viewer);
  viewer.request(S1, mediaKey(1));
  const rid = viewer.request(S1, mediaKey(2));
  assert.equal(viewer.requestSlots, 0);
  assert.throws(() => viewer.request(S1, mediaKey(3)), (e) => e instanceof ConnectionStateError && /slot/.test(e.message));
  pump(viewer, seed);
  seed.sendDontHave(rid);
  pump(seed, viewer);
  assert.equal(viewer.requestSlots, 1);
});

test('more requests than advertised is a violation', () => {
  const seed = opened(make('seed', [S1], { maxInboundRequests: 2 }));
  seed.receive(request(0));
  seed.receive(request(1));
  const closed = closedWith(seed.receive(request(2)));
  assert.equal(closed.code, ErrorCode.VIOLATION);
  assert.match(closed.reason, /outstanding/);
});

test('request ids must increase', () => {
  const seed = opened(make('seed'));
  seed.receive(request(10));
  seed.sendDontHave(10);
  const closed = closedWith(seed.receive(request(10)));
  assert.equal(closed.code, ErrorCode.VIOLATION);
  assert.match(closed.reason, /not above/);
});

test('a REQUEST to a peer without upload is a violation', () => {
  const viewer = opened(make('viewer', [S1], { uploadEnabled: false }));
  assert.equal(closedWith(viewer.receive(request(0))).code, ErrorCode.VIOLATION);
});

test('reassembly grows only with the data received', () => {
  const [viewer, , rid] = started(30_000_000); // announced 30 MB, nothing sent yet
  assert.equal(viewer.bufferedBytes, 0);
  viewer.receive(encodeData(rid, 0, new Uint8Array(65527)));
  assert.equal(viewer.bufferedBytes, 65527);
  assert.ok(viewer._downloads.get(rid).buffer.length <= 2 * 65527);
});

// ------------------------------------------------------------------------------ closing

test('a peer ERROR fails open requests then closes', () => {
  const [viewer] = pair();
  const r1 = viewer.request(S1, SEG);
  assert.deepEqual(viewer.receive(encode({ type: 'error', code: ErrorCode.BANNED, reason: 'bad data' })), [
    { type: 'transferFailed', requestId: r1, reason: 'link closed: bad data', received: 0 },
    { type: 'connectionClosed', code: ErrorCode.BANNED, reason: 'bad data', byPeer: true },
  ]);
  assert.deepEqual(viewer.dataToSend().map(decode), [
    { type: 'request', request_id: r1, swarm: 0, key: SEG, offset: 0, length: 0 },
  ]);
  assert.deepEqual(viewer.receive(encode({ type: 'have', swarm: 0, key: SEG })), []);
});

test('a local close sends ERROR (clipped at a character boundary) and refuses more work', () => {
  const [viewer] = pair();
  viewer.request(S1, SEG);
  viewer.dataToSend();
  const events = viewer.close(ErrorCode.GOING_AWAY, 'leaving ' + 'é'.repeat(200));
  assert.equal(events[0].type, 'transferFailed');
  assert.equal(closedWith(events).byPeer, false);
  const error = sentError(viewer);
  assert.equal(error.code, ErrorCode.GOING_AWAY);
  const size = new TextEncoder().encode(error.reason).length;
  assert.ok(size <= 255 && size >= 253, `reason of ${size} bytes`);
  assert.ok(!error.reason.includes('\ufffd'));
  assert.throws(() => viewer.sendHave(S1, SEG), ConnectionStateError);
  assert.throws(() => viewer.request(S1, SEG), ConnectionStateError);
  assert.deepEqual(viewer.close(), []);
});

test('unknown error codes from the peer are accepted', () => {
  const [viewer] = pair();
  assert.equal(closedWith(viewer.receive(encode({ type: 'error', code: 200, reason: 'future' }))).code, 200);
});

test('garbage closes the link with the decoder code', () => {
  const [viewer] = pair();
  assert.equal(closedWith(viewer.receive(Uint8Array.of(0x05, 0x00))).code, ErrorCode.MALFORMED);
  const viewer2 = opened(make('v2'));
  assert.equal(closedWith(viewer2.receive(Uint8Array.of(0x42))).code, ErrorCode.UNKNOWN_TYPE);
  const viewer3 = opened(make('v3'));
  assert.equal(closedWith(viewer3.receive(new ArrayBuffer(0))).code, ErrorCode.MALFORMED);
});
