/**
 * Connections to other peers over WebRTC: the browser twin of `peer/swarm.py` and
 * `peer/link.py`.
 *
 * - {@link PeerLink} moves bytes between one RTCDataChannel and one sans-IO
 *   {@link PeerProtocol}: every message goes to `receive`, events go to the owner, and
 *   {@link PeerLink#flush} writes `dataToSend` only up to a high watermark of
 *   `bufferedAmount`; the rest waits in the protocol (where a cancelled transfer costs
 *   nothing) until `bufferedamountlow` fires at the low watermark. Memory stays bounded, and
 *   control frames never wait behind megabytes of DATA. Chunks are at most 64 KiB (the
 *   protocol's frame limit, the size every browser accepts).
 * - {@link PeerSwarm} owns the {@link SignalingClient} and the links: one RTCPeerConnection
 *   with one ordered data channel per remote peer, covering every swarm both take part in.
 *   The newcomer offers to the peers of its `joined` sample; ICE candidates trickle both ways
 *   (buffered until the remote description is set); glare is settled by signalling id (the
 *   lower id is polite and drops its own offer). At most `maxPeers` links plus negotiations;
 *   idle links are dropped when the budget is full; bans close the link with ERROR banned and
 *   refuse the peer for `banDuration`.
 * - ICE servers come **only** from the server's welcome: never a default public STUN server.
 *
 * @module core/swarm
 */

import { ConnectionState, PeerProtocol } from './connection.js';
import { ErrorCode } from './protocol.js';
import { SignalingClient } from './signaling-client.js';

/** Label of the swarmcast data channel (informative only, docs/protocol.md §2). */
export const CHANNEL_LABEL = 'swarmcast';

/**
 * @typedef {object} SwarmConfig
 * @property {number} [maxPeers] most links (plus negotiations in progress) at once (10)
 * @property {number} [minPeers] below this many links, ask signalling for a fresh sample (3)
 * @property {number} [connectTimeout] seconds from offer to the peer's HELLO (10)
 * @property {number} [resamplePeriod] seconds between two resamples of one swarm (5)
 * @property {number} [idleTimeout] a link with no useful traffic for this long is dropped
 *   when the budget is full (30)
 * @property {number} [banDuration] seconds a banned peer is refused (600)
 * @property {number} [maintenanceInterval] seconds between housekeeping passes (1)
 * @property {'viewer'|'seed'} [role] what we announce in HELLO and to signalling ('viewer')
 * @property {boolean} [uploadEnabled] whether we serve segments (true)
 * @property {number} [maxInboundRequests] requests a peer may have outstanding with us (16)
 * @property {number} [highWatermark] stop writing once `bufferedAmount` reaches this (1 MiB)
 * @property {number} [lowWatermark] resume at this (`bufferedAmountLowThreshold`, 256 KiB)
 */

/** Defaults of {@link SwarmConfig}, the same as Python's SwarmConfig and LinkConfig. */
export const DEFAULT_SWARM_CONFIG = Object.freeze({
  maxPeers: 10,
  minPeers: 3,
  connectTimeout: 10,
  resamplePeriod: 5,
  idleTimeout: 30,
  banDuration: 600,
  maintenanceInterval: 1,
  role: 'viewer',
  uploadEnabled: true,
  maxInboundRequests: 16,
  highWatermark: 1024 * 1024,
  lowWatermark: 256 * 1024,
});

/**
 * `options` completed with defaults and checked; throws naming the bad field.
 *
 * @param {SwarmConfig} [options]
 * @returns {Required<SwarmConfig>}
 */
export function resolveSwarmConfig(options = {}) {
  const config = { ...DEFAULT_SWARM_CONFIG, ...options };
  if (!Number.isInteger(config.maxPeers) || config.maxPeers < 1) {
    throw new RangeError(`SwarmConfig.maxPeers must be an integer >= 1, got ${config.maxPeers}`);
  }
  if (!Number.isInteger(config.minPeers) || config.minPeers < 0) {
    throw new RangeError(`SwarmConfig.minPeers must be an integer >= 0, got ${config.minPeers}`);
  }
  for (const name of ['connectTimeout', 'resamplePeriod', 'idleTimeout', 'banDuration']) {
    if (!(config[name] > 0)) throw new RangeError(`SwarmConfig.${name} must be > 0`);
  }
  if (!(config.lowWatermark >= 0 && config.lowWatermark < config.highWatermark)) {
    throw new RangeError('SwarmConfig.lowWatermark must be within 0..highWatermark-1');
  }
  return config;
}

/**
 * One peer-to-peer link: a data channel driven by a {@link PeerProtocol} (see the module
 * docstring). `onEvent(link, event)` receives every protocol event, ending with
 * `connectionClosed`.
 */
export class PeerLink {
  /**
   * @param {RTCDataChannel} channel
   * @param {PeerProtocol} protocol
   * @param {{pc?: RTCPeerConnection|null, onEvent: (link: PeerLink, event: object) => void,
   *   highWatermark?: number, lowWatermark?: number, logger?: Console}} options
   */
  constructor(channel, protocol, { pc = null, onEvent, highWatermark, lowWatermark, logger }) {
    this.channel = channel;
    this.protocol = protocol;
    this.pc = pc;
    this.closed = false;
    /** Traffic counters: data-channel messages and bytes each way. */
    this.stats = { framesSent: 0, bytesSent: 0, framesReceived: 0, bytesReceived: 0 };
    this._onEvent = onEvent;
    this._high = highWatermark ?? DEFAULT_SWARM_CONFIG.highWatermark;
    this._log = logger ?? console;
    channel.binaryType = 'arraybuffer';
    channel.bufferedAmountLowThreshold = lowWatermark ?? DEFAULT_SWARM_CONFIG.lowWatermark;
    channel.onmessage = (event) => this._onMessage(event.data);
    channel.onbufferedamountlow = () => this.flush();
    channel.onclose = () => this._deliver(this.protocol.connectionLost());
    channel.onopen = () => this.flush();
    if (pc) {
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === 'failed' || pc.connectionState === 'closed') {
          this._deliver(this.protocol.connectionLost());
        }
      };
    }
    if (channel.readyState === 'open') this.flush();
  }

  /** @returns {string|null} the remote peer's id once its HELLO arrived */
  get peerId() {
    return this.protocol.peerId;
  }

  /** Write what the protocol has queued, up to the high watermark of the channel buffer. */
  flush() {
    const channel = this.channel;
    if (channel.readyState !== 'open') return;
    const room = Math.max(0, this._high - channel.bufferedAmount);
    const frames = this.protocol.dataToSend(room);
    try {
      for (const frame of frames) {
        channel.send(frame);
        this.stats.framesSent += 1;
        this.stats.bytesSent += frame.byteLength;
      }
    } catch (error) {
      this._log.warn(`swarmcast: link to ${this.peerId}: send failed: ${error}`);
      this._deliver(this.protocol.connectionLost());
    }
  }

  _onMessage(data) {
    this.stats.framesReceived += 1;
    let events;
    if (typeof data === 'string') {
      this.stats.bytesReceived += data.length;
      events = this.protocol.close(ErrorCode.MALFORMED, 'text message on a binary channel');
    } else {
      this.stats.bytesReceived += data.byteLength;
      events = this.protocol.receive(data);
    }
    this._deliver(events);
    this.flush();
  }

  _deliver(events) {
    for (const event of events) {
      try {
        this._onEvent(this, event);
      } catch (error) {
        this._log.error(`swarmcast: link to ${this.peerId}: handler failed on ${event.type}`, error);
        if (!this.closed && event.type !== 'connectionClosed') {
          this.flush();
          this._deliver(this.protocol.close(ErrorCode.GOING_AWAY, 'internal error'));
        }
      }
      if (event.type === 'connectionClosed') this._finish();
    }
  }

  _finish() {
    if (this.closed) return;
    this.closed = true;
    this.flush(); // our ERROR frame, if any
    const channel = this.channel;
    const pc = this.pc;
    // Give the ERROR frame a moment to leave before the channel resets.
    const shut = () => {
      try {
        channel.close();
      } catch {
        // closing already
      }
      try {
        pc?.close();
      } catch {
        // closed already
      }
    };
    if (channel.readyState === 'open' && channel.bufferedAmount > 0) setTimeout(shut, 200);
    else shut();
  }

  /**
   * Close the link: ERROR frame to the peer, open requests failed, channel and pc closed.
   *
   * @param {number} [code]
   * @param {string} [reason]
   */
  close(code = ErrorCode.GOING_AWAY, reason = '') {
    this._deliver(this.protocol.close(code, reason));
    if (!this.closed) this._deliver(this.protocol.connectionLost());
  }
}

/**
 * What the owner (the engine) is told about links; called synchronously.
 *
 * @typedef {object} SwarmListener
 * @property {(link: PeerLink, hello: object) => void} linkOpened a link is usable
 * @property {(link: PeerLink, event: object) => void} linkEvent any other event of an open link
 * @property {(link: PeerLink, event: object) => void} linkClosed an open link ended
 */

/** The peer-to-peer connections of one page (see the module docstring). */
export class PeerSwarm {
  /**
   * @param {SwarmConfig} config
   * @param {import('./signaling-client.js').SignalingClientConfig} signaling
   * @param {SwarmListener} listener
   * @param {{RTCPeerConnection?: typeof RTCPeerConnection, WebSocket?: typeof WebSocket,
   *   now?: () => number, logger?: Console}} [env] injected for tests; globals by default
   */
  constructor(config, signaling, listener, env = {}) {
    /** The resolved configuration. */
    this.config = resolveSwarmConfig(config);
    this.listener = listener;
    this._RTCPeerConnection = env.RTCPeerConnection ?? globalThis.RTCPeerConnection;
    this._now = env.now ?? (() => performance.now() / 1000);
    this._log = env.logger ?? console;
    this.signaling = new SignalingClient(signaling, this, env);
    /** @type {string|null} our HELLO id: the first id signalling gave us */
    this.localId = null;
    /** @type {Map<string, PeerLink>} open links by the remote peer's HELLO id */
    this.links = new Map();
    /** @type {string[]} swarm ids we take part in, in join order */
    this.swarms = [];
    /** @type {Map<string, number>} peer ids refused until the given time */
    this.banned = new Map();
    /** Counters: offers sent, offers answered, negotiations failed, duplicates, bans. */
    this.stats = { offers: 0, answers: 0, failed: 0, duplicates: 0, bans: 0 };
    /** @type {Map<string, object>} negotiations by remote signalling id */
    this._pending = new Map();
    /** @type {Map<PeerLink, string>} link -> remote signalling id */
    this._linkSig = new Map();
    /** @type {Map<string, number>} */
    this._useful = new Map();
    /** @type {Map<string, number>} */
    this._resampled = new Map();
    /** @type {Map<string, string[]>} unoffered peers of the last sample, by swarm */
    this._spare = new Map();
    this._maintenance = null;
    this._closing = false;
  }

  // ------------------------------------------------------------------------------ lifecycle

  /**
   * Connect to signalling and wait for the first welcome.
   *
   * @param {number} [timeout] seconds
   */
  async start(timeout = 10) {
    if (typeof this._RTCPeerConnection !== 'function') {
      throw new Error('this browser has no RTCPeerConnection: P2P is off');
    }
    this.signaling.start();
    await this.signaling.waitReady(timeout);
    this._maintenance = setInterval(() => {
      try {
        this._maintainOnce(this._now());
      } catch (error) {
        this._log.error('swarmcast: swarm maintenance failed', error);
      }
    }, this.config.maintenanceInterval * 1000);
  }

  /**
   * Take part in `swarmId`: JOIN on every link, then join it at signalling.
   *
   * @param {string} swarmId
   */
  async join(swarmId) {
    if (this.swarms.includes(swarmId)) return;
    this.swarms.push(swarmId);
    for (const link of this._linkSig.keys()) {
      if (!link.closed && link.protocol.state !== ConnectionState.CLOSED) {
        link.protocol.join(swarmId);
        link.flush();
      }
    }
    await this.signaling.join(swarmId, { role: this.config.role });
  }

  /** Close every link (ERROR going_away), every negotiation and the signalling socket. */
  close() {
    this._closing = true;
    if (this._maintenance !== null) clearInterval(this._maintenance);
    for (const neg of [...this._pending.values()]) this._abandon(neg);
    for (const link of new Set([...this.links.values(), ...this._linkSig.keys()])) {
      link.close(ErrorCode.GOING_AWAY, 'leaving');
    }
    this.signaling.close();
  }

  // ----------------------------------------------------------------------------- policy API

  /** Record useful traffic with `peerId` (keeps its link from being dropped as idle). */
  touch(peerId) {
    this._useful.set(peerId, this._now());
  }

  /**
   * Refuse `peerId` for `banDuration` and close its link with ERROR banned.
   *
   * @param {string} peerId
   * @param {string} reason
   */
  ban(peerId, reason, { report = 'bad-data' } = {}) {
    const until = this._now() + this.config.banDuration;
    this.banned.set(peerId, until);
    this.stats.bans += 1;
    const link = this.links.get(peerId);
    const sig = link ? this._linkSig.get(link) : undefined;
    if (sig) this.banned.set(sig, until);
    // Tell signalling too: a peer reported by enough members is left out of samples.
    if (sig) for (const swarm of this.signaling.swarms) this.signaling.sendReport(swarm, sig, report);
    this._log.warn(`swarmcast: banning peer ${peerId} (signalling id ${sig}): ${reason}`);
    if (link && !link.closed) link.close(ErrorCode.BANNED, reason.slice(0, 200));
  }

  /** @returns {boolean} whether `peerId` is refused right now */
  isBanned(peerId) {
    const until = this.banned.get(peerId);
    return until !== undefined && until > this._now();
  }

  // ------------------------------------------------------------------ signalling handler

  /** @param {import('./signaling-client.js').Welcome} welcome */
  onWelcome(welcome) {
    if (this.localId === null) this.localId = welcome.peerId;
  }

  /**
   * Offer to the sampled peers, seeds first, within the budget; keep the rest as spares for
   * when a connection fails or is refused.
   */
  onJoined(swarm, peers) {
    const ordered = [...peers].sort((a, b) => (a.role !== 'seed') - (b.role !== 'seed'));
    this._spare.set(swarm, ordered.map((entry) => entry.peer));
    this._offerSpares(swarm);
  }

  _offerSpares(swarm) {
    const spare = this._spare.get(swarm);
    if (!spare || !spare.length) return;
    const linked = new Set(this._linkSig.values());
    while (spare.length && this._room() > 0 && this.swarms.includes(swarm) && !this._closing) {
      const remote = spare.shift();
      if (remote === this.signaling.peerId || this._pending.has(remote)) continue;
      if (this.isBanned(remote) || linked.has(remote)) continue;
      this._offer(remote, swarm);
    }
  }

  onPeerJoined() {
    // Nothing to do: the newcomer does the connecting.
  }

  /** An unfinished negotiation with a peer that left is abandoned at once. */
  onPeerLeft(swarm, peer) {
    const neg = this._pending.get(peer);
    if (neg && !neg.opened) this._abandon(neg);
  }

  /** Offers, answers and trickled candidates from other peers. */
  onSignal(sender, swarm, data) {
    if ('sdp' in data && data.sdp && typeof data.sdp === 'object') {
      const { type, sdp } = data.sdp;
      if (typeof sdp !== 'string') return;
      if (type === 'offer') this._onOffer(sender, swarm, sdp);
      else if (type === 'answer') this._onAnswer(sender, sdp);
    } else if ('candidate' in data) {
      this._onCandidate(sender, data.candidate);
    } else if ('busy' in data) {
      // Our offer was refused (its budget is full): free the slot now, not at the timeout.
      const neg = this._pending.get(sender);
      if (neg && neg.offerer && !neg.opened) {
        this.stats.failed += 1;
        this._abandon(neg);
      }
    }
  }

  onDisconnected() {
    this._log.info?.(`swarmcast: signalling lost; ${this.links.size} peer links stay open`);
  }

  // ---------------------------------------------------------------------------- negotiation

  _room() {
    return this.config.maxPeers - this.links.size - this._pending.size;
  }

  _newNegotiation(remote, swarm, offerer) {
    const iceServers = this.signaling.welcome ? this.signaling.welcome.iceServers : [];
    const pc = new this._RTCPeerConnection({ iceServers });
    const neg = {
      remote,
      swarm,
      pc,
      offerer,
      link: null,
      opened: false,
      remoteSet: false,
      candidates: [],
      timer: null,
    };
    pc.onicecandidate = (event) => {
      const c = event.candidate;
      if (c && !c.candidate) return; // some browsers signal the end with an empty candidate
      const init = c ? (typeof c.toJSON === 'function' ? c.toJSON() : c) : null;
      this.signaling.signal(remote, swarm, { candidate: init ? candidateInit(init) : null });
    };
    neg.timer = setTimeout(() => {
      if (this._pending.get(remote) === neg && !neg.opened) {
        this.stats.failed += 1;
        this._log.info?.(`swarmcast: connection to ${remote} timed out`);
        this._abandon(neg);
      }
    }, this.config.connectTimeout * 1000);
    this._pending.set(remote, neg);
    return neg;
  }

  async _offer(remote, swarm) {
    const neg = this._newNegotiation(remote, swarm, true);
    this.stats.offers += 1;
    try {
      const channel = neg.pc.createDataChannel(CHANNEL_LABEL, { ordered: true });
      neg.link = this._makeLink(channel, neg);
      const offer = await neg.pc.createOffer();
      await neg.pc.setLocalDescription(offer);
      const local = neg.pc.localDescription;
      this.signaling.signal(remote, swarm, { sdp: { type: 'offer', sdp: local.sdp } });
    } catch (error) {
      this._failed(neg, error);
    }
  }

  async _onAnswer(sender, sdp) {
    const neg = this._pending.get(sender);
    if (!neg || !neg.offerer || neg.remoteSet) return;
    try {
      await neg.pc.setRemoteDescription({ type: 'answer', sdp });
      await this._remoteSet(neg);
    } catch (error) {
      this._failed(neg, error);
    }
  }

  _onOffer(sender, swarm, sdp) {
    if (this._closing || this.isBanned(sender) || !this.swarms.includes(swarm)) return;
    const existing = this._pending.get(sender);
    if (existing) {
      const mine = this.signaling.peerId ?? '';
      if (!existing.offerer || mine > sender) return; // impolite side of a glare: keep ours
      this._abandon(existing); // polite: drop our offer, answer theirs
    } else if (this._room() <= 0) {
      // Say so at once: the offerer moves on instead of waiting for its connect timeout.
      this.signaling.signal(sender, swarm, { busy: 'full' });
      return;
    }
    this._answer(sender, swarm, sdp);
  }

  async _answer(remote, swarm, sdp) {
    const neg = this._newNegotiation(remote, swarm, false);
    this.stats.answers += 1;
    neg.pc.ondatachannel = (event) => {
      // Attach the link now: the peer's HELLO may be the very next message.
      if (neg.link === null) neg.link = this._makeLink(event.channel, neg);
    };
    try {
      await neg.pc.setRemoteDescription({ type: 'offer', sdp });
      await this._remoteSet(neg);
      const answer = await neg.pc.createAnswer();
      await neg.pc.setLocalDescription(answer);
      const local = neg.pc.localDescription;
      this.signaling.signal(remote, swarm, { sdp: { type: 'answer', sdp: local.sdp } });
    } catch (error) {
      this._failed(neg, error);
    }
  }

  async _remoteSet(neg) {
    neg.remoteSet = true;
    const buffered = neg.candidates;
    neg.candidates = [];
    for (const candidate of buffered) await addCandidate(neg.pc, candidate);
  }

  _onCandidate(sender, candidate) {
    const neg = this._pending.get(sender);
    if (!neg || candidate === null || typeof candidate !== 'object') return;
    if (neg.remoteSet) addCandidate(neg.pc, candidate);
    else if (neg.candidates.length < 64) neg.candidates.push(candidate);
  }

  _failed(neg, error) {
    if (neg.opened) return;
    this.stats.failed += 1;
    this._log.info?.(`swarmcast: connection to ${neg.remote} failed: ${error?.message ?? error}`);
    this._abandon(neg);
  }

  _abandon(neg) {
    if (this._pending.get(neg.remote) === neg) this._pending.delete(neg.remote);
    clearTimeout(neg.timer);
    if (neg.link && !neg.opened) neg.link.close(ErrorCode.GOING_AWAY, 'connection abandoned');
    if (!neg.opened) {
      try {
        neg.pc.close();
      } catch {
        // closed already
      }
    }
  }

  // ---------------------------------------------------------------------------------- links

  _makeLink(channel, neg) {
    const protocol = new PeerProtocol({
      peerId: this.localId,
      swarms: [...this.swarms],
      role: this.config.role,
      uploadEnabled: this.config.uploadEnabled,
      maxInboundRequests: this.config.maxInboundRequests,
    });
    const link = new PeerLink(channel, protocol, {
      pc: neg.pc,
      onEvent: (l, event) => this._onEvent(l, event, neg),
      highWatermark: this.config.highWatermark,
      lowWatermark: this.config.lowWatermark,
      logger: this._log,
    });
    this._linkSig.set(link, neg.remote);
    return link;
  }

  _onEvent(link, event, neg) {
    if (event.type === 'helloReceived') {
      this._onHello(link, event, neg);
    } else if (event.type === 'connectionClosed') {
      this._linkSig.delete(link);
      if (this.links.get(link.peerId ?? '') === link) {
        this.links.delete(link.peerId ?? '');
        this.listener.linkClosed(link, event);
      }
    } else if (this.links.get(link.peerId ?? '') === link) {
      this.listener.linkEvent(link, event);
    }
  }

  _onHello(link, hello, neg) {
    const pid = hello.peerId;
    if (this._pending.get(neg.remote) === neg) this._pending.delete(neg.remote);
    clearTimeout(neg.timer);
    let refusal = null;
    if (pid === this.localId) refusal = [ErrorCode.GOING_AWAY, 'connected to myself'];
    else if (this.isBanned(pid) || this.isBanned(this._linkSig.get(link) ?? '')) {
      refusal = [ErrorCode.BANNED, 'banned'];
    } else if (this.links.has(pid)) {
      this.stats.duplicates += 1;
      refusal = [ErrorCode.GOING_AWAY, 'duplicate link'];
    } else if (this.links.size >= this.config.maxPeers) {
      refusal = [ErrorCode.GOING_AWAY, 'too many peers'];
    }
    if (refusal) {
      link.close(refusal[0], refusal[1]);
      return;
    }
    neg.opened = true;
    this.links.set(pid, link);
    this._useful.set(pid, this._now());
    this.listener.linkOpened(link, hello);
    link.flush();
  }

  // ---------------------------------------------------------------------------- maintenance

  _maintainOnce(now) {
    for (const [pid, until] of this.banned) if (until <= now) this.banned.delete(pid);
    if (this.links.size + this._pending.size >= this.config.maxPeers) {
      const cutoff = now - this.config.idleTimeout;
      let idle = null;
      for (const [pid, link] of this.links) {
        const used = this._useful.get(pid) ?? now;
        if (used < cutoff && (idle === null || used < idle[0])) idle = [used, link];
      }
      if (idle) idle[1].close(ErrorCode.GOING_AWAY, 'idle');
    }
    if (this.links.size < this.config.minPeers && this.signaling.connected) {
      for (const swarmId of this.swarms) {
        if (now - (this._resampled.get(swarmId) ?? -Infinity) >= this.config.resamplePeriod) {
          this._resampled.set(swarmId, now);
          this.signaling.resample(swarmId).catch(() => {});
        }
      }
    }
    for (const swarmId of this.swarms) this._offerSpares(swarmId);
  }
}

/** Only the keys docs/signaling.md allows in a relayed candidate. */
function candidateInit(c) {
  const init = { candidate: String(c.candidate) };
  if (c.sdpMid !== undefined) init.sdpMid = c.sdpMid;
  if (c.sdpMLineIndex !== undefined) init.sdpMLineIndex = c.sdpMLineIndex;
  if (c.usernameFragment !== undefined) init.usernameFragment = c.usernameFragment;
  return init;
}

async function addCandidate(pc, init) {
  if (typeof init.candidate !== 'string' || !init.candidate) return;
  const candidate = { candidate: init.candidate };
  if (typeof init.sdpMid === 'string') candidate.sdpMid = init.sdpMid;
  if (Number.isInteger(init.sdpMLineIndex)) candidate.sdpMLineIndex = init.sdpMLineIndex;
  if (candidate.sdpMid === undefined && candidate.sdpMLineIndex === undefined) {
    candidate.sdpMLineIndex = 0;
  }
  try {
    await pc.addIceCandidate(candidate);
  } catch {
    // a bad candidate from a peer costs us that candidate only
  }
}
