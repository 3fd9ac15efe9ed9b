/**
 * The browser's side of the signalling protocol (docs/signaling.md) over a WebSocket: the twin
 * of `peer/signaling_client.py`.
 *
 * One {@link SignalingClient} per page. It keeps one WebSocket to the server alive: `hello` ->
 * `welcome` (peer id, ICE servers, heartbeat), `join` / `leave` with request ids, `signal`
 * relays, `stats` reports and `ping` heartbeats. When the socket drops it reconnects with
 * exponential backoff and jitter and **rejoins every swarm it was in**: the server hands out a
 * new peer id on every connection, so swarms are entered again under the new id. Peer links
 * made earlier do not depend on the socket (they know peers by their HELLO).
 *
 * Everything the server says goes to a handler object; nothing it sends can throw into the
 * caller: malformed messages are logged and dropped. Times are in seconds, like Python.
 *
 * @module core/signaling-client
 */

/** The server answered a request with an `error` message. */
export class SignalingError extends Error {
  /**
   * @param {string} code error code of docs/signaling.md (e.g. `swarm-full`)
   * @param {string} message
   */
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = 'SignalingError';
    /** The error code. */
    this.code = code;
  }
}

/**
 * @typedef {object} SignalingClientConfig
 * @property {string} url WebSocket URL of the server, e.g. `ws://127.0.0.1:8790/ws`
 * @property {string|null} [network] locality hint sent in `hello`
 * @property {string} [clientName] free-form client name sent in `hello` (server logs)
 * @property {string|null} [token] join token, when the server requires one
 * @property {number} [connectTimeout] seconds to open the socket and get `welcome` (5)
 * @property {number} [requestTimeout] seconds to wait for the answer to `join` / `leave` (5)
 * @property {number} [reconnectInitial] first wait before reconnecting, seconds; doubles per
 *   failure in a row (0.25)
 * @property {number} [reconnectMax] longest wait between attempts, seconds (10)
 */

/** Defaults of the optional {@link SignalingClientConfig} fields. */
export const DEFAULT_SIGNALING_CONFIG = Object.freeze({
  network: null,
  clientName: 'swarmcast-js/0.1',
  token: null,
  connectTimeout: 5,
  requestTimeout: 5,
  reconnectInitial: 0.25,
  reconnectMax: 10,
});

/**
 * `options` completed with defaults and checked; throws naming the bad field.
 *
 * @param {SignalingClientConfig} options
 * @returns {Required<SignalingClientConfig>}
 */
export function resolveSignalingConfig(options) {
  const config = { ...DEFAULT_SIGNALING_CONFIG, ...options };
  if (typeof config.url !== 'string' || !/^wss?:\/\//i.test(config.url)) {
    throw new TypeError(`signalling URL must be ws:// or wss://, got ${JSON.stringify(config.url)}`);
  }
  for (const name of ['connectTimeout', 'requestTimeout', 'reconnectMax']) {
    if (!(config[name] > 0)) throw new RangeError(`SignalingClientConfig.${name} must be > 0`);
  }
  if (!(config.reconnectInitial > 0 && config.reconnectInitial <= config.reconnectMax)) {
    throw new RangeError('reconnectInitial must be within (0, reconnectMax]');
  }
  return config;
}

/**
 * What the server said in `welcome` on the current connection.
 *
 * @typedef {object} Welcome
 * @property {string} peerId our id on this connection
 * @property {RTCIceServer[]} iceServers ICE servers for new peer connections (the only ones
 *   ever used: never a default public STUN server)
 * @property {number} heartbeat seconds between pings
 * @property {number} statsInterval seconds between `stats` reports
 */

/**
 * Receives what the server tells us; every method is optional and must not block.
 *
 * @typedef {object} SignalingHandler
 * @property {(welcome: Welcome) => void} [onWelcome]
 * @property {(swarm: string, peers: Array<{peer: string, role?: string}>) => void} [onJoined]
 * @property {(swarm: string, peer: string, role: string) => void} [onPeerJoined]
 * @property {(swarm: string, peer: string) => void} [onPeerLeft]
 * @property {(sender: string, swarm: string, data: object) => void} [onSignal]
 * @property {() => void} [onDisconnected]
 */

/**
 * Keeps a signalling session alive (see the module docstring).
 */
export class SignalingClient {
  /**
   * @param {SignalingClientConfig} config
   * @param {SignalingHandler} handler
   * @param {{WebSocket?: typeof WebSocket, random?: () => number, logger?: Console}} [env]
   *   injected for tests; the page's globals by default
   */
  constructor(config, handler, env = {}) {
    /** The resolved configuration. */
    this.config = resolveSignalingConfig(config);
    this.handler = handler;
    /** @type {Welcome|null} the current connection's welcome, null while disconnected */
    this.welcome = null;
    /** Connections welcomed so far (1 + reconnects). */
    this.connections = 0;
    this._WebSocket = env.WebSocket ?? globalThis.WebSocket;
    this._random = env.random ?? Math.random;
    this._log = env.logger ?? console;
    /** @type {Map<string, {swarm: string, role: string, capacity: number|null}>} */
    this._memberships = new Map();
    /** @type {WebSocket|null} */
    this._ws = null;
    /** @type {Map<number, {resolve: Function, reject: Function, timer: any}>} */
    this._pending = new Map();
    this._nextId = 1;
    this._failures = 0;
    this._closing = false;
    this._started = false;
    this._timers = new Set();
    this._heartbeat = null;
    /** @type {Array<{resolve: Function, reject: Function}>} */
    this._readyWaiters = [];
  }

  /** @returns {string|null} our id on the current connection */
  get peerId() {
    return this.welcome ? this.welcome.peerId : null;
  }

  /** @returns {boolean} true while a welcomed socket is open */
  get connected() {
    return this.welcome !== null;
  }

  /** @returns {string[]} swarms we are (or will be, after a reconnect) members of */
  get swarms() {
    return [...this._memberships.keys()];
  }

  /** Start connecting (and reconnecting) in the background. */
  start() {
    if (this._started) return;
    if (typeof this._WebSocket !== 'function') {
      throw new Error('no WebSocket implementation: P2P needs a browser (or pass env.WebSocket)');
    }
    this._started = true;
    this._connect();
  }

  /**
   * Resolves with the welcome of a connection; rejects after `timeout` seconds.
   *
   * @param {number} [timeout]
   * @returns {Promise<Welcome>}
   */
  waitReady(timeout = this.config.connectTimeout) {
    if (this.welcome) return Promise.resolve(this.welcome);
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject };
      this._readyWaiters.push(waiter);
      this._after(timeout, () => {
        const index = this._readyWaiters.indexOf(waiter);
        if (index >= 0) {
          this._readyWaiters.splice(index, 1);
          reject(new Error(`signalling server ${this.config.url} did not welcome us in ${timeout}s`));
        }
      });
    });
  }

  /** Close the socket and stop reconnecting (leaving every swarm). */
  close() {
    this._closing = true;
    for (const timer of this._timers) clearTimeout(timer);
    this._timers.clear();
    this._stopHeartbeat();
    const ws = this._ws;
    this._ws = null;
    this.welcome = null;
    if (ws) {
      try {
        ws.close(1000, 'leaving');
      } catch {
        // already closing
      }
    }
    this._failPending(new Error('signalling client closed'));
    for (const waiter of this._readyWaiters.splice(0)) {
      waiter.reject(new Error('signalling client closed'));
    }
  }

  // ------------------------------------------------------------------------------ connection

  _connect() {
    if (this._closing) return;
    let ws;
    try {
      ws = new this._WebSocket(this.config.url);
    } catch (error) {
      this._log.warn(`swarmcast: signalling ${this.config.url}: ${error}`);
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    let welcomed = false;
    const timer = this._after(this.config.connectTimeout, () => {
      if (!welcomed && this._ws === ws) {
        this._log.warn(`swarmcast: signalling ${this.config.url}: no welcome in time`);
        ws.close();
        this._onClosed(ws, false);
      }
    });
    ws.onopen = () => {
      const hello = { type: 'hello', id: 0, client: this.config.clientName };
      if (this.config.network) hello.network = this.config.network;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (event) => {
      if (this._ws !== ws) return;
      const data = parse(event.data);
      if (data === null) {
        this._log.warn('swarmcast: signalling: dropping a non-JSON message');
        return;
      }
      if (!welcomed) {
        if (data.type !== 'welcome' || typeof data.peer !== 'string') {
          this._log.warn(`swarmcast: expected welcome, got ${String(event.data).slice(0, 200)}`);
          ws.close();
          return;
        }
        welcomed = true;
        clearTimeout(timer);
        this._timers.delete(timer);
        this._onWelcome(data);
        return;
      }
      try {
        this._dispatch(data);
      } catch (error) {
        this._log.error(`swarmcast: signalling: handling ${data.type} failed`, error);
      }
    };
    ws.onerror = () => {}; // always followed by close, which does the work
    ws.onclose = (event) => {
      if (this._ws === ws && event && event.code && event.code !== 1000 && welcomed) {
        this._log.warn(`swarmcast: signalling closed by server (${event.code} ${event.reason || ''})`);
      }
      this._onClosed(ws, welcomed);
    };
  }

  _onWelcome(data) {
    this._failures = 0;
    const ice = Array.isArray(data.ice_servers) ? data.ice_servers : [];
    this.welcome = {
      peerId: data.peer,
      iceServers: ice.filter((entry) => entry && typeof entry === 'object'),
      heartbeat: positive(data.heartbeat, 15),
      statsInterval: positive(data.stats_interval, 10),
    };
    this.connections += 1;
    this._startHeartbeat(this.welcome.heartbeat);
    for (const waiter of this._readyWaiters.splice(0)) waiter.resolve(this.welcome);
    this.handler.onWelcome?.(this.welcome);
    for (const membership of this._memberships.values()) {
      this._join(membership).catch((error) => {
        this._log.warn(`swarmcast: rejoining ${membership.swarm} failed: ${error.message}`);
      });
    }
  }

  _onClosed(ws, welcomed) {
    if (this._ws !== ws) return;
    this._ws = null;
    this.welcome = null;
    this._stopHeartbeat();
    this._failPending(new Error('signalling connection lost'));
    if (this._closing) return;
    if (!welcomed) this._failures += 1;
    if (welcomed) this.handler.onDisconnected?.();
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    if (this._closing) return;
    const cfg = this.config;
    const base = Math.min(
      cfg.reconnectMax,
      cfg.reconnectInitial * 2 ** Math.min(Math.max(this._failures - 1, 0), 30),
    );
    // Jitter: a restarted server must not see every peer come back in the same instant.
    const delay = base * (0.5 + 0.5 * this._random());
    this._after(delay, () => this._connect());
  }

  _startHeartbeat(interval) {
    this._stopHeartbeat();
    // Any message is a heartbeat; a ping every interval is the simple, always-right choice.
    this._heartbeat = setInterval(() => this._send({ type: 'ping' }), interval * 1000);
  }

  _stopHeartbeat() {
    if (this._heartbeat !== null) clearInterval(this._heartbeat);
    this._heartbeat = null;
  }

  _after(seconds, fn) {
    const timer = setTimeout(() => {
      this._timers.delete(timer);
      fn();
    }, seconds * 1000);
    this._timers.add(timer);
    return timer;
  }

  // ------------------------------------------------------------------------------- inbound

  _dispatch(data) {
    const h = this.handler;
    switch (data.type) {
      case 'joined':
      case 'left':
      case 'pong':
        this._resolve(data.id, data);
        break;
      case 'error':
        this._onError(data);
        break;
      case 'signal':
        if (typeof data.from === 'string' && typeof data.swarm === 'string' && isObject(data.data)) {
          h.onSignal?.(data.from, data.swarm, data.data);
        }
        break;
      case 'peer-joined':
        if (typeof data.peer === 'string' && typeof data.swarm === 'string') {
          h.onPeerJoined?.(data.swarm, data.peer, String(data.role));
        }
        break;
      case 'peer-left':
        if (typeof data.peer === 'string' && typeof data.swarm === 'string') {
          h.onPeerLeft?.(data.swarm, data.peer);
        }
        break;
      default:
        break; // unknown types are ignored (forward compatibility)
    }
  }

  _onError(data) {
    const code = String(data.code);
    const message = String(data.message ?? '');
    const pending = typeof data.ref === 'number' ? this._pending.get(data.ref) : undefined;
    if (pending) {
      this._pending.delete(data.ref);
      clearTimeout(pending.timer);
      pending.reject(new SignalingError(code, message));
    } else if (code !== 'unknown-peer') {
      // unknown-peer is normal churn (the target just left)
      this._log.warn(`swarmcast: signalling error ${code}: ${message}`);
    }
  }

  _resolve(ref, data) {
    const pending = typeof ref === 'number' ? this._pending.get(ref) : undefined;
    if (!pending) return;
    this._pending.delete(ref);
    clearTimeout(pending.timer);
    pending.resolve(data);
  }

  _failPending(error) {
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const p of pending) {
      clearTimeout(p.timer);
      p.reject(error);
    }
  }

  // ------------------------------------------------------------------------------ outbound

  /**
   * Join `swarm` (and rejoin it after every reconnect); the sample goes to
   * `handler.onJoined`. Rejects with {@link SignalingError} if refused.
   *
   * @param {string} swarm
   * @param {{role?: 'viewer'|'seed', capacity?: number|null}} [options]
   * @returns {Promise<void>}
   */
  async join(swarm, { role = 'viewer', capacity = null } = {}) {
    const membership = { swarm, role, capacity };
    this._memberships.set(swarm, membership);
    if (!this.connected) return;
    try {
      await this._join(membership);
    } catch (error) {
      if (error instanceof SignalingError) this._memberships.delete(swarm);
      throw error;
    }
  }

  /**
   * Leave and rejoin `swarm` to be handed a fresh sample of peers.
   *
   * @param {string} swarm
   * @returns {Promise<void>}
   */
  async resample(swarm) {
    const membership = this._memberships.get(swarm);
    if (!membership || !this.connected) return;
    try {
      await this._request({ type: 'leave', swarm });
    } catch (error) {
      if (!(error instanceof SignalingError)) throw error;
    }
    await this._join(membership);
  }

  /**
   * Leave `swarm` for good.
   *
   * @param {string} swarm
   * @returns {Promise<void>}
   */
  async leave(swarm) {
    if (this._memberships.delete(swarm) && this.connected) {
      await this._request({ type: 'leave', swarm }).catch(() => {});
    }
  }

  async _join(membership) {
    const message = { type: 'join', swarm: membership.swarm };
    if (membership.role !== 'viewer') message.role = membership.role;
    if (membership.capacity !== null) message.capacity = membership.capacity;
    if (this.config.token) message.token = this.config.token;
    let answer;
    try {
      answer = await this._request(message);
    } catch (error) {
      if (error instanceof SignalingError && error.code === 'already-joined') return;
      throw error;
    }
    const peers = Array.isArray(answer.peers) ? answer.peers : [];
    const valid = peers.filter((p) => isObject(p) && typeof p.peer === 'string');
    this.handler.onJoined?.(membership.swarm, valid);
  }

  /**
   * Relay negotiation `data` (`{sdp}` or `{candidate}`) to peer `to` in `swarm`.
   *
   * @param {string} to
   * @param {string} swarm
   * @param {object} data
   */
  signal(to, swarm, data) {
    this._send({ type: 'signal', to, swarm, data });
  }

  /**
   * Report peer `peer` (its signalling id) for misbehaving in `swarm` (docs/signaling.md):
   * `reason` is `bad-data`, `protocol`, `flood` or `unresponsive`. Best effort: nothing is sent
   * while disconnected, and the server answers nothing on success.
   *
   * @param {string} swarm
   * @param {string} peer
   * @param {string} reason
   */
  sendReport(swarm, peer, reason) {
    if (this.connected) this._send({ type: 'report', swarm, peer, reason });
  }

  /**
   * Report cumulative counters for `swarm` (`http_bytes`, `p2p_bytes`, `uploaded_bytes`,
   * `stalls`).
   *
   * @param {string} swarm
   * @param {Record<string, number>} counters
   */
  sendStats(swarm, counters) {
    if (this.connected) this._send({ type: 'stats', swarm, ...counters });
  }

  _request(message) {
    if (!this.connected) return Promise.reject(new Error('not connected to the signalling server'));
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this._pending.delete(id)) {
          reject(new Error(`signalling: no answer to ${message.type} in ${this.config.requestTimeout}s`));
        }
      }, this.config.requestTimeout * 1000);
      this._pending.set(id, { resolve, reject, timer });
      this._send({ ...message, id });
    });
  }

  _send(message) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    try {
      ws.send(JSON.stringify(message));
      return true;
    } catch (error) {
      this._log.debug?.(`swarmcast: signalling send failed: ${error}`);
      return false;
    }
  }
}

function parse(text) {
  if (typeof text !== 'string') return null;
  try {
    const data = JSON.parse(text);
    return isObject(data) ? data : null;
  } catch {
    return null;
  }
}

function isObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function positive(value, fallback) {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : fallback;
}
