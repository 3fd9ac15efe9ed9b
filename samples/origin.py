"""``swarmcast origin DIR``: a development HTTP origin for HLS content (VOD and simulated live).

Routes (every content route sends CORS headers and honours Range requests):

- ``/vod/<path>``: the files under DIR, as generated.
- ``/live/<path>``: the same content as a looping live stream. Every VOD media playlist
  ``<dir>/<stem>.m3u8`` becomes a sliding-window live playlist at the same path, with segments
  ``<dir>/<stem>.<msn>.<ext>`` and a live integrity manifest ``<dir>/<stem>.integrity.json``; other
  files (master playlists, init segments) are served as they are, so the master's relative URIs
  work under both prefixes.
- ``/_origin/stats`` (JSON counters; DELETE resets them), ``/metrics`` (Prometheus),
  ``/_origin/faults`` (GET; POST a JSON object to change fault injection; loopback only),
  ``/healthz``, and ``/`` (the URLs above, as JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import ipaddress
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import m3u8
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from swarmcast.samples import integrity
from swarmcast.samples.faults import FailureDice, FaultConfig, FaultError, TokenBucket
from swarmcast.samples.live import LiveTimeline, SourceSegment
from swarmcast.samples.ranges import RangeNotSatisfiable, parse_range

log = logging.getLogger(__name__)

CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".vtt": "text/vtt",
    ".json": "application/json",
}
#: Write paced responses in slices this big, so a bandwidth cap is smooth.
_PACE_CHUNK = 16 * 1024
_LIVE_SEGMENT = re.compile(r"^(?P<stem>[^/]+)\.(?P<msn>\d{1,15})(?P<ext>\.[A-Za-z0-9]{1,8})$")


@dataclass
class OriginConfig:
    """Settings of the development origin."""

    root: Path
    """Folder with the HLS content (e.g. the output of ``swarmcast sample``)."""
    host: str = "127.0.0.1"
    """Address to listen on."""
    port: int = 8080
    """TCP port to listen on (0 picks a free one)."""
    live_window: int = 6
    """Segments in the simulated live playlist's sliding window."""
    live_start: float | None = None
    """Wall-clock time at which the live window is first full; ``None`` = when the app starts."""
    faults: FaultConfig = field(default_factory=FaultConfig)
    """Initial fault injection (changeable at run time through ``/_origin/faults``)."""
    fault_seed: int | None = None
    """Seed for the failure dice, so a failure pattern can be replayed."""
    admin_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    """Client networks allowed to change faults and reset counters."""
    cache_bytes: int = 512 * 1024 * 1024
    """Memory budget for file contents held in memory."""
    max_tracked_paths: int = 10_000
    """Distinct paths counted one by one in the JSON stats; the rest are summed as ``(other)``."""


class OriginError(Exception):
    """The origin cannot serve the given folder (message says why and what to do)."""


@dataclass
class LiveRendition:
    """A VOD media playlist that the origin also serves as a looping live stream."""

    playlist: str
    """Path of the media playlist relative to the content root (``240p/index.m3u8``)."""
    timeline: LiveTimeline
    version: int
    init: list[dict]


class FileStore:
    """Reads files under a root with a bounded in-memory LRU; refuses paths that leave the root."""

    def __init__(self, root: Path, budget: int) -> None:
        self.root = root.resolve()
        self.budget = budget
        self._cache: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._size = 0

    def resolve(self, rel: str) -> Path | None:
        """The file for ``rel`` if it is a regular file inside the root, else ``None``."""
        if not is_safe_relative(rel):
            return None
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        return path

    async def read(self, rel: str) -> tuple[bytes, str] | None:
        """``(bytes, etag)`` of ``rel``, or ``None`` when there is no such file."""
        hit = self._cache.get(rel)
        if hit is not None:
            self._cache.move_to_end(rel)
            return hit
        path = self.resolve(rel)
        if path is None:
            return None
        data = await asyncio.to_thread(path.read_bytes)
        entry = (data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"')
        if len(data) <= self.budget:
            self._cache[rel] = entry
            self._size += len(data)
            while self._size > self.budget:
                _, (old, _) = self._cache.popitem(last=False)
                self._size -= len(old)
        return entry


def is_safe_relative(rel: str) -> bool:
    """True for a plain relative POSIX path with no ``..``, no absolute part and no odd bytes."""
    if not rel or "\x00" in rel or "\\" in rel or rel.startswith("/"):
        return False
    return all(part not in ("..", ".", "") for part in PurePosixPath(rel).parts) and ".." not in (
        rel.split("/")
    )


class OriginCounters:
    """Requests and bytes served, per path and per kind, as JSON and as Prometheus counters."""

    def __init__(self, registry: CollectorRegistry, max_paths: int) -> None:
        self.max_paths = max_paths
        self.requests = Counter(
            "swarmcast_origin_requests",
            "Content requests answered by the origin",
            ["mode", "kind", "status"],
            registry=registry,
        )
        self.bytes = Counter(
            "swarmcast_origin_bytes",
            "Body bytes sent by the origin",
            ["mode", "kind"],
            registry=registry,
        )
        self.reset()

    def reset(self) -> None:
        """Zero the JSON view (Prometheus counters stay monotonic, as Prometheus expects)."""
        self.total_requests = 0
        self.total_bytes = 0
        self.by_kind: dict[str, dict[str, int]] = {}
        self.by_path: dict[str, dict[str, int]] = {}
        self.since = time.time()

    def request(self, mode: str, path: str, kind: str, status: int) -> None:
        """Count one answered request."""
        self.total_requests += 1
        self.requests.labels(mode, kind, str(status)).inc()
        self._slot(self.by_kind, f"{mode}:{kind}")["requests"] += 1
        self._path_slot(f"/{mode}/{path}")["requests"] += 1

    def sent(self, mode: str, path: str, kind: str, nbytes: int) -> None:
        """Count ``nbytes`` of body actually written."""
        self.total_bytes += nbytes
        self.bytes.labels(mode, kind).inc(nbytes)
        self._slot(self.by_kind, f"{mode}:{kind}")["bytes"] += nbytes
        self._path_slot(f"/{mode}/{path}")["bytes"] += nbytes

    def _path_slot(self, path: str) -> dict[str, int]:
        if path not in self.by_path and len(self.by_path) >= self.max_paths:
            path = "(other)"
        return self._slot(self.by_path, path)

    @staticmethod
    def _slot(table: dict[str, dict[str, int]], key: str) -> dict[str, int]:
        slot = table.get(key)
        if slot is None:
            slot = table[key] = {"requests": 0, "bytes": 0}
        return slot

    def snapshot(self) -> dict:
        """The JSON view served at ``/_origin/stats``."""
        return {
            "since": self.since,
            "requests": self.total_requests,
            "bytes": self.total_bytes,
            "kinds": self.by_kind,
            "paths": self.by_path,
        }


class OriginState:
    """Everything the request handlers share."""

    def __init__(self, config: OriginConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.clock = clock
        self.store = FileStore(config.root, config.cache_bytes)
        self.faults = config.faults
        self.dice = FailureDice(config.fault_seed)
        self.registry = CollectorRegistry()
        self.counters = OriginCounters(self.registry, config.max_tracked_paths)
        self.total_bucket: TokenBucket | None = None
        self.admin_networks = [ipaddress.ip_network(n) for n in config.admin_networks]
        start = config.live_start if config.live_start is not None else clock()
        self.live = load_live_renditions(self.store.root, config.live_window, start)
        self._live_cache: dict[tuple[str, str, int], bytes] = {}
        self.set_faults(self.faults)

    def set_faults(self, faults: FaultConfig) -> None:
        """Replace the fault settings (the shared egress bucket follows its rate)."""
        self.faults = faults
        if faults.total_bandwidth is None:
            self.total_bucket = None
        elif self.total_bucket is None or self.total_bucket.rate != faults.total_bandwidth:
            self.total_bucket = TokenBucket(faults.total_bandwidth, now=time.monotonic())

    def live_document(self, rendition: LiveRendition, what: str, now: float) -> bytes:
        """The live playlist or manifest bytes, rebuilt only when the window moves."""
        first = rendition.timeline.window_range(now).start
        key = (rendition.playlist, what, first)
        cached = self._live_cache.get(key)
        if cached is not None:
            return cached
        if what == "playlist":
            body = rendition.timeline.render_playlist(now, version=rendition.version).encode()
        else:
            name = PurePosixPath(rendition.playlist).name
            doc = rendition.timeline.integrity_manifest(now, playlist=name, init=rendition.init)
            body = json.dumps(doc, separators=(",", ":")).encode()
        if len(self._live_cache) > 4 * max(1, len(self.live)):
            self._live_cache.clear()
        self._live_cache[key] = body
        return body


ORIGIN_KEY = web.AppKey("origin", OriginState)


def load_live_renditions(root: Path, window: int, start: float) -> dict[str, LiveRendition]:
    """Find the VOD media playlists under ``root`` and build their live timelines.

    Segment hashes come from each playlist's integrity manifest, which is written if missing.
    """
    live: dict[str, LiveRendition] = {}
    playlists = sorted(root.rglob("*.m3u8"))
    if len(playlists) > 2000:
        raise OriginError(
            f"{root} holds {len(playlists)} playlists; point the origin at one stream's folder"
        )
    for path in playlists:
        rel = path.relative_to(root).as_posix()
        try:
            parsed = m3u8.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            log.warning("skipping %s for live: cannot parse it (%s)", rel, exc)
            continue
        if parsed.is_variant or not parsed.is_endlist or not parsed.segments:
            continue
        try:
            manifest = _manifest_for(path)
        except (OSError, ValueError, integrity.IntegrityError) as exc:
            log.warning("skipping %s for live: no usable integrity manifest (%s)", rel, exc)
            continue
        segments = [_source_segment(entry) for entry in manifest["segments"]]
        stem = path.stem
        timeline = LiveTimeline(
            segments, window=window, start=start, uri_template=stem + ".{msn}{ext}"
        )
        live[rel] = LiveRendition(rel, timeline, parsed.version or 3, manifest["init"])
    return live


def _manifest_for(playlist: Path) -> dict:
    path = integrity.manifest_path_for(playlist)
    if path.is_file():
        manifest = integrity.IntegrityManifest.from_json(json.loads(path.read_text("utf-8")))
    else:
        log.info("writing missing integrity manifest %s", path)
        integrity.write_manifest(playlist)
        manifest = integrity.IntegrityManifest.from_json(json.loads(path.read_text("utf-8")))
    return manifest.to_json()


def _source_segment(entry: dict) -> SourceSegment:
    br = entry.get("byterange")
    return SourceSegment(
        uri=entry["uri"],
        duration=float(entry["duration"]),
        size=int(entry["size"]),
        sha256=entry["sha256"],
        byterange=(int(br["offset"]), int(br["length"])) if br else None,
        map_uri=entry.get("map"),
    )


@dataclass
class Resolved:
    """What a content request maps to."""

    body: bytes
    content_type: str
    cache_control: str
    etag: str | None
    kind: str


def classify(path: str) -> str:
    """The counter kind of a content path."""
    suffix = PurePosixPath(path).suffix.lower()
    if suffix == ".m3u8":
        return "playlist"
    if path.endswith(".integrity.json"):
        return "manifest"
    if suffix in (".ts", ".m4s", ".aac", ".m4a"):
        return "segment"
    if suffix == ".mp4":
        return "init"
    return "other"


def _content_type(path: str) -> str:
    return CONTENT_TYPES.get(PurePosixPath(path).suffix.lower(), "application/octet-stream")


async def resolve_vod(state: OriginState, path: str) -> Resolved:
    """Map ``/vod/<path>`` to a file's bytes."""
    hit = await state.store.read(path)
    if hit is None:
        raise web.HTTPNotFound(text=f"no such file: {path}\n")
    body, etag = hit
    kind = classify(path)
    # Generated VOD content never changes under a name; playlists may be regenerated.
    immutable = kind in ("segment", "init")
    cache = "public, max-age=31536000, immutable" if immutable else "public, max-age=60"
    return Resolved(body, _content_type(path), cache, etag, kind)


async def resolve_live(state: OriginState, path: str) -> Resolved:
    """Map ``/live/<path>`` to a live playlist, live manifest, live segment or plain file."""
    now = state.clock()
    rendition = state.live.get(path)
    if rendition is not None:
        body = state.live_document(rendition, "playlist", now)
        # Well under half a target duration, so caches never hide a new segment for long.
        return Resolved(body, CONTENT_TYPES[".m3u8"], "public, max-age=1", None, "playlist")
    parent = PurePosixPath(path).parent
    name = PurePosixPath(path).name
    if name.endswith(".integrity.json"):
        playlist = (parent / (name[: -len(".integrity.json")] + ".m3u8")).as_posix()
        rendition = state.live.get(playlist.removeprefix("./"))
        if rendition is not None:
            body = state.live_document(rendition, "manifest", now)
            return Resolved(body, "application/json", "public, max-age=1", None, "manifest")
    match = _LIVE_SEGMENT.match(name)
    if match:
        playlist = (parent / (match["stem"] + ".m3u8")).as_posix().removeprefix("./")
        rendition = state.live.get(playlist)
        if rendition is not None:
            return await _live_segment(state, rendition, int(match["msn"]), parent, now)
    return await resolve_vod(state, path)


async def _live_segment(
    state: OriginState, rendition: LiveRendition, msn: int, parent: PurePosixPath, now: float
) -> Resolved:
    timeline = rendition.timeline
    if not timeline.is_published(msn, now):
        raise web.HTTPNotFound(text=f"live segment {msn} is not published yet\n")
    source = timeline.segment(msn).source
    rel = (parent / source.uri).as_posix().removeprefix("./")
    hit = await state.store.read(rel)
    if hit is None:
        raise web.HTTPNotFound(text=f"source file of live segment {msn} is missing: {rel}\n")
    data, _ = hit
    if source.byterange:
        offset, length = source.byterange
        data = data[offset : offset + length]
    etag = '"' + source.sha256[:32] + '"'
    return Resolved(
        data, _content_type(source.uri), "public, max-age=31536000, immutable", etag, "segment"
    )


def _is_admin(state: OriginState, request: web.Request) -> bool:
    try:
        addr = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return False
    return any(addr in net for net in state.admin_networks)


async def _send(
    request: web.Request, state: OriginState, resolved: Resolved, mode: str, path: str
) -> web.StreamResponse:
    headers = {"Cache-Control": resolved.cache_control, "Accept-Ranges": "bytes"}
    if resolved.etag:
        headers["ETag"] = resolved.etag
        if request.headers.get("If-None-Match") == resolved.etag:
            state.counters.request(mode, path, resolved.kind, 304)
            return web.Response(status=304, headers=headers)
    body, status = resolved.body, 200
    try:
        byte_range = parse_range(request.headers.get("Range"), len(body))
    except RangeNotSatisfiable as exc:
        state.counters.request(mode, path, resolved.kind, 416)
        headers["Content-Range"] = f"bytes */{len(body)}"
        return web.Response(status=416, text=f"{exc}\n", headers=headers)
    if byte_range is not None:
        headers["Content-Range"] = byte_range.content_range(len(body))
        body, status = body[byte_range.start : byte_range.end], 206
    state.counters.request(mode, path, resolved.kind, status)
    faults = state.faults
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(body))
        return web.Response(status=status, headers=headers, content_type=resolved.content_type)
    if faults.bandwidth is None and state.total_bucket is None:
        response = web.Response(
            status=status, body=body, headers=headers, content_type=resolved.content_type
        )
        state.counters.sent(mode, path, resolved.kind, len(body))
        return response
    return await _send_paced(request, state, body, status, headers, resolved, mode, path)


async def _send_paced(
    request: web.Request,
    state: OriginState,
    body: bytes,
    status: int,
    headers: dict[str, str],
    resolved: Resolved,
    mode: str,
    path: str,
) -> web.StreamResponse:
    response = web.StreamResponse(status=status, headers=headers)
    response.content_type = resolved.content_type
    response.content_length = len(body)
    await response.prepare(request)
    rate = state.faults.bandwidth
    t0 = time.monotonic()
    for offset in range(0, len(body), _PACE_CHUNK):
        part = body[offset : offset + _PACE_CHUNK]
        delay = 0.0
        if rate is not None:
            delay = t0 + (offset + len(part)) / rate - time.monotonic()
        bucket = state.total_bucket
        if bucket is not None:
            delay = max(delay, bucket.reserve(len(part), time.monotonic()))
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            await response.write(part)
        except ConnectionResetError:
            # The client went away mid-body (a viewer switched or closed): normal, and what was
            # written so far is already counted.
            log.debug("client left during %s after %d bytes", path, offset)
            return response
        state.counters.sent(mode, path, resolved.kind, len(part))
    await response.write_eof()
    return response


def _content_handler(mode: str) -> Callable:
    resolve = resolve_vod if mode == "vod" else resolve_live

    async def handler(request: web.Request) -> web.StreamResponse:
        state = request.app[ORIGIN_KEY]
        path = request.match_info["path"]
        if not is_safe_relative(path):
            state.counters.request(mode, "(refused)", "other", 403)
            raise web.HTTPForbidden(text="refused: path must stay inside the content folder\n")
        kind = classify(path)
        faults = state.faults
        if faults.down:
            state.counters.request(mode, path, kind, 503)
            raise web.HTTPServiceUnavailable(text="origin is down (fault injection)\n")
        if state.dice.fails(faults.failure_rate):
            state.counters.request(mode, path, kind, 503)
            raise web.HTTPServiceUnavailable(text="injected failure\n")
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        try:
            resolved = await resolve(state, path)
        except web.HTTPException as exc:
            state.counters.request(mode, path, kind, exc.status)
            raise
        return await _send(request, state, resolved, mode, path)

    return handler


CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "Range, If-None-Match, Content-Type",
    "Access-Control-Expose-Headers": "Content-Length, Content-Range, ETag, Accept-Ranges",
    "Access-Control-Max-Age": "86400",
    "Timing-Allow-Origin": "*",
}


@web.middleware
async def cors_middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Let players on any page fetch content: CORS on every answer, preflights answered here."""
    if request.method == "OPTIONS":
        return web.Response(status=204, headers=CORS_HEADERS)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(CORS_HEADERS)
        raise
    response.headers.update(CORS_HEADERS)
    return response


async def stats_handler(request: web.Request) -> web.Response:
    """GET: counters as JSON. DELETE (admin): reset them, e.g. between load-test runs."""
    state = request.app[ORIGIN_KEY]
    if request.method == "DELETE":
        if not _is_admin(state, request):
            raise web.HTTPForbidden(text="resetting counters is allowed from loopback only\n")
        state.counters.reset()
    return web.json_response(state.counters.snapshot())


async def faults_handler(request: web.Request) -> web.Response:
    """GET: current fault settings. POST (admin): change some of them with a JSON object."""
    state = request.app[ORIGIN_KEY]
    if request.method == "POST":
        if not _is_admin(state, request):
            raise web.HTTPForbidden(text="fault injection is allowed from loopback only\n")
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise FaultError('send a JSON object, e.g. {"down": true}')
            state.set_faults(state.faults.updated(changes))
        except (ValueError, FaultError) as exc:
            raise web.HTTPBadRequest(text=f"bad fault settings: {exc}\n") from exc
        log.info("faults now %s", state.faults)
    return web.json_response(state.faults.to_json())


async def metrics_handler(request: web.Request) -> web.Response:
    """Prometheus exposition of the origin's counters."""
    state = request.app[ORIGIN_KEY]
    return web.Response(
        body=generate_latest(state.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def index_handler(request: web.Request) -> web.Response:
    """The stream URLs this origin serves, as JSON."""
    state = request.app[ORIGIN_KEY]
    return web.json_response(
        {
            "vod": [f"/vod/{p}" for p in masters(state.store.root)],
            "live": [f"/live/{p}" for p in masters(state.store.root)],
            "live_renditions": [f"/live/{p}" for p in state.live],
            "stats": "/_origin/stats",
            "faults": "/_origin/faults",
            "metrics": "/metrics",
        }
    )


async def healthz_handler(request: web.Request) -> web.Response:
    """Liveness: answers even when content is failing on purpose."""
    return web.json_response({"ok": True})


def masters(root: Path) -> list[str]:
    """Relative paths of the master (multivariant) playlists under ``root``."""
    found = []
    for path in sorted(root.rglob("*.m3u8")):
        try:
            if m3u8.loads(path.read_text("utf-8")).is_variant:
                found.append(path.relative_to(root).as_posix())
        except (OSError, UnicodeDecodeError, ValueError):
            continue
    return found


def create_app(config: OriginConfig, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The origin as an aiohttp application (``clock`` drives the live simulation)."""
    if not config.root.is_dir():
        raise OriginError(
            f"content folder {config.root} does not exist; make one with `swarmcast sample DIR`"
        )
    app = web.Application(middlewares=[cors_middleware])
    app[ORIGIN_KEY] = OriginState(config, clock)
    app.router.add_get("/", index_handler)
    app.router.add_get("/healthz", healthz_handler)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_route("GET", "/_origin/stats", stats_handler)
    app.router.add_route("DELETE", "/_origin/stats", stats_handler)
    app.router.add_route("GET", "/_origin/faults", faults_handler)
    app.router.add_route("POST", "/_origin/faults", faults_handler)
    app.router.add_get("/vod/{path:.+}", _content_handler("vod"))
    app.router.add_get("/live/{path:.+}", _content_handler("live"))
    return app


async def start_origin(
    config: OriginConfig, *, clock: Callable[[], float] = time.time
) -> tuple[web.AppRunner, str]:
    """Start the origin; returns the runner (call ``cleanup()``) and its base URL."""
    app = create_app(config, clock=clock)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    port = runner.addresses[0][1]
    host = f"[{config.host}]" if ":" in config.host else config.host
    return runner, f"http://{host}:{port}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``swarmcast origin``."""
    parser.add_argument("root", type=Path, metavar="DIR", help="folder with HLS content")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port (0 = any free port)")
    parser.add_argument("--live-window", type=int, default=6, help="segments in the live window")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added time to first byte")
    parser.add_argument("--bandwidth", type=_rate, help="per-response cap, bytes/s (e.g. 500k)")
    parser.add_argument("--total-bandwidth", type=_rate, help="total egress cap, bytes/s")
    parser.add_argument("--failure-rate", type=float, default=0.0, help="share of 503s (0..1)")
    parser.add_argument("--down", action="store_true", help="start with the origin 'down'")
    parser.add_argument("--fault-seed", type=int, help="seed for injected failures")


def _rate(text: str) -> float:
    units = {"k": 1e3, "m": 1e6, "g": 1e9}
    text = text.strip().lower().removesuffix("b/s").removesuffix("/s")
    scale = units.get(text[-1:], 1.0)
    number = text[:-1] if text[-1:] in units else text
    try:
        value = float(number) * scale
    except ValueError:
        msg = f"not a rate in bytes/s: {text!r} (e.g. 250k, 2m)"
        raise argparse.ArgumentTypeError(msg) from None
    if value <= 0:
        raise argparse.ArgumentTypeError("a rate must be positive")
    return value


def config_from_args(args: argparse.Namespace) -> OriginConfig:
    """Build an :class:`OriginConfig` from parsed flags (fault errors become usage errors)."""
    faults = FaultConfig(
        latency_ms=args.latency_ms,
        bandwidth=args.bandwidth,
        total_bandwidth=args.total_bandwidth,
        failure_rate=args.failure_rate,
        down=args.down,
    )
    return OriginConfig(
        root=args.root,
        host=args.host,
        port=args.port,
        live_window=args.live_window,
        faults=faults,
        fault_seed=args.fault_seed,
    )


async def serve(config: OriginConfig) -> None:
    """Run the origin until cancelled, logging its URLs."""
    runner, base = await start_origin(config)
    try:
        for master in masters(config.root.resolve()):
            log.info("VOD : %s/vod/%s", base, master)
            log.info("live: %s/live/%s (window %d segments)", base, master, config.live_window)
        log.info("stats: %s/_origin/stats  metrics: %s/metrics", base, base)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    """``swarmcast origin``."""
    from swarmcast.runtime import run as run_loop

    try:
        config = config_from_args(args)
        run_loop(serve(config))
    except (OriginError, FaultError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, exc)
        return 1
    return 0
