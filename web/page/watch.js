/**
 * The /watch page: starts the player on the <video>, then once a second updates the stats
 * panel and the rate chart from `player.stats()`.
 *
 * The player is `swarmcast.attach(video, options)` (docs/web.md, embed API) and lives on
 * `window.player` for tests and the console. When the loaded bundle has no `attach` (an older
 * build), the page falls back to plain hls.js over HTTP behind the same small interface, so
 * the page and its stats keep working with P2P off.
 */
(function (global) {
  'use strict';

  const { RateChart, formatBytes } = global.SwarmcastPage;
  const $ = (id) => document.getElementById(id);

  function showError(message) {
    const banner = $('banner');
    banner.textContent = message;
    banner.hidden = false;
  }

  function defaultSignalingUrl() {
    const scheme = global.location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${scheme}//${global.location.host}/ws`;
  }

  /** A fatal hls.js error as a sentence a viewer can act on (what failed, HTTP status, URL). */
  function hlsErrorMessage(data) {
    const code = data.response && data.response.code ? ` (HTTP ${data.response.code})` : '';
    const where = data.url ? ` for ${data.url}` : '';
    return `Playback failed: ${data.details}${code}${where}`;
  }

  /** Plain hls.js with the embed API's shape (stats, events, destroy); P2P is off. */
  function httpOnlyPlayer(video, options) {
    const Hls = options.Hls;
    const listeners = new Map();
    const emit = (name, value) => (listeners.get(name) || []).slice().forEach((fn) => fn(value));
    const started = performance.now();
    const stats = {
      httpBytes: 0, p2pBytes: 0, uploadedBytes: 0, offload: 0, peers: 0, peerId: null,
      startupMs: null, stalls: 0, stallMs: 0, rendition: null, p2pEnabled: false, rejectedBytes: 0,
    };
    let stallStart = null;
    const hls = new Hls(options.hlsConfig || {});
    hls.on(Hls.Events.FRAG_LOADED, (_event, data) => {
      const bytes = (data.frag.stats && data.frag.stats.loaded) || (data.payload ? data.payload.byteLength : 0);
      stats.httpBytes += bytes;
      emit('segment', { sequence: data.frag.sn, rendition: data.frag.level, source: 'http', bytes });
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_event, data) => {
      const level = hls.levels[data.level];
      stats.rendition = level ? (level.height ? `${level.height}p` : `level ${data.level}`) : null;
    });
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal) return;
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR) { hls.recoverMediaError(); return; }
      emit('error', { message: hlsErrorMessage(data) });
    });
    hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(() => {}));
    const onPlaying = () => {
      if (stats.startupMs === null) stats.startupMs = Math.round(performance.now() - started);
      if (stallStart !== null) { stats.stallMs += Math.round(performance.now() - stallStart); stallStart = null; }
    };
    const onWaiting = () => {
      if (stats.startupMs !== null && stallStart === null) { stats.stalls += 1; stallStart = performance.now(); }
    };
    video.addEventListener('playing', onPlaying);
    video.addEventListener('waiting', onWaiting);
    hls.loadSource(options.src);
    hls.attachMedia(video);
    const timer = setInterval(() => emit('stats', { ...stats }), 1000);
    return {
      hls,
      on(name, fn) { listeners.set(name, [...(listeners.get(name) || []), fn]); },
      off(name, fn) { listeners.set(name, (listeners.get(name) || []).filter((f) => f !== fn)); },
      stats: () => ({ ...stats }),
      async destroy() {
        clearInterval(timer);
        video.removeEventListener('playing', onPlaying);
        video.removeEventListener('waiting', onWaiting);
        hls.destroy();
      },
    };
  }

  function createPlayer(video, config) {
    if (typeof global.Hls !== 'function') {
      throw new Error('hls.js did not load (/static/hls.min.js): run `make web-deps` on the server');
    }
    const options = {
      src: config.src,
      signalingUrl: config.signalingUrl || defaultSignalingUrl(),
      p2p: config.p2p,
      upload: config.upload,
      Hls: global.Hls,
    };
    $('signal-url').textContent = options.signalingUrl;
    const api = global.swarmcast;
    if (api && typeof api.attach === 'function') return api.attach(video, options);
    console.warn('swarmcast.attach is not in the loaded bundle: playing over HTTP only');
    $('stat-mode').textContent = 'HTTP only';
    return httpOnlyPlayer(video, options);
  }

  function renditionName(r) {
    if (r === null || r === undefined) return '–';
    if (typeof r === 'object') return String(r.name || r.id || r.height || '–');
    return String(r);
  }

  /** Panel + chart, fed by a 1 s timer so they move even when nothing is downloaded. */
  function startStatsView(player) {
    const chart = new RateChart($('chart'), { windowSeconds: 60 });
    let last = null;
    const tick = () => {
      let s;
      try { s = player.stats(); } catch (err) { return; }
      const now = performance.now() / 1000;
      const total = s.httpBytes + s.p2pBytes;
      const share = total > 0 ? s.p2pBytes / total : 0;
      $('stat-offload').textContent = total > 0 ? `${(share * 100).toFixed(1)} %` : '–';
      $('share-fill').style.width = `${(share * 100).toFixed(1)}%`;
      $('stat-peers').textContent = String(s.peers);
      $('stat-http').textContent = formatBytes(s.httpBytes);
      $('stat-p2p').textContent = formatBytes(s.p2pBytes);
      $('stat-up').textContent = formatBytes(s.uploadedBytes);
      $('stat-startup').textContent = s.startupMs == null ? '–' : `${Math.round(s.startupMs)} ms`;
      $('stat-stalls').textContent = s.stalls ? `${s.stalls} (${(s.stallMs / 1000).toFixed(1)} s)` : '0';
      $('stat-rendition').textContent = renditionName(s.rendition);
      $('stat-peer-id').textContent = s.peerId ? String(s.peerId).slice(0, 12) : '–';
      if (last) {
        const dt = Math.max(0.001, now - last.t);
        chart.push(now, {
          http: (s.httpBytes - last.httpBytes) / dt,
          p2p: (s.p2pBytes - last.p2pBytes) / dt,
          up: (s.uploadedBytes - last.uploadedBytes) / dt,
        });
      }
      last = { t: now, httpBytes: s.httpBytes, p2pBytes: s.p2pBytes, uploadedBytes: s.uploadedBytes };
    };
    tick();
    global.setInterval(tick, 1000);
    return chart;
  }

  function main() {
    let config;
    try {
      config = JSON.parse($('watch-config').textContent);
    } catch (err) {
      showError('The page configuration is unreadable; reload the page.');
      return;
    }
    let player;
    try {
      player = createPlayer($('video'), config);
    } catch (err) {
      showError(String(err && err.message ? err.message : err));
      return;
    }
    global.player = player;
    player.on('error', (e) => showError(e && e.message ? e.message : 'playback error'));
    // hls.js's own fatal errors carry the HTTP status and URL: show those whatever the player
    // reports, so "404 for <url>" reaches the viewer.
    if (player.hls && global.Hls) {
      player.hls.on(global.Hls.Events.ERROR, (_event, data) => {
        if (data.fatal && data.type !== global.Hls.ErrorTypes.MEDIA_ERROR) showError(hlsErrorMessage(data));
      });
    }
    global.SwarmcastPage.chart = startStatsView(player);
    global.addEventListener('pagehide', () => { player.destroy(); });
  }

  main();
})(globalThis);
