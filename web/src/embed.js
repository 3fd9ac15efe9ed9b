/**
 * `swarmcast.attach(video, options)`: hls.js playback with P2P delivery in one call (the
 * contract in docs/embedding.md).
 *
 * ```js
 * const player = swarmcast.attach(video, { src, signalingUrl, Hls });
 * player.on('stats', (s) => console.log(s.offload));
 * await player.destroy();
 * ```
 *
 * hls.js is a peer dependency: the page loads it and passes its constructor (`Hls`, default
 * `globalThis.Hls`); it is never bundled.
 *
 * @module embed
 */

import { P2PEngine } from './core/engine.js';
import { renditionId } from './core/ids.js';
import { HlsjsAdapter, createFragmentLoader } from './hlsjs/index.js';

/**
 * @typedef {object} AttachOptions
 * @property {string} src master playlist URL (required)
 * @property {string|null} [signalingUrl] ws(s):// URL of `swarmcast signal`; absent = P2P off
 * @property {boolean} [p2p] false = plain hls.js over HTTP, stats still reported (true)
 * @property {boolean} [upload] false = never upload to peers (true)
 * @property {number|null} [uploadRate] upload cap in bytes/s; null = none
 * @property {number} [maxPeers] most peer connections (10)
 * @property {string|null} [contentId] explicit content id (docs/protocol.md identity)
 * @property {string|null} [token] join token for the signalling server
 * @property {string|null} [network] locality hint for the signalling server
 * @property {any} [Hls] the hls.js constructor (globalThis.Hls)
 * @property {object} [hlsConfig] merged into the hls.js config
 * @property {object} [engine] advanced: more options of the P2P engine (scheduler, swarm, ...)
 */

const EVENTS = ['stats', 'peer-connected', 'peer-disconnected', 'segment', 'rejected', 'error'];

/** A player made by {@link attach}. */
export class SwarmcastPlayer {
  /**
   * @param {HTMLMediaElement} video
   * @param {AttachOptions} options
   */
  constructor(video, options) {
    const opts = { p2p: true, upload: true, uploadRate: null, maxPeers: 10, hlsConfig: {}, ...options };
    const Hls = opts.Hls ?? globalThis.Hls;
    if (typeof Hls !== 'function') {
      throw new TypeError('swarmcast.attach: hls.js is missing: load it first or pass {Hls}');
    }
    if (!video || typeof video.addEventListener !== 'function') {
      throw new TypeError('swarmcast.attach: the first argument must be a <video> element');
    }
    if (typeof opts.src !== 'string' || !opts.src) {
      throw new TypeError('swarmcast.attach: options.src (the master playlist URL) is required');
    }
    const src = new URL(opts.src, globalThis.location?.href).toString();
    this._listeners = new Map(EVENTS.map((name) => [name, new Set()]));
    this._httpBytes = 0;
    this._src = src;
    const p2p = opts.p2p !== false && Boolean(opts.signalingUrl);
    /** @type {P2PEngine|null} */
    this.engine = p2p
      ? new P2PEngine({
          masterUrl: src,
          signalingUrl: opts.signalingUrl,
          upload: opts.upload !== false,
          uploadRate: opts.uploadRate ?? null,
          maxPeers: opts.maxPeers,
          contentId: opts.contentId ?? null,
          token: opts.token ?? null,
          network: opts.network ?? null,
          ...(opts.engine ?? {}),
        })
      : null;
    if (this.engine) {
      for (const name of ['peer-connected', 'peer-disconnected', 'rejected', 'error']) {
        this.engine.on(name, (detail) => this._emit(name, detail));
      }
    }
    const fLoader = createFragmentLoader({
      Hls,
      engine: this.engine,
      onHttpBytes: (n) => {
        this._httpBytes += n;
      },
      onSegment: (detail) => this._emit('segment', detail),
      beforeLoad: (frag) => this.adapter.syncFragment(frag),
    });
    /** The hls.js instance. */
    this.hls = new Hls({ ...opts.hlsConfig, fLoader });
    this.adapter = new HlsjsAdapter(Hls, this.engine);
    this.adapter.attach(this.hls, video);
    this.hls.on(Hls.Events.ERROR, (_name, data) => {
      if (data.fatal) this._emit('error', { message: `hls.js: ${data.details}` });
    });
    this.video = video;
    this.engine?.start();
    this.hls.attachMedia(video);
    this.hls.loadSource(src);
    this._statsTimer = setInterval(() => this._emit('stats', this.stats()), 1000);
  }

  /**
   * Listen to an event: `stats`, `peer-connected`, `peer-disconnected`, `segment`,
   * `rejected`, `error`.
   */
  on(name, fn) {
    if (!this._listeners.has(name)) throw new Error(`unknown event ${name}; known: ${EVENTS.join(', ')}`);
    this._listeners.get(name).add(fn);
    return this;
  }

  /** Stop listening. */
  off(name, fn) {
    this._listeners.get(name)?.delete(fn);
    return this;
  }

  _emit(name, detail) {
    for (const fn of this._listeners.get(name) ?? []) {
      try {
        fn(detail);
      } catch (error) {
        console.error(`swarmcast: '${name}' listener failed`, error);
      }
    }
  }

  /** Delivery and playback figures so far (see docs/embedding.md). */
  stats() {
    const c = this.engine?.counters ?? { httpBytes: 0, p2pBytes: 0, uploadedBytes: 0, rejectedBytes: 0 };
    const httpBytes = c.httpBytes + this._httpBytes;
    const total = httpBytes + c.p2pBytes;
    return {
      httpBytes,
      p2pBytes: c.p2pBytes,
      uploadedBytes: c.uploadedBytes,
      offload: total > 0 ? c.p2pBytes / total : 0,
      peers: this.engine?.peerCount ?? 0,
      peerId: this.engine?.peerId ?? null,
      startupMs: this.adapter.startupMs,
      stalls: this.adapter.stalls,
      stallMs: this.adapter.stallMs,
      rendition: this._rendition(),
      p2pEnabled: this.engine?.p2pEnabled ?? false,
      rejectedBytes: c.rejectedBytes,
    };
  }

  _rendition() {
    const level = this.hls.levels?.[this.hls.currentLevel];
    if (!level?.url) return null;
    const url = Array.isArray(level.url) ? level.url[0] : level.url;
    try {
      return renditionId(this._src, url);
    } catch {
      return url;
    }
  }

  /** Close peers, signalling and hls.js. */
  async destroy() {
    clearInterval(this._statsTimer);
    this.adapter.detach();
    this.engine?.destroy();
    this.hls.destroy();
  }
}

/**
 * Play `options.src` in `video` with hls.js, segments from peers where they can arrive in time.
 *
 * @param {HTMLMediaElement} video
 * @param {AttachOptions} options
 * @returns {SwarmcastPlayer}
 */
export function attach(video, options) {
  return new SwarmcastPlayer(video, options);
}
