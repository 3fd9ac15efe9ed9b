"""One load-test worker: many viewers (and seeds) on one asyncio loop, in one process.

A worker receives its share of the plan (:class:`WorkerSpec`), waits for the run's start time,
then starts each session at its ``join_at`` as a real :class:`PeerAgent` (real origin client,
real signalling session, real aiortc links) and stops it at its ``leave_at``. Every
``sample_interval`` it sends a :class:`WorkerSample` (bytes by source, stalls, who is playing,
the worst event-loop lag) and, as each session ends, its ``viewers.json`` row. Messages go
through a :class:`WorkerLink` (a multiprocessing queue, or Redis for workers on other hosts).

The lag probe is a timer that should fire every ``lag_tick`` seconds: how late it fires is how
long a ready callback waits for the CPU, which is what every viewer of this worker suffers on
top of the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from swarmcast.loadtest.metrics import LagMonitor, WorkerSample
from swarmcast.loadtest.plan import SessionKind, SessionPlan
from swarmcast.peer.agent import AgentConfig, PeerAgent, RenditionState
from swarmcast.peer.origin_client import OriginError
from swarmcast.peer.player import PlayerState
from swarmcast.peer.protocol import Role
from swarmcast.peer.seed import SeedConfig
from swarmcast.peer.stream import PlaylistError, Segment
from swarmcast.peer.swarm import SwarmConfig
from swarmcast.sim.scenario import Scenario

log = logging.getLogger(__name__)


@dataclass
class WorkerSpec:
    """Everything a worker needs (JSON-serialisable: it may travel through Redis)."""

    index: int
    """This worker's index in the run."""
    url: str
    """Master playlist URL of the stream under test."""
    signal_url: str | None
    """Signalling WebSocket URL; None = HTTP only (``--p2p off``)."""
    rendition: str
    """Rendition id every session plays (one swarm)."""
    scenario: dict[str, Any]
    """The resolved scenario (its ``scheduler`` / ``upload_config`` overrides are applied)."""
    sessions: list[dict[str, Any]]
    """This worker's :class:`SessionPlan` s, as JSON."""
    max_peers: int = 10
    """Peer links per viewer."""
    require_integrity: bool = True
    """Refuse unverifiable peer data (streams without manifests then play from HTTP only)."""
    sample_interval: float = 1.0
    """Seconds between two samples sent to the coordinator."""
    lag_tick: float = 0.1
    """Period of the event-loop lag probe, seconds."""
    sctp_chunk: int | None = None
    """Large SCTP chunks between Python peers (``SwarmConfig.sctp_chunk``); None = standard."""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerSpec:
        """Inverse of :meth:`to_json`."""
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"malformed worker spec: {exc}") from None


class WorkerLink(Protocol):
    """How a worker talks to the coordinator."""

    async def send(self, message: dict[str, Any]) -> None:
        """Deliver one JSON-ready message to the coordinator."""

    async def wait_start(self) -> float:
        """Block until the coordinator says go; returns the run's start as a Unix time."""


@dataclass
class _Session:
    plan: SessionPlan
    agent: PeerAgent | None = None
    started: float | None = None
    error: str | None = None
    last: dict[str, int] = field(
        default_factory=lambda: {"http": 0, "p2p": 0, "up": 0, "stalls": 0}
    )
    neighbour_sum: int = 0
    neighbour_samples: int = 0
    segment_range: list[int] | None = None
    """Lowest and highest media sequence the viewer stored for its player."""

    def segment_stored(self, st: RenditionState, seg: Segment) -> None:
        """``PeerAgent.on_segment_stored``: widen :attr:`segment_range` (played rendition)."""
        agent = self.agent
        if agent is None or st is not agent.playing:
            return
        r = self.segment_range
        self.segment_range = (
            [seg.sequence, seg.sequence]
            if r is None
            else [min(r[0], seg.sequence), max(r[1], seg.sequence)]
        )


def agent_config(spec: WorkerSpec, plan: SessionPlan, scenario: Scenario) -> AgentConfig:
    """The :class:`AgentConfig` of one planned session."""
    if plan.kind is SessionKind.SEED:
        seed = SeedConfig(
            url=spec.url,
            signaling_url=spec.signal_url or "",
            renditions=(spec.rendition,),
            capacity=scenario.seed_capacity,
            upload_rate=plan.upload_bps,
            extra={"require_integrity": spec.require_integrity},
        )
        config = seed.agent_config()
        return replace(config, swarm=replace(config.swarm, sctp_chunk=spec.sctp_chunk))
    upload = replace(
        scenario.viewer_upload_config(plan.upload_enabled), rate_limit_bps=plan.upload_bps
    )
    return AgentConfig(
        url=spec.url,
        role=Role.VIEWER,
        signaling_url=spec.signal_url,
        renditions=(spec.rendition,),
        cache_bytes=max(int(scenario.cache_mb * 1024 * 1024), 1024 * 1024),
        require_integrity=spec.require_integrity,
        scheduler=scenario.scheduler_config(),
        upload=upload,
        swarm=SwarmConfig(
            max_peers=spec.max_peers,
            upload_enabled=plan.upload_enabled,
            sctp_chunk=spec.sctp_chunk,
        ),
        start_fraction=plan.vod_start,
    )


class Worker:
    """Runs one :class:`WorkerSpec` (see the module docstring)."""

    def __init__(
        self,
        spec: WorkerSpec,
        link: WorkerLink,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.link = link
        self.clock = clock
        self.scenario = Scenario.from_json(spec.scenario)
        self.plans = [SessionPlan.from_json(s) for s in spec.sessions]
        self.lag = LagMonitor()
        self.active: dict[str, _Session] = {}
        self._pending = {"http": 0, "p2p": 0, "up": 0, "stalls": 0, "seed": 0}
        self._t0 = 0.0

    async def run(self) -> None:
        """Wait for the start, run every session, report; returns when all sessions ended."""
        await self.link.send({"type": "ready", "worker": self.spec.index})
        start_at = await self.link.wait_start()
        self._t0 = self.clock() + (start_at - time.time())
        probe = asyncio.create_task(self._probe_lag())
        sampler = asyncio.create_task(self._sample_loop())
        try:
            await asyncio.gather(*(self._session(p) for p in self.plans))
        finally:
            for task in (probe, sampler):
                task.cancel()
            await asyncio.gather(probe, sampler, return_exceptions=True)
        await self._send_sample()
        await self.link.send(
            {"type": "lag", "worker": self.spec.index, "summary": self.lag.summary()}
        )
        await self.link.send({"type": "done", "worker": self.spec.index})

    def now(self) -> float:
        """Seconds since the run's start."""
        return self.clock() - self._t0

    async def _sleep_until(self, t: float) -> None:
        delay = t - self.now()
        if delay > 0:
            await asyncio.sleep(delay)

    # ------------------------------------------------------------------------- sessions

    async def _session(self, plan: SessionPlan) -> None:
        await self._sleep_until(plan.join_at)
        sess = _Session(plan, started=self.now())
        self.active[plan.id] = sess
        try:
            sess.agent = PeerAgent(
                agent_config(self.spec, plan, self.scenario),
                on_segment_stored=sess.segment_stored,
            )
            await sess.agent.start()
            await self._watch(sess)
        except (OriginError, PlaylistError, TimeoutError, OSError, KeyError, ValueError) as exc:
            sess.error = f"{type(exc).__name__}: {exc}"
            log.warning("session %s failed: %s", plan.id, sess.error)
            await self._sleep_until(plan.leave_at)  # the slot stays empty, as planned
        except Exception as exc:
            # A bug in the peer under test fails its session (counted in the report), not the
            # worker and the other sessions it runs.
            sess.error = f"{type(exc).__name__}: {exc}"
            log.exception("session %s crashed", plan.id)
            await self._sleep_until(plan.leave_at)
        finally:
            self._account(sess)
            row = self._row(sess)
            del self.active[plan.id]
            if sess.agent is not None:
                with contextlib.suppress(Exception):
                    await sess.agent.close()
        await self.link.send({"type": "session", "row": row})

    async def _watch(self, sess: _Session) -> None:
        agent = sess.agent
        assert agent is not None
        while self.now() < sess.plan.leave_at and not agent.finished:
            await asyncio.sleep(min(0.5, max(sess.plan.leave_at - self.now(), 0.0)))

    def _account(self, sess: _Session) -> None:
        """Add the session's counters since its last accounting to the pending sample."""
        agent = sess.agent
        if agent is None:
            return
        q = agent.qoe
        stalls = agent.player.qoe.stalls if agent.player is not None else 0
        now = {"http": q.http_bytes, "p2p": q.p2p_bytes, "up": q.uploaded_bytes, "stalls": stalls}
        for key, value in now.items():
            delta = value - sess.last[key]
            if key == "http" and sess.plan.kind is SessionKind.SEED:
                self._pending["seed"] += delta
            else:
                self._pending[key] += delta
        sess.last = now

    def _row(self, sess: _Session) -> dict[str, Any]:
        plan, agent = sess.plan, sess.agent
        qoe = agent.report() if agent is not None and agent.player is not None else None
        row: dict[str, Any] = {
            "id": plan.id,
            "kind": plan.kind.value,
            "worker": self.spec.index,
            "joined_at": round(sess.started if sess.started is not None else plan.join_at, 6),
            "left_at": round(self.now(), 6),
            "upload_bps": plan.upload_bps or 0.0,
            "download_bps": None,
            "upload_enabled": plan.upload_enabled,
            "http_bytes": agent.qoe.http_bytes if agent else 0,
            "p2p_bytes": agent.qoe.p2p_bytes if agent else 0,
            "uploaded_bytes": agent.qoe.uploaded_bytes if agent else 0,
            "startup_time": None,
            "play_time": 0.0,
            "stall_count": 0,
            "stall_time": 0.0,
            "live_latency": None,
        }
        if qoe is not None:
            row.update(qoe.to_report_row())
            row["abr_switches"] = row.pop("switches")
        stats = agent.playing.scheduler.stats if agent and agent.playing else None
        swarm = agent.swarm if agent is not None else None
        row.update(
            {
                "neighbours": len(swarm.links) if swarm is not None else 0,
                "mean_neighbours": (
                    sess.neighbour_sum / sess.neighbour_samples if sess.neighbour_samples else 0.0
                ),
                "origin_fetches": stats.origin_fetches if stats else 0,
                "p2p_fetches": stats.p2p_fetches if stats else 0,
                "bootstraps": stats.bootstraps if stats else 0,
                "switches": stats.switches if stats else 0,
                "p2p_rejected_bytes": agent.qoe.p2p_rejected_bytes if agent else 0,
                "stall_durations": stall_durations(agent.events, agent.clock()) if agent else [],
                "segment_range": sess.segment_range,
                "error": sess.error,
            }
        )
        return row

    # --------------------------------------------------------------------- measurement

    async def _probe_lag(self) -> None:
        tick = self.spec.lag_tick
        while True:
            expected = self.clock() + tick
            await asyncio.sleep(tick)
            self.lag.record(expected, self.clock())

    async def _sample_loop(self) -> None:
        interval = self.spec.sample_interval
        k = 1
        while True:
            await self._sleep_until(k * interval)
            await self._send_sample()
            k = max(k + 1, int(self.now() / interval) + 1)  # skip ticks missed under load

    async def _send_sample(self) -> None:
        sample = WorkerSample(worker=self.spec.index, t=round(self.now(), 6))
        for sess in list(self.active.values()):
            self._account(sess)
            agent = sess.agent
            if sess.plan.kind is not SessionKind.VIEWER:
                continue
            sample.online += 1
            if agent is None or agent.player is None:
                continue
            state = agent.player.state
            sample.playing += state is PlayerState.PLAYING
            sample.stalled += state is PlayerState.STALLED
            links = len(agent.swarm.links) if agent.swarm is not None else 0
            sample.neighbours += links
            sess.neighbour_sum += links
            sess.neighbour_samples += 1
        p = self._pending
        sample.http_bytes, sample.p2p_bytes, sample.uploaded_bytes = p["http"], p["p2p"], p["up"]
        sample.stalls, sample.seed_ingest = p["stalls"], p["seed"]
        sample.lag_max = round(self.lag.take_interval_max(), 6)
        self._pending = dict.fromkeys(p, 0)
        await self.link.send({"type": "sample", "sample": sample.to_json()})


def stall_durations(events: list[tuple[float, str, dict[str, Any]]], now: float) -> list[float]:
    """Durations of each stall from player transitions ``(at, kind, detail)``; a stall still
    running counts up to ``now``."""
    out: list[float] = []
    since: float | None = None
    for at, kind, _detail in events:
        if kind == "stall":
            since = at
        elif kind in ("resume", "ended") and since is not None:
            out.append(round(at - since, 6))
            since = None
    if since is not None:
        out.append(round(now - since, 6))
    return out


async def run_worker(spec: WorkerSpec, link: WorkerLink) -> None:
    """Run one worker to the end, reporting a crash to the coordinator before raising."""
    try:
        await Worker(spec, link).run()
    except Exception as exc:
        log.exception("worker %d crashed", spec.index)
        with contextlib.suppress(Exception):
            await link.send({"type": "error", "worker": spec.index, "message": repr(exc)})
        raise
