/**
 * Sans-IO state machine of one peer-to-peer link (one data channel): the twin of
 * `peer/connection.py`'s `PeerProtocol`, with the same semantics and the same checks.
 *
 * The adapter (the browser's RTCDataChannel, a test, a simulator) feeds every received message
 * to {@link PeerProtocol#receive}, acts on the returned events, calls `request` / `send*` to
 * act, and writes out what {@link PeerProtocol#dataToSend} returns. Nothing here does I/O,
 * reads a clock or schedules work: deadlines belong to the scheduler, which cancels what it
 * no longer wants.
 *
 * Naming: wire messages keep the protocol's snake_case field names (identical to the Python
 * dataclasses and the shared vectors, see core/protocol.js); everything else follows the
 * client's JavaScript convention, shared with the scheduler twins: configuration fields and
 * event fields are the Python names in camelCase, and an event's `type` is the Python event
 * class name with a lower-case first letter (`TransferCompleted(request_id, ...)` becomes
 * `{type: 'transferCompleted', requestId, ...}`).
 *
 * Everything the peer sends is checked against docs/protocol.md; the first violation queues
 * an ERROR frame, fails every open request and closes the link (`receive` never throws for
 * peer input). Reassembly buffers grow with the bytes actually received, never with a size
 * the peer announced.
 *
 * @module core/connection
 */

import {
  DATA_HEADER_SIZE,
  ErrorCode,
  FLAG_UPLOAD,
  MAX_FRAME_SIZE,
  MAX_REASON_BYTES,
  MAX_SWARMS,
  MAX_U32,
  MIN_MESSAGE_SIZE,
  ProtocolError,
  VERSION_MAJOR,
  VERSION_MINOR,
  asBytes,
  bitmapSequences,
  decode,
  encode,
  encodeData,
  haveSetFromSequences,
} from './protocol.js';

/**
 * What this side announces in its HELLO and the limits it enforces on the remote peer
 * (Python `ConnectionConfig`: same fields in camelCase, same defaults).
 *
 * @typedef {object} ConnectionConfig
 * @property {string} peerId our id as assigned by the signalling server (1..64 printable ASCII)
 * @property {string[]} [swarms] swarm ids we take part in on this link, in index order (more
 *   can be added by join()); default none
 * @property {'viewer'|'seed'} [role] viewer or seed; default "viewer"
 * @property {boolean} [uploadEnabled] whether we serve segments; if false, a REQUEST from the
 *   peer is a violation; default true
 * @property {number} [maxMessageSize] largest frame we accept, 16384..65536; default 65536
 * @property {number} [maxInboundRequests] requests the peer may have outstanding with us
 *   (advertised as max_requests), 1..65535; default 16
 * @property {number} [maxOutboundRequests] requests we keep outstanding with the peer at
 *   most (also capped by its max_requests), 1..65535; default 16
 * @property {number} [maxSegmentSize] largest segment we accept; a bigger RESPONSE fails that
 *   request (and cancels it); default 32 MiB
 * @property {number} [cancelledMemory] how many cancelled request ids we remember, to drop
 *   frames already in flight for them, 1..65535; default 256
 */

/** Defaults of the optional {@link ConnectionConfig} fields. */
export const DEFAULT_CONNECTION_CONFIG = Object.freeze({
  swarms: Object.freeze([]),
  role: 'viewer',
  uploadEnabled: true,
  maxMessageSize: MAX_FRAME_SIZE,
  maxInboundRequests: 16,
  maxOutboundRequests: 16,
  maxSegmentSize: 32 * 1024 * 1024,
  cancelledMemory: 256,
});

/**
 * `options` completed with defaults and checked; throws RangeError / TypeError naming the bad
 * field.
 *
 * @param {ConnectionConfig} options
 * @returns {Required<ConnectionConfig>}
 */
export function resolveConnectionConfig(options) {
  const config = { ...DEFAULT_CONNECTION_CONFIG, ...options };
  config.swarms = [...config.swarms];
  const { maxMessageSize: size } = config;
  if (!Number.isInteger(size) || size < MIN_MESSAGE_SIZE || size > MAX_FRAME_SIZE) {
    throw new RangeError(
      `maxMessageSize ${size} must be within ${MIN_MESSAGE_SIZE}..${MAX_FRAME_SIZE}`,
    );
  }
  for (const name of ['maxInboundRequests', 'maxOutboundRequests', 'cancelledMemory']) {
    const value = config[name];
    if (!Number.isInteger(value) || value < 1 || value > 65535) {
      throw new RangeError(`${name} must be within 1..65535, not ${value}`);
    }
  }
  const segment = config.maxSegmentSize;
  if (!Number.isInteger(segment) || segment < 1 || segment > MAX_U32) {
    throw new RangeError(`maxSegmentSize must be within 1..${MAX_U32}, not ${segment}`);
  }
  if (typeof config.uploadEnabled !== 'boolean') {
    throw new TypeError('uploadEnabled must be a boolean');
  }
  return config;
}

/** Life cycle of a link. */
export const ConnectionState = Object.freeze({
  /** Our HELLO is queued; the peer's has not arrived. */
  AWAIT_HELLO: 'await_hello',
  /** Both HELLOs exchanged with compatible versions. */
  OPEN: 'open',
  /** An ERROR was sent or received, or the channel went away. */
  CLOSED: 'closed',
});

/** A local call that the link's current state does not allow (a bug in the caller). */
export class ConnectionStateError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'ConnectionStateError';
  }
}

/**
 * An event returned by {@link PeerProtocol#receive} (and by close / connectionLost). `type`
 * is one of: helloReceived {peerId, role, uploadEnabled, maxRequests, swarms, versionMinor};
 * swarmJoined {swarmId}; haveSetReceived {swarmId, base, bitmap, initIds} (expand with
 * {@link haveSetSequences}); haveReceived / lostReceived / fetchingReceived /
 * fetchAbortedReceived {swarmId, key}; requestReceived {requestId, swarmId, key, offset,
 * length}; requestCancelled {requestId}; transferStarted {requestId, totalSize, offset,
 * length}; transferChunk {requestId, offset, size}; transferCompleted {requestId, data,
 * totalSize, offset}; transferFailed {requestId, reason, received}; dontHaveReceived
 * {requestId, received}; busyReceived {requestId, retryAfterMs, received};
 * connectionClosed {code (null if the channel just went away), reason, byPeer}.
 *
 * @typedef {{type: string, [field: string]: any}} ConnectionEvent
 */

const KEY_EVENTS = {
  have: 'haveReceived',
  lost: 'lostReceived',
  fetching: 'fetchingReceived',
  fetch_aborted: 'fetchAbortedReceived',
};

/** Reassembly of one of our requests, from REQUEST until its end. */
class Download {
  constructor(swarmId, key, offset, length) {
    this.swarmId = swarmId;
    this.key = key;
    this.offset = offset;
    this.length = length;
    this.started = false;
    this.totalSize = 0;
    this.nextOffset = 0;
    this.end = 0;
    this.buffer = new Uint8Array(0);
    this.received = 0;
  }

  /** Append a chunk, growing the buffer geometrically but never past the announced end. */
  append(payload) {
    const needed = this.received + payload.length;
    if (needed > this.buffer.length) {
      const capacity = Math.min(Math.max(needed, 2 * this.buffer.length), this.end - this.offset);
      const grown = new Uint8Array(capacity);
      grown.set(this.buffer.subarray(0, this.received));
      this.buffer = grown;
    }
    this.buffer.set(payload, this.received);
    this.received = needed;
  }
}

/** The state of one of the peer's requests until we sent its last byte or refusal. */
class Upload {
  constructor(request) {
    this.request = request;
    this.data = null;
    this.position = 0;
    this.end = 0;
  }
}

/** The protocol state of the link with one remote peer. Create it when the channel opens. */
export class PeerProtocol {
  /**
   * @param {ConnectionConfig} config
   * @throws {RangeError|TypeError} for a bad configuration; ProtocolError for a bad peer id
   *   or swarm id
   */
  constructor(config) {
    /** @type {Required<ConnectionConfig>} */
    this.config = resolveConnectionConfig(config);
    /** @type {string} one of {@link ConnectionState} */
    this.state = ConnectionState.AWAIT_HELLO;
    /** The peer's HELLO message once received, else null. */
    this.peer = null;
    /** Minor version in use once open. */
    this.versionMinor = VERSION_MINOR;
    this._ourSwarms = [...this.config.swarms];
    this._peerSwarms = [];
    /** @type {Uint8Array[]} */
    this._control = [];
    /** @type {Map<number, Download>} */
    this._downloads = new Map();
    /** @type {Map<number, Upload>} */
    this._uploads = new Map();
    /** @type {number[]} */
    this._uploadOrder = [];
    /** @type {Set<number>} insertion-ordered, oldest first */
    this._cancelled = new Set();
    this._nextRequestId = 0;
    this._lastPeerRequestId = -1;
    this._queue({
      type: 'hello',
      version_major: VERSION_MAJOR,
      version_minor: VERSION_MINOR,
      role: this.config.role,
      flags: this.config.uploadEnabled ? FLAG_UPLOAD : 0,
      max_message_size: this.config.maxMessageSize,
      max_requests: this.config.maxInboundRequests,
      peer_id: this.config.peerId,
      swarms: this._ourSwarms,
    });
  }

  // ---------------------------------------------------------------------------- properties

  /** @returns {string|null} the remote peer's id, once its HELLO arrived */
  get peerId() {
    return this.peer ? this.peer.peer_id : null;
  }

  /** @returns {number} how many more requests {@link request} accepts now (0 until open) */
  get requestSlots() {
    if (this.state !== ConnectionState.OPEN || this.peer === null) return 0;
    if (!(this.peer.flags & FLAG_UPLOAD)) return 0;
    const limit = Math.min(this.config.maxOutboundRequests, this.peer.max_requests);
    return Math.max(0, limit - this._downloads.size);
  }

  /** @returns {number} bytes held in reassembly buffers of transfers in progress */
  get bufferedBytes() {
    let total = 0;
    for (const download of this._downloads.values()) total += download.received;
    return total;
  }

  /** @returns {number} bytes {@link dataToSend} would still produce (frames + data) */
  get pendingBytes() {
    let total = 0;
    for (const frame of this._control) total += frame.length;
    for (const upload of this._uploads.values()) {
      if (upload.data) total += upload.end - upload.position;
    }
    return total;
  }

  /**
   * (bytes received, bytes expected) of one of our requests; null if not in progress.
   *
   * @param {number} requestId
   * @returns {[number, number]|null}
   */
  progress(requestId) {
    const download = this._downloads.get(requestId);
    if (!download || !download.started) return null;
    return [download.received, download.end - download.offset];
  }

  /**
   * Bytes received so far by one of our requests (from its offset); empty if none. Call it
   * before `cancel()` to keep what a peer delivered and fetch only the rest from the origin.
   *
   * @param {number} requestId
   * @returns {Uint8Array}
   */
  partialData(requestId) {
    const download = this._downloads.get(requestId);
    return download ? download.buffer.slice(0, download.received) : new Uint8Array(0);
  }

  // -------------------------------------------------------------------------------- output

  /**
   * Frames to write to the data channel, each one data-channel message.
   *
   * Control frames come first, then DATA chunks of the transfers in progress, round robin so
   * several transfers share the link. With a `budget` (bytes), chunks stop once it is reached,
   * leaving the rest for the next call: pass the room left under the channel's
   * `bufferedAmount` target so a cancelled transfer stops costing bandwidth at once.
   *
   * @param {number|null} [budget]
   * @returns {Uint8Array[]}
   */
  dataToSend(budget = null) {
    const frames = this._control;
    this._control = [];
    let used = frames.reduce((n, frame) => n + frame.length, 0);
    const chunkSize = this._chunkSize();
    while (this._uploadOrder.length && (budget === null || used < budget)) {
      const requestId = this._uploadOrder.shift();
      const upload = this._uploads.get(requestId);
      if (!upload || !upload.data) continue; // answered otherwise or cancelled since
      const end = Math.min(upload.position + chunkSize, upload.end);
      const frame = encodeData(requestId, upload.position, upload.data.subarray(upload.position, end));
      frames.push(frame);
      used += frame.length;
      upload.position = end;
      if (end < upload.end) this._uploadOrder.push(requestId);
      else this._uploads.delete(requestId);
    }
    return frames;
  }

  _chunkSize() {
    let limit = this.config.maxMessageSize;
    if (this.peer !== null) limit = Math.min(limit, this.peer.max_message_size);
    return Math.min(limit, MAX_FRAME_SIZE) - DATA_HEADER_SIZE;
  }

  _queue(message) {
    this._control.push(encode(message));
  }

  // ----------------------------------------------------------------------------- local API

  /**
   * Add a swarm to this link (we then announce and request in it).
   *
   * @param {string} swarmId
   */
  join(swarmId) {
    this._requireNotClosed();
    if (this._ourSwarms.includes(swarmId)) {
      throw new Error(`swarm ${swarmId} is already on this link`);
    }
    if (this._ourSwarms.length >= MAX_SWARMS) {
      throw new Error(`a link covers at most ${MAX_SWARMS} swarms`);
    }
    this._queue({ type: 'join', swarm: this._ourSwarms.length, swarm_id: swarmId });
    this._ourSwarms.push(swarmId);
  }

  /**
   * Announce everything we hold in a swarm (at link open, or to resynchronise).
   *
   * @param {string} swarmId
   * @param {Iterable<number>} sequences media sequence numbers held
   * @param {Iterable<number>} [initIds] init segment ids held
   */
  sendHaveSet(swarmId, sequences, initIds = []) {
    this._requireNotClosed();
    this._queue(haveSetFromSequences(this._ourIndex(swarmId), sequences, initIds));
  }

  /** Announce that we now hold `key`. @param {string} swarmId @param {import('./ids.js').SegmentKey} key */
  sendHave(swarmId, key) {
    this._sendKey('have', swarmId, key);
  }

  /** Announce that we evicted `key`. @param {string} swarmId @param {import('./ids.js').SegmentKey} key */
  sendLost(swarmId, key) {
    this._sendKey('lost', swarmId, key);
  }

  /** Announce that we are downloading `key` from the origin now. @param {string} swarmId @param {import('./ids.js').SegmentKey} key */
  sendFetching(swarmId, key) {
    this._sendKey('fetching', swarmId, key);
  }

  /** Announce that our origin download of `key` failed or was abandoned. @param {string} swarmId @param {import('./ids.js').SegmentKey} key */
  sendFetchAborted(swarmId, key) {
    this._sendKey('fetch_aborted', swarmId, key);
  }

  _sendKey(type, swarmId, key) {
    this._requireNotClosed();
    this._queue({ type, swarm: this._ourIndex(swarmId), key });
  }

  /**
   * Ask the peer for `key` (bytes `offset ..`, `length` 0 = to the end).
   *
   * Exactly one of transferCompleted, transferFailed, dontHaveReceived or busyReceived follows
   * for the returned id, unless we {@link cancel} it first.
   *
   * @param {string} swarmId
   * @param {import('./ids.js').SegmentKey} key
   * @param {number} [offset]
   * @param {number} [length]
   * @returns {number} the request id
   * @throws {ConnectionStateError} if no request slot is free (see {@link requestSlots})
   */
  request(swarmId, key, offset = 0, length = 0) {
    if (this.requestSlots === 0) throw new ConnectionStateError(this._whyNoSlot());
    const index = this._ourIndex(swarmId);
    if (!this._peerSwarms.includes(swarmId)) {
      throw new Error(`peer ${this.peerId} is not in swarm ${swarmId}`);
    }
    if (this._nextRequestId > MAX_U32) {
      throw new ConnectionStateError('request ids exhausted on this link: reconnect');
    }
    const requestId = this._nextRequestId;
    this._queue({ type: 'request', request_id: requestId, swarm: index, key, offset, length });
    this._nextRequestId += 1;
    this._downloads.set(requestId, new Download(swarmId, key, offset, length));
    return requestId;
  }

  _whyNoSlot() {
    if (this.state !== ConnectionState.OPEN) {
      return `cannot request on a link in state ${this.state}`;
    }
    if (this.peer !== null && !(this.peer.flags & FLAG_UPLOAD)) {
      return `peer ${this.peerId} does not upload`;
    }
    return 'every request slot is in use: wait for a request to end';
  }

  /**
   * Cancel one of our requests; no event follows for it.
   *
   * @param {number} requestId
   * @returns {boolean} false if it had already ended
   */
  cancel(requestId) {
    if (!this._downloads.delete(requestId)) return false;
    this._rememberCancelled(requestId);
    if (this.state !== ConnectionState.CLOSED) this._queue({ type: 'cancel', request_id: requestId });
    return true;
  }

  _rememberCancelled(requestId) {
    this._cancelled.add(requestId);
    while (this._cancelled.size > this.config.cancelledMemory) {
      this._cancelled.delete(this._cancelled.values().next().value);
    }
  }

  /**
   * Answer the peer's request with `data`, the whole segment; the requested range is cut from
   * it and sent in chunks by {@link dataToSend} (which keeps a view of `data`: do not modify
   * it until sent).
   *
   * @param {number} requestId
   * @param {ArrayBuffer|ArrayBufferView} data
   * @returns {boolean} false if the request is gone (cancelled meanwhile, or the link closed),
   *   or if the requested offset lies past the segment's end, in which case DONT_HAVE is sent
   */
  sendSegment(requestId, data) {
    const upload = this._uploads.get(requestId);
    if (!upload || this.state === ConnectionState.CLOSED) return false;
    if (upload.data !== null) {
      throw new ConnectionStateError(`request ${requestId} was already answered`);
    }
    const bytes = asBytes(data);
    const total = bytes.length;
    if (total > MAX_U32) {
      throw new RangeError(`segment of ${total} bytes is larger than the protocol's 4 GiB`);
    }
    const { offset, length: wanted } = upload.request;
    if (offset > total) return !this.sendDontHave(requestId);
    const available = total - offset;
    const length = wanted === 0 ? available : Math.min(wanted, available);
    this._queue({ type: 'response', request_id: requestId, total_size: total, offset, length });
    if (length === 0) {
      this._uploads.delete(requestId);
      return true;
    }
    upload.data = bytes;
    upload.position = offset;
    upload.end = offset + length;
    this._uploadOrder.push(requestId);
    return true;
  }

  /**
   * Refuse (or stop serving) the peer's request.
   *
   * @param {number} requestId
   * @returns {boolean} false if it is gone already
   */
  sendDontHave(requestId) {
    return this._refuse(requestId, { type: 'dont_have', request_id: requestId });
  }

  /**
   * Refuse the peer's request for lack of capacity.
   *
   * @param {number} requestId
   * @param {number} [retryAfterMs] hint: do not ask again before this (0 = none)
   * @returns {boolean} false if it is gone already
   */
  sendBusy(requestId, retryAfterMs = 0) {
    return this._refuse(requestId, {
      type: 'busy',
      request_id: requestId,
      retry_after_ms: retryAfterMs,
    });
  }

  _refuse(requestId, message) {
    if (this.state === ConnectionState.CLOSED || !this._uploads.has(requestId)) return false;
    this._queue(message);
    this._uploads.delete(requestId);
    return true;
  }

  /**
   * Close the link: queue an ERROR frame and fail every open request.
   *
   * @param {number} [code] an ErrorCode, default GOING_AWAY
   * @param {string} [reason]
   * @returns {ConnectionEvent[]}
   */
  close(code = ErrorCode.GOING_AWAY, reason = '') {
    if (this.state === ConnectionState.CLOSED) return [];
    this._queue({ type: 'error', code, reason: clip(reason) });
    return this._shutdown(code, reason, false);
  }

  /**
   * The channel closed without an ERROR frame: fail every open request.
   *
   * @returns {ConnectionEvent[]}
   */
  connectionLost() {
    if (this.state === ConnectionState.CLOSED) return [];
    return this._shutdown(null, 'data channel closed', true);
  }

  _shutdown(code, reason, byPeer) {
    this.state = ConnectionState.CLOSED;
    const events = [];
    for (const [requestId, download] of this._downloads) {
      events.push({
        type: 'transferFailed',
        requestId,
        reason: `link closed: ${reason}`,
        received: download.received,
      });
    }
    this._downloads.clear();
    this._uploads.clear();
    this._uploadOrder = [];
    events.push({ type: 'connectionClosed', code, reason, byPeer });
    return events;
  }

  _ourIndex(swarmId) {
    const index = this._ourSwarms.indexOf(swarmId);
    if (index < 0) throw new Error(`swarm ${swarmId} is not on this link: join() it first`);
    return index;
  }

  _requireNotClosed() {
    if (this.state === ConnectionState.CLOSED) throw new ConnectionStateError('the link is closed');
  }

  // --------------------------------------------------------------------------------- input

  /**
   * Process one data-channel message from the peer; never throws for peer input.
   *
   * A frame that breaks the protocol closes the link: the result then ends with
   * connectionClosed (byPeer false) and an ERROR frame is queued for the peer. The bytes of
   * DATA frames are copied into reassembly buffers, so `frame` may be reused afterwards.
   *
   * @param {ArrayBuffer|ArrayBufferView} frame
   * @returns {ConnectionEvent[]}
   */
  receive(frame) {
    if (this.state === ConnectionState.CLOSED) return [];
    try {
      const size = asBytes(frame).length;
      if (size > this.config.maxMessageSize) {
        throw new ProtocolError(
          ErrorCode.TOO_LARGE,
          `frame of ${size} bytes, we accept at most ${this.config.maxMessageSize}`,
        );
      }
      return this._handle(decode(frame));
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error; // a bug here, not the peer's input
      this._queue({ type: 'error', code: error.code, reason: clip(error.detail) });
      return this._shutdown(error.code, error.detail, false);
    }
  }

  _handle(message) {
    switch (message.type) {
      case 'data':
        return this._onData(message);
      case 'error':
        return this._shutdown(message.code, message.reason, true);
      case 'hello':
        return this._onHello(message);
      default:
        break;
    }
    if (this.state !== ConnectionState.OPEN) {
      throw violation(`${message.type.toUpperCase()} before HELLO`);
    }
    if (Object.hasOwn(KEY_EVENTS, message.type)) {
      const swarmId = this._peerSwarm(message.swarm);
      return [{ type: KEY_EVENTS[message.type], swarmId, key: message.key }];
    }
    return HANDLERS[message.type].call(this, message);
  }

  _onHello(hello) {
    if (this.state !== ConnectionState.AWAIT_HELLO) throw violation('second HELLO on the link');
    this.peer = hello;
    this.versionMinor = Math.min(hello.version_minor, VERSION_MINOR);
    this._peerSwarms = [...hello.swarms];
    this.state = ConnectionState.OPEN;
    return [
      {
        type: 'helloReceived',
        peerId: hello.peer_id,
        role: hello.role,
        uploadEnabled: Boolean(hello.flags & FLAG_UPLOAD),
        maxRequests: hello.max_requests,
        swarms: [...hello.swarms],
        versionMinor: this.versionMinor,
      },
    ];
  }

  _peerSwarm(index) {
    if (index >= this._peerSwarms.length) throw violation(`swarm index ${index} was never announced`);
    return this._peerSwarms[index];
  }

  _onJoin(join) {
    if (join.swarm !== this._peerSwarms.length) {
      throw violation(`JOIN index ${join.swarm}, expected ${this._peerSwarms.length}`);
    }
    if (this._peerSwarms.includes(join.swarm_id)) {
      throw violation(`JOIN of swarm ${join.swarm_id} already on the link`);
    }
    this._peerSwarms.push(join.swarm_id);
    return [{ type: 'swarmJoined', swarmId: join.swarm_id }];
  }

  _onHaveSet(haveSet) {
    return [
      {
        type: 'haveSetReceived',
        swarmId: this._peerSwarm(haveSet.swarm),
        base: haveSet.base,
        bitmap: haveSet.bitmap,
        initIds: haveSet.init_ids,
      },
    ];
  }

  _onRequest(request) {
    if (!this.config.uploadEnabled) throw violation('REQUEST sent to a peer that announced no upload');
    if (request.request_id <= this._lastPeerRequestId) {
      throw violation(`request id ${request.request_id} not above ${this._lastPeerRequestId}`);
    }
    this._lastPeerRequestId = request.request_id;
    if (this._uploads.size >= this.config.maxInboundRequests) {
      throw violation(
        `more than the ${this.config.maxInboundRequests} outstanding requests we allow`,
      );
    }
    const swarmId = this._peerSwarm(request.swarm);
    if (!this._ourSwarms.includes(swarmId)) {
      this._queue({ type: 'dont_have', request_id: request.request_id });
      return [];
    }
    this._uploads.set(request.request_id, new Upload(request));
    return [
      {
        type: 'requestReceived',
        requestId: request.request_id,
        swarmId,
        key: request.key,
        offset: request.offset,
        length: request.length,
      },
    ];
  }

  _onCancel(cancel) {
    if (this._uploads.delete(cancel.request_id)) {
      return [{ type: 'requestCancelled', requestId: cancel.request_id }];
    }
    if (cancel.request_id > this._lastPeerRequestId) {
      throw violation(`CANCEL of request ${cancel.request_id} that was never made`);
    }
    return []; // crossed with our answer: nothing left to stop
  }

  /** Our download for `requestId`; null if we cancelled it (frame was in flight). */
  _downloadFor(requestId, what) {
    const download = this._downloads.get(requestId);
    if (download === undefined) {
      if (this._cancelled.has(requestId)) return null;
      const state = requestId < this._nextRequestId ? 'finished' : 'unknown';
      throw violation(`${what} for ${state} request ${requestId}`);
    }
    return download;
  }

  _onResponse(response) {
    const rid = response.request_id;
    const download = this._downloadFor(rid, 'RESPONSE');
    if (download === null) return [];
    if (download.started) throw violation(`second RESPONSE for request ${rid}`);
    const available = response.total_size - download.offset;
    const expected = download.length === 0 ? available : Math.min(download.length, available);
    if (response.offset !== download.offset || response.length !== expected) {
      throw violation(
        `RESPONSE range ${response.offset}+${response.length} for request ${rid} does not ` +
          `match the requested ${download.offset}+${download.length || 'end'} of ` +
          `${response.total_size} bytes`,
      );
    }
    if (response.total_size > this.config.maxSegmentSize) {
      this.cancel(rid);
      return [
        {
          type: 'transferFailed',
          requestId: rid,
          reason:
            `segment of ${response.total_size} bytes exceeds maxSegmentSize ` +
            `${this.config.maxSegmentSize}`,
          received: 0,
        },
      ];
    }
    download.started = true;
    download.totalSize = response.total_size;
    download.nextOffset = response.offset;
    download.end = response.offset + response.length;
    const started = {
      type: 'transferStarted',
      requestId: rid,
      totalSize: response.total_size,
      offset: response.offset,
      length: response.length,
    };
    if (response.length === 0) return [started, this._complete(rid, download)];
    return [started];
  }

  _onData(data) {
    if (this.state !== ConnectionState.OPEN) throw violation('DATA before HELLO');
    const rid = data.request_id;
    const download = this._downloadFor(rid, 'DATA');
    if (download === null) return [];
    if (!download.started) throw violation(`DATA before RESPONSE for request ${rid}`);
    if (data.offset !== download.nextOffset) {
      throw violation(
        `DATA at offset ${data.offset} for request ${rid}, expected ${download.nextOffset}`,
      );
    }
    const size = data.payload.length;
    if (data.offset + size > download.end) {
      throw new ProtocolError(
        ErrorCode.TOO_LARGE,
        `DATA for request ${rid} runs to ${data.offset + size}, past the announced end ` +
          `${download.end}`,
      );
    }
    download.append(data.payload);
    download.nextOffset += size;
    const chunk = { type: 'transferChunk', requestId: rid, offset: data.offset, size };
    if (download.nextOffset === download.end) return [chunk, this._complete(rid, download)];
    return [chunk];
  }

  _complete(requestId, download) {
    this._downloads.delete(requestId);
    return {
      type: 'transferCompleted',
      requestId,
      data: download.buffer.subarray(0, download.received),
      totalSize: download.totalSize,
      offset: download.offset,
    };
  }

  _onRefusal(message) {
    const rid = message.request_id;
    const download = this._downloadFor(rid, message.type.toUpperCase());
    if (download === null) return [];
    this._downloads.delete(rid);
    if (message.type === 'busy') {
      return [
        {
          type: 'busyReceived',
          requestId: rid,
          retryAfterMs: message.retry_after_ms,
          received: download.received,
        },
      ];
    }
    return [{ type: 'dontHaveReceived', requestId: rid, received: download.received }];
  }
}

const HANDLERS = {
  join: PeerProtocol.prototype._onJoin,
  have_set: PeerProtocol.prototype._onHaveSet,
  request: PeerProtocol.prototype._onRequest,
  cancel: PeerProtocol.prototype._onCancel,
  response: PeerProtocol.prototype._onResponse,
  dont_have: PeerProtocol.prototype._onRefusal,
  busy: PeerProtocol.prototype._onRefusal,
};

function violation(detail) {
  return new ProtocolError(ErrorCode.VIOLATION, detail);
}

const utf8 = new TextEncoder();
const utf8Lenient = new TextDecoder();

/** `reason` cut to at most MAX_REASON_BYTES of UTF-8, at a character boundary. */
function clip(reason) {
  const raw = utf8.encode(String(reason));
  if (raw.length <= MAX_REASON_BYTES) return utf8Lenient.decode(raw);
  let end = MAX_REASON_BYTES;
  while (end > 0 && (raw[end] & 0xc0) === 0x80) end -= 1; // back to the cut character's start
  return utf8Lenient.decode(raw.subarray(0, end));
}

/**
 * The media sequence numbers of a haveSetReceived event, ascending.
 *
 * @param {{base: number, bitmap: Uint8Array}} haveSet
 * @returns {Generator<number>}
 */
export function haveSetSequences(haveSet) {
  return bitmapSequences(haveSet.base, haveSet.bitmap);
}
