/**
 * The hls.js fragment loader (`fLoader`): every media fragment of the main stream is asked of
 * the {@link P2PEngine} (cache, peers or HTTP, as its scheduler decides); everything else
 * (init segments, audio / subtitle tracks, fragments of playlists the engine does not know)
 * goes to hls.js's own loader. Playlists never come here: hls.js loads them with its `pLoader`.
 *
 * It implements hls.js's `Loader` interface (load / abort / destroy, `stats`, `context`) and
 * fills `stats` the way hls.js's loaders do, so ABR and hls.js's events keep working. Bytes
 * handed to hls.js are a copy: hls.js transfers buffers to its worker, which would empty the
 * engine's cache entry.
 *
 * @module hlsjs/loader
 */

/** A fresh hls.js-compatible LoaderStats object. */
export function newLoaderStats() {
  return {
    aborted: false,
    loaded: 0,
    retry: 0,
    total: 0,
    chunkCount: 0,
    bwEstimate: 0,
    loading: { start: 0, first: 0, end: 0 },
    parsing: { start: 0, end: 0 },
    buffering: { start: 0, first: 0, end: 0 },
  };
}

/**
 * Build the `fLoader` class for one player.
 *
 * @param {object} options
 * @param {any} options.Hls the hls.js constructor (its DefaultConfig.loader is the fallback)
 * @param {import('../core/engine.js').P2PEngine|null} options.engine null = HTTP only
 * @param {(bytes: number) => void} options.onHttpBytes bytes hls.js's own loader fetched
 * @param {(detail: object) => void} options.onSegment a media fragment reached hls.js:
 *   {sequence, rendition, source, bytes}
 * @param {(frag: object) => void} [options.beforeLoad] called with each main fragment first
 *   (the adapter syncs the engine's timeline: hls.js may request a fragment of a live
 *   playlist before other LEVEL_LOADED listeners ran)
 * @returns {new (config: object) => object}
 */
export function createFragmentLoader({ Hls, engine, onHttpBytes, onSegment, beforeLoad }) {
  const Fallback = Hls.DefaultConfig.loader;

  return class SwarmcastFragmentLoader {
    /** @param {object} config the hls.js config */
    constructor(config) {
      this.hlsConfig = config;
      this.stats = newLoaderStats();
      this.context = null;
      this._inner = null;
      this._controller = null;
      this._timer = null;
      this._callbacks = null;
    }

    /**
     * @param {object} context hls.js FragmentLoaderContext
     * @param {object} config hls.js LoaderConfiguration
     * @param {object} callbacks hls.js LoaderCallbacks
     */
    load(context, config, callbacks) {
      this.context = context;
      const frag = context.frag;
      if (engine !== null && frag && typeof frag.sn === 'number' && frag.type === 'main') {
        beforeLoad?.(frag);
      }
      const p2p =
        engine !== null &&
        frag &&
        typeof frag.sn === 'number' &&
        frag.type === 'main' &&
        !context.part &&
        engine.renditions.has(frag.baseurl);
      if (!p2p) {
        this._delegate(context, config, callbacks);
        return;
      }
      this._callbacks = callbacks;
      this.stats = newLoaderStats();
      this.stats.loading.start = performance.now();
      this._controller = new AbortController();
      if (config.timeout > 0) {
        this._timer = setTimeout(() => this._onTimeout(), config.timeout);
      }
      const hasRange = Number.isFinite(context.rangeEnd) && context.rangeEnd > 0;
      const request = {
        url: context.url,
        byteRange: hasRange ? [context.rangeStart ?? 0, context.rangeEnd] : null,
        signal: this._controller.signal,
      };
      engine.load(frag.baseurl, frag.sn, request).then(
        (result) => this._onLoaded(result, frag),
        (error) => this._onFailed(error),
      );
    }

    _delegate(context, config, callbacks) {
      this._inner = new Fallback(this.hlsConfig);
      this.stats = this._inner.stats;
      const counted = {
        ...callbacks,
        onSuccess: (response, stats, ctx, details) => {
          const data = response.data;
          if (data && typeof data.byteLength === 'number') onHttpBytes(data.byteLength);
          const f = ctx.frag;
          if (f && typeof f.sn === 'number' && f.type === 'main') {
            onSegment({ sequence: f.sn, rendition: f.baseurl, source: 'http', bytes: data?.byteLength ?? 0 });
          }
          callbacks.onSuccess(response, stats, ctx, details);
        },
      };
      this._inner.load(context, config, counted);
    }

    _onLoaded({ data, source }, frag) {
      if (this._controller === null || this._controller.signal.aborted) return;
      this._finish();
      const now = performance.now();
      const stats = this.stats;
      stats.loading.first = Math.max(stats.loading.start, now - 1);
      stats.loading.end = now;
      stats.loaded = stats.total = data.byteLength;
      stats.chunkCount = 1;
      const copy = data.slice().buffer;
      onSegment({ sequence: frag.sn, rendition: frag.baseurl, source, bytes: data.byteLength });
      this._callbacks.onSuccess({ url: this.context.url, data: copy }, stats, this.context, null);
    }

    _onFailed(error) {
      if (this._controller === null || this._controller.signal.aborted) return;
      this._finish();
      const code = typeof error?.status === 'number' ? error.status : 0;
      this._callbacks.onError({ code, text: String(error?.message ?? error) }, this.context, null, this.stats);
    }

    _onTimeout() {
      if (this._controller === null) return;
      this._controller.abort();
      this._finish();
      this._callbacks.onTimeout(this.stats, this.context, null);
    }

    _finish() {
      clearTimeout(this._timer);
      this._timer = null;
    }

    /** Abort the load in progress (hls.js calls it on seeks and level switches). */
    abort() {
      if (this._inner) {
        this._inner.abort();
        return;
      }
      if (this._controller && !this._controller.signal.aborted) {
        this._controller.abort();
        this._finish();
        this.stats.aborted = true;
        this._callbacks?.onAbort?.(this.stats, this.context, null);
      }
    }

    /** Release everything. */
    destroy() {
      if (this._inner) this._inner.destroy();
      else if (this._controller && !this._controller.signal.aborted) this._controller.abort();
      this._finish();
      this._inner = null;
      this._callbacks = null;
      this.context = null;
    }
  };
}
