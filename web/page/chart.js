/**
 * RateChart: download (HTTP + P2P, stacked) and upload rates over the last minute, drawn on a
 * <canvas> by hand (no chart library: the page loads nothing but hls.js and swarmcast).
 *
 * Plain script (the page's CSP allows scripts from this server only, no inline code); exposes
 * `SwarmcastPage.RateChart`, `SwarmcastPage.formatBytes` and `SwarmcastPage.formatRate`.
 */
(function (global) {
  'use strict';

  const COLORS = { http: '#5b9cf0', p2p: '#4cc38a', up: '#f0a04b', grid: '#262c35', text: '#8b94a3' };

  function formatBytes(n) {
    if (!Number.isFinite(n) || n < 0) return '–';
    const units = ['B', 'KB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return `${n.toFixed(n >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
  }

  /** bytes/s -> "1.2 Mbit/s" (rates of video are read in bits). */
  function formatRate(bytesPerSecond) {
    let bits = Math.max(0, bytesPerSecond) * 8;
    const units = ['bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s'];
    let i = 0;
    while (bits >= 1000 && i < units.length - 1) { bits /= 1000; i++; }
    return `${bits.toFixed(bits >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
  }

  /** Smallest "nice" axis top (1, 2, 2.5, 5 × 10^k) at or above `value`. */
  function niceCeil(value) {
    if (!(value > 0)) return 1;
    const exp = Math.pow(10, Math.floor(Math.log10(value)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * exp >= value) return m * exp;
    return 10 * exp;
  }

  class RateChart {
    /**
     * @param {HTMLCanvasElement} canvas
     * @param {{windowSeconds?: number}} [options]
     */
    constructor(canvas, options = {}) {
      this.canvas = canvas;
      this.windowSeconds = options.windowSeconds || 60;
      /** @type {{t: number, http: number, p2p: number, up: number}[]} rates in bytes/s */
      this.samples = [];
      this.resizeObserver = new ResizeObserver(() => this.draw());
      this.resizeObserver.observe(canvas);
    }

    /** Add one sample (t in seconds, rates in bytes/s) and redraw. */
    push(t, rates) {
      this.samples.push({ t, http: rates.http || 0, p2p: rates.p2p || 0, up: rates.up || 0 });
      const oldest = t - this.windowSeconds - 2;
      while (this.samples.length && this.samples[0].t < oldest) this.samples.shift();
      this.draw();
    }

    draw() {
      const canvas = this.canvas;
      const ratio = global.devicePixelRatio || 1;
      const width = canvas.clientWidth, height = canvas.clientHeight;
      if (!width || !height) return;
      if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
        canvas.width = Math.round(width * ratio);
        canvas.height = Math.round(height * ratio);
      }
      const ctx = canvas.getContext('2d');
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.clearRect(0, 0, width, height);

      const pad = { left: 74, right: 10, top: 8, bottom: 20 };
      const plotW = width - pad.left - pad.right, plotH = height - pad.top - pad.bottom;
      const now = this.samples.length ? this.samples[this.samples.length - 1].t : 0;
      const top = niceCeil(Math.max(1, ...this.samples.map((s) => Math.max(s.http + s.p2p, s.up))));
      const x = (t) => pad.left + plotW * (1 - (now - t) / this.windowSeconds);
      const y = (v) => pad.top + plotH * (1 - v / top);

      ctx.font = '11px system-ui, sans-serif';
      ctx.fillStyle = COLORS.text;
      ctx.strokeStyle = COLORS.grid;
      ctx.lineWidth = 1;
      ctx.textBaseline = 'middle';
      ctx.textAlign = 'right';
      for (let i = 0; i <= 4; i++) {
        const v = (top * i) / 4, py = Math.round(y(v)) + 0.5;
        ctx.beginPath(); ctx.moveTo(pad.left, py); ctx.lineTo(width - pad.right, py); ctx.stroke();
        ctx.fillText(formatRate(v), pad.left - 8, py);
      }
      ctx.textBaseline = 'alphabetic';
      ctx.textAlign = 'left';
      ctx.fillText(`−${this.windowSeconds} s`, pad.left, height - 4);
      ctx.textAlign = 'right';
      ctx.fillText('now', width - pad.right, height - 4);

      const pts = this.samples.filter((s) => now - s.t <= this.windowSeconds);
      if (pts.length < 2) return;
      ctx.save();
      ctx.beginPath();
      ctx.rect(pad.left, pad.top, plotW, plotH);
      ctx.clip();
      // HTTP at the bottom, P2P stacked on it: the stack's height is the total download rate.
      this.area(ctx, pts, x, y, () => 0, (s) => s.http, COLORS.http);
      this.area(ctx, pts, x, y, (s) => s.http, (s) => s.http + s.p2p, COLORS.p2p);
      ctx.beginPath();
      pts.forEach((s, i) => (i ? ctx.lineTo(x(s.t), y(s.up)) : ctx.moveTo(x(s.t), y(s.up))));
      ctx.strokeStyle = COLORS.up;
      ctx.lineWidth = 2;
      ctx.stroke();
      ctx.restore();
    }

    area(ctx, pts, x, y, low, high, color) {
      ctx.beginPath();
      pts.forEach((s, i) => (i ? ctx.lineTo(x(s.t), y(high(s))) : ctx.moveTo(x(s.t), y(high(s)))));
      for (let i = pts.length - 1; i >= 0; i--) ctx.lineTo(x(pts[i].t), y(low(pts[i])));
      ctx.closePath();
      ctx.globalAlpha = 0.55;
      ctx.fillStyle = color;
      ctx.fill();
      ctx.globalAlpha = 1;
    }
  }

  global.SwarmcastPage = Object.assign(global.SwarmcastPage || {}, { RateChart, formatBytes, formatRate, niceCeil });
})(globalThis);
