"""The load-test coordinator: services, worker processes, collection, the report folder.

:func:`run_loadtest` does one run:

1. starts what was not given: a development origin over ``media`` (generating the default
   sample once if the folder is empty) and, for P2P runs, a signalling server;
2. picks the rendition (``--rendition``, else the variant closest to the scenario's bitrate);
3. plans every session (:mod:`swarmcast.loadtest.plan`) and deals them to the workers;
4. starts the workers — processes on this host over queues, or slots in Redis that processes
   on any host claim with ``swarmcast loadtest --join REDIS_URL`` — and waits until all are
   ready, then gives them one common start time;
5. while they run, reads their messages, reads the origin's own counters every second and
   measures its own event-loop lag; a live view shows it all;
6. merges everything into the report format (:mod:`swarmcast.loadtest.metrics`) and writes the
   folder: JSON, plots and the HTML page (:mod:`swarmcast.loadtest.output`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from swarmcast.loadtest.chromium import (
    ChromiumFleet,
    ChromiumUnavailable,
    plan_chromium,
    watch_url,
)
from swarmcast.loadtest.metrics import LagMonitor, Thresholds, WorkerSample, build_report
from swarmcast.loadtest.plan import SessionKind, plan_sessions, split_by_worker
from swarmcast.loadtest.transport import QueueCollector, RedisCollector
from swarmcast.loadtest.worker import WorkerSpec
from swarmcast.peer.rtc import check_large_chunk
from swarmcast.sim.scenario import Scenario

log = logging.getLogger(__name__)


class LoadTestError(Exception):
    """The run could not be carried out (message says why and what to do)."""


@dataclass
class LoadTestConfig:
    """Everything one ``swarmcast loadtest`` run needs."""

    scenario: Scenario
    """Audience, stream and peer knobs (the simulator's shared format)."""
    url: str | None = None
    """Master playlist of the stream under test; None = serve ``media`` from a local origin."""
    signal_url: str | None = None
    """Signalling WebSocket URL; None = start one locally (P2P runs only)."""
    out: Path = Path("loadtest-out")
    """Report folder."""
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    """Worker processes (each runs its share of the sessions on one event loop)."""
    local_workers: int | None = None
    """With Redis: workers spawned on this host (the rest join from other hosts);
    None = all of them."""
    redis_url: str | None = None
    """Redis URL: workers report through it, so processes on other hosts can join."""
    rendition: str | None = None
    """Rendition id to play; None = the variant whose bandwidth is closest to the scenario's."""
    max_peers: int = 10
    """Peer links per viewer."""
    max_lag: float = 0.1
    """A worker whose event-loop lag p95 exceeds this (seconds) makes the run invalid."""
    thresholds: Thresholds = field(default_factory=Thresholds)
    """Pass/fail limits (exit code)."""
    media: Path = Path("media/sample")
    """Content of the local origin (generated once if empty)."""
    host: str = "127.0.0.1"
    """Address local services listen on."""
    join_timeout: float = 60.0
    """Seconds to wait for every worker to be ready."""
    require_integrity: bool = True
    """Refuse unverifiable peer data."""
    sample_interval: float = 1.0
    """Seconds between worker samples (and origin counter readings)."""
    live_view: bool = True
    """Show the rich terminal view (when stderr is a terminal)."""
    plots: bool = True
    """Write the plots and the HTML page."""
    log_level: int = logging.WARNING
    """Log level of worker processes."""
    chromium: int = 0
    """Real Chromium viewers (:mod:`swarmcast.loadtest.chromium`) besides the Python ones."""
    sctp_chunk: int | None = None
    """Load-generator option: SCTP DATA chunks of this many bytes between the run's Python
    peers (``SwarmConfig.sctp_chunk``; browsers keep standard packets). None = standard."""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise LoadTestError(f"--workers must be >= 1, got {self.workers}")
        if self.local_workers is not None and not 0 <= self.local_workers <= self.workers:
            raise LoadTestError("--local-workers must be within 0..--workers")
        if (
            self.local_workers is not None
            and self.local_workers < self.workers
            and not (self.redis_url)
        ):
            raise LoadTestError("workers on other hosts (--local-workers < --workers) need --redis")
        if self.chromium < 0:
            raise LoadTestError(f"--chromium must be >= 0, got {self.chromium}")
        if self.max_lag <= 0 or self.max_peers < 1 or self.sample_interval <= 0:
            raise LoadTestError("--max-lag, --max-peers and the sample interval must be > 0")
        if self.sctp_chunk is not None:
            try:
                check_large_chunk(self.sctp_chunk)
            except ValueError as exc:
                raise LoadTestError(f"--sctp-chunk: {exc}") from None


@dataclass
class RunState:
    """What the coordinator knows while the run goes (the live view reads it)."""

    duration: float
    workers: int
    started: float | None = None
    latest: dict[int, WorkerSample] = field(default_factory=dict)
    samples: list[WorkerSample] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    lags: dict[int, dict[str, Any]] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    origin_points: list[tuple[float, int]] = field(default_factory=list)
    totals: dict[str, int] = field(
        default_factory=lambda: {"http": 0, "p2p": 0, "stalls": 0, "sessions": 0}
    )

    def elapsed(self) -> float:
        """Seconds since the start (0 before it)."""
        return 0.0 if self.started is None else max(time.time() - self.started, 0.0)

    def handle(self, msg: dict[str, Any]) -> None:
        """Take one worker message into account."""
        kind = msg.get("type")
        if kind == "sample":
            s = WorkerSample.from_json(msg["sample"])
            self.samples.append(s)
            self.latest[s.worker] = s
            self.totals["http"] += s.http_bytes
            self.totals["p2p"] += s.p2p_bytes
            self.totals["stalls"] += s.stalls
        elif kind == "session":
            self.rows.append(msg["row"])
            self.totals["sessions"] += 1
        elif kind == "lag":
            self.lags[int(msg["worker"])] = msg["summary"]
        elif kind == "done":
            self.done.add(int(msg["worker"]))
        elif kind == "error":
            self.errors.append(f"worker {msg.get('worker')}: {msg.get('message')}")
            self.done.add(int(msg["worker"]))
        else:
            log.warning("ignoring an unknown worker message %r", kind)


# ------------------------------------------------------------------------ local services


@contextlib.asynccontextmanager
async def local_services(
    config: LoadTestConfig,
) -> AsyncIterator[tuple[str, str | None, str | None]]:
    """Start the origin and/or signalling server that were not given.

    Yields ``(url, signal_url, pages_signal_url)``: the last is the signalling server whose
    ``/watch`` page Chromium viewers open (None without them); it exists even in an HTTP-only
    run, where the page is told not to use P2P.
    """
    sc = config.scenario
    runners: list[web.AppRunner] = []
    try:
        url = config.url
        if url is None:
            url = await _start_local_origin(config, runners)
        signal = config.signal_url
        if signal is None and (sc.p2p or config.chromium):
            signal = await _start_local_signaling(config, runners)
        yield url, (signal if sc.p2p else None), (signal if config.chromium else None)
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


async def _start_local_origin(config: LoadTestConfig, runners: list[web.AppRunner]) -> str:
    from swarmcast.samples.origin import OriginConfig, masters, start_origin

    sc = config.scenario
    media = config.media
    found = masters(media.resolve()) if media.is_dir() else []
    if not found:
        from swarmcast.samples.generate import SampleConfig, generate

        log.info("generating the default sample into %s (once)", media)
        sample = SampleConfig(segment_duration=sc.segment_duration)
        await asyncio.to_thread(generate, media, sample, progress=False)
        found = masters(media.resolve())
    runner, base = await start_origin(
        OriginConfig(root=media, host=config.host, port=0, live_window=sc.window)
    )
    runners.append(runner)
    return f"{base}/{'live' if sc.live else 'vod'}/{found[0]}"


async def _start_local_signaling(config: LoadTestConfig, runners: list[web.AppRunner]) -> str:
    from swarmcast.signaling.config import SignalingConfig
    from swarmcast.signaling.server import create_app

    # Every simulated viewer connects from this host: the per-address limits that protect a
    # public server would refuse the load test itself.
    sig = SignalingConfig(
        host=config.host, port=0, max_connections_per_ip=1_000_000, rate_burst=1000
    )
    app = create_app(sig)
    if config.chromium:
        from swarmcast.signaling.pages import add_pages

        add_pages(app)  # the /watch page and the bundles Chromium viewers load
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.host, 0).start()
    runners.append(runner)
    port = runner.addresses[0][1]
    return f"ws://{config.host}:{port}/ws"


async def choose_rendition(url: str, wanted: str | None, bitrate_kbps: float) -> str:
    """The rendition id to play: ``wanted`` (checked) or the variant closest to the bitrate."""
    from swarmcast.peer.origin_client import OriginClient, OriginError
    from swarmcast.peer.stream import PlaylistError, load_stream

    client = OriginClient()
    try:
        stream = await load_stream(client, url)
    except (OriginError, PlaylistError) as exc:
        raise LoadTestError(f"cannot load the stream {url}: {exc}") from None
    finally:
        await client.close()
    ids = [r.rendition_id for r in stream.renditions]
    if wanted is not None:
        if wanted not in ids:
            raise LoadTestError(f"no rendition {wanted!r} in {url}; it has {ids}")
        return wanted
    variants = [r for r in stream.variants if r.bandwidth] or list(stream.renditions)
    target = bitrate_kbps * 1000
    best = min(variants, key=lambda r: abs((r.bandwidth or 0) - target))
    return best.rendition_id


# ------------------------------------------------------------------------ origin counters


class OriginProbe:
    """Reads the development origin's ``/_origin/stats`` (deltas since :meth:`baseline`)."""

    def __init__(self, stream_url: str) -> None:
        parts = urlsplit(stream_url)
        self.url = f"{parts.scheme}://{parts.netloc}/_origin/stats"
        self.available = True
        self._base: dict[str, Any] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def read(self) -> dict[str, Any] | None:
        """The counters now, or None (and ``available`` False) if the origin has none."""
        if not self.available:
            return None
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        try:
            async with self._session.get(self.url) as resp:
                if resp.status != 200:
                    raise ValueError(f"HTTP {resp.status}")
                return await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning(
                "origin counters unavailable at %s (%s): origin egress is computed from what "
                "viewers and seeds fetched instead",
                self.url,
                exc,
            )
            self.available = False
            return None

    async def baseline(self) -> None:
        """Remember the counters at the start of the run."""
        self._base = await self.read()

    def delta(self, now: dict[str, Any] | None) -> dict[str, Any] | None:
        """Counter growth since the baseline: bytes, requests, and per kind of content."""
        if now is None or self._base is None:
            return None
        base = self._base
        out: dict[str, Any] = {
            "measured": True,
            "bytes": now["bytes"] - base["bytes"],
            "requests": now["requests"] - base["requests"],
        }
        for kind in ("segment", "playlist", "manifest", "init"):
            for what in ("bytes", "requests"):
                total = 0
                for key, slot in now.get("kinds", {}).items():
                    if key.endswith(f":{kind}"):
                        old = base.get("kinds", {}).get(key, {}).get(what, 0)
                        total += slot.get(what, 0) - old
                out[f"{kind}_{what}"] = total
        return out

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()


# ------------------------------------------------------------------------ the run


def _worker_process(spec: dict[str, Any], events: Any, control: Any, level: int) -> None:
    """Entry point of a spawned local worker process."""
    _configure_worker_logging(level)
    from swarmcast.loadtest.transport import QueueWorkerLink
    from swarmcast.loadtest.worker import WorkerSpec, run_worker
    from swarmcast.runtime import run as run_loop

    run_loop(run_worker(WorkerSpec.from_json(spec), QueueWorkerLink(events, control)))


def _join_process(redis_url: str, timeout: float, level: int) -> None:
    """Entry point of a spawned local worker that claims a Redis slot like a remote host."""
    _configure_worker_logging(level)
    from swarmcast.runtime import run as run_loop

    run_loop(join_run(redis_url, timeout))


def _configure_worker_logging(level: int) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


async def join_run(redis_url: str, timeout: float) -> bool:
    """Claim one worker slot of a run in Redis and run it; False if none came in ``timeout``."""
    from swarmcast.loadtest.transport import RedisWorkerLink, _redis, claim_slot
    from swarmcast.loadtest.worker import run_worker

    redis = _redis(redis_url)
    try:
        slot = await claim_slot(redis, timeout)
        if slot is None:
            return False
        run, spec = slot
        log.info("joined load-test run %s as worker %d", run, spec["index"])
        await run_worker(WorkerSpec.from_json(spec), RedisWorkerLink(redis, run))
        return True
    finally:
        await redis.aclose()


async def run_loadtest(
    config: LoadTestConfig, *, on_update: Callable[[RunState], None] | None = None
) -> dict[str, Any]:
    """Carry out one run; returns ``{"report", "viewers", "timeseries"}`` (not yet written)."""
    sc = config.scenario
    wall = time.monotonic()
    async with local_services(config) as (url, signal, pages_signal):
        rendition = await choose_rendition(url, config.rendition, sc.bitrate_kbps)
        plans = plan_sessions(sc, config.workers)
        specs = [
            WorkerSpec(
                index=i,
                url=url,
                signal_url=signal,
                rendition=rendition,
                scenario=sc.to_json(),
                sessions=[p.to_json() for p in share],
                max_peers=config.max_peers,
                require_integrity=config.require_integrity,
                sample_interval=config.sample_interval,
                sctp_chunk=config.sctp_chunk,
            ).to_json()
            for i, share in enumerate(split_by_worker(plans, config.workers))
        ]
        log.info(
            "%d sessions (%d seeds) on %d workers, %s, rendition %s, signalling %s",
            len(plans),
            sum(p.kind is SessionKind.SEED for p in plans),
            config.workers,
            url,
            rendition,
            signal or "none (HTTP only)",
        )
        state = RunState(duration=sc.duration, workers=config.workers)
        fleet = _chromium_fleet(config, url, pages_signal, state)
        probe = OriginProbe(url)
        coord_lag = LagMonitor()
        try:
            await _execute(config, specs, state, probe, coord_lag, on_update, fleet)
            origin = probe.delta(await probe.read())
        finally:
            await probe.close()
    if origin is None:
        seeds = [r for r in state.rows if r.get("kind") == "seed"]
        origin = {
            "measured": False,
            "bytes": sum(r["http_bytes"] for r in state.rows),
            "segment_bytes": sum(r["http_bytes"] for r in state.rows),
            "seed_bytes": sum(r["http_bytes"] for r in seeds),
        }
    run = {
        "duration": sc.duration,
        "wall_seconds": round(time.monotonic() - wall, 3),
        "workers": config.workers,
        "url": url,
        "signal_url": signal,
        "rendition": rendition,
        "max_peers": config.max_peers,
        "sctp_chunk": config.sctp_chunk,
        "redis": bool(config.redis_url),
        "coordinator_lag": coord_lag.summary(),
        "chromium_viewers": config.chromium,
        "worker_errors": state.errors,
    }
    rows = sorted(state.rows, key=lambda r: (r.get("kind") != "seed", r["joined_at"], r["id"]))
    result = build_report(
        scenario=sc.to_json(),
        rows=rows,
        samples=state.samples,
        origin_points=state.origin_points,
        origin=origin,
        lags={i: state.lags.get(i, {}) for i in range(config.workers)},
        max_lag=config.max_lag,
        run=run,
    )
    result["viewers"] = rows
    if config.chromium:
        result["report"]["summary"]["chromium"] = chromium_summary(rows)
    if state.errors:
        result["report"]["generator"]["valid"] = False
        result["report"]["generator"]["reasons"].extend(state.errors)
    result["report"]["thresholds"] = config.thresholds.to_json()
    missed = config.thresholds.check(result["report"]["summary"])
    result["report"]["verdict"] = {"missed": missed, "passed": not missed}
    return result


def chromium_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The Chromium viewers' own headline figures (they are in the main summary too)."""
    browsers = [r for r in rows if r.get("kind") == "chromium"]
    http = sum(r["http_bytes"] for r in browsers)
    p2p = sum(r["p2p_bytes"] for r in browsers)
    startups = sorted(r["startup_time"] for r in browsers if r["startup_time"] is not None)
    return {
        "sessions": len(browsers),
        "offload": p2p / (http + p2p) if http + p2p else 0.0,
        "startup_p50": startups[len(startups) // 2] if startups else None,
        "never_started": len(browsers) - len(startups),
        "stalls": sum(r["stall_count"] for r in browsers),
        "stall_time": round(sum(r["stall_time"] for r in browsers), 6),
        "errors": sum(1 for r in browsers if r.get("error")),
    }


async def _execute(
    config: LoadTestConfig,
    specs: list[dict[str, Any]],
    state: RunState,
    probe: OriginProbe,
    coord_lag: LagMonitor,
    on_update: Callable[[RunState], None] | None,
    fleet: ChromiumFleet | None = None,
) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    procs: list[Any] = []
    collector: QueueCollector | RedisCollector
    if config.redis_url:
        collector = RedisCollector(config.redis_url, secrets.token_hex(6))
        await collector.publish(specs, config.join_timeout)
        local = config.workers if config.local_workers is None else config.local_workers
        for _ in range(local):
            procs.append(
                ctx.Process(
                    target=_join_process,
                    args=(config.redis_url, config.join_timeout, config.log_level),
                    daemon=True,
                )
            )
    else:
        collector = QueueCollector(config.workers)
        for spec in specs:
            i = spec["index"]
            args = (spec, collector.events, collector.controls[i], config.log_level)
            procs.append(ctx.Process(target=_worker_process, args=args, daemon=True))
    for p in procs:
        p.start()
    lag_task = asyncio.create_task(_probe_lag(coord_lag))
    # The browser starts while the workers do; its start-up is not part of the run.
    launch = asyncio.create_task(_launch(fleet))
    fleet_task: asyncio.Task[None] | None = None
    try:
        await _wait_ready(config, collector, state, procs)
        await launch
        await probe.baseline()
        state.started = time.time() + 0.5
        await collector.start(state.started)
        if fleet is not None:
            fleet_task = asyncio.create_task(fleet.run(state.started))
        await _collect(config, collector, state, probe, procs, on_update)
        if fleet_task is not None:
            await _finish_fleet(config, state, fleet_task)
    finally:
        for task in (lag_task, launch, fleet_task):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in (lag_task, launch, fleet_task) if t is not None), return_exceptions=True
        )
        if fleet is not None:
            await fleet.close()
        await collector.close()
        for p in procs:
            await asyncio.to_thread(p.join, 10)
            if p.is_alive():
                log.warning("worker process %d did not exit; terminating it", p.pid)
                p.terminate()


def _chromium_fleet(
    config: LoadTestConfig, url: str, pages_signal: str | None, state: RunState
) -> ChromiumFleet | None:
    """The run's Chromium viewers (None without ``--chromium``); they report into ``state``."""
    if not config.chromium:
        return None
    if pages_signal is None:
        raise LoadTestError("--chromium needs a signalling server with the /watch page")
    sc = config.scenario
    plans = plan_chromium(
        config.chromium, join_spread=sc.join_spread, duration=sc.duration, seed=sc.seed
    )
    page = watch_url(pages_signal, url, p2p=sc.p2p)
    return ChromiumFleet(plans, page, sample_interval=config.sample_interval, emit=state.handle)


async def _launch(fleet: ChromiumFleet | None) -> None:
    if fleet is None:
        return
    try:
        await fleet.launch()
    except ChromiumUnavailable as exc:
        raise LoadTestError(str(exc)) from None


async def _finish_fleet(config: LoadTestConfig, state: RunState, task: asyncio.Task[None]) -> None:
    """Wait for the Chromium viewers to hand in their rows (they end with the run)."""
    assert state.started is not None
    left = state.started + config.scenario.duration + 30.0 - time.time()
    try:
        await asyncio.wait_for(task, max(left, 1.0))
    except TimeoutError:
        state.errors.append("the Chromium viewers did not finish in time")


async def _wait_ready(
    config: LoadTestConfig, collector: Any, state: RunState, procs: list[Any]
) -> None:
    ready: set[int] = set()
    deadline = time.monotonic() + config.join_timeout
    while len(ready) < config.workers:
        if time.monotonic() > deadline:
            raise LoadTestError(
                f"only {len(ready)} of {config.workers} workers were ready within "
                f"{config.join_timeout:.0f} s"
                + (
                    "; start the others with `swarmcast loadtest --join REDIS_URL`"
                    if config.redis_url
                    else ""
                )
            )
        if procs and all(not p.is_alive() for p in procs) and not config.redis_url:
            raise LoadTestError("every worker process exited before the start (see its log)")
        msg = await collector.recv(1.0)
        if msg is None:
            continue
        if msg.get("type") == "ready":
            ready.add(int(msg["worker"]))
        elif msg.get("type") == "error":
            raise LoadTestError(f"worker {msg.get('worker')} failed: {msg.get('message')}")
        else:
            state.handle(msg)


async def _collect(
    config: LoadTestConfig,
    collector: Any,
    state: RunState,
    probe: OriginProbe,
    procs: list[Any],
    on_update: Callable[[RunState], None] | None,
) -> None:
    assert state.started is not None
    # Sessions end at the run's duration; closing hundreds of agents takes a few seconds more.
    deadline = state.started + config.scenario.duration + 30.0 + config.workers
    next_probe = state.started + config.sample_interval
    while len(state.done) < config.workers:
        now = time.time()
        if now > deadline:
            missing = sorted(set(range(config.workers)) - state.done)
            state.errors.append(f"workers {missing} did not finish in time")
            break
        if not config.redis_url and procs and all(not p.is_alive() for p in procs):
            # Drain what the dead processes left in the queue, then stop waiting for them.
            while (msg := await collector.recv(0.2)) is not None:
                state.handle(msg)
            missing = sorted(set(range(config.workers)) - state.done)
            if missing:
                state.errors.append(f"worker processes {missing} exited without finishing")
            break
        msg = await collector.recv(min(max(next_probe - now, 0.05), 1.0))
        if msg is not None:
            state.handle(msg)
        if time.time() >= next_probe:
            next_probe += config.sample_interval
            delta = probe.delta(await probe.read())
            if delta is not None:
                state.origin_points.append((state.elapsed(), delta["bytes"]))
            if on_update is not None:
                on_update(state)


async def _probe_lag(monitor: LagMonitor, tick: float = 0.1) -> None:
    while True:
        expected = time.monotonic() + tick
        await asyncio.sleep(tick)
        monitor.record(expected, time.monotonic())
