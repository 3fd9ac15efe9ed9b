/**
 * The hls.js adapter: thin glue between hls.js and the player-agnostic core, shaped like
 * p2p-media-loader's hls.js package.
 *
 * - {@link createFragmentLoader} (loader.js) is the `fLoader` class: main-stream fragments
 *   are asked of the engine; playlists stay on hls.js's own loader.
 * - {@link HlsjsAdapter} feeds the engine what it cannot see by itself: each media playlist
 *   hls.js loads (LEVEL_LOADED: fragments with sn, duration, start, url, byte range) becomes
 *   the rendition's timeline, and the playback state (position, buffer end, rate, playing)
 *   is read from the media element whenever the scheduler steps. It also measures startup
 *   time and stalls from the media element's events.
 *
 * @module hlsjs
 */

import { createFragmentLoader, newLoaderStats } from './loader.js';

export { createFragmentLoader, newLoaderStats };

/** Media element events after which a stall (waiting with an empty buffer) may end. */
const RESUME_EVENTS = ['playing', 'timeupdate'];

/** Connects one hls.js instance and its media element to a {@link P2PEngine} (or none). */
export class HlsjsAdapter {
  /**
   * @param {any} Hls the hls.js constructor
   * @param {import('../core/engine.js').P2PEngine|null} engine null = HTTP only
   */
  constructor(Hls, engine) {
    this.Hls = Hls;
    this.engine = engine;
    this.hls = null;
    /** @type {HTMLMediaElement|null} */
    this.media = null;
    /** Milliseconds from {@link attach} to the first frame playing; null before. */
    this.startupMs = null;
    /** Stalls after playback started (buffer ran dry while playing). */
    this.stalls = 0;
    this._stallMs = 0;
    this._stallStart = null;
    this._seeking = false;
    this._attachedAt = 0;
    this._started = false;
    this._listeners = [];
  }

  /** @returns {number} milliseconds spent stalled so far (including a stall in progress) */
  get stallMs() {
    const current = this._stallStart === null ? 0 : performance.now() - this._stallStart;
    return this._stallMs + current;
  }

  /**
   * Start following `hls` and its media element `media` (call before `loadSource`).
   *
   * @param {any} hls
   * @param {HTMLMediaElement} media
   */
  attach(hls, media) {
    this.hls = hls;
    this.media = media;
    this._attachedAt = performance.now();
    const Events = this.Hls.Events;
    hls.on(Events.LEVEL_LOADED, (_name, data) => this._onLevelLoaded(data));
    this._listen('playing', () => this._onPlaying());
    this._listen('waiting', () => this._onWaiting());
    this._listen('seeking', () => {
      this._seeking = true;
    });
    this._listen('seeked', () => {
      this._seeking = false;
    });
    for (const name of RESUME_EVENTS) this._listen(name, () => this._onProgress());
    if (this.engine) {
      this.engine.playback = () => this.playback();
      this.engine.stallCount = () => this.stalls;
    }
  }

  /** Stop listening to the media element. */
  detach() {
    for (const [name, fn] of this._listeners) this.media?.removeEventListener(name, fn);
    this._listeners = [];
    if (this.engine) this.engine.playback = () => null;
  }

  /**
   * The playback state the scheduler needs, from the media element.
   *
   * @returns {import('../core/engine.js').PlaybackState|null}
   */
  playback() {
    const media = this.media;
    if (!media) return null;
    const position = media.currentTime;
    let bufferedUntil = position;
    const ranges = media.buffered;
    for (let i = 0; i < ranges.length; i++) {
      // hls.js tolerates small holes the same way (maxBufferHole).
      if (ranges.start(i) <= position + 0.1 && ranges.end(i) >= position) {
        bufferedUntil = Math.max(bufferedUntil, ranges.end(i));
      }
    }
    const rate = media.playbackRate > 0 ? media.playbackRate : 1;
    const playing = this._started && !media.paused && !media.ended;
    return { position, bufferedUntil, rate, playing };
  }

  _listen(name, fn) {
    this.media.addEventListener(name, fn);
    this._listeners.push([name, fn]);
  }

  /**
   * Make sure the engine knows `frag` before hls.js asks for it: hls.js's own LEVEL_LOADED
   * listener (registered first) may request the newest fragment of a live playlist before
   * ours runs, so the level's current details are read here too.
   *
   * @param {object} frag an hls.js Fragment about to be loaded
   */
  syncFragment(frag) {
    const st = this.engine?.renditions.get(frag.baseurl);
    if (st && st.fragments.has(frag.sn)) return;
    const details = this.hls?.levels?.[frag.level]?.details;
    if (details) this._onLevelLoaded({ details });
  }

  _onLevelLoaded(data) {
    if (!this.engine) return;
    const details = data.details;
    const fragments = (details?.fragments ?? []).filter((f) => typeof f.sn === 'number');
    if (!fragments.length) return;
    const playlistUrl = fragments[0].baseurl ?? details.url;
    const infos = fragments.map((f) => ({
      sequence: f.sn,
      duration: f.duration,
      start: f.start,
      url: f.url,
      byteRange: f.byteRange && f.byteRange.length === 2 ? [f.byteRange[0], f.byteRange[1]] : null,
    }));
    this.engine.updateRendition(playlistUrl, infos, { live: Boolean(details.live) }).catch((error) => {
      this.engine.emit('error', { message: `rendition ${playlistUrl}: ${error.message}` });
    });
  }

  _onPlaying() {
    if (!this._started) {
      this._started = true;
      this.startupMs = performance.now() - this._attachedAt;
    }
    this._onProgress();
  }

  _onWaiting() {
    // A stall is the buffer running dry during playback; seeks and startup are not stalls.
    if (!this._started || this._seeking || this._stallStart !== null) return;
    this._stallStart = performance.now();
    this.stalls += 1;
  }

  _onProgress() {
    if (this._stallStart === null) return;
    const media = this.media;
    if (media.readyState < 3 || media.paused) return; // HAVE_FUTURE_DATA: really moving again
    this._stallMs += performance.now() - this._stallStart;
    this._stallStart = null;
  }
}
